//! `suite!(ctor)` (no teardown) on the reference store: one test per case.

mod support;

use std::sync::Arc;

use session_core::Storage;

async fn new_store() -> Arc<dyn Storage> {
    support::reference().await
}

session_conformance::suite!(new_store);
