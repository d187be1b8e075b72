//! Everything a driver author needs, in one place: the [`Driver`] trait (a small required core,
//! the GoFrame methods derived from it), the types it speaks ([`ChangeSet`], [`Loaded`],
//! [`Ttl`], [`Expiry`], [`Capabilities`]), the input [`check`]s, the [`record`] codec for
//! drivers that store a session as one blob, and the pieces for wrappers: [`Layer`], and
//! [`Intercepted`] with its [`Intercept`] hook, which forwards every method.
//!
//! Applications do not need this module: they hold an `Arc<dyn Storage>` (every `Driver` is a
//! [`Storage`](crate::Storage)) and use [`Manager`](crate::Manager) and
//! [`Session`](crate::Session).
//!
//! # Writing a driver
//!
//! Implement five methods: [`name`](Driver::name), [`capabilities`](Driver::capabilities),
//! [`load`](Driver::load), [`apply`](Driver::apply) and [`remove_all`](Driver::remove_all). The
//! eleven GoFrame methods come derived from them; override one only where the backend has a
//! cheaper native form (one Redis `HGET` instead of loading the whole hash, say). Add the
//! capability methods (owner index, lock, purge, scan) the backend can do, and declare them in
//! `capabilities()`; the others answer [`Error::Unsupported`].
//!
//! Driver code imports [`Driver`] and not [`Storage`](crate::Storage) (whose methods have the
//! same names; name it by path, `Arc<dyn session_core::Storage>`, where a type is needed).
//!
//! A driver never checks its input: [`Storage`](crate::Storage), the only way callers reach a
//! driver, checks every id, key, owner and TTL first (with [`check`]), so a driver may rely on
//! valid input. TTLs arrive as [`Ttl`], already checked and rounded to whole milliseconds.
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::{Arc, Mutex};
//! use std::time::SystemTime;
//!
//! use session_core::driver::{
//!     Capabilities, ChangeSet, Driver, Expiry, Loaded, async_trait,
//! };
//! use session_core::{Data, Result, SessionId, Storage};
//!
//! /// Sessions in a map behind one lock: a complete (if unscalable) driver.
//! #[derive(Default)]
//! struct MapStore(Mutex<HashMap<SessionId, (Arc<Data>, SystemTime)>>);
//!
//! #[async_trait]
//! impl Driver for MapStore {
//!     fn name(&self) -> &'static str { "map" }
//!     fn capabilities(&self) -> Capabilities { Capabilities::default() }
//!
//!     async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
//!         let map = self.0.lock().expect("not poisoned");
//!         Ok(map.get(id).filter(|(_, at)| *at > SystemTime::now()).map(|(data, at)| Loaded {
//!             data: data.clone().into(),
//!             expires_at: Some(*at),
//!         }))
//!     }
//!
//!     async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
//!         let mut map = self.0.lock().expect("not poisoned");
//!         let now = SystemTime::now();
//!         let live = map.get(id).filter(|(_, at)| *at > now).cloned();
//!         let Some((mut data, at)) = changes.start(live.map(|(d, at)| ((*d).clone(), at)), expiry)
//!         else {
//!             map.remove(id);
//!             return Ok(false);
//!         };
//!         changes.apply_to(&mut data);
//!         if data.is_empty() {
//!             map.remove(id);
//!             return Ok(false);
//!         }
//!         map.insert(id.clone(), (Arc::new(data), expiry.deadline(now, at)));
//!         Ok(true)
//!     }
//!
//!     async fn remove_all(&self, id: &SessionId) -> Result<()> {
//!         self.0.lock().expect("not poisoned").remove(id);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> session_core::Result<()> {
//! // Every driver is a `Storage`: checked input, the eleven GoFrame methods.
//! let store: Arc<dyn Storage> = Arc::new(MapStore::default());
//! let id = SessionId::generate()?;
//! store.set(&id, "k", session_core::Value::encode(&1)?, std::time::Duration::from_secs(60)).await?;
//! assert_eq!(store.get_size(&id).await?, 1);
//! assert!(store.get(&id, "bad\0key").await.is_err()); // checked before the driver sees it
//! # Ok(()) }
//! ```
//!
//! The conformance suite (`session-conformance`) checks a driver against the whole contract;
//! its README walks through a complete driver that passes it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use async_trait::async_trait;

pub use crate::check;
pub use crate::error::{BoxError, Error, Result};
pub use crate::id::{LockToken, SessionId};
pub use crate::snapshot::{Packed, Snapshot, ValueRef};
pub use crate::storage::{Capabilities, ChangeSet, Loaded, ScanPage};
pub use crate::value::{Data, Value};

pub mod record;

/// A boxed, sendable future: what the object-safe [`Storage`](crate::Storage) methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A checked time to live: at least 1 ms, at most [`check::MAX_TTL`], in whole milliseconds
/// (a sub-millisecond remainder rounds up, so nothing rounds down to zero).
///
/// The only way to make one is [`Ttl::new`] (or `TryFrom<Duration>`), which runs
/// [`check::ttl_millis`]: a driver that receives a `Ttl` never checks it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(u64);

impl Ttl {
    /// Checks `ttl` ([`check::ttl_millis`]): zero and TTLs over [`check::MAX_TTL`] are
    /// [`Error::InvalidInput`].
    pub fn new(ttl: Duration) -> Result<Self> {
        check::ttl_millis(ttl).map(Ttl)
    }

    /// The TTL in whole milliseconds (at least 1).
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The TTL as a `Duration` of whole milliseconds.
    pub const fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }

    /// The deadline `now + ttl`.
    pub fn deadline_from(self, now: SystemTime) -> SystemTime {
        now + self.as_duration()
    }

    /// The deadline from the current time.
    pub fn deadline(self) -> SystemTime {
        self.deadline_from(SystemTime::now())
    }
}

impl TryFrom<Duration> for Ttl {
    type Error = Error;

    fn try_from(ttl: Duration) -> Result<Self> {
        Ttl::new(ttl)
    }
}

/// What a write does to the session's expiry deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The deadline becomes now + ttl (every write of the GoFrame methods but `remove`).
    After(Ttl),
    /// The deadline stays as it is, and a missing or expired session is not created: the write
    /// applies only to a live session, as with [`ChangeSet::only_if_exists`]. GoFrame's `remove`
    /// of one key is `apply` with `Keep`.
    Keep,
}

impl Expiry {
    /// The TTL, if the write sets a new deadline.
    pub fn ttl(self) -> Option<Ttl> {
        match self {
            Expiry::After(ttl) => Some(ttl),
            Expiry::Keep => None,
        }
    }

    /// The deadline after the write: `now + ttl`, or `current` for [`Expiry::Keep`].
    pub fn deadline(self, now: SystemTime, current: SystemTime) -> SystemTime {
        match self {
            Expiry::After(ttl) => ttl.deadline_from(now),
            Expiry::Keep => current,
        }
    }

    /// Whether a write with this expiry may create a session (`false` for `Keep`).
    pub fn may_create(self) -> bool {
        matches!(self, Expiry::After(_))
    }
}

/// Where session data lives, as a driver sees it: a required core of five methods, the eleven
/// GoFrame methods derived from it, and optional capability methods.
///
/// Callers never call a `Driver` directly: every driver is a [`Storage`](crate::Storage) (a blanket
/// implementation), and `Storage` checks ids, keys, owners and TTLs before it calls the driver.
/// The contract each method must keep is written on [`Storage`](crate::Storage) and checked by
/// `session-conformance`.
///
/// **Required**: [`name`](Self::name), [`capabilities`](Self::capabilities),
/// [`load`](Self::load), [`apply`](Self::apply), [`remove_all`](Self::remove_all).
///
/// **Provided, overridable**: the GoFrame methods ([`new`](Self::new), [`get`](Self::get),
/// [`get_map`](Self::get_map), [`get_size`](Self::get_size), [`set`](Self::set),
/// [`set_map`](Self::set_map), [`remove`](Self::remove),
/// [`get_session`](Self::get_session), [`set_session`](Self::set_session),
/// [`update_ttl`](Self::update_ttl)), each one `load` or one `apply`. Override one where the
/// backend has a cheaper native form that keeps the same contract.
///
/// **Optional**: the owner index, the lease lock, purge and scan answer
/// [`Error::Unsupported`] unless the driver implements them and declares them in
/// [`Capabilities`].
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Short name of the driver ("memory", "redis", ...), used in error messages.
    fn name(&self) -> &'static str;

    /// What this driver does natively.
    fn capabilities(&self) -> Capabilities;

    /// The whole session with its expiry deadline, or `None` if missing or expired (also when
    /// the backend has not deleted it yet). Does not change the expiry.
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>>;

    /// Applies `changes` to the session as one atomic backend operation and sets its deadline by
    /// `expiry`; returns whether the session exists afterwards.
    ///
    /// A missing or expired session starts empty; with [`ChangeSet::only_if_exists`] or
    /// [`Expiry::Keep`] nothing is written to it and the result is `false`. Order within the
    /// change set: `clear`, then `remove`, then `set`. If the result has no keys the session is
    /// removed (with its owner-index binding). An empty change set on a live session only sets
    /// the deadline. Concurrent change sets on one session never lose each other's keys.
    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool>;

    /// Deletes the whole session, including its owner-index binding; fine if absent.
    async fn remove_all(&self, id: &SessionId) -> Result<()>;

    // ----- the GoFrame methods, derived ---------------------------------------------------

    /// A driver-chosen id for a new session, or `None` (the default) to let the session layer
    /// generate one with [`SessionId::generate`].
    #[allow(
        clippy::new_ret_no_self,
        clippy::wrong_self_convention,
        reason = "the name and shape of GoFrame's `Storage.New`"
    )]
    async fn new(&self, ttl: Ttl) -> Result<Option<SessionId>> {
        let _ = ttl;
        Ok(None)
    }

    /// One value; `None` for a missing key or a missing or expired session. Default: `load`.
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        Ok(self.load(id).await?.and_then(|l| l.data.get(key)))
    }

    /// All values; empty for a missing or expired session. Default: `load`.
    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        Ok(self
            .load(id)
            .await?
            .map(|l| l.data.into_data())
            .unwrap_or_default())
    }

    /// Number of keys; 0 for a missing or expired session. Default: `load`.
    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        Ok(self.load(id).await?.map_or(0, |l| l.data.len()))
    }

    /// Upserts one key; the deadline becomes now + `ttl`. Default: `apply`.
    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Ttl) -> Result<()> {
        let mut changes = ChangeSet::default();
        changes.set.insert(key.to_owned(), value);
        self.apply(id, changes, Expiry::After(ttl)).await.map(drop)
    }

    /// Merges `data` into the session; the deadline becomes now + `ttl`. Default: `apply`.
    async fn set_map(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        let changes = ChangeSet {
            set: data,
            ..ChangeSet::default()
        };
        self.apply(id, changes, Expiry::After(ttl)).await.map(drop)
    }

    /// Deletes one key, keeping the deadline. Default: `apply` with [`Expiry::Keep`].
    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        let changes = ChangeSet {
            remove: vec![key.to_owned()],
            only_if_exists: true,
            ..ChangeSet::default()
        };
        self.apply(id, changes, Expiry::Keep).await.map(drop)
    }

    /// The whole session at the start of a request. `ttl` and `cached` are GoFrame's hints,
    /// unchecked; the default ignores them and calls `load`.
    async fn get_session(
        &self,
        id: &SessionId,
        ttl: Duration,
        cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        let _ = (ttl, cached);
        Ok(self.load(id).await?.map(|l| l.data.into_data()))
    }

    /// Replaces the whole session; an empty `data` removes it. Default: `apply` with `clear`,
    /// or `remove_all` for an empty `data`.
    async fn set_session(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        if data.is_empty() {
            return self.remove_all(id).await;
        }
        let changes = ChangeSet {
            clear: true,
            set: data,
            ..ChangeSet::default()
        };
        self.apply(id, changes, Expiry::After(ttl)).await.map(drop)
    }

    /// Slides the deadline of a live session to now + `ttl`; creates nothing. Default: `apply`
    /// of an empty change set with `only_if_exists`.
    async fn update_ttl(&self, id: &SessionId, ttl: Ttl) -> Result<()> {
        let changes = ChangeSet {
            only_if_exists: true,
            ..ChangeSet::default()
        };
        self.apply(id, changes, Expiry::After(ttl)).await.map(drop)
    }

    // ----- optional capabilities ----------------------------------------------------------

    /// Binds session `id` to `owner` (see [`Storage::index_add`](crate::Storage::index_add)). Needs
    /// [`Capabilities::owner_index`].
    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Ttl) -> Result<()> {
        let _ = (owner, id, ttl);
        Err(Error::unsupported(self.name(), "index_add"))
    }

    /// Unbinds session `id` from its owner (see [`Storage::index_remove`](crate::Storage::index_remove)).
    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let _ = id;
        Err(Error::unsupported(self.name(), "index_remove"))
    }

    /// Live sessions bound to `owner` (see [`Storage::index_sessions`](crate::Storage::index_sessions)).
    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        let _ = owner;
        Err(Error::unsupported(self.name(), "index_sessions"))
    }

    /// The owner of a live session (see [`Storage::index_owner`](crate::Storage::index_owner)).
    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let _ = id;
        Err(Error::unsupported(self.name(), "index_owner"))
    }

    /// Tries once to take the lease lock of `id` (see [`Storage::try_lock`](crate::Storage::try_lock)). Needs
    /// [`Capabilities::lock`].
    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        let _ = (id, lease);
        Err(Error::unsupported(self.name(), "try_lock"))
    }

    /// Releases the lock if `token` still holds it (see [`Storage::unlock`](crate::Storage::unlock)).
    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let _ = (id, token);
        Err(Error::unsupported(self.name(), "unlock"))
    }

    /// Deletes expired sessions (see [`Storage::purge_expired`](crate::Storage::purge_expired)). Needs
    /// [`Capabilities::purge`].
    async fn purge_expired(&self) -> Result<u64> {
        Err(Error::unsupported(self.name(), "purge_expired"))
    }

    /// One page of live session ids (see [`Storage::scan`](crate::Storage::scan)). Needs [`Capabilities::scan`].
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let _ = (cursor, limit);
        Err(Error::unsupported(self.name(), "scan"))
    }
}

impl ChangeSet {
    /// Where an `apply` starts from, given the live session (`None` if missing or expired) with
    /// its data and deadline: `None` if nothing may be written (`only_if_exists` or
    /// [`Expiry::Keep`] on a missing session), otherwise the data to change (empty after
    /// `clear` or for a new session) and the current deadline (`UNIX_EPOCH` for a new one,
    /// which only [`Expiry::After`] can replace).
    pub fn start<D: Default>(
        &self,
        live: Option<(D, SystemTime)>,
        expiry: Expiry,
    ) -> Option<(D, SystemTime)> {
        match live {
            Some((data, at)) if self.clear => {
                drop(data);
                Some((D::default(), at))
            }
            Some(live) => Some(live),
            None if self.only_if_exists || !expiry.may_create() => None,
            None => Some((D::default(), SystemTime::UNIX_EPOCH)),
        }
    }

    /// Applies `remove` then `set` to `data` (the caller handles `clear`, see
    /// [`start`](Self::start)).
    pub fn apply_to(&self, data: &mut Data) {
        for key in &self.remove {
            data.remove(key);
        }
        for (key, value) in &self.set {
            data.insert(key.clone(), value.clone());
        }
    }
}

/// Every `Arc` of a driver is a driver, so `Arc<dyn Driver>` can be wrapped in layers.
#[async_trait]
impl<D: Driver + ?Sized> Driver for Arc<D> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        (**self).load(id).await
    }
    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        (**self).apply(id, changes, expiry).await
    }
    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        (**self).remove_all(id).await
    }
    async fn new(&self, ttl: Ttl) -> Result<Option<SessionId>> {
        (**self).new(ttl).await
    }
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        (**self).get(id, key).await
    }
    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        (**self).get_map(id).await
    }
    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        (**self).get_size(id).await
    }
    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Ttl) -> Result<()> {
        (**self).set(id, key, value, ttl).await
    }
    async fn set_map(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        (**self).set_map(id, data, ttl).await
    }
    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        (**self).remove(id, key).await
    }
    async fn get_session(
        &self,
        id: &SessionId,
        ttl: Duration,
        cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        (**self).get_session(id, ttl, cached).await
    }
    async fn set_session(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        (**self).set_session(id, data, ttl).await
    }
    async fn update_ttl(&self, id: &SessionId, ttl: Ttl) -> Result<()> {
        (**self).update_ttl(id, ttl).await
    }
    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Ttl) -> Result<()> {
        (**self).index_add(owner, id, ttl).await
    }
    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        (**self).index_remove(id).await
    }
    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        (**self).index_sessions(owner).await
    }
    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        (**self).index_owner(id).await
    }
    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        (**self).try_lock(id, lease).await
    }
    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        (**self).unlock(id, token).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        (**self).purge_expired().await
    }
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        (**self).scan(cursor, limit).await
    }
}

// ----- layers ------------------------------------------------------------------------------

/// Wraps a driver in another driver (tower's `Layer`, OpenDAL's layers): tracing, metrics,
/// later hashed ids and encryption at rest. Apply one with [`Storage::layer`](crate::Storage::layer):
/// `MemoryStore::new().layer(TracingLayer::new())`.
pub trait Layer<D> {
    /// The wrapped driver.
    type Driver: Driver;

    /// Wraps `inner`.
    fn layer(&self, inner: D) -> Self::Driver;
}

/// The operation of one driver call, as an [`Intercept`] hook sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(
    missing_docs,
    reason = "each variant is the driver method of the same name"
)]
pub enum Op {
    Load,
    Apply,
    RemoveAll,
    New,
    Get,
    GetMap,
    GetSize,
    Set,
    SetMap,
    Remove,
    GetSession,
    SetSession,
    UpdateTtl,
    IndexAdd,
    IndexRemove,
    IndexSessions,
    IndexOwner,
    TryLock,
    Unlock,
    PurgeExpired,
    Scan,
}

impl Op {
    /// Every operation, in the order of the [`Driver`] trait.
    pub const ALL: [Op; 21] = [
        Op::Load,
        Op::Apply,
        Op::RemoveAll,
        Op::New,
        Op::Get,
        Op::GetMap,
        Op::GetSize,
        Op::Set,
        Op::SetMap,
        Op::Remove,
        Op::GetSession,
        Op::SetSession,
        Op::UpdateTtl,
        Op::IndexAdd,
        Op::IndexRemove,
        Op::IndexSessions,
        Op::IndexOwner,
        Op::TryLock,
        Op::Unlock,
        Op::PurgeExpired,
        Op::Scan,
    ];

    /// The method's name: `"load"`, `"apply"`, `"index_add"`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Load => "load",
            Op::Apply => "apply",
            Op::RemoveAll => "remove_all",
            Op::New => "new",
            Op::Get => "get",
            Op::GetMap => "get_map",
            Op::GetSize => "get_size",
            Op::Set => "set",
            Op::SetMap => "set_map",
            Op::Remove => "remove",
            Op::GetSession => "get_session",
            Op::SetSession => "set_session",
            Op::UpdateTtl => "update_ttl",
            Op::IndexAdd => "index_add",
            Op::IndexRemove => "index_remove",
            Op::IndexSessions => "index_sessions",
            Op::IndexOwner => "index_owner",
            Op::TryLock => "try_lock",
            Op::Unlock => "unlock",
            Op::PurgeExpired => "purge_expired",
            Op::Scan => "scan",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One driver call as an [`Intercept`] hook sees it.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// The wrapped driver's [`name`](Driver::name).
    pub driver: &'static str,
    /// The method called.
    pub op: Op,
    /// The session the call is about, if it names one (a bearer secret: never log it as is).
    pub id: Option<&'a SessionId>,
}

/// A hook around every call of a wrapped driver: the forwarding helper for layers and test
/// wrappers. [`Intercepted`] forwards each of the driver's methods to the inner driver through
/// [`intercept`](Self::intercept), so a hook written once sees all of them (and an inner
/// driver's native overrides stay in use).
pub trait Intercept: Send + Sync + 'static {
    /// Runs `call`: await `run` (the inner driver's future) and return its result, doing what
    /// the hook does around it (a span, a timer, a counter, an injected fault). Every result type
    /// is `'static`, so a hook may inspect one by downcasting (`&mut dyn Any`).
    fn intercept<'a, T: Send + 'static>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>>;

    /// The capabilities the wrapped store declares, given the inner driver's; by default the
    /// same. A hook that hides a capability must also refuse its calls.
    fn capabilities(&self, inner: Capabilities) -> Capabilities {
        inner
    }
}

/// A driver that forwards every method to `inner` through the hook `I`.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use session_core::driver::{BoxFuture, Call, Intercept, Intercepted, Result};
///
/// /// Counts the calls of the driver it wraps.
/// #[derive(Default)]
/// struct Count(AtomicUsize);
///
/// impl Intercept for Count {
///     fn intercept<'a, T: Send + 'static>(
///         &'a self,
///         _call: Call<'a>,
///         run: BoxFuture<'a, Result<T>>,
///     ) -> BoxFuture<'a, Result<T>> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         run
///     }
/// }
///
/// let counted = Intercepted::new(session_memory::MemoryStore::new(), Count::default());
/// # let _ = counted;
/// ```
#[derive(Debug, Clone)]
pub struct Intercepted<D, I> {
    inner: D,
    hook: I,
}

impl<D, I> Intercepted<D, I> {
    /// Wraps `inner` with `hook`.
    pub fn new(inner: D, hook: I) -> Self {
        Intercepted { inner, hook }
    }

    /// The wrapped driver.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The hook.
    pub fn hook(&self) -> &I {
        &self.hook
    }
}

impl<D: Driver, I: Intercept> Intercepted<D, I> {
    fn call<'a>(&self, op: Op, id: Option<&'a SessionId>) -> Call<'a> {
        Call {
            driver: self.inner.name(),
            op,
            id,
        }
    }
}

#[async_trait]
impl<D: Driver, I: Intercept> Driver for Intercepted<D, I> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.hook.capabilities(self.inner.capabilities())
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        let call = self.call(Op::Load, Some(id));
        self.hook.intercept(call, self.inner.load(id)).await
    }
    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        let call = self.call(Op::Apply, Some(id));
        let run = self.inner.apply(id, changes, expiry);
        self.hook.intercept(call, run).await
    }
    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        let call = self.call(Op::RemoveAll, Some(id));
        self.hook.intercept(call, self.inner.remove_all(id)).await
    }
    async fn new(&self, ttl: Ttl) -> Result<Option<SessionId>> {
        let call = self.call(Op::New, None);
        self.hook.intercept(call, self.inner.new(ttl)).await
    }
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        let call = self.call(Op::Get, Some(id));
        self.hook.intercept(call, self.inner.get(id, key)).await
    }
    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        let call = self.call(Op::GetMap, Some(id));
        self.hook.intercept(call, self.inner.get_map(id)).await
    }
    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        let call = self.call(Op::GetSize, Some(id));
        self.hook.intercept(call, self.inner.get_size(id)).await
    }
    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Ttl) -> Result<()> {
        let call = self.call(Op::Set, Some(id));
        let run = self.inner.set(id, key, value, ttl);
        self.hook.intercept(call, run).await
    }
    async fn set_map(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        let call = self.call(Op::SetMap, Some(id));
        let run = self.inner.set_map(id, data, ttl);
        self.hook.intercept(call, run).await
    }
    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        let call = self.call(Op::Remove, Some(id));
        self.hook.intercept(call, self.inner.remove(id, key)).await
    }
    async fn get_session(
        &self,
        id: &SessionId,
        ttl: Duration,
        cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        let call = self.call(Op::GetSession, Some(id));
        let run = self.inner.get_session(id, ttl, cached);
        self.hook.intercept(call, run).await
    }
    async fn set_session(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        let call = self.call(Op::SetSession, Some(id));
        let run = self.inner.set_session(id, data, ttl);
        self.hook.intercept(call, run).await
    }
    async fn update_ttl(&self, id: &SessionId, ttl: Ttl) -> Result<()> {
        let call = self.call(Op::UpdateTtl, Some(id));
        self.hook
            .intercept(call, self.inner.update_ttl(id, ttl))
            .await
    }
    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Ttl) -> Result<()> {
        let call = self.call(Op::IndexAdd, Some(id));
        let run = self.inner.index_add(owner, id, ttl);
        self.hook.intercept(call, run).await
    }
    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let call = self.call(Op::IndexRemove, Some(id));
        self.hook.intercept(call, self.inner.index_remove(id)).await
    }
    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        let call = self.call(Op::IndexSessions, None);
        self.hook
            .intercept(call, self.inner.index_sessions(owner))
            .await
    }
    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let call = self.call(Op::IndexOwner, Some(id));
        self.hook.intercept(call, self.inner.index_owner(id)).await
    }
    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        let call = self.call(Op::TryLock, Some(id));
        self.hook
            .intercept(call, self.inner.try_lock(id, lease))
            .await
    }
    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let call = self.call(Op::Unlock, Some(id));
        self.hook
            .intercept(call, self.inner.unlock(id, token))
            .await
    }
    async fn purge_expired(&self) -> Result<u64> {
        let call = self.call(Op::PurgeExpired, None);
        self.hook.intercept(call, self.inner.purge_expired()).await
    }
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let call = self.call(Op::Scan, None);
        self.hook
            .intercept(call, self.inner.scan(cursor, limit))
            .await
    }
}
