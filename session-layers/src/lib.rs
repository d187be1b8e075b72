#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod metered;
mod tag;
mod traced;

pub use metered::{CALL_SECONDS, CALLS_TOTAL, ERRORS_TOTAL, Metered, MetricsLayer};
pub use tag::IdTagger;
pub use traced::{SPAN_NAME, Traced, TracingLayer};
