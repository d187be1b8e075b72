//! The on-disk record format (see the README, "Record format").
//!
//! ```text
//! offset size field
//!  0     4    magic  "SESF"
//!  4     1    format version (1)
//!  5     1    kind: 0 = session record, 1 = lease
//!  6     2    reserved, zero
//!  8     8    deadline, unix milliseconds, u64 little endian
//! 16     4    number of keys, u32 LE
//! 20     4    payload length in bytes, u32 LE
//! 24     4    CRC-32 (IEEE) of bytes 0..24 followed by the payload, u32 LE
//! 28     n    payload: MessagePack array [owner: nil | str, data: map str -> bin]
//! ```
//!
//! The file is exactly `28 + n` bytes; any other length, a wrong magic, version or kind, a
//! checksum mismatch, a payload that does not decode or a key count that disagrees with the
//! header is [`Error::Corrupt`].

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use session_core::{Data, Error, Result, Value};

/// Magic bytes at the start of every file this driver writes.
pub(crate) const MAGIC: [u8; 4] = *b"SESF";
/// Current format version.
pub(crate) const VERSION: u8 = 1;
/// Length of the fixed header.
pub(crate) const HEADER_LEN: usize = 28;

const BACKEND: &str = "file";

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// A session record.
    Session = 0,
    /// A lease lock (data holds the token under [`LEASE_TOKEN_KEY`]).
    Lease = 1,
}

/// Key under which a lease file keeps its token.
pub(crate) const LEASE_TOKEN_KEY: &str = "token";

/// The fixed header, readable without the payload (purge and scan read only this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) deadline_ms: u64,
    pub(crate) keys: u32,
    pub(crate) payload_len: u32,
    pub(crate) crc: u32,
}

/// A decoded record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Record {
    /// Expiry deadline, unix milliseconds; the record is expired when `now >= deadline_ms`.
    pub(crate) deadline_ms: u64,
    /// The owner this session is bound to in the owner index.
    pub(crate) owner: Option<String>,
    /// The session's values.
    pub(crate) data: Data,
}

impl Record {
    /// Whether the record is past its deadline at `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.deadline_ms
    }

    /// Whether this is a live session at `now_ms`: unexpired and with at least one key.
    pub(crate) fn live(&self, now_ms: u64) -> bool {
        !self.expired(now_ms) && !self.data.is_empty()
    }
}

fn corrupt(reason: impl Into<String>) -> Error {
    Error::corrupt(BACKEND, reason)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Encodes a record of `kind` into the bytes of a whole file.
pub(crate) fn encode(kind: Kind, record: &Record) -> Result<Vec<u8>> {
    // A sorted map makes the encoding deterministic; the clones only bump reference counts.
    let map: BTreeMap<&str, Bytes> = record
        .data
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone().into_bytes()))
        .collect();
    let payload = rmp_serde::to_vec(&(&record.owner, &map)).map_err(Error::Encode)?;
    let payload_len = u32::try_from(payload.len())
        .map_err(|_| Error::InvalidInput("a session record is limited to 4 GiB".into()))?;
    let keys = u32::try_from(map.len())
        .map_err(|_| Error::InvalidInput("too many keys in one session".into()))?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&record.deadline_ms.to_le_bytes());
    out.extend_from_slice(&keys.to_le_bytes());
    out.extend_from_slice(&payload_len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(&payload);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes and checks the fixed header (not the checksum: that needs the payload).
pub(crate) fn decode_header(kind: Kind, bytes: &[u8]) -> Result<Header> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "truncated header: {} of {HEADER_LEN} bytes",
            bytes.len()
        )));
    }
    if bytes[0..4] != MAGIC {
        return Err(corrupt("not a session file (bad magic bytes)"));
    }
    if bytes[4] != VERSION {
        return Err(corrupt(format!("unknown format version {}", bytes[4])));
    }
    if bytes[5] != kind as u8 {
        return Err(corrupt(format!(
            "file kind {} where {} was expected",
            bytes[5], kind as u8
        )));
    }
    Ok(Header {
        deadline_ms: le_u64(bytes, 8),
        keys: le_u32(bytes, 16),
        payload_len: le_u32(bytes, 20),
        crc: le_u32(bytes, 24),
    })
}

/// Decodes a whole file, checking its length, checksum and payload.
pub(crate) fn decode(kind: Kind, bytes: &[u8]) -> Result<Record> {
    let header = decode_header(kind, bytes)?;
    let expected = HEADER_LEN as u64 + u64::from(header.payload_len);
    if bytes.len() as u64 != expected {
        return Err(corrupt(format!(
            "record is {} bytes, its header says {expected}",
            bytes.len()
        )));
    }
    let payload = &bytes[HEADER_LEN..];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..24]);
    crc.update(payload);
    if crc.finalize() != header.crc {
        return Err(corrupt("checksum mismatch"));
    }
    let (owner, data): (Option<String>, HashMap<String, Bytes>) = rmp_serde::from_slice(payload)
        .map_err(|e| corrupt(format!("payload does not decode: {e}")))?;
    if data.len() as u64 != u64::from(header.keys) {
        return Err(corrupt("key count disagrees with the header"));
    }
    Ok(Record {
        deadline_ms: header.deadline_ms,
        owner,
        data: data.into_iter().map(|(k, v)| (k, Value::from(v))).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        let mut data = Data::new();
        data.insert("user".into(), Value::encode(&"alice").expect("encode"));
        data.insert(
            "ключ🔑".into(),
            Value::encode(&vec![1u8, 2, 3]).expect("encode"),
        );
        data.insert(String::new(), Value::from_bytes(vec![0xc0]));
        Record {
            deadline_ms: 1_700_000_000_123,
            owner: Some("owner/1".into()),
            data,
        }
    }

    #[test]
    fn round_trips() {
        let rec = sample();
        let bytes = encode(Kind::Session, &rec).expect("encode");
        assert_eq!(&bytes[..4], b"SESF");
        assert_eq!(decode(Kind::Session, &bytes).expect("decode"), rec);
        let header = decode_header(Kind::Session, &bytes).expect("header");
        assert_eq!(header.deadline_ms, rec.deadline_ms);
        assert_eq!(header.keys, 3);
        let empty = Record::default();
        let bytes = encode(Kind::Lease, &empty).expect("encode");
        assert_eq!(decode(Kind::Lease, &bytes).expect("decode"), empty);
    }

    #[test]
    fn every_truncation_and_extension_is_corrupt() {
        let bytes = encode(Kind::Session, &sample()).expect("encode");
        for len in 0..bytes.len() {
            assert!(
                matches!(
                    decode(Kind::Session, &bytes[..len]),
                    Err(Error::Corrupt { .. })
                ),
                "truncated to {len} bytes was accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode(Kind::Session, &longer),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn every_flipped_bit_is_corrupt() {
        let bytes = encode(Kind::Session, &sample()).expect("encode");
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    decode(Kind::Session, &bad).is_err(),
                    "flipping bit {bit} of byte {i} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn kinds_are_not_confused() {
        let bytes = encode(Kind::Lease, &sample()).expect("encode");
        assert!(matches!(
            decode(Kind::Session, &bytes),
            Err(Error::Corrupt { .. })
        ));
    }
}
