//! Private (AES-256-GCM) cookies through the router, on the memory driver behind the counting
//! delegate: round trip, the id hidden, tampering refused, key rotation, and signed and private
//! cookies never taken for each other.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use http::StatusCode;
use session_axum::{CookieConfig, Key, Protection};

fn key(byte: u8) -> Key {
    Key::try_from_secret(&[byte; 32]).unwrap()
}

fn private(keys: Vec<Key>) -> CookieConfig {
    CookieConfig {
        keys,
        protection: Protection::Private,
        ..CookieConfig::default()
    }
}

fn signed(keys: Vec<Key>) -> CookieConfig {
    CookieConfig {
        keys,
        ..CookieConfig::default()
    }
}

fn value(pair: &str) -> &str {
    pair.split_once('=').unwrap().1
}

/// `pair` with one character of its value changed.
fn tampered(pair: &str) -> String {
    let mut bytes = pair.as_bytes().to_vec();
    let i = bytes.len() - 10; // inside the ciphertext or tag, not the base64 padding
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// Asserts that `res` removes the session cookie, and nothing else.
fn assert_removal(res: &http::Response<axum::body::Body>, what: &str) {
    let sent = set_cookies(res);
    assert_eq!(sent.len(), 1, "{what}: {sent:?}");
    assert!(sent[0].starts_with("session_id=;"), "{what}: {}", sent[0]);
    assert!(sent[0].contains("Max-Age=0"), "{what}: {}", sent[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_cookie_round_trip_hides_the_id() {
    let (store, manager) = memory();
    let app = app(layer(&manager, private(vec![key(1)])));
    let res = send(&app, "/visits", None).await;
    let cookie = cookie_pair(&res);
    assert_eq!(body(res).await, "1");
    let sealed = value(&cookie).to_owned();
    assert_eq!(
        sealed.len(),
        80,
        "base64 of 12-byte nonce, 32-byte id, 16-byte tag: {sealed}"
    );

    let res = send(&app, "/visits", Some(&cookie)).await;
    let resent = cookie_pair(&res);
    assert_eq!(body(res).await, "2", "private cookie round trip");
    assert_ne!(resent, cookie, "a fresh nonce on every re-send");
    assert_eq!(body(send(&app, "/visits", Some(&resent)).await).await, "3");

    // the id the store holds never shows in either cookie value
    let id = body(send(&app, "/id", Some(&cookie)).await).await;
    assert!(session_core::SessionId::parse(&id).is_ok(), "{id}");
    assert!(store.hook().ids().contains(&id), "the store saw {id}");
    for v in [sealed.as_str(), value(&resent)] {
        assert!(!v.contains(&id), "{v} holds the id {id}");
        assert!(!v.contains(&id[..8]), "{v} holds part of the id {id}");
    }
    // ... nor is the id accepted bare
    let res = send(&app, "/read", Some(&format!("session_id={id}"))).await;
    assert_removal(&res, "bare id");
    assert_eq!(body(res).await, "-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_foreign_private_cookies_are_refused_before_storage() {
    let (store, manager) = memory();
    let app = app(layer(&manager, private(vec![key(2)])));
    let real = cookie_pair(&send(&app, "/set", None).await);
    let other = {
        let (_s, m) = memory();
        cookie_pair(&send(&common::app(layer(&m, private(vec![key(3)]))), "/set", None).await)
    };
    let truncated = real[..real.len() - 4].to_owned();
    let calls = store.hook().calls();
    for bad in [
        tampered(&real),
        other,
        truncated,
        "session_id=AAAA".to_owned(),
        "session_id=not*base64".to_owned(),
    ] {
        for path in ["/untouched", "/read"] {
            let res = send(&app, path, Some(&bad)).await;
            assert_eq!(res.status(), StatusCode::OK, "{bad}");
            assert_removal(&res, &bad);
        }
    }
    assert_eq!(store.hook().calls(), calls, "none reached storage");
    assert_eq!(body(send(&app, "/read", Some(&real)).await).await, "ada");

    // the same sealed value under another cookie name does not decrypt (the name is bound)
    let (_s, m) = memory();
    let renamed = app_named(&m, "sid", vec![key(2)]);
    let moved = format!("sid={}", value(&real));
    let res = send(&renamed, "/read", Some(&moved)).await;
    assert_eq!(body(res).await, "-", "value moved to another cookie name");
}

fn app_named(manager: &session_core::Manager, name: &str, keys: Vec<Key>) -> axum::Router {
    app(layer(
        manager,
        CookieConfig {
            name: name.into(),
            ..private(keys)
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_rotation_accepts_old_cookies_and_reissues_them() {
    let (_store, manager) = memory();
    let (old, new) = (key(4), key(5));
    let before = app(layer(&manager, private(vec![old.clone()])));
    let cookie = cookie_pair(&send(&before, "/visits", None).await);

    let during = app(layer(&manager, private(vec![new.clone(), old.clone()])));
    // a read within the touch threshold sends nothing, even with the old key
    let res = send(&during, "/read", Some(&cookie)).await;
    assert!(set_cookies(&res).is_empty(), "{:?}", set_cookies(&res));
    let res = send(&during, "/visits", Some(&cookie)).await;
    let reissued = cookie_pair(&res);
    assert_eq!(body(res).await, "2", "old-key cookie accepted");

    let only_old = app(layer(&manager, private(vec![old])));
    let res = send(&only_old, "/read", Some(&reissued)).await;
    assert_removal(&res, "re-issued cookie is not under the old key");

    let after = app(layer(&manager, private(vec![new])));
    let res = send(&after, "/visits", Some(&reissued)).await;
    assert_eq!(body(res).await, "3", "re-issued under the new key");
    let res = send(&after, "/visits", Some(&cookie)).await;
    assert_eq!(body(res).await, "1", "old-key cookie: a fresh session now");

    // a browser-session cookie is re-issued at its first save after the rotation too
    let config = |keys| CookieConfig {
        persistent: false,
        ..private(keys)
    };
    let before = app(layer(&manager, config(vec![key(6)])));
    let cookie = cookie_pair(&send(&before, "/visits", None).await);
    let during = app(layer(&manager, config(vec![key(7), key(6)])));
    let reissued = cookie_pair(&send(&during, "/visits", Some(&cookie)).await);
    let after = app(layer(&manager, config(vec![key(7)])));
    assert_eq!(
        body(send(&after, "/visits", Some(&reissued)).await).await,
        "3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_and_private_cookies_are_not_taken_for_each_other() {
    let (store, manager) = memory();
    let k = key(8);
    let as_signed = app(layer(&manager, signed(vec![k.clone()])));
    let as_private = app(layer(&manager, private(vec![k])));
    let signed_cookie = cookie_pair(&send(&as_signed, "/set", None).await);
    let private_cookie = cookie_pair(&send(&as_private, "/set", None).await);
    assert_eq!(
        body(send(&as_signed, "/read", Some(&signed_cookie)).await).await,
        "ada"
    );
    assert_eq!(
        body(send(&as_private, "/read", Some(&private_cookie)).await).await,
        "ada"
    );

    let calls = store.hook().calls();
    let res = send(&as_private, "/read", Some(&signed_cookie)).await;
    assert_removal(&res, "signed cookie on a private layer");
    assert_eq!(body(res).await, "-");
    let res = send(&as_signed, "/read", Some(&private_cookie)).await;
    assert_removal(&res, "private cookie on a signed layer");
    assert_eq!(body(res).await, "-");
    assert_eq!(store.hook().calls(), calls, "neither reached storage");
}

#[test]
fn private_without_a_key_is_a_config_error() {
    let (_store, manager) = memory();
    let err = session_axum::SessionLayer::with_config(manager, private(Vec::new())).unwrap_err();
    assert!(err.to_string().contains("at least one key"), "{err}");
}
