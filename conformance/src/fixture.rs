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
    neighbour: Option<Arc<dyn Storage>>,
    guards: Vec<Box<dyn Any + Send + Sync>>,
}

tokio::task_local! {
    /// The neighbour of the store of the case running in this task, if its fixture has one.
    static NEIGHBOUR: Option<Arc<dyn Storage>>;
}

/// The neighbour store of the running case's fixture ([`Fixture::neighbour`]), if it has one.
pub(crate) fn current_neighbour() -> Option<Arc<dyn Storage>> {
    NEIGHBOUR.try_with(Clone::clone).ok().flatten()
}

impl Fixture {
    /// A fixture of `store` alone.
    pub fn new(store: Arc<dyn Storage>) -> Self {
        Fixture {
            store,
            neighbour: None,
            guards: Vec::new(),
        }
    }

    /// Gives the case a *neighbour*: a second store of the same driver on the same backend
    /// (another key prefix on the same Redis, another table in the same database, another
    /// directory beside this one), as isolated from the store under test as two applications
    /// sharing a backend would be.
    ///
    /// The scan cases fill the neighbour with a few thousand sessions before they scan the store
    /// under test, and check that the scan finds none of them and costs pages in proportion to the
    /// store's own sessions, not to everything the backend holds (a `SCAN MATCH` over a shared
    /// Redis fails that). A driver that declares `scan` must give its fixtures a neighbour; the
    /// scan cases fail without one. The teardown (of [`suite!`](crate::suite)) runs on the
    /// neighbour too.
    pub fn neighbour(mut self, neighbour: Arc<dyn Storage>) -> Self {
        self.neighbour = Some(neighbour);
        self
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

    /// The neighbour store, if the fixture has one ([`neighbour`](Self::neighbour)).
    pub fn neighbour_store(&self) -> Option<Arc<dyn Storage>> {
        self.neighbour.clone()
    }

    /// `run` with this fixture's neighbour visible to the case (the scan cases read it).
    pub(crate) fn scoped<F: Future>(&self, run: F) -> impl Future<Output = F::Output> + use<F> {
        NEIGHBOUR.scope(self.neighbour.clone(), run)
    }

    /// `run` (with the neighbour visible), keeping this fixture (and its guards) alive until it
    /// finishes.
    pub(crate) async fn keep_during<F: Future>(self, run: F) -> F::Output {
        let out = self.scoped(run).await;
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
            .field("neighbour", &self.neighbour.is_some())
            .field("guards", &self.guards.len())
            .finish()
    }
}
