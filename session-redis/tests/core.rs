//! The whole conformance suite against the driver's required core alone: a wrapper that forwards
//! only `load`, `apply`, `remove_all` and the capability methods, so every GoFrame method runs
//! as the provided default over them. This checks the apply script's `Expiry::Keep` (the
//! default `remove`) and that each override `RedisStore` keeps (`get`, `get_size`, `remove`,
//! `set_session`, `update_ttl`) answers as the default it replaces.

mod common;

use std::sync::Arc;

use session_conformance::{CoreOnly, Fixture};

async fn new_store() -> Fixture {
    let store = common::open_shared("core").await;
    Fixture::new(common::register_as(
        store.clone(),
        Arc::new(CoreOnly(store)),
    ))
    .neighbour(common::register(
        common::open_shared("core-neighbour").await,
    ))
}

session_conformance::suite!(new_store, common::teardown);
