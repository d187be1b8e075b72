//! The metrics layer counts every call by driver, operation and outcome, counts errors by kind,
//! and records a duration per call.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};
use session_core::{SessionId, Storage, Value};
use session_layers::{CALL_SECONDS, CALLS_TOTAL, ERRORS_TOTAL, MetricsLayer};
use session_memory::MemoryStore;

fn labels(key: &CompositeKey) -> Vec<(String, String)> {
    let mut labels: Vec<_> = key
        .key()
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    labels
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = p
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
fn calls_errors_and_durations_are_recorded_per_driver_and_operation() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = MemoryStore::new().layer(MetricsLayer::new());
        let id = SessionId::generate().unwrap();
        rt.block_on(async {
            for i in 0..3 {
                store
                    .set(
                        &id,
                        "k",
                        Value::encode(&i).unwrap(),
                        Duration::from_secs(60),
                    )
                    .await
                    .unwrap();
            }
            store.load(&id).await.unwrap();
            assert!(store.scan(Some("not a cursor!"), 10).await.is_err());
        });
    });

    let snapshot = snapshotter.snapshot().into_vec();
    let find = |kind: MetricKind, name: &str, want: &[(&str, &str)]| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                key.kind() == kind && key.key().name() == name && labels(key) == pairs(want)
            })
            .map(|(_, _, _, value)| value)
    };
    let counter = |name: &str, want: &[(&str, &str)]| match find(MetricKind::Counter, name, want) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("no counter {name} {want:?}: {other:?} in {snapshot:?}"),
    };
    let memory = ("driver", "memory");
    assert_eq!(
        counter(CALLS_TOTAL, &[memory, ("op", "set"), ("outcome", "ok")]),
        3
    );
    assert_eq!(
        counter(CALLS_TOTAL, &[memory, ("op", "load"), ("outcome", "ok")]),
        1
    );
    assert_eq!(
        counter(CALLS_TOTAL, &[memory, ("op", "scan"), ("outcome", "error")]),
        1
    );
    assert_eq!(
        counter(
            ERRORS_TOTAL,
            &[memory, ("op", "scan"), ("kind", "invalid_input")]
        ),
        1
    );
    match find(
        MetricKind::Histogram,
        CALL_SECONDS,
        &[memory, ("op", "set")],
    ) {
        Some(DebugValue::Histogram(samples)) => {
            assert_eq!(samples.len(), 3, "one duration per call");
            assert!(samples.iter().all(|s| s.into_inner() >= 0.0));
        }
        other => panic!("no {CALL_SECONDS} histogram for set: {other:?}"),
    }
    assert!(
        find(
            MetricKind::Counter,
            ERRORS_TOTAL,
            &[memory, ("op", "set"), ("kind", "backend")]
        )
        .is_none(),
        "no error counted for calls that succeeded"
    );
}
