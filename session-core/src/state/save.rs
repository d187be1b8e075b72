//! The transitions of a save: aging flash and temp data, the metadata written with it, what
//! to write, and what the storage calls' results mean for the state and the cookie.

use super::{Regen, State};
use crate::error::Result;
use crate::expiry::expires_at;
use crate::id::{IncomingId, SessionId};
use crate::outcome::{CookieAction, SaveOutcome};
use crate::reserved::{self, FLASH, META, RETIRED, SEEN, StoredMeta, StoredSeen, TEMP};
use crate::storage::ChangeSet;
use crate::value::Data;

impl State {
    // ----- save: before writing --------------------------------------------------------

    /// The records to delete first (found past their absolute deadline at load).
    pub(crate) fn take_discarded(&mut self) -> Vec<SessionId> {
        std::mem::take(&mut self.discard)
    }

    /// The outcome of a save after [`found_gone`](Self::found_gone), once.
    pub(crate) fn report_gone(&mut self) -> Option<SaveOutcome> {
        if !std::mem::take(&mut self.gone) {
            return None;
        }
        self.cookie = IncomingId::Absent;
        Some(SaveOutcome {
            gone: true,
            cookie: CookieAction::Remove,
            ..SaveOutcome::default()
        })
    }

    /// The outcome of a save of a session nobody loaded: nothing, unless the client sent an
    /// invalid id, which must go (no lookup is needed to know it is dead).
    pub(crate) fn unloaded_outcome(&mut self) -> SaveOutcome {
        if !self.cookie.is_invalid() {
            return SaveOutcome::default();
        }
        self.cookie = IncomingId::Absent;
        SaveOutcome::cookie(CookieAction::Remove)
    }

    /// Turns this request's end-of-life rules into pending removals: flash values found at load
    /// (not kept, not set again) and temp values past their deadline.
    pub(crate) fn age(&mut self, now: u64) {
        if self.flash_old.is_empty() && !self.marks {
            // most sessions: no flash data and no temp data
            return;
        }
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

    /// The scheduled regeneration, to be carried out by this save.
    pub(crate) fn take_regen(&mut self) -> Option<Regen> {
        self.regen.take()
    }

    /// Whether there are changes to write.
    pub(crate) fn has_pending(&self) -> bool {
        self.changed.has_pending()
    }

    /// Whether saving would write anything (after [`age`](Self::age)).
    pub(crate) fn has_changes(&self) -> bool {
        self.has_pending() || self.regen.is_some()
    }

    /// Whether a not-yet-stored session has anything worth creating it for (a user key, flash
    /// or temp data, or a login): metadata alone creates nothing.
    pub(crate) fn has_content(&self) -> bool {
        self.entries().any(|(k, _)| !reserved::is_bookkeeping(k))
    }

    // ----- save: the metadata written with it ------------------------------------------

    /// Before writing the session under a new id: the id is issued now, and it is no old id.
    pub(crate) fn stamp_reissue(&mut self, now: u64) -> Result<()> {
        let mut m = self.meta_or_new(now)?;
        m.issued = now;
        self.reserved.retired = None;
        self.settle_removed(RETIRED);
        self.stamp(Some(m), now)
    }

    /// Before creating a new session: its metadata and "last seen".
    pub(crate) fn stamp_create(&mut self, now: u64) -> Result<()> {
        let m = self.meta_or_new(now)?;
        self.stamp(Some(m), now)
    }

    /// Before writing changes to a stored session: "last seen", and metadata if it has none.
    pub(crate) fn stamp_update(&mut self, now: u64) -> Result<()> {
        let m = (!self.reserved.has_meta()).then(|| StoredMeta::new(now, self.client.clone()));
        self.stamp(m, now)
    }

    /// Before a touch that records "last seen".
    pub(crate) fn stamp_touch(&mut self, now: u64) -> Result<()> {
        self.stamp(None, now)
    }

    /// The stored metadata, or new metadata for a session that has none.
    pub(super) fn meta_or_new(&self, now: u64) -> Result<StoredMeta> {
        Ok(match self.reserved.meta()? {
            Some(m) => m.clone(),
            None => StoredMeta::new(now, self.client.clone()),
        })
    }

    /// Records "last seen" (and the metadata `m`, when given) as pending writes.
    fn stamp(&mut self, m: Option<StoredMeta>, now: u64) -> Result<()> {
        if let Some(m) = m {
            self.put(META.into(), reserved::encode(&m)?);
            self.reserved.set_meta(m);
        }
        let seen = StoredSeen {
            at: now,
            ip: self.client.ip,
        };
        self.put(SEEN.into(), reserved::encode(&seen)?);
        self.reserved.set_seen(seen);
        Ok(())
    }

    // ----- save: what to write ---------------------------------------------------------

    /// The pending changes as a change set.
    pub(crate) fn change_set(&self, only_if_exists: bool) -> ChangeSet {
        self.changed.change_set(only_if_exists)
    }

    /// The whole session as a change set that creates it under a new id (minus the retirement
    /// mark of an old id).
    pub(crate) fn full_set(&self) -> ChangeSet {
        let set: Data = self
            .entries()
            .filter(|(k, _)| *k != RETIRED)
            .map(|(k, v)| (k.to_string(), v.to_value()))
            .collect();
        ChangeSet {
            set,
            ..ChangeSet::default()
        }
    }

    // ----- save: after the storage calls -----------------------------------------------

    /// The session was written under `id` at `now` with `ttl`: the client gets `id` (a new
    /// cookie unless it already holds it).
    pub(crate) fn written(&mut self, id: SessionId, ttl: u64, now: u64) -> SaveOutcome {
        let expires = expires_at(now, ttl);
        let cookie = if self.cookie.id() == Some(&id) {
            CookieAction::Refresh {
                id: id.clone(),
                expires,
            }
        } else {
            CookieAction::Set {
                id: id.clone(),
                expires,
            }
        };
        self.changed.saved();
        self.cookie = IncomingId::Valid(id.clone());
        self.destroyed = false;
        self.id = Some(id);
        self.existed = true;
        self.deadline = Some(now.saturating_add(ttl));
        SaveOutcome {
            cookie,
            wrote: true,
            ..SaveOutcome::default()
        }
    }

    /// The expiry of `id` was slid at `now` to `ttl` without a change of data.
    pub(crate) fn touched(&mut self, id: SessionId, ttl: u64, now: u64) -> SaveOutcome {
        self.changed.saved();
        self.deadline = Some(now.saturating_add(ttl));
        SaveOutcome {
            cookie: CookieAction::Refresh {
                id,
                expires: expires_at(now, ttl),
            },
            touched: true,
            ..SaveOutcome::default()
        }
    }

    /// A write found the session destroyed by someone else: nothing of it is written back.
    pub(crate) fn lost(&mut self) -> SaveOutcome {
        self.reset_fresh();
        SaveOutcome {
            gone: true,
            cookie: self.drop_cookie(),
            ..SaveOutcome::default()
        }
    }

    /// Nothing of this session is stored (it expired, or has nothing worth storing): the
    /// request goes on with a fresh one, and the client drops its cookie.
    pub(crate) fn drop_session(&mut self) -> SaveOutcome {
        self.reset_fresh();
        SaveOutcome::cookie(self.drop_cookie())
    }

    /// No session is stored and this one is not worth creating: its changes are dropped, and
    /// the client drops its cookie.
    pub(crate) fn unstored(&mut self) -> SaveOutcome {
        self.changed.saved();
        SaveOutcome::cookie(self.drop_cookie())
    }

    /// What to tell a client that must not keep a cookie: remove it if it holds one (or held
    /// the session destroyed in this request); from now on it holds none.
    fn drop_cookie(&mut self) -> CookieAction {
        let action = if self.cookie != IncomingId::Absent || self.destroyed {
            CookieAction::Remove
        } else {
            CookieAction::Unchanged
        };
        self.cookie = IncomingId::Absent;
        self.destroyed = false;
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::ClientInfo;

    #[test]
    fn an_invalid_cookie_is_removed_once_even_when_never_loaded() {
        let mut s = State::new(IncomingId::Invalid, ClientInfo::default());
        assert_eq!(s.unloaded_outcome().cookie, CookieAction::Remove);
        assert_eq!(s.unloaded_outcome().cookie, CookieAction::Unchanged);
        let id = SessionId::generate().expect("rng");
        for cookie in [IncomingId::Valid(id), IncomingId::Absent] {
            let mut s = State::new(cookie, ClientInfo::default());
            assert_eq!(s.unloaded_outcome(), SaveOutcome::default());
        }
    }

    #[test]
    fn a_write_sets_a_new_cookie_unless_the_client_holds_the_id() {
        let id = SessionId::generate().expect("rng");
        let mut s = State::new(IncomingId::Invalid, ClientInfo::default());
        let out = s.written(id.clone(), 1_000, 5);
        assert!(out.wrote && !out.touched && !out.gone);
        assert!(matches!(out.cookie, CookieAction::Set { id: ref got, .. } if *got == id));
        assert_eq!(s.stored_id(), Some(id.clone()));
        assert_eq!(s.stored_deadline(), Some(1_005));
        let again = s.written(id.clone(), 1_000, 10);
        assert!(matches!(again.cookie, CookieAction::Refresh { .. }));
        let touched = s.touched(id.clone(), 1_000, 20);
        assert!(touched.touched && !touched.wrote);
        assert_eq!(s.stored_deadline(), Some(1_020));
        // dropping the session removes the cookie the client was given, once
        assert_eq!(s.drop_session().cookie, CookieAction::Remove);
        assert_eq!(s.stored_id(), None);
        assert_eq!(s.unstored().cookie, CookieAction::Unchanged);
    }
}
