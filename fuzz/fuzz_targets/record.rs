//! Fuzz target `record`: the check in `session-core/tests/fuzz_checks/record.rs` (documented there), shared with
//! session-core's `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../../session-core/tests/fuzz_checks/record.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
