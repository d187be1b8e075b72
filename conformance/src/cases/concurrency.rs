//! Concurrency: no lost updates, no torn reads, no id collisions.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use session_core::ChangeSet;
use tokio::sync::Barrier;
use tokio::task::{JoinHandle, yield_now};

use super::*;

/// Awaits every task, re-raising the first panic so the case fails with the task's message.
async fn join_all<T>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(v) => out.push(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a task of this case was cancelled: {e}"),
        }
    }
    out
}

/// The session `seed` plus the keys `k0..k{n}`, as the concurrent writers leave it.
fn seed_plus(n: usize) -> Data {
    let mut expected = data(&[("seed", "s")]);
    for i in 0..n {
        expected.insert(format!("k{i}"), val(&i.to_string()));
    }
    expected
}

/// Compares the session after concurrent writers with what they wrote, naming lost keys.
async fn assert_none_lost(store: &Store, id: &SessionId, expected: &Data, what: &str) {
    let map = ok(store.get_map(id).await, "get_map");
    let mut lost: Vec<&str> = expected
        .keys()
        .filter(|k| !map.contains_key(*k))
        .map(String::as_str)
        .collect();
    lost.sort_unstable();
    assert!(
        lost.is_empty(),
        "[{}] {what}: {} of {} keys were lost (a write overwrote another's keys): {lost:?}",
        store.name(),
        lost.len(),
        expected.len()
    );
    assert_data(store, id, expected, what).await;
}

/// 100 tasks each apply a change set with a distinct key to one session at the same moment:
/// `apply` is atomic in every driver, so no key is lost.
pub async fn concurrent_apply_loses_no_keys(store: Store) {
    const N: usize = 100;
    let id = new_id();
    ok(store.set(&id, "seed", val("s"), LONG).await, "set");
    let barrier = Arc::new(Barrier::new(N));
    let handles = (0..N)
        .map(|i| {
            let (store, id, barrier) = (Arc::clone(&store), id.clone(), Arc::clone(&barrier));
            let changes = ChangeSet {
                set: data(&[(&format!("k{i}"), &i.to_string())]),
                ..ChangeSet::default()
            };
            tokio::spawn(async move {
                barrier.wait().await;
                let exists = ok(store.apply(&id, changes, LONG).await, "concurrent apply");
                assert!(exists, "[{}] concurrent apply returned false", store.name());
            })
        })
        .collect();
    join_all(handles).await;
    assert_none_lost(
        &store,
        &id,
        &seed_plus(N),
        "100 concurrent applies with distinct keys",
    )
    .await;
}

/// 50 tasks each `set` a distinct key of one session at the same moment: every method is atomic
/// on its own, so no key is lost.
pub async fn concurrent_set_on_distinct_keys_loses_none(store: Store) {
    const N: usize = 50;
    let id = new_id();
    ok(store.set(&id, "seed", val("s"), LONG).await, "set");
    let barrier = Arc::new(Barrier::new(N));
    let handles = (0..N)
        .map(|i| {
            let (store, id, barrier) = (Arc::clone(&store), id.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                ok(
                    store
                        .set(&id, &format!("k{i}"), val(&i.to_string()), LONG)
                        .await,
                    "concurrent set",
                );
            })
        })
        .collect();
    join_all(handles).await;
    assert_none_lost(
        &store,
        &id,
        &seed_plus(N),
        "50 concurrent sets of distinct keys",
    )
    .await;
}

/// While a writer replaces a session again and again between two full states (with
/// `set_session` and with `apply(clear)`, alternately), concurrent readers
/// (`get_map`, `get_session`, `load`, `get_size`) always see one state or the other, never a mix
/// and never a missing session.
pub async fn concurrent_readers_never_see_torn_session(store: Store) {
    const WRITES: usize = 200;
    const READERS: usize = 3;
    const MIN_READS: usize = 100;
    let state_a: Data = (0..20).map(|i| (format!("a{i}"), val("A"))).collect();
    let state_b: Data = (0..30).map(|i| (format!("b{i}"), val("B"))).collect();
    let id = new_id();
    ok(
        store.set_session(&id, state_a.clone(), LONG).await,
        "set_session",
    );
    let done = Arc::new(AtomicBool::new(false));

    let writer = {
        let (store, id, done) = (Arc::clone(&store), id.clone(), Arc::clone(&done));
        let (a, b) = (state_a.clone(), state_b.clone());
        tokio::spawn(async move {
            for i in 0..WRITES {
                let next = if i % 2 == 0 { b.clone() } else { a.clone() };
                if (i / 2) % 2 == 1 {
                    let changes = ChangeSet {
                        clear: true,
                        set: next,
                        ..ChangeSet::default()
                    };
                    ok(store.apply(&id, changes, LONG).await, "apply(clear)");
                } else {
                    ok(store.set_session(&id, next, LONG).await, "set_session");
                }
                yield_now().await;
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let readers = (0..READERS)
        .map(|r| {
            let (store, id, done) = (Arc::clone(&store), id.clone(), Arc::clone(&done));
            let (a, b) = (state_a.clone(), state_b.clone());
            tokio::spawn(async move {
                let name = store.name();
                let mut reads = 0usize;
                while reads < MIN_READS || !done.load(Ordering::SeqCst) {
                    let (method, seen) = match (reads + r) % 4 {
                        0 => ("get_map", Some(ok(store.get_map(&id).await, "get_map"))),
                        1 => (
                            "get_session",
                            ok(store.get_session(&id, LONG, None).await, "get_session"),
                        ),
                        2 => ("load", ok(store.load(&id).await, "load").map(|l| l.data.into_data())),
                        _ => {
                            let size = ok(store.get_size(&id).await, "get_size");
                            assert!(
                                size == a.len() || size == b.len(),
                                "[{name}] get_size returned {size} while a writer replaced the \
                                 session between {} and {} keys: a torn (or missing) session",
                                a.len(),
                                b.len()
                            );
                            ("get_size", None)
                        }
                    };
                    if method != "get_size" {
                        let seen = seen.unwrap_or_default();
                        assert!(
                            seen == a || seen == b,
                            "[{name}] {method} returned keys {} while a writer replaced the session \
                             between two full states of {} and {} keys: a torn (or missing) session",
                            keys(&seen),
                            a.len(),
                            b.len()
                        );
                    }
                    reads += 1;
                    yield_now().await;
                }
            })
        })
        .collect();
    join_all(vec![writer]).await;
    join_all(readers).await;
}

/// 1,000 sessions created at once by 50 tasks with `SessionId::generate`: no id collides and
/// every session reads back its own value.
pub async fn concurrent_session_creation_has_no_collisions(store: Store) {
    const TASKS: usize = 50;
    const PER_TASK: usize = 20;
    let barrier = Arc::new(Barrier::new(TASKS));
    let handles = (0..TASKS)
        .map(|t| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let mut made = Vec::with_capacity(PER_TASK);
                for j in 0..PER_TASK {
                    let id = new_id();
                    let n = (t * PER_TASK + j).to_string();
                    ok(store.set(&id, "n", val(&n), LONG).await, "set");
                    made.push((id, n));
                }
                made
            })
        })
        .collect();
    let made: Vec<(SessionId, String)> = join_all(handles).await.into_iter().flatten().collect();
    let distinct: HashSet<&SessionId> = made.iter().map(|(id, _)| id).collect();
    assert_eq!(
        distinct.len(),
        TASKS * PER_TASK,
        "SessionId::generate returned the same id twice among 1,000"
    );
    let made = Arc::new(made);
    let handles = (0..TASKS)
        .map(|t| {
            let (store, made) = (Arc::clone(&store), Arc::clone(&made));
            tokio::spawn(async move {
                for (id, n) in made.iter().skip(t).step_by(TASKS) {
                    let got = ok(store.get(id, "n").await, "get");
                    assert!(
                        got == Some(val(n)),
                        "[{}] session #{n} of 1,000 created concurrently read back {got:?}",
                        store.name()
                    );
                }
            })
        })
        .collect();
    join_all(handles).await;
}
