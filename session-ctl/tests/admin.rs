//! The writing commands on one store (`destroy`, `logout-user`, `purge`) against real stores,
//! and their confirmation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestStore, deadline, expect, json, populate, run};
use session_core::{SessionId, Value};

async fn writing_commands(ts: TestStore) {
    let spec = ts.spec.as_str();
    let store = ts.store.as_ref();
    let written = populate(&ts.store, 30).await;

    // without a terminal and without --yes: refused, nothing changed
    let victim = written.of("user0")[0].clone();
    let (code, _, err) = run(&["--store", spec, "destroy", &victim]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert!(deadline(store, &victim).await.is_some());
    let (code, _, err) = run(&["--store", spec, "logout-user", "user0"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["--store", spec, "purge"]);
    assert_eq!(code, 2, "{err}");

    // destroy ID
    let out = json(&["--store", spec, "--yes", "destroy", &victim]);
    assert_eq!(out["destroyed"], victim.as_str());
    assert!(deadline(store, &victim).await.is_none());
    let (code, _, err) = run(&["--store", spec, "-y", "destroy", &victim]);
    assert_eq!(code, 3, "a destroyed session is not found: {err}");
    assert_eq!(expect(0, &["--store", spec, "count"]).trim(), "29");

    // logout-user NAME: every session of the user, and no one else's
    let user3 = written.of("user3");
    assert!(!user3.is_empty());
    let out = json(&["--store", spec, "-y", "logout-user", "user3"]);
    assert_eq!(out["destroyed"], user3.len());
    for id in &user3 {
        assert!(deadline(store, id).await.is_none(), "{id}");
    }
    assert!(
        store.index_sessions("user3").await.unwrap().is_empty(),
        "the owner index forgot them"
    );
    let left = 29 - user3.len();
    assert_eq!(
        expect(0, &["--store", spec, "count"]).trim(),
        left.to_string()
    );
    for id in written.of("user1") {
        assert!(deadline(store, &id).await.is_some(), "{id}");
    }
    let out = json(&["--store", spec, "-y", "logout-user", "user3"]);
    assert_eq!(out["destroyed"], 0);

    // purge: five sessions that expire in 300 ms
    for _ in 0..5 {
        let id = SessionId::generate().unwrap();
        store
            .set(
                &id,
                "k",
                Value::encode("v").unwrap(),
                Duration::from_millis(300),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let out = json(&["--store", spec, "-y", "purge"]);
    if store.capabilities().native_expiry {
        assert_eq!(out["native_expiry"], true, "{out}");
    } else {
        assert_eq!(out["purged"], 5, "{out}");
    }
    let out = json(&["--store", spec, "-y", "purge"]);
    assert_eq!(out["purged"], 0, "{out}");
    assert_eq!(
        expect(0, &["--store", spec, "count"]).trim(),
        left.to_string(),
        "purge deleted no live session"
    );
    ts.cleanup().await;
}

#[tokio::test]
async fn writing_commands_on_sqlite() {
    writing_commands(TestStore::sqlite().await).await;
}

#[tokio::test]
async fn writing_commands_on_redis() {
    writing_commands(TestStore::redis("write").await).await;
}

#[tokio::test]
async fn writing_commands_on_postgres() {
    writing_commands(TestStore::postgres("write").await).await;
}
