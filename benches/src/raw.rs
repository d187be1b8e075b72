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
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Encodes a blob: deadline (u64 big endian) ++ MessagePack map of key (`str`) to value
/// (`bin`), written with `rmp`'s primitives (no serde pass), as the drivers' record codec does.
pub fn encode_blob(deadline: u64, data: &RawData) -> Result<Vec<u8>> {
    use rmp::encode::{write_bin, write_map_len, write_str};
    let values: usize = data.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
    let mut out = Vec::with_capacity(8 + 5 + values);
    out.extend_from_slice(&deadline.to_be_bytes());
    write_map_len(&mut out, u32::try_from(data.len())?)?;
    for (key, value) in data {
        write_str(&mut out, key)?;
        write_bin(&mut out, value)?;
    }
    Ok(out)
}

/// Decodes a blob; `None` when its deadline has passed. Copies the blob once, into one buffer
/// that every value then shares ([`decode_blob_shared`]).
pub fn decode_blob(blob: &[u8]) -> Result<Option<RawData>> {
    if blob_expired(blob)? {
        return Ok(None);
    }
    decode_blob_shared(Bytes::copy_from_slice(blob))
}

/// Whether a blob's deadline has passed (reading only its header).
fn blob_expired(blob: &[u8]) -> Result<bool> {
    let (head, _) = blob
        .split_first_chunk::<8>()
        .ok_or("raw blob shorter than its header")?;
    Ok(u64::from_be_bytes(*head) <= now_millis())
}

/// Decodes a blob already in a [`Bytes`] (moka's values, a file read into a `Vec`) without
/// copying any value: each is a slice of `blob`; `None` when its deadline has passed. The
/// cheapest decoding of these bytes there is (the floor pays less than a driver here: the
/// drivers' record codec copies each value into its own buffer).
pub fn decode_blob_shared(blob: Bytes) -> Result<Option<RawData>> {
    use rmp::decode::{read_bin_len, read_map_len, read_str_len};
    if blob_expired(&blob)? {
        return Ok(None);
    }
    let mut rd: &[u8] = &blob[8..];
    let n = read_map_len(&mut rd)?;
    let mut data = RawData::with_capacity((n as usize).min(1024));
    for _ in 0..n {
        let len = read_str_len(&mut rd)? as usize;
        let (key, rest) = rd.split_at_checked(len).ok_or("raw blob: truncated key")?;
        let key = std::str::from_utf8(key)?.to_owned();
        rd = rest;
        let len = read_bin_len(&mut rd)? as usize;
        let start = blob.len() - rd.len();
        let end = start
            .checked_add(len)
            .filter(|&end| end <= blob.len())
            .ok_or("raw blob: truncated value")?;
        data.insert(key, blob.slice(start..end));
        rd = &blob[end..];
    }
    if !rd.is_empty() {
        return Err("raw blob: bytes after the map".into());
    }
    Ok(Some(data))
}

// ----- redis -------------------------------------------------------------------------------------

/// A hash per session: `HGETALL` to read, one pipelined `HSET` of the changed fields + `PEXPIRE`
/// to write, on as many multiplexed connections as the driver opens by default
/// ([`session_redis::DEFAULT_CONNECTIONS`]), taken as the driver takes its own: the first with
/// fewer than the spill threshold's calls in flight (the driver's default,
/// [`session_redis::client::CONNECTION_SPILL`], unless a run sets both), else the least busy
/// (a light load stays on one connection, whose commands then go out and come back together).
pub struct RedisRaw {
    conns: Vec<redis::aio::ConnectionManager>,
    in_flight: Vec<AtomicUsize>,
    prefix: String,
    spill: usize,
}

/// A call counted among its connection's calls in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RedisRaw {
    /// Connects to `url`; every key starts with `prefix:`; a connection carries up to `spill`
    /// calls in flight before the next call takes another (the driver's
    /// `connection_spill`).
    pub async fn open(url: &str, prefix: &str, spill: usize) -> Result<Self> {
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
            in_flight: conns.iter().map(|_| AtomicUsize::new(0)).collect(),
            conns,
            prefix: prefix.to_string(),
            spill: spill.max(1),
        })
    }

    /// The connection for the next call, and the call's place among its calls in flight.
    fn conn(&self) -> (redis::aio::ConnectionManager, InFlight<'_>) {
        let mut least = (0, usize::MAX);
        for (slot, calls) in self.in_flight.iter().enumerate() {
            let calls = calls.load(Ordering::Relaxed);
            if calls < self.spill {
                least = (slot, calls);
                break;
            }
            if calls < least.1 {
                least = (slot, calls);
            }
        }
        let count = &self.in_flight[least.0];
        count.fetch_add(1, Ordering::Relaxed);
        (self.conns[least.0].clone(), InFlight(count))
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
        let (mut conn, _in_flight) = self.conn();
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
        let (mut conn, _in_flight) = self.conn();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    async fn cleanup(&self) -> Result<()> {
        let (mut conn, _in_flight) = self.conn();
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
        // Truncated anywhere: an error, never a panic.
        for cut in 8..blob.len() {
            assert!(decode_blob(&blob[..cut]).is_err(), "cut at {cut}");
        }
        let shared = decode_blob_shared(Bytes::from(blob.clone())).expect("decode");
        assert_eq!(shared, Some(data.clone()));
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
        let spill = session_redis::client::CONNECTION_SPILL;
        let raw = RedisRaw::open(&url, &crate::private_prefix("rawtest"), spill)
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
