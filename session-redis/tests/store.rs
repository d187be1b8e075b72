//! Redis-specific checks against the real server: the key layout, that every key has an expiry,
//! the owner index's own expiry and pruning, the lock, scan, and input checks.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use redis::AsyncCommands;
use session_core::driver::Expiry;
use session_core::{ChangeSet, Data, Error, SessionId, Storage, Value, check};
use session_redis::{DEFAULT_LIVE_INDEX_GRANULARITY, RedisStore};

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(common::redis_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection to the test server")
}

fn v(text: &str) -> Value {
    Value::encode(text).unwrap()
}

/// The driver-private field of a session hash holding its deadline (unix ms, on the writing client's clock).
const DEADLINE: &[u8] = b"\xffdeadline";

fn data_key(store: &RedisStore, id: &SessionId) -> String {
    format!("{}:{{{}}}:data", store.prefix(), id.as_str())
}

fn owner_key(store: &RedisStore, id: &SessionId) -> String {
    format!("{}:{{{}}}:owner", store.prefix(), id.as_str())
}

/// The deadline in the deadline field of the hash `key`, parsed (`None` if absent): the digits
/// before its first comma (the keys it folds follow).
async fn deadline_field(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<u64> {
    let value: Option<Vec<u8>> = raw.hget(key, DEADLINE).await.unwrap();
    value.map(|v| {
        let digits = v.split(|&b| b == b',').next().unwrap();
        std::str::from_utf8(digits)
            .unwrap()
            .parse()
            .expect("the deadline field starts with decimal unix ms")
    })
}

/// The real expiry of `key` on the server clock: `TIME` + `PTTL`, in unix ms.
async fn server_expiry(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(raw).await.unwrap();
    let pttl: i64 = raw.pttl(key).await.unwrap();
    assert!(pttl > 0, "{key} has no expiry ({pttl})");
    secs * 1000 + micros / 1000 + pttl as u64
}

/// How far apart two times are.
fn apart(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b).unwrap_or_else(|e| e.duration())
}

/// Asserts that `deadline` (unix ms) is within a second of the local now + `ttl`.
fn assert_deadline_near(deadline: u64, ttl: Duration) {
    let expected = check::now_millis() + ttl.as_millis() as u64;
    assert!(
        deadline.abs_diff(expected) < 1000,
        "deadline {deadline} is not now + {ttl:?} ({expected})"
    );
}

/// `deadline` rounded up to the default granularity of the live index.
fn bucket(deadline: u64) -> u64 {
    let g = session_redis::DEFAULT_LIVE_INDEX_GRANULARITY.as_millis() as u64;
    deadline.div_ceil(g) * g
}

/// Every key under `prefix` and its PTTL.
async fn keys_with_ttl(
    raw: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Vec<(String, i64)> {
    let keys: Vec<String> = raw.keys(format!("{prefix}:*")).await.unwrap();
    let mut out = Vec::new();
    for k in keys {
        let ttl: i64 = raw.pttl(&k).await.unwrap();
        out.push((k, ttl));
    }
    out.sort();
    out
}

#[tokio::test]
async fn layout_is_one_hash_per_session_with_a_hash_tag_and_an_expiry() {
    let store = common::open_shared("layout").await;
    let prefix = store.prefix().to_owned();
    let mut raw = raw().await;
    let id = SessionId::generate().unwrap();
    let ttl = Duration::from_secs(60);

    store.set(&id, "a", v("1"), ttl).await.unwrap();
    store.set(&id, "b", v("2"), ttl).await.unwrap();
    store.index_add("alice", &id, ttl * 2).await.unwrap();
    let token = store
        .try_lock(&id, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("free lock");

    let mut keys = keys_with_ttl(&mut raw, &prefix).await;
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let tag = format!("{{{}}}", id.as_str());
    assert_eq!(
        names,
        vec![
            format!("{prefix}:live"),
            format!("{prefix}:owner:{{alice}}"),
            format!("{prefix}:{tag}:data"),
            format!("{prefix}:{tag}:lock"),
            format!("{prefix}:{tag}:owner"),
        ]
    );
    // The live index is the one key without an expiry: it holds ids and deadlines, and writes
    // trim it of expired entries.
    let (live, live_ttl) = keys.remove(0);
    assert_eq!(live_ttl, -1, "{live}");
    for (k, ttl_ms) in &keys {
        assert!(*ttl_ms > 0, "{k} has no expiry ({ttl_ms})");
    }
    let (_, data_ttl) = &keys[1];
    let (_, owner_ttl) = &keys[3];
    assert!(
        owner_ttl >= data_ttl
            && *owner_ttl < data_ttl + DEFAULT_LIVE_INDEX_GRANULARITY.as_millis() as i64 + 1000,
        "owner key expires with the session, at its live index score ({data_ttl} / {owner_ttl} ms)"
    );
    let (_, set_ttl) = &keys[0];
    assert!(
        *set_ttl > 100_000,
        "owner set lives as long as index_add's ttl"
    );
    let data_key = format!("{prefix}:{tag}:data");
    let mut fields: Vec<Vec<u8>> = raw.hkeys(&data_key).await.unwrap();
    fields.sort();
    assert_eq!(
        fields,
        vec![b"a".to_vec(), b"b".to_vec(), DEADLINE.to_vec()],
        "the session keys and the deadline field; the owner is not a field of the hash"
    );
    let deadline = deadline_field(&mut raw, &data_key).await.expect("deadline");
    assert_deadline_near(deadline, ttl);
    let expiry = server_expiry(&mut raw, &data_key).await;
    assert!(
        deadline.abs_diff(expiry) < 50,
        "the field ({deadline}) is the hash's real expiry ({expiry}) (one clock on this machine)"
    );
    let score: Option<f64> = raw.zscore(&live, id.as_str()).await.unwrap();
    assert_eq!(
        score,
        Some(bucket(deadline) as f64),
        "the live index scores the id with the deadline rounded up to the granularity"
    );
    // No read shows the deadline field.
    assert_eq!(store.get_size(&id).await.unwrap(), 2);
    let map = store.get_map(&id).await.unwrap();
    let mut names: Vec<&str> = map.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    let session = store.get_session(&id, ttl, None).await.unwrap().unwrap();
    assert_eq!(session, map);
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(loaded.data, map);
    assert_eq!(
        loaded.expires_at.map(check::unix_millis),
        Some(deadline),
        "load reports the field"
    );

    // Sliding the session moves the deadline field and the owner key with it.
    let slid = Duration::from_secs(600);
    store.update_ttl(&id, slid).await.unwrap();
    let owner_ttl: i64 = raw.pttl(format!("{prefix}:{tag}:owner")).await.unwrap();
    assert!(owner_ttl > 500_000, "owner key slid with the session");
    let moved = deadline_field(&mut raw, &data_key).await.expect("deadline");
    assert_deadline_near(moved, slid);
    let score: Option<f64> = raw.zscore(&live, id.as_str()).await.unwrap();
    assert_eq!(score, Some(bucket(moved) as f64), "the live index slid too");
    let expiry = server_expiry(&mut raw, &data_key).await;
    assert!(moved.abs_diff(expiry) < 50, "{moved} vs {expiry}");
    assert_eq!(
        store.load(&id).await.unwrap().unwrap().expires_at,
        Some(check::from_unix_millis(moved))
    );
    assert_eq!(store.get_size(&id).await.unwrap(), 2);

    assert!(store.unlock(&id, &token).await.unwrap());
    store.clear_prefix().await.unwrap();
    assert!(keys_with_ttl(&mut raw, &prefix).await.is_empty());
}

#[tokio::test]
async fn load_reports_the_deadline_to_the_millisecond() {
    let store = common::open_shared("load").await;
    let id = SessionId::generate().unwrap();
    let before = SystemTime::now();
    store
        .set(&id, "k", v("x"), Duration::from_millis(1500))
        .await
        .unwrap();
    let loaded = store.load(&id).await.unwrap().expect("live session");
    let deadline = loaded.expires_at.expect("a deadline");
    let expected = before + Duration::from_millis(1500);
    let diff = deadline
        .duration_since(expected)
        .unwrap_or_else(|e| e.duration());
    assert!(
        diff < Duration::from_millis(200),
        "deadline off by {diff:?}"
    );
    assert_eq!(loaded.data.get("k"), Some(v("x")));
    store.clear_prefix().await.unwrap();
}

#[tokio::test]
async fn apply_is_atomic_and_empties_remove_the_owner_binding() {
    let store = common::open_shared("apply").await;
    let prefix = store.prefix().to_owned();
    let mut raw = raw().await;
    let id = SessionId::generate().unwrap();
    let ttl = Duration::from_secs(30);
    let mut data = Data::new();
    data.insert("a".into(), v("1"));
    data.insert("b".into(), v("2"));
    store.set_map(&id, data, ttl).await.unwrap();
    store.index_add("bob", &id, ttl).await.unwrap();
    assert_eq!(
        store.index_owner(&id).await.unwrap().as_deref(),
        Some("bob")
    );

    let changes = ChangeSet {
        remove: vec!["a".into(), "b".into()],
        ..ChangeSet::default()
    };
    assert!(!store.apply(&id, changes, ttl).await.unwrap());
    let owner_key: Option<String> = raw
        .get(format!("{prefix}:{{{}}}:owner", id.as_str()))
        .await
        .unwrap();
    assert_eq!(owner_key, None, "emptying the session drops its owner key");
    assert!(store.index_sessions("bob").await.unwrap().is_empty());
    let members: Vec<String> = raw
        .smembers(format!("{prefix}:owner:{{bob}}"))
        .await
        .unwrap();
    assert!(members.is_empty(), "the lookup pruned the dead entry");
    store.clear_prefix().await.unwrap();
}

#[tokio::test]
async fn thousands_of_keys_go_through_one_script() {
    let store = common::open_shared("many").await;
    let id = SessionId::generate().unwrap();
    let data: Data = (0..5000)
        .map(|i| (format!("key-{i}"), v(&i.to_string())))
        .collect();
    store
        .set_session(&id, data.clone(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(store.get_size(&id).await.unwrap(), 5000);
    let changes = ChangeSet {
        remove: (0..2500).map(|i| format!("key-{i}")).collect(),
        ..ChangeSet::default()
    };
    assert!(
        store
            .apply(&id, changes, Duration::from_secs(30))
            .await
            .unwrap()
    );
    assert_eq!(store.get_size(&id).await.unwrap(), 2500);
    assert_eq!(store.get_map(&id).await.unwrap().len(), 2500);
    store.clear_prefix().await.unwrap();
}

#[tokio::test]
async fn scan_pages_through_every_session_of_the_prefix_only() {
    let store = common::open_shared("scan").await;
    let other = common::open_shared("scan-other").await;
    let mut ids = Vec::new();
    for _ in 0..57 {
        let id = SessionId::generate().unwrap();
        store
            .set(&id, "k", v("x"), Duration::from_secs(30))
            .await
            .unwrap();
        store
            .index_add("carol", &id, Duration::from_secs(30))
            .await
            .unwrap();
        ids.push(id);
    }
    let foreign = SessionId::generate().unwrap();
    other
        .set(&foreign, "k", v("x"), Duration::from_secs(30))
        .await
        .unwrap();

    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.scan(cursor.as_deref(), 10).await.unwrap();
        seen.extend(page.ids);
        pages += 1;
        assert!(pages < 10_000, "scan does not end");
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), ids.len());
    assert!(ids.iter().all(|id| seen.contains(id)));
    assert!(!seen.contains(&foreign));
    assert!(matches!(
        store.scan(Some("not-a-cursor"), 10).await,
        Err(Error::InvalidInput(_))
    ));
    store.clear_prefix().await.unwrap();
    other.clear_prefix().await.unwrap();
}

#[tokio::test]
async fn bad_prefixes_and_urls_are_refused_before_connecting() {
    for bad in ["", "a{b}", "a*", "with space"] {
        assert!(matches!(
            RedisStore::builder()
                .prefix(bad)
                .open("redis://127.0.0.1:1")
                .await,
            Err(Error::InvalidInput(_))
        ));
    }
    assert!(matches!(
        RedisStore::open("not a url").await,
        Err(Error::Backend { .. })
    ));
    assert!(matches!(
        RedisStore::open_cluster(Vec::<String>::new()).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn unreachable_server_is_a_quick_backend_error() {
    let port = common::free_port();
    let started = std::time::Instant::now();
    let result = RedisStore::builder()
        .connect_timeout(Duration::from_millis(300))
        .open(&format!("redis://127.0.0.1:{port}"))
        .await;
    assert!(matches!(result, Err(Error::Backend { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_foreign_value_at_a_session_key_is_corrupt_not_a_panic() {
    let store = common::open_shared("corrupt").await;
    let id = SessionId::generate().unwrap();
    let mut raw = raw().await;
    let data_key = format!("{}:{{{}}}:data", store.prefix(), id.as_str());
    let _: () = raw.set_ex(&data_key, "not a hash", 60).await.unwrap();
    let ttl = Duration::from_secs(30);
    assert!(matches!(
        store.get(&id, "k").await,
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(
        store.get_map(&id).await,
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(store.load(&id).await, Err(Error::Corrupt { .. })));
    let written = store.set(&id, "k", v("x"), ttl).await;
    assert!(matches!(written, Err(Error::Corrupt { .. })), "{written:?}");
    // Writes refuse it too, before changing anything: not even its expiry.
    let replaced = store.set_session(&id, Data::new(), ttl).await;
    assert!(
        matches!(replaced, Err(Error::Corrupt { .. })),
        "{replaced:?}"
    );
    let slid = store.update_ttl(&id, Duration::from_secs(5)).await;
    assert!(matches!(slid, Err(Error::Corrupt { .. })), "{slid:?}");
    assert!(matches!(
        store.remove(&id, "k").await,
        Err(Error::Corrupt { .. })
    ));
    let left: String = raw.get(&data_key).await.unwrap();
    assert_eq!(left, "not a hash");
    let pttl: i64 = raw.pttl(&data_key).await.unwrap();
    assert!(
        pttl > 50_000,
        "the foreign key's expiry was changed ({pttl} ms)"
    );
    // remove_all deletes it.
    store.remove_all(&id).await.unwrap();
    let exists: bool = raw.exists(&data_key).await.unwrap();
    assert!(!exists);
    store.clear_prefix().await.unwrap();
}

/// Asserts that `loaded` expires `ttl` after `before` (local clock), within 200 ms.
fn assert_expires_after(expires_at: Option<SystemTime>, before: SystemTime, ttl: Duration) {
    let deadline = expires_at.expect("a deadline");
    let diff = apart(deadline, before + ttl);
    assert!(
        diff < Duration::from_millis(200),
        "deadline off by {diff:?}"
    );
}

#[tokio::test]
async fn a_hash_without_the_deadline_field_loads_with_the_deadline_from_pttl() {
    let store = common::open_shared("nofield").await;
    let mut raw = raw().await;
    let id = SessionId::generate().unwrap();
    let key = data_key(&store, &id);
    // As written before the deadline field existed, or by another tool.
    let before = SystemTime::now();
    let _: () = raw.hset(&key, "k", v("x").as_bytes()).await.unwrap();
    let _: () = raw.pexpire(&key, 7_000).await.unwrap();

    let loaded = store.load(&id).await.unwrap().expect("live session");
    assert_eq!(loaded.data.len(), 1);
    assert_eq!(loaded.data.get("k"), Some(v("x")));
    assert_expires_after(loaded.expires_at, before, Duration::from_millis(7_000));
    assert_eq!(store.get_size(&id).await.unwrap(), 1);
    assert_eq!(
        deadline_field(&mut raw, &key).await,
        None,
        "reads write nothing"
    );

    // The next write adds the field.
    let ttl = Duration::from_secs(30);
    store.set(&id, "k2", v("y"), ttl).await.unwrap();
    let deadline = deadline_field(&mut raw, &key).await.expect("deadline");
    assert_deadline_near(deadline, ttl);
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(loaded.data.len(), 2);
    assert_eq!(loaded.expires_at, Some(check::from_unix_millis(deadline)));
    store.clear_prefix().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_deadline_field_still_loads_with_the_deadline_from_pttl() {
    let store = common::open_shared("badfield").await;
    let mut raw = raw().await;
    let id = SessionId::generate().unwrap();
    let key = data_key(&store, &id);
    store
        .set(&id, "k", v("x"), Duration::from_secs(60))
        .await
        .unwrap();
    let far_future = (check::now_millis() + 20 * 365 * 24 * 3600 * 1000).to_string();
    for bad in [
        "abc",
        "",
        "-1",
        "1.8e+12",
        "18446744073709551616",
        far_future.as_str(),
    ] {
        let _: () = raw.hset(&key, DEADLINE, bad).await.unwrap();
        let before = SystemTime::now();
        let _: () = raw.pexpire(&key, 7_000).await.unwrap();
        let loaded = store.load(&id).await.unwrap().expect("live session");
        assert_eq!(loaded.data.len(), 1, "{bad:?}");
        assert_eq!(loaded.data.get("k"), Some(v("x")));
        assert_expires_after(loaded.expires_at, before, Duration::from_millis(7_000));
        assert_eq!(store.get_size(&id).await.unwrap(), 1);
        assert_eq!(store.get_map(&id).await.unwrap().len(), 1);
    }
    // A slide writes a good one again.
    store
        .update_ttl(&id, Duration::from_secs(90))
        .await
        .unwrap();
    let deadline = deadline_field(&mut raw, &key).await.expect("deadline");
    assert_deadline_near(deadline, Duration::from_secs(90));
    store.clear_prefix().await.unwrap();
}

#[tokio::test]
async fn emptying_a_session_leaves_no_hash_and_no_owner_key() {
    let store = common::open_shared("empty").await;
    let mut raw = raw().await;
    let ttl = Duration::from_secs(60);
    let every_key = ChangeSet {
        remove: vec!["a".into(), "b".into()],
        ..ChangeSet::default()
    };
    let clear = ChangeSet {
        clear: true,
        ..ChangeSet::default()
    };
    for case in ["remove", "apply remove", "apply clear", "set_session empty"] {
        let id = SessionId::generate().unwrap();
        let mut data = Data::new();
        data.insert("a".into(), v("1"));
        data.insert("b".into(), v("2"));
        store.set_map(&id, data, ttl).await.unwrap();
        store.index_add("dave", &id, ttl).await.unwrap();
        let key = data_key(&store, &id);
        let owner = owner_key(&store, &id);
        assert!(deadline_field(&mut raw, &key).await.is_some());
        match case {
            "remove" => {
                store.remove(&id, "a").await.unwrap();
                // One session key left: the hash, its deadline and owner key stay.
                let fields: usize = raw.hlen(&key).await.unwrap();
                assert_eq!(fields, 2, "b and the deadline field");
                assert_eq!(store.get_size(&id).await.unwrap(), 1);
                store.remove(&id, "b").await.unwrap();
            }
            "apply remove" => {
                assert!(!store.apply(&id, every_key.clone(), ttl).await.unwrap());
            }
            "apply clear" => {
                assert!(!store.apply(&id, clear.clone(), ttl).await.unwrap());
            }
            _ => store.set_session(&id, Data::new(), ttl).await.unwrap(),
        }
        let hash_exists: bool = raw.exists(&key).await.unwrap();
        let owner_exists: bool = raw.exists(&owner).await.unwrap();
        assert!(
            !hash_exists,
            "{case}: the hash (deadline field alone) was left"
        );
        assert!(!owner_exists, "{case}: the owner key was left");
        assert_eq!(store.load(&id).await.unwrap(), None, "{case}");
        assert_eq!(store.get_size(&id).await.unwrap(), 0, "{case}");
    }
    store.clear_prefix().await.unwrap();
}

/// `apply` with `Expiry::Keep`, on the driver itself (the checked `Storage` only sends it from
/// the provided `remove`, which `RedisStore` overrides; `tests/core.rs` runs that default).
async fn apply_keep(store: &RedisStore, id: &SessionId, changes: ChangeSet) -> bool {
    session_core::driver::Driver::apply(store, id, changes, Expiry::Keep)
        .await
        .unwrap()
}

/// The PTTL of `key`, which must have one.
async fn pttl_of(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    let pttl: i64 = raw.pttl(key).await.unwrap();
    assert!(pttl > 0, "{key} has no expiry ({pttl})");
    pttl
}

#[tokio::test]
async fn apply_keeping_the_expiry_moves_neither_the_deadline_field_nor_the_pttl() {
    let store = common::open_shared("keep").await;
    let mut raw = raw().await;
    let ttl = Duration::from_secs(60);
    let set_x = ChangeSet {
        set: [("x".to_owned(), v("x"))].into_iter().collect(),
        ..ChangeSet::default()
    };

    // A missing session is not created, not even by a clear.
    let missing = SessionId::generate().unwrap();
    assert!(!apply_keep(&store, &missing, set_x.clone()).await);
    let cleared = ChangeSet {
        clear: true,
        ..set_x.clone()
    };
    assert!(!apply_keep(&store, &missing, cleared).await);
    let exists: bool = raw.exists(data_key(&store, &missing)).await.unwrap();
    assert!(!exists, "Keep created a session");

    let id = SessionId::generate().unwrap();
    let mut data = Data::new();
    data.insert("a".into(), v("1"));
    data.insert("b".into(), v("2"));
    store.set_map(&id, data, ttl).await.unwrap();
    store.index_add("erin", &id, ttl).await.unwrap();
    let (key, owner) = (data_key(&store, &id), owner_key(&store, &id));
    let deadline = deadline_field(&mut raw, &key).await.expect("deadline");
    let (mut data_pttl, mut owner_pttl) = (
        pttl_of(&mut raw, &key).await,
        pttl_of(&mut raw, &owner).await,
    );
    let steps = [
        (
            "set and remove",
            ChangeSet {
                remove: vec!["a".into()],
                ..set_x.clone()
            },
            &["b", "x"][..],
        ),
        (
            "clear and set",
            ChangeSet {
                clear: true,
                set: [("c".to_owned(), v("3"))].into_iter().collect(),
                ..ChangeSet::default()
            },
            &["c"][..],
        ),
        ("nothing", ChangeSet::default(), &["c"][..]),
    ];
    for (step, changes, keys) in steps {
        assert!(apply_keep(&store, &id, changes).await, "{step}");
        let map = store.get_map(&id).await.unwrap();
        let mut names: Vec<&str> = map.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(names, keys, "{step}");
        assert_eq!(
            deadline_field(&mut raw, &key).await,
            Some(deadline),
            "{step}: the deadline field moved"
        );
        let (now_data, now_owner) = (
            pttl_of(&mut raw, &key).await,
            pttl_of(&mut raw, &owner).await,
        );
        assert!(
            now_data <= data_pttl && now_data > data_pttl - 1000,
            "{step}: the hash's expiry moved ({data_pttl} -> {now_data} ms)"
        );
        assert!(
            now_owner <= owner_pttl && now_owner > owner_pttl - 1000,
            "{step}: the owner key's expiry moved ({owner_pttl} -> {now_owner} ms)"
        );
        (data_pttl, owner_pttl) = (now_data, now_owner);
        let loaded = store.load(&id).await.unwrap().expect("live session");
        assert_eq!(loaded.expires_at, Some(check::from_unix_millis(deadline)));
    }

    // Removing the last key removes the session and its owner key.
    let last = ChangeSet {
        remove: vec!["c".into()],
        ..ChangeSet::default()
    };
    assert!(!apply_keep(&store, &id, last).await);
    let (hash_exists, owner_exists): (bool, bool) = (
        raw.exists(&key).await.unwrap(),
        raw.exists(&owner).await.unwrap(),
    );
    assert!(!hash_exists && !owner_exists);
    store.clear_prefix().await.unwrap();
}

#[tokio::test]
async fn a_lone_deadline_field_is_no_session() {
    // Not written by the driver (it never leaves one), but if a hash holds only the field, the
    // session does not exist, and the next write that leaves no key deletes the hash.
    let store = common::open_shared("lone").await;
    let mut raw = raw().await;
    let id = SessionId::generate().unwrap();
    let key = data_key(&store, &id);
    let deadline = (check::now_millis() + 60_000).to_string();
    let _: () = raw.hset(&key, DEADLINE, &deadline).await.unwrap();
    let _: () = raw.pexpire(&key, 60_000).await.unwrap();
    assert_eq!(store.load(&id).await.unwrap(), None);
    assert_eq!(
        store
            .get_session(&id, Duration::from_secs(60), None)
            .await
            .unwrap(),
        None
    );
    assert!(store.get_map(&id).await.unwrap().is_empty());
    assert_eq!(store.get_size(&id).await.unwrap(), 0);
    let only_if_exists = ChangeSet {
        only_if_exists: true,
        set: [("k".to_owned(), v("x"))].into_iter().collect(),
        ..ChangeSet::default()
    };
    assert!(
        !store
            .apply(&id, only_if_exists, Duration::from_secs(60))
            .await
            .unwrap(),
        "only_if_exists sees no session"
    );
    let nothing = ChangeSet {
        remove: vec!["k".into()],
        ..ChangeSet::default()
    };
    assert!(
        !store
            .apply(&id, nothing, Duration::from_secs(60))
            .await
            .unwrap()
    );
    let exists: bool = raw.exists(&key).await.unwrap();
    assert!(!exists, "the write removed the lone deadline field");
    store.clear_prefix().await.unwrap();
}

#[tokio::test]
async fn resp2_and_resp3_replies_are_read_and_foreign_field_names_are_corrupt() {
    let url = common::redis_url();
    let resp3_url = if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    };
    for url in [url, resp3_url] {
        let store = RedisStore::builder()
            .prefix(common::unique_prefix("proto"))
            .open(&url)
            .await
            .unwrap();
        let mut raw = raw().await;
        let id = SessionId::generate().unwrap();
        let ttl = Duration::from_secs(60);
        store.set(&id, "a", v("1"), ttl).await.unwrap();
        store.set(&id, "b", v("2"), ttl).await.unwrap();
        let loaded = store.load(&id).await.unwrap().expect("live session");
        assert_eq!(loaded.data.len(), 2, "{url}");
        assert_eq!(loaded.data.get("b"), Some(v("2")));
        let key = data_key(&store, &id);
        let deadline = deadline_field(&mut raw, &key).await.expect("deadline");
        assert_eq!(loaded.expires_at, Some(check::from_unix_millis(deadline)));
        assert_eq!(store.get_map(&id).await.unwrap(), loaded.data);
        assert_eq!(store.get_size(&id).await.unwrap(), 2);

        let _: () = raw.hset(&key, &b"\xfeforeign"[..], "x").await.unwrap();
        assert!(
            matches!(store.load(&id).await, Err(Error::Corrupt { .. })),
            "{url}"
        );
        assert!(matches!(
            store.get_map(&id).await,
            Err(Error::Corrupt { .. })
        ));
        store.clear_prefix().await.unwrap();
    }
}

/// `total_commands_processed` of the server behind `raw`.
async fn commands_processed(raw: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(raw)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .expect("total_commands_processed in INFO stats")
        .trim()
        .parse()
        .unwrap()
}

/// A private `redis-server` on a free port (stopped when the returned server is dropped), a store
/// on it and a raw connection to it.
async fn private_server(
    prefix: &str,
) -> (
    tempfile::TempDir,
    common::RedisServer,
    RedisStore,
    redis::aio::MultiplexedConnection,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::RedisServer::start(common::free_port(), dir.path(), false, &[]);
    let store = RedisStore::builder()
        .prefix(prefix)
        .open(&server.url())
        .await
        .expect("store on the private server");
    let raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (dir, server, store, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_is_one_command_and_two_only_for_a_hash_without_the_field() {
    // A private server: no other client adds to its command count.
    let (_dir, _server, store, mut raw) = private_server("counttest").await;
    let id = SessionId::generate().unwrap();
    let ttl = Duration::from_secs(60);
    store.set(&id, "k", v("x"), ttl).await.unwrap();
    store.load(&id).await.unwrap().expect("live session");

    // What reading the count costs by itself (the INFO command).
    let first = commands_processed(&mut raw).await;
    let overhead = commands_processed(&mut raw).await - first;
    let commands_of_one_load = async |raw: &mut redis::aio::MultiplexedConnection| {
        let before = commands_processed(raw).await;
        let loaded = store.load(&id).await.unwrap().expect("live session");
        let after = commands_processed(raw).await;
        (after - before - overhead, loaded)
    };

    let (commands, loaded) = commands_of_one_load(&mut raw).await;
    assert_eq!(commands, 1, "load with the deadline field: HGETALL only");
    assert!(loaded.expires_at.is_some());

    let key = data_key(&store, &id);
    let _: () = raw.hdel(&key, DEADLINE).await.unwrap();
    let (commands, loaded) = commands_of_one_load(&mut raw).await;
    assert_eq!(
        commands, 2,
        "load without the deadline field: HGETALL and PTTL"
    );
    assert!(loaded.expires_at.is_some());
    assert_eq!(loaded.data.get("k"), Some(v("x")));
}

#[tokio::test]
async fn scripts_are_loaded_again_after_the_server_forgets_them() {
    // `SCRIPT FLUSH` is what a restart or a failover to a fresh replica does to the script
    // cache: every script call must answer NOSCRIPT once, load the script and run it again.
    // A private server, so the flushes never reach other tests' script calls.
    let (_dir, _server, store, mut raw) = private_server("noscript").await;
    let id = SessionId::generate().unwrap();
    let ttl = Duration::from_secs(60);
    store.set(&id, "a", v("1"), ttl).await.unwrap();
    let token = store.try_lock(&id, ttl).await.unwrap().expect("free lock");
    for step in 0..5 {
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .unwrap();
        match step {
            0 => store.set(&id, "b", v("2"), ttl).await.unwrap(),
            1 => store.update_ttl(&id, ttl * 2).await.unwrap(),
            2 => store.remove(&id, "b").await.unwrap(),
            3 => store.index_add("noscript-owner", &id, ttl).await.unwrap(),
            _ => assert!(store.unlock(&id, &token).await.unwrap()),
        }
        let loaded: u64 = redis::cmd("INFO")
            .arg("memory")
            .query_async::<String>(&mut raw)
            .await
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("number_of_cached_scripts:"))
            .expect("number_of_cached_scripts in INFO memory")
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            loaded, 1,
            "step {step}: the script was loaded again after the flush"
        );
    }
    assert_eq!(store.get_map(&id).await.unwrap().len(), 1);
    assert_eq!(store.get(&id, "a").await.unwrap(), Some(v("1")));
    assert!(store.load(&id).await.unwrap().unwrap().expires_at.is_some());
    assert_eq!(
        store.index_owner(&id).await.unwrap().as_deref(),
        Some("noscript-owner")
    );
    store.clear_prefix().await.unwrap();
}

/// Listing follows the store's sessions, not the database: beside 40,023 keys of another
/// application (with their own expiry), 25 sessions scan in pages of 4 in at most 7 pages, where
/// `SCAN MATCH ... COUNT 4` needed more than 10,000.
#[tokio::test]
async fn scan_beside_forty_thousand_unrelated_keys_costs_pages_per_session() {
    let store = common::open_shared("crowd").await;
    let other = common::unique_prefix("otherapp");
    let mut raw = raw().await;
    for chunk in (0..40_023).collect::<Vec<u32>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("{other}:cache:{i}"))
                .arg("x")
                .arg("EX")
                .arg(600)
                .ignore();
        }
        let () = pipe.query_async(&mut raw).await.unwrap();
    }
    let mut ids = std::collections::HashSet::new();
    for _ in 0..25 {
        let id = SessionId::generate().unwrap();
        store
            .set(&id, "k", v("x"), Duration::from_secs(60))
            .await
            .unwrap();
        ids.insert(id);
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.scan(cursor.as_deref(), 4).await.unwrap();
        pages += 1;
        assert!(page.ids.len() <= 4, "a page of {} ids", page.ids.len());
        seen.extend(page.ids);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages <= 7, "more than 7 pages of 4 for 25 sessions");
    }
    assert_eq!(seen, ids);
    let cleanup = session_redis::client::RedisClient::builder()
        .connect(&common::redis_url())
        .await
        .unwrap();
    assert_eq!(cleanup.clear_prefix(&other).await.unwrap(), 40_023);
    store.clear_prefix().await.unwrap();
}

/// Every 8th write trims the live index of up to 16 expired entries, and `purge_expired` removes
/// the rest and reports how many.
#[tokio::test]
async fn the_live_index_is_trimmed_by_writes_and_purged() {
    // Scores to the millisecond, so sessions of 100 ms are trimmable 100 ms later.
    let store = common::open_shared_exact("trim").await;
    let live = format!("{}:live", store.prefix());
    let mut raw = raw().await;
    let write = |ttl: Duration| {
        let store = store.clone();
        async move {
            let id = SessionId::generate().unwrap();
            store.set(&id, "k", v("x"), ttl).await.unwrap();
        }
    };
    // Writes 0 to 19 of the store (0, 8 and 16 trim): twenty sessions of 100 ms.
    for _ in 0..20 {
        write(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Writes 20 to 23 trim nothing, write 24 takes out 16 of the 20 expired entries.
    for _ in 20..24 {
        write(Duration::from_secs(60)).await;
    }
    let n: usize = raw.zcard(&live).await.unwrap();
    assert_eq!(n, 24, "writes between two trims leave the index alone");
    write(Duration::from_secs(60)).await;
    let n: usize = raw.zcard(&live).await.unwrap();
    assert_eq!(n, 25 - 16, "the 25th write trims 16 expired entries");
    assert_eq!(store.purge_expired().await.unwrap(), 4);
    let n: usize = raw.zcard(&live).await.unwrap();
    assert_eq!(n, 5, "the live sessions' entries stay");
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    store.clear_prefix().await.unwrap();
}

/// A session whose recorded deadline has passed on the local clock is missing for every read,
/// even while the server still holds its hash (a server clock behind the client's, or a hash
/// written by hand): `load`, `get`, `get_size`, `index_owner` and `scan` agree.
#[tokio::test]
async fn a_hash_past_its_recorded_deadline_is_missing_for_every_read() {
    let store = common::open_shared("pastdeadline").await;
    let mut raw = raw().await;
    let id = SessionId::generate().unwrap();
    let ttl = Duration::from_secs(60);
    store.set(&id, "k", v("x"), ttl).await.unwrap();
    store.index_add("erin", &id, ttl).await.unwrap();
    assert_eq!(store.get_size(&id).await.unwrap(), 1);
    // The deadline field says 5 s ago; the server's expiry is still a minute away.
    let past = check::now_millis() - 5_000;
    let () = raw
        .hset(data_key(&store, &id), DEADLINE, past.to_string())
        .await
        .unwrap();
    assert!(store.load(&id).await.unwrap().is_none(), "load");
    assert_eq!(store.get(&id, "k").await.unwrap(), None, "get");
    assert_eq!(store.get_size(&id).await.unwrap(), 0, "get_size");
    assert_eq!(store.index_owner(&id).await.unwrap(), None, "index_owner");
    assert!(store.get_map(&id).await.unwrap().is_empty(), "get_map");
    store.clear_prefix().await.unwrap();
}

/// Paging goes on correctly when the session a cursor names is deleted between two pages (the
/// script then starts after the entries with a lower deadline, or the same deadline and a lower
/// id), also among sessions that share a deadline to the millisecond.
#[tokio::test]
async fn scan_goes_on_when_the_cursors_session_is_gone() {
    let store = common::open_shared("cursorgone").await;
    let mut raw = raw().await;
    let live = format!("{}:live", store.prefix());
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let id = SessionId::generate().unwrap();
        store
            .set(&id, "k", v("x"), Duration::from_secs(60))
            .await
            .unwrap();
        ids.insert(id);
    }
    // Twenty of them share one deadline (rescored by hand): ties ordered by id.
    let shared = check::now_millis() + 30_000;
    for id in ids.iter().take(20) {
        let _: () = raw.zadd(&live, id.as_str(), shared).await.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut removed = std::collections::BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..40 {
        let page = store.scan(cursor.as_deref(), 5).await.unwrap();
        if let Some(last) = page.ids.last() {
            store.remove_all(last).await.unwrap();
            removed.insert(last.clone());
        }
        seen.extend(page.ids);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let missed: Vec<_> = ids.difference(&seen).collect();
    assert!(missed.is_empty(), "missed {} sessions", missed.len());
    assert!(removed.len() >= 8, "{} cursors removed", removed.len());
    store.clear_prefix().await.unwrap();
}

/// The live index's rounded scores (default granularity): writes of a session within its bucket
/// leave the entry's score alone, a later bucket raises it, a shorter TTL never lowers it (so a
/// score is never below the deadline), an entry scored after now whose session expired is never
/// returned by `scan`, and a purge removes such an entry when it is scored within a granularity
/// of now (a write's trim only takes entries scored in the past).
#[tokio::test]
async fn the_live_index_rounds_deadlines_up_and_scan_skips_expired_entries() {
    let store = common::open_shared("rounded").await;
    let mut raw = raw().await;
    let live = format!("{}:live", store.prefix());
    let g = session_redis::DEFAULT_LIVE_INDEX_GRANULARITY.as_millis() as u64;
    let score = |raw: &mut redis::aio::MultiplexedConnection, id: SessionId| {
        let live = live.clone();
        let mut raw = raw.clone();
        async move {
            let s: Option<f64> = raw.zscore(&live, id.as_str()).await.unwrap();
            s.map(|s| s as u64)
        }
    };

    // Far from a bucket's end, two writes 20 ms apart share one score.
    while check::now_millis() % g > g - 3_000 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = SessionId::generate().unwrap();
    let ttl = Duration::from_secs(60);
    store.set(&id, "k", v("1"), ttl).await.unwrap();
    let first = score(&mut raw, id.clone()).await.expect("an entry");
    let deadline = deadline_field(&mut raw, &data_key(&store, &id))
        .await
        .unwrap();
    assert_eq!(first, bucket(deadline));
    assert!(first >= deadline && first < deadline + g);
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.set(&id, "k", v("2"), ttl).await.unwrap();
    let second_deadline = deadline_field(&mut raw, &data_key(&store, &id))
        .await
        .unwrap();
    assert!(second_deadline > deadline);
    assert_eq!(
        score(&mut raw, id.clone()).await,
        Some(first),
        "same bucket"
    );
    // A deadline in a later bucket raises the score; a shorter TTL leaves it.
    store.update_ttl(&id, ttl * 3).await.unwrap();
    let raised = score(&mut raw, id.clone()).await.unwrap();
    let raised_deadline = deadline_field(&mut raw, &data_key(&store, &id))
        .await
        .unwrap();
    assert_eq!(raised, bucket(raised_deadline));
    assert!(raised > first);
    store
        .set(&id, "k", v("3"), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        score(&mut raw, id.clone()).await,
        Some(raised),
        "never lowered"
    );

    // Once that session has expired, its entry is still scored in the future, more than a
    // granularity ahead: scan skips it, purges leave it (until its score has passed), and a
    // live session beside it is listed. (Scored after it, so a page of one entry holds the
    // expired entry alone.) A third session expires with its entry scored less than a
    // granularity ahead: a purge removes that one, its hash being gone.
    let other = SessionId::generate().unwrap();
    store.set(&other, "k", v("x"), ttl * 4).await.unwrap();
    let short = SessionId::generate().unwrap();
    store
        .set(&short, "k", v("x"), Duration::from_millis(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.load(&short).await.unwrap().is_none(), "expired");
    assert!(store.load(&id).await.unwrap().is_none(), "expired");
    let page = store.scan(None, 100).await.unwrap();
    assert_eq!(
        page.ids,
        vec![other.clone()],
        "scan lists only the live session"
    );
    assert_eq!(page.next, None);
    assert_eq!(
        store.purge_expired().await.unwrap(),
        1,
        "the short session's entry, within a granularity: its hash is gone"
    );
    assert_eq!(score(&mut raw, short.clone()).await, None);
    assert_eq!(
        store.purge_expired().await.unwrap(),
        0,
        "a second purge right after"
    );
    let n: usize = raw.zcard(&live).await.unwrap();
    assert_eq!(
        n, 2,
        "the shortened session's entry is scored beyond the window"
    );
    // Pages of one: the expired entry takes a page of its own, and the walk goes on past it.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    for _ in 0..5 {
        let page = store.scan(cursor.as_deref(), 1).await.unwrap();
        pages += 1;
        seen.extend(page.ids);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, vec![other]);
    assert_eq!(
        pages, 2,
        "an empty page for the expired entry, then the live one"
    );
    store.clear_prefix().await.unwrap();
}

/// The owner key expires at the session's live index score (its deadline rounded up to the
/// granularity): set by `index_add`, before or after the first write, moved only by a write or a
/// slide that raises the score. So it never expires before its session, and a session whose
/// deadline came earlier (a shorter TTL) leaves it behind for less than the granularity, which
/// every owner lookup sees through (it checks the hash).
#[tokio::test]
async fn the_owner_key_expires_at_the_live_index_score_and_never_before_its_session() {
    let store = common::open_shared("owner-expiry").await;
    let mut raw = raw().await;
    let ttl = Duration::from_secs(60);
    let score_of = |deadline: u64| bucket(deadline);

    // bound after the first write: at the score
    let id = SessionId::generate().unwrap();
    store.set(&id, "a", v("1"), ttl).await.unwrap();
    store.index_add("olga", &id, ttl).await.unwrap();
    let (data, owner) = (data_key(&store, &id), owner_key(&store, &id));
    let deadline = deadline_field(&mut raw, &data).await.expect("deadline");
    let at = server_expiry(&mut raw, &owner).await;
    assert!(
        at.abs_diff(score_of(deadline)) < 50,
        "owner key at {at}, score {}",
        score_of(deadline)
    );

    // writes: the owner key is always at the score, never before the hash's expiry
    for step in 0..3 {
        store.set(&id, "b", v("2"), ttl).await.unwrap();
        let deadline = deadline_field(&mut raw, &data).await.expect("deadline");
        let (owner_at, data_at) = (
            server_expiry(&mut raw, &owner).await,
            server_expiry(&mut raw, &data).await,
        );
        assert!(
            owner_at + 50 >= data_at && owner_at.abs_diff(score_of(deadline)) < 50,
            "write {step}: owner key at {owner_at}, hash at {data_at}, score {}",
            score_of(deadline)
        );
    }
    // a slide into a later bucket moves it
    store
        .update_ttl(&id, Duration::from_secs(600))
        .await
        .unwrap();
    let deadline = deadline_field(&mut raw, &data).await.expect("deadline");
    let at = server_expiry(&mut raw, &owner).await;
    assert!(
        at.abs_diff(score_of(deadline)) < 50,
        "slid: owner key at {at}"
    );

    // bound before the first write: the first write moves it to the score
    let early = SessionId::generate().unwrap();
    store.index_add("olga", &early, ttl).await.unwrap();
    store.set(&early, "a", v("1"), ttl).await.unwrap();
    let deadline = deadline_field(&mut raw, &data_key(&store, &early))
        .await
        .expect("deadline");
    let at = server_expiry(&mut raw, &owner_key(&store, &early)).await;
    assert!(
        at.abs_diff(score_of(deadline)) < 50,
        "bound first: owner key at {at}"
    );

    // a shorter TTL leaves the owner key behind the session, which lookups see through
    store
        .set(&early, "a", v("1"), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        store.index_owner(&early).await.unwrap().as_deref(),
        Some("olga")
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let lingering: bool = raw.exists(owner_key(&store, &early)).await.unwrap();
    assert!(lingering, "the owner key outlives the shortened session");
    assert_eq!(store.index_owner(&early).await.unwrap(), None);
    let listed = store.index_sessions("olga").await.unwrap();
    assert_eq!(listed, vec![id.clone()], "only the live session is listed");
    store.clear_prefix().await.unwrap();
    assert!(keys_with_ttl(&mut raw, store.prefix()).await.is_empty());
}

/// The raw value of the deadline field of the hash `key`.
async fn deadline_value(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<Vec<u8>> {
    raw.hget(key, DEADLINE).await.unwrap()
}

/// The field names of the hash `key`, sorted.
async fn field_names(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Vec<Vec<u8>> {
    let mut fields: Vec<Vec<u8>> = raw.hkeys(key).await.unwrap();
    fields.sort();
    fields
}

#[tokio::test]
async fn a_session_layer_session_is_its_keys_and_one_driver_field() {
    let store = common::open_shared("foldmgr").await;
    let mut raw = raw().await;
    let manager = session_kit::Manager::new(
        std::sync::Arc::new(store.clone()),
        session_kit::Config::default(),
    )
    .unwrap();
    let session = manager.load(None);
    session.set("cart", &vec![1, 2, 3]).await.unwrap();
    session.set("name", "Ada").await.unwrap();
    session.save().await.unwrap();
    let id = session.id().await.expect("saved");
    let key = data_key(&store, &id);
    assert_eq!(
        field_names(&mut raw, &key).await,
        vec![b"cart".to_vec(), b"name".to_vec(), DEADLINE.to_vec()],
        "the session layer's __s.meta and __s.seen ride in the deadline field"
    );
    let loaded = store.load(&id).await.unwrap().expect("live");
    assert!(loaded.data.contains_key("__s.meta") && loaded.data.contains_key("__s.seen"));
    assert_eq!(store.get_size(&id).await.unwrap(), 4);

    // A later request reads and saves it: still one driver field, and the data round trips.
    let again = manager.load(&id);
    assert_eq!(
        again.get::<String>("name").await.unwrap().as_deref(),
        Some("Ada")
    );
    again.set("name", "Grace").await.unwrap();
    again.save().await.unwrap();
    assert_eq!(field_names(&mut raw, &key).await.len(), 3);
    let third = manager.load(&id);
    assert_eq!(
        third.get::<Vec<i32>>("cart").await.unwrap(),
        Some(vec![1, 2, 3])
    );
    assert_eq!(
        third.get::<String>("name").await.unwrap().as_deref(),
        Some("Grace")
    );
    store.clear_prefix().await.unwrap();
}

#[tokio::test]
async fn folded_keys_are_keys_like_any_other() {
    let store = common::open_shared("fold").await;
    let mut raw = raw().await;
    let id = SessionId::generate().unwrap();
    let key = data_key(&store, &id);
    let ttl = Duration::from_secs(60);
    // values that look like the layout's own bytes
    let (seen, meta) = (
        Value::from_bytes(b"1,2,-,".to_vec()),
        Value::from_bytes(Vec::new()),
    );
    let create = ChangeSet {
        set: [
            ("__s.seen".to_owned(), seen.clone()),
            ("__s.meta".to_owned(), meta.clone()),
            ("k".to_owned(), v("x")),
        ]
        .into_iter()
        .collect(),
        ..ChangeSet::default()
    };
    assert!(store.apply(&id, create, ttl).await.unwrap());
    assert_eq!(
        field_names(&mut raw, &key).await,
        vec![b"k".to_vec(), DEADLINE.to_vec()]
    );
    let field = deadline_value(&mut raw, &key).await.unwrap();
    assert!(
        field.ends_with(b",6,0,1,2,-,"),
        "{:?}",
        String::from_utf8_lossy(&field)
    );
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(loaded.data.len(), 3);
    assert_eq!(loaded.data.get("__s.seen"), Some(seen.clone()));
    assert_eq!(loaded.data.get("__s.meta"), Some(meta.clone()));
    assert_eq!(
        store.get(&id, "__s.seen").await.unwrap(),
        Some(seen.clone())
    );
    assert_eq!(
        store.get(&id, "__s.meta").await.unwrap(),
        Some(meta.clone())
    );
    assert_eq!(store.get_size(&id).await.unwrap(), 3);

    // Touching the expiry keeps them; keeping the expiry while setting one keeps the deadline.
    store
        .update_ttl(&id, Duration::from_secs(90))
        .await
        .unwrap();
    let deadline = deadline_field(&mut raw, &key).await.unwrap();
    assert_deadline_near(deadline, Duration::from_secs(90));
    assert_eq!(
        store.get(&id, "__s.seen").await.unwrap(),
        Some(seen.clone())
    );
    let keep = ChangeSet {
        only_if_exists: true,
        set: [("__s.seen".to_owned(), v("later"))].into_iter().collect(),
        ..ChangeSet::default()
    };
    assert!(apply_keep(&store, &id, keep).await);
    assert_eq!(deadline_field(&mut raw, &key).await, Some(deadline));
    assert_eq!(store.get(&id, "__s.seen").await.unwrap(), Some(v("later")));
    assert_eq!(
        store.get(&id, "__s.meta").await.unwrap(),
        Some(meta.clone())
    );

    // Removing them, one way or the other.
    store.remove(&id, "__s.meta").await.unwrap();
    assert_eq!(store.get(&id, "__s.meta").await.unwrap(), None);
    assert_eq!(store.get_size(&id).await.unwrap(), 2);
    let drop_k = ChangeSet {
        only_if_exists: true,
        remove: vec!["k".into()],
        ..ChangeSet::default()
    };
    assert!(
        store.apply(&id, drop_k, ttl).await.unwrap(),
        "a folded key alone is a session"
    );
    assert_eq!(field_names(&mut raw, &key).await, vec![DEADLINE.to_vec()]);
    assert_eq!(store.load(&id).await.unwrap().unwrap().data.len(), 1);
    store.index_add("carol", &id, ttl).await.unwrap();
    store.remove(&id, "__s.seen").await.unwrap();
    let left: bool = raw.exists(&key).await.unwrap();
    assert!(!left, "no key left: the hash goes");
    let owner: bool = raw.exists(owner_key(&store, &id)).await.unwrap();
    assert!(!owner, "and the owner key with it");
    assert_eq!(store.load(&id).await.unwrap(), None);
    store.clear_prefix().await.unwrap();
}

#[tokio::test]
async fn a_hash_written_before_the_keys_were_folded_is_read_and_moved_by_its_next_write() {
    let store = common::open_shared("unfolded").await;
    let mut raw = raw().await;
    let id = SessionId::generate().unwrap();
    let key = data_key(&store, &id);
    let deadline = check::now_millis() + 60_000;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("k")
        .arg(v("x").as_bytes())
        .arg("__s.seen")
        .arg(b"S".as_slice())
        .arg("__s.meta")
        .arg(b"M".as_slice())
        .arg(DEADLINE)
        .arg(deadline)
        .query_async(&mut raw)
        .await
        .unwrap();
    let _: () = raw.pexpire(&key, 60_000).await.unwrap();

    let loaded = store.load(&id).await.unwrap().expect("live");
    assert_eq!(loaded.data.len(), 3);
    assert_eq!(loaded.expires_at, Some(check::from_unix_millis(deadline)));
    assert_eq!(
        store.get(&id, "__s.meta").await.unwrap(),
        Some(Value::from_bytes(b"M".to_vec()))
    );
    assert_eq!(store.get_size(&id).await.unwrap(), 3);
    // a touch leaves the layout as it is
    store
        .update_ttl(&id, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(field_names(&mut raw, &key).await.len(), 4);
    assert_eq!(store.load(&id).await.unwrap().unwrap().data.len(), 3);

    // The next write moves the two keys into the deadline field.
    let save = ChangeSet {
        only_if_exists: true,
        set: [("__s.seen".to_owned(), Value::from_bytes(b"S2".to_vec()))]
            .into_iter()
            .collect(),
        ..ChangeSet::default()
    };
    assert!(
        store
            .apply(&id, save, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert_eq!(
        field_names(&mut raw, &key).await,
        vec![b"k".to_vec(), DEADLINE.to_vec()]
    );
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(loaded.data.len(), 3);
    assert_eq!(
        loaded.data.get("__s.seen"),
        Some(Value::from_bytes(b"S2".to_vec()))
    );
    assert_eq!(
        loaded.data.get("__s.meta"),
        Some(Value::from_bytes(b"M".to_vec()))
    );
    store.clear_prefix().await.unwrap();
}

#[tokio::test]
async fn a_deadline_field_out_of_its_layout_is_a_corrupt_session() {
    let store = common::open_shared("foldbad").await;
    let mut raw = raw().await;
    let id = SessionId::generate().unwrap();
    let key = data_key(&store, &id);
    store
        .set(&id, "k", v("x"), Duration::from_secs(60))
        .await
        .unwrap();
    let broken = format!("{},9,-,short", check::now_millis() + 60_000);
    let _: () = raw.hset(&key, DEADLINE, broken).await.unwrap();
    assert!(matches!(
        store.load(&id).await,
        Err(session_core::Error::Corrupt { .. })
    ));
    // a write puts it right
    store
        .set(&id, "k", v("y"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        store.load(&id).await.unwrap().unwrap().data.get("k"),
        Some(v("y"))
    );
    store.clear_prefix().await.unwrap();
}

/// How many times the private `server` ran `command` since its last `CONFIG RESETSTAT`.
fn calls(server: &common::RedisServer, command: &str) -> u64 {
    server
        .info_field("commandstats", &format!("cmdstat_{command}"))
        .and_then(|v| v.strip_prefix("calls=")?.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// The save the session layer sends after a load (`__s.seen` set, `__s.meta` kept, no clear, no
/// removal).
fn usual_save(seen: &str, keys: &[(&str, Value)]) -> ChangeSet {
    let mut set: Data = keys
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    set.insert("__s.seen".to_owned(), v(seen));
    ChangeSet {
        only_if_exists: true,
        set,
        ..ChangeSet::default()
    }
}

/// The usual save runs one lean script (one `HGET` on the server) where the session is in the
/// folded layout with its meta; everything else it declines, and the apply script does the write
/// (a second `HGET`). Either way the result is the apply script's. On a private server, so the
/// command counts are this test's alone.
#[tokio::test]
async fn the_usual_save_takes_the_lean_script_and_declines_what_it_does_not_cover() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::RedisServer::start(common::free_port(), dir.path(), false, &[]);
    let store = RedisStore::open(&server.url()).await.unwrap();
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let id = SessionId::generate().unwrap();
    let key = data_key(&store, &id);
    // a meta that looks like the layout's own bytes
    let meta = Value::from_bytes(b"9,9,-,".to_vec());
    let create = ChangeSet {
        set: [
            ("__s.seen".to_owned(), v("S1")),
            ("__s.meta".to_owned(), meta.clone()),
            ("k".to_owned(), v("x")),
        ]
        .into_iter()
        .collect(),
        ..ChangeSet::default()
    };
    assert!(
        store
            .apply(&id, create, Duration::from_secs(60))
            .await
            .unwrap()
    );

    // The lean path: one script, one HGET.
    server.cli(&["CONFIG", "RESETSTAT"]);
    let save = usual_save("S2", &[("k", v("y")), ("k2", v("z"))]);
    assert!(
        store
            .apply(&id, save, Duration::from_secs(90))
            .await
            .unwrap()
    );
    assert_eq!(calls(&server, "hget"), 1, "the lean script alone ran");
    assert_eq!(calls(&server, "hlen"), 0);
    assert_eq!(
        field_names(&mut raw, &key).await,
        vec![b"k".to_vec(), b"k2".to_vec(), DEADLINE.to_vec()]
    );
    let deadline = deadline_field(&mut raw, &key).await.unwrap();
    assert_deadline_near(deadline, Duration::from_secs(90));
    let seen_bytes = v("S2").as_bytes().to_vec();
    let mut tail = format!(",{},{},", seen_bytes.len(), meta.as_bytes().len()).into_bytes();
    tail.extend_from_slice(&seen_bytes);
    tail.extend_from_slice(meta.as_bytes());
    let field = deadline_value(&mut raw, &key).await.unwrap();
    assert_eq!(field, [deadline.to_string().into_bytes(), tail].concat());
    let expiry: u64 = redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        expiry, deadline,
        "the hash expires at the recorded deadline"
    );
    let score: Option<f64> = raw
        .zscore(format!("{}:live", store.prefix()), id.as_str())
        .await
        .unwrap();
    assert_eq!(score, Some(bucket(deadline) as f64));
    let loaded = store.load(&id).await.unwrap().unwrap();
    assert_eq!(loaded.data.len(), 4);
    assert_eq!(loaded.data.get("k"), Some(v("y")));
    assert_eq!(loaded.data.get("k2"), Some(v("z")));
    assert_eq!(loaded.data.get("__s.seen"), Some(v("S2")));
    assert_eq!(loaded.data.get("__s.meta"), Some(meta.clone()));

    // Many keys in one save: still the lean script.
    server.cli(&["CONFIG", "RESETSTAT"]);
    let many: Vec<(String, Value)> = (0..500).map(|i| (format!("m{i}"), v("v"))).collect();
    let many_refs: Vec<(&str, Value)> = many.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let save = usual_save("S3", &many_refs);
    assert!(
        store
            .apply(&id, save, Duration::from_secs(90))
            .await
            .unwrap()
    );
    assert_eq!(calls(&server, "hget"), 1);
    assert_eq!(store.get_size(&id).await.unwrap(), 504);

    // No meta in the field: declined, and the apply script keeps it absent.
    store.remove(&id, "__s.meta").await.unwrap();
    server.cli(&["CONFIG", "RESETSTAT"]);
    assert!(
        store
            .apply(&id, usual_save("S4", &[]), Duration::from_secs(90))
            .await
            .unwrap()
    );
    assert_eq!(calls(&server, "hget"), 2, "declined, then the apply script");
    assert_eq!(store.get(&id, "__s.meta").await.unwrap(), None);
    assert_eq!(store.get(&id, "__s.seen").await.unwrap(), Some(v("S4")));

    // A field out of the layout: declined; the apply script puts it right.
    let broken = format!("{},9,0,short", check::now_millis() + 60_000);
    let _: () = raw.hset(&key, DEADLINE, broken).await.unwrap();
    server.cli(&["CONFIG", "RESETSTAT"]);
    let _ = store
        .apply(&id, usual_save("S5", &[]), Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(calls(&server, "hget"), 2);
    assert_eq!(store.get(&id, "__s.seen").await.unwrap(), Some(v("S5")));
    assert!(store.load(&id).await.unwrap().is_some(), "readable again");

    // A missing session: declined, and nothing is created.
    let missing = SessionId::generate().unwrap();
    server.cli(&["CONFIG", "RESETSTAT"]);
    assert!(
        !store
            .apply(
                &missing,
                usual_save("S", &[("k", v("x"))]),
                Duration::from_secs(60)
            )
            .await
            .unwrap()
    );
    assert_eq!(calls(&server, "hget"), 2);
    let exists: bool = raw.exists(data_key(&store, &missing)).await.unwrap();
    assert!(!exists, "a save of a missing session creates nothing");
}
