//! Options for opening a [`MySqlStore`](crate::MySqlStore).

use std::str::FromStr;
use std::time::Duration;

use session_core::{Error, Result};
use sqlx::mysql::MySqlConnectOptions;

use crate::{MAX_TABLE_NAME_LEN, MySqlStore, check_ident};

/// Builder for a [`MySqlStore`]: table name, pool size and timeouts.
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
///     .connect("mysql://app:secret@db.internal:3306/app")
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct MySqlOptions {
    pub(crate) table: String,
    pub(crate) max_connections: u32,
    pub(crate) min_connections: u32,
    pub(crate) connect_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) purge_batch: u32,
}

impl Default for MySqlOptions {
    fn default() -> Self {
        MySqlOptions {
            table: "sessions".to_owned(),
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            purge_batch: 1000,
        }
    }
}

impl MySqlOptions {
    /// The defaults: table `sessions` in the URL's database, a pool of up to 10
    /// connections, 5 s connect and acquire timeouts, purge batches of 1,000 sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Base name of the tables (default `sessions`): the store uses `{table}`,
    /// `{table}_values`, `{table}_owners`, `{table}_locks` and `{table}_schema_version`. Must match `[A-Za-z_][A-Za-z0-9_]*`,
    /// at most [`MAX_TABLE_NAME_LEN`] characters; checked when the store opens. Names are quoted,
    /// so letter case is kept.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
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

    /// Opens the store on the server at `url` (`mysql://user:password@host:port/database`; the
    /// database must exist). See [`MySqlStore::connect`].
    pub async fn connect(self, url: &str) -> Result<MySqlStore> {
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| Error::InvalidInput(format!("not a valid MySQL connection URL: {e}")))?;
        self.connect_with(options).await
    }

    /// Opens the store with explicit sqlx connect options.
    pub async fn connect_with(self, options: MySqlConnectOptions) -> Result<MySqlStore> {
        self.validate()?;
        MySqlStore::open(self, options).await
    }

    pub(crate) fn validate(&self) -> Result<()> {
        check_ident("table name", &self.table, MAX_TABLE_NAME_LEN)?;
        Ok(())
    }
}
