//! Byte encodings of everything the driver keeps in its four trees.
//!
//! | tree       | key                                   | value                                         |
//! |------------|---------------------------------------|-----------------------------------------------|
//! | `sessions` | id (ASCII)                            | `0x01` ++ deadline ms (u64 BE) ++ MessagePack `{owner, data}` (no keys: a pending binding) |
//! | `expiry`   | deadline ms (u64 BE) ++ id            | empty                                         |
//! | `owners`   | owner (UTF-8) ++ `0x00` ++ id         | empty                                         |
//! | `locks`    | id                                    | deadline ms (u64 BE) ++ token (ASCII)         |

use std::collections::HashMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use session_core::{Data, Error, Result, Value};

/// Name used in errors.
pub(crate) const BACKEND: &str = "sled";

/// Format version: the first byte of every session record.
const VERSION: u8 = 1;
/// Bytes before the MessagePack body: version + deadline.
const HEADER: usize = 1 + 8;

/// One session as stored: its absolute deadline, its owner and its values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// Expiry deadline, milliseconds since the Unix epoch.
    pub deadline: u64,
    /// The owner the session is bound to in the owner index, if any.
    pub owner: Option<String>,
    /// The values, as opaque MessagePack bytes.
    pub data: HashMap<String, Bytes>,
}

#[derive(Serialize)]
struct BodyRef<'a> {
    owner: &'a Option<String>,
    data: &'a HashMap<String, Bytes>,
}

#[derive(Deserialize)]
struct Body {
    owner: Option<String>,
    data: HashMap<String, Bytes>,
}

impl Record {
    /// An empty record expiring at `deadline`, bound to no owner.
    pub fn empty(deadline: u64) -> Self {
        Record {
            deadline,
            owner: None,
            data: HashMap::new(),
        }
    }

    /// Whether the record is still live at `now` (ms since the epoch). The deadline itself is
    /// already expired.
    pub fn is_live(&self, now: u64) -> bool {
        self.deadline > now
    }

    /// Whether this is a pending binding: an owner bound with `index_add` before the session's
    /// first write. It has no keys, so it is not a session: every read treats it as missing.
    pub fn is_pending(&self) -> bool {
        self.data.is_empty()
    }

    /// Merges session-layer values into the record.
    pub fn merge(&mut self, data: Data) {
        self.data
            .extend(data.into_iter().map(|(k, v)| (k, v.into_bytes())));
    }

    /// The values in the session layer's types.
    pub fn to_data(&self) -> Data {
        self.data
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect()
    }

    /// Encodes the record: version byte, big-endian deadline, MessagePack body.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(HEADER + 16 + self.data.len() * 32);
        out.push(VERSION);
        out.extend_from_slice(&self.deadline.to_be_bytes());
        rmp_serde::encode::write_named(
            &mut out,
            &BodyRef {
                owner: &self.owner,
                data: &self.data,
            },
        )
        .map_err(Error::Encode)?;
        Ok(out)
    }

    /// Decodes a whole record; anything malformed is [`Error::Corrupt`].
    pub fn decode(raw: &[u8]) -> Result<Self> {
        let deadline = deadline_of(raw)?;
        let body: Body = rmp_serde::from_slice(&raw[HEADER..])
            .map_err(|e| Error::corrupt(BACKEND, format!("session record body: {e}")))?;
        Ok(Record {
            deadline,
            owner: body.owner,
            data: body.data,
        })
    }
}

/// The deadline of an encoded record, reading only its header.
pub(crate) fn deadline_of(raw: &[u8]) -> Result<u64> {
    match raw {
        [VERSION, rest @ ..] if rest.len() >= 8 => Ok(read_u64(rest)),
        [VERSION, ..] => Err(Error::corrupt(
            BACKEND,
            format!("session record of {} bytes is truncated", raw.len()),
        )),
        [v, ..] => Err(Error::corrupt(
            BACKEND,
            format!("session record has unknown format version {v}"),
        )),
        [] => Err(Error::corrupt(BACKEND, "session record is empty")),
    }
}

/// Key of the expiry index: big-endian deadline, then the id, so keys sort by deadline.
pub(crate) fn expiry_key(deadline: u64, id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + id.len());
    key.extend_from_slice(&deadline.to_be_bytes());
    key.extend_from_slice(id);
    key
}

/// Splits an expiry-index key into deadline and id.
pub(crate) fn parse_expiry_key(key: &[u8]) -> Result<(u64, &[u8])> {
    if key.len() <= 8 {
        return Err(Error::corrupt(
            BACKEND,
            format!("expiry index key of {} bytes is too short", key.len()),
        ));
    }
    Ok((read_u64(key), &key[8..]))
}

/// Prefix of every owner-index key of `owner`. Owners never contain NUL
/// ([`session_core::check::owner`]), so the prefix of one owner is never the prefix of another's.
pub(crate) fn owner_prefix(owner: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(owner.len() + 1 + 32);
    key.extend_from_slice(owner.as_bytes());
    key.push(0);
    key
}

/// Key of the owner index: owner, NUL, id.
pub(crate) fn owner_key(owner: &str, id: &[u8]) -> Vec<u8> {
    let mut key = owner_prefix(owner);
    key.extend_from_slice(id);
    key
}

/// Value of the locks tree: big-endian lease deadline, then the token.
pub(crate) fn encode_lock(deadline: u64, token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + token.len());
    out.extend_from_slice(&deadline.to_be_bytes());
    out.extend_from_slice(token.as_bytes());
    out
}

/// Splits a lock value into lease deadline and token.
pub(crate) fn decode_lock(raw: &[u8]) -> Result<(u64, &[u8])> {
    if raw.len() < 8 {
        return Err(Error::corrupt(
            BACKEND,
            format!("lock record of {} bytes is truncated", raw.len()),
        ));
    }
    Ok((read_u64(raw), &raw[8..]))
}

/// Big-endian u64 from the first 8 bytes; callers check the length first.
fn read_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let mut rec = Record::empty(1_700_000_000_123);
        rec.owner = Some("user-1".into());
        rec.data
            .insert("ключ🔑".into(), Bytes::from_static(b"\x93\x01\x02\x03"));
        rec.data.insert(String::new(), Bytes::from_static(b"\xc0"));
        rec
    }

    #[test]
    fn record_round_trips() {
        let rec = sample();
        let raw = rec.encode().expect("encode");
        assert_eq!(raw[0], VERSION);
        assert_eq!(deadline_of(&raw).expect("header"), rec.deadline);
        assert_eq!(Record::decode(&raw).expect("decode"), rec);
    }

    #[test]
    fn malformed_records_are_corrupt_not_panics() {
        let raw = sample().encode().expect("encode");
        let mut inputs: Vec<Vec<u8>> = (0..raw.len()).map(|n| raw[..n].to_vec()).collect();
        inputs.push(vec![2, 0, 0, 0, 0, 0, 0, 0, 0, 0x80]);
        inputs.push(vec![VERSION, 0, 0, 0, 0, 0, 0, 0, 9, 0xc1]);
        inputs.push(vec![VERSION, 0, 0, 0, 0, 0, 0, 0, 9, 0x90]); // an array, not the map
        for input in inputs {
            assert!(
                matches!(Record::decode(&input), Err(Error::Corrupt { .. })),
                "{input:?} decoded"
            );
        }
    }

    #[test]
    fn expiry_keys_sort_by_deadline_then_id() {
        let a = expiry_key(255, b"zzzzzzzzzzzzzzzz");
        let b = expiry_key(256, b"aaaaaaaaaaaaaaaa");
        assert!(a < b);
        assert_eq!(
            parse_expiry_key(&b).expect("parse"),
            (256, &b"aaaaaaaaaaaaaaaa"[..])
        );
        assert!(parse_expiry_key(&[0; 8]).is_err());
    }

    #[test]
    fn owner_prefixes_do_not_overlap() {
        let k = owner_key("ab", b"id");
        assert!(k.starts_with(&owner_prefix("ab")));
        assert!(!k.starts_with(&owner_prefix("a")));
    }

    #[test]
    fn locks_round_trip() {
        let raw = encode_lock(42, "tok");
        assert_eq!(decode_lock(&raw).expect("decode"), (42, &b"tok"[..]));
        assert!(decode_lock(&raw[..7]).is_err());
    }
}
