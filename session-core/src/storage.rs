//! [`Storage`], the checked entry point every caller uses, and the types of its methods.

use std::future::ready;
use std::time::{Duration, SystemTime};

use crate::check;
use crate::driver::{BoxFuture, Driver, Expiry, Layer, Ttl};
use crate::error::{Error, Result};
use crate::id::{LockToken, SessionId};
use crate::snapshot::Snapshot;
use crate::value::{Data, Value};

/// What a driver does natively (the OpenDAL `Capability` idea).
///
/// An undeclared capability method returns [`Error::Unsupported`] (`owner_index`, `lock`,
/// `purge`, `scan`), or for [`load_with_deadline`](Capabilities::load_with_deadline) reports no
/// deadline. It never silently does nothing. The conformance suite checks both halves: declared
/// capabilities work, undeclared ones return `Unsupported`. (Atomic change sets are not a
/// capability: every driver's [`Driver::apply`](crate::driver::Driver::apply) is atomic.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// [`Storage::load`] returns the real expiry deadline.
    pub load_with_deadline: bool,
    /// The owner index methods (`index_*`) work.
    pub owner_index: bool,
    /// [`Storage::try_lock`] and [`Storage::unlock`] work.
    pub lock: bool,
    /// [`Storage::purge_expired`] works.
    pub purge: bool,
    /// [`Storage::scan`] works.
    pub scan: bool,
    /// The backend deletes expired sessions by itself (Redis, moka); `purge_expired` may then
    /// report 0 even though expired sessions disappeared.
    pub native_expiry: bool,
}

impl Capabilities {
    /// Every optional capability (deadlines, owner index, lock, purge, scan), for a backend that
    /// does not delete expired sessions by itself. A driver with native expiry writes
    /// `Capabilities { native_expiry: true, ..Capabilities::ALL }`.
    pub const ALL: Capabilities = Capabilities {
        load_with_deadline: true,
        owner_index: true,
        lock: true,
        purge: true,
        scan: true,
        native_expiry: false,
    };
}

/// A set of changes to one session, applied with [`Storage::apply`].
///
/// Order: `clear` (drop every stored key), then `remove`, then `set`. A key both removed and set
/// ends up set.
#[derive(Clone, Debug, Default)]
pub struct ChangeSet {
    /// Drop every key stored before applying the rest.
    pub clear: bool,
    /// Keys to delete.
    pub remove: Vec<String>,
    /// Keys to insert or overwrite.
    pub set: Data,
    /// Write nothing unless the session exists (and has not expired) when the change is applied.
    ///
    /// The session layer sets this when it saves a session it loaded, so that a request still in
    /// flight cannot bring back a session that was destroyed meanwhile ("log out everywhere").
    pub only_if_exists: bool,
}

impl ChangeSet {
    /// Whether applying this change set would change no key.
    pub fn is_empty(&self) -> bool {
        !self.clear && self.remove.is_empty() && self.set.is_empty()
    }
}

/// A session as loaded by [`Storage::load`], with its expiry deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// All values of the session (never empty: a session without keys does not exist).
    ///
    /// Shared, so a driver that keeps sessions in memory hands out its own map or
    /// [`Packed`](crate::Packed) buffer without copying it; the session layer copies nothing
    /// either, it keeps its changes beside it. A driver that decodes a record hands out the
    /// decoded map: `Snapshot::from(data)`.
    pub data: Snapshot,
    /// When the session expires, if the driver knows ([`Capabilities::load_with_deadline`]).
    pub expires_at: Option<SystemTime>,
}

/// One page of a [`Storage::scan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Live session ids of this page.
    pub ids: Vec<SessionId>,
    /// Cursor for the next page; `None` when the scan is complete.
    pub next: Option<String>,
}

/// Where session data lives: the eleven methods of GoFrame's gsession `Storage`, async, plus the
/// capability methods the session layer uses when a driver provides them.
///
/// Every [`Driver`] is a `Storage` (a blanket implementation; no other type can be one), and
/// `Storage` is the one way in: each method checks its input, then calls the driver's method
/// of the same name. A driver therefore never sees an invalid key, owner or TTL, and cannot
/// forget a check. Drivers implement [`Driver`] (five required methods); callers hold an
/// `Arc<dyn Storage>`.
///
/// # The contract (checked by `session-conformance`)
///
/// * **Existence.** A session exists from the first write of a key until it expires or is removed.
///   A session with no keys does not exist: removing its last key removes it, and writing an empty
///   map creates nothing.
/// * **Expiry.** Every write (`set`, `set_map`, `set_session`, `apply`) and `update_ttl` sets the
///   expiry deadline to *now + ttl*, honoured to the millisecond (a 300 ms TTL is neither rounded
///   down to zero nor up to a second). Reads and `remove` never change the deadline. A session
///   past its deadline is missing for every method, whether or not the backend has deleted it
///   yet. TTLs are checked with [`check::ttl_millis`]: zero is an [`Error::InvalidInput`],
///   sub-millisecond TTLs round up to 1 ms.
/// * **Input.** Ids are [`SessionId`]s, already validated. Keys are checked with
///   [`check::key`] (empty and unicode keys are fine; NUL and over 1 KiB are not), owners with
///   [`check::owner`], here, before the driver is called.
/// * **Errors.** Backend failures are [`Error::Backend`]; a record that cannot be read back is
///   [`Error::Corrupt`]; an undeclared capability is [`Error::Unsupported`]. No method panics on
///   anything a caller or a backend can cause.
/// * **Concurrency.** Each method is atomic on its own: a concurrent reader sees the session
///   before or after a write, never half of it; concurrent change sets never lose each other's
///   keys.
///
/// The trait is object safe: the session layer holds an `Arc<dyn Storage>`.
///
/// ```
/// use std::sync::Arc;
/// use session_core::Storage;
///
/// fn takes_any_driver(store: Arc<dyn Storage>) -> &'static str {
///     store.name()
/// }
/// ```
pub trait Storage: sealed::Sealed + Send + Sync + 'static {
    /// Short name of the driver ("memory", "redis", ...), used in error messages.
    fn name(&self) -> &'static str;

    /// What this driver does natively.
    fn capabilities(&self) -> Capabilities;

    /// A driver-chosen id for a new session, or `None` to let the session layer generate one with
    /// [`SessionId::generate`]. Creates nothing: the session exists once a key is written.
    #[allow(
        clippy::new_ret_no_self,
        clippy::wrong_self_convention,
        reason = "the name and shape of GoFrame's `Storage.New`"
    )]
    fn new(&self, ttl: Duration) -> BoxFuture<'_, Result<Option<SessionId>>>;

    /// One value; `None` for a missing key or a missing or expired session.
    fn get<'a>(&'a self, id: &'a SessionId, key: &'a str) -> BoxFuture<'a, Result<Option<Value>>>;

    /// All values; empty for a missing or expired session.
    fn get_map<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Data>>;

    /// Number of keys; 0 for a missing or expired session.
    fn get_size<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<usize>>;

    /// Upserts one key, creating the session if needed (a session that had expired starts empty,
    /// its old keys do not come back); the expiry becomes now + `ttl`.
    fn set<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        value: Value,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>>;

    /// Merges `data` into the session (keys not in `data` are kept), creating it if needed; the
    /// expiry becomes now + `ttl`. An empty `data` creates nothing but still slides the expiry of
    /// an existing session.
    fn set_map<'a>(
        &'a self,
        id: &'a SessionId,
        data: Data,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>>;

    /// Deletes one key; fine if the key or the session is absent. Does not change the expiry.
    fn remove<'a>(&'a self, id: &'a SessionId, key: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Deletes the whole session, including its owner-index binding; fine if absent.
    fn remove_all<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<()>>;

    /// The whole session at the start of a request, or `None` if missing or expired.
    ///
    /// `ttl` is the session layer's idle TTL and `cached` the data it may still hold in memory
    /// (GoFrame passes both); both are hints, not validated. A driver may use them, for example
    /// to answer from a local cache, but must never return data for an expired session. Does not
    /// change the expiry: the session layer slides it with [`update_ttl`](Self::update_ttl) or a
    /// write when due.
    fn get_session<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
        cached: Option<&'a Data>,
    ) -> BoxFuture<'a, Result<Option<Data>>>;

    /// Replaces the whole session with `data` (keys not in `data` are dropped); the expiry becomes
    /// now + `ttl`. An empty `data` removes the session.
    fn set_session<'a>(
        &'a self,
        id: &'a SessionId,
        data: Data,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>>;

    /// Slides the expiry of an existing session to now + `ttl`; no effect on a missing or expired
    /// one (it is not brought back).
    fn update_ttl<'a>(&'a self, id: &'a SessionId, ttl: Duration) -> BoxFuture<'a, Result<()>>;

    /// Applies a change set atomically and sets the expiry to now + `ttl`; returns whether the
    /// session exists afterwards.
    ///
    /// A missing or expired session starts empty (or, with [`ChangeSet::only_if_exists`], nothing
    /// is written and the result is `false`). If the result has no keys the session is removed.
    /// An empty change set on an existing session only slides the expiry. A bad key anywhere in
    /// the change set is [`Error::InvalidInput`] and nothing is written.
    fn apply<'a>(
        &'a self,
        id: &'a SessionId,
        changes: ChangeSet,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>>;

    /// The whole session with its expiry deadline (when
    /// [`Capabilities::load_with_deadline`]), or `None` if missing or expired.
    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Loaded>>>;

    /// Binds session `id` to `owner` (moving it from any previous owner). `ttl` is how long the
    /// owner's index must live at least; drivers that expire index entries refresh it here.
    /// The session layer binds a session after writing it; a binding of a session that does not
    /// exist (yet) may be pruned by the next [`index_sessions`](Self::index_sessions).
    fn index_add<'a>(
        &'a self,
        owner: &'a str,
        id: &'a SessionId,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>>;

    /// Unbinds session `id` from its owner, if it has one.
    fn index_remove<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<()>>;

    /// Live sessions bound to `owner`, in no particular order. Entries of sessions that expired or
    /// were removed are pruned from the index as they are found.
    fn index_sessions<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<Vec<SessionId>>>;

    /// The owner of a live session; `None` if the session is unbound, missing or expired.
    fn index_owner<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<String>>>;

    /// Tries once to take the lease lock of session `id` for `lease`. Returns the token that
    /// releases it, or `None` if someone else holds an unexpired lease. A lease that runs out
    /// frees the lock without a release. The lock does not need the session to exist.
    fn try_lock<'a>(
        &'a self,
        id: &'a SessionId,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Option<LockToken>>>;

    /// Releases the lock if `token` still holds it; returns whether it did. A stale token (its
    /// lease ran out, maybe someone else holds the lock now) releases nothing.
    fn unlock<'a>(&'a self, id: &'a SessionId, token: &'a LockToken)
    -> BoxFuture<'a, Result<bool>>;

    /// Deletes expired sessions and returns how many it deleted (drivers with
    /// [`Capabilities::native_expiry`] may return 0: the backend already did the work).
    fn purge_expired(&self) -> BoxFuture<'_, Result<u64>>;

    /// One page of live session ids. Start with `cursor = None` and pass each page's `next` until
    /// it is `None`. Every session that is live for the whole scan is returned at least once;
    /// `limit` is a hint for the page size.
    fn scan<'a>(&'a self, cursor: Option<&'a str>, limit: usize)
    -> BoxFuture<'a, Result<ScanPage>>;

    /// Wraps this store in `layer` (tracing, metrics, ...): the result is a store too.
    ///
    /// ```
    /// use session_core::Storage;
    /// use session_core::driver::{Intercepted, Layer};
    /// # struct Noop;
    /// # impl session_core::driver::Intercept for Noop {
    /// #     fn intercept<'a, T: Send + 'static>(&'a self, _: session_core::driver::Call<'a>,
    /// #         run: session_core::driver::BoxFuture<'a, session_core::Result<T>>)
    /// #         -> session_core::driver::BoxFuture<'a, session_core::Result<T>> { run }
    /// # }
    /// struct NoopLayer;
    /// impl<D: session_core::driver::Driver> Layer<D> for NoopLayer {
    ///     type Driver = Intercepted<D, Noop>;
    ///     fn layer(&self, inner: D) -> Self::Driver { Intercepted::new(inner, Noop) }
    /// }
    /// let store = session_memory::MemoryStore::new().layer(NoopLayer);
    /// assert_eq!(store.name(), "memory");
    /// ```
    fn layer<L: Layer<Self>>(self, layer: L) -> L::Driver
    where
        Self: Sized,
    {
        layer.layer(self)
    }
}

mod sealed {
    /// Only drivers are stores: `Storage` cannot be implemented around the checks.
    pub trait Sealed {}
    impl<D: crate::driver::Driver> Sealed for D {}
}

/// A future that fails at once with `error`.
fn fail<'a, T: Send + 'a>(error: Error) -> BoxFuture<'a, Result<T>> {
    Box::pin(ready(Err(error)))
}

/// Runs `call` if `checked` is `Ok`, or fails with its error without calling the driver.
fn checked<'a, C, T: Send + 'a>(
    checked: Result<C>,
    call: impl FnOnce(C) -> BoxFuture<'a, Result<T>>,
) -> BoxFuture<'a, Result<T>> {
    match checked {
        Ok(c) => call(c),
        Err(e) => fail(e),
    }
}

fn keys<'k>(mut keys: impl Iterator<Item = &'k String>) -> Result<()> {
    keys.try_for_each(|k| check::key(k))
}

impl<D: Driver> Storage for D {
    fn name(&self) -> &'static str {
        Driver::name(self)
    }

    fn capabilities(&self) -> Capabilities {
        Driver::capabilities(self)
    }

    fn new(&self, ttl: Duration) -> BoxFuture<'_, Result<Option<SessionId>>> {
        checked(Ttl::new(ttl), |ttl| Driver::new(self, ttl))
    }

    fn get<'a>(&'a self, id: &'a SessionId, key: &'a str) -> BoxFuture<'a, Result<Option<Value>>> {
        checked(check::key(key), |()| Driver::get(self, id, key))
    }

    fn get_map<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Data>> {
        Driver::get_map(self, id)
    }

    fn get_size<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<usize>> {
        Driver::get_size(self, id)
    }

    fn set<'a>(
        &'a self,
        id: &'a SessionId,
        key: &'a str,
        value: Value,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        let ok = check::key(key).and_then(|()| Ttl::new(ttl));
        checked(ok, |ttl| Driver::set(self, id, key, value, ttl))
    }

    fn set_map<'a>(
        &'a self,
        id: &'a SessionId,
        data: Data,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        let ok = keys(data.keys()).and_then(|()| Ttl::new(ttl));
        checked(ok, |ttl| Driver::set_map(self, id, data, ttl))
    }

    fn remove<'a>(&'a self, id: &'a SessionId, key: &'a str) -> BoxFuture<'a, Result<()>> {
        checked(check::key(key), |()| Driver::remove(self, id, key))
    }

    fn remove_all<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<()>> {
        Driver::remove_all(self, id)
    }

    fn get_session<'a>(
        &'a self,
        id: &'a SessionId,
        ttl: Duration,
        cached: Option<&'a Data>,
    ) -> BoxFuture<'a, Result<Option<Data>>> {
        Driver::get_session(self, id, ttl, cached)
    }

    fn set_session<'a>(
        &'a self,
        id: &'a SessionId,
        data: Data,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        let ok = keys(data.keys()).and_then(|()| Ttl::new(ttl));
        checked(ok, |ttl| Driver::set_session(self, id, data, ttl))
    }

    fn update_ttl<'a>(&'a self, id: &'a SessionId, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        checked(Ttl::new(ttl), |ttl| Driver::update_ttl(self, id, ttl))
    }

    fn apply<'a>(
        &'a self,
        id: &'a SessionId,
        changes: ChangeSet,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        let ok = keys(changes.remove.iter().chain(changes.set.keys())).and_then(|()| Ttl::new(ttl));
        checked(ok, |ttl| {
            Driver::apply(self, id, changes, Expiry::After(ttl))
        })
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<Loaded>>> {
        Driver::load(self, id)
    }

    fn index_add<'a>(
        &'a self,
        owner: &'a str,
        id: &'a SessionId,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<()>> {
        let ok = check::owner(owner).and_then(|()| Ttl::new(ttl));
        checked(ok, |ttl| Driver::index_add(self, owner, id, ttl))
    }

    fn index_remove<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<()>> {
        Driver::index_remove(self, id)
    }

    fn index_sessions<'a>(&'a self, owner: &'a str) -> BoxFuture<'a, Result<Vec<SessionId>>> {
        checked(check::owner(owner), |()| {
            Driver::index_sessions(self, owner)
        })
    }

    fn index_owner<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<Option<String>>> {
        Driver::index_owner(self, id)
    }

    fn try_lock<'a>(
        &'a self,
        id: &'a SessionId,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Option<LockToken>>> {
        checked(Ttl::new(lease), |lease| Driver::try_lock(self, id, lease))
    }

    fn unlock<'a>(
        &'a self,
        id: &'a SessionId,
        token: &'a LockToken,
    ) -> BoxFuture<'a, Result<bool>> {
        Driver::unlock(self, id, token)
    }

    fn purge_expired(&self) -> BoxFuture<'_, Result<u64>> {
        Driver::purge_expired(self)
    }

    fn scan<'a>(
        &'a self,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<ScanPage>> {
        Driver::scan(self, cursor, limit)
    }
}
