#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod owners;
mod record;
mod store;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use moka::future::Cache;
use moka::policy::EvictionPolicy;
use session_core::SessionId;

use crate::owners::OwnerIndex;
use crate::record::{DeadlineExpiry, EVICTION_SLACK, Lease, Record};

/// Number of write locks; a session's writes take the one its id hashes to.
const STRIPES: usize = 64;

/// Default bound on the number of sessions a [`MemoryStore`] holds.
pub const DEFAULT_MAX_SESSIONS: u64 = 100_000;

/// The in-memory session store: a [`session_core::Storage`] on a [moka](moka) cache.
///
/// Sessions live in this process only and are lost when it exits. Each session is one cache
/// entry that moka evicts at the session's own deadline; reads check the deadline too, so an
/// expired session is never returned even before moka evicts it. Every write reads and replaces
/// the record under one of 64 striped locks (chosen by id hash), so concurrent writers to one
/// session never lose each other's keys.
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
/// assert!(store.capabilities().atomic_apply);
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    sessions: Cache<SessionId, Arc<Record>>,
    /// Serialises the writes of one session: a write holds the stripe of its id across its
    /// read and its insert, so concurrent writers to one session never lose each other's keys.
    stripes: Arc<[tokio::sync::Mutex<()>]>,
    locks: Cache<SessionId, Arc<Lease>>,
    owners: Arc<OwnerIndex>,
    stamps: Arc<AtomicU64>,
    max_sessions: u64,
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
        }
    }

    /// The bound on the number of sessions this store keeps.
    pub fn max_sessions(&self) -> u64 {
        self.max_sessions
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

/// Settings of a [`MemoryStore`], from [`MemoryStore::builder`].
#[derive(Clone, Debug)]
pub struct MemoryStoreBuilder {
    max_sessions: u64,
    /// How long moka keeps an entry past its deadline; tests stretch it to catch reads that
    /// would return an expired record moka still holds.
    eviction_slack: Duration,
}

impl MemoryStoreBuilder {
    /// At most this many sessions are kept (default [`DEFAULT_MAX_SESSIONS`]); past it moka evicts
    /// the least recently used one. A session bound to an owner before its first write counts
    /// as one too. Zero is taken as one.
    pub fn max_sessions(mut self, max_sessions: u64) -> Self {
        self.max_sessions = max_sessions.max(1);
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        // No eviction listener: with one, moka takes a per-key lock on every insert, which cost
        // a tenth of the write throughput (loadgen memory write ratio 0.44-0.47 with it,
        // 0.50-0.51 without, same runs). Bindings of sessions that expire or are evicted are
        // dropped by the lookups and sweeps of the owner index instead.
        let owners = Arc::new(OwnerIndex::default());
        let sessions = Cache::builder()
            .name("session-memory")
            .max_capacity(self.max_sessions)
            // TinyLFU may refuse to admit a brand-new entry when the cache is full, which
            // would drop a session the moment it is created; LRU always admits it.
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(DeadlineExpiry {
                slack: self.eviction_slack,
            })
            .build();
        let locks = Cache::builder()
            .name("session-memory-locks")
            .expire_after(DeadlineExpiry {
                slack: self.eviction_slack,
            })
            .build();
        MemoryStore {
            sessions,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            locks,
            owners,
            stamps: Arc::new(AtomicU64::new(1)),
            max_sessions: self.max_sessions,
        }
    }
}
