#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod encrypted;
mod hashed;

pub use encrypted::{Encrypted, EncryptionLayer, ValueKey};
pub use hashed::{HashedIds, HashedIdsLayer, IdKey};

use session_core::{Result, SessionId, Storage};

/// Ends the session of `owner` whose handle reads `handle`: the text an "active sessions" page
/// showed and posted back. Returns whether `owner` had such a session.
///
/// The handle is looked for among `owner`'s sessions in the owner index
/// ([`Storage::index_sessions`]), so a user can only end their own sessions, whatever text
/// they post; the session found is then removed with its owner binding
/// ([`Storage::remove_all`]) by the handle the index listed, which the store addresses
/// directly. The text alone would not do: given to any other method it is an ordinary id, which
/// [`HashedIdsLayer`] hashes again and which so addresses no session.
///
/// Works on any store with an owner index, with or without [`HashedIdsLayer`] (without it,
/// handles are the ids themselves). The manager's observers hear nothing of it; to have them
/// hear [`SessionEvent::Destroyed`](session_core::SessionEvent::Destroyed), load the listed
/// handle with [`Manager::load`](session_core::Manager::load) and destroy that session.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// use std::sync::Arc;
/// use session_at_rest::{HashedIdsLayer, IdKey, revoke};
/// use session_core::{Config, Manager, Storage};
/// use session_memory::MemoryStore;
///
/// let store = MemoryStore::new().layer(HashedIdsLayer::new(IdKey::new(&[7u8; 32])?));
/// let manager = Manager::new(Arc::new(store), Config::default())?;
/// for _ in 0..2 {
///     let s = manager.load(None);
///     s.set("device", "phone").await?;
///     s.login("ada").await?;
///     s.save().await?;
/// }
/// let listed = manager.sessions_of("ada").await?;
/// let posted = listed[0].id.to_string(); // what the page's "log out" button sent back
/// assert!(revoke(manager.store().as_ref(), "ada", &posted).await?);
/// assert_eq!(manager.sessions_of("ada").await?.len(), 1);
/// assert!(!revoke(manager.store().as_ref(), "bob", &listed[1].id.to_string()).await?);
/// # Ok(()) }
/// ```
pub async fn revoke<S: Storage + ?Sized>(store: &S, owner: &str, handle: &str) -> Result<bool> {
    let found: Option<SessionId> = store
        .index_sessions(owner)
        .await?
        .into_iter()
        .find(|listed| listed.as_str() == handle);
    match found {
        Some(listed) => {
            store.remove_all(&listed).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}
