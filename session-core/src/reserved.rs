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
        .map_err(|e| Error::corrupt(backend, format!("session key {key}: {e}")))
}

/// The reserved keys of a loaded session, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reserved {
    /// `__s.meta`.
    pub meta: Option<StoredMeta>,
    /// `__s.seen`.
    pub seen: Option<StoredSeen>,
    /// `__s.user`: the owner after a login.
    pub user: Option<String>,
    /// `__s.retired`: the end of an old id's grace period (unix ms).
    pub retired: Option<u64>,
    /// The session's own idle TTL in ms (`None`: the manager's).
    pub ttl: Option<u64>,
}

impl Reserved {
    /// Decodes the reserved keys of `data`; a reserved key that does not decode is
    /// [`Error::Corrupt`].
    ///
    /// One pass over the keys rather than four hash lookups: a session holds a handful of keys,
    /// and [`State::adopt`](crate::state::State) walks them right after anyway.
    pub fn read(data: &Data, backend: &'static str) -> Result<Self> {
        Self::read_entries(
            data.iter().map(|(k, v)| (k.as_str(), ValueRef::from(v))),
            backend,
        )
    }

    /// [`read`](Self::read) of a loaded [`Snapshot`].
    pub fn read_snapshot(data: &Snapshot, backend: &'static str) -> Result<Self> {
        Self::read_entries(data.iter_prefixed(RESERVED_PREFIX), backend)
    }

    fn read_entries<'a>(
        entries: impl Iterator<Item = (&'a str, ValueRef<'a>)>,
        backend: &'static str,
    ) -> Result<Self> {
        let mut r = Reserved::default();
        for (key, value) in entries {
            if !is_reserved(key) {
                continue;
            }
            match key {
                META => r.meta = decode_reserved(value, META, backend)?,
                SEEN => r.seen = decode_reserved(value, SEEN, backend)?,
                USER => r.user = decode_reserved(value, USER, backend)?,
                RETIRED => r.retired = decode_reserved(value, RETIRED, backend)?,
                TTL => {
                    // the session layer writes only valid TTLs; a zero one means "the
                    // manager's", and a longer one than any store takes is cut to the maximum
                    let max = u64::try_from(check::MAX_TTL.as_millis()).unwrap_or(u64::MAX);
                    r.ttl = decode_reserved::<u64>(value, TTL, backend)?
                        .filter(|&t| t > 0)
                        .map(|t| t.min(max))
                }
                _ => {}
            }
        }
        Ok(r)
    }

    /// The public metadata view; `None` for a session without `__s.meta`.
    pub fn public(&self) -> Option<SessionMeta> {
        let m = self.meta.as_ref()?;
        let seen_at = self.seen.as_ref().map_or(m.issued, |s| s.at);
        Some(SessionMeta {
            created_at: check::from_unix_millis(m.created),
            authenticated_at: m.auth.map(check::from_unix_millis),
            id_issued_at: check::from_unix_millis(m.issued),
            last_seen: check::from_unix_millis(seen_at),
            client: m.client.clone(),
            last_ip: self.seen.as_ref().and_then(|s| s.ip).or(m.client.ip),
            user: self.user.clone(),
        })
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
            assert_eq!(
                Reserved::read(&data, "test").expect("read").meta,
                Some(m.clone())
            );
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
        d.insert(META.to_string(), Value::from_bytes(vec![0xc1]));
        assert!(matches!(
            Reserved::read(&d, "memory"),
            Err(Error::Corrupt { .. })
        ));
        let mut ok = Data::new();
        ok.insert(
            META.into(),
            encode(&StoredMeta::new(5, ClientInfo::default())).expect("encode"),
        );
        ok.insert(USER.into(), encode(&"u1").expect("encode"));
        let r = Reserved::read(&ok, "memory").expect("read");
        let p = r.public().expect("meta");
        assert_eq!(p.user.as_deref(), Some("u1"));
        assert_eq!(p.last_seen, check::from_unix_millis(5));
    }
}
