//! Runs the `login_sockets` example as two processes on two ports against one Redis: sockets
//! opened with an HTTP session are bound to its user, and logging out over HTTP (or "log out
//! everywhere") on one process closes that user's sockets on both.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::procs::{Ws, connect_welcomed, example_binary, free_port, next_text, spawn_server};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// One HTTP/1.1 request over a fresh connection; returns the status, the session cookie the
/// response set (if any) and the body.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (u16, Option<String>, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("a response within 5 s")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let set = head
        .lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .filter_map(|c| c.split(';').next())
        .find(|c| c.starts_with("session_id=") && c.len() > "session_id=".len())
        .map(str::to_string);
    (status, set, body.to_string())
}

/// Logs a new session in as `user` on `port`; returns its cookie (`session_id=...`).
async fn login(port: u16, user: &str) -> String {
    let (status, cookie, body) = http(port, "POST", &format!("/login?user={user}"), None).await;
    assert_eq!(
        (status, body.as_str()),
        (200, format!("logged in as {user}").as_str())
    );
    cookie.expect("a login sets the session cookie")
}

/// A WebSocket to `port` with `cookie`, past its welcome line.
async fn socket(port: u16, cookie: &str, user: &str) -> Ws {
    let mut req = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("cookie", cookie.parse().expect("header value"));
    connect_welcomed(req, user, port).await
}

/// Asserts the server says goodbye with `reason` and closes the socket.
async fn assert_closed(ws: &mut Ws, reason: &str) {
    assert_eq!(next_text(ws).await, format!("bye: {reason}"));
    match tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the close within 5 s")
    {
        None | Some(Ok(Message::Close(_))) | Some(Err(_)) => {}
        Some(Ok(other)) => panic!("expected the close, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_over_http_closes_the_users_sockets_on_both_processes() {
    let prefix = common::unique_prefix();
    // fail early with the how-to if Redis is down
    let cleanup = common::open_redis(&prefix).await;
    let bin = tokio::task::spawn_blocking(|| example_binary("login_sockets"))
        .await
        .expect("build task");
    let (p1, p2) = (free_port(), free_port());
    let _one = spawn_server(&bin, p1, &prefix);
    let _two = spawn_server(&bin, p2, &prefix);

    // a guest cannot open a socket
    match tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{p1}/ws")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("a guest's upgrade must be refused with 401, got {other:?}"),
    }

    // alice's laptop session, logged in on process 1, with a socket on each process
    let laptop = login(p1, "alice").await;
    assert_eq!(http(p2, "GET", "/whoami", Some(&laptop)).await.2, "alice");
    let mut laptop_1 = socket(p1, &laptop, "alice").await;
    let mut laptop_2 = socket(p2, &laptop, "alice").await;
    // her phone session, logged in on process 2, and bob
    let phone = login(p2, "alice").await;
    let mut phone_2 = socket(p2, &phone, "alice").await;
    let bob = login(p1, "bob").await;
    let mut bob_1 = socket(p1, &bob, "bob").await;

    // the sockets are bound to the session's user: a message to alice reaches all three
    bob_1
        .send(Message::Text("@alice hi".into()))
        .await
        .expect("send");
    for ws in [&mut laptop_1, &mut laptop_2, &mut phone_2] {
        assert_eq!(next_text(ws).await, "bob: hi");
    }

    // logging the laptop out on process 2 closes its sockets on both processes...
    let (status, cookie, body) = http(p2, "POST", "/logout", Some(&laptop)).await;
    assert_eq!((status, body.as_str(), cookie), (200, "logged out", None));
    assert_closed(&mut laptop_1, "session ended").await;
    assert_closed(&mut laptop_2, "session ended").await;
    // ...and only those: the phone still gets messages
    bob_1
        .send(Message::Text("@alice still there?".into()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut phone_2).await, "bob: still there?");
    assert_eq!(http(p1, "GET", "/whoami", Some(&laptop)).await.2, "guest");

    // "log out everywhere" from another alice session on process 1 closes the phone's socket
    // on process 2
    let desk = login(p1, "alice").await;
    let (status, _, body) = http(p1, "POST", "/logout-everywhere", Some(&desk)).await;
    assert_eq!((status, body.as_str()), (200, "2 sessions of alice ended"));
    assert_closed(&mut phone_2, "session ended").await;
    assert_eq!(http(p2, "GET", "/whoami", Some(&phone)).await.2, "guest");
    // bob is untouched
    assert_eq!(http(p2, "GET", "/whoami", Some(&bob)).await.2, "bob");
    bob_1
        .send(Message::Text("@bob me".into()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut bob_1).await, "bob: me");

    drop((_one, _two));
    cleanup
        .clear_prefix()
        .await
        .expect("deleting the test's keys");
}
