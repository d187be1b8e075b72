//! The conformance suite on the driver's required core alone (`CoreOnly`): every GoFrame method
//! runs as the trait's default over `load` and `apply`, so `Expiry::Keep` is checked through the
//! default `remove`, and the overrides this driver keeps (`get`, `get_size`) must answer as the
//! defaults they replace (the main suite runs them).

use std::sync::Arc;

use session_conformance::{CoreOnly, Fixture};
use session_sqlite::SqliteStore;

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
    Fixture::new(Arc::new(CoreOnly(store)))
        .neighbour(Arc::new(neighbour))
        .guard(dir)
}

session_conformance::suite!(new_store);
