//! Pub/sub on [`RedisClient`] for one server and for a cluster: [`RedisClient::subscribe`] opens
//! a [`Subscription`] on dedicated connections, [`RedisClient::publish`] publishes to match.
//!
//! One server: `SUBSCRIBE` on one dedicated connection and `PUBLISH` (any Redis version, proxies;
//! through Sentinel, to the master the sentinels name when the subscription opens).
//! A cluster: sharded pub/sub (Redis 7.0+): each channel lives in the slot its name hashes to
//! (hash tags included, like a key), `SPUBLISH` goes to that slot's master, and the subscription
//! opens one RESP3 connection per master owning a channel, with one `SSUBSCRIBE` per slot. A
//! plain `PUBLISH` on a cluster would be broadcast to every node over the cluster bus.

use std::collections::BTreeMap;
use std::future::Future;

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, Msg, ProtocolVersion, PushInfo, PushKind, Value,
};
use session_core::driver::{Error, Result};
use tokio::sync::mpsc;

use crate::NAME;
use crate::client::{RedisClient, Source};
use crate::conn::Conn;

/// Messages of the channels a [`RedisClient::subscribe`] call subscribed to, on connections of
/// their own (dropping the subscription closes them).
///
/// It does not reconnect: [`next_message`](Self::next_message) returns `None` once a connection
/// broke, or the server dropped the subscription (on a cluster, when a channel's slot moved to
/// another master), and from then on; subscribe again with a new call. Messages published in
/// between are lost: pub/sub delivers at most once.
pub struct Subscription {
    inner: Inner,
}

enum Inner {
    /// One server: redis-rs's pub/sub stream.
    Single(PubSubStream),
    /// A cluster: RESP3 pushes of one connection per master; the connections stay open while
    /// their handles live.
    Sharded {
        pushes: mpsc::UnboundedReceiver<PushInfo>,
        _conns: Vec<MultiplexedConnection>,
        ended: bool,
    },
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sharded, connections) = match &self.inner {
            Inner::Single(_) => (false, 1),
            Inner::Sharded { _conns, .. } => (true, _conns.len()),
        };
        f.debug_struct("Subscription")
            .field("sharded", &sharded)
            .field("connections", &connections)
            .finish()
    }
}

impl Subscription {
    /// The next message on any subscribed channel; `None` when the subscription ended (a
    /// connection broke, or the server unsubscribed it), then always `None`.
    pub async fn next_message(&mut self) -> Option<Msg> {
        match &mut self.inner {
            Inner::Single(stream) => stream.next().await,
            Inner::Sharded { pushes, ended, .. } => {
                while !*ended {
                    let Some(push) = pushes.recv().await else {
                        *ended = true;
                        break;
                    };
                    match push.kind {
                        PushKind::SMessage | PushKind::Message => {
                            if let Some(msg) = Msg::from_push_info(push) {
                                return Some(msg);
                            }
                        }
                        // The confirmations of our own SSUBSCRIBE commands.
                        PushKind::SSubscribe | PushKind::Subscribe => {}
                        // A connection closed, or the server dropped channels (slot migration):
                        // the subscription is incomplete from here on.
                        _ => *ended = true,
                    }
                }
                None
            }
        }
    }

    /// How many dedicated connections the subscription holds: 1 on one server; on a cluster one
    /// per master owning a subscribed channel.
    pub fn connection_count(&self) -> usize {
        match &self.inner {
            Inner::Single(_) => 1,
            Inner::Sharded { _conns, .. } => _conns.len(),
        }
    }
}

impl RedisClient {
    /// Subscribes to `channels` on dedicated connections, within the operation timeout.
    ///
    /// On one server: `SUBSCRIBE` on one new connection (as [`pubsub`](Self::pubsub)). On a
    /// cluster: sharded channels (Redis 7.0+); the slot of each channel is asked from the cluster
    /// (`CLUSTER KEYSLOT`) and its master from `CLUSTER SLOTS`; one RESP3 connection is opened to
    /// each of those masters (with the first cluster url's credentials and scheme, the connect
    /// and response timeouts of the builder), and each slot's channels are subscribed with one
    /// `SSUBSCRIBE`. Name channels with hash tags (`app:{tag}:...`) to choose which share a
    /// slot. Fails with [`Error::InvalidInput`] for no channels and [`Error::Backend`] if a
    /// master cannot be reached.
    pub async fn subscribe<S: AsRef<str>>(&self, channels: &[S]) -> Result<Subscription> {
        if channels.is_empty() {
            return Err(Error::InvalidInput(
                "a subscription needs at least one channel".into(),
            ));
        }
        let channels: Vec<&str> = channels.iter().map(AsRef::as_ref).collect();
        match (&self.source, self.conn()) {
            (Source::Single(client), _) => {
                self.subscribe_single(async { Ok(client.clone()) }, &channels)
                    .await
            }
            (Source::Sentinel(discovery), _) => {
                let master = async { Ok(discovery.master().await?.0) };
                self.subscribe_single(master, &channels).await
            }
            (
                Source::Cluster {
                    node,
                    connect_timeout,
                    response_timeout,
                },
                Conn::Cluster(cluster),
            ) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(*connect_timeout))
                    .set_response_timeout(Some(*response_timeout));
                self.subscribe_sharded(cluster, node, config, &channels)
                    .await
            }
            (Source::Cluster { .. }, Conn::Single(_)) => Err(Error::backend(
                NAME,
                "a cluster client without a cluster connection",
            )),
        }
    }

    /// Publishes `payload` on `channel` and returns how many subscribers received it: `PUBLISH`
    /// on one server; `SPUBLISH` on a cluster, sent to the master owning the channel's slot, which
    /// counts the subscribers connected to it (those of [`subscribe`](Self::subscribe)).
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> Result<usize> {
        let command = if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        self.query(redis::cmd(command).arg(channel).arg(payload))
            .await
    }

    /// `SUBSCRIBE` on a new connection to the one server (`client`: the url's, or the master the
    /// sentinels name now), within the operation timeout.
    async fn subscribe_single(
        &self,
        client: impl Future<Output = redis::RedisResult<redis::Client>>,
        channels: &[&str],
    ) -> Result<Subscription> {
        let open = async {
            let mut pubsub = client.await?.get_async_pubsub().await?;
            pubsub.subscribe(channels).await?;
            Ok(pubsub)
        };
        let pubsub = self.run(open).await?;
        Ok(Subscription {
            inner: Inner::Single(pubsub.into_on_message()),
        })
    }

    async fn subscribe_sharded(
        &self,
        cluster: ClusterConnection,
        node: &redis::ConnectionInfo,
        config: AsyncConnectionConfig,
        channels: &[&str],
    ) -> Result<Subscription> {
        let (tx, pushes) = mpsc::unbounded_channel();
        let config = config.set_push_sender(tx);
        let open = async {
            let mut slots: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
            for ch in channels {
                let slot = route_random(&cluster, redis::cmd("CLUSTER").arg("KEYSLOT").arg(*ch))
                    .await
                    .and_then(|v| Ok(redis::from_redis_value::<u16>(v)?))?;
                slots.entry(slot).or_default().push(ch);
            }
            let ranges = route_random(&cluster, redis::cmd("CLUSTER").arg("SLOTS"))
                .await
                .map(parse_cluster_slots)?;
            // Master address -> its slots' channel groups.
            let mut masters: BTreeMap<(String, u16), Vec<Vec<&str>>> = BTreeMap::new();
            for (slot, group) in slots {
                let owner = ranges
                    .iter()
                    .find(|r| r.0 <= slot && slot <= r.1)
                    .map(|r| (r.2.clone(), r.3))
                    .ok_or_else(|| {
                        redis::RedisError::from((
                            redis::ErrorKind::Client,
                            "no master serves the slot",
                            slot.to_string(),
                        ))
                    })?;
                masters.entry(owner).or_default().push(group);
            }
            let mut conns = Vec::with_capacity(masters.len());
            for ((host, port), groups) in masters {
                let info = node
                    .clone()
                    .set_addr(at_address(node.addr(), host, port))
                    .set_redis_settings(
                        node.redis_settings()
                            .clone()
                            .set_protocol(ProtocolVersion::RESP3),
                    );
                let client = redis::Client::open(info)?;
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                for group in groups {
                    redis::cmd("SSUBSCRIBE")
                        .arg(&group)
                        .exec_async(&mut conn)
                        .await?;
                }
                conns.push(conn);
            }
            Ok::<_, redis::RedisError>(conns)
        };
        let conns = self.run(open).await?;
        Ok(Subscription {
            inner: Inner::Sharded {
                pushes,
                _conns: conns,
                ended: false,
            },
        })
    }
}

/// Runs `cmd` on any node of the cluster.
async fn route_random(
    cluster: &ClusterConnection,
    cmd: &mut redis::Cmd,
) -> redis::RedisResult<Value> {
    cluster
        .clone()
        .route_command(
            cmd.clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await
}

/// `template`'s kind of address (plain TCP or TLS with its settings) at `host:port`.
fn at_address(template: &ConnectionAddr, host: String, port: u16) -> ConnectionAddr {
    match template {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    }
}

/// `(first slot, last slot, master host, master port)` of each range of a `CLUSTER SLOTS` reply;
/// ranges whose master has no usable address are left out.
pub(crate) fn parse_cluster_slots(reply: Value) -> Vec<(u16, u16, String, u16)> {
    let Value::Array(ranges) = reply else {
        return Vec::new();
    };
    ranges
        .into_iter()
        .filter_map(|range| {
            let Value::Array(fields) = range else {
                return None;
            };
            let mut it = fields.into_iter();
            let first: u16 = redis::from_redis_value(it.next()?).ok()?;
            let last: u16 = redis::from_redis_value(it.next()?).ok()?;
            let Value::Array(master) = it.next()? else {
                return None;
            };
            let mut m = master.into_iter();
            let host: String = redis::from_redis_value(m.next()?).ok()?;
            let port: u16 = redis::from_redis_value(m.next()?).ok()?;
            (!host.is_empty() && host != "?").then_some((first, last, host, port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn cluster_slots_reply_is_parsed() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(30001), bulk("id1")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(30004), bulk("id4")]),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                Value::Array(vec![bulk("?"), Value::Int(30002), bulk("id2")]),
            ]),
            Value::Int(3),
        ]);
        assert_eq!(
            parse_cluster_slots(reply),
            vec![(0, 5460, "127.0.0.1".to_owned(), 30001)]
        );
        assert!(parse_cluster_slots(Value::Nil).is_empty());
    }
}
