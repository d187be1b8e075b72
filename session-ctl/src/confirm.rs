//! Confirmation of the writing commands.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use crate::error::{CtlError, Result};

/// Asks `question` on the terminal unless `yes`; refuses without a terminal.
///
/// * `yes` (`--yes`): goes ahead without asking.
/// * standard input is not a terminal (a script, a pipe): refuses with
///   [`USAGE`](crate::error::USAGE), asking for `--yes`, so that a script never blocks on a
///   question or goes ahead by accident.
/// * otherwise asks on standard error and goes ahead on `y` or `yes`; any other answer is a
///   [`FAILED`](crate::error::FAILED) "nothing was changed".
pub fn confirm(yes: bool, question: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CtlError::usage(
            format!(
                "refusing to go on without confirmation ({question}): standard input is not a terminal"
            ),
            "add --yes (-y) to confirm in a script",
        ));
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(CtlError::failed(
            "not confirmed: nothing was changed",
            "answer `y` to go on, or pass --yes",
        )),
    }
}
