//! The tower [`Layer`] and [`Service`] that load a session per request and save it before the
//! response goes out.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use http::header::{COOKIE, SET_COOKIE, USER_AGENT};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use session_core::{Manager, Result};
use session_http::{CookieConfig, HttpSessions, IdTagger};
use tower::{Layer, Service};
use tracing::Instrument;

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
/// [`SPAN_NAME`](crate::SPAN_NAME) (`"session.request"`) with the fields `session` (a short keyed tag of the
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
    sessions: HttpSessions,
    /// Where the id travels, parsed once: the `Cookie` and `Set-Cookie` headers, or this one
    /// header both ways.
    request_header: HeaderName,
    response_header: HeaderName,
}

impl Shared {
    fn new(sessions: HttpSessions) -> Result<Self> {
        let name = |h: &str| {
            HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                session_core::Error::InvalidInput(format!("{h:?} is not a header name"))
            })
        };
        let (request_header, response_header) = match sessions.config().header {
            None => (COOKIE, SET_COOKIE),
            Some(_) => (
                name(sessions.request_header())?,
                name(sessions.response_header())?,
            ),
        };
        Ok(Shared {
            sessions,
            request_header,
            response_header,
        })
    }
}

impl SessionLayer {
    /// A layer on `manager` with the default [`CookieConfig`] (`Secure`, `HttpOnly`,
    /// `SameSite=Lax`, `Max-Age` following the session, unsigned).
    pub fn new(manager: Manager) -> Self {
        SessionLayer {
            shared: Arc::new(Shared {
                sessions: HttpSessions::new(manager),
                request_header: COOKIE,
                response_header: SET_COOKIE,
            }),
        }
    }

    /// A layer on `manager` with `config`; [`Error::InvalidInput`](session_core::Error) when
    /// the config does not [`validate`](CookieConfig::validate).
    pub fn with_config(manager: Manager, config: CookieConfig) -> Result<Self> {
        let sessions = HttpSessions::with_config(manager, config)?;
        Ok(SessionLayer {
            shared: Arc::new(Shared::new(sessions)?),
        })
    }

    /// The layer, tagging session ids in its logs with `tagger` instead of a tagger of its
    /// own: give it the tagger of your storage
    /// [`TracingLayer`](session_layers::TracingLayer) and the tags of one session match in
    /// both.
    pub fn with_tagger(self, tagger: IdTagger) -> Self {
        let mut shared = Shared::clone(&self.shared);
        shared.sessions = shared.sessions.with_tagger(tagger);
        SessionLayer {
            shared: Arc::new(shared),
        }
    }

    /// The manager.
    pub fn manager(&self) -> &Manager {
        self.shared.sessions.manager()
    }

    /// The cookie config.
    pub fn config(&self) -> &CookieConfig {
        self.shared.sessions.config()
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
        // borrowed for the set-up; the future takes only what it needs (no share count of the
        // layer's state written per request)
        let shared = &*self.shared;
        let sessions = &shared.sessions;
        let headers = req.headers();
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let client = sessions.client_info(
            peer,
            headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.as_bytes()),
            headers.get(USER_AGENT).map(|v| v.as_bytes()),
        );
        let request = sessions.start(
            headers
                .get_all(&shared.request_header)
                .iter()
                .map(|v| v.as_bytes()),
            client,
        );
        req.extensions_mut().insert(request.session().clone());
        req.extensions_mut().insert(sessions.manager().clone());

        let span = request.span().clone();
        let response_header = shared.response_header.clone();
        let work = async move {
            let mut response = inner.call(req).await?;
            let sent = request
                .finish(|_, value| {
                    HeaderValue::from_str(value)
                        .map_err(|e| format!("session id is not a header value: {e}"))
                })
                .await;
            match sent {
                Ok(None) => {}
                Ok(Some(value)) => {
                    response.headers_mut().append(response_header, value);
                }
                Err(e) => return Ok(failed(e)),
            }
            Ok(response)
        };
        Box::pin(work.instrument(span))
    }
}

/// The response that replaces the handler's when the session could not be saved.
fn failed<B: Default>(e: session_core::Error) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.extensions_mut().insert(SaveError(Arc::new(e)));
    response
}
