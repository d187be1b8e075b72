#![doc = include_str!("../README.md")]

#[cfg(not(unix))]
compile_error!("session-file needs a Unix file system (modes 0600/0700, flock, inode checks)");

mod disk;
mod paths;
mod record;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use session_core::{
    Capabilities, ChangeSet, Data, Error, Loaded, LockToken, Result, ScanPage, SessionId, Storage,
    Value, async_trait, check,
};
use tokio::sync::oneshot;

use crate::disk::{Disk, DiskOptions};

/// Name of this driver, as [`Storage::name`] reports it.
pub const DRIVER: &str = "file";

/// Default age after which [`Storage::purge_expired`] deletes a temp file left by a writer that
/// crashed mid-write.
pub const DEFAULT_STALE_TEMP_AFTER: Duration = Duration::from_secs(10 * 60);

/// A session store keeping one file per session in a directory.
///
/// Cheap to clone (clones share the directory handle and the background purge task). Several
/// processes may open the same directory: every read-modify-write takes an advisory lock
/// (`flock`) on the session's lock file. See the crate documentation for the on-disk layout.
#[derive(Clone, Debug)]
pub struct FileStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    disk: Disk,
    /// Dropping this stops the background purge task.
    _stop_purge: Option<oneshot::Sender<()>>,
    /// A temporary directory the store owns and deletes when the last clone drops.
    _temp: Option<tempfile::TempDir>,
}

impl Drop for Inner {
    /// Deletes the directory of a [`FileStore::temporary`] store on the blocking pool when there is
    /// a runtime (the last clone is usually dropped inside async code), else right here.
    fn drop(&mut self) {
        if let Some(temp) = self._temp.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(temp))),
                Err(_) => drop(temp),
            }
        }
    }
}

/// Options for [`FileStore`], made by [`FileStore::builder`].
#[derive(Clone, Debug)]
pub struct FileStoreBuilder {
    dir: PathBuf,
    purge_interval: Option<Duration>,
    stale_temp_after: Duration,
    sync: bool,
    lock_timeout: Option<Duration>,
}

impl FileStoreBuilder {
    /// Runs [`Storage::purge_expired`] every `interval` in a tokio task, which stops when the last
    /// clone of the store is dropped. Off by default (call `purge_expired` yourself, or not: an
    /// expired session is never returned either way, it only takes disk space).
    pub fn purge_interval(mut self, interval: Duration) -> Self {
        self.purge_interval = Some(interval);
        self
    }

    /// Age after which a purge deletes a temp file left behind by a crashed writer (default
    /// [`DEFAULT_STALE_TEMP_AFTER`]). Must exceed the longest write, or a purge could delete a
    /// temp file that another process is still writing (its rename then fails with an error).
    pub fn stale_temp_after(mut self, age: Duration) -> Self {
        self.stale_temp_after = age;
        self
    }

    /// Whether writes call `fsync` on the file (and on the directory when a file is created or
    /// deleted). On by default; turning it off keeps writes atomic against a crashed *process*
    /// but not against a power failure.
    pub fn sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    /// How long a write waits for another writer's advisory lock before failing with
    /// [`Error::Locked`]. By default it waits as long as needed (a lock is held only for one
    /// read-modify-write, and the kernel releases the lock of a process that dies).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = Some(timeout);
        self
    }

    /// Opens the store: creates the directory with mode 0700 if missing, sets 0700 if it has
    /// another mode, and starts the background purge if configured (which needs a tokio runtime:
    /// this is an async fn, so it has one).
    pub async fn open(self) -> Result<FileStore> {
        self.open_inner(None).await
    }

    async fn open_inner(self, temp: Option<tempfile::TempDir>) -> Result<FileStore> {
        if self.purge_interval.is_some_and(|i| i.is_zero()) {
            return Err(Error::InvalidInput(
                "purge interval must be above zero".into(),
            ));
        }
        let requested = self.dir.clone();
        let dir = blocking(move || disk::prepare_dir(&requested)).await?;
        let disk = Disk {
            layout: paths::Layout::new(dir),
            opts: DiskOptions {
                sync: self.sync,
                stale_temp_after: self.stale_temp_after,
                lock_timeout: self.lock_timeout,
            },
        };
        let (stop_tx, stop_rx) = match self.purge_interval {
            Some(_) => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let inner = Arc::new(Inner {
            disk,
            _stop_purge: stop_tx,
            _temp: temp,
        });
        if let (Some(interval), Some(stop)) = (self.purge_interval, stop_rx) {
            tokio::spawn(purge_loop(Arc::downgrade(&inner), interval, stop));
        }
        Ok(FileStore { inner })
    }
}

/// The background purge: one purge per tick until the store is dropped. Errors are retried at
/// the next tick (call [`Storage::purge_expired`] yourself to see them).
async fn purge_loop(
    store: std::sync::Weak<Inner>,
    interval: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {}
        }
        let Some(inner) = store.upgrade() else { return };
        let _ = FileStore { inner }.purge_expired().await;
    }
}

/// Runs blocking file I/O on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend(DRIVER, e))?
}

impl FileStore {
    /// Opens a store in `dir` with default options (see [`FileStore::builder`]).
    pub async fn open(dir: impl Into<PathBuf>) -> Result<FileStore> {
        Self::builder(dir).open().await
    }

    /// Options for a store in `dir`: no background purge, fsync on, temp files older than
    /// [`DEFAULT_STALE_TEMP_AFTER`] purged, writers wait for each other's locks without limit.
    pub fn builder(dir: impl Into<PathBuf>) -> FileStoreBuilder {
        FileStoreBuilder {
            dir: dir.into(),
            purge_interval: None,
            stale_temp_after: DEFAULT_STALE_TEMP_AFTER,
            sync: true,
            lock_timeout: None,
        }
    }

    /// A store in a fresh temporary directory that is deleted when the last clone of the store
    /// is dropped: for tests, benchmarks and throwaway servers.
    pub async fn temporary() -> Result<FileStore> {
        let temp = blocking(|| {
            tempfile::Builder::new()
                .prefix("session-file-")
                .tempdir()
                .map_err(|e| Error::backend(DRIVER, e))
        })
        .await?;
        Self::builder(temp.path()).open_inner(Some(temp)).await
    }

    /// The directory the store lives in (canonical, absolute).
    pub fn dir(&self) -> &Path {
        &self.inner.disk.layout.dir
    }

    /// Runs `f` on the blocking pool with this store's disk.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Disk) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || f(&inner.disk)).await
    }
}

fn check_data(data: &Data) -> Result<()> {
    data.keys().try_for_each(|k| check::key(k))
}

#[async_trait]
impl Storage for FileStore {
    fn name(&self) -> &'static str {
        DRIVER
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_apply: true,
            load_with_deadline: true,
            owner_index: true,
            lock: true,
            purge: true,
            scan: true,
            native_expiry: false,
        }
    }

    async fn new(&self, ttl: Duration) -> Result<Option<SessionId>> {
        check::ttl_millis(ttl)?;
        Ok(None)
    }

    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        check::key(key)?;
        let (id, key) = (id.clone(), key.to_owned());
        self.run(move |d| Ok(d.read_live(&id)?.and_then(|mut r| r.data.remove(&key))))
            .await
    }

    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        let id = id.clone();
        self.run(move |d| Ok(d.read_live(&id)?.map(|r| r.data).unwrap_or_default()))
            .await
    }

    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        let id = id.clone();
        self.run(move |d| Ok(d.read_live(&id)?.map_or(0, |r| r.data.len())))
            .await
    }

    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Duration) -> Result<()> {
        check::key(key)?;
        let ttl_ms = check::ttl_millis(ttl)?;
        let id = id.clone();
        let data = Data::from([(key.to_owned(), value)]);
        self.run(move |d| d.set_map(&id, data, ttl_ms)).await
    }

    async fn set_map(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        check_data(&data)?;
        let ttl_ms = check::ttl_millis(ttl)?;
        let id = id.clone();
        self.run(move |d| d.set_map(&id, data, ttl_ms)).await
    }

    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        check::key(key)?;
        let (id, key) = (id.clone(), key.to_owned());
        self.run(move |d| d.remove_key(&id, &key)).await
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        let id = id.clone();
        self.run(move |d| d.remove_all(&id)).await
    }

    async fn get_session(
        &self,
        id: &SessionId,
        _ttl: Duration,
        _cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        let id = id.clone();
        self.run(move |d| Ok(d.read_live(&id)?.map(|r| r.data)))
            .await
    }

    async fn set_session(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        check_data(&data)?;
        let ttl_ms = check::ttl_millis(ttl)?;
        let id = id.clone();
        self.run(move |d| d.set_session(&id, data, ttl_ms)).await
    }

    async fn update_ttl(&self, id: &SessionId, ttl: Duration) -> Result<()> {
        let ttl_ms = check::ttl_millis(ttl)?;
        let id = id.clone();
        self.run(move |d| d.update_ttl(&id, ttl_ms)).await
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, ttl: Duration) -> Result<bool> {
        let ttl_ms = check::ttl_millis(ttl)?;
        changes.remove.iter().try_for_each(|k| check::key(k))?;
        check_data(&changes.set)?;
        let id = id.clone();
        self.run(move |d| d.apply(&id, changes, ttl_ms)).await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        let id = id.clone();
        self.run(move |d| {
            Ok(d.read_live(&id)?.map(|r| Loaded {
                expires_at: Some(check::from_unix_millis(r.deadline_ms)),
                data: r.data.into(),
            }))
        })
        .await
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Duration) -> Result<()> {
        check::owner(owner)?;
        let ttl_ms = check::ttl_millis(ttl)?;
        let (owner, id) = (owner.to_owned(), id.clone());
        self.run(move |d| d.index_add(&owner, &id, ttl_ms)).await
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let id = id.clone();
        self.run(move |d| d.index_remove(&id)).await
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        check::owner(owner)?;
        let encoded = paths::owner_dir_name(owner);
        self.run(move |d| d.index_sessions(&encoded)).await
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let id = id.clone();
        self.run(move |d| d.index_owner(&id)).await
    }

    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        let lease_ms = check::ttl_millis(lease)?;
        let id = id.clone();
        self.run(move |d| d.try_lock(&id, lease_ms)).await
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let (id, token) = (id.clone(), token.clone());
        self.run(move |d| d.unlock(&id, &token)).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.run(|d| d.purge()).await
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        if let Some(c) = cursor
            && SessionId::parse(c).is_err()
        {
            return Err(Error::InvalidInput(
                "scan cursor is not one this driver returned".into(),
            ));
        }
        let cursor = cursor.map(str::to_owned);
        let (ids, next) = self.run(move |d| d.scan(cursor.as_deref(), limit)).await?;
        Ok(ScanPage { ids, next })
    }
}
