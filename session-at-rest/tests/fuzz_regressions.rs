//! The fuzz target's stored inputs (the seed corpus and every crash found, in
//! `fuzz/corpus/at_rest_value/` and `fuzz/regressions/at_rest_value/` at the workspace root)
//! through the same check the target runs (`tests/fuzz_checks/encrypted.rs`), on stable, in
//! every `cargo test`. See `fuzz/README.md`.

#[path = "../../fuzz/regress.rs"]
mod regress;

#[path = "fuzz_checks/encrypted.rs"]
mod encrypted;

#[test]
fn at_rest_value_inputs_pass_the_target_check() {
    let n = regress::run("at_rest_value", encrypted::check);
    assert!(n > 0);
}
