//! Fuzz target `session_id`: the check in `session-core/tests/fuzz_checks/session_id.rs` (documented there), shared with
//! session-core's `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../../session-core/tests/fuzz_checks/session_id.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
