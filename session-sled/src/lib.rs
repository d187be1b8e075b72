#![doc = include_str!("../README.md")]

mod record;

use std::fmt;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use session_core::{
    Capabilities, ChangeSet, Data, Error, Loaded, LockToken, Result, ScanPage, SessionId, Storage,
    Value, async_trait, check,
};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError, Transactional,
    TransactionalTree,
};
use sled::{Db, Tree};

use record::{BACKEND, Record};

/// When the driver makes sled write its log to disk, and so what survives a crash.
///
/// sled is log-structured: whatever crash happens, the database recovers to a consistent
/// prefix of its writes (index entries are written before the record that needs them, so every
/// prefix is consistent). The policy only decides how long that prefix is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flush {
    /// `flush_async().await` after every write method, before it returns. A write that returned
    /// `Ok` survives a process crash, a kernel panic and a power cut (sled fsyncs its log).
    /// The slowest policy: one fsync per write.
    EveryWrite,
    /// sled's own background flusher (`sled::Config::flush_every_ms`) writes the log every
    /// interval. A crash loses at most the writes of the last interval (plus the time one flush
    /// takes). Only for [`SledStoreBuilder::open`] and [`SledStoreBuilder::temporary`]: the
    /// interval of a [`sled::Db`] you opened yourself is its own `Config`'s.
    Interval(Duration),
    /// No flush is asked for (`flush_every_ms(None)`). sled writes its log only when an
    /// in-memory write buffer fills up, when [`SledStore::flush`] is called, and when the
    /// last handle of the database is dropped (a clean shutdown). A crash loses every write
    /// since the last of those.
    Never,
}

impl Flush {
    /// sled's own default: its background flusher every 500 ms.
    pub const DEFAULT: Flush = Flush::Interval(Duration::from_millis(500));
}

/// Options of a [`SledStore`]; start with [`SledStore::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// use std::time::Duration;
/// use session_sled::{Flush, SledStore};
///
/// let dir = tempfile::tempdir().expect("temp dir");
/// let store = SledStore::builder()
///     .flush(Flush::Interval(Duration::from_millis(100)))
///     .namespace("app1")
///     .open(dir.path().join("sessions.sled"))
///     .await?;
/// # drop(store);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct SledStoreBuilder {
    flush: Option<Flush>,
    namespace: Option<String>,
    cache_capacity: Option<u64>,
}

impl SledStoreBuilder {
    /// The flush policy. Default: [`Flush::DEFAULT`] when this builder opens the database, and
    /// the database's own configuration for [`from_db`](Self::from_db).
    pub fn flush(mut self, flush: Flush) -> Self {
        self.flush = Some(flush);
        self
    }

    /// Prefix of the four tree names (`{namespace}.sessions`, `.expiry`, `.owners`, `.locks`),
    /// so that several stores, or your own trees, can share one database. Default `session`.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// sled's page cache size in bytes (`sled::Config::cache_capacity`; sled's default is 1 GiB).
    /// Only when this builder opens the database.
    pub fn cache_capacity(mut self, bytes: u64) -> Self {
        self.cache_capacity = Some(bytes);
        self
    }

    /// Opens (or creates) the database in directory `path`, on a blocking thread.
    ///
    /// sled locks the directory: a second process, or a second open in this process while the
    /// first store is alive, fails with [`Error::Backend`].
    pub async fn open(self, path: impl AsRef<Path>) -> Result<SledStore> {
        let config = self.config()?.path(path.as_ref());
        self.open_config(config).await
    }

    /// Opens a temporary database (`sled::Config::temporary`), deleted when the store is
    /// dropped. Real sled on disk; meant for tests.
    pub async fn temporary(self) -> Result<SledStore> {
        let config = self.config()?.temporary(true);
        self.open_config(config).await
    }

    /// Uses a database you opened yourself. Its `flush_every_ms` stays as you configured it,
    /// so [`Flush::Interval`] is an [`Error::InvalidInput`] here; [`Flush::EveryWrite`] and
    /// [`Flush::Never`] (the store adds no flushes) work. Opening the trees is a short,
    /// in-memory operation, done inline.
    pub fn from_db(self, db: Db) -> Result<SledStore> {
        if matches!(self.flush, Some(Flush::Interval(_))) {
            return Err(Error::InvalidInput(
                "Flush::Interval cannot be applied to an open sled::Db; set \
                 sled::Config::flush_every_ms before opening it"
                    .into(),
            ));
        }
        if self.cache_capacity.is_some() {
            return Err(Error::InvalidInput(
                "cache_capacity cannot be applied to an open sled::Db; set \
                 sled::Config::cache_capacity before opening it"
                    .into(),
            ));
        }
        let every_write = self.flush == Some(Flush::EveryWrite);
        Inner::new(db, self.namespace.as_deref(), every_write).map(SledStore::wrap)
    }

    fn config(&self) -> Result<sled::Config> {
        let flush_every_ms = match self.flush.unwrap_or(Flush::DEFAULT) {
            Flush::Interval(every) => Some(check::ttl_millis(every).map_err(|_| {
                Error::InvalidInput(format!(
                    "flush interval {every:?} must be between 1 ms and {:?}",
                    check::MAX_TTL
                ))
            })?),
            Flush::EveryWrite | Flush::Never => None,
        };
        let mut config = sled::Config::new().flush_every_ms(flush_every_ms);
        if let Some(bytes) = self.cache_capacity {
            config = config.cache_capacity(bytes);
        }
        Ok(config)
    }

    async fn open_config(self, config: sled::Config) -> Result<SledStore> {
        let every_write = self.flush == Some(Flush::EveryWrite);
        let namespace = self.namespace;
        tokio::task::spawn_blocking(move || {
            let db = config.open().map_err(backend)?;
            Inner::new(db, namespace.as_deref(), every_write)
        })
        .await
        .map_err(|e| Error::backend(BACKEND, e))?
        .map(SledStore::wrap)
    }
}

/// The sled session store: four trees in one sled database; a session write is one
/// `compare_and_swap` of its record (see the crate documentation for the lazy indexes). Cheap
/// to clone (one `Arc`).
///
/// Every sled call runs on tokio's blocking pool (`spawn_blocking`), since any of them may
/// wait for I/O or a flush. See the crate documentation for the layout and the crash
/// guarantees of each [`Flush`] policy.
#[derive(Clone)]
pub struct SledStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    sessions: Tree,
    expiry: Tree,
    owners: Tree,
    locks: Tree,
    every_write: bool,
}

impl Inner {
    fn new(db: Db, namespace: Option<&str>, every_write: bool) -> Result<Self> {
        let ns = namespace.unwrap_or("session");
        let tree = |name: &str| db.open_tree(format!("{ns}.{name}")).map_err(backend);
        Ok(Inner {
            sessions: tree("sessions")?,
            expiry: tree("expiry")?,
            owners: tree("owners")?,
            locks: tree("locks")?,
            db,
            every_write,
        })
    }
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("sessions", &self.inner.sessions.name())
            .field("flush_every_write", &self.inner.every_write)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Options: flush policy, tree namespace, cache size.
    pub fn builder() -> SledStoreBuilder {
        SledStoreBuilder::default()
    }

    /// Opens (or creates) the database in directory `path` with the default options
    /// ([`Flush::DEFAULT`], namespace `session`).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder().open(path).await
    }

    /// Uses a database you opened yourself, with the default options (namespace `session`, no
    /// flushes beyond the database's own configuration).
    pub fn from_db(db: Db) -> Result<Self> {
        Self::builder().from_db(db)
    }

    fn wrap(inner: Inner) -> Self {
        SledStore {
            inner: Arc::new(inner),
        }
    }

    /// The underlying database, for your own trees or for `sled::Db::export`.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Writes everything to disk now (`flush_async`); returns the bytes sled wrote.
    pub async fn flush(&self) -> Result<usize> {
        self.inner.db.flush_async().await.map_err(backend)
    }

    /// Runs `f` on tokio's blocking pool.
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Inner) -> Result<R> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::backend(BACKEND, e))?
    }

    /// Runs `f` on tokio's blocking pool, then flushes if the policy says so.
    async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Inner) -> Result<R> + Send + 'static,
    {
        let out = self.read(f).await?;
        if self.inner.every_write {
            self.flush().await?;
        }
        Ok(out)
    }
}

fn backend(e: sled::Error) -> Error {
    Error::backend(BACKEND, e)
}

fn tx_error(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

/// Lifts one of our errors into a sled transaction, aborting it.
fn abort<T>(r: Result<T>) -> ConflictableTransactionResult<T, Error> {
    r.map_err(ConflictableTransactionError::Abort)
}

/// What a [`modify`] step does with the session.
enum Next {
    /// Write nothing.
    Keep,
    /// Store this record (its index entries follow).
    Write(Record),
    /// Delete the stored record, live or expired, and its index entries.
    Delete,
}

/// The session `id` if it exists, has keys and has not expired (reads outside a transaction).
fn load_live(inner: &Inner, id: &str) -> Result<Option<Record>> {
    match inner.sessions.get(id.as_bytes()).map_err(backend)? {
        Some(raw) => {
            let rec = Record::decode(&raw)?;
            Ok((rec.is_live(check::now_millis()) && !rec.is_pending()).then_some(rec))
        }
        None => Ok(None),
    }
}

/// Removes the index entries of `old` that `new` does not keep (inside a transaction).
fn unlink(
    e: &TransactionalTree,
    o: &TransactionalTree,
    id: &[u8],
    old: &Record,
    new: Option<&Record>,
) -> ConflictableTransactionResult<(), Error> {
    if new.is_none_or(|n| n.deadline != old.deadline) {
        e.remove(record::expiry_key(old.deadline, id))?;
    }
    if let Some(owner) = &old.owner
        && new.is_none_or(|n| n.owner.as_ref() != Some(owner))
    {
        o.remove(record::owner_key(owner, id))?;
    }
    Ok(())
}

/// Reads the session, lets `f` decide, and writes the record with one `compare_and_swap` on the
/// sessions tree, retried on the new record if another writer changed it meanwhile. No sled
/// transaction: in sled 0.34 every transaction takes a global write lock, which serialized all
/// writes of the store.
///
/// `f` sees the live record only (an expired one is `None`, so writes start empty; a live one
/// may be a pending binding, with no keys) and may run more than once, so it must not have side
/// effects.
///
/// The index entries a new record needs are inserted *before* the swap, so the invariants of
/// the README hold at every instant and after any crash (an entry inserted for a swap that then
/// lost is a stale entry, which purge and `index_sessions` drop): an `expiry` entry at the new
/// deadline when there was no record or the deadline moved earlier (a later deadline is covered
/// by the entry the old record already has), an `owners` entry when the owner changed.
/// Entries the new record no longer needs are left behind as stale hints, except after a delete,
/// which tidies them in a (rare) transaction.
fn modify<R, F>(inner: &Inner, id: &str, f: F) -> Result<R>
where
    F: Fn(Option<Record>) -> Result<(Next, R)>,
{
    let key = id.as_bytes();
    loop {
        let raw = inner.sessions.get(key).map_err(backend)?;
        let old = raw.as_deref().map(Record::decode).transpose()?;
        let now = check::now_millis();
        let live = old.as_ref().filter(|r| r.is_live(now)).cloned();
        let (next, out) = f(live)?;
        let new_raw = match &next {
            Next::Keep => return Ok(out),
            Next::Delete if old.is_none() => return Ok(out),
            Next::Delete => None,
            Next::Write(new) => {
                if old.as_ref().is_none_or(|o| new.deadline < o.deadline) {
                    inner
                        .expiry
                        .insert(record::expiry_key(new.deadline, key), &[])
                        .map_err(backend)?;
                }
                if let Some(owner) = &new.owner
                    && old.as_ref().is_none_or(|o| o.owner.as_ref() != Some(owner))
                {
                    inner
                        .owners
                        .insert(record::owner_key(owner, key), &[])
                        .map_err(backend)?;
                }
                Some(new.encode()?)
            }
        };
        let swapped = inner
            .sessions
            .compare_and_swap(key, raw.as_ref(), new_raw)
            .map_err(backend)?;
        if swapped.is_err() {
            continue; // another writer changed the record: decide again on its value
        }
        if let (Next::Delete, Some(old)) = (&next, &old) {
            tidy(inner, key, old)?;
        }
        return Ok(out);
    }
}

/// After `old` was deleted: drops its index entries, unless a writer has already created a new
/// record for the id (its entries may be the same keys; they then stay, as stale hints at worst).
fn tidy(inner: &Inner, key: &[u8], old: &Record) -> Result<()> {
    (&inner.sessions, &inner.expiry, &inner.owners)
        .transaction(|(s, e, o)| {
            if s.get(key)?.is_none() {
                unlink(e, o, key, old, None)?;
            }
            Ok(())
        })
        .map_err(tx_error)
}

/// Slides the deadline of a live session; nothing for a missing one or a pending binding.
fn touch(live: Option<Record>, deadline: u64) -> Next {
    match live {
        Some(mut rec) if !rec.is_pending() => {
            rec.deadline = deadline;
            Next::Write(rec)
        }
        _ => Next::Keep,
    }
}

/// Removes the session because it has no keys left, but keeps a pending binding: a write that
/// leaves no keys never undoes an `index_add` made before the first write.
fn delete_unless_pending(live: Option<&Record>) -> Next {
    match live {
        Some(rec) if rec.is_pending() => Next::Keep,
        _ => Next::Delete,
    }
}

/// Deletes the record of `id` and whatever index entries it can find, tolerating a corrupt
/// record (so a corrupt session can always be removed). Returns whether it deleted a session
/// (a record with keys, or an unreadable one), not a pending binding or nothing.
fn delete_session(
    s: &TransactionalTree,
    e: &TransactionalTree,
    o: &TransactionalTree,
    id: &[u8],
) -> ConflictableTransactionResult<bool, Error> {
    let Some(raw) = s.remove(id)? else {
        return Ok(false);
    };
    if let Ok(old) = Record::decode(&raw) {
        unlink(e, o, id, &old, None)?;
        return Ok(!old.is_pending());
    } else if let Ok(deadline) = record::deadline_of(&raw) {
        e.remove(record::expiry_key(deadline, id))?;
    }
    // Entries left behind by an unreadable record are pruned later: purge drops expiry entries
    // without a record, index_sessions drops owner entries without a live session.
    Ok(true)
}

fn parse_id(raw: &[u8]) -> Result<SessionId> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| SessionId::parse(s).ok())
        .ok_or_else(|| Error::corrupt(BACKEND, "a stored session id is not a valid id"))
}

fn deadline(ttl: Duration) -> Result<u64> {
    Ok(check::unix_millis(check::deadline(ttl)?))
}

#[async_trait]
impl Storage for SledStore {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_apply: true,
            load_with_deadline: true,
            owner_index: true,
            lock: true,
            purge: true,
            scan: true,
            native_expiry: false,
        }
    }

    async fn new(&self, ttl: Duration) -> Result<Option<SessionId>> {
        check::ttl_millis(ttl)?;
        Ok(None)
    }

    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        check::key(key)?;
        let (id, key) = (id.clone(), key.to_owned());
        self.read(move |inner| {
            Ok(load_live(inner, id.as_str())?
                .and_then(|rec| rec.data.get(&key).cloned())
                .map(Value::from))
        })
        .await
    }

    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        let id = id.clone();
        self.read(move |inner| {
            Ok(load_live(inner, id.as_str())?
                .map(|rec| rec.to_data())
                .unwrap_or_default())
        })
        .await
    }

    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        let id = id.clone();
        self.read(move |inner| Ok(load_live(inner, id.as_str())?.map_or(0, |rec| rec.data.len())))
            .await
    }

    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Duration) -> Result<()> {
        check::key(key)?;
        let deadline = deadline(ttl)?;
        let (id, key, value) = (id.clone(), key.to_owned(), value.into_bytes());
        self.write(move |inner| {
            modify(inner, id.as_str(), |live| {
                let mut rec = live.unwrap_or_else(|| Record::empty(deadline));
                rec.deadline = deadline;
                rec.data.insert(key.clone(), value.clone());
                Ok((Next::Write(rec), ()))
            })
        })
        .await
    }

    async fn set_map(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        for key in data.keys() {
            check::key(key)?;
        }
        let deadline = deadline(ttl)?;
        let id = id.clone();
        self.write(move |inner| {
            modify(inner, id.as_str(), |live| {
                if data.is_empty() {
                    return Ok((touch(live, deadline), ()));
                }
                let mut rec = live.unwrap_or_else(|| Record::empty(deadline));
                rec.deadline = deadline;
                rec.merge(data.clone());
                Ok((Next::Write(rec), ()))
            })
        })
        .await
    }

    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        check::key(key)?;
        let (id, key) = (id.clone(), key.to_owned());
        self.write(move |inner| {
            modify(inner, id.as_str(), |live| {
                let next = match live {
                    Some(mut rec) if rec.data.contains_key(&key) => {
                        rec.data.remove(&key);
                        if rec.data.is_empty() {
                            Next::Delete
                        } else {
                            Next::Write(rec)
                        }
                    }
                    _ => Next::Keep,
                };
                Ok((next, ()))
            })
        })
        .await
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        let id = id.clone();
        self.write(move |inner| {
            (&inner.sessions, &inner.expiry, &inner.owners)
                .transaction(|(s, e, o)| delete_session(s, e, o, id.as_str().as_bytes()))
                .map_err(tx_error)
                .map(drop)
        })
        .await
    }

    async fn get_session(
        &self,
        id: &SessionId,
        _ttl: Duration,
        _cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        let id = id.clone();
        self.read(move |inner| Ok(load_live(inner, id.as_str())?.map(|rec| rec.to_data())))
            .await
    }

    async fn set_session(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        for key in data.keys() {
            check::key(key)?;
        }
        let deadline = deadline(ttl)?;
        let id = id.clone();
        self.write(move |inner| {
            modify(inner, id.as_str(), |live| {
                if data.is_empty() {
                    return Ok((delete_unless_pending(live.as_ref()), ()));
                }
                let mut rec = Record::empty(deadline);
                // The owner binding is not session data: replacing the data keeps it.
                rec.owner = live.and_then(|old| old.owner);
                rec.merge(data.clone());
                Ok((Next::Write(rec), ()))
            })
        })
        .await
    }

    async fn update_ttl(&self, id: &SessionId, ttl: Duration) -> Result<()> {
        let deadline = deadline(ttl)?;
        let id = id.clone();
        self.write(move |inner| modify(inner, id.as_str(), |live| Ok((touch(live, deadline), ()))))
            .await
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, ttl: Duration) -> Result<bool> {
        for key in changes.remove.iter().chain(changes.set.keys()) {
            check::key(key)?;
        }
        let deadline = deadline(ttl)?;
        let id = id.clone();
        self.write(move |inner| {
            modify(inner, id.as_str(), |live| {
                if changes.only_if_exists && live.as_ref().is_none_or(Record::is_pending) {
                    return Ok((Next::Keep, false));
                }
                let next_if_empty = delete_unless_pending(live.as_ref());
                let mut rec = live.unwrap_or_else(|| Record::empty(deadline));
                rec.deadline = deadline;
                if changes.clear {
                    rec.data.clear();
                }
                for key in &changes.remove {
                    rec.data.remove(key);
                }
                rec.merge(changes.set.clone());
                if rec.data.is_empty() {
                    Ok((next_if_empty, false))
                } else {
                    Ok((Next::Write(rec), true))
                }
            })
        })
        .await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        let id = id.clone();
        self.read(move |inner| {
            Ok(load_live(inner, id.as_str())?.map(|rec| Loaded {
                data: rec.to_data().into(),
                expires_at: Some(check::from_unix_millis(rec.deadline)),
            }))
        })
        .await
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Duration) -> Result<()> {
        check::owner(owner)?;
        // How long a binding made before the session's first write waits for that write.
        let pending_until = deadline(ttl)?;
        let (owner, id) = (owner.to_owned(), id.clone());
        self.write(move |inner| {
            modify(inner, id.as_str(), |live| {
                let mut rec = match live {
                    Some(rec) if rec.is_pending() => Record {
                        deadline: rec.deadline.max(pending_until),
                        ..rec
                    },
                    Some(rec) if rec.owner.as_deref() == Some(owner.as_str()) => {
                        return Ok((Next::Keep, ()));
                    }
                    // A session keeps its own expiry.
                    Some(rec) => rec,
                    None => Record::empty(pending_until),
                };
                rec.owner = Some(owner.clone());
                Ok((Next::Write(rec), ()))
            })
        })
        .await
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        let id = id.clone();
        self.write(move |inner| {
            modify(inner, id.as_str(), |live| {
                let next = match live {
                    Some(rec) if rec.is_pending() => Next::Delete,
                    Some(mut rec) if rec.owner.is_some() => {
                        rec.owner = None;
                        Next::Write(rec)
                    }
                    _ => Next::Keep,
                };
                Ok((next, ()))
            })
        })
        .await
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        check::owner(owner)?;
        let owner = owner.to_owned();
        self.write(move |inner| {
            let prefix = record::owner_prefix(&owner);
            let mut live_ids = Vec::new();
            let mut dead = Vec::new();
            for entry in inner.owners.scan_prefix(&prefix) {
                let (key, _) = entry.map_err(backend)?;
                let id = parse_id(&key[prefix.len()..])?;
                let rec = match inner.sessions.get(id.as_str()).map_err(backend)? {
                    Some(raw) => Some(Record::decode(&raw)?),
                    None => None,
                };
                match rec {
                    Some(rec) if rec.owner.as_deref() == Some(owner.as_str()) => {
                        // A pending binding keeps its entry but is not a session yet; an
                        // expired record keeps it until purge deletes the record.
                        if rec.is_live(check::now_millis()) && !rec.is_pending() {
                            live_ids.push(id);
                        }
                    }
                    _ => dead.push(key),
                }
            }
            // Prune, re-checking in a transaction so a session bound meanwhile keeps its entry.
            for key in dead {
                let id = &key[prefix.len()..];
                (&inner.sessions, &inner.owners)
                    .transaction(|(s, o)| {
                        // An expired record keeps its entry until purge deletes it: a
                        // writer that swaps it for a record with the same owner relies on it.
                        let bound = match s.get(id)? {
                            Some(raw) => {
                                let rec = abort(Record::decode(&raw))?;
                                rec.owner.as_deref() == Some(owner.as_str())
                            }
                            None => false,
                        };
                        if !bound {
                            o.remove(&key)?;
                        }
                        Ok(())
                    })
                    .map_err(tx_error)?;
            }
            Ok(live_ids)
        })
        .await
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let id = id.clone();
        self.read(move |inner| Ok(load_live(inner, id.as_str())?.and_then(|rec| rec.owner)))
            .await
    }

    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        let lease_ms = check::ttl_millis(lease)?;
        let token = LockToken::generate()?;
        let id = id.clone();
        self.write(move |inner| {
            inner
                .locks
                .transaction(|l| {
                    let now = check::now_millis();
                    if let Some(raw) = l.get(id.as_str())? {
                        let (until, _) = abort(record::decode_lock(&raw))?;
                        if until > now {
                            return Ok(None);
                        }
                    }
                    let value = record::encode_lock(now + lease_ms, token.as_str());
                    l.insert(id.as_str(), value)?;
                    Ok(Some(token.clone()))
                })
                .map_err(tx_error)
        })
        .await
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let (id, token) = (id.clone(), token.clone());
        self.write(move |inner| {
            inner
                .locks
                .transaction(|l| {
                    let Some(raw) = l.get(id.as_str())? else {
                        return Ok(false);
                    };
                    let (until, held_by) = abort(record::decode_lock(&raw))?;
                    if held_by != token.as_str().as_bytes() {
                        return Ok(false);
                    }
                    // Ours, but maybe run out: free it either way, report whether it still held.
                    l.remove(id.as_str())?;
                    Ok(until > check::now_millis())
                })
                .map_err(tx_error)
        })
        .await
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.write(|inner| {
            let now = check::now_millis();
            let mut purged = 0;
            for entry in inner.expiry.iter() {
                let (key, _) = entry.map_err(backend)?;
                let (entry_deadline, id) = record::parse_expiry_key(&key)?;
                if entry_deadline > now {
                    break;
                }
                let deleted = (&inner.sessions, &inner.expiry, &inner.owners)
                    .transaction(|(s, e, o)| {
                        if e.remove(&key)?.is_none() {
                            return Ok(false); // another purge took it meanwhile
                        }
                        let Some(raw) = s.get(id)? else {
                            return Ok(false); // stale entry: the session is gone
                        };
                        match record::deadline_of(&raw) {
                            // Extended since the entry was made (writes add no entry when the
                            // deadline moves later): index it at its real deadline.
                            Ok(d) if d > now => {
                                e.insert(record::expiry_key(d, id), Vec::new())?;
                                Ok(false)
                            }
                            // Expired; or an unreadable header, expired by the index: delete.
                            _ => delete_session(s, e, o, id),
                        }
                    })
                    .map_err(tx_error)?;
                purged += u64::from(deleted);
            }
            // Leases that ran out and were never released.
            for entry in inner.locks.iter() {
                let (key, value) = entry.map_err(backend)?;
                if record::decode_lock(&value).is_ok_and(|(until, _)| until <= now) {
                    // Only if unchanged since we read it; a new lease is left alone.
                    let _ = inner
                        .locks
                        .compare_and_swap(&key, Some(&value), None as Option<&[u8]>)
                        .map_err(backend)?;
                }
            }
            Ok(purged)
        })
        .await
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let cursor = cursor.map(|c| c.as_bytes().to_vec());
        let limit = limit.max(1);
        self.read(move |inner| {
            let start = match cursor {
                Some(c) => Bound::Excluded(c),
                None => Bound::Unbounded,
            };
            let mut iter = inner
                .sessions
                .range::<Vec<u8>, _>((start, Bound::Unbounded));
            let now = check::now_millis();
            let mut ids = Vec::new();
            for entry in iter.by_ref() {
                let (key, value) = entry.map_err(backend)?;
                // The header is enough to skip expired records; live ones are decoded to skip
                // pending bindings and to report a corrupt body.
                if record::deadline_of(&value)? > now && !Record::decode(&value)?.is_pending() {
                    ids.push(parse_id(&key)?);
                    if ids.len() == limit {
                        break;
                    }
                }
            }
            let more = ids.len() == limit && iter.next().is_some();
            let next = if more {
                ids.last().map(|id| id.as_str().to_owned())
            } else {
                None
            };
            Ok(ScanPage { ids, next })
        })
        .await
    }
}
