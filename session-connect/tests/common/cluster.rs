//! A three-node Redis Cluster on free loopback ports, started once per test binary, and the
//! fixture that runs the behaviour suite on it (`tests/redis_cluster.rs`).
//!
//! The same approach as session-redis's `tests/cluster.rs`: the first case that needs the cluster
//! starts it (the others wait), and each node runs under a small shell watchdog that kills it and
//! deletes its directory as soon as the test process is gone, so no server outlives
//! `cargo test`, even if the binary is killed or a case panics. Each case gets its own prefix,
//! deleted on every master afterwards.
//!
//! Included only by the cluster test binary (`#[path]`), not through `common/mod.rs`, so the
//! other binaries do not build it.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use session_connect::{Backend, RedisBackend};
use session_core::{Config, Manager, Storage, async_trait};
use session_redis::RedisStore;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::common::{Fixture, unique_prefix};

/// Cases that disturb the whole cluster (killing subscription connections) take this for
/// writing; every suite case holds it for reading, so those run alone.
static GATE: RwLock<()> = RwLock::const_new(());

/// Runs the caller alone among the cases of this binary (until the guard drops).
pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GATE.write().await
}

/// Lets the caller run beside the other shared cases, not beside an [`exclusive`] one.
pub async fn shared() -> RwLockReadGuard<'static, ()> {
    GATE.read().await
}

/// The test cluster: its three masters.
pub struct Cluster {
    /// The nodes, each a master of a third of the slots.
    pub nodes: Vec<RedisServer>,
}

impl Cluster {
    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The slot of `key` (or channel), as the cluster computes it.
    pub fn slot(&self, key: &str) -> u16 {
        self.nodes[0]
            .cli(&["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .unwrap()
    }

    /// `127.0.0.1:<port>` of the master serving `slot`, from `CLUSTER NODES`.
    pub fn owner_of(&self, slot: u16) -> String {
        let text = self.nodes[0].cli(&["CLUSTER", "NODES"]);
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") {
                continue;
            }
            for range in &fields[8..] {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>())
                    && a <= slot
                    && slot <= b
                {
                    return fields[1].split('@').next().unwrap().to_owned();
                }
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// The node listening on `addr` (`127.0.0.1:<port>`).
    pub fn node(&self, addr: &str) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| format!("127.0.0.1:{}", n.port) == addr)
            .unwrap()
    }

    /// The ids of the client connections with sharded subscriptions on `addr`'s node.
    pub fn sharded_subscribers(&self, addr: &str) -> Vec<String> {
        let mut ids = Vec::new();
        for line in self.node(addr).cli(&["CLIENT", "LIST"]).lines() {
            let field = |name: &str| {
                line.split_whitespace()
                    .find_map(|f| f.strip_prefix(name))
                    .map(str::to_owned)
            };
            let ssub: u64 = field("ssub=").and_then(|v| v.parse().ok()).unwrap_or(0);
            if ssub > 0 {
                ids.push(field("id=").unwrap());
            }
        }
        ids
    }

    /// Kills every connection with sharded subscriptions, on every node; returns their ids.
    pub fn kill_sharded_subscribers(&self) -> Vec<String> {
        let mut killed = Vec::new();
        for node in &self.nodes {
            let addr = format!("127.0.0.1:{}", node.port);
            for id in self.sharded_subscribers(&addr) {
                node.cli(&["CLIENT", "KILL", "ID", &id]);
                killed.push(format!("{addr}/{id}"));
            }
        }
        killed
    }
}

fn start_cluster() -> Cluster {
    let mut nodes = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < 3 {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    for port in &ports {
        let dir = tempfile::Builder::new()
            .prefix("session-connect-cluster-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let conf = format!("nodes-{port}.conf");
        nodes.push(RedisServer::start(
            *port,
            &dir,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &conf,
                "--cluster-node-timeout",
                "5000",
            ],
        ));
    }
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
        .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(
            Instant::now() < deadline,
            "the cluster did not reach cluster_state:ok"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Cluster { nodes }
}

/// Starts the cluster on first use (on a blocking thread) and returns it.
pub async fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    tokio::task::spawn_blocking(|| CLUSTER.get_or_init(start_cluster))
        .await
        .expect("cluster start-up panicked")
}

/// Opens a backend on the test cluster under `prefix`.
pub async fn open_backend(prefix: &str) -> RedisBackend {
    RedisBackend::open_cluster(cluster().await.urls(), prefix)
        .await
        .expect("connect to the test cluster")
}

/// The Redis backend on the cluster: each node of a case opens its own `RedisBackend` on one
/// prefix; the session store lives on the cluster too, under `<prefix>:sess`.
pub struct ClusterFixture {
    prefix: String,
    store: Arc<dyn Storage>,
    manager: Manager,
    _shared: RwLockReadGuard<'static, ()>,
}

/// A fixture with a fresh prefix on the test cluster.
pub async fn cluster_fixture() -> Arc<dyn Fixture> {
    let shared = shared().await;
    let prefix = unique_prefix();
    let store = RedisStore::builder()
        .prefix(format!("{prefix}:sess"))
        .open_cluster(cluster().await.urls())
        .await
        .expect("session store on the test cluster");
    let store: Arc<dyn Storage> = Arc::new(store);
    Arc::new(ClusterFixture {
        prefix,
        store: store.clone(),
        manager: Manager::new(store, Config::default()).expect("manager"),
        _shared: shared,
    })
}

impl ClusterFixture {
    /// The case's prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

#[async_trait]
impl Fixture for ClusterFixture {
    async fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(open_backend(&self.prefix).await)
    }
    fn store(&self) -> Arc<dyn Storage> {
        self.store.clone()
    }
    fn manager(&self) -> Manager {
        self.manager.clone()
    }
    async fn cleanup(&self) {
        open_backend(&self.prefix)
            .await
            .clear_prefix()
            .await
            .expect("deleting the test's keys");
    }
}

/// A loopback port that is free now, and whose cluster bus port (+10000) is free too.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        // Cluster nodes also listen on port + 10000, so stay below 55535.
        let candidate = 20000 + port % 30000;
        if TcpListener::bind(("127.0.0.1", candidate)).is_ok()
            && TcpListener::bind(("127.0.0.1", candidate + 10000)).is_ok()
        {
            return candidate;
        }
    }
    panic!("no free loopback port found");
}

/// Shell that runs `redis-server "$@"`, records its pid, and kills it as soon as the test process
/// (`$WATCH`) is gone, then removes `$CLEANUP`: so no server outlives `cargo test`, even when the
/// test binary is killed.
const WATCHDOG: &str = r#"
redis-server "$@" &
srv=$!
echo "$srv" > "$PIDFILE"
while kill -0 "$WATCH" 2>/dev/null; do sleep 0.2; done
kill -9 "$srv" 2>/dev/null
wait "$srv" 2>/dev/null
rm -rf "$CLEANUP"
"#;

/// A private `redis-server` on a loopback port, in its own temp directory (deleted with it).
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    /// Its working directory.
    pub dir: PathBuf,
    wrapper: Child,
    pid: u32,
}

impl RedisServer {
    /// Starts a server on `port` in `dir` with `extra` arguments, and waits until it answers
    /// PING.
    pub fn start(port: u16, dir: &Path, extra: &[&str]) -> RedisServer {
        std::fs::create_dir_all(dir).expect("server directory");
        let pid_file = dir.join(format!("watchdog-{port}.pid"));
        let port_text = port.to_string();
        let mut args: Vec<&str> = vec![
            "--port",
            &port_text,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            dir.to_str().expect("utf-8 temp path"),
        ];
        args.extend_from_slice(extra);
        let wrapper = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .args(&args)
            .env("WATCH", std::process::id().to_string())
            .env("PIDFILE", &pid_file)
            .env("CLEANUP", dir.as_os_str())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        let server = RedisServer {
            port,
            dir: dir.to_owned(),
            wrapper,
            pid,
        };
        while !server.cli(&["PING"]).contains("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli -p <port> args...` and returns its output ("" if it failed).
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}
