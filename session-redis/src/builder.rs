//! [`RedisStoreBuilder`]: key prefix, timeouts, reconnection; opens a [`RedisStore`] on one
//! server or a cluster.

use std::time::Duration;

use redis::cluster::ClusterClient;
use session_core::driver::{Error, Result};

use crate::conn::{Conn, backend, timed_out};
use crate::keys::Keys;
use crate::store::RedisStore;

/// The key prefix a store uses unless told otherwise.
pub const DEFAULT_PREFIX: &str = "session";
/// Default time allowed to open one TCP (or TLS) connection to a server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time allowed for one reply from a server.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Default number of reconnection attempts after a connection is lost, before the pending
/// commands fail (the next command starts a new round of attempts).
pub const DEFAULT_RECONNECT_RETRIES: usize = 2;

/// Options of a [`RedisStore`]: key prefix and timeouts. Made by [`RedisStore::builder`].
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
        Ok(RedisStore::new(Conn::Single(manager), keys, op_timeout))
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
        Ok(RedisStore::new(Conn::Cluster(conn), keys, op_timeout))
    }
}
