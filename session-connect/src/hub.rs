//! The [`Hub`]: one node's view of the registry, its local sockets, heartbeat and inbox.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use session_core::{
    Error, Manager, Observation, Result, SessionEvent, SessionId, SessionObserver, async_trait,
    check,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::backend::{Backend, Channel, CtxWrite};
use crate::context::{Context, MAX_UPDATE_ATTEMPTS};
use crate::id::{ConnId, NodeId};
use crate::keeper::{BackendKeeper, ConnKeeper, Kept};
use crate::types::{
    BindMode, BindOutcome, ConnInfo, ConnMeta, ConnPage, ConnSnapshot, Delivery, Event, Outbox,
    Target, check_transport,
};

/// Decides whether a connection is a guest (mqant `JudgeGuest`). The default: a connection
/// bound to no user is a guest.
pub type GuestJudge = Arc<dyn Fn(&ConnSnapshot) -> bool + Send + Sync>;

/// Default heartbeat interval.
pub const DEFAULT_BEAT: Duration = Duration::from_secs(5);
/// Beats a node may miss before the others declare it dead.
pub const MISSED_BEATS: u32 = 3;

/// What travels between nodes (MessagePack).
#[derive(Serialize, Deserialize)]
enum Envelope {
    Deliver {
        from: NodeId,
        id: u64,
        ack: bool,
        /// `None`: every connection of the receiving node.
        to: Option<Vec<ConnId>>,
        payload: Bytes,
    },
    Ack {
        id: u64,
        reached: u64,
    },
    Kick {
        conns: Vec<ConnId>,
    },
    /// A change of the connections' HTTP session, for their owners' outboxes.
    Notify {
        conns: Vec<ConnId>,
        notice: Notice,
    },
}

/// A session change as it travels to the nodes holding the session's connections (ids as
/// text; checked again on arrival).
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Notice {
    Renewed { old: String, new: String },
    LoggedIn { session: String, user: String },
    LoggedOut { session: String, user: String },
    Ended { session: String },
}

impl Notice {
    /// The event a connection's owner receives; `None` for ids that do not parse (a foreign
    /// or corrupt payload).
    fn event(&self) -> Option<Event> {
        let sid = |s: &str| SessionId::parse(s).ok();
        Some(match self {
            Notice::Renewed { old, new } => Event::SessionRenewed {
                old: sid(old)?,
                new: sid(new)?,
            },
            Notice::LoggedIn { session, user } => Event::LoggedIn {
                session: sid(session)?,
                user: user.clone(),
            },
            Notice::LoggedOut { session, user } => Event::LoggedOut {
                session: sid(session)?,
                user: user.clone(),
            },
            Notice::Ended { session } => Event::SessionEnded {
                session: sid(session)?,
            },
        })
    }
}

/// Starts a [`Hub`]: made by [`Hub::builder`].
#[must_use]
pub struct HubBuilder {
    backend: Arc<dyn Backend>,
    host: String,
    port: u16,
    beat: Duration,
    manager: Option<Manager>,
    judge: Option<GuestJudge>,
    keeper: Option<Arc<dyn ConnKeeper>>,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("backend", &self.backend.name())
            .field("host", &self.host)
            .field("port", &self.port)
            .field("beat", &self.beat)
            .finish_non_exhaustive()
    }
}

impl HubBuilder {
    /// The address this server announces (part of its node id): default `127.0.0.1:0`. Two
    /// servers sharing a backend must announce different addresses.
    pub fn addr(mut self, host: impl Into<String>, port: u16) -> Self {
        self.host = host.into();
        self.port = port;
        self
    }

    /// The heartbeat interval (default [`DEFAULT_BEAT`]). A node that misses
    /// [`MISSED_BEATS`] beats is declared dead. Every node of a cluster should use the same.
    pub fn beat_interval(mut self, every: Duration) -> Self {
        self.beat = every;
        self
    }

    /// The session manager of this server's HTTP sessions: [`Hub::login`] and [`Hub::logout`]
    /// go through it ([`Manager::login_session`], [`Manager::logout_session`]), and the hub
    /// follows its [`SessionEvent`]s, so a regeneration, a login or logout, a destroy or a
    /// [`Manager::destroy_user`] made through this manager reaches the session's connections
    /// on every node (see "Sessions and connections" in the crate docs). Give each server
    /// process's hub the manager its HTTP layer uses.
    pub fn sessions(mut self, manager: Manager) -> Self {
        self.manager = Some(manager);
        self
    }

    /// Where closed connections' contexts are kept for their users' next connections
    /// (mqant's `StorageHandler`): default [`BackendKeeper`] on this hub's backend.
    pub fn keeper(mut self, keeper: Arc<dyn ConnKeeper>) -> Self {
        self.keeper = Some(keeper);
        self
    }

    /// Replaces the guest judge of [`Hub::is_guest`] (mqant `JudgeGuest`).
    pub fn guest_judge(
        mut self,
        judge: impl Fn(&ConnSnapshot) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.judge = Some(Arc::new(judge));
        self
    }

    /// Starts the node: takes a boot epoch, subscribes to its inbox, beats once, purges what
    /// earlier runs of the same address left behind (Dce `clear`), then beats and watches the
    /// other nodes in the background until the last clone of the [`Hub`] is dropped (or
    /// [`Hub::shutdown`]).
    pub async fn start(self) -> Result<Hub> {
        check::ttl_millis(self.beat)?;
        if self.beat < Duration::from_millis(10) {
            return Err(Error::InvalidInput(
                "beat interval must be at least 10 ms".into(),
            ));
        }
        let backend = self.backend;
        let addr = format!("{}:{}", self.host, self.port);
        let epoch = backend.boot(&addr).await?;
        let node = NodeId::new(&self.host, self.port, epoch)?;
        let inbox = backend.subscribe(&node).await?;
        let alive_for = self.beat * MISSED_BEATS;
        backend.beat(&node, alive_for).await?;
        for entry in backend.nodes().await? {
            if entry.node.addr() == node.addr() && entry.node.epoch() < epoch {
                backend.purge_node(&entry.node, false).await?;
            }
        }
        let keeper = self
            .keeper
            .unwrap_or_else(|| Arc::new(BackendKeeper::new(backend.clone())));
        let shared = Arc::new(Shared {
            keeper,
            backend,
            node,
            seq: AtomicU64::new(0),
            msg_seq: AtomicU64::new(0),
            local: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            beat: self.beat,
            manager: self.manager,
            judge: self
                .judge
                .unwrap_or_else(|| Arc::new(|s: &ConnSnapshot| s.info.user.is_none())),
            purged: AtomicU64::new(0),
            event_errors: AtomicU64::new(0),
        });
        let observation = shared.manager.as_ref().map(|m| {
            m.observe(Arc::new(Follower {
                shared: Arc::downgrade(&shared),
            }))
        });
        let tasks = vec![
            tokio::spawn(inbox_loop(shared.clone(), inbox)).abort_handle(),
            tokio::spawn(beat_loop(shared.clone())).abort_handle(),
        ];
        Ok(Hub {
            shared,
            _guard: Arc::new(Guard {
                tasks,
                _observation: observation,
            }),
        })
    }
}

/// Stops the hub's background tasks and its following of the manager's events when the last
/// clone of the hub goes.
struct Guard {
    tasks: Vec<AbortHandle>,
    _observation: Option<Observation>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Follows the session manager's events for the hub: moves, binds, unbinds and unlinks the
/// session's connections in the backend (shared by every node) and tells their owners.
struct Follower {
    shared: Weak<Shared>,
}

#[async_trait]
impl SessionObserver for Follower {
    async fn on_event(&self, event: &SessionEvent) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        if shared.follow(event).await.is_err() {
            // The session change is done; the registry could not follow it (backend away).
            shared.event_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Shared {
    backend: Arc<dyn Backend>,
    keeper: Arc<dyn ConnKeeper>,
    node: NodeId,
    seq: AtomicU64,
    msg_seq: AtomicU64,
    local: Mutex<HashMap<ConnId, Outbox>>,
    pending: Mutex<HashMap<u64, mpsc::UnboundedSender<u64>>>,
    beat: Duration,
    manager: Option<Manager>,
    judge: GuestJudge,
    purged: AtomicU64,
    event_errors: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these short locks cannot leave the maps half-changed, so a
    // poisoned lock is used as is.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn deliver_local(&self, conns: &[ConnId], payload: &Bytes) -> usize {
        let local = lock(&self.local);
        conns
            .iter()
            .filter_map(|c| local.get(c))
            .filter(|tx| tx.try_send(Event::Message(payload.clone())).is_ok())
            .count()
    }

    fn deliver_all_local(&self, payload: &Bytes) -> usize {
        lock(&self.local)
            .values()
            .filter(|tx| tx.try_send(Event::Message(payload.clone())).is_ok())
            .count()
    }

    fn kick_local(&self, conns: &[ConnId]) {
        let local = lock(&self.local);
        for c in conns {
            if let Some(tx) = local.get(c) {
                let _ = tx.try_send(Event::Kicked);
            }
        }
    }

    fn notify_local(&self, conns: &[ConnId], notice: &Notice) {
        let Some(event) = notice.event() else {
            return;
        };
        let local = lock(&self.local);
        for c in conns {
            if let Some(tx) = local.get(c) {
                let _ = tx.try_send(event.clone());
            }
        }
    }

    /// Tells the owners of `conns`, wherever they are, about `notice` (at most once, like
    /// every message).
    async fn notify(&self, conns: Vec<ConnId>, notice: Notice) -> Result<()> {
        for (node, conns) in group_by_node(conns) {
            if node == self.node {
                self.notify_local(&conns, &notice);
                continue;
            }
            let env = Envelope::Notify {
                conns,
                notice: notice.clone(),
            };
            self.backend
                .publish(Channel::Node(&node), encode(&env)?)
                .await?;
        }
        Ok(())
    }

    /// Makes the registry follow one session event.
    async fn follow(&self, event: &SessionEvent) -> Result<()> {
        match event {
            SessionEvent::Renewed { old, new } => {
                let conns = self.backend.relink_session(old, new).await?;
                let notice = Notice::Renewed {
                    old: old.as_str().into(),
                    new: new.as_str().into(),
                };
                self.notify(conns, notice).await
            }
            SessionEvent::LoggedIn { id, user } => {
                let mut bound = Vec::new();
                for conn in self.backend.session_conns(id).await? {
                    if let Some(out) = self.backend.bind(&conn, user, BindMode::Add).await?
                        && out.bound
                    {
                        bound.push(conn);
                    }
                }
                let notice = Notice::LoggedIn {
                    session: id.as_str().into(),
                    user: user.clone(),
                };
                self.notify(bound, notice).await
            }
            SessionEvent::LoggedOut { id, user } => {
                let mut unbound = Vec::new();
                for conn in self.backend.session_conns(id).await? {
                    if self.backend.unbind(&conn).await?.is_some() {
                        unbound.push(conn);
                    }
                }
                let notice = Notice::LoggedOut {
                    session: id.as_str().into(),
                    user: user.clone(),
                };
                self.notify(unbound, notice).await
            }
            SessionEvent::Destroyed { id, .. } => {
                let conns = self.backend.unlink_session(id).await?;
                let conns = conns.into_iter().map(|(c, _)| c).collect();
                let notice = Notice::Ended {
                    session: id.as_str().into(),
                };
                self.notify(conns, notice).await
            }
            // events added to session-core later are not the registry's business until it
            // learns them
            _ => Ok(()),
        }
    }

    async fn reap(&self) -> Result<()> {
        let lease = (self.beat * MISSED_BEATS * 3).max(Duration::from_millis(500));
        for entry in self.backend.nodes().await? {
            if entry.alive || entry.node == self.node {
                continue;
            }
            if self
                .backend
                .try_lease(&entry.node, &self.node, lease)
                .await?
            {
                let n = self.backend.purge_node(&entry.node, true).await?;
                self.purged.fetch_add(n, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

async fn inbox_loop(shared: Arc<Shared>, mut inbox: mpsc::UnboundedReceiver<Bytes>) {
    while let Some(bytes) = inbox.recv().await {
        // Foreign or corrupt payloads on our channels are ignored.
        let Ok(env) = rmp_serde::from_slice::<Envelope>(&bytes) else {
            continue;
        };
        match env {
            Envelope::Deliver {
                from,
                id,
                ack,
                to,
                payload,
            } => {
                if from == shared.node {
                    continue;
                }
                let reached = match &to {
                    Some(conns) => shared.deliver_local(conns, &payload),
                    None => shared.deliver_all_local(&payload),
                };
                if ack {
                    let reply = Envelope::Ack {
                        id,
                        reached: reached as u64,
                    };
                    if let Ok(bytes) = rmp_serde::to_vec(&reply) {
                        let backend = shared.backend.clone();
                        tokio::spawn(async move {
                            let _ = backend.publish(Channel::Node(&from), bytes.into()).await;
                        });
                    }
                }
            }
            Envelope::Ack { id, reached } => {
                if let Some(tx) = lock(&shared.pending).get(&id) {
                    let _ = tx.send(reached);
                }
            }
            Envelope::Kick { conns } => shared.kick_local(&conns),
            Envelope::Notify { conns, notice } => shared.notify_local(&conns, &notice),
        }
    }
}

async fn beat_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.beat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A failed beat or reap (backend away) is retried on the next tick.
        if shared
            .backend
            .beat(&shared.node, shared.beat * MISSED_BEATS)
            .await
            .is_ok()
        {
            let _ = shared.reap().await;
        }
    }
}

/// One node of the connection registry: registers this server's connections, binds them to
/// users and sessions, keeps their context, and delivers messages to connections wherever they
/// are. Cheap to clone; the background tasks stop when the last clone is dropped.
///
/// See the crate documentation for an example.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("node", &self.shared.node)
            .field("backend", &self.shared.backend.name())
            .finish_non_exhaustive()
    }
}

fn group_by_node(conns: Vec<ConnId>) -> BTreeMap<NodeId, Vec<ConnId>> {
    let mut by: BTreeMap<NodeId, Vec<ConnId>> = BTreeMap::new();
    for c in conns {
        by.entry(c.node()).or_default().push(c);
    }
    by
}

fn encode(env: &Envelope) -> Result<Bytes> {
    rmp_serde::to_vec(env)
        .map(Bytes::from)
        .map_err(Error::Encode)
}

impl Hub {
    /// A builder for a hub on `backend`.
    pub fn builder(backend: Arc<dyn Backend>) -> HubBuilder {
        HubBuilder {
            backend,
            host: "127.0.0.1".into(),
            port: 0,
            beat: DEFAULT_BEAT,
            manager: None,
            judge: None,
            keeper: None,
        }
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.shared.node
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.shared.backend
    }

    /// The session manager given to [`HubBuilder::sessions`], if any.
    pub fn sessions(&self) -> Option<&Manager> {
        self.shared.manager.as_ref()
    }

    /// How many session events this hub could not follow (the backend failed while it moved,
    /// bound, unbound or unlinked a session's connections, or told them). Each failure leaves
    /// that session's connections as they were; the session change itself is done.
    pub fn event_errors(&self) -> u64 {
        self.shared.event_errors.load(Ordering::Relaxed)
    }

    fn manager(&self) -> Result<&Manager> {
        self.shared.manager.as_ref().ok_or_else(|| {
            Error::InvalidInput(
                "no session manager: start the hub with HubBuilder::sessions".into(),
            )
        })
    }

    fn check_user(user: &str) -> Result<()> {
        check::owner(user)
    }

    // ----- connections --------------------------------------------------------------------

    /// Registers a new connection of this node (Dce `connect`) and returns its id. Messages
    /// for it arrive on `outbox`. With `session`, the connection is linked to that HTTP
    /// session; if the session is logged in (bound to a user in the owner index of the
    /// [`sessions`](HubBuilder::sessions) manager) the connection is bound to that user too.
    pub async fn open(
        &self,
        meta: ConnMeta,
        session: Option<&SessionId>,
        outbox: Outbox,
    ) -> Result<ConnId> {
        check_transport(&meta.transport)?;
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let id = ConnId::new(&self.shared.node, seq);
        let info = ConnInfo {
            id: id.clone(),
            ip: meta.ip,
            transport: meta.transport,
            opened_at_ms: check::now_millis(),
            session: session.cloned(),
            user: None,
        };
        lock(&self.shared.local).insert(id.clone(), outbox);
        if let Err(e) = self.shared.backend.open(&info).await {
            lock(&self.shared.local).remove(&id);
            return Err(e);
        }
        if let (Some(sid), Some(m)) = (session, &self.shared.manager)
            && m.store().capabilities().owner_index
            && let Some(user) = m.store().index_owner(sid).await?
        {
            self.shared.backend.bind(&id, &user, BindMode::Add).await?;
        }
        Ok(id)
    }

    /// Unregisters a connection (Dce `disconnect`): its record, context, binding and session
    /// link. With `keep_for` and a bound user, its context is first handed to the
    /// [`keeper`](HubBuilder::keeper) for that long, for [`restore`](Self::restore) by the
    /// user's next connection (imi `restore`, mqant `Storage`). Fine if the connection is
    /// already gone.
    pub async fn close(&self, conn: &ConnId, keep_for: Option<Duration>) -> Result<()> {
        if let Some(keep_for) = keep_for {
            check::ttl_millis(keep_for)?;
            let user = self.user_of(conn).await?;
            let context = self.shared.backend.ctx_read(conn).await?;
            if let (Some(user), Some((context, _))) = (user, context) {
                let kept = Kept {
                    from: conn.clone(),
                    context,
                };
                self.shared.keeper.store(&user, kept, keep_for).await?;
            }
        }
        lock(&self.shared.local).remove(conn);
        self.shared.backend.close(conn).await?;
        Ok(())
    }

    /// The registry's record of a connection; `None` if it is not registered.
    pub async fn info(&self, conn: &ConnId) -> Result<Option<ConnInfo>> {
        Ok(self
            .shared
            .backend
            .info(std::slice::from_ref(conn))
            .await?
            .pop()
            .flatten())
    }

    /// How many connections of this node are open (registered through this hub and not closed).
    pub fn local_count(&self) -> usize {
        lock(&self.shared.local).len()
    }

    /// The context data of a connection (on any node).
    pub fn context<'a>(&'a self, conn: &'a ConnId) -> Context<'a> {
        Context::new(self, conn)
    }

    /// The connection's whole state as a snapshot (mqant `Serializable`); `None` if it is not
    /// registered.
    pub async fn snapshot(&self, conn: &ConnId) -> Result<Option<ConnSnapshot>> {
        let Some(info) = self.info(conn).await? else {
            return Ok(None);
        };
        let context = self
            .shared
            .backend
            .ctx_read(conn)
            .await?
            .map(|(d, _)| d)
            .unwrap_or_default();
        Ok(Some(ConnSnapshot { info, context }))
    }

    /// Writes a snapshot's context into `conn`'s (mqant `ImportSettings`): its keys overwrite
    /// the current ones, other keys stay.
    pub async fn import(&self, conn: &ConnId, snapshot: &ConnSnapshot) -> Result<()> {
        self.context(conn).set_many(snapshot.context.clone()).await
    }

    /// Whether a connection is a guest, by the [guest judge](HubBuilder::guest_judge). A
    /// connection that is not registered is a guest.
    pub async fn is_guest(&self, conn: &ConnId) -> Result<bool> {
        Ok(match self.snapshot(conn).await? {
            Some(s) => (self.shared.judge)(&s),
            None => true,
        })
    }

    /// One page of every registered connection, on every node (Dce `listFdForm`). Start with
    /// `cursor = None` and pass each page's `next` until it is `None`. `limit` is a hint for the
    /// page size (the Redis backend may return more: `SSCAN` returns small sets whole). See [`conns`](Self::conns) for a cursor that does this.
    pub async fn list_page(&self, cursor: Option<&str>, limit: usize) -> Result<ConnPage> {
        self.shared.backend.list(cursor, limit).await
    }

    /// A cursor over every registered connection, `page_size` at a time.
    pub fn conns(&self, page_size: usize) -> ConnCursor<'_> {
        ConnCursor {
            hub: self,
            page_size: page_size.max(1),
            cursor: None,
            done: false,
        }
    }

    /// The nodes that are alive (beat recently), this one included.
    pub async fn nodes(&self) -> Result<Vec<NodeId>> {
        Ok(self
            .shared
            .backend
            .nodes()
            .await?
            .into_iter()
            .filter(|e| e.alive)
            .map(|e| e.node)
            .collect())
    }

    /// How many connections of dead nodes this hub has purged since it started.
    pub fn purged_count(&self) -> u64 {
        self.shared.purged.load(Ordering::Relaxed)
    }

    // ----- binding ------------------------------------------------------------------------

    /// Binds `conn` to `user` as `mode` says (moving it from any previous user) and sends
    /// [`Event::Kicked`] to connections an exclusive bind unbound. Fails with
    /// [`Error::InvalidInput`] if `conn` is not registered.
    pub async fn bind_with(
        &self,
        conn: &ConnId,
        user: &str,
        mode: BindMode,
    ) -> Result<BindOutcome> {
        Self::check_user(user)?;
        let out = self
            .shared
            .backend
            .bind(conn, user, mode)
            .await?
            .ok_or_else(|| Error::InvalidInput(format!("connection {conn} is not open")))?;
        if !out.kicked.is_empty() {
            for (node, conns) in group_by_node(out.kicked.clone()) {
                if node == self.shared.node {
                    self.shared.kick_local(&conns);
                } else {
                    let bytes = encode(&Envelope::Kick { conns })?;
                    self.shared
                        .backend
                        .publish(Channel::Node(&node), bytes)
                        .await?;
                }
            }
        }
        Ok(out)
    }

    /// Binds `conn` to `user`, next to the user's other connections (mqant `Bind`, imi `bind`).
    pub async fn bind(&self, conn: &ConnId, user: &str) -> Result<()> {
        self.bind_with(conn, user, BindMode::Add).await.map(|_| ())
    }

    /// Binds `conn` to `user` as the user's only connection; returns the connections it
    /// unbound, which are sent [`Event::Kicked`].
    pub async fn bind_exclusive(&self, conn: &ConnId, user: &str) -> Result<Vec<ConnId>> {
        Ok(self
            .bind_with(conn, user, BindMode::Exclusive)
            .await?
            .kicked)
    }

    /// Binds `conn` to `user` only if the user has no connection bound (imi `bindNx`); returns
    /// whether it did. Of concurrent calls for one user, exactly one wins.
    pub async fn bind_if_absent(&self, conn: &ConnId, user: &str) -> Result<bool> {
        Ok(self.bind_with(conn, user, BindMode::IfAbsent).await?.bound)
    }

    /// Unbinds `conn` from its user; returns that user.
    pub async fn unbind(&self, conn: &ConnId) -> Result<Option<String>> {
        self.shared.backend.unbind(conn).await
    }

    /// The connections bound to `user`, on every node (imi `getClientIdByFlag`).
    pub async fn conns_of(&self, user: &str) -> Result<Vec<ConnId>> {
        Ok(self.conns_of_many(&[user]).await?.pop().unwrap_or_default())
    }

    /// The connections of each user, in order (imi `getClientIdsByFlags`); one round trip.
    pub async fn conns_of_many(&self, users: &[&str]) -> Result<Vec<Vec<ConnId>>> {
        for u in users {
            Self::check_user(u)?;
        }
        self.shared.backend.conns_of(users).await
    }

    /// The user `conn` is bound to (imi `getFlagByClientId`).
    pub async fn user_of(&self, conn: &ConnId) -> Result<Option<String>> {
        Ok(self
            .users_of(std::slice::from_ref(conn))
            .await?
            .pop()
            .flatten())
    }

    /// The user of each connection, in order (imi `getFlagsByClientIds`); one round trip.
    pub async fn users_of(&self, conns: &[ConnId]) -> Result<Vec<Option<String>>> {
        self.shared.backend.users_of(conns).await
    }

    /// After a reconnect (imi `restore`, mqant `Query`): merges the context kept by the
    /// user's last [`close`](Self::close) with `keep_for` into `into`, which must be bound to
    /// `user` already. Keys `into` already has win. Returns the old connection's id, or `None`
    /// if nothing was kept or the window has passed. The kept context is used once (taken from
    /// the [`keeper`](HubBuilder::keeper)); if `into` closes during the merge, it is lost.
    pub async fn restore(&self, user: &str, into: &ConnId) -> Result<Option<ConnId>> {
        Self::check_user(user)?;
        if self.user_of(into).await?.as_deref() != Some(user) {
            return Err(Error::InvalidInput(format!(
                "connection {into} is not bound to that user; bind it before restoring"
            )));
        }
        let Some(kept) = self.shared.keeper.take(user).await? else {
            return Ok(None);
        };
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let Some((current, version)) = self.shared.backend.ctx_read(into).await? else {
                return Err(Error::InvalidInput(format!(
                    "connection {into} closed while its context was restored"
                )));
            };
            let set: session_core::Data = kept
                .context
                .iter()
                .filter(|(k, _)| !current.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let changes = session_core::ChangeSet {
                set,
                ..session_core::ChangeSet::default()
            };
            match self
                .shared
                .backend
                .ctx_apply(into, &changes, Some(version))
                .await?
            {
                CtxWrite::Done => return Ok(Some(kept.from)),
                CtxWrite::Conflict => continue,
                CtxWrite::NotOpen => {
                    return Err(Error::InvalidInput(format!(
                        "connection {into} closed while its context was restored"
                    )));
                }
            }
        }
        Err(Error::Locked(format!(
            "the context of {into} kept changing while it was restored"
        )))
    }

    /// A client heartbeat (mqant `Heartbeat`): the context kept for the user of `conn` lives
    /// `keep_for` from now, so a user who is active on one connection finds what another one
    /// left when it reconnects. Returns whether something is kept for the user (`false` for a
    /// guest's connection).
    pub async fn heartbeat(&self, conn: &ConnId, keep_for: Duration) -> Result<bool> {
        check::ttl_millis(keep_for)?;
        let Some(user) = self.user_of(conn).await? else {
            return Ok(false);
        };
        self.shared.keeper.heartbeat(&user, keep_for).await
    }

    /// Forgets the context kept for `user` (mqant `Delete`).
    pub async fn forget_kept(&self, user: &str) -> Result<()> {
        Self::check_user(user)?;
        self.shared.keeper.delete(user).await
    }

    // ----- sessions and users (Dce) --------------------------------------------------------

    /// Logs an HTTP session in as `user` by its id (Dce `login`) through the
    /// [`sessions`](HubBuilder::sessions) manager ([`Manager::login_session`]): the session
    /// records its owner (so it keeps it through regenerations), the owner index binds it (so
    /// [`Manager::destroy_user`] and [`Manager::sessions_of`] see it), and the connections
    /// opened with it are bound to `user` on every node and sent [`Event::LoggedIn`]. The id
    /// does not change. Returns how many of the session's connections are bound to `user`.
    /// Fails with [`Error::InvalidInput`] if no live session has that id.
    pub async fn login(&self, session: &SessionId, user: &str) -> Result<usize> {
        Self::check_user(user)?;
        if !self.manager()?.login_session(session, user).await? {
            return Err(Error::InvalidInput(format!(
                "no live session {}: it cannot be logged in",
                session.short()
            )));
        }
        let conns = self.shared.backend.session_conns(session).await?;
        let users = self.shared.backend.users_of(&conns).await?;
        Ok(users.iter().filter(|u| u.as_deref() == Some(user)).count())
    }

    /// Logs an HTTP session out by its id (Dce `logout`) through the
    /// [`sessions`](HubBuilder::sessions) manager ([`Manager::logout_session`]): the session
    /// forgets its owner (a later regeneration does not bring it back), the owner index drops
    /// it, and the connections opened with it are unbound on every node and sent
    /// [`Event::LoggedOut`]. The session itself lives on (destroy it with
    /// [`Session::destroy`](session_core::Session::destroy)). Returns how many connections were
    /// unbound.
    pub async fn logout(&self, session: &SessionId) -> Result<usize> {
        let m = self.manager()?;
        let conns = self.shared.backend.session_conns(session).await?;
        let bound = self
            .shared
            .backend
            .users_of(&conns)
            .await?
            .iter()
            .filter(|u| u.is_some())
            .count();
        if m.logout_session(session).await?.is_some() {
            return Ok(bound);
        }
        // no owner recorded: unbind what is bound to the session's connections all the same
        let mut n = 0;
        for conn in conns {
            n += usize::from(self.shared.backend.unbind(&conn).await?.is_some());
        }
        Ok(n)
    }

    /// The live sessions of `user` in the owner index (Dce `getMemberForm(mid, false)`): the
    /// same list [`Manager::destroy_user`] destroys.
    pub async fn sessions_of(&self, user: &str) -> Result<Vec<SessionId>> {
        Self::check_user(user)?;
        let mut ids = self.manager()?.store().index_sessions(user).await?;
        ids.sort();
        Ok(ids)
    }

    /// The connections opened with `session` (Dce `getSessionForm(sid, true)`).
    pub async fn connections_of_session(&self, session: &SessionId) -> Result<Vec<ConnId>> {
        self.shared.backend.session_conns(session).await
    }

    // ----- sending -------------------------------------------------------------------------

    /// Sends `message` to `to`'s connections: directly to those of this node, over the
    /// backend's bus to other nodes (one publish per node holding a target connection; one
    /// publish for [`Target::All`]). Returns without waiting for other nodes (mqant `SendNR`).
    ///
    /// Delivery is **at most once**: a node that is down or reconnecting, or an outbox that is
    /// full or closed, loses the message; nothing is retried or stored.
    pub async fn send(&self, to: Target<'_>, message: Bytes) -> Result<Delivery> {
        self.route(to, message, None).await
    }

    /// Like [`send`](Self::send), then waits up to `timeout` for every node published to
    /// to acknowledge, and reports how many did and how many connections they reached (mqant
    /// `Send`). Still at most once: a missing acknowledgement means "unknown", not "resent".
    pub async fn send_acked(
        &self,
        to: Target<'_>,
        message: Bytes,
        timeout: Duration,
    ) -> Result<Delivery> {
        self.route(to, message, Some(timeout)).await
    }

    async fn route(
        &self,
        to: Target<'_>,
        payload: Bytes,
        ack: Option<Duration>,
    ) -> Result<Delivery> {
        let sh = &self.shared;
        let id = sh.msg_seq.fetch_add(1, Ordering::Relaxed);
        let mut acks = None;
        if ack.is_some() {
            let (tx, rx) = mpsc::unbounded_channel();
            lock(&sh.pending).insert(id, tx);
            acks = Some(rx);
        }
        let result = self.publish(to, id, ack.is_some(), payload).await;
        let mut d = match result {
            Ok(d) => d,
            Err(e) => {
                lock(&sh.pending).remove(&id);
                return Err(e);
            }
        };
        if let (Some(timeout), Some(mut rx)) = (ack, acks) {
            let deadline = tokio::time::Instant::now() + timeout;
            while d.acked < d.nodes {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(reached)) => {
                        d.acked += 1;
                        d.remote += reached as usize;
                    }
                    _ => break,
                }
            }
            lock(&sh.pending).remove(&id);
        }
        Ok(d)
    }

    async fn publish(
        &self,
        to: Target<'_>,
        id: u64,
        ack: bool,
        payload: Bytes,
    ) -> Result<Delivery> {
        let sh = &self.shared;
        let mut d = Delivery::default();
        let conns = match to {
            Target::All => {
                d.local = sh.deliver_all_local(&payload);
                let env = Envelope::Deliver {
                    from: sh.node.clone(),
                    id,
                    ack,
                    to: None,
                    payload,
                };
                let n = sh.backend.publish(Channel::All, encode(&env)?).await?;
                // Every node hears the channel for all, this one too (it skips its own).
                d.nodes = n.saturating_sub(1);
                return Ok(d);
            }
            Target::Conn(c) => vec![c.clone()],
            Target::User(u) => {
                Self::check_user(u)?;
                sh.backend.conns_of(&[u]).await?.pop().unwrap_or_default()
            }
            Target::Session(s) => sh.backend.session_conns(s).await?,
        };
        for (node, conns) in group_by_node(conns) {
            if node == sh.node {
                d.local += sh.deliver_local(&conns, &payload);
                continue;
            }
            let env = Envelope::Deliver {
                from: sh.node.clone(),
                id,
                ack,
                to: Some(conns),
                payload: payload.clone(),
            };
            if sh
                .backend
                .publish(Channel::Node(&node), encode(&env)?)
                .await?
                > 0
            {
                d.nodes += 1;
            }
        }
        Ok(d)
    }

    /// Stops this node cleanly: stops beating, and unregisters all its connections and its
    /// liveness entry at once (rather than letting the others purge it three beats later).
    pub async fn shutdown(self) -> Result<()> {
        for t in &self._guard.tasks {
            t.abort();
        }
        lock(&self.shared.local).clear();
        self.shared
            .backend
            .purge_node(&self.shared.node, false)
            .await?;
        Ok(())
    }
}

/// A cursor over every registered connection (Dce `listFdForm`), a page at a time: made by
/// [`Hub::conns`].
#[derive(Debug)]
pub struct ConnCursor<'a> {
    hub: &'a Hub,
    page_size: usize,
    cursor: Option<String>,
    done: bool,
}

impl ConnCursor<'_> {
    /// The next page, or `None` when every connection has been listed. A page may be empty
    /// while more follow.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ConnInfo>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .hub
            .list_page(self.cursor.as_deref(), self.page_size)
            .await?;
        self.cursor = page.next;
        self.done = self.cursor.is_none();
        Ok(Some(page.conns))
    }
}
