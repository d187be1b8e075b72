//! The logical schema every SQL dialect stores, as data: five tables, their columns and what
//! each column holds, and [`Tables`], the names of one store's tables with the templates that
//! use them.
//!
//! A dialect writes the DDL (its column types, its indexes, its migrations); the shared
//! statements and the dialect's own ones name the tables through [`Tables::render`].

use session_core::Result;

use crate::ident::{MAX_TABLE_NAME_LEN, check_ident};

/// What a column holds. Each dialect picks its own SQL type for each kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    /// A session id: ASCII `[A-Za-z0-9_-]`, at most [`SessionId::MAX_LEN`] bytes; compared
    /// byte by byte (scan pages are ordered by it).
    ///
    /// [`SessionId::MAX_LEN`]: session_core::SessionId::MAX_LEN
    Id,
    /// A key's UTF-8 text, at most [`check::MAX_KEY_LEN`] bytes, compared byte by byte.
    ///
    /// [`check::MAX_KEY_LEN`]: session_core::check::MAX_KEY_LEN
    Key,
    /// A value's bytes (MessagePack), opaque to the store.
    Value,
    /// An owner's UTF-8 text, at most [`check::MAX_OWNER_LEN`] bytes.
    ///
    /// [`check::MAX_OWNER_LEN`]: session_core::check::MAX_OWNER_LEN
    Owner,
    /// A lock token (ASCII).
    Token,
    /// A deadline: milliseconds since the Unix epoch, a signed 64-bit integer; `-1` marks a
    /// session row created by a change set still running.
    Millis,
    /// The schema version, a signed 64-bit integer.
    Version,
}

/// One column of the logical schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Column {
    /// The column's name, the same in every dialect.
    pub name: &'static str,
    /// What it holds.
    pub kind: ColumnKind,
    /// Whether it is part of the table's primary key.
    pub primary_key: bool,
}

const fn column(name: &'static str, kind: ColumnKind, primary_key: bool) -> Column {
    Column {
        name,
        kind,
        primary_key,
    }
}

const ID: Column = column("id", ColumnKind::Id, true);
const EXPIRES_AT: Column = column("expires_at", ColumnKind::Millis, false);
const SESSIONS: &[Column] = &[ID, EXPIRES_AT];
const VALUES: &[Column] = &[
    ID,
    column("key", ColumnKind::Key, true),
    column("value", ColumnKind::Value, false),
];
const OWNERS: &[Column] = &[ID, column("owner", ColumnKind::Owner, false)];
const LOCKS: &[Column] = &[ID, column("token", ColumnKind::Token, false), EXPIRES_AT];
const SCHEMA_VERSION: &[Column] = &[column("version", ColumnKind::Version, false)];

/// The tables of the logical schema.
///
/// | table | columns (primary key first) | holds |
/// |---|---|---|
/// | `{base}` | `id`, `expires_at` | one row per live session, with its deadline |
/// | `{base}_values` | `id`, `key`, `value` | one row per key; deleted with its session row (`ON DELETE CASCADE`) |
/// | `{base}_owners` | `id`, `owner` | the owner index: one owner per session, indexed by owner |
/// | `{base}_locks` | `id`, `token`, `expires_at` | lease locks; the session need not exist |
/// | `{base}_schema_version` | `version` | one row: the version the migrations reached |
///
/// A session row exists (outside a running change set) only while its session has at least
/// one value row. Every writer locks the session row before any other row of the session, so
/// writers of one session queue instead of deadlocking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// `{base}`: the session rows.
    Sessions,
    /// `{base}_values`: a row per key.
    Values,
    /// `{base}_owners`: the owner index.
    Owners,
    /// `{base}_locks`: the lease locks.
    Locks,
    /// `{base}_schema_version`: the migrations' version.
    SchemaVersion,
}

impl Table {
    /// Every table, in the order a migration creates them.
    pub const ALL: [Table; 5] = [
        Table::Sessions,
        Table::Values,
        Table::Owners,
        Table::Locks,
        Table::SchemaVersion,
    ];

    /// What the table's name appends to the base name (`""` for the session rows).
    pub const fn suffix(self) -> &'static str {
        match self {
            Table::Sessions => "",
            Table::Values => "_values",
            Table::Owners => "_owners",
            Table::Locks => "_locks",
            Table::SchemaVersion => "_schema_version",
        }
    }

    /// The template token that [`Tables::render`] replaces with the table's quoted name:
    /// `{S}`, `{V}`, `{O}`, `{L}`, `{VT}`.
    pub const fn token(self) -> &'static str {
        match self {
            Table::Sessions => "{S}",
            Table::Values => "{V}",
            Table::Owners => "{O}",
            Table::Locks => "{L}",
            Table::SchemaVersion => "{VT}",
        }
    }

    /// The table's columns, primary key first.
    pub const fn columns(self) -> &'static [Column] {
        match self {
            Table::Sessions => SESSIONS,
            Table::Values => VALUES,
            Table::Owners => OWNERS,
            Table::Locks => LOCKS,
            Table::SchemaVersion => SCHEMA_VERSION,
        }
    }
}

/// The names of one store's tables: quoted, qualified with the schema when there is one, from
/// a checked base name.
///
/// ```
/// use session_sql::{Table, Tables};
///
/// let quote = |name: &str| format!("\"{name}\"");
/// let tables = Tables::new(Some("app"), "web", quote)?;
/// assert_eq!(tables.name(Table::Values), "\"app\".\"web_values\"");
/// assert_eq!(
///     tables.render("DELETE FROM {V} WHERE id = ? AND {key} = ?"),
///     "DELETE FROM \"app\".\"web_values\" WHERE id = ? AND \"key\" = ?",
/// );
/// assert!(Tables::new(None, "web sessions", quote).is_err());
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Tables {
    schema: Option<String>,
    base: String,
    quote: fn(&str) -> String,
    names: [String; 5],
}

impl Tables {
    /// The names for base name `base` in `schema` (none: the connection's default), quoted with
    /// `quote`. Checks both with [`check_ident`]: the base name up to [`MAX_TABLE_NAME_LEN`]
    /// characters, the schema up to 63 (the shorter of PostgreSQL's and MySQL's limits).
    pub fn new(schema: Option<&str>, base: &str, quote: fn(&str) -> String) -> Result<Tables> {
        check_ident("table name", base, MAX_TABLE_NAME_LEN)?;
        if let Some(schema) = schema {
            check_ident("schema name", schema, 63)?;
        }
        let mut tables = Tables {
            schema: schema.map(str::to_owned),
            base: base.to_owned(),
            quote,
            names: Default::default(),
        };
        for (name, table) in tables.names.iter_mut().zip(Table::ALL) {
            *name = tables_qualified(tables.schema.as_deref(), quote, base, table.suffix());
        }
        Ok(tables)
    }

    /// The base name, unquoted.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The schema, if one was given.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The quoted, qualified name of `table`.
    pub fn name(&self, table: Table) -> &str {
        &self.names[table as usize] // declaration order, the order of `Table::ALL`
    }

    /// The quoted, qualified name of another object of this store: the base name with
    /// `suffix` appended (a dialect's functions, say: `qualified("_apply")`).
    pub fn qualified(&self, suffix: &str) -> String {
        tables_qualified(self.schema.as_deref(), self.quote, &self.base, suffix)
    }

    /// `name` quoted (a column name such as `key`, a reserved word in MySQL).
    pub fn quote(&self, name: &str) -> String {
        (self.quote)(name)
    }

    /// Fills a statement template: each table's [`token`](Table::token) becomes its quoted
    /// name, `{t}` the bare base name (for index and constraint names the template quotes
    /// itself), `{key}` the quoted `key` column. Nothing else changes.
    pub fn render(&self, template: &str) -> String {
        let mut sql = template.replace("{key}", &self.quote("key"));
        for (name, table) in self.names.iter().zip(Table::ALL) {
            sql = sql.replace(table.token(), name);
        }
        sql.replace("{t}", &self.base)
    }
}

fn tables_qualified(
    schema: Option<&str>,
    quote: fn(&str) -> String,
    base: &str,
    suffix: &str,
) -> String {
    let name = quote(&format!("{base}{suffix}"));
    match schema {
        Some(schema) => format!("{}.{name}", quote(schema)),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backquote(name: &str) -> String {
        format!("`{name}`")
    }

    #[test]
    fn names_follow_the_logical_schema() -> Result<()> {
        let tables = Tables::new(None, "sessions", backquote)?;
        assert_eq!(tables.name(Table::Sessions), "`sessions`");
        assert_eq!(tables.name(Table::Locks), "`sessions_locks`");
        assert_eq!(
            tables.name(Table::SchemaVersion),
            "`sessions_schema_version`"
        );
        assert_eq!(tables.qualified("_apply"), "`sessions_apply`");
        assert_eq!(
            tables.render("CREATE INDEX `{t}_x` ON {S} ({key}); SELECT * FROM {VT}, {V}"),
            "CREATE INDEX `sessions_x` ON `sessions` (`key`); \
             SELECT * FROM `sessions_schema_version`, `sessions_values`"
        );
        let in_schema = Tables::new(Some("app"), "s", backquote)?;
        assert_eq!(in_schema.name(Table::Owners), "`app`.`s_owners`");
        assert_eq!(in_schema.schema(), Some("app"));
        Ok(())
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(Tables::new(None, "", backquote).is_err());
        assert!(Tables::new(None, "a`b", backquote).is_err());
        assert!(Tables::new(Some("a b"), "sessions", backquote).is_err());
        assert!(Tables::new(Some(&"s".repeat(64)), "sessions", backquote).is_err());
        assert!(Tables::new(None, &"t".repeat(41), backquote).is_err());
    }

    #[test]
    fn every_table_has_a_key_but_the_version() {
        for table in Table::ALL {
            let has_key = table.columns().iter().any(|c| c.primary_key);
            assert_eq!(has_key, table != Table::SchemaVersion, "{table:?}");
        }
    }
}
