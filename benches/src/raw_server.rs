//! Raw baselines of the server drivers: PostgreSQL and MySQL/MariaDB through sqlx directly, and
//! memcached through `async-memcached` directly, each with the driver's pool size.
//!
//! The SQL baselines keep the driver's layout minus what the workload does not use (owners,
//! locks): a session row with its deadline (indexed, for purging) and a row per key, the values
//! referencing the session row. A read is one prepared join filtered by the deadline; a write
//! upserts the session row's deadline and the changed keys in one transaction. memcached keeps
//! one item per session (deadline + MessagePack map, like the driver's) read with `mg` and
//! written with `ms`.

use std::str::FromStr;
use std::time::Duration;

use async_memcached::{Client, MetaProtocol};
use async_trait::async_trait;
use bytes::Bytes;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Executor as _, Row as _};

use crate::Result;
use crate::raw::{Raw, RawData, deadline, decode_blob, encode_blob, now_millis};

// ----- PostgreSQL --------------------------------------------------------------------------------

/// PostgreSQL: `raw_sessions` (id, expires_at) and `raw_values` (id, key, value) in the run's
/// schema. Read: one prepared join; write: one statement (a writable CTE) that upserts the
/// deadline and the changed keys, so one round trip and one transaction like the driver's
/// `apply` function call.
pub struct PgRaw {
    pool: PgPool,
    load: String,
    store: String,
}

impl PgRaw {
    /// Creates the tables in `schema` (which must exist) on the server at `url` and opens a pool
    /// of `pool_size` connections (sqlx's other pool defaults, as the driver's).
    pub async fn open(url: &str, schema: &str, pool_size: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .connect_with(options)
            .await?;
        let s = format!("\"{schema}\".raw_sessions");
        let v = format!("\"{schema}\".raw_values");
        pool.execute(sqlx::raw_sql(&format!(
            "CREATE TABLE {s} (id text COLLATE \"C\" PRIMARY KEY, expires_at bigint NOT NULL);
             CREATE INDEX raw_sessions_expires_at ON {s} (expires_at);
             CREATE TABLE {v} (
                 id text COLLATE \"C\" NOT NULL REFERENCES {s} (id) ON DELETE CASCADE,
                 key text COLLATE \"C\" NOT NULL,
                 value bytea NOT NULL,
                 PRIMARY KEY (id, key));"
        )))
        .await?;
        Ok(PgRaw {
            pool,
            load: format!(
                "SELECT v.key, v.value FROM {s} s JOIN {v} v ON v.id = s.id
                 WHERE s.id = $1 AND s.expires_at > $2"
            ),
            store: format!(
                "WITH s AS (
                     INSERT INTO {s} (id, expires_at) VALUES ($1, $2)
                     ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at
                     RETURNING id)
                 INSERT INTO {v} (id, key, value)
                 SELECT s.id, k.key, k.value FROM s, unnest($3::text[], $4::bytea[]) AS k(key, value)
                 ON CONFLICT (id, key) DO UPDATE SET value = excluded.value"
            ),
        })
    }
}

#[async_trait]
impl Raw for PgRaw {
    fn name(&self) -> &'static str {
        "sqlx-postgres"
    }

    async fn load(&self, id: &str) -> Result<Option<RawData>> {
        let rows = sqlx::query(&self.load)
            .bind(id)
            .bind(now_millis() as i64)
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut data = RawData::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get(0)?;
            let value: Vec<u8> = row.try_get(1)?;
            data.insert(key, Bytes::from(value));
        }
        Ok(Some(data))
    }

    async fn store(&self, id: &str, _: &RawData, changed: &RawData, ttl: Duration) -> Result<()> {
        let (keys, values): (Vec<String>, Vec<Vec<u8>>) =
            changed.iter().map(|(k, v)| (k.clone(), v.to_vec())).unzip();
        sqlx::query(&self.store)
            .bind(id)
            .bind(deadline(ttl) as i64)
            .bind(keys)
            .bind(values)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn cleanup(&self) -> Result<()> {
        self.pool.close().await;
        Ok(())
    }
}

// ----- MySQL / MariaDB ---------------------------------------------------------------------------

/// MySQL/MariaDB: `raw_sessions` and `raw_values` (InnoDB) in the run's database, connections at
/// `READ COMMITTED` like the driver's. Read: one prepared join; write: a transaction of the
/// deadline upsert and one multi-row upsert of the changed keys (`BEGIN`, two statements,
/// `COMMIT`: MySQL takes no arrays and runs no parameterised batches, so no fewer round trips).
pub struct MySqlRaw {
    pool: MySqlPool,
    load: &'static str,
}

const MYSQL_LOAD: &str = "SELECT v.`key`, v.value FROM raw_sessions s JOIN raw_values v \
     ON v.id = s.id WHERE s.id = ? AND s.expires_at > ?";
const MYSQL_DEADLINE: &str = "INSERT INTO raw_sessions (id, expires_at) VALUES (?, ?) \
     ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)";

impl MySqlRaw {
    /// Creates the tables in `database` (which must exist) on the server at `url` and opens a
    /// pool of `pool_size` connections.
    pub async fn open(url: &str, database: &str, pool_size: u32) -> Result<Self> {
        let options = MySqlConnectOptions::from_str(url)?.database(database);
        let pool = MySqlPoolOptions::new()
            .max_connections(pool_size)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                        .await
                        .map(drop)
                })
            })
            .connect_with(options)
            .await?;
        pool.execute(
            "CREATE TABLE raw_sessions (
                 id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
                 expires_at BIGINT NOT NULL,
                 PRIMARY KEY (id),
                 KEY raw_sessions_expires_at (expires_at)
             ) ENGINE = InnoDB",
        )
        .await?;
        pool.execute(
            "CREATE TABLE raw_values (
                 id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
                 `key` VARBINARY(1024) NOT NULL,
                 value LONGBLOB NOT NULL,
                 PRIMARY KEY (id, `key`),
                 CONSTRAINT raw_values_session FOREIGN KEY (id) REFERENCES raw_sessions (id)
                     ON DELETE CASCADE
             ) ENGINE = InnoDB",
        )
        .await?;
        Ok(MySqlRaw {
            pool,
            load: MYSQL_LOAD,
        })
    }
}

#[async_trait]
impl Raw for MySqlRaw {
    fn name(&self) -> &'static str {
        "sqlx-mysql"
    }

    async fn load(&self, id: &str) -> Result<Option<RawData>> {
        let rows = sqlx::query(self.load)
            .bind(id)
            .bind(now_millis() as i64)
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut data = RawData::with_capacity(rows.len());
        for row in rows {
            let key: Vec<u8> = row.try_get(0)?;
            let value: Vec<u8> = row.try_get(1)?;
            data.insert(String::from_utf8(key)?, Bytes::from(value));
        }
        Ok(Some(data))
    }

    async fn store(&self, id: &str, _: &RawData, changed: &RawData, ttl: Duration) -> Result<()> {
        let mut values = String::from("INSERT INTO raw_values (id, `key`, value) VALUES ");
        for i in 0..changed.len() {
            values.push_str(if i == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
        }
        values.push_str(" ON DUPLICATE KEY UPDATE value = VALUES(value)");
        let mut tx = self.pool.begin().await?;
        sqlx::query(MYSQL_DEADLINE)
            .bind(id)
            .bind(deadline(ttl) as i64)
            .execute(&mut *tx)
            .await?;
        let mut q = sqlx::query(&values);
        for (k, v) in changed {
            q = q.bind(id).bind(k.as_bytes()).bind(v.as_ref());
        }
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn cleanup(&self) -> Result<()> {
        self.pool.close().await;
        Ok(())
    }
}

// ----- memcached ---------------------------------------------------------------------------------

/// Makes and recycles `async-memcached` clients for a deadpool pool (as the driver does).
pub struct McManager {
    dsn: String,
}

impl managed::Manager for McManager {
    type Type = Client;
    type Error = async_memcached::Error;

    async fn create(&self) -> std::result::Result<Client, async_memcached::Error> {
        Client::new(&self.dsn).await
    }

    async fn recycle(&self, conn: &mut Client, _: &Metrics) -> RecycleResult<Self::Error> {
        if conn.is_closed() {
            Err(RecycleError::message("connection closed"))
        } else {
            Ok(())
        }
    }
}

/// `tcp://host:port` for `async-memcached` from `host:port`, `memcached://host:port`,
/// `memcache://host:port` or `tcp://host:port`.
pub fn memcached_dsn(addr: &str) -> String {
    match addr.split_once("://") {
        Some(("unix", _)) => addr.to_string(),
        Some((_, rest)) => format!("tcp://{rest}"),
        None => format!("tcp://{addr}"),
    }
}

/// memcached: one item per session under `<prefix><id>`, the blob (deadline + MessagePack map)
/// read with `mg v` and written with `ms T<exptime>`, on a deadpool pool of clients.
pub struct MemcachedRaw {
    pool: managed::Pool<McManager>,
    prefix: String,
}

impl MemcachedRaw {
    /// A pool of up to `pool_size` connections to `addr` (checked with one `version`).
    pub async fn open(addr: &str, prefix: &str, pool_size: usize) -> Result<Self> {
        let pool: managed::Pool<McManager> = managed::Pool::builder(McManager {
            dsn: memcached_dsn(addr),
        })
        .max_size(pool_size)
        .build()?;
        pool.get()
            .await
            .map_err(|e| format!("memcached at {addr}: {e}"))?
            .version()
            .await?;
        Ok(MemcachedRaw {
            pool,
            prefix: prefix.to_string(),
        })
    }

    async fn conn(&self) -> Result<managed::Object<McManager>> {
        self.pool.get().await.map_err(|e| e.to_string().into())
    }
}

#[async_trait]
impl Raw for MemcachedRaw {
    fn name(&self) -> &'static str {
        "async-memcached"
    }

    async fn load(&self, id: &str) -> Result<Option<RawData>> {
        let key = format!("{}{id}", self.prefix);
        let got = self
            .conn()
            .await?
            .meta_get(&key, false, None, Some(&["v"]))
            .await?;
        match got.and_then(|v| v.data) {
            Some(blob) => decode_blob(&blob),
            None => Ok(None),
        }
    }

    async fn store(&self, id: &str, full: &RawData, _: &RawData, ttl: Duration) -> Result<()> {
        let key = format!("{}{id}", self.prefix);
        let blob = encode_blob(deadline(ttl), full)?;
        // whole seconds, rounded up, plus one for memcached's clock (as the driver)
        let exptime = format!("T{}", ttl.as_millis().div_ceil(1000) + 1);
        self.conn()
            .await?
            .meta_set(&key, &blob[..], false, None, Some(&[exptime.as_str()]))
            .await?;
        Ok(())
    }
}

/// Deletes the keys starting with `prefix` on the memcached server at `addr`, found with
/// `lru_crawler metadump all` (best effort: an item the crawler misses expires with its TTL).
/// Returns how many it deleted.
pub async fn memcached_delete_prefix(addr: &str, prefix: &str) -> Result<usize> {
    let dsn = memcached_dsn(addr);
    let mut client = Client::new(&dsn).await?;
    let started = std::time::Instant::now();
    loop {
        let mut keys = Vec::new();
        let complete = {
            let mut dump = client.dump_keys().await?;
            while let Some(entry) = dump.next().await {
                match entry {
                    Ok(meta) if meta.key.starts_with(prefix.as_bytes()) => keys.push(meta.key),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            dump.is_complete()
        };
        if !complete {
            // another dump is running; the client closed itself
            if started.elapsed() > Duration::from_secs(20) {
                return Err("memcached metadump stayed busy for 20 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            client = Client::new(&dsn).await?;
            continue;
        }
        for key in &keys {
            match client.meta_delete(key, false, None, None).await {
                Ok(_)
                | Err(async_memcached::Error::Protocol(async_memcached::Status::NotFound)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(keys.len());
    }
}
