//! Per-connection context data (imi `ConnectContext`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use session_core::{ChangeSet, Data, Error, Result, Value, check};

use crate::backend::CtxWrite;
use crate::hub::Hub;
use crate::id::ConnId;

/// How many times [`Context::update`] retries after a concurrent change before giving up.
pub const MAX_UPDATE_ATTEMPTS: u32 = 1000;

/// The context data of one connection: typed values by key, shared by every node (imi
/// `ConnectContext`, mqant `Settings`). Made by [`Hub::context`].
///
/// Reads of a connection that is not registered return nothing; writes to it fail with
/// [`Error::InvalidInput`]. Values are MessagePack, like session values.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    hub: &'a Hub,
    conn: &'a ConnId,
}

fn not_open(conn: &ConnId) -> Error {
    Error::InvalidInput(format!("connection {conn} is not open"))
}

impl<'a> Context<'a> {
    pub(crate) fn new(hub: &'a Hub, conn: &'a ConnId) -> Self {
        Context { hub, conn }
    }

    /// One value, decoded into `T`; `None` if absent.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        check::key(key)?;
        self.hub
            .backend()
            .ctx_get(self.conn, key)
            .await?
            .map(|v| v.decode())
            .transpose()
    }

    /// Sets one value.
    pub async fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        check::key(key)?;
        let mut changes = ChangeSet::default();
        changes.set.insert(key.to_string(), Value::encode(value)?);
        self.write(&changes).await
    }

    /// Sets several values at once (mqant `SetBatch`).
    pub async fn set_many(&self, data: Data) -> Result<()> {
        for k in data.keys() {
            check::key(k)?;
        }
        self.write(&ChangeSet {
            set: data,
            ..ChangeSet::default()
        })
        .await
    }

    /// Removes one value; fine if absent.
    pub async fn remove(&self, key: &str) -> Result<()> {
        check::key(key)?;
        self.write(&ChangeSet {
            remove: vec![key.to_string()],
            ..ChangeSet::default()
        })
        .await
    }

    /// Removes every value.
    pub async fn clear(&self) -> Result<()> {
        self.write(&ChangeSet {
            clear: true,
            ..ChangeSet::default()
        })
        .await
    }

    /// Every value (imi `getContext`); empty for a connection that is not registered.
    pub async fn all(&self) -> Result<Data> {
        Ok(self
            .hub
            .backend()
            .ctx_read(self.conn)
            .await?
            .map(|(d, _)| d)
            .unwrap_or_default())
    }

    /// Read-modify-write of the whole context, atomically (imi `ConnectContext::use`): `f` sees
    /// the current values and changes them; the changes are written only if nobody changed the
    /// context meanwhile, from any node, else `f` runs again on the new values. So `f` may run
    /// more than once: keep it free of side effects. Returns what the last run of `f` returned.
    ///
    /// An `f` that changes nothing writes nothing; an `f` that fails writes nothing and its error
    /// is returned. Gives up with [`Error::Locked`] after [`MAX_UPDATE_ATTEMPTS`] conflicts.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> session_core::Result<()> {
    /// # use std::sync::Arc;
    /// # use session_connect::{ConnMeta, Hub, MemoryBackend};
    /// # let hub = Hub::builder(Arc::new(MemoryBackend::new())).start().await?;
    /// # let (tx, _rx) = tokio::sync::mpsc::channel(8);
    /// # let conn = hub.open(ConnMeta::new("ws", None), None, tx).await?;
    /// let n = hub.context(&conn).update(|ctx| {
    ///     let n = ctx.get::<u64>("visits")?.unwrap_or(0) + 1;
    ///     ctx.set("visits", &n)?;
    ///     Ok(n)
    /// }).await?;
    /// assert_eq!(n, 1);
    /// # Ok(()) }
    /// ```
    pub async fn update<R>(
        &self,
        mut f: impl FnMut(&mut ContextData) -> Result<R> + Send,
    ) -> Result<R> {
        let backend = self.hub.backend();
        for attempt in 0..MAX_UPDATE_ATTEMPTS {
            let (data, ver) = backend
                .ctx_read(self.conn)
                .await?
                .ok_or_else(|| not_open(self.conn))?;
            let mut ctx = ContextData {
                data,
                changes: ChangeSet::default(),
            };
            let out = f(&mut ctx)?;
            if ctx.changes.is_empty() {
                return Ok(out);
            }
            match backend
                .ctx_apply(self.conn, &ctx.changes, Some(ver))
                .await?
            {
                CtxWrite::Done => return Ok(out),
                CtxWrite::NotOpen => return Err(not_open(self.conn)),
                CtxWrite::Conflict => backoff(attempt).await,
            }
        }
        Err(Error::Locked(format!(
            "context of connection {} changed concurrently {MAX_UPDATE_ATTEMPTS} times",
            self.conn
        )))
    }

    async fn write(&self, changes: &ChangeSet) -> Result<()> {
        match self
            .hub
            .backend()
            .ctx_apply(self.conn, changes, None)
            .await?
        {
            CtxWrite::Done => Ok(()),
            _ => Err(not_open(self.conn)),
        }
    }
}

/// A short, jittered pause after a lost race, growing with the number of attempts.
async fn backoff(attempt: u32) {
    if attempt < 2 {
        tokio::task::yield_now().await;
        return;
    }
    let jitter = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    let cap = 200 * u64::from(attempt.min(20));
    tokio::time::sleep(Duration::from_micros(50 + jitter % cap)).await;
}

/// The context as seen inside [`Context::update`]: read the current values, record changes.
#[derive(Debug)]
pub struct ContextData {
    data: Data,
    changes: ChangeSet,
}

impl ContextData {
    /// One value, decoded into `T` (including changes made in this run).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.data.get(key).map(Value::decode).transpose()
    }

    /// Sets one value.
    pub fn set<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        check::key(key)?;
        let v = Value::encode(value)?;
        self.data.insert(key.to_string(), v.clone());
        self.changes.remove.retain(|k| k != key);
        self.changes.set.insert(key.to_string(), v);
        Ok(())
    }

    /// Removes one value.
    pub fn remove(&mut self, key: &str) -> Result<()> {
        check::key(key)?;
        if self.data.remove(key).is_some() || self.changes.set.remove(key).is_some() {
            self.changes.remove.push(key.to_string());
        }
        Ok(())
    }

    /// Whether `key` has a value.
    pub fn contains(&self, key: &str) -> bool {
        self.data.contains_key(key)
    }

    /// Every value, as the update sees it.
    pub fn all(&self) -> &Data {
        &self.data
    }
}
