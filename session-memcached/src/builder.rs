//! [`MemcachedStoreBuilder`]: the options of a [`MemcachedStore`], and the checks of the
//! address and the server it opens.

use std::time::Duration;

use session_core::driver::{Error, Result};

use crate::pool::Conn;
use crate::store::MemcachedStore;
use crate::{
    DEFAULT_CAS_ATTEMPTS, DEFAULT_ITEM_SIZE_MAX, DEFAULT_POOL_SIZE, DEFAULT_PREFIX,
    DEFAULT_TIMEOUT, MAX_PREFIX_LEN, NAME,
};

/// Configures a [`MemcachedStore`]; made by [`MemcachedStore::builder`].
#[derive(Clone, Debug)]
pub struct MemcachedStoreBuilder {
    prefix: String,
    pool_size: usize,
    timeout: Duration,
    cas_attempts: u32,
    max_item_size: Option<usize>,
}

impl Default for MemcachedStoreBuilder {
    fn default() -> Self {
        MemcachedStoreBuilder {
            prefix: DEFAULT_PREFIX.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            timeout: DEFAULT_TIMEOUT,
            cas_attempts: DEFAULT_CAS_ATTEMPTS,
            max_item_size: None,
        }
    }
}

impl MemcachedStoreBuilder {
    /// Prefix of every key (default [`DEFAULT_PREFIX`]). At most [`MAX_PREFIX_LEN`] bytes of
    /// printable ASCII without spaces (memcached keys allow no spaces or control characters);
    /// checked by [`open`](Self::open). May be empty.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Most connections the pool opens (default [`DEFAULT_POOL_SIZE`], at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Bound on one memcached command including the wait for a pooled connection (default
    /// [`DEFAULT_TIMEOUT`]). A command that runs out is an [`Error::Backend`] and its connection
    /// is dropped.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many read/compare-and-set rounds one write tries under contention before it fails with
    /// [`Error::Backend`] (default [`DEFAULT_CAS_ATTEMPTS`], at least 1).
    pub fn cas_attempts(mut self, attempts: u32) -> Self {
        self.cas_attempts = attempts.max(1);
        self
    }

    /// The server's item size limit in bytes (memcached's `-I`). By default it is read from the
    /// server (`stats settings`) when opening the store, and taken as memcached's default of 1 MiB if
    /// the server does not say. A session whose item would not fit is refused with
    /// [`Error::InvalidInput`] before it is sent: memcached deletes the stored item when a
    /// larger version of it is refused, so the driver never lets the server refuse one.
    pub fn max_item_size(mut self, bytes: usize) -> Self {
        self.max_item_size = Some(bytes);
        self
    }

    /// Checks the prefix, connects to the server at `addr` (`host:port`, `tcp://host:port`,
    /// `memcache://host:port` or `unix://path`) and checks that it speaks the meta protocol
    /// (memcached 1.6 or later).
    ///
    /// Errors: [`Error::InvalidInput`] for a bad prefix, [`Error::Backend`] when the server cannot
    /// be reached or is too old.
    pub async fn open(self, addr: &str) -> Result<MemcachedStore> {
        check_prefix(&self.prefix)?;
        let addr = normalize_addr(addr);
        let mut conn = Conn::new(&addr, self.pool_size, self.timeout)?;
        let version = conn.version().await?;
        if !meta_protocol_version(&version) {
            return Err(Error::backend(
                NAME,
                format!(
                    "memcached at {addr} is version {}; the meta protocol needs 1.6 or later",
                    version.trim()
                ),
            ));
        }
        let max_item = match self.max_item_size {
            Some(bytes) => bytes,
            None => conn.item_size_max().await.unwrap_or(DEFAULT_ITEM_SIZE_MAX),
        };
        conn.set_max_item(max_item);
        Ok(MemcachedStore::new(conn, self.prefix, self.cas_attempts))
    }
}

/// Checks a key prefix (see [`MemcachedStoreBuilder::prefix`]).
fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(Error::InvalidInput(format!(
            "memcached key prefix is {} bytes, at most {MAX_PREFIX_LEN} allowed",
            prefix.len()
        )));
    }
    if let Some(pos) = prefix.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(Error::InvalidInput(format!(
            "memcached key prefix has a space, control or non-ASCII byte at {pos}; memcached keys \
             allow printable ASCII only"
        )));
    }
    Ok(())
}

/// The client takes `tcp://host:port` or `unix://path`: a bare `host:port` and the
/// `memcache://` / `memcached://` schemes other clients use become `tcp://host:port`.
fn normalize_addr(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    for scheme in ["memcache://", "memcached://"] {
        if let Some(rest) = addr.strip_prefix(scheme) {
            return format!("tcp://{rest}");
        }
    }
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("tcp://{addr}")
    }
}

/// Whether a `version` reply is 1.6 or later (a version that cannot be parsed, as from a proxy,
/// is given the benefit of the doubt).
fn meta_protocol_version(version: &str) -> bool {
    let mut parts = version.trim().split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= (1, 6),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use session_core::driver::SessionId;

    use super::*;

    #[test]
    fn prefixes() {
        assert!(check_prefix("").is_ok());
        assert!(check_prefix(DEFAULT_PREFIX).is_ok());
        assert!(check_prefix("ci_session:").is_ok());
        assert!(check_prefix(&"p".repeat(MAX_PREFIX_LEN)).is_ok());
        for bad in [
            "has space",
            "tab\t",
            "new\nline",
            "nul\0",
            "é",
            &"p".repeat(MAX_PREFIX_LEN + 1),
        ] {
            assert!(
                matches!(check_prefix(bad), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn longest_keys_fit_memcached() {
        let longest = MAX_PREFIX_LEN + SessionId::MAX_LEN + ".lock".len();
        assert!(longest <= 250, "{longest}");
    }

    #[test]
    fn addresses_and_versions() {
        assert_eq!(
            normalize_addr("memcache://127.0.0.1:11211"),
            "tcp://127.0.0.1:11211"
        );
        assert_eq!(normalize_addr("memcached://h:1/"), "tcp://h:1");
        assert_eq!(normalize_addr("127.0.0.1:11211"), "tcp://127.0.0.1:11211");
        assert_eq!(normalize_addr("tcp://h:1"), "tcp://h:1");
        assert_eq!(normalize_addr("unix:///run/mc.sock"), "unix:///run/mc.sock");
        assert!(meta_protocol_version("1.6.18\r\n"));
        assert!(meta_protocol_version("1.10.0"));
        assert!(!meta_protocol_version("1.5.22"));
        assert!(meta_protocol_version("proxy"));
    }
}
