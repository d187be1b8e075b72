//! The Redis backend: registry in Redis hashes and sets, delivery over Redis pub/sub (sharded
//! pub/sub on a Redis Cluster).
//!
//! Every key of a registry shares one hash tag, its prefix: `P:{P}:...` (see [`RedisBackend`]'s
//! key helpers), so the whole registry sits in one Redis Cluster slot and every script stays
//! atomic there, including the keys the scripts derive in Lua from the base `P:{P}` they get as
//! an argument (Redis allows undeclared keys of the script's own slot). One server uses the same
//! layout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::Script;
use session_core::{ChangeSet, Data, Error, Result, SessionId, Value, check};
use session_redis::client::RedisClient;
use tokio::sync::mpsc;

use crate::backend::{Backend, Channel, CtxWrite, NodeEntry};
use crate::id::{ConnId, NodeId};
use crate::keeper::Kept;
use crate::redis_builder::RedisBackendBuilder;
use crate::types::{BindMode, BindOutcome, ConnInfo, ConnPage};

/// Name of the backend in errors and [`Backend::name`].
const NAME: &str = session_redis::NAME;

/// Connections deleted per script call when a node is purged (keeps each script short).
const PURGE_BATCH: usize = 200;

/// Lua: milliseconds of the server clock, so every node judges liveness on one clock.
const NOW: &str = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

/// Lua: deletes one connection everywhere but its node set. Returns whether it existed. `p` is
/// the key base `P:{P}`.
const DROP: &str = r#"
local function drop(p, id)
  local ck = p .. ':conn:' .. id
  if redis.call('EXISTS', ck) == 0 then return false end
  local f = redis.call('HMGET', ck, 'user', 'session')
  if f[1] then redis.call('SREM', p .. ':user:' .. f[1], id) end
  if f[2] then redis.call('SREM', p .. ':session:' .. f[2], id) end
  redis.call('DEL', ck, p .. ':ctx:' .. id)
  return true
end
"#;

static BOOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local e = math.max(now, last + 1)
redis.call('SET', KEYS[1], e)
return e"
    ))
});

static BEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}return redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])"
    ))
});

static NODES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}local out = {{tostring(now)}}
for _, v in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')) do table.insert(out, v) end
return out"
    ))
});

// KEYS: nodes zset, node's conn set. ARGV: base, node, only_if_dead, batch.
static PURGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{NOW}{DROP}
if ARGV[3] == '1' then
  local s = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if s and tonumber(s) >= now then return {{0, 0}} end
end
local n = 0
for _, id in ipairs(redis.call('SPOP', KEYS[2], tonumber(ARGV[4]))) do
  if drop(ARGV[1], id) then n = n + 1 end
end
local left = redis.call('SCARD', KEYS[2])
if left == 0 then redis.call('ZREM', KEYS[1], ARGV[2]) end
return {{n, left}}"
    ))
});

// KEYS: conn, node set, session set (or a dummy). ARGV: id, transport, opened, ip, session.
static OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('HSET', KEYS[1], 'ver', 0, 'transport', ARGV[2], 'opened', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'ip', ARGV[4]) end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'session', ARGV[5])
  redis.call('SADD', KEYS[3], ARGV[1])
end
redis.call('SADD', KEYS[2], ARGV[1])
return 1",
    )
});

// KEYS: node set. ARGV: base, id.
static CLOSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{DROP}
redis.call('SREM', KEYS[1], ARGV[2])
if drop(ARGV[1], ARGV[2]) then return 1 end
return 0"
    ))
});

// KEYS: conn, ctx. ARGV: expected version ('' = any), clear, n_remove, removes..., set pairs...
static CTX_APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local ver = redis.call('HGET', KEYS[1], 'ver')
if not ver then return -1 end
if ARGV[1] ~= '' and ARGV[1] ~= ver then return 0 end
if ARGV[2] == '1' then redis.call('DEL', KEYS[2]) end
local nrem = tonumber(ARGV[3])
for i = 4, 3 + nrem do redis.call('HDEL', KEYS[2], ARGV[i]) end
for i = 4 + nrem, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return 1",
    )
});

// KEYS: conn, user set. ARGV: base, id, user, mode (add | excl | nx).
static BIND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local p, id, user, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'-1'} end
if mode == 'nx' and redis.call('SCARD', KEYS[2]) > 0 then return {'0'} end
local out = {'1'}
if mode == 'excl' then
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if m ~= id then
      redis.call('HDEL', p .. ':conn:' .. m, 'user')
      redis.call('SREM', KEYS[2], m)
      table.insert(out, m)
    end
  end
end
local old = redis.call('HGET', KEYS[1], 'user')
if old and old ~= user then redis.call('SREM', p .. ':user:' .. old, id) end
redis.call('HSET', KEYS[1], 'user', user)
redis.call('SADD', KEYS[2], id)
return out",
    )
});

// KEYS: conn. ARGV: base, id.
static UNBIND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local old = redis.call('HGET', KEYS[1], 'user')
if old then
  redis.call('SREM', ARGV[1] .. ':user:' .. old, ARGV[2])
  redis.call('HDEL', KEYS[1], 'user')
end
return old",
    )
});

// KEYS: old session set, new session set. ARGV: base, new session id.
static RELINK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local ids = redis.call('SMEMBERS', KEYS[1])
for _, id in ipairs(ids) do
  local ck = ARGV[1] .. ':conn:' .. id
  if redis.call('EXISTS', ck) == 1 then
    redis.call('HSET', ck, 'session', ARGV[2])
    redis.call('SADD', KEYS[2], id)
  end
end
redis.call('DEL', KEYS[1])
return ids",
    )
});

// KEYS: session set. ARGV: base. Returns a flat list: id, user ('' for none), ...
static UNLINK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local ck = ARGV[1] .. ':conn:' .. id
  local user = redis.call('HGET', ck, 'user')
  if user then redis.call('SREM', ARGV[1] .. ':user:' .. user, id) end
  redis.call('HDEL', ck, 'user', 'session')
  table.insert(out, id)
  table.insert(out, user or '')
end
redis.call('DEL', KEYS[1])
return out",
    )
});

// KEYS: kept, keptfrom. ARGV: keep ms, from, then field/value pairs.
static KEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if #ARGV > 2 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1])
return 1",
    )
});

// KEYS: kept, keptfrom. Returns nil, or {from, field, value, ...}; forgets both.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local from = redis.call('GET', KEYS[2])
if not from then
  redis.call('DEL', KEYS[1])
  return false
end
local out = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
table.insert(out, 1, from)
return out",
    )
});

// KEYS: kept, keptfrom. ARGV: keep ms.
static KEEP_ALIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('PEXPIRE', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1",
    )
});

/// The Redis backend: the registry in Redis (one server, a proxy in front of one, or a Redis
/// Cluster), delivery between nodes over Redis pub/sub (sharded pub/sub on a cluster).
///
/// It connects through session-redis's [`RedisClient`]: the same URL forms, TLS, timeouts,
/// reconnection, error mapping, prefix rule and [`clear_prefix`](Self::clear_prefix) as the
/// session store. Each [`Hub`](crate::Hub) opens its own backend (one multiplexed connection for
/// commands, more for its subscription: one on a server, one per master holding its channels on
/// a cluster). The key layout and the channels are in the crate README.
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) client: RedisClient,
    pub(crate) prefix: String,
    /// `P:{P}`: what every key starts with; its hash tag, the prefix, keeps the registry in one
    /// cluster slot. Scripts get it to derive keys in Lua.
    pub(crate) base: String,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .field("cluster", &self.client.is_cluster())
            .field("operation_timeout", &self.client.operation_timeout())
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to the server at `url` (`redis://host:port/db`) with keys under `prefix` and the
    /// default timeouts: [`RedisBackend::builder`]`.prefix(prefix).open(url)`.
    ///
    /// The prefix may not hold braces, glob characters (`*?[]\`), whitespace or be empty: it
    /// is part of every key and of the `SCAN` pattern of [`clear_prefix`](Self::clear_prefix).
    /// Fails with [`Error::Backend`] if the server does not answer.
    pub async fn open(url: &str, prefix: &str) -> Result<Self> {
        Self::builder().prefix(prefix).open(url).await
    }

    /// Connects to a Redis Cluster through any of its `urls` with keys under `prefix` and the
    /// default timeouts: [`RedisBackend::builder`]`.prefix(prefix).open_cluster(urls)`.
    pub async fn open_cluster<I, S>(urls: I, prefix: &str) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::builder().prefix(prefix).open_cluster(urls).await
    }

    /// A backend on `client` under `prefix` (already checked).
    pub(crate) fn new(client: RedisClient, prefix: String) -> Self {
        RedisBackend {
            client,
            base: format!("{prefix}:{{{prefix}}}"),
            prefix,
        }
    }

    /// A builder for a backend with a custom prefix or timeouts.
    pub fn builder() -> RedisBackendBuilder {
        RedisBackendBuilder::default()
    }

    /// The key and channel prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the backend runs on a Redis Cluster ([`RedisBackendBuilder::open_cluster`]).
    pub fn is_cluster(&self) -> bool {
        self.client.is_cluster()
    }

    /// Deletes every key under the prefix (tests, resets); returns how many. This is
    /// session-redis's [`RedisClient::clear_prefix`]: `SCAN` and `DEL` in batches (on every
    /// master of a cluster), not atomic.
    pub async fn clear_prefix(&self) -> Result<u64> {
        self.client.clear_prefix(&self.prefix).await
    }

    /// `P:{P}`, the start of every key (handed to the scripts that derive keys in Lua).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }
    /// `P:{P}:conn:<conn>`: the connection's record.
    fn k_conn(&self, id: &ConnId) -> String {
        format!("{}:conn:{id}", self.base)
    }
    /// `P:{P}:ctx:<conn>`: the connection's context.
    fn k_ctx(&self, id: &ConnId) -> String {
        format!("{}:ctx:{id}", self.base)
    }
    /// `P:{P}:user:<user>`: the connections bound to the user.
    fn k_user(&self, user: &str) -> String {
        format!("{}:user:{user}", self.base)
    }
    /// `P:{P}:session:<sid>`: the connections opened with the session.
    fn k_session(&self, sid: &SessionId) -> String {
        format!("{}:session:{sid}", self.base)
    }
    /// `P:{P}:session:-`: a key no session uses (`open` without a session names it, untouched).
    fn k_no_session(&self) -> String {
        format!("{}:session:-", self.base)
    }
    /// `P:{P}:nodeconns:<node>`: the node's connections.
    fn k_node_conns(&self, node: &NodeId) -> String {
        format!("{}:nodeconns:{node}", self.base)
    }
    /// `P:{P}:nodes`: the liveness table.
    fn k_nodes(&self) -> String {
        format!("{}:nodes", self.base)
    }
    /// `P:{P}:lease:<node>`: the purge lease of a node.
    fn k_lease(&self, node: &NodeId) -> String {
        format!("{}:lease:{node}", self.base)
    }
    /// `P:{P}:kept:<user>`: the context kept for the user's `restore`.
    fn k_kept(&self, user: &str) -> String {
        format!("{}:kept:{user}", self.base)
    }
    /// `P:{P}:keptfrom:<user>`: the connection the kept context came from.
    fn k_kept_from(&self, user: &str) -> String {
        format!("{}:keptfrom:{user}", self.base)
    }
    /// `P:{P}:boot:<host>:<port>`: the last boot epoch of an address.
    fn k_boot(&self, addr: &str) -> String {
        format!("{}:boot:{addr}", self.base)
    }
    /// `P:node:{<node>}`: the node's inbox. Its own hash tag, the node id, spreads the inboxes
    /// (the bulk of the traffic) over a cluster's slots.
    fn ch_node(&self, node: &NodeId) -> String {
        format!("{}:node:{{{node}}}", self.prefix)
    }
    /// `P:{P}:all`: the channel for all, in the registry's slot.
    fn ch_all(&self) -> String {
        format!("{}:all", self.base)
    }

    fn parse_info(&self, id: &ConnId, mut h: HashMap<String, String>) -> Result<Option<ConnInfo>> {
        if h.is_empty() {
            return Ok(None);
        }
        let corrupt = |what: &str| Error::corrupt(NAME, format!("connection {id}: {what}"));
        let ip = match h.remove("ip") {
            Some(s) => Some(s.parse::<IpAddr>().map_err(|_| corrupt("bad ip"))?),
            None => None,
        };
        let session = match h.remove("session") {
            Some(s) => Some(SessionId::parse(&s).map_err(|_| corrupt("bad session id"))?),
            None => None,
        };
        let opened_at_ms = h
            .remove("opened")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("bad open time"))?;
        Ok(Some(ConnInfo {
            id: id.clone(),
            ip,
            transport: h.remove("transport").unwrap_or_default(),
            opened_at_ms,
            session,
            user: h.remove("user"),
        }))
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn boot(&self, addr: &str) -> Result<u64> {
        self.client.invoke(&BOOT.key(self.k_boot(addr))).await
    }

    async fn subscribe(&self, node: &NodeId) -> Result<mpsc::UnboundedReceiver<Bytes>> {
        let channels = [self.ch_node(node), self.ch_all()];
        let mut sub = self.client.subscribe(&channels).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let client = self.client.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    msg = sub.next_message() => match msg {
                        Some(msg) => {
                            let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
                            if tx.send(Bytes::from(payload)).is_err() {
                                return;
                            }
                        }
                        None => {
                            // A connection broke (or, on a cluster, a channel's slot moved):
                            // subscribe again, backing off, until the hub goes away. Messages
                            // published meanwhile are lost (at most once).
                            let mut delay = Duration::from_millis(50);
                            loop {
                                if tx.is_closed() {
                                    return;
                                }
                                tokio::time::sleep(delay).await;
                                if let Ok(again) = client.subscribe(&channels).await {
                                    sub = again;
                                    break;
                                }
                                delay = (delay * 2).min(Duration::from_secs(2));
                            }
                        }
                    }
                }
            }
        });
        Ok(rx)
    }

    async fn publish(&self, to: Channel<'_>, payload: Bytes) -> Result<usize> {
        let channel = match to {
            Channel::Node(n) => self.ch_node(n),
            Channel::All => self.ch_all(),
        };
        self.client.publish(&channel, &payload).await
    }

    async fn beat(&self, node: &NodeId, alive_for: Duration) -> Result<bool> {
        let ms = check::ttl_millis(alive_for)?;
        let added: i64 = self
            .client
            .invoke(BEAT.key(self.k_nodes()).arg(node.as_str()).arg(ms))
            .await?;
        Ok(added == 1)
    }

    async fn nodes(&self) -> Result<Vec<NodeEntry>> {
        let flat: Vec<String> = self.client.invoke(&NODES.key(self.k_nodes())).await?;
        let mut it = flat.into_iter();
        let now: u64 = it
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::corrupt(NAME, "server time missing"))?;
        let mut out = Vec::new();
        while let (Some(name), Some(score)) = (it.next(), it.next()) {
            let Ok(node) = NodeId::parse(&name) else {
                continue;
            };
            let deadline: f64 = score.parse().unwrap_or(0.0);
            out.push(NodeEntry {
                node,
                alive: deadline >= now as f64,
            });
        }
        Ok(out)
    }

    async fn try_lease(&self, node: &NodeId, holder: &NodeId, lease: Duration) -> Result<bool> {
        let ms = check::ttl_millis(lease)?;
        let set: Option<String> = self
            .client
            .query(
                redis::cmd("SET")
                    .arg(self.k_lease(node))
                    .arg(holder.as_str())
                    .arg("NX")
                    .arg("PX")
                    .arg(ms),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn purge_node(&self, node: &NodeId, only_if_dead: bool) -> Result<u64> {
        let mut total = 0;
        loop {
            let (n, left): (u64, u64) = self
                .client
                .invoke(
                    PURGE
                        .key(self.k_nodes())
                        .key(self.k_node_conns(node))
                        .arg(self.base())
                        .arg(node.as_str())
                        .arg(if only_if_dead { "1" } else { "0" })
                        .arg(PURGE_BATCH),
                )
                .await?;
            total += n;
            // `left` is 0 when done, and when the node beat again (the script then purges
            // nothing).
            if left == 0 {
                return Ok(total);
            }
        }
    }

    async fn open(&self, info: &ConnInfo) -> Result<()> {
        let session_key = match &info.session {
            Some(s) => self.k_session(s),
            None => self.k_no_session(),
        };
        let _: i64 = self
            .client
            .invoke(
                OPEN.key(self.k_conn(&info.id))
                    .key(self.k_node_conns(&info.id.node()))
                    .key(session_key)
                    .arg(info.id.as_str())
                    .arg(&info.transport)
                    .arg(info.opened_at_ms)
                    .arg(info.ip.map(|ip| ip.to_string()).unwrap_or_default())
                    .arg(
                        info.session
                            .as_ref()
                            .map(|s| s.as_str())
                            .unwrap_or_default(),
                    ),
            )
            .await?;
        Ok(())
    }

    async fn close(&self, conn: &ConnId) -> Result<bool> {
        let existed: i64 = self
            .client
            .invoke(
                CLOSE
                    .key(self.k_node_conns(&conn.node()))
                    .arg(self.base())
                    .arg(conn.as_str()),
            )
            .await?;
        Ok(existed == 1)
    }

    async fn info(&self, conns: &[ConnId]) -> Result<Vec<Option<ConnInfo>>> {
        if conns.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for c in conns {
            pipe.hgetall(self.k_conn(c));
        }
        let maps: Vec<HashMap<String, String>> = self.client.query_pipeline(&pipe).await?;
        conns
            .iter()
            .zip(maps)
            .map(|(id, h)| self.parse_info(id, h))
            .collect()
    }

    async fn ctx_get(&self, conn: &ConnId, key: &str) -> Result<Option<Value>> {
        let v: Option<Vec<u8>> = self
            .client
            .query(redis::cmd("HGET").arg(self.k_ctx(conn)).arg(key))
            .await?;
        Ok(v.map(Value::from))
    }

    async fn ctx_read(&self, conn: &ConnId) -> Result<Option<(Data, u64)>> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hget(self.k_conn(conn), "ver")
            .hgetall(self.k_ctx(conn));
        let (ver, map): (Option<u64>, HashMap<String, Vec<u8>>) =
            self.client.query_pipeline(&pipe).await?;
        Ok(ver.map(|v| {
            (
                map.into_iter().map(|(k, b)| (k, Value::from(b))).collect(),
                v,
            )
        }))
    }

    async fn ctx_apply(
        &self,
        conn: &ConnId,
        changes: &ChangeSet,
        expect: Option<u64>,
    ) -> Result<CtxWrite> {
        let mut inv = CTX_APPLY.key(self.k_conn(conn));
        inv.key(self.k_ctx(conn))
            .arg(expect.map(|v| v.to_string()).unwrap_or_default())
            .arg(if changes.clear { "1" } else { "0" })
            .arg(changes.remove.len());
        for k in &changes.remove {
            inv.arg(k);
        }
        for (k, v) in &changes.set {
            inv.arg(k).arg(v.as_bytes());
        }
        let r: i64 = self.client.invoke(&inv).await?;
        Ok(match r {
            1 => CtxWrite::Done,
            0 => CtxWrite::Conflict,
            _ => CtxWrite::NotOpen,
        })
    }

    async fn bind(&self, conn: &ConnId, user: &str, mode: BindMode) -> Result<Option<BindOutcome>> {
        let mode = match mode {
            BindMode::Add => "add",
            BindMode::Exclusive => "excl",
            BindMode::IfAbsent => "nx",
        };
        let out: Vec<String> = self
            .client
            .invoke(
                BIND.key(self.k_conn(conn))
                    .key(self.k_user(user))
                    .arg(self.base())
                    .arg(conn.as_str())
                    .arg(user)
                    .arg(mode),
            )
            .await?;
        let mut it = out.into_iter();
        match it.next().as_deref() {
            Some("-1") => Ok(None),
            Some("0") => Ok(Some(BindOutcome {
                bound: false,
                kicked: Vec::new(),
            })),
            Some("1") => Ok(Some(BindOutcome {
                bound: true,
                kicked: it.filter_map(|s| ConnId::parse(&s).ok()).collect(),
            })),
            _ => Err(Error::corrupt(NAME, "unexpected reply of the bind script")),
        }
    }

    async fn unbind(&self, conn: &ConnId) -> Result<Option<String>> {
        self.client
            .invoke(
                UNBIND
                    .key(self.k_conn(conn))
                    .arg(self.base())
                    .arg(conn.as_str()),
            )
            .await
    }

    async fn conns_of(&self, users: &[&str]) -> Result<Vec<Vec<ConnId>>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for u in users {
            pipe.smembers(self.k_user(u));
        }
        let sets: Vec<Vec<String>> = self.client.query_pipeline(&pipe).await?;
        Ok(sets.into_iter().map(parse_ids).collect())
    }

    async fn users_of(&self, conns: &[ConnId]) -> Result<Vec<Option<String>>> {
        if conns.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for c in conns {
            pipe.hget(self.k_conn(c), "user");
        }
        self.client.query_pipeline(&pipe).await
    }

    async fn keep(&self, user: &str, kept: &Kept, keep_for: Duration) -> Result<()> {
        let ms = check::ttl_millis(keep_for)?;
        let mut inv = KEEP.key(self.k_kept(user));
        inv.key(self.k_kept_from(user))
            .arg(ms)
            .arg(kept.from.as_str());
        for (k, v) in &kept.context {
            inv.arg(k.as_str()).arg(v.as_bytes());
        }
        let _: i64 = self.client.invoke(&inv).await?;
        Ok(())
    }

    async fn take_kept(&self, user: &str) -> Result<Option<Kept>> {
        let out: Option<Vec<Vec<u8>>> = self
            .client
            .invoke(TAKE.key(self.k_kept(user)).key(self.k_kept_from(user)))
            .await?;
        let Some(out) = out else {
            return Ok(None);
        };
        let bad = || Error::corrupt(NAME, format!("kept context of user {user:?}"));
        let mut it = out.into_iter();
        let from = it.next().ok_or_else(bad)?;
        let from = ConnId::parse(std::str::from_utf8(&from).map_err(|_| bad())?)?;
        let rest: Vec<Vec<u8>> = it.collect();
        let mut context = Data::with_capacity(rest.len() / 2);
        for pair in rest.chunks(2) {
            let [k, v] = pair else {
                return Err(bad());
            };
            let k = String::from_utf8(k.clone()).map_err(|_| bad())?;
            context.insert(k, Value::from(v.clone()));
        }
        Ok(Some(Kept { from, context }))
    }

    async fn forget_kept(&self, user: &str) -> Result<()> {
        let _: i64 = self
            .client
            .query(
                redis::cmd("DEL")
                    .arg(self.k_kept(user))
                    .arg(self.k_kept_from(user)),
            )
            .await?;
        Ok(())
    }

    async fn keep_alive(&self, user: &str, keep_for: Duration) -> Result<bool> {
        let ms = check::ttl_millis(keep_for)?;
        let alive: i64 = self
            .client
            .invoke(
                KEEP_ALIVE
                    .key(self.k_kept(user))
                    .key(self.k_kept_from(user))
                    .arg(ms),
            )
            .await?;
        Ok(alive == 1)
    }

    async fn relink_session(&self, old: &SessionId, new: &SessionId) -> Result<Vec<ConnId>> {
        let ids: Vec<String> = self
            .client
            .invoke(
                RELINK
                    .key(self.k_session(old))
                    .key(self.k_session(new))
                    .arg(self.base())
                    .arg(new.as_str()),
            )
            .await?;
        Ok(parse_ids(ids))
    }

    async fn unlink_session(&self, session: &SessionId) -> Result<Vec<(ConnId, Option<String>)>> {
        let flat: Vec<String> = self
            .client
            .invoke(UNLINK.key(self.k_session(session)).arg(self.base()))
            .await?;
        let mut out = Vec::with_capacity(flat.len() / 2);
        for pair in flat.chunks(2) {
            let [id, user] = pair else {
                return Err(Error::corrupt(
                    NAME,
                    "unexpected reply of the unlink script",
                ));
            };
            // ids that do not parse were never written by a hub: skipped like in parse_ids
            if let Ok(id) = ConnId::parse(id) {
                out.push((id, (!user.is_empty()).then(|| user.clone())));
            }
        }
        Ok(out)
    }

    async fn session_conns(&self, session: &SessionId) -> Result<Vec<ConnId>> {
        let ids: Vec<String> = self
            .client
            .query(redis::cmd("SMEMBERS").arg(self.k_session(session)))
            .await?;
        Ok(parse_ids(ids))
    }

    async fn list(&self, cursor: Option<&str>, limit: usize) -> Result<ConnPage> {
        let limit = limit.max(1);
        // Cursor: "<node>|<SSCAN cursor of that node's set>"; nodes are visited in name order.
        let (mut at_node, mut at_cursor) = match cursor {
            Some(c) => {
                let (n, c) = c
                    .split_once('|')
                    .ok_or_else(|| Error::InvalidInput("malformed list cursor".into()))?;
                let c: u64 = c
                    .parse()
                    .map_err(|_| Error::InvalidInput("malformed list cursor".into()))?;
                (Some(NodeId::parse(n)?), c)
            }
            None => (None, 0),
        };
        let mut nodes: Vec<NodeId> = self.nodes().await?.into_iter().map(|e| e.node).collect();
        nodes.sort();
        let start = match &at_node {
            Some(n) => nodes.partition_point(|x| x < n),
            None => 0,
        };
        if at_node.as_ref() != nodes.get(start) {
            at_cursor = 0;
        }
        let mut ids = Vec::new();
        let mut next = None;
        for node in &nodes[start..] {
            if at_node.as_ref() != Some(node) {
                at_node = Some(node.clone());
                at_cursor = 0;
            }
            loop {
                let (c, found): (u64, Vec<String>) = self
                    .client
                    .query(
                        redis::cmd("SSCAN")
                            .arg(self.k_node_conns(node))
                            .arg(at_cursor)
                            .arg("COUNT")
                            .arg(limit),
                    )
                    .await?;
                ids.extend(parse_ids(found));
                at_cursor = c;
                if c == 0 || ids.len() >= limit {
                    break;
                }
            }
            if ids.len() >= limit {
                if at_cursor != 0 {
                    next = Some(format!("{node}|{at_cursor}"));
                } else {
                    // This node is done: continue at the next one, if any.
                    let i = nodes.partition_point(|x| x <= node);
                    next = nodes.get(i).map(|n| format!("{n}|0"));
                }
                break;
            }
        }
        let infos = self.info(&ids).await?;
        Ok(ConnPage {
            conns: infos.into_iter().flatten().collect(),
            next,
        })
    }
}

fn parse_ids(ids: Vec<String>) -> Vec<ConnId> {
    let mut out: Vec<ConnId> = ids
        .into_iter()
        .filter_map(|s| ConnId::parse(&s).ok())
        .collect();
    out.sort();
    out
}
