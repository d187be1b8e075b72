//! `peerload`: loadgen's workload (`session-benches/src/bin/loadgen.rs`) on tower-sessions 0.14
//! and one of its stores, with loadgen's options and output lines (`mode=tower-sessions`).

use std::sync::Arc;

use session_peers::payload;
use session_peers::run::{Phase, PhaseResult, run_phase};
use session_peers::stores::{self, StoreSpec};
use session_peers::target::TowerTarget;
use session_peers::{BoxError, Result};
use tower_sessions::session::Id;
use tower_sessions::{Expiry, SessionStore};

const USAGE: &str = "usage: peerload --store SPEC [--sessions N] [--ops M] [--concurrency C] \
[--workers W] [--pool P] [--sqlite-defaults] [--phases create,read,write] [--rounds R]
  SPEC: moka | sqlite[:PATH] | redis://HOST:PORT[/DB]
  --pool P            fred pool size of the Redis store (default 4)
  --sqlite-defaults   sqlx's connection defaults (rollback journal, synchronous=FULL) instead of
                      WAL with synchronous=NORMAL, the durability our SQLite driver runs with";

/// The command line.
#[derive(Debug)]
struct Args {
    store: String,
    sessions: u64,
    ops: u64,
    concurrency: usize,
    workers: usize,
    pool: usize,
    sqlite_tuned: bool,
    phases: Vec<Phase>,
    rounds: u64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        store: String::new(),
        sessions: 10_000,
        ops: 100_000,
        concurrency: 16,
        workers: 2,
        pool: 4,
        sqlite_tuned: true,
        phases: Phase::ALL.to_vec(),
        rounds: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| BoxError::from(format!("{name} needs a value\n{USAGE}")))
        };
        let num = |s: String, name: &str| -> Result<u64> {
            s.replace('_', "")
                .parse()
                .map_err(|e| format!("{name}: {e}\n{USAGE}").into())
        };
        match flag.as_str() {
            "--store" => a.store = value("--store")?,
            "--sessions" => a.sessions = num(value("--sessions")?, "--sessions")?,
            "--ops" => a.ops = num(value("--ops")?, "--ops")?,
            "--concurrency" => {
                a.concurrency = num(value("--concurrency")?, "--concurrency")? as usize
            }
            "--workers" => a.workers = num(value("--workers")?, "--workers")? as usize,
            "--pool" => a.pool = num(value("--pool")?, "--pool")?.clamp(1, 1_000) as usize,
            "--sqlite-defaults" => a.sqlite_tuned = false,
            "--rounds" => a.rounds = num(value("--rounds")?, "--rounds")?,
            "--phases" => {
                a.phases = value("--phases")?
                    .split(',')
                    .map(|p| {
                        Phase::ALL
                            .into_iter()
                            .find(|x| x.name() == p.trim())
                            .ok_or_else(|| BoxError::from(format!("unknown phase {p:?}\n{USAGE}")))
                    })
                    .collect::<Result<_>>()?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    if a.store.is_empty() {
        return Err(format!("--store is required\n{USAGE}").into());
    }
    if a.sessions == 0 || a.ops == 0 || a.concurrency == 0 || a.workers == 0 || a.rounds == 0 {
        return Err(format!(
            "--sessions, --ops, --concurrency, --workers and --rounds must be above 0\n{USAGE}"
        )
        .into());
    }
    Ok(a)
}

fn print_result(store: &str, phase: Phase, r: &PhaseResult) {
    println!(
        "result store={store} mode=tower-sessions phase={} ops={} secs={:.3} ops_per_sec={:.0} p50_us={:.1} p99_us={:.1}",
        phase.name(),
        r.ops,
        r.elapsed.as_secs_f64(),
        r.ops_per_sec(),
        r.quantile_us(0.50),
        r.quantile_us(0.99),
    );
}

/// The idle TTL of every session, as loadgen's manager has it (`idle_ttl` 30 minutes).
fn expiry() -> Option<Expiry> {
    Some(Expiry::OnInactivity(time::Duration::minutes(30)))
}

/// Setup and every phase on `store`; pushes every session id it creates onto `created` (so the
/// caller can clean up even after a failure).
async fn workload<S: SessionStore>(
    store: S,
    label: &str,
    args: &Args,
    created: &mut Vec<Id>,
) -> Result<()> {
    let target = Arc::new(TowerTarget {
        store: Arc::new(store),
        expiry: expiry(),
    });
    let (ids, r) = run_phase(
        target.clone(),
        Phase::Create,
        args.sessions,
        args.concurrency,
        Arc::new(Vec::new()),
        0,
        1,
    )
    .await?;
    println!(
        "setup store={label} mode=tower-sessions sessions={} secs={:.3}",
        ids.len(),
        r.elapsed.as_secs_f64()
    );
    created.extend_from_slice(&ids);
    let ids = Arc::new(ids);
    for (p, phase) in args.phases.iter().copied().enumerate() {
        let mut merged: Option<PhaseResult> = None;
        let mut next = args.sessions + 1 + p as u64 * args.ops;
        for round in 0..args.rounds {
            let share = args.ops / args.rounds + u64::from(round < args.ops % args.rounds);
            if share == 0 {
                continue;
            }
            let (new, r) = run_phase(
                target.clone(),
                phase,
                share,
                args.concurrency,
                ids.clone(),
                next,
                100 + p as u64 * 1000 + round,
            )
            .await?;
            created.extend(new);
            merged = Some(match merged.take() {
                None => r,
                Some(mut a) => {
                    a.ops += r.ops;
                    a.elapsed += r.elapsed;
                    a.latency.add(&r.latency)?;
                    a
                }
            });
            next += share;
        }
        let r = merged.ok_or("no rounds ran")?;
        print_result(label, phase, &r);
    }
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let spec = StoreSpec::parse(&args.store)?;
    let label = spec.label();
    let (peer, detail) = match &spec {
        StoreSpec::Moka => ("tower-sessions-moka-store-0.15.0", String::new()),
        StoreSpec::Sqlite(_) => (
            "tower-sessions-sqlx-store-0.15.0",
            if args.sqlite_tuned {
                " sqlite=wal,synchronous=normal".to_string()
            } else {
                " sqlite=sqlx-defaults".to_string()
            },
        ),
        StoreSpec::Redis(_) => (
            "tower-sessions-redis-store-0.16.0",
            format!(" fred_pool={}", args.pool),
        ),
    };
    println!(
        "peerload store={label} sessions={} ops={} rounds={} concurrency={} workers={} payload_bytes={} record_bytes={} peer=tower-sessions-0.14.0+{peer}{detail}",
        args.sessions,
        args.ops,
        args.rounds,
        args.concurrency,
        args.workers,
        payload::size(0)?,
        payload::record_size(0)?,
    );
    let mut created = Vec::new();
    match spec {
        StoreSpec::Moka => {
            let capacity = args.sessions + args.ops * args.phases.len() as u64 + 10_000;
            workload(stores::moka(capacity), label, &args, &mut created).await
        }
        StoreSpec::Sqlite(path) => {
            let db = stores::Sqlite::open(path.as_deref(), args.sqlite_tuned).await?;
            let outcome = workload(db.store.clone(), label, &args, &mut created).await;
            db.cleanup().await?;
            outcome
        }
        StoreSpec::Redis(url) => {
            let pool = stores::redis_pool(&url, args.pool).await?;
            let outcome = workload(stores::redis(pool.clone()), label, &args, &mut created).await;
            let deleted = stores::redis_cleanup(&pool, &created).await?;
            println!("cleanup store=redis deleted_keys={deleted}");
            outcome
        }
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("peerload: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("peerload: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("peerload: {e}");
        std::process::exit(1);
    }
}
