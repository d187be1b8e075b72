//! Runs the facade's axum and actix-web examples as real servers on loopback ports and uses them
//! the way the examples' own docs say: the counters count per visitor, and the login app logs
//! in with a new id, shows a flash once, lists the user's sessions and logs out everywhere.
//! Each example's test runs when its feature (`axum`, `actix`) is on.
#![cfg(any(feature = "axum", feature = "actix"))]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A child process killed (and reaped) when dropped, however the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds example `name` (a no-op when up to date) and starts it on a free port; returns the
/// process and the port once it says it is listening. Every example is built with the same
/// features (one build of the facade for all of them).
fn start(name: &str) -> (Proc, u16) {
    let features = "axum,actix,memory";
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "-p",
            "session-kit",
            "--features",
            features,
            "--example",
            name,
        ])
        .status()
        .expect("running cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("examples")
        .join(name);
    assert!(bin.exists(), "{} not found", bin.display());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(&bin)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawning the example");
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(
        line.starts_with("listening on"),
        "{name} did not start: {line:?}"
    );
    (proc, port)
}

fn built(name: &'static str) -> impl FnOnce() -> (Proc, u16) {
    move || start(name)
}

/// A client with one cookie jar (the session cookie only).
struct Client {
    port: u16,
    cookie: Option<String>,
}

impl Client {
    fn new(port: u16) -> Self {
        Client { port, cookie: None }
    }

    /// One request; keeps or drops the session cookie as the response says; returns the status
    /// and the body.
    async fn send(&mut self, method: &str, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let cookie = self
            .cookie
            .as_ref()
            .map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
            .await
            .expect("a response within 5 s")
            .unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("set-cookie: ") {
                let pair = line["set-cookie: ".len()..].split(';').next().unwrap();
                if value.contains("max-age=0") {
                    self.cookie = None;
                } else {
                    self.cookie = Some(pair.to_string());
                }
            }
        }
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_counts_per_visitor() {
    counts_per_visitor("axum_counter").await;
}

#[cfg(feature = "actix")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actix_counter_counts_per_visitor() {
    counts_per_visitor("actix_counter").await;
}

/// The counter example `name` counts per visitor, and its reset removes the cookie.
async fn counts_per_visitor(name: &'static str) {
    let (_server, port) = tokio::task::spawn_blocking(built(name)).await.unwrap();
    let mut alice = Client::new(port);
    let mut bob = Client::new(port);
    assert_eq!(alice.send("GET", "/").await, (200, "visit number 1".into()));
    assert_eq!(alice.send("GET", "/").await, (200, "visit number 2".into()));
    assert_eq!(bob.send("GET", "/").await, (200, "visit number 1".into()));
    assert_eq!(alice.send("GET", "/").await, (200, "visit number 3".into()));
    assert_eq!(alice.send("GET", "/reset").await, (200, "forgotten".into()));
    assert!(alice.cookie.is_none(), "the reset removes the cookie");
    assert_eq!(alice.send("GET", "/").await, (200, "visit number 1".into()));
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_app_logs_in_flashes_lists_and_logs_out_everywhere() {
    let (_server, port) = tokio::task::spawn_blocking(built("axum_login"))
        .await
        .unwrap();
    let mut laptop = Client::new(port);
    let mut phone = Client::new(port);
    assert_eq!(laptop.send("GET", "/").await, (200, "hello guest\n".into()));
    let guest_cookie = laptop.cookie.clone();
    assert_eq!(
        laptop.send("POST", "/login?user=ada").await,
        (200, "ok".into())
    );
    assert_ne!(laptop.cookie, guest_cookie, "login issues a new id");
    assert!(laptop.cookie.is_some());
    // the flash shows once
    assert_eq!(
        laptop.send("GET", "/").await,
        (200, "hello ada\nnotice: logged in as ada\n".into())
    );
    assert_eq!(laptop.send("GET", "/").await, (200, "hello ada\n".into()));
    assert_eq!(phone.send("POST", "/login?user=ada").await.0, 200);
    let (status, list) = laptop.send("GET", "/sessions").await;
    assert_eq!(status, 200);
    assert_eq!(list.lines().count(), 2, "{list}");
    assert_eq!(
        list.lines().filter(|l| l.ends_with("(this one)")).count(),
        1,
        "{list}"
    );
    assert_eq!(
        laptop.send("POST", "/logout-everywhere").await,
        (200, "2 sessions ended".into())
    );
    assert_eq!(phone.send("GET", "/").await, (200, "hello guest\n".into()));
    // logout on a fresh login: the session goes, the flash comes in a new one
    assert_eq!(phone.send("POST", "/login?user=bob").await.0, 200);
    assert_eq!(
        phone.send("GET", "/").await.1,
        "hello bob\nnotice: logged in as bob\n"
    );
    assert_eq!(phone.send("POST", "/logout").await, (200, "ok".into()));
    assert_eq!(
        phone.send("GET", "/").await,
        (200, "hello guest\nnotice: logged out\n".into())
    );
    assert_eq!(phone.send("GET", "/sessions").await.0, 401);
    assert_eq!(phone.send("POST", "/login?user=").await.0, 400);
}
