//! The suite can fail: deliberately broken drivers fail exactly the cases about what they break.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use session_conformance::run_all;
use session_core::Storage;
use support::{Quirks, Reference};

/// The names of the cases that failed.
fn failed_names(report: &[(&'static str, Result<(), String>)]) -> BTreeSet<&'static str> {
    report
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| *name)
        .collect()
}

/// Asserts that every case in `must_fail` failed and that every failure is in `may_fail`
/// (cases that touch the broken behaviour indirectly).
fn assert_failures(
    report: &[(&'static str, Result<(), String>)],
    must_fail: &[&str],
    may_fail: &[&str],
    broken: &str,
) {
    let failed = failed_names(report);
    let not_caught: Vec<_> = must_fail.iter().filter(|c| !failed.contains(*c)).collect();
    assert!(
        not_caught.is_empty(),
        "a store that {broken} passed cases that must catch it: {not_caught:?}"
    );
    let unexpected: Vec<String> = report
        .iter()
        .filter(|(name, r)| r.is_err() && !must_fail.contains(name) && !may_fail.contains(name))
        .map(|(name, r)| format!("{name}: {}", r.as_ref().err().map_or("", String::as_str)))
        .collect();
    assert!(
        unexpected.is_empty(),
        "a store that {broken} failed cases unrelated to what is broken:\n{}",
        unexpected.join("\n")
    );
}

async fn ignores_ttl() -> Arc<dyn Storage> {
    Arc::new(Reference::with_quirks(Quirks {
        ignore_ttl: true,
        ..Quirks::default()
    }))
}

async fn set_map_replaces() -> Arc<dyn Storage> {
    Arc::new(Reference::with_quirks(Quirks {
        set_map_replaces: true,
        ..Quirks::default()
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_ignores_ttls_fails_the_expiry_cases() {
    support::quiet::quiet_case_panics();
    let report = run_all(ignores_ttl).await;
    assert_failures(
        &report,
        &[
            "ttl_300ms_expires_on_time",
            "expired_session_reads_as_empty",
            "get_session_never_returns_cached_data_for_dead_session",
            "set_on_expired_session_starts_empty",
            "set_map_on_expired_session_starts_empty",
            "update_ttl_can_shorten_expiry",
            "update_ttl_does_not_revive_expired",
            "reads_do_not_slide_expiry",
            "remove_does_not_slide_expiry",
            "sub_ms_ttl_rounds_up",
            "apply_only_if_exists_on_expired_writes_nothing",
            "apply_on_expired_session_starts_empty",
            "load_returns_data_and_deadline",
            "load_deadline_follows_writes",
            "index_prunes_expired_sessions",
            "purge_removes_expired_keeps_live",
            "scan_pages_through_live_sessions",
        ],
        &[],
        "ignores TTLs",
    );
    // The failure message names what the driver did wrong.
    let message = report
        .iter()
        .find(|(name, _)| *name == "ttl_300ms_expires_on_time")
        .and_then(|(_, r)| r.as_ref().err())
        .expect("ttl_300ms_expires_on_time failed");
    assert!(
        message.contains("300 ms TTL") && message.contains("[reference]"),
        "unhelpful failure message: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_set_map_replaces_fails_the_merge_cases() {
    support::quiet::quiet_case_panics();
    let report = run_all(set_map_replaces).await;
    assert_failures(
        &report,
        &["set_map_merges_keys", "unicode_and_empty_keys_round_trip"],
        // These write with `set` first and then `set_map`, so replacing loses keys there too.
        &["set_map_slides_expiry"],
        "replaces the session in set_map",
    );
    let message = report
        .iter()
        .find(|(name, _)| *name == "set_map_merges_keys")
        .and_then(|(_, r)| r.as_ref().err())
        .expect("set_map_merges_keys failed");
    assert!(
        message.contains("must merge"),
        "unhelpful failure message: {message}"
    );
}
