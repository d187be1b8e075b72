//! A small, correct in-memory reference store (tests only, not a published driver), with switches
//! that break it on purpose, and a minimal variant that declares no capability.
#![allow(dead_code)]

pub mod quiet;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use session_core::{
    Capabilities, ChangeSet, Data, Loaded, LockToken, Result, ScanPage, SessionId, Storage, Value,
    async_trait, check,
};

/// Ways to break the reference store on purpose.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quirks {
    /// Every TTL is replaced by an hour: sessions never expire during a case.
    pub ignore_ttl: bool,
    /// `set_map` replaces the session instead of merging into it.
    pub set_map_replaces: bool,
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
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deadline(&self, ttl: Duration) -> Result<SystemTime> {
        let deadline = check::deadline(ttl)?;
        Ok(if self.quirks.ignore_ttl {
            SystemTime::now() + Duration::from_secs(3600)
        } else {
            deadline
        })
    }
}

fn check_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<()> {
    keys.into_iter().try_for_each(|k| check::key(k))
}

#[async_trait]
impl Storage for Reference {
    fn name(&self) -> &'static str {
        "reference"
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

    async fn new(&self, _ttl: Duration) -> Result<Option<SessionId>> {
        Ok(None)
    }

    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        check::key(key)?;
        Ok(self.state().live(id).and_then(|e| e.data.get(key).cloned()))
    }

    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        Ok(self
            .state()
            .live(id)
            .map(|e| e.data.clone())
            .unwrap_or_default())
    }

    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        Ok(self.state().live(id).map_or(0, |e| e.data.len()))
    }

    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Duration) -> Result<()> {
        check::key(key)?;
        let deadline = self.deadline(ttl)?;
        let mut state = self.state();
        let mut data = state.live(id).map(|e| e.data.clone()).unwrap_or_default();
        data.insert(key.to_string(), value);
        state.put(id, data, deadline);
        Ok(())
    }

    async fn set_map(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        check_keys(data.keys())?;
        let deadline = self.deadline(ttl)?;
        let mut state = self.state();
        if data.is_empty() {
            if let Some(e) = state.live(id) {
                e.deadline = deadline;
            }
            return Ok(());
        }
        let merged = if self.quirks.set_map_replaces {
            data
        } else {
            let mut merged = state.live(id).map(|e| e.data.clone()).unwrap_or_default();
            merged.extend(data);
            merged
        };
        state.put(id, merged, deadline);
        Ok(())
    }

    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        check::key(key)?;
        let mut state = self.state();
        let now_empty = match state.live(id) {
            Some(e) => {
                e.data.remove(key);
                e.data.is_empty()
            }
            None => false,
        };
        if now_empty {
            state.delete(id);
        }
        Ok(())
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.state().delete(id);
        Ok(())
    }

    async fn get_session(
        &self,
        id: &SessionId,
        _ttl: Duration,
        _cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        Ok(self.state().live(id).map(|e| e.data.clone()))
    }

    async fn set_session(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        check_keys(data.keys())?;
        let deadline = self.deadline(ttl)?;
        self.state().put(id, data, deadline);
        Ok(())
    }

    async fn update_ttl(&self, id: &SessionId, ttl: Duration) -> Result<()> {
        let deadline = self.deadline(ttl)?;
        if let Some(e) = self.state().live(id) {
            e.deadline = deadline;
        }
        Ok(())
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, ttl: Duration) -> Result<bool> {
        check_keys(changes.remove.iter().chain(changes.set.keys()))?;
        let deadline = self.deadline(ttl)?;
        let mut state = self.state();
        let current = state.live(id).map(|e| e.data.clone());
        if changes.only_if_exists && current.is_none() {
            return Ok(false);
        }
        let mut data = if changes.clear {
            Data::new()
        } else {
            current.unwrap_or_default()
        };
        for key in &changes.remove {
            data.remove(key);
        }
        data.extend(changes.set);
        Ok(state.put(id, data, deadline))
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        Ok(self.state().live(id).map(|e| Loaded {
            data: e.data.clone().into(),
            expires_at: Some(e.deadline),
        }))
    }

    async fn index_add(&self, owner: &str, id: &SessionId, ttl: Duration) -> Result<()> {
        check::owner(owner)?;
        check::ttl_millis(ttl)?;
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
        check::owner(owner)?;
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

    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<Option<LockToken>> {
        let lease = Duration::from_millis(check::ttl_millis(lease)?);
        let mut state = self.state();
        let now = Instant::now();
        if state.locks.get(id).is_some_and(|(_, until)| *until > now) {
            return Ok(None);
        }
        let token = LockToken::generate()?;
        state.locks.insert(id.clone(), (token.clone(), now + lease));
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

/// The reference store with no capability declared: only the eleven basic methods are its own,
/// everything else is the trait's provided fallback.
pub struct Minimal(pub Reference);

#[async_trait]
impl Storage for Minimal {
    fn name(&self) -> &'static str {
        "minimal"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    async fn new(&self, ttl: Duration) -> Result<Option<SessionId>> {
        self.0.new(ttl).await
    }
    async fn get(&self, id: &SessionId, key: &str) -> Result<Option<Value>> {
        self.0.get(id, key).await
    }
    async fn get_map(&self, id: &SessionId) -> Result<Data> {
        self.0.get_map(id).await
    }
    async fn get_size(&self, id: &SessionId) -> Result<usize> {
        self.0.get_size(id).await
    }
    async fn set(&self, id: &SessionId, key: &str, value: Value, ttl: Duration) -> Result<()> {
        self.0.set(id, key, value, ttl).await
    }
    async fn set_map(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        self.0.set_map(id, data, ttl).await
    }
    async fn remove(&self, id: &SessionId, key: &str) -> Result<()> {
        self.0.remove(id, key).await
    }
    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.0.remove_all(id).await
    }
    async fn get_session(
        &self,
        id: &SessionId,
        ttl: Duration,
        cached: Option<&Data>,
    ) -> Result<Option<Data>> {
        self.0.get_session(id, ttl, cached).await
    }
    async fn set_session(&self, id: &SessionId, data: Data, ttl: Duration) -> Result<()> {
        self.0.set_session(id, data, ttl).await
    }
    async fn update_ttl(&self, id: &SessionId, ttl: Duration) -> Result<()> {
        self.0.update_ttl(id, ttl).await
    }
}

/// A fresh correct store, as a suite constructor.
pub async fn reference() -> Arc<dyn Storage> {
    Arc::new(Reference::new())
}

/// A fresh store that declares no capability, as a suite constructor.
pub async fn minimal() -> Arc<dyn Storage> {
    Arc::new(Minimal(Reference::new()))
}

/// Formats the failures of a `run_all` report, one per line.
pub fn failures(report: &[(&'static str, std::result::Result<(), String>)]) -> Vec<String> {
    report
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
        .collect()
}
