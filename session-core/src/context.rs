//! [`Context`]: what a [`Manager`](crate::Manager) and every [`Session`](crate::Session) it makes
//! share (the store, the config and the expiry settings taken from it), and the few operations
//! both need (lease locks, new ids, the owner-index TTL). Both hold an `Arc` of it, so a session
//! never needs its manager.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::events::{Observers, SessionEvent};
use crate::expiry::{Timing, millis};
use crate::id::{LockToken, SessionId};
use crate::storage::Storage;

/// The store, the config and its timing, shared by a manager and its sessions.
#[derive(Clone)]
pub(crate) struct Context {
    pub store: Arc<dyn Storage>,
    pub config: Config,
    pub timing: Timing,
    /// Who follows this manager's [`SessionEvent`]s.
    pub observers: Arc<Observers>,
}

/// How many copies of its context a manager keeps for the sessions it makes (see
/// [`Context::copy_for_this_thread`]): more than the cores of most machines that serve sessions,
/// a few kilobytes per manager.
pub(crate) const COPIES: usize = 16;

impl Context {
    /// The copy of `copies` this thread uses, cloned: what a new session holds.
    ///
    /// Every session holds its context by an `Arc`, whose count it increments when it is made and
    /// decrements when it goes: with one `Arc` for all, every request on every core writes the
    /// same cache line, which then moves between cores on each request (two threads cloning and
    /// dropping one `Arc` in a loop took 133 ns a pair on the 2-core benchmark machine, 11 ns
    /// with an `Arc` each). Each thread takes one of `copies` (the threads in the order they first
    /// ask, round the list), so the workers of a runtime rarely share one. The copies are equal:
    /// the store and the observers are shared `Arc`s, the config and its timing plain data.
    pub(crate) fn copy_for_this_thread(copies: &[Arc<Context>]) -> Arc<Context> {
        use std::cell::Cell;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
        }
        let slot = SLOT.with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            s.get()
        });
        copies[slot % copies.len()].clone()
    }

    /// Checks `config` against itself and against what `store` can do.
    ///
    /// Fails with [`Error::InvalidInput`] when the config does not
    /// [`validate`](Config::validate), and with [`Error::Unsupported`] when
    /// [`Config::owner_index`] is on but the store has no owner index.
    pub(crate) fn new(store: Arc<dyn Storage>, config: Config) -> Result<Self> {
        config.validate()?;
        if config.owner_index && !store.capabilities().owner_index {
            return Err(Error::unsupported(store.name(), "index_add"));
        }
        let timing = Timing::from_config(&config)?;
        Ok(Context {
            store,
            config,
            timing,
            observers: Arc::default(),
        })
    }

    /// Takes the lease lock of `id`, retrying as the lock policy says.
    pub(crate) async fn acquire(&self, id: &SessionId) -> Result<LockToken> {
        let policy = self.config.lock;
        let start = tokio::time::Instant::now();
        loop {
            if let Some(token) = self.store.try_lock(id, policy.lease).await? {
                return Ok(token);
            }
            if start.elapsed() + policy.retry_interval > policy.wait {
                return Err(Error::Locked(format!(
                    "session {} still locked after {} ms",
                    id.short(),
                    policy.wait.as_millis()
                )));
            }
            tokio::time::sleep(policy.retry_interval).await;
        }
    }

    /// A new id for a session about to be written with `ttl` (ms): the driver's choice, else a
    /// generated one.
    pub(crate) async fn issue_id(&self, ttl: u64) -> Result<SessionId> {
        match self.store.new(millis(ttl)).await? {
            Some(id) => Ok(id),
            None => SessionId::generate(),
        }
    }

    /// Tells the observers about `event`, built only if someone listens.
    pub(crate) async fn emit(&self, event: impl FnOnce() -> SessionEvent) {
        if self.observers.any() {
            self.observers.emit(event()).await;
        }
    }

    /// How long a login binding must live: the absolute lifetime when set, else
    /// [`Config::owner_index_ttl`], or the session's own idle TTL (`own_ttl`, ms) when that is
    /// longer (a "remember me" session outliving the index entry would drop out of
    /// `sessions_of`).
    pub(crate) fn index_ttl(&self, own_ttl: Option<u64>) -> Duration {
        if let Some(abs) = self.config.absolute_lifetime {
            return abs;
        }
        let own = own_ttl.map_or(Duration::ZERO, millis);
        self.config.owner_index_ttl.max(own)
    }
}
