//! The stored inputs of a fuzz target, for the ordinary regression tests: every file of
//! `fuzz/corpus/<target>/` (the minimized seed corpus) and `fuzz/regressions/<target>/` (each
//! crash the target found, kept after its fix). Included with `#[path]` by each fuzzed crate's
//! `tests/fuzz_regressions.rs`, which runs the same check the fuzz target runs on every file.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

/// The files of `target`'s corpus and regressions, sorted by path (dot files left out).
/// Panics when the corpus is missing or empty: the test must not pass by finding nothing.
pub fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            if path.is_file() && !hidden {
                let bytes = std::fs::read(&path).expect("a readable input file");
                files.push((path, bytes));
            }
        }
    }
    files.sort();
    let corpus = fuzz.join("corpus").join(target);
    assert!(
        files.iter().any(|(p, _)| p.starts_with(&corpus)),
        "no seed corpus for fuzz target {target} in {}",
        corpus.display()
    );
    files
}

/// Runs `check` on every stored input of `target`; a failure names the file. Returns how many
/// inputs ran.
pub fn run(target: &str, check: impl Fn(&[u8])) -> usize {
    let files = inputs(target);
    for (path, bytes) in &files {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(bytes))) {
            eprintln!("fuzz input {} failed its check", path.display());
            resume_unwind(panic);
        }
    }
    files.len()
}
