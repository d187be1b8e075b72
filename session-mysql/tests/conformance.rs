//! The shared conformance suite against the real MariaDB on 127.0.0.1:3306 (`MYSQL_URL`
//! overrides), each case in a fresh database that the teardown drops.

mod common;

use common::Suite;
use session_conformance::Fixture;

/// A store in a fresh namespace, and its neighbour (which the scan cases fill) on another table
/// of the same namespace.
async fn new_store() -> Fixture {
    let (store, neighbour) = Suite::new_store_and_neighbour().await;
    Fixture::new(store).neighbour(neighbour)
}

session_conformance::suite!(new_store, Suite::teardown);
