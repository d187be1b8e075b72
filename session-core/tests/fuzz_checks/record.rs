//! The check of the `record` fuzz target (and of its regression test): the shared session
//! record codec (`session_core::driver::record`), which the file, sled and memcached drivers
//! store and the SQLite driver stores the body of.
//!
//! Every input is used twice:
//!
//! * as stored bytes: `Record::decode`, `record::deadline` and `Record::decode_body` return a
//!   record or `Error::Corrupt` naming the backend, never panic; `record::load` agrees with
//!   `decode` (the same values, `None` exactly when the record is not live, corrupt alike); a decoded record encodes to a
//!   canonical form that decodes to the same record, is no longer than a current-layout input,
//!   and encodes to itself again; `deadline` agrees with `decode`;
//! * as a structured record (`arbitrary`): `decode(encode(r)) == r`, the body alone round trips,
//!   the encoding does not depend on the map's order, and the input's choice of truncation or an
//!   appended byte is `Error::Corrupt`.

use arbitrary::{Arbitrary, Unstructured};
use session_core::driver::record::{self, HEADER_LEN, MAGIC, Record, VERSION};
use session_core::{Data, Error, Value};

const BACKEND: &str = "fuzz";

/// Runs the check on one input.
pub fn check(data: &[u8]) {
    stored(data);
    if let Ok(input) = Structured::arbitrary_take_rest(Unstructured::new(data)) {
        structured(input);
    }
}

fn is_corrupt<T: std::fmt::Debug>(r: &session_core::Result<T>) -> bool {
    matches!(
        r,
        Err(Error::Corrupt {
            backend: BACKEND,
            ..
        })
    )
}

/// `bytes` as a stored record.
fn stored(bytes: &[u8]) {
    let decoded = Record::decode(bytes, BACKEND);
    let deadline = record::deadline(bytes, BACKEND);
    // `load` (the drivers' read path, values packed) agrees with `decode` then `live`
    for now in [0, u64::MAX / 2, u64::MAX] {
        let loaded = record::load(bytes, now, BACKEND);
        match &decoded {
            Ok(rec) if rec.live(now) => {
                let loaded = loaded
                    .expect("a record that decodes loads")
                    .expect("a live record");
                assert_eq!(loaded.data, rec.data);
                assert_eq!(loaded.expires_at, Some(rec.expires_at()));
            }
            Ok(_) => assert!(matches!(loaded, Ok(None)), "{loaded:?}"),
            Err(_) => assert!(is_corrupt(&loaded), "{loaded:?}"),
        }
    }
    assert!(decoded.is_ok() || is_corrupt(&decoded), "{decoded:?}");
    assert!(deadline.is_ok() || is_corrupt(&deadline), "{deadline:?}");
    let current = bytes.starts_with(&MAGIC) && bytes.get(4) == Some(&VERSION);
    if let Ok(rec) = &decoded {
        assert_eq!(deadline.as_ref().ok(), Some(&rec.deadline_ms));
        canonical(rec, current.then_some(bytes.len()));
        if current {
            let body = Record::decode_body(rec.deadline_ms, &bytes[HEADER_LEN..], BACKEND);
            assert_eq!(body.as_ref().ok(), Some(rec));
        }
        let _ = (
            rec.expires_at(),
            rec.live(u64::MAX / 2),
            rec.clone().into_loaded(),
        );
    } else if current && deadline.is_ok() {
        // a current-layout header with a body that does not decode: the body alone is corrupt too
        let body = Record::decode_body(0, &bytes[HEADER_LEN..], BACKEND);
        assert!(is_corrupt(&body), "{body:?}");
    }
    // the whole input as a bare body (session-file version 1, session-sqlite)
    match Record::decode_body(7, bytes, BACKEND) {
        Ok(rec) => {
            assert_eq!(rec.deadline_ms, 7);
            let mut body = Vec::new();
            rec.encode_body_into(&mut body)
                .expect("a decoded body encodes");
            assert!(body.len() <= bytes.len(), "the canonical body is longer");
            let again = Record::decode_body(7, &body, BACKEND).expect("a canonical body decodes");
            assert_eq!(again, rec);
        }
        Err(e) => assert!(is_corrupt::<()>(&Err(e))),
    }
}

/// `rec` encoded: decodes to itself, and encodes to the same bytes again. `input_len`: the
/// length of the current-layout bytes it was decoded from, which the canonical form never
/// exceeds.
fn canonical(rec: &Record, input_len: Option<usize>) {
    let bytes = rec.encode().expect("a decoded record encodes");
    assert_eq!(&bytes[..4], &MAGIC);
    assert_eq!(bytes[4], VERSION);
    if let Some(len) = input_len {
        assert!(
            bytes.len() <= len,
            "canonical {} > input {len}",
            bytes.len()
        );
    }
    let again = Record::decode(&bytes, BACKEND).expect("an encoded record decodes");
    assert_eq!(&again, rec);
    assert_eq!(
        record::deadline(&bytes, BACKEND).ok(),
        Some(rec.deadline_ms)
    );
    assert_eq!(again.encode().expect("encodes"), bytes, "not canonical");
}

/// A record to encode, and what to do to its bytes.
#[derive(Arbitrary, Debug)]
struct Structured {
    deadline_ms: u64,
    owner: Option<String>,
    entries: Vec<(String, Vec<u8>)>,
    /// Where to cut the encoding (modulo its length).
    cut: usize,
    /// A byte to append.
    extra: u8,
}

fn structured(input: Structured) {
    let mut data = Data::new();
    let mut reversed = Data::new();
    for (key, value) in &input.entries {
        data.insert(key.clone(), Value::from_bytes(value.clone()));
    }
    // the same map built in another order (later duplicates still win)
    for (key, _) in input.entries.iter().rev() {
        if !reversed.contains_key(key) {
            reversed.insert(key.clone(), data[key].clone());
        }
    }
    assert_eq!(data, reversed);
    let rec = Record {
        deadline_ms: input.deadline_ms,
        owner: input.owner,
        data,
    };
    let bytes = rec.encode().expect("encodes");
    canonical(&rec, None);
    let other = Record {
        data: reversed,
        ..rec.clone()
    };
    assert_eq!(
        other.encode().expect("encodes"),
        bytes,
        "depends on map order"
    );

    let mut body = Vec::new();
    rec.encode_body_into(&mut body).expect("encodes");
    assert_eq!(&bytes[HEADER_LEN..], &body[..]);
    let from_body = Record::decode_body(rec.deadline_ms, &body, BACKEND);
    assert_eq!(from_body.as_ref().ok(), Some(&rec));
    let mut framed = vec![0xee; 3];
    rec.encode_into(&mut framed).expect("encodes");
    assert_eq!(&framed[3..], &bytes[..]);

    let cut = input.cut % bytes.len();
    assert!(
        is_corrupt(&Record::decode(&bytes[..cut], BACKEND)),
        "cut at {cut}"
    );
    if cut < HEADER_LEN {
        assert!(is_corrupt(&record::deadline(&bytes[..cut], BACKEND)));
    }
    let mut longer = bytes.clone();
    longer.push(input.extra);
    assert!(
        is_corrupt(&Record::decode(&longer, BACKEND)),
        "a byte appended"
    );
}
