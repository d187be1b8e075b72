//! [`RedisBackendBuilder`]: the key prefix and session-redis's connection options of a
//! [`RedisBackend`].

use std::time::Duration;

use session_core::Result;
use session_redis::client::{RedisClient, RedisClientBuilder, check_prefix};

use crate::RedisBackend;

/// The prefix of every key and channel when none is given.
pub const DEFAULT_PREFIX: &str = "connect";

/// Default time allowed for one reply of the server. The connect timeout and the reconnection
/// retries default to session-redis's ([`session_redis::DEFAULT_CONNECT_TIMEOUT`], 1 s;
/// [`session_redis::DEFAULT_RECONNECT_RETRIES`], 2), so a whole call is bounded by 5 s unless
/// the [`RedisBackendBuilder::client`] options say otherwise.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Options of a [`RedisBackend`]: the key and channel prefix, and session-redis's connection
/// options (a [`RedisClientBuilder`]). Made by [`RedisBackend::builder`].
///
/// ```no_run
/// use std::time::Duration;
/// use session_connect::RedisBackend;
/// use session_redis::client::RedisClient;
///
/// # async fn demo() -> session_core::Result<()> {
/// let backend = RedisBackend::builder()
///     .prefix("myapp:conn")
///     .client(
///         RedisClient::builder()
///             .connect_timeout(Duration::from_millis(500))
///             .response_timeout(Duration::from_secs(1)),
///     )
///     .open("redis://127.0.0.1:6379")
///     .await?;
/// # let _ = backend; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RedisBackendBuilder {
    prefix: String,
    client: RedisClientBuilder,
}

impl Default for RedisBackendBuilder {
    fn default() -> Self {
        RedisBackendBuilder {
            prefix: DEFAULT_PREFIX.to_owned(),
            client: RedisClient::builder().response_timeout(DEFAULT_RESPONSE_TIMEOUT),
        }
    }
}

impl RedisBackendBuilder {
    /// The prefix of every key and channel (default [`DEFAULT_PREFIX`]). It must pass
    /// session-redis's [`check_prefix`]: 1 to 128 bytes, no braces, glob characters (`*?[]\`)
    /// or whitespace, since it is part of every key and of the `SCAN` pattern of
    /// [`RedisBackend::clear_prefix`]. Checked by [`open`](Self::open), before connecting.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The connection options: timeouts and reconnection, as session-redis's
    /// [`RedisClientBuilder`] takes them (connect timeout, response timeout, operation timeout,
    /// reconnect retries). Replaces the defaults (session-redis's, with a response timeout of
    /// [`DEFAULT_RESPONSE_TIMEOUT`]). The operation timeout also bounds opening the backend and
    /// each subscription; the connect timeout, opening each subscription connection.
    pub fn client(mut self, client: RedisClientBuilder) -> Self {
        self.client = client;
        self
    }

    /// Checks the prefix, then connects to the server at `url` (`redis://host:port/db`,
    /// `redis://user:password@host`, `rediss://` for TLS with a TLS feature of redis-rs,
    /// `redis+unix:///path`; see session-redis's documentation). Fails with
    /// [`Error::InvalidInput`](session_core::Error::InvalidInput) for a bad prefix and
    /// [`Error::Backend`](session_core::Error::Backend) if the URL does not parse or the server
    /// does not answer within the operation timeout.
    ///
    /// For a Redis Cluster, see [`open_cluster`](Self::open_cluster).
    pub async fn open(self, url: &str) -> Result<RedisBackend> {
        check_prefix(&self.prefix)?;
        let client = self.client.connect(url).await?;
        Ok(RedisBackend::new(client, self.prefix))
    }

    /// Checks the prefix, then connects to a Redis Cluster (7.0 or later, for sharded pub/sub)
    /// through any of its nodes (`redis://host:port` each, same credentials and scheme for all;
    /// session-redis's [`RedisClientBuilder::connect_cluster`]). Every key of the registry
    /// carries the hash tag `{prefix}`, so the registry lives in one slot and its scripts stay
    /// atomic; node inboxes are sharded channels with their own tags (see the crate README).
    /// Fails with [`Error::InvalidInput`](session_core::Error::InvalidInput) for a bad prefix or
    /// an empty list, and [`Error::Backend`](session_core::Error::Backend) if no node answers
    /// within the operation timeout.
    pub async fn open_cluster<I, S>(self, urls: I) -> Result<RedisBackend>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        check_prefix(&self.prefix)?;
        let client = self.client.connect_cluster(urls).await?;
        Ok(RedisBackend::new(client, self.prefix))
    }
}
