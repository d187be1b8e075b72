//! The reading commands (`count`, `stats`, `list`, `get`, `user`) against real stores, through
//! the binary and the library; none of them changes a session's expiry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::{TestStore, deadline, expect, json, populate, run};
use session_core::{SessionId, Value};
use session_ctl::inspect::{self, ListOptions};

/// Every reading command on `ts`, with 40 sessions written by the session layer.
async fn reading_commands(ts: TestStore) {
    let spec = ts.spec.as_str();
    let store = ts.store.as_ref();
    let written = populate(&ts.store, 40).await;
    let ids: BTreeSet<String> = written.sessions.keys().cloned().collect();
    let before: Vec<_> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(deadline(store, id).await.expect("live"));
        }
        v
    };

    // count
    assert_eq!(expect(0, &["--store", spec, "count"]).trim(), "40");
    assert_eq!(json(&["--store", spec, "count"])["live"], 40);
    assert_eq!(inspect::count(store).await.unwrap(), 40);

    // list: every page through the cursors, each id once
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = vec!["--store", spec, "list", "--limit", "7"];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = json(&args);
        for row in page["sessions"].as_array().unwrap() {
            let id = row["id"].as_str().unwrap().to_owned();
            assert_eq!(
                row["owner"].as_str().map(str::to_owned),
                written.sessions[&id],
                "{id}"
            );
            assert!(row["created_ms"].as_u64().is_some(), "{row}");
            assert!(row["last_seen_ms"].as_u64().is_some(), "{row}");
            assert!(row["deadline_ms"].as_u64().is_some(), "{row}");
            // Separate `list` runs dedup nothing between them: a session shows on one page only
            // (on Redis too: its live index moves a session only when its deadline does)
            let first = seen.insert(id);
            assert!(first, "listed twice: {row}");
        }
        pages += 1;
        assert!(pages < 100, "list does not end");
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let all = expect(0, &["--store", spec, "list", "--all"]);
    assert!(all.starts_with("ID"), "{all}");
    assert!(all.contains("40 sessions (end of the list)"), "{all}");

    // list --owner and user NAME: the owner index
    let user0 = written.of("user0");
    assert!(!user0.is_empty());
    let page = json(&["--store", spec, "list", "--owner", "user0"]);
    let listed: BTreeSet<&str> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, user0.iter().map(String::as_str).collect());
    let user = json(&["--store", spec, "user", "user0"]);
    assert_eq!(user["sessions"].as_array().unwrap().len(), user0.len());
    let paged = inspect::list(
        store,
        &ListOptions {
            limit: Some(1),
            owner: Some("user0".into()),
            ..ListOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(paged.sessions.len(), 1);
    assert_eq!(paged.next.is_some(), user0.len() > 1);
    let nobody = json(&["--store", spec, "user", "nobody"]);
    assert_eq!(nobody["sessions"].as_array().unwrap().len(), 0);

    // get: values decoded, metadata, deadline; --raw
    let id = written.of("user3")[0].clone();
    let got = json(&["--store", spec, "get", &id]);
    let n = got["values"]["n"].as_u64().unwrap() as usize;
    assert_eq!(got["values"]["name"], format!("session {n} é"));
    assert_eq!(got["values"]["cart"], serde_json::json!(["apple", "pear"]));
    assert_eq!(got["values"]["ratio"], serde_json::json!(n as f64 / 4.0));
    assert_eq!(got["meta"]["owner"], "user3");
    assert!(got["meta"]["logged_in"].is_string(), "{got}");
    assert!(
        got["values"].get("__s.user").is_none(),
        "reserved keys are metadata"
    );
    let loaded = store
        .load(&SessionId::parse(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let deadline_ms = got["deadline_ms"].as_u64().unwrap();
    assert_eq!(
        deadline_ms,
        session_ctl::time::unix_ms(loaded.expires_at.unwrap())
    );
    let raw = json(&["--store", spec, "get", &id, "--raw"]);
    for (k, v) in loaded.data.iter() {
        assert_eq!(
            raw["raw"][k].as_str().unwrap(),
            session_ctl::record::hex(v.as_bytes()),
            "{k}"
        );
    }
    let b64 = json(&["--store", spec, "get", &id, "--raw", "base64"]);
    assert_eq!(
        b64["raw"]["cart"].as_str().unwrap(),
        session_ctl::record::base64(Value::encode(&["apple", "pear"]).unwrap().as_bytes())
    );
    let text = expect(0, &["--store", spec, "get", &id]);
    assert!(
        text.contains("owner       user3") && text.contains("cart = [\"apple\",\"pear\"]"),
        "{text}"
    );
    let missing = SessionId::generate().unwrap();
    let (code, _, err) = run(&["--store", spec, "get", missing.as_str()]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("no live session") && err.contains("what to do"),
        "{err}"
    );
    let (code, _, err) = run(&["--store", spec, "get", "../etc/passwd"]);
    assert_eq!(code, 2, "{err}");

    // stats
    let stats = json(&["--store", spec, "stats"]);
    assert_eq!(stats["live"], 40);
    let logged_in = written.sessions.values().filter(|o| o.is_some()).count();
    assert_eq!(stats["logged_in_sessions"], logged_in);
    let users: BTreeSet<_> = written.sessions.values().flatten().collect();
    assert_eq!(stats["users"], users.len());
    let buckets = stats["expiry"].as_array().unwrap();
    let in_buckets: u64 = buckets.iter().map(|b| b[1].as_u64().unwrap()).sum();
    assert_eq!(in_buckets, 40);
    // idle TTL of an hour: "10m - 1h"; the own TTLs of 2 h: "1h - 1d"
    assert_eq!(buckets[2][1], 32, "{stats}");
    assert_eq!(buckets[3][1], 8, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 40 * 50, "{stats}");
    let text = expect(0, &["--store", spec, "stats"]);
    assert!(text.contains("live sessions      40"), "{text}");

    // nothing read changed a deadline
    for (id, was) in ids.iter().zip(before) {
        assert_eq!(deadline(store, id).await, Some(was), "{id}");
    }
    ts.cleanup().await;
}

#[tokio::test]
async fn reading_commands_on_sqlite() {
    reading_commands(TestStore::sqlite().await).await;
}

#[tokio::test]
async fn reading_commands_on_redis() {
    reading_commands(TestStore::redis("read").await).await;
}

#[tokio::test]
async fn reading_commands_on_postgres() {
    reading_commands(TestStore::postgres("read").await).await;
}

/// `count` counts the sessions once each, with unrelated keys of another application beside them.
#[tokio::test]
async fn count_on_redis_ignores_unrelated_keys() {
    let ts = TestStore::redis("unrelated").await;
    populate(&ts.store, 25).await;
    let other = common::unique("other");
    let client = redis_client();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for i in 0..2000 {
        let _: () = redis::cmd("SET")
            .arg(format!("{other}:{i}"))
            .arg("x")
            .arg("EX")
            .arg(300)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(
        expect(0, &["--store", &ts.spec, "count"]).trim(),
        "25",
        "unrelated keys are not sessions"
    );
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{other}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    ts.cleanup().await;
}

fn redis_client() -> redis::Client {
    redis::Client::open(common::redis_url()).unwrap()
}
