//! Server faults: a PostgreSQL server of the test's own (initdb into a temporary directory, a free
//! loopback port; never the shared server on 5432) is stopped with a fast shutdown and later
//! killed with `kill -9`, each time kept down for longer than the store's acquire timeout and
//! started again on the same port and data, while six tasks write sessions in a loop through one
//! store. The store recovers by itself, failures are `Error::Backend` within the timeouts, and
//! every acknowledged write is there afterwards (`session_sql::testing::outage`).
//!
//! Needs PostgreSQL's server programs (`initdb`, `postgres`: on `PATH` or under
//! `/usr/lib/postgresql/*/bin`); as root they run as the `postgres` account.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::Storage;
use session_postgres::{PostgresDialect, PostgresStore};
use session_sql::testing::outage::{
    Fault, LocalServer, ScratchDir, Stop, account_ids, find_program, free_port, run_setup,
    running_as_root, writers_ride_out_restarts,
};

/// The directories PostgreSQL's packages put the server programs in, newest version first.
fn package_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.into_iter().map(|(_, dir)| dir).collect()
}

fn program(name: &str) -> PathBuf {
    find_program(&[name], &package_dirs()).unwrap_or_else(|| {
        panic!(
            "PostgreSQL's `{name}` is not installed (not on PATH, not under \
             /usr/lib/postgresql/*/bin): apt-get install postgresql"
        )
    })
}

/// `program` as a command that runs as the `postgres` account when the test runs as root
/// (initdb and postgres refuse to run as root).
fn command(program: &Path) -> Command {
    let mut command = Command::new(program);
    if running_as_root() {
        let (uid, gid) = account_ids("postgres").expect(
            "the test runs as root and there is no `postgres` account to run PostgreSQL as \
             (apt-get install postgresql creates it)",
        );
        command.uid(uid).gid(gid);
    }
    command
}

/// A fresh cluster in a temporary directory, on a free port, started.
async fn private_server() -> LocalServer<PostgresDialect> {
    let dir = ScratchDir::new("pgfault");
    if running_as_root() {
        let (uid, gid) = account_ids("postgres").expect("a postgres account");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the directory");
    }
    let data = dir.path().join("data");
    let mut initdb = command(&program("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]);
    run_setup(initdb, &dir.path().join("initdb.log"));

    let port = free_port();
    let postgres = program("postgres");
    let socket_dir = dir.path().to_owned();
    let launch = move || {
        let mut c = command(&postgres);
        c.arg("-D").arg(&data).args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            &format!("unix_socket_directories={}", socket_dir.display()),
            "-c",
            "max_connections=20",
            "-c",
            "shared_buffers=16MB",
        ]);
        c
    };
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    // SIGINT is PostgreSQL's fast shutdown.
    let mut server = LocalServer::new(dir, url, "INT", launch);
    server.start().await;
    server
}

async fn store_on(server: &LocalServer<PostgresDialect>, acquire: Duration) -> PostgresStore {
    PostgresStore::builder()
        .max_connections(4)
        .connect_timeout(acquire)
        .acquire_timeout(acquire)
        .open(server.url())
        .await
        .expect("a store on the private server")
}

/// Down for longer than the acquire timeout, after a fast shutdown and after `kill -9`: calls fail
/// cleanly while it is down, and the store recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_ride_out_a_fast_shutdown_and_a_kill_9() {
    let began = Instant::now();
    let mut server = private_server().await;
    let acquire = Duration::from_secs(1);
    let store = store_on(&server, acquire).await;
    let down = 2 * acquire + Duration::from_millis(500);
    let faults = [
        Fault {
            how: Stop::Fast,
            down,
        },
        Fault {
            how: Stop::Kill,
            down,
        },
    ];
    let shared: Arc<dyn Storage> = Arc::new(store.clone());
    let report = writers_ride_out_restarts(&mut server, shared, &faults, acquire).await;
    store.close().await;
    eprintln!("{report:#?}\nwhole test: {:?}", began.elapsed());
}

/// Restarted at once (after `kill -9`, then after a fast shutdown) under a store whose acquire
/// timeout outlasts the restart: not one read fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quick_restart_fails_no_read() {
    let began = Instant::now();
    let mut server = private_server().await;
    // Far above a restart's few seconds, so that a loaded machine does not make reads time out.
    let acquire = Duration::from_secs(10);
    let store = store_on(&server, acquire).await;
    let faults = [
        Fault {
            how: Stop::Kill,
            down: Duration::ZERO,
        },
        Fault {
            how: Stop::Fast,
            down: Duration::ZERO,
        },
    ];
    let shared: Arc<dyn Storage> = Arc::new(store.clone());
    let report = writers_ride_out_restarts(&mut server, shared, &faults, acquire).await;
    store.close().await;
    eprintln!("{report:#?}\nwhole test: {:?}", began.elapsed());
}
