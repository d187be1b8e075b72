//! The suite itself: a correct store passes every case, through `run_all`.

mod support;

use std::time::Instant;

use session_conformance::{CASES, run_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_store_passes_every_case() {
    support::quiet::quiet_case_panics();
    let started = Instant::now();
    let report = run_all(support::reference).await;
    let took = started.elapsed();
    assert_eq!(report.len(), CASES.len(), "run_all skipped cases");
    let failed = support::failures(&report);
    assert!(
        failed.is_empty(),
        "the reference store failed {} cases:\n{}",
        failed.len(),
        failed.join("\n")
    );
    eprintln!(
        "{} cases passed on the reference store in {took:?}",
        report.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_without_capabilities_passes_every_case() {
    support::quiet::quiet_case_panics();
    let report = run_all(support::minimal).await;
    let failed: Vec<String> = report
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "the store that declares no capability (trait fallbacks, Unsupported) failed {} cases:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
