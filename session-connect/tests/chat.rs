//! Runs the `chat` example as two processes on two ports against one Redis, and checks that a
//! message sent to a user reaches every tab of that user on both processes.
#![allow(clippy::unwrap_used)]

mod common;

use common::procs::{Ws, connect_welcomed, example_binary, free_port, next_text, spawn_server};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

async fn tab(port: u16, user: &str) -> Ws {
    connect_welcomed(format!("ws://127.0.0.1:{port}/ws?user={user}"), user, port).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_user_reaches_all_tabs_on_both_processes() {
    let prefix = common::unique_prefix();
    // fail early with the how-to if Redis is down
    let cleanup = common::open_redis(&prefix).await;
    let bin = tokio::task::spawn_blocking(|| example_binary("chat"))
        .await
        .expect("build task");
    let (p1, p2) = (free_port(), free_port());
    let _one = spawn_server(&bin, p1, &prefix);
    let _two = spawn_server(&bin, p2, &prefix);

    let mut alice1 = tab(p1, "alice").await;
    let mut alice2 = tab(p2, "alice").await;
    let mut alice3 = tab(p2, "alice").await;
    let mut bob = tab(p1, "bob").await;

    bob.send(Message::Text("@alice hello from bob".into()))
        .await
        .expect("send");
    for ws in [&mut alice1, &mut alice2, &mut alice3] {
        assert_eq!(next_text(ws).await, "bob: hello from bob");
    }
    assert_eq!(next_text(&mut bob).await, "sent local=1 nodes=1");

    // and back, from the other process
    alice3
        .send(Message::Text("@bob hi bob".into()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut bob).await, "alice: hi bob");

    // to everyone: all four sockets
    bob.send(Message::Text("hello all".into()))
        .await
        .expect("send");
    for ws in [&mut alice1, &mut alice2, &mut alice3, &mut bob] {
        let mut got = next_text(ws).await;
        while got.starts_with("sent ") {
            got = next_text(ws).await;
        }
        assert_eq!(got, "bob: hello all");
    }

    drop((_one, _two));
    cleanup
        .clear_prefix()
        .await
        .expect("deleting the test's keys");
}
