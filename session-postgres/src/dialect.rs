//! [`PostgresDialect`]: PostgreSQL's SQL for the shared store.

use session_core::driver::{ChangeSet, Expiry, Result, Ttl, Value, async_trait};
use session_sql::{Dialect, Tables, db_error, deadline, migrate, now};
use sqlx::error::DatabaseError;
use sqlx::postgres::{PgConnectOptions, PgQueryResult};
use sqlx::{Connection, Executor, PgConnection, PgPool, Row};

use crate::schema::{MIGRATIONS, VERSION_TABLE};

/// The PostgreSQL dialect of [`SqlStore`](session_sql::SqlStore): `$n` parameters,
/// `ON CONFLICT` upserts, retries on SQLSTATE `40P01` (deadlock) and `40001` (serialization
/// failure), and the statements only PostgreSQL runs: the change set and `remove_all` as calls
/// of PL/pgSQL functions (one round trip each), the lock as one upsert, a purge batch as one
/// statement.
///
/// A value holds those statements for one store's tables; [`PostgresStore`](crate::PostgresStore)
/// is `SqlStore<PostgresDialect>`.
#[derive(Debug)]
pub struct PostgresDialect {
    apply_fn: String,
    remove_all_fn: String,
    apply: String,
    remove_all: String,
    try_lock: String,
    purge: String,
    /// Key of the migration's transaction-scoped advisory lock.
    lock_name: String,
}

impl PostgresDialect {
    /// A migration step with this driver's own placeholders, the function names, filled in.
    fn fill(&self, sql: &str) -> String {
        sql.replace("{APPLY}", &self.apply_fn)
            .replace("{REMOVE_ALL}", &self.remove_all_fn)
    }
}

#[async_trait]
impl Dialect for PostgresDialect {
    type Db = sqlx::Postgres;
    type Text = String;

    const NAME: &'static str = crate::NAME;
    const SERVER: &'static str = "PostgreSQL";
    const MIGRATIONS: &'static [&'static [&'static str]] = &MIGRATIONS;
    const VERSION_TABLE: &'static str = VERSION_TABLE;
    const PURGE_LOCKS: &'static str = "DELETE FROM {L} WHERE id IN (
        SELECT id FROM {L} WHERE expires_at <= ? LIMIT ? FOR UPDATE SKIP LOCKED)";

    fn quote(name: &str) -> String {
        format!("\"{name}\"")
    }

    fn placeholder(n: usize) -> String {
        format!("${n}")
    }

    fn upsert(key: &[&str], update: &[&str]) -> String {
        let set: Vec<String> = update
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        format!(
            "ON CONFLICT ({}) DO UPDATE SET {}",
            key.join(", "),
            set.join(", ")
        )
    }

    fn is_retryable(error: &dyn DatabaseError) -> bool {
        matches!(error.code().as_deref(), Some("40P01" | "40001"))
    }

    /// Class `08`, and `57P01` (admin shutdown: a fast shutdown, `pg_terminate_backend`, or the
    /// postmaster gone), `57P02` (crash shutdown: another backend crashed), `57P03` (cannot
    /// connect now: starting up or shutting down).
    fn is_connection_lost(error: &dyn DatabaseError) -> bool {
        error.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        })
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn address(options: &PgConnectOptions) -> String {
        format!("{}:{}", options.get_host(), options.get_port())
    }

    fn new(tables: &Tables) -> Self {
        let apply_fn = tables.qualified("_apply");
        let remove_all_fn = tables.qualified("_remove_all");
        PostgresDialect {
            apply: format!("SELECT {apply_fn}($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            remove_all: format!("SELECT {remove_all_fn}($1)"),
            try_lock: tables.render(
                "INSERT INTO {L} AS l (id, token, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
                 WHERE l.expires_at <= $4",
            ),
            purge: tables.render(
                "WITH doomed AS (
                     SELECT id FROM {S} WHERE expires_at <= $1
                     ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
                 ), gone AS (
                     DELETE FROM {S} s USING doomed d WHERE s.id = d.id RETURNING s.id
                 ), unbound AS (
                     DELETE FROM {O} o USING gone g WHERE o.id = g.id
                 )
                 SELECT count(*) FROM gone",
            ),
            lock_name: format!(
                "session-postgres:{}.{}",
                tables.schema().unwrap_or(""),
                tables.base()
            ),
            apply_fn,
            remove_all_fn,
        }
    }

    /// In one transaction, under a transaction-scoped advisory lock (with a 30 s
    /// `lock_timeout`).
    async fn migrate(&self, conn: &mut PgConnection, tables: &Tables) -> Result<()> {
        let mut tx = conn.begin().await.map_err(db_error::<Self>)?;
        tx.execute("SET LOCAL lock_timeout = '30s'")
            .await
            .map_err(db_error::<Self>)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&self.lock_name)
            .execute(&mut *tx)
            .await
            .map_err(db_error::<Self>)?;
        let create = tables.render(VERSION_TABLE);
        tx.execute(create.as_str())
            .await
            .map_err(db_error::<Self>)?;
        let read = tables.render(migrate::READ_VERSION);
        let found: Option<i64> = sqlx::query_scalar(&read)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error::<Self>)?;
        for sql in migrate::pending::<Self>(tables, found)? {
            // A `&str` runs unprepared, so one step may hold several statements.
            let sql = self.fill(&sql);
            tx.execute(sql.as_str()).await.map_err(db_error::<Self>)?;
        }
        tx.commit().await.map_err(db_error::<Self>)
    }

    /// One call of the `{table}_apply` function: one statement, one transaction.
    async fn apply(
        &self,
        pool: &PgPool,
        id: &str,
        changes: &ChangeSet,
        expiry: Expiry,
    ) -> sqlx::Result<bool> {
        let keys: Vec<&str> = changes.set.keys().map(String::as_str).collect();
        let values: Vec<&[u8]> = changes.set.values().map(Value::as_bytes).collect();
        let remove: Vec<&str> = changes.remove.iter().map(String::as_str).collect();
        let now = now();
        // `Keep`: no new deadline (`p_slide` false) and nothing created (`p_only_if_exists`).
        let new_deadline = expiry.ttl().map(|ttl| deadline(now, ttl));
        sqlx::query(&self.apply)
            .bind(id)
            .bind(now)
            .bind(new_deadline.unwrap_or(now))
            .bind(new_deadline.is_some())
            .bind(changes.clear)
            .bind(changes.only_if_exists || new_deadline.is_none())
            .bind(&remove)
            .bind(&keys)
            .bind(&values)
            .fetch_one(pool)
            .await?
            .try_get(0)
    }

    /// One call of the `{table}_remove_all` function.
    async fn remove_all(&self, pool: &PgPool, id: &str) -> sqlx::Result<()> {
        sqlx::query(&self.remove_all)
            .bind(id)
            .execute(pool)
            .await
            .map(drop)
    }

    /// One upsert that changes the row only when the lease it finds ran out.
    async fn try_lock(
        &self,
        pool: &PgPool,
        id: &str,
        token: &str,
        lease: Ttl,
    ) -> sqlx::Result<bool> {
        let now = now();
        let done = sqlx::query(&self.try_lock)
            .bind(id)
            .bind(token)
            .bind(deadline(now, lease))
            .bind(now)
            .execute(pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One statement: pick, delete and unbind, counting what it deleted.
    async fn purge(&self, pool: &PgPool, limit: i64) -> sqlx::Result<u64> {
        let deleted: i64 = sqlx::query_scalar(&self.purge)
            .bind(now())
            .bind(limit)
            .fetch_one(pool)
            .await?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }
}
