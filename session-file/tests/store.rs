//! Behaviour of the file driver on a real directory: confinement, modes, reopen, purge,
//! corruption, owner index, lease lock, scan.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use session_core::{ChangeSet, Data, Error, LockToken, SessionId, Storage, Value};
use session_file::FileStore;

const HOUR: Duration = Duration::from_secs(3600);

fn id() -> SessionId {
    SessionId::generate().expect("os random")
}

fn val<T: serde::Serialize>(v: T) -> Value {
    Value::encode(&v).expect("encode")
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in fs::read_dir(dir).expect("list") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(base)
                .expect("under base")
                .to_string_lossy()
                .into_owned();
            if entry.file_type().expect("type").is_dir() {
                out.insert(format!("{rel}/"));
                walk(base, &path, out);
            } else {
                out.insert(rel);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

#[tokio::test]
async fn path_traversal_is_impossible() {
    let outer = tempfile::tempdir().expect("temp dir");
    let dir = outer.path().join("sessions");
    let store = FileStore::open(&dir).await.expect("open");
    for bad in [
        "../../etc/passwd",
        "../../../../../../../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd0000",
        "/etc/passwd/aaaaaaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaa/../../x",
        "aaaaaaaaaaaaaaaa\0",
    ] {
        assert!(
            matches!(SessionId::parse(bad), Err(Error::InvalidId(_))),
            "{bad:?} became an id"
        );
    }
    // Owners are arbitrary text: they must never reach a path raw.
    let sid = id();
    store.set(&sid, "k", val(1), HOUR).await.expect("set");
    for owner in ["../../escape", "/etc/passwd", "a/b/c", "..", "ünï/cödé"] {
        store.index_add(owner, &sid, HOUR).await.expect("index_add");
        assert_eq!(
            store.index_sessions(owner).await.expect("sessions"),
            vec![sid.clone()]
        );
    }
    store
        .index_add(&"/..".repeat(85), &sid, HOUR)
        .await
        .expect("long owner");
    // Nothing was created outside the store directory.
    let outside: Vec<_> = fs::read_dir(outer.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(outside, vec![std::ffi::OsString::from("sessions")]);
    for entry in tree(&dir) {
        assert!(!entry.contains(".."), "{entry}");
    }
}

#[tokio::test]
async fn files_are_0600_and_directories_0700() {
    let outer = tempfile::tempdir().expect("temp dir");
    let dir = outer.path().join("a/b/sessions");
    let store = FileStore::open(&dir).await.expect("open");
    assert_eq!(mode(&dir), 0o700);
    let sid = id();
    store.set(&sid, "k", val(1), HOUR).await.expect("set");
    store.index_add("alice", &sid, HOUR).await.expect("bind");
    let token = store.try_lock(&sid, HOUR).await.expect("lock");
    assert!(token.is_some());
    let files = tree(&dir);
    assert!(files.contains(&format!("sess_{sid}")), "{files:?}");
    assert!(files.contains(&format!("lease_{sid}")), "{files:?}");
    assert!(files.contains("owners/"), "{files:?}");
    for rel in &files {
        let path = dir.join(rel.trim_end_matches('/'));
        let want = if rel.ends_with('/') { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), want, "{rel}");
    }

    // An existing directory with a wider mode is tightened on open.
    let loose = outer.path().join("loose");
    fs::create_dir(&loose).expect("mkdir");
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).expect("chmod");
    FileStore::open(&loose).await.expect("open loose");
    assert_eq!(mode(&loose), 0o700);

    // A file where the directory should be is an error, not a panic.
    let file = outer.path().join("file");
    fs::write(&file, b"x").expect("write");
    assert!(FileStore::open(&file).await.is_err());
}

#[tokio::test]
async fn data_survives_reopening_the_store() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let sid = id();
    let deadline = {
        let store = FileStore::open(tmp.path()).await.expect("open");
        store
            .set(&sid, "user", val("alice"), HOUR)
            .await
            .expect("set");
        store.set(&sid, "n", val(7), HOUR).await.expect("set");
        store.index_add("alice", &sid, HOUR).await.expect("bind");
        store
            .load(&sid)
            .await
            .expect("load")
            .expect("live")
            .expires_at
    };
    let store = FileStore::open(tmp.path()).await.expect("reopen");
    let loaded = store.load(&sid).await.expect("load").expect("live");
    assert_eq!(loaded.expires_at, deadline);
    assert_eq!(loaded.data.len(), 2);
    assert_eq!(
        loaded
            .data
            .get("user")
            .expect("present")
            .decode::<String>()
            .expect("decode"),
        "alice"
    );
    assert_eq!(
        loaded
            .data
            .get("n")
            .expect("present")
            .decode::<u32>()
            .expect("decode"),
        7
    );
    assert_eq!(
        store.index_owner(&sid).await.expect("owner").as_deref(),
        Some("alice")
    );
    assert_eq!(
        store.index_sessions("alice").await.expect("index"),
        vec![sid]
    );
}

#[tokio::test]
async fn purge_removes_exactly_the_expired_sessions() {
    let store = FileStore::temporary().await.expect("open");
    let short: Vec<_> = (0..5).map(|_| id()).collect();
    let long: Vec<_> = (0..7).map(|_| id()).collect();
    // Bound before its first write, so the binding does not depend on how fast the writes are.
    store.index_add("bob", &short[0], HOUR).await.expect("bind");
    for sid in &short {
        store
            .set(sid, "k", val(1), Duration::from_millis(50))
            .await
            .expect("set");
    }
    for sid in &long {
        store.set(sid, "k", val(2), HOUR).await.expect("set");
    }
    let lease = store
        .try_lock(&short[1], Duration::from_millis(50))
        .await
        .expect("lock");
    assert!(lease.is_some());
    let held = store.try_lock(&long[0], HOUR).await.expect("lock");
    assert!(held.is_some());
    tokio::time::sleep(Duration::from_millis(120)).await;
    // A lookup prunes the index entry of the expired session but leaves the deleting (and
    // counting) to the purge.
    assert!(store.index_sessions("bob").await.expect("index").is_empty());
    assert_eq!(store.purge_expired().await.expect("purge"), 5);
    assert_eq!(store.purge_expired().await.expect("purge again"), 0);
    let files = tree(store.dir());
    let records: BTreeSet<_> = files.iter().filter(|f| f.starts_with("sess_")).collect();
    let want: BTreeSet<_> = long.iter().map(|s| format!("sess_{s}")).collect();
    assert_eq!(records, want.iter().collect());
    // The expired lease is gone, the live one stays; no lock file of a purged session remains.
    assert!(!files.contains(&format!("lease_{}", short[1])), "{files:?}");
    assert!(files.contains(&format!("lease_{}", long[0])), "{files:?}");
    for sid in &short {
        assert!(!files.contains(&format!("lock_{sid}")), "{files:?}");
    }
    // The owner index of the purged session is gone too.
    assert!(store.index_sessions("bob").await.expect("index").is_empty());
    assert_eq!(tree(&store.dir().join("owners")), BTreeSet::new());
    for sid in &long {
        assert_eq!(store.get_size(sid).await.expect("size"), 1);
    }
}

#[tokio::test]
async fn purge_deletes_stale_temp_files_only() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = FileStore::builder()
        .stale_temp_after(Duration::from_secs(1))
        .open(tmp.path())
        .await
        .expect("open");
    let stale = tmp.path().join(".tmp-crashedwriter");
    fs::write(&stale, b"half a record").expect("write");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = tmp.path().join(".tmp-busywriter");
    fs::write(&fresh, b"being written").expect("write");
    let foreign = tmp.path().join("README.txt");
    fs::write(&foreign, b"not ours").expect("write");
    store.purge_expired().await.expect("purge");
    assert!(!stale.exists());
    assert!(fresh.exists());
    assert!(
        foreign.exists(),
        "files the driver does not own are left alone"
    );
}

#[tokio::test]
async fn background_purge_runs_and_stops_with_the_store() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = FileStore::builder()
        .purge_interval(Duration::from_millis(30))
        .open(tmp.path())
        .await
        .expect("open");
    let a = id();
    store
        .set(&a, "k", val(1), Duration::from_millis(10))
        .await
        .expect("set");
    let record_a = tmp.path().join(format!("sess_{a}"));
    assert!(record_a.exists());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!record_a.exists(), "background purge did not run");

    drop(store);
    let plain = FileStore::open(tmp.path()).await.expect("reopen");
    let b = id();
    plain
        .set(&b, "k", val(1), Duration::from_millis(10))
        .await
        .expect("set");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tmp.path().join(format!("sess_{b}")).exists(),
        "the purge task outlived its store"
    );
}

#[tokio::test]
async fn temporary_store_deletes_its_directory() {
    let store = FileStore::temporary().await.expect("open");
    let dir = store.dir().to_owned();
    store.set(&id(), "k", val(1), HOUR).await.expect("set");
    assert!(dir.exists());
    let clone = store.clone();
    drop(store);
    assert!(dir.exists(), "a clone still uses it");
    drop(clone);
    // Deleted on the blocking pool, right after the last clone goes.
    let started = std::time::Instant::now();
    while dir.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "directory was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn corrupt_or_truncated_record_is_an_error_for_that_session_only() {
    let store = FileStore::temporary().await.expect("open");
    let (bad, good) = (id(), id());
    store
        .set(&bad, "secret", val("bad's data"), HOUR)
        .await
        .expect("set");
    store.set(&bad, "n", val(1), HOUR).await.expect("set");
    store.set(&good, "k", val("good"), HOUR).await.expect("set");
    let path = store.dir().join(format!("sess_{bad}"));
    let original = fs::read(&path).expect("read");

    let mut flipped = original.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    let variants = [
        original[..original.len() / 2].to_vec(),
        original[..10].to_vec(),
        Vec::new(),
        flipped,
        b"hello, I am not a session".to_vec(),
    ];
    for bytes in variants {
        fs::write(&path, &bytes).expect("write");
        let corrupt = |r: Result<_, Error>| matches!(r, Err(Error::Corrupt { .. }));
        assert!(corrupt(store.get(&bad, "n").await.map(|_| ())));
        assert!(corrupt(store.get_map(&bad).await.map(|_| ())));
        assert!(corrupt(store.get_size(&bad).await.map(|_| ())));
        assert!(corrupt(store.load(&bad).await.map(|_| ())));
        assert!(corrupt(
            store.get_session(&bad, HOUR, None).await.map(|_| ())
        ));
        // Merging into unknown data is refused, the file is left as it was.
        assert!(corrupt(store.set(&bad, "x", val(2), HOUR).await));
        assert!(corrupt(
            store
                .apply(&bad, ChangeSet::default(), HOUR)
                .await
                .map(|_| ())
        ));
        assert_eq!(fs::read(&path).expect("read"), bytes);
        // The other session is unaffected, and scan / purge do not fail.
        assert_eq!(store.get_size(&good).await.expect("good"), 1);
        assert_eq!(store.purge_expired().await.expect("purge"), 0);
        let page = store.scan(None, 100).await.expect("scan");
        assert!(page.ids.contains(&good));
    }
    // A full replace repairs it; so does remove_all.
    let mut fresh = Data::new();
    fresh.insert("k".into(), val(3));
    store.set_session(&bad, fresh, HOUR).await.expect("replace");
    assert_eq!(store.get_size(&bad).await.expect("size"), 1);
    fs::write(&path, b"garbage").expect("write");
    store.remove_all(&bad).await.expect("remove_all");
    assert!(!path.exists());
    assert_eq!(store.get_size(&bad).await.expect("size"), 0);
}

#[tokio::test]
async fn owner_index_binds_moves_and_prunes() {
    let store = FileStore::temporary().await.expect("open");
    let (a, b, c) = (id(), id(), id());
    for sid in [&a, &b, &c] {
        store.set(sid, "k", val(1), HOUR).await.expect("set");
    }
    let long_owner = "ü".repeat(120); // 240 bytes: stored hashed
    store.index_add("alice", &a, HOUR).await.expect("bind");
    store.index_add("alice", &b, HOUR).await.expect("bind");
    store.index_add(&long_owner, &c, HOUR).await.expect("bind");
    let mut sessions = store.index_sessions("alice").await.expect("index");
    sessions.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(sessions, want);
    assert_eq!(
        store.index_sessions(&long_owner).await.expect("index"),
        vec![c.clone()]
    );
    assert_eq!(
        store.index_owner(&c).await.expect("owner").as_deref(),
        Some(long_owner.as_str())
    );

    // Moving b to bob removes it from alice.
    store.index_add("bob", &b, HOUR).await.expect("move");
    assert_eq!(
        store.index_sessions("alice").await.expect("index"),
        vec![a.clone()]
    );
    assert_eq!(
        store.index_sessions("bob").await.expect("index"),
        vec![b.clone()]
    );

    // Removing the session removes it from the index; so does index_remove.
    store.remove_all(&a).await.expect("remove");
    assert!(
        store
            .index_sessions("alice")
            .await
            .expect("index")
            .is_empty()
    );
    store.index_remove(&b).await.expect("unbind");
    assert!(store.index_sessions("bob").await.expect("index").is_empty());
    assert_eq!(store.index_owner(&b).await.expect("owner"), None);
    assert_eq!(store.get_size(&b).await.expect("size"), 1, "data stays");

    // A stale entry (left by a crash) is pruned on lookup.
    let owners = store.dir().join("owners");
    let alice_dir = fs::read_dir(&owners)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n == "oYWxpY2U"));
    assert_eq!(alice_dir, None, "empty owner directory was removed");
    fs::create_dir(owners.join("oYWxpY2U")).expect("mkdir");
    fs::write(owners.join("oYWxpY2U").join(a.as_str()), b"").expect("entry");
    assert!(
        store
            .index_sessions("alice")
            .await
            .expect("index")
            .is_empty()
    );
    assert!(!owners.join("oYWxpY2U").exists());

    // A binding made before the first write is kept by it.
    let d = id();
    store
        .index_add("carol", &d, HOUR)
        .await
        .expect("bind early");
    assert!(
        store
            .index_sessions("carol")
            .await
            .expect("index")
            .is_empty()
    );
    assert_eq!(store.index_owner(&d).await.expect("owner"), None);
    assert_eq!(store.get_size(&d).await.expect("size"), 0);
    store.set(&d, "k", val(1), HOUR).await.expect("first write");
    assert_eq!(store.index_sessions("carol").await.expect("index"), vec![d]);

    // Bad owners are InvalidInput before any file is touched.
    assert!(matches!(
        store.index_add("", &c, HOUR).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.index_sessions(&"x".repeat(257)).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn lease_lock_is_exclusive_token_checked_and_runs_out() {
    let store = FileStore::temporary().await.expect("open");
    let sid = id();
    let token = store
        .try_lock(&sid, HOUR)
        .await
        .expect("lock")
        .expect("free");
    assert!(store.try_lock(&sid, HOUR).await.expect("lock").is_none());
    assert!(
        !store
            .unlock(&sid, &LockToken::from_stored("not-the-token"))
            .await
            .expect("unlock")
    );
    assert!(store.unlock(&sid, &token).await.expect("unlock"));
    assert!(!store.unlock(&sid, &token).await.expect("unlock twice"));
    assert_eq!(tree(store.dir()), BTreeSet::from(["owners/".to_string()]));

    let stale = store
        .try_lock(&sid, Duration::from_millis(50))
        .await
        .expect("lock")
        .expect("free");
    tokio::time::sleep(Duration::from_millis(80)).await;
    let next = store
        .try_lock(&sid, HOUR)
        .await
        .expect("lock")
        .expect("lease ran out");
    assert!(!store.unlock(&sid, &stale).await.expect("stale unlock"));
    assert!(store.try_lock(&sid, HOUR).await.expect("lock").is_none());
    assert!(store.unlock(&sid, &next).await.expect("unlock"));
}

#[tokio::test]
async fn scan_pages_through_live_sessions() {
    let store = FileStore::temporary().await.expect("open");
    let mut live = BTreeSet::new();
    for _ in 0..23 {
        let sid = id();
        store.set(&sid, "k", val(1), HOUR).await.expect("set");
        live.insert(sid);
    }
    for _ in 0..4 {
        store
            .set(&id(), "k", val(1), Duration::from_millis(1))
            .await
            .expect("set");
    }
    store
        .index_add("dave", &id(), HOUR)
        .await
        .expect("binding only");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.scan(cursor.as_deref(), 5).await.expect("scan");
        assert!(page.ids.len() <= 5);
        pages += 1;
        for sid in page.ids {
            assert!(seen.insert(sid), "returned twice");
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 100, "scan does not end");
    }
    assert_eq!(seen, live);
    assert!(pages >= 5);
    assert!(matches!(
        store.scan(Some("../x"), 5).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn concurrent_tasks_lose_no_updates() {
    let store = FileStore::temporary().await.expect("open");
    let sid = id();
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let (store, sid) = (store.clone(), sid.clone());
        tasks.push(tokio::spawn(async move {
            let mut changes = ChangeSet::default();
            changes.set.insert(format!("k{i}"), val(i));
            store.apply(&sid, changes, HOUR).await.expect("apply");
            store
                .set(&sid, &format!("s{i}"), val(i), HOUR)
                .await
                .expect("set");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(store.get_size(&sid).await.expect("size"), 80);
}

#[tokio::test]
async fn bad_input_is_rejected_before_touching_disk() {
    let store = FileStore::temporary().await.expect("open");
    let sid = id();
    assert!(matches!(
        store.set(&sid, "k", val(1), Duration::ZERO).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.set(&sid, "a\0b", val(1), HOUR).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.try_lock(&sid, Duration::ZERO).await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(tree(store.dir()), BTreeSet::from(["owners/".to_string()]));
}

#[tokio::test]
async fn writers_wait_for_the_advisory_lock_and_can_time_out() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = FileStore::builder()
        .lock_timeout(Duration::from_millis(100))
        .open(tmp.path())
        .await
        .expect("open");
    let sid = id();
    store.set(&sid, "k", val(1), HOUR).await.expect("set");
    // Another holder of the session's advisory lock (as another process would hold it).
    let holder = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(tmp.path().join(format!("lock_{sid}")))
        .expect("open lock file");
    holder.lock().expect("flock");
    let started = std::time::Instant::now();
    assert!(matches!(
        store.set(&sid, "k", val(2), HOUR).await,
        Err(Error::Locked(_))
    ));
    assert!(started.elapsed() >= Duration::from_millis(100));
    // Readers take no lock.
    assert_eq!(
        store
            .get(&sid, "k")
            .await
            .expect("get")
            .map(|v| v.decode::<u32>().expect("u32")),
        Some(1)
    );
    // Released: the waiting writer gets through.
    let writer = {
        let (store, sid) = (store.clone(), sid.clone());
        tokio::spawn(async move { store.set(&sid, "k", val(3), HOUR).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(holder);
    writer.await.expect("task").expect("set after release");
    assert_eq!(
        store
            .get(&sid, "k")
            .await
            .expect("get")
            .map(|v| v.decode::<u32>().expect("u32")),
        Some(3)
    );
}

#[tokio::test]
async fn remove_rewrites_only_what_it_changes_and_keeps_the_deadline() {
    use std::os::unix::fs::MetadataExt as _;
    let store = FileStore::temporary().await.expect("open");
    let sid = id();
    let inode = |p: &Path| fs::metadata(p).expect("metadata").ino();
    // Nothing to remove from a missing session: no file is made.
    store.remove(&sid, "k").await.expect("remove");
    assert!(tree(store.dir()).iter().all(|f| !f.starts_with("sess_")));

    store.set(&sid, "a", val(1), HOUR).await.expect("set");
    store.set(&sid, "b", val(2), HOUR).await.expect("set");
    let path = store.dir().join(format!("sess_{sid}"));
    let deadline = store
        .load(&sid)
        .await
        .expect("load")
        .expect("live")
        .expires_at;
    let before = inode(&path);
    // An absent key: the file is not rewritten (every write renames a new file into place).
    store.remove(&sid, "absent").await.expect("remove");
    assert_eq!(inode(&path), before);
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.remove(&sid, "a").await.expect("remove");
    assert_ne!(inode(&path), before);
    let loaded = store.load(&sid).await.expect("load").expect("live");
    assert_eq!(loaded.expires_at, deadline, "remove keeps the deadline");
    assert_eq!(loaded.data.len(), 1);
}

/// With one disk call at a time, concurrent writers to the same and to different sessions all
/// finish (a writer waiting for a session's lock never holds up the writer it waits for) and
/// none of their keys is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_disk_call_at_a_time_loses_nothing_and_never_stalls() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = FileStore::builder()
        .max_disk_calls(0) // clamped to 1
        .sync(false)
        .open(tmp.path())
        .await
        .expect("open");
    let shared = id();
    let own: Vec<SessionId> = (0..8).map(|_| id()).collect();
    let mut tasks = Vec::new();
    for (w, mine) in own.iter().cloned().enumerate() {
        let store = store.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                store
                    .set(&shared, &format!("w{w}-{i}"), val(i), HOUR)
                    .await?;
                store.set(&mine, &format!("k{i}"), val(i), HOUR).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    let all = async {
        for t in tasks {
            t.await.expect("task").expect("write");
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("writers stalled behind the one disk call");
    assert_eq!(store.get_map(&shared).await.expect("read").len(), 8 * 10);
    for mine in &own {
        assert_eq!(store.get_map(mine).await.expect("read").len(), 10);
    }
}
