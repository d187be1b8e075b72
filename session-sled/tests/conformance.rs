//! The shared conformance suite, each case on a fresh temporary sled database (real sled on disk,
//! deleted when the store is dropped).

use std::sync::Arc;

use session_conformance::Fixture;
use session_sled::SledStore;

/// A store in a temporary sled database, and its neighbour (which the scan cases fill) in
/// another namespace of the same database.
async fn new_store() -> Fixture {
    let db = sled::Config::new()
        .temporary(true)
        .open()
        .expect("open a temporary sled database");
    let store = SledStore::builder()
        .namespace("sessions")
        .from_db(db.clone())
        .expect("a store in the database");
    let neighbour = SledStore::builder()
        .namespace("other-app")
        .from_db(db)
        .expect("a neighbour store in the same database");
    Fixture::new(Arc::new(store)).neighbour(Arc::new(neighbour))
}

session_conformance::suite!(new_store);
