//! The behaviour suite on the in-process backend (several hubs share one `MemoryBackend`).
#![allow(clippy::unwrap_used)]

mod common;

behaviour_suite!(common::memory_fixture);
