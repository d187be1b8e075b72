//! Files written by this driver before the shared record codec (file format version 1, in
//! `tests/fixtures/`, made by the driver's `record.rs` of that time) still read, with their
//! data, deadline and owner, and the next write turns them into the current format.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use session_core::{Data, LockToken, SessionId, Storage, Value, check};
use session_file::FileStore;

/// The deadline every fixture was written with: 2100-01-01T00:00:00.123Z.
const DEADLINE_MS: u64 = 4_102_444_800_123;
/// The owner of `session-v1.bin` and `binding-v1.bin`.
const OWNER: &str = "alice@example.com";
const HOUR: Duration = Duration::from_secs(3600);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn val<T: serde::Serialize + ?Sized>(v: &T) -> Value {
    Value::encode(v).expect("encode")
}

/// The data every session fixture holds.
fn written() -> Data {
    let mut d = Data::new();
    d.insert("user".into(), val("alice"));
    d.insert("roles".into(), val(&["admin", "editor"]));
    d.insert("n".into(), val(&42u64));
    d.insert("ключ🔑".into(), val(&[1u8, 2, 3]));
    d.insert(String::new(), Value::from_bytes(vec![0xc0]));
    d.insert("raw".into(), Value::from_bytes(vec![0x00, 0xff, 0xc1]));
    d
}

/// A temporary store with `name` copied in as the file `<prefix><id>`.
async fn store_with(name: &str, prefix: &str) -> (FileStore, SessionId, PathBuf) {
    let store = FileStore::temporary().await.expect("open");
    let id = SessionId::generate().expect("os random");
    let path = store.dir().join(format!("{prefix}{id}"));
    fs::copy(fixture(name), &path).expect("copy fixture");
    (store, id, path)
}

#[tokio::test]
async fn v1_session_reads_with_its_data_deadline_and_owner() {
    let (store, id, path) = store_with("session-v1.bin", "sess_").await;
    let loaded = store.load(&id).await.expect("load").expect("live");
    assert_eq!(loaded.data, written());
    assert_eq!(
        loaded.expires_at,
        Some(check::from_unix_millis(DEADLINE_MS))
    );
    assert_eq!(
        store.index_owner(&id).await.expect("owner").as_deref(),
        Some(OWNER)
    );
    let user = store.get(&id, "user").await.expect("get").expect("user");
    assert_eq!(user.decode::<String>().expect("decode"), "alice");
    let roles = store.get(&id, "roles").await.expect("get").expect("roles");
    assert_eq!(
        roles.decode::<Vec<String>>().expect("decode"),
        ["admin", "editor"]
    );
    // Scan and purge read the version 1 header: live, so listed and kept.
    assert_eq!(
        store.scan(None, 10).await.expect("scan").ids,
        vec![id.clone()]
    );
    assert_eq!(store.purge_expired().await.expect("purge"), 0);
    assert_eq!(fs::read(&path).expect("read")[4], 1, "reads do not rewrite");

    // `remove` keeps the deadline of the old record; the write is in the current format.
    store.remove(&id, "n").await.expect("remove");
    assert_eq!(fs::read(&path).expect("read")[4], 2);
    let loaded = store.load(&id).await.expect("load").expect("live");
    let mut left = written();
    left.remove("n");
    assert_eq!(loaded.data, left);
    assert_eq!(
        loaded.expires_at,
        Some(check::from_unix_millis(DEADLINE_MS))
    );
    assert_eq!(
        store.index_owner(&id).await.expect("owner").as_deref(),
        Some(OWNER)
    );
}

#[tokio::test]
async fn v1_session_without_owner_reads() {
    let (store, id, _) = store_with("session-no-owner-v1.bin", "sess_").await;
    let loaded = store.load(&id).await.expect("load").expect("live");
    assert_eq!(loaded.data, written());
    assert_eq!(
        loaded.expires_at,
        Some(check::from_unix_millis(DEADLINE_MS))
    );
    assert_eq!(store.index_owner(&id).await.expect("owner"), None);
}

#[tokio::test]
async fn v1_binding_before_the_first_write_is_kept_by_that_write() {
    let (store, id, _) = store_with("binding-v1.bin", "sess_").await;
    // No keys: not a session yet, for reads and scan alike.
    assert_eq!(store.load(&id).await.expect("load"), None);
    assert!(store.scan(None, 10).await.expect("scan").ids.is_empty());
    store.set(&id, "k", val("v"), HOUR).await.expect("set");
    assert_eq!(
        store.index_owner(&id).await.expect("owner").as_deref(),
        Some(OWNER)
    );
}

#[tokio::test]
async fn v1_lease_is_held_until_its_token_unlocks_it() {
    let (store, id, path) = store_with("lease-v1.bin", "lease_").await;
    assert_eq!(store.try_lock(&id, HOUR).await.expect("try_lock"), None);
    assert_eq!(store.purge_expired().await.expect("purge"), 0);
    assert!(path.exists(), "a live lease survives a purge");
    let token = LockToken::from_stored("tok-en_0123456789");
    assert!(store.unlock(&id, &token).await.expect("unlock"));
    assert!(store.try_lock(&id, HOUR).await.expect("try_lock").is_some());
}
