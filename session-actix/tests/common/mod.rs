//! A real actix-web server on a loopback port with the test routes, a real HTTP client (awc)
//! with one cookie, and a store that counts its calls (a wrapper that forwards every call to a
//! real store, not a mock).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use session_actix::{CookieConfig, Error, Session, SessionMiddleware};
use session_core::Manager;
use session_core::driver::{BoxFuture, Call, Driver, Intercept, Intercepted};

/// A real store whose calls are counted.
pub type Counted = Intercepted<Arc<dyn Driver>, Calls>;

/// The hook of [`Counted`]: how many storage calls were made.
#[derive(Default)]
pub struct Calls(AtomicUsize);

impl Calls {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Intercept for Calls {
    fn intercept<'a, T: Send + 'static>(
        &'a self,
        _call: Call<'a>,
        run: BoxFuture<'a, session_core::Result<T>>,
    ) -> BoxFuture<'a, session_core::Result<T>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        run
    }
}

/// A manager on the memory driver, its calls counted.
pub fn memory() -> (Arc<Counted>, Manager) {
    let inner: Arc<dyn Driver> = Arc::new(session_memory::MemoryStore::new());
    let store = Arc::new(Intercepted::new(inner, Calls::default()));
    let manager = Manager::new(store.clone(), session_core::Config::default()).unwrap();
    (store, manager)
}

/// A middleware on `manager` with `config`.
pub fn middleware(manager: &Manager, config: CookieConfig) -> SessionMiddleware {
    SessionMiddleware::with_config(manager.clone(), config).unwrap()
}

type Answer = Result<String, Error>;

/// The test routes: they leave the session alone, read it, write it, log in and out, write a
/// key of their own, and count slowly.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/untouched", web::get().to(|| async { "hello" }))
        .route(
            "/read",
            web::get().to(|s: Session| async move {
                let name: Option<String> = s.get("name").await?;
                Answer::Ok(name.unwrap_or_else(|| "-".into()))
            }),
        )
        .route(
            "/visits",
            web::get().to(|s: Session| async move {
                let n = s.get::<u32>("visits").await?.unwrap_or(0) + 1;
                s.set("visits", &n).await?;
                Answer::Ok(n.to_string())
            }),
        )
        .route(
            "/set",
            web::get().to(|s: Session| async move {
                s.set("name", "ada").await?;
                Answer::Ok("set".into())
            }),
        )
        .route(
            "/put/{key}",
            web::get().to(|s: Session, key: web::Path<String>| async move {
                s.set(&key, &true).await?;
                Answer::Ok(key.into_inner())
            }),
        )
        .route(
            "/keys",
            web::get().to(|s: Session| async move { Answer::Ok(s.keys().await?.join(",")) }),
        )
        .route(
            "/slow",
            // read, wait, write: without a lock two of these on one session lose an update
            web::get().to(|s: Session| async move {
                let n = s.get::<u32>("slow").await?.unwrap_or(0);
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
                s.set("slow", &(n + 1)).await?;
                Answer::Ok((n + 1).to_string())
            }),
        )
        .route(
            "/login",
            web::get().to(|s: Session| async move {
                s.login("alice").await?;
                Answer::Ok("in".into())
            }),
        )
        .route(
            "/logout",
            web::get().to(|s: Session| async move {
                s.logout().await?;
                Answer::Ok("out".into())
            }),
        )
        .route(
            "/whoami",
            web::get().to(|s: Session| async move {
                Answer::Ok(s.user().await?.unwrap_or_else(|| "anonymous".into()))
            }),
        )
        .route(
            "/client",
            web::get().to(|s: Session| async move {
                let c = s.client().await;
                Answer::Ok(format!(
                    "{}|{}",
                    c.ip.map_or("-".into(), |ip| ip.to_string()),
                    c.user_agent.unwrap_or_else(|| "-".into())
                ))
            }),
        );
}

/// A running server; [`stop`](Self::stop) it at the end of the test.
pub struct Server {
    pub addr: SocketAddr,
    handle: ServerHandle,
}

impl Server {
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Serves the test routes behind `middleware` on a fresh loopback port, with two workers.
pub fn serve(middleware: SessionMiddleware) -> Server {
    let server = HttpServer::new(move || App::new().wrap(middleware.clone()).configure(routes))
        .workers(2)
        .bind(("127.0.0.1", 0))
        .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Server { addr, handle }
}

/// A reply: status, headers (names lower-cased, in order) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
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

    /// All `Set-Cookie` values.
    pub fn set_cookies(&self) -> Vec<&str> {
        self.all("set-cookie")
    }

    /// The one `Set-Cookie` of the reply, as `name=value` for a `Cookie` header.
    pub fn cookie_pair(&self) -> String {
        let all = self.set_cookies();
        assert_eq!(all.len(), 1, "expected one Set-Cookie: {:?}", self.headers);
        all[0].split(';').next().unwrap().trim().to_owned()
    }
}

/// One GET through awc with extra request headers.
pub async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(20))
        .finish();
    let mut req = client.get(server.url(path));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req.send().await.unwrap();
    let body = res.body().await.unwrap();
    Reply {
        status: res.status().as_u16(),
        headers: res
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect(),
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// One GET with a `Cookie` header, if any.
pub async fn get_with(server: &Server, path: &str, cookie: Option<&str>) -> Reply {
    match cookie {
        Some(c) => get(server, path, &[("cookie", c)]).await,
        None => get(server, path, &[]).await,
    }
}

/// The attribute `name` (lower case) of a `Set-Cookie` value.
pub fn attr<'a>(set_cookie: &'a str, name: &str) -> Option<&'a str> {
    set_cookie.split(';').skip(1).find_map(|a| {
        let mut kv = a.trim().splitn(2, '=');
        let k = kv.next()?;
        k.eq_ignore_ascii_case(name)
            .then(|| kv.next().unwrap_or(""))
    })
}

/// `pair` with one character of its value changed, `from_end` characters before the end.
pub fn tampered(pair: &str, from_end: usize) -> String {
    let mut bytes = pair.as_bytes().to_vec();
    let i = bytes.len() - from_end;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}
