//! Example servers as child processes, for the tests that run an example twice.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A child process killed (and reaped) when dropped, however the test ends.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds example `name` of session-connect (a no-op when it is up to date) and returns its
/// path. Blocking: call it from `spawn_blocking`.
pub fn example_binary(name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "session-connect", "--example", name])
        .status()
        .unwrap_or_else(|e| panic!("running cargo build --example {name}: {e}"));
    assert!(status.success(), "cargo build --example {name} failed");
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir.join("examples").join(name);
    assert!(bin.exists(), "{} not found", bin.display());
    bin
}

/// A port free right now on the loopback interface.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("addr").port()
}

/// Starts example server `bin` on `port` with Redis key prefix `prefix`, and waits for its
/// "listening" line.
pub fn spawn_server(bin: &PathBuf, port: u16, prefix: &str) -> Proc {
    let mut child = Command::new(bin)
        .args(["--port", &port.to_string(), "--prefix", prefix])
        .env("REDIS_URL", super::redis_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("reading the server's first line");
    assert!(
        line.starts_with("listening"),
        "{} on port {port} did not start (is Redis up? start it with: redis-server \
         --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no): {line:?}",
        bin.display()
    );
    proc
}

/// A WebSocket to one of the example servers.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `request` (a URL or a request with headers) and reads the examples' greeting,
/// `welcome <user> <connection id>`, checking the user and the node's address.
pub async fn connect_welcomed(
    request: impl IntoClientRequest + Unpin,
    user: &str,
    port: u16,
) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connect");
    let welcome = next_text(&mut ws).await;
    assert!(
        welcome.starts_with(&format!("welcome {user} 127.0.0.1:{port}.")),
        "{welcome}"
    );
    ws
}

/// The next text message of `ws`, waiting up to 5 s.
pub async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("socket open")
            .expect("websocket message");
        if let Message::Text(t) = msg {
            return t.to_string();
        }
    }
}
