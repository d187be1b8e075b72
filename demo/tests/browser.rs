//! The demo in headless Chromium through WebDriver: the same user logged in from two browser
//! profiles, both listed on "Active sessions", "Log out everywhere" from one, the other logged
//! out on its next request.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`bash scripts/services` installs them);
//! `CHROMIUM` and `CHROMEDRIVER` override their paths. With `UPDATE_SCREENSHOT=1` it saves the
//! active-sessions page to `docs/active-sessions.png`.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use session_demo::{StoreSpec, app, cookie_config, serve, session_config};
use session_kit::Manager;

fn tool(env: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(env).unwrap_or_else(|_| default.to_owned()));
    assert!(
        path.exists(),
        "{} not found: the browser test needs Debian's chromium and chromium-driver; \
         run `bash scripts/services`, which installs them (or set {env})",
        path.display()
    );
    path
}

/// chromedriver on a free local port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

fn start_driver(chromedriver: &Path) -> Driver {
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    driver
}

/// A new WebDriver session: its own headless Chromium with a fresh profile (its own cookies).
async fn browser(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--window-size=1200,720".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": chromium, "args": args }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session in headless Chromium")
}

/// The text of the first `css` element once it satisfies `want`, polling for up to 10 s (a
/// click that submits a form returns before the next page has replaced the old one).
async fn wait_text(c: &Client, css: &str, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::from("(no such element)");
    while Instant::now() < deadline {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            if want(&t) {
                return t;
            }
            last = t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never became what was expected within 10 s; last text: {last:?}");
}

async fn text_of(c: &Client, css: &str) -> String {
    wait_text(c, css, |_| true).await
}

async fn log_in(c: &Client, base: &str, user: &str) {
    c.goto(&format!("{base}/login")).await.expect("open /login");
    let field = c
        .find(Locator::Css("#username"))
        .await
        .expect("user name field");
    field.send_keys(user).await.expect("type the user name");
    c.find(Locator::Css("#login-submit"))
        .await
        .expect("login button")
        .click()
        .await
        .expect("submit the login form");
    let expected = format!("Logged in as {user}");
    wait_text(c, "#user", |t| t == expected).await;
    wait_text(c, ".flash.notice", |t| t.contains("Welcome")).await;
}

async fn session_rows(c: &Client, base: &str) -> (usize, usize, String) {
    c.goto(&format!("{base}/sessions"))
        .await
        .expect("open /sessions");
    let rows = c
        .find_all(Locator::Css("tr.session-row"))
        .await
        .expect("session rows");
    let mine = c
        .find_all(Locator::Css("tr.session-row .this-session"))
        .await
        .expect("this-session markers");
    let devices = text_of(c, "#sessions").await;
    (rows.len(), mine.len(), devices)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_everywhere_in_two_browsers() {
    let started = Instant::now();
    let chromium = tool("CHROMIUM", "/usr/bin/chromium");
    let chromedriver = tool("CHROMEDRIVER", "/usr/bin/chromedriver");

    // the demo, in-process, on a temporary SQLite store
    let dir = tempfile::tempdir().expect("temp dir");
    let store = StoreSpec::Sqlite(dir.path().join("demo.sqlite3"))
        .open()
        .await
        .expect("open the store");
    let manager = Manager::new(store, session_config()).expect("manager");
    let router = app(manager.clone(), cookie_config(None)).expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router, async {
        let _ = stopped.await;
    }));

    let driver = start_driver(&chromedriver);
    let a = browser(&driver, &chromium, &dir.path().join("profile-a")).await;
    let b = browser(&driver, &chromium, &dir.path().join("profile-b")).await;

    log_in(&a, &base, "alice").await;
    log_in(&b, &base, "alice").await;
    assert_eq!(manager.sessions_of("alice").await.expect("index").len(), 2);

    let (rows, mine, table) = session_rows(&b, &base).await;
    assert_eq!(
        (rows, mine),
        (2, 1),
        "two sessions, one of them this one:\n{table}"
    );
    let (rows, mine, table) = session_rows(&a, &base).await;
    assert_eq!((rows, mine), (2, 1), "{table}");
    assert!(
        table.contains("HeadlessChrome"),
        "user agent shown: {table}"
    );
    assert!(table.contains("127.0.0.1"), "IP shown: {table}");

    if std::env::var("UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let png = a.screenshot().await.expect("screenshot");
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/active-sessions.png");
        std::fs::create_dir_all(path.parent().expect("docs dir")).expect("create docs/");
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("saved {}", path.display());
    }

    a.find(Locator::Css("#logout-everywhere"))
        .await
        .expect("log out everywhere button")
        .click()
        .await
        .expect("click log out everywhere");
    wait_text(&a, ".flash.notice", |t| {
        t.contains("Logged out everywhere: 2 sessions ended")
    })
    .await;
    wait_text(&a, "#user", |t| t == "Not logged in").await;

    // the other browser is logged out on its next request
    b.goto(&base).await.expect("reload in b");
    wait_text(&b, "#user", |t| t == "Not logged in").await;
    b.goto(&format!("{base}/sessions"))
        .await
        .expect("b to /sessions");
    let url = b.current_url().await.expect("url");
    assert_eq!(url.path(), "/login", "sent to the login page");
    wait_text(&b, ".flash.error", |t| t.contains("Log in first")).await;
    assert!(
        manager
            .sessions_of("alice")
            .await
            .expect("index")
            .is_empty()
    );

    a.close().await.expect("close a");
    b.close().await.expect("close b");
    drop(driver);
    let _ = stop.send(());
    server.await.expect("server task").expect("server");
    eprintln!("browser test took {:.1} s", started.elapsed().as_secs_f64());
}
