//! The expiry arithmetic, in unix milliseconds: idle and absolute timeouts, a retired id's grace
//! period, the touch policy, timed rotation, and whether a loaded session may be used at all.
//! Pure: no clock reads here (every function takes `now`), no storage calls.

use std::time::{Duration, SystemTime};

use crate::check;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::meta::ClientInfo;
use crate::reserved::Reserved;

/// `n` milliseconds as a [`Duration`] (a TTL for the store).
pub(crate) fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The deadline of a write at `now` with `ttl` (both in ms), as a time for the cookie.
pub(crate) fn expires_at(now: u64, ttl: u64) -> SystemTime {
    check::from_unix_millis(now.saturating_add(ttl))
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

/// Expiry settings in milliseconds, taken from a validated [`Config`].
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
    pub(crate) fn from_config(c: &Config) -> Result<Self> {
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

    /// Whether [`verdict`](Self::verdict) and [`rotation_due`](Self::rotation_due) depend on
    /// `now` for a session with these reserved keys: only an absolute lifetime, timed rotation
    /// or a retirement mark makes them look at the clock. When false, loading a session needs
    /// no clock read (the common case: one `clock_gettime` less per request).
    pub(crate) fn needs_clock(&self, r: &Reserved) -> bool {
        self.absolute.is_some() || self.rotate.is_some() || r.retired.is_some()
    }

    /// Whether a loaded session is usable by a request from `client` at `now`. Decodes the
    /// metadata only when a configured check compares it ([`Error::Corrupt`] if it does not
    /// decode).
    pub(crate) fn verdict(&self, r: &Reserved, client: &ClientInfo, now: u64) -> Result<Verdict> {
        if r.retired.is_some_and(|until| until <= now) {
            return Ok(Verdict::Expired);
        }
        if self.absolute.is_none() && !self.match_ip && !self.match_user_agent {
            return Ok(Verdict::Live);
        }
        let meta = r.meta()?;
        if let (Some(abs), Some(m)) = (self.absolute, meta)
            && m.started().saturating_add(abs) <= now
        {
            return Ok(Verdict::Expired);
        }
        if self.match_ip && meta.map(|m| m.client.ip) != Some(client.ip) {
            return Ok(Verdict::Refused);
        }
        if self.match_user_agent
            && meta.map(|m| m.client.user_agent.as_deref()) != Some(client.user_agent.as_deref())
        {
            return Ok(Verdict::Refused);
        }
        Ok(Verdict::Live)
    }

    /// The idle TTL of a session with these reserved keys, in ms: its own
    /// ([`Session::set_idle_ttl`](crate::Session::set_idle_ttl)) or the manager's.
    pub(crate) fn idle_of(&self, r: &Reserved) -> u64 {
        r.ttl.unwrap_or(self.idle)
    }

    /// Checks a session's own idle TTL and turns it into ms: a valid TTL
    /// ([`check::ttl_millis`]) no longer than the absolute lifetime, when there is one.
    pub(crate) fn session_ttl(&self, ttl: Duration) -> Result<u64> {
        let ms = check::ttl_millis(ttl)
            .map_err(|e| Error::InvalidInput(format!("session idle TTL: {e}")))?;
        if let Some(abs) = self.absolute.filter(|&abs| ms > abs) {
            return Err(Error::InvalidInput(format!(
                "session idle TTL is {ms} ms, above the absolute lifetime of {abs} ms \
                 (Config::absolute_lifetime)"
            )));
        }
        Ok(ms)
    }

    /// The TTL of a write at `now`, in ms, for a session with these reserved keys: its idle TTL
    /// ([`idle_of`](Self::idle_of)), cut by the absolute deadline and by a retired id's grace
    /// deadline; `None` if one of them has passed.
    /// [`Error::Corrupt`] if the metadata the absolute lifetime needs does not decode.
    pub(crate) fn write_ttl(&self, r: &Reserved, now: u64) -> Result<Option<u64>> {
        let mut ttl = self.idle_of(r);
        if let Some(abs) = self.absolute
            && let Some(m) = r.meta()?
        {
            ttl = ttl.min(m.started().saturating_add(abs).saturating_sub(now));
        }
        if let Some(until) = r.retired {
            ttl = ttl.min(until.saturating_sub(now));
        }
        Ok((ttl > 0).then_some(ttl))
    }

    /// Whether a read-only request should slide the expiry: always when the deadline is unknown,
    /// else when less than `touch_threshold` of the session's idle TTL (`idle`) remains and the
    /// new deadline is later than the current one.
    pub(crate) fn touch_due(&self, deadline: Option<u64>, ttl: u64, idle: u64, now: u64) -> bool {
        match deadline {
            None => true,
            Some(d) => {
                let remaining = d.saturating_sub(now) as f64;
                remaining < idle as f64 * self.touch_threshold && now.saturating_add(ttl) > d
            }
        }
    }

    /// Whether timed rotation is due for a session with this metadata ([`Error::Corrupt`] if
    /// the metadata, needed only with timed rotation on, does not decode).
    pub(crate) fn rotation_due(&self, r: &Reserved, now: u64) -> Result<bool> {
        let Some(every) = self.rotate else {
            return Ok(false);
        };
        Ok(match r.meta()? {
            Some(m) => r.retired.is_none() && m.issued.saturating_add(every) <= now,
            None => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reserved::StoredMeta;

    fn timing(c: Config) -> Timing {
        Timing::from_config(&c).expect("valid config")
    }

    fn meta_at(created: u64, ip: Option<&str>) -> Reserved {
        Reserved::with_meta(Some(StoredMeta::new(
            created,
            ClientInfo::new(ip.map(|i| i.parse().expect("ip")), Some("ua")),
        )))
    }

    fn verdict(t: &Timing, r: &Reserved, client: &ClientInfo, now: u64) -> Verdict {
        t.verdict(r, client, now).expect("the metadata decodes")
    }

    fn wt(t: &Timing, r: &Reserved, now: u64) -> Option<u64> {
        t.write_ttl(r, now).expect("the metadata decodes")
    }

    fn rotation(t: &Timing, r: &Reserved, now: u64) -> bool {
        t.rotation_due(r, now).expect("the metadata decodes")
    }

    #[test]
    fn without_needs_clock_the_verdict_and_rotation_ignore_now() {
        let configs = [
            Config::default(),
            Config {
                absolute_lifetime: Some(Duration::from_secs(10)),
                ..Config::default()
            },
            Config {
                rotate_every: Some(Duration::from_secs(10)),
                ..Config::default()
            },
        ];
        let client = ClientInfo::default();
        for c in configs {
            let t = timing(c);
            for retired in [None, Some(5_000)] {
                let r = Reserved {
                    retired,
                    ..meta_at(1_000, None)
                };
                let at = |now| (verdict(&t, &r, &client, now), rotation(&t, &r, now));
                let same = [0, 1_000, 5_000, 20_000, u64::MAX]
                    .iter()
                    .all(|&now| at(now) == at(0));
                assert!(t.needs_clock(&r) || same, "{t:?} {r:?}");
                if t.absolute.is_some() || t.rotate.is_some() || retired.is_some() {
                    assert!(t.needs_clock(&r));
                }
            }
        }
    }

    #[test]
    fn write_ttl_is_the_earlier_of_idle_and_absolute() {
        let t = timing(Config {
            idle_ttl: Duration::from_secs(100),
            absolute_lifetime: Some(Duration::from_secs(150)),
            ..Config::default()
        });
        let m = StoredMeta::new(1_000_000, ClientInfo::default());
        let r = |meta: Option<&StoredMeta>, retired, ttl| Reserved {
            retired,
            ttl,
            ..Reserved::with_meta(meta.cloned())
        };
        // early: idle wins
        assert_eq!(wt(&t, &r(Some(&m), None, None), 1_000_000), Some(100_000));
        // late: the absolute deadline (1_150_000) cuts it
        assert_eq!(wt(&t, &r(Some(&m), None, None), 1_120_000), Some(30_000));
        // past it: expired
        assert_eq!(wt(&t, &r(Some(&m), None, None), 1_150_000), None);
        // a login restarts the absolute lifetime
        let logged = StoredMeta {
            auth: Some(1_100_000),
            ..m.clone()
        };
        assert_eq!(
            wt(&t, &r(Some(&logged), None, None), 1_150_000),
            Some(100_000)
        );
        // a retired id lives only to its grace deadline
        assert_eq!(
            wt(&t, &r(Some(&m), Some(1_000_500), None), 1_000_000),
            Some(500)
        );
        assert_eq!(wt(&t, &r(None, None, None), 5), Some(100_000));
        // the session's own idle TTL replaces the manager's, longer or shorter, and the
        // absolute deadline still cuts it
        assert_eq!(
            wt(&t, &r(Some(&m), None, Some(140_000)), 1_000_000),
            Some(140_000)
        );
        assert_eq!(
            wt(&t, &r(Some(&m), None, Some(2_000)), 1_000_000),
            Some(2_000)
        );
        assert_eq!(
            wt(&t, &r(Some(&m), None, Some(140_000)), 1_120_000),
            Some(30_000)
        );
        assert_eq!(wt(&t, &r(None, None, Some(7)), 5), Some(7));
    }

    #[test]
    fn a_session_ttl_must_be_valid_and_within_the_absolute_lifetime() {
        let t = timing(Config {
            idle_ttl: Duration::from_secs(100),
            absolute_lifetime: Some(Duration::from_secs(150)),
            ..Config::default()
        });
        assert_eq!(t.session_ttl(Duration::from_secs(150)).ok(), Some(150_000));
        assert_eq!(t.session_ttl(Duration::from_micros(1)).ok(), Some(1));
        for bad in [
            Duration::ZERO,
            Duration::from_millis(150_001),
            check::MAX_TTL * 2,
        ] {
            assert!(
                matches!(t.session_ttl(bad), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
        }
        let unbounded = timing(Config::default());
        assert_eq!(
            unbounded.session_ttl(check::MAX_TTL).ok(),
            Some(check::MAX_TTL.as_millis() as u64)
        );
        assert!(
            unbounded
                .session_ttl(check::MAX_TTL + Duration::from_millis(1))
                .is_err()
        );
        let r = Reserved {
            ttl: Some(5),
            ..Reserved::default()
        };
        assert_eq!(unbounded.idle_of(&r), 5);
        assert_eq!(unbounded.idle_of(&Reserved::default()), 7_200_000);
    }

    #[test]
    fn verdicts() {
        let t = timing(Config {
            absolute_lifetime: Some(Duration::from_secs(10)),
            ..Config::default()
        });
        let r = meta_at(0, Some("10.0.0.1"));
        let c = ClientInfo::new(Some("10.0.0.2".parse().expect("ip")), None);
        assert_eq!(verdict(&t, &r, &c, 9_999), Verdict::Live);
        assert_eq!(verdict(&t, &r, &c, 10_000), Verdict::Expired);
        let retired = Reserved {
            retired: Some(50),
            ..meta_at(0, None)
        };
        assert_eq!(verdict(&t, &retired, &c, 49), Verdict::Live);
        assert_eq!(verdict(&t, &retired, &c, 50), Verdict::Expired);

        let ip = timing(Config {
            match_ip: true,
            ..Config::default()
        });
        assert_eq!(verdict(&ip, &r, &c, 0), Verdict::Refused);
        let same = ClientInfo::new(Some("10.0.0.1".parse().expect("ip")), Some("other"));
        assert_eq!(verdict(&ip, &r, &same, 0), Verdict::Live);
        assert_eq!(
            verdict(&ip, &Reserved::default(), &same, 0),
            Verdict::Refused,
            "no metadata to compare against is a refusal"
        );
        let ua = timing(Config {
            match_user_agent: true,
            ..Config::default()
        });
        assert_eq!(verdict(&ua, &r, &same, 0), Verdict::Refused);
        assert_eq!(
            verdict(&ua, &r, &ClientInfo::new(None, Some("ua")), 0),
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
        assert!(!t.touch_due(Some(90_000), 100_000, 100_000, 0));
        // 40 s left: due
        assert!(t.touch_due(Some(40_000), 100_000, 100_000, 0));
        // unknown deadline: always
        assert!(t.touch_due(None, 100_000, 100_000, 0));
        // capped by the absolute deadline: a touch would not move it
        assert!(!t.touch_due(Some(40_000), 40_000, 100_000, 0));
        // the threshold is a fraction of the session's own idle TTL: 40 s of 1000 is due,
        // 40 s of 60 is not
        assert!(t.touch_due(Some(40_000), 1_000_000, 1_000_000, 0));
        assert!(!t.touch_due(Some(40_000), 60_000, 60_000, 0));
        let never = timing(Config {
            touch_threshold: 0.0,
            ..Config::default()
        });
        assert!(!never.touch_due(Some(1), 7_200_000, 7_200_000, 0));
        let always = timing(Config {
            touch_threshold: 1.0,
            ..Config::default()
        });
        assert!(always.touch_due(Some(7_199_999), 7_200_000, 7_200_000, 0));
    }

    #[test]
    fn rotation_due_after_interval_only() {
        let t = timing(Config {
            rotate_every: Some(Duration::from_secs(300)),
            ..Config::default()
        });
        let r = meta_at(1_000, None);
        assert!(!rotation(&t, &r, 300_999));
        assert!(rotation(&t, &r, 301_000));
        let retired = Reserved {
            retired: Some(u64::MAX),
            ..r.clone()
        };
        assert!(!rotation(&t, &retired, 301_000), "old ids are not rotated");
        assert!(!rotation(&timing(Config::default()), &r, u64::MAX));
    }

    #[test]
    fn expires_at_adds_the_ttl_without_overflow() {
        assert_eq!(expires_at(1_000, 500), check::from_unix_millis(1_500));
        assert_eq!(
            expires_at(u64::MAX - 1, 5),
            check::from_unix_millis(u64::MAX),
            "saturates"
        );
        assert_eq!(millis(1_500), Duration::from_millis(1_500));
    }
}
