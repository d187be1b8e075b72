//! The sled driver against real sled databases in temporary directories.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use session_core::{ChangeSet, Data, Error, SessionId, Storage, Value};
use session_sled::{Flush, SledStore};

const HOUR: Duration = Duration::from_secs(3600);

fn id() -> SessionId {
    SessionId::generate().expect("os rng")
}

fn val(v: &str) -> Value {
    Value::encode(v).expect("encode")
}

fn data(pairs: &[(&str, &str)]) -> Data {
    pairs.iter().map(|(k, v)| (k.to_string(), val(v))).collect()
}

async fn temp_store() -> SledStore {
    SledStore::builder()
        .temporary()
        .await
        .expect("open temporary sled db")
}

/// The record body as the README documents it: MessagePack `[owner, data]`.
#[derive(serde::Deserialize)]
struct Body(Option<String>, HashMap<String, Bytes>);

/// Checks, from the documented on-disk layout, the index invariants of the README: every record
/// (session or pending binding) has an expiry entry at or before its deadline (so purge finds it
/// once it expires), and a record with an owner has its owner entry. Stale entries (no record,
/// another owner, a deadline the record no longer has) are allowed: purge and `index_sessions`
/// drop them. Returns (records, owner entries that belong to their record).
fn check_indexes(store: &SledStore) -> (usize, usize) {
    let db = store.db();
    let tree = |name: &str| db.open_tree(format!("session.{name}")).expect("open tree");
    let mut records = HashMap::new();
    for entry in tree("sessions").iter() {
        let (k, v) = entry.expect("read sessions");
        assert_eq!(&v[..5], b"SREC\x01", "magic and format version");
        let deadline = u64::from_be_bytes(v[5..13].try_into().expect("8 bytes"));
        let Body(owner, data) = rmp_serde::from_slice(&v[13..]).expect("documented body");
        assert!(
            !data.is_empty() || owner.is_some(),
            "a record without keys is a pending binding, so it has an owner"
        );
        records.insert(k.to_vec(), (deadline, owner));
    }
    let mut indexed = HashSet::new();
    for entry in tree("expiry").iter() {
        let (k, v) = entry.expect("read expiry");
        assert!(v.is_empty());
        let deadline = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
        if records.get(&k[8..]).is_some_and(|rec| deadline <= rec.0) {
            indexed.insert(k[8..].to_vec());
        }
    }
    for id in records.keys() {
        assert!(
            indexed.contains(id),
            "session {id:?} has no expiry entry at or before its deadline"
        );
    }
    let mut owners = 0;
    for entry in tree("owners").iter() {
        let (k, _) = entry.expect("read owners");
        let sep = k.iter().position(|&b| b == 0).expect("separator");
        if records
            .get(&k[sep + 1..])
            .is_some_and(|rec| rec.1.as_deref().map(str::as_bytes) == Some(&k[..sep]))
        {
            owners += 1;
        }
    }
    let owned = records.values().filter(|r| r.1.is_some()).count();
    assert_eq!(owners, owned, "an owned session lacks its owner entry");
    (records.len(), owners)
}

/// Deadlines of every entry of the expiry tree.
fn expiry_deadlines(store: &SledStore) -> Vec<u64> {
    let tree = store.db().open_tree("session.expiry").expect("open tree");
    tree.iter()
        .map(|entry| {
            let (k, _) = entry.expect("read expiry");
            u64::from_be_bytes(k[..8].try_into().expect("8 bytes"))
        })
        .collect()
}

#[tokio::test]
async fn set_get_merge_replace_remove() {
    let store = temp_store().await;
    let id = id();
    assert_eq!(store.get(&id, "a").await.expect("get"), None);
    store.set(&id, "a", val("1"), HOUR).await.expect("set");
    store
        .set_map(&id, data(&[("b", "2"), ("ключ🔑", "3")]), HOUR)
        .await
        .expect("set_map");
    assert_eq!(store.get_size(&id).await.expect("size"), 3);
    assert_eq!(store.get(&id, "a").await.expect("get"), Some(val("1")));
    store
        .set_session(&id, data(&[("c", "4")]), HOUR)
        .await
        .expect("replace");
    assert_eq!(store.get_map(&id).await.expect("map"), data(&[("c", "4")]));
    store.remove(&id, "c").await.expect("remove last key");
    assert_eq!(store.get_session(&id, HOUR, None).await.expect("get"), None);
    assert_eq!(check_indexes(&store), (0, 0));
    assert!(matches!(
        store.set(&id, "a\0", val("x"), HOUR).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.set(&id, "a", val("x"), Duration::ZERO).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn expiry_is_to_the_millisecond_and_old_keys_do_not_come_back() {
    let store = temp_store().await;
    let id = id();
    store
        .set(&id, "old", val("x"), Duration::from_millis(300))
        .await
        .expect("set");
    let loaded = store.load(&id).await.expect("load").expect("live");
    assert!(loaded.expires_at.is_some());
    assert_eq!(store.get_size(&id).await.expect("size"), 1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(store.get(&id, "old").await.expect("get"), None);
    assert!(store.load(&id).await.expect("load").is_none());
    store.update_ttl(&id, HOUR).await.expect("touch");
    assert_eq!(store.get_size(&id).await.expect("size"), 0, "not revived");
    store.set(&id, "new", val("y"), HOUR).await.expect("set");
    assert_eq!(
        store.get_map(&id).await.expect("map"),
        data(&[("new", "y")])
    );
    assert_eq!(check_indexes(&store), (1, 0));
}

#[tokio::test]
async fn apply_orders_clear_remove_set_and_honours_only_if_exists() {
    let store = temp_store().await;
    let id = id();
    let guarded = ChangeSet {
        set: data(&[("a", "1")]),
        only_if_exists: true,
        ..ChangeSet::default()
    };
    assert!(
        !store
            .apply(&id, guarded.clone(), HOUR)
            .await
            .expect("apply")
    );
    assert_eq!(store.get_size(&id).await.expect("size"), 0);
    store
        .set_map(&id, data(&[("a", "1"), ("b", "2")]), HOUR)
        .await
        .expect("seed");
    let changes = ChangeSet {
        clear: false,
        remove: vec!["a".into(), "b".into()],
        set: data(&[("b", "3")]),
        only_if_exists: true,
    };
    assert!(store.apply(&id, changes, HOUR).await.expect("apply"));
    assert_eq!(store.get_map(&id).await.expect("map"), data(&[("b", "3")]));
    let clear = ChangeSet {
        clear: true,
        ..ChangeSet::default()
    };
    assert!(!store.apply(&id, clear, HOUR).await.expect("apply"));
    assert_eq!(check_indexes(&store), (0, 0));
}

#[tokio::test]
async fn owner_index_binds_moves_and_prunes() {
    let store = temp_store().await;
    let (a, b) = (id(), id());
    store.set(&a, "k", val("v"), HOUR).await.expect("set");
    store
        .set(&b, "k", val("v"), Duration::from_millis(300))
        .await
        .expect("set");
    store.index_add("ada", &a, HOUR).await.expect("bind");
    store.index_add("ada", &b, HOUR).await.expect("bind");
    let mut ids = store.index_sessions("ada").await.expect("sessions");
    ids.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(check_indexes(&store), (2, 2));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        store.index_sessions("ada").await.expect("sessions"),
        vec![a.clone()]
    );
    assert_eq!(store.index_owner(&b).await.expect("owner"), None);
    store.index_add("bob", &a, HOUR).await.expect("move");
    assert!(store.index_sessions("ada").await.expect("ada").is_empty());
    assert_eq!(
        store.index_owner(&a).await.expect("owner").as_deref(),
        Some("bob")
    );
    store.index_remove(&a).await.expect("unbind");
    assert_eq!(store.index_owner(&a).await.expect("owner"), None);
    store.index_add("bob", &a, HOUR).await.expect("bind");
    store.remove_all(&a).await.expect("remove_all");
    assert!(store.index_sessions("bob").await.expect("bob").is_empty());
    assert!(store.index_add("", &a, HOUR).await.is_err());
}

#[tokio::test]
async fn locks_are_exclusive_token_checked_and_lease_bound() {
    let store = temp_store().await;
    let id = id();
    let token = store
        .try_lock(&id, HOUR)
        .await
        .expect("lock")
        .expect("free");
    assert!(store.try_lock(&id, HOUR).await.expect("lock").is_none());
    let other = session_core::LockToken::generate().expect("rng");
    assert!(!store.unlock(&id, &other).await.expect("unlock"));
    assert!(store.unlock(&id, &token).await.expect("unlock"));
    let short = store
        .try_lock(&id, Duration::from_millis(30))
        .await
        .expect("lock")
        .expect("free");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let next = store
        .try_lock(&id, HOUR)
        .await
        .expect("lock")
        .expect("lease ran out");
    assert!(!store.unlock(&id, &short).await.expect("stale token"));
    assert!(store.unlock(&id, &next).await.expect("unlock"));
}

#[tokio::test]
async fn scan_pages_through_live_sessions_only() {
    let store = temp_store().await;
    let mut live = HashSet::new();
    for i in 0..25 {
        let id = id();
        let ttl = if i % 5 == 0 {
            Duration::from_millis(20)
        } else {
            HOUR
        };
        store.set(&id, "k", val("v"), ttl).await.expect("set");
        if i % 5 != 0 {
            live.insert(id);
        }
    }
    tokio::time::sleep(Duration::from_millis(40)).await;
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.scan(cursor.as_deref(), 6).await.expect("scan");
        assert!(page.ids.len() <= 6);
        for id in page.ids {
            assert!(seen.insert(id), "an id came twice");
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, live);
}

#[tokio::test]
async fn purge_removes_exactly_the_expired_sessions_and_their_index_entries() {
    let store = temp_store().await;
    let mut keep = Vec::new();
    for i in 0..40 {
        let id = id();
        let short = i % 3 == 0; // 14 of 40
        let ttl = if short {
            Duration::from_millis(300)
        } else {
            HOUR
        };
        store.set(&id, "k", val("v"), ttl).await.expect("set");
        if i % 2 == 0 {
            store.index_add("ada", &id, HOUR).await.expect("bind");
        }
        if !short {
            keep.push(id);
        }
    }
    // A short-lived session slid to an hour: its old expiry entry must not purge it.
    let slid = id();
    store
        .set(&slid, "k", val("v"), Duration::from_millis(300))
        .await
        .expect("set");
    store.update_ttl(&slid, HOUR).await.expect("slide");
    keep.push(slid);
    assert_eq!(check_indexes(&store), (41, 20));
    tokio::time::sleep(Duration::from_millis(450)).await;

    assert_eq!(store.purge_expired().await.expect("purge"), 14);
    // Nothing due is left in the index: the slid session was re-indexed at its real deadline.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    assert!(expiry_deadlines(&store).iter().all(|&d| d > now));
    let (records, owners) = check_indexes(&store);
    assert_eq!(records, keep.len());
    assert_eq!(owners, 13); // the even i that are not multiples of 3
    for id in &keep {
        assert_eq!(store.get_size(id).await.expect("size"), 1);
    }
    assert_eq!(store.purge_expired().await.expect("purge again"), 0);
}

#[tokio::test]
async fn purge_stops_at_now_and_leaves_future_entries() {
    let store = temp_store().await;
    let early = id();
    let late = id();
    store
        .set(&early, "k", val("v"), Duration::from_millis(20))
        .await
        .expect("set");
    store
        .set(&late, "k", val("v"), Duration::from_millis(400))
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(store.purge_expired().await.expect("purge"), 1);
    assert_eq!(check_indexes(&store), (1, 0));
    assert_eq!(store.get_size(&late).await.expect("size"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_writers_of_one_session_lose_nothing() {
    let store = Arc::new(temp_store().await);
    let id = id();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (store, id) = (Arc::clone(&store), id.clone());
            tokio::spawn(async move {
                let changes = ChangeSet {
                    set: data(&[(&format!("key-{i}"), &i.to_string())]),
                    ..ChangeSet::default()
                };
                store.apply(&id, changes, HOUR).await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.expect("task").expect("apply"));
    }
    let map = store.get_map(&id).await.expect("map");
    assert_eq!(map.len(), 100);
    for i in 0..100 {
        assert_eq!(map.get(&format!("key-{i}")), Some(&val(&i.to_string())));
    }
    assert_eq!(check_indexes(&store), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_set_and_remove_of_different_keys_keep_every_change() {
    let store = Arc::new(temp_store().await);
    let id = id();
    let seed: Data = (0..50).map(|i| (format!("old-{i}"), val("x"))).collect();
    store.set_map(&id, seed, HOUR).await.expect("seed");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (s1, s2, id1, id2) = (
            Arc::clone(&store),
            Arc::clone(&store),
            id.clone(),
            id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            s1.set(&id1, &format!("new-{i}"), val("y"), HOUR).await
        }));
        tasks.push(tokio::spawn(async move {
            s2.remove(&id2, &format!("old-{i}")).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("write");
    }
    let map = store.get_map(&id).await.expect("map");
    let want: HashSet<String> = (0..50).map(|i| format!("new-{i}")).collect();
    assert_eq!(map.keys().cloned().collect::<HashSet<_>>(), want);
}

/// Calls run inline on the runtime's worker threads (no blocking-pool hop): many tasks on a
/// multi-thread runtime apply to many sessions at once, several tasks to each session, and
/// every key of every write lands (`compare_and_swap` retried on conflict keeps per-key
/// atomicity), with loads, index writes and removes of whole sessions racing them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_applying_to_many_sessions_inline_lose_nothing() {
    const SESSIONS: usize = 24;
    const TASKS: usize = 64;
    const ROUNDS: usize = 12;
    let store = Arc::new(temp_store().await);
    let ids: Arc<Vec<SessionId>> = Arc::new((0..SESSIONS).map(|_| id()).collect());
    // Doomed sessions, removed whole while the applies run: their tree entries go too.
    let doomed: Vec<SessionId> = (0..SESSIONS).map(|_| id()).collect();
    for id in &doomed {
        store.set(id, "x", val("x"), HOUR).await.expect("seed");
    }
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, ids) = (Arc::clone(&store), Arc::clone(&ids));
        tasks.push(tokio::spawn(async move {
            for r in 0..ROUNDS {
                let id = &ids[(t * 5 + r) % SESSIONS];
                let changes = ChangeSet {
                    set: data(&[(&format!("t{t}-r{r}"), &format!("{t}/{r}"))]),
                    ..ChangeSet::default()
                };
                assert!(store.apply(id, changes, HOUR).await.expect("apply"));
                if r % 4 == 0 {
                    // A read between writes sees at least this task's own write.
                    let map = store.get_map(id).await.expect("load");
                    assert!(map.contains_key(&format!("t{t}-r{r}")));
                }
                if r % 6 == 0 {
                    store
                        .index_add(&format!("owner-{}", t % 3), id, HOUR)
                        .await
                        .expect("bind");
                }
            }
        }));
    }
    for (i, id) in doomed.iter().enumerate() {
        let store = Arc::clone(&store);
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                tokio::task::yield_now().await;
            }
            store.remove_all(&id).await.expect("remove_all");
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let mut want: Vec<HashSet<String>> = vec![HashSet::new(); SESSIONS];
    for t in 0..TASKS {
        for r in 0..ROUNDS {
            want[(t * 5 + r) % SESSIONS].insert(format!("t{t}-r{r}"));
        }
    }
    for (id, want) in ids.iter().zip(&want) {
        let map = store.get_map(id).await.expect("map");
        assert_eq!(&map.keys().cloned().collect::<HashSet<_>>(), want);
        for key in want {
            let (t, r) = key[1..].split_once("-r").expect("key");
            assert_eq!(map.get(key), Some(&val(&format!("{t}/{r}"))));
        }
        assert!(store.index_owner(id).await.expect("owner").is_some());
    }
    for id in &doomed {
        assert!(store.load(id).await.expect("load").is_none());
    }
    let (records, bound) = check_indexes(&store);
    assert_eq!((records, bound), (SESSIONS, SESSIONS));
}

/// A lock is a sled transaction run inline: under contention from many tasks on several worker
/// threads, sled's retries still let exactly one holder in at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contended_locks_inline_admit_one_holder_at_a_time() {
    let store = Arc::new(temp_store().await);
    let id = id();
    let holders = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acquired = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (store, id) = (Arc::clone(&store), id.clone());
            let (holders, acquired) = (Arc::clone(&holders), Arc::clone(&acquired));
            tokio::spawn(async move {
                for _ in 0..20 {
                    let Some(token) = store.try_lock(&id, HOUR).await.expect("lock") else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    use std::sync::atomic::Ordering::SeqCst;
                    assert_eq!(holders.fetch_add(1, SeqCst), 0, "two holders at once");
                    acquired.fetch_add(1, SeqCst);
                    tokio::task::yield_now().await;
                    holders.fetch_sub(1, SeqCst);
                    assert!(store.unlock(&id, &token).await.expect("unlock"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    assert!(acquired.load(std::sync::atomic::Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn data_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("db");
    let (a, b) = (id(), id());
    {
        let store = SledStore::builder()
            .flush(Flush::Never)
            .open(&path)
            .await
            .expect("open");
        store
            .set_map(&a, data(&[("user", "ada"), ("cart", "3")]), HOUR)
            .await
            .expect("set");
        store
            .set(&b, "k", val("v"), Duration::from_millis(30))
            .await
            .expect("set");
        store.index_add("ada", &a, HOUR).await.expect("bind");
        store.flush().await.expect("flush");
    }
    let store = SledStore::open(&path).await.expect("reopen");
    assert_eq!(
        store.get_map(&a).await.expect("map"),
        data(&[("user", "ada"), ("cart", "3")])
    );
    assert_eq!(store.index_sessions("ada").await.expect("owner"), vec![a]);
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(store.purge_expired().await.expect("purge"), 1);
    assert_eq!(check_indexes(&store), (1, 1));
}

#[tokio::test]
async fn every_write_policy_and_a_second_open_of_a_live_path_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::builder()
        .flush(Flush::EveryWrite)
        .open(dir.path())
        .await
        .expect("open");
    let id = id();
    store.set(&id, "k", val("v"), HOUR).await.expect("set");
    // EveryWrite flushed already: nothing left to write.
    assert_eq!(store.flush().await.expect("flush"), 0);
    assert!(matches!(
        SledStore::open(dir.path()).await,
        Err(Error::Backend { .. })
    ));
}

#[tokio::test]
async fn from_db_shares_a_database_and_rejects_options_it_cannot_apply() {
    let db = sled::Config::new()
        .temporary(true)
        .open()
        .expect("open sled");
    let one = SledStore::from_db(db.clone()).expect("from_db");
    let two = SledStore::builder()
        .namespace("other")
        .flush(Flush::EveryWrite)
        .from_db(db.clone())
        .expect("from_db");
    let id = id();
    one.set(&id, "k", val("one"), HOUR).await.expect("set");
    assert_eq!(
        two.get(&id, "k").await.expect("get"),
        None,
        "namespaces apart"
    );
    assert!(matches!(
        SledStore::builder()
            .flush(Flush::Interval(Duration::from_millis(10)))
            .from_db(db)
            .map(drop),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        SledStore::builder()
            .flush(Flush::Interval(Duration::ZERO))
            .temporary()
            .await
            .map(drop),
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn corrupt_records_are_errors_not_panics() {
    let store = temp_store().await;
    let sessions = store.db().open_tree("session.sessions").expect("tree");
    let locks = store.db().open_tree("session.locks").expect("tree");
    let id = id();
    for garbage in [
        &b""[..],
        &b"\x01\x00"[..],
        &b"\x07garbage-with-future-version"[..],
        &b"\x01\xff\xff\xff\xff\xff\xff\xff\xff\xc1"[..],
        &b"SREC\x01\x00"[..],
        &b"SREC\x09\xff\xff\xff\xff\xff\xff\xff\xff\x92\xc0\x80"[..],
        &b"SREC\x01\xff\xff\xff\xff\xff\xff\xff\xff\x92\xc0\x80trailing"[..],
    ] {
        sessions.insert(id.as_str(), garbage).expect("insert");
        assert!(matches!(
            store.get(&id, "k").await,
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            store.get_map(&id).await,
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            store.set(&id, "k", val("v"), HOUR).await,
            Err(Error::Corrupt { .. })
        ));
    }
    store
        .remove_all(&id)
        .await
        .expect("a corrupt session can be removed");
    assert_eq!(store.get_size(&id).await.expect("size"), 0);

    locks.insert(id.as_str(), &b"\x01"[..]).expect("insert");
    assert!(matches!(
        store.try_lock(&id, HOUR).await,
        Err(Error::Corrupt { .. })
    ));
}

#[tokio::test]
async fn a_binding_made_before_the_first_write_waits_for_it() {
    let store = temp_store().await;
    let id = id();
    store.index_add("ada", &id, HOUR).await.expect("bind early");
    // Not a session yet: nothing reads it, nothing lists it.
    assert_eq!(store.get_size(&id).await.expect("size"), 0);
    assert!(store.load(&id).await.expect("load").is_none());
    assert_eq!(store.index_owner(&id).await.expect("owner"), None);
    assert!(store.index_sessions("ada").await.expect("list").is_empty());
    assert!(store.scan(None, 10).await.expect("scan").ids.is_empty());
    store.update_ttl(&id, HOUR).await.expect("touch");
    let only_if = ChangeSet {
        set: data(&[("a", "1")]),
        only_if_exists: true,
        ..ChangeSet::default()
    };
    assert!(!store.apply(&id, only_if, HOUR).await.expect("apply"));
    assert!(
        !store
            .apply(&id, ChangeSet::default(), HOUR)
            .await
            .expect("apply")
    );
    store
        .set_session(&id, Data::new(), HOUR)
        .await
        .expect("empty");
    assert_eq!(check_indexes(&store), (1, 1), "the pending binding stays");
    // The first write takes the binding over.
    store
        .set(&id, "user", val("ada"), HOUR)
        .await
        .expect("first write");
    assert_eq!(
        store.index_sessions("ada").await.expect("list"),
        vec![id.clone()]
    );
    assert_eq!(
        store.index_owner(&id).await.expect("owner").as_deref(),
        Some("ada")
    );
    assert_eq!(check_indexes(&store), (1, 1));

    // index_remove drops a pending binding.
    let other = self::id();
    store
        .index_add("bob", &other, HOUR)
        .await
        .expect("bind early");
    store.index_remove(&other).await.expect("unbind");
    store.set(&other, "k", val("v"), HOUR).await.expect("write");
    assert_eq!(store.index_owner(&other).await.expect("owner"), None);
    assert_eq!(check_indexes(&store), (2, 1));
}

#[tokio::test]
async fn a_pending_binding_runs_out_after_its_ttl_and_is_purged_uncounted() {
    let store = temp_store().await;
    let (late, gone) = (id(), id());
    store
        .index_add("ada", &late, Duration::from_millis(30))
        .await
        .expect("bind early");
    store
        .set(&gone, "k", val("v"), Duration::from_millis(30))
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        store.purge_expired().await.expect("purge"),
        1,
        "only the session counts"
    );
    assert_eq!(check_indexes(&store), (0, 0));
    store.set(&late, "k", val("v"), HOUR).await.expect("write");
    assert_eq!(store.index_owner(&late).await.expect("owner"), None);
    assert!(store.index_sessions("ada").await.expect("list").is_empty());
}

#[tokio::test]
async fn a_deadline_moved_earlier_is_indexed_and_purged_on_time() {
    let store = temp_store().await;
    let (shortened, kept) = (id(), id());
    for id in [&shortened, &kept] {
        store.set(id, "k", val("v"), HOUR).await.expect("set");
    }
    // Sliding later adds no entry; moving earlier must, or purge would wait an hour.
    store.update_ttl(&kept, 2 * HOUR).await.expect("slide");
    store
        .set(&shortened, "k2", val("v"), Duration::from_millis(100))
        .await
        .expect("shorten");
    assert_eq!(check_indexes(&store), (2, 0));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(store.purge_expired().await.expect("purge"), 1);
    assert_eq!(store.get_size(&shortened).await.expect("size"), 0);
    assert_eq!(store.get_size(&kept).await.expect("size"), 1);
    assert_eq!(check_indexes(&store), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_racing_sliding_writers_deletes_only_expired_sessions() {
    let store = Arc::new(temp_store().await);
    let ids: Vec<SessionId> = (0..20).map(|_| id()).collect();
    for id in &ids {
        store
            .set(id, "n", val("0"), Duration::from_millis(50))
            .await
            .expect("set");
    }
    // Writers keep sliding the even sessions while purges run; odd ones expire.
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let (store, id) = (Arc::clone(&store), id.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..30 {
                store
                    .set(
                        &id,
                        "n",
                        val(&format!("{i}-{n}")),
                        Duration::from_millis(200),
                    )
                    .await
                    .expect("slide");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let purger = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut purged = 0;
            for _ in 0..30 {
                purged += store.purge_expired().await.expect("purge");
                tokio::time::sleep(Duration::from_millis(7)).await;
            }
            purged
        })
    };
    for t in tasks {
        t.await.expect("writer");
    }
    let purged = purger.await.expect("purger") + store.purge_expired().await.expect("purge");
    assert_eq!(purged, 10, "exactly the odd sessions expired");
    for (i, id) in ids.iter().enumerate() {
        let size = store.get_size(id).await.expect("size");
        assert_eq!(size, usize::from(i % 2 == 0), "session {i}");
    }
    check_indexes(&store);
}
