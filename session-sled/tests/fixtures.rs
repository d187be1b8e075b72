//! Records written by this driver before the shared record codec (version 1: `0x01`, deadline,
//! MessagePack `{owner, data}`; in `tests/fixtures/`, made by the driver's `record.rs` of that
//! time) still read, with their data, deadline and owner, and the next write turns them into
//! the current format.

use std::time::Duration;

use session_core::{Data, SessionId, Storage, Value, check};
use session_sled::SledStore;

/// The deadline every fixture was written with: 2100-01-01T00:00:00.123Z.
const DEADLINE_MS: u64 = 4_102_444_800_123;
/// The owner of `session-v1.bin` and `binding-v1.bin`.
const OWNER: &str = "alice@example.com";
const HOUR: Duration = Duration::from_secs(3600);

const SESSION_V1: &[u8] = include_bytes!("fixtures/session-v1.bin");
const SESSION_NO_OWNER_V1: &[u8] = include_bytes!("fixtures/session-no-owner-v1.bin");
const BINDING_V1: &[u8] = include_bytes!("fixtures/binding-v1.bin");

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

/// A temporary store holding `record` as session `id`, with the index entries the version 1
/// driver wrote beside it (expiry at the deadline, owner entry when `owner` is given).
async fn store_with(record: &[u8], owner: Option<&str>) -> (SledStore, SessionId) {
    let store = SledStore::builder().temporary().await.expect("open");
    let id = SessionId::generate().expect("os random");
    let tree = |name: &str| {
        store
            .db()
            .open_tree(format!("session.{name}"))
            .expect("tree")
    };
    tree("sessions")
        .insert(id.as_str(), record)
        .expect("insert record");
    let mut expiry = DEADLINE_MS.to_be_bytes().to_vec();
    expiry.extend_from_slice(id.as_str().as_bytes());
    tree("expiry").insert(expiry, &[]).expect("insert expiry");
    if let Some(owner) = owner {
        let mut key = owner.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(id.as_str().as_bytes());
        tree("owners").insert(key, &[]).expect("insert owner");
    }
    (store, id)
}

fn stored(store: &SledStore, id: &SessionId) -> Vec<u8> {
    let tree = store.db().open_tree("session.sessions").expect("tree");
    tree.get(id.as_str())
        .expect("get")
        .expect("record")
        .to_vec()
}

#[tokio::test]
async fn v1_session_reads_with_its_data_deadline_and_owner() {
    let (store, id) = store_with(SESSION_V1, Some(OWNER)).await;
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
    assert_eq!(
        store.index_sessions(OWNER).await.expect("index"),
        vec![id.clone()]
    );
    let roles = store.get(&id, "roles").await.expect("get").expect("roles");
    assert_eq!(
        roles.decode::<Vec<String>>().expect("decode"),
        ["admin", "editor"]
    );
    assert_eq!(
        store.scan(None, 10).await.expect("scan").ids,
        vec![id.clone()]
    );
    assert_eq!(store.purge_expired().await.expect("purge"), 0);
    assert_eq!(stored(&store, &id), SESSION_V1, "reads do not rewrite");

    // `remove` keeps the deadline of the old record; the write is in the current format.
    store.remove(&id, "n").await.expect("remove");
    assert_eq!(&stored(&store, &id)[..5], b"SREC\x01");
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
    let (store, id) = store_with(SESSION_NO_OWNER_V1, None).await;
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
    let (store, id) = store_with(BINDING_V1, Some(OWNER)).await;
    assert_eq!(store.load(&id).await.expect("load"), None);
    assert!(store.index_sessions(OWNER).await.expect("index").is_empty());
    store.set(&id, "k", val("v"), HOUR).await.expect("set");
    assert_eq!(
        store.index_owner(&id).await.expect("owner").as_deref(),
        Some(OWNER)
    );
    assert_eq!(
        store.index_sessions(OWNER).await.expect("index"),
        vec![id.clone()]
    );
}
