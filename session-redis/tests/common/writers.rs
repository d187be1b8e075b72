//! Writers in the manner of `loadgen`: tasks that keep writing new sessions through a store while
//! a test breaks its servers, recording for every call when it was sent, when it returned and
//! how it ended, so the test can tell acknowledged writes from failed ones afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use session_core::{Error, SessionId, Storage, Value};

/// The session key every writer sets.
pub const KEY: &str = "n";
/// The sessions' lifetime: longer than any test.
pub const TTL: Duration = Duration::from_secs(600);

/// One write.
#[derive(Debug)]
pub struct Outcome {
    /// The session written (a new one each call).
    pub id: SessionId,
    /// The value written under [`KEY`].
    pub value: String,
    /// When the call was made.
    pub sent: Instant,
    /// When it returned.
    pub returned: Instant,
    /// How it ended: `Ok` is an acknowledged write.
    pub result: Result<(), Error>,
}

impl Outcome {
    /// Whether the store acknowledged the write.
    pub fn acknowledged(&self) -> bool {
        self.result.is_ok()
    }

    /// How long the call took.
    pub fn took(&self) -> Duration {
        self.returned - self.sent
    }
}

/// Tasks writing sessions until [`stop`](Self::stop).
pub struct Writers {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl Writers {
    /// Starts `tasks` writers on `store`, each pausing `pause` between its writes.
    pub fn start(store: Arc<dyn Storage>, label: &str, tasks: usize, pause: Duration) -> Writers {
        Self::start_where(store, label, tasks, pause, |_| true)
    }

    /// [`start`](Self::start), writing only sessions whose id passes `accept` (on a cluster:
    /// sessions in chosen slots).
    pub fn start_where(
        store: Arc<dyn Storage>,
        label: &str,
        tasks: usize,
        pause: Duration,
        accept: impl Fn(&SessionId) -> bool + Send + Sync + 'static,
    ) -> Writers {
        let accept = Arc::new(accept);
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let tasks = (0..tasks)
            .map(|task| {
                let (store, stop, acknowledged) =
                    (store.clone(), stop.clone(), acknowledged.clone());
                let accept = accept.clone();
                let label = format!("{label}-{task}");
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let id = loop {
                            let id = SessionId::generate().expect("OS randomness");
                            if accept(&id) {
                                break id;
                            }
                        };
                        let value = format!("{label}-{seq}");
                        seq += 1;
                        let sent = Instant::now();
                        let encoded = Value::encode(&value).expect("a string encodes");
                        let result = store.set(&id, KEY, encoded, TTL).await;
                        let returned = Instant::now();
                        if result.is_ok() {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        outcomes.push(Outcome {
                            id,
                            value,
                            sent,
                            returned,
                            result,
                        });
                        tokio::time::sleep(pause).await;
                    }
                    outcomes
                })
            })
            .collect();
        Writers {
            stop,
            acknowledged,
            tasks,
        }
    }

    /// How many writes were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Stops the writers and returns every write, in the order each task made them.
    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            all.extend(task.await.expect("writer task"));
        }
        all
    }
}

/// The writes of `outcomes` whose session does not hold the value written, read through `store`.
pub async fn missing<'a>(store: &dyn Storage, outcomes: &[&'a Outcome]) -> Vec<&'a Outcome> {
    let mut lost = Vec::new();
    for outcome in outcomes {
        let found = store
            .get(&outcome.id, KEY)
            .await
            .expect("reading back after the fault");
        let found = found.map(|v| v.decode::<String>().expect("a string"));
        if found.as_deref() != Some(outcome.value.as_str()) {
            lost.push(*outcome);
        }
    }
    lost
}

/// Checks that every failed write failed with `Error::Backend` from the Redis driver, and within
/// `bound`; returns how many failed.
pub fn check_failures(outcomes: &[Outcome], bound: Duration) -> usize {
    let mut failed = 0;
    for outcome in outcomes {
        let Err(e) = &outcome.result else { continue };
        failed += 1;
        match e {
            Error::Backend { backend, source } => {
                assert_eq!(*backend, "redis", "{e}");
                assert!(!source.to_string().is_empty(), "an empty backend error");
            }
            other => panic!("a write failed with another error than Backend: {other:?}"),
        }
        assert!(
            outcome.took() <= bound,
            "a failing write took {:?} (bound {bound:?}): {e}",
            outcome.took()
        );
    }
    failed
}

/// A line per distinct error message (with its count), for the test's output.
pub fn error_summary(outcomes: &[Outcome]) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for outcome in outcomes {
        if let Err(e) = &outcome.result {
            // Addresses and counters vary; the first 140 characters name the failure.
            let text: String = e.to_string().chars().take(140).collect();
            *counts.entry(text).or_default() += 1;
        }
    }
    counts
        .iter()
        .map(|(text, n)| format!("  {n} x {text}"))
        .collect::<Vec<_>>()
        .join("\n")
}
