//! Concurrent requests on one session against a real server: writes of different keys all
//! survive (only changed keys are saved), and locked loading serialises a read-modify-write
//! that loses updates without it.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use futures_util::future::join_all;
use session_actix::CookieConfig;

#[actix_web::test]
async fn parallel_writes_of_different_keys_all_survive() {
    let (_store, manager) = memory();
    let server = serve(middleware(&manager, CookieConfig::default()));
    let cookie = get_with(&server, "/set", None).await.cookie_pair();
    let keys: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
    let paths: Vec<String> = keys.iter().map(|k| format!("/put/{k}")).collect();
    let replies = join_all(paths.iter().map(|p| get_with(&server, p, Some(&cookie)))).await;
    for (k, r) in keys.iter().zip(&replies) {
        assert_eq!((r.status, r.body.as_str()), (200, k.as_str()));
    }
    let listed = get_with(&server, "/keys", Some(&cookie)).await.body;
    let mut expected = keys.clone();
    expected.push("name".into());
    expected.sort();
    assert_eq!(listed, expected.join(","), "every request's key is there");
    server.stop().await;
}

/// Runs `n` `/slow` requests on one session at once; returns the final count.
async fn slow_counts(server: &Server, n: usize) -> u32 {
    let cookie = get_with(server, "/set", None).await.cookie_pair();
    let replies = join_all((0..n).map(|_| get_with(server, "/slow", Some(&cookie)))).await;
    assert!(replies.iter().all(|r| r.status == 200), "{replies:?}");
    get_with(server, "/slow", Some(&cookie))
        .await
        .body
        .parse::<u32>()
        .unwrap()
        - 1
}

#[actix_web::test]
async fn locked_loading_serialises_requests() {
    let (_store, manager) = memory();
    // without the lock, concurrent read-modify-writes of one key lose updates ...
    let server = serve(middleware(&manager, CookieConfig::default()));
    let unlocked = slow_counts(&server, 6).await;
    assert!(unlocked < 6, "the test shows the race: {unlocked}");
    server.stop().await;
    // ... with it, they run one after the other and none is lost
    let locked = middleware(&manager, CookieConfig::default())
        .locked()
        .unwrap();
    let server = serve(locked);
    assert_eq!(slow_counts(&server, 6).await, 6);
    server.stop().await;
}

/// Forwards to a real store, declaring no lock (as memcached's driver does).
struct NoLock;

impl session_core::driver::Intercept for NoLock {
    fn intercept<'a, T: Send + 'static>(
        &'a self,
        _call: session_core::driver::Call<'a>,
        run: session_core::driver::BoxFuture<'a, session_core::Result<T>>,
    ) -> session_core::driver::BoxFuture<'a, session_core::Result<T>> {
        run // the middleware refuses to lock first, so no lock call comes here
    }

    fn capabilities(&self, c: session_core::Capabilities) -> session_core::Capabilities {
        session_core::Capabilities { lock: false, ..c }
    }
}

#[test]
fn locking_needs_a_store_with_a_lock() {
    let store = session_core::driver::Intercepted::new(session_memory::MemoryStore::new(), NoLock);
    let manager =
        session_core::Manager::new(std::sync::Arc::new(store), session_core::Config::default())
            .unwrap();
    let err = session_actix::SessionMiddleware::new(manager)
        .locked()
        .unwrap_err();
    assert_eq!(err.kind(), "unsupported", "{err}");
    let (_store, manager) = memory();
    assert!(
        session_actix::SessionMiddleware::new(manager)
            .locked()
            .is_ok()
    );
}
