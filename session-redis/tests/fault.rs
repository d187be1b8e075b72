//! A private `redis-server` is killed under a store and started again on the same port: calls
//! fail fast with `Error::Backend` while it is down and work again, with the same store, once it
//! is back.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use session_core::{Error, SessionId, Storage, Value};
use session_redis::RedisStore;

use common::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_crash_fails_fast_and_recovery_needs_no_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = common::free_port();
    let mut server = RedisServer::start(port, dir.path(), false, &[]);

    let store = RedisStore::builder()
        .prefix("faulttest")
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .open(&server.url())
        .await
        .expect("store on the private server");
    let id = SessionId::generate().unwrap();
    let ttl = Duration::from_secs(60);
    let value = Value::encode("before").unwrap();
    store.set(&id, "k", value.clone(), ttl).await.unwrap();
    assert_eq!(store.get(&id, "k").await.unwrap(), Some(value));

    server.kill();

    // Every call while the server is down fails quickly with a backend error.
    for attempt in 0..5 {
        let started = Instant::now();
        let result = store.get(&id, "k").await;
        let took = started.elapsed();
        match result {
            Err(Error::Backend { backend, source }) => {
                assert_eq!(backend, "redis");
                assert!(!source.to_string().is_empty());
            }
            other => panic!("attempt {attempt}: expected a backend error, got {other:?}"),
        }
        assert!(
            took < Duration::from_secs(3),
            "attempt {attempt} took {took:?} to fail"
        );
    }
    let started = Instant::now();
    let write = store.set(&id, "k", Value::encode("x").unwrap(), ttl).await;
    assert!(matches!(write, Err(Error::Backend { .. })), "{write:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    // Same port, empty server (no persistence): the same store works again by itself.
    let _server = RedisServer::start(port, dir.path(), false, &[]);
    let after = Value::encode("after").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match store.set(&id, "k", after.clone(), ttl).await {
            Ok(()) => break,
            Err(Error::Backend { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not recover within 15 s: {e}"),
        }
    }
    assert_eq!(store.get(&id, "k").await.unwrap(), Some(after));
    // Scripts were flushed with the old server: EVALSHA falls back to loading them again.
    assert!(store.try_lock(&id, ttl).await.unwrap().is_some());
    assert_eq!(store.get_size(&id).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_times_out_instead_of_hanging() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = RedisServer::start(common::free_port(), dir.path(), false, &[]);
    let store = RedisStore::builder()
        .prefix("hangtest")
        .connect_timeout(Duration::from_millis(300))
        .response_timeout(Duration::from_millis(300))
        .operation_timeout(Duration::from_secs(1))
        .open(&server.url())
        .await
        .expect("store on the private server");
    let id = SessionId::generate().unwrap();
    let ttl = Duration::from_secs(60);
    store
        .set(&id, "k", Value::encode(&1).unwrap(), ttl)
        .await
        .unwrap();

    // The process is alive and its socket open, but it answers nothing.
    server.signal("STOP");
    for attempt in 0..3 {
        let started = Instant::now();
        let result = store.get_size(&id).await;
        let took = started.elapsed();
        assert!(
            matches!(result, Err(Error::Backend { .. })),
            "attempt {attempt}: {result:?}"
        );
        assert!(
            took < Duration::from_secs(2),
            "attempt {attempt} took {took:?}"
        );
    }
    server.signal("CONT");

    let deadline = Instant::now() + Duration::from_secs(15);
    let size = loop {
        match store.get_size(&id).await {
            Ok(size) => break size,
            Err(Error::Backend { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the store did not recover within 15 s: {e}"),
        }
    };
    assert_eq!(size, 1, "the data survived the pause");
}

/// The report of issue 19: a server that runs a write late (`CLIENT PAUSE`) must not keep the
/// session past the deadline the client recorded. A write of a 100 ms session held 400 ms by the
/// server is gone when the call returns; a read held past a session's deadline finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_never_serves_a_session_past_its_deadline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = RedisServer::start(common::free_port(), dir.path(), true, &[]);
    let store = RedisStore::builder()
        .prefix("pausetest")
        .response_timeout(Duration::from_secs(5))
        .open(&server.url())
        .await
        .expect("store on the private server");

    // A write delayed past its own deadline.
    let id = SessionId::generate().unwrap();
    let value = Value::encode("v").unwrap();
    assert_eq!(server.cli(&["CLIENT", "PAUSE", "400", "ALL"]).trim(), "OK");
    let started = Instant::now();
    store
        .set(&id, "k", value.clone(), Duration::from_millis(100))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the pause did not hold the write ({:?})",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        store.load(&id).await.unwrap().is_none(),
        "load after a late write"
    );
    assert_eq!(
        store.get(&id, "k").await.unwrap(),
        None,
        "get after a late write"
    );
    assert_eq!(store.get_size(&id).await.unwrap(), 0);
    let page = store.scan(None, 10).await.unwrap();
    assert!(!page.ids.contains(&id), "scan after a late write");

    // A read delayed past the deadline of a session written in time.
    let id = SessionId::generate().unwrap();
    store
        .set(&id, "k", value.clone(), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(store.get(&id, "k").await.unwrap(), Some(value.clone()));
    assert_eq!(server.cli(&["CLIENT", "PAUSE", "500", "ALL"]).trim(), "OK");
    let loaded = store.load(&id).await.unwrap();
    assert!(
        loaded.is_none(),
        "load held past the deadline returned the session (expires_at {:?})",
        loaded.and_then(|l| l.expires_at)
    );
    assert_eq!(store.get(&id, "k").await.unwrap(), None);
}
