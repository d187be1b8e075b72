//! The SQL of every operation, as blocking functions: reads run on a reader connection (inline
//! on the caller's thread, or on a blocking thread for the long ones), writes on the writer
//! thread, inside the transaction of a group commit (see `pool`).
//!
//! A session is one row of `{S}`: its deadline (`expires_at`), the deadline's bucket (`bucket`,
//! `expires_at >> BUCKET_SHIFT`, the only indexed column a write may change) and its values as
//! one record body (`data`, session-core's record codec: `[nil, map key -> bin]`). Invariants
//! kept by every write: a row's `data` holds at least one key; a row whose `expires_at` is not
//! after now is dead and is never returned (it may linger until the next write to that id or
//! [`purge`]).
//!
//! The statements are templates over the logical schema's table tokens (`{S}`, `{O}`, `{L}`),
//! rendered once per store by [`Sql::new`]; every call passes the rendered text to
//! `prepare_cached`.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use session_core::driver::record::Record;
use session_core::driver::{
    ChangeSet, Data, Error, Expiry, LockToken, Result, SessionId, Ttl, Value, check,
};
use session_sql::Tables;

use crate::NAME;
use crate::error::db_error;
use crate::schema;

/// Declares [`Sql`]: one rendered statement per field, from the template beside it.
macro_rules! statements {
    ($($(#[$doc:meta])* $name:ident = $template:expr;)*) => {
        /// The statements of one store, rendered for its table names once, when it opens.
        #[derive(Debug)]
        pub(crate) struct Sql {
            $($(#[$doc])* pub(crate) $name: String,)*
            /// Reads the stored schema version (one row, one integer).
            pub(crate) schema_version: String,
        }

        impl Sql {
            /// Renders every template for `tables`.
            pub(crate) fn new(tables: &Tables) -> Sql {
                Sql {
                    $($name: tables.render($template),)*
                    schema_version: schema::read_version(tables),
                }
            }
        }
    };
}

statements! {
    // ----- reads
    /// A live session's deadline and record body (`load`, `get`, `get_size`).
    load = "SELECT expires_at, data FROM {S} WHERE id = ?1 AND expires_at > ?2";
    scan = "SELECT id FROM {S} WHERE id > ?1 AND expires_at > ?2 ORDER BY id LIMIT ?3";
    owner_sessions = "SELECT o.id, s.expires_at > ?2 FROM {O} o LEFT JOIN {S} s ON s.id = o.id
             WHERE o.owner = ?1";
    owner_of = "SELECT o.owner FROM {O} o JOIN {S} s ON s.id = o.id
         WHERE o.id = ?1 AND s.expires_at > ?2";
    // ----- writes
    /// The stored row (live or not), read by the writer before it changes it.
    row = "SELECT expires_at, bucket, data FROM {S} WHERE id = ?1";
    insert_row = "INSERT INTO {S} (id, expires_at, bucket, data) VALUES (?1, ?2, ?3, ?4)";
    /// A write that keeps the bucket: the `{t}_bucket` index is not touched.
    update_row = "UPDATE {S} SET expires_at = ?2, data = ?3 WHERE id = ?1";
    update_row_bucket = "UPDATE {S} SET expires_at = ?2, bucket = ?3, data = ?4 WHERE id = ?1";
    slide = "UPDATE {S} SET expires_at = ?2 WHERE id = ?1";
    slide_bucket = "UPDATE {S} SET expires_at = ?2, bucket = ?3 WHERE id = ?1";
    delete_session = "DELETE FROM {S} WHERE id = ?1";
    // ----- owner index and locks
    bind_owner = "INSERT INTO {O} (id, owner) VALUES (?1, ?2)
         ON CONFLICT (id) DO UPDATE SET owner = excluded.owner";
    unbind_owner = "DELETE FROM {O} WHERE id = ?1";
    prune_owner = "DELETE FROM {O} WHERE owner = ?1 AND NOT EXISTS
             (SELECT 1 FROM {S} s WHERE s.id = {O}.id AND s.expires_at > ?2)";
    try_lock = "INSERT INTO {L} (id, token, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
             WHERE {L}.expires_at <= ?4";
    unlock = "DELETE FROM {L} WHERE id = ?1 AND token = ?2 AND expires_at > ?3";
    // ----- purge
    /// Expired sessions, found through the bucket index: every bucket up to now's, filtered
    /// by the exact deadline.
    purge_batch = "SELECT id FROM {S} WHERE bucket <= ?1 AND expires_at <= ?2
             ORDER BY bucket LIMIT ?3";
    purge_locks = "DELETE FROM {L} WHERE expires_at <= ?1";
}

/// A deadline's bucket is `expires_at >> BUCKET_SHIFT`: about 65.5 seconds. The bucket, not
/// the deadline, is indexed, so a write that moves a deadline by less than that (a session's
/// requests a few seconds apart) leaves the index alone and dirties one page, the row's.
pub(crate) const BUCKET_SHIFT: u32 = 16;

/// The bucket of a deadline in unix milliseconds.
pub(crate) fn bucket(expires_at: i64) -> i64 {
    expires_at >> BUCKET_SHIFT
}

/// How many expired sessions [`purge`] deletes per transaction, so a big purge never holds the
/// write lock for long.
const PURGE_BATCH: usize = 500;

/// Largest page a [`scan`] returns, whatever `limit` asks for.
pub(crate) const MAX_SCAN_PAGE: usize = 10_000;

fn now() -> i64 {
    millis(check::now_millis())
}

/// A u64 millisecond count as SQLite's i64 (saturating: far beyond any real deadline).
pub(crate) fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Decodes a stored record body (`data`) into the session's values.
pub(crate) fn decode(body: &[u8]) -> Result<Data> {
    Record::decode_body(0, body, NAME).map(|r| r.data)
}

/// Encodes a session's values as a record body (`data`), owner-less (owners have their table).
pub(crate) fn encode(data: Data) -> Result<Vec<u8>> {
    let record = Record::new(0, data);
    let mut out = Vec::with_capacity(64);
    record.encode_body_into(&mut out)?;
    Ok(out)
}

// ----- reads ---------------------------------------------------------------------------------

/// The deadline and the decoded values of live session `id`, from one statement (one snapshot).
fn live(conn: &Connection, sql: &Sql, id: &str) -> Result<Option<(Data, i64)>> {
    let mut st = conn.prepare_cached(&sql.load).map_err(db_error)?;
    let found = st
        .query_row(params![id, now()], |r| {
            let deadline = r.get::<_, i64>(0)?;
            Ok((decode(r.get_ref(1)?.as_blob()?), deadline))
        })
        .optional()
        .map_err(db_error)?;
    match found {
        Some((data, deadline)) => Ok(Some((data?, deadline))),
        None => Ok(None),
    }
}

pub(crate) fn get(conn: &Connection, sql: &Sql, id: &str, key: &str) -> Result<Option<Value>> {
    Ok(live(conn, sql, id)?.and_then(|(mut data, _)| data.remove(key)))
}

/// All values of a live session with its deadline; `None` if missing or expired.
pub(crate) fn load(conn: &Connection, sql: &Sql, id: &str) -> Result<Option<(Data, i64)>> {
    live(conn, sql, id)
}

pub(crate) fn size(conn: &Connection, sql: &Sql, id: &str) -> Result<usize> {
    Ok(live(conn, sql, id)?.map_or(0, |(data, _)| data.len()))
}

pub(crate) fn scan(
    conn: &Connection,
    sql: &Sql,
    after: &str,
    limit: usize,
) -> Result<Vec<SessionId>> {
    let limit = i64::try_from(limit.clamp(1, MAX_SCAN_PAGE)).unwrap_or(1);
    let mut st = conn.prepare_cached(&sql.scan).map_err(db_error)?;
    let ids = st
        .query_map(params![after, now(), limit], |r| r.get::<_, String>(0))
        .map_err(db_error)?;
    ids.map(|id| {
        let id = id.map_err(db_error)?;
        SessionId::parse(&id)
            .map_err(|e| Error::corrupt(NAME, format!("stored session id is invalid: {e}")))
    })
    .collect()
}

/// Owner bindings of `owner`: the live session ids, and whether dead entries were seen.
pub(crate) fn owner_sessions(
    conn: &Connection,
    sql: &Sql,
    owner: &str,
) -> Result<(Vec<SessionId>, bool)> {
    let mut st = conn.prepare_cached(&sql.owner_sessions).map_err(db_error)?;
    let rows = st
        .query_map(params![owner, now()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<bool>>(1)?))
        })
        .map_err(db_error)?;
    let mut live = Vec::new();
    let mut dead = false;
    for row in rows {
        let (id, alive) = row.map_err(db_error)?;
        if alive == Some(true) {
            live.push(
                SessionId::parse(&id).map_err(|e| {
                    Error::corrupt(NAME, format!("stored session id is invalid: {e}"))
                })?,
            );
        } else {
            dead = true;
        }
    }
    Ok((live, dead))
}

pub(crate) fn owner_of(conn: &Connection, sql: &Sql, id: &str) -> Result<Option<String>> {
    conn.prepare_cached(&sql.owner_of)
        .and_then(|mut st| st.query_row(params![id, now()], |r| r.get(0)).optional())
        .map_err(db_error)
}

// ----- writes --------------------------------------------------------------------------------
//
// Each runs inside a transaction the writer thread opened (`BEGIN IMMEDIATE`, one per group
// commit), in a savepoint of its own: a write that fails is rolled back alone, and nothing here
// begins or commits. `purge` is the exception: it runs alone and commits once per batch.

/// Deletes every trace of session `id` (row, owner binding); not its lock.
fn delete_session(tx: &Connection, sql: &Sql, id: &str) -> rusqlite::Result<usize> {
    tx.prepare_cached(&sql.unbind_owner)?.execute([id])?;
    tx.prepare_cached(&sql.delete_session)?.execute([id])
}

/// The stored row of `id`, live or not: its deadline, its bucket, and its values when `want`
/// says they are needed (decoded; a body that does not decode is `Err` there).
struct Stored {
    expires_at: i64,
    bucket: i64,
    data: Option<Result<Data>>,
}

fn stored(
    tx: &Connection,
    sql: &Sql,
    id: &str,
    want: impl Fn(i64) -> bool,
) -> Result<Option<Stored>> {
    tx.prepare_cached(&sql.row)
        .and_then(|mut st| {
            st.query_row([id], |r| {
                let expires_at = r.get::<_, i64>(0)?;
                let data = if want(expires_at) {
                    Some(decode(r.get_ref(2)?.as_blob()?))
                } else {
                    None
                };
                Ok(Stored {
                    expires_at,
                    bucket: r.get(1)?,
                    data,
                })
            })
            .optional()
        })
        .map_err(db_error)
}

/// Applies `changes` and sets the deadline by `expiry`; returns whether the session exists
/// afterwards. Serves every framework write: `set`, `set_map`, `set_session`, `remove` (with
/// [`Expiry::Keep`]) and `update_ttl` (an empty change set). Runs inside the writer's
/// transaction (`tx`): it is atomic because the writer rolls back its savepoint if it fails.
///
/// A read-modify-write of the row: the writer is the only connection that writes, so nothing
/// changes the row between the `SELECT` and the `UPDATE`. A row whose bucket stays the same is
/// updated without touching the bucket index.
pub(crate) fn apply(
    tx: &Connection,
    sql: &Sql,
    id: &str,
    changes: ChangeSet,
    expiry: Expiry,
) -> Result<bool> {
    let now = now();
    // The current values are needed only to merge into a live session that is not cleared.
    let merge = !changes.clear && !changes.is_empty();
    let mut row = stored(tx, sql, id, |expires_at| merge && expires_at > now)?;
    let live = row.as_ref().is_some_and(|r| r.expires_at > now);
    let current = row.as_mut().and_then(|r| r.data.take());
    if !live && (changes.only_if_exists || !expiry.may_create()) {
        return Ok(false); // nothing was written
    }
    let deadline = match (expiry, &row) {
        (Expiry::After(ttl), _) => now.saturating_add(millis(ttl.as_millis())),
        (Expiry::Keep, Some(r)) => r.expires_at, // live: `Keep` never creates
        (Expiry::Keep, None) => return Ok(false),
    };
    let bucket_of = bucket(deadline);
    let row = match row {
        Some(row) => row,
        None if changes.is_empty() => return Ok(false),
        None => {
            // A new session: its values, if the changes leave any.
            let mut data = Data::new();
            changes.apply_to(&mut data);
            if data.is_empty() {
                return Ok(false);
            }
            let body = encode(data)?;
            tx.prepare_cached(&sql.insert_row)
                .and_then(|mut st| st.execute(params![id, deadline, bucket_of, body]))
                .map_err(db_error)?;
            return Ok(true);
        }
    };
    let moved = row.bucket != bucket_of;
    if changes.is_empty() {
        // An empty change set moves the deadline of a live session and creates nothing.
        if !live || expiry == Expiry::Keep {
            return Ok(live);
        }
        let slid = if moved {
            tx.prepare_cached(&sql.slide_bucket)
                .and_then(|mut st| st.execute(params![id, deadline, bucket_of]))
        } else {
            tx.prepare_cached(&sql.slide)
                .and_then(|mut st| st.execute(params![id, deadline]))
        };
        return slid.map(|_| true).map_err(db_error);
    }
    let mut data = match current {
        Some(data) => data?,
        None => Data::new(), // expired or cleared
    };
    changes.apply_to(&mut data);
    if data.is_empty() {
        // The changes removed the last key (or cleared the session): it is gone, with its owner
        // binding; an expired row is reclaimed on the way.
        delete_session(tx, sql, id).map_err(db_error)?;
        return Ok(false);
    }
    let body = encode(data)?;
    let write = || -> rusqlite::Result<usize> {
        if !live {
            // An expired session starts empty, without its owner binding.
            tx.prepare_cached(&sql.unbind_owner)?.execute([id])?;
        }
        if moved {
            tx.prepare_cached(&sql.update_row_bucket)?
                .execute(params![id, deadline, bucket_of, body])
        } else {
            tx.prepare_cached(&sql.update_row)?
                .execute(params![id, deadline, body])
        }
    };
    write().map(|_| true).map_err(db_error)
}

pub(crate) fn remove_all(tx: &Connection, sql: &Sql, id: &str) -> Result<()> {
    delete_session(tx, sql, id).map(drop).map_err(db_error)
}

pub(crate) fn bind_owner(conn: &Connection, sql: &Sql, owner: &str, id: &str) -> Result<()> {
    conn.prepare_cached(&sql.bind_owner)
        .and_then(|mut st| st.execute(params![id, owner]))
        .map(drop)
        .map_err(db_error)
}

pub(crate) fn unbind_owner(conn: &Connection, sql: &Sql, id: &str) -> Result<()> {
    conn.prepare_cached(&sql.unbind_owner)
        .and_then(|mut st| st.execute([id]))
        .map(drop)
        .map_err(db_error)
}

/// Drops the bindings of `owner` whose session is missing or expired.
pub(crate) fn prune_owner(conn: &Connection, sql: &Sql, owner: &str) -> Result<()> {
    conn.prepare_cached(&sql.prune_owner)
        .and_then(|mut st| st.execute(params![owner, now()]))
        .map(drop)
        .map_err(db_error)
}

/// Takes the lease lock of `id` if it is free or its lease ran out: one statement.
pub(crate) fn try_lock(
    conn: &Connection,
    sql: &Sql,
    id: &str,
    lease: Ttl,
) -> Result<Option<LockToken>> {
    let token = LockToken::generate()?;
    let now = now();
    let taken = conn
        .prepare_cached(&sql.try_lock)
        .and_then(|mut st| {
            st.execute(params![
                id,
                token.as_str(),
                now.saturating_add(millis(lease.as_millis())),
                now
            ])
        })
        .map_err(db_error)?;
    Ok((taken == 1).then_some(token))
}

/// Compare-and-delete: releases the lock only if `token` holds an unexpired lease.
pub(crate) fn unlock(conn: &Connection, sql: &Sql, id: &str, token: &str) -> Result<bool> {
    conn.prepare_cached(&sql.unlock)
        .and_then(|mut st| st.execute(params![id, token, now()]))
        .map(|n| n == 1)
        .map_err(db_error)
}

/// Deletes expired sessions (rows, owner bindings) in batches, using the bucket index, and
/// expired locks; returns the exact number of sessions deleted. Runs alone on the writer thread
/// (no group commit around it), one `BEGIN IMMEDIATE` transaction per batch of
/// [`PURGE_BATCH`], so a big purge never holds the write lock for long.
pub(crate) fn purge(conn: &mut Connection, sql: &Sql) -> Result<u64> {
    let mut total = 0u64;
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_error)?;
        let now = now();
        let batch = || -> rusqlite::Result<usize> {
            let ids: Vec<String> = tx
                .prepare_cached(&sql.purge_batch)?
                .query_map(params![bucket(now), now, PURGE_BATCH as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut deleted = 0;
            for id in &ids {
                deleted += delete_session(&tx, sql, id)?;
            }
            if ids.len() < PURGE_BATCH {
                tx.prepare_cached(&sql.purge_locks)?.execute([now])?;
            }
            Ok(deleted)
        };
        let deleted = batch().map_err(db_error)?;
        tx.commit().map_err(db_error)?;
        total += deleted as u64;
        if deleted < PURGE_BATCH {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rusqlite::StatementStatus;
    use rusqlite::types::Value as Sqlite;

    use super::*;
    use crate::builder::SqliteStoreBuilder;
    use crate::pool::Role;

    /// Every statement, run through the statement cache (as the driver runs them) with other
    /// ids, keys and times on each call, is never re-prepared: before and after `ANALYZE`
    /// (SQLITE_ENABLE_STAT4), on the writer's connection and a reader's (the query planner
    /// stability guarantee that `schema::open` turns on).
    #[test]
    fn statements_are_never_re_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.db");
        let tables = schema::tables("sessions").unwrap();
        let options = SqliteStoreBuilder::default();
        let writer = schema::open(&path, Role::Writer, &options, &tables).unwrap();
        let reader = schema::open(&path, Role::Reader, &options, &tables).unwrap();
        let sql = Sql::new(&tables);
        let body = encode([("k".to_string(), Value::from(vec![1]))].into()).unwrap();
        for i in 0..50 {
            writer
                .execute(
                    "INSERT INTO sessions VALUES (?1, ?2, ?3, ?4)",
                    params![format!("s{i}"), i * 1000, bucket(i * 1000), body],
                )
                .unwrap();
            writer
                .execute_batch(&format!(
                    "INSERT INTO sessions_owners VALUES ('s{i}', 'o{}');
                     INSERT INTO sessions_locks VALUES ('s{i}', 't', {});",
                    i % 5,
                    i * 1000
                ))
                .unwrap();
        }
        fn text(x: String) -> Sqlite {
            Sqlite::Text(x)
        }
        fn int(x: i64) -> Sqlite {
            Sqlite::Integer(x)
        }
        fn s(r: i64) -> Sqlite {
            text(format!("s{}", r * 7 % 50))
        }
        type Args = Box<dyn Fn(i64) -> Vec<Sqlite>>;
        let reads: Vec<(&str, &str, Args)> = vec![
            ("load", &sql.load, Box::new(|r| vec![s(r), int(r * 999)])),
            (
                "scan",
                &sql.scan,
                Box::new(|r| vec![s(r), int(r * 999), int(r + 2)]),
            ),
            (
                "owner_sessions",
                &sql.owner_sessions,
                Box::new(|r| vec![text(format!("o{}", r % 5)), int(r * 999)]),
            ),
            (
                "owner_of",
                &sql.owner_of,
                Box::new(|r| vec![s(r), int(r * 999)]),
            ),
            ("row", &sql.row, Box::new(|r| vec![s(r)])),
            (
                "purge_batch",
                &sql.purge_batch,
                Box::new(|r| vec![int(r), int(r * 10), int(r + 2)]),
            ),
            ("schema_version", &sql.schema_version, Box::new(|_| vec![])),
        ];
        // Writes that change nothing (ids and tokens no row has), so every round sees the same
        // rows; `try_lock` and `insert_row` write, on ids of their own.
        let none = |r: i64| text(format!("x{r}"));
        let writes: Vec<(&str, &str, Args)> = vec![
            (
                "insert_row",
                &sql.insert_row,
                Box::new(|r| {
                    vec![
                        text(format!("n{r}")),
                        int(r * 999),
                        int(r),
                        Sqlite::Blob(vec![0x92, 0xc0, 0x80]),
                    ]
                }),
            ),
            (
                "update_row",
                &sql.update_row,
                Box::new(move |r| vec![none(r), int(r), Sqlite::Blob(vec![1])]),
            ),
            (
                "update_row_bucket",
                &sql.update_row_bucket,
                Box::new(move |r| vec![none(r), int(r), int(r), Sqlite::Blob(vec![1])]),
            ),
            (
                "slide",
                &sql.slide,
                Box::new(move |r| vec![none(r), int(99_999)]),
            ),
            (
                "slide_bucket",
                &sql.slide_bucket,
                Box::new(move |r| vec![none(r), int(99_999), int(1)]),
            ),
            (
                "delete_session",
                &sql.delete_session,
                Box::new(move |r| vec![none(r)]),
            ),
            (
                "bind_owner",
                &sql.bind_owner,
                Box::new(|r| vec![text(format!("n{r}")), text(format!("p{r}"))]),
            ),
            (
                "unbind_owner",
                &sql.unbind_owner,
                Box::new(move |r| vec![none(r)]),
            ),
            (
                "prune_owner",
                &sql.prune_owner,
                Box::new(|r| vec![text(format!("q{r}")), int(r * 999)]),
            ),
            (
                "try_lock",
                &sql.try_lock,
                Box::new(|r| vec![s(r), text(format!("t{r}")), int(r * 999 + 5), int(r * 999)]),
            ),
            (
                "unlock",
                &sql.unlock,
                Box::new(|r| vec![s(r), text(format!("u{r}")), int(r * 999)]),
            ),
            ("purge_locks", &sql.purge_locks, Box::new(|r| vec![int(-r)])),
        ];
        let run = |conn: &Connection, name: &str, text: &str, args: &Args, analyzed: bool| {
            let reprepared = || {
                let st = conn.prepare_cached(text).unwrap();
                st.get_status(StatementStatus::RePrepare)
            };
            // The first run may re-prepare once, if this connection has not yet seen the
            // statistics `ANALYZE` added (a schema change); after that, never. (Without the
            // guarantee, `load` and `scan` were re-prepared on every call.)
            let mut first = None;
            for round in 1..=4 {
                let mut st = conn.prepare_cached(text).unwrap();
                let args = args(round + i64::from(analyzed) * 10);
                let mut rows = st.query(rusqlite::params_from_iter(args)).unwrap();
                while rows.next().unwrap().is_some() {}
                drop(rows);
                drop(st);
                first.get_or_insert_with(reprepared);
            }
            let first = first.unwrap();
            assert!(
                first <= i32::from(analyzed),
                "{name}: re-prepared {first} times"
            );
            assert_eq!(
                reprepared(),
                first,
                "{name} was re-prepared (statistics: {analyzed})"
            );
        };
        for analyzed in [false, true] {
            if analyzed {
                writer.execute_batch("ANALYZE").unwrap();
                writer.flush_prepared_statement_cache();
                reader.flush_prepared_statement_cache();
            }
            for (name, text, args) in &reads {
                run(&reader, name, text, args, analyzed);
                run(&writer, name, text, args, analyzed);
            }
            for (name, text, args) in &writes {
                run(&writer, name, text, args, analyzed);
            }
        }
    }
}
