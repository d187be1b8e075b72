#![doc = include_str!("../README.md")]

mod error;
mod middleware;

pub use error::{DefaultResponse, Error, ErrorResponse};
pub use middleware::{SaveError, SessionMiddleware, SessionService};

/// The handler's session: [`session_core::Session`] itself, an actix-web extractor through
/// session-core's `actix` feature (which this crate turns on). Taking it costs nothing: the
/// session loads on its first read or write and the middleware saves it after the handler.
/// On a route without [`SessionMiddleware`] it fails with [`MissingSessionMiddleware`], a 500.
/// `web::ReqData<Manager>` gives the [`Manager`](session_core::Manager).
pub use session_core::{MissingSessionMiddleware, Session};
/// Re-exported from `session-http` (where the cookie and header logic lives, shared with
/// session-axum): the cookie and header settings, the protection, the key, `SameSite`, the
/// id tagger for logs and the name of the request span.
pub use session_http::{CookieConfig, IdTagger, Key, Protection, SPAN_NAME, SameSite};
