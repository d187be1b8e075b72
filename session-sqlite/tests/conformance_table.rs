//! The shared conformance suite on a store with its own table name (`web_sessions`), in a file
//! that also holds a store on the default tables with a session, an owner binding and a lock of
//! its own: none of them may show through (scans, owner index, locks, purge).

use std::sync::Arc;
use std::time::Duration;

use session_conformance::Fixture;
use session_core::{SessionId, Storage, Value};
use session_sqlite::SqliteStore;

async fn new_store() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.db");
    let neighbour = SqliteStore::open(&path)
        .await
        .expect("open the default tables");
    let id = SessionId::generate().expect("rng");
    let ttl = Duration::from_secs(3600);
    let value = Value::encode("neighbour").expect("encode");
    neighbour.set(&id, "k", value, ttl).await.expect("set");
    neighbour.index_add("user", &id, ttl).await.expect("bind");
    neighbour.try_lock(&id, ttl).await.expect("lock");
    let store = SqliteStore::builder()
        .table("web_sessions")
        .open(&path)
        .await
        .expect("open a named table set in the same file");
    // Guards drop in order: the neighbour's threads stop before the directory goes.
    Fixture::new(Arc::new(store))
        .neighbour(Arc::new(neighbour))
        .guard(dir)
}

session_conformance::suite!(new_store);
