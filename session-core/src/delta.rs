//! [`Delta`]: changes on top of a base map, kept beside the loaded map so that neither reading
//! nor writing a session copies it, and which of them are still to be saved.

use std::collections::HashMap;

use crate::snapshot::{Snapshot, ValueRef};
use crate::storage::ChangeSet;
use crate::value::{Data, Value};

/// One changed key: its value (`None`: removed) and whether the change is still to be saved.
#[derive(Clone, Debug)]
struct Change {
    value: Option<Value>,
    pending: bool,
}

/// Changes on top of a base map: with `clear`, nothing of the base shows; then each changed key
/// is set or removed. Each change (and the clear) is either pending, to be written by the next
/// save, or settled, already stored: one map serves both the request's view and the save, so a
/// write records its key once.
#[derive(Clone, Debug, Default)]
pub(crate) struct Delta {
    clear: bool,
    /// The clear is still to be saved.
    clear_pending: bool,
    keys: HashMap<String, Change>,
}

impl Delta {
    /// A delta that hides the whole base and shows `keep` only, all of it pending.
    pub(crate) fn cleared(keep: Data) -> Self {
        Delta {
            clear: true,
            clear_pending: true,
            keys: keep
                .into_iter()
                .map(|(k, v)| {
                    let change = Change {
                        value: Some(v),
                        pending: true,
                    };
                    (k, change)
                })
                .collect(),
        }
    }

    /// Whether a save has something to write (a request changes a handful of keys).
    pub(crate) fn has_pending(&self) -> bool {
        self.clear_pending || self.keys.values().any(|c| c.pending)
    }

    /// Sets `key` to `value`; `pending`: the next save writes it (else it is stored already).
    pub(crate) fn put(&mut self, key: String, value: Value, pending: bool) {
        let value = Some(value);
        self.keys.insert(key, Change { value, pending });
    }

    /// Removes `key`; `pending`: the next save removes it (else it is removed already).
    pub(crate) fn del(&mut self, key: &str, pending: bool) {
        let change = Change {
            value: None,
            pending,
        };
        match self.keys.get_mut(key) {
            Some(slot) => *slot = change,
            None => {
                self.keys.insert(key.to_string(), change);
            }
        }
    }

    /// The value of `key` in `base` with these changes applied.
    pub(crate) fn get<'a>(&'a self, base: &'a Snapshot, key: &str) -> Option<ValueRef<'a>> {
        match self.keys.get(key) {
            Some(change) => change.value.as_ref().map(ValueRef::from),
            None if self.clear => None,
            None => base.get_ref(key),
        }
    }

    /// Every entry of `base` with these changes applied.
    pub(crate) fn iter<'a>(
        &'a self,
        base: &'a Snapshot,
    ) -> impl Iterator<Item = (&'a str, ValueRef<'a>)> {
        let from_base = base
            .iter()
            .filter(move |(k, _)| !self.clear && !self.keys.contains_key(*k));
        self.keys
            .iter()
            .filter_map(|(k, c)| Some((k.as_str(), ValueRef::from(c.value.as_ref()?))))
            .chain(from_base)
    }

    /// The pending changes as a change set for the store.
    pub(crate) fn change_set(&self, only_if_exists: bool) -> ChangeSet {
        let mut set = Data::new();
        let mut remove = Vec::new();
        for (key, change) in self.keys.iter().filter(|(_, c)| c.pending) {
            match &change.value {
                Some(v) => {
                    set.insert(key.clone(), v.clone());
                }
                None => remove.push(key.clone()),
            }
        }
        ChangeSet {
            clear: self.clear_pending,
            remove,
            set,
            only_if_exists,
        }
    }

    /// Every pending change was stored: none is pending any more (the view stays).
    pub(crate) fn saved(&mut self) {
        self.clear_pending = false;
        self.keys.values_mut().for_each(|c| c.pending = false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u32) -> Value {
        Value::encode(&n).expect("encode")
    }

    #[test]
    fn changes_show_over_the_base_and_become_a_change_set() {
        let base_map: Data = [("a".to_string(), v(1)), ("b".to_string(), v(2))].into();
        let base = Snapshot::from(base_map);
        let get = |d: &Delta, k: &str| d.get(&base, k).map(|r| r.to_value());
        let mut d = Delta::default();
        assert!(!d.has_pending());
        d.put("a".into(), v(10), true);
        d.del("b", true);
        d.put("c".into(), v(3), true);
        assert!(d.has_pending());
        assert_eq!(get(&d, "a"), Some(v(10)));
        assert_eq!(get(&d, "b"), None);
        let mut keys: Vec<&str> = d.iter(&base).map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, ["a", "c"]);
        let cs = d.change_set(true);
        assert!(cs.only_if_exists && !cs.clear);
        assert_eq!(cs.remove, ["b"]);
        assert_eq!(cs.set.len(), 2);
        // a settled change shows and is not written; settling a pending one unlists it
        d.put("d".into(), v(4), false);
        assert_eq!(get(&d, "d"), Some(v(4)));
        assert_eq!(d.change_set(true).set.len(), 2);
        d.put("a".into(), v(11), false);
        d.del("b", false);
        let cs = d.change_set(true);
        assert_eq!(cs.set.keys().collect::<Vec<_>>(), ["c"]);
        assert!(cs.remove.is_empty());
        // after a save nothing is pending, the view stays
        d.saved();
        assert!(!d.has_pending());
        assert!(d.change_set(true).set.is_empty());
        assert_eq!(get(&d, "a"), Some(v(11)));
        assert_eq!(get(&d, "b"), None);
        assert_eq!(get(&d, "c"), Some(v(3)));
        d.del("a", true);
        assert_eq!(d.change_set(false).remove, ["a"]);
        let mut cleared = Delta::cleared([("k".to_string(), v(0))].into());
        assert!(cleared.has_pending());
        assert_eq!(get(&cleared, "a"), None);
        assert_eq!(cleared.iter(&base).count(), 1);
        let cs = cleared.change_set(false);
        assert!(cs.clear && cs.set.len() == 1);
        cleared.saved();
        assert!(!cleared.has_pending() && !cleared.change_set(false).clear);
        assert_eq!(get(&cleared, "a"), None, "the base stays hidden");
    }
}
