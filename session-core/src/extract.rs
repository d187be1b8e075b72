//! [`Session`] as an axum extractor (feature `axum`).
//!
//! session-axum's layer puts each request's [`Session`] into the request extensions; this lets
//! a handler take it as an argument, by the same name the rest of the API uses
//! (`session_kit::Session`, `session_axum::Session` and `session_core::Session` are one type).

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::session::Session;

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    /// The request's session; taking it costs nothing (it loads on its first read or write,
    /// and the layer saves it after the handler returns).
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

/// The rejection of the [`Session`] extractor on a route without session-axum's `SessionLayer`:
/// a programming error, answered with a 500.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingSessionLayer;

impl std::fmt::Display for MissingSessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no session: the route is not wrapped in session_axum::SessionLayer")
    }
}

impl std::error::Error for MissingSessionLayer {}

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}
