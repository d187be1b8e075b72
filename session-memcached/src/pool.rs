//! The connection pool (deadpool over async-memcached clients) and the four meta commands the
//! driver uses, each bounded by the command timeout and mapped to `session_core::Error`.

use std::future::Future;
use std::time::Duration;

use async_memcached::{Client, Error as McError, ErrorKind, MetaProtocol, Status};
use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult};
use session_core::driver::{Error, Result};

use crate::NAME;

/// Makes and recycles connections. A connection an incomplete operation closed (a timeout, an
/// I/O error, a reply that could not be parsed) is dropped, never reused.
pub(crate) struct Manager {
    addr: String,
}

impl managed::Manager for Manager {
    type Type = Client;
    type Error = McError;

    async fn create(&self) -> std::result::Result<Client, McError> {
        Client::new(&self.addr).await
    }

    async fn recycle(&self, conn: &mut Client, _: &Metrics) -> RecycleResult<McError> {
        if conn.is_closed() {
            Err(RecycleError::message(
                "connection closed by an incomplete operation",
            ))
        } else {
            Ok(())
        }
    }
}

/// An item read with `mg`.
pub(crate) struct Item {
    /// The item's bytes.
    pub data: Vec<u8>,
    /// Its CAS token (only when asked for).
    pub cas: u64,
}

/// The outcome of a conditional `ms` or `md`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored or deleted.
    Done,
    /// Not stored: the item exists (`add`), or its CAS changed, or it vanished (`NS`, `EX`, `NF`).
    Conflict,
}

/// A pool of connections to one memcached server.
#[derive(Clone)]
pub(crate) struct Conn {
    pool: managed::Pool<Manager>,
    addr: String,
    timeout: Duration,
    max_item: usize,
}

/// Bytes memcached needs per item beyond key and value (item header, CAS, suffix), rounded up:
/// a value is refused before it is sent unless key + value + this fits the server's item size.
pub(crate) const ITEM_OVERHEAD: usize = 96;

impl Conn {
    /// A pool of at most `size` connections to `addr` (`host:port`, `tcp://host:port` or
    /// `unix://path`). Connects lazily.
    pub fn new(addr: &str, size: usize, timeout: Duration) -> Result<Self> {
        let pool = managed::Pool::builder(Manager {
            addr: addr.to_owned(),
        })
        .max_size(size)
        .build()
        .map_err(|e| Error::backend(NAME, format!("building the connection pool: {e}")))?;
        Ok(Conn {
            pool,
            addr: addr.to_owned(),
            timeout,
            max_item: usize::MAX,
        })
    }

    /// Sets the largest item (key + value + overhead) the server stores.
    pub fn set_max_item(&mut self, bytes: usize) {
        self.max_item = bytes;
    }

    /// The largest item the server stores, as set by [`set_max_item`](Self::set_max_item).
    pub fn max_item(&self) -> usize {
        self.max_item
    }

    /// The server's `item_size_max` (`stats settings`, read on a connection of its own because
    /// the client has no command for it), or `None` if the server did not say.
    pub async fn item_size_max(&self) -> Option<usize> {
        let query = async {
            let reply = if let Some(path) = self.addr.strip_prefix("unix://") {
                stats_settings(tokio::net::UnixStream::connect(path).await.ok()?).await
            } else {
                let hostport = self.addr.strip_prefix("tcp://").unwrap_or(&self.addr);
                stats_settings(tokio::net::TcpStream::connect(hostport).await.ok()?).await
            }?;
            reply.lines().find_map(|line| {
                line.trim()
                    .strip_prefix("STAT item_size_max ")
                    .and_then(|n| n.trim().parse().ok())
            })
        };
        tokio::time::timeout(self.timeout, query)
            .await
            .ok()
            .flatten()
    }

    /// The server address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Runs `op` on a pooled connection, the checkout included, within the command timeout.
    async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T>
    where
        F: FnOnce(managed::Object<Manager>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let work = async {
            let conn = self.pool.get().await.map_err(|e| match e {
                PoolError::Backend(e) => Error::backend(
                    NAME,
                    format!("cannot connect to memcached at {}: {e}", self.addr),
                ),
                other => Error::backend(
                    NAME,
                    format!("no connection to memcached at {}: {other}", self.addr),
                ),
            })?;
            op(conn).await
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(Error::backend(
                NAME,
                format!(
                    "`{what}` on memcached at {} did not answer within {:?}",
                    self.addr, self.timeout
                ),
            )),
        }
    }

    /// Maps a client error of command `what`.
    fn fail(&self, what: &str, e: McError) -> Error {
        if let McError::Protocol(Status::Error(ErrorKind::Server(msg))) = &e
            && msg.contains("too large")
        {
            return Error::InvalidInput(format!(
                "the session does not fit in one memcached item ({msg}); raise the server's \
                 item size limit (memcached -I, e.g. -I 8m) or store less in the session"
            ));
        }
        Error::backend(NAME, format!("`{what}` on memcached at {}: {e}", self.addr))
    }

    /// The server's version (`version`).
    pub async fn version(&self) -> Result<String> {
        self.run("version", |mut c| async move {
            c.version().await.map_err(|e| self.fail("version", e))
        })
        .await
    }

    /// `mg <key> v [c]`: the item, or `None` on a miss.
    pub async fn get(&self, key: &str, with_cas: bool) -> Result<Option<Item>> {
        let flags: &[&str] = if with_cas { &["v", "c"] } else { &["v"] };
        self.run("mg", |mut c| async move {
            let got = c
                .meta_get(key, false, None, Some(flags))
                .await
                .map_err(|e| self.fail("mg", e))?;
            Ok(got.map(|v| Item {
                data: v.data.unwrap_or_default(),
                cas: v.cas.unwrap_or(0),
            }))
        })
        .await
    }

    /// `ms <key> <len> T<exptime> [ME | C<cas>]`: a plain set, an add, or a compare-and-set.
    /// `Conflict` when an add finds the key present or a compare-and-set finds another CAS or
    /// no item.
    pub async fn set(
        &self,
        key: &str,
        value: &[u8],
        exptime: u64,
        mode: SetMode,
    ) -> Result<Outcome> {
        if key.len() + value.len() + ITEM_OVERHEAD > self.max_item {
            return Err(Error::InvalidInput(format!(
                "the session is {} bytes, more than fits in one memcached item ({} bytes on \
                 {}); raise the server's item size limit (memcached -I, e.g. -I 8m) or store \
                 less in the session",
                value.len(),
                self.max_item,
                self.addr
            )));
        }
        let ttl = format!("T{exptime}");
        let cond = match mode {
            SetMode::Set => None,
            SetMode::Add => Some("ME".to_owned()),
            SetMode::Cas(cas) => Some(format!("C{cas}")),
        };
        self.run("ms", |mut c| async move {
            let mut flags = vec![ttl.as_str()];
            flags.extend(cond.as_deref());
            match c.meta_set(key, value, false, None, Some(&flags)).await {
                Ok(_) => Ok(Outcome::Done),
                Err(McError::Protocol(Status::NotStored | Status::Exists | Status::NotFound)) => {
                    Ok(Outcome::Conflict)
                }
                Err(e) => Err(self.fail("ms", e)),
            }
        })
        .await
    }

    /// `md <key> [C<cas>]`: deletes the item, only if its CAS is still `cas` when given.
    pub async fn delete(&self, key: &str, cas: Option<u64>) -> Result<Delete> {
        let cond = cas.map(|c| format!("C{c}"));
        self.run("md", |mut c| async move {
            let flags: Vec<&str> = cond.iter().map(String::as_str).collect();
            let flags = (!flags.is_empty()).then_some(flags.as_slice());
            match c.meta_delete(key, false, None, flags).await {
                Ok(_) => Ok(Delete::Deleted),
                Err(McError::Protocol(Status::NotFound)) => Ok(Delete::Missing),
                Err(McError::Protocol(Status::Exists)) => Ok(Delete::Conflict),
                Err(e) => Err(self.fail("md", e)),
            }
        })
        .await
    }
}

/// Sends `stats settings` and reads the reply up to `END`.
async fn stats_settings<S>(mut stream: S) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"stats settings\r\n").await.ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.ends_with(b"END\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || reply.len() > 1 << 20 {
            return None;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(reply).ok()
}

/// How `ms` stores.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SetMode {
    /// Unconditionally.
    Set,
    /// Only if the key is absent (`ME`, memcached's `add`).
    Add,
    /// Only if the item's CAS is still this one.
    Cas(u64),
}

/// The outcome of `md`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delete {
    /// The item was deleted.
    Deleted,
    /// There was no item.
    Missing,
    /// The item's CAS changed: not deleted.
    Conflict,
}
