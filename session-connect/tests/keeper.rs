//! A keeper of the application's own (mqant's `StorageHandler`): the hub hands it the contexts
//! of closing connections and takes them back on restore, and the registry's backend keeps
//! nothing itself.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use session_connect::{Backend, ConnKeeper, ConnMeta, Hub, Kept, MemoryBackend};
use session_core::{Result, async_trait};

/// Keeps contexts in a map and records every call.
#[derive(Default)]
struct MapKeeper {
    kept: Mutex<HashMap<String, (Kept, Duration)>>,
    calls: Mutex<Vec<String>>,
}

#[async_trait]
impl ConnKeeper for MapKeeper {
    async fn store(&self, user: &str, kept: Kept, keep_for: Duration) -> Result<()> {
        self.calls.lock().unwrap().push(format!("store {user}"));
        self.kept
            .lock()
            .unwrap()
            .insert(user.into(), (kept, keep_for));
        Ok(())
    }
    async fn take(&self, user: &str) -> Result<Option<Kept>> {
        self.calls.lock().unwrap().push(format!("take {user}"));
        Ok(self.kept.lock().unwrap().remove(user).map(|(k, _)| k))
    }
    async fn delete(&self, user: &str) -> Result<()> {
        self.calls.lock().unwrap().push(format!("delete {user}"));
        self.kept.lock().unwrap().remove(user);
        Ok(())
    }
    async fn heartbeat(&self, user: &str, keep_for: Duration) -> Result<bool> {
        self.calls.lock().unwrap().push(format!("heartbeat {user}"));
        Ok(match self.kept.lock().unwrap().get_mut(user) {
            Some((_, d)) => {
                *d = keep_for;
                true
            }
            None => false,
        })
    }
}

#[tokio::test]
async fn the_hub_keeps_closed_contexts_through_the_applications_keeper() {
    let backend = Arc::new(MemoryBackend::new());
    let keeper = Arc::new(MapKeeper::default());
    let hub = Hub::builder(backend.clone())
        .addr("127.0.0.1", 7080)
        .keeper(keeper.clone())
        .start()
        .await
        .unwrap();
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let old = hub.open(ConnMeta::new("ws", None), None, tx).await.unwrap();
    hub.bind(&old, "kim").await.unwrap();
    hub.context(&old).set("room", "lobby").await.unwrap();
    hub.close(&old, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    {
        let kept = keeper.kept.lock().unwrap();
        let (k, keep_for) = kept
            .get("kim")
            .expect("stored with the application's keeper");
        assert_eq!(k.from, old);
        assert!(k.context.contains_key("room"));
        assert_eq!(*keep_for, Duration::from_secs(60));
    }
    // the backend's own keeper holds nothing
    assert_eq!(backend.take_kept("kim").await.unwrap(), None);
    let (tx, _rx2) = tokio::sync::mpsc::channel(8);
    let new = hub.open(ConnMeta::new("ws", None), None, tx).await.unwrap();
    hub.bind(&new, "kim").await.unwrap();
    assert!(hub.heartbeat(&new, Duration::from_secs(90)).await.unwrap());
    assert_eq!(
        keeper.kept.lock().unwrap()["kim"].1,
        Duration::from_secs(90)
    );
    assert_eq!(hub.restore("kim", &new).await.unwrap(), Some(old));
    assert_eq!(
        hub.context(&new)
            .get::<String>("room")
            .await
            .unwrap()
            .as_deref(),
        Some("lobby")
    );
    hub.forget_kept("kim").await.unwrap();
    // a guest closing with keep_for stores nothing
    let (tx, _rx3) = tokio::sync::mpsc::channel(8);
    let guest = hub.open(ConnMeta::new("ws", None), None, tx).await.unwrap();
    hub.close(&guest, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        *keeper.calls.lock().unwrap(),
        ["store kim", "heartbeat kim", "take kim", "delete kim"]
    );
}
