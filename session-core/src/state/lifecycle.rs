//! The lifecycle transitions of [`State`]: regeneration, login, destroy, and the single-key
//! write of [`Session::update`](crate::Session::update) under the lease lock.

use super::{Regen, State};
use crate::error::Result;
use crate::id::SessionId;
use crate::reserved::{self, FLASH, META, TEMP, USER};
use crate::storage::ChangeSet;
use crate::value::{Data, Value};

impl State {
    /// Schedules a regeneration (keeping the first old id if one is already scheduled): the
    /// session has no id until the save issues one.
    pub(crate) fn regenerate(&mut self, destroy_old: bool) {
        match &mut self.regen {
            Some(r) => r.destroy_old |= destroy_old,
            None => {
                let old = if self.existed { self.id.clone() } else { None };
                self.regen = Some(Regen { old, destroy_old });
            }
        }
        self.id = None;
        self.existed = false;
        self.deadline = None;
    }

    /// Logs `user` in at `now`: the login time and the owner are written, and the id is
    /// regenerated, destroying the old one.
    pub(crate) fn log_in(&mut self, user: &str, now: u64) -> Result<()> {
        self.set_owner(Some(user), now)?;
        self.regenerate(true);
        Ok(())
    }

    /// Records `user` as the owner at `now` (the login time too), or, with `None`, removes the
    /// owner and the login time; the id stays. A no-op for `None` on a session without owner.
    pub(crate) fn set_owner(&mut self, user: Option<&str>, now: u64) -> Result<()> {
        if user.is_none() && self.reserved.user.is_none() {
            return Ok(());
        }
        let mut m = self.meta_or_new(now)?;
        match user {
            Some(user) => {
                m.auth = Some(now);
                self.put(USER.into(), reserved::encode(&user)?);
            }
            None => {
                m.auth = None;
                self.del(USER);
            }
        }
        self.reserved.user = user.map(str::to_string);
        self.put(META.into(), reserved::encode(&m)?);
        self.reserved.set_meta(m);
        Ok(())
    }

    /// The owner the stored record has (what the owner index holds for it).
    pub(crate) fn stored_owner(&self) -> Option<&str> {
        self.stored_user.as_deref()
    }

    /// After a write of the whole state: the owner it stored, as `(before, now)` when it
    /// changed. From now on the stored owner is the current one.
    pub(crate) fn take_owner_change(&mut self) -> Option<(Option<String>, Option<String>)> {
        if self.stored_user == self.reserved.user {
            return None;
        }
        let now = self.reserved.user.clone();
        Some((std::mem::replace(&mut self.stored_user, now.clone()), now))
    }

    /// The stored records a destroy must delete: the current id, and the old id of a pending
    /// regeneration.
    pub(crate) fn stored_ids(&self) -> Vec<SessionId> {
        let current = self.stored_id();
        let old = self.regen.as_ref().and_then(|r| r.old.clone());
        current.into_iter().chain(old).collect()
    }

    /// Destroyed (its records deleted): the request goes on with a fresh, empty session, and
    /// the cookie goes unless a new session is written.
    pub(crate) fn mark_destroyed(&mut self) {
        self.reset_fresh();
        self.destroyed = true;
    }

    // ----- a single-key write under the lock (`Session::update`) ------------------------

    /// The change that writes `value` to stored key `key` and drops its flash or temp mark,
    /// only if the session still exists.
    pub(crate) fn single_write(&self, key: &str, value: Value) -> Result<ChangeSet> {
        let mut set = Data::new();
        set.insert(key.to_string(), value);
        let mut remove = Vec::new();
        for mark in [reserved::flash_mark(key)?, reserved::temp_mark(key)?] {
            if self.contains(&mark) {
                remove.push(mark);
            }
        }
        Ok(ChangeSet {
            set,
            remove,
            clear: false,
            only_if_exists: true,
        })
    }

    /// A [`single_write`](Self::single_write) was stored with deadline `deadline`: this request
    /// sees it, and it is not written again at save.
    pub(crate) fn settle_single_write(&mut self, key: &str, value: Value, deadline: u64) {
        self.settle_removed(&format!("{FLASH}{key}"));
        self.settle_removed(&format!("{TEMP}{key}"));
        self.flash_old.remove(key);
        self.settle(key.to_string(), value);
        self.deadline = Some(deadline);
    }

    /// The session was found destroyed by someone else: the request goes on with a fresh one,
    /// and the next save reports it [`gone`](SaveOutcome::gone).
    pub(crate) fn found_gone(&mut self) {
        self.reset_fresh();
        self.gone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{loaded, v};
    use crate::outcome::CookieAction;

    #[test]
    fn regenerate_keeps_the_first_old_id_and_login_destroys_it() {
        let mut s = loaded(&[("a", v(1))]);
        let first = s.id().cloned().expect("adopted");
        assert_eq!(s.stored_ids(), vec![first.clone()]);
        s.regenerate(false);
        assert_eq!(s.id(), None);
        assert_eq!(s.stored_id(), None);
        assert!(s.guards_stored(), "the old id is still to be released");
        assert_eq!(s.stored_ids(), vec![first.clone()], "a destroy deletes it");
        s.log_in("u1", 7).expect("encode");
        assert_eq!(s.user(), Some("u1"));
        assert!(s.has_changes());
        let meta = s.meta().expect("decodes").expect("meta");
        assert_eq!(
            meta.authenticated_at,
            Some(crate::check::from_unix_millis(7))
        );
        let regen = s.take_regen().expect("scheduled");
        assert_eq!(regen.old, Some(first));
        assert!(regen.destroy_old, "a login destroys the old id");
    }

    #[test]
    fn a_lost_session_is_reported_gone_once() {
        let mut s = loaded(&[("a", v(1))]);
        s.found_gone();
        assert_eq!(s.stored_id(), None);
        assert!(s.user_keys(0).is_empty());
        let out = s.report_gone().expect("gone");
        assert!(out.gone);
        assert_eq!(out.cookie, CookieAction::Remove);
        assert_eq!(s.report_gone(), None);
    }
}
