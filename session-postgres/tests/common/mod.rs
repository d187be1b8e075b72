//! The test server: the machine's PostgreSQL (`POSTGRES_URL` overrides), a fresh schema per
//! test. Everything else is `session_sql::testing`.
#![allow(dead_code)]

use session_core::Result;
use session_postgres::{PostgresDialect, PostgresStore, PostgresStoreBuilder};
use session_sql::testing::TestServer;

pub use session_sql::testing::url;

/// The shared helpers and tests for this server: `Suite::new_store`, `Suite::admin`, ...
pub type Suite = session_sql::testing::Suite<Server>;

/// PostgreSQL as `postgres` with trust auth; a namespace is a schema.
pub struct Server;

#[session_core::async_trait]
impl TestServer for Server {
    type Dialect = PostgresDialect;
    const URL_VAR: &'static str = "POSTGRES_URL";
    const DEFAULT_URL: &'static str = "postgres://postgres@127.0.0.1:5432/postgres";
    const START: &'static str = "bash scripts/services (or pg_ctlcluster \
        --skip-systemctl-redirect $(ls /etc/postgresql) main start)";
    const CREATE_NAMESPACE: &'static str = "CREATE SCHEMA \"{ns}\"";
    const DROP_NAMESPACE: &'static str = "DROP SCHEMA IF EXISTS \"{ns}\" CASCADE";
    const QUOTE_BREAKER: &'static str = "x\"; DROP SCHEMA public; --";

    fn url_on_port(port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }

    async fn open_in(builder: PostgresStoreBuilder, schema: &str) -> Result<PostgresStore> {
        builder.schema(schema).open(&url::<Server>()).await
    }
}
