//! [`Delta`]: changes on top of a base map, kept beside the loaded map so that neither reading
//! nor writing a session copies it.

use std::collections::BTreeSet;

use crate::snapshot::{Snapshot, ValueRef};
use crate::storage::ChangeSet;
use crate::value::{Data, Value};

/// Changes on top of a base map: with `clear`, nothing of the base shows; then `remove` hides
/// base keys and `set` adds or replaces keys. A key is never in both `set` and `remove`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Delta {
    clear: bool,
    set: Data,
    remove: BTreeSet<String>,
}

impl Delta {
    /// A delta that hides the whole base and shows `keep` only.
    pub(crate) fn cleared(keep: Data) -> Self {
        Delta {
            clear: true,
            set: keep,
            remove: BTreeSet::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.clear && self.set.is_empty() && self.remove.is_empty()
    }

    /// Sets `key` to `value`.
    pub(crate) fn put(&mut self, key: String, value: Value) {
        self.remove.remove(&key);
        self.set.insert(key, value);
    }

    /// Removes `key`.
    pub(crate) fn del(&mut self, key: &str) {
        self.set.remove(key);
        self.remove.insert(key.to_string());
    }

    /// Forgets any change of `key` (it shows as in the base again, unless cleared).
    pub(crate) fn forget(&mut self, key: &str) {
        self.set.remove(key);
        self.remove.remove(key);
    }

    /// The value of `key` in `base` with these changes applied.
    pub(crate) fn get<'a>(&'a self, base: &'a Snapshot, key: &str) -> Option<ValueRef<'a>> {
        if let Some(v) = self.set.get(key) {
            return Some(ValueRef::from(v));
        }
        if self.clear || self.remove.contains(key) {
            return None;
        }
        base.get_ref(key)
    }

    /// Every entry of `base` with these changes applied.
    pub(crate) fn iter<'a>(
        &'a self,
        base: &'a Snapshot,
    ) -> impl Iterator<Item = (&'a str, ValueRef<'a>)> {
        let from_base = base.iter().filter(move |(k, _)| {
            !self.clear && !self.set.contains_key(*k) && !self.remove.contains(*k)
        });
        self.set
            .iter()
            .map(|(k, v)| (k.as_str(), ValueRef::from(v)))
            .chain(from_base)
    }

    /// These changes as a change set for the store.
    pub(crate) fn change_set(&self, only_if_exists: bool) -> ChangeSet {
        ChangeSet {
            clear: self.clear,
            remove: self
                .remove
                .iter()
                .filter(|k| !self.set.contains_key(*k))
                .cloned()
                .collect(),
            set: self.set.clone(),
            only_if_exists,
        }
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
        assert!(d.is_empty());
        d.put("a".into(), v(10));
        d.del("b");
        d.put("c".into(), v(3));
        assert_eq!(get(&d, "a"), Some(v(10)));
        assert_eq!(get(&d, "b"), None);
        let mut keys: Vec<&str> = d.iter(&base).map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, ["a", "c"]);
        let cs = d.change_set(true);
        assert!(cs.only_if_exists && !cs.clear);
        assert_eq!(cs.remove, ["b"]);
        assert_eq!(cs.set.len(), 2);
        d.forget("b");
        assert_eq!(get(&d, "b"), Some(v(2)), "forgotten: the base shows");
        let cleared = Delta::cleared([("k".to_string(), v(0))].into());
        assert_eq!(get(&cleared, "a"), None);
        assert_eq!(cleared.iter(&base).count(), 1);
        assert!(cleared.change_set(false).clear);
    }
}
