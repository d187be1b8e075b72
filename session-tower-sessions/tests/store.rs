//! The bridge's `SessionStore` and `ExpiredDeletion` methods called directly, on SQLite (a temp
//! file) and on Redis (127.0.0.1:6379 or `REDIS_URL`): the storage mapping, the expiry rules, the
//! purge.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use session_core::{Data, Value};
use session_tower_sessions::{EXPIRY_KEY, TowerSessionsStore};
use time::OffsetDateTime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{Error, ExpiredDeletion, SessionStore};

use common::{sqlite_rows, with_redis, with_sqlite};

fn record(expires_in: time::Duration) -> Record {
    Record {
        id: Id(42),
        data: HashMap::from([
            ("user".to_owned(), json!("ada")),
            ("n".to_owned(), json!(1)),
        ]),
        expiry_date: OffsetDateTime::now_utc() + expires_in,
    }
}

/// Values of every JSON kind, each of which must come back equal.
fn every_kind() -> HashMap<String, serde_json::Value> {
    HashMap::from([
        ("null".to_owned(), json!(null)),
        ("bool".to_owned(), json!(true)),
        ("neg".to_owned(), json!(-17)),
        ("big".to_owned(), json!(u64::MAX)),
        ("min".to_owned(), json!(i64::MIN)),
        ("float".to_owned(), json!(1.0)),
        ("pi".to_owned(), json!(std::f64::consts::PI)),
        ("tiny".to_owned(), json!(-2.5e-300)),
        ("text".to_owned(), json!("héllo \u{0} wörld")),
        ("list".to_owned(), json!([1, "two", [3.5], {"four": null}])),
        ("map".to_owned(), json!({"a": {"b": [true, false]}, "": 0})),
        ("".to_owned(), json!("the empty key")),
    ])
}

/// create, load, save (replace), delete, and how a record is laid out in the driver.
async fn round_trip(store: TowerSessionsStore) {
    let mut rec = record(time::Duration::minutes(30));
    rec.data.extend(every_kind());
    store.create(&mut rec).await.unwrap();
    assert_ne!(
        rec.id,
        Id(42),
        "create draws a fresh id, whatever the record held"
    );

    let loaded = store.load(&rec.id).await.unwrap().expect("just created");
    assert_eq!(
        loaded, rec,
        "data, id and expiry_date (to the nanosecond) come back"
    );

    // One driver key per field, plus the expiry key; values are MessagePack `Value`s.
    let sid = TowerSessionsStore::session_id(&rec.id).unwrap();
    assert_eq!(sid.as_str(), rec.id.to_string());
    let raw: Data = store.storage().get_map(&sid).await.unwrap();
    assert_eq!(raw.len(), rec.data.len() + 1);
    assert_eq!(raw["user"].decode::<String>().unwrap(), "ada");
    assert_eq!(raw["n"].decode::<u64>().unwrap(), 1);
    let (secs, nanos): (i64, u32) = raw[EXPIRY_KEY].decode().unwrap();
    assert_eq!(secs, rec.expiry_date.unix_timestamp());
    assert_eq!(nanos, rec.expiry_date.nanosecond());

    // save replaces the whole record: a field left out is gone, the expiry moves.
    let mut next = rec.clone();
    next.data = HashMap::from([("n".to_owned(), json!(2))]);
    next.expiry_date = OffsetDateTime::now_utc() + time::Duration::minutes(5);
    store.save(&next).await.unwrap();
    assert_eq!(store.load(&rec.id).await.unwrap(), Some(next.clone()));
    assert_eq!(store.storage().get_size(&sid).await.unwrap(), 2);

    // An empty record exists (the expiry key holds it).
    next.data.clear();
    store.save(&next).await.unwrap();
    assert_eq!(store.load(&rec.id).await.unwrap(), Some(next.clone()));

    store.delete(&rec.id).await.unwrap();
    assert_eq!(store.load(&rec.id).await.unwrap(), None);
    assert_eq!(store.storage().get_size(&sid).await.unwrap(), 0);
    store.delete(&rec.id).await.unwrap();
}

/// save never stores a record the store does not hold (an id it did not issue, or one deleted
/// meanwhile).
async fn save_adopts_no_id(store: TowerSessionsStore) {
    let unknown = Record {
        id: Id(0x1234_5678_9abc_def0),
        ..record(time::Duration::minutes(30))
    };
    store.save(&unknown).await.unwrap();
    assert_eq!(store.load(&unknown.id).await.unwrap(), None);

    let mut rec = record(time::Duration::minutes(30));
    store.create(&mut rec).await.unwrap();
    store.delete(&rec.id).await.unwrap();
    store.save(&rec).await.unwrap(); // a request still in flight
    assert_eq!(store.load(&rec.id).await.unwrap(), None, "not brought back");
}

/// A record is never returned after its expiry_date: the driver deadline follows it to the
/// millisecond, and the bridge itself checks the stored date.
async fn expiry(store: TowerSessionsStore) {
    let mut short = record(time::Duration::milliseconds(300));
    store.create(&mut short).await.unwrap();
    let mut long = record(time::Duration::minutes(30));
    store.create(&mut long).await.unwrap();
    assert!(store.load(&short.id).await.unwrap().is_some());
    // Poll until just past the expiry date: it must vanish at once, not a second later. A load
    // is judged by when it finished (the clock read before it says nothing of when the store
    // looked): one that finished before the expiry date must find the record, give or take the
    // 2 ms the driver's deadline may lose to whole milliseconds (now and the TTL, each cut to
    // the millisecond).
    loop {
        let found = store.load(&short.id).await.unwrap().is_some();
        let finished = OffsetDateTime::now_utc();
        if finished > short.expiry_date {
            break;
        }
        if finished < short.expiry_date - time::Duration::milliseconds(2) {
            assert!(found, "gone too early");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.load(&short.id).await.unwrap(), None);
    assert!(store.load(&long.id).await.unwrap().is_some());

    // A save with an expiry_date in the past deletes the record.
    let mut past = long.clone();
    past.expiry_date = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    store.save(&past).await.unwrap();
    assert_eq!(store.load(&long.id).await.unwrap(), None);
    let sid = TowerSessionsStore::session_id(&long.id).unwrap();
    assert_eq!(store.storage().get_size(&sid).await.unwrap(), 0);

    // create of an already expired record stores nothing (but still gives it a fresh id).
    let mut dead = record(-time::Duration::seconds(1));
    store.create(&mut dead).await.unwrap();
    assert_ne!(dead.id, Id(42));
    let sid = TowerSessionsStore::session_id(&dead.id).unwrap();
    assert_eq!(store.storage().get_size(&sid).await.unwrap(), 0);

    // The bridge checks the stored expiry_date itself: a session whose driver deadline is
    // later than the date it holds (written by hand here) is not returned.
    let id = Id(99);
    let sid = TowerSessionsStore::session_id(&id).unwrap();
    let gone = OffsetDateTime::now_utc() - time::Duration::milliseconds(1);
    let mut data = Data::new();
    data.insert("user".to_owned(), Value::encode("eve").unwrap());
    let date = (gone.unix_timestamp(), gone.nanosecond());
    data.insert(EXPIRY_KEY.to_owned(), Value::encode(&date).unwrap());
    store
        .storage()
        .set_session(&sid, data, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.load(&id).await.unwrap(), None);
}

/// What cannot be stored is refused with an encoding error and writes nothing; a session the
/// bridge did not write is a decoding error, never a record.
async fn refusals(store: TowerSessionsStore) {
    for key in [
        "__s.meta",
        "__s.tower.expiry",
        "nul\u{0}key",
        &"k".repeat(1025),
    ] {
        let mut rec = record(time::Duration::minutes(30));
        rec.data.insert(key.to_owned(), json!(1));
        let err = store.create(&mut rec).await.unwrap_err();
        assert!(matches!(err, Error::Encode(_)), "{key:?}: {err}");
        let sid = TowerSessionsStore::session_id(&rec.id).unwrap();
        assert_eq!(store.storage().get_size(&sid).await.unwrap(), 0);
    }
    let mut good = record(time::Duration::minutes(30));
    store.create(&mut good).await.unwrap();
    let mut bad = good.clone();
    bad.data.insert("nul\u{0}key".to_owned(), json!(1));
    assert!(matches!(store.save(&bad).await, Err(Error::Encode(_))));
    assert_eq!(
        store.load(&good.id).await.unwrap(),
        Some(good.clone()),
        "unchanged"
    );

    let far = Record {
        expiry_date: OffsetDateTime::now_utc() + time::Duration::days(11 * 365),
        ..good.clone()
    };
    assert!(matches!(store.save(&far).await, Err(Error::Encode(_))));

    let foreign = Id(7);
    let sid = TowerSessionsStore::session_id(&foreign).unwrap();
    store
        .storage()
        .set(
            &sid,
            "user",
            Value::encode("mallory").unwrap(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(matches!(store.load(&foreign).await, Err(Error::Decode(_))));
}

#[tokio::test]
async fn sqlite_round_trip() {
    with_sqlite(|store, _| round_trip(store)).await;
}

#[tokio::test]
async fn redis_round_trip() {
    with_redis(round_trip).await;
}

#[tokio::test]
async fn sqlite_save_adopts_no_id() {
    with_sqlite(|store, _| save_adopts_no_id(store)).await;
}

#[tokio::test]
async fn redis_save_adopts_no_id() {
    with_redis(save_adopts_no_id).await;
}

#[tokio::test]
async fn sqlite_expiry() {
    with_sqlite(|store, _| expiry(store)).await;
}

#[tokio::test]
async fn redis_expiry() {
    with_redis(expiry).await;
}

#[tokio::test]
async fn sqlite_refusals() {
    with_sqlite(|store, _| refusals(store)).await;
}

#[tokio::test]
async fn redis_refusals() {
    with_redis(refusals).await;
}

/// On SQLite (no native expiry) delete_expired purges: the expired record's row is in the table
/// until then, and only that one goes.
#[tokio::test]
async fn sqlite_delete_expired_purges() {
    with_sqlite(|store, path| async move {
        let mut short = record(time::Duration::milliseconds(200));
        store.create(&mut short).await.unwrap();
        let mut long = record(time::Duration::minutes(30));
        store.create(&mut long).await.unwrap();
        let (short_id, long_id) = (short.id.to_string(), long.id.to_string());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(store.load(&short.id).await.unwrap(), None);
        assert_eq!(sqlite_rows(&path, &short_id), 1, "expired, not yet purged");

        store.delete_expired().await.unwrap();
        assert_eq!(sqlite_rows(&path, &short_id), 0, "purged");
        assert_eq!(sqlite_rows(&path, &long_id), 1, "the live record stays");
        assert_eq!(store.load(&long.id).await.unwrap(), Some(long));
    })
    .await;
}

/// On Redis (native expiry) delete_expired has nothing to do and succeeds; Redis removed the
/// expired record by itself.
#[tokio::test]
async fn redis_delete_expired_is_a_no_op() {
    with_redis(|store| async move {
        assert!(store.storage().capabilities().native_expiry);
        let mut short = record(time::Duration::milliseconds(100));
        store.create(&mut short).await.unwrap();
        let mut long = record(time::Duration::minutes(30));
        store.create(&mut long).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        store.delete_expired().await.unwrap();
        let sid = TowerSessionsStore::session_id(&short.id).unwrap();
        assert_eq!(store.storage().get_size(&sid).await.unwrap(), 0);
        assert_eq!(store.load(&long.id).await.unwrap(), Some(long));
    })
    .await;
}

/// With the `deletion-task` feature, tower-sessions-core's `continuously_delete_expired` loop
/// purges the SQLite table on its own.
#[cfg(feature = "deletion-task")]
#[tokio::test]
async fn sqlite_continuous_deletion() {
    with_sqlite(|store, path| async move {
        let task = tokio::spawn(
            store
                .clone()
                .continuously_delete_expired(Duration::from_millis(100)),
        );
        let mut short = record(time::Duration::milliseconds(150));
        store.create(&mut short).await.unwrap();
        let id = short.id.to_string();
        assert_eq!(sqlite_rows(&path, &id), 1);
        let mut waited = Duration::ZERO;
        while sqlite_rows(&path, &id) > 0 {
            assert!(waited < Duration::from_secs(3), "not purged within 3 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        assert!(!task.is_finished(), "the loop keeps running");
        task.abort();
    })
    .await;
}
