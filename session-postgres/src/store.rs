//! [`PostgresStore`]: the [`Storage`] implementation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use session_core::{
    Capabilities, ChangeSet, Data, Error, Loaded, LockToken, Result, ScanPage, SessionId, Storage,
    Value, async_trait, check,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Row};

use crate::options::PostgresOptions;
use crate::schema::{self, Sql};
use crate::{BACKEND, db_error, is_retryable};

/// Largest page a [`scan`](Storage::scan) returns, whatever `limit` asks for.
const MAX_SCAN_PAGE: usize = 10_000;

/// How many times a transaction that hit a deadlock or serialization failure is tried.
const ATTEMPTS: u32 = 5;

/// A session store in PostgreSQL tables, shared by any number of tasks, processes and machines.
///
/// Holds an sqlx connection pool; cloning is cheap and shares the pool. Every read is one
/// statement (one consistent snapshot); every write is one statement too, the change sets
/// through a PL/pgSQL function that runs the whole change in one transaction.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    sql: Sql,
    table: String,
    schema: Option<String>,
    purge_batch: i64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("table", &self.inner.table)
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    millis(check::now_millis())
}

/// A u64 millisecond count as PostgreSQL's bigint (saturating: far beyond any real deadline).
fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn parse_id(id: &str) -> Result<SessionId> {
    SessionId::parse(id)
        .map_err(|e| Error::corrupt(BACKEND, format!("stored session id is invalid: {e}")))
}

/// Runs `f` again when it fails with a deadlock or serialization failure (a few times).
async fn retry<T, F, Fut>(mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if attempt < ATTEMPTS && is_retryable(&e) => {
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                attempt += 1;
            }
            other => return other.map_err(db_error),
        }
    }
}

impl PostgresStore {
    /// Opens the store on the server at `url` with the default [`PostgresOptions`]: connects
    /// once (failing with a clear [`Error::Backend`] when the server is not reachable within
    /// the connect timeout), creates or migrates the tables, then starts the pool.
    ///
    /// A schema version newer than this driver knows is refused with a backend error.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        PostgresOptions::default().connect(url).await
    }

    /// A builder for the options (table and schema names, pool size, timeouts).
    pub fn builder() -> PostgresOptions {
        PostgresOptions::default()
    }

    pub(crate) async fn open(
        options: PostgresOptions,
        connect: PgConnectOptions,
    ) -> Result<PostgresStore> {
        let sql = Sql::new(options.schema.as_deref(), &options.table);
        let where_ = format!("{}:{}", connect.get_host(), connect.get_port());
        let first = tokio::time::timeout(
            options.connect_timeout,
            PgConnection::connect_with(&connect),
        )
        .await;
        let mut conn = match first {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(Error::backend(
                    BACKEND,
                    format!("cannot connect to PostgreSQL at {where_}: {e}"),
                ));
            }
            Err(_) => {
                return Err(Error::backend(
                    BACKEND,
                    format!(
                        "cannot connect to PostgreSQL at {where_}: no answer within {:?}",
                        options.connect_timeout
                    ),
                ));
            }
        };
        let migrated = schema::migrate(&mut conn, &sql).await;
        let _ = conn.close().await;
        migrated?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(options.idle_timeout)
            .connect_lazy_with(connect);
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                sql,
                table: options.table,
                schema: options.schema,
                purge_batch: i64::from(options.purge_batch),
            }),
        })
    }

    /// The connection pool, for running your own statements next to the store's.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The base table name.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// The schema holding the tables, if one was set.
    pub fn schema(&self) -> Option<&str> {
        self.inner.schema.as_deref()
    }

    /// The schema version recorded in `{table}_schema_version`; equal to
    /// [`SCHEMA_VERSION`](crate::SCHEMA_VERSION) once opened.
    pub async fn schema_version(&self) -> Result<i64> {
        let version: Option<i64> = sqlx::query(&self.inner.sql.version)
            .fetch_one(&self.inner.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(db_error)?;
        Ok(version.unwrap_or(0))
    }

    /// Closes every pooled connection and waits until they are closed; later calls fail with a
    /// backend error. Clones share the pool, so this closes theirs too.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// The whole live session with its deadline, in one statement.
    async fn load_raw(&self, id: &SessionId) -> Result<Option<(Data, i64)>> {
        let rows = sqlx::query(&self.inner.sql.load)
            .bind(id.as_str())
            .bind(now())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db_error)?;
        let mut data = Data::with_capacity(rows.len());
        let mut deadline = None;
        for row in rows {
            deadline = Some(row.try_get::<i64, _>(0).map_err(db_error)?);
            let key: String = row.try_get(1).map_err(db_error)?;
            let value: Vec<u8> = row.try_get(2).map_err(db_error)?;
            data.insert(key, Value::from(value));
        }
        Ok(deadline.map(|d| (data, d)))
    }

    /// Runs the apply function; `slide = false` keeps the deadline (for `remove`).
    async fn run_apply(
        &self,
        id: &SessionId,
        changes: &ChangeSet,
        ttl_ms: u64,
        slide: bool,
    ) -> Result<bool> {
        let keys: Vec<&str> = changes.set.keys().map(String::as_str).collect();
        let values: Vec<&[u8]> = changes.set.values().map(Value::as_bytes).collect();
        let remove: Vec<&str> = changes.remove.iter().map(String::as_str).collect();
        retry(|| async {
            let now = now();
            let row = sqlx::query(&self.inner.sql.apply)
                .bind(id.as_str())
                .bind(now)
                .bind(now.saturating_add(millis(ttl_ms)))
                .bind(slide)
                .bind(changes.clear)
                .bind(changes.only_if_exists)
                .bind(&remove)
                .bind(&keys)
                .bind(&values)
                .fetch_one(&self.inner.pool)
                .await?;
            row.try_get::<bool, _>(0)
        })
        .await
    }
}

#[async_trait]
impl Storage for PostgresStore {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_apply: true,
            load_with_deadline: true,
            owner_index: true,
            lock: true,
            purge: true,
            scan: true,
            native_expiry: false,
        }
    }

    async fn new(&self, ttl: Duration) -> Result<Option<SessionId>> {
        check::ttl_millis(ttl)?;
        Ok(None)
    }

    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        check::key(key)?;
        let row = sqlx::query(&self.inner.sql.get)
            .bind(id.as_str())
            .bind(key)
            .bind(now())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db_error)?;
        row.map(|row| row.try_get::<Vec<u8>, _>(0).map(Value::from))
            .transpose()
            .map_err(db_error)
    }

    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        Ok(self
            .load_raw(id)
            .await?
            .map(|(data, _)| data)
            .unwrap_or_default())
    }

    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        let n: i64 = sqlx::query(&self.inner.sql.size)
            .bind(id.as_str())
            .bind(now())
            .fetch_one(&self.inner.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(db_error)?;
        usize::try_from(n).map_err(|_| Error::corrupt(BACKEND, format!("negative key count {n}")))
    }

    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Duration) -> Result<()> {
        check::key(key)?;
        let mut changes = ChangeSet::default();
        changes.set.insert(key.to_owned(), value);
        self.apply(id, changes, ttl).await.map(drop)
    }

    async fn set_map(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        let changes = ChangeSet {
            set: data,
            ..ChangeSet::default()
        };
        self.apply(id, changes, ttl).await.map(drop)
    }

    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        check::key(key)?;
        let changes = ChangeSet {
            remove: vec![key.to_owned()],
            only_if_exists: true,
            ..ChangeSet::default()
        };
        // The ttl is unused (slide = false): the deadline stays.
        self.run_apply(id, &changes, 1, false).await.map(drop)
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        retry(|| {
            sqlx::query(&self.inner.sql.remove_all)
                .bind(id.as_str())
                .execute(&self.inner.pool)
        })
        .await
        .map(drop)
    }

    async fn get_session(
        &self,
        id: &SessionId,
        _ttl: Duration,
        _cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        Ok(self.load_raw(id).await?.map(|(data, _)| data))
    }

    async fn set_session(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        let changes = ChangeSet {
            clear: true,
            set: data,
            ..ChangeSet::default()
        };
        self.apply(id, changes, ttl).await.map(drop)
    }

    async fn update_ttl(&self, id: &SessionId, ttl: Duration) -> Result<()> {
        let ttl_ms = check::ttl_millis(ttl)?;
        retry(|| {
            let now = now();
            sqlx::query(&self.inner.sql.update_ttl)
                .bind(id.as_str())
                .bind(now.saturating_add(millis(ttl_ms)))
                .bind(now)
                .execute(&self.inner.pool)
        })
        .await
        .map(drop)
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, ttl: Duration) -> Result<bool> {
        let ttl_ms = check::ttl_millis(ttl)?;
        for key in changes.remove.iter().chain(changes.set.keys()) {
            check::key(key)?;
        }
        self.run_apply(id, &changes, ttl_ms, true).await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        Ok(self.load_raw(id).await?.map(|(data, deadline)| Loaded {
            data: data.into(),
            expires_at: Some(check::from_unix_millis(
                u64::try_from(deadline).unwrap_or(0),
            )),
        }))
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Duration) -> Result<()> {
        check::owner(owner)?;
        check::ttl_millis(ttl)?;
        retry(|| {
            sqlx::query(&self.inner.sql.index_add)
                .bind(id.as_str())
                .bind(owner)
                .execute(&self.inner.pool)
        })
        .await
        .map(drop)
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        retry(|| {
            sqlx::query(&self.inner.sql.index_remove)
                .bind(id.as_str())
                .execute(&self.inner.pool)
        })
        .await
        .map(drop)
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        check::owner(owner)?;
        let now = now();
        let rows = sqlx::query(&self.inner.sql.index_sessions)
            .bind(owner)
            .bind(now)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db_error)?;
        let mut live = Vec::with_capacity(rows.len());
        let mut dead = false;
        for row in rows {
            let id: String = row.try_get(0).map_err(db_error)?;
            let alive: bool = row.try_get(1).map_err(db_error)?;
            if alive {
                live.push(parse_id(&id)?);
            } else {
                dead = true;
            }
        }
        if dead {
            retry(|| {
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
        let row = sqlx::query(&self.inner.sql.index_owner)
            .bind(id.as_str())
            .bind(now())
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db_error)?;
        row.map(|row| row.try_get::<String, _>(0))
            .transpose()
            .map_err(db_error)
    }

    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        let lease_ms = check::ttl_millis(lease)?;
        let token = LockToken::generate()?;
        let taken = retry(|| {
            let now = now();
            sqlx::query(&self.inner.sql.try_lock)
                .bind(id.as_str())
                .bind(token.as_str())
                .bind(now.saturating_add(millis(lease_ms)))
                .bind(now)
                .execute(&self.inner.pool)
        })
        .await?;
        Ok((taken.rows_affected() == 1).then_some(token))
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let done = retry(|| {
            sqlx::query(&self.inner.sql.unlock)
                .bind(id.as_str())
                .bind(token.as_str())
                .bind(now())
                .execute(&self.inner.pool)
        })
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_expired(&self) -> Result<u64> {
        let batch = self.inner.purge_batch;
        let mut total = 0u64;
        loop {
            let deleted: i64 = retry(|| async {
                sqlx::query(&self.inner.sql.purge)
                    .bind(now())
                    .bind(batch)
                    .fetch_one(&self.inner.pool)
                    .await?
                    .try_get(0)
            })
            .await?;
            total += u64::try_from(deleted).unwrap_or(0);
            if deleted < batch {
                break;
            }
        }
        loop {
            let done = retry(|| {
                sqlx::query(&self.inner.sql.purge_locks)
                    .bind(now())
                    .bind(batch)
                    .execute(&self.inner.pool)
            })
            .await?;
            if done.rows_affected() < u64::try_from(batch).unwrap_or(0) {
                break;
            }
        }
        Ok(total)
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let after = cursor.unwrap_or("");
        if after.len() > SessionId::MAX_LEN || after.contains('\0') {
            return Err(Error::InvalidInput(
                "scan cursor is not one this driver returned".into(),
            ));
        }
        let page = limit.clamp(1, MAX_SCAN_PAGE);
        let rows = sqlx::query(&self.inner.sql.scan)
            .bind(after)
            .bind(now())
            .bind(i64::try_from(page).unwrap_or(1))
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db_error)?;
        let ids = rows
            .iter()
            .map(|row| parse_id(&row.try_get::<String, _>(0).map_err(db_error)?))
            .collect::<Result<Vec<_>>>()?;
        let next = if ids.len() == page {
            ids.last().map(|id| id.as_str().to_owned())
        } else {
            None
        };
        Ok(ScanPage { ids, next })
    }
}
