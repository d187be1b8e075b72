//! [`HashedIdsLayer`]: every session stored under a keyed hash of its id.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use session_core::driver::{
    Capabilities, ChangeSet, Data, Driver, Error, Expiry, Layer, Loaded, LockToken, Result,
    ScanPage, SessionId, Ttl, Value, async_trait,
};
use sha2::Sha256;

/// What the HMAC of an id starts with: a label that keeps these hashes apart from any other use
/// of the same secret.
const ID_DOMAIN: &[u8] = b"session-at-rest/id/v1\0";

/// The lease a move of a session from an old key's name to the current one holds.
const MOVE_LEASE: Duration = Duration::from_secs(10);
/// How long a write waits for another request's move of the same session.
const MOVE_WAIT: Duration = Duration::from_secs(5);

/// A secret for hashing session ids: HMAC-SHA256 under at least [`IdKey::MIN_LEN`] bytes the
/// application provides (from its secret store, never from the code).
///
/// `Debug` shows no part of the secret.
///
/// ```
/// use session_at_rest::IdKey;
///
/// let key = IdKey::new(&[7u8; 32])?; // 32 random bytes from your secret store, in real life
/// assert!(IdKey::new(b"too short").is_err());
/// # let _ = key;
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone)]
pub struct IdKey {
    mac: Hmac<Sha256>,
}

impl IdKey {
    /// The shortest secret accepted: 32 bytes (256 bits, the size of the hash).
    pub const MIN_LEN: usize = 32;

    /// A key from `secret`, which must hold at least [`MIN_LEN`](Self::MIN_LEN) bytes; a shorter
    /// one is [`Error::InvalidInput`].
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < Self::MIN_LEN {
            return Err(Error::InvalidInput(format!(
                "an id hashing secret needs at least {} bytes, got {}",
                Self::MIN_LEN,
                secret.len()
            )));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|e| Error::InvalidInput(format!("id hashing secret: {e}")))?;
        Ok(IdKey { mac })
    }

    /// The name session `id` is stored under with this key: 43 characters of unpadded URL-safe
    /// base64 (a valid [`SessionId`] for any driver), marked as a
    /// [handle](SessionId::into_handle).
    fn name(&self, id: &SessionId) -> Result<SessionId> {
        let text = URL_SAFE_NO_PAD.encode(self.hash(id.as_str().as_bytes()));
        // 43 characters of [A-Za-z0-9_-]: always a valid id, so this never fails.
        Ok(SessionId::parse(&text)?.into_handle())
    }

    /// HMAC-SHA256 of the domain label and `text`.
    fn hash(&self, text: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(ID_DOMAIN);
        mac.update(text);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdKey(..)")
    }
}

/// The current key and the older ones still looked under.
#[derive(Clone, Debug)]
struct IdKeys {
    current: IdKey,
    old: Vec<IdKey>,
}

impl IdKeys {
    /// The name a write goes to: a handle as it is, an id hashed with the current key.
    fn current(&self, id: &SessionId) -> Result<SessionId> {
        if id.is_handle() {
            Ok(id.clone())
        } else {
            self.current.name(id)
        }
    }

    /// Every name the session may be stored under, the current one first: a handle names one.
    fn all(&self, id: &SessionId) -> Result<Vec<SessionId>> {
        if id.is_handle() {
            return Ok(vec![id.clone()]);
        }
        std::iter::once(&self.current)
            .chain(&self.old)
            .map(|key| key.name(id))
            .collect()
    }

    /// Whether every id has exactly one name (no old keys, or a handle).
    fn single(&self, id: &SessionId) -> bool {
        self.old.is_empty() || id.is_handle()
    }
}

/// A [`Layer`] that stores every session under a keyed hash of its id (HMAC-SHA256), so that a
/// copy of the backend holds no id that works as a cookie.
///
/// * **Ids.** The store under the layer sees, in place of each id, 43 characters of
///   base64url HMAC-SHA256 of the id under the [`IdKey`]; ids cannot be found from them.
/// * **Handles.** Whatever lists sessions (the owner index's
///   [`index_sessions`](session_core::Storage::index_sessions), [`scan`](session_core::Storage::scan),
///   and so [`Manager::sessions_of`](session_core::Manager::sessions_of)) returns those stored
///   names as *handles* ([`SessionId::is_handle`]). A handle given back to the store addresses
///   its session directly (so `sessions_of`, `set_for_user`, `destroy_user` work); the text of
///   a handle coming from outside (a cookie, a form) is an ordinary id and is hashed again,
///   which addresses no session. [`revoke`](crate::revoke) ends one of a user's sessions by
///   the handle text an "active sessions" page posted back; [`handle_of`](Self::handle_of)
///   tells which listed handle is the current request's session.
/// * **Rotation.** [`with_old_key`](Self::with_old_key) adds a key that reads still look
///   under (after the current one); the first write to a session found under an old key
///   moves it under the current key (data, deadline and owner binding, under the inner store's
///   lease lock). Once no session lives under the old key any more (each was written since, or
///   expired), drop the key.
///
/// Owner names stay as they are (see the crate's README for why); encryption of the values is
/// [`EncryptionLayer`](crate::EncryptionLayer), which goes *under* this layer.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_at_rest::{HashedIdsLayer, IdKey};
/// use session_core::{SessionId, Storage, Value};
/// use session_memory::MemoryStore;
///
/// let memory = MemoryStore::new();
/// let store = memory.clone().layer(HashedIdsLayer::new(IdKey::new(&[7u8; 32])?));
/// let id = SessionId::generate()?;
/// store.set(&id, "cart", Value::encode(&3)?, Duration::from_secs(60)).await?;
/// assert!(memory.get_size(&id).await? == 0, "the memory store holds no session under the id");
/// assert_eq!(store.get_size(&id).await?, 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HashedIdsLayer {
    keys: Arc<IdKeys>,
}

impl HashedIdsLayer {
    /// The layer, hashing with `key`.
    pub fn new(key: IdKey) -> Self {
        HashedIdsLayer {
            keys: Arc::new(IdKeys {
                current: key,
                old: Vec::new(),
            }),
        }
    }

    /// Adds an older key: reads look under it after the current key (and after the keys added
    /// before it), and a write moves a session found under it to the current key. A key that
    /// hashes like one the layer already holds is ignored.
    pub fn with_old_key(mut self, key: IdKey) -> Self {
        const PROBE: &[u8] = b"a key probe, never an id";
        let keys = Arc::make_mut(&mut self.keys);
        let fresh = key.hash(PROBE);
        let known = std::iter::once(&keys.current)
            .chain(&keys.old)
            .any(|k| k.hash(PROBE) == fresh);
        if !known {
            keys.old.push(key);
        }
        self
    }

    /// The handle session `id` is listed under once it is stored with the current key (a
    /// handle is its own handle): compare it with the handles of
    /// [`Manager::sessions_of`](session_core::Manager::sessions_of) to mark the current
    /// request's session on an "active sessions" page.
    ///
    /// Fails only if the hash were not a valid id, which it always is.
    pub fn handle_of(&self, id: &SessionId) -> Result<SessionId> {
        self.keys.current(id)
    }
}

impl<D: Driver> Layer<D> for HashedIdsLayer {
    type Driver = HashedIds<D>;

    fn layer(&self, inner: D) -> Self::Driver {
        HashedIds {
            inner,
            keys: Arc::clone(&self.keys),
        }
    }
}

/// A driver that stores every session of `D` under a keyed hash of its id: what
/// [`HashedIdsLayer`] makes.
#[derive(Clone, Debug)]
pub struct HashedIds<D> {
    inner: D,
    keys: Arc<IdKeys>,
}

impl<D> HashedIds<D> {
    /// The driver underneath.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// See [`HashedIdsLayer::handle_of`].
    pub fn handle_of(&self, id: &SessionId) -> Result<SessionId> {
        self.keys.current(id)
    }
}

impl<D: Driver> HashedIds<D> {
    /// The live session under one of `id`'s names, with the name.
    async fn find(&self, id: &SessionId) -> Result<Option<(SessionId, Loaded)>> {
        for name in self.keys.all(id)? {
            if let Some(loaded) = self.inner.load(&name).await? {
                return Ok(Some((name, loaded)));
            }
        }
        Ok(None)
    }

    /// The name a write to `id` goes to. With old keys, a session found under an old key's
    /// name is first moved under the current key's; the write then goes there.
    async fn target(&self, id: &SessionId, expiry: Expiry) -> Result<SessionId> {
        let current = self.keys.current(id)?;
        if self.keys.single(id) || self.inner.load(&current).await?.is_some() {
            return Ok(current);
        }
        for old in self.keys.all(id)?.into_iter().skip(1) {
            if let Some(name) = self.move_to(&old, &current, expiry).await? {
                return Ok(name);
            }
        }
        Ok(current)
    }

    /// Moves the session stored under `old` (if there is one) to `current`: its data with its
    /// deadline, then its owner binding, then deletes `old`. Returns the name the caller's
    /// write should go to: `current` after a move, `old` when the session stays where it is
    /// (its deadline is unknown and the write keeps it), `None` when nothing lives under `old`.
    ///
    /// Under the inner store's lease lock of `old` when it has one, so that two requests that
    /// write the session at once do not both copy it (the second would copy stale data over
    /// the first's write); the second finds `old` gone and writes to `current`.
    async fn move_to(
        &self,
        old: &SessionId,
        current: &SessionId,
        expiry: Expiry,
    ) -> Result<Option<SessionId>> {
        if self.inner.load(old).await?.is_none() {
            return Ok(None);
        }
        let caps = self.inner.capabilities();
        let token = if caps.lock {
            Some(self.lock_for_move(old).await?)
        } else {
            None
        };
        let moved = self.copy_and_delete(old, current, expiry, caps).await;
        if let Some(token) = token {
            // A lease that is not released runs out by itself: a failed unlock is no failure.
            let _ = self.inner.unlock(old, &token).await;
        }
        moved
    }

    async fn lock_for_move(&self, old: &SessionId) -> Result<LockToken> {
        let lease = Ttl::new(MOVE_LEASE)?;
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(token) = self.inner.try_lock(old, lease).await? {
                return Ok(token);
            }
            if start.elapsed() >= MOVE_WAIT {
                return Err(Error::Locked(
                    "another request has been moving this session to the current id hashing key \
                     for too long"
                        .into(),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    async fn copy_and_delete(
        &self,
        old: &SessionId,
        current: &SessionId,
        expiry: Expiry,
        caps: Capabilities,
    ) -> Result<Option<SessionId>> {
        // Again, under the lock: another request may have moved it meanwhile.
        let Some(loaded) = self.inner.load(old).await? else {
            return Ok(None);
        };
        let ttl = match (loaded.expires_at, expiry) {
            (Some(at), _) => match at.duration_since(SystemTime::now()) {
                Ok(left) if !left.is_zero() => Ttl::new(left)?,
                _ => return Ok(None),
            },
            (None, Expiry::After(ttl)) => ttl,
            (None, Expiry::Keep) => return Ok(Some(old.clone())),
        };
        let copy = ChangeSet {
            clear: true,
            set: loaded.data.into_data(),
            ..ChangeSet::default()
        };
        if !self.inner.apply(current, copy, Expiry::After(ttl)).await? {
            return Ok(None);
        }
        if caps.owner_index
            && let Some(owner) = self.inner.index_owner(old).await?
        {
            self.inner.index_add(&owner, current, ttl).await?;
        }
        self.inner.remove_all(old).await?;
        Ok(Some(current.clone()))
    }
}

#[async_trait]
impl<D: Driver> Driver for HashedIds<D> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        Ok(self.find(id).await?.map(|(_, loaded)| loaded))
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        let name = self.target(id, expiry).await?;
        self.inner.apply(&name, changes, expiry).await
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        for name in self.keys.all(id)? {
            self.inner.remove_all(&name).await?;
        }
        Ok(())
    }

    /// Always `None`: ids are made by the session layer, the store only ever sees their hashes.
    async fn new(&self, ttl: Ttl) -> Result<Option<SessionId>> {
        let _ = ttl;
        Ok(None)
    }

    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        if self.keys.single(id) {
            return self.inner.get(&self.keys.current(id)?, key).await;
        }
        Ok(self.find(id).await?.and_then(|(_, l)| l.data.get(key)))
    }

    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        if self.keys.single(id) {
            return self.inner.get_map(&self.keys.current(id)?).await;
        }
        Ok(self
            .find(id)
            .await?
            .map(|(_, l)| l.data.into_data())
            .unwrap_or_default())
    }

    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        if self.keys.single(id) {
            return self.inner.get_size(&self.keys.current(id)?).await;
        }
        Ok(self.find(id).await?.map_or(0, |(_, l)| l.data.len()))
    }

    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Ttl) -> Result<()> {
        let name = self.target(id, Expiry::After(ttl)).await?;
        self.inner.set(&name, key, value, ttl).await
    }

    async fn set_map(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        let name = self.target(id, Expiry::After(ttl)).await?;
        self.inner.set_map(&name, data, ttl).await
    }

    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        let name = self.target(id, Expiry::Keep).await?;
        self.inner.remove(&name, key).await
    }

    async fn get_session(
        &self,
        id: &SessionId,
        ttl: Duration,
        cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        if self.keys.single(id) {
            let name = self.keys.current(id)?;
            return self.inner.get_session(&name, ttl, cached).await;
        }
        Ok(self.find(id).await?.map(|(_, l)| l.data.into_data()))
    }

    async fn set_session(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        if data.is_empty() {
            return self.remove_all(id).await;
        }
        let name = self.target(id, Expiry::After(ttl)).await?;
        self.inner.set_session(&name, data, ttl).await
    }

    async fn update_ttl(&self, id: &SessionId, ttl: Ttl) -> Result<()> {
        let name = self.target(id, Expiry::After(ttl)).await?;
        self.inner.update_ttl(&name, ttl).await
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Ttl) -> Result<()> {
        let name = self.target(id, Expiry::Keep).await?;
        self.inner.index_add(owner, &name, ttl).await
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        for name in self.keys.all(id)? {
            self.inner.index_remove(&name).await?;
        }
        Ok(())
    }

    /// The handles of `owner`'s live sessions.
    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        let names = self.inner.index_sessions(owner).await?;
        Ok(names.into_iter().map(SessionId::into_handle).collect())
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        for name in self.keys.all(id)? {
            if let Some(owner) = self.inner.index_owner(&name).await? {
                return Ok(Some(owner));
            }
        }
        Ok(None)
    }

    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        self.inner.try_lock(&self.keys.current(id)?, lease).await
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        self.inner.unlock(&self.keys.current(id)?, token).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.inner.purge_expired().await
    }

    /// A page of handles.
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let page = self.inner.scan(cursor, limit).await?;
        Ok(ScanPage {
            ids: page.ids.into_iter().map(SessionId::into_handle).collect(),
            next: page.next,
        })
    }
}
