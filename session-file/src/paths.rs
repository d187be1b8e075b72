//! Every path the driver touches is built here, and only here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use session_core::{Error, Result, SessionId};
use sha2::{Digest, Sha256};

/// Prefix of session record files: `sess_<id>`.
pub(crate) const RECORD_PREFIX: &str = "sess_";
/// Prefix of advisory lock files: `lock_<id>`.
pub(crate) const LOCK_PREFIX: &str = "lock_";
/// Prefix of lease lock files: `lease_<id>`.
pub(crate) const LEASE_PREFIX: &str = "lease_";
/// Prefix of temporary files a write goes through before its rename.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";
/// Subdirectory holding the owner index.
pub(crate) const OWNERS_DIR: &str = "owners";

/// Owners up to this many bytes are stored as base64url (at most 240 characters plus the
/// one-character prefix); longer ones as the hex SHA-256 of their bytes.
pub(crate) const OWNER_INLINE_MAX: usize = 180;

/// Longest single file name this driver makes (below the usual 255-byte limit).
const MAX_NAME: usize = 250;

/// The one function that joins a name onto a directory.
///
/// `prefix` is one of the constants of this module; `name` must be 1 to 250 bytes of
/// `[A-Za-z0-9_-]`, so the result can never leave `dir` (no `/`, no `..`, no NUL).
pub(crate) fn confined(dir: &Path, prefix: &str, name: &str) -> Result<PathBuf> {
    let safe = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || prefix.len() + name.len() > MAX_NAME || !safe(name) || !safe(prefix) {
        return Err(Error::InvalidInput(
            "refusing a file name outside [A-Za-z0-9_-]{1,250}".into(),
        ));
    }
    Ok(dir.join(format!("{prefix}{name}")))
}

/// The on-disk name of an owner's index directory: `o<base64url(owner)>` for owners of at most
/// [`OWNER_INLINE_MAX`] bytes, `h<hex(sha256(owner))>` for longer ones.
pub(crate) fn owner_dir_name(owner: &str) -> String {
    if owner.len() <= OWNER_INLINE_MAX {
        format!("o{}", URL_SAFE_NO_PAD.encode(owner.as_bytes()))
    } else {
        let digest = Sha256::digest(owner.as_bytes());
        let mut name = String::with_capacity(65);
        name.push('h');
        for b in digest.iter() {
            let _ = write!(name, "{b:02x}");
        }
        name
    }
}

/// The paths of one store directory.
#[derive(Debug)]
pub(crate) struct Layout {
    /// The store directory (absolute).
    pub(crate) dir: PathBuf,
    /// `dir/owners`.
    pub(crate) owners: PathBuf,
}

impl Layout {
    pub(crate) fn new(dir: PathBuf) -> Self {
        let owners = dir.join(OWNERS_DIR);
        Layout { dir, owners }
    }

    /// `dir/sess_<id>`.
    pub(crate) fn record(&self, id: &SessionId) -> Result<PathBuf> {
        confined(&self.dir, RECORD_PREFIX, id.as_str())
    }

    /// `dir/lock_<id>`.
    pub(crate) fn lock(&self, id: &SessionId) -> Result<PathBuf> {
        confined(&self.dir, LOCK_PREFIX, id.as_str())
    }

    /// `dir/lease_<id>`.
    pub(crate) fn lease(&self, id: &SessionId) -> Result<PathBuf> {
        confined(&self.dir, LEASE_PREFIX, id.as_str())
    }

    /// `dir/owners/<encoded owner>`, from an already encoded name.
    pub(crate) fn owner_dir_encoded(&self, encoded: &str) -> Result<PathBuf> {
        confined(&self.owners, "", encoded)
    }

    /// `dir/owners/<encoded owner>/<id>`, from an already encoded owner name.
    pub(crate) fn owner_entry_encoded(&self, encoded: &str, id: &SessionId) -> Result<PathBuf> {
        confined(&self.owner_dir_encoded(encoded)?, "", id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confined_refuses_anything_but_the_safe_charset() {
        let dir = Path::new("/srv/sessions");
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "/etc/passwd",
            "a\0b",
            "a.b",
            "ä",
            "a b",
        ] {
            assert!(
                confined(dir, RECORD_PREFIX, bad).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(confined(dir, "", &"a".repeat(251)).is_err());
        assert!(
            confined(dir, "../", "abc").is_err(),
            "prefix is checked too"
        );
        let ok = confined(dir, RECORD_PREFIX, "Ab0_-").expect("safe name");
        assert_eq!(ok, Path::new("/srv/sessions/sess_Ab0_-"));
        assert_eq!(ok.parent(), Some(dir));
    }

    #[test]
    fn owner_names_are_safe_short_and_distinct() {
        let long_a = "a".repeat(256);
        let long_b = format!("{}b", "a".repeat(255));
        let owners = [
            "alice",
            "../../etc",
            "user/with/slashes",
            "名前",
            long_a.as_str(),
            long_b.as_str(),
            &"x".repeat(OWNER_INLINE_MAX),
            &"x".repeat(OWNER_INLINE_MAX + 1),
        ];
        let mut names = Vec::new();
        for owner in owners {
            let name = owner_dir_name(owner);
            assert!(name.len() < 255, "{} bytes", name.len());
            assert!(confined(Path::new("/d"), "", &name).is_ok(), "{name}");
            assert_eq!(name, owner_dir_name(owner), "stable");
            names.push(name);
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert!(owner_dir_name(&long_a).starts_with('h'));
        assert_eq!(owner_dir_name(&long_a).len(), 65);
        assert!(owner_dir_name("alice").starts_with('o'));
    }
}
