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
use crate::pool::{Pool, Role};
use crate::schema;
use crate::statements::{self, Sql};

/// A session store in one SQLite database file (WAL mode), shared safely by any number of
/// threads and processes.
///
/// Each store runs one writer thread and [`readers`](SqliteStoreBuilder::readers) reader
/// threads, each owning its own connection; async calls hand their work to those threads and
/// await the reply, so no SQLite call blocks an async worker. Cloning is cheap and shares the
/// threads; they stop when the last clone is dropped.
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
    /// [`SqliteStoreBuilder`]: tables `sessions`, `sessions_values`, `sessions_owners`,
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

    /// A builder for the options (reader threads, busy timeout, synchronous mode, statement
    /// cache); finish it with [`SqliteStoreBuilder::open`].
    pub fn builder() -> SqliteStoreBuilder {
        SqliteStoreBuilder::default()
    }

    /// Checks the table name, renders the statements, and starts the connection threads on
    /// `path` (the writer first, which migrates the schema).
    pub(crate) async fn start(path: &Path, options: SqliteStoreBuilder) -> Result<SqliteStore> {
        // Before anything touches the file.
        let tables = schema::tables(&options.table)?;
        let sql = Arc::new(Sql::new(&tables));
        let table = Arc::from(tables.base());
        let readers = options.readers;
        let pool = Pool::start(path, readers, sql, move |path, role| {
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
            .run(Role::Reader, |conn, sql| {
                conn.query_row(&sql.schema_version, [], |r| r.get(0))
                    .map_err(db_error)
            })
            .await
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection, &Sql) -> Result<T> + Send + 'static,
    {
        self.pool
            .run(Role::Reader, move |conn, sql| f(conn, sql))
            .await
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection, &Sql) -> Result<T> + Send + 'static,
    {
        self.pool.run(Role::Writer, f).await
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
        let loaded = self.read(move |c, q| statements::load(c, q, &id)).await?;
        Ok(loaded.map(|(data, deadline)| Loaded {
            data: data.into(),
            expires_at: Some(check::from_unix_millis(
                u64::try_from(deadline).unwrap_or(0),
            )),
        }))
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        let id = owned(id);
        self.write(move |c, q| statements::apply(c, q, &id, changes, expiry))
            .await
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        let id = owned(id);
        self.write(move |c, q| statements::remove_all(c, q, &id))
            .await
    }

    /// Saves loading the whole session: one row, by primary key.
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        let (id, key) = (owned(id), key.to_owned());
        self.read(move |c, q| statements::get(c, q, &id, &key))
            .await
    }

    /// Saves reading every value: a `count(*)` of the session's rows.
    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        let id = owned(id);
        self.read(move |c, q| statements::size(c, q, &id)).await
    }

    async fn index_add(&self, owner: &str, id: &SessionId, _ttl: Ttl) -> Result<()> {
        // `ttl` is not needed: a binding lives exactly as long as its session.
        let (owner, id) = (owner.to_owned(), owned(id));
        self.write(move |c, q| statements::bind_owner(c, q, &owner, &id))
            .await
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let id = owned(id);
        self.write(move |c, q| statements::unbind_owner(c, q, &id))
            .await
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        let who = owner.to_owned();
        let (live, dead) = self
            .read(move |c, q| statements::owner_sessions(c, q, &who))
            .await?;
        if dead {
            let owner = owner.to_owned();
            self.write(move |c, q| statements::prune_owner(c, q, &owner))
                .await?;
        }
        Ok(live)
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let id = owned(id);
        self.read(move |c, q| statements::owner_of(c, q, &id)).await
    }

    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        let id = owned(id);
        self.write(move |c, q| statements::try_lock(c, q, &id, lease))
            .await
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let (id, token) = (owned(id), token.as_str().to_owned());
        self.write(move |c, q| statements::unlock(c, q, &id, &token))
            .await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.write(statements::purge).await
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
            .read(move |c, q| statements::scan(c, q, &after, page))
            .await?;
        let next = if ids.len() == page {
            ids.last().map(|id| id.as_str().to_owned())
        } else {
            None
        };
        Ok(ScanPage { ids, next })
    }
}
