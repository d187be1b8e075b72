//! Reading replies: an `HGETALL` of a session hash (RESP2 or RESP3) into the session's data and
//! its deadline field, and the deadline field's value, written and read.

use std::time::{Duration, SystemTime};

use session_core::driver::{Error, Packed, Result, check};

use crate::NAME;
use crate::keys::DEADLINE_FIELD;

/// How far past now + [`check::MAX_TTL`] (on the local clock) a stored deadline may lie and still
/// be believed: room for a writer's clock that is ahead of ours. A later one was not written by
/// this driver, and `load` asks `PTTL` instead.
const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// Splits an `HGETALL` reply into the session's data and the raw value of the deadline field
/// ([`DEADLINE_FIELD`], `None` if the hash does not hold it), which never reaches the data.
///
/// RESP2 replies are an array of alternating names and values, RESP3 replies a map. The names
/// and values are read in place and packed into one buffer ([`Packed`]: one allocation, no map
/// built and hashed per load); a name given twice keeps its last value. A field name that is not
/// UTF-8 (and not the deadline field) is `Error::Corrupt`.
pub(crate) fn parse_hash(reply: &redis::Value) -> Result<(Packed, Option<Vec<u8>>)> {
    let fields = match reply {
        redis::Value::Array(items) => items.len() / 2,
        redis::Value::Map(pairs) => pairs.len(),
        _ => 0,
    };
    let mut entries: Vec<(&str, &[u8])> = Vec::with_capacity(fields);
    let mut deadline = None;
    match reply {
        redis::Value::Array(items) if items.len() % 2 == 0 => {
            for pair in items.chunks_exact(2) {
                add_field(&mut entries, &mut deadline, &pair[0], &pair[1])?;
            }
        }
        redis::Value::Map(pairs) => {
            for (name, value) in pairs {
                add_field(&mut entries, &mut deadline, name, value)?;
            }
        }
        redis::Value::Nil => {}
        other => return Err(unexpected_reply(other)),
    }
    Ok((Packed::from_pairs(&entries)?, deadline))
}

/// One field of an `HGETALL` reply: a session key and its value, or the deadline field.
fn add_field<'a>(
    entries: &mut Vec<(&'a str, &'a [u8])>,
    deadline: &mut Option<Vec<u8>>,
    name: &'a redis::Value,
    value: &'a redis::Value,
) -> Result<()> {
    let (name, value) = (reply_bytes(name)?, reply_bytes(value)?);
    match std::str::from_utf8(name) {
        Ok(key) => entries.push((key, value)),
        Err(_) if name == DEADLINE_FIELD => *deadline = Some(value.to_vec()),
        Err(_) => return Err(Error::corrupt(NAME, "a session field name is not UTF-8")),
    }
    Ok(())
}

/// The bytes of one string of an `HGETALL` reply.
fn reply_bytes(value: &redis::Value) -> Result<&[u8]> {
    match value {
        redis::Value::BulkString(bytes) => Ok(bytes),
        redis::Value::SimpleString(text) => Ok(text.as_bytes()),
        other => Err(unexpected_reply(other)),
    }
}

fn unexpected_reply(value: &redis::Value) -> Error {
    let kind = match value {
        redis::Value::Nil => "nil",
        redis::Value::Int(_) => "an integer",
        redis::Value::Array(items) if items.len() % 2 == 1 => "an array of odd length",
        redis::Value::Array(_) => "an array",
        redis::Value::Map(_) => "a map",
        redis::Value::Set(_) => "a set",
        _ => "another type",
    };
    Error::backend(NAME, format!("unexpected HGETALL reply: {kind}"))
}

/// The deadline a deadline field holds, if it is unix milliseconds in decimal and no later than
/// this driver could have written ([`MAX_CLOCK_AHEAD`]); `None` sends `load` to `PTTL`.
pub(crate) fn parse_deadline(raw: &[u8]) -> Option<SystemTime> {
    let ms: u64 = std::str::from_utf8(raw).ok()?.parse().ok()?;
    let latest = (check::MAX_TTL + MAX_CLOCK_AHEAD).as_millis() as u64;
    (ms <= check::now_millis().saturating_add(latest)).then(|| check::from_unix_millis(ms))
}

/// Whether a deadline field's value (if the hash holds one) names a deadline that has passed on
/// the local clock: such a session is missing, whatever the server still holds. A hash without
/// the field, or with a value this driver did not write, is judged by the server's expiry alone.
pub(crate) fn is_past(raw: Option<&[u8]>) -> bool {
    raw.and_then(parse_deadline)
        .is_some_and(|at| at <= SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(bytes: &[u8]) -> redis::Value {
        redis::Value::BulkString(bytes.to_vec())
    }

    #[test]
    fn hgetall_replies_of_both_protocols_drop_the_deadline_field() {
        let resp2 = redis::Value::Array(vec![
            bulk(b"a"),
            bulk(b"\x01"),
            bulk(DEADLINE_FIELD),
            bulk(b"1750000000123"),
            bulk(b"b"),
            bulk(b""),
        ]);
        let resp3 = redis::Value::Map(vec![
            (bulk(DEADLINE_FIELD), bulk(b"1750000000123")),
            (bulk(b"a"), bulk(b"\x01")),
            (bulk(b"b"), bulk(b"")),
        ]);
        for reply in [resp2, resp3] {
            let (data, deadline) = parse_hash(&reply).expect("a valid reply");
            assert_eq!(data.iter().count(), 2);
            assert_eq!(data.get_ref("a").expect("a").as_bytes(), [1u8]);
            assert_eq!(data.get_ref("b").expect("b").as_bytes(), b"");
            assert_eq!(deadline.as_deref(), Some(&b"1750000000123"[..]));
        }
        // a name given twice keeps its last value, as a map would
        let twice = redis::Value::Array(vec![bulk(b"a"), bulk(b"1"), bulk(b"a"), bulk(b"2")]);
        let (data, _) = parse_hash(&twice).expect("a valid reply");
        assert_eq!(data.iter().count(), 1);
        assert_eq!(data.get_ref("a").expect("a").as_bytes(), b"2");
        for empty in [
            redis::Value::Array(vec![]),
            redis::Value::Map(vec![]),
            redis::Value::Nil,
        ] {
            let (data, deadline) = parse_hash(&empty).expect("empty reply");
            assert!(data.is_empty() && deadline.is_none());
        }
    }

    #[test]
    fn odd_replies_and_foreign_field_names_are_errors() {
        assert!(matches!(
            parse_hash(&bulk(b"x")),
            Err(Error::Backend { .. })
        ));
        let odd = redis::Value::Array(vec![bulk(b"a")]);
        assert!(matches!(parse_hash(&odd), Err(Error::Backend { .. })));
        let not_utf8 = redis::Value::Array(vec![bulk(b"\xfeother"), bulk(b"x")]);
        assert!(matches!(parse_hash(&not_utf8), Err(Error::Corrupt { .. })));
        let int_value = redis::Value::Map(vec![(bulk(b"a"), redis::Value::Int(1))]);
        assert!(matches!(parse_hash(&int_value), Err(Error::Backend { .. })));
    }

    #[test]
    fn deadlines_are_believed_only_when_this_driver_could_have_written_them() {
        let soon = check::now_millis() + 60_000;
        assert_eq!(
            parse_deadline(soon.to_string().as_bytes()),
            Some(check::from_unix_millis(soon))
        );
        let latest = check::now_millis() + check::MAX_TTL.as_millis() as u64;
        assert!(parse_deadline(latest.to_string().as_bytes()).is_some());
        assert!(parse_deadline(b"1").is_some(), "a past deadline is kept");
        for bad in [
            &b"abc"[..],
            b"",
            b"-5",
            b"1.8e+12",
            b" 1750000000123",
            b"99999999999999999",
            b"18446744073709551615",
            b"18446744073709551616",
        ] {
            assert_eq!(parse_deadline(bad), None, "{bad:?}");
        }
    }
}
