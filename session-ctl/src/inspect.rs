//! The reading commands: `count`, `stats`, `list`, `get`, `user`.
//!
//! Every read goes through [`Storage::scan`], [`Storage::index_sessions`] and
//! [`Storage::load`]: none of them changes a session's expiry (the session layer's touch is never
//! used).

use std::collections::HashSet;

use futures_util::{StreamExt as _, stream};
use serde::Serialize;
use session_core::{SessionId, Storage};

use crate::error::{CtlError, Result};
use crate::record::Record;
use crate::time;

/// How many `load`s run at once when a command reads many sessions.
pub const CONCURRENCY: usize = 32;

/// The page size first asked of [`Storage::scan`] (a hint: drivers may return other sizes).
pub const SCAN_PAGE: usize = 500;

/// The largest page size [`Scanner`] asks for when pages come back short.
pub const MAX_SCAN_PAGE: usize = 10_000;

/// Fails with "unsupported by this driver" unless the store can scan.
pub fn require_scan(store: &dyn Storage, command: &str) -> Result<()> {
    if store.capabilities().scan {
        return Ok(());
    }
    Err(CtlError::unsupported(
        store.name(),
        &format!("`{command}` (listing sessions)"),
        format!(
            "the {} driver cannot list its sessions; `get ID`, `destroy ID` and `purge` work on it, \
             and it can be the target of `migrate` and `import`",
            store.name()
        ),
    ))
}

/// Fails with "unsupported by this driver" unless the store has an owner index.
pub fn require_owner_index(store: &dyn Storage, command: &str) -> Result<()> {
    if store.capabilities().owner_index {
        return Ok(());
    }
    Err(CtlError::unsupported(
        store.name(),
        &format!("`{command}` (the owner index)"),
        format!(
            "the {} driver keeps no index from users to sessions; find a user's sessions \
             another way (`get ID`), or move the sessions to a store with one (`migrate`)",
            store.name()
        ),
    ))
}

/// Walks [`Storage::scan`] page by page, handing out each live id once (the contract lets a
/// driver return an id twice, for example one whose deadline moved during the walk).
///
/// When a page comes back with less than half the ids asked for and the scan goes on, the next
/// page asks for twice as many, up to [`MAX_SCAN_PAGE`], so a driver whose pages are not filled
/// by the backend (a third-party driver on a key-value store's `SCAN`, say) costs fewer round
/// trips. The drivers of this workspace fill their pages (Redis from its live index, the SQL
/// drivers with `LIMIT`, ...), and keep the size asked for.
pub struct Scanner<'a> {
    store: &'a dyn Storage,
    cursor: Option<String>,
    started: bool,
    page: usize,
    seen: HashSet<SessionId>,
}

impl<'a> Scanner<'a> {
    /// A scan of `store` from the start (`cursor` `None`) or from a cursor a previous page gave.
    pub fn new(store: &'a dyn Storage, cursor: Option<String>, page: usize) -> Self {
        Scanner {
            store,
            cursor,
            started: false,
            page: page.max(1),
            seen: HashSet::new(),
        }
    }

    /// The ids of the next page not handed out before (maybe none), or `None` at the end.
    pub async fn next_page(&mut self) -> Result<Option<Vec<SessionId>>> {
        if self.started && self.cursor.is_none() {
            return Ok(None);
        }
        self.started = true;
        let page = self
            .store
            .scan(self.cursor.as_deref(), self.page)
            .await
            .map_err(|e| match e {
                session_core::Error::InvalidInput(m) => CtlError::usage(
                    format!("bad cursor: {m}"),
                    "pass the `next` cursor a previous `list` printed, unchanged, to the same store",
                ),
                e => e.into(),
            })?;
        self.cursor = page.next;
        if self.cursor.is_some() && page.ids.len() < self.page / 2 {
            self.page = (self.page * 2).min(MAX_SCAN_PAGE);
        }
        let new = page
            .ids
            .into_iter()
            .filter(|id| self.seen.insert(id.clone()))
            .collect();
        Ok(Some(new))
    }

    /// The cursor of the next page; `None` once the scan is complete.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}

/// Loads `ids`, `CONCURRENCY` at a time, in their order; sessions that expired or were removed
/// meanwhile are left out.
pub async fn load_many(store: &dyn Storage, ids: Vec<SessionId>) -> Result<Vec<Record>> {
    let loaded: Vec<Result<Option<Record>>> = stream::iter(ids)
        .map(|id| async move { Ok(store.load(&id).await?.map(|loaded| Record::new(id, loaded))) })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::with_capacity(loaded.len());
    for r in loaded {
        if let Some(r) = r? {
            out.push(r);
        }
    }
    Ok(out)
}

/// The number of live sessions (`count`): one full scan, no load.
pub async fn count(store: &dyn Storage) -> Result<u64> {
    require_scan(store, "count")?;
    let mut scanner = Scanner::new(store, None, SCAN_PAGE);
    let mut n = 0u64;
    while let Some(ids) = scanner.next_page().await? {
        n += ids.len() as u64;
    }
    Ok(n)
}

/// The bounds of the expiry buckets of [`Stats`], in seconds left, with their labels.
pub const BUCKETS: [(u64, &str); 6] = [
    (60, "< 1m"),
    (600, "1m - 10m"),
    (3600, "10m - 1h"),
    (86_400, "1h - 1d"),
    (7 * 86_400, "1d - 7d"),
    (u64::MAX, ">= 7d"),
];

/// What `stats` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Live sessions.
    pub live: u64,
    /// Live sessions with an owner (logged in).
    pub logged_in_sessions: u64,
    /// Distinct owners of live sessions.
    pub users: u64,
    /// Approximate bytes: ids, keys and values (not the backend's overhead).
    pub bytes: u64,
    /// Live sessions by time left, in the order of [`BUCKETS`]: `(label, sessions)`.
    pub expiry: Vec<(String, u64)>,
    /// Live sessions whose driver reports no deadline.
    pub no_deadline: u64,
}

/// `stats`: one full scan and one load per session; `progress` is told each session read.
pub async fn stats(store: &dyn Storage, progress: &dyn Fn(u64)) -> Result<Stats> {
    require_scan(store, "stats")?;
    let mut s = Stats {
        expiry: BUCKETS.iter().map(|(_, l)| ((*l).to_owned(), 0)).collect(),
        ..Stats::default()
    };
    let mut users = HashSet::new();
    let mut scanner = Scanner::new(store, None, SCAN_PAGE);
    while let Some(ids) = scanner.next_page().await? {
        let now = time::now_ms();
        for r in load_many(store, ids).await? {
            s.live += 1;
            s.bytes += r.bytes() as u64;
            if let Some(owner) = r.owner() {
                s.logged_in_sessions += 1;
                users.insert(owner);
            }
            match r.left_ms(now) {
                Some(left) => {
                    let secs = left / 1000;
                    let i = BUCKETS.iter().position(|(b, _)| secs < *b).unwrap_or(0);
                    s.expiry[i].1 += 1;
                }
                None => s.no_deadline += 1,
            }
        }
        progress(s.live);
    }
    s.users = users.len() as u64;
    Ok(s)
}

/// One line of `list` and `user`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The session id.
    pub id: String,
    /// Its owner (`__s.user`), if logged in.
    pub owner: Option<String>,
    /// Created at (unix ms), if written by the session layer.
    pub created_ms: Option<u64>,
    /// Last seen at (unix ms), if written by the session layer.
    pub last_seen_ms: Option<u64>,
    /// The deadline (unix ms), if the driver reports it.
    pub deadline_ms: Option<u64>,
    /// Approximate bytes.
    pub bytes: usize,
}

impl From<&Record> for Row {
    fn from(r: &Record) -> Self {
        Row {
            id: r.id.as_str().to_owned(),
            owner: r.owner(),
            created_ms: r.created_ms(),
            last_seen_ms: r.last_seen_ms(),
            deadline_ms: r.deadline_ms,
            bytes: r.bytes(),
        }
    }
}

/// A page of `list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// The sessions of this page.
    pub sessions: Vec<Row>,
    /// The cursor of the next page (`list --cursor`); `None`: this was the last page.
    pub next: Option<String>,
}

/// What `list` lists.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// At most about this many sessions (whole scan pages are kept, so a page may hold a few
    /// more); `None`: every session.
    pub limit: Option<usize>,
    /// Where to go on: a previous page's `next`.
    pub cursor: Option<String>,
    /// Only the sessions of this owner (through the owner index).
    pub owner: Option<String>,
}

/// `list`: a page of live sessions with their owner, times and deadline.
pub async fn list(store: &dyn Storage, opts: &ListOptions) -> Result<Listing> {
    if let Some(owner) = &opts.owner {
        return list_owner(store, owner, opts).await;
    }
    require_scan(store, "list")?;
    let page = opts.limit.map_or(SCAN_PAGE, |l| l.clamp(1, SCAN_PAGE));
    let mut scanner = Scanner::new(store, opts.cursor.clone(), page);
    let mut sessions = Vec::new();
    while let Some(ids) = scanner.next_page().await? {
        sessions.extend(load_many(store, ids).await?.iter().map(Row::from));
        if opts.limit.is_some_and(|l| sessions.len() >= l) {
            break;
        }
    }
    Ok(Listing {
        sessions,
        next: scanner.cursor().map(str::to_owned),
    })
}

/// `list --owner`: the owner's sessions in id order; the cursor is the last id shown.
async fn list_owner(store: &dyn Storage, owner: &str, opts: &ListOptions) -> Result<Listing> {
    let mut rows = user(store, owner).await?;
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(after) = &opts.cursor {
        rows.retain(|r| r.id.as_str() > after.as_str());
    }
    let mut next = None;
    if let Some(limit) = opts.limit
        && rows.len() > limit
    {
        rows.truncate(limit);
        next = rows.last().map(|r| r.id.clone());
    }
    Ok(Listing {
        sessions: rows,
        next,
    })
}

/// Parses a session id given on the command line.
pub fn parse_id(text: &str) -> Result<SessionId> {
    SessionId::parse(text).map_err(|e| {
        CtlError::usage(
            format!("`{text}` is not a session id: {e}"),
            "pass the full id as `list` shows it (the cookie value, without a signature)",
        )
    })
}

/// `get ID`: the whole session; [`NOT_FOUND`](crate::error::NOT_FOUND) if it is not live.
pub async fn get(store: &dyn Storage, id: &SessionId) -> Result<Record> {
    match store.load(id).await? {
        Some(loaded) => Ok(Record::new(id.clone(), loaded)),
        None => Err(not_found(id)),
    }
}

/// The error of an id with no live session.
pub fn not_found(id: &SessionId) -> CtlError {
    CtlError::not_found(
        format!("no live session {id}", id = id.as_str()),
        "check the id (`list` shows the live ones); an expired or destroyed session is gone",
    )
}

/// `user NAME`: the live sessions the owner index binds to `owner`, oldest first.
pub async fn user(store: &dyn Storage, owner: &str) -> Result<Vec<Row>> {
    require_owner_index(store, "user")?;
    let ids = store.index_sessions(owner).await?;
    let mut rows: Vec<Row> = load_many(store, ids).await?.iter().map(Row::from).collect();
    rows.sort_by_key(|r| (r.created_ms, r.id.clone()));
    Ok(rows)
}
