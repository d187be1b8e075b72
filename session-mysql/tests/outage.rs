//! Server faults: a MariaDB server of the test's own (mariadb-install-db into a temporary
//! directory, a free loopback port, its own socket; never the shared server on 3306) is shut
//! down (SIGTERM) and later killed with `kill -9`, each time kept down for longer than the
//! store's acquire timeout and started again on the same port and data, while six tasks write
//! sessions in a loop through one store. The store recovers by itself, failures are
//! `Error::Backend` within the timeouts, and every acknowledged write is there afterwards
//! (`session_sql::testing::outage`).
//!
//! Needs MariaDB's server programs (`mariadbd` or `mysqld`, `mariadb-install-db` or
//! `mysql_install_db`: on `PATH` or in `/usr/sbin`, `/usr/bin`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session_core::Storage;
use session_mysql::sqlx::{Connection as _, Executor as _, MySqlConnection};
use session_mysql::{MySqlDialect, MySqlStore};
use session_sql::testing::outage::{
    Fault, LocalServer, ScratchDir, Stop, find_program, free_port, run_setup, running_as_root,
    writers_ride_out_restarts,
};

fn program(names: &[&str]) -> PathBuf {
    let system = [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")];
    find_program(names, &system).unwrap_or_else(|| {
        panic!(
            "MariaDB's {names:?} is not installed (not on PATH, /usr/sbin or /usr/bin): \
             apt-get install mariadb-server"
        )
    })
}

/// A fresh server in a temporary directory, on a free port, started, with a database
/// `sessions`.
async fn private_server() -> LocalServer<MySqlDialect> {
    let dir = ScratchDir::new("myfault");
    let data = dir.path().join("data");
    // Temporary tables in the test's directory, not the shared /tmp (two installs running at
    // once failed there).
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("create the server's tmpdir");
    let tmpdir = format!("--tmpdir={}", tmp.display());
    // As root the server must be told to stay root (it would switch to `mysql`, which cannot
    // write the test's directory); as anyone else it runs as that user.
    let user: Option<&str> = running_as_root().then_some("--user=root");
    let mut install = Command::new(program(&["mariadb-install-db", "mysql_install_db"]));
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(&tmpdir)
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ])
        .args(user);
    run_setup(install, &dir.path().join("install.log"));

    let port = free_port();
    let mariadbd = program(&["mariadbd", "mysqld"]);
    let root = dir.path().to_owned();
    let launch = move || {
        let mut c = Command::new(&mariadbd);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", root.join("mariadb.sock").display()))
            .arg(format!("--pid-file={}", root.join("mariadb.pid").display()))
            .arg(format!("--port={port}"))
            .arg(&tmpdir)
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--max-connections=30",
            ])
            .args(user);
        c
    };
    let url = format!("mysql://root@127.0.0.1:{port}");
    // SIGTERM is MariaDB's shutdown.
    let mut server = LocalServer::new(dir, url, "TERM", launch);
    server.start().await;
    let mut admin = MySqlConnection::connect(server.url()).await.unwrap();
    admin.execute("CREATE DATABASE sessions").await.unwrap();
    admin.close().await.unwrap();
    server
}

async fn store_on(server: &LocalServer<MySqlDialect>, acquire: Duration) -> MySqlStore {
    MySqlStore::builder()
        .max_connections(4)
        .connect_timeout(acquire)
        .acquire_timeout(acquire)
        .open(&format!("{}/sessions", server.url()))
        .await
        .expect("a store on the private server")
}

/// Down for longer than the acquire timeout, after a shutdown and after `kill -9`: calls fail
/// cleanly while it is down, and the store recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_ride_out_a_shutdown_and_a_kill_9() {
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

/// Restarted at once (after `kill -9`, then after a shutdown) under a store whose acquire
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
