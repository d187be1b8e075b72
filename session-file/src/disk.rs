//! The blocking half of the driver: every function here does file I/O that may wait for the
//! disk (or for another writer's lock) and runs inside `tokio::task::spawn_blocking`, never on an
//! async worker thread. Reads that need no disk I/O run inline instead ([`crate::nowait`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use session_core::driver::record::Record;
use session_core::driver::{
    ChangeSet, Data, Error, Expiry, LockToken, Result, SessionId, Value, check,
};

use crate::NAME;
use crate::nowait::{self, read_opt};
use crate::paths::{self, Layout};
use crate::record::{self, Kind};

/// An I/O error with the path it happened on, as [`Error::Backend`].
pub(crate) fn io_err(what: &str, path: &Path, e: io::Error) -> Error {
    Error::backend(
        NAME,
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display())),
    )
}

/// Options that the blocking code needs.
#[derive(Clone, Debug)]
pub(crate) struct DiskOptions {
    pub(crate) sync: bool,
    pub(crate) stale_temp_after: Duration,
    pub(crate) lock_timeout: Option<Duration>,
}

/// The store directory and its options.
#[derive(Debug)]
pub(crate) struct Disk {
    pub(crate) layout: Layout,
    pub(crate) opts: DiskOptions,
    /// Whether reads may try the inline path ([`nowait::read`]).
    pub(crate) inline: nowait::Switch,
}

/// How a read-modify-write treats a record that does not decode.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnCorrupt {
    /// Report [`Error::Corrupt`] (merging into unknown data is impossible).
    Fail,
    /// Treat it as absent: the caller replaces or deletes it.
    Replace,
}

/// Creates `dir` (mode 0700) if missing, sets 0700 if it has another mode, and makes the owner
/// index subdirectory. Returns the canonical path.
pub(crate) fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err("creating directory", dir, e))?;
    let dir = fs::canonicalize(dir).map_err(|e| io_err("resolving", dir, e))?;
    let meta = fs::metadata(&dir).map_err(|e| io_err("reading", &dir, e))?;
    if !meta.is_dir() {
        return Err(Error::InvalidInput(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o7777 != 0o700 {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("setting mode 0700 on", &dir, e))?;
    }
    let owners = dir.join(paths::OWNERS_DIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&owners)
        .map_err(|e| io_err("creating directory", &owners, e))?;
    Ok(dir)
}

/// Reads only the header of a file (framing and the record's deadline); `None` if it does not
/// exist.
fn read_header(kind: Kind, path: &Path) -> Result<Option<record::Header>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("opening", path, e)),
    };
    let mut buf = Vec::with_capacity(record::HEADER_READ_LEN);
    (&mut file)
        .take(record::HEADER_READ_LEN as u64)
        .read_to_end(&mut buf)
        .map_err(|e| io_err("reading", path, e))?;
    record::decode_header(kind, &buf).map(Some)
}

fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("removing", path, e)),
    }
}

fn exists(path: &Path) -> Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("checking", path, e)),
    }
}

/// Session ids of the directory entries of `dir` whose names are `prefix` + a valid id.
fn list_ids(dir: &Path, prefix: &str) -> Result<Vec<SessionId>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("listing", dir, e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name.strip_prefix(prefix)
            && let Ok(id) = SessionId::parse(id)
        {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The advisory lock of one session, held until dropped (closing the file releases it).
struct SessionLock {
    /// Held only for its lock: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

/// A read-modify-write of one session under its advisory lock.
///
/// Dropping it releases the lock; if neither a record nor a lease of the session is left, the
/// lock file is deleted first (lockers waiting on the old inode notice and retry).
struct Txn<'a> {
    disk: &'a Disk,
    id: SessionId,
    lock: SessionLock,
    record_path: PathBuf,
    /// The decoded record on disk, expired or not (`None` if absent or corrupt-and-replaced).
    before: Option<Record>,
    /// Whether a record file exists on disk (even a corrupt one).
    on_disk: bool,
    /// Set once this transaction has written the record: the lock file is not an orphan, and
    /// dropping skips the check.
    wrote: bool,
    now: u64,
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if self.wrote {
            return;
        }
        let gone = |p: &Path| matches!(exists(p), Ok(false));
        let orphan = gone(&self.record_path)
            && self
                .disk
                .layout
                .lease(&self.id)
                .is_ok_and(|lease| gone(&lease));
        if orphan {
            // Best effort: a lock file left behind is removed by the next purge.
            let _ = remove_if_exists(&self.lock.path);
        }
    }
}

impl Txn<'_> {
    /// The unexpired record, which may have no keys (an owner binding made before any write).
    fn current(&self) -> Option<&Record> {
        self.before.as_ref().filter(|r| !r.expired(self.now))
    }

    /// The live session: unexpired with at least one key.
    fn live(&self) -> Option<&Record> {
        self.before.as_ref().filter(|r| r.live(self.now))
    }

    /// Writes `after` (or deletes the record for `None`) and keeps the owner index in step; the
    /// lock is released when `self` drops. A record without keys and without owner is not kept.
    fn commit(mut self, after: Option<Record>) -> Result<()> {
        let after = after.filter(|r| !r.data.is_empty() || r.owner.is_some());
        let old_owner = self
            .before
            .as_ref()
            .and_then(|r| r.owner.as_deref())
            .map(paths::owner_dir_name);
        let new_owner = after
            .as_ref()
            .and_then(|r| r.owner.as_deref())
            .map(paths::owner_dir_name);
        // New index entry first, old one last: a crash in between leaves a stale entry (pruned
        // on lookup), never a bound session that the index cannot find.
        if let Some(owner) = &new_owner {
            self.disk.add_owner_entry(owner, &self.id)?;
        }
        match &after {
            Some(rec) => {
                let bytes = record::encode(Kind::Session, rec)?;
                self.disk
                    .write_atomic(&self.record_path, &bytes, !self.on_disk)?;
                // Under the lock nobody else deletes it: no orphan check when dropping.
                self.wrote = true;
            }
            None if self.on_disk => {
                remove_if_exists(&self.record_path)?;
                self.disk.sync_dir()?;
            }
            None => {}
        }
        if let Some(owner) = &old_owner
            && new_owner.as_ref() != Some(owner)
        {
            self.disk.remove_owner_entry(owner, &self.id)?;
        }
        Ok(())
    }
}

impl Disk {
    fn sync_dir(&self) -> Result<()> {
        if self.opts.sync {
            File::open(&self.layout.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("syncing directory", &self.layout.dir, e))?;
        }
        Ok(())
    }

    /// Writes `bytes` to a fresh temp file in the store directory (0600), syncs it, and renames
    /// it over `target`: a crash leaves the old or the new file, never a torn one. `created`
    /// says the target did not exist before, so the directory is synced too.
    fn write_atomic(&self, target: &Path, bytes: &[u8], created: bool) -> Result<()> {
        let dir = &self.layout.dir;
        let mut tmp = tempfile::Builder::new()
            .prefix(paths::TEMP_PREFIX)
            .rand_bytes(12)
            .permissions(fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(|e| io_err("creating a temp file in", dir, e))?;
        tmp.write_all(bytes)
            .map_err(|e| io_err("writing", tmp.path(), e))?;
        if self.opts.sync {
            tmp.as_file()
                .sync_all()
                .map_err(|e| io_err("syncing", tmp.path(), e))?;
        }
        tmp.persist(target)
            .map_err(|e| io_err("renaming onto", target, e.error))?;
        if created {
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Takes the advisory lock of `id`; with `wait == false` returns `None` when it is busy.
    fn lock(&self, id: &SessionId, wait: bool) -> Result<Option<SessionLock>> {
        let path = self.layout.lock(id)?;
        let started = Instant::now();
        for _ in 0..10_000 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| io_err("opening lock file", &path, e))?;
            if !self.acquire(&file, &path, wait, started)? {
                return Ok(None);
            }
            // The holder may have deleted the lock file before we got it: only a lock on the
            // file that is still at `path` counts.
            let held = file.metadata().map_err(|e| io_err("reading", &path, e))?;
            match fs::metadata(&path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(Some(SessionLock { _file: file, path }));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("reading", &path, e)),
            }
        }
        Err(Error::Locked(format!(
            "lock file {} keeps being replaced",
            path.display()
        )))
    }

    /// Locks `file` exclusively; `false` if `wait` is off and someone else holds it.
    fn acquire(&self, file: &File, path: &Path, wait: bool, started: Instant) -> Result<bool> {
        if wait && self.opts.lock_timeout.is_none() {
            file.lock().map_err(|e| io_err("locking", path, e))?;
            return Ok(true);
        }
        let mut pause = Duration::from_micros(100);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(true),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(io_err("locking", path, e)),
            }
            if !wait {
                return Ok(false);
            }
            if let Some(limit) = self.opts.lock_timeout
                && started.elapsed() >= limit
            {
                return Err(Error::Locked(format!(
                    "advisory lock {} still held after {limit:?}",
                    path.display()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(5));
        }
    }

    /// Starts a read-modify-write of `id`.
    fn begin(&self, id: &SessionId, on_corrupt: OnCorrupt) -> Result<Txn<'_>> {
        let lock = self
            .lock(id, true)?
            .ok_or_else(|| Error::Locked("session lock busy".into()))?;
        self.begin_locked(id, lock, on_corrupt)
    }

    fn begin_locked(
        &self,
        id: &SessionId,
        lock: SessionLock,
        on_corrupt: OnCorrupt,
    ) -> Result<Txn<'_>> {
        let record_path = self.layout.record(id)?;
        let (before, on_disk) = match read_opt(&record_path)? {
            None => (None, false),
            Some(bytes) => match record::decode(Kind::Session, &bytes) {
                Ok(rec) => (Some(rec), true),
                Err(_) if on_corrupt == OnCorrupt::Replace => (None, true),
                Err(e) => return Err(e),
            },
        };
        Ok(Txn {
            disk: self,
            id: id.clone(),
            lock,
            record_path,
            before,
            on_disk,
            wrote: false,
            now: check::now_millis(),
        })
    }

    fn add_owner_entry(&self, encoded: &str, id: &SessionId) -> Result<()> {
        let dir = self.layout.owner_dir_encoded(encoded)?;
        let entry = self.layout.owner_entry_encoded(encoded, id)?;
        // A concurrent prune may remove the (empty) owner directory between the two steps.
        for _ in 0..100 {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io_err("creating directory", &dir, e))?;
            match OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&entry)
            {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("creating", &entry, e)),
            }
        }
        Err(Error::backend(
            NAME,
            format!("owner directory {} keeps disappearing", dir.display()),
        ))
    }

    fn remove_owner_entry(&self, encoded: &str, id: &SessionId) -> Result<()> {
        let entry = self.layout.owner_entry_encoded(encoded, id)?;
        remove_if_exists(&entry)?;
        // Fails (harmlessly) unless the directory is empty.
        let _ = fs::remove_dir(self.layout.owner_dir_encoded(encoded)?);
        Ok(())
    }

    // ----- reads (no lock: every file is replaced by an atomic rename) ----------------------

    /// The decoded record of `id`, expired or not.
    fn read_record(&self, id: &SessionId) -> Result<Option<Record>> {
        decode_record(read_opt(&self.layout.record(id)?)?)
    }

    // ----- writes ------------------------------------------------------------------------

    /// Applies `changes` under the session's lock; see [`Driver::apply`] for the contract.
    ///
    /// [`Driver::apply`]: session_core::driver::Driver::apply
    pub(crate) fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        // A replace of the whole session (`set_session`) needs nothing of the old record, so
        // it overwrites a corrupt one; a merge cannot merge into unknown data.
        let replaces = changes.clear && !changes.only_if_exists && expiry.may_create();
        let on_corrupt = if replaces {
            OnCorrupt::Replace
        } else {
            OnCorrupt::Fail
        };
        let txn = self.begin(id, on_corrupt)?;
        let existed = txn.live().is_some();
        if !existed && (changes.only_if_exists || !expiry.may_create()) {
            return Ok(false);
        }
        // An unexpired record without keys is a binding made before the first write: the
        // write keeps its owner.
        let mut rec = txn.current().cloned().unwrap_or_default();
        let mut changed = changes.clear || !changes.set.is_empty();
        if changes.clear {
            rec.data.clear();
        }
        for key in &changes.remove {
            changed |= rec.data.remove(key).is_some();
        }
        if !changed && expiry == Expiry::Keep {
            // Removing keys that are not there, keeping the deadline: nothing to write.
            return Ok(existed);
        }
        rec.data.extend(changes.set);
        if rec.data.is_empty() {
            // No keys left: the session goes, with its owner binding.
            if existed {
                txn.commit(None)?;
            }
            return Ok(false);
        }
        if let Some(ttl) = expiry.ttl() {
            rec.deadline_ms = txn.now.saturating_add(ttl.as_millis());
        }
        txn.commit(Some(rec))?;
        Ok(true)
    }

    pub(crate) fn remove_all(&self, id: &SessionId) -> Result<()> {
        let txn = self.begin(id, OnCorrupt::Replace)?;
        txn.commit(None)
    }

    // ----- owner index -------------------------------------------------------------------

    pub(crate) fn index_add(&self, owner: &str, id: &SessionId, ttl_ms: u64) -> Result<()> {
        let txn = self.begin(id, OnCorrupt::Fail)?;
        let binding_deadline = txn.now.saturating_add(ttl_ms);
        let rec = match txn.current().cloned() {
            Some(mut rec) => {
                if rec.data.is_empty() {
                    // A binding made before the session's first write lives at least `ttl`.
                    rec.deadline_ms = rec.deadline_ms.max(binding_deadline);
                }
                rec.owner = Some(owner.to_owned());
                rec
            }
            None => Record {
                deadline_ms: binding_deadline,
                owner: Some(owner.to_owned()),
                data: Data::new(),
            },
        };
        txn.commit(Some(rec))
    }

    pub(crate) fn index_remove(&self, id: &SessionId) -> Result<()> {
        let txn = self.begin(id, OnCorrupt::Fail)?;
        let Some(mut rec) = txn.current().cloned() else {
            return Ok(());
        };
        if rec.owner.take().is_none() {
            return Ok(());
        }
        txn.commit(Some(rec))
    }

    /// Live sessions of the owner whose index directory is `encoded`, pruning dead entries.
    pub(crate) fn index_sessions(&self, encoded: &str) -> Result<Vec<SessionId>> {
        let dir = self.layout.owner_dir_encoded(encoded)?;
        let mut live = Vec::new();
        for id in list_ids(&dir, "")? {
            match self.owner_entry_state(encoded, &id) {
                Ok(EntryState::Live) => live.push(id),
                Ok(EntryState::Pending) | Err(Error::Corrupt { .. }) => {}
                Ok(EntryState::Dead) => self.prune_owner_entry(encoded, &id)?,
                Err(e) => return Err(e),
            }
        }
        if live.is_empty() {
            let _ = fs::remove_dir(&dir);
        }
        Ok(live)
    }

    fn owner_entry_state(&self, encoded: &str, id: &SessionId) -> Result<EntryState> {
        let now = check::now_millis();
        Ok(entry_state(self.read_record(id)?.as_ref(), encoded, now))
    }

    /// Removes a dead index entry, re-checking under the session lock. An expired record stays
    /// for the purge to delete (and count).
    fn prune_owner_entry(&self, encoded: &str, id: &SessionId) -> Result<()> {
        let txn = match self.begin(id, OnCorrupt::Fail) {
            Ok(txn) => txn,
            Err(Error::Corrupt { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if entry_state(txn.before.as_ref(), encoded, txn.now) == EntryState::Dead {
            self.remove_owner_entry(encoded, id)?;
        }
        Ok(())
    }

    // ----- lease lock --------------------------------------------------------------------

    pub(crate) fn try_lock(&self, id: &SessionId, lease_ms: u64) -> Result<Option<LockToken>> {
        let txn = self.begin(id, OnCorrupt::Replace)?;
        let path = self.layout.lease(id)?;
        let current = read_opt(&path)?;
        if let Some(bytes) = &current
            && let Ok(lease) = record::decode(Kind::Lease, bytes)
            && !lease.expired(txn.now)
        {
            return Ok(None);
        }
        let token = LockToken::generate()?;
        let mut data = Data::new();
        data.insert(
            record::LEASE_TOKEN_KEY.to_owned(),
            Value::from_bytes(token.as_str().as_bytes().to_vec()),
        );
        let lease = Record {
            deadline_ms: txn.now.saturating_add(lease_ms),
            owner: None,
            data,
        };
        self.write_atomic(
            &path,
            &record::encode(Kind::Lease, &lease)?,
            current.is_none(),
        )?;
        drop(txn);
        Ok(Some(token))
    }

    pub(crate) fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let txn = self.begin(id, OnCorrupt::Replace)?;
        let path = self.layout.lease(id)?;
        let Some(bytes) = read_opt(&path)? else {
            return Ok(false);
        };
        let (held, stale) = match record::decode(Kind::Lease, &bytes) {
            Ok(lease) => {
                let ours = lease
                    .data
                    .get(record::LEASE_TOKEN_KEY)
                    .is_some_and(|t| t.as_bytes() == token.as_str().as_bytes());
                let expired = lease.expired(txn.now);
                (ours && !expired, expired)
            }
            Err(_) => (false, true),
        };
        if held || stale {
            remove_if_exists(&path)?;
        }
        drop(txn);
        Ok(held)
    }

    // ----- purge and scan ----------------------------------------------------------------

    /// Deletes expired sessions and leases, stale temp files, orphan lock files and dead owner
    /// index entries; returns the number of sessions (records with keys) deleted.
    pub(crate) fn purge(&self) -> Result<u64> {
        let now = check::now_millis();
        let mut purged = 0;
        for id in list_ids(&self.layout.dir, paths::RECORD_PREFIX)? {
            let path = self.layout.record(&id)?;
            match read_header(Kind::Session, &path) {
                Ok(Some(h)) if now >= h.deadline_ms => {}
                Ok(_) | Err(Error::Corrupt { .. }) => continue,
                Err(e) => return Err(e),
            }
            let txn = match self.begin(&id, OnCorrupt::Fail) {
                Ok(txn) => txn,
                Err(Error::Corrupt { .. }) => continue,
                Err(e) => return Err(e),
            };
            let Some(rec) = txn.before.as_ref().filter(|r| r.expired(txn.now)) else {
                continue; // rewritten meanwhile
            };
            let had_keys = !rec.data.is_empty();
            txn.commit(None)?;
            if had_keys {
                purged += 1;
            }
        }
        for id in list_ids(&self.layout.dir, paths::LEASE_PREFIX)? {
            let path = self.layout.lease(&id)?;
            match read_header(Kind::Lease, &path) {
                Ok(Some(h)) if now >= h.deadline_ms => {}
                Ok(Some(_)) | Ok(None) => continue,
                Err(Error::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
            let Some(lock) = self.lock(&id, false)? else {
                continue;
            };
            let txn = self.begin_locked(&id, lock, OnCorrupt::Replace)?;
            let still_expired = match read_opt(&path)? {
                Some(bytes) => record::decode(Kind::Lease, &bytes)
                    .map(|l| l.expired(txn.now))
                    .unwrap_or(true),
                None => false,
            };
            if still_expired {
                remove_if_exists(&path)?;
            }
            drop(txn);
        }
        for id in list_ids(&self.layout.dir, paths::LOCK_PREFIX)? {
            if exists(&self.layout.record(&id)?)? || exists(&self.layout.lease(&id)?)? {
                continue;
            }
            if let Some(lock) = self.lock(&id, false)? {
                // Dropping the transaction deletes the orphan lock file.
                drop(self.begin_locked(&id, lock, OnCorrupt::Replace)?);
            }
        }
        self.purge_temp_files()?;
        self.purge_owner_index()?;
        Ok(purged)
    }

    fn purge_temp_files(&self) -> Result<()> {
        let dir = &self.layout.dir;
        let entries = fs::read_dir(dir).map_err(|e| io_err("listing", dir, e))?;
        let now = SystemTime::now();
        for entry in entries {
            let entry = entry.map_err(|e| io_err("listing", dir, e))?;
            let name = entry.file_name();
            if !name
                .to_str()
                .is_some_and(|n| n.starts_with(paths::TEMP_PREFIX))
            {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if meta.is_file() && age >= self.opts.stale_temp_after {
                remove_if_exists(&entry.path())?;
            }
        }
        Ok(())
    }

    fn purge_owner_index(&self) -> Result<()> {
        let owners = &self.layout.owners;
        let entries = match fs::read_dir(owners) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("listing", owners, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err("listing", owners, e))?;
            let name = entry.file_name();
            let Some(encoded) = name.to_str() else {
                continue;
            };
            if self.layout.owner_dir_encoded(encoded).is_err() {
                continue;
            }
            self.index_sessions(encoded)?;
        }
        Ok(())
    }

    /// One page of live ids, in name order, after `cursor`.
    pub(crate) fn scan(
        &self,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<SessionId>, Option<String>)> {
        let limit = limit.max(1);
        let now = check::now_millis();
        let mut ids = list_ids(&self.layout.dir, paths::RECORD_PREFIX)?;
        if let Some(cursor) = cursor {
            ids.retain(|id| id.as_str() > cursor);
        }
        ids.sort();
        let mut page = Vec::new();
        let mut iter = ids.into_iter().peekable();
        while let Some(id) = iter.next() {
            match read_header(Kind::Session, &self.layout.record(&id)?) {
                Ok(Some(h)) if now < h.deadline_ms && h.keys > 0 => page.push(id),
                Ok(_) | Err(Error::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
            if page.len() >= limit {
                let next = iter.peek().is_some().then(|| {
                    page.last()
                        .map(|id| id.as_str().to_owned())
                        .unwrap_or_default()
                });
                return Ok((page, next));
            }
        }
        Ok((page, None))
    }
}

/// Decodes the bytes of a session record file (`None`: no file).
pub(crate) fn decode_record(bytes: Option<Vec<u8>>) -> Result<Option<Record>> {
    bytes
        .map(|bytes| record::decode(Kind::Session, &bytes))
        .transpose()
}

/// What an owner index entry points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EntryState {
    /// A live session bound to this owner.
    Live,
    /// A binding made before the session's first write: kept, not listed.
    Pending,
    /// Missing, expired or bound elsewhere: prune.
    Dead,
}

fn entry_state(rec: Option<&Record>, encoded: &str, now: u64) -> EntryState {
    match rec {
        Some(r)
            if !r.expired(now)
                && r.owner.as_deref().map(paths::owner_dir_name).as_deref() == Some(encoded) =>
        {
            if r.data.is_empty() {
                EntryState::Pending
            } else {
                EntryState::Live
            }
        }
        _ => EntryState::Dead,
    }
}
