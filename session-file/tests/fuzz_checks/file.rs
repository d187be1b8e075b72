//! The check of the `file_record` fuzz target (and of its regression test): the file driver's
//! file format (its framing with length, key count and CRC-32 around the shared record, and the
//! older version 1 files), as read back from a session directory anyone may have written to.
//!
//! Every input is used as:
//!
//! * a session file and a lock file: decoding returns a record or `Error::Corrupt`, never a
//!   panic; a decoded file agrees with its header (deadline, key count) and encodes to a file
//!   that decodes to the same record; a file of one kind is never read as the other;
//! * a structured record (`arbitrary`): `decode(encode(r)) == r`, the header says its deadline
//!   and key count, and the input's choice of one flipped bit, truncation or appended byte is
//!   `Error::Corrupt`.

use arbitrary::{Arbitrary, Unstructured};
use session_core::driver::record::Record;
use session_core::driver::{Data, Error, Value};
use session_file::fuzzing::{HEADER_READ_LEN, decode, decode_header, encode};

fn is_corrupt<T: std::fmt::Debug>(r: &session_core::Result<T>) -> bool {
    matches!(
        r,
        Err(Error::Corrupt {
            backend: "file",
            ..
        })
    )
}

/// Runs the check on one input.
pub fn check(data: &[u8]) {
    for lease in [false, true] {
        stored(lease, data);
    }
    if let Ok(input) = Structured::arbitrary_take_rest(Unstructured::new(data)) {
        structured(&input);
    }
}

fn stored(lease: bool, bytes: &[u8]) {
    let decoded = decode(lease, bytes);
    let header = decode_header(lease, bytes);
    assert!(decoded.is_ok() || is_corrupt(&decoded), "{decoded:?}");
    assert!(header.is_ok() || is_corrupt(&header), "{header:?}");
    let head = &bytes[..bytes.len().min(HEADER_READ_LEN)];
    let short_header = decode_header(lease, head);
    assert!(short_header.is_ok() || is_corrupt(&short_header));
    let Ok(rec) = decoded else {
        return;
    };
    assert!(is_corrupt(&decode(!lease, bytes)), "read as the other kind");
    let keys = u32::try_from(rec.data.len()).expect("fewer keys than bytes");
    assert_eq!(header.ok(), Some((rec.deadline_ms, keys)));
    assert_eq!(short_header.ok(), Some((rec.deadline_ms, keys)));
    let again = encode(lease, &rec).expect("a decoded record encodes");
    assert_eq!(decode(lease, &again).expect("an encoded file decodes"), rec);
}

#[derive(Arbitrary, Debug)]
struct Structured {
    lease: bool,
    deadline_ms: u64,
    owner: Option<String>,
    entries: Vec<(String, Vec<u8>)>,
    /// Which bit to flip (modulo the file's bits).
    flip: usize,
    /// Where to cut (modulo the file's length).
    cut: usize,
    extra: u8,
}

fn structured(input: &Structured) {
    let data: Data = input
        .entries
        .iter()
        .map(|(k, v)| (k.clone(), Value::from_bytes(v.clone())))
        .collect();
    let rec = Record {
        deadline_ms: input.deadline_ms,
        owner: input.owner.clone(),
        data,
    };
    let lease = input.lease;
    let bytes = encode(lease, &rec).expect("encodes");
    assert_eq!(decode(lease, &bytes).expect("decodes"), rec);
    let keys = u32::try_from(rec.data.len()).expect("few keys");
    assert_eq!(
        decode_header(lease, &bytes[..HEADER_READ_LEN]).ok(),
        Some((rec.deadline_ms, keys))
    );
    assert!(is_corrupt(&decode(!lease, &bytes)));

    let bit = input.flip % (bytes.len() * 8);
    let mut flipped = bytes.clone();
    flipped[bit / 8] ^= 1 << (bit % 8);
    assert!(is_corrupt(&decode(lease, &flipped)), "bit {bit} flipped");
    let cut = input.cut % bytes.len();
    assert!(is_corrupt(&decode(lease, &bytes[..cut])), "cut at {cut}");
    let mut longer = bytes.clone();
    longer.push(input.extra);
    assert!(is_corrupt(&decode(lease, &longer)), "a byte appended");
}
