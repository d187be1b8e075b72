//! Entry points for the fuzz targets (`fuzz/` at the workspace root) and their regression
//! tests: the driver's private record handling. Hidden from the docs and not part of the API;
//! it may change in any release.

use session_core::driver::ChangeSet;

use crate::merge::View;

/// The write fast path on stored bytes, as `apply` runs it on a live record: parse the current
/// layout in place, set the deadline (if any), apply `changes`, write the record again.
/// `None` where the driver falls back to the general path (any bytes that are not a
/// well-formed current-layout record); else whether anything changed, and the new bytes.
pub fn merge(bytes: &[u8], deadline: Option<u64>, changes: &ChangeSet) -> Option<(bool, Vec<u8>)> {
    let mut view = View::parse(bytes)?;
    if let Some(deadline) = deadline {
        view.deadline_ms = deadline;
    }
    let changed = view.change(changes);
    Some((changed, view.encode()?))
}
