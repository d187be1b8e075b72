//! The smallest axum app with sessions: a per-visitor counter, on the in-memory store.
//!
//! ```text
//! cargo run -p session-kit --features axum --example axum_counter -- --port 3000
//! curl -c jar -b jar http://127.0.0.1:3000/     # visit number 1, 2, 3, ...
//! ```
//!
//! One dependency (`session-kit` with its `axum` feature): the store, the manager, the layer,
//! the handler's `Session` extractor and its `Error` all come from the facade. The cookie is
//! not `Secure` here because the example serves plain http on localhost; keep the default
//! behind HTTPS.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use session_kit::axum::{CookieConfig, Error, SessionLayer};
use session_kit::memory::MemoryStore;
use session_kit::{Config, Manager, Session};

async fn count(session: Session) -> Result<String, Error> {
    let n = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
    session.set("visits", &n).await?; // saved by the layer before the response leaves
    Ok(format!("visit number {n}"))
}

async fn reset(session: Session) -> Result<&'static str, Error> {
    session.destroy().await?;
    Ok("forgotten")
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
        .route("/", get(count))
        .route("/reset", get(reset))
        .layer(SessionLayer::with_config(manager, cookies)?);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
