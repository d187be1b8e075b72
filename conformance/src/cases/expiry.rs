//! Expiry to the millisecond: deadlines, sliding, expired sessions, TTL validation.

use session_core::ChangeSet;
use session_core::check::MAX_TTL;
use tokio::time::{Instant, sleep, sleep_until};

use super::*;

/// Fails the case (with a message that blames the machine, not the driver) when the runtime
/// stalled so long that a timing check would no longer mean anything.
#[track_caller]
fn still_on_time(since: Instant, limit: Duration, what: &str) {
    let elapsed = since.elapsed();
    assert!(
        elapsed < limit,
        "{}: {what} ran {} ms after the write began, later than the {} ms this case \
         needs to be meaningful (not necessarily a driver bug; rerun on a less loaded machine)",
        crate::STALL_MARKER,
        elapsed.as_millis(),
        limit.as_millis()
    );
}

/// A session with a 300 ms TTL is present 100 ms after the write and gone 500 ms after it: the TTL
/// is neither rounded down to zero nor up to a second.
pub async fn ttl_300ms_expires_on_time(store: Store) {
    let name = store.name();
    let id = new_id();
    let t0 = Instant::now();
    ok(store.set(&id, "k", val("v"), ms(300)).await, "set");
    let t1 = Instant::now();
    assert!(
        exists(&store, &id).await,
        "[{name}] a session set with a 300 ms TTL was missing {} ms after the write (TTL rounded down?)",
        t0.elapsed().as_millis()
    );
    sleep_until(t0 + ms(100)).await;
    let present = exists(&store, &id).await;
    still_on_time(t0, ms(250), "the presence check");
    assert!(
        present,
        "[{name}] a session with a 300 ms TTL was gone {} ms after the write (TTL rounded down?)",
        t0.elapsed().as_millis()
    );
    sleep_until(t1 + ms(500)).await;
    assert_missing(
        &store,
        &id,
        "500 ms after a write with a 300 ms TTL (TTL rounded up to seconds, or not honoured?)",
    )
    .await;
}

/// Once the deadline has passed, every read treats the session as missing, whether or not the
/// backend has deleted it yet.
pub async fn expired_session_reads_as_empty(store: Store) {
    let id = new_id();
    ok(
        store
            .set_map(&id, data(&[("a", "1"), ("b", "2")]), ms(200))
            .await,
        "set_map",
    );
    let t1 = Instant::now();
    sleep_until(t1 + ms(400)).await;
    assert_missing(&store, &id, "400 ms after a write with a 200 ms TTL").await;
}

/// `get_session` never returns data, not even the caller's `cached` data, for a session that
/// expired, was removed, or never existed.
pub async fn get_session_never_returns_cached_data_for_dead_session(store: Store) {
    let name = store.name();
    let cached = data(&[("a", "1")]);
    let expired = new_id();
    let removed = new_id();
    let never = new_id();
    ok(
        store.set_map(&expired, cached.clone(), ms(150)).await,
        "set_map",
    );
    ok(
        store.set_map(&removed, cached.clone(), LONG).await,
        "set_map",
    );
    // Read once while alive, so a driver that caches what it read has something cached.
    ok(store.get_session(&expired, LONG, None).await, "get_session");
    ok(store.get_session(&removed, LONG, None).await, "get_session");
    ok(store.remove_all(&removed).await, "remove_all");
    sleep(ms(350)).await;
    for (what, id) in [
        ("expired", &expired),
        ("removed", &removed),
        ("never written", &never),
    ] {
        let got = ok(
            store.get_session(id, LONG, Some(&cached)).await,
            "get_session with cached data",
        );
        assert!(
            got.is_none(),
            "[{name}] get_session(cached = Some(..)) returned keys {} for a {what} session; it must return None",
            keys(&got.unwrap_or_default())
        );
    }
}

/// Writes one key to a session that expired: the old keys do not come back.
async fn write_after_expiry(store: &Store, how: &str) {
    let id = new_id();
    ok(
        store
            .set_map(&id, data(&[("old1", "1"), ("old2", "2")]), ms(150))
            .await,
        "set_map",
    );
    sleep(ms(350)).await;
    let fresh = data(&[("new", "3")]);
    match how {
        "set" => ok(store.set(&id, "new", val("3"), LONG).await, "set"),
        "set_map" => ok(store.set_map(&id, fresh.clone(), LONG).await, "set_map"),
        _ => ok(
            store.set_session(&id, fresh.clone(), LONG).await,
            "set_session",
        ),
    }
    assert_data(
        store,
        &id,
        &fresh,
        &format!("{how} on an expired session must start empty (old keys must not come back)"),
    )
    .await;
}

/// `set` on an expired session starts from empty: the expired keys do not come back.
pub async fn set_on_expired_session_starts_empty(store: Store) {
    write_after_expiry(&store, "set").await;
}

/// `set_map` on an expired session starts from empty: the expired keys do not come back.
pub async fn set_map_on_expired_session_starts_empty(store: Store) {
    write_after_expiry(&store, "set_map").await;
}

/// `set_session` on an expired session holds exactly the new data.
pub async fn set_session_on_expired_session_starts_empty(store: Store) {
    write_after_expiry(&store, "set_session").await;
}

/// Writes a session with a 300 ms TTL, slides it 150 ms later with `slide` (a 600 ms TTL), and
/// checks the whole session is still there 350 ms after the slide, well past the first deadline.
///
/// The slide must come before the first deadline, which the first write sets somewhere between
/// its start and its end: so the time is counted from before that write (a write slowed down by
/// a loaded machine then shows as a stall, run again, not as a session the slide lost).
pub(super) async fn slide_with<F, Fut>(store: &Store, how: &str, expected: Data, slide: F)
where
    F: FnOnce(SessionId) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let name = store.name();
    let id = new_id();
    let t0 = Instant::now();
    ok(store.set(&id, "a", val("1"), ms(300)).await, "set");
    let t1 = Instant::now();
    sleep_until(t1 + ms(150)).await;
    still_on_time(t0, ms(250), how);
    let t2 = Instant::now();
    ok(slide(id.clone()).await, how);
    sleep_until(t2 + ms(350)).await;
    let map = ok(store.get_map(&id).await, "get_map");
    assert!(
        map == expected,
        "[{name}] {} ms after {how} with a 600 ms TTL (and {} ms after the first write with a 300 ms TTL) \
         get_map returned keys {}, expected {}: {how} must set the expiry to now + ttl",
        t2.elapsed().as_millis(),
        t1.elapsed().as_millis(),
        keys(&map),
        keys(&expected)
    );
}

/// `set` moves the whole session's deadline to now + ttl.
pub async fn set_slides_expiry(store: Store) {
    let s = Arc::clone(&store);
    slide_with(
        &store,
        "set",
        data(&[("a", "1"), ("b", "2")]),
        |id| async move { s.set(&id, "b", val("2"), ms(600)).await },
    )
    .await;
}

/// `set_map` moves the whole session's deadline to now + ttl.
pub async fn set_map_slides_expiry(store: Store) {
    let s = Arc::clone(&store);
    slide_with(
        &store,
        "set_map",
        data(&[("a", "1"), ("b", "2")]),
        |id| async move { s.set_map(&id, data(&[("b", "2")]), ms(600)).await },
    )
    .await;
}

/// `set_map` with an empty map creates nothing but still slides an existing session's expiry.
pub async fn set_map_empty_slides_expiry(store: Store) {
    let s = Arc::clone(&store);
    slide_with(
        &store,
        "set_map(empty)",
        data(&[("a", "1")]),
        |id| async move { s.set_map(&id, Data::new(), ms(600)).await },
    )
    .await;
}

/// `set_session` sets the deadline to now + ttl.
pub async fn set_session_slides_expiry(store: Store) {
    let s = Arc::clone(&store);
    slide_with(
        &store,
        "set_session",
        data(&[("c", "3")]),
        |id| async move { s.set_session(&id, data(&[("c", "3")]), ms(600)).await },
    )
    .await;
}

/// `update_ttl` slides an existing session's deadline to now + ttl and keeps its keys.
pub async fn update_ttl_slides_expiry(store: Store) {
    let s = Arc::clone(&store);
    slide_with(&store, "update_ttl", data(&[("a", "1")]), |id| async move {
        s.update_ttl(&id, ms(600)).await
    })
    .await;
}

/// `update_ttl` sets the deadline to now + ttl even when that is sooner than before.
pub async fn update_ttl_can_shorten_expiry(store: Store) {
    let id = new_id();
    ok(store.set(&id, "a", val("1"), LONG).await, "set");
    ok(store.update_ttl(&id, ms(200)).await, "update_ttl");
    let t1 = Instant::now();
    sleep_until(t1 + ms(400)).await;
    assert_missing(
        &store,
        &id,
        "400 ms after update_ttl(200 ms) on a session that had a long TTL (the expiry is now + ttl, not the later of the two)",
    )
    .await;
}

/// `update_ttl` on a session that never existed is `Ok` and creates nothing.
pub async fn update_ttl_missing_creates_nothing(store: Store) {
    let id = new_id();
    ok(
        store.update_ttl(&id, LONG).await,
        "update_ttl on a missing session",
    );
    assert_missing(&store, &id, "after update_ttl on a missing session").await;
}

/// `update_ttl` on an expired session does not bring it back.
pub async fn update_ttl_does_not_revive_expired(store: Store) {
    let id = new_id();
    ok(store.set(&id, "a", val("1"), ms(150)).await, "set");
    sleep(ms(350)).await;
    ok(
        store.update_ttl(&id, LONG).await,
        "update_ttl on an expired session",
    );
    assert_missing(
        &store,
        &id,
        "after update_ttl on an expired session (it must not be revived)",
    )
    .await;
}

/// Reads (`get`, `get_map`, `get_size`, `get_session` with a long `ttl`, `load`) never move the
/// deadline: a session read every 40 ms still expires on time.
pub async fn reads_do_not_slide_expiry(store: Store) {
    let name = store.name();
    let id = new_id();
    let expected = data(&[("a", "1"), ("b", "2")]);
    ok(
        store.set_map(&id, expected.clone(), ms(400)).await,
        "set_map",
    );
    let t1 = Instant::now();
    let first = ok(store.get_map(&id).await, "get_map");
    assert!(
        first == expected,
        "[{name}] get_map right after set_map returned keys {}",
        keys(&first)
    );
    while t1.elapsed() < ms(300) {
        ok(store.get(&id, "a").await, "get");
        ok(store.get_map(&id).await, "get_map");
        ok(store.get_size(&id).await, "get_size");
        ok(store.get_session(&id, LONG, None).await, "get_session");
        ok(store.load(&id).await, "load");
        sleep(ms(40)).await;
    }
    sleep_until(t1 + ms(650)).await;
    assert_missing(
        &store,
        &id,
        "650 ms after a write with a 400 ms TTL, read until 300 ms (reads must not slide the expiry)",
    )
    .await;
}

/// `remove` of one key does not move the deadline.
pub async fn remove_does_not_slide_expiry(store: Store) {
    let id = new_id();
    ok(
        store
            .set_map(&id, data(&[("a", "1"), ("b", "2")]), ms(300))
            .await,
        "set_map",
    );
    let t1 = Instant::now();
    sleep_until(t1 + ms(250)).await;
    ok(store.remove(&id, "a").await, "remove");
    sleep_until(t1 + ms(480)).await;
    assert_missing(
        &store,
        &id,
        "480 ms after a write with a 300 ms TTL and a remove at 250 ms (remove must not slide the expiry)",
    )
    .await;
}

/// A sub-millisecond TTL is accepted (it rounds up to 1 ms, never down to zero or "no expiry") and
/// the session is gone soon after.
pub async fn sub_ms_ttl_rounds_up(store: Store) {
    let by_set = new_id();
    let by_set_map = new_id();
    let by_update = new_id();
    let by_apply = new_id();
    ok(
        store
            .set(&by_set, "k", val("v"), Duration::from_nanos(1))
            .await,
        "set with a 1 ns TTL",
    );
    ok(
        store
            .set_map(&by_set_map, data(&[("k", "v")]), Duration::from_micros(999))
            .await,
        "set_map with a 999 µs TTL",
    );
    ok(store.set(&by_update, "k", val("v"), LONG).await, "set");
    ok(
        store
            .update_ttl(&by_update, Duration::from_micros(500))
            .await,
        "update_ttl with a 500 µs TTL",
    );
    let changes = ChangeSet {
        set: data(&[("k", "v")]),
        ..ChangeSet::default()
    };
    ok(
        store
            .apply(&by_apply, changes, Duration::from_micros(1))
            .await,
        "apply with a 1 µs TTL",
    );
    sleep(ms(200)).await;
    for (what, id) in [
        ("set(1 ns)", &by_set),
        ("set_map(999 µs)", &by_set_map),
        ("update_ttl(500 µs)", &by_update),
        ("apply(1 µs)", &by_apply),
    ] {
        assert_missing(
            &store,
            id,
            &format!("200 ms after {what}: a sub-ms TTL rounds up to 1 ms, not to \"no expiry\" or a second"),
        )
        .await;
    }
}

/// Checks that every write with `ttl` is `InvalidInput` and writes nothing.
async fn bad_ttl_writes_nothing(store: &Store, ttl: Duration, what: &str) {
    let fresh = new_id();
    let live = new_id();
    let kept = data(&[("k", "v")]);
    ok(store.set_map(&live, kept.clone(), LONG).await, "set_map");
    let one = data(&[("k", "other")]);
    let changes = || ChangeSet {
        set: one.clone(),
        ..ChangeSet::default()
    };
    for id in [&fresh, &live] {
        invalid_input(
            store.set(id, "k", val("other"), ttl).await,
            &format!("set with {what}"),
        );
        invalid_input(
            store.set_map(id, one.clone(), ttl).await,
            &format!("set_map with {what}"),
        );
        invalid_input(
            store.set_map(id, Data::new(), ttl).await,
            &format!("set_map(empty) with {what}"),
        );
        invalid_input(
            store.set_session(id, one.clone(), ttl).await,
            &format!("set_session with {what}"),
        );
        invalid_input(
            store.update_ttl(id, ttl).await,
            &format!("update_ttl with {what}"),
        );
        invalid_input(
            store.apply(id, changes(), ttl).await,
            &format!("apply with {what}"),
        );
    }
    assert_missing(
        store,
        &fresh,
        &format!("after writes with {what} on a new id (nothing may be written)"),
    )
    .await;
    assert_data(
        store,
        &live,
        &kept,
        &format!("after writes with {what} on a live session (nothing may change)"),
    )
    .await;
}

/// A zero TTL is `Error::InvalidInput` for every write and for `update_ttl`, and nothing is
/// written.
pub async fn zero_ttl_is_invalid_input(store: Store) {
    bad_ttl_writes_nothing(&store, Duration::ZERO, "a zero TTL").await;
}

/// A TTL over `check::MAX_TTL` (ten years) is `Error::InvalidInput` and nothing is written;
/// `MAX_TTL` itself works.
pub async fn ttl_over_max_is_invalid_input(store: Store) {
    bad_ttl_writes_nothing(&store, MAX_TTL + ms(1000), "a TTL over MAX_TTL").await;
    let id = new_id();
    ok(
        store.set(&id, "k", val("v"), MAX_TTL).await,
        "set with MAX_TTL (ten years)",
    );
    assert_data(&store, &id, &data(&[("k", "v")]), "after set with MAX_TTL").await;
}
