//! Signed and private cookies on a real server: round trips, tampered and foreign values
//! refused before storage and removed, key rotation (an old key's cookie accepted and re-issued
//! under the new key, refused once the old key is dropped).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use session_actix::{CookieConfig, Key, Protection};

fn key(byte: u8) -> Key {
    Key::try_from_secret(&[byte; 32]).unwrap()
}

fn config(keys: Vec<Key>, protection: Protection) -> CookieConfig {
    CookieConfig {
        keys,
        protection,
        ..CookieConfig::default()
    }
}

/// Both protections: round trip, tampering, a foreign key, rotation.
async fn protects_and_rotates(protection: Protection, value_len: usize) {
    let (store, manager) = memory();
    let (old, new) = (key(1), key(2));
    let before = serve(middleware(&manager, config(vec![old.clone()], protection)));
    let r = get_with(&before, "/visits", None).await;
    let cookie = r.cookie_pair();
    let value = cookie.split_once('=').unwrap().1.to_owned();
    assert_eq!(value.len(), value_len, "{value}");
    assert_eq!(get_with(&before, "/visits", Some(&cookie)).await.body, "2");

    // tampered, under an unknown key, or a bare id: refused without a storage call, removed
    let foreign = {
        let (_s, m) = memory();
        let other = serve(middleware(&m, config(vec![key(3)], protection)));
        let pair = get_with(&other, "/set", None).await.cookie_pair();
        other.stop().await;
        pair
    };
    let bare = format!(
        "session_id={}",
        session_core::SessionId::generate().unwrap()
    );
    let calls = store.hook().get();
    for bad in [tampered(&cookie, 10), foreign, bare] {
        for path in ["/untouched", "/read"] {
            let r = get_with(&before, path, Some(&bad)).await;
            assert_eq!(r.status, 200, "{bad}");
            let removal = r.set_cookies();
            assert_eq!(removal.len(), 1, "{bad}: {:?}", r.headers);
            assert_eq!(attr(removal[0], "max-age"), Some("0"), "{bad}");
        }
    }
    assert_eq!(
        store.hook().get(),
        calls,
        "no refused cookie reached storage"
    );
    before.stop().await;

    // rotation: the new key first, the old one still accepted, the cookie re-issued
    let during = serve(middleware(
        &manager,
        config(vec![new.clone(), old.clone()], protection),
    ));
    let r = get_with(&during, "/visits", Some(&cookie)).await;
    assert_eq!(r.body, "3", "an old-key cookie is accepted");
    let reissued = r.cookie_pair();
    assert_ne!(reissued, cookie, "re-issued under the new key");
    during.stop().await;

    let after = serve(middleware(&manager, config(vec![new], protection)));
    assert_eq!(get_with(&after, "/visits", Some(&reissued)).await.body, "4");
    let r = get_with(&after, "/visits", Some(&cookie)).await;
    assert_eq!(r.body, "1", "the old key dropped: a fresh session");
    after.stop().await;
}

#[actix_web::test]
async fn signed_cookies_refuse_tampering_and_rotate_keys() {
    // base64 HMAC-SHA256 (44) then the 32-character id
    protects_and_rotates(Protection::Signed, 44 + 32).await;
}

#[actix_web::test]
async fn private_cookies_hide_the_id_and_rotate_keys() {
    // base64 of a 12-byte nonce, the 32-byte id and a 16-byte tag
    protects_and_rotates(Protection::Private, 80).await;

    let (_store, manager) = memory();
    let server = serve(middleware(
        &manager,
        config(vec![key(4)], Protection::Private),
    ));
    let pair = get_with(&server, "/login", None).await.cookie_pair();
    let id = &manager.sessions_of("alice").await.unwrap()[0].id;
    assert!(!pair.contains(id.as_str()), "{pair} shows the id {id}");
    assert!(
        !pair.contains(&id.as_str()[..8]),
        "{pair} shows part of the id"
    );
    assert_eq!(
        get_with(&server, "/whoami", Some(&pair)).await.body,
        "alice"
    );
    server.stop().await;
}
