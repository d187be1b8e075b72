//! The configuration of a [`Manager`](crate::Manager).

use std::time::Duration;

use crate::check;
use crate::error::{Error, Result};

/// How a [`Manager`](crate::Manager) runs its sessions.
///
/// Every field is public and [`Default`] gives the documented defaults, so a config is written
/// with struct update syntax:
///
/// ```
/// use std::time::Duration;
/// use session_core::Config;
///
/// let config = Config {
///     idle_ttl: Duration::from_secs(30 * 60),
///     absolute_lifetime: Some(Duration::from_secs(8 * 3600)),
///     match_ip: true,
///     ..Config::default()
/// };
/// assert!(config.validate().is_ok());
/// assert_eq!(Config::default().idle_ttl, Duration::from_secs(7200));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Idle timeout: a session nobody uses for this long expires. Each write, and each touch when
    /// due (see [`touch_threshold`](Self::touch_threshold)), slides the expiry to now + `idle_ttl`.
    ///
    /// A session may have its own instead
    /// ([`Session::set_idle_ttl`](crate::Session::set_idle_ttl), "remember me").
    ///
    /// Default: 2 hours (CodeIgniter's `sessionExpiration`).
    pub idle_ttl: Duration,

    /// Absolute timeout: a session expires this long after it was created (or, once logged in,
    /// after the login), however active it is. The expiry is always the earlier of
    /// now + [`idle_ttl`](Self::idle_ttl) and this deadline (OWASP's two timeouts).
    ///
    /// Default: `None` (no absolute timeout).
    pub absolute_lifetime: Option<Duration>,

    /// Timed id rotation (CodeIgniter's `sessionTimeToUpdate`): a session whose id is older than
    /// this gets a new id, with the same data, at the next save that finds it loaded.
    ///
    /// Default: `None` (no timed rotation).
    pub rotate_every: Option<Duration>,

    /// Whether timed rotation deletes the old id at once (CodeIgniter's
    /// `sessionRegenerateDestroy`) instead of leaving it valid for
    /// [`regenerate_grace`](Self::regenerate_grace).
    ///
    /// Default: `false`.
    pub rotate_destroy_old: bool,

    /// How long an old id stays valid after [`Session::regenerate(false)`](crate::Session::regenerate),
    /// so requests already in flight with the old cookie still find their session.
    ///
    /// Default: 30 seconds.
    pub regenerate_grace: Duration,

    /// When a read-only request slides the expiry: only when less than this fraction of
    /// [`idle_ttl`](Self::idle_ttl) remains (and the slide would actually move the deadline). `1.0`
    /// touches on every request, `0.0` never (then only writes slide the expiry). With a driver
    /// that does not report deadlines ([`Capabilities::load_with_deadline`](crate::Capabilities))
    /// every read-only request touches.
    ///
    /// Default: `0.8` (with the default idle TTL, at most one touch every 24 minutes, and an
    /// effective idle timeout between 96 and 120 minutes).
    pub touch_threshold: f64,

    /// Whether a touch also records "last seen" (time and IP) in the session metadata. The touch
    /// is then one [`Storage::apply`](crate::Storage::apply) of that one key instead of a
    /// [`Storage::update_ttl`](crate::Storage::update_ttl): still one storage call. Writes always
    /// record it.
    ///
    /// Default: `true`.
    pub track_last_seen: bool,

    /// Whether [`Session::login`](crate::Session::login) binds the session to its owner in the
    /// store's owner index, which [`Manager::sessions_of`](crate::Manager::sessions_of) and the
    /// other per-user methods need. [`Manager::new`](crate::Manager::new) refuses a store without
    /// [`Capabilities::owner_index`](crate::Capabilities) when this is on.
    ///
    /// Default: `true`.
    pub owner_index: bool,

    /// How long the owner index must keep a login binding, for drivers that expire index
    /// entries. The absolute lifetime, when set, is used instead.
    ///
    /// Default: 30 days.
    pub owner_index_ttl: Duration,

    /// TTL of temp data set without an explicit one
    /// ([`Session::set_temp`](crate::Session::set_temp) with `None`).
    ///
    /// Default: 5 minutes (CodeIgniter's tempdata default).
    pub temp_ttl: Duration,

    /// Refuse a session from an IP other than the one it was created from (CodeIgniter's
    /// `sessionMatchIP`): the request gets a fresh, empty session instead. The stored session is
    /// left alone, so a stolen cookie cannot be used to log its owner out.
    ///
    /// Default: `false` (mobile clients change IP often).
    pub match_ip: bool,

    /// Refuse a session from a user agent other than the one it was created from, like
    /// [`match_ip`](Self::match_ip).
    ///
    /// Default: `false`.
    pub match_user_agent: bool,

    /// How often the background purge ([`Manager::start_purge`](crate::Manager::start_purge))
    /// deletes expired sessions from a store that does not expire them by itself (files,
    /// SQLite, sled, the SQL servers). `None`: `start_purge` starts no task. Ignored for a store
    /// with [`Capabilities::native_expiry`](crate::Capabilities::native_expiry) (memory, Redis,
    /// Memcached), which needs no purge. An expired session is never used either way (every
    /// driver hides it at once); the purge only frees its space.
    ///
    /// Default: 5 minutes.
    pub purge_interval: Option<Duration>,

    /// The lease lock used by [`Session::update`](crate::Session::update) and
    /// [`Manager::load_locked`](crate::Manager::load_locked).
    ///
    /// Default: [`LockPolicy::default`].
    pub lock: LockPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_ttl: Duration::from_secs(2 * 3600),
            absolute_lifetime: None,
            rotate_every: None,
            rotate_destroy_old: false,
            regenerate_grace: Duration::from_secs(30),
            touch_threshold: 0.8,
            track_last_seen: true,
            owner_index: true,
            owner_index_ttl: Duration::from_secs(30 * 24 * 3600),
            temp_ttl: Duration::from_secs(300),
            match_ip: false,
            match_user_agent: false,
            purge_interval: Some(Duration::from_secs(300)),
            lock: LockPolicy::default(),
        }
    }
}

impl Config {
    /// Checks that every duration is a valid TTL ([`check::ttl_millis`]: not zero, at most ten
    /// years) and that [`touch_threshold`](Self::touch_threshold) is within `0.0..=1.0`.
    /// [`Manager::new`](crate::Manager::new) calls it.
    pub fn validate(&self) -> Result<()> {
        let named = [
            ("idle_ttl", Some(self.idle_ttl)),
            ("absolute_lifetime", self.absolute_lifetime),
            ("rotate_every", self.rotate_every),
            ("regenerate_grace", Some(self.regenerate_grace)),
            ("owner_index_ttl", Some(self.owner_index_ttl)),
            ("temp_ttl", Some(self.temp_ttl)),
            ("purge_interval", self.purge_interval),
            ("lock.lease", Some(self.lock.lease)),
            ("lock.retry_interval", Some(self.lock.retry_interval)),
        ];
        for (name, value) in named {
            if let Some(d) = value {
                check::ttl_millis(d)
                    .map_err(|e| Error::InvalidInput(format!("Config::{name}: {e}")))?;
            }
        }
        if !(0.0..=1.0).contains(&self.touch_threshold) {
            return Err(Error::InvalidInput(format!(
                "Config::touch_threshold is {}, it must be within 0.0..=1.0",
                self.touch_threshold
            )));
        }
        Ok(())
    }
}

/// The lease lock policy: how long a lock is held at most and how long to wait for it.
///
/// ```
/// use std::time::Duration;
/// use session_core::LockPolicy;
///
/// let p = LockPolicy { wait: Duration::from_secs(2), ..LockPolicy::default() };
/// assert_eq!(p.lease, Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockPolicy {
    /// How long a lock is held at most; a holder that dies (or forgets to save) frees it when the
    /// lease runs out. Keep it above your slowest request for
    /// [`Manager::load_locked`](crate::Manager::load_locked).
    ///
    /// Default: 30 seconds.
    pub lease: Duration,
    /// How long to keep retrying before giving up with [`Error::Locked`]. Zero tries once.
    ///
    /// Default: 10 seconds.
    pub wait: Duration,
    /// Pause between two attempts.
    ///
    /// Default: 10 milliseconds.
    pub retry_interval: Duration,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            lease: Duration::from_secs(30),
            wait: Duration::from_secs(10),
            retry_interval: Duration::from_millis(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones_and_valid() {
        let c = Config::default();
        assert_eq!(c.idle_ttl, Duration::from_secs(7200));
        assert_eq!(c.absolute_lifetime, None);
        assert_eq!(c.rotate_every, None);
        assert_eq!(c.temp_ttl, Duration::from_secs(300));
        assert_eq!(c.purge_interval, Some(Duration::from_secs(300)));
        assert!(c.owner_index && c.track_last_seen && !c.match_ip && !c.match_user_agent);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_rejects_zero_durations_and_bad_threshold() {
        let zero = Config {
            idle_ttl: Duration::ZERO,
            ..Config::default()
        };
        assert!(matches!(zero.validate(), Err(Error::InvalidInput(m)) if m.contains("idle_ttl")));
        let abs = Config {
            absolute_lifetime: Some(Duration::ZERO),
            ..Config::default()
        };
        assert!(abs.validate().is_err());
        for t in [-0.1, 1.5, f64::NAN] {
            let c = Config {
                touch_threshold: t,
                ..Config::default()
            };
            assert!(c.validate().is_err(), "{t} accepted");
        }
        let purge = Config {
            purge_interval: Some(Duration::ZERO),
            ..Config::default()
        };
        assert!(
            matches!(purge.validate(), Err(Error::InvalidInput(m)) if m.contains("purge_interval"))
        );
        let no_purge = Config {
            purge_interval: None,
            ..Config::default()
        };
        assert!(no_purge.validate().is_ok());
        let lock = Config {
            lock: LockPolicy {
                wait: Duration::ZERO,
                ..LockPolicy::default()
            },
            ..Config::default()
        };
        assert!(lock.validate().is_ok(), "zero wait means try once");
    }
}
