//! Items written by this driver before the shared record codec (`"SM" 0x01`, deadline,
//! MessagePack map; `tests/fixtures/session-v1.bin`, made by the driver's `record.rs` of that
//! time) still read, with their data and deadline (that layout had no owner), and the next write
//! turns them into the current layout. Needs memcached (`scripts/services`).

mod common;

use std::time::Duration;

use async_memcached::AsciiProtocol;
use common::{delete_prefix, open_shared, raw_client};
use session_core::{Data, SessionId, Storage, Value, check};

/// The deadline the fixture was written with: 2038-01-13T23:33:20.123Z, about the latest one
/// memcached can hold (it keeps an exptime as a 32-bit unix time).
const DEADLINE_MS: u64 = 2_147_000_000_123;
const SESSION_V1: &[u8] = include_bytes!("fixtures/session-v1.bin");

macro_rules! val {
    ($v:expr) => {
        Value::encode($v).expect("encode")
    };
}

/// The data the fixture holds.
fn written() -> Data {
    let mut d = Data::new();
    d.insert("user".into(), val!("alice"));
    d.insert("roles".into(), val!(&["admin", "editor"]));
    d.insert("n".into(), val!(&42u64));
    d.insert("ключ🔑".into(), val!(&[1u8, 2, 3]));
    d.insert(String::new(), Value::from_bytes(vec![0xc0]));
    d.insert("raw".into(), Value::from_bytes(vec![0x00, 0xff, 0xc1]));
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_item_reads_with_its_data_and_deadline() {
    let store = open_shared("fixture").await;
    let mut raw = raw_client().await;
    let id = SessionId::generate().expect("OS randomness");
    let key = store.session_key(&id);
    raw.set(&key, SESSION_V1, Some(600), None)
        .await
        .expect("raw set");

    let loaded = store.load(&id).await.expect("load").expect("live");
    assert_eq!(loaded.data, written());
    assert_eq!(
        loaded.expires_at,
        Some(check::from_unix_millis(DEADLINE_MS))
    );
    let roles = store.get(&id, "roles").await.expect("get").expect("roles");
    assert_eq!(
        roles.decode::<Vec<String>>().expect("decode"),
        ["admin", "editor"]
    );
    let item = raw.get(&key).await.expect("get").expect("item");
    assert_eq!(
        item.data.as_deref(),
        Some(SESSION_V1),
        "reads do not rewrite"
    );

    // `remove` keeps the deadline of the old item; the write is in the current layout.
    store.remove(&id, "n").await.expect("remove");
    let item = raw.get(&key).await.expect("get").expect("item");
    assert_eq!(
        item.data.as_deref().map(|d| &d[..5]),
        Some(&b"SREC\x01"[..])
    );
    let loaded = store.load(&id).await.expect("load").expect("live");
    let mut left = written();
    left.remove("n");
    assert_eq!(loaded.data, left);
    assert_eq!(
        loaded.expires_at,
        Some(check::from_unix_millis(DEADLINE_MS))
    );
    store
        .set(&id, "k", val!("v"), Duration::from_secs(60))
        .await
        .expect("set");
    assert_eq!(store.get_size(&id).await.expect("size"), 6);
    delete_prefix(store.prefix()).await;
}
