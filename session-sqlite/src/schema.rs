//! Opening connections, and the schema with its migrations (`PRAGMA user_version`).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use session_core::driver::{Error, Result};

use crate::NAME;
use crate::builder::SqliteStoreBuilder;
use crate::error::db_error;
use crate::pool::Role;

/// The schema version this driver writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 2;

/// `MIGRATIONS[n]` takes a database from version `n` to `n + 1`. A fresh database (version 0)
/// runs all of them. A schema change appends one entry and bumps [`SCHEMA_VERSION`].
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 0 -> 1: sessions, one row per key.
    "CREATE TABLE sessions (
         id         TEXT    PRIMARY KEY NOT NULL,
         expires_at INTEGER NOT NULL             -- ms since the Unix epoch
     ) WITHOUT ROWID;
     CREATE INDEX sessions_expires_at ON sessions (expires_at);
     CREATE TABLE session_values (
         id    TEXT NOT NULL,                    -- sessions.id
         key   TEXT NOT NULL,
         value BLOB NOT NULL,                    -- MessagePack bytes, opaque to the driver
         PRIMARY KEY (id, key)
     ) WITHOUT ROWID;",
    // 1 -> 2: the owner index and the lease locks.
    "CREATE TABLE owners (
         id    TEXT PRIMARY KEY NOT NULL,        -- sessions.id: one owner per session
         owner TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX owners_owner ON owners (owner, id);
     CREATE TABLE locks (
         id         TEXT    PRIMARY KEY NOT NULL, -- a session id; the session need not exist
         token      TEXT    NOT NULL,
         expires_at INTEGER NOT NULL              -- ms since the Unix epoch
     ) WITHOUT ROWID;
     CREATE INDEX locks_expires_at ON locks (expires_at);",
];

/// Opens one connection for `role` and sets it up; the writer also creates or migrates the schema.
pub(crate) fn open(path: &Path, role: Role, options: &SqliteStoreBuilder) -> Result<Connection> {
    let context = |e: rusqlite::Error| open_error(path, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(context)?;
    conn.busy_timeout(options.busy_timeout).map_err(context)?;
    conn.set_prepared_statement_cache_capacity(options.statement_cache);
    if role == Role::Writer {
        // journal_mode is persistent in the file; setting it once, from the writer, is enough.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(context)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::backend(
                NAME,
                format!(
                    "{}: could not switch to WAL mode (journal_mode is {mode})",
                    path.display()
                ),
            ));
        }
    }
    conn.pragma_update(None, "synchronous", options.synchronous.as_sql())
        .map_err(context)?;
    match role {
        Role::Writer => migrate(path, &conn)?,
        Role::Reader => {
            conn.pragma_update(None, "query_only", true)
                .map_err(context)?;
        }
    }
    Ok(conn)
}

/// Brings the schema to [`SCHEMA_VERSION`], in one `BEGIN IMMEDIATE` transaction so that two
/// processes opening the same new file do not both create it.
fn migrate(path: &Path, conn: &Connection) -> Result<()> {
    let context = |e: rusqlite::Error| open_error(path, e);
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(context)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(context)?;
    if version > SCHEMA_VERSION {
        return Err(Error::backend(
            NAME,
            format!(
                "{}: schema version {version} is newer than the {SCHEMA_VERSION} this version of \
                 session-sqlite knows; upgrade session-sqlite to open it",
                path.display()
            ),
        ));
    }
    if version < 0 {
        return Err(Error::corrupt(
            NAME,
            format!("{}: negative schema version {version}", path.display()),
        ));
    }
    for step in &MIGRATIONS[version as usize..] {
        tx.execute_batch(step).map_err(context)?;
    }
    if version != SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(context)?;
    }
    tx.commit().map_err(context)
}

/// An error while opening `path`, with the path and a clear word for the usual causes.
fn open_error(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    let what = match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => "the file is not an SQLite database",
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "the database stayed locked by another connection for longer than the busy timeout"
        }
        Some(ErrorCode::CannotOpen) => "cannot open the file (missing directory or no permission?)",
        Some(ErrorCode::ReadOnly) => "the file is read-only",
        _ => return db_error(e),
    };
    Error::backend(NAME, format!("{}: {what} ({e})", path.display()))
}
