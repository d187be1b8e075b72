//! [`SledStore`] and its [`Driver`] implementation.

use std::fmt;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use session_core::driver::record::{self, Record};
use session_core::driver::{
    Capabilities, ChangeSet, Data, Driver, Error, Expiry, Loaded, LockToken, Result, ScanPage,
    SessionId, Ttl, async_trait, check,
};
use sled::transaction::Transactional;
use sled::{Db, Tree};

use crate::builder::SledStoreBuilder;
use crate::write::{
    Next, abort, apply_bytes, delete_session, delete_unless_pending, load_live, modify, parse_id,
    tx_error,
};
use crate::{NAME, trees};

/// The sled session store: four trees in one sled database; a session write is one
/// `compare_and_swap` of its record (see the crate documentation for the lazy indexes). Cheap
/// to clone (one `Arc`).
///
/// Per-session calls (`load`, `apply`, `remove_all`, the owner index of one session, locks)
/// call sled inline, on the calling task's thread: they work on sled's in-memory page cache
/// and log buffer, and sled does its disk IO on its own threads, so they take microseconds.
/// Their worst case is a cache miss (one page read from disk) or a wait for sled's global
/// transaction lock. Calls that walk a tree (`purge_expired`, `scan`, `index_sessions`) and
/// opening the database run on tokio's blocking pool; flushes on sled's IO pool. See "Threads"
/// in the crate documentation, and the layout and the crash guarantees of each
/// [`Flush`](crate::Flush) policy there.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) sessions: Tree,
    pub(crate) expiry: Tree,
    pub(crate) owners: Tree,
    pub(crate) locks: Tree,
    pub(crate) every_write: bool,
}

impl Inner {
    pub(crate) fn new(db: Db, namespace: Option<&str>, every_write: bool) -> Result<Self> {
        let ns = namespace.unwrap_or("session");
        let tree = |name: &str| db.open_tree(format!("{ns}.{name}")).map_err(backend);
        Ok(Inner {
            sessions: tree("sessions")?,
            expiry: tree("expiry")?,
            owners: tree("owners")?,
            locks: tree("locks")?,
            db,
            every_write,
        })
    }
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("sessions", &self.inner.sessions.name())
            .field("flush_every_write", &self.inner.every_write)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Options: flush policy, tree namespace, cache size.
    pub fn builder() -> SledStoreBuilder {
        SledStoreBuilder::default()
    }

    /// Opens (or creates) the database in directory `path` with the default options
    /// ([`Flush::DEFAULT`](crate::Flush::DEFAULT), namespace `session`).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder().open(path).await
    }

    /// Uses a database you opened yourself, with the default options (namespace `session`, no
    /// flushes beyond the database's own configuration).
    pub fn from_db(db: Db) -> Result<Self> {
        Self::builder().from_db(db)
    }

    pub(crate) fn wrap(inner: Inner) -> Self {
        SledStore {
            inner: Arc::new(inner),
        }
    }

    /// The underlying database, for your own trees or for `sled::Db::export`.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Writes everything to disk now (`flush_async`: on sled's IO thread pool, awaited without
    /// blocking the task's thread); returns the bytes sled wrote.
    pub async fn flush(&self) -> Result<usize> {
        self.inner.db.flush_async().await.map_err(backend)
    }

    /// Runs `f` on tokio's blocking pool: for the calls that can run long, the ones that walk a
    /// tree ([`purge_expired`](Driver::purge_expired), [`scan`](Driver::scan),
    /// [`index_sessions`](Driver::index_sessions)). Per-session calls run inline instead (see
    /// "Threads" in the crate documentation).
    async fn blocking<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Inner) -> Result<R> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::backend(NAME, e))?
    }

    /// The result of a write method, after a flush if the policy says so
    /// ([`Flush::EveryWrite`](crate::Flush::EveryWrite): the call returns once sled has
    /// fsynced the write).
    async fn flushed<R>(&self, out: Result<R>) -> Result<R> {
        let out = out?;
        if self.inner.every_write {
            self.flush().await?;
        }
        Ok(out)
    }
}

/// A sled error as ours.
pub(crate) fn backend(e: sled::Error) -> Error {
    Error::backend(NAME, e)
}

#[async_trait]
impl Driver for SledStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        match self.inner.sessions.get(id.as_str()).map_err(backend)? {
            Some(raw) => record::load(&raw, check::now_millis(), NAME),
            None => Ok(None),
        }
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        let deadline = expiry.ttl().map(|ttl| check::unix_millis(ttl.deadline()));
        // On the stored bytes when the record is in the current layout (the usual case); the
        // general path below makes the same decisions on a decoded `Record`.
        let (inner, may_create) = (&self.inner, expiry.may_create());
        if let Some(out) = apply_bytes(inner, id.as_str(), &changes, deadline, may_create)? {
            return self.flushed(Ok(out)).await;
        }
        let out = modify(&self.inner, id.as_str(), |live| {
            let exists = live.as_ref().is_some_and(|rec| !rec.data.is_empty());
            if !exists && (changes.only_if_exists || !expiry.may_create()) {
                return Ok((Next::Keep, false));
            }
            let next_if_empty = delete_unless_pending(live.as_ref());
            // A pending binding (no keys) is taken over by the write: its owner stays.
            let mut rec = live.unwrap_or_default();
            if let Some(deadline) = deadline {
                rec.deadline_ms = deadline;
            }
            let mut changed = changes.clear || !changes.set.is_empty();
            if changes.clear {
                rec.data.clear();
            }
            for key in &changes.remove {
                changed |= rec.data.remove(key).is_some();
            }
            if !changed && deadline.is_none() {
                // Removing absent keys, keeping the deadline: nothing to write.
                return Ok((Next::Keep, exists));
            }
            for (key, value) in &changes.set {
                // `modify` may run this again, so `changes` is only borrowed; an existing
                // key (the usual write) keeps its `String`, a new one is cloned in.
                match rec.data.get_mut(key) {
                    Some(slot) => *slot = value.clone(),
                    None => {
                        rec.data.insert(key.clone(), value.clone());
                    }
                }
            }
            if rec.data.is_empty() {
                Ok((next_if_empty, false))
            } else {
                Ok((Next::Write(rec), true))
            }
        });
        self.flushed(out).await
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        let inner = &self.inner;
        let out = (&inner.sessions, &inner.expiry, &inner.owners)
            .transaction(|(s, e, o)| delete_session(s, e, o, id.as_str().as_bytes()))
            .map_err(tx_error)
            .map(drop);
        self.flushed(out).await
    }

    // Kept for behaviour, not cost: an empty `data` is `apply` with `clear` here too, which
    // removes a session but keeps a binding made before the first write (the default,
    // `remove_all`, would drop it).
    async fn set_session(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        let changes = ChangeSet {
            clear: true,
            set: data,
            ..ChangeSet::default()
        };
        self.apply(id, changes, Expiry::After(ttl)).await.map(drop)
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Ttl) -> Result<()> {
        // How long a binding made before the session's first write waits for that write.
        let pending_until = check::unix_millis(ttl.deadline());
        let out = modify(&self.inner, id.as_str(), |live| {
            let mut rec = match live {
                Some(rec) if rec.data.is_empty() => Record {
                    deadline_ms: rec.deadline_ms.max(pending_until),
                    ..rec
                },
                Some(rec) if rec.owner.as_deref() == Some(owner) => {
                    return Ok((Next::Keep, ()));
                }
                // A session keeps its own expiry.
                Some(rec) => rec,
                None => Record::new(pending_until, Data::new()),
            };
            rec.owner = Some(owner.to_owned());
            Ok((Next::Write(rec), ()))
        });
        self.flushed(out).await
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let out = modify(&self.inner, id.as_str(), |live| {
            let next = match live {
                Some(rec) if rec.data.is_empty() => Next::Delete,
                Some(mut rec) if rec.owner.is_some() => {
                    rec.owner = None;
                    Next::Write(rec)
                }
                _ => Next::Keep,
            };
            Ok((next, ()))
        });
        self.flushed(out).await
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        let owner = owner.to_owned();
        let out = self
            .blocking(move |inner| {
                let prefix = trees::owner_prefix(&owner);
                let mut live_ids = Vec::new();
                let mut dead = Vec::new();
                for entry in inner.owners.scan_prefix(&prefix) {
                    let (key, _) = entry.map_err(backend)?;
                    let id = parse_id(&key[prefix.len()..])?;
                    let rec = match inner.sessions.get(id.as_str()).map_err(backend)? {
                        Some(raw) => Some(Record::decode(&raw, NAME)?),
                        None => None,
                    };
                    match rec {
                        Some(rec) if rec.owner.as_deref() == Some(owner.as_str()) => {
                            // A pending binding keeps its entry but is not a session yet; an
                            // expired record keeps it until purge deletes the record.
                            if rec.live(check::now_millis()) {
                                live_ids.push(id);
                            }
                        }
                        _ => dead.push(key),
                    }
                }
                // Prune, re-checking in a transaction so a session bound meanwhile keeps its entry.
                for key in dead {
                    let id = &key[prefix.len()..];
                    (&inner.sessions, &inner.owners)
                        .transaction(|(s, o)| {
                            // An expired record keeps its entry until purge deletes it: a
                            // writer that swaps it for a record with the same owner relies on it.
                            let bound = match s.get(id)? {
                                Some(raw) => {
                                    let rec = abort(Record::decode(&raw, NAME))?;
                                    rec.owner.as_deref() == Some(owner.as_str())
                                }
                                None => false,
                            };
                            if !bound {
                                o.remove(&key)?;
                            }
                            Ok(())
                        })
                        .map_err(tx_error)?;
                }
                Ok(live_ids)
            })
            .await;
        self.flushed(out).await
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        Ok(load_live(&self.inner, id.as_str())?.and_then(|rec| rec.owner))
    }

    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        let lease_ms = lease.as_millis();
        let token = LockToken::generate()?;
        let out = self
            .inner
            .locks
            .transaction(|l| {
                let now = check::now_millis();
                if let Some(raw) = l.get(id.as_str())? {
                    let (until, _) = abort(trees::decode_lock(&raw))?;
                    if until > now {
                        return Ok(None);
                    }
                }
                let value = trees::encode_lock(now + lease_ms, token.as_str());
                l.insert(id.as_str(), value)?;
                Ok(Some(token.clone()))
            })
            .map_err(tx_error);
        self.flushed(out).await
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let out = self
            .inner
            .locks
            .transaction(|l| {
                let Some(raw) = l.get(id.as_str())? else {
                    return Ok(false);
                };
                let (until, held_by) = abort(trees::decode_lock(&raw))?;
                if held_by != token.as_str().as_bytes() {
                    return Ok(false);
                }
                // Ours, but maybe run out: free it either way, report whether it still held.
                l.remove(id.as_str())?;
                Ok(until > check::now_millis())
            })
            .map_err(tx_error);
        self.flushed(out).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        let out = self
            .blocking(|inner| {
                let now = check::now_millis();
                let mut purged = 0;
                for entry in inner.expiry.iter() {
                    let (key, _) = entry.map_err(backend)?;
                    let (entry_deadline, id) = trees::parse_expiry_key(&key)?;
                    if entry_deadline > now {
                        break;
                    }
                    let deleted = (&inner.sessions, &inner.expiry, &inner.owners)
                        .transaction(|(s, e, o)| {
                            if e.remove(&key)?.is_none() {
                                return Ok(false); // another purge took it meanwhile
                            }
                            let Some(raw) = s.get(id)? else {
                                return Ok(false); // stale entry: the session is gone
                            };
                            match record::deadline(&raw, NAME) {
                                // Extended since the entry was made (writes add no entry when the
                                // deadline moves later): index it at its real deadline.
                                Ok(d) if d > now => {
                                    e.insert(trees::expiry_key(d, id), Vec::new())?;
                                    Ok(false)
                                }
                                // Expired; or an unreadable header, expired by the index: delete.
                                _ => delete_session(s, e, o, id),
                            }
                        })
                        .map_err(tx_error)?;
                    purged += u64::from(deleted);
                }
                // Leases that ran out and were never released.
                for entry in inner.locks.iter() {
                    let (key, value) = entry.map_err(backend)?;
                    if trees::decode_lock(&value).is_ok_and(|(until, _)| until <= now) {
                        // Only if unchanged since we read it; a new lease is left alone.
                        let _ = inner
                            .locks
                            .compare_and_swap(&key, Some(&value), None as Option<&[u8]>)
                            .map_err(backend)?;
                    }
                }
                Ok(purged)
            })
            .await;
        self.flushed(out).await
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let cursor = cursor.map(|c| c.as_bytes().to_vec());
        let limit = limit.max(1);
        self.blocking(move |inner| {
            let start = match cursor {
                Some(c) => Bound::Excluded(c),
                None => Bound::Unbounded,
            };
            let mut iter = inner
                .sessions
                .range::<Vec<u8>, _>((start, Bound::Unbounded));
            let now = check::now_millis();
            let mut ids = Vec::new();
            for entry in iter.by_ref() {
                let (key, value) = entry.map_err(backend)?;
                // The header is enough to skip expired records; live ones are decoded to skip
                // pending bindings and to report a corrupt body.
                if record::deadline(&value, NAME)? > now
                    && !Record::decode(&value, NAME)?.data.is_empty()
                {
                    ids.push(parse_id(&key)?);
                    if ids.len() == limit {
                        break;
                    }
                }
            }
            let more = ids.len() == limit && iter.next().is_some();
            let next = if more {
                ids.last().map(|id| id.as_str().to_owned())
            } else {
                None
            };
            Ok(ScanPage { ids, next })
        })
        .await
    }
}
