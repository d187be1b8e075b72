//! The command line itself: usage errors, refused stores, unsupported commands, exit codes,
//! every error saying what to do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestStore, expect, json, run};

#[test]
fn usage_errors_exit_2_and_say_what_to_do() {
    for args in [
        vec!["count"],                                         // no store
        vec!["--store", "memory", "count"],                    // refused
        vec!["--store", "nosuch:x", "count"],                  // unknown spec
        vec!["--store", "redis://127.0.0.1?prefix=", "count"], // empty option
        vec!["--store", "sqlite:x.db", "frobnicate"],          // unknown command
        vec!["migrate", "--from", "sqlite:a", "--to", "sqlite:a"],
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        if args.get(2) != Some(&"frobnicate") {
            assert!(err.contains("what to do:"), "{args:?}: {err}");
        }
    }
    assert!(expect(0, &["--help"]).contains("Exit codes:"));
}

#[test]
fn a_missing_store_path_is_not_found_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.sqlite3");
    let spec = format!("sqlite:{}", path.display());
    let (code, _, err) = run(&["--store", &spec, "count"]);
    assert_eq!(code, 3, "{err}");
    assert!(!path.exists(), "reading created a database");
}

#[tokio::test]
async fn errors_are_json_with_json() {
    let ts = TestStore::sqlite().await;
    let (code, _, err) = run(&[
        "--json",
        "--store",
        &ts.spec,
        "get",
        "nosuchsessionid0000000000",
    ]);
    assert_eq!(code, 3);
    let e: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(e["error"]["code"], 3);
    assert!(e["error"]["hint"].as_str().unwrap().len() > 10, "{e}");
    assert_eq!(json(&["--store", &ts.spec, "count"])["live"], 0);
    ts.cleanup().await;
}

/// memcached cannot list its keys: the listing commands exit 4 and say so; `get` and `purge`
/// work.
#[tokio::test]
async fn listing_memcached_is_unsupported_by_this_driver() {
    let spec = common::memcached_spec().await;
    for cmd in ["count", "stats", "list", "export"] {
        let (code, _, err) = run(&["--store", &spec, cmd]);
        assert_eq!(code, 4, "{cmd}: {err}");
        assert!(
            err.contains("unsupported by this driver (memcached)") && err.contains("what to do"),
            "{cmd}: {err}"
        );
    }
    let (code, _, err) = run(&["--store", &spec, "user", "ada"]);
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = run(&["--store", &spec, "get", "nosuchsessionid0000000000"]);
    assert_eq!(code, 3, "{err}");
    let dir = tempfile::tempdir().unwrap();
    let target = TestStore::new_sqlite_path(&dir);
    let (code, _, err) = run(&["-y", "migrate", "--from", &spec, "--to", &target]);
    assert_eq!(code, 4, "{err}");
}

/// Session ids may start with `-` (URL-safe base64): `get`, `destroy` and `list --cursor` take
/// them as values, not as options.
#[tokio::test]
async fn ids_starting_with_a_hyphen_are_ids() {
    use session_core::{SessionId, Value};
    let ts = TestStore::sqlite().await;
    let ids = [
        "-W_7l_YqRk4jX2WW8ksmF4yb_gJqFATX",
        "-a000000000000000000000000000000",
    ];
    for id in ids {
        let id = SessionId::parse(id).unwrap();
        ts.store
            .set(
                &id,
                "k",
                Value::encode("v").unwrap(),
                std::time::Duration::from_secs(600),
            )
            .await
            .unwrap();
    }
    let got = json(&["--store", &ts.spec, "get", ids[0]]);
    assert_eq!(got["values"]["k"], "v");
    let page = json(&["--store", &ts.spec, "list", "--limit", "1"]);
    let next = page["next"].as_str().unwrap().to_owned();
    assert!(next.starts_with('-'), "{page}");
    let rest = json(&["--store", &ts.spec, "list", "--cursor", &next]);
    assert_eq!(rest["sessions"].as_array().unwrap().len(), 1, "{rest}");
    let text = expect(0, &["--store", &ts.spec, "list", "--limit", "1"]);
    assert!(text.contains(&format!("--cursor={next}")), "{text}");
    expect(0, &["--store", &ts.spec, "-y", "destroy", ids[1]]);
    assert_eq!(json(&["--store", &ts.spec, "count"])["live"], 1);
    ts.cleanup().await;
}
