//! The conformance cases: one `async fn(Arc<dyn Storage>)` per rule of the [`Storage`] contract.
//!
//! Each case gets a fresh, isolated store, writes only sessions with ids it generated itself, and
//! panics with a message that names the method and what the driver did wrong. Cases that need a
//! capability first read [`Storage::capabilities`]: a declared capability is checked to work, an
//! undeclared one to return an error for which [`Error::is_unsupported`] is true. Nothing is
//! skipped silently.
//!
//! Timing: expiry cases use TTLs of a few hundred milliseconds and check "present" well before the
//! deadline and "gone" well after it (at least 150 ms either side), so that a loaded machine does
//! not make them flake.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use session_core::{Data, Error, Result, SessionId, Storage, Value};

mod apply;
mod basic;
mod concurrency;
mod expiry;
mod index;
mod lock;
mod maintenance;
mod values;

pub use apply::*;
pub use basic::*;
pub use concurrency::*;
pub use expiry::*;
pub use index::*;
pub use lock::*;
pub use maintenance::*;
pub use values::*;

/// The store every case receives.
type Store = Arc<dyn Storage>;

/// A TTL that never runs out during a case.
const LONG: Duration = Duration::from_secs(600);

/// `n` milliseconds.
const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fresh random session id.
fn new_id() -> SessionId {
    SessionId::generate().expect("SessionId::generate failed: the OS has no randomness")
}

/// A valid id from fixed text.
fn fixed_id(text: &str) -> SessionId {
    SessionId::parse(text).unwrap_or_else(|e| panic!("suite bug: {text:?} is not a valid id: {e}"))
}

/// The MessagePack encoding of `text`, as the session layer would store it.
fn val(text: &str) -> Value {
    Value::encode(text).expect("encoding a string as MessagePack cannot fail")
}

/// A session's data from `(key, value)` pairs.
fn data(pairs: &[(&str, &str)]) -> Data {
    pairs.iter().map(|(k, v)| (k.to_string(), val(v))).collect()
}

/// The keys of `d`, sorted, for failure messages.
fn keys(d: &Data) -> String {
    let mut keys: Vec<&str> = d.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys.len() > 12 {
        let n = keys.len();
        keys.truncate(12);
        return format!("{keys:?} and {} more ({n} keys)", n - 12);
    }
    format!("{keys:?}")
}

/// Unwraps a result the contract says must be `Ok`.
#[track_caller]
fn ok<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what} returned an error, expected Ok: {e}"),
    }
}

/// Asserts that `result` is [`Error::InvalidInput`].
#[track_caller]
fn invalid_input<T: Debug>(result: Result<T>, what: &str) {
    match result {
        Err(Error::InvalidInput(_)) => {}
        Err(e) => panic!("{what} returned `{e}`, expected Error::InvalidInput"),
        Ok(v) => panic!("{what} returned Ok({v:?}), expected Error::InvalidInput"),
    }
}

/// Asserts that `result` is an error for which [`Error::is_unsupported`] is true.
#[track_caller]
fn unsupported<T: Debug>(result: Result<T>, what: &str) {
    match result {
        Err(e) if e.is_unsupported() => {}
        Err(e) => panic!(
            "{what} returned `{e}`, expected Error::Unsupported because capabilities() declares it false"
        ),
        Ok(v) => panic!(
            "{what} returned Ok({v:?}), expected Error::Unsupported because capabilities() declares it false: \
             a driver never silently does nothing"
        ),
    }
}

/// Asserts that the session holds exactly `expected`, through every read method.
async fn assert_data(store: &Store, id: &SessionId, expected: &Data, ctx: &str) {
    let name = store.name();
    let map = ok(store.get_map(id).await, "get_map");
    assert!(
        &map == expected,
        "[{name}] {ctx}: get_map returned keys {}, expected {}{}",
        keys(&map),
        keys(expected),
        if map.len() == expected.len() {
            " (same keys, different values)"
        } else {
            ""
        }
    );
    let size = ok(store.get_size(id).await, "get_size");
    assert_eq!(size, expected.len(), "[{name}] {ctx}: get_size is wrong");
    let session = ok(store.get_session(id, LONG, None).await, "get_session");
    if expected.is_empty() {
        assert!(
            session.is_none(),
            "[{name}] {ctx}: get_session returned keys {} for a session with no keys (it must not exist)",
            keys(&session.unwrap_or_default())
        );
    } else {
        assert!(
            session.as_ref() == Some(expected),
            "[{name}] {ctx}: get_session returned {}, expected keys {}",
            session.as_ref().map_or("None".to_string(), keys),
            keys(expected)
        );
    }
    for (key, value) in expected.iter().take(50) {
        let got = ok(store.get(id, key).await, "get");
        assert!(
            got.as_ref() == Some(value),
            "[{name}] {ctx}: get({key:?}) returned {got:?}, expected {value:?}"
        );
    }
}

/// Asserts that the session does not exist, through every read method.
async fn assert_missing(store: &Store, id: &SessionId, ctx: &str) {
    let name = store.name();
    let size = ok(store.get_size(id).await, "get_size");
    assert_eq!(
        size, 0,
        "[{name}] {ctx}: get_size must be 0 for a missing session"
    );
    let map = ok(store.get_map(id).await, "get_map");
    assert!(
        map.is_empty(),
        "[{name}] {ctx}: get_map returned keys {} for a missing session",
        keys(&map)
    );
    let session = ok(store.get_session(id, LONG, None).await, "get_session");
    assert!(
        session.is_none(),
        "[{name}] {ctx}: get_session returned keys {} for a missing session",
        keys(&session.unwrap_or_default())
    );
    let loaded = ok(store.load(id).await, "load");
    assert!(
        loaded.is_none(),
        "[{name}] {ctx}: load returned {loaded:?} for a missing session"
    );
    for key in ["a", "b", "k", ""] {
        let got = ok(store.get(id, key).await, "get");
        assert!(
            got.is_none(),
            "[{name}] {ctx}: get({key:?}) returned {got:?} for a missing session"
        );
    }
}

/// Whether the session exists, judged by `get_size` alone (cheap, used in timing checks).
async fn exists(store: &Store, id: &SessionId) -> bool {
    ok(store.get_size(id).await, "get_size") > 0
}

/// Sessions the scan cases write into the fixture's neighbour before they scan: enough that a
/// scan whose cost follows the backend's whole keyspace (a `SCAN MATCH` with the page size as its
/// `COUNT`) needs hundreds of pages, where one that follows the store's own sessions needs a few.
const CROWD: usize = 1_500;

/// The running case's neighbour store (see [`Fixture::neighbour`](crate::Fixture::neighbour)),
/// filled with [`CROWD`] sessions of its own, 32 writes at a time, and their ids; fails the case
/// if the fixture has none.
async fn crowded_neighbour(store: &Store) -> (Store, BTreeSet<SessionId>) {
    let name = store.name();
    let neighbour = crate::fixture::current_neighbour().unwrap_or_else(|| {
        panic!(
            "[{name}] the scan cases need a neighbour store: build the fixture with \
             Fixture::new(store).neighbour(other), where `other` is a second store of the same \
             driver on the same backend (another prefix, table or directory), so the suite can \
             check that a scan skips other data and costs pages in proportion to the store's own \
             sessions"
        )
    });
    let ids: Vec<SessionId> = (0..CROWD).map(|_| new_id()).collect();
    for chunk in ids.chunks(32) {
        let mut writes = tokio::task::JoinSet::new();
        for id in chunk {
            let (neighbour, id) = (Arc::clone(&neighbour), id.clone());
            writes.spawn(async move { neighbour.set(&id, "k", val("neighbour"), LONG).await });
        }
        while let Some(joined) = writes.join_next().await {
            let written = joined.unwrap_or_else(|e| panic!("[{name}] a neighbour write: {e}"));
            ok(written, "set (on the neighbour store)");
        }
    }
    (neighbour, ids.into_iter().collect())
}

/// Every id a full scan returns (only when the driver declares `scan`). The walk must end within
/// `max_pages` pages: a cursor that never ends, or a scan whose pages do not follow the store's
/// own sessions, fails instead of hanging.
async fn scan_all(store: &Store, limit: usize, max_pages: usize) -> BTreeSet<SessionId> {
    let name = store.name();
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..max_pages {
        let page = ok(store.scan(cursor.as_deref(), limit).await, "scan");
        seen.extend(page.ids);
        match page.next {
            Some(next) => {
                assert!(
                    cursor.as_deref() != Some(next.as_str()),
                    "[{name}] scan returned the cursor it was given ({next:?}) as the next cursor: it would never end"
                );
                cursor = Some(next);
            }
            None => return seen,
        }
    }
    panic!(
        "[{name}] scan did not finish within {max_pages} pages of {limit} while the store held \
         {} sessions (and its neighbour on the same backend {CROWD}): listing must cost in \
         proportion to the store's own sessions, not to everything the backend holds",
        seen.len()
    )
}
