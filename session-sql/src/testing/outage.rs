//! Server faults on a server the test owns: [`LocalServer`] (a database server process on a
//! loopback port and a data directory of its own, stopped, killed and started again at will) and
//! [`writers_ride_out_restarts`], the scenario a dialect crate runs on it.
//!
//! A dialect crate's `tests/outage.rs` prepares a data directory (`initdb`,
//! `mariadb-install-db`), describes how to launch the server in the foreground, and calls the
//! scenario with a store opened on it. The servers the other tests share (PostgreSQL on 5432,
//! MariaDB on 3306) are never touched.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::marker::PhantomData;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use session_core::{ChangeSet, Data, Error, SessionId, Storage, Value};
use sqlx::{ConnectOptions as _, Connection as _};

use super::{HOUR, unique_name, val};
use crate::{ConnectOptions, Dialect};

/// A directory of the test's own under the system's temporary directory, deleted with
/// everything in it when dropped (also when the test fails).
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `{tmp}/sesstest_{kind}_{random}`.
    pub fn new(kind: &str) -> ScratchDir {
        let path = std::env::temp_dir().join(unique_name(kind));
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        ScratchDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nothing listened on a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("its address").port()
}

/// The first of `names` found on `PATH`, or in `extra` directories (in that order).
pub fn find_program(names: &[&str], extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .collect();
    for name in names {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Whether the test runs as root (effective user id 0), read from `/proc/self/status`.
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// The user and group ids of account `name` in `/etc/passwd`.
pub fn account_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [user, _, uid, gid, ..] if *user == name => {
                Some((uid.parse().ok()?, gid.parse().ok()?))
            }
            _ => None,
        }
    })
}

/// The last `max` bytes of a log file, for failure messages.
pub fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs a setup program (`initdb`, `mariadb-install-db`) to completion, its output appended to
/// `log`; panics with the log's tail when it fails.
pub fn run_setup(mut command: Command, log: &Path) {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the setup log");
    let err = out.try_clone().expect("clone the log handle");
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        status.success(),
        "{command:?} failed ({status}); its output:\n{}",
        log_tail(log, 4000)
    );
}

/// How a [`LocalServer`] is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The server's own quick clean shutdown (PostgreSQL's "fast" mode on SIGINT, MariaDB's
    /// shutdown on SIGTERM): open transactions are rolled back, clients disconnected.
    Fast,
    /// `kill -9` of the server's main process: no shutdown at all, crash recovery on the next
    /// start.
    Kill,
}

/// A database server process the test owns: launched in the foreground as a child of the test
/// (in a process group of its own), its output in `server.log` in its directory, stopped and
/// started again on the same port and data. Dropping it kills the server's whole process group
/// and deletes the directory, so a failing test leaves nothing running.
pub struct LocalServer<D: Dialect> {
    dir: ScratchDir,
    url: String,
    fast_signal: &'static str,
    launch: Box<dyn Fn() -> Command + Send + Sync>,
    child: Option<Child>,
    dialect: PhantomData<fn() -> D>,
}

impl<D: Dialect> std::fmt::Debug for LocalServer<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalServer")
            .field("server", &D::SERVER)
            .field("dir", &self.dir)
            .field("url", &self.url)
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl<D: Dialect> LocalServer<D> {
    /// A server (not started yet) whose data lives in `dir`, reachable at `url` once up (the URL
    /// the readiness probe connects to), stopped cleanly by `fast_signal` (`"INT"`, `"TERM"`),
    /// launched in the foreground by `launch`.
    pub fn new(
        dir: ScratchDir,
        url: String,
        fast_signal: &'static str,
        launch: impl Fn() -> Command + Send + Sync + 'static,
    ) -> Self {
        LocalServer {
            dir,
            url,
            fast_signal,
            launch: Box::new(launch),
            child: None,
            dialect: PhantomData,
        }
    }

    /// The URL the server answers on.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's output, every start appended.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the server and waits until it answers a ping on a new connection (up to 60 s).
    /// A start that exits before it answers is tried again: what a killed server leaves behind
    /// (PostgreSQL backends still detaching from the shared memory) can refuse one start.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", D::SERVER);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = File::options()
                .create(true)
                .append(true)
                .open(self.log())
                .expect("open the server log");
            let err = out.try_clone().expect("clone the log handle");
            let mut command = (self.launch)();
            command
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0);
            let mut child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
            let exited = loop {
                if let Some(status) = child.try_wait().expect("wait for the server") {
                    break status;
                }
                if self.answers().await {
                    self.child = Some(child);
                    return;
                }
                if Instant::now() > deadline {
                    kill_group(&mut child);
                    panic!(
                        "{} did not answer within 60 s; its log:\n{}",
                        D::SERVER,
                        log_tail(&self.log(), 4000)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert!(
                Instant::now() < deadline,
                "{} exited ({exited}) before it answered; its log:\n{}",
                D::SERVER,
                log_tail(&self.log(), 4000)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether a new connection to the server answers a ping within 2 s.
    async fn answers(&self) -> bool {
        let Ok(options) = self.url.parse::<ConnectOptions<D>>() else {
            return false;
        };
        let probe = async {
            let mut conn = options.connect().await.ok()?;
            let alive = conn.ping().await.is_ok();
            let _ = conn.close().await;
            Some(alive)
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Some(true))
        )
    }

    /// Stops the server and waits until its main process has exited (up to 60 s).
    pub async fn stop(&mut self, how: Stop) {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", D::SERVER));
        match how {
            Stop::Kill => child.kill().expect("kill -9 the server"),
            Stop::Fast => {
                let sent = Command::new("kill")
                    .args(["-s", self.fast_signal, &child.id().to_string()])
                    .status()
                    .expect("run kill");
                assert!(sent.success(), "kill -s {} failed", self.fast_signal);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let status: ExitStatus = loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                break status;
            }
            if Instant::now() > deadline {
                kill_group(&mut child);
                panic!(
                    "{} did not stop within 60 s ({how:?}); its log:\n{}",
                    D::SERVER,
                    log_tail(&self.log(), 4000)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if how == Stop::Fast {
            assert!(
                status.success(),
                "{} exited with {status} on a clean shutdown; its log:\n{}",
                D::SERVER,
                log_tail(&self.log(), 4000)
            );
        }
    }
}

/// SIGKILL to the child's whole process group (the server and anything it forked), then reaps
/// the child.
fn kill_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

impl<D: Dialect> Drop for LocalServer<D> {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_group(child);
        }
    }
}

/// What one storage call of the scenario did.
#[derive(Debug)]
struct Call {
    started: Instant,
    took: Duration,
    /// A read (`get`, `get_size`, `get_map`, `load`): idempotent, so the store may retry it.
    read: bool,
    /// `None` for success, else the error's text.
    error: Option<String>,
}

impl Call {
    fn ended(&self) -> Instant {
        self.started + self.took
    }
}

/// What a writer knows about one key of one of its sessions.
#[derive(Clone, Debug, PartialEq)]
enum Expect {
    /// An acknowledged write stored this value.
    Present(Value),
    /// An acknowledged change removed it.
    Absent,
    /// The last change of it failed: it may or may not have been applied.
    Unknown,
}

/// One writer's sessions, and per session what it expects of each key it touched.
struct Ledger {
    ids: Vec<SessionId>,
    keys: Vec<Vec<(String, Expect)>>,
}

impl Ledger {
    /// A key of session `s` the writer knows to be present, if any (the oldest one).
    fn present(&self, s: usize) -> Option<(usize, Value)> {
        self.keys[s]
            .iter()
            .enumerate()
            .find_map(|(i, (_, e))| match e {
                Expect::Present(v) => Some((i, v.clone())),
                _ => None,
            })
    }
}

/// How many writer tasks share the store.
pub const WRITERS: usize = 6;

/// How many reader tasks share the store with the writers.
pub const READERS: usize = 2;

/// Sessions per writer.
const SESSIONS: usize = 4;

/// The error text of a failed call, or `Err` when the error is not an [`Error::Backend`] of
/// `backend` (the scenario fails on it).
fn failure<T>(result: &Result<T, Error>, backend: &str) -> Result<Option<String>, String> {
    match result {
        Ok(_) => Ok(None),
        Err(Error::Backend { backend: b, source }) if *b == backend => Ok(Some(source.to_string())),
        Err(e) => Err(format!("not a backend error of `{backend}`: {e:?}")),
    }
}

/// One writer: loops over its own sessions until `stop`, mixing `set`, `set_map`, `apply` (a
/// set and a remove in one change set, as a session's save) and `get` of a key it knows, and
/// records every call. Only this writer writes its sessions, so it knows what each key must
/// hold: an acknowledged write is `Present`, an acknowledged remove `Absent`, a failed change
/// `Unknown` (it may have been applied before the connection died). A read that succeeds must
/// return what an acknowledged write stored.
async fn writer(
    w: usize,
    ids: Vec<SessionId>,
    store: Arc<dyn Storage>,
    stop: Arc<AtomicBool>,
    backend: &'static str,
) -> Result<(Ledger, Vec<Call>), String> {
    let mut ledger = Ledger {
        keys: vec![Vec::new(); ids.len()],
        ids,
    };
    let mut calls = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let s = n % ledger.ids.len();
        let id = ledger.ids[s].clone();
        let key = format!("w{w}n{n}");
        let value = val(&format!("value of {key}"));
        let started = Instant::now();
        let (read, error) = match n % 5 {
            0 | 1 => {
                let done = store.set(&id, &key, value.clone(), HOUR).await;
                let expect = match done {
                    Ok(()) => Expect::Present(value),
                    Err(_) => Expect::Unknown,
                };
                ledger.keys[s].push((key, expect));
                (false, failure(&done, backend)?)
            }
            2 => {
                let second = format!("{key}b");
                let mut data = Data::new();
                data.insert(key.clone(), value.clone());
                data.insert(second.clone(), value.clone());
                let done = store.set_map(&id, data, HOUR).await;
                let expect = match done {
                    Ok(()) => Expect::Present(value),
                    Err(_) => Expect::Unknown,
                };
                ledger.keys[s].push((key, expect.clone()));
                ledger.keys[s].push((second, expect));
                (false, failure(&done, backend)?)
            }
            3 => {
                let mut changes = ChangeSet::default();
                changes.set.insert(key.clone(), value.clone());
                let old = ledger.present(s).map(|(i, _)| i);
                if let Some(i) = old {
                    changes.remove.push(ledger.keys[s][i].0.clone());
                }
                let done = store.apply(&id, changes, HOUR).await;
                let (set, removed) = match done {
                    Ok(_) => (Expect::Present(value), Expect::Absent),
                    Err(_) => (Expect::Unknown, Expect::Unknown),
                };
                if let Some(i) = old {
                    ledger.keys[s][i].1 = removed;
                }
                ledger.keys[s].push((key, set));
                (false, failure(&done, backend)?)
            }
            _ => match ledger.present(s) {
                Some((i, want)) => {
                    let got = store.get(&id, &ledger.keys[s][i].0).await;
                    if let Ok(got) = &got
                        && got.as_ref() != Some(&want)
                    {
                        return Err(format!(
                            "writer {w}: get of acknowledged key {} returned {got:?}, not {want:?}",
                            ledger.keys[s][i].0
                        ));
                    }
                    (true, failure(&got, backend)?)
                }
                None => (true, failure(&store.get_size(&id).await, backend)?),
            },
        };
        calls.push(Call {
            started,
            took: started.elapsed(),
            read,
            error,
        });
        n += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok((ledger, calls))
}

/// One reader: loops over every writer's sessions until `stop` without pausing, loading each
/// whole (`load`, then `get_map` for the next), and records every call. What it reads is the writers' to
/// check; the reader checks that its calls succeed or fail with an [`Error::Backend`].
async fn reader(
    ids: Arc<Vec<SessionId>>,
    store: Arc<dyn Storage>,
    stop: Arc<AtomicBool>,
    backend: &'static str,
) -> Result<Vec<Call>, String> {
    let mut calls = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let id = &ids[n % ids.len()];
        let started = Instant::now();
        let error = if n.is_multiple_of(2) {
            failure(&store.load(id).await, backend)?
        } else {
            failure(&store.get_map(id).await, backend)?
        };
        calls.push(Call {
            started,
            took: started.elapsed(),
            read: true,
            error,
        });
        n += 1;
        // No pause: a read is in flight whenever the server goes away.
        tokio::task::yield_now().await;
    }
    Ok(calls)
}

/// One fault the scenario stages.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// How the server is stopped.
    pub how: Stop,
    /// How long it stays down before it is started again. Longer than the store's acquire
    /// timeout: calls must fail (cleanly). Zero: a quick restart, which a store with a longer
    /// acquire timeout must ride out without failing a single read.
    pub down: Duration,
}

/// One fault as the scenario saw it.
#[derive(Clone, Debug)]
pub struct FaultReport {
    /// The fault.
    pub fault: Fault,
    /// From the stop command to the server answering again.
    pub down: Duration,
    /// Calls started while the server was stopping, down or starting.
    pub calls_during: usize,
    /// Calls that failed from the stop command until the server answered again (including
    /// calls in flight when it stopped), each an `Error::Backend` of the driver.
    pub failed: usize,
    /// Of those, reads.
    pub failed_reads: usize,
    /// From the server answering again to the end of the store's first successful call that
    /// started after that.
    pub first_ok_after: Duration,
    /// The errors' texts, each with how many calls failed with it.
    pub errors: BTreeMap<String, usize>,
}

/// What [`writers_ride_out_restarts`] saw.
#[derive(Clone, Debug)]
pub struct Report {
    /// Every fault, in order.
    pub faults: Vec<FaultReport>,
    /// Successful calls in all.
    pub ok: usize,
    /// Failed calls in all.
    pub failed: usize,
    /// The slowest failed call.
    pub slowest_failure: Duration,
    /// Keys checked after the last restart: acknowledged as written (value compared) or
    /// removed (checked absent).
    pub keys_checked: usize,
}

/// The scenario: [`WRITERS`] writer tasks and [`READERS`] reader tasks use the one `store`
/// opened on `server` in a loop, while the server is stopped, kept down, and started again on
/// the same port and data, once per entry of `faults`. `acquire` is the store's acquire
/// timeout. It asserts that:
///
/// - the same store object recovers: every call that starts after the server answers again
///   (and ends before the next fault) succeeds, with no rebuilt store and no restart of the
///   process;
/// - every failure is an [`Error::Backend`] of the driver (never another error, never a
///   panic) and returns within `acquire` plus 2 s (the driver's timeouts and slack), never a
///   hang;
/// - a fault that keeps the server down for longer than `acquire` is seen: some calls fail;
/// - a quick restart (down for zero) fails no read: a read in flight when the server went away
///   is tried again on a new connection, and the calls made meanwhile wait for the server
///   (within `acquire`); only writes in flight may fail, since one may or may not have been
///   committed;
/// - every write acknowledged before, during or after a fault is there afterwards with its
///   value, and every acknowledged remove stayed removed.
pub async fn writers_ride_out_restarts<D: Dialect>(
    server: &mut LocalServer<D>,
    store: Arc<dyn Storage>,
    faults: &[Fault],
    acquire: Duration,
) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let sessions: Vec<Vec<SessionId>> = (0..WRITERS)
        .map(|_| {
            (0..SESSIONS)
                .map(|_| SessionId::generate().expect("OS randomness"))
                .collect()
        })
        .collect();
    let all = Arc::new(sessions.concat());
    let writers: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(w, ids)| tokio::spawn(writer(w, ids, store.clone(), stop.clone(), D::NAME)))
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|_| tokio::spawn(reader(all.clone(), store.clone(), stop.clone(), D::NAME)))
        .collect();

    let mut timeline = Vec::new();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for &fault in faults {
        let stopping = Instant::now();
        server.stop(fault.how).await;
        tokio::time::sleep(fault.down).await;
        server.start().await;
        let ready = Instant::now();
        // Let the store run on the restarted server before the next fault.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        timeline.push((fault, stopping, ready));
    }
    stop.store(true, Ordering::Relaxed);
    let mut ledgers = Vec::new();
    let mut calls = Vec::new();
    for task in writers {
        let (ledger, mine) = task
            .await
            .expect("a writer panicked")
            .unwrap_or_else(|e| panic!("{e}"));
        ledgers.push(ledger);
        calls.extend(mine);
    }
    for task in readers {
        let mine = task
            .await
            .expect("a reader panicked")
            .unwrap_or_else(|e| panic!("{e}"));
        calls.extend(mine);
    }
    calls.sort_by_key(|c| c.started);

    let ok = calls.iter().filter(|c| c.error.is_none()).count();
    let failed = calls.len() - ok;
    let slowest_failure = calls
        .iter()
        .filter(|c| c.error.is_some())
        .map(|c| c.took)
        .max()
        .unwrap_or_default();
    let max_failure = acquire + Duration::from_secs(2);
    assert!(
        slowest_failure <= max_failure,
        "a failed call took {slowest_failure:?}, more than {max_failure:?}"
    );
    let first_fault = timeline.first().map(|t| t.1);
    assert!(
        calls
            .iter()
            .any(|c| c.error.is_none() && first_fault.is_none_or(|t| c.ended() < t)),
        "no call succeeded before the first fault"
    );

    let mut seen = Vec::new();
    for (i, &(fault, stopping, ready)) in timeline.iter().enumerate() {
        let next_stop = timeline.get(i + 1).map(|t| t.1);
        let during = calls
            .iter()
            .filter(|c| c.started >= stopping && c.started < ready)
            .count();
        // Failures from the stop on, including calls that were in flight when it came.
        let failures: Vec<&Call> = calls
            .iter()
            .filter(|c| c.error.is_some() && c.ended() >= stopping && c.started < ready)
            .collect();
        let failed_reads = failures.iter().filter(|c| c.read).count();
        if fault.down > acquire {
            assert!(
                !failures.is_empty(),
                "fault {i} ({fault:?}): no call failed while the server was down ({during} \
                 calls started meanwhile)"
            );
        }
        if fault.down.is_zero() {
            assert_eq!(
                failed_reads,
                0,
                "fault {i} ({fault:?}): a quick restart failed reads: {:?}",
                failures.iter().filter(|c| c.read).collect::<Vec<_>>()
            );
        }
        let after: Vec<&Call> = calls
            .iter()
            .filter(|c| c.started >= ready && next_stop.is_none_or(|t| c.ended() < t))
            .collect();
        let bad: Vec<&&Call> = after.iter().filter(|c| c.error.is_some()).collect();
        assert!(
            bad.is_empty(),
            "fault {i} ({fault:?}): {} of {} calls started after the server answered again \
             failed; the first: {:?}",
            bad.len(),
            after.len(),
            bad.first()
        );
        let first_ok = after
            .iter()
            .find(|c| c.error.is_none())
            .unwrap_or_else(|| panic!("fault {i} ({fault:?}): no call after the restart"));
        seen.push(FaultReport {
            fault,
            down: ready - stopping,
            calls_during: during,
            failed: failures.len(),
            failed_reads,
            first_ok_after: first_ok.ended().saturating_duration_since(ready),
            errors: failures.iter().filter_map(|c| c.error.clone()).fold(
                BTreeMap::new(),
                |mut seen, text| {
                    *seen.entry(text).or_default() += 1;
                    seen
                },
            ),
        });
    }

    // Every acknowledged change is there, read through the same store.
    let mut keys_checked = 0;
    for (w, ledger) in ledgers.iter().enumerate() {
        for (s, id) in ledger.ids.iter().enumerate() {
            let data = store
                .get_map(id)
                .await
                .unwrap_or_else(|e| panic!("reading writer {w}'s session {s} back: {e}"));
            for (key, expect) in &ledger.keys[s] {
                match expect {
                    Expect::Present(want) => {
                        assert_eq!(
                            data.get(key),
                            Some(want),
                            "writer {w}: acknowledged write of {key} lost"
                        );
                        keys_checked += 1;
                    }
                    Expect::Absent => {
                        assert!(
                            !data.contains_key(key),
                            "writer {w}: acknowledged remove of {key} undone"
                        );
                        keys_checked += 1;
                    }
                    Expect::Unknown => {}
                }
            }
        }
    }
    Report {
        faults: seen,
        ok,
        failed,
        slowest_failure,
        keys_checked,
    }
}
