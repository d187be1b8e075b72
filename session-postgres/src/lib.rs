#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod dialect;
mod schema;

pub use dialect::PostgresDialect;
pub use schema::SCHEMA_VERSION;
pub use session_sql::MAX_TABLE_NAME_LEN;

/// Re-export of the sqlx types this crate's API uses ([`PgPool`](sqlx::PgPool),
/// [`PgConnectOptions`](sqlx::postgres::PgConnectOptions)), so callers need no direct sqlx
/// dependency of a matching version.
pub use sqlx;

/// The driver's name: [`Storage::name`](session_core::Storage::name) and the backend of its
/// errors ([`Error::Backend`](session_core::Error::Backend),
/// [`Error::Corrupt`](session_core::Error::Corrupt)).
pub const NAME: &str = "postgres";

/// A session store in PostgreSQL tables, shared by any number of tasks, processes and machines:
/// `session-sql`'s store in the [PostgreSQL dialect](PostgresDialect).
///
/// Holds an sqlx connection pool; cloning is cheap and shares the pool. Every read is one
/// statement (one consistent snapshot); every write is one statement too, the change sets
/// through a PL/pgSQL function that runs the whole change in one transaction.
///
/// [`PostgresStore::open(url)`](session_sql::SqlStore::open) opens it with the defaults,
/// [`PostgresStore::builder()`](session_sql::SqlStore::builder) gives a
/// [`PostgresStoreBuilder`]. Besides the [`Storage`](session_core::Storage) methods:
/// [`pool`](session_sql::SqlStore::pool), [`table`](session_sql::SqlStore::table),
/// [`schema`](session_sql::SqlStore::schema),
/// [`schema_version`](session_sql::SqlStore::schema_version) and
/// [`close`](session_sql::SqlStore::close).
pub type PostgresStore = session_sql::SqlStore<PostgresDialect>;

/// Builder for a [`PostgresStore`]: table and schema names, pool size and timeouts. Made by
/// [`PostgresStore::builder()`](session_sql::SqlStore::builder); see
/// [`SqlStoreBuilder`](session_sql::SqlStoreBuilder) for every option.
///
/// ```no_run
/// use std::time::Duration;
/// use session_postgres::PostgresStore;
///
/// # async fn demo() -> session_core::Result<()> {
/// let store = PostgresStore::builder()
///     .schema("app")                      // must exist; default: the search_path
///     .table("web_sessions")              // default "sessions"
///     .max_connections(20)
///     .acquire_timeout(Duration::from_secs(3))
///     .open("postgres://app@db.internal/app")
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
///
/// `open_with(PgConnectOptions)` opens with explicit sqlx connect options instead of a URL.
pub type PostgresStoreBuilder = session_sql::SqlStoreBuilder<PostgresDialect>;
