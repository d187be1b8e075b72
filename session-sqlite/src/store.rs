//! [`SqliteStore`] and its [`Driver`] implementation.

use std::path::Path;
use std::sync::Arc;

use session_core::driver::{
    Capabilities, ChangeSet, Driver, Error, Expiry, Loaded, LockToken, Result, ScanPage, SessionId,
    Ttl, Value, async_trait, check,
};

use crate::NAME;
use crate::builder::SqliteStoreBuilder;
use crate::error::db_error;
use crate::pool::Pool;
use crate::schema;
use crate::statements::{self, Sql};

/// A session store in one SQLite database file (WAL mode), shared safely by any number of
/// threads and processes.
///
/// Each store runs one writer thread, which owns the read-write connection and commits the
/// queued writes in groups (one transaction for every write waiting, each in its own savepoint;
/// every caller answered after that commit), and keeps
/// [`readers`](SqliteStoreBuilder::readers) read-only connections on which the callers' own
/// threads run the short reads inline (a primary-key lookup; scans and owner listings go to
/// tokio's blocking pool). See the crate docs, "Threads". Cloning is cheap and shares the
/// connections; the writer thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
    table: Arc<str>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.pool.path)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` with the default options (see
    /// [`SqliteStoreBuilder`]: tables `sessions`, `sessions_owners`,
    /// `sessions_locks`), switches it to WAL mode and creates or migrates the schema.
    ///
    /// Fails with [`Error::InvalidInput`] for a bad [table name](SqliteStoreBuilder::table)
    /// (before any file is opened), and with a backend error naming the file when it is not an
    /// SQLite database, cannot be opened, stays locked longer than the busy timeout, or has a
    /// schema version newer than this driver knows. `path` must be a file: `":memory:"` would give each connection its own empty
    /// database.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        Self::builder().open(path).await
    }

    /// A builder for the options (reader connections, busy timeout, synchronous mode, statement
    /// cache); finish it with [`SqliteStoreBuilder::open`].
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder::default()
    }

    /// Checks the table name, renders the statements, and starts the writer thread on `path`
    /// (which migrates the schema, then opens the reader connections).
    pub(crate) async fn start(path: &Path, options: SqliteStoreBuilder) -> Result<SqliteStore> {
        // Before anything touches the file.
        let tables = schema::tables(&options.table)?;
        let sql = Arc::new(Sql::new(&tables));
        let table = Arc::from(tables.base());
        let (readers, busy_timeout) = (options.readers, options.busy_timeout);
        let pool = Pool::start(path, readers, busy_timeout, sql, move |path, role| {
            schema::open(path, role, &options, &tables)
        })
        .await?;
        Ok(SqliteStore {
            pool: Arc::new(pool),
            table,
        })
    }

    /// The database file this store uses.
    pub fn path(&self) -> &Path {
        &self.pool.path
    }

    /// The base name of this store's tables ([`SqliteStoreBuilder::table`], default
    /// `sessions`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The schema version of this store's tables: `PRAGMA user_version` for the default base
    /// `sessions`, the `{base}_schema_version` table for any other. Equal to
    /// [`SCHEMA_VERSION`](crate::SCHEMA_VERSION) once opened.
    pub async fn schema_version(&self) -> Result<i64> {
        self.pool
            .read_blocking(|conn, sql| {
                conn.query_row(&sql.schema_version, [], |r| r.get(0))
                    .map_err(db_error)
            })
            .await
    }
}

fn owned(id: &SessionId) -> String {
    id.as_str().to_owned()
}

#[async_trait]
impl Driver for SqliteStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        let id = owned(id);
        let loaded = self
            .pool
            .read(move |c, q| statements::load(c, q, &id))
            .await?;
        Ok(loaded.map(|(data, deadline)| Loaded {
            data: data.into(),
            expires_at: Some(check::from_unix_millis(
                u64::try_from(deadline).unwrap_or(0),
            )),
        }))
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        let id = owned(id);
        self.pool
            .write(move |c, q| statements::apply(c, q, &id, changes, expiry))
            .await
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        let id = owned(id);
        self.pool
            .write(move |c, q| statements::remove_all(c, q, &id))
            .await
    }

    /// Saves loading the whole session: one row, by primary key.
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        let (id, key) = (owned(id), key.to_owned());
        self.pool
            .read(move |c, q| statements::get(c, q, &id, &key))
            .await
    }

    /// Saves reading every value: a `count(*)` of the session's rows.
    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        let id = owned(id);
        self.pool
            .read(move |c, q| statements::size(c, q, &id))
            .await
    }

    async fn index_add(&self, owner: &str, id: &SessionId, _ttl: Ttl) -> Result<()> {
        // `ttl` is not needed: a binding lives exactly as long as its session.
        let (owner, id) = (owner.to_owned(), owned(id));
        self.pool
            .write(move |c, q| statements::bind_owner(c, q, &owner, &id))
            .await
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let id = owned(id);
        self.pool
            .write(move |c, q| statements::unbind_owner(c, q, &id))
            .await
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        let who = owner.to_owned();
        let (live, dead) = self
            .pool
            .read_blocking(move |c, q| statements::owner_sessions(c, q, &who))
            .await?;
        if dead {
            let owner = owner.to_owned();
            self.pool
                .write(move |c, q| statements::prune_owner(c, q, &owner))
                .await?;
        }
        Ok(live)
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let id = owned(id);
        self.pool
            .read(move |c, q| statements::owner_of(c, q, &id))
            .await
    }

    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        let id = owned(id);
        self.pool
            .write(move |c, q| statements::try_lock(c, q, &id, lease))
            .await
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let (id, token) = (owned(id), token.as_str().to_owned());
        self.pool
            .write(move |c, q| statements::unlock(c, q, &id, &token))
            .await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.pool.alone(statements::purge).await
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let after = cursor.unwrap_or("").to_owned();
        if after.len() > SessionId::MAX_LEN {
            return Err(Error::InvalidInput(
                "scan cursor is not one this driver returned".into(),
            ));
        }
        let page = limit.clamp(1, statements::MAX_SCAN_PAGE);
        let ids = self
            .pool
            .read_blocking(move |c, q| statements::scan(c, q, &after, page))
            .await?;
        let next = if ids.len() == page {
            ids.last().map(|id| id.as_str().to_owned())
        } else {
            None
        };
        Ok(ScanPage { ids, next })
    }
}
