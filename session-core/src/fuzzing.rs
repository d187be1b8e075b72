//! Entry points for the fuzz targets (`fuzz/` at the workspace root) and their regression
//! tests: the private decoders they reach. Hidden from the docs and not part of the API; it may
//! change in any release.

use crate::error::Result;
use crate::value::Value;

pub use crate::reserved::{Reserved, StoredMeta, StoredSeen};

/// `__s.meta`: the creation metadata ([`StoredMeta`]).
pub const META: &str = crate::reserved::META;
/// `__s.seen`: last seen time and IP ([`StoredSeen`]).
pub const SEEN: &str = crate::reserved::SEEN;
/// `__s.user`: the owner after a login.
pub const USER: &str = crate::reserved::USER;
/// `__s.retired`: the end of a retired id's grace period (unix ms).
pub const RETIRED: &str = crate::reserved::RETIRED;
/// `__s.ttl`: the session's own idle TTL (ms).
pub const TTL: &str = crate::reserved::TTL;
/// Prefix of flash marks.
pub const FLASH: &str = crate::reserved::FLASH;
/// Prefix of temp marks.
pub const TEMP: &str = crate::reserved::TEMP;

/// A reserved value in the compact positional form the session layer writes.
pub fn encode_reserved<T: serde::Serialize>(value: &T) -> Result<Value> {
    crate::reserved::encode(value)
}
