//! [`FileStore`] and its [`Driver`] implementation.

use std::path::Path;
use std::sync::Arc;

use session_core::driver::{
    Capabilities, ChangeSet, Driver, Error, Expiry, Loaded, LockToken, Result, ScanPage, SessionId,
    Ttl, async_trait,
};
use tokio::sync::oneshot;

use session_core::driver::check;
use session_core::driver::record::Record;

use crate::builder::FileStoreBuilder;
use crate::disk::{Disk, decode_record};
use crate::nowait::{self, Cached};
use crate::{NAME, paths};

/// A session store keeping one file per session in a directory.
///
/// Cheap to clone (clones share the directory handle and the background purge task). Several
/// processes may open the same directory: every read-modify-write takes an advisory lock
/// (`flock`) on the session's lock file. See the crate documentation for the on-disk layout.
#[derive(Clone, Debug)]
pub struct FileStore {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) disk: Disk,
    /// Bounds the blocking disk calls in flight ([`FileStoreBuilder::max_disk_calls`]).
    ///
    /// [`FileStoreBuilder::max_disk_calls`]: crate::FileStoreBuilder::max_disk_calls
    pub(crate) disk_calls: tokio::sync::Semaphore,
    /// Dropping this stops the background purge task.
    pub(crate) _stop_purge: Option<oneshot::Sender<()>>,
    /// A temporary directory the store owns and deletes when the last clone drops.
    pub(crate) _temp: Option<tempfile::TempDir>,
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

/// Runs blocking file I/O on tokio's blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend(NAME, e))?
}

impl FileStore {
    /// Opens a store in `dir` with the default options (see [`FileStoreBuilder`]).
    pub async fn open(dir: impl AsRef<Path>) -> Result<FileStore> {
        Self::builder().open(dir).await
    }

    /// Options: background purge, fsync, stale temp files, lock timeout.
    pub fn builder() -> FileStoreBuilder {
        FileStoreBuilder::default()
    }

    /// A store with the default options in a fresh temporary directory that is deleted when
    /// the last clone of the store is dropped: for tests, benchmarks and throwaway servers.
    pub async fn temporary() -> Result<FileStore> {
        Self::builder().temporary().await
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
        let _turn = self.disk_turn().await?;
        let inner = Arc::clone(&self.inner);
        blocking(move || f(&inner.disk)).await
    }

    /// A turn among the [`max_disk_calls`](crate::FileStoreBuilder::max_disk_calls) blocking
    /// disk calls; held until the call returns.
    async fn disk_turn(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.inner
            .disk_calls
            .acquire()
            .await
            .map_err(|e| Error::backend(NAME, e))
    }

    /// The live session (unexpired, at least one key). Read inline when the kernel can serve
    /// the file from its caches without waiting for the disk, else finished on the blocking
    /// pool ([`nowait`]); decoded here either way.
    async fn read_live(&self, id: &SessionId) -> Result<Option<Record>> {
        let path = self.inner.disk.layout.record(id)?;
        let bytes = match nowait::read(&path, &self.inner.disk.inline) {
            Cached::Done(bytes) => bytes,
            Cached::Wait(partial) => {
                let _turn = self.disk_turn().await?;
                blocking(move || nowait::finish(&path, partial)).await?
            }
        };
        let now = check::now_millis();
        Ok(decode_record(bytes)?.filter(|r| r.live(now)))
    }
}

#[async_trait]
impl Driver for FileStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        Ok(self.read_live(id).await?.map(Record::into_loaded))
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        let id = id.clone();
        self.run(move |d| d.apply(&id, changes, expiry)).await
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        let id = id.clone();
        self.run(move |d| d.remove_all(&id)).await
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Ttl) -> Result<()> {
        let (owner, id) = (owner.to_owned(), id.clone());
        self.run(move |d| d.index_add(&owner, &id, ttl.as_millis()))
            .await
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let id = id.clone();
        self.run(move |d| d.index_remove(&id)).await
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        let encoded = paths::owner_dir_name(owner);
        self.run(move |d| d.index_sessions(&encoded)).await
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        Ok(self.read_live(id).await?.and_then(|r| r.owner))
    }

    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        let id = id.clone();
        self.run(move |d| d.try_lock(&id, lease.as_millis())).await
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let (id, token) = (id.clone(), token.clone());
        self.run(move |d| d.unlock(&id, &token)).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.run(|d| d.purge()).await
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        // The cursor is this driver's own (the last id of a page), so this driver checks it.
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
