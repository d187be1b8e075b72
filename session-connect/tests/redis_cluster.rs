//! The registry on a Redis Cluster: the whole behaviour suite on a three-node loopback cluster
//! (started once for this binary; each case on its own prefix, deleted on every master after the
//! case), the key and channel placement the README documents, delivery between nodes whose
//! inboxes live on different masters, and subscriptions coming back after the cluster drops them.
#![allow(clippy::unwrap_used)]

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use session_connect::{ConnMeta, Event, Hub, Target};
use session_core::SessionId;
use tokio::sync::mpsc;

use cluster::Cluster;

behaviour_suite!(cluster::cluster_fixture);

/// A hub on the cluster under `prefix`, on `port`, with the tests' beat.
async fn hub(prefix: &str, port: u16) -> Hub {
    Hub::builder(Arc::new(cluster::open_backend(prefix).await))
        .addr("127.0.0.1", port)
        .beat_interval(common::BEAT)
        .start()
        .await
        .expect("hub starts")
}

/// `P:node:{<node>}`, a hub's inbox channel as documented.
fn inbox(prefix: &str, hub: &Hub) -> String {
    format!("{prefix}:node:{{{}}}", hub.node())
}

/// The master holding `hub`'s inbox.
fn inbox_master(c: &Cluster, prefix: &str, hub: &Hub) -> String {
    c.owner_of(c.slot(&inbox(prefix, hub)))
}

/// Starts hubs from `first_port` on until two of them have their inboxes on different masters;
/// returns every hub started, those two first.
async fn hubs_on_two_masters(c: &Cluster, prefix: &str, first_port: u16) -> Vec<Hub> {
    let mut hubs: Vec<Hub> = Vec::new();
    for port in first_port..first_port + 20 {
        let h = hub(prefix, port).await;
        let master = inbox_master(c, prefix, &h);
        if let Some(i) = hubs
            .iter()
            .position(|o| inbox_master(c, prefix, o) != master)
        {
            let other = hubs.remove(i);
            hubs.insert(0, h);
            hubs.insert(0, other);
            return hubs;
        }
        hubs.push(h);
    }
    panic!("twenty node inboxes all hashed to one master");
}

/// Number of subscribers of the sharded `channel` on the node at `addr`.
fn shard_subscribers(c: &Cluster, addr: &str, channel: &str) -> u64 {
    let out = c.node(addr).cli(&["PUBSUB", "SHARDNUMSUB", channel]);
    out.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// Every key of the node at `addr` matching `pattern`.
fn keys_on(c: &Cluster, addr: &str, pattern: &str) -> Vec<String> {
    c.node(addr)
        .cli(&["--scan", "--pattern", pattern])
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn recv(rx: &mut mpsc::Receiver<Event>) -> Event {
    common::next_event(rx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_keys_share_one_slot_and_delivery_crosses_masters() {
    let _shared = cluster::shared().await;
    let c = cluster::cluster().await;
    let prefix = common::unique_prefix();
    let hubs = hubs_on_two_masters(c, &prefix, 7300).await;
    let (a, b) = (&hubs[0], &hubs[1]);
    assert_ne!(inbox_master(c, &prefix, a), inbox_master(c, &prefix, b));

    // a little of everything: records, contexts, bindings, a session link, a kept context
    let (ta, mut ra) = mpsc::channel(16);
    let on_a = a.open(ConnMeta::new("ws", None), None, ta).await.unwrap();
    let (tb, mut rb) = mpsc::channel(16);
    let sid = SessionId::generate().unwrap();
    let on_b = b
        .open(ConnMeta::new("ws", None), Some(&sid), tb)
        .await
        .unwrap();
    a.bind(&on_a, "ana").await.unwrap();
    b.bind(&on_b, "bo{x}").await.unwrap();
    a.context(&on_a).set("k", &1u8).await.unwrap();
    b.context(&on_b).set("k", &2u8).await.unwrap();
    let (tk, _rk) = mpsc::channel(1);
    let kept = a.open(ConnMeta::new("ws", None), None, tk).await.unwrap();
    a.bind(&kept, "ana").await.unwrap();
    a.context(&kept).set("k", &3u8).await.unwrap();
    a.close(&kept, Some(Duration::from_secs(60))).await.unwrap();

    // every registry key is under P:{P}, in the slot of the tag, on that slot's master only
    let base = format!("{prefix}:{{{prefix}}}");
    let slot = c.slot(&format!("{{{prefix}}}"));
    let master = c.owner_of(slot);
    let mut kinds = BTreeSet::new();
    for node in &c.nodes {
        let addr = format!("127.0.0.1:{}", node.port);
        for key in keys_on(c, &addr, &format!("{prefix}:*")) {
            if key.starts_with(&format!("{prefix}:sess:")) {
                continue; // the session store's own keys, spread by session id
            }
            assert!(key.starts_with(&format!("{base}:")), "{key}");
            assert_eq!(c.slot(&key), slot, "{key}");
            assert_eq!(addr, master, "{key} lies on another master");
            let kind = key[base.len() + 1..].split(':').next().unwrap().to_owned();
            kinds.insert(kind);
        }
    }
    let expected: BTreeSet<String> = [
        "boot",
        "conn",
        "ctx",
        "kept",
        "keptfrom",
        "nodeconns",
        "nodes",
        "session",
        "user",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(kinds, expected);

    // each inbox is a sharded channel subscribed on the master of its own slot; the channel
    // for all is in the registry's slot, where every hub subscribes
    for h in &hubs {
        let ch = inbox(&prefix, h);
        assert_eq!(
            c.slot(&ch),
            c.slot(&format!("{{{}}}", h.node())),
            "tagged by node id"
        );
        assert_eq!(shard_subscribers(c, &inbox_master(c, &prefix, h), &ch), 1);
    }
    let all = format!("{base}:all");
    assert_eq!(c.slot(&all), slot);
    assert_eq!(
        shard_subscribers(c, &master, &all),
        hubs.len() as u64,
        "every hub hears the channel for all"
    );

    // delivery crosses masters, both ways, with acknowledgements
    let d = a
        .send(Target::User("bo{x}"), Bytes::from_static(b"a->b"))
        .await
        .unwrap();
    assert_eq!((d.local, d.nodes), (0, 1));
    assert_eq!(
        recv(&mut rb).await,
        Event::Message(Bytes::from_static(b"a->b"))
    );
    let d = b
        .send(Target::Conn(&on_a), Bytes::from_static(b"b->a"))
        .await
        .unwrap();
    assert_eq!((d.local, d.nodes), (0, 1));
    assert_eq!(
        recv(&mut ra).await,
        Event::Message(Bytes::from_static(b"b->a"))
    );
    let d = a
        .send_acked(
            Target::Session(&sid),
            Bytes::from_static(b"acked"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!((d.local, d.nodes, d.acked, d.remote), (0, 1, 1, 1));
    assert_eq!(
        recv(&mut rb).await,
        Event::Message(Bytes::from_static(b"acked"))
    );
    let d = b
        .send(Target::All, Bytes::from_static(b"all"))
        .await
        .unwrap();
    assert_eq!((d.local, d.nodes), (1, hubs.len() - 1));
    assert_eq!(
        recv(&mut ra).await,
        Event::Message(Bytes::from_static(b"all"))
    );
    assert_eq!(
        recv(&mut rb).await,
        Event::Message(Bytes::from_static(b"all"))
    );

    for h in hubs {
        h.shutdown().await.unwrap();
    }
    let backend = cluster::open_backend(&prefix).await;
    assert!(backend.is_cluster());
    assert!(backend.clear_prefix().await.unwrap() > 0);
    for node in &c.nodes {
        let addr = format!("127.0.0.1:{}", node.port);
        assert!(keys_on(c, &addr, &format!("{prefix}:*")).is_empty());
    }
}

/// The cluster drops every sharded subscription (as on a failover or a slot migration): each
/// hub subscribes again on its own, and delivery between them works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_come_back_after_the_cluster_drops_them() {
    // Killing subscription connections would disturb the other cases: run alone.
    let _alone = cluster::exclusive().await;
    let c = cluster::cluster().await;
    let prefix = common::unique_prefix();
    let hubs = hubs_on_two_masters(c, &prefix, 7400).await;
    let (a, b) = (&hubs[0], &hubs[1]);
    let (tb, mut rb) = mpsc::channel(64);
    let on_b = b.open(ConnMeta::new("ws", None), None, tb).await.unwrap();
    b.bind(&on_b, "u").await.unwrap();
    let d = a
        .send(Target::User("u"), Bytes::from_static(b"before"))
        .await
        .unwrap();
    assert_eq!(d.nodes, 1);
    assert_eq!(
        recv(&mut rb).await,
        Event::Message(Bytes::from_static(b"before"))
    );

    let killed = c.kill_sharded_subscribers();
    assert!(killed.len() >= 2, "{killed:?}");
    // each try: a send that found the inbox subscribed, and the message arriving
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut back = false;
    while !back && tokio::time::Instant::now() < deadline {
        let d = a
            .send(Target::User("u"), Bytes::from_static(b"after"))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_millis(200), rb.recv()).await;
        back = d.nodes == 1
            && matches!(got, Ok(Some(Event::Message(m))) if m == Bytes::from_static(b"after"));
        if !back {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        back,
        "delivery works again after the subscriptions were dropped"
    );
    // new connections, on the masters of the inboxes
    let master_b = inbox_master(c, &prefix, b);
    let now: Vec<String> = c
        .sharded_subscribers(&master_b)
        .into_iter()
        .map(|id| format!("{master_b}/{id}"))
        .collect();
    assert!(!now.is_empty());
    assert!(
        now.iter().all(|id| !killed.contains(id)),
        "{now:?} {killed:?}"
    );
    assert_eq!(shard_subscribers(c, &master_b, &inbox(&prefix, b)), 1);
    // and the way back
    let (ta, mut ra) = mpsc::channel(64);
    let on_a = a.open(ConnMeta::new("ws", None), None, ta).await.unwrap();
    let d = b
        .send(Target::Conn(&on_a), Bytes::from_static(b"back"))
        .await
        .unwrap();
    assert_eq!(d.nodes, 1);
    assert_eq!(
        recv(&mut ra).await,
        Event::Message(Bytes::from_static(b"back"))
    );

    for h in hubs {
        h.shutdown().await.unwrap();
    }
    cluster::open_backend(&prefix)
        .await
        .clear_prefix()
        .await
        .unwrap();
}
