#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod builder;
mod conn;
mod index;
mod keys;
mod reply;
mod scan;
mod scripts;
mod store;

pub use builder::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_PREFIX, DEFAULT_RECONNECT_RETRIES, DEFAULT_RESPONSE_TIMEOUT,
    RedisStoreBuilder,
};
pub use store::RedisStore;

/// The driver's name ([`Driver::name`](session_core::driver::Driver::name)), as errors report it.
pub const NAME: &str = "redis";
