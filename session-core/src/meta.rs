//! The public metadata types: what the caller knows about a request's client ([`ClientInfo`]) and
//! what the session layer tells about a session ([`SessionMeta`]). How they are stored is in
//! `reserved.rs`.

use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Longest user agent kept in the metadata, in bytes; longer ones are cut at a char boundary.
pub const MAX_USER_AGENT_LEN: usize = 512;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_is_cut_at_a_char_boundary() {
        let ua = "é".repeat(MAX_USER_AGENT_LEN);
        let c = ClientInfo::new(None, Some(&ua));
        let kept = c.user_agent.expect("kept");
        assert!(kept.len() <= MAX_USER_AGENT_LEN && kept.len() >= MAX_USER_AGENT_LEN - 1);
        assert!(kept.chars().all(|ch| ch == 'é'));
    }
}
