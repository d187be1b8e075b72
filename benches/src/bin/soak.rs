//! `soak`: a fixed request rate through the session layer for a set time (10 minutes by
//! default) against any store `loadgen` accepts, reporting per minute the process's resident
//! memory, p50/p99 latency, operations done and errors, and at the end whether memory or p99
//! latency grew from the first minute to the last. See the crate README.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};

use session_benches::soak::{self, Mix, Population, SoakConfig, Window, mib};
use session_benches::stores::{self, StoreOptions, StoreSpec};
use session_benches::{BoxError, Result};
use session_core::{Config, Manager};

const USAGE: &str = "usage: soak --store SPEC [--rate R] [--duration D] [--window W] \
[--sessions N] [--mix READ,WRITE,LOGIN] [--max-in-flight M] [--workers T] [--pool P]
  SPEC: memory | file[:DIR] | sqlite[:PATH] | sled[:DIR] | redis://HOST:PORT[/DB]
        | postgres://USER@HOST:PORT/DB | mysql://USER@HOST:PORT | memcached://HOST:PORT
  R: operations per second (default 2000, also 2000/s); D, W: 90s, 10m, 1h (default 10m, 1m)
  N: sessions in the population (default 10000); mix weights default 80,15,5
  M: most operations in flight (default 1024); T: tokio worker threads (default 2)";

#[derive(Debug)]
struct Args {
    store: String,
    config: SoakConfig,
    workers: usize,
    pool: Option<u32>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        store: String::new(),
        config: SoakConfig::default(),
        workers: 2,
        pool: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| BoxError::from(format!("{name} needs a value\n{USAGE}")))
        };
        let count = |s: String, name: &str| -> Result<u64> {
            s.replace('_', "")
                .parse()
                .map_err(|e| format!("{name}: {e}\n{USAGE}").into())
        };
        match flag.as_str() {
            "--store" => a.store = value("--store")?,
            "--rate" => a.config.rate = soak::parse_rate(&value("--rate")?)?,
            "--duration" => a.config.duration = soak::parse_duration(&value("--duration")?)?,
            "--window" => a.config.window = soak::parse_duration(&value("--window")?)?,
            "--sessions" => a.config.sessions = count(value("--sessions")?, "--sessions")? as usize,
            "--mix" => a.config.mix = Mix::parse(&value("--mix")?)?,
            "--max-in-flight" => {
                a.config.max_in_flight =
                    count(value("--max-in-flight")?, "--max-in-flight")? as usize
            }
            "--workers" => a.workers = count(value("--workers")?, "--workers")? as usize,
            "--pool" => a.pool = Some(count(value("--pool")?, "--pool")?.clamp(1, 10_000) as u32),
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
    if a.config.sessions == 0 || a.config.max_in_flight == 0 || a.workers == 0 {
        return Err(
            format!("--sessions, --max-in-flight and --workers must be above 0\n{USAGE}").into(),
        );
    }
    Ok(a)
}

/// The label of a window in the output: minutes when windows are a minute long.
fn unit(window: Duration) -> &'static str {
    if window == Duration::from_secs(60) {
        "minute"
    } else {
        "window"
    }
}

fn print_window(label: &str, unit: &str, w: &Window) {
    let errors: Vec<String> = w
        .error_texts
        .iter()
        .map(|(text, n)| format!("{n}x {text:?}"))
        .collect();
    println!(
        "{unit}={} store={label} ops={} ops_per_sec={:.1} reads={} writes={} logins={} \
         p50_us={:.0} p99_us={:.0} p999_us={:.0} max_us={:.0} late_p99_us={:.0} \
         service_p50_us={:.0} service_p99_us={:.0} errors={} missing={} rss_mib={:.1} \
         rss_max_mib={:.1} in_flight_max={}{}",
        w.index,
        w.ops,
        w.ops_per_sec(),
        w.by_op[0],
        w.by_op[1],
        w.by_op[2],
        w.quantile_us(0.50),
        w.quantile_us(0.99),
        w.quantile_us(0.999),
        w.max_us(),
        w.lag_us(0.99),
        w.service_us(0.50),
        w.service_us(0.99),
        w.errors,
        w.missing,
        mib(w.rss),
        mib(w.rss_max),
        w.in_flight_max,
        if errors.is_empty() {
            String::new()
        } else {
            format!(" error_texts=[{}]", errors.join("; "))
        }
    );
}

fn print_table(unit: &str, windows: &[Window]) {
    println!();
    println!(
        "| {unit} | ops | ops/s | p50 µs | p99 µs | p99.9 µs | max µs | late p99 µs | \
         service p50 / p99 µs | errors | RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for w in windows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} / {:.0} | {} | {:.1} |",
            w.index,
            w.ops,
            w.ops_per_sec(),
            w.quantile_us(0.50),
            w.quantile_us(0.99),
            w.quantile_us(0.999),
            w.max_us(),
            w.lag_us(0.99),
            w.service_us(0.50),
            w.service_us(0.99),
            w.errors,
            mib(w.rss),
        );
    }
    println!();
}

async fn run(args: Args) -> Result<()> {
    let spec = StoreSpec::parse(&args.store);
    let label = spec.label().to_string();
    let c = &args.config;
    let opts = StoreOptions {
        capacity: (c.sessions as u64 + (c.rate * c.duration.as_secs_f64()) as u64).max(100_000),
        pool_size: args.pool,
        redis_prefix: session_benches::private_prefix("soak"),
        ..StoreOptions::default()
    };
    println!(
        "soak store={label} rate={} duration_s={} window_s={} sessions={} mix={} \
         max_in_flight={} workers={} payload_bytes={} redis_prefix={}",
        c.rate,
        c.duration.as_secs_f64(),
        c.window.as_secs_f64(),
        c.sessions,
        c.mix,
        c.max_in_flight,
        args.workers,
        session_benches::payload::size(0)?,
        if label == "redis" || label == "memcached" {
            opts.redis_prefix.as_str()
        } else {
            "-"
        },
    );
    let opened = stores::open_store(&spec, &opts).await?;
    let owner_index = opened.store.capabilities().owner_index;
    if !owner_index {
        println!("# store={label} has no owner index: Config::owner_index = false");
    }
    let config = Config {
        idle_ttl: Duration::from_secs(30 * 60),
        owner_index,
        ..Config::default()
    };
    let outcome = async {
        let manager = Manager::new(opened.store.clone(), config)?;
        let unit = unit(c.window);
        let began = Instant::now();
        let population = Population::create(&manager, c.sessions).await?;
        println!(
            "setup store={label} sessions={} secs={:.1}",
            population.len(),
            began.elapsed().as_secs_f64()
        );
        // Ctrl-C or SIGTERM ends the run early; the windows so far and the cleanup still happen.
        let stop = Arc::new(AtomicBool::new(false));
        let signals = {
            let stop = stop.clone();
            let mut term = signal(SignalKind::terminate())?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                eprintln!(
                    "soak: stopping early (signal); cleaning up after the running operations"
                );
                stop.store(true, Ordering::Relaxed);
            })
        };
        let windows = soak::soak(manager, population, c, stop, |w| {
            print_window(&label, unit, w)
        })
        .await;
        signals.abort();
        let windows = windows?;
        print_table(unit, &windows);
        if let Some(v) = soak::verdict(&windows) {
            println!(
                "summary store={label} ops={} errors={} min_ops_per_sec={:.1} \
                 rss_first_mib={:.1} rss_last_mib={:.1} rss_slope_mib_per_{unit}={:+.2} \
                 p99_first_us={:.0} p99_last_us={:.0} service_p99_first_us={:.0} \
                 service_p99_last_us={:.0} memory={} latency={}",
                v.ops,
                v.errors,
                v.min_ops_per_sec,
                mib(v.rss.0),
                mib(v.rss.1),
                v.rss_slope / (1 << 20) as f64,
                v.p99_us.0,
                v.p99_us.1,
                v.service_p99_us.0,
                v.service_p99_us.1,
                if v.memory_grew { "GREW" } else { "flat" },
                if v.latency_grew { "GREW" } else { "flat" },
            );
        }
        Ok::<_, BoxError>(())
    }
    .await;
    opened.cleanup().await?;
    outcome
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak: {e}");
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
            eprintln!("soak: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("soak: {e}");
        std::process::exit(1);
    }
}
