//! What a dialect's [`migrate`](crate::Dialect::migrate) runs: the version check and the
//! pending steps, the same for every dialect.

use session_core::{Error, Result};

use crate::{Dialect, Table, Tables};

/// Reads the recorded schema version (no row: none recorded yet, a new database).
pub const READ_VERSION: &str = "SELECT version FROM {VT} ORDER BY version DESC LIMIT 1";

/// The schema version dialect `D` writes: the number of its migration steps.
pub fn schema_version<D: Dialect>() -> i64 {
    i64::try_from(D::MIGRATIONS.len()).unwrap_or(i64::MAX)
}

/// The statements that take the tables from the version `found` in the version table (`None`:
/// none recorded) to [`schema_version`], rendered for `tables`: the steps not run yet, then
/// the version rewrite. Empty when the tables are current.
///
/// A version newer than the dialect knows is refused with an [`Error::Backend`] that says
/// to upgrade the driver; a negative one is [`Error::Corrupt`].
pub fn pending<D: Dialect>(tables: &Tables, found: Option<i64>) -> Result<Vec<String>> {
    let found = found.unwrap_or(0);
    let newest = schema_version::<D>();
    let version_table = tables.name(Table::SchemaVersion);
    if found > newest {
        return Err(Error::backend(
            D::NAME,
            format!(
                "the session tables ({version_table}) have schema version {found}, newer than \
                 the {newest} this version of session-{name} knows; upgrade session-{name} to \
                 use them",
                name = D::NAME
            ),
        ));
    }
    let Ok(done) = usize::try_from(found) else {
        return Err(Error::corrupt(
            D::NAME,
            format!("{version_table}: negative schema version {found}"),
        ));
    };
    let mut statements: Vec<String> = D::MIGRATIONS[done..]
        .iter()
        .flat_map(|step| step.iter().map(|sql| tables.render(sql)))
        .collect();
    if found != newest {
        statements.push(format!("DELETE FROM {version_table}"));
        // The version is this crate's number, never input.
        statements.push(format!(
            "INSERT INTO {version_table} (version) VALUES ({newest})"
        ));
    }
    Ok(statements)
}
