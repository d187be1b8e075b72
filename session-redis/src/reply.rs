//! Reading replies: an `HGETALL` of a session hash (RESP2 or RESP3) into the session's data and
//! its deadline, and the deadline field's value (the deadline and the keys it folds).

use std::time::{Duration, SystemTime};

use session_core::driver::{Error, Packed, Result, check};

use crate::NAME;
use crate::keys::{DEADLINE_FIELD, FOLDED_META, FOLDED_SEEN};

/// How far past now + [`check::MAX_TTL`] (on the local clock) a stored deadline may lie and still
/// be believed: room for a writer's clock that is ahead of ours. A later one was not written by
/// this driver, and `load` asks `PTTL` instead.
const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// Splits an `HGETALL` reply into the session's data and the raw deadline (the digits the
/// deadline field ([`DEADLINE_FIELD`]) starts with; `None` if the hash does not hold it). The
/// field itself never reaches the data; the keys it folds do.
///
/// RESP2 replies are an array of alternating names and values, RESP3 replies a map. The names
/// and values are read in place and packed into one buffer ([`Packed`]: one allocation, no map
/// built and hashed per load); a name given twice keeps its last value, and a folded key wins
/// over a field of the same name. A field name that is not UTF-8 (and not the deadline field),
/// or a deadline field that is not in its layout ([`unfold`]), is `Error::Corrupt`.
pub(crate) fn parse_hash<'a>(reply: &'a redis::Value) -> Result<(Packed, Option<Vec<u8>>)> {
    let fields = match reply {
        redis::Value::Array(items) => items.len() / 2,
        redis::Value::Map(pairs) => pairs.len(),
        _ => 0,
    };
    let mut entries: Vec<(&'a str, &'a [u8])> = Vec::with_capacity(fields + 2);
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
    let Some(raw) = deadline else {
        return Ok((Packed::from_pairs(&entries)?, None));
    };
    let folded = unfold(raw)?;
    entries.extend(folded.keys());
    Ok((
        Packed::from_pairs(&entries)?,
        Some(folded.deadline.to_vec()),
    ))
}

/// One field of an `HGETALL` reply: a session key and its value, or the deadline field.
fn add_field<'a>(
    entries: &mut Vec<(&'a str, &'a [u8])>,
    deadline: &mut Option<&'a [u8]>,
    name: &'a redis::Value,
    value: &'a redis::Value,
) -> Result<()> {
    let (name, value) = (reply_bytes(name)?, reply_bytes(value)?);
    match std::str::from_utf8(name) {
        Ok(key) => entries.push((key, value)),
        Err(_) if name == DEADLINE_FIELD => *deadline = Some(value),
        Err(_) => return Err(Error::corrupt(NAME, "a session field name is not UTF-8")),
    }
    Ok(())
}

/// A deadline field's value, split ([`DEADLINE_FIELD`] has the layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Folded<'a> {
    /// The deadline's digits (empty where the writer did not know it).
    pub(crate) deadline: &'a [u8],
    /// The value of [`FOLDED_SEEN`], if the field holds it.
    pub(crate) seen: Option<&'a [u8]>,
    /// The value of [`FOLDED_META`], if the field holds it.
    pub(crate) meta: Option<&'a [u8]>,
}

impl<'a> Folded<'a> {
    /// The folded keys the field holds, as session keys and values.
    pub(crate) fn keys(self) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        [(FOLDED_SEEN, self.seen), (FOLDED_META, self.meta)]
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?)))
    }
}

/// Splits a deadline field's value: `<deadline>,<seen length>,<meta length>,<seen><meta>`, a
/// length `-` for an absent key; a value without a comma is a deadline alone (written before
/// the keys were folded). `Error::Corrupt` for a value with a comma that does not follow the
/// layout to its last byte.
pub(crate) fn unfold(raw: &[u8]) -> Result<Folded<'_>> {
    let Some(comma) = raw.iter().position(|&b| b == b',') else {
        return Ok(Folded {
            deadline: raw,
            seen: None,
            meta: None,
        });
    };
    let bad = || Error::corrupt(NAME, "the session's deadline field is not in its layout");
    let deadline = &raw[..comma];
    if !deadline.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let mut rest = &raw[comma + 1..];
    let mut length = || -> Result<Option<usize>> {
        let end = rest.iter().position(|&b| b == b',').ok_or_else(bad)?;
        let token = &rest[..end];
        rest = &rest[end + 1..];
        match token {
            b"-" => Ok(None),
            digits if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) => {
                let text = std::str::from_utf8(digits).map_err(|_| bad())?;
                text.parse().map(Some).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    };
    let (seen_len, meta_len) = (length()?, length()?);
    let mut take = |len: Option<usize>| -> Result<Option<&[u8]>> {
        let Some(len) = len else { return Ok(None) };
        if len > rest.len() {
            return Err(bad());
        }
        let (value, tail) = rest.split_at(len);
        rest = tail;
        Ok(Some(value))
    };
    let (seen, meta) = (take(seen_len)?, take(meta_len)?);
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(Folded {
        deadline,
        seen,
        meta,
    })
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

/// The deadline a deadline field holds (the digits before its first comma, or the whole value
/// without one), if it is unix milliseconds in decimal and no later than this driver could have
/// written ([`MAX_CLOCK_AHEAD`]); `None` sends `load` to `PTTL`.
pub(crate) fn parse_deadline(raw: &[u8]) -> Option<SystemTime> {
    let digits = raw.split(|&b| b == b',').next().unwrap_or(raw);
    let ms: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
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
    fn the_deadline_field_folds_the_bookkeeping_keys() {
        let v = b"1750000000123,3,5,a,bmeta,";
        let f = unfold(v).expect("the layout");
        assert_eq!(f.deadline, b"1750000000123");
        assert_eq!(f.seen, Some(&b"a,b"[..]));
        assert_eq!(f.meta, Some(&b"meta,"[..]));
        assert_eq!(
            unfold(b"17,-,0,").expect("layout"),
            Folded {
                deadline: b"17",
                seen: None,
                meta: Some(b""),
            }
        );
        assert_eq!(unfold(b",-,-,").expect("layout").deadline, b"");
        // a deadline alone: written before the keys were folded
        assert_eq!(
            unfold(b"1750000000123").expect("a deadline"),
            Folded {
                deadline: b"1750000000123",
                seen: None,
                meta: None,
            }
        );
        for bad in [
            &b"17,3,-,ab"[..],
            b"17,3,-,abcd",
            b"17,x,-,",
            b"17,,-,",
            b"17,-,-",
            b"1a,-,-,",
            b"17,-1,-,a",
            b"17,99999999999999999999999,-,",
        ] {
            assert!(matches!(unfold(bad), Err(Error::Corrupt { .. })), "{bad:?}");
        }
        // an HGETALL reply: the folded keys reach the data and win over fields of their name
        let reply = redis::Value::Array(vec![
            bulk(b"__s.seen"),
            bulk(b"old"),
            bulk(b"k"),
            bulk(b"v"),
            bulk(DEADLINE_FIELD),
            bulk(b"1750000000123,3,-,new"),
        ]);
        let (data, deadline) = parse_hash(&reply).expect("a valid reply");
        assert_eq!(deadline.as_deref(), Some(&b"1750000000123"[..]));
        assert_eq!(data.iter().count(), 2);
        assert_eq!(data.get_ref(FOLDED_SEEN).expect("seen").as_bytes(), b"new");
        assert_eq!(data.get_ref("k").expect("k").as_bytes(), b"v");
        assert_eq!(
            parse_deadline(b"1750000000123,3,-,new"),
            Some(check::from_unix_millis(1_750_000_000_123))
        );
        let broken = redis::Value::Array(vec![bulk(DEADLINE_FIELD), bulk(b"17,9,-,x")]);
        assert!(matches!(parse_hash(&broken), Err(Error::Corrupt { .. })));
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
