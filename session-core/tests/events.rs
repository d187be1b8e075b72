//! One login state and the session events: the session's own record, the owner index and the
//! observers agree after every path that changes who a session belongs to (issue 15, bugs A and
//! B as the session layer sees them).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{memory, ms, stored_session};
use session_core::{Config, Manager, SessionEvent, SessionId, SessionObserver, async_trait};

/// Records every event it hears.
#[derive(Default)]
struct Log(Mutex<Vec<SessionEvent>>);

#[async_trait]
impl SessionObserver for Log {
    async fn on_event(&self, event: &SessionEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl Log {
    fn take(&self) -> Vec<SessionEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn observed(config: Config) -> (Manager, Arc<Log>, session_core::Observation) {
    let m = memory(config);
    let log = Arc::new(Log::default());
    let obs = m.observe(log.clone());
    (m, log, obs)
}

/// Who the session, the index and the manager say owns `id`.
async fn owner_everywhere(m: &Manager, id: &SessionId) -> (Option<String>, Option<String>) {
    let s = m.load(Some(id.as_str()));
    let recorded = s.user().await.unwrap();
    let indexed = m.store().index_owner(id).await.unwrap();
    (recorded, indexed)
}

#[tokio::test]
async fn login_session_records_the_owner_in_the_session_so_regeneration_keeps_it() {
    // bug A: a session logged in by id fell out of the index at its first regeneration
    let (m, log, _obs) = observed(Config::default());
    let s1 = stored_session(&m, "cart", 1).await;
    assert!(m.login_session(&s1, "2000").await.unwrap());
    assert_eq!(
        owner_everywhere(&m, &s1).await,
        (Some("2000".into()), Some("2000".into()))
    );
    assert_eq!(
        log.take(),
        vec![SessionEvent::LoggedIn {
            id: s1.clone(),
            user: "2000".into()
        }]
    );
    let s = m.load(Some(s1.as_str()));
    s.regenerate(true).await.unwrap();
    let s2 = s.save().await.unwrap().cookie.id().cloned().unwrap();
    assert_ne!(s1, s2);
    assert_eq!(
        log.take(),
        vec![SessionEvent::Renewed {
            old: s1.clone(),
            new: s2.clone()
        }]
    );
    let ids: Vec<SessionId> = m
        .sessions_of("2000")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, vec![s2.clone()]);
    assert_eq!(m.destroy_user("2000").await.unwrap(), 1);
    assert!(
        !m.load(Some(s2.as_str())).exists().await.unwrap(),
        "log out everywhere missed it"
    );
    assert_eq!(
        log.take(),
        vec![SessionEvent::Destroyed {
            id: s2,
            user: Some("2000".into())
        }]
    );
}

#[tokio::test]
async fn logout_session_removes_the_owner_from_the_session_too() {
    // bug B: a logout by id left the session saying it was logged in, and a regeneration
    // brought the index entry back
    let (m, log, _obs) = observed(Config::default());
    let s = m.load(None);
    s.set("cart", &1).await.unwrap();
    s.login("3000").await.unwrap();
    let id = s.save().await.unwrap().cookie.id().cloned().unwrap();
    assert!(matches!(&log.take()[..], [SessionEvent::LoggedIn { user, .. }] if user == "3000"));
    assert_eq!(
        m.logout_session(&id).await.unwrap().as_deref(),
        Some("3000")
    );
    assert_eq!(owner_everywhere(&m, &id).await, (None, None));
    assert_eq!(
        log.take(),
        vec![SessionEvent::LoggedOut {
            id: id.clone(),
            user: "3000".into()
        }]
    );
    let s = m.load(Some(id.as_str()));
    assert!(s.meta().await.unwrap().unwrap().authenticated_at.is_none());
    s.regenerate(true).await.unwrap();
    let id2 = s.save().await.unwrap().cookie.id().cloned().unwrap();
    assert!(m.sessions_of("3000").await.unwrap().is_empty());
    assert_eq!(owner_everywhere(&m, &id2).await, (None, None));
    // the data is still there: a logout by id does not destroy
    assert_eq!(
        m.load(Some(id2.as_str())).get::<u32>("cart").await.unwrap(),
        Some(1)
    );
    // nothing to log out, nothing reported
    assert_eq!(m.logout_session(&id2).await.unwrap(), None);
    assert!(matches!(&log.take()[..], [SessionEvent::Renewed { .. }]));
}

#[tokio::test]
async fn both_sides_of_a_login_reach_the_same_state() {
    let (m, _log, _obs) = observed(Config::default());
    // Session::login, then logout by id == login by id, then logout by id
    let s = m.load(None);
    s.set("cart", &1).await.unwrap();
    s.login("u1").await.unwrap();
    let a = s.save().await.unwrap().cookie.id().cloned().unwrap();
    m.logout_session(&a).await.unwrap();
    let b = stored_session(&m, "cart", 1).await;
    m.login_session(&b, "u1").await.unwrap();
    m.logout_session(&b).await.unwrap();
    assert_eq!(
        owner_everywhere(&m, &a).await,
        owner_everywhere(&m, &b).await
    );
    assert_eq!(owner_everywhere(&m, &a).await, (None, None));
    // login by id, then Session::logout == Session::login, then Session::logout: gone
    let c = stored_session(&m, "cart", 1).await;
    m.login_session(&c, "u2").await.unwrap();
    let s = m.load(Some(c.as_str()));
    s.logout().await.unwrap();
    s.save().await.unwrap();
    assert!(!m.load(Some(c.as_str())).exists().await.unwrap());
    assert!(m.sessions_of("u2").await.unwrap().is_empty());
    assert_eq!(m.store().index_owner(&c).await.unwrap(), None);
}

#[tokio::test]
async fn set_user_changes_the_owner_in_place_and_keeps_the_index_in_step() {
    let (m, log, _obs) = observed(Config::default());
    let id = stored_session(&m, "cart", 1).await;
    let s = m.load(Some(id.as_str()));
    s.set_user(Some("ann")).await.unwrap();
    assert_eq!(
        s.save().await.unwrap().cookie.id(),
        Some(&id),
        "the id stays"
    );
    assert_eq!(
        owner_everywhere(&m, &id).await,
        (Some("ann".into()), Some("ann".into()))
    );
    let s = m.load(Some(id.as_str()));
    s.set_user(Some("bob")).await.unwrap();
    s.save().await.unwrap();
    assert_eq!(
        owner_everywhere(&m, &id).await,
        (Some("bob".into()), Some("bob".into()))
    );
    assert!(m.sessions_of("ann").await.unwrap().is_empty());
    assert_eq!(
        log.take(),
        vec![
            SessionEvent::LoggedIn {
                id: id.clone(),
                user: "ann".into()
            },
            SessionEvent::LoggedOut {
                id: id.clone(),
                user: "ann".into()
            },
            SessionEvent::LoggedIn {
                id: id.clone(),
                user: "bob".into()
            },
        ]
    );
    // a "clear" keeps the login
    let s = m.load(Some(id.as_str()));
    s.clear().await.unwrap();
    s.save().await.unwrap();
    assert_eq!(owner_everywhere(&m, &id).await.0.as_deref(), Some("bob"));
    assert!(log.take().is_empty());
    // invalid owners are refused before anything is stored
    assert!(m.load(Some(id.as_str())).set_user(Some("")).await.is_err());
    assert!(m.login_session(&id, "").await.is_err());
}

#[tokio::test]
async fn login_and_logout_by_id_of_an_unknown_session_change_nothing() {
    let (m, log, _obs) = observed(Config::default());
    let ghost = SessionId::generate().unwrap();
    assert!(!m.login_session(&ghost, "u").await.unwrap());
    assert_eq!(m.logout_session(&ghost).await.unwrap(), None);
    assert!(
        !m.load(Some(ghost.as_str())).exists().await.unwrap(),
        "an unknown id was adopted"
    );
    assert!(m.sessions_of("u").await.unwrap().is_empty());
    assert!(log.take().is_empty());
}

#[tokio::test]
async fn timed_rotation_and_destroy_are_reported() {
    let config = Config {
        rotate_every: Some(ms(1)),
        ..Config::default()
    };
    let (m, log, obs) = observed(config);
    let id = stored_session(&m, "cart", 1).await;
    assert!(m.login_session(&id, "rot").await.unwrap());
    log.take();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<u32>("cart").await.unwrap(), Some(1));
    let rotated = s.save().await.unwrap().cookie.id().cloned().unwrap();
    assert_ne!(rotated, id);
    assert_eq!(
        log.take(),
        vec![SessionEvent::Renewed {
            old: id,
            new: rotated.clone()
        }]
    );
    let ids: Vec<SessionId> = m
        .sessions_of("rot")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, vec![rotated.clone()], "the rotated id lost its owner");
    let s = m.load(Some(rotated.as_str()));
    s.destroy().await.unwrap();
    assert_eq!(
        log.take(),
        vec![SessionEvent::Destroyed {
            id: rotated,
            user: Some("rot".into())
        }]
    );
    // once the observation is dropped, nothing more is heard
    drop(obs);
    let other = stored_session(&m, "cart", 2).await;
    m.login_session(&other, "rot").await.unwrap();
    assert!(log.take().is_empty());
}
