//! Two processes sharing one database file: no lost updates, and a lease lock that excludes
//! across processes; and a process killed (SIGKILL) in the middle of group commits loses no write
//! it was answered for. The parent tests re-run this test binary as child processes: the ignored
//! test `child_worker` is what a child runs, told what to do by environment variables.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use session_core::{ChangeSet, SessionId, Storage, Value, check};
use session_sqlite::SqliteStore;

const HOUR: Duration = Duration::from_secs(3600);

/// Runs `child_worker` in two child processes at once and checks that both succeed.
fn run_children(mode: &str, db: &Path, id: &SessionId, n: usize) {
    let exe = std::env::current_exe().expect("test binary path");
    // Both children start their work at the same instant, so their writes overlap.
    let start_at = check::now_millis() + 1_000;
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|prefix| {
            Command::new(&exe)
                .args(["child_worker", "--exact", "--ignored", "--nocapture"])
                .env("SESSION_SQLITE_CHILD", mode)
                .env("SESSION_SQLITE_DB", db)
                .env("SESSION_SQLITE_ID", id.as_str())
                .env("SESSION_SQLITE_PREFIX", prefix)
                .env("SESSION_SQLITE_N", n.to_string())
                .env("SESSION_SQLITE_START_AT", start_at.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a child process")
        })
        .collect();
    for child in children {
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("wait for child");
        assert!(
            status.success(),
            "a child process failed: {status}\n{}\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_lose_no_updates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("shared.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let id = SessionId::generate().unwrap();
    let n = 150;
    tokio::task::spawn_blocking({
        let (db, id) = (db.clone(), id.clone());
        move || run_children("apply", &db, &id, n)
    })
    .await
    .unwrap();
    let data = store.get_map(&id).await.unwrap();
    for prefix in ["a", "b"] {
        for i in 0..n {
            let key = format!("{prefix}-{i}");
            assert_eq!(
                data.get(&key),
                Some(&Value::encode(&i).unwrap()),
                "{key} was lost"
            );
        }
    }
    assert_eq!(data.len(), 2 * n);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_lease_lock_excludes_across_processes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("locked.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let id = SessionId::generate().unwrap();
    let n = 40;
    tokio::task::spawn_blocking({
        let (db, id) = (db.clone(), id.clone());
        move || run_children("lock", &db, &id, n)
    })
    .await
    .unwrap();
    // Each child did n unprotected read-increment-write cycles under the lock: none was lost.
    let counter: usize = store
        .get(&id, "counter")
        .await
        .unwrap()
        .expect("counter written")
        .decode()
        .unwrap();
    assert_eq!(counter, 2 * n);
    // The lock is free again.
    assert!(store.try_lock(&id, HOUR).await.unwrap().is_some());
}

/// A child writes sessions from 16 tasks at once (so the writes go in group commits) and prints
/// each id once its write was answered; the parent kills it with SIGKILL mid-stream. Every
/// printed id must be in the file afterwards, with its value: a caller is answered only after
/// the commit holding its write returned.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_process_loses_no_answered_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("killed.db");
    drop(SqliteStore::open(&db).await.unwrap());
    let exe = std::env::current_exe().expect("test binary path");
    let printed = tokio::task::spawn_blocking({
        let db = db.clone();
        move || {
            let mut child = Command::new(&exe)
                .args(["child_worker", "--exact", "--ignored", "--nocapture"])
                .env("SESSION_SQLITE_CHILD", "write_forever")
                .env("SESSION_SQLITE_DB", &db)
                .env("SESSION_SQLITE_ID", SessionId::generate().unwrap().as_str())
                .env("SESSION_SQLITE_PREFIX", "k")
                .env("SESSION_SQLITE_N", "0")
                .env("SESSION_SQLITE_START_AT", "0")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn a child process");
            let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
            let mut printed = Vec::new();
            while printed.len() < 600 {
                match lines.next() {
                    Some(line) => {
                        if let Some(rest) = line.unwrap().strip_prefix("answered ") {
                            printed.push(rest.to_owned());
                        }
                    }
                    None => panic!("the child stopped before it was killed"),
                }
            }
            child.kill().expect("SIGKILL"); // SIGKILL on Unix: no destructor, no flush runs
            // What the child printed before it died was answered too.
            for line in lines {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("answered ") {
                    printed.push(rest.to_owned());
                }
            }
            let _ = child.wait();
            printed
        }
    })
    .await
    .unwrap();
    let store = SqliteStore::open(&db).await.unwrap();
    for line in &printed {
        let (id, n) = line.split_once(' ').expect("id and value");
        let id = SessionId::parse(id).unwrap();
        let n: u64 = n.parse().unwrap();
        assert_eq!(
            store.get(&id, "k").await.unwrap(),
            Some(Value::encode(&n).unwrap()),
            "answered write {id} is missing after the kill"
        );
    }
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run by the multiprocess tests"))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a child process of the multiprocess tests, not a test of its own"]
async fn child_worker() {
    let mode = env("SESSION_SQLITE_CHILD");
    let store = SqliteStore::open(env("SESSION_SQLITE_DB")).await.unwrap();
    let id = SessionId::parse(&env("SESSION_SQLITE_ID")).unwrap();
    let prefix = env("SESSION_SQLITE_PREFIX");
    let n: usize = env("SESSION_SQLITE_N").parse().unwrap();
    let start_at: u64 = env("SESSION_SQLITE_START_AT").parse().unwrap();
    let wait = start_at.saturating_sub(check::now_millis());
    tokio::time::sleep(Duration::from_millis(wait)).await;

    match mode.as_str() {
        "apply" => {
            // Four tasks per process, each applying its share of distinct keys.
            let tasks = (0..4).map(|t| {
                let (store, id, prefix) = (store.clone(), id.clone(), prefix.clone());
                tokio::spawn(async move {
                    for i in (t..n).step_by(4) {
                        let mut changes = ChangeSet::default();
                        changes
                            .set
                            .insert(format!("{prefix}-{i}"), Value::encode(&i).unwrap());
                        assert!(store.apply(&id, changes, HOUR).await.unwrap());
                    }
                })
            });
            for t in tasks {
                t.await.unwrap();
            }
        }
        "lock" => {
            for _ in 0..n {
                let give_up = Instant::now() + Duration::from_secs(30);
                let token = loop {
                    if let Some(token) = store.try_lock(&id, Duration::from_secs(10)).await.unwrap()
                    {
                        break token;
                    }
                    assert!(Instant::now() < give_up, "lock never became free");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                };
                // An unprotected read-modify-write: only the lock keeps it from losing counts.
                let old: usize = match store.get(&id, "counter").await.unwrap() {
                    Some(v) => v.decode().unwrap(),
                    None => 0,
                };
                tokio::time::sleep(Duration::from_millis(2)).await;
                store
                    .set(&id, "counter", Value::encode(&(old + 1)).unwrap(), HOUR)
                    .await
                    .unwrap();
                assert!(store.unlock(&id, &token).await.unwrap(), "lost the lock");
            }
        }
        "write_forever" => {
            // Until killed: 16 tasks, each setting new sessions and printing each one answered.
            let tasks = (0..16u64).map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0u64.. {
                        let id = SessionId::generate().unwrap();
                        let n = t * 1_000_000 + i;
                        store
                            .set(&id, "k", Value::encode(&n).unwrap(), HOUR)
                            .await
                            .unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "answered {} {n}", id.as_str()).unwrap();
                        out.flush().unwrap();
                    }
                })
            });
            for t in tasks {
                t.await.unwrap();
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}
