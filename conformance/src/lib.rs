#![doc = include_str!("../README.md")]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use session_core::Storage;

pub mod cases;
mod core_only;
mod fixture;
mod support;

pub use core_only::CoreOnly;
pub use fixture::Fixture;

/// A boxed, sendable future returned by a type-erased case.
pub type CaseFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One case of the suite, type-erased so that a list of every case can exist.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name: the name of its function in [`cases`] and of the test [`suite!`] generates.
    pub name: &'static str,
    /// Runs the case against a store; panics when the driver breaks the contract.
    pub run: fn(Arc<dyn Storage>) -> CaseFuture,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

/// How long one case may run before it counts as failed (a driver that hangs must not hang the
/// suite). The whole suite takes a few seconds on a correct driver.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// The one list of case names. Every other list (the tests [`suite!`] generates, [`CASES`]) is made
/// from this one by handing it to `$callback`, so a case cannot exist without being run.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($callback:ident { $($state:tt)* }) => {
        $crate::$callback! {
            { $($state)* }
            // basic methods
            missing_session_reads_as_empty,
            new_creates_nothing,
            set_then_get_round_trips,
            set_overwrites_a_key,
            set_keeps_other_keys,
            get_map_returns_every_key,
            get_size_counts_keys,
            set_map_merges_keys,
            set_map_creates_session,
            set_map_empty_creates_nothing,
            set_session_replaces_every_key,
            set_session_creates_session,
            set_session_empty_removes_session,
            get_session_returns_whole_session,
            remove_deletes_one_key,
            remove_absent_key_or_session_is_ok,
            remove_last_key_removes_session,
            remove_all_deletes_session,
            remove_all_absent_session_is_ok,
            sessions_are_isolated,
            ids_are_case_sensitive,
            boundary_ids_round_trip,
            // expiry
            ttl_300ms_expires_on_time,
            expired_session_reads_as_empty,
            get_session_never_returns_cached_data_for_dead_session,
            set_on_expired_session_starts_empty,
            set_map_on_expired_session_starts_empty,
            set_session_on_expired_session_starts_empty,
            set_slides_expiry,
            set_map_slides_expiry,
            set_map_empty_slides_expiry,
            set_session_slides_expiry,
            update_ttl_slides_expiry,
            update_ttl_can_shorten_expiry,
            update_ttl_missing_creates_nothing,
            update_ttl_does_not_revive_expired,
            reads_do_not_slide_expiry,
            remove_does_not_slide_expiry,
            sub_ms_ttl_rounds_up,
            zero_ttl_is_invalid_input,
            ttl_over_max_is_invalid_input,
            // keys and values
            large_value_round_trips,
            thousand_keys_in_one_session,
            unicode_and_empty_keys_round_trip,
            nul_key_is_invalid_input,
            oversized_key_is_invalid_input,
            hostile_ids_never_reach_the_store,
            // apply and load
            apply_sets_and_removes,
            apply_on_missing_session_creates_it,
            apply_clear_drops_old_keys,
            apply_removes_before_setting,
            apply_only_if_exists_on_missing_writes_nothing,
            apply_only_if_exists_on_expired_writes_nothing,
            apply_only_if_exists_on_live_session_applies,
            apply_result_without_keys_removes_session,
            apply_empty_changeset_slides_expiry,
            apply_empty_changeset_on_missing_creates_nothing,
            apply_on_expired_session_starts_empty,
            apply_with_bad_key_writes_nothing,
            load_returns_data_and_deadline,
            load_deadline_follows_writes,
            // concurrency
            concurrent_apply_loses_no_keys,
            concurrent_set_on_distinct_keys_loses_none,
            concurrent_readers_never_see_torn_session,
            concurrent_session_creation_has_no_collisions,
            // owner index
            owner_index_capability_is_honest,
            index_sessions_lists_bound_sessions,
            index_owner_finds_the_owner,
            index_prunes_expired_sessions,
            index_forgets_removed_sessions,
            index_add_moves_session_to_new_owner,
            index_remove_unbinds,
            index_checks_owner,
            // lease lock
            lock_capability_is_honest,
            try_lock_refuses_second_holder,
            unlock_with_wrong_token_keeps_lock,
            unlock_with_right_token_frees_lock,
            lock_lease_runs_out,
            concurrent_try_lock_has_one_winner,
            lock_is_per_session_and_creates_nothing,
            // purge and scan
            purge_capability_is_honest,
            purge_removes_expired_keeps_live,
            scan_capability_is_honest,
            scan_pages_through_live_sessions,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __case_list {
    ({} $($case:ident),* $(,)?) => {
        /// Every case of the suite, in the order of the README's list.
        pub static CASES: &[Case] = &[
            $(
                Case {
                    name: stringify!($case),
                    run: |store| Box::pin($crate::cases::$case(store)),
                },
            )*
        ];
    };
}

__with_cases!(__case_list {});

#[doc(hidden)]
#[macro_export]
macro_rules! __suite_tests {
    ({ $ctor:path, $teardown:path } $($case:ident),* $(,)?) => {
        $(
            #[$crate::__private::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "session_conformance::__private::tokio"
            )]
            async fn $case() {
                $crate::__private::run_case(
                    stringify!($case),
                    $ctor,
                    $teardown,
                    $crate::cases::$case,
                )
                .await;
            }
        )*
    };
}

/// Expands to one `#[tokio::test]` per conformance case, named after the case.
///
/// Two forms:
///
/// * `suite!(ctor)`: `ctor` is a path to an `async fn` that returns a fresh, isolated store for
///   one case (cases run in parallel): an `Arc<dyn Storage>`, or a [`Fixture`] that also owns
///   what the store needs alive until the teardown has run (a temp dir, a database);
/// * `suite!(ctor, teardown)`: `teardown` is a path to an `async fn(Arc<dyn Storage>)` that runs
///   after every case, whether it passed or failed (delete Redis keys, drop a database, ...), on
///   the store and on the fixture's [neighbour](Fixture::neighbour) if it has one.
///
/// Each generated test runs on a multi-thread runtime with two workers. It builds a store with
/// `ctor`, runs the case in a spawned task (so a failing case is caught), always runs `teardown`
/// with a clone of the store, then re-raises the case's panic, so the test fails with the case's
/// message. The driver crate needs `session-conformance` (under this name) as a dev-dependency
/// and nothing else: the tokio the tests run on is re-exported from this crate.
///
/// ```
/// use std::sync::Arc;
/// use session_core::Storage;
/// # use session_core::driver::{Capabilities, ChangeSet, Driver, Expiry, Loaded, Result, SessionId, async_trait};
/// # struct MyStore;
/// # #[async_trait]
/// # impl Driver for MyStore {
/// #     fn name(&self) -> &'static str { "mine" }
/// #     fn capabilities(&self) -> Capabilities { Capabilities::default() }
/// #     async fn load(&self, _: &SessionId) -> Result<Option<Loaded>> { Ok(None) }
/// #     async fn apply(&self, _: &SessionId, _: ChangeSet, _: Expiry) -> Result<bool> { Ok(false) }
/// #     async fn remove_all(&self, _: &SessionId) -> Result<()> { Ok(()) }
/// # }
///
/// async fn new_store() -> Arc<dyn Storage> {
///     Arc::new(MyStore) // a fresh, isolated store for one case
/// }
/// async fn teardown(store: Arc<dyn Storage>) {
///     let _ = store; // delete what the case wrote
/// }
/// session_conformance::suite!(new_store, teardown);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! suite {
    ($ctor:path $(,)?) => {
        $crate::__with_cases!(__suite_tests { $ctor, $crate::__private::no_teardown });
    };
    ($ctor:path, $teardown:path $(,)?) => {
        $crate::__with_cases!(__suite_tests { $ctor, $teardown });
    };
}

/// Runs every case against stores built by `ctor` (one fresh store per case, all cases in
/// parallel on the current runtime) and returns each case's name with `Ok(())` or the failure
/// message, in the order of [`CASES`].
///
/// This is what the suite's own tests use to show that a correct driver passes every case and a
/// broken one fails the cases it should. A driver's own test suite should use [`suite!`] instead,
/// which gives one test per case. Must be called from a multi-thread tokio runtime.
pub async fn run_all<F, Fut, S>(ctor: F) -> Vec<(&'static str, Result<(), String>)>
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Into<Fixture>,
{
    let mut running = Vec::with_capacity(CASES.len());
    for case in CASES {
        let fixture: Fixture = ctor().await.into();
        let run = (case.run)(fixture.store());
        running.push((case.name, tokio::spawn(fixture.keep_during(run))));
    }
    let mut results = Vec::with_capacity(running.len());
    for (name, handle) in running {
        let abort = handle.abort_handle();
        let outcome = match tokio::time::timeout(CASE_TIMEOUT, handle).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(join_err)) => Err(support::join_error_message(join_err)),
            Err(_) => {
                abort.abort();
                Err(format!("did not finish within {CASE_TIMEOUT:?}"))
            }
        };
        results.push((name, outcome));
    }
    // A case that failed only because the machine stalled is run again on its own.
    for (name, outcome) in results.iter_mut() {
        let Some(case) = CASES.iter().find(|c| c.name == *name) else {
            continue;
        };
        for _ in 1..STALL_ATTEMPTS {
            match outcome {
                Err(msg) if msg.contains(STALL_MARKER) => {}
                _ => break,
            }
            let fixture: Fixture = ctor().await.into();
            let run = (case.run)(fixture.store());
            let handle = tokio::spawn(fixture.keep_during(run));
            *outcome = match tokio::time::timeout(CASE_TIMEOUT, handle).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(join_err)) => Err(support::join_error_message(join_err)),
                Err(_) => Err(format!("did not finish within {CASE_TIMEOUT:?}")),
            };
        }
    }
    results
}

/// Text that starts the failure message of a timing case when the machine (not the driver) was too
/// slow for the timing check to mean anything: a sleep of 150 ms that woke after 250 ms, say.
/// The generated tests and [`run_all`] run such a case again on a fresh store.
pub const STALL_MARKER: &str = "the machine stalled";

/// How many times in all a case that reports a stall is run before its failure stands.
pub const STALL_ATTEMPTS: u32 = 3;

/// Support for the code [`suite!`] generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    use std::future::Future;
    use std::sync::Arc;

    use session_core::Storage;

    use crate::Fixture;

    pub use tokio;

    /// The teardown of `suite!(ctor)`: nothing to clean up.
    pub async fn no_teardown(store: Arc<dyn Storage>) {
        drop(store);
    }

    /// Builds a store, runs `case` in a spawned task, always runs `teardown`, then re-raises the
    /// case's panic (or fails when the case timed out). A case that reports a machine stall
    /// ([`STALL_MARKER`](crate::STALL_MARKER)) is run again on a fresh store, up to
    /// [`STALL_ATTEMPTS`](crate::STALL_ATTEMPTS) times in all.
    pub async fn run_case<C, CF, S, T, TF, K, KF>(name: &'static str, ctor: C, teardown: T, case: K)
    where
        C: Fn() -> CF,
        CF: Future<Output = S>,
        S: Into<Fixture>,
        T: Fn(Arc<dyn Storage>) -> TF,
        TF: Future<Output = ()>,
        K: Fn(Arc<dyn Storage>) -> KF,
        KF: Future<Output = ()> + Send + 'static,
    {
        for attempt in 1..=crate::STALL_ATTEMPTS {
            let fixture: Fixture = ctor().await.into();
            let handle = tokio::spawn(fixture.scoped(case(fixture.store())));
            let abort = handle.abort_handle();
            let outcome = tokio::time::timeout(crate::CASE_TIMEOUT, handle).await;
            if outcome.is_err() {
                abort.abort();
            }
            teardown(fixture.store()).await;
            if let Some(neighbour) = fixture.neighbour_store() {
                teardown(neighbour).await;
            }
            // The guards (temp dirs, databases) go only after the teardown.
            drop(fixture);
            match outcome {
                Ok(Ok(())) => return,
                Ok(Err(join_err)) if join_err.is_panic() => {
                    let payload = join_err.into_panic();
                    if attempt < crate::STALL_ATTEMPTS && crate::support::is_stall(&*payload) {
                        eprintln!(
                            "conformance case `{name}`: the machine stalled (attempt {attempt}), running it again"
                        );
                        continue;
                    }
                    std::panic::resume_unwind(payload)
                }
                Ok(Err(join_err)) => panic!("conformance case `{name}` was cancelled: {join_err}"),
                Err(_) => panic!(
                    "conformance case `{name}` did not finish within {:?}: the driver hangs",
                    crate::CASE_TIMEOUT
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::CASES;

    /// Every `pub async fn` in `src/cases/` is in the case list, and the other way round.
    #[test]
    fn every_case_function_is_in_the_list() {
        let sources = [
            include_str!("cases/basic.rs"),
            include_str!("cases/expiry.rs"),
            include_str!("cases/values.rs"),
            include_str!("cases/apply.rs"),
            include_str!("cases/concurrency.rs"),
            include_str!("cases/index.rs"),
            include_str!("cases/lock.rs"),
            include_str!("cases/maintenance.rs"),
        ];
        let defined: BTreeSet<&str> = sources
            .iter()
            .flat_map(|src| src.lines())
            .filter_map(|line| line.trim_start().strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split('(').next())
            .collect();
        let listed: BTreeSet<&str> = CASES.iter().map(|c| c.name).collect();
        assert_eq!(listed.len(), CASES.len(), "a case is listed twice");
        let unlisted: Vec<_> = defined.difference(&listed).collect();
        assert!(unlisted.is_empty(), "cases never run: {unlisted:?}");
        assert!(CASES.len() >= 40, "only {} cases", CASES.len());
    }
}
