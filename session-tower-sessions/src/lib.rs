#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use session_core::check::MAX_TTL;
use session_core::{ChangeSet, Data, Error, RESERVED_PREFIX, SessionId, Storage, Value};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, ExpiredDeletion, SessionStore};

/// The key of a stored record that holds the record's `expiry_date`, beside one key per field of
/// `Record::data`.
///
/// Its value is the MessagePack array `[unix seconds (i64), nanoseconds (u32)]`. It starts with
/// the framework's reserved prefix ([`RESERVED_PREFIX`], `__s.`), which no tower-sessions key may
/// use (see [`TowerSessionsStore`]), so it never collides with a field. Every stored record has it,
/// so a record with an empty `data` map still exists.
pub const EXPIRY_KEY: &str = "__s.tower.expiry";

/// How many fresh ids [`SessionStore::create`] tries before it gives up with
/// `session_store::Error::Backend`. One collision of 128 random bits is already unheard of; a
/// second in a row means the store answers "exists" for every id.
pub const MAX_CREATE_ATTEMPTS: usize = 8;

/// A [`tower_sessions_core::SessionStore`] (and [`ExpiredDeletion`]) over any storage driver of
/// the framework, so that `tower_sessions::SessionManagerLayer::new(store)` keeps its sessions
/// in Redis (single node or Cluster), SQLite, sled, files, PostgreSQL, MySQL or memcached.
///
/// A record is stored as one session of the driver: one key per field of `Record::data` (the
/// `serde_json::Value` as MessagePack, like every [`Value`]) and [`EXPIRY_KEY`] for its
/// `expiry_date`; the driver's deadline is set to the `expiry_date` (rounded up to the
/// millisecond). The README's "Storage mapping" explains each method.
///
/// Fields whose name starts with [`RESERVED_PREFIX`] (`__s.`), holds a NUL character or is longer
/// than [`session_core::check::MAX_KEY_LEN`] bytes cannot be stored: saving such a record fails
/// with `session_store::Error::Encode`, and nothing is written.
///
/// Cloning is cheap (one `Arc`).
///
/// ```
/// use std::sync::Arc;
/// use session_tower_sessions::TowerSessionsStore;
///
/// let store = TowerSessionsStore::new(Arc::new(session_memory::MemoryStore::new()));
/// assert_eq!(store.storage().name(), "memory");
/// ```
#[derive(Clone)]
pub struct TowerSessionsStore {
    storage: Arc<dyn Storage>,
}

impl TowerSessionsStore {
    /// A tower-sessions store over `storage`.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        TowerSessionsStore { storage }
    }

    /// A tower-sessions store over the driver `store` (wrapped in an `Arc`).
    pub fn from_store(store: impl Storage) -> Self {
        TowerSessionsStore::new(Arc::new(store))
    }

    /// The storage the records live in.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The framework's [`SessionId`] under which the record of tower-sessions id `id` is stored:
    /// the id's own text (22 characters of URL-safe base64, which is always a valid
    /// `SessionId`), so `redis-cli` or an SQL prompt shows the same id as the cookie.
    pub fn session_id(id: &Id) -> session_store::Result<SessionId> {
        SessionId::parse(&id.to_string()).map_err(backend)
    }
}

impl From<Arc<dyn Storage>> for TowerSessionsStore {
    fn from(storage: Arc<dyn Storage>) -> Self {
        TowerSessionsStore::new(storage)
    }
}

impl fmt::Debug for TowerSessionsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TowerSessionsStore")
            .field("storage", &self.storage.name())
            .finish()
    }
}

/// A fresh tower-sessions id: 128 bits from the operating system's CSPRNG (the framework's
/// source of ids), not from the caller.
fn fresh_id() -> session_store::Result<Id> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| session_store::Error::Backend(format!("no OS randomness for an id: {e}")))?;
    Ok(Id(i128::from_le_bytes(bytes)))
}

/// A storage error as tower-sessions' error: input the storage refuses is an encoding failure
/// (the record cannot be stored as it is), unreadable stored data a decoding failure, the rest
/// a backend failure.
fn from_storage(error: Error) -> session_store::Error {
    match error {
        Error::InvalidInput(_) | Error::Encode(_) => {
            session_store::Error::Encode(error.to_string())
        }
        Error::Corrupt { .. } | Error::Decode(_) => session_store::Error::Decode(error.to_string()),
        _ => session_store::Error::Backend(error.to_string()),
    }
}

fn backend(error: Error) -> session_store::Error {
    session_store::Error::Backend(error.to_string())
}

/// The TTL that makes the driver's deadline the record's `expiry_date`, or `None` if that is
/// already past. An `expiry_date` further ahead than [`MAX_TTL`] (ten years) is refused rather
/// than cut short.
fn ttl_until(expiry_date: OffsetDateTime) -> session_store::Result<Option<Duration>> {
    let left = expiry_date - OffsetDateTime::now_utc();
    if !left.is_positive() {
        return Ok(None);
    }
    match Duration::try_from(left) {
        Ok(ttl) if ttl <= MAX_TTL => Ok(Some(ttl)),
        _ => Err(session_store::Error::Encode(format!(
            "expiry_date {expiry_date} is more than {} days ahead, the longest TTL a store keeps",
            MAX_TTL.as_secs() / 86_400
        ))),
    }
}

/// The stored form of a record: one key per field, plus [`EXPIRY_KEY`].
fn encode(record: &Record) -> session_store::Result<Data> {
    let mut data = Data::with_capacity(record.data.len() + 1);
    for (key, value) in &record.data {
        if key.starts_with(RESERVED_PREFIX) {
            return Err(session_store::Error::Encode(format!(
                "session key {key:?} starts with {RESERVED_PREFIX:?}, which the store reserves"
            )));
        }
        let value = Value::encode(value).map_err(from_storage)?;
        data.insert(key.clone(), value);
    }
    let at = record.expiry_date;
    let expiry = Value::encode(&(at.unix_timestamp(), at.nanosecond())).map_err(from_storage)?;
    data.insert(EXPIRY_KEY.to_owned(), expiry);
    Ok(data)
}

/// The record stored under `id`, or `None` if it is past its `expiry_date`.
fn decode(id: Id, data: &Data) -> session_store::Result<Option<Record>> {
    let Some(expiry) = data.get(EXPIRY_KEY) else {
        return Err(session_store::Error::Decode(format!(
            "session {id} has no {EXPIRY_KEY:?} key: it was not written by this store"
        )));
    };
    let (secs, nanos): (i64, u32) = expiry
        .decode()
        .map_err(|e| session_store::Error::Decode(format!("{EXPIRY_KEY}: {e}")))?;
    let expiry_date = OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.replace_nanosecond(nanos).ok())
        .ok_or_else(|| {
            session_store::Error::Decode(format!("{EXPIRY_KEY}: {secs}s {nanos}ns is no date"))
        })?;
    if expiry_date <= OffsetDateTime::now_utc() {
        return Ok(None);
    }
    let mut fields = std::collections::HashMap::with_capacity(data.len().saturating_sub(1));
    for (key, value) in data {
        if key == EXPIRY_KEY {
            continue;
        }
        let value: serde_json::Value = value
            .decode()
            .map_err(|e| session_store::Error::Decode(format!("session key {key:?}: {e}")))?;
        fields.insert(key.clone(), value);
    }
    Ok(Some(Record {
        id,
        data: fields,
        expiry_date,
    }))
}

impl TowerSessionsStore {
    /// Replaces the stored record of `record.id` (only if `only_if_exists` finds it, for `save`),
    /// or deletes it when its `expiry_date` has passed. Returns whether a record is stored.
    async fn write(&self, record: &Record, only_if_exists: bool) -> session_store::Result<bool> {
        let id = Self::session_id(&record.id)?;
        let Some(ttl) = ttl_until(record.expiry_date)? else {
            self.storage.remove_all(&id).await.map_err(from_storage)?;
            return Ok(false);
        };
        let changes = ChangeSet {
            clear: true,
            remove: Vec::new(),
            set: encode(record)?,
            only_if_exists,
        };
        self.storage
            .apply(&id, changes, ttl)
            .await
            .map_err(from_storage)
    }
}

impl TowerSessionsStore {
    /// [`SessionStore::create`] with the ids drawn from `next_id`.
    async fn create_with(
        &self,
        record: &mut Record,
        mut next_id: impl FnMut() -> session_store::Result<Id> + Send,
    ) -> session_store::Result<()> {
        // Checked first so that no id is drawn for a record that cannot be stored.
        encode(record)?;
        for _ in 0..MAX_CREATE_ATTEMPTS {
            record.id = next_id()?;
            let id = Self::session_id(&record.id)?;
            if self.storage.get_size(&id).await.map_err(from_storage)? > 0 {
                tracing::warn!(
                    store = self.storage.name(),
                    "fresh session id taken; drawing another"
                );
                continue;
            }
            self.write(record, false).await?;
            return Ok(());
        }
        Err(session_store::Error::Backend(format!(
            "{MAX_CREATE_ATTEMPTS} fresh session ids in a row were taken in the `{}` store",
            self.storage.name()
        )))
    }
}

#[async_trait]
impl SessionStore for TowerSessionsStore {
    /// Stores `record` under a fresh id (overwriting `record.id`, whatever the caller put there),
    /// drawing another one while the store already holds a live session under it.
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.create_with(record, fresh_id).await
    }

    /// Replaces the stored record (fields not in `record.data` are dropped) and moves its deadline
    /// to `record.expiry_date`, if the store still holds it; writes nothing if it does not
    /// (deleted or expired meanwhile), so a request in flight cannot bring back a deleted session.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.write(record, true).await.map(|_| ())
    }

    /// The stored record, or `None` if there is none or it is past its `expiry_date`.
    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let id = Self::session_id(session_id)?;
        match self.storage.load(&id).await.map_err(from_storage)? {
            Some(loaded) => decode(*session_id, &loaded.data.into_data()),
            None => Ok(None),
        }
    }

    /// Deletes the stored record; fine if there is none.
    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        let id = Self::session_id(session_id)?;
        self.storage.remove_all(&id).await.map_err(from_storage)
    }
}

#[async_trait]
impl ExpiredDeletion for TowerSessionsStore {
    /// Deletes expired records with [`Storage::purge_expired`] when the driver needs purging
    /// ([`Capabilities::purge`](session_core::Capabilities::purge) without
    /// [`native_expiry`](session_core::Capabilities::native_expiry)); does nothing for a driver
    /// whose backend expires sessions itself (Redis, memcached, memory). A driver that does
    /// neither is an error, so a deletion task never silently does nothing.
    async fn delete_expired(&self) -> session_store::Result<()> {
        let capabilities = self.storage.capabilities();
        if capabilities.native_expiry {
            return Ok(());
        }
        self.storage
            .purge_expired()
            .await
            .map(|_| ())
            .map_err(from_storage)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(expires_in: time::Duration) -> Record {
        Record {
            id: Id(7),
            data: [("user".to_owned(), serde_json::json!("ada"))].into(),
            expiry_date: OffsetDateTime::now_utc() + expires_in,
        }
    }

    /// `create` skips ids the store holds a live session under, and gives up after
    /// [`MAX_CREATE_ATTEMPTS`] taken ids (on the real memory driver; the ids come from a list
    /// instead of the OS so that they collide).
    #[tokio::test]
    async fn create_draws_again_on_collision() {
        let store = TowerSessionsStore::from_store(session_memory::MemoryStore::new());
        let mut first = record(time::Duration::minutes(5));
        store.create_with(&mut first, || Ok(Id(1))).await.unwrap();
        assert_eq!(first.id, Id(1));

        let mut ids = [Id(1), Id(1), Id(2)].into_iter();
        let mut second = record(time::Duration::minutes(5));
        second
            .data
            .insert("user".to_owned(), serde_json::json!("bob"));
        store
            .create_with(&mut second, || Ok(ids.next().unwrap()))
            .await
            .unwrap();
        assert_eq!(second.id, Id(2), "the taken id 1 was skipped twice");
        let kept = store.load(&Id(1)).await.unwrap().unwrap();
        assert_eq!(
            kept.data["user"], "ada",
            "the session under id 1 was not overwritten"
        );
        assert_eq!(
            store.load(&Id(2)).await.unwrap().unwrap().data["user"],
            "bob"
        );

        let mut draws = 0;
        let mut third = record(time::Duration::minutes(5));
        let err = store
            .create_with(&mut third, || {
                draws += 1;
                Ok(Id(1))
            })
            .await
            .unwrap_err();
        assert!(matches!(err, session_store::Error::Backend(_)), "{err}");
        assert_eq!(draws, MAX_CREATE_ATTEMPTS);
        assert_eq!(
            store.load(&Id(1)).await.unwrap().unwrap().data["user"],
            "ada"
        );
    }

    /// A record that cannot be stored draws no id and writes nothing.
    #[tokio::test]
    async fn create_refuses_before_drawing() {
        let store = TowerSessionsStore::from_store(session_memory::MemoryStore::new());
        let mut bad = record(time::Duration::minutes(5));
        bad.data.insert("__s.meta".to_owned(), serde_json::json!(1));
        let err = store
            .create_with(&mut bad, || panic!("no id may be drawn"))
            .await
            .unwrap_err();
        assert!(matches!(err, session_store::Error::Encode(_)), "{err}");
    }

    /// Fresh ids are distinct 128-bit values whose text is a valid `SessionId`.
    #[test]
    fn fresh_ids() {
        let a = fresh_id().unwrap();
        let b = fresh_id().unwrap();
        assert_ne!(a, b);
        let text = TowerSessionsStore::session_id(&a).unwrap();
        assert_eq!(text.as_str(), a.to_string());
        assert_eq!(text.as_str().len(), 22);
        assert_eq!(text.as_str().parse::<Id>().unwrap(), a);
    }

    #[test]
    fn ttl_follows_the_expiry_date() {
        assert_eq!(ttl_until(OffsetDateTime::now_utc()).unwrap(), None);
        let ttl = ttl_until(OffsetDateTime::now_utc() + time::Duration::seconds(60))
            .unwrap()
            .unwrap();
        assert!(
            ttl <= Duration::from_secs(60) && ttl > Duration::from_secs(59),
            "{ttl:?}"
        );
        let far = OffsetDateTime::now_utc() + time::Duration::days(11 * 365);
        assert!(matches!(
            ttl_until(far),
            Err(session_store::Error::Encode(_))
        ));
    }
}
