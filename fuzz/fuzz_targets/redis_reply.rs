//! Fuzz target `redis_reply`: the check in `session-redis/tests/fuzz_checks/reply.rs` (documented there), shared with
//! session-redis's `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../../session-redis/tests/fuzz_checks/reply.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
