//! Opening connections, and the schema with its migrations.
//!
//! The tables are named after `session-sql`'s logical schema ([`Tables`]) for a checked base
//! name: `{base}` (a row per session, its values in one record body), `{base}_owners`,
//! `{base}_locks`. The default base, `sessions`, keeps its version in `PRAGMA user_version` (as
//! versions 1 and 2 did); any other base keeps it in its own `{base}_schema_version` table, so
//! several bases share one file, each with its own version.

use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use session_core::driver::{Data, Error, Result, Value};
use session_sql::Tables;

use crate::NAME;
use crate::builder::SqliteStoreBuilder;
use crate::error::db_error;
use crate::pool::Role;
use crate::statements;

/// The schema version this driver writes (for the default base `sessions` in
/// `PRAGMA user_version`, for any other base in its `{base}_schema_version` table).
pub const SCHEMA_VERSION: i64 = 4;

/// The default base name of the tables (`SqliteStoreBuilder::table`).
pub(crate) const DEFAULT_TABLE: &str = "sessions";

/// The session table of versions 4 and later, under the name `{name}` (the template token of
/// the final table, or of the table a migration fills before it takes that name).
const SESSION_TABLE: &str = r#"
    CREATE TABLE {name} (
        id         TEXT    PRIMARY KEY NOT NULL,
        expires_at INTEGER NOT NULL,            -- ms since the Unix epoch
        bucket     INTEGER NOT NULL,            -- expires_at >> 16: what the purge index holds
        data       BLOB    NOT NULL             -- the values: session-core's record body
    );
"#;

/// The current layout's other tables and indexes, created with [`SESSION_TABLE`] on a base that
/// has none (version 0). The index names start with the base name too: SQLite's indexes share
/// one namespace with the tables.
const CREATE_REST: &str = r#"
    CREATE INDEX "{t}_bucket" ON {S} (bucket);
    CREATE TABLE {O} (
        id    TEXT PRIMARY KEY NOT NULL,        -- the session's id: one owner per session
        owner TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX "{t}_owners_owner" ON {O} (owner, id);
    CREATE TABLE {L} (
        id         TEXT    PRIMARY KEY NOT NULL, -- a session id; the session need not exist
        token      TEXT    NOT NULL,
        expires_at INTEGER NOT NULL              -- ms since the Unix epoch
    ) WITHOUT ROWID;
    CREATE INDEX "{t}_locks_expires_at" ON {L} (expires_at);
"#;

/// The upgrades of the layouts released before table names were configurable, which only the
/// default base `sessions` can have: `SQL_UPGRADES[n - 1]` takes version `n` to `n + 1`, up
/// to version 3. Released steps are never changed. 3 -> 4 (any base) is [`upgrade_3_to_4`].
const SQL_UPGRADES: [&str; 2] = [
    // 1 -> 2: the owner index and the lease locks (the text version 2 ran).
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
    // 2 -> 3: the logical schema's names for base `sessions` (`sessions` and its index
    // `sessions_expires_at` keep theirs). SQLite cannot rename an index: drop and create.
    "ALTER TABLE session_values RENAME TO sessions_values;
     ALTER TABLE owners RENAME TO sessions_owners;
     ALTER TABLE locks RENAME TO sessions_locks;
     DROP INDEX owners_owner;
     CREATE INDEX sessions_owners_owner ON sessions_owners (owner, id);
     DROP INDEX locks_expires_at;
     CREATE INDEX sessions_locks_expires_at ON sessions_locks (expires_at);",
];

/// The name of the table [`upgrade_3_to_4`] fills before it becomes `{base}`.
const NEXT: &str = "\"{t}_v4\"";

/// 3 -> 4: a row per session instead of a row per key. Version 3 kept `{base}(id, expires_at)`
/// `WITHOUT ROWID` with an index on `expires_at`, and `{base}_values(id, key, value)`. Every
/// session (live or expired: a purge reclaims the expired ones as before) is copied with its
/// deadline and its values, encoded as one record body, into a new table, which then takes the
/// old one's name; owners and locks are untouched. Runs inside [`migrate`]'s transaction: a
/// failure leaves version 3 as it was.
fn upgrade_3_to_4(tx: &Connection, tables: &Tables) -> rusqlite::Result<()> {
    tx.execute_batch(&tables.render(&SESSION_TABLE.replace("{name}", NEXT)))?;
    let mut insert = tx.prepare(&tables.render(&format!(
        "INSERT INTO {NEXT} (id, expires_at, bucket, data) VALUES (?1, ?2, ?3, ?4)"
    )))?;
    let mut select = tx.prepare(&tables.render(
        "SELECT s.id, s.expires_at, v.key, v.value FROM {S} s JOIN {V} v ON v.id = s.id
         ORDER BY s.id",
    ))?;
    let mut rows = select.query([])?;
    let mut current: Option<(String, i64, Data)> = None;
    let mut flush = |session: Option<(String, i64, Data)>| -> rusqlite::Result<()> {
        if let Some((id, expires_at, data)) = session {
            let body = statements::encode(data)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            insert.execute(params![
                id,
                expires_at,
                statements::bucket(expires_at),
                body
            ])?;
        }
        Ok(())
    };
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        if current.as_ref().is_none_or(|(c, _, _)| *c != id) {
            flush(current.take())?;
            current = Some((id, row.get(1)?, Data::new()));
        }
        if let Some((_, _, data)) = current.as_mut() {
            data.insert(row.get(2)?, Value::from(row.get::<_, Vec<u8>>(3)?));
        }
    }
    flush(current.take())?;
    drop(rows);
    drop(select);
    tx.execute_batch(&tables.render(&format!(
        "DROP TABLE {{V}};
         DROP TABLE {{S}};
         ALTER TABLE {NEXT} RENAME TO {{S}};
         CREATE INDEX \"{{t}}_bucket\" ON {{S}} (bucket);"
    )))
}

/// The version table of a base other than the default (the logical schema's
/// `{base}_schema_version`: one row, the version).
const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS {VT} (version INTEGER NOT NULL)";

/// The table names for base name `base`, checked with `session_sql::check_ident`
/// ([`Error::InvalidInput`] for a bad one) and double-quoted.
pub(crate) fn tables(base: &str) -> Result<Tables> {
    Tables::new(None, base, |name| format!("\"{name}\""))
}

/// Whether the version of `tables` is `PRAGMA user_version` (the default base) rather than its
/// `{base}_schema_version` table.
fn in_user_version(tables: &Tables) -> bool {
    tables.base() == DEFAULT_TABLE
}

/// The statement reading the schema version of `tables`: one row, one integer (0: none yet).
pub(crate) fn read_version(tables: &Tables) -> String {
    if in_user_version(tables) {
        "PRAGMA user_version".to_owned()
    } else {
        tables.render("SELECT coalesce(max(version), 0) FROM {VT}")
    }
}

/// Opens one connection for `role` and sets it up; the writer also creates or migrates the schema.
pub(crate) fn open(
    path: &Path,
    role: Role,
    options: &SqliteStoreBuilder,
    tables: &Tables,
) -> Result<Connection> {
    let context = |e: rusqlite::Error| open_error(path, e);
    if role == Role::Writer {
        create_private(path);
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(context)?;
    conn.busy_timeout(options.busy_timeout).map_err(context)?;
    conn.set_prepared_statement_cache_capacity(options.statement_cache);
    // The query planner stability guarantee: a plan never depends on the values bound to a
    // statement. Without it SQLite marks some parameters as "may change the plan" (the id in
    // a join on the id, `LIMIT ?`, and with the bundled SQLite's STAT4 and an `ANALYZE`d file
    // any parameter compared to an indexed column), and a statement so marked is re-prepared
    // every time it comes back from rusqlite's statement cache, which clears its bindings:
    // measured, re-parsing `load` took 12% of the CPU of a write request. Our statements are
    // lookups by primary key whose best plan never depends on the values.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(context)?;
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
    // A negative cache_size is in KiB.
    conn.pragma_update(None, "cache_size", -i64::from(options.cache_kib))
        .map_err(context)?;
    if role == Role::Writer {
        // Only the writer commits, so only its setting matters (it is per connection).
        conn.pragma_update(None, "wal_autocheckpoint", options.wal_autocheckpoint)
            .map_err(context)?;
    }
    match role {
        Role::Writer => migrate(path, &conn, tables)?,
        Role::Reader => {
            conn.pragma_update(None, "query_only", true)
                .map_err(context)?;
        }
    }
    Ok(conn)
}

/// Brings the tables of `tables` to [`SCHEMA_VERSION`], in one `BEGIN IMMEDIATE` transaction so
/// that two processes opening the same new file do not both create them: a base with none gets
/// the current layout, one at version 3 [`upgrade_3_to_4`], the default base at version 1 or 2
/// its [`SQL_UPGRADES`] and then that.
fn migrate(path: &Path, conn: &Connection, tables: &Tables) -> Result<()> {
    let context = |e: rusqlite::Error| open_error(path, e);
    let base = tables.base();
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(context)?;
    let user_version = in_user_version(tables);
    if !user_version {
        tx.execute_batch(&tables.render(VERSION_TABLE))
            .map_err(context)?;
    }
    let version: i64 = tx
        .query_row(&read_version(tables), [], |r| r.get(0))
        .map_err(context)?;
    if version > SCHEMA_VERSION {
        return Err(Error::backend(
            NAME,
            format!(
                "{}: the session tables `{base}` have schema version {version}, newer than the \
                 {SCHEMA_VERSION} this version of session-sqlite knows; upgrade session-sqlite \
                 to open them",
                path.display()
            ),
        ));
    }
    if version == SCHEMA_VERSION {
        return tx.commit().map_err(context);
    }
    match usize::try_from(version) {
        Ok(0) => tx
            .execute_batch(&tables.render(&format!(
                "{}{CREATE_REST}",
                SESSION_TABLE.replace("{name}", "{S}")
            )))
            .map_err(context)?,
        Ok(3) => upgrade_3_to_4(&tx, tables).map_err(context)?,
        Ok(from @ 1..=2) if user_version => {
            for step in &SQL_UPGRADES[from - 1..] {
                tx.execute_batch(step).map_err(context)?;
            }
            upgrade_3_to_4(&tx, tables).map_err(context)?;
        }
        // Negative, or an old version on a base that never had one (only `sessions` had
        // versions 1 and 2), or a version between 3 and this one that was never released.
        _ => {
            return Err(Error::corrupt(
                NAME,
                format!(
                    "{}: the session tables `{base}` record schema version {version}, which \
                     session-sqlite never wrote for them",
                    path.display()
                ),
            ));
        }
    }
    if user_version {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(context)?;
    } else {
        // The version is this crate's constant, never input.
        tx.execute_batch(&tables.render(&format!(
            "DELETE FROM {{VT}}; INSERT INTO {{VT}} (version) VALUES ({SCHEMA_VERSION});"
        )))
        .map_err(context)?;
    }
    tx.commit().map_err(context)
}

/// Creates the database file readable and writable by its owner only (0600, less what the
/// umask takes) when it does not exist yet, before SQLite opens it: the file holds session ids,
/// which are bearer secrets, and SQLite gives its `-wal` and `-shm` files the database file's
/// permissions. (SQLite itself would create it 0644.) An empty file is an empty database. An
/// existing file keeps its permissions. Any failure here (a missing directory, no permission)
/// is left to SQLite's open, which reports it with the path.
fn create_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
            return;
        }
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
    }
    #[cfg(not(unix))]
    let _ = path;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// `cache_size` reaches every connection, `wal_autocheckpoint` the writer's; the defaults
    /// are the documented ones.
    #[test]
    fn cache_size_and_wal_autocheckpoint_reach_the_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pragmas.db");
        let tables = tables(DEFAULT_TABLE).unwrap();
        let pragma = |conn: &Connection, name: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .unwrap()
        };
        let defaults = SqliteStoreBuilder::default();
        let writer = open(&path, Role::Writer, &defaults, &tables).unwrap();
        let reader = open(&path, Role::Reader, &defaults, &tables).unwrap();
        let kib = -i64::from(crate::DEFAULT_CACHE_KIB);
        assert_eq!(pragma(&writer, "cache_size"), kib);
        assert_eq!(pragma(&reader, "cache_size"), kib);
        assert_eq!(
            pragma(&writer, "wal_autocheckpoint"),
            i64::from(crate::DEFAULT_WAL_AUTOCHECKPOINT)
        );
        drop((writer, reader));
        let options = SqliteStoreBuilder::default()
            .cache_size(4096)
            .wal_autocheckpoint(123);
        let writer = open(&path, Role::Writer, &options, &tables).unwrap();
        let reader = open(&path, Role::Reader, &options, &tables).unwrap();
        assert_eq!(pragma(&writer, "cache_size"), -4096);
        assert_eq!(pragma(&reader, "cache_size"), -4096);
        assert_eq!(pragma(&writer, "wal_autocheckpoint"), 123);
    }
}
