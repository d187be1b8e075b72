//! `httpapp`: the minimal axum app of the HTTP end-to-end benchmark (issue 14, item 5), on
//! session-axum. Its twin on tower-sessions is `benches/peers` (`peerhttp`); both serve the same
//! three routes with the same ~1 KB session, so `benches/http.sh` can drive either with wrk.
//!
//! - `GET /seed`: a new session with the five benchmark keys (`payload::values`); answers with
//!   the cookie.
//! - `GET /read`: reads `user_id` and `name`, answers with them (no write).
//! - `GET /write`: the same, plus `counter` read, incremented and written (one per-key save).
//!
//! ```text
//! httpapp --store memory|redis://HOST:PORT [--port 3100] [--workers 2] [--redis-spill S]
//! ```
//!
//! `--redis-spill S`: the Redis driver's `connection_spill` (calls in flight on a connection
//! before the next call takes another; default the driver's, 32).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use session_axum::{CookieConfig, Session, SessionLayer};
use session_benches::payload::{self, COUNTER, KEYS};
use session_benches::stores::{self, StoreOptions, StoreSpec};
use session_benches::{BoxError, Result};
use session_core::{Config, Manager};

const USAGE: &str =
    "usage: httpapp --store memory|redis://HOST:PORT [--port P] [--workers W] [--redis-spill S]";

fn fail(e: session_core::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn seed(session: Session) -> std::result::Result<&'static str, (StatusCode, String)> {
    let n = u64::from(rand_u16());
    let (user_id, name, roles, cart, csrf) = payload::values(n);
    session.set(KEYS[0], &user_id).await.map_err(fail)?;
    session.set(KEYS[1], &name).await.map_err(fail)?;
    session.set(KEYS[2], &roles).await.map_err(fail)?;
    session.set(KEYS[3], &cart).await.map_err(fail)?;
    session.set(KEYS[4], &csrf).await.map_err(fail)?;
    Ok("seeded")
}

/// Any number will do for the payload: the sessions only need distinct-looking values.
fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos >> 8) as u16
}

async fn read_two(session: &Session) -> std::result::Result<String, (StatusCode, String)> {
    let user: Option<u64> = session.get(KEYS[0]).await.map_err(fail)?;
    let name: Option<String> = session.get(KEYS[1]).await.map_err(fail)?;
    match (user, name) {
        (Some(u), Some(n)) => Ok(format!("{u} {n}")),
        _ => Err((StatusCode::NOT_FOUND, "no session: GET /seed first".into())),
    }
}

async fn read(session: Session) -> std::result::Result<String, (StatusCode, String)> {
    read_two(&session).await
}

async fn write(session: Session) -> std::result::Result<String, (StatusCode, String)> {
    let body = read_two(&session).await?;
    let n: u64 = session.get(COUNTER).await.map_err(fail)?.unwrap_or(0);
    session.set(COUNTER, &(n + 1)).await.map_err(fail)?;
    Ok(format!("{body} {}", n + 1))
}

struct Args {
    store: String,
    port: u16,
    workers: usize,
    redis_spill: Option<usize>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        store: String::new(),
        port: 3100,
        workers: 2,
        redis_spill: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| BoxError::from(format!("{flag} needs a value\n{USAGE}")))
        };
        match flag.as_str() {
            "--store" => a.store = value()?,
            "--port" => a.port = value()?.parse()?,
            "--workers" => a.workers = value()?.parse()?,
            "--redis-spill" => a.redis_spill = Some(value()?.parse()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    match a.store.as_str() {
        "memory" => {}
        s if s.starts_with("redis://") => {}
        _ => return Err(format!("--store must be memory or redis://..\n{USAGE}").into()),
    }
    Ok(a)
}

async fn run(args: Args) -> Result<()> {
    let spec = StoreSpec::parse(&args.store);
    let opened = stores::open_store(
        &spec,
        &StoreOptions {
            capacity: 1_000_000,
            redis_spill: args.redis_spill,
            ..StoreOptions::default()
        },
    )
    .await?;
    let manager = Manager::new(
        opened.store.clone(),
        Config {
            idle_ttl: Duration::from_secs(30 * 60),
            ..Config::default()
        },
    )?;
    // plain http on loopback, unsigned, as tower-sessions' default: the same work on both sides
    let cookies = CookieConfig {
        secure: false,
        ..CookieConfig::default()
    };
    let app: Router = Router::new()
        .route("/seed", get(seed))
        .route("/read", get(read))
        .route("/write", get(write))
        .layer(SessionLayer::with_config(manager, cookies)?);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "httpapp on http://{}/ (store {}, session-axum); Ctrl-C stops it",
        listener.local_addr()?,
        spec.label()
    );
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    let cleaned = opened.cleanup().await;
    served?;
    cleaned?;
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("httpapp: {e}");
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
            eprintln!("httpapp: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("httpapp: {e}");
        std::process::exit(1);
    }
}
