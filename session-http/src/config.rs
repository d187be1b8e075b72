//! The cookie, header and client-info settings of a session middleware ([`HttpSessions`](crate::HttpSessions)).

use cookie::SameSite;
use session_core::{Error, Result};

use crate::key::Key;

/// How the [`keys`](CookieConfig::keys) protect the session id in the cookie (or header).
///
/// Both rotate keys the same way: the id is protected with the first key, and a value
/// protected with any of the keys is accepted. A value that does not verify (or decrypt) with
/// any key is [`IncomingId::Invalid`](session_core::IncomingId::Invalid): it never reaches
/// storage, the request gets a fresh session, and the response removes it. A signed value is
/// never accepted as private, nor a private one as signed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protection {
    /// HMAC-SHA256: the value is the base64 MAC (44 characters) followed by the id, in clear.
    /// The client can read the id but cannot forge one. With no keys the value is the bare id.
    ///
    /// The MAC covers the value, not the cookie's name (the `cookie` crate's signed jar, found
    /// by the `cookie` fuzz target): a value the same key signed for another cookie verifies
    /// here too. Such a value still has to be the id of a live session to be adopted, so the
    /// risk is an app that signs other cookies with ids in them; give the session cookie a key
    /// of its own, or use `Private`, which binds the name.
    #[default]
    Signed,
    /// AES-256-GCM (the `cookie` crate's private jar): the value is the base64 of a random
    /// nonce, the encrypted id and the authentication tag (80 characters), bound to the cookie
    /// (or header) name. The client can neither read nor forge the id. Needs at least one key.
    Private,
}

/// How the session cookie is written and read, and where the client's IP comes from: the
/// configuration of every framework's session middleware (session-axum's `SessionLayer`,
/// session-actix's `SessionMiddleware`).
///
/// Every field is public and [`Default`] gives safe defaults, so a config is written with struct
/// update syntax:
///
/// ```
/// use session_http::{CookieConfig, Key, SameSite};
///
/// let config = CookieConfig {
///     name: "app_session".into(),
///     same_site: SameSite::Strict,
///     keys: vec![Key::try_from_secret(&[7u8; 32])?], // load it from your secret store instead
///     ..CookieConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// assert!(CookieConfig::default().secure);
/// # Ok::<(), session_core::Error>(())
/// ```
///
/// Despite its name it also configures an id carried in a request header instead of a
/// cookie (see [`header`](Self::header)).
#[derive(Clone)]
pub struct CookieConfig {
    /// The cookie's name. A name starting with `__Host-` makes [`validate`](Self::validate)
    /// require `secure`, path `/` and no domain, as browsers do.
    ///
    /// Default: `"session_id"`.
    pub name: String,
    /// The cookie's `Path`.
    ///
    /// Default: `"/"`.
    pub path: String,
    /// The cookie's `Domain`; `None` sends none (the cookie goes to the exact host only).
    ///
    /// Default: `None`.
    pub domain: Option<String>,
    /// Whether the cookie has `Secure` (sent over HTTPS only). Turn it off only for plain-http
    /// development on localhost.
    ///
    /// Default: `true`.
    pub secure: bool,
    /// The cookie's `SameSite`.
    ///
    /// Default: [`SameSite::Lax`] (sent on top-level navigation from other sites, not on their
    /// sub-requests or form posts).
    pub same_site: SameSite,
    /// Whether the cookie has a `Max-Age` that follows the session's expiry (re-sent each time
    /// the expiry slides). With `false` it is a browser-session cookie, dropped when the browser
    /// closes; the session still expires in storage after its idle TTL.
    ///
    /// Default: `true`.
    pub persistent: bool,
    /// The keys that sign or encrypt the id (see [`protection`](Self::protection)). Empty: the
    /// cookie holds the bare session id (which is already 192 random bits, so signing is
    /// defence in depth, not a requirement). Otherwise every cookie is protected with the first
    /// key and a cookie protected with any of them is accepted, so a new key is rotated in by
    /// putting it first and the old one is dropped once every session protected with it has
    /// expired or been re-sent (after the idle TTL).
    ///
    /// Default: empty.
    pub keys: Vec<Key>,
    /// Whether the keys sign the id ([`Protection::Signed`], HMAC-SHA256, the id stays
    /// readable) or encrypt it ([`Protection::Private`], AES-256-GCM, the id is hidden).
    /// `Private` needs at least one key ([`validate`](Self::validate) checks it).
    ///
    /// Default: [`Protection::Signed`].
    pub protection: Protection,
    /// Carry the id in this request and response header (for example `"x-session-id"`)
    /// instead of a cookie: for API clients that keep a token rather than a cookie jar. No
    /// cookie is then read or written; the header's value is the id protected exactly as the
    /// cookie's would be ([`keys`](Self::keys), [`protection`](Self::protection)). The response
    /// carries the header with a new id (new session, login, regeneration, or a re-issue with
    /// the first key after a rotation) and with an **empty value** when the client must forget
    /// its id (logout, destroyed, dead or invalid id). The name is matched without regard to
    /// case. `name`, `path`, `domain`, `secure`, `same_site` and `persistent` do not apply.
    ///
    /// Default: `None` (a cookie).
    pub header: Option<String>,
    /// How many reverse proxies in front of the server append to `X-Forwarded-For`. `0`
    /// ignores the header (anyone can send it); with `n`, the client's IP is the `n`-th
    /// address from the right, and the peer address is used when the header has fewer.
    ///
    /// Default: `0`.
    pub trusted_proxies: usize,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            name: "session_id".into(),
            path: "/".into(),
            domain: None,
            secure: true,
            same_site: SameSite::Lax,
            persistent: true,
            keys: Vec::new(),
            protection: Protection::Signed,
            header: None,
            trusted_proxies: 0,
        }
    }
}

impl std::fmt::Debug for CookieConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieConfig")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("domain", &self.domain)
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .field("persistent", &self.persistent)
            .field("keys", &format_args!("[{} key(s)]", self.keys.len()))
            .field("protection", &self.protection)
            .field("header", &self.header)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish()
    }
}

/// RFC 9110 `tchar`: what a cookie name may contain.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// What an attribute value may contain: visible ASCII but `;` (RFC 6265 `av-octet`).
fn is_av_char(c: char) -> bool {
    c.is_ascii_graphic() && c != ';'
}

impl CookieConfig {
    /// Checks the name (a token), the path (starts with `/`, visible ASCII without `;`), the
    /// domain (letters, digits, `.` and `-`), the `__Host-`/`__Secure-` prefix rules, that
    /// [`Protection::Private`] has a key, and that the [`header`](Self::header) is a header
    /// name that is not one HTTP itself uses for something else;
    /// [`HttpSessions::with_config`](crate::HttpSessions::with_config) (and so every
    /// middleware made with a config) calls it.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidInput(format!("CookieConfig: {what}")));
        if self.protection == Protection::Private && self.keys.is_empty() {
            return bad("Protection::Private needs at least one key".into());
        }
        if let Some(h) = &self.header {
            self.header_name()?;
            const TAKEN: [&str; 8] = [
                "cookie",
                "set-cookie",
                "authorization",
                "host",
                "content-length",
                "content-type",
                "transfer-encoding",
                "connection",
            ];
            if TAKEN.iter().any(|t| h.eq_ignore_ascii_case(t)) {
                return bad(format!("header {h:?} already means something else in HTTP"));
            }
        }
        if self.name.is_empty() || !self.name.chars().all(is_tchar) {
            return bad(format!("name {:?} is not a cookie name token", self.name));
        }
        if !self.path.starts_with('/') || !self.path.chars().all(is_av_char) {
            return bad(format!(
                "path {:?} must start with / and hold visible ASCII without ;",
                self.path
            ));
        }
        if let Some(d) = &self.domain {
            let ok = !d.is_empty()
                && d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
            if !ok {
                return bad(format!("domain {d:?} is not a host name"));
            }
        }
        let lower = self.name.to_ascii_lowercase();
        if (lower.starts_with("__host-") || lower.starts_with("__secure-")) && !self.secure {
            return bad(format!("a cookie named {:?} must be secure", self.name));
        }
        if lower.starts_with("__host-") && (self.path != "/" || self.domain.is_some()) {
            return bad(format!(
                "a cookie named {:?} must have path / and no domain",
                self.name
            ));
        }
        if self.same_site == SameSite::None && !self.secure {
            return bad("SameSite=None needs secure (browsers drop it otherwise)".into());
        }
        Ok(())
    }

    /// The [`header`](Self::header), checked (a token, RFC 9110 `field-name`) and
    /// lower-cased; `None` for a cookie.
    pub(crate) fn header_name(&self) -> Result<Option<String>> {
        self.header
            .as_deref()
            .map(|h| {
                if h.is_empty() || !h.chars().all(is_tchar) {
                    return Err(Error::InvalidInput(format!(
                        "CookieConfig: header {h:?} is not a header name"
                    )));
                }
                Ok(h.to_ascii_lowercase())
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_valid() {
        let c = CookieConfig::default();
        assert!(c.secure && c.persistent && c.keys.is_empty());
        assert_eq!(c.protection, Protection::Signed);
        assert_eq!(c.header, None);
        assert_eq!(c.same_site, SameSite::Lax);
        assert_eq!((c.name.as_str(), c.path.as_str()), ("session_id", "/"));
        assert_eq!(c.trusted_proxies, 0);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_rejects_what_would_break_the_header() {
        let with = |f: fn(&mut CookieConfig)| {
            let mut c = CookieConfig::default();
            f(&mut c);
            c.validate()
        };
        assert!(with(|c| c.name = String::new()).is_err());
        assert!(with(|c| c.name = "a b".into()).is_err());
        assert!(with(|c| c.name = "a;b".into()).is_err());
        assert!(with(|c| c.name = "a=b".into()).is_err());
        assert!(with(|c| c.path = "app".into()).is_err());
        assert!(with(|c| c.path = "/a;Domain=evil".into()).is_err());
        assert!(with(|c| c.domain = Some("a;b".into())).is_err());
        assert!(with(|c| c.domain = Some(String::new())).is_err());
        assert!(with(|c| c.domain = Some("example.com".into())).is_ok());
        assert!(with(|c| c.path = "/app".into()).is_ok());
        assert!(with(|c| c.name = "__Host-sid".into()).is_ok());
        assert!(
            with(|c| {
                c.name = "__Host-sid".into();
                c.path = "/app".into();
            })
            .is_err()
        );
        assert!(
            with(|c| {
                c.name = "__Secure-sid".into();
                c.secure = false;
            })
            .is_err()
        );
        assert!(
            with(|c| {
                c.same_site = SameSite::None;
                c.secure = false;
            })
            .is_err()
        );
        assert!(
            with(|c| c.protection = Protection::Private).is_err(),
            "no key"
        );
        assert!(with(|c| c.header = Some("x-session-id".into())).is_ok());
        assert!(with(|c| c.header = Some("X-Session-Id".into())).is_ok());
        for bad in [
            "",
            "x session",
            "x:y",
            "Cookie",
            "set-cookie",
            "Authorization",
        ] {
            let c = CookieConfig {
                header: Some(bad.into()),
                ..CookieConfig::default()
            };
            assert!(c.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn private_needs_a_key() {
        let c = CookieConfig {
            keys: vec![Key::try_from_secret(&[1u8; 32]).expect("32 bytes")],
            protection: Protection::Private,
            ..CookieConfig::default()
        };
        assert!(c.validate().is_ok());
    }

    #[test]
    fn debug_hides_the_keys() {
        let c = CookieConfig {
            keys: vec![Key::try_from_secret(&[1u8; 32]).expect("32 bytes")],
            ..CookieConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("[1 key(s)]"), "{shown}");
    }
}
