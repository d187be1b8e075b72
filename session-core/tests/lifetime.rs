//! A session's own idle TTL (`Session::set_idle_ttl`, "remember me") and its expiry
//! (`Session::expires_at`), on the real memory store with short TTLs.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::{Recorded, memory, ms, setup};
use session_core::{Config, CookieAction, Error, Manager, SessionId};

/// A config whose manager-wide idle TTL is `idle`.
fn idle(idle: Duration) -> Config {
    Config {
        idle_ttl: idle,
        ..Config::default()
    }
}

/// Saves `s`; returns the id and the cookie's expiry.
async fn save(s: &session_core::Session) -> (SessionId, SystemTime) {
    match s.save().await.unwrap().cookie {
        CookieAction::Set { id, expires } | CookieAction::Refresh { id, expires } => (id, expires),
        other => panic!("expected a cookie, got {other:?}"),
    }
}

/// A new stored session with `a = 1`, with its own idle TTL when `ttl` is given.
async fn new_session(m: &Manager, ttl: Option<Duration>) -> (SessionId, SystemTime) {
    let s = m.load(None);
    s.set("a", &1u32).await.unwrap();
    s.set_idle_ttl(ttl).await.unwrap();
    save(&s).await
}

async fn alive(m: &Manager, id: &SessionId) -> bool {
    m.load(Some(id.as_str())).get::<u32>("a").await.unwrap() == Some(1)
}

/// `t` lies within `[from + d - slack, to + d]`.
fn about(t: SystemTime, from: SystemTime, to: SystemTime, d: Duration) {
    let slack = ms(5);
    assert!(
        t + slack >= from + d && t <= to + d,
        "{t:?} not within {d:?} after [{from:?}, {to:?}]"
    );
}

/// `a` and `b` are the same instant, give or take the store's and the cookie's rounding.
fn close(a: Option<SystemTime>, b: SystemTime) {
    let a = a.expect("a deadline");
    let diff = a
        .duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap();
    assert!(diff <= ms(2), "{a:?} vs {b:?}");
}

#[tokio::test]
async fn a_long_session_ttl_outlives_the_managers_idle_ttl() {
    let m = memory(idle(ms(200)));
    let (plain, _) = new_session(&m, None).await;
    let (long, _) = new_session(&m, Some(Duration::from_secs(3))).await;
    tokio::time::sleep(ms(500)).await;
    assert!(!alive(&m, &plain).await, "the manager's idle TTL ended it");
    assert!(alive(&m, &long).await, "its own TTL kept it");
}

#[tokio::test]
async fn a_short_session_ttl_expires_before_the_managers_idle_ttl() {
    let m = memory(idle(Duration::from_secs(5)));
    let (plain, _) = new_session(&m, None).await;
    let (short, _) = new_session(&m, Some(ms(200))).await;
    tokio::time::sleep(ms(500)).await;
    assert!(alive(&m, &plain).await);
    assert!(!alive(&m, &short).await);
}

#[tokio::test]
async fn every_later_write_and_touch_uses_the_sessions_ttl_and_the_cookie_follows() {
    let (m, store) = setup(Config {
        touch_threshold: 1.0, // every read-only request touches
        ..idle(ms(200))
    });
    let long = Duration::from_secs(3);
    let before = SystemTime::now();
    let (id, expires) = new_session(&m, Some(long)).await;
    about(expires, before, SystemTime::now(), long);
    close(store.deadline(&id).await, expires); // the store agrees

    // a later request that only writes a value (it never sets the TTL) writes with it
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.idle_ttl().await.unwrap(), Some(long));
    close(s.expires_at().await.unwrap(), expires);
    s.set("b", &2u32).await.unwrap();
    let before = SystemTime::now();
    let (same, expires) = save(&s).await;
    assert_eq!(same, id);
    about(expires, before, SystemTime::now(), long);
    close(s.expires_at().await.unwrap(), expires);

    // a read-only request touches with it too
    tokio::time::sleep(ms(300)).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<u32>("b").await.unwrap(), Some(2));
    let before = SystemTime::now();
    let out = s.save().await.unwrap();
    assert!(out.touched);
    let CookieAction::Refresh { expires, .. } = out.cookie else {
        panic!("{:?}", out.cookie)
    };
    about(expires, before, SystemTime::now(), long);
    close(store.deadline(&id).await, expires);

    // back to the manager's idle TTL: the next save writes with it
    let s = m.load(Some(id.as_str()));
    s.set_idle_ttl(None).await.unwrap();
    assert_eq!(s.idle_ttl().await.unwrap(), None);
    let before = SystemTime::now();
    let (_, expires) = save(&s).await;
    about(expires, before, SystemTime::now(), ms(200));
    tokio::time::sleep(ms(500)).await;
    assert!(!alive(&m, &id).await);
}

#[tokio::test]
async fn the_absolute_lifetime_bounds_the_session_ttl_and_still_ends_the_session() {
    let m = memory(Config {
        absolute_lifetime: Some(Duration::from_secs(1)),
        ..idle(ms(150))
    });
    let s = m.load(None);
    s.set("a", &1u32).await.unwrap();
    for bad in [
        Duration::ZERO,
        Duration::from_millis(1001),
        Duration::from_secs(3600),
    ] {
        assert!(
            matches!(s.set_idle_ttl(Some(bad)).await, Err(Error::InvalidInput(_))),
            "{bad:?}"
        );
    }
    assert_eq!(
        s.idle_ttl().await.unwrap(),
        None,
        "a refused TTL sets nothing"
    );
    s.set_idle_ttl(Some(Duration::from_secs(1))).await.unwrap();
    let (id, _) = save(&s).await;
    let created = m
        .load(Some(id.as_str()))
        .meta()
        .await
        .unwrap()
        .unwrap()
        .created_at;

    // past the manager's idle TTL, alive thanks to its own; a write there is cut to the
    // absolute deadline, and so is the cookie
    tokio::time::sleep(ms(500)).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<u32>("a").await.unwrap(), Some(1), "alive");
    s.set("b", &2u32).await.unwrap();
    let (same, expires) = save(&s).await;
    assert_eq!(same, id);
    assert!(
        expires <= created + Duration::from_secs(1) + ms(5),
        "{expires:?} is past the absolute deadline {:?}",
        created + Duration::from_secs(1)
    );
    assert!(expires + ms(300) < SystemTime::now() + Duration::from_secs(1));

    tokio::time::sleep(ms(800)).await;
    assert!(!alive(&m, &id).await, "the absolute lifetime ended it");
}

#[tokio::test]
async fn regeneration_and_login_keep_the_session_ttl() {
    let m = memory(idle(ms(200)));
    let long = Duration::from_secs(3);
    let (old, _) = new_session(&m, Some(long)).await;

    let s = m.load(Some(old.as_str()));
    s.regenerate(false).await.unwrap();
    let before = SystemTime::now();
    let (regenerated, expires) = save(&s).await;
    assert_ne!(regenerated, old);
    about(expires, before, SystemTime::now(), long);

    let s = m.load(Some(regenerated.as_str()));
    s.login("ada").await.unwrap();
    let before = SystemTime::now();
    let (logged_in, expires) = save(&s).await;
    assert_ne!(logged_in, regenerated);
    about(expires, before, SystemTime::now(), long);

    tokio::time::sleep(ms(500)).await;
    let s = m.load(Some(logged_in.as_str()));
    assert_eq!(s.idle_ttl().await.unwrap(), Some(long));
    assert_eq!(s.user().await.unwrap().as_deref(), Some("ada"));
    assert_eq!(s.get::<u32>("a").await.unwrap(), Some(1));
}

#[tokio::test]
async fn clear_keeps_the_ttl_and_a_ttl_alone_creates_no_session() {
    let m = memory(idle(ms(200)));
    let s = m.load(None);
    assert_eq!(s.expires_at().await.unwrap(), None, "not stored");
    s.set_idle_ttl(Some(Duration::from_secs(3))).await.unwrap();
    assert_eq!(s.save().await.unwrap().cookie, CookieAction::Unchanged);
    assert_eq!(s.id().await, None);

    let (id, _) = new_session(&m, Some(Duration::from_secs(3))).await;
    let s = m.load(Some(id.as_str()));
    s.clear().await.unwrap();
    s.set("c", &3u32).await.unwrap();
    save(&s).await;
    tokio::time::sleep(ms(500)).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<u32>("c").await.unwrap(), Some(3));
    assert_eq!(s.idle_ttl().await.unwrap(), Some(Duration::from_secs(3)));
    assert_eq!(s.keys().await.unwrap(), ["c"], "the TTL is no user key");

    // destroyed: the TTL goes with the session
    s.destroy().await.unwrap();
    assert_eq!(s.idle_ttl().await.unwrap(), None);
    assert_eq!(s.expires_at().await.unwrap(), None);
}
