//! Input checks every driver runs before touching its backend, so the rules live in one place.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest owner (user id), in bytes.
pub const MAX_OWNER_LEN: usize = 256;
/// Longest TTL: ten years. Longer TTLs are a mistake, and would overflow some backends.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Checks a session key: at most [`MAX_KEY_LEN`] bytes and no NUL character. Empty and unicode
/// keys are fine.
pub fn key(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidInput(format!(
            "key is {} bytes, at most {MAX_KEY_LEN} allowed",
            key.len()
        )));
    }
    if key.contains('\0') {
        return Err(Error::InvalidInput("key contains a NUL character".into()));
    }
    Ok(())
}

/// Checks an owner (user id) for the owner index: 1 to [`MAX_OWNER_LEN`] bytes, no NUL.
pub fn owner(owner: &str) -> Result<()> {
    if owner.is_empty() || owner.len() > MAX_OWNER_LEN {
        return Err(Error::InvalidInput(format!(
            "owner is {} bytes, 1 to {MAX_OWNER_LEN} allowed",
            owner.len()
        )));
    }
    if owner.contains('\0') {
        return Err(Error::InvalidInput("owner contains a NUL character".into()));
    }
    Ok(())
}

/// Checks a TTL and returns it in whole milliseconds, rounding a sub-millisecond remainder up
/// (a 1.5 ms TTL is 2 ms; nothing rounds down to zero). Zero and TTLs over [`MAX_TTL`] are
/// [`Error::InvalidInput`].
pub fn ttl_millis(ttl: Duration) -> Result<u64> {
    if ttl.is_zero() {
        return Err(Error::InvalidInput("ttl must be greater than zero".into()));
    }
    if ttl > MAX_TTL {
        return Err(Error::InvalidInput(format!(
            "ttl of {}s is longer than the {}s maximum",
            ttl.as_secs(),
            MAX_TTL.as_secs()
        )));
    }
    let ms = ttl.as_millis() as u64;
    Ok(if !ttl.subsec_nanos().is_multiple_of(1_000_000) {
        ms + 1
    } else {
        ms
    })
}

/// Checks `ttl` and returns the deadline now + ttl.
pub fn deadline(ttl: Duration) -> Result<SystemTime> {
    Ok(SystemTime::now() + Duration::from_millis(ttl_millis(ttl)?))
}

/// Milliseconds since the Unix epoch of `t` (0 for times before the epoch): the form drivers
/// store deadlines in.
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The latest deadline [`from_unix_millis`] turns into a time: the year 275,760 (the latest time
/// an ECMAScript date holds, 8.64e15 ms), far past any TTL and representable by every platform's
/// `SystemTime`.
pub const LATEST_UNIX_MILLIS: u64 = 8_640_000_000_000_000;

/// The time `ms` milliseconds after the Unix epoch, clamped to [`LATEST_UNIX_MILLIS`]: a corrupt or
/// hostile stored deadline (up to `u64::MAX`) gives a far-future time, never an overflow panic
/// (`SystemTime + Duration` panics past the platform's range, which on Windows is 30,828 CE).
pub fn from_unix_millis(ms: u64) -> SystemTime {
    let ms = ms.min(LATEST_UNIX_MILLIS);
    UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .unwrap_or(UNIX_EPOCH)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    unix_millis(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_unix_millis_clamps_absurd_deadlines() {
        assert_eq!(unix_millis(from_unix_millis(1_500)), 1_500);
        let latest = from_unix_millis(LATEST_UNIX_MILLIS);
        assert_eq!(unix_millis(latest), LATEST_UNIX_MILLIS);
        assert_eq!(from_unix_millis(u64::MAX), latest);
        assert_eq!(from_unix_millis(LATEST_UNIX_MILLIS + 1), latest);
    }

    #[test]
    fn ttl_rounds_up_and_rejects_zero() {
        assert!(ttl_millis(Duration::ZERO).is_err());
        assert_eq!(ttl_millis(Duration::from_micros(1)).ok(), Some(1));
        assert_eq!(ttl_millis(Duration::from_micros(1500)).ok(), Some(2));
        assert_eq!(ttl_millis(Duration::from_millis(300)).ok(), Some(300));
        assert!(ttl_millis(MAX_TTL + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn keys_and_owners() {
        assert!(key("").is_ok());
        assert!(key("ключ🔑").is_ok());
        assert!(key("a\0b").is_err());
        assert!(key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(owner("").is_err());
        assert!(owner("user-1").is_ok());
    }
}
