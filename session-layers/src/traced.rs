//! [`TracingLayer`]: a `tracing` span around every driver call.

use std::time::Instant;

use session_core::Result;
use session_core::driver::{BoxFuture, Call, Driver, Intercept, Intercepted, Layer};
use tracing::Instrument;
use tracing::field::Empty;

use crate::tag::IdTagger;

/// The name of the span around each driver call.
pub const SPAN_NAME: &str = "session.storage";

/// Wraps a store so that every driver call runs in a `DEBUG` span named [`SPAN_NAME`]
/// (`"session.storage"`), with the fields
///
/// | field | value |
/// |---|---|
/// | `driver` | the driver's name (`"redis"`, ...) |
/// | `op` | the driver method (`"load"`, `"apply"`, `"get"`, ...) |
/// | `session` | a short keyed tag of the session id ([`IdTagger`]); never the id, a bearer secret |
/// | `outcome` | `"ok"`, or the error's [`kind`](session_core::Error::kind) (`"backend"`, ...) |
/// | `duration_us` | how long the call took, in microseconds |
///
/// A failed call also emits a `WARN` event inside the span with the error's message. Events the
/// driver emits itself (redis, sqlx) nest inside the span.
///
/// ```
/// use session_core::Storage;
/// use session_layers::TracingLayer;
/// use session_memory::MemoryStore;
///
/// let store = MemoryStore::new().layer(TracingLayer::new());
/// assert_eq!(store.name(), "memory");
/// ```
#[derive(Clone, Debug, Default)]
pub struct TracingLayer {
    tagger: IdTagger,
}

impl TracingLayer {
    /// A tracing layer with a fresh key for its session tags.
    pub fn new() -> Self {
        TracingLayer::default()
    }

    /// A tracing layer that tags sessions with `tagger` (share one tagger between layers so
    /// that their tags of one session match).
    pub fn with_tagger(tagger: IdTagger) -> Self {
        TracingLayer { tagger }
    }
}

impl<D: Driver> Layer<D> for TracingLayer {
    type Driver = Intercepted<D, Traced>;

    fn layer(&self, inner: D) -> Self::Driver {
        Intercepted::new(
            inner,
            Traced {
                tagger: self.tagger.clone(),
            },
        )
    }
}

/// The [`Intercept`] hook of [`TracingLayer`].
#[derive(Clone, Debug)]
pub struct Traced {
    tagger: IdTagger,
}

impl Intercept for Traced {
    fn intercept<'a, T: Send + 'static>(
        &'a self,
        call: Call<'a>,
        run: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let span = tracing::debug_span!(
            "session.storage",
            driver = call.driver,
            op = call.op.as_str(),
            session = Empty,
            outcome = Empty,
            duration_us = Empty,
        );
        // The tag costs a hash and a string: only for a span someone listens to.
        if let Some(id) = call.id.filter(|_| !span.is_disabled()) {
            span.record("session", self.tagger.tag(id));
        }
        Box::pin(async move {
            let start = Instant::now();
            let out = run.instrument(span.clone()).await;
            let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            span.record("duration_us", micros);
            match &out {
                Ok(_) => {
                    span.record("outcome", "ok");
                }
                Err(e) => {
                    span.record("outcome", e.kind());
                    tracing::warn!(parent: &span, error = %e, "session storage call failed");
                }
            }
            out
        })
    }
}
