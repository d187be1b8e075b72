//! sessionctl's error: what went wrong, what to do about it, and the exit code.

use std::fmt;

/// Exit code: success.
pub const OK: i32 = 0;
/// Exit code: the store or the data failed (backend down, corrupt record, I/O error), or the
/// operator answered "no" at a confirmation.
pub const FAILED: i32 = 1;
/// Exit code: the command line is wrong (unknown option, bad spec, bad id), or a writing
/// command ran without a terminal and without `--yes`. Also clap's code for usage errors.
pub const USAGE: i32 = 2;
/// Exit code: the session (`get`, `destroy`) or the store path does not exist.
pub const NOT_FOUND: i32 = 3;
/// Exit code: the driver cannot do this (no scan, no owner index, no purge).
pub const UNSUPPORTED: i32 = 4;
/// Exit code: a migration's final check found live source sessions missing from the target.
pub const INCOMPLETE: i32 = 5;

/// A failed command: a message, what to do about it, and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    /// The exit code ([`FAILED`], [`USAGE`], [`NOT_FOUND`], [`UNSUPPORTED`], [`INCOMPLETE`]).
    pub code: i32,
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl CtlError {
    fn new(code: i32, message: impl Into<String>, hint: impl Into<String>) -> Self {
        CtlError {
            code,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// An error of the store or the data ([`FAILED`]).
    pub fn failed(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(FAILED, message, hint)
    }

    /// A command-line error ([`USAGE`]).
    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(USAGE, message, hint)
    }

    /// Something named does not exist ([`NOT_FOUND`]).
    pub fn not_found(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(NOT_FOUND, message, hint)
    }

    /// The driver cannot do it ([`UNSUPPORTED`]).
    pub fn unsupported(driver: &str, what: &str, hint: impl Into<String>) -> Self {
        Self::new(
            UNSUPPORTED,
            format!("{what} is unsupported by this driver ({driver})"),
            hint,
        )
    }

    /// A migration that did not end complete ([`INCOMPLETE`]).
    pub fn incomplete(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(INCOMPLETE, message, hint)
    }

    /// The same error with another hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }
}

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\n  what to do: {}", self.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for CtlError {}

impl From<session_core::Error> for CtlError {
    fn from(e: session_core::Error) -> Self {
        use session_core::Error as E;
        let message = e.to_string();
        match e {
            E::Unsupported { driver, operation } => Self::new(
                UNSUPPORTED,
                format!("`{operation}` is unsupported by this driver ({driver})"),
                "use a store whose driver has this capability (see `sessionctl --help`, \"Drivers\")",
            ),
            E::InvalidId(_) => Self::new(
                USAGE,
                message,
                "pass the full session id as the application issued it (the cookie value, without a signature)",
            ),
            E::InvalidInput(_) => Self::new(USAGE, message, "check the arguments"),
            E::Corrupt { .. } => Self::new(
                FAILED,
                message,
                "the record cannot be read back: inspect it with `get ID --raw`, or remove it with `destroy ID`",
            ),
            E::Backend { .. } => Self::new(
                FAILED,
                message,
                "check that the server is up and reachable, then run the command again",
            ),
            _ => Self::new(
                FAILED,
                message,
                "run the command again; report it if it persists",
            ),
        }
    }
}

impl From<std::io::Error> for CtlError {
    fn from(e: std::io::Error) -> Self {
        Self::new(
            FAILED,
            format!("I/O error: {e}"),
            "check the file's path and permissions, and the free disk space",
        )
    }
}

/// sessionctl's result.
pub type Result<T, E = CtlError> = std::result::Result<T, E>;
