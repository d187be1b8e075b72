//! [`RedisStoreBuilder`]: key prefix, timeouts, reconnection; opens a [`RedisStore`] on one
//! server or a cluster.

use std::time::Duration;

use session_core::driver::Result;

use crate::client::RedisClientBuilder;
use crate::keys::Keys;
use crate::store::RedisStore;

/// The key prefix a store uses unless told otherwise.
pub const DEFAULT_PREFIX: &str = "session";

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
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        RedisStoreBuilder {
            prefix: DEFAULT_PREFIX.to_owned(),
            client: RedisClientBuilder::default(),
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

    /// How many connections the store opens, which its calls take in turn (default
    /// [`DEFAULT_CONNECTIONS`](crate::DEFAULT_CONNECTIONS)); see
    /// [`RedisClientBuilder::connections`].
    pub fn connections(mut self, n: usize) -> Self {
        self.client = self.client.connections(n);
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
        Ok(RedisStore::new(client, keys))
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
        Ok(RedisStore::new(client, keys))
    }
}
