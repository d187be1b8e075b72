//! The demo's `/metrics` page on a real port: the storage layers' call counters, in the
//! Prometheus text format, move as pages use the session.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use session_demo::{
    StoreSpec, app, cookie_config, metrics_handle, metrics_routes, serve, session_config,
};
use session_kit::Manager;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One `GET` over a fresh connection; returns the head and the body.
async fn get(port: u16, path: &str, cookie: Option<&str>) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("a response within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    (head.to_string(), body.to_string())
}

/// The value of the sample of `metric` whose labels contain every one of `labels`.
fn sample(page: &str, metric: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(metric) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_page_counts_the_storage_calls_of_the_pages() {
    let metrics = metrics_handle().expect("recorder");
    let store = StoreSpec::Memory.open().await.unwrap();
    let manager = Manager::new(store, session_config()).unwrap();
    let router = app(manager, cookie_config(None))
        .unwrap()
        .merge(metrics_routes(metrics));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(listener, router, std::future::pending()));

    let (head, before) = get(port, "/metrics", None).await;
    assert!(head.contains("text/plain"), "{head}");
    let loads = |page: &str| {
        sample(
            page,
            "session_storage_calls_total",
            &["driver=\"memory\"", "op=\"load\"", "outcome=\"ok\""],
        )
    };
    let applies = |page: &str| {
        sample(
            page,
            "session_storage_calls_total",
            &["driver=\"memory\"", "op=\"apply\""],
        )
    };
    // the home page counts visits: a new session (apply), then a load and an apply per visit
    let (head, _) = get(port, "/", None).await;
    let cookie = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l[11..].trim().to_string())
        })
        .and_then(|c| c.split(';').next().map(str::to_string))
        .expect("the first visit sets the session cookie");
    get(port, "/", Some(&cookie)).await;
    get(port, "/", Some(&cookie)).await;
    let (_, after) = get(port, "/metrics", None).await;
    assert!(
        loads(&after) >= loads(&before) + 2.0,
        "loads did not move: before {} after {}\n{after}",
        loads(&before),
        loads(&after)
    );
    assert!(applies(&after) >= applies(&before) + 3.0, "{after}");
    assert!(after.contains("session_storage_call_seconds"), "{after}");
}
