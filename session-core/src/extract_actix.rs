//! [`Session`] as an actix-web extractor (feature `actix`).
//!
//! session-actix's middleware puts each request's [`Session`] into the request extensions; this
//! lets a handler take it as an argument, by the same name the rest of the API uses
//! (`session_kit::Session`, `session_actix::Session` and `session_core::Session` are one type).

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError};

use crate::session::Session;

impl FromRequest for Session {
    type Error = MissingSessionMiddleware;
    type Future = Ready<Result<Self, Self::Error>>;

    /// The request's session; taking it costs nothing (it loads on its first read or write,
    /// and the middleware saves it after the handler returns).
    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Session>()
                .cloned()
                .ok_or(MissingSessionMiddleware),
        )
    }
}

/// The error of the [`Session`] extractor on a route without session-actix's
/// `SessionMiddleware`: a programming error, answered with a 500.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingSessionMiddleware;

impl std::fmt::Display for MissingSessionMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no session: the route is not wrapped in session_actix::SessionMiddleware")
    }
}

impl std::error::Error for MissingSessionMiddleware {}

impl ResponseError for MissingSessionMiddleware {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}
