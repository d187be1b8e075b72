//! Real stores for the bridge's tests: SQLite in a temp file, Redis on 127.0.0.1:6379 (or
//! `REDIS_URL`) under a prefix of its own, deleted afterwards even when the test fails.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::panic::resume_unwind;
use std::path::PathBuf;

use session_core::SessionId;
use session_redis::RedisStore;
use session_sqlite::SqliteStore;
use session_tower_sessions::TowerSessionsStore;

/// Runs `test` on a bridge over a SQLite database in a fresh temp file; the file's path is
/// passed too, for checks that look at the table itself.
pub async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(TowerSessionsStore, PathBuf) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.db");
    let store = SqliteStore::open(&path).await.expect("open SQLite");
    let outcome = tokio::spawn(test(TowerSessionsStore::from_store(store), path)).await;
    drop(dir);
    if let Err(e) = outcome {
        resume_unwind(e.into_panic());
    }
}

/// Runs `test` on a bridge over the Redis server at `REDIS_URL` (127.0.0.1:6379 by default),
/// under a prefix no other test uses; deletes every key of the prefix afterwards, whether the
/// test passed or not. Fails with how to start Redis if the server is not there.
pub async fn with_redis<F, Fut>(test: F)
where
    F: FnOnce(TowerSessionsStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let random = SessionId::generate().expect("OS randomness");
    let prefix = format!("sessiontest:tower:{}", &random.as_str()[..12]);
    let store = match RedisStore::builder().prefix(&prefix).open(&url).await {
        Ok(store) => store,
        Err(e) => panic!(
            "Redis is not reachable at {url} ({e}); start it with: redis-server --daemonize yes \
             --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no (or set REDIS_URL)"
        ),
    };
    let outcome = tokio::spawn(test(TowerSessionsStore::from_store(store.clone()))).await;
    let cleared = store.clear_prefix().await;
    if let Err(e) = outcome {
        resume_unwind(e.into_panic());
    }
    cleared.expect("deleting the test's keys");
}

/// Rows of the `sessions` table for session `id`, expired or not (what a purge deletes).
pub fn sqlite_rows(path: &std::path::Path, id: &str) -> i64 {
    let db = rusqlite::Connection::open(path).expect("open the database file");
    db.query_row("SELECT COUNT(*) FROM sessions WHERE id = ?1", [id], |row| {
        row.get(0)
    })
    .expect("count rows")
}
