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

/// Length of the entry count at the start of a body: `u32` little endian.
const COUNT: usize = 4;
/// Length of an entry's header: key length and value length, `u32` little endian each.
const HEADER: usize = 8;

/// The keys and values of a session, packed in one allocation: the number of entries, then
/// every entry's header (key length, value length), then every key's UTF-8 bytes, then every
/// value's bytes. An empty body is an empty buffer.
///
/// One buffer instead of a `HashMap<String, Value>` with a `String` and a `Bytes` per key: the
/// loadgen session (five keys, ~1 KB) takes about 900 bytes here against about 2 KB as a map
/// (map table, one allocation per key, per value and per value's share count, and the spare
/// capacity `Value::encode` leaves). Values handed out by [`Body::data`] are slices of the
/// buffer, so a read copies no value bytes; and since the headers and the keys sit together at
/// the front, building the map reads the first cache lines of the buffer only, never the
/// values (a walk from entry to entry through the values was a chain of cache misses, one per
/// key, in front of every load of a session not read lately).
#[derive(Clone, Debug, Default)]
pub(crate) struct Body(Bytes);

impl Body {
    /// Whether the body has no key.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of keys, as the body says (only a capacity hint: [`entries`](Self::entries)
    /// checks every bound).
    fn len(&self) -> usize {
        read_u32(&self.0, 0).unwrap_or(0)
    }

    /// The entries, in stored order: (key, byte range of the value in the buffer).
    fn entries(&self) -> Entries<'_> {
        Entries::new(&self.0)
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
        let entries: Vec<(&str, &[u8])> = data
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        Body::pack_entries(&entries)
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
        let entries: Vec<(&str, &[u8])> = kept.chain(set).collect();
        Body::pack_entries(&entries)
    }

    fn pack_entries(entries: &[(&str, &[u8])]) -> Result<Body> {
        if entries.is_empty() {
            return Ok(Body::default());
        }
        let too_long = || Error::InvalidInput("key or value over 4 GiB".into());
        let len = entries.iter().try_fold(COUNT, |sum: usize, (k, v)| {
            sum.checked_add(HEADER + k.len())
                .and_then(|sum| sum.checked_add(v.len()))
                .ok_or_else(too_long)
        })?;
        // Exactly the needed capacity: the buffer is kept as long as the session lives.
        let mut buf = Vec::with_capacity(len);
        let count = u32::try_from(entries.len()).map_err(|_| too_long())?;
        buf.extend_from_slice(&count.to_le_bytes());
        for (key, value) in entries {
            let key_len = u32::try_from(key.len()).map_err(|_| too_long())?;
            let value_len = u32::try_from(value.len()).map_err(|_| too_long())?;
            buf.extend_from_slice(&key_len.to_le_bytes());
            buf.extend_from_slice(&value_len.to_le_bytes());
        }
        for (key, _) in entries {
            buf.extend_from_slice(key.as_bytes());
        }
        for (_, value) in entries {
            buf.extend_from_slice(value);
        }
        Ok(Body(Bytes::from(buf)))
    }
}

/// The `u32` (little endian) at `at` in `buf`, as a `usize`; `None` past the end.
fn read_u32(buf: &[u8], at: usize) -> Option<usize> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
}

/// Iterator over the entries of a [`Body`]. The buffer was written by [`Body::pack_entries`]
/// from `&str` keys, so it always parses; a malformed buffer (impossible) ends the iteration
/// early, never reads out of bounds.
#[derive(Clone)]
struct Entries<'a> {
    buf: &'a [u8],
    /// Entries left.
    left: usize,
    /// Offset of the next header.
    header: usize,
    /// Offset of the next key.
    key: usize,
    /// Offset of the next value.
    value: usize,
}

impl<'a> Entries<'a> {
    fn new(buf: &'a [u8]) -> Self {
        let empty = Entries {
            buf,
            left: 0,
            header: 0,
            key: 0,
            value: 0,
        };
        let Some(count) = read_u32(buf, 0) else {
            return empty;
        };
        // The headers sit together; the values start after the last key.
        let keys_start = count.checked_mul(HEADER).and_then(|h| h.checked_add(COUNT));
        let keys_len = (0..count).try_fold(0usize, |sum, i| {
            sum.checked_add(read_u32(buf, COUNT + i * HEADER)?)
        });
        let (Some(keys_start), Some(keys_len)) = (keys_start, keys_len) else {
            return empty;
        };
        let Some(values_start) = keys_start.checked_add(keys_len) else {
            return empty;
        };
        Entries {
            buf,
            left: count,
            header: COUNT,
            key: keys_start,
            value: values_start,
        }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let key_len = read_u32(self.buf, self.header)?;
        let value_len = read_u32(self.buf, self.header + 4)?;
        let key_end = self.key.checked_add(key_len)?;
        let value_end = self.value.checked_add(value_len)?;
        let key = std::str::from_utf8(self.buf.get(self.key..key_end)?).ok()?;
        if value_end > self.buf.len() {
            return None;
        }
        let value = self.value..value_end;
        self.left -= 1;
        self.header += HEADER;
        self.key = key_end;
        self.value = value_end;
        Some((key, value))
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

    #[test]
    fn headers_and_keys_come_first_and_a_damaged_buffer_never_panics() {
        let start = data(&[
            ("k1", &"x".repeat(300)),
            ("key2", &"y".repeat(300)),
            ("", ""),
        ]);
        let body = Body::pack(&start).expect("pack");
        assert_eq!(body.len(), 3);
        let keys_end = COUNT + 3 * HEADER + "k1".len() + "key2".len();
        // every value lies after the headers and the keys
        for (_, range) in body.entries() {
            assert!(range.start >= keys_end, "{range:?}");
        }
        // cut short or stuffed with a huge count: fewer (or no) entries, never a panic
        for cut in 0..body.0.len() {
            let damaged = Body(body.0.slice(..cut));
            assert!(damaged.entries().count() < 3, "cut at {cut}");
            let _ = damaged.data();
        }
        let mut huge = body.0.to_vec();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Body(Bytes::from(huge)).entries().count(), 0);
    }
}
