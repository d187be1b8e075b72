//! What survives a crash: a child process writes with `Flush::EveryWrite` and aborts (no
//! destructors, so no flush on drop); the parent reopens the directory and finds every write that
//! returned `Ok`.

use std::process::Command;
use std::time::Duration;

use session_core::{SessionId, Storage, Value};
use session_sled::{Flush, SledStore};

const CHILD_DIR: &str = "SESSION_SLED_CRASH_CHILD_DIR";
const SESSIONS: usize = 20;

fn fixed_id(i: usize) -> SessionId {
    SessionId::parse(&format!("crash-test-session-{i:04}")).expect("valid id")
}

#[tokio::test]
async fn every_write_survives_an_abort() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        // Child: write, report, and die without running any destructor.
        let store = SledStore::builder()
            .flush(Flush::EveryWrite)
            .open(&dir)
            .await
            .expect("child open");
        for i in 0..SESSIONS {
            let value = Value::encode(&i).expect("encode");
            store
                .set(&fixed_id(i), "n", value, Duration::from_secs(3600))
                .await
                .expect("child set");
        }
        store
            .index_add("owner", &fixed_id(0), Duration::from_secs(3600))
            .await
            .expect("child bind");
        println!("CHILD-WROTE-ALL");
        std::process::abort();
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "every_write_survives_an_abort", "--nocapture"])
        .env(CHILD_DIR, dir.path())
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("CHILD-WROTE-ALL"),
        "child did not finish its writes: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "child was meant to abort");

    let store = SledStore::open(dir.path())
        .await
        .expect("reopen after crash");
    for i in 0..SESSIONS {
        let got = store.get(&fixed_id(i), "n").await.expect("get");
        assert_eq!(
            got.map(|v| v.decode::<usize>().expect("decode")),
            Some(i),
            "session {i} lost in the crash"
        );
    }
    assert_eq!(
        store.index_sessions("owner").await.expect("index"),
        vec![fixed_id(0)]
    );
}
