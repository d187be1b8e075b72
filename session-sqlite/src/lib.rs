#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod ops;
mod options;
mod pool;
mod schema;
mod store;

pub use options::{SqliteOptions, Synchronous};
pub use schema::SCHEMA_VERSION;
pub use store::SqliteStore;

use session_core::Error;

/// The backend name used in errors ([`Error::Backend`], [`Error::Corrupt`]).
pub(crate) const BACKEND: &str = "sqlite";

/// Maps a rusqlite error: a stored value of the wrong type is [`Error::Corrupt`]; a lock held too
/// long and a file that is not a database get a clear word; everything else is [`Error::Backend`].
pub(crate) fn db_error(e: rusqlite::Error) -> Error {
    use rusqlite::{Error as E, ErrorCode};
    match &e {
        E::FromSqlConversionFailure(..)
        | E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..) => Error::corrupt(BACKEND, format!("unreadable stored row: {e}")),
        _ => match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::backend(
                BACKEND,
                format!(
                    "the database stayed locked by another connection or process for longer \
                     than the busy timeout ({e})"
                ),
            ),
            Some(ErrorCode::NotADatabase) => {
                Error::backend(BACKEND, format!("the file is not an SQLite database ({e})"))
            }
            Some(ErrorCode::DatabaseCorrupt) => {
                Error::corrupt(BACKEND, format!("the database file is damaged: {e}"))
            }
            _ => Error::backend(BACKEND, e),
        },
    }
}
