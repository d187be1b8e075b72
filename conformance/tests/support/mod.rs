//! A small, correct in-memory reference store (tests only, not a published driver), with switches
//! that break it on purpose, and a minimal variant that declares no capability.
#![allow(dead_code)]

pub mod quiet;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use session_conformance::Fixture;
use std::time::{Duration, Instant, SystemTime};

use session_core::driver::{
    Capabilities, ChangeSet, Data, Driver, Expiry, Loaded, LockToken, Result, ScanPage, SessionId,
    Ttl, async_trait,
};

/// Ways to break the reference store on purpose.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quirks {
    /// Every TTL is replaced by an hour: sessions never expire during a case.
    pub ignore_ttl: bool,
    /// `set_map` replaces the session instead of merging into it.
    pub set_map_replaces: bool,
    /// The store's first write answers this long after it took effect (its deadline already
    /// set), as a write slowed down by a loaded machine does. Not a broken store: a slow one.
    pub first_write_answers_late: Option<Duration>,
}

struct Entry {
    data: Data,
    deadline: SystemTime,
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionId, Entry>,
    owner_of: HashMap<SessionId, String>,
    owners: HashMap<String, HashSet<SessionId>>,
    locks: HashMap<SessionId, (LockToken, Instant)>,
}

impl State {
    /// The live entry of `id`; an expired one is deleted (with its binding) on the way.
    fn live(&mut self, id: &SessionId) -> Option<&mut Entry> {
        let expired = self
            .sessions
            .get(id)
            .is_some_and(|e| e.deadline <= SystemTime::now());
        if expired {
            self.delete(id);
        }
        self.sessions.get_mut(id)
    }

    fn delete(&mut self, id: &SessionId) -> bool {
        self.unbind(id);
        self.sessions.remove(id).is_some()
    }

    fn unbind(&mut self, id: &SessionId) {
        if let Some(owner) = self.owner_of.remove(id)
            && let Some(set) = self.owners.get_mut(&owner)
        {
            set.remove(id);
            if set.is_empty() {
                self.owners.remove(&owner);
            }
        }
    }

    /// Stores `data` (removing the session when it is empty).
    fn put(&mut self, id: &SessionId, data: Data, deadline: SystemTime) -> bool {
        if data.is_empty() {
            self.delete(id);
            false
        } else {
            self.sessions.insert(id.clone(), Entry { data, deadline });
            true
        }
    }
}

/// The reference store: one mutex over a few hash maps, deadlines to the millisecond.
pub struct Reference {
    state: Mutex<State>,
    quirks: Quirks,
    /// Whether a write has answered late already ([`Quirks::first_write_answers_late`]).
    answered_late: AtomicBool,
}

impl Reference {
    /// A correct store.
    pub fn new() -> Self {
        Self::with_quirks(Quirks::default())
    }

    /// A store broken as `quirks` says.
    pub fn with_quirks(quirks: Quirks) -> Self {
        Reference {
            state: Mutex::new(State::default()),
            quirks,
            answered_late: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The deadline a write with `expiry` gives a session whose deadline is `current`.
    fn deadline(&self, expiry: Expiry, current: SystemTime) -> SystemTime {
        let now = SystemTime::now();
        match expiry {
            Expiry::After(_) if self.quirks.ignore_ttl => now + Duration::from_secs(3600),
            expiry => expiry.deadline(now, current),
        }
    }

    /// The write of [`Driver::apply`], done at once: whether the session exists after it.
    fn apply_now(&self, id: &SessionId, changes: &ChangeSet, expiry: Expiry) -> bool {
        let mut state = self.state();
        let live = state.live(id).map(|e| (e.data.clone(), e.deadline));
        let Some((mut data, current)) = changes.start(live, expiry) else {
            return false;
        };
        changes.apply_to(&mut data);
        state.put(id, data, self.deadline(expiry, current))
    }
}

#[async_trait]
impl Driver for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        Ok(self.state().live(id).map(|e| Loaded {
            data: e.data.clone().into(),
            expires_at: Some(e.deadline),
        }))
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        let exists = self.apply_now(id, &changes, expiry);
        if let Some(late) = self.quirks.first_write_answers_late
            && !self.answered_late.swap(true, Ordering::SeqCst)
        {
            tokio::time::sleep(late).await;
        }
        Ok(exists)
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.state().delete(id);
        Ok(())
    }

    async fn set_map(&self, id: &SessionId, data: Data, ttl: Ttl) -> Result<()> {
        // The quirk: replace instead of merging.
        let changes = ChangeSet {
            clear: self.quirks.set_map_replaces && !data.is_empty(),
            set: data,
            ..ChangeSet::default()
        };
        self.apply(id, changes, Expiry::After(ttl)).await.map(drop)
    }

    async fn index_add(&self, owner: &str, id: &SessionId, _ttl: Ttl) -> Result<()> {
        let mut state = self.state();
        state.unbind(id);
        state.owner_of.insert(id.clone(), owner.to_string());
        state
            .owners
            .entry(owner.to_string())
            .or_default()
            .insert(id.clone());
        Ok(())
    }

    async fn index_remove(&self, id: &SessionId) -> Result<()> {
        self.state().unbind(id);
        Ok(())
    }

    async fn index_sessions(&self, owner: &str) -> Result<Vec<SessionId>> {
        let mut state = self.state();
        let bound: Vec<SessionId> = state
            .owners
            .get(owner)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let mut live = Vec::with_capacity(bound.len());
        for id in bound {
            if state.live(&id).is_some() {
                live.push(id);
            } else {
                state.unbind(&id);
            }
        }
        Ok(live)
    }

    async fn index_owner(&self, id: &SessionId) -> Result<Option<String>> {
        let mut state = self.state();
        if state.live(id).is_none() {
            state.unbind(id);
            return Ok(None);
        }
        Ok(state.owner_of.get(id).cloned())
    }

    async fn try_lock(&self, id: &SessionId, lease: Ttl) -> Result<Option<LockToken>> {
        let mut state = self.state();
        let now = Instant::now();
        if state.locks.get(id).is_some_and(|(_, until)| *until > now) {
            return Ok(None);
        }
        let token = LockToken::generate()?;
        state
            .locks
            .insert(id.clone(), (token.clone(), now + lease.as_duration()));
        Ok(Some(token))
    }

    async fn unlock(&self, id: &SessionId, token: &LockToken) -> Result<bool> {
        let mut state = self.state();
        let held = state
            .locks
            .get(id)
            .is_some_and(|(t, until)| t == token && *until > Instant::now());
        if held {
            state.locks.remove(id);
        }
        Ok(held)
    }

    async fn purge_expired(&self) -> Result<u64> {
        let mut state = self.state();
        let now = SystemTime::now();
        let dead: Vec<SessionId> = state
            .sessions
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &dead {
            state.delete(id);
        }
        Ok(dead.len() as u64)
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let now = SystemTime::now();
        let state = self.state();
        let mut ids: Vec<&SessionId> = state
            .sessions
            .iter()
            .filter(|(id, e)| e.deadline > now && cursor.is_none_or(|c| id.as_str() > c))
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        let limit = limit.max(1);
        let next = (ids.len() > limit).then(|| ids[limit - 1].as_str().to_string());
        Ok(ScanPage {
            ids: ids.into_iter().take(limit).cloned().collect(),
            next,
        })
    }
}

/// The reference store with no capability declared and only the required core of its own:
/// everything else is the trait's provided default.
pub struct Minimal(pub Reference);

#[async_trait]
impl Driver for Minimal {
    fn name(&self) -> &'static str {
        "minimal"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        self.0.load(id).await
    }
    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        self.0.apply(id, changes, expiry).await
    }
    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.0.remove_all(id).await
    }
}

/// A fresh correct store, with a fresh one as its neighbour, as a suite constructor.
pub async fn reference() -> Fixture {
    beside_a_neighbour(Arc::new(Reference::new()))
}

/// A fixture of `store` with a fresh reference store as its neighbour (which the scan cases fill).
pub fn beside_a_neighbour(store: Arc<dyn session_core::Storage>) -> Fixture {
    Fixture::new(store).neighbour(Arc::new(Reference::new()))
}

/// A fresh store that declares no capability, as a suite constructor.
pub async fn minimal() -> Arc<dyn session_core::Storage> {
    Arc::new(Minimal(Reference::new()))
}

/// Formats the failures of a `run_all` report, one per line.
pub fn failures(report: &[(&'static str, std::result::Result<(), String>)]) -> Vec<String> {
    report
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect()
}
