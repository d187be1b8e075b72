//! A session error in a handler, framework-neutral: how it is logged ([`log_error`]) and how
//! it is answered by default ([`Answer`]). Each framework's `Error` type turns these into its
//! own response.

use session_core::Error;

/// How a session error is answered by default: `400` for an invalid id, `503` with
/// `Retry-After: 1` for a session locked by another request, `500` for everything else; a short
/// plain-text body without the cause (the cause is in the log, see [`log_error`]).
///
/// ```
/// use session_http::Answer;
///
/// let busy = Answer::for_error(&session_core::Error::Locked("held".into()));
/// assert_eq!((busy.status, busy.retry_after, busy.body), (503, Some("1"), "session busy, retry"));
/// let down = Answer::for_error(&session_core::Error::backend("redis", "connection refused"));
/// assert_eq!((down.status, down.body), (500, "session error"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` header's value, if one is to be sent.
    pub retry_after: Option<&'static str>,
    /// The plain-text body.
    pub body: &'static str,
}

impl Answer {
    /// The default answer to `error`.
    pub fn for_error(error: &Error) -> Answer {
        let (status, retry_after, body) = match error {
            Error::InvalidId(_) => (400, None, "invalid session id"),
            Error::Locked(_) => (503, Some("1"), "session busy, retry"),
            _ => (500, None, "session error"),
        };
        Answer {
            status,
            retry_after,
            body,
        }
    }
}

/// Logs `e` with `tracing` at the level its cause deserves: a client's bad id is `INFO`,
/// contention `WARN`, anything else (the server's or the store's fault) `ERROR`; with its
/// [`kind`](Error::kind) and message (the core's messages never hold an id). Call it once per
/// error, inside the request's span.
pub fn log_error(e: &Error) {
    let kind = e.kind();
    match e {
        Error::InvalidId(_) => {
            tracing::info!(kind, error = %e, "session call refused an invalid id");
        }
        Error::Locked(_) => {
            tracing::warn!(kind, error = %e, "session call failed: locked");
        }
        _ => tracing::error!(kind, error = %e, "session call failed"),
    }
}
