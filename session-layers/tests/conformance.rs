//! The conformance suite on a layered store: tracing and metrics around a real memory store
//! change no behaviour.

use std::sync::Arc;

use session_conformance::Fixture;
use session_core::Storage;
use session_layers::{MetricsLayer, TracingLayer};
use session_memory::MemoryStore;

async fn new_store() -> Fixture {
    Fixture::new(Arc::new(
        MemoryStore::new()
            .layer(TracingLayer::new())
            .layer(MetricsLayer::new()),
    ))
    .neighbour(Arc::new(MemoryStore::new()))
}

session_conformance::suite!(new_store);
