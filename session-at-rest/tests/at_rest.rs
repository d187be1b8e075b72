//! The layers' own behaviour on real stores: hashed names and handles, the `Manager` features
//! on handles, revoking, both key rotations, corrupt and misplaced values, the layer order; and
//! what a real backend (SQLite file, Redis keyspace, PostgreSQL rows, session directory) holds
//! after sessions were written through both layers: neither the ids nor the plaintext values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{at_rest, encryption, hashing, id_key, value_key};
use session_at_rest::{EncryptionLayer, HashedIdsLayer, revoke};
use session_core::driver::Intercepted;
use session_core::{ClientInfo, Config, CookieAction, Error, Manager, SessionId, Storage, Value};
use session_memory::MemoryStore;

const HOUR: Duration = Duration::from_secs(3600);

fn val(text: &str) -> Value {
    Value::encode(text).unwrap()
}

fn text(value: Option<Value>) -> Option<String> {
    value.map(|v| v.decode::<String>().unwrap())
}

fn is_corrupt<T: std::fmt::Debug>(result: session_core::Result<T>) -> String {
    match result {
        Err(Error::Corrupt { reason, .. }) => reason,
        other => panic!("expected Error::Corrupt, got {other:?}"),
    }
}

fn sorted(ids: impl IntoIterator<Item = SessionId>) -> Vec<String> {
    let mut texts: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    texts.sort();
    texts
}

/// A manager over `store` with the default configuration.
fn manager(store: impl Storage) -> Manager {
    Manager::new(Arc::new(store), Config::default()).unwrap()
}

/// Logs `user` in on a new session holding `device`; returns its cookie.
async fn log_in(manager: &Manager, user: &str, device: &str) -> SessionId {
    let s = manager.load(None);
    s.set("device", device).await.unwrap();
    s.login(user).await.unwrap();
    s.save().await.unwrap().cookie.id().cloned().expect("saved")
}

// ----- ids and handles ---------------------------------------------------------------------

#[tokio::test]
async fn the_store_underneath_sees_hashes_of_the_ids_never_the_ids() {
    let memory = MemoryStore::new();
    let store = at_rest(memory.clone());
    let id = SessionId::generate().unwrap();
    store.set(&id, "k", val("v"), HOUR).await.unwrap();
    assert_eq!(memory.get_size(&id).await.unwrap(), 0);
    let name = hashing().handle_of(&id).unwrap();
    assert!(name.is_handle());
    assert_eq!(name.as_str().len(), 43);
    assert_ne!(name, id);
    assert_eq!(memory.get_size(&name).await.unwrap(), 1);
    assert_eq!(
        sorted(memory.scan(None, 100).await.unwrap().ids),
        sorted([name.clone()])
    );
    // The name depends on the key, and is the same for every layer with that key.
    assert_eq!(HashedIdsLayer::new(id_key(1)).handle_of(&id).unwrap(), name);
    assert_ne!(HashedIdsLayer::new(id_key(2)).handle_of(&id).unwrap(), name);
    // A handle is its own handle.
    assert_eq!(hashing().handle_of(&name).unwrap(), name);
}

#[tokio::test]
async fn manager_features_work_on_handles_and_handle_text_addresses_nothing() {
    let memory = MemoryStore::new();
    let m = manager(at_rest(memory.clone()));
    let mut cookies = Vec::new();
    for device in ["laptop", "phone", "tablet"] {
        cookies.push(log_in(&m, "ada", device).await);
    }
    let bob = log_in(&m, "bob", "desktop").await;

    // The active-sessions page lists handles: the stored names, not the cookies.
    let listed = m.sessions_of("ada").await.unwrap();
    let handles: Vec<SessionId> = listed.iter().map(|s| s.id.clone()).collect();
    assert!(handles.iter().all(SessionId::is_handle));
    let expected = cookies.iter().map(|c| hashing().handle_of(c).unwrap());
    assert_eq!(sorted(handles.clone()), sorted(expected));
    assert!(handles.iter().all(|h| !cookies.contains(h)));
    for info in &listed {
        let meta = info.meta.as_ref().expect("the page shows the metadata");
        assert_eq!(meta.user.as_deref(), Some("ada"));
        assert!(info.expires_at.is_some());
    }

    // Every device sees a value set for the user.
    assert_eq!(
        m.set_for_user("ada", "notice", "new password")
            .await
            .unwrap(),
        3
    );
    for cookie in &cookies {
        let s = m.load(Some(cookie.as_str()));
        assert_eq!(
            s.get::<String>("notice").await.unwrap().as_deref(),
            Some("new password")
        );
    }
    assert_eq!(m.load(&bob).get::<String>("notice").await.unwrap(), None);

    // The text of a handle, as a cookie would bring it, is an ordinary id: hashed again, it
    // addresses no session, at the manager and at the store.
    let store = m.store();
    for handle in &handles {
        let as_cookie = SessionId::parse(handle.as_str()).unwrap();
        assert!(!as_cookie.is_handle());
        assert_eq!(store.get_size(&as_cookie).await.unwrap(), 0);
        assert!(store.load(&as_cookie).await.unwrap().is_none());
        assert_eq!(store.index_owner(&as_cookie).await.unwrap(), None);
        let s = m.load(Some(handle.as_str()));
        assert!(!s.exists().await.unwrap());
        assert_eq!(s.get::<String>("device").await.unwrap(), None);
        // ...and removing it removes nothing.
        store.remove_all(&as_cookie).await.unwrap();
    }
    assert_eq!(m.sessions_of("ada").await.unwrap().len(), 3);

    // A listed handle, given back as it is, addresses its session: destroy one through the
    // manager (its observers are told).
    let s = m.load(&handles[0]);
    assert!(s.get::<String>("device").await.unwrap().is_some());
    s.destroy().await.unwrap();
    s.save().await.unwrap();
    let left = m.sessions_of("ada").await.unwrap();
    assert_eq!(left.len(), 2);
    let gone = cookies
        .iter()
        .find(|c| hashing().handle_of(c).unwrap() == handles[0])
        .unwrap();
    assert!(!m.load(Some(gone.as_str())).exists().await.unwrap());

    // Log out everywhere.
    assert_eq!(m.destroy_user("ada").await.unwrap(), 2);
    assert!(m.sessions_of("ada").await.unwrap().is_empty());
    for cookie in &cookies {
        assert!(!m.load(Some(cookie.as_str())).exists().await.unwrap());
    }
    assert!(m.load(&bob).exists().await.unwrap(), "bob's session stays");
    assert_eq!(memory.scan(None, 100).await.unwrap().ids.len(), 1);
}

#[tokio::test]
async fn revoke_ends_only_the_owners_own_session() {
    let (inner, _dir) = common::sqlite().await;
    let m = manager(at_rest(inner));
    let ada: Vec<SessionId> = [
        log_in(&m, "ada", "laptop").await,
        log_in(&m, "ada", "phone").await,
    ]
    .into();
    let bob = log_in(&m, "bob", "desktop").await;
    let store = m.store().as_ref();
    let bob_handle = m.sessions_of("bob").await.unwrap()[0].id.to_string();

    // Another user's handle, a real cookie, garbage: nothing happens.
    for text in [bob_handle.as_str(), ada[0].as_str(), "../../etc/passwd", ""] {
        assert!(!revoke(store, "ada", text).await.unwrap(), "{text:?}");
    }
    assert!(m.load(&bob).exists().await.unwrap());
    assert_eq!(m.sessions_of("ada").await.unwrap().len(), 2);

    // The posted text of one of her handles ends that session, and only it.
    let target = hashing().handle_of(&ada[1]).unwrap().to_string();
    assert!(revoke(store, "ada", &target).await.unwrap());
    assert!(!m.load(&ada[1]).exists().await.unwrap());
    assert!(m.load(&ada[0]).exists().await.unwrap());
    assert!(
        !revoke(store, "ada", &target).await.unwrap(),
        "already gone"
    );
    assert!(revoke(store, "bob", &bob_handle).await.unwrap());
    assert!(!m.load(&bob).exists().await.unwrap());
}

#[tokio::test]
async fn keys_are_checked_and_never_shown() {
    for len in [0, 16, 31] {
        assert!(matches!(
            session_at_rest::IdKey::new(&vec![1; len]),
            Err(Error::InvalidInput(_))
        ));
    }
    assert!(session_at_rest::IdKey::new(&[1; 32]).is_ok());
    assert!(session_at_rest::IdKey::new(&[1; 100]).is_ok());
    for len in [0, 16, 31, 33, 64] {
        assert!(matches!(
            session_at_rest::ValueKey::new(1, &vec![1; len]),
            Err(Error::InvalidInput(_))
        ));
    }
    let dup = EncryptionLayer::new(value_key(3)).with_old_key(value_key(3));
    assert!(matches!(dup, Err(Error::InvalidInput(_))));
    let layer = EncryptionLayer::new(value_key(3))
        .with_old_key(value_key(2))
        .unwrap();
    assert_eq!(layer.current_key_id(), 3);
    let shown = format!(
        "{:?} {:?} {layer:?} {:?}",
        session_at_rest::IdKey::new(&[0xab; 32]).unwrap(),
        session_at_rest::ValueKey::new(7, &[0xab; 32]).unwrap(),
        HashedIdsLayer::new(id_key(0xab)),
    );
    assert!(!shown.contains("171") && !shown.contains("ab, ab") && !shown.contains("0xab"));
}

// ----- id key rotation ---------------------------------------------------------------------

/// Sessions written under id key 1 are read through a layer with key 2 and old key 1, moved
/// under key 2 by their next write (data, deadline, owner), and then readable with key 2 alone.
async fn id_key_rotation<D: session_core::driver::Driver + Clone>(inner: D) {
    let enc = encryption();
    let old_layer = HashedIdsLayer::new(id_key(1));
    let new_layer = HashedIdsLayer::new(id_key(2)).with_old_key(id_key(1));
    let old = inner.clone().layer(enc.clone()).layer(old_layer.clone());
    let rotated = inner.clone().layer(enc.clone()).layer(new_layer.clone());
    let only_new = inner
        .clone()
        .layer(enc.clone())
        .layer(HashedIdsLayer::new(id_key(2)));
    let old_h = |id: &SessionId| old_layer.handle_of(id).unwrap();
    let new_h = |id: &SessionId| new_layer.handle_of(id).unwrap();

    let [a, b, c, d] = [(); 4].map(|()| SessionId::generate().unwrap());
    for (id, text) in [(&a, "a"), (&b, "b"), (&c, "c"), (&d, "d")] {
        old.set(id, "k", val(text), HOUR).await.unwrap();
    }
    old.index_add("alice", &a, HOUR).await.unwrap();
    old.index_add("alice", &b, HOUR).await.unwrap();
    let a_deadline = inner.load(&old_h(&a)).await.unwrap().unwrap().expires_at;

    // Reads find them under the old key, and move nothing.
    assert_eq!(
        text(rotated.get(&a, "k").await.unwrap()).as_deref(),
        Some("a")
    );
    assert_eq!(rotated.get_size(&b).await.unwrap(), 1);
    assert_eq!(rotated.get_map(&c).await.unwrap().len(), 1);
    assert!(rotated.load(&d).await.unwrap().is_some());
    assert!(rotated.get_session(&d, HOUR, None).await.unwrap().is_some());
    assert_eq!(
        rotated.index_owner(&a).await.unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(inner.get_size(&new_h(&a)).await.unwrap(), 0);
    assert_eq!(inner.get_size(&old_h(&a)).await.unwrap(), 1);
    // Listing shows where they are; a listed handle reaches its session directly.
    let listed = rotated.index_sessions("alice").await.unwrap();
    assert_eq!(sorted(listed.clone()), sorted([old_h(&a), old_h(&b)]));
    assert_eq!(only_new.get_size(&listed[0]).await.unwrap(), 1);
    // Key 2 alone does not see them yet.
    assert_eq!(only_new.get_size(&a).await.unwrap(), 0);

    // A write moves the session. `remove` keeps the deadline: the moved session has the same.
    rotated.remove(&a, "absent").await.unwrap();
    assert_eq!(inner.get_size(&old_h(&a)).await.unwrap(), 0);
    let moved = inner.load(&new_h(&a)).await.unwrap().expect("moved");
    let stored = moved.data.get("k").expect("moved with its data");
    assert_eq!(
        (stored.as_bytes()[0], stored.len()),
        (1, val("a").len() + 45),
        "still encrypted"
    );
    // The driver API sets deadlines as now + TTL: the copy keeps the deadline to within its
    // own latency, never earlier.
    let late = moved
        .expires_at
        .unwrap()
        .duration_since(a_deadline.unwrap())
        .expect("the moved session's deadline is not earlier");
    assert!(late <= Duration::from_millis(250), "{late:?} later");
    assert_eq!(
        only_new.index_owner(&a).await.unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(
        sorted(rotated.index_sessions("alice").await.unwrap()),
        sorted([new_h(&a), old_h(&b)])
    );
    rotated.set(&b, "k2", val("b2"), HOUR).await.unwrap();
    rotated.update_ttl(&c, HOUR).await.unwrap();
    assert_eq!(
        sorted(only_new.index_sessions("alice").await.unwrap()),
        sorted([new_h(&a), new_h(&b)])
    );
    // The old key can go for the moved sessions.
    assert_eq!(
        text(only_new.get(&a, "k").await.unwrap()).as_deref(),
        Some("a")
    );
    assert_eq!(only_new.get_map(&b).await.unwrap().len(), 2);
    assert_eq!(
        text(only_new.get(&c, "k").await.unwrap()).as_deref(),
        Some("c")
    );
    for id in [&a, &b, &c] {
        assert_eq!(inner.get_size(&old_h(id)).await.unwrap(), 0);
    }
    // d was never written since: only under the old key, and removed from there too.
    assert_eq!(only_new.get_size(&d).await.unwrap(), 0);
    rotated.remove_all(&d).await.unwrap();
    assert_eq!(inner.get_size(&old_h(&d)).await.unwrap(), 0);
    assert_eq!(rotated.get_size(&d).await.unwrap(), 0);
}

/// Sixteen requests write one session under an old key at once: the session is moved once, and
/// every write is there afterwards.
async fn concurrent_writes_move_a_session_once<D: session_core::driver::Driver + Clone>(inner: D) {
    let old = inner
        .clone()
        .layer(encryption())
        .layer(HashedIdsLayer::new(id_key(1)));
    let rotated = Arc::new(
        inner
            .clone()
            .layer(encryption())
            .layer(HashedIdsLayer::new(id_key(2)).with_old_key(id_key(1))),
    );
    let id = SessionId::generate().unwrap();
    old.set(&id, "base", val("base"), HOUR).await.unwrap();
    old.index_add("carol", &id, HOUR).await.unwrap();
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let (rotated, id) = (Arc::clone(&rotated), id.clone());
            tokio::spawn(async move {
                rotated
                    .set(&id, &format!("k{i}"), val(&format!("v{i}")), HOUR)
                    .await
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    let only_new = inner
        .clone()
        .layer(encryption())
        .layer(HashedIdsLayer::new(id_key(2)));
    let data = only_new.get_map(&id).await.unwrap();
    assert_eq!(
        data.len(),
        17,
        "keys: {:?}",
        data.keys().collect::<Vec<_>>()
    );
    let old_name = HashedIdsLayer::new(id_key(1)).handle_of(&id).unwrap();
    assert_eq!(inner.get_size(&old_name).await.unwrap(), 0);
    assert_eq!(
        only_new.index_owner(&id).await.unwrap().as_deref(),
        Some("carol")
    );
}

#[tokio::test]
async fn id_key_rotation_on_memory() {
    id_key_rotation(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_key_rotation_on_sqlite() {
    let (inner, _dir) = common::sqlite().await;
    id_key_rotation(inner.clone()).await;
    concurrent_writes_move_a_session_once(inner).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_key_rotation_on_redis() {
    let inner = common::redis("rotate").await;
    id_key_rotation(inner.clone()).await;
    concurrent_writes_move_a_session_once(inner.clone()).await;
    inner.clear_prefix().await.unwrap();
}

// ----- value key rotation ------------------------------------------------------------------

/// The key id a stored value names.
fn key_id_of(stored: &Value) -> u32 {
    let b = stored.as_bytes();
    assert_eq!(b[0], 1, "format byte");
    u32::from_be_bytes([b[1], b[2], b[3], b[4]])
}

async fn value_key_rotation<D: session_core::driver::Driver + Clone>(inner: D) {
    let with = |layer: EncryptionLayer| inner.clone().layer(layer).layer(hashing());
    let one = with(EncryptionLayer::new(value_key(1)));
    let rotated = with(
        EncryptionLayer::new(value_key(2))
            .with_old_key(value_key(1))
            .unwrap(),
    );
    let two = with(EncryptionLayer::new(value_key(2)));
    let id = SessionId::generate().unwrap();
    let name = hashing().handle_of(&id).unwrap();

    one.set(&id, "old", val("o"), HOUR).await.unwrap();
    assert_eq!(
        text(rotated.get(&id, "old").await.unwrap()).as_deref(),
        Some("o")
    );
    rotated.set(&id, "new", val("n"), HOUR).await.unwrap();
    assert_eq!(
        key_id_of(&inner.get(&name, "old").await.unwrap().unwrap()),
        1
    );
    assert_eq!(
        key_id_of(&inner.get(&name, "new").await.unwrap().unwrap()),
        2
    );
    assert_eq!(rotated.get_map(&id).await.unwrap().len(), 2);

    // Key 2 alone reads what key 2 wrote; a value under key 1 is corrupt to it, naming the id.
    assert_eq!(
        text(two.get(&id, "new").await.unwrap()).as_deref(),
        Some("n")
    );
    let why = is_corrupt(two.get(&id, "old").await);
    assert!(why.contains("key id 1"), "{why}");
    is_corrupt(two.get_map(&id).await);
    is_corrupt(two.load(&id).await);
    // Key 1 alone cannot read what key 2 wrote.
    is_corrupt(one.get(&id, "new").await);

    // Writing the old value again encrypts it with key 2: key 1 is no longer needed.
    rotated.set(&id, "old", val("o2"), HOUR).await.unwrap();
    assert_eq!(
        key_id_of(&inner.get(&name, "old").await.unwrap().unwrap()),
        2
    );
    assert_eq!(two.get_map(&id).await.unwrap().len(), 2);
}

#[tokio::test]
async fn value_key_rotation_on_memory() {
    value_key_rotation(MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_key_rotation_on_sqlite() {
    let (inner, _dir) = common::sqlite().await;
    value_key_rotation(inner).await;
}

/// With `Config::rotate_every`, the next save of a session used after a key change writes it
/// whole under a new id, with the newest keys: both old keys can then go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regeneration_moves_a_session_to_the_newest_keys() {
    let (inner, _dir) = common::sqlite().await;
    let config = Config {
        rotate_every: Some(Duration::from_millis(300)),
        rotate_destroy_old: true,
        ..Config::default()
    };
    let stack = |id: HashedIdsLayer, values: EncryptionLayer| {
        let store = inner.clone().layer(values).layer(id);
        Manager::new(Arc::new(store), config.clone()).unwrap()
    };
    let before = stack(
        HashedIdsLayer::new(id_key(1)),
        EncryptionLayer::new(value_key(1)),
    );
    let s = before.load(None);
    s.set("cart", &["apple", "pear"]).await.unwrap();
    s.login("ada").await.unwrap();
    let first = s.save().await.unwrap().cookie.id().cloned().unwrap();

    let during = stack(
        HashedIdsLayer::new(id_key(2)).with_old_key(id_key(1)),
        EncryptionLayer::new(value_key(2))
            .with_old_key(value_key(1))
            .unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let s = during.load(Some(first.as_str()));
    assert_eq!(
        s.get::<Vec<String>>("cart").await.unwrap().unwrap().len(),
        2
    );
    let CookieAction::Set { id: second, .. } = s.save().await.unwrap().cookie else {
        panic!("the save after rotate_every regenerates the id");
    };
    assert_ne!(second, first);

    let after = stack(
        HashedIdsLayer::new(id_key(2)),
        EncryptionLayer::new(value_key(2)),
    );
    let s = after.load(Some(second.as_str()));
    assert_eq!(
        s.get::<Vec<String>>("cart").await.unwrap().unwrap().len(),
        2
    );
    assert_eq!(s.user().await.unwrap().as_deref(), Some("ada"));
    assert_eq!(after.sessions_of("ada").await.unwrap().len(), 1);
    // Nothing in the store is under key 1 any more: one session, every value under key 2.
    let names = inner.scan(None, 100).await.unwrap().ids;
    assert_eq!(
        sorted(names.clone()),
        sorted([HashedIdsLayer::new(id_key(2)).handle_of(&second).unwrap()])
    );
    let data = inner.get_map(&names[0]).await.unwrap();
    assert!(data.values().all(|v| key_id_of(v) == 2), "{data:?}");
}

// ----- corrupt and misplaced values --------------------------------------------------------

/// A small deterministic generator for the random bytes of the corruption test.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Every way to read `key` of `id` fails with `Error::Corrupt`.
async fn reads_are_corrupt(store: &impl Storage, id: &SessionId, key: &str, what: &str) {
    for result in [
        store.get(id, key).await.map(drop),
        store.get_map(id).await.map(drop),
        store.load(id).await.map(drop),
        store.get_session(id, HOUR, None).await.map(drop),
    ] {
        match result {
            Err(Error::Corrupt { .. }) => {}
            other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn tampered_malformed_and_misplaced_values_are_corrupt_never_data() {
    let memory = MemoryStore::new();
    let store = at_rest(memory.clone());
    let (id, other) = (
        SessionId::generate().unwrap(),
        SessionId::generate().unwrap(),
    );
    let (name, other_name) = (
        hashing().handle_of(&id).unwrap(),
        hashing().handle_of(&other).unwrap(),
    );
    store.set(&id, "a", val("secret"), HOUR).await.unwrap();
    store.set(&id, "b", val("other"), HOUR).await.unwrap();
    store.set(&other, "a", val("theirs"), HOUR).await.unwrap();
    let good = memory.get(&name, "a").await.unwrap().unwrap();
    let good = good.as_bytes().to_vec();
    assert_eq!(good.len(), val("secret").len() + 45);

    let put = |key: &'static str, bytes: Vec<u8>| {
        let (memory, name) = (memory.clone(), name.clone());
        async move {
            memory
                .set(&name, key, Value::from(bytes), HOUR)
                .await
                .unwrap()
        }
    };
    // Every single flipped bit position (one per byte), every truncation.
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        put("a", bad).await;
        reads_are_corrupt(&store, &id, "a", &format!("byte {i} changed")).await;
    }
    for n in 0..good.len() {
        put("a", good[..n].to_vec()).await;
        reads_are_corrupt(&store, &id, "a", &format!("cut to {n} bytes")).await;
    }
    // Another format, an unknown key id, the plaintext itself, random bytes.
    let mut format = good.clone();
    format[0] = 2;
    put("a", format).await;
    assert!(is_corrupt(store.get(&id, "a").await).contains("format 2"));
    let mut unknown = good.clone();
    unknown[1..5].copy_from_slice(&99u32.to_be_bytes());
    put("a", unknown).await;
    assert!(is_corrupt(store.get(&id, "a").await).contains("key id 99"));
    put("a", val("secret").into_bytes().to_vec()).await;
    reads_are_corrupt(&store, &id, "a", "plaintext").await;
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let len = usize::try_from(rng.next() % 160).unwrap();
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next().to_le_bytes()[0]).collect();
        if round % 2 == 0 && len > 0 {
            bytes[0] = 1; // past the format check, into the key id and the AEAD
        }
        put("a", bytes).await;
        reads_are_corrupt(&store, &id, "a", &format!("random bytes, round {round}")).await;
    }

    // A value copied to another key, or to another session, does not decrypt there.
    put("a", good.clone()).await;
    assert_eq!(
        text(store.get(&id, "a").await.unwrap()).as_deref(),
        Some("secret")
    );
    put("b", good.clone()).await;
    reads_are_corrupt(&store, &id, "b", "copied to another key").await;
    memory
        .set(&other_name, "a", Value::from(good.clone()), HOUR)
        .await
        .unwrap();
    reads_are_corrupt(&store, &other, "a", "copied to another session").await;
    // Nor under another key id (same bytes, the id changed to a key the layer holds).
    let two = memory.clone().layer(
        EncryptionLayer::new(value_key(2))
            .with_old_key(value_key(1))
            .unwrap(),
    );
    let mut relabelled = good.clone();
    relabelled[1..5].copy_from_slice(&2u32.to_be_bytes());
    memory
        .set(&name, "a", Value::from(relabelled), HOUR)
        .await
        .unwrap();
    is_corrupt(two.get(&name, "a").await);
}

#[tokio::test]
async fn encryption_above_the_hashing_fails_loudly_on_handles() {
    // The wrong order: reads by id work, reads through a handle are Corrupt, not wrong data.
    let m = manager(MemoryStore::new().layer(hashing()).layer(encryption()));
    let cookie = log_in(&m, "ada", "laptop").await;
    assert_eq!(
        m.load(&cookie)
            .get::<String>("device")
            .await
            .unwrap()
            .as_deref(),
        Some("laptop")
    );
    let why = match m.sessions_of("ada").await {
        Err(Error::Corrupt { reason, .. }) => reason,
        other => panic!("expected Corrupt, got {other:?}"),
    };
    assert!(why.contains("above HashedIdsLayer"), "{why}");
}

// ----- what the raw backend holds ----------------------------------------------------------

/// What was written through the layers, and what must not be found in the backend.
struct Written {
    /// The cookies of the sessions (after login: the ids the clients hold).
    cookies: Vec<SessionId>,
    /// Strings that must appear nowhere: every id, and the plaintexts of the values.
    needles: Vec<String>,
}

/// Writes sessions through a manager on `store` (two users with two devices each, one
/// anonymous session, flash data, client metadata) and one value through the store directly.
async fn write_sessions(store: impl Storage) -> Written {
    let m = manager(store);
    let mut cookies = Vec::new();
    let mut needles = vec![
        "PLAINTEXT-cart-7f3a9".to_owned(),
        "PLAINTEXT-flash-b2c4".to_owned(),
        "PLAINTEXT-agent-Mozilla".to_owned(),
        "PLAINTEXT-direct-e5d1".to_owned(),
        "203.0.113.77".to_owned(),
    ];
    let client = ClientInfo::new(
        Some("203.0.113.77".parse().unwrap()),
        Some("PLAINTEXT-agent-Mozilla/5.0"),
    );
    for user in ["ada@example.com", "bob@example.com"] {
        for _ in 0..2 {
            let s = m.load_with(None, client.clone());
            s.set("cart", &["PLAINTEXT-cart-7f3a9"]).await.unwrap();
            s.save().await.unwrap();
            // the id before the login, which the login replaces
            needles.push(s.id().await.unwrap().to_string());
            s.set_flash("notice", "PLAINTEXT-flash-b2c4").await.unwrap();
            s.login(user).await.unwrap();
            cookies.push(s.save().await.unwrap().cookie.id().cloned().unwrap());
        }
    }
    let s = m.load_with(None, client.clone());
    s.set("cart", &["PLAINTEXT-cart-7f3a9"]).await.unwrap();
    cookies.push(s.save().await.unwrap().cookie.id().cloned().unwrap());
    let direct = SessionId::generate().unwrap();
    m.store()
        .set(&direct, "direct", val("PLAINTEXT-direct-e5d1"), HOUR)
        .await
        .unwrap();
    cookies.push(direct);
    needles.extend(cookies.iter().map(ToString::to_string));
    // Still readable through the layers.
    for cookie in &cookies[..5] {
        let s = m.load(Some(cookie.as_str()));
        assert_eq!(
            s.get::<Vec<String>>("cart").await.unwrap().unwrap().len(),
            1
        );
    }
    assert_eq!(m.sessions_of("ada@example.com").await.unwrap().len(), 2);
    Written { cookies, needles }
}

impl Written {
    /// The handles (stored names) of the sessions.
    fn handles(&self) -> Vec<String> {
        self.cookies
            .iter()
            .map(|c| hashing().handle_of(c).unwrap().to_string())
            .collect()
    }

    /// Panics if `bytes` (something of the backend, described by `what`) holds a needle, as
    /// bytes or as lower-case hex.
    fn assert_clean(&self, what: &str, bytes: &[u8]) {
        for needle in &self.needles {
            let hex: String = needle.bytes().map(|b| format!("{b:02x}")).collect();
            for form in [needle.as_bytes(), hex.as_bytes()] {
                assert!(
                    !bytes.windows(form.len()).any(|w| w == form),
                    "{what} holds {needle:?}"
                );
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_holds_neither_ids_nor_values() {
    let (inner, dir) = common::sqlite().await;
    let written = write_sessions(at_rest(inner.clone())).await;

    // Every row of every table, as SQL sees it.
    let conn = rusqlite::Connection::open_with_flags(
        dir.path().join("sessions.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut ids = BTreeSet::new();
    let mut owners = Vec::new();
    for table in &tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for (i, column) in columns.iter().enumerate() {
                let bytes = match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                        b.to_vec()
                    }
                    _ => continue,
                };
                written.assert_clean(&format!("{table}.{column}"), &bytes);
                let text = String::from_utf8_lossy(&bytes).into_owned();
                match column.as_str() {
                    "id" if table == "sessions" => {
                        ids.insert(text);
                    }
                    "owner" => owners.push(text),
                    _ => {}
                }
            }
        }
    }
    // The sessions are there, under their handles (plus the pre-login ids' retired records,
    // which are hashes too); the owner names are stored as they are (a documented decision).
    let handles: BTreeSet<String> = written.handles().into_iter().collect();
    assert!(handles.is_subset(&ids), "{handles:?} not all in {ids:?}");
    assert!(ids.iter().all(|id| id.len() == 43));
    owners.sort();
    assert_eq!(
        owners,
        [
            "ada@example.com",
            "ada@example.com",
            "bob@example.com",
            "bob@example.com"
        ]
    );

    // And the files themselves, as a copy of them would be: the database, its WAL, its shm.
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        written.assert_clean(&path.display().to_string(), &bytes);
        files += 1;
    }
    assert!(files >= 2, "the database and its WAL");
    drop(inner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_keyspace_holds_neither_ids_nor_values() {
    let inner = common::redis("raw").await;
    let written = write_sessions(at_rest(inner.clone())).await;
    let client = inner.client();
    let pattern = format!("{}*", inner.prefix());
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = client
            .query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000),
            )
            .await
            .unwrap();
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert!(!keys.is_empty());
    let (mut hashes, mut owner_sets) = (0, 0);
    for key in &keys {
        let name = String::from_utf8_lossy(key).into_owned();
        written.assert_clean(&format!("key {name}"), key);
        let kind: String = client.query(redis::cmd("TYPE").arg(key)).await.unwrap();
        let contents: Vec<Vec<u8>> = match kind.as_str() {
            "hash" => {
                hashes += 1;
                client.query(redis::cmd("HGETALL").arg(key)).await.unwrap()
            }
            "set" => {
                owner_sets += 1;
                client.query(redis::cmd("SMEMBERS").arg(key)).await.unwrap()
            }
            "string" => vec![client.query(redis::cmd("GET").arg(key)).await.unwrap()],
            // The driver's live index: the sessions' stored names, scored by deadline.
            "zset" => client
                .query(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1))
                .await
                .unwrap(),
            other => panic!("unexpected {other} at {name}"),
        };
        for item in &contents {
            written.assert_clean(&format!("{kind} {name}"), item);
        }
        // A hash's values are encrypted (its deadline field aside).
        if kind == "hash" {
            for pair in contents.chunks(2) {
                if !contains(&pair[0], "deadline") {
                    assert_eq!(pair[1][0], 1, "value of {name} not in the encrypted format");
                }
            }
        }
    }
    // Every session's hash is there, under its handle; owner names are stored as they are.
    for handle in written.handles() {
        assert!(
            keys.iter().any(|k| contains(k, &handle)),
            "no key of handle {handle}"
        );
    }
    assert!(hashes >= written.cookies.len());
    assert!(owner_sets >= 2);
    assert!(keys.iter().any(|k| contains(k, "ada@example.com")));
    inner.clear_prefix().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rows_hold_neither_ids_nor_values() {
    use session_postgres::sqlx;
    use session_sql::testing::Suite;
    type Pg = Suite<common::Postgres>;
    let ns = Pg::create_namespace("atrestraw").await;
    let inner = Pg::open_in(&ns).await;
    let written = write_sessions(at_rest(inner.clone())).await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(&ns)
    .fetch_all(inner.pool())
    .await
    .unwrap();
    assert!(tables.len() >= 4, "{tables:?}");
    let mut all = String::new();
    for table in &tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT row_to_json(t)::text FROM \"{ns}\".\"{table}\" t"
        ))
        .fetch_all(inner.pool())
        .await
        .unwrap();
        for row in rows {
            written.assert_clean(&format!("{table} row {row}"), row.as_bytes());
            all.push_str(&row);
        }
    }
    for handle in written.handles() {
        assert!(all.contains(&handle), "no row of handle {handle}");
    }
    assert!(all.contains("ada@example.com"));
    inner.close().await;
    Pg::drop_namespace(&ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_files_hold_neither_ids_nor_values() {
    let dir = tempfile::tempdir().unwrap();
    let inner = session_file::FileStore::open(dir.path()).await.unwrap();
    let written = write_sessions(at_rest(inner.clone())).await;
    let mut names = String::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(path) = stack.pop() {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        written.assert_clean(
            &format!("name {}", path.display()),
            name.unwrap_or_default().as_bytes(),
        );
        names.push_str(&path.display().to_string());
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            written.assert_clean(&path.display().to_string(), &std::fs::read(&path).unwrap());
        }
    }
    for handle in written.handles() {
        assert!(names.contains(&handle), "no file of handle {handle}");
    }
    drop(inner);
}

/// The conformance hook is a test helper; make sure it is exercised the way the suite uses it.
#[tokio::test]
async fn the_conformance_hook_translates_handles_back() {
    let store = Intercepted::new(
        at_rest(MemoryStore::new()),
        common::Unhandle::new(hashing()),
    );
    let id = SessionId::generate().unwrap();
    store.set(&id, "k", val("v"), HOUR).await.unwrap();
    store.index_add("zoe", &id, HOUR).await.unwrap();
    assert_eq!(store.index_sessions("zoe").await.unwrap(), vec![id.clone()]);
    assert_eq!(store.scan(None, 10).await.unwrap().ids, vec![id]);
}
