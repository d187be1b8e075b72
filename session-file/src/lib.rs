#![doc = include_str!("../README.md")]

#[cfg(not(unix))]
compile_error!("session-file needs a Unix file system (modes 0600/0700, flock, inode checks)");

mod builder;
mod disk;
#[doc(hidden)]
pub mod fuzzing;
mod nowait;
mod paths;
mod record;
mod store;

use std::time::Duration;

pub use builder::FileStoreBuilder;
pub use store::FileStore;

/// Name of this driver, as [`Storage::name`](session_core::Storage::name) reports it.
pub const NAME: &str = "file";

/// Default age after which [`purge_expired`](session_core::Storage::purge_expired) deletes a
/// temp file left by a writer that crashed mid-write.
pub const DEFAULT_STALE_TEMP_AFTER: Duration = Duration::from_secs(10 * 60);

/// Default bound on the blocking disk calls a store runs at once
/// ([`FileStoreBuilder::max_disk_calls`]).
pub const DEFAULT_MAX_DISK_CALLS: usize = 16;
