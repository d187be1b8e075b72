//! The check of the `sled_merge` fuzz target (and of its regression test): the sled driver's
//! write fast path, which parses a stored record in place and merges a change set into it
//! without decoding it (`src/merge.rs`), against the shared codec's general path.
//!
//! The input's first byte `n` says how many of the following bytes make the change set and the
//! new deadline (`arbitrary`); the rest is the stored record. Checked:
//!
//! * the fast path takes exactly the records the codec decodes in the current layout (it defers
//!   everything else to the general path, which reports the corrupt ones);
//! * where it takes one, its bytes are exactly the codec's encoding of the record decoded, given
//!   the deadline, and changed the general way (clear, then remove, then set), and it reports a
//!   change exactly when the general way changes something.

use arbitrary::{Arbitrary, Unstructured};
use session_core::driver::record::{MAGIC, Record, VERSION};
use session_core::driver::{ChangeSet, Data, Value};
use session_sled::fuzzing::merge;

#[derive(Arbitrary, Debug)]
struct Changes {
    deadline: Option<u64>,
    clear: bool,
    remove: Vec<String>,
    set: Vec<(String, Vec<u8>)>,
}

/// Runs the check on one input.
pub fn check(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (head, stored) = rest.split_at(usize::from(n).min(rest.len()));
    let Ok(changes) = Changes::arbitrary_take_rest(Unstructured::new(head)) else {
        return;
    };
    let set: Data = changes
        .set
        .iter()
        .map(|(k, v)| (k.clone(), Value::from_bytes(v.clone())))
        .collect();
    let change_set = ChangeSet {
        clear: changes.clear,
        remove: changes.remove.clone(),
        set,
        only_if_exists: false,
    };

    let general = Record::decode(stored, "fuzz");
    let current = stored.starts_with(&MAGIC) && stored.get(4) == Some(&VERSION);
    let unchanged = merge(stored, None, &ChangeSet::default());
    assert_eq!(
        unchanged.is_some(),
        current && general.is_ok(),
        "the fast path and the codec disagree on what a current record is: {general:?}"
    );
    let Ok(mut want) = general else {
        assert!(merge(stored, changes.deadline, &change_set).is_none());
        return;
    };
    if let Some((changed, bytes)) = unchanged {
        assert!(!changed);
        assert_eq!(
            bytes,
            want.encode().expect("encodes"),
            "not the codec's bytes"
        );
    }
    let Some((changed, bytes)) = merge(stored, changes.deadline, &change_set) else {
        assert!(!current, "a current record was refused after a change");
        return;
    };
    if let Some(d) = changes.deadline {
        want.deadline_ms = d;
    }
    let mut want_changed = change_set.clear || !change_set.set.is_empty();
    if change_set.clear {
        want.data.clear();
    }
    for key in &change_set.remove {
        want_changed |= want.data.remove(key).is_some();
    }
    want.data.extend(change_set.set.clone());
    assert_eq!(changed, want_changed, "the change is reported wrong");
    assert_eq!(
        bytes,
        want.encode().expect("encodes"),
        "not the codec's bytes"
    );
    assert_eq!(Record::decode(&bytes, "fuzz").expect("decodes"), want);
}
