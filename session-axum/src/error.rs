//! [`Error`]: a session error as an axum response, so handlers can use `?` on session calls.

use axum::response::{IntoResponse, Response};
use http::header::RETRY_AFTER;
use http::{HeaderValue, StatusCode};
use session_http::{Answer, log_error};

session_http::__session_error_wrapper! {
/// A failed session call in a handler, as an axum response: handlers return
/// `Result<_, session_axum::Error>` and use `?` on every session call.
///
/// ```
/// use session_axum::{Error, Session};
///
/// async fn visits(session: Session) -> Result<String, Error> {
///     let n = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
///     session.set("visits", &n).await?;
///     Ok(format!("visit number {n}"))
/// }
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(visits));
/// ```
///
/// When it becomes a response it logs its cause, once, with `tracing` (inside the layer's
/// `session.request` span, which tags the session; the core's error messages never hold an id):
///
/// | error | level | default response ([`DefaultResponse`]) |
/// |---|---|---|
/// | [`Backend`](session_core::Error::Backend), [`Corrupt`](session_core::Error::Corrupt), [`Encode`](session_core::Error::Encode), [`Decode`](session_core::Error::Decode), [`Unsupported`](session_core::Error::Unsupported), [`InvalidInput`](session_core::Error::InvalidInput) | `ERROR` | `500`, `session error` |
/// | [`Locked`](session_core::Error::Locked) | `WARN` | `503`, `Retry-After: 1`, `session busy, retry` |
/// | [`InvalidId`](session_core::Error::InvalidId) (an id from the client, given to a manager call) | `INFO` | `400`, `invalid session id` |
///
/// The body never holds the cause (it is in the log). To answer differently, name your own
/// [`ErrorResponse`] as the type parameter: `session_axum::Error<MyResponse>`.
pub struct Error<R = DefaultResponse>;
}

/// How an [`Error`] answers: implement it on a type of yours and use `Error<YourType>` (a type
/// alias keeps handler signatures short).
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use axum::http::StatusCode;
/// use session_axum::{ErrorResponse, Session};
///
/// /// Every session failure is a 503 with a JSON body.
/// struct JsonUnavailable;
///
/// impl ErrorResponse for JsonUnavailable {
///     fn response(error: &session_core::Error) -> Response {
///         let body = format!(r#"{{"error":"session","kind":"{}"}}"#, error.kind());
///         (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
///     }
/// }
///
/// type AppError = session_axum::Error<JsonUnavailable>;
///
/// async fn whoami(session: Session) -> Result<String, AppError> {
///     Ok(session.user().await?.unwrap_or_else(|| "anonymous".into()))
/// }
///
/// let error = AppError::from(session_core::Error::Locked("busy".into()));
/// assert_eq!(error.into_response().status(), StatusCode::SERVICE_UNAVAILABLE);
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::get(whoami));
/// ```
pub trait ErrorResponse {
    /// The response for `error` (already logged by [`Error`]).
    fn response(error: &session_core::Error) -> Response;
}

/// The default [`ErrorResponse`]: `400` for an invalid id, `503` with `Retry-After: 1` for a
/// session locked by another request, `500` for everything else; a short plain-text body
/// without the cause.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultResponse;

impl ErrorResponse for DefaultResponse {
    fn response(error: &session_core::Error) -> Response {
        let answer = Answer::for_error(error);
        let status =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, answer.body).into_response();
        if let Some(after) = answer.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(after));
        }
        response
    }
}

impl<R: ErrorResponse> IntoResponse for Error<R> {
    fn into_response(self) -> Response {
        log_error(&self.source);
        R::response(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_response_by_kind() {
        let status = |e| Error::<DefaultResponse>::from(e).into_response().status();
        assert_eq!(
            status(session_core::Error::InvalidId("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(session_core::Error::backend("redis", "down")),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let locked = Error::<DefaultResponse>::from(session_core::Error::Locked("x".into()));
        assert_eq!(
            locked.to_string(),
            "session is locked by another request: x"
        );
        let res = locked.into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            res.headers().get(RETRY_AFTER).map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }
}
