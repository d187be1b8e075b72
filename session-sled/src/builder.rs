//! [`SledStoreBuilder`] and the [`Flush`] policy: the options of a [`SledStore`].

use std::path::Path;
use std::time::Duration;

use session_core::driver::{Error, Result, Ttl, check};
use sled::Db;

use crate::NAME;
use crate::store::{Inner, SledStore, backend};

/// When the driver makes sled write its log to disk, and so what survives a crash.
///
/// sled is log-structured: whatever crash happens, the database recovers to a consistent
/// prefix of its writes (index entries are written before the record that needs them, so every
/// prefix is consistent). The policy only decides how long that prefix is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flush {
    /// `flush_async().await` after every write method, before it returns. A write that returned
    /// `Ok` survives a process crash, a kernel panic and a power cut (sled fsyncs its log).
    /// The slowest policy: one fsync per write.
    EveryWrite,
    /// sled's own background flusher (`sled::Config::flush_every_ms`) writes the log every
    /// interval. A crash loses at most the writes of the last interval (plus the time one flush
    /// takes). Only for [`SledStoreBuilder::open`] and [`SledStoreBuilder::temporary`]: the
    /// interval of a [`sled::Db`] you opened yourself is its own `Config`'s.
    Interval(Duration),
    /// No flush is asked for (`flush_every_ms(None)`). sled writes its log only when an
    /// in-memory write buffer fills up, when [`SledStore::flush`] is called, and when the
    /// last handle of the database is dropped (a clean shutdown). A crash loses every write
    /// since the last of those.
    Never,
}

impl Flush {
    /// sled's own default: its background flusher every 500 ms.
    pub const DEFAULT: Flush = Flush::Interval(Duration::from_millis(500));
}

/// Options of a [`SledStore`]; start with [`SledStore::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_sled::{Flush, SledStore};
///
/// let dir = tempfile::tempdir().expect("temp dir");
/// let store = SledStore::builder()
///     .flush(Flush::Interval(Duration::from_millis(100)))
///     .namespace("app1")
///     .open(dir.path().join("sessions.sled"))
///     .await?;
/// # drop(store);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct SledStoreBuilder {
    flush: Option<Flush>,
    namespace: Option<String>,
    cache_capacity: Option<u64>,
}

impl SledStoreBuilder {
    /// The flush policy. Default: [`Flush::DEFAULT`] when this builder opens the database, and
    /// the database's own configuration for [`from_db`](Self::from_db).
    pub fn flush(mut self, flush: Flush) -> Self {
        self.flush = Some(flush);
        self
    }

    /// Prefix of the four tree names (`{namespace}.sessions`, `.expiry`, `.owners`, `.locks`),
    /// so that several stores, or your own trees, can share one database. Default `session`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// sled's page cache size in bytes (`sled::Config::cache_capacity`; sled's default is 1 GiB).
    /// Only when this builder opens the database.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = Some(bytes);
        self
    }

    /// Opens (or creates) the database in directory `path`, on a blocking thread.
    ///
    /// sled locks the directory: a second process, or a second open in this process while the
    /// first store is alive, fails with [`Error::Backend`].
    pub async fn open(self, path: impl AsRef<Path>) -> Result<SledStore> {
        let config = self.config()?.path(path.as_ref());
        self.open_config(config).await
    }

    /// Opens a temporary database (`sled::Config::temporary`), deleted when the store is
    /// dropped. Real sled on disk; meant for tests.
    pub async fn temporary(self) -> Result<SledStore> {
        let config = self.config()?.temporary(true);
        self.open_config(config).await
    }

    /// Uses a database you opened yourself. Its `flush_every_ms` stays as you configured it,
    /// so [`Flush::Interval`] is an [`Error::InvalidInput`] here; [`Flush::EveryWrite`] and
    /// [`Flush::Never`] (the store adds no flushes) work. Opening the trees is a short,
    /// in-memory operation, done inline.
    pub fn from_db(self, db: Db) -> Result<SledStore> {
        if matches!(self.flush, Some(Flush::Interval(_))) {
            return Err(Error::InvalidInput(
                "Flush::Interval cannot be applied to an open sled::Db; set \
                 sled::Config::flush_every_ms before opening it"
                    .into(),
            ));
        }
        if self.cache_capacity.is_some() {
            return Err(Error::InvalidInput(
                "cache_capacity cannot be applied to an open sled::Db; set \
                 sled::Config::cache_capacity before opening it"
                    .into(),
            ));
        }
        let every_write = self.flush == Some(Flush::EveryWrite);
        Inner::new(db, self.namespace.as_deref(), every_write).map(SledStore::wrap)
    }

    fn config(&self) -> Result<sled::Config> {
        let flush_every_ms = match self.flush.unwrap_or(Flush::DEFAULT) {
            Flush::Interval(every) => Some(Ttl::new(every).map(Ttl::as_millis).map_err(|_| {
                Error::InvalidInput(format!(
                    "flush interval {every:?} must be between 1 ms and {:?}",
                    check::MAX_TTL
                ))
            })?),
            Flush::EveryWrite | Flush::Never => None,
        };
        let mut config = sled::Config::new().flush_every_ms(flush_every_ms);
        if let Some(bytes) = self.cache_capacity {
            config = config.cache_capacity(bytes);
        }
        Ok(config)
    }

    async fn open_config(self, config: sled::Config) -> Result<SledStore> {
        let every_write = self.flush == Some(Flush::EveryWrite);
        let namespace = self.namespace;
        tokio::task::spawn_blocking(move || {
            let db = config.open().map_err(backend)?;
            Inner::new(db, namespace.as_deref(), every_write)
        })
        .await
        .map_err(|e| Error::backend(NAME, e))?
        .map(SledStore::wrap)
    }
}
