//! CodeIgniter's features: typed access, push, flash and temp data, regenerate (explicit and
//! timed), destroy, fingerprint binding, metadata.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Recorded, memory, ms, setup, stored_session};
use serde::{Deserialize, Serialize};
use session_core::{ClientInfo, Config, CookieAction, Error, Manager, SessionId};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Cart {
    items: Vec<String>,
    total_cents: u64,
}

/// Loads `id` in a new request, runs nothing else, saves; returns the saved cookie action.
async fn visit(m: &Manager, id: &SessionId) -> CookieAction {
    let s = m.load(Some(id.as_str()));
    s.keys().await.unwrap();
    s.save().await.unwrap().cookie
}

#[tokio::test]
async fn typed_values_round_trip_and_wrong_types_are_decode_errors() {
    let m = memory(Config::default());
    let cart = Cart {
        items: vec!["apple".into(), "pear".into()],
        total_cents: 420,
    };
    let s = m.load(None);
    s.set("cart", &cart).await.unwrap();
    s.set("n", &5i64).await.unwrap();
    let id = s.save().await.unwrap().cookie.id().cloned().unwrap();

    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<Cart>("cart").await.unwrap(), Some(cart));
    assert!(matches!(s.get::<String>("n").await, Err(Error::Decode(_))));
    assert_eq!(s.keys().await.unwrap(), ["cart", "n"]);
    assert_eq!(s.len().await.unwrap(), 2);
    s.remove_many(["cart", "n", "absent"]).await.unwrap();
    assert!(s.is_empty().await.unwrap());
    s.set("x", &1u8).await.unwrap();
    s.save().await.unwrap();
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.keys().await.unwrap(), ["x"]);
}

#[tokio::test]
async fn reserved_keys_are_rejected_and_hidden() {
    let (m, store) = setup(Config::default());
    let s = m.load_with(None, ClientInfo::new(None, Some("ua")));
    for bad in ["__s.meta", "__s.anything", "a\0b"] {
        assert!(
            matches!(s.set(bad, &1).await, Err(Error::InvalidInput(_))),
            "{bad:?}"
        );
        assert!(matches!(
            s.get::<u32>(bad).await,
            Err(Error::InvalidInput(_))
        ));
    }
    assert!(matches!(
        s.remove_many(["ok", "__s.user"]).await,
        Err(Error::InvalidInput(_))
    ));
    s.set("ok", &1).await.unwrap();
    s.set_flash("f", &1).await.unwrap();
    s.set_temp("t", &1, None).await.unwrap();
    let id = s.save().await.unwrap().cookie.id().cloned().unwrap();
    let raw = store.raw(&id).await;
    assert!(
        raw.keys().any(|k| k.starts_with("__s.")),
        "metadata is stored"
    );
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.keys().await.unwrap(), ["f", "ok", "t"]);
    assert_eq!(s.len().await.unwrap(), 3);
    // clear drops user data but keeps the metadata
    s.clear().await.unwrap();
    s.save().await.unwrap();
    let s = m.load(Some(id.as_str()));
    assert!(s.is_empty().await.unwrap());
    assert!(s.meta().await.unwrap().is_some());
}

#[tokio::test]
async fn push_appends_to_a_list() {
    let m = memory(Config::default());
    let s = m.load(None);
    assert_eq!(s.push("hobbies", "chess").await.unwrap(), 1);
    let id = s.save().await.unwrap().cookie.id().cloned().unwrap();
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.push("hobbies", &"go".to_string()).await.unwrap(), 2);
    s.save().await.unwrap();
    let s = m.load(Some(id.as_str()));
    assert_eq!(
        s.get::<Vec<String>>("hobbies").await.unwrap().unwrap(),
        ["chess", "go"]
    );
    s.set("scalar", &3u32).await.unwrap();
    assert!(matches!(
        s.push("scalar", &4u32).await,
        Err(Error::Decode(_))
    ));
    // a struct item (by reference, like `set`): the list decodes as a list of it
    let cart = Cart {
        items: vec!["apple".into()],
        total_cents: 1,
    };
    assert_eq!(s.push("carts", &cart).await.unwrap(), 1);
    assert_eq!(s.push("carts", &cart).await.unwrap(), 2);
    assert_eq!(
        s.get::<Vec<Cart>>("carts").await.unwrap().unwrap(),
        [cart.clone(), cart]
    );
}

#[tokio::test]
async fn flash_is_readable_in_the_next_load_only_read_or_not() {
    let m = memory(Config::default());
    let s = m.load(None);
    s.set("keep", &1).await.unwrap();
    s.set_flash("read", "saved!").await.unwrap();
    s.set_flash("unread", "ignored").await.unwrap();
    // readable in the request that set it
    assert_eq!(
        s.get_flash::<String>("read").await.unwrap().as_deref(),
        Some("saved!")
    );
    let id = s.save().await.unwrap().cookie.id().cloned().unwrap();

    // next load: both there; only one is read
    let s = m.load(Some(id.as_str()));
    assert_eq!(
        s.get_flash::<String>("read").await.unwrap().as_deref(),
        Some("saved!")
    );
    assert_eq!(
        s.get::<String>("read").await.unwrap().as_deref(),
        Some("saved!")
    );
    assert!(s.is_modified().await, "retiring flash data is a change");
    s.save().await.unwrap();

    // the load after: both gone, plain data stays
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<String>("read").await.unwrap(), None);
    assert_eq!(s.get::<String>("unread").await.unwrap(), None);
    assert_eq!(s.get::<i32>("keep").await.unwrap(), Some(1));
    assert_eq!(
        s.get_flash::<i32>("keep").await.unwrap(),
        None,
        "not flash data"
    );
}

#[tokio::test]
async fn keep_flash_and_mark_as_flash() {
    let m = memory(Config::default());
    let s = m.load(None);
    s.set_flash("kept", &1).await.unwrap();
    s.set("plain", &2).await.unwrap();
    assert!(!s.mark_as_flash("missing").await.unwrap());
    let id = s.save().await.unwrap().cookie.id().cloned().unwrap();

    let s = m.load(Some(id.as_str()));
    assert!(s.keep_flash("kept").await.unwrap());
    assert!(!s.keep_flash("plain").await.unwrap());
    assert!(s.mark_as_flash("plain").await.unwrap());
    s.save().await.unwrap();

    // both live through this load...
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get_flash::<i32>("kept").await.unwrap(), Some(1));
    assert_eq!(s.get_flash::<i32>("plain").await.unwrap(), Some(2));
    s.save().await.unwrap();
    // ...and no further
    let s = m.load(Some(id.as_str()));
    assert!(s.is_empty().await.unwrap());
}

#[tokio::test]
async fn a_plain_set_makes_a_flash_value_permanent() {
    let m = memory(Config::default());
    let s = m.load(None);
    s.set_flash("x", &1).await.unwrap();
    let id = s.save().await.unwrap().cookie.id().cloned().unwrap();
    let s = m.load(Some(id.as_str()));
    s.set("x", &2).await.unwrap();
    s.save().await.unwrap();
    for _ in 0..2 {
        let s = m.load(Some(id.as_str()));
        assert_eq!(s.get::<i32>("x").await.unwrap(), Some(2));
        s.save().await.unwrap();
    }
}

#[tokio::test]
async fn temp_data_expires_on_its_own_while_the_session_lives() {
    let m = memory(Config {
        temp_ttl: ms(250),
        ..Config::default()
    });
    let s = m.load(None);
    s.set("plain", &0).await.unwrap();
    s.set_temp("short", &1, Some(ms(150))).await.unwrap();
    s.set_temp("default", &2, None).await.unwrap();
    s.set_temp("long", &3, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    s.set("marked", &4).await.unwrap();
    assert!(s.mark_as_temp("marked", Some(ms(150))).await.unwrap());
    assert!(!s.mark_as_temp("missing", None).await.unwrap());
    assert!(matches!(
        s.set_temp("z", &1, Some(Duration::ZERO)).await,
        Err(Error::InvalidInput(_))
    ));
    let id = s.save().await.unwrap().cookie.id().cloned().unwrap();

    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get_temp::<i32>("short").await.unwrap(), Some(1));
    assert_eq!(
        s.get_temp::<i32>("plain").await.unwrap(),
        None,
        "not temp data"
    );
    drop(s);

    tokio::time::sleep(ms(200)).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<i32>("short").await.unwrap(), None);
    assert_eq!(s.get::<i32>("marked").await.unwrap(), None);
    assert_eq!(s.get_temp::<i32>("default").await.unwrap(), Some(2));
    assert_eq!(s.get::<i32>("long").await.unwrap(), Some(3));
    assert_eq!(s.keys().await.unwrap(), ["default", "long", "plain"]);
    s.save().await.unwrap();

    tokio::time::sleep(ms(100)).await;
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<i32>("default").await.unwrap(), None);
    assert!(s.remove_temp("long").await.unwrap());
    assert!(!s.remove_temp("plain").await.unwrap());
    s.save().await.unwrap();
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.keys().await.unwrap(), ["plain"]);
}

#[tokio::test]
async fn regenerate_keeps_data_and_the_old_id_lives_for_the_grace_period() {
    let (m, store) = setup(Config {
        regenerate_grace: ms(300),
        ..Config::default()
    });
    let old = stored_session(&m, "a", 1).await;
    let s = m.load(Some(old.as_str()));
    s.set("b", &2u32).await.unwrap();
    s.regenerate(false).await.unwrap();
    assert_eq!(s.id().await, None, "the new id is issued at save");
    let out = s.save().await.unwrap();
    let CookieAction::Set { id: new, .. } = out.cookie else {
        panic!("expected a new cookie, got {:?}", out.cookie)
    };
    assert_ne!(new, old);
    let s = m.load(Some(new.as_str()));
    assert_eq!(s.get::<u32>("a").await.unwrap(), Some(1));
    assert_eq!(s.get::<u32>("b").await.unwrap(), Some(2));
    // a request in flight with the old cookie still works
    let s = m.load(Some(old.as_str()));
    assert_eq!(s.get::<u32>("a").await.unwrap(), Some(1));
    tokio::time::sleep(ms(350)).await;
    let s = m.load(Some(old.as_str()));
    assert_eq!(
        s.get::<u32>("a").await.unwrap(),
        None,
        "old id valid after grace"
    );
    assert!(store.raw(&old).await.is_empty());
}

#[tokio::test]
async fn regenerate_with_destroy_old_kills_the_old_id_at_once() {
    let (m, store) = setup(Config::default());
    let old = stored_session(&m, "a", 1).await;
    tokio::time::sleep(ms(5)).await;
    let s = m.load(Some(old.as_str()));
    s.regenerate(true).await.unwrap();
    let before = std::time::SystemTime::now() - ms(1);
    let new = s.save().await.unwrap().cookie.id().cloned().unwrap();
    assert_ne!(new, old);
    assert!(store.raw(&old).await.is_empty());
    let s = m.load(Some(new.as_str()));
    assert_eq!(s.get::<u32>("a").await.unwrap(), Some(1));
    let meta = s.meta().await.unwrap().unwrap();
    assert!(meta.id_issued_at >= before, "issue time not updated");
    assert!(meta.created_at < before, "creation time not kept");
}

#[tokio::test]
async fn timed_rotation_gives_a_new_id_after_the_interval() {
    let (m, store) = setup(Config {
        rotate_every: Some(ms(200)),
        rotate_destroy_old: true,
        ..Config::default()
    });
    let old = stored_session(&m, "a", 1).await;
    assert_eq!(visit(&m, &old).await, CookieAction::Unchanged, "too early");
    tokio::time::sleep(ms(250)).await;
    let cookie = visit(&m, &old).await;
    let CookieAction::Set { id: new, .. } = cookie else {
        panic!("expected rotation, got {cookie:?}")
    };
    assert_ne!(new, old);
    assert!(store.raw(&old).await.is_empty());
    let s = m.load(Some(new.as_str()));
    assert_eq!(s.get::<u32>("a").await.unwrap(), Some(1));
    s.save().await.unwrap();
    assert_eq!(
        visit(&m, &new).await,
        CookieAction::Unchanged,
        "rotated again at once"
    );
}

#[tokio::test]
async fn destroy_removes_the_session_and_the_save_writes_nothing_back() {
    let (m, store) = setup(Config::default());
    let id = stored_session(&m, "a", 1).await;
    let s = m.load(Some(id.as_str()));
    s.set("b", &2).await.unwrap();
    s.destroy().await.unwrap();
    assert!(store.raw(&id).await.is_empty(), "destroy is immediate");
    assert!(s.is_empty().await.unwrap());
    store.take();
    let out = s.save().await.unwrap();
    assert_eq!(store.take(), Vec::<&str>::new());
    assert_eq!(out.cookie, CookieAction::Remove);
    assert!(store.raw(&id).await.is_empty());
}

#[tokio::test]
async fn data_written_after_destroy_goes_to_a_new_session() {
    let (m, store) = setup(Config::default());
    let id = stored_session(&m, "a", 1).await;
    let s = m.load(Some(id.as_str()));
    s.destroy().await.unwrap();
    s.set_flash("notice", "logged out").await.unwrap();
    let out = s.save().await.unwrap();
    let CookieAction::Set { id: new, .. } = out.cookie else {
        panic!("expected a new session, got {:?}", out.cookie)
    };
    assert_ne!(new, id);
    assert!(store.raw(&id).await.is_empty());
    let raw = store.raw(&new).await;
    assert!(raw.contains_key("notice") && !raw.contains_key("a"));
}

#[tokio::test]
async fn match_ip_refuses_a_session_from_another_ip_without_harming_it() {
    let m = memory(Config {
        match_ip: true,
        match_user_agent: true,
        ..Config::default()
    });
    let home = ClientInfo::new(Some("192.0.2.1".parse().unwrap()), Some("Firefox"));
    let s = m.load_with(None, home.clone());
    s.set("secret", &42).await.unwrap();
    let id = s.save().await.unwrap().cookie.id().cloned().unwrap();

    let thief = ClientInfo::new(Some("203.0.113.66".parse().unwrap()), Some("Firefox"));
    let s = m.load_with(Some(id.as_str()), thief);
    assert_eq!(s.get::<i32>("secret").await.unwrap(), None);
    s.set("x", &1).await.unwrap();
    let out = s.save().await.unwrap();
    assert_ne!(out.cookie.id(), Some(&id), "the thief got the session id");

    let other_agent = ClientInfo::new(home.ip, Some("curl"));
    let s = m.load_with(Some(id.as_str()), other_agent);
    assert_eq!(s.get::<i32>("secret").await.unwrap(), None);

    let s = m.load_with(Some(id.as_str()), home);
    assert_eq!(
        s.get::<i32>("secret").await.unwrap(),
        Some(42),
        "the owner lost the session"
    );
}

#[tokio::test]
async fn without_match_ip_another_ip_is_fine_and_recorded() {
    let m = memory(Config::default());
    let a = ClientInfo::new(Some("192.0.2.1".parse().unwrap()), Some("Firefox"));
    let s = m.load_with(None, a.clone());
    s.set("k", &1).await.unwrap();
    let id = s.save().await.unwrap().cookie.id().cloned().unwrap();
    let b = ClientInfo::new(Some("192.0.2.2".parse().unwrap()), Some("Firefox"));
    let s = m.load_with(Some(id.as_str()), b.clone());
    assert_eq!(s.get::<i32>("k").await.unwrap(), Some(1));
    s.set("k", &2).await.unwrap();
    s.save().await.unwrap();
    let meta = m.load(Some(id.as_str())).meta().await.unwrap().unwrap();
    assert_eq!(meta.client, a, "the creating client is kept");
    assert_eq!(meta.last_ip, b.ip);
    assert!(meta.last_seen >= meta.created_at);
    assert_eq!(meta.user, None);
}

#[tokio::test]
async fn ids_are_unique_across_many_new_sessions() {
    let m = memory(Config::default());
    let mut seen = HashSet::new();
    for _ in 0..50 {
        let s = m.load(None);
        s.set("k", &1).await.unwrap();
        let id = s.save().await.unwrap().cookie.id().cloned().unwrap();
        assert!(seen.insert(id));
    }
}

/// `__s.meta` and `__s.seen` are decoded when something needs them: a stored session whose
/// metadata does not decode still reads and writes its user keys, keeps the stored bytes, and
/// every call that needs the metadata is `Error::Corrupt` (nothing adopted, nothing lost).
#[tokio::test]
async fn corrupt_metadata_is_an_error_where_it_is_needed() {
    use session_core::{Data, Value};
    let m = memory(Config::default());
    let id = SessionId::generate().unwrap();
    let bad = Value::from_bytes(vec![0xc1]);
    let mut data = Data::new();
    data.insert("a".into(), Value::encode(&1u32).unwrap());
    data.insert("__s.meta".into(), bad.clone());
    m.store()
        .set_map(&id, data, Duration::from_secs(60))
        .await
        .unwrap();
    let corrupt = |r: session_core::Result<()>| {
        assert!(
            matches!(&r, Err(Error::Corrupt { reason, .. }) if reason.contains("__s.meta")),
            "{r:?}"
        )
    };

    // user keys read and write; the metadata stays as stored
    let s = m.load(Some(id.as_str()));
    assert_eq!(s.get::<u32>("a").await.unwrap(), Some(1));
    s.set("a", &2u32).await.unwrap();
    assert!(s.save().await.unwrap().wrote);
    assert_eq!(
        m.store().get(&id, "__s.meta").await.unwrap(),
        Some(bad.clone())
    );
    assert_eq!(
        m.load(Some(id.as_str())).get::<u32>("a").await.unwrap(),
        Some(2)
    );

    // what needs the metadata says it is corrupt, every time, and writes nothing
    let s = m.load(Some(id.as_str()));
    corrupt(s.meta().await.map(drop));
    corrupt(s.meta().await.map(drop));
    corrupt(s.login("ada").await);
    let s = m.load(Some(id.as_str()));
    s.regenerate(false).await.unwrap();
    corrupt(s.save().await.map(drop));
    assert_eq!(
        m.store().get(&id, "__s.meta").await.unwrap(),
        Some(bad.clone())
    );
    assert_eq!(m.store().get(&id, "__s.user").await.unwrap(), None);

    // with a check that compares the metadata on every load, the load itself is the error
    let strict = Manager::new(
        m.store().clone(),
        Config {
            absolute_lifetime: Some(Duration::from_secs(3600)),
            ..Config::default()
        },
    )
    .unwrap();
    corrupt(
        strict
            .load(Some(id.as_str()))
            .get::<u32>("a")
            .await
            .map(drop),
    );
    let fingerprint = Manager::new(
        m.store().clone(),
        Config {
            match_ip: true,
            ..Config::default()
        },
    )
    .unwrap();
    corrupt(fingerprint.load(Some(id.as_str())).has("a").await.map(drop));
    assert_eq!(
        m.store().get(&id, "a").await.unwrap(),
        Some(Value::encode(&2u32).unwrap())
    );
}
