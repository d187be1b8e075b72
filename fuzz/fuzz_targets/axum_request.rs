//! Fuzz target `axum_request`: the check in `session-axum/tests/fuzz_checks/request.rs` (documented there), shared with
//! session-axum's `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../../session-axum/tests/fuzz_checks/request.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
