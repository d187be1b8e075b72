//! [`Snapshot`]: the values of a loaded session, as a shared map or as one packed buffer.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::storage::ChangeSet;
use crate::value::{Data, Value};

/// The values of a session as [`Storage::load`](crate::Storage::load) hands them to the session
/// layer: immutable, cheap to clone, and either a shared [`Data`] map or a [`Packed`] buffer.
///
/// A driver that decodes a record builds a map (`Snapshot::from(data)`). A driver that keeps
/// sessions in memory can keep each one [`Packed`] and hand out the buffer itself: a load is
/// then a reference count, with no map, no key allocated and no key hashed (the session layer
/// reads the few keys a request asks for by comparing them with the packed keys).
///
/// ```
/// use session_core::{Data, Packed, Snapshot, Value};
///
/// let mut data = Data::new();
/// data.insert("user".into(), Value::encode(&42u64)?);
/// let from_map = Snapshot::from(data.clone());
/// let packed = Snapshot::from(Packed::pack(&data)?);
/// assert_eq!(from_map, packed);
/// assert_eq!(packed.get("user").expect("set").decode::<u64>()?, 42);
/// assert_eq!(packed.into_data(), data);
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Snapshot(Repr);

#[derive(Clone)]
enum Repr {
    Map(Arc<Data>),
    Packed(Packed),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Packed(Packed::default())
    }
}

impl Snapshot {
    /// The value of `key`, borrowed.
    pub fn get_ref(&self, key: &str) -> Option<ValueRef<'_>> {
        match &self.0 {
            Repr::Map(map) => map.get(key).map(ValueRef::from),
            Repr::Packed(packed) => packed.get_ref(key),
        }
    }

    /// The value of `key` (a reference count, never a copy of the bytes).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.get_ref(key).map(|v| v.to_value())
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get_ref(key).is_some()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Map(map) => map.len(),
            Repr::Packed(packed) => packed.entries_raw().count(),
        }
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Repr::Map(map) => map.is_empty(),
            Repr::Packed(packed) => packed.is_empty(),
        }
    }

    /// Every key and value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ValueRef<'_>)> {
        self.iter_prefixed("")
    }

    /// The keys that start with `prefix` and their values, in no particular order: for a
    /// [`Packed`] buffer, the other keys are skipped on their bytes, never checked as text.
    pub fn iter_prefixed<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, ValueRef<'a>)> {
        let (map, packed) = match &self.0 {
            Repr::Map(map) => (Some(map.iter()), None),
            Repr::Packed(packed) => (None, Some(packed.iter_prefixed(prefix))),
        };
        map.into_iter()
            .flatten()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), ValueRef::from(v)))
            .chain(packed.into_iter().flatten())
    }

    /// [`iter_prefixed`](Self::iter_prefixed) with the keys as bytes: no key is checked as
    /// text (a packed buffer's keys are text by construction), for the session layer's pass over
    /// its own keys on every load.
    pub(crate) fn iter_prefixed_bytes<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a [u8], ValueRef<'a>)> {
        let (map, packed) = match &self.0 {
            Repr::Map(map) => (Some(map.iter()), None),
            Repr::Packed(packed) => (None, Some(packed.iter_prefixed_bytes(prefix))),
        };
        map.into_iter()
            .flatten()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_bytes(), ValueRef::from(v)))
            .chain(packed.into_iter().flatten())
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(k, _)| k)
    }

    /// The values as a map (without a copy when this snapshot holds the only reference to its
    /// map).
    pub fn into_data(self) -> Data {
        match self.0 {
            Repr::Map(map) => Arc::unwrap_or_clone(map),
            Repr::Packed(packed) => packed.to_data(),
        }
    }

    /// The values as a new map.
    pub fn to_data(&self) -> Data {
        self.clone().into_data()
    }
}

impl From<Data> for Snapshot {
    fn from(data: Data) -> Self {
        Snapshot(Repr::Map(Arc::new(data)))
    }
}

impl From<Arc<Data>> for Snapshot {
    fn from(data: Arc<Data>) -> Self {
        Snapshot(Repr::Map(data))
    }
}

impl From<Packed> for Snapshot {
    fn from(packed: Packed) -> Self {
        Snapshot(Repr::Packed(packed))
    }
}

impl PartialEq for Snapshot {
    /// Equal when they hold the same keys with the same bytes, whatever their form.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.iter().all(|(k, v)| {
                other
                    .get_ref(k)
                    .is_some_and(|o| o.as_bytes() == v.as_bytes())
            })
    }
}

impl Eq for Snapshot {}

impl PartialEq<Data> for Snapshot {
    fn eq(&self, other: &Data) -> bool {
        self.len() == other.len()
            && other.iter().all(|(k, v)| {
                self.get_ref(k)
                    .is_some_and(|s| s.as_bytes() == v.as_bytes())
            })
    }
}

impl PartialEq<Snapshot> for Data {
    fn eq(&self, other: &Snapshot) -> bool {
        other == self
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// A value borrowed from a [`Snapshot`] (or a [`Data`] map): its bytes, and what makes an owned
/// [`Value`] of them without copying.
#[derive(Clone, Copy)]
pub struct ValueRef<'a> {
    bytes: &'a [u8],
    owner: Owner<'a>,
}

#[derive(Clone, Copy)]
enum Owner<'a> {
    Value(&'a Value),
    Buffer(&'a Bytes),
}

impl<'a> ValueRef<'a> {
    /// The MessagePack bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// An owned value (a reference count on the same bytes).
    pub fn to_value(&self) -> Value {
        match self.owner {
            Owner::Value(v) => v.clone(),
            Owner::Buffer(buf) => Value::from(buf.slice_ref(self.bytes)),
        }
    }

    /// Decodes the bytes into `T` (as [`Value::decode`]).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        rmp_serde::from_slice(self.bytes).map_err(Error::Decode)
    }
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(value: &'a Value) -> Self {
        ValueRef {
            bytes: value.as_bytes(),
            owner: Owner::Value(value),
        }
    }
}

impl fmt::Debug for ValueRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_value(), f)
    }
}

/// Length of the start of a packed buffer: the entry count and the total length of the keys,
/// `u32` little endian each.
const COUNT: usize = 8;
/// Length of an entry's header: key length and value length, `u32` little endian each.
const HEADER: usize = 8;
/// Spare room at the end of a buffer made by [`Packed::pack`] or [`Packed::apply`] (what a store
/// keeps for as long as the session lives): 64 to 127 zero bytes after the last value, which
/// readers never reach (they follow the headers), so that the buffer's size is a multiple of
/// `SPARE`. [`Packed::apply`] keeps the size of the buffer it replaces while the new entries fit
/// in it with less than two `SPARE`s to spare, so a write that grows or shrinks the session by
/// a few dozen bytes (a counter, a flag, a token) makes a buffer of the same size as the one it
/// frees, and the allocator hands that block to the next such write. With exact sizes, each
/// write's slightly bigger buffer fitted none of the blocks the earlier writes had freed: the
/// memory store's write phase left about 660 B per session of freed blocks behind (peak
/// 2,262 B per session with 1,601 B in use, `session-memory/examples/rss`); with the spare room,
/// none (1,652 B, the same as after create). Buffers decoded from a backend's reply, which live
/// for one request, are exact.
const SPARE: usize = 64;

/// The size of a long-lived buffer whose entries take `len` bytes (see [`SPARE`]).
fn spare_capacity(len: usize) -> usize {
    len.saturating_add(SPARE).next_multiple_of(SPARE)
}

/// The keys and values of a session packed in one buffer: the number of entries and the total
/// length of the keys, then every entry's header (key length, value length), then every key's
/// UTF-8 bytes, then every value's bytes, then unused bytes if the buffer is a store's
/// long-lived copy (64 to 127 spare bytes, see [`apply`](Self::apply)). Empty: an empty
/// buffer. (A layout in memory only: nothing stores it, so it may change in any release.)
///
/// One allocation instead of a `HashMap<String, Value>` with a `String` and a shared buffer per
/// key: the benchmark session (five keys, ~1 KB) takes about 900 bytes packed against about 2 KB
/// as a map. The headers and keys sit together at the front, so finding a key reads the first
/// cache lines only; values handed out are slices of the buffer. Made only by
/// [`pack`](Self::pack) and [`apply`](Self::apply), so it always holds valid UTF-8 keys; cloning
/// is a reference count.
#[derive(Clone, Default)]
pub struct Packed(Bytes);

/// Equal when they hold the same entries in the same order (spare bytes aside).
impl PartialEq for Packed {
    fn eq(&self, other: &Packed) -> bool {
        self.used() == other.used()
    }
}

impl Eq for Packed {}

impl Packed {
    /// Packs `data`.
    pub fn pack(data: &Data) -> Result<Packed> {
        let entries: Vec<(&[u8], &[u8])> = data
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        Packed::pack_entries(&entries, spare_capacity)
    }

    /// Packs `entries` (keys assumed distinct, as a decoded record's are).
    pub(crate) fn from_entries(entries: &[(&str, &[u8])]) -> Result<Packed> {
        Packed::pack_entries(entries, |len| len)
    }

    /// Packs keys and values read from a backend's reply without building a map first, as
    /// inserting them into a map in order would: a key given twice keeps its last value.
    ///
    /// ```
    /// use session_core::Packed;
    ///
    /// let p = Packed::from_pairs(&[("a", &[1u8][..]), ("b", &[2][..]), ("a", &[3][..])])?;
    /// assert_eq!(p.get_ref("a").expect("set").as_bytes(), [3]);
    /// assert_eq!(p.iter().count(), 2);
    /// # Ok::<(), session_core::Error>(())
    /// ```
    pub fn from_pairs(entries: &[(&str, &[u8])]) -> Result<Packed> {
        // a reply holds a handful of distinct keys: compared pairwise, no hashing
        let distinct = entries.len() <= 32
            && entries
                .iter()
                .enumerate()
                .all(|(i, (k, _))| entries[i + 1..].iter().all(|(l, _)| l != k));
        if distinct {
            return Packed::pack_entries(entries, |len| len);
        }
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        let mut kept: Vec<(&str, &[u8])> = entries
            .iter()
            .rev()
            .filter(|(k, _)| seen.insert(*k))
            .copied()
            .collect();
        kept.reverse();
        Packed::pack_entries(&kept, |len| len)
    }

    /// The number of entries the buffer says it holds (a capacity hint: iteration checks
    /// every bound).
    fn count(&self) -> usize {
        read_u32(&self.0, 0).unwrap_or(0).min(1024)
    }

    /// This buffer with `changes` applied, as a new buffer: every key dropped if `clear`, then
    /// the keys of `remove`, then the keys of `set` inserted or overwritten (a key both removed
    /// and set ends up set). The new buffer has 64 to 127 spare bytes after its last value, or
    /// keeps this buffer's size when the new entries fit in it with less than 128 bytes to
    /// spare: a write that changes a session by a few dozen bytes then makes a buffer of the size
    /// of the one it replaces, which the allocator can hand to the next such write.
    pub fn apply(&self, changes: &ChangeSet) -> Result<Packed> {
        // One vector: the set entries first, then the stored entries kept. A change set touches
        // a key or two, so a stored key is compared with the few set keys' bytes rather than
        // hashed.
        let set = changes.set.len();
        let mut entries: Vec<(&[u8], &[u8])> = Vec::with_capacity(set + self.count());
        entries.extend(
            changes
                .set
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes())),
        );
        if !changes.clear {
            for (key, range) in self.entries_raw() {
                let replaced = if set <= 8 {
                    entries[..set].iter().any(|(k, _)| *k == key)
                } else {
                    std::str::from_utf8(key).is_ok_and(|k| changes.set.contains_key(k))
                };
                let removed = !changes.remove.is_empty()
                    && changes.remove.iter().any(|r| r.as_bytes() == key);
                if !replaced && !removed {
                    entries.push((key, &self.0[range]));
                }
            }
        }
        let old = self.0.len();
        Packed::pack_entries(&entries, |len| {
            if len <= old && old - len < 2 * SPARE {
                old
            } else {
                spare_capacity(len)
            }
        })
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The size of the buffer in bytes, its spare room included.
    pub fn byte_len(&self) -> usize {
        self.0.len()
    }

    /// The bytes up to the end of the last value (no spare room).
    fn used(&self) -> &[u8] {
        let end = self
            .entries_raw()
            .last()
            .map_or(self.0.len().min(COUNT), |(_, value)| value.end);
        &self.0[..end]
    }

    /// The value of `key`, borrowed.
    pub fn get_ref(&self, key: &str) -> Option<ValueRef<'_>> {
        let key = key.as_bytes();
        let mut entries = self.entries_raw();
        let range = loop {
            let (k, range) = entries.next()?;
            if k == key {
                break range;
            }
        };
        Some(ValueRef {
            bytes: &self.0[range],
            owner: Owner::Buffer(&self.0),
        })
    }

    /// Every key and value, in stored order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ValueRef<'_>)> {
        self.iter_prefixed("")
    }

    /// The keys that start with `prefix` and their values, in stored order; the other keys are
    /// skipped on their bytes.
    pub fn iter_prefixed<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, ValueRef<'a>)> {
        self.iter_prefixed_bytes(prefix)
            .filter_map(|(k, v)| Some((std::str::from_utf8(k).ok()?, v)))
    }

    /// [`iter_prefixed`](Self::iter_prefixed) with the keys as bytes.
    fn iter_prefixed_bytes<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a [u8], ValueRef<'a>)> {
        self.entries_raw()
            .filter(move |(k, _)| k.starts_with(prefix.as_bytes()))
            .map(|(k, range)| {
                let value = ValueRef {
                    bytes: &self.0[range],
                    owner: Owner::Buffer(&self.0),
                };
                (k, value)
            })
    }

    /// The values as a map whose values share this buffer.
    pub fn to_data(&self) -> Data {
        let mut data = Data::with_capacity(self.count());
        for (key, range) in self.entries() {
            data.insert(key.to_owned(), Value::from(self.0.slice(range)));
        }
        data
    }

    fn entries(&self) -> impl Iterator<Item = (&str, Range<usize>)> {
        self.entries_raw()
            .map_while(|(k, range)| Some((std::str::from_utf8(k).ok()?, range)))
    }

    fn entries_raw(&self) -> Entries<'_> {
        Entries::new(&self.0)
    }

    /// Packs `entries`, whose keys are UTF-8 (from `&str`s, or from a buffer packed from them),
    /// into a buffer of `capacity(length)` bytes (at least the length; see [`SPARE`]).
    fn pack_entries<K: AsRef<[u8]>>(
        entries: &[(K, &[u8])],
        capacity: impl FnOnce(usize) -> usize,
    ) -> Result<Packed> {
        if entries.is_empty() {
            return Ok(Packed::default());
        }
        let too_long = || Error::InvalidInput("key or value over 4 GiB".into());
        let len = entries.iter().try_fold(COUNT, |sum: usize, (k, v)| {
            sum.checked_add(HEADER + k.as_ref().len())
                .and_then(|sum| sum.checked_add(v.len()))
                .ok_or_else(too_long)
        })?;
        let count = u32::try_from(entries.len()).map_err(|_| too_long())?;
        let keys_len = entries.iter().map(|(k, _)| k.as_ref().len()).sum::<usize>();
        let keys_len = u32::try_from(keys_len).map_err(|_| too_long())?;
        // The size `capacity` gives (see `SPARE`), the spare room zeroed, written in place: the
        // fixed-size header writes compile to plain stores.
        let mut buf = Vec::new();
        let size = capacity(len).max(len);
        buf.try_reserve_exact(size)
            .map_err(|_| Error::InvalidInput("session too large to pack".into()))?;
        buf.resize(size, 0);
        buf[0..4].copy_from_slice(&count.to_le_bytes());
        buf[4..8].copy_from_slice(&keys_len.to_le_bytes());
        let mut header = COUNT;
        let mut at = COUNT + HEADER * entries.len();
        for (key, value) in entries {
            let key = key.as_ref();
            let key_len = u32::try_from(key.len()).map_err(|_| too_long())?;
            let value_len = u32::try_from(value.len()).map_err(|_| too_long())?;
            buf[header..header + 4].copy_from_slice(&key_len.to_le_bytes());
            buf[header + 4..header + HEADER].copy_from_slice(&value_len.to_le_bytes());
            header += HEADER;
            buf[at..at + key.len()].copy_from_slice(key);
            at += key.len();
        }
        for (_, value) in entries {
            buf[at..at + value.len()].copy_from_slice(value);
            at += value.len();
        }
        Ok(Packed(Bytes::from(buf)))
    }
}

impl fmt::Debug for Packed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The `u32` (little endian) at `at` in `buf`, as a `usize`; `None` past the end.
fn read_u32(buf: &[u8], at: usize) -> Option<usize> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
}

/// Iterator over the entries of a packed buffer: (key bytes, byte range of the value). A
/// malformed buffer (impossible through [`Packed`]'s constructors) ends the iteration early,
/// never reads out of bounds.
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
        let (Some(keys_start), Some(keys_len)) = (keys_start, read_u32(buf, 4)) else {
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
    type Item = (&'a [u8], Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let key_len = read_u32(self.buf, self.header)?;
        let value_len = read_u32(self.buf, self.header + 4)?;
        let key_end = self.key.checked_add(key_len)?;
        let value_end = self.value.checked_add(value_len)?;
        let key = self.buf.get(self.key..key_end)?;
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
    fn packed_round_trips_and_applies_changes_like_a_map() {
        let start = data(&[("a", "1"), ("b", ""), ("ü", "three"), ("", "empty key")]);
        let packed = Packed::pack(&start).expect("pack");
        assert_eq!(packed.to_data(), start);
        assert!(Packed::default().is_empty() && Packed::default().to_data().is_empty());

        let changes = ChangeSet {
            remove: vec!["a".into(), "missing".into()],
            set: data(&[("b", "2"), ("c", "new")]),
            ..ChangeSet::default()
        };
        let mut expected = start.clone();
        expected.remove("a");
        expected.extend(changes.set.clone());
        let next = packed.apply(&changes).expect("apply");
        assert_eq!(next.to_data(), expected);
        assert_eq!(packed.to_data(), start, "the old buffer changed");

        // A key both removed and set ends up set, as with the map (remove, then extend).
        let both = ChangeSet {
            remove: vec!["c".into()],
            set: data(&[("c", "again")]),
            ..ChangeSet::default()
        };
        assert_eq!(
            next.apply(&both).expect("apply").to_data()["c"].as_bytes(),
            b"again"
        );

        let cleared = ChangeSet {
            clear: true,
            set: data(&[("z", "only")]),
            ..ChangeSet::default()
        };
        assert_eq!(
            next.apply(&cleared).expect("apply").to_data(),
            data(&[("z", "only")])
        );
        let emptied = ChangeSet {
            clear: true,
            ..ChangeSet::default()
        };
        assert!(next.apply(&emptied).expect("apply").is_empty());

        // Many keys at once (looked up by hash rather than compared one by one).
        let many: Vec<(String, String)> =
            (0..12).map(|i| (format!("m{i}"), i.to_string())).collect();
        let mut set: Data = many
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_bytes(v.clone().into_bytes())))
            .collect();
        set.insert("b".into(), Value::from_bytes(&b"over"[..]));
        let big = ChangeSet {
            set: set.clone(),
            ..ChangeSet::default()
        };
        let mut expected = next.to_data();
        expected.extend(set);
        assert_eq!(next.apply(&big).expect("apply").to_data(), expected);
    }

    #[test]
    fn a_snapshot_reads_the_same_in_both_forms() {
        let start = data(&[("a", "1"), ("bb", "two"), ("", "empty key"), ("ü", "")]);
        let map = Snapshot::from(start.clone());
        let packed = Snapshot::from(Packed::pack(&start).expect("pack"));
        for s in [&map, &packed] {
            assert_eq!(s.len(), 4);
            assert!(!s.is_empty());
            assert_eq!(s.get("bb").expect("bb").as_bytes(), b"two");
            assert_eq!(s.get_ref("").expect("empty key").as_bytes(), b"empty key");
            assert_eq!(s.get_ref("ü").expect("ü").as_bytes(), b"");
            assert!(s.get("b").is_none() && s.get("bbb").is_none() && !s.contains_key("c"));
            let mut keys: Vec<&str> = s.keys().collect();
            keys.sort_unstable();
            assert_eq!(keys, ["", "a", "bb", "ü"]);
            assert_eq!(s.to_data(), start);
            assert_eq!(*s, start);
            let mut prefixed: Vec<&str> = s.iter_prefixed("b").map(|(k, _)| k).collect();
            prefixed.sort_unstable();
            assert_eq!(prefixed, ["bb"]);
            assert_eq!(s.iter_prefixed("").count(), 4);
            assert_eq!(s.iter_prefixed("x").count(), 0);
        }
        assert_eq!(map, packed);
        assert_ne!(map, Snapshot::from(data(&[("a", "1")])));
        assert_ne!(
            packed,
            Snapshot::from(data(&[("a", "1"), ("bb", "2"), ("", ""), ("ü", "")]))
        );
        assert!(Snapshot::default().is_empty() && Snapshot::default().get("a").is_none());
        assert_eq!(packed.clone().into_data(), start);
        assert_eq!(format!("{map:?}").len(), format!("{packed:?}").len());
    }

    #[test]
    fn a_stores_buffer_keeps_its_size_across_small_writes_and_a_reply_is_exact() {
        let spare = |p: &Packed| p.byte_len() - p.used().len();
        let start = data(&[("cart", &"c".repeat(700)), ("name", "Ada")]);
        let packed = Packed::pack(&start).expect("pack");
        assert_eq!(packed.byte_len() % SPARE, 0);
        assert!(
            (SPARE..2 * SPARE).contains(&spare(&packed)),
            "{}",
            spare(&packed)
        );

        // a small key added, then changed: the same size, the same entries as a fresh pack
        let counter = |n: &str| ChangeSet {
            set: data(&[("counter", n)]),
            ..ChangeSet::default()
        };
        let written = packed.apply(&counter("1")).expect("apply");
        assert_eq!(written.byte_len(), packed.byte_len());
        let again = written.apply(&counter("22")).expect("apply");
        assert_eq!(again.byte_len(), packed.byte_len());
        let mut expected = start.clone();
        expected.insert("counter".into(), Value::from_bytes(&b"22"[..]));
        assert_eq!(again.to_data(), expected);
        let fresh = Packed::pack(&expected).expect("pack");
        assert_eq!(again.apply(&ChangeSet::default()).expect("apply"), again);
        assert_eq!(
            Packed::from_pairs(
                &again
                    .iter()
                    .map(|(k, v)| (k, v.as_bytes()))
                    .collect::<Vec<_>>()
            )
            .expect("from_pairs"),
            again,
            "equality ignores the spare room"
        );
        assert_eq!(fresh.to_data(), again.to_data());

        // a bigger change takes a new size, with fresh spare room
        let grown = again
            .apply(&ChangeSet {
                set: data(&[("note", &"n".repeat(300))]),
                ..ChangeSet::default()
            })
            .expect("apply");
        assert!(grown.byte_len() > again.byte_len());
        assert!((SPARE..2 * SPARE).contains(&spare(&grown)));
        let shrunk = grown
            .apply(&ChangeSet {
                remove: vec!["cart".into()],
                ..ChangeSet::default()
            })
            .expect("apply");
        assert!(
            shrunk.byte_len() + 600 < grown.byte_len(),
            "{}",
            shrunk.byte_len()
        );
        assert!((SPARE..2 * SPARE).contains(&spare(&shrunk)));

        // decoded from a reply: exactly its entries
        let reply = Packed::from_pairs(&[("a", &b"1"[..]), ("b", &b"22"[..])]).expect("pairs");
        assert_eq!(spare(&reply), 0);
    }

    #[test]
    fn headers_and_keys_come_first_and_a_damaged_buffer_never_panics() {
        let start = data(&[
            ("k1", &"x".repeat(300)),
            ("key2", &"y".repeat(300)),
            ("", ""),
        ]);
        let packed = Packed::pack(&start).expect("pack");
        assert_eq!(packed.entries().count(), 3);
        let keys_end = COUNT + 3 * HEADER + "k1".len() + "key2".len();
        // every value lies after the headers and the keys
        for (_, range) in packed.entries() {
            assert!(range.start >= keys_end, "{range:?}");
        }
        // cut short or stuffed with a huge count: fewer (or no) entries, never a panic
        for cut in 0..packed.used().len() {
            let damaged = Packed(packed.0.slice(..cut));
            assert!(damaged.entries().count() < 3, "cut at {cut}");
            let _ = (damaged.to_data(), damaged.get_ref("key2"));
        }
        let mut huge = packed.0.to_vec();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Packed(Bytes::from(huge)).entries().count(), 0);
        let mut long_keys = packed.0.to_vec();
        long_keys[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Packed(Bytes::from(long_keys)).entries().count(), 0);
    }
}
