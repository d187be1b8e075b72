//! The schema, its migrations, and every statement the store runs, built once per store from the
//! checked table name.

use session_core::{Error, Result};
use sqlx::{MySqlConnection, Row};

use crate::{BACKEND, db_error};

/// The schema version this driver writes, kept in the `{table}_schema_version` table.
pub const SCHEMA_VERSION: i64 = 1;

/// `MIGRATIONS[n]` takes the tables from version `n` to `n + 1`: statements run one by one
/// (MySQL commits DDL at once, so each is written to be safe to run again after a crash
/// half-way). A schema change appends one entry and bumps [`SCHEMA_VERSION`]. Placeholders:
/// `{S}` sessions, `{V}` values, `{O}` owners, `{L}` locks (quoted names), `{t}` the bare base
/// name (for index and constraint names).
const MIGRATIONS: [&[&str]; SCHEMA_VERSION as usize] = [
    // 0 -> 1: everything.
    &[
        "CREATE TABLE IF NOT EXISTS {S} (
            id         VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            expires_at BIGINT NOT NULL,              -- ms since the Unix epoch
            PRIMARY KEY (id),
            KEY `{t}_expires_at` (expires_at)
        ) ENGINE = InnoDB",
        "CREATE TABLE IF NOT EXISTS {V} (
            id    VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            `key` VARBINARY(1024) NOT NULL,          -- the key's UTF-8 bytes
            value LONGBLOB NOT NULL,                 -- MessagePack bytes, opaque to the driver
            PRIMARY KEY (id, `key`),
            CONSTRAINT `{t}_values_session` FOREIGN KEY (id) REFERENCES {S} (id) ON DELETE CASCADE
        ) ENGINE = InnoDB",
        "CREATE TABLE IF NOT EXISTS {O} (
            id    VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            owner VARBINARY(256) NOT NULL,           -- the owner's UTF-8 bytes
            PRIMARY KEY (id),
            KEY `{t}_owners_owner` (owner, id)
        ) ENGINE = InnoDB",
        "CREATE TABLE IF NOT EXISTS {L} (
            id         VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            token      VARBINARY(128) NOT NULL,
            expires_at BIGINT NOT NULL,              -- ms since the Unix epoch
            PRIMARY KEY (id),
            KEY `{t}_locks_expires_at` (expires_at)
        ) ENGINE = InnoDB",
    ],
];

/// Every statement of one store, with its names filled in.
#[derive(Debug)]
pub(crate) struct Sql {
    table: String,
    fill: [(String, String); 5],
    version_table: String,
    pub(crate) values: String,
    pub(crate) owners: String,
    pub(crate) sessions: String,
    pub(crate) get: String,
    pub(crate) load: String,
    pub(crate) size: String,
    pub(crate) lock_row: String,
    pub(crate) insert_placeholder: String,
    pub(crate) delete_values: String,
    pub(crate) delete_owner: String,
    pub(crate) delete_session: String,
    pub(crate) any_value: String,
    pub(crate) set_deadline: String,
    pub(crate) update_ttl: String,
    pub(crate) index_add: String,
    pub(crate) index_sessions: String,
    pub(crate) index_prune: String,
    pub(crate) index_owner: String,
    pub(crate) take_expired_lock: String,
    pub(crate) insert_lock: String,
    pub(crate) unlock: String,
    pub(crate) purge_select: String,
    pub(crate) purge_locks: String,
    pub(crate) scan: String,
    pub(crate) version: String,
}

impl Sql {
    /// Builds the statements. `table` must already be a checked identifier.
    pub(crate) fn new(table: &str) -> Sql {
        let s = format!("`{table}`");
        let v = format!("`{table}_values`");
        let o = format!("`{table}_owners`");
        let l = format!("`{table}_locks`");
        let version_table = format!("`{table}_schema_version`");
        let fill = [
            ("{S}".to_owned(), s.clone()),
            ("{V}".to_owned(), v.clone()),
            ("{O}".to_owned(), o.clone()),
            ("{L}".to_owned(), l.clone()),
            ("{t}".to_owned(), table.to_owned()),
        ];
        Sql {
            table: table.to_owned(),
            fill,
            get: format!(
                "SELECT v.value FROM {s} s JOIN {v} v ON v.id = s.id
                 WHERE s.id = ? AND v.`key` = ? AND s.expires_at > ?"
            ),
            load: format!(
                "SELECT s.expires_at, v.`key`, v.value FROM {s} s JOIN {v} v ON v.id = s.id
                 WHERE s.id = ? AND s.expires_at > ?"
            ),
            size: format!(
                "SELECT COUNT(*) FROM {s} s JOIN {v} v ON v.id = s.id
                 WHERE s.id = ? AND s.expires_at > ?"
            ),
            lock_row: format!("SELECT expires_at FROM {s} WHERE id = ? FOR UPDATE"),
            insert_placeholder: format!(
                "INSERT INTO {s} (id, expires_at) VALUES (?, -1)
                 ON DUPLICATE KEY UPDATE expires_at = expires_at"
            ),
            delete_values: format!("DELETE FROM {v} WHERE id = ?"),
            delete_owner: format!("DELETE FROM {o} WHERE id = ?"),
            delete_session: format!("DELETE FROM {s} WHERE id = ?"),
            any_value: format!("SELECT 1 FROM {v} WHERE id = ? LIMIT 1"),
            set_deadline: format!("UPDATE {s} SET expires_at = ? WHERE id = ?"),
            update_ttl: format!("UPDATE {s} SET expires_at = ? WHERE id = ? AND expires_at > ?"),
            index_add: format!(
                "INSERT INTO {o} (id, owner) VALUES (?, ?)
                 ON DUPLICATE KEY UPDATE owner = VALUES(owner)"
            ),
            index_sessions: format!(
                "SELECT o.id, CAST(COALESCE(s.expires_at > ?, 0) AS SIGNED) FROM {o} o
                 LEFT JOIN {s} s ON s.id = o.id WHERE o.owner = ?"
            ),
            index_prune: format!(
                "DELETE FROM {o} WHERE owner = ? AND NOT EXISTS
                     (SELECT 1 FROM {s} s WHERE s.id = {o}.id AND s.expires_at > ?)"
            ),
            index_owner: format!(
                "SELECT o.owner FROM {o} o JOIN {s} s ON s.id = o.id
                 WHERE o.id = ? AND s.expires_at > ?"
            ),
            take_expired_lock: format!(
                "UPDATE {l} SET token = ?, expires_at = ? WHERE id = ? AND expires_at <= ?"
            ),
            insert_lock: format!("INSERT IGNORE INTO {l} (id, token, expires_at) VALUES (?, ?, ?)"),
            unlock: format!("DELETE FROM {l} WHERE id = ? AND token = ? AND expires_at > ?"),
            purge_select: format!(
                "SELECT id FROM {s} WHERE expires_at <= ?
                 ORDER BY expires_at LIMIT ? FOR UPDATE SKIP LOCKED"
            ),
            purge_locks: format!("DELETE FROM {l} WHERE expires_at <= ? LIMIT ?"),
            scan: format!("SELECT id FROM {s} WHERE id > ? AND expires_at > ? ORDER BY id LIMIT ?"),
            version: format!("SELECT CAST(MAX(version) AS SIGNED) FROM {version_table}"),
            version_table,
            values: v,
            owners: o,
            sessions: s,
        }
    }

    fn migration(&self, step: &str) -> String {
        self.fill
            .iter()
            .fold(step.to_owned(), |sql, (from, to)| sql.replace(from, to))
    }

    /// `?, ?, ?` with `n` placeholders.
    pub(crate) fn placeholders(n: usize, each: &str) -> String {
        let mut out = String::with_capacity(n * (each.len() + 2));
        for i in 0..n {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(each);
        }
        out
    }
}

/// Brings the tables to [`SCHEMA_VERSION`], holding `GET_LOCK` (30 s timeout, released at the
/// end or when the connection closes) so that two processes opening a new database do not
/// migrate at once. A newer version than this driver knows is refused.
pub(crate) async fn migrate(conn: &mut MySqlConnection, sql: &Sql) -> Result<()> {
    let lock_name = format!("session-mysql:{}", sql.table);
    let got: Option<i64> = sqlx::query(
        "SELECT CAST(GET_LOCK(SHA1(CONCAT(COALESCE(DATABASE(), ''), '.', ?)), 30) AS SIGNED)",
    )
    .bind(&lock_name)
    .fetch_one(&mut *conn)
    .await
    .and_then(|row| row.try_get(0))
    .map_err(db_error)?;
    if got != Some(1) {
        return Err(Error::backend(
            BACKEND,
            "another process held the schema migration lock for more than 30 s",
        ));
    }
    let result = migrate_locked(conn, sql).await;
    let _ = sqlx::query("SELECT RELEASE_LOCK(SHA1(CONCAT(COALESCE(DATABASE(), ''), '.', ?)))")
        .bind(&lock_name)
        .execute(&mut *conn)
        .await;
    result
}

async fn migrate_locked(conn: &mut MySqlConnection, sql: &Sql) -> Result<()> {
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {} (version BIGINT NOT NULL) ENGINE = InnoDB",
        sql.version_table
    );
    sqlx::query(&create)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let version: Option<i64> = sqlx::query(&sql.version)
        .fetch_one(&mut *conn)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(db_error)?;
    let version = version.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(Error::backend(
            BACKEND,
            format!(
                "the session tables ({}) have schema version {version}, newer than the \
                 {SCHEMA_VERSION} this version of session-mysql knows; upgrade session-mysql \
                 to use them",
                sql.version_table
            ),
        ));
    }
    if version < 0 {
        return Err(Error::corrupt(
            BACKEND,
            format!("{}: negative schema version {version}", sql.version_table),
        ));
    }
    for step in &MIGRATIONS[version as usize..] {
        for statement in *step {
            sqlx::query(&sql.migration(statement))
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
        }
    }
    if version != SCHEMA_VERSION {
        sqlx::query(&format!("DELETE FROM {}", sql.version_table))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        sqlx::query(&format!(
            "INSERT INTO {} (version) VALUES (?)",
            sql.version_table
        ))
        .bind(SCHEMA_VERSION)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}
