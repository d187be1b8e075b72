//! A WebSocket chat on axum over the Redis backend: run it twice, on two ports, against one
//! Redis, and a message sent to a user reaches all of that user's tabs on both processes.
//!
//! ```text
//! cargo run -p session-connect --example chat -- --port 3001
//! cargo run -p session-connect --example chat -- --port 3002
//! # then, e.g. with websocat:
//! websocat 'ws://127.0.0.1:3001/ws?user=alice'     # tab 1 of alice
//! websocat 'ws://127.0.0.1:3002/ws?user=alice'     # tab 2 of alice, other process
//! websocat 'ws://127.0.0.1:3002/ws?user=bob'       # bob types: @alice hello
//! ```
//!
//! Protocol: the server greets each socket with `welcome <user> <connection id>`. A text line
//! `@<user> <text>` goes to every connection of that user; any other line goes to everyone.
//! The sender gets `sent local=<n> nodes=<n>` back. Options: `--port N` (default 3001),
//! `--prefix P` (Redis key prefix, default `chat`); `REDIS_URL` (default
//! `redis://127.0.0.1:6379`).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use session_kit::connect::{ConnMeta, Event, Hub, RedisBackend, Target};
use tokio::sync::mpsc;

#[derive(Deserialize)]
struct Params {
    user: String,
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = arg("--port")
        .map(|p| p.parse())
        .transpose()?
        .unwrap_or(3001);
    let prefix = arg("--prefix").unwrap_or_else(|| "chat".into());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let backend = Arc::new(RedisBackend::open(&url, &prefix).await?);
    let hub = Hub::builder(backend)
        .addr("127.0.0.1", port)
        .beat_interval(Duration::from_secs(1))
        .start()
        .await?;
    let app = Router::new()
        .route("/ws", get(upgrade))
        .with_state(hub.clone());
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

async fn upgrade(
    ws: WebSocketUpgrade,
    Query(p): Query<Params>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(hub): State<Hub>,
) -> impl IntoResponse {
    ws.on_upgrade(move |socket| async move {
        if let Err(e) = chat(socket, hub, p.user, peer).await {
            eprintln!("connection ended with an error: {e}");
        }
    })
}

async fn chat(
    socket: WebSocket,
    hub: Hub,
    user: String,
    peer: SocketAddr,
) -> session_kit::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Event>(256);
    let conn = hub
        .open(ConnMeta::new("ws", Some(peer.ip())), None, tx)
        .await?;
    hub.bind(&conn, &user).await?;
    // A reconnect within the keep window gets the old context back.
    hub.restore(&user, &conn).await?;
    let (mut sink, mut stream) = socket.split();
    let welcome = format!("welcome {user} {conn}");
    let writer = tokio::spawn(async move {
        if sink.send(Message::Text(welcome.into())).await.is_err() {
            return;
        }
        while let Some(ev) = rx.recv().await {
            let msg = match ev {
                Event::Message(b) => Message::Text(String::from_utf8_lossy(&b).into_owned().into()),
                Event::Kicked | Event::SessionEnded { .. } | Event::LoggedOut { .. } => {
                    Message::Close(None)
                }
                _ => continue,
            };
            if sink.send(msg).await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let text = text.as_str();
        let (to, body) = match text.strip_prefix('@').and_then(|t| t.split_once(' ')) {
            Some((to, body)) => (Some(to.to_string()), body),
            None => (None, text),
        };
        let line = Bytes::from(format!("{user}: {body}"));
        let target = match &to {
            Some(u) => Target::User(u),
            None => Target::All,
        };
        let d = hub.send(target, line).await?;
        hub.send(
            Target::Conn(&conn),
            Bytes::from(format!("sent local={} nodes={}", d.local, d.nodes)),
        )
        .await?;
    }
    writer.abort();
    hub.close(&conn, Some(Duration::from_secs(30))).await
}
