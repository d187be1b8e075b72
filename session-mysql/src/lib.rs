#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod dialect;
mod schema;

pub use dialect::MySqlDialect;
pub use schema::SCHEMA_VERSION;
pub use session_sql::MAX_TABLE_NAME_LEN;

/// Re-export of the sqlx types this crate's API uses ([`MySqlPool`](sqlx::MySqlPool),
/// [`MySqlConnectOptions`](sqlx::mysql::MySqlConnectOptions)), so callers need no direct sqlx
/// dependency of a matching version.
pub use sqlx;

/// The driver's name: [`Storage::name`](session_core::Storage::name) and the backend of its
/// errors ([`Error::Backend`](session_core::Error::Backend),
/// [`Error::Corrupt`](session_core::Error::Corrupt)).
pub const NAME: &str = "mysql";

/// A session store in MySQL or MariaDB (InnoDB) tables, shared by any number of tasks,
/// processes and machines: `session-sql`'s store in the [MySQL dialect](MySqlDialect).
///
/// Holds an sqlx connection pool whose connections run at `READ COMMITTED`; cloning is cheap and
/// shares the pool. Every read is one statement (one consistent snapshot); every write that
/// reads before it writes runs in one transaction that first locks the session's row.
///
/// [`MySqlStore::open(url)`](session_sql::SqlStore::open) opens it with the defaults,
/// [`MySqlStore::builder()`](session_sql::SqlStore::builder) gives a [`MySqlStoreBuilder`].
/// Besides the [`Storage`](session_core::Storage) methods: [`pool`](session_sql::SqlStore::pool),
/// [`table`](session_sql::SqlStore::table), [`schema`](session_sql::SqlStore::schema),
/// [`schema_version`](session_sql::SqlStore::schema_version) and
/// [`close`](session_sql::SqlStore::close).
pub type MySqlStore = session_sql::SqlStore<MySqlDialect>;

/// Builder for a [`MySqlStore`]: table name (and schema, which in MySQL is a database), pool
/// size and timeouts. Made by [`MySqlStore::builder()`](session_sql::SqlStore::builder); see
/// [`SqlStoreBuilder`](session_sql::SqlStoreBuilder) for every option.
///
/// ```no_run
/// use std::time::Duration;
/// use session_mysql::MySqlStore;
///
/// # async fn demo() -> session_core::Result<()> {
/// let store = MySqlStore::builder()
///     .table("web_sessions")              // default "sessions"
///     .max_connections(20)
///     .acquire_timeout(Duration::from_secs(3))
///     .open("mysql://app:secret@db.internal:3306/app")
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
///
/// `open_with(MySqlConnectOptions)` opens with explicit sqlx connect options instead of a URL.
pub type MySqlStoreBuilder = session_sql::SqlStoreBuilder<MySqlDialect>;
