//! The tables' names: session-sql's logical schema for a configurable base name, the migration
//! of files written before the names were configurable (version 2), several stores in one file,
//! and the name check.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, params};
use session_core::{Data, Error, SessionId, Storage, Value};
use session_sqlite::{SCHEMA_VERSION, SqliteStore};

const HOUR: Duration = Duration::from_secs(3600);

fn id() -> SessionId {
    SessionId::generate().expect("rng")
}

fn v(x: u64) -> Value {
    Value::encode(&x).expect("encode")
}

/// The schema exactly as version 2 of this driver created it (its `MIGRATIONS[0]` and
/// `MIGRATIONS[1]`, copied from `git show HEAD:session-sqlite/src/schema.rs` before version 3),
/// in WAL mode, at `PRAGMA user_version = 2`.
fn create_version_2(conn: &Connection) {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         CREATE TABLE sessions (
             id         TEXT    PRIMARY KEY NOT NULL,
             expires_at INTEGER NOT NULL             -- ms since the Unix epoch
         ) WITHOUT ROWID;
         CREATE INDEX sessions_expires_at ON sessions (expires_at);
         CREATE TABLE session_values (
             id    TEXT NOT NULL,                    -- sessions.id
             key   TEXT NOT NULL,
             value BLOB NOT NULL,                    -- MessagePack bytes, opaque to the driver
             PRIMARY KEY (id, key)
         ) WITHOUT ROWID;
         CREATE TABLE owners (
             id    TEXT PRIMARY KEY NOT NULL,        -- sessions.id: one owner per session
             owner TEXT NOT NULL
         ) WITHOUT ROWID;
         CREATE INDEX owners_owner ON owners (owner, id);
         CREATE TABLE locks (
             id         TEXT    PRIMARY KEY NOT NULL, -- a session id; the session need not exist
             token      TEXT    NOT NULL,
             expires_at INTEGER NOT NULL              -- ms since the Unix epoch
         ) WITHOUT ROWID;
         CREATE INDEX locks_expires_at ON locks (expires_at);
         PRAGMA user_version = 2;
         COMMIT;",
    )
    .unwrap();
}

/// A session as version 2 stored it: its row with `deadline`, two values, an owner binding
/// and a held lock.
fn insert_version_2_session(conn: &Connection, s: &SessionId, deadline: i64) {
    conn.execute(
        "INSERT INTO sessions (id, expires_at) VALUES (?1, ?2)",
        params![s.as_str(), deadline],
    )
    .unwrap();
    for (key, x) in [("user", 7), ("cart", 8)] {
        conn.execute(
            "INSERT INTO session_values (id, key, value) VALUES (?1, ?2, ?3)",
            params![s.as_str(), key, v(x).as_bytes()],
        )
        .unwrap();
    }
    conn.execute(
        "INSERT INTO owners (id, owner) VALUES (?1, 'alice')",
        [s.as_str()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO locks (id, token, expires_at) VALUES (?1, 'old-token', ?2)",
        params![s.as_str(), deadline],
    )
    .unwrap();
}

/// Every table and index (name, table, columns), sorted: what a layout is, apart from the text
/// of its DDL.
fn layout(conn: &Connection) -> Vec<String> {
    let mut objects: Vec<(String, String, String)> = conn
        .prepare(
            "SELECT type, name, tbl_name FROM sqlite_master
             WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    objects.sort();
    objects
        .into_iter()
        .map(|(kind, name, table)| {
            let columns: Vec<String> = if kind == "table" {
                conn.prepare("SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1)")
                    .unwrap()
                    .query_map([&name], |r| {
                        Ok(format!(
                            "{} {} notnull={} pk={}",
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?
                        ))
                    })
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap()
            } else {
                conn.prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                    .unwrap()
                    .query_map([&name], |r| r.get(0))
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap()
            };
            format!("{kind} {name} on {table}: {}", columns.join(", "))
        })
        .collect()
}

fn names(conn: &Connection, kind: &str) -> Vec<String> {
    conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = ?1 AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .unwrap()
    .query_map([kind], |r| r.get(0))
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_2_file_keeps_its_sessions_through_the_migration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v2.db");
    let s = id();
    let deadline = now_ms() + 3_600_000;
    {
        let conn = Connection::open(&path).unwrap();
        create_version_2(&conn);
        insert_version_2_session(&conn, &s, deadline);
    }

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.table(), "sessions");
    assert_eq!(SCHEMA_VERSION, 4);
    assert_eq!(store.schema_version().await.unwrap(), 4);
    assert_eq!(user_version(&path), 4);

    // The session, its exact deadline and its owner binding are intact; so is its lock.
    let loaded = store
        .load(&s)
        .await
        .unwrap()
        .expect("live after the migration");
    assert_eq!(
        loaded.data,
        Data::from([("user".into(), v(7)), ("cart".into(), v(8))])
    );
    let want = UNIX_EPOCH + Duration::from_millis(u64::try_from(deadline).unwrap());
    assert_eq!(loaded.expires_at, Some(want));
    assert_eq!(
        store.index_owner(&s).await.unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(
        store.index_sessions("alice").await.unwrap(),
        vec![s.clone()]
    );
    assert!(
        store.try_lock(&s, HOUR).await.unwrap().is_none(),
        "the held lock was lost"
    );

    // The old names are gone; the new ones are the logical schema's for base `sessions`.
    let conn = Connection::open(&path).unwrap();
    assert_eq!(
        names(&conn, "table"),
        ["sessions", "sessions_locks", "sessions_owners"]
    );
    assert_eq!(
        names(&conn, "index"),
        [
            "sessions_bucket",
            "sessions_locks_expires_at",
            "sessions_owners_owner"
        ]
    );

    // And the store works on as on a fresh file.
    store.set(&s, "more", v(9), HOUR).await.unwrap();
    assert_eq!(store.get_size(&s).await.unwrap(), 3);
    store.remove_all(&s).await.unwrap();
    assert!(store.index_sessions("alice").await.unwrap().is_empty());
    drop(store);

    // Reopening a migrated file changes nothing.
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migrated_file_has_the_layout_of_a_fresh_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (old, fresh) = (dir.path().join("v2.db"), dir.path().join("fresh.db"));
    create_version_2(&Connection::open(&old).unwrap());
    drop(SqliteStore::open(&old).await.unwrap());
    drop(SqliteStore::open(&fresh).await.unwrap());
    assert_eq!(user_version(&fresh), 4);
    let (old, fresh) = (
        Connection::open(&old).unwrap(),
        Connection::open(&fresh).unwrap(),
    );
    let migrated = layout(&old);
    assert_eq!(migrated, layout(&fresh));
    assert_eq!(migrated.len(), 6, "{migrated:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_migration_leaves_version_2_as_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v2.db");
    let s = id();
    {
        let conn = Connection::open(&path).unwrap();
        create_version_2(&conn);
        insert_version_2_session(&conn, &s, i64::MAX / 2);
        // Something else already took one of the new names: the renames cannot all happen.
        conn.execute_batch("CREATE TABLE sessions_locks (x INTEGER);")
            .unwrap();
    }
    let err = SqliteStore::open(&path).await.expect_err("name taken");
    assert!(matches!(err, Error::Backend { .. }), "{err}");

    // One transaction: none of the renames happened.
    let conn = Connection::open(&path).unwrap();
    assert_eq!(user_version(&path), 2);
    assert_eq!(
        names(&conn, "table"),
        [
            "locks",
            "owners",
            "session_values",
            "sessions",
            "sessions_locks"
        ]
    );
    let values: i64 = conn
        .query_row("SELECT count(*) FROM session_values", [], |r| r.get(0))
        .unwrap();
    assert_eq!(values, 2);

    // Once the name is free, the migration goes through.
    conn.execute_batch("DROP TABLE sessions_locks;").unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.get(&s, "user").await.unwrap(), Some(v(7)));
}

#[tokio::test(flavor = "multi_thread")]
async fn stores_with_different_tables_share_a_file_without_sharing_sessions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shared.db");

    // A named store first: it keeps its version in its own table, not in user_version.
    let web = SqliteStore::builder()
        .table("web")
        .open(&path)
        .await
        .unwrap();
    assert_eq!(web.table(), "web");
    assert_eq!(web.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(user_version(&path), 0);
    let default = SqliteStore::open(&path).await.unwrap();
    assert_eq!(default.schema_version().await.unwrap(), SCHEMA_VERSION);
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let api = SqliteStore::builder()
        .table("Api_2")
        .readers(0)
        .open(&path)
        .await
        .unwrap();
    let stores = [&default, &web, &api];

    let conn = Connection::open(&path).unwrap();
    let tables = names(&conn, "table");
    for base in ["sessions", "web", "Api_2"] {
        for suffix in ["", "_owners", "_locks"] {
            assert!(tables.contains(&format!("{base}{suffix}")), "{tables:?}");
        }
    }
    assert!(tables.contains(&"web_schema_version".to_owned()));
    assert!(!tables.contains(&"sessions_schema_version".to_owned()));
    let recorded: Vec<i64> = conn
        .prepare("SELECT version FROM web_schema_version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(recorded, [SCHEMA_VERSION]);

    // The same id in every store: its own values, owner and lock in each.
    let s = id();
    let short = id();
    for (n, store) in (1..).zip(stores) {
        store.set(&s, "k", v(n), HOUR).await.unwrap();
        store
            .index_add(&format!("owner{n}"), &s, HOUR)
            .await
            .unwrap();
        assert!(store.try_lock(&s, HOUR).await.unwrap().is_some());
    }
    // Short enough to purge below, long enough to still be live at the scan on a loaded machine.
    let short_ttl = Duration::from_millis(1_000);
    let short_set = std::time::Instant::now();
    web.set(&short, "k", v(0), short_ttl).await.unwrap();
    for (n, store) in (1..).zip(stores) {
        assert_eq!(store.get(&s, "k").await.unwrap(), Some(v(n)));
        assert_eq!(store.get_size(&s).await.unwrap(), 1);
        assert_eq!(
            store.index_owner(&s).await.unwrap(),
            Some(format!("owner{n}"))
        );
        let mine = store.index_sessions(&format!("owner{n}")).await.unwrap();
        assert_eq!(mine, vec![s.clone()]);
        for other in 1..=3 {
            if other != n {
                let theirs = store.index_sessions(&format!("owner{other}")).await;
                assert!(theirs.unwrap().is_empty());
            }
        }
    }
    assert_eq!(default.scan(None, 10).await.unwrap().ids, vec![s.clone()]);
    assert_eq!(web.scan(None, 10).await.unwrap().ids.len(), 2);

    // Removing, purging and unlocking in one store leave the others alone.
    default.remove_all(&s).await.unwrap();
    assert_eq!(default.get(&s, "k").await.unwrap(), None);
    assert_eq!(web.get(&s, "k").await.unwrap(), Some(v(2)));
    assert_eq!(api.get(&s, "k").await.unwrap(), Some(v(3)));
    tokio::time::sleep((short_ttl + Duration::from_millis(20)).saturating_sub(short_set.elapsed()))
        .await;
    assert_eq!(default.purge_expired().await.unwrap(), 0);
    assert_eq!(api.purge_expired().await.unwrap(), 0);
    assert_eq!(web.purge_expired().await.unwrap(), 1);
    assert_eq!(web.scan(None, 10).await.unwrap().ids, vec![s.clone()]);
    assert!(default.try_lock(&s, HOUR).await.unwrap().is_none());

    // Reopened, a named store finds its data and its version (one row, not a second one).
    drop(web);
    let web = SqliteStore::builder()
        .table("web")
        .open(&path)
        .await
        .unwrap();
    assert_eq!(web.get(&s, "k").await.unwrap(), Some(v(2)));
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM web_schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_table_named_explicitly_is_the_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.db");
    let s = id();
    SqliteStore::open(&path)
        .await
        .unwrap()
        .set(&s, "k", v(1), HOUR)
        .await
        .unwrap();
    let store = SqliteStore::builder()
        .table("sessions")
        .open(&path)
        .await
        .unwrap();
    assert_eq!(store.get(&s, "k").await.unwrap(), Some(v(1)));
    let tables = names(&Connection::open(&path).unwrap(), "table");
    assert!(!tables.contains(&"sessions_schema_version".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_table_name_is_invalid_input_before_the_file_is_touched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("never.db");
    let nowhere = dir.path().join("no such dir").join("never.db");
    let existing = dir.path().join("existing.db");
    // Not through the store: its threads close their connections (and remove the WAL files)
    // after it is dropped, which would race with the listing below.
    Connection::open(&existing)
        .unwrap()
        .execute_batch("CREATE TABLE app (x INTEGER); INSERT INTO app VALUES (1);")
        .unwrap();
    let bytes = std::fs::read(&existing).unwrap();
    let listing = || {
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing();

    let long = "t".repeat(41);
    let bad = [
        "",
        "web sessions",
        "2fast",
        "sessions\"; DROP TABLE sessions; --",
        "séssions",
        "a-b",
        long.as_str(),
    ];
    for name in bad {
        for path in [&missing, &nowhere, &existing] {
            let err = SqliteStore::builder()
                .table(name)
                .open(path)
                .await
                .expect_err("a bad table name");
            assert!(matches!(err, Error::InvalidInput(_)), "{name:?}: {err}");
        }
    }
    assert!(!missing.exists());
    assert!(!nowhere.parent().unwrap().exists());
    assert_eq!(std::fs::read(&existing).unwrap(), bytes);
    assert_eq!(listing(), before, "a file was created");

    // The longest allowed name works.
    let longest = "t".repeat(40);
    let store = SqliteStore::builder()
        .table(longest.as_str())
        .open(&missing)
        .await
        .unwrap();
    store.set(&id(), "k", v(1), HOUR).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_table_from_the_future_or_never_written_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE web_schema_version (version INTEGER NOT NULL);
         INSERT INTO web_schema_version VALUES (99);
         CREATE TABLE old_schema_version (version INTEGER NOT NULL);
         INSERT INTO old_schema_version VALUES (2);",
    )
    .unwrap();

    let err = SqliteStore::builder()
        .table("web")
        .open(&path)
        .await
        .expect_err("newer schema");
    let msg = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{msg}");
    assert!(msg.contains("schema version 99"), "{msg}");
    assert!(msg.contains("`web`"), "{msg}");

    // Versions 1 and 2 existed only for the default tables.
    let err = SqliteStore::builder()
        .table("old")
        .open(&path)
        .await
        .expect_err("version 2 of a named base");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");

    // Neither touched the default tables' version.
    assert_eq!(user_version(&path), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_table_names_fail_instead_of_sharing_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.db");
    let default = SqliteStore::open(&path).await.unwrap();
    // Base `sessions_owners` would use the default base's owners table as its session table.
    let err = SqliteStore::builder()
        .table("sessions_owners")
        .open(&path)
        .await
        .expect_err("overlapping names");
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    // Nothing of it was left behind, and the default store works on.
    let tables = names(&Connection::open(&path).unwrap(), "table");
    assert!(
        !tables.iter().any(|t| t.starts_with("sessions_owners_")),
        "{tables:?}"
    );
    default.set(&id(), "k", v(1), HOUR).await.unwrap();
}

/// The schema exactly as version 3 of this driver created it for base `base` (its `CREATE`,
/// copied from `git show 891bc6c:session-sqlite/src/schema.rs`), with its version recorded
/// where version 3 kept it (`user_version` for `sessions`, `{base}_schema_version` otherwise).
fn create_version_3(conn: &Connection, base: &str) {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version = if base == "sessions" {
        "PRAGMA user_version = 3;".to_owned()
    } else {
        format!(
            "CREATE TABLE IF NOT EXISTS \"{base}_schema_version\" (version INTEGER NOT NULL);
             INSERT INTO \"{base}_schema_version\" (version) VALUES (3);"
        )
    };
    conn.execute_batch(&format!(
        r#"BEGIN IMMEDIATE;
        CREATE TABLE "{base}" (
            id         TEXT    PRIMARY KEY NOT NULL,
            expires_at INTEGER NOT NULL             -- ms since the Unix epoch
        ) WITHOUT ROWID;
        CREATE INDEX "{base}_expires_at" ON "{base}" (expires_at);
        CREATE TABLE "{base}_values" (
            id    TEXT NOT NULL,                    -- the session's id
            key   TEXT NOT NULL,
            value BLOB NOT NULL,                    -- MessagePack bytes, opaque to the driver
            PRIMARY KEY (id, key)
        ) WITHOUT ROWID;
        CREATE TABLE "{base}_owners" (
            id    TEXT PRIMARY KEY NOT NULL,        -- the session's id: one owner per session
            owner TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX "{base}_owners_owner" ON "{base}_owners" (owner, id);
        CREATE TABLE "{base}_locks" (
            id         TEXT    PRIMARY KEY NOT NULL, -- a session id; the session need not exist
            token      TEXT    NOT NULL,
            expires_at INTEGER NOT NULL              -- ms since the Unix epoch
        ) WITHOUT ROWID;
        CREATE INDEX "{base}_locks_expires_at" ON "{base}_locks" (expires_at);
        {version}
        COMMIT;"#
    ))
    .unwrap();
}

/// A session as version 3 stored it in base `base`: its row with `deadline`, its values (a row
/// each), and optionally an owner binding and a held lock.
fn insert_version_3_session(
    conn: &Connection,
    base: &str,
    s: &SessionId,
    deadline: i64,
    values: &[(&str, u64)],
    owner: Option<&str>,
) {
    conn.execute(
        &format!("INSERT INTO \"{base}\" (id, expires_at) VALUES (?1, ?2)"),
        params![s.as_str(), deadline],
    )
    .unwrap();
    for (key, x) in values {
        conn.execute(
            &format!("INSERT INTO \"{base}_values\" (id, key, value) VALUES (?1, ?2, ?3)"),
            params![s.as_str(), key, v(*x).as_bytes()],
        )
        .unwrap();
    }
    if let Some(owner) = owner {
        conn.execute(
            &format!("INSERT INTO \"{base}_owners\" (id, owner) VALUES (?1, ?2)"),
            params![s.as_str(), owner],
        )
        .unwrap();
        conn.execute(
            &format!(
                "INSERT INTO \"{base}_locks\" (id, token, expires_at) VALUES (?1, 'held', ?2)"
            ),
            params![s.as_str(), deadline],
        )
        .unwrap();
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Version 3 (a row per key) to 4 (a row per session), for the default base and a named one in
/// the same file: every session keeps its values and its exact deadline, owners and locks stay,
/// an expired session stays dead and is purged, the layout is a fresh one's, and a reopen
/// changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_3_file_keeps_every_session_through_the_move_to_a_row_per_session() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v3.db");
    let fresh_path = dir.path().join("fresh.db");
    let deadline = now_ms() + 3_600_000;
    let many: Vec<(String, u64)> = (0..40).map(|i| (format!("key{i}"), i)).collect();
    let many: Vec<(&str, u64)> = many.iter().map(|(k, x)| (k.as_str(), *x)).collect();
    let bases = ["sessions", "web"];
    // Per base: a session of two keys with an owner and a lock, one of 40 keys, an expired one,
    // and 300 more (the copy runs over many rows).
    let mut kept = Vec::new();
    {
        let conn = Connection::open(&path).unwrap();
        for base in bases {
            create_version_3(&conn, base);
            let (two, forty, expired) = (id(), id(), id());
            insert_version_3_session(
                &conn,
                base,
                &two,
                deadline,
                &[("user", 7), ("cart", 8)],
                Some("alice"),
            );
            insert_version_3_session(&conn, base, &forty, deadline + 1, &many, None);
            insert_version_3_session(
                &conn,
                base,
                &expired,
                now_ms() - 1,
                &[("old", 1)],
                Some("bob"),
            );
            let more: Vec<SessionId> = (0..300).map(|_| id()).collect();
            for (n, s) in (0..).zip(&more) {
                insert_version_3_session(&conn, base, s, deadline + n, &[("n", n as u64)], None);
            }
            kept.push((two, forty, expired, more));
        }
    }
    for (base, (two, forty, expired, more)) in bases.iter().zip(&kept) {
        let store = SqliteStore::builder()
            .table(*base)
            .open(&path)
            .await
            .unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 4, "{base}");
        let loaded = store
            .load(two)
            .await
            .unwrap()
            .expect("live after the migration");
        assert_eq!(
            loaded.data,
            Data::from([("user".into(), v(7)), ("cart".into(), v(8))])
        );
        let at = |ms: i64| UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap());
        assert_eq!(
            loaded.expires_at,
            Some(at(deadline)),
            "{base}: the deadline moved"
        );
        assert_eq!(
            store.index_owner(two).await.unwrap().as_deref(),
            Some("alice")
        );
        assert!(
            store.try_lock(two, HOUR).await.unwrap().is_none(),
            "{base}: lock lost"
        );
        let loaded = store.load(forty).await.unwrap().expect("live");
        assert_eq!(loaded.data.len(), 40);
        assert_eq!(loaded.data.get("key39"), Some(v(39)));
        assert_eq!(loaded.expires_at, Some(at(deadline + 1)));
        for (n, s) in (0..).zip(more) {
            assert_eq!(store.get(s, "n").await.unwrap(), Some(v(n)), "{base}");
        }
        assert!(
            store.load(expired).await.unwrap().is_none(),
            "{base}: revived"
        );
        assert!(store.index_sessions("bob").await.unwrap().is_empty());
        assert_eq!(store.purge_expired().await.unwrap(), 1, "{base}");
        // The store works on: a write merges into a migrated session.
        store.set(forty, "more", v(1), HOUR).await.unwrap();
        assert_eq!(store.get_size(forty).await.unwrap(), 41);
    }
    drop(SqliteStore::open(&path).await.unwrap());
    assert_eq!(user_version(&path), 4);
    let conn = Connection::open(&path).unwrap();
    let tables = names(&conn, "table");
    assert!(
        !tables
            .iter()
            .any(|t| t.ends_with("_values") || t.ends_with("_v4")),
        "{tables:?}"
    );
    // The migrated default base has the layout of a fresh file's.
    drop(SqliteStore::open(&fresh_path).await.unwrap());
    let fresh = layout(&Connection::open(&fresh_path).unwrap());
    let migrated: Vec<String> = layout(&conn)
        .into_iter()
        .filter(|object| !object.contains(" web") && !object.contains("on web"))
        .collect();
    assert_eq!(migrated, fresh);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_move_to_a_row_per_session_leaves_version_3_as_it_was() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("v3.db");
    let s = id();
    {
        let conn = Connection::open(&path).unwrap();
        create_version_3(&conn, "sessions");
        insert_version_3_session(
            &conn,
            "sessions",
            &s,
            i64::MAX / 2,
            &[("user", 7)],
            Some("al"),
        );
        // Something else already took the name the migration fills first.
        conn.execute_batch("CREATE TABLE sessions_v4 (x INTEGER);")
            .unwrap();
    }
    let err = SqliteStore::open(&path).await.expect_err("name taken");
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(user_version(&path), 3);
    let conn = Connection::open(&path).unwrap();
    let values: i64 = conn
        .query_row("SELECT count(*) FROM sessions_values", [], |r| r.get(0))
        .unwrap();
    assert_eq!(values, 1);
    conn.execute_batch("DROP TABLE sessions_v4;").unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.get(&s, "user").await.unwrap(), Some(v(7)));
}
