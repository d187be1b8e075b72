//! The cookie and client-info settings of a [`SessionLayer`](crate::SessionLayer).

use cookie::{Key, SameSite};
use session_core::{Error, Result};

/// How the session cookie is written and read, and where the client's IP comes from.
///
/// Every field is public and [`Default`] gives safe defaults, so a config is written with struct
/// update syntax:
///
/// ```
/// use session_axum::{CookieConfig, Key, SameSite};
///
/// let config = CookieConfig {
///     name: "app_session".into(),
///     same_site: SameSite::Strict,
///     keys: vec![Key::derive_from(&[7u8; 32])], // load it from your secret store instead
///     ..CookieConfig::default()
/// };
/// assert!(config.validate().is_ok());
/// assert!(CookieConfig::default().secure);
/// ```
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
    /// HMAC-SHA256 signing keys. Empty: the cookie holds the bare session id (which is already
    /// 192 random bits, so signing is defence in depth, not a requirement). Otherwise every
    /// cookie is signed with the first key and a cookie signed with any of them is accepted, so
    /// a new key is rotated in by putting it first and the old one is dropped once every
    /// session signed with it has expired or been re-sent (after the idle TTL).
    ///
    /// Default: empty.
    pub keys: Vec<Key>,
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
    /// domain (letters, digits, `.` and `-`), and the `__Host-`/`__Secure-` prefix rules;
    /// [`SessionLayer::with_config`](crate::SessionLayer::with_config) calls it.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidInput(format!("CookieConfig: {what}")));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_valid() {
        let c = CookieConfig::default();
        assert!(c.secure && c.persistent && c.keys.is_empty());
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
    }

    #[test]
    fn debug_hides_the_keys() {
        let c = CookieConfig {
            keys: vec![Key::derive_from(&[1u8; 32])],
            ..CookieConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("[1 key(s)]"), "{shown}");
    }
}
