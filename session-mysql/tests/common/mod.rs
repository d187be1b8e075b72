//! Shared test support: the server URL, a fresh database per test (created here, dropped after),
//! and the conformance teardown registry.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use session_core::{SessionId, Storage};
use session_mysql::MySqlStore;
use session_mysql::sqlx::mysql::MySqlConnectOptions;
use session_mysql::sqlx::{self, Connection, MySqlConnection};

/// The server of the tests: `MYSQL_URL`, or the machine's MariaDB as `root` without a password.
pub fn url() -> String {
    std::env::var("MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

fn how_to_start() -> String {
    format!(
        "MySQL/MariaDB is not reachable at {} (set MYSQL_URL to use another server); start it \
         with: bash scripts/services (or start-stop-daemon --start --oknodo --background \
         --exec /usr/sbin/mariadbd)",
        url()
    )
}

/// The connect options of [`url`].
pub fn options() -> MySqlConnectOptions {
    MySqlConnectOptions::from_str(&url()).expect("MYSQL_URL is a valid URL")
}

/// A connection for setting up and cleaning up, failing with a how-to if the server is down.
pub async fn admin() -> MySqlConnection {
    match MySqlConnection::connect_with(&options()).await {
        Ok(conn) => conn,
        Err(e) => panic!("{} ({e})", how_to_start()),
    }
}

/// A database name no other test (or test run) uses.
pub fn unique_database(kind: &str) -> String {
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

/// Creates a fresh database and returns its name.
pub async fn create_database(kind: &str) -> String {
    let database = unique_database(kind);
    let mut conn = admin().await;
    sqlx::query(&format!("CREATE DATABASE `{database}`"))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    let _ = conn.close().await;
    database
}

/// Drops a database made by [`create_database`].
pub async fn drop_database(database: &str) {
    let mut conn = admin().await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS `{database}`"))
        .execute(&mut conn)
        .await
        .expect("drop the test database");
    let _ = conn.close().await;
}

/// Opens a store with a small pool in `database`.
pub async fn open_in(database: &str) -> MySqlStore {
    MySqlStore::builder()
        .max_connections(3)
        .connect_with(options().database(database))
        .await
        .unwrap_or_else(|e| panic!("{} ({e})", how_to_start()))
}

/// Stores handed to the conformance suite with their database, by the address of their `Arc`,
/// so the teardown (which only sees `Arc<dyn Storage>`) can close the pool and drop the database.
fn registry() -> &'static Mutex<HashMap<usize, (MySqlStore, String)>> {
    static REGISTRY: OnceLock<Mutex<HashMap<usize, (MySqlStore, String)>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn addr_of(store: &Arc<dyn Storage>) -> usize {
    Arc::as_ptr(store) as *const () as usize
}

/// A fresh store in its own new database, remembered for [`teardown`].
pub async fn new_store() -> Arc<dyn Storage> {
    let database = create_database("conf").await;
    let store = open_in(&database).await;
    let shared: Arc<dyn Storage> = Arc::new(store.clone());
    registry()
        .lock()
        .unwrap()
        .insert(addr_of(&shared), (store, database));
    shared
}

/// Closes the pool of a store made by [`new_store`] and drops its database.
pub async fn teardown(store: Arc<dyn Storage>) {
    let found = registry().lock().unwrap().remove(&addr_of(&store));
    let (store, database) = found.expect("teardown of a store that new_store did not make");
    store.close().await;
    drop_database(&database).await;
}
