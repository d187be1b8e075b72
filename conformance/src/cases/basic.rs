//! The eleven basic methods on live and missing sessions.

use super::*;

/// Every read of a session that was never written is empty: `get` is `None`, `get_map` empty,
/// `get_size` 0, `get_session` and `load` `None`.
pub async fn missing_session_reads_as_empty(store: Store) {
    assert_missing(&store, &new_id(), "a session never written").await;
}

/// `new` returns `None` or a valid fresh id, and creates nothing: the id it returns has no keys,
/// and two calls do not return the same id.
pub async fn new_creates_nothing(store: Store) {
    let name = store.name();
    let a = ok(store.new(LONG).await, "new");
    let b = ok(store.new(LONG).await, "new");
    if let Some(a) = &a {
        assert_missing(&store, a, "the id new() returned, before any write").await;
        assert!(
            SessionId::parse(a.as_str()).is_ok(),
            "[{name}] new() returned an id that SessionId::parse rejects"
        );
    }
    if let (Some(a), Some(b)) = (&a, &b) {
        assert_ne!(a, b, "[{name}] two calls to new() returned the same id");
    }
}

/// `set` then `get` returns the same bytes; a key never set is `None`; `get_size` is 1.
pub async fn set_then_get_round_trips(store: Store) {
    let id = new_id();
    ok(store.set(&id, "user", val("alice"), LONG).await, "set");
    assert_data(&store, &id, &data(&[("user", "alice")]), "after set(user)").await;
    let other = ok(store.get(&id, "other").await, "get");
    assert!(
        other.is_none(),
        "[{}] get of a key never set returned {other:?}",
        store.name()
    );
}

/// `set` of an existing key replaces its value.
pub async fn set_overwrites_a_key(store: Store) {
    let id = new_id();
    ok(store.set(&id, "k", val("old"), LONG).await, "set");
    ok(store.set(&id, "k", val("new"), LONG).await, "set");
    assert_data(&store, &id, &data(&[("k", "new")]), "after setting k twice").await;
}

/// `set` of one key keeps the session's other keys.
pub async fn set_keeps_other_keys(store: Store) {
    let id = new_id();
    ok(store.set(&id, "a", val("1"), LONG).await, "set");
    ok(store.set(&id, "b", val("2"), LONG).await, "set");
    ok(store.set(&id, "a", val("3"), LONG).await, "set");
    assert_data(
        &store,
        &id,
        &data(&[("a", "3"), ("b", "2")]),
        "after set(a), set(b), set(a)",
    )
    .await;
}

/// `get_map` returns every key with its value.
pub async fn get_map_returns_every_key(store: Store) {
    let id = new_id();
    let expected = data(&[("a", "1"), ("b", "2"), ("c", "3")]);
    for (k, v) in &expected {
        ok(store.set(&id, k, v.clone(), LONG).await, "set");
    }
    assert_data(&store, &id, &expected, "after three sets").await;
}

/// `get_size` counts keys as they are added and removed.
pub async fn get_size_counts_keys(store: Store) {
    let name = store.name();
    let id = new_id();
    for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
        ok(store.set(&id, k, val(k), LONG).await, "set");
        let size = ok(store.get_size(&id).await, "get_size");
        assert_eq!(size, i + 1, "[{name}] get_size after {} sets", i + 1);
    }
    ok(store.remove(&id, "b").await, "remove");
    let size = ok(store.get_size(&id).await, "get_size");
    assert_eq!(size, 3, "[{name}] get_size after removing one of four keys");
}

/// `set_map` merges: keys not in the map are kept, keys in it are overwritten.
pub async fn set_map_merges_keys(store: Store) {
    let id = new_id();
    ok(
        store
            .set_map(&id, data(&[("a", "1"), ("b", "2")]), LONG)
            .await,
        "set_map",
    );
    ok(
        store
            .set_map(&id, data(&[("b", "20"), ("c", "30")]), LONG)
            .await,
        "set_map",
    );
    assert_data(
        &store,
        &id,
        &data(&[("a", "1"), ("b", "20"), ("c", "30")]),
        "set_map must merge (keep `a`), not replace the session",
    )
    .await;
}

/// `set_map` on a missing session creates it with exactly the map's keys.
pub async fn set_map_creates_session(store: Store) {
    let id = new_id();
    let expected = data(&[("x", "1"), ("y", "2")]);
    ok(store.set_map(&id, expected.clone(), LONG).await, "set_map");
    assert_data(&store, &id, &expected, "after set_map on a new session").await;
}

/// `set_map` with an empty map creates nothing (a session with no keys does not exist) and leaves
/// an existing session's keys alone.
pub async fn set_map_empty_creates_nothing(store: Store) {
    let id = new_id();
    ok(
        store.set_map(&id, Data::new(), LONG).await,
        "set_map(empty)",
    );
    assert_missing(&store, &id, "after set_map with an empty map on a new id").await;
    let live = new_id();
    ok(store.set(&live, "k", val("v"), LONG).await, "set");
    ok(
        store.set_map(&live, Data::new(), LONG).await,
        "set_map(empty)",
    );
    assert_data(
        &store,
        &live,
        &data(&[("k", "v")]),
        "set_map(empty) on a live session",
    )
    .await;
}

/// `set_session` replaces: keys not in the new data are dropped.
pub async fn set_session_replaces_every_key(store: Store) {
    let id = new_id();
    ok(
        store
            .set_session(&id, data(&[("a", "1"), ("b", "2")]), LONG)
            .await,
        "set_session",
    );
    ok(
        store
            .set_session(&id, data(&[("b", "20"), ("c", "30")]), LONG)
            .await,
        "set_session",
    );
    assert_data(
        &store,
        &id,
        &data(&[("b", "20"), ("c", "30")]),
        "set_session must replace the session (drop `a`), not merge",
    )
    .await;
}

/// `set_session` on a missing session creates it.
pub async fn set_session_creates_session(store: Store) {
    let id = new_id();
    let expected = data(&[("x", "1")]);
    ok(
        store.set_session(&id, expected.clone(), LONG).await,
        "set_session",
    );
    assert_data(&store, &id, &expected, "after set_session on a new id").await;
}

/// `set_session` with empty data removes the session, and creates nothing for a new id.
pub async fn set_session_empty_removes_session(store: Store) {
    let id = new_id();
    ok(store.set(&id, "k", val("v"), LONG).await, "set");
    ok(
        store.set_session(&id, Data::new(), LONG).await,
        "set_session(empty)",
    );
    assert_missing(&store, &id, "after set_session with empty data").await;
    let fresh = new_id();
    ok(
        store.set_session(&fresh, Data::new(), LONG).await,
        "set_session(empty)",
    );
    assert_missing(
        &store,
        &fresh,
        "after set_session with empty data on a new id",
    )
    .await;
}

/// `get_session` returns the whole session, whatever `ttl` and `cached` the caller passes.
pub async fn get_session_returns_whole_session(store: Store) {
    let name = store.name();
    let id = new_id();
    let expected = data(&[("a", "1"), ("b", "2")]);
    ok(store.set_map(&id, expected.clone(), LONG).await, "set_map");
    let got = ok(store.get_session(&id, ms(1500), None).await, "get_session");
    assert!(
        got.as_ref() == Some(&expected),
        "[{name}] get_session returned {:?}, expected keys {}",
        got.as_ref().map(keys),
        keys(&expected)
    );
    let cached = expected.clone();
    let got = ok(
        store.get_session(&id, LONG, Some(&cached)).await,
        "get_session with cached data",
    );
    assert!(
        got.as_ref() == Some(&expected),
        "[{name}] get_session with cached data returned {:?}, expected keys {}",
        got.as_ref().map(keys),
        keys(&expected)
    );
}

/// `remove` deletes one key and keeps the others.
pub async fn remove_deletes_one_key(store: Store) {
    let id = new_id();
    ok(
        store
            .set_map(&id, data(&[("a", "1"), ("b", "2")]), LONG)
            .await,
        "set_map",
    );
    ok(store.remove(&id, "a").await, "remove");
    assert_data(&store, &id, &data(&[("b", "2")]), "after remove(a)").await;
}

/// `remove` of an absent key, or on a missing session, is `Ok` and creates nothing.
pub async fn remove_absent_key_or_session_is_ok(store: Store) {
    let id = new_id();
    ok(store.set(&id, "a", val("1"), LONG).await, "set");
    ok(store.remove(&id, "absent").await, "remove of an absent key");
    assert_data(
        &store,
        &id,
        &data(&[("a", "1")]),
        "after remove of an absent key",
    )
    .await;
    let missing = new_id();
    ok(
        store.remove(&missing, "a").await,
        "remove on a missing session",
    );
    assert_missing(&store, &missing, "after remove on a missing session").await;
}

/// Removing the last key removes the session: it no longer exists for any method, and a later
/// `update_ttl` does not bring it back.
pub async fn remove_last_key_removes_session(store: Store) {
    let id = new_id();
    ok(
        store
            .set_map(&id, data(&[("a", "1"), ("b", "2")]), LONG)
            .await,
        "set_map",
    );
    ok(store.remove(&id, "a").await, "remove");
    ok(store.remove(&id, "b").await, "remove");
    assert_missing(&store, &id, "after removing its last key").await;
    ok(store.update_ttl(&id, LONG).await, "update_ttl");
    assert_missing(&store, &id, "update_ttl after removing the last key").await;
}

/// `remove_all` deletes the whole session.
pub async fn remove_all_deletes_session(store: Store) {
    let id = new_id();
    ok(
        store
            .set_map(&id, data(&[("a", "1"), ("b", "2")]), LONG)
            .await,
        "set_map",
    );
    ok(store.remove_all(&id).await, "remove_all");
    assert_missing(&store, &id, "after remove_all").await;
    ok(store.set(&id, "c", val("3"), LONG).await, "set");
    assert_data(
        &store,
        &id,
        &data(&[("c", "3")]),
        "set after remove_all (old keys must not come back)",
    )
    .await;
}

/// `remove_all` of a missing session is `Ok`, twice in a row too.
pub async fn remove_all_absent_session_is_ok(store: Store) {
    let id = new_id();
    ok(
        store.remove_all(&id).await,
        "remove_all on a missing session",
    );
    ok(
        store.remove_all(&id).await,
        "remove_all on a missing session",
    );
    assert_missing(&store, &id, "after remove_all on a missing session").await;
}

/// Writes to one session never show up in another, and removing one keeps the other.
pub async fn sessions_are_isolated(store: Store) {
    let a = new_id();
    let b = new_id();
    ok(store.set(&a, "k", val("a"), LONG).await, "set");
    ok(store.set(&b, "k", val("b"), LONG).await, "set");
    ok(store.set(&b, "only_b", val("b"), LONG).await, "set");
    assert_data(&store, &a, &data(&[("k", "a")]), "session a next to b").await;
    ok(store.remove_all(&a).await, "remove_all");
    assert_data(
        &store,
        &b,
        &data(&[("k", "b"), ("only_b", "b")]),
        "session b after remove_all(a)",
    )
    .await;
}

/// Ids that differ only in letter case are different sessions.
pub async fn ids_are_case_sensitive(store: Store) {
    let base = new_id();
    let upper = fixed_id(&format!("Case{}", base.as_str().to_ascii_uppercase()));
    let lower = fixed_id(&format!("case{}", base.as_str().to_ascii_lowercase()));
    ok(store.set(&upper, "k", val("upper"), LONG).await, "set");
    ok(store.set(&lower, "k", val("lower"), LONG).await, "set");
    assert_data(
        &store,
        &upper,
        &data(&[("k", "upper")]),
        "ids that differ only in case must be different sessions",
    )
    .await;
    assert_data(
        &store,
        &lower,
        &data(&[("k", "lower")]),
        "ids that differ only in case must be different sessions",
    )
    .await;
}

/// Valid ids at the edges of the format (shortest, longest, all `-`, all `_`, leading `-`) work
/// like any other.
pub async fn boundary_ids_round_trip(store: Store) {
    let ids = [
        "-".repeat(SessionId::MIN_LEN),
        "_".repeat(SessionId::MIN_LEN),
        format!("-{}", "a".repeat(SessionId::MIN_LEN)),
        "0".repeat(SessionId::MIN_LEN),
        "Z".repeat(SessionId::MAX_LEN),
        "a-_".repeat(SessionId::MAX_LEN / 3),
    ];
    for (i, text) in ids.iter().enumerate() {
        let id = fixed_id(text);
        let expected = data(&[("n", &i.to_string())]);
        ok(store.set_map(&id, expected.clone(), LONG).await, "set_map");
        assert_data(
            &store,
            &id,
            &expected,
            &format!("id of {} chars {:?}…", text.len(), &text[..8]),
        )
        .await;
    }
    for text in &ids {
        let id = fixed_id(text);
        ok(store.remove_all(&id).await, "remove_all");
        assert_missing(&store, &id, "boundary id after remove_all").await;
    }
}
