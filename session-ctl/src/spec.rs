//! Store specs: which driver, where, with which options; and opening them.
//!
//! The same forms the demo (`SESSION_STORE`) and loadgen (`--store`) accept, plus the options an
//! operator needs to reach the store an application really uses, written as query parameters
//! that sessionctl removes before it hands the URL to the driver:
//!
//! | spec | driver |
//! |---|---|
//! | `file:DIR` | one file per session in `DIR` |
//! | `sqlite:PATH` | SQLite database file |
//! | `sled:DIR` | sled database directory (one process at a time: stop the app first) |
//! | `redis://HOST:PORT[/DB][?prefix=P]` (`rediss://`, `redis+unix://`) | Redis, one node |
//! | `redis+cluster://HOST:PORT,HOST:PORT[?prefix=P]` | Redis Cluster through any of the nodes |
//! | `postgres://USER@HOST:PORT/DB[?schema=S&table=T]` (`postgresql://`) | PostgreSQL |
//! | `mysql://USER@HOST:PORT/DB[?table=T]` | MySQL / MariaDB |
//! | `memcached://HOST:PORT[?prefix=P]` (`memcache://`) | memcached |
//!
//! `prefix` defaults to the driver's (`session` for Redis, `session:` for memcached), `table` to
//! `sessions`, `schema` to the connection's default. `memory` is refused: a memory store lives
//! inside one process, and no other process can see its sessions.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use session_core::Storage;

use crate::error::CtlError;

/// A parsed store spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// `file:DIR`.
    File(PathBuf),
    /// `sqlite:PATH`.
    Sqlite(PathBuf),
    /// `sled:DIR`.
    Sled(PathBuf),
    /// `redis://...`: one node (or a proxy).
    Redis {
        /// The URL without sessionctl's own parameters.
        url: String,
        /// The key prefix, `None` for the driver's default.
        prefix: Option<String>,
    },
    /// `redis+cluster://h1:p1,h2:p2`: a Redis Cluster reached through any of the nodes.
    RedisCluster {
        /// One `redis://host:port` URL per node given.
        urls: Vec<String>,
        /// The key prefix, `None` for the driver's default.
        prefix: Option<String>,
    },
    /// `postgres://...`.
    Postgres {
        /// The URL without sessionctl's own parameters.
        url: String,
        /// The schema holding the tables; `None`: the connection's `search_path`.
        schema: Option<String>,
        /// The base table name; `None`: `sessions`.
        table: Option<String>,
    },
    /// `mysql://...`.
    MySql {
        /// The URL without sessionctl's own parameters.
        url: String,
        /// The base table name; `None`: `sessions`.
        table: Option<String>,
    },
    /// `memcached://HOST:PORT`.
    Memcached {
        /// `host:port`.
        addr: String,
        /// The key prefix, `None` for the driver's default.
        prefix: Option<String>,
    },
}

/// The forms a spec can take, for error messages.
pub const FORMS: &str = "file:DIR, sqlite:PATH, sled:DIR, redis://HOST:PORT[?prefix=P], \
    redis+cluster://HOST:PORT,HOST:PORT[?prefix=P], postgres://USER@HOST/DB[?schema=S&table=T], \
    mysql://USER@HOST/DB[?table=T] or memcached://HOST:PORT[?prefix=P]";

/// Splits `url` into the URL without the parameters in `ours` and the values of those.
fn take_params(url: &str, ours: &[&str]) -> Result<(String, Vec<Option<String>>), CtlError> {
    let mut found = vec![None; ours.len()];
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), found));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match ours.iter().position(|o| *o == name) {
            Some(_) if value.is_empty() => {
                return Err(CtlError::usage(
                    format!("the store parameter `{name}` has no value"),
                    format!("write it as `?{name}=VALUE`, or leave it out for the default"),
                ));
            }
            Some(i) => found[i] = Some(value.to_owned()),
            None => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, found))
}

impl FromStr for Spec {
    type Err = CtlError;

    fn from_str(s: &str) -> Result<Spec, CtlError> {
        let path = |p: &str, kind: &str| {
            if p.is_empty() {
                Err(CtlError::usage(
                    format!("the store spec `{kind}:` has no path"),
                    format!("write it as `{kind}:PATH`, the path the application uses"),
                ))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        if s == "memory" || s.starts_with("memory:") {
            return Err(CtlError::usage(
                "a memory store lives inside the application's process: no other process can see its sessions",
                format!("point sessionctl at a store that outlives the process: {FORMS}"),
            ));
        }
        if let Some(p) = s.strip_prefix("file:") {
            return path(p, "file").map(Spec::File);
        }
        if let Some(p) = s.strip_prefix("sqlite:") {
            return path(p, "sqlite").map(Spec::Sqlite);
        }
        if let Some(p) = s.strip_prefix("sled:") {
            return path(p, "sled").map(Spec::Sled);
        }
        if let Some(rest) = s.strip_prefix("redis+cluster://") {
            let (hosts, mut params) = take_params(rest, &["prefix"])?;
            if hosts.contains('?') {
                return Err(CtlError::usage(
                    format!("unknown parameters in `{s}`"),
                    "a Redis Cluster spec takes only `?prefix=P`",
                ));
            }
            // credentials, when given once before the hosts, go to every node
            let hosts = hosts.trim_end_matches('/');
            let (userinfo, hosts) = match hosts.rsplit_once('@') {
                Some((u, h)) => (format!("{u}@"), h),
                None => (String::new(), hosts),
            };
            let urls: Vec<String> = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{userinfo}{h}"))
                .collect();
            if urls.is_empty() {
                return Err(CtlError::usage(
                    "the Redis Cluster spec names no node",
                    "write it as `redis+cluster://HOST:PORT,HOST:PORT` (any of the nodes will do)",
                ));
            }
            return Ok(Spec::RedisCluster {
                urls,
                prefix: params.remove(0),
            });
        }
        if s.starts_with("redis://") || s.starts_with("rediss://") || s.starts_with("redis+unix://")
        {
            let (url, mut params) = take_params(s, &["prefix"])?;
            return Ok(Spec::Redis {
                url,
                prefix: params.remove(0),
            });
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let (url, mut params) = take_params(s, &["schema", "table"])?;
            let table = params.remove(1);
            return Ok(Spec::Postgres {
                url,
                schema: params.remove(0),
                table,
            });
        }
        if s.starts_with("mysql://") || s.starts_with("mariadb://") {
            let (url, mut params) = take_params(s, &["table"])?;
            let url = url.replacen("mariadb://", "mysql://", 1);
            return Ok(Spec::MySql {
                url,
                table: params.remove(0),
            });
        }
        if let Some(rest) = s
            .strip_prefix("memcached://")
            .or_else(|| s.strip_prefix("memcache://"))
        {
            let (addr, mut params) = take_params(rest, &["prefix"])?;
            let addr = addr.trim_end_matches('/').to_owned();
            if addr.is_empty() || addr.contains('?') {
                return Err(CtlError::usage(
                    format!("`{s}` is not a memcached spec"),
                    "write it as `memcached://HOST:PORT[?prefix=P]`",
                ));
            }
            return Ok(Spec::Memcached {
                addr,
                prefix: params.remove(0),
            });
        }
        Err(CtlError::usage(
            format!("unknown store spec `{s}`"),
            format!("use one of {FORMS}"),
        ))
    }
}

impl fmt::Display for Spec {
    /// The spec as given, without passwords (for messages and prompts).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spec::File(p) => write!(f, "file:{}", p.display()),
            Spec::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Spec::Sled(p) => write!(f, "sled:{}", p.display()),
            Spec::Redis { url, prefix } => {
                write!(f, "{}", redact(url))?;
                prefix_suffix(f, prefix)
            }
            Spec::RedisCluster { urls, prefix } => {
                let hosts: Vec<String> = urls
                    .iter()
                    .map(|u| redact(u).trim_start_matches("redis://").to_owned())
                    .collect();
                write!(f, "redis+cluster://{}", hosts.join(","))?;
                prefix_suffix(f, prefix)
            }
            Spec::Postgres { url, schema, table } => {
                write!(f, "{}", redact(url))?;
                let mut sep = if url.contains('?') { '&' } else { '?' };
                if let Some(s) = schema {
                    write!(f, "{sep}schema={s}")?;
                    sep = '&';
                }
                if let Some(t) = table {
                    write!(f, "{sep}table={t}")?;
                }
                Ok(())
            }
            Spec::MySql { url, table } => {
                write!(f, "{}", redact(url))?;
                if let Some(t) = table {
                    let sep = if url.contains('?') { '&' } else { '?' };
                    write!(f, "{sep}table={t}")?;
                }
                Ok(())
            }
            Spec::Memcached { addr, prefix } => {
                write!(f, "memcached://{addr}")?;
                prefix_suffix(f, prefix)
            }
        }
    }
}

fn prefix_suffix(f: &mut fmt::Formatter<'_>, prefix: &Option<String>) -> fmt::Result {
    match prefix {
        Some(p) => write!(f, "?prefix={p}"),
        None => Ok(()),
    }
}

/// `url` with the password (between `:` and `@` of the authority) replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Whether opening may create the store (a migration's or an import's target) or must find it
/// (everything that reads or deletes: an empty new database would only hide a typo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// The store must exist already (file, SQLite and sled paths are checked).
    Existing,
    /// The store may be created (directories, database files, tables).
    Create,
}

impl Spec {
    /// Opens the store.
    ///
    /// With [`Open::Existing`], a file, SQLite or sled path that does not exist is an error
    /// saying so, rather than a new empty store. The server drivers create their tables when
    /// they are missing (that is how they open).
    pub async fn open(&self, mode: Open) -> Result<Arc<dyn Storage>, CtlError> {
        if mode == Open::Existing
            && let Spec::File(p) | Spec::Sqlite(p) | Spec::Sled(p) = self
            && !p.exists()
        {
            return Err(CtlError::not_found(
                format!("there is no store at {} ({self})", p.display()),
                "check the path: it is the one the application's store spec names",
            ));
        }
        let hint = |e: session_core::Error| self.open_error(e);
        Ok(match self {
            Spec::File(dir) => Arc::new(session_file::FileStore::open(dir).await.map_err(hint)?),
            Spec::Sqlite(path) => {
                if mode == Open::Create
                    && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        CtlError::failed(
                            format!("cannot create {}: {e}", parent.display()),
                            "create the directory, or choose a path you can write to",
                        )
                    })?;
                }
                Arc::new(
                    session_sqlite::SqliteStore::open(path)
                        .await
                        .map_err(hint)?,
                )
            }
            Spec::Sled(dir) => Arc::new(session_sled::SledStore::open(dir).await.map_err(hint)?),
            Spec::Redis { url, prefix } => {
                let mut b = session_redis::RedisStore::builder();
                if let Some(p) = prefix {
                    b = b.prefix(p.clone());
                }
                Arc::new(b.open(url).await.map_err(hint)?)
            }
            Spec::RedisCluster { urls, prefix } => {
                let mut b = session_redis::RedisStore::builder();
                if let Some(p) = prefix {
                    b = b.prefix(p.clone());
                }
                Arc::new(b.open_cluster(urls).await.map_err(hint)?)
            }
            Spec::Postgres { url, schema, table } => {
                let mut b = session_postgres::PostgresStore::builder();
                if let Some(s) = schema {
                    b = b.schema(s.clone());
                }
                if let Some(t) = table {
                    b = b.table(t.clone());
                }
                Arc::new(b.open(url).await.map_err(hint)?)
            }
            Spec::MySql { url, table } => {
                let mut b = session_mysql::MySqlStore::builder();
                if let Some(t) = table {
                    b = b.table(t.clone());
                }
                Arc::new(b.open(url).await.map_err(hint)?)
            }
            Spec::Memcached { addr, prefix } => {
                let mut b = session_memcached::MemcachedStore::builder();
                if let Some(p) = prefix {
                    b = b.prefix(p.clone());
                }
                Arc::new(b.open(addr).await.map_err(hint)?)
            }
        })
    }

    /// The error of a failed open, with what to do about it.
    fn open_error(&self, e: session_core::Error) -> CtlError {
        let what = match self {
            Spec::File(_) => "check that the directory exists and is readable and writable",
            Spec::Sqlite(_) => {
                "check that the path is the application's database file and that you may read and write it"
            }
            Spec::Sled(_) => {
                "sled lets one process open a database at a time: stop the application (or copy the directory) first"
            }
            Spec::Redis { .. } | Spec::RedisCluster { .. } => {
                "check that Redis runs there (redis-cli -u URL ping) and that the prefix is the application's"
            }
            Spec::Postgres { .. } => {
                "check that PostgreSQL runs there (pg_isready), the user and database in the URL, and that the schema exists"
            }
            Spec::MySql { .. } => {
                "check that MySQL/MariaDB runs there, and the user and database in the URL"
            }
            Spec::Memcached { .. } => {
                "check that memcached runs there (HOST:PORT) and that the prefix is the application's"
            }
        };
        let mut err = CtlError::from(e);
        err.message = format!("cannot open {self}: {}", err.message);
        err.hint = what.to_owned();
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Spec {
        s.parse().unwrap_or_else(|e: CtlError| panic!("{s}: {e}"))
    }

    #[test]
    fn every_form_parses() {
        assert_eq!(parse("sqlite:a/b.db"), Spec::Sqlite("a/b.db".into()));
        assert_eq!(parse("file:/tmp/s"), Spec::File("/tmp/s".into()));
        assert_eq!(parse("sled:x"), Spec::Sled("x".into()));
        assert_eq!(
            parse("redis://127.0.0.1:6379/2?prefix=app:s"),
            Spec::Redis {
                url: "redis://127.0.0.1:6379/2".into(),
                prefix: Some("app:s".into())
            }
        );
        assert_eq!(
            parse("redis+cluster://a:7000,b:7001/?prefix=p"),
            Spec::RedisCluster {
                urls: vec!["redis://a:7000".into(), "redis://b:7001".into()],
                prefix: Some("p".into())
            }
        );
        assert_eq!(
            parse("postgres://u@h/db?sslmode=disable&schema=app&table=web"),
            Spec::Postgres {
                url: "postgres://u@h/db?sslmode=disable".into(),
                schema: Some("app".into()),
                table: Some("web".into())
            }
        );
        assert_eq!(
            parse("mysql://root@h:3306/app"),
            Spec::MySql {
                url: "mysql://root@h:3306/app".into(),
                table: None
            }
        );
        assert_eq!(
            parse("memcached://127.0.0.1:11211?prefix=s."),
            Spec::Memcached {
                addr: "127.0.0.1:11211".into(),
                prefix: Some("s.".into())
            }
        );
    }

    #[test]
    fn bad_specs_say_what_to_write() {
        for bad in [
            "memory",
            "sqlite:",
            "nope",
            "redis+cluster://",
            "redis://h?prefix=",
        ] {
            let err = bad.parse::<Spec>().expect_err(bad);
            assert_eq!(err.code, crate::error::USAGE, "{bad}");
            assert!(!err.hint.is_empty(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_not_shown() {
        let s = parse("postgres://app:secret@db/app?schema=s");
        assert_eq!(s.to_string(), "postgres://app:***@db/app?schema=s");
        let s = parse("redis+cluster://:pw@a:1,b:2");
        assert!(!s.to_string().contains("pw"), "{s}");
        let Spec::RedisCluster { urls, .. } = s else {
            panic!("a cluster spec")
        };
        assert_eq!(urls, ["redis://:pw@a:1", "redis://:pw@b:2"]);
    }
}
