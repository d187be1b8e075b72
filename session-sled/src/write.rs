//! The write path: one `compare_and_swap` of a session record, with the index entries it needs
//! inserted first ([`modify`]), and the deletes that tidy the indexes in a transaction.

use session_core::driver::record::{self, Record};
use session_core::driver::{Error, Result, SessionId, check};
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError, Transactional,
    TransactionalTree,
};

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

/// Removes the index entries of `old` that `new` does not keep (inside a transaction).
fn unlink(
    e: &TransactionalTree,
    o: &TransactionalTree,
    id: &[u8],
    old: &Record,
    new: Option<&Record>,
) -> ConflictableTransactionResult<(), Error> {
    if new.is_none_or(|n| n.deadline_ms != old.deadline_ms) {
        e.remove(trees::expiry_key(old.deadline_ms, id))?;
    }
    if let Some(owner) = &old.owner
        && new.is_none_or(|n| n.owner.as_ref() != Some(owner))
    {
        o.remove(trees::owner_key(owner, id))?;
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
        let now = check::now_millis();
        let live = old.as_ref().filter(|r| !r.expired(now)).cloned();
        let (next, out) = f(live)?;
        let new_raw = match &next {
            Next::Keep => return Ok(out),
            Next::Delete if old.is_none() => return Ok(out),
            Next::Delete => None,
            Next::Write(new) => {
                if old.as_ref().is_none_or(|o| new.deadline_ms < o.deadline_ms) {
                    inner
                        .expiry
                        .insert(trees::expiry_key(new.deadline_ms, key), &[])
                        .map_err(backend)?;
                }
                if let Some(owner) = &new.owner
                    && old.as_ref().is_none_or(|o| o.owner.as_ref() != Some(owner))
                {
                    inner
                        .owners
                        .insert(trees::owner_key(owner, key), &[])
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
        unlink(e, o, id, &old, None)?;
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
