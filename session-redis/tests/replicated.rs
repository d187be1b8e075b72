//! The whole conformance suite on stores opened through Redis Sentinel with
//! `wait_for_replicas(1, ...)`: every method runs over the Sentinel connection and sends `WAIT`
//! after its writes (scripts, `MULTI`/`EXEC` transactions, plain commands). A master with one
//! replica and three sentinels is started once per test binary on free loopback ports; each case
//! gets its own key prefix, deleted after it.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use session_conformance::Fixture;
use session_core::{SessionId, Storage, Value};
use session_redis::RedisStore;

use common::topology::SentinelGroup;

/// Starts the group on first use (on a blocking thread) and returns it.
async fn group() -> &'static SentinelGroup {
    static GROUP: OnceLock<SentinelGroup> = OnceLock::new();
    tokio::task::spawn_blocking(|| GROUP.get_or_init(|| SentinelGroup::start("suite", "pass-1")))
        .await
        .expect("Sentinel group start-up panicked")
}

async fn open_store(kind: &str) -> RedisStore {
    let group = group().await;
    RedisStore::builder()
        .prefix(common::unique_prefix(kind))
        .sentinel_master_auth(None, &group.password)
        .wait_for_replicas(1, Duration::from_secs(2))
        .open_sentinel(group.sentinel_urls(), &group.name)
        .await
        .expect("store through the test sentinels")
}

async fn new_store() -> Fixture {
    Fixture::new(common::register(open_store("replicated").await))
        .neighbour(common::register(open_store("replicated-neighbour").await))
}

session_conformance::suite!(new_store, common::teardown);

/// `WAIT` returns once the replica has applied the write, so a read on the replica right after
/// the call sees it: for a script (`set`), a transaction (`remove_all`) and a plain command
/// (`index_remove`'s `DEL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_is_on_the_replica_when_the_call_returns() {
    let group = group().await;
    let store = open_store("onreplica").await;
    let ttl = Duration::from_secs(60);
    for round in 0..20 {
        let id = SessionId::generate().unwrap();
        let data = format!("{}:{{{id}}}:data", store.prefix());
        let owner = format!("{}:{{{id}}}:owner", store.prefix());
        store
            .set(&id, "k", Value::encode(&round).unwrap(), ttl)
            .await
            .unwrap();
        store.index_add("alice", &id, ttl).await.unwrap();
        assert_eq!(group.replica.cli(&["EXISTS", &data]).trim(), "1");
        assert_eq!(group.replica.cli(&["EXISTS", &owner]).trim(), "1");
        store.index_remove(&id).await.unwrap();
        assert_eq!(group.replica.cli(&["EXISTS", &owner]).trim(), "0");
        store.remove_all(&id).await.unwrap();
        assert_eq!(group.replica.cli(&["EXISTS", &data]).trim(), "0");
    }
    store.clear_prefix().await.unwrap();
}
