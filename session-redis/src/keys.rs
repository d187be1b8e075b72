//! The key layout: every key of one session shares the hash tag `{<id>}`, so a session lives in
//! one Redis Cluster slot and multi-key scripts on it never fail with `CROSSSLOT`.

use std::sync::LazyLock;

use session_core::driver::{Error, Result, SessionId};

/// Characters a prefix may not hold: hash-tag braces (they would move the slot of every key) and
/// the glob characters of `SCAN MATCH` (they would make the scan pattern match other stores).
const FORBIDDEN_IN_PREFIX: &[char] = &['{', '}', '*', '?', '[', ']', '\\'];

/// Longest accepted key prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 128;

/// The driver-private field of a session hash that holds the session's deadline and the session
/// layer's two bookkeeping keys ([`FOLDED_SEEN`], [`FOLDED_META`]), written by every script that
/// sets the hash's expiry or one of those keys:
///
/// ```text
/// <deadline>,<length of __s.seen or ->,<length of __s.meta or ->,<__s.seen><__s.meta>
/// ```
///
/// The deadline is unix milliseconds, decimal ASCII, on the writing client's clock (now + TTL);
/// a length is decimal, `-` where the key is absent. A value without a comma is a deadline
/// alone, as written before the keys were folded (such a hash holds them as fields, until its
/// next write moves them). It starts with byte 0xFF, which never occurs in UTF-8, so no session
/// key (a Rust `String`) can be named like it. Every read drops it (and hands out the keys it
/// folds); a hash never holds it without a session key.
///
/// Why fold: every read of a session is one `HGETALL`, and each field of its reply costs the
/// client more than its bytes (redis-rs parses each element into its own allocation) and the
/// server an entry to walk. The session layer writes `__s.seen` on every save and `__s.meta` on
/// every create; as three fields, they and the deadline made a session of five keys eight fields;
/// folded, six (see the crate's Performance notes).
pub(crate) const DEADLINE_FIELD: &[u8] = b"\xffdeadline";

/// The session layer's "last seen" key (`session_core`'s `__s.seen`), kept inside
/// [`DEADLINE_FIELD`] instead of a field of its own.
pub(crate) const FOLDED_SEEN: &str = "__s.seen";

/// The session layer's metadata key (`session_core`'s `__s.meta`), kept inside
/// [`DEADLINE_FIELD`] instead of a field of its own.
pub(crate) const FOLDED_META: &str = "__s.meta";

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

/// Number of hash slots of a Redis Cluster.
pub(crate) const SLOTS: u16 = 16_384;

/// The hash slot of a hash tag (the text between the braces): CRC16 (XMODEM) modulo 16,384, as
/// Redis Cluster computes it.
pub(crate) fn slot_of(tag: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes()) % SLOTS
}

/// For every slot, the shortest lowercase hex string (at most 5 characters) whose hash tag falls
/// in that slot: the tag of the slot's live index on a cluster, so the index entry of a session
/// sits in the session's own slot. Computed once (about 300,000 CRCs, a few milliseconds).
static SLOT_TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut tags = vec![String::new(); usize::from(SLOTS)];
    let mut missing = usize::from(SLOTS);
    let mut n = 0u32;
    while missing > 0 {
        let tag = format!("{n:x}");
        let slot = &mut tags[usize::from(slot_of(&tag))];
        if slot.is_empty() {
            *slot = tag;
            missing -= 1;
        }
        n += 1;
    }
    tags
});

/// Builds the Redis key names of one store.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
    /// Whether the store runs on a cluster: the live index is one key per slot there, one key on
    /// a single node.
    cluster: bool,
}

impl Keys {
    /// Checks `prefix` ([`check_prefix`]) and makes the key builder of a store on one server
    /// (`cluster` false) or a cluster.
    pub(crate) fn new(prefix: &str, cluster: bool) -> Result<Self> {
        check_prefix(prefix)?;
        Ok(Keys {
            prefix: prefix.to_owned(),
            cluster,
        })
    }

    /// Whether the keys are a cluster's (a live index per slot).
    pub(crate) fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The live index that holds `id`: on one server `<prefix>:live`, on a cluster
    /// `<prefix>:live:{<tag>}` with the tag of the session's own slot, so every script on the
    /// session can update the index in the same step.
    pub(crate) fn live(&self, id: &SessionId) -> String {
        self.live_of_slot(if self.cluster {
            slot_of(id.as_str())
        } else {
            0
        })
    }

    /// The live index of one cluster slot, `<prefix>:live:{<tag of the slot>}`; on a single
    /// node, whatever the slot, the one index `<prefix>:live`.
    pub(crate) fn live_of_slot(&self, slot: u16) -> String {
        if !self.cluster {
            return format!("{}:live", self.prefix);
        }
        format!(
            "{}:live:{{{}}}",
            self.prefix,
            SLOT_TAGS[usize::from(slot % SLOTS)]
        )
    }

    /// Every live index of the store: the one key of a single node, or one per slot of a
    /// cluster, in slot order.
    pub(crate) fn live_all(&self) -> Vec<String> {
        let slots = if self.cluster { SLOTS } else { 1 };
        (0..slots).map(|slot| self.live_of_slot(slot)).collect()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_key_shares_the_hash_tag() {
        let keys = Keys::new("app:sess", false).expect("valid prefix");
        let id = SessionId::parse("abcdefghijklmnop").expect("valid id");
        assert_eq!(keys.data(&id), "app:sess:{abcdefghijklmnop}:data");
        assert_eq!(keys.owner_of(&id), "app:sess:{abcdefghijklmnop}:owner");
        assert_eq!(keys.lock(&id), "app:sess:{abcdefghijklmnop}:lock");
        assert_eq!(keys.owner_set("u1"), "app:sess:owner:{u1}");
    }

    #[test]
    fn the_live_index_of_a_session_shares_its_slot() {
        // The reference value of Redis Cluster's CRC16: "123456789" is 0x31C3.
        assert_eq!(slot_of("123456789"), 0x31C3);
        let single = Keys::new("app", false).expect("valid prefix");
        let cluster = Keys::new("app", true).expect("valid prefix");
        for _ in 0..200 {
            let id = SessionId::generate().expect("randomness");
            assert_eq!(single.live(&id), "app:live");
            let live = cluster.live(&id);
            let tag = live
                .strip_prefix("app:live:{")
                .and_then(|t| t.strip_suffix('}'))
                .expect("a tagged index key");
            assert_eq!(slot_of(tag), slot_of(id.as_str()), "{live} for {id}");
        }
        let all = cluster.live_all();
        assert_eq!(all.len(), usize::from(SLOTS));
        for (slot, key) in all.iter().enumerate().step_by(997) {
            let tag = &key["app:live:{".len()..key.len() - 1];
            assert_eq!(usize::from(slot_of(tag)), slot);
        }
        assert_eq!(single.live_all(), vec!["app:live".to_owned()]);
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
                matches!(Keys::new(bad, false), Err(Error::InvalidInput(_))),
                "{bad:?} accepted"
            );
        }
        assert!(Keys::new(&"p".repeat(MAX_PREFIX_LEN + 1), false).is_err());
        assert!(Keys::new("session", true).is_ok());
        assert!(Keys::new("tenant-1:sess", false).is_ok());
    }
}
