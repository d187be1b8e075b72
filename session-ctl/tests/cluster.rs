//! `redis+cluster://` specs against a real three-node Redis Cluster on free loopback ports,
//! started by this test. Each node runs under a small shell watchdog that kills it and deletes
//! its directory as soon as this test process is gone, so no server outlives `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestStore, expect, json, populate};
use session_ctl::Spec;

/// Runs `redis-server "$@"` and kills it when the test process (`$WATCH`) is gone.
const WATCHDOG: &str = r#"
redis-server "$@" &
srv=$!
while kill -0 "$WATCH" 2>/dev/null; do sleep 0.2; done
kill -9 "$srv" 2>/dev/null
wait "$srv" 2>/dev/null
rm -rf "$CLEANUP"
"#;

struct Node {
    port: u16,
    dir: std::path::PathBuf,
    watchdog: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        // the node itself: SHUTDOWN NOSAVE; the watchdog ends with the test process anyway
        let _ = cli(self.port, &["SHUTDOWN", "NOSAVE"]);
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// A loopback port that is free now, and whose cluster bus port (+10000) is free too.
fn free_port(taken: &[u16]) -> u16 {
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let candidate = 20000 + port % 30000;
        if !taken.contains(&candidate)
            && TcpListener::bind(("127.0.0.1", candidate)).is_ok()
            && TcpListener::bind(("127.0.0.1", candidate + 10000)).is_ok()
        {
            return candidate;
        }
    }
    panic!("no free loopback port found");
}

fn start_node(port: u16, dir: &Path) -> Node {
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg("sh")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--dir", dir.to_str().unwrap()])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
        .env("WATCH", std::process::id().to_string())
        .env("CLEANUP", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed: bash scripts/services, or apt-get install redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cli(port, &["PING"]).contains("PONG") {
        assert!(
            Instant::now() < deadline,
            "redis-server on port {port} did not answer PING (is redis-server installed? \
             apt-get install redis-server)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Node {
        port,
        dir: dir.to_owned(),
        watchdog,
    }
}

fn start_cluster() -> Vec<Node> {
    let mut ports = Vec::new();
    while ports.len() < 3 {
        let p = free_port(&ports);
        ports.push(p);
    }
    let nodes: Vec<Node> = ports
        .iter()
        .map(|p| {
            let dir = tempfile::Builder::new()
                .prefix("session-ctl-cluster-")
                .tempdir()
                .unwrap()
                .keep();
            start_node(*p, &dir)
        })
        .collect();
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli must be installed (apt-get install redis-tools)");
    assert!(
        created.status.success(),
        "redis-cli --cluster create failed: {}",
        String::from_utf8_lossy(&created.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !nodes
        .iter()
        .all(|n| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(
            Instant::now() < deadline,
            "the cluster did not reach cluster_state:ok"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    nodes
}

/// SQLite -> Cluster -> a new SQLite file, and the reading and writing commands on the
/// Cluster, through a `redis+cluster://` spec naming two of the three nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_on_a_redis_cluster() {
    let nodes = tokio::task::spawn_blocking(start_cluster).await.unwrap();
    let hosts: Vec<String> = nodes[..2]
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let cluster = format!("redis+cluster://{}?prefix=ctltest", hosts.join(","));
    assert!(matches!(
        cluster.parse::<Spec>().unwrap(),
        Spec::RedisCluster { .. }
    ));

    let from = TestStore::sqlite().await;
    let written = populate(&from.store, 300).await;
    let report = json(&["-y", "migrate", "--from", &from.spec, "--to", &cluster]);
    assert_eq!(report["written"], 300, "{report}");
    assert_eq!(report["check"]["in_target"], 300, "{report}");
    assert_eq!(report["check"]["target_live"], 300, "{report}");
    for node in &nodes {
        let keys: u64 = cli(node.port, &["DBSIZE"]).trim().parse().unwrap();
        assert!(keys > 0, "every master holds sessions");
    }

    assert_eq!(expect(0, &["--store", &cluster, "count"]).trim(), "300");
    let all = json(&["--store", &cluster, "list", "--all"]);
    assert_eq!(all["sessions"].as_array().unwrap().len(), 300);
    let user1 = written.of("user1");
    let (id, _) = written
        .sessions
        .iter()
        .find(|(_, o)| o.as_deref() == Some("user1"))
        .unwrap();
    let got = json(&["--store", &cluster, "get", id]);
    assert_eq!(got["meta"]["owner"], "user1");
    let user = json(&["--store", &cluster, "user", "user1"]);
    assert_eq!(user["sessions"].as_array().unwrap().len(), user1.len());

    let dir = tempfile::tempdir().unwrap();
    let back = TestStore::new_sqlite_path(&dir);
    let report = json(&["-y", "migrate", "--from", &cluster, "--to", &back]);
    assert_eq!(report["check"]["target_live"], 300, "{report}");

    let out = json(&["--store", &cluster, "-y", "logout-user", "user1"]);
    assert_eq!(out["destroyed"], user1.len());
    assert_eq!(
        expect(0, &["--store", &cluster, "count"]).trim(),
        (300 - user1.len()).to_string()
    );
    from.cleanup().await;
    drop(nodes);
}
