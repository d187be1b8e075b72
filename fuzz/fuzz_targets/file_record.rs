//! Fuzz target `file_record`: the check in `session-file/tests/fuzz_checks/file.rs` (documented there), shared with
//! session-file's `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../../session-file/tests/fuzz_checks/file.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
