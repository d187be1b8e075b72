//! The shared conformance suite against the real Redis on 127.0.0.1:6379 (`REDIS_URL` overrides),
//! one key prefix per case, every key of the prefix deleted after the case.

mod common;

use session_conformance::Fixture;

/// A store with a fresh prefix on the shared server, and its neighbour (which the scan cases
/// fill) under another prefix on the same server.
async fn new_store() -> Fixture {
    Fixture::new(common::register(common::open_shared("conf").await)).neighbour(common::register(
        common::open_shared("conf-neighbour").await,
    ))
}

session_conformance::suite!(new_store, common::teardown);
