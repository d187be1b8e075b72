//! The check of the `axum_request` fuzz target (and of its regression test): a request with any
//! headers through session-axum's `SessionLayer` on a router, on the memory driver behind a
//! delegate that records every id storage is asked about.
//!
//! Per input: a layer config (signed or private, keys, cookie or id header); a session `X`
//! created through the manager and its value `V` sealed as the layer sends it; a request with
//! exactly `V` (must load `X`); then a request with the input's headers (`arbitrary`: raw bytes,
//! separators, names, `V`, the bare id of `X`, `X` sealed with a key that is not configured,
//! `X-Forwarded-For` and `User-Agent` values). Checked:
//!
//! * every response is a 200 from the handler (the layer never fails on request input);
//! * the handler sees `X`'s data only when the request carried `V` (or, without keys, `X` itself);
//! * storage is only asked about `X` when the handler may see it, and with keys otherwise only
//!   about ids the request did not send (fresh ones): no id from an unverified value reaches
//!   storage;
//! * the response's new id (the handler writes) reads back through the layer's config.

use std::sync::{Arc, Mutex, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderValue, Request, StatusCode};
use session_axum::{CookieConfig, Key, Protection, Session, SessionLayer};
use session_core::driver::{BoxFuture, Call, Driver, Intercept, Intercepted};
use session_core::{Config, CookieAction, IncomingId, Manager, Result, SessionId};
use session_http::HttpSessions;
use tower::ServiceExt;

const SEPARATORS: [&str; 6] = ["; ", ";", ",", " ", "=", "\""];
const COOKIE_NAME: &str = "sid";
const HEADER_NAME: &str = "x-session-id";

/// Runs the check on one input.
pub fn check(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        runtime().block_on(run(&input));
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    private: bool,
    /// Pool indices of the configured keys (at most two used; key 2 is never configured).
    keys: Vec<bool>,
    header: bool,
    trusted_proxies: u8,
    headers: Vec<(HeaderName, Vec<Piece>)>,
}

#[derive(Arbitrary, Debug)]
enum HeaderName {
    /// Where the id travels: `Cookie`, or the id header.
    Id,
    Cookie,
    IdHeader,
    ForwardedFor,
    UserAgent,
    Other,
}

#[derive(Arbitrary, Debug)]
enum Piece {
    Raw(Vec<u8>),
    Separator(u8),
    /// `sid=`
    Name,
    /// `V`: `X` as the layer sealed it.
    Issued,
    /// `X` bare.
    IssuedId,
    /// `X` sealed with a key that is not configured.
    Foreign,
    Text(String),
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

fn pool() -> &'static [Key; 3] {
    static POOL: OnceLock<[Key; 3]> = OnceLock::new();
    POOL.get_or_init(|| [7u8, 8, 9].map(|b| Key::try_from_secret(&[b; 32]).expect("32 bytes")))
}

/// Records the ids storage is asked about.
#[derive(Default)]
struct Ids(Mutex<Vec<SessionId>>);

impl Intercept for Ids {
    fn intercept<'a, T: Send + 'static>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        if let Some(id) = call.id {
            self.0.lock().expect("not poisoned").push(id.clone());
        }
        run
    }
}

type Answer = std::result::Result<String, session_axum::Error>;

/// The app: reads the counter `n` (the data of `X` has 1), writes it back incremented.
fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route(
            "/",
            get(|s: Session| async move {
                let n = s.get::<u64>("n").await?.unwrap_or(0);
                s.set("n", &(n + 1)).await?;
                Answer::Ok(n.to_string())
            }),
        )
        .layer(layer)
}

fn config(input: &Input) -> CookieConfig {
    let mut keys: Vec<Key> = input
        .keys
        .iter()
        .take(2)
        .map(|&second| pool()[usize::from(second)].clone())
        .collect();
    if input.private && keys.is_empty() {
        keys.push(pool()[0].clone());
    }
    CookieConfig {
        name: COOKIE_NAME.into(),
        keys,
        protection: if input.private {
            Protection::Private
        } else {
            Protection::Signed
        },
        header: input.header.then(|| HEADER_NAME.into()),
        trusted_proxies: usize::from(input.trusted_proxies % 3),
        ..CookieConfig::default()
    }
}

async fn send(app: &Router, headers: &[(&str, HeaderValue)]) -> (String, Vec<String>) {
    let mut req = Request::get("/");
    for (name, value) in headers {
        req = req.header(*name, value.clone());
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("a request"))
        .await
        .expect("the router is infallible");
    assert_eq!(res.status(), StatusCode::OK, "the layer failed a request");
    let sent: Vec<String> = res
        .headers()
        .iter()
        .filter(|(name, _)| *name == "set-cookie" || *name == HEADER_NAME)
        .map(|(_, v)| v.to_str().expect("a visible ASCII header").to_owned())
        .collect();
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .expect("a body");
    (String::from_utf8(body.to_vec()).expect("UTF-8"), sent)
}

/// The memory store behind the delegate that records the ids it is asked about.
type Recorded = Intercepted<Arc<dyn Driver>, Ids>;

/// The store behind its recording delegate, and a manager on it, made once (sessions live 3 s:
/// each run's session `X` has a fresh id, so the runs never see each other's sessions).
fn shared() -> &'static (Arc<Recorded>, Manager) {
    static SHARED: OnceLock<(Arc<Recorded>, Manager)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let store: Arc<dyn Driver> = Arc::new(session_memory::MemoryStore::new());
        let ids = Arc::new(Intercepted::new(store, Ids::default()));
        let config = Config {
            idle_ttl: std::time::Duration::from_secs(3),
            ..Config::default()
        };
        let manager = Manager::new(ids.clone(), config).expect("a valid config");
        (ids, manager)
    })
}

async fn run(input: &Input) {
    let config = config(input);
    let (ids, manager) = shared();
    let sessions = HttpSessions::with_config(manager.clone(), config.clone()).expect("valid");
    let app = app(SessionLayer::with_config(manager.clone(), config.clone()).expect("valid"));

    // X, with n = 1, and V: X as the layer sends it
    let session = manager.load(None);
    session.set("n", &1u64).await.expect("a memory write");
    let CookieAction::Set { id: x, expires } = session.save().await.expect("saved").cookie else {
        panic!("a new session sets its cookie");
    };
    let set = sessions
        .outgoing(
            &CookieAction::Set {
                id: x.clone(),
                expires,
            },
            false,
        )
        .expect("sent")
        .expect("sealed");
    let v = if input.header {
        set
    } else {
        let c = cookie::Cookie::parse(set).expect("a Set-Cookie value");
        c.value().to_owned()
    };
    let id_header = if input.header { HEADER_NAME } else { "cookie" };
    let alone = |value: &str| -> HeaderValue {
        let text = if input.header {
            value.to_owned()
        } else {
            format!("{COOKIE_NAME}={value}")
        };
        HeaderValue::from_str(&text).expect("a header value")
    };
    let foreign = {
        let key = cookie::Key::try_from(pool()[2].master()).expect("64 bytes");
        let name = if input.header {
            HEADER_NAME
        } else {
            COOKIE_NAME
        };
        let mut jar = cookie::CookieJar::new();
        let c = cookie::Cookie::new(name, x.as_str().to_owned());
        if input.private {
            jar.private_mut(&key).add(c);
        } else {
            jar.signed_mut(&key).add(c);
        }
        jar.get(name).expect("added").value().to_owned()
    };

    // V alone loads X
    let (n, _) = send(&app, &[(id_header, alone(&v))]).await;
    assert_eq!(n, "1", "the issued value did not load its session");

    // the input's request
    let mut carried = false;
    let mut headers = Vec::new();
    let mut sent_bytes = Vec::new();
    for (name, pieces) in &input.headers {
        let mut value = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Raw(bytes) => value.extend_from_slice(bytes),
                Piece::Separator(n) => value
                    .extend_from_slice(SEPARATORS[usize::from(*n) % SEPARATORS.len()].as_bytes()),
                Piece::Name => value.extend_from_slice(format!("{COOKIE_NAME}=").as_bytes()),
                Piece::Issued => {
                    carried = true;
                    value.extend_from_slice(v.as_bytes());
                }
                Piece::IssuedId => {
                    carried |= config.keys.is_empty();
                    value.extend_from_slice(x.as_str().as_bytes());
                }
                Piece::Foreign => value.extend_from_slice(foreign.as_bytes()),
                Piece::Text(s) => value.extend_from_slice(s.as_bytes()),
            }
        }
        let name = match name {
            HeaderName::Id => id_header,
            HeaderName::Cookie => "cookie",
            HeaderName::IdHeader => HEADER_NAME,
            HeaderName::ForwardedFor => "x-forwarded-for",
            HeaderName::UserAgent => "user-agent",
            HeaderName::Other => "x-other",
        };
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            continue;
        };
        if name == id_header {
            sent_bytes.extend_from_slice(value.as_bytes());
            sent_bytes.push(0);
        }
        headers.push((name, value));
    }
    // without keys, X's text anywhere in the id header may be X (the fuzzer can spell it)
    let spelled = |id: &SessionId| {
        sent_bytes
            .windows(id.as_str().len())
            .any(|w| w == id.as_str().as_bytes())
    };
    if config.keys.is_empty() {
        carried |= spelled(&x);
    }
    ids.hook().0.lock().expect("not poisoned").clear();
    let (n, sent) = send(&app, &headers).await;
    let asked = std::mem::take(&mut *ids.hook().0.lock().expect("not poisoned"));
    match n.as_str() {
        "2" => assert!(carried, "X loaded from a request that did not carry it"),
        "0" => {}
        other => panic!("unexpected answer {other:?}"),
    }
    for id in &asked {
        if *id == x {
            assert!(
                carried,
                "storage was asked about X, which the request did not carry"
            );
        } else if !config.keys.is_empty() {
            // without keys a well-formed bare id is a valid one; with keys only sealed ones are
            assert!(
                !spelled(id),
                "storage was asked about {id:?}, sent unverified"
            );
        }
    }
    // a new session (n = 0) was written: its id is sent and reads back through the config
    if n == "0" {
        let value = sent
            .iter()
            .map(|s| {
                if input.header {
                    s.clone()
                } else {
                    let c = cookie::Cookie::parse(s.clone()).expect("a Set-Cookie value");
                    format!("{}={}", c.name(), c.value())
                }
            })
            .find(|s| !s.is_empty() && !s.ends_with('='))
            .expect("the new session's id is sent");
        let back = sessions.read([value.as_bytes()]);
        match back.id {
            IncomingId::Valid(new) => {
                assert_ne!(new, x);
                assert!(!back.stale_key);
            }
            other => panic!("the new id does not read back: {other:?}"),
        }
    }
}
