//! Options for opening a [`PostgresStore`](crate::PostgresStore).

use std::str::FromStr;
use std::time::Duration;

use session_core::{Error, Result};
use sqlx::postgres::PgConnectOptions;

use crate::{MAX_TABLE_NAME_LEN, PostgresStore, check_ident};

/// Builder for a [`PostgresStore`]: table and schema names, pool size and timeouts.
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
///     .connect("postgres://app@db.internal/app")
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    pub(crate) table: String,
    pub(crate) schema: Option<String>,
    pub(crate) max_connections: u32,
    pub(crate) min_connections: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) purge_batch: u32,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            table: "sessions".to_owned(),
            schema: None,
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            purge_batch: 1000,
        }
    }
}

impl PostgresOptions {
    /// The defaults: table `sessions` in the connection's `search_path`, a pool of up to 10
    /// connections, 5 s connect and acquire timeouts, purge batches of 1,000 sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Base name of the tables (default `sessions`): the store uses `{table}`,
    /// `{table}_values`, `{table}_owners`, `{table}_locks`, `{table}_schema_version` and the
    /// functions `{table}_apply` and `{table}_remove_all`. Must match `[A-Za-z_][A-Za-z0-9_]*`,
    /// at most [`MAX_TABLE_NAME_LEN`] characters; checked when the store opens. Names are quoted,
    /// so letter case is kept.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Schema that holds the tables (default: none, so the connection's `search_path` decides,
    /// usually `public`). The schema must exist. Same character rules as
    /// [`table`](Self::table), at most 63 characters.
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

    /// How many expired sessions one `purge_expired` statement deletes (default 1,000), so a
    /// big purge never holds many row locks for long. At least 1.
    pub fn purge_batch(mut self, n: u32) -> Self {
        self.purge_batch = n.max(1);
        self
    }

    /// Opens the store on the server at `url` (`postgres://user:password@host:port/database`,
    /// with any libpq-style parameters sqlx understands). See [`PostgresStore::connect`].
    pub async fn connect(self, url: &str) -> Result<PostgresStore> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            Error::InvalidInput(format!("not a valid PostgreSQL connection URL: {e}"))
        })?;
        self.connect_with(options).await
    }

    /// Opens the store with explicit sqlx connect options.
    pub async fn connect_with(self, options: PgConnectOptions) -> Result<PostgresStore> {
        self.validate()?;
        PostgresStore::open(self, options).await
    }

    pub(crate) fn validate(&self) -> Result<()> {
        check_ident("table name", &self.table, MAX_TABLE_NAME_LEN)?;
        if let Some(schema) = &self.schema {
            check_ident("schema name", schema, 63)?;
        }
        Ok(())
    }
}
