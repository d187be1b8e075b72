//! The layer through real requests against the router (tower `oneshot`), on the memory driver
//! behind a counting delegate.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;

use axum::Router;
use axum::routing::get;
use common::*;
use http::StatusCode;
use session_axum::{CookieConfig, Key, SameSite, SaveError, Session, SessionLayer};

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untouched_session_makes_no_storage_call_and_no_cookie() {
    let (store, manager) = memory();
    let app = app(layer(&manager, CookieConfig::default()));

    let res = send(&app, "/untouched", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(
        store.hook().calls(),
        0,
        "no cookie, no use: no storage call"
    );

    // a live session's cookie on a route that never touches the session: still no call
    let res = send(&app, "/set", None).await;
    let cookie = cookie_pair(&res);
    let before = store.hook().calls();
    let res = send(&app, "/untouched", Some(&cookie)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty());
    assert_eq!(
        store.hook().calls(),
        before,
        "cookie sent but session untouched"
    );

    // reading an empty new session: no write, no cookie
    let res = send(&app, "/read", None).await;
    assert_eq!(body(res).await, "-");
    let res = send(&app, "/read", None).await;
    assert!(
        set_cookies(&res).is_empty(),
        "no cookie for an empty session"
    );
    assert_eq!(
        store.hook().calls(),
        before,
        "an empty new session is never stored"
    );

    // a read of a live session within the touch threshold: one load, nothing written, no cookie
    let res = send(&app, "/read", Some(&cookie)).await;
    assert!(set_cookies(&res).is_empty());
    assert_eq!(body(res).await, "ada");
    assert_eq!(store.hook().calls(), before + 1, "exactly one load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_has_safe_default_attributes() {
    let (_store, manager) = memory();
    let app = app(layer(&manager, CookieConfig::default()));
    let res = send(&app, "/set", None).await;
    let all = set_cookies(&res);
    assert_eq!(all.len(), 1, "{all:?}");
    let (pair, attrs) = (cookie_pair(&res), attributes(&all[0]));
    let (name, value) = pair.split_once('=').unwrap();
    assert_eq!(name, "session_id");
    assert!(
        session_core::SessionId::parse(value).is_ok(),
        "bare id {value}"
    );
    assert_eq!(attr(&attrs, "path"), Some("/"));
    assert_eq!(attr(&attrs, "samesite"), Some("Lax"));
    assert!(attr(&attrs, "httponly").is_some());
    assert!(attr(&attrs, "secure").is_some());
    assert_eq!(attr(&attrs, "domain"), None);
    let max_age: u64 = attr(&attrs, "max-age").unwrap().parse().unwrap();
    assert!(
        (7190..=7200).contains(&max_age),
        "Max-Age follows the 2 h idle TTL: {max_age}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_follows_the_sessions_own_lifetime() {
    let (_store, manager) = memory();
    let app = app(layer(&manager, CookieConfig::default()));
    let res = send(&app, "/remember", None).await;
    let all = set_cookies(&res);
    assert_eq!(all.len(), 1, "{all:?}");
    let max_age: u64 = attr(&attributes(&all[0]), "max-age")
        .unwrap()
        .parse()
        .unwrap();
    let month = 30 * 24 * 3600;
    assert!(
        (month - 10..=month).contains(&max_age),
        "Max-Age follows the session's 30-day TTL, not the manager's 2 h: {max_age}"
    );
    // and the stored session says the same
    let cookie = cookie_pair(&res);
    let id = cookie.split_once('=').unwrap().1;
    let s = manager.load(Some(id));
    let expires = s.expires_at().await.unwrap().expect("stored");
    let left = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs();
    assert!((month - 10..=month).contains(&left), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_attributes_follow_the_config() {
    let (_store, manager) = memory();
    let config = CookieConfig {
        name: "sid".into(),
        path: "/app".into(),
        domain: Some("example.test".into()),
        secure: false,
        same_site: SameSite::Strict,
        persistent: false,
        ..CookieConfig::default()
    };
    let app = Router::new().nest("/app", app(layer(&manager, config)));
    let res = send(&app, "/app/set", None).await;
    let all = set_cookies(&res);
    assert_eq!(all.len(), 1, "{all:?}");
    let attrs = attributes(&all[0]);
    assert!(all[0].starts_with("sid="), "{}", all[0]);
    assert_eq!(attr(&attrs, "path"), Some("/app"));
    assert_eq!(attr(&attrs, "domain"), Some("example.test"));
    assert_eq!(attr(&attrs, "samesite"), Some("Strict"));
    assert!(attr(&attrs, "httponly").is_some(), "HttpOnly always");
    assert_eq!(attr(&attrs, "secure"), None);
    assert_eq!(attr(&attrs, "max-age"), None, "browser-session cookie");
    assert_eq!(attr(&attrs, "expires"), None, "browser-session cookie");

    // a browser-session cookie is not re-sent when only the expiry moves
    let cookie = cookie_pair(&res);
    let res = send(&app, "/app/visits", Some(&cookie)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(set_cookies(&res).is_empty(), "{:?}", set_cookies(&res));
    assert_eq!(body(res).await, "1");

    assert!(
        SessionLayer::with_config(
            manager.clone(),
            CookieConfig {
                name: "bad name".into(),
                ..CookieConfig::default()
            }
        )
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_round_trip_and_refreshed_max_age() {
    let (_store, manager) = memory();
    let app = app(layer(&manager, CookieConfig::default()));
    let res = send(&app, "/visits", None).await;
    let cookie = cookie_pair(&res);
    assert_eq!(body(res).await, "1");
    let res = send(&app, "/visits", Some(&cookie)).await;
    // a write slides the expiry: the persistent cookie is re-sent with the same id
    assert_eq!(cookie_pair(&res), cookie);
    assert_eq!(body(res).await, "2");
    let res = send(&app, "/read", Some(&cookie)).await;
    assert_eq!(body(res).await, "-");
    let res = send(&app, "/visits", Some(&format!("other=1; {cookie}; x=y"))).await;
    assert_eq!(body(res).await, "3", "found among other cookies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_cookie_round_trip_and_key_rotation() {
    let (store, manager) = memory();
    let old = Key::try_from_secret(&[1u8; 32]).unwrap();
    let new = Key::try_from_secret(&[2u8; 32]).unwrap();
    let signed = |keys: Vec<Key>| {
        app(layer(
            &manager,
            CookieConfig {
                keys,
                ..CookieConfig::default()
            },
        ))
    };
    let before = signed(vec![old.clone()]);
    let res = send(&before, "/visits", None).await;
    let cookie = cookie_pair(&res);
    let value = cookie.split_once('=').unwrap().1;
    assert_eq!(
        value.len(),
        44 + 32,
        "base64 HMAC-SHA256 then the id: {value}"
    );
    let id = &value[44..];
    assert!(session_core::SessionId::parse(id).is_ok());
    let res = send(&before, "/visits", Some(&cookie)).await;
    assert_eq!(body(res).await, "2", "signed cookie round trip");

    // the bare id without its signature is refused, and never reaches storage
    let bare = format!("session_id={id}");
    let calls = store.hook().calls();
    let res = send(&before, "/read", Some(&bare)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body(res).await, "-");
    assert_eq!(
        store.hook().calls(),
        calls,
        "an unsigned cookie is not looked up"
    );

    // rotation: the new key first, the old one still accepted
    let during = signed(vec![new.clone(), old.clone()]);
    let res = send(&during, "/read", Some(&cookie)).await;
    let resent = set_cookies(&res);
    assert_eq!(body(res).await, "-", "read of a missing key");
    assert!(resent.is_empty(), "nothing to send on an untouched expiry");
    let res = send(&during, "/visits", Some(&cookie)).await;
    let resigned = cookie_pair(&res);
    assert_eq!(body(res).await, "3", "old-key cookie accepted");
    assert_ne!(resigned, cookie, "re-signed with the new key");
    assert!(resigned.ends_with(id), "same session id");

    // after rotation only the new key is accepted
    let after = signed(vec![new]);
    let res = send(&after, "/visits", Some(&resigned)).await;
    assert_eq!(body(res).await, "4", "new-key cookie accepted");
    let res = send(&after, "/visits", Some(&cookie)).await;
    assert_ne!(cookie_pair(&res), cookie);
    assert_eq!(
        body(res).await,
        "1",
        "old-key cookie is a fresh session now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_session_cookie_is_resigned_when_signed_with_an_old_key() {
    let (_store, manager) = memory();
    let old = Key::try_from_secret(&[3u8; 32]).unwrap();
    let new = Key::try_from_secret(&[4u8; 32]).unwrap();
    let config = |keys| CookieConfig {
        keys,
        persistent: false,
        ..CookieConfig::default()
    };
    let before = app(layer(&manager, config(vec![old.clone()])));
    let cookie = cookie_pair(&send(&before, "/visits", None).await);
    let during = app(layer(&manager, config(vec![new.clone(), old])));
    let res = send(&during, "/visits", Some(&cookie)).await;
    let resigned = cookie_pair(&res);
    assert_ne!(resigned, cookie);
    let after = app(layer(&manager, config(vec![new])));
    assert_eq!(
        body(send(&after, "/visits", Some(&resigned)).await).await,
        "3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_forged_cookies_get_a_fresh_session_without_error() {
    let (store, manager) = memory();
    let plain = app(layer(&manager, CookieConfig::default()));
    let key = Key::try_from_secret(&[9u8; 32]).unwrap();
    let signed = app(layer(
        &manager,
        CookieConfig {
            keys: vec![key.clone()],
            ..CookieConfig::default()
        },
    ));
    let real = cookie_pair(&send(&signed, "/set", None).await);
    let real_value = real.split_once('=').unwrap().1.to_owned();
    let mut tampered = real_value.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let forged_with_other_key = {
        let other = app(layer(
            &session_core::Manager::new(
                std::sync::Arc::new(session_memory::MemoryStore::new()),
                session_core::Config::default(),
            )
            .unwrap(),
            CookieConfig {
                keys: vec![Key::try_from_secret(&[8u8; 32]).unwrap()],
                ..CookieConfig::default()
            },
        ));
        cookie_pair(&send(&other, "/set", None).await)
    };
    let long = "A".repeat(5000);
    let garbage = [
        "session_id=garbage".to_string(),
        "session_id=../../etc/passwd".to_string(),
        "session_id=' OR 1=1 --".to_string(),
        "session_id=%00%ff".to_string(),
        format!("session_id={long}"),
        "session_id=".to_string(),
        "session_id".to_string(),
        ";;;==;".to_string(),
    ];
    let calls = store.hook().calls();
    let ids_before = store.hook().ids().len();
    for cookie in &garbage {
        for app in [&plain, &signed] {
            let res = send(app, "/read", Some(cookie)).await;
            assert_eq!(res.status(), StatusCode::OK, "{cookie}");
            assert_eq!(body(res).await, "-", "{cookie}");
        }
    }
    for cookie in [
        format!("session_id={tampered}"),
        forged_with_other_key.clone(),
    ] {
        let res = send(&signed, "/read", Some(&cookie)).await;
        assert_eq!(res.status(), StatusCode::OK, "{cookie}");
        assert_eq!(body(res).await, "-", "{cookie}");
    }
    assert_eq!(
        store.hook().calls(),
        calls,
        "no cookie above reached storage"
    );
    assert_eq!(store.hook().ids().len(), ids_before);

    // a garbage cookie, then a write: a fresh session with a new, valid id
    let res = send(&plain, "/visits", Some("session_id=../../etc/passwd")).await;
    let fresh = cookie_pair(&res);
    assert_eq!(body(res).await, "1");
    assert!(session_core::SessionId::parse(fresh.split_once('=').unwrap().1).is_ok());

    // a well-formed but unknown id: looked up once, a fresh session, the dead cookie removed
    let unknown = format!(
        "session_id={}",
        session_core::SessionId::generate().unwrap()
    );
    let res = send(&plain, "/read", Some(&unknown)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let sent = set_cookies(&res);
    assert_eq!(body(res).await, "-");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(attr(&attributes(&sent[0]), "max-age"), Some("0"));
    // and the signed app still reads the real cookie
    assert_eq!(body(send(&signed, "/read", Some(&real)).await).await, "ada");
}

/// Asserts that `res` carries exactly one `Set-Cookie`, and that it removes the session cookie.
fn assert_removal(res: &http::Response<axum::body::Body>, what: &str) {
    let sent = set_cookies(res);
    assert_eq!(sent.len(), 1, "{what}: {sent:?}");
    assert!(sent[0].starts_with("session_id=;"), "{what}: {}", sent[0]);
    let attrs = attributes(&sent[0]);
    assert_eq!(attr(&attrs, "max-age"), Some("0"), "{what}");
    assert_eq!(
        attr(&attrs, "path"),
        Some("/"),
        "{what}: same path as the cookie"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_tampered_cookies_are_removed_without_a_storage_call() {
    let (store, manager) = memory();
    let plain = app(layer(&manager, CookieConfig::default()));
    let signed = app(layer(
        &manager,
        CookieConfig {
            keys: vec![Key::try_from_secret(&[5u8; 32]).unwrap()],
            ..CookieConfig::default()
        },
    ));
    let real = cookie_pair(&send(&signed, "/set", None).await);
    let value = real.split_once('=').unwrap().1.to_owned();
    let mut tampered = value.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = format!("session_id={}", String::from_utf8(tampered).unwrap());
    let unsigned = format!("session_id={}", &value[44..]);

    // on a request that never touches the session
    let calls = store.hook().calls();
    for (app, cookie) in [
        (&plain, "session_id=../../etc/passwd"),
        (&plain, "session_id=garbage"),
        (&signed, tampered.as_str()),
        (&signed, unsigned.as_str()),
    ] {
        let res = send(app, "/untouched", Some(cookie)).await;
        assert_eq!(res.status(), StatusCode::OK, "{cookie}");
        assert_removal(&res, cookie);
        assert_eq!(body(res).await, "hello", "{cookie}");
    }
    // and on one that reads it
    let res = send(&plain, "/read", Some("session_id=../../etc/passwd")).await;
    assert_removal(&res, "malformed, read");
    assert_eq!(body(res).await, "-");
    let res = send(&signed, "/read", Some(&tampered)).await;
    assert_removal(&res, "tampered, read");
    assert_eq!(body(res).await, "-");
    assert_eq!(store.hook().calls(), calls, "none of them reached storage");

    // a live cookie next to a bad one of the same name: the live one counts, nothing removed
    let res = send(&signed, "/untouched", Some(&format!("{tampered}; {real}"))).await;
    assert!(set_cookies(&res).is_empty(), "{:?}", set_cookies(&res));
    let res = send(&signed, "/read", Some(&format!("{tampered}; {real}"))).await;
    assert_eq!(body(res).await, "ada");
    // no cookie, or an empty one: nothing to remove
    for cookie in [None, Some("session_id="), Some("other=1")] {
        let res = send(&plain, "/untouched", cookie).await;
        assert!(set_cookies(&res).is_empty(), "{cookie:?}");
    }

    // a tampered cookie on a request that writes: a fresh session, its new cookie replaces it
    let res = send(&signed, "/visits", Some(&tampered)).await;
    let fresh = cookie_pair(&res);
    assert_eq!(body(res).await, "1");
    assert_ne!(fresh, real);
    assert_ne!(fresh, tampered);
    assert_eq!(
        body(send(&signed, "/visits", Some(&fresh)).await).await,
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_error_on_save_is_a_500_without_cookie() {
    let (store, manager) = memory();
    let app = app(layer(&manager, CookieConfig::default()));
    let cookie = cookie_pair(&send(&app, "/visits", None).await);

    store.hook().fail_apply.store(true, Ordering::SeqCst);
    for c in [None, Some(cookie.as_str())] {
        let res = send(&app, "/visits", c).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(set_cookies(&res).is_empty(), "{:?}", set_cookies(&res));
        let err = res
            .extensions()
            .get::<SaveError>()
            .expect("SaveError extension");
        assert!(err.0.to_string().contains("injected"), "{}", err.0);
        assert_eq!(body(res).await, "", "the handler's body is dropped");
    }
    // an untouched session still answers while the store's writes fail
    assert_eq!(
        send(&app, "/untouched", Some(&cookie)).await.status(),
        StatusCode::OK
    );

    store.hook().fail_apply.store(false, Ordering::SeqCst);
    let res = send(&app, "/visits", Some(&cookie)).await;
    assert_eq!(body(res).await, "2", "the failed writes were never stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_sends_a_removal_cookie() {
    let (_store, manager) = memory();
    let app = app(layer(&manager, CookieConfig::default()));
    let cookie = cookie_pair(&send(&app, "/login", None).await);
    assert_eq!(
        body(send(&app, "/whoami", Some(&cookie)).await).await,
        "alice"
    );

    let res = send(&app, "/logout", Some(&cookie)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let sent = set_cookies(&res);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].starts_with("session_id=;"), "{}", sent[0]);
    let attrs = attributes(&sent[0]);
    assert_eq!(attr(&attrs, "max-age"), Some("0"));
    assert_eq!(
        attr(&attrs, "path"),
        Some("/"),
        "same path as the cookie it removes"
    );
    assert!(attr(&attrs, "expires").is_some());

    let res = send(&app, "/whoami", Some(&cookie)).await;
    assert_eq!(body(res).await, "anonymous", "the old cookie is dead");
    assert!(manager.sessions_of("alice").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_regenerates_the_id_and_keeps_the_data() {
    let (_store, manager) = memory();
    let app = app(layer(&manager, CookieConfig::default()));
    let before = cookie_pair(&send(&app, "/set", None).await);
    let res = send(&app, "/login", Some(&before)).await;
    let after = cookie_pair(&res);
    assert_ne!(after, before, "a new id at login");
    assert_eq!(
        body(send(&app, "/whoami", Some(&after)).await).await,
        "alice"
    );
    assert_eq!(body(send(&app, "/read", Some(&after)).await).await, "ada");
    assert_eq!(
        body(send(&app, "/whoami", Some(&before)).await).await,
        "anonymous",
        "the pre-login id is destroyed"
    );
    let listed = manager.sessions_of("alice").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(after, format!("session_id={}", listed[0].id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_info_from_user_agent_and_trusted_forwarded_for() {
    let (_store, manager) = memory();
    let headers = [
        ("user-agent", "TestBrowser/1.0"),
        ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
    ];
    let untrusting = app(layer(&manager, CookieConfig::default()));
    let res = send_with(&untrusting, "/client", None, &headers).await;
    assert_eq!(
        body(res).await,
        "-|TestBrowser/1.0",
        "X-Forwarded-For ignored by default (and oneshot has no peer address)"
    );
    let behind = |n| {
        app(layer(
            &manager,
            CookieConfig {
                trusted_proxies: n,
                ..CookieConfig::default()
            },
        ))
    };
    let res = send_with(&behind(1), "/client", None, &headers).await;
    assert_eq!(body(res).await, "10.0.0.2|TestBrowser/1.0");
    let res = send_with(&behind(2), "/client", None, &headers).await;
    assert_eq!(body(res).await, "203.0.113.7|TestBrowser/1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extractor_without_layer_is_a_500() {
    let app: Router = Router::new().route("/", get(|_s: Session| async { "never" }));
    let res = send(&app, "/", None).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body(res).await.contains("SessionLayer"));
}
