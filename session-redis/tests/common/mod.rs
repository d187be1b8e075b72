//! Shared test support: the Redis URL, unique prefixes, the conformance teardown registry, and
//! private `redis-server` processes that never outlive the test binary (single servers here;
//! clusters with replicas and Sentinel groups in `topology`; writers that record what was
//! acknowledged during a fault in `writers`).
#![allow(dead_code, clippy::unwrap_used)]

pub mod topology;
pub mod writers;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use session_core::{SessionId, Storage};
use session_redis::RedisStore;

/// The shared server of the tests: `REDIS_URL`, or 127.0.0.1:6379.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test (or test run) uses.
pub fn unique_prefix(kind: &str) -> String {
    let random = SessionId::generate().expect("OS randomness");
    format!("sessiontest:{kind}:{}", &random.as_str()[..12])
}

/// Opens a store on the shared server with a fresh prefix, failing with a how-to if the server is
/// not there.
pub async fn open_shared(kind: &str) -> RedisStore {
    let url = redis_url();
    match RedisStore::builder()
        .prefix(unique_prefix(kind))
        .open(&url)
        .await
    {
        Ok(store) => store,
        Err(e) => panic!(
            "Redis is not reachable at {url}; start it with: redis-server --daemonize yes \
             --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no ({e})"
        ),
    }
}

/// [`open_shared`] with a live index scored to the millisecond (granularity 1 ms), for tests of
/// the index's trims with sessions of a few milliseconds.
pub async fn open_shared_exact(kind: &str) -> RedisStore {
    RedisStore::builder()
        .prefix(unique_prefix(kind))
        .live_index_granularity(Duration::from_millis(1))
        .open(&redis_url())
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable at {}: {e}", redis_url()))
}

/// Stores handed to the conformance suite, by the address of their `Arc`, so the teardown (which
/// only sees `Arc<dyn Storage>`) can find the concrete store and delete its keys.
fn registry() -> &'static Mutex<HashMap<usize, RedisStore>> {
    static REGISTRY: OnceLock<Mutex<HashMap<usize, RedisStore>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn addr_of(store: &Arc<dyn Storage>) -> usize {
    Arc::as_ptr(store) as *const () as usize
}

/// Wraps `store` for the suite and remembers it for [`teardown`].
pub fn register(store: RedisStore) -> Arc<dyn Storage> {
    register_as(store.clone(), Arc::new(store))
}

/// Remembers `store` for the [`teardown`] of `shared`, a store over it.
pub fn register_as(store: RedisStore, shared: Arc<dyn Storage>) -> Arc<dyn Storage> {
    registry().lock().unwrap().insert(addr_of(&shared), store);
    shared
}

/// Deletes every key of a store made by [`register`] (SCAN + DEL on its prefix).
pub async fn teardown(store: Arc<dyn Storage>) {
    let found = registry().lock().unwrap().remove(&addr_of(&store));
    let store = found.expect("teardown of a store that new_store did not make");
    store
        .clear_prefix()
        .await
        .expect("deleting the test's keys");
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
/// (`$WATCH`) is gone, then removes `$CLEANUP` if set: so no server outlives `cargo test`, even
/// when the test binary is killed.
const WATCHDOG: &str = r#"
redis-server "$@" &
srv=$!
echo "$srv" > "$PIDFILE"
while kill -0 "$WATCH" 2>/dev/null; do sleep 0.2; done
kill -9 "$srv" 2>/dev/null
wait "$srv" 2>/dev/null
if [ -n "$CLEANUP" ]; then rm -rf "$CLEANUP"; fi
"#;

/// A private `redis-server` on a loopback port, in its own temp directory.
pub struct RedisServer {
    /// Its port.
    pub port: u16,
    /// Its working directory.
    pub dir: PathBuf,
    wrapper: Child,
    pid: u32,
    killed: bool,
    /// `requirepass`, given to `redis-cli`.
    password: Option<String>,
}

/// How [`RedisServer::launch`] starts a server beyond its port and directory.
#[derive(Default, Clone, Copy)]
pub struct Launch<'a> {
    /// Delete the directory when the server is gone.
    pub cleanup: bool,
    /// A configuration file, given first (`redis-server <file> --sentinel` runs a sentinel).
    pub config: Option<&'a Path>,
    /// The server's `requirepass` (also `masterauth`), which `cli` then logs in with.
    pub password: Option<&'a str>,
}

impl RedisServer {
    /// Starts a server on `port` with `extra` arguments, and waits until it answers PING.
    pub fn start(port: u16, dir: &Path, cleanup: bool, extra: &[&str]) -> RedisServer {
        Self::launch(
            port,
            dir,
            Launch {
                cleanup,
                ..Launch::default()
            },
            extra,
        )
    }

    /// Starts a server as `how` says, with `extra` arguments, and waits until it answers PING.
    pub fn launch(port: u16, dir: &Path, how: Launch<'_>, extra: &[&str]) -> RedisServer {
        let cleanup = how.cleanup;
        std::fs::create_dir_all(dir).expect("server directory");
        let pid_file = dir.join(format!("watchdog-{port}.pid"));
        let _ = std::fs::remove_file(&pid_file);
        let port_text = port.to_string();
        let mut args: Vec<&str> = Vec::new();
        if let Some(config) = how.config {
            args.push(config.to_str().expect("utf-8 config path"));
        }
        args.extend_from_slice(&[
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
        ]);
        if let Some(password) = how.password {
            args.extend_from_slice(&["--requirepass", password, "--masterauth", password]);
        }
        args.extend_from_slice(extra);
        let wrapper = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .args(&args)
            .env("WATCH", std::process::id().to_string())
            .env("PIDFILE", &pid_file)
            .env(
                "CLEANUP",
                if cleanup {
                    dir.as_os_str()
                } else {
                    "".as_ref()
                },
            )
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
            killed: false,
            password: how.password.map(str::to_owned),
        };
        while !server.cli(&["PING"]).contains("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING (are redis-server and redis-cli \
                 installed? apt-get install redis-server redis-tools)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether the server has not been killed.
    pub fn is_running(&self) -> bool {
        !self.killed
    }

    /// Runs `redis-cli -p <port> args...` and returns its output ("" if it failed).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            cmd.args(["-a", password, "--no-auth-warning"]);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// One field of `INFO <section>` (e.g. `master_repl_offset`), if the server answers.
    pub fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let text = self.cli(&["INFO", section]);
        text.lines()
            .find_map(|line| line.trim().strip_prefix(field)?.strip_prefix(':'))
            .map(str::to_owned)
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid.to_string()])
            .status()
            .expect("kill command");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Kills the server at once (SIGKILL, like a crash) and its watchdog.
    pub fn kill(&mut self) {
        if std::mem::replace(&mut self.killed, true) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.wrapper.kill();
        let _ = self.wrapper.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
