//! The layer on the SQLite driver (a real database file), served on a bound local port and
//! spoken to over real TCP connections, so the peer address (`ConnectInfo`) is real.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{app, attributes, counting, layer};
use session_axum::CookieConfig;
use session_core::Manager;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Reply {
    status: u16,
    set_cookies: Vec<String>,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection.
async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: PortTest/2.0\r\n{cookie}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("reply within 10 s")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 reply");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let set_cookies = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.trim().to_owned())
        .collect();
    Reply {
        status,
        set_cookies,
        body: body.to_owned(),
    }
}

fn pair(r: &Reply) -> String {
    assert_eq!(r.set_cookies.len(), 1, "{:?}", r.set_cookies);
    r.set_cookies[0].split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_over_a_real_socket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = session_sqlite::SqliteStore::open(dir.path().join("sessions.db"))
        .await
        .expect("open sqlite");
    let store = counting(sqlite);
    let manager = Manager::new(store.clone(), session_core::Config::default()).unwrap();
    let config = CookieConfig {
        secure: false,
        ..CookieConfig::default()
    };
    let router = app(layer(&manager, config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let r = get(addr, "/untouched", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello"));
    assert!(r.set_cookies.is_empty());
    assert_eq!(store.hook().calls(), 0);

    let r = get(addr, "/visits", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    let first = pair(&r);
    let attrs = attributes(&r.set_cookies[0]);
    assert!(
        attrs.iter().all(|(k, _)| k != "secure"),
        "secure turned off"
    );
    assert!(attrs.iter().any(|(k, _)| k == "httponly"));
    assert_eq!(get(addr, "/visits", Some(&first)).await.body, "2");
    assert_eq!(
        get(addr, "/client", Some(&first)).await.body,
        "127.0.0.1|PortTest/2.0"
    );

    let r = get(addr, "/login", Some(&first)).await;
    let logged = pair(&r);
    assert_ne!(logged, first, "login regenerated the id");
    assert_eq!(get(addr, "/whoami", Some(&logged)).await.body, "alice");
    assert_eq!(get(addr, "/whoami", Some(&first)).await.body, "anonymous");

    let listed = manager.sessions_of("alice").await.unwrap();
    assert_eq!(listed.len(), 1);
    let meta = listed[0].meta.as_ref().expect("metadata");
    assert_eq!(meta.last_ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(meta.client.user_agent.as_deref(), Some("PortTest/2.0"));

    let r = get(addr, "/logout", Some(&logged)).await;
    assert_eq!(r.status, 200);
    assert!(
        r.set_cookies[0].contains("Max-Age=0"),
        "{:?}",
        r.set_cookies
    );
    assert_eq!(get(addr, "/whoami", Some(&logged)).await.body, "anonymous");
    assert!(manager.sessions_of("alice").await.unwrap().is_empty());

    server.abort();
}
