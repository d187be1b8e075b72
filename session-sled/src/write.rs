//! The write path: one `compare_and_swap` of a session record, with the index entries it needs
//! inserted first ([`modify`]), and the deletes that tidy the indexes in a transaction.

use session_core::driver::record::{self, Record};
use session_core::driver::{ChangeSet, Error, Result, SessionId, check};
use sled::IVec;
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError, Transactional,
    TransactionalTree,
};

use crate::merge::View;
use crate::store::{Inner, backend};
use crate::{NAME, trees};

/// A sled transaction error as ours.
pub(crate) fn tx_error(e: TransactionError<Error>) -> Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => backend(e),
    }
}

/// Lifts one of our errors into a sled transaction, aborting it.
pub(crate) fn abort<T>(r: Result<T>) -> ConflictableTransactionResult<T, Error> {
    r.map_err(ConflictableTransactionError::Abort)
}

/// What a [`modify`] step does with the session.
pub(crate) enum Next {
    /// Write nothing.
    Keep,
    /// Store this record (its index entries follow).
    Write(Record),
    /// Delete the stored record, live or expired, and its index entries.
    Delete,
}

/// The session `id` if it exists, has keys and has not expired (reads outside a transaction).
pub(crate) fn load_live(inner: &Inner, id: &str) -> Result<Option<Record>> {
    match inner.sessions.get(id.as_bytes()).map_err(backend)? {
        Some(raw) => {
            let rec = Record::decode(&raw, NAME)?;
            Ok(rec.live(check::now_millis()).then_some(rec))
        }
        None => Ok(None),
    }
}

/// Removes the index entries of a deleted record (inside a transaction).
fn unlink(
    e: &TransactionalTree,
    o: &TransactionalTree,
    id: &[u8],
    old: &Head<'_>,
) -> ConflictableTransactionResult<(), Error> {
    e.remove(trees::expiry_key(old.deadline_ms, id))?;
    if let Some(owner) = &old.owner {
        o.remove(trees::owner_key(owner, id))?;
    }
    Ok(())
}

/// Reads the session, lets `f` decide, and writes the record with one `compare_and_swap` on the
/// sessions tree, retried on the new record if another writer changed it meanwhile. Runs
/// inline on the caller's thread (synchronous, no lock held between its sled calls). No sled
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
pub(crate) fn modify<R, F>(inner: &Inner, id: &str, f: F) -> Result<R>
where
    F: Fn(Option<Record>) -> Result<(Next, R)>,
{
    let key = id.as_bytes();
    loop {
        let raw = inner.sessions.get(key).map_err(backend)?;
        let old = raw
            .as_deref()
            .map(|raw| Record::decode(raw, NAME))
            .transpose()?;
        // What the index steps need of the old record; the record itself goes to `f` (no copy
        // of its values).
        let old_owner = old.as_ref().and_then(|o| o.owner.clone());
        let head = old.as_ref().map(|o| Head {
            deadline_ms: o.deadline_ms,
            owner: old_owner.as_deref(),
        });
        let now = check::now_millis();
        let live = old.filter(|r| !r.expired(now));
        let (next, out) = f(live)?;
        let step = match &next {
            Next::Keep => return Ok(out),
            Next::Delete => Step::Delete,
            Next::Write(new) => Step::Write {
                deadline_ms: new.deadline_ms,
                owner: new.owner.as_deref(),
                bytes: new.encode()?,
            },
        };
        if commit(inner, key, raw.as_ref(), head, step)? {
            return Ok(out);
        }
        // Another writer changed the record: decide again on its value.
    }
}

/// The driver's `apply` on the stored bytes ([`View`]): the same decisions as `apply`'s closure
/// over [`modify`], the same index steps and swap ([`commit`]), without decoding the record into
/// owned keys and values. `None` when the stored record is not a well-formed current-layout
/// record (an older layout, a corrupt one): the caller then takes the general path, which reads
/// the older layouts and reports a corrupt record. Nothing has been written that the general
/// path would not write (at most a stale index entry of a lost swap).
pub(crate) fn apply_bytes(
    inner: &Inner,
    id: &str,
    changes: &ChangeSet,
    deadline: Option<u64>,
    may_create: bool,
) -> Result<Option<bool>> {
    let key = id.as_bytes();
    loop {
        let raw = inner.sessions.get(key).map_err(backend)?;
        let old = match raw.as_deref() {
            None => None,
            Some(bytes) => match View::parse(bytes) {
                Some(view) => Some(view),
                None => return Ok(None),
            },
        };
        let head = old.as_ref().map(|v| Head {
            deadline_ms: v.deadline_ms,
            owner: v.owner,
        });
        let now = check::now_millis();
        let live = old.filter(|v| now < v.deadline_ms);
        let exists = live.as_ref().is_some_and(|v| !v.entries.is_empty());
        if !exists && (changes.only_if_exists || !may_create) {
            return Ok(Some(false));
        }
        let pending = live.as_ref().is_some_and(|v| v.entries.is_empty());
        // A pending binding (no keys) is taken over by the write: its owner stays.
        let mut rec = live.unwrap_or_else(View::empty);
        if let Some(deadline) = deadline {
            rec.deadline_ms = deadline;
        }
        if !rec.change(changes) && deadline.is_none() {
            // Removing absent keys, keeping the deadline: nothing to write.
            return Ok(Some(exists));
        }
        let (step, out) = if !rec.entries.is_empty() {
            let Some(bytes) = rec.encode() else {
                return Ok(None);
            };
            let step = Step::Write {
                deadline_ms: rec.deadline_ms,
                owner: rec.owner,
                bytes,
            };
            (step, true)
        } else if pending {
            // A write that leaves no keys never undoes an `index_add` made before it.
            return Ok(Some(false));
        } else {
            (Step::Delete, false)
        };
        if commit(inner, key, raw.as_ref(), head, step)? {
            return Ok(Some(out));
        }
    }
}

/// The parts of a stored record its index entries are made of.
struct Head<'a> {
    deadline_ms: u64,
    owner: Option<&'a str>,
}

/// What one attempt of a write stores.
enum Step<'a> {
    /// Delete the stored record (if any) and tidy its index entries.
    Delete,
    /// Store `bytes`, the record expiring at `deadline_ms` bound to `owner`.
    Write {
        deadline_ms: u64,
        owner: Option<&'a str>,
        bytes: Vec<u8>,
    },
}

/// One attempt of a write over the record `raw` (as read, `old` its index parts): the index
/// entries the new record needs, then the `compare_and_swap`, then after a delete the tidy-up.
/// `false` when the swap lost to another writer (nothing but a stale index entry was written).
fn commit(
    inner: &Inner,
    key: &[u8],
    raw: Option<&IVec>,
    old: Option<Head<'_>>,
    step: Step<'_>,
) -> Result<bool> {
    let new_raw = match step {
        Step::Delete if old.is_none() => return Ok(true),
        Step::Delete => None,
        Step::Write {
            deadline_ms,
            owner,
            bytes,
        } => {
            if old.as_ref().is_none_or(|o| deadline_ms < o.deadline_ms) {
                inner
                    .expiry
                    .insert(trees::expiry_key(deadline_ms, key), &[])
                    .map_err(backend)?;
            }
            if let Some(owner) = owner
                && old.as_ref().is_none_or(|o| o.owner != Some(owner))
            {
                inner
                    .owners
                    .insert(trees::owner_key(owner, key), &[])
                    .map_err(backend)?;
            }
            Some(bytes)
        }
    };
    let deleted = new_raw.is_none();
    let swapped = inner
        .sessions
        .compare_and_swap(key, raw, new_raw)
        .map_err(backend)?;
    if swapped.is_err() {
        return Ok(false);
    }
    if deleted && let Some(old) = &old {
        tidy(inner, key, old)?;
    }
    Ok(true)
}

/// After `old` was deleted: drops its index entries, unless a writer has already created a new
/// record for the id (its entries may be the same keys; they then stay, as stale hints at worst).
fn tidy(inner: &Inner, key: &[u8], old: &Head<'_>) -> Result<()> {
    (&inner.sessions, &inner.expiry, &inner.owners)
        .transaction(|(s, e, o)| {
            if s.get(key)?.is_none() {
                unlink(e, o, key, old)?;
            }
            Ok(())
        })
        .map_err(tx_error)
}

/// Removes the session because it has no keys left, but keeps a pending binding: a write that
/// leaves no keys never undoes an `index_add` made before the first write.
pub(crate) fn delete_unless_pending(live: Option<&Record>) -> Next {
    match live {
        Some(rec) if rec.data.is_empty() => Next::Keep,
        _ => Next::Delete,
    }
}

/// Deletes the record of `id` and whatever index entries it can find, tolerating a corrupt
/// record (so a corrupt session can always be removed). Returns whether it deleted a session
/// (a record with keys, or an unreadable one), not a pending binding or nothing.
pub(crate) fn delete_session(
    s: &TransactionalTree,
    e: &TransactionalTree,
    o: &TransactionalTree,
    id: &[u8],
) -> ConflictableTransactionResult<bool, Error> {
    let Some(raw) = s.remove(id)? else {
        return Ok(false);
    };
    if let Ok(old) = Record::decode(&raw, NAME) {
        let head = Head {
            deadline_ms: old.deadline_ms,
            owner: old.owner.as_deref(),
        };
        unlink(e, o, id, &head)?;
        return Ok(!old.data.is_empty());
    } else if let Ok(deadline) = record::deadline(&raw, NAME) {
        e.remove(trees::expiry_key(deadline, id))?;
    }
    // Entries left behind by an unreadable record are pruned later: purge drops expiry entries
    // without a record, index_sessions drops owner entries without a live session.
    Ok(true)
}

pub(crate) fn parse_id(raw: &[u8]) -> Result<SessionId> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| SessionId::parse(s).ok())
        .ok_or_else(|| Error::corrupt(NAME, "a stored session id is not a valid id"))
}
