//! The driver's own tests, on real database files in temporary directories.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use session_core::{ChangeSet, Data, Error, SessionId, Storage, Value};
use session_sqlite::{SCHEMA_VERSION, SqliteStore, Synchronous};
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

/// The keys and the deadline stored in session `id`'s row, live or not, read from the file by
/// another connection: `None` if there is no row.
fn stored(store: &SqliteStore, id: &SessionId) -> Option<(Vec<String>, i64)> {
    use rusqlite::OptionalExtension;
    let conn = Connection::open(store.path()).unwrap();
    let row: Option<(Vec<u8>, i64)> = conn
        .query_row(
            "SELECT data, expires_at FROM sessions WHERE id = ?1",
            [id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .unwrap();
    row.map(|(body, deadline)| {
        let record = session_core::driver::record::Record::decode_body(0, &body, "test").unwrap();
        let mut keys: Vec<String> = record.data.into_keys().collect();
        keys.sort();
        (keys, deadline)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_merge_and_replace() {
    let (_dir, store) = fresh().await;
    let s = id();
    store.set(&s, "a", v(1), HOUR).await.unwrap();
    store
        .set_map(
            &s,
            Data::from([("b".into(), v(2)), ("ключ🔑".into(), v(3))]),
            HOUR,
        )
        .await
        .unwrap();
    assert_eq!(store.get(&s, "a").await.unwrap(), Some(v(1)));
    assert_eq!(store.get(&s, "ключ🔑").await.unwrap(), Some(v(3)));
    assert_eq!(store.get_size(&s).await.unwrap(), 3);
    store
        .set_session(&s, Data::from([("c".into(), v(4))]), HOUR)
        .await
        .unwrap();
    let map = store.get_map(&s).await.unwrap();
    assert_eq!(map, Data::from([("c".into(), v(4))]));
    store.remove(&s, "c").await.unwrap();
    assert_eq!(store.get_session(&s, HOUR, None).await.unwrap(), None);
    assert_eq!(
        store.scan(None, 10).await.unwrap().ids,
        Vec::<SessionId>::new()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.db");
    let s = id();
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.set(&s, "user", v(42), HOUR).await.unwrap();
        store.index_add("alice", &s, HOUR).await.unwrap();
    }
    let store = SqliteStore::builder()
        .readers(1)
        .synchronous(Synchronous::Full)
        .open(&path)
        .await
        .unwrap();
    assert_eq!(store.get(&s, "user").await.unwrap(), Some(v(42)));
    assert_eq!(
        store.index_owner(&s).await.unwrap().as_deref(),
        Some("alice")
    );
    let loaded = store.load(&s).await.unwrap().expect("live");
    assert!(loaded.expires_at.expect("deadline") > std::time::SystemTime::now());
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_removes_exactly_the_expired_sessions() {
    let (_dir, store) = fresh().await;
    let short: Vec<SessionId> = (0..7).map(|_| id()).collect();
    let long: Vec<SessionId> = (0..5).map(|_| id()).collect();
    for s in &short {
        store
            .set(s, "k", v(1), Duration::from_millis(30))
            .await
            .unwrap();
        store
            .set(s, "j", v(2), Duration::from_millis(30))
            .await
            .unwrap();
        store.index_add("bob", s, HOUR).await.unwrap();
    }
    for s in &long {
        store.set(s, "k", v(1), HOUR).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(store.purge_expired().await.unwrap(), 7);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    for s in &long {
        assert_eq!(store.get(s, "k").await.unwrap(), Some(v(1)));
    }
    // No rows of the purged sessions are left behind.
    let conn = Connection::open(store.path()).unwrap();
    let leftovers: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM sessions) + (SELECT count(*) FROM sessions_owners)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(leftovers, 5, "only the live sessions' rows remain");
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_works_across_batches() {
    let (_dir, store) = fresh().await;
    let data: Data = Data::from([("k".into(), v(1))]);
    for _ in 0..1_203 {
        store
            .set_map(&id(), data.clone(), Duration::from_millis(20))
            .await
            .unwrap();
    }
    let keep = id();
    store.set(&keep, "k", v(1), HOUR).await.unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(store.purge_expired().await.unwrap(), 1_203);
    assert_eq!(store.scan(None, 100).await.unwrap().ids, vec![keep]);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_rows_are_never_returned_nor_revived() {
    let (_dir, store) = fresh().await;
    let s = id();
    store
        .set(&s, "old", v(1), Duration::from_millis(20))
        .await
        .unwrap();
    store.index_add("carol", &s, HOUR).await.unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(store.get(&s, "old").await.unwrap(), None);
    assert_eq!(store.get_size(&s).await.unwrap(), 0);
    assert!(store.load(&s).await.unwrap().is_none());
    assert!(store.scan(None, 10).await.unwrap().ids.is_empty());
    assert_eq!(store.index_owner(&s).await.unwrap(), None);
    store.update_ttl(&s, HOUR).await.unwrap();
    assert_eq!(
        store.get_size(&s).await.unwrap(),
        0,
        "update_ttl revived it"
    );
    store.set(&s, "new", v(2), HOUR).await.unwrap();
    assert_eq!(
        store.get_map(&s).await.unwrap(),
        Data::from([("new".into(), v(2))])
    );
    assert_eq!(
        store.index_owner(&s).await.unwrap(),
        None,
        "old binding came back"
    );
}

/// `Expiry::Keep` is reachable only through the driver API (`Storage::apply` always sets a TTL;
/// `remove` uses it with `only_if_exists`): without `only_if_exists` it must still create nothing.
#[tokio::test(flavor = "multi_thread")]
async fn keep_expiry_writes_only_live_sessions_and_keeps_the_deadline() {
    let (_dir, store) = fresh().await;
    // The driver's `apply`, called past the checked `Storage` entry point.
    let keep_apply = async |s: &SessionId, changes| {
        let expiry = session_core::driver::Expiry::Keep;
        session_core::driver::Driver::apply(&store, s, changes, expiry)
            .await
            .unwrap()
    };
    let keep = |set: &[(&str, u64)], remove: &[&str]| ChangeSet {
        set: set.iter().map(|(k, x)| ((*k).to_owned(), v(*x))).collect(),
        remove: remove.iter().map(|k| (*k).to_owned()).collect(),
        ..ChangeSet::default()
    };

    let s = id();
    store.set(&s, "a", v(1), HOUR).await.unwrap();
    let before = store.load(&s).await.unwrap().expect("live").expires_at;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let changes = keep(&[("b", 2)], &["a"]);
    assert!(keep_apply(&s, changes).await);
    let after = store.load(&s).await.unwrap().expect("live");
    assert_eq!(after.expires_at, before, "Keep moved the deadline");
    assert_eq!(after.data, Data::from([("b".into(), v(2))]));
    let changes = keep(&[], &["b"]);
    assert!(!keep_apply(&s, changes).await);
    assert!(store.load(&s).await.unwrap().is_none(), "last key removed");

    let missing = id();
    let changes = keep(&[("a", 1)], &[]);
    assert!(!keep_apply(&missing, changes).await);
    assert_eq!(
        store.get_size(&missing).await.unwrap(),
        0,
        "Keep created it"
    );

    let expired = id();
    store
        .set(&expired, "old", v(1), Duration::from_millis(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    let changes = keep(&[("a", 1)], &[]);
    assert!(!keep_apply(&expired, changes).await);
    let (keys, _) = stored(&store, &expired).expect("the expired row lingers until a purge");
    assert_eq!(keys, ["old"], "Keep wrote to an expired session");
}

#[tokio::test(flavor = "multi_thread")]
async fn scan_pages_through_live_sessions_in_id_order() {
    let (_dir, store) = fresh().await;
    let mut ids: Vec<SessionId> = (0..25).map(|_| id()).collect();
    for s in &ids {
        store.set(s, "k", v(1), HOUR).await.unwrap();
    }
    let dead = id();
    store
        .set(&dead, "k", v(1), Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.scan(cursor.as_deref(), 10).await.unwrap();
        assert!(page.ids.len() <= 10);
        seen.extend(page.ids);
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ids.sort();
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_version_is_set_on_open() {
    let (_dir, store) = fresh().await;
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    let conn = Connection::open(store.path()).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_1_database_is_migrated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v1.db");
    let s = id();
    {
        // The schema as version 1 of this driver wrote it: no owner index, no locks.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
             CREATE INDEX sessions_expires_at ON sessions (expires_at);
             CREATE TABLE session_values (id TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                 PRIMARY KEY (id, key)) WITHOUT ROWID;
             PRAGMA user_version = 1;",
        )
        .unwrap();
        let far = i64::MAX / 2;
        conn.execute(
            "INSERT INTO sessions VALUES (?1, ?2)",
            params![s.as_str(), far],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO session_values VALUES (?1, 'k', ?2)",
            params![s.as_str(), v(9).as_bytes()],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(store.get(&s, "k").await.unwrap(), Some(v(9)));
    store.index_add("dave", &s, HOUR).await.unwrap();
    assert_eq!(store.index_sessions("dave").await.unwrap(), vec![s.clone()]);
    assert!(store.try_lock(&s, HOUR).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_schema_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("future.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let err = SqliteStore::open(&path).await.expect_err("newer schema");
    let msg = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{msg}");
    assert!(msg.contains("schema version 99"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_sqlite_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are not the pages you are looking for\n".repeat(100),
    )
    .unwrap();
    let err = SqliteStore::open(&path).await.expect_err("not a database");
    let msg = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{msg}");
    assert!(msg.contains("not an SQLite database"), "{msg}");
    assert!(msg.contains("notes.txt"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_row_is_an_error_not_a_panic() {
    let (_dir, store) = fresh().await;
    let conn = Connection::open(store.path()).unwrap();
    let far = i64::MAX / 4;
    let corrupt = |err: Error| assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    // Values that are text, not a record body; a body that does not decode; a deadline that
    // is not a number.
    let rows: [(&str, &str); 3] = [
        ("?2, 0, 'some text'", "text values"),
        ("?2, 0, x'92c081a16b'", "a truncated body"),
        ("'soon', ?2 * 0, x'92c080'", "a text deadline"),
    ];
    for (values, what) in rows {
        let s = id();
        conn.execute(
            &format!("INSERT INTO sessions VALUES (?1, {values})"),
            params![s.as_str(), far],
        )
        .unwrap();
        corrupt(store.get(&s, "k").await.expect_err(what));
        corrupt(store.get_map(&s).await.expect_err(what));
        corrupt(store.load(&s).await.expect_err(what));
        // A write that must merge into the row fails clearly and changes nothing.
        if what != "a text deadline" {
            corrupt(store.set(&s, "k", v(1), HOUR).await.expect_err(what));
            let data: Vec<u8> = conn
                .query_row(
                    "SELECT CAST(data AS BLOB) FROM sessions WHERE id = ?1",
                    [s.as_str()],
                    |r| r.get(0),
                )
                .unwrap();
            assert!(!data.is_empty(), "{what}: the row was overwritten");
            // Replacing the whole session (`set_session`) does not need the old values.
            store
                .set_session(&s, Data::from([("k".into(), v(2))]), HOUR)
                .await
                .unwrap();
            assert_eq!(store.get(&s, "k").await.unwrap(), Some(v(2)), "{what}");
        }
    }

    // A stored id that is not a valid session id.
    conn.execute(
        "INSERT INTO sessions VALUES ('../../etc/passwd', ?1, 0, x'92c081a16bc40101')",
        [far],
    )
    .unwrap();
    let err = store.scan(None, 100).await.expect_err("bad stored id");
    corrupt(err);
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_proceed_while_a_write_transaction_is_open() {
    let (_dir, store) = fresh().await;
    let s = id();
    store.set(&s, "k", v(1), HOUR).await.unwrap();

    // Another connection (as another process would) opens a write transaction and holds it.
    let mut other = Connection::open(store.path()).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let mut body = Vec::new();
    session_core::driver::record::Record::new(
        0,
        Data::from([("k".into(), v(1)), ("uncommitted".into(), v(1))]),
    )
    .encode_body_into(&mut body)
    .unwrap();
    tx.execute(
        "UPDATE sessions SET data = ?2 WHERE id = ?1",
        params![s.as_str(), body],
    )
    .unwrap();

    // The store's own writer now waits for the lock (busy timeout 5 s) ...
    let writer = {
        let store = store.clone();
        let s = s.clone();
        tokio::spawn(async move { store.set(&s, "k", v(2), HOUR).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !writer.is_finished(),
        "the write should be waiting for the lock"
    );

    // ... and reads still answer at once, from the last committed state, in parallel.
    let started = Instant::now();
    let reads = (0..16).map(|_| {
        let store = store.clone();
        let s = s.clone();
        tokio::spawn(async move { store.get_map(&s).await })
    });
    for read in reads {
        let map = read.await.unwrap().unwrap();
        assert_eq!(map, HashMap::from([("k".to_string(), v(1))]));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "reads waited {:?} behind the writer",
        started.elapsed()
    );
    assert!(!writer.is_finished());

    tx.commit().unwrap();
    writer.await.unwrap().unwrap();
    assert_eq!(store.get(&s, "k").await.unwrap(), Some(v(2)));
    assert_eq!(store.get_size(&s).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lock_held_too_long_is_a_clear_backend_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::builder()
        .busy_timeout(Duration::from_millis(100))
        .open(dir.path().join("busy.db"))
        .await
        .unwrap();
    let mut other = Connection::open(store.path()).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let err = store.set(&id(), "k", v(1), HOUR).await.expect_err("busy");
    let msg = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{msg}");
    assert!(msg.contains("locked"), "{msg}");
    drop(tx);
    store
        .set(&id(), "k", v(1), HOUR)
        .await
        .expect("works again");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_change_sets_lose_no_keys() {
    let (_dir, store) = fresh().await;
    let s = id();
    let tasks = (0..8).map(|t| {
        let store = store.clone();
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..25 {
                let mut changes = ChangeSet::default();
                changes.set.insert(format!("{t}-{i}"), v(i));
                store.apply(&s, changes, HOUR).await.unwrap();
            }
        })
    });
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.get_size(&s).await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_lock_and_owner_index() {
    let (_dir, store) = fresh().await;
    let s = id();
    let token = store.try_lock(&s, HOUR).await.unwrap().expect("free");
    assert!(store.try_lock(&s, HOUR).await.unwrap().is_none());
    assert!(store.unlock(&s, &token).await.unwrap());
    assert!(!store.unlock(&s, &token).await.unwrap(), "released twice");
    let short = store
        .try_lock(&s, Duration::from_millis(20))
        .await
        .unwrap()
        .expect("free again");
    tokio::time::sleep(Duration::from_millis(40)).await;
    let next = store
        .try_lock(&s, HOUR)
        .await
        .unwrap()
        .expect("lease ran out");
    assert!(
        !store.unlock(&s, &short).await.unwrap(),
        "stale token released"
    );
    assert!(store.unlock(&s, &next).await.unwrap());

    let (a, b) = (id(), id());
    store.set(&a, "k", v(1), HOUR).await.unwrap();
    store.set(&b, "k", v(1), HOUR).await.unwrap();
    store.index_add("erin", &a, HOUR).await.unwrap();
    store.index_add("erin", &b, HOUR).await.unwrap();
    let mut mine = store.index_sessions("erin").await.unwrap();
    mine.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(mine, want);
    store.index_add("frank", &b, HOUR).await.unwrap();
    assert_eq!(store.index_sessions("erin").await.unwrap(), vec![a.clone()]);
    store.remove_all(&a).await.unwrap();
    assert!(store.index_sessions("erin").await.unwrap().is_empty());
    store.index_remove(&b).await.unwrap();
    assert_eq!(store.index_owner(&b).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_rejected_before_the_database() {
    let (_dir, store) = fresh().await;
    let s = id();
    let bad = [
        store.set(&s, "a\0b", v(1), HOUR).await,
        store.set(&s, "k", v(1), Duration::ZERO).await,
        store.update_ttl(&s, Duration::ZERO).await,
        store.index_add("", &s, HOUR).await,
    ];
    for r in bad {
        assert!(matches!(r, Err(Error::InvalidInput(_))), "{r:?}");
    }
    assert_eq!(store.get_size(&s).await.unwrap(), 0);
}

/// A save of a loaded session (`only_if_exists`, keys set, a TTL: the two-statement path that
/// slides the deadline first) writes a live session, removes and sets its keys and moves its
/// deadline; on a missing or expired session it writes nothing and leaves no row behind.
#[tokio::test(flavor = "multi_thread")]
async fn saving_a_loaded_session_writes_only_live_sessions() {
    let (_dir, store) = fresh().await;
    let save = |set: &[(&str, u64)], remove: &[&str]| ChangeSet {
        set: set.iter().map(|(k, x)| ((*k).to_owned(), v(*x))).collect(),
        remove: remove.iter().map(|k| (*k).to_owned()).collect(),
        only_if_exists: true,
        ..ChangeSet::default()
    };

    let s = id();
    store
        .set(&s, "a", v(1), Duration::from_secs(60))
        .await
        .unwrap();
    store
        .set(&s, "b", v(2), Duration::from_secs(60))
        .await
        .unwrap();
    let before = store.load(&s).await.unwrap().expect("live").expires_at;
    // Removing a key and setting another (and one key both removed and set: the set wins).
    let changes = save(&[("c", 3), ("b", 4)], &["a", "b"]);
    assert!(store.apply(&s, changes, HOUR).await.unwrap());
    let after = store.load(&s).await.unwrap().expect("live");
    assert!(after.expires_at > before, "the deadline did not move");
    assert_eq!(
        after.data,
        Data::from([("b".into(), v(4)), ("c".into(), v(3))])
    );

    let missing = id();
    let expired = id();
    store
        .set(&expired, "old", v(1), Duration::from_millis(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(40)).await;
    for (sid, what) in [(&missing, "created"), (&expired, "revived")] {
        let wrote = store
            .apply(sid, save(&[("a", 1)], &[]), HOUR)
            .await
            .unwrap();
        assert!(!wrote, "{what}: apply reported a write");
        assert!(store.load(sid).await.unwrap().is_none(), "{what}");
    }
    let (keys, deadline) = stored(&store, &expired).expect("the expired row lingers");
    assert_eq!(keys, ["old"], "wrote a key to an expired session");
    let now = i64::try_from(session_core::driver::check::now_millis()).unwrap();
    assert!(deadline <= now, "slid the deadline of an expired session");
}

/// The database file a store creates, and SQLite's `-wal` and `-shm` files beside it, are
/// readable by their owner only: they hold session ids, which are bearer secrets. A file that
/// exists keeps its permissions.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_new_database_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, store) = fresh().await;
    store.set(&id(), "k", v(1), HOUR).await.unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", store.path().display()));
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let shared = dir.path().join("shared.db");
    std::fs::write(&shared, b"").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
    let store = SqliteStore::open(&shared).await.unwrap();
    store.set(&id(), "k", v(1), HOUR).await.unwrap();
    assert_eq!(
        mode(&shared),
        0o640,
        "an existing file's permissions changed"
    );
}
