//! The session record codec: one session (deadline, owner, values) as one byte string, for
//! drivers that store a session as a blob (the file, sled and memcached drivers).
//!
//! A driver keeps only its own framing around the record (a checksum, a file kind, a key
//! prefix); what a session *is* on the wire is written and read here, once.
//!
//! # Byte layout (version 1, what [`Record::encode`] writes)
//!
//! ```text
//! offset size field
//!  0     4    magic "SREC"
//!  4     1    version (1)
//!  5     8    deadline: unix milliseconds, u64 big-endian
//! 13     n    body: MessagePack array [owner: nil | str, data: map str -> bin]
//! ```
//!
//! The record is exactly those bytes: the body is one MessagePack value and nothing follows it.
//! Keys are written in byte order, so equal records encode to equal bytes. Values are the
//! opaque [`Value`] bytes as MessagePack `bin`.
//!
//! # Older layouts ([`Record::decode`] reads them, nothing writes them)
//!
//! Before this codec, each driver had its own layout; they are told apart by their first bytes:
//!
//! | first bytes | written by                    | then                                                         |
//! |-------------|-------------------------------|--------------------------------------------------------------|
//! | `SM` `0x01` | session-memcached (version 1) | deadline (u64 BE), MessagePack map str -> bin; no owner       |
//! | `0x01`      | session-sled (version 1)      | deadline (u64 BE), MessagePack map `{"owner": nil \| str, "data": map str -> bin}` |
//!
//! session-file version 1 kept the deadline in its own file header and its payload was this
//! codec's body; it reads those files with [`Record::decode_body`].
//!
//! # Errors
//!
//! Anything malformed is [`Error::Corrupt`], never a panic: a wrong magic, an unknown version, a
//! truncated header or body, a body that is not the MessagePack above (a value that is not `bin`,
//! a key given twice, an array of the wrong length), and bytes after the body.
//!
//! ```
//! use session_core::driver::record::Record;
//! use session_core::{Data, Value};
//!
//! let mut data = Data::new();
//! data.insert("user".into(), Value::encode(&"alice")?);
//! let record = Record { deadline_ms: 1_700_000_000_000, owner: Some("alice".into()), data };
//!
//! let bytes = record.encode()?;
//! assert_eq!(&bytes[..5], b"SREC\x01");
//! assert_eq!(Record::decode(&bytes, "mine")?, record);
//! assert_eq!(session_core::driver::record::deadline(&bytes, "mine")?, 1_700_000_000_000);
//! assert!(Record::decode(&bytes[..bytes.len() - 1], "mine").is_err()); // Error::Corrupt
//! # Ok::<(), session_core::Error>(())
//! ```

use std::fmt;
use std::time::SystemTime;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::check;
use crate::error::{Error, Result};
use crate::snapshot::{Packed, Snapshot};
use crate::storage::Loaded;
use crate::value::{Data, Value};

/// The first four bytes of a record.
pub const MAGIC: [u8; 4] = *b"SREC";
/// The version [`Record::encode`] writes.
pub const VERSION: u8 = 1;
/// Bytes before the body: magic, version, deadline. [`deadline`] reads only these.
pub const HEADER_LEN: usize = 4 + 1 + 8;

/// The first bytes of a session-memcached version 1 item.
const LEGACY_MEMCACHED: &[u8] = b"SM\x01";
/// The first byte of a session-sled version 1 record.
const LEGACY_SLED: u8 = 0x01;

/// Initial capacity of a decoded map is capped: a corrupt length must not allocate gigabytes.
const MAX_PREALLOCATED_KEYS: usize = 1024;

/// One session as a driver stores it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Expiry deadline, unix milliseconds; the record is expired from this instant on.
    pub deadline_ms: u64,
    /// The owner the session is bound to in the owner index, if the driver keeps one.
    pub owner: Option<String>,
    /// The session's values (empty for an owner binding made before the session's first write).
    pub data: Data,
}

impl Record {
    /// A record of `data` expiring at `deadline_ms`, bound to no owner.
    pub fn new(deadline_ms: u64, data: Data) -> Self {
        Record {
            deadline_ms,
            owner: None,
            data,
        }
    }

    /// Whether the record is past its deadline at `now_ms` (the deadline itself is expired).
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.deadline_ms
    }

    /// Whether the record is a session at `now_ms`: unexpired, with at least one key.
    pub fn live(&self, now_ms: u64) -> bool {
        !self.expired(now_ms) && !self.data.is_empty()
    }

    /// The deadline as a time.
    pub fn expires_at(&self) -> SystemTime {
        check::from_unix_millis(self.deadline_ms)
    }

    /// The record as [`Driver::load`](crate::driver::Driver::load) returns it: its values and
    /// its deadline (the owner is not part of a load).
    pub fn into_loaded(self) -> Loaded {
        Loaded {
            expires_at: Some(self.expires_at()),
            data: Snapshot::from(self.data),
        }
    }

    /// Encodes the record in the current layout.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the encoded record to `out` (after a driver's own framing header, say).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let values: usize = self.data.iter().map(|(k, v)| k.len() + v.len() + 10).sum();
        out.reserve(HEADER_LEN + 2 + self.owner.as_ref().map_or(1, |o| o.len() + 5) + 5 + values);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.deadline_ms.to_be_bytes());
        write_body(out, self.owner.as_deref(), &self.data)
    }

    /// Appends only the record's body (no magic, version or deadline) to `out`: for a driver
    /// that keeps the deadline itself, in a column or a header of its own (session-sqlite's
    /// `expires_at`). [`Record::decode_body`] reads it back.
    pub fn encode_body_into(&self, out: &mut Vec<u8>) -> Result<()> {
        write_body(out, self.owner.as_deref(), &self.data)
    }

    /// Decodes a record in the current layout or one of the older ones (see the module
    /// documentation). `backend` names the driver in the [`Error::Corrupt`] of a malformed one.
    pub fn decode(bytes: &[u8], backend: &'static str) -> Result<Record> {
        let (layout, deadline_ms, body) = split(bytes, backend)?;
        match layout {
            Layout::Current => Record::decode_body(deadline_ms, body, backend),
            Layout::Memcached => {
                let DataMap(data) = body_value(body, backend)?;
                Ok(Record::new(deadline_ms, data))
            }
            Layout::Sled => {
                let LegacySledBody { owner, data } = body_value(body, backend)?;
                Ok(Record {
                    deadline_ms,
                    owner,
                    data: data.0,
                })
            }
        }
    }

    /// Decodes a current-layout body (the bytes from offset [`HEADER_LEN`] on) of a record
    /// expiring at `deadline_ms`: for a framing that keeps the deadline itself, as
    /// session-file version 1 did. Bytes after the body are [`Error::Corrupt`].
    pub fn decode_body(deadline_ms: u64, body: &[u8], backend: &'static str) -> Result<Record> {
        let (owner, data) = read_body(body)
            .map_err(|reason| Error::corrupt(backend, format!("session record body: {reason}")))?;
        Ok(Record {
            deadline_ms,
            owner,
            data,
        })
    }
}

/// The deadline of an encoded record (current or older layout), reading only its header: for
/// purges and scans that skip expired records without decoding them.
pub fn deadline(bytes: &[u8], backend: &'static str) -> Result<u64> {
    split(bytes, backend).map(|(_, deadline, _)| deadline)
}

/// Which layout a record is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Current,
    Memcached,
    Sled,
}

/// Reads the header: the layout, the deadline and the body.
fn split<'a>(bytes: &'a [u8], backend: &'static str) -> Result<(Layout, u64, &'a [u8])> {
    let corrupt = |reason: String| Error::corrupt(backend, reason);
    let (layout, rest) = if let Some(rest) = bytes.strip_prefix(&MAGIC) {
        match rest.split_first() {
            Some((&VERSION, rest)) => (Layout::Current, rest),
            Some((v, _)) => return Err(corrupt(format!("unknown session record version {v}"))),
            None => return Err(corrupt("session record truncated after its magic".into())),
        }
    } else if let Some(rest) = bytes.strip_prefix(LEGACY_MEMCACHED) {
        (Layout::Memcached, rest)
    } else if let Some((&LEGACY_SLED, rest)) = bytes.split_first() {
        (Layout::Sled, rest)
    } else {
        return Err(corrupt(format!(
            "not a session record: {} bytes without the \"SREC\" magic",
            bytes.len()
        )));
    };
    let Some((deadline, body)) = rest.split_first_chunk::<8>() else {
        return Err(corrupt(format!(
            "session record of {} bytes is truncated in its header",
            bytes.len()
        )));
    };
    Ok((layout, u64::from_be_bytes(*deadline), body))
}

/// Writes a current-layout body, `[owner: nil | str, data: map str -> bin]` with the keys in
/// byte order, with `rmp`'s primitives (no serde pass over the values).
fn write_body(out: &mut Vec<u8>, owner: Option<&str>, data: &Data) -> Result<()> {
    use rmp::encode::{write_array_len, write_bin, write_map_len, write_nil, write_str};
    let too_big = |what: &str| Error::InvalidInput(format!("{what} is too large for a record"));
    let len = |n: usize, what: &str| u32::try_from(n).map_err(|_| too_big(what));
    let mut entries: Vec<(&String, &Value)> = data.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    // Writing to a Vec cannot fail but for lengths over u32, checked above each write.
    fn io<E>(_: E) -> Error {
        Error::InvalidInput("a session is too large for a record".into())
    }
    write_array_len(out, 2).map_err(io)?;
    match owner {
        None => write_nil(out).map_err(io)?,
        Some(owner) => {
            len(owner.len(), "the owner")?;
            write_str(out, owner).map_err(io)?;
        }
    }
    write_map_len(out, len(entries.len(), "the number of keys")?).map_err(io)?;
    for (key, value) in entries {
        len(key.len(), "a key")?;
        write_str(out, key).map_err(io)?;
        len(value.len(), "a value")?;
        write_bin(out, value.as_bytes()).map_err(io)?;
    }
    Ok(())
}

/// Reads a current-layout body, `[owner: nil | str, data: map str -> bin]`, which must fill
/// `body` exactly, into an owned owner and map: each key and value is copied once, into its
/// `String` and `Value`.
fn read_body(body: &[u8]) -> std::result::Result<(Option<String>, Data), String> {
    let (owner, entries) = read_body_entries(body)?;
    let data = entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::from_bytes(v.to_vec())))
        .collect();
    Ok((owner.map(str::to_owned), data))
}

/// A current-layout body's owner and entries, borrowed from `body`, which they must fill
/// exactly. Read with `rmp`'s primitives straight from the slice (serde's reader-based path
/// copied every value twice, and the slice-based one cannot tell where the body ended). A key
/// given twice is an error.
#[allow(
    clippy::type_complexity,
    reason = "a borrowed (owner, entries) pair, used twice"
)]
fn read_body_entries(
    mut body: &[u8],
) -> std::result::Result<(Option<&str>, Vec<(&str, &[u8])>), String> {
    use rmp::decode::{read_array_len, read_bin_len, read_map_len, read_str_len};
    let rd = &mut body;
    let fields = read_array_len(rd).map_err(|e| format!("expected [owner, data]: {e}"))?;
    if fields != 2 {
        return Err(format!(
            "expected [owner, data], found an array of {fields}"
        ));
    }
    let owner = if rd.first() == Some(&0xc0) {
        *rd = &rd[1..];
        None
    } else {
        let len = read_str_len(rd).map_err(|e| format!("owner: {e}"))?;
        Some(take_str(rd, len, "owner")?)
    };
    let keys = read_map_len(rd).map_err(|e| format!("data: {e}"))?;
    let mut entries = Vec::with_capacity((keys as usize).min(MAX_PREALLOCATED_KEYS));
    for _ in 0..keys {
        let len = read_str_len(rd).map_err(|e| format!("key: {e}"))?;
        let key = take_str(rd, len, "key")?;
        let len = read_bin_len(rd).map_err(|e| format!("value of {key:?}: {e}"))?;
        entries.push((key, take(rd, len, "value")?));
    }
    if !rd.is_empty() {
        return Err(format!("{} bytes after the body", rd.len()));
    }
    // Written in byte order, so a sorted body (every body this codec wrote) is checked in one
    // pass; any other order is sorted first.
    let sorted = entries.windows(2).all(|w| w[0].0 < w[1].0);
    if !sorted {
        let mut keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err("a key appears twice".into());
        }
    }
    Ok((owner, entries))
}

/// The session an encoded record holds, as [`Driver::load`](crate::driver::Driver::load)
/// returns it: `None` when it is past its deadline at `now_ms` or holds no key; a malformed
/// record is [`Error::Corrupt`], expired or not (as [`Record::decode`]). The values of a
/// current-layout record are [`Packed`] into one buffer (one allocation, one copy), not
/// decoded into a map.
pub fn load(bytes: &[u8], now_ms: u64, backend: &'static str) -> Result<Option<Loaded>> {
    let (layout, deadline_ms, body) = split(bytes, backend)?;
    let data = match layout {
        Layout::Current => {
            let (_, entries) = read_body_entries(body).map_err(|reason| {
                Error::corrupt(backend, format!("session record body: {reason}"))
            })?;
            Snapshot::from(Packed::from_entries(&entries)?)
        }
        Layout::Memcached | Layout::Sled => Snapshot::from(Record::decode(bytes, backend)?.data),
    };
    if now_ms >= deadline_ms || data.is_empty() {
        return Ok(None);
    }
    Ok(Some(Loaded {
        data,
        expires_at: Some(check::from_unix_millis(deadline_ms)),
    }))
}

/// The next `len` bytes of `rd`.
fn take<'a>(rd: &mut &'a [u8], len: u32, what: &str) -> std::result::Result<&'a [u8], String> {
    let len = len as usize;
    if len > rd.len() {
        return Err(format!("{what} of {len} bytes is truncated"));
    }
    let (taken, rest) = rd.split_at(len);
    *rd = rest;
    Ok(taken)
}

/// The next `len` bytes of `rd`, as UTF-8 text.
fn take_str<'a>(rd: &mut &'a [u8], len: u32, what: &str) -> std::result::Result<&'a str, String> {
    let bytes = take(rd, len, what)?;
    std::str::from_utf8(bytes).map_err(|_| format!("{what} is not UTF-8"))
}

/// Decodes one MessagePack value that must fill `body` exactly.
fn body_value<'de, T: Deserialize<'de>>(mut body: &[u8], backend: &'static str) -> Result<T> {
    let mut de = rmp_serde::Deserializer::new(&mut body);
    let value = T::deserialize(&mut de)
        .map_err(|e| Error::corrupt(backend, format!("session record body: {e}")))?;
    if !body.is_empty() {
        return Err(Error::corrupt(
            backend,
            format!("{} bytes after the session record body", body.len()),
        ));
    }
    Ok(value)
}

// ----- older layouts --------------------------------------------------------------------

/// The body of a session-sled version 1 record: a map with the field names.
#[derive(serde::Deserialize)]
struct LegacySledBody {
    owner: Option<String>,
    data: DataMap,
}

/// A map str -> bin, each key once.
struct DataMap(Data);

impl<'de> Deserialize<'de> for DataMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = DataMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of string keys to binary values")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<DataMap, A::Error> {
                let capacity = map.size_hint().unwrap_or(0).min(MAX_PREALLOCATED_KEYS);
                let mut data = Data::with_capacity(capacity);
                while let Some((key, BinValue(value))) = map.next_entry::<String, BinValue>()? {
                    if data.contains_key(&key) {
                        return Err(de::Error::custom(format_args!("key {key:?} appears twice")));
                    }
                    data.insert(key, value);
                }
                Ok(DataMap(data))
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}

/// One value, which must be MessagePack `bin`.
struct BinValue(Value);

impl<'de> Deserialize<'de> for BinValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct BinVisitor;
        impl Visitor<'_> for BinVisitor {
            type Value = BinValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a binary value")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<BinValue, E> {
                Ok(BinValue(Value::from_bytes(v.to_vec())))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> std::result::Result<BinValue, E> {
                Ok(BinValue(Value::from_bytes(v)))
            }
        }
        deserializer.deserialize_byte_buf(BinVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "test";

    fn sample() -> Record {
        let mut data = Data::new();
        data.insert("user".into(), Value::encode(&"alice").expect("encode"));
        data.insert(
            "ключ🔑".into(),
            Value::encode(&vec![1u8, 2, 3]).expect("encode"),
        );
        data.insert(String::new(), Value::from_bytes(vec![0xc0]));
        data.insert("raw".into(), Value::from_bytes(vec![0x00, 0xff, 0xc1]));
        data.insert("big".into(), Value::from_bytes(vec![7u8; 70_000]));
        Record {
            deadline_ms: 1_700_000_000_123,
            owner: Some("owner/1".into()),
            data,
        }
    }

    fn is_corrupt(r: Result<Record>) -> bool {
        matches!(r, Err(Error::Corrupt { backend: B, .. }))
    }

    #[test]
    fn round_trips() {
        let rec = sample();
        let bytes = rec.encode().expect("encode");
        assert_eq!(&bytes[..4], b"SREC");
        assert_eq!(bytes[4], VERSION);
        assert_eq!(&bytes[5..13], &rec.deadline_ms.to_be_bytes());
        assert_eq!(Record::decode(&bytes, B).expect("decode"), rec);
        assert_eq!(deadline(&bytes, B).expect("deadline"), rec.deadline_ms);
        // values are `bin`, not arrays: the record is about the size of its values
        assert!(bytes.len() < 70_000 + 100, "{}", bytes.len());

        for rec in [
            Record::default(),
            Record::new(0, sample().data),
            Record {
                owner: Some("o".into()),
                ..Record::new(u64::MAX, Data::new())
            },
        ] {
            let bytes = rec.encode().expect("encode");
            assert_eq!(Record::decode(&bytes, B).expect("decode"), rec);
        }
    }

    #[test]
    fn encoding_is_the_documented_bytes_in_key_order() {
        let mut data = Data::new();
        data.insert("b".into(), Value::from_bytes(vec![2]));
        data.insert("a".into(), Value::from_bytes(vec![1]));
        let rec = Record {
            deadline_ms: 0x0102_0304_0506_0708,
            owner: Some("o".into()),
            data,
        };
        let mut expected = b"SREC\x01\x01\x02\x03\x04\x05\x06\x07\x08".to_vec();
        // [ "o", { "a": bin [1], "b": bin [2] } ]
        expected.extend_from_slice(b"\x92\xa1o\x82\xa1a\xc4\x01\x01\xa1b\xc4\x01\x02");
        assert_eq!(rec.encode().expect("encode"), expected);
        let none = Record::new(5, Data::new()).encode().expect("encode");
        assert_eq!(&none[HEADER_LEN..], b"\x92\xc0\x80");
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let bytes = sample().encode().expect("encode");
        for len in 0..bytes.len() {
            assert!(
                is_corrupt(Record::decode(&bytes[..len], B)),
                "truncated to {len} bytes was accepted"
            );
        }
        for len in 0..HEADER_LEN {
            assert!(deadline(&bytes[..len], B).is_err(), "{len}");
        }
    }

    #[test]
    fn bad_magic_is_corrupt() {
        let mut bytes = sample().encode().expect("encode");
        bytes[0] = b'X';
        assert!(is_corrupt(Record::decode(&bytes, B)));
        assert!(deadline(&bytes, B).is_err());
        assert!(is_corrupt(Record::decode(b"hello world, not a session", B)));
        assert!(is_corrupt(Record::decode(b"", B)));
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let mut bytes = sample().encode().expect("encode");
        for v in [0, 2, 0xff] {
            bytes[4] = v;
            assert!(is_corrupt(Record::decode(&bytes, B)), "version {v}");
            assert!(deadline(&bytes, B).is_err(), "version {v}");
        }
    }

    #[test]
    fn trailing_garbage_is_corrupt() {
        for extra in [&[0u8][..], b"\xc0", b"\x92\xc0\x80", b"garbage"] {
            let mut bytes = sample().encode().expect("encode");
            bytes.extend_from_slice(extra);
            assert!(is_corrupt(Record::decode(&bytes, B)), "{extra:?}");
        }
        let body = b"\x92\xc0\x80\x00";
        assert!(is_corrupt(Record::decode_body(1, body, B)));
        assert!(is_corrupt(Record::decode(
            b"SM\x01\0\0\0\0\0\0\0\x01\x80\x80",
            B
        )));
        assert!(is_corrupt(Record::decode(
            b"\x01\0\0\0\0\0\0\0\x01\x80\x00",
            B
        )));
    }

    #[test]
    fn malformed_bodies_are_corrupt() {
        let header = b"SREC\x01\0\0\0\0\0\0\0\x09".to_vec();
        for body in [
            &b""[..],
            b"\xc1",                                   // never-used marker
            b"\x90",                                   // []
            b"\x91\xc0",                               // [nil]
            b"\x93\xc0\x80\xc0",                       // three elements
            b"\x80",                                   // a map, not the array
            b"\x92\x01\x80",                           // owner is a number
            b"\x92\xc0\x81\xa1k\xa1v",                 // value is a str, not bin
            b"\x92\xc0\x81\xa1k\x91\x01",              // value is an array
            b"\x92\xc0\x81\x01\xc4\x00",               // key is a number
            b"\x92\xc0\x82\xa1k\xc4\x00\xa1k\xc4\x00", // key twice
            b"\x92\xc0\xdf\xff\xff\xff\xff",           // 4 billion keys announced, none there
            b"\x92\xc0\x81\xa1k\xc6\xff\xff\xff\xff",  // a 4 GiB value announced
        ] {
            let mut bytes = header.clone();
            bytes.extend_from_slice(body);
            assert!(is_corrupt(Record::decode(&bytes, B)), "{body:?}");
        }
    }

    #[test]
    fn reads_the_memcached_v1_layout() {
        // "SM" 1, deadline 0x2a, { "k": bin "v" }
        let bytes = b"SM\x01\0\0\0\0\0\0\0\x2a\x81\xa1k\xc4\x01v";
        let rec = Record::decode(bytes, B).expect("decode");
        assert_eq!(rec.deadline_ms, 42);
        assert_eq!(rec.owner, None);
        assert_eq!(rec.data.get("k"), Some(&Value::from_bytes(&b"v"[..])));
        assert_eq!(deadline(bytes, B).expect("deadline"), 42);
        assert!(is_corrupt(Record::decode(b"SM\x01\0\0\0", B)));
        assert!(is_corrupt(Record::decode(
            b"SM\x02\0\0\0\0\0\0\0\x2a\x80",
            B
        )));
    }

    #[test]
    fn reads_the_sled_v1_layout() {
        // 1, deadline 0x2a, { "owner": "o", "data": { "k": bin "v" } }
        let bytes = b"\x01\0\0\0\0\0\0\0\x2a\x82\xa5owner\xa1o\xa4data\x81\xa1k\xc4\x01v";
        let rec = Record::decode(bytes, B).expect("decode");
        assert_eq!(rec.deadline_ms, 42);
        assert_eq!(rec.owner.as_deref(), Some("o"));
        assert_eq!(rec.data.get("k"), Some(&Value::from_bytes(&b"v"[..])));
        assert_eq!(deadline(bytes, B).expect("deadline"), 42);
        let unbound = b"\x01\0\0\0\0\0\0\0\x2a\x82\xa5owner\xc0\xa4data\x80";
        let rec = Record::decode(unbound, B).expect("decode");
        assert_eq!((rec.owner, rec.data.len()), (None, 0));
        assert!(is_corrupt(Record::decode(b"\x01\0\0\0\0\0\0\0\x2a\x90", B)));
    }

    #[test]
    fn decode_body_reads_a_bare_body() {
        let rec = sample();
        let bytes = rec.encode().expect("encode");
        let body = &bytes[HEADER_LEN..];
        assert_eq!(
            Record::decode_body(rec.deadline_ms, body, B).expect("decode"),
            rec
        );
        let mut only_body = vec![7];
        rec.encode_body_into(&mut only_body).expect("encode body");
        assert_eq!((only_body[0], &only_body[1..]), (7, body));
    }

    #[test]
    fn liveness_and_loaded() {
        let rec = sample();
        assert!(rec.live(rec.deadline_ms - 1));
        assert!(rec.expired(rec.deadline_ms));
        assert!(!rec.live(rec.deadline_ms));
        assert!(!Record::new(u64::MAX, Data::new()).live(0));
        let loaded = rec.clone().into_loaded();
        assert_eq!(loaded.data, rec.data);
        assert_eq!(
            loaded.expires_at,
            Some(check::from_unix_millis(rec.deadline_ms))
        );
    }

    #[test]
    fn load_packs_a_live_record_and_agrees_with_decode() {
        let rec = sample();
        let bytes = rec.encode().expect("encode");
        let live = load(&bytes, rec.deadline_ms - 1, B)
            .expect("load")
            .expect("live");
        assert_eq!(live.data, rec.data);
        assert_eq!(live.expires_at, Some(rec.expires_at()));
        // the deadline itself is expired, as for `Record::live`
        assert!(load(&bytes, rec.deadline_ms, B).expect("load").is_none());
        // no key: no session
        let empty = Record::new(u64::MAX, Data::new()).encode().expect("encode");
        assert!(load(&empty, 0, B).expect("load").is_none());
        // malformed is corrupt even when expired; a key twice in any order too
        assert!(matches!(
            load(&bytes[..bytes.len() - 1], u64::MAX, B),
            Err(Error::Corrupt { .. })
        ));
        let mut twice = [&MAGIC[..], &[VERSION], &5u64.to_be_bytes()].concat();
        twice.extend_from_slice(b"\x92\xc0\x83\xa1k\xc4\x00\xa1a\xc4\x00\xa1k\xc4\x00");
        assert!(matches!(load(&twice, 0, B), Err(Error::Corrupt { .. })));
        assert!(Record::decode(&twice, B).is_err());
        // an older layout loads through the map
        let legacy = b"SM\x01\0\0\0\0\0\0\0\x2a\x81\xa1k\xc4\x01v";
        let old = load(legacy, 0, B).expect("load").expect("live");
        assert_eq!(old.data.get("k").expect("k").as_bytes(), b"v");
    }
}
