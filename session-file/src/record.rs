//! The file format: this driver's framing (kind, key count, length, checksum) around the
//! shared session record ([`session_core::driver::record`]). See the README, "Record format".
//!
//! ```text
//! offset size field
//!  0     4    magic  "SESF"
//!  4     1    file format version (2)
//!  5     1    kind: 0 = session record, 1 = lease
//!  6     2    reserved, zero
//!  8     4    number of keys, u32 little endian
//! 12     4    record length n, u32 LE
//! 16     4    CRC-32 (IEEE) of bytes 0..16 followed by the record, u32 LE
//! 20     n    the record: "SREC", version, deadline (u64 BE), MessagePack [owner, data]
//! ```
//!
//! The file is exactly `20 + n` bytes; any other length, a wrong magic, version or kind, a
//! checksum mismatch, a record that does not decode or a key count that disagrees with the
//! header is [`Error::Corrupt`].
//!
//! Version 1 files (written before the shared codec) are still read: a 28-byte header (magic,
//! version 1, kind, reserved, deadline u64 LE, key count, payload length, CRC-32 of bytes 0..24
//! and the payload) followed by the record's MessagePack body alone.

use session_core::driver::record::{self, Record};
use session_core::driver::{Error, Result};

use crate::NAME;

/// Magic bytes at the start of every file this driver writes.
const MAGIC: [u8; 4] = *b"SESF";
/// The file format version written.
const VERSION: u8 = 2;
/// Length of the framing before the record.
const FRAME_LEN: usize = 20;
/// Version 1: the file format before the shared record codec.
const V1: u8 = 1;
/// Length of the version 1 header.
const V1_HEADER_LEN: usize = 28;

/// Bytes [`decode_header`] needs: the framing and the record's own header (with the deadline).
pub(crate) const HEADER_READ_LEN: usize = FRAME_LEN + record::HEADER_LEN;

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

/// What the first bytes of a file say, readable without the rest (purge and scan read only
/// this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) deadline_ms: u64,
    pub(crate) keys: u32,
}

fn corrupt(reason: impl Into<String>) -> Error {
    Error::corrupt(NAME, reason)
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
pub(crate) fn encode(kind: Kind, rec: &Record) -> Result<Vec<u8>> {
    let keys = u32::try_from(rec.data.len())
        .map_err(|_| Error::InvalidInput("too many keys in one session".into()))?;
    let mut out = Vec::with_capacity(FRAME_LEN + 64);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&keys.to_le_bytes());
    out.extend_from_slice(&[0; 8]); // length and checksum, filled in below
    rec.encode_into(&mut out)?;
    let len = u32::try_from(out.len() - FRAME_LEN)
        .map_err(|_| Error::InvalidInput("a session record is limited to 4 GiB".into()))?;
    out[12..16].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[..16]);
    crc.update(&out[FRAME_LEN..]);
    out[16..20].copy_from_slice(&crc.finalize().to_le_bytes());
    Ok(out)
}

/// Checks magic and kind, and returns the format version.
fn check_start(kind: Kind, bytes: &[u8]) -> Result<u8> {
    if bytes.len() < 6 {
        return Err(corrupt(format!("truncated header: {} bytes", bytes.len())));
    }
    if bytes[0..4] != MAGIC {
        return Err(corrupt("not a session file (bad magic bytes)"));
    }
    if bytes[5] != kind as u8 {
        return Err(corrupt(format!(
            "file kind {} where {} was expected",
            bytes[5], kind as u8
        )));
    }
    match bytes[4] {
        v @ (VERSION | V1) => Ok(v),
        v => Err(corrupt(format!("unknown file format version {v}"))),
    }
}

/// Decodes the header: deadline and key count, without the checksum (that needs the whole
/// file). `bytes` may be the whole file or only its first [`HEADER_READ_LEN`] bytes.
pub(crate) fn decode_header(kind: Kind, bytes: &[u8]) -> Result<Header> {
    let version = check_start(kind, bytes)?;
    let needed = if version == V1 {
        V1_HEADER_LEN
    } else {
        HEADER_READ_LEN
    };
    if bytes.len() < needed {
        return Err(corrupt(format!(
            "truncated header: {} of {needed} bytes",
            bytes.len()
        )));
    }
    Ok(if version == V1 {
        Header {
            deadline_ms: le_u64(bytes, 8),
            keys: le_u32(bytes, 16),
        }
    } else {
        Header {
            deadline_ms: record::deadline(&bytes[FRAME_LEN..], NAME)?,
            keys: le_u32(bytes, 8),
        }
    })
}

/// Decodes a whole file, checking its length, checksum, record and key count.
pub(crate) fn decode(kind: Kind, bytes: &[u8]) -> Result<Record> {
    let version = check_start(kind, bytes)?;
    // Where the length, checksum and payload are, and how much of the header the CRC covers.
    let (len_at, crc_at, payload_at) = if version == V1 {
        (20, 24, V1_HEADER_LEN)
    } else {
        (12, 16, FRAME_LEN)
    };
    if bytes.len() < payload_at {
        return Err(corrupt(format!(
            "truncated header: {} of {payload_at} bytes",
            bytes.len()
        )));
    }
    let expected = payload_at as u64 + u64::from(le_u32(bytes, len_at));
    if bytes.len() as u64 != expected {
        return Err(corrupt(format!(
            "file is {} bytes, its header says {expected}",
            bytes.len()
        )));
    }
    let payload = &bytes[payload_at..];
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..crc_at]);
    crc.update(payload);
    if crc.finalize() != le_u32(bytes, crc_at) {
        return Err(corrupt("checksum mismatch"));
    }
    let (rec, keys) = if version == V1 {
        let rec = Record::decode_body(le_u64(bytes, 8), payload, NAME)?;
        (rec, le_u32(bytes, 16))
    } else {
        (Record::decode(payload, NAME)?, le_u32(bytes, 8))
    };
    if rec.data.len() as u64 != u64::from(keys) {
        return Err(corrupt("key count disagrees with the header"));
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use session_core::driver::{Data, Value};

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
        assert_eq!(&bytes[..5], b"SESF\x02");
        assert_eq!(&bytes[FRAME_LEN..FRAME_LEN + 4], b"SREC");
        assert_eq!(decode(Kind::Session, &bytes).expect("decode"), rec);
        let header = decode_header(Kind::Session, &bytes[..HEADER_READ_LEN]).expect("header");
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
        for len in 0..HEADER_READ_LEN {
            assert!(
                decode_header(Kind::Session, &bytes[..len]).is_err(),
                "{len}"
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

    #[test]
    fn version_1_files_decode_and_keep_their_checks() {
        let bytes = include_bytes!("../tests/fixtures/session-v1.bin");
        let rec = decode(Kind::Session, bytes).expect("decode");
        assert_eq!(rec.deadline_ms, 4_102_444_800_123);
        assert_eq!(rec.owner.as_deref(), Some("alice@example.com"));
        assert_eq!(rec.data.len(), 6);
        let header = decode_header(Kind::Session, &bytes[..HEADER_READ_LEN]).expect("header");
        assert_eq!(
            header,
            Header {
                deadline_ms: 4_102_444_800_123,
                keys: 6
            }
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.to_vec();
            bad[i] ^= 0x10;
            assert!(decode(Kind::Session, &bad).is_err(), "byte {i}");
        }
        for len in 0..bytes.len() {
            assert!(decode(Kind::Session, &bytes[..len]).is_err(), "{len}");
        }
        let lease = include_bytes!("../tests/fixtures/lease-v1.bin");
        let rec = decode(Kind::Lease, lease).expect("decode");
        assert_eq!(
            rec.data.get(LEASE_TOKEN_KEY).map(Value::as_bytes),
            Some(&b"tok-en_0123456789"[..])
        );
        assert!(decode(Kind::Session, lease).is_err());
    }

    #[test]
    fn unknown_versions_are_corrupt() {
        let mut bytes = encode(Kind::Session, &sample()).expect("encode");
        bytes[4] = 3;
        assert!(matches!(
            decode(Kind::Session, &bytes),
            Err(Error::Corrupt { .. })
        ));
        assert!(decode_header(Kind::Session, &bytes).is_err());
    }
}
