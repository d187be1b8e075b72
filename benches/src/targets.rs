//! What one operation of each phase does, through the session layer ([`SessionTarget`]) and on a
//! raw backend ([`RawTarget`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use session_core::{Manager, SessionId};

use crate::Result;
use crate::direct::Direct;
use crate::payload::{self, COUNTER, CartItem, KEYS};
use crate::raw::{Raw, RawData};

/// The three operations of the workload.
#[async_trait]
pub trait Target: Send + Sync + 'static {
    /// `create`: a new session with the five keys of session `n`, saved; returns its id.
    async fn create(&self, n: u64) -> Result<String>;
    /// `read`: load session `id`, read `user_id` and `name`, close without writing.
    async fn read(&self, id: &str) -> Result<()>;
    /// `write`: load session `id`, read `user_id` and `name`, increment `counter`, save.
    async fn write(&self, id: &str) -> Result<()>;
}

/// The workload through [`Manager`] and [`Session`](session_core::Session), as an HTTP layer
/// runs it: `load`, typed gets and sets, `save`.
pub struct SessionTarget {
    /// The manager (over the driver under test).
    pub manager: Manager,
}

fn missing(id: &str) -> crate::BoxError {
    format!("session {id} is missing (evicted or expired?)").into()
}

#[async_trait]
impl Target for SessionTarget {
    async fn create(&self, n: u64) -> Result<String> {
        let (user_id, name, roles, cart, csrf) = payload::values(n);
        let s = self.manager.load(None);
        s.set(KEYS[0], &user_id).await?;
        s.set(KEYS[1], &name).await?;
        s.set(KEYS[2], &roles).await?;
        s.set(KEYS[3], &cart).await?;
        s.set(KEYS[4], &csrf).await?;
        let out = s.save().await?;
        let id = out
            .cookie
            .id()
            .ok_or("a new session was saved without an id")?;
        Ok(id.as_str().to_string())
    }

    async fn read(&self, id: &str) -> Result<()> {
        let s = self.manager.load(Some(id));
        let user: Option<u64> = s.get(KEYS[0]).await?;
        let name: Option<String> = s.get(KEYS[1]).await?;
        if user.is_none() || name.is_none() {
            return Err(missing(id));
        }
        let out = s.save().await?;
        if out.wrote {
            return Err("a read-only request wrote".into());
        }
        Ok(())
    }

    async fn write(&self, id: &str) -> Result<()> {
        let s = self.manager.load(Some(id));
        let user: Option<u64> = s.get(KEYS[0]).await?;
        let name: Option<String> = s.get(KEYS[1]).await?;
        if user.is_none() || name.is_none() {
            return Err(missing(id));
        }
        let n: u64 = s.get(COUNTER).await?.unwrap_or(0);
        s.set(COUNTER, &(n + 1)).await?;
        let out = s.save().await?;
        if !out.wrote {
            return Err(format!("write to {id} wrote nothing (gone: {})", out.gone).into());
        }
        Ok(())
    }
}

/// The workload on a raw backend: the same values, decoded and encoded the same way, with the
/// backend's cheapest operations.
pub struct RawTarget {
    /// The backend.
    pub raw: Arc<dyn Raw>,
    /// The TTL of every write (the manager's idle TTL in the session runs).
    pub ttl: Duration,
}

fn decode<T: serde::de::DeserializeOwned>(data: &RawData, key: &str) -> Result<Option<T>> {
    data.get(key)
        .map(|b| rmp_serde::from_slice::<T>(b))
        .transpose()
        .map_err(Into::into)
}

/// Session `n` as a raw baseline writes it: a CSPRNG id (the same work as the session layer's)
/// and the five typed values encoded.
fn new_raw_session(n: u64) -> Result<(String, RawData)> {
    let id = SessionId::generate()?;
    let (user_id, name, roles, cart, csrf) = payload::values(n);
    let enc = |v: Vec<u8>| Bytes::from(v);
    let mut data = RawData::with_capacity(6);
    data.insert(KEYS[0].into(), enc(rmp_serde::to_vec_named(&user_id)?));
    data.insert(KEYS[1].into(), enc(rmp_serde::to_vec_named(&name)?));
    data.insert(KEYS[2].into(), enc(rmp_serde::to_vec_named(&roles)?));
    data.insert(
        KEYS[3].into(),
        enc(rmp_serde::to_vec_named::<Vec<CartItem>>(&cart)?),
    );
    data.insert(KEYS[4].into(), enc(rmp_serde::to_vec_named(&csrf)?));
    Ok((id.as_str().to_string(), data))
}

/// Decodes the two keys every request reads; an error when the session is missing.
fn read_two(id: &str, data: Option<RawData>) -> Result<RawData> {
    let data = data.ok_or_else(|| missing(id))?;
    let user: Option<u64> = decode(&data, KEYS[0])?;
    let name: Option<String> = decode(&data, KEYS[1])?;
    if user.is_none() || name.is_none() {
        return Err(missing(id));
    }
    Ok(data)
}

/// Decodes, increments and re-encodes the counter in `data`; returns the changed entry.
fn bump_counter(data: &mut RawData) -> Result<RawData> {
    let n: u64 = decode(data, COUNTER)?.unwrap_or(0);
    let v = Bytes::from(rmp_serde::to_vec_named(&(n + 1))?);
    let mut changed = RawData::with_capacity(1);
    changed.insert(COUNTER.to_string(), v.clone());
    data.insert(COUNTER.to_string(), v);
    Ok(changed)
}

#[async_trait]
impl Target for RawTarget {
    async fn create(&self, n: u64) -> Result<String> {
        let (id, data) = new_raw_session(n)?;
        self.raw.store(&id, &data, &data, self.ttl).await?;
        Ok(id)
    }

    async fn read(&self, id: &str) -> Result<()> {
        read_two(id, self.raw.load(id).await?).map(drop)
    }

    async fn write(&self, id: &str) -> Result<()> {
        let mut data = read_two(id, self.raw.load(id).await?)?;
        let changed = bump_counter(&mut data)?;
        self.raw.store(id, &data, &changed, self.ttl).await
    }
}

/// The three operations, as blocking calls on one of the benchmark's own threads.
pub trait ThreadTarget: Send + Sync + 'static {
    /// As [`Target::create`], on thread `worker`.
    fn create(&self, worker: usize, n: u64) -> Result<String>;
    /// As [`Target::read`], on thread `worker`.
    fn read(&self, worker: usize, id: &str) -> Result<()>;
    /// As [`Target::write`], on thread `worker`.
    fn write(&self, worker: usize, id: &str) -> Result<()>;
}

/// The workload on an embedded backend driven directly from OS threads ([`crate::direct`]): the
/// same values, decoded and encoded as [`RawTarget`] does.
pub struct DirectTarget {
    /// The backend.
    pub direct: Arc<dyn Direct>,
    /// The TTL of every write.
    pub ttl: Duration,
}

impl ThreadTarget for DirectTarget {
    fn create(&self, worker: usize, n: u64) -> Result<String> {
        let (id, data) = new_raw_session(n)?;
        self.direct.store(worker, &id, &data, self.ttl)?;
        Ok(id)
    }

    fn read(&self, worker: usize, id: &str) -> Result<()> {
        read_two(id, self.direct.load(worker, id)?).map(drop)
    }

    fn write(&self, worker: usize, id: &str) -> Result<()> {
        let mut data = read_two(id, self.direct.load(worker, id)?)?;
        bump_counter(&mut data)?;
        self.direct.store(worker, id, &data, self.ttl)
    }
}
