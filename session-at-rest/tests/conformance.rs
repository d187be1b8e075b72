//! The shared conformance suite on every driver wrapped in both layers (values encrypted, ids
//! hashed), each case on an isolated store set up as the driver's own conformance tests do;
//! and on a memory store with each layer alone and with the tracing and metrics layers around
//! them.
//!
//! A hashed store lists handles, not the ids the case wrote: the [`common::Unhandle`] hook
//! maps each listed handle back to the id it hashes, so the cases' comparisons check that the
//! owner index and scan list exactly the handles of the expected sessions.

mod common;

use std::sync::Arc;

use common::{fixture, for_suite, teardown};
use session_conformance::{Fixture, suite};
use session_core::Storage;
use session_core::driver::Intercepted;

/// The neighbour of a memory store (which the scan cases fill): another memory store in both
/// layers.
fn memory_neighbour() -> Arc<dyn Storage> {
    for_suite(session_memory::MemoryStore::new())
}

mod memory {
    use super::*;

    async fn new_store() -> Fixture {
        Fixture::new(for_suite(session_memory::MemoryStore::new())).neighbour(memory_neighbour())
    }

    suite!(new_store);
}

/// Each layer alone, and both among the tracing and metrics layers.
mod memory_layers {
    use super::*;
    use session_layers::{MetricsLayer, TracingLayer};

    mod hashed_only {
        use super::*;

        async fn new_store() -> Fixture {
            let store = session_memory::MemoryStore::new().layer(common::hashing());
            Fixture::new(Arc::new(Intercepted::new(
                store,
                common::Unhandle::new(common::hashing()),
            )))
            .neighbour(memory_neighbour())
        }

        suite!(new_store);
    }

    mod encrypted_only {
        use super::*;

        async fn new_store() -> Fixture {
            Fixture::new(Arc::new(
                session_memory::MemoryStore::new().layer(common::encryption()),
            ))
            .neighbour(memory_neighbour())
        }

        suite!(new_store);
    }

    mod with_tracing_and_metrics {
        use super::*;

        async fn new_store() -> Fixture {
            let store = session_memory::MemoryStore::new()
                .layer(TracingLayer::new())
                .layer(common::encryption())
                .layer(MetricsLayer::new())
                .layer(common::hashing())
                .layer(TracingLayer::new());
            Fixture::new(Arc::new(Intercepted::new(
                store,
                common::Unhandle::new(common::hashing()),
            )))
            .neighbour(memory_neighbour())
        }

        suite!(new_store);
    }
}

mod file {
    use super::*;

    /// The store and its neighbour in sibling directories of one temp dir.
    async fn new_store() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = session_file::FileStore::open(dir.path().join("sessions"))
            .await
            .expect("a store in a fresh directory");
        let neighbour = session_file::FileStore::open(dir.path().join("other-app"))
            .await
            .expect("a neighbour store in a sibling directory");
        Fixture::new(for_suite(store))
            .neighbour(for_suite(neighbour))
            .guard(dir)
    }

    suite!(new_store);
}

mod sqlite {
    use super::*;

    /// The neighbour is a second table set in the same file.
    async fn new_store() -> Fixture {
        let (store, dir) = common::sqlite().await;
        let neighbour = session_sqlite::SqliteStore::builder()
            .table("other_app")
            .open(dir.path().join("sessions.db"))
            .await
            .expect("open a second table set in the same file");
        Fixture::new(for_suite(store))
            .neighbour(for_suite(neighbour))
            .guard(dir)
    }

    suite!(new_store);
}

mod sled {
    use super::*;

    /// The neighbour is another namespace of the same database.
    async fn new_store() -> Fixture {
        let db = ::sled::Config::new()
            .temporary(true)
            .open()
            .expect("open a temporary sled database");
        let store = session_sled::SledStore::builder()
            .namespace("sessions")
            .from_db(db.clone())
            .expect("a store in the database");
        let neighbour = session_sled::SledStore::builder()
            .namespace("other-app")
            .from_db(db)
            .expect("a neighbour store in the same database");
        Fixture::new(for_suite(store)).neighbour(for_suite(neighbour))
    }

    suite!(new_store);
}

mod redis {
    use super::*;

    async fn new_store() -> Fixture {
        let store = common::redis("conf").await;
        let raw = store.clone();
        let neighbour = common::redis("conf-neighbour").await;
        let raw_neighbour = neighbour.clone();
        let neighbour = for_suite(neighbour);
        common::on_teardown(&neighbour, move || async move {
            raw_neighbour
                .clear_prefix()
                .await
                .expect("deleting the neighbour's keys");
        });
        fixture(for_suite(store), move || async move {
            raw.clear_prefix().await.expect("deleting the case's keys");
        })
        .neighbour(neighbour)
    }

    suite!(new_store, teardown);
}

mod postgres {
    use super::*;
    use session_sql::testing::Suite;

    type Pg = Suite<common::Postgres>;

    async fn new_store() -> Fixture {
        let ns = Pg::create_namespace("atrest").await;
        let store = Pg::open_in(&ns).await;
        let raw = store.clone();
        // The neighbour: another table in the same namespace.
        let builder = session_sql::SqlStore::builder()
            .max_connections(3)
            .table("other_app");
        let neighbour =
            <common::Postgres as session_sql::testing::TestServer>::open_in(builder, &ns)
                .await
                .expect("open the neighbour's table");
        let raw_neighbour = neighbour.clone();
        let neighbour = for_suite(neighbour);
        common::on_teardown(&neighbour, move || async move {
            raw_neighbour.close().await;
        });
        fixture(for_suite(store), move || async move {
            raw.close().await;
            Pg::drop_namespace(&ns).await;
        })
        .neighbour(neighbour)
    }

    suite!(new_store, teardown);
}

mod mysql {
    use super::*;
    use session_sql::testing::Suite;

    type My = Suite<common::MySql>;

    async fn new_store() -> Fixture {
        let ns = My::create_namespace("atrest").await;
        let store = My::open_in(&ns).await;
        let raw = store.clone();
        // The neighbour: another table in the same namespace.
        let builder = session_sql::SqlStore::builder()
            .max_connections(3)
            .table("other_app");
        let neighbour = <common::MySql as session_sql::testing::TestServer>::open_in(builder, &ns)
            .await
            .expect("open the neighbour's table");
        let raw_neighbour = neighbour.clone();
        let neighbour = for_suite(neighbour);
        common::on_teardown(&neighbour, move || async move {
            raw_neighbour.close().await;
        });
        fixture(for_suite(store), move || async move {
            raw.close().await;
            My::drop_namespace(&ns).await;
        })
        .neighbour(neighbour)
    }

    suite!(new_store, teardown);
}

mod memcached {
    use super::*;

    async fn new_store() -> Fixture {
        let store = common::memcached().await;
        let prefix = store.prefix().to_owned();
        fixture(for_suite(store), move || async move {
            common::memcached_clear(&prefix).await;
        })
    }

    suite!(new_store, teardown);
}
