//! Shared helpers: a recording wrapper around the real memory store, so tests can assert how
//! many storage calls a request made (a wrapper that forwards to a real store, not a mock).
#![allow(dead_code, clippy::unwrap_used)]

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use session_core::driver::{BoxFuture, Call, Intercept, Intercepted, Op};
use session_core::{Capabilities, Config, Data, Loaded, Manager, Result, SessionId, Storage};
use session_memory::MemoryStore;

/// A real [`MemoryStore`] whose calls are recorded by name (a wrapper that forwards to a real
/// store, not a mock).
pub type Recording = Intercepted<MemoryStore, Calls>;

/// The hook of [`Recording`]: the names of the calls, and what the store pretends it cannot do.
pub struct Calls {
    calls: Mutex<Vec<&'static str>>,
    /// Pretend the driver cannot report deadlines (`load_with_deadline: false`).
    hide_deadline: bool,
    /// Pretend the driver has no owner index (capability only).
    hide_index: bool,
}

impl Intercept for Calls {
    fn intercept<'a, T: Send + 'static>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        if !matches!(call.op, Op::PurgeExpired | Op::Scan) {
            self.calls.lock().unwrap().push(call.op.as_str());
        }
        if !(self.hide_deadline && call.op == Op::Load) {
            return run;
        }
        Box::pin(async move {
            let mut out = run.await;
            if let Ok(loaded) = out.as_mut() {
                let loaded: &mut dyn Any = loaded;
                if let Some(Some(l)) = loaded.downcast_mut::<Option<Loaded>>() {
                    l.expires_at = None;
                }
            }
            out
        })
    }

    fn capabilities(&self, mut c: Capabilities) -> Capabilities {
        if self.hide_deadline {
            c.load_with_deadline = false;
        }
        if self.hide_index {
            c.owner_index = false;
        }
        c
    }
}

/// A recording store; `hide_deadline` makes it report no deadlines, `hide_index` no owner index.
pub fn recording(hide_deadline: bool, hide_index: bool) -> Arc<Recording> {
    let calls = Calls {
        calls: Mutex::new(Vec::new()),
        hide_deadline,
        hide_index,
    };
    Arc::new(Intercepted::new(MemoryStore::new(), calls))
}

/// What the tests ask of a [`Recording`].
pub trait Recorded {
    /// The calls recorded since the last `take`.
    fn take(&self) -> Vec<&'static str>;
    /// The data stored for `id`, straight from the store (reserved keys included).
    async fn raw(&self, id: &SessionId) -> Data;
    /// The deadline stored for `id`, straight from the store.
    async fn deadline(&self, id: &SessionId) -> Option<std::time::SystemTime>;
}

impl Recorded for Recording {
    fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.hook().calls.lock().unwrap())
    }

    async fn raw(&self, id: &SessionId) -> Data {
        self.inner().get_map(id).await.unwrap()
    }

    async fn deadline(&self, id: &SessionId) -> Option<std::time::SystemTime> {
        self.inner()
            .load(id)
            .await
            .unwrap()
            .and_then(|l| l.expires_at)
    }
}

/// A manager on a fresh recording store.
pub fn setup(config: Config) -> (Manager, Arc<Recording>) {
    let store = recording(false, false);
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
