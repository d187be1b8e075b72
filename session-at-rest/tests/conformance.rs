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

mod memory {
    use super::*;

    async fn new_store() -> Arc<dyn Storage> {
        for_suite(session_memory::MemoryStore::new())
    }

    suite!(new_store);
}

/// Each layer alone, and both among the tracing and metrics layers.
mod memory_layers {
    use super::*;
    use session_layers::{MetricsLayer, TracingLayer};

    mod hashed_only {
        use super::*;

        async fn new_store() -> Arc<dyn Storage> {
            let store = session_memory::MemoryStore::new().layer(common::hashing());
            Arc::new(Intercepted::new(
                store,
                common::Unhandle::new(common::hashing()),
            ))
        }

        suite!(new_store);
    }

    mod encrypted_only {
        use super::*;

        async fn new_store() -> Arc<dyn Storage> {
            Arc::new(session_memory::MemoryStore::new().layer(common::encryption()))
        }

        suite!(new_store);
    }

    mod with_tracing_and_metrics {
        use super::*;

        async fn new_store() -> Arc<dyn Storage> {
            let store = session_memory::MemoryStore::new()
                .layer(TracingLayer::new())
                .layer(common::encryption())
                .layer(MetricsLayer::new())
                .layer(common::hashing())
                .layer(TracingLayer::new());
            Arc::new(Intercepted::new(
                store,
                common::Unhandle::new(common::hashing()),
            ))
        }

        suite!(new_store);
    }
}

mod file {
    use super::*;

    async fn new_store() -> Arc<dyn Storage> {
        let store = session_file::FileStore::temporary()
            .await
            .expect("a store in a fresh temporary directory");
        for_suite(store)
    }

    suite!(new_store);
}

mod sqlite {
    use super::*;

    async fn new_store() -> Fixture {
        let (store, dir) = common::sqlite().await;
        Fixture::new(for_suite(store)).guard(dir)
    }

    suite!(new_store);
}

mod sled {
    use super::*;

    async fn new_store() -> Arc<dyn Storage> {
        let store = session_sled::SledStore::builder()
            .temporary()
            .await
            .expect("open a temporary sled database");
        for_suite(store)
    }

    suite!(new_store);
}

mod redis {
    use super::*;

    async fn new_store() -> Fixture {
        let store = common::redis("conf").await;
        let raw = store.clone();
        fixture(for_suite(store), move || async move {
            raw.clear_prefix().await.expect("deleting the case's keys");
        })
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
        fixture(for_suite(store), move || async move {
            raw.close().await;
            Pg::drop_namespace(&ns).await;
        })
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
        fixture(for_suite(store), move || async move {
            raw.close().await;
            My::drop_namespace(&ns).await;
        })
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
