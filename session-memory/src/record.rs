//! What the caches hold: session records, lock leases, and the expiry policy that makes moka
//! evict each at its own deadline.

use std::sync::Arc;
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
