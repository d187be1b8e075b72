//! What the caches hold: session records, lock leases, and the expiry policy that makes moka
//! evict each at its own deadline.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use moka::Expiry;
use session_core::driver::{ChangeSet, Data, Error, LockToken, Result, Value};

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
    pub(crate) body: Body,
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

/// Length of an entry's header: key length and value length, `u32` little endian each.
const HEADER: usize = 8;

/// The keys and values of a session, packed in one allocation: for each key, its header (key
/// length, value length), the key's UTF-8 bytes and the value's bytes.
///
/// One buffer instead of a `HashMap<String, Value>` with a `String` and a `Bytes` per key: the
/// loadgen session (five keys, ~1 KB) takes about 900 bytes here against about 2 KB as a map
/// (map table, one allocation per key, per value and per value's share count, and the spare
/// capacity `Value::encode` leaves). Values handed out by [`Body::data`] are slices of the
/// buffer, so a read copies no value bytes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Body(Bytes);

impl Body {
    /// Whether the body has no key.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of keys: a walk over the headers, without the UTF-8 check of each key that
    /// [`entries`](Self::entries) makes.
    fn len(&self) -> usize {
        let mut at = 0;
        let mut n = 0;
        while let Some(header) = self.0.get(at..at + HEADER) {
            let (key_len, value_len) = header.split_at(4);
            let (Ok(key_len), Ok(value_len)) = (key_len.try_into(), value_len.try_into()) else {
                break;
            };
            at += HEADER
                + u32::from_le_bytes(key_len) as usize
                + u32::from_le_bytes(value_len) as usize;
            n += 1;
        }
        n
    }

    /// The entries, in stored order: (key, byte range of the value in the buffer).
    fn entries(&self) -> Entries<'_> {
        Entries {
            buf: &self.0,
            at: 0,
        }
    }

    /// The session as the session layer takes it: a map whose values share this buffer.
    pub(crate) fn data(&self) -> Data {
        let mut data = Data::with_capacity(self.len());
        for (key, value) in self.entries() {
            data.insert(key.to_owned(), Value::from(self.0.slice(value)));
        }
        data
    }

    /// Packs `data`.
    pub(crate) fn pack(data: &Data) -> Result<Body> {
        Body::pack_entries(data.iter().map(|(k, v)| (k.as_str(), v.as_bytes())))
    }

    /// This body with `changes` applied: every key dropped if `clear`, then the keys of
    /// `remove`, then the keys of `set` inserted or overwritten. Unchanged values are copied
    /// into the new buffer (one allocation for the whole session).
    pub(crate) fn apply(&self, changes: &ChangeSet) -> Result<Body> {
        let kept = self
            .entries()
            .filter(|(key, _)| {
                !changes.clear
                    && !changes.set.contains_key(*key)
                    && !changes.remove.iter().any(|r| r == key)
            })
            .map(|(key, range)| (key, &self.0[range]));
        let set = changes.set.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
        Body::pack_entries(kept.chain(set))
    }

    fn pack_entries<'a>(
        entries: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> Result<Body> {
        let len = entries
            .clone()
            .map(|(k, v)| HEADER + k.len() + v.len())
            .sum();
        // Exactly the needed capacity: the buffer is kept as long as the session lives.
        let mut buf = Vec::with_capacity(len);
        for (key, value) in entries {
            let too_long = || Error::InvalidInput("key or value over 4 GiB".into());
            let key_len = u32::try_from(key.len()).map_err(|_| too_long())?;
            let value_len = u32::try_from(value.len()).map_err(|_| too_long())?;
            buf.extend_from_slice(&key_len.to_le_bytes());
            buf.extend_from_slice(&value_len.to_le_bytes());
            buf.extend_from_slice(key.as_bytes());
            buf.extend_from_slice(value);
        }
        Ok(Body(Bytes::from(buf)))
    }
}

/// Iterator over the entries of a [`Body`]. The buffer was written by [`Body::pack_entries`]
/// from `&str` keys, so it always parses; a malformed tail (impossible) ends the iteration.
#[derive(Clone)]
struct Entries<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        let header = self.buf.get(self.at..self.at + HEADER)?;
        let (key_len, value_len) = header.split_at(4);
        let key_len = u32::from_le_bytes(key_len.try_into().ok()?) as usize;
        let value_len = u32::from_le_bytes(value_len.try_into().ok()?) as usize;
        let key_start = self.at + HEADER;
        let value_start = key_start + key_len;
        let end = value_start + value_len;
        let key = std::str::from_utf8(self.buf.get(key_start..value_start)?).ok()?;
        if end > self.buf.len() {
            return None;
        }
        self.at = end;
        Some((key, value_start..end))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn data(entries: &[(&str, &str)]) -> Data {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from_bytes(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn body_round_trips_and_applies_changes_like_a_map() {
        let start = data(&[("a", "1"), ("b", ""), ("ü", "three"), ("", "empty key")]);
        let body = Body::pack(&start).expect("pack");
        assert_eq!(body.data(), start);
        assert!(Body::default().is_empty() && Body::default().data().is_empty());

        let changes = ChangeSet {
            remove: vec!["a".into(), "missing".into()],
            set: data(&[("b", "2"), ("c", "new")]),
            ..ChangeSet::default()
        };
        let mut expected = start.clone();
        expected.remove("a");
        expected.extend(changes.set.clone());
        let next = body.apply(&changes).expect("apply");
        assert_eq!(next.data(), expected);
        assert_eq!(body.data(), start, "the old body changed");

        // A key both removed and set ends up set, as with the map (remove, then extend).
        let both = ChangeSet {
            remove: vec!["c".into()],
            set: data(&[("c", "again")]),
            ..ChangeSet::default()
        };
        assert_eq!(
            next.apply(&both).expect("apply").data()["c"].as_bytes(),
            b"again"
        );

        let cleared = ChangeSet {
            clear: true,
            set: data(&[("z", "only")]),
            ..ChangeSet::default()
        };
        assert_eq!(
            next.apply(&cleared).expect("apply").data(),
            data(&[("z", "only")])
        );
        let emptied = ChangeSet {
            clear: true,
            ..ChangeSet::default()
        };
        assert!(next.apply(&emptied).expect("apply").is_empty());
    }
}
