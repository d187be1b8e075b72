//! Shared test support: the server URL, a fresh schema per test (created here, dropped after),
//! and the conformance teardown registry.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use session_core::{SessionId, Storage};
use session_postgres::PostgresStore;
use session_postgres::sqlx::postgres::PgConnectOptions;
use session_postgres::sqlx::{self, Connection, PgConnection};

/// The server of the tests: `POSTGRES_URL`, or the machine's PostgreSQL as `postgres` with trust
/// auth.
pub fn url() -> String {
    std::env::var("POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn how_to_start() -> String {
    format!(
        "PostgreSQL is not reachable at {} (set POSTGRES_URL to use another server); start it \
         with: bash scripts/services (or pg_ctlcluster --skip-systemctl-redirect \
         $(ls /etc/postgresql) main start)",
        url()
    )
}

/// A connection for setting up and cleaning up, failing with a how-to if the server is down.
pub async fn admin() -> PgConnection {
    let options = PgConnectOptions::from_str(&url()).expect("POSTGRES_URL is a valid URL");
    match PgConnection::connect_with(&options).await {
        Ok(conn) => conn,
        Err(e) => panic!("{} ({e})", how_to_start()),
    }
}

/// A schema name no other test (or test run) uses.
pub fn unique_schema(kind: &str) -> String {
    let random = SessionId::generate().expect("OS randomness");
    let tail: String = random
        .as_str()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    format!("sesstest_{kind}_{tail}")
}

/// Creates a fresh schema and returns its name.
pub async fn create_schema(kind: &str) -> String {
    let schema = unique_schema(kind);
    let mut conn = admin().await;
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut conn)
        .await
        .expect("create the test schema");
    let _ = conn.close().await;
    schema
}

/// Drops a schema made by [`create_schema`], with everything in it.
pub async fn drop_schema(schema: &str) {
    let mut conn = admin().await;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await
        .expect("drop the test schema");
    let _ = conn.close().await;
}

/// Opens a store with a small pool in `schema`.
pub async fn open_in(schema: &str) -> PostgresStore {
    PostgresStore::builder()
        .schema(schema)
        .max_connections(3)
        .connect(&url())
        .await
        .unwrap_or_else(|e| panic!("{} ({e})", how_to_start()))
}

/// Stores handed to the conformance suite, by the address of their `Arc`, so the teardown (which
/// only sees `Arc<dyn Storage>`) can close the pool and drop the schema.
fn registry() -> &'static Mutex<HashMap<usize, PostgresStore>> {
    static REGISTRY: OnceLock<Mutex<HashMap<usize, PostgresStore>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn addr_of(store: &Arc<dyn Storage>) -> usize {
    Arc::as_ptr(store) as *const () as usize
}

/// A fresh store in its own new schema, remembered for [`teardown`].
pub async fn new_store() -> Arc<dyn Storage> {
    let schema = create_schema("conf").await;
    let store = open_in(&schema).await;
    let shared: Arc<dyn Storage> = Arc::new(store.clone());
    registry().lock().unwrap().insert(addr_of(&shared), store);
    shared
}

/// Closes the pool of a store made by [`new_store`] and drops its schema.
pub async fn teardown(store: Arc<dyn Storage>) {
    let found = registry().lock().unwrap().remove(&addr_of(&store));
    let store = found.expect("teardown of a store that new_store did not make");
    store.close().await;
    drop_schema(store.schema().expect("test stores have a schema")).await;
}
