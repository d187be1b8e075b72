//! The optional replica acknowledgement of writes ([`RedisClientBuilder::wait_for_replicas`]):
//! every command (or pipeline) that may write is sent in one pipeline with `WAIT <replicas>
//! <timeout>` behind it, on the same connection, so the `WAIT` covers it (Redis counts the
//! replicas that acknowledged the replication offset of the connection's last write). A write
//! acknowledged by fewer replicas fails with an error saying it was applied on the master but
//! may be lost in a failover.
//!
//! [`RedisClientBuilder::wait_for_replicas`]: crate::client::RedisClientBuilder::wait_for_replicas

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::conn::{Claim, Conn};

/// `WAIT <replicas> <timeout>` after every write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Wait {
    /// How many replicas must acknowledge each write.
    pub(crate) replicas: u32,
    /// How long Redis waits for them (at least 1 ms: `WAIT` with 0 would block forever).
    pub(crate) timeout: Duration,
}

/// Commands that never write, after which no `WAIT` is sent. Everything else (scripts included:
/// the driver cannot tell a script that reads from one that writes) is followed by one.
const READS: &[&str] = &[
    "ASKING",
    "CLIENT",
    "CLUSTER",
    "COMMAND",
    "CONFIG",
    "DBSIZE",
    "DISCARD",
    "ECHO",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXEC",
    "EXISTS",
    "EXPIRETIME",
    "FCALL_RO",
    "GET",
    "GETRANGE",
    "HELLO",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HSCAN",
    "HSTRLEN",
    "HVALS",
    "INFO",
    "KEYS",
    "LINDEX",
    "LLEN",
    "LRANGE",
    "MEMORY",
    "MGET",
    "MULTI",
    "OBJECT",
    "PEXPIRETIME",
    "PING",
    "PTTL",
    "PUBLISH",
    "RANDOMKEY",
    "READONLY",
    "READWRITE",
    "ROLE",
    "SCAN",
    "SCARD",
    "SCRIPT",
    "SELECT",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SPUBLISH",
    "SRANDMEMBER",
    "SSCAN",
    "STRLEN",
    "TIME",
    "TTL",
    "TYPE",
    "UNWATCH",
    "WAIT",
    "WAITAOF",
    "WATCH",
    "ZCARD",
    "ZCOUNT",
    "ZMSCORE",
    "ZRANGE",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
];

/// Whether `cmd` may write (anything but the known reads).
pub(crate) fn may_write(cmd: &Cmd) -> bool {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => !READS
            .iter()
            .any(|read| name.eq_ignore_ascii_case(read.as_bytes())),
        _ => false,
    }
}

impl Wait {
    /// `WAIT <replicas> <timeout ms>`.
    fn command(&self) -> Cmd {
        let ms = u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.replicas).arg(ms);
        cmd
    }

    /// The reply to `WAIT`: enough replicas, or the error that says the write may be lost.
    fn check(&self, reply: Option<Value>) -> RedisResult<()> {
        match reply {
            Some(Value::Int(n)) if n >= i64::from(self.replicas) => Ok(()),
            Some(Value::Int(n)) => Err(RedisError::from((
                ErrorKind::Client,
                "write not acknowledged by enough replicas",
                format!(
                    "the write was applied on the master, but {n} of the {} replica(s) \
                     required (wait_for_replicas) acknowledged it within {:?}: it is lost if the \
                     master fails before they catch up",
                    self.replicas, self.timeout
                ),
            ))),
            Some(Value::ServerError(e)) => Err(e.into()),
            other => Err(RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "unexpected reply to WAIT",
                format!("{other:?}"),
            ))),
        }
    }

    /// `cmd` and `WAIT` in one pipeline. On a cluster redis-rs routes the pipeline by the
    /// command's keys and follows a `MOVED`/`ASK` answer to it, pipeline and all.
    async fn send_command(self, conn: &mut Conn, cmd: &Cmd) -> RedisResult<Value> {
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone()).add_command(self.command());
        let mut replies = conn.req_packed_commands(&pipe, 0, 2).await?;
        let acked = replies.pop();
        let reply = replies.pop().unwrap_or(Value::Nil);
        if matches!(reply, Value::ServerError(_)) {
            // The command failed: nothing to wait for; its error is the answer.
            return Ok(reply);
        }
        self.check(acked)?;
        Ok(reply)
    }

    /// `pipe` and `WAIT` in one pipeline; a transaction (`MULTI` ... `EXEC`) keeps `WAIT` out of
    /// it (inside a transaction `WAIT` does not block).
    async fn send_pipeline(
        self,
        conn: &mut Conn,
        pipe: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let mut with_wait = redis::pipe();
        if pipe.is_transaction() {
            with_wait.cmd("MULTI");
        }
        for cmd in pipe.cmd_iter() {
            with_wait.add_command(cmd.clone());
        }
        if pipe.is_transaction() {
            with_wait.cmd("EXEC");
        }
        with_wait.add_command(self.command());
        let mut replies = conn
            .req_packed_commands(&with_wait, offset, count + 1)
            .await?;
        let acked = replies.pop();
        if pipe.is_transaction()
            && let Some(Value::ServerError(e)) = replies.last()
        {
            // EXECABORT: nothing was applied.
            return Err(e.clone().into());
        }
        self.check(acked)?;
        Ok(replies)
    }
}

/// A connection handle that follows every write with `WAIT` when the client was built with
/// [`wait_for_replicas`](crate::client::RedisClientBuilder::wait_for_replicas).
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) conn: Conn,
    pub(crate) wait: Option<Wait>,
    /// The call's place among its connection's calls in flight (see [`Pool`](crate::conn::Pool)).
    pub(crate) _claim: Claim,
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self.wait {
            Some(wait) if may_write(cmd) => Box::pin(wait.send_command(&mut self.conn, cmd)),
            _ => self.conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self.wait {
            Some(wait) if cmd.cmd_iter().any(may_write) => {
                Box::pin(wait.send_pipeline(&mut self.conn, cmd, offset, count))
            }
            _ => self.conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_known_and_everything_else_may_write() {
        assert!(!may_write(redis::cmd("HGETALL").arg("k")));
        assert!(!may_write(redis::cmd("hmget").arg("k").arg("f")));
        assert!(!may_write(&redis::cmd("PING")));
        assert!(may_write(redis::cmd("EVALSHA").arg("abc").arg(0)));
        assert!(may_write(redis::cmd("DEL").arg("k")));
        assert!(may_write(redis::cmd("SET").arg("k").arg(1)));
        assert!(may_write(&redis::cmd("SOMETHINGNEW")));
        let mut sorted = READS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, READS, "READS stays sorted");
    }

    #[test]
    fn wait_never_blocks_forever_and_checks_the_count() {
        let wait = Wait {
            replicas: 1,
            timeout: Duration::ZERO,
        };
        let packed = String::from_utf8(wait.command().get_packed_command()).unwrap();
        assert!(packed.ends_with("$1\r\n1\r\n$1\r\n1\r\n"), "{packed:?}");
        assert!(wait.check(Some(Value::Int(1))).is_ok());
        assert!(wait.check(Some(Value::Int(2))).is_ok());
        let short = wait.check(Some(Value::Int(0))).unwrap_err().to_string();
        assert!(short.contains("applied on the master"), "{short}");
        assert!(wait.check(None).is_err());
    }
}
