//! The check of the `redis_reply` fuzz target (and of its regression test): what the Redis
//! driver reads from the server, where a foreign tool (or a corrupt server) may have written
//! anything.
//!
//! Every input is used as:
//!
//! * raw RESP bytes (redis-rs's own parser, as the connection reads them): the parsed value goes
//!   to the `HGETALL` reader, which must agree with a model (names and values must be strings,
//!   the deadline field is split off (its digits are the deadline, and the session layer's two
//!   bookkeeping keys it folds join the data, over fields of their names; a value with a comma
//!   out of that layout is `Error::Corrupt`), any other name that is not UTF-8 is
//!   `Error::Corrupt`,
//!   a reply of another shape is `Error::Backend`), and to the `CLUSTER SLOTS` reader;
//! * a deadline field value (`parse_deadline`: a believed deadline is the decimal number it
//!   holds, no later than the driver could have written); a `CLUSTER NODES` reply (only
//!   masters, with a port); a key found by `SCAN` (an id it yields is the id whose hash key it
//!   is); a `scan` cursor (a slot below 16,384, then a deadline and a valid id, or
//!   `Error::InvalidInput`; canonical text round trips); `is_past` only for a believed deadline
//!   at or before now;
//! * a structured hash (`arbitrary`), written as a RESP2 array or a RESP3 map, which must read
//!   back as the model says.

use arbitrary::{Arbitrary, Unstructured};
use redis::Value;
use session_core::driver::{Data, Error, Value as SessionValue, check};
use session_redis::fuzzing::{
    DEADLINE_FIELD, is_past, parse_cluster_masters, parse_cluster_slots, parse_deadline,
    parse_hash, parse_scan_cursor,
};

/// What `parse_hash` must return, as an outcome that can be compared.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ok(Data, Option<Vec<u8>>),
    Corrupt,
    Backend,
}

fn outcome(r: session_core::Result<(Data, Option<Vec<u8>>)>) -> Outcome {
    match r {
        Ok((data, deadline)) => Outcome::Ok(data, deadline),
        Err(Error::Corrupt {
            backend: "redis", ..
        }) => Outcome::Corrupt,
        Err(Error::Backend {
            backend: "redis", ..
        }) => Outcome::Backend,
        Err(other) => panic!("an error of another kind: {other:?}"),
    }
}

/// The model of `parse_hash`.
fn model(reply: &Value) -> Outcome {
    let pairs: Vec<(&Value, &Value)> = match reply {
        Value::Nil => return Outcome::Ok(Data::new(), None),
        Value::Array(items) if items.len() % 2 == 0 => {
            items.chunks(2).map(|p| (&p[0], &p[1])).collect()
        }
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        _ => return Outcome::Backend,
    };
    let bytes = |v: &Value| match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    };
    let mut data = Data::new();
    let mut deadline = None;
    for (name, value) in pairs {
        let (Some(name), Some(value)) = (bytes(name), bytes(value)) else {
            return Outcome::Backend;
        };
        match String::from_utf8(name) {
            Ok(key) => {
                data.insert(key, SessionValue::from_bytes(value));
            }
            Err(e) if e.as_bytes() == DEADLINE_FIELD => deadline = Some(value),
            Err(_) => return Outcome::Corrupt,
        }
    }
    let Some(raw) = deadline else {
        return Outcome::Ok(data, None);
    };
    let Some((digits, folded)) = model_unfold(&raw) else {
        return Outcome::Corrupt;
    };
    for (key, value) in folded {
        data.insert(key.to_owned(), SessionValue::from_bytes(value));
    }
    Outcome::Ok(data, Some(digits))
}

/// A deadline field as the model reads it: the deadline's digits and the folded keys' entries.
type ModelFolded = (Vec<u8>, Vec<(&'static str, Vec<u8>)>);

/// The model of the deadline field's layout: `<digits>,<seen len|->,<meta len|->,<seen><meta>`,
/// or a deadline alone without a comma; `None` where a value with a comma breaks it.
fn model_unfold(raw: &[u8]) -> Option<ModelFolded> {
    if !raw.contains(&b',') {
        return Some((raw.to_vec(), Vec::new()));
    }
    let parts: Vec<&[u8]> = raw.splitn(4, |&b| b == b',').collect();
    let [digits, seen_len, meta_len, mut rest] = parts[..] else {
        return None;
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len = |token: &[u8]| -> Option<Option<usize>> {
        if token == b"-" {
            return Some(None);
        }
        if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(token).ok()?.parse().ok().map(Some)
    };
    let mut folded = Vec::new();
    for (key, token) in [("__s.seen", seen_len), ("__s.meta", meta_len)] {
        if let Some(n) = len(token)? {
            if n > rest.len() {
                return None;
            }
            folded.push((key, rest[..n].to_vec()));
            rest = &rest[n..];
        }
    }
    rest.is_empty().then(|| (digits.to_vec(), folded))
}

/// Runs the check on one input.
pub fn check(data: &[u8]) {
    if let Ok(reply) = redis::parse_redis_value(data) {
        assert_eq!(
            outcome(parse_hash(reply.clone())),
            model(&reply),
            "{reply:?}"
        );
        for (_first, _last, host, _port) in parse_cluster_slots(reply) {
            assert!(!host.is_empty() && host != "?", "{host:?}");
        }
    }
    deadline(data);
    cluster_nodes(&String::from_utf8_lossy(data));
    scan_cursor(&String::from_utf8_lossy(data));
    if let Ok(hash) = Hash::arbitrary_take_rest(Unstructured::new(data)) {
        structured(&hash);
    }
}

/// A `scan` cursor from a client (a page link, an operator's command line): a slot below 16,384
/// and, after it, a deadline and a valid id, or `Error::InvalidInput`; an accepted cursor's
/// canonical text reads back as the same cursor.
fn scan_cursor(text: &str) {
    match parse_scan_cursor(text) {
        Ok((slot, after, canonical)) => {
            assert!(slot < 16_384, "slot {slot} accepted");
            let again = parse_scan_cursor(&canonical).expect("a canonical cursor parses");
            assert_eq!((again.0, &again.1), (slot, &after));
            assert_eq!(again.2, canonical);
            let expected = match &after {
                None => slot.to_string(),
                Some((at, id)) => format!("{slot}.{at}.{id}"),
            };
            assert_eq!(canonical, expected);
        }
        Err(Error::InvalidInput(_)) => {}
        Err(other) => panic!("{text:?}: not an InvalidInput error: {other:?}"),
    }
}

fn deadline(raw: &[u8]) {
    let past = is_past(Some(raw));
    assert!(
        !is_past(None),
        "a hash without a deadline field is judged by the server"
    );
    let Some(at) = parse_deadline(raw) else {
        assert!(
            !past,
            "a deadline the driver did not write is judged by the server"
        );
        return;
    };
    if past {
        assert!(
            at <= std::time::SystemTime::now(),
            "a future deadline judged past"
        );
    }
    let digits = raw
        .split(|&b| b == b',')
        .next()
        .expect("split yields one part");
    let ms: u64 = std::str::from_utf8(digits)
        .expect("a believed deadline is text")
        .parse()
        .expect("a believed deadline is the number before the first comma");
    assert_eq!(at, check::from_unix_millis(ms));
    // no later than now + the longest TTL + a day of clock skew
    let latest = check::now_millis() + check::MAX_TTL.as_millis() as u64 + 24 * 3600 * 1000;
    assert!(ms <= latest, "{ms} believed");
}

fn cluster_nodes(text: &str) {
    for (host, _port) in parse_cluster_masters(text) {
        assert!(
            text.lines()
                .any(|l| l.contains("master") && l.contains(host.as_str())),
            "{host:?} is not from a master's line"
        );
        assert!(!host.contains('@') && !host.contains(','), "{host:?}");
        assert!(!host.contains(char::is_whitespace), "{host:?}");
    }
}

/// A session hash as the server would send it.
#[derive(Arbitrary, Debug)]
struct Hash {
    fields: Vec<(Field, Vec<u8>)>,
    resp3: bool,
    /// Field names as simple strings (`+...`) where they can be.
    simple: bool,
}

#[derive(Arbitrary, Debug)]
enum Field {
    Deadline,
    /// A deadline field in the folded layout, as the apply script writes it.
    Folded {
        deadline: u64,
        seen: Option<Vec<u8>>,
        meta: Option<Vec<u8>>,
    },
    Key(String),
    Bytes(Vec<u8>),
}

fn bulk(out: &mut Vec<u8>, bytes: &[u8], simple: bool) {
    if simple && !bytes.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.push(b'+');
        out.extend_from_slice(bytes);
    } else {
        out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(b"\r\n");
}

fn structured(hash: &Hash) {
    let mut wire = Vec::new();
    let n = hash.fields.len();
    if hash.resp3 {
        wire.extend_from_slice(format!("%{n}\r\n").as_bytes());
    } else {
        wire.extend_from_slice(format!("*{}\r\n", 2 * n).as_bytes());
    }
    for (field, value) in &hash.fields {
        let folded;
        let (name, value): (&[u8], &[u8]) = match field {
            Field::Folded {
                deadline,
                seen,
                meta,
            } => {
                let len = |v: &Option<Vec<u8>>| {
                    v.as_ref().map_or("-".to_owned(), |v| v.len().to_string())
                };
                let mut v = format!("{deadline},{},{},", len(seen), len(meta)).into_bytes();
                v.extend(seen.iter().flatten());
                v.extend(meta.iter().flatten());
                folded = v;
                (DEADLINE_FIELD, &folded)
            }
            Field::Deadline => (DEADLINE_FIELD, value),
            Field::Key(k) => (k.as_bytes(), value),
            Field::Bytes(b) => (b, value),
        };
        // a simple string must be UTF-8 to stay the same bytes
        let simple = hash.simple && std::str::from_utf8(name).is_ok();
        bulk(&mut wire, name, simple);
        bulk(&mut wire, value, false);
    }
    let reply = redis::parse_redis_value(&wire).expect("a well-formed RESP reply");
    let got = outcome(parse_hash(reply.clone()));
    assert_eq!(got, model(&reply));
    // The model covers the folded layout; the expectations below, a hash without it.
    let folded_layout = hash.fields.iter().any(|(field, value)| match field {
        Field::Folded { .. } => true,
        Field::Deadline => value.contains(&b','),
        Field::Bytes(b) => b == DEADLINE_FIELD && value.contains(&b','),
        Field::Key(_) => false,
    });
    if let (Outcome::Ok(data, deadline), false) = (&got, folded_layout) {
        // every field is in the data but the deadline, which is split off
        let mut want = Data::new();
        let mut want_deadline = None;
        for (field, value) in &hash.fields {
            match field {
                Field::Deadline => want_deadline = Some(value.clone()),
                Field::Folded { .. } => unreachable!("skipped above"),
                Field::Key(k) => {
                    want.insert(k.clone(), SessionValue::from_bytes(value.clone()));
                }
                Field::Bytes(b) => match String::from_utf8(b.clone()) {
                    Ok(k) => {
                        want.insert(k, SessionValue::from_bytes(value.clone()));
                    }
                    Err(e) if e.as_bytes() == DEADLINE_FIELD => {
                        want_deadline = Some(value.clone());
                    }
                    Err(_) => panic!("a name that is not UTF-8 was accepted"),
                },
            }
        }
        assert_eq!((data, deadline), (&want, &want_deadline));
    }
}
