//! [`MemoryStoreBuilder`]: the settings of a [`MemoryStore`].

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use dashmap::DashMap;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use crate::MemoryStore;
use crate::owners::OwnerIndex;
use crate::record::DeadlineExpiry;
use crate::store::STRIPES;

/// Settings of a [`MemoryStore`], from [`MemoryStore::builder`].
#[derive(Clone, Debug)]
pub struct MemoryStoreBuilder {
    pub(crate) max_sessions: u64,
    /// How long moka keeps an entry past its deadline; tests stretch it to catch reads that
    /// would return an expired record moka still holds.
    pub(crate) eviction_slack: Duration,
    pub(crate) eviction_headroom: Duration,
}

impl MemoryStoreBuilder {
    /// At most this many sessions are kept (default
    /// [`DEFAULT_MAX_SESSIONS`](crate::DEFAULT_MAX_SESSIONS)); past it moka evicts
    /// the least recently used one. A session bound to an owner before its first write counts
    /// as one too. Zero is taken as one.
    pub fn max_sessions(mut self, max_sessions: u64) -> Self {
        self.max_sessions = max_sessions.max(1);
        self
    }

    /// How long past a session's deadline its cache entry may stay (default 10 s).
    ///
    /// A write whose new deadline is at or before the entry's eviction time (the deadline the
    /// entry was inserted with, plus this) replaces the record inside the entry; a later one
    /// inserts a new entry, which costs moka's write path (a new entry, its expiry rescheduled,
    /// the old one retired). So a session written again within this time of its last insert is
    /// cheaper to write, and an expired session's memory is freed at most this long after its
    /// deadline. It never makes an expired session readable: every read checks the deadline.
    /// Zero inserts an entry on every write that moves the deadline later.
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_memory::MemoryStore;
    ///
    /// let store = MemoryStore::builder()
    ///     .eviction_headroom(Duration::from_secs(60))
    ///     .build();
    /// assert_eq!(store.eviction_headroom(), Duration::from_secs(60));
    /// ```
    pub fn eviction_headroom(mut self, headroom: Duration) -> Self {
        self.eviction_headroom = headroom;
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
            stripes: (0..STRIPES).map(|_| std::sync::Mutex::new(())).collect(),
            locks,
            owners,
            stamps: Arc::new(AtomicU64::new(1)),
            max_sessions: self.max_sessions,
            eviction_headroom: self.eviction_headroom,
            index: Arc::new(DashMap::with_shard_amount(64)),
            index_sweep: Arc::default(),
        }
    }
}
