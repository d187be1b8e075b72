//! [`Error`]: a session error as an actix-web response, so handlers can use `?` on session
//! calls.

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, ResponseError};
use session_http::{Answer, log_error};

session_http::__session_error_wrapper! {
/// A failed session call in a handler, as an actix-web response: handlers return
/// `Result<_, session_actix::Error>` and use `?` on every session call.
///
/// ```
/// use session_actix::{Error, Session};
///
/// async fn visits(session: Session) -> Result<String, Error> {
///     let n = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
///     session.set("visits", &n).await?;
///     Ok(format!("visit number {n}"))
/// }
/// # let _ = actix_web::App::new().route("/", actix_web::web::get().to(visits));
/// ```
///
/// When actix-web makes its response ([`ResponseError::error_response`], once per error) it
/// logs its cause with `tracing`, inside the middleware's `session.request` span (the core's
/// messages never hold an id): [`InvalidId`](session_core::Error::InvalidId) at `INFO`
/// (`400`, `invalid session id`), [`Locked`](session_core::Error::Locked) at `WARN` (`503`,
/// `Retry-After: 1`, `session busy, retry`), anything else at `ERROR` (`500`,
/// `session error`). The body never holds the cause. To answer differently, name your own
/// [`ErrorResponse`] as the type parameter: `session_actix::Error<MyResponse>`.
pub struct Error<R = DefaultResponse>;
}

/// How an [`Error`] answers: implement it on a type of yours and use `Error<YourType>` (a type
/// alias keeps handler signatures short).
///
/// ```
/// use actix_web::{HttpResponse, ResponseError};
/// use session_actix::ErrorResponse;
///
/// /// Every session failure is a 503 with a JSON body.
/// struct JsonUnavailable;
///
/// impl ErrorResponse for JsonUnavailable {
///     fn response(error: &session_core::Error) -> HttpResponse {
///         HttpResponse::ServiceUnavailable()
///             .content_type("application/json")
///             .body(format!(r#"{{"error":"session","kind":"{}"}}"#, error.kind()))
///     }
/// }
///
/// type AppError = session_actix::Error<JsonUnavailable>;
///
/// let error = AppError::from(session_core::Error::backend("redis", "down"));
/// assert_eq!(error.error_response().status(), 503);
/// ```
pub trait ErrorResponse {
    /// The response for `error` (already logged by [`Error`]).
    fn response(error: &session_core::Error) -> HttpResponse;
}

/// The default [`ErrorResponse`] (session-http's [`Answer`]): `400` for an invalid id, `503`
/// with `Retry-After: 1` for a session locked by another request, `500` for everything else; a
/// short plain-text body without the cause.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultResponse;

impl ErrorResponse for DefaultResponse {
    fn response(error: &session_core::Error) -> HttpResponse {
        let answer = Answer::for_error(error);
        let status =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = HttpResponse::build(status);
        if let Some(after) = answer.retry_after {
            response.insert_header((RETRY_AFTER, after));
        }
        response
            .content_type("text/plain; charset=utf-8")
            .body(answer.body)
    }
}

impl<R: ErrorResponse> ResponseError for Error<R> {
    /// The status of `R`'s response (nothing is logged).
    fn status_code(&self) -> StatusCode {
        R::response(&self.source).status()
    }

    /// Logs the cause (see [`Error`]) and answers with `R`'s response.
    fn error_response(&self) -> HttpResponse {
        log_error(&self.source);
        R::response(&self.source)
    }
}
