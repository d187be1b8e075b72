//! The shared conformance suite against the real MariaDB on 127.0.0.1:3306 (`MYSQL_URL`
//! overrides), each case in a fresh database that the teardown drops.

mod common;

use common::{new_store, teardown};

session_conformance::suite!(new_store, teardown);
