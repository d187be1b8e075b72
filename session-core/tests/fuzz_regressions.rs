//! The fuzz targets' stored inputs (the seed corpus and every crash found, in
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` at the workspace root) through the
//! same checks the targets run (`tests/fuzz_checks/`), on stable, in every `cargo test`. See
//! `fuzz/README.md`.

#[path = "../../fuzz/regress.rs"]
mod regress;

#[path = "fuzz_checks/session_id.rs"]
mod session_id;

#[path = "fuzz_checks/record.rs"]
mod record;

#[path = "fuzz_checks/reserved.rs"]
mod reserved;

#[test]
fn session_id_inputs_pass_the_target_check() {
    let n = regress::run("session_id", session_id::check);
    assert!(n > 0);
}

#[test]
fn record_inputs_pass_the_target_check() {
    let n = regress::run("record", record::check);
    assert!(n > 0);
}

#[test]
fn reserved_inputs_pass_the_target_check() {
    let n = regress::run("reserved", reserved::check);
    assert!(n > 0);
}
