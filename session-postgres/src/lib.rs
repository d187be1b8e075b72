#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod options;
mod schema;
mod store;

pub use options::PostgresOptions;
pub use schema::SCHEMA_VERSION;
pub use store::PostgresStore;

/// Re-export of the sqlx types this crate's API uses ([`PgPool`](sqlx::PgPool),
/// [`PgConnectOptions`](sqlx::postgres::PgConnectOptions)), so callers need no direct sqlx
/// dependency of a matching version.
pub use sqlx;

use session_core::Error;

/// The backend name used in errors ([`Error::Backend`], [`Error::Corrupt`]).
pub(crate) const BACKEND: &str = "postgres";

/// Longest table base name: the driver appends suffixes of up to 17 characters (`_owners_owner`,
/// `_schema_version`, ...) and PostgreSQL truncates identifiers at 63 bytes.
pub const MAX_TABLE_NAME_LEN: usize = 40;

/// Checks a name that will be put into SQL as an identifier: `[A-Za-z_][A-Za-z0-9_]*`, 1 to
/// `max` characters. Nothing else is ever interpolated into a statement.
pub(crate) fn check_ident(what: &str, name: &str, max: usize) -> session_core::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || name.len() > max || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::InvalidInput(format!(
            "{what} must match [A-Za-z_][A-Za-z0-9_]* and be 1 to {max} characters long"
        )));
    }
    Ok(())
}

/// Maps an sqlx error: undecodable stored data is [`Error::Corrupt`], a pool that found no
/// connection in time gets a clear word, everything else is [`Error::Backend`].
pub(crate) fn db_error(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            Error::corrupt(BACKEND, format!("unreadable stored row: {e}"))
        }
        sqlx::Error::PoolTimedOut => Error::backend(
            BACKEND,
            "no database connection became available within the acquire timeout \
             (is the PostgreSQL server down or unreachable, or the pool too small?)",
        ),
        sqlx::Error::PoolClosed => Error::backend(BACKEND, "the store was closed"),
        e => Error::backend(BACKEND, e),
    }
}

/// Whether an error is a deadlock or serialization failure worth retrying the transaction for.
pub(crate) fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("40P01" | "40001")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::check_ident;

    #[test]
    fn identifiers_are_checked() {
        assert!(check_ident("table", "sessions", 40).is_ok());
        assert!(check_ident("table", "_Sessions_2", 40).is_ok());
        assert!(check_ident("table", "", 40).is_err());
        assert!(check_ident("table", "2sessions", 40).is_err());
        assert!(check_ident("table", "sessions; DROP TABLE x", 40).is_err());
        assert!(check_ident("table", "s\"x", 40).is_err());
        assert!(check_ident("table", "séssions", 40).is_err());
        assert!(check_ident("table", &"a".repeat(41), 40).is_err());
        assert!(check_ident("table", &"a".repeat(40), 40).is_ok());
    }
}
