//! [`MySqlStore`]: the [`Storage`] implementation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use session_core::{
    Capabilities, ChangeSet, Data, Error, Loaded, LockToken, Result, ScanPage, SessionId, Storage,
    Value, async_trait, check,
};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{Connection, Executor, MySqlConnection, Row};

use crate::options::MySqlOptions;
use crate::schema::{self, Sql};
use crate::{BACKEND, db_error, is_retryable};

/// Largest page a [`scan`](Storage::scan) returns, whatever `limit` asks for.
const MAX_SCAN_PAGE: usize = 10_000;

/// How many times a transaction that hit a deadlock is tried.
const ATTEMPTS: u32 = 5;

/// Most rows in one multi-row `INSERT` or `IN (...)` list.
const MAX_ROWS_PER_STATEMENT: usize = 500;

/// Most value bytes in one multi-row `INSERT` (a bigger single value goes alone), well under
/// the server's `max_allowed_packet` (16 MiB by default in MariaDB, 64 MiB in MySQL 8).
const MAX_BYTES_PER_STATEMENT: usize = 4 << 20;

/// A session store in MySQL or MariaDB (InnoDB) tables, shared by any number of tasks,
/// processes and machines.
///
/// Holds an sqlx connection pool whose connections run at `READ COMMITTED`; cloning is cheap and
/// shares the pool. Every read is one statement (one consistent snapshot); every write that
/// reads before it writes runs in one transaction that first locks the session's row.
#[derive(Clone)]
pub struct MySqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: MySqlPool,
    sql: Sql,
    table: String,
    purge_batch: i64,
}

impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlStore")
            .field("table", &self.inner.table)
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    millis(check::now_millis())
}

/// A u64 millisecond count as a BIGINT (saturating: far beyond any real deadline).
fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// A stored session id. `ascii_bin` columns come back flagged binary, so read them as bytes.
fn parse_id(id: Vec<u8>) -> Result<SessionId> {
    let id = utf8(id, "session id")?;
    SessionId::parse(&id)
        .map_err(|e| Error::corrupt(BACKEND, format!("stored session id is invalid: {e}")))
}

fn utf8(bytes: Vec<u8>, what: &str) -> Result<String> {
    String::from_utf8(bytes)
        .map_err(|_| Error::corrupt(BACKEND, format!("stored {what} is not UTF-8")))
}

/// Runs `f` again when it fails with a deadlock (a few times).
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

impl MySqlStore {
    /// Opens the store on the server at `url` with the default [`MySqlOptions`]: connects once
    /// (failing with a clear [`Error::Backend`] when the server is not reachable within the
    /// connect timeout), creates or migrates the tables, then starts the pool.
    ///
    /// A schema version newer than this driver knows is refused with a backend error.
    pub async fn connect(url: &str) -> Result<MySqlStore> {
        MySqlOptions::default().connect(url).await
    }

    /// A builder for the options (table name, pool size, timeouts).
    pub fn builder() -> MySqlOptions {
        MySqlOptions::default()
    }

    pub(crate) async fn open(
        options: MySqlOptions,
        connect: MySqlConnectOptions,
    ) -> Result<MySqlStore> {
        let sql = Sql::new(&options.table);
        let where_ = format!("{}:{}", connect.get_host(), connect.get_port());
        let first = tokio::time::timeout(
            options.connect_timeout,
            MySqlConnection::connect_with(&connect),
        )
        .await;
        let mut conn = match first {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                return Err(Error::backend(
                    BACKEND,
                    format!("cannot connect to MySQL/MariaDB at {where_}: {e}"),
                ));
            }
            Err(_) => {
                return Err(Error::backend(
                    BACKEND,
                    format!(
                        "cannot connect to MySQL/MariaDB at {where_}: no answer within {:?}",
                        options.connect_timeout
                    ),
                ));
            }
        };
        let migrated = schema::migrate(&mut conn, &sql).await;
        let _ = conn.close().await;
        migrated?;
        let pool = MySqlPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(options.idle_timeout)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // No gap locks: concurrent creators of one session cannot deadlock.
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await
                        .map(drop)
                })
            })
            .connect_lazy_with(connect);
        Ok(MySqlStore {
            inner: Arc::new(Inner {
                pool,
                sql,
                table: options.table,
                purge_batch: i64::from(options.purge_batch),
            }),
        })
    }

    /// The connection pool, for running your own statements next to the store's.
    pub fn pool(&self) -> &MySqlPool {
        &self.inner.pool
    }

    /// The base table name.
    pub fn table(&self) -> &str {
        &self.inner.table
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
            let key: Vec<u8> = row.try_get(1).map_err(db_error)?;
            let value: Vec<u8> = row.try_get(2).map_err(db_error)?;
            data.insert(utf8(key, "key")?, Value::from(value));
        }
        Ok(deadline.map(|d| (data, d)))
    }

    /// One attempt at a change set, in one transaction; `slide = false` keeps the deadline.
    async fn apply_once(
        &self,
        id: &str,
        changes: &ChangeSet,
        ttl_ms: u64,
        slide: bool,
    ) -> std::result::Result<bool, sqlx::Error> {
        let sql = &self.inner.sql;
        let mut tx = self.inner.pool.begin().await?;
        // Lock the session row first (every writer does, so they serialize on it).
        let mut stored: Option<i64> = sqlx::query_scalar(&sql.lock_row)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if stored.is_none() {
            if changes.only_if_exists {
                return Ok(false); // dropping `tx` rolls back
            }
            // A placeholder row (deadline -1) to lock; deleted again if no key ends up stored.
            sqlx::query(&sql.insert_placeholder)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            stored = sqlx::query_scalar(&sql.lock_row)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let now = now();
        let stored = stored.unwrap_or(-1);
        let fresh = stored == -1;
        let live = stored > now;
        if !live && changes.only_if_exists {
            return Ok(false);
        }
        if !fresh && !live {
            // Expired: starts empty, without its old keys or owner binding.
            sqlx::query(&sql.delete_values)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&sql.delete_owner)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        } else if changes.clear && live {
            sqlx::query(&sql.delete_values)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for chunk in changes.remove.chunks(MAX_ROWS_PER_STATEMENT) {
            let statement = format!(
                "DELETE FROM {} WHERE id = ? AND `key` IN ({})",
                sql.values,
                Sql::placeholders(chunk.len(), "?")
            );
            let mut query = sqlx::query(&statement).bind(id);
            for key in chunk {
                query = query.bind(key.as_bytes());
            }
            query.execute(&mut *tx).await?;
        }
        let entries: Vec<(&String, &Value)> = changes.set.iter().collect();
        let mut rest = &entries[..];
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
                sql.values,
                Sql::placeholders(chunk.len(), "(?, ?, ?)")
            );
            let mut query = sqlx::query(&statement);
            for (key, value) in chunk {
                query = query.bind(id).bind(key.as_bytes()).bind(value.as_bytes());
            }
            query.execute(&mut *tx).await?;
        }
        let has_keys = !changes.set.is_empty()
            || sqlx::query(&sql.any_value)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        if has_keys {
            if slide || !live {
                sqlx::query(&sql.set_deadline)
                    .bind(now.saturating_add(millis(ttl_ms)))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        } else {
            sqlx::query(&sql.delete_session)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if live {
                // A live session lost its last key: it is gone, with its owner binding.
                sqlx::query(&sql.delete_owner)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(has_keys)
    }

    async fn run_apply(
        &self,
        id: &SessionId,
        changes: &ChangeSet,
        ttl_ms: u64,
        slide: bool,
    ) -> Result<bool> {
        retry(|| self.apply_once(id.as_str(), changes, ttl_ms, slide)).await
    }

    async fn remove_all_once(&self, id: &str) -> std::result::Result<(), sqlx::Error> {
        let mut tx = self.inner.pool.begin().await?;
        // Session row first (values go by cascade), like every writer.
        sqlx::query(&self.inner.sql.delete_session)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&self.inner.sql.delete_owner)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// One purge batch in one transaction: the expired sessions it deleted.
    async fn purge_once(&self) -> std::result::Result<i64, sqlx::Error> {
        let sql = &self.inner.sql;
        let mut tx = self.inner.pool.begin().await?;
        let ids: Vec<Vec<u8>> = sqlx::query_scalar(&sql.purge_select)
            .bind(now())
            .bind(self.inner.purge_batch)
            .fetch_all(&mut *tx)
            .await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut deleted = 0u64;
        for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
            let list = Sql::placeholders(chunk.len(), "?");
            let unbind = format!("DELETE FROM {} WHERE id IN ({list})", sql.owners);
            let mut query = sqlx::query(&unbind);
            for id in chunk {
                query = query.bind(id.as_slice());
            }
            query.execute(&mut *tx).await?;
            let delete = format!("DELETE FROM {} WHERE id IN ({list})", sql.sessions);
            let mut query = sqlx::query(&delete);
            for id in chunk {
                query = query.bind(id.as_slice());
            }
            deleted += query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(i64::try_from(deleted).unwrap_or(i64::MAX))
    }
}

#[async_trait]
impl Storage for MySqlStore {
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
            .bind(key.as_bytes())
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
        retry(|| self.remove_all_once(id.as_str())).await
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
                .bind(now.saturating_add(millis(ttl_ms)))
                .bind(id.as_str())
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
                .bind(owner.as_bytes())
                .execute(&self.inner.pool)
        })
        .await
        .map(drop)
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        retry(|| {
            sqlx::query(&self.inner.sql.delete_owner)
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
            .bind(now)
            .bind(owner.as_bytes())
            .fetch_all(&self.inner.pool)
            .await
            .map_err(db_error)?;
        let mut live = Vec::with_capacity(rows.len());
        let mut dead = false;
        for row in rows {
            let id: Vec<u8> = row.try_get(0).map_err(db_error)?;
            let alive: i64 = row.try_get(1).map_err(db_error)?;
            if alive == 1 {
                live.push(parse_id(id)?);
            } else {
                dead = true;
            }
        }
        if dead {
            retry(|| {
                sqlx::query(&self.inner.sql.index_prune)
                    .bind(owner.as_bytes())
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
        match row {
            Some(row) => Ok(Some(utf8(
                row.try_get::<Vec<u8>, _>(0).map_err(db_error)?,
                "owner",
            )?)),
            None => Ok(None),
        }
    }

    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        let lease_ms = check::ttl_millis(lease)?;
        let token = LockToken::generate()?;
        let sql = &self.inner.sql;
        let taken = retry(|| async {
            let now = now();
            let deadline = now.saturating_add(millis(lease_ms));
            // Take over a lease that ran out, else insert a new one; a live lease matches neither.
            let over = sqlx::query(&sql.take_expired_lock)
                .bind(token.as_str().as_bytes())
                .bind(deadline)
                .bind(id.as_str())
                .bind(now)
                .execute(&self.inner.pool)
                .await?;
            if over.rows_affected() == 1 {
                return Ok(true);
            }
            let new = sqlx::query(&sql.insert_lock)
                .bind(id.as_str())
                .bind(token.as_str().as_bytes())
                .bind(deadline)
                .execute(&self.inner.pool)
                .await?;
            Ok(new.rows_affected() == 1)
        })
        .await?;
        Ok(taken.then_some(token))
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let done = retry(|| {
            sqlx::query(&self.inner.sql.unlock)
                .bind(id.as_str())
                .bind(token.as_str().as_bytes())
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
            let deleted = retry(|| self.purge_once()).await?;
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
        let id_chars = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if after.len() > SessionId::MAX_LEN || !after.chars().all(id_chars) {
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
            .map(|row| parse_id(row.try_get::<Vec<u8>, _>(0).map_err(db_error)?))
            .collect::<Result<Vec<_>>>()?;
        let next = if ids.len() == page {
            ids.last().map(|id| id.as_str().to_owned())
        } else {
            None
        };
        Ok(ScanPage { ids, next })
    }
}
