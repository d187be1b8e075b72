//! What the caches hold: session records, lock leases, and the expiry policy that makes moka
//! evict each at its own deadline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use session_core::driver::{LockToken, Packed};

/// Extra time moka keeps an entry past its deadline.
///
/// Moka measures time with its own monotonic clock, deadlines are wall-clock times; the slack
/// makes sure moka never drops an entry *before* its deadline. Exactness does not depend on
/// moka: every read checks the deadline itself.
pub(crate) const EVICTION_SLACK: Duration = Duration::from_millis(1);

/// The binding of a session to an owner in the owner index.
///
/// `stamp` is unique per binding (per store), so an index entry left over from an earlier
/// binding of the same id is told apart from the current one and never removes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Binding {
    pub(crate) owner: Arc<str>,
    pub(crate) stamp: u64,
}

/// One session as moka stores it: the values packed in one buffer, the deadline and the owner.
///
/// Cloning (what a moka lookup does) is two reference counts. A record with an empty body is
/// not a session: it only exists to carry an owner binding made with `index_add` before the
/// session's first write ("login, then save").
#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// The keys and values, shared between versions of the record that only change the
    /// expiry or owner.
    pub(crate) body: Packed,
    /// Absolute expiry deadline; at or after it the record is dead for every method.
    pub(crate) deadline: SystemTime,
    /// The owner index binding; it lives and dies with the record.
    pub(crate) owner: Option<Binding>,
}

impl Record {
    /// Whether the record is before its deadline.
    pub(crate) fn is_live(&self, now: SystemTime) -> bool {
        self.deadline > now
    }

    /// Whether the record is a session (live and with at least one key).
    pub(crate) fn is_session(&self, now: SystemTime) -> bool {
        self.is_live(now) && !self.body.is_empty()
    }
}

/// How long past a session's deadline its cache entry may stay by default, so that writes which
/// slide the deadline by less than that replace the record in place instead of inserting a new
/// entry (see [`Slot`]): 10 s, the Redis driver's live index granularity.
pub(crate) const EVICTION_HEADROOM: Duration = Duration::from_secs(10);

/// The cache entry of one session: its current record, which writes replace in place, and the
/// time moka evicts the entry, fixed when the entry is inserted.
///
/// A moka insert is the expensive part of a write (a new entry, a write-log record, its
/// expiry rescheduled, and an epoch flush that allocates 2 KB to retire the old entry), so a
/// write whose new deadline is still at or before the entry's eviction time ([`Slot::replace`])
/// swaps the record under the slot's lock and leaves moka alone. The eviction time is the
/// deadline the entry was inserted with plus a headroom ([`EVICTION_HEADROOM`] by default): a
/// session written again within the headroom of its last insert never touches moka's write
/// path, and an expired session's memory is freed at most the headroom after its deadline.
/// Reads never depend on it: every read checks the record's own deadline.
#[derive(Debug)]
pub(crate) struct Slot {
    record: Mutex<Record>,
    evict_at: SystemTime,
    /// When a read last told moka about this session (unix ms; 0: never), see
    /// [`Slot::touch_due`].
    touched: AtomicU64,
    /// Set when a read found moka no longer holds this slot (evicted): reads of it through the
    /// index miss from then on.
    gone: AtomicBool,
}

/// How often a session's reads tell moka about it (moka's `get`, which logs the hit for the LRU
/// order and says whether the entry is still cached): at most once per second per session.
pub(crate) const TOUCH_EVERY_MS: u64 = 1000;

impl Slot {
    /// A slot for `record`, evicted `headroom` after its deadline.
    pub(crate) fn new(record: Record, headroom: Duration) -> Arc<Slot> {
        let evict_at = record
            .deadline
            .checked_add(headroom)
            .unwrap_or(record.deadline);
        Arc::new(Slot {
            record: Mutex::new(record),
            evict_at,
            touched: AtomicU64::new(0),
            gone: AtomicBool::new(false),
        })
    }

    /// Whether a read at `now_ms` should tell moka (the last touch is [`TOUCH_EVERY_MS`] old or
    /// more); if so, this read takes the touch (one reader per interval).
    pub(crate) fn touch_due(&self, now_ms: u64) -> bool {
        let last = self.touched.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= TOUCH_EVERY_MS
            && self
                .touched
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Whether a read found this slot evicted from moka.
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Marks this slot as evicted from moka.
    pub(crate) fn set_gone(&self) {
        self.gone.store(true, Ordering::Relaxed);
    }

    /// The current record (two reference counts, no copy of the data).
    pub(crate) fn record(&self) -> Record {
        // A record is replaced whole: a panic elsewhere cannot leave it half written.
        self.record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the record if its deadline is at or before this entry's eviction time; gives
    /// it back otherwise (the caller inserts a new slot).
    pub(crate) fn replace(&self, record: Record) -> std::result::Result<(), Record> {
        if record.deadline > self.evict_at {
            return Err(record);
        }
        let old = std::mem::replace(
            &mut *self.record.lock().unwrap_or_else(PoisonError::into_inner),
            record,
        );
        drop(old);
        Ok(())
    }
}

impl Deadline for Slot {
    fn deadline(&self) -> SystemTime {
        self.evict_at
    }
}

/// A lease lock held on one session id.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) token: LockToken,
    pub(crate) deadline: SystemTime,
}

/// Anything with an absolute deadline.
pub(crate) trait Deadline {
    fn deadline(&self) -> SystemTime;
}

impl Deadline for Record {
    fn deadline(&self) -> SystemTime {
        self.deadline
    }
}

impl<T: Deadline> Deadline for Arc<T> {
    fn deadline(&self) -> SystemTime {
        (**self).deadline()
    }
}

impl Deadline for Lease {
    fn deadline(&self) -> SystemTime {
        self.deadline
    }
}

/// Moka's per-entry expiry: each entry expires at its own deadline plus `slack` (normally
/// [`EVICTION_SLACK`]). Reads do not extend it.
pub(crate) struct DeadlineExpiry {
    pub(crate) slack: Duration,
}

impl DeadlineExpiry {
    fn remaining(&self, deadline: SystemTime) -> Duration {
        deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            + self.slack
    }
}

impl<K, V: Deadline> Expiry<K, V> for DeadlineExpiry {
    fn expire_after_create(&self, _key: &K, value: &V, _created_at: Instant) -> Option<Duration> {
        Some(self.remaining(value.deadline()))
    }

    fn expire_after_update(
        &self,
        _key: &K,
        value: &V,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.remaining(value.deadline()))
    }
}
