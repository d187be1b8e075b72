//! [`MySqlDialect`]: MySQL's and MariaDB's SQL for the shared store.

use session_core::driver::{ChangeSet, Error, Expiry, Result, Ttl, Value, async_trait};
use session_sql::{Dialect, Table, Tables, db_error, deadline, migrate, now};
use sqlx::error::DatabaseError;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPoolOptions, MySqlQueryResult};
use sqlx::{Executor, MySqlConnection, MySqlPool};

use crate::schema::{MIGRATIONS, VERSION_TABLE};

/// Most rows in one multi-row `INSERT` or `IN (...)` list.
const MAX_ROWS_PER_STATEMENT: usize = 500;

/// Most value bytes in one multi-row `INSERT` (a bigger single value goes alone), well under
/// the server's `max_allowed_packet` (16 MiB by default in MariaDB, 64 MiB in MySQL 8).
const MAX_BYTES_PER_STATEMENT: usize = 4 << 20;

/// The migration lock: a `GET_LOCK` name per database (the schema, else the connection's) and
/// table, hashed to fit the 64-character limit. Parameters: schema or NULL, the lock name.
const LOCK_KEY: &str = "SHA1(CONCAT(COALESCE(?, DATABASE(), ''), '.', ?))";

/// The MySQL and MariaDB dialect of [`SqlStore`](session_sql::SqlStore): `?` parameters,
/// backquoted names, `ON DUPLICATE KEY UPDATE` upserts, retries on deadlocks (error 1213) and
/// serialization failures (SQLSTATE `40001`), pooled connections at `READ COMMITTED`, and the
/// statements only this dialect runs: a change set as a transaction of several statements
/// (MySQL takes no arrays as parameters), the lock as an update or an insert, a purge batch as
/// a transaction. Only SQL both MySQL and MariaDB accept (no `RETURNING`, no row aliases).
///
/// A value holds those statements for one store's tables; [`MySqlStore`](crate::MySqlStore) is
/// `SqlStore<MySqlDialect>`.
#[derive(Debug)]
pub struct MySqlDialect {
    values: String,
    owners: String,
    sessions: String,
    lock_row: String,
    insert_placeholder: String,
    delete_values: String,
    delete_owner: String,
    delete_session: String,
    any_value: String,
    set_deadline: String,
    take_expired_lock: String,
    insert_lock: String,
    purge_select: String,
    lock_name: String,
}

/// `?, ?, ?` with `n` times `each`.
fn placeholders(n: usize, each: &str) -> String {
    vec![each; n].join(", ")
}

impl MySqlDialect {
    /// The migration with the lock held.
    async fn migrate_locked(&self, conn: &mut MySqlConnection, tables: &Tables) -> Result<()> {
        let create = tables.render(VERSION_TABLE);
        conn.execute(create.as_str())
            .await
            .map_err(db_error::<Self>)?;
        let read = tables.render(migrate::READ_VERSION);
        let found: Option<i64> = sqlx::query_scalar(&read)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error::<Self>)?;
        for sql in migrate::pending::<Self>(tables, found)? {
            conn.execute(sql.as_str()).await.map_err(db_error::<Self>)?;
        }
        Ok(())
    }

    /// Deletes `keys` of session `id`, up to 500 a statement.
    async fn delete_keys(
        &self,
        conn: &mut MySqlConnection,
        id: &str,
        keys: &[String],
    ) -> sqlx::Result<()> {
        for chunk in keys.chunks(MAX_ROWS_PER_STATEMENT) {
            let statement = format!(
                "DELETE FROM {} WHERE id = ? AND `key` IN ({})",
                self.values,
                placeholders(chunk.len(), "?")
            );
            let mut query = sqlx::query(&statement).bind(id);
            for key in chunk {
                query = query.bind(key.as_bytes());
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Upserts `entries` into session `id`, up to 500 rows or 4 MiB a statement.
    async fn upsert_values(
        &self,
        conn: &mut MySqlConnection,
        id: &str,
        entries: &[(&String, &Value)],
    ) -> sqlx::Result<()> {
        let mut rest = entries;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && n < MAX_ROWS_PER_STATEMENT {
                let size = rest[n].0.len() + rest[n].1.len();
                if n > 0 && bytes + size > MAX_BYTES_PER_STATEMENT {
                    break;
                }
                bytes += size;
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let statement = format!(
                "INSERT INTO {} (id, `key`, value) VALUES {} \
                 ON DUPLICATE KEY UPDATE value = VALUES(value)",
                self.values,
                placeholders(chunk.len(), "(?, ?, ?)")
            );
            let mut query = sqlx::query(&statement);
            for (key, value) in chunk {
                query = query.bind(id).bind(key.as_bytes()).bind(value.as_bytes());
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// Runs `sql` with `id` as its one parameter.
    async fn by_id(&self, conn: &mut MySqlConnection, sql: &str, id: &str) -> sqlx::Result<()> {
        sqlx::query(sql).bind(id).execute(conn).await.map(drop)
    }
}

#[async_trait]
impl Dialect for MySqlDialect {
    type Db = sqlx::MySql;
    // `ascii_bin` and `VARBINARY` columns come back flagged binary: read them as bytes.
    type Text = Vec<u8>;

    const NAME: &'static str = crate::NAME;
    const SERVER: &'static str = "MySQL/MariaDB";
    const MIGRATIONS: &'static [&'static [&'static str]] = &MIGRATIONS;
    const VERSION_TABLE: &'static str = VERSION_TABLE;
    const PURGE_LOCKS: &'static str = "DELETE FROM {L} WHERE expires_at <= ? LIMIT ?";

    fn quote(name: &str) -> String {
        format!("`{name}`")
    }

    fn upsert(_key: &[&str], update: &[&str]) -> String {
        // MySQL 8.0.20+ warns that `VALUES()` is deprecated, but both servers accept it.
        let set: Vec<String> = update
            .iter()
            .map(|c| format!("{c} = VALUES({c})"))
            .collect();
        format!("ON DUPLICATE KEY UPDATE {}", set.join(", "))
    }

    fn is_retryable(error: &dyn DatabaseError) -> bool {
        error.code().as_deref() == Some("40001")
            || error
                .try_downcast_ref::<MySqlDatabaseError>()
                .is_some_and(|e| e.number() == 1213)
    }

    /// Class `08` (with 1053, server shutdown in progress, SQLSTATE `08S01`), and MariaDB's 1927
    /// (connection killed, SQLSTATE `70100`).
    fn is_connection_lost(error: &dyn DatabaseError) -> bool {
        error.code().is_some_and(|code| code.starts_with("08"))
            || error
                .try_downcast_ref::<MySqlDatabaseError>()
                .is_some_and(|e| matches!(e.number(), 1053 | 1927))
    }

    fn rows_affected(result: &MySqlQueryResult) -> u64 {
        result.rows_affected()
    }

    fn address(options: &MySqlConnectOptions) -> String {
        format!("{}:{}", options.get_host(), options.get_port())
    }

    fn pool_options(options: MySqlPoolOptions) -> MySqlPoolOptions {
        options.after_connect(|conn, _meta| {
            Box::pin(async move {
                // No gap locks: concurrent creators of one session cannot deadlock.
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await
                    .map(drop)
            })
        })
    }

    fn new(tables: &Tables) -> Self {
        let sql = |template: &str| tables.render(template);
        MySqlDialect {
            values: tables.name(Table::Values).to_owned(),
            owners: tables.name(Table::Owners).to_owned(),
            sessions: tables.name(Table::Sessions).to_owned(),
            lock_row: sql("SELECT expires_at FROM {S} WHERE id = ? FOR UPDATE"),
            insert_placeholder: sql("INSERT INTO {S} (id, expires_at) VALUES (?, -1)
                                     ON DUPLICATE KEY UPDATE expires_at = expires_at"),
            delete_values: sql("DELETE FROM {V} WHERE id = ?"),
            delete_owner: sql("DELETE FROM {O} WHERE id = ?"),
            delete_session: sql("DELETE FROM {S} WHERE id = ?"),
            any_value: sql("SELECT 1 FROM {V} WHERE id = ? LIMIT 1"),
            set_deadline: sql("UPDATE {S} SET expires_at = ? WHERE id = ?"),
            take_expired_lock: sql(
                "UPDATE {L} SET token = ?, expires_at = ? WHERE id = ? AND expires_at <= ?",
            ),
            insert_lock: sql("INSERT IGNORE INTO {L} (id, token, expires_at) VALUES (?, ?, ?)"),
            purge_select: sql("SELECT id FROM {S} WHERE expires_at <= ?
                               ORDER BY expires_at LIMIT ? FOR UPDATE SKIP LOCKED"),
            lock_name: format!("session-mysql:{}", tables.base()),
        }
    }

    /// Holding `GET_LOCK` (30 s timeout, released at the end or when the connection closes);
    /// MySQL commits DDL at once, so each statement is safe to run again after a crash.
    async fn migrate(&self, conn: &mut MySqlConnection, tables: &Tables) -> Result<()> {
        let got: Option<i64> =
            sqlx::query_scalar(&format!("SELECT CAST(GET_LOCK({LOCK_KEY}, 30) AS SIGNED)"))
                .bind(tables.schema())
                .bind(&self.lock_name)
                .fetch_one(&mut *conn)
                .await
                .map_err(db_error::<Self>)?;
        if got != Some(1) {
            return Err(Error::backend(
                Self::NAME,
                "another process held the schema migration lock for more than 30 s",
            ));
        }
        let result = self.migrate_locked(conn, tables).await;
        let _ = sqlx::query(&format!("SELECT RELEASE_LOCK({LOCK_KEY})"))
            .bind(tables.schema())
            .bind(&self.lock_name)
            .execute(&mut *conn)
            .await;
        result
    }

    /// One transaction that locks the session row first (a new session: a placeholder row with
    /// deadline `-1`, never committed), so writers of one session serialize on it.
    async fn apply(
        &self,
        pool: &MySqlPool,
        id: &str,
        changes: &ChangeSet,
        expiry: Expiry,
    ) -> sqlx::Result<bool> {
        let only_if_exists = changes.only_if_exists || !expiry.may_create();
        let mut tx = pool.begin().await?;
        let mut stored: Option<i64> = sqlx::query_scalar(&self.lock_row)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if stored.is_none() {
            if only_if_exists {
                return Ok(false); // dropping `tx` rolls back
            }
            self.by_id(&mut tx, &self.insert_placeholder, id).await?;
            stored = sqlx::query_scalar(&self.lock_row)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let now = now();
        let stored = stored.unwrap_or(-1);
        let fresh = stored == -1;
        let live = stored > now;
        if !live && only_if_exists {
            return Ok(false);
        }
        if !fresh && !live {
            // Expired: starts empty, without its old keys or owner binding.
            self.by_id(&mut tx, &self.delete_values, id).await?;
            self.by_id(&mut tx, &self.delete_owner, id).await?;
        } else if changes.clear && live {
            self.by_id(&mut tx, &self.delete_values, id).await?;
        }
        self.delete_keys(&mut tx, id, &changes.remove).await?;
        let entries: Vec<(&String, &Value)> = changes.set.iter().collect();
        self.upsert_values(&mut tx, id, &entries).await?;
        let has_keys = !changes.set.is_empty()
            || sqlx::query(&self.any_value)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        if has_keys {
            // `Keep` leaves the deadline of the (live) session as it is.
            if let Some(ttl) = expiry.ttl() {
                sqlx::query(&self.set_deadline)
                    .bind(deadline(now, ttl))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        } else {
            self.by_id(&mut tx, &self.delete_session, id).await?;
            if live {
                // A live session lost its last key: it is gone, with its owner binding.
                self.by_id(&mut tx, &self.delete_owner, id).await?;
            }
        }
        tx.commit().await?;
        Ok(has_keys)
    }

    /// One transaction: the session row first (values go by cascade), like every writer, then
    /// the owner binding.
    async fn remove_all(&self, pool: &MySqlPool, id: &str) -> sqlx::Result<()> {
        let mut tx = pool.begin().await?;
        self.by_id(&mut tx, &self.delete_session, id).await?;
        self.by_id(&mut tx, &self.delete_owner, id).await?;
        tx.commit().await
    }

    /// Takes over a lease that ran out, else inserts a new one; a live lease matches neither.
    async fn try_lock(
        &self,
        pool: &MySqlPool,
        id: &str,
        token: &str,
        lease: Ttl,
    ) -> sqlx::Result<bool> {
        let now = now();
        let deadline = deadline(now, lease);
        let over = sqlx::query(&self.take_expired_lock)
            .bind(token.as_bytes())
            .bind(deadline)
            .bind(id)
            .bind(now)
            .execute(pool)
            .await?;
        if over.rows_affected() == 1 {
            return Ok(true);
        }
        let new = sqlx::query(&self.insert_lock)
            .bind(id)
            .bind(token.as_bytes())
            .bind(deadline)
            .execute(pool)
            .await?;
        Ok(new.rows_affected() == 1)
    }

    /// One transaction: pick the batch with `FOR UPDATE SKIP LOCKED`, unbind, delete.
    async fn purge(&self, pool: &MySqlPool, limit: i64) -> sqlx::Result<u64> {
        let mut tx = pool.begin().await?;
        let ids: Vec<Vec<u8>> = sqlx::query_scalar(&self.purge_select)
            .bind(now())
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut deleted = 0u64;
        for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
            let list = placeholders(chunk.len(), "?");
            let unbind = format!("DELETE FROM {} WHERE id IN ({list})", self.owners);
            let mut query = sqlx::query(&unbind);
            for id in chunk {
                query = query.bind(id.as_slice());
            }
            query.execute(&mut *tx).await?;
            let delete = format!("DELETE FROM {} WHERE id IN ({list})", self.sessions);
            let mut query = sqlx::query(&delete);
            for id in chunk {
                query = query.bind(id.as_slice());
            }
            deleted += query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(deleted)
    }
}
