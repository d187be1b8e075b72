//! Opening a driver, and the raw backend under it, from a store spec (`memory`, `file:DIR`,
//! `sqlite:PATH`, `sled:DIR`, `redis://...`).
//!
//! Adding a driver is one arm in [`open_store`] (and, for its raw baseline, one in
//! [`open_raw`]).

use std::path::PathBuf;
use std::sync::Arc;

use session_core::Storage;
use tempfile::TempDir;

use crate::Result;
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
    /// (also `rediss://`, `redis+unix://`).
    pub fn parse(spec: &str) -> StoreSpec {
        if spec.starts_with("redis://")
            || spec.starts_with("rediss://")
            || spec.starts_with("redis+unix://")
        {
            return StoreSpec {
                driver: "redis".into(),
                location: spec.into(),
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

    /// The Redis URL (the spec itself, or `REDIS_URL` / the default for a bare `redis`).
    pub fn url(&self) -> String {
        if self.location.is_empty() {
            crate::redis_url()
        } else {
            self.location.clone()
        }
    }
}

/// Options shared by the driver and its raw baseline.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How many sessions the memory store and raw moka must hold without evicting.
    pub capacity: u64,
    /// `fsync` each file write (the file driver's default).
    pub file_sync: bool,
    /// Key prefix for Redis (the raw baseline appends `:raw`).
    pub redis_prefix: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            capacity: 1_000_000,
            file_sync: true,
            redis_prefix: crate::private_prefix("bench"),
        }
    }
}

/// An open driver with whatever must live as long as it (temporary directories).
pub struct Opened {
    /// The driver.
    pub store: Arc<dyn Storage>,
    /// Cleans up what the store wrote outside a temporary directory (Redis keys).
    pub redis: Option<session_redis::RedisStore>,
    _guards: Vec<TempDir>,
}

impl Opened {
    /// Deletes what the run left in a server (Redis keys under the private prefix).
    pub async fn cleanup(&self) -> Result<()> {
        if let Some(r) = &self.redis {
            r.clear_prefix().await?;
        }
        Ok(())
    }
}

/// Opens the driver named by `spec`.
pub async fn open_store(spec: &StoreSpec, opts: &StoreOptions) -> Result<Opened> {
    let mut guards = Vec::new();
    let mut redis = None;
    let store: Arc<dyn Storage> = match spec.driver.as_str() {
        "memory" => Arc::new(
            session_memory::MemoryStore::builder()
                .max_sessions(opts.capacity)
                .build(),
        ),
        "file" => {
            let dir = spec.path(&mut guards, None)?;
            Arc::new(
                session_file::FileStore::builder(dir)
                    .sync(opts.file_sync)
                    .open()
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
            let store = session_redis::RedisStore::builder()
                .prefix(opts.redis_prefix.clone())
                .open(&spec.url())
                .await
                .map_err(|e| redis_hint(&spec.url(), e))?;
            redis = Some(store.clone());
            Arc::new(store)
        }
        other => return Err(unknown(other)),
    };
    Ok(Opened {
        store,
        redis,
        _guards: guards,
    })
}

/// Opens the raw baseline of the driver named by `spec`: the backend under it, driven with the
/// cheapest operations that do the same work (see [`crate::raw`]).
pub async fn open_raw(spec: &StoreSpec, opts: &StoreOptions) -> Result<Box<dyn Raw>> {
    let mut guards = Vec::new();
    let raw: Box<dyn Raw> = match spec.driver.as_str() {
        "memory" => Box::new(raw::MokaRaw::new(opts.capacity)),
        "file" => {
            let dir = spec.path(&mut guards, None)?;
            Box::new(raw::FileRaw::open(dir.join("raw"), opts.file_sync, guards)?)
        }
        "sqlite" => {
            let path = spec.path(&mut guards, Some("raw.db"))?;
            let path = if spec.location.is_empty() {
                path
            } else {
                with_suffix(&path, ".raw")
            };
            Box::new(raw::SqliteRaw::open(&path, 4, guards).await?)
        }
        "sled" => {
            let dir = spec.path(&mut guards, None)?;
            Box::new(raw::SledRaw::open(&dir.join("raw"), guards).await?)
        }
        "redis" => Box::new(
            raw::RedisRaw::open(&spec.url(), &format!("{}:raw", opts.redis_prefix))
                .await
                .map_err(|e| redis_hint(&spec.url(), e))?,
        ),
        other => return Err(unknown(other)),
    };
    Ok(raw)
}

fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn unknown(driver: &str) -> crate::BoxError {
    format!(
        "unknown store {driver:?}: use memory, file[:DIR], sqlite[:PATH], sled[:DIR] or redis://HOST:PORT"
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
