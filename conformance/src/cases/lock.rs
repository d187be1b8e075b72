//! The lease lock: one holder, token-checked release, leases that run out.
//!
//! Every case here first reads `capabilities().lock`; when it is false the case checks that
//! `try_lock` and `unlock` return `Error::Unsupported` instead.

use session_core::LockToken;
use tokio::sync::Barrier;
use tokio::time::{Instant, sleep_until};

use super::*;

/// When `lock` is not declared, checks that both lock methods are `Unsupported` and returns
/// `true` (the caller then stops).
async fn undeclared(store: &Store) -> bool {
    if store.capabilities().lock {
        return false;
    }
    let id = new_id();
    let token = LockToken::generate().expect("LockToken::generate failed: no OS randomness");
    unsupported(store.try_lock(&id, LONG).await, "try_lock");
    unsupported(store.unlock(&id, &token).await, "unlock");
    true
}

/// Takes the lock, failing the case if it is refused.
async fn take(store: &Store, id: &SessionId, lease: Duration, what: &str) -> LockToken {
    ok(store.try_lock(id, lease).await, "try_lock").unwrap_or_else(|| {
        panic!(
            "[{}] try_lock returned None ({what}): the lock should have been free",
            store.name()
        )
    })
}

/// Asserts the lock is held by someone (a `try_lock` is refused).
async fn assert_held(store: &Store, id: &SessionId, what: &str) {
    let got = ok(store.try_lock(id, LONG).await, "try_lock");
    assert!(
        got.is_none(),
        "[{}] try_lock succeeded {what}: the lock must still be held",
        store.name()
    );
}

/// A declared lock works (a free lock is taken, released with its token); an undeclared one
/// returns `Unsupported` from `try_lock` and `unlock`.
pub async fn lock_capability_is_honest(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let id = new_id();
    let token = take(&store, &id, LONG, "on a fresh id").await;
    let released = ok(store.unlock(&id, &token).await, "unlock");
    assert!(
        released,
        "[{}] unlock with the token try_lock returned gave false",
        store.name()
    );
}

/// A second `try_lock` while the lease runs is refused (`None`).
pub async fn try_lock_refuses_second_holder(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let id = new_id();
    let _token = take(&store, &id, LONG, "on a fresh id").await;
    assert_held(&store, &id, "while another holder's lease runs").await;
    assert_held(&store, &id, "a third time").await;
}

/// `unlock` with a wrong token (random, or another session's) returns `false` and keeps the lock.
pub async fn unlock_with_wrong_token_keeps_lock(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let name = store.name();
    let id = new_id();
    let other = new_id();
    let _token = take(&store, &id, LONG, "on a fresh id").await;
    let other_token = take(&store, &other, LONG, "on another fresh id").await;
    let random = LockToken::generate().expect("LockToken::generate failed: no OS randomness");
    for (what, token) in [
        ("a random token", &random),
        ("another session's token", &other_token),
    ] {
        let released = ok(store.unlock(&id, token).await, "unlock");
        assert!(!released, "[{name}] unlock with {what} returned true");
        assert_held(&store, &id, &format!("after unlock with {what}")).await;
    }
    assert_held(
        &store,
        &other,
        "on the other session after its token was misused",
    )
    .await;
}

/// `unlock` with the right token returns `true` and frees the lock; a second `unlock` with the
/// same token returns `false`.
pub async fn unlock_with_right_token_frees_lock(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let name = store.name();
    let id = new_id();
    let token = take(&store, &id, LONG, "on a fresh id").await;
    assert!(
        ok(store.unlock(&id, &token).await, "unlock"),
        "[{name}] unlock with the holder's token returned false"
    );
    assert!(
        !ok(store.unlock(&id, &token).await, "unlock"),
        "[{name}] a second unlock with an already released token returned true"
    );
    let again = take(&store, &id, LONG, "after the holder released it").await;
    assert!(
        !ok(store.unlock(&id, &token).await, "unlock"),
        "[{name}] the first holder's old token released the second holder's lock"
    );
    assert!(
        ok(store.unlock(&id, &again).await, "unlock"),
        "[{name}] unlock by the second holder returned false"
    );
}

/// A lease of 200 ms runs out: the lock is held until then and can be taken again after, and the
/// old token then cannot release the new holder's lock.
pub async fn lock_lease_runs_out(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let name = store.name();
    let id = new_id();
    let t0 = Instant::now();
    let old = take(&store, &id, ms(200), "on a fresh id").await;
    let refused = ok(store.try_lock(&id, LONG).await, "try_lock").is_none();
    if t0.elapsed() < ms(150) {
        assert!(
            refused,
            "[{name}] try_lock succeeded {} ms into another holder's 200 ms lease",
            t0.elapsed().as_millis()
        );
    }
    sleep_until(t0 + ms(450)).await;
    let new = take(
        &store,
        &id,
        LONG,
        "450 ms after a 200 ms lease was taken (it must run out)",
    )
    .await;
    assert!(
        !ok(store.unlock(&id, &old).await, "unlock"),
        "[{name}] the token of a lease that ran out released the new holder's lock"
    );
    assert_held(&store, &id, "after a stale token tried to release it").await;
    assert!(
        ok(store.unlock(&id, &new).await, "unlock"),
        "[{name}] unlock by the new holder returned false"
    );
}

/// 20 tasks call `try_lock` on one id at the same moment: exactly one gets a token.
pub async fn concurrent_try_lock_has_one_winner(store: Store) {
    if undeclared(&store).await {
        return;
    }
    const N: usize = 20;
    let id = new_id();
    let barrier = Arc::new(Barrier::new(N));
    let handles: Vec<_> = (0..N)
        .map(|_| {
            let (store, id, barrier) = (Arc::clone(&store), id.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                ok(store.try_lock(&id, LONG).await, "concurrent try_lock")
            })
        })
        .collect();
    let mut winners = 0;
    for handle in handles {
        match handle.await {
            Ok(token) => winners += usize::from(token.is_some()),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a try_lock task was cancelled: {e}"),
        }
    }
    assert_eq!(
        winners,
        1,
        "[{}] {winners} of {N} concurrent try_lock calls on one id got a token; exactly one must",
        store.name()
    );
}

/// Locks of different ids are independent, a lock does not need the session to exist, and taking
/// one creates no session.
pub async fn lock_is_per_session_and_creates_nothing(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let a = new_id();
    let b = new_id();
    let _ta = take(&store, &a, LONG, "on a fresh id").await;
    let _tb = take(&store, &b, LONG, "on a second id while the first is locked").await;
    assert_missing(
        &store,
        &a,
        "after try_lock on an id never written (a lock is not a session)",
    )
    .await;
    if store.capabilities().scan {
        let found = scan_all(&store, 100, 10_000).await;
        assert!(
            !found.contains(&a) && !found.contains(&b),
            "[{}] scan lists an id that was only locked, never written",
            store.name()
        );
    }
    let live = new_id();
    ok(store.set(&live, "k", val("v"), LONG).await, "set");
    let token = take(&store, &live, LONG, "on a live session").await;
    assert_data(
        &store,
        &live,
        &data(&[("k", "v")]),
        "a locked session's data",
    )
    .await;
    ok(store.unlock(&live, &token).await, "unlock");
    assert_data(&store, &live, &data(&[("k", "v")]), "after unlock").await;
}
