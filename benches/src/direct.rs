//! The honest floors of the embedded backends: each backend driven directly from `C` OS threads,
//! each thread looping on the backend's own blocking API, the way a program written directly
//! against it would, with no async runtime, no channel and no thread hop per operation.
//!
//! The encoding, decoding and durability are the drivers': a session is one blob (the deadline in
//! unix milliseconds, 8 bytes big endian, then the MessagePack map of key to value bytes,
//! [`encode_blob`]); SQLite runs in WAL mode with `synchronous = NORMAL`; sled with its defaults;
//! files are written to a temporary file, fsynced (unless `--no-fsync`) and renamed. What each
//! baseline does, and why nothing simpler is faster, is in `BENCHMARKS.md` ("Honest baselines").

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use rusqlite::{Connection, OptionalExtension, params};
use tempfile::TempDir;

use crate::Result;
use crate::raw::{RawData, deadline, decode_blob, decode_blob_shared, encode_blob, now_millis};

/// One embedded backend, driven by blocking calls from the benchmark's own threads.
///
/// `worker` is the calling thread's number (`0..threads`), so a backend can give each thread a
/// connection of its own (SQLite readers) without any lookup or lock contention.
pub trait Direct: Send + Sync + 'static {
    /// The backend's name ("moka", "rusqlite", ...).
    fn name(&self) -> &'static str;

    /// The whole session, `None` if missing or expired.
    fn load(&self, worker: usize, id: &str) -> Result<Option<RawData>>;

    /// Writes the whole session (`full`, the map after the change), expiring at now + `ttl`.
    fn store(&self, worker: usize, id: &str, full: &RawData, ttl: Duration) -> Result<()>;

    /// How many of the `threads` the floor's write and create phases use: all of them unless
    /// fewer write faster (loadgen's `--raw-threads` overrides this).
    fn writer_threads(&self, threads: usize) -> usize {
        threads
    }
}

/// The machine's cores (at least 1).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// ----- moka --------------------------------------------------------------------------------------

/// moka's synchronous cache of the encoded blobs, LRU like the memory driver's, in one of two
/// layouts ([`MokaLayout`]).
pub enum MokaDirect {
    /// [`MokaLayout::Indexed`]: moka, and the index reads look up.
    Indexed(Cache<String, Arc<Cell>>, DashMap<String, Arc<Cell>>),
    /// [`MokaLayout::Cells`].
    Cells(Cache<String, Arc<Mutex<Bytes>>>),
    /// [`MokaLayout::Blobs`].
    Blobs(Cache<String, Bytes>),
}

/// A session's blob in the indexed layout, and when a read last told moka about it (unix ms).
pub struct Cell {
    blob: Mutex<Bytes>,
    touched: AtomicU64,
}

impl Cell {
    fn new(blob: Bytes) -> Arc<Cell> {
        Arc::new(Cell {
            blob: Mutex::new(blob),
            touched: AtomicU64::new(0),
        })
    }

    fn blob(&self) -> Bytes {
        self.blob
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether this read should tell moka (once a second per session, as the driver).
    fn touch_due(&self, now_ms: u64) -> bool {
        let last = self.touched.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= 1000
            && self
                .touched
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// How the moka floor keeps a session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MokaLayout {
    /// The memory driver's layout since 2026-12-06 (its second change that day): cells, and a
    /// concurrent map (dashmap, 64 shards) of the same cells that reads look up, telling moka
    /// about a session (`get`: the LRU order, and whether it is still cached) at most once a
    /// second; writes go through moka as in [`Cells`](Self::Cells) and put a new cell in both.
    #[default]
    Indexed,
    /// Each entry a cell holding the blob: a write of a cached session replaces the blob in its
    /// cell (`get`, then a lock) and leaves moka's write path alone; a read locks the cell to
    /// clone the blob. The memory driver's own layout since 2026-12-06; writes 1.6-2x faster
    /// than [`Blobs`](Self::Blobs), reads a little slower (the lock): BENCHMARKS.md gives the
    /// read ratios against both.
    Cells,
    /// Each entry the blob itself: `get` to read, `insert` to write.
    Blobs,
}

impl MokaDirect {
    /// A cache holding up to `capacity` sessions, laid out as `layout` says.
    pub fn new(capacity: u64, layout: MokaLayout) -> Self {
        fn lru<V: Clone + Send + Sync + 'static>(capacity: u64) -> Cache<String, V> {
            Cache::builder()
                .max_capacity(capacity)
                .eviction_policy(EvictionPolicy::lru())
                .build()
        }
        match layout {
            MokaLayout::Indexed => {
                MokaDirect::Indexed(lru(capacity), DashMap::with_shard_amount(64))
            }
            MokaLayout::Cells => MokaDirect::Cells(lru(capacity)),
            MokaLayout::Blobs => MokaDirect::Blobs(lru(capacity)),
        }
    }
}

impl Direct for MokaDirect {
    fn name(&self) -> &'static str {
        "moka"
    }

    fn load(&self, _: usize, id: &str) -> Result<Option<RawData>> {
        let blob = match self {
            MokaDirect::Indexed(cache, index) => {
                match index.get(id).map(|e| Arc::clone(e.value())) {
                    Some(cell) if cell.touch_due(now_millis()) => {
                        cache.get(id).map(|cached| cached.blob())
                    }
                    Some(cell) => Some(cell.blob()),
                    None => None,
                }
            }
            MokaDirect::Cells(cache) => cache
                .get(id)
                .map(|cell| cell.lock().unwrap_or_else(PoisonError::into_inner).clone()),
            MokaDirect::Blobs(cache) => cache.get(id),
        };
        match blob {
            Some(blob) => decode_blob_shared(blob),
            None => Ok(None),
        }
    }

    fn store(&self, _: usize, id: &str, full: &RawData, ttl: Duration) -> Result<()> {
        let blob = Bytes::from(encode_blob(deadline(ttl), full)?);
        match self {
            MokaDirect::Indexed(cache, index) => match cache.get(id) {
                Some(cell) => {
                    let old = std::mem::replace(
                        &mut *cell.blob.lock().unwrap_or_else(PoisonError::into_inner),
                        blob,
                    );
                    drop(old);
                    if !cache.contains_key(id) {
                        let fresh = Cell::new(cell.blob());
                        cache.insert(id.to_string(), Arc::clone(&fresh));
                        index.insert(id.to_string(), fresh);
                    }
                }
                None => {
                    let cell = Cell::new(blob);
                    cache.insert(id.to_string(), Arc::clone(&cell));
                    index.insert(id.to_string(), cell);
                }
            },
            MokaDirect::Cells(cache) => match cache.get(id) {
                Some(cell) => {
                    let old = std::mem::replace(
                        &mut *cell.lock().unwrap_or_else(PoisonError::into_inner),
                        blob,
                    );
                    drop(old);
                    // evicted since the lookup: put it back, as the driver does
                    if !cache.contains_key(id) {
                        cache.insert(id.to_string(), cell);
                    }
                }
                None => cache.insert(id.to_string(), Arc::new(Mutex::new(blob))),
            },
            MokaDirect::Blobs(cache) => cache.insert(id.to_string(), blob),
        }
        Ok(())
    }

    /// One writer per core: moka's write path takes locks, and a writer preempted while it holds
    /// one stalls the others for its time slice. Measured with the blobs layout (2026-12-03
    /// 14:37 UTC, 300,000 writes, 3 rounds): 204,354 writes/s from 2 threads, 171,562 from 4,
    /// 94,790 from 16; with cells (2026-12-06 00:32 UTC, two runs each) 2, 4 and 16 threads
    /// wrote within the noise of each other (340-443k writes/s).
    fn writer_threads(&self, threads: usize) -> usize {
        threads.min(cores())
    }
}

// ----- files -------------------------------------------------------------------------------------

/// One file per session: `std::fs::read`, and write to a temp file, (fsync,) rename.
pub struct FileDirect {
    dir: PathBuf,
    sync: bool,
    _guards: Vec<TempDir>,
}

impl FileDirect {
    /// Files in `dir` (created if missing); `sync` fsyncs each temp file before the rename.
    pub fn open(dir: PathBuf, sync: bool, guards: Vec<TempDir>) -> Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(FileDirect {
            dir,
            sync,
            _guards: guards,
        })
    }
}

impl Direct for FileDirect {
    fn name(&self) -> &'static str {
        "fs"
    }

    fn load(&self, _: usize, id: &str) -> Result<Option<RawData>> {
        match std::fs::read(self.dir.join(id)) {
            Ok(blob) => decode_blob_shared(Bytes::from(blob)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn store(&self, _: usize, id: &str, full: &RawData, ttl: Duration) -> Result<()> {
        let blob = encode_blob(deadline(ttl), full)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(&blob)?;
        if self.sync {
            tmp.as_file().sync_all()?;
        }
        tmp.persist(self.dir.join(id)).map_err(|e| e.error)?;
        Ok(())
    }
}

// ----- rusqlite ----------------------------------------------------------------------------------

const SQL_SELECT: &str = "SELECT data FROM raw_sessions WHERE id = ?1 AND expires_at > ?2";
const SQL_UPSERT: &str = "INSERT INTO raw_sessions (id, expires_at, data) VALUES (?1, ?2, ?3)
     ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, data = excluded.data";

/// A row per session (`id`, `expires_at`, the blob), WAL with `synchronous = NORMAL`. Each
/// thread reads on a connection of its own (WAL readers never wait for each other or for the
/// writer). Writes go to one writer thread that owns the writer connection and commits them in
/// groups: it takes every write waiting (up to [`GROUP_MAX`]), runs their UPSERTs in one
/// transaction, and answers each caller after the `COMMIT`, the same promise as an autocommit
/// UPSERT per write (the write is in the database when the call returns).
///
/// Why not simpler: SQLite allows one writer at a time, so a writer connection per thread only
/// waits in its busy handler, which sleeps (1, 2, 5, 10 ms ...) instead of being woken when
/// the lock frees; one writer behind a mutex, one transaction per write, is what the previous
/// baseline did, and the driver's group commit beat it by 1.2-1.5x: a commit's fixed cost (WAL
/// frame headers, the WAL-index update, the lock round) is paid once per group here too.
///
/// The table is an ordinary rowid table with an index on `id`, not `WITHOUT ROWID`: a
/// `WITHOUT ROWID` row lives in an index b-tree, whose cells spill to an overflow page past
/// about 1,000 bytes on 4 KiB pages, and a session blob is just over that, so every read would
/// touch two pages.
pub struct SqliteDirect {
    writes: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Vec<Mutex<Connection>>,
    _guards: Vec<TempDir>,
}

/// The most writes the SQLite baseline's writer commits in one transaction (the driver's bound).
pub const GROUP_MAX: usize = 128;

/// One write handed to the SQLite writer thread, with the channel its caller waits on.
struct Write {
    id: String,
    deadline: u64,
    blob: Vec<u8>,
    done: mpsc::SyncSender<std::result::Result<(), String>>,
}

fn sqlite_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

fn poisoned<T>(_: T) -> crate::BoxError {
    "a connection mutex was poisoned".into()
}

/// How long the idle writer holds one read snapshot before it takes the newest one (the
/// driver's interval).
const HOLD_REFRESH: Duration = Duration::from_millis(100);

/// The next write, waited for while the writer's connection holds a read transaction on the
/// newest snapshot (renewed every [`HOLD_REFRESH`], released before the write): the readers'
/// read transactions then find their WAL read-mark slot already locked in the process and make
/// no `fcntl` call. The driver does the same (session-sqlite's `pool.rs`); without it here the
/// baseline paid 0.12 `fcntl` per read that the driver does not. `None` when the senders are gone.
fn next_write(conn: &Connection, writes: &mpsc::Receiver<Write>) -> Option<Write> {
    if let Ok(w) = writes.try_recv() {
        return Some(w);
    }
    let hold = || {
        let _ = conn
            .execute_batch("BEGIN DEFERRED")
            .and_then(|()| conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())));
    };
    let release = || {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("COMMIT");
        }
    };
    hold();
    let next = loop {
        match writes.recv_timeout(HOLD_REFRESH) {
            Ok(w) => break Some(w),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                release();
                hold();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        }
    };
    release();
    next
}

/// The writer thread: a group of waiting writes per transaction until every sender is gone.
fn sqlite_writer(conn: Connection, writes: mpsc::Receiver<Write>) {
    let mut group = Vec::with_capacity(GROUP_MAX);
    while let Some(first) = next_write(&conn, &writes) {
        group.push(first);
        while group.len() < GROUP_MAX {
            match writes.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached(SQL_UPSERT)?;
                for w in &group {
                    stmt.execute(params![w.id, w.deadline as i64, w.blob])?;
                }
            }
            tx.commit()
        })()
        .map_err(|e| e.to_string());
        for w in group.drain(..) {
            let _ = w.done.send(outcome.clone());
        }
    }
}

impl SqliteDirect {
    /// Opens (creating) the database at `path`, with one reader connection per thread.
    pub fn open(path: &Path, threads: usize, guards: Vec<TempDir>) -> Result<Self> {
        let writer = sqlite_conn(path)?;
        writer.execute_batch(
            "CREATE TABLE IF NOT EXISTS raw_sessions (
                 id TEXT PRIMARY KEY NOT NULL,
                 expires_at INTEGER NOT NULL,
                 data BLOB NOT NULL
             );",
        )?;
        let readers = (0..threads.max(1))
            .map(|_| sqlite_conn(path).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("sqlite-direct-writer".into())
            .spawn(move || sqlite_writer(writer, rx))?;
        Ok(SqliteDirect {
            writes: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            readers,
            _guards: guards,
        })
    }
}

impl Drop for SqliteDirect {
    fn drop(&mut self) {
        // closing the channel ends the writer thread, which closes its connection
        if let Ok(mut writes) = self.writes.lock() {
            writes.take();
        }
        if let Ok(mut writer) = self.writer.lock()
            && let Some(handle) = writer.take()
        {
            let _ = handle.join();
        }
    }
}

impl Direct for SqliteDirect {
    fn name(&self) -> &'static str {
        "rusqlite"
    }

    fn load(&self, worker: usize, id: &str) -> Result<Option<RawData>> {
        let conn = self.readers[worker % self.readers.len()]
            .lock()
            .map_err(poisoned)?;
        let mut stmt = conn.prepare_cached(SQL_SELECT)?;
        let blob: Option<Vec<u8>> = stmt
            .query_row(params![id, now_millis() as i64], |r| r.get(0))
            .optional()?;
        match blob {
            // the expiry is in its own column; the blob's header is checked again
            Some(b) => decode_blob_shared(Bytes::from(b)),
            None => Ok(None),
        }
    }

    fn store(&self, _: usize, id: &str, full: &RawData, ttl: Duration) -> Result<()> {
        let d = deadline(ttl);
        let blob = encode_blob(d, full)?;
        let (done, answer) = mpsc::sync_channel(1);
        let write = Write {
            id: id.to_string(),
            deadline: d,
            blob,
            done,
        };
        self.writes
            .lock()
            .map_err(poisoned)?
            .as_ref()
            .ok_or("the SQLite writer is closed")?
            .send(write)
            .map_err(|_| "the SQLite writer thread is gone")?;
        answer
            .recv()
            .map_err(|_| "the SQLite writer thread is gone")?
            .map_err(Into::into)
    }
}

// ----- sled --------------------------------------------------------------------------------------

/// sled `Tree::get` / `Tree::insert` of the blob, one tree shared by every thread.
pub struct SledDirect {
    tree: sled::Tree,
    _db: sled::Db,
    _guards: Vec<TempDir>,
}

impl SledDirect {
    /// Opens (creating) a sled database in `dir` with sled's defaults (as the driver's).
    pub fn open(dir: &Path, guards: Vec<TempDir>) -> Result<Self> {
        let db = sled::open(dir)?;
        let tree = db.open_tree("raw")?;
        Ok(SledDirect {
            tree,
            _db: db,
            _guards: guards,
        })
    }
}

impl Direct for SledDirect {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn load(&self, _: usize, id: &str) -> Result<Option<RawData>> {
        match self.tree.get(id.as_bytes())? {
            Some(blob) => decode_blob(&blob),
            None => Ok(None),
        }
    }

    fn store(&self, _: usize, id: &str, full: &RawData, ttl: Duration) -> Result<()> {
        let blob = encode_blob(deadline(ttl), full)?;
        self.tree.insert(id.as_bytes(), blob)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(direct: &dyn Direct) {
        let data = crate::payload::raw_data(1).expect("payload");
        let id = "direct-test-session-0001";
        assert_eq!(direct.load(0, id).expect("load"), None);
        direct
            .store(0, id, &data, Duration::from_secs(60))
            .expect("store");
        assert_eq!(direct.load(1, id).expect("load"), Some(data.clone()));
        // an expired session is missing
        direct
            .store(1, id, &data, Duration::from_millis(0))
            .expect("store");
        assert_eq!(direct.load(0, id).expect("load"), None, "{}", direct.name());
    }

    #[test]
    fn every_embedded_baseline_round_trips_and_expires() {
        round_trip(&MokaDirect::new(100, MokaLayout::Indexed));
        round_trip(&MokaDirect::new(100, MokaLayout::Cells));
        round_trip(&MokaDirect::new(100, MokaLayout::Blobs));
        let dir = tempfile::tempdir().expect("tempdir");
        round_trip(&FileDirect::open(dir.path().join("f"), true, vec![]).expect("file"));
        round_trip(&SqliteDirect::open(&dir.path().join("raw.db"), 2, vec![]).expect("sqlite"));
        round_trip(&SledDirect::open(&dir.path().join("sled"), vec![]).expect("sled"));
    }
}
