//! Purging expired sessions and scanning live ones.
//!
//! Every case here first reads `capabilities()`; when `purge` (or `scan`) is false the case checks
//! that the method returns `Error::Unsupported` instead.

use std::collections::BTreeSet;

use tokio::time::sleep;

use super::*;

/// A declared purge works on an empty store (and deletes nothing live); an undeclared one returns
/// `Unsupported`.
pub async fn purge_capability_is_honest(store: Store) {
    if !store.capabilities().purge {
        unsupported(store.purge_expired().await, "purge_expired");
        return;
    }
    let id = new_id();
    ok(store.set(&id, "k", val("v"), LONG).await, "set");
    let purged = ok(store.purge_expired().await, "purge_expired");
    assert_eq!(
        purged,
        0,
        "[{}] purge_expired on a store with one live session reported deleting {purged}",
        store.name()
    );
    assert_data(
        &store,
        &id,
        &data(&[("k", "v")]),
        "a live session after purge_expired",
    )
    .await;
}

/// `purge_expired` deletes the expired sessions and keeps the live ones; without
/// `native_expiry` it reports exactly how many it deleted (with it, at most that many).
pub async fn purge_removes_expired_keeps_live(store: Store) {
    let caps = store.capabilities();
    if !caps.purge {
        unsupported(store.purge_expired().await, "purge_expired");
        return;
    }
    let name = store.name();
    let expired: Vec<SessionId> = (0..3).map(|_| new_id()).collect();
    let live: Vec<SessionId> = (0..2).map(|_| new_id()).collect();
    for id in &expired {
        ok(
            store
                .set_map(id, data(&[("a", "1"), ("b", "2")]), ms(150))
                .await,
            "set_map",
        );
    }
    for id in &live {
        ok(
            store
                .set_map(id, data(&[("a", "1"), ("b", "2")]), LONG)
                .await,
            "set_map",
        );
    }
    sleep(ms(350)).await;
    let purged = ok(store.purge_expired().await, "purge_expired");
    if caps.native_expiry {
        assert!(
            purged <= 3,
            "[{name}] purge_expired reported {purged} deleted sessions; only 3 had expired"
        );
    } else {
        assert_eq!(
            purged, 3,
            "[{name}] purge_expired must report exactly the 3 expired sessions it deleted \
             (native_expiry is declared false)"
        );
    }
    for id in &expired {
        assert_missing(&store, id, "an expired session after purge_expired").await;
    }
    for id in &live {
        assert_data(
            &store,
            id,
            &data(&[("a", "1"), ("b", "2")]),
            "a live session after purge_expired",
        )
        .await;
    }
    let again = ok(store.purge_expired().await, "purge_expired");
    assert_eq!(
        again, 0,
        "[{name}] a second purge_expired right after the first reported {again}"
    );
}

/// A declared scan works (a fresh store scans empty, a written session is found, in a few pages
/// while the neighbour on the same backend holds many sessions, and the neighbour's scan finds
/// its own and not the store's); an undeclared one returns `Unsupported`.
pub async fn scan_capability_is_honest(store: Store) {
    if !store.capabilities().scan {
        unsupported(store.scan(None, 10).await, "scan");
        return;
    }
    let name = store.name();
    let (neighbour, crowd) = crowded_neighbour(&store).await;
    let empty = scan_all(&store, 10, 3).await;
    assert!(
        empty.is_empty(),
        "[{name}] scan of a fresh store found {} sessions",
        empty.len()
    );
    let id = new_id();
    ok(store.set(&id, "k", val("v"), LONG).await, "set");
    let found = scan_all(&store, 10, 3).await;
    assert!(
        found.len() == 1 && found.contains(&id),
        "[{name}] scan after writing one session found {} sessions",
        found.len()
    );
    let next_door = scan_all(&neighbour, 1_000, 20).await;
    assert!(
        !next_door.contains(&id),
        "[{name}] the neighbour store's scan found a session of the store under test"
    );
    let missed = crowd.difference(&next_door).count();
    assert_eq!(
        missed, 0,
        "[{name}] the neighbour store's scan missed {missed} of the {CROWD} sessions written to it"
    );
}

/// Paging with a small `limit` returns every live session at least once and no expired or
/// removed one, and the pages end, in a number that follows the store's own sessions while its
/// neighbour on the same backend holds many more.
pub async fn scan_pages_through_live_sessions(store: Store) {
    if !store.capabilities().scan {
        unsupported(store.scan(None, 10).await, "scan");
        return;
    }
    let name = store.name();
    crowded_neighbour(&store).await;
    let live: BTreeSet<SessionId> = (0..25).map(|_| new_id()).collect();
    let expired: Vec<SessionId> = (0..5).map(|_| new_id()).collect();
    let removed: Vec<SessionId> = (0..3).map(|_| new_id()).collect();
    for id in &expired {
        ok(store.set(id, "k", val("v"), ms(150)).await, "set");
    }
    for id in live.iter().chain(&removed) {
        ok(store.set(id, "k", val("v"), LONG).await, "set");
    }
    for id in &removed {
        ok(store.remove_all(id).await, "remove_all");
    }
    sleep(ms(350)).await;
    // 25 live sessions in pages of 4: 7 pages if every page is full; twice that and two more
    // leave room for short pages, and none for a walk over the neighbour's sessions.
    let found = scan_all(&store, 4, 2 * 7 + 2).await;
    let missed: Vec<_> = live.difference(&found).collect();
    assert!(
        missed.is_empty(),
        "[{name}] paging with limit 4 missed {} of 25 live sessions",
        missed.len()
    );
    let dead = expired.iter().filter(|id| found.contains(*id)).count();
    assert_eq!(dead, 0, "[{name}] scan returned {dead} expired sessions");
    let gone = removed.iter().filter(|id| found.contains(*id)).count();
    assert_eq!(gone, 0, "[{name}] scan returned {gone} removed sessions");
    let unknown = found.difference(&live).count();
    assert_eq!(
        unknown, 0,
        "[{name}] scan returned {unknown} ids this case never wrote (is the store isolated per case?)"
    );
}
