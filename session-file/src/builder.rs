//! [`FileStoreBuilder`]: the options of a [`FileStore`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use session_core::driver::{Driver as _, Error, Result};
use tokio::sync::oneshot;

use crate::disk::{self, Disk, DiskOptions};
use crate::store::{FileStore, Inner, blocking};
use crate::{DEFAULT_MAX_DISK_CALLS, DEFAULT_STALE_TEMP_AFTER, NAME, paths};

/// Options of a [`FileStore`], made by [`FileStore::builder`].
///
/// The defaults: no background purge, fsync on, temp files older than
/// [`DEFAULT_STALE_TEMP_AFTER`] purged, writers wait for each other's locks without limit, at
/// most [`DEFAULT_MAX_DISK_CALLS`] disk calls at once.
#[derive(Clone, Debug)]
pub struct FileStoreBuilder {
    purge_interval: Option<Duration>,
    stale_temp_after: Duration,
    sync: bool,
    lock_timeout: Option<Duration>,
    max_disk_calls: usize,
}

impl Default for FileStoreBuilder {
    fn default() -> Self {
        FileStoreBuilder {
            purge_interval: None,
            stale_temp_after: DEFAULT_STALE_TEMP_AFTER,
            sync: true,
            lock_timeout: None,
            max_disk_calls: DEFAULT_MAX_DISK_CALLS,
        }
    }
}

impl FileStoreBuilder {
    /// Runs [`purge_expired`](session_core::Storage::purge_expired) every `interval` in a tokio
    /// task, which stops when the last clone of the store is dropped. Off by default (call
    /// `purge_expired` yourself, or not: an expired session is never returned either way, it
    /// only takes disk space).
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

    /// How many blocking disk calls (writes, and reads the page cache cannot serve at once) run
    /// at the same time; more wait their turn (default [`DEFAULT_MAX_DISK_CALLS`], at least 1).
    ///
    /// Without a bound, 256 concurrent requests meant 256 threads of tokio's blocking pool each
    /// writing and fsyncing its own file: measured on a 2-core VM with ext4, half the write
    /// throughput of 16 at a time, and a p99 of 180 ms.
    pub fn max_disk_calls(mut self, n: usize) -> Self {
        self.max_disk_calls = n.max(1);
        self
    }

    /// Opens the store in `dir`: creates the directory with mode 0700 if missing, sets 0700 if
    /// it has another mode, and starts the background purge if configured (which needs a tokio
    /// runtime: this is an async fn, so it has one).
    pub async fn open(self, dir: impl AsRef<Path>) -> Result<FileStore> {
        let dir = dir.as_ref().to_path_buf();
        self.open_in(dir, None).await
    }

    /// Opens the store in a fresh temporary directory that is deleted when the last clone of
    /// the store is dropped: for tests, benchmarks and throwaway servers.
    pub async fn temporary(self) -> Result<FileStore> {
        let temp = blocking(|| {
            tempfile::Builder::new()
                .prefix("session-file-")
                .tempdir()
                .map_err(|e| Error::backend(NAME, e))
        })
        .await?;
        let dir = temp.path().to_path_buf();
        self.open_in(dir, Some(temp)).await
    }

    async fn open_in(
        self,
        requested: std::path::PathBuf,
        temp: Option<tempfile::TempDir>,
    ) -> Result<FileStore> {
        if self.purge_interval.is_some_and(|i| i.is_zero()) {
            return Err(Error::InvalidInput(
                "purge interval must be above zero".into(),
            ));
        }
        let dir = blocking(move || disk::prepare_dir(&requested)).await?;
        let disk = Disk {
            layout: paths::Layout::new(dir),
            opts: DiskOptions {
                sync: self.sync,
                stale_temp_after: self.stale_temp_after,
                lock_timeout: self.lock_timeout,
            },
            inline: Default::default(),
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
            disk_calls: tokio::sync::Semaphore::new(self.max_disk_calls),
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
/// the next tick (call `purge_expired` yourself to see them).
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
