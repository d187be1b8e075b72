//! The schema's DDL and its migrations: the logical schema of `session-sql`
//! ([`session_sql::Table`]) as InnoDB tables.

/// The schema version this driver writes, kept in the `{table}_schema_version` table.
pub const SCHEMA_VERSION: i64 = 1;

/// `MIGRATIONS[n]` takes the tables from version `n` to `n + 1`: statements run one by one
/// (MySQL commits DDL at once, so each is written to be safe to run again after a crash
/// half-way). A schema change appends one entry and bumps [`SCHEMA_VERSION`]; a released entry
/// never changes. Placeholders ([`session_sql::Tables::render`]): `{S}` sessions, `{V}`
/// values, `{O}` owners, `{L}` locks (quoted names), `{t}` the bare base name (for index and
/// constraint names).
pub(crate) const MIGRATIONS: [&[&str]; SCHEMA_VERSION as usize] = [
    // 0 -> 1: everything.
    &[
        "CREATE TABLE IF NOT EXISTS {S} (
            id         VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            expires_at BIGINT NOT NULL,              -- ms since the Unix epoch
            PRIMARY KEY (id),
            KEY `{t}_expires_at` (expires_at)
        ) ENGINE = InnoDB",
        "CREATE TABLE IF NOT EXISTS {V} (
            id    VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            `key` VARBINARY(1024) NOT NULL,          -- the key's UTF-8 bytes
            value LONGBLOB NOT NULL,                 -- MessagePack bytes, opaque to the driver
            PRIMARY KEY (id, `key`),
            CONSTRAINT `{t}_values_session` FOREIGN KEY (id) REFERENCES {S} (id) ON DELETE CASCADE
        ) ENGINE = InnoDB",
        "CREATE TABLE IF NOT EXISTS {O} (
            id    VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            owner VARBINARY(256) NOT NULL,           -- the owner's UTF-8 bytes
            PRIMARY KEY (id),
            KEY `{t}_owners_owner` (owner, id)
        ) ENGINE = InnoDB",
        "CREATE TABLE IF NOT EXISTS {L} (
            id         VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
            token      VARBINARY(128) NOT NULL,
            expires_at BIGINT NOT NULL,              -- ms since the Unix epoch
            PRIMARY KEY (id),
            KEY `{t}_locks_expires_at` (expires_at)
        ) ENGINE = InnoDB",
    ],
];

/// Creates the version table if it is missing.
pub(crate) const VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS {VT} (version BIGINT NOT NULL) ENGINE = InnoDB";
