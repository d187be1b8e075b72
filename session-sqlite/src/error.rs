//! Mapping rusqlite errors to the framework's [`Error`].

use session_core::driver::Error;

use crate::NAME;

/// Maps a rusqlite error: a stored value of the wrong type is [`Error::Corrupt`]; a lock held too
/// long and a file that is not a database get a clear word; everything else is [`Error::Backend`].
pub(crate) fn db_error(e: rusqlite::Error) -> Error {
    use rusqlite::{Error as E, ErrorCode};
    match &e {
        E::FromSqlConversionFailure(..)
        | E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..) => Error::corrupt(NAME, format!("unreadable stored row: {e}")),
        _ => match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::backend(
                NAME,
                format!(
                    "the database stayed locked by another connection or process for longer \
                     than the busy timeout ({e})"
                ),
            ),
            Some(ErrorCode::NotADatabase) => {
                Error::backend(NAME, format!("the file is not an SQLite database ({e})"))
            }
            Some(ErrorCode::DatabaseCorrupt) => {
                Error::corrupt(NAME, format!("the database file is damaged: {e}"))
            }
            _ => Error::backend(NAME, e),
        },
    }
}
