//! Entry points for the fuzz targets (`fuzz/` at the workspace root) and their regression
//! tests: the driver's private reply parsers. Hidden from the docs and not part of the API; it
//! may change in any release.

use std::time::SystemTime;

use session_core::driver::{Data, Result};

/// The field of a session hash that holds the deadline and the session layer's two folded
/// bookkeeping keys (never a session key).
pub const DEADLINE_FIELD: &[u8] = crate::keys::DEADLINE_FIELD;

/// An `HGETALL` reply (RESP2 array or RESP3 map) split into the session's data and the raw
/// deadline field, as `load` reads it.
pub fn parse_hash(reply: redis::Value) -> Result<(Data, Option<Vec<u8>>)> {
    crate::reply::parse_hash(&reply).map(|(packed, deadline)| (packed.to_data(), deadline))
}

/// The deadline a deadline field holds, if `load` believes it.
pub fn parse_deadline(raw: &[u8]) -> Option<SystemTime> {
    crate::reply::parse_deadline(raw)
}

/// `(host, port)` of every master that serves slots, from a `CLUSTER NODES` reply.
pub fn parse_cluster_masters(text: &str) -> Vec<(String, u16)> {
    crate::scan::parse_cluster_masters(text)
}

/// `(first slot, last slot, host, port)` of each range of a `CLUSTER SLOTS` reply.
pub fn parse_cluster_slots(reply: redis::Value) -> Vec<(u16, u16, String, u16)> {
    crate::subscribe::parse_cluster_slots(reply)
}

/// Whether a deadline field's value names a deadline that has passed (then every read treats
/// the session as missing).
pub fn is_past(raw: Option<&[u8]>) -> bool {
    crate::reply::is_past(raw)
}

/// A parsed `scan` cursor: the slot, the entry (deadline, id) after which the page starts, and
/// the cursor's canonical text.
pub type ScanCursor = (u16, Option<(u64, session_core::SessionId)>, String);

/// A `scan` cursor of the live index as the driver reads it: the slot and the entry (deadline,
/// id) after which the page starts, with the cursor's canonical text; `Error::InvalidInput` for
/// text that is not a cursor.
pub fn parse_scan_cursor(text: &str) -> Result<ScanCursor> {
    crate::scan::parse_cursor(text)
}
