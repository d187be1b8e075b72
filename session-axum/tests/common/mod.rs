//! A counting, failure-injecting `Storage` delegate around a real store, the test app, and
//! helpers to send requests and read cookies.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response};
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

/// What the test handlers answer: session errors go through `session_axum::Error` (`?`).
type Answer = std::result::Result<String, session_axum::Error>;

/// The test app: routes that leave the session alone, read it, write it, log in and out.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/untouched", get(|| async { "hello" }))
        .route(
            "/read",
            get(|s: Session| async move {
                let name: Option<String> = s.get("name").await?;
                Answer::Ok(name.unwrap_or_else(|| "-".into()))
            }),
        )
        .route(
            "/set",
            get(|s: Session| async move {
                s.set("name", "ada").await?;
                Answer::Ok("set".into())
            }),
        )
        .route(
            "/visits",
            get(|s: Session| async move {
                let n = s.get::<u32>("visits").await?.unwrap_or(0) + 1;
                s.set("visits", &n).await?;
                Answer::Ok(n.to_string())
            }),
        )
        .route(
            "/login",
            get(|s: Session| async move {
                s.login("alice").await?;
                Answer::Ok("in".into())
            }),
        )
        .route(
            "/remember",
            get(|s: Session| async move {
                // "remember me": this session lives 30 days idle, whatever the manager says
                s.set_idle_ttl(Some(std::time::Duration::from_secs(30 * 24 * 3600)))
                    .await?;
                s.set("name", "ada").await?;
                Answer::Ok("remembered".into())
            }),
        )
        .route(
            "/logout",
            get(|s: Session| async move {
                s.logout().await?;
                Answer::Ok("out".into())
            }),
        )
        .route(
            "/whoami",
            get(|s: Session| async move {
                let user = s.user().await?;
                Answer::Ok(user.unwrap_or_else(|| "anonymous".into()))
            }),
        )
        .route(
            "/id",
            get(|s: Session| async move {
                s.user().await?; // loads the session, so the id is known
                Answer::Ok(s.id().await.map_or("-".into(), |id| id.to_string()))
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

/// A reply read off a real socket.
pub struct Reply {
    pub status: u16,
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// All values of header `name` (lower case).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Serves `router` on a fresh loopback port (with the peer address), until the task is aborted.
pub async fn serve(router: Router) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    (addr, task)
}

/// One HTTP/1.1 GET on a fresh TCP connection, with extra request headers.
pub async fn http_get(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("reply within 10 s")
    .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 reply");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(), // axum sends a String body with Content-Length
    }
}
