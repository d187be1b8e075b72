//! Redis Sentinel: the master of a named group is asked from the sentinels (redis-rs's
//! [`SentinelClient`]: `SENTINEL MASTERS` on the first sentinel that answers, then `ROLE` on the
//! address it names) when a connection opens, and again after every failure, so a failover moves
//! the client to the promoted replica without a restart.
//!
//! redis-rs finds the master but hands back a plain [`redis::Client`] bound to that address; its
//! reconnecting [`ConnectionManager`](redis::aio::ConnectionManager) would keep reconnecting to
//! the old address after a failover (where the old master, once restarted, is an empty master
//! until the sentinels demote it). So each [`SentinelConn`] holds one multiplexed connection and,
//! when that connection fails (I/O error, dropped connection, timeout) or the server answers
//! `READONLY` (it was demoted to a replica), forgets it: the next call asks the sentinels again.
//! A call that got `READONLY` was not executed by the replica, so it is sent once more, to the
//! master found then; a call whose connection failed is not (it may have been applied).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionInfo, ErrorKind, Pipeline, RedisError, RedisFuture,
    RedisResult, ServerErrorKind, Value,
};

/// After a discovery found no master, calls within this time fail with the same error instead of
/// asking the sentinels again: during a failover every call would otherwise cost the sentinels a
/// `SENTINEL MASTERS` (and the named master a connection attempt).
const RETRY_DISCOVERY_AFTER: Duration = Duration::from_millis(100);

/// Locks `m`, also after a panic elsewhere (the guarded state stays consistent: every critical
/// section is one assignment).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Asks the sentinels for the master of one group; shared by every connection of a client.
pub(crate) struct Discovery {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    master_name: String,
    /// Connect and response timeouts (and the push settings) of connections to the master.
    config: AsyncConnectionConfig,
    /// The database selected on the master.
    db: i64,
    /// The last master address found, and a counter bumped each time it changes.
    last: Mutex<(Option<String>, u64)>,
    /// The last failed discovery, answered again for [`RETRY_DISCOVERY_AFTER`].
    failed: Mutex<Option<(Instant, RedisError)>>,
}

impl Discovery {
    /// A discovery of the master `master_name` through `sentinels`, connecting to the master
    /// with `master` (credentials, database) and `config` (timeouts).
    pub(crate) fn new(
        sentinels: Vec<ConnectionInfo>,
        master_name: &str,
        master: redis::RedisConnectionInfo,
        config: AsyncConnectionConfig,
    ) -> RedisResult<Discovery> {
        let db = master.db();
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master);
        let sentinel = SentinelClient::build(
            sentinels,
            master_name.to_owned(),
            Some(node),
            SentinelServerType::Master,
        )?;
        Ok(Discovery {
            sentinel: tokio::sync::Mutex::new(sentinel),
            master_name: master_name.to_owned(),
            config,
            db,
            last: Mutex::new((None, 0)),
            failed: Mutex::new(None),
        })
    }

    /// A client for the current master, and the address epoch it belongs to (bumped each time the
    /// master's address changes). One discovery at a time.
    pub(crate) async fn master(&self) -> RedisResult<(redis::Client, u64)> {
        let mut sentinel = self.sentinel.lock().await;
        if let Some((at, e)) = &*lock(&self.failed)
            && at.elapsed() < RETRY_DISCOVERY_AFTER
        {
            return Err(e.clone());
        }
        let found = sentinel.async_get_client().await;
        drop(sentinel);
        let client = match found {
            Ok(client) => client,
            Err(e) => {
                let e = self.explain(e);
                *lock(&self.failed) = Some((Instant::now(), e.clone()));
                return Err(e);
            }
        };
        *lock(&self.failed) = None;
        let addr = client.get_connection_info().addr().to_string();
        let mut last = lock(&self.last);
        if last.0.as_deref() != Some(addr.as_str()) {
            *last = (Some(addr), last.1 + 1);
        }
        Ok((client, last.1))
    }

    /// The current address epoch: a connection opened in an older one talks to an old master.
    fn epoch(&self) -> u64 {
        lock(&self.last).1
    }

    /// The address of the master found last, `host:port`.
    pub(crate) fn last_master(&self) -> Option<String> {
        lock(&self.last).0.clone()
    }

    /// A discovery failure, said in the terms of the failover it usually means.
    fn explain(&self, e: RedisError) -> RedisError {
        let name = &self.master_name;
        let detail = match e.kind() {
            ErrorKind::MasterNameNotFoundBySentinel => format!(
                "no sentinel names a master for {name:?} that is up (a failover under way, or a \
                 wrong name): {e}"
            ),
            _ => format!(
                "no master found for {name:?}: the sentinels, or the master they name, did not \
                 answer (during a failover this lasts until they promote a replica): {e}"
            ),
        };
        RedisError::from((
            ErrorKind::MasterNameNotFoundBySentinel,
            "Redis Sentinel found no master",
            detail,
        ))
    }
}

/// One multiplexed connection to the master that the sentinels name, opened again (after asking
/// them again) once it fails. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub(crate) struct SentinelConn(Arc<Shared>);

struct Shared {
    discovery: Arc<Discovery>,
    current: Mutex<Option<Current>>,
    /// One reconnection at a time per connection.
    connecting: tokio::sync::Mutex<()>,
    next_id: AtomicU64,
}

#[derive(Clone)]
struct Current {
    conn: MultiplexedConnection,
    /// The discovery epoch of the address it was opened to.
    epoch: u64,
    /// Which opening this is, so a failure seen on an older connection forgets only that one.
    id: u64,
}

/// What a reply says about the connection it came on.
enum Verdict {
    /// Keep the connection.
    Keep,
    /// The connection failed: forget it; the call's outcome is unknown, so it is not repeated.
    Broken,
    /// The server is no longer the master (`READONLY`): forget it and send the call again.
    Demoted,
}

impl SentinelConn {
    /// Opens a connection to the master that `discovery` finds now.
    pub(crate) async fn connect(discovery: Arc<Discovery>) -> RedisResult<SentinelConn> {
        let conn = SentinelConn(Arc::new(Shared {
            discovery,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            next_id: AtomicU64::new(0),
        }));
        conn.connection().await?;
        Ok(conn)
    }

    /// The current connection if it is open and was opened to the latest master address.
    fn fresh(&self) -> Option<Current> {
        let epoch = self.0.discovery.epoch();
        lock(&self.0.current)
            .as_ref()
            .filter(|c| c.epoch >= epoch)
            .cloned()
    }

    /// The connection to use: the current one, or a new one to the master the sentinels name.
    async fn connection(&self) -> RedisResult<Current> {
        if let Some(current) = self.fresh() {
            return Ok(current);
        }
        let _one = self.0.connecting.lock().await;
        if let Some(current) = self.fresh() {
            return Ok(current);
        }
        let (client, epoch) = self.0.discovery.master().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.0.discovery.config)
            .await?;
        let current = Current {
            conn,
            epoch,
            id: self.0.next_id.fetch_add(1, Ordering::Relaxed),
        };
        *lock(&self.0.current) = Some(current.clone());
        Ok(current)
    }

    /// Forgets the connection `id` (if it is still the current one).
    fn forget(&self, id: u64) {
        let mut current = lock(&self.0.current);
        if current.as_ref().is_some_and(|c| c.id == id) {
            *current = None;
        }
    }

    /// Sends `req` on the current connection; forgets the connection when it failed, and sends
    /// `req` once more after a `READONLY`.
    async fn request<R: Request>(&self, req: R) -> RedisResult<R::Reply> {
        let mut current = self.connection().await?;
        let result = req.send(&mut current.conn).await;
        match verdict(&result, R::demoted) {
            Verdict::Keep => result,
            Verdict::Broken => {
                self.forget(current.id);
                result
            }
            Verdict::Demoted => {
                self.forget(current.id);
                let mut current = self.connection().await?;
                let result = req.send(&mut current.conn).await;
                if !matches!(verdict(&result, R::demoted), Verdict::Keep) {
                    self.forget(current.id);
                }
                result
            }
        }
    }
}

/// A command or a pipeline, to be sent (perhaps twice) on a connection.
trait Request: Send + Sync {
    type Reply: Send;
    fn send<'c>(&'c self, conn: &'c mut MultiplexedConnection) -> RedisFuture<'c, Self::Reply>;
    /// Whether a reply says the server is no longer the master.
    fn demoted(reply: &Self::Reply) -> bool;
}

struct One<'a>(&'a Cmd);

impl Request for One<'_> {
    type Reply = Value;
    fn send<'c>(&'c self, conn: &'c mut MultiplexedConnection) -> RedisFuture<'c, Value> {
        conn.req_packed_command(self.0)
    }
    fn demoted(reply: &Value) -> bool {
        matches!(reply, Value::ServerError(e) if e.code() == "READONLY")
    }
}

struct Many<'a>(&'a Pipeline, usize, usize);

impl Request for Many<'_> {
    type Reply = Vec<Value>;
    fn send<'c>(&'c self, conn: &'c mut MultiplexedConnection) -> RedisFuture<'c, Vec<Value>> {
        conn.req_packed_commands(self.0, self.1, self.2)
    }
    fn demoted(replies: &Vec<Value>) -> bool {
        replies.iter().any(One::demoted)
    }
}

fn verdict<T>(result: &RedisResult<T>, demoted: fn(&T) -> bool) -> Verdict {
    match result {
        Ok(reply) if demoted(reply) => Verdict::Demoted,
        Ok(_) => Verdict::Keep,
        Err(e) if is_readonly(e) => Verdict::Demoted,
        Err(e)
            if e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_unrecoverable_error() =>
        {
            Verdict::Broken
        }
        Err(_) => Verdict::Keep,
    }
}

/// `READONLY`: the server is a replica now (a command in a `MULTI` gets it as `EXECABORT`).
fn is_readonly(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || e.code() == Some("READONLY")
        || e.to_string().contains("READONLY")
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.request(One(cmd)))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.request(Many(cmd, offset, count)))
    }

    fn get_db(&self) -> i64 {
        self.0.discovery.db
    }
}
