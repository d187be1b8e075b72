//! Errors of the database as session errors, the retry of deadlocks and serialization
//! failures, and the retry of reads whose connection went away.

use std::future::Future;
use std::time::Duration;

use session_core::{Error, Result};

use crate::Dialect;

/// How many times a statement or transaction that hit a deadlock or serialization failure is
/// tried.
const ATTEMPTS: u32 = 5;

/// Maps an sqlx error: undecodable stored data is [`Error::Corrupt`], a pool that found no
/// connection in time or was closed gets a clear word, everything else is [`Error::Backend`].
pub fn db_error<D: Dialect>(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            Error::corrupt(D::NAME, format!("unreadable stored row: {e}"))
        }
        sqlx::Error::PoolTimedOut => Error::backend(
            D::NAME,
            format!(
                "no database connection became available within the acquire timeout \
                 (is the {} server down or unreachable, or the pool too small?)",
                D::SERVER
            ),
        ),
        sqlx::Error::PoolClosed => Error::backend(D::NAME, "the store was closed"),
        e => Error::backend(D::NAME, e),
    }
}

/// Whether `e` is one the dialect says to try again.
fn is_retryable<D: Dialect>(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => D::is_retryable(db.as_ref()),
        _ => false,
    }
}

/// Whether `e` says the connection went away under the statement: an I/O error, or a database
/// error the dialect calls a lost connection.
fn is_connection_lost<D: Dialect>(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => D::is_connection_lost(db.as_ref()),
        _ => false,
    }
}

/// Runs the read `f`, and once more when it failed because its connection went away (the
/// server restarted, crashed or ended the session): the pool then checks its idle connections
/// and connects again, waiting for the server up to the acquire timeout. Reads only: a write
/// whose connection died may have been committed, and is reported, not repeated.
pub(crate) async fn read<D, T, F, Fut>(mut f: F) -> Result<T>
where
    D: Dialect,
    F: FnMut() -> Fut,
    Fut: Future<Output = sqlx::Result<T>>,
{
    match f().await {
        Err(e) if is_connection_lost::<D>(&e) => f().await.map_err(db_error::<D>),
        other => other.map_err(db_error::<D>),
    }
}

/// Runs `f`, and again (up to five times in all, 5 ms more pause each time) while it fails
/// with an error the dialect calls retryable; maps the last error with [`db_error`].
pub(crate) async fn retry<D, T, F, Fut>(mut f: F) -> Result<T>
where
    D: Dialect,
    F: FnMut() -> Fut,
    Fut: Future<Output = sqlx::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if attempt < ATTEMPTS && is_retryable::<D>(&e) => {
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other.map_err(db_error::<D>),
        }
    }
}
