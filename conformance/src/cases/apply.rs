//! `apply` (change sets) and `load` (data with its deadline).

use std::time::SystemTime;

use session_core::ChangeSet;
use session_core::check::MAX_KEY_LEN;
use tokio::time::sleep;

use super::*;

/// A change set that sets `set` and removes `remove`.
fn change(remove: &[&str], set: &[(&str, &str)]) -> ChangeSet {
    ChangeSet {
        remove: remove.iter().map(|k| k.to_string()).collect(),
        set: data(set),
        ..ChangeSet::default()
    }
}

/// Applies `changes` and asserts the returned "exists afterwards" flag.
async fn apply_expect(store: &Store, id: &SessionId, changes: ChangeSet, exists: bool, what: &str) {
    let got = ok(store.apply(id, changes, LONG).await, what);
    assert_eq!(
        got,
        exists,
        "[{}] {what} returned {got}, expected {exists} (whether the session exists afterwards)",
        store.name()
    );
}

/// `apply` sets and removes keys in one call, keeps the keys it does not name, and returns `true`.
pub async fn apply_sets_and_removes(store: Store) {
    let id = new_id();
    ok(
        store
            .set_map(&id, data(&[("a", "1"), ("b", "2"), ("c", "3")]), LONG)
            .await,
        "set_map",
    );
    apply_expect(
        &store,
        &id,
        change(&["a"], &[("b", "20"), ("d", "4")]),
        true,
        "apply(remove a, set b d)",
    )
    .await;
    assert_data(
        &store,
        &id,
        &data(&[("b", "20"), ("c", "3"), ("d", "4")]),
        "after apply(remove a, set b d)",
    )
    .await;
}

/// `apply` on a missing session creates it and returns `true`.
pub async fn apply_on_missing_session_creates_it(store: Store) {
    let id = new_id();
    apply_expect(
        &store,
        &id,
        change(&["nothing"], &[("a", "1")]),
        true,
        "apply on a new id",
    )
    .await;
    assert_data(&store, &id, &data(&[("a", "1")]), "after apply on a new id").await;
}

/// `clear` drops every stored key before the change set's own keys are set.
pub async fn apply_clear_drops_old_keys(store: Store) {
    let id = new_id();
    ok(
        store
            .set_map(&id, data(&[("a", "1"), ("b", "2")]), LONG)
            .await,
        "set_map",
    );
    let changes = ChangeSet {
        clear: true,
        ..change(&[], &[("b", "20"), ("c", "3")])
    };
    apply_expect(&store, &id, changes, true, "apply(clear, set b c)").await;
    assert_data(
        &store,
        &id,
        &data(&[("b", "20"), ("c", "3")]),
        "after apply(clear, set b c)",
    )
    .await;
}

/// Order is clear, then remove, then set: a key both removed and set ends up set.
pub async fn apply_removes_before_setting(store: Store) {
    let id = new_id();
    ok(store.set(&id, "a", val("1"), LONG).await, "set");
    apply_expect(
        &store,
        &id,
        change(&["a", "b"], &[("a", "2"), ("b", "3")]),
        true,
        "apply(remove a b, set a b)",
    )
    .await;
    assert_data(
        &store,
        &id,
        &data(&[("a", "2"), ("b", "3")]),
        "a key both removed and set must end up set",
    )
    .await;
}

/// `only_if_exists` on a session that never existed writes nothing and returns `false`.
pub async fn apply_only_if_exists_on_missing_writes_nothing(store: Store) {
    let id = new_id();
    let changes = ChangeSet {
        only_if_exists: true,
        ..change(&[], &[("a", "1")])
    };
    apply_expect(
        &store,
        &id,
        changes,
        false,
        "apply(only_if_exists) on a new id",
    )
    .await;
    assert_missing(&store, &id, "after apply(only_if_exists) on a new id").await;
}

/// `only_if_exists` on an expired session writes nothing (and brings nothing back) and returns
/// `false`.
pub async fn apply_only_if_exists_on_expired_writes_nothing(store: Store) {
    let id = new_id();
    ok(
        store.set_map(&id, data(&[("old", "1")]), ms(150)).await,
        "set_map",
    );
    sleep(ms(350)).await;
    let changes = ChangeSet {
        only_if_exists: true,
        ..change(&[], &[("new", "2")])
    };
    apply_expect(
        &store,
        &id,
        changes,
        false,
        "apply(only_if_exists) on an expired session",
    )
    .await;
    assert_missing(
        &store,
        &id,
        "after apply(only_if_exists) on an expired session",
    )
    .await;
}

/// `only_if_exists` on a live session applies the changes and returns `true`.
pub async fn apply_only_if_exists_on_live_session_applies(store: Store) {
    let id = new_id();
    ok(store.set(&id, "a", val("1"), LONG).await, "set");
    let changes = ChangeSet {
        only_if_exists: true,
        ..change(&[], &[("b", "2")])
    };
    apply_expect(
        &store,
        &id,
        changes,
        true,
        "apply(only_if_exists) on a live session",
    )
    .await;
    assert_data(
        &store,
        &id,
        &data(&[("a", "1"), ("b", "2")]),
        "after apply(only_if_exists) on a live session",
    )
    .await;
}

/// A change set that leaves no key removes the session and returns `false`.
pub async fn apply_result_without_keys_removes_session(store: Store) {
    let by_remove = new_id();
    ok(
        store
            .set_map(&by_remove, data(&[("a", "1"), ("b", "2")]), LONG)
            .await,
        "set_map",
    );
    apply_expect(
        &store,
        &by_remove,
        change(&["a", "b"], &[]),
        false,
        "apply removing every key",
    )
    .await;
    assert_missing(&store, &by_remove, "after apply removing every key").await;

    let by_clear = new_id();
    ok(store.set(&by_clear, "a", val("1"), LONG).await, "set");
    let clear = ChangeSet {
        clear: true,
        ..ChangeSet::default()
    };
    apply_expect(
        &store,
        &by_clear,
        clear,
        false,
        "apply(clear) with nothing to set",
    )
    .await;
    assert_missing(&store, &by_clear, "after apply(clear) with nothing to set").await;

    let fresh = new_id();
    apply_expect(
        &store,
        &fresh,
        change(&["a"], &[]),
        false,
        "apply removing a key of a missing session",
    )
    .await;
    assert_missing(
        &store,
        &fresh,
        "after apply removing a key of a missing session",
    )
    .await;
}

/// An empty change set on a live session keeps its keys, slides its expiry, and returns `true`.
pub async fn apply_empty_changeset_slides_expiry(store: Store) {
    let s = Arc::clone(&store);
    super::expiry::slide_with(
        &store,
        "apply(empty change set)",
        data(&[("a", "1")]),
        |id| async move {
            let name = s.name();
            let exists = s.apply(&id, ChangeSet::default(), ms(600)).await?;
            assert!(
                exists,
                "[{name}] apply(empty change set) on a live session returned false"
            );
            Ok(())
        },
    )
    .await;
}

/// An empty change set on a missing session creates nothing and returns `false`.
pub async fn apply_empty_changeset_on_missing_creates_nothing(store: Store) {
    let id = new_id();
    apply_expect(
        &store,
        &id,
        ChangeSet::default(),
        false,
        "apply(empty change set) on a new id",
    )
    .await;
    assert_missing(&store, &id, "after apply(empty change set) on a new id").await;
}

/// `apply` on an expired session starts from empty: the old keys do not come back.
pub async fn apply_on_expired_session_starts_empty(store: Store) {
    let id = new_id();
    let other = new_id();
    for id in [&id, &other] {
        ok(
            store
                .set_map(id, data(&[("old1", "1"), ("old2", "2")]), ms(150))
                .await,
            "set_map",
        );
    }
    sleep(ms(350)).await;
    apply_expect(
        &store,
        &id,
        change(&["old1"], &[("new", "3")]),
        true,
        "apply on an expired session",
    )
    .await;
    assert_data(
        &store,
        &id,
        &data(&[("new", "3")]),
        "apply on an expired session must start empty (old keys must not come back)",
    )
    .await;
    apply_expect(
        &store,
        &other,
        change(&["old1"], &[]),
        false,
        "apply removing one key of an expired session",
    )
    .await;
    assert_missing(
        &store,
        &other,
        "after apply removing one key of an expired session",
    )
    .await;
}

/// A change set with a NUL or oversized key anywhere (in `set` or `remove`) is
/// `Error::InvalidInput` and nothing at all is applied, not even its valid parts or its `clear`.
pub async fn apply_with_bad_key_writes_nothing(store: Store) {
    let fresh = new_id();
    let live = new_id();
    let kept = data(&[("a", "1"), ("b", "2")]);
    ok(store.set_map(&live, kept.clone(), LONG).await, "set_map");
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    for bad in ["bad\0key", too_long.as_str()] {
        let mut bad_in_set = change(&["a"], &[("c", "3")]);
        bad_in_set.set.insert(bad.to_string(), val("x"));
        let bad_in_remove = change(&["a", bad], &[("c", "3")]);
        let bad_with_clear = ChangeSet {
            clear: true,
            ..bad_in_set.clone()
        };
        for id in [&fresh, &live] {
            for (what, changes) in [
                ("apply with a bad key in `set`", bad_in_set.clone()),
                ("apply with a bad key in `remove`", bad_in_remove.clone()),
                (
                    "apply(clear) with a bad key in `set`",
                    bad_with_clear.clone(),
                ),
            ] {
                invalid_input(store.apply(id, changes, LONG).await, what);
            }
        }
    }
    assert_missing(
        &store,
        &fresh,
        "after change sets with a bad key on a new id",
    )
    .await;
    assert_data(
        &store,
        &live,
        &kept,
        "after change sets with a bad key on a live session (nothing may change: keys are checked before any write)",
    )
    .await;
}

/// How far a reported deadline may be from now + ttl (clock reads and backend round trips).
const DEADLINE_SLACK: Duration = Duration::from_millis(10);

/// Runs `write` (which uses `ttl`) and checks that `load` then reports the data and, when it
/// reports a deadline, one within a few ms of now + `ttl`. Returns the deadline.
async fn check_load_after<F, Fut>(
    store: &Store,
    id: &SessionId,
    expected: &Data,
    ttl: Duration,
    what: &str,
    write: F,
) -> Option<SystemTime>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let name = store.name();
    let before = SystemTime::now();
    ok(write().await, what);
    let after = SystemTime::now();
    let loaded = ok(store.load(id).await, "load");
    let Some(loaded) = loaded else {
        panic!("[{name}] load after {what} returned None for a live session");
    };
    assert!(
        loaded.data == *expected,
        "[{name}] load after {what} returned keys {}, expected {}",
        keys(&loaded.data.to_data()),
        keys(expected)
    );
    let declared = store.capabilities().load_with_deadline;
    match loaded.expires_at {
        None => {
            assert!(
                !declared,
                "[{name}] load returned no deadline, but capabilities() declares load_with_deadline"
            );
            None
        }
        Some(deadline) => {
            let earliest = before + ttl - DEADLINE_SLACK;
            let latest = after + ttl + DEADLINE_SLACK;
            assert!(
                deadline >= earliest && deadline <= latest,
                "[{name}] load after {what} (ttl {} ms) reported a deadline {} from now + ttl \
                 (allowed: {} ms either side)",
                ttl.as_millis(),
                describe_offset(deadline, before + ttl),
                DEADLINE_SLACK.as_millis()
            );
            Some(deadline)
        }
    }
}

/// "N ms before" / "N ms after" for failure messages.
fn describe_offset(got: SystemTime, wanted: SystemTime) -> String {
    match got.duration_since(wanted) {
        Ok(d) => format!("{} ms after", d.as_millis()),
        Err(e) => format!("{} ms before", e.duration().as_millis()),
    }
}

/// `load` returns the whole session and, when `load_with_deadline` is declared, a deadline within
/// a few ms of now + ttl (a deadline it reports without declaring it must be right too).
pub async fn load_returns_data_and_deadline(store: Store) {
    let id = new_id();
    let expected = data(&[("a", "1"), ("b", "2")]);
    let ttl = ms(10_000);
    let s = Arc::clone(&store);
    let (i, d) = (id.clone(), expected.clone());
    check_load_after(&store, &id, &expected, ttl, "set_map", || async move {
        s.set_map(&i, d, ttl).await
    })
    .await;
    let missing = ok(store.load(&new_id()).await, "load of a missing session");
    assert!(
        missing.is_none(),
        "[{}] load of a missing session returned {missing:?}",
        store.name()
    );
}

/// The deadline `load` reports follows `update_ttl` and writes (to later or sooner), and reads do
/// not move it.
pub async fn load_deadline_follows_writes(store: Store) {
    let name = store.name();
    let id = new_id();
    ok(store.set(&id, "a", val("1"), ms(10_000)).await, "set");
    let s = Arc::clone(&store);
    let i = id.clone();
    let after_update = check_load_after(
        &store,
        &id,
        &data(&[("a", "1")]),
        ms(60_000),
        "update_ttl(60 s)",
        || async move { s.update_ttl(&i, ms(60_000)).await },
    )
    .await;
    ok(store.get_map(&id).await, "get_map");
    ok(store.get_session(&id, LONG, None).await, "get_session");
    if let Some(first) = after_update {
        let again = ok(store.load(&id).await, "load")
            .and_then(|l| l.expires_at)
            .unwrap_or_else(|| panic!("[{name}] a second load lost the session or its deadline"));
        let drift = again.duration_since(first).unwrap_or_else(|e| e.duration());
        assert!(
            drift <= DEADLINE_SLACK,
            "[{name}] the deadline moved by {} ms between two loads with only reads in between",
            drift.as_millis()
        );
    }
    let s = Arc::clone(&store);
    let i = id.clone();
    check_load_after(
        &store,
        &id,
        &data(&[("a", "1"), ("b", "2")]),
        ms(30_000),
        "set(30 s) after update_ttl(60 s)",
        || async move { s.set(&i, "b", val("2"), ms(30_000)).await },
    )
    .await;
}
