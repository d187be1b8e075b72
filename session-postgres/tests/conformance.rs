//! The shared conformance suite against the real PostgreSQL on 127.0.0.1:5432 (`POSTGRES_URL`
//! overrides), each case in a fresh schema that the teardown drops.

mod common;

use common::Suite;

session_conformance::suite!(Suite::new_store, Suite::teardown);
