//! The owner index: owner -> the session ids bound to it, each with its binding stamp.
//!
//! The reverse direction (session -> owner) is the [`Binding`] inside the session record, so it
//! dies with the session. Entries here are only hints: every lookup checks them against the
//! record and prunes those whose record is gone, expired or bound elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use session_core::SessionId;

use crate::record::Binding;

#[derive(Default)]
struct Map {
    by_owner: HashMap<Arc<str>, HashMap<SessionId, u64>>,
    /// Number of (owner, id) entries, to decide when a full sweep is due.
    total: usize,
}

/// The owner index. A plain mutex: every critical section is a few hash map operations and
/// never calls into moka or awaits, so it is never held long.
#[derive(Default)]
pub(crate) struct OwnerIndex {
    map: Mutex<Map>,
}

impl OwnerIndex {
    fn lock(&self) -> MutexGuard<'_, Map> {
        // No critical section can panic half-way, so a poisoned map is still consistent.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `id` is bound by `binding`.
    pub(crate) fn bind(&self, id: &SessionId, binding: &Binding) {
        let mut map = self.lock();
        let set = map.by_owner.entry(binding.owner.clone()).or_default();
        let added = set.insert(id.clone(), binding.stamp).is_none();
        if added {
            map.total += 1;
        }
    }

    /// Removes the entry of `id` under `binding.owner` if it is still this very binding.
    pub(crate) fn unbind(&self, id: &SessionId, binding: &Binding) {
        let mut map = self.lock();
        let Some(set) = map.by_owner.get_mut(&binding.owner) else {
            return;
        };
        if set.get(id) != Some(&binding.stamp) {
            return;
        }
        set.remove(id);
        let emptied = set.is_empty();
        if emptied {
            map.by_owner.remove(&binding.owner);
        }
        map.total -= 1;
    }

    /// The entries of one owner, as bindings to check.
    pub(crate) fn of(&self, owner: &str) -> Vec<(SessionId, Binding)> {
        let map = self.lock();
        let Some((owner, set)) = map.by_owner.get_key_value(owner) else {
            return Vec::new();
        };
        set.iter()
            .map(|(id, &stamp)| {
                (
                    id.clone(),
                    Binding {
                        owner: owner.clone(),
                        stamp,
                    },
                )
            })
            .collect()
    }

    /// Every entry, as bindings to check.
    pub(crate) fn all(&self) -> Vec<(SessionId, Binding)> {
        let map = self.lock();
        map.by_owner
            .iter()
            .flat_map(|(owner, set)| {
                set.iter().map(move |(id, &stamp)| {
                    (
                        id.clone(),
                        Binding {
                            owner: owner.clone(),
                            stamp,
                        },
                    )
                })
            })
            .collect()
    }

    /// Number of (owner, id) entries.
    pub(crate) fn len(&self) -> usize {
        self.lock().total
    }

    /// Number of owners with at least one entry.
    #[cfg(test)]
    pub(crate) fn owners(&self) -> usize {
        self.lock().by_owner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(owner: &str, stamp: u64) -> Binding {
        Binding {
            owner: owner.into(),
            stamp,
        }
    }

    #[test]
    fn unbind_only_removes_the_same_binding() {
        let index = OwnerIndex::default();
        let id = SessionId::generate().expect("rng");
        index.bind(&id, &binding("ada", 1));
        index.unbind(&id, &binding("ada", 2));
        assert_eq!(index.len(), 1, "a stale stamp removed a newer binding");
        index.bind(&id, &binding("ada", 3));
        assert_eq!(index.len(), 1, "rebinding counted twice");
        index.unbind(&id, &binding("ada", 3));
        assert_eq!(index.len(), 0);
        assert_eq!(index.owners(), 0, "an empty owner set was kept");
    }
}
