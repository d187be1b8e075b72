//! A login app on axum: login with id regeneration, logout, a flash message, the user's active
//! sessions, and "log out everywhere", on the in-memory store.
//!
//! ```text
//! cargo run -p session-kit --features axum --example axum_login -- --port 3000
//! curl -c a -b a -X POST 'http://127.0.0.1:3000/login?user=ada'   # device one
//! curl -c b -b b -X POST 'http://127.0.0.1:3000/login?user=ada'   # device two
//! curl -b a http://127.0.0.1:3000/                  # "hello ada" and the login flash, once
//! curl -b a http://127.0.0.1:3000/sessions          # both sessions of ada
//! curl -b a -X POST http://127.0.0.1:3000/logout-everywhere
//! curl -b b http://127.0.0.1:3000/                  # "hello guest"
//! ```
//!
//! Routes answer plain text. The cookie is not `Secure` here because the example serves plain
//! http on localhost; keep the default behind HTTPS.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use session_kit::axum::{CookieConfig, Error, SessionLayer};
use session_kit::memory::MemoryStore;
use session_kit::{Config, Manager, Session};

#[derive(Deserialize)]
struct Login {
    user: String,
}

/// The home page: who is logged in, and the flash message left by the last action, once.
async fn home(session: Session) -> Result<String, Error> {
    let mut page = match session.user().await? {
        Some(user) => format!("hello {user}\n"),
        None => "hello guest\n".to_string(),
    };
    if let Some(notice) = session.get_flash::<String>("notice").await? {
        let _ = writeln!(page, "notice: {notice}");
    }
    Ok(page)
}

/// Logs in: the session gets a new id (against session fixation) and belongs to `user`.
async fn login(session: Session, Query(form): Query<Login>) -> Result<Response, Error> {
    if form.user.is_empty() || form.user.len() > 64 {
        return Ok((StatusCode::BAD_REQUEST, "a user name of 1 to 64 bytes").into_response());
    }
    session.login(&form.user).await?;
    session
        .set_flash("notice", &format!("logged in as {}", form.user))
        .await?;
    Ok("ok".into_response())
}

/// Logs out: the session is destroyed; the flash goes into a fresh one.
async fn logout(session: Session) -> Result<&'static str, Error> {
    session.logout().await?;
    session.set_flash("notice", "logged out").await?;
    Ok("ok")
}

/// The user's active sessions (an "active devices" page); ids are shortened, never shown whole.
async fn sessions(State(manager): State<Manager>, session: Session) -> Result<Response, Error> {
    let Some(user) = session.user().await? else {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
    };
    let current = session.id().await;
    let mut page = String::new();
    for s in manager.sessions_of(&user).await? {
        let mark = if Some(&s.id) == current.as_ref() {
            " (this one)"
        } else {
            ""
        };
        let _ = writeln!(page, "{}{mark}", s.id.short());
    }
    Ok(page.into_response())
}

/// "Log out everywhere": every session of the user is destroyed, this one included.
async fn logout_everywhere(
    State(manager): State<Manager>,
    session: Session,
) -> Result<Response, Error> {
    let Some(user) = session.user().await? else {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
    };
    let n = manager.destroy_user(&user).await?;
    Ok(format!("{n} sessions ended").into_response())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .skip_while(|a| a != "--port")
        .nth(1)
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(3000);
    let manager = Manager::new(Arc::new(MemoryStore::new()), Config::default())?;
    let cookies = CookieConfig {
        secure: false, // plain http on localhost only
        ..CookieConfig::default()
    };
    let app = Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions))
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(SessionLayer::with_config(manager.clone(), cookies)?)
        .with_state(manager);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
