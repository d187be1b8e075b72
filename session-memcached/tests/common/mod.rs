//! Shared test support: the server address, unique prefixes, the conformance teardown registry,
//! a raw client for looking at items, and private `memcached` processes for fault tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_memcached::{Client, MetaProtocol};
use session_core::{SessionId, Storage};
use session_memcached::MemcachedStore;

/// How to start the shared server, for failure messages.
pub const HOW_TO_START: &str = "start it with `scripts/services`, or by hand: \
    apt-get install -y memcached && memcached -d -u root -l 127.0.0.1 -p 11211 -m 256 -I 8m \
    (MEMCACHED_URL=host:port points the tests at another server)";

/// The shared server of the tests: `MEMCACHED_URL` (or `MEMCACHED_ADDR`), or 127.0.0.1:11211.
pub fn memcached_addr() -> String {
    std::env::var("MEMCACHED_URL")
        .or_else(|_| std::env::var("MEMCACHED_ADDR"))
        .unwrap_or_else(|_| session_memcached::DEFAULT_ADDR.to_owned())
}

/// A prefix no other test (or test run) uses. Only characters metadump prints as they are.
pub fn unique_prefix(kind: &str) -> String {
    let random = SessionId::generate().expect("OS randomness");
    format!("st_{kind}_{}.", &random.as_str()[..12])
}

/// Opens a store on the shared server with a fresh prefix, failing with a how-to if the server
/// is not there.
pub async fn open_shared(kind: &str) -> MemcachedStore {
    let addr = memcached_addr();
    match MemcachedStore::builder()
        .prefix(unique_prefix(kind))
        .open(&addr)
        .await
    {
        Ok(store) => store,
        Err(e) => panic!("memcached is not reachable at {addr}: {e}; {HOW_TO_START}"),
    }
}

/// A raw client on the shared server, for looking at items the way memcached sees them.
pub async fn raw_client() -> Client {
    let addr = memcached_addr();
    let dsn = match addr.split_once("://") {
        Some((_, rest)) => format!("tcp://{rest}"),
        None => format!("tcp://{addr}"),
    };
    Client::new(&dsn)
        .await
        .unwrap_or_else(|e| panic!("memcached is not reachable at {addr}: {e}; {HOW_TO_START}"))
}

/// memcached's remaining TTL of `key` in seconds (`mg <key> t`), `None` on a miss.
pub async fn remaining_ttl(client: &mut Client, key: &str) -> Option<i64> {
    client
        .meta_get(key, false, None, Some(&["t"]))
        .await
        .expect("mg t")
        .map(|v| v.ttl_remaining.expect("t flag answered"))
}

/// Stores handed to the conformance suite, by the address of their `Arc`, so the teardown (which
/// only sees `Arc<dyn Storage>`) can find the prefix.
fn registry() -> &'static Mutex<HashMap<usize, String>> {
    static REGISTRY: OnceLock<Mutex<HashMap<usize, String>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn addr_of(store: &Arc<dyn Storage>) -> usize {
    Arc::as_ptr(store) as *const () as usize
}

/// Wraps `store` for the suite and remembers its prefix for [`teardown`].
pub fn register(store: MemcachedStore) -> Arc<dyn Storage> {
    let prefix = store.prefix().to_owned();
    let shared: Arc<dyn Storage> = Arc::new(store);
    registry().lock().unwrap().insert(addr_of(&shared), prefix);
    shared
}

/// Deletes every key of the prefix of a store made by [`register`].
///
/// memcached cannot list keys by prefix, so this walks `lru_crawler metadump all` (retrying
/// while another dump runs) and deletes the keys that start with the prefix. Every case also
/// writes with TTLs of at most ten minutes, so anything the dumps miss expires soon after.
pub async fn teardown(store: Arc<dyn Storage>) {
    let prefix = registry()
        .lock()
        .unwrap()
        .remove(&addr_of(&store))
        .expect("teardown of a store that new_store did not make");
    // The crawler can miss an item that moves between LRU queues while it passes, so dump again
    // until two dumps in a row find none of the prefix's keys.
    let mut clean = 0;
    for _ in 0..8 {
        if delete_prefix(&prefix).await == 0 {
            clean += 1;
            if clean == 2 {
                return;
            }
        } else {
            clean = 0;
        }
    }
}

/// Deletes every key starting with `prefix` (see [`teardown`]); returns how many it deleted.
pub async fn delete_prefix(prefix: &str) -> usize {
    let mut client = raw_client().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut keys = Vec::new();
        let complete = {
            let mut dump = client.dump_keys().await.expect("lru_crawler metadump");
            while let Some(entry) = dump.next().await {
                match entry {
                    Ok(meta) if meta.key.starts_with(prefix.as_bytes()) => keys.push(meta.key),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            dump.is_complete()
        };
        if !complete {
            // BUSY: another dump runs (parallel teardowns); the client closed itself.
            assert!(
                Instant::now() < deadline,
                "teardown: metadump stayed busy for 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            client = raw_client().await;
            continue;
        }
        for key in &keys {
            client
                .meta_delete(key, false, None, None)
                .await
                .or_else(|e| match e {
                    async_memcached::Error::Protocol(async_memcached::Status::NotFound) => Ok(None),
                    e => Err(e),
                })
                .expect("md of a test key");
        }
        return keys.len();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A private `memcached` process on its own port, killed when dropped.
pub struct Private {
    pub port: u16,
    child: Option<Child>,
}

impl Private {
    /// Starts `memcached` on a free loopback port and waits until it answers.
    pub fn start() -> Private {
        let mut server = Private {
            port: free_port(),
            child: None,
        };
        server.restart();
        server
    }

    /// The address to connect to.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// (Re)starts the server on the same port.
    pub fn restart(&mut self) {
        let bin = "/usr/bin/memcached";
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing; install it with `apt-get install -y memcached`"
        );
        let child = Command::new(bin)
            .args([
                "-u",
                "root",
                "-l",
                "127.0.0.1",
                "-U",
                "0",
                "-m",
                "64",
                "-I",
                "8m",
            ])
            .args(["-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn memcached");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "private memcached on port {} did not come up",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
        if signal == "STOP" {
            // kill returns once the signal is sent; wait until every thread has stopped.
            let stat = format!("/proc/{}/stat", self.pid());
            let start = Instant::now();
            loop {
                let text = std::fs::read_to_string(&stat).expect("read /proc/<pid>/stat");
                let state = text
                    .rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().next());
                if state == Some("T") {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "memcached did not stop"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped process must be continued to die cleanly on some kernels.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}
