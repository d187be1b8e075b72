//! The test server: the machine's MariaDB (`MYSQL_URL` overrides), a fresh database per test.
//! Everything else is `session_sql::testing`.
#![allow(dead_code)]

use std::str::FromStr;

use session_core::Result;
use session_mysql::sqlx::mysql::MySqlConnectOptions;
use session_mysql::{MySqlDialect, MySqlStore, MySqlStoreBuilder};
use session_sql::testing::TestServer;

pub use session_sql::testing::url;

/// The shared helpers and tests for this server: `Suite::new_store`, `Suite::admin`, ...
pub type Suite = session_sql::testing::Suite<Server>;

/// MariaDB as `root` without a password; a namespace is a database.
pub struct Server;

/// The connect options of the test server's URL.
pub fn options() -> MySqlConnectOptions {
    MySqlConnectOptions::from_str(&url::<Server>()).expect("MYSQL_URL is a valid URL")
}

#[session_core::async_trait]
impl TestServer for Server {
    type Dialect = MySqlDialect;
    const URL_VAR: &'static str = "MYSQL_URL";
    const DEFAULT_URL: &'static str = "mysql://root@127.0.0.1:3306";
    const START: &'static str = "bash scripts/services (or start-stop-daemon --start --oknodo \
        --background --exec /usr/sbin/mariadbd)";
    const CREATE_NAMESPACE: &'static str = "CREATE DATABASE `{ns}`";
    const DROP_NAMESPACE: &'static str = "DROP DATABASE IF EXISTS `{ns}`";
    const QUOTE_BREAKER: &'static str = "x`; DROP DATABASE mysql; --";

    fn url_on_port(port: u16) -> String {
        format!("mysql://root@127.0.0.1:{port}/test")
    }

    /// The database of the connection, as most applications set it.
    async fn open_in(builder: MySqlStoreBuilder, database: &str) -> Result<MySqlStore> {
        builder.open_with(options().database(database)).await
    }
}
