//! Byte encodings of the keys and values of the four trees. The `sessions` tree holds the
//! shared session record ([`session_core::driver::record`]); everything else is here.
//!
//! | tree       | key                                   | value                                         |
//! |------------|---------------------------------------|-----------------------------------------------|
//! | `sessions` | id (ASCII)                            | the session record: `SREC`, version, deadline ms (u64 BE), MessagePack `[owner, data]` (no keys: a pending binding) |
//! | `expiry`   | deadline ms (u64 BE) ++ id            | empty                                         |
//! | `owners`   | owner (UTF-8) ++ `0x00` ++ id         | empty                                         |
//! | `locks`    | id                                    | deadline ms (u64 BE) ++ token (ASCII)         |

use session_core::driver::{Error, Result};

use crate::NAME;

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
            NAME,
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
            NAME,
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
