//! The trait a registry backend implements: shared state plus a message bus between nodes.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use session_core::{ChangeSet, Data, Result, SessionId, Value};
use tokio::sync::mpsc;

use crate::id::{ConnId, NodeId};
use crate::keeper::Kept;
use crate::types::{BindMode, BindOutcome, ConnInfo, ConnPage};

/// Where a node publishes a message.
#[derive(Clone, Copy, Debug)]
pub enum Channel<'a> {
    /// The inbox of one node.
    Node(&'a NodeId),
    /// Every node.
    All,
}

/// The result of a context write ([`Backend::ctx_apply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtxWrite {
    /// Written.
    Done,
    /// The context changed since the version the write expected; nothing was written.
    Conflict,
    /// The connection is not registered; nothing was written.
    NotOpen,
}

/// A node's entry in the liveness table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node.
    pub node: NodeId,
    /// Whether its last beat is recent enough (its deadline has not passed).
    pub alive: bool,
}

/// Shared registry state and the message bus between nodes.
///
/// Implemented by [`MemoryBackend`](crate::MemoryBackend) (one process, any number of
/// [`Hub`](crate::Hub)s sharing one `Arc`) and, with the `redis` feature,
/// [`RedisBackend`](crate::RedisBackend) (many processes). Every method is atomic on its own;
/// every id reaching it is already validated by the [`Hub`](crate::Hub). Users of the registry
/// call the [`Hub`](crate::Hub), not this trait.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name ("memory", "redis").
    fn name(&self) -> &'static str;

    /// A boot epoch for a new run of the server at `addr` (`host:port`): the current time in
    /// milliseconds, or one more than the last epoch handed out for `addr` if that is larger.
    async fn boot(&self, addr: &str) -> Result<u64>;

    /// Subscribes `node` to its own channel and to the channel for all; the receiver yields
    /// every payload published on either. Dropping the receiver ends the subscription.
    async fn subscribe(&self, node: &NodeId) -> Result<mpsc::UnboundedReceiver<Bytes>>;

    /// Publishes `payload`; returns how many subscribers received it.
    async fn publish(&self, to: Channel<'_>, payload: Bytes) -> Result<usize>;

    /// Records a beat of `node`: it counts as alive for `alive_for` from now. Returns `true` if
    /// the node was not in the table (first beat, or declared dead and purged meanwhile).
    async fn beat(&self, node: &NodeId, alive_for: Duration) -> Result<bool>;

    /// Every node in the liveness table.
    async fn nodes(&self) -> Result<Vec<NodeEntry>>;

    /// Takes the purge lease of `node` for `holder` if nobody holds it; returns whether it did.
    async fn try_lease(&self, node: &NodeId, holder: &NodeId, lease: Duration) -> Result<bool>;

    /// Deletes every connection of `node` (their contexts, bindings and session links) and the
    /// node's entry; returns how many connections it deleted. With `only_if_dead`, deletes
    /// nothing if the node beat again meanwhile.
    async fn purge_node(&self, node: &NodeId, only_if_dead: bool) -> Result<u64>;

    /// Registers a connection (`info.user` is ignored: connections open unbound).
    async fn open(&self, info: &ConnInfo) -> Result<()>;

    /// Unregisters a connection (its record, context, binding and session link). Returns
    /// whether it was registered.
    async fn close(&self, conn: &ConnId) -> Result<bool>;

    /// The records of `conns`, `None` for those not registered.
    async fn info(&self, conns: &[ConnId]) -> Result<Vec<Option<ConnInfo>>>;

    /// One context value.
    async fn ctx_get(&self, conn: &ConnId, key: &str) -> Result<Option<Value>>;

    /// The whole context and its version, `None` if the connection is not registered.
    async fn ctx_read(&self, conn: &ConnId) -> Result<Option<(Data, u64)>>;

    /// Applies `changes` (`clear`, `remove`, `set`; `only_if_exists` is ignored) to the context,
    /// if its version is still `expect` (any version when `None`), and bumps the version.
    async fn ctx_apply(
        &self,
        conn: &ConnId,
        changes: &ChangeSet,
        expect: Option<u64>,
    ) -> Result<CtxWrite>;

    /// Binds `conn` to `user` (moving it from its previous user). `None` if `conn` is not
    /// registered.
    async fn bind(&self, conn: &ConnId, user: &str, mode: BindMode) -> Result<Option<BindOutcome>>;

    /// Unbinds `conn`; returns the user it was bound to.
    async fn unbind(&self, conn: &ConnId) -> Result<Option<String>>;

    /// The connections bound to each user, in the order of `users`.
    async fn conns_of(&self, users: &[&str]) -> Result<Vec<Vec<ConnId>>>;

    /// The user of each connection, in the order of `conns`.
    async fn users_of(&self, conns: &[ConnId]) -> Result<Vec<Option<String>>>;

    /// Keeps `kept` for `user` for `keep_for`, replacing what was kept for the user
    /// ([`BackendKeeper`](crate::BackendKeeper)).
    async fn keep(&self, user: &str, kept: &Kept, keep_for: Duration) -> Result<()>;

    /// Returns and forgets what is kept for `user`, atomically; `None` if nothing is kept or
    /// its time has passed.
    async fn take_kept(&self, user: &str) -> Result<Option<Kept>>;

    /// Forgets what is kept for `user`.
    async fn forget_kept(&self, user: &str) -> Result<()>;

    /// Keeps what is kept for `user` for `keep_for` from now; returns whether something is
    /// kept.
    async fn keep_alive(&self, user: &str, keep_for: Duration) -> Result<bool>;

    /// The connections opened with `session`.
    async fn session_conns(&self, session: &SessionId) -> Result<Vec<ConnId>>;

    /// Moves every connection linked to session `old` to session `new` (their records and the
    /// session sets), for a session whose id changed; returns the connections moved.
    async fn relink_session(&self, old: &SessionId, new: &SessionId) -> Result<Vec<ConnId>>;

    /// Unlinks every connection from `session` (a session that ended) and unbinds each from its
    /// user; returns them with the user each was bound to.
    async fn unlink_session(&self, session: &SessionId) -> Result<Vec<(ConnId, Option<String>)>>;

    /// One page of every registered connection; start with `None`, pass each page's `next`.
    /// Every connection registered for the whole listing is returned at least once. `limit` is
    /// a hint, like `SCAN`'s `COUNT`: a page may hold more (or, while more follow, fewer).
    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<ConnPage>;
}
