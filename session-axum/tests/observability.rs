//! What the layer logs: a SQLite store that refuses writes (triggers that abort them), then
//! loses its table (dropped under it), both real backend failures, served on a loopback port,
//! with the process's `tracing` output captured by a `tracing-subscriber` fmt writer. The
//! failed saves and the failed load are logged with their cause (and the session's tag when it
//! has one), the levels of `session_axum::Error` are as documented, and the raw id appears
//! nowhere in the output.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{app, http_get, serve};
use session_axum::{CookieConfig, IdTagger, SessionLayer};
use session_core::{Manager, SessionId};

/// Everything the subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The lines of `log` that contain every one of `needles`.
fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_saves_and_loads_are_logged_with_their_cause_and_never_the_id() {
    let captured = Captured::default();
    // Global (the server's tasks run on the runtime's worker threads); one test per binary.
    tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::DEBUG)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let sqlite = session_sqlite::SqliteStore::open(&path).await.unwrap();
    let table = sqlite.table().to_owned();
    let manager = Manager::new(Arc::new(sqlite), session_core::Config::default()).unwrap();
    let tagger = IdTagger::new();
    let config = CookieConfig {
        secure: false,
        ..CookieConfig::default()
    };
    let layer = SessionLayer::with_config(manager, config)
        .unwrap()
        .with_tagger(tagger.clone());
    let (addr, server) = serve(app(layer)).await;

    let r = http_get(addr, "/visits", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    let cookie = r.all("set-cookie")[0].split(';').next().unwrap().to_owned();
    let id = SessionId::parse(cookie.split_once('=').unwrap().1).unwrap();
    let tag = tagger.tag(&id);
    assert_eq!(
        http_get(addr, "/visits", &[("cookie", &cookie)]).await.body,
        "2"
    );

    // the backend refuses writes for real: another connection adds triggers that abort them
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TRIGGER no_insert BEFORE INSERT ON \"{table}\" \
           BEGIN SELECT RAISE(ABORT, 'writes refused by the test trigger'); END; \
         CREATE TRIGGER no_update BEFORE UPDATE ON \"{table}\" \
           BEGIN SELECT RAISE(ABORT, 'writes refused by the test trigger'); END;"
    ))
    .unwrap();
    // a live session loads, but its save fails: 500, logged with the cause and the tag
    let r = http_get(addr, "/visits", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 500);
    assert!(r.all("set-cookie").is_empty(), "{:?}", r.headers);

    // then the table goes away altogether
    conn.execute_batch(&format!("DROP TABLE \"{table}\""))
        .unwrap();

    // a new session written by the handler: the save fails, the layer answers 500 and logs it
    let r = http_get(addr, "/set", &[]).await;
    assert_eq!(r.status, 500, "a failed save is still a 500");
    assert!(r.all("set-cookie").is_empty(), "{:?}", r.headers);
    // a live session's load fails in the handler: session_axum::Error answers and logs it
    let r = http_get(addr, "/read", &[("cookie", &cookie)]).await;
    assert_eq!((r.status, r.body.as_str()), (500, "session error"));
    server.abort();

    let log = captured.text();
    let refused = lines_with(
        &log,
        &["ERROR", "session save failed", "refused by the test"],
    );
    assert_eq!(refused.len(), 1, "the live session's failed save:\n{log}");
    assert!(
        refused[0].contains(&format!("session=\"{tag}\"")),
        "tagged: {}",
        refused[0]
    );
    let saves = lines_with(&log, &["ERROR", "session save failed", "no such table"]);
    assert_eq!(
        saves.len(),
        1,
        "one failed save, logged once with its cause:\n{log}"
    );
    assert!(
        saves[0].contains("session.request{"),
        "in the request span: {}",
        saves[0]
    );
    assert!(saves[0].contains("kind=\"backend\""), "{}", saves[0]);

    let loads = lines_with(&log, &["ERROR", "session call failed", "no such table"]);
    assert_eq!(
        loads.len(),
        1,
        "one failed load, logged once with its cause:\n{log}"
    );
    assert!(
        loads[0].contains(&format!("session=\"{tag}\"")),
        "tagged with the session's tag {tag}: {}",
        loads[0]
    );
    assert!(loads[0].contains("incoming=\"valid\""), "{}", loads[0]);

    // the levels of session_axum::Error: contention is a WARN, a client's bad id an INFO
    use axum::response::IntoResponse;
    let locked = session_axum::Error::<session_axum::DefaultResponse>::from(
        session_core::Error::Locked("busy in the test".into()),
    );
    assert_eq!(locked.into_response().status(), 503);
    let bad_id = session_axum::Error::<session_axum::DefaultResponse>::from(
        SessionId::parse("x").unwrap_err(),
    );
    assert_eq!(bad_id.into_response().status(), 400);
    let log = captured.text();
    assert_eq!(
        lines_with(&log, &[" WARN ", "busy in the test"]).len(),
        1,
        "{log}"
    );
    assert_eq!(
        lines_with(&log, &[" INFO ", "invalid id", "at least"]).len(),
        1,
        "{log}"
    );

    assert!(
        !log.contains(id.as_str()),
        "the raw id {id} is in the log:\n{log}"
    );
    assert!(!log.contains(&cookie), "the cookie is in the log:\n{log}");
}
