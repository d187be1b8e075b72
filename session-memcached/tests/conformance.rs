//! The shared conformance suite against the real memcached on 127.0.0.1:11211 (`MEMCACHED_URL`
//! overrides), one key prefix per case, every key of the prefix deleted after the case.

mod common;

use std::sync::Arc;

use session_core::Storage;

async fn new_store() -> Arc<dyn Storage> {
    common::register(common::open_shared("conf").await)
}

session_conformance::suite!(new_store, common::teardown);
