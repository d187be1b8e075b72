//! Driver tests against the real PostgreSQL (`POSTGRES_URL` overrides): the ones every SQL
//! dialect shares (reopening, batched purge, the schema version, table names, a schema that
//! qualifies the tables, a server that is down, calls after `close`, writers on separate pools),
//! and the server killing the pool's connections. Each test works in its own schema and drops
//! it.
#![allow(clippy::unwrap_used)]

mod common;

use common::Suite;
use session_core::{SessionId, Storage};
use session_postgres::PostgresStore;
use session_postgres::sqlx::{self, Connection, PgConnection, Row};
use session_sql::testing::{HOUR, val};

session_sql::sql_driver_tests!(common::Server);

#[tokio::test]
async fn killed_connections_are_replaced() {
    use std::str::FromStr;

    use session_postgres::sqlx::postgres::PgConnectOptions;

    let schema = Suite::create_namespace("killed").await;
    let app = session_sql::testing::unique_name("app");
    let options = PgConnectOptions::from_str(&common::url::<common::Server>())
        .unwrap()
        .application_name(&app);
    let store = PostgresStore::builder()
        .schema(&schema)
        .max_connections(2)
        .open_with(options)
        .await
        .unwrap();
    let id = SessionId::generate().unwrap();
    store.set(&id, "k", val("v"), HOUR).await.unwrap();

    // The server ends every connection of the pool (as a restart or a proxy would).
    let mut admin = PgConnection::connect(&common::url::<common::Server>())
        .await
        .unwrap();
    let killed: i64 = sqlx::query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&app)
    .fetch_one(&mut admin)
    .await
    .unwrap()
    .get(0);
    assert!(killed >= 1, "the pool had no connection to kill");

    // The pool notices and connects again: the next calls work, without a new store.
    assert_eq!(store.get(&id, "k").await.unwrap(), Some(val("v")));
    store.set(&id, "k2", val("w"), HOUR).await.unwrap();
    assert_eq!(store.get_size(&id).await.unwrap(), 2);
    store.close().await;
    Suite::drop_namespace(&schema).await;
}
