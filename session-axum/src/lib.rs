#![doc = include_str!("../README.md")]

mod error;
mod extract;
mod layer;

pub use error::{DefaultResponse, Error, ErrorResponse};
pub use extract::{MissingSessionLayer, Session};
pub use layer::{SaveError, SessionLayer, SessionService};

/// Re-exported from `session-layers` (through `session-http`): the keyed hash that turns
/// session ids into short tags for logs ([`SessionLayer::with_tagger`]).
pub use session_http::IdTagger;
/// Re-exported from the `cookie` crate (through `session-http`): the `SameSite` attribute.
pub use session_http::SameSite;
/// Re-exported from `session-http` (where the cookie and header logic lives, shared with
/// session-actix): the cookie and header settings, the protection, the key, and the name of
/// the request span.
pub use session_http::{CookieConfig, Key, Protection, SPAN_NAME};
