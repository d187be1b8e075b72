//! Opening each peer store the way its documentation shows, and cleaning up after a run.

use std::path::{Path, PathBuf};

use tower_sessions::session::Id;
use tower_sessions_moka_store::MokaStore;
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, KeysInterface, Pool};
use tower_sessions_sqlx_store::SqliteStore;
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};

use crate::Result;

/// Which store a `--store` spec names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// `moka`: tower-sessions-moka-store.
    Moka,
    /// `sqlite[:PATH]`: tower-sessions-sqlx-store's `SqliteStore` on a file (a temporary
    /// directory without a path).
    Sqlite(Option<PathBuf>),
    /// `redis://HOST:PORT[/DB]`: tower-sessions-redis-store over a fred pool.
    Redis(String),
}

impl StoreSpec {
    /// Parses a `--store` value.
    pub fn parse(s: &str) -> Result<Self> {
        if s == "moka" {
            Ok(StoreSpec::Moka)
        } else if s == "sqlite" {
            Ok(StoreSpec::Sqlite(None))
        } else if let Some(path) = s.strip_prefix("sqlite:") {
            Ok(StoreSpec::Sqlite(Some(PathBuf::from(path))))
        } else if s.starts_with("redis://") {
            Ok(StoreSpec::Redis(s.to_string()))
        } else {
            Err(format!("unknown store {s:?}").into())
        }
    }

    /// The store's name in output lines.
    pub fn label(&self) -> &'static str {
        match self {
            StoreSpec::Moka => "moka",
            StoreSpec::Sqlite(_) => "sqlite",
            StoreSpec::Redis(_) => "redis",
        }
    }
}

/// tower-sessions-moka-store with room for `capacity` sessions (its docs: `MokaStore::new(Some(n))`).
pub fn moka(capacity: u64) -> MokaStore {
    MokaStore::new(Some(capacity))
}

/// A fred pool of `size` clients on `url` (the redis store's docs: `Pool::new(.., 6)`, then
/// `connect` and `wait_for_connect`; issue 14 measured a pool of 4).
pub async fn redis_pool(url: &str, size: usize) -> Result<Pool> {
    let pool = Pool::new(Config::from_url(url)?, None, None, None, size)?;
    let _handle = pool.connect();
    pool.wait_for_connect().await?;
    Ok(pool)
}

/// tower-sessions-redis-store over `pool`.
pub fn redis(pool: Pool) -> RedisStore<Pool> {
    RedisStore::new(pool)
}

/// Deletes the keys of `ids` (the redis store keys a session by its id alone) and closes `pool`.
pub async fn redis_cleanup(pool: &Pool, ids: &[Id]) -> Result<u64> {
    let mut deleted = 0u64;
    for chunk in ids.chunks(500) {
        let keys: Vec<String> = chunk.iter().map(|id| id.to_string()).collect();
        let n: u64 = pool.del(keys).await?;
        deleted += n;
    }
    pool.quit().await?;
    Ok(deleted)
}

/// An open SQLite store and what to remove afterwards.
pub struct Sqlite {
    /// The store.
    pub store: SqliteStore,
    /// The pool under it (closed by [`Sqlite::cleanup`]).
    pub pool: tower_sessions_sqlx_store::sqlx::SqlitePool,
    /// The database file.
    pub path: PathBuf,
    /// Whether the file was made by this run (then it is removed afterwards).
    created: bool,
    _dir: Option<tempfile::TempDir>,
}

impl Sqlite {
    /// Opens the database at `path` (in a new temporary directory when `None`), creating it, and
    /// runs the store's migration. With `tuned`, the connections use WAL and
    /// `synchronous=NORMAL`, the durability our SQLite driver runs with; without, sqlx's defaults
    /// (the file's journal mode, DELETE for a new file, and `synchronous=FULL`), as the store's
    /// docs use it (`SqlitePool::connect(url)`). The pool is sqlx's default pool (10 connections).
    pub async fn open(path: Option<&Path>, tuned: bool) -> Result<Self> {
        let (dir, path) = match path {
            Some(p) => (None, p.to_path_buf()),
            None => {
                let dir = tempfile::tempdir()?;
                let p = dir.path().join("sessions.db");
                (Some(dir), p)
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let created = !path.exists();
        let mut opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        if tuned {
            opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
        }
        let pool = SqlitePoolOptions::new().connect_with(opts).await?;
        let store = SqliteStore::new(pool.clone());
        store.migrate().await?;
        Ok(Sqlite {
            store,
            pool,
            path,
            created,
            _dir: dir,
        })
    }

    /// Closes the pool and removes the database (with its `-wal` and `-shm` files) if this run
    /// created it.
    pub async fn cleanup(self) -> Result<()> {
        self.pool.close().await;
        if self.created {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = self.path.clone().into_os_string();
                p.push(suffix);
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}
