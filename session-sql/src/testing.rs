//! Helpers for the tests of a dialect crate (feature `test-util`): a throwaway namespace per
//! test (a PostgreSQL schema, a MySQL database), the conformance suite's constructor and
//! teardown, and the driver tests every dialect shares.
//!
//! A dialect crate describes its test server once, with a [`TestServer`] in
//! `tests/common/mod.rs`, and then:
//!
//! ```ignore
//! // tests/conformance.rs
//! use session_sql::testing::Suite;
//! session_conformance::suite!(Suite::<common::Server>::new_store, Suite::<common::Server>::teardown);
//!
//! // tests/store.rs: the shared driver tests, one #[tokio::test] each
//! session_sql::sql_driver_tests!(common::Server);
//! ```
//!
//! [`outage`] holds the server-fault scenario, run on a server process the test owns.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use session_core::{ChangeSet, Data, Error, Result, SessionId, Storage, Value, async_trait};
use sqlx::{
    ColumnIndex, ConnectOptions as _, Connection as _, Database, Decode, Encode, Executor,
    IntoArguments, Type,
};

use crate::{ConnectOptions, Dialect, SqlStore, SqlStoreBuilder, migrate};

pub mod outage;

/// One dialect's test server: where it is, how to start it, and how to make a namespace.
#[async_trait]
pub trait TestServer: Send + Sync + 'static {
    /// The dialect under test.
    type Dialect: Dialect;

    /// The environment variable that points the tests at another server.
    const URL_VAR: &'static str;

    /// The machine's server, when [`URL_VAR`](Self::URL_VAR) is not set.
    const DEFAULT_URL: &'static str;

    /// How to start the server when it is down (part of the failure message).
    const START: &'static str;

    /// Creates the namespace `{ns}` (a template: `{ns}` is replaced by the name).
    const CREATE_NAMESPACE: &'static str;

    /// Drops the namespace `{ns}` with everything in it.
    const DROP_NAMESPACE: &'static str;

    /// A table name that would break out of this dialect's quotes if it were not checked.
    const QUOTE_BREAKER: &'static str;

    /// A URL of this dialect for `127.0.0.1:{port}`.
    fn url_on_port(port: u16) -> String;

    /// Opens `builder` with the tables in namespace `ns`, the way the dialect's users
    /// usually do (PostgreSQL: `schema(ns)`; MySQL: the URL's database).
    async fn open_in(
        builder: SqlStoreBuilder<Self::Dialect>,
        ns: &str,
    ) -> Result<SqlStore<Self::Dialect>>;
}

/// The test server's URL: [`TestServer::URL_VAR`] or [`TestServer::DEFAULT_URL`].
pub fn url<S: TestServer>() -> String {
    std::env::var(S::URL_VAR).unwrap_or_else(|_| S::DEFAULT_URL.to_owned())
}

/// Why the tests cannot run: the server is not reachable, and how to start it.
pub fn unreachable<S: TestServer>(why: impl std::fmt::Display) -> String {
    format!(
        "{} is not reachable at {} (set {} to use another server); start it with: {} ({why})",
        S::Dialect::SERVER,
        url::<S>(),
        S::URL_VAR,
        S::START
    )
}

/// A lower-case identifier no other test (or test run) uses: `sesstest_{kind}_{random}`.
pub fn unique_name(kind: &str) -> String {
    let random = SessionId::generate().expect("OS randomness");
    let tail: String = random
        .as_str()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("sesstest_{kind}_{tail}")
}

/// `text` as a stored value.
pub fn val(text: &str) -> Value {
    Value::encode(text).expect("encode")
}

/// The TTL of the tests' sessions that should not expire during a test.
pub const HOUR: Duration = Duration::from_secs(3600);

/// Stores handed to the conformance suite with their namespace, by the address of their `Arc`,
/// so the teardown (which only sees `Arc<dyn Storage>`) can close the pool and drop the
/// namespace. Each value is a `(SqlStore<D>, String)`.
fn registry() -> &'static Mutex<HashMap<usize, Box<dyn Any + Send>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<usize, Box<dyn Any + Send>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn addr_of(store: &Arc<dyn Storage>) -> usize {
    Arc::as_ptr(store) as *const () as usize
}

/// The shared tests and helpers for test server `S`, as associated functions:
/// `Suite::<Server>::new_store`, `Suite::<Server>::data_survives_a_new_pool`, ...
pub struct Suite<S>(PhantomData<S>);

impl<S: TestServer> Suite<S>
where
    // The same as `SqlStore`'s `Driver` implementation asks.
    for<'c> &'c mut <<S::Dialect as Dialect>::Db as Database>::Connection:
        Executor<'c, Database = <S::Dialect as Dialect>::Db>,
    for<'q> <<S::Dialect as Dialect>::Db as Database>::Arguments<'q>:
        IntoArguments<'q, <S::Dialect as Dialect>::Db>,
    for<'q> i64: Encode<'q, <S::Dialect as Dialect>::Db>
        + Decode<'q, <S::Dialect as Dialect>::Db>
        + Type<<S::Dialect as Dialect>::Db>,
    for<'q> &'q str: Encode<'q, <S::Dialect as Dialect>::Db> + Type<<S::Dialect as Dialect>::Db>,
    for<'r> Vec<u8>: Decode<'r, <S::Dialect as Dialect>::Db> + Type<<S::Dialect as Dialect>::Db>,
    usize: ColumnIndex<<<S::Dialect as Dialect>::Db as Database>::Row>,
{
    /// Runs one statement on a connection of its own, failing with how to start the server
    /// when it is down.
    pub async fn admin(sql: &str) {
        let options: ConnectOptions<S::Dialect> = url::<S>().parse().expect("a valid URL");
        let mut conn = match options.connect().await {
            Ok(conn) => conn,
            Err(e) => panic!("{}", unreachable::<S>(e)),
        };
        conn.execute(sql).await.expect(sql);
        let _ = conn.close().await;
    }

    /// Creates a fresh namespace and returns its name.
    pub async fn create_namespace(kind: &str) -> String {
        let ns = unique_name(kind);
        Self::admin(&S::CREATE_NAMESPACE.replace("{ns}", &ns)).await;
        ns
    }

    /// Drops a namespace made by [`create_namespace`](Self::create_namespace).
    pub async fn drop_namespace(ns: &str) {
        Self::admin(&S::DROP_NAMESPACE.replace("{ns}", ns)).await;
    }

    /// Opens a store with a pool of 3 in namespace `ns`.
    pub async fn open_in(ns: &str) -> SqlStore<S::Dialect> {
        let builder = SqlStore::<S::Dialect>::builder().max_connections(3);
        S::open_in(builder, ns)
            .await
            .unwrap_or_else(|e| panic!("{}", unreachable::<S>(e)))
    }

    /// The integer a statement template on the store's tables returns (a count, a version).
    pub async fn scalar(store: &SqlStore<S::Dialect>, template: &str) -> i64 {
        let sql = store.tables().render(template);
        sqlx::query_scalar(&sql)
            .fetch_one(store.pool())
            .await
            .expect(&sql)
    }

    /// A fresh store in a new namespace of its own, for the conformance suite; remembered for
    /// [`teardown`](Self::teardown).
    pub async fn new_store() -> Arc<dyn Storage> {
        let ns = Self::create_namespace("conf").await;
        let store = Self::open_in(&ns).await;
        let shared: Arc<dyn Storage> = Arc::new(store.clone());
        let entry: Box<dyn Any + Send> = Box::new((store, ns));
        registry().lock().unwrap().insert(addr_of(&shared), entry);
        shared
    }

    /// A fresh store in a new namespace of its own, and its neighbour for the conformance
    /// suite's scan cases (`Fixture::neighbour`): a store on another table in the same namespace.
    /// Both are remembered for [`teardown`](Self::teardown), which drops the namespace (the
    /// second drop finds nothing left).
    pub async fn new_store_and_neighbour() -> (Arc<dyn Storage>, Arc<dyn Storage>) {
        let ns = Self::create_namespace("conf").await;
        let mut stores = Vec::with_capacity(2);
        for builder in [
            SqlStore::<S::Dialect>::builder(),
            SqlStore::<S::Dialect>::builder().table("other_app"),
        ] {
            let store = S::open_in(builder.max_connections(3), &ns)
                .await
                .unwrap_or_else(|e| panic!("{}", unreachable::<S>(e)));
            let shared: Arc<dyn Storage> = Arc::new(store.clone());
            let entry: Box<dyn Any + Send> = Box::new((store, ns.clone()));
            registry().lock().unwrap().insert(addr_of(&shared), entry);
            stores.push(shared);
        }
        let neighbour = stores.pop().expect("two stores");
        let store = stores.pop().expect("two stores");
        (store, neighbour)
    }

    /// Closes the pool of a store made by [`new_store`](Self::new_store) or
    /// [`new_store_and_neighbour`](Self::new_store_and_neighbour) and drops its namespace.
    pub async fn teardown(store: Arc<dyn Storage>) {
        let found = registry().lock().unwrap().remove(&addr_of(&store));
        let entry = found.expect("teardown of a store that new_store did not make");
        let (store, ns) = *entry
            .downcast::<(SqlStore<S::Dialect>, String)>()
            .expect("a store of this dialect");
        store.close().await;
        Self::drop_namespace(&ns).await;
    }

    // ----- the shared driver tests (`sql_driver_tests!`) ---------------------------------

    /// Sessions, owner bindings and the schema version are there for a new pool.
    pub async fn data_survives_a_new_pool() {
        let ns = Self::create_namespace("reopen").await;
        let id = SessionId::generate().unwrap();
        let first = Self::open_in(&ns).await;
        first.set(&id, "user", val("alice"), HOUR).await.unwrap();
        first.index_add("alice", &id, HOUR).await.unwrap();
        first.close().await;

        let second = Self::open_in(&ns).await;
        assert_eq!(second.get(&id, "user").await.unwrap(), Some(val("alice")));
        assert_eq!(
            second.index_sessions("alice").await.unwrap(),
            vec![id.clone()]
        );
        let loaded = second.load(&id).await.unwrap().expect("still there");
        assert!(loaded.expires_at.is_some());
        assert_eq!(
            second.schema_version().await.unwrap(),
            migrate::schema_version::<S::Dialect>()
        );
        second.close().await;
        Self::drop_namespace(&ns).await;
    }

    /// A purge in batches of 3 deletes exactly the 10 expired sessions, with their values and
    /// owner bindings, and reports the exact count.
    pub async fn purge_in_batches_removes_exactly_the_expired_sessions() {
        let ns = Self::create_namespace("purge").await;
        let builder = SqlStore::<S::Dialect>::builder()
            .max_connections(2)
            .purge_batch(3);
        let store = S::open_in(builder, &ns).await.unwrap();
        for i in 0..10 {
            let id = SessionId::generate().unwrap();
            let mut data = Data::new();
            data.insert("a".into(), val(&i.to_string()));
            data.insert("b".into(), val("x"));
            store
                .set_map(&id, data, Duration::from_millis(50))
                .await
                .unwrap();
            store.index_add("owner", &id, HOUR).await.unwrap();
        }
        let live: Vec<SessionId> = (0..4).map(|_| SessionId::generate().unwrap()).collect();
        for id in &live {
            store.set(id, "k", val("v"), HOUR).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(150)).await;

        // 10 expired sessions in batches of 3: four batches, the exact count.
        assert_eq!(store.purge_expired().await.unwrap(), 10);
        assert_eq!(store.purge_expired().await.unwrap(), 0);
        for id in &live {
            assert_eq!(store.get(id, "k").await.unwrap(), Some(val("v")));
        }
        // The rows are gone, not just hidden: values (by cascade) and owner bindings too.
        assert_eq!(Self::scalar(&store, "SELECT COUNT(*) FROM {S}").await, 4);
        assert_eq!(Self::scalar(&store, "SELECT COUNT(*) FROM {V}").await, 4);
        assert_eq!(Self::scalar(&store, "SELECT COUNT(*) FROM {O}").await, 0);
        store.close().await;
        Self::drop_namespace(&ns).await;
    }

    /// The version table holds the schema version; a newer one makes opening fail.
    pub async fn schema_version_is_recorded_and_a_newer_one_refused() {
        let ns = Self::create_namespace("version").await;
        let store = Self::open_in(&ns).await;
        let version = migrate::schema_version::<S::Dialect>();
        assert_eq!(store.schema_version().await.unwrap(), version);
        assert_eq!(
            Self::scalar(&store, "SELECT version FROM {VT}").await,
            version
        );
        let bump = store
            .tables()
            .render("UPDATE {VT} SET version = version + 1");
        sqlx::query(&bump).execute(store.pool()).await.unwrap();
        store.close().await;

        let err = S::open_in(SqlStore::builder(), &ns)
            .await
            .expect_err("a newer schema version must be refused");
        assert!(matches!(err, Error::Backend { .. }), "{err:?}");
        assert!(err.to_string().contains("newer"), "{err}");
        Self::drop_namespace(&ns).await;
    }

    /// Bad table and schema names are refused before anything runs; two base names in one
    /// namespace keep their sessions apart, letter case included.
    pub async fn table_names_are_checked_and_kept_apart() {
        let ns = Self::create_namespace("tables").await;
        for bad in ["", "1abc", "a-b", "a b", S::QUOTE_BREAKER, "é"] {
            let err = S::open_in(SqlStore::builder().table(bad), &ns)
                .await
                .expect_err("bad table name");
            assert!(matches!(err, Error::InvalidInput(_)), "{bad:?}: {err:?}");
        }
        let err = SqlStore::<S::Dialect>::builder()
            .schema(S::QUOTE_BREAKER)
            .open(&url::<S>())
            .await
            .expect_err("bad schema name");
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

        let open = |table: &'static str| {
            let builder = SqlStore::builder().table(table).max_connections(2);
            S::open_in(builder, &ns)
        };
        let a = open("Web_Sessions").await.unwrap();
        let b = open("api_sessions").await.unwrap();
        let id = SessionId::generate().unwrap();
        a.set(&id, "k", val("a"), HOUR).await.unwrap();
        assert_eq!(b.get(&id, "k").await.unwrap(), None);
        b.set(&id, "k", val("b"), HOUR).await.unwrap();
        assert_eq!(a.get(&id, "k").await.unwrap(), Some(val("a")));
        a.close().await;
        b.close().await;
        Self::drop_namespace(&ns).await;
    }

    /// `schema(ns)` qualifies every table, whatever the connection's default.
    pub async fn a_schema_qualifies_every_table() {
        let ns = Self::create_namespace("schema").await;
        let store = SqlStore::<S::Dialect>::builder()
            .schema(&ns)
            .max_connections(2)
            .open(&url::<S>())
            .await
            .unwrap();
        assert_eq!(store.schema(), Some(ns.as_str()));
        assert!(store.tables().render("{S}").contains(&ns));
        let id = SessionId::generate().unwrap();
        store.set(&id, "k", val("v"), HOUR).await.unwrap();
        assert_eq!(store.get(&id, "k").await.unwrap(), Some(val("v")));
        assert_eq!(Self::scalar(&store, "SELECT COUNT(*) FROM {V}").await, 1);
        store.close().await;
        Self::drop_namespace(&ns).await;
    }

    /// Nothing listening: opening fails at once with the server's name and port.
    pub async fn server_down_is_a_clear_backend_error() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        }; // closed again: nothing listens there now
        let started = Instant::now();
        let err = SqlStore::<S::Dialect>::builder()
            .connect_timeout(Duration::from_secs(2))
            .open(&S::url_on_port(port))
            .await
            .expect_err("nothing listens on the port");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(err, Error::Backend { .. }), "{err:?}");
        let text = err.to_string();
        let server = <S::Dialect as Dialect>::SERVER;
        assert!(
            text.contains(&format!("cannot connect to {server}"))
                && text.contains(&port.to_string()),
            "{text}"
        );
    }

    /// After `close`, a call is a backend error, not a hang or a panic.
    pub async fn calls_after_close_fail_cleanly() {
        let ns = Self::create_namespace("closed").await;
        let store = Self::open_in(&ns).await;
        store.close().await;
        let id = SessionId::generate().unwrap();
        let err = store.get(&id, "k").await.expect_err("pool closed");
        assert!(matches!(err, Error::Backend { .. }), "{err:?}");
        Self::drop_namespace(&ns).await;
    }

    /// 60 writers of different keys of one session on three pools: every key is kept.
    pub async fn writers_on_separate_pools_lose_nothing() {
        let ns = Self::create_namespace("pools").await;
        let stores = [
            Self::open_in(&ns).await,
            Self::open_in(&ns).await,
            Self::open_in(&ns).await,
        ];
        let id = SessionId::generate().unwrap();
        let mut tasks = Vec::new();
        for i in 0..60 {
            let store: Arc<dyn Storage> = Arc::new(stores[i % stores.len()].clone());
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let mut changes = ChangeSet::default();
                changes.set.insert(format!("k{i}"), val("v"));
                if i % 2 == 0 {
                    store.apply(&id, changes, HOUR).await
                } else {
                    store
                        .set(&id, &format!("k{i}"), val("v"), HOUR)
                        .await
                        .map(|()| true)
                }
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap().unwrap());
        }
        assert_eq!(stores[0].get_size(&id).await.unwrap(), 60);
        for store in &stores {
            store.close().await;
        }
        Self::drop_namespace(&ns).await;
    }
}

/// Expands to the shared driver tests of [`Suite`], one `#[tokio::test]` each, for test server
/// `$server` (a [`TestServer`]). The crate needs `tokio` as a dev-dependency.
#[macro_export]
macro_rules! sql_driver_tests {
    ($server:ty) => {
        $crate::sql_driver_tests!(@each $server;
            data_survives_a_new_pool,
            purge_in_batches_removes_exactly_the_expired_sessions,
            schema_version_is_recorded_and_a_newer_one_refused,
            table_names_are_checked_and_kept_apart,
            a_schema_qualifies_every_table,
            server_down_is_a_clear_backend_error,
            calls_after_close_fail_cleanly,
            writers_on_separate_pools_lose_nothing,
        );
    };
    (@each $server:ty; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                $crate::testing::Suite::<$server>::$test().await;
            }
        )*
    };
}
