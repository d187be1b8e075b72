//! tower-sessions' own `SessionManagerLayer` in an axum app, its store the bridge over SQLite (a
//! temp file) and over Redis (127.0.0.1:6379 or `REDIS_URL`): create, read, update, cycle id,
//! delete, expiry, and a forged cookie, request by request, checked in the store as well.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, StatusCode, header};
use session_tower_sessions::TowerSessionsStore;
use tower::ServiceExt;
use tower_sessions::session::Id;
use tower_sessions::{Expiry, Session, SessionManagerLayer, SessionStore};

use common::{with_redis, with_sqlite};

type Reply = Result<String, (StatusCode, String)>;

fn fail(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

async fn read(session: Session) -> Reply {
    let n: Option<u64> = session.get("n").await.map_err(fail)?;
    Ok(n.map_or("none".to_owned(), |n| n.to_string()))
}

async fn incr(session: Session) -> Reply {
    let n: u64 = session.get("n").await.map_err(fail)?.unwrap_or(0) + 1;
    session.insert("n", n).await.map_err(fail)?;
    Ok(n.to_string())
}

async fn cycle(session: Session) -> Reply {
    session.cycle_id().await.map_err(fail)?;
    Ok("cycled".to_owned())
}

async fn logout(session: Session) -> Reply {
    session.flush().await.map_err(fail)?;
    Ok("bye".to_owned())
}

fn app(store: TowerSessionsStore, expiry: Expiry) -> Router {
    Router::new()
        .route("/n", get(read))
        .route("/incr", post(incr))
        .route("/cycle", post(cycle))
        .route("/logout", post(logout))
        .layer(
            SessionManagerLayer::new(store)
                .with_secure(false)
                .with_expiry(expiry),
        )
}

/// What a response said: its body, and the `id` cookie it set (`Some("")` for a removal).
struct Answer {
    body: String,
    cookie: Option<String>,
}

async fn call(app: &Router, method: &str, path: &str, cookie: Option<&str>) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(id) = cookie {
        req = req.header(header::COOKIE, format!("id={id}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let cookie = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find_map(|v| v.strip_prefix("id="))
        .map(|v| v.split(';').next().unwrap().to_owned());
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
    Answer { body, cookie }
}

/// The value stored under the cookie's id, read through the bridge (so past its expiry: none).
async fn stored_n(store: &TowerSessionsStore, cookie: &str) -> Option<serde_json::Value> {
    let id: Id = cookie.parse().expect("a tower-sessions id");
    let record = store.load(&id).await.unwrap()?;
    Some(record.data.get("n").cloned().unwrap_or_default())
}

/// Keys the driver holds under the cookie's id (0 for a missing or expired session).
async fn driver_keys(store: &TowerSessionsStore, cookie: &str) -> usize {
    let id: Id = cookie.parse().unwrap();
    let sid = TowerSessionsStore::session_id(&id).unwrap();
    store.storage().get_size(&sid).await.unwrap()
}

async fn lifecycle(store: TowerSessionsStore) {
    let app = app(
        store.clone(),
        Expiry::OnInactivity(time::Duration::minutes(10)),
    );

    // An untouched session stores nothing and sets no cookie.
    let a = call(&app, "GET", "/n", None).await;
    assert_eq!((a.body.as_str(), a.cookie), ("none", None));

    // create
    let a = call(&app, "POST", "/incr", None).await;
    assert_eq!(a.body, "1");
    let first = a.cookie.expect("a new session sets its cookie");
    assert_eq!(stored_n(&store, &first).await, Some(serde_json::json!(1)));
    assert_eq!(
        driver_keys(&store, &first).await,
        2,
        "the field n and the expiry key"
    );

    // read
    assert_eq!(call(&app, "GET", "/n", Some(&first)).await.body, "1");

    // update: same id
    let a = call(&app, "POST", "/incr", Some(&first)).await;
    assert_eq!(a.body, "2");
    assert_eq!(a.cookie.as_deref(), Some(first.as_str()));
    assert_eq!(stored_n(&store, &first).await, Some(serde_json::json!(2)));

    // cycle id: the data moves to a new id, the old one is gone
    let a = call(&app, "POST", "/cycle", Some(&first)).await;
    let second = a.cookie.expect("the new id's cookie");
    assert_ne!(second, first);
    assert_eq!(stored_n(&store, &second).await, Some(serde_json::json!(2)));
    assert_eq!(stored_n(&store, &first).await, None);
    assert_eq!(driver_keys(&store, &first).await, 0);
    assert_eq!(call(&app, "GET", "/n", Some(&second)).await.body, "2");
    assert_eq!(call(&app, "GET", "/n", Some(&first)).await.body, "none");

    // delete (flush: the usual logout): the store forgets it, the cookie is removed
    let a = call(&app, "POST", "/logout", Some(&second)).await;
    assert_eq!(a.cookie.as_deref(), Some(""), "a removal cookie");
    assert_eq!(stored_n(&store, &second).await, None);
    assert_eq!(driver_keys(&store, &second).await, 0);
    assert_eq!(call(&app, "GET", "/n", Some(&second)).await.body, "none");
}

/// A session with a short inactivity expiry is gone once it passes, in the app and the store.
async fn expiry(store: TowerSessionsStore) {
    let app = app(
        store.clone(),
        Expiry::OnInactivity(time::Duration::milliseconds(400)),
    );
    let a = call(&app, "POST", "/incr", None).await;
    let id = a.cookie.unwrap();
    assert_eq!(call(&app, "GET", "/n", Some(&id)).await.body, "1");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(call(&app, "GET", "/n", Some(&id)).await.body, "none");
    assert_eq!(stored_n(&store, &id).await, None);
    assert_eq!(driver_keys(&store, &id).await, 0);

    // A write after the expiry starts a new session under a new id.
    let a = call(&app, "POST", "/incr", Some(&id)).await;
    assert_eq!(a.body, "1");
    assert_ne!(a.cookie.as_deref(), Some(id.as_str()));
}

/// A cookie with a well-formed id the store never issued is not adopted: the write goes to a
/// fresh id, and nothing is stored under the forged one.
async fn forged_cookie(store: TowerSessionsStore) {
    let app = app(
        store.clone(),
        Expiry::OnInactivity(time::Duration::minutes(10)),
    );
    let forged = Id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef).to_string();
    let a = call(&app, "POST", "/incr", Some(&forged)).await;
    assert_eq!(a.body, "1");
    let issued = a.cookie.unwrap();
    assert_ne!(issued, forged);
    assert_eq!(stored_n(&store, &issued).await, Some(serde_json::json!(1)));
    assert_eq!(driver_keys(&store, &forged).await, 0);
}

#[tokio::test]
async fn sqlite_lifecycle() {
    with_sqlite(|store, _| lifecycle(store)).await;
}

#[tokio::test]
async fn redis_lifecycle() {
    with_redis(lifecycle).await;
}

#[tokio::test]
async fn sqlite_expiry() {
    with_sqlite(|store, _| expiry(store)).await;
}

#[tokio::test]
async fn redis_expiry() {
    with_redis(expiry).await;
}

#[tokio::test]
async fn sqlite_forged_cookie() {
    with_sqlite(|store, _| forged_cookie(store)).await;
}

#[tokio::test]
async fn redis_forged_cookie() {
    with_redis(forged_cookie).await;
}
