//! Test support: real stores (a SQLite file, the machine's Redis with a prefix of the test's
//! own, the machine's PostgreSQL with a schema of the test's own), sessions written by the
//! session layer, the `sessionctl` binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::{StreamExt as _, stream};
use session_core::{Config, Manager, SessionId, Storage};
use session_ctl::Spec;
use session_postgres::sqlx::{self, Connection as _, Executor as _};

/// The machine's Redis: `REDIS_URL`, or 127.0.0.1:6379.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The machine's PostgreSQL: `POSTGRES_URL`, or postgres@127.0.0.1:5432 (trust auth).
pub fn postgres_url() -> String {
    std::env::var("POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The machine's memcached: `MEMCACHED_URL` (host:port), or 127.0.0.1:11211.
pub fn memcached_addr() -> String {
    std::env::var("MEMCACHED_URL").unwrap_or_else(|_| "127.0.0.1:11211".to_owned())
}

const START_REDIS: &str = "start it with: bash scripts/services (or redis-server --daemonize yes \
    --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no)";
const START_POSTGRES: &str = "start it with: bash scripts/services (or pg_ctlcluster \
    --skip-systemctl-redirect $(ls /etc/postgresql) main start)";
const START_MEMCACHED: &str = "start it with: bash scripts/services (or memcached -d -u nobody \
    -l 127.0.0.1 -p 11211)";

/// A random lower-case tail for names no other test (or run) uses.
pub fn unique(kind: &str) -> String {
    let random = SessionId::generate().unwrap();
    let tail: String = random
        .as_str()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("ctltest_{kind}_{tail}")
}

/// A store for a test, with its spec (what the binary is given) and what to clean up.
pub struct TestStore {
    /// The spec, as text.
    pub spec: String,
    /// The store, opened by the test itself.
    pub store: Arc<dyn Storage>,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Redis(Box<session_redis::RedisStore>),
    Postgres {
        store: session_postgres::PostgresStore,
        schema: String,
    },
    MySql {
        store: session_mysql::MySqlStore,
        database: String,
    },
}

impl TestStore {
    /// A fresh SQLite file in a temporary directory.
    pub async fn sqlite() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.sqlite3");
        let store = session_sqlite::SqliteStore::open(&path).await.unwrap();
        TestStore {
            spec: format!("sqlite:{}", path.display()),
            store: Arc::new(store),
            cleanup: Cleanup::Dir(dir),
        }
    }

    /// A spec for a SQLite file that does not exist yet (a migration's or import's target).
    pub fn new_sqlite_path(dir: &tempfile::TempDir) -> String {
        format!("sqlite:{}", dir.path().join("new.sqlite3").display())
    }

    /// The machine's Redis, under a prefix of this test's own.
    pub async fn redis(kind: &str) -> TestStore {
        let prefix = unique(kind);
        let url = redis_url();
        let store = match session_redis::RedisStore::builder()
            .prefix(prefix.clone())
            .open(&url)
            .await
        {
            Ok(store) => store,
            Err(e) => panic!("Redis is not reachable at {url}; {START_REDIS} ({e})"),
        };
        TestStore {
            spec: format!("{url}?prefix={prefix}"),
            store: Arc::new(store.clone()),
            cleanup: Cleanup::Redis(Box::new(store)),
        }
    }

    /// The machine's PostgreSQL, in a schema of this test's own.
    pub async fn postgres(kind: &str) -> TestStore {
        let schema = unique(kind);
        postgres_admin(&format!("CREATE SCHEMA \"{schema}\"")).await;
        let url = postgres_url();
        let store = session_postgres::PostgresStore::builder()
            .schema(schema.clone())
            .max_connections(4)
            .open(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {START_POSTGRES} ({e})"));
        TestStore {
            spec: format!("{url}?schema={schema}"),
            store: Arc::new(store.clone()),
            cleanup: Cleanup::Postgres { store, schema },
        }
    }

    /// The machine's MySQL/MariaDB, in a database of this test's own.
    pub async fn mysql(kind: &str) -> TestStore {
        let database = unique(kind);
        mysql_admin(&format!("CREATE DATABASE `{database}`")).await;
        let url = format!("{}/{database}", mysql_url());
        let store = session_mysql::MySqlStore::builder()
            .max_connections(4)
            .open(&url)
            .await
            .unwrap_or_else(|e| panic!("MySQL at {url}: {START_MYSQL} ({e})"));
        TestStore {
            spec: url,
            store: Arc::new(store.clone()),
            cleanup: Cleanup::MySql { store, database },
        }
    }

    /// Deletes what the test left in the server (Redis keys, the PostgreSQL schema).
    pub async fn cleanup(self) {
        match self.cleanup {
            Cleanup::Dir(_) => {}
            Cleanup::Redis(store) => {
                store.clear_prefix().await.unwrap();
            }
            Cleanup::Postgres { store, schema } => {
                store.close().await;
                postgres_admin(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await;
            }
            Cleanup::MySql { store, database } => {
                store.close().await;
                mysql_admin(&format!("DROP DATABASE IF EXISTS `{database}`")).await;
            }
        }
    }
}

/// Runs one statement on PostgreSQL as the admin, failing with how to start the server.
pub async fn postgres_admin(sql: &str) {
    let url = postgres_url();
    let mut conn = match sqlx::PgConnection::connect(&url).await {
        Ok(c) => c,
        Err(e) => panic!("PostgreSQL is not reachable at {url}; {START_POSTGRES} ({e})"),
    };
    conn.execute(sql).await.expect(sql);
    let _ = conn.close().await;
}

/// The machine's MySQL/MariaDB: `MYSQL_URL`, or root@127.0.0.1:3306 (no database).
pub fn mysql_url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

const START_MYSQL: &str = "start it with: bash scripts/services (or start-stop-daemon --start \
    --oknodo --background --exec /usr/sbin/mariadbd)";

/// Runs one statement on MySQL/MariaDB as the admin, failing with how to start the server.
pub async fn mysql_admin(sql: &str) {
    use session_mysql::sqlx::{Connection as _, Executor as _, MySqlConnection};
    let url = mysql_url();
    let mut conn = match MySqlConnection::connect(&url).await {
        Ok(c) => c,
        Err(e) => panic!("MySQL/MariaDB is not reachable at {url}; {START_MYSQL} ({e})"),
    };
    conn.execute(sql).await.expect(sql);
    let _ = conn.close().await;
}

/// Fails with how to start memcached unless it answers.
pub async fn memcached_spec() -> String {
    let addr = memcached_addr();
    let prefix = format!("{}.", unique("mc"));
    if let Err(e) = session_memcached::MemcachedStore::builder()
        .prefix(prefix.clone())
        .open(&addr)
        .await
    {
        panic!("memcached is not reachable at {addr}; {START_MEMCACHED} ({e})");
    }
    format!("memcached://{addr}?prefix={prefix}")
}

/// A manager over `store` whose sessions live an hour unless they say otherwise.
pub fn manager(store: Arc<dyn Storage>) -> Manager {
    Manager::new(
        store,
        Config {
            idle_ttl: Duration::from_secs(3600),
            ..Config::default()
        },
    )
    .unwrap()
}

/// What a test wrote: each session's id and owner.
#[derive(Clone, Debug, Default)]
pub struct Written {
    /// Every session written, with its owner.
    pub sessions: BTreeMap<String, Option<String>>,
}

impl Written {
    /// The ids of `owner`'s sessions.
    pub fn of(&self, owner: &str) -> Vec<String> {
        self.sessions
            .iter()
            .filter(|(_, o)| o.as_deref() == Some(owner))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Writes `n` sessions through the session layer: values of several types, every third one
/// logged in as `user{i % 7}`, every fifth with its own longer TTL (so deadlines differ).
pub async fn populate(store: &Arc<dyn Storage>, n: usize) -> Written {
    let manager = manager(store.clone());
    let made: Vec<(String, Option<String>)> = stream::iter(0..n)
        .map(|i| {
            let manager = manager.clone();
            async move {
                let s = manager.load(None);
                s.set("n", &i).await.unwrap();
                s.set("name", &format!("session {i} é")).await.unwrap();
                s.set("cart", &vec!["apple", "pear"]).await.unwrap();
                s.set("ratio", &(i as f64 / 4.0)).await.unwrap();
                let owner = (i % 3 == 0).then(|| format!("user{}", i % 7));
                if let Some(o) = &owner {
                    s.login(o).await.unwrap();
                }
                if i % 5 == 0 {
                    s.set_idle_ttl(Some(Duration::from_secs(7200 + i as u64)))
                        .await
                        .unwrap();
                }
                let out = s.save().await.unwrap();
                let id = out.cookie.id().expect("saved").as_str().to_owned();
                (id, owner)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    Written {
        sessions: made.into_iter().collect(),
    }
}

/// The deadline of `id` in `store` (`None`: not live).
pub async fn deadline(store: &dyn Storage, id: &str) -> Option<SystemTime> {
    let id = SessionId::parse(id).unwrap();
    store.load(&id).await.unwrap().and_then(|l| l.expires_at)
}

/// Runs `sessionctl` with `args`, standard input closed (not a terminal).
pub fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .args(args)
        .env_remove("SESSIONCTL_STORE")
        .stdin(Stdio::null())
        .output()
        .expect("run sessionctl")
}

/// The exit code, standard output and standard error of a run.
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = ctl(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `sessionctl` expecting exit code `code`; returns standard output.
pub fn expect(code: i32, args: &[&str]) -> String {
    let (got, out, err) = run(args);
    assert_eq!(
        got, code,
        "sessionctl {args:?} exited {got}, not {code}\nstdout: {out}\nstderr: {err}"
    );
    out
}

/// Runs `sessionctl --json ...` expecting success; returns the parsed output.
pub fn json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = expect(0, &all);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Checks that `spec` parses (the test's specs are the binary's).
pub fn parses(spec: &str) {
    spec.parse::<Spec>().unwrap();
}
