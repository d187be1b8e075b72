//! [`MetricsLayer`]: call counts, errors and latency of every driver call, through the
//! `metrics` facade.

use std::time::Instant;

use session_core::Result;
use session_core::driver::{BoxFuture, Call, Driver, Intercept, Intercepted, Layer};

/// Counter of driver calls, labelled `driver`, `op` and `outcome` (`"ok"` or `"error"`).
pub const CALLS_TOTAL: &str = "session_storage_calls_total";
/// Counter of failed driver calls, labelled `driver`, `op` and `kind` (the error's
/// [`kind`](session_core::Error::kind): `"backend"`, `"corrupt"`, ...).
pub const ERRORS_TOTAL: &str = "session_storage_errors_total";
/// Histogram of call durations in seconds, labelled `driver` and `op`.
pub const CALL_SECONDS: &str = "session_storage_call_seconds";

/// Wraps a store so that every driver call is counted and timed through the
/// [`metrics`](https://docs.rs/metrics) facade: [`CALLS_TOTAL`], [`ERRORS_TOTAL`] and
/// [`CALL_SECONDS`], labelled by driver and operation. Install any `metrics` recorder
/// (Prometheus, StatsD, ...) in the application to export them; without one they cost a few
/// nanoseconds and go nowhere.
///
/// ```
/// use session_core::Storage;
/// use session_layers::MetricsLayer;
/// use session_memory::MemoryStore;
///
/// let store = MemoryStore::new().layer(MetricsLayer::new());
/// assert_eq!(store.name(), "memory");
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct MetricsLayer;

impl MetricsLayer {
    /// The metrics layer.
    pub fn new() -> Self {
        MetricsLayer
    }
}

impl<D: Driver> Layer<D> for MetricsLayer {
    type Driver = Intercepted<D, Metered>;

    fn layer(&self, inner: D) -> Self::Driver {
        Intercepted::new(inner, Metered)
    }
}

/// The [`Intercept`] hook of [`MetricsLayer`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Metered;

impl Intercept for Metered {
    fn intercept<'a, T: Send + 'static>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let start = Instant::now();
            let out = run.await;
            let (driver, op) = (call.driver, call.op.as_str());
            metrics::histogram!(CALL_SECONDS, "driver" => driver, "op" => op)
                .record(start.elapsed().as_secs_f64());
            let outcome = match &out {
                Ok(_) => "ok",
                Err(e) => {
                    metrics::counter!(ERRORS_TOTAL, "driver" => driver, "op" => op, "kind" => e.kind())
                        .increment(1);
                    "error"
                }
            };
            metrics::counter!(CALLS_TOTAL, "driver" => driver, "op" => op, "outcome" => outcome)
                .increment(1);
            out
        })
    }
}
