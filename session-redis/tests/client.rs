//! The public connection module, `session_redis::client`, on the shared server: what other crates
//! (session-connect's registry) build on. The cluster side is in `tests/cluster.rs`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use session_core::Error;
use session_redis::client::{MAX_PREFIX_LEN, RedisClient, check_prefix};

async fn connect() -> RedisClient {
    let url = common::redis_url();
    match RedisClient::builder().connect(&url).await {
        Ok(client) => client,
        Err(e) => panic!(
            "Redis is not reachable at {url}; start it with: redis-server --daemonize yes \
             --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no ({e})"
        ),
    }
}

/// Every key the walk of `pattern` finds, page by page with `count`.
async fn walk(client: &RedisClient, pattern: &str, count: usize) -> (BTreeSet<String>, usize) {
    let (mut found, mut pages, mut cursor) = (BTreeSet::new(), 0, None::<String>);
    loop {
        let page = client
            .scan_page(pattern, cursor.as_deref(), count)
            .await
            .unwrap();
        pages += 1;
        found.extend(page.keys.into_iter().map(|k| String::from_utf8(k).unwrap()));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return (found, pages),
        }
        assert!(pages < 10_000, "the walk does not end");
    }
}

#[test]
fn the_prefix_rule() {
    for bad in ["", "a{b", "a}b", "a*", "a?", "a[b]", "a b", "a\\b", "a\nb"] {
        assert!(
            matches!(check_prefix(bad), Err(Error::InvalidInput(_))),
            "{bad:?} accepted"
        );
    }
    assert!(check_prefix(&"p".repeat(MAX_PREFIX_LEN + 1)).is_err());
    assert!(check_prefix(&"p".repeat(MAX_PREFIX_LEN)).is_ok());
    assert!(check_prefix("tenant-1:conn").is_ok());
}

#[tokio::test]
async fn commands_pipelines_and_scripts_run_with_mapped_errors() {
    let client = connect().await;
    assert!(!client.is_cluster());
    let prefix = common::unique_prefix("client");
    let key = format!("{prefix}:k");

    let _: () = client
        .query(redis::cmd("SET").arg(&key).arg("v"))
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("GET").arg(&key).cmd("STRLEN").arg(&key);
    let (value, len): (String, usize) = client.query_pipeline(&pipe).await.unwrap();
    assert_eq!((value.as_str(), len), ("v", 1));

    let script = redis::Script::new("return redis.call('APPEND', KEYS[1], ARGV[1])");
    let len: usize = client.invoke(script.key(&key).arg("w")).await.unwrap();
    assert_eq!(len, 2);
    let value: String = client
        .run(
            redis::cmd("GET")
                .arg(&key)
                .query_async(&mut client.connection()),
        )
        .await
        .unwrap();
    assert_eq!(value, "vw");

    // a key of another type than the command expects is a corrupt record, the rest backend errors
    let wrong: Result<Option<String>, _> =
        client.query(redis::cmd("HGET").arg(&key).arg("f")).await;
    assert!(matches!(wrong, Err(Error::Corrupt { .. })), "{wrong:?}");
    let unknown: Result<(), _> = client.query(&redis::cmd("NO-SUCH-COMMAND")).await;
    assert!(matches!(unknown, Err(Error::Backend { .. })), "{unknown:?}");

    assert_eq!(client.clear_prefix(&prefix).await.unwrap(), 1);
}

#[tokio::test]
async fn scan_pages_and_clear_prefix_touch_only_their_prefix() {
    let client = connect().await;
    let (mine, other) = (
        common::unique_prefix("client"),
        common::unique_prefix("client"),
    );
    let mut pipe = redis::pipe();
    for i in 0..250 {
        pipe.cmd("SET").arg(format!("{mine}:k{i}")).arg(i).ignore();
    }
    for i in 0..5 {
        pipe.cmd("SET").arg(format!("{other}:k{i}")).arg(i).ignore();
    }
    // a key that starts like the prefix but is not under it
    pipe.cmd("SET").arg(format!("{mine}x")).arg(0).ignore();
    let _: () = client.query_pipeline(&pipe).await.unwrap();

    let (found, pages) = walk(&client, &format!("{mine}:*"), 10).await;
    let expected: BTreeSet<String> = (0..250).map(|i| format!("{mine}:k{i}")).collect();
    assert_eq!(found, expected);
    assert!(pages > 1, "a count of 10 takes several pages for 250 keys");
    assert!(matches!(
        client.scan_page("*", Some("not-a-cursor"), 10).await,
        Err(Error::InvalidInput(_))
    ));

    // a prefix that would widen the pattern is refused, and deletes nothing
    assert!(matches!(
        client.clear_prefix(&format!("{mine}*")).await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(client.clear_prefix(&mine).await.unwrap(), 250);
    assert!(walk(&client, &format!("{mine}:*"), 1000).await.0.is_empty());
    let survivor: Option<i64> = client
        .query(redis::cmd("GET").arg(format!("{mine}x")))
        .await
        .unwrap();
    assert_eq!(survivor, Some(0));
    assert_eq!(walk(&client, &format!("{other}:*"), 1000).await.0.len(), 5);
    let _: i64 = client
        .query(redis::cmd("DEL").arg(format!("{mine}x")))
        .await
        .unwrap();
    assert_eq!(client.clear_prefix(&other).await.unwrap(), 5);
}

#[tokio::test]
async fn pubsub_is_a_dedicated_connection() {
    let client = connect().await;
    let channel = format!("{}:ch", common::unique_prefix("client"));
    let mut pubsub = client.pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    // the shared connection still runs commands while the other one is subscribed
    let receivers: usize = client
        .query(redis::cmd("PUBLISH").arg(&channel).arg(b"hello".as_slice()))
        .await
        .unwrap();
    assert_eq!(receivers, 1);
    let msg = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .expect("a message within 5 s")
        .expect("subscription open");
    assert_eq!(msg.get_channel_name(), channel);
    assert_eq!(msg.get_payload_bytes(), b"hello");
}

#[tokio::test]
async fn subscribe_and_publish_on_one_server() {
    let client = connect().await;
    let prefix = common::unique_prefix("client");
    let channels = [format!("{prefix}:a"), format!("{prefix}:{{b}}")];
    let mut sub = client.subscribe(&channels).await.unwrap();
    assert_eq!(sub.connection_count(), 1);
    for ch in &channels {
        assert_eq!(client.publish(ch, ch.as_bytes()).await.unwrap(), 1, "{ch}");
    }
    for ch in &channels {
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next_message())
            .await
            .expect("a message within 5 s")
            .expect("subscription open");
        assert_eq!(msg.get_channel_name(), ch);
        assert_eq!(msg.get_payload_bytes(), ch.as_bytes());
    }
    assert_eq!(
        client.publish(&format!("{prefix}:c"), b"x").await.unwrap(),
        0
    );
    assert!(matches!(
        client.subscribe::<String>(&[]).await,
        Err(Error::InvalidInput(_))
    ));
}

/// A subscription ends (rather than hanging) when the server closes its connection: on a private
/// server, so killing every pub/sub client disturbs no other test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_when_its_connection_is_killed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = common::RedisServer::start(common::free_port(), dir.path(), false, &[]);
    let client = RedisClient::builder().connect(&server.url()).await.unwrap();
    let mut sub = client.subscribe(&["ch"]).await.unwrap();
    assert_eq!(client.publish("ch", b"1").await.unwrap(), 1);
    assert!(sub.next_message().await.is_some());
    assert!(
        server
            .cli(&["CLIENT", "KILL", "TYPE", "pubsub"])
            .contains('1')
    );
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while sub.next_message().await.is_some() {}
    })
    .await;
    assert!(
        end.is_ok(),
        "the subscription ends when its connection is killed"
    );
    assert!(sub.next_message().await.is_none());
}

#[tokio::test]
async fn a_store_runs_on_its_client() {
    let store = common::open_shared("client").await;
    let client = store.client().clone();
    let key = format!("{}:extra", store.prefix());
    let _: () = client
        .query(redis::cmd("SET").arg(&key).arg(1))
        .await
        .unwrap();
    // the store's clear_prefix is the client's, on the store's prefix
    assert_eq!(store.clear_prefix().await.unwrap(), 1);
    let gone: Option<i64> = client.query(redis::cmd("GET").arg(&key)).await.unwrap();
    assert_eq!(gone, None);
}

#[tokio::test]
async fn options_bound_connecting() {
    assert_eq!(
        RedisClient::builder()
            .connect_timeout(Duration::from_millis(300))
            .response_timeout(Duration::from_millis(200))
            .effective_operation_timeout(),
        Duration::from_millis(700)
    );
    assert_eq!(
        RedisClient::builder()
            .operation_timeout(Duration::from_secs(4))
            .effective_operation_timeout(),
        Duration::from_secs(4)
    );
    let port = common::free_port();
    let started = std::time::Instant::now();
    let result = RedisClient::builder()
        .connect_timeout(Duration::from_millis(300))
        .connect(&format!("redis://127.0.0.1:{port}"))
        .await;
    assert!(matches!(result, Err(Error::Backend { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        RedisClient::builder().connect("not a url").await,
        Err(Error::Backend { .. })
    ));
    assert!(matches!(
        RedisClient::builder()
            .connect_cluster(Vec::<String>::new())
            .await,
        Err(Error::InvalidInput(_))
    ));
}

/// The server-side id (`CLIENT ID`) of the connection a handle is on.
async fn id_of(client: &RedisClient, conn: &mut session_redis::client::Connection) -> i64 {
    client
        .run(redis::cmd("CLIENT").arg("ID").query_async(conn))
        .await
        .unwrap()
}

/// The server-side id of the connection the client's next call takes.
async fn call_id(client: &RedisClient) -> i64 {
    client
        .query::<i64>(redis::cmd("CLIENT").arg("ID"))
        .await
        .unwrap()
}

#[tokio::test]
async fn the_spill_threshold_is_the_calls_a_connection_carries_before_the_next_takes_over() {
    use session_redis::client::CONNECTION_SPILL;

    assert_eq!(
        RedisClient::builder().connection_spill_count(),
        CONNECTION_SPILL
    );
    assert_eq!(
        RedisClient::builder()
            .connection_spill(0)
            .connection_spill_count(),
        1
    );
    let client = RedisClient::builder()
        .connections(2)
        .connection_spill(2)
        .connect(&common::redis_url())
        .await
        .unwrap();
    assert_eq!(client.connection_spill(), 2);
    let call = || call_id(&client);
    let first = call().await;
    // one call in flight leaves room for a second on the first connection ...
    let mut one = client.connection();
    assert_eq!(id_of(&client, &mut one).await, first);
    assert_eq!(call().await, first);
    // ... two fill it, and the next call takes the second connection
    let mut two = client.connection();
    assert_eq!(id_of(&client, &mut two).await, first);
    let second = call().await;
    assert_ne!(second, first);
    // the store's builder forwards the setting
    let store = session_redis::RedisStore::builder()
        .prefix(common::unique_prefix("spill"))
        .connection_spill(5)
        .open(&common::redis_url())
        .await
        .unwrap();
    assert_eq!(store.client().connection_spill(), 5);
}

#[tokio::test]
async fn a_pool_of_connections_fills_one_connection_then_spills_onto_the_next() {
    use session_redis::DEFAULT_CONNECTIONS;
    use session_redis::client::{CONNECTION_SPILL, Connection, MAX_CONNECTIONS};

    assert_eq!(
        RedisClient::builder().connection_count(),
        DEFAULT_CONNECTIONS
    );
    assert_eq!(RedisClient::builder().connections(0).connection_count(), 1);
    assert_eq!(
        RedisClient::builder()
            .connections(MAX_CONNECTIONS + 1)
            .connection_count(),
        MAX_CONNECTIONS
    );
    let client = RedisClient::builder()
        .connections(3)
        .connect(&common::redis_url())
        .await
        .unwrap();
    assert_eq!(client.connection_count(), 3);
    let call = || call_id(&client);
    // one call at a time: always the first connection
    let first = call().await;
    for _ in 0..5 {
        assert_eq!(call().await, first);
    }
    // a handle from `connection()` counts as a call in flight while it lives, and stays on its
    // connection: CONNECTION_SPILL of them fill the first connection ...
    let mut held: Vec<Vec<Connection>> = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut on_one = Vec::new();
        for _ in 0..CONNECTION_SPILL {
            on_one.push(client.connection());
        }
        let id = id_of(&client, &mut on_one[0]).await;
        for conn in &mut on_one {
            assert_eq!(id_of(&client, conn).await, id);
        }
        ids.push(id);
        held.push(on_one);
        // ... and the next call spills onto the next connection (or, with all three full, takes
        // the least busy: the first, which a tie goes to)
        let next = call().await;
        if ids.len() < 3 {
            assert!(!ids.contains(&next), "{next} in {ids:?}");
        } else {
            assert_eq!(next, ids[0]);
        }
    }
    assert_eq!(ids[0], first);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 3, "{ids:?}");
    // a connection with room again takes the next call
    held[1].pop();
    assert_eq!(call().await, ids[1]);
    // handles dropped: room on the first connection again
    drop(held.remove(0));
    assert_eq!(call().await, first);
    held.clear();
    for _ in 0..3 {
        assert_eq!(call().await, first);
    }
}
