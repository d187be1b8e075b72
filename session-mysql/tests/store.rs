//! Driver tests against the real MariaDB/MySQL (`MYSQL_URL` overrides): the ones every SQL
//! dialect shares (reopening, batched purge, the schema version, table names, a schema that
//! qualifies the tables, a server that is down, calls after `close`, writers on separate pools),
//! and the server killing the pool's connections. Each test works in its own database and
//! drops it.
#![allow(clippy::unwrap_used)]

mod common;

use common::Suite;
use session_core::{SessionId, Storage};
use session_mysql::MySqlStore;
use session_mysql::sqlx::{self, Connection, MySqlConnection};
use session_sql::testing::{HOUR, val};

session_sql::sql_driver_tests!(common::Server);

#[tokio::test]
async fn killed_connections_are_replaced() {
    let db = Suite::create_namespace("killed").await;
    let store = MySqlStore::builder()
        .max_connections(2)
        .open_with(common::options().database(&db))
        .await
        .unwrap();
    let id = SessionId::generate().unwrap();
    store.set(&id, "k", val("v"), HOUR).await.unwrap();

    // The server ends every connection of the pool (as a restart or a proxy would).
    let mut admin = MySqlConnection::connect_with(&common::options())
        .await
        .unwrap();
    let ids: Vec<u64> = sqlx::query_scalar(
        "SELECT CAST(ID AS UNSIGNED) FROM information_schema.PROCESSLIST WHERE DB = ?",
    )
    .bind(&db)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!ids.is_empty(), "the pool had no connection to kill");
    for conn in ids {
        // An integer the server gave us: KILL takes no bound parameter.
        sqlx::query(&format!("KILL CONNECTION {conn}"))
            .execute(&mut admin)
            .await
            .unwrap();
    }

    // The pool notices and connects again: the next calls work, without a new store.
    assert_eq!(store.get(&id, "k").await.unwrap(), Some(val("v")));
    store.set(&id, "k2", val("w"), HOUR).await.unwrap();
    assert_eq!(store.get_size(&id).await.unwrap(), 2);
    store.close().await;
    Suite::drop_namespace(&db).await;
}
