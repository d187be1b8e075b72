//! One connection type for a single node (direct or through Redis Sentinel) and a cluster, so
//! pipelines and scripts are written once; and how its errors become the framework's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use session_core::driver::Error;

use crate::NAME;
use crate::sentinel::SentinelConn;

/// A cheap-to-clone handle on the shared multiplexed connection(s).
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server: one keyspace, whichever way the server is found.
    Single(Server),
    /// A Redis Cluster: commands are routed by the slot of their keys.
    Cluster(ClusterConnection),
}

/// How a single-server connection finds its server.
#[derive(Clone)]
pub(crate) enum Server {
    /// A fixed address (or a proxy), through a reconnecting multiplexed connection.
    Direct(ConnectionManager),
    /// The master that Redis Sentinel names, asked again after every failure.
    Sentinel(SentinelConn),
}

/// The client's connections: one or more [`Conn`]s of the same kind (all single node or all
/// cluster). A call takes the first connection with fewer than `spill` calls in flight
/// ([`RedisClientBuilder::connection_spill`](crate::client::RedisClientBuilder::connection_spill),
/// default [`CONNECTION_SPILL`](crate::client::CONNECTION_SPILL)), or, when every one has that
/// many, the least busy: a light load stays on one connection, whose driver task then sends the
/// commands of concurrent calls together (one `writev`, one read on the server) and reads their
/// replies together; a heavy load spills onto the others, so their replies are parsed on more
/// than one core.
pub(crate) struct Pool {
    conns: Box<[Conn]>,
    in_flight: Arc<[AtomicUsize]>,
    /// Calls in flight on a connection before the next call looks further (at least 1).
    spill: usize,
}

/// A call's place on a connection of a [`Pool`]: counted among the connection's calls in flight
/// until dropped (nothing to count in a pool of one).
pub(crate) struct Claim {
    counted: Option<(Arc<[AtomicUsize]>, usize)>,
}

impl Clone for Claim {
    fn clone(&self) -> Claim {
        if let Some((in_flight, slot)) = &self.counted {
            in_flight[*slot].fetch_add(1, Ordering::Relaxed);
        }
        Claim {
            counted: self.counted.clone(),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some((in_flight, slot)) = &self.counted {
            in_flight[*slot].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Pool {
    /// A pool of `conns`, which must not be empty, each carrying up to `spill` calls in flight
    /// (at least 1) before the next call looks further.
    pub(crate) fn new(conns: Vec<Conn>, spill: usize) -> Option<Pool> {
        (!conns.is_empty()).then(|| Pool {
            in_flight: conns.iter().map(|_| AtomicUsize::new(0)).collect(),
            conns: conns.into_boxed_slice(),
            spill: spill.max(1),
        })
    }

    /// The connection for the next call, and the call's claim on it (see [`Pool`]).
    pub(crate) fn claim(&self) -> (&Conn, Claim) {
        if self.conns.len() == 1 {
            return (&self.conns[0], Claim { counted: None });
        }
        let slot = self.pick_slot();
        self.in_flight[slot].fetch_add(1, Ordering::Relaxed);
        (
            &self.conns[slot],
            Claim {
                counted: Some((self.in_flight.clone(), slot)),
            },
        )
    }

    /// The connection a call would take now, without counting one more call on it (for the
    /// occasional call that holds no [`Claim`]).
    pub(crate) fn pick(&self) -> &Conn {
        &self.conns[self.pick_slot()]
    }

    fn pick_slot(&self) -> usize {
        let mut least = (0, usize::MAX);
        for (slot, calls) in self.in_flight.iter().enumerate() {
            let calls = calls.load(Ordering::Relaxed);
            if calls < self.spill {
                return slot;
            }
            if calls < least.1 {
                least = (slot, calls);
            }
        }
        least.0
    }

    /// The first connection: what every call would see for the pool's kind (single or cluster).
    pub(crate) fn first(&self) -> &Conn {
        &self.conns[0]
    }

    /// How many connections the pool holds.
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// How many calls in flight a connection carries before the next call looks further.
    pub(crate) fn spill(&self) -> usize {
        self.spill
    }
}

impl ConnectionLike for Server {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Server::Direct(c) => c.req_packed_command(cmd),
            Server::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Server::Direct(c) => c.req_packed_commands(cmd, offset, count),
            Server::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Server::Direct(c) => c.get_db(),
            Server::Sentinel(c) => c.get_db(),
        }
    }
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
    if e.is_connection_dropped() || e.is_connection_refusal() {
        return Error::backend(
            NAME,
            format!(
                "lost the connection to Redis (server down or restarting, or a failover under \
                 way?): {e}"
            ),
        );
    }
    if e.is_timeout() {
        return Error::backend(
            NAME,
            format!(
                "no reply from Redis within the response timeout (server down, hung, or a \
                 failover under way?): {e}"
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
