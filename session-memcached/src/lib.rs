#![doc = include_str!("../README.md")]

use std::time::Duration;

mod builder;
mod items;
mod pool;
mod store;

pub use builder::MemcachedStoreBuilder;
pub use items::{RELATIVE_EXPTIME_MAX, exptime};
pub use store::MemcachedStore;

/// Name of this driver, as [`Storage::name`](session_core::Storage::name) reports it (and the
/// backend named in its errors).
pub const NAME: &str = "memcached";

/// The server the tests and [`MemcachedStore::open`] examples use: memcached's default port on
/// loopback.
pub const DEFAULT_ADDR: &str = "127.0.0.1:11211";
/// Prefix of every key the driver writes, unless [`MemcachedStoreBuilder::prefix`] sets another.
pub const DEFAULT_PREFIX: &str = "session:";
/// Longest key prefix: with a 128-character id and the `.lock` suffix, every key stays well under
/// memcached's 250-byte key limit.
pub const MAX_PREFIX_LEN: usize = 64;
/// Default number of pooled connections.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Default bound on one memcached command, the connection checkout included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// memcached's default item size limit (`-I 1m`), assumed when the server does not report its own.
pub const DEFAULT_ITEM_SIZE_MAX: usize = 1024 * 1024;
/// Default number of read/compare-and-set rounds a write tries before it gives up.
pub const DEFAULT_CAS_ATTEMPTS: u32 = 500;
