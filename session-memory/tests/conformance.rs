//! The shared conformance suite, run against a fresh `MemoryStore` per case.

use std::sync::Arc;

use session_conformance::Fixture;
use session_memory::MemoryStore;

/// A fresh store for one case: nothing is shared between cases, so nothing needs cleaning up.
/// The neighbour the scan cases fill is a second store in the same process.
async fn new_store() -> Fixture {
    Fixture::new(Arc::new(MemoryStore::new())).neighbour(Arc::new(MemoryStore::new()))
}

session_conformance::suite!(new_store);
