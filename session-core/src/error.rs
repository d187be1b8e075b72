//! The one error type of the framework.

/// A boxed error from a backend client, kept as the source of [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias used throughout the framework.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a storage driver or in the session layer.
///
/// Each variant names a different thing the caller can do about it: fix the input
/// ([`InvalidId`](Error::InvalidId), [`InvalidInput`](Error::InvalidInput)), pick another driver
/// ([`Unsupported`](Error::Unsupported)), retry or alert ([`Backend`](Error::Backend),
/// [`Locked`](Error::Locked)), or fix the types ([`Encode`](Error::Encode),
/// [`Decode`](Error::Decode)). A record that cannot be read back is
/// [`Corrupt`](Error::Corrupt): it is reported, never returned as someone else's data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A session id from outside (cookie, header, API call) is not a valid id.
    /// The message says why; the offending text is never used as a key or a path.
    #[error("invalid session id: {0}")]
    InvalidId(String),

    /// An argument is out of range: an empty or oversized key, a zero TTL, an oversized value.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// The driver does not implement this capability; `Storage::capabilities` says so too.
    #[error(
        "the `{driver}` storage driver does not support `{operation}`; check `capabilities()` before calling it"
    )]
    Unsupported {
        /// Name of the driver ([`Storage::name`](crate::Storage::name)).
        driver: &'static str,
        /// The operation that was asked for.
        operation: &'static str,
    },

    /// The backend failed: connection refused, timeout, I/O error, SQL error.
    #[error("the `{backend}` storage backend failed: {source}")]
    Backend {
        /// Name of the backend ("redis", "sqlite", "file", ...).
        backend: &'static str,
        /// The backend client's own error.
        #[source]
        source: BoxError,
    },

    /// A stored record could not be read back (truncated file, foreign bytes, bad schema).
    #[error("corrupt session record in the `{backend}` backend: {reason}")]
    Corrupt {
        /// Name of the backend.
        backend: &'static str,
        /// What was wrong with the record.
        reason: String,
    },

    /// A value could not be encoded to MessagePack.
    #[error("could not encode the value as MessagePack: {0}")]
    Encode(#[source] rmp_serde::encode::Error),

    /// A stored value could not be decoded into the type the caller asked for.
    #[error("could not decode the stored value into the requested type: {0}")]
    Decode(#[source] rmp_serde::decode::Error),

    /// A lock could not be acquired within the configured wait.
    #[error("session is locked by another request: {0}")]
    Locked(String),
}

impl Error {
    /// Wraps a backend client error.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }

    /// A corrupt-record error for `backend` with a human-readable reason.
    pub fn corrupt(backend: &'static str, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            backend,
            reason: reason.into(),
        }
    }

    /// An [`Error::Unsupported`] for `operation` on `driver`.
    pub fn unsupported(driver: &'static str, operation: &'static str) -> Self {
        Error::Unsupported { driver, operation }
    }

    /// A short, stable name of the variant, for logs and metric labels: `"invalid_id"`,
    /// `"invalid_input"`, `"unsupported"`, `"backend"`, `"corrupt"`, `"encode"`, `"decode"`,
    /// `"locked"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidId(_) => "invalid_id",
            Error::InvalidInput(_) => "invalid_input",
            Error::Unsupported { .. } => "unsupported",
            Error::Backend { .. } => "backend",
            Error::Corrupt { .. } => "corrupt",
            Error::Encode(_) => "encode",
            Error::Decode(_) => "decode",
            Error::Locked(_) => "locked",
        }
    }

    /// Whether this error is [`Error::Unsupported`].
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported { .. })
    }
}
