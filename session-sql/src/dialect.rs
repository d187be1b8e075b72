//! [`Dialect`]: what differs from one SQL server to the next.

use session_core::driver::{ChangeSet, Expiry, Result, Ttl, async_trait};
use sqlx::error::DatabaseError;
use sqlx::pool::PoolOptions;
use sqlx::{Database, Decode, Pool, Type};

use crate::schema::Tables;

/// The sqlx connect options of a dialect's database (`PgConnectOptions`,
/// `MySqlConnectOptions`).
pub type ConnectOptions<D> =
    <<<D as Dialect>::Db as Database>::Connection as sqlx::Connection>::Options;

/// The SQL a server speaks and the errors it answers with: everything the shared
/// [`SqlStore`](crate::SqlStore) cannot say in SQL common to all servers.
///
/// A value of the dialect is built once per store by [`new`](Self::new) and holds the
/// dialect's own statements for that store's tables. The store runs the shared statements
/// (reads, the owner index, unlock, scan, the TTL update) itself, with the dialect's
/// [`placeholder`](Self::placeholder)s, [`quote`](Self::quote)s and [`upsert`](Self::upsert);
/// it asks the dialect for the operations whose shape differs between servers: the atomic
/// [`apply`](Self::apply) of a change set, [`remove_all`](Self::remove_all),
/// [`try_lock`](Self::try_lock), a [`purge`](Self::purge) batch, and the
/// [`migrate`](Self::migrate) on opening. Each of those is one attempt: the store retries it
/// when it fails with an error the dialect calls [`retryable`](Self::is_retryable).
///
/// The README's "Adding a dialect" walks through an implementation; `session-postgres` and
/// `session-mysql` are the two there are.
#[async_trait]
pub trait Dialect: Sized + Send + Sync + 'static {
    /// The sqlx database (`sqlx::Postgres`, `sqlx::MySql`).
    type Db: Database;

    /// How the server hands back a text column (ids, keys, owners): `String`, or `Vec<u8>`
    /// where it flags binary-collated columns as binary (MySQL). The store checks it is UTF-8.
    type Text: for<'r> Decode<'r, Self::Db> + Type<Self::Db> + Into<Vec<u8>> + Send;

    /// The driver's name: [`Driver::name`](session_core::driver::Driver::name) and the backend
    /// of every error (`"postgres"`).
    const NAME: &'static str;

    /// The server's name in messages (`"PostgreSQL"`, `"MySQL/MariaDB"`).
    const SERVER: &'static str;

    /// `MIGRATIONS[n]` takes the tables from schema version `n` to `n + 1`: statement
    /// templates for [`Tables::render`], run in order. The schema version the dialect writes
    /// is `MIGRATIONS.len()`. A schema change appends a step; a step, once released, never
    /// changes.
    const MIGRATIONS: &'static [&'static [&'static str]];

    /// The template that creates the version table if it is missing (`{VT}`, one `version`
    /// column of a signed 64-bit integer type).
    const VERSION_TABLE: &'static str;

    /// The template that deletes up to a batch of expired lease locks: parameters `now`,
    /// then the batch size.
    const PURGE_LOCKS: &'static str;

    /// `name` as a quoted identifier (`"name"`, `` `name` ``). Names are checked
    /// ([`check_ident`](crate::check_ident)) before they are quoted.
    fn quote(name: &str) -> String;

    /// The `n`th bind parameter (from 1): `?` by default, `$n` for PostgreSQL. The shared
    /// statements are written with `?` and numbered through this.
    fn placeholder(n: usize) -> String {
        let _ = n;
        "?".to_owned()
    }

    /// The tail of an `INSERT` that, when a row with the same `key` columns exists, updates
    /// its `update` columns to the inserted values instead (`ON CONFLICT (..) DO UPDATE SET`,
    /// `ON DUPLICATE KEY UPDATE`).
    fn upsert(key: &[&str], update: &[&str]) -> String;

    /// Whether a statement or transaction that failed with `error` should be tried again:
    /// deadlocks and serialization failures. The store tries up to five times.
    fn is_retryable(error: &dyn DatabaseError) -> bool;

    /// Whether `error` says the server ended the connection (it is shutting down, crashed, or
    /// an administrator killed the session), so that a read may be tried again on another
    /// connection. The default: SQLSTATE class `08` (connection exception). I/O errors count
    /// as lost connections without asking.
    fn is_connection_lost(error: &dyn DatabaseError) -> bool {
        error.code().is_some_and(|code| code.starts_with("08"))
    }

    /// How many rows a statement changed.
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// `host:port` of the server, for the message when it cannot be reached.
    fn address(options: &ConnectOptions<Self>) -> String;

    /// Settings the dialect adds to every pooled connection (MySQL sets the isolation level);
    /// the default adds none.
    fn pool_options(options: PoolOptions<Self::Db>) -> PoolOptions<Self::Db> {
        options
    }

    /// The dialect's statements for `tables`.
    fn new(tables: &Tables) -> Self;

    /// Creates or migrates the tables on `conn`, a connection of its own opened for this: takes
    /// the dialect's migration lock (so two processes opening a new database do not both
    /// create the tables), creates [`VERSION_TABLE`](Self::VERSION_TABLE), reads the version
    /// with [`migrate::READ_VERSION`](crate::migrate::READ_VERSION) and runs
    /// [`migrate::pending`](crate::migrate::pending).
    async fn migrate(
        &self,
        conn: &mut <Self::Db as Database>::Connection,
        tables: &Tables,
    ) -> Result<()>;

    /// One attempt at applying `changes` atomically, as
    /// [`Driver::apply`](session_core::driver::Driver::apply) describes: lock the session row
    /// first (creating a placeholder row with deadline `-1` for a new session), start a
    /// missing or expired session empty, write nothing when the session is not live and
    /// `changes.only_if_exists` is set or `expiry` is [`Expiry::Keep`], clear, remove, set,
    /// then set the deadline (`now + ttl`, kept for `Keep`) or delete the session row (and its
    /// owner binding) when no key is left. Returns whether the session exists afterwards.
    async fn apply(
        &self,
        pool: &Pool<Self::Db>,
        id: &str,
        changes: &ChangeSet,
        expiry: Expiry,
    ) -> sqlx::Result<bool>;

    /// One attempt at deleting a session (its values by cascade) and its owner binding, the
    /// session row first, in one transaction.
    async fn remove_all(&self, pool: &Pool<Self::Db>, id: &str) -> sqlx::Result<()>;

    /// One attempt at taking the lease lock of `id` with `token` until now + `lease`: taken if
    /// no lock row exists or the existing one ran out. Returns whether it was taken.
    async fn try_lock(
        &self,
        pool: &Pool<Self::Db>,
        id: &str,
        token: &str,
        lease: Ttl,
    ) -> sqlx::Result<bool>;

    /// One batch of the purge: deletes up to `limit` expired sessions (their values by
    /// cascade, their owner bindings), skipping rows other transactions hold, and returns how
    /// many sessions it deleted.
    async fn purge(&self, pool: &Pool<Self::Db>, limit: i64) -> sqlx::Result<u64>;
}
