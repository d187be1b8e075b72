//! Fuzz target `cookie`: the check in `session-http/tests/fuzz_checks/cookie.rs` (documented there), shared with
//! session-http's `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../../session-http/tests/fuzz_checks/cookie.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
