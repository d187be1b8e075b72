//! The peers of issue 14 on the workload of `session-benches`' `loadgen`: tower-sessions 0.14 with
//! its moka, Redis (fred) and SQLite (sqlx) stores, driven through its `Session` API the way its
//! middleware drives it. See the README.

pub mod payload;
pub mod run;
pub mod stores;
pub mod target;

/// Any error of the harness.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The harness's result.
pub type Result<T> = std::result::Result<T, BoxError>;
