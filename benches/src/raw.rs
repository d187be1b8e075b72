//! The raw baselines: each backend driven directly with the cheapest operations that do the work
//! of one request, so a driver's overhead is a ratio measured in the same run.
//!
//! This module holds the server backends, driven by async calls from tokio tasks as a program
//! written against their async clients would; the embedded ones (moka, SQLite, sled, files) are
//! driven from OS threads, in [`crate::direct`].
//!
//! A session is a map from key to MessagePack bytes ([`RawData`]). Blob backends keep it as one
//! blob ([`encode_blob`]): the deadline in unix milliseconds (8 bytes, big endian) and the
//! MessagePack encoding of the map, and check the deadline on read. Redis keeps it as a hash with
//! a `PEXPIRE`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;
pub use crate::raw_server::{MemcachedRaw, MySqlRaw, PgRaw};

/// A session as the raw baselines see it: key to MessagePack bytes.
pub type RawData = HashMap<String, Bytes>;

/// One backend, driven without a driver.
#[async_trait]
pub trait Raw: Send + Sync + 'static {
    /// The backend's name ("moka", "rusqlite", ...).
    fn name(&self) -> &'static str;

    /// The whole session, `None` if missing or expired.
    async fn load(&self, id: &str) -> Result<Option<RawData>>;

    /// Writes the session: `full` is the whole map after the change, `changed` the keys that
    /// changed (Redis writes only those; blob backends rewrite the blob). The expiry becomes
    /// now + `ttl`.
    async fn store(&self, id: &str, full: &RawData, changed: &RawData, ttl: Duration)
    -> Result<()>;

    /// Deletes what the baseline wrote outside a temporary directory (Redis keys).
    async fn cleanup(&self) -> Result<()> {
        Ok(())
    }
}

pub(crate) use session_core::check::now_millis;

pub(crate) fn deadline(ttl: Duration) -> u64 {
    now_millis().saturating_add(ttl.as_millis() as u64)
}

/// Encodes a blob: deadline (u64 big endian) ++ MessagePack map.
pub fn encode_blob(deadline: u64, data: &RawData) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1200);
    out.extend_from_slice(&deadline.to_be_bytes());
    rmp_serde::encode::write(&mut out, data)?;
    Ok(out)
}

/// Decodes a blob; `None` when its deadline has passed.
pub fn decode_blob(blob: &[u8]) -> Result<Option<RawData>> {
    let (head, body) = blob
        .split_first_chunk::<8>()
        .ok_or("raw blob shorter than its header")?;
    if u64::from_be_bytes(*head) <= now_millis() {
        return Ok(None);
    }
    Ok(Some(rmp_serde::from_slice(body)?))
}

// ----- redis -------------------------------------------------------------------------------------

/// A hash per session: `HGETALL` to read, one pipelined `HSET` of the changed fields + `PEXPIRE`
/// to write, on as many multiplexed connections as the driver opens by default
/// ([`session_redis::DEFAULT_CONNECTIONS`]), taken in turn as the driver takes its own.
pub struct RedisRaw {
    conns: Vec<redis::aio::ConnectionManager>,
    next: std::sync::atomic::AtomicUsize,
    prefix: String,
}

impl RedisRaw {
    /// Connects to `url`; every key starts with `prefix:`.
    pub async fn open(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let mut conns = Vec::with_capacity(session_redis::DEFAULT_CONNECTIONS);
        for _ in 0..session_redis::DEFAULT_CONNECTIONS {
            conns.push(
                tokio::time::timeout(
                    Duration::from_secs(2),
                    redis::aio::ConnectionManager::new(client.clone()),
                )
                .await
                .map_err(|_| "no answer from Redis within 2 s")??,
            );
        }
        Ok(RedisRaw {
            conns,
            next: std::sync::atomic::AtomicUsize::new(0),
            prefix: prefix.to_string(),
        })
    }

    /// The next connection in turn.
    fn conn(&self) -> redis::aio::ConnectionManager {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.conns[i % self.conns.len()].clone()
    }

    fn key(&self, id: &str) -> String {
        format!("{}:{id}", self.prefix)
    }
}

#[async_trait]
impl Raw for RedisRaw {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn load(&self, id: &str) -> Result<Option<RawData>> {
        let mut conn = self.conn();
        let map: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.key(id))
            .query_async(&mut conn)
            .await?;
        if map.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            map.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect(),
        ))
    }

    async fn store(&self, id: &str, _: &RawData, changed: &RawData, ttl: Duration) -> Result<()> {
        let key = self.key(id);
        let mut hset = redis::cmd("HSET");
        hset.arg(&key);
        for (k, v) in changed {
            hset.arg(k).arg(v.as_ref());
        }
        let mut pipe = redis::pipe();
        pipe.add_command(hset)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl.as_millis() as u64)
            .ignore();
        let mut conn = self.conn();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn cleanup(&self) -> Result<()> {
        let mut conn = self.conn();
        let pattern = format!("{}:*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trips_and_expires() {
        let data = crate::payload::raw_data(7).expect("payload");
        let blob = encode_blob(deadline(Duration::from_secs(60)), &data).expect("encode");
        assert_eq!(decode_blob(&blob).expect("decode"), Some(data.clone()));
        let old = encode_blob(now_millis() - 1, &data).expect("encode");
        assert_eq!(decode_blob(&old).expect("decode"), None);
        assert!(decode_blob(&[1, 2]).is_err());
    }

    async fn round_trip(raw: &dyn Raw) {
        let data = crate::payload::raw_data(1).expect("payload");
        let id = "raw-test-session-0001";
        assert_eq!(raw.load(id).await.expect("load"), None);
        raw.store(id, &data, &data, Duration::from_secs(60))
            .await
            .expect("store");
        assert_eq!(raw.load(id).await.expect("load"), Some(data));
        raw.cleanup().await.expect("cleanup");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_baseline_round_trips() {
        let url = crate::redis_url();
        let raw = RedisRaw::open(&url, &crate::private_prefix("rawtest"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Redis is needed at {url} ({e}): start it with `bash scripts/services` \
                     or set REDIS_URL"
                )
            });
        round_trip(&raw).await;
    }
}
