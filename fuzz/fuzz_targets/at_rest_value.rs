//! Fuzz target `at_rest_value`: the check in `session-at-rest/tests/fuzz_checks/encrypted.rs`
//! (documented there), shared with session-at-rest's `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../../session-at-rest/tests/fuzz_checks/encrypted.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
