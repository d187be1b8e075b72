//! The smallest actix-web app with sessions: a per-visitor counter, on the in-memory store.
//!
//! ```text
//! cargo run -p session-kit --features actix --example actix_counter -- --port 3000
//! curl -c jar -b jar http://127.0.0.1:3000/     # visit number 1, 2, 3, ...
//! ```
//!
//! One dependency for the sessions (`session-kit` with its `actix` feature): the store, the
//! manager, the middleware, the handler's `Session` and its `Error` all come from the facade.
//! The cookie is not `Secure` here because the example serves plain http on localhost; keep
//! the default behind HTTPS.

use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use session_kit::actix::{CookieConfig, Error, SessionMiddleware};
use session_kit::memory::MemoryStore;
use session_kit::{Config, Manager, Session};

async fn count(session: Session) -> Result<String, Error> {
    let n = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
    session.set("visits", &n).await?; // saved by the middleware before the response leaves
    Ok(format!("visit number {n}"))
}

async fn reset(session: Session) -> Result<&'static str, Error> {
    session.destroy().await?;
    Ok("forgotten")
}

#[actix_web::main]
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
    let sessions = SessionMiddleware::with_config(manager, cookies)?;
    let server = HttpServer::new(move || {
        App::new()
            .wrap(sessions.clone())
            .route("/", web::get().to(count))
            .route("/reset", web::get().to(reset))
    })
    .bind(("127.0.0.1", port))?;
    println!("listening on http://{}/", server.addrs()[0]);
    server.run().await?;
    Ok(())
}
