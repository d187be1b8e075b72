//! Micro benches of each driver's hot paths on one ~1 KB session: `get` of one key, `set` of one
//! key, `get_session`, `load` (what the session layer calls), and `apply` of a two-key change set
//! (what a save writes). Each path is its own benchmark, so a regression shows on its own.
//!
//! Drivers: memory, file, sqlite, sled (temporary directories) and redis (`REDIS_URL`, default
//! 127.0.0.1:6379, under a private prefix deleted at the end). `BENCH_DRIVERS=memory,sqlite`
//! limits the run to some drivers.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use session_benches::payload;
use session_benches::stores::{self, Opened, StoreOptions, StoreSpec};
use session_core::{ChangeSet, Data, SessionId, Storage, Value};
use tokio::runtime::Runtime;

const DRIVERS: [&str; 5] = ["memory", "file", "sqlite", "sled", "redis"];
const TTL: Duration = Duration::from_secs(600);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn selected() -> Vec<&'static str> {
    match std::env::var("BENCH_DRIVERS") {
        Ok(list) => DRIVERS
            .into_iter()
            .filter(|d| list.split(',').any(|x| x.trim() == *d))
            .collect(),
        Err(_) => DRIVERS.to_vec(),
    }
}

fn open(rt: &Runtime, driver: &str) -> (Opened, SessionId) {
    let opts = StoreOptions {
        file_sync: true,
        ..StoreOptions::default()
    };
    let opened = rt
        .block_on(stores::open_store(&StoreSpec::parse(driver), &opts))
        .unwrap_or_else(|e| panic!("cannot open the {driver} store: {e}"));
    let id = SessionId::generate().expect("os random");
    let data = payload::data(1).expect("payload");
    rt.block_on(opened.store.set_map(&id, data, TTL))
        .unwrap_or_else(|e| panic!("{driver}: set_map: {e}"));
    (opened, id)
}

fn drivers(c: &mut Criterion) {
    let rt = runtime();
    for driver in selected() {
        let (opened, id) = open(&rt, driver);
        let store: Arc<dyn Storage> = opened.store.clone();
        let counter = Value::encode(&7u64).expect("encode");
        let mut g = c.benchmark_group(format!("driver/{driver}"));

        g.bench_function("get", |b| {
            b.to_async(&rt).iter(|| async {
                let v = store.get(&id, "name").await.expect("get");
                assert!(v.is_some(), "the session is there");
            })
        });
        g.bench_function("get_session", |b| {
            b.to_async(&rt).iter(|| async {
                let d = store
                    .get_session(&id, TTL, None)
                    .await
                    .expect("get_session");
                assert!(d.is_some(), "the session is there");
            })
        });
        g.bench_function("load", |b| {
            b.to_async(&rt).iter(|| async {
                let l = store.load(&id).await.expect("load");
                assert!(l.is_some(), "the session is there");
            })
        });
        g.bench_function("set", |b| {
            b.to_async(&rt).iter(|| async {
                store
                    .set(&id, "counter", counter.clone(), TTL)
                    .await
                    .expect("set")
            })
        });
        g.bench_function("apply", |b| {
            b.to_async(&rt).iter(|| async {
                let mut set = Data::new();
                set.insert("counter".into(), counter.clone());
                set.insert("seen".into(), counter.clone());
                let cs = ChangeSet {
                    set,
                    only_if_exists: true,
                    ..ChangeSet::default()
                };
                assert!(store.apply(&id, cs, TTL).await.expect("apply"));
            })
        });
        g.finish();
        rt.block_on(opened.cleanup())
            .unwrap_or_else(|e| panic!("{driver}: cleanup: {e}"));
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = drivers
}
criterion_main!(benches);
