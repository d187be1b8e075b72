//! Redis topologies of several processes on loopback, each process a [`RedisServer`] (under the
//! watchdog, killed when dropped): a cluster, with or without replicas, and a Sentinel group (a
//! master, a replica and three sentinels).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Launch, RedisServer, free_port};

/// `n` distinct free ports (each with its cluster bus port free too).
pub fn distinct_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let port = free_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// A new temp directory that outlives this call (the server's watchdog deletes it).
fn server_dir(kind: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(&format!("session-redis-{kind}-"))
        .tempdir()
        .expect("temp dir")
        .keep()
}

/// Polls `check` every 50 ms until it holds; panics with `what` after `within`.
pub fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// A Redis Cluster on loopback.
pub struct Cluster {
    /// Its nodes, in the order given to `redis-cli --cluster create` (which makes the first
    /// `masters` of them masters).
    pub nodes: Vec<RedisServer>,
}

/// One node as `CLUSTER NODES` describes it.
#[derive(Clone, Debug)]
pub struct NodeLine {
    /// The node id.
    pub id: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Whether it is a master.
    pub master: bool,
    /// Whether the cluster marks it failed (`fail` or `fail?`).
    pub failed: bool,
    /// A replica's master id.
    pub master_id: Option<String>,
    /// A master's slot ranges.
    pub slots: Vec<(u16, u16)>,
}

impl Cluster {
    /// Starts `masters` masters with `replicas` replicas each, with `cluster-node-timeout`
    /// `node_timeout_ms`, and waits until every node sees the cluster `ok` and every replica's
    /// link to its master is up.
    pub fn start(masters: usize, replicas: usize, node_timeout_ms: u64) -> Cluster {
        let total = masters * (1 + replicas);
        let ports = distinct_ports(total);
        let timeout = node_timeout_ms.to_string();
        let nodes: Vec<RedisServer> = ports
            .iter()
            .map(|port| {
                let conf = format!("nodes-{port}.conf");
                RedisServer::start(
                    *port,
                    &server_dir("cluster"),
                    true,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &conf,
                        "--cluster-node-timeout",
                        &timeout,
                        // Replicas sync at once instead of waiting 5 s for more of them.
                        "--repl-diskless-sync-delay",
                        "0",
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli must be installed (apt-get install redis-tools)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Cluster { nodes };
        let known = format!("cluster_known_nodes:{total}");
        wait_until(
            "every node sees the cluster ok",
            Duration::from_secs(30),
            || {
                cluster.nodes.iter().all(|n| {
                    let info = n.cli(&["CLUSTER", "INFO"]);
                    info.contains("cluster_state:ok") && info.contains(&known)
                })
            },
        );
        if replicas > 0 {
            wait_until(
                "every replica is linked to its master",
                Duration::from_secs(30),
                || {
                    let lines = cluster.topology();
                    lines.iter().filter(|l| !l.master).count() == masters * replicas
                        && lines.iter().filter(|l| !l.master).all(|l| {
                            cluster
                                .node(l.port)
                                .info_field("replication", "master_link_status")
                                == Some("up".to_owned())
                        })
                },
            );
            // The replica's side of the link being up is not enough for `WAIT`: the master must
            // count the replica as online and acknowledging. Ask each master directly.
            wait_until(
                "every master has its replicas acknowledging (WAIT)",
                Duration::from_secs(30),
                || {
                    cluster.topology().iter().filter(|l| l.master).all(|l| {
                        cluster
                            .node(l.port)
                            .cli(&["WAIT", &replicas.to_string(), "1000"])
                            .trim()
                            == replicas.to_string()
                    })
                },
            );
        }
        cluster
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .expect("a node of the cluster")
    }

    /// The node on `port`, to kill or signal it.
    pub fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of the cluster")
    }

    /// `CLUSTER NODES` as the first running node sees it.
    pub fn topology(&self) -> Vec<NodeLine> {
        let Some(node) = self.nodes.iter().find(|n| n.is_running()) else {
            return Vec::new();
        };
        node.cli(&["CLUSTER", "NODES"])
            .lines()
            .filter_map(parse_node_line)
            .collect()
    }

    /// The master serving `slot`, as the first running node sees it.
    pub fn master_of_slot(&self, slot: u16) -> Option<NodeLine> {
        self.topology()
            .into_iter()
            .find(|l| l.master && l.slots.iter().any(|(a, b)| *a <= slot && slot <= *b))
    }

    /// The port of a replica of the master on `master_port`.
    pub fn replica_of(&self, master_port: u16) -> Option<u16> {
        let lines = self.topology();
        let master = lines.iter().find(|l| l.port == master_port)?;
        lines
            .iter()
            .find(|l| l.master_id.as_deref() == Some(master.id.as_str()))
            .map(|l| l.port)
    }
}

/// One line of `CLUSTER NODES` (`<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch>
/// <link> <slot>...`); `None` for a node without an address.
fn parse_node_line(line: &str) -> Option<NodeLine> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 8 {
        return None;
    }
    let port = fields[1]
        .split('@')
        .next()?
        .rsplit_once(':')?
        .1
        .parse()
        .ok()?;
    let flags = fields[2];
    let slots = fields[8..]
        .iter()
        .filter(|f| !f.starts_with('['))
        .filter_map(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    Some(NodeLine {
        id: fields[0].to_owned(),
        port,
        master: flags.contains("master"),
        failed: flags.contains("fail"),
        master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
        slots,
    })
}

/// Waits until the replica on `replica` has applied everything its master on `master` had
/// written when this was called (`slave_repl_offset` ≥ the master's `master_repl_offset`).
pub fn wait_replicated(master: &RedisServer, replica: &RedisServer, within: Duration) {
    let offset = |server: &RedisServer, field: &str| -> Option<u64> {
        server.info_field("replication", field)?.trim().parse().ok()
    };
    let target = offset(master, "master_repl_offset").expect("the master's replication offset");
    wait_until(
        &format!("replica {} catches up with offset {target}", replica.port),
        within,
        || offset(replica, "slave_repl_offset").is_some_and(|at| at >= target),
    );
}

/// A master and its replica on loopback, both requiring `password`; returns once the replica's
/// link is up.
pub fn start_pair(password: &str) -> (RedisServer, RedisServer) {
    let ports = distinct_ports(2);
    let data = |port: u16, extra: &[&str]| {
        RedisServer::launch(
            port,
            &server_dir("replicated"),
            Launch {
                cleanup: true,
                password: Some(password),
                ..Launch::default()
            },
            extra,
        )
    };
    // Replicas sync at once instead of waiting 5 s for more of them.
    let fast_sync = ["--repl-diskless-sync-delay", "0"];
    let master = data(ports[0], &fast_sync);
    let master_port = ports[0].to_string();
    let mut replica_args = fast_sync.to_vec();
    replica_args.extend_from_slice(&["--replicaof", "127.0.0.1", &master_port]);
    let replica = data(ports[1], &replica_args);
    wait_until(
        "the replica is linked to the master",
        Duration::from_secs(20),
        || {
            replica
                .info_field("replication", "master_link_status")
                .as_deref()
                == Some("up")
        },
    );
    wait_until(
        "the master counts the replica as acknowledging (WAIT)",
        Duration::from_secs(20),
        || master.cli(&["WAIT", "1", "1000"]).trim() == "1",
    );
    (master, replica)
}

/// A Sentinel group on loopback: a master, one replica and three sentinels (quorum 2) that
/// monitor it with `down-after-milliseconds 1000`. Master and replica require a password.
pub struct SentinelGroup {
    /// The name the sentinels know the master by.
    pub name: String,
    /// The password of master and replica (`requirepass`, `masterauth`, the sentinels'
    /// `auth-pass`).
    pub password: String,
    /// The master when the group started.
    pub master: RedisServer,
    /// Its replica, which a failover promotes.
    pub replica: RedisServer,
    /// The three sentinels.
    pub sentinels: Vec<RedisServer>,
}

impl SentinelGroup {
    /// Starts the group and waits until the replica is in sync and every sentinel knows the
    /// replica and the two other sentinels.
    pub fn start(name: &str, password: &str) -> SentinelGroup {
        let (master, replica) = start_pair(password);
        let master_port = master.port.to_string();
        let sentinels: Vec<RedisServer> = distinct_ports(3)
            .iter()
            .map(|port| {
                let dir = server_dir("sentinel");
                let config = dir.join("sentinel.conf");
                std::fs::write(
                    &config,
                    format!(
                        "sentinel monitor {name} 127.0.0.1 {master_port} 2\n\
                         sentinel auth-pass {name} {password}\n\
                         sentinel down-after-milliseconds {name} 1000\n\
                         sentinel failover-timeout {name} 2000\n\
                         sentinel parallel-syncs {name} 1\n"
                    ),
                )
                .expect("sentinel config");
                RedisServer::launch(
                    *port,
                    &dir,
                    Launch {
                        cleanup: true,
                        config: Some(&config),
                        ..Launch::default()
                    },
                    &["--sentinel"],
                )
            })
            .collect();
        let group = SentinelGroup {
            name: name.to_owned(),
            password: password.to_owned(),
            master,
            replica,
            sentinels,
        };
        wait_until(
            "every sentinel knows the replica and the other sentinels",
            Duration::from_secs(30),
            || {
                group.sentinels.iter().all(|s| {
                    let state = group.sentinel_view(s);
                    state.get("num-slaves").map(String::as_str) == Some("1")
                        && state.get("num-other-sentinels").map(String::as_str) == Some("2")
                        && state.get("flags").map(String::as_str) == Some("master")
                })
            },
        );
        group
    }

    /// `redis://127.0.0.1:<port>` of every sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// `SENTINEL MASTER <name>` on `sentinel`, as field → value.
    pub fn sentinel_view(
        &self,
        sentinel: &RedisServer,
    ) -> std::collections::HashMap<String, String> {
        let text = sentinel.cli(&["SENTINEL", "MASTER", &self.name]);
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .filter(|pair| pair.len() == 2)
            .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
            .collect()
    }

    /// The master's port as every running sentinel reports it (`SENTINEL
    /// GET-MASTER-ADDR-BY-NAME`), if they agree.
    pub fn master_port(&self) -> Option<u16> {
        let mut ports = self.sentinels.iter().filter(|s| s.is_running()).map(|s| {
            s.cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.name])
                .lines()
                .nth(1)
                .and_then(|p| p.trim().parse::<u16>().ok())
        });
        let first = ports.next()??;
        ports.all(|p| p == Some(first)).then_some(first)
    }
}
