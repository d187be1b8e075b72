//! mqant's persistence hooks: where the context of a closed connection waits for its user's
//! next connection ([`ConnKeeper`]), and the built-in keeper on the registry's backend
//! ([`BackendKeeper`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_core::{Data, Result};

use crate::backend::Backend;
use crate::id::ConnId;

/// The context of a closed connection, kept for its user's next connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kept {
    /// The connection it was kept from.
    pub from: ConnId,
    /// Its context (every key and value).
    pub context: Data,
}

/// Where a closed connection's context is kept for its user's next connection: what mqant's
/// gate `StorageHandler` does, as a trait an application can implement (a database table, a
/// cache with its own expiry, an audit store). The hub calls it:
///
/// | hub call | keeper call | mqant |
/// |---|---|---|
/// | [`Hub::close`](crate::Hub::close) with `keep_for`, of a bound connection | [`store`](Self::store) | `Storage` |
/// | [`Hub::restore`](crate::Hub::restore) | [`take`](Self::take) | `Query` |
/// | [`Hub::forget_kept`](crate::Hub::forget_kept) | [`delete`](Self::delete) | `Delete` |
/// | [`Hub::heartbeat`](crate::Hub::heartbeat) of a bound connection | [`heartbeat`](Self::heartbeat) | `Heartbeat` |
///
/// One context is kept per user (the last one stored). The default keeper,
/// [`BackendKeeper`], keeps it in the registry's backend (in this process's memory, or in
/// Redis next to the registry); set another with
/// [`HubBuilder::keeper`](crate::HubBuilder::keeper).
#[async_trait]
pub trait ConnKeeper: Send + Sync + 'static {
    /// Keeps `kept` for `user` for `keep_for`, replacing what was kept for the user before.
    async fn store(&self, user: &str, kept: Kept, keep_for: Duration) -> Result<()>;

    /// Returns what is kept for `user` and forgets it, in one step: two restores racing for one
    /// kept context must not both get it. `None` when nothing is kept or its time has passed.
    async fn take(&self, user: &str) -> Result<Option<Kept>>;

    /// Forgets what is kept for `user` (nothing kept is fine).
    async fn delete(&self, user: &str) -> Result<()>;

    /// The user is active (a client heartbeat): keep what is kept for `keep_for` from now.
    /// Returns whether something is kept.
    async fn heartbeat(&self, user: &str, keep_for: Duration) -> Result<bool>;
}

/// The built-in [`ConnKeeper`]: the kept contexts live in the registry's own backend (the
/// default of every hub). On Redis, a hash of the context and the id it came from per user,
/// expiring on their own (`P:{P}:kept:<user>`, `P:{P}:keptfrom:<user>`); in memory, a map
/// pruned as it is written.
///
/// ```
/// use std::sync::Arc;
/// use session_connect::{BackendKeeper, ConnKeeper, MemoryBackend};
///
/// let keeper: Arc<dyn ConnKeeper> = Arc::new(BackendKeeper::new(Arc::new(MemoryBackend::new())));
/// # let _ = keeper;
/// ```
#[derive(Clone)]
pub struct BackendKeeper {
    backend: Arc<dyn Backend>,
}

impl BackendKeeper {
    /// The keeper on `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        BackendKeeper { backend }
    }
}

impl std::fmt::Debug for BackendKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendKeeper")
            .field("backend", &self.backend.name())
            .finish()
    }
}

#[async_trait]
impl ConnKeeper for BackendKeeper {
    async fn store(&self, user: &str, kept: Kept, keep_for: Duration) -> Result<()> {
        self.backend.keep(user, &kept, keep_for).await
    }

    async fn take(&self, user: &str) -> Result<Option<Kept>> {
        self.backend.take_kept(user).await
    }

    async fn delete(&self, user: &str) -> Result<()> {
        self.backend.forget_kept(user).await
    }

    async fn heartbeat(&self, user: &str, keep_for: Duration) -> Result<bool> {
        self.backend.keep_alive(user, keep_for).await
    }
}
