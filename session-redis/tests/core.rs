//! The whole conformance suite against the driver's required core alone: a wrapper that forwards
//! only `load`, `apply`, `remove_all` and the capability methods, so every GoFrame method runs
//! as the provided default over them. This checks the apply script's `Expiry::Keep` (the
//! default `remove`) and that each override `RedisStore` keeps (`get`, `get_size`, `remove`,
//! `set_session`, `update_ttl`) answers as the default it replaces.

mod common;

use std::sync::Arc;

use session_core::driver::{
    Capabilities, ChangeSet, Driver, Expiry, Loaded, LockToken, Result, ScanPage, SessionId, Ttl,
    async_trait,
};
use session_redis::RedisStore;

/// A `RedisStore` without its native overrides of the GoFrame methods.
struct CoreOnly(RedisStore);

#[async_trait]
impl Driver for CoreOnly {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        self.0.load(id).await
    }
    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        self.0.apply(id, changes, expiry).await
    }
    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.0.remove_all(id).await
    }
    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Ttl) -> Result<()> {
        self.0.index_add(owner, id, ttl).await
    }
    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        self.0.index_remove(id).await
    }
    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        self.0.index_sessions(owner).await
    }
    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        self.0.index_owner(id).await
    }
    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        self.0.try_lock(id, lease).await
    }
    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        self.0.unlock(id, token).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        self.0.purge_expired().await
    }
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        self.0.scan(cursor, limit).await
    }
}

async fn new_store() -> Arc<dyn session_core::Storage> {
    let store = common::open_shared("core").await;
    common::register_as(store.clone(), Arc::new(CoreOnly(store)))
}

session_conformance::suite!(new_store, common::teardown);
