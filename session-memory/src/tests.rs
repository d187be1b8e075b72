//! Tests of what is specific to the moka driver; the shared contract is checked by the
//! conformance suite in `tests/conformance.rs`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use session_core::{ChangeSet, Data, Error, SessionId, Storage, Value, check};

use crate::MemoryStore;
use crate::record::Binding;
use crate::store::{INDEX_CHECK_EVERY, SWEEP_FLOOR};

const LONG: Duration = Duration::from_secs(600);

fn id() -> SessionId {
    SessionId::generate().expect("os rng")
}

fn v(n: u32) -> Value {
    Value::encode(&n).expect("encode u32")
}

/// A store whose moka keeps entries 10 minutes past their deadline, so that a test sees what
/// the driver does with an expired record moka has not evicted yet.
fn lazy_eviction_store() -> MemoryStore {
    let mut builder = MemoryStore::builder();
    builder.eviction_slack = Duration::from_secs(600);
    builder.build()
}

#[tokio::test]
async fn capacity_bound_evicts_least_recently_used() {
    let store = MemoryStore::builder().max_sessions(10).build();
    let ids: Vec<SessionId> = (0..50).map(|_| id()).collect();
    for (n, id) in ids.iter().enumerate() {
        store.set(id, "n", v(n as u32), LONG).await.expect("set");
        store.sessions.run_pending_tasks();
    }
    store.sessions.run_pending_tasks();
    assert!(
        store.sessions.entry_count() <= 10,
        "{} entries cached, bound is 10",
        store.sessions.entry_count()
    );
    let mut live = 0;
    for id in &ids {
        if store.get_size(id).await.expect("get_size") > 0 {
            live += 1;
        }
    }
    assert!((1..=10).contains(&live), "{live} sessions readable");
    // LRU: the newest session is kept, the oldest is the first to go.
    let newest = ids.last().expect("50 ids");
    assert_eq!(store.get(newest, "n").await.expect("get"), Some(v(49)));
    assert_eq!(store.get_size(&ids[0]).await.expect("get_size"), 0);
}

#[tokio::test]
async fn bindings_of_evicted_sessions_go_at_the_next_lookup() {
    let store = MemoryStore::builder().max_sessions(4).build();
    for _ in 0..20 {
        let id = id();
        store.set(&id, "k", v(1), LONG).await.expect("set");
        store.index_add("ada", &id, LONG).await.expect("index_add");
        store.sessions.run_pending_tasks();
    }
    store.sessions.run_pending_tasks();
    let listed = store.index_sessions("ada").await.expect("index_sessions");
    assert!(
        !listed.is_empty() && listed.len() <= 4,
        "{} listed",
        listed.len()
    );
    // The lookup dropped the bindings of the evicted sessions.
    assert!(
        store.owners.len() <= 4,
        "{} index entries",
        store.owners.len()
    );
}

#[tokio::test]
async fn the_owner_index_stays_bounded_without_lookups_of_the_same_owner() {
    // Every session has its own owner, so no lookup ever revisits a stale binding: only the
    // sweep keeps the index at about twice the number of records.
    let store = MemoryStore::builder().max_sessions(8).build();
    for n in 0..(SWEEP_FLOOR * 3) {
        let id = id();
        store.set(&id, "k", v(1), LONG).await.expect("set");
        store
            .index_add(&format!("owner-{n}"), &id, LONG)
            .await
            .expect("index_add");
        if n % 64 == 0 {
            store.sessions.run_pending_tasks();
        }
        assert!(
            store.owners.len() <= SWEEP_FLOOR + 1,
            "{} index entries after {n} bindings",
            store.owners.len()
        );
    }
    store.purge_expired().await.expect("purge");
    assert!(store.owners.len() <= 8, "{} entries", store.owners.len());
}

#[tokio::test]
async fn expired_session_is_missing_before_moka_evicts_it() {
    let store = lazy_eviction_store();
    let id = id();
    let mut data = Data::new();
    data.insert("a".into(), v(1));
    data.insert("b".into(), v(2));
    store
        .set_map(&id, data, Duration::from_millis(200))
        .await
        .expect("set_map");
    store.index_add("ada", &id, LONG).await.expect("index_add");
    let lease = store
        .try_lock(&id, Duration::from_millis(200))
        .await
        .expect("try_lock");
    assert!(lease.is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.sessions.run_pending_tasks();

    // moka still holds the record: the driver's own deadline check is what hides it.
    assert!(store.sessions.get(&id).is_some(), "moka evicted early");
    assert_eq!(store.get(&id, "a").await.expect("get"), None);
    assert!(store.get_map(&id).await.expect("get_map").is_empty());
    assert_eq!(store.get_size(&id).await.expect("get_size"), 0);
    let session = store
        .get_session(&id, LONG, None)
        .await
        .expect("get_session");
    assert_eq!(session, None);
    assert_eq!(store.load(&id).await.expect("load"), None);
    assert_eq!(store.index_owner(&id).await.expect("index_owner"), None);
    assert!(store.index_sessions("ada").await.expect("index").is_empty());
    let page = store.scan(None, 100).await.expect("scan");
    assert!(page.ids.is_empty());
    // The expired lease frees the lock even though moka still holds it.
    assert!(
        store.locks.get(&id).is_some(),
        "moka evicted the lease early"
    );
    assert!(store.try_lock(&id, LONG).await.expect("try_lock").is_some());

    // update_ttl does not bring it back; a write starts from empty, without the old owner.
    store.update_ttl(&id, LONG).await.expect("update_ttl");
    assert_eq!(store.get_size(&id).await.expect("get_size"), 0);
    store.set(&id, "c", v(3), LONG).await.expect("set");
    let map = store.get_map(&id).await.expect("get_map");
    assert_eq!(map.keys().collect::<Vec<_>>(), ["c"]);
    assert_eq!(store.index_owner(&id).await.expect("index_owner"), None);
}

#[tokio::test]
async fn purge_removes_expired_records_moka_still_holds() {
    let store = lazy_eviction_store();
    let (dead, alive) = (id(), id());
    store
        .set(&dead, "k", v(1), Duration::from_millis(200))
        .await
        .expect("set");
    store.set(&alive, "k", v(1), LONG).await.expect("set");
    store
        .index_add("ada", &dead, LONG)
        .await
        .expect("index_add");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(store.purge_expired().await.expect("purge"), 1);
    assert!(store.sessions.get(&dead).is_none());
    assert_eq!(store.owners.len(), 0, "purge left the dead binding");
    assert_eq!(store.get_size(&alive).await.expect("get_size"), 1);
    assert_eq!(store.purge_expired().await.expect("purge"), 0);
}

#[tokio::test]
async fn owner_index_prunes_removed_expired_and_moved_sessions() {
    let store = lazy_eviction_store();
    let ids: Vec<SessionId> = (0..4).map(|_| id()).collect();
    for (n, id) in ids.iter().enumerate() {
        let ttl = if n == 1 {
            Duration::from_millis(250)
        } else {
            LONG
        };
        store.set(id, "k", v(1), ttl).await.expect("set");
        store.index_add("ada", id, LONG).await.expect("index_add");
    }
    assert_eq!(store.owners.len(), 4);
    store.remove_all(&ids[0]).await.expect("remove_all");
    store.index_add("bob", &ids[2], LONG).await.expect("move");
    tokio::time::sleep(Duration::from_millis(400)).await;

    let ada: HashSet<SessionId> = store
        .index_sessions("ada")
        .await
        .expect("index_sessions")
        .into_iter()
        .collect();
    assert_eq!(ada, HashSet::from([ids[3].clone()]));
    // Removed, expired (still in moka) and moved entries are all gone from ada's set.
    assert_eq!(store.owners.of("ada").len(), 1);
    assert_eq!(store.owners.len(), 2, "ada: 1, bob: 1");
    assert_eq!(
        store
            .index_owner(&ids[2])
            .await
            .expect("index_owner")
            .as_deref(),
        Some("bob")
    );
}

#[tokio::test]
async fn owner_index_sweep_bounds_stale_entries() {
    let store = MemoryStore::new();
    // Stale entries that no removal path reported (their sessions never existed).
    for stamp in 0..2000 {
        let binding = Binding {
            owner: format!("ghost-{stamp}").into(),
            stamp,
        };
        store.owners.bind(&id(), &binding);
    }
    assert_eq!(store.owners.len(), 2000);
    let live = id();
    store.set(&live, "k", v(1), LONG).await.expect("set");
    store
        .index_add("ada", &live, LONG)
        .await
        .expect("index_add");
    assert_eq!(store.owners.len(), 1, "the sweep kept stale entries");
    assert_eq!(store.owners.owners(), 1);
    assert_eq!(store.index_sessions("ada").await.expect("index"), [live]);
}

#[tokio::test]
async fn binding_before_the_first_write_is_kept_but_not_a_session() {
    let store = MemoryStore::new();
    let id = id();
    store.index_add("ada", &id, LONG).await.expect("index_add");
    assert_eq!(store.get_size(&id).await.expect("get_size"), 0);
    assert!(store.index_sessions("ada").await.expect("index").is_empty());
    assert_eq!(store.index_owner(&id).await.expect("index_owner"), None);
    assert!(store.scan(None, 10).await.expect("scan").ids.is_empty());
    // only_if_exists sees no session.
    let mut changes = ChangeSet {
        only_if_exists: true,
        ..ChangeSet::default()
    };
    changes.set.insert("k".into(), v(1));
    assert!(!store.apply(&id, changes, LONG).await.expect("apply"));
    // Neither an empty change set nor a clear drops the pending binding.
    let clear = ChangeSet {
        clear: true,
        ..ChangeSet::default()
    };
    assert!(!store.apply(&id, clear, LONG).await.expect("apply clear"));
    assert!(
        !store
            .apply(&id, ChangeSet::default(), LONG)
            .await
            .expect("apply")
    );
    assert_eq!(store.owners.len(), 1, "the pending binding was dropped");
    // The first write takes the binding over.
    store.set(&id, "k", v(1), LONG).await.expect("set");
    assert_eq!(
        store.index_sessions("ada").await.expect("index"),
        std::slice::from_ref(&id)
    );
    assert_eq!(
        store
            .index_owner(&id)
            .await
            .expect("index_owner")
            .as_deref(),
        Some("ada")
    );
    // Removing the last key ends the session and its binding.
    store.remove(&id, "k").await.expect("remove");
    assert!(store.index_sessions("ada").await.expect("index").is_empty());
    assert_eq!(store.owners.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_keys() {
    let store = Arc::new(MemoryStore::new());
    let id = id();
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..50u32 {
                let key = format!("{t}-{n}");
                match n % 4 {
                    0 => store.set(&id, &key, v(n), LONG).await,
                    1 => {
                        let mut data = Data::new();
                        data.insert(key, v(n));
                        store.set_map(&id, data, LONG).await
                    }
                    2 => {
                        let mut changes = ChangeSet::default();
                        changes.set.insert(key, v(n));
                        store.apply(&id, changes, LONG).await.map(|_| ())
                    }
                    _ => {
                        // Write a scratch key and remove it again: must not drop others' keys.
                        store.set(&id, &key, v(n), LONG).await.expect("set");
                        store.remove(&id, &key).await.expect("remove");
                        store.update_ttl(&id, LONG).await
                    }
                }
                .expect("write");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    // Every key written by any task is there, except the scratch keys removed again.
    let kept_per_task = (0..50u32).filter(|n| n % 4 != 3).count();
    assert_eq!(
        store.get_size(&id).await.expect("get_size"),
        8 * kept_per_task
    );
}

#[tokio::test]
async fn lease_lock_is_token_checked_and_expires() {
    let store = MemoryStore::new();
    let id = id();
    let lease = Duration::from_millis(400);
    let token = store.try_lock(&id, lease).await.expect("try_lock");
    let token = token.expect("free lock");
    assert!(
        store
            .try_lock(&id, lease)
            .await
            .expect("try_lock")
            .is_none()
    );
    let other = session_core::LockToken::generate().expect("rng");
    assert!(!store.unlock(&id, &other).await.expect("unlock"));
    assert!(store.unlock(&id, &token).await.expect("unlock"));
    assert!(!store.unlock(&id, &token).await.expect("unlock twice"));
    let stale = store
        .try_lock(&id, lease)
        .await
        .expect("try_lock")
        .expect("free");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let next = store.try_lock(&id, LONG).await.expect("try_lock");
    assert!(next.is_some(), "an expired lease kept the lock");
    assert!(
        !store.unlock(&id, &stale).await.expect("unlock"),
        "stale token released"
    );
}

#[tokio::test]
async fn scan_pages_cover_every_session_once() {
    let store = MemoryStore::new();
    let mut expected = HashSet::new();
    for _ in 0..25 {
        let id = id();
        store.set(&id, "k", v(1), LONG).await.expect("set");
        expected.insert(id);
    }
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.scan(cursor.as_deref(), 10).await.expect("scan");
        assert!(page.ids.len() <= 10);
        for id in page.ids {
            assert!(seen.insert(id), "an id came twice");
        }
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);
    let bad = store.scan(Some("not a cursor!"), 10).await;
    assert!(matches!(bad, Err(Error::InvalidInput(_))));
}

#[tokio::test]
async fn load_reports_the_deadline_and_reads_do_not_move_it() {
    let store = MemoryStore::new();
    let id = id();
    let before = std::time::SystemTime::now();
    store
        .set(&id, "k", v(1), Duration::from_millis(1500))
        .await
        .expect("set");
    let after = std::time::SystemTime::now();
    let loaded = store.load(&id).await.expect("load").expect("live");
    let deadline = loaded.expires_at.expect("deadline");
    assert!(deadline >= before + Duration::from_millis(1500));
    assert!(deadline <= after + Duration::from_millis(1500));
    store.get(&id, "k").await.expect("get");
    let again = store.load(&id).await.expect("load").expect("live");
    assert_eq!(again.expires_at, Some(deadline));
}

/// The cache entry of `id` (moka's copy of the slot pointer).
fn entry(store: &MemoryStore, id: &SessionId) -> Arc<crate::record::Slot> {
    store.sessions.get(id).expect("cached")
}

#[tokio::test]
async fn writes_within_the_headroom_replace_the_record_in_its_entry() {
    let store = MemoryStore::new();
    assert_eq!(store.eviction_headroom(), Duration::from_secs(10));
    let id = id();
    store.set(&id, "a", v(1), LONG).await.expect("set");
    let first = entry(&store, &id);
    // Each write slides the deadline by the time since the last one: far below 10 s.
    store.set(&id, "b", v(2), LONG).await.expect("set");
    store.remove(&id, "a").await.expect("remove");
    store.update_ttl(&id, LONG).await.expect("update_ttl");
    let same = entry(&store, &id);
    assert!(Arc::ptr_eq(&first, &same), "a write inserted a new entry");
    let map = store.get_map(&id).await.expect("get_map");
    assert_eq!(map.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(store.get(&id, "b").await.expect("get"), Some(v(2)));

    // A deadline past the entry's eviction time takes a new entry, which moka keeps until then.
    store
        .set(&id, "c", v(3), LONG + Duration::from_secs(60))
        .await
        .expect("set");
    let moved = entry(&store, &id);
    assert!(
        !Arc::ptr_eq(&first, &moved),
        "the entry would be evicted early"
    );
    assert_eq!(store.get_map(&id).await.expect("get_map").len(), 2);
    let deadline = store
        .load(&id)
        .await
        .expect("load")
        .expect("live")
        .expires_at;
    assert!(moved.record().deadline == deadline.expect("deadline"));
}

#[tokio::test]
async fn without_headroom_every_later_deadline_takes_a_new_entry_evicted_at_it() {
    let store = MemoryStore::builder()
        .eviction_headroom(Duration::ZERO)
        .build();
    let id = id();
    store.set(&id, "a", v(1), LONG).await.expect("set");
    let first = entry(&store, &id);
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.set(&id, "a", v(2), LONG).await.expect("set");
    assert!(!Arc::ptr_eq(&first, &entry(&store, &id)));
    // a write that keeps the deadline (Expiry::Keep) still replaces in place
    let kept = entry(&store, &id);
    store
        .update_ttl(&id, Duration::from_secs(1))
        .await
        .expect("shorter");
    assert!(
        Arc::ptr_eq(&kept, &entry(&store, &id)),
        "a shorter deadline fits"
    );

    let short = SessionId::generate().expect("os rng");
    store
        .set(&short, "k", v(1), Duration::from_millis(150))
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.sessions.run_pending_tasks();
    assert!(
        store.sessions.get(&short).is_none(),
        "moka keeps an expired session past its deadline without headroom"
    );
}

#[tokio::test]
async fn a_write_into_an_entry_evicted_meanwhile_puts_it_back() {
    let store = MemoryStore::new();
    let id = id();
    store.set(&id, "a", v(1), LONG).await.expect("set");
    let slot = entry(&store, &id);
    let mut record = slot.record();
    // moka evicts the entry (LRU) between the write's lookup and its replace
    store.sessions.invalidate(&id);
    record.body = record
        .body
        .apply(&ChangeSet {
            set: [("b".to_string(), v(2))].into_iter().collect(),
            ..ChangeSet::default()
        })
        .expect("apply");
    // (a read meanwhile found the entry gone and marked its slot)
    slot.set_gone();
    assert!(store.put(&id, Some(slot.clone()), record), "no new entry");
    let cached = entry(&store, &id);
    assert!(
        !Arc::ptr_eq(&slot, &cached),
        "the slot a read marked gone came back"
    );
    let indexed = store.index.get(&id).map(|e| Arc::clone(e.value()));
    assert!(indexed.is_some_and(|s| Arc::ptr_eq(&s, &cached)));
    assert_eq!(store.get(&id, "b").await.expect("get"), Some(v(2)));
    assert_eq!(store.get(&id, "a").await.expect("get"), Some(v(1)));
}

#[tokio::test]
async fn reads_ask_moka_once_a_second_and_a_session_it_evicted_goes() {
    let store = MemoryStore::new();
    let id = id();
    store.set(&id, "a", v(1), LONG).await.expect("set");
    // the first read asks moka (a new slot's touch is due), the next ones within a second don't
    assert_eq!(store.get(&id, "a").await.expect("get"), Some(v(1)));
    let slot = entry(&store, &id);
    assert!(
        !slot.touch_due(check::now_millis()),
        "the read did not touch"
    );

    // moka evicts the entry (as for the capacity bound): within the second the index still
    // serves it; once the touch is due, the read asks moka, finds it gone, and it stays gone
    store.sessions.invalidate(&id);
    assert_eq!(store.get(&id, "a").await.expect("get"), Some(v(1)));
    tokio::time::sleep(Duration::from_millis(crate::record::TOUCH_EVERY_MS + 50)).await;
    assert_eq!(store.get(&id, "a").await.expect("get"), None);
    assert!(slot.is_gone());
    assert_eq!(store.get_size(&id).await.expect("get_size"), 0);
    assert!(store.load(&id).await.expect("load").is_none());

    // a write finds no entry in moka, drops the index's stale slot and starts from nothing
    assert!(
        !store
            .apply(
                &id,
                ChangeSet {
                    set: [("b".to_string(), v(2))].into_iter().collect(),
                    only_if_exists: true,
                    ..ChangeSet::default()
                },
                LONG
            )
            .await
            .expect("apply")
    );
    assert!(
        store.index.get(&id).is_none(),
        "the stale slot stayed in the index"
    );
    store.set(&id, "c", v(3), LONG).await.expect("set");
    assert_eq!(store.get_map(&id).await.expect("get_map").len(), 1);
}

#[tokio::test]
async fn the_index_stays_bounded_when_moka_evicts_sessions_nobody_reads_again() {
    let store = MemoryStore::builder().max_sessions(8).build();
    for n in 0..(SWEEP_FLOOR * 3) {
        store.set(&id(), "k", v(1), LONG).await.expect("set");
        if n % 64 == 0 {
            store.sessions.run_pending_tasks();
        }
        assert!(
            store.index.len() <= SWEEP_FLOOR + INDEX_CHECK_EVERY as usize,
            "{} index entries after {n} sessions",
            store.index.len()
        );
    }
    store.purge_expired().await.expect("purge");
    store.sessions.run_pending_tasks();
    assert!(store.index.len() <= 8, "{} entries", store.index.len());
}
