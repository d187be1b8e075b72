#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod builder;
pub mod client;
mod conn;
mod durable;
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod keys;
mod reply;
mod scan;
mod scripts;
mod sentinel;
mod store;
mod subscribe;

pub use builder::{DEFAULT_LIVE_INDEX_GRANULARITY, DEFAULT_PREFIX, RedisStoreBuilder};
pub use client::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_CONNECTIONS, DEFAULT_RECONNECT_RETRIES,
    DEFAULT_RESPONSE_TIMEOUT,
};
pub use store::RedisStore;

/// The driver's name ([`Driver::name`](session_core::driver::Driver::name)), as errors report it.
pub const NAME: &str = "redis";
