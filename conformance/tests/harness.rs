//! What the generated tests do around a case: teardown always runs, a failure is re-raised.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use session_conformance::__private::run_case;
use session_core::{SessionId, Storage};

/// The text of a re-raised case panic (empty if it carried none).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default()
}

static TEARDOWNS: AtomicUsize = AtomicUsize::new(0);

async fn count_teardown(store: Arc<dyn Storage>) {
    assert_eq!(store.name(), "reference", "teardown got another store");
    TEARDOWNS.fetch_add(1, Ordering::SeqCst);
}

async fn failing_case(store: Arc<dyn Storage>) {
    let id = SessionId::generate().expect("id");
    assert_eq!(
        store.get_size(&id).await.expect("get_size"),
        1,
        "deliberate failure"
    );
}

async fn passing_case(store: Arc<dyn Storage>) {
    let id = SessionId::generate().expect("id");
    assert_eq!(store.get_size(&id).await.expect("get_size"), 0);
}

#[test]
fn teardown_runs_and_the_failure_is_reraised() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let before = TEARDOWNS.load(Ordering::SeqCst);
    rt.block_on(run_case(
        "passing_case",
        support::reference,
        count_teardown,
        passing_case,
    ));
    assert_eq!(
        TEARDOWNS.load(Ordering::SeqCst),
        before + 2,
        "teardown after a pass, on the store and on its neighbour"
    );

    support::quiet::quiet_case_panics();
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(run_case(
            "failing_case",
            support::reference,
            count_teardown,
            failing_case,
        ))
    }));
    assert_eq!(
        TEARDOWNS.load(Ordering::SeqCst),
        before + 4,
        "teardown must run after a failing case too, on both stores"
    );
    let message = panic_message(failed.expect_err("a failing case must fail the test"));
    assert!(
        message.contains("deliberate failure"),
        "the re-raised panic lost the case's message: {message:?}"
    );
}

static STALL_RUNS: AtomicUsize = AtomicUsize::new(0);
static ALWAYS_STALL_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Reports a stall on its first run only, as a timing case does when the machine hiccups once.
async fn stalls_once(_store: Arc<dyn Storage>) {
    if STALL_RUNS.fetch_add(1, Ordering::SeqCst) == 0 {
        panic!("{}: deliberate", session_conformance::STALL_MARKER);
    }
}

async fn always_stalls(_store: Arc<dyn Storage>) {
    ALWAYS_STALL_RUNS.fetch_add(1, Ordering::SeqCst);
    panic!("{}: deliberate", session_conformance::STALL_MARKER);
}

#[test]
fn a_stalled_case_runs_again_and_a_persistent_stall_still_fails() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run_case(
        "stalls_once",
        support::reference,
        session_conformance::__private::no_teardown,
        stalls_once,
    ));
    assert_eq!(
        STALL_RUNS.load(Ordering::SeqCst),
        2,
        "run once more after a stall"
    );

    support::quiet::quiet_case_panics();
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(run_case(
            "always_stalls",
            support::reference,
            session_conformance::__private::no_teardown,
            always_stalls,
        ))
    }));
    assert!(failed.is_err(), "a case that always stalls must fail");
    assert_eq!(
        ALWAYS_STALL_RUNS.load(Ordering::SeqCst),
        session_conformance::STALL_ATTEMPTS as usize
    );
}

/// The reference store, whose first write answers 200 ms after it took effect.
async fn slow_first_write() -> session_conformance::Fixture {
    support::beside_a_neighbour(Arc::new(support::Reference::with_quirks(support::Quirks {
        first_write_answers_late: Some(Duration::from_millis(200)),
        ..support::Quirks::default()
    })))
}

/// A slide case counts its time from before the first write, whose deadline is set while it
/// runs: a first write that answers late makes the case report a stall (run again, then failed
/// as a stall), never a correct store that "lost" the session to a deadline the case overslept.
#[test]
fn a_late_first_write_in_a_slide_case_is_a_stall_not_a_lost_session() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    support::quiet::quiet_case_panics();
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(run_case(
            "set_slides_expiry",
            slow_first_write,
            session_conformance::__private::no_teardown,
            session_conformance::cases::set_slides_expiry,
        ))
    }));
    let message = panic_message(
        failed.expect_err("every attempt's first write answers 200 ms late: a stall"),
    );
    assert!(
        message.contains(session_conformance::STALL_MARKER),
        "a late first write must read as a stall, not as a store that lost the session: {message:?}"
    );
}
