//! The SQL of every operation, as blocking functions: reads run on a reader connection (inline
//! on the caller's thread, or on a blocking thread for the long ones), writes on the writer
//! thread, inside the transaction of a group commit (see `pool`).
//!
//! Invariants kept by every write: a session row (`{S}`) exists only while the session has at
//! least one row in `{V}`; a row whose `expires_at` is not after now is dead and is never
//! returned (it may linger until the next write to that id or [`purge`]).
//!
//! The statements are templates over the logical schema's table tokens (`{S}`, `{V}`, `{O}`,
//! `{L}`), rendered once per store by [`Sql::new`]; every call passes the rendered text to
//! `prepare_cached`, exactly as it passed the fixed text before table names were configurable.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
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
            $($(#[$doc])* $name: String,)*
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
    get = "SELECT v.value FROM {S} s JOIN {V} v ON v.id = s.id
         WHERE s.id = ?1 AND v.key = ?2 AND s.expires_at > ?3";
    load = "SELECT s.expires_at, v.key, v.value FROM {S} s JOIN {V} v ON v.id = s.id
             WHERE s.id = ?1 AND s.expires_at > ?2";
    size = "SELECT count(*) FROM {S} s JOIN {V} v ON v.id = s.id
             WHERE s.id = ?1 AND s.expires_at > ?2";
    scan = "SELECT id FROM {S} WHERE id > ?1 AND expires_at > ?2 ORDER BY id LIMIT ?3";
    owner_sessions = "SELECT o.id, s.expires_at > ?2 FROM {O} o LEFT JOIN {S} s ON s.id = o.id
             WHERE o.owner = ?1";
    owner_of = "SELECT o.owner FROM {O} o JOIN {S} s ON s.id = o.id
         WHERE o.id = ?1 AND s.expires_at > ?2";
    // ----- writes
    delete_values = "DELETE FROM {V} WHERE id = ?1";
    delete_session = "DELETE FROM {S} WHERE id = ?1";
    deadline = "SELECT expires_at FROM {S} WHERE id = ?1";
    slide = "UPDATE {S} SET expires_at = ?2 WHERE id = ?1 AND expires_at > ?3";
    delete_key = "DELETE FROM {V} WHERE id = ?1 AND key = ?2";
    set_value = "INSERT INTO {V} (id, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id, key) DO UPDATE SET value = excluded.value";
    has_keys = "SELECT EXISTS (SELECT 1 FROM {V} WHERE id = ?1)";
    set_deadline = "INSERT INTO {S} (id, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at";
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
    purge_batch = "SELECT id FROM {S} WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2";
    purge_locks = "DELETE FROM {L} WHERE expires_at <= ?1";
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

// ----- reads ---------------------------------------------------------------------------------

pub(crate) fn get(conn: &Connection, sql: &Sql, id: &str, key: &str) -> Result<Option<Value>> {
    conn.prepare_cached(&sql.get)
        .and_then(|mut st| {
            st.query_row(params![id, key, now()], |r| r.get::<_, Vec<u8>>(0))
                .optional()
        })
        .map(|v| v.map(Value::from))
        .map_err(db_error)
}

/// All values of a live session with its deadline; `None` if missing or expired. One statement,
/// so one consistent snapshot.
pub(crate) fn load(conn: &Connection, sql: &Sql, id: &str) -> Result<Option<(Data, i64)>> {
    let mut st = conn.prepare_cached(&sql.load).map_err(db_error)?;
    let mut rows = st.query(params![id, now()]).map_err(db_error)?;
    let mut data = Data::new();
    let mut deadline = None;
    while let Some(row) = rows.next().map_err(db_error)? {
        deadline = Some(row.get::<_, i64>(0).map_err(db_error)?);
        let key: String = row.get(1).map_err(db_error)?;
        let value: Vec<u8> = row.get(2).map_err(db_error)?;
        data.insert(key, Value::from(value));
    }
    Ok(deadline.map(|d| (data, d)))
}

pub(crate) fn size(conn: &Connection, sql: &Sql, id: &str) -> Result<usize> {
    let n: i64 = conn
        .prepare_cached(&sql.size)
        .and_then(|mut st| st.query_row(params![id, now()], |r| r.get(0)))
        .map_err(db_error)?;
    usize::try_from(n).map_err(|_| Error::corrupt(NAME, format!("negative key count {n}")))
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

/// Deletes every trace of session `id` (values, row, owner binding); not its lock.
fn delete_session(tx: &Connection, sql: &Sql, id: &str) -> rusqlite::Result<usize> {
    tx.prepare_cached(&sql.delete_values)?.execute([id])?;
    tx.prepare_cached(&sql.unbind_owner)?.execute([id])?;
    tx.prepare_cached(&sql.delete_session)?.execute([id])
}

/// The stored deadline of `id` (live or not), inside a transaction.
fn deadline(tx: &Connection, sql: &Sql, id: &str) -> rusqlite::Result<Option<i64>> {
    tx.prepare_cached(&sql.deadline)?
        .query_row([id], |r| r.get(0))
        .optional()
}

/// Applies `changes` and sets the deadline by `expiry`; returns whether the session exists
/// afterwards. Serves every framework write: `set`, `set_map`, `set_session`, `remove` (with
/// [`Expiry::Keep`]) and `update_ttl` (an empty change set). Runs inside the writer's
/// transaction (`tx`): it is atomic because the writer rolls back its savepoint if it fails.
/// Moves the deadline of `id` to now + `ttl` if the session is live; the rows changed (0 or 1).
fn slide(tx: &Connection, sql: &Sql, id: &str, ttl: Ttl, now: i64) -> Result<usize> {
    tx.prepare_cached(&sql.slide)
        .and_then(|mut st| {
            st.execute(params![
                id,
                now.saturating_add(millis(ttl.as_millis())),
                now
            ])
        })
        .map_err(db_error)
}

pub(crate) fn apply(
    tx: &Connection,
    sql: &Sql,
    id: &str,
    changes: ChangeSet,
    expiry: Expiry,
) -> Result<bool> {
    let now = now();
    if let (true, Some(ttl)) = (changes.is_empty(), expiry.ttl()) {
        // Only the deadline of a live session changes: one conditional UPDATE (`update_ttl`).
        return Ok(slide(tx, sql, id, ttl, now)? == 1);
    }
    if let (true, false, false, Expiry::After(ttl)) = (
        changes.only_if_exists,
        changes.set.is_empty(),
        changes.clear,
        expiry,
    ) {
        // The common write of a session layer saving a session it loaded (`only_if_exists`:
        // the session almost always exists): it sets keys and a new deadline, and clears
        // nothing. Sliding the deadline of a live session first tells whether it is live and
        // does the deadline's write in the same statement; the session then keeps a key (one
        // is set), so nothing else needs looking at: two statements instead of three. A
        // missing or expired session changes nothing here and takes the general path below
        // (which writes nothing under `only_if_exists`). Without `only_if_exists` (creating a
        // session) the general path runs directly, so a create costs no extra statement.
        if slide(tx, sql, id, ttl, now)? == 1 {
            let run = || -> rusqlite::Result<()> {
                if !changes.remove.is_empty() {
                    let mut st = tx.prepare_cached(&sql.delete_key)?;
                    for key in &changes.remove {
                        st.execute(params![id, key])?;
                    }
                }
                let mut st = tx.prepare_cached(&sql.set_value)?;
                for (key, value) in &changes.set {
                    st.execute(params![id, key, value.as_bytes()])?;
                }
                Ok(())
            };
            return run().map(|()| true).map_err(db_error);
        }
    }
    let stored = deadline(tx, sql, id).map_err(db_error)?;
    let live = stored.is_some_and(|d| d > now);
    if !live && (changes.only_if_exists || !expiry.may_create()) {
        return Ok(false); // nothing was written
    }
    let run = || -> rusqlite::Result<bool> {
        if stored.is_some() && (!live || changes.clear) {
            // An expired session starts empty, without its old keys or owner binding; a cleared
            // one keeps its owner binding.
            if live {
                tx.prepare_cached(&sql.delete_values)?.execute([id])?;
            } else {
                delete_session(tx, sql, id)?;
            }
        }
        if !changes.remove.is_empty() {
            let mut st = tx.prepare_cached(&sql.delete_key)?;
            for key in &changes.remove {
                st.execute(params![id, key])?;
            }
        }
        if !changes.set.is_empty() {
            let mut st = tx.prepare_cached(&sql.set_value)?;
            for (key, value) in &changes.set {
                st.execute(params![id, key, value.as_bytes()])?;
            }
        }
        // A key was just set, or a live session lost none (it has at least one key): only a
        // clear or a removal that set nothing needs to look.
        let has_keys = if !changes.set.is_empty() {
            true
        } else if live && (changes.clear || !changes.remove.is_empty()) {
            tx.prepare_cached(&sql.has_keys)?
                .query_row([id], |r| r.get(0))?
        } else {
            live
        };
        match (has_keys, expiry) {
            (true, Expiry::After(ttl)) => {
                tx.prepare_cached(&sql.set_deadline)?
                    .execute(params![id, now.saturating_add(millis(ttl.as_millis()))])?;
            }
            // The session is live (`Keep` creates nothing): its row and deadline stay as they are.
            (true, Expiry::Keep) => {}
            // The changes removed the last key: the session is gone, with its owner binding.
            (false, _) if live => {
                delete_session(tx, sql, id)?;
            }
            (false, _) => {}
        }
        Ok(has_keys)
    };
    run().map_err(db_error)
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

/// Deletes expired sessions (values, rows, owner bindings) in batches, using the index on
/// `sessions(expires_at)`, and expired locks; returns the exact number of sessions deleted. Runs
/// alone on the writer thread (no group commit around it), one `BEGIN IMMEDIATE` transaction per
/// batch of [`PURGE_BATCH`], so a big purge never holds the write lock for long.
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
                .query_map(params![now, PURGE_BATCH as i64], |r| r.get(0))?
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
        for i in 0..50 {
            writer
                .execute_batch(&format!(
                    "INSERT INTO sessions VALUES ('s{i}', {});
                     INSERT INTO sessions_values VALUES ('s{i}', 'k', x'01'), ('s{i}', 'j', x'02');
                     INSERT INTO sessions_owners VALUES ('s{i}', 'o{}');
                     INSERT INTO sessions_locks VALUES ('s{i}', 't', {});",
                    i * 1000,
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
            (
                "get",
                &sql.get,
                Box::new(|r| vec![s(r), text("k".into()), int(r * 999)]),
            ),
            ("load", &sql.load, Box::new(|r| vec![s(r), int(r * 999)])),
            ("size", &sql.size, Box::new(|r| vec![s(r), int(r * 999)])),
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
            ("deadline", &sql.deadline, Box::new(|r| vec![s(r)])),
            ("has_keys", &sql.has_keys, Box::new(|r| vec![s(r)])),
            (
                "purge_batch",
                &sql.purge_batch,
                Box::new(|r| vec![int(r * 10), int(r + 2)]),
            ),
            ("schema_version", &sql.schema_version, Box::new(|_| vec![])),
        ];
        // Writes that change nothing (ids and tokens no row has), so every round sees the same
        // rows; `try_lock` and `set_*` write, on ids of their own.
        let writes: Vec<(&str, &str, Args)> = vec![
            (
                "delete_values",
                &sql.delete_values,
                Box::new(|r| vec![text(format!("x{r}"))]),
            ),
            (
                "delete_session",
                &sql.delete_session,
                Box::new(|r| vec![text(format!("x{r}"))]),
            ),
            (
                "slide",
                &sql.slide,
                Box::new(|r| vec![s(r), int(99_999), int(r * 999)]),
            ),
            (
                "delete_key",
                &sql.delete_key,
                Box::new(|r| vec![text(format!("x{r}")), text(format!("k{r}"))]),
            ),
            (
                "set_value",
                &sql.set_value,
                Box::new(|r| {
                    vec![
                        text(format!("n{r}")),
                        text(format!("k{r}")),
                        Sqlite::Blob(vec![1]),
                    ]
                }),
            ),
            (
                "set_deadline",
                &sql.set_deadline,
                Box::new(|r| vec![text(format!("n{r}")), int(r * 999)]),
            ),
            (
                "bind_owner",
                &sql.bind_owner,
                Box::new(|r| vec![text(format!("n{r}")), text(format!("p{r}"))]),
            ),
            (
                "unbind_owner",
                &sql.unbind_owner,
                Box::new(|r| vec![text(format!("x{r}"))]),
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
