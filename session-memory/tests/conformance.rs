//! The shared conformance suite, run against a fresh `MemoryStore` per case.

use std::sync::Arc;

use session_core::Storage;
use session_memory::MemoryStore;

/// A fresh store for one case: nothing is shared between cases, so nothing needs cleaning up.
async fn new_store() -> Arc<dyn Storage> {
    Arc::new(MemoryStore::new())
}

session_conformance::suite!(new_store);
