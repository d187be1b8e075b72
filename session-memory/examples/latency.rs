//! Write latency of the driver alone (no session layer): C tokio tasks on a 2-worker runtime,
//! each looping `load` + `apply` of one changed key on a random session of 10,000, and the
//! same loop on two references in the same run:
//!
//! - `moka`: moka's `future::Cache` `get` + `insert` of the record (what `loadgen --raw` does),
//! - `tokio-stripes`: the same behind 64 `tokio::sync::Mutex` stripes (this driver's previous
//!   write path), to show what a tokio mutex in the loop does to the tail.
//!
//! ```text
//! cargo run --release -p session-memory --example latency -- 16 200000
//! ```
//!
//! Prints ops/s, p50 and p99 per variant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::driver::{ChangeSet, Driver, Expiry, Ttl};
use session_core::{SessionId, Value};
use session_memory::MemoryStore;

const SESSIONS: usize = 10_000;

/// A small deterministic generator for the session picks.
fn pick(state: &mut u64) -> usize {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % SESSIONS as u64) as usize
}

fn value(n: u64) -> Value {
    Value::encode(&n).expect("encode")
}

#[derive(Clone, Copy)]
enum Variant {
    Driver,
    Moka,
    TokioStripes,
}

type Blob = Arc<Vec<(String, Value)>>;

struct Shared {
    store: MemoryStore,
    moka: moka::future::Cache<SessionId, Blob>,
    stripes: Vec<tokio::sync::Mutex<()>>,
    ids: Vec<SessionId>,
    ttl: Ttl,
}

async fn one(shared: &Shared, variant: Variant, id: &SessionId, n: u64) {
    match variant {
        Variant::Driver => {
            let loaded = shared.store.load(id).await.expect("load");
            assert!(loaded.is_some(), "session missing");
            let mut changes = ChangeSet {
                only_if_exists: true,
                ..ChangeSet::default()
            };
            changes.set.insert("counter".into(), value(n));
            shared
                .store
                .apply(id, changes, Expiry::After(shared.ttl))
                .await
                .expect("apply");
        }
        Variant::Moka | Variant::TokioStripes => {
            let _guard = match variant {
                Variant::TokioStripes => {
                    let stripe = id.as_str().len() + id.as_str().as_bytes()[0] as usize;
                    Some(shared.stripes[stripe % shared.stripes.len()].lock().await)
                }
                _ => None,
            };
            let current = shared.moka.get(id).await.expect("session missing");
            let mut next: Vec<(String, Value)> = (*current).clone();
            next.push(("counter".into(), value(n)));
            next.truncate(6);
            shared.moka.insert(id.clone(), Arc::new(next)).await;
        }
    }
}

async fn run(shared: Arc<Shared>, variant: Variant, tasks: usize, ops: usize) -> (f64, f64, f64) {
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let shared = shared.clone();
        let share = ops / tasks;
        handles.push(tokio::spawn(async move {
            let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
            let mut lat = Vec::with_capacity(share);
            for i in 0..share {
                let id = &shared.ids[pick(&mut state)];
                let began = Instant::now();
                one(&shared, variant, id, i as u64).await;
                lat.push(began.elapsed().as_nanos() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(ops);
    for h in handles {
        all.extend(h.await.expect("task"));
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let q = |q: f64| all[((all.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    (all.len() as f64 / secs, q(0.5), q(0.99))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().map_or(16, |a| a.parse().expect("tasks"));
    let ops: usize = args.next().map_or(200_000, |a| a.parse().expect("ops"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let ttl = Ttl::new(Duration::from_secs(3600)).expect("ttl");
        let store = MemoryStore::builder().max_sessions(100_000).build();
        let moka = moka::future::Cache::builder().max_capacity(100_000).build();
        let ids: Vec<SessionId> = (0..SESSIONS)
            .map(|_| SessionId::generate().expect("rng"))
            .collect();
        for (n, id) in ids.iter().enumerate() {
            let entries: Vec<(String, Value)> = ["user_id", "name", "roles", "cart", "csrf"]
                .iter()
                .map(|k| (k.to_string(), Value::from_bytes(vec![n as u8; 190])))
                .collect();
            let mut changes = ChangeSet::default();
            changes.set.extend(entries.iter().cloned());
            store
                .apply(id, changes, Expiry::After(ttl))
                .await
                .expect("apply");
            moka.insert(id.clone(), Arc::new(entries)).await;
        }
        let shared = Arc::new(Shared {
            store,
            moka,
            stripes: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            ids,
            ttl,
        });
        for round in 0..3 {
            for (name, variant) in [
                ("driver", Variant::Driver),
                ("moka", Variant::Moka),
                ("tokio-stripes", Variant::TokioStripes),
            ] {
                let (ops_s, p50, p99) = run(shared.clone(), variant, tasks, ops).await;
                println!(
                    "latency round={round} variant={name} tasks={tasks} ops_per_sec={ops_s:.0} \
                     p50_us={p50:.1} p99_us={p99:.1}"
                );
            }
        }
    });
}
