//! The key layout: every key of one session shares the hash tag `{<id>}`, so a session lives in
//! one Redis Cluster slot and multi-key scripts on it never fail with `CROSSSLOT`.

use session_core::driver::{Error, Result, SessionId};

/// Characters a prefix may not hold: hash-tag braces (they would move the slot of every key) and
/// the glob characters of `SCAN MATCH` (they would make the scan pattern match other stores).
const FORBIDDEN_IN_PREFIX: &[char] = &['{', '}', '*', '?', '[', ']', '\\'];

/// Longest accepted key prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 128;

/// The driver-private field of a session hash that holds the session's deadline: unix
/// milliseconds, decimal ASCII, on the writing client's clock (now + TTL), written by every script
/// that sets the hash's expiry. It starts with byte 0xFF, which never occurs in UTF-8, so no session key (a Rust
/// `String`) can be named like it. Every read drops it; a hash never holds it alone.
pub(crate) const DEADLINE_FIELD: &[u8] = b"\xffdeadline";

/// Checks a key prefix: 1 to [`MAX_PREFIX_LEN`] bytes, without hash-tag braces (`{}`: they
/// would move the slot of every key), glob characters (`*?[]\`: they would widen the
/// `SCAN MATCH` pattern `<prefix>:*` to other prefixes' keys), whitespace or control characters.
/// [`Error::InvalidInput`] says which rule failed.
///
/// ```
/// use session_redis::client::check_prefix;
///
/// assert!(check_prefix("myapp:sess").is_ok());
/// assert!(check_prefix("tenant-*").is_err());
/// ```
pub fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err(Error::InvalidInput(format!(
            "redis key prefix is {} bytes, 1 to {MAX_PREFIX_LEN} allowed",
            prefix.len()
        )));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| FORBIDDEN_IN_PREFIX.contains(c) || c.is_whitespace() || c.is_control())
    {
        return Err(Error::InvalidInput(format!(
            "redis key prefix may not contain {c:?} (no braces, glob characters or whitespace)"
        )));
    }
    Ok(())
}

/// Builds the Redis key names of one store.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Checks `prefix` ([`check_prefix`]) and makes the key builder.
    pub(crate) fn new(prefix: &str) -> Result<Self> {
        check_prefix(prefix)?;
        Ok(Keys {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:{`: what every per-session key starts with (also handed to Lua scripts).
    pub(crate) fn session_base(&self) -> String {
        format!("{}:{{", self.prefix)
    }

    /// `<prefix>:{<id>}:<kind>`, built without the formatting machinery (this runs twice per
    /// request).
    fn of_session(&self, id: &SessionId, kind: &str) -> String {
        let id = id.as_str();
        let mut key = String::with_capacity(self.prefix.len() + id.len() + kind.len() + 4);
        key.push_str(&self.prefix);
        key.push_str(":{");
        key.push_str(id);
        key.push_str("}:");
        key.push_str(kind);
        key
    }

    /// The hash holding the session's keys: `<prefix>:{<id>}:data`.
    pub(crate) fn data(&self, id: &SessionId) -> String {
        self.of_session(id, "data")
    }

    /// The string holding the session's owner: `<prefix>:{<id>}:owner`.
    pub(crate) fn owner_of(&self, id: &SessionId) -> String {
        self.of_session(id, "owner")
    }

    /// The lease lock of the session: `<prefix>:{<id>}:lock`.
    pub(crate) fn lock(&self, id: &SessionId) -> String {
        self.of_session(id, "lock")
    }

    /// The set of an owner's session ids: `<prefix>:owner:{<owner>}`.
    pub(crate) fn owner_set(&self, owner: &str) -> String {
        format!("{}:owner:{{{owner}}}", self.prefix)
    }

    /// The `SCAN MATCH` pattern of the session hashes: `<prefix>:{*}:data`.
    pub(crate) fn scan_pattern(&self) -> String {
        format!("{}:{{*}}:data", self.prefix)
    }

    /// The session id of a session hash key found by `SCAN`, if it is one of ours.
    pub(crate) fn id_of_data_key(&self, key: &[u8]) -> Option<SessionId> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(":{")?;
        let id = rest.strip_suffix("}:data")?;
        SessionId::parse(id).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_key_shares_the_hash_tag() {
        let keys = Keys::new("app:sess").expect("valid prefix");
        let id = SessionId::parse("abcdefghijklmnop").expect("valid id");
        assert_eq!(keys.data(&id), "app:sess:{abcdefghijklmnop}:data");
        assert_eq!(keys.owner_of(&id), "app:sess:{abcdefghijklmnop}:owner");
        assert_eq!(keys.lock(&id), "app:sess:{abcdefghijklmnop}:lock");
        assert_eq!(keys.owner_set("u1"), "app:sess:owner:{u1}");
        assert_eq!(
            keys.id_of_data_key(keys.data(&id).as_bytes()),
            Some(id.clone())
        );
        assert_eq!(keys.id_of_data_key(keys.lock(&id).as_bytes()), None);
        assert_eq!(keys.id_of_data_key(b"other:{abcdefghijklmnop}:data"), None);
        assert_eq!(keys.id_of_data_key(b"app:sess:{a}b}:data"), None);
    }

    #[test]
    fn the_deadline_field_is_no_session_key() {
        // Any byte string starting with 0xFF is invalid UTF-8.
        assert!(String::from_utf8(DEADLINE_FIELD.to_vec()).is_err());
        assert_eq!(DEADLINE_FIELD[0], 0xff);
    }

    #[test]
    fn bad_prefixes_are_rejected() {
        for bad in ["", "a{b", "a}b", "a*", "a?", "a[b]", "a b", "a\\b", "a\nb"] {
            assert!(
                matches!(Keys::new(bad), Err(Error::InvalidInput(_))),
                "{bad:?} accepted"
            );
        }
        assert!(Keys::new(&"p".repeat(MAX_PREFIX_LEN + 1)).is_err());
        assert!(Keys::new("session").is_ok());
        assert!(Keys::new("tenant-1:sess").is_ok());
    }
}
