//! Concurrent requests on one session: change sets keep each other's keys, locked updates lose
//! no increment, whole-request locking serializes and fails cleanly.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Recorded, memory, ms, setup, stored_session};
use session_core::{ClientInfo, Config, CookieAction, Error, LockPolicy};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_requests_writing_different_keys_both_keep_their_writes() {
    let m = memory(Config::default());
    let id = stored_session(&m, "base", 0).await;
    let a = m.load(Some(id.as_str()));
    let b = m.load(Some(id.as_str()));
    // both load before either saves: each sees only "base"
    assert_eq!(a.keys().await.unwrap(), ["base"]);
    assert_eq!(b.keys().await.unwrap(), ["base"]);
    a.set("from_a", &1).await.unwrap();
    b.set("from_b", &2).await.unwrap();
    b.remove("base").await.unwrap();
    let (ra, rb) = tokio::join!(a.save(), b.save());
    assert!(ra.unwrap().wrote && rb.unwrap().wrote);
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.keys().await.unwrap(), ["from_a", "from_b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_locked_increments_end_at_fifty() {
    let (m, store) = setup(Config::default());
    let id = stored_session(&m, "other", 0).await;
    store.take();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let m = m.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            // one Session per request, as 50 requests would have
            let s = m.load(Some(id.as_str()));
            let n = s
                .update("counter", |old: Option<u32>| old.unwrap_or(0) + 1)
                .await
                .unwrap();
            s.save().await.unwrap();
            n
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results.sort();
    assert_eq!(
        results,
        (1..=50).collect::<Vec<u32>>(),
        "each update saw the previous one"
    );
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<u32>("counter").await.unwrap(), Some(50));
    let calls = store.take();
    assert!(calls.iter().filter(|c| **c == "try_lock").count() >= 50);
    assert_eq!(calls.iter().filter(|c| **c == "unlock").count(), 50);
}

#[tokio::test]
async fn update_on_a_new_session_needs_no_lock() {
    let (m, store) = setup(Config::default());
    let s = m.load(None);
    assert_eq!(
        s.update("n", |o: Option<u32>| o.unwrap_or(10) + 1)
            .await
            .unwrap(),
        11
    );
    assert_eq!(store.take(), Vec::<&str>::new());
    let id = s.save().await.unwrap().cookie.id().cloned().unwrap();
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<u32>("n").await.unwrap(), Some(11));
}

#[tokio::test]
async fn update_uses_the_stored_value_not_the_stale_loaded_one() {
    let m = memory(Config::default());
    let id = stored_session(&m, "n", 1).await;
    let stale = m.load(Some(id.as_str()));
    assert_eq!(stale.get::<u32>("n").await.unwrap(), Some(1));
    let other = m.load(Some(id.as_str()));
    other.set("n", &100u32).await.unwrap();
    other.save().await.unwrap();
    let n = stale
        .update("n", |o: Option<u32>| o.unwrap() + 1)
        .await
        .unwrap();
    assert_eq!(n, 101);
    assert_eq!(stale.get::<u32>("n").await.unwrap(), Some(101));
    let out = stale.save().await.unwrap();
    assert!(!out.wrote, "the update already wrote");
}

#[tokio::test]
async fn update_waits_for_the_lock_then_fails_with_locked() {
    let m = memory(Config {
        lock: LockPolicy {
            lease: Duration::from_secs(5),
            wait: ms(200),
            retry_interval: ms(20),
        },
        ..Config::default()
    });
    let id = stored_session(&m, "n", 1).await;
    let holder = m
        .load_locked(Some(id.as_str()), ClientInfo::default())
        .await
        .unwrap();
    let s = m.load(Some(id.as_str()));
    let start = Instant::now();
    let err = s.update("n", |o: Option<u32>| o.unwrap_or(0) + 1).await;
    assert!(matches!(err, Err(Error::Locked(_))), "{err:?}");
    assert!(
        start.elapsed() >= ms(180),
        "did not wait: {:?}",
        start.elapsed()
    );
    // the holder's own update does not deadlock on its lock
    assert_eq!(
        holder
            .update("n", |o: Option<u32>| o.unwrap() + 1)
            .await
            .unwrap(),
        2
    );
    holder.save().await.unwrap();
    // released: now it works
    assert_eq!(
        s.update("n", |o: Option<u32>| o.unwrap() + 1)
            .await
            .unwrap(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn locked_requests_run_one_after_the_other() {
    let m = memory(Config::default());
    let id = stored_session(&m, "n", 0).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let m = m.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let s = m
                .load_locked(Some(id.as_str()), ClientInfo::default())
                .await
                .unwrap();
            // plain read-modify-write: safe only because the whole request holds the lock
            let n: u32 = s.get("n").await.unwrap().unwrap();
            tokio::time::sleep(ms(5)).await;
            s.set("n", &(n + 1)).await.unwrap();
            s.save().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<u32>("n").await.unwrap(), Some(10));
}

#[tokio::test]
async fn a_lock_that_cannot_be_had_is_an_error_not_an_empty_session() {
    let (m, store) = setup(Config {
        lock: LockPolicy {
            wait: ms(100),
            ..LockPolicy::default()
        },
        ..Config::default()
    });
    let id = stored_session(&m, "precious", 7).await;
    let _holder = m
        .load_locked(Some(id.as_str()), ClientInfo::default())
        .await
        .unwrap();
    store.take();
    let err = m
        .load_locked(Some(id.as_str()), ClientInfo::default())
        .await;
    assert!(matches!(err, Err(Error::Locked(_))));
    let calls = store.take();
    assert!(calls.len() > 2, "no retry: {calls:?}");
    assert!(calls.iter().all(|c| *c == "try_lock"), "{calls:?}");
    assert_eq!(
        store
            .raw(&id)
            .await
            .get("precious")
            .map(|v| v.decode::<u32>().unwrap()),
        Some(7)
    );
}

#[tokio::test]
async fn a_locked_load_of_an_unknown_id_starts_fresh_and_holds_nothing() {
    let (m, store) = setup(Config::default());
    let unknown = session_core::SessionId::generate().unwrap();
    let s = m
        .load_locked(Some(unknown.as_str()), ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(store.take(), ["try_lock", "load", "unlock"]);
    s.set("k", &1).await.unwrap();
    let out = s.save().await.unwrap();
    assert!(matches!(out.cookie, CookieAction::Set { ref id, .. } if *id != unknown));
    // and the unknown id is free
    let again = m
        .load_locked(Some(unknown.as_str()), ClientInfo::default())
        .await;
    assert!(again.is_ok());
}

#[tokio::test]
async fn save_releases_the_request_lock() {
    let m = memory(Config {
        lock: LockPolicy {
            wait: Duration::ZERO,
            ..LockPolicy::default()
        },
        ..Config::default()
    });
    let id = stored_session(&m, "n", 0).await;
    let first = m
        .load_locked(Some(id.as_str()), ClientInfo::default())
        .await
        .unwrap();
    assert!(matches!(
        m.load_locked(Some(id.as_str()), ClientInfo::default())
            .await,
        Err(Error::Locked(_))
    ));
    first.save().await.unwrap();
    let second = m
        .load_locked(Some(id.as_str()), ClientInfo::default())
        .await;
    assert!(second.is_ok(), "lock not released by save");
    let shared = Arc::new(second.unwrap());
    shared.save().await.unwrap();
}
