//! Shared test support: one fixture per backend, and the behaviour suite both backends run.
#![allow(dead_code, clippy::unwrap_used)]

pub mod procs;
pub mod suite;

use std::sync::Arc;
use std::time::Duration;

use session_connect::{Backend, Event, Hub, MemoryBackend, RedisBackend};
use session_core::{Config, Manager, SessionId, Storage, async_trait};
use session_memory::MemoryStore;
use session_redis::RedisStore;
use tokio::sync::mpsc;

/// Beat interval of the tests: short, so liveness cases take a second or two.
pub const BEAT: Duration = Duration::from_millis(150);

/// One isolated registry (and session store) for one test case.
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// A backend for one more node: the same registry, the node's own connections.
    async fn backend(&self) -> Arc<dyn Backend>;
    /// The session store every node's manager works on.
    fn store(&self) -> Arc<dyn Storage>;
    /// A session manager on the store that no hub follows (an HTTP server without a hub).
    fn manager(&self) -> Manager;
    /// Deletes what the case left behind.
    async fn cleanup(&self);
}

/// The in-process backend: every node of a case shares one `MemoryBackend`.
pub struct MemoryFixture {
    backend: Arc<MemoryBackend>,
    store: Arc<dyn Storage>,
    manager: Manager,
}

pub async fn memory_fixture() -> Arc<dyn Fixture> {
    let store: Arc<dyn Storage> = Arc::new(MemoryStore::new());
    Arc::new(MemoryFixture {
        backend: Arc::new(MemoryBackend::new()),
        store: store.clone(),
        manager: Manager::new(store, Config::default()).expect("manager"),
    })
}

#[async_trait]
impl Fixture for MemoryFixture {
    async fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }
    fn store(&self) -> Arc<dyn Storage> {
        self.store.clone()
    }
    fn manager(&self) -> Manager {
        self.manager.clone()
    }
    async fn cleanup(&self) {}
}

/// The shared server of the tests: `REDIS_URL`, or 127.0.0.1:6379.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test (or run) uses.
pub fn unique_prefix() -> String {
    let random = SessionId::generate().expect("OS randomness");
    format!("connecttest:{}", &random.as_str()[..12])
}

fn redis_missing(e: impl std::fmt::Display) -> ! {
    panic!(
        "Redis is not reachable at {}; start it with: redis-server --daemonize yes --bind \
         127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no ({e})",
        redis_url()
    )
}

/// Opens a Redis backend on the shared server, failing with a how-to if it is not there.
pub async fn open_redis(prefix: &str) -> RedisBackend {
    match RedisBackend::open(&redis_url(), prefix).await {
        Ok(b) => b,
        Err(e) => redis_missing(e),
    }
}

/// The Redis backend: each node opens its own `RedisBackend` (own connections) on one prefix.
pub struct RedisFixture {
    prefix: String,
    store: Arc<dyn Storage>,
    manager: Manager,
}

pub async fn redis_fixture() -> Arc<dyn Fixture> {
    let prefix = unique_prefix();
    let store = match RedisStore::builder()
        .prefix(format!("{prefix}:sess"))
        .open(&redis_url())
        .await
    {
        Ok(s) => s,
        Err(e) => redis_missing(e),
    };
    let store: Arc<dyn Storage> = Arc::new(store);
    Arc::new(RedisFixture {
        prefix,
        store: store.clone(),
        manager: Manager::new(store, Config::default()).expect("manager"),
    })
}

#[async_trait]
impl Fixture for RedisFixture {
    async fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(open_redis(&self.prefix).await)
    }
    fn store(&self) -> Arc<dyn Storage> {
        self.store.clone()
    }
    fn manager(&self) -> Manager {
        self.manager.clone()
    }
    async fn cleanup(&self) {
        open_redis(&self.prefix)
            .await
            .clear_prefix()
            .await
            .expect("deleting the test's keys");
    }
}

/// Starts a node on `port` with the test beat and a session manager of its own on the
/// fixture's store (as each server process has its own), which the hub follows.
pub async fn node(fx: &Arc<dyn Fixture>, port: u16) -> Hub {
    let manager = Manager::new(fx.store(), Config::default()).expect("manager");
    Hub::builder(fx.backend().await)
        .addr("127.0.0.1", port)
        .beat_interval(BEAT)
        .sessions(manager)
        .start()
        .await
        .expect("hub starts")
}

/// An outbox and its receiving end.
pub fn outbox() -> (mpsc::Sender<Event>, mpsc::Receiver<Event>) {
    mpsc::channel(64)
}

/// The next event of `rx`, waiting up to 5 s.
pub async fn next_event(rx: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("outbox open")
}

/// Asserts nothing arrives on `rx` for 200 ms.
pub async fn assert_quiet(rx: &mut mpsc::Receiver<Event>) {
    if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
        panic!("unexpected event {ev:?}");
    }
}

/// Polls `f` every 20 ms until it returns true, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if f().await {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
