//! The suite can fail: deliberately broken drivers fail exactly the cases about what they break.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use session_conformance::{Fixture, run_all};
use session_core::driver::{
    Capabilities, ChangeSet, Driver, Expiry, Loaded, LockToken, Result, ScanPage, SessionId, Ttl,
    async_trait,
};
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

async fn ignores_ttl() -> Fixture {
    support::beside_a_neighbour(Arc::new(Reference::with_quirks(Quirks {
        ignore_ttl: true,
        ..Quirks::default()
    })))
}

async fn set_map_replaces() -> Fixture {
    support::beside_a_neighbour(Arc::new(Reference::with_quirks(Quirks {
        set_map_replaces: true,
        ..Quirks::default()
    })))
}

/// The reference store with the scan of a key-value server whose keyspace it shares with its
/// neighbour, as `SCAN <cursor> MATCH <prefix>* COUNT <limit>` does it: each page examines
/// `limit` keys of the whole keyspace (the store's sessions and the neighbour's, in one order)
/// and returns the store's among them.
struct ScanWalksBackend {
    store: Reference,
    neighbour: Arc<Reference>,
}

/// Every live id of `store`, in order.
async fn all_ids(store: &Reference) -> Result<Vec<SessionId>> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.scan(cursor.as_deref(), 10_000).await?;
        ids.extend(page.ids);
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(ids),
        }
    }
}

#[async_trait]
impl Driver for ScanWalksBackend {
    fn name(&self) -> &'static str {
        "reference"
    }
    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        self.store.load(id).await
    }
    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        self.store.apply(id, changes, expiry).await
    }
    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.store.remove_all(id).await
    }
    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Ttl) -> Result<()> {
        self.store.index_add(owner, id, ttl).await
    }
    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        self.store.index_remove(id).await
    }
    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        self.store.index_sessions(owner).await
    }
    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        self.store.index_owner(id).await
    }
    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        self.store.try_lock(id, lease).await
    }
    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        self.store.unlock(id, token).await
    }
    async fn purge_expired(&self) -> Result<u64> {
        self.store.purge_expired().await
    }
    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let own: BTreeSet<SessionId> = all_ids(&self.store).await?.into_iter().collect();
        let mut keyspace: Vec<SessionId> = all_ids(&self.neighbour).await?;
        keyspace.extend(own.iter().cloned());
        keyspace.sort();
        let start: usize = cursor
            .map_or(Ok(0), str::parse)
            .map_err(|_| session_core::Error::InvalidInput("not a cursor of this store".into()))?;
        let end = (start + limit.max(1)).min(keyspace.len());
        Ok(ScanPage {
            ids: keyspace[start..end]
                .iter()
                .filter(|id| own.contains(*id))
                .cloned()
                .collect(),
            next: (end < keyspace.len()).then(|| end.to_string()),
        })
    }
}

async fn scan_walks_backend() -> Fixture {
    let neighbour = Arc::new(Reference::new());
    let store = ScanWalksBackend {
        store: Reference::new(),
        neighbour: Arc::clone(&neighbour),
    };
    Fixture::new(Arc::new(store)).neighbour(neighbour)
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

/// A scan that walks the whole backend (the neighbour's sessions too), a few keys per page, as
/// `SCAN MATCH ... COUNT n` on a shared Redis does, fails both scan cases with a message that
/// says listing must follow the store's own sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_that_walks_the_whole_backend_fails_the_scan_cases() {
    support::quiet::quiet_case_panics();
    let report = run_all(scan_walks_backend).await;
    assert_failures(
        &report,
        &[
            "scan_capability_is_honest",
            "scan_pages_through_live_sessions",
        ],
        &[],
        "scans the whole backend",
    );
    let message = report
        .iter()
        .find(|(name, _)| *name == "scan_pages_through_live_sessions")
        .and_then(|(_, r)| r.as_ref().err())
        .expect("scan_pages_through_live_sessions failed");
    assert!(
        message.contains("in proportion to the store's own sessions"),
        "unhelpful failure message: {message}"
    );
}

/// A fixture without a neighbour fails the scan cases (of a store that declares `scan`) with a
/// message that says how to give it one, and no other case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixture_without_a_neighbour_fails_the_scan_cases() {
    support::quiet::quiet_case_panics();
    let report =
        run_all(|| async { Arc::new(Reference::new()) as Arc<dyn session_core::Storage> }).await;
    assert_failures(
        &report,
        &[
            "scan_capability_is_honest",
            "scan_pages_through_live_sessions",
        ],
        &[],
        "has no neighbour",
    );
    let message = report
        .iter()
        .find(|(name, _)| *name == "scan_capability_is_honest")
        .and_then(|(_, r)| r.as_ref().err())
        .expect("scan_capability_is_honest failed");
    assert!(
        message.contains("Fixture::new(store).neighbour(other)"),
        "unhelpful failure message: {message}"
    );
}
