//! [`EncryptionLayer`]: every value encrypted with XChaCha20-Poly1305 before it reaches the store.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use session_core::driver::{
    Capabilities, ChangeSet, Data, Driver, Error, Expiry, Layer, Loaded, LockToken, Result,
    ScanPage, SessionId, Ttl, Value, ValueRef, async_trait,
};

/// The first byte of every stored value: the format of what follows.
const FORMAT: u8 = 1;
/// Bytes of the key id (big-endian `u32`).
const KEY_ID_LEN: usize = 4;
/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag.
const TAG_LEN: usize = 16;
/// Bytes before the ciphertext: format, key id, nonce.
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// What the associated data starts with: a label for this use of the key.
const AAD_DOMAIN: &[u8] = b"session-at-rest/value/v1\0";

/// An encryption key for session values: 32 bytes for XChaCha20-Poly1305, and the id that
/// travels with every value it encrypts, so that the right key decrypts it after a rotation.
///
/// Give each key its own id (a counter that goes up at each rotation does). `Debug` shows the
/// id only.
///
/// ```
/// use session_at_rest::ValueKey;
///
/// let key = ValueKey::new(1, &[9u8; 32])?; // 32 random bytes from your secret store, in real life
/// assert_eq!(key.id(), 1);
/// assert!(ValueKey::new(2, &[9u8; 16]).is_err());
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone)]
pub struct ValueKey {
    id: u32,
    cipher: XChaCha20Poly1305,
}

impl ValueKey {
    /// The length of a key: 32 bytes.
    pub const LEN: usize = 32;

    /// The key `secret` (exactly [`LEN`](Self::LEN) bytes, else [`Error::InvalidInput`]) under
    /// the id `id`.
    pub fn new(id: u32, secret: &[u8]) -> Result<Self> {
        if secret.len() != Self::LEN {
            return Err(Error::InvalidInput(format!(
                "a value encryption key is {} bytes, got {}",
                Self::LEN,
                secret.len()
            )));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(secret)
            .map_err(|e| Error::InvalidInput(format!("value encryption key: {e}")))?;
        Ok(ValueKey { id, cipher })
    }

    /// The key's id, stored with every value it encrypts.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl fmt::Debug for ValueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ValueKey({}, ..)", self.id)
    }
}

/// The newest key, which encrypts, and the older ones, which only decrypt.
#[derive(Clone, Debug)]
struct ValueKeys {
    current: ValueKey,
    old: Vec<ValueKey>,
}

/// The associated data of the value of `key` in session `id` under key `key_id`: what makes a
/// value copied to another session, another key or another key id fail to decrypt.
fn aad(id: &SessionId, key: &str, key_id: u32) -> Vec<u8> {
    let (id, key) = (id.as_str().as_bytes(), key.as_bytes());
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + 1 + KEY_ID_LEN + 8 + id.len() + key.len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.push(FORMAT);
    aad.extend_from_slice(&key_id.to_be_bytes());
    // Lengths first, so that no two (id, key) pairs give the same bytes.
    for part in [id, key] {
        aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

impl ValueKeys {
    fn find(&self, key_id: u32) -> Option<&ValueKey> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == key_id)
    }

    /// `value` of `key` in session `id`, encrypted with the current key under a fresh random
    /// nonce: format byte, key id, nonce, ciphertext and tag.
    fn seal(&self, id: &SessionId, key: &str, value: &Value) -> Result<Value> {
        let k = &self.current;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::backend("os-random", e.to_string()))?;
        let aad = aad(id, key, k.id);
        let sealed = k
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| Error::InvalidInput("a value too large to encrypt".into()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(FORMAT);
        out.extend_from_slice(&k.id.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(Value::from(out))
    }

    /// The plaintext of a stored value; [`Error::Corrupt`] if it is malformed, names a key this
    /// layer does not hold, or fails authentication.
    fn open(
        &self,
        backend: &'static str,
        id: &SessionId,
        key: &str,
        bytes: &[u8],
    ) -> Result<Value> {
        let corrupt = |why: &str| Error::corrupt(backend, format!("encrypted value: {why}"));
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return Err(corrupt(&format!(
                "{} bytes, shorter than the {} of an empty value",
                bytes.len(),
                HEADER_LEN + TAG_LEN
            )));
        }
        let (header, sealed) = bytes.split_at(HEADER_LEN);
        let (format, rest) = header.split_at(1);
        let (key_id, nonce) = rest.split_at(KEY_ID_LEN);
        if format != [FORMAT] {
            return Err(corrupt(&format!(
                "unknown format {} (not written by this layer, or the store held values before \
                 the layer was added)",
                format.first().copied().unwrap_or_default()
            )));
        }
        let mut id_bytes = [0u8; KEY_ID_LEN];
        id_bytes.copy_from_slice(key_id);
        let key_id = u32::from_be_bytes(id_bytes);
        let Some(k) = self.find(key_id) else {
            return Err(corrupt(&format!(
                "encrypted with key id {key_id}, which this layer does not hold"
            )));
        };
        let aad = aad(id, key, key_id);
        let plain = k
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                corrupt(&format!(
                    "fails authentication under key id {key_id} (tampered, or copied from another \
                     session or key; or this layer sits above HashedIdsLayer instead of under it)"
                ))
            })?;
        Ok(Value::from(plain))
    }

    fn seal_all(&self, id: &SessionId, data: Data) -> Result<Data> {
        data.into_iter()
            .map(|(key, value)| {
                let sealed = self.seal(id, &key, &value)?;
                Ok((key, sealed))
            })
            .collect()
    }

    fn open_all<'a>(
        &self,
        backend: &'static str,
        id: &SessionId,
        entries: impl Iterator<Item = (&'a str, ValueRef<'a>)>,
    ) -> Result<Data> {
        entries
            .map(|(key, value)| {
                Ok((
                    key.to_owned(),
                    self.open(backend, id, key, value.as_bytes())?,
                ))
            })
            .collect()
    }
}

/// A [`Layer`] that encrypts every value before it reaches the store, with XChaCha20-Poly1305:
/// a random 192-bit nonce per value, the key id stored with it, and the session id, the
/// value's key and the key id bound as associated data.
///
/// * **Stored form.** `0x01`, the key id (4 bytes, big-endian), the nonce (24 bytes), the
///   ciphertext and its 16-byte tag: 45 bytes more than the value.
/// * **Bound.** A value copied to another session or another key, or with its key id
///   changed, fails to decrypt; so does any changed byte. Such a value, a malformed one, or one
///   under a key id the layer does not hold, is [`Error::Corrupt`] (never a panic, never data).
/// * **Rotation.** The [current key](Self::new) encrypts every value written; the
///   [old keys](Self::with_old_key) only decrypt. A value is encrypted with the new key the
///   next time it is written.
/// * **Not encrypted**: the session's keys (names), its deadline, its size, the owner index.
///
/// Put it *under* [`HashedIdsLayer`](crate::HashedIdsLayer)
/// (`store.layer(encryption).layer(hashed_ids)`): it then binds each value to the stored name
/// of its session, which is the same whether the session is reached by its id or by a handle.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_at_rest::{EncryptionLayer, ValueKey};
/// use session_core::{SessionId, Storage, Value};
/// use session_memory::MemoryStore;
///
/// let memory = MemoryStore::new();
/// let store = memory.clone().layer(EncryptionLayer::new(ValueKey::new(1, &[9u8; 32])?));
/// let id = SessionId::generate()?;
/// store.set(&id, "name", Value::encode("Ada")?, Duration::from_secs(60)).await?;
/// let stored = memory.get(&id, "name").await?.expect("stored");
/// assert!(!stored.as_bytes().windows(3).any(|w| w == b"Ada"));
/// assert_eq!(store.get(&id, "name").await?.expect("set").decode::<String>()?, "Ada");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct EncryptionLayer {
    keys: Arc<ValueKeys>,
}

impl EncryptionLayer {
    /// The layer, encrypting with `current`.
    pub fn new(current: ValueKey) -> Self {
        EncryptionLayer {
            keys: Arc::new(ValueKeys {
                current,
                old: Vec::new(),
            }),
        }
    }

    /// Adds an older key, which decrypts the values it encrypted and encrypts nothing. A key
    /// whose id the layer already holds is [`Error::InvalidInput`].
    pub fn with_old_key(mut self, key: ValueKey) -> Result<Self> {
        if self.keys.find(key.id).is_some() {
            return Err(Error::InvalidInput(format!(
                "two value encryption keys with the id {}",
                key.id
            )));
        }
        Arc::make_mut(&mut self.keys).old.push(key);
        Ok(self)
    }

    /// The id of the key that encrypts.
    pub fn current_key_id(&self) -> u32 {
        self.keys.current.id
    }
}

impl<D: Driver> Layer<D> for EncryptionLayer {
    type Driver = Encrypted<D>;

    fn layer(&self, inner: D) -> Self::Driver {
        Encrypted {
            inner,
            keys: Arc::clone(&self.keys),
        }
    }
}

/// A driver that encrypts every value of `D`: what [`EncryptionLayer`] makes.
#[derive(Clone, Debug)]
pub struct Encrypted<D> {
    inner: D,
    keys: Arc<ValueKeys>,
}

impl<D> Encrypted<D> {
    /// The driver underneath.
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D: Driver> Encrypted<D> {
    fn open(&self, id: &SessionId, key: &str, stored: &Value) -> Result<Value> {
        self.keys
            .open(self.inner.name(), id, key, stored.as_bytes())
    }

    fn open_all(&self, id: &SessionId, data: &Data) -> Result<Data> {
        let entries = data.iter().map(|(k, v)| (k.as_str(), ValueRef::from(v)));
        self.keys.open_all(self.inner.name(), id, entries)
    }
}

#[async_trait]
impl<D: Driver> Driver for Encrypted<D> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        let Some(loaded) = self.inner.load(id).await? else {
            return Ok(None);
        };
        Ok(Some(Loaded {
            data: self
                .keys
                .open_all(self.inner.name(), id, loaded.data.iter())?
                .into(),
            expires_at: loaded.expires_at,
        }))
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        let changes = ChangeSet {
            set: self.keys.seal_all(id, changes.set)?,
            ..changes
        };
        self.inner.apply(id, changes, expiry).await
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.inner.remove_all(id).await
    }

    async fn new(&self, ttl: Ttl) -> Result<Option<SessionId>> {
        self.inner.new(ttl).await
    }

    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        match self.inner.get(id, key).await? {
            Some(stored) => Ok(Some(self.open(id, key, &stored)?)),
            None => Ok(None),
        }
    }

    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        let data = self.inner.get_map(id).await?;
        self.open_all(id, &data)
    }

    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        self.inner.get_size(id).await
    }

    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Ttl) -> Result<()> {
        let sealed = self.keys.seal(id, key, &value)?;
        self.inner.set(id, key, sealed, ttl).await
    }

    async fn set_map(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        let sealed = self.keys.seal_all(id, data)?;
        self.inner.set_map(id, sealed, ttl).await
    }

    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        self.inner.remove(id, key).await
    }

    /// The inner store's `get_session`, without the caller's cached plaintext (which the
    /// store could not compare with what it holds).
    async fn get_session(
        &self,
        id: &SessionId,
        ttl: Duration,
        cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        let _ = cached;
        match self.inner.get_session(id, ttl, None).await? {
            Some(data) => Ok(Some(self.open_all(id, &data)?)),
            None => Ok(None),
        }
    }

    async fn set_session(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        let sealed = self.keys.seal_all(id, data)?;
        self.inner.set_session(id, sealed, ttl).await
    }

    async fn update_ttl(&self, id: &SessionId, ttl: Ttl) -> Result<()> {
        self.inner.update_ttl(id, ttl).await
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Ttl) -> Result<()> {
        self.inner.index_add(owner, id, ttl).await
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        self.inner.index_remove(id).await
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        self.inner.index_sessions(owner).await
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        self.inner.index_owner(id).await
    }

    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        self.inner.try_lock(id, lease).await
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        self.inner.unlock(id, token).await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.inner.purge_expired().await
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        self.inner.scan(cursor, limit).await
    }
}
