//! Moving sessions: `export` (JSON lines), `import`, and `migrate` from one store to another.
//!
//! # Writing a session is idempotent
//!
//! A session is written into the target with one [`Storage::apply`] that clears whatever the
//! target held under that id and sets every key of the source (reserved keys included, so the
//! metadata, the login and a session's own TTL come along), with the time the session has left
//! as its TTL: the target's deadline is the source's (plus the few milliseconds between the read
//! and the write). Then, if the session has an owner and the target keeps an owner index,
//! [`Storage::index_add`] binds it. Writing the same session twice ends with the same target, so
//! a migration or an import stopped half way (killed, `--limit`, a lost connection) and run
//! again ends complete, with no duplicates and nothing lost.
//!
//! By default what is already in the target is **overwritten** with the source's copy (a session
//! that changed in the source since the first run is brought up to date). `--skip-existing`
//! leaves a session the target already holds as it is (one `load` of the target per session
//! instead of a write: a faster resume when the source no longer changes).
//!
//! The owner of a session is the one the session layer recorded at login (`__s.user`); for a
//! session without one, the source's owner index when it has one
//! ([`Storage::index_owner`]). A session without an owner is unbound in the target
//! ([`Storage::index_remove`]), in case an earlier run bound it to an owner who has logged out
//! since.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt as _, stream};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use session_core::{ChangeSet, Data, SessionId, Storage, Value};

use crate::error::{CtlError, Result};
use crate::inspect::{self, CONCURRENCY, SCAN_PAGE, Scanner};
use crate::record::{self, Record};
use crate::time;

/// How long an owner binding written by a migration or an import lives at least: the session
/// layer's default (`Config::owner_index_ttl`, 30 days), or the session's time left if longer.
pub const OWNER_INDEX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// One line of `export` (and of `import`'s input): a JSON object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The session id.
    pub id: String,
    /// The deadline, unix milliseconds (what `import` uses).
    pub deadline_ms: u64,
    /// The deadline as RFC 3339 UTC, for people (ignored by `import`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deadline: String,
    /// The owner the session is bound to, if any.
    pub owner: Option<String>,
    /// Every stored key (reserved `__s.*` keys included) to its MessagePack bytes in standard
    /// base64: exactly what the store holds.
    pub values: BTreeMap<String, String>,
    /// With `export --decoded`: the user's values decoded to JSON, for people (ignored by
    /// `import`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoded: Option<Map<String, Json>>,
}

impl Line {
    /// The line of a session with owner `owner`.
    pub fn of(r: &Record, owner: Option<String>, decoded: bool) -> Result<Line> {
        let deadline_ms = r.deadline_ms.ok_or_else(|| no_deadline(&r.id))?;
        Ok(Line {
            id: r.id.as_str().to_owned(),
            deadline_ms,
            deadline: time::rfc3339(deadline_ms),
            owner,
            values: r
                .data
                .iter()
                .map(|(k, v)| (k.clone(), record::base64(v.as_bytes())))
                .collect(),
            decoded: decoded.then(|| r.values_json()),
        })
    }

    /// The session this line holds, checked.
    fn parse(&self) -> std::result::Result<(SessionId, Data), String> {
        let id = SessionId::parse(&self.id).map_err(|e| format!("bad id: {e}"))?;
        let mut data = Data::new();
        for (k, v) in &self.values {
            let bytes = record::from_base64(v)
                .ok_or_else(|| format!("the value of key {k:?} is not standard base64"))?;
            data.insert(k.clone(), Value::from_bytes(bytes));
        }
        if data.is_empty() {
            return Err("a session without values (a session exists only with a key)".into());
        }
        Ok((id, data))
    }
}

fn no_deadline(id: &SessionId) -> CtlError {
    CtlError::failed(
        format!(
            "the store does not report the deadline of session {}",
            id.as_str()
        ),
        "this driver cannot tell how long its sessions live; sessionctl cannot move them with \
         their lifetime",
    )
}

/// The owner of session `r` in `store`: `__s.user`, else the owner index (when there is one).
pub async fn owner_of(store: &dyn Storage, r: &Record) -> Result<Option<String>> {
    if let Some(owner) = r.owner() {
        return Ok(Some(owner));
    }
    if store.capabilities().owner_index {
        return Ok(store.index_owner(&r.id).await?);
    }
    Ok(None)
}

/// What writing one session did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// Written (and bound to its owner, when it has one and the target keeps an index).
    Written {
        /// Whether an owner binding was written.
        bound: bool,
    },
    /// Left alone: the target already holds it (`--skip-existing`).
    Existing,
    /// Not written: it expired before it could be.
    Expired,
}

/// Writes one session into `target` with the deadline `deadline_ms` (see the module
/// documentation: idempotent). With `dry_run` nothing is written: the result says what would be.
pub async fn put(
    target: &dyn Storage,
    id: &SessionId,
    data: Data,
    deadline_ms: u64,
    owner: Option<&str>,
    skip_existing: bool,
    dry_run: bool,
) -> Result<Put> {
    if skip_existing && target.load(id).await?.is_some() {
        return Ok(Put::Existing);
    }
    let left = deadline_ms.saturating_sub(time::now_ms());
    if left == 0 {
        return Ok(Put::Expired);
    }
    let bind = owner.filter(|_| target.capabilities().owner_index);
    if dry_run {
        return Ok(Put::Written {
            bound: bind.is_some(),
        });
    }
    let ttl = Duration::from_millis(left);
    let changes = ChangeSet {
        clear: true,
        set: data,
        ..ChangeSet::default()
    };
    target.apply(id, changes, ttl).await?;
    if let Some(owner) = bind {
        target
            .index_add(owner, id, ttl.max(OWNER_INDEX_TTL))
            .await?;
    } else if owner.is_none() && target.capabilities().owner_index {
        // an earlier run may have bound it to an owner who has logged out since
        target.index_remove(id).await?;
    }
    Ok(Put::Written {
        bound: bind.is_some(),
    })
}

/// `export`: writes every live session of `store` as one JSON line to `out`; returns how many.
pub async fn export(
    store: &dyn Storage,
    out: &mut dyn Write,
    decoded: bool,
    progress: &dyn Fn(u64),
) -> Result<u64> {
    inspect::require_scan(store, "export")?;
    let mut scanner = Scanner::new(store, None, SCAN_PAGE);
    let mut n = 0;
    while let Some(ids) = scanner.next_page().await? {
        let records = inspect::load_many(store, ids).await?;
        let owners: Vec<Result<Option<String>>> = stream::iter(&records)
            .map(|r| owner_of(store, r))
            .buffered(CONCURRENCY)
            .collect()
            .await;
        for (r, owner) in records.iter().zip(owners) {
            let line = Line::of(r, owner?, decoded)?;
            serde_json::to_writer(&mut *out, &line).map_err(|e| {
                CtlError::failed(format!("cannot write the export: {e}"), "check the output")
            })?;
            out.write_all(b"\n")?;
            n += 1;
        }
        progress(n);
    }
    out.flush()?;
    Ok(n)
}

/// What `import` and `migrate` did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Sessions read from the source (live when read).
    pub read: u64,
    /// Sessions written into the target (to be written, in a dry run).
    pub written: u64,
    /// Of those, bound to their owner in the target's owner index.
    pub owners_bound: u64,
    /// Sessions with an owner that the target could not bind (it keeps no owner index; the
    /// owner is still in the session's `__s.user`).
    pub owners_not_bound: u64,
    /// Sessions left alone because the target already held them (`--skip-existing`).
    pub already_there: u64,
    /// Sessions that expired between the read and the write.
    pub expired: u64,
}

impl Tally {
    fn count(&mut self, put: Put, had_owner: bool) {
        match put {
            Put::Written { bound } => {
                self.written += 1;
                if bound {
                    self.owners_bound += 1;
                } else if had_owner {
                    self.owners_not_bound += 1;
                }
            }
            Put::Existing => self.already_there += 1,
            Put::Expired => self.expired += 1,
        }
    }
}

/// `import`: writes each JSON line of `input` (as `export` writes them) into `target`. Lines
/// whose deadline has passed are counted as expired and skipped; a line that does not parse
/// stops the import with its line number (the lines before it are written: fix it and run again).
pub async fn import(
    target: &dyn Storage,
    input: &mut dyn BufRead,
    skip_existing: bool,
    dry_run: bool,
    progress: &dyn Fn(u64),
) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut batch: Vec<(SessionId, Data, u64, Option<String>)> = Vec::new();
    let mut line_no = 0u64;
    let mut text = String::new();
    loop {
        text.clear();
        let read = input.read_line(&mut text)?;
        if read > 0 {
            line_no += 1;
            if !text.trim().is_empty() {
                let bad = |why: String| {
                    CtlError::failed(
                        format!("line {line_no} of the import: {why}"),
                        "each line must be one JSON object as `sessionctl export` writes it \
                         ({\"id\", \"deadline_ms\", \"owner\", \"values\": {key: base64}}); the \
                         lines before it were imported: fix the line and run the import again",
                    )
                };
                let line: Line = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
                let (id, data) = line.parse().map_err(bad)?;
                if let Some(owner) = &line.owner {
                    session_core::check::owner(owner).map_err(|e| bad(e.to_string()))?;
                }
                batch.push((id, data, line.deadline_ms, line.owner));
                tally.read += 1;
            }
        }
        if batch.len() >= SCAN_PAGE || (read == 0 && !batch.is_empty()) {
            let puts: Vec<(Result<Put>, bool)> = stream::iter(batch.drain(..))
                .map(|(id, data, deadline, owner)| async move {
                    let had_owner = owner.is_some();
                    let put = put(
                        target,
                        &id,
                        data,
                        deadline,
                        owner.as_deref(),
                        skip_existing,
                        dry_run,
                    )
                    .await;
                    (put, had_owner)
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for (put, had_owner) in puts {
                tally.count(put?, had_owner);
            }
            progress(tally.read);
        }
        if read == 0 {
            return Ok(tally);
        }
    }
}

/// Options of [`migrate`].
#[derive(Clone, Debug)]
pub struct MigrateOptions {
    /// Read everything, write nothing; report what would be written.
    pub dry_run: bool,
    /// Leave sessions the target already holds as they are (default: overwrite them).
    pub skip_existing: bool,
    /// Stop after this many sessions (a trial run, or a migration in parts: run it again to go
    /// on; every run starts from the beginning, so use it with `--skip-existing` for parts).
    pub limit: Option<u64>,
    /// After a complete run, check that every live source session is in the target.
    pub verify: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            dry_run: false,
            skip_existing: false,
            limit: None,
            verify: true,
        }
    }
}

/// The final check of a migration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Live sessions in the source at the end.
    pub source_live: u64,
    /// Of those, how many the target holds.
    pub in_target: u64,
    /// Up to 10 ids of live source sessions missing from the target.
    pub missing: Vec<String>,
    /// Live sessions in the target (`None` when its driver cannot count).
    pub target_live: Option<u64>,
}

impl Check {
    /// Whether the counts match: every live source session is in the target.
    pub fn complete(&self) -> bool {
        self.source_live == self.in_target
    }
}

/// What `migrate` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MigrateReport {
    /// The sessions read and written.
    #[serde(flatten)]
    pub tally: Tally,
    /// Whether the whole source was read (`false` when `--limit` stopped it).
    pub whole_source: bool,
    /// Whether nothing was written (`--dry-run`).
    pub dry_run: bool,
    /// The final check, after a complete run that wrote (unless `--no-verify`).
    pub check: Option<Check>,
}

/// `migrate`: streams every live session of `source`, with its time left and its owner, into
/// `target` (see the module documentation); then checks the counts.
pub async fn migrate(
    source: &dyn Storage,
    target: &dyn Storage,
    opts: &MigrateOptions,
    progress: &dyn Fn(u64),
) -> Result<MigrateReport> {
    inspect::require_scan(source, "migrate --from")?;
    let mut report = MigrateReport {
        dry_run: opts.dry_run,
        ..MigrateReport::default()
    };
    let mut scanner = Scanner::new(source, None, SCAN_PAGE);
    let mut stopped = false;
    while let Some(mut ids) = scanner.next_page().await? {
        if let Some(limit) = opts.limit {
            let room = limit.saturating_sub(report.tally.read);
            if (ids.len() as u64) >= room {
                ids.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                stopped = true;
            }
        }
        let puts: Vec<Result<Option<(Put, bool)>>> = stream::iter(ids)
            .map(|id| async move {
                let Some(loaded) = source.load(&id).await? else {
                    return Ok(None); // expired or removed since the scan
                };
                let r = Record::new(id, loaded);
                let deadline = r.deadline_ms.ok_or_else(|| no_deadline(&r.id))?;
                let owner = owner_of(source, &r).await?;
                let data = Arc::unwrap_or_clone(r.data);
                let put = put(
                    target,
                    &r.id,
                    data,
                    deadline,
                    owner.as_deref(),
                    opts.skip_existing,
                    opts.dry_run,
                )
                .await?;
                Ok(Some((put, owner.is_some())))
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for p in puts {
            if let Some((put, had_owner)) = p? {
                report.tally.read += 1;
                report.tally.count(put, had_owner);
            }
        }
        progress(report.tally.read);
        if stopped {
            break;
        }
    }
    report.whole_source = !stopped;
    if report.whole_source && !opts.dry_run && opts.verify {
        report.check = Some(check(source, target).await?);
    }
    Ok(report)
}

/// The final check: every session live in the source now is in the target.
pub async fn check(source: &dyn Storage, target: &dyn Storage) -> Result<Check> {
    let mut c = Check::default();
    let mut scanner = Scanner::new(source, None, SCAN_PAGE);
    while let Some(ids) = scanner.next_page().await? {
        let found: Vec<Result<Option<(SessionId, bool)>>> = stream::iter(ids)
            .map(|id| async move {
                if target.load(&id).await?.is_some() {
                    return Ok(Some((id, true)));
                }
                // missing: count it only if the source still holds it (not expired meanwhile)
                let live = source.load(&id).await?.is_some();
                Ok(live.then_some((id, false)))
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for f in found {
            if let Some((id, present)) = f? {
                c.source_live += 1;
                if present {
                    c.in_target += 1;
                } else if c.missing.len() < 10 {
                    c.missing.push(id.as_str().to_owned());
                }
            }
        }
    }
    if target.capabilities().scan {
        c.target_live = Some(inspect::count(target).await?);
    }
    Ok(c)
}
