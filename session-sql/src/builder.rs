//! [`SqlStoreBuilder`]: table and schema names, pool size and timeouts of a [`SqlStore`].

use std::marker::PhantomData;
use std::time::Duration;

use session_core::{Error, Result};
use sqlx::pool::PoolOptions;
use sqlx::{ConnectOptions as _, Connection as _};

use crate::dialect::ConnectOptions;
use crate::{Dialect, SqlStore, Tables};

/// Builder for a [`SqlStore`] of dialect `D`: table and schema names, pool size and timeouts.
/// The drivers name it `PostgresStoreBuilder` and `MySqlStoreBuilder`, and make it with
/// `PostgresStore::builder()` / `MySqlStore::builder()`.
pub struct SqlStoreBuilder<D> {
    table: String,
    schema: Option<String>,
    max_connections: u32,
    min_connections: u32,
    connect_timeout: Duration,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
    purge_batch: u32,
    dialect: PhantomData<fn() -> D>,
}

impl<D> Default for SqlStoreBuilder<D> {
    fn default() -> Self {
        SqlStoreBuilder {
            table: "sessions".to_owned(),
            schema: None,
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            purge_batch: 1000,
            dialect: PhantomData,
        }
    }
}

impl<D> Clone for SqlStoreBuilder<D> {
    fn clone(&self) -> Self {
        SqlStoreBuilder {
            table: self.table.clone(),
            schema: self.schema.clone(),
            dialect: PhantomData,
            ..*self
        }
    }
}

impl<D> std::fmt::Debug for SqlStoreBuilder<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStoreBuilder")
            .field("table", &self.table)
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("purge_batch", &self.purge_batch)
            .finish()
    }
}

impl<D: Dialect> SqlStoreBuilder<D> {
    /// The defaults: table `sessions` in the connection's default schema (PostgreSQL's
    /// `search_path`, MySQL's database of the URL), a pool of up to 10 connections, 5 s connect
    /// and acquire timeouts, idle connections closed after 10 minutes, purge batches of 1,000
    /// sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Base name of the tables (default `sessions`): the store uses `{table}`,
    /// `{table}_values`, `{table}_owners`, `{table}_locks` and `{table}_schema_version` (and
    /// whatever its dialect adds, such as PostgreSQL's functions). Must match
    /// `[A-Za-z_][A-Za-z0-9_]*`, at most [`MAX_TABLE_NAME_LEN`](crate::MAX_TABLE_NAME_LEN)
    /// characters; checked when the store opens ([`Error::InvalidInput`]). Names are quoted,
    /// so letter case is kept.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Schema that holds the tables (default: none, the connection's default: PostgreSQL's
    /// `search_path`, usually `public`; MySQL's database of the URL, where a schema is a
    /// database). It must exist: the store creates tables, not schemas. Same character rules
    /// as [`table`](Self::table), at most 63 characters.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Largest number of pooled connections (default 10). At least 1.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Connections the pool keeps open even when idle (default 0).
    pub fn min_connections(mut self, n: u32) -> Self {
        self.min_connections = n;
        self
    }

    /// How long opening the store waits for the first connection (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a call waits for a pooled connection, including connecting a new one, before it
    /// fails with [`Error::Backend`] (default 5 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Idle connections above `min_connections` are closed after this long (default 10 min;
    /// `None` keeps them).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How many expired sessions one purge batch deletes (default 1,000), so a big purge never
    /// holds many row locks for long. At least 1.
    pub fn purge_batch(mut self, n: u32) -> Self {
        self.purge_batch = n.max(1);
        self
    }

    /// Opens the store on the server at `url` (any URL sqlx's driver for the dialect parses:
    /// `postgres://user:password@host:port/database?...`,
    /// `mysql://user:password@host:port/database`). See [`open_with`](Self::open_with).
    pub async fn open(self, url: &str) -> Result<SqlStore<D>> {
        let options = url.parse::<ConnectOptions<D>>().map_err(|e| {
            Error::InvalidInput(format!("not a valid {} connection URL: {e}", D::SERVER))
        })?;
        self.open_with(options).await
    }

    /// Opens the store with explicit sqlx connect options: checks the names, connects once
    /// (failing at once with a clear [`Error::Backend`] when the server is not reachable within
    /// the connect timeout, instead of the pool retrying until its acquire timeout), creates or
    /// migrates the tables on that connection, closes it, then starts the pool (which connects
    /// lazily).
    ///
    /// A schema version newer than the driver knows is refused with a backend error.
    pub async fn open_with(self, options: ConnectOptions<D>) -> Result<SqlStore<D>> {
        let quote: fn(&str) -> String = D::quote;
        let tables = Tables::new(self.schema.as_deref(), &self.table, quote)?;
        let dialect = D::new(&tables);
        let unreachable = |why: String| {
            let at = D::address(&options);
            Error::backend(
                D::NAME,
                format!("cannot connect to {} at {at}: {why}", D::SERVER),
            )
        };
        let mut conn = match tokio::time::timeout(self.connect_timeout, options.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => {
                let waited = self.connect_timeout;
                return Err(unreachable(format!("no answer within {waited:?}")));
            }
        };
        let migrated = dialect.migrate(&mut conn, &tables).await;
        let _ = conn.close().await;
        migrated?;
        let pool = PoolOptions::<D::Db>::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.acquire_timeout)
            .idle_timeout(self.idle_timeout);
        let pool = D::pool_options(pool).connect_lazy_with(options);
        Ok(SqlStore::new(pool, dialect, tables, self.purge_batch))
    }
}
