//! [`SqliteStoreBuilder`]: the options for opening a [`SqliteStore`], and [`Synchronous`].

use std::path::Path;
use std::time::Duration;

use session_core::driver::Result;

use crate::SqliteStore;
use crate::schema::DEFAULT_TABLE;

/// SQLite's `PRAGMA synchronous` setting: how often SQLite waits for the disk.
///
/// With WAL, [`Normal`](Synchronous::Normal) (the default here) never corrupts the database; a
/// power loss may roll back the last commits. [`Full`](Synchronous::Full) makes every commit
/// durable at the price of an fsync per write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// No fsync at all: fastest, a power loss or OS crash may corrupt the database.
    Off,
    /// fsync at WAL checkpoints only (the default).
    #[default]
    Normal,
    /// fsync at every commit.
    Full,
    /// Like `Full`, and also syncs the directory after the journal is unlinked.
    Extra,
}

impl Synchronous {
    pub(crate) fn as_sql(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

/// The default of [`SqliteStoreBuilder::wal_autocheckpoint`]: 1,000 pages (about 4 MB of WAL with
/// 4 KiB pages), SQLite's own default.
pub const DEFAULT_WAL_AUTOCHECKPOINT: u32 = 1_000;

/// The default of [`SqliteStoreBuilder::cache_size`]: 32 MiB of page cache per connection at
/// most (SQLite's default is 2 MiB).
pub const DEFAULT_CACHE_KIB: u32 = 32 * 1024;

/// Builder for a [`SqliteStore`], made by [`SqliteStore::builder`]: the tables' base name, the
/// number of reader connections, the busy timeout, the synchronous mode and the statement cache.
///
/// ```no_run
/// use std::time::Duration;
/// use session_sqlite::{SqliteStore, Synchronous};
///
/// # async fn demo() -> session_core::Result<()> {
/// let store = SqliteStore::builder()
///     .table("web_sessions")
///     .readers(4)
///     .busy_timeout(Duration::from_secs(2))
///     .synchronous(Synchronous::Full)
///     .open("sessions.db")
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStoreBuilder {
    pub(crate) table: String,
    pub(crate) readers: usize,
    pub(crate) busy_timeout: Duration,
    pub(crate) synchronous: Synchronous,
    pub(crate) statement_cache: usize,
    pub(crate) wal_autocheckpoint: u32,
    pub(crate) cache_kib: u32,
}

/// The defaults: tables named from `sessions`, 4 reader connections (or one per CPU if that is
/// more), a 5 s busy timeout,
/// `synchronous = NORMAL`, 32 cached statements per connection, a WAL checkpoint every
/// [`DEFAULT_WAL_AUTOCHECKPOINT`] pages (SQLite's default), up to [`DEFAULT_CACHE_KIB`] of page cache per
/// connection (the same as [`SqliteStore::builder`]).
impl Default for SqliteStoreBuilder {
    fn default() -> Self {
        SqliteStoreBuilder {
            table: DEFAULT_TABLE.to_owned(),
            readers: std::thread::available_parallelism().map_or(4, |n| n.get().max(4)),
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Normal,
            statement_cache: 32,
            wal_autocheckpoint: DEFAULT_WAL_AUTOCHECKPOINT,
            cache_kib: DEFAULT_CACHE_KIB,
        }
    }
}

impl SqliteStoreBuilder {
    /// The base name of the tables (default `sessions`): `{name}`,
    /// `{name}_owners`, `{name}_locks`, as in `session-sql`'s logical schema. Stores with
    /// different names share one database file without seeing each other's sessions, owners or
    /// locks.
    ///
    /// Checked (by `session_sql::check_ident`) when the store opens, before the file is touched:
    /// it must match `[A-Za-z_][A-Za-z0-9_]*` and be 1 to
    /// [`MAX_TABLE_NAME_LEN`](session_sql::MAX_TABLE_NAME_LEN) (40) characters long, otherwise
    /// [`open`](Self::open) fails with [`Error::InvalidInput`](session_core::Error::InvalidInput).
    /// The default base keeps its schema version in `PRAGMA user_version`; any other keeps it in
    /// its own `{name}_schema_version` table.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// Number of read-only connections (default 4, or the number of CPUs if that is more).
    ///
    /// Short reads (`load`, `get`, `get_size`, `index_owner`: one session by primary key) run
    /// inline on the calling thread, on whichever of these connections is free; long ones
    /// (`scan`, `index_sessions`) on tokio's blocking pool. Give at least as many as threads
    /// call the store at once (tokio's worker threads): when every connection is taken, a read
    /// moves to the blocking pool, which is slower. With 0, every read runs on the writer
    /// thread, between its group commits, and no SQLite call runs on the callers' threads.
    pub fn readers(mut self, readers: usize) -> Self {
        self.readers = readers;
        self
    }

    /// How long a connection waits for a lock held by another connection or process before the
    /// call fails with a backend error (default 5 s; `PRAGMA busy_timeout`).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// SQLite's synchronous mode (default [`Synchronous::Normal`]).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// How many prepared statements each connection keeps cached (default 32).
    pub fn statement_cache(mut self, capacity: usize) -> Self {
        self.statement_cache = capacity;
        self
    }

    /// How many pages the write-ahead log may hold before the writer checkpoints it into the
    /// database file (`PRAGMA wal_autocheckpoint` on the writer's connection; default
    /// [`DEFAULT_WAL_AUTOCHECKPOINT`], SQLite's 1,000 pages, about 4 MB with 4 KiB pages; 0
    /// turns automatic checkpoints off, which lets the WAL grow until the last connection
    /// closes).
    ///
    /// A checkpoint copies every page changed since the last one into the database file and
    /// fsyncs it (with [`Synchronous::Normal`] it is the only fsync), inside the `COMMIT` of the
    /// writer thread, while the writes queue. A trade-off between write throughput and write
    /// latency: with a larger WAL a page changed many times is copied once per checkpoint and
    /// the fsync is paid less often, but each checkpoint takes longer and every write queued
    /// meanwhile waits for it. Measured on `loadgen` (10,000 sessions, 2 cores; see the
    /// crate's README): 10,000 pages made updates of existing sessions 1.5 to 1.8 times faster,
    /// with a lower p99, and creates about 1.5 times faster, but raised the create p99 from about
    /// 22 ms to about 50 ms (a checkpoint of a fast-growing file copies nearly every page it
    /// holds). A larger WAL also takes disk space: SQLite reuses the file from its start after
    /// a checkpoint without shrinking it, and deletes it when the last connection closes.
    pub fn wal_autocheckpoint(mut self, pages: u32) -> Self {
        self.wal_autocheckpoint = pages;
        self
    }

    /// The most page cache each connection (the writer's and every reader's) keeps, in KiB
    /// (`PRAGMA cache_size = -kib`; default [`DEFAULT_CACHE_KIB`], 32 MiB; SQLite's own default
    /// is 2 MiB). The cache grows only as pages are read, so a small database uses little.
    ///
    /// A page not in a connection's cache is read from the file with a system call (from the
    /// OS page cache, or the disk). The writer is the only connection that writes, so its cache
    /// stays valid across its transactions; a reader's cache is emptied by SQLite whenever
    /// another connection committed since its last read, so a larger one helps reads in
    /// read-mostly periods (measured: the p50 of `loadgen`'s reads from about 7.5 to 6.6 µs).
    pub fn cache_size(mut self, kib: u32) -> Self {
        self.cache_kib = kib;
        self
    }

    /// Checks the table name, opens (creating if needed) the database at `path` with these
    /// options, switches it to WAL mode and creates or migrates the tables. See
    /// [`SqliteStore::open`] for the errors.
    pub async fn open(self, path: impl AsRef<Path>) -> Result<SqliteStore> {
        SqliteStore::start(path.as_ref(), self).await
    }
}
