//! Lazy loading, ids that are never adopted, the save rules (one apply, touch when due, nothing
//! when untouched), the cookie actions, and the idle and absolute timeouts.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::{Recorded, ms, setup, stored_session};
use session_core::{Config, CookieAction, Error, SessionId};

#[tokio::test]
async fn an_untouched_session_makes_no_storage_call() {
    let (m, store) = setup(Config::default());
    let id = stored_session(&m, "a", 1).await;
    store.take();
    let s = m.load(Some(id.as_str()));
    let out = s.save().await.unwrap();
    assert_eq!(store.take(), Vec::<&str>::new());
    assert_eq!(out.cookie, CookieAction::Unchanged);
    assert!(!out.wrote && !out.touched);
    assert!(!s.is_loaded().await);
}

#[tokio::test]
async fn a_read_only_request_is_one_load() {
    let (m, store) = setup(Config::default());
    let id = stored_session(&m, "a", 7).await;
    store.take();
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.id().await, None, "not loaded yet");
    assert_eq!(s.get::<u32>("a").await.unwrap(), Some(7));
    assert_eq!(s.get::<u32>("b").await.unwrap(), None);
    assert!(s.has("a").await.unwrap());
    assert_eq!(s.id().await, Some(id.clone()));
    let out = s.save().await.unwrap();
    assert_eq!(
        store.take(),
        ["load"],
        "the touch is not due right after a write"
    );
    assert_eq!(out.cookie, CookieAction::Unchanged);
}

#[tokio::test]
async fn a_write_request_is_one_load_and_one_apply_of_the_changed_keys() {
    let (m, store) = setup(Config::default());
    let id = stored_session(&m, "a", 1).await;
    store.take();
    let s = m.load(Some(id.as_str()));
    s.set("b", &2u32).await.unwrap();
    s.remove("a").await.unwrap();
    assert!(s.is_modified().await);
    let out = s.save().await.unwrap();
    assert_eq!(store.take(), ["load", "apply"]);
    assert!(out.wrote);
    match out.cookie {
        CookieAction::Refresh { id: got, expires } => {
            assert_eq!(got, id);
            assert!(expires > SystemTime::now() + Duration::from_secs(7000));
        }
        other => panic!("expected a refresh, got {other:?}"),
    }
    let raw = store.raw(&id).await;
    assert!(raw.contains_key("b") && !raw.contains_key("a"));
    // a second save with nothing new writes nothing
    let again = s.save().await.unwrap();
    assert_eq!(store.take(), Vec::<&str>::new());
    assert!(!again.wrote);
}

#[tokio::test]
async fn a_new_session_gets_an_id_at_its_first_save_only_if_written() {
    let (m, store) = setup(Config::default());
    let s = m.load(None);
    assert_eq!(s.get::<u32>("x").await.unwrap(), None);
    assert_eq!(s.save().await.unwrap().cookie, CookieAction::Unchanged);
    assert_eq!(
        store.take(),
        Vec::<&str>::new(),
        "no id, nothing to load or write"
    );

    let s = m.load(None);
    s.set("x", &1u32).await.unwrap();
    s.remove("x").await.unwrap();
    let out = s.save().await.unwrap();
    assert!(!out.wrote, "a session with no data is not created");
    assert_eq!(store.take(), Vec::<&str>::new());

    let s = m.load(None);
    s.set("x", &1u32).await.unwrap();
    let out = s.save().await.unwrap();
    assert_eq!(store.take(), ["new", "apply"]);
    let CookieAction::Set { id, .. } = out.cookie else {
        panic!("expected a new cookie, got {:?}", out.cookie)
    };
    assert_eq!(s.id().await, Some(id.clone()));
    assert!(store.raw(&id).await.contains_key("x"));
}

#[tokio::test]
async fn unknown_malformed_and_expired_ids_are_never_adopted() {
    let (m, store) = setup(Config {
        idle_ttl: ms(150),
        ..Config::default()
    });
    let unknown = SessionId::generate().unwrap();
    let expired = stored_session(&m, "old", 1).await;
    tokio::time::sleep(ms(250)).await;
    for presented in [
        unknown.as_str(),
        "../../etc/passwd",
        "short",
        expired.as_str(),
    ] {
        let s = m.load(Some(presented));
        assert_eq!(s.get::<u32>("old").await.unwrap(), None);
        s.set("k", &1u32).await.unwrap();
        let out = s.save().await.unwrap();
        let CookieAction::Set { id, .. } = out.cookie else {
            panic!("{presented}: expected a fresh id, got {:?}", out.cookie)
        };
        assert_ne!(id.as_str(), presented);
        assert!(
            store.raw(&unknown).await.is_empty(),
            "unknown id was created"
        );
    }
    // a dead id that is only read: the cookie goes
    let s = m.load(Some(unknown.as_str()));
    assert!(!s.has("k").await.unwrap());
    assert_eq!(s.save().await.unwrap().cookie, CookieAction::Remove);
}

#[tokio::test]
async fn touch_happens_only_when_due() {
    let (m, store) = setup(Config {
        idle_ttl: ms(1000),
        touch_threshold: 0.5,
        track_last_seen: false,
        ..Config::default()
    });
    let id = stored_session(&m, "a", 1).await;
    store.take();
    let s = m.load(Some(id.as_str()));
    s.get::<u32>("a").await.unwrap();
    assert!(!s.save().await.unwrap().touched);
    assert_eq!(store.take(), ["load"]);

    tokio::time::sleep(ms(600)).await; // less than half of the idle TTL left
    let before = store.deadline(&id).await.unwrap();
    let s = m.load(Some(id.as_str()));
    s.get::<u32>("a").await.unwrap();
    let out = s.save().await.unwrap();
    assert!(out.touched);
    assert_eq!(store.take(), ["load", "update_ttl"]);
    assert!(matches!(out.cookie, CookieAction::Refresh { .. }));
    assert!(store.deadline(&id).await.unwrap() > before + ms(400));
}

#[tokio::test]
async fn a_touch_records_last_seen_in_one_apply() {
    let (m, store) = setup(Config {
        touch_threshold: 1.0,
        ..Config::default()
    });
    let id = stored_session(&m, "a", 1).await;
    tokio::time::sleep(ms(20)).await;
    let s = m.load_with(
        Some(id.as_str()),
        session_core::ClientInfo::new(Some("198.51.100.7".parse().unwrap()), None),
    );
    let created = s.meta().await.unwrap().unwrap();
    store.take();
    let out = s.save().await.unwrap();
    assert!(out.touched);
    assert_eq!(store.take(), ["apply"]);
    let s = m.load(Some(id.as_str()));
    let meta = s.meta().await.unwrap().unwrap();
    assert!(meta.last_seen > created.last_seen);
    assert_eq!(meta.last_ip, Some("198.51.100.7".parse().unwrap()));
    assert_eq!(meta.created_at, created.created_at);
}

#[tokio::test]
async fn without_deadlines_every_read_only_request_touches() {
    let store = common::recording(true, false);
    let m = session_core::Manager::new(
        store.clone(),
        Config {
            track_last_seen: false,
            ..Config::default()
        },
    )
    .unwrap();
    let id = stored_session(&m, "a", 1).await;
    store.take();
    for _ in 0..2 {
        let s = m.load(Some(id.as_str()));
        s.get::<u32>("a").await.unwrap();
        assert!(s.save().await.unwrap().touched);
        assert_eq!(store.take(), ["load", "update_ttl"]);
    }
}

#[tokio::test]
async fn idle_timeout_slides_with_use_and_expires_without() {
    let (m, _store) = setup(Config {
        idle_ttl: ms(300),
        touch_threshold: 1.0,
        ..Config::default()
    });
    let id = stored_session(&m, "a", 1).await;
    for _ in 0..4 {
        tokio::time::sleep(ms(150)).await;
        let s = m.load(Some(id.as_str()));
        assert_eq!(
            s.get::<u32>("a").await.unwrap(),
            Some(1),
            "expired while in use"
        );
        s.save().await.unwrap();
    }
    tokio::time::sleep(ms(400)).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<u32>("a").await.unwrap(), None);
}

#[tokio::test]
async fn absolute_lifetime_ends_an_active_session() {
    let (m, store) = setup(Config {
        idle_ttl: Duration::from_secs(60),
        absolute_lifetime: Some(ms(500)),
        touch_threshold: 1.0,
        ..Config::default()
    });
    let id = stored_session(&m, "a", 1).await;
    // the stored expiry is the absolute deadline, not now + idle
    let d = store.deadline(&id).await.unwrap();
    assert!(
        d < SystemTime::now() + ms(600),
        "expiry not capped by the absolute lifetime"
    );
    tokio::time::sleep(ms(250)).await;
    let s = m.load(Some(id.as_str()));
    s.set("b", &2u32).await.unwrap();
    let out = s.save().await.unwrap();
    let exp = out.cookie.expires().unwrap();
    assert!(
        exp < SystemTime::now() + ms(300),
        "a write extended past the absolute deadline"
    );
    tokio::time::sleep(ms(300)).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<u32>("a").await.unwrap(), None);
    s.set("c", &3u32).await.unwrap();
    let out = s.save().await.unwrap();
    assert_ne!(out.cookie.id(), Some(&id), "the expired id was adopted");
}

#[tokio::test]
async fn absolute_deadline_is_enforced_even_if_the_record_lives() {
    // a driver that does not cut the TTL itself (the record outlives the absolute deadline):
    // the session layer still refuses the session and deletes it.
    let (m, store) = setup(Config {
        absolute_lifetime: Some(ms(300)),
        ..Config::default()
    });
    let id = stored_session(&m, "a", 1).await;
    // slide the record far beyond the absolute deadline, behind the manager's back
    session_core::Storage::update_ttl(&*store, &id, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(ms(350)).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<u32>("a").await.unwrap(), None);
    store.take();
    assert_eq!(s.save().await.unwrap().cookie, CookieAction::Remove);
    assert_eq!(store.take(), ["remove_all"]);
    assert!(store.raw(&id).await.is_empty());
}

#[tokio::test]
async fn a_save_after_a_concurrent_destroy_does_not_resurrect() {
    let (m, store) = setup(Config::default());
    let id = stored_session(&m, "a", 1).await;
    let slow = m.load(Some(id.as_str()));
    assert_eq!(slow.get::<u32>("a").await.unwrap(), Some(1));
    let other = m.load(Some(id.as_str()));
    other.destroy().await.unwrap();
    assert_eq!(other.save().await.unwrap().cookie, CookieAction::Remove);
    slow.set("b", &2u32).await.unwrap();
    let out = slow.save().await.unwrap();
    assert!(out.gone);
    assert!(!out.wrote);
    assert_eq!(out.cookie, CookieAction::Remove);
    assert!(
        store.raw(&id).await.is_empty(),
        "destroyed session came back"
    );
}

#[tokio::test]
async fn clones_share_one_state_and_the_layer_can_save_later() {
    let (m, store) = setup(Config::default());
    let s = m.load(None);
    let handler_copy = s.clone();
    tokio::spawn(async move { handler_copy.set("from_handler", &true).await })
        .await
        .unwrap()
        .unwrap();
    let out = s.save().await.unwrap();
    let id = out.cookie.id().unwrap();
    assert!(store.raw(id).await.contains_key("from_handler"));
}

#[tokio::test]
async fn invalid_config_and_missing_capability_are_refused() {
    let bad = Config {
        idle_ttl: Duration::ZERO,
        ..Config::default()
    };
    assert!(matches!(
        session_core::Manager::new(common::recording(false, false), bad),
        Err(Error::InvalidInput(_))
    ));
    let no_index = common::recording(false, true);
    assert!(matches!(
        session_core::Manager::new(no_index.clone(), Config::default()),
        Err(Error::Unsupported { .. })
    ));
    let off = Config {
        owner_index: false,
        ..Config::default()
    };
    assert!(session_core::Manager::new(no_index, off).is_ok());
}

#[test]
fn session_and_manager_can_be_shared_across_tasks() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<session_core::Session>();
    shareable::<session_core::Manager>();
}

/// The futures a request awaits stay small: a handler's future holds them inline, and a future
/// that the caller boxes (`async_trait`, `tokio::spawn`, axum's handlers) past 1,032 bytes misses
/// glibc's per-thread cache, so every request locks a malloc arena to allocate and free it (the
/// save future was 1,224 bytes with its write paths inline: on Redis at 256 in flight that cost
/// 4-12% of the reads, BENCHMARKS.md, sixth session). The budget leaves the caller room.
#[tokio::test]
async fn the_futures_of_a_request_stay_small() {
    const BUDGET: usize = 512;
    let (m, _store) = setup(Config::default());
    let id = stored_session(&m, "a", 1).await;
    let s = m.load(Some(id.as_str()));
    let sizes = [
        ("get", std::mem::size_of_val(&s.get::<u32>("a"))),
        ("set", std::mem::size_of_val(&s.set("a", &2u32))),
        ("remove", std::mem::size_of_val(&s.remove("a"))),
        ("save", std::mem::size_of_val(&s.save())),
    ];
    for (what, size) in sizes {
        assert!(
            size <= BUDGET,
            "the future of {what} takes {size} bytes (budget {BUDGET})"
        );
    }
    assert_eq!(s.get::<u32>("a").await.unwrap(), Some(1));
}
