//! Session events: what a [`Manager`](crate::Manager) tells the parts of an application that keep
//! state about sessions outside the session store (a connection registry such as
//! session-connect's `Hub`, a cache, an audit log).
//!
//! An observer registers with [`Manager::observe`](crate::Manager::observe) and is called, and
//! awaited, by the call that made the change, after the store has it: a
//! [`Session::save`](crate::Session::save) that regenerated the id or changed the owner,
//! [`Session::destroy`](crate::Session::destroy), [`Manager::destroy_user`](crate::Manager::destroy_user),
//! [`Manager::login_session`](crate::Manager::login_session) and
//! [`Manager::logout_session`](crate::Manager::logout_session). The session layer does not
//! depend on any observer: it only knows this trait.
//!
//! Sessions that simply run out of time in the store produce no event (no store reports
//! expiry); a session found past its absolute deadline by a load or a save is deleted then and
//! reported as [`SessionEvent::Destroyed`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};

use async_trait::async_trait;

use crate::id::SessionId;

/// A change to a session that parts of an application outside the store may need to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The session now lives under a new id (an explicit or timed regeneration, or a login):
    /// `old` was deleted or retired for the grace period. Whatever was linked to `old` should
    /// follow to `new` (Dce `renewSession`).
    Renewed {
        /// The id the client held.
        old: SessionId,
        /// The id the session is stored under now.
        new: SessionId,
    },
    /// The session became `user`'s ([`Session::login`](crate::Session::login),
    /// [`Session::set_user`](crate::Session::set_user),
    /// [`Manager::login_session`](crate::Manager::login_session)); reported after the store and
    /// the owner index have it. Comes after the [`Renewed`](Self::Renewed) of the same save.
    LoggedIn {
        /// The session.
        id: SessionId,
        /// Its owner now.
        user: String,
    },
    /// The session no longer belongs to `user` but lives on
    /// ([`Session::set_user`](crate::Session::set_user) with `None`,
    /// [`Manager::logout_session`](crate::Manager::logout_session)).
    LoggedOut {
        /// The session.
        id: SessionId,
        /// The owner it had.
        user: String,
    },
    /// The session was deleted: [`Session::destroy`](crate::Session::destroy) or
    /// [`logout`](crate::Session::logout), [`Manager::destroy_user`](crate::Manager::destroy_user)
    /// ("log out everywhere"), or found past its absolute deadline.
    Destroyed {
        /// The session.
        id: SessionId,
        /// The owner it had, when the caller knew it.
        user: Option<String>,
    },
}

/// Something that follows session events.
///
/// `on_event` runs inside the call that made the change, after the store has it, and that call
/// waits for it: keep it short, and handle its own errors (the change is done whatever the
/// observer does, so there is nothing to report back to the request).
#[async_trait]
pub trait SessionObserver: Send + Sync + 'static {
    /// Called once per event, in the order the events happened within one call.
    async fn on_event(&self, event: &SessionEvent);
}

/// The observers of one manager (shared by its clones and its sessions).
#[derive(Default)]
pub(crate) struct Observers {
    list: RwLock<Vec<(u64, Arc<dyn SessionObserver>)>>,
    next: AtomicU64,
}

impl Observers {
    fn add(&self, observer: Arc<dyn SessionObserver>) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        // the list is only pushed to and filtered: a panic elsewhere cannot leave it broken
        self.list
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((key, observer));
        key
    }

    fn remove(&self, key: u64) {
        self.list
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(k, _)| *k != key);
    }

    /// Whether anyone listens (events are not even built otherwise).
    pub(crate) fn any(&self) -> bool {
        !self
            .list
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Tells every observer, one after the other.
    pub(crate) async fn emit(&self, event: SessionEvent) {
        let list: Vec<Arc<dyn SessionObserver>> = self
            .list
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, o)| o.clone())
            .collect();
        for observer in list {
            observer.on_event(&event).await;
        }
    }
}

/// The registration of an observer, made by [`Manager::observe`](crate::Manager::observe):
/// the observer is called until this is dropped.
#[must_use = "the observer is unregistered when the Observation is dropped"]
pub struct Observation {
    observers: Weak<Observers>,
    key: u64,
}

impl Observation {
    pub(crate) fn new(observers: &Arc<Observers>, observer: Arc<dyn SessionObserver>) -> Self {
        Observation {
            key: observers.add(observer),
            observers: Arc::downgrade(observers),
        }
    }
}

impl std::fmt::Debug for Observation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observation").finish_non_exhaustive()
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        if let Some(observers) = self.observers.upgrade() {
            observers.remove(self.key);
        }
    }
}
