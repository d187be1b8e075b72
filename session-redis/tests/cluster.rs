//! The whole conformance suite against a three-node Redis Cluster on free loopback ports.
//!
//! The cluster is started once per test binary (the first case to need it starts it; the others
//! wait). Each node runs under a small shell watchdog that kills the node and deletes its
//! directory as soon as this test process is gone, so no server outlives `cargo test`, even if
//! the binary is killed or a case panics. Each case gets its own key prefix and a teardown that
//! deletes every key of that prefix on every master.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use session_conformance::Fixture;
use session_core::{Error, SessionId, Storage, Value};
use session_redis::RedisStore;
use session_redis::client::RedisClient;

use common::topology::Cluster;

/// Three masters, no replicas; `cluster-node-timeout` 5 s (no node fails here).
fn start_cluster() -> Cluster {
    Cluster::start(3, 0, 5000)
}

/// Starts the cluster on first use (on a blocking thread) and returns it.
async fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    tokio::task::spawn_blocking(|| CLUSTER.get_or_init(start_cluster))
        .await
        .expect("cluster start-up panicked")
}

/// Starts the cluster on first use and returns its node urls.
async fn cluster_urls() -> Vec<String> {
    cluster().await.urls()
}

async fn open_store() -> RedisStore {
    let urls = cluster_urls().await;
    RedisStore::builder()
        .prefix(common::unique_prefix("cluster"))
        .open_cluster(&urls)
        .await
        .expect("connect to the test cluster")
}

async fn new_store() -> Fixture {
    Fixture::new(common::register(open_store().await))
        .neighbour(common::register(open_store().await))
}

session_conformance::suite!(new_store, common::teardown);

/// Sessions land on every master (their hash tags spread over the slots), and each method still
/// works; scan walks all masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_every_master_and_scan_finds_them_all() {
    let store = open_store().await;
    assert!(store.is_cluster());
    let ttl = Duration::from_secs(30);
    let mut ids = Vec::new();
    for i in 0..60 {
        let id = SessionId::generate().unwrap();
        store
            .set(&id, "n", Value::encode(&i).unwrap(), ttl)
            .await
            .unwrap();
        store.index_add("dave", &id, ttl).await.unwrap();
        ids.push(id);
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    // The cursor starts with the slot the next page starts in; the three masters of the test
    // cluster hold the slots 0-5460, 5461-10922 and 10923-16383.
    let mut thirds_visited = std::collections::HashSet::new();
    let mut pages = 0;
    for _ in 0..10_000 {
        let page = store.scan(cursor.as_deref(), 7).await.unwrap();
        pages += 1;
        seen.extend(page.ids);
        match page.next {
            Some(next) => {
                let slot: u16 = next.split('.').next().unwrap().parse().unwrap();
                thirds_visited.insert(slot / 5462);
                cursor = Some(next);
            }
            None => break,
        }
    }
    assert!(ids.iter().all(|id| seen.contains(id)));
    assert_eq!(seen.len(), ids.len());
    assert_eq!(
        thirds_visited.len(),
        3,
        "scan walks the slots of every master"
    );
    assert!(pages <= 60 / 7 + 2, "{pages} pages of 7 for 60 sessions");
    let mut indexed = store.index_sessions("dave").await.unwrap();
    indexed.sort();
    ids.sort();
    assert_eq!(indexed, ids);
    assert!(store.clear_prefix().await.unwrap() >= 121);
}

/// The public client on a cluster: commands routed by slot, `scan_page` and `clear_prefix` over
/// every master, and pub/sub refused as unsupported (not silently single-node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_scans_and_clears_every_master() {
    let urls = cluster_urls().await;
    let client = RedisClient::builder()
        .connect_cluster(&urls)
        .await
        .expect("connect to the test cluster");
    assert!(client.is_cluster());
    let prefix = common::unique_prefix("clusterclient");
    let keys: Vec<String> = (0..60).map(|i| format!("{prefix}:k{i}")).collect();
    for key in &keys {
        let _: () = client
            .query(redis::cmd("SET").arg(key).arg(1))
            .await
            .unwrap();
    }
    let (mut found, mut masters, mut cursor) = (Vec::new(), std::collections::HashSet::new(), None);
    loop {
        let page = client
            .scan_page(&format!("{prefix}:*"), cursor.as_deref(), 5)
            .await
            .unwrap();
        found.extend(page.keys.into_iter().map(|k| String::from_utf8(k).unwrap()));
        match page.next {
            Some(next) => {
                masters.insert(next.split('/').next().unwrap().to_owned());
                cursor = Some(next);
            }
            None => break,
        }
    }
    found.sort();
    found.dedup();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(found, expected);
    assert_eq!(masters.len(), 3, "the walk visits every master");
    assert!(matches!(
        client.pubsub().await,
        Err(Error::Unsupported { .. })
    ));
    assert_eq!(client.clear_prefix(&prefix).await.unwrap(), 60);
    for key in &keys {
        let left: Option<i64> = client.query(redis::cmd("GET").arg(key)).await.unwrap();
        assert_eq!(left, None, "{key} survived clear_prefix");
    }
}

/// Sharded pub/sub on the cluster: channels in slots of every master, one subscription
/// connection per master, `SPUBLISH` counting the subscriber, and the subscription ending (not
/// hanging) when the server drops one of its connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_subscriptions_reach_every_master_and_end_when_a_connection_drops() {
    let cluster = cluster().await;
    let client = RedisClient::builder()
        .connect_cluster(cluster.urls())
        .await
        .expect("connect to the test cluster");
    let prefix = common::unique_prefix("clusterpubsub");
    // Thirty hash tags: slots in each third of the slot space, so on each of the three masters;
    // two channels share each tag (one SSUBSCRIBE per slot).
    let channels: Vec<String> = (0..30)
        .flat_map(|i| [format!("{prefix}:{{{i}}}:a"), format!("{prefix}:{{{i}}}:b")])
        .collect();
    let masters: std::collections::HashSet<String> = channels
        .iter()
        .map(|ch| {
            let slot: u16 = cluster.nodes[0]
                .cli(&["CLUSTER", "KEYSLOT", ch])
                .trim()
                .parse()
                .unwrap();
            owner_of(cluster, slot)
        })
        .collect();
    assert_eq!(masters.len(), 3, "the channels live on every master");
    let mut sub = client.subscribe(&channels).await.unwrap();
    assert_eq!(sub.connection_count(), 3, "one connection per master");
    for ch in &channels {
        let n = client.publish(ch, ch.as_bytes()).await.unwrap();
        assert_eq!(
            n, 1,
            "{ch}: SPUBLISH counts the one subscriber on its master"
        );
    }
    let mut heard = std::collections::BTreeSet::new();
    while heard.len() < channels.len() {
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next_message())
            .await
            .expect("a message within 5 s")
            .expect("subscription open");
        assert_eq!(msg.get_channel_name().as_bytes(), msg.get_payload_bytes());
        heard.insert(msg.get_channel_name().to_owned());
    }
    assert_eq!(heard, channels.iter().cloned().collect());
    // A channel nobody subscribed to: no subscriber on its master.
    assert_eq!(
        client
            .publish(&format!("{prefix}:{{0}}:c"), b"x")
            .await
            .unwrap(),
        0
    );
    assert!(matches!(
        client.subscribe::<&str>(&[]).await,
        Err(Error::InvalidInput(_))
    ));

    // The server drops one of the subscription's connections: the stream ends.
    let killed = kill_sharded_subscribers(cluster);
    assert!(killed >= 1, "found the subscription's connections");
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while sub.next_message().await.is_some() {}
    })
    .await;
    assert!(
        end.is_ok(),
        "the subscription ends when its connection is killed"
    );
    assert!(sub.next_message().await.is_none(), "and stays ended");
    // A new subscription works again.
    let mut again = client.subscribe(&channels[..1]).await.unwrap();
    assert_eq!(client.publish(&channels[0], b"back").await.unwrap(), 1);
    let msg = tokio::time::timeout(Duration::from_secs(5), again.next_message())
        .await
        .expect("a message within 5 s")
        .expect("subscription open");
    assert_eq!(msg.get_payload_bytes(), b"back");
}

/// `host:port` of the master serving `slot`, from `CLUSTER NODES`.
fn owner_of(cluster: &Cluster, slot: u16) -> String {
    let master = cluster
        .master_of_slot(slot)
        .expect("a master serves every slot");
    format!("127.0.0.1:{}", master.port)
}

/// Kills every client connection with sharded subscriptions, on every node; returns how many.
fn kill_sharded_subscribers(cluster: &Cluster) -> usize {
    let mut killed = 0;
    for node in &cluster.nodes {
        for line in node.cli(&["CLIENT", "LIST"]).lines() {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix(name))
                    .map(str::to_owned)
            };
            let ssub: u64 = field("ssub=").and_then(|v| v.parse().ok()).unwrap_or(0);
            if ssub > 0 {
                let id = field("id=").unwrap();
                node.cli(&["CLIENT", "KILL", "ID", &id]);
                killed += 1;
            }
        }
    }
    killed
}
