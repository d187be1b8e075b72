#![doc = include_str!("../README.md")]

mod config;
mod extract;
mod layer;

pub use config::CookieConfig;
pub use extract::{MissingSessionLayer, Session};
pub use layer::{SaveError, SessionLayer, SessionService};

/// Re-exported from the `cookie` crate: a signing key ([`Key::derive_from`] a 32+ byte secret,
/// [`Key::try_from`] 64 bytes, or [`Key::generate`]).
pub use cookie::Key;
/// Re-exported from the `cookie` crate: the `SameSite` attribute.
pub use cookie::SameSite;
