//! The owner index: owner to sessions, session to owner, pruned of dead sessions.
//!
//! Every case here first reads `capabilities().owner_index`; when it is false the case checks
//! that every index method returns `Error::Unsupported` instead.

use session_core::check::MAX_OWNER_LEN;
use tokio::time::sleep;

use super::*;

/// When `owner_index` is not declared, checks that every index method is `Unsupported` and
/// returns `true` (the caller then stops).
async fn undeclared(store: &Store) -> bool {
    if store.capabilities().owner_index {
        return false;
    }
    let id = new_id();
    unsupported(store.index_add("owner", &id, LONG).await, "index_add");
    unsupported(store.index_remove(&id).await, "index_remove");
    unsupported(store.index_sessions("owner").await, "index_sessions");
    unsupported(store.index_owner(&id).await, "index_owner");
    true
}

/// The live sessions of `owner`, sorted.
async fn sessions_of(store: &Store, owner: &str) -> Vec<SessionId> {
    let mut ids = ok(store.index_sessions(owner).await, "index_sessions");
    ids.sort();
    ids
}

/// The expected list of sessions, sorted.
fn sorted(ids: &[&SessionId]) -> Vec<SessionId> {
    let mut ids: Vec<SessionId> = ids.iter().map(|id| (*id).clone()).collect();
    ids.sort();
    ids
}

/// A live session bound to `owner`.
async fn bound_session(store: &Store, owner: &str, ttl: Duration) -> SessionId {
    let id = new_id();
    ok(store.set(&id, "user", val(owner), ttl).await, "set");
    ok(store.index_add(owner, &id, LONG).await, "index_add");
    id
}

/// A declared owner index works (an unknown owner has no sessions, an unbound session no owner);
/// an undeclared one returns `Unsupported` from every index method.
pub async fn owner_index_capability_is_honest(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let name = store.name();
    let none = sessions_of(&store, "nobody").await;
    assert!(
        none.is_empty(),
        "[{name}] index_sessions of an owner never used returned {none:?}"
    );
    let id = new_id();
    ok(store.set(&id, "k", val("v"), LONG).await, "set");
    let owner = ok(store.index_owner(&id).await, "index_owner");
    assert!(
        owner.is_none(),
        "[{name}] index_owner of a session never bound returned {owner:?}"
    );
    ok(
        store.index_remove(&id).await,
        "index_remove of an unbound session",
    );
}

/// `index_sessions` lists exactly the live sessions bound to an owner, and not another owner's.
pub async fn index_sessions_lists_bound_sessions(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let name = store.name();
    let a1 = bound_session(&store, "alice", LONG).await;
    let a2 = bound_session(&store, "alice", LONG).await;
    let b1 = bound_session(&store, "bob", LONG).await;
    let alice = sessions_of(&store, "alice").await;
    assert_eq!(
        alice,
        sorted(&[&a1, &a2]),
        "[{name}] index_sessions(alice) after binding two sessions to alice and one to bob"
    );
    assert_eq!(
        sessions_of(&store, "bob").await,
        sorted(&[&b1]),
        "[{name}] index_sessions(bob)"
    );
    ok(store.index_add("alice", &a1, LONG).await, "index_add again");
    assert_eq!(
        sessions_of(&store, "alice").await,
        sorted(&[&a1, &a2]),
        "[{name}] index_sessions(alice) after binding a1 to alice a second time (no duplicates)"
    );
}

/// `index_owner` finds the owner of a bound live session.
pub async fn index_owner_finds_the_owner(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let name = store.name();
    let owner = "user-42 ünicode ✓";
    let id = bound_session(&store, owner, LONG).await;
    let got = ok(store.index_owner(&id).await, "index_owner");
    assert_eq!(
        got.as_deref(),
        Some(owner),
        "[{name}] index_owner of a session bound to {owner:?}"
    );
}

/// Sessions that expired are not listed by `index_sessions` (they are pruned), and their
/// `index_owner` is `None`; live ones stay.
pub async fn index_prunes_expired_sessions(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let name = store.name();
    let short = bound_session(&store, "carol", ms(150)).await;
    let live = bound_session(&store, "carol", LONG).await;
    sleep(ms(350)).await;
    assert_eq!(
        sessions_of(&store, "carol").await,
        sorted(&[&live]),
        "[{name}] index_sessions must list live sessions only (one of carol's two sessions expired)"
    );
    let owner = ok(store.index_owner(&short).await, "index_owner");
    assert!(
        owner.is_none(),
        "[{name}] index_owner of an expired session returned {owner:?}"
    );
    assert_eq!(
        sessions_of(&store, "carol").await,
        sorted(&[&live]),
        "[{name}] index_sessions asked a second time"
    );
}

/// Sessions removed with `remove_all`, by removing their last key, or by `set_session` with empty
/// data are no longer listed and have no owner.
pub async fn index_forgets_removed_sessions(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let name = store.name();
    let by_remove_all = bound_session(&store, "dave", LONG).await;
    let by_last_key = bound_session(&store, "dave", LONG).await;
    let by_empty_set = bound_session(&store, "dave", LONG).await;
    let live = bound_session(&store, "dave", LONG).await;
    ok(store.remove_all(&by_remove_all).await, "remove_all");
    ok(store.remove(&by_last_key, "user").await, "remove");
    ok(
        store.set_session(&by_empty_set, Data::new(), LONG).await,
        "set_session(empty)",
    );
    assert_eq!(
        sessions_of(&store, "dave").await,
        sorted(&[&live]),
        "[{name}] index_sessions after removing three of dave's four sessions"
    );
    for (how, id) in [
        ("remove_all", &by_remove_all),
        ("removing its last key", &by_last_key),
        ("set_session(empty)", &by_empty_set),
    ] {
        let owner = ok(store.index_owner(id).await, "index_owner");
        assert!(
            owner.is_none(),
            "[{name}] index_owner of a session deleted by {how} returned {owner:?}"
        );
    }
    // The binding went with the session: writing the id again does not restore it.
    ok(store.set(&by_remove_all, "k", val("v"), LONG).await, "set");
    let owner = ok(store.index_owner(&by_remove_all).await, "index_owner");
    assert!(
        owner.is_none(),
        "[{name}] a session written again after remove_all still had its old owner {owner:?}: \
         remove_all must delete the owner-index binding too"
    );
}

/// `index_add` of a session already bound to another owner moves it.
pub async fn index_add_moves_session_to_new_owner(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let name = store.name();
    let id = bound_session(&store, "erin", LONG).await;
    ok(store.index_add("frank", &id, LONG).await, "index_add");
    assert_eq!(
        ok(store.index_owner(&id).await, "index_owner").as_deref(),
        Some("frank"),
        "[{name}] index_owner after binding erin's session to frank"
    );
    assert!(
        sessions_of(&store, "erin").await.is_empty(),
        "[{name}] index_sessions(erin) still lists the session that moved to frank"
    );
    assert_eq!(
        sessions_of(&store, "frank").await,
        sorted(&[&id]),
        "[{name}] index_sessions(frank) after the move"
    );
}

/// `index_remove` unbinds a session (which keeps its data), and is fine on an unbound one.
pub async fn index_remove_unbinds(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let name = store.name();
    let id = bound_session(&store, "grace", LONG).await;
    let other = bound_session(&store, "grace", LONG).await;
    ok(store.index_remove(&id).await, "index_remove");
    assert_eq!(
        sessions_of(&store, "grace").await,
        sorted(&[&other]),
        "[{name}] index_sessions(grace) after index_remove of one of her sessions"
    );
    let owner = ok(store.index_owner(&id).await, "index_owner");
    assert!(
        owner.is_none(),
        "[{name}] index_owner after index_remove returned {owner:?}"
    );
    assert_data(
        &store,
        &id,
        &data(&[("user", "grace")]),
        "index_remove must not delete the session",
    )
    .await;
    ok(store.index_remove(&id).await, "index_remove a second time");
}

/// Owners are checked with `check::owner`: empty, NUL and over-long owners are `InvalidInput`
/// and bind nothing.
pub async fn index_checks_owner(store: Store) {
    if undeclared(&store).await {
        return;
    }
    let name = store.name();
    let id = new_id();
    ok(store.set(&id, "k", val("v"), LONG).await, "set");
    let too_long = "o".repeat(MAX_OWNER_LEN + 1);
    for (what, owner) in [
        ("an empty owner", ""),
        ("an owner with NUL", "ow\0ner"),
        ("an owner of 257 bytes", too_long.as_str()),
    ] {
        invalid_input(
            store.index_add(owner, &id, LONG).await,
            &format!("index_add with {what}"),
        );
        invalid_input(
            store.index_sessions(owner).await,
            &format!("index_sessions with {what}"),
        );
    }
    let owner = ok(store.index_owner(&id).await, "index_owner");
    assert!(
        owner.is_none(),
        "[{name}] index_add with invalid owners bound the session to {owner:?}"
    );
    let longest = "o".repeat(MAX_OWNER_LEN);
    ok(
        store.index_add(&longest, &id, LONG).await,
        "index_add with an owner of exactly 256 bytes",
    );
    assert_eq!(
        sessions_of(&store, &longest).await,
        sorted(&[&id]),
        "[{name}] index_sessions of a 256-byte owner"
    );
}
