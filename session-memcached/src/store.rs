//! [`MemcachedStore`] and its [`Driver`] implementation.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use session_core::driver::record::Record;
use session_core::driver::{
    Capabilities, ChangeSet, Data, Driver, Error, Expiry, Loaded, LockToken, Result, SessionId,
    Ttl, async_trait, check,
};

use crate::NAME;
use crate::builder::MemcachedStoreBuilder;
use crate::items::{decode_lock, encode_lock, exptime};
use crate::pool::{Conn, Delete, Outcome, SetMode};

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
    /// Store this record. One without keys removes the session.
    Write(Record),
}

impl MemcachedStore {
    /// A builder with the defaults: prefix [`DEFAULT_PREFIX`](crate::DEFAULT_PREFIX),
    /// [`DEFAULT_POOL_SIZE`](crate::DEFAULT_POOL_SIZE) connections,
    /// [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT) per command.
    pub fn builder() -> MemcachedStoreBuilder {
        MemcachedStoreBuilder::default()
    }

    /// Opens a store on the server at `addr` with the defaults (see
    /// [`MemcachedStoreBuilder::open`]).
    pub async fn open(addr: &str) -> Result<Self> {
        Self::builder().open(addr).await
    }

    pub(crate) fn new(conn: Conn, prefix: String, cas_attempts: u32) -> Self {
        MemcachedStore {
            inner: Arc::new(Inner {
                conn,
                prefix,
                cas_attempts,
                conflicts: AtomicU64::new(0),
            }),
        }
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
    /// `-I` limit, or [`MemcachedStoreBuilder::max_item_size`].
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
        let record = Record::decode(&item.data, NAME)?;
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
                    let record = Record::decode(&item.data, NAME)?;
                    (Some(item.cas), record.live(now).then_some(record))
                }
            };
            let existed = live.is_some();
            let change = match decide(live, now) {
                Change::Write(record) if record.data.is_empty() => Change::Remove,
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
                Change::Write(record) => {
                    let bytes = record.encode()?;
                    let mode = cas.map_or(SetMode::Add, SetMode::Cas);
                    let exp = exptime(record.deadline_ms, now);
                    if conn.set(&key, &bytes, exp, mode).await? == Outcome::Done {
                        return Ok(true);
                    }
                }
            }
            self.inner.conflicts.fetch_add(1, Ordering::Relaxed);
            backoff(attempt).await;
        }
        Err(Error::backend(
            NAME,
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

#[async_trait]
impl Driver for MemcachedStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            load_with_deadline: true,
            owner_index: false,
            lock: true,
            purge: true,
            scan: false,
            native_expiry: true,
        }
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        Ok(self.read(id).await?.map(Record::into_loaded))
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        self.modify(id, |live, now| {
            let existed = live.is_some();
            if !existed && (changes.only_if_exists || !expiry.may_create()) {
                return Change::Keep;
            }
            let mut record = live.unwrap_or_default();
            let mut changed = changes.clear || !changes.set.is_empty();
            if changes.clear {
                record.data.clear();
            }
            for key in &changes.remove {
                changed |= record.data.remove(key).is_some();
            }
            if let Some(ttl) = expiry.ttl() {
                record.deadline_ms = now + ttl.as_millis();
            } else if !changed {
                // Removing absent keys, keeping the deadline: nothing to write.
                return Change::Keep;
            }
            record
                .data
                .extend(changes.set.iter().map(|(k, v)| (k.clone(), v.clone())));
            match (record.data.is_empty(), existed) {
                (true, true) => Change::Remove,
                (true, false) => Change::Keep,
                (false, _) => Change::Write(record),
            }
        })
        .await
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.inner
            .conn
            .delete(&self.session_key(id), None)
            .await
            .map(drop)
    }

    // Kept: one blind `ms` instead of `mg` and `ms C<cas>` (a replace needs nothing of the old
    // item, and this driver keeps no owner in it).
    async fn set_session(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        if data.is_empty() {
            return self.remove_all(id).await;
        }
        let now = check::now_millis();
        let record = Record::new(now + ttl.as_millis(), data);
        let bytes = record.encode()?;
        self.inner
            .conn
            .set(
                &self.session_key(id),
                &bytes,
                exptime(record.deadline_ms, now),
                SetMode::Set,
            )
            .await
            .map(drop)
    }

    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        let lease = lease.as_millis();
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
