//! Short keyed tags of session ids, so logs can tell sessions apart without holding them.

use std::hash::{BuildHasher, RandomState};

use session_core::SessionId;

/// Turns a session id (a bearer secret) into a short tag for logs: 8 hex digits (32 bits) of a
/// keyed SipHash of the id, under a key drawn at random when the tagger is made.
///
/// The same id gets the same tag from one tagger, so the spans of one session can be followed
/// through a log; a tag cannot be turned back into the id (32 bits of a keyed hash, the key
/// never leaves the process), and tags from two processes (or two taggers) do not match.
#[derive(Clone, Debug, Default)]
pub struct IdTagger {
    key: RandomState,
}

impl IdTagger {
    /// A tagger with a fresh random key.
    pub fn new() -> Self {
        IdTagger::default()
    }

    /// The tag of `id`.
    pub fn tag(&self, id: &SessionId) -> String {
        let hash = self.key.hash_one(id.as_str());
        format!("{:08x}", hash >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_stable_and_keyed() {
        let id = SessionId::generate().expect("os rng");
        let tagger = IdTagger::new();
        let tag = tagger.tag(&id);
        assert_eq!(tag.len(), 8);
        assert_eq!(tag, tagger.tag(&id), "one tagger gives one id one tag");
        assert!(!id.as_str().contains(&tag));
        let other = SessionId::generate().expect("os rng");
        assert_ne!(tagger.tag(&other), tag);
        // Another key, another tag (1 in 2^32 that they match by chance).
        assert_ne!(IdTagger::new().tag(&id), tag);
    }
}
