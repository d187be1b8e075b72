//! The shared conformance suite, each case on a fresh database file in its own temporary directory.

use std::sync::Arc;

use session_conformance::Fixture;
use session_sqlite::SqliteStore;

/// A store on a fresh database; the fixture owns the temporary directory, which (with the
/// database in it) is deleted when the case and its teardown are done.
/// The neighbour the scan cases fill is a second table set in the same file.
async fn new_store() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.db");
    let store = SqliteStore::open(&path)
        .await
        .expect("open a fresh database");
    let neighbour = SqliteStore::builder()
        .table("other_app")
        .open(&path)
        .await
        .expect("open a second table set in the same file");
    Fixture::new(Arc::new(store))
        .neighbour(Arc::new(neighbour))
        .guard(dir)
}

session_conformance::suite!(new_store);
