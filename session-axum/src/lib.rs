#![doc = include_str!("../README.md")]

mod config;
mod error;
mod extract;
mod key;
mod layer;

pub use config::{CookieConfig, Protection};
pub use error::{DefaultResponse, Error, ErrorResponse};
pub use extract::{MissingSessionLayer, Session};
pub use key::Key;
pub use layer::{SPAN_NAME, SaveError, SessionLayer, SessionService};

/// Re-exported from the `cookie` crate: the `SameSite` attribute.
pub use cookie::SameSite;
/// Re-exported from `session-layers`: the keyed hash that turns session ids into short tags
/// for logs ([`SessionLayer::with_tagger`]).
pub use session_layers::IdTagger;
