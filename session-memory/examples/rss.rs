//! Peak memory per session: inserts 100,000 sessions of the loadgen workload (five keys, about
//! 1 KB: `user_id`, `name`, `roles`, `cart`, `csrf`, encoded as the session layer encodes them),
//! then writes a `counter` key into each (loadgen's write phase), and prints the peak resident
//! set (`VmHWM` from `/proc/self/status`) per session after each step.
//!
//! ```text
//! cargo run --release -p session-memory --example rss              # the driver
//! cargo run --release -p session-memory --example rss -- moka-blob # moka of encoded blobs
//! cargo run --release -p session-memory --example rss -- 200000    # another session count
//! ```
//!
//! `moka-blob` is the floor the issue compares with: a moka cache (LRU, no per-entry expiry)
//! of one blob per session (8-byte deadline and the values, in one `Vec::with_capacity(1200)`,
//! as loadgen's raw baseline keeps them).

use std::time::Duration;

use moka::policy::EvictionPolicy;
use serde::Serialize;
use session_core::driver::{ChangeSet, Driver, Expiry, Ttl};
use session_core::{SessionId, Value};
use session_memory::MemoryStore;

/// One line of the `cart` key (loadgen's payload).
#[derive(Serialize)]
struct CartItem {
    sku: String,
    title: String,
    qty: u32,
    price_cents: u64,
}

const KEYS: [&str; 5] = ["user_id", "name", "roles", "cart", "csrf"];

/// The five encoded values of session `n`, exactly as loadgen's `payload::encoded`.
fn values(n: u64) -> Vec<(&'static str, Value)> {
    let name = format!("Bench User Number {n:08}");
    let roles = vec!["member".to_string(), "editor".into(), "billing".into()];
    let cart: Vec<CartItem> = (0..10u64)
        .map(|i| CartItem {
            sku: format!("SKU-{:06}-{i:02}", n % 1_000_000),
            title: format!("Product title number {i:02} in blue, size M"),
            qty: (i as u32 % 3) + 1,
            price_cents: 199 + i * 100,
        })
        .collect();
    let csrf = format!(
        "{:032x}",
        (n as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced)
    );
    let enc = |r: session_core::Result<Value>| r.expect("encode");
    vec![
        (KEYS[0], enc(Value::encode(&n))),
        (KEYS[1], enc(Value::encode(&name))),
        (KEYS[2], enc(Value::encode(&roles))),
        (KEYS[3], enc(Value::encode(&cart))),
        (KEYS[4], enc(Value::encode(&csrf))),
    ]
}

/// Peak resident set of this process, in bytes.
fn vm_hwm() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/self/status")
        * 1024
}

fn report(what: &str, sessions: u64, base: u64) {
    let hwm = vm_hwm();
    println!(
        "rss {what} sessions={sessions} vm_hwm_kb={} bytes_per_session={:.0} \
         bytes_per_session_over_start={:.0}",
        hwm / 1024,
        hwm as f64 / sessions as f64,
        hwm.saturating_sub(base) as f64 / sessions as f64,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut blob = false;
    let mut sessions = 100_000u64;
    for arg in args.by_ref() {
        match arg.as_str() {
            "moka-blob" => blob = true,
            n => sessions = n.parse().expect("usage: rss [moka-blob] [SESSIONS]"),
        }
    }
    let ids: Vec<SessionId> = (0..sessions)
        .map(|_| SessionId::generate().expect("os rng"))
        .collect();
    let base = vm_hwm();
    let ttl = Duration::from_secs(3600);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    if blob {
        let cache: moka::sync::Cache<String, bytes::Bytes> = moka::sync::Cache::builder()
            .max_capacity(sessions * 2)
            .eviction_policy(EvictionPolicy::lru())
            .build();
        let put = |n: u64, extra: Option<(&str, Value)>| {
            let mut out = Vec::with_capacity(1200);
            out.extend_from_slice(&n.to_be_bytes());
            for (k, v) in values(n).into_iter().chain(extra) {
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            cache.insert(ids[n as usize].as_str().to_string(), out.into());
        };
        for n in 0..sessions {
            put(n, None);
        }
        cache.run_pending_tasks();
        report("moka-blob create", sessions, base);
        for n in 0..sessions {
            put(n, Some(("counter", Value::encode(&1u64).expect("encode"))));
        }
        cache.run_pending_tasks();
        report("moka-blob write", sessions, base);
        assert_eq!(cache.entry_count(), sessions);
        return;
    }
    let store = MemoryStore::builder().max_sessions(sessions * 2).build();
    let ttl = Ttl::new(ttl).expect("ttl");
    rt.block_on(async {
        for (n, id) in ids.iter().enumerate() {
            let mut changes = ChangeSet::default();
            for (k, v) in values(n as u64) {
                changes.set.insert(k.to_string(), v);
            }
            store
                .apply(id, changes, Expiry::After(ttl))
                .await
                .expect("apply");
        }
        report("memory create", sessions, base);
        for id in &ids {
            let mut changes = ChangeSet::default();
            changes
                .set
                .insert("counter".to_string(), Value::encode(&1u64).expect("encode"));
            store
                .apply(id, changes, Expiry::After(ttl))
                .await
                .expect("apply");
        }
        report("memory write", sessions, base);
        for id in ids.iter().take(10) {
            assert!(store.load(id).await.expect("load").is_some());
        }
    });
}
