//! Mapping rusqlite errors to the framework's [`Error`].

use session_core::driver::Error;

use crate::NAME;

/// The source of the [`Error::Backend`] for a lock held longer than the busy timeout, so that
/// [`is_busy`] can tell it apart (an inline read then retries where waiting is allowed).
#[derive(Debug)]
struct Busy(String);

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Busy {}

fn busy(e: &rusqlite::Error) -> Error {
    Error::backend(
        NAME,
        Busy(format!(
            "the database stayed locked by another connection or process for longer than the \
             busy timeout ({e})"
        )),
    )
}

/// Whether `e` says the database stayed locked longer than the busy timeout.
pub(crate) fn is_busy(e: &Error) -> bool {
    matches!(e, Error::Backend { source, .. } if source.is::<Busy>())
}

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
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => busy(&e),
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

/// The error every caller of a group commit gets when the batch's own statement (`BEGIN`,
/// `COMMIT`, a savepoint) failed: one [`Error`] per caller, made from the same rusqlite error,
/// with the words of [`db_error`] (and `what` failed).
pub(crate) fn batch_error(what: &str, e: &rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => busy(e),
        Some(ErrorCode::DatabaseCorrupt) => {
            Error::corrupt(NAME, format!("the database file is damaged ({what}: {e})"))
        }
        _ => Error::backend(NAME, format!("{what} failed: {e}")),
    }
}
