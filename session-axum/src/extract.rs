//! The axum extractor.

use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

/// The session of the request, as an axum extractor (needs [`SessionLayer`](crate::SessionLayer)
/// around the route; without it the request fails with [`MissingSessionLayer`], a 500).
///
/// Taking it costs nothing: the session is loaded from storage by its first read or write, and
/// saved by the layer after the handler returns. It derefs to
/// [`session_core::Session`], so every method of the session layer is there:
/// `session.get::<T>(key)`, `set`, `set_flash`, `login`, `logout`, `regenerate`...
///
/// The plain [`session_core::Session`] is in the request extensions too, so
/// `Extension<session_core::Session>` works as well, and so does `Extension<Manager>` for the
/// [`Manager`](session_core::Manager).
#[derive(Clone, Debug)]
pub struct Session(pub session_core::Session);

impl Session {
    /// The session-layer handle.
    pub fn into_inner(self) -> session_core::Session {
        self.0
    }
}

impl Deref for Session {
    type Target = session_core::Session;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<session_core::Session>()
            .cloned()
            .map(Session)
            .ok_or(MissingSessionLayer)
    }
}

/// The rejection of the [`Session`] extractor on a route without
/// [`SessionLayer`](crate::SessionLayer): a programming error, answered with a 500.
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
