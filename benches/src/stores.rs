//! Opening a driver, and the raw backend under it, from a store spec (`memory`, `file:DIR`,
//! `sqlite:PATH`, `sled:DIR`, `redis://...`, `postgres://...`, `mysql://...`,
//! `memcached://HOST:PORT`).
//!
//! Adding a driver is one arm in [`open_store`] (and, for its raw baseline, one in
//! [`open_raw`]).

use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::Arc;

use session_core::Storage;
use sqlx::Executor as _;
use tempfile::TempDir;

use crate::Result;
use crate::direct::{self, Direct};
use crate::raw::{self, Raw};

/// A parsed store spec: the driver name and what follows its `:` (a path, or the whole URL for
/// Redis). An empty path means a fresh temporary directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSpec {
    /// `memory`, `file`, `sqlite`, `sled` or `redis`.
    pub driver: String,
    /// The path or URL; empty for the default (a temporary directory).
    pub location: String,
}

impl StoreSpec {
    /// Parses `memory`, `file[:DIR]`, `sqlite[:PATH]`, `sled[:DIR]`, `redis` or `redis://...`
    /// (also `rediss://`, `redis+unix://`), `postgres` or `postgres://...` (`postgresql://`),
    /// `mysql` or `mysql://...`, `memcached` or `memcached://HOST:PORT` (`memcache://`).
    /// The bare server names use `REDIS_URL`, `POSTGRES_URL`, `MYSQL_URL`, `MEMCACHED_URL` or
    /// the local defaults.
    pub fn parse(spec: &str) -> StoreSpec {
        let url = |driver: &str| StoreSpec {
            driver: driver.into(),
            location: spec.into(),
        };
        if spec.starts_with("redis://")
            || spec.starts_with("rediss://")
            || spec.starts_with("redis+unix://")
        {
            return url("redis");
        }
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            return url("postgres");
        }
        if spec.starts_with("mysql://") {
            return url("mysql");
        }
        if let Some(addr) = spec
            .strip_prefix("memcached://")
            .or_else(|| spec.strip_prefix("memcache://"))
        {
            return StoreSpec {
                driver: "memcached".into(),
                location: addr.into(),
            };
        }
        let (driver, location) = spec.split_once(':').unwrap_or((spec, ""));
        StoreSpec {
            driver: driver.into(),
            location: location.into(),
        }
    }

    /// A short label for output lines: the driver name.
    pub fn label(&self) -> &str {
        &self.driver
    }

    /// The path to use: the given one, or one in a fresh temporary directory (kept alive by
    /// `guards`). `file` names the file within the temporary directory, if any.
    fn path(&self, guards: &mut Vec<TempDir>, file: Option<&str>) -> Result<PathBuf> {
        if !self.location.is_empty() {
            return Ok(PathBuf::from(&self.location));
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("loadgen-{}-", self.driver))
            .tempdir()?;
        let path = match file {
            Some(f) => dir.path().join(f),
            None => dir.path().join("store"),
        };
        guards.push(dir);
        Ok(path)
    }

    /// The server URL (the spec itself, or for a bare `redis`, `postgres`, `mysql` or
    /// `memcached` the environment variable / the local default; memcached's is `host:port`).
    pub fn url(&self) -> String {
        if !self.location.is_empty() {
            return self.location.clone();
        }
        let env = |var: &str, default: &str| std::env::var(var).unwrap_or_else(|_| default.into());
        match self.driver.as_str() {
            "postgres" => env("POSTGRES_URL", DEFAULT_POSTGRES_URL),
            "mysql" => env("MYSQL_URL", DEFAULT_MYSQL_URL),
            "memcached" => env("MEMCACHED_URL", session_memcached::DEFAULT_ADDR),
            _ => crate::redis_url(),
        }
    }
}

/// The PostgreSQL server of a bare `postgres` spec unless `POSTGRES_URL` says otherwise.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The MySQL/MariaDB server of a bare `mysql` spec unless `MYSQL_URL` says otherwise.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";

/// Options shared by the driver and its raw baseline.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How many sessions the memory store and raw moka must hold without evicting.
    pub capacity: u64,
    /// `fsync` each file write (the file driver's default).
    pub file_sync: bool,
    /// Key prefix for Redis and memcached (Redis keys are `<prefix>:<id>`, the raw baseline's
    /// `<prefix>:raw:<id>`; memcached's `<prefix>.<id>` and `<prefix>.raw.<id>`).
    pub redis_prefix: String,
    /// Pool size of the server drivers and their raw baselines; `None`: the driver's default
    /// (10 for PostgreSQL and MySQL, 16 for memcached).
    pub pool_size: Option<u32>,
    /// The Redis driver's live index granularity; `None`: the driver's default.
    pub redis_index_granularity: Option<std::time::Duration>,
    /// Calls in flight per Redis connection before the next call takes another, for the driver
    /// and its floor alike; `None`: the driver's default.
    pub redis_spill: Option<usize>,
    /// How the moka floor of the memory driver keeps a session.
    pub moka_layout: direct::MokaLayout,
    /// The PostgreSQL schema or MySQL database the run creates, uses and drops
    /// (`loadgen_<pid>_<nanos>`).
    pub server_name: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            capacity: 1_000_000,
            file_sync: true,
            redis_prefix: crate::private_prefix("bench"),
            pool_size: None,
            redis_index_granularity: None,
            redis_spill: None,
            moka_layout: direct::MokaLayout::default(),
            server_name: crate::private_prefix("loadgen").replace('-', "_"),
        }
    }
}

/// What a run leaves in a server, to delete at the end.
enum Leftovers {
    None,
    /// Keys under the store's prefix.
    Redis(session_redis::RedisStore),
    /// The run's schema (the raw baseline's tables included).
    Postgres {
        store: session_postgres::PostgresStore,
        url: String,
        schema: String,
    },
    /// The run's database (the raw baseline's tables included).
    MySql {
        store: session_mysql::MySqlStore,
        url: String,
        database: String,
    },
    /// Items under the run's prefix (the raw baseline's prefix starts with it).
    Memcached {
        addr: String,
        prefix: String,
    },
}

/// An open driver with whatever must live as long as it (temporary directories).
pub struct Opened {
    /// The driver.
    pub store: Arc<dyn Storage>,
    leftovers: Leftovers,
    _guards: Vec<TempDir>,
}

impl Opened {
    /// Deletes what the run left in a server: Redis keys under the private prefix, the
    /// PostgreSQL schema or MySQL database (closing the driver's pool first), memcached items
    /// under the private prefix. Call it after the raw baseline's own cleanup.
    pub async fn cleanup(&self) -> Result<()> {
        match &self.leftovers {
            Leftovers::None => {}
            Leftovers::Redis(r) => {
                r.clear_prefix().await?;
            }
            Leftovers::Postgres { store, url, schema } => {
                store.close().await;
                drop_schema(url, schema).await?;
            }
            Leftovers::MySql {
                store,
                url,
                database,
            } => {
                store.close().await;
                drop_database(url, database).await?;
            }
            Leftovers::Memcached { addr, prefix } => {
                // the crawler can miss an item that moves between LRU queues as it passes:
                // dump again until a pass finds nothing (a missed item expires with its TTL)
                for _ in 0..5 {
                    if crate::raw_server::memcached_delete_prefix(addr, prefix).await? == 0 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

async fn pg_admin(url: &str) -> Result<sqlx::PgConnection> {
    use sqlx::Connection as _;
    let options = sqlx::postgres::PgConnectOptions::from_str(url)?;
    sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(|e| server_hint("PostgreSQL", url, e))
}

async fn mysql_admin(url: &str) -> Result<sqlx::MySqlConnection> {
    use sqlx::Connection as _;
    let options = sqlx::mysql::MySqlConnectOptions::from_str(url)?;
    sqlx::MySqlConnection::connect_with(&options)
        .await
        .map_err(|e| server_hint("MySQL/MariaDB", url, e))
}

async fn drop_schema(url: &str, schema: &str) -> Result<()> {
    let mut conn = pg_admin(url).await?;
    conn.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
        .await?;
    Ok(())
}

async fn drop_database(url: &str, database: &str) -> Result<()> {
    let mut conn = mysql_admin(url).await?;
    conn.execute(format!("DROP DATABASE IF EXISTS `{database}`").as_str())
        .await?;
    Ok(())
}

/// Opens the driver named by `spec`.
pub async fn open_store(spec: &StoreSpec, opts: &StoreOptions) -> Result<Opened> {
    let mut guards = Vec::new();
    let mut leftovers = Leftovers::None;
    let store: Arc<dyn Storage> = match spec.driver.as_str() {
        "memory" => Arc::new(
            session_memory::MemoryStore::builder()
                .max_sessions(opts.capacity)
                .build(),
        ),
        "file" => {
            let dir = spec.path(&mut guards, None)?;
            Arc::new(
                session_file::FileStore::builder()
                    .sync(opts.file_sync)
                    .open(dir)
                    .await?,
            )
        }
        "sqlite" => {
            let path = spec.path(&mut guards, Some("sessions.db"))?;
            Arc::new(session_sqlite::SqliteStore::open(path).await?)
        }
        "sled" => {
            let dir = spec.path(&mut guards, None)?;
            Arc::new(session_sled::SledStore::open(dir).await?)
        }
        "redis" => {
            let mut builder =
                session_redis::RedisStore::builder().prefix(opts.redis_prefix.clone());
            if let Some(granularity) = opts.redis_index_granularity {
                builder = builder.live_index_granularity(granularity);
            }
            if let Some(spill) = opts.redis_spill {
                builder = builder.connection_spill(spill);
            }
            let store = builder
                .open(&spec.url())
                .await
                .map_err(|e| redis_hint(&spec.url(), e))?;
            leftovers = Leftovers::Redis(store.clone());
            Arc::new(store)
        }
        "postgres" => {
            let url = spec.url();
            let schema = opts.server_name.clone();
            let mut conn = pg_admin(&url).await?;
            conn.execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
                .await?;
            let opened = session_postgres::PostgresStore::builder()
                .schema(schema.clone())
                .max_connections(opts.pool_size.unwrap_or(10))
                .open(&url)
                .await;
            let store = match opened {
                Ok(store) => store,
                Err(e) => {
                    drop_schema(&url, &schema).await?;
                    return Err(e.into());
                }
            };
            leftovers = Leftovers::Postgres {
                store: store.clone(),
                url,
                schema,
            };
            Arc::new(store)
        }
        "mysql" => {
            let url = spec.url();
            let database = opts.server_name.clone();
            let mut conn = mysql_admin(&url).await?;
            conn.execute(format!("CREATE DATABASE `{database}`").as_str())
                .await?;
            let options = sqlx::mysql::MySqlConnectOptions::from_str(&url)?.database(&database);
            let opened = session_mysql::MySqlStore::builder()
                .max_connections(opts.pool_size.unwrap_or(10))
                .open_with(options)
                .await;
            let store = match opened {
                Ok(store) => store,
                Err(e) => {
                    drop_database(&url, &database).await?;
                    return Err(e.into());
                }
            };
            leftovers = Leftovers::MySql {
                store: store.clone(),
                url,
                database,
            };
            Arc::new(store)
        }
        "memcached" => {
            let addr = spec.url();
            // `.`, not `:`: metadump URI-encodes keys, and cleanup matches its output
            let prefix = format!("{}.", opts.redis_prefix);
            let store = session_memcached::MemcachedStore::builder()
                .prefix(prefix.clone())
                .pool_size(
                    opts.pool_size
                        .map_or(session_memcached::DEFAULT_POOL_SIZE, |n| n as usize),
                )
                .open(&addr)
                .await
                .map_err(|e| server_hint("memcached", &addr, e))?;
            leftovers = Leftovers::Memcached { addr, prefix };
            Arc::new(store)
        }
        other => return Err(unknown(other)),
    };
    Ok(Opened {
        store,
        leftovers,
        _guards: guards,
    })
}

/// A raw baseline: an embedded backend driven from OS threads, or a server driven from tasks.
pub enum Baseline {
    /// Embedded backends (moka, SQLite, sled, files): blocking calls from `C` OS threads
    /// ([`crate::direct`]).
    Threads(Box<dyn Direct>),
    /// Server backends (Redis, PostgreSQL, MySQL, memcached): async calls from `C` tokio tasks
    /// ([`crate::raw`]).
    Tasks(Box<dyn Raw>),
}

/// Opens the raw baseline of the driver named by `spec`: the backend under it, driven the
/// cheapest correct way with the same work (see [`crate::direct`] and [`crate::raw`]). `threads`
/// is the number of threads that will drive an embedded backend (the run's concurrency).
pub async fn open_raw(spec: &StoreSpec, opts: &StoreOptions, threads: usize) -> Result<Baseline> {
    let mut guards = Vec::new();
    let raw: Box<dyn Raw> = match spec.driver.as_str() {
        "memory" => {
            return Ok(Baseline::Threads(Box::new(direct::MokaDirect::new(
                opts.capacity,
                opts.moka_layout,
            ))));
        }
        "file" => {
            let dir = spec.path(&mut guards, None)?;
            return Ok(Baseline::Threads(Box::new(direct::FileDirect::open(
                dir.join("raw"),
                opts.file_sync,
                guards,
            )?)));
        }
        "sqlite" => {
            let path = spec.path(&mut guards, Some("raw.db"))?;
            let path = if spec.location.is_empty() {
                path
            } else {
                with_suffix(&path, ".raw")
            };
            let direct = tokio::task::spawn_blocking(move || {
                direct::SqliteDirect::open(&path, threads, guards)
            })
            .await??;
            return Ok(Baseline::Threads(Box::new(direct)));
        }
        "sled" => {
            let dir = spec.path(&mut guards, None)?;
            let direct = tokio::task::spawn_blocking(move || {
                direct::SledDirect::open(&dir.join("raw"), guards)
            })
            .await??;
            return Ok(Baseline::Threads(Box::new(direct)));
        }
        "redis" => Box::new(
            raw::RedisRaw::open(
                &spec.url(),
                &format!("{}:raw", opts.redis_prefix),
                opts.redis_spill
                    .unwrap_or(session_redis::client::CONNECTION_SPILL),
            )
            .await
            .map_err(|e| redis_hint(&spec.url(), e))?,
        ),
        // the schema / database is the one open_store created (same `server_name`)
        "postgres" => Box::new(
            raw::PgRaw::open(&spec.url(), &opts.server_name, opts.pool_size.unwrap_or(10)).await?,
        ),
        "mysql" => Box::new(
            raw::MySqlRaw::open(&spec.url(), &opts.server_name, opts.pool_size.unwrap_or(10))
                .await?,
        ),
        "memcached" => Box::new(
            raw::MemcachedRaw::open(
                &spec.url(),
                &format!("{}.raw.", opts.redis_prefix),
                opts.pool_size
                    .map_or(session_memcached::DEFAULT_POOL_SIZE, |n| n as usize),
            )
            .await
            .map_err(|e| server_hint("memcached", &spec.url(), e))?,
        ),
        other => return Err(unknown(other)),
    };
    Ok(Baseline::Tasks(raw))
}

fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn unknown(driver: &str) -> crate::BoxError {
    format!(
        "unknown store {driver:?}: use memory, file[:DIR], sqlite[:PATH], sled[:DIR], \
         redis://HOST:PORT, postgres://..., mysql://... or memcached://HOST:PORT"
    )
    .into()
}

fn server_hint(what: &str, url: &str, e: impl std::fmt::Display) -> crate::BoxError {
    format!(
        "cannot use {what} at {url}: {e}. Start the local services with `bash scripts/services` \
         (or pass another URL)"
    )
    .into()
}

fn redis_hint(url: &str, e: impl std::fmt::Display) -> crate::BoxError {
    format!(
        "cannot reach Redis at {url}: {e}. Start one with \
         `redis-server --port 6379 --save '' --appendonly no --daemonize yes` \
         (or `bash scripts/services`), or set REDIS_URL"
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(StoreSpec::parse("memory").driver, "memory");
        let f = StoreSpec::parse("file:/tmp/x");
        assert_eq!((f.driver.as_str(), f.location.as_str()), ("file", "/tmp/x"));
        let s = StoreSpec::parse("sqlite");
        assert_eq!((s.driver.as_str(), s.location.as_str()), ("sqlite", ""));
        let r = StoreSpec::parse("redis://127.0.0.1:6390/2");
        assert_eq!(r.driver, "redis");
        assert_eq!(r.url(), "redis://127.0.0.1:6390/2");
        let p = StoreSpec::parse("postgres://postgres@127.0.0.1:5432/test");
        assert_eq!(p.driver, "postgres");
        assert_eq!(p.url(), "postgres://postgres@127.0.0.1:5432/test");
        let m = StoreSpec::parse("mysql://root@127.0.0.1:3306");
        assert_eq!(
            (m.driver.as_str(), m.url().as_str()),
            ("mysql", "mysql://root@127.0.0.1:3306")
        );
        let c = StoreSpec::parse("memcached://127.0.0.1:11211");
        assert_eq!(
            (c.driver.as_str(), c.url().as_str()),
            ("memcached", "127.0.0.1:11211")
        );
        assert_eq!(StoreSpec::parse("memcached").driver, "memcached");
    }

    /// Opens the driver and the raw baseline of a server store, writes and reads a session on
    /// both, cleans up; returns the options (for checking what cleanup removed).
    async fn server_round_trip(spec: &str) -> StoreOptions {
        use session_core::{SessionId, Value};
        let spec = StoreSpec::parse(spec);
        let opts = StoreOptions {
            pool_size: Some(2),
            ..StoreOptions::default()
        };
        let opened = open_store(&spec, &opts)
            .await
            .unwrap_or_else(|e| panic!("{} is needed: {e}", spec.url()));
        let Baseline::Tasks(raw) = open_raw(&spec, &opts, 2).await.expect("raw baseline") else {
            panic!("a server store's baseline runs on tasks");
        };
        let ttl = std::time::Duration::from_secs(60);

        let id = SessionId::generate().expect("id");
        opened
            .store
            .set(&id, "k", Value::encode(&7u64).expect("encode"), ttl)
            .await
            .expect("driver set");
        let got = opened.store.get(&id, "k").await.expect("driver get");
        assert_eq!(got.expect("just set").decode::<u64>().expect("decode"), 7);

        let data = crate::payload::raw_data(3).expect("payload");
        assert_eq!(raw.load(id.as_str()).await.expect("load"), None);
        raw.store(id.as_str(), &data, &data, ttl)
            .await
            .expect("store");
        assert_eq!(
            raw.load(id.as_str()).await.expect("load"),
            Some(data.clone())
        );
        // a write of one changed key keeps the others
        let mut changed = crate::raw::RawData::new();
        changed.insert("counter".into(), bytes::Bytes::from_static(&[1]));
        let mut full = data.clone();
        full.extend(changed.clone());
        raw.store(id.as_str(), &full, &changed, ttl)
            .await
            .expect("store");
        assert_eq!(raw.load(id.as_str()).await.expect("load"), Some(full));

        raw.cleanup().await.expect("raw cleanup");
        opened.cleanup().await.expect("cleanup");
        if spec.driver == "memcached" {
            // its baseline needs no cleanup of its own and still works: both items are gone
            assert_eq!(raw.load(id.as_str()).await.expect("load"), None);
            assert_eq!(opened.store.get(&id, "k").await.expect("get"), None);
        }
        opts
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_store_and_baseline_round_trip_and_clean_up() {
        use sqlx::Row as _;
        let url = StoreSpec::parse("postgres").url();
        let opts = server_round_trip(&url).await;
        let mut conn = pg_admin(&url).await.expect("admin");
        let left = sqlx::query("SELECT count(*) FROM pg_namespace WHERE nspname = $1")
            .bind(&opts.server_name)
            .fetch_one(&mut conn)
            .await
            .expect("count")
            .try_get::<i64, _>(0)
            .expect("count");
        assert_eq!(left, 0, "schema {} was not dropped", opts.server_name);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql_store_and_baseline_round_trip_and_clean_up() {
        use sqlx::Row as _;
        let url = StoreSpec::parse("mysql").url();
        let opts = server_round_trip(&url).await;
        let mut conn = mysql_admin(&url).await.expect("admin");
        let left =
            sqlx::query("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?")
                .bind(&opts.server_name)
                .fetch_one(&mut conn)
                .await
                .expect("count")
                .try_get::<i64, _>(0)
                .expect("count");
        assert_eq!(left, 0, "database {} was not dropped", opts.server_name);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memcached_store_and_baseline_round_trip_and_clean_up() {
        let spec = StoreSpec::parse("memcached");
        server_round_trip(&format!("memcached://{}", spec.url())).await;
    }

    #[tokio::test]
    async fn unknown_driver_is_an_error() {
        let err = open_store(&StoreSpec::parse("nope"), &StoreOptions::default())
            .await
            .err()
            .expect("unknown driver");
        assert!(err.to_string().contains("unknown store"), "{err}");
    }
}
