//! Shared test support: the keys and the layered stores, an isolated store per backend (the
//! same setup as each driver's own `tests/conformance.rs`), a teardown registry, and the hook
//! that lets the conformance suite compare what a hashed store lists with the ids it wrote.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use session_at_rest::{EncryptionLayer, HashedIdsLayer, IdKey, ValueKey};
use session_conformance::Fixture;
use session_core::driver::{BoxFuture, Call, Driver, Intercept, Intercepted};
use session_core::{Result, ScanPage, SessionId, Storage};

// ----- keys and layers ---------------------------------------------------------------------

/// The id hashing key of the tests (`n` picks one of several).
pub fn id_key(n: u8) -> IdKey {
    IdKey::new(&[n; 32]).unwrap()
}

/// The value key `id` of the tests.
pub fn value_key(id: u32) -> ValueKey {
    ValueKey::new(id, &[u8::try_from(id % 251).unwrap() ^ 0x5a; 32]).unwrap()
}

/// The id hashing layer with key 1.
pub fn hashing() -> HashedIdsLayer {
    HashedIdsLayer::new(id_key(1))
}

/// The encryption layer with key 1.
pub fn encryption() -> EncryptionLayer {
    EncryptionLayer::new(value_key(1))
}

/// `inner` with both layers in the documented order: values encrypted, then ids hashed (the
/// encryption binds each value to its session's stored name).
pub fn at_rest<D: Driver>(inner: D) -> impl Driver {
    inner.layer(encryption()).layer(hashing())
}

// ----- the conformance hook ----------------------------------------------------------------

/// Wraps a hashed store for the conformance suite: remembers the handle of every id the case
/// passes, and turns the handles that `index_sessions` and `scan` list back into those ids, so
/// the suite's cases (written against stores that list ids) compare what they wrote with what
/// the store lists. Everything else passes through unchanged.
///
/// It checks what it translates: a listed id that is not a handle panics (the layer leaked a
/// stored name as an ordinary id), and a handle of no id the case used stays a handle, which
/// then differs from every expected id and fails the case.
pub struct Unhandle {
    layer: HashedIdsLayer,
    seen: Mutex<HashMap<String, SessionId>>,
}

impl Unhandle {
    /// The hook for stores hashed by `layer`.
    pub fn new(layer: HashedIdsLayer) -> Self {
        Unhandle {
            layer,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn translate(&self, ids: &mut [SessionId]) {
        let seen = self.seen.lock().unwrap();
        for id in ids {
            assert!(
                id.is_handle(),
                "the hashed store listed {id:?}, which is not a handle"
            );
            if let Some(real) = seen.get(id.as_str()) {
                *id = real.clone();
            }
        }
    }
}

impl Intercept for Unhandle {
    fn intercept<'a, T: Send + 'static>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        if let Some(id) = call.id.filter(|id| !id.is_handle()) {
            let handle = self.layer.handle_of(id).unwrap();
            assert!(handle.is_handle() && handle != *id);
            self.seen
                .lock()
                .unwrap()
                .insert(handle.as_str().to_owned(), id.clone());
        }
        Box::pin(async move {
            let mut out = run.await;
            if let Ok(value) = &mut out {
                let any: &mut dyn Any = value;
                if let Some(ids) = any.downcast_mut::<Vec<SessionId>>() {
                    self.translate(ids);
                } else if let Some(page) = any.downcast_mut::<ScanPage>() {
                    self.translate(&mut page.ids);
                }
            }
            out
        })
    }
}

/// `inner` with both layers, and the hook that lets the conformance suite read its listings.
pub fn for_suite<D: Driver>(inner: D) -> Arc<dyn Storage> {
    Arc::new(Intercepted::new(at_rest(inner), Unhandle::new(hashing())))
}

// ----- teardown registry -------------------------------------------------------------------

type Cleanup = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What to do after a case, by the address of the case's store.
fn registry() -> &'static Mutex<HashMap<usize, Cleanup>> {
    static REGISTRY: OnceLock<Mutex<HashMap<usize, Cleanup>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn addr_of(store: &Arc<dyn Storage>) -> usize {
    Arc::as_ptr(store) as *const () as usize
}

/// Remembers `cleanup` for the [`teardown`] of `store`.
pub fn on_teardown<F, Fut>(store: &Arc<dyn Storage>, cleanup: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let boxed: Cleanup = Box::new(move || Box::pin(cleanup()));
    registry().lock().unwrap().insert(addr_of(store), boxed);
}

/// Runs what [`on_teardown`] registered for `store`, if anything.
pub async fn teardown(store: Arc<dyn Storage>) {
    let cleanup = registry().lock().unwrap().remove(&addr_of(&store));
    if let Some(cleanup) = cleanup {
        cleanup().await;
    }
}

// ----- backends ----------------------------------------------------------------------------

/// A fresh SQLite database in its own temp dir; the fixture owns the dir.
pub async fn sqlite() -> (session_sqlite::SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = session_sqlite::SqliteStore::open(dir.path().join("sessions.db"))
        .await
        .expect("open a fresh database");
    (store, dir)
}

/// The shared Redis: `REDIS_URL`, or 127.0.0.1:6379.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A Redis store under a prefix no other test uses; fails with a how-to when Redis is down.
pub async fn redis(kind: &str) -> session_redis::RedisStore {
    let url = redis_url();
    let random = SessionId::generate().unwrap();
    let prefix = format!("sessiontest:atrest-{kind}:{}", &random.as_str()[..12]);
    match session_redis::RedisStore::builder()
        .prefix(prefix)
        .open(&url)
        .await
    {
        Ok(store) => store,
        Err(e) => panic!(
            "Redis is not reachable at {url}; start it with `bash scripts/services` or \
             redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" \
             --appendonly no ({e})"
        ),
    }
}

/// The test PostgreSQL: `POSTGRES_URL`, or the machine's on 127.0.0.1:5432.
pub struct Postgres;

#[session_core::async_trait]
impl session_sql::testing::TestServer for Postgres {
    type Dialect = session_postgres::PostgresDialect;
    const URL_VAR: &'static str = "POSTGRES_URL";
    const DEFAULT_URL: &'static str = "postgres://postgres@127.0.0.1:5432/postgres";
    const START: &'static str = "bash scripts/services (or pg_ctlcluster \
        --skip-systemctl-redirect $(ls /etc/postgresql) main start)";
    const CREATE_NAMESPACE: &'static str = "CREATE SCHEMA \"{ns}\"";
    const DROP_NAMESPACE: &'static str = "DROP SCHEMA IF EXISTS \"{ns}\" CASCADE";
    const QUOTE_BREAKER: &'static str = "x\"; DROP SCHEMA public; --";

    fn url_on_port(port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }

    async fn open_in(
        builder: session_postgres::PostgresStoreBuilder,
        schema: &str,
    ) -> Result<session_postgres::PostgresStore> {
        builder
            .schema(schema)
            .open(&session_sql::testing::url::<Postgres>())
            .await
    }
}

/// The test MariaDB: `MYSQL_URL`, or the machine's on 127.0.0.1:3306 as root.
pub struct MySql;

#[session_core::async_trait]
impl session_sql::testing::TestServer for MySql {
    type Dialect = session_mysql::MySqlDialect;
    const URL_VAR: &'static str = "MYSQL_URL";
    const DEFAULT_URL: &'static str = "mysql://root@127.0.0.1:3306";
    const START: &'static str = "bash scripts/services (or start-stop-daemon --start --oknodo \
        --background --exec /usr/sbin/mariadbd)";
    const CREATE_NAMESPACE: &'static str = "CREATE DATABASE `{ns}`";
    const DROP_NAMESPACE: &'static str = "DROP DATABASE IF EXISTS `{ns}`";
    const QUOTE_BREAKER: &'static str = "x`; DROP DATABASE mysql; --";

    fn url_on_port(port: u16) -> String {
        format!("mysql://root@127.0.0.1:{port}/test")
    }

    async fn open_in(
        builder: session_mysql::MySqlStoreBuilder,
        database: &str,
    ) -> Result<session_mysql::MySqlStore> {
        use std::str::FromStr;
        let url = session_sql::testing::url::<MySql>();
        let options = session_mysql::sqlx::mysql::MySqlConnectOptions::from_str(&url)
            .expect("MYSQL_URL is a valid URL");
        builder.open_with(options.database(database)).await
    }
}

/// How to start memcached, for failure messages.
pub const MEMCACHED_HOW_TO_START: &str = "start it with `bash scripts/services`, or by hand: \
    apt-get install -y memcached && memcached -d -u root -l 127.0.0.1 -p 11211 -m 256 -I 8m \
    (MEMCACHED_URL=host:port points the tests at another server)";

/// The shared memcached: `MEMCACHED_URL`, or 127.0.0.1:11211.
pub fn memcached_addr() -> String {
    std::env::var("MEMCACHED_URL").unwrap_or_else(|_| session_memcached::DEFAULT_ADDR.to_owned())
}

/// A memcached store under a prefix no other test uses; fails with a how-to when memcached is
/// down.
pub async fn memcached() -> session_memcached::MemcachedStore {
    let addr = memcached_addr();
    let random = SessionId::generate().unwrap();
    let prefix = format!("st_atrest_{}.", &random.as_str()[..12]);
    match session_memcached::MemcachedStore::builder()
        .prefix(prefix)
        .open(&addr)
        .await
    {
        Ok(store) => store,
        Err(e) => panic!("memcached is not reachable at {addr}: {e}; {MEMCACHED_HOW_TO_START}"),
    }
}

/// A raw client on the shared memcached.
pub async fn memcached_raw() -> async_memcached::Client {
    let addr = memcached_addr();
    let dsn = match addr.split_once("://") {
        Some((_, rest)) => format!("tcp://{rest}"),
        None => format!("tcp://{addr}"),
    };
    async_memcached::Client::new(&dsn)
        .await
        .unwrap_or_else(|e| {
            panic!("memcached is not reachable at {addr}: {e}; {MEMCACHED_HOW_TO_START}")
        })
}

/// Every key of the shared memcached that starts with `prefix` (`lru_crawler metadump all`,
/// retried while another dump runs).
pub async fn memcached_keys(prefix: &str) -> Vec<Vec<u8>> {
    let mut client = memcached_raw().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut keys = Vec::new();
        let complete = {
            let mut dump = client.dump_keys().await.expect("lru_crawler metadump");
            while let Some(entry) = dump.next().await {
                match entry {
                    Ok(meta) if meta.key.starts_with(prefix.as_bytes()) => keys.push(meta.key),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            dump.is_complete()
        };
        if complete {
            return keys;
        }
        assert!(
            Instant::now() < deadline,
            "memcached metadump stayed busy for 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        client = memcached_raw().await;
    }
}

/// Deletes every key of the shared memcached that starts with `prefix`, until two dumps in a
/// row find none (the crawler can miss an item moving between LRU queues).
pub async fn memcached_clear(prefix: &str) {
    use async_memcached::MetaProtocol as _;
    let mut clean = 0;
    for _ in 0..8 {
        let keys = memcached_keys(prefix).await;
        if keys.is_empty() {
            clean += 1;
            if clean == 2 {
                return;
            }
            continue;
        }
        clean = 0;
        let mut client = memcached_raw().await;
        for key in &keys {
            let _ = client.meta_delete(key, false, None, None).await;
        }
    }
}

/// `store` for the suite, with its cleanup registered.
pub fn fixture<F, Fut>(store: Arc<dyn Storage>, cleanup: F) -> Fixture
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    on_teardown(&store, cleanup);
    Fixture::new(store)
}
