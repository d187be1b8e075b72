//! [`RedisStoreBuilder`]: key prefix, timeouts, reconnection, replica acknowledgements; opens a
//! [`RedisStore`] on one server, on the master named by Redis Sentinel, or on a cluster.

use std::time::Duration;

use session_core::driver::Result;

use crate::client::RedisClientBuilder;
use crate::keys::Keys;
use crate::store::RedisStore;

/// The key prefix a store uses unless told otherwise.
pub const DEFAULT_PREFIX: &str = "session";

/// How far the live index rounds a session's deadline up unless told otherwise
/// ([`RedisStoreBuilder::live_index_granularity`]): 10 seconds.
pub const DEFAULT_LIVE_INDEX_GRANULARITY: Duration = Duration::from_secs(10);

/// Options of a [`RedisStore`]: key prefix, and the connection options of its
/// [`RedisClient`](crate::client::RedisClient) (a [`RedisClientBuilder`], whose setters this
/// builder forwards). Made by [`RedisStore::builder`].
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
    client: RedisClientBuilder,
    granularity: Duration,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        RedisStoreBuilder {
            prefix: DEFAULT_PREFIX.to_owned(),
            client: RedisClientBuilder::default(),
            granularity: DEFAULT_LIVE_INDEX_GRANULARITY,
        }
    }
}

impl RedisStoreBuilder {
    /// The key prefix (default [`DEFAULT_PREFIX`]): every key the store writes starts with
    /// `<prefix>:`. 1 to 128 bytes, no braces (`{}`), glob characters (`*?[]\`) or whitespace
    /// ([`check_prefix`](crate::client::check_prefix)); checked when the store is opened,
    /// before connecting.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How far the live index (what `scan` and `purge_expired` read) rounds a session's
    /// deadline up (default [`DEFAULT_LIVE_INDEX_GRANULARITY`]; at least 1 ms). The index scores
    /// each session with its deadline rounded up to a multiple of this and only ever raises a
    /// score (`ZADD GT`, Redis 6.2+), so the writes of a session in use within one such span
    /// leave the sorted set as it is (no reordering, nothing replicated): the cost of the index
    /// on the write path falls to one lookup. What it costs: an expired session's entry stays in
    /// the index up to this much longer before a write's trim removes it (`scan` never returns
    /// it: a page asks whether each session's hash still exists; `purge_expired` removes it at
    /// once, asking the same of the entries scored within this span ahead). Stores with different
    /// granularities may share a prefix. 1 ms scores every session with its exact deadline (a
    /// sorted-set update on nearly every write).
    pub fn live_index_granularity(mut self, granularity: Duration) -> Self {
        self.granularity = granularity;
        self
    }

    /// Time allowed to open one connection to a server
    /// (default [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT));
    /// see [`RedisClientBuilder::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.connect_timeout(timeout);
        self
    }

    /// Time allowed for one reply
    /// (default [`DEFAULT_RESPONSE_TIMEOUT`](crate::DEFAULT_RESPONSE_TIMEOUT));
    /// see [`RedisClientBuilder::response_timeout`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.response_timeout(timeout);
        self
    }

    /// Upper bound on one whole storage call, reconnection and script loading included
    /// (default: connect timeout + 2 × response timeout). A call that takes longer fails with
    /// [`Error::Backend`](session_core::Error::Backend); see
    /// [`RedisClientBuilder::operation_timeout`].
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.client = self.client.operation_timeout(timeout);
        self
    }

    /// Reconnection attempts after a lost connection, with exponential backoff from 100 ms,
    /// before pending calls fail (default
    /// [`DEFAULT_RECONNECT_RETRIES`](crate::DEFAULT_RECONNECT_RETRIES)). Single node only; the
    /// cluster client reconnects per node on its own.
    pub fn reconnect_retries(mut self, retries: usize) -> Self {
        self.client = self.client.reconnect_retries(retries);
        self
    }

    /// How many connections the store opens, which its calls share (default
    /// [`DEFAULT_CONNECTIONS`](crate::DEFAULT_CONNECTIONS)); see
    /// [`RedisClientBuilder::connections`].
    pub fn connections(mut self, n: usize) -> Self {
        self.client = self.client.connections(n);
        self
    }

    /// How many calls in flight one connection carries before the next call takes another
    /// (default [`CONNECTION_SPILL`](crate::client::CONNECTION_SPILL)); see
    /// [`RedisClientBuilder::connection_spill`] for when a lower value pays.
    pub fn connection_spill(mut self, calls: usize) -> Self {
        self.client = self.client.connection_spill(calls);
        self
    }

    /// Every write must be acknowledged by `replicas` replicas within `timeout` (Redis `WAIT`),
    /// or it fails with [`Error::Backend`](session_core::Error::Backend) saying it was applied
    /// on the master but may be lost in a failover. Off by default; see
    /// [`RedisClientBuilder::wait_for_replicas`] and the crate documentation ("Failover and
    /// durability").
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.client = self.client.wait_for_replicas(replicas, timeout);
        self
    }

    /// Sentinel only: the credentials of the master found through
    /// [`open_sentinel`](Self::open_sentinel) (`None` as user name for a plain `requirepass`);
    /// see [`RedisClientBuilder::sentinel_master_auth`].
    pub fn sentinel_master_auth(mut self, username: Option<&str>, password: &str) -> Self {
        self.client = self.client.sentinel_master_auth(username, password);
        self
    }

    /// Sentinel only: the database selected on the master found through
    /// [`open_sentinel`](Self::open_sentinel) (default 0).
    pub fn sentinel_master_db(mut self, db: i64) -> Self {
        self.client = self.client.sentinel_master_db(db);
        self
    }

    /// Connects to one server (or a proxy): `redis://[user:password@]host[:port][/db]`,
    /// `rediss://` for TLS (needs a TLS feature of redis-rs, see the crate documentation), or
    /// `redis+unix:///path`. Fails with [`Error::InvalidInput`](session_core::Error::InvalidInput)
    /// for a bad prefix (before connecting) and
    /// [`Error::Backend`](session_core::Error::Backend) if the server cannot be reached
    /// ([`RedisClientBuilder::connect`]).
    pub async fn open(self, url: &str) -> Result<RedisStore> {
        let keys = Keys::new(&self.prefix, false)?;
        let client = self.client.connect(url).await?;
        Ok(RedisStore::new(client, keys, self.granularity))
    }

    /// Connects to the master that Redis Sentinel calls `master_name`, through any of the
    /// `sentinels` (`redis://[user:password@]host:port`, usually port 26379). After a failover
    /// the store moves to the promoted replica by itself: each connection asks the sentinels
    /// again once it fails or finds the server demoted (see
    /// [`RedisClientBuilder::connect_sentinel`] and the crate documentation, "Redis Sentinel").
    /// Fails with [`Error::InvalidInput`](session_core::Error::InvalidInput) for a bad prefix, no
    /// sentinel or an empty name, and [`Error::Backend`](session_core::Error::Backend) if no
    /// master is found.
    ///
    /// ```no_run
    /// use session_redis::RedisStore;
    ///
    /// # async fn demo() -> session_core::Result<()> {
    /// let store = RedisStore::builder()
    ///     .prefix("myapp:sess")
    ///     .sentinel_master_auth(None, "master-password")
    ///     .open_sentinel(
    ///         ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
    ///         "mymaster",
    ///     )
    ///     .await?;
    /// # let _ = store; Ok(()) }
    /// ```
    pub async fn open_sentinel<I, S>(self, sentinels: I, master_name: &str) -> Result<RedisStore>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = Keys::new(&self.prefix, false)?;
        let client = self.client.connect_sentinel(sentinels, master_name).await?;
        Ok(RedisStore::new(client, keys, self.granularity))
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://host:port` each, same
    /// credentials and scheme for all). Fails with
    /// [`Error::Backend`](session_core::Error::Backend) if no node answers
    /// ([`RedisClientBuilder::connect_cluster`]).
    pub async fn open_cluster<I, S>(self, urls: I) -> Result<RedisStore>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = Keys::new(&self.prefix, true)?;
        let client = self.client.connect_cluster(urls).await?;
        Ok(RedisStore::new(client, keys, self.granularity))
    }
}
