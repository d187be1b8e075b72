//! The user index: login binds (and regenerates), logout unbinds, and the per-user operations.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::{Recorded, memory, ms, setup, stored_session};
use session_core::{ClientInfo, Config, CookieAction, Error, Manager, SessionId, Storage};

/// Logs `user` in from a new session created by `client`; returns the new id.
async fn login(m: &Manager, user: &str, client: ClientInfo) -> SessionId {
    let s = m.load_with(None, client);
    s.set("cart", &vec!["apple"]).await.unwrap();
    s.login(user).await.unwrap();
    s.save().await.unwrap().cookie.id().cloned().unwrap()
}

#[tokio::test]
async fn login_regenerates_the_id_and_binds_the_owner() {
    let (m, store) = setup(Config::default());
    let anon = stored_session(&m, "cart", 3).await;
    let s = m.load(Some(anon.as_str()));
    s.login("alice").await.unwrap();
    assert_eq!(s.user().await.unwrap().as_deref(), Some("alice"));
    store.take();
    let out = s.save().await.unwrap();
    let CookieAction::Set { id, .. } = out.cookie else {
        panic!("login must issue a new id, got {:?}", out.cookie)
    };
    assert_ne!(id, anon, "session fixation: the pre-login id survived");
    let calls = store.take();
    assert!(calls.contains(&"index_add"), "{calls:?}");
    assert!(
        store.raw(&anon).await.is_empty(),
        "the anonymous id still works"
    );
    assert_eq!(
        store.index_owner(&id).await.unwrap().as_deref(),
        Some("alice")
    );
    let s = m.load(Some(id.as_str()));
    assert_eq!(
        s.get::<u32>("cart").await.unwrap(),
        Some(3),
        "data lost at login"
    );
    assert_eq!(s.user().await.unwrap().as_deref(), Some("alice"));
    assert!(s.meta().await.unwrap().unwrap().authenticated_at.is_some());
    assert!(matches!(s.login("").await, Err(Error::InvalidInput(_))));
}

#[tokio::test]
async fn logout_unbinds_and_destroys() {
    let (m, store) = setup(Config::default());
    let id = login(&m, "bob", ClientInfo::default()).await;
    assert_eq!(m.sessions_of("bob").await.unwrap().len(), 1);
    let s = m.load(Some(id.as_str()));
    s.logout().await.unwrap();
    assert_eq!(s.save().await.unwrap().cookie, CookieAction::Remove);
    assert!(store.raw(&id).await.is_empty());
    assert_eq!(store.index_owner(&id).await.unwrap(), None);
    assert!(m.sessions_of("bob").await.unwrap().is_empty());
}

#[tokio::test]
async fn sessions_of_lists_each_device_with_its_metadata() {
    let m = memory(Config::default());
    let phone = ClientInfo::new(Some("192.0.2.10".parse().unwrap()), Some("Phone"));
    let laptop = ClientInfo::new(Some("192.0.2.20".parse().unwrap()), Some("Laptop"));
    let a = login(&m, "carol", phone.clone()).await;
    tokio::time::sleep(ms(5)).await;
    let b = login(&m, "carol", laptop.clone()).await;
    login(&m, "dave", ClientInfo::default()).await;
    let list = m.sessions_of("carol").await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, a, "sorted by creation");
    assert_eq!(list[1].id, b);
    let meta = list[0].meta.as_ref().unwrap();
    assert_eq!(meta.client, phone);
    assert_eq!(meta.user.as_deref(), Some("carol"));
    assert!(meta.authenticated_at.is_some());
    assert_eq!(list[1].meta.as_ref().unwrap().client, laptop);
    let exp = list[0].expires_at.unwrap();
    assert!(exp > SystemTime::now() + Duration::from_secs(7000));
    assert!(m.sessions_of("nobody").await.unwrap().is_empty());
}

#[tokio::test]
async fn set_for_user_reaches_every_live_session_without_extending_it() {
    let (m, store) = setup(Config {
        idle_ttl: Duration::from_secs(60),
        ..Config::default()
    });
    let a = login(&m, "erin", ClientInfo::default()).await;
    let b = login(&m, "erin", ClientInfo::default()).await;
    let other = login(&m, "frank", ClientInfo::default()).await;
    let before = store.deadline(&a).await.unwrap();
    tokio::time::sleep(ms(20)).await;
    assert_eq!(m.set_for_user("erin", "plan", "pro").await.unwrap(), 2);
    for id in [&a, &b] {
        let s = m.load(Some(id.as_str()));
        assert_eq!(
            s.get::<String>("plan").await.unwrap().as_deref(),
            Some("pro")
        );
        assert_eq!(
            s.get::<Vec<String>>("cart").await.unwrap().unwrap(),
            ["apple"]
        );
    }
    let after = store.deadline(&a).await.unwrap();
    let drift = after
        .duration_since(before)
        .unwrap_or_else(|e| e.duration());
    assert!(drift <= ms(5), "set_for_user slid the expiry by {drift:?}");
    let s = m.load(Some(other.as_str()));
    assert_eq!(s.get::<String>("plan").await.unwrap(), None);

    assert_eq!(m.remove_for_user("erin", "plan").await.unwrap(), 2);
    let s = m.load(Some(b.as_str()));
    assert_eq!(s.get::<String>("plan").await.unwrap(), None);
    assert!(matches!(
        m.set_for_user("erin", "__s.user", "mallory").await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn destroy_user_logs_out_everywhere_and_in_flight_requests_cannot_resurrect() {
    let (m, store) = setup(Config::default());
    let a = login(&m, "gina", ClientInfo::default()).await;
    let b = login(&m, "gina", ClientInfo::default()).await;
    let keep = login(&m, "hank", ClientInfo::default()).await;
    let in_flight = m.load(Some(a.as_str()));
    assert!(in_flight.has("cart").await.unwrap());

    assert_eq!(m.destroy_user("gina").await.unwrap(), 2);
    assert!(store.raw(&a).await.is_empty() && store.raw(&b).await.is_empty());
    assert!(m.sessions_of("gina").await.unwrap().is_empty());
    assert_eq!(m.sessions_of("hank").await.unwrap().len(), 1);
    assert!(!store.raw(&keep).await.is_empty());

    in_flight.set("late", &1).await.unwrap();
    let out = in_flight.save().await.unwrap();
    assert!(out.gone);
    assert_eq!(out.cookie, CookieAction::Remove);
    assert!(
        store.raw(&a).await.is_empty(),
        "logged-out session came back"
    );
}

#[tokio::test]
async fn dead_sessions_are_pruned_from_the_index() {
    let (m, store) = setup(Config {
        idle_ttl: ms(150),
        ..Config::default()
    });
    let short = login(&m, "ivy", ClientInfo::default()).await;
    tokio::time::sleep(ms(200)).await;
    let live = login(&m, "ivy", ClientInfo::default()).await;
    let list = m.sessions_of("ivy").await.unwrap();
    assert_eq!(list.iter().map(|s| &s.id).collect::<Vec<_>>(), [&live]);
    assert_eq!(store.index_owner(&short).await.unwrap(), None);
    assert_eq!(m.set_for_user("ivy", "x", &1).await.unwrap(), 1);
}

#[tokio::test]
async fn a_regenerated_id_moves_the_binding() {
    let (m, store) = setup(Config::default());
    let old = login(&m, "jo", ClientInfo::default()).await;
    let s = m.load(Some(old.as_str()));
    s.regenerate(false).await.unwrap();
    let new = s.save().await.unwrap().cookie.id().cloned().unwrap();
    let list = m.sessions_of("jo").await.unwrap();
    assert_eq!(list.iter().map(|s| &s.id).collect::<Vec<_>>(), [&new]);
    assert_eq!(
        store.index_owner(&new).await.unwrap().as_deref(),
        Some("jo")
    );
    // the old id still serves in-flight requests during the grace period
    let s = m.load(Some(old.as_str()));
    assert_eq!(s.user().await.unwrap().as_deref(), Some("jo"));
}

#[tokio::test]
async fn per_user_methods_need_the_owner_index() {
    let m = memory(Config {
        owner_index: false,
        ..Config::default()
    });
    let id = login(&m, "kim", ClientInfo::default()).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(
        s.user().await.unwrap().as_deref(),
        Some("kim"),
        "login still recorded"
    );
    assert!(matches!(
        m.sessions_of("kim").await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        m.destroy_user("kim").await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        memory(Config::default()).sessions_of("").await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn an_update_racing_a_logout_everywhere_writes_nothing_and_reports_gone() {
    let (m, store) = setup(Config::default());
    let id = login(&m, "lee", ClientInfo::default()).await;
    let s = m.load(Some(id.as_str()));
    assert!(s.has("cart").await.unwrap());
    m.destroy_user("lee").await.unwrap();
    let n = s
        .update("n", |o: Option<u32>| o.unwrap_or(0) + 1)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(
        store.raw(&id).await.is_empty(),
        "update resurrected the session"
    );
    let out = s.save().await.unwrap();
    assert!(out.gone && !out.wrote);
    assert_eq!(out.cookie, CookieAction::Remove);
    assert!(store.raw(&id).await.is_empty());
}
