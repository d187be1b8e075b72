//! Driver-specific tests against the real PostgreSQL (`POSTGRES_URL` overrides): reopening,
//! batched purge, the schema version, table names, a server that is down, and writers on
//! separate pools. Each test works in its own schema and drops it.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use session_core::{ChangeSet, Error, SessionId, Storage, Value};
use session_postgres::sqlx::{self, Row};
use session_postgres::{PostgresStore, SCHEMA_VERSION};

const HOUR: Duration = Duration::from_secs(3600);

fn val(text: &str) -> Value {
    Value::encode(text).expect("encode")
}

#[tokio::test]
async fn data_survives_a_new_pool() {
    let schema = common::create_schema("reopen").await;
    let id = SessionId::generate().unwrap();
    let first = common::open_in(&schema).await;
    first.set(&id, "user", val("alice"), HOUR).await.unwrap();
    first.index_add("alice", &id, HOUR).await.unwrap();
    first.close().await;

    let second = common::open_in(&schema).await;
    assert_eq!(second.get(&id, "user").await.unwrap(), Some(val("alice")));
    assert_eq!(
        second.index_sessions("alice").await.unwrap(),
        vec![id.clone()]
    );
    let loaded = second.load(&id).await.unwrap().expect("still there");
    assert!(loaded.expires_at.is_some());
    assert_eq!(second.schema_version().await.unwrap(), SCHEMA_VERSION);
    second.close().await;
    common::drop_schema(&schema).await;
}

#[tokio::test]
async fn purge_in_batches_removes_exactly_the_expired_sessions() {
    let schema = common::create_schema("purge").await;
    let store = PostgresStore::builder()
        .schema(&schema)
        .max_connections(2)
        .purge_batch(3)
        .connect(&common::url())
        .await
        .unwrap();
    let mut expired = Vec::new();
    for i in 0..10 {
        let id = SessionId::generate().unwrap();
        let mut data = session_core::Data::new();
        data.insert("a".into(), val(&i.to_string()));
        data.insert("b".into(), val("x"));
        store
            .set_map(&id, data, Duration::from_millis(50))
            .await
            .unwrap();
        store.index_add("owner", &id, HOUR).await.unwrap();
        expired.push(id);
    }
    let live: Vec<SessionId> = (0..4).map(|_| SessionId::generate().unwrap()).collect();
    for id in &live {
        store.set(id, "k", val("v"), HOUR).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(150)).await;

    // 10 expired sessions in batches of 3: four statements, the exact count.
    assert_eq!(store.purge_expired().await.unwrap(), 10);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    for id in &live {
        assert_eq!(store.get(id, "k").await.unwrap(), Some(val("v")));
    }
    // The rows are gone, not just hidden: values (by cascade) and owner bindings too.
    let count = |sql: String| {
        let pool = store.pool().clone();
        async move {
            sqlx::query(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<i64, _>(0)
        }
    };
    let q = |t: &str| format!("SELECT count(*) FROM \"{schema}\".\"{t}\"");
    assert_eq!(count(q("sessions")).await, 4);
    assert_eq!(count(q("sessions_values")).await, 4);
    assert_eq!(count(q("sessions_owners")).await, 0);
    store.close().await;
    common::drop_schema(&schema).await;
}

#[tokio::test]
async fn schema_version_is_recorded_and_a_newer_one_refused() {
    let schema = common::create_schema("version").await;
    let store = common::open_in(&schema).await;
    assert_eq!(store.schema_version().await.unwrap(), SCHEMA_VERSION);
    let stored: i64 = sqlx::query(&format!(
        "SELECT version FROM \"{schema}\".\"sessions_schema_version\""
    ))
    .fetch_one(store.pool())
    .await
    .unwrap()
    .get(0);
    assert_eq!(stored, SCHEMA_VERSION);
    sqlx::query(&format!(
        "UPDATE \"{schema}\".\"sessions_schema_version\" SET version = $1"
    ))
    .bind(SCHEMA_VERSION + 1)
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;

    let err = PostgresStore::builder()
        .schema(&schema)
        .connect(&common::url())
        .await
        .expect_err("a newer schema version must be refused");
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains("newer"), "{err}");
    common::drop_schema(&schema).await;
}

#[tokio::test]
async fn table_names_are_checked_and_kept_apart() {
    let schema = common::create_schema("tables").await;
    for bad in ["", "1abc", "a-b", "a b", "x\"; DROP SCHEMA public; --", "é"] {
        let err = PostgresStore::builder()
            .schema(&schema)
            .table(bad)
            .connect(&common::url())
            .await
            .expect_err("bad table name");
        assert!(matches!(err, Error::InvalidInput(_)), "{bad:?}: {err:?}");
    }
    let err = PostgresStore::builder()
        .schema("no such\"schema")
        .connect(&common::url())
        .await
        .expect_err("bad schema name");
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");

    let url = common::url();
    let open = |table: &'static str| {
        PostgresStore::builder()
            .schema(&schema)
            .table(table)
            .max_connections(2)
            .connect(&url)
    };
    let a = open("Web_Sessions").await.unwrap();
    let b = open("api_sessions").await.unwrap();
    let id = SessionId::generate().unwrap();
    a.set(&id, "k", val("a"), HOUR).await.unwrap();
    assert_eq!(b.get(&id, "k").await.unwrap(), None);
    b.set(&id, "k", val("b"), HOUR).await.unwrap();
    assert_eq!(a.get(&id, "k").await.unwrap(), Some(val("a")));
    a.close().await;
    b.close().await;
    common::drop_schema(&schema).await;
}

#[tokio::test]
async fn server_down_is_a_clear_backend_error() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let started = Instant::now();
    let err = PostgresStore::builder()
        .connect_timeout(Duration::from_secs(2))
        .connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
        .await
        .expect_err("nothing listens on the port");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("cannot connect to PostgreSQL") && text.contains(&port.to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn calls_after_close_fail_cleanly() {
    let schema = common::create_schema("closed").await;
    let store = common::open_in(&schema).await;
    store.close().await;
    let id = SessionId::generate().unwrap();
    let err = store.get(&id, "k").await.expect_err("pool closed");
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    common::drop_schema(&schema).await;
}

#[tokio::test]
async fn writers_on_separate_pools_lose_nothing() {
    let schema = common::create_schema("pools").await;
    let stores = [
        common::open_in(&schema).await,
        common::open_in(&schema).await,
        common::open_in(&schema).await,
    ];
    let id = SessionId::generate().unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = stores[i % stores.len()].clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut changes = ChangeSet::default();
            changes.set.insert(format!("k{i}"), val("v"));
            if i % 2 == 0 {
                store.apply(&id, changes, HOUR).await
            } else {
                store
                    .set(&id, &format!("k{i}"), val("v"), HOUR)
                    .await
                    .map(|()| true)
            }
        }));
    }
    for task in tasks {
        assert!(task.await.unwrap().unwrap());
    }
    assert_eq!(stores[0].get_size(&id).await.unwrap(), 60);
    for store in &stores {
        store.close().await;
    }
    common::drop_schema(&schema).await;
}

#[tokio::test]
async fn killed_connections_are_replaced() {
    use std::str::FromStr;

    use session_postgres::sqlx::postgres::PgConnectOptions;

    let schema = common::create_schema("killed").await;
    let app = common::unique_schema("app");
    let options = PgConnectOptions::from_str(&common::url())
        .unwrap()
        .application_name(&app);
    let store = PostgresStore::builder()
        .schema(&schema)
        .max_connections(2)
        .connect_with(options)
        .await
        .unwrap();
    let id = SessionId::generate().unwrap();
    store.set(&id, "k", val("v"), HOUR).await.unwrap();

    // The server ends every connection of the pool (as a restart or a proxy would).
    let mut admin = common::admin().await;
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
    common::drop_schema(&schema).await;
}
