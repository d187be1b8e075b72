//! How calls reach SQLite: one writer thread that commits the queued writes in groups, and a
//! small set of read-only connections that the callers' own threads use inline.
//!
//! - **Writes** are queued (a `std::sync::mpsc` channel) to the writer thread, which owns the
//!   read-write connection. It takes every write queued (up to [`MAX_BATCH`]), runs them in ONE
//!   `BEGIN IMMEDIATE` transaction, each inside its own `SAVEPOINT` (a write that fails is rolled
//!   back alone and only its caller gets the error), `COMMIT`s once, and only then answers every
//!   caller (a tokio oneshot each). A caller is answered after the `COMMIT` that holds its change
//!   returned, as when each write committed on its own.
//! - **Short reads** (one session, by primary key) run on the calling thread, on one of the
//!   reader connections that is free (`try_lock`, this thread's own first), with SQLite's busy
//!   timeout at zero: they never wait for a lock. If every connection is taken, or SQLite says the
//!   database is busy (WAL recovery by another process), the read moves to tokio's blocking pool,
//!   where it may wait.
//! - **Long reads** (scan pages, owner listings) always run on the blocking pool, and `purge`
//!   runs alone on the writer thread, in its own transactions.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, mpsc};
use std::thread;
use std::time::Duration;

use rusqlite::Connection;
use session_core::driver::{Error, Result};
use tokio::sync::oneshot;

use crate::NAME;
use crate::error::{batch_error, db_error, is_busy};
use crate::statements::Sql;

/// The most writes one group commit holds: enough to amortize the commit over every task of a
/// busy server, few enough that a batch's latency stays bounded (the writes are milliseconds
/// at most each; the batch runs while the next one queues).
pub(crate) const MAX_BATCH: usize = 128;

/// Which connection a connection is opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Writer,
    Reader,
}

fn stopped() -> Error {
    Error::backend(NAME, "the SQLite writer thread has stopped")
}

fn panicked() -> Error {
    Error::backend(
        NAME,
        "a call panicked inside the SQLite driver; its changes were rolled back",
    )
}

/// The writer's connection and the reader connections. Dropping the last handle closes the
/// writer's channel: the writer thread runs what is queued, closes the reader connections and
/// its own (last, so that it is the one that checkpoints the WAL on close) and exits.
pub(crate) struct Pool {
    /// `None` when the store has no reader connections: reads then run on the writer thread.
    /// (Declared before `writer`, so it is dropped first and the writer thread drops the last
    /// handle to the reader connections.)
    readers: Option<Arc<Readers>>,
    writer: mpsc::Sender<Job>,
    pub(crate) path: PathBuf,
}

impl Pool {
    /// Starts the writer thread, which opens its connection with `open` (creating or migrating
    /// the schema), then the `readers` reader connections (read-only), and hands those back.
    /// Inline reads use the reader connections with a zero busy timeout; reads on the blocking
    /// pool set it to `busy_timeout` for their call.
    pub(crate) async fn start<F>(
        path: &Path,
        readers: usize,
        busy_timeout: Duration,
        sql: Arc<Sql>,
        open: F,
    ) -> Result<Pool>
    where
        F: Fn(&Path, Role) -> Result<Connection> + Send + 'static,
    {
        let (writer, jobs) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let setup = Setup {
            path: path.to_owned(),
            readers,
            busy_timeout,
            sql,
        };
        thread::Builder::new()
            .name("session-sqlite-writer".into())
            .spawn(move || writer_thread(setup, open, jobs, ready_tx))
            .map_err(|e| Error::backend(NAME, e))?;
        let readers = ready_rx.await.map_err(|_| stopped())??;
        Ok(Pool {
            readers,
            writer,
            path: path.to_owned(),
        })
    }

    /// A short read (one session by primary key: microseconds from the page cache), run inline
    /// on the calling thread when a reader connection is free, else on the blocking pool.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Connection, &Sql) -> Result<T> + Send + 'static,
    {
        let Some(readers) = &self.readers else {
            return self.alone(move |conn, sql| f(conn, sql)).await;
        };
        // The connection is taken and released inside `inline`: nothing is held across an await.
        match readers.inline(&f) {
            Some(result) => result,
            None => self.read_blocking(f).await,
        }
    }

    /// A read that may take long (a scan page, an owner's listing) or must be allowed to wait
    /// for a lock: on tokio's blocking pool (or inline when there is no runtime), with the busy
    /// timeout.
    pub(crate) async fn read_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Sql) -> Result<T> + Send + 'static,
    {
        let Some(readers) = &self.readers else {
            return self.alone(move |conn, sql| f(conn, sql)).await;
        };
        let readers = Arc::clone(readers);
        let work = move || readers.blocking(f);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime.spawn_blocking(work).await.map_err(|e| {
                if e.is_panic() {
                    panicked()
                } else {
                    Error::backend(NAME, "the runtime shut down before the read ran")
                }
            })?,
            Err(_) => work(),
        }
    }

    /// A write, run inside the writer's next group commit, in a savepoint of its own; answered
    /// after that commit returned. The write is queued when this is called, before the future
    /// is first polled.
    pub(crate) fn write<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Sql) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Grouped {
            work: Some(f),
            result: None,
            reply,
        };
        let queued = self.writer.send(Job::Grouped(Box::new(job)));
        async move {
            queued.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        }
    }

    /// Work run alone on the writer thread, outside any group commit, with the connection to
    /// itself (it opens and commits its own transactions): `purge`, and reads when the store has
    /// no reader connections. Queued when this is called, like [`write`](Self::write).
    pub(crate) fn alone<T, F>(&self, f: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Sql) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Alone = Box::new(move |conn, sql| {
            let result =
                catch_unwind(AssertUnwindSafe(|| f(conn, sql))).unwrap_or_else(|_| Err(panicked()));
            // The receiver may be gone (the caller's future was dropped): the work is done anyway.
            let _ = reply.send(result);
        });
        let queued = self.writer.send(Job::Alone(job));
        async move {
            queued.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())?
        }
    }
}

// ----- reader connections ------------------------------------------------------------------------

/// The read-only connections, each behind a mutex that is only ever held for one synchronous
/// call (never across an await).
struct Readers {
    conns: Box<[Mutex<Connection>]>,
    sql: Arc<Sql>,
    /// The busy timeout of reads on the blocking pool (inline reads use zero).
    busy_timeout: Duration,
}

/// Numbers the threads that read, so that each starts with a connection of its own.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
}

impl Readers {
    /// This thread's own connection (the first it tries).
    fn own(&self) -> usize {
        SLOT.with(|slot| *slot) % self.conns.len()
    }

    /// A free connection, this thread's own first, without waiting.
    fn try_take(&self) -> Option<MutexGuard<'_, Connection>> {
        let n = self.conns.len();
        let own = self.own();
        (0..n).find_map(|i| match self.conns[(own + i) % n].try_lock() {
            Ok(conn) => Some(conn),
            // A poisoned lock only means a call panicked while holding it: its statements were
            // reset when they dropped, and the connection is as good as before.
            Err(TryLockError::Poisoned(conn)) => Some(conn.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        })
    }

    /// Runs `f` on a free connection, on this thread; `None` when every connection is taken or
    /// SQLite reports the database busy (reads never write: running it again elsewhere is safe).
    fn inline<T>(&self, f: &impl Fn(&Connection, &Sql) -> Result<T>) -> Option<Result<T>> {
        let conn = self.try_take()?;
        let result = catch_unwind(AssertUnwindSafe(|| f(&conn, &self.sql)))
            .unwrap_or_else(|_| Err(panicked()));
        drop(conn);
        match result {
            Err(e) if is_busy(&e) => None,
            result => Some(result),
        }
    }

    /// Runs `f` on a connection, waiting for one if they are all taken, with the busy timeout:
    /// only on a thread that may block.
    fn blocking<T>(&self, f: impl FnOnce(&Connection, &Sql) -> Result<T>) -> Result<T> {
        let conn = match self.try_take() {
            Some(conn) => conn,
            None => self.conns[self.own()]
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        };
        conn.busy_timeout(self.busy_timeout).map_err(db_error)?;
        let result = catch_unwind(AssertUnwindSafe(|| f(&conn, &self.sql)))
            .unwrap_or_else(|_| Err(panicked()));
        // Back to failing at once, for the inline reads. (`sqlite3_busy_timeout` cannot fail on
        // an open connection.)
        let _ = conn.busy_timeout(Duration::ZERO);
        result
    }
}

// ----- the writer thread -------------------------------------------------------------------------

/// A write queued for the writer thread.
enum Job {
    /// Runs inside a group commit, in its own savepoint.
    Grouped(Box<dyn GroupedJob>),
    /// Runs alone, outside any transaction.
    Alone(Alone),
}

/// Work run alone on the writer's connection; it answers its caller itself.
type Alone = Box<dyn FnOnce(&mut Connection, &Sql) + Send + 'static>;

/// A write of a group commit: run (inside the batch's transaction), then answered once the
/// batch's outcome is known.
trait GroupedJob: Send {
    /// Runs the work; returns whether it succeeded (its savepoint is then kept, otherwise rolled
    /// back).
    fn run(&mut self, conn: &Connection, sql: &Sql) -> bool;
    /// The work's changes are not committed (the batch's `COMMIT` failed, or SQLite rolled the
    /// whole transaction back): a caller whose work succeeded gets `e` instead; a caller whose
    /// work failed keeps its own error.
    fn lost(&mut self, e: Error);
    /// Sends the outcome to the caller.
    fn answer(self: Box<Self>);
}

struct Grouped<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> GroupedJob for Grouped<T, F>
where
    T: Send,
    F: FnOnce(&Connection, &Sql) -> Result<T> + Send,
{
    fn run(&mut self, conn: &Connection, sql: &Sql) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        let result =
            catch_unwind(AssertUnwindSafe(|| work(conn, sql))).unwrap_or_else(|_| Err(panicked()));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn lost(&mut self, e: Error) {
        if !matches!(self.result, Some(Err(_))) {
            self.result = Some(Err(e));
        }
    }

    fn answer(self: Box<Self>) {
        let result = self.result.unwrap_or_else(|| Err(stopped()));
        // The receiver may be gone (the caller's future was dropped): the work is done anyway.
        let _ = self.reply.send(result);
    }
}

struct Setup {
    path: PathBuf,
    readers: usize,
    busy_timeout: Duration,
    sql: Arc<Sql>,
}

/// Opens the writer's connection and the readers', reports them ready, then runs the jobs until
/// every handle to the pool is gone.
fn writer_thread<F>(
    setup: Setup,
    open: F,
    jobs: mpsc::Receiver<Job>,
    ready: oneshot::Sender<Result<Option<Arc<Readers>>>>,
) where
    F: Fn(&Path, Role) -> Result<Connection>,
{
    let Setup {
        path,
        readers,
        busy_timeout,
        sql,
    } = setup;
    // The writer's connection first: it creates or migrates the schema before any reader opens.
    let opened = open(&path, Role::Writer).and_then(|conn| {
        let readers = if readers == 0 {
            None
        } else {
            let conns = (0..readers)
                .map(|_| {
                    let conn = open(&path, Role::Reader)?;
                    conn.busy_timeout(Duration::ZERO).map_err(db_error)?;
                    Ok(Mutex::new(conn))
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Arc::new(Readers {
                conns: conns.into_boxed_slice(),
                sql: Arc::clone(&sql),
                busy_timeout,
            }))
        };
        Ok((conn, readers))
    });
    let (mut conn, readers) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(readers.clone()));

    let mut batch: Vec<Box<dyn GroupedJob>> = Vec::with_capacity(MAX_BATCH);
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match jobs.try_recv() {
                Ok(job) => job,
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {
                    match wait_holding_snapshot(&conn, &jobs, busy_timeout) {
                        Some(job) => job,
                        None => break, // every handle is gone and the queue is empty
                    }
                }
            },
        };
        match job {
            Job::Alone(job) => {
                job(&mut conn, &sql);
                if !conn.is_autocommit() {
                    // Only after a panic that escaped a transaction's guard; never keep it open.
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
            Job::Grouped(job) => {
                batch.push(job);
                while batch.len() < MAX_BATCH {
                    match jobs.try_recv() {
                        Ok(Job::Grouped(job)) => batch.push(job),
                        Ok(alone) => {
                            next = Some(alone);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                group_commit(&conn, &sql, &mut batch);
            }
        }
    }
    // The readers close first, so that the writer's connection is the last one and checkpoints.
    drop(readers);
    drop(conn);
}

/// How long the idle writer holds one read snapshot before it takes the newest one.
const HOLD_REFRESH: Duration = Duration::from_millis(100);

/// Waits for the next job while the writer's connection holds a read transaction on the newest
/// snapshot, taken again every [`HOLD_REFRESH`], and released before the job runs; `None` when
/// every handle is gone.
///
/// Why: each read transaction locks a read-mark slot of the WAL index, and SQLite makes that
/// lock an `fcntl` on the `-shm` file (under its shared-memory mutex) only when no other
/// connection of the process holds the slot. The inline reads on two runtime workers rarely
/// overlap, so nearly every read paid two `fcntl` calls and often waited for the mutex; with the
/// slot held here, they pay none. The hold is on the newest snapshot, so it never keeps a
/// checkpoint from copying frames this process committed, and it is renewed every
/// [`HOLD_REFRESH`] (after another process's commits, it moves to their snapshot, and to
/// read-mark 0 once a checkpoint copied everything, where it no longer stands in the way of a
/// WAL restart). Any failure just means no hold: reads work as before.
fn wait_holding_snapshot(
    conn: &Connection,
    jobs: &mpsc::Receiver<Job>,
    busy_timeout: Duration,
) -> Option<Job> {
    let hold = || {
        // Zero busy timeout: a hold is never worth waiting for (WAL recovery elsewhere).
        let _ = conn.busy_timeout(Duration::ZERO);
        let held = exec(conn, HOLD_BEGIN)
            .and_then(|()| conn.prepare_cached(HOLD_READ)?.query_row([], |_| Ok(())));
        if held.is_err() {
            release(conn, busy_timeout);
        }
    };
    hold();
    let job = loop {
        match jobs.recv_timeout(HOLD_REFRESH) {
            Ok(job) => break Some(job),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                release(conn, busy_timeout);
                hold();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        }
    };
    release(conn, busy_timeout);
    job
}

/// Ends the writer's read hold, if it has one, and gives it back its busy timeout.
fn release(conn: &Connection, busy_timeout: Duration) {
    if !conn.is_autocommit() && exec(conn, COMMIT).is_err() {
        let _ = exec(conn, ROLLBACK);
    }
    let _ = conn.busy_timeout(busy_timeout);
}

const HOLD_BEGIN: &str = "BEGIN DEFERRED";
/// A read that starts the read transaction (it reads page 1).
const HOLD_READ: &str = "SELECT count(*) FROM sqlite_schema";
const BEGIN: &str = "BEGIN IMMEDIATE";
const COMMIT: &str = "COMMIT";
const ROLLBACK: &str = "ROLLBACK";
const SAVEPOINT: &str = "SAVEPOINT job";
const RELEASE: &str = "RELEASE job";
const ROLLBACK_TO: &str = "ROLLBACK TO job";

/// Runs one of the transaction-control statements above (prepared once per connection).
fn exec(conn: &Connection, statement: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(statement)?.execute([]).map(drop)
}

/// Commits `batch` (in as few transactions as SQLite allows: one, unless it rolls a transaction
/// back by itself), then answers every caller and empties `batch`.
fn group_commit(conn: &Connection, sql: &Sql, batch: &mut Vec<Box<dyn GroupedJob>>) {
    let mut done = 0;
    while done < batch.len() {
        done += transaction(conn, sql, &mut batch[done..]);
    }
    for job in batch.drain(..) {
        job.answer();
    }
}

/// Runs `jobs` in one `BEGIN IMMEDIATE` transaction, each in its own savepoint, and commits;
/// returns how many jobs have their outcome: all of them, unless SQLite rolled the transaction
/// back on a job's error (disk full, I/O error), which ends the transaction at that job.
fn transaction(conn: &Connection, sql: &Sql, jobs: &mut [Box<dyn GroupedJob>]) -> usize {
    if let Err(e) = exec(conn, BEGIN) {
        for job in jobs.iter_mut() {
            job.lost(batch_error("BEGIN IMMEDIATE", &e));
        }
        return jobs.len();
    }
    // A job alone needs no savepoint: if it fails, the whole transaction rolls back.
    let single = jobs.len() == 1;
    for i in 0..jobs.len() {
        if !single && let Err(e) = exec(conn, SAVEPOINT) {
            return abandon(conn, &mut jobs[..=i], "SAVEPOINT", &e);
        }
        let ok = jobs[i].run(conn, sql);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back: the jobs before this one lost their
            // changes too. They get an error (nothing of theirs was committed); the rest of the
            // batch goes on in a new transaction.
            for job in &mut jobs[..=i] {
                job.lost(Error::backend(
                    NAME,
                    "SQLite rolled back the transaction of this write's group commit after \
                     another write in it failed; nothing of this write was committed",
                ));
            }
            return i + 1;
        }
        if single {
            if !ok {
                let _ = exec(conn, ROLLBACK);
                return 1;
            }
            continue;
        }
        let end = if ok {
            exec(conn, RELEASE)
        } else {
            exec(conn, ROLLBACK_TO).and_then(|()| exec(conn, RELEASE))
        };
        if let Err(e) = end {
            return abandon(conn, &mut jobs[..=i], "RELEASE", &e);
        }
    }
    if let Err(e) = exec(conn, COMMIT) {
        if !conn.is_autocommit() {
            let _ = exec(conn, ROLLBACK);
        }
        for job in jobs.iter_mut() {
            job.lost(batch_error("COMMIT", &e));
        }
    }
    jobs.len()
}

/// Rolls the transaction back after its own statement `what` failed; every job of `jobs` (those
/// run so far) gets the error. Returns how many jobs have their outcome.
fn abandon(
    conn: &Connection,
    jobs: &mut [Box<dyn GroupedJob>],
    what: &str,
    e: &rusqlite::Error,
) -> usize {
    if !conn.is_autocommit() {
        let _ = exec(conn, ROLLBACK);
    }
    for job in jobs.iter_mut() {
        job.lost(batch_error(what, e));
    }
    jobs.len()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::sync::mpsc as std_mpsc;

    use rusqlite::params;

    use super::*;
    use crate::schema;

    fn sql() -> Sql {
        Sql::new(&schema::tables("sessions").unwrap())
    }

    /// A WAL database with one table `t (k TEXT PRIMARY KEY, n INTEGER NOT NULL CHECK (n >= 0))`.
    fn database(dir: &tempfile::TempDir) -> (PathBuf, Connection) {
        let path = dir.path().join("pool.db");
        let conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL CHECK (n >= 0))",
        )
        .unwrap();
        (path, conn)
    }

    fn insert(conn: &Connection, k: &str, n: i64) -> Result<()> {
        conn.execute("INSERT INTO t (k, n) VALUES (?1, ?2)", params![k, n])
            .map(drop)
            .map_err(db_error)
    }

    fn keys(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut st = conn.prepare("SELECT k FROM t ORDER BY k").unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    type Answer = oneshot::Receiver<Result<()>>;

    fn job<F>(f: F) -> (Box<dyn GroupedJob>, Answer)
    where
        F: FnOnce(&Connection, &Sql) -> Result<()> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Grouped {
            work: Some(f),
            result: None,
            reply,
        };
        (Box::new(job), answer)
    }

    fn answers(mut answers: Vec<Answer>) -> Vec<Result<()>> {
        answers.iter_mut().map(|a| a.try_recv().unwrap()).collect()
    }

    /// Runs `jobs` as one group commit on `conn`.
    fn commit(conn: &Connection, jobs: Vec<(Box<dyn GroupedJob>, Answer)>) -> Vec<Result<()>> {
        let (mut batch, waiting): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        group_commit(conn, &sql(), &mut batch);
        assert!(batch.is_empty());
        assert!(conn.is_autocommit(), "a transaction was left open");
        answers(waiting)
    }

    #[test]
    fn a_failing_or_panicking_write_is_rolled_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = database(&dir);
        let results = commit(
            &conn,
            vec![
                job(|c, _| insert(c, "a", 1)),
                // Writes a row, then fails: its row must go, with its own error.
                job(|c, _| {
                    insert(c, "b", 1)?;
                    Err(Error::InvalidInput("b failed".into()))
                }),
                // A constraint only the database checks.
                job(|c, _| {
                    insert(c, "c", 1)?;
                    insert(c, "c2", -1)
                }),
                // Writes a row, then panics.
                job(|c, _| {
                    insert(c, "d", 1)?;
                    panic!("a write that panics");
                }),
                job(|c, _| insert(c, "e", 1)),
            ],
        );
        assert!(results[0].is_ok(), "{:?}", results[0]);
        assert!(
            matches!(&results[1], Err(Error::InvalidInput(m)) if m == "b failed"),
            "{:?}",
            results[1]
        );
        let constraint = results[2].as_ref().unwrap_err().to_string();
        assert!(
            constraint.contains("CHECK constraint failed"),
            "{constraint}"
        );
        let panic = results[3].as_ref().unwrap_err().to_string();
        assert!(panic.contains("panicked"), "{panic}");
        assert!(results[4].is_ok(), "{:?}", results[4]);
        assert_eq!(keys(&path), ["a", "e"]);
    }

    #[test]
    fn a_single_failing_write_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = database(&dir);
        let results = commit(
            &conn,
            vec![job(|c, _| {
                insert(c, "a", 1)?;
                insert(c, "a", 2) // duplicate key
            })],
        );
        assert!(results[0].is_err());
        assert!(keys(&path).is_empty());
        let results = commit(&conn, vec![job(|c, _| insert(c, "a", 1))]);
        assert!(results[0].is_ok());
        assert_eq!(keys(&path), ["a"]);
    }

    #[test]
    fn a_transaction_sqlite_rolled_back_fails_the_writes_before_and_the_rest_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = database(&dir);
        let results = commit(
            &conn,
            vec![
                job(|c, _| insert(c, "a", 1)),
                // Ends the transaction under the writer's feet, as SQLite does on some errors
                // (disk full, I/O error).
                job(|c, _| {
                    c.execute_batch("ROLLBACK").map_err(db_error)?;
                    Err(Error::InvalidInput("rolled back".into()))
                }),
                job(|c, _| insert(c, "c", 1)),
                job(|c, _| insert(c, "d", 1)),
            ],
        );
        let lost = results[0].as_ref().unwrap_err().to_string();
        assert!(
            lost.contains("nothing of this write was committed"),
            "{lost}"
        );
        assert!(matches!(&results[1], Err(Error::InvalidInput(_))));
        assert!(results[2].is_ok() && results[3].is_ok(), "{results:?}");
        assert_eq!(keys(&path), ["c", "d"]);
    }

    #[test]
    fn a_failed_commit_fails_every_write_of_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = database(&dir);
        // A deferred foreign key is checked at COMMIT, not when the savepoint is released.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE child (k TEXT NOT NULL REFERENCES t (k) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        let results = commit(
            &conn,
            vec![
                job(|c, _| insert(c, "a", 1)),
                job(|c, _| {
                    c.execute("INSERT INTO child (k) VALUES ('nobody')", [])
                        .map(drop)
                        .map_err(db_error)
                }),
                job(|_, _| Err(Error::InvalidInput("own error".into()))),
            ],
        );
        for r in &results[..2] {
            let e = r.as_ref().unwrap_err().to_string();
            assert!(e.contains("COMMIT failed"), "{e}");
        }
        assert!(matches!(&results[2], Err(Error::InvalidInput(m)) if m == "own error"));
        assert!(keys(&path).is_empty());
        // The connection is usable again.
        let results = commit(&conn, vec![job(|c, _| insert(c, "b", 1))]);
        assert!(results[0].is_ok(), "{results:?}");
        assert_eq!(keys(&path), ["b"]);
    }

    #[test]
    fn a_lock_held_elsewhere_fails_the_whole_batch_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, conn) = database(&dir);
        conn.busy_timeout(Duration::from_millis(50)).unwrap();
        let mut other = Connection::open(&path).unwrap();
        let tx = other
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        let results = commit(
            &conn,
            vec![job(|c, _| insert(c, "a", 1)), job(|c, _| insert(c, "b", 1))],
        );
        for r in &results {
            let e = r.as_ref().unwrap_err();
            assert!(is_busy(e), "{e}");
            assert!(e.to_string().contains("locked"), "{e}");
        }
        drop(tx);
        assert!(keys(&path).is_empty());
    }

    /// Through the writer thread: the writes queued while a batch runs go in the next batches,
    /// at most `MAX_BATCH` each, every write in a batch sees the same committed state, and every
    /// write lands.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writes_are_committed_in_batches_of_at_most_max_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _setup) = database(&dir);
        let pool = plain_pool(&path, 1).await;
        // Counts committed rows from outside the writer's transaction.
        let outside = Arc::new(Mutex::new(Connection::open(&path).unwrap()));
        let committed = move || -> i64 {
            let conn = outside.lock().unwrap();
            conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap()
        };

        // The first write holds the writer (alone in its batch) until every other write is
        // queued.
        let (release, wait) = std_mpsc::channel::<()>();
        let (running, started) = std_mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let first = pool.write(move |c, _| {
            running.send(()).unwrap();
            wait.lock().unwrap().recv().unwrap();
            insert(c, "first", 0)
        });
        started.recv().unwrap();
        let n = 2 * MAX_BATCH + 44;
        let queued: Vec<_> = (0..n)
            .map(|i| {
                let committed = committed.clone();
                pool.write(move |c, _| {
                    let seen = committed();
                    insert(c, &format!("k{i:04}"), 0)?;
                    Ok(seen)
                })
            })
            .collect();
        release.send(()).unwrap();
        first.await.unwrap();
        let mut seen = Vec::new();
        for write in queued {
            seen.push(write.await.unwrap());
        }
        // Batch 2 saw only `first`, batch 3 also batch 2's writes, and so on.
        let batch = i64::try_from(MAX_BATCH).unwrap();
        let mut expected = vec![1; MAX_BATCH];
        expected.extend(vec![1 + batch; MAX_BATCH]);
        expected.extend(vec![1 + 2 * batch; 44]);
        assert_eq!(seen, expected);
        assert_eq!(keys(&path).len(), n + 1);
    }

    fn busy() -> Error {
        db_error(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        ))
    }

    /// Counts the ticks of a task on the runtime's only thread while `work` runs: if the thread
    /// was blocked, the ticks stop.
    async fn ticks_during<T>(work: impl Future<Output = T>) -> (T, usize, Duration) {
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        tokio::task::yield_now().await;
        let started = std::time::Instant::now();
        let out = work.await;
        let took = started.elapsed();
        ticker.abort();
        (out, ticks.load(Ordering::Relaxed), took)
    }

    /// A pool on `path` with `readers` plain connections and a 5 s busy timeout.
    async fn plain_pool(path: &Path, readers: usize) -> Pool {
        Pool::start(
            path,
            readers,
            Duration::from_secs(5),
            Arc::new(sql()),
            |path, _| Connection::open(path).map_err(db_error),
        )
        .await
        .unwrap()
    }

    async fn reader_pool(dir: &tempfile::TempDir, readers: usize) -> Pool {
        let (path, _setup) = database(dir);
        plain_pool(&path, readers).await
    }

    /// A read that finds the database busy (as during another process's WAL recovery) is not
    /// retried on the caller's thread: it moves to the blocking pool, with the busy timeout.
    #[tokio::test(flavor = "current_thread")]
    async fn an_inline_read_that_finds_the_database_busy_moves_off_the_callers_thread() {
        let dir = tempfile::tempdir().unwrap();
        let pool = reader_pool(&dir, 2).await;
        let caller = thread::current().id();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        let n = pool
            .read(move |conn, _| {
                let mut calls = seen.lock().unwrap();
                // No busy timeout inline; the busy timeout on the blocking pool.
                let waits: i64 = conn
                    .query_row("PRAGMA busy_timeout", [], |r| r.get(0))
                    .map_err(db_error)?;
                calls.push((thread::current().id(), waits));
                if calls.len() == 1 {
                    return Err(busy());
                }
                conn.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                    .map_err(db_error)
            })
            .await
            .unwrap();
        assert_eq!(n, 0);
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[0],
            (caller, 0),
            "the first try is inline, without waiting"
        );
        assert_ne!(calls[1].0, caller, "the retry ran on the caller's thread");
        assert_eq!(
            calls[1].1, 5_000,
            "the retry may wait up to the busy timeout"
        );
        // And the connection is back to not waiting for the next inline read.
        let waits = pool
            .read(|conn, _| {
                conn.query_row("PRAGMA busy_timeout", [], |r| r.get::<_, i64>(0))
                    .map_err(db_error)
            })
            .await
            .unwrap();
        assert_eq!(waits, 0);
    }

    /// With every reader connection taken (by long reads on other threads), a short read does
    /// not wait for one on the caller's thread: it waits on the blocking pool, while the
    /// runtime's only thread keeps running other tasks.
    #[tokio::test(flavor = "current_thread")]
    async fn a_read_finding_every_connection_taken_waits_off_the_callers_thread() {
        let dir = tempfile::tempdir().unwrap();
        let pool = reader_pool(&dir, 2).await;
        let readers = Arc::clone(pool.readers.as_ref().unwrap());
        let (ready_tx, ready) = std_mpsc::channel();
        let holder = thread::spawn(move || {
            // Takes both connections on another thread, for 300 ms.
            let guards: Vec<_> = readers.conns.iter().map(|c| c.lock().unwrap()).collect();
            ready_tx.send(()).unwrap();
            thread::sleep(Duration::from_millis(300));
            drop(guards);
        });
        ready.recv().unwrap();
        let caller = thread::current().id();
        let (ran_on, ticks, took) =
            ticks_during(pool.read(|_, _| Ok(thread::current().id()))).await;
        holder.join().unwrap();
        let ran_on = ran_on.unwrap();
        assert_ne!(ran_on, caller);
        assert!(
            took >= Duration::from_millis(200),
            "it did not wait ({took:?})"
        );
        assert!(
            ticks >= 20,
            "the caller's thread was blocked ({ticks} ticks in {took:?})"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn alone_jobs_run_between_batches_and_a_panic_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _setup) = database(&dir);
        let pool = plain_pool(&path, 0).await;
        let a = pool.write(|c, _| insert(c, "a", 1));
        let alone = pool.alone(|c, _| {
            assert!(c.is_autocommit(), "ran inside a group commit");
            let n: i64 = c
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .map_err(db_error)?;
            Ok(n)
        });
        let b = pool.write(|c, _| insert(c, "b", 1));
        a.await.unwrap();
        assert_eq!(
            alone.await.unwrap(),
            1,
            "the write queued before it is committed"
        );
        b.await.unwrap();
        let e = pool
            .alone(|c, _| -> Result<()> {
                let tx = c.transaction().map_err(db_error)?;
                insert(&tx, "x", 1)?;
                panic!("alone and panicking");
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
        // Reads without reader connections run on the writer thread.
        let n = pool
            .read(|c, _| {
                c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
                    .map_err(db_error)
            })
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(keys(&path), ["a", "b"]);
    }
}
