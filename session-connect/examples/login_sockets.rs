//! HTTP sessions tied to sockets: an axum app (session-axum) whose WebSocket upgrade binds the
//! connection to the logged-in user of the request's HTTP session; logging out over HTTP, or
//! "log out everywhere", closes that user's sockets on every process. Run it twice, on two
//! ports, against one Redis (the sessions and the connection registry both live there).
//!
//! ```text
//! cargo run -p session-connect --example login_sockets -- --port 3001
//! cargo run -p session-connect --example login_sockets -- --port 3002
//! curl -c jar -X POST 'http://127.0.0.1:3001/login?user=alice'   # a session cookie in `jar`
//! websocat -H "Cookie: $(awk '/session_id/ {print "session_id=" $7}' jar)" ws://127.0.0.1:3002/ws
//! curl -b jar -X POST http://127.0.0.1:3001/logout                # the socket on 3002 closes
//! ```
//!
//! Routes: `POST /login?user=NAME` (logs the session in; regenerates its id), `POST /logout`
//! (destroys the session), `POST /logout-everywhere` (destroys every session of the session's
//! user), `GET /whoami`, and `GET /ws`, which needs a logged-in session (else 401). A socket is
//! greeted with `welcome <user> <connection id>`; a line `@<user> <text>` goes to every socket
//! of that user, on every process. When the socket's session ends or is logged out the server
//! sends `bye: <reason>` and closes it. Options: `--port N` (default 3001), `--prefix P` (Redis
//! key prefix, default `login_sockets`); `REDIS_URL` (default `redis://127.0.0.1:6379`). The
//! cookie is not `Secure`, for plain http on localhost only.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use session_kit::axum::{CookieConfig, Session, SessionLayer};
use session_kit::connect::{ConnMeta, Event, Hub, RedisBackend, Target};
use session_kit::redis::RedisStore;
use session_kit::{Config, Manager, SessionId, Storage};
use tokio::sync::mpsc;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[derive(Clone)]
struct App {
    hub: Hub,
    manager: Manager,
}

/// Any error of the session layer or the registry: a 500 with its text (an example; a real
/// app logs it and answers less).
struct Failure(session_kit::Error);

impl From<session_kit::Error> for Failure {
    fn from(e: session_kit::Error) -> Self {
        Failure(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.0.to_string()).into_response()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = arg("--port")
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(3001);
    let prefix = arg("--prefix").unwrap_or_else(|| "login_sockets".into());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store: Arc<dyn Storage> = Arc::new(
        RedisStore::builder()
            .prefix(format!("{prefix}:sess"))
            .open(&url)
            .await?,
    );
    let manager = Manager::new(store, Config::default())?;
    let backend = Arc::new(RedisBackend::open(&url, &prefix).await?);
    // the hub follows this process's manager: whatever its HTTP requests do to a session
    // (login, logout, regeneration, log out everywhere) reaches the session's sockets
    let hub = Hub::builder(backend)
        .addr("127.0.0.1", port)
        .beat_interval(Duration::from_secs(1))
        .sessions(manager.clone())
        .start()
        .await?;
    let cookies = CookieConfig {
        secure: false,
        ..CookieConfig::default()
    };
    let app = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/whoami", get(whoami))
        .route("/ws", get(upgrade))
        .layer(SessionLayer::with_config(manager.clone(), cookies)?)
        .with_state(App {
            hub: hub.clone(),
            manager,
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on 127.0.0.1:{port} as node {}", hub.node());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    hub.shutdown().await?;
    Ok(())
}

#[derive(Deserialize)]
struct Who {
    user: String,
}

async fn login(session: Session, Query(who): Query<Who>) -> Result<String, Failure> {
    session.login(&who.user).await?;
    Ok(format!("logged in as {}", who.user))
}

async fn logout(session: Session) -> Result<&'static str, Failure> {
    session.logout().await?;
    Ok("logged out")
}

async fn logout_everywhere(State(app): State<App>, session: Session) -> Result<Response, Failure> {
    let Some(user) = session.user().await? else {
        return Ok((StatusCode::UNAUTHORIZED, "not logged in").into_response());
    };
    let n = app.manager.destroy_user(&user).await?;
    Ok(format!("{n} sessions of {user} ended").into_response())
}

async fn whoami(session: Session) -> Result<String, Failure> {
    Ok(session.user().await?.unwrap_or_else(|| "guest".into()))
}

async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(app): State<App>,
    session: Session,
) -> Result<Response, Failure> {
    let (Some(user), Some(id)) = (session.user().await?, session.id().await) else {
        return Ok((StatusCode::UNAUTHORIZED, "log in first").into_response());
    };
    Ok(ws
        .on_upgrade(move |socket| async move {
            if let Err(e) = serve_socket(socket, app.hub, id, user, peer).await {
                eprintln!("connection ended with an error: {e}");
            }
        })
        .into_response())
}

async fn serve_socket(
    socket: WebSocket,
    hub: Hub,
    session: SessionId,
    user: String,
    peer: SocketAddr,
) -> session_kit::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Event>(256);
    // opened with a logged-in session: bound to its user at once
    let conn = hub
        .open(ConnMeta::new("ws", Some(peer.ip())), Some(&session), tx)
        .await?;
    let (mut sink, mut stream) = socket.split();
    let welcome = format!("welcome {user} {conn}");
    let writer = tokio::spawn(async move {
        if sink.send(Message::Text(welcome.into())).await.is_err() {
            return;
        }
        while let Some(ev) = rx.recv().await {
            let bye = match ev {
                Event::Message(b) => {
                    let text = String::from_utf8_lossy(&b).into_owned();
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                    continue;
                }
                Event::SessionEnded { .. } => "session ended",
                Event::LoggedOut { .. } => "logged out",
                Event::Kicked => "signed in elsewhere",
                // a regeneration moved the socket to the session's new id: nothing to do
                _ => continue,
            };
            let _ = sink.send(Message::Text(format!("bye: {bye}").into())).await;
            let _ = sink.send(Message::Close(None)).await;
            return;
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        if let Some((to, body)) = text
            .as_str()
            .strip_prefix('@')
            .and_then(|t| t.split_once(' '))
        {
            let line = Bytes::from(format!("{user}: {body}"));
            hub.send(Target::User(to), line).await?;
        }
    }
    writer.abort();
    hub.close(&conn, None).await
}
