//! How calls reach SQLite: group commit of the writes (a failing write fails alone, every write
//! lands, an answered write is committed), and inline reads beside them. (That an inline read
//! never waits on the caller's thread, for a lock or a connection, is tested in `src/pool.rs`.)
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};
use session_core::driver::record::Record;
use session_core::{ChangeSet, Data, Error, SessionId, Storage, Value};
use session_sqlite::SqliteStore;
use tempfile::TempDir;

const HOUR: Duration = Duration::from_secs(3600);

async fn fresh() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("sessions.db"))
        .await
        .expect("open");
    (dir, store)
}

fn id() -> SessionId {
    SessionId::generate().expect("rng")
}

fn v(x: u64) -> Value {
    Value::encode(&x).expect("encode")
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The values stored in session `id`'s row (decoded from its record body), read by `conn`.
fn stored(conn: &Connection, id: &str) -> Option<Data> {
    conn.query_row("SELECT data FROM sessions WHERE id = ?1", [id], |r| {
        r.get::<_, Vec<u8>>(0)
    })
    .optional()
    .unwrap()
    .map(|body| Record::decode_body(0, &body, "test").unwrap().data)
}

/// How many keys every row of the session table holds together.
fn stored_keys(conn: &Connection) -> usize {
    let mut st = conn.prepare("SELECT id FROM sessions").unwrap();
    let ids: Vec<String> = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    ids.iter()
        .map(|id| stored(conn, id).map_or(0, |d| d.len()))
        .sum()
}

/// Holds the database's write lock from another connection, as another process would, so that
/// the store's writer waits in `BEGIN IMMEDIATE` and every write made meanwhile queues up for
/// the next group commit.
fn hold_write_lock(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_applies_on_different_sessions_all_land() {
    let (_dir, store) = fresh().await;
    let (tasks, each) = (64usize, 25u64);
    let writers = (0..tasks).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..each {
                let s = id();
                let mut changes = ChangeSet::default();
                changes.set.insert("a".into(), v(i));
                changes.set.insert("b".into(), v(i + 1));
                assert!(store.apply(&s, changes, HOUR).await.unwrap());
                ids.push(s);
            }
            ids
        })
    });
    let mut ids = Vec::new();
    for w in writers {
        ids.extend(w.await.unwrap());
    }
    let conn = Connection::open(store.path()).unwrap();
    let n = i64::try_from(tasks).unwrap() * i64::try_from(each).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM sessions"), n);
    assert_eq!(stored_keys(&conn), 2 * usize::try_from(n).unwrap());
    for (i, s) in ids.iter().enumerate().step_by(97) {
        let want = v(u64::try_from(i).unwrap() % each + 1);
        assert_eq!(store.get(s, "b").await.unwrap(), Some(want));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_ok_is_committed_for_a_fresh_connection() {
    let (_dir, store) = fresh().await;
    let tasks = (0..8).map(|t| {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..40u64 {
                let s = id();
                store.set(&s, "k", v(t * 1000 + i), HOUR).await.unwrap();
                let token = store.try_lock(&s, HOUR).await.unwrap().expect("free");
                // A connection opened after the answer sees the write and the lock.
                let conn = Connection::open(store.path()).unwrap();
                let value = stored(&conn, s.as_str()).and_then(|mut d| d.remove("k"));
                assert_eq!(value, Some(v(t * 1000 + i)));
                let held: Option<String> = conn
                    .query_row(
                        "SELECT token FROM sessions_locks WHERE id = ?1",
                        [s.as_str()],
                        |r| r.get(0),
                    )
                    .optional()
                    .unwrap();
                assert_eq!(held.as_deref(), Some(token.as_str()));
            }
        })
    });
    for t in tasks {
        t.await.unwrap();
    }
}

/// One write of a batch fails in the database (its session's stored deadline is not a number):
/// only its caller gets an error, the writes queued with it all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_in_the_database_fails_alone_in_its_batch() {
    let (_dir, store) = fresh().await;
    let bad = id();
    let setup = Connection::open(store.path()).unwrap();
    setup
        .execute(
            "INSERT INTO sessions VALUES (?1, 'not a number', 0, x'92c080')",
            [bad.as_str()],
        )
        .unwrap();
    let lock = hold_write_lock(store.path());
    let spawn_set = |s: SessionId, x: u64| {
        let store = store.clone();
        tokio::spawn(async move { store.set(&s, "k", v(x), HOUR).await })
    };
    // The first write waits for the lock; the others queue behind it, in one batch.
    let first = spawn_set(id(), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let good: Vec<SessionId> = (0..20).map(|_| id()).collect();
    let mut writes: Vec<_> = good[..10]
        .iter()
        .enumerate()
        .map(|(i, s)| spawn_set(s.clone(), i as u64))
        .collect();
    let failing = spawn_set(bad.clone(), 99);
    writes.extend(
        good[10..]
            .iter()
            .enumerate()
            .map(|(i, s)| spawn_set(s.clone(), 10 + i as u64)),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!first.is_finished() && !failing.is_finished());
    lock.execute_batch("COMMIT").unwrap();

    first.await.unwrap().unwrap();
    let err = failing.await.unwrap().expect_err("corrupt deadline");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    for w in writes {
        w.await.unwrap().unwrap();
    }
    for (i, s) in good.iter().enumerate() {
        assert_eq!(store.get(s, "k").await.unwrap(), Some(v(i as u64)));
    }
    let conn = Connection::open(store.path()).unwrap();
    assert_eq!(stored_keys(&conn), 21);
    let stray = stored(&conn, bad.as_str()).expect("the corrupt row stays as it was");
    assert!(stray.is_empty(), "the failed write left a value behind");
}

/// Writes queued behind a lock held elsewhere all fail with the busy error when it is held past
/// the busy timeout, and the store works again once it is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_cannot_get_the_lock_fails_every_write_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::builder()
        .busy_timeout(Duration::from_millis(300))
        .open(dir.path().join("busy.db"))
        .await
        .unwrap();
    let lock = hold_write_lock(store.path());
    let writes: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.set(&id(), "k", v(i), HOUR).await })
        })
        .collect();
    for w in writes {
        let err = w.await.unwrap().expect_err("busy");
        assert!(matches!(err, Error::Backend { .. }), "{err}");
        assert!(err.to_string().contains("locked"), "{err}");
    }
    drop(lock);
    let s = id();
    store.set(&s, "k", v(1), HOUR).await.unwrap();
    assert_eq!(store.get(&s, "k").await.unwrap(), Some(v(1)));
}

/// Many tasks reading at once on two runtime threads, more tasks than reader connections, while
/// writes run: every read answers with the committed value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_and_writes_see_committed_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::builder()
        .readers(1)
        .open(dir.path().join("few.db"))
        .await
        .unwrap();
    let ids: Vec<SessionId> = (0..16).map(|_| id()).collect();
    for s in &ids {
        store.set(s, "n", v(0), HOUR).await.unwrap();
    }
    let tasks = ids.iter().cloned().map(|s| {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 1..=30u64 {
                store.set(&s, "n", v(i), HOUR).await.unwrap();
                assert_eq!(store.get(&s, "n").await.unwrap(), Some(v(i)));
                assert_eq!(store.get_size(&s).await.unwrap(), 1);
                let page = store.scan(None, 100).await.unwrap();
                assert_eq!(page.ids.len(), 16);
            }
        })
    });
    for t in tasks {
        t.await.unwrap();
    }
}

/// Between writes the writer holds a read transaction on the newest snapshot (so that inline
/// reads find their WAL read-mark lock already held in the process); that hold must never keep
/// another connection (another process, an operator's `sqlite3`) from checkpointing and
/// truncating the WAL: it moves to read-mark 0 once everything is copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_store_lets_another_connection_truncate_the_wal() {
    let (_dir, store) = fresh().await;
    for i in 0..200 {
        store.set(&id(), "k", v(i), HOUR).await.unwrap();
    }
    let s = id();
    store.set(&s, "k", v(1), HOUR).await.unwrap();
    // Idle: the writer now holds its read snapshot.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let wal = store.path().with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "nothing in the WAL"
    );
    let path = store.path().to_owned();
    let (busy, _, _): (i64, i64, i64) = tokio::task::spawn_blocking(move || {
        let other = Connection::open(path).unwrap();
        other.busy_timeout(Duration::from_secs(5)).unwrap();
        other
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(busy, 0, "the checkpoint could not finish");
    assert_eq!(
        std::fs::metadata(&wal).unwrap().len(),
        0,
        "the WAL was not truncated"
    );
    // The store reads and writes on, across the truncated WAL.
    assert_eq!(store.get(&s, "k").await.unwrap(), Some(v(1)));
    store.set(&s, "k", v(2), HOUR).await.unwrap();
    assert_eq!(store.get(&s, "k").await.unwrap(), Some(v(2)));
}
