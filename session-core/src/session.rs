//! The [`Session`] of one request, and what saving it tells the HTTP layer ([`SaveOutcome`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, MutexGuard};

use crate::check;
use crate::error::Result;
use crate::id::SessionId;
use crate::manager::Manager;
use crate::meta::{
    self, ClientInfo, META, RETIRED, Reserved, SEEN, SessionMeta, StoredMeta, StoredSeen, USER,
    Verdict,
};
use crate::state::{Regen, State};
use crate::storage::{ChangeSet, Storage};
use crate::value::{Data, Value};

/// What the HTTP layer must do with the session cookie after [`Session::save`].
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
    /// Delete the cookie: the session was destroyed, or the id the client sent is dead.
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

/// What [`Session::save`] did.
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

/// The session of one request.
///
/// Made by [`Manager::load`] without any storage call; the first read or write loads it (one
/// [`Storage::load`]), and [`save`](Self::save) writes the changes back (one [`Storage::apply`]
/// of just the changed keys), slides the expiry when due, or does nothing.
///
/// `Clone + Send + Sync + 'static`: clones share one state (an `Arc` around a
/// `tokio::sync::Mutex`), so an HTTP layer keeps one clone, hands another to the handler, and
/// saves after the handler returns.
///
/// Values are MessagePack-encoded ([`Value`]) and decoded lazily, only for the keys asked for.
/// Keys starting with [`RESERVED_PREFIX`](crate::RESERVED_PREFIX) (`"__s."`) belong to the
/// session layer (metadata, flash and temp marks, the login): they are rejected as user keys
/// ([`Error::InvalidInput`](crate::Error::InvalidInput)) and never listed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// use std::sync::Arc;
/// use session_core::{Config, Manager};
/// use session_memory::MemoryStore;
///
/// let manager = Manager::new(Arc::new(MemoryStore::new()), Config::default())?;
/// let session = manager.load(None);
/// session.set("user_name", "ada").await?;
/// session.push("hobbies", "chess".to_string()).await?;
/// assert_eq!(session.push("hobbies", "go".to_string()).await?, 2);
/// assert!(session.has("user_name").await?);
/// assert_eq!(session.keys().await?, ["hobbies", "user_name"]);
/// let out = session.save().await?;
/// assert!(out.wrote && out.cookie.id().is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    manager: Manager,
    state: Mutex<State>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl Session {
    pub(crate) fn new(manager: Manager, id: Option<&str>, client: ClientInfo) -> Session {
        let client_sent = id.is_some_and(|s| !s.is_empty());
        let client_id = id.and_then(|s| SessionId::parse(s).ok());
        Session {
            inner: Arc::new(SessionInner {
                manager,
                state: Mutex::new(State::new(client_sent, client_id, client)),
            }),
        }
    }

    fn store(&self) -> &Arc<dyn Storage> {
        &self.inner.manager.inner.store
    }

    fn timing(&self) -> &meta::Timing {
        &self.inner.manager.inner.timing
    }

    /// The state, loaded.
    async fn state(&self) -> Result<MutexGuard<'_, State>> {
        let mut st = self.inner.state.lock().await;
        if !st.loaded {
            self.load_into(&mut st).await?;
        }
        Ok(st)
    }

    async fn load_into(&self, st: &mut State) -> Result<()> {
        if let Some(id) = st.client_id.clone() {
            let store = self.store();
            if let Some(loaded) = store.load(&id).await? {
                let now = check::now_millis();
                let reserved = Reserved::read(&loaded.data, store.name())?;
                match self.timing().verdict(&reserved, &st.client, now) {
                    Verdict::Live => {
                        let rotate = self.timing().rotation_due(&reserved, now);
                        let deadline = loaded.expires_at.map(check::unix_millis);
                        st.adopt(id, loaded.data, reserved, deadline);
                        if rotate {
                            let destroy_old = self.inner.manager.inner.config.rotate_destroy_old;
                            regen(st, destroy_old);
                        }
                    }
                    Verdict::Expired => st.discard.push(id),
                    Verdict::Refused => {}
                }
            }
        }
        st.loaded = true;
        Ok(())
    }

    /// Used by [`Manager::load_locked`]: takes the lease lock, then loads.
    pub(crate) async fn lock_and_load(&self) -> Result<()> {
        let mut st = self.inner.state.lock().await;
        let Some(id) = st.client_id.clone() else {
            st.loaded = true;
            return Ok(());
        };
        let token = self.inner.manager.acquire(&id).await?;
        st.lock = Some((id, token));
        if let Err(e) = self.load_into(&mut st).await {
            let _ = self.release_lock(&mut st).await;
            return Err(e);
        }
        if !st.existed && st.regen.is_none() {
            // nothing stored to protect: a new session's id is known to nobody else
            self.release_lock(&mut st).await?;
        }
        Ok(())
    }

    async fn release_lock(&self, st: &mut State) -> Result<()> {
        if let Some((id, token)) = st.lock.take() {
            self.store().unlock(&id, &token).await?;
        }
        Ok(())
    }

    // ----- introspection ---------------------------------------------------------------

    /// The current id, once known: after the first access found the session live, or after a
    /// save issued one. `None` before the first access, for a new session not saved yet, and
    /// after [`destroy`](Self::destroy) or [`regenerate`](Self::regenerate) until the next save.
    /// Never touches storage.
    pub async fn id(&self) -> Option<SessionId> {
        self.inner.state.lock().await.id.clone()
    }

    /// Whether a read or write has loaded the session (if not, [`save`](Self::save) does nothing).
    pub async fn is_loaded(&self) -> bool {
        self.inner.state.lock().await.loaded
    }

    /// Whether [`save`](Self::save) has something to write: a change, a regeneration, or flash
    /// data to retire.
    pub async fn is_modified(&self) -> bool {
        let st = self.inner.state.lock().await;
        st.has_changes() || !st.flash_old.is_empty()
    }

    /// The client info this session was loaded with.
    pub async fn client(&self) -> ClientInfo {
        self.inner.state.lock().await.client.clone()
    }

    /// The session's metadata (creation, login, last seen, client); `None` for a session that is
    /// not stored yet.
    pub async fn meta(&self) -> Result<Option<SessionMeta>> {
        Ok(self.state().await?.reserved.public())
    }

    /// The owner set by [`login`](Self::login), if any.
    pub async fn user(&self) -> Result<Option<String>> {
        Ok(self.state().await?.reserved.user.clone())
    }

    // ----- typed access ----------------------------------------------------------------

    /// The value of `key` decoded as `T`; `None` if absent (or temp data past its TTL).
    /// A value of another type is [`Error::Decode`](crate::Error::Decode).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        meta::user_key(key)?;
        let st = self.state().await?;
        st.visible(key, check::now_millis())
            .map(Value::decode)
            .transpose()
    }

    /// The raw value of `key`, undecoded.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>> {
        meta::user_key(key)?;
        let st = self.state().await?;
        Ok(st.visible(key, check::now_millis()).cloned())
    }

    /// Sets `key` to `value` (MessagePack-encoded now). A plain set makes `key` a plain value:
    /// any flash or temp mark on it goes.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        meta::user_key(key)?;
        let v = Value::encode(value)?;
        self.state().await?.set_plain(key, v);
        Ok(())
    }

    /// Whether `key` has a value.
    pub async fn has(&self, key: &str) -> Result<bool> {
        meta::user_key(key)?;
        Ok(self
            .state()
            .await?
            .visible(key, check::now_millis())
            .is_some())
    }

    /// Removes `key` (and its flash or temp mark); fine if absent.
    pub async fn remove(&self, key: &str) -> Result<()> {
        meta::user_key(key)?;
        self.state().await?.remove_user(key);
        Ok(())
    }

    /// Removes several keys; all are checked before any is removed.
    pub async fn remove_many<I, K>(&self, keys: I) -> Result<()>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let keys: Vec<K> = keys.into_iter().collect();
        for k in &keys {
            meta::user_key(k.as_ref())?;
        }
        let mut st = self.state().await?;
        for k in &keys {
            st.remove_user(k.as_ref());
        }
        Ok(())
    }

    /// Removes every user key, flash and temp data included. The session itself, its metadata
    /// and its login stay (use [`destroy`](Self::destroy) to end it). Saved as one `clear`
    /// change, so keys another request added meanwhile go too.
    pub async fn clear(&self) -> Result<()> {
        self.state().await?.clear_user();
        Ok(())
    }

    /// The user keys, sorted (flash and live temp data included, reserved keys never).
    pub async fn keys(&self) -> Result<Vec<String>> {
        Ok(self.state().await?.user_keys(check::now_millis()))
    }

    /// The number of user keys.
    pub async fn len(&self) -> Result<usize> {
        Ok(self.keys().await?.len())
    }

    /// Whether the session has no user keys.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Appends `item` to the list stored at `key` (CodeIgniter's `push`), creating the list if
    /// absent; returns the new length. A value at `key` that is not a list of `T` is
    /// [`Error::Decode`](crate::Error::Decode).
    pub async fn push<T: Serialize + DeserializeOwned>(&self, key: &str, item: T) -> Result<usize> {
        meta::user_key(key)?;
        let mut st = self.state().await?;
        let mut list: Vec<T> = match st.visible(key, check::now_millis()) {
            Some(v) => v.decode()?,
            None => Vec::new(),
        };
        list.push(item);
        let v = Value::encode(&list)?;
        st.set_plain(key, v);
        Ok(list.len())
    }

    // ----- flash data ------------------------------------------------------------------

    /// Sets flash data: readable (with [`get_flash`](Self::get_flash) or [`get`](Self::get)) in
    /// this request and the next load of the session only, then gone, read or not.
    pub async fn set_flash<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        meta::user_key(key)?;
        let mark = meta::flash_mark(key)?;
        let v = Value::encode(value)?;
        self.state()
            .await?
            .set_flash(key, mark, v, check::now_millis());
        Ok(())
    }

    /// The flash value of `key`; `None` if absent or not flash data.
    pub async fn get_flash<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        meta::user_key(key)?;
        let st = self.state().await?;
        if !st.is_flash(key) {
            return Ok(None);
        }
        st.visible(key, check::now_millis())
            .map(Value::decode)
            .transpose()
    }

    /// Keeps the flash value of `key` for one more load; false if `key` is not flash data.
    pub async fn keep_flash(&self, key: &str) -> Result<bool> {
        meta::user_key(key)?;
        Ok(self.state().await?.keep_flash(key))
    }

    /// Turns the existing value of `key` into flash data; false if `key` has no value.
    pub async fn mark_as_flash(&self, key: &str) -> Result<bool> {
        meta::user_key(key)?;
        let mark = meta::flash_mark(key)?;
        Ok(self
            .state()
            .await?
            .mark_flash(key, mark, check::now_millis()))
    }

    // ----- temp data -------------------------------------------------------------------

    /// Sets temp data: gone after `ttl` ([`Config::temp_ttl`](crate::Config::temp_ttl) when
    /// `None`) even if the session lives on.
    pub async fn set_temp<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        meta::user_key(key)?;
        let mark = meta::temp_mark(key)?;
        let deadline = self.temp_deadline(ttl)?;
        let v = Value::encode(value)?;
        let mut st = self.state().await?;
        st.set_plain(key, v);
        st.mark_temp(key, mark, deadline, check::now_millis());
        Ok(())
    }

    fn temp_deadline(&self, ttl: Option<Duration>) -> Result<u64> {
        let ttl = ttl.unwrap_or(self.inner.manager.inner.config.temp_ttl);
        Ok(check::now_millis().saturating_add(check::ttl_millis(ttl)?))
    }

    /// The temp value of `key`; `None` if absent, expired, or not temp data.
    pub async fn get_temp<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        meta::user_key(key)?;
        let st = self.state().await?;
        if !st.is_temp(key) {
            return Ok(None);
        }
        st.visible(key, check::now_millis())
            .map(Value::decode)
            .transpose()
    }

    /// Turns the existing value of `key` into temp data living `ttl` from now; false if `key`
    /// has no value.
    pub async fn mark_as_temp(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        meta::user_key(key)?;
        let mark = meta::temp_mark(key)?;
        let deadline = self.temp_deadline(ttl)?;
        Ok(self
            .state()
            .await?
            .mark_temp(key, mark, deadline, check::now_millis()))
    }

    /// Removes temp data `key` (value and mark) before its TTL; false (and nothing removed) if
    /// `key` is not temp data.
    pub async fn remove_temp(&self, key: &str) -> Result<bool> {
        meta::user_key(key)?;
        let mut st = self.state().await?;
        if !st.is_temp(key) {
            return Ok(false);
        }
        st.remove_user(key);
        Ok(true)
    }

    // ----- lifecycle -------------------------------------------------------------------

    /// Gives the session a new id at the next save, with the same data. With `destroy_old` the
    /// old id is deleted then; without, it stays valid for
    /// [`Config::regenerate_grace`](crate::Config::regenerate_grace) so requests already in
    /// flight with the old cookie finish (their writes to the old id are not carried over).
    pub async fn regenerate(&self, destroy_old: bool) -> Result<()> {
        let mut st = self.state().await?;
        regen(&mut st, destroy_old);
        Ok(())
    }

    /// Deletes the session from storage now (and with it its owner-index binding). Nothing of it
    /// is written back; the request goes on with a fresh, empty session, which is created (with
    /// a new id) only if something is written to it, like a "you have been logged out" flash.
    pub async fn destroy(&self) -> Result<()> {
        let mut st = self.state().await?;
        let store = self.store().clone();
        if st.existed {
            if let Some(id) = &st.id {
                store.remove_all(id).await?;
            }
        }
        if let Some(Regen { old: Some(old), .. }) = &st.regen {
            store.remove_all(old).await?;
        }
        st.reset_fresh();
        st.destroyed = true;
        Ok(())
    }

    /// Logs `user` in: binds the session to its owner (in the owner index, at save, when
    /// [`Config::owner_index`](crate::Config::owner_index) is on) and regenerates the id,
    /// destroying the old one (against session fixation). Restarts the absolute lifetime.
    pub async fn login(&self, user: &str) -> Result<()> {
        check::owner(user)?;
        let mut st = self.state().await?;
        let now = check::now_millis();
        let mut m = st
            .reserved
            .meta
            .clone()
            .unwrap_or_else(|| StoredMeta::new(now, st.client.clone()));
        m.auth = Some(now);
        st.put(META.into(), meta::encode(&m)?);
        st.reserved.meta = Some(m);
        st.put(USER.into(), meta::encode(&user)?);
        st.reserved.user = Some(user.to_string());
        regen(&mut st, true);
        Ok(())
    }

    /// Logs out: unbinds the session from its owner and destroys it (see
    /// [`destroy`](Self::destroy)).
    pub async fn logout(&self) -> Result<()> {
        self.destroy().await
    }

    /// Read-modify-write of one key under the store's lease lock (imi ConnectContext `use`):
    /// takes the lock, reads the currently stored value, applies `f`, writes the result (one
    /// `apply` of that key), releases the lock, and returns the new value. Concurrent `update`s
    /// of one key on one session never lose each other's changes, whichever server runs them.
    ///
    /// Needs [`Capabilities::lock`](crate::Capabilities::lock) (else
    /// [`Error::Unsupported`](crate::Error::Unsupported)); waits for the lock as
    /// [`Config::lock`](crate::Config::lock) says, then fails with
    /// [`Error::Locked`](crate::Error::Locked). A session that is not stored yet (new, or
    /// regenerated in this request) is known to no other request, so it is updated in memory
    /// and written at save. If the session was destroyed meanwhile, nothing is written, the
    /// value is still returned, and the next [`save`](Self::save) reports it as
    /// [`gone`](SaveOutcome::gone).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> session_core::Result<()> {
    /// # use std::sync::Arc;
    /// # use session_core::{Config, Manager};
    /// # let manager = Manager::new(Arc::new(session_memory::MemoryStore::new()), Config::default())?;
    /// let s = manager.load(None);
    /// s.set("visits", &0u32).await?;
    /// let id = s.save().await?.cookie.id().cloned().expect("new session");
    ///
    /// let request = manager.load(Some(id.as_str()));
    /// let n = request.update("visits", |old: Option<u32>| old.unwrap_or(0) + 1).await?;
    /// assert_eq!(n, 1);
    /// # Ok(()) }
    /// ```
    pub async fn update<T, F>(&self, key: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Option<T>) -> T,
    {
        meta::user_key(key)?;
        let mut st = self.state().await?;
        let now = check::now_millis();
        let id = match (&st.id, st.existed) {
            (Some(id), true) => id.clone(),
            _ => {
                let old = st.visible(key, now).map(Value::decode).transpose()?;
                let new = f(old);
                let v = Value::encode(&new)?;
                st.set_plain(key, v);
                return Ok(new);
            }
        };
        let store = self.store().clone();
        let held = matches!(&st.lock, Some((locked, _)) if *locked == id);
        let token = if held {
            None
        } else {
            Some(self.inner.manager.acquire(&id).await?)
        };
        let timing = *self.timing();
        let result = async {
            let temp_expired = st.is_temp(key) && st.visible(key, now).is_none();
            let current = if temp_expired {
                None
            } else {
                store.get(&id, key).await?
            };
            let new = f(current.map(|v| v.decode::<T>()).transpose()?);
            let v = Value::encode(&new)?;
            let Some(ttl) = timing.write_ttl(st.reserved.meta.as_ref(), st.reserved.retired, now)
            else {
                return Ok((new, v, None));
            };
            let mut set = Data::new();
            set.insert(key.to_string(), v.clone());
            let mut remove = Vec::new();
            for mark in [meta::flash_mark(key)?, meta::temp_mark(key)?] {
                if st.contains(&mark) {
                    remove.push(mark);
                }
            }
            let cs = ChangeSet {
                set,
                remove,
                clear: false,
                only_if_exists: true,
            };
            let stored = store.apply(&id, cs, ms(ttl)).await?;
            Ok((new, v, stored.then_some(ttl)))
        }
        .await;
        if let Some(token) = token {
            // a failed release is not an error of the update: the write is done and the lease
            // frees the lock anyway
            let _ = store.unlock(&id, &token).await;
        }
        let (new, v, stored) = result?;
        match stored {
            Some(ttl) => {
                for mark in [meta::flash_mark(key)?, meta::temp_mark(key)?] {
                    st.settle_removed(&mark);
                }
                st.flash_old.remove(key);
                st.settle(key.to_string(), v);
                st.deadline = Some(now.saturating_add(ttl));
            }
            None => {
                st.reset_fresh();
                st.gone = true;
            }
        }
        Ok(new)
    }

    /// Saves the session and says what to do with the cookie:
    ///
    /// * never loaded: no storage call, [`CookieAction::Unchanged`];
    /// * changed: one [`Storage::apply`] of just the changed keys (a session loaded from storage
    ///   is written with [`ChangeSet::only_if_exists`], so one destroyed meanwhile stays
    ///   destroyed and is reported [`gone`](SaveOutcome::gone)); a regeneration writes the whole
    ///   session under the new id and then deletes or retires the old one;
    /// * unchanged: a touch when due (see [`Config::touch_threshold`](crate::Config)), else
    ///   nothing;
    /// * a dead or destroyed session: no write, [`CookieAction::Remove`].
    ///
    /// Releases the lock of [`Manager::load_locked`]. The session stays usable: a later save
    /// writes only what changed since.
    pub async fn save(&self) -> Result<SaveOutcome> {
        let mut st = self.inner.state.lock().await;
        let result = self.save_inner(&mut st).await;
        let released = self.release_lock(&mut st).await;
        let out = result?;
        released?;
        Ok(out)
    }

    async fn save_inner(&self, st: &mut State) -> Result<SaveOutcome> {
        let store = self.store().clone();
        let timing = *self.timing();
        let mut out = SaveOutcome::default();
        for old in std::mem::take(&mut st.discard) {
            store.remove_all(&old).await?;
        }
        if std::mem::take(&mut st.gone) {
            out.gone = true;
            out.cookie = CookieAction::Remove;
            st.client_sent = false;
            st.client_id = None;
            return Ok(out);
        }
        if !st.loaded {
            return Ok(out);
        }
        let now = check::now_millis();
        st.age(now);

        if let Some(regen) = st.regen.take() {
            if st.has_content() {
                let mut m = st
                    .reserved
                    .meta
                    .clone()
                    .unwrap_or_else(|| StoredMeta::new(now, st.client.clone()));
                m.issued = now;
                st.reserved.retired = None;
                st.settle_removed(RETIRED);
                self.stamp(st, Some(m), now)?;
                match timing.write_ttl(st.reserved.meta.as_ref(), None, now) {
                    Some(ttl) => {
                        let id = self.issue_id().await?;
                        store.apply(&id, st.full_set(), ms(ttl)).await?;
                        if let (Some(user), true) =
                            (&st.reserved.user, self.inner.manager.config().owner_index)
                        {
                            store
                                .index_add(user, &id, self.inner.manager.index_ttl())
                                .await?;
                        }
                        finish_write(st, id, ttl, now, &mut out);
                    }
                    None => self.expire_now(st, None, &mut out).await?,
                }
            } else {
                st.reset_fresh();
                self.remove_cookie(st, &mut out);
            }
            if let Some(old) = regen.old {
                if regen.destroy_old {
                    store.remove_all(&old).await?;
                } else {
                    let until = now.saturating_add(timing.grace);
                    let mut set = Data::new();
                    set.insert(RETIRED.to_string(), meta::encode(&until)?);
                    let cs = ChangeSet {
                        set,
                        only_if_exists: true,
                        ..ChangeSet::default()
                    };
                    store.apply(&old, cs, ms(timing.grace)).await?;
                    if st.reserved.user.is_some() && self.inner.manager.config().owner_index {
                        store.index_remove(&old).await?;
                    }
                }
            }
            return Ok(out);
        }

        if !st.pending.is_empty() {
            match (st.existed, st.id.clone()) {
                (true, Some(id)) => {
                    let Some(ttl) =
                        timing.write_ttl(st.reserved.meta.as_ref(), st.reserved.retired, now)
                    else {
                        self.expire_now(st, Some(id), &mut out).await?;
                        return Ok(out);
                    };
                    let m = st
                        .reserved
                        .meta
                        .is_none()
                        .then(|| StoredMeta::new(now, st.client.clone()));
                    self.stamp(st, m, now)?;
                    if store.apply(&id, st.change_set(true), ms(ttl)).await? {
                        finish_write(st, id, ttl, now, &mut out);
                    } else {
                        st.reset_fresh();
                        out.gone = true;
                        self.remove_cookie(st, &mut out);
                    }
                }
                _ if st.has_content() => {
                    let m = st
                        .reserved
                        .meta
                        .clone()
                        .unwrap_or_else(|| StoredMeta::new(now, st.client.clone()));
                    self.stamp(st, Some(m), now)?;
                    let Some(ttl) = timing.write_ttl(st.reserved.meta.as_ref(), None, now) else {
                        self.expire_now(st, None, &mut out).await?;
                        return Ok(out);
                    };
                    let id = self.issue_id().await?;
                    store.apply(&id, st.full_set(), ms(ttl)).await?;
                    finish_write(st, id, ttl, now, &mut out);
                }
                _ => {
                    st.pending = Default::default();
                    self.remove_cookie(st, &mut out);
                }
            }
            return Ok(out);
        }

        match (st.existed, st.id.clone()) {
            (true, Some(id)) => {
                if st.reserved.retired.is_some() {
                    return Ok(out);
                }
                let Some(ttl) = timing.write_ttl(st.reserved.meta.as_ref(), None, now) else {
                    self.expire_now(st, Some(id), &mut out).await?;
                    return Ok(out);
                };
                if timing.touch_due(st.deadline, ttl, now) {
                    let alive = if self.inner.manager.config().track_last_seen {
                        self.stamp(st, None, now)?;
                        store.apply(&id, st.change_set(true), ms(ttl)).await?
                    } else {
                        store.update_ttl(&id, ms(ttl)).await?;
                        true
                    };
                    if alive {
                        st.pending = Default::default();
                        st.deadline = Some(now.saturating_add(ttl));
                        out.touched = true;
                        out.cookie = CookieAction::Refresh {
                            id,
                            expires: check::from_unix_millis(now.saturating_add(ttl)),
                        };
                    } else {
                        st.reset_fresh();
                        out.gone = true;
                        self.remove_cookie(st, &mut out);
                    }
                }
            }
            _ => self.remove_cookie(st, &mut out),
        }
        Ok(out)
    }

    /// Records "last seen" (and the metadata `m`, when given) as pending writes.
    fn stamp(&self, st: &mut State, m: Option<StoredMeta>, now: u64) -> Result<()> {
        if let Some(m) = m {
            st.put(META.into(), meta::encode(&m)?);
            st.reserved.meta = Some(m);
        }
        let seen = StoredSeen {
            at: now,
            ip: st.client.ip,
        };
        st.put(SEEN.into(), meta::encode(&seen)?);
        st.reserved.seen = Some(seen);
        Ok(())
    }

    /// A session past its absolute deadline at save: delete it, tell the client to drop it.
    async fn expire_now(
        &self,
        st: &mut State,
        id: Option<SessionId>,
        out: &mut SaveOutcome,
    ) -> Result<()> {
        if let Some(id) = id {
            self.store().remove_all(&id).await?;
        }
        st.reset_fresh();
        self.remove_cookie(st, out);
        Ok(())
    }

    fn remove_cookie(&self, st: &mut State, out: &mut SaveOutcome) {
        if st.client_sent || st.destroyed {
            out.cookie = CookieAction::Remove;
        }
        st.client_sent = false;
        st.client_id = None;
        st.destroyed = false;
    }

    /// A new id: the driver's choice, else a generated one.
    async fn issue_id(&self) -> Result<SessionId> {
        let ttl = ms(self.timing().idle);
        match self.store().new(ttl).await? {
            Some(id) => Ok(id),
            None => SessionId::generate(),
        }
    }
}

/// Schedules a regeneration (keeping the first old id if one is already scheduled).
fn regen(st: &mut State, destroy_old: bool) {
    match &mut st.regen {
        Some(r) => r.destroy_old |= destroy_old,
        None => {
            let old = if st.existed { st.id.clone() } else { None };
            st.regen = Some(Regen { old, destroy_old });
        }
    }
    st.id = None;
    st.existed = false;
    st.deadline = None;
}

fn finish_write(st: &mut State, id: SessionId, ttl: u64, now: u64, out: &mut SaveOutcome) {
    let expires = check::from_unix_millis(now.saturating_add(ttl));
    out.wrote = true;
    out.cookie = if st.client_id.as_ref() == Some(&id) {
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
    st.pending = Default::default();
    st.client_id = Some(id.clone());
    st.client_sent = true;
    st.destroyed = false;
    st.id = Some(id);
    st.existed = true;
    st.deadline = Some(now.saturating_add(ttl));
}
