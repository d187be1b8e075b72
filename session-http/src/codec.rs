//! The id on the wire: reading it from a request's `Cookie` (or id header) values, verified or
//! decrypted, and turning a save's [`CookieAction`] into a `Set-Cookie` (or id header) value.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use cookie::{Cookie, CookieJar};
use session_core::{CookieAction, IncomingId, SessionId};

use crate::config::{CookieConfig, Protection};

/// The session id a request carried, once verified and parsed
/// ([`HttpSessions::read`](crate::HttpSessions::read)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Incoming {
    /// What the request brought, handed to the manager as is: no id, a well-formed id (it may
    /// still be unknown or expired: the manager decides), or an invalid one.
    pub id: IncomingId,
    /// It was protected with a key other than the first: re-send it protected with the first.
    pub stale_key: bool,
}

/// The text of a header value: `None` unless it is visible ASCII (or tab), as `http`'s
/// `HeaderValue::to_str` (and so every framework on it) reads it.
pub(crate) fn text(value: &[u8]) -> Option<&str> {
    value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
        .then(|| std::str::from_utf8(value).ok())
        .flatten()
}

/// How the id is written and read under one [`CookieConfig`]: what
/// [`HttpSessions`](crate::HttpSessions) does with it, without the manager.
#[derive(Clone, Debug)]
pub(crate) struct Codec {
    pub(crate) config: CookieConfig,
    /// Where the id travels: `None` for the cookie, else this header (lower-cased).
    pub(crate) header: Option<String>,
}

impl Codec {
    /// The name the protection binds the value to: the cookie's, or the header's.
    fn value_name(&self) -> &str {
        self.header.as_deref().unwrap_or(self.config.name.as_str())
    }

    /// See [`HttpSessions::read`](crate::HttpSessions::read).
    pub(crate) fn read<'a>(&self, values: impl IntoIterator<Item = &'a [u8]>) -> Incoming {
        let texts = values.into_iter().filter_map(text);
        let values: Vec<String> = match &self.header {
            Some(_) => texts
                // a proxy may fold repeated headers into one, comma-separated (RFC 9110
                // 5.3); neither ids nor base64 hold a comma
                .flat_map(|h| h.split(','))
                .map(|v| v.trim().to_owned())
                .collect(),
            None => {
                let name = self.config.name.as_str();
                texts
                    .flat_map(|h| Cookie::split_parse(h.to_owned()).filter_map(|c| c.ok()))
                    .filter(|c| c.name() == name)
                    .map(|c| c.value().to_owned())
                    .collect()
            }
        };
        let mut invalid = false;
        for value in values.iter().filter(|v| !v.is_empty()) {
            match self
                .open(value)
                .map(|(v, stale)| (IncomingId::parse(&v), stale))
            {
                Some((id @ IncomingId::Valid(_), stale_key)) => return Incoming { id, stale_key },
                _ => invalid = true,
            }
        }
        Incoming {
            id: if invalid {
                IncomingId::Invalid
            } else {
                IncomingId::Absent
            },
            stale_key: false,
        }
    }

    /// The id text in `value` if it verifies (signed) or decrypts (private) with one of the
    /// keys (the value as is when there are no keys), and whether that key is not the first.
    fn open(&self, value: &str) -> Option<(String, bool)> {
        let keys = &self.config.keys;
        if keys.is_empty() {
            return Some((value.to_owned(), false));
        }
        let name = self.value_name();
        let jar = CookieJar::new();
        keys.iter().enumerate().find_map(|(i, key)| {
            let cookie = Cookie::new(name.to_owned(), value.to_owned());
            let key = key.cookie_key();
            let opened = match self.config.protection {
                Protection::Signed => jar.signed(key).verify(cookie),
                Protection::Private => jar.private(key).decrypt(cookie),
            };
            opened.map(|c| (c.value().to_owned(), i > 0))
        })
    }

    /// `id` protected with the first key (signed or encrypted), or bare when there are none.
    fn seal(&self, id: &SessionId) -> Option<String> {
        let Some(key) = self.config.keys.first() else {
            return Some(id.as_str().to_owned());
        };
        let name = self.value_name().to_owned();
        let cookie = Cookie::new(name.clone(), id.as_str().to_owned());
        let mut jar = CookieJar::new();
        match self.config.protection {
            Protection::Signed => jar.signed_mut(key.cookie_key()).add(cookie),
            Protection::Private => jar.private_mut(key.cookie_key()).add(cookie),
        }
        jar.get(&name).map(|c| c.value().to_owned())
    }

    /// See [`HttpSessions::outgoing`](crate::HttpSessions::outgoing).
    pub(crate) fn outgoing(
        &self,
        action: &CookieAction,
        stale_key: bool,
    ) -> Option<std::result::Result<String, String>> {
        let value = match &self.header {
            Some(_) => self.header_value(action, stale_key)?,
            None => self.set_cookie(action, stale_key)?,
        };
        Some(value.and_then(|v| match text(v.as_bytes()) {
            Some(_) => Ok(v),
            None => Err("session id is not a header value".to_owned()),
        }))
    }

    /// The id header's value for `action`, if one is to be sent: a new id, a re-issue under
    /// the first key, or empty for a removal. A header client is not told of a slid expiry.
    fn header_value(
        &self,
        action: &CookieAction,
        stale_key: bool,
    ) -> Option<std::result::Result<String, String>> {
        match action {
            CookieAction::Unchanged => None,
            CookieAction::Refresh { .. } if !stale_key => None,
            CookieAction::Set { id, .. } | CookieAction::Refresh { id, .. } => Some(
                self.seal(id)
                    .ok_or_else(|| "could not seal the id".to_owned()),
            ),
            CookieAction::Remove => Some(Ok(String::new())),
        }
    }

    /// The `Set-Cookie` value for `action`, if one is to be sent (`stale_key`: the request's
    /// cookie was protected with an old key, so a refresh re-sends it even when not
    /// persistent).
    fn set_cookie(
        &self,
        action: &CookieAction,
        stale_key: bool,
    ) -> Option<std::result::Result<String, String>> {
        let c = &self.config;
        let mut cookie = match action {
            CookieAction::Unchanged => return None,
            CookieAction::Refresh { .. } if !c.persistent && !stale_key => return None,
            CookieAction::Set { id, expires } | CookieAction::Refresh { id, expires } => {
                let Some(value) = self.seal(id) else {
                    return Some(Err("could not seal the id".to_owned()));
                };
                let mut cookie = Cookie::new(c.name.clone(), value);
                if c.persistent {
                    cookie.set_max_age(max_age(*expires));
                }
                cookie
            }
            CookieAction::Remove => {
                let mut cookie = Cookie::new(c.name.clone(), "");
                cookie.make_removal();
                cookie
            }
        };
        cookie.set_path(c.path.clone());
        if let Some(d) = &c.domain {
            cookie.set_domain(d.clone());
        }
        cookie.set_secure(c.secure);
        cookie.set_http_only(true);
        cookie.set_same_site(c.same_site);
        Some(Ok(cookie.to_string()))
    }
}

/// Seconds from now to `expires`, at least one (a cookie with `Max-Age=0` is a removal).
fn max_age(expires: SystemTime) -> cookie::time::Duration {
    let secs = expires
        .duration_since(SystemTime::now())
        .map_or(0, |d| d.as_secs());
    cookie::time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX).max(1))
}

/// The `hops`-th address from the right of all `X-Forwarded-For` values, if there are that
/// many and it parses (a bare IP, or `IP:port`/`[IPv6]:port`).
pub(crate) fn forwarded_ip<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    hops: usize,
) -> Option<IpAddr> {
    let entries: Vec<&str> = values
        .into_iter()
        .filter_map(text)
        .flat_map(|h| h.split(','))
        .map(str::trim)
        .collect();
    let entry = entries.len().checked_sub(hops).map(|i| entries[i])?;
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    #[test]
    fn forwarded_for_counts_hops_from_the_right() {
        let h: [&[u8]; 2] = [b"1.1.1.1, 2.2.2.2", b"3.3.3.3"];
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(forwarded_ip(h, 1), ip("3.3.3.3"));
        assert_eq!(forwarded_ip(h, 2), ip("2.2.2.2"));
        assert_eq!(forwarded_ip(h, 3), ip("1.1.1.1"));
        assert_eq!(forwarded_ip(h, 4), None, "fewer entries than hops");
        let p: [&[u8]; 1] = [b"[2001:db8::1]:443, 9.9.9.9:80, junk"];
        assert_eq!(forwarded_ip(p, 1), None, "unparsable entry");
        assert_eq!(forwarded_ip(p, 2), ip("9.9.9.9"));
        assert_eq!(forwarded_ip(p, 3), ip("2001:db8::1"));
        let m: [&[u8]; 1] = [b"::ffff:10.0.0.1"];
        assert_eq!(
            forwarded_ip(m, 1),
            ip("10.0.0.1"),
            "v4-mapped made canonical"
        );
        let bad: [&[u8]; 1] = [b"1.1.1.1\x01"];
        assert_eq!(forwarded_ip(bad, 1), None, "not header text");
    }

    fn codec(keys: Vec<Key>) -> Codec {
        Codec {
            config: CookieConfig {
                keys,
                ..CookieConfig::default()
            },
            header: None,
        }
    }

    fn key(byte: u8) -> Key {
        Key::try_from_secret(&[byte; 32]).expect("32 bytes")
    }

    fn signed(key: &Key, value: &str) -> String {
        let mut jar = CookieJar::new();
        jar.signed_mut(key.cookie_key())
            .add(Cookie::new("session_id", value.to_owned()));
        let c = jar.get("session_id").expect("added");
        format!("session_id={}", c.value())
    }

    fn read(c: &Codec, cookies: &[&str]) -> Incoming {
        c.read(cookies.iter().map(|c| c.as_bytes()))
    }

    #[test]
    fn the_cookie_is_read_once_into_absent_valid_or_invalid() {
        let id = session_core::SessionId::generate().expect("rng");
        let good = format!("session_id={id}");
        let plain = codec(Vec::new());
        let id_of = |c: &Codec, cookies: &[&str]| read(c, cookies).id;
        assert_eq!(id_of(&plain, &[]), IncomingId::Absent);
        assert_eq!(id_of(&plain, &["other=1"]), IncomingId::Absent);
        assert_eq!(id_of(&plain, &["session_id="]), IncomingId::Absent, "empty");
        assert_eq!(id_of(&plain, &[&good]), IncomingId::Valid(id.clone()));
        for bad in ["session_id=short", "session_id=../../etc/passwd"] {
            assert_eq!(id_of(&plain, &[bad]), IncomingId::Invalid, "{bad}");
        }
        // a valid cookie wins over an invalid one of the same name, in any order
        assert_eq!(
            id_of(&plain, &["session_id=short", &good]),
            IncomingId::Valid(id.clone())
        );
        assert_eq!(
            id_of(&plain, &[&format!("{good}; session_id=short")]),
            IncomingId::Valid(id.clone())
        );

        let old = key(1);
        let new = key(2);
        let keyed = codec(vec![new.clone(), old.clone()]);
        let with_new = signed(&new, id.as_str());
        let with_old = signed(&old, id.as_str());
        let incoming = read(&keyed, &[&with_new]);
        assert_eq!(incoming.id, IncomingId::Valid(id.clone()));
        assert!(!incoming.stale_key);
        let incoming = read(&keyed, &[&with_old]);
        assert_eq!(incoming.id, IncomingId::Valid(id.clone()));
        assert!(incoming.stale_key, "signed with the second key");
        // unsigned, signed with an unknown key, or tampered: invalid
        let other = signed(&key(3), id.as_str());
        let mut tampered = with_new.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        for bad in [good.as_str(), &other, &tampered] {
            let incoming = read(&keyed, &[bad]);
            assert_eq!(incoming.id, IncomingId::Invalid, "{bad}");
            assert!(!incoming.stale_key);
        }
        // a well-signed value that is not an id is invalid too
        assert_eq!(id_of(&keyed, &[&signed(&new, "nope")]), IncomingId::Invalid);
        // a header value that is not text is no value at all
        assert_eq!(
            plain.read([format!("{good}\u{7f}").as_bytes()]).id,
            IncomingId::Absent
        );
    }

    #[test]
    fn max_age_is_at_least_one_second() {
        let past = SystemTime::UNIX_EPOCH;
        assert_eq!(max_age(past).whole_seconds(), 1);
        let later = SystemTime::now() + std::time::Duration::from_secs(3601);
        let secs = max_age(later).whole_seconds();
        assert!((3599..=3601).contains(&secs), "{secs}");
    }
}
