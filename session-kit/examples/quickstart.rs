//! Creates, reads, expires and deletes a session on the in-memory driver, talking to the
//! `Storage` trait directly. Run with `cargo run -p session --example quickstart`.

use std::sync::Arc;
use std::time::Duration;

use session_kit::memory::MemoryStore;
use session_kit::{SessionId, Storage, Value};

#[tokio::main]
async fn main() -> Result<(), session_kit::Error> {
    let store: Arc<dyn Storage> = Arc::new(MemoryStore::new());
    println!("driver: {} {:?}", store.name(), store.capabilities());

    // Create: the first write creates the session; the TTL is kept to the millisecond.
    let id = SessionId::generate()?;
    store
        .set(
            &id,
            "user",
            Value::encode("ada")?,
            Duration::from_millis(400),
        )
        .await?;
    store
        .set(
            &id,
            "visits",
            Value::encode(&1u32)?,
            Duration::from_millis(400),
        )
        .await?;
    println!("created session {}", id.short());

    // Read: values come back as MessagePack bytes, decoded into the type asked for.
    let user: String = store
        .get(&id, "user")
        .await?
        .map(|v| v.decode())
        .transpose()?
        .unwrap_or_default();
    println!("read: user = {user:?}, {} keys", store.get_size(&id).await?);

    // Expire: after the TTL the session is gone for every method.
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!(
        "after 500 ms: session present = {}",
        store
            .get_session(&id, Duration::from_secs(60), None)
            .await?
            .is_some()
    );

    // Delete: remove_all drops a live session at once.
    let id2 = SessionId::generate()?;
    store
        .set(
            &id2,
            "cart",
            Value::encode(&["book", "pen"])?,
            Duration::from_secs(60),
        )
        .await?;
    store.remove_all(&id2).await?;
    println!(
        "after remove_all: {} keys left",
        store.get_size(&id2).await?
    );

    // Outside input is validated before it can reach a backend.
    match SessionId::parse("../../etc/passwd") {
        Err(e) => println!("rejected a hostile id: {e}"),
        Ok(_) => unreachable!("a path is never a valid id"),
    }
    Ok(())
}
