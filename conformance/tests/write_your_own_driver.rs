//! The driver of the guide `docs/writing-a-driver.md`: complete, over a plain map and a lock,
//! and it passes the whole conformance suite (the `suite!` line at the end).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use session_core::driver::{
    Capabilities, ChangeSet, Data, Driver, Error, Expiry, Loaded, Result, ScanPage, SessionId,
    async_trait,
};

/// One session: its values and its absolute deadline.
struct Entry {
    data: Arc<Data>,
    deadline: SystemTime,
}

/// Sessions in an ordered map behind one lock. The order makes `scan` pages easy: the cursor is
/// the last id of the previous page.
#[derive(Default)]
pub struct MapStore {
    sessions: Mutex<BTreeMap<SessionId, Entry>>,
}

impl MapStore {
    /// The map; a lock poisoned by a panic elsewhere is still a usable map.
    fn map(&self) -> MutexGuard<'_, BTreeMap<SessionId, Entry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Driver for MapStore {
    fn name(&self) -> &'static str {
        "map"
    }

    fn capabilities(&self) -> Capabilities {
        // Declared: what this driver implements below. The owner index and the lock are not,
        // so their methods answer `Error::Unsupported` (the trait's defaults).
        Capabilities {
            load_with_deadline: true,
            purge: true,
            scan: true,
            ..Capabilities::default()
        }
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Loaded>> {
        let now = SystemTime::now();
        Ok(self
            .map()
            .get(id)
            .filter(|e| e.deadline > now)
            .map(|e| Loaded {
                data: Arc::clone(&e.data).into(), // shared, not copied
                expires_at: Some(e.deadline),
            }))
    }

    async fn apply(&self, id: &SessionId, changes: ChangeSet, expiry: Expiry) -> Result<bool> {
        let mut map = self.map(); // held for the whole change: `apply` is atomic
        let now = SystemTime::now();
        let live = map
            .get(id)
            .filter(|e| e.deadline > now)
            .map(|e| ((*e.data).clone(), e.deadline));
        // `start` says where the change begins: the live data (empty after `clear`), an empty
        // new session, or nothing at all (`only_if_exists` or `Expiry::Keep` on a missing one).
        let Some((mut data, deadline)) = changes.start(live, expiry) else {
            map.remove(id); // drop an expired leftover, if any
            return Ok(false);
        };
        changes.apply_to(&mut data); // `remove`, then `set`
        if data.is_empty() {
            map.remove(id); // a session without keys does not exist
            return Ok(false);
        }
        let entry = Entry {
            data: Arc::new(data),
            deadline: expiry.deadline(now, deadline), // now + ttl, or kept
        };
        map.insert(id.clone(), entry);
        Ok(true)
    }

    async fn remove_all(&self, id: &SessionId) -> Result<()> {
        self.map().remove(id);
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64> {
        let now = SystemTime::now();
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, e| e.deadline > now);
        Ok((before - map.len()) as u64)
    }

    async fn scan(&self, cursor: Option<&str>, limit: usize) -> Result<ScanPage> {
        let after = match cursor {
            Some(c) => {
                Some(SessionId::parse(c).map_err(|_| Error::InvalidInput("bad cursor".into()))?)
            }
            None => None,
        };
        let now = SystemTime::now();
        let map = self.map();
        let mut ids: Vec<SessionId> = map
            .iter()
            .filter(|(id, e)| e.deadline > now && after.as_ref().is_none_or(|a| *id > a))
            .map(|(id, _)| id.clone())
            .take(limit.max(1) + 1) // one more than a page: is there a next page?
            .collect();
        let next = if ids.len() > limit.max(1) {
            ids.pop();
            ids.last().map(|id| id.as_str().to_owned())
        } else {
            None
        };
        Ok(ScanPage { ids, next })
    }
}

/// A fresh store per case: nothing to clean up. Its neighbour, which the scan cases fill to check
/// that a scan skips other data, is a second map (a driver on a shared backend gives another
/// prefix, table or directory on the same backend).
async fn new_store() -> session_conformance::Fixture {
    session_conformance::Fixture::new(Arc::new(MapStore::default()))
        .neighbour(Arc::new(MapStore::default()))
}

session_conformance::suite!(new_store);
