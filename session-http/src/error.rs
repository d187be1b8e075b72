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

/// Defines a framework crate's `Error<R = Default>` wrapper of a [`session_core::Error`] with
/// everything that does not depend on the framework: the struct (a private `source` and a
/// `PhantomData` of the responder `R`), `new`, `inner`, `into_inner`, `From<session_core::Error>`,
/// `Debug`, `Display` and `std::error::Error`. The framework crate adds its response trait's
/// impl (a foreign trait on a foreign type would break the orphan rule, hence a macro rather
/// than a shared type). Not a public API of session-http: used by session-axum and
/// session-actix.
#[doc(hidden)]
#[macro_export]
macro_rules! __session_error_wrapper {
    ($(#[$meta:meta])* pub struct $name:ident<R = $default:ty>;) => {
        $(#[$meta])*
        pub struct $name<R = $default> {
            source: ::session_core::Error,
            respond: ::std::marker::PhantomData<fn() -> R>,
        }

        impl<R> $name<R> {
            /// The error `source`, answered by `R`.
            pub fn new(source: ::session_core::Error) -> Self {
                $name {
                    source,
                    respond: ::std::marker::PhantomData,
                }
            }

            /// The session error.
            pub fn inner(&self) -> &::session_core::Error {
                &self.source
            }

            /// The session error, taken out (nothing is logged then).
            pub fn into_inner(self) -> ::session_core::Error {
                self.source
            }
        }

        impl<R> ::std::convert::From<::session_core::Error> for $name<R> {
            fn from(source: ::session_core::Error) -> Self {
                $name::new(source)
            }
        }

        impl<R> ::std::fmt::Debug for $name<R> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.source).finish()
            }
        }

        impl<R> ::std::fmt::Display for $name<R> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.source, f)
            }
        }

        impl<R> ::std::error::Error for $name<R> {
            fn source(&self) -> ::std::option::Option<&(dyn ::std::error::Error + 'static)> {
                ::std::option::Option::Some(&self.source)
            }
        }
    };
}
