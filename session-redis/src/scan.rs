//! Walking the keyspace, on [`RedisClient`]: pages of keys matching a pattern (one `SCAN` on a
//! single node; on a cluster, every master in turn with a cursor that names the master),
//! `clear_prefix`, and the masters of a cluster from `CLUSTER NODES`. The store's `scan` and
//! `clear_prefix` are these, on its own prefix.

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use session_core::driver::{Error, Result, ScanPage, SessionId};

use crate::NAME;
use crate::client::RedisClient;
use crate::conn::Conn;
use crate::keys::{SLOTS, check_prefix};
use crate::scripts;
use crate::store::RedisStore;

/// The page size `scan` asks `SCAN` for at most, whatever the `limit` hint.
const MAX_SCAN_COUNT: usize = 10_000;

/// Keys `clear_prefix` asks `SCAN` for per step.
const CLEAR_COUNT: usize = 1000;

/// A master of a cluster: host and port.
type Node = (String, u16);

fn bad_cursor() -> Error {
    Error::InvalidInput("not a scan cursor of this Redis connection".into())
}

/// One page of [`RedisClient::scan_page`]: the keys found (as `SCAN` returns them: a key may
/// appear in more than one page, and keys written during the walk may or may not appear), and
/// the cursor of the next page, `None` when the walk is done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// The names of the keys found, as bytes.
    pub keys: Vec<Vec<u8>>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<String>,
}

impl RedisClient {
    /// One page of the keys matching `pattern` (a `SCAN MATCH` glob), from `cursor` (`None` to
    /// start). `count` is `SCAN`'s `COUNT` hint, clamped to 1..=10,000: a page may hold fewer
    /// or more keys, or none while the walk goes on.
    ///
    /// On one server the cursor is `SCAN`'s own. On a cluster the masters (from
    /// `CLUSTER NODES`, one more round trip per page) are walked in sorted order, each with its
    /// own `SCAN`, and the cursor is `<host>:<port>/<cursor>`; a master that leaves mid-walk is
    /// skipped. A cursor this client did not make is [`Error::InvalidInput`].
    pub async fn scan_page(
        &self,
        pattern: &str,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<KeyPage> {
        let count = count.clamp(1, MAX_SCAN_COUNT);
        match &self.conn() {
            Conn::Single(_) => self.scan_single(pattern, cursor, count).await,
            Conn::Cluster(c) => self.scan_cluster(c.clone(), pattern, cursor, count).await,
        }
    }

    /// Deletes every key named `<prefix>:...` and returns how many it deleted. The prefix must
    /// pass [`check_prefix`] (so the pattern `<prefix>:*` matches no one else's keys).
    ///
    /// Meant for tests and for resetting an application: it walks the keyspace with `SCAN`
    /// (every master of a cluster) and deletes in batches (one `DEL` per step on one server, one
    /// per key on a cluster, whose keys may sit in different slots), so it is neither atomic nor
    /// fast on a big database. Keys written meanwhile may survive.
    pub async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        check_prefix(prefix)?;
        let pattern = format!("{prefix}:*");
        let nodes: Vec<Option<Node>> = match &self.conn() {
            Conn::Single(_) => vec![None],
            Conn::Cluster(c) => self
                .cluster_masters(&mut c.clone())
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        };
        let mut deleted = 0u64;
        for node in &nodes {
            let mut cursor = 0u64;
            loop {
                let (next, found) = self
                    .scan_step(node.as_ref(), cursor, &pattern, CLEAR_COUNT)
                    .await?;
                if node.is_none() && !found.is_empty() {
                    let n: u64 = self.query(redis::cmd("DEL").arg(&found)).await?;
                    deleted += n;
                } else {
                    // Cluster: keys of one node may sit in different slots; one DEL each.
                    for key in &found {
                        let n: u64 = self.query(redis::cmd("DEL").arg(key)).await?;
                        deleted += n;
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }

    /// Master nodes of the cluster, sorted, from `CLUSTER NODES`.
    async fn cluster_masters(&self, conn: &mut ClusterConnection) -> Result<Vec<Node>> {
        let reply = self
            .run(conn.route_command(
                redis::cmd("CLUSTER").arg("NODES").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
            ))
            .await?;
        let text: String = redis::from_redis_value(reply)
            .map_err(|e| Error::backend(NAME, format!("unexpected CLUSTER NODES reply: {e}")))?;
        let mut masters = parse_cluster_masters(&text);
        masters.sort();
        masters.dedup();
        Ok(masters)
    }

    /// One `SCAN` step: on the single node, or on the cluster master `node`.
    async fn scan_step(
        &self,
        node: Option<&Node>,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        match (&self.conn(), node) {
            (Conn::Cluster(c), Some((host, port))) => {
                let mut c = c.clone();
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let reply = self.run(c.route_command(cmd, routing)).await?;
                redis::from_redis_value(reply)
                    .map_err(|e| Error::backend(NAME, format!("unexpected SCAN reply: {e}")))
            }
            _ => self.query(&cmd).await,
        }
    }

    async fn scan_single(
        &self,
        pattern: &str,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<KeyPage> {
        let start: u64 = match cursor {
            None => 0,
            Some(text) => text.parse().map_err(|_| bad_cursor())?,
        };
        let (next, keys) = self.scan_step(None, start, pattern, count).await?;
        Ok(KeyPage {
            keys,
            next: (next != 0).then(|| next.to_string()),
        })
    }

    /// Cluster scan: the cursor is `<host>:<port>/<redis cursor>`; masters are visited in sorted
    /// order, each with its own `SCAN`.
    async fn scan_cluster(
        &self,
        mut conn: ClusterConnection,
        pattern: &str,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<KeyPage> {
        let masters = self.cluster_masters(&mut conn).await?;
        let (index, start) = match cursor {
            None => (0, 0u64),
            Some(text) => {
                let (addr, cur) = text.rsplit_once('/').ok_or_else(bad_cursor)?;
                let (host, port) = addr.rsplit_once(':').ok_or_else(bad_cursor)?;
                let node = (
                    host.to_owned(),
                    port.parse::<u16>().map_err(|_| bad_cursor())?,
                );
                let cur: u64 = cur.parse().map_err(|_| bad_cursor())?;
                match masters.iter().position(|m| *m == node) {
                    Some(i) => (i, cur),
                    // The node left the cluster mid-scan: go on with the next one.
                    None => (masters.partition_point(|m| *m < node), 0),
                }
            }
        };
        let Some(node) = masters.get(index) else {
            return Ok(KeyPage::default());
        };
        let (next, keys) = self.scan_step(Some(node), start, pattern, count).await?;
        let next = if next != 0 {
            Some(format!("{}:{}/{next}", node.0, node.1))
        } else {
            masters.get(index + 1).map(|(h, p)| format!("{h}:{p}/0"))
        };
        Ok(KeyPage { keys, next })
    }
}

/// Slots whose live index a cluster `scan` or purge asks about in one go (concurrent commands
/// on the cluster connection, which pipelines them per node).
const SLOT_BATCH: u16 = 512;

/// Where a `scan` page of the live index starts: a slot (always 0 on one server), and within it
/// the entry after which to go on, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LiveCursor {
    slot: u16,
    after: Option<(u64, SessionId)>,
}

impl LiveCursor {
    /// `<slot>` or `<slot>.<score>.<id>`.
    fn parse(text: &str) -> Result<LiveCursor> {
        let mut parts = text.splitn(3, '.');
        let slot: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|s| *s < SLOTS)
            .ok_or_else(bad_cursor)?;
        let after = match (parts.next(), parts.next()) {
            (None, None) => None,
            (Some(at), Some(id)) => Some((
                at.parse().map_err(|_| bad_cursor())?,
                SessionId::parse(id).map_err(|_| bad_cursor())?,
            )),
            _ => return Err(bad_cursor()),
        };
        Ok(LiveCursor { slot, after })
    }

    fn text(&self) -> String {
        match &self.after {
            None => self.slot.to_string(),
            Some((at, id)) => format!("{}.{at}.{id}", self.slot),
        }
    }
}

/// [`LiveCursor::parse`] for the fuzz entry points: slot, entry, canonical text.
pub(crate) fn parse_cursor(text: &str) -> Result<crate::fuzzing::ScanCursor> {
    let cursor = LiveCursor::parse(text)?;
    let canonical = cursor.text();
    Ok((cursor.slot, cursor.after, canonical))
}

/// One page of one live index ([`scripts::SCAN_LIVE`]): the ids of live sessions, the last
/// entry the page examined (where the next page starts, live or not), and whether the index
/// holds more after it.
struct LivePage {
    ids: Vec<SessionId>,
    last: Option<(u64, SessionId)>,
    more: bool,
}

impl RedisStore {
    /// One page of `scan`: the live index (one sorted set on a server, one per slot on a
    /// cluster), read in order of slot, score and id, so a page costs round trips in
    /// proportion to the sessions it returns, whatever else the database holds.
    ///
    /// The cursor is `<slot>` or `<slot>.<score>.<id>` (the last entry examined). On one server
    /// a page is one script call. On a cluster, the slots after the cursor are counted
    /// (`ZCOUNT`, 512 slots per step, concurrently) and only the slots that hold live sessions are
    /// read, concurrently, as many as fill the page.
    pub(crate) async fn scan_page(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let limit = limit.clamp(1, MAX_SCAN_COUNT);
        let mut at = match cursor {
            None => LiveCursor {
                slot: 0,
                after: None,
            },
            Some(text) => LiveCursor::parse(text)?,
        };
        let last_slot = if self.keys.is_cluster() { SLOTS } else { 1 };
        if at.slot >= last_slot {
            return Err(bad_cursor());
        }
        let now = session_core::driver::check::now_millis();
        let mut ids = Vec::new();
        // The cursor's own slot first: go on after its entry.
        if at.after.is_some() || !self.keys.is_cluster() {
            let page = self
                .live_page(at.slot, at.after.as_ref(), limit, now)
                .await?;
            ids.extend(page.ids);
            if page.more {
                let next = LiveCursor {
                    slot: at.slot,
                    after: page.last.or(at.after),
                };
                return Ok(ScanPage {
                    ids,
                    next: Some(next.text()),
                });
            }
            at = LiveCursor {
                slot: at.slot + 1,
                after: None,
            };
        }
        // Then whole slots (a cluster only), skipping the empty ones.
        while at.slot < last_slot && ids.len() < limit {
            let end = at.slot.saturating_add(SLOT_BATCH).min(last_slot);
            let counts = self.live_counts(at.slot..end, now).await?;
            let mut chosen = Vec::new();
            let mut room = limit - ids.len();
            for (slot, count) in (at.slot..end).zip(counts) {
                if count == 0 {
                    continue;
                }
                chosen.push((slot, room.min(count)));
                room = room.saturating_sub(count);
                if room == 0 {
                    break;
                }
            }
            let pages = futures_util::future::try_join_all(
                chosen
                    .iter()
                    .map(|(slot, n)| self.live_page(*slot, None, *n, now)),
            )
            .await?;
            at = LiveCursor {
                slot: end,
                after: None,
            };
            for ((slot, _), page) in chosen.iter().zip(pages) {
                ids.extend(page.ids);
                if page.more {
                    // The page is full here (or the slot grew since it was counted): go on
                    // within this slot, and drop nothing but what later slots returned.
                    at = LiveCursor {
                        slot: *slot,
                        after: page.last,
                    };
                    break;
                }
                at = LiveCursor {
                    slot: slot + 1,
                    after: None,
                };
            }
        }
        let next = (at.slot < last_slot).then(|| at.text());
        Ok(ScanPage { ids, next })
    }

    /// One call of [`scripts::SCAN_LIVE`] on the live index of `slot`.
    async fn live_page(
        &self,
        slot: u16,
        after: Option<&(u64, SessionId)>,
        n: usize,
        now: u64,
    ) -> Result<LivePage> {
        let key = self.keys.live_of_slot(slot);
        let mut inv = scripts::SCAN_LIVE.call(&[&key]);
        inv.arg(now);
        match after {
            Some((at, id)) => inv.arg(*at).arg(id.as_str()),
            None => inv.arg("").arg(""),
        };
        inv.arg(n).arg(self.keys.session_base());
        let reply: Vec<Vec<u8>> = self.client.eval(&scripts::SCAN_LIVE, &inv).await?;
        let mut items = reply.into_iter();
        let more = items.next().is_some_and(|m| m == b"1");
        let mut page = LivePage {
            ids: Vec::with_capacity(items.len() / 3),
            last: None,
            more,
        };
        while let (Some(id), Some(at), Some(live)) = (items.next(), items.next(), items.next()) {
            let at = std::str::from_utf8(&at)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|at| at.is_finite() && *at >= 0.0)
                .ok_or_else(|| Error::corrupt(NAME, format!("live index {key}: a bad score")))?
                as u64;
            // An entry that is no id was not written by this driver: skip it.
            if let Some(id) = std::str::from_utf8(&id)
                .ok()
                .and_then(|t| SessionId::parse(t).ok())
            {
                if live == b"1" {
                    page.ids.push(id.clone());
                }
                page.last = Some((at, id));
            }
        }
        Ok(page)
    }

    /// The number of entries scored after `now` (an upper bound of the live sessions: a score
    /// is at least the deadline) of the live index of each slot of
    /// `slots`, concurrently.
    async fn live_counts(&self, slots: std::ops::Range<u16>, now: u64) -> Result<Vec<usize>> {
        futures_util::future::try_join_all(slots.map(|slot| {
            let key = self.keys.live_of_slot(slot);
            async move {
                self.client
                    .query::<usize>(
                        redis::cmd("ZCOUNT")
                            .arg(key)
                            .arg(format!("({now}"))
                            .arg("+inf"),
                    )
                    .await
            }
        }))
        .await
    }

    /// `purge_expired`: removes the entries of expired sessions from every live index
    /// ([`scripts::PURGE_LIVE`]: those scored at or before now, and those scored within a
    /// granularity after now whose hash is gone; 512 slots at a time on a cluster) and returns
    /// how many went.
    pub(crate) async fn purge_live_index(&self) -> Result<u64> {
        let now = session_core::driver::check::now_millis();
        let window = now.saturating_add(self.granularity);
        let base = self.keys.session_base();
        let keys = self.keys.live_all();
        let mut purged = 0u64;
        for batch in keys.chunks(usize::from(SLOT_BATCH)) {
            let counts = futures_util::future::try_join_all(batch.iter().map(|key| {
                let mut inv = scripts::PURGE_LIVE.call(&[key]);
                inv.arg(now).arg(window).arg(&base);
                async move { self.client.eval::<u64>(&scripts::PURGE_LIVE, &inv).await }
            }))
            .await?;
            purged += counts.iter().sum::<u64>();
        }
        Ok(purged)
    }

    /// Deletes every key under this store's prefix (sessions, owner keys and sets, locks) and
    /// returns how many it deleted: [`RedisClient::clear_prefix`] on the store's prefix.
    ///
    /// Meant for tests and for resetting an application: it walks the keyspace with `SCAN` (every
    /// master of a cluster) and deletes in batches, so it is neither atomic nor fast on a big
    /// database. Keys written meanwhile may survive.
    pub async fn clear_prefix(&self) -> Result<u64> {
        self.client.clear_prefix(self.keys.prefix()).await
    }
}

/// `(host, port)` of every master that serves slots, from a `CLUSTER NODES` reply.
pub(crate) fn parse_cluster_masters(text: &str) -> Vec<Node> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let is_master = flags.split(',').any(|f| f == "master");
            let failed = flags.split(',').any(|f| f == "fail" || f == "noaddr");
            if !is_master || failed || fields.len() < 9 {
                return None;
            }
            let addr = fields.get(1)?.split('@').next()?;
            let addr = addr.split(',').next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_reply_is_parsed() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host1 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 127.0.0.1:30009@31009 master,fail - 0 0 1 connected 0-5460
bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb 127.0.0.1:30010@31010 master - 0 0 1 connected
";
        let mut masters = parse_cluster_masters(text);
        masters.sort();
        assert_eq!(
            masters,
            vec![
                ("127.0.0.1".to_owned(), 30001),
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30003),
            ]
        );
    }
}
