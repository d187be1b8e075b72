//! The session id in a request and response header (`CookieConfig::header`), for API clients:
//! a real axum server on a loopback port, spoken to over raw HTTP/1.1, on the memory driver
//! behind the counting delegate and on SQLite.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use session_axum::{CookieConfig, Key, Protection};

const H: &str = "x-session-id";

fn key(byte: u8) -> Key {
    Key::try_from_secret(&[byte; 32]).unwrap()
}

fn in_header(keys: Vec<Key>, protection: Protection) -> CookieConfig {
    CookieConfig {
        header: Some("X-Session-Id".into()), // matched without regard to case
        keys,
        protection,
        ..CookieConfig::default()
    }
}

/// The one id header of `r`.
fn id_header(r: &Reply) -> String {
    let all = r.all(H);
    assert_eq!(all.len(), 1, "{:?}", r.headers);
    all[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_ids_travel_in_the_header_and_cookies_are_ignored() {
    let (store, manager) = memory();
    let (addr, server) = serve(app(layer(
        &manager,
        in_header(Vec::new(), Protection::Signed),
    )))
    .await;

    let r = http_get(addr, "/untouched", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello"));
    assert!(r.all(H).is_empty() && r.all("set-cookie").is_empty());

    let r = http_get(addr, "/visits", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    assert!(r.all("set-cookie").is_empty(), "no cookie in header mode");
    let id = id_header(&r);
    assert!(session_core::SessionId::parse(&id).is_ok(), "bare id {id}");

    // the id comes back in the header; a write that only slides the expiry sends nothing
    let r = http_get(addr, "/visits", &[(H, &id)]).await;
    assert_eq!(r.body, "2");
    assert!(r.all(H).is_empty(), "{:?}", r.headers);
    assert_eq!(
        http_get(addr, "/id", &[("X-SESSION-ID", &id)]).await.body,
        id
    );

    // a cookie carrying the id is not read
    let cookie = format!("session_id={id}");
    let r = http_get(addr, "/visits", &[("cookie", &cookie)]).await;
    assert_eq!(r.body, "1", "a cookie is not a header");
    assert_ne!(id_header(&r), id);

    // login: a new id in the header; logout: an empty header value
    let r = http_get(addr, "/login", &[(H, &id)]).await;
    let logged = id_header(&r);
    assert_ne!(logged, id, "login regenerated the id");
    assert_eq!(
        http_get(addr, "/whoami", &[(H, &logged)]).await.body,
        "alice"
    );
    let r = http_get(addr, "/logout", &[(H, &logged)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(id_header(&r), "", "an empty value: forget the id");
    let r = http_get(addr, "/whoami", &[(H, &logged)]).await;
    assert_eq!(r.body, "anonymous");
    assert_eq!(id_header(&r), "", "a dead id is removed once looked up");

    // garbage: a fresh session, removal header, no storage call; empty: nothing
    let calls = store.hook().calls();
    for bad in ["../../etc/passwd", "short", "' OR 1=1 --"] {
        let r = http_get(addr, "/read", &[(H, bad)]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "-"), "{bad}");
        assert_eq!(id_header(&r), "", "{bad}");
    }
    assert_eq!(store.hook().calls(), calls, "no bad id reached storage");
    let r = http_get(addr, "/untouched", &[(H, "")]).await;
    assert!(r.all(H).is_empty(), "an empty header is no id");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_ids_are_signed_or_encrypted_like_cookies() {
    for protection in [Protection::Signed, Protection::Private] {
        let (store, manager) = memory();
        let (addr, server) = serve(app(layer(&manager, in_header(vec![key(1)], protection)))).await;
        let r = http_get(addr, "/visits", &[]).await;
        let sealed = id_header(&r);
        let r = http_get(addr, "/visits", &[(H, &sealed)]).await;
        assert_eq!(r.body, "2", "{protection:?} round trip");
        let id = http_get(addr, "/id", &[(H, &sealed)]).await.body;
        assert!(session_core::SessionId::parse(&id).is_ok(), "{id}");
        match protection {
            Protection::Signed => assert_eq!(&sealed[44..], id, "MAC then the id"),
            Protection::Private => assert!(!sealed.contains(&id[..8]), "{sealed} shows {id}"),
        }

        // the bare id, a tampered value, a value under another key: refused before storage
        let mut tampered = sealed.clone().into_bytes();
        let i = tampered.len() - 10;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let foreign = {
            let (_s, m) = memory();
            let (a, s) = serve(app(layer(&m, in_header(vec![key(2)], protection)))).await;
            let v = id_header(&http_get(a, "/set", &[]).await);
            s.abort();
            v
        };
        let calls = store.hook().calls();
        for bad in [&id, &tampered, &foreign] {
            let r = http_get(addr, "/read", &[(H, bad)]).await;
            assert_eq!(r.body, "-", "{protection:?} {bad}");
            assert_eq!(id_header(&r), "", "{protection:?} {bad}: removed");
        }
        assert_eq!(
            store.hook().calls(),
            calls,
            "{protection:?}: none looked up"
        );

        // a valid value next to a bad one: the valid one counts
        let r = http_get(addr, "/visits", &[(H, &tampered), (H, &sealed)]).await;
        assert_eq!(r.body, "3", "{protection:?}");
        let folded = format!("{tampered}, {sealed}");
        let r = http_get(addr, "/visits", &[(H, &folded)]).await;
        assert_eq!(
            r.body, "4",
            "{protection:?}: folded into one header by a proxy"
        );
        server.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_cookie_is_not_a_private_header_value() {
    // The private value is bound to its name: a cookie's value does not open as a header's.
    let (_store, manager) = memory();
    let k = key(3);
    let cookies = CookieConfig {
        keys: vec![k.clone()],
        protection: Protection::Private,
        secure: false,
        ..CookieConfig::default()
    };
    let (c_addr, c_server) = serve(app(layer(&manager, cookies))).await;
    let (h_addr, h_server) = serve(app(layer(
        &manager,
        in_header(vec![k], Protection::Private),
    )))
    .await;
    let r = http_get(c_addr, "/set", &[]).await;
    let set_cookie = r.all("set-cookie")[0].to_owned();
    let sealed = set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    assert_eq!(
        http_get(
            c_addr,
            "/read",
            &[("cookie", &format!("session_id={sealed}"))]
        )
        .await
        .body,
        "ada"
    );
    let r = http_get(h_addr, "/read", &[(H, &sealed)]).await;
    assert_eq!(r.body, "-");
    assert_eq!(id_header(&r), "");
    c_server.abort();
    h_server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_key_rotation_reissues_the_value_under_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = session_sqlite::SqliteStore::open(dir.path().join("s.db"))
        .await
        .unwrap();
    let manager =
        session_core::Manager::new(std::sync::Arc::new(sqlite), session_core::Config::default())
            .unwrap();
    let (old, new) = (key(4), key(5));
    let serve_with = |keys| serve(app(layer(&manager, in_header(keys, Protection::Private))));
    let (a, before) = serve_with(vec![old.clone()]).await;
    let sealed = id_header(&http_get(a, "/visits", &[]).await);
    before.abort();

    let (a, during) = serve_with(vec![new.clone(), old]).await;
    let r = http_get(a, "/read", &[(H, &sealed)]).await;
    assert!(r.all(H).is_empty(), "a read sends nothing: {:?}", r.headers);
    let r = http_get(a, "/visits", &[(H, &sealed)]).await;
    assert_eq!(r.body, "2", "old-key value accepted");
    let reissued = id_header(&r);
    assert_ne!(reissued, sealed);
    during.abort();

    let (a, after) = serve_with(vec![new]).await;
    assert_eq!(http_get(a, "/visits", &[(H, &reissued)]).await.body, "3");
    let r = http_get(a, "/visits", &[(H, &sealed)]).await;
    assert_eq!(r.body, "1", "old-key value: a fresh session");
    assert_ne!(id_header(&r), "", "its new id replaces the removal");
    after.abort();
}
