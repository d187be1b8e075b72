//! `peerhttp`: the peer side of issue 14 item 5, a minimal axum 0.8 app on tower-sessions 0.14's
//! `SessionManagerLayer` with its moka or Redis store. Routes:
//!
//! - `GET /seed`: a new session with the five keys of the benchmark payload (answers with its
//!   `Set-Cookie`);
//! - `GET /read`: reads `user_id` and `name`, returns them (no write);
//! - `GET /write`: reads `user_id` and `name`, increments `counter`, returns the new count;
//! - `GET /hello`: plain text outside the session layer (the axum floor).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use session_peers::Result;
use session_peers::payload::{self, COUNTER, KEYS};
use session_peers::stores::{self, StoreSpec};
use tower_sessions::{Expiry, Session, SessionManagerLayer, SessionStore};

const USAGE: &str =
    "usage: peerhttp --store moka|redis://HOST:PORT[/DB] [--port P] [--workers W] [--pool P]
  --port P     port on 127.0.0.1 (default 3000)
  --workers W  tokio worker threads (default 2)
  --pool P     fred pool size of the Redis store (default 4)";

struct Args {
    store: String,
    port: u16,
    workers: usize,
    pool: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        store: String::new(),
        port: 3000,
        workers: 2,
        pool: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--store" => a.store = value("--store")?,
            "--port" => a.port = value("--port")?.parse()?,
            "--workers" => a.workers = value("--workers")?.parse()?,
            "--pool" => a.pool = value("--pool")?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    if a.store.is_empty() || a.workers == 0 || a.pool == 0 {
        return Err(format!("--store is required; --workers and --pool above 0\n{USAGE}").into());
    }
    Ok(a)
}

type Answer = std::result::Result<String, (StatusCode, String)>;

fn fail(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Numbers the seeded sessions, so each gets the payload of its own number.
static SEEDED: AtomicU64 = AtomicU64::new(0);

async fn seed(session: Session) -> Answer {
    let n = SEEDED.fetch_add(1, Ordering::Relaxed);
    let (user_id, name, roles, cart, csrf) = payload::values(n);
    session.insert(KEYS[0], user_id).await.map_err(fail)?;
    session.insert(KEYS[1], name).await.map_err(fail)?;
    session.insert(KEYS[2], roles).await.map_err(fail)?;
    session.insert(KEYS[3], cart).await.map_err(fail)?;
    session.insert(KEYS[4], csrf).await.map_err(fail)?;
    Ok(format!("seeded {n}\n"))
}

/// The two keys every page reads; 404 when the session has none (no or unknown cookie).
async fn read_two(session: &Session) -> std::result::Result<(u64, String), (StatusCode, String)> {
    let user: Option<u64> = session.get(KEYS[0]).await.map_err(fail)?;
    let name: Option<String> = session.get(KEYS[1]).await.map_err(fail)?;
    match (user, name) {
        (Some(u), Some(n)) => Ok((u, n)),
        _ => Err((StatusCode::NOT_FOUND, "no session\n".into())),
    }
}

async fn read(session: Session) -> Answer {
    let (user, name) = read_two(&session).await?;
    Ok(format!("{user} {name}\n"))
}

async fn write(session: Session) -> Answer {
    let (user, _name) = read_two(&session).await?;
    let n: u64 = session.get(COUNTER).await.map_err(fail)?.unwrap_or(0);
    session.insert(COUNTER, n + 1).await.map_err(fail)?;
    Ok(format!("{user} {}\n", n + 1))
}

async fn hello() -> &'static str {
    "Hello, World!"
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

async fn serve<S: SessionStore + Clone>(store: S, label: &str, port: u16) -> Result<()> {
    // as the peers' examples configure it: plain-HTTP cookies, an idle expiry (loadgen's 30 min)
    let layer = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30)));
    let app = Router::new()
        .route("/seed", get(seed))
        .route("/read", get(read))
        .route("/write", get(write))
        .layer(layer)
        .merge(Router::new().route("/hello", get(hello)));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("peerhttp store={label} listening on http://{addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    match StoreSpec::parse(&args.store)? {
        StoreSpec::Moka => serve(stores::moka(1_000_000), "moka", args.port).await,
        StoreSpec::Redis(url) => {
            let pool = stores::redis_pool(&url, args.pool).await?;
            let outcome = serve(stores::redis(pool.clone()), "redis", args.port).await;
            // the seeded sessions expire by themselves (30 minutes): nothing else to clean
            use tower_sessions_redis_store::fred::prelude::ClientLike;
            pool.quit().await?;
            outcome
        }
        StoreSpec::Sqlite(_) => Err(format!("peerhttp serves moka or redis\n{USAGE}").into()),
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("peerhttp: {e}");
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
            eprintln!("peerhttp: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("peerhttp: {e}");
        std::process::exit(1);
    }
}
