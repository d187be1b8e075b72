//! The writing commands on one store: `destroy`, `logout-user`, `purge`.
//!
//! They ask no question: the command line confirms first ([`crate::confirm`]).

use std::sync::Arc;

use session_core::{Config, Manager, SessionId, Storage};

use crate::error::{CtlError, Result};
use crate::inspect;

/// `destroy ID`: removes the session with its owner binding;
/// [`NOT_FOUND`](crate::error::NOT_FOUND) if it is not live.
pub async fn destroy(store: &dyn Storage, id: &SessionId) -> Result<()> {
    if store.load(id).await?.is_none() {
        return Err(inspect::not_found(id));
    }
    store.remove_all(id).await?;
    Ok(())
}

/// `logout-user NAME`: destroys every session the owner index binds to `owner`, as
/// [`Manager::destroy_user`] does ("log out everywhere"); returns how many.
pub async fn logout_user(store: Arc<dyn Storage>, owner: &str) -> Result<usize> {
    inspect::require_owner_index(store.as_ref(), "logout-user")?;
    let manager = Manager::new(store, Config::default())?;
    Ok(manager.destroy_user(owner).await?)
}

/// `purge`: deletes the expired sessions and returns how many the driver deleted (a driver
/// whose backend expires sessions by itself, such as Redis, may report 0).
pub async fn purge(store: &dyn Storage) -> Result<u64> {
    if !store.capabilities().purge {
        return Err(CtlError::unsupported(
            store.name(),
            "`purge`",
            "this backend cannot be purged from outside; expired sessions are never served anyway",
        ));
    }
    Ok(store.purge_expired().await?)
}
