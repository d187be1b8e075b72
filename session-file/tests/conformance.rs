//! The shared conformance suite, one test per case, each on a store in a fresh temporary
//! directory that the store owns: the directory is deleted when the case drops the store.

use std::sync::Arc;

use session_core::Storage;
use session_file::FileStore;

async fn new_store() -> Arc<dyn Storage> {
    Arc::new(
        FileStore::temporary()
            .await
            .expect("a store in a fresh temporary directory"),
    )
}

session_conformance::suite!(new_store);
