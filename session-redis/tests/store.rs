//! Redis-specific checks against the real server: the key layout, that every key has an expiry,
//! the owner index's own expiry and pruning, the lock, scan, and input checks.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use redis::AsyncCommands;
use session_core::{ChangeSet, Data, Error, SessionId, Storage, Value};
use session_redis::RedisStore;

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

    let keys = keys_with_ttl(&mut raw, &prefix).await;
    let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let tag = format!("{{{}}}", id.as_str());
    assert_eq!(
        names,
        vec![
            format!("{prefix}:owner:{{alice}}"),
            format!("{prefix}:{tag}:data"),
            format!("{prefix}:{tag}:lock"),
            format!("{prefix}:{tag}:owner"),
        ]
    );
    for (k, ttl_ms) in &keys {
        assert!(*ttl_ms > 0, "{k} has no expiry ({ttl_ms})");
    }
    let (_, data_ttl) = &keys[1];
    let (_, owner_ttl) = &keys[3];
    assert!(
        (data_ttl - owner_ttl).abs() < 1000,
        "owner key follows the session"
    );
    let (_, set_ttl) = &keys[0];
    assert!(
        *set_ttl > 100_000,
        "owner set lives as long as index_add's ttl"
    );
    let fields: Vec<String> = raw.hkeys(format!("{prefix}:{tag}:data")).await.unwrap();
    assert_eq!(fields.len(), 2, "the owner is not a field of the hash");
    assert_eq!(store.get_size(&id).await.unwrap(), 2);

    // Sliding the session moves the owner key with it.
    store
        .update_ttl(&id, Duration::from_secs(600))
        .await
        .unwrap();
    let owner_ttl: i64 = raw.pttl(format!("{prefix}:{tag}:owner")).await.unwrap();
    assert!(owner_ttl > 500_000, "owner key slid with the session");

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
    assert_eq!(loaded.data.get("k"), Some(&v("x")));
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
    store.clear_prefix().await.unwrap();
}
