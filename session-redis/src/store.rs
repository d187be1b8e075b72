//! [`RedisStore`] and its [`Driver`] implementation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use session_core::driver::{
    Capabilities, ChangeSet, Data, Driver, Expiry, Loaded, LockToken, Packed, Result, ScanPage,
    SessionId, Ttl, Value, async_trait, check,
};

use crate::NAME;
use crate::builder::RedisStoreBuilder;
use crate::client::RedisClient;
use crate::keys::{DEADLINE_FIELD, FOLDED_META, FOLDED_SEEN, Keys};
use crate::reply::{is_past, parse_deadline, parse_hash, unfold};
use crate::scripts;

/// A session store on Redis: one hash per session, expired by Redis itself to the millisecond.
///
/// Cloning is cheap: clones share one [`RedisClient`]: one multiplexed connection (or one
/// cluster connection), which reconnects by itself after the server goes away. Make one with
/// [`RedisStore::open`], [`RedisStore::open_cluster`] or [`RedisStore::builder`]. See the crate
/// documentation for the key layout and the round trips of each method.
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) client: RedisClient,
    pub(crate) keys: Keys,
    /// Writes that added to the live index, counted so that every
    /// [`TRIM_EVERY`](scripts::TRIM_EVERY)th one trims it (shared by clones).
    writes: Arc<AtomicU32>,
    /// The live index's granularity in milliseconds
    /// ([`RedisStoreBuilder::live_index_granularity`]).
    pub(crate) granularity: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix())
            .field("cluster", &self.is_cluster())
            .field("operation_timeout", &self.client.operation_timeout())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to one server with the default options (prefix
    /// [`DEFAULT_PREFIX`](crate::DEFAULT_PREFIX)); see [`RedisStoreBuilder::open`] for the URL
    /// forms.
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

    pub(crate) fn new(client: RedisClient, keys: Keys, granularity: Duration) -> RedisStore {
        RedisStore {
            client,
            keys,
            writes: Arc::default(),
            granularity: u64::try_from(granularity.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        }
    }

    /// The key prefix of this store.
    pub fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.client.is_cluster()
    }

    /// The connection this store runs on (shared by its clones), for other keys in the same
    /// Redis: see [`client`](crate::client).
    pub fn client(&self) -> &RedisClient {
        &self.client
    }

    /// What a write that adds to the live index sends as its trim argument: now (unix ms) on every
    /// [`TRIM_EVERY`](scripts::TRIM_EVERY)th write of this store, so that write removes up to
    /// [`TRIM_LIMIT`](scripts::TRIM_LIMIT) expired entries; `0` (no trim) on the others.
    fn trim_arg(&self, now: u64) -> u64 {
        let n = self.writes.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(scripts::TRIM_EVERY) {
            now
        } else {
            0
        }
    }

    /// The apply script: clear, remove, set, expiry, live index; returns whether the session
    /// exists after. A write whose deadline has passed by the time the server answers (a server
    /// that ran it late) reports the session missing: the server deleted it at the deadline.
    async fn write(&self, id: &SessionId, changes: &ChangeSet, expiry: Expiry) -> Result<bool> {
        let (data, owner, live) = (
            self.keys.data(id),
            self.keys.owner_of(id),
            self.keys.live(id),
        );
        // The session layer's two bookkeeping keys go into the deadline field (see
        // `DEADLINE_FIELD`): each as keep / remove / set, the other keys as fields.
        let mut seen = Folding::Keep;
        let mut meta = Folding::Keep;
        let mut removed: Vec<&str> = Vec::with_capacity(changes.remove.len());
        for key in &changes.remove {
            match key.as_str() {
                FOLDED_SEEN => seen = Folding::Remove,
                FOLDED_META => meta = Folding::Remove,
                other => removed.push(other),
            }
        }
        let mut pairs = 0;
        let mut bytes = 80 + id.as_str().len() + removed.iter().map(|k| k.len()).sum::<usize>();
        for (key, value) in &changes.set {
            match key.as_str() {
                FOLDED_SEEN => seen = Folding::Set(value.as_bytes()),
                FOLDED_META => meta = Folding::Set(value.as_bytes()),
                _ => pairs += 1,
            }
            bytes += key.len() + value.len();
        }
        // A deadline is at least now + 1 ms, so 0 is free to mean "keep the expiry".
        let now = check::now_millis();
        let deadline = expiry.ttl().map(|ttl| now.saturating_add(ttl.as_millis()));
        // The usual save goes through the lean script; it declines (-1) what it does not cover,
        // and the write goes through the apply script below.
        if let (Some(at), Folding::Set(seen), Folding::Keep) = (deadline, seen, meta)
            && !changes.clear
            && removed.is_empty()
            && pairs <= scripts::SAVE_MAX_PAIRS
        {
            let mut inv = scripts::SAVE.call_sized(&[&data, &owner, &live], 6 + 2 * pairs, bytes);
            inv.arg(at)
                .arg(id.as_str())
                .arg(self.trim_arg(now))
                .arg(scripts::index_score(at, self.granularity))
                .arg(seen.len())
                .arg(seen);
            push_set_pairs(&mut inv, changes);
            let saved: i64 = self.client.eval(&scripts::SAVE, &inv).await?;
            if saved == 1 {
                return Ok(at > check::now_millis());
            }
        }
        // ARGV: 11 fixed, the removed keys, the set pairs, the deadline field's pair
        let args = 11 + removed.len() + 2 * pairs + 2;
        bytes += DEADLINE_FIELD.len() + 1;
        let mut inv = scripts::APPLY.call_sized(&[&data, &owner, &live], args, bytes);
        inv.arg(deadline.unwrap_or(0))
            .arg(if changes.clear { "1" } else { "0" })
            .arg(if changes.only_if_exists { "1" } else { "0" })
            .arg(id.as_str())
            .arg(if deadline.is_some() {
                self.trim_arg(now)
            } else {
                0
            })
            .arg(deadline.map_or(0, |at| scripts::index_score(at, self.granularity)));
        for folding in [seen, meta] {
            inv.arg(folding.op()).arg(folding.value());
        }
        inv.arg(removed.len());
        for key in removed {
            inv.arg(key);
        }
        push_set_pairs(&mut inv, changes);
        // the script replaces the placeholder with the field's value
        inv.arg(DEADLINE_FIELD).arg("-");
        let exists: i64 = self.client.eval(&scripts::APPLY, &inv).await?;
        Ok(exists == 1 && deadline.is_none_or(|at| at > check::now_millis()))
    }

    /// `HGETALL` of the session hash: its data and the raw value of its deadline field.
    ///
    /// The command is sized before its arguments go in: `redis::cmd(..).arg(..)` grows its
    /// buffer with `realloc`, which in glibc takes the malloc arena's lock on every call (no
    /// per-thread cache), and under load on several worker threads that lock was contended on
    /// most reads (`perf record -e context-switches`, BENCHMARKS.md, sixth session).
    async fn hgetall(&self, data_key: &str) -> Result<(Packed, Option<Vec<u8>>)> {
        let mut cmd = redis::Cmd::with_capacity(2, "HGETALL".len() + data_key.len());
        cmd.arg("HGETALL").arg(data_key);
        let reply: redis::Value = self.client.query(&cmd).await?;
        parse_hash(&reply)
    }
}

/// Adds the field/value pairs of the keys `changes` sets to a write script's call, the keys the
/// deadline field folds left out (the call passes those on their own).
fn push_set_pairs(inv: &mut redis::Cmd, changes: &ChangeSet) {
    for (key, value) in &changes.set {
        if key != FOLDED_SEEN && key != FOLDED_META {
            inv.arg(key.as_str()).arg(value.as_bytes());
        }
    }
}

/// What a write does to one of the keys the deadline field folds (an argument pair of the apply
/// script).
#[derive(Clone, Copy)]
enum Folding<'a> {
    Keep,
    Remove,
    Set(&'a [u8]),
}

impl<'a> Folding<'a> {
    /// `k` keep, `r` remove, `s` set.
    fn op(self) -> &'static str {
        match self {
            Folding::Keep => "k",
            Folding::Remove => "r",
            Folding::Set(_) => "s",
        }
    }

    /// The value to set (empty unless `Set`).
    fn value(self) -> &'a [u8] {
        match self {
            Folding::Set(value) => value,
            Folding::Keep | Folding::Remove => &[],
        }
    }
}

#[async_trait]
impl Driver for RedisStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_expiry: true,
            ..Capabilities::ALL
        }
    }

    /// One `HGETALL`: the deadline comes from the hash's deadline field, and a session whose
    /// deadline has passed on the local clock is missing, whatever the server still holds. Only a
    /// hash without a valid deadline field (written before the field existed, or by another tool)
    /// costs a second command, `PTTL`, read against the local clock.
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        let data_key = self.keys.data(id);
        let (data, deadline) = self.hgetall(&data_key).await?;
        if data.is_empty() {
            return Ok(None);
        }
        let expires_at = match deadline.as_deref().and_then(parse_deadline) {
            Some(at) if at <= SystemTime::now() => return Ok(None),
            Some(at) => Some(at),
            None => {
                let pttl: i64 = self.client.query(redis::cmd("PTTL").arg(&data_key)).await?;
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

    /// One `EVALSHA` of the apply script (clear, remove, set, expiry; see the crate docs).
    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        self.write(id, &changes, expiry).await
    }

    /// `DEL` of the hash and the owner key and `ZREM` from the live index, in one `MULTI` (all
    /// three share the session's slot).
    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(self.keys.data(id))
            .arg(self.keys.owner_of(id))
            .ignore()
            .cmd("ZREM")
            .arg(self.keys.live(id))
            .arg(id.as_str())
            .ignore();
        let () = self.client.query_pipeline(&pipe).await?;
        Ok(())
    }

    // Saves reading the whole hash: one `HMGET` of the field and the deadline field (a session
    // past its deadline on the local clock is missing); a folded key is read from the deadline
    // field.
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        let (raw, deadline): (Option<Vec<u8>>, Option<Vec<u8>>) = self
            .client
            .query(
                redis::cmd("HMGET")
                    .arg(self.keys.data(id))
                    .arg(key)
                    .arg(DEADLINE_FIELD),
            )
            .await?;
        if is_past(deadline.as_deref()) {
            return Ok(None);
        }
        if let Some(field) = deadline.as_deref().filter(|d| d.contains(&b','))
            && (key == FOLDED_SEEN || key == FOLDED_META)
        {
            let folded = unfold(field)?;
            let value = if key == FOLDED_SEEN {
                folded.seen
            } else {
                folded.meta
            };
            return Ok(value.map(|v| Value::from(v.to_vec())));
        }
        Ok(raw.map(Value::from))
    }

    // Saves reading the whole hash: `HLEN` minus the deadline field, plus the keys it folds
    // (`HGET`), one round trip; a session past its deadline on the local clock is missing.
    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        let data_key = self.keys.data(id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HLEN")
            .arg(&data_key)
            .cmd("HGET")
            .arg(&data_key)
            .arg(DEADLINE_FIELD);
        let (fields, deadline): (usize, Option<Vec<u8>>) =
            self.client.query_pipeline(&pipe).await?;
        let Some(field) = deadline else {
            return Ok(fields);
        };
        if is_past(Some(&field)) {
            return Ok(0);
        }
        Ok(fields.saturating_sub(1) + unfold(&field)?.keys().count())
    }

    // Saves the apply script's existence check and argument framing: `HDEL`, then `HLEN` only if
    // a field went; the expiry and the deadline field are not touched.
    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        let (data, owner, live) = (
            self.keys.data(id),
            self.keys.owner_of(id),
            self.keys.live(id),
        );
        let mut inv = scripts::REMOVE.call(&[&data, &owner, &live]);
        inv.arg(key).arg(id.as_str());
        let _: i64 = self.client.eval(&scripts::REMOVE, &inv).await?;
        Ok(())
    }

    // Not cheaper, same contract: an empty `data` goes through the apply script too (not the
    // default's `DEL`), which refuses a foreign key (`WRONGTYPE`) instead of deleting it, and
    // keeps the owner binding of a session bound before its first write.
    async fn set_session(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        let changes = ChangeSet {
            clear: true,
            set: data,
            ..ChangeSet::default()
        };
        self.write(id, &changes, Expiry::After(ttl)).await.map(drop)
    }

    // Saves the apply script's framing: `EXISTS`, `HSET` of the deadline field, two `PEXPIREAT`s,
    // `ZADD` to the live index.
    async fn update_ttl(&self, id: &SessionId, ttl: Ttl) -> Result<()> {
        let (data, owner, live) = (
            self.keys.data(id),
            self.keys.owner_of(id),
            self.keys.live(id),
        );
        let mut inv = scripts::TOUCH.call(&[&data, &owner, &live]);
        let now = check::now_millis();
        let deadline = now.saturating_add(ttl.as_millis());
        inv.arg(deadline)
            .arg(id.as_str())
            .arg(self.trim_arg(now))
            .arg(scripts::index_score(deadline, self.granularity));
        let _: i64 = self.client.eval(&scripts::TOUCH, &inv).await?;
        Ok(())
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Ttl) -> Result<()> {
        if self.is_cluster() {
            return self.index_add_cluster(owner, id, ttl).await;
        }
        let set_key = self.keys.owner_set(owner);
        let (owner_key, data, live) = (
            self.keys.owner_of(id),
            self.keys.data(id),
            self.keys.live(id),
        );
        let mut inv = scripts::INDEX_ADD_SINGLE.call(&[&set_key, &owner_key, &data, &live]);
        inv.arg(owner).arg(id.as_str()).arg(ttl.as_millis());
        let _: i64 = self.client.eval(&scripts::INDEX_ADD_SINGLE, &inv).await?;
        Ok(())
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let _: i64 = self
            .client
            .query(redis::cmd("DEL").arg(self.keys.owner_of(id)))
            .await?;
        Ok(())
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        if self.is_cluster() {
            return self.index_sessions_cluster(owner).await;
        }
        let set_key = self.keys.owner_set(owner);
        let mut inv = scripts::INDEX_SESSIONS_SINGLE.call(&[&set_key]);
        inv.arg(self.keys.session_base()).arg(owner);
        let ids: Vec<String> = self
            .client
            .eval(&scripts::INDEX_SESSIONS_SINGLE, &inv)
            .await?;
        Ok(ids
            .iter()
            .filter_map(|id| SessionId::parse(id).ok())
            .collect())
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let data = self.keys.data(id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("GET")
            .arg(self.keys.owner_of(id))
            .cmd("EXISTS")
            .arg(&data)
            .cmd("HGET")
            .arg(&data)
            .arg(DEADLINE_FIELD);
        let (owner, exists, deadline): (Option<String>, bool, Option<Vec<u8>>) =
            self.client.query_pipeline(&pipe).await?;
        Ok(owner.filter(|_| exists && !is_past(deadline.as_deref())))
    }

    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        let token = LockToken::generate()?;
        let reply: Option<String> = self
            .client
            .query(
                redis::cmd("SET")
                    .arg(self.keys.lock(id))
                    .arg(token.as_str())
                    .arg("NX")
                    .arg("PX")
                    .arg(lease.as_millis()),
            )
            .await?;
        Ok(reply.map(|_| token))
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let lock = self.keys.lock(id);
        let mut inv = scripts::UNLOCK.call(&[&lock]);
        inv.arg(token.as_str());
        let released: i64 = self.client.eval(&scripts::UNLOCK, &inv).await?;
        Ok(released == 1)
    }

    /// Redis expires sessions itself ([`Capabilities::native_expiry`]); this trims the live index
    /// of their entries (`ZREMRANGEBYSCORE`, every slot's index on a cluster) and returns how many
    /// entries went.
    async fn purge_expired(&self) -> Result<u64> {
        self.purge_live_index().await
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        self.scan_page(cursor, limit).await
    }
}
