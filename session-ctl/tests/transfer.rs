//! `export`, `import` and `migrate` between real stores: every value, the deadline (to the
//! second) and the owner binding survive; a migration stopped half way and run again ends
//! complete, without duplicates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestStore, Written, expect, json, populate, run};
use session_core::{SessionId, Storage};
use session_ctl::inspect;

/// Every session of `written` is in `target` as in `source`: the same keys and bytes, the
/// deadline within a second, the owner bound in the target's index.
async fn same_sessions(source: &dyn Storage, target: &dyn Storage, written: &Written) {
    for (id, owner) in &written.sessions {
        let sid = SessionId::parse(id).unwrap();
        let a = source
            .load(&sid)
            .await
            .unwrap()
            .expect("live in the source");
        let b = target
            .load(&sid)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{id} missing from the target"));
        assert_eq!(a.data, b.data, "{id}: values");
        let (da, db) = (a.expires_at.unwrap(), b.expires_at.unwrap());
        let skew = db.duration_since(da).unwrap_or_else(|e| e.duration());
        assert!(
            skew < Duration::from_secs(1),
            "{id}: deadline moved by {skew:?}"
        );
        assert_eq!(
            target.index_owner(&sid).await.unwrap(),
            *owner,
            "{id}: owner"
        );
    }
    for owner in ["user0", "user1", "user3"] {
        let mut want = written.of(owner);
        want.sort();
        let mut got: Vec<String> = target
            .index_sessions(owner)
            .await
            .unwrap()
            .iter()
            .map(|id| id.as_str().to_owned())
            .collect();
        got.sort();
        assert_eq!(got, want, "{owner}'s sessions in the target");
    }
}

/// How many sessions the big migrations move: 3,000, or `SESSIONCTL_TEST_SESSIONS` (the issue's
/// 100,000: `SESSIONCTL_TEST_SESSIONS=100000 cargo test -p session-ctl --test transfer`).
fn sessions() -> usize {
    std::env::var("SESSIONCTL_TEST_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000)
}

async fn migrate_all(from: TestStore, to: TestStore, n: usize) {
    let written = populate(&from.store, n).await;
    // a dry run writes nothing
    let dry = json(&[
        "migrate",
        "--from",
        &from.spec,
        "--to",
        &to.spec,
        "--dry-run",
    ]);
    assert_eq!(dry["read"], n, "{dry}");
    assert_eq!(dry["written"], n, "{dry}");
    assert_eq!(inspect::count(to.store.as_ref()).await.unwrap(), 0);

    let started = Instant::now();
    let report = json(&["-y", "migrate", "--from", &from.spec, "--to", &to.spec]);
    eprintln!("migrated {n} sessions in {:?}", started.elapsed());
    assert_eq!(report["read"], n, "{report}");
    assert_eq!(report["written"], n, "{report}");
    let logged_in = written.sessions.values().filter(|o| o.is_some()).count();
    assert_eq!(report["owners_bound"], logged_in, "{report}");
    assert_eq!(report["check"]["source_live"], n, "{report}");
    assert_eq!(report["check"]["in_target"], n, "{report}");
    assert_eq!(report["check"]["target_live"], n, "{report}");
    same_sessions(from.store.as_ref(), to.store.as_ref(), &written).await;
    from.cleanup().await;
    to.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_sqlite_to_redis_keeps_values_deadlines_and_owners() {
    migrate_all(
        TestStore::sqlite().await,
        TestStore::redis("migrate").await,
        sessions(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_redis_to_postgres_keeps_values_deadlines_and_owners() {
    migrate_all(
        TestStore::redis("migrate").await,
        TestStore::postgres("migrate").await,
        sessions(),
    )
    .await;
}

/// Stopped after 1,200 of 3,000 sessions (`--limit`), then run again: complete, no duplicate,
/// nothing lost; a third run with --skip-existing writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_stopped_half_way_and_run_again_ends_complete() {
    let from = TestStore::sqlite().await;
    let to = TestStore::postgres("resume").await;
    let written = populate(&from.store, 3000).await;
    let args = ["-y", "migrate", "--from", &from.spec, "--to", &to.spec];

    let mut limited = args.to_vec();
    limited.extend(["--limit", "1200"]);
    let part = json(&limited);
    assert_eq!(part["read"], 1200, "{part}");
    assert_eq!(part["whole_source"], false, "{part}");
    assert!(part["check"].is_null(), "no check after a partial run");
    assert_eq!(inspect::count(to.store.as_ref()).await.unwrap(), 1200);

    let mut skip = args.to_vec();
    skip.push("--skip-existing");
    let rest = json(&skip);
    assert_eq!(rest["already_there"], 1200, "{rest}");
    assert_eq!(rest["written"], 1800, "{rest}");
    assert_eq!(rest["check"]["in_target"], 3000, "{rest}");
    assert_eq!(rest["check"]["target_live"], 3000, "{rest}");

    // overwriting again: the same 3,000, each once
    let again = json(&args);
    assert_eq!(again["written"], 3000, "{again}");
    assert_eq!(again["check"]["target_live"], 3000, "{again}");
    let skip_all = json(&skip);
    assert_eq!(skip_all["written"], 0, "{skip_all}");
    same_sessions(from.store.as_ref(), to.store.as_ref(), &written).await;

    // a user logged out in the source since: the next run unbinds the session in the target
    let mut written = written;
    let (id, owner) = written
        .sessions
        .iter_mut()
        .find(|(_, o)| o.is_some())
        .unwrap();
    let sid = SessionId::parse(id).unwrap();
    let manager = common::manager(from.store.clone());
    assert_eq!(manager.logout_session(&sid).await.unwrap(), owner.clone());
    *owner = None;
    json(&args);
    assert_eq!(to.store.index_owner(&sid).await.unwrap(), None);
    same_sessions(from.store.as_ref(), to.store.as_ref(), &written).await;
    from.cleanup().await;
    to.cleanup().await;
}

/// The process killed in the middle of a migration, then run again: complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_killed_half_way_and_run_again_ends_complete() {
    let from = TestStore::sqlite().await;
    let to = TestStore::redis("killed").await;
    let written = populate(&from.store, 3000).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionctl"))
        .args(["-y", "migrate", "--from", &from.spec, "--to", &to.spec])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // kill it once it has written something, before it is done
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut killed_at = None;
    while Instant::now() < deadline {
        let n = inspect::count(to.store.as_ref()).await.unwrap();
        if n > 0 {
            child.kill().unwrap();
            killed_at = Some(n);
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = child.wait();
    let partial = inspect::count(to.store.as_ref()).await.unwrap();
    eprintln!("killed after {killed_at:?} sessions; the target held {partial}");
    assert!(
        killed_at.is_some(),
        "the migration never wrote, or ended before it was killed"
    );

    let report = json(&["-y", "migrate", "--from", &from.spec, "--to", &to.spec]);
    assert_eq!(report["check"]["in_target"], 3000, "{report}");
    assert_eq!(report["check"]["target_live"], 3000, "{report}");
    same_sessions(from.store.as_ref(), to.store.as_ref(), &written).await;
    from.cleanup().await;
    to.cleanup().await;
}

/// `export` to a file, `import` into another store: the same sessions, deadlines and owners;
/// an import run twice changes nothing; a bad line stops with its number.
async fn export_then_import(from: TestStore, to: TestStore) {
    let written = populate(&from.store, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessions.jsonl");
    let file_s = file.to_str().unwrap();
    let out = json(&["--store", &from.spec, "export", "-o", file_s, "--decoded"]);
    assert_eq!(out["exported"], 200);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 200);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let id = first["id"].as_str().unwrap();
    assert_eq!(
        first["owner"].as_str().map(str::to_owned),
        written.sessions[id]
    );
    assert!(first["deadline_ms"].as_u64().is_some() && first["deadline"].is_string());
    assert_eq!(
        first["decoded"]["cart"],
        serde_json::json!(["apple", "pear"])
    );

    // to standard output as well
    let stdout = expect(0, &["--store", &from.spec, "export"]);
    assert_eq!(stdout.lines().count(), 200);

    let (code, _, err) = run(&["--store", &to.spec, "import", "-i", file_s]);
    assert_eq!(code, 2, "import without --yes off a terminal: {err}");
    let dry = json(&["--store", &to.spec, "import", "-i", file_s, "--dry-run"]);
    assert_eq!(dry["sessions"]["written"], 200, "{dry}");
    assert_eq!(inspect::count(to.store.as_ref()).await.unwrap(), 0);
    let done = json(&["-y", "--store", &to.spec, "import", "-i", file_s]);
    assert_eq!(done["sessions"]["written"], 200, "{done}");
    same_sessions(from.store.as_ref(), to.store.as_ref(), &written).await;
    let again = json(&[
        "-y",
        "--store",
        &to.spec,
        "import",
        "-i",
        file_s,
        "--skip-existing",
    ]);
    assert_eq!(again["sessions"]["already_there"], 200, "{again}");
    assert_eq!(inspect::count(to.store.as_ref()).await.unwrap(), 200);

    // a bad line: its number, and what to do
    std::fs::write(
        &file,
        format!("{}\n{{\"id\": 1}}\n", text.lines().next().unwrap()),
    )
    .unwrap();
    let (code, _, err) = run(&["-y", "--store", &to.spec, "import", "-i", file_s]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("line 2") && err.contains("what to do"),
        "{err}"
    );
    from.cleanup().await;
    to.cleanup().await;
}

#[tokio::test]
async fn export_from_sqlite_import_into_redis() {
    export_then_import(TestStore::sqlite().await, TestStore::redis("import").await).await;
}

#[tokio::test]
async fn export_from_redis_import_into_sqlite() {
    export_then_import(TestStore::redis("export").await, TestStore::sqlite().await).await;
}

/// The embedded stores other than SQLite: migrate into a new file store, then into a new sled
/// store, and read them with `count` and `get`.
#[tokio::test]
async fn migrate_into_new_file_and_sled_stores() {
    let from = TestStore::sqlite().await;
    let written = populate(&from.store, 50).await;
    let dir = tempfile::tempdir().unwrap();
    let file_spec = format!("file:{}", dir.path().join("files").display());
    let sled_spec = format!("sled:{}", dir.path().join("sled").display());
    let (code, _, err) = run(&["--store", &file_spec, "count"]);
    assert_eq!(code, 3, "no such store yet: {err}");

    let report = json(&["-y", "migrate", "--from", &from.spec, "--to", &file_spec]);
    assert_eq!(report["check"]["target_live"], 50, "{report}");
    let report = json(&["-y", "migrate", "--from", &file_spec, "--to", &sled_spec]);
    assert_eq!(report["check"]["target_live"], 50, "{report}");
    assert_eq!(expect(0, &["--store", &sled_spec, "count"]).trim(), "50");
    let (id, owner) = written.sessions.iter().find(|(_, o)| o.is_some()).unwrap();
    let got = json(&["--store", &sled_spec, "get", id]);
    assert_eq!(got["meta"]["owner"].as_str(), owner.as_deref());
    let user = json(&["--store", &sled_spec, "user", owner.as_deref().unwrap()]);
    assert!(
        user["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str()),
        "{user}"
    );
    from.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_redis_to_mysql_keeps_values_deadlines_and_owners() {
    migrate_all(
        TestStore::redis("mysql").await,
        TestStore::mysql("migrate").await,
        500,
    )
    .await;
}
