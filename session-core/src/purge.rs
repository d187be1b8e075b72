//! [`PurgeTask`]: the background task that deletes expired sessions from a store that does not
//! expire them by itself, made by [`Manager::start_purge`](crate::Manager::start_purge).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::error::{Error, Result};
use crate::storage::Storage;

/// What a [`PurgeTask`] has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeStats {
    /// Purge rounds finished (successful or not).
    pub rounds: u64,
    /// Sessions deleted, as the store's [`purge_expired`](crate::Storage::purge_expired)
    /// reported them.
    pub purged: u64,
    /// Rounds that failed (see [`PurgeTask::last_error`]); the task went on after each.
    pub failed: u64,
}

/// The counters a task and its handle share.
#[derive(Default)]
struct Shared {
    rounds: AtomicU64,
    purged: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<Arc<Error>>>,
}

/// A running background purge, made by [`Manager::start_purge`](crate::Manager::start_purge):
/// one [`Storage::purge_expired`](crate::Storage::purge_expired) every
/// [`Config::purge_interval`](crate::Config::purge_interval), the first one an interval after
/// the start.
///
/// Dropping it, or [`stop`](Self::stop), cancels the task. A failed round is counted and kept
/// ([`stats`](Self::stats), [`last_error`](Self::last_error)), and the task goes on: the next
/// round comes one interval later.
///
/// For a store that expires sessions by itself
/// ([`Capabilities::native_expiry`](crate::Capabilities::native_expiry)), or with
/// `purge_interval: None`, no task is started: the `PurgeTask` is idle
/// ([`is_running`](Self::is_running) is false) and never calls the store.
#[must_use = "the purge stops when the PurgeTask is dropped"]
pub struct PurgeTask {
    handle: Option<JoinHandle<()>>,
    interval: Option<Duration>,
    shared: Arc<Shared>,
}

impl PurgeTask {
    /// A task that was not started.
    pub(crate) fn idle() -> Self {
        PurgeTask {
            handle: None,
            interval: None,
            shared: Arc::default(),
        }
    }

    /// Starts purging `store` every `interval` on the current Tokio runtime; fails with
    /// [`Error::InvalidInput`] outside one.
    pub(crate) fn start(store: Arc<dyn Storage>, interval: Duration) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::InvalidInput("Manager::start_purge must run inside a Tokio runtime".into())
        })?;
        let shared = Arc::new(Shared::default());
        let handle = runtime.spawn(run(store, interval, shared.clone()));
        Ok(PurgeTask {
            handle: Some(handle),
            interval: Some(interval),
            shared,
        })
    }

    /// Whether a task is running: false when none was started (native expiry, no interval)
    /// and after it stopped.
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// The interval of a started task; `None` when none was started.
    pub fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// The rounds, deleted sessions and failed rounds so far.
    pub fn stats(&self) -> PurgeStats {
        PurgeStats {
            rounds: self.shared.rounds.load(Ordering::Acquire),
            purged: self.shared.purged.load(Ordering::Acquire),
            failed: self.shared.failed.load(Ordering::Acquire),
        }
    }

    /// The error of the last failed round, if any round failed (kept after later rounds
    /// succeed; compare [`PurgeStats::failed`] to see whether new failures came).
    pub fn last_error(&self) -> Option<Arc<Error>> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Cancels the task and waits until it has ended: once this returns, the task makes no
    /// more storage calls (a round in progress is cancelled where it waits). Returns what it
    /// did.
    pub async fn stop(mut self) -> PurgeStats {
        if let Some(handle) = self.handle.take() {
            handle.abort();
            // a cancelled task ends with a JoinError: that is the point
            let _ = handle.await;
        }
        self.stats()
    }
}

impl Drop for PurgeTask {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

impl fmt::Debug for PurgeTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PurgeTask")
            .field("running", &self.is_running())
            .field("interval", &self.interval)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The task: one purge per tick, forever (until aborted).
async fn run(store: Arc<dyn Storage>, interval: Duration, shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    // a round slower than the interval delays the next one rather than bunching rounds up
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.purge_expired().await {
            Ok(n) => {
                shared.purged.fetch_add(n, Ordering::AcqRel);
            }
            Err(e) => {
                *shared
                    .last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(e));
                shared.failed.fetch_add(1, Ordering::AcqRel);
            }
        }
        shared.rounds.fetch_add(1, Ordering::AcqRel);
    }
}
