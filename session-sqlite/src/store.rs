//! [`SqliteStore`]: the [`Storage`] implementation.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use session_core::{
    Capabilities, ChangeSet, Data, Error, Loaded, LockToken, Result, ScanPage, SessionId, Storage,
    Value, async_trait, check,
};

use crate::BACKEND;
use crate::ops;
use crate::options::SqliteOptions;
use crate::pool::{Pool, Role};
use crate::schema;

/// A session store in one SQLite database file (WAL mode), shared safely by any number of
/// threads and processes.
///
/// Each store runs one writer thread and [`readers`](SqliteOptions::readers) reader threads, each
/// owning its own connection; async calls hand their work to those threads and await the reply,
/// so no SQLite call blocks an async worker. Cloning is cheap and shares the threads; they stop
/// when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.pool.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` with the default
    /// [`SqliteOptions`], switches it to WAL mode and creates or migrates the schema.
    ///
    /// Fails with a backend error naming the file when it is not an SQLite database, cannot be
    /// opened, stays locked longer than the busy timeout, or has a schema version newer than this
    /// driver knows. `path` must be a file: `":memory:"` would give each connection its own empty
    /// database.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        Self::open_with(path.as_ref(), SqliteOptions::default()).await
    }

    /// A builder for the options (reader threads, busy timeout, synchronous mode).
    pub fn builder() -> SqliteOptions {
        SqliteOptions::default()
    }

    pub(crate) async fn open_with(path: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        let readers = options.readers;
        let pool = Pool::start(path, readers, move |path, role| {
            schema::open(path, role, &options)
        })
        .await?;
        Ok(SqliteStore {
            pool: Arc::new(pool),
        })
    }

    /// The database file this store uses.
    pub fn path(&self) -> &Path {
        &self.pool.path
    }

    /// The schema version stored in the file (`PRAGMA user_version`); equal to
    /// [`SCHEMA_VERSION`](crate::SCHEMA_VERSION) once opened.
    pub async fn schema_version(&self) -> Result<i64> {
        self.pool
            .run(Role::Reader, |conn| {
                conn.query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(crate::db_error)
            })
            .await
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        self.pool.run(Role::Reader, move |conn| f(conn)).await
    }

    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        self.pool.run(Role::Writer, f).await
    }
}

fn owned(id: &SessionId) -> String {
    id.as_str().to_owned()
}

#[async_trait]
impl Storage for SqliteStore {
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
        let (id, key) = (owned(id), key.to_owned());
        self.read(move |c| ops::get(c, &id, &key)).await
    }

    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        let id = owned(id);
        let loaded = self.read(move |c| ops::load(c, &id)).await?;
        Ok(loaded.map(|(data, _)| data).unwrap_or_default())
    }

    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        let id = owned(id);
        self.read(move |c| ops::size(c, &id)).await
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
        let (id, key) = (owned(id), key.to_owned());
        self.write(move |c| ops::remove(c, &id, &key)).await
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        let id = owned(id);
        self.write(move |c| ops::remove_all(c, &id)).await
    }

    async fn get_session(
        &self,
        id: &SessionId,
        _ttl: Duration,
        _cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        let id = owned(id);
        let loaded = self.read(move |c| ops::load(c, &id)).await?;
        Ok(loaded.map(|(data, _)| data))
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
        let id = owned(id);
        self.write(move |c| ops::update_ttl(c, &id, ttl_ms)).await
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, ttl: Duration) -> Result<bool> {
        let ttl_ms = check::ttl_millis(ttl)?;
        for key in changes.remove.iter().chain(changes.set.keys()) {
            check::key(key)?;
        }
        let id = owned(id);
        self.write(move |c| ops::apply(c, &id, changes, ttl_ms))
            .await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        let id = owned(id);
        let loaded = self.read(move |c| ops::load(c, &id)).await?;
        Ok(loaded.map(|(data, deadline)| Loaded {
            data: data.into(),
            expires_at: Some(check::from_unix_millis(
                u64::try_from(deadline).unwrap_or(0),
            )),
        }))
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Duration) -> Result<()> {
        check::owner(owner)?;
        check::ttl_millis(ttl)?;
        let (owner, id) = (owner.to_owned(), owned(id));
        self.write(move |c| ops::bind_owner(c, &owner, &id)).await
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let id = owned(id);
        self.write(move |c| ops::unbind_owner(c, &id)).await
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        check::owner(owner)?;
        let who = owner.to_owned();
        let (live, dead) = self.read(move |c| ops::owner_sessions(c, &who)).await?;
        if dead {
            let owner = owner.to_owned();
            self.write(move |c| ops::prune_owner(c, &owner)).await?;
        }
        Ok(live)
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let id = owned(id);
        self.read(move |c| ops::owner_of(c, &id)).await
    }

    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        let lease_ms = check::ttl_millis(lease)?;
        let id = owned(id);
        self.write(move |c| ops::try_lock(c, &id, lease_ms)).await
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let (id, token) = (owned(id), token.as_str().to_owned());
        self.write(move |c| ops::unlock(c, &id, &token)).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.write(ops::purge).await
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let after = cursor.unwrap_or("").to_owned();
        if after.len() > SessionId::MAX_LEN {
            return Err(Error::InvalidInput(
                "scan cursor is not one this driver returned".into(),
            ));
        }
        let page = limit.clamp(1, ops::MAX_SCAN_PAGE);
        let ids = self.read(move |c| ops::scan(c, &after, page)).await?;
        let next = if ids.len() == page {
            ids.last().map(|id| id.as_str().to_owned())
        } else {
            None
        };
        Ok(ScanPage { ids, next })
    }
}
