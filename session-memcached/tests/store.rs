//! Driver-specific tests against real memcached servers: the 30-day exptime rule, compare-and-set
//! retries under concurrency, oversized and corrupt items, and servers that are down, die, come
//! back or hang.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_memcached::{AsciiProtocol, MetaProtocol};
use common::{Private, delete_prefix, open_shared, raw_client, remaining_ttl};
use session_core::{ChangeSet, Data, Error, SessionId, Storage, Value, check};
use session_memcached::{MemcachedStore, RELATIVE_EXPTIME_MAX};
use tokio::sync::Barrier;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn new_id() -> SessionId {
    SessionId::generate().expect("OS randomness")
}

fn val(text: &str) -> Value {
    Value::encode(text).expect("encode")
}

/// Deletes a test's keys when it ends, pass or fail.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        // A fresh runtime on another thread: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(delete_prefix(&prefix))
        })
        .join();
    }
}

async fn shared(kind: &str) -> (MemcachedStore, Cleanup) {
    let store = open_shared(kind).await;
    let cleanup = Cleanup(store.prefix().to_owned());
    (store, cleanup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_over_30_days_uses_an_absolute_exptime_and_stays_readable() {
    let (store, _cleanup) = shared("ttl31").await;
    let mut raw = raw_client().await;
    let id = new_id();
    let ttl = 31 * DAY;
    let before = check::now_millis();
    store.set(&id, "k", val("v"), ttl).await.expect("set");
    // Readable: sent as relative seconds, 31 days would be a 1970 timestamp and the item would
    // be gone at once.
    assert_eq!(store.get(&id, "k").await.expect("get"), Some(val("v")));
    let loaded = store.load(&id).await.expect("load").expect("live");
    let deadline = check::unix_millis(loaded.expires_at.expect("deadline"));
    assert!(
        deadline >= before + 31 * 86_400_000 && deadline <= check::now_millis() + 31 * 86_400_000,
        "deadline {deadline} is not 31 days ahead"
    );
    // memcached itself keeps the item for 31 days (plus our rounding up and its clock's lag).
    let t = remaining_ttl(&mut raw, &store.session_key(&id))
        .await
        .expect("item present");
    let want = 31 * 86_400;
    assert!(
        t > RELATIVE_EXPTIME_MAX as i64 && (want - 2..=want + 5).contains(&t),
        "memcached's remaining ttl is {t} s, expected about {want}"
    );
    // update_ttl to the longest TTL (ten years) keeps it readable too.
    store
        .update_ttl(&id, check::MAX_TTL)
        .await
        .expect("update_ttl");
    assert_eq!(store.get(&id, "k").await.expect("get"), Some(val("v")));
    let t = remaining_ttl(&mut raw, &store.session_key(&id))
        .await
        .expect("item present");
    assert!(
        t > 9 * 365 * 86_400,
        "remaining ttl {t} s after a ten-year update_ttl"
    );
    // And a TTL at the boundary (30 days, relative) too.
    let id30 = new_id();
    store
        .set(&id30, "k", val("v"), 30 * DAY - Duration::from_secs(5))
        .await
        .expect("set");
    assert_eq!(store.get(&id30, "k").await.expect("get"), Some(val("v")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_ttls_give_memcached_a_short_exptime() {
    let (store, _cleanup) = shared("short").await;
    let mut raw = raw_client().await;
    let id = new_id();
    store
        .set(&id, "k", val("v"), Duration::from_millis(300))
        .await
        .expect("set");
    let t = remaining_ttl(&mut raw, &store.session_key(&id))
        .await
        .expect("item present");
    // Rounded up past the deadline plus one second: at most 3 s (4 on memcached's lagging clock).
    assert!(
        (1..=4).contains(&t),
        "memcached ttl {t} s for a 300 ms session"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Gone by our deadline although memcached may still hold it.
    assert_eq!(store.get_size(&id).await.expect("get_size"), 0);
    tokio::time::sleep(Duration::from_millis(4600)).await;
    assert_eq!(
        remaining_ttl(&mut raw, &store.session_key(&id)).await,
        None,
        "memcached still holds the item 5 s after a 300 ms session expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_pools_retry_and_lose_nothing() {
    let (a, _cleanup) = shared("cas").await;
    // A second store (its own pool) on the same prefix: a second application server.
    let b = MemcachedStore::builder()
        .prefix(a.prefix())
        .pool_size(8)
        .open(&common::memcached_addr())
        .await
        .expect("second store");
    const PER_STORE: usize = 40;
    let mut conflicts = 0;
    for round in 0..5 {
        let id = new_id();
        a.set(&id, "seed", val("s"), DAY).await.expect("seed");
        let barrier = Arc::new(Barrier::new(2 * PER_STORE));
        let mut tasks = Vec::new();
        for (s, store) in [&a, &b].into_iter().enumerate() {
            for i in 0..PER_STORE {
                let (store, id, barrier) = (store.clone(), id.clone(), Arc::clone(&barrier));
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    let mut set = Data::new();
                    set.insert(format!("k{s}-{i}"), val(&format!("{s}-{i}")));
                    if i % 2 == 0 {
                        let changes = ChangeSet {
                            set,
                            only_if_exists: true,
                            ..ChangeSet::default()
                        };
                        assert!(store.apply(&id, changes, DAY).await.expect("apply"));
                    } else {
                        store.set_map(&id, set, DAY).await.expect("set_map");
                    }
                }));
            }
        }
        for task in tasks {
            task.await.expect("writer task");
        }
        let map = a.get_map(&id).await.expect("get_map");
        assert_eq!(map.len(), 2 * PER_STORE + 1, "round {round}: lost updates");
        for s in 0..2 {
            for i in 0..PER_STORE {
                assert_eq!(
                    map.get(&format!("k{s}-{i}")),
                    Some(&val(&format!("{s}-{i}")))
                );
            }
        }
        conflicts = a.cas_conflicts() + b.cas_conflicts();
        if conflicts > 0 {
            break;
        }
    }
    assert!(
        conflicts > 0,
        "80 concurrent writers on one session never lost a compare-and-set round: the retry \
         path was not exercised"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_gives_up_with_a_backend_error_when_it_always_loses() {
    // One attempt only, and another writer that always wins: the write must fail loudly, never
    // report success or silently drop the update.
    let (store, _cleanup) = shared("giveup").await;
    let one_try = MemcachedStore::builder()
        .prefix(store.prefix())
        .cas_attempts(1)
        .open(&common::memcached_addr())
        .await
        .expect("store");
    let id = new_id();
    store.set(&id, "seed", val("s"), DAY).await.expect("seed");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let (store, id, stop) = (store.clone(), id.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store
                    .set(&id, "hammer", val(&n.to_string()), DAY)
                    .await
                    .expect("hammer");
                n += 1;
            }
        })
    };
    let mut failures = 0;
    let mut successes = 0;
    for i in 0..300 {
        match one_try.set(&id, &format!("k{i}"), val("x"), DAY).await {
            Ok(()) => successes += 1,
            Err(Error::Backend { .. }) => failures += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
        if failures > 0 && successes > 0 {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    hammer.await.expect("hammer task");
    assert!(
        failures > 0,
        "a single-attempt writer never lost to a hammering writer"
    );
    // Every write that reported success is there.
    let map = store.get_map(&id).await.expect("get_map");
    let stored = map.keys().filter(|k| k.starts_with('k')).count();
    assert_eq!(
        stored, successes,
        "successful writes and stored keys differ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_session_is_invalid_input_and_the_store_keeps_working() {
    let (store, _cleanup) = shared("big").await;
    let id = new_id();
    store.set(&id, "small", val("s"), DAY).await.expect("set");
    // The shared server runs with -I 8m, which the store read from the server.
    assert_eq!(store.max_item_size(), 8 * 1024 * 1024);
    // 9 MiB cannot fit. (Sent anyway, memcached would refuse it and delete the stored item.)
    let huge = Value::from(vec![0x5a; 9 * 1024 * 1024]);
    let started = Instant::now();
    for result in [
        store.set(&id, "huge", huge.clone(), DAY).await,
        store
            .set_session(&id, [("huge".to_owned(), huge.clone())].into(), DAY)
            .await,
    ] {
        match result {
            Err(Error::InvalidInput(msg)) => assert!(msg.contains("-I"), "{msg}"),
            other => panic!("a 9 MiB session gave {other:?}, expected InvalidInput"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "oversized writes were slow"
    );
    // Nothing changed, and the pooled connections still work.
    let map = store.get_map(&id).await.expect("get_map");
    assert_eq!(map.len(), 1);
    assert_eq!(map.get("small"), Some(&val("s")));
    store
        .set(&id, "after", val("a"), DAY)
        .await
        .expect("set after");
    assert_eq!(store.get_size(&id).await.expect("get_size"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_items_are_corrupt_not_data() {
    let (store, _cleanup) = shared("corrupt").await;
    let mut raw = raw_client().await;
    let id = new_id();
    raw.set(store.session_key(&id), "not a session", Some(60), None)
        .await
        .expect("raw set");
    for result in [
        store.get(&id, "k").await.map(drop),
        store.get_map(&id).await.map(drop),
        store.load(&id).await.map(drop),
        store.set(&id, "k", val("v"), DAY).await,
    ] {
        assert!(
            matches!(result, Err(Error::Corrupt { .. })),
            "a foreign item gave {result:?}"
        );
    }
    // remove_all and set_session replace it.
    store.remove_all(&id).await.expect("remove_all");
    assert_eq!(store.get_size(&id).await.expect("get_size"), 0);
    raw.set(store.lock_key(&id), "junk", Some(60), None)
        .await
        .expect("raw set");
    assert!(matches!(
        store.try_lock(&id, DAY).await,
        Err(Error::Corrupt { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_lives_in_its_own_item_and_expired_leases_are_taken_over() {
    let (store, _cleanup) = shared("lock").await;
    let mut raw = raw_client().await;
    let id = new_id();
    let token = store
        .try_lock(&id, Duration::from_millis(100))
        .await
        .expect("try_lock")
        .expect("free");
    let key = store.lock_key(&id);
    assert!(key.ends_with(".lock") && key.starts_with(store.prefix()));
    assert!(
        raw.meta_get(&key, false, None, Some(&["v"]))
            .await
            .expect("mg")
            .is_some()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    // memcached still holds the item (1 s resolution), but the lease ran out by its deadline.
    assert!(
        raw.meta_get(&key, false, None, Some(&["v"]))
            .await
            .expect("mg")
            .is_some()
    );
    assert!(
        !store.unlock(&id, &token).await.expect("unlock"),
        "stale token released"
    );
    let second = store
        .try_lock(&id, Duration::from_secs(60))
        .await
        .expect("try_lock")
        .expect("an expired lease is taken over");
    assert!(
        store
            .try_lock(&id, Duration::from_secs(60))
            .await
            .expect("try_lock")
            .is_none()
    );
    assert!(store.unlock(&id, &second).await.expect("unlock"));
    assert!(
        raw.meta_get(&key, false, None, Some(&["v"]))
            .await
            .expect("mg")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_prefix_is_invalid_input() {
    for bad in ["has space", "ctl\u{1}", &"p".repeat(65)] {
        let result = MemcachedStore::builder()
            .prefix(bad)
            .open(&common::memcached_addr())
            .await;
        assert!(
            matches!(result, Err(Error::InvalidInput(_))),
            "prefix {bad:?} gave {result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_is_a_quick_backend_error() {
    let addr = format!("127.0.0.1:{}", common::free_port());
    let started = Instant::now();
    match MemcachedStore::open(&addr).await {
        Err(Error::Backend { backend, source }) => {
            assert_eq!(backend, "memcached");
            assert!(source.to_string().contains(&addr), "{source}");
        }
        other => panic!("connect to a closed port gave {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_that_dies_fails_fast_and_is_used_again_when_back() {
    let mut server = Private::start();
    let store = MemcachedStore::open(&server.addr())
        .await
        .expect("connect to the private server");
    let id = new_id();
    store.set(&id, "k", val("v"), DAY).await.expect("set");
    server.kill();
    let started = Instant::now();
    for result in [
        store.get(&id, "k").await.map(drop),
        store.set(&id, "k", val("v"), DAY).await,
        store.try_lock(&id, DAY).await.map(drop),
    ] {
        assert!(
            matches!(result, Err(Error::Backend { .. })),
            "a dead server gave {result:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    server.restart();
    // memcached keeps nothing across a restart; the store reconnects by itself.
    assert_eq!(store.get(&id, "k").await.expect("get after restart"), None);
    store
        .set(&id, "k", val("again"), DAY)
        .await
        .expect("set after restart");
    assert_eq!(store.get(&id, "k").await.expect("get"), Some(val("again")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_server_times_out_then_recovers() {
    let server = Private::start();
    let store = MemcachedStore::builder()
        .timeout(Duration::from_millis(500))
        .open(&server.addr())
        .await
        .expect("connect to the private server");
    let id = new_id();
    store.set(&id, "k", val("v"), DAY).await.expect("set");
    server.signal("STOP");
    let started = Instant::now();
    let result = store.get(&id, "k").await;
    let took = started.elapsed();
    server.signal("CONT");
    match result {
        Err(Error::Backend { source, .. }) => {
            assert!(source.to_string().contains("did not answer"), "{source}")
        }
        other => panic!("a stopped server gave {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(2),
        "took {took:?}"
    );
    assert_eq!(
        store.get(&id, "k").await.expect("get after CONT"),
        Some(val("v"))
    );
}
