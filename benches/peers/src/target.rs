//! One operation of each phase on tower-sessions: a [`Session`] over the store, used the way an
//! axum handler uses it (`get`, `insert`), then closed the way tower-sessions' middleware
//! (`SessionManager::call` in tower-sessions 0.14) closes it: `is_modified`, `is_empty`, and
//! `save` only when the session was modified and is not empty.

use std::sync::Arc;

use tower_sessions::session::Id;
use tower_sessions::{Expiry, Session, SessionStore};

use crate::Result;
use crate::payload::{self, COUNTER, KEYS};
use crate::run::Target;

/// The workload through tower-sessions' [`Session`] over the store `S`.
pub struct TowerTarget<S> {
    /// The store, shared as the middleware shares it.
    pub store: Arc<S>,
    /// The expiry every session gets (the layer's `with_expiry`).
    pub expiry: Option<Expiry>,
}

fn missing(id: Id) -> crate::BoxError {
    format!("session {id} is missing (evicted or expired?)").into()
}

impl<S: SessionStore> TowerTarget<S> {
    /// What the middleware does once the handler has returned: saves a modified, non-empty
    /// session. Returns whether it saved.
    async fn close(&self, s: &Session) -> Result<bool> {
        let modified = s.is_modified();
        let empty = s.is_empty().await;
        if modified && !empty {
            s.save().await?;
            // the middleware reads both to build the cookie
            let _expiry = s.expiry();
            return Ok(s.id().is_some());
        }
        Ok(false)
    }

    /// A session as the middleware makes it from a request's cookie.
    fn session(&self, id: Option<Id>) -> Session {
        Session::new(id, self.store.clone(), self.expiry)
    }
}

impl<S: SessionStore> Target for TowerTarget<S> {
    async fn create(&self, n: u64) -> Result<Id> {
        let (user_id, name, roles, cart, csrf) = payload::values(n);
        let s = self.session(None);
        s.insert(KEYS[0], user_id).await?;
        s.insert(KEYS[1], name).await?;
        s.insert(KEYS[2], roles).await?;
        s.insert(KEYS[3], cart).await?;
        s.insert(KEYS[4], csrf).await?;
        if !self.close(&s).await? {
            return Err("a new session was not saved".into());
        }
        s.id()
            .ok_or_else(|| "a new session was saved without an id".into())
    }

    async fn read(&self, id: Id) -> Result<()> {
        let s = self.session(Some(id));
        let user: Option<u64> = s.get(KEYS[0]).await?;
        let name: Option<String> = s.get(KEYS[1]).await?;
        if user.is_none() || name.is_none() {
            return Err(missing(id));
        }
        if self.close(&s).await? {
            return Err("a read-only request wrote".into());
        }
        Ok(())
    }

    async fn write(&self, id: Id) -> Result<()> {
        let s = self.session(Some(id));
        let user: Option<u64> = s.get(KEYS[0]).await?;
        let name: Option<String> = s.get(KEYS[1]).await?;
        if user.is_none() || name.is_none() {
            return Err(missing(id));
        }
        let n: u64 = s.get(COUNTER).await?.unwrap_or(0);
        s.insert(COUNTER, n + 1).await?;
        if !self.close(&s).await? {
            return Err(format!("write to {id} wrote nothing").into());
        }
        Ok(())
    }
}
