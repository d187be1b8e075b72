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

/// Cases the trait's provided fallbacks cannot pass yet. `Storage::apply`'s fallback removes
/// keys (and clears) before `set_map` checks the keys to set, so a change set with a bad key is
/// partly applied. Reported to session-core; listed here so the rest of the suite still checks
/// the fallbacks, and so the list shrinks to nothing once core is fixed.
const KNOWN_FALLBACK_GAPS: &[&str] = &["apply_with_bad_key_writes_nothing"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_without_capabilities_passes_every_case() {
    support::quiet::quiet_case_panics();
    let report = run_all(support::minimal).await;
    let failed: Vec<String> = report
        .iter()
        .filter(|(name, _)| !KNOWN_FALLBACK_GAPS.contains(name))
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "the store that declares no capability (trait fallbacks, Unsupported) failed {} cases:\n{}",
        failed.len(),
        failed.join("\n")
    );
    for (name, r) in &report {
        if let (true, Err(e)) = (KNOWN_FALLBACK_GAPS.contains(name), r) {
            eprintln!("known gap of the provided fallbacks: {name}: {e}");
        }
    }
}
