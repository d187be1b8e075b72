//! The statements every dialect shares, written once with `?` parameters and rendered per
//! store with the dialect's quoting and numbering.

use crate::{Dialect, Tables};

/// The shared statements of one store, with its names and the dialect's placeholders filled in.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `(id, key, now)` -> the value.
    pub(crate) get: String,
    /// `(id, now)` -> `(expires_at, key, value)` per key.
    pub(crate) load: String,
    /// `(id, now)` -> the number of keys.
    pub(crate) size: String,
    /// `(deadline, id, now)`.
    pub(crate) update_ttl: String,
    /// `(id, owner)`.
    pub(crate) index_add: String,
    /// `(id)`.
    pub(crate) index_remove: String,
    /// `(owner)` -> `(id, expires_at or NULL)` per binding.
    pub(crate) index_sessions: String,
    /// `(owner, now)`: drops the bindings of `owner` whose session is gone.
    pub(crate) index_prune: String,
    /// `(id, now)` -> the owner.
    pub(crate) index_owner: String,
    /// `(id, token, now)`.
    pub(crate) unlock: String,
    /// `(now, limit)`: the dialect's [`PURGE_LOCKS`](Dialect::PURGE_LOCKS).
    pub(crate) purge_locks: String,
    /// `(after, now, limit)` -> ids.
    pub(crate) scan: String,
    /// `()` -> the version, if recorded.
    pub(crate) version: String,
}

impl Statements {
    pub(crate) fn new<D: Dialect>(tables: &Tables) -> Statements {
        let sql = |template: &str| numbered(&tables.render(template), D::placeholder);
        Statements {
            get: sql("SELECT v.value FROM {S} s JOIN {V} v ON v.id = s.id
                      WHERE s.id = ? AND v.{key} = ? AND s.expires_at > ?"),
            load: sql(
                "SELECT s.expires_at, v.{key}, v.value FROM {S} s JOIN {V} v ON v.id = s.id
                       WHERE s.id = ? AND s.expires_at > ?",
            ),
            size: sql("SELECT COUNT(*) FROM {S} s JOIN {V} v ON v.id = s.id
                       WHERE s.id = ? AND s.expires_at > ?"),
            update_ttl: sql("UPDATE {S} SET expires_at = ? WHERE id = ? AND expires_at > ?"),
            index_add: sql(&format!(
                "INSERT INTO {{O}} (id, owner) VALUES (?, ?) {}",
                D::upsert(&["id"], &["owner"])
            )),
            index_remove: sql("DELETE FROM {O} WHERE id = ?"),
            index_sessions: sql("SELECT o.id, s.expires_at FROM {O} o
                                 LEFT JOIN {S} s ON s.id = o.id WHERE o.owner = ?"),
            index_prune: sql("DELETE FROM {O} WHERE owner = ? AND NOT EXISTS
                                  (SELECT 1 FROM {S} s WHERE s.id = {O}.id AND s.expires_at > ?)"),
            index_owner: sql("SELECT o.owner FROM {O} o JOIN {S} s ON s.id = o.id
                              WHERE o.id = ? AND s.expires_at > ?"),
            unlock: sql("DELETE FROM {L} WHERE id = ? AND token = ? AND expires_at > ?"),
            purge_locks: sql(D::PURGE_LOCKS),
            scan: sql("SELECT id FROM {S} WHERE id > ? AND expires_at > ? ORDER BY id LIMIT ?"),
            version: sql(crate::migrate::READ_VERSION),
        }
    }
}

/// `sql` with its `?` parameters replaced by `placeholder(1)`, `placeholder(2)`, ... The
/// templates hold no other `?` (no string literals, no operators that use it).
fn numbered(sql: &str, placeholder: fn(usize) -> String) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    for (n, part) in sql.split('?').enumerate() {
        if n > 0 {
            out.push_str(&placeholder(n));
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let dollar = |n: usize| format!("${n}");
        assert_eq!(
            numbered("UPDATE t SET a = ? WHERE id = ? AND b > ?", dollar),
            "UPDATE t SET a = $1 WHERE id = $2 AND b > $3"
        );
        assert_eq!(numbered("SELECT 1", dollar), "SELECT 1");
        assert_eq!(numbered("?", |_| "?".to_owned()), "?");
    }
}
