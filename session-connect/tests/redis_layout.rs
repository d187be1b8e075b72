//! The Redis key layout and channels documented in the README, checked against a real server.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use redis::AsyncCommands;
use session_connect::{ConnMeta, Event, Hub, RedisBackend, Target};
use session_core::Error;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_channels_are_as_documented() {
    let prefix = common::unique_prefix();
    let backend = common::open_redis(&prefix).await;
    let hub = Hub::builder(std::sync::Arc::new(backend.clone()))
        .addr("127.0.0.1", 7100)
        .beat_interval(common::BEAT)
        .start()
        .await
        .expect("hub");
    let client = redis::Client::open(common::redis_url()).expect("url");
    let mut r = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let node = hub.node().clone();
    let (tx, mut rx) = mpsc::channel(8);
    let conn = hub
        .open(ConnMeta::new("tcp", None), None, tx)
        .await
        .expect("open");
    hub.bind(&conn, "olga").await.expect("bind");
    hub.context(&conn).set("k", &1u8).await.expect("set");

    let p = &prefix;
    // every key starts with the prefix and carries it as its hash tag
    let b = format!("{p}:{{{p}}}");
    let meta: std::collections::HashMap<String, String> = r
        .hgetall(format!("{b}:conn:{conn}"))
        .await
        .expect("hgetall");
    assert_eq!(meta.get("transport").map(String::as_str), Some("tcp"));
    assert_eq!(meta.get("user").map(String::as_str), Some("olga"));
    assert_eq!(meta.get("ver").map(String::as_str), Some("1"));
    let ctx: Vec<u8> = r.hget(format!("{b}:ctx:{conn}"), "k").await.expect("hget");
    assert_eq!(ctx, rmp_serde::to_vec(&1u8).expect("msgpack"));
    let users: Vec<String> = r
        .smembers(format!("{b}:user:olga"))
        .await
        .expect("smembers");
    assert_eq!(users, vec![conn.to_string()]);
    let on_node: Vec<String> = r
        .smembers(format!("{b}:nodeconns:{node}"))
        .await
        .expect("smembers");
    assert_eq!(on_node, vec![conn.to_string()]);
    let deadline: Option<f64> = r
        .zscore(format!("{b}:nodes"), node.as_str())
        .await
        .expect("zscore");
    assert!(deadline.is_some(), "the node is in the liveness table");
    let boot: u64 = r
        .get(format!("{b}:boot:127.0.0.1:7100"))
        .await
        .expect("boot");
    assert_eq!(boot, node.epoch());
    // nothing of the registry lies outside the tagged base
    let mut all: Vec<String> = Vec::new();
    let mut iter: redis::AsyncIter<'_, String> =
        r.scan_match(format!("{p}:*")).await.expect("scan");
    while let Some(k) = iter.next_item().await {
        all.push(k.expect("key"));
    }
    drop(iter);
    assert!(all.len() >= 6, "{all:?}");
    assert!(
        all.iter().all(|k| k.starts_with(&format!("{b}:"))),
        "{all:?}"
    );

    // a publish on the node's channel from outside reaches nothing it cannot decode, and the
    // hub's own send goes through the channel for all
    let n: usize = r
        .publish(format!("{p}:node:{{{node}}}"), b"junk".to_vec())
        .await
        .expect("publish");
    assert_eq!(n, 1, "the hub listens on its node channel");
    let n: usize = r
        .publish(format!("{b}:all"), b"junk".to_vec())
        .await
        .expect("publish");
    assert_eq!(n, 1, "the hub listens on the channel for all");
    let d = hub
        .send(Target::Conn(&conn), Bytes::from_static(b"ok"))
        .await
        .expect("send");
    assert_eq!(d.local, 1);
    assert_eq!(
        rx.recv().await,
        Some(Event::Message(Bytes::from_static(b"ok")))
    );

    // close with keep_for: kept context and its origin, with an expiry
    hub.close(&conn, Some(Duration::from_secs(60)))
        .await
        .expect("close");
    let exists: bool = r.exists(format!("{b}:conn:{conn}")).await.expect("exists");
    assert!(!exists);
    let kept_ttl: i64 = r.pttl(format!("{b}:kept:olga")).await.expect("pttl");
    assert!(kept_ttl > 0 && kept_ttl <= 60_000, "{kept_ttl}");
    let from: String = r.get(format!("{b}:keptfrom:olga")).await.expect("get");
    assert_eq!(from, conn.to_string());
    let users: Vec<String> = r
        .smembers(format!("{b}:user:olga"))
        .await
        .expect("smembers");
    assert!(users.is_empty());

    hub.shutdown().await.expect("shutdown");
    let deadline: Option<f64> = r
        .zscore(format!("{b}:nodes"), node.as_str())
        .await
        .expect("zscore");
    assert_eq!(deadline, None);
    assert!(backend.clear_prefix().await.expect("cleanup") > 0);
}

#[tokio::test]
async fn bad_prefixes_are_refused_before_connecting() {
    // port 1: connecting would fail with Error::Backend, so InvalidInput proves no attempt
    for bad in ["", "a{b}", "a*", "a?", "a[b]", "a\\b", "with space"] {
        let result = RedisBackend::open("redis://127.0.0.1:1", bad).await;
        assert!(
            matches!(result, Err(Error::InvalidInput(_))),
            "{bad:?}: {result:?}"
        );
        let result = RedisBackend::builder()
            .prefix(bad)
            .open("redis://127.0.0.1:1")
            .await;
        assert!(
            matches!(result, Err(Error::InvalidInput(_))),
            "{bad:?}: {result:?}"
        );
    }
    assert!(matches!(
        RedisBackend::open("not a url", "ok").await,
        Err(Error::Backend { .. })
    ));
}

#[tokio::test]
async fn the_operation_timeout_bounds_opening() {
    // a socket that accepts connections (the kernel's backlog) and never answers
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let result = RedisBackend::builder()
        .client(
            session_redis::client::RedisClient::builder()
                .connect_timeout(Duration::from_secs(10))
                .response_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_millis(400))
                .reconnect_retries(0),
        )
        .open(&url)
        .await;
    let took = started.elapsed();
    assert!(matches!(result, Err(Error::Backend { .. })), "{result:?}");
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "gave up after {took:?}, not the 400 ms operation timeout"
    );
    drop(silent);
}

#[tokio::test]
async fn clear_prefix_deletes_only_its_own_keys() {
    let prefix = common::unique_prefix();
    let sibling = format!("{prefix}x");
    let backend = common::open_redis(&prefix).await;
    let other = RedisBackend::builder()
        .prefix(&sibling)
        .client(
            session_redis::client::RedisClient::builder()
                .response_timeout(Duration::from_millis(500)),
        )
        .open(&common::redis_url())
        .await
        .unwrap();
    assert_eq!(other.prefix(), sibling);
    let client = redis::Client::open(common::redis_url()).expect("url");
    let mut r = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    for i in 0..30 {
        let _: () = r.set(format!("{prefix}:k{i}"), i).await.unwrap();
    }
    let _: () = r.set(format!("{sibling}:k"), 1).await.unwrap();
    assert_eq!(backend.clear_prefix().await.unwrap(), 30);
    assert_eq!(backend.clear_prefix().await.unwrap(), 0);
    let left: i64 = r.exists(format!("{sibling}:k")).await.unwrap();
    assert_eq!(
        left, 1,
        "a prefix that merely starts the same is someone else's"
    );
    assert_eq!(other.clear_prefix().await.unwrap(), 1);
}
