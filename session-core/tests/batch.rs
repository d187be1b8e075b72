//! CodeIgniter's all and batch forms: `get()` / `getFlashdata()` / `getTempdata()` without a
//! key, `set(array)`, `markAsFlashdata(array)`, `markAsTempdata(array, ttl)` and its per-key
//! form, and `remove(array)`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{memory, ms};
use session_core::{Config, Data, Error, Manager, SessionId};

/// `data` decoded as u32s, sorted by key.
fn numbers(data: &Data) -> BTreeMap<String, u32> {
    data.iter()
        .map(|(k, v)| (k.clone(), v.decode::<u32>().unwrap()))
        .collect()
}

fn map(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Saves `s` and returns its id.
async fn save(s: &session_core::Session) -> SessionId {
    s.save().await.unwrap();
    s.id().await.unwrap()
}

#[tokio::test]
async fn all_lists_every_user_value_flash_and_live_temp_included_never_reserved() {
    let m = memory(Config::default());
    let s = m.load(None);
    assert!(s.all().await.unwrap().is_empty());
    s.set("plain", &1u32).await.unwrap();
    s.set_flash("flash", &2u32).await.unwrap();
    s.set_temp("temp", &3u32, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    s.set_temp("short", &4u32, Some(ms(400))).await.unwrap();
    s.login("ada").await.unwrap(); // a reserved key (the owner) and metadata
    let all = map(&[("plain", 1), ("flash", 2), ("temp", 3), ("short", 4)]);
    assert_eq!(numbers(&s.all().await.unwrap()), all);
    let id = save(&s).await;

    // another request sees the stored values; expired temp data is gone from the list
    tokio::time::sleep(ms(500)).await;
    let s = m.load(Some(id.as_str()));
    let all = s.all().await.unwrap();
    assert_eq!(
        numbers(&all),
        map(&[("plain", 1), ("flash", 2), ("temp", 3)])
    );
    let mut keys: Vec<String> = all.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, s.keys().await.unwrap(), "the same keys as keys()");
    // a removal in this request shows at once
    s.remove("plain").await.unwrap();
    assert_eq!(
        numbers(&s.all().await.unwrap()),
        map(&[("flash", 2), ("temp", 3)])
    );
}

#[tokio::test]
async fn all_flash_and_all_temp_list_only_their_kind() {
    let m = memory(Config::default());
    let s = m.load(None);
    assert!(s.all_flash().await.unwrap().is_empty());
    assert!(s.all_temp().await.unwrap().is_empty());
    s.set("plain", &1u32).await.unwrap();
    s.set_flash("f1", &2u32).await.unwrap();
    s.set_flash("f2", &3u32).await.unwrap();
    s.set_temp("t1", &4u32, None).await.unwrap();
    s.set_temp("t2", &5u32, Some(ms(400))).await.unwrap();
    assert_eq!(
        numbers(&s.all_flash().await.unwrap()),
        map(&[("f1", 2), ("f2", 3)])
    );
    assert_eq!(
        numbers(&s.all_temp().await.unwrap()),
        map(&[("t1", 4), ("t2", 5)])
    );
    let id = save(&s).await;

    // next request: the flash data is still there (read or not), t2 has expired
    tokio::time::sleep(ms(500)).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(
        numbers(&s.all_flash().await.unwrap()),
        map(&[("f1", 2), ("f2", 3)])
    );
    assert_eq!(numbers(&s.all_temp().await.unwrap()), map(&[("t1", 4)]));
    s.save().await.unwrap();

    // the one after: the flash data is gone
    let s = m.load(Some(id.as_str()));
    assert!(s.all_flash().await.unwrap().is_empty());
    assert_eq!(numbers(&s.all_temp().await.unwrap()), map(&[("t1", 4)]));
    assert_eq!(
        numbers(&s.all().await.unwrap()),
        map(&[("plain", 1), ("t1", 4)])
    );
}

#[tokio::test]
async fn set_many_sets_every_pair_or_none() {
    let m = memory(Config::default());
    let s = m.load(None);
    s.set_many([("a", &1u32), ("b", &2u32)]).await.unwrap();
    // one bad key: nothing of the batch is set
    assert!(matches!(
        s.set_many([("c", &3u32), ("__s.meta", &4u32)]).await,
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(s.get::<u32>("c").await.unwrap(), None);
    // string values by reference, like set
    s.set_many(vec![
        ("name".to_string(), "ada"),
        ("city".to_string(), "london"),
    ])
    .await
    .unwrap();
    // a set_many of a flash key makes it plain, as set does
    s.set_flash("f", &9u32).await.unwrap();
    s.set_many([("f", &10u32)]).await.unwrap();
    assert!(s.all_flash().await.unwrap().is_empty());
    let id = save(&s).await;

    let s = m.load(Some(id.as_str()));
    assert_eq!(s.keys().await.unwrap(), ["a", "b", "city", "f", "name"]);
    assert_eq!(
        s.get::<String>("city").await.unwrap().as_deref(),
        Some("london")
    );
    assert_eq!(s.get::<u32>("f").await.unwrap(), Some(10));
}

/// A stored session with a = 1, b = 2, c = 3, and a request on it.
async fn abc(m: &Manager) -> (SessionId, session_core::Session) {
    let s = m.load(None);
    s.set_many([("a", &1u32), ("b", &2u32), ("c", &3u32)])
        .await
        .unwrap();
    let id = save(&s).await;
    (id.clone(), m.load(Some(id.as_str())))
}

#[tokio::test]
async fn mark_many_as_flash_marks_all_or_none() {
    let m = memory(Config::default());
    let (id, s) = abc(&m).await;
    // "missing" has no value: nothing is marked (CodeIgniter returns false)
    assert!(!s.mark_many_as_flash(["a", "missing"]).await.unwrap());
    assert!(s.all_flash().await.unwrap().is_empty());
    assert!(matches!(
        s.mark_many_as_flash(["a", "__s.x"]).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(s.all_flash().await.unwrap().is_empty());
    assert!(s.mark_many_as_flash(["a", "b"]).await.unwrap());
    assert_eq!(
        numbers(&s.all_flash().await.unwrap()),
        map(&[("a", 1), ("b", 2)])
    );
    s.save().await.unwrap();

    // readable in the next request, gone in the one after
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get_flash::<u32>("a").await.unwrap(), Some(1));
    s.save().await.unwrap();
    let s = m.load(Some(id.as_str()));
    assert_eq!(numbers(&s.all().await.unwrap()), map(&[("c", 3)]));
}

#[tokio::test]
async fn mark_many_as_temp_with_one_ttl_or_one_per_key() {
    let m = memory(Config::default());
    let (id, s) = abc(&m).await;
    assert!(
        !s.mark_many_as_temp(["a", "missing"], Some(ms(400)))
            .await
            .unwrap()
    );
    assert!(
        !s.mark_many_as_temp_each([("a", ms(400)), ("missing", ms(400))])
            .await
            .unwrap()
    );
    assert!(s.all_temp().await.unwrap().is_empty(), "none marked");
    assert!(matches!(
        s.mark_many_as_temp_each([("a", ms(400)), ("b", Duration::ZERO)])
            .await,
        Err(Error::InvalidInput(_))
    ));
    assert!(s.all_temp().await.unwrap().is_empty(), "none marked");

    assert!(s.mark_many_as_temp(["a"], Some(ms(400))).await.unwrap());
    assert!(
        s.mark_many_as_temp_each([("b", ms(400)), ("c", Duration::from_secs(60))])
            .await
            .unwrap()
    );
    assert_eq!(
        numbers(&s.all_temp().await.unwrap()),
        map(&[("a", 1), ("b", 2), ("c", 3)])
    );
    s.save().await.unwrap();

    tokio::time::sleep(ms(500)).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(numbers(&s.all_temp().await.unwrap()), map(&[("c", 3)]));
    assert_eq!(numbers(&s.all().await.unwrap()), map(&[("c", 3)]));
}

#[tokio::test]
async fn mark_many_as_temp_without_ttl_uses_the_configured_default() {
    let m = memory(Config {
        temp_ttl: ms(400),
        ..Config::default()
    });
    let (_, s) = abc(&m).await;
    assert!(s.mark_many_as_temp(["a", "b"], None).await.unwrap());
    assert_eq!(s.all_temp().await.unwrap().len(), 2);
    tokio::time::sleep(ms(500)).await;
    assert!(s.all_temp().await.unwrap().is_empty());
    assert_eq!(numbers(&s.all().await.unwrap()), map(&[("c", 3)]));
}
