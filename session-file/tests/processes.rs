//! Several processes on one store directory: crash safety under SIGKILL, no lost updates, lease
//! exclusion. The child processes are this test binary itself, re-run with `CHILD_MODE` set so
//! that only the `child` entry point does anything.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use session_core::{ChangeSet, Data, SessionId, Storage, Value};
use session_file::FileStore;

const CHILD_MODE: &str = "SESSION_FILE_CHILD_MODE";
const HOUR: Duration = Duration::from_secs(3600);
/// Size of each record the crash-test writer writes.
const BLOB_LEN: usize = 2 << 20;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child needs {name}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The entry point of every child process; does nothing in a normal test run.
#[test]
#[ignore = "entry point of the child processes that the other tests start"]
fn child() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    runtime().block_on(async move {
        let store = FileStore::open(env("CHILD_DIR")).await.expect("open store");
        let sid = SessionId::parse(&env("CHILD_ID")).expect("id");
        match mode.as_str() {
            "writer" => writer(store, sid).await,
            "apply" => applier(store, sid).await,
            "lock-hold" => lock_hold(store, sid).await,
            "lock-exit" => lock_exit(store, sid).await,
            other => panic!("unknown child mode {other}"),
        }
    });
}

/// The record the writer writes as version `n`: `n` itself and a large blob derived from it.
fn blob(n: u64) -> Vec<u8> {
    let mut b = vec![n as u8; BLOB_LEN];
    b[..8].copy_from_slice(&n.to_le_bytes());
    let end = BLOB_LEN - 8;
    b[end..].copy_from_slice(&n.to_le_bytes());
    b
}

/// Checks that a session holds one whole version written by the writer; returns its number.
fn check_version(data: &Data) -> u64 {
    assert_eq!(data.len(), 2, "keys: {:?}", data.keys().collect::<Vec<_>>());
    let n: u64 = data["n"].decode().expect("n decodes");
    assert!(
        data["blob"].as_bytes() == blob(n).as_slice(),
        "blob of version {n} is torn"
    );
    n
}

async fn writer(store: FileStore, sid: SessionId) {
    let mut n = match store.get(&sid, "n").await.expect("read") {
        Some(v) => v.decode::<u64>().expect("n"),
        None => 0,
    };
    println!("CHILD-READY");
    std::io::stdout().flush().expect("flush");
    loop {
        n += 1;
        let mut data = Data::new();
        data.insert("n".into(), Value::encode(&n).expect("encode"));
        data.insert("blob".into(), Value::from_bytes(blob(n)));
        store.set_session(&sid, data, HOUR).await.expect("write");
    }
}

async fn applier(store: FileStore, sid: SessionId) {
    let prefix = env("CHILD_PREFIX");
    let count: u32 = env("CHILD_COUNT").parse().expect("count");
    let go = env("CHILD_GO");
    let started = Instant::now();
    while !Path::new(&go).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never told to go"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 0..count {
        let mut changes = ChangeSet::default();
        changes
            .set
            .insert(format!("{prefix}{i}"), Value::encode(&i).expect("encode"));
        assert!(store.apply(&sid, changes, HOUR).await.expect("apply"));
    }
    println!("CHILD-DONE");
}

async fn lock_hold(store: FileStore, sid: SessionId) {
    let token = store
        .try_lock(&sid, Duration::from_secs(30))
        .await
        .expect("try_lock")
        .expect("the lock was free");
    println!("CHILD-LOCKED");
    std::io::stdout().flush().expect("flush");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    let released = store.unlock(&sid, &token).await.expect("unlock");
    println!("CHILD-UNLOCKED {released}");
}

async fn lock_exit(store: FileStore, sid: SessionId) {
    let lease: u64 = env("CHILD_LEASE_MS").parse().expect("lease");
    let got = store
        .try_lock(&sid, Duration::from_millis(lease))
        .await
        .expect("try_lock");
    assert!(got.is_some(), "the lock was free");
    println!("CHILD-LOCKED");
    // Exits holding the lease, without unlocking.
}

/// A child process that is killed if the test ends early, with its stdout read line by line on
/// a thread (so waiting for a line can time out instead of hanging the suite).
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Waits for a line holding `marker` (libtest may print "test child ... " before it);
    /// returns the line from the marker on.
    fn wait_for(&self, marker: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("child printed no {marker}: {e}"));
            if let Some(at) = line.find(marker) {
                return line[at..].trim_end().to_owned();
            }
        }
    }

    /// Waits (at most a minute) for the child to exit.
    fn wait(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "child did not exit"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn spawn(mode: &str, dir: &Path, sid: &SessionId, extra: &[(&str, String)]) -> Proc {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, mode)
        .env("CHILD_DIR", dir)
        .env("CHILD_ID", sid.as_str())
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child process");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Proc { child, lines }
}

/// A small xorshift generator seeded from the clock: random kill moments, no extra crate.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64;
        Rng(nanos | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn temp_files(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

#[test]
fn sigkill_mid_write_leaves_a_whole_record() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("temp dir");
    let sid = SessionId::generate().expect("id");
    let mut rng = Rng::new();
    let mut last = 0u64;
    let mut leftovers = BTreeSet::new();
    // At least 8 kills, and more until 3 of them landed mid-write (a temp file was left), at most 60.
    let mut rounds = 0;
    while rounds < 8 || (leftovers.len() < 3 && rounds < 60) {
        let round = rounds;
        rounds += 1;
        let mut child = spawn("writer", tmp.path(), &sid, &[]);
        child.wait_for("CHILD-READY");
        if round % 2 == 0 {
            // A kill at a random moment: anywhere in the writer's loop.
            std::thread::sleep(Duration::from_millis(20 + rng.below(250)));
        } else {
            // A kill aimed at the write window: as soon as a new temp file shows up (how long a
            // write takes against the rest of the loop depends on the machine; chance alone may
            // miss it).
            let started = Instant::now();
            while temp_files(tmp.path()).is_subset(&leftovers)
                && started.elapsed() < Duration::from_secs(5)
            {
                std::thread::yield_now();
            }
        }
        child.child.kill().expect("SIGKILL the writer");
        let status = child.wait();
        assert!(!status.success(), "the writer was killed, not finished");
        for name in temp_files(tmp.path()) {
            let mode = fs::metadata(tmp.path().join(&name))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "{name}: a temp file must be private too"
            );
            leftovers.insert(name);
        }

        // A fresh store, as after a restart: the record is one whole version, never torn.
        let n = rt.block_on(async {
            let store = FileStore::open(tmp.path()).await.expect("reopen");
            let data = store.get_map(&sid).await.expect("record reads back whole");
            if data.is_empty() {
                assert_eq!(last, 0, "a record that existed disappeared");
                0
            } else {
                check_version(&data)
            }
        });
        assert!(
            n >= last,
            "round {round}: version went back from {last} to {n}"
        );
        last = n;
    }
    assert!(last > 0, "the writer never completed a write");
    println!(
        "{} of {rounds} kills landed mid-write; last version {last}",
        leftovers.len()
    );
    // A kill that hits mid-write leaves the temp file of the write it interrupted.
    assert!(
        leftovers.len() >= 3,
        "only {} of {rounds} kills landed mid-write; the test did not exercise torn writes",
        leftovers.len()
    );
    // The next purge removes what crashed writers left behind (here: at once).
    rt.block_on(async {
        let store = FileStore::builder()
            .stale_temp_after(Duration::ZERO)
            .open(tmp.path())
            .await
            .expect("open");
        store.purge_expired().await.expect("purge");
        assert!(temp_files(tmp.path()).is_empty());
        check_version(&store.get_map(&sid).await.expect("read"));
    });
}

#[test]
fn two_processes_lose_no_updates() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("temp dir");
    let go_dir = tempfile::tempdir().expect("temp dir");
    let go = go_dir.path().join("go");
    let sid = SessionId::generate().expect("id");
    let count = 150u32;
    let children: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|prefix| {
            spawn(
                "apply",
                tmp.path(),
                &sid,
                &[
                    ("CHILD_PREFIX", prefix.to_owned()),
                    ("CHILD_COUNT", count.to_string()),
                    ("CHILD_GO", go.to_string_lossy().into_owned()),
                ],
            )
        })
        .collect();
    fs::write(&go, b"").expect("start both children");
    for mut child in children {
        child.wait_for("CHILD-DONE");
        let status = child.wait();
        assert!(status.success(), "child failed: {status:?}");
    }
    rt.block_on(async {
        let store = FileStore::open(tmp.path()).await.expect("open");
        let data = store.get_map(&sid).await.expect("read");
        for prefix in ["a", "b"] {
            for i in 0..count {
                let v = data
                    .get(&format!("{prefix}{i}"))
                    .unwrap_or_else(|| panic!("lost update {prefix}{i}"));
                assert_eq!(v.decode::<u32>().expect("decode"), i);
            }
        }
        assert_eq!(data.len(), 2 * count as usize);
    });
}

#[test]
fn lease_lock_excludes_another_process() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("temp dir");
    let sid = SessionId::generate().expect("id");
    let store = rt
        .block_on(FileStore::open(tmp.path()))
        .expect("open store");

    // A child holds the lock: this process cannot take it, nor release it with a wrong token.
    let mut child = spawn("lock-hold", tmp.path(), &sid, &[]);
    child.wait_for("CHILD-LOCKED");
    rt.block_on(async {
        assert!(store.try_lock(&sid, HOUR).await.expect("try").is_none());
        let fake = session_core::LockToken::generate().expect("token");
        assert!(!store.unlock(&sid, &fake).await.expect("unlock"));
        assert!(store.try_lock(&sid, HOUR).await.expect("try").is_none());
    });
    child
        .child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"release\n")
        .expect("tell the child to release");
    assert_eq!(child.wait_for("CHILD-UNLOCKED"), "CHILD-UNLOCKED true");
    assert!(child.wait().success());
    let token = rt
        .block_on(store.try_lock(&sid, HOUR))
        .expect("try")
        .expect("free after the child released it");
    assert!(rt.block_on(store.unlock(&sid, &token)).expect("unlock"));

    // A child that exits holding a lease: the lease still holds until it runs out.
    let lease_ms = 400u64;
    let mut child = spawn(
        "lock-exit",
        tmp.path(),
        &sid,
        &[("CHILD_LEASE_MS", lease_ms.to_string())],
    );
    child.wait_for("CHILD-LOCKED");
    let locked_at = Instant::now();
    assert!(child.wait().success());
    rt.block_on(async {
        if locked_at.elapsed() < Duration::from_millis(lease_ms - 100) {
            assert!(store.try_lock(&sid, HOUR).await.expect("try").is_none());
        }
        tokio::time::sleep(Duration::from_millis(lease_ms + 50)).await;
        assert!(
            store.try_lock(&sid, HOUR).await.expect("try").is_some(),
            "the dead process's lease did not run out"
        );
    });
}
