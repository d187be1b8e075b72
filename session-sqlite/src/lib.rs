#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod builder;
mod error;
mod pool;
mod schema;
mod statements;
mod store;

pub use builder::{DEFAULT_CACHE_KIB, DEFAULT_WAL_AUTOCHECKPOINT, SqliteStoreBuilder, Synchronous};
pub use schema::SCHEMA_VERSION;
pub use store::SqliteStore;

/// The driver's name: [`Storage::name`](session_core::Storage::name) of a [`SqliteStore`], and
/// the backend named in its errors.
pub const NAME: &str = "sqlite";
