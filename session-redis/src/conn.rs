//! One connection type for a single node and a cluster, so pipelines and scripts are written
//! once; and how its errors become the framework's.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use session_core::driver::Error;

use crate::NAME;

/// A cheap-to-clone handle on the shared multiplexed connection(s).
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server (or a proxy) through a reconnecting multiplexed connection.
    Single(ConnectionManager),
    /// A Redis Cluster: commands are routed by the slot of their keys.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Maps a redis-rs error: a key holding another Redis type than the command expects
/// (`WRONGTYPE`: written by someone else) is a corrupt record; everything else is a backend
/// failure.
pub(crate) fn backend(e: RedisError) -> Error {
    if e.code() == Some("WRONGTYPE") || e.to_string().contains("WRONGTYPE") {
        return Error::corrupt(
            NAME,
            format!(
                "a key holds another Redis type than expected (written by something else): {e}"
            ),
        );
    }
    Error::backend(NAME, e)
}

/// The error of a call that got no answer within `after` (the operation timeout).
pub(crate) fn timed_out(after: Duration) -> Error {
    Error::backend(
        NAME,
        format!("no answer from Redis within {after:?} (is the server running and reachable?)"),
    )
}
