#![doc = include_str!("../README.md")]

mod pages;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use session_kit::axum::{CookieConfig, Key, SessionLayer};
use session_kit::driver::Driver;
use session_kit::layers::{MetricsLayer, TracingLayer};
use session_kit::{Config, Error, Manager, Result, Storage};
use tokio::net::TcpListener;

/// Which store the demo keeps its sessions in (`--store`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// `memory`: in-process, gone at exit.
    Memory,
    /// `file:DIR`: one file per session in `DIR`.
    File(PathBuf),
    /// `sqlite:PATH`: one SQLite database file (the default, `sqlite:./data/demo.sqlite3`).
    Sqlite(PathBuf),
    /// `sled:DIR`: a sled database in `DIR`.
    Sled(PathBuf),
    /// `redis://...` (or `rediss://...`): a Redis server.
    Redis(String),
}

impl Default for StoreSpec {
    fn default() -> Self {
        StoreSpec::Sqlite(PathBuf::from("./data/demo.sqlite3"))
    }
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let path = |p: &str, what: &str| {
            if p.is_empty() {
                Err(format!(
                    "--store {what}: needs a path, like {what}:./data/x"
                ))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        if s == "memory" {
            Ok(StoreSpec::Memory)
        } else if let Some(p) = s.strip_prefix("file:") {
            path(p, "file").map(StoreSpec::File)
        } else if let Some(p) = s.strip_prefix("sqlite:") {
            path(p, "sqlite").map(StoreSpec::Sqlite)
        } else if let Some(p) = s.strip_prefix("sled:") {
            path(p, "sled").map(StoreSpec::Sled)
        } else if s.starts_with("redis://") || s.starts_with("rediss://") {
            Ok(StoreSpec::Redis(s.to_owned()))
        } else {
            Err(format!(
                "unknown store {s:?}: use memory, file:DIR, sqlite:PATH, sled:DIR or redis://HOST:PORT"
            ))
        }
    }
}

impl StoreSpec {
    /// Opens the store, creating the parent directory of a SQLite file if needed (0700).
    /// Opens the store, wrapped in the tracing and metrics layers (a `DEBUG` span and a
    /// counted call per driver call; see [`metrics_handle`]).
    pub async fn open(&self) -> Result<Arc<dyn Storage>> {
        Ok(match self {
            StoreSpec::Memory => observed(session_kit::memory::MemoryStore::new()),
            StoreSpec::File(dir) => observed(session_kit::file::FileStore::open(dir).await?),
            StoreSpec::Sqlite(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    // Owner only (0700): the database holds session ids.
                    let mut dir = tokio::fs::DirBuilder::new();
                    dir.recursive(true);
                    #[cfg(unix)]
                    dir.mode(0o700);
                    dir.create(parent)
                        .await
                        .map_err(|e| Error::backend("demo", e))?;
                }
                observed(session_kit::sqlite::SqliteStore::open(path).await?)
            }
            StoreSpec::Sled(dir) => observed(session_kit::sled::SledStore::open(dir).await?),
            StoreSpec::Redis(url) => observed(session_kit::redis::RedisStore::open(url).await?),
        })
    }
}

/// `driver` wrapped in session-layers' tracing and metrics layers, as the demo's store.
fn observed<D: Driver>(driver: D) -> Arc<dyn Storage> {
    Arc::new(driver.layer(TracingLayer::new()).layer(MetricsLayer::new()))
}

/// The process's Prometheus recorder, installed as the global `metrics` recorder on first use
/// (once per process: later calls return the same handle). The metrics layer's counters
/// (`session_storage_calls_total`, `session_storage_errors_total`,
/// `session_storage_call_seconds`) land in it.
pub fn metrics_handle() -> std::result::Result<PrometheusHandle, String> {
    static HANDLE: std::sync::OnceLock<std::result::Result<PrometheusHandle, String>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .map_err(|e| format!("cannot install the metrics recorder: {e}"))
        })
        .clone()
}

/// `GET /metrics`: the recorder's figures in the Prometheus text format. Outside the session
/// layer: scraping never touches a session.
pub fn metrics_routes(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    handle.render(),
                )
            }
        }),
    )
}

/// The demo's command line: `--port N` (or `PORT`), `--store SPEC` (or `SESSION_STORE`), and
/// the `SESSION_SECRET` environment variable (32+ bytes: sign the cookie with a key derived
/// from it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The port on 127.0.0.1. Default 3000.
    pub port: u16,
    /// The store. Default `sqlite:./data/demo.sqlite3`.
    pub store: StoreSpec,
    /// The cookie signing secret, from `SESSION_SECRET`. Default none (unsigned cookies).
    pub secret: Option<String>,
}

/// Usage text for `--help`.
pub const USAGE: &str = "\
usage: session-demo [--port N] [--store SPEC]

  --port N        port on 127.0.0.1 (env PORT; default 3000)
  --store SPEC    memory | file:DIR | sqlite:PATH | sled:DIR | redis://HOST:PORT
                  (env SESSION_STORE; default sqlite:./data/demo.sqlite3)
  env SESSION_SECRET   32+ bytes: sign the session cookie with a key derived from it
";

impl Options {
    /// Parses the arguments (without the program name) over the environment: flags win over
    /// `PORT`/`SESSION_STORE`. `Err` holds the message to print (`USAGE` for `--help`).
    pub fn parse<I, S>(
        args: I,
        env: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut port = env("PORT");
        let mut store = env("SESSION_STORE");
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or(format!("{flag} needs a value\n\n{USAGE}"))
            };
            match flag.as_str() {
                "--port" | "-p" => port = Some(value()?),
                "--store" => store = Some(value()?),
                "--help" | "-h" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
            }
        }
        let port = match port {
            None => 3000,
            Some(p) => p
                .parse()
                .map_err(|_| format!("port {p:?} is not a number from 0 to 65535"))?,
        };
        let store = match store {
            None => StoreSpec::default(),
            Some(s) => s.parse()?,
        };
        let secret = env("SESSION_SECRET").filter(|s| !s.is_empty());
        if secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err("SESSION_SECRET must be at least 32 bytes".into());
        }
        Ok(Options {
            port,
            store,
            secret,
        })
    }
}

/// The demo's session config: the core defaults (2 h idle timeout), plus an 8-hour absolute
/// lifetime so a stolen cookie does not live forever, and expired sessions purged every minute
/// by [`Manager::start_purge`] on the stores that need it (SQLite, files, sled).
pub fn session_config() -> Config {
    Config {
        absolute_lifetime: Some(Duration::from_secs(8 * 3600)),
        purge_interval: Some(Duration::from_secs(60)),
        ..Config::default()
    }
}

/// The demo's cookie: the layer's safe defaults except `Secure`, which is off because the demo
/// runs over plain http on localhost (a production deployment behind HTTPS keeps the default).
/// Signed with a key derived from `secret` when there is one.
pub fn cookie_config(secret: Option<&str>) -> CookieConfig {
    CookieConfig {
        name: "demo_session".into(),
        secure: false,
        // Options::parse refuses secrets under 32 bytes, so a key is always made here
        keys: secret
            .and_then(|s| Key::try_from_secret(s.as_bytes()).ok())
            .into_iter()
            .collect(),
        ..CookieConfig::default()
    }
}

/// The demo's router: every page, wrapped in the [`SessionLayer`].
pub fn app(manager: Manager, cookies: CookieConfig) -> Result<Router> {
    let layer = SessionLayer::with_config(manager.clone(), cookies)?;
    Ok(pages::routes(manager).layer(layer))
}

/// Serves `router` on `listener` (with the peer address for the sessions' client info) until
/// `shutdown` completes, then lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> std::result::Result<Options, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Options::parse(args.iter().copied(), move |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults() {
        let o = parse(&[], &[]).expect("defaults");
        assert_eq!(o.port, 3000);
        assert_eq!(o.store, StoreSpec::Sqlite("./data/demo.sqlite3".into()));
        assert_eq!(o.secret, None);
    }

    #[test]
    fn flags_win_over_env() {
        let env = [("PORT", "4000"), ("SESSION_STORE", "memory")];
        let o = parse(&[], &env).expect("env");
        assert_eq!((o.port, o.store), (4000, StoreSpec::Memory));
        let o = parse(&["--port", "5000", "--store=sled:/tmp/x"], &env).expect("flags");
        assert_eq!((o.port, o.store), (5000, StoreSpec::Sled("/tmp/x".into())));
        let o = parse(&["--store", "redis://127.0.0.1:6379/"], &[]).expect("redis");
        assert_eq!(o.store, StoreSpec::Redis("redis://127.0.0.1:6379/".into()));
        let o = parse(&["--store", "file:d"], &[]).expect("file");
        assert_eq!(o.store, StoreSpec::File("d".into()));
    }

    #[test]
    fn bad_input_is_a_message() {
        assert!(parse(&["--port", "x"], &[]).is_err());
        assert!(parse(&["--port"], &[]).is_err());
        assert!(parse(&["--port", "70000"], &[]).is_err());
        assert!(parse(&["--store", "mongo"], &[]).is_err());
        assert!(parse(&["--store", "sqlite:"], &[]).is_err());
        assert!(parse(&["--what"], &[]).is_err());
        assert_eq!(parse(&["--help"], &[]), Err(USAGE.to_owned()));
        assert!(parse(&[], &[("SESSION_SECRET", "short")]).is_err());
        let long = "s".repeat(32);
        let o = parse(&[], &[("SESSION_SECRET", &long)]).expect("secret");
        assert_eq!(o.secret.as_deref(), Some(long.as_str()));
    }

    #[tokio::test]
    async fn the_background_purge_runs_where_the_store_needs_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sqlite = StoreSpec::Sqlite(dir.path().join("s.sqlite3"))
            .open()
            .await
            .expect("sqlite");
        let manager = Manager::new(sqlite, session_config()).expect("manager");
        let purge = manager.start_purge().expect("purge");
        assert!(purge.is_running());
        assert_eq!(purge.interval(), Some(Duration::from_secs(60)));
        purge.stop().await;
        let memory = StoreSpec::Memory.open().await.expect("memory");
        let manager = Manager::new(memory, session_config()).expect("manager");
        assert!(!manager.start_purge().expect("purge").is_running());
    }

    #[test]
    fn cookie_config_is_insecure_only_for_localhost_http() {
        let c = cookie_config(None);
        assert!(!c.secure && c.keys.is_empty());
        assert!(c.validate().is_ok());
        assert_eq!(cookie_config(Some(&"k".repeat(32))).keys.len(), 1);
    }
}
