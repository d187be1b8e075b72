//! The whole conformance suite against the driver's required core alone: a wrapper that forwards
//! only `load`, `apply`, `remove_all` and the capability methods, so every GoFrame method runs
//! as the provided default over them. This checks the apply script's `Expiry::Keep` (the
//! default `remove`) and that each override `RedisStore` keeps (`get`, `get_size`, `remove`,
//! `set_session`, `update_ttl`) answers as the default it replaces.

mod common;

use std::sync::Arc;

use session_conformance::CoreOnly;

async fn new_store() -> Arc<dyn session_core::Storage> {
    let store = common::open_shared("core").await;
    common::register_as(store.clone(), Arc::new(CoreOnly(store)))
}

session_conformance::suite!(new_store, common::teardown);
