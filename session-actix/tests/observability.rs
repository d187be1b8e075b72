//! A failed save on a real backend failure (a SQLite store whose writes are refused by
//! triggers another connection adds), served on a loopback port: the answer is an empty 500
//! without a cookie, the failure is logged once at ERROR with its cause and the session's tag,
//! and the raw id appears nowhere in the log. `session_actix::Error` logs a failed load once.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use session_actix::{CookieConfig, IdTagger, SessionMiddleware};
use session_core::{Manager, SessionId};

/// Everything the subscriber wrote.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[actix_web::test]
async fn failed_saves_are_a_500_logged_with_their_cause() {
    let log = Log::default();
    let writer = log.clone();
    // global: the server's workers run on threads of their own; one test in this binary
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let sqlite = session_sqlite::SqliteStore::open(&path).await.unwrap();
    let table = sqlite.table().to_owned();
    let manager = Manager::new(Arc::new(sqlite), session_core::Config::default()).unwrap();
    let tagger = IdTagger::new();
    let sessions = SessionMiddleware::with_config(manager, CookieConfig::default())
        .unwrap()
        .with_tagger(tagger.clone());
    let server = serve(sessions);

    let r = get_with(&server, "/visits", None).await;
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    let cookie = r.cookie_pair();
    let id = SessionId::parse(cookie.split_once('=').unwrap().1).unwrap();

    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TRIGGER no_insert BEFORE INSERT ON \"{table}\" \
           BEGIN SELECT RAISE(ABORT, 'writes refused by the test trigger'); END; \
         CREATE TRIGGER no_update BEFORE UPDATE ON \"{table}\" \
           BEGIN SELECT RAISE(ABORT, 'writes refused by the test trigger'); END;"
    ))
    .unwrap();
    let r = get_with(&server, "/visits", Some(&cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (500, ""), "an empty 500");
    assert!(r.set_cookies().is_empty(), "{:?}", r.headers);
    let r = get_with(&server, "/visits", None).await;
    assert_eq!(r.status, 500, "a new session's failed save too");
    assert!(r.set_cookies().is_empty(), "{:?}", r.headers);

    // the table goes: the handler's load fails, session_actix::Error answers and logs it
    conn.execute_batch(&format!("DROP TABLE \"{table}\""))
        .unwrap();
    let r = get_with(&server, "/read", Some(&cookie)).await;
    assert_eq!((r.status, r.body.as_str()), (500, "session error"));
    server.stop().await;

    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    let lines = |needles: &[&str]| -> Vec<String> {
        text.lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    };
    let saves = lines(&["ERROR", "session save failed", "refused by the test"]);
    assert_eq!(saves.len(), 2, "each failed save logged once:\n{text}");
    let tag = tagger.tag(&id);
    assert!(
        saves
            .iter()
            .any(|l| l.contains(&format!("session=\"{tag}\""))),
        "the live session's is tagged {tag}:\n{text}"
    );
    assert!(
        saves.iter().all(|l| l.contains("session.request{")),
        "{text}"
    );
    let loads = lines(&["ERROR", "session call failed", "no such table"]);
    assert_eq!(loads.len(), 1, "the failed load logged once:\n{text}");
    assert!(
        loads[0].contains(&format!("session=\"{tag}\"")),
        "{}",
        loads[0]
    );
    assert!(
        !text.contains(id.as_str()),
        "the raw id is in the log:\n{text}"
    );
}
