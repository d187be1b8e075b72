#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod direct;
pub mod payload;
pub mod raw;
pub mod raw_server;
pub mod redis_stats;
pub mod run;
pub mod soak;
pub mod stores;
pub mod targets;

/// Errors of the benchmark harness (anything a driver, a raw backend or the OS reports).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result of the benchmark harness.
pub type Result<T> = std::result::Result<T, BoxError>;

/// The Redis URL the benches use unless `REDIS_URL` says otherwise.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `REDIS_URL`, or [`DEFAULT_REDIS_URL`].
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string())
}

/// A prefix no other process uses: `bench-<pid>-<nanos>` (no braces, globs or spaces, so the
/// Redis driver accepts it).
pub fn private_prefix(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{what}-{}-{nanos}", std::process::id())
}
