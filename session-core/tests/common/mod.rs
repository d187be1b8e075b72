//! Shared helpers: a recording wrapper around the real memory store, so tests can assert how
//! many storage calls a request made (a wrapper that forwards to a real store, not a mock).
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use session_core::{
    Capabilities, ChangeSet, Config, Data, Loaded, LockToken, Manager, Result, ScanPage, SessionId,
    Storage, Value, async_trait,
};
use session_memory::MemoryStore;

/// Forwards every call to a real [`MemoryStore`] and records the method names.
pub struct Recording {
    inner: MemoryStore,
    calls: Mutex<Vec<&'static str>>,
    /// Pretend the driver cannot report deadlines (`load_with_deadline: false`).
    hide_deadline: bool,
    /// Pretend the driver has no owner index (capability only).
    pub hide_index: bool,
}

impl Recording {
    /// A recording store without the owner-index capability.
    pub fn without_index() -> Arc<Self> {
        Arc::new(Recording {
            inner: MemoryStore::new(),
            calls: Mutex::new(Vec::new()),
            hide_deadline: false,
            hide_index: true,
        })
    }

    pub fn new(hide_deadline: bool) -> Arc<Self> {
        Arc::new(Recording {
            inner: MemoryStore::new(),
            calls: Mutex::new(Vec::new()),
            hide_deadline,
            hide_index: false,
        })
    }

    fn rec(&self, name: &'static str) {
        self.calls.lock().unwrap().push(name);
    }

    /// The calls recorded since the last `take`.
    pub fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    /// The data stored for `id`, straight from the store (reserved keys included).
    pub async fn raw(&self, id: &SessionId) -> Data {
        self.inner.get_map(id).await.unwrap()
    }

    pub async fn deadline(&self, id: &SessionId) -> Option<std::time::SystemTime> {
        self.inner
            .load(id)
            .await
            .unwrap()
            .and_then(|l| l.expires_at)
    }
}

#[async_trait]
impl Storage for Recording {
    fn name(&self) -> &'static str {
        "recording-memory"
    }
    fn capabilities(&self) -> Capabilities {
        let mut c = self.inner.capabilities();
        if self.hide_deadline {
            c.load_with_deadline = false;
        }
        if self.hide_index {
            c.owner_index = false;
        }
        c
    }
    async fn new(&self, ttl: Duration) -> Result<Option<SessionId>> {
        self.rec("new");
        self.inner.new(ttl).await
    }
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        self.rec("get");
        self.inner.get(id, key).await
    }
    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        self.rec("get_map");
        self.inner.get_map(id).await
    }
    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        self.rec("get_size");
        self.inner.get_size(id).await
    }
    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Duration) -> Result<()> {
        self.rec("set");
        self.inner.set(id, key, value, ttl).await
    }
    async fn set_map(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        self.rec("set_map");
        self.inner.set_map(id, data, ttl).await
    }
    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        self.rec("remove");
        self.inner.remove(id, key).await
    }
    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.rec("remove_all");
        self.inner.remove_all(id).await
    }
    async fn get_session(
        &self,
        id: &SessionId,
        ttl: Duration,
        cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        self.rec("get_session");
        self.inner.get_session(id, ttl, cached).await
    }
    async fn set_session(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        self.rec("set_session");
        self.inner.set_session(id, data, ttl).await
    }
    async fn update_ttl(&self, id: &SessionId, ttl: Duration) -> Result<()> {
        self.rec("update_ttl");
        self.inner.update_ttl(id, ttl).await
    }
    async fn apply(&self, id: &SessionId, changes: ChangeSet, ttl: Duration) -> Result<bool> {
        self.rec("apply");
        self.inner.apply(id, changes, ttl).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        self.rec("load");
        let mut l = self.inner.load(id).await?;
        if self.hide_deadline {
            if let Some(l) = l.as_mut() {
                l.expires_at = None;
            }
        }
        Ok(l)
    }
    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Duration) -> Result<()> {
        self.rec("index_add");
        self.inner.index_add(owner, id, ttl).await
    }
    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        self.rec("index_remove");
        self.inner.index_remove(id).await
    }
    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        self.rec("index_sessions");
        self.inner.index_sessions(owner).await
    }
    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        self.rec("index_owner");
        self.inner.index_owner(id).await
    }
    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        self.rec("try_lock");
        self.inner.try_lock(id, lease).await
    }
    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        self.rec("unlock");
        self.inner.unlock(id, token).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        self.inner.purge_expired().await
    }
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        self.inner.scan(cursor, limit).await
    }
}

/// A manager on a fresh recording store.
pub fn setup(config: Config) -> (Manager, Arc<Recording>) {
    let store = Recording::new(false);
    let manager = Manager::new(store.clone(), config).expect("valid config");
    (manager, store)
}

/// A manager on a plain fresh memory store.
pub fn memory(config: Config) -> Manager {
    Manager::new(Arc::new(MemoryStore::new()), config).expect("valid config")
}

/// Creates a stored session with `key = value` and returns its id.
pub async fn stored_session(manager: &Manager, key: &str, value: u32) -> SessionId {
    let s = manager.load(None);
    s.set(key, &value).await.expect("set");
    let out = s.save().await.expect("save");
    out.cookie
        .id()
        .cloned()
        .expect("a new session sets a cookie")
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
