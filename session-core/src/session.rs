//! The [`Session`] of one request: lazy loading, typed reads and writes, flash and temp data,
//! the lifecycle (regenerate, destroy, login), the locked update, and the save.
//!
//! The session runs the storage calls; every change of its state is a transition of
//! [`State`](crate::state::State). It shares the store and the config with its manager through a
//! [`Context`], and never needs the manager itself.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::lock::{Mutex, MutexGuard};
use serde::de::DeserializeOwned;
use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

use crate::check;
use crate::context::Context;
use crate::error::Result;
use crate::events::SessionEvent;
use crate::expiry::{Verdict, millis};
use crate::id::{IncomingId, SessionId};
use crate::meta::{ClientInfo, SessionMeta};
use crate::outcome::SaveOutcome;
use crate::reserved::{self, Reserved};
use crate::state::{Regen, State};
use crate::value::{Data, Value};

/// The session of one request.
///
/// Made by [`Manager::load`](crate::Manager::load) without any storage call; the first read or
/// write loads it (one [`Storage::load`](crate::Storage::load)), and [`save`](Self::save) writes
/// the changes back (one [`Storage::apply`](crate::Storage::apply) of just the changed keys),
/// slides the expiry when due, or does nothing.
///
/// `Clone + Send + Sync + 'static`: clones share one state (an `Arc` around a
/// `futures_util::lock::Mutex`), so an HTTP layer keeps one clone, hands another to the handler, and
/// saves after the handler returns.
///
/// Values are MessagePack-encoded ([`Value`](crate::Value)) and decoded lazily, only for the
/// keys asked for. Keys starting with [`RESERVED_PREFIX`](crate::RESERVED_PREFIX) (`"__s."`)
/// belong to the session layer (metadata, flash and temp marks, the login): they are rejected
/// as user keys ([`Error::InvalidInput`](crate::Error::InvalidInput)) and never listed.
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
/// session.push("hobbies", "chess").await?;
/// assert_eq!(session.push("hobbies", "go").await?, 2);
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
    ctx: Arc<Context>,
    state: Mutex<State>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// The session of a request that brought `incoming`; no storage call.
    pub(crate) fn new(ctx: Arc<Context>, incoming: IncomingId, client: ClientInfo) -> Session {
        Session {
            inner: Arc::new(SessionInner {
                ctx,
                state: Mutex::new(State::new(incoming, client)),
            }),
        }
    }

    fn ctx(&self) -> &Context {
        &self.inner.ctx
    }

    /// The state's lock: an async mutex (held across the store's calls) whose free lock costs
    /// one atomic operation to take and one to give back, and never a trip through tokio's
    /// co-operative budget (tokio's `Mutex::lock` spends budget even when the lock is free, and
    /// a task whose budget runs out is parked behind every other runnable task, which put
    /// milliseconds into the p99 of a store that never waits itself; issue 14).
    async fn lock_state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().await
    }

    /// The state, loaded.
    async fn state(&self) -> Result<MutexGuard<'_, State>> {
        let mut st = self.lock_state().await;
        if !st.is_loaded() {
            self.load_into(&mut st).await?;
        }
        Ok(st)
    }

    /// The first access: loads the id the client holds, if it is valid, and adopts the session
    /// if it is live and the client passes the fingerprint checks.
    async fn load_into(&self, st: &mut State) -> Result<()> {
        let ctx = self.ctx();
        if let Some(id) = st.cookie_id()
            && let Some(loaded) = ctx.store.load(&id).await?
        {
            let reserved = Reserved::read_snapshot(&loaded.data, ctx.store.name())?;
            // the clock only when the verdict or the rotation depends on it
            let now = if ctx.timing.needs_clock(&reserved) {
                check::now_millis()
            } else {
                0
            };
            match ctx.timing.verdict(&reserved, st.client(), now)? {
                Verdict::Live => {
                    let rotate = ctx.timing.rotation_due(&reserved, now)?;
                    let deadline = loaded.expires_at.map(check::unix_millis);
                    st.adopt(id, loaded.data, reserved, deadline);
                    if rotate {
                        st.regenerate(ctx.config.rotate_destroy_old);
                    }
                }
                Verdict::Expired => st.discard_at_save(id),
                Verdict::Refused => {}
            }
        }
        st.set_loaded();
        Ok(())
    }

    /// Used by [`Manager::load_locked`](crate::Manager::load_locked): takes the lease lock, then
    /// loads.
    pub(crate) async fn lock_and_load(&self) -> Result<()> {
        let mut st = self.lock_state().await;
        let Some(id) = st.cookie_id() else {
            st.set_loaded();
            return Ok(());
        };
        let token = self.ctx().acquire(&id).await?;
        st.hold_lock(id, token);
        if let Err(e) = self.load_into(&mut st).await {
            let _ = self.release_lock(&mut st).await;
            return Err(e);
        }
        if !st.guards_stored() {
            // nothing stored to protect: a new session's id is known to nobody else
            self.release_lock(&mut st).await?;
        }
        Ok(())
    }

    async fn release_lock(&self, st: &mut State) -> Result<()> {
        if let Some((id, token)) = st.take_lock() {
            self.ctx().store.unlock(&id, &token).await?;
        }
        Ok(())
    }

    // ----- introspection ---------------------------------------------------------------

    /// The current id, once known: after the first access found the session live, or after a
    /// save issued one. `None` before the first access, for a new session not saved yet, and
    /// after [`destroy`](Self::destroy) or [`regenerate`](Self::regenerate) until the next save.
    /// Never touches storage.
    pub async fn id(&self) -> Option<SessionId> {
        self.lock_state().await.id().cloned()
    }

    /// Whether a read or write has loaded the session (if not, [`save`](Self::save) does nothing).
    pub async fn is_loaded(&self) -> bool {
        self.lock_state().await.is_loaded()
    }

    /// Whether [`save`](Self::save) has something to write: a change, a regeneration, or flash
    /// data to retire.
    pub async fn is_modified(&self) -> bool {
        self.lock_state().await.is_modified()
    }

    /// The client info this session was loaded with.
    pub async fn client(&self) -> ClientInfo {
        self.lock_state().await.client().clone()
    }

    /// The session's metadata (creation, login, last seen, client); `None` for a session that is
    /// not stored yet.
    pub async fn meta(&self) -> Result<Option<SessionMeta>> {
        self.state().await?.meta()
    }

    /// Whether the session is stored: the client's id was found live (this loads it), or a save
    /// has stored it since.
    pub async fn exists(&self) -> Result<bool> {
        Ok(self.state().await?.stored_id().is_some())
    }

    /// The owner set by [`login`](Self::login), if any.
    pub async fn user(&self) -> Result<Option<String>> {
        Ok(self.state().await?.user().map(str::to_string))
    }

    // ----- lifetime ----------------------------------------------------------------------

    /// Gives this session its own idle timeout, or with `None` the manager's again
    /// ([`Config::idle_ttl`](crate::Config::idle_ttl)): tower-sessions' `set_expiry`,
    /// axum_session's `set_longterm`, a "remember me" box.
    ///
    /// Kept with the session (the reserved key `__s.ttl`), so every later request, on any
    /// server, writes and touches the session with it: each write, and each touch when due
    /// (the [`Config::touch_threshold`](crate::Config::touch_threshold) is then a fraction of
    /// this TTL), slides the expiry to now + `ttl`, and the save's
    /// [`CookieAction`](crate::CookieAction) carries that expiry (an HTTP layer makes it the
    /// cookie's `Max-Age`). Written at the next [`save`](Self::save), which writes with the new
    /// TTL; it survives [`clear`](Self::clear), [`regenerate`](Self::regenerate) and
    /// [`login`](Self::login), not [`destroy`](Self::destroy). Longer or shorter than the
    /// manager's idle TTL alike. A TTL alone does not create a session (like the metadata).
    ///
    /// [`Config::absolute_lifetime`](crate::Config::absolute_lifetime), when set, still ends
    /// the session, and bounds `ttl`: a TTL above it, zero, or above
    /// [`check::MAX_TTL`](crate::check::MAX_TTL) is [`Error::InvalidInput`](crate::Error::InvalidInput).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> session_core::Result<()> {
    /// # use std::sync::Arc;
    /// use std::time::{Duration, SystemTime};
    /// use session_core::{Config, CookieAction, Manager};
    /// # let manager = Manager::new(Arc::new(session_memory::MemoryStore::new()), Config::default())?;
    ///
    /// let s = manager.load(None);
    /// s.login("ada").await?;
    /// let month = Duration::from_secs(30 * 24 * 3600);
    /// s.set_idle_ttl(Some(month)).await?; // "remember me"
    /// let CookieAction::Set { expires, .. } = s.save().await?.cookie else { unreachable!() };
    /// assert!(expires > SystemTime::now() + Duration::from_secs(29 * 24 * 3600));
    /// assert_eq!(s.expires_at().await?, Some(expires));
    /// assert_eq!(s.idle_ttl().await?, Some(month));
    /// # Ok(()) }
    /// ```
    pub async fn set_idle_ttl(&self, ttl: Option<Duration>) -> Result<()> {
        let ms = ttl.map(|t| self.ctx().timing.session_ttl(t)).transpose()?;
        self.state().await?.set_own_ttl(ms)
    }

    /// This session's own idle timeout, set by [`set_idle_ttl`](Self::set_idle_ttl); `None`
    /// when it uses the manager's ([`Config::idle_ttl`](crate::Config::idle_ttl)).
    pub async fn idle_ttl(&self) -> Result<Option<Duration>> {
        Ok(self.state().await?.own_ttl().map(millis))
    }

    /// When the stored session expires (tower-sessions' `expiry_date`): the deadline it was
    /// loaded with, or the one the last [`save`](Self::save) gave it. `None` for a session not
    /// stored (new, or destroyed or regenerated and not saved since), and for a loaded session
    /// whose driver does not report deadlines
    /// ([`Capabilities::load_with_deadline`](crate::Capabilities::load_with_deadline)) until
    /// a save writes it. The absolute lifetime may end the session earlier than a later write
    /// would suggest, never later than this.
    pub async fn expires_at(&self) -> Result<Option<SystemTime>> {
        Ok(self
            .state()
            .await?
            .stored_deadline()
            .map(check::from_unix_millis))
    }

    // ----- typed access ----------------------------------------------------------------

    /// The value of `key` decoded as `T`; `None` if absent (or temp data past its TTL).
    /// A value of another type is [`Error::Decode`](crate::Error::Decode).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        reserved::user_key(key)?;
        let st = self.state().await?;
        st.visible_at(key, check::now_millis)
            .map(|v| v.decode())
            .transpose()
    }

    /// The raw value of `key`, undecoded.
    pub async fn get_value(&self, key: &str) -> Result<Option<Value>> {
        reserved::user_key(key)?;
        let st = self.state().await?;
        Ok(st.visible_at(key, check::now_millis).map(|v| v.to_value()))
    }

    /// Sets `key` to `value` (MessagePack-encoded now). A plain set makes `key` a plain value:
    /// any flash or temp mark on it goes.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        reserved::user_key(key)?;
        let v = Value::encode(value)?;
        self.state().await?.set_plain(key, v);
        Ok(())
    }

    /// Sets every `(key, value)` of `items` (CodeIgniter's `set(array)`), each as
    /// [`set`](Self::set) would: every key is checked and every value encoded before any is
    /// set, so an invalid key or a value that does not encode sets nothing.
    ///
    /// The values share one type; values of different types are set with one `set` each (a
    /// set is only recorded in memory, written by the one apply of [`save`](Self::save), so
    /// several `set`s cost no more storage calls than one `set_many`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> session_core::Result<()> {
    /// # use std::sync::Arc;
    /// # use session_core::{Config, Manager};
    /// # let manager = Manager::new(Arc::new(session_memory::MemoryStore::new()), Config::default())?;
    /// let s = manager.load(None);
    /// s.set_many([("username", "johndoe"), ("email", "johndoe@some-site.com")]).await?;
    /// assert_eq!(s.get::<String>("email").await?.as_deref(), Some("johndoe@some-site.com"));
    /// # Ok(()) }
    /// ```
    pub async fn set_many<'a, I, K, T>(&self, items: I) -> Result<()>
    where
        I: IntoIterator<Item = (K, &'a T)>,
        K: AsRef<str>,
        T: Serialize + ?Sized + 'a,
    {
        let mut encoded = Vec::new();
        for (key, value) in items {
            reserved::user_key(key.as_ref())?;
            encoded.push((key, Value::encode(value)?));
        }
        let mut st = self.state().await?;
        for (key, value) in encoded {
            st.set_plain(key.as_ref(), value);
        }
        Ok(())
    }

    /// Whether `key` has a value.
    pub async fn has(&self, key: &str) -> Result<bool> {
        reserved::user_key(key)?;
        Ok(self
            .state()
            .await?
            .visible_at(key, check::now_millis)
            .is_some())
    }

    /// Removes `key` (and its flash or temp mark); fine if absent.
    pub async fn remove(&self, key: &str) -> Result<()> {
        reserved::user_key(key)?;
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
            reserved::user_key(k.as_ref())?;
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

    /// Every user key with its value (CodeIgniter's `get()` without a key), flash data and
    /// live temp data included, reserved keys never: the same keys as [`keys`](Self::keys).
    /// Decode each value with [`Value::decode`](crate::Value::decode).
    ///
    /// CodeIgniter's `get()` leaves flash and temp data out; here they are in, as in
    /// [`keys`](Self::keys) and [`len`](Self::len). [`all_flash`](Self::all_flash) and
    /// [`all_temp`](Self::all_temp) list them apart.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> session_core::Result<()> {
    /// # use std::sync::Arc;
    /// # use session_core::{Config, Manager};
    /// # let manager = Manager::new(Arc::new(session_memory::MemoryStore::new()), Config::default())?;
    /// let s = manager.load(None);
    /// s.set("name", "ada").await?;
    /// s.set("visits", &3u32).await?;
    /// let all = s.all().await?;
    /// assert_eq!(all.len(), 2);
    /// assert_eq!(all["visits"].decode::<u32>()?, 3);
    /// # Ok(()) }
    /// ```
    pub async fn all(&self) -> Result<Data> {
        let st = self.state().await?;
        Ok(st.user_entries(check::now_millis(), |_| true))
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
    /// absent; returns the new length.
    ///
    /// Takes the item by reference, like [`set`](Self::set) and every other write: `push("tags",
    /// "rust")` pushes a string, `push("ids", &7u32)` a number. The stored list is decoded as a
    /// list of `T`'s owned form (`Vec<String>` for a `&str` item; `Vec<T>` for a `T: Clone`),
    /// so a value at `key` that is not such a list is [`Error::Decode`](crate::Error::Decode).
    pub async fn push<T>(&self, key: &str, item: &T) -> Result<usize>
    where
        T: Serialize + ToOwned + ?Sized,
        T::Owned: Serialize + DeserializeOwned,
    {
        reserved::user_key(key)?;
        let mut st = self.state().await?;
        let list: Vec<T::Owned> = match st.visible_at(key, check::now_millis) {
            Some(v) => v.decode()?,
            None => Vec::new(),
        };
        let v = Value::encode(&Appended { list: &list, item })?;
        st.set_plain(key, v);
        Ok(list.len() + 1)
    }

    // ----- flash data ------------------------------------------------------------------

    /// Sets flash data: readable (with [`get_flash`](Self::get_flash) or [`get`](Self::get)) in
    /// this request and the next load of the session only, then gone, read or not.
    pub async fn set_flash<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        reserved::user_key(key)?;
        let mark = reserved::flash_mark(key)?;
        let v = Value::encode(value)?;
        self.state()
            .await?
            .set_flash(key, mark, v, check::now_millis());
        Ok(())
    }

    /// The flash value of `key`; `None` if absent or not flash data.
    pub async fn get_flash<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        reserved::user_key(key)?;
        let st = self.state().await?;
        if !st.is_flash(key) {
            return Ok(None);
        }
        st.visible_at(key, check::now_millis)
            .map(|v| v.decode())
            .transpose()
    }

    /// Every flash value by key (CodeIgniter's `getFlashdata()` without a key); empty when
    /// there is none.
    pub async fn all_flash(&self) -> Result<Data> {
        let st = self.state().await?;
        Ok(st.user_entries(check::now_millis(), |k| st.is_flash(k)))
    }

    /// Keeps the flash value of `key` for one more load; false if `key` is not flash data.
    pub async fn keep_flash(&self, key: &str) -> Result<bool> {
        reserved::user_key(key)?;
        Ok(self.state().await?.keep_flash(key))
    }

    /// Turns the existing value of `key` into flash data; false if `key` has no value.
    pub async fn mark_as_flash(&self, key: &str) -> Result<bool> {
        reserved::user_key(key)?;
        let mark = reserved::flash_mark(key)?;
        Ok(self
            .state()
            .await?
            .mark_flash(key, mark, check::now_millis()))
    }

    /// Turns the existing values of `keys` into flash data (CodeIgniter's
    /// `markAsFlashdata(array)`): all of them, or, when one has no value, none (false, as in
    /// CodeIgniter). Every key is checked first; an invalid one is
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) and marks nothing.
    pub async fn mark_many_as_flash<I, K>(&self, keys: I) -> Result<bool>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let mut marks = Vec::new();
        for key in keys {
            let key = key.as_ref();
            reserved::user_key(key)?;
            marks.push((key.to_string(), reserved::flash_mark(key)?));
        }
        Ok(self
            .state()
            .await?
            .mark_many_flash(marks, check::now_millis()))
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
        reserved::user_key(key)?;
        let mark = reserved::temp_mark(key)?;
        let deadline = self.temp_deadline(ttl)?;
        let v = Value::encode(value)?;
        let mut st = self.state().await?;
        st.set_plain(key, v);
        st.mark_temp(key, mark, deadline, check::now_millis());
        Ok(())
    }

    fn temp_deadline(&self, ttl: Option<Duration>) -> Result<u64> {
        let ttl = ttl.unwrap_or(self.inner.ctx.config.temp_ttl);
        Ok(check::now_millis().saturating_add(check::ttl_millis(ttl)?))
    }

    /// The temp value of `key`; `None` if absent, expired, or not temp data.
    pub async fn get_temp<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        reserved::user_key(key)?;
        let st = self.state().await?;
        if !st.is_temp(key) {
            return Ok(None);
        }
        st.visible_at(key, check::now_millis)
            .map(|v| v.decode())
            .transpose()
    }

    /// Turns the existing value of `key` into temp data living `ttl` from now; false if `key`
    /// has no value.
    pub async fn mark_as_temp(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        reserved::user_key(key)?;
        let mark = reserved::temp_mark(key)?;
        let deadline = self.temp_deadline(ttl)?;
        Ok(self
            .state()
            .await?
            .mark_temp(key, mark, deadline, check::now_millis()))
    }

    /// Every live temp value by key (CodeIgniter's `getTempdata()` without a key); empty when
    /// there is none.
    pub async fn all_temp(&self) -> Result<Data> {
        let st = self.state().await?;
        Ok(st.user_entries(check::now_millis(), |k| st.is_temp(k)))
    }

    /// Turns the existing values of `keys` into temp data living `ttl` from now
    /// ([`Config::temp_ttl`](crate::Config::temp_ttl) when `None`; CodeIgniter's
    /// `markAsTempdata(array, ttl)`): all of them, or, when one has no value, none (false, as
    /// in CodeIgniter). Every key is checked first; an invalid one is
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) and marks nothing.
    pub async fn mark_many_as_temp<I, K>(&self, keys: I, ttl: Option<Duration>) -> Result<bool>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let deadline = self.temp_deadline(ttl)?;
        self.mark_temp_deadlines(keys.into_iter().map(|k| (k, deadline)))
            .await
    }

    /// Like [`mark_many_as_temp`](Self::mark_many_as_temp) with a TTL per key (CodeIgniter's
    /// `markAsTempdata(['item' => 300, 'item2' => 240])`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> session_core::Result<()> {
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use session_core::{Config, Manager};
    /// # let manager = Manager::new(Arc::new(session_memory::MemoryStore::new()), Config::default())?;
    /// let s = manager.load(None);
    /// s.set_many([("item", &1u32), ("item2", &2u32)]).await?;
    /// let marked = s
    ///     .mark_many_as_temp_each([
    ///         ("item", Duration::from_secs(300)),
    ///         ("item2", Duration::from_secs(240)),
    ///     ])
    ///     .await?;
    /// assert!(marked);
    /// assert_eq!(s.all_temp().await?.len(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn mark_many_as_temp_each<I, K>(&self, items: I) -> Result<bool>
    where
        I: IntoIterator<Item = (K, Duration)>,
        K: AsRef<str>,
    {
        let mut deadlines = Vec::new();
        for (key, ttl) in items {
            deadlines.push((key, self.temp_deadline(Some(ttl))?));
        }
        self.mark_temp_deadlines(deadlines).await
    }

    /// Marks each `(key, deadline)` as temp data, all or none.
    async fn mark_temp_deadlines<I, K>(&self, items: I) -> Result<bool>
    where
        I: IntoIterator<Item = (K, u64)>,
        K: AsRef<str>,
    {
        let mut marks = Vec::new();
        for (key, deadline) in items {
            let key = key.as_ref();
            reserved::user_key(key)?;
            marks.push((key.to_string(), reserved::temp_mark(key)?, deadline));
        }
        Ok(self
            .state()
            .await?
            .mark_many_temp(marks, check::now_millis()))
    }

    /// Removes temp data `key` (value and mark) before its TTL; false (and nothing removed) if
    /// `key` is not temp data.
    pub async fn remove_temp(&self, key: &str) -> Result<bool> {
        reserved::user_key(key)?;
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
        self.state().await?.regenerate(destroy_old);
        Ok(())
    }

    /// Deletes the session from storage now (and with it its owner-index binding). Nothing of it
    /// is written back; the request goes on with a fresh, empty session, which is created (with
    /// a new id) only if something is written to it, like a "you have been logged out" flash.
    pub async fn destroy(&self) -> Result<()> {
        let mut st = self.state().await?;
        let user = st.stored_owner().map(str::to_string);
        for id in st.stored_ids() {
            self.ctx().store.remove_all(&id).await?;
            self.ctx()
                .emit(|| SessionEvent::Destroyed {
                    id,
                    user: user.clone(),
                })
                .await;
        }
        st.mark_destroyed();
        Ok(())
    }

    /// Logs `user` in: binds the session to its owner (in the owner index, at save, when
    /// [`Config::owner_index`](crate::Config::owner_index) is on) and regenerates the id,
    /// destroying the old one (against session fixation). Restarts the absolute lifetime.
    pub async fn login(&self, user: &str) -> Result<()> {
        check::owner(user)?;
        self.state().await?.log_in(user, check::now_millis())
    }

    /// Records `user` as the session's owner (and the login time), or with `None` removes the
    /// owner, **without** changing the id; written at the next save, which keeps the owner
    /// index in step and reports [`SessionEvent::LoggedIn`] or [`SessionEvent::LoggedOut`] to
    /// the manager's observers.
    ///
    /// For a sign-in in an HTTP handler use [`login`](Self::login), which also regenerates the
    /// id against session fixation. `set_user` is for callers that cannot change the id the
    /// client holds: a connection registry logging in a session by id
    /// ([`Manager::login_session`](crate::Manager::login_session)), an admin tool, or a "log
    /// out but keep the cart" that keeps the session (`set_user(None)`).
    pub async fn set_user(&self, user: Option<&str>) -> Result<()> {
        if let Some(user) = user {
            check::owner(user)?;
        }
        self.state().await?.set_owner(user, check::now_millis())
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
        reserved::user_key(key)?;
        let mut st = self.state().await?;
        let now = check::now_millis();
        let Some(id) = st.stored_id() else {
            // not stored yet, so known to no other request: update in memory, written at save
            let new = f(st.visible(key, now).map(|v| v.decode()).transpose()?);
            st.set_plain(key, Value::encode(&new)?);
            return Ok(new);
        };
        let token = if st.holds_lock(&id) {
            None
        } else {
            Some(self.ctx().acquire(&id).await?)
        };
        let result = self.update_stored(&st, &id, key, f, now).await;
        if let Some(token) = token {
            // a failed release is not an error of the update: the write is done and the lease
            // frees the lock anyway
            let _ = self.ctx().store.unlock(&id, &token).await;
        }
        let (new, stored) = result?;
        match stored {
            Some((value, ttl)) => st.settle_single_write(key, value, now.saturating_add(ttl)),
            None => st.found_gone(),
        }
        Ok(new)
    }

    /// The locked part of [`update`](Self::update): reads the stored value of `key`, applies `f`
    /// and writes the result. Returns the new value, and the value and TTL written unless the
    /// session was gone (or past its deadlines).
    async fn update_stored<T, F>(
        &self,
        st: &State,
        id: &SessionId,
        key: &str,
        f: F,
        now: u64,
    ) -> Result<(T, Option<(Value, u64)>)>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Option<T>) -> T,
    {
        let store = &self.ctx().store;
        let temp_expired = st.is_temp(key) && st.visible(key, now).is_none();
        let current = if temp_expired {
            None
        } else {
            store.get(id, key).await?
        };
        let new = f(current.map(|v| v.decode::<T>()).transpose()?);
        let value = Value::encode(&new)?;
        let Some(ttl) = st.write_ttl(&self.ctx().timing, now)? else {
            return Ok((new, None));
        };
        let change = st.single_write(key, value.clone())?;
        let stored = store.apply(id, change, millis(ttl)).await?;
        Ok((new, stored.then_some((value, ttl))))
    }

    /// Saves the session and says what to do with the cookie:
    ///
    /// * never loaded: no storage call, [`CookieAction::Unchanged`](crate::CookieAction), or
    ///   [`CookieAction::Remove`](crate::CookieAction::Remove) when the client sent an invalid
    ///   id ([`IncomingId::Invalid`]);
    /// * changed: one [`Storage::apply`](crate::Storage::apply) of just the changed keys (a
    ///   session loaded from storage is written with
    ///   [`ChangeSet::only_if_exists`](crate::ChangeSet::only_if_exists), so one destroyed
    ///   meanwhile stays destroyed and is reported [`gone`](SaveOutcome::gone)); a regeneration
    ///   writes the whole session under the new id and then deletes or retires the old one;
    /// * unchanged: a touch when due (see [`Config::touch_threshold`](crate::Config)), else
    ///   nothing;
    /// * a dead, destroyed or invalid session: no write,
    ///   [`CookieAction::Remove`](crate::CookieAction::Remove).
    ///
    /// Releases the lock of [`Manager::load_locked`](crate::Manager::load_locked). The session
    /// stays usable: a later save writes only what changed since.
    pub async fn save(&self) -> Result<SaveOutcome> {
        let mut st = self.lock_state().await;
        let result = self.save_inner(&mut st).await;
        let released = self.release_lock(&mut st).await;
        let out = result?;
        released?;
        Ok(out)
    }

    async fn save_inner(&self, st: &mut State) -> Result<SaveOutcome> {
        // Every path that calls the store runs in a future of its own, boxed, and the read-only
        // path that calls nothing (`touch_if_due` with no touch due) allocates none: inline,
        // their states made the future of every save 1,224 bytes, and a future that large,
        // boxed by the caller's `async_trait` or `tokio::spawn`, is past the size glibc's
        // per-thread cache takes (1,032 bytes), so every request locked a malloc arena to
        // allocate and free it: on Redis at 256 in flight, boxed paths read 4-12% faster with
        // 17% fewer context switches (BENCHMARKS.md, sixth session). Now the save's future is
        // 344 bytes and a write's box (`save_changes`, its rare paths boxed in turn) 400.
        let discarded = st.take_discarded();
        if !discarded.is_empty() {
            Box::pin(self.discard(discarded)).await?;
        }
        if let Some(out) = st.report_gone() {
            return Ok(out);
        }
        if !st.is_loaded() {
            return Ok(st.unloaded_outcome());
        }
        let now = check::now_millis();
        st.age(now);
        if let Some(regen) = st.take_regen() {
            return Box::pin(self.save_with_regen(st, regen, now)).await;
        }
        match (st.has_pending(), st.stored_id()) {
            (true, Some(id)) => Box::pin(self.save_changes(st, id, now)).await,
            (true, None) if st.has_content() => Box::pin(self.save_new(st, now)).await,
            (false, Some(id)) => self.touch_if_due(st, id, now).await,
            (_, None) => Ok(st.unstored()),
        }
    }

    /// Deletes the records found past their absolute deadline at load.
    async fn discard(&self, discarded: Vec<SessionId>) -> Result<()> {
        for old in discarded {
            self.ctx().store.remove_all(&old).await?;
            self.ctx()
                .emit(|| SessionEvent::Destroyed {
                    id: old,
                    user: None,
                })
                .await;
        }
        Ok(())
    }

    /// A save with a regeneration scheduled: the session under its new id, the old id retired
    /// or deleted, and the events.
    async fn save_with_regen(&self, st: &mut State, regen: Regen, now: u64) -> Result<SaveOutcome> {
        let out = self.save_regenerated(st, now).await?;
        let change = st.take_owner_change();
        let old = regen.old.clone();
        self.release_old_id(st, regen, change.as_ref(), now).await?;
        if let Some(old) = old {
            let user = change
                .as_ref()
                .map_or(st.user(), |(before, _)| before.as_deref());
            let event = match st.id() {
                Some(new) => SessionEvent::Renewed {
                    old,
                    new: new.clone(),
                },
                None => SessionEvent::Destroyed {
                    id: old,
                    user: user.map(str::to_string),
                },
            };
            self.ctx().emit(|| event).await;
        }
        self.report_owner_change(st, change).await;
        Ok(out)
    }

    /// A regeneration: the whole session under a new id, unless it holds nothing worth storing.
    async fn save_regenerated(&self, st: &mut State, now: u64) -> Result<SaveOutcome> {
        if !st.has_content() {
            return Ok(st.drop_session());
        }
        st.stamp_reissue(now)?;
        self.write_under_new_id(st, now).await
    }

    /// A new session with something worth storing: created under a new id.
    async fn save_new(&self, st: &mut State, now: u64) -> Result<SaveOutcome> {
        st.stamp_create(now)?;
        let out = self.write_under_new_id(st, now).await?;
        let change = st.take_owner_change();
        self.report_owner_change(st, change).await;
        Ok(out)
    }

    /// Tells the observers about an owner change a save just stored (under the current id).
    async fn report_owner_change(
        &self,
        st: &State,
        change: Option<(Option<String>, Option<String>)>,
    ) {
        let (Some(id), Some((before, now))) = (st.id(), change) else {
            return;
        };
        // boxed, as an owner change is rare: inline, the events' futures took 424 bytes of
        // every write's future (see `save_inner`)
        Box::pin(self.emit_owner_change(id, before, now)).await;
    }

    /// The events of an owner change: `LoggedOut` for the owner before, `LoggedIn` for the new.
    async fn emit_owner_change(&self, id: &SessionId, before: Option<String>, now: Option<String>) {
        if let Some(user) = before {
            self.ctx()
                .emit(|| SessionEvent::LoggedOut {
                    id: id.clone(),
                    user,
                })
                .await;
        }
        if let Some(user) = now {
            self.ctx()
                .emit(|| SessionEvent::LoggedIn {
                    id: id.clone(),
                    user,
                })
                .await;
        }
    }

    /// Writes the whole session under a new id (and binds it to its owner after a login).
    async fn write_under_new_id(&self, st: &mut State, now: u64) -> Result<SaveOutcome> {
        let ctx = self.ctx();
        let Some(ttl) = st.write_ttl(&ctx.timing, now)? else {
            return Ok(st.drop_session());
        };
        let id = ctx.issue_id(ttl).await?;
        ctx.store.apply(&id, st.full_set(), millis(ttl)).await?;
        if let (Some(user), true) = (st.user(), ctx.config.owner_index) {
            ctx.store
                .index_add(user, &id, ctx.index_ttl(st.own_ttl()))
                .await?;
        }
        Ok(st.written(id, ttl, now))
    }

    /// After a regeneration: deletes the old id, or retires it for the grace period.
    async fn release_old_id(
        &self,
        st: &State,
        regen: Regen,
        change: Option<&(Option<String>, Option<String>)>,
        now: u64,
    ) -> Result<()> {
        let Some(old) = regen.old else {
            return Ok(());
        };
        let ctx = self.ctx();
        if regen.destroy_old {
            return ctx.store.remove_all(&old).await;
        }
        let grace = ctx.timing.grace;
        let retire = reserved::retirement(now.saturating_add(grace))?;
        ctx.store.apply(&old, retire, millis(grace)).await?;
        // the owner the old record had: the one before this save's change, if any
        let had_owner = change.map_or(st.user().is_some(), |(before, _)| before.is_some());
        if had_owner && ctx.config.owner_index {
            ctx.store.index_remove(&old).await?;
        }
        Ok(())
    }

    /// Changes to a stored session: one apply of just the changed keys, only if it still exists.
    async fn save_changes(&self, st: &mut State, id: SessionId, now: u64) -> Result<SaveOutcome> {
        let ctx = self.ctx();
        let Some(ttl) = st.write_ttl(&ctx.timing, now)? else {
            return Box::pin(self.expire_now(st, id)).await;
        };
        st.stamp_update(now)?;
        if !ctx
            .store
            .apply(&id, st.change_set(true), millis(ttl))
            .await?
        {
            return Ok(st.lost());
        }
        let out = st.written(id.clone(), ttl, now);
        let change = st.take_owner_change();
        if let (Some((_, now_user)), true) = (&change, ctx.config.owner_index) {
            match now_user {
                Some(user) => {
                    ctx.store
                        .index_add(user, &id, ctx.index_ttl(st.own_ttl()))
                        .await?
                }
                None => ctx.store.index_remove(&id).await?,
            }
        }
        self.report_owner_change(st, change).await;
        Ok(out)
    }

    /// No change to a stored session: slides its expiry when due (recording "last seen" when
    /// [`Config::track_last_seen`](crate::Config::track_last_seen) is on). Decides without
    /// allocating; what it sends to the store runs boxed (see `save_inner`).
    async fn touch_if_due(&self, st: &mut State, id: SessionId, now: u64) -> Result<SaveOutcome> {
        let ctx = self.ctx();
        if st.is_retired() {
            return Ok(SaveOutcome::default());
        }
        let Some(ttl) = st.write_ttl(&ctx.timing, now)? else {
            return Box::pin(self.expire_now(st, id)).await;
        };
        if !st.touch_due(&ctx.timing, ttl, now) {
            return Ok(SaveOutcome::default());
        }
        Box::pin(self.touch(st, id, ttl, now)).await
    }

    /// Slides the expiry of a stored session with no change (a touch `touch_if_due` found due).
    async fn touch(
        &self,
        st: &mut State,
        id: SessionId,
        ttl: u64,
        now: u64,
    ) -> Result<SaveOutcome> {
        let ctx = self.ctx();
        let alive = if ctx.config.track_last_seen {
            st.stamp_touch(now)?;
            ctx.store
                .apply(&id, st.change_set(true), millis(ttl))
                .await?
        } else {
            ctx.store.update_ttl(&id, millis(ttl)).await?;
            true
        };
        if alive {
            Ok(st.touched(id, ttl, now))
        } else {
            Ok(st.lost())
        }
    }

    /// A stored session past its absolute deadline at save: deletes it, tells the client to drop
    /// it.
    async fn expire_now(&self, st: &mut State, id: SessionId) -> Result<SaveOutcome> {
        self.ctx().store.remove_all(&id).await?;
        let user = st.stored_owner().map(str::to_string);
        let out = st.drop_session();
        self.ctx()
            .emit(|| SessionEvent::Destroyed { id, user })
            .await;
        Ok(out)
    }
}

/// A stored list and one more item, serialised as one list (what [`Session::push`] writes)
/// without cloning the list or the item.
struct Appended<'a, A, B: ?Sized> {
    list: &'a [A],
    item: &'a B,
}

impl<A: Serialize, B: Serialize + ?Sized> Serialize for Appended<'_, A, B> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.list.len().saturating_add(1)))?;
        for x in self.list {
            seq.serialize_element(x)?;
        }
        seq.serialize_element(self.item)?;
        seq.end()
    }
}
