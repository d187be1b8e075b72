//! The shared conformance suite, each case on a fresh database file in its own temporary directory.

use std::sync::Arc;
use std::time::Duration;

use session_core::{
    Capabilities, ChangeSet, Data, Loaded, LockToken, Result, ScanPage, SessionId, Storage, Value,
    async_trait,
};
use session_sqlite::SqliteStore;
use tempfile::TempDir;

/// A store that owns its temporary directory: the directory (and the database in it) is deleted
/// when the case drops the store.
struct TempStore {
    store: SqliteStore,
    _dir: TempDir,
}

async fn new_store() -> Arc<dyn Storage> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("sessions.db"))
        .await
        .expect("open a fresh database");
    Arc::new(TempStore { store, _dir: dir })
}

session_conformance::suite!(new_store);

#[async_trait]
impl Storage for TempStore {
    fn name(&self) -> &'static str {
        self.store.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }
    async fn new(&self, ttl: Duration) -> Result<Option<SessionId>> {
        self.store.new(ttl).await
    }
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        self.store.get(id, key).await
    }
    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        self.store.get_map(id).await
    }
    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        self.store.get_size(id).await
    }
    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Duration) -> Result<()> {
        self.store.set(id, key, value, ttl).await
    }
    async fn set_map(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        self.store.set_map(id, data, ttl).await
    }
    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        self.store.remove(id, key).await
    }
    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.store.remove_all(id).await
    }
    async fn get_session(
        &self,
        id: &SessionId,
        ttl: Duration,
        cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        self.store.get_session(id, ttl, cached).await
    }
    async fn set_session(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        self.store.set_session(id, data, ttl).await
    }
    async fn update_ttl(&self, id: &SessionId, ttl: Duration) -> Result<()> {
        self.store.update_ttl(id, ttl).await
    }
    async fn apply(&self, id: &SessionId, changes: ChangeSet, ttl: Duration) -> Result<bool> {
        self.store.apply(id, changes, ttl).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        self.store.load(id).await
    }
    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Duration) -> Result<()> {
        self.store.index_add(owner, id, ttl).await
    }
    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        self.store.index_remove(id).await
    }
    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        self.store.index_sessions(owner).await
    }
    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        self.store.index_owner(id).await
    }
    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        self.store.try_lock(id, lease).await
    }
    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        self.store.unlock(id, token).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        self.store.purge_expired().await
    }
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        self.store.scan(cursor, limit).await
    }
}
