//! `sessionctl`: see the crate's README or `sessionctl --help`.

fn main() {
    std::process::exit(session_ctl::cli::main());
}
