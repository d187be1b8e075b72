//! What one memcached item holds, and the exptime memcached is given for it.
//!
//! A session item is the shared session record ([`session_core::driver::record`]: `SREC`,
//! version, the deadline as unix milliseconds (big-endian `u64`), then MessagePack
//! `[owner, data]`, the owner always nil: this driver keeps no owner index). Items written
//! before the shared codec (`b"SM\x01"`, the deadline, a MessagePack map) still read. A lock item
//! is `b"SL\x01"`, the lease deadline the same way, then the lock token (ASCII).

use session_core::driver::{Error, Result};

use crate::NAME;

/// First bytes of a lock item: a tag and the layout version.
const LOCK_MAGIC: &[u8; 3] = b"SL\x01";
/// Magic plus the 8-byte deadline.
const HEADER_LEN: usize = 3 + 8;

/// memcached reads an exptime above this many seconds (30 days) as a unix timestamp, and one at or
/// below it as seconds from now.
pub const RELATIVE_EXPTIME_MAX: u64 = 30 * 24 * 3600;

/// The memcached exptime for an item whose own deadline is `deadline_ms`, written at `now_ms`.
///
/// memcached counts expiry in whole seconds on a clock that may lag real time by up to a second,
/// so the exptime is rounded *up* past the deadline and given one extra second: memcached never
/// frees an item before its deadline, and frees it at most about two seconds after. The item's
/// own deadline (checked on every read) is what makes expiry exact to the millisecond.
///
/// Up to 30 days ahead the result is relative seconds (never 0, which would mean "never
/// expire"); beyond that it is the absolute unix time in seconds, as memcached requires.
pub fn exptime(deadline_ms: u64, now_ms: u64) -> u64 {
    let absolute = deadline_ms.div_ceil(1000) + 1;
    let relative = absolute.saturating_sub(now_ms / 1000).max(1);
    if relative > RELATIVE_EXPTIME_MAX {
        absolute
    } else {
        relative
    }
}

/// Splits an item into its deadline and the rest, checking the magic.
fn header<'a>(bytes: &'a [u8], magic: &[u8; 3], what: &str) -> Result<(u64, &'a [u8])> {
    if bytes.len() < HEADER_LEN || &bytes[..3] != magic {
        return Err(Error::corrupt(
            NAME,
            format!(
                "the item is not a {what} written by this driver ({} bytes, unknown header)",
                bytes.len()
            ),
        ));
    }
    let mut deadline = [0u8; 8];
    deadline.copy_from_slice(&bytes[3..HEADER_LEN]);
    Ok((u64::from_be_bytes(deadline), &bytes[HEADER_LEN..]))
}

/// Encodes a lock item.
pub(crate) fn encode_lock(deadline_ms: u64, token: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + token.len());
    out.extend_from_slice(LOCK_MAGIC);
    out.extend_from_slice(&deadline_ms.to_be_bytes());
    out.extend_from_slice(token.as_bytes());
    out
}

/// Decodes a lock item into its lease deadline and token.
pub(crate) fn decode_lock(bytes: &[u8]) -> Result<(u64, &[u8])> {
    header(bytes, LOCK_MAGIC, "lock")
}

#[cfg(test)]
mod tests {
    use session_core::driver::record::Record;
    use session_core::driver::{Data, Value};

    use super::*;

    const DAY: u64 = 24 * 3600;

    #[test]
    fn exptime_is_relative_up_to_30_days_and_never_early() {
        let now = 1_700_000_000_123;
        // 300 ms: rounded up to the next second past the deadline, plus one second.
        assert_eq!(exptime(now + 300, now), 2);
        // exactly on a second boundary
        assert_eq!(exptime(1_700_000_001_000, 1_700_000_000_000), 2);
        // a deadline already passed still expires soon, never "0 = never"
        assert_eq!(exptime(now - 5_000, now), 1);
        // 29 days: relative
        let t = exptime(now + 29 * DAY * 1000, now);
        assert!((29 * DAY..=RELATIVE_EXPTIME_MAX).contains(&t), "{t}");
        // never earlier than the deadline, for many sub-second offsets
        for offset in [0u64, 1, 499, 999, 1000, 1001, 59_999] {
            let now = now + offset;
            for ttl in [1u64, 300, 999, 1000, 1001, 5_432] {
                let rel = exptime(now + ttl, now);
                assert!(
                    (now / 1000 + rel) * 1000 >= now + ttl + 1000,
                    "ttl {ttl} at {now}: {rel}"
                );
            }
        }
    }

    #[test]
    fn exptime_is_absolute_beyond_30_days() {
        let now = 1_700_000_000_500;
        // the 30-day boundary itself is still relative
        let boundary_deadline = (now / 1000 + RELATIVE_EXPTIME_MAX - 1) * 1000;
        assert_eq!(exptime(boundary_deadline, now), RELATIVE_EXPTIME_MAX);
        // 31 days: the absolute unix time in seconds, rounded up, plus one
        let deadline = now + 31 * DAY * 1000;
        assert_eq!(exptime(deadline, now), deadline.div_ceil(1000) + 1);
        assert!(exptime(deadline, now) > RELATIVE_EXPTIME_MAX);
        // ten years (check::MAX_TTL) too
        let far = now + 10 * 365 * DAY * 1000;
        assert_eq!(exptime(far, now), far.div_ceil(1000) + 1);
    }

    #[test]
    fn session_round_trips_binary_values() {
        let mut data = Data::new();
        data.insert(String::new(), Value::from(vec![0u8, 1, 2, 255]));
        data.insert("ключ".into(), Value::from(vec![0xc1; 3]));
        data.insert("big".into(), Value::from(vec![7u8; 70_000]));
        let bytes = Record::new(42, data.clone()).encode().expect("encode");
        let rec = Record::decode(&bytes, NAME).expect("decode");
        assert_eq!(rec.deadline_ms, 42);
        assert_eq!(rec.data, data);
        assert!(rec.live(41));
        assert!(!rec.live(42));
        // values are MessagePack bin, not arrays: the item is about the size of its payload
        assert!(bytes.len() < 70_000 + 100, "{}", bytes.len());
    }

    #[test]
    fn foreign_or_truncated_items_are_corrupt() {
        for bad in [
            &b""[..],
            b"SM\x01",
            b"SM\x02\0\0\0\0\0\0\0\0\x80",
            b"hello world, not a session",
            b"SM\x01\0\0\0\0\0\0\0\x01\xc1",
            b"SREC\x01\0\0\0\0\0\0\0\x01\x92\xc0\x80\x00",
        ] {
            assert!(
                matches!(Record::decode(bad, NAME), Err(Error::Corrupt { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            decode_lock(b"SM\x01\0\0\0\0\0\0\0\x01tok"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode_lock(b"SREC\x01\0\0\0\0\0\0\0\x01"),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn lock_round_trips() {
        let bytes = encode_lock(1234, "tok-en");
        let (deadline, token) = decode_lock(&bytes).expect("decode");
        assert_eq!(deadline, 1234);
        assert_eq!(token, b"tok-en");
    }
}
