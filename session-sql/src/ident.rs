//! Identifier checks: the only text ever put into SQL that is not the crate's own.

use session_core::{Error, Result};

/// Longest table base name. The tables append suffixes of up to 15 characters
/// (`_schema_version`), dialects append their own (PostgreSQL's index and function names, up to
/// 17), and servers cut identifiers at 63 (PostgreSQL) or 64 (MySQL) characters.
pub const MAX_TABLE_NAME_LEN: usize = 40;

/// Checks a name that will be put into SQL as an identifier (a table base name, a schema):
/// `[A-Za-z_][A-Za-z0-9_]*`, 1 to `max` characters. `what` names it in the error
/// ([`Error::InvalidInput`]).
///
/// Ids, keys, values, owners and tokens are always bound parameters; a checked identifier is
/// the only thing a store interpolates into a statement, and it is quoted besides.
///
/// ```
/// use session_sql::check_ident;
///
/// assert!(check_ident("table name", "web_sessions", 40).is_ok());
/// assert!(check_ident("table name", "x\"; DROP TABLE y; --", 40).is_err());
/// ```
pub fn check_ident(what: &str, name: &str, max: usize) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || name.len() > max || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::InvalidInput(format!(
            "{what} must match [A-Za-z_][A-Za-z0-9_]* and be 1 to {max} characters long"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_ident;

    #[test]
    fn identifiers_are_checked() {
        assert!(check_ident("table", "sessions", 40).is_ok());
        assert!(check_ident("table", "_Sessions_2", 40).is_ok());
        assert!(check_ident("table", "", 40).is_err());
        assert!(check_ident("table", "2sessions", 40).is_err());
        assert!(check_ident("table", "sessions; DROP TABLE x", 40).is_err());
        assert!(check_ident("table", "sessions`; DROP TABLE x", 40).is_err());
        assert!(check_ident("table", "s\"x", 40).is_err());
        assert!(check_ident("table", "séssions", 40).is_err());
        assert!(check_ident("table", &"a".repeat(41), 40).is_err());
        assert!(check_ident("table", &"a".repeat(40), 40).is_ok());
    }
}
