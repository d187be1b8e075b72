//! The in-memory state of one session during a request: the data as this request sees it, the
//! pending change set, and the flash/temp bookkeeping. Pure: no storage calls here.
//!
//! The loaded map is kept as the driver handed it over (shared, never copied); what this request
//! changes lives beside it in a [`Delta`], so reading a session copies nothing and writing one
//! copies only the changed values.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::id::{LockToken, SessionId};
use crate::meta::{self, ClientInfo, FLASH, META, Reserved, SEEN, TEMP, USER};
use crate::storage::ChangeSet;
use crate::value::{Data, Value};

/// Changes on top of a base map: with `clear`, nothing of the base shows; then `remove` hides
/// base keys and `set` adds or replaces keys. A key is never in both `set` and `remove`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Delta {
    pub clear: bool,
    pub set: Data,
    pub remove: BTreeSet<String>,
}

impl Delta {
    pub(crate) fn is_empty(&self) -> bool {
        !self.clear && self.set.is_empty() && self.remove.is_empty()
    }

    fn put(&mut self, key: String, value: Value) {
        self.remove.remove(&key);
        self.set.insert(key, value);
    }

    fn del(&mut self, key: &str) {
        self.set.remove(key);
        self.remove.insert(key.to_string());
    }

    /// Forgets any change of `key` (it shows as in the base again, unless cleared).
    fn forget(&mut self, key: &str) {
        self.set.remove(key);
        self.remove.remove(key);
    }

    /// The value of `key` in `base` with these changes applied.
    fn get<'a>(&'a self, base: &'a Data, key: &str) -> Option<&'a Value> {
        if let Some(v) = self.set.get(key) {
            return Some(v);
        }
        if self.clear || self.remove.contains(key) {
            return None;
        }
        base.get(key)
    }

    /// Every entry of `base` with these changes applied.
    fn iter<'a>(&'a self, base: &'a Data) -> impl Iterator<Item = (&'a String, &'a Value)> {
        let from_base = base.iter().filter(move |(k, _)| {
            !self.clear && !self.set.contains_key(*k) && !self.remove.contains(*k)
        });
        self.set.iter().chain(from_base)
    }
}

/// Changes made by this request, not yet saved.
pub(crate) type Pending = Delta;

/// A regeneration waiting for the save.
#[derive(Clone, Debug)]
pub(crate) struct Regen {
    /// The id being replaced, if it exists in storage.
    pub old: Option<SessionId>,
    /// Delete it at once rather than retiring it for the grace period.
    pub destroy_old: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    /// Client info passed by the caller.
    pub client: ClientInfo,
    /// Whether the client presented any id text (so a dead cookie must be removed).
    pub client_sent: bool,
    /// The id the client holds, if it parsed; after a save that issued an id, that id.
    pub client_id: Option<SessionId>,
    /// Whether the first access has loaded the session.
    pub loaded: bool,
    /// The current id: `None` until known to be live, or issued at save.
    pub id: Option<SessionId>,
    /// Whether a record exists in storage under `id`.
    pub existed: bool,
    /// The storage deadline of `id` (unix ms) when known.
    pub deadline: Option<u64>,
    /// Every key (user and reserved) as loaded (shared with the driver, never modified).
    base: Arc<Data>,
    /// What this request changed on top of `base` (saved or not): the two together are the
    /// session as this request sees it ([`get`](Self::get), [`entries`](Self::entries)).
    changed: Delta,
    /// Decoded reserved keys (kept in step with the data).
    pub reserved: Reserved,
    /// False only when the data surely holds no flash or temp mark, so the mark lookups can be
    /// skipped (most sessions have none). Set by every write of a mark key; cleared only when
    /// the data is replaced.
    pub marks: bool,
    pub pending: Pending,
    /// Flash keys found at load: removed at save unless kept or set again.
    pub flash_old: BTreeSet<String>,
    pub regen: Option<Regen>,
    /// Records to delete at save (sessions found past their absolute deadline).
    pub discard: Vec<SessionId>,
    /// The request lock of [`Manager::load_locked`](crate::Manager::load_locked).
    pub lock: Option<(SessionId, LockToken)>,
    /// Destroyed in this request (the cookie must go unless a new session is written).
    pub destroyed: bool,
    /// Found destroyed by someone else while writing.
    pub gone: bool,
}

impl State {
    pub(crate) fn new(client_sent: bool, client_id: Option<SessionId>, client: ClientInfo) -> Self {
        State {
            client,
            client_sent,
            client_id,
            loaded: false,
            id: None,
            existed: false,
            deadline: None,
            base: Arc::default(),
            changed: Delta::default(),
            reserved: Reserved::default(),
            marks: false,
            pending: Pending::default(),
            flash_old: BTreeSet::new(),
            regen: None,
            discard: Vec::new(),
            lock: None,
            destroyed: false,
            gone: false,
        }
    }

    /// Forgets everything about the current session: the request continues with a fresh, empty
    /// session without an id.
    pub(crate) fn reset_fresh(&mut self) {
        self.id = None;
        self.existed = false;
        self.deadline = None;
        self.base = Arc::default();
        self.changed = Delta::default();
        self.reserved = Reserved::default();
        self.marks = false;
        self.pending = Pending::default();
        self.flash_old.clear();
        self.regen = None;
    }

    /// Adopts loaded data: flash marks present now are this request's flash data.
    pub(crate) fn adopt(
        &mut self,
        id: SessionId,
        data: Arc<Data>,
        reserved: Reserved,
        deadline: Option<u64>,
    ) {
        self.flash_old.clear();
        self.marks = false;
        for key in data.keys().filter(|k| meta::is_reserved(k)) {
            if let Some(flash) = key.strip_prefix(FLASH) {
                self.flash_old.insert(flash.to_string());
                self.marks = true;
            } else if key.starts_with(TEMP) {
                self.marks = true;
            }
        }
        self.id = Some(id);
        self.existed = true;
        self.deadline = deadline;
        self.base = data;
        self.changed = Delta::default();
        self.reserved = reserved;
    }

    // ----- the view --------------------------------------------------------------------

    /// The value of any key (user or reserved) as this request sees it.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.changed.get(&self.base, key)
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every entry as this request sees it, in no order.
    fn entries(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.changed.iter(&self.base)
    }

    /// Sets `key` as seen by this request without making it a pending write (it is stored
    /// already).
    pub(crate) fn settle(&mut self, key: String, value: Value) {
        self.pending.forget(&key);
        self.changed.put(key, value);
    }

    /// Removes `key` as seen by this request without making it a pending write.
    pub(crate) fn settle_removed(&mut self, key: &str) {
        self.pending.forget(key);
        self.changed.del(key);
    }

    // ----- raw writes ------------------------------------------------------------------

    pub(crate) fn put(&mut self, key: String, value: Value) {
        if is_mark(&key) {
            self.marks = true;
        }
        self.pending.put(key.clone(), value.clone());
        self.changed.put(key, value);
    }

    pub(crate) fn del(&mut self, key: &str) {
        self.pending.del(key);
        self.changed.del(key);
    }

    /// Drops the flash and temp marks of `key` (it becomes a plain value, or goes).
    fn unmark(&mut self, key: &str) {
        if !self.marks {
            self.flash_old.remove(key);
            return;
        }
        let f = format!("{FLASH}{key}");
        if self.contains(&f) {
            self.del(&f);
        }
        let t = format!("{TEMP}{key}");
        if self.contains(&t) {
            self.del(&t);
        }
        self.flash_old.remove(key);
    }

    // ----- user view -------------------------------------------------------------------

    /// The temp deadline of `key`, if it is temp data.
    fn temp_deadline(&self, key: &str) -> Option<u64> {
        if !self.marks {
            return None;
        }
        self.get(&format!("{TEMP}{key}"))
            .and_then(|v| v.decode::<u64>().ok())
    }

    /// The value of user key `key`, hiding expired temp data.
    pub(crate) fn visible(&self, key: &str, now: u64) -> Option<&Value> {
        if meta::is_reserved(key) {
            return None;
        }
        if self.temp_deadline(key).is_some_and(|d| d <= now) {
            return None;
        }
        self.get(key)
    }

    pub(crate) fn user_keys(&self, now: u64) -> Vec<String> {
        let mut keys: Vec<String> = self
            .entries()
            .map(|(k, _)| k)
            .filter(|k| self.visible(k, now).is_some())
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// A plain write of a user key: the value stays until removed (any flash or temp mark goes).
    pub(crate) fn set_plain(&mut self, key: &str, value: Value) {
        self.unmark(key);
        self.put(key.to_string(), value);
    }

    pub(crate) fn remove_user(&mut self, key: &str) {
        self.unmark(key);
        if self.contains(key) || self.existed {
            self.del(key);
        }
    }

    /// Removes every user key (and flash/temp marks); keeps metadata and the login.
    pub(crate) fn clear_user(&mut self) {
        let keep: Data = self
            .entries()
            .filter(|(k, _)| [META, SEEN, USER, meta::RETIRED].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.marks = false;
        self.changed = Delta {
            clear: true,
            set: keep.clone(),
            remove: BTreeSet::new(),
        };
        self.pending = Pending {
            clear: true,
            set: keep,
            remove: BTreeSet::new(),
        };
        self.flash_old.clear();
    }

    // ----- flash -----------------------------------------------------------------------

    pub(crate) fn is_flash(&self, key: &str) -> bool {
        self.marks && self.contains(&format!("{FLASH}{key}"))
    }

    /// Marks existing `key` as flash data for the next load; false if there is no such key.
    pub(crate) fn mark_flash(&mut self, key: &str, mark: String, now: u64) -> bool {
        if self.visible(key, now).is_none() {
            return false;
        }
        let t = format!("{TEMP}{key}");
        if self.contains(&t) {
            self.del(&t);
        }
        if !self.contains(&mark) {
            self.put(mark, flag());
        }
        self.flash_old.remove(key);
        true
    }

    pub(crate) fn set_flash(&mut self, key: &str, mark: String, value: Value, now: u64) {
        self.put(key.to_string(), value);
        self.mark_flash(key, mark, now);
    }

    /// Keeps this request's flash value `key` for one more load; false if it is not flash data.
    pub(crate) fn keep_flash(&mut self, key: &str) -> bool {
        self.is_flash(key) && {
            self.flash_old.remove(key);
            true
        }
    }

    // ----- temp ------------------------------------------------------------------------

    pub(crate) fn mark_temp(&mut self, key: &str, mark: String, deadline: u64, now: u64) -> bool {
        if self.visible(key, now).is_none() {
            return false;
        }
        let f = format!("{FLASH}{key}");
        if self.contains(&f) {
            self.del(&f);
        }
        self.flash_old.remove(key);
        self.put(mark, Value::encode(&deadline).unwrap_or_else(|_| flag()));
        true
    }

    pub(crate) fn is_temp(&self, key: &str) -> bool {
        self.marks && self.contains(&format!("{TEMP}{key}"))
    }

    // ----- save ------------------------------------------------------------------------

    /// Turns this request's end-of-life rules into pending removals: flash values found at load
    /// (not kept, not set again) and temp values past their deadline.
    pub(crate) fn age(&mut self, now: u64) {
        for key in std::mem::take(&mut self.flash_old) {
            if self.is_flash(&key) {
                self.del(&format!("{FLASH}{key}"));
                self.del(&key);
            }
        }
        if !self.marks {
            return;
        }
        let expired: Vec<String> = self
            .entries()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(TEMP)?;
                let deadline = v.decode::<u64>().unwrap_or(0);
                (deadline <= now).then(|| key.to_string())
            })
            .collect();
        for key in expired {
            self.del(&format!("{TEMP}{key}"));
            self.del(&key);
        }
    }

    /// Whether saving would write anything (after [`age`](Self::age)).
    pub(crate) fn has_changes(&self) -> bool {
        !self.pending.is_empty() || self.regen.is_some()
    }

    /// Whether a not-yet-stored session has anything worth creating it for (a user key, flash
    /// or temp data, or a login): metadata alone creates nothing.
    pub(crate) fn has_content(&self) -> bool {
        self.entries()
            .any(|(k, _)| !matches!(k.as_str(), META | SEEN | meta::RETIRED))
    }

    /// The pending changes as a change set.
    pub(crate) fn change_set(&self, only_if_exists: bool) -> ChangeSet {
        ChangeSet {
            clear: self.pending.clear,
            remove: self
                .pending
                .remove
                .iter()
                .filter(|k| !self.pending.set.contains_key(*k))
                .cloned()
                .collect(),
            set: self.pending.set.clone(),
            only_if_exists,
        }
    }

    /// The whole session as a change set that creates it under a new id (minus the retirement
    /// mark of an old id).
    pub(crate) fn full_set(&self) -> ChangeSet {
        let set: Data = self
            .entries()
            .filter(|(k, _)| k.as_str() != meta::RETIRED)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ChangeSet {
            set,
            ..ChangeSet::default()
        }
    }
}

/// Whether `key` is a flash or temp mark.
fn is_mark(key: &str) -> bool {
    meta::is_reserved(key) && (key.starts_with(FLASH) || key.starts_with(TEMP))
}

/// The value of a mark whose presence is all that counts.
fn flag() -> Value {
    Value::from_bytes(vec![0xc3]) // MessagePack `true`
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: u32) -> Value {
        Value::encode(&n).expect("encode")
    }

    fn loaded(data: &[(&str, Value)]) -> State {
        let mut s = State::new(true, None, ClientInfo::default());
        let id = SessionId::generate().expect("rng");
        let d: Data = data
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        s.adopt(id, Arc::new(d), Reserved::default(), None);
        s.loaded = true;
        s
    }

    #[test]
    fn flash_found_at_load_is_readable_then_removed_at_save() {
        let mut s = loaded(&[("msg", v(1)), ("__s.f.msg", flag()), ("plain", v(2))]);
        assert!(s.is_flash("msg"));
        assert_eq!(s.visible("msg", 0), Some(&v(1)));
        assert!(!s.has_changes(), "nothing pending before aging");
        s.age(0);
        assert!(s.has_changes());
        let cs = s.change_set(true);
        assert!(cs.remove.contains(&"msg".to_string()));
        assert!(cs.remove.contains(&"__s.f.msg".to_string()));
        assert!(!cs.remove.contains(&"plain".to_string()));
        assert!(cs.only_if_exists);
    }

    #[test]
    fn kept_or_reset_flash_survives_aging() {
        let mut s = loaded(&[
            ("a", v(1)),
            ("__s.f.a", flag()),
            ("b", v(2)),
            ("__s.f.b", flag()),
        ]);
        assert!(s.keep_flash("a"));
        s.set_flash("b", "__s.f.b".into(), v(3), 0);
        assert!(!s.keep_flash("nope"));
        s.age(0);
        let cs = s.change_set(true);
        assert!(cs.remove.is_empty(), "{:?}", cs.remove);
        assert_eq!(cs.set.get("b"), Some(&v(3)));
    }

    #[test]
    fn flash_set_now_is_not_removed_by_this_save() {
        let mut s = loaded(&[]);
        s.set_flash("m", "__s.f.m".into(), v(9), 0);
        s.age(0);
        let cs = s.change_set(false);
        assert_eq!(cs.set.get("m"), Some(&v(9)));
        assert!(cs.set.contains_key("__s.f.m"));
        assert!(cs.remove.is_empty());
    }

    #[test]
    fn plain_set_unmarks_and_remove_drops_marks() {
        let mut s = loaded(&[
            ("a", v(1)),
            ("__s.f.a", flag()),
            ("t", v(1)),
            ("__s.t.t", v(5)),
        ]);
        s.set_plain("a", v(2));
        s.remove_user("t");
        s.age(0);
        let cs = s.change_set(true);
        assert_eq!(cs.set.get("a"), Some(&v(2)));
        for k in ["__s.f.a", "__s.t.t", "t"] {
            assert!(cs.remove.contains(&k.to_string()), "{k} not removed");
        }
        assert!(!cs.remove.contains(&"a".to_string()));
    }

    #[test]
    fn temp_is_hidden_after_its_deadline_and_removed_at_save() {
        let mut s = loaded(&[("t", v(1)), ("__s.t.t", Value::encode(&100u64).expect("e"))]);
        assert!(s.is_temp("t"));
        assert_eq!(s.visible("t", 99), Some(&v(1)));
        assert_eq!(s.visible("t", 100), None);
        assert_eq!(s.user_keys(99), vec!["t".to_string()]);
        assert!(s.user_keys(100).is_empty());
        s.age(99);
        assert!(!s.has_changes(), "not expired yet");
        s.age(100);
        let cs = s.change_set(true);
        assert!(cs.remove.contains(&"t".to_string()) && cs.remove.contains(&"__s.t.t".to_string()));
    }

    #[test]
    fn reserved_keys_are_hidden_and_clear_keeps_them() {
        let mut s = loaded(&[("a", v(1)), (META, v(0)), (USER, v(0)), ("__s.f.a", flag())]);
        assert_eq!(s.user_keys(0), vec!["a".to_string()]);
        assert_eq!(s.visible(META, 0), None);
        s.clear_user();
        assert!(s.user_keys(0).is_empty());
        let cs = s.change_set(true);
        assert!(cs.clear);
        assert!(cs.set.contains_key(META) && cs.set.contains_key(USER));
        assert!(!cs.set.contains_key("__s.f.a"));
        assert!(s.has_content(), "the login counts as content");
    }

    #[test]
    fn metadata_alone_is_not_content() {
        let mut s = State::new(false, None, ClientInfo::default());
        s.put(META.into(), v(0));
        s.put(SEEN.into(), v(0));
        assert!(!s.has_content());
        s.put("x".into(), v(1));
        assert!(s.has_content());
        let full = s.full_set();
        assert_eq!(full.set.len(), 3);
        assert!(!full.only_if_exists);
    }

    #[test]
    fn the_loaded_map_is_shared_and_never_modified() {
        let base: Arc<Data> = Arc::new([("a".to_string(), v(1)), ("b".to_string(), v(2))].into());
        let mut s = State::new(true, None, ClientInfo::default());
        s.adopt(
            SessionId::generate().expect("rng"),
            base.clone(),
            Reserved::default(),
            None,
        );
        s.set_plain("a", v(10));
        s.remove_user("b");
        s.set_plain("c", v(3));
        assert_eq!(s.get("a"), Some(&v(10)));
        assert_eq!(s.get("b"), None);
        assert_eq!(s.user_keys(0), vec!["a".to_string(), "c".to_string()]);
        // a save resets the pending changes; the view keeps them
        s.pending = Pending::default();
        assert!(!s.has_changes());
        assert_eq!(s.get("a"), Some(&v(10)));
        assert_eq!(s.get("b"), None);
        assert_eq!(s.get("c"), Some(&v(3)));
        assert_eq!(s.full_set().set.len(), 2);
        // the driver's map is untouched and still shared
        assert!(Arc::ptr_eq(&s.base, &base));
        assert_eq!(base.get("a"), Some(&v(1)));
        assert_eq!(base.get("b"), Some(&v(2)));
        // a change stored by a single-key update is seen without becoming pending
        s.settle("b".into(), v(20));
        s.settle_removed("c");
        assert!(!s.has_changes());
        assert_eq!(s.get("b"), Some(&v(20)));
        assert_eq!(s.get("c"), None);
        // clearing hides the base entirely
        s.clear_user();
        assert!(s.user_keys(0).is_empty());
        assert_eq!(base.len(), 2);
    }

    #[test]
    fn mark_on_missing_key_is_false() {
        let mut s = loaded(&[]);
        assert!(!s.mark_flash("x", "__s.f.x".into(), 0));
        assert!(!s.mark_temp("x", "__s.t.x".into(), 10, 0));
        assert!(!s.has_changes());
    }

    #[test]
    fn marks_added_after_a_load_without_marks_are_seen() {
        let mut s = loaded(&[("a", v(1)), ("b", v(2))]);
        assert!(!s.marks, "no mark loaded");
        assert!(!s.is_flash("a") && !s.is_temp("b"));
        assert!(s.mark_flash("a", "__s.f.a".into(), 0));
        assert!(s.mark_temp("b", "__s.t.b".into(), 10, 0));
        assert!(s.is_flash("a"));
        assert!(s.is_temp("b"));
        assert_eq!(s.visible("b", 9), Some(&v(2)));
        assert_eq!(s.visible("b", 10), None, "temp deadline honoured");
        s.set_plain("a", v(3));
        assert!(!s.is_flash("a"), "a plain write drops the mark");
        s.age(10);
        assert!(s.change_set(true).remove.contains(&"b".to_string()));
    }
}
