//! The fuzz targets' stored inputs (the seed corpus and every crash found, in
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` at the workspace root) through the
//! same checks the targets run (`tests/fuzz_checks/`), on stable, in every `cargo test`. See
//! `fuzz/README.md`.

#[path = "../../fuzz/regress.rs"]
mod regress;

#[path = "fuzz_checks/merge.rs"]
mod merge;

#[test]
fn sled_merge_inputs_pass_the_target_check() {
    let n = regress::run("sled_merge", merge::check);
    assert!(n > 0);
}
