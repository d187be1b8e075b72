//! The in-memory state of one session during a request: the data as this request sees it, the
//! pending change set, the flash/temp bookkeeping, and what the client holds. Pure: no storage
//! calls here.
//!
//! Every change of the state is a named transition of [`State`], whose fields are private to this
//! module and its two children: `state/lifecycle.rs` (regeneration, login, destroy, the locked
//! single-key write) and `state/save.rs` (everything a save does to the state). The session
//! layer (`session.rs`) runs the storage calls and says which transition their result calls for.
//!
//! The loaded map is kept as the driver handed it over (shared, never copied); what this request
//! changes lives beside it in a [`Delta`], so reading a session copies nothing and writing one
//! copies only the changed values.

use std::collections::BTreeSet;

use crate::delta::Delta;
use crate::expiry::Timing;
use crate::id::{IncomingId, LockToken, SessionId};
use crate::meta::{ClientInfo, SessionMeta};
use crate::reserved::{self, FLASH, Reserved, TEMP, flag};
use crate::snapshot::{Snapshot, ValueRef};
use crate::value::{Data, Value};

mod lifecycle;
mod save;

/// A regeneration waiting for the save.
#[derive(Clone, Debug)]
pub(crate) struct Regen {
    /// The id being replaced, if it exists in storage.
    pub old: Option<SessionId>,
    /// Delete it at once rather than retiring it for the grace period.
    pub destroy_old: bool,
}

/// One request's session in memory: what the client holds, the session as loaded plus this
/// request's changes, and what the next save must do.
#[derive(Debug)]
pub(crate) struct State {
    /// Client info passed by the caller.
    client: ClientInfo,
    /// What the client holds: the id the request brought, then what each save told the client
    /// (a new id, or nothing after a removal). Anything but `Absent` is a cookie that must be
    /// removed if no session is stored under it.
    cookie: IncomingId,
    /// Whether the first access has loaded the session.
    loaded: bool,
    /// The current id: `None` until known to be live, or issued at save.
    id: Option<SessionId>,
    /// Whether a record exists in storage under `id`.
    existed: bool,
    /// The storage deadline of `id` (unix ms) when known.
    deadline: Option<u64>,
    /// Every key (user and reserved) as loaded (shared with the driver, never modified).
    base: Snapshot,
    /// What this request changed on top of `base`, each change pending (what the next save
    /// writes) or settled: the two together are the session as this request sees it
    /// ([`get`](Self::get), [`entries`](Self::entries)).
    changed: Delta,
    /// Decoded reserved keys (kept in step with the data).
    reserved: Reserved,
    /// The owner the stored record of `id` has (as loaded, then as last written): what the
    /// owner index holds for it. A save that changes the owner compares against it.
    stored_user: Option<String>,
    /// False only when the data surely holds no flash or temp mark, so the mark lookups can be
    /// skipped (most sessions have none). Set by every write of a mark key; cleared only when
    /// the data is replaced.
    marks: bool,
    /// Flash keys found at load: removed at save unless kept or set again.
    flash_old: BTreeSet<String>,
    /// A regeneration waiting for the save.
    regen: Option<Regen>,
    /// Records to delete at save (sessions found past their absolute deadline).
    discard: Vec<SessionId>,
    /// The request lock of [`Manager::load_locked`](crate::Manager::load_locked).
    lock: Option<(SessionId, LockToken)>,
    /// Destroyed in this request (the cookie must go unless a new session is written).
    destroyed: bool,
    /// Found destroyed by someone else while writing.
    gone: bool,
}

impl State {
    // ----- construction and loading -----------------------------------------------------

    /// The state of a request that brought `cookie`, before any access.
    pub(crate) fn new(cookie: IncomingId, client: ClientInfo) -> Self {
        State {
            client,
            cookie,
            loaded: false,
            id: None,
            existed: false,
            deadline: None,
            base: Snapshot::default(),
            changed: Delta::default(),
            reserved: Reserved::default(),
            stored_user: None,
            marks: false,
            flash_old: BTreeSet::new(),
            regen: None,
            discard: Vec::new(),
            lock: None,
            destroyed: false,
            gone: false,
        }
    }

    /// Whether the first access has loaded the session.
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// The valid id the client holds, the one to load.
    pub(crate) fn cookie_id(&self) -> Option<SessionId> {
        self.cookie.id().cloned()
    }

    /// Adopts loaded data and its reserved keys (as [`Reserved::read_snapshot`] read them from
    /// `data`): flash marks present now are this request's flash data.
    pub(crate) fn adopt(
        &mut self,
        id: SessionId,
        data: Snapshot,
        reserved: Reserved,
        deadline: Option<u64>,
    ) {
        self.flash_old.clear();
        // the reserved read noticed whether there are marks: most sessions have none
        self.marks = reserved.marks;
        if reserved.marks {
            for (key, _) in data.iter_prefixed(FLASH) {
                if let Some(flash) = key.strip_prefix(FLASH) {
                    self.flash_old.insert(flash.to_string());
                }
            }
        }
        self.id = Some(id);
        self.existed = true;
        self.deadline = deadline;
        self.base = data;
        self.changed = Delta::default();
        self.stored_user = reserved.user.clone();
        self.reserved = reserved;
    }

    /// A record found past its absolute deadline: not adopted, deleted at save.
    pub(crate) fn discard_at_save(&mut self, id: SessionId) {
        self.discard.push(id);
    }

    /// The first access is done (whatever it found).
    pub(crate) fn set_loaded(&mut self) {
        self.loaded = true;
    }

    // ----- the request lock ----------------------------------------------------------------

    /// Holds the request lock of `id` until the save.
    pub(crate) fn hold_lock(&mut self, id: SessionId, token: LockToken) {
        self.lock = Some((id, token));
    }

    /// Hands the request lock over for release.
    pub(crate) fn take_lock(&mut self) -> Option<(SessionId, LockToken)> {
        self.lock.take()
    }

    /// Whether this request holds the lock of `id`.
    pub(crate) fn holds_lock(&self, id: &SessionId) -> bool {
        matches!(&self.lock, Some((locked, _)) if locked == id)
    }

    /// Whether a lock has something stored to protect: a live record, or an old id that a
    /// regeneration will delete or retire. A new session's id is known to nobody else.
    pub(crate) fn guards_stored(&self) -> bool {
        self.existed || self.regen.is_some()
    }

    // ----- introspection -------------------------------------------------------------------

    /// The current id, once known.
    pub(crate) fn id(&self) -> Option<&SessionId> {
        self.id.as_ref()
    }

    /// The id of the record this request works on, if one is stored.
    pub(crate) fn stored_id(&self) -> Option<SessionId> {
        self.existed.then(|| self.id.clone()).flatten()
    }

    /// The client info the session was loaded with.
    pub(crate) fn client(&self) -> &ClientInfo {
        &self.client
    }

    /// The public metadata; `None` for a session that is not stored yet ([`Error::Corrupt`]
    /// if the stored metadata does not decode).
    ///
    /// [`Error::Corrupt`]: crate::Error::Corrupt
    pub(crate) fn meta(&self) -> crate::error::Result<Option<SessionMeta>> {
        self.reserved.public()
    }

    /// The owner after a login.
    pub(crate) fn user(&self) -> Option<&str> {
        self.reserved.user.as_deref()
    }

    /// Whether a save has something to write: a change, a regeneration, or flash data to retire.
    pub(crate) fn is_modified(&self) -> bool {
        self.has_changes() || !self.flash_old.is_empty()
    }

    /// The TTL of a write at `now` (see [`Timing::write_ttl`]); `None` when the session is past
    /// its absolute deadline or its grace period.
    pub(crate) fn write_ttl(&self, timing: &Timing, now: u64) -> crate::error::Result<Option<u64>> {
        timing.write_ttl(&self.reserved, now)
    }

    /// Whether a read-only request should slide the expiry to `now + ttl` (see
    /// [`Timing::touch_due`]), against this session's idle TTL.
    pub(crate) fn touch_due(&self, timing: &Timing, ttl: u64, now: u64) -> bool {
        timing.touch_due(self.deadline, ttl, timing.idle_of(&self.reserved), now)
    }

    /// The session's own idle TTL in ms, if it has one.
    pub(crate) fn own_ttl(&self) -> Option<u64> {
        self.reserved.ttl
    }

    /// Gives the session its own idle TTL (ms), or with `None` the manager's again; written at
    /// the next save (which writes with it). Nothing to write when it does not change.
    pub(crate) fn set_own_ttl(&mut self, ttl: Option<u64>) -> crate::error::Result<()> {
        if ttl == self.reserved.ttl {
            return Ok(());
        }
        match ttl {
            Some(ms) => self.put(reserved::TTL.into(), reserved::encode(&ms)?),
            None => self.del(reserved::TTL),
        }
        self.reserved.ttl = ttl;
        Ok(())
    }

    /// When the stored session expires (unix ms), if it is stored and its deadline is known.
    pub(crate) fn stored_deadline(&self) -> Option<u64> {
        if self.existed { self.deadline } else { None }
    }

    /// Whether this is an old id retired by a regeneration (it is never touched).
    pub(crate) fn is_retired(&self) -> bool {
        self.reserved.retired.is_some()
    }

    // ----- the view --------------------------------------------------------------------

    /// The value of any key (user or reserved) as this request sees it.
    pub(crate) fn get(&self, key: &str) -> Option<ValueRef<'_>> {
        self.changed.get(&self.base, key)
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every entry as this request sees it, in no order.
    fn entries(&self) -> impl Iterator<Item = (&str, ValueRef<'_>)> {
        self.changed.iter(&self.base)
    }

    /// Sets `key` as seen by this request without making it a pending write (it is stored
    /// already).
    fn settle(&mut self, key: String, value: Value) {
        self.changed.put(key, value, false);
    }

    /// Removes `key` as seen by this request without making it a pending write.
    fn settle_removed(&mut self, key: &str) {
        self.changed.del(key, false);
    }

    // ----- raw writes ------------------------------------------------------------------

    fn put(&mut self, key: String, value: Value) {
        if reserved::is_mark(&key) {
            self.marks = true;
        }
        self.changed.put(key, value, true);
    }

    fn del(&mut self, key: &str) {
        self.changed.del(key, true);
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
    pub(crate) fn visible(&self, key: &str, now: u64) -> Option<ValueRef<'_>> {
        self.visible_at(key, || now)
    }

    /// [`visible`](Self::visible) with the clock read only if it matters: when `key` is temp
    /// data (most reads are of sessions without any, and need no clock at all).
    pub(crate) fn visible_at(&self, key: &str, now: impl FnOnce() -> u64) -> Option<ValueRef<'_>> {
        if reserved::is_reserved(key) {
            return None;
        }
        if self.temp_deadline(key).is_some_and(|d| d <= now()) {
            return None;
        }
        self.get(key)
    }

    pub(crate) fn user_keys(&self, now: u64) -> Vec<String> {
        let mut keys: Vec<String> = self
            .entries()
            .map(|(k, _)| k)
            .filter(|k| self.visible(k, now).is_some())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    /// The user entries as this request sees them (expired temp data hidden) that pass `keep`.
    pub(crate) fn user_entries(&self, now: u64, keep: impl Fn(&str) -> bool) -> Data {
        self.entries()
            .filter(|(k, _)| keep(k))
            .filter_map(|(k, _)| Some((k.to_string(), self.visible(k, now)?.to_value())))
            .collect()
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
            .filter(|(k, _)| reserved::survives_clear(k))
            .map(|(k, v)| (k.to_string(), v.to_value()))
            .collect();
        self.marks = false;
        self.changed = Delta::cleared(keep);
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

    /// Marks every one of `keys` (with their mark keys) as flash data, or, if one of them has
    /// no value, none of them (CodeIgniter's `markAsFlashdata(array)`); false in that case.
    pub(crate) fn mark_many_flash(&mut self, keys: Vec<(String, String)>, now: u64) -> bool {
        if keys.iter().any(|(k, _)| self.visible(k, now).is_none()) {
            return false;
        }
        for (key, mark) in keys {
            self.mark_flash(&key, mark, now);
        }
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

    /// Marks every one of `keys` (key, mark key, deadline) as temp data, or, if one of them has
    /// no value, none of them (CodeIgniter's `markAsTempdata(array)`); false in that case.
    pub(crate) fn mark_many_temp(&mut self, keys: Vec<(String, String, u64)>, now: u64) -> bool {
        if keys.iter().any(|(k, _, _)| self.visible(k, now).is_none()) {
            return false;
        }
        for (key, mark, deadline) in keys {
            self.mark_temp(&key, mark, deadline, now);
        }
        true
    }

    pub(crate) fn is_temp(&self, key: &str) -> bool {
        self.marks && self.contains(&format!("{TEMP}{key}"))
    }

    /// Forgets everything about the current session: the request continues with a fresh, empty
    /// session without an id.
    fn reset_fresh(&mut self) {
        self.id = None;
        self.existed = false;
        self.deadline = None;
        self.base = Snapshot::default();
        self.changed = Delta::default();
        self.reserved = Reserved::default();
        self.stored_user = None;
        self.marks = false;
        self.flash_old.clear();
        self.regen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reserved::{META, SEEN, USER};

    pub(super) fn v(n: u32) -> Value {
        Value::encode(&n).expect("encode")
    }

    /// An owned copy of a view's value, to compare.
    pub(super) fn val(r: Option<ValueRef<'_>>) -> Option<Value> {
        r.map(|r| r.to_value())
    }

    pub(super) fn loaded(data: &[(&str, Value)]) -> State {
        let mut s = State::new(IncomingId::Invalid, ClientInfo::default());
        let id = SessionId::generate().expect("rng");
        let d: Data = data
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let snapshot = Snapshot::from(d);
        let reserved = Reserved::read_snapshot(&snapshot, "test").expect("reserved keys read");
        s.adopt(id, snapshot, reserved, None);
        s.loaded = true;
        s
    }

    #[test]
    fn flash_found_at_load_is_readable_then_removed_at_save() {
        let mut s = loaded(&[("msg", v(1)), ("__s.f.msg", flag()), ("plain", v(2))]);
        assert!(s.is_flash("msg"));
        assert_eq!(val(s.visible("msg", 0)), Some(v(1)));
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
        assert_eq!(val(s.visible("t", 99)), Some(v(1)));
        assert_eq!(val(s.visible("t", 100)), None);
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
        let user = reserved::encode(&"u1").expect("encode");
        let mut s = loaded(&[("a", v(1)), (META, v(0)), (USER, user), ("__s.f.a", flag())]);
        assert_eq!(s.user_keys(0), vec!["a".to_string()]);
        assert_eq!(val(s.visible(META, 0)), None);
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
        let mut s = State::new(IncomingId::Absent, ClientInfo::default());
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
        let map: Data = [("a".to_string(), v(1)), ("b".to_string(), v(2))].into();
        let base = Snapshot::from(map);
        let mut s = State::new(IncomingId::Invalid, ClientInfo::default());
        s.adopt(
            SessionId::generate().expect("rng"),
            base.clone(),
            Reserved::default(),
            None,
        );
        s.set_plain("a", v(10));
        s.remove_user("b");
        s.set_plain("c", v(3));
        assert_eq!(val(s.get("a")), Some(v(10)));
        assert_eq!(val(s.get("b")), None);
        assert_eq!(s.user_keys(0), vec!["a".to_string(), "c".to_string()]);
        // a save resets the pending changes; the view keeps them
        s.changed.saved();
        assert!(!s.has_changes());
        assert_eq!(val(s.get("a")), Some(v(10)));
        assert_eq!(val(s.get("b")), None);
        assert_eq!(val(s.get("c")), Some(v(3)));
        assert_eq!(s.full_set().set.len(), 2);
        // the driver's map is untouched and still shared
        assert_eq!(s.base, base);
        assert_eq!(base.get("a"), Some(v(1)));
        assert_eq!(base.get("b"), Some(v(2)));
        // a change stored by a single-key update is seen without becoming pending
        s.settle("b".into(), v(20));
        s.settle_removed("c");
        assert!(!s.has_changes());
        assert_eq!(val(s.get("b")), Some(v(20)));
        assert_eq!(val(s.get("c")), None);
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
        assert_eq!(val(s.visible("b", 9)), Some(v(2)));
        assert_eq!(val(s.visible("b", 10)), None, "temp deadline honoured");
        s.set_plain("a", v(3));
        assert!(!s.is_flash("a"), "a plain write drops the mark");
        s.age(10);
        assert!(s.change_set(true).remove.contains(&"b".to_string()));
    }
}
