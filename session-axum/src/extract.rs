//! The axum extractor: [`session_core::Session`] itself (session-core's `axum` feature, which this
//! crate turns on), re-exported here as [`Session`](crate::Session).
//!
//! Taking it costs nothing: the session is loaded from storage by its first read or write, and
//! saved by the layer after the handler returns. Without [`SessionLayer`](crate::SessionLayer)
//! around the route the request fails with [`MissingSessionLayer`], a 500. The
//! [`Manager`](session_core::Manager) is in the request extensions too
//! (`Extension<Manager>`).

pub use session_core::{MissingSessionLayer, Session};
