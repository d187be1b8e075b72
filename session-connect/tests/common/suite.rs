//! The behaviour suite: every case runs on every backend, through [`behaviour_suite!`].

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use session_connect::{
    BindMode, ConnFilter, ConnId, ConnMeta, ConnSnapshot, Event, Hub, NodeId, Target,
};
use session_core::{CookieAction, Data, Error, Manager, SessionId, Value};

use super::{BEAT, Fixture, assert_quiet, eventually, next_event, node, outbox};

/// Expands to one `#[tokio::test]` per case, each on a fresh fixture made by `$fixture`
/// (an `async fn() -> Arc<dyn Fixture>`), cleaned up after the case.
#[macro_export]
macro_rules! behaviour_suite {
    ($fixture:path) => {
        $crate::behaviour_suite!(@cases $fixture;
            ids_carry_their_node_and_open_close_register,
            context_typed_get_set_remove_all,
            context_update_is_atomic_across_two_nodes,
            bind_and_lookups_both_ways,
            bind_exclusive_kicks_other_connections_on_every_node,
            concurrent_bind_if_absent_has_one_winner,
            guest_judge_default_and_custom,
            restore_within_window_and_not_after,
            heartbeat_keeps_the_kept_context_and_forget_drops_it,
            sessions_and_users_share_the_owner_index,
            a_login_by_id_survives_regeneration,
            a_logout_by_id_logs_the_session_out,
            regeneration_moves_the_connections_on_every_node,
            login_over_http_binds_the_open_connections,
            destroy_and_log_out_everywhere_end_the_connections,
            both_sides_of_login_and_logout_agree,
            send_reaches_users_on_other_nodes,
            send_to_conn_session_and_all,
            dead_node_is_purged_by_exactly_one_living_node,
            restart_purges_earlier_run,
            listing_is_a_cursor_over_every_connection,
            listings_filter_page_by_offset_and_find_by_address,
            snapshot_round_trips_through_bytes,
            bad_input_is_rejected_before_the_backend,
            shutdown_unregisters_the_node,
        );
    };
    (@cases $fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fx = $fixture().await;
                $crate::common::suite::$case(fx.clone()).await;
                fx.cleanup().await;
            }
        )*
    };
}

fn meta() -> ConnMeta {
    ConnMeta::new("ws", Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9))))
}

async fn open(hub: &Hub) -> (ConnId, tokio::sync::mpsc::Receiver<Event>) {
    let (tx, rx) = outbox();
    let id = hub.open(meta(), None, tx).await.expect("open");
    (id, rx)
}

fn msg(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn sorted(mut v: Vec<ConnId>) -> Vec<ConnId> {
    v.sort();
    v
}

/// A stored session (with one key) made through the manager; returns its id.
async fn stored_session(m: &Manager) -> SessionId {
    let s = m.load(None);
    s.set("cart", &vec!["apple"]).await.expect("set");
    match s.save().await.expect("save").cookie {
        CookieAction::Set { id, .. } => id,
        other => panic!("a new session sets a cookie, got {other:?}"),
    }
}

pub async fn ids_carry_their_node_and_open_close_register(fx: Arc<dyn Fixture>) {
    let hub = node(&fx, 7001).await;
    let (a, _ra) = open(&hub).await;
    let (b, _rb) = open(&hub).await;
    assert_ne!(a, b);
    assert_eq!(&a.node(), hub.node());
    assert_eq!(hub.node().addr(), "127.0.0.1:7001");
    assert_eq!(ConnId::parse(a.as_str()).expect("parses"), a);
    let info = hub.info(&a).await.expect("info").expect("registered");
    assert_eq!(info.id, a);
    assert_eq!(info.transport, "ws");
    assert_eq!(info.ip, meta().ip);
    assert!(info.opened_at_ms > 0 && info.user.is_none() && info.session.is_none());
    assert_eq!(hub.local_count(), 2);
    hub.close(&a, None).await.expect("close");
    assert_eq!(hub.info(&a).await.expect("info"), None);
    assert_eq!(hub.local_count(), 1);
    hub.close(&a, None).await.expect("closing twice is fine");
    assert!(hub.info(&b).await.expect("info").is_some());
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Room {
    name: String,
    seats: u32,
}

pub async fn context_typed_get_set_remove_all(fx: Arc<dyn Fixture>) {
    let hub = node(&fx, 7002).await;
    let other = node(&fx, 7003).await;
    let (c, _rc) = open(&hub).await;
    let ctx = hub.context(&c);
    assert_eq!(ctx.get::<String>("room").await.expect("get"), None);
    let room = Room {
        name: "mqant".into(),
        seats: 4,
    };
    ctx.set("room", &room).await.expect("set");
    ctx.set("level", &7u32).await.expect("set");
    ctx.set("ключ🔑", "unicode").await.expect("set");
    assert_eq!(ctx.get::<Room>("room").await.expect("get"), Some(room));
    // any node reads the same context
    assert_eq!(
        other.context(&c).get::<u32>("level").await.expect("get"),
        Some(7)
    );
    assert!(matches!(
        ctx.get::<u32>("room").await,
        Err(Error::Decode(_))
    ));
    let all = ctx.all().await.expect("all");
    assert_eq!(all.len(), 3);
    ctx.remove("level").await.expect("remove");
    ctx.remove("absent")
        .await
        .expect("removing an absent key is fine");
    assert_eq!(ctx.get::<u32>("level").await.expect("get"), None);
    let mut many = Data::new();
    many.insert("a".into(), Value::encode(&1).expect("encode"));
    many.insert("b".into(), Value::encode(&2).expect("encode"));
    ctx.set_many(many).await.expect("set_many");
    assert_eq!(ctx.all().await.expect("all").len(), 4);
    ctx.clear().await.expect("clear");
    assert!(ctx.all().await.expect("all").is_empty());
    // a closed connection: reads are empty, writes fail
    hub.close(&c, None).await.expect("close");
    assert!(ctx.all().await.expect("all").is_empty());
    assert!(matches!(
        ctx.set("x", &1).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        ctx.update(|d| d.set("x", &1)).await,
        Err(Error::InvalidInput(_))
    ));
}

pub async fn context_update_is_atomic_across_two_nodes(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7004).await;
    let b = node(&fx, 7005).await;
    let (c, _rc) = open(&a).await;
    a.context(&c).set("other", "kept").await.expect("set");
    let mut tasks = Vec::new();
    for i in 0..50 {
        let hub = if i % 2 == 0 { a.clone() } else { b.clone() };
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            hub.context(&c)
                .update(|ctx| {
                    let n = ctx.get::<u64>("n")?.unwrap_or(0) + 1;
                    ctx.set("n", &n)?;
                    Ok(n)
                })
                .await
                .expect("update")
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        seen.insert(t.await.expect("task"));
    }
    assert_eq!(a.context(&c).get::<u64>("n").await.expect("get"), Some(50));
    // every update saw a distinct value: none was lost or doubled
    assert_eq!(seen, (1..=50).collect::<BTreeSet<u64>>());
    assert_eq!(
        b.context(&c)
            .get::<String>("other")
            .await
            .expect("get")
            .as_deref(),
        Some("kept")
    );
    // an update that changes nothing writes nothing and returns its value
    let read = a
        .context(&c)
        .update(|ctx| ctx.get::<u64>("n"))
        .await
        .expect("read-only update");
    assert_eq!(read, Some(50));
    // an update that fails writes nothing
    let failed: Result<(), Error> = a
        .context(&c)
        .update(|ctx| {
            ctx.set("n", &0u64)?;
            Err(Error::InvalidInput("no".into()))
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(a.context(&c).get::<u64>("n").await.expect("get"), Some(50));
}

pub async fn bind_and_lookups_both_ways(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7006).await;
    let b = node(&fx, 7007).await;
    let (c1, _r1) = open(&a).await;
    let (c2, _r2) = open(&b).await;
    let (c3, _r3) = open(&a).await;
    a.bind(&c1, "alice").await.expect("bind");
    b.bind(&c2, "alice").await.expect("second device");
    a.bind(&c3, "bob").await.expect("bind");
    assert_eq!(
        a.conns_of("alice").await.expect("conns_of"),
        sorted(vec![c1.clone(), c2.clone()])
    );
    assert_eq!(
        b.user_of(&c1).await.expect("user_of").as_deref(),
        Some("alice")
    );
    assert_eq!(
        a.conns_of_many(&["alice", "bob", "nobody"])
            .await
            .expect("batched"),
        vec![
            sorted(vec![c1.clone(), c2.clone()]),
            vec![c3.clone()],
            vec![]
        ]
    );
    let unknown = ConnId::new(a.node(), 999);
    assert_eq!(
        a.users_of(&[c1.clone(), c3.clone(), unknown.clone()])
            .await
            .expect("batched"),
        vec![Some("alice".into()), Some("bob".into()), None]
    );
    assert!(
        a.info(&c1)
            .await
            .expect("info")
            .expect("open")
            .user
            .as_deref()
            == Some("alice")
    );
    // re-binding moves the connection
    a.bind(&c1, "bob").await.expect("move");
    assert_eq!(
        a.conns_of("alice").await.expect("conns_of"),
        vec![c2.clone()]
    );
    assert_eq!(
        a.conns_of("bob").await.expect("conns_of"),
        sorted(vec![c1.clone(), c3.clone()])
    );
    assert_eq!(a.unbind(&c1).await.expect("unbind").as_deref(), Some("bob"));
    assert_eq!(a.unbind(&c1).await.expect("unbind"), None);
    assert_eq!(a.user_of(&c1).await.expect("user_of"), None);
    assert_eq!(a.conns_of("bob").await.expect("conns_of"), vec![c3.clone()]);
    // closing a bound connection unbinds it
    b.close(&c2, None).await.expect("close");
    assert!(a.conns_of("alice").await.expect("conns_of").is_empty());
    // binding an unknown connection fails
    assert!(matches!(
        a.bind(&unknown, "alice").await,
        Err(Error::InvalidInput(_))
    ));
}

pub async fn bind_exclusive_kicks_other_connections_on_every_node(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7008).await;
    let b = node(&fx, 7009).await;
    let (c1, mut r1) = open(&a).await;
    let (c2, mut r2) = open(&b).await;
    let (c3, mut r3) = open(&a).await;
    a.bind(&c1, "carol").await.expect("bind");
    b.bind(&c2, "carol").await.expect("bind");
    let kicked = a.bind_exclusive(&c3, "carol").await.expect("exclusive");
    assert_eq!(sorted(kicked), sorted(vec![c1.clone(), c2.clone()]));
    assert_eq!(next_event(&mut r1).await, Event::Kicked);
    assert_eq!(
        next_event(&mut r2).await,
        Event::Kicked,
        "kick crosses nodes"
    );
    assert_quiet(&mut r3).await;
    assert_eq!(
        a.conns_of("carol").await.expect("conns_of"),
        vec![c3.clone()]
    );
    assert_eq!(a.user_of(&c1).await.expect("user_of"), None);
    assert_eq!(b.user_of(&c2).await.expect("user_of"), None);
    // exclusive again by the only connection kicks nobody
    let out = a
        .bind_with(&c3, "carol", BindMode::Exclusive)
        .await
        .expect("exclusive");
    assert!(out.bound && out.kicked.is_empty());
}

pub async fn concurrent_bind_if_absent_has_one_winner(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7010).await;
    let b = node(&fx, 7011).await;
    let mut conns = Vec::new();
    for i in 0..24 {
        let hub = if i % 2 == 0 { &a } else { &b };
        conns.push((hub.clone(), open(hub).await));
    }
    let mut tasks = Vec::new();
    for (hub, (c, _rx)) in &conns {
        let (hub, c) = (hub.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let won = hub
                .bind_if_absent(&c, "dave")
                .await
                .expect("bind_if_absent");
            (c, won)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (c, won) = t.await.expect("task");
        if won {
            winners.push(c);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one bind_if_absent wins");
    assert_eq!(a.conns_of("dave").await.expect("conns_of"), winners);
    // once bound, the winner itself also gets false, as imi's bindNx
    assert!(!a.bind_if_absent(&winners[0], "dave").await.expect("again"));
    // a free user is taken
    let (c, _) = &conns[0].1;
    assert!(a.bind_if_absent(c, "erin").await.expect("free user"));
}

pub async fn guest_judge_default_and_custom(fx: Arc<dyn Fixture>) {
    let hub = node(&fx, 7012).await;
    let (c, _rc) = open(&hub).await;
    assert!(hub.is_guest(&c).await.expect("guest"));
    hub.bind(&c, "frank").await.expect("bind");
    assert!(!hub.is_guest(&c).await.expect("bound is no guest"));
    assert!(
        hub.is_guest(&ConnId::new(hub.node(), 999))
            .await
            .expect("unknown")
    );
    // a judge that also wants a verified flag in the context
    let strict = Hub::builder(fx.backend().await)
        .addr("127.0.0.1", 7013)
        .beat_interval(BEAT)
        .guest_judge(|s: &ConnSnapshot| {
            s.user().is_none() || s.get::<bool>("verified").ok().flatten() != Some(true)
        })
        .start()
        .await
        .expect("hub");
    assert!(strict.is_guest(&c).await.expect("judge"));
    strict
        .context(&c)
        .set("verified", &true)
        .await
        .expect("set");
    assert!(!strict.is_guest(&c).await.expect("judge"));
}

pub async fn restore_within_window_and_not_after(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7014).await;
    let b = node(&fx, 7015).await;
    let (old, _r) = open(&a).await;
    a.bind(&old, "gina").await.expect("bind");
    a.context(&old).set("room", "lobby").await.expect("set");
    a.context(&old).set("score", &10u32).await.expect("set");
    a.close(&old, Some(Duration::from_secs(5)))
        .await
        .expect("close");
    // the user reconnects, on another node
    let (new, _r2) = open(&b).await;
    assert!(
        matches!(b.restore("gina", &new).await, Err(Error::InvalidInput(_))),
        "restore needs the connection bound to the user"
    );
    b.bind(&new, "gina").await.expect("bind");
    b.context(&new).set("score", &0u32).await.expect("set");
    assert_eq!(
        b.restore("gina", &new).await.expect("restore"),
        Some(old.clone())
    );
    let ctx = b.context(&new);
    assert_eq!(
        ctx.get::<String>("room").await.expect("get").as_deref(),
        Some("lobby")
    );
    assert_eq!(
        ctx.get::<u32>("score").await.expect("get"),
        Some(0),
        "current keys win"
    );
    assert_eq!(b.restore("gina", &new).await.expect("once"), None);
    // past the window the old context is gone
    b.close(&new, Some(Duration::from_millis(150)))
        .await
        .expect("close");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (third, _r3) = open(&a).await;
    a.bind(&third, "gina").await.expect("bind");
    assert_eq!(a.restore("gina", &third).await.expect("restore"), None);
    assert!(a.context(&third).all().await.expect("all").is_empty());
    // closing without keep_for keeps nothing
    a.context(&third).set("k", &1).await.expect("set");
    a.close(&third, None).await.expect("close");
    let (fourth, _r4) = open(&a).await;
    a.bind(&fourth, "gina").await.expect("bind");
    assert_eq!(a.restore("gina", &fourth).await.expect("restore"), None);
}

pub async fn sessions_and_users_share_the_owner_index(fx: Arc<dyn Fixture>) {
    let m = fx.manager();
    let a = node(&fx, 7016).await;
    let b = node(&fx, 7017).await;
    let sid = stored_session(&m).await;
    let (tx, _r1) = outbox();
    let c1 = a.open(meta(), Some(&sid), tx).await.expect("open");
    let (tx, _r2) = outbox();
    let c2 = b
        .open(meta(), Some(&sid), tx)
        .await
        .expect("open, second tab");
    assert_eq!(
        a.connections_of_session(&sid).await.expect("conns"),
        sorted(vec![c1.clone(), c2.clone()])
    );
    assert_eq!(
        a.info(&c1).await.expect("info").expect("open").session,
        Some(sid.clone())
    );
    assert_eq!(a.login(&sid, "hank").await.expect("login"), 2);
    assert_eq!(
        a.user_of(&c2).await.expect("user_of").as_deref(),
        Some("hank")
    );
    assert_eq!(
        a.sessions_of("hank").await.expect("sessions_of"),
        vec![sid.clone()]
    );
    // the manager sees the same index
    let infos = m.sessions_of("hank").await.expect("manager");
    assert_eq!(
        infos.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![sid.clone()]
    );
    // a connection opened later with the logged-in session is bound at once
    let (tx, _r3) = outbox();
    let c3 = a.open(meta(), Some(&sid), tx).await.expect("open");
    assert_eq!(
        a.user_of(&c3).await.expect("user_of").as_deref(),
        Some("hank")
    );
    // logout unbinds the session and its connections
    assert_eq!(b.logout(&sid).await.expect("logout"), 3);
    assert!(a.sessions_of("hank").await.expect("sessions_of").is_empty());
    assert!(a.conns_of("hank").await.expect("conns_of").is_empty());
    // log in again, then "log out everywhere" through the manager: the registry agrees
    let sid2 = stored_session(&m).await;
    a.login(&sid, "hank").await.expect("login");
    a.login(&sid2, "hank").await.expect("login");
    assert_eq!(
        a.sessions_of("hank").await.expect("sessions_of"),
        sorted_sids(vec![sid.clone(), sid2.clone()])
    );
    assert_eq!(m.destroy_user("hank").await.expect("destroy_user"), 2);
    assert!(a.sessions_of("hank").await.expect("sessions_of").is_empty());
    // closing a connection drops it from its session
    a.close(&c1, None).await.expect("close");
    assert_eq!(
        a.connections_of_session(&sid).await.expect("conns"),
        sorted(vec![c2.clone(), c3.clone()])
    );
}

fn sorted_sids(mut v: Vec<SessionId>) -> Vec<SessionId> {
    v.sort();
    v
}

pub async fn send_reaches_users_on_other_nodes(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7018).await;
    let b = node(&fx, 7019).await;
    let c = node(&fx, 7020).await;
    let (on_b, mut rb) = open(&b).await;
    let (on_c1, mut rc1) = open(&c).await;
    let (on_c2, mut rc2) = open(&c).await;
    let (on_a, mut ra) = open(&a).await;
    b.bind(&on_b, "ivy").await.expect("bind");
    c.bind(&on_c1, "ivy").await.expect("bind");
    c.bind(&on_c2, "ivy").await.expect("bind");
    a.bind(&on_a, "jack").await.expect("bind");

    let d = a
        .send(Target::User("ivy"), msg("hi ivy"))
        .await
        .expect("send");
    assert_eq!((d.local, d.nodes), (0, 2));
    for rx in [&mut rb, &mut rc1, &mut rc2] {
        assert_eq!(next_event(rx).await, Event::Message(msg("hi ivy")));
    }
    assert_quiet(&mut ra).await;

    let d = a
        .send_acked(Target::User("ivy"), msg("acked"), Duration::from_secs(5))
        .await
        .expect("send_acked");
    assert_eq!((d.local, d.nodes, d.acked, d.remote), (0, 2, 2, 3));
    for rx in [&mut rb, &mut rc1, &mut rc2] {
        assert_eq!(next_event(rx).await, Event::Message(msg("acked")));
    }
    // from a node that holds one of the user's connections: local plus one other node
    let d = c
        .send(Target::User("ivy"), msg("from c"))
        .await
        .expect("send");
    assert_eq!((d.local, d.nodes), (2, 1));
    for rx in [&mut rb, &mut rc1, &mut rc2] {
        assert_eq!(next_event(rx).await, Event::Message(msg("from c")));
    }
    // the other way round
    let d = b
        .send(Target::User("jack"), msg("hi jack"))
        .await
        .expect("send");
    assert_eq!((d.local, d.nodes), (0, 1));
    assert_eq!(next_event(&mut ra).await, Event::Message(msg("hi jack")));
    // nobody bound: nothing sent
    let d = a
        .send(Target::User("nobody"), msg("x"))
        .await
        .expect("send");
    assert_eq!((d.local, d.nodes), (0, 0));
    // a node that is gone: the publish reaches no subscriber, the ack wait ends at once
    let gone = ConnId::new(&NodeId::new("127.0.0.1", 1, 1).expect("node"), 1);
    let d = a
        .send_acked(Target::Conn(&gone), msg("x"), Duration::from_secs(5))
        .await
        .expect("send");
    assert_eq!((d.local, d.nodes, d.acked), (0, 0, 0));
}

pub async fn send_to_conn_session_and_all(fx: Arc<dyn Fixture>) {
    let m = fx.manager();
    let a = node(&fx, 7021).await;
    let b = node(&fx, 7022).await;
    let sid = stored_session(&m).await;
    let (tx, mut ra1) = outbox();
    let a1 = a.open(meta(), Some(&sid), tx).await.expect("open");
    let (a2, mut ra2) = open(&a).await;
    let (tx, mut rb1) = outbox();
    let b1 = b.open(meta(), Some(&sid), tx).await.expect("open");

    // to one connection, routed by its id
    let d = a
        .send(Target::Conn(&b1), msg("direct"))
        .await
        .expect("send");
    assert_eq!((d.local, d.nodes), (0, 1));
    assert_eq!(next_event(&mut rb1).await, Event::Message(msg("direct")));
    let d = a.send(Target::Conn(&a2), msg("local")).await.expect("send");
    assert_eq!((d.local, d.nodes), (1, 0));
    assert_eq!(next_event(&mut ra2).await, Event::Message(msg("local")));

    // to a session's connections
    let d = b
        .send(Target::Session(&sid), msg("tabs"))
        .await
        .expect("send");
    assert_eq!((d.local, d.nodes), (1, 1));
    assert_eq!(next_event(&mut ra1).await, Event::Message(msg("tabs")));
    assert_eq!(next_event(&mut rb1).await, Event::Message(msg("tabs")));
    assert_quiet(&mut ra2).await;

    // to everyone
    let d = a
        .send_acked(Target::All, msg("all"), Duration::from_secs(5))
        .await
        .expect("send");
    assert_eq!((d.local, d.nodes, d.acked, d.remote), (2, 1, 1, 1));
    for rx in [&mut ra1, &mut ra2, &mut rb1] {
        assert_eq!(next_event(rx).await, Event::Message(msg("all")));
    }
    let _ = a1;

    // a full outbox drops the message (at most once) and does not count it
    let (tx, _full) = tokio::sync::mpsc::channel(1);
    let f = a.open(meta(), None, tx).await.expect("open");
    assert_eq!(
        a.send(Target::Conn(&f), msg("1"))
            .await
            .expect("send")
            .local,
        1
    );
    assert_eq!(
        a.send(Target::Conn(&f), msg("2"))
            .await
            .expect("send")
            .local,
        0
    );
}

pub async fn dead_node_is_purged_by_exactly_one_living_node(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7023).await;
    let b = node(&fx, 7024).await;
    let doomed = node(&fx, 7025).await;
    let mut conns = Vec::new();
    for _ in 0..5 {
        conns.push(open(&doomed).await.0);
    }
    doomed.bind(&conns[0], "kate").await.expect("bind");
    doomed.context(&conns[1]).set("k", &1).await.expect("set");
    let dead_node = doomed.node().clone();
    assert!(a.nodes().await.expect("nodes").contains(&dead_node));
    drop(doomed); // a crash: no more beats, nothing cleaned up
    let purged = eventually(Duration::from_secs(10), || async {
        a.info(&conns[4]).await.expect("info").is_none()
            && !a.nodes().await.expect("nodes").contains(&dead_node)
    })
    .await;
    assert!(
        purged,
        "a dead node's connections are purged by a living node"
    );
    assert!(a.conns_of("kate").await.expect("conns_of").is_empty());
    assert!(a.context(&conns[1]).all().await.expect("all").is_empty());
    for c in &conns {
        assert_eq!(a.info(c).await.expect("info"), None);
    }
    // the lease let exactly one of the two living nodes do it
    assert_eq!(a.purged_count() + b.purged_count(), 5);
    assert!(a.purged_count() == 0 || b.purged_count() == 0);
    // the living nodes are still there
    let nodes = a.nodes().await.expect("nodes");
    assert!(nodes.contains(a.node()) && nodes.contains(b.node()));
}

pub async fn restart_purges_earlier_run(fx: Arc<dyn Fixture>) {
    let first = node(&fx, 7026).await;
    let (old, _r) = open(&first).await;
    first.bind(&old, "liam").await.expect("bind");
    let first_node = first.node().clone();
    drop(first); // crash
    let second = node(&fx, 7026).await;
    assert_eq!(second.node().addr(), first_node.addr());
    assert!(
        second.node().epoch() > first_node.epoch(),
        "a new boot epoch"
    );
    // cleaned at start, without waiting for the liveness timeout
    assert_eq!(second.info(&old).await.expect("info"), None);
    assert!(second.conns_of("liam").await.expect("conns_of").is_empty());
    let (new, _r2) = open(&second).await;
    assert_ne!(new, old);
}

pub async fn listing_is_a_cursor_over_every_connection(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7027).await;
    let b = node(&fx, 7028).await;
    let mut expected = BTreeSet::new();
    let mut keep = Vec::new();
    for i in 0..11 {
        let hub = if i % 3 == 0 { &b } else { &a };
        let (c, rx) = open(hub).await;
        expected.insert(c);
        keep.push(rx);
    }
    let mut seen = BTreeSet::new();
    let mut pages = 0;
    let mut cursor = a.conns(3);
    while let Some(page) = cursor.next_page().await.expect("page") {
        pages += 1;
        for info in page {
            assert_eq!(info.transport, "ws");
            seen.insert(info.id);
        }
        assert!(pages < 50, "the cursor ends");
    }
    assert_eq!(seen, expected);
    // `limit` is a hint (Redis's SSCAN may return a small set whole), but 11 connections on
    // two nodes never come in one page of 3.
    assert!(pages >= 2, "the listing came in several pages, got {pages}");
    let first = a.list_page(None, 100).await.expect("page");
    assert_eq!(first.conns.len(), 11);
    assert!(first.next.is_none());
    assert!(matches!(
        a.list_page(Some("not a cursor"), 3).await,
        Err(Error::InvalidInput(_))
    ));
}

pub async fn snapshot_round_trips_through_bytes(fx: Arc<dyn Fixture>) {
    let hub = node(&fx, 7029).await;
    let (c, _r) = open(&hub).await;
    hub.bind(&c, "mia").await.expect("bind");
    hub.context(&c).set("room", "mqant").await.expect("set");
    hub.context(&c).set("seat", &3u8).await.expect("set");
    let snap = hub.snapshot(&c).await.expect("snapshot").expect("open");
    assert_eq!(snap.user(), Some("mia"));
    let bytes = snap.to_bytes().expect("to_bytes");
    let back = ConnSnapshot::from_bytes(&bytes).expect("from_bytes");
    assert_eq!(back, snap);
    assert_eq!(
        back.get::<String>("room").expect("get").as_deref(),
        Some("mqant")
    );
    assert!(ConnSnapshot::from_bytes(b"\xc1garbage").is_err());
    // import into another connection
    let (d, _r2) = open(&hub).await;
    hub.context(&d).set("seat", &9u8).await.expect("set");
    hub.import(&d, &back).await.expect("import");
    assert_eq!(
        hub.context(&d).get::<u8>("seat").await.expect("get"),
        Some(3)
    );
    assert_eq!(hub.context(&d).all().await.expect("all").len(), 2);
    assert_eq!(
        hub.snapshot(&ConnId::new(hub.node(), 999))
            .await
            .expect("snap"),
        None
    );
}

pub async fn bad_input_is_rejected_before_the_backend(fx: Arc<dyn Fixture>) {
    let hub = node(&fx, 7030).await;
    let (c, _r) = open(&hub).await;
    let invalid = |r: Result<(), Error>| matches!(r, Err(Error::InvalidInput(_)));
    assert!(invalid(hub.bind(&c, "").await));
    assert!(invalid(hub.bind(&c, &"u".repeat(300)).await));
    assert!(invalid(hub.bind(&c, "a\0b").await));
    assert!(invalid(hub.context(&c).set("a\0b", &1).await));
    assert!(invalid(hub.context(&c).set(&"k".repeat(2000), &1).await));
    assert!(invalid(hub.close(&c, Some(Duration::ZERO)).await));
    assert!(invalid(hub.conns_of("").await.map(|_| ())));
    let (tx, _r2) = outbox();
    assert!(invalid(
        hub.open(ConnMeta::new("web socket", None), None, tx.clone())
            .await
            .map(|_| ())
    ));
    assert!(invalid(
        hub.open(ConnMeta::new("", None), None, tx)
            .await
            .map(|_| ())
    ));
    assert!(ConnId::parse("../../etc/passwd").is_err());
    assert!(
        Hub::builder(fx.backend().await)
            .beat_interval(Duration::ZERO)
            .start()
            .await
            .is_err()
    );
    // the connection is untouched
    assert!(hub.info(&c).await.expect("info").is_some());
    assert!(hub.context(&c).all().await.expect("all").is_empty());
}

pub async fn shutdown_unregisters_the_node(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7031).await;
    let b = node(&fx, 7032).await;
    let (c, _r) = open(&b).await;
    b.bind(&c, "noah").await.expect("bind");
    let b_node = b.node().clone();
    b.shutdown().await.expect("shutdown");
    assert_eq!(a.info(&c).await.expect("info"), None);
    assert!(a.conns_of("noah").await.expect("conns_of").is_empty());
    assert!(!a.nodes().await.expect("nodes").contains(&b_node));
}

/// The manager a node's hub follows (its server's HTTP sessions).
fn http(hub: &Hub) -> Manager {
    hub.sessions()
        .expect("the test nodes have a session manager")
        .clone()
}

/// Regenerates `id` through `m` (an HTTP request calling `regenerate`); returns the new id.
async fn regenerate(m: &Manager, id: &SessionId, destroy_old: bool) -> SessionId {
    let s = m.load(Some(id.as_str()));
    s.regenerate(destroy_old).await.expect("regenerate");
    let new = s
        .save()
        .await
        .expect("save")
        .cookie
        .id()
        .cloned()
        .expect("a new id");
    assert_ne!(&new, id);
    new
}

/// Bug A: a session logged in with `Hub::login` fell out of the user index at its first
/// regeneration, and "log out everywhere" missed it.
pub async fn a_login_by_id_survives_regeneration(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7060).await;
    let m = http(&a);
    let s = stored_session(&m).await;
    assert_eq!(a.login(&s, "2000").await.expect("login"), 0);
    assert_eq!(
        m.load(Some(s.as_str()))
            .user()
            .await
            .expect("user")
            .as_deref(),
        Some("2000"),
        "the session does not know it was logged in"
    );
    let s2 = regenerate(&m, &s, true).await;
    assert_eq!(
        a.sessions_of("2000").await.expect("sessions_of"),
        vec![s2.clone()]
    );
    let listed: Vec<SessionId> = m
        .sessions_of("2000")
        .await
        .expect("manager")
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(listed, vec![s2.clone()]);
    assert_eq!(m.destroy_user("2000").await.expect("destroy_user"), 1);
    assert!(
        !m.load(Some(s2.as_str())).exists().await.expect("load"),
        "log out everywhere missed the regenerated session"
    );
    // a session that is not live cannot be logged in
    let ghost = SessionId::generate().expect("id");
    assert!(matches!(
        a.login(&ghost, "2000").await,
        Err(Error::InvalidInput(_))
    ));
    assert!(a.sessions_of("2000").await.expect("sessions_of").is_empty());
}

/// Bug B: `Hub::logout` left the session saying it was logged in, and a regeneration put it
/// back in the user index.
pub async fn a_logout_by_id_logs_the_session_out(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7061).await;
    let b = node(&fx, 7062).await;
    let m = http(&a);
    let s = m.load(None);
    s.set("cart", &1).await.expect("set");
    s.login("3000").await.expect("login");
    let sid = s
        .save()
        .await
        .expect("save")
        .cookie
        .id()
        .cloned()
        .expect("id");
    let (tx, mut rx) = outbox();
    let conn = b.open(meta(), Some(&sid), tx).await.expect("open");
    assert_eq!(
        b.user_of(&conn).await.expect("user_of").as_deref(),
        Some("3000")
    );
    assert_eq!(a.logout(&sid).await.expect("logout"), 1);
    assert_eq!(m.load(Some(sid.as_str())).user().await.expect("user"), None);
    assert!(a.sessions_of("3000").await.expect("sessions_of").is_empty());
    assert_eq!(b.user_of(&conn).await.expect("user_of"), None);
    assert_eq!(
        next_event(&mut rx).await,
        Event::LoggedOut {
            session: sid.clone(),
            user: "3000".into()
        }
    );
    let s2 = regenerate(&m, &sid, true).await;
    assert!(
        a.sessions_of("3000").await.expect("sessions_of").is_empty(),
        "the regeneration brought the logged-out session back"
    );
    assert_eq!(
        m.load(Some(s2.as_str()))
            .get::<u32>("cart")
            .await
            .expect("get"),
        Some(1)
    );
    assert_eq!(b.user_of(&conn).await.expect("user_of"), None);
}

/// Bug C: a regeneration stranded the session's connections on the old id (Dce
/// `renewSession`).
pub async fn regeneration_moves_the_connections_on_every_node(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7063).await;
    let b = node(&fx, 7064).await;
    let m = http(&a);
    let sid = stored_session(&m).await;
    a.login(&sid, "4000").await.expect("login");
    let (tx, mut on_a) = outbox();
    let c1 = a.open(meta(), Some(&sid), tx).await.expect("open");
    let (tx, mut on_b) = outbox();
    let c2 = b.open(meta(), Some(&sid), tx).await.expect("open");
    let s2 = regenerate(&m, &sid, false).await;
    assert_eq!(
        a.connections_of_session(&s2).await.expect("conns"),
        sorted(vec![c1.clone(), c2.clone()])
    );
    assert!(
        a.connections_of_session(&sid)
            .await
            .expect("conns")
            .is_empty()
    );
    assert_eq!(
        b.info(&c2).await.expect("info").expect("open").session,
        Some(s2.clone())
    );
    let renewed = Event::SessionRenewed {
        old: sid.clone(),
        new: s2.clone(),
    };
    assert_eq!(next_event(&mut on_a).await, renewed);
    assert_eq!(next_event(&mut on_b).await, renewed);
    let d = b
        .send(Target::Session(&s2), msg("moved"))
        .await
        .expect("send");
    assert_eq!((d.local, d.nodes), (1, 1));
    assert_eq!(next_event(&mut on_a).await, Event::Message(msg("moved")));
    assert_eq!(next_event(&mut on_b).await, Event::Message(msg("moved")));
    // still the user's, under the new id
    assert_eq!(
        a.sessions_of("4000").await.expect("sessions_of"),
        vec![s2.clone()]
    );
    assert_eq!(
        sorted(a.conns_of("4000").await.expect("conns_of")),
        sorted(vec![c1, c2])
    );
    // a timed rotation takes the same path: one more regeneration, through node b's manager
    let s3 = regenerate(&http(&b), &s2, true).await;
    assert_eq!(a.connections_of_session(&s3).await.expect("conns").len(), 2);
    assert_quiet_but(
        &mut on_a,
        Event::SessionRenewed {
            old: s2.clone(),
            new: s3.clone(),
        },
    )
    .await;
}

/// Asserts the next event is `expected` and nothing else follows.
async fn assert_quiet_but(rx: &mut tokio::sync::mpsc::Receiver<Event>, expected: Event) {
    assert_eq!(next_event(rx).await, expected);
    assert_quiet(rx).await;
}

/// A guest's socket, then a login over HTTP (which regenerates): the socket follows the new id
/// and is bound to the user.
pub async fn login_over_http_binds_the_open_connections(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7065).await;
    let b = node(&fx, 7066).await;
    let m = http(&a);
    let guest = stored_session(&m).await;
    let (tx, mut rx) = outbox();
    let conn = b.open(meta(), Some(&guest), tx).await.expect("open");
    assert_eq!(b.user_of(&conn).await.expect("user_of"), None);
    let s = m.load(Some(guest.as_str()));
    s.login("5000").await.expect("login");
    let sid = s
        .save()
        .await
        .expect("save")
        .cookie
        .id()
        .cloned()
        .expect("id");
    assert_eq!(
        next_event(&mut rx).await,
        Event::SessionRenewed {
            old: guest.clone(),
            new: sid.clone()
        }
    );
    assert_eq!(
        next_event(&mut rx).await,
        Event::LoggedIn {
            session: sid.clone(),
            user: "5000".into()
        }
    );
    assert_eq!(
        b.user_of(&conn).await.expect("user_of").as_deref(),
        Some("5000")
    );
    assert_eq!(
        a.connections_of_session(&sid).await.expect("conns"),
        vec![conn.clone()]
    );
    assert_eq!(a.conns_of("5000").await.expect("conns_of"), vec![conn]);
}

/// A destroyed session (logout over HTTP) and "log out everywhere" reach the sockets: unbound,
/// unlinked, and told with `Event::SessionEnded`.
pub async fn destroy_and_log_out_everywhere_end_the_connections(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7067).await;
    let b = node(&fx, 7068).await;
    let m = http(&a);
    let s1 = stored_session(&m).await;
    let s2 = stored_session(&m).await;
    a.login(&s1, "6000").await.expect("login");
    a.login(&s2, "6000").await.expect("login");
    let (tx, mut r1) = outbox();
    let c1 = a.open(meta(), Some(&s1), tx).await.expect("open");
    let (tx, mut r2) = outbox();
    let c2 = b.open(meta(), Some(&s2), tx).await.expect("open");
    assert_eq!(a.conns_of("6000").await.expect("conns_of").len(), 2);
    // logout over HTTP on node b's server: the session is destroyed
    let s = http(&b).load(Some(s1.as_str()));
    s.logout().await.expect("logout");
    s.save().await.expect("save");
    assert_eq!(
        next_event(&mut r1).await,
        Event::SessionEnded {
            session: s1.clone()
        }
    );
    assert_eq!(a.user_of(&c1).await.expect("user_of"), None);
    assert_eq!(
        a.info(&c1).await.expect("info").expect("open").session,
        None
    );
    assert!(
        a.connections_of_session(&s1)
            .await
            .expect("conns")
            .is_empty()
    );
    assert_eq!(
        a.conns_of("6000").await.expect("conns_of"),
        vec![c2.clone()]
    );
    // log out everywhere on node a's server
    assert_eq!(m.destroy_user("6000").await.expect("destroy_user"), 1);
    assert_eq!(
        next_event(&mut r2).await,
        Event::SessionEnded {
            session: s2.clone()
        }
    );
    assert!(a.conns_of("6000").await.expect("conns_of").is_empty());
    assert!(a.sessions_of("6000").await.expect("sessions_of").is_empty());
    // the sockets stay open as guests
    assert!(a.is_guest(&c1).await.expect("guest") && b.is_guest(&c2).await.expect("guest"));
    assert_eq!(a.event_errors() + b.event_errors(), 0);
}

/// `Session::login` then `Hub::logout` leaves the same state as `Hub::login` then
/// `Hub::logout`; `Hub::login` then `Session::logout` the same as `Session::login` then
/// `Session::logout`.
pub async fn both_sides_of_login_and_logout_agree(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7069).await;
    let m = http(&a);
    async fn state(
        hub: &Hub,
        m: &Manager,
        sid: &SessionId,
        conn: &ConnId,
    ) -> (bool, Option<String>, Vec<SessionId>, Option<String>) {
        let s = m.load(Some(sid.as_str()));
        (
            s.exists().await.expect("exists"),
            s.user().await.expect("user"),
            hub.sessions_of("7000").await.expect("sessions_of"),
            hub.user_of(conn).await.expect("user_of"),
        )
    }
    // HTTP login, registry logout
    let s = m.load(None);
    s.set("cart", &1).await.expect("set");
    s.login("7000").await.expect("login");
    let x = s
        .save()
        .await
        .expect("save")
        .cookie
        .id()
        .cloned()
        .expect("id");
    let (tx, _rx) = outbox();
    let cx = a.open(meta(), Some(&x), tx).await.expect("open");
    a.logout(&x).await.expect("logout");
    // registry login, registry logout
    let y = stored_session(&m).await;
    let (tx, _ry) = outbox();
    let cy = a.open(meta(), Some(&y), tx).await.expect("open");
    a.login(&y, "7000").await.expect("login");
    a.logout(&y).await.expect("logout");
    assert_eq!(state(&a, &m, &x, &cx).await, (true, None, vec![], None));
    assert_eq!(state(&a, &m, &y, &cy).await, (true, None, vec![], None));
    // registry login, HTTP logout == HTTP login, HTTP logout: the session is gone
    let z = stored_session(&m).await;
    let (tx, _rz) = outbox();
    let cz = a.open(meta(), Some(&z), tx).await.expect("open");
    a.login(&z, "7000").await.expect("login");
    let s = m.load(Some(z.as_str()));
    s.logout().await.expect("logout");
    s.save().await.expect("save");
    assert_eq!(state(&a, &m, &z, &cz).await, (false, None, vec![], None));
}

/// Every connection passing `filter`, walked with the cursor (small pages), sorted.
async fn walk(hub: &Hub, filter: &ConnFilter) -> Vec<ConnId> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let page = hub
            .list_filtered(cursor.as_deref(), 2, filter)
            .await
            .expect("list_filtered");
        out.extend(page.conns.into_iter().map(|i| i.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return sorted(out),
        }
    }
    panic!("the filtered listing did not end");
}

/// Dce's listings: filters by user, node, glob over user names and bound/guest; offset-and-limit
/// pages; a connection found by its server's address and local number.
pub async fn listings_filter_page_by_offset_and_find_by_address(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7070).await;
    let b = node(&fx, 7071).await;
    let (a1, _r1) = open(&a).await;
    let (a2, _r2) = open(&a).await;
    let (a3, _r3) = open(&a).await;
    let (b1, _r4) = open(&b).await;
    let (b2, _r5) = open(&b).await;
    a.bind(&a1, "admin-1").await.expect("bind");
    a.bind(&a2, "admin-2").await.expect("bind");
    b.bind(&b1, "bob").await.expect("bind");
    let all = sorted(vec![
        a1.clone(),
        a2.clone(),
        a3.clone(),
        b1.clone(),
        b2.clone(),
    ]);
    assert_eq!(walk(&a, &ConnFilter::default()).await, all);
    let f = ConnFilter::default().user("admin-1").expect("user");
    assert_eq!(walk(&b, &f).await, vec![a1.clone()]);
    assert!(walk(&b, &f.clone().node(b.node().clone())).await.is_empty());
    let f = ConnFilter::default().node(b.node().clone());
    assert_eq!(walk(&a, &f).await, sorted(vec![b1.clone(), b2.clone()]));
    let f = ConnFilter::default().user_glob("admin-*").expect("glob");
    assert_eq!(walk(&a, &f).await, sorted(vec![a1.clone(), a2.clone()]));
    let f = ConnFilter::default().user_glob("?o?").expect("glob");
    assert_eq!(walk(&a, &f).await, vec![b1.clone()]);
    let f = ConnFilter::default().bound(false);
    assert_eq!(walk(&a, &f).await, sorted(vec![a3.clone(), b2.clone()]));
    assert!(matches!(
        ConnFilter::default().user_glob("[admin"),
        Err(Error::InvalidInput(_))
    ));
    // offset and limit: consecutive pages cover the listing once
    let none = ConnFilter::default();
    let mut paged = Vec::new();
    for offset in [0, 2, 4] {
        let page = a.list_range(offset, 2, &none).await.expect("list_range");
        assert!(page.len() <= 2);
        paged.extend(page.into_iter().map(|i| i.id));
    }
    assert_eq!(sorted(paged), all);
    assert!(
        a.list_range(5, 2, &none)
            .await
            .expect("list_range")
            .is_empty()
    );
    let admins = ConnFilter::default().user_glob("admin-*").expect("glob");
    let second = a.list_range(1, 5, &admins).await.expect("list_range");
    assert_eq!(second.len(), 1);
    // by address and local number (Dce getFdForm)
    let found = b
        .find_conn("127.0.0.1", 7070, a2.seq())
        .await
        .expect("find_conn")
        .expect("a2 is there");
    assert_eq!(
        (found.id, found.user.as_deref()),
        (a2.clone(), Some("admin-2"))
    );
    assert_eq!(
        b.find_conn("127.0.0.1", 7070, 999)
            .await
            .expect("find_conn"),
        None
    );
    assert_eq!(
        b.find_conn("127.0.0.1", 7099, 1).await.expect("find_conn"),
        None
    );
    assert!(matches!(
        b.find_conn("bad host!", 7070, 1).await,
        Err(Error::InvalidInput(_))
    ));
}

/// mqant's `Heartbeat` and `Delete` on the built-in keeper: an active user's kept context
/// outlives its first window; a forgotten one is gone.
pub async fn heartbeat_keeps_the_kept_context_and_forget_drops_it(fx: Arc<dyn Fixture>) {
    let a = node(&fx, 7072).await;
    let b = node(&fx, 7073).await;
    let (phone, _r1) = open(&a).await;
    let (laptop, _r2) = open(&b).await;
    a.bind(&phone, "ivan").await.expect("bind");
    b.bind(&laptop, "ivan").await.expect("bind");
    a.context(&phone).set("draft", "hello").await.expect("set");
    // nothing kept yet
    assert!(
        !b.heartbeat(&laptop, Duration::from_secs(1))
            .await
            .expect("heartbeat")
    );
    a.close(&phone, Some(Duration::from_millis(400)))
        .await
        .expect("close");
    tokio::time::sleep(Duration::from_millis(250)).await;
    // the laptop is active: the phone's context lives on past its first window
    assert!(
        b.heartbeat(&laptop, Duration::from_millis(800))
            .await
            .expect("heartbeat")
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (phone2, _r3) = open(&a).await;
    a.bind(&phone2, "ivan").await.expect("bind");
    assert_eq!(
        a.restore("ivan", &phone2).await.expect("restore"),
        Some(phone.clone())
    );
    assert_eq!(
        a.context(&phone2)
            .get::<String>("draft")
            .await
            .expect("get")
            .as_deref(),
        Some("hello")
    );
    // a guest's heartbeat keeps nothing
    let (guest, _r4) = open(&a).await;
    assert!(
        !a.heartbeat(&guest, Duration::from_secs(1))
            .await
            .expect("heartbeat")
    );
    // Delete
    a.close(&phone2, Some(Duration::from_secs(30)))
        .await
        .expect("close");
    b.forget_kept("ivan").await.expect("forget");
    let (phone3, _r5) = open(&a).await;
    a.bind(&phone3, "ivan").await.expect("bind");
    assert_eq!(a.restore("ivan", &phone3).await.expect("restore"), None);
}
