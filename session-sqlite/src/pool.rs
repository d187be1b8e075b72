//! The connection threads: one writer thread and N reader threads, each owning its own
//! `rusqlite::Connection` and a handle to the store's rendered statements ([`Sql`]). Async
//! callers send a job over a channel and await the reply on a tokio oneshot, so no blocking SQLite
//! call ever runs on an async worker thread.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::Connection;
use session_core::driver::{Error, Result};
use tokio::sync::oneshot;

use crate::NAME;
use crate::statements::Sql;

/// A unit of work run on a connection thread, with the store's statements.
type Job = Box<dyn FnOnce(&mut Connection, &Sql) + Send + 'static>;

/// Which connection a job needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Writer,
    Reader,
}

/// Handles to the connection threads. Dropping the last handle closes the channels; each thread
/// then finishes its current job, closes its connection and exits.
pub(crate) struct Pool {
    writer: mpsc::Sender<Job>,
    /// `None` when the pool has no reader threads: reads then go to the writer.
    readers: Option<mpsc::Sender<Job>>,
    pub(crate) path: PathBuf,
}

fn stopped() -> Error {
    Error::backend(NAME, "the SQLite connection thread has stopped")
}

impl Pool {
    /// Starts the threads. `open` makes one connection for the given role; it runs on the thread
    /// that will own the connection, and the writer's runs (and finishes) first, so it can create
    /// or migrate the schema before any reader opens. Each thread keeps a handle to `sql` and
    /// passes it to every job.
    pub(crate) async fn start<F>(
        path: &Path,
        readers: usize,
        sql: Arc<Sql>,
        open: F,
    ) -> Result<Pool>
    where
        F: Fn(&Path, Role) -> Result<Connection> + Send + Sync + 'static,
    {
        let open = Arc::new(open);
        let (writer, writer_rx) = mpsc::channel::<Job>();
        spawn(
            "session-sqlite-writer".into(),
            path,
            Role::Writer,
            Arc::clone(&sql),
            Arc::clone(&open),
            Arc::new(Mutex::new(writer_rx)),
        )?
        .await
        .map_err(|_| stopped())??;

        let readers = if readers == 0 {
            None
        } else {
            let (tx, rx) = mpsc::channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            let mut ready = Vec::with_capacity(readers);
            for i in 0..readers {
                ready.push(spawn(
                    format!("session-sqlite-reader-{i}"),
                    path,
                    Role::Reader,
                    Arc::clone(&sql),
                    Arc::clone(&open),
                    Arc::clone(&rx),
                )?);
            }
            for r in ready {
                r.await.map_err(|_| stopped())??;
            }
            Some(tx)
        };
        Ok(Pool {
            writer,
            readers,
            path: path.to_owned(),
        })
    }

    /// Runs `f` on a connection of the given role and returns its result.
    pub(crate) async fn run<T, F>(&self, role: Role, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Sql) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn, sql| {
            // The receiver may be gone (the caller's future was dropped): the work is done anyway.
            let _ = tx.send(f(conn, sql));
        });
        let queue = match (role, &self.readers) {
            (Role::Reader, Some(readers)) => readers,
            _ => &self.writer,
        };
        queue.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Spawns one connection thread; the returned receiver says whether its connection opened.
fn spawn<F>(
    name: String,
    path: &Path,
    role: Role,
    sql: Arc<Sql>,
    open: Arc<F>,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
) -> Result<oneshot::Receiver<Result<()>>>
where
    F: Fn(&Path, Role) -> Result<Connection> + Send + Sync + 'static,
{
    let (ready_tx, ready_rx) = oneshot::channel();
    let path = path.to_owned();
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut conn = match open(&path, role) {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(()));
                    conn
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            loop {
                // The lock is held only while waiting for the next job, never while running one,
                // so the reader threads run their jobs in parallel.
                let job = match jobs.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                // A job that panicked dropped its reply sender (the caller sees "stopped");
                // the connection and the thread stay usable (an open transaction was rolled back
                // when it unwound).
                let _ = catch_unwind(AssertUnwindSafe(|| job(&mut conn, &sql)));
            }
        })
        .map_err(|e| Error::backend(NAME, e))?;
    Ok(ready_rx)
}
