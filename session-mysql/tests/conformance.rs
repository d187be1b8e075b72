//! The shared conformance suite against the real MariaDB on 127.0.0.1:3306 (`MYSQL_URL`
//! overrides), each case in a fresh database that the teardown drops.

mod common;

use common::Suite;

session_conformance::suite!(Suite::new_store, Suite::teardown);
