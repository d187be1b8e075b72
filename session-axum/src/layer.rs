//! The tower [`Layer`] and [`Service`] that load a session per request and save it before the
//! response goes out.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::extract::ConnectInfo;
use cookie::{Cookie, CookieJar};
use http::header::{COOKIE, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use session_core::{ClientInfo, CookieAction, IncomingId, Manager, Result};
use tower::{Layer, Service};

use crate::config::CookieConfig;

/// The tower layer: wrap a router (or any HTTP service) with it, and every request gets a lazy
/// [`Session`](session_core::Session) in its extensions (take it with the
/// [`Session`](crate::Session) extractor).
///
/// After the inner service answers, the layer calls
/// [`Session::save`](session_core::Session::save) — which makes no storage call for a session
/// nobody touched — and writes the `Set-Cookie` header its
/// [`CookieAction`] asks for. A failed save replaces the response by an empty
/// `500 Internal Server Error` carrying the error as a [`SaveError`] extension, so the client
/// never gets a cookie for a session that was not stored.
///
/// Cheap to clone; the [`Manager`] is also put in each request's extensions.
#[derive(Clone, Debug)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    manager: Manager,
    config: CookieConfig,
}

impl SessionLayer {
    /// A layer on `manager` with the default [`CookieConfig`] (`Secure`, `HttpOnly`,
    /// `SameSite=Lax`, `Max-Age` following the session, unsigned).
    pub fn new(manager: Manager) -> Self {
        SessionLayer {
            shared: Arc::new(Shared {
                manager,
                config: CookieConfig::default(),
            }),
        }
    }

    /// A layer on `manager` with `config`; [`Error::InvalidInput`](session_core::Error) when
    /// the config does not [`validate`](CookieConfig::validate).
    pub fn with_config(manager: Manager, config: CookieConfig) -> Result<Self> {
        config.validate()?;
        Ok(SessionLayer {
            shared: Arc::new(Shared { manager, config }),
        })
    }

    /// The manager.
    pub fn manager(&self) -> &Manager {
        &self.shared.manager
    }

    /// The cookie config.
    pub fn config(&self) -> &CookieConfig {
        &self.shared.config
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// The error of a failed [`Session::save`](session_core::Session::save), put in the extensions
/// of the `500` response that replaced the handler's, for a logging layer further out.
#[derive(Clone, Debug)]
pub struct SaveError(pub Arc<session_core::Error>);

/// The session cookie a request carried, once verified and parsed.
#[derive(Debug, Default)]
struct Incoming {
    /// What the request brought, handed to the manager as is: no cookie, a well-formed id (it
    /// may still be unknown or expired: the manager decides), or an invalid cookie.
    id: IncomingId,
    /// It was signed with a key other than the first: re-send it signed with the first.
    stale_key: bool,
}

impl Shared {
    /// The first cookie named as configured that verifies and holds a well-formed id
    /// ([`IncomingId::Valid`]). If there is none but a cookie of that name was sent (forged,
    /// unsigned when keys are set, or malformed), [`IncomingId::Invalid`]: it never reaches
    /// storage, the request gets a fresh session, and the save tells the browser to drop the
    /// cookie. A cookie with an empty value counts as none.
    fn read_cookie(&self, headers: &HeaderMap) -> Incoming {
        let name = self.config.name.as_str();
        let candidates = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| Cookie::split_parse(h.to_owned()).filter_map(|c| c.ok()))
            .filter(|c| c.name() == name && !c.value().is_empty());
        let mut invalid = false;
        for cookie in candidates {
            match self
                .verified(cookie)
                .map(|(v, stale)| (IncomingId::parse(&v), stale))
            {
                Some((id @ IncomingId::Valid(_), stale_key)) => return Incoming { id, stale_key },
                _ => invalid = true,
            }
        }
        Incoming {
            id: if invalid {
                IncomingId::Invalid
            } else {
                IncomingId::Absent
            },
            stale_key: false,
        }
    }

    /// The value of `cookie` if its signature verifies with one of the keys (any value when
    /// there are no keys), and whether that key is not the first.
    fn verified(&self, cookie: Cookie<'_>) -> Option<(String, bool)> {
        if self.config.keys.is_empty() {
            return Some((cookie.value().to_owned(), false));
        }
        let cookie = cookie.into_owned();
        let jar = CookieJar::new();
        self.config.keys.iter().enumerate().find_map(|(i, key)| {
            jar.signed(key)
                .verify(cookie.clone())
                .map(|c| (c.value().to_owned(), i > 0))
        })
    }

    /// The client's IP (peer address, or `X-Forwarded-For` behind trusted proxies) and user
    /// agent.
    fn client_info<B>(&self, req: &Request<B>) -> ClientInfo {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical());
        let ip = match self.config.trusted_proxies {
            0 => peer,
            hops => forwarded_ip(req.headers(), hops).or(peer),
        };
        let ua = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok());
        ClientInfo::new(ip, ua)
    }

    /// The `Set-Cookie` value for `action`, if one is to be sent (`stale_key`: the request's
    /// cookie was signed with an old key, so a refresh re-sends it even when not persistent).
    fn set_cookie(&self, action: &CookieAction, stale_key: bool) -> Option<String> {
        let c = &self.config;
        let mut cookie = match action {
            CookieAction::Unchanged => return None,
            CookieAction::Refresh { .. } if !c.persistent && !stale_key => return None,
            CookieAction::Set { id, expires } | CookieAction::Refresh { id, expires } => {
                let mut cookie = Cookie::new(c.name.clone(), id.as_str().to_owned());
                if c.persistent {
                    cookie.set_max_age(max_age(*expires));
                }
                cookie
            }
            CookieAction::Remove => {
                let mut cookie = Cookie::new(c.name.clone(), "");
                cookie.make_removal();
                cookie
            }
        };
        cookie.set_path(c.path.clone());
        if let Some(d) = &c.domain {
            cookie.set_domain(d.clone());
        }
        cookie.set_secure(c.secure);
        cookie.set_http_only(true);
        cookie.set_same_site(c.same_site);
        if let (Some(key), false) = (c.keys.first(), matches!(action, CookieAction::Remove)) {
            let mut jar = CookieJar::new();
            jar.signed_mut(key).add(cookie);
            cookie = jar.get(&c.name)?.clone();
        }
        Some(cookie.to_string())
    }
}

/// Seconds from now to `expires`, at least one (a cookie with `Max-Age=0` is a removal).
fn max_age(expires: SystemTime) -> cookie::time::Duration {
    let secs = expires
        .duration_since(SystemTime::now())
        .map_or(0, |d| d.as_secs());
    cookie::time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX).max(1))
}

/// The `hops`-th address from the right of all `X-Forwarded-For` headers, if there are that
/// many and it parses (a bare IP, or `IP:port`/`[IPv6]:port`).
fn forwarded_ip(headers: &HeaderMap, hops: usize) -> Option<IpAddr> {
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    let entry = entries.len().checked_sub(hops).map(|i| entries[i])?;
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = std::result::Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The clone that was made ready is the one to call; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();

        // the id crosses to the manager once, parsed (or known invalid), never as text
        let Incoming { id, stale_key } = shared.read_cookie(req.headers());
        let client = shared.client_info(&req);
        let session = shared.manager.load_with(id, client);
        req.extensions_mut().insert(session.clone());
        req.extensions_mut().insert(shared.manager.clone());

        Box::pin(async move {
            let mut response = inner.call(req).await?;
            match session.save().await {
                Ok(outcome) => {
                    if let Some(v) = shared.set_cookie(&outcome.cookie, stale_key) {
                        match HeaderValue::from_str(&v) {
                            Ok(v) => {
                                response.headers_mut().append(SET_COOKIE, v);
                            }
                            Err(e) => {
                                let e = session_core::Error::InvalidInput(format!(
                                    "session cookie is not a header value: {e}"
                                ));
                                return Ok(failed(e));
                            }
                        }
                    }
                    Ok(response)
                }
                Err(e) => Ok(failed(e)),
            }
        })
    }
}

/// The response that replaces the handler's when the session could not be saved.
fn failed<B: Default>(e: session_core::Error) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.extensions_mut().insert(SaveError(Arc::new(e)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_hops_from_the_right() {
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 2.2.2.2"),
        );
        h.append("x-forwarded-for", HeaderValue::from_static("3.3.3.3"));
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(forwarded_ip(&h, 1), ip("3.3.3.3"));
        assert_eq!(forwarded_ip(&h, 2), ip("2.2.2.2"));
        assert_eq!(forwarded_ip(&h, 3), ip("1.1.1.1"));
        assert_eq!(forwarded_ip(&h, 4), None, "fewer entries than hops");
        let mut p = HeaderMap::new();
        p.append(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:443, 9.9.9.9:80, junk"),
        );
        assert_eq!(forwarded_ip(&p, 1), None, "unparsable entry");
        assert_eq!(forwarded_ip(&p, 2), ip("9.9.9.9"));
        assert_eq!(forwarded_ip(&p, 3), ip("2001:db8::1"));
        let mut m = HeaderMap::new();
        m.append(
            "x-forwarded-for",
            HeaderValue::from_static("::ffff:10.0.0.1"),
        );
        assert_eq!(
            forwarded_ip(&m, 1),
            ip("10.0.0.1"),
            "v4-mapped made canonical"
        );
    }

    fn shared(keys: Vec<cookie::Key>) -> Shared {
        let store = std::sync::Arc::new(session_memory::MemoryStore::new());
        Shared {
            manager: Manager::new(store, session_core::Config::default()).expect("config"),
            config: CookieConfig {
                keys,
                ..CookieConfig::default()
            },
        }
    }

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).expect("header"));
        }
        h
    }

    fn signed(key: &cookie::Key, value: &str) -> String {
        let mut jar = CookieJar::new();
        jar.signed_mut(key)
            .add(Cookie::new("session_id", value.to_owned()));
        let c = jar.get("session_id").expect("added");
        format!("session_id={}", c.value())
    }

    #[test]
    fn the_cookie_is_read_once_into_absent_valid_or_invalid() {
        let id = session_core::SessionId::generate().expect("rng");
        let good = format!("session_id={id}");
        let plain = shared(Vec::new());
        let read = |s: &Shared, cookies: &[&str]| s.read_cookie(&headers(cookies)).id;
        assert_eq!(read(&plain, &[]), IncomingId::Absent);
        assert_eq!(read(&plain, &["other=1"]), IncomingId::Absent);
        assert_eq!(read(&plain, &["session_id="]), IncomingId::Absent, "empty");
        assert_eq!(read(&plain, &[&good]), IncomingId::Valid(id.clone()));
        for bad in ["session_id=short", "session_id=../../etc/passwd"] {
            assert_eq!(read(&plain, &[bad]), IncomingId::Invalid, "{bad}");
        }
        // a valid cookie wins over an invalid one of the same name, in any order
        assert_eq!(
            read(&plain, &["session_id=short", &good]),
            IncomingId::Valid(id.clone())
        );
        assert_eq!(
            read(&plain, &[&format!("{good}; session_id=short")]),
            IncomingId::Valid(id.clone())
        );

        let old = cookie::Key::derive_from(&[1u8; 32]);
        let new = cookie::Key::derive_from(&[2u8; 32]);
        let keyed = shared(vec![new.clone(), old.clone()]);
        let with_new = signed(&new, id.as_str());
        let with_old = signed(&old, id.as_str());
        let incoming = keyed.read_cookie(&headers(&[&with_new]));
        assert_eq!(incoming.id, IncomingId::Valid(id.clone()));
        assert!(!incoming.stale_key);
        let incoming = keyed.read_cookie(&headers(&[&with_old]));
        assert_eq!(incoming.id, IncomingId::Valid(id.clone()));
        assert!(incoming.stale_key, "signed with the second key");
        // unsigned, signed with an unknown key, or tampered: invalid
        let other = signed(&cookie::Key::derive_from(&[3u8; 32]), id.as_str());
        let mut tampered = with_new.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        for bad in [good.as_str(), &other, &tampered] {
            let incoming = keyed.read_cookie(&headers(&[bad]));
            assert_eq!(incoming.id, IncomingId::Invalid, "{bad}");
            assert!(!incoming.stale_key);
        }
        // a well-signed value that is not an id is invalid too
        assert_eq!(read(&keyed, &[&signed(&new, "nope")]), IncomingId::Invalid);
    }

    #[test]
    fn max_age_is_at_least_one_second() {
        let past = SystemTime::UNIX_EPOCH;
        assert_eq!(max_age(past).whole_seconds(), 1);
        let later = SystemTime::now() + std::time::Duration::from_secs(3601);
        let secs = max_age(later).whole_seconds();
        assert!((3599..=3601).contains(&secs), "{secs}");
    }
}
