//! Session ids: generated from the OS CSPRNG, validated whenever they come from outside.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrayvec::ArrayString;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

/// Random bytes in a generated id: 192 bits, well above OWASP's 64-bit floor and the 128 bits we promise.
const ID_BYTES: usize = 24;

/// The bytes an id may hold: `[A-Za-z0-9_-]`.
const ID_CHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
        b += 1;
    }
    table
};

/// A validated session id.
///
/// A `SessionId` can only be made by [`SessionId::generate`] (192 bits from the operating
/// system's CSPRNG, 32 URL-safe characters) or by [`SessionId::parse`], which accepts only
/// `[A-Za-z0-9_-]` and a length in [`SessionId::MIN_LEN`]`..=`[`SessionId::MAX_LEN`]. Every
/// [`Storage`](crate::Storage) method takes a `&SessionId`, so text from a cookie or a header
/// can never reach a backend as a key, a file name or an SQL fragment without passing here.
///
/// ```
/// use session_core::SessionId;
///
/// let id = SessionId::generate()?;
/// assert_eq!(id.as_str().len(), 32);
/// assert_eq!(SessionId::parse(id.as_str())?, id);
/// assert!(SessionId::parse("../../etc/passwd").is_err());
/// # Ok::<(), session_core::Error>(())
/// ```
///
/// Cloning is cheap: an id of up to 46 characters (every generated one) is kept
/// inline, without a heap allocation, and is copied; a longer one is reference counted. The
/// session layer hands the id to the store, the cookie and its own state. Comparing and hashing
/// read the characters in place (no pointer to follow), which is what a store keyed by ids does
/// on every lookup.
#[derive(Clone)]
pub struct SessionId(Repr);

/// Longest id kept inline (the size of a `SessionId` is this plus a length and a tag, rounded up).
const INLINE_LEN: usize = 46;

/// How a [`SessionId`] holds its characters, and whether it is a
/// [handle](SessionId::into_handle). Always ASCII (checked before construction), and always
/// inline when it fits, so one id has one representation. (The handle flag is a variant rather
/// than a field so that an id stays the size it was.)
#[derive(Clone)]
enum Repr {
    /// An id of up to [`INLINE_LEN`] characters.
    Inline(ArrayString<INLINE_LEN>),
    /// An id longer than [`INLINE_LEN`].
    Heap(Arc<str>),
    /// A handle of up to [`INLINE_LEN`] characters.
    InlineHandle(ArrayString<INLINE_LEN>),
    /// A handle longer than [`INLINE_LEN`].
    HeapHandle(Arc<str>),
}

impl PartialEq for SessionId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SessionId {}

impl std::hash::Hash for SessionId {
    /// Hashes like the `str` it is (the bytes, then `0xff`).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

impl PartialOrd for SessionId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SessionId {
    /// The order of the ids as text (byte order: ids are ASCII).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl SessionId {
    /// Shortest id [`parse`](Self::parse) accepts.
    pub const MIN_LEN: usize = 16;
    /// Longest id [`parse`](Self::parse) accepts.
    pub const MAX_LEN: usize = 128;

    /// A new id from the operating system's CSPRNG.
    ///
    /// Fails only if the operating system cannot provide randomness, which is reported as a
    /// backend error rather than falling back to a weaker generator.
    pub fn generate() -> Result<Self> {
        Ok(SessionId::from_checked(&random_token::<ID_BYTES>()?))
    }

    /// Validates an id that came from outside.
    ///
    /// Errors with [`Error::InvalidId`] when the text is too short, too long or has a
    /// character outside `[A-Za-z0-9_-]`. The error message never echoes the text itself,
    /// so logs cannot be poisoned through it.
    pub fn parse(text: &str) -> Result<Self> {
        let len = text.len();
        if len < Self::MIN_LEN {
            return Err(Error::InvalidId(format!(
                "{len} characters, at least {} required",
                Self::MIN_LEN
            )));
        }
        if len > Self::MAX_LEN {
            return Err(Error::InvalidId(format!(
                "{len} bytes, at most {} allowed",
                Self::MAX_LEN
            )));
        }
        // One table lookup per byte, no early exit: branch-free over the whole id (every
        // request parses one); the position is looked for only on the error path.
        if !text
            .bytes()
            .fold(true, |ok, b| ok & ID_CHAR[usize::from(b)])
        {
            let pos = text
                .bytes()
                .position(|b| !ID_CHAR[usize::from(b)])
                .unwrap_or(0);
            return Err(Error::InvalidId(format!(
                "character at byte {pos} is outside [A-Za-z0-9_-]"
            )));
        }
        Ok(SessionId::from_checked(text))
    }

    /// An id from text already known to be a valid id (ASCII of the id alphabet).
    fn from_checked(text: &str) -> Self {
        match ArrayString::from(text) {
            Ok(inline) => SessionId(Repr::Inline(inline)),
            Err(_) => SessionId(Repr::Heap(text.into())),
        }
    }

    /// The characters of the id.
    fn as_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }

    /// The id as text (always ASCII, safe in URLs, file names and Redis keys).
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(text) | Repr::InlineHandle(text) => text,
            Repr::Heap(text) | Repr::HeapHandle(text) => text,
        }
    }

    /// The same text, marked as a *handle*: the name under which a store keeps a session, as
    /// its listing methods ([`Storage::index_sessions`](crate::Storage::index_sessions),
    /// [`Storage::scan`](crate::Storage::scan)) return it, rather than the id a client
    /// presents.
    ///
    /// For a plain driver the two are the same and nothing makes handles. A layer that keeps
    /// sessions under another name (`session-at-rest` keeps each under a keyed hash of its id,
    /// so that a copy of the backend holds no working id) lists what it stores as handles and,
    /// when it is given a handle back, addresses that stored session directly, where an
    /// ordinary id would be hashed first. That is how [`Manager`](crate::Manager) features built
    /// on the owner index (the sessions of a user, "log out everywhere") keep working over such
    /// a layer, while the text of a handle is worth nothing as a cookie:
    /// [`parse`](Self::parse) and [`generate`](Self::generate) never make a handle, so text
    /// from a client is always an ordinary id, even when it spells a handle.
    ///
    /// Only stores and layers should call this, on names they listed themselves: a handle made
    /// from a client's text would let that client address a stored session by its stored
    /// name. A handle compares, hashes, orders and displays as its text; whether an id is a
    /// handle is not part of its equality.
    ///
    /// ```
    /// use session_core::SessionId;
    ///
    /// let stored = SessionId::parse("stored-name-of-a-session")?.into_handle();
    /// assert!(stored.is_handle());
    /// // The same text from outside is an ordinary id.
    /// assert!(!SessionId::parse(stored.as_str())?.is_handle());
    /// # Ok::<(), session_core::Error>(())
    /// ```
    pub fn into_handle(self) -> SessionId {
        SessionId(match self.0 {
            Repr::Inline(text) => Repr::InlineHandle(text),
            Repr::Heap(text) => Repr::HeapHandle(text),
            handle => handle,
        })
    }

    /// Whether this id is a handle (see [`into_handle`](Self::into_handle)).
    pub fn is_handle(&self) -> bool {
        matches!(self.0, Repr::InlineHandle(_) | Repr::HeapHandle(_))
    }

    /// A shortened form for display ("abcd…wxyz"), for pages and logs that must not show the full id.
    pub fn short(&self) -> String {
        let s = self.as_str();
        format!("{}…{}", &s[..4], &s[s.len() - 4..])
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionId {
    /// Debug output shows only the shortened id, so a `{:?}` in a log does not leak a live credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.is_handle() {
            "Handle"
        } else {
            "SessionId"
        };
        write!(f, "{what}({})", self.short())
    }
}

impl FromStr for SessionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SessionId::parse(s)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// The session id a request came with, as the HTTP layer found it: none, a well-formed
/// [`SessionId`], or one that was sent but is invalid (malformed; for a cookie layer also a
/// signature that does not verify or a value that does not decrypt).
///
/// The HTTP layer parses the id once and hands this to [`Manager::load`](crate::Manager::load),
/// [`load_with`](crate::Manager::load_with) or [`load_locked`](crate::Manager::load_locked),
/// which take `impl Into<IncomingId>`. What the manager does with it:
///
/// * [`Absent`](Self::Absent): a new session; a save that writes nothing sends no cookie.
/// * [`Valid`](Self::Valid): loaded at the first access. A valid id may still be unknown or
///   expired: it is never adopted then, and a save that writes nothing says
///   [`CookieAction::Remove`](crate::CookieAction::Remove).
/// * [`Invalid`](Self::Invalid): never looked up (no storage call); the session starts new, and
///   a save that writes nothing says [`CookieAction::Remove`](crate::CookieAction::Remove),
///   even when the request never touched the session, so the client drops the bad cookie. A
///   save that writes issues a fresh id ([`CookieAction::Set`](crate::CookieAction::Set)).
///
/// Conversions keep the plain forms working: `None` and `Some(text)` (an `Option<&str>`, parsed
/// here: empty text counts as absent), a [`SessionId`] or `&SessionId` (already valid).
///
/// ```
/// use session_core::{IncomingId, SessionId};
///
/// let id = SessionId::generate()?;
/// assert_eq!(IncomingId::from(Some(id.as_str())), IncomingId::Valid(id.clone()));
/// assert_eq!(IncomingId::from(&id).id(), Some(&id));
/// assert_eq!(IncomingId::from(Some("../etc/passwd")), IncomingId::Invalid);
/// assert_eq!(IncomingId::from(None), IncomingId::Absent);
/// assert_eq!(IncomingId::from(Some("")), IncomingId::Absent);
/// # Ok::<(), session_core::Error>(())
/// ```
///
/// There is deliberately no `From<Option<SessionId>>`: with two `Option` conversions a plain
/// `manager.load(None)` would no longer compile (the compiler could not tell which `None` it
/// is). Write `opt.map_or(IncomingId::Absent, IncomingId::Valid)` instead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IncomingId {
    /// The request brought no id.
    #[default]
    Absent,
    /// The request brought a well-formed id (it may still be unknown or expired).
    Valid(SessionId),
    /// The request brought an id that is not valid: malformed, forged, or unreadable. It never
    /// reaches storage.
    Invalid,
}

impl IncomingId {
    /// What a request that sent `text` brought: [`Valid`](Self::Valid) if it parses with
    /// [`SessionId::parse`], [`Absent`](Self::Absent) if it is empty, else
    /// [`Invalid`](Self::Invalid).
    pub fn parse(text: &str) -> Self {
        if text.is_empty() {
            return IncomingId::Absent;
        }
        SessionId::parse(text).map_or(IncomingId::Invalid, IncomingId::Valid)
    }

    /// The id, when the request brought a valid one.
    pub fn id(&self) -> Option<&SessionId> {
        match self {
            IncomingId::Valid(id) => Some(id),
            _ => None,
        }
    }

    /// Whether the request brought an id that is not valid.
    pub fn is_invalid(&self) -> bool {
        matches!(self, IncomingId::Invalid)
    }
}

impl From<Option<&str>> for IncomingId {
    /// Parses the text with [`IncomingId::parse`]; `None` is [`IncomingId::Absent`].
    fn from(text: Option<&str>) -> Self {
        text.map_or(IncomingId::Absent, IncomingId::parse)
    }
}

impl From<SessionId> for IncomingId {
    fn from(id: SessionId) -> Self {
        IncomingId::Valid(id)
    }
}

impl From<&SessionId> for IncomingId {
    fn from(id: &SessionId) -> Self {
        IncomingId::Valid(id.clone())
    }
}

/// A lock token: proof of holding a lease lock, checked on release.
///
/// Made from 128 random bits, so one holder can never release another's lock by accident.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LockToken(Box<str>);

impl LockToken {
    /// A new random token.
    pub fn generate() -> Result<Self> {
        Ok(LockToken(random_token::<16>()?.into_boxed_str()))
    }

    /// Rebuilds a token a driver stored as text (for example read back from a database row).
    pub fn from_stored(text: impl Into<Box<str>>) -> Self {
        LockToken(text.into())
    }

    /// The token as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockToken(..)")
    }
}

/// `N` bytes from the OS CSPRNG, as unpadded URL-safe base64.
fn random_token<const N: usize>() -> Result<String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| Error::backend("os-random", e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = SessionId::generate().expect("rng");
        let b = SessionId::generate().expect("rng");
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(SessionId::parse(a.as_str()).expect("valid"), a);
    }

    #[test]
    fn parse_rejects_bad_ids() {
        for bad in [
            "",
            "short",
            "../../etc/passwd/aaaaaaaa",
            "aaaaaaaaaaaaaaaa/",
            "aaaaaaaaaaaaaaaa\0",
            "aaaaaaaaaaaaaaaa.",
            "aaaaaaaaaaaaaaaa key",
            "ääääääääääääääää",
            &"a".repeat(129),
        ] {
            assert!(
                matches!(SessionId::parse(bad), Err(Error::InvalidId(_))),
                "{bad:?} accepted"
            );
        }
        assert!(SessionId::parse(&"a".repeat(128)).is_ok());
        assert!(SessionId::parse("Ab0_-Ab0_-Ab0_-A").is_ok());
    }

    #[test]
    fn the_id_alphabet_table_is_exactly_a_z_0_9_dash_underscore() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
            assert_eq!(ID_CHAR[usize::from(b)], expected, "byte {b}");
        }
        let mut id = "a".repeat(20);
        id.replace_range(7..8, "!");
        match SessionId::parse(&id) {
            Err(Error::InvalidId(msg)) => assert!(msg.contains("byte 7"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn incoming_ids_are_parsed_once_into_three_cases() {
        let id = SessionId::generate().expect("rng");
        assert_eq!(IncomingId::default(), IncomingId::Absent);
        assert_eq!(IncomingId::from(None), IncomingId::Absent);
        assert_eq!(IncomingId::from(Some("")), IncomingId::Absent);
        assert_eq!(IncomingId::parse(""), IncomingId::Absent);
        assert_eq!(
            IncomingId::from(Some(id.as_str())),
            IncomingId::Valid(id.clone())
        );
        assert_eq!(IncomingId::from(id.clone()), IncomingId::Valid(id.clone()));
        assert_eq!(IncomingId::from(&id), IncomingId::Valid(id.clone()));
        for bad in ["short", "../../etc/passwd/aaaaaaaa", "aaaaaaaaaaaaaaaa key"] {
            let got = IncomingId::from(Some(bad));
            assert_eq!(got, IncomingId::Invalid, "{bad:?}");
            assert!(got.is_invalid() && got.id().is_none());
        }
        assert_eq!(IncomingId::Valid(id.clone()).id(), Some(&id));
        assert!(!IncomingId::Valid(id.clone()).is_invalid());
        assert!(!IncomingId::Absent.is_invalid() && IncomingId::Absent.id().is_none());
        assert!(!format!("{:?}", IncomingId::Valid(id.clone())).contains(id.as_str()));
    }

    #[test]
    fn short_and_long_ids_compare_hash_and_order_as_their_text() {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        fn hash<T: Hash + ?Sized>(v: &T) -> u64 {
            let mut h = DefaultHasher::new();
            v.hash(&mut h);
            h.finish()
        }
        let texts = [
            "a".repeat(SessionId::MIN_LEN),
            "b".repeat(INLINE_LEN - 1),
            "b".repeat(INLINE_LEN),
            "b".repeat(INLINE_LEN + 1),
            "Zz_-".repeat(SessionId::MAX_LEN / 4),
        ];
        let ids: Vec<SessionId> = texts
            .iter()
            .map(|t| SessionId::parse(t).expect("valid"))
            .collect();
        assert!(matches!(ids[2].0, Repr::Inline(_)));
        assert!(matches!(ids[3].0, Repr::Heap(_)));
        for (a, ta) in ids.iter().zip(&texts) {
            assert_eq!(a.as_str(), ta);
            assert_eq!(a.to_string(), *ta);
            assert_eq!(hash(a), hash(ta.as_str()), "hashes like its text");
            assert_eq!(a.clone(), *a);
            for (b, tb) in ids.iter().zip(&texts) {
                assert_eq!(a == b, ta == tb);
                assert_eq!(a.cmp(b), ta.as_str().cmp(tb.as_str()));
            }
        }
        assert!(std::mem::size_of::<SessionId>() <= 56);
    }

    #[test]
    fn handles_are_made_by_stores_only_and_compare_as_their_text() {
        for text in ["h".repeat(INLINE_LEN), "H".repeat(INLINE_LEN + 1)] {
            let id = SessionId::parse(&text).expect("valid");
            assert!(!id.is_handle());
            let handle = id.clone().into_handle();
            assert!(handle.is_handle() && handle.clone().into_handle().is_handle());
            assert_eq!(handle.as_str(), text);
            assert_eq!(handle, id, "a handle equals the id of the same text");
            assert!(format!("{handle:?}").starts_with("Handle("));
            assert!(!format!("{handle:?}").contains(&text));
            // Text from outside is never a handle, whatever it spells.
            assert!(
                !SessionId::parse(handle.as_str())
                    .expect("valid")
                    .is_handle()
            );
            assert!(
                !IncomingId::parse(handle.as_str())
                    .id()
                    .expect("valid")
                    .is_handle()
            );
        }
        assert!(!SessionId::generate().expect("rng").is_handle());
        assert!(std::mem::size_of::<SessionId>() <= 56);
    }

    #[test]
    fn debug_does_not_leak_the_id() {
        let id = SessionId::generate().expect("rng");
        assert!(!format!("{id:?}").contains(id.as_str()));
    }
}
