//! Session metadata, client info, the reserved keys the session layer stores next to user data,
//! and the expiry arithmetic (idle and absolute timeouts, touch policy).

use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::check;
use crate::error::{Error, Result};
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
/// Prefix of flash marks: `__s.f.<key>` marks `<key>` as flash data.
pub(crate) const FLASH: &str = "__s.f.";
/// Prefix of temp marks: `__s.t.<key>` holds the unix-ms deadline of temp value `<key>`.
pub(crate) const TEMP: &str = "__s.t.";

/// Longest user agent kept in the metadata, in bytes; longer ones are cut at a char boundary.
pub const MAX_USER_AGENT_LEN: usize = 512;

/// Whether `key` is one of the session layer's own keys.
pub(crate) fn is_reserved(key: &str) -> bool {
    key.starts_with(RESERVED_PREFIX)
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

/// What the caller knows about the client of a request, kept in the session metadata (for an
/// "active devices" page) and compared by the optional fingerprint checks
/// ([`Config::match_ip`](crate::Config::match_ip),
/// [`Config::match_user_agent`](crate::Config::match_user_agent)).
///
/// ```
/// use session_core::ClientInfo;
///
/// let c = ClientInfo::new(Some("203.0.113.9".parse().unwrap()), Some("curl/8.5"));
/// assert_eq!(c.user_agent.as_deref(), Some("curl/8.5"));
/// assert_eq!(ClientInfo::default().ip, None);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The client's IP address, as the HTTP layer determined it.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, cut to [`MAX_USER_AGENT_LEN`] bytes.
    pub user_agent: Option<String>,
}

impl ClientInfo {
    /// Client info from an IP and a user agent (cut to [`MAX_USER_AGENT_LEN`] bytes).
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        ClientInfo {
            ip,
            user_agent: user_agent.map(|ua| {
                let mut end = ua.len().min(MAX_USER_AGENT_LEN);
                while !ua.is_char_boundary(end) {
                    end -= 1;
                }
                ua[..end].to_string()
            }),
        }
    }

    /// The same info with the user agent cut to [`MAX_USER_AGENT_LEN`] bytes.
    pub(crate) fn normalized(self) -> Self {
        let ip = self.ip;
        ClientInfo::new(ip, self.user_agent.as_deref())
    }
}

/// What the session layer knows about one session: when it started, when it was last seen, and
/// from where. Read it with [`Session::meta`](crate::Session::meta) or, for all sessions of a
/// user, [`Manager::sessions_of`](crate::Manager::sessions_of).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMeta {
    /// When the session was created.
    pub created_at: SystemTime,
    /// When its owner logged in ([`Session::login`](crate::Session::login)), if they did.
    pub authenticated_at: Option<SystemTime>,
    /// When the current id was issued (creation, login or regeneration).
    pub id_issued_at: SystemTime,
    /// The last write, or the last touch when [`Config::track_last_seen`](crate::Config) is on.
    /// At most `(1 - touch_threshold) * idle_ttl` behind the real last request.
    pub last_seen: SystemTime,
    /// The client the session was created from (what the fingerprint checks compare against).
    pub client: ClientInfo,
    /// The IP of the last write or touch.
    pub last_ip: Option<IpAddr>,
    /// The owner, after [`Session::login`](crate::Session::login).
    pub user: Option<String>,
}

/// `__s.meta` as stored (times in unix milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredMeta {
    pub created: u64,
    pub auth: Option<u64>,
    pub issued: u64,
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
pub(crate) struct StoredSeen {
    pub at: u64,
    pub ip: Option<IpAddr>,
}

fn decode_reserved<T: serde::de::DeserializeOwned>(
    value: &Value,
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
pub(crate) struct Reserved {
    pub meta: Option<StoredMeta>,
    pub seen: Option<StoredSeen>,
    pub user: Option<String>,
    pub retired: Option<u64>,
}

impl Reserved {
    /// Decodes the reserved keys of `data`; a reserved key that does not decode is
    /// [`Error::Corrupt`].
    ///
    /// One pass over the keys rather than four hash lookups: a session holds a handful of keys,
    /// and [`State::adopt`](crate::state::State) walks them right after anyway.
    pub(crate) fn read(data: &Data, backend: &'static str) -> Result<Self> {
        let mut r = Reserved::default();
        for (key, value) in data {
            if !is_reserved(key) {
                continue;
            }
            match key.as_str() {
                META => r.meta = decode_reserved(value, META, backend)?,
                SEEN => r.seen = decode_reserved(value, SEEN, backend)?,
                USER => r.user = decode_reserved(value, USER, backend)?,
                RETIRED => r.retired = decode_reserved(value, RETIRED, backend)?,
                _ => {}
            }
        }
        Ok(r)
    }

    /// The public metadata view; `None` for a session without `__s.meta`.
    pub(crate) fn public(&self) -> Option<SessionMeta> {
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
    rmp_serde::to_vec(v).map(Value::from).map_err(Error::Encode)
}

/// Whether a loaded session may be used by this request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Usable.
    Live,
    /// Past its absolute deadline, or an old id past its grace period: treat as expired.
    Expired,
    /// The fingerprint does not match: treat as unknown, leave the record alone.
    Refused,
}

/// Expiry settings in milliseconds, taken from a validated [`Config`](crate::Config).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Timing {
    pub idle: u64,
    pub absolute: Option<u64>,
    pub rotate: Option<u64>,
    pub grace: u64,
    pub touch_threshold: f64,
    pub match_ip: bool,
    pub match_user_agent: bool,
}

impl Timing {
    pub(crate) fn from_config(c: &crate::Config) -> Result<Self> {
        Ok(Timing {
            idle: check::ttl_millis(c.idle_ttl)?,
            absolute: c.absolute_lifetime.map(check::ttl_millis).transpose()?,
            rotate: c.rotate_every.map(check::ttl_millis).transpose()?,
            grace: check::ttl_millis(c.regenerate_grace)?,
            touch_threshold: c.touch_threshold,
            match_ip: c.match_ip,
            match_user_agent: c.match_user_agent,
        })
    }

    /// Whether a loaded session is usable by a request from `client` at `now`.
    pub(crate) fn verdict(&self, r: &Reserved, client: &ClientInfo, now: u64) -> Verdict {
        if r.retired.is_some_and(|until| until <= now) {
            return Verdict::Expired;
        }
        if let (Some(abs), Some(m)) = (self.absolute, &r.meta) {
            if m.started().saturating_add(abs) <= now {
                return Verdict::Expired;
            }
        }
        if self.match_ip && r.meta.as_ref().map(|m| m.client.ip) != Some(client.ip) {
            return Verdict::Refused;
        }
        if self.match_user_agent
            && r.meta.as_ref().map(|m| m.client.user_agent.as_deref())
                != Some(client.user_agent.as_deref())
        {
            return Verdict::Refused;
        }
        Verdict::Live
    }

    /// The TTL of a write at `now`, in ms: the idle TTL, cut by the absolute deadline and by a
    /// retired id's grace deadline; `None` if one of them has passed.
    pub(crate) fn write_ttl(
        &self,
        meta: Option<&StoredMeta>,
        retired: Option<u64>,
        now: u64,
    ) -> Option<u64> {
        let mut ttl = self.idle;
        if let (Some(abs), Some(m)) = (self.absolute, meta) {
            ttl = ttl.min(m.started().saturating_add(abs).saturating_sub(now));
        }
        if let Some(until) = retired {
            ttl = ttl.min(until.saturating_sub(now));
        }
        (ttl > 0).then_some(ttl)
    }

    /// Whether a read-only request should slide the expiry: always when the deadline is unknown,
    /// else when less than `touch_threshold` of the idle TTL remains and the new deadline is
    /// later than the current one.
    pub(crate) fn touch_due(&self, deadline: Option<u64>, ttl: u64, now: u64) -> bool {
        match deadline {
            None => true,
            Some(d) => {
                let remaining = d.saturating_sub(now) as f64;
                remaining < self.idle as f64 * self.touch_threshold && now.saturating_add(ttl) > d
            }
        }
    }

    /// Whether timed rotation is due for a session with this metadata.
    pub(crate) fn rotation_due(&self, r: &Reserved, now: u64) -> bool {
        match (self.rotate, &r.meta) {
            (Some(every), Some(m)) => r.retired.is_none() && m.issued.saturating_add(every) <= now,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use std::time::Duration;

    fn timing(c: Config) -> Timing {
        Timing::from_config(&c).expect("valid config")
    }

    fn meta_at(created: u64, ip: Option<&str>) -> Reserved {
        Reserved {
            meta: Some(StoredMeta::new(
                created,
                ClientInfo::new(ip.map(|i| i.parse().expect("ip")), Some("ua")),
            )),
            ..Reserved::default()
        }
    }

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
    fn user_agent_is_cut_at_a_char_boundary() {
        let ua = "é".repeat(MAX_USER_AGENT_LEN);
        let c = ClientInfo::new(None, Some(&ua));
        let kept = c.user_agent.expect("kept");
        assert!(kept.len() <= MAX_USER_AGENT_LEN && kept.len() >= MAX_USER_AGENT_LEN - 1);
        assert!(kept.chars().all(|ch| ch == 'é'));
    }

    #[test]
    fn write_ttl_is_the_earlier_of_idle_and_absolute() {
        let t = timing(Config {
            idle_ttl: Duration::from_secs(100),
            absolute_lifetime: Some(Duration::from_secs(150)),
            ..Config::default()
        });
        let m = StoredMeta::new(1_000_000, ClientInfo::default());
        // early: idle wins
        assert_eq!(t.write_ttl(Some(&m), None, 1_000_000), Some(100_000));
        // late: the absolute deadline (1_150_000) cuts it
        assert_eq!(t.write_ttl(Some(&m), None, 1_120_000), Some(30_000));
        // past it: expired
        assert_eq!(t.write_ttl(Some(&m), None, 1_150_000), None);
        // a login restarts the absolute lifetime
        let logged = StoredMeta {
            auth: Some(1_100_000),
            ..m.clone()
        };
        assert_eq!(t.write_ttl(Some(&logged), None, 1_150_000), Some(100_000));
        // a retired id lives only to its grace deadline
        assert_eq!(t.write_ttl(Some(&m), Some(1_000_500), 1_000_000), Some(500));
        assert_eq!(t.write_ttl(None, None, 5), Some(100_000));
    }

    #[test]
    fn verdicts() {
        let t = timing(Config {
            absolute_lifetime: Some(Duration::from_secs(10)),
            ..Config::default()
        });
        let r = meta_at(0, Some("10.0.0.1"));
        let c = ClientInfo::new(Some("10.0.0.2".parse().expect("ip")), None);
        assert_eq!(t.verdict(&r, &c, 9_999), Verdict::Live);
        assert_eq!(t.verdict(&r, &c, 10_000), Verdict::Expired);
        let retired = Reserved {
            retired: Some(50),
            ..meta_at(0, None)
        };
        assert_eq!(t.verdict(&retired, &c, 49), Verdict::Live);
        assert_eq!(t.verdict(&retired, &c, 50), Verdict::Expired);

        let ip = timing(Config {
            match_ip: true,
            ..Config::default()
        });
        assert_eq!(ip.verdict(&r, &c, 0), Verdict::Refused);
        let same = ClientInfo::new(Some("10.0.0.1".parse().expect("ip")), Some("other"));
        assert_eq!(ip.verdict(&r, &same, 0), Verdict::Live);
        assert_eq!(
            ip.verdict(&Reserved::default(), &same, 0),
            Verdict::Refused,
            "no metadata to compare against is a refusal"
        );
        let ua = timing(Config {
            match_user_agent: true,
            ..Config::default()
        });
        assert_eq!(ua.verdict(&r, &same, 0), Verdict::Refused);
        assert_eq!(
            ua.verdict(&r, &ClientInfo::new(None, Some("ua")), 0),
            Verdict::Live
        );
    }

    #[test]
    fn touch_only_when_due() {
        let t = timing(Config {
            idle_ttl: Duration::from_secs(100),
            touch_threshold: 0.5,
            ..Config::default()
        });
        // 90 s of 100 left: not due
        assert!(!t.touch_due(Some(90_000), 100_000, 0));
        // 40 s left: due
        assert!(t.touch_due(Some(40_000), 100_000, 0));
        // unknown deadline: always
        assert!(t.touch_due(None, 100_000, 0));
        // capped by the absolute deadline: a touch would not move it
        assert!(!t.touch_due(Some(40_000), 40_000, 0));
        let never = timing(Config {
            touch_threshold: 0.0,
            ..Config::default()
        });
        assert!(!never.touch_due(Some(1), 7_200_000, 0));
        let always = timing(Config {
            touch_threshold: 1.0,
            ..Config::default()
        });
        assert!(always.touch_due(Some(7_199_999), 7_200_000, 0));
    }

    #[test]
    fn rotation_due_after_interval_only() {
        let t = timing(Config {
            rotate_every: Some(Duration::from_secs(300)),
            ..Config::default()
        });
        let r = meta_at(1_000, None);
        assert!(!t.rotation_due(&r, 300_999));
        assert!(t.rotation_due(&r, 301_000));
        let retired = Reserved {
            retired: Some(u64::MAX),
            ..r.clone()
        };
        assert!(
            !t.rotation_due(&retired, 301_000),
            "old ids are not rotated"
        );
        assert!(!timing(Config::default()).rotation_due(&r, u64::MAX));
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
