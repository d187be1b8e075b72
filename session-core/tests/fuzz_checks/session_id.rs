//! The check of the `session_id` fuzz target (and of its regression test): `SessionId::parse`
//! on any text.
//!
//! The input is split at its first `0xff` byte (never in UTF-8) into two texts. Each is parsed;
//! an accepted id is exactly the text (display, `as_str`, `FromStr`, a second parse), obeys the
//! documented rule (16 to 128 characters of `[A-Za-z0-9_-]`) and its `Debug` and `short` forms
//! do not show it; it is never a handle, its handle (`into_handle`) equals and hashes as it,
//! and a handle's text parses back to an ordinary id; a rejected one is `Error::InvalidId`
//! whose message never echoes the text. Two accepted ids compare, order and hash as their texts
//! do. `IncomingId` agrees with `parse`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use session_core::{Error, IncomingId, SessionId};

/// The messages `parse` may give, with their numbers taken out.
const MESSAGES: [&str; 3] = [
    "{len} characters, at least {} required",
    "{len} bytes, at most {} allowed",
    "character at byte {pos} is outside [A-Za-z0-9_-]",
];

/// Runs the check on one input.
pub fn check(data: &[u8]) {
    let (a, b) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &data[data.len()..]),
    };
    let a = String::from_utf8_lossy(a);
    let b = String::from_utf8_lossy(b);
    let ids = (one(&a), one(&b));
    if let (Some(x), Some(y)) = ids {
        assert_eq!(x == y, a == b);
        assert_eq!(x.cmp(&y), a.as_ref().cmp(b.as_ref()));
        assert_eq!(x.partial_cmp(&y), Some(a.as_ref().cmp(b.as_ref())));
        assert_eq!(hash(&x), hash(a.as_ref()), "an id hashes as its text");
        assert_eq!(hash(&x) == hash(&y), hash(a.as_ref()) == hash(b.as_ref()));
    }
}

/// The handle of an accepted id: the same text, equal to the id, hashing and ordering as it, its
/// `Debug` form marked and shortened; its text parses back to an ordinary id, never a handle.
fn handle(id: &SessionId, text: &str) {
    let handle = id.clone().into_handle();
    assert!(handle.is_handle());
    assert_eq!(handle.as_str(), text);
    assert_eq!(&handle, id);
    assert_eq!(hash(&handle), hash(id));
    assert_eq!(handle.cmp(id), std::cmp::Ordering::Equal);
    assert!(handle.clone().into_handle().is_handle());
    let debug = format!("{handle:?}");
    assert!(
        debug.starts_with("Handle(") && !debug.contains(text),
        "{debug}"
    );
    let again = SessionId::parse(handle.as_str()).expect("a handle's text is a valid id");
    assert!(!again.is_handle(), "a handle's text parsed into a handle");
    assert!(
        !IncomingId::parse(text)
            .id()
            .is_some_and(SessionId::is_handle)
    );
}

fn hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// Parses `text` and checks what came out; the id if it was accepted.
fn one(text: &str) -> Option<SessionId> {
    let by_rule = (SessionId::MIN_LEN..=SessionId::MAX_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let incoming = IncomingId::parse(text);
    assert_eq!(incoming, IncomingId::from(Some(text)));
    match SessionId::parse(text) {
        Ok(id) => {
            assert!(by_rule, "{text:?} accepted against the rule");
            assert_eq!(id.as_str(), text);
            assert_eq!(id.as_ref() as &str, text);
            assert_eq!(id.to_string(), text);
            assert_eq!(text.parse::<SessionId>().ok().as_ref(), Some(&id));
            assert_eq!(SessionId::parse(id.as_str()).ok().as_ref(), Some(&id));
            assert_eq!(id.clone(), id);
            let short = id.short();
            assert!(short.starts_with(&text[..4]) && short.ends_with(&text[text.len() - 4..]));
            assert!(!short.contains(text), "short() shows the whole id");
            assert!(
                !format!("{id:?}").contains(text),
                "Debug shows the whole id"
            );
            assert!(!id.is_handle(), "parse made a handle of client text");
            handle(&id, text);
            assert_eq!(incoming, IncomingId::Valid(id.clone()));
            assert_eq!(incoming.id(), Some(&id));
            assert!(!incoming.is_invalid());
            Some(id)
        }
        Err(Error::InvalidId(message)) => {
            assert!(!by_rule, "{text:?} rejected against the rule: {message}");
            let skeleton = |s: &str| s.replace(|c: char| c.is_ascii_digit(), "");
            let known = MESSAGES.iter().any(|m| {
                skeleton(
                    &m.replace("{len}", "")
                        .replace("{pos}", "")
                        .replace("{}", ""),
                ) == skeleton(&message)
            });
            assert!(
                known,
                "unexpected message {message:?} (does it echo the id?)"
            );
            if text.is_empty() {
                assert_eq!(incoming, IncomingId::Absent);
            } else {
                assert_eq!(incoming, IncomingId::Invalid);
                assert!(incoming.is_invalid() && incoming.id().is_none());
            }
            None
        }
        Err(other) => panic!("{text:?}: not an InvalidId error: {other:?}"),
    }
}
