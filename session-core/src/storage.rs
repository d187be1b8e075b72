//! The storage trait every driver implements, and the types of its capability methods.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::check;
use crate::error::{Error, Result};
use crate::id::{LockToken, SessionId};
use crate::value::{Data, Value};

/// What a driver does natively (the OpenDAL `Capability` idea).
///
/// A `false` capability method either has a correct but slower provided fallback
/// ([`atomic_apply`](Capabilities::atomic_apply), [`load_with_deadline`](Capabilities::load_with_deadline))
/// or returns [`Error::Unsupported`] (`owner_index`, `lock`, `purge`, `scan`). It never silently
/// does nothing. The conformance suite checks both halves: declared capabilities work, undeclared
/// ones return `Unsupported`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// [`Storage::apply`] runs as one atomic backend operation, so concurrent change sets on one
    /// session never lose each other's keys.
    pub atomic_apply: bool,
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
    /// Shared, so a driver that keeps sessions in memory hands out its own map without copying
    /// it; the session layer copies nothing either, it keeps its changes beside the map.
    pub data: Arc<Data>,
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
/// # The contract (checked by `session-conformance`)
///
/// * **Existence.** A session exists from the first write of a key until it expires or is removed.
///   A session with no keys does not exist: removing its last key removes it, and writing an empty
///   map creates nothing.
/// * **Expiry.** Every write (`set`, `set_map`, `set_session`, `apply`) and `update_ttl` sets the
///   expiry deadline to *now + ttl*, honoured to the millisecond (a 300 ms TTL is neither rounded
///   down to zero nor up to a second). Reads never change the deadline. A session past its
///   deadline is missing for every method, whether or not the backend has deleted it yet.
///   TTLs are checked with [`check::ttl_millis`]: zero is an [`Error::InvalidInput`],
///   sub-millisecond TTLs round up to 1 ms.
/// * **Input.** Ids are [`SessionId`]s, already validated. Keys are checked with
///   [`check::key`] (empty and unicode keys are fine; NUL and over 1 KiB are not) before any
///   backend call, owners with [`check::owner`].
/// * **Errors.** Backend failures are [`Error::Backend`]; a record that cannot be read back is
///   [`Error::Corrupt`]; an undeclared capability is [`Error::Unsupported`]. No method panics on
///   anything a caller or a backend can cause.
/// * **Concurrency.** Each method is atomic on its own: a concurrent reader sees the session
///   before or after a write, never half of it.
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
#[async_trait]
pub trait Storage: Send + Sync + 'static {
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
    async fn new(&self, ttl: Duration) -> Result<Option<SessionId>>;

    /// One value; `None` for a missing key or a missing or expired session.
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>>;

    /// All values; empty for a missing or expired session.
    async fn get_map(&self, id: &SessionId) -> Result<Data>;

    /// Number of keys; 0 for a missing or expired session.
    async fn get_size(&self, id: &SessionId) -> Result<usize>;

    /// Upserts one key, creating the session if needed (a session that had expired starts empty,
    /// its old keys do not come back); the expiry becomes now + `ttl`.
    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Duration) -> Result<()>;

    /// Merges `data` into the session (keys not in `data` are kept), creating it if needed; the
    /// expiry becomes now + `ttl`. An empty `data` creates nothing but still slides the expiry of
    /// an existing session.
    async fn set_map(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()>;

    /// Deletes one key; fine if the key or the session is absent. Does not change the expiry.
    async fn remove(&self, id: &SessionId, key: &str) -> Result<()>;

    /// Deletes the whole session, including its owner-index binding; fine if absent.
    async fn remove_all(&self, id: &SessionId) -> Result<()>;

    /// The whole session at the start of a request, or `None` if missing or expired.
    ///
    /// `ttl` is the session layer's idle TTL and `cached` the data it may still hold in memory
    /// (GoFrame passes both); both are hints, not validated. A driver may use them, for example
    /// to answer from a local cache, but must never return data for an expired session. Does not change the expiry: the session
    /// layer slides it with [`update_ttl`](Self::update_ttl) or a write when due.
    async fn get_session(
        &self,
        id: &SessionId,
        ttl: Duration,
        cached: Option<&Data>,
    ) -> Result<Option<Data>>;

    /// Replaces the whole session with `data` (keys not in `data` are dropped); the expiry becomes
    /// now + `ttl`. An empty `data` removes the session.
    async fn set_session(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()>;

    /// Slides the expiry of an existing session to now + `ttl`; no effect on a missing or expired
    /// one (it is not brought back).
    async fn update_ttl(&self, id: &SessionId, ttl: Duration) -> Result<()>;

    // ----- capability methods -------------------------------------------------------------

    /// Applies a change set and sets the expiry to now + `ttl`; returns whether the session
    /// exists afterwards.
    ///
    /// A missing or expired session starts empty (or, with [`ChangeSet::only_if_exists`], nothing
    /// is written and the result is `false`). If the result has no keys the session is removed.
    /// An empty change set on an existing session only slides the expiry.
    ///
    /// With [`Capabilities::atomic_apply`] this is one atomic backend operation. The provided
    /// fallback composes the basic methods: correct for one writer, but concurrent change sets can
    /// interleave.
    async fn apply(&self, id: &SessionId, changes: ChangeSet, ttl: Duration) -> Result<bool> {
        check::ttl_millis(ttl)?;
        for key in changes.remove.iter().chain(changes.set.keys()) {
            check::key(key)?;
        }
        if changes.only_if_exists && self.get_size(id).await? == 0 {
            return Ok(false);
        }
        if changes.clear {
            self.remove_all(id).await?;
        }
        for key in &changes.remove {
            if !changes.set.contains_key(key) {
                self.remove(id, key).await?;
            }
        }
        if changes.set.is_empty() {
            self.update_ttl(id, ttl).await?;
        } else {
            self.set_map(id, changes.set, ttl).await?;
        }
        Ok(self.get_size(id).await? > 0)
    }

    /// The whole session with its expiry deadline, or `None` if missing or expired.
    ///
    /// Without [`Capabilities::load_with_deadline`] the provided fallback calls
    /// [`get_session`](Self::get_session) and reports no deadline.
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        // `get_session` takes the idle TTL only as a hint; pass a valid one so drivers that
        // check it accept the call.
        Ok(self
            .get_session(id, Duration::from_secs(1), None)
            .await?
            .map(|data| Loaded {
                data: Arc::new(data),
                expires_at: None,
            }))
    }

    /// Binds session `id` to `owner` (moving it from any previous owner). `ttl` is how long the
    /// owner's index must live at least; drivers that expire index entries refresh it here.
    /// The session layer binds a session after writing it; a binding of a session that does not
    /// exist (yet) may be pruned by the next [`index_sessions`](Self::index_sessions).
    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Duration) -> Result<()> {
        let _ = (owner, id, ttl);
        Err(Error::unsupported(self.name(), "index_add"))
    }

    /// Unbinds session `id` from its owner, if it has one.
    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let _ = id;
        Err(Error::unsupported(self.name(), "index_remove"))
    }

    /// Live sessions bound to `owner`, in no particular order. Entries of sessions that expired or
    /// were removed are pruned from the index as they are found.
    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        let _ = owner;
        Err(Error::unsupported(self.name(), "index_sessions"))
    }

    /// The owner of a live session; `None` if the session is unbound, missing or expired.
    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let _ = id;
        Err(Error::unsupported(self.name(), "index_owner"))
    }

    /// Tries once to take the lease lock of session `id` for `lease`. Returns the token that
    /// releases it, or `None` if someone else holds an unexpired lease. A lease that runs out
    /// frees the lock without a release. The lock does not need the session to exist.
    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        let _ = (id, lease);
        Err(Error::unsupported(self.name(), "try_lock"))
    }

    /// Releases the lock if `token` still holds it; returns whether it did. A stale token (its
    /// lease ran out, maybe someone else holds the lock now) releases nothing.
    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let _ = (id, token);
        Err(Error::unsupported(self.name(), "unlock"))
    }

    /// Deletes expired sessions and returns how many it deleted (drivers with
    /// [`Capabilities::native_expiry`] may return 0: the backend already did the work).
    async fn purge_expired(&self) -> Result<u64> {
        Err(Error::unsupported(self.name(), "purge_expired"))
    }

    /// One page of live session ids. Start with `cursor = None` and pass each page's `next` until
    /// it is `None`. Every session that is live for the whole scan is returned at least once;
    /// `limit` is a hint for the page size.
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let _ = (cursor, limit);
        Err(Error::unsupported(self.name(), "scan"))
    }
}
