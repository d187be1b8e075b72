//! The background purge (`Manager::start_purge`, `PurgeTask`) on real drivers: the file store,
//! which does not expire sessions by itself, and the memory store, which does. A hook around
//! the real store counts its `purge_expired` calls and can make the first ones fail (a
//! forwarding wrapper, not a mock: every other call, and every purge it lets through, runs on
//! the real store).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::ms;
use session_core::driver::{BoxFuture, Call, Driver, Intercept, Intercepted, Op};
use session_core::{Capabilities, Config, Error, Manager, Result, SessionId, Storage};
use session_file::FileStore;
use session_memory::MemoryStore;

/// Counts the purges of the store it wraps; fails the first `fail_first` of them, and hides the
/// `purge` capability when `hide_purge`.
#[derive(Default)]
struct Purges {
    calls: AtomicUsize,
    fail_first: usize,
    hide_purge: bool,
}

impl Intercept for Purges {
    fn intercept<'a, T: Send + 'static>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        if call.op != Op::PurgeExpired {
            return run;
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.fail_first {
            return Box::pin(async { Err(Error::backend("file", "injected purge failure")) });
        }
        run
    }

    fn capabilities(&self, mut c: Capabilities) -> Capabilities {
        if self.hide_purge {
            c.purge = false;
        }
        c
    }
}

type Counted<D> = Intercepted<D, Purges>;

fn calls<D: Driver>(store: &Counted<D>) -> usize {
    store.hook().calls.load(Ordering::SeqCst)
}

/// A file store in a temporary directory (no fsync, no purge of its own).
async fn file_store(hook: Purges) -> Arc<Counted<FileStore>> {
    let files = FileStore::builder().sync(false).temporary().await.unwrap();
    Arc::new(Intercepted::new(files, hook))
}

fn config(idle: Duration, purge_every: Option<Duration>) -> Config {
    Config {
        idle_ttl: idle,
        purge_interval: purge_every,
        ..Config::default()
    }
}

/// Stores `n` sessions, each with its own idle TTL when `ttl` is given.
async fn sessions(m: &Manager, n: usize, ttl: Option<Duration>) -> Vec<SessionId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let s = m.load(None);
        s.set("i", &(i as u32)).await.unwrap();
        s.set_idle_ttl(ttl).await.unwrap();
        ids.push(s.save().await.unwrap().cookie.id().cloned().unwrap());
    }
    ids
}

/// Waits up to 10 s for `done`.
async fn until(what: &str, done: impl Fn() -> bool) {
    let start = tokio::time::Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        tokio::time::sleep(ms(10)).await;
    }
}

#[tokio::test]
async fn the_task_purges_a_store_without_native_expiry() {
    let store = file_store(Purges::default()).await;
    let caps = Storage::capabilities(&*store);
    assert!(!caps.native_expiry && caps.purge);
    let m = Manager::new(store.clone(), config(ms(100), Some(ms(150)))).unwrap();
    sessions(&m, 3, None).await;
    let live = sessions(&m, 1, Some(Duration::from_secs(60))).await;

    let purge = m.start_purge().unwrap();
    assert!(purge.is_running());
    assert_eq!(purge.interval(), Some(ms(150)));
    until("the three expired sessions purged", || {
        purge.stats().purged >= 3
    })
    .await;
    let stats = purge.stats();
    assert_eq!(stats.purged, 3, "{stats:?}");
    assert_eq!(stats.failed, 0);
    assert!(stats.rounds >= 1 && calls(&store) >= 1);
    // nothing expired is left for a purge of our own, and the live session is untouched
    assert_eq!(Storage::purge_expired(store.inner()).await.unwrap(), 0);
    let s = m.load(&live[0]);
    assert_eq!(s.get::<u32>("i").await.unwrap(), Some(0));
    assert!(purge.stop().await.purged >= 3);
}

#[tokio::test]
async fn stop_and_drop_end_the_purge_calls() {
    let store = file_store(Purges::default()).await;
    let m = Manager::new(store.clone(), config(ms(100), Some(ms(30)))).unwrap();

    let purge = m.start_purge().unwrap();
    until("two purges", || calls(&store) >= 2).await;
    let stats = purge.stop().await;
    let after_stop = calls(&store);
    assert!(stats.rounds >= 1);
    tokio::time::sleep(ms(300)).await;
    assert_eq!(calls(&store), after_stop, "no purge after stop");

    let purge = m.start_purge().unwrap();
    until("a purge", || calls(&store) > after_stop).await;
    drop(purge);
    // a round in flight when the task was dropped may still finish its one call
    tokio::time::sleep(ms(50)).await;
    let after_drop = calls(&store);
    tokio::time::sleep(ms(300)).await;
    assert_eq!(calls(&store), after_drop, "no purge after drop");
}

#[tokio::test]
async fn a_failing_round_does_not_stop_the_task() {
    let store = file_store(Purges {
        fail_first: 2,
        ..Purges::default()
    })
    .await;
    let m = Manager::new(store.clone(), config(ms(50), Some(ms(40)))).unwrap();
    sessions(&m, 2, None).await;

    let purge = m.start_purge().unwrap();
    until("four rounds", || purge.stats().rounds >= 4).await;
    assert!(purge.is_running());
    let stats = purge.stats();
    assert_eq!(stats.failed, 2, "{stats:?}");
    let err = purge.last_error().expect("kept");
    assert!(
        matches!(&*err, Error::Backend { .. }) && err.to_string().contains("injected"),
        "{err}"
    );
    until("the expired sessions purged", || purge.stats().purged >= 2).await;
    assert_eq!(purge.stop().await.purged, 2);
}

#[tokio::test]
async fn no_task_for_a_store_with_native_expiry_or_without_an_interval() {
    let memory = Arc::new(Intercepted::new(MemoryStore::new(), Purges::default()));
    assert!(Storage::capabilities(&*memory).native_expiry);
    let m = Manager::new(memory.clone(), config(ms(50), Some(ms(20)))).unwrap();
    sessions(&m, 2, None).await;
    let purge = m.start_purge().unwrap();
    assert!(!purge.is_running());
    assert_eq!(purge.interval(), None);

    let files = file_store(Purges::default()).await;
    let m = Manager::new(files.clone(), config(ms(50), None)).unwrap();
    let off = m.start_purge().unwrap();
    assert!(!off.is_running());

    tokio::time::sleep(ms(300)).await;
    assert_eq!(calls(&memory), 0, "the memory store is never purged");
    assert_eq!(calls(&files), 0, "purge_interval: None purges nothing");
    assert_eq!(purge.stats(), off.stats());
    assert_eq!(off.stop().await, session_core::PurgeStats::default());
}

#[tokio::test]
async fn a_store_that_neither_purges_nor_expires_is_refused() {
    let store = file_store(Purges {
        hide_purge: true,
        ..Purges::default()
    })
    .await;
    let m = Manager::new(store, Config::default()).unwrap();
    assert!(matches!(m.start_purge(), Err(Error::Unsupported { .. })));
}

#[test]
fn start_purge_outside_a_runtime_is_an_error_not_a_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime.block_on(file_store(Purges::default()));
    let m = Manager::new(store, Config::default()).unwrap();
    assert!(matches!(m.start_purge(), Err(Error::InvalidInput(_))));
    let _inside = runtime.block_on(async { m.start_purge().unwrap() });
}
