#![doc = include_str!("../README.md")]

pub use session_core::*;

/// The in-memory driver (feature `memory`, on by default).
#[cfg(feature = "memory")]
pub use session_memory as memory;

/// The one-file-per-session driver (feature `file`).
#[cfg(feature = "file")]
pub use session_file as file;

/// The SQLite driver (feature `sqlite`).
#[cfg(feature = "sqlite")]
pub use session_sqlite as sqlite;

/// The sled driver (feature `sled`).
#[cfg(feature = "sled")]
pub use session_sled as sled;

/// The Redis driver, single node or Cluster (feature `redis`).
#[cfg(feature = "redis")]
pub use session_redis as redis;

/// The PostgreSQL driver (feature `postgres`).
#[cfg(feature = "postgres")]
pub use session_postgres as postgres;

/// The MySQL and MariaDB driver (feature `mysql`).
#[cfg(feature = "mysql")]
pub use session_mysql as mysql;

/// The memcached driver (feature `memcached`). It has no owner index, so a
/// [`Manager`] on it needs [`Config::owner_index`] switched off.
#[cfg(feature = "memcached")]
pub use session_memcached as memcached;

/// The connection registry for long-lived connections (feature `connect`).
#[cfg(feature = "connect")]
pub use session_connect as connect;

/// Storage layers: tracing and metrics around every driver call (feature `layers`).
#[cfg(feature = "layers")]
pub use session_layers as layers;

/// Sessions safe at rest (feature `at-rest`): `session_kit::at_rest::HashedIdsLayer` stores each
/// session under a keyed hash of its id, `session_kit::at_rest::EncryptionLayer` encrypts its
/// values.
#[cfg(feature = "at-rest")]
pub use session_at_rest as at_rest;

/// The HTTP layer for axum and tower (feature `axum`): `session_kit::axum::SessionLayer`, the
/// `session_kit::axum::Session` extractor for handlers, cookie configuration and keys.
#[cfg(feature = "axum")]
pub use session_axum as axum;

/// A tower-sessions store over any driver (feature `tower-sessions`): a tower-sessions app keeps
/// its `SessionManagerLayer` and moves to any of the drivers above.
#[cfg(feature = "tower-sessions")]
pub use session_tower_sessions as tower_sessions;

/// The actix-web 4 integration (feature `actix`): `session_kit::actix::SessionMiddleware`,
/// cookie configuration and keys; handlers take [`Session`] itself.
#[cfg(feature = "actix")]
pub use session_actix as actix;

/// The repository README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct RootReadme;
