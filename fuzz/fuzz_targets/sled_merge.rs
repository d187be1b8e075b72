//! Fuzz target `sled_merge`: the check in `session-sled/tests/fuzz_checks/merge.rs` (documented there), shared with
//! session-sled's `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../../session-sled/tests/fuzz_checks/merge.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
