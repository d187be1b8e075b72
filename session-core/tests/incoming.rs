//! The id a request brought, parsed once ([`IncomingId`]): absent, valid, or sent but invalid.
//! An invalid id is never looked up nor adopted, and a save that writes nothing tells the client
//! to drop it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Recorded, setup, stored_session};
use session_core::{ClientInfo, Config, CookieAction, IncomingId, SaveOutcome};

/// What the tests present as "a cookie that is not a valid id".
fn invalid_forms() -> Vec<IncomingId> {
    vec![
        IncomingId::Invalid,
        IncomingId::from(Some("../../etc/passwd")),
        IncomingId::from(Some("short")),
        IncomingId::from(Some("aaaaaaaaaaaaaaaa' OR 1=1 --")),
    ]
}

#[tokio::test]
async fn an_invalid_id_is_removed_by_a_save_that_writes_nothing() {
    let (m, store) = setup(Config::default());
    for incoming in invalid_forms() {
        assert_eq!(incoming, IncomingId::Invalid);

        // a request that never touches the session: no storage call, the cookie goes
        let s = m.load(incoming.clone());
        let out = s.save().await.unwrap();
        assert_eq!(
            out,
            SaveOutcome {
                cookie: CookieAction::Remove,
                ..SaveOutcome::default()
            }
        );
        assert!(!s.is_loaded().await);
        assert_eq!(store.take(), Vec::<&str>::new(), "nothing looked up");
        // once removed, the client holds nothing: the next save has nothing to say
        assert_eq!(s.save().await.unwrap().cookie, CookieAction::Unchanged);

        // a request that only reads: a new, empty session, still no storage call
        let s = m.load_with(incoming.clone(), ClientInfo::default());
        assert_eq!(s.get::<u32>("a").await.unwrap(), None);
        assert_eq!(s.id().await, None);
        assert_eq!(s.meta().await.unwrap(), None);
        assert_eq!(s.save().await.unwrap().cookie, CookieAction::Remove);
        assert_eq!(store.take(), Vec::<&str>::new());

        // a write undone before the save: nothing stored, the cookie goes
        let s = m.load(incoming.clone());
        s.set("a", &1u32).await.unwrap();
        s.remove("a").await.unwrap();
        let out = s.save().await.unwrap();
        assert!(!out.wrote);
        assert_eq!(out.cookie, CookieAction::Remove);
        assert_eq!(store.take(), Vec::<&str>::new());
    }
}

#[tokio::test]
async fn without_an_invalid_id_an_untouched_save_says_nothing() {
    let (m, store) = setup(Config::default());
    let live = stored_session(&m, "a", 1).await;
    let unknown = session_core::SessionId::generate().unwrap();
    store.take();
    for incoming in [
        IncomingId::Absent,
        IncomingId::from(None),
        IncomingId::from(Some("")),
        IncomingId::from(&live),
        IncomingId::from(unknown.clone()),
    ] {
        let out = m.load(incoming.clone()).save().await.unwrap();
        assert_eq!(out.cookie, CookieAction::Unchanged, "{incoming:?}");
    }
    assert_eq!(
        store.take(),
        Vec::<&str>::new(),
        "an untouched session is not looked up"
    );
}

#[tokio::test]
async fn an_invalid_id_gets_a_fresh_id_when_the_save_writes() {
    let (m, store) = setup(Config::default());
    for incoming in invalid_forms() {
        let s = m.load(incoming);
        s.set("k", &7u32).await.unwrap();
        let out = s.save().await.unwrap();
        assert!(out.wrote);
        let CookieAction::Set { id, .. } = out.cookie else {
            panic!("expected a new cookie, got {:?}", out.cookie)
        };
        assert_eq!(store.take(), ["new", "apply"], "no load of the invalid id");
        assert_eq!(s.id().await, Some(id.clone()));
        // the client now holds the new id: a later save slides it, never removes it
        s.set("k", &8u32).await.unwrap();
        let again = s.save().await.unwrap();
        assert!(matches!(again.cookie, CookieAction::Refresh { id: ref got, .. } if *got == id));
        // and the new id is an ordinary live session, by any of the id forms
        assert_eq!(m.load(&id).get::<u32>("k").await.unwrap(), Some(8));
        assert_eq!(m.load(id.clone()).get::<u32>("k").await.unwrap(), Some(8));
        assert_eq!(
            m.load(Some(id.as_str())).get::<u32>("k").await.unwrap(),
            Some(8)
        );
        store.take();
    }
}

#[tokio::test]
async fn an_invalid_id_is_never_adopted_even_next_to_a_live_one() {
    let (m, store) = setup(Config::default());
    let live = stored_session(&m, "secret", 42).await;
    // the live id with one character the parser refuses: it must not reach the live session
    let near = format!("{}!", live.as_str());
    store.take();
    let s = m.load(Some(near.as_str()));
    assert_eq!(s.get::<u32>("secret").await.unwrap(), None);
    assert!(s.keys().await.unwrap().is_empty());
    assert_eq!(s.save().await.unwrap().cookie, CookieAction::Remove);

    // the locked load neither locks nor loads it either
    let s = m
        .load_locked(IncomingId::Invalid, ClientInfo::default())
        .await
        .unwrap();
    assert!(s.is_loaded().await);
    assert_eq!(s.get::<u32>("secret").await.unwrap(), None);
    assert_eq!(s.save().await.unwrap().cookie, CookieAction::Remove);
    assert_eq!(
        store.take(),
        Vec::<&str>::new(),
        "no lock, no load, no write"
    );

    // the live session is untouched
    assert_eq!(m.load(&live).get::<u32>("secret").await.unwrap(), Some(42));
}
