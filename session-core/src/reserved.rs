//! The keys the session layer stores next to the user's (all under [`RESERVED_PREFIX`]), the
//! checks that keep user keys out of that space, and the compact positional encoding of the
//! reserved values.
//!
//! | key | value |
//! |---|---|
//! | `__s.meta` | [`StoredMeta`]: created at, logged in at, id issued at, creating client |
//! | `__s.seen` | [`StoredSeen`]: last seen time and IP |
//! | `__s.user` | the owner after a login |
//! | `__s.f.<key>` | marks `<key>` as flash data |
//! | `__s.t.<key>` | the deadline (unix ms) of temp value `<key>` |
//! | `__s.retired` | on an old id after a regeneration: the end of its grace period |
//! | `__s.ttl` | the session's own idle TTL (ms), set by [`Session::set_idle_ttl`](crate::Session::set_idle_ttl) |

use std::net::IpAddr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::check;
use crate::error::{Error, Result};
use crate::meta::{ClientInfo, SessionMeta};
use crate::snapshot::{Snapshot, ValueRef};
use crate::storage::ChangeSet;
use crate::value::{Data, Value};

/// Prefix of every key the session layer keeps for itself. User keys starting with it are
/// rejected with [`Error::InvalidInput`], and such keys never show in
/// [`Session::keys`](crate::Session::keys) or [`Session::len`](crate::Session::len).
pub const RESERVED_PREFIX: &str = "__s.";

/// Creation metadata (rarely rewritten).
pub(crate) const META: &str = "__s.meta";
/// Last seen time and IP (rewritten by each write and each due touch).
pub(crate) const SEEN: &str = "__s.seen";
/// The owner after a login.
pub(crate) const USER: &str = "__s.user";
/// Set on an old id after a regeneration: the unix-ms deadline of its grace period.
pub(crate) const RETIRED: &str = "__s.retired";
/// The session's own idle TTL in ms (instead of the manager's), when it has one.
pub(crate) const TTL: &str = "__s.ttl";
/// Prefix of flash marks: `__s.f.<key>` marks `<key>` as flash data.
pub(crate) const FLASH: &str = "__s.f.";
/// Prefix of temp marks: `__s.t.<key>` holds the unix-ms deadline of temp value `<key>`.
pub(crate) const TEMP: &str = "__s.t.";

/// Whether `key` is one of the session layer's own keys.
pub(crate) fn is_reserved(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX)
}

/// Whether `key` is a flash or temp mark.
pub(crate) fn is_mark(key: &str) -> bool {
    is_reserved(key) && (key.starts_with(FLASH) || key.starts_with(TEMP))
}

/// Whether `key` survives [`Session::clear`](crate::Session::clear): the metadata, the login,
/// the session's own TTL and a retirement mark do, user keys and their marks do not.
pub(crate) fn survives_clear(key: &str) -> bool {
    matches!(key, META | SEEN | USER | RETIRED | TTL)
}

/// Whether `key` is bookkeeping only: a session holding nothing else is not worth storing.
pub(crate) fn is_bookkeeping(key: &str) -> bool {
    matches!(key, META | SEEN | RETIRED | TTL)
}

/// Checks a key the user passes: [`check::key`] and not reserved.
pub(crate) fn user_key(key: &str) -> Result<()> {
    check::key(key)?;
    if is_reserved(key) {
        return Err(Error::InvalidInput(format!(
            "keys starting with {RESERVED_PREFIX:?} are reserved for the session layer"
        )));
    }
    Ok(())
}

/// The flash mark key of `key`, checked for length.
pub(crate) fn flash_mark(key: &str) -> Result<String> {
    let mark = format!("{FLASH}{key}");
    check::key(&mark)?;
    Ok(mark)
}

/// The temp mark key of `key`, checked for length.
pub(crate) fn temp_mark(key: &str) -> Result<String> {
    let mark = format!("{TEMP}{key}");
    check::key(&mark)?;
    Ok(mark)
}

/// The value of a mark whose presence is all that counts.
pub(crate) fn flag() -> Value {
    Value::from_bytes(vec![0xc3]) // MessagePack `true`
}

/// `__s.meta` as stored (times in unix milliseconds).
///
/// `pub` only for the fuzz targets (`session_core::fuzzing`); the module is private.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMeta {
    /// When the session was created.
    pub created: u64,
    /// When its owner logged in, if they did.
    pub auth: Option<u64>,
    /// When the current id was issued.
    pub issued: u64,
    /// The client the session was created from.
    pub client: ClientInfo,
}

impl StoredMeta {
    pub(crate) fn new(now: u64, client: ClientInfo) -> Self {
        StoredMeta {
            created: now,
            auth: None,
            issued: now,
            client,
        }
    }

    /// Start of the absolute lifetime: the login if any, else the creation.
    pub(crate) fn started(&self) -> u64 {
        self.auth.unwrap_or(self.created)
    }
}

/// `__s.seen` as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSeen {
    /// The last write or touch (unix ms).
    pub at: u64,
    /// The IP of that request.
    pub ip: Option<IpAddr>,
}

fn decode_reserved<T: serde::de::DeserializeOwned>(
    value: ValueRef<'_>,
    key: &str,
    backend: &'static str,
) -> Result<Option<T>> {
    value
        .decode()
        .map(Some)
        .map_err(|e| corrupt(backend, key, e))
}

fn corrupt(backend: &'static str, key: &str, e: Error) -> Error {
    Error::corrupt(backend, format!("session key {key}: {e}"))
}

/// A reserved value kept as stored until something needs it decoded.
///
/// `__s.meta` and `__s.seen` are read this way: a request that only reads or writes user keys
/// never looks at them (decoding both on every load was a fifth of the instructions of a
/// memory-store read, issue 14), while the metadata view, a login, a regeneration and the
/// checks that compare the metadata ([`Config::absolute_lifetime`](crate::Config),
/// [`Config::rotate_every`](crate::Config), the fingerprint checks) decode it once. A stored value
/// that does not decode is [`Error::Corrupt`] from the first call that needs it.
#[derive(Clone, Debug)]
pub(crate) struct Lazy<T> {
    /// The stored bytes, until decoded (`None`: absent, or set by this request).
    raw: Option<Value>,
    /// The decoded value (set on first use, or by this request).
    decoded: OnceLock<T>,
}

impl<T> Default for Lazy<T> {
    fn default() -> Self {
        Lazy {
            raw: None,
            decoded: OnceLock::new(),
        }
    }
}

impl<T: serde::de::DeserializeOwned> Lazy<T> {
    /// A value as stored, decoded on first use.
    fn stored(raw: Value) -> Self {
        Lazy {
            raw: Some(raw),
            decoded: OnceLock::new(),
        }
    }

    /// A value this request set (or decoded already).
    fn known(value: T) -> Self {
        Lazy {
            raw: None,
            decoded: OnceLock::from(value),
        }
    }

    /// Whether the value is present (decoded or not).
    pub(crate) fn is_some(&self) -> bool {
        self.raw.is_some() || self.decoded.get().is_some()
    }

    /// The value, decoded on the first call; [`Error::Corrupt`] naming `key` and `backend` if
    /// the stored bytes do not decode.
    fn get(&self, key: &str, backend: &'static str) -> Result<Option<&T>> {
        if let Some(v) = self.decoded.get() {
            return Ok(Some(v));
        }
        let Some(raw) = &self.raw else {
            return Ok(None);
        };
        let v = raw.decode().map_err(|e| corrupt(backend, key, e))?;
        Ok(Some(self.decoded.get_or_init(|| v)))
    }
}

/// The reserved keys of a loaded session: the small ones decoded, the metadata (`Lazy`) when
/// first needed.
#[derive(Clone, Debug, Default)]
pub struct Reserved {
    /// `__s.meta`: read it with [`meta`](Self::meta).
    pub(crate) meta: Lazy<StoredMeta>,
    /// `__s.seen`: read it with [`seen`](Self::seen).
    pub(crate) seen: Lazy<StoredSeen>,
    /// `__s.user`: the owner after a login.
    pub user: Option<String>,
    /// `__s.retired`: the end of an old id's grace period (unix ms).
    pub retired: Option<u64>,
    /// The session's own idle TTL in ms (`None`: the manager's).
    pub ttl: Option<u64>,
    /// Whether a flash or temp mark (`__s.f.*`, `__s.t.*`) is among the keys read: most
    /// sessions have none, and then nothing has to look for them again.
    pub marks: bool,
    /// The backend the keys were read from, named in a [`Error::Corrupt`].
    pub(crate) backend: &'static str,
}

impl Reserved {
    /// Reads the reserved keys of `data`: `__s.user`, `__s.retired` and `__s.ttl` decoded
    /// ([`Error::Corrupt`] if one does not decode), `__s.meta` and `__s.seen` kept for
    /// [`meta`](Self::meta) and [`seen`](Self::seen).
    ///
    /// One pass over the keys rather than a hash lookup per key: a session holds a handful.
    pub fn read(data: &Data, backend: &'static str) -> Result<Self> {
        Self::read_entries(
            data.iter().map(|(k, v)| (k.as_bytes(), ValueRef::from(v))),
            backend,
        )
    }

    /// [`read`](Self::read) of a loaded [`Snapshot`].
    pub fn read_snapshot(data: &Snapshot, backend: &'static str) -> Result<Self> {
        Self::read_entries(data.iter_prefixed_bytes(RESERVED_PREFIX), backend)
    }

    /// The keys are compared as bytes: the pass runs on every load, and only the keys it
    /// knows matter.
    fn read_entries<'a>(
        entries: impl Iterator<Item = (&'a [u8], ValueRef<'a>)>,
        backend: &'static str,
    ) -> Result<Self> {
        let mut r = Reserved {
            backend,
            ..Reserved::default()
        };
        for (key, value) in entries {
            if !key.starts_with(RESERVED_PREFIX.as_bytes()) {
                continue;
            }
            if key == META.as_bytes() {
                r.meta = Lazy::stored(value.to_value());
            } else if key == SEEN.as_bytes() {
                r.seen = Lazy::stored(value.to_value());
            } else if key == USER.as_bytes() {
                r.user = decode_reserved(value, USER, backend)?;
            } else if key == RETIRED.as_bytes() {
                r.retired = decode_reserved(value, RETIRED, backend)?;
            } else if key == TTL.as_bytes() {
                // the session layer writes only valid TTLs; a zero one means "the manager's",
                // and a longer one than any store takes is cut to the maximum
                let max = u64::try_from(check::MAX_TTL.as_millis()).unwrap_or(u64::MAX);
                r.ttl = decode_reserved::<u64>(value, TTL, backend)?
                    .filter(|&t| t > 0)
                    .map(|t| t.min(max));
            } else {
                r.marks |= key.starts_with(FLASH.as_bytes()) || key.starts_with(TEMP.as_bytes());
            }
        }
        Ok(r)
    }

    /// `__s.meta`, decoded on the first call; [`Error::Corrupt`] if it does not decode.
    pub fn meta(&self) -> Result<Option<&StoredMeta>> {
        self.meta.get(META, self.backend)
    }

    /// Whether `__s.meta` is present (without decoding it).
    pub fn has_meta(&self) -> bool {
        self.meta.is_some()
    }

    /// `__s.seen`, decoded on the first call; [`Error::Corrupt`] if it does not decode.
    pub fn seen(&self) -> Result<Option<&StoredSeen>> {
        self.seen.get(SEEN, self.backend)
    }

    /// Records the metadata this request writes.
    pub(crate) fn set_meta(&mut self, meta: StoredMeta) {
        self.meta = Lazy::known(meta);
    }

    /// Records the "last seen" this request writes.
    pub(crate) fn set_seen(&mut self, seen: StoredSeen) {
        self.seen = Lazy::known(seen);
    }

    /// Reserved keys holding only `meta` (decoded), for tests.
    #[cfg(test)]
    pub(crate) fn with_meta(meta: Option<StoredMeta>) -> Self {
        Reserved {
            meta: meta.map(Lazy::known).unwrap_or_default(),
            ..Reserved::default()
        }
    }

    /// The public metadata view; `None` for a session without `__s.meta`.
    pub fn public(&self) -> Result<Option<SessionMeta>> {
        let Some(m) = self.meta()? else {
            return Ok(None);
        };
        let seen = self.seen()?;
        let seen_at = seen.map_or(m.issued, |s| s.at);
        Ok(Some(SessionMeta {
            created_at: check::from_unix_millis(m.created),
            authenticated_at: m.auth.map(check::from_unix_millis),
            id_issued_at: check::from_unix_millis(m.issued),
            last_seen: check::from_unix_millis(seen_at),
            client: m.client.clone(),
            last_ip: seen.and_then(|s| s.ip).or(m.client.ip),
            user: self.user.clone(),
        }))
    }
}

/// Encodes a reserved value compactly: struct fields by position (a MessagePack array), not by
/// name as [`Value::encode`] does for user values. Smaller to store and cheaper to decode on every
/// load; [`Reserved::read`] also reads the by-name form (rmp-serde decodes a struct from either).
pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Value> {
    let mut buf = crate::value::EncodeBuf::new();
    rmp_serde::encode::write(&mut buf, v).map_err(Error::Encode)?;
    Ok(Value::from(buf.0))
}

/// The change that retires an old id after a regeneration: `__s.retired` set to `until` (unix
/// ms), written only if the old session still exists.
pub(crate) fn retirement(until: u64) -> Result<ChangeSet> {
    let mut set = Data::new();
    set.insert(RETIRED.to_string(), encode(&until)?);
    Ok(ChangeSet {
        set,
        only_if_exists: true,
        ..ChangeSet::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_values_are_positional_and_the_named_form_still_reads() {
        let m = StoredMeta {
            created: 1,
            auth: Some(2),
            issued: 3,
            client: ClientInfo::new("10.0.0.1".parse().ok(), Some("ua")),
        };
        let compact = encode(&m).expect("encode");
        let named = Value::encode(&m).expect("encode");
        assert!(compact.len() < named.len(), "{compact:?} vs {named:?}");
        assert_eq!(compact.as_bytes()[0] & 0xf0, 0x90, "a MessagePack fixarray");
        for v in [compact, named] {
            let data: Data = [(META.to_string(), v)].into();
            let r = Reserved::read(&data, "test").expect("read");
            assert_eq!(r.meta().expect("decodes"), Some(&m));
        }
    }

    #[test]
    fn reserved_keys_are_rejected_as_user_keys() {
        assert!(user_key("cart").is_ok());
        assert!(user_key("").is_ok());
        assert!(matches!(user_key("__s.meta"), Err(Error::InvalidInput(_))));
        assert!(matches!(user_key("__s.x"), Err(Error::InvalidInput(_))));
        assert!(user_key("__sx").is_ok());
        assert!(user_key("a\0").is_err());
        // the mark adds the prefix, so a key at the limit cannot be flash data
        let long = "k".repeat(check::MAX_KEY_LEN);
        assert!(user_key(&long).is_ok());
        assert!(flash_mark(&long).is_err());
        assert!(temp_mark("k").is_ok());
    }

    #[test]
    fn key_classes() {
        assert!(is_mark("__s.f.a") && is_mark("__s.t.a"));
        assert!(!is_mark(META) && !is_mark("f.a"));
        for k in [META, SEEN, USER, RETIRED, TTL] {
            assert!(survives_clear(k), "{k}");
        }
        assert!(is_bookkeeping(TTL), "a TTL alone creates no session");
        assert!(!survives_clear("__s.f.a") && !survives_clear("a"));
        assert!(is_bookkeeping(META) && is_bookkeeping(SEEN) && is_bookkeeping(RETIRED));
        assert!(!is_bookkeeping(USER), "a login is worth storing");
        assert!(!is_bookkeeping("a") && !is_bookkeeping("__s.f.a"));
    }

    #[test]
    fn retirement_writes_only_the_mark_and_only_if_the_session_exists() {
        let cs = retirement(42).expect("encode");
        assert!(cs.only_if_exists && !cs.clear && cs.remove.is_empty());
        assert_eq!(cs.set.len(), 1);
        let r = Reserved::read(&cs.set, "test").expect("read");
        assert_eq!(r.retired, Some(42));
    }

    #[test]
    fn a_stored_ttl_is_read_within_the_valid_range() {
        let read = |ms: u64| {
            let data: Data = [(TTL.to_string(), encode(&ms).expect("encode"))].into();
            Reserved::read(&data, "test").expect("read").ttl
        };
        assert_eq!(read(1_500), Some(1_500));
        assert_eq!(read(0), None, "zero: the manager's TTL");
        let max = check::ttl_millis(check::MAX_TTL).expect("valid");
        assert_eq!(read(u64::MAX), Some(max));
        let bad: Data = [(TTL.to_string(), Value::from_bytes(vec![0xc1]))].into();
        assert!(matches!(
            Reserved::read(&bad, "test"),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn corrupt_reserved_key_is_an_error() {
        let mut d = Data::new();
        d.insert(USER.to_string(), Value::from_bytes(vec![0xc1]));
        assert!(matches!(
            Reserved::read(&d, "memory"),
            Err(Error::Corrupt { .. })
        ));
        // the metadata is decoded when first needed: the error comes then, and every time
        for key in [META, SEEN] {
            let mut d = Data::new();
            d.insert(
                META.to_string(),
                encode(&StoredMeta::new(5, ClientInfo::default())).expect("encode"),
            );
            d.insert(key.to_string(), Value::from_bytes(vec![0xc1]));
            let r = Reserved::read(&d, "memory").expect("read keeps the bytes");
            assert!(r.has_meta());
            for _ in 0..2 {
                match r.public() {
                    Err(Error::Corrupt { backend, reason }) => {
                        assert_eq!(backend, "memory");
                        assert!(reason.contains(key), "{reason}");
                    }
                    other => panic!("{key}: {other:?}"),
                }
            }
        }
        let mut ok = Data::new();
        ok.insert(
            META.into(),
            encode(&StoredMeta::new(5, ClientInfo::default())).expect("encode"),
        );
        ok.insert(USER.into(), encode(&"u1").expect("encode"));
        let r = Reserved::read(&ok, "memory").expect("read");
        let p = r.public().expect("decodes").expect("meta");
        assert_eq!(p.user.as_deref(), Some("u1"));
        assert_eq!(p.last_seen, check::from_unix_millis(5));
    }

    #[test]
    fn marks_are_noticed_in_the_same_pass() {
        let read = |key: &str| {
            let data: Data = [(key.to_string(), flag())].into();
            Reserved::read(&data, "test").expect("read").marks
        };
        assert!(read("__s.f.a") && read("__s.t.a"));
        assert!(!read(USER.replace("user", "other").as_str()) && !read("a"));
    }
}
