//! The shared conformance suite, one test per case, each on a store in a fresh temporary
//! directory that the store owns: the directory is deleted when the case drops the store.

use std::sync::Arc;

use session_conformance::Fixture;
use session_file::FileStore;

/// A store in a fresh temporary directory, and its neighbour (which the scan cases fill) in a
/// sibling directory; the fixture deletes both when the case is done.
async fn new_store() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FileStore::open(dir.path().join("sessions"))
        .await
        .expect("a store in a fresh directory");
    let neighbour = FileStore::open(dir.path().join("other-app"))
        .await
        .expect("a neighbour store in a sibling directory");
    Fixture::new(Arc::new(store))
        .neighbour(Arc::new(neighbour))
        .guard(dir)
}

session_conformance::suite!(new_store);
