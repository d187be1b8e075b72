//! The demo's pages through the router (tower `oneshot`), on the memory driver: counter, values
//! form, escaping, flash messages, login, and revoking one session of a user.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use session_demo::{app, cookie_config, session_config};
use session_kit::Manager;
use tower::ServiceExt;

fn demo() -> (Manager, Router) {
    let manager = Manager::new(
        Arc::new(session_kit::memory::MemoryStore::new()),
        session_config(),
    )
    .unwrap();
    let router = app(manager.clone(), cookie_config(None)).unwrap();
    (manager, router)
}

/// Percent-encodes a form value (everything but unreserved characters).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A browser in miniature: keeps the cookie the server sets or removes.
struct Client {
    app: Router,
    cookie: Option<String>,
}

impl Client {
    fn new(app: &Router) -> Self {
        Client {
            app: app.clone(),
            cookie: None,
        }
    }

    async fn send(&mut self, req: axum::http::request::Builder, body: Body) -> Response<Body> {
        let req = match &self.cookie {
            Some(c) => req.header("cookie", c),
            None => req,
        }
        .header("user-agent", "PagesTest/1.0");
        let res = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        for v in res.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap().to_owned();
            self.cookie = if v.contains("Max-Age=0") {
                None
            } else {
                Some(pair)
            };
        }
        res
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let res = self.send(Request::get(path), Body::empty()).await;
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response<Body> {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        let req = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
        self.send(req, Body::from(body.join("&"))).await
    }
}

fn location(res: &Response<Body>) -> &str {
    res.headers()
        .get("location")
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_values_and_escaping() {
    let (_m, app) = demo();
    let mut c = Client::new(&app);
    let (status, page) = c.get("/session").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"id="no-session""#),
        "viewing writes nothing"
    );
    assert!(c.cookie.is_none(), "no cookie for a session nobody wrote");

    assert!(
        c.get("/")
            .await
            .1
            .contains("viewed this page <b>1</b> time in")
    );
    assert!(c.cookie.is_some());
    assert!(c.get("/").await.1.contains("<b>2</b> times"));

    let res = c
        .post(
            "/values",
            &[
                ("key", "<script>k</script>"),
                ("value", "\"><img src=x onerror=alert(1)>"),
            ],
        )
        .await;
    assert_eq!((res.status(), location(&res)), (StatusCode::SEE_OTHER, "/"));
    let (_, page) = c.get("/").await;
    assert!(
        page.contains("&lt;script&gt;k&lt;/script&gt;"),
        "key escaped"
    );
    assert!(
        page.contains("\"&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "value escaped"
    );
    assert!(!page.contains("<script>k") && !page.contains("<img src=x"));
    assert!(
        page.contains(r#"class="flash notice">Stored"#),
        "flash after the action"
    );
    let (_, again) = c.get("/").await;
    assert!(!again.contains("flash notice"), "a flash shows once");

    c.post("/values", &[("key", "__s.meta"), ("value", "x")])
        .await;
    let (_, page) = c.get("/").await;
    assert!(page.contains(r#"class="flash error">Not stored"#), "{page}");

    let (_, info) = c.get("/session").await;
    assert!(info.contains(r#"id="session-id""#) && info.contains('…'));
    assert!(
        info.contains(r#"<td id="expires">in 1 h 59 min</td>"#),
        "{info}"
    );
    assert!(info.contains("<code>visits</code>"));

    c.post("/values/remove", &[("key", "<script>k</script>")])
        .await;
    let (_, page) = c.get("/").await;
    assert!(!page.contains("&lt;script&gt;k&lt;/script&gt;</code>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sessions_and_revoking_one() {
    let (manager, app) = demo();
    let mut anon = Client::new(&app);
    let res = anon.send(Request::get("/sessions"), Body::empty()).await;
    assert_eq!(
        (res.status(), location(&res)),
        (StatusCode::SEE_OTHER, "/login")
    );

    let (mut a, mut b) = (Client::new(&app), Client::new(&app));
    a.get("/").await;
    let before = a.cookie.clone();
    let res = a.post("/login", &[("username", "<b>bob</b>")]).await;
    assert_eq!(location(&res), "/");
    assert_ne!(a.cookie, before, "login regenerates the id");
    let (_, page) = a.get("/").await;
    assert!(
        page.contains("Logged in as <b>&lt;b&gt;bob&lt;/b&gt;</b>"),
        "{page}"
    );
    b.post("/login", &[("username", "<b>bob</b>")]).await;

    let (_, page) = a.get("/sessions").await;
    assert_eq!(page.matches(r#"class="session-row""#).count(), 2);
    assert_eq!(page.matches(r#"class="this-session""#).count(), 1);
    assert!(page.contains("PagesTest/1.0"));

    let sessions = manager.sessions_of("<b>bob</b>").await.unwrap();
    let b_id = b.cookie.clone().unwrap();
    let b_short = sessions
        .iter()
        .find(|s| b_id.ends_with(s.id.as_str()))
        .unwrap()
        .id
        .short();
    let res = a.post("/sessions/revoke", &[("session", &b_short)]).await;
    assert_eq!(location(&res), "/sessions");
    let (_, page) = a.get("/sessions").await;
    assert!(page.contains("Logged out session"), "{page}");
    assert_eq!(page.matches(r#"class="session-row""#).count(), 1);
    assert!(b.get("/").await.1.contains("Not logged in"));
    assert!(a.get("/").await.1.contains("Logged in as"));

    let res = a.post("/logout", &[]).await;
    assert_eq!(location(&res), "/");
    let (_, page) = a.get("/").await;
    assert!(page.contains("You have been logged out.") && page.contains("Not logged in"));
    assert!(manager.sessions_of("<b>bob</b>").await.unwrap().is_empty());
}
