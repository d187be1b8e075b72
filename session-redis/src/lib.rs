#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod conn;
mod keys;
mod scripts;

use std::future::Future;
use std::time::{Duration, SystemTime};

use redis::cluster::ClusterClient;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult, ServerErrorKind};
use session_core::{
    Capabilities, ChangeSet, Data, Error, Loaded, LockToken, Result, ScanPage, SessionId, Storage,
    Value, async_trait, check,
};
use tokio::task::JoinSet;

use crate::conn::Conn;
use crate::keys::{DEADLINE_FIELD, Keys};

/// The driver's name in errors ([`Storage::name`]).
const NAME: &str = "redis";

/// The key prefix a store uses unless told otherwise.
pub const DEFAULT_PREFIX: &str = "session";
/// Default time allowed to open one TCP (or TLS) connection to a server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time allowed for one reply from a server.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default number of reconnection attempts after a connection is lost, before the pending
/// commands fail (the next command starts a new round of attempts).
pub const DEFAULT_RECONNECT_RETRIES: usize = 2;

/// The page size [`Storage::scan`] asks `SCAN` for at most, whatever the `limit` hint.
const MAX_SCAN_COUNT: usize = 10_000;

/// How far past now + [`check::MAX_TTL`] (on the local clock) a stored deadline may lie and still
/// be believed: room for a writer's clock that is ahead of ours. A later one was not written by
/// this driver, and `load` asks `PTTL` instead.
const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// Maps a redis-rs error: a key of ours holding another Redis type (`WRONGTYPE`, written by
/// someone else) is a corrupt record; everything else is a backend failure.
fn backend(e: RedisError) -> Error {
    if e.code() == Some("WRONGTYPE") || e.to_string().contains("WRONGTYPE") {
        return Error::corrupt(
            NAME,
            format!("a key of this session holds another Redis type: {e}"),
        );
    }
    Error::backend(NAME, e)
}

/// A session store on Redis: one hash per session, expired by Redis itself to the millisecond.
///
/// Cloning is cheap: clones share one multiplexed connection (or one cluster connection), which
/// reconnects by itself after the server goes away. Make one with [`RedisStore::open`],
/// [`RedisStore::open_cluster`] or [`RedisStore::builder`]. See the crate documentation for the
/// key layout and the round trips of each method.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    op_timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix())
            .field("cluster", &self.is_cluster())
            .field("operation_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

/// Options of a [`RedisStore`]: key prefix and timeouts.
///
/// ```no_run
/// use std::time::Duration;
/// use session_redis::RedisStore;
///
/// # async fn demo() -> session_core::Result<()> {
/// let store = RedisStore::builder()
///     .prefix("myapp:sess")
///     .connect_timeout(Duration::from_millis(500))
///     .response_timeout(Duration::from_millis(800))
///     .open("redis://127.0.0.1:6379")
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RedisStoreBuilder {
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    operation_timeout: Option<Duration>,
    reconnect_retries: usize,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        RedisStoreBuilder {
            prefix: DEFAULT_PREFIX.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            operation_timeout: None,
            reconnect_retries: DEFAULT_RECONNECT_RETRIES,
        }
    }
}

impl RedisStoreBuilder {
    /// The key prefix (default [`DEFAULT_PREFIX`]): every key the store writes starts with
    /// `<prefix>:`. 1 to 128 bytes, no braces (`{}`), glob characters (`*?[]\`) or whitespace;
    /// checked when the store is opened.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Time allowed to open one connection to a server (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one reply (default [`DEFAULT_RESPONSE_TIMEOUT`]).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Upper bound on one whole storage call, reconnection and script loading included
    /// (default: connect timeout + 2 × response timeout). A call that takes longer fails with
    /// [`Error::Backend`].
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    /// Reconnection attempts after a lost connection, with exponential backoff from 100 ms,
    /// before pending calls fail (default [`DEFAULT_RECONNECT_RETRIES`]). Single node only; the
    /// cluster client reconnects per node on its own.
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    fn op_timeout(&self) -> Duration {
        self.operation_timeout
            .unwrap_or(self.connect_timeout + self.response_timeout * 2)
    }

    /// Connects to one server (or a proxy): `redis://[user:password@]host[:port][/db]`,
    /// `rediss://` for TLS (needs a TLS feature of redis-rs, see the crate documentation), or
    /// `redis+unix:///path`. Fails with [`Error::Backend`] if the server cannot be reached.
    pub async fn open(self, url: &str) -> Result<RedisStore> {
        let keys = Keys::new(&self.prefix)?;
        let client = redis::Client::open(url).map_err(backend)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(self.reconnect_retries)
            .set_max_delay(self.connect_timeout);
        let op_timeout = self.op_timeout();
        let manager = tokio::time::timeout(
            op_timeout,
            redis::aio::ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| timed_out(op_timeout))?
        .map_err(backend)?;
        Ok(RedisStore {
            conn: Conn::Single(manager),
            keys,
            op_timeout,
        })
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://host:port` each, same
    /// credentials and scheme for all). Fails with [`Error::Backend`] if no node answers.
    pub async fn open_cluster<I, S>(self, urls: I) -> Result<RedisStore>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = Keys::new(&self.prefix)?;
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        if urls.is_empty() {
            return Err(Error::InvalidInput(
                "open_cluster needs at least one node url".into(),
            ));
        }
        let op_timeout = self.op_timeout();
        let client = ClusterClient::builder(urls)
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.response_timeout)
            .overall_response_timeout(Some(op_timeout))
            .build()
            .map_err(backend)?;
        let conn = tokio::time::timeout(op_timeout, client.get_async_connection())
            .await
            .map_err(|_| timed_out(op_timeout))?
            .map_err(backend)?;
        Ok(RedisStore {
            conn: Conn::Cluster(conn),
            keys,
            op_timeout,
        })
    }
}

fn bad_cursor() -> Error {
    Error::InvalidInput("not a scan cursor of this store".into())
}

fn timed_out(after: Duration) -> Error {
    Error::backend(
        NAME,
        format!("no answer from Redis within {after:?} (is the server running and reachable?)"),
    )
}

impl RedisStore {
    /// Connects to one server with the default options (prefix [`DEFAULT_PREFIX`]); see
    /// [`RedisStoreBuilder::open`] for the URL forms.
    pub async fn open(url: &str) -> Result<RedisStore> {
        RedisStoreBuilder::default().open(url).await
    }

    /// Connects to a Redis Cluster with the default options; see
    /// [`RedisStoreBuilder::open_cluster`].
    pub async fn open_cluster<I, S>(urls: I) -> Result<RedisStore>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        RedisStoreBuilder::default().open_cluster(urls).await
    }

    /// A builder for a store with a custom prefix or timeouts.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder::default()
    }

    /// The key prefix of this store.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// Runs one backend exchange with the operation timeout, mapping errors to [`Error::Backend`].
    async fn run<T>(&self, fut: impl Future<Output = RedisResult<T>>) -> Result<T> {
        match tokio::time::timeout(self.op_timeout, fut).await {
            Ok(result) => result.map_err(backend),
            Err(_) => Err(timed_out(self.op_timeout)),
        }
    }

    /// Runs `cmd`, an `EVALSHA` of `lua` made by [`Lua::call`](scripts::Lua::call), with the
    /// operation timeout. A server that does not know the script (`NOSCRIPT`: the first call, or
    /// after a restart, failover or `SCRIPT FLUSH`) gets it with `SCRIPT LOAD`, and `cmd` runs
    /// again.
    async fn eval<T: FromRedisValue>(&self, lua: &scripts::Lua, cmd: &Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        self.run(async move {
            match cmd.query_async(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    let _: String = lua.load().query_async(&mut conn).await?;
                    cmd.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// The apply script: clear, remove, set, expiry; returns whether the session exists after.
    async fn write(&self, id: &SessionId, changes: &ChangeSet, ttl_ms: u64) -> Result<bool> {
        for key in changes.remove.iter().chain(changes.set.keys()) {
            check::key(key)?;
        }
        let (data, owner) = (self.keys.data(id), self.keys.owner_of(id));
        // ARGV: 4 fixed, the removed keys, the set pairs, the deadline pair (20 digits at most)
        let args = 4 + changes.remove.len() + 2 * changes.set.len() + 2;
        let bytes = 40
            + changes.remove.iter().map(String::len).sum::<usize>()
            + changes
                .set
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + DEADLINE_FIELD.len()
            + 20;
        let mut inv = scripts::APPLY.call_sized(&[&data, &owner], args, bytes);
        inv.arg(ttl_ms)
            .arg(if changes.clear { "1" } else { "0" })
            .arg(if changes.only_if_exists { "1" } else { "0" })
            .arg(changes.remove.len());
        for key in &changes.remove {
            inv.arg(key.as_str());
        }
        for (key, value) in &changes.set {
            inv.arg(key.as_str()).arg(value.as_bytes());
        }
        inv.arg(DEADLINE_FIELD).arg(deadline_of(ttl_ms));
        let exists: i64 = self.eval(&scripts::APPLY, &inv).await?;
        Ok(exists == 1)
    }

    /// `HGETALL` of the session hash: its data and the raw value of its deadline field.
    async fn hgetall(&self, data_key: &str) -> Result<(Data, Option<Vec<u8>>)> {
        let mut conn = self.conn.clone();
        let reply: redis::Value = self
            .run(redis::cmd("HGETALL").arg(data_key).query_async(&mut conn))
            .await?;
        parse_hash(reply)
    }

    /// Master nodes of the cluster, sorted, from `CLUSTER NODES`.
    async fn cluster_masters(
        &self,
        conn: &mut redis::cluster_async::ClusterConnection,
    ) -> Result<Vec<(String, u16)>> {
        let reply = self
            .run(conn.route_command(
                redis::cmd("CLUSTER").arg("NODES").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            ))
            .await?;
        let text: String = redis::from_redis_value(reply)
            .map_err(|e| Error::backend(NAME, format!("unexpected CLUSTER NODES reply: {e}")))?;
        let mut masters = parse_cluster_masters(&text);
        masters.sort();
        masters.dedup();
        Ok(masters)
    }

    /// One `SCAN` step: on the single node, or on the cluster master `node`.
    async fn scan_step(
        &self,
        node: Option<&(String, u16)>,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        match (&self.conn, node) {
            (Conn::Cluster(c), Some((host, port))) => {
                let mut c = c.clone();
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let reply = self.run(c.route_command(cmd, routing)).await?;
                redis::from_redis_value(reply)
                    .map_err(|e| Error::backend(NAME, format!("unexpected SCAN reply: {e}")))
            }
            _ => {
                let mut conn = self.conn.clone();
                self.run(cmd.query_async(&mut conn)).await
            }
        }
    }

    fn ids_of(&self, found: &[Vec<u8>]) -> Vec<SessionId> {
        found
            .iter()
            .filter_map(|k| self.keys.id_of_data_key(k))
            .collect()
    }

    async fn scan_single(&self, cursor: Option<&str>, count: usize) -> Result<ScanPage> {
        let start: u64 = match cursor {
            None => 0,
            Some(text) => text.parse().map_err(|_| bad_cursor())?,
        };
        let (next, found) = self
            .scan_step(None, start, &self.keys.scan_pattern(), count)
            .await?;
        Ok(ScanPage {
            ids: self.ids_of(&found),
            next: (next != 0).then(|| next.to_string()),
        })
    }

    /// Cluster scan: the cursor is `<host>:<port>/<redis cursor>`; masters are visited in sorted
    /// order, each with its own `SCAN`.
    async fn scan_cluster(
        &self,
        mut conn: redis::cluster_async::ClusterConnection,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<ScanPage> {
        let masters = self.cluster_masters(&mut conn).await?;
        let (index, start) = match cursor {
            None => (0, 0u64),
            Some(text) => {
                let (addr, cur) = text.rsplit_once('/').ok_or_else(bad_cursor)?;
                let (host, port) = addr.rsplit_once(':').ok_or_else(bad_cursor)?;
                let node = (
                    host.to_owned(),
                    port.parse::<u16>().map_err(|_| bad_cursor())?,
                );
                let cur: u64 = cur.parse().map_err(|_| bad_cursor())?;
                match masters.iter().position(|m| *m == node) {
                    Some(i) => (i, cur),
                    // The node left the cluster mid-scan: go on with the next one.
                    None => (masters.partition_point(|m| *m < node), 0),
                }
            }
        };
        let Some(node) = masters.get(index) else {
            return Ok(ScanPage::default());
        };
        let (next, found) = self
            .scan_step(Some(node), start, &self.keys.scan_pattern(), count)
            .await?;
        let next = if next != 0 {
            Some(format!("{}:{}/{next}", node.0, node.1))
        } else {
            masters.get(index + 1).map(|(h, p)| format!("{h}:{p}/0"))
        };
        Ok(ScanPage {
            ids: self.ids_of(&found),
            next,
        })
    }

    /// Deletes every key under this store's prefix (sessions, owner keys and sets, locks) and
    /// returns how many it deleted.
    ///
    /// Meant for tests and for resetting an application: it walks the keyspace with `SCAN` (every
    /// master of a cluster) and deletes in batches, so it is neither atomic nor fast on a big
    /// database. Keys written meanwhile may survive.
    pub async fn clear_prefix(&self) -> Result<u64> {
        let pattern = format!("{}:*", self.keys.prefix());
        let nodes: Vec<Option<(String, u16)>> = match &self.conn {
            Conn::Single(_) => vec![None],
            Conn::Cluster(c) => self
                .cluster_masters(&mut c.clone())
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        };
        let mut deleted = 0u64;
        for node in &nodes {
            let mut cursor = 0u64;
            loop {
                let (next, found) = self
                    .scan_step(node.as_ref(), cursor, &pattern, 1000)
                    .await?;
                let mut conn = self.conn.clone();
                if node.is_none() && !found.is_empty() {
                    let n: u64 = self
                        .run(redis::cmd("DEL").arg(&found).query_async(&mut conn))
                        .await?;
                    deleted += n;
                } else {
                    // Cluster: keys of one node may sit in different slots; one DEL each.
                    for key in &found {
                        let n: u64 = self
                            .run(redis::cmd("DEL").arg(key).query_async(&mut conn))
                            .await?;
                        deleted += n;
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }

    /// Cluster `index_sessions`: members live in other slots than the set, so each member is
    /// checked with its own (concurrent) pipeline, then the dead ones are removed.
    async fn index_sessions_cluster(&self, owner: &str) -> Result<Vec<SessionId>> {
        let set_key = self.keys.owner_set(owner);
        let mut conn = self.conn.clone();
        let members: Vec<String> = self
            .run(redis::cmd("SMEMBERS").arg(&set_key).query_async(&mut conn))
            .await?;
        let mut checks = JoinSet::new();
        let mut dead = Vec::new();
        for member in members {
            let Ok(id) = SessionId::parse(&member) else {
                dead.push(member);
                continue;
            };
            let mut pipe = redis::pipe();
            pipe.cmd("GET")
                .arg(self.keys.owner_of(&id))
                .cmd("EXISTS")
                .arg(self.keys.data(&id));
            let mut conn = self.conn.clone();
            checks.spawn(async move {
                let reply: RedisResult<(Option<String>, bool)> = pipe.query_async(&mut conn).await;
                (member, id, reply)
            });
        }
        let mut live = Vec::new();
        let gather = async {
            while let Some(joined) = checks.join_next().await {
                let (member, id, reply) =
                    joined.map_err(|e| Error::backend(NAME, format!("index check task: {e}")))?;
                let (bound_to, exists) = reply.map_err(backend)?;
                if bound_to.as_deref() != Some(owner) {
                    dead.push(member);
                } else if exists {
                    live.push(id);
                }
            }
            Ok::<_, Error>(())
        };
        tokio::time::timeout(self.op_timeout, gather)
            .await
            .map_err(|_| timed_out(self.op_timeout))??;
        if !dead.is_empty() {
            let mut conn = self.conn.clone();
            let _: i64 = self
                .run(
                    redis::cmd("SREM")
                        .arg(&set_key)
                        .arg(&dead)
                        .query_async(&mut conn),
                )
                .await?;
        }
        Ok(live)
    }
}

/// `(host, port)` of every master that serves slots, from a `CLUSTER NODES` reply.
fn parse_cluster_masters(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let is_master = flags.split(',').any(|f| f == "master");
            let failed = flags.split(',').any(|f| f == "fail" || f == "noaddr");
            if !is_master || failed || fields.len() < 9 {
                return None;
            }
            let addr = fields.get(1)?.split('@').next()?;
            let addr = addr.split(',').next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// Splits an `HGETALL` reply into the session's data and the raw value of the deadline field
/// ([`DEADLINE_FIELD`], `None` if the hash does not hold it), which never reaches the data.
///
/// RESP2 replies are an array of alternating names and values, RESP3 replies a map. The value
/// bytes move into the [`Data`] without a copy. A field name that is not UTF-8 (and not the
/// deadline field) is `Error::Corrupt`.
fn parse_hash(reply: redis::Value) -> Result<(Data, Option<Vec<u8>>)> {
    let len = match &reply {
        redis::Value::Array(items) => items.len() / 2,
        redis::Value::Map(pairs) => pairs.len(),
        _ => 0,
    };
    let mut data = Data::with_capacity(len);
    let mut deadline = None;
    let mut add = |name: redis::Value, value: redis::Value| -> Result<()> {
        let (name, value) = (reply_bytes(name)?, reply_bytes(value)?);
        match String::from_utf8(name) {
            Ok(key) => {
                data.insert(key, Value::from(value));
            }
            Err(e) if e.as_bytes() == DEADLINE_FIELD => deadline = Some(value),
            Err(_) => return Err(Error::corrupt(NAME, "a session field name is not UTF-8")),
        }
        Ok(())
    };
    match reply {
        redis::Value::Array(items) if items.len() % 2 == 0 => {
            let mut items = items.into_iter();
            while let (Some(name), Some(value)) = (items.next(), items.next()) {
                add(name, value)?;
            }
        }
        redis::Value::Map(pairs) => {
            for (name, value) in pairs {
                add(name, value)?;
            }
        }
        redis::Value::Nil => {}
        other => return Err(unexpected_reply(&other)),
    }
    Ok((data, deadline))
}

/// The bytes of one string of an `HGETALL` reply.
fn reply_bytes(value: redis::Value) -> Result<Vec<u8>> {
    match value {
        redis::Value::BulkString(bytes) => Ok(bytes),
        redis::Value::SimpleString(text) => Ok(text.into_bytes()),
        other => Err(unexpected_reply(&other)),
    }
}

fn unexpected_reply(value: &redis::Value) -> Error {
    let kind = match value {
        redis::Value::Nil => "nil",
        redis::Value::Int(_) => "an integer",
        redis::Value::Array(items) if items.len() % 2 == 1 => "an array of odd length",
        redis::Value::Array(_) => "an array",
        redis::Value::Map(_) => "a map",
        redis::Value::Set(_) => "a set",
        _ => "another type",
    };
    Error::backend(NAME, format!("unexpected HGETALL reply: {kind}"))
}

/// The value of the deadline field for a write with a TTL of `ttl_ms`: unix milliseconds on the
/// local clock, the clock [`Storage::load`] compares deadlines with.
fn deadline_of(ttl_ms: u64) -> u64 {
    check::now_millis().saturating_add(ttl_ms)
}

/// The deadline a deadline field holds, if it is unix milliseconds in decimal and no later than
/// this driver could have written ([`MAX_CLOCK_AHEAD`]); `None` sends `load` to `PTTL`.
fn parse_deadline(raw: &[u8]) -> Option<SystemTime> {
    let ms: u64 = std::str::from_utf8(raw).ok()?.parse().ok()?;
    let latest = (check::MAX_TTL + MAX_CLOCK_AHEAD).as_millis() as u64;
    (ms <= check::now_millis().saturating_add(latest)).then(|| check::from_unix_millis(ms))
}

#[async_trait]
impl Storage for RedisStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_apply: true,
            load_with_deadline: true,
            owner_index: true,
            lock: true,
            purge: true,
            scan: true,
            native_expiry: true,
        }
    }

    async fn new(&self, ttl: Duration) -> Result<Option<SessionId>> {
        check::ttl_millis(ttl)?;
        Ok(None)
    }

    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        check::key(key)?;
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = self
            .run(
                redis::cmd("HGET")
                    .arg(self.keys.data(id))
                    .arg(key)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(raw.map(Value::from))
    }

    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        Ok(self.hgetall(&self.keys.data(id)).await?.0)
    }

    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        let data_key = self.keys.data(id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HLEN")
            .arg(&data_key)
            .cmd("HEXISTS")
            .arg(&data_key)
            .arg(DEADLINE_FIELD);
        let mut conn = self.conn.clone();
        let (fields, has_deadline): (usize, usize) = self.run(pipe.query_async(&mut conn)).await?;
        Ok(fields.saturating_sub(has_deadline))
    }

    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Duration) -> Result<()> {
        check::key(key)?;
        let ttl_ms = check::ttl_millis(ttl)?;
        let mut changes = ChangeSet::default();
        changes.set.insert(key.to_owned(), value);
        self.write(id, &changes, ttl_ms).await.map(drop)
    }

    async fn set_map(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        let ttl_ms = check::ttl_millis(ttl)?;
        let changes = ChangeSet {
            set: data,
            ..ChangeSet::default()
        };
        self.write(id, &changes, ttl_ms).await.map(drop)
    }

    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        check::key(key)?;
        let (data, owner) = (self.keys.data(id), self.keys.owner_of(id));
        let mut inv = scripts::REMOVE.call(&[&data, &owner]);
        inv.arg(key);
        let _: i64 = self.eval(&scripts::REMOVE, &inv).await?;
        Ok(())
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .run(
                redis::cmd("DEL")
                    .arg(self.keys.data(id))
                    .arg(self.keys.owner_of(id))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn get_session(
        &self,
        id: &SessionId,
        _ttl: Duration,
        _cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        let (data, _) = self.hgetall(&self.keys.data(id)).await?;
        Ok((!data.is_empty()).then_some(data))
    }

    async fn set_session(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        let ttl_ms = check::ttl_millis(ttl)?;
        let changes = ChangeSet {
            clear: true,
            set: data,
            ..ChangeSet::default()
        };
        self.write(id, &changes, ttl_ms).await.map(drop)
    }

    async fn update_ttl(&self, id: &SessionId, ttl: Duration) -> Result<()> {
        let ttl_ms = check::ttl_millis(ttl)?;
        let (data, owner) = (self.keys.data(id), self.keys.owner_of(id));
        let mut inv = scripts::TOUCH.call(&[&data, &owner]);
        inv.arg(ttl_ms).arg(deadline_of(ttl_ms));
        let _: i64 = self.eval(&scripts::TOUCH, &inv).await?;
        Ok(())
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, ttl: Duration) -> Result<bool> {
        let ttl_ms = check::ttl_millis(ttl)?;
        self.write(id, &changes, ttl_ms).await
    }

    /// One `HGETALL`: the deadline comes from the hash's deadline field. Only a hash without a
    /// valid one (written before the field existed, or by another tool) costs a second command,
    /// `PTTL`, read against the local clock.
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        let data_key = self.keys.data(id);
        let (data, deadline) = self.hgetall(&data_key).await?;
        if data.is_empty() {
            return Ok(None);
        }
        let expires_at = match deadline.as_deref().and_then(parse_deadline) {
            Some(at) => Some(at),
            None => {
                let mut conn = self.conn.clone();
                let pttl: i64 = self
                    .run(redis::cmd("PTTL").arg(&data_key).query_async(&mut conn))
                    .await?;
                let now = SystemTime::now();
                u64::try_from(pttl)
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(|ms| now + Duration::from_millis(ms))
            }
        };
        Ok(Some(Loaded {
            data: data.into(),
            expires_at,
        }))
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Duration) -> Result<()> {
        check::owner(owner)?;
        let ttl_ms = check::ttl_millis(ttl)?;
        let set_key = self.keys.owner_set(owner);
        match &self.conn {
            Conn::Single(_) => {
                let (owner_key, data) = (self.keys.owner_of(id), self.keys.data(id));
                let mut inv = scripts::INDEX_ADD_SINGLE.call(&[&set_key, &owner_key, &data]);
                inv.arg(owner).arg(id.as_str()).arg(ttl_ms);
                let _: i64 = self.eval(&scripts::INDEX_ADD_SINGLE, &inv).await?;
            }
            Conn::Cluster(_) => {
                // Set first: if the second step fails, the set holds an entry that the next
                // lookup prunes (its owner key does not name this owner).
                let mut add = scripts::INDEX_ADD_SET.call(&[&set_key]);
                add.arg(id.as_str()).arg(ttl_ms);
                let _: i64 = self.eval(&scripts::INDEX_ADD_SET, &add).await?;
                let (owner_key, data) = (self.keys.owner_of(id), self.keys.data(id));
                let mut bind = scripts::INDEX_BIND.call(&[&owner_key, &data]);
                bind.arg(owner).arg(ttl_ms);
                let _: i64 = self.eval(&scripts::INDEX_BIND, &bind).await?;
            }
        }
        Ok(())
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .run(
                redis::cmd("DEL")
                    .arg(self.keys.owner_of(id))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        check::owner(owner)?;
        match &self.conn {
            Conn::Single(_) => {
                let set_key = self.keys.owner_set(owner);
                let mut inv = scripts::INDEX_SESSIONS_SINGLE.call(&[&set_key]);
                inv.arg(self.keys.session_base()).arg(owner);
                let ids: Vec<String> = self.eval(&scripts::INDEX_SESSIONS_SINGLE, &inv).await?;
                Ok(ids
                    .iter()
                    .filter_map(|id| SessionId::parse(id).ok())
                    .collect())
            }
            Conn::Cluster(_) => self.index_sessions_cluster(owner).await,
        }
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(self.keys.owner_of(id))
            .cmd("EXISTS")
            .arg(self.keys.data(id));
        let mut conn = self.conn.clone();
        let (owner, exists): (Option<String>, bool) = self.run(pipe.query_async(&mut conn)).await?;
        Ok(owner.filter(|_| exists))
    }

    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        let lease_ms = check::ttl_millis(lease)?;
        let token = LockToken::generate()?;
        let mut conn = self.conn.clone();
        let reply: Option<String> = self
            .run(
                redis::cmd("SET")
                    .arg(self.keys.lock(id))
                    .arg(token.as_str())
                    .arg("NX")
                    .arg("PX")
                    .arg(lease_ms)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(reply.map(|_| token))
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let lock = self.keys.lock(id);
        let mut inv = scripts::UNLOCK.call(&[&lock]);
        inv.arg(token.as_str());
        let released: i64 = self.eval(&scripts::UNLOCK, &inv).await?;
        Ok(released == 1)
    }

    async fn purge_expired(&self) -> Result<u64> {
        Ok(0)
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let count = limit.clamp(1, MAX_SCAN_COUNT);
        match &self.conn {
            Conn::Single(_) => self.scan_single(cursor, count).await,
            Conn::Cluster(c) => self.scan_cluster(c.clone(), cursor, count).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> redis::Value {
        redis::Value::BulkString(bytes.to_vec())
    }

    #[test]
    fn hgetall_replies_of_both_protocols_drop_the_deadline_field() {
        let resp2 = redis::Value::Array(vec![
            bulk(b"a"),
            bulk(b"\x01"),
            bulk(DEADLINE_FIELD),
            bulk(b"1750000000123"),
            bulk(b"b"),
            bulk(b""),
        ]);
        let resp3 = redis::Value::Map(vec![
            (bulk(DEADLINE_FIELD), bulk(b"1750000000123")),
            (bulk(b"a"), bulk(b"\x01")),
            (bulk(b"b"), bulk(b"")),
        ]);
        for reply in [resp2, resp3] {
            let (data, deadline) = parse_hash(reply).expect("a valid reply");
            assert_eq!(data.len(), 2);
            assert_eq!(data["a"], Value::from(vec![1u8]));
            assert_eq!(data["b"], Value::from(Vec::new()));
            assert_eq!(deadline.as_deref(), Some(&b"1750000000123"[..]));
        }
        for empty in [
            redis::Value::Array(vec![]),
            redis::Value::Map(vec![]),
            redis::Value::Nil,
        ] {
            let (data, deadline) = parse_hash(empty).expect("empty reply");
            assert!(data.is_empty() && deadline.is_none());
        }
    }

    #[test]
    fn odd_replies_and_foreign_field_names_are_errors() {
        assert!(matches!(parse_hash(bulk(b"x")), Err(Error::Backend { .. })));
        let odd = redis::Value::Array(vec![bulk(b"a")]);
        assert!(matches!(parse_hash(odd), Err(Error::Backend { .. })));
        let not_utf8 = redis::Value::Array(vec![bulk(b"\xfeother"), bulk(b"x")]);
        assert!(matches!(parse_hash(not_utf8), Err(Error::Corrupt { .. })));
        let int_value = redis::Value::Map(vec![(bulk(b"a"), redis::Value::Int(1))]);
        assert!(matches!(parse_hash(int_value), Err(Error::Backend { .. })));
    }

    #[test]
    fn deadlines_are_believed_only_when_this_driver_could_have_written_them() {
        let soon = check::now_millis() + 60_000;
        assert_eq!(
            parse_deadline(soon.to_string().as_bytes()),
            Some(check::from_unix_millis(soon))
        );
        let latest = check::now_millis() + check::MAX_TTL.as_millis() as u64;
        assert!(parse_deadline(latest.to_string().as_bytes()).is_some());
        assert!(parse_deadline(b"1").is_some(), "a past deadline is kept");
        for bad in [
            &b"abc"[..],
            b"",
            b"-5",
            b"1.8e+12",
            b" 1750000000123",
            b"99999999999999999",
            b"18446744073709551615",
            b"18446744073709551616",
        ] {
            assert_eq!(parse_deadline(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn cluster_nodes_reply_is_parsed() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host1 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 127.0.0.1:30009@31009 master,fail - 0 0 1 connected 0-5460
bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb 127.0.0.1:30010@31010 master - 0 0 1 connected
";
        let mut masters = parse_cluster_masters(text);
        masters.sort();
        assert_eq!(
            masters,
            vec![
                ("127.0.0.1".to_owned(), 30001),
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30003),
            ]
        );
    }
}
