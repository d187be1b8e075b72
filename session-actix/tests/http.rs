//! The middleware on a real actix-web server on a loopback port, spoken to with awc: round
//! trips, no storage call for untouched requests, cookie attributes, login, the id in a header,
//! client info, and the extractor without the middleware.
#![allow(clippy::unwrap_used)]

mod common;

use actix_web::{App, HttpServer, web};
use common::*;
use session_actix::{CookieConfig, SameSite, Session};

#[actix_web::test]
async fn extractor_and_round_trip() {
    let (_store, manager) = memory();
    let server = serve(middleware(&manager, CookieConfig::default()));
    let r = get_with(&server, "/visits", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    let cookie = r.cookie_pair();
    let r = get_with(&server, "/visits", Some(&cookie)).await;
    assert_eq!(r.body, "2");
    assert_eq!(
        r.cookie_pair(),
        cookie,
        "a write slides Max-Age: same id re-sent"
    );
    let r = get_with(&server, "/visits", Some(&format!("other=1; {cookie}; x=y"))).await;
    assert_eq!(r.body, "3", "found among other cookies");
    let r = get_with(&server, "/visits", None).await;
    assert_eq!(r.body, "1", "another visitor");
    server.stop().await;
}

#[actix_web::test]
async fn untouched_requests_make_no_storage_call_and_no_cookie() {
    let (store, manager) = memory();
    let server = serve(middleware(&manager, CookieConfig::default()));
    let r = get_with(&server, "/untouched", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello"));
    assert!(r.set_cookies().is_empty());
    assert_eq!(store.hook().get(), 0, "no cookie, no use: no storage call");

    let cookie = get_with(&server, "/set", None).await.cookie_pair();
    let before = store.hook().get();
    let r = get_with(&server, "/untouched", Some(&cookie)).await;
    assert!(r.set_cookies().is_empty(), "{:?}", r.headers);
    assert_eq!(
        store.hook().get(),
        before,
        "a live cookie, session untouched"
    );

    let r = get_with(&server, "/read", None).await;
    assert_eq!(r.body, "-");
    assert!(
        r.set_cookies().is_empty(),
        "an empty new session gets no cookie"
    );
    assert_eq!(store.hook().get(), before, "and is never stored");

    let r = get_with(&server, "/read", Some(&cookie)).await;
    assert_eq!(r.body, "ada");
    assert!(r.set_cookies().is_empty());
    assert_eq!(store.hook().get(), before + 1, "a read: exactly one load");
    server.stop().await;
}

#[actix_web::test]
async fn cookie_attributes_follow_the_config() {
    let (_store, manager) = memory();
    let server = serve(middleware(&manager, CookieConfig::default()));
    let r = get_with(&server, "/set", None).await;
    let set = r.set_cookies()[0].to_owned();
    assert!(set.starts_with("session_id="), "{set}");
    assert_eq!(attr(&set, "path"), Some("/"));
    assert_eq!(attr(&set, "samesite"), Some("Lax"));
    assert!(attr(&set, "httponly").is_some() && attr(&set, "secure").is_some());
    assert_eq!(attr(&set, "domain"), None);
    let max_age: u64 = attr(&set, "max-age").unwrap().parse().unwrap();
    assert!(
        (7190..=7200).contains(&max_age),
        "follows the 2 h idle TTL: {max_age}"
    );
    server.stop().await;

    let config = CookieConfig {
        name: "sid".into(),
        domain: Some("example.test".into()),
        secure: false,
        same_site: SameSite::Strict,
        persistent: false,
        ..CookieConfig::default()
    };
    let server = serve(middleware(&manager, config));
    let r = get_with(&server, "/visits", None).await;
    let set = r.set_cookies()[0].to_owned();
    assert!(set.starts_with("sid="), "{set}");
    assert_eq!(attr(&set, "domain"), Some("example.test"));
    assert_eq!(attr(&set, "samesite"), Some("Strict"));
    assert!(attr(&set, "httponly").is_some(), "HttpOnly always");
    assert_eq!(attr(&set, "secure"), None);
    assert_eq!(attr(&set, "max-age"), None, "a browser-session cookie");
    let r = get_with(&server, "/visits", Some(&r.cookie_pair())).await;
    assert_eq!(r.body, "2");
    assert!(
        r.set_cookies().is_empty(),
        "not re-sent when only the expiry slides"
    );
    server.stop().await;

    let bad = CookieConfig {
        name: "bad name".into(),
        ..CookieConfig::default()
    };
    assert!(session_actix::SessionMiddleware::with_config(manager, bad).is_err());
}

#[actix_web::test]
async fn login_regenerates_the_id() {
    let (_store, manager) = memory();
    let server = serve(middleware(&manager, CookieConfig::default()));
    let before = get_with(&server, "/set", None).await.cookie_pair();
    let after = get_with(&server, "/login", Some(&before))
        .await
        .cookie_pair();
    assert_ne!(after, before, "a new id at login");
    assert_eq!(
        get_with(&server, "/whoami", Some(&after)).await.body,
        "alice"
    );
    assert_eq!(
        get_with(&server, "/read", Some(&after)).await.body,
        "ada",
        "data kept"
    );
    let r = get_with(&server, "/whoami", Some(&before)).await;
    assert_eq!(r.body, "anonymous", "the pre-login id is dead");
    assert_eq!(
        attr(r.set_cookies()[0], "max-age"),
        Some("0"),
        "and removed"
    );
    let listed = manager.sessions_of("alice").await.unwrap();
    assert_eq!(after, format!("session_id={}", listed[0].id));

    let r = get_with(&server, "/logout", Some(&after)).await;
    let removal = r.set_cookies()[0];
    assert!(removal.starts_with("session_id=;"), "{removal}");
    assert_eq!(attr(removal, "max-age"), Some("0"));
    assert!(manager.sessions_of("alice").await.unwrap().is_empty());
    server.stop().await;
}

#[actix_web::test]
async fn the_id_travels_in_a_header() {
    let (_store, manager) = memory();
    let config = CookieConfig {
        header: Some("X-Session-Id".into()),
        ..CookieConfig::default()
    };
    let server = serve(middleware(&manager, config));
    let r = get_with(&server, "/visits", None).await;
    assert!(r.set_cookies().is_empty(), "no cookie in header mode");
    let id = r.all("x-session-id")[0].to_owned();
    assert!(session_core::SessionId::parse(&id).is_ok(), "{id}");
    let r = get(&server, "/visits", &[("x-session-id", &id)]).await;
    assert_eq!(r.body, "2");
    assert!(
        r.all("x-session-id").is_empty(),
        "a slid expiry is not announced"
    );
    let r = get(&server, "/login", &[("x-session-id", &id)]).await;
    let logged = r.all("x-session-id")[0].to_owned();
    assert_ne!(logged, id);
    let r = get(&server, "/logout", &[("x-session-id", &logged)]).await;
    assert_eq!(r.all("x-session-id"), [""], "an empty value: forget the id");
    let r = get_with(&server, "/visits", Some(&format!("session_id={logged}"))).await;
    assert_eq!(r.body, "1", "a cookie is not read in header mode");
    server.stop().await;
}

#[actix_web::test]
async fn client_info_is_the_peer_and_the_user_agent() {
    let (_store, manager) = memory();
    let headers = [
        ("user-agent", "TestBrowser/1.0"),
        ("x-forwarded-for", "203.0.113.7, 10.0.0.2"),
    ];
    let server = serve(middleware(&manager, CookieConfig::default()));
    let r = get(&server, "/client", &headers).await;
    assert_eq!(
        r.body, "127.0.0.1|TestBrowser/1.0",
        "X-Forwarded-For ignored by default"
    );
    server.stop().await;
    let behind_one = CookieConfig {
        trusted_proxies: 1,
        ..CookieConfig::default()
    };
    let server = serve(middleware(&manager, behind_one));
    let r = get(&server, "/client", &headers).await;
    assert_eq!(r.body, "10.0.0.2|TestBrowser/1.0");
    server.stop().await;
}

#[actix_web::test]
async fn the_extractor_without_the_middleware_is_a_500() {
    let server =
        HttpServer::new(|| App::new().route("/", web::get().to(|_s: Session| async { "never" })))
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let mut res = awc::Client::default()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 500);
    let body = res.body().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("SessionMiddleware"));
    handle.stop(true).await;
}
