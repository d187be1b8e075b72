//! The in-process backend.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use session_core::{ChangeSet, Data, Error, Result, SessionId, Value, check};
use tokio::sync::mpsc;

use crate::backend::{Backend, Channel, CtxWrite, NodeEntry};
use crate::id::{ConnId, NodeId};
use crate::keeper::Kept;
use crate::types::{BindMode, BindOutcome, ConnInfo, ConnPage};

/// The in-process backend: the registry in this process's memory, and delivery between the
/// [`Hub`](crate::Hub)s that share it through channels.
///
/// One machine, one process: share one `Arc<MemoryBackend>` between all the hubs of the process
/// (usually one). Several hubs on one backend behave like several nodes (tests use that). State is
/// lost when the process exits, so there is nothing to purge after a restart.
///
/// ```
/// use std::sync::Arc;
/// use session_connect::{Backend, MemoryBackend};
///
/// let backend: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
/// assert_eq!(backend.name(), "memory");
/// ```
#[derive(Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    conns: BTreeMap<ConnId, Rec>,
    users: HashMap<String, BTreeSet<ConnId>>,
    sessions: HashMap<SessionId, BTreeSet<ConnId>>,
    by_node: HashMap<NodeId, BTreeSet<ConnId>>,
    /// node -> deadline (ms)
    nodes: BTreeMap<NodeId, u64>,
    /// node -> (holder, until ms)
    leases: HashMap<NodeId, (NodeId, u64)>,
    /// user -> (old conn, context, until ms)
    kept: HashMap<String, (ConnId, Data, u64)>,
    boots: HashMap<String, u64>,
    subscribers: HashMap<NodeId, mpsc::UnboundedSender<Bytes>>,
}

struct Rec {
    info: ConnInfo,
    ctx: Data,
    ver: u64,
}

impl MemoryBackend {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::backend("memory", "registry mutex poisoned by a panic"))
    }
}

fn remove_from(map: &mut HashMap<String, BTreeSet<ConnId>>, key: &str, conn: &ConnId) {
    if let Some(set) = map.get_mut(key) {
        set.remove(conn);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

impl State {
    /// Deletes one connection everywhere; returns its record.
    fn drop_conn(&mut self, conn: &ConnId) -> Option<Rec> {
        let rec = self.conns.remove(conn)?;
        if let Some(user) = &rec.info.user {
            remove_from(&mut self.users, user, conn);
        }
        if let Some(sid) = &rec.info.session
            && let Some(set) = self.sessions.get_mut(sid)
        {
            set.remove(conn);
            if set.is_empty() {
                self.sessions.remove(sid);
            }
        }
        let node = conn.node();
        if let Some(set) = self.by_node.get_mut(&node) {
            set.remove(conn);
            if set.is_empty() {
                self.by_node.remove(&node);
            }
        }
        Some(rec)
    }

    fn unbind(&mut self, conn: &ConnId) -> Option<String> {
        let rec = self.conns.get_mut(conn)?;
        let old = rec.info.user.take()?;
        remove_from(&mut self.users, &old, conn);
        Some(old)
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn boot(&self, addr: &str) -> Result<u64> {
        let mut st = self.lock()?;
        let last = st.boots.get(addr).copied().unwrap_or(0);
        let epoch = check::now_millis().max(last + 1);
        st.boots.insert(addr.to_string(), epoch);
        Ok(epoch)
    }

    async fn subscribe(&self, node: &NodeId) -> Result<mpsc::UnboundedReceiver<Bytes>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock()?.subscribers.insert(node.clone(), tx);
        Ok(rx)
    }

    async fn publish(&self, to: Channel<'_>, payload: Bytes) -> Result<usize> {
        let mut st = self.lock()?;
        st.subscribers.retain(|_, tx| !tx.is_closed());
        Ok(match to {
            Channel::Node(node) => st
                .subscribers
                .get(node)
                .map(|tx| usize::from(tx.send(payload).is_ok()))
                .unwrap_or(0),
            Channel::All => st
                .subscribers
                .values()
                .filter(|tx| tx.send(payload.clone()).is_ok())
                .count(),
        })
    }

    async fn beat(&self, node: &NodeId, alive_for: Duration) -> Result<bool> {
        let ms = check::ttl_millis(alive_for)?;
        let mut st = self.lock()?;
        Ok(st
            .nodes
            .insert(node.clone(), check::now_millis() + ms)
            .is_none())
    }

    async fn nodes(&self) -> Result<Vec<NodeEntry>> {
        let now = check::now_millis();
        Ok(self
            .lock()?
            .nodes
            .iter()
            .map(|(node, deadline)| NodeEntry {
                node: node.clone(),
                alive: *deadline >= now,
            })
            .collect())
    }

    async fn try_lease(&self, node: &NodeId, holder: &NodeId, lease: Duration) -> Result<bool> {
        let ms = check::ttl_millis(lease)?;
        let now = check::now_millis();
        let mut st = self.lock()?;
        if let Some((_, until)) = st.leases.get(node)
            && *until > now
        {
            return Ok(false);
        }
        st.leases.insert(node.clone(), (holder.clone(), now + ms));
        Ok(true)
    }

    async fn purge_node(&self, node: &NodeId, only_if_dead: bool) -> Result<u64> {
        let mut st = self.lock()?;
        if only_if_dead
            && let Some(deadline) = st.nodes.get(node)
            && *deadline >= check::now_millis()
        {
            return Ok(0);
        }
        let conns: Vec<ConnId> = st
            .by_node
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let mut n = 0;
        for conn in &conns {
            if st.drop_conn(conn).is_some() {
                n += 1;
            }
        }
        st.nodes.remove(node);
        // The node's subscription stays: a node purged while alive keeps receiving messages
        // for its connections (as on Redis); a dead node's closed channel is pruned on publish.
        Ok(n)
    }

    async fn open(&self, info: &ConnInfo) -> Result<()> {
        let mut st = self.lock()?;
        let id = info.id.clone();
        st.drop_conn(&id);
        let mut info = info.clone();
        info.user = None;
        if let Some(sid) = &info.session {
            st.sessions
                .entry(sid.clone())
                .or_default()
                .insert(id.clone());
        }
        st.by_node.entry(id.node()).or_default().insert(id.clone());
        st.conns.insert(
            id,
            Rec {
                info,
                ctx: Data::new(),
                ver: 0,
            },
        );
        Ok(())
    }

    async fn close(&self, conn: &ConnId) -> Result<bool> {
        Ok(self.lock()?.drop_conn(conn).is_some())
    }

    async fn info(&self, conns: &[ConnId]) -> Result<Vec<Option<ConnInfo>>> {
        let st = self.lock()?;
        Ok(conns
            .iter()
            .map(|c| st.conns.get(c).map(|r| r.info.clone()))
            .collect())
    }

    async fn ctx_get(&self, conn: &ConnId, key: &str) -> Result<Option<Value>> {
        Ok(self
            .lock()?
            .conns
            .get(conn)
            .and_then(|r| r.ctx.get(key).cloned()))
    }

    async fn ctx_read(&self, conn: &ConnId) -> Result<Option<(Data, u64)>> {
        Ok(self.lock()?.conns.get(conn).map(|r| (r.ctx.clone(), r.ver)))
    }

    async fn ctx_apply(
        &self,
        conn: &ConnId,
        changes: &ChangeSet,
        expect: Option<u64>,
    ) -> Result<CtxWrite> {
        let mut st = self.lock()?;
        let Some(rec) = st.conns.get_mut(conn) else {
            return Ok(CtxWrite::NotOpen);
        };
        if expect.is_some_and(|v| v != rec.ver) {
            return Ok(CtxWrite::Conflict);
        }
        if changes.clear {
            rec.ctx.clear();
        }
        for k in &changes.remove {
            rec.ctx.remove(k);
        }
        for (k, v) in &changes.set {
            rec.ctx.insert(k.clone(), v.clone());
        }
        rec.ver += 1;
        Ok(CtxWrite::Done)
    }

    async fn bind(&self, conn: &ConnId, user: &str, mode: BindMode) -> Result<Option<BindOutcome>> {
        let mut st = self.lock()?;
        if !st.conns.contains_key(conn) {
            return Ok(None);
        }
        let mut out = BindOutcome {
            bound: true,
            kicked: Vec::new(),
        };
        match mode {
            BindMode::IfAbsent if st.users.get(user).is_some_and(|s| !s.is_empty()) => {
                out.bound = false;
                return Ok(Some(out));
            }
            BindMode::Exclusive => {
                let others: Vec<ConnId> = st
                    .users
                    .get(user)
                    .map(|s| s.iter().filter(|c| *c != conn).cloned().collect())
                    .unwrap_or_default();
                for other in &others {
                    st.unbind(other);
                }
                out.kicked = others;
            }
            _ => {}
        }
        let current = st.conns.get(conn).and_then(|r| r.info.user.clone());
        if current.as_deref() != Some(user) {
            st.unbind(conn);
            if let Some(rec) = st.conns.get_mut(conn) {
                rec.info.user = Some(user.to_string());
            }
            st.users
                .entry(user.to_string())
                .or_default()
                .insert(conn.clone());
        }
        Ok(Some(out))
    }

    async fn unbind(&self, conn: &ConnId) -> Result<Option<String>> {
        Ok(self.lock()?.unbind(conn))
    }

    async fn conns_of(&self, users: &[&str]) -> Result<Vec<Vec<ConnId>>> {
        let st = self.lock()?;
        Ok(users
            .iter()
            .map(|u| {
                st.users
                    .get(*u)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default()
            })
            .collect())
    }

    async fn users_of(&self, conns: &[ConnId]) -> Result<Vec<Option<String>>> {
        let st = self.lock()?;
        Ok(conns
            .iter()
            .map(|c| st.conns.get(c).and_then(|r| r.info.user.clone()))
            .collect())
    }

    async fn keep(&self, user: &str, kept: &Kept, keep_for: Duration) -> Result<()> {
        let ms = check::ttl_millis(keep_for)?;
        let mut st = self.lock()?;
        let now = check::now_millis();
        // Drop contexts whose window passed, so unrestored ones do not pile up.
        st.kept.retain(|_, (_, _, until)| *until > now);
        st.kept.insert(
            user.to_string(),
            (kept.from.clone(), kept.context.clone(), now + ms),
        );
        Ok(())
    }

    async fn take_kept(&self, user: &str) -> Result<Option<Kept>> {
        let Some((from, context, until)) = self.lock()?.kept.remove(user) else {
            return Ok(None);
        };
        Ok((until > check::now_millis()).then_some(Kept { from, context }))
    }

    async fn forget_kept(&self, user: &str) -> Result<()> {
        self.lock()?.kept.remove(user);
        Ok(())
    }

    async fn keep_alive(&self, user: &str, keep_for: Duration) -> Result<bool> {
        let ms = check::ttl_millis(keep_for)?;
        let mut st = self.lock()?;
        let now = check::now_millis();
        match st.kept.get_mut(user) {
            Some((_, _, until)) if *until > now => {
                *until = now + ms;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn relink_session(&self, old: &SessionId, new: &SessionId) -> Result<Vec<ConnId>> {
        let mut st = self.lock()?;
        let Some(set) = st.sessions.remove(old) else {
            return Ok(Vec::new());
        };
        for c in &set {
            if let Some(rec) = st.conns.get_mut(c) {
                rec.info.session = Some(new.clone());
            }
        }
        st.sessions
            .entry(new.clone())
            .or_default()
            .extend(set.iter().cloned());
        Ok(set.into_iter().collect())
    }

    async fn unlink_session(&self, session: &SessionId) -> Result<Vec<(ConnId, Option<String>)>> {
        let mut st = self.lock()?;
        let Some(set) = st.sessions.remove(session) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(set.len());
        for c in set {
            if let Some(rec) = st.conns.get_mut(&c) {
                rec.info.session = None;
            }
            let user = st.unbind(&c);
            out.push((c, user));
        }
        Ok(out)
    }

    async fn session_conns(&self, session: &SessionId) -> Result<Vec<ConnId>> {
        Ok(self
            .lock()?
            .sessions
            .get(session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<ConnPage> {
        let limit = limit.max(1);
        let st = self.lock()?;
        let start = match cursor {
            Some(c) => std::ops::Bound::Excluded(ConnId::parse(c)?),
            None => std::ops::Bound::Unbounded,
        };
        let conns: Vec<ConnInfo> = st
            .conns
            .range((start, std::ops::Bound::Unbounded))
            .take(limit)
            .map(|(_, r)| r.info.clone())
            .collect();
        let next = if conns.len() == limit {
            conns.last().map(|c| c.id.as_str().to_string())
        } else {
            None
        };
        Ok(ConnPage { conns, next })
    }
}
