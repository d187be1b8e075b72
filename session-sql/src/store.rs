//! [`SqlStore`]: one sqlx store for every dialect, and its [`Driver`] implementation.

use std::sync::Arc;

use session_core::driver::{
    Capabilities, ChangeSet, Data, Driver, Error, Expiry, Loaded, LockToken, Result, ScanPage,
    SessionId, Ttl, Value, async_trait, check,
};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::builder::SqlStoreBuilder;
use crate::clock::{deadline, now};
use crate::error::{db_error, read, retry};
use crate::statements::Statements;
use crate::{Dialect, Tables};

/// Largest page a [`scan`](Driver::scan) returns, whatever `limit` asks for.
const MAX_SCAN_PAGE: usize = 10_000;

/// A session store in SQL tables, shared by any number of tasks, processes and machines: the
/// [logical schema](crate::Table) in the server of dialect `D`, through an sqlx connection
/// pool.
///
/// Cloning is cheap and shares the pool. Every read is one statement (one consistent
/// snapshot); every write is one statement or one transaction that locks the session's row
/// first. The drivers name it: `PostgresStore` is `SqlStore<Postgres>`, `MySqlStore` is
/// `SqlStore<MySql>`.
pub struct SqlStore<D: Dialect> {
    inner: Arc<Inner<D>>,
}

struct Inner<D: Dialect> {
    pool: Pool<D::Db>,
    dialect: D,
    sql: Statements,
    tables: Tables,
    purge_batch: i64,
}

impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        SqlStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<D: Dialect> std::fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("dialect", &D::NAME)
            .field("schema", &self.inner.tables.schema())
            .field("table", &self.inner.tables.base())
            .finish_non_exhaustive()
    }
}

impl<D: Dialect> SqlStore<D> {
    /// Opens the store on the server at `url` with the default options (see
    /// [`SqlStoreBuilder::open`]).
    pub async fn open(url: &str) -> Result<Self> {
        Self::builder().open(url).await
    }

    /// A builder for the options: table and schema names, pool size, timeouts.
    pub fn builder() -> SqlStoreBuilder<D> {
        SqlStoreBuilder::default()
    }

    pub(crate) fn new(pool: Pool<D::Db>, dialect: D, tables: Tables, purge_batch: u32) -> Self {
        SqlStore {
            inner: Arc::new(Inner {
                pool,
                dialect,
                sql: Statements::new::<D>(&tables),
                tables,
                purge_batch: i64::from(purge_batch),
            }),
        }
    }

    /// The connection pool, for running your own statements next to the store's.
    pub fn pool(&self) -> &Pool<D::Db> {
        &self.inner.pool
    }

    /// The base table name.
    pub fn table(&self) -> &str {
        self.inner.tables.base()
    }

    /// The schema holding the tables, if one was set.
    pub fn schema(&self) -> Option<&str> {
        self.inner.tables.schema()
    }

    /// The quoted names of the tables, and [`render`](Tables::render) for your own statements
    /// on them.
    pub fn tables(&self) -> &Tables {
        &self.inner.tables
    }

    /// Closes every pooled connection and waits until they are closed; later calls fail with a
    /// backend error. Clones share the pool, so this closes theirs too.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }
}

impl<D: Dialect> SqlStore<D>
where
    // What the shared statements ask of the database; sqlx's `Postgres` and `MySql` have it.
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'r> Vec<u8>: Decode<'r, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    /// The schema version recorded in the version table; equal to the driver's
    /// `SCHEMA_VERSION` once opened.
    pub async fn schema_version(&self) -> Result<i64> {
        let row = read::<D, _, _, _>(|| {
            sqlx::query(&self.inner.sql.version).fetch_optional(&self.inner.pool)
        })
        .await?;
        let version = row.map(|row| row.try_get(0)).transpose();
        Ok(version.map_err(db_error::<D>)?.unwrap_or(0))
    }
}

/// A stored text column as a `String`; not UTF-8 is [`Error::Corrupt`].
fn text<D: Dialect>(raw: D::Text, what: &str) -> Result<String> {
    String::from_utf8(raw.into())
        .map_err(|_| Error::corrupt(D::NAME, format!("stored {what} is not UTF-8")))
}

/// A stored session id.
fn session_id<D: Dialect>(raw: D::Text) -> Result<SessionId> {
    SessionId::parse(&text::<D>(raw, "session id")?)
        .map_err(|e| Error::corrupt(D::NAME, format!("stored session id is invalid: {e}")))
}

#[async_trait]
impl<D: Dialect> Driver for SqlStore<D>
where
    // The same as for `schema_version` above.
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    for<'q> <D::Db as Database>::Arguments<'q>: IntoArguments<'q, D::Db>,
    for<'q> i64: Encode<'q, D::Db> + Decode<'q, D::Db> + Type<D::Db>,
    for<'q> &'q str: Encode<'q, D::Db> + Type<D::Db>,
    for<'r> Vec<u8>: Decode<'r, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    fn name(&self) -> &'static str {
        D::NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        let rows = read::<D, _, _, _>(|| {
            sqlx::query(&self.inner.sql.load)
                .bind(id.as_str())
                .bind(now())
                .fetch_all(&self.inner.pool)
        })
        .await?;
        let mut data = Data::with_capacity(rows.len());
        let mut deadline = None;
        for row in rows {
            deadline = Some(row.try_get::<i64, _>(0).map_err(db_error::<D>)?);
            let key = text::<D>(row.try_get(1).map_err(db_error::<D>)?, "key")?;
            let value: Vec<u8> = row.try_get(2).map_err(db_error::<D>)?;
            data.insert(key, Value::from(value));
        }
        Ok(deadline.map(|deadline| Loaded {
            data: data.into(),
            expires_at: Some(check::from_unix_millis(
                u64::try_from(deadline).unwrap_or(0),
            )),
        }))
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        let pool = &self.inner.pool;
        retry::<D, _, _, _>(|| {
            self.inner
                .dialect
                .apply(pool, id.as_str(), &changes, expiry)
        })
        .await
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        let pool = &self.inner.pool;
        retry::<D, _, _, _>(|| self.inner.dialect.remove_all(pool, id.as_str())).await
    }

    // Reads one row instead of every value of the session.
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        let row = read::<D, _, _, _>(|| {
            sqlx::query(&self.inner.sql.get)
                .bind(id.as_str())
                .bind(key)
                .bind(now())
                .fetch_optional(&self.inner.pool)
        })
        .await?;
        row.map(|row| row.try_get::<Vec<u8>, _>(0).map(Value::from))
            .transpose()
            .map_err(db_error::<D>)
    }

    // Counts on the server instead of reading every value of the session.
    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        let row = read::<D, _, _, _>(|| {
            sqlx::query(&self.inner.sql.size)
                .bind(id.as_str())
                .bind(now())
                .fetch_one(&self.inner.pool)
        })
        .await?;
        let n: i64 = row.try_get(0).map_err(db_error::<D>)?;
        usize::try_from(n).map_err(|_| Error::corrupt(D::NAME, format!("negative key count {n}")))
    }

    // One UPDATE instead of a change set's transaction (on MySQL, 1 round trip instead of 4).
    async fn update_ttl(&self, id: &SessionId, ttl: Ttl) -> Result<()> {
        retry::<D, _, _, _>(|| {
            let now = now();
            sqlx::query(&self.inner.sql.update_ttl)
                .bind(deadline(now, ttl))
                .bind(id.as_str())
                .bind(now)
                .execute(&self.inner.pool)
        })
        .await
        .map(drop)
    }

    async fn index_add(&self, owner: &str, id: &SessionId, _ttl: Ttl) -> Result<()> {
        retry::<D, _, _, _>(|| {
            sqlx::query(&self.inner.sql.index_add)
                .bind(id.as_str())
                .bind(owner)
                .execute(&self.inner.pool)
        })
        .await
        .map(drop)
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        retry::<D, _, _, _>(|| {
            sqlx::query(&self.inner.sql.index_remove)
                .bind(id.as_str())
                .execute(&self.inner.pool)
        })
        .await
        .map(drop)
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        let now = now();
        let rows = read::<D, _, _, _>(|| {
            sqlx::query(&self.inner.sql.index_sessions)
                .bind(owner)
                .fetch_all(&self.inner.pool)
        })
        .await?;
        let mut live = Vec::with_capacity(rows.len());
        let mut dead = false;
        for row in rows {
            let expires_at: Option<i64> = row.try_get(1).map_err(db_error::<D>)?;
            if expires_at.is_some_and(|at| at > now) {
                live.push(session_id::<D>(row.try_get(0).map_err(db_error::<D>)?)?);
            } else {
                dead = true;
            }
        }
        if dead {
            retry::<D, _, _, _>(|| {
                sqlx::query(&self.inner.sql.index_prune)
                    .bind(owner)
                    .bind(now)
                    .execute(&self.inner.pool)
            })
            .await?;
        }
        Ok(live)
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let row = read::<D, _, _, _>(|| {
            sqlx::query(&self.inner.sql.index_owner)
                .bind(id.as_str())
                .bind(now())
                .fetch_optional(&self.inner.pool)
        })
        .await?;
        match row {
            Some(row) => Ok(Some(text::<D>(
                row.try_get(0).map_err(db_error::<D>)?,
                "owner",
            )?)),
            None => Ok(None),
        }
    }

    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        let token = LockToken::generate()?;
        let pool = &self.inner.pool;
        let dialect = &self.inner.dialect;
        let taken =
            retry::<D, _, _, _>(|| dialect.try_lock(pool, id.as_str(), token.as_str(), lease))
                .await?;
        Ok(taken.then_some(token))
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let done = retry::<D, _, _, _>(|| {
            sqlx::query(&self.inner.sql.unlock)
                .bind(id.as_str())
                .bind(token.as_str())
                .bind(now())
                .execute(&self.inner.pool)
        })
        .await?;
        Ok(D::rows_affected(&done) == 1)
    }

    async fn purge_expired(&self) -> Result<u64> {
        let (pool, batch) = (&self.inner.pool, self.inner.purge_batch);
        let full = u64::try_from(batch).unwrap_or(u64::MAX);
        let mut total = 0u64;
        loop {
            let deleted = retry::<D, _, _, _>(|| self.inner.dialect.purge(pool, batch)).await?;
            total += deleted;
            if deleted < full {
                break;
            }
        }
        loop {
            let done = retry::<D, _, _, _>(|| {
                sqlx::query(&self.inner.sql.purge_locks)
                    .bind(now())
                    .bind(batch)
                    .execute(pool)
            })
            .await?;
            if D::rows_affected(&done) < full {
                break;
            }
        }
        Ok(total)
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        // A cursor is the last id of a page (or empty): nothing else is a cursor of ours.
        let after = cursor.unwrap_or("");
        let id_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if after.len() > SessionId::MAX_LEN || !after.chars().all(id_char) {
            return Err(Error::InvalidInput(
                "scan cursor is not one this driver returned".into(),
            ));
        }
        let page = limit.clamp(1, MAX_SCAN_PAGE);
        let rows = read::<D, _, _, _>(|| {
            sqlx::query(&self.inner.sql.scan)
                .bind(after)
                .bind(now())
                .bind(i64::try_from(page).unwrap_or(1))
                .fetch_all(&self.inner.pool)
        })
        .await?;
        let ids = rows
            .into_iter()
            .map(|row| session_id::<D>(row.try_get(0).map_err(db_error::<D>)?))
            .collect::<Result<Vec<_>>>()?;
        let next = if ids.len() == page {
            ids.last().map(|id| id.as_str().to_owned())
        } else {
            None
        };
        Ok(ScanPage { ids, next })
    }
}
