#![doc = include_str!("../README.md")]

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use session_core::check;
use session_core::{
    Capabilities, ChangeSet, Data, Error, Loaded, LockToken, Result, SessionId, Storage, Value,
};

mod pool;
mod record;

use pool::{Conn, Delete, Outcome, SetMode};
pub use record::{RELATIVE_EXPTIME_MAX, exptime};
use record::{Record, decode_lock, decode_session, encode_lock, encode_session};

/// Name of the backend in errors.
pub(crate) const BACKEND: &str = "memcached";

/// The server the tests and [`MemcachedStore::connect`] examples use: memcached's default port on
/// loopback.
pub const DEFAULT_ADDR: &str = "127.0.0.1:11211";
/// Prefix of every key the driver writes, unless [`MemcachedBuilder::prefix`] sets another.
pub const DEFAULT_PREFIX: &str = "session:";
/// Longest key prefix: with a 128-character id and the `.lock` suffix, every key stays well under
/// memcached's 250-byte key limit.
pub const MAX_PREFIX_LEN: usize = 64;
/// Default number of pooled connections.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Default bound on one memcached command, the connection checkout included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// memcached's default item size limit (`-I 1m`), assumed when the server does not report its own.
pub const DEFAULT_ITEM_SIZE_MAX: usize = 1024 * 1024;
/// Default number of read/compare-and-set rounds a write tries before it gives up.
pub const DEFAULT_CAS_ATTEMPTS: u32 = 500;

/// Configures a [`MemcachedStore`]; made by [`MemcachedStore::builder`].
#[derive(Clone, Debug)]
pub struct MemcachedBuilder {
    prefix: String,
    pool_size: usize,
    timeout: Duration,
    cas_attempts: u32,
    max_item_size: Option<usize>,
}

impl Default for MemcachedBuilder {
    fn default() -> Self {
        MemcachedBuilder {
            prefix: DEFAULT_PREFIX.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            timeout: DEFAULT_TIMEOUT,
            cas_attempts: DEFAULT_CAS_ATTEMPTS,
            max_item_size: None,
        }
    }
}

impl MemcachedBuilder {
    /// Prefix of every key (default [`DEFAULT_PREFIX`]). At most [`MAX_PREFIX_LEN`] bytes of
    /// printable ASCII without spaces (memcached keys allow no spaces or control characters);
    /// checked by [`connect`](Self::connect). May be empty.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Most connections the pool opens (default [`DEFAULT_POOL_SIZE`], at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Bound on one memcached command including the wait for a pooled connection (default
    /// [`DEFAULT_TIMEOUT`]). A command that runs out is an [`Error::Backend`] and its connection
    /// is dropped.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many read/compare-and-set rounds one write tries under contention before it fails with
    /// [`Error::Backend`] (default [`DEFAULT_CAS_ATTEMPTS`], at least 1).
    pub fn cas_attempts(mut self, attempts: u32) -> Self {
        self.cas_attempts = attempts.max(1);
        self
    }

    /// The server's item size limit in bytes (memcached's `-I`). By default it is read from the
    /// server (`stats settings`) when connecting, and taken as memcached's default of 1 MiB if
    /// the server does not say. A session whose item would not fit is refused with
    /// [`Error::InvalidInput`] before it is sent: memcached deletes the stored item when a
    /// larger version of it is refused, so the driver never lets the server refuse one.
    pub fn max_item_size(mut self, bytes: usize) -> Self {
        self.max_item_size = Some(bytes);
        self
    }

    /// Checks the prefix, connects to the server at `addr` (`host:port`, `tcp://host:port`,
    /// `memcache://host:port` or `unix://path`) and checks that it speaks the meta protocol
    /// (memcached 1.6 or later).
    ///
    /// Errors: [`Error::InvalidInput`] for a bad prefix, [`Error::Backend`] when the server cannot
    /// be reached or is too old.
    pub async fn connect(self, addr: &str) -> Result<MemcachedStore> {
        check_prefix(&self.prefix)?;
        let addr = normalize_addr(addr);
        let mut conn = Conn::new(&addr, self.pool_size, self.timeout)?;
        let version = conn.version().await?;
        if !meta_protocol_version(&version) {
            return Err(Error::backend(
                BACKEND,
                format!(
                    "memcached at {addr} is version {}; the meta protocol needs 1.6 or later",
                    version.trim()
                ),
            ));
        }
        let max_item = match self.max_item_size {
            Some(bytes) => bytes,
            None => conn.item_size_max().await.unwrap_or(DEFAULT_ITEM_SIZE_MAX),
        };
        conn.set_max_item(max_item);
        Ok(MemcachedStore {
            inner: Arc::new(Inner {
                conn,
                prefix: self.prefix,
                cas_attempts: self.cas_attempts,
                conflicts: AtomicU64::new(0),
            }),
        })
    }
}

/// Checks a key prefix (see [`MemcachedBuilder::prefix`]).
fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(Error::InvalidInput(format!(
            "memcached key prefix is {} bytes, at most {MAX_PREFIX_LEN} allowed",
            prefix.len()
        )));
    }
    if let Some(pos) = prefix.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(Error::InvalidInput(format!(
            "memcached key prefix has a space, control or non-ASCII byte at {pos}; memcached keys \
             allow printable ASCII only"
        )));
    }
    Ok(())
}

/// The client takes `tcp://host:port` or `unix://path`: a bare `host:port` and the
/// `memcache://` / `memcached://` schemes other clients use become `tcp://host:port`.
fn normalize_addr(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    for scheme in ["memcache://", "memcached://"] {
        if let Some(rest) = addr.strip_prefix(scheme) {
            return format!("tcp://{rest}");
        }
    }
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("tcp://{addr}")
    }
}

/// Whether a `version` reply is 1.6 or later (a version that cannot be parsed, as from a proxy,
/// is given the benefit of the doubt).
fn meta_protocol_version(version: &str) -> bool {
    let mut parts = version.trim().split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= (1, 6),
        _ => true,
    }
}

/// The memcached session store: one item per session, compare-and-set writes, lease locks with
/// `add`. Cheap to clone (the connection pool is shared).
///
/// See the crate documentation for the layout, the round trips of each method and the limits.
#[derive(Clone)]
pub struct MemcachedStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    prefix: String,
    cas_attempts: u32,
    conflicts: AtomicU64,
}

impl std::fmt::Debug for MemcachedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcachedStore")
            .field("addr", &self.inner.conn.addr())
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

/// What a read-modify-write decides after seeing the live session (if any).
enum Change {
    /// Write nothing.
    Keep,
    /// Delete the session.
    Remove,
    /// Store these keys with this deadline (unix ms). Empty data removes the session.
    Write { data: Data, deadline_ms: u64 },
}

impl MemcachedStore {
    /// A builder with the defaults: prefix [`DEFAULT_PREFIX`], [`DEFAULT_POOL_SIZE`] connections,
    /// [`DEFAULT_TIMEOUT`] per command.
    pub fn builder() -> MemcachedBuilder {
        MemcachedBuilder::default()
    }

    /// Connects to the server at `addr` with the defaults (see [`MemcachedBuilder::connect`]).
    pub async fn connect(addr: &str) -> Result<Self> {
        Self::builder().connect(addr).await
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The memcached key of session `id`: `<prefix><id>`.
    pub fn session_key(&self, id: &SessionId) -> String {
        format!("{}{}", self.inner.prefix, id.as_str())
    }

    /// The memcached key of the lease lock of session `id`: `<prefix><id>.lock` (a `.` never
    /// appears in an id, so it cannot be another session's key).
    pub fn lock_key(&self, id: &SessionId) -> String {
        format!("{}{}.lock", self.inner.prefix, id.as_str())
    }

    /// The largest item the store sends (key + value + a fixed overhead must fit): the server's
    /// `-I` limit, or [`MemcachedBuilder::max_item_size`].
    pub fn max_item_size(&self) -> usize {
        self.inner.conn.max_item()
    }

    /// How many compare-and-set rounds lost to a concurrent writer and were retried, since this
    /// store (and its clones) was made. For monitoring contention.
    pub fn cas_conflicts(&self) -> u64 {
        self.inner.conflicts.load(Ordering::Relaxed)
    }

    /// The live session at `id`, if any (one `mg`).
    async fn read(&self, id: &SessionId) -> Result<Option<Record>> {
        let Some(item) = self.inner.conn.get(&self.session_key(id), false).await? else {
            return Ok(None);
        };
        let record = decode_session(&item.data)?;
        Ok(record.live(check::now_millis()).then_some(record))
    }

    /// The read/compare-and-set loop behind every read-modify-write: reads the item with its CAS,
    /// lets `decide` choose from the live session (`None` if missing or expired), and stores the
    /// choice only if nobody changed the item meanwhile (`ms C<cas>`, `md C<cas>`, or `ms ME`
    /// when there was no item); otherwise reads again. Returns whether the session exists after.
    async fn modify<F>(&self, id: &SessionId, mut decide: F) -> Result<bool>
    where
        F: FnMut(Option<Record>, u64) -> Change + Send,
    {
        let conn = &self.inner.conn;
        let key = self.session_key(id);
        for attempt in 0..self.inner.cas_attempts {
            let item = conn.get(&key, true).await?;
            let now = check::now_millis();
            let (cas, live) = match &item {
                None => (None, None),
                Some(item) => {
                    let record = decode_session(&item.data)?;
                    (Some(item.cas), record.live(now).then_some(record))
                }
            };
            let existed = live.is_some();
            let change = match decide(live, now) {
                Change::Write { data, .. } if data.is_empty() => Change::Remove,
                other => other,
            };
            match change {
                Change::Keep => return Ok(existed),
                Change::Remove => {
                    let Some(cas) = cas else { return Ok(false) };
                    if conn.delete(&key, Some(cas)).await? != Delete::Conflict {
                        return Ok(false);
                    }
                }
                Change::Write { data, deadline_ms } => {
                    let bytes = encode_session(deadline_ms, &data)?;
                    let mode = cas.map_or(SetMode::Add, SetMode::Cas);
                    let exp = exptime(deadline_ms, now);
                    if conn.set(&key, &bytes, exp, mode).await? == Outcome::Done {
                        return Ok(true);
                    }
                }
            }
            self.inner.conflicts.fetch_add(1, Ordering::Relaxed);
            backoff(attempt).await;
        }
        Err(Error::backend(
            BACKEND,
            format!(
                "gave up writing a session after {} compare-and-set rounds: concurrent writers \
                 changed it every time",
                self.inner.cas_attempts
            ),
        ))
    }
}

/// Waits a random while before the next compare-and-set round: nothing the first time, then up to
/// 1, 2, 4 ... 32 ms, so contending writers spread out.
async fn backoff(attempt: u32) {
    if attempt == 0 {
        tokio::task::yield_now().await;
        return;
    }
    let cap_us = 1000u64 << attempt.min(5);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    tokio::time::sleep(Duration::from_micros(hasher.finish() % cap_us)).await;
}

/// Checks every key of `data`.
fn check_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<()> {
    keys.into_iter().try_for_each(|k| check::key(k))
}

#[async_trait]
impl Storage for MemcachedStore {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_apply: true,
            load_with_deadline: true,
            owner_index: false,
            lock: true,
            purge: true,
            scan: false,
            native_expiry: true,
        }
    }

    async fn new(&self, ttl: Duration) -> Result<Option<SessionId>> {
        check::ttl_millis(ttl)?;
        Ok(None)
    }

    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        check::key(key)?;
        Ok(self.read(id).await?.and_then(|mut r| r.data.remove(key)))
    }

    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        Ok(self.read(id).await?.map(|r| r.data).unwrap_or_default())
    }

    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        Ok(self.read(id).await?.map_or(0, |r| r.data.len()))
    }

    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Duration) -> Result<()> {
        check::key(key)?;
        let ttl = check::ttl_millis(ttl)?;
        self.modify(id, |live, now| {
            let mut data = live.map(|r| r.data).unwrap_or_default();
            data.insert(key.to_owned(), value.clone());
            Change::Write {
                data,
                deadline_ms: now + ttl,
            }
        })
        .await?;
        Ok(())
    }

    async fn set_map(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        check_keys(data.keys())?;
        let ttl = check::ttl_millis(ttl)?;
        self.modify(id, |live, now| {
            let Some(record) = live else {
                if data.is_empty() {
                    return Change::Keep;
                }
                return Change::Write {
                    data: data.clone(),
                    deadline_ms: now + ttl,
                };
            };
            let mut merged = record.data;
            merged.extend(data.iter().map(|(k, v)| (k.clone(), v.clone())));
            Change::Write {
                data: merged,
                deadline_ms: now + ttl,
            }
        })
        .await?;
        Ok(())
    }

    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        check::key(key)?;
        self.modify(id, |live, _| {
            let Some(mut record) = live else {
                return Change::Keep;
            };
            if record.data.remove(key).is_none() {
                return Change::Keep;
            }
            Change::Write {
                data: record.data,
                deadline_ms: record.deadline_ms,
            }
        })
        .await?;
        Ok(())
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.inner
            .conn
            .delete(&self.session_key(id), None)
            .await
            .map(drop)
    }

    async fn get_session(
        &self,
        id: &SessionId,
        _ttl: Duration,
        _cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        Ok(self.read(id).await?.map(|r| r.data))
    }

    async fn set_session(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        check_keys(data.keys())?;
        let ttl = check::ttl_millis(ttl)?;
        if data.is_empty() {
            return self.remove_all(id).await;
        }
        let now = check::now_millis();
        let deadline_ms = now + ttl;
        let bytes = encode_session(deadline_ms, &data)?;
        self.inner
            .conn
            .set(
                &self.session_key(id),
                &bytes,
                exptime(deadline_ms, now),
                SetMode::Set,
            )
            .await
            .map(drop)
    }

    async fn update_ttl(&self, id: &SessionId, ttl: Duration) -> Result<()> {
        let ttl = check::ttl_millis(ttl)?;
        self.modify(id, |live, now| match live {
            Some(record) => Change::Write {
                data: record.data,
                deadline_ms: now + ttl,
            },
            None => Change::Keep,
        })
        .await?;
        Ok(())
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, ttl: Duration) -> Result<bool> {
        let ttl = check::ttl_millis(ttl)?;
        check_keys(changes.remove.iter().chain(changes.set.keys()))?;
        self.modify(id, |live, now| {
            if live.is_none() && changes.only_if_exists {
                return Change::Keep;
            }
            let existed = live.is_some();
            let mut data = live.map(|r| r.data).unwrap_or_default();
            if changes.clear {
                data.clear();
            }
            for key in &changes.remove {
                data.remove(key);
            }
            data.extend(changes.set.iter().map(|(k, v)| (k.clone(), v.clone())));
            match (data.is_empty(), existed) {
                (true, true) => Change::Remove,
                (true, false) => Change::Keep,
                (false, _) => Change::Write {
                    data,
                    deadline_ms: now + ttl,
                },
            }
        })
        .await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        Ok(self.read(id).await?.map(|r| Loaded {
            data: r.data.into(),
            expires_at: Some(check::from_unix_millis(r.deadline_ms)),
        }))
    }

    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        let lease = check::ttl_millis(lease)?;
        let conn = &self.inner.conn;
        let key = self.lock_key(id);
        let token = LockToken::generate()?;
        for attempt in 0..self.inner.cas_attempts {
            let now = check::now_millis();
            let deadline = now + lease;
            let item = encode_lock(deadline, token.as_str());
            let exp = exptime(deadline, now);
            if conn.set(&key, &item, exp, SetMode::Add).await? == Outcome::Done {
                return Ok(Some(token));
            }
            // Someone holds the key; take it over only if its lease ran out by our clock, and
            // only if nobody else took it over first (compare-and-set).
            let Some(held) = conn.get(&key, true).await? else {
                backoff(attempt).await;
                continue; // released meanwhile: try the add again
            };
            let (held_until, _) = decode_lock(&held.data)?;
            let now = check::now_millis();
            if held_until > now {
                return Ok(None);
            }
            let deadline = now + lease;
            let item = encode_lock(deadline, token.as_str());
            let exp = exptime(deadline, now);
            return match conn.set(&key, &item, exp, SetMode::Cas(held.cas)).await? {
                Outcome::Done => Ok(Some(token)),
                Outcome::Conflict => Ok(None),
            };
        }
        Ok(None)
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let conn = &self.inner.conn;
        let key = self.lock_key(id);
        let Some(held) = conn.get(&key, true).await? else {
            return Ok(false);
        };
        let (held_until, held_token) = decode_lock(&held.data)?;
        if held_token != token.as_str().as_bytes() || held_until <= check::now_millis() {
            return Ok(false);
        }
        Ok(conn.delete(&key, Some(held.cas)).await? == Delete::Deleted)
    }

    async fn purge_expired(&self) -> Result<u64> {
        // memcached frees expired items by itself (native_expiry), and a session past its
        // deadline already reads as missing: there is nothing to do.
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert!(check_prefix("").is_ok());
        assert!(check_prefix(DEFAULT_PREFIX).is_ok());
        assert!(check_prefix("ci_session:").is_ok());
        assert!(check_prefix(&"p".repeat(MAX_PREFIX_LEN)).is_ok());
        for bad in [
            "has space",
            "tab\t",
            "new\nline",
            "nul\0",
            "é",
            &"p".repeat(MAX_PREFIX_LEN + 1),
        ] {
            assert!(
                matches!(check_prefix(bad), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn longest_keys_fit_memcached() {
        let longest = MAX_PREFIX_LEN + SessionId::MAX_LEN + ".lock".len();
        assert!(longest <= 250, "{longest}");
    }

    #[test]
    fn addresses_and_versions() {
        assert_eq!(
            normalize_addr("memcache://127.0.0.1:11211"),
            "tcp://127.0.0.1:11211"
        );
        assert_eq!(normalize_addr("memcached://h:1/"), "tcp://h:1");
        assert_eq!(normalize_addr("127.0.0.1:11211"), "tcp://127.0.0.1:11211");
        assert_eq!(normalize_addr("tcp://h:1"), "tcp://h:1");
        assert_eq!(normalize_addr("unix:///run/mc.sock"), "unix:///run/mc.sock");
        assert!(meta_protocol_version("1.6.18\r\n"));
        assert!(meta_protocol_version("1.10.0"));
        assert!(!meta_protocol_version("1.5.22"));
        assert!(meta_protocol_version("proxy"));
    }
}
