//! The shared conformance suite, each case on a fresh database file in its own temporary directory.

use std::sync::Arc;

use session_conformance::Fixture;
use session_sqlite::SqliteStore;

/// A store on a fresh database; the fixture owns the temporary directory, which (with the
/// database in it) is deleted when the case and its teardown are done.
async fn new_store() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("sessions.db"))
        .await
        .expect("open a fresh database");
    Fixture::new(Arc::new(store)).guard(dir)
}

session_conformance::suite!(new_store);
