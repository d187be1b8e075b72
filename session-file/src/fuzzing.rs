//! Entry points for the fuzz targets (`fuzz/` at the workspace root) and their regression
//! tests: the driver's private file format. Hidden from the docs and not part of the API; it
//! may change in any release.

use session_core::driver::Result;
use session_core::driver::record::Record;

use crate::record::{self, Kind};

/// Bytes of a file the header decoder reads (the framing and the record's own header).
pub const HEADER_READ_LEN: usize = record::HEADER_READ_LEN;

fn kind(lease: bool) -> Kind {
    if lease { Kind::Lease } else { Kind::Session }
}

/// The bytes of a whole session file (`lease`: a lock file) holding `rec`.
pub fn encode(lease: bool, rec: &Record) -> Result<Vec<u8>> {
    record::encode(kind(lease), rec)
}

/// Decodes a whole session file (`lease`: a lock file), checking length, checksum, record and
/// key count.
pub fn decode(lease: bool, bytes: &[u8]) -> Result<Record> {
    record::decode(kind(lease), bytes)
}

/// The deadline (unix ms) and key count a file's first bytes announce, as purge and scan read
/// them.
pub fn decode_header(lease: bool, bytes: &[u8]) -> Result<(u64, u32)> {
    record::decode_header(kind(lease), bytes).map(|h| (h.deadline_ms, h.keys))
}
