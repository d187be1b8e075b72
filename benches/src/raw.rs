//! The raw baselines: each backend driven directly with the cheapest operations that do the work
//! of one request, so a driver's overhead is a ratio measured in the same run.
//!
//! A session is a map from key to MessagePack bytes ([`RawData`]). Blob backends (moka, SQLite,
//! sled, files) keep it as one blob: the deadline in unix milliseconds (8 bytes, big endian) and
//! the MessagePack encoding of the map, and check the deadline on read. Redis keeps it as a hash
//! with a `PEXPIRE`. Blocking backends (SQLite, sled, files) run on tokio's blocking pool, as the
//! drivers do.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use rusqlite::{Connection, OptionalExtension, params};
use tempfile::TempDir;

use crate::Result;
pub use crate::raw_server::{MemcachedRaw, MySqlRaw, PgRaw};

/// A session as the raw baselines see it: key to MessagePack bytes.
pub type RawData = HashMap<String, Bytes>;

/// One backend, driven without a driver.
#[async_trait]
pub trait Raw: Send + Sync + 'static {
    /// The backend's name ("moka", "rusqlite", ...).
    fn name(&self) -> &'static str;

    /// The whole session, `None` if missing or expired.
    async fn load(&self, id: &str) -> Result<Option<RawData>>;

    /// Writes the session: `full` is the whole map after the change, `changed` the keys that
    /// changed (Redis writes only those; blob backends rewrite the blob). The expiry becomes
    /// now + `ttl`.
    async fn store(&self, id: &str, full: &RawData, changed: &RawData, ttl: Duration)
    -> Result<()>;

    /// Deletes what the baseline wrote outside a temporary directory (Redis keys).
    async fn cleanup(&self) -> Result<()> {
        Ok(())
    }
}

pub(crate) use session_core::check::now_millis;

pub(crate) fn deadline(ttl: Duration) -> u64 {
    now_millis().saturating_add(ttl.as_millis() as u64)
}

/// Encodes a blob: deadline (u64 big endian) ++ MessagePack map.
pub fn encode_blob(deadline: u64, data: &RawData) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1200);
    out.extend_from_slice(&deadline.to_be_bytes());
    rmp_serde::encode::write(&mut out, data)?;
    Ok(out)
}

/// Decodes a blob; `None` when its deadline has passed.
pub fn decode_blob(blob: &[u8]) -> Result<Option<RawData>> {
    let (head, body) = blob
        .split_first_chunk::<8>()
        .ok_or("raw blob shorter than its header")?;
    if u64::from_be_bytes(*head) <= now_millis() {
        return Ok(None);
    }
    Ok(Some(rmp_serde::from_slice(body)?))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

// ----- moka ------------------------------------------------------------------------------------

/// moka `get`/`insert` of the encoded map (the memory driver's cache, without the driver).
pub struct MokaRaw {
    cache: Cache<String, Bytes>,
}

impl MokaRaw {
    /// A cache holding up to `capacity` sessions, LRU like the memory driver's.
    pub fn new(capacity: u64) -> Self {
        MokaRaw {
            cache: Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
        }
    }
}

#[async_trait]
impl Raw for MokaRaw {
    fn name(&self) -> &'static str {
        "moka"
    }

    async fn load(&self, id: &str) -> Result<Option<RawData>> {
        match self.cache.get(id).await {
            Some(blob) => decode_blob(&blob),
            None => Ok(None),
        }
    }

    async fn store(&self, id: &str, full: &RawData, _: &RawData, ttl: Duration) -> Result<()> {
        let blob = encode_blob(deadline(ttl), full)?;
        self.cache.insert(id.to_string(), Bytes::from(blob)).await;
        Ok(())
    }
}

// ----- files -----------------------------------------------------------------------------------

/// One file per session: `std::fs::read`, and write to a temp file, (fsync,) rename.
pub struct FileRaw {
    dir: PathBuf,
    sync: bool,
    _guards: Vec<TempDir>,
}

impl FileRaw {
    /// Files in `dir` (created if missing); `sync` fsyncs each temp file before the rename.
    pub fn open(dir: PathBuf, sync: bool, guards: Vec<TempDir>) -> Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(FileRaw {
            dir,
            sync,
            _guards: guards,
        })
    }
}

#[async_trait]
impl Raw for FileRaw {
    fn name(&self) -> &'static str {
        "fs"
    }

    async fn load(&self, id: &str) -> Result<Option<RawData>> {
        let path = self.dir.join(format!("raw_{id}"));
        blocking(move || match std::fs::read(&path) {
            Ok(blob) => decode_blob(&blob),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        })
        .await
    }

    async fn store(&self, id: &str, full: &RawData, _: &RawData, ttl: Duration) -> Result<()> {
        let blob = encode_blob(deadline(ttl), full)?;
        let dir = self.dir.clone();
        let path = self.dir.join(format!("raw_{id}"));
        let sync = self.sync;
        blocking(move || {
            let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(&dir)?;
            tmp.write_all(&blob)?;
            if sync {
                tmp.as_file().sync_all()?;
            }
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        })
        .await
    }
}

// ----- rusqlite ----------------------------------------------------------------------------------

const SQL_SELECT: &str = "SELECT data FROM raw_sessions WHERE id = ?1 AND expires_at > ?2";
const SQL_UPSERT: &str = "INSERT INTO raw_sessions (id, expires_at, data) VALUES (?1, ?2, ?3)
     ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, data = excluded.data";

/// A row per session; one prepared `SELECT` per read and one prepared UPSERT per write, in WAL
/// mode with `synchronous = NORMAL` (the SQLite driver's settings), a writer connection and a
/// few reader connections.
pub struct SqliteRaw {
    writer: std::sync::Arc<Mutex<Connection>>,
    readers: std::sync::Arc<Vec<Mutex<Connection>>>,
    next: AtomicUsize,
    _guards: Vec<TempDir>,
}

fn sqlite_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

impl SqliteRaw {
    /// Opens (creating) the database at `path` with `readers` reader connections.
    pub async fn open(path: &Path, readers: usize, guards: Vec<TempDir>) -> Result<Self> {
        let path = path.to_path_buf();
        let (writer, readers) = blocking(move || {
            let writer = sqlite_conn(&path)?;
            writer.execute_batch(
                "CREATE TABLE IF NOT EXISTS raw_sessions (
                     id TEXT PRIMARY KEY NOT NULL,
                     expires_at INTEGER NOT NULL,
                     data BLOB NOT NULL
                 ) WITHOUT ROWID;",
            )?;
            let readers = (0..readers.max(1))
                .map(|_| sqlite_conn(&path).map(Mutex::new))
                .collect::<Result<Vec<_>>>()?;
            Ok((writer, readers))
        })
        .await?;
        Ok(SqliteRaw {
            writer: std::sync::Arc::new(Mutex::new(writer)),
            readers: std::sync::Arc::new(readers),
            next: AtomicUsize::new(0),
            _guards: guards,
        })
    }
}

fn poisoned<T>(_: T) -> crate::BoxError {
    "a connection mutex was poisoned".into()
}

#[async_trait]
impl Raw for SqliteRaw {
    fn name(&self) -> &'static str {
        "rusqlite"
    }

    async fn load(&self, id: &str) -> Result<Option<RawData>> {
        let readers = self.readers.clone();
        let i = self.next.fetch_add(1, Ordering::Relaxed) % readers.len();
        let id = id.to_string();
        blocking(move || {
            // a free reader if there is one, else wait for the next in turn
            let n = readers.len();
            let free = (0..n).find_map(|k| readers[(i + k) % n].try_lock().ok());
            let conn = match free {
                Some(conn) => conn,
                None => readers[i].lock().map_err(poisoned)?,
            };
            let mut stmt = conn.prepare_cached(SQL_SELECT)?;
            let blob: Option<Vec<u8>> = stmt
                .query_row(params![id, now_millis() as i64], |r| r.get(0))
                .optional()?;
            match blob {
                // the expiry is in its own column here; the blob's header is checked again
                Some(b) => decode_blob(&b),
                None => Ok(None),
            }
        })
        .await
    }

    async fn store(&self, id: &str, full: &RawData, _: &RawData, ttl: Duration) -> Result<()> {
        let d = deadline(ttl);
        let blob = encode_blob(d, full)?;
        let writer = self.writer.clone();
        let id = id.to_string();
        blocking(move || {
            let conn = writer.lock().map_err(poisoned)?;
            let mut stmt = conn.prepare_cached(SQL_UPSERT)?;
            stmt.execute(params![id, d as i64, blob])?;
            Ok(())
        })
        .await
    }
}

// ----- sled --------------------------------------------------------------------------------------

/// sled `get`/`insert` of the blob, in one tree.
pub struct SledRaw {
    tree: sled::Tree,
    _db: sled::Db,
    _guards: Vec<TempDir>,
}

impl SledRaw {
    /// Opens (creating) a sled database in `dir` with sled's defaults (as the driver's).
    pub async fn open(dir: &Path, guards: Vec<TempDir>) -> Result<Self> {
        let dir = dir.to_path_buf();
        let (db, tree) = blocking(move || {
            let db = sled::open(dir)?;
            let tree = db.open_tree("raw")?;
            Ok((db, tree))
        })
        .await?;
        Ok(SledRaw {
            tree,
            _db: db,
            _guards: guards,
        })
    }
}

#[async_trait]
impl Raw for SledRaw {
    fn name(&self) -> &'static str {
        "sled"
    }

    async fn load(&self, id: &str) -> Result<Option<RawData>> {
        let tree = self.tree.clone();
        let id = id.to_string();
        blocking(move || match tree.get(id.as_bytes())? {
            Some(blob) => decode_blob(&blob),
            None => Ok(None),
        })
        .await
    }

    async fn store(&self, id: &str, full: &RawData, _: &RawData, ttl: Duration) -> Result<()> {
        let blob = encode_blob(deadline(ttl), full)?;
        let tree = self.tree.clone();
        let id = id.to_string();
        blocking(move || {
            tree.insert(id.as_bytes(), blob)?;
            Ok(())
        })
        .await
    }
}

// ----- redis -------------------------------------------------------------------------------------

/// A hash per session: `HGETALL` to read, one pipelined `HSET` of the changed fields + `PEXPIRE`
/// to write, on one multiplexed connection (like the driver's).
pub struct RedisRaw {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

impl RedisRaw {
    /// Connects to `url`; every key starts with `prefix:`.
    pub async fn open(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = tokio::time::timeout(
            Duration::from_secs(2),
            redis::aio::ConnectionManager::new(client),
        )
        .await
        .map_err(|_| "no answer from Redis within 2 s")??;
        Ok(RedisRaw {
            conn,
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, id: &str) -> String {
        format!("{}:{id}", self.prefix)
    }
}

#[async_trait]
impl Raw for RedisRaw {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn load(&self, id: &str) -> Result<Option<RawData>> {
        let mut conn = self.conn.clone();
        let map: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.key(id))
            .query_async(&mut conn)
            .await?;
        if map.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            map.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect(),
        ))
    }

    async fn store(&self, id: &str, _: &RawData, changed: &RawData, ttl: Duration) -> Result<()> {
        let key = self.key(id);
        let mut hset = redis::cmd("HSET");
        hset.arg(&key);
        for (k, v) in changed {
            hset.arg(k).arg(v.as_ref());
        }
        let mut pipe = redis::pipe();
        pipe.add_command(hset)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl.as_millis() as u64)
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn cleanup(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trips_and_expires() {
        let data = crate::payload::raw_data(7).expect("payload");
        let blob = encode_blob(deadline(Duration::from_secs(60)), &data).expect("encode");
        assert_eq!(decode_blob(&blob).expect("decode"), Some(data.clone()));
        let old = encode_blob(now_millis() - 1, &data).expect("encode");
        assert_eq!(decode_blob(&old).expect("decode"), None);
        assert!(decode_blob(&[1, 2]).is_err());
    }

    async fn round_trip(raw: &dyn Raw) {
        let data = crate::payload::raw_data(1).expect("payload");
        let id = "raw-test-session-0001";
        assert_eq!(raw.load(id).await.expect("load"), None);
        raw.store(id, &data, &data, Duration::from_secs(60))
            .await
            .expect("store");
        assert_eq!(raw.load(id).await.expect("load"), Some(data));
        raw.cleanup().await.expect("cleanup");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_local_baseline_round_trips() {
        round_trip(&MokaRaw::new(100)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        round_trip(&FileRaw::open(dir.path().join("f"), false, vec![]).expect("file")).await;
        round_trip(
            &SqliteRaw::open(&dir.path().join("raw.db"), 2, vec![])
                .await
                .expect("sqlite"),
        )
        .await;
        round_trip(
            &SledRaw::open(&dir.path().join("sled"), vec![])
                .await
                .expect("sled"),
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_baseline_round_trips() {
        let url = crate::redis_url();
        let raw = RedisRaw::open(&url, &crate::private_prefix("rawtest"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Redis is needed at {url} ({e}): start it with `bash scripts/services` \
                     or set REDIS_URL"
                )
            });
        round_trip(&raw).await;
    }
}
