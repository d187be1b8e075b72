//! `loadgen`: one request-cycle workload through the session layer on any driver and, with
//! `--raw`, on the raw backend under it in the same run. See the crate README for the options and
//! the output format.

use std::sync::Arc;
use std::time::Duration;

use session_benches::direct::Direct;
use session_benches::direct::MokaLayout;
use session_benches::payload;
use session_benches::raw::Raw;
use session_benches::redis_stats::RedisStats;
use session_benches::run::{Phase, PhaseResult, run_phase, run_phase_threads};
use session_benches::stores::{self, Baseline, StoreOptions, StoreSpec};
use session_benches::targets::{DirectTarget, RawTarget, SessionTarget, Target, ThreadTarget};
use session_benches::{BoxError, Result};
use session_core::{Config, Manager};

const USAGE: &str =
    "usage: loadgen --store SPEC [--raw] [--sessions N] [--ops M] [--concurrency C] \
[--workers W] [--pool P] [--no-fsync] [--probe K] [--phases create,read,write] [--rounds R] \
[--raw-threads T] [--redis-index-ms G] [--moka-floor indexed|cells|blobs] [--redis-spill S]
  T: OS threads of an embedded raw baseline, every phase (default: C, at most 16, and for
     the memory floor's writes and creates at most one per core)
  G: the Redis driver's live index granularity in ms (default: the driver's, 10 s;
     1 scores every session with its exact deadline, as before 2026-12-05)
  S: calls in flight per Redis connection before the next call takes another, for the
     driver (connection_spill) and its floor alike (default: the driver's, 32)
  --moka-floor: how the memory driver's floor keeps a session in moka: indexed (default;
     cells, and a map of them that reads look up, telling moka once a second per session),
     cells (a write replaces the blob inside its entry) or blobs (each write inserts it)
  SPEC: memory | file[:DIR] | sqlite[:PATH] | sled[:DIR] | redis://HOST:PORT[/DB]
        | postgres://USER@HOST:PORT/DB | mysql://USER@HOST:PORT | memcached://HOST:PORT";

/// The command line.
#[derive(Debug)]
struct Args {
    store: String,
    raw: bool,
    sessions: u64,
    ops: u64,
    concurrency: usize,
    workers: usize,
    pool: Option<u32>,
    fsync: bool,
    probe: u64,
    phases: Vec<Phase>,
    rounds: u64,
    raw_threads: Option<usize>,
    redis_index_ms: Option<u64>,
    moka_layout: MokaLayout,
    redis_spill: Option<usize>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        store: String::new(),
        raw: false,
        sessions: 10_000,
        ops: 100_000,
        concurrency: 16,
        workers: 2,
        pool: None,
        fsync: true,
        probe: 200,
        phases: Phase::ALL.to_vec(),
        rounds: 10,
        raw_threads: None,
        redis_index_ms: None,
        moka_layout: MokaLayout::default(),
        redis_spill: None,
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
            "--raw" => a.raw = true,
            "--sessions" => a.sessions = num(value("--sessions")?, "--sessions")?,
            "--ops" => a.ops = num(value("--ops")?, "--ops")?,
            "--concurrency" => {
                a.concurrency = num(value("--concurrency")?, "--concurrency")? as usize
            }
            "--workers" => a.workers = num(value("--workers")?, "--workers")? as usize,
            "--pool" => a.pool = Some(num(value("--pool")?, "--pool")?.clamp(1, 10_000) as u32),
            "--no-fsync" => a.fsync = false,
            "--redis-index-ms" => {
                a.redis_index_ms = Some(num(value("--redis-index-ms")?, "--redis-index-ms")?)
            }
            "--moka-floor" => {
                a.moka_layout = match value("--moka-floor")?.as_str() {
                    "indexed" => MokaLayout::Indexed,
                    "cells" => MokaLayout::Cells,
                    "blobs" => MokaLayout::Blobs,
                    other => {
                        return Err(format!(
                            "--moka-floor: {other:?}: indexed, cells or blobs\n{USAGE}"
                        )
                        .into());
                    }
                }
            }
            "--redis-spill" => {
                a.redis_spill = Some(num(value("--redis-spill")?, "--redis-spill")?.max(1) as usize)
            }
            "--raw-threads" => {
                a.raw_threads =
                    Some(num(value("--raw-threads")?, "--raw-threads")?.clamp(1, 1024) as usize)
            }
            "--rounds" => a.rounds = num(value("--rounds")?, "--rounds")?,
            "--probe" => a.probe = num(value("--probe")?, "--probe")?,
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
    if a.sessions == 0 || a.ops == 0 || a.concurrency == 0 || a.workers == 0 {
        return Err(format!(
            "--sessions, --ops, --concurrency and --workers must be above 0\n{USAGE}"
        )
        .into());
    }
    Ok(a)
}

/// The most OS threads an embedded raw baseline uses unless `--raw-threads` says otherwise (the
/// 16 threads of issue 14's "backend driven directly").
const DEFAULT_RAW_THREADS_CAP: usize = 16;

/// The ratio targets of issue 14 (read, write): session ops/s over raw ops/s, median of rounds.
fn target(driver: &str, phase: Phase) -> Option<f64> {
    match (driver, phase) {
        (_, Phase::Create) => None,
        ("memory", _) => Some(0.8),
        ("redis", Phase::Read) => Some(0.9),
        ("redis", Phase::Write) => Some(0.8),
        ("file" | "sqlite" | "sled", _) => Some(0.7),
        // the issue states no target for the server stores (postgres, mysql, memcached)
        (_, _) => None,
    }
}

/// One side of a comparison: the session layer or a baseline on tokio tasks, or an embedded
/// baseline on OS threads.
#[derive(Clone)]
enum Side {
    Tasks(Arc<dyn Target>),
    /// The target, the number of OS threads that drive its reads, and of those that drive its
    /// writes and creates ([`Direct::writer_threads`](session_benches::direct::Direct::writer_threads)).
    Threads(Arc<dyn ThreadTarget>, usize, usize),
}

impl Side {
    async fn run(
        &self,
        phase: Phase,
        ops: u64,
        concurrency: usize,
        ids: Arc<Vec<String>>,
        first: u64,
        seed: u64,
    ) -> Result<(Vec<String>, PhaseResult)> {
        match self {
            Side::Tasks(t) => run_phase(t.clone(), phase, ops, concurrency, ids, first, seed).await,
            Side::Threads(t, threads, writers) => {
                let t = t.clone();
                let threads = match phase {
                    Phase::Read => concurrency.min(*threads),
                    Phase::Write | Phase::Create => concurrency.min(*writers),
                };
                tokio::task::spawn_blocking(move || {
                    run_phase_threads(t, phase, ops, threads, ids, first, seed)
                })
                .await?
            }
        }
    }
}

/// The median of `xs` (the mean of the middle two for an even count); 0 for none.
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Prints one side's phase: throughput as the median of the rounds' (each round's rate listed
/// in `rounds=`), latency quantiles over every operation of every round.
fn print_result(store: &str, mode: &str, phase: Phase, r: &PhaseResult, rates: &[f64]) {
    let each: Vec<String> = rates.iter().map(|x| format!("{x:.0}")).collect();
    println!(
        "result store={store} mode={mode} phase={} ops={} secs={:.3} ops_per_sec={:.0} p50_us={:.1} p99_us={:.1} rounds={}",
        phase.name(),
        r.ops,
        r.elapsed.as_secs_f64(),
        median(rates),
        r.quantile_us(0.50),
        r.quantile_us(0.99),
        each.join("/"),
    );
}

/// Counts Redis round trips and commands per operation of `phase`, one operation at a time.
async fn probe(
    stats: &mut RedisStats,
    target: &Side,
    phase: Phase,
    ops: u64,
    ids: Arc<Vec<String>>,
    store: &str,
    mode: &str,
) -> Result<()> {
    let before = stats.snapshot().await?;
    target.run(phase, ops, 1, ids, 10_000_000_000, 7).await?;
    let after = stats.snapshot().await?;
    let d = stats.delta(before, after);
    println!(
        "redis store={store} mode={mode} phase={} probe_ops={ops} round_trips_per_op={:.2} commands_per_op={:.2}",
        phase.name(),
        d.reads as f64 / ops as f64,
        d.commands as f64 / ops as f64,
    );
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let spec = StoreSpec::parse(&args.store);
    let label = spec.label().to_string();
    let opts = StoreOptions {
        capacity: args.sessions + args.ops + 2 * args.probe + 10_000,
        file_sync: args.fsync,
        pool_size: args.pool,
        redis_index_granularity: args.redis_index_ms.map(Duration::from_millis),
        moka_layout: args.moka_layout,
        redis_spill: args.redis_spill,
        ..StoreOptions::default()
    };
    let ttl = Duration::from_secs(30 * 60);
    println!(
        "loadgen store={label} sessions={} ops={} rounds={} concurrency={} workers={} raw={} payload_bytes={} fsync={}",
        args.sessions,
        args.ops,
        args.rounds,
        args.concurrency,
        args.workers,
        if args.raw { "yes" } else { "no" },
        payload::size(0)?,
        args.fsync,
    );
    if let Some(spill) = args.redis_spill {
        println!("options store={label} redis_connection_spill={spill}");
    }

    let opened = stores::open_store(&spec, &opts).await?;
    // a store without an owner index (memcached) runs with the index off: Manager::new refuses
    // the default config on it
    let owner_index = opened.store.capabilities().owner_index;
    if !owner_index {
        println!("# store={label} has no owner index: Config::owner_index = false");
    }
    let manager = Manager::new(
        opened.store.clone(),
        Config {
            idle_ttl: ttl,
            owner_index,
            ..Config::default()
        },
    );
    let manager = match manager {
        Ok(m) => m,
        Err(e) => {
            opened.cleanup().await?;
            return Err(e.into());
        }
    };
    let mut sides: Vec<(&str, Side)> =
        vec![("session", Side::Tasks(Arc::new(SessionTarget { manager })))];
    let mut raw_backend: Option<Arc<dyn Raw>> = None;
    let mut direct_backend: Option<Arc<dyn Direct>> = None;
    if args.raw {
        // More OS threads than this only add preemption on a small machine: a thread
        // descheduled mid-operation (holding a backend lock) stretches every waiter's latency.
        let threads = args
            .raw_threads
            .unwrap_or(args.concurrency.min(DEFAULT_RAW_THREADS_CAP));
        let baseline = match stores::open_raw(&spec, &opts, threads).await {
            Ok(b) => b,
            Err(e) => {
                opened.cleanup().await?;
                return Err(e);
            }
        };
        match baseline {
            Baseline::Tasks(raw) => {
                let raw: Arc<dyn Raw> = Arc::from(raw);
                raw_backend = Some(raw.clone());
                sides.push(("raw", Side::Tasks(Arc::new(RawTarget { raw, ttl }))));
            }
            Baseline::Threads(direct) => {
                let direct: Arc<dyn Direct> = Arc::from(direct);
                let writers = match args.raw_threads {
                    Some(t) => t,
                    None => direct.writer_threads(threads),
                };
                println!(
                    "# raw baseline: {} driven directly from {threads} OS threads, {writers} of \
                     them for writes (concurrency {})",
                    direct.name(),
                    args.concurrency
                );
                direct_backend = Some(direct.clone());
                sides.push((
                    "raw",
                    Side::Threads(Arc::new(DirectTarget { direct, ttl }), threads, writers),
                ));
            }
        }
    }
    let mut stats = if label == "redis" {
        Some(RedisStats::open(&spec.url()).await?)
    } else {
        None
    };

    let outcome = async {
        // setup: N sessions per side
        let mut ids = Vec::new();
        for (mode, t) in &sides {
            let (created, r) = t
                .run(
                    Phase::Create,
                    args.sessions,
                    args.concurrency,
                    Arc::new(Vec::new()),
                    0,
                    1,
                )
                .await?;
            println!(
                "setup store={label} mode={mode} sessions={} secs={:.3}",
                created.len(),
                r.elapsed.as_secs_f64()
            );
            ids.push(Arc::new(created));
        }
        // The setup's dirty pages (tens of thousands of fsynced files for the file store) are
        // written back while the first round runs, which is always the session side's: flush
        // them first, so that the first rounds do not share the disk with that write-back.
        let synced = std::process::Command::new("sync").status();
        if !synced.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("# sync after setup failed: {synced:?}");
        }
        for (p, phase) in args.phases.iter().copied().enumerate() {
            // rounds alternate the sides, so load changes on a shared machine hit both alike
            let mut merged: Vec<Option<PhaseResult>> = vec![None; sides.len()];
            let mut round_rates: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
            let mut next = args.sessions + 1 + p as u64 * args.ops;
            for round in 0..args.rounds {
                let share = args.ops / args.rounds + u64::from(round < args.ops % args.rounds);
                for ((((_, t), ids), acc), rates) in sides
                    .iter()
                    .zip(&ids)
                    .zip(merged.iter_mut())
                    .zip(round_rates.iter_mut())
                {
                    let (_, r) = t
                        .run(
                            phase,
                            share,
                            args.concurrency,
                            ids.clone(),
                            next,
                            100 + p as u64 * 1000 + round,
                        )
                        .await?;
                    rates.push(r.ops_per_sec());
                    *acc = Some(match acc.take() {
                        None => r,
                        Some(mut a) => {
                            a.ops += r.ops;
                            a.elapsed += r.elapsed;
                            a.latency.add(&r.latency)?;
                            a
                        }
                    });
                }
                next += share;
            }
            for (((mode, t), ids), (r, rates)) in sides
                .iter()
                .zip(ids.iter())
                .zip(merged.iter().zip(&round_rates))
            {
                let r = r.as_ref().ok_or("no rounds ran")?;
                print_result(&label, mode, phase, r, rates);
                if let Some(stats) = stats.as_mut() {
                    probe(stats, t, phase, args.probe, ids.clone(), &label, mode).await?;
                }
            }
            if let [session, raw] = &round_rates[..] {
                // each round ran both sides back to back: the ratio of each round, then the median
                let ratios: Vec<f64> = session.iter().zip(raw).map(|(s, r)| s / r).collect();
                let ratio = median(&ratios);
                let (t, met) = match target(&label, phase) {
                    Some(t) => (format!("{t:.2}"), if ratio >= t { "yes" } else { "no" }),
                    None => ("none".to_string(), "n/a"),
                };
                println!(
                    "ratio store={label} phase={} session_over_raw={ratio:.2} target={t} met={met}",
                    phase.name()
                );
            }
        }
        Ok::<_, BoxError>(())
    }
    .await;

    // the raw baseline first: it closes its pool before the driver's cleanup drops the schema
    if let Some(raw) = raw_backend {
        raw.cleanup().await?;
    }
    // the embedded baseline closes its files (and deletes its temporary directory) off the runtime
    if let Some(direct) = direct_backend {
        drop(sides);
        tokio::task::spawn_blocking(move || drop(direct)).await?;
    }
    opened.cleanup().await?;
    outcome
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
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
            eprintln!("loadgen: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}
