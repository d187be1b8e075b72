//! Compares the two table layouts considered for the SQLite driver, on raw rusqlite, so the choice
//! in the README rests on numbers:
//!
//! * `row`: a row per key, `sessions(id, expires_at)` + `session_values(id, key, value)`;
//! * `blob`: a row per session, `sessions(id, expires_at, data)` with the whole map as one
//!   MessagePack blob.
//!
//! Both use WAL with `synchronous = NORMAL` and cached prepared statements, like the driver.
//! Run once with `cargo run --release -p session-sqlite --example layout_bench`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

const SESSIONS: usize = 1_000;
const VALUE_LEN: usize = 64;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn open(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn
}

/// A cheap deterministic pseudo-random sequence (xorshift), so both layouts see the same ids.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 as usize
    }
}

trait Layout {
    fn name(&self) -> &'static str;
    fn load(&self, id: &str) -> usize;
    fn get(&self, id: &str, key: &str) -> bool;
    fn set(&mut self, id: &str, key: &str, value: &[u8]);
}

struct Row(Connection);
impl Row {
    fn new(path: &std::path::Path) -> Self {
        let c = open(path);
        c.execute_batch(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
             CREATE INDEX sessions_expires_at ON sessions(expires_at);
             CREATE TABLE session_values (id TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                 PRIMARY KEY (id, key)) WITHOUT ROWID;",
        )
        .unwrap();
        Row(c)
    }
}
impl Layout for Row {
    fn name(&self) -> &'static str {
        "row per key"
    }
    fn load(&self, id: &str) -> usize {
        let mut st = self
            .0
            .prepare_cached(
                "SELECT v.key, v.value FROM sessions s JOIN session_values v ON v.id = s.id
                 WHERE s.id = ?1 AND s.expires_at > ?2",
            )
            .unwrap();
        let rows = st
            .query_map(params![id, now_ms()], |r| {
                Ok((r.get::<_, String>(0)?, Bytes::from(r.get::<_, Vec<u8>>(1)?)))
            })
            .unwrap();
        rows.map(|r| r.unwrap())
            .collect::<HashMap<String, Bytes>>()
            .len()
    }
    fn get(&self, id: &str, key: &str) -> bool {
        let mut st = self
            .0
            .prepare_cached(
                "SELECT v.value FROM sessions s JOIN session_values v ON v.id = s.id
                 WHERE s.id = ?1 AND v.key = ?2 AND s.expires_at > ?3",
            )
            .unwrap();
        st.query_row(params![id, key, now_ms()], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .unwrap()
            .is_some()
    }
    fn set(&mut self, id: &str, key: &str, value: &[u8]) {
        let now = now_ms();
        let tx = self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        {
            let old: Option<i64> = tx
                .prepare_cached("SELECT expires_at FROM sessions WHERE id = ?1")
                .unwrap()
                .query_row([id], |r| r.get(0))
                .optional()
                .unwrap();
            if old.is_some_and(|e| e <= now) {
                tx.prepare_cached("DELETE FROM session_values WHERE id = ?1")
                    .unwrap()
                    .execute([id])
                    .unwrap();
            }
            tx.prepare_cached(
                "INSERT INTO sessions (id, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at",
            )
            .unwrap()
            .execute(params![id, now + 3_600_000])
            .unwrap();
            tx.prepare_cached(
                "INSERT INTO session_values (id, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id, key) DO UPDATE SET value = excluded.value",
            )
            .unwrap()
            .execute(params![id, key, value])
            .unwrap();
        }
        tx.commit().unwrap();
    }
}

struct Blob(Connection);
impl Blob {
    fn new(path: &std::path::Path) -> Self {
        let c = open(path);
        c.execute_batch(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, expires_at INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID;
             CREATE INDEX sessions_expires_at ON sessions(expires_at);",
        )
        .unwrap();
        Blob(c)
    }
    fn read(conn: &Connection, id: &str, now: i64) -> Option<HashMap<String, Bytes>> {
        let blob: Option<Vec<u8>> = conn
            .prepare_cached("SELECT data FROM sessions WHERE id = ?1 AND expires_at > ?2")
            .unwrap()
            .query_row(params![id, now], |r| r.get(0))
            .optional()
            .unwrap();
        blob.map(|b| rmp_serde::from_slice(&b).unwrap())
    }
}
impl Layout for Blob {
    fn name(&self) -> &'static str {
        "blob per session"
    }
    fn load(&self, id: &str) -> usize {
        Blob::read(&self.0, id, now_ms()).map_or(0, |m| m.len())
    }
    fn get(&self, id: &str, key: &str) -> bool {
        Blob::read(&self.0, id, now_ms()).is_some_and(|m| m.contains_key(key))
    }
    fn set(&mut self, id: &str, key: &str, value: &[u8]) {
        let now = now_ms();
        let tx = self
            .0
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        let mut map = Blob::read(&tx, id, now).unwrap_or_default();
        map.insert(key.to_owned(), Bytes::copy_from_slice(value));
        let blob = rmp_serde::to_vec(&map).unwrap();
        tx.prepare_cached(
            "INSERT INTO sessions (id, expires_at, data) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, data = excluded.data",
        )
        .unwrap()
        .execute(params![id, now + 3_600_000, blob])
        .unwrap();
        tx.commit().unwrap();
    }
}

fn rate(n: usize, d: Duration) -> String {
    format!("{:>7.0}/s", n as f64 / d.as_secs_f64())
}

fn run(layout: &mut dyn Layout, keys: usize) {
    let value = vec![7u8; VALUE_LEN];
    let ids: Vec<String> = (0..SESSIONS).map(|i| format!("session-{i:08}")).collect();
    for id in &ids {
        for k in 0..keys {
            layout.set(id, &format!("key-{k}"), &value);
        }
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let reads = 20_000;
    let t = Instant::now();
    for _ in 0..reads {
        let n = layout.load(&ids[rng.next() % SESSIONS]);
        assert_eq!(n, keys);
    }
    let load = t.elapsed();
    let t = Instant::now();
    for _ in 0..reads {
        let k = format!("key-{}", rng.next() % keys);
        assert!(layout.get(&ids[rng.next() % SESSIONS], &k));
    }
    let get = t.elapsed();
    let writes = 5_000;
    let t = Instant::now();
    for _ in 0..writes {
        let k = format!("key-{}", rng.next() % keys);
        layout.set(&ids[rng.next() % SESSIONS], &k, &value);
    }
    let set = t.elapsed();
    // A request cycle of the session layer: load the session, then write one key back.
    let t = Instant::now();
    for _ in 0..writes {
        let id = &ids[rng.next() % SESSIONS];
        assert_eq!(layout.load(id), keys);
        layout.set(id, &format!("key-{}", rng.next() % keys), &value);
    }
    let cycle = t.elapsed();
    println!(
        "{:<17} {:>4} keys | load {} | get one key {} | set one key {} | load+set {}",
        layout.name(),
        keys,
        rate(reads, load),
        rate(reads, get),
        rate(writes, set),
        rate(writes, cycle)
    );
}

fn main() {
    println!(
        "{SESSIONS} sessions, {VALUE_LEN}-byte values, WAL + synchronous=NORMAL, one connection, release build"
    );
    for keys in [10, 100] {
        let dir = tempfile::tempdir().unwrap();
        run(&mut Row::new(&dir.path().join("row.db")), keys);
        run(&mut Blob::new(&dir.path().join("blob.db")), keys);
    }
}
