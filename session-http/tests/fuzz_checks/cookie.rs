//! The check of the `cookie` fuzz target (and of its regression test): reading the session id
//! from a request's `Cookie` (or id header) values, signed or private, with key rotation, as
//! every framework layer (session-axum, session-actix) does through `HttpSessions::read`, and
//! writing it back with `HttpSessions::outgoing`.
//!
//! The input (`arbitrary`) is a config (signed or private, up to three keys from a pool of four,
//! cookie or header) and header values made of pieces: raw bytes, separators, names, ids, and
//! values sealed by a signing oracle (the `cookie` crate's jars, as the layer seals) with any key
//! of the pool, either protection and any name. Checked:
//!
//! * reading never panics, and with keys configured a valid id is only ever one the oracle
//!   sealed with a configured key and the configured protection (a private value only under the
//!   name it was sealed for); `stale_key` says whether a key other than the first sealed it;
//!   without keys the id is text the request sent;
//! * every sealed piece, sent alone, reads exactly as expected: valid (with the right
//!   `stale_key`) when a configured key sealed an id with the configured protection, else
//!   invalid;
//! * a new id sealed by `outgoing` (`Set`, `Refresh` after a rotation) reads back as that id
//!   with `stale_key` false; a removal is an empty value (`Max-Age=0` for a cookie); every
//!   outgoing value is visible ASCII;
//! * `client_info` takes any `X-Forwarded-For` and `User-Agent` values.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arbitrary::{Arbitrary, Unstructured};
use cookie::{Cookie, CookieJar};
use session_core::{Config, CookieAction, IncomingId, Manager, SessionId};
use session_http::{CookieConfig, HttpSessions, Incoming, Key, Protection};

/// Valid ids the input can name by number.
const IDS: [&str; 4] = [
    "AAAAAAAAAAAAAAAA",
    "abcdefghijklmnopqrstuvwxyz012345",
    "Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-Zz_-",
    "0123456789-_0123456789-_",
];
const COOKIE_NAMES: [&str; 3] = ["session_id", "__Host-sid", "s"];
const HEADER_NAMES: [&str; 2] = ["x-session-id", "X-Token"];
const SEPARATORS: [&str; 8] = ["; ", ";", ",", " ", "=", "\t", "\"", ", "];

/// Runs the check on one input.
pub fn check(data: &[u8]) {
    if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        run(&input);
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    private: bool,
    /// Pool indices of the configured keys, first one first (at most three used).
    keys: Vec<u8>,
    header: bool,
    name: u8,
    trusted_proxies: u8,
    values: Vec<Vec<Piece>>,
}

#[derive(Arbitrary, Clone, Debug)]
enum Text {
    /// One of [`IDS`].
    Id(u8),
    Any(String),
}

impl Text {
    fn get(&self) -> &str {
        match self {
            Text::Id(n) => IDS[usize::from(*n) % IDS.len()],
            Text::Any(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Piece {
    Raw(Vec<u8>),
    Separator(u8),
    /// `<name>=`: the configured name, or another.
    Name(bool, u8),
    Bare(Text),
    Sealed(Seal),
}

#[derive(Arbitrary, Clone, Debug)]
struct Seal {
    text: Text,
    /// Pool index of the key.
    key: u8,
    private: bool,
    /// Sealed for the configured name (`true`) or another one.
    own_name: bool,
}

fn pool() -> &'static [Key; 4] {
    static POOL: OnceLock<[Key; 4]> = OnceLock::new();
    POOL.get_or_init(|| {
        [1u8, 2, 3, 4].map(|b| Key::try_from_secret(&[b; 32]).expect("a 32-byte secret"))
    })
}

fn manager() -> &'static Manager {
    static MANAGER: OnceLock<Manager> = OnceLock::new();
    MANAGER.get_or_init(|| {
        Manager::new(
            Arc::new(session_memory::MemoryStore::new()),
            Config::default(),
        )
        .expect("the default config")
    })
}

/// `text` sealed as the layer seals it: signed or encrypted with pool key `key`, for `name`.
fn seal(text: &str, key: usize, private: bool, name: &str) -> String {
    let key = cookie::Key::try_from(pool()[key].master()).expect("64 bytes of key material");
    let mut jar = CookieJar::new();
    let cookie = Cookie::new(name.to_owned(), text.to_owned());
    if private {
        jar.private_mut(&key).add(cookie);
    } else {
        jar.signed_mut(&key).add(cookie);
    }
    jar.get(name).expect("just added").value().to_owned()
}

struct Setup {
    sessions: HttpSessions,
    /// Pool indices of the configured keys, in order.
    keys: Vec<usize>,
    protection: Protection,
    /// The name the value is bound to (the cookie's, or the header's in lower case).
    value_name: String,
    cookie_name: String,
    header: bool,
}

impl Setup {
    fn new(input: &Input) -> Setup {
        let mut keys: Vec<usize> = input
            .keys
            .iter()
            .take(3)
            .map(|&k| usize::from(k) % pool().len())
            .collect();
        if input.private && keys.is_empty() {
            keys.push(0); // Protection::Private needs a key
        }
        let protection = if input.private {
            Protection::Private
        } else {
            Protection::Signed
        };
        let cookie_name = COOKIE_NAMES[usize::from(input.name) % COOKIE_NAMES.len()].to_owned();
        let header = input
            .header
            .then(|| HEADER_NAMES[usize::from(input.name) % HEADER_NAMES.len()].to_owned());
        let value_name = header
            .as_deref()
            .map_or(cookie_name.clone(), str::to_ascii_lowercase);
        let config = CookieConfig {
            name: cookie_name.clone(),
            keys: keys.iter().map(|&k| pool()[k].clone()).collect(),
            protection,
            header,
            trusted_proxies: usize::from(input.trusted_proxies % 4),
            ..CookieConfig::default()
        };
        let sessions =
            HttpSessions::with_config(manager().clone(), config).expect("a valid config");
        Setup {
            sessions,
            keys,
            protection,
            value_name,
            cookie_name,
            header: input.header,
        }
    }

    /// What a value sealed by `s` reads as when sent alone.
    fn expected(&self, s: &Seal) -> Incoming {
        let text = s.text.get();
        let sealed_for_us =
            (s.private == (self.protection == Protection::Private)) && (!s.private || s.own_name);
        let position = self.keys.iter().position(|&k| k == usize::from(s.key) % 4);
        match (SessionId::parse(text), position) {
            (Ok(id), Some(at)) if sealed_for_us => Incoming {
                id: IncomingId::Valid(id),
                stale_key: at > 0,
            },
            _ => Incoming {
                id: IncomingId::Invalid,
                stale_key: false,
            },
        }
    }

    /// The header value that carries `value` alone.
    fn alone(&self, value: &str) -> String {
        if self.header {
            value.to_owned()
        } else {
            format!("{}={value}", self.cookie_name)
        }
    }

    fn read(&self, values: &[Vec<u8>]) -> Incoming {
        self.sessions.read(values.iter().map(Vec::as_slice))
    }
}

fn run(input: &Input) {
    let setup = Setup::new(input);
    let mut seals: Vec<(Seal, String)> = Vec::new();
    let values: Vec<Vec<u8>> = input
        .values
        .iter()
        .map(|pieces| {
            let mut value = Vec::new();
            for piece in pieces {
                match piece {
                    Piece::Raw(bytes) => value.extend_from_slice(bytes),
                    Piece::Separator(n) => value.extend_from_slice(
                        SEPARATORS[usize::from(*n) % SEPARATORS.len()].as_bytes(),
                    ),
                    Piece::Name(own, n) => {
                        let name = if *own {
                            setup.cookie_name.as_str()
                        } else {
                            COOKIE_NAMES[usize::from(*n) % COOKIE_NAMES.len()]
                        };
                        value.extend_from_slice(name.as_bytes());
                        value.push(b'=');
                    }
                    Piece::Bare(text) => value.extend_from_slice(text.get().as_bytes()),
                    Piece::Sealed(s) => {
                        let name = if s.own_name {
                            &setup.value_name
                        } else {
                            "other"
                        };
                        let sealed = seal(s.text.get(), usize::from(s.key) % 4, s.private, name);
                        value.extend_from_slice(sealed.as_bytes());
                        seals.push((s.clone(), sealed));
                    }
                }
            }
            value
        })
        .collect();

    // The whole request.
    let got = setup.read(&values);
    if let IncomingId::Valid(id) = &got.id {
        if setup.keys.is_empty() {
            assert!(
                values.iter().any(|v| v
                    .windows(id.as_str().len())
                    .any(|w| w == id.as_str().as_bytes())),
                "{id:?} was not sent"
            );
            assert!(!got.stale_key);
        } else {
            assert!(
                seals.iter().any(|(s, _)| setup.expected(s) == got),
                "{got:?} was never sealed so with a configured key"
            );
        }
    } else {
        assert!(!got.stale_key, "{got:?}");
    }

    // Each sealed value alone (with keys: without, any well-formed text is an id).
    for (s, sealed) in seals.iter().filter(|_| !setup.keys.is_empty()) {
        let alone = setup.read(&[setup.alone(sealed).into_bytes()]);
        let want = setup.expected(s);
        if want.id.id().is_some() {
            assert_eq!(alone, want, "{s:?} sent alone");
        } else {
            // not sealed for this config: never valid (it may not even be header text)
            assert!(
                alone.id.id().is_none() && !alone.stale_key,
                "{s:?}: {alone:?}"
            );
        }
    }

    // What the layer sends, read back.
    let mut ids = vec![SessionId::parse(IDS[usize::from(input.name) % IDS.len()]).expect("valid")];
    ids.extend(
        seals
            .iter()
            .filter_map(|(s, _)| SessionId::parse(s.text.get()).ok()),
    );
    let soon = SystemTime::now() + Duration::from_secs(3600);
    for id in ids.iter().take(3) {
        for action in [
            CookieAction::Set {
                id: id.clone(),
                expires: soon,
            },
            CookieAction::Refresh {
                id: id.clone(),
                expires: SystemTime::UNIX_EPOCH,
            },
        ] {
            let value = outgoing(&setup, &action, true).expect("a new id is sent");
            let sent = if setup.header {
                value
            } else {
                let c = Cookie::parse(value.clone()).expect("a Set-Cookie value parses");
                assert_eq!(c.name(), setup.cookie_name);
                assert!(c.http_only().unwrap_or(false) && c.secure().unwrap_or(false));
                setup.alone(c.value())
            };
            let back = setup.read(&[sent.into_bytes()]);
            assert_eq!(back.id, IncomingId::Valid(id.clone()), "{action:?}");
            assert!(!back.stale_key);
        }
    }
    assert_eq!(outgoing(&setup, &CookieAction::Unchanged, true), None);
    let removal = outgoing(&setup, &CookieAction::Remove, false).expect("a removal is sent");
    if setup.header {
        assert_eq!(removal, "");
    } else {
        let c = Cookie::parse(removal).expect("a Set-Cookie value parses");
        assert_eq!((c.name(), c.value()), (setup.cookie_name.as_str(), ""));
        assert_eq!(c.max_age(), Some(cookie::time::Duration::ZERO));
    }

    // The client's address and agent, from any header values.
    let client = setup.sessions.client_info(
        None,
        values.iter().map(Vec::as_slice),
        values.first().map(Vec::as_slice),
    );
    if let Some(ua) = &client.user_agent {
        assert!(ua.len() <= session_core::MAX_USER_AGENT_LEN);
    }
}

/// `outgoing`'s value, checked to be visible ASCII.
fn outgoing(setup: &Setup, action: &CookieAction, stale_key: bool) -> Option<String> {
    let value = setup.sessions.outgoing(action, stale_key)?;
    let value = value.expect("a sealable id");
    assert!(
        value
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
        "{value:?} is not a header value"
    );
    Some(value)
}
