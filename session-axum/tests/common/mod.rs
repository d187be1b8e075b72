//! A counting, failure-injecting `Storage` delegate around a real store, the test app, and
//! helpers to send requests and read cookies.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use session_axum::{CookieConfig, Session, SessionLayer};
use session_core::{
    Capabilities, ChangeSet, Data, Error, Loaded, LockToken, Manager, Result, ScanPage, SessionId,
    Storage, Value, async_trait,
};
use tower::ServiceExt;

/// A real store with instrumentation: counts calls, records the ids it was asked about, and can
/// be told to fail `apply`.
pub struct Counting {
    inner: Arc<dyn Storage>,
    pub calls: AtomicUsize,
    pub ids: Mutex<Vec<String>>,
    pub fail_apply: AtomicBool,
}

impl Counting {
    pub fn new(inner: Arc<dyn Storage>) -> Arc<Self> {
        Arc::new(Counting {
            inner,
            calls: AtomicUsize::new(0),
            ids: Mutex::new(Vec::new()),
            fail_apply: AtomicBool::new(false),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }

    fn saw(&self, id: Option<&SessionId>) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(id) = id {
            self.ids.lock().unwrap().push(id.as_str().to_owned());
        }
    }
}

#[async_trait]
impl Storage for Counting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn new(&self, ttl: Duration) -> Result<Option<SessionId>> {
        self.saw(None);
        self.inner.new(ttl).await
    }
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        self.saw(Some(id));
        self.inner.get(id, key).await
    }
    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        self.saw(Some(id));
        self.inner.get_map(id).await
    }
    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        self.saw(Some(id));
        self.inner.get_size(id).await
    }
    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Duration) -> Result<()> {
        self.saw(Some(id));
        self.inner.set(id, key, value, ttl).await
    }
    async fn set_map(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        self.saw(Some(id));
        self.inner.set_map(id, data, ttl).await
    }
    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        self.saw(Some(id));
        self.inner.remove(id, key).await
    }
    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.saw(Some(id));
        self.inner.remove_all(id).await
    }
    async fn get_session(
        &self,
        id: &SessionId,
        ttl: Duration,
        cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        self.saw(Some(id));
        self.inner.get_session(id, ttl, cached).await
    }
    async fn set_session(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        self.saw(Some(id));
        self.inner.set_session(id, data, ttl).await
    }
    async fn update_ttl(&self, id: &SessionId, ttl: Duration) -> Result<()> {
        self.saw(Some(id));
        self.inner.update_ttl(id, ttl).await
    }
    async fn apply(&self, id: &SessionId, changes: ChangeSet, ttl: Duration) -> Result<bool> {
        self.saw(Some(id));
        if self.fail_apply.load(Ordering::SeqCst) {
            return Err(Error::backend("counting", "injected apply failure"));
        }
        self.inner.apply(id, changes, ttl).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        self.saw(Some(id));
        self.inner.load(id).await
    }
    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Duration) -> Result<()> {
        self.saw(Some(id));
        self.inner.index_add(owner, id, ttl).await
    }
    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        self.saw(Some(id));
        self.inner.index_remove(id).await
    }
    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        self.saw(None);
        self.inner.index_sessions(owner).await
    }
    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        self.saw(Some(id));
        self.inner.index_owner(id).await
    }
    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        self.saw(Some(id));
        self.inner.try_lock(id, lease).await
    }
    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        self.saw(Some(id));
        self.inner.unlock(id, token).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        self.saw(None);
        self.inner.purge_expired().await
    }
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        self.saw(None);
        self.inner.scan(cursor, limit).await
    }
}

type Answer = std::result::Result<String, (StatusCode, String)>;

fn fail(e: Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The test app: routes that leave the session alone, read it, write it, log in and out.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/untouched", get(|| async { "hello" }))
        .route(
            "/read",
            get(|s: Session| async move {
                let name: Option<String> = s.get("name").await.map_err(fail)?;
                Answer::Ok(name.unwrap_or_else(|| "-".into()))
            }),
        )
        .route(
            "/set",
            get(|s: Session| async move {
                s.set("name", "ada").await.map_err(fail)?;
                Answer::Ok("set".into())
            }),
        )
        .route(
            "/visits",
            get(|s: Session| async move {
                let n = s.get::<u32>("visits").await.map_err(fail)?.unwrap_or(0) + 1;
                s.set("visits", &n).await.map_err(fail)?;
                Answer::Ok(n.to_string())
            }),
        )
        .route(
            "/login",
            get(|s: Session| async move {
                s.login("alice").await.map_err(fail)?;
                Answer::Ok("in".into())
            }),
        )
        .route(
            "/logout",
            get(|s: Session| async move {
                s.logout().await.map_err(fail)?;
                Answer::Ok("out".into())
            }),
        )
        .route(
            "/whoami",
            get(|s: Session| async move {
                let user = s.user().await.map_err(fail)?;
                Answer::Ok(user.unwrap_or_else(|| "anonymous".into()))
            }),
        )
        .route(
            "/client",
            get(|s: Session| async move {
                let c = s.client().await;
                Answer::Ok(format!(
                    "{}|{}",
                    c.ip.map_or("-".into(), |ip| ip.to_string()),
                    c.user_agent.unwrap_or_else(|| "-".into())
                ))
            }),
        )
        .layer(layer)
}

/// A manager on the memory driver behind the counting delegate.
pub fn memory() -> (Arc<Counting>, Manager) {
    let store = Counting::new(Arc::new(session_memory::MemoryStore::new()));
    let manager =
        Manager::new(store.clone(), session_core::Config::default()).expect("valid config");
    (store, manager)
}

pub fn layer(manager: &Manager, config: CookieConfig) -> SessionLayer {
    SessionLayer::with_config(manager.clone(), config).expect("valid cookie config")
}

/// One request through the router (tower `oneshot`), with optional `Cookie` header value.
pub async fn send(app: &Router, path: &str, cookie: Option<&str>) -> Response<Body> {
    send_with(app, path, cookie, &[]).await
}

pub async fn send_with(
    app: &Router,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> Response<Body> {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app.clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible router")
}

pub async fn body(res: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

/// All `Set-Cookie` headers of a response.
pub fn set_cookies(res: &Response<Body>) -> Vec<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii set-cookie").to_owned())
        .collect()
}

/// The one `Set-Cookie` of a response, as `name=value` ready for a `Cookie` header.
pub fn cookie_pair(res: &Response<Body>) -> String {
    let all = set_cookies(res);
    assert_eq!(all.len(), 1, "expected one Set-Cookie, got {all:?}");
    all[0].split(';').next().expect("pair").trim().to_owned()
}

/// The attributes of a `Set-Cookie` value, lower-cased names, in order.
pub fn attributes(set_cookie: &str) -> Vec<(String, String)> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| {
            let mut kv = a.trim().splitn(2, '=');
            (
                kv.next().unwrap_or("").to_ascii_lowercase(),
                kv.next().unwrap_or("").to_owned(),
            )
        })
        .collect()
}
