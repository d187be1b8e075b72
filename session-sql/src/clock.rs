//! Deadlines as the tables store them: milliseconds since the Unix epoch, as a signed 64-bit
//! integer, from the application server's clock.

use session_core::driver::{Ttl, check};

/// Milliseconds since the Unix epoch, now.
pub fn now() -> i64 {
    millis(check::now_millis())
}

/// The deadline `now + ttl` (saturating: far beyond any real deadline).
pub fn deadline(now: i64, ttl: Ttl) -> i64 {
    now.saturating_add(millis(ttl.as_millis()))
}

/// A `u64` millisecond count as a signed 64-bit integer (saturating).
fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}
