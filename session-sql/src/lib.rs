#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod ident;
mod schema;

#[cfg(feature = "store")]
mod builder;
#[cfg(feature = "store")]
mod clock;
#[cfg(feature = "store")]
mod dialect;
#[cfg(feature = "store")]
mod error;
#[cfg(feature = "store")]
pub mod migrate;
#[cfg(feature = "store")]
mod statements;
#[cfg(feature = "store")]
mod store;
#[cfg(feature = "test-util")]
pub mod testing;

pub use ident::{MAX_TABLE_NAME_LEN, check_ident};
pub use schema::{Column, ColumnKind, Table, Tables};

#[cfg(feature = "store")]
pub use builder::SqlStoreBuilder;
#[cfg(feature = "store")]
pub use clock::{deadline, now};
#[cfg(feature = "store")]
pub use dialect::{ConnectOptions, Dialect};
#[cfg(feature = "store")]
pub use error::db_error;
#[cfg(feature = "store")]
pub use store::SqlStore;

/// Re-export of sqlx, the version the dialects and the store are written against.
#[cfg(feature = "store")]
pub use sqlx;
