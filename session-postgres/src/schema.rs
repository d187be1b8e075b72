//! The schema, its migrations, and every statement the store runs, built once per store from the
//! checked table and schema names.

use session_core::{Error, Result};
use sqlx::{Connection, PgConnection, Row};

use crate::{BACKEND, db_error};

/// The schema version this driver writes, kept in the `{table}_schema_version` table.
pub const SCHEMA_VERSION: i64 = 1;

/// `MIGRATIONS[n]` takes the tables from version `n` to `n + 1`. A new store runs all of them.
/// A schema change appends one entry and bumps [`SCHEMA_VERSION`]. Placeholders: `{S}` sessions,
/// `{V}` values, `{O}` owners, `{L}` locks (qualified, quoted names), `{t}` the bare base name
/// (for index names, which live in their table's schema), `{APPLY}` and `{REMOVE_ALL}` the
/// functions.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 0 -> 1: everything.
    r#"
CREATE TABLE {S} (
    id         text COLLATE "C" PRIMARY KEY,
    expires_at bigint NOT NULL               -- ms since the Unix epoch
);
CREATE INDEX "{t}_expires_at" ON {S} (expires_at);
CREATE TABLE {V} (
    id    text COLLATE "C" NOT NULL REFERENCES {S} (id) ON DELETE CASCADE,
    key   text COLLATE "C" NOT NULL,
    value bytea NOT NULL,                    -- MessagePack bytes, opaque to the driver
    PRIMARY KEY (id, key)
);
CREATE TABLE {O} (
    id    text COLLATE "C" PRIMARY KEY,      -- a session id; one owner per session
    owner text COLLATE "C" NOT NULL
);
CREATE INDEX "{t}_owners_owner" ON {O} (owner, id);
CREATE TABLE {L} (
    id         text COLLATE "C" PRIMARY KEY, -- a session id; the session need not exist
    token      text NOT NULL,
    expires_at bigint NOT NULL               -- ms since the Unix epoch
);
CREATE INDEX "{t}_locks_expires_at" ON {L} (expires_at);

-- Applies a change set in one call (so in one round trip and one transaction). Locks the
-- session row first (every writer does), so concurrent change sets serialize on it.
CREATE FUNCTION {APPLY}(
    p_id text, p_now bigint, p_deadline bigint, p_slide boolean, p_clear boolean,
    p_only_if_exists boolean, p_remove text[], p_keys text[], p_values bytea[]
) RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    v_exp bigint;   -- the stored deadline; -1: the row was created by this call
    v_has boolean;
BEGIN
    IF p_only_if_exists THEN
        SELECT expires_at INTO v_exp FROM {S} WHERE id = p_id FOR UPDATE;
        IF NOT FOUND OR v_exp <= p_now THEN
            RETURN false;
        END IF;
    ELSE
        INSERT INTO {S} AS s (id, expires_at) VALUES (p_id, -1)
            ON CONFLICT (id) DO UPDATE SET expires_at = s.expires_at
            RETURNING s.expires_at INTO v_exp;
    END IF;
    IF v_exp <> -1 AND v_exp <= p_now THEN
        -- expired: starts empty, without its old keys or owner binding
        DELETE FROM {V} WHERE id = p_id;
        DELETE FROM {O} WHERE id = p_id;
    ELSIF p_clear THEN
        DELETE FROM {V} WHERE id = p_id;
    END IF;
    IF cardinality(p_remove) > 0 THEN
        DELETE FROM {V} WHERE id = p_id AND key = ANY (p_remove);
    END IF;
    IF cardinality(p_keys) > 0 THEN
        INSERT INTO {V} (id, key, value)
            SELECT p_id, u.k, u.v FROM unnest(p_keys, p_values) AS u(k, v)
            ON CONFLICT (id, key) DO UPDATE SET value = EXCLUDED.value;
        v_has := true;
    ELSE
        v_has := EXISTS (SELECT 1 FROM {V} WHERE id = p_id);
    END IF;
    IF v_has THEN
        IF p_slide OR v_exp <= p_now THEN
            UPDATE {S} SET expires_at = p_deadline WHERE id = p_id;
        END IF;
    ELSE
        DELETE FROM {S} WHERE id = p_id;
        IF v_exp > p_now THEN
            -- a live session lost its last key: it is gone, with its owner binding
            DELETE FROM {O} WHERE id = p_id;
        END IF;
    END IF;
    RETURN v_has;
END
$fn$;

-- Deletes a session (values by cascade) and its owner binding, session row first like every
-- writer, so it cannot deadlock with an apply.
CREATE FUNCTION {REMOVE_ALL}(p_id text) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM {S} WHERE id = p_id;
    DELETE FROM {O} WHERE id = p_id;
END
$fn$;
"#,
];

/// A quoted, optionally schema-qualified name.
fn qualified(schema: Option<&str>, name: &str) -> String {
    match schema {
        Some(schema) => format!("\"{schema}\".\"{name}\""),
        None => format!("\"{name}\""),
    }
}

/// Every statement of one store, with its names filled in.
#[derive(Debug)]
pub(crate) struct Sql {
    /// Key for the migration's transaction-scoped advisory lock.
    lock_name: String,
    fill: [(String, String); 7],
    version_table: String,
    pub(crate) get: String,
    pub(crate) load: String,
    pub(crate) size: String,
    pub(crate) apply: String,
    pub(crate) remove_all: String,
    pub(crate) update_ttl: String,
    pub(crate) index_add: String,
    pub(crate) index_remove: String,
    pub(crate) index_sessions: String,
    pub(crate) index_prune: String,
    pub(crate) index_owner: String,
    pub(crate) try_lock: String,
    pub(crate) unlock: String,
    pub(crate) purge: String,
    pub(crate) purge_locks: String,
    pub(crate) scan: String,
    pub(crate) version: String,
}

impl Sql {
    /// Builds the statements. `schema` and `table` must already be checked identifiers.
    pub(crate) fn new(schema: Option<&str>, table: &str) -> Sql {
        let s = qualified(schema, table);
        let v = qualified(schema, &format!("{table}_values"));
        let o = qualified(schema, &format!("{table}_owners"));
        let l = qualified(schema, &format!("{table}_locks"));
        let apply = qualified(schema, &format!("{table}_apply"));
        let remove_all = qualified(schema, &format!("{table}_remove_all"));
        let version_table = qualified(schema, &format!("{table}_schema_version"));
        let fill = [
            ("{S}".to_owned(), s.clone()),
            ("{V}".to_owned(), v.clone()),
            ("{O}".to_owned(), o.clone()),
            ("{L}".to_owned(), l.clone()),
            ("{t}".to_owned(), table.to_owned()),
            ("{APPLY}".to_owned(), apply.clone()),
            ("{REMOVE_ALL}".to_owned(), remove_all.clone()),
        ];
        Sql {
            lock_name: format!("session-postgres:{}.{table}", schema.unwrap_or("")),
            fill,
            get: format!(
                "SELECT v.value FROM {s} s JOIN {v} v ON v.id = s.id
                 WHERE s.id = $1 AND v.key = $2 AND s.expires_at > $3"
            ),
            load: format!(
                "SELECT s.expires_at, v.key, v.value FROM {s} s JOIN {v} v ON v.id = s.id
                 WHERE s.id = $1 AND s.expires_at > $2"
            ),
            size: format!(
                "SELECT count(*) FROM {s} s JOIN {v} v ON v.id = s.id
                 WHERE s.id = $1 AND s.expires_at > $2"
            ),
            apply: format!("SELECT {apply}($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            remove_all: format!("SELECT {remove_all}($1)"),
            update_ttl: format!(
                "UPDATE {s} SET expires_at = $2 WHERE id = $1 AND expires_at > $3"
            ),
            index_add: format!(
                "INSERT INTO {o} (id, owner) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET owner = EXCLUDED.owner"
            ),
            index_remove: format!("DELETE FROM {o} WHERE id = $1"),
            index_sessions: format!(
                "SELECT o.id, COALESCE(s.expires_at > $2, false) FROM {o} o
                 LEFT JOIN {s} s ON s.id = o.id WHERE o.owner = $1"
            ),
            index_prune: format!(
                "DELETE FROM {o} o WHERE o.owner = $1 AND NOT EXISTS
                     (SELECT 1 FROM {s} s WHERE s.id = o.id AND s.expires_at > $2)"
            ),
            index_owner: format!(
                "SELECT o.owner FROM {o} o JOIN {s} s ON s.id = o.id
                 WHERE o.id = $1 AND s.expires_at > $2"
            ),
            try_lock: format!(
                "INSERT INTO {l} AS l (id, token, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
                 WHERE l.expires_at <= $4"
            ),
            unlock: format!("DELETE FROM {l} WHERE id = $1 AND token = $2 AND expires_at > $3"),
            purge: format!(
                "WITH doomed AS (
                     SELECT id FROM {s} WHERE expires_at <= $1
                     ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
                 ), gone AS (
                     DELETE FROM {s} s USING doomed d WHERE s.id = d.id RETURNING s.id
                 ), unbound AS (
                     DELETE FROM {o} o USING gone g WHERE o.id = g.id
                 )
                 SELECT count(*) FROM gone"
            ),
            purge_locks: format!(
                "DELETE FROM {l} WHERE id IN (
                     SELECT id FROM {l} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)"
            ),
            scan: format!(
                "SELECT id FROM {s} WHERE id > $1 AND expires_at > $2 ORDER BY id LIMIT $3"
            ),
            version: format!("SELECT max(version) FROM {version_table}"),
            version_table,
        }
    }

    fn migration(&self, step: &str) -> String {
        self.fill
            .iter()
            .fold(step.to_owned(), |sql, (from, to)| sql.replace(from, to))
    }
}

/// Brings the tables to [`SCHEMA_VERSION`] in one transaction, under a transaction-scoped
/// advisory lock (with a 30 s `lock_timeout`) so that two processes opening a new database do
/// not both create the tables. A newer version than this driver knows is refused.
pub(crate) async fn migrate(conn: &mut PgConnection, sql: &Sql) -> Result<()> {
    let mut tx = conn.begin().await.map_err(db_error)?;
    sqlx::query("SET LOCAL lock_timeout = '30s'")
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(&sql.lock_name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {} (version bigint NOT NULL)",
        sql.version_table
    );
    sqlx::query(&create)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    let version: Option<i64> = sqlx::query(&sql.version)
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(db_error)?;
    let version = version.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(Error::backend(
            BACKEND,
            format!(
                "the session tables ({}) have schema version {version}, newer than the \
                 {SCHEMA_VERSION} this version of session-postgres knows; upgrade \
                 session-postgres to use them",
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
        sqlx::raw_sql(&sql.migration(step))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    if version != SCHEMA_VERSION {
        sqlx::query(&format!("DELETE FROM {}", sql.version_table))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(&format!(
            "INSERT INTO {} (version) VALUES ($1)",
            sql.version_table
        ))
        .bind(SCHEMA_VERSION)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    tx.commit().await.map_err(db_error)
}
