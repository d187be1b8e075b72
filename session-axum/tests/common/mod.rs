//! A counting, failure-injecting `Storage` delegate around a real store, the test app, and
//! helpers to send requests and read cookies.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use session_axum::{CookieConfig, Session, SessionLayer};
use session_core::driver::{BoxFuture, Call, Driver, Intercept, Intercepted, Op};
use session_core::{Error, Manager, Result};
use tower::ServiceExt;

/// A real store with instrumentation: counts calls, records the ids it was asked about, and can
/// be told to fail `apply`.
pub type Counting = Intercepted<Arc<dyn Driver>, Counter>;

/// The hook of [`Counting`].
#[derive(Default)]
pub struct Counter {
    pub calls: AtomicUsize,
    pub ids: Mutex<Vec<String>>,
    pub fail_apply: AtomicBool,
}

impl Counter {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }
}

impl Intercept for Counter {
    fn intercept<'a, T: Send + 'static>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(id) = call.id {
            self.ids.lock().unwrap().push(id.as_str().to_owned());
        }
        if call.op == Op::Apply && self.fail_apply.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(Error::backend(
                "counting",
                "injected apply failure",
            ))));
        }
        run
    }
}

/// `inner`, counted.
pub fn counting(inner: impl Driver) -> Arc<Counting> {
    let inner: Arc<dyn Driver> = Arc::new(inner);
    Arc::new(Intercepted::new(inner, Counter::default()))
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
    let store = counting(session_memory::MemoryStore::new());
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
