//! [`RedisClient`]: the driver's connection to Redis (one server or a cluster), for other crates of
//! the framework that keep their own keys in the same Redis, such as session-connect's registry.
//!
//! It is the code [`RedisStore`](crate::RedisStore) itself runs on, not a copy: the store opens
//! a `RedisClient` with the same options ([`RedisClientBuilder`], which
//! [`RedisStoreBuilder`](crate::RedisStoreBuilder) forwards), and its commands, scripts, scans and
//! [`clear_prefix`](crate::RedisStore::clear_prefix) go through the methods below. What it gives:
//!
//! * connection set-up: URL forms, TLS, connect and response timeouts, reconnection with
//!   backoff on one server, the master named by Redis Sentinel (asked again after every
//!   failure), slot routing on a cluster ([`RedisClientBuilder::connect`],
//!   [`RedisClientBuilder::connect_sentinel`], [`RedisClientBuilder::connect_cluster`]);
//! * optionally, writes acknowledged by replicas (`WAIT`,
//!   [`RedisClientBuilder::wait_for_replicas`]);
//! * every call bounded by the operation timeout, its errors mapped to the framework's
//!   ([`RedisClient::run`], [`query`](RedisClient::query),
//!   [`query_pipeline`](RedisClient::query_pipeline), [`invoke`](RedisClient::invoke));
//! * the key-prefix rule ([`check_prefix`]);
//! * walking the keyspace on one server or on every master of a cluster
//!   ([`RedisClient::scan_page`], [`RedisClient::clear_prefix`]);
//! * subscriptions on dedicated connections and publishing, on one server (`SUBSCRIBE`,
//!   `PUBLISH`) or a cluster (sharded: `SSUBSCRIBE` on the masters that own the channels,
//!   `SPUBLISH`) ([`RedisClient::subscribe`], [`RedisClient::publish`]); a raw pub/sub
//!   connection on one server ([`RedisClient::pubsub`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use session_redis::client::{RedisClient, check_prefix};
//!
//! # async fn demo() -> session_core::Result<()> {
//! check_prefix("myapp:conn")?;
//! let client = RedisClient::builder()
//!     .response_timeout(Duration::from_millis(500))
//!     .connect("redis://127.0.0.1:6379")            // or .connect_cluster([...])
//!     .await?;
//! let _: () = client.query(redis::cmd("SET").arg("myapp:conn:greeting").arg("hi")).await?;
//! let found = client.scan_page("myapp:conn:*", None, 100).await?;
//! assert!(found.keys.iter().any(|k| k == b"myapp:conn:greeting"));
//! assert_eq!(client.clear_prefix("myapp:conn").await?, 1);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, FromRedisValue, IntoConnectionInfo, Pipeline,
    RedisConnectionInfo, RedisFuture, RedisResult, ScriptInvocation, ServerErrorKind, Value,
};
use session_core::driver::{Error, Result};

use crate::NAME;
use crate::conn::{Conn, Pool, Server, backend, timed_out};
use crate::durable::{Handle, Wait};
use crate::scripts::Lua;
use crate::sentinel::{Discovery, SentinelConn};

pub use crate::keys::{MAX_PREFIX_LEN, check_prefix};
pub use crate::scan::KeyPage;
pub use crate::subscribe::Subscription;

/// Default time allowed to open one TCP (or TLS) connection to a server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time allowed for one reply from a server.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default number of reconnection attempts after a connection is lost, before the pending
/// commands fail (the next command starts a new round of attempts).
pub const DEFAULT_RECONNECT_RETRIES: usize = 2;
/// Default number of connections a client opens (to one server, or full cluster connections);
/// see [`RedisClientBuilder::connections`] for how calls take them.
pub const DEFAULT_CONNECTIONS: usize = 2;
/// The most connections one client opens ([`RedisClientBuilder::connections`] clamps to it).
pub const MAX_CONNECTIONS: usize = 64;
/// How many calls in flight one connection of a client carries, by default, before the next call
/// takes another connection of the pool (see [`RedisClientBuilder::connections`] and
/// [`RedisClientBuilder::connection_spill`]).
pub const CONNECTION_SPILL: usize = 32;

/// The shortest pause before redis-rs's cluster client retries a request (a node down, a slot map
/// being refreshed), in ms. redis-rs's default is 1,280 ms, which held requests to every master
/// that long while one failed over (`tests/cluster_failover.rs`).
const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 50;
/// The longest such pause, in ms (the operation timeout bounds the whole call anyway).
const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 1000;

/// Options of a [`RedisClient`]: timeouts, reconnection, the master's settings behind Redis
/// Sentinel, replica acknowledgements. Made by [`RedisClient::builder`];
/// [`RedisStoreBuilder`](crate::RedisStoreBuilder) holds one and forwards its setters.
#[derive(Clone, Debug)]
pub struct RedisClientBuilder {
    connect_timeout: Duration,
    response_timeout: Duration,
    operation_timeout: Option<Duration>,
    reconnect_retries: usize,
    connections: usize,
    connection_spill: usize,
    sentinel_master: MasterSettings,
    wait: Option<Wait>,
}

/// How to log in to the master found through Redis Sentinel (its URL is not known in advance).
#[derive(Clone, Default)]
struct MasterSettings {
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

impl std::fmt::Debug for MasterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterSettings")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .finish()
    }
}

impl MasterSettings {
    fn connection_info(&self) -> RedisConnectionInfo {
        let mut info = RedisConnectionInfo::default().set_db(self.db);
        if let Some(username) = &self.username {
            info = info.set_username(username);
        }
        if let Some(password) = &self.password {
            info = info.set_password(password);
        }
        info
    }
}

impl Default for RedisClientBuilder {
    fn default() -> Self {
        RedisClientBuilder {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            operation_timeout: None,
            reconnect_retries: DEFAULT_RECONNECT_RETRIES,
            connections: DEFAULT_CONNECTIONS,
            connection_spill: CONNECTION_SPILL,
            sentinel_master: MasterSettings::default(),
            wait: None,
        }
    }
}

impl RedisClientBuilder {
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

    /// Upper bound on one whole call, reconnection and script loading included (default: connect
    /// timeout + 2 × response timeout). A call that takes longer fails with [`Error::Backend`].
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    /// Reconnection attempts after a lost connection, with exponential backoff from 100 ms,
    /// before pending calls fail (default [`DEFAULT_RECONNECT_RETRIES`]). Single node only; the
    /// cluster client reconnects per node on its own, and a client of
    /// [`connect_sentinel`](Self::connect_sentinel) asks the sentinels again on the next call.
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.reconnect_retries = retries;
        self
    }

    /// Every write must be acknowledged by `replicas` replicas within `timeout` (Redis `WAIT`),
    /// or it fails with [`Error::Backend`] saying it was applied on the master but may be lost
    /// in a failover. Off by default (Redis replicates asynchronously: a write the master
    /// acknowledged may be missing from the replica promoted after the master fails).
    ///
    /// Each command that may write (anything but known reads; every script) is sent in one
    /// pipeline with `WAIT <replicas> <timeout>`: the same round trip, plus the time the
    /// replicas take to acknowledge. The client's response timeout is lengthened by `timeout`
    /// (the reply to a write comes after the `WAIT`), and so is the default operation timeout.
    /// `replicas` 0 turns it off; a zero `timeout` counts as 1 ms (`WAIT` with 0 would block
    /// until the replicas answer). See the crate documentation ("Failover and durability") for
    /// what it guarantees.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = (replicas > 0).then_some(Wait { replicas, timeout });
        self
    }

    /// The replica acknowledgement this builder's clients ask for
    /// ([`wait_for_replicas`](Self::wait_for_replicas)): replicas and timeout, or `None`.
    pub fn replica_acknowledgement(&self) -> Option<(u32, Duration)> {
        self.wait.map(|w| (w.replicas, w.timeout))
    }

    /// Sentinel only: the credentials of the master (and replicas) found through
    /// [`connect_sentinel`](Self::connect_sentinel) (`AUTH [username] password`; `None` as user
    /// name for a plain `requirepass`). The sentinels' own credentials go in their URLs.
    pub fn sentinel_master_auth(mut self, username: Option<&str>, password: &str) -> Self {
        self.sentinel_master.username = username.map(str::to_owned);
        self.sentinel_master.password = Some(password.to_owned());
        self
    }

    /// Sentinel only: the database selected on the master found through
    /// [`connect_sentinel`](Self::connect_sentinel) (default 0).
    pub fn sentinel_master_db(mut self, db: i64) -> Self {
        self.sentinel_master.db = db;
        self
    }

    /// How many connections the client opens (default [`DEFAULT_CONNECTIONS`]; clamped to
    /// 1..=[`MAX_CONNECTIONS`]). Each is multiplexed: concurrent calls pipeline onto it. A call
    /// takes the first connection with fewer than [`CONNECTION_SPILL`] calls in flight (or, when
    /// all have that many, the least busy), so a light load stays on one connection, whose
    /// driver task then writes the commands of concurrent calls together and reads their
    /// replies together, and a heavy load spreads the socket work and the parsing of replies
    /// over several driver tasks (each connection has its own); see the crate documentation's
    /// "Performance" section for the measurements behind this and the default. On a cluster
    /// each is a full cluster connection (one socket per node). Each reconnects on its own, so
    /// after an outage up to this many calls can fail, one per connection, before all are back.
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n.clamp(1, MAX_CONNECTIONS);
        self
    }

    /// The number of connections this builder's clients open ([`connections`](Self::connections)).
    pub fn connection_count(&self) -> usize {
        self.connections
    }

    /// How many calls in flight one connection carries before the next call takes another
    /// connection of the pool (default [`CONNECTION_SPILL`], 32; at least 1): see
    /// [`connections`](Self::connections). No effect with one connection.
    ///
    /// The default suits a web app, whose requests spend most of their CPU outside Redis:
    /// concurrent calls stay on one connection, which sends their commands together. A process
    /// that does little besides Redis calls (a worker, a WebSocket registry, a benchmark) is held
    /// back instead by the one driver task that parses every reply of a connection, and gains
    /// from a lower value. Measured on 2 cores with two connections and 16 calls in flight (crate
    /// README, "Performance"): with 8 instead of 32, `loadgen`'s session reads went up by about 40%
    /// and its writes by a third (medians of three processes); an axum app on the store served the same requests per second,
    /// but its read page's p99 rose from about 1.8 to 2.8 ms.
    pub fn connection_spill(mut self, calls: usize) -> Self {
        self.connection_spill = calls.max(1);
        self
    }

    /// The calls in flight per connection before spilling
    /// ([`connection_spill`](Self::connection_spill)).
    pub fn connection_spill_count(&self) -> usize {
        self.connection_spill
    }

    /// The time a reply may take: the response timeout, plus the `WAIT` timeout when writes wait
    /// for replicas (their reply comes after it).
    fn reply_timeout(&self) -> Duration {
        self.response_timeout + self.wait.map_or(Duration::ZERO, |w| w.timeout)
    }

    /// The operation timeout this builder gives its clients: the one set with
    /// [`operation_timeout`](Self::operation_timeout), else connect + 2 × response timeout
    /// (each response timeout lengthened by the `WAIT` timeout of
    /// [`wait_for_replicas`](Self::wait_for_replicas)).
    pub fn effective_operation_timeout(&self) -> Duration {
        self.operation_timeout
            .unwrap_or(self.connect_timeout + self.reply_timeout() * 2)
    }

    /// Connects to one server (or a proxy): `redis://[user:password@]host[:port][/db]`,
    /// `rediss://` for TLS (needs a TLS feature of redis-rs, see the crate documentation), or
    /// `redis+unix:///path`. Fails with [`Error::Backend`] if the URL does not parse or the
    /// server cannot be reached within the operation timeout.
    pub async fn connect(&self, url: &str) -> Result<RedisClient> {
        let client = redis::Client::open(url).map_err(backend)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.reply_timeout()))
            .set_number_of_retries(self.reconnect_retries)
            .set_max_delay(self.connect_timeout);
        let op_timeout = self.effective_operation_timeout();
        let open = async {
            let mut conns = Vec::with_capacity(self.connections);
            for _ in 0..self.connections {
                let manager =
                    ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
                conns.push(Conn::Single(Server::Direct(manager)));
            }
            Ok::<_, redis::RedisError>(conns)
        };
        let conns = tokio::time::timeout(op_timeout, open)
            .await
            .map_err(|_| timed_out(op_timeout))?
            .map_err(backend)?;
        Ok(self.client(conns, Source::Single(client), op_timeout))
    }

    /// Connects to the master that Redis Sentinel names `master_name`, through any of the
    /// `sentinels` (`redis://[user:password@]host:port` each, the sentinels' own credentials).
    /// The master's credentials and database are
    /// [`sentinel_master_auth`](Self::sentinel_master_auth) and
    /// [`sentinel_master_db`](Self::sentinel_master_db).
    ///
    /// The sentinels are asked in the order given (the first that answers `SENTINEL MASTERS`
    /// wins; redis-rs's `SentinelClient`), and the address they name is checked with `ROLE`. Each
    /// connection of the pool asks them again when it fails (I/O error, timeout, dropped
    /// connection) or the server answers `READONLY` (demoted to a replica; that call is sent once
    /// more, to the new master), and when another connection of the client found the master at
    /// a new address. So after a failover the same client writes to the promoted replica. Fails
    /// with [`Error::InvalidInput`] for no sentinel or an empty name, and [`Error::Backend`] if a
    /// URL does not parse or no master is found within the operation timeout.
    pub async fn connect_sentinel<I, S>(
        &self,
        sentinels: I,
        master_name: &str,
    ) -> Result<RedisClient>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let sentinels = sentinels
            .into_iter()
            .map(|url| url.as_ref().into_connection_info())
            .collect::<RedisResult<Vec<_>>>()
            .map_err(backend)?;
        if sentinels.is_empty() {
            return Err(Error::InvalidInput(
                "a Sentinel connection needs at least one sentinel url".into(),
            ));
        }
        if master_name.is_empty() {
            return Err(Error::InvalidInput(
                "a Sentinel connection needs the master's name".into(),
            ));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.reply_timeout()));
        let discovery = Discovery::new(
            sentinels,
            master_name,
            self.sentinel_master.connection_info(),
            config,
        )
        .map_err(backend)?;
        let discovery = Arc::new(discovery);
        let op_timeout = self.effective_operation_timeout();
        let open = async {
            let mut conns = Vec::with_capacity(self.connections);
            for _ in 0..self.connections {
                let conn = SentinelConn::connect(discovery.clone()).await?;
                conns.push(Conn::Single(Server::Sentinel(conn)));
            }
            Ok::<_, redis::RedisError>(conns)
        };
        let conns = tokio::time::timeout(op_timeout, open)
            .await
            .map_err(|_| timed_out(op_timeout))?
            .map_err(backend)?;
        Ok(self.client(conns, Source::Sentinel(discovery), op_timeout))
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://host:port` each, same
    /// credentials and scheme for all). Fails with [`Error::InvalidInput`] for an empty list and
    /// [`Error::Backend`] if no node answers.
    pub async fn connect_cluster<I, S>(&self, urls: I) -> Result<RedisClient>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        if urls.is_empty() {
            return Err(Error::InvalidInput(
                "a cluster connection needs at least one node url".into(),
            ));
        }
        let op_timeout = self.effective_operation_timeout();
        // Subscription connections go to single masters, with the credentials, scheme and
        // database settings of the first url.
        let node = urls[0].as_str().into_connection_info().map_err(backend)?;
        let client = ClusterClient::builder(urls)
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.reply_timeout())
            .overall_response_timeout(Some(op_timeout))
            .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
            .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS)
            .build()
            .map_err(backend)?;
        let open = async {
            let mut conns = Vec::with_capacity(self.connections);
            for _ in 0..self.connections {
                conns.push(Conn::Cluster(client.get_async_connection().await?));
            }
            Ok::<_, redis::RedisError>(conns)
        };
        let conns = tokio::time::timeout(op_timeout, open)
            .await
            .map_err(|_| timed_out(op_timeout))?
            .map_err(backend)?;
        let source = Source::Cluster {
            node: Box::new(node),
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
        };
        Ok(self.client(conns, source, op_timeout))
    }

    /// A client on `conns` (not empty: the builder opens at least one).
    fn client(&self, conns: Vec<Conn>, source: Source, op_timeout: Duration) -> RedisClient {
        #[allow(clippy::expect_used)] // the builder clamps the count to at least 1
        let pool =
            Pool::new(conns, self.connection_spill).expect("a client has at least one connection");
        RedisClient {
            pool: Arc::new(pool),
            source,
            op_timeout,
            wait: self.wait,
        }
    }
}

/// A connection to one Redis server or a Redis Cluster, with the driver's timeouts and error
/// mapping. Made by [`RedisClient::builder`]; the one a store runs on is
/// [`RedisStore::client`](crate::RedisStore::client).
///
/// Cloning is cheap: clones share its connections ([`RedisClientBuilder::connections`], which
/// calls fill one at a time), each a multiplexed connection (one server: a [`ConnectionManager`]
/// that reconnects in the background; through Sentinel: a connection to the master that asks the
/// sentinels again after a failure) or a cluster connection (routed by slot, following
/// `MOVED`/`ASK`). Every call is bounded by the operation timeout and fails with
/// [`Error::Backend`] past it; a redis-rs error becomes [`Error::Backend`], except `WRONGTYPE` (a
/// key holding another Redis type than the command expects), which is [`Error::Corrupt`].
#[derive(Clone)]
pub struct RedisClient {
    pool: Arc<Pool>,
    /// Where subscription connections are opened.
    pub(crate) source: Source,
    pub(crate) op_timeout: Duration,
    /// `WAIT` after every write, if asked for.
    wait: Option<Wait>,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("cluster", &self.is_cluster())
            .field("sentinel", &self.is_sentinel())
            .field("connections", &self.pool.len())
            .field("operation_timeout", &self.op_timeout)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// The connection for the next call (see [`Pool`](crate::conn::Pool): the first with room,
    /// not counting this call).
    pub(crate) fn conn(&self) -> Conn {
        self.pool.pick().clone()
    }

    /// The connection for the next call, counted among that connection's calls in flight while
    /// the handle lives, and following each write with `WAIT` if the client asks for replica
    /// acknowledgements.
    fn handle(&self) -> Handle {
        let (conn, claim) = self.pool.claim();
        Handle {
            conn: conn.clone(),
            wait: self.wait,
            _claim: claim,
        }
    }

    /// A builder with the default timeouts.
    pub fn builder() -> RedisClientBuilder {
        RedisClientBuilder::default()
    }

    /// Whether this client talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.pool.first(), Conn::Cluster(_))
    }

    /// Whether this client finds its server through Redis Sentinel
    /// ([`RedisClientBuilder::connect_sentinel`]).
    pub fn is_sentinel(&self) -> bool {
        matches!(self.source, Source::Sentinel(_))
    }

    /// Sentinel only: the address (`host:port`) of the master the sentinels named last, which
    /// the client's connections use or move to on their next call; `None` for other clients.
    pub fn sentinel_master(&self) -> Option<String> {
        match &self.source {
            Source::Sentinel(discovery) => discovery.last_master(),
            _ => None,
        }
    }

    /// The replica acknowledgement this client asks for after every write
    /// ([`RedisClientBuilder::wait_for_replicas`]): replicas and timeout, or `None`.
    pub fn replica_acknowledgement(&self) -> Option<(u32, Duration)> {
        self.wait.map(|w| (w.replicas, w.timeout))
    }

    /// How many connections this client's calls share ([`RedisClientBuilder::connections`]).
    pub fn connection_count(&self) -> usize {
        self.pool.len()
    }

    /// How many calls in flight one connection carries before the next call takes another
    /// ([`RedisClientBuilder::connection_spill`]).
    pub fn connection_spill(&self) -> usize {
        self.pool.spill()
    }

    /// The bound on one whole call ([`RedisClientBuilder::operation_timeout`]).
    pub fn operation_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// A handle on one of the shared connections (the one the next call would take, counted as
    /// one call in flight on it while the handle lives), for redis-rs calls that
    /// take a [`ConnectionLike`] (`query_async`, `invoke_async`, ...); pass the future to
    /// [`run`](Self::run) to get the timeout and the error mapping. Commands sent through one
    /// handle reach the server in the order they were sent; writes are followed by `WAIT` if
    /// the client asks for it ([`RedisClientBuilder::wait_for_replicas`]).
    pub fn connection(&self) -> Connection {
        Connection(self.handle())
    }

    /// Awaits one exchange with the operation timeout and maps its error to the framework's.
    ///
    /// ```no_run
    /// # async fn demo(client: session_redis::client::RedisClient) -> session_core::Result<()> {
    /// let n: i64 = client
    ///     .run(redis::cmd("DBSIZE").query_async(&mut client.connection()))
    ///     .await?;
    /// # let _ = n; Ok(()) }
    /// ```
    pub async fn run<T>(&self, fut: impl Future<Output = RedisResult<T>>) -> Result<T> {
        match tokio::time::timeout(self.op_timeout, fut).await {
            Ok(result) => result.map_err(backend),
            Err(_) => Err(timed_out(self.op_timeout)),
        }
    }

    /// Runs one command (routed by its first key on a cluster).
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        let mut conn = self.handle();
        self.run(cmd.query_async(&mut conn)).await
    }

    /// Runs a pipeline (`MULTI`/`EXEC` if it is atomic) in one round trip. On a cluster every
    /// key of the pipeline must be in one slot.
    pub async fn query_pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T> {
        let mut conn = self.handle();
        self.run(pipe.query_async(&mut conn)).await
    }

    /// Runs a Lua script with its keys and arguments (`EVALSHA`, loading the script when the
    /// server does not know it). On a cluster every key must be in one slot.
    pub async fn invoke<T: FromRedisValue>(&self, script: &ScriptInvocation<'_>) -> Result<T> {
        let mut conn = self.handle();
        self.run(script.invoke_async(&mut conn)).await
    }

    /// Runs `cmd`, an `EVALSHA` of `lua` made by [`Lua::call`], with the operation timeout. A
    /// server that does not know the script (`NOSCRIPT`: the first call, or after a restart,
    /// failover or `SCRIPT FLUSH`) gets the same call as `EVAL` with the script's source, which
    /// also caches it there: one more round trip, on the node the keys route to (a
    /// `SCRIPT LOAD` would go to every node of a cluster, and fail while one is down).
    ///
    /// The call runs boxed, and the `EVAL` in a box of its own: inline, a write's future held
    /// both calls and the driver's `apply` future came to 1,184 bytes, past the 1,032 bytes of
    /// glibc's per-thread cache, so every write locked a malloc arena to allocate and free it
    /// (see `Session::save` in session-core). Now `apply` takes 568 bytes and this call's box
    /// 616, both in the cache (writes at 16 and 256 in flight, which Redis bounds, measured the
    /// same either way).
    pub(crate) fn eval<'a, T: FromRedisValue + Send + 'a>(
        &'a self,
        lua: &'a Lua,
        cmd: &'a Cmd,
    ) -> Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>> {
        let mut conn = self.handle();
        Box::pin(self.run(async move {
            match cmd.query_async(&mut conn).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    Box::pin(lua.eval(cmd).query_async(&mut conn)).await
                }
                other => other,
            }
        }))
    }

    /// A new dedicated pub/sub connection to the server (a subscription takes a connection of
    /// its own), opened within the operation timeout. It does not reconnect: when its message
    /// stream ends, open another one and subscribe again.
    ///
    /// On a cluster this is [`Error::Unsupported`] (a plain `SUBSCRIBE` connection to one node
    /// would hear the whole cluster's `PUBLISH` traffic): use [`subscribe`](Self::subscribe),
    /// which subscribes to sharded channels on the masters that own them.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub> {
        match &self.source {
            Source::Single(client) => self.run(client.get_async_pubsub()).await,
            Source::Sentinel(discovery) => {
                self.run(async {
                    let (client, _) = discovery.master().await?;
                    client.get_async_pubsub().await
                })
                .await
            }
            Source::Cluster { .. } => Err(Error::unsupported(
                NAME,
                "a plain pub/sub connection on a Redis Cluster (use subscribe)",
            )),
        }
    }
}

/// Where a client opens its subscription connections.
#[derive(Clone)]
pub(crate) enum Source {
    /// One server: the plain client of its url.
    Single(redis::Client),
    /// The master named by Redis Sentinel, asked for each new subscription.
    Sentinel(Arc<Discovery>),
    /// A cluster: the settings of its first url (credentials, scheme, database, TLS), whose
    /// address is replaced by the master's that owns a channel's slot.
    Cluster {
        /// Boxed: it is most of the client's size otherwise (a store is moved around by value).
        node: Box<redis::ConnectionInfo>,
        connect_timeout: Duration,
        response_timeout: Duration,
    },
}

/// A handle on a [`RedisClient`]'s shared connection ([`RedisClient::connection`]): what redis-rs
/// calls take as a [`ConnectionLike`]. Cheap to clone.
#[derive(Clone)]
pub struct Connection(Handle);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("cluster", &matches!(self.0.conn, Conn::Cluster(_)))
            .field("wait", &self.0.wait)
            .finish()
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}
