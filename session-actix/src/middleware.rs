//! The actix-web [`Transform`] and [`Service`] that load a session per request and save it
//! before the response goes out.

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue, USER_AGENT};
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use session_core::{Error, Manager, Result};
use session_http::{CookieConfig, HttpSessions, IdTagger, RequestSession};
use tracing::Instrument;

use crate::error::{DefaultResponse, ErrorResponse};

/// The actix-web middleware: `App::new().wrap(SessionMiddleware::with_config(...)?)` gives every
/// request a lazy [`Session`](session_core::Session) (take it as a handler argument, see
/// [`Session`](crate::Session)), and the [`Manager`] in the request extensions.
///
/// After the handler answers, the middleware calls
/// [`Session::save`](session_core::Session::save) — which makes no storage call for a session
/// nobody touched and writes only the changed keys of one that changed — and writes the
/// `Set-Cookie` header (or the id header, see [`CookieConfig::header`]) its
/// [`CookieAction`](session_core::CookieAction) asks for. A failed save is logged at `ERROR`
/// with its cause and replaces the response by an empty `500 Internal Server Error` whose
/// [`error`](actix_web::HttpResponse::error) is a [`SaveError`], so the client never gets a
/// cookie for a session that was not stored.
///
/// Each request runs (handler included, so the lazy load is inside it) in an `INFO` span named
/// [`SPAN_NAME`](crate::SPAN_NAME) (`"session.request"`), with the same fields as
/// session-axum's: `session` (a short keyed tag, never the id), `incoming`, `issued`, `action`
/// and `outcome`.
///
/// Cheap to clone, `Send` (the `HttpServer` factory closure captures it).
#[derive(Clone, Debug)]
pub struct SessionMiddleware {
    shared: Arc<Shared>,
}

#[derive(Clone, Debug)]
struct Shared {
    sessions: HttpSessions,
    /// Load every session with its lease lock ([`SessionMiddleware::locked`]).
    locked: bool,
}

impl SessionMiddleware {
    /// A middleware on `manager` with the default [`CookieConfig`] (`Secure`, `HttpOnly`,
    /// `SameSite=Lax`, `Max-Age` following the session, unsigned).
    pub fn new(manager: Manager) -> Self {
        Self::from_sessions(HttpSessions::new(manager))
    }

    /// A middleware on `manager` with `config`; [`Error::InvalidInput`] when the config does
    /// not [`validate`](CookieConfig::validate).
    pub fn with_config(manager: Manager, config: CookieConfig) -> Result<Self> {
        Ok(Self::from_sessions(HttpSessions::with_config(
            manager, config,
        )?))
    }

    fn from_sessions(sessions: HttpSessions) -> Self {
        SessionMiddleware {
            shared: Arc::new(Shared {
                sessions,
                locked: false,
            }),
        }
    }

    fn map(self, f: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Shared::clone(&self.shared);
        f(&mut shared);
        SessionMiddleware {
            shared: Arc::new(shared),
        }
    }

    /// The middleware, tagging session ids in its logs with `tagger` instead of a tagger of
    /// its own: give it the tagger of your storage `TracingLayer` (session-layers) and the tags
    /// of one session match in both.
    pub fn with_tagger(self, tagger: IdTagger) -> Self {
        self.map(|s| s.sessions = s.sessions.clone().with_tagger(tagger))
    }

    /// The middleware, loading every request's session at once with its lease lock
    /// ([`Manager::load_locked`], CodeIgniter's locking): concurrent requests on one session
    /// then run one after the other, and the save releases the lock. The price: every request
    /// that carries an id makes a `try_lock`, a `load` and an `unlock`, even one whose handler
    /// never touches the session (so scope it to the routes that need it). A request that
    /// cannot get the lock within [`LockPolicy::wait`](session_core::LockPolicy) is answered
    /// `503` with `Retry-After: 1`, logged at `WARN`.
    ///
    /// [`Error::Unsupported`] when the store has no lock (the
    /// [`lock`](session_core::Capabilities::lock) capability).
    pub fn locked(self) -> Result<Self> {
        let store = self.shared.sessions.manager().store();
        if !store.capabilities().lock {
            return Err(Error::Unsupported {
                driver: store.name(),
                operation: "lock (SessionMiddleware::locked)",
            });
        }
        Ok(self.map(|s| s.locked = true))
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

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<std::result::Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            service: Rc::new(service),
            shared: self.shared.clone(),
        }))
    }
}

/// The service made by [`SessionMiddleware`] around the app's service.
#[derive(Debug)]
pub struct SessionService<S> {
    service: Rc<S>,
    shared: Arc<Shared>,
}

/// The error of a failed [`Session::save`](session_core::Session::save): the
/// [`error`](actix_web::HttpResponse::error) of the empty `500` that replaced the handler's
/// response, for a logging middleware further out (the session middleware has logged it
/// already).
#[derive(Clone, Debug)]
pub struct SaveError(pub Arc<Error>);

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "session save failed: {}", self.0)
    }
}

impl ResponseError for SaveError {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    /// An empty `500` (the cause is in the log, not the body).
    fn error_response(&self) -> HttpResponse {
        HttpResponse::new(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The future of [`SessionService`].
type Answer<B> = Pin<
    Box<dyn Future<Output = std::result::Result<ServiceResponse<EitherBody<B>>, actix_web::Error>>>,
>;

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Answer<B>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = self.service.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            let sessions = &shared.sessions;
            let headers = req.headers();
            let client = sessions.client_info(
                req.peer_addr().map(|a| a.ip()),
                headers.get_all("x-forwarded-for").map(|v| v.as_bytes()),
                headers.get(USER_AGENT).map(|v| v.as_bytes()),
            );
            let values = headers
                .get_all(sessions.request_header())
                .map(|v| v.as_bytes());
            let request = if shared.locked {
                match sessions.start_locked(values, client).await {
                    Ok(request) => request,
                    Err((e, _span)) => {
                        // logged by start_locked, in the request's span
                        let answer = DefaultResponse::response(&e);
                        return Ok(req.into_response(answer).map_into_right_body());
                    }
                }
            } else {
                sessions.start(values, client)
            };
            req.extensions_mut().insert(request.session().clone());
            req.extensions_mut().insert(sessions.manager().clone());
            let span = request.span().clone();
            match service.call(req).instrument(span).await {
                Ok(response) => finish(request, response.map_into_left_body()).await,
                Err(e) => {
                    // (handlers' and extractors' errors arrive as responses; only a middleware
                    // further in returns one) the session is still saved, so that a lock is
                    // released, and the error goes on to actix-web, which answers it
                    let _saved = request.finish(|_, _| Ok(())).await;
                    Err(e)
                }
            }
        })
    }
}

/// Saves the session and adds its header to `response`, or replaces `response` by the empty
/// `500` of a failed save.
async fn finish<B: MessageBody + 'static>(
    request: RequestSession,
    mut response: ServiceResponse<EitherBody<B>>,
) -> std::result::Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let sent = request
        .finish(|name, value| {
            let name = HeaderName::try_from(name).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| format!("session id is not a header value: {e}"))?;
            Ok((name, value))
        })
        .await;
    match sent {
        Ok(None) => Ok(response),
        Ok(Some((name, value))) => {
            response.headers_mut().append(name, value);
            Ok(response)
        }
        Err(e) => {
            // logged by finish; the handler's response (headers included) is dropped
            let (http, _) = response.into_parts();
            let failed = HttpResponse::from_error(SaveError(Arc::new(e)));
            Ok(ServiceResponse::new(http, failed).map_into_right_body())
        }
    }
}
