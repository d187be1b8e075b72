//! [`CoreOnly`]: a driver with its GoFrame overrides taken away.

use session_core::driver::{
    Capabilities, ChangeSet, Driver, Expiry, Loaded, LockToken, Result, ScanPage, SessionId, Ttl,
    async_trait,
};

/// Wraps a driver and forwards only its required core (`load`, `apply`, `remove_all`) and its
/// capability methods, so every GoFrame method (`get`, `set`, `remove`, `update_ttl`, ...) runs
/// as the trait's provided default over the driver's own `load` and `apply`.
///
/// Run the suite on `CoreOnly(store)` beside the suite on `store` to check both halves of a
/// driver that overrides GoFrame methods: the core alone keeps the contract (including
/// `Expiry::Keep`, which only the default `remove` reaches), and each override answers as the
/// default it replaces.
///
/// ```
/// use std::sync::Arc;
/// use session_conformance::CoreOnly;
/// # use session_core::driver::{Capabilities, ChangeSet, Driver, Expiry, Loaded, Result, SessionId, async_trait};
/// # struct MyStore;
/// # #[async_trait]
/// # impl Driver for MyStore {
/// #     fn name(&self) -> &'static str { "mine" }
/// #     fn capabilities(&self) -> Capabilities { Capabilities::default() }
/// #     async fn load(&self, _: &SessionId) -> Result<Option<Loaded>> { Ok(None) }
/// #     async fn apply(&self, _: &SessionId, _: ChangeSet, _: Expiry) -> Result<bool> { Ok(false) }
/// #     async fn remove_all(&self, _: &SessionId) -> Result<()> { Ok(()) }
/// # }
///
/// async fn new_core_only_store() -> Arc<dyn session_core::Storage> {
///     Arc::new(CoreOnly(MyStore))
/// }
/// session_conformance::suite!(new_core_only_store);
/// # fn main() {}
/// ```
#[derive(Debug, Clone)]
pub struct CoreOnly<D>(pub D);

#[async_trait]
impl<D: Driver> Driver for CoreOnly<D> {
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
