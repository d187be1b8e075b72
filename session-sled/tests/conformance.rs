//! The shared conformance suite, each case on a fresh temporary sled database (real sled on disk,
//! deleted when the store is dropped).

use std::sync::Arc;

use session_core::Storage;
use session_sled::SledStore;

async fn new_store() -> Arc<dyn Storage> {
    Arc::new(
        SledStore::builder()
            .temporary()
            .await
            .expect("open a temporary sled database"),
    )
}

session_conformance::suite!(new_store);
