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
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use session_core::{ClientInfo, CookieAction, IncomingId, Manager, Result, SessionId};
use session_layers::IdTagger;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;

use crate::config::{CookieConfig, Protection};

/// The name of the span the layer opens around each request's session work.
pub const SPAN_NAME: &str = "session.request";

/// The tower layer: wrap a router (or any HTTP service) with it, and every request gets a lazy
/// [`Session`](session_core::Session) in its extensions (take it with the
/// [`Session`](crate::Session) extractor).
///
/// After the inner service answers, the layer calls
/// [`Session::save`](session_core::Session::save) — which makes no storage call for a session
/// nobody touched — and writes the `Set-Cookie` header (or the id header, see
/// [`CookieConfig::header`]) its [`CookieAction`] asks for. A failed save is logged at `ERROR`
/// and replaces the response by an empty `500 Internal Server Error` carrying the error as a
/// [`SaveError`] extension, so the client never gets a cookie for a session that was not
/// stored.
///
/// Each request runs (handler included, so the lazy load is inside it) in an `INFO` span named
/// [`SPAN_NAME`] (`"session.request"`) with the fields `session` (a short keyed tag of the
/// incoming id, from an [`IdTagger`]; never the id), `incoming` (`"absent"`, `"valid"` or
/// `"invalid"`), `issued` (the tag of a new id the response carries), `action` (`"unchanged"`,
/// `"set"`, `"refresh"`, `"remove"`) and `outcome` (`"ok"` or the error's
/// [`kind`](session_core::Error::kind)).
///
/// Cheap to clone; the [`Manager`] is also put in each request's extensions.
#[derive(Clone, Debug)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

#[derive(Clone, Debug)]
struct Shared {
    manager: Manager,
    config: CookieConfig,
    /// Where the id travels: `None` for the cookie, else this header.
    header: Option<HeaderName>,
    tagger: IdTagger,
}

impl SessionLayer {
    /// A layer on `manager` with the default [`CookieConfig`] (`Secure`, `HttpOnly`,
    /// `SameSite=Lax`, `Max-Age` following the session, unsigned).
    pub fn new(manager: Manager) -> Self {
        SessionLayer {
            shared: Arc::new(Shared {
                manager,
                config: CookieConfig::default(),
                header: None,
                tagger: IdTagger::new(),
            }),
        }
    }

    /// A layer on `manager` with `config`; [`Error::InvalidInput`](session_core::Error) when
    /// the config does not [`validate`](CookieConfig::validate).
    pub fn with_config(manager: Manager, config: CookieConfig) -> Result<Self> {
        config.validate()?;
        let header = config.header_name()?;
        Ok(SessionLayer {
            shared: Arc::new(Shared {
                manager,
                config,
                header,
                tagger: IdTagger::new(),
            }),
        })
    }

    /// The layer, tagging session ids in its logs with `tagger` instead of a tagger of its
    /// own: give it the tagger of your storage
    /// [`TracingLayer`](session_layers::TracingLayer) and the tags of one session match in
    /// both.
    pub fn with_tagger(self, tagger: IdTagger) -> Self {
        let mut shared = Shared::clone(&self.shared);
        shared.tagger = tagger;
        SessionLayer {
            shared: Arc::new(shared),
        }
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
/// of the `500` response that replaced the handler's, for a logging layer further out (the
/// session layer has logged it already).
#[derive(Clone, Debug)]
pub struct SaveError(pub Arc<session_core::Error>);

/// The session id a request carried, once verified and parsed.
#[derive(Debug, Default)]
struct Incoming {
    /// What the request brought, handed to the manager as is: no id, a well-formed id (it may
    /// still be unknown or expired: the manager decides), or an invalid one.
    id: IncomingId,
    /// It was protected with a key other than the first: re-send it protected with the first.
    stale_key: bool,
}

impl Shared {
    /// The name the protection binds the value to: the cookie's, or the header's.
    fn value_name(&self) -> &str {
        self.header
            .as_ref()
            .map_or(self.config.name.as_str(), HeaderName::as_str)
    }

    /// The first value the request carried (cookies named as configured, or values of the id
    /// header) that verifies or decrypts and holds a well-formed id ([`IncomingId::Valid`]).
    /// If there is none but a value was sent (forged, tampered, unprotected when keys are set,
    /// or malformed), [`IncomingId::Invalid`]: it never reaches storage, the request gets a
    /// fresh session, and the save tells the client to drop it. An empty value counts as none.
    fn read_incoming(&self, headers: &HeaderMap) -> Incoming {
        let values: Vec<String> = match &self.header {
            Some(header) => headers
                .get_all(header)
                .iter()
                .filter_map(|h| h.to_str().ok())
                // a proxy may fold repeated headers into one, comma-separated (RFC 9110
                // 5.3); neither ids nor base64 hold a comma
                .flat_map(|h| h.split(','))
                .map(|v| v.trim().to_owned())
                .collect(),
            None => {
                let name = self.config.name.as_str();
                headers
                    .get_all(COOKIE)
                    .iter()
                    .filter_map(|h| h.to_str().ok())
                    .flat_map(|h| Cookie::split_parse(h.to_owned()).filter_map(|c| c.ok()))
                    .filter(|c| c.name() == name)
                    .map(|c| c.value().to_owned())
                    .collect()
            }
        };
        let mut invalid = false;
        for value in values.iter().filter(|v| !v.is_empty()) {
            match self
                .open(value)
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

    /// The id text in `value` if it verifies (signed) or decrypts (private) with one of the
    /// keys (the value as is when there are no keys), and whether that key is not the first.
    fn open(&self, value: &str) -> Option<(String, bool)> {
        let keys = &self.config.keys;
        if keys.is_empty() {
            return Some((value.to_owned(), false));
        }
        let name = self.value_name();
        let jar = CookieJar::new();
        keys.iter().enumerate().find_map(|(i, key)| {
            let cookie = Cookie::new(name.to_owned(), value.to_owned());
            let key = key.cookie_key();
            let opened = match self.config.protection {
                Protection::Signed => jar.signed(key).verify(cookie),
                Protection::Private => jar.private(key).decrypt(cookie),
            };
            opened.map(|c| (c.value().to_owned(), i > 0))
        })
    }

    /// `id` protected with the first key (signed or encrypted), or bare when there are none.
    fn seal(&self, id: &SessionId) -> Option<String> {
        let Some(key) = self.config.keys.first() else {
            return Some(id.as_str().to_owned());
        };
        let name = self.value_name().to_owned();
        let cookie = Cookie::new(name.clone(), id.as_str().to_owned());
        let mut jar = CookieJar::new();
        match self.config.protection {
            Protection::Signed => jar.signed_mut(key.cookie_key()).add(cookie),
            Protection::Private => jar.private_mut(key.cookie_key()).add(cookie),
        }
        jar.get(&name).map(|c| c.value().to_owned())
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

    /// The header to send for `action`, if any (`stale_key`: the request's value was protected
    /// with an old key, so a refresh re-sends it even when the cookie is not persistent, or the
    /// id travels in a header).
    fn outgoing(
        &self,
        action: &CookieAction,
        stale_key: bool,
    ) -> Option<std::result::Result<(HeaderName, HeaderValue), String>> {
        let (name, value) = match &self.header {
            Some(header) => (header.clone(), self.header_value(action, stale_key)?),
            None => (SET_COOKIE, self.set_cookie(action, stale_key)?),
        };
        Some(match value {
            Ok(v) => HeaderValue::from_str(&v)
                .map(|v| (name, v))
                .map_err(|e| format!("session id is not a header value: {e}")),
            Err(e) => Err(e),
        })
    }

    /// The id header's value for `action`, if one is to be sent: a new id, a re-issue under
    /// the first key, or empty for a removal. A header client is not told of a slid expiry.
    fn header_value(
        &self,
        action: &CookieAction,
        stale_key: bool,
    ) -> Option<std::result::Result<String, String>> {
        match action {
            CookieAction::Unchanged => None,
            CookieAction::Refresh { .. } if !stale_key => None,
            CookieAction::Set { id, .. } | CookieAction::Refresh { id, .. } => Some(
                self.seal(id)
                    .ok_or_else(|| "could not seal the id".to_owned()),
            ),
            CookieAction::Remove => Some(Ok(String::new())),
        }
    }

    /// The `Set-Cookie` value for `action`, if one is to be sent (`stale_key`: the request's
    /// cookie was protected with an old key, so a refresh re-sends it even when not
    /// persistent).
    fn set_cookie(
        &self,
        action: &CookieAction,
        stale_key: bool,
    ) -> Option<std::result::Result<String, String>> {
        let c = &self.config;
        let mut cookie = match action {
            CookieAction::Unchanged => return None,
            CookieAction::Refresh { .. } if !c.persistent && !stale_key => return None,
            CookieAction::Set { id, expires } | CookieAction::Refresh { id, expires } => {
                let Some(value) = self.seal(id) else {
                    return Some(Err("could not seal the id".to_owned()));
                };
                let mut cookie = Cookie::new(c.name.clone(), value);
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
        Some(Ok(cookie.to_string()))
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
        let Incoming { id, stale_key } = shared.read_incoming(req.headers());
        let span = tracing::info_span!(
            "session.request",
            session = Empty,
            incoming = incoming_kind(&id),
            issued = Empty,
            action = Empty,
            outcome = Empty,
        );
        // The tag costs a hash and a string: only for a span someone listens to.
        if let Some(valid) = id.id().filter(|_| !span.is_disabled()) {
            span.record("session", shared.tagger.tag(valid));
        }
        if id.is_invalid() {
            tracing::debug!(
                parent: &span,
                "refused a session id that is malformed or does not verify; a fresh session"
            );
        }
        let client = shared.client_info(&req);
        let session = shared.manager.load_with(id, client);
        req.extensions_mut().insert(session.clone());
        req.extensions_mut().insert(shared.manager.clone());

        let record = span.clone();
        let work = async move {
            let span = record;
            let mut response = inner.call(req).await?;
            let outcome = match session.save().await {
                Ok(outcome) => outcome,
                Err(e) => {
                    let tag = session.id().await.map(|id| shared.tagger.tag(&id));
                    span.record("outcome", e.kind());
                    tracing::error!(
                        session = tag.as_deref().unwrap_or("-"),
                        kind = e.kind(),
                        error = %e,
                        "session save failed; answering 500"
                    );
                    return Ok(failed(e));
                }
            };
            span.record("action", action_kind(&outcome.cookie));
            if let (CookieAction::Set { id, .. }, false) = (&outcome.cookie, span.is_disabled()) {
                span.record("issued", shared.tagger.tag(id));
            }
            match shared.outgoing(&outcome.cookie, stale_key) {
                None => {}
                Some(Ok((name, value))) => {
                    response.headers_mut().append(name, value);
                }
                Some(Err(e)) => {
                    let e = session_core::Error::InvalidInput(e);
                    span.record("outcome", e.kind());
                    tracing::error!(error = %e, "could not write the session id; answering 500");
                    return Ok(failed(e));
                }
            }
            span.record("outcome", "ok");
            Ok(response)
        };
        Box::pin(work.instrument(span))
    }
}

/// The `incoming` field of the span.
fn incoming_kind(id: &IncomingId) -> &'static str {
    match id {
        IncomingId::Absent => "absent",
        IncomingId::Valid(_) => "valid",
        IncomingId::Invalid => "invalid",
    }
}

/// The `action` field of the span.
fn action_kind(action: &CookieAction) -> &'static str {
    match action {
        CookieAction::Unchanged => "unchanged",
        CookieAction::Set { .. } => "set",
        CookieAction::Refresh { .. } => "refresh",
        CookieAction::Remove => "remove",
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
    use crate::Key;

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

    fn shared(keys: Vec<Key>) -> Shared {
        let store = std::sync::Arc::new(session_memory::MemoryStore::new());
        Shared {
            manager: Manager::new(store, session_core::Config::default()).expect("config"),
            config: CookieConfig {
                keys,
                ..CookieConfig::default()
            },
            header: None,
            tagger: IdTagger::new(),
        }
    }

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(COOKIE, HeaderValue::from_str(c).expect("header"));
        }
        h
    }

    fn key(byte: u8) -> Key {
        Key::try_from_secret(&[byte; 32]).expect("32 bytes")
    }

    fn signed(key: &Key, value: &str) -> String {
        let mut jar = CookieJar::new();
        jar.signed_mut(key.cookie_key())
            .add(Cookie::new("session_id", value.to_owned()));
        let c = jar.get("session_id").expect("added");
        format!("session_id={}", c.value())
    }

    #[test]
    fn the_cookie_is_read_once_into_absent_valid_or_invalid() {
        let id = session_core::SessionId::generate().expect("rng");
        let good = format!("session_id={id}");
        let plain = shared(Vec::new());
        let read = |s: &Shared, cookies: &[&str]| s.read_incoming(&headers(cookies)).id;
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

        let old = key(1);
        let new = key(2);
        let keyed = shared(vec![new.clone(), old.clone()]);
        let with_new = signed(&new, id.as_str());
        let with_old = signed(&old, id.as_str());
        let incoming = keyed.read_incoming(&headers(&[&with_new]));
        assert_eq!(incoming.id, IncomingId::Valid(id.clone()));
        assert!(!incoming.stale_key);
        let incoming = keyed.read_incoming(&headers(&[&with_old]));
        assert_eq!(incoming.id, IncomingId::Valid(id.clone()));
        assert!(incoming.stale_key, "signed with the second key");
        // unsigned, signed with an unknown key, or tampered: invalid
        let other = signed(&key(3), id.as_str());
        let mut tampered = with_new.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        for bad in [good.as_str(), &other, &tampered] {
            let incoming = keyed.read_incoming(&headers(&[bad]));
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
