//! [`MemoryStore`] and its [`Driver`] implementation.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;
use session_core::driver::{
    Capabilities, ChangeSet, Driver, Error, Expiry, Loaded, LockToken, Packed, Result, ScanPage,
    SessionId, Snapshot, Ttl, async_trait, check,
};

use crate::builder::MemoryStoreBuilder;
use crate::owners::OwnerIndex;
use crate::record::{Binding, EVICTION_HEADROOM, EVICTION_SLACK, Lease, Record, Slot};
use crate::{DEFAULT_MAX_SESSIONS, NAME};

/// Number of write locks; a session's writes take the one its id hashes to.
pub(crate) const STRIPES: usize = 64;

/// Smallest index size at which [`MemoryStore::sweep_owners_if_due`] and
/// [`MemoryStore::sweep_index_if_due`] consider a full sweep.
pub(crate) const SWEEP_FLOOR: usize = 1024;

/// Every how many new entries the read index's size is checked ([`DashMap::len`] locks each of
/// its shards in turn).
pub(crate) const INDEX_CHECK_EVERY: u64 = 64;

/// When the read index is swept next.
#[derive(Debug, Default)]
pub(crate) struct IndexSweep {
    /// New entries so far (the size is checked every [`INDEX_CHECK_EVERY`]).
    inserts: AtomicU64,
    /// The size past which the next sweep runs: twice what the last sweep left.
    next_at: AtomicUsize,
}

/// The in-memory session store: a [`session_core::Storage`] on a [moka](moka) cache.
///
/// Sessions live in this process only and are lost when it exits. Each session is one cache
/// entry that moka evicts after the session's own deadline (at most
/// [`eviction_headroom`](MemoryStoreBuilder::eviction_headroom) after it); every read checks the
/// deadline itself, so an expired session is never returned even before moka evicts it. Every
/// write reads and replaces the record under one of 64 striped locks (chosen by id hash), so
/// concurrent writers to one session never lose each other's keys; a write that keeps the
/// deadline within the entry's eviction time replaces the record inside the entry and leaves
/// moka's write path alone. Reads look the session up in an index beside the cache and tell
/// moka about it at most once a second per session, so the least-recently-used order is kept
/// to the second.
///
/// At most [`max_sessions`](MemoryStoreBuilder::max_sessions) sessions are kept (default
/// [`DEFAULT_MAX_SESSIONS`]); past the bound moka evicts the least recently used session. The
/// bound is enforced by moka's background maintenance, so the count may exceed it briefly.
///
/// Cloning is cheap and the clones share the same sessions.
///
/// ```
/// use session_memory::MemoryStore;
/// use session_core::Storage;
///
/// let store = MemoryStore::builder().max_sessions(10_000).build();
/// assert_eq!(store.max_sessions(), 10_000);
/// assert!(store.capabilities().owner_index);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    pub(crate) sessions: Cache<SessionId, Arc<Slot>>,
    /// What reads look up: every slot moka holds (writers put a new slot in both, under the
    /// stripe), and, until a read finds them gone, a write or a sweep removes them, the slots
    /// moka has evicted. A read asks moka only when the slot's touch is due (once a second per
    /// session), so most reads log nothing in moka's read log (see [`Slot::touch_due`]).
    pub(crate) index: Arc<DashMap<SessionId, Arc<Slot>>>,
    pub(crate) index_sweep: Arc<IndexSweep>,
    /// Serialises the writes of one session: a write holds the stripe of its id across its
    /// read and its swap or insert, so concurrent writers to one session never lose each
    /// other's keys.
    pub(crate) stripes: Arc<[Mutex<()>]>,
    pub(crate) locks: Cache<SessionId, Arc<Lease>>,
    pub(crate) owners: Arc<OwnerIndex>,
    pub(crate) stamps: Arc<AtomicU64>,
    pub(crate) max_sessions: u64,
    /// How long past its deadline a session's entry may stay (see [`Slot`]).
    pub(crate) eviction_headroom: Duration,
}

impl MemoryStore {
    /// A store with the default settings (at most [`DEFAULT_MAX_SESSIONS`] sessions).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to choose the settings.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_sessions: DEFAULT_MAX_SESSIONS,
            eviction_slack: EVICTION_SLACK,
            eviction_headroom: EVICTION_HEADROOM,
        }
    }

    /// The bound on the number of sessions this store keeps.
    pub fn max_sessions(&self) -> u64 {
        self.max_sessions
    }

    /// How long past its deadline a session's entry may stay
    /// ([`MemoryStoreBuilder::eviction_headroom`]).
    pub fn eviction_headroom(&self) -> Duration {
        self.eviction_headroom
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_sessions", &self.max_sessions)
            .field("entries", &self.sessions.entry_count())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// Runs `f` on the current record of `id` under the write lock of its stripe and applies the
    /// `Op` it returns; concurrent calls on one id run one after the other. `f` gets the record
    /// only if it is live: a dead record is unbound from the owner index and removed unless `f`
    /// puts a new one, so a write to an expired session starts from nothing.
    fn compute<R>(
        &self,
        id: &SessionId,
        f: impl FnOnce(Option<Record>, SystemTime) -> Result<(Op<Record>, R)>,
    ) -> Result<R> {
        let guard = self.lock_stripe(id);
        let now = SystemTime::now();
        let slot = self.sessions.get(id);
        if slot.is_none() {
            // moka evicted it, or there was none: no read may find it through the index
            self.index.remove(id);
        }
        let (current, dead) = match slot.as_ref().map(|s| s.record()) {
            Some(record) if record.is_live(now) => (Some(record), false),
            Some(record) => {
                if let Some(binding) = &record.owner {
                    self.owners.unbind(id, binding);
                }
                (None, true)
            }
            None => (None, false),
        };
        let (op, result) = f(current, now)?;
        let inserted = match op {
            Op::Put(record) => self.put(id, slot.filter(|_| !dead), record),
            Op::Remove => self.remove_entry(id),
            Op::Nop if dead => self.remove_entry(id),
            Op::Nop => false,
        };
        drop(guard);
        if inserted {
            // outside the stripe: the sweep takes the stripes of the ids it removes
            self.sweep_index_if_due();
        }
        Ok(result)
    }

    /// Removes `id`'s entry from moka and the index (under its stripe).
    fn remove_entry(&self, id: &SessionId) -> bool {
        self.sessions.invalidate(id);
        self.index.remove(id);
        false
    }

    /// Caches `slot` as `id`'s entry, in moka and then in the index (under its stripe).
    fn insert_slot(&self, id: &SessionId, slot: Arc<Slot>) {
        self.sessions.insert(id.clone(), Arc::clone(&slot));
        self.index.insert(id.clone(), slot);
    }

    /// Removes from the index the slots moka no longer holds (evicted sessions that no read or
    /// write came back to), once the index has grown past twice moka's entry count and twice
    /// what the last sweep left (at least [`SWEEP_FLOOR`] entries): the index stays at about
    /// twice the cache at most, and the sweeps cost O(1) per new entry. Checked every
    /// [`INDEX_CHECK_EVERY`] new entries.
    fn sweep_index_if_due(&self) {
        let inserts = self.index_sweep.inserts.fetch_add(1, Ordering::Relaxed);
        if inserts % INDEX_CHECK_EVERY != INDEX_CHECK_EVERY - 1 {
            return;
        }
        let limit = (self.sessions.entry_count() as usize)
            .saturating_mul(2)
            .max(self.index_sweep.next_at.load(Ordering::Relaxed))
            .max(SWEEP_FLOOR);
        if self.index.len() > limit {
            self.sweep_index();
            self.index_sweep
                .next_at
                .store(self.index.len().saturating_mul(2), Ordering::Relaxed);
        }
    }

    /// Removes from the index every slot moka no longer holds.
    pub(crate) fn sweep_index(&self) {
        let stale: Vec<SessionId> = self
            .index
            .iter()
            .filter(|e| !self.sessions.contains_key(e.key()))
            .map(|e| e.key().clone())
            .collect();
        for id in stale {
            let _guard = self.lock_stripe(&id);
            if !self.sessions.contains_key(&id) {
                self.index.remove(&id);
            }
        }
    }

    /// Stores `record` as the record of `id`, whose live entry (if any) is `slot`: in place if
    /// the record's deadline is within the entry's eviction time, else in a new entry. Called
    /// under the id's stripe. Returns whether it inserted a new entry.
    pub(crate) fn put(&self, id: &SessionId, slot: Option<Arc<Slot>>, record: Record) -> bool {
        let record = match slot {
            Some(slot) => match slot.replace(record) {
                Ok(()) if self.sessions.contains_key(id) => return false,
                // Moka evicted the entry (LRU) since the lookup: cache the record again, so a
                // write is never lost to an eviction that ran before it. In a new slot: a read
                // may have marked this one gone.
                Ok(()) => slot.record(),
                Err(record) => record,
            },
            None => record,
        };
        self.insert_slot(id, Slot::new(record, self.eviction_headroom));
        true
    }

    /// The write lock of `id`'s stripe.
    ///
    /// Ids are random text, so their last bytes spread evenly without hashing (an id chosen to
    /// collide only shares a stripe, which costs waiting, never correctness).
    fn lock_stripe(&self, id: &SessionId) -> MutexGuard<'_, ()> {
        let spread = id.as_str().bytes().rev().take(4).fold(0usize, |acc, b| {
            acc.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        // The guarded data is `()`: a panic under the lock leaves nothing inconsistent.
        self.stripes[spread % self.stripes.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The record of `id` if it is a live session (one index lookup, no copy of the data).
    ///
    /// Moka is asked only when the slot's touch is due (once a second per session): its `get`
    /// logs the hit for the LRU order and tells whether the entry is still cached; a slot it no
    /// longer holds is marked gone. So a session moka evicts for the capacity bound may still
    /// be read for up to a second after the last such check, never after it.
    fn session(&self, id: &SessionId) -> Option<Record> {
        let now = SystemTime::now();
        let slot = self.index.get(id).map(|e| Arc::clone(e.value()))?;
        if slot.is_gone() {
            return None;
        }
        let slot = if slot.touch_due(check::unix_millis(now)) {
            match self.sessions.get(id) {
                // the same slot, or a newer one a write is putting in the index
                Some(cached) => cached,
                None => {
                    slot.set_gone();
                    return None;
                }
            }
        } else {
            slot
        };
        Some(slot.record()).filter(|r| r.is_session(now))
    }

    /// The record of `id`'s entry, live or not.
    pub(crate) fn record(&self, id: &SessionId) -> Option<Record> {
        self.sessions.get(id).map(|slot| slot.record())
    }

    /// Whether `binding` of `id` is still the current binding of a live record.
    fn binding_is_current(&self, id: &SessionId, binding: &Binding) -> (bool, bool) {
        match self.record(id) {
            Some(r) if r.is_live(SystemTime::now()) && r.owner.as_ref() == Some(binding) => {
                (true, !r.body.is_empty())
            }
            _ => (false, false),
        }
    }

    /// Checks index entries against the records: returns the ids of live sessions they bind and
    /// removes the entries that no longer match their record.
    fn prune(&self, entries: Vec<(SessionId, Binding)>) -> Vec<SessionId> {
        let mut live = Vec::with_capacity(entries.len());
        for (id, binding) in entries {
            match self.binding_is_current(&id, &binding) {
                (true, true) => live.push(id),
                // Bound before the session's first write: kept, but not a session yet.
                (true, false) => {}
                (false, _) => self.owners.unbind(&id, &binding),
            }
        }
        live
    }

    /// Sweeps the whole owner index when it has grown well past the number of records: sessions
    /// that moka expired or evicted leave their bindings behind until a lookup of their owner or
    /// a sweep finds them stale. Keeps the index bounded by about twice the number of cached
    /// records (at least [`SWEEP_FLOOR`] entries).
    fn sweep_owners_if_due(&self) {
        let limit = (self.sessions.entry_count() as usize)
            .saturating_mul(2)
            .max(SWEEP_FLOOR);
        if self.owners.len() > limit {
            self.prune(self.owners.all());
        }
    }

    fn next_stamp(&self) -> u64 {
        self.stamps.fetch_add(1, Ordering::Relaxed)
    }
}

#[async_trait]
impl Driver for MemoryStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            native_expiry: true,
            ..Capabilities::ALL
        }
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        Ok(self.session(id).map(|r| Loaded {
            data: Snapshot::from(r.body),
            expires_at: Some(r.deadline),
        }))
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        self.compute(id, |current, now| {
            let exists = current.as_ref().is_some_and(|r| !r.body.is_empty());
            if (changes.only_if_exists || !expiry.may_create()) && !exists {
                return Ok((Op::Nop, false));
            }
            let owner = current.as_ref().and_then(|r| r.owner.clone());
            let body = match &current {
                // An empty change set only slides the expiry: no copy of the data.
                Some(r) if changes.is_empty() => r.body.clone(),
                Some(r) => r.body.apply(&changes)?,
                None => Packed::pack(&changes.set)?,
            };
            if body.is_empty() {
                // No keys left: a session is removed with its binding; a binding made before the
                // first write (a record without keys) is left alone.
                if !exists {
                    return Ok((Op::Nop, false));
                }
                if let Some(binding) = &owner {
                    self.owners.unbind(id, binding);
                }
                return Ok((Op::Remove, false));
            }
            let current_deadline = current.as_ref().map_or(now, |r| r.deadline);
            let record = Record {
                body,
                deadline: expiry.deadline(now, current_deadline),
                owner,
            };
            Ok((Op::Put(record), true))
        })
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.compute(id, |current, _| {
            if let Some(binding) = current.as_ref().and_then(|r| r.owner.as_ref()) {
                self.owners.unbind(id, binding);
            }
            Ok((Op::Remove, ()))
        })
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Ttl) -> Result<()> {
        let placeholder_deadline = ttl.deadline();
        let binding = Binding {
            owner: owner.into(),
            stamp: self.next_stamp(),
        };
        self.compute(id, |current, _| {
            let record = match current {
                Some(r) => {
                    if let Some(old) = &r.owner {
                        self.owners.unbind(id, old);
                    }
                    Record {
                        // A session keeps its own expiry; a binding made before the session's
                        // first write waits at least `ttl` for it.
                        deadline: if r.body.is_empty() {
                            r.deadline.max(placeholder_deadline)
                        } else {
                            r.deadline
                        },
                        owner: Some(binding.clone()),
                        body: r.body,
                    }
                }
                None => Record {
                    body: Packed::default(),
                    deadline: placeholder_deadline,
                    owner: Some(binding.clone()),
                },
            };
            self.owners.bind(id, &binding);
            Ok((Op::Put(record), ()))
        })?;
        self.prune(self.owners.of(owner));
        self.sweep_owners_if_due();
        Ok(())
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        self.compute(id, |current, _| {
            Ok(match current {
                Some(r) => match &r.owner {
                    Some(binding) => {
                        self.owners.unbind(id, binding);
                        if r.body.is_empty() {
                            (Op::Remove, ())
                        } else {
                            let record = Record { owner: None, ..r };
                            (Op::Put(record), ())
                        }
                    }
                    None => (Op::Nop, ()),
                },
                None => (Op::Nop, ()),
            })
        })
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        Ok(self.prune(self.owners.of(owner)))
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        Ok(self
            .session(id)
            .and_then(|r| r.owner.as_ref().map(|b| b.owner.to_string())))
    }

    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        let deadline = lease.deadline();
        let token = LockToken::generate()?;
        let result = self.locks.entry_by_ref(id).and_compute_with(|entry| {
            let now = SystemTime::now();
            match entry {
                Some(held) if held.value().deadline > now => Op::Nop,
                _ => Op::Put(Arc::new(Lease {
                    token: token.clone(),
                    deadline,
                })),
            }
        });
        Ok(match result {
            CompResult::Inserted(_) | CompResult::ReplacedWith(_) => Some(token),
            _ => None,
        })
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let result = self.locks.entry_by_ref(id).and_compute_with(|entry| {
            let now = SystemTime::now();
            match entry {
                Some(held) if held.value().deadline > now && held.value().token == *token => {
                    Op::Remove
                }
                _ => Op::Nop,
            }
        });
        Ok(matches!(result, CompResult::Removed(_)))
    }

    async fn purge_expired(&self) -> Result<u64> {
        // Moka evicts an entry at its eviction time (the deadline it was inserted with, plus the
        // headroom and a millisecond of slack) during its maintenance; run it now, then remove
        // the records past their deadline whose entries moka still holds.
        self.sessions.run_pending_tasks();
        self.locks.run_pending_tasks();
        let now = SystemTime::now();
        let expired: Vec<Arc<SessionId>> = self
            .sessions
            .iter()
            .filter(|(_, slot)| !slot.record().is_live(now))
            .map(|(id, _)| id)
            .collect();
        let mut purged = 0;
        for id in expired {
            let _guard = self.lock_stripe(&id);
            if let Some(record) = self.record(&id)
                && !record.is_live(SystemTime::now())
            {
                if let Some(binding) = &record.owner {
                    self.owners.unbind(&id, binding);
                }
                self.remove_entry(&id);
                purged += 1;
            }
        }
        self.sweep_index();
        self.prune(self.owners.all());
        Ok(purged)
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let after = cursor
            .map(|c| {
                SessionId::parse(c).map_err(|_| Error::InvalidInput("invalid scan cursor".into()))
            })
            .transpose()?;
        let limit = limit.max(1);
        let now = SystemTime::now();
        // The ids of live sessions after the cursor, in id order. The cursor is the last id
        // returned, so pages need no state in the store; each page walks the whole cache.
        let mut ids: Vec<Arc<SessionId>> = self
            .sessions
            .iter()
            .filter(|(id, slot)| {
                after.as_ref().is_none_or(|a| **id > *a) && slot.record().is_session(now)
            })
            .map(|(id, _)| id)
            .collect();
        let more = ids.len() > limit;
        if more {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        let next = if more {
            ids.last().map(|id| id.as_str().to_owned())
        } else {
            None
        };
        Ok(ScanPage {
            ids: ids.iter().map(|id| (**id).clone()).collect(),
            next,
        })
    }
}
