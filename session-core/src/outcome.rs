//! What saving a session tells the HTTP layer: [`SaveOutcome`] and its [`CookieAction`].

use std::time::SystemTime;

use crate::id::SessionId;

/// What the HTTP layer must do with the session cookie after [`Session::save`](crate::Session::save).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CookieAction {
    /// Nothing: the session was not used, or was read without sliding its expiry.
    #[default]
    Unchanged,
    /// Send a cookie with a new id: a new session, a regenerated id, or a login.
    Set {
        /// The id to put in the cookie.
        id: SessionId,
        /// When the session expires (for the cookie's `Expires`/`Max-Age`, if you use one).
        expires: SystemTime,
    },
    /// Same id, later expiry: re-send the cookie if it carries an expiry, else nothing to do.
    Refresh {
        /// The (unchanged) id.
        id: SessionId,
        /// The new expiry.
        expires: SystemTime,
    },
    /// Delete the cookie: the session was destroyed, the id the client sent is dead, or the
    /// client sent an id that is not valid ([`IncomingId::Invalid`](crate::IncomingId::Invalid)).
    Remove,
}

impl CookieAction {
    /// The id to send, for [`Set`](Self::Set) and [`Refresh`](Self::Refresh).
    pub fn id(&self) -> Option<&SessionId> {
        match self {
            CookieAction::Set { id, .. } | CookieAction::Refresh { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The expiry, for [`Set`](Self::Set) and [`Refresh`](Self::Refresh).
    pub fn expires(&self) -> Option<SystemTime> {
        match self {
            CookieAction::Set { expires, .. } | CookieAction::Refresh { expires, .. } => {
                Some(*expires)
            }
            _ => None,
        }
    }
}

/// What [`Session::save`](crate::Session::save) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaveOutcome {
    /// What to do with the cookie.
    pub cookie: CookieAction,
    /// Changes were written (one `apply`; more for a regeneration).
    pub wrote: bool,
    /// The expiry was slid without a change (a touch).
    pub touched: bool,
    /// The session was destroyed by someone else (logout elsewhere, "log out everywhere") while
    /// this request ran; this request's changes were dropped rather than bringing it back.
    pub gone: bool,
}

impl SaveOutcome {
    /// Only a cookie action: nothing written, nothing touched.
    pub(crate) fn cookie(cookie: CookieAction) -> Self {
        SaveOutcome {
            cookie,
            ..SaveOutcome::default()
        }
    }
}
