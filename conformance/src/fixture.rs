//! A store under test together with what it needs alive.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use session_core::Storage;

/// A store for one conformance case, with the guards it owns: a temp dir, a database handle, a
/// private server. The guards live until the case and its teardown have finished, then drop
/// (in the order they were added), so a driver's test needs no wrapper around its store just to
/// keep a `TempDir` alive.
///
/// A constructor given to [`suite!`](crate::suite) or [`run_all`](crate::run_all) returns either
/// an `Arc<dyn Storage>` or a `Fixture`.
///
/// ```
/// use std::sync::Arc;
/// use session_conformance::Fixture;
///
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
/// # fn open_store_in(_: &std::path::Path) -> Arc<dyn session_core::Storage> { Arc::new(MyStore) }
/// async fn new_store() -> Fixture {
///     let dir = std::env::temp_dir().join("my-driver-case"); // a `tempfile::TempDir` in a real test
///     let store = open_store_in(&dir);
///     Fixture::new(store).guard(dir)
/// }
/// session_conformance::suite!(new_store);
/// # fn main() {}
/// ```
pub struct Fixture {
    store: Arc<dyn Storage>,
    guards: Vec<Box<dyn Any + Send + Sync>>,
}

impl Fixture {
    /// A fixture of `store` alone.
    pub fn new(store: Arc<dyn Storage>) -> Self {
        Fixture {
            store,
            guards: Vec::new(),
        }
    }

    /// Keeps `guard` alive as long as the fixture (until the case's teardown has run).
    pub fn guard(mut self, guard: impl Send + Sync + 'static) -> Self {
        self.guards.push(Box::new(guard));
        self
    }

    /// The store (a clone of the `Arc`).
    pub fn store(&self) -> Arc<dyn Storage> {
        Arc::clone(&self.store)
    }

    /// `run`, keeping this fixture (and its guards) alive until it finishes.
    pub(crate) async fn keep_during<F: Future>(self, run: F) -> F::Output {
        let out = run.await;
        drop(self);
        out
    }
}

impl From<Arc<dyn Storage>> for Fixture {
    fn from(store: Arc<dyn Storage>) -> Self {
        Fixture::new(store)
    }
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("store", &self.store.name())
            .field("guards", &self.guards.len())
            .finish()
    }
}
