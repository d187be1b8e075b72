#![doc = include_str!("../README.md")]

mod codec;
mod config;
mod error;
mod key;
mod sessions;

pub use codec::Incoming;
pub use config::{CookieConfig, Protection};
pub use error::{Answer, log_error};
pub use key::Key;
pub use sessions::{HttpSessions, RequestSession, SPAN_NAME};

/// Re-exported from the `cookie` crate: the `SameSite` attribute.
pub use cookie::SameSite;
/// Re-exported from `session-layers`: the keyed hash that turns session ids into short tags
/// for logs ([`HttpSessions::with_tagger`]).
pub use session_layers::IdTagger;
