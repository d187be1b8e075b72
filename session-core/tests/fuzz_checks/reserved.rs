//! The check of the `reserved` fuzz target (and of its regression test): the session layer's
//! own keys (`__s.meta`, `__s.seen`, `__s.user`, `__s.retired`, `__s.ttl`, flash and temp
//! marks) as they come back from storage, where anyone with access to the backend may have
//! written anything.
//!
//! The input (`arbitrary`) is a stored session (reserved and user keys, values either well-formed
//! in the positional or named form or any bytes), a set of reserved values, a config and a list
//! of session operations. Checked:
//!
//! * `Reserved::read` is exactly the reserved keys decoded one by one (`Error::Corrupt` naming the
//!   backend when one does not decode, the TTL kept within the valid range; `__s.meta` and
//!   `__s.seen` decoded when first asked for, `Error::Corrupt` then and every time after), never
//!   a panic, it notices flash and temp marks, and its public view carries the decoded times,
//!   client and owner;
//! * `read(encode(parts)) == parts` for the positional form the layer writes and the named form;
//! * the stored session, put in a memory store and loaded through a `Manager`, takes any sequence
//!   of session and manager operations without a panic; the only errors are the ones the input
//!   can cause (a corrupt reserved value, a value of another type, an invalid key or user), and
//!   `Error::Corrupt` only when a reserved value of the stored session does not decode.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use session_core::fuzzing::{
    FLASH, META, RETIRED, Reserved, SEEN, StoredMeta, StoredSeen, TEMP, TTL, USER, encode_reserved,
};
use session_core::{
    ClientInfo, Config, Data, Error, IncomingId, Manager, SessionId, Storage, Value, check,
};

const BACKEND: &str = "fuzz";

/// Runs the check on one input.
pub fn check(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let stored = stored_data(&input.stored);
    let reads = decode(&stored);
    round_trip(&input.parts);
    lifecycle(&input, stored, reads);
}

#[derive(Arbitrary, Debug)]
struct Input {
    stored: Vec<(StoredKey, StoredValue)>,
    parts: Parts,
    config: u8,
    client: Client,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum StoredKey {
    Meta,
    Seen,
    User,
    Retired,
    Ttl,
    Flash(String),
    Temp(String),
    /// Another key under the reserved prefix.
    Reserved(String),
    Plain(String),
}

#[derive(Arbitrary, Debug)]
enum StoredValue {
    Raw(Vec<u8>),
    Meta(MetaParts, bool),
    Seen(SeenParts, bool),
    Str(String),
    U64(u64),
    I64(i64),
    Bool(bool),
    Strings(Vec<String>),
}

#[derive(Arbitrary, Clone, Debug)]
struct MetaParts {
    created: u64,
    auth: Option<u64>,
    issued: u64,
    ip: Option<IpAddr>,
    user_agent: Option<String>,
}

impl MetaParts {
    fn stored(&self) -> StoredMeta {
        StoredMeta {
            created: self.created,
            auth: self.auth,
            issued: self.issued,
            client: ClientInfo {
                ip: self.ip,
                user_agent: self.user_agent.clone(),
            },
        }
    }
}

#[derive(Arbitrary, Clone, Debug)]
struct SeenParts {
    at: u64,
    ip: Option<IpAddr>,
}

impl SeenParts {
    fn stored(&self) -> StoredSeen {
        StoredSeen {
            at: self.at,
            ip: self.ip,
        }
    }
}

/// Reserved values to encode and read back.
#[derive(Arbitrary, Debug)]
struct Parts {
    meta: Option<MetaParts>,
    seen: Option<SeenParts>,
    user: Option<String>,
    retired: Option<u64>,
    ttl: Option<u64>,
    named: bool,
}

#[derive(Arbitrary, Debug)]
struct Client {
    ip: Option<IpAddr>,
    user_agent: Option<String>,
}

/// A key an operation works on.
#[derive(Arbitrary, Debug)]
enum KeyRef {
    /// The n-th stored key with its reserved prefix taken off (a flash or temp mark's key).
    Stored(u8),
    Fixed(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Get(KeyRef),
    GetString(KeyRef),
    GetFlash(KeyRef),
    GetTemp(KeyRef),
    Has(KeyRef),
    Keys,
    All,
    AllFlash,
    AllTemp,
    Len,
    Meta,
    User,
    IdleTtl,
    ExpiresAt,
    Exists,
    Set(KeyRef, u64),
    SetFlash(KeyRef),
    SetTemp(KeyRef, u16),
    Push(KeyRef, u8),
    Remove(KeyRef),
    Clear,
    KeepFlash(KeyRef),
    MarkFlash(KeyRef),
    MarkTemp(KeyRef, Option<u16>),
    RemoveTemp(KeyRef),
    SetIdleTtl(Option<u32>),
    Regenerate(bool),
    Login(String),
    Logout,
    Save,
    Destroy,
    /// Save, then start a new request on the current id.
    Reload,
    LoginSession(String),
    LogoutSession,
    SessionsOf(String),
    SetForUser(String, KeyRef),
    DestroyUser(String),
}

fn stored_key(key: &StoredKey) -> String {
    match key {
        StoredKey::Meta => META.into(),
        StoredKey::Seen => SEEN.into(),
        StoredKey::User => USER.into(),
        StoredKey::Retired => RETIRED.into(),
        StoredKey::Ttl => TTL.into(),
        StoredKey::Flash(k) => format!("{FLASH}{k}"),
        StoredKey::Temp(k) => format!("{TEMP}{k}"),
        StoredKey::Reserved(k) => format!("__s.{k}"),
        StoredKey::Plain(k) => k.clone(),
    }
}

fn stored_value(value: &StoredValue) -> Value {
    let encode = |named: bool, v: &dyn erased::Encode| {
        if named { v.named() } else { v.positional() }
    };
    match value {
        StoredValue::Raw(bytes) => Value::from_bytes(bytes.clone()),
        StoredValue::Meta(m, named) => encode(*named, &m.stored()),
        StoredValue::Seen(s, named) => encode(*named, &s.stored()),
        StoredValue::Str(s) => Value::encode(s).expect("encodes"),
        StoredValue::U64(n) => Value::encode(n).expect("encodes"),
        StoredValue::I64(n) => Value::encode(n).expect("encodes"),
        StoredValue::Bool(b) => Value::encode(b).expect("encodes"),
        StoredValue::Strings(v) => Value::encode(v).expect("encodes"),
    }
}

/// The two encodings of a reserved value, behind one object-safe trait.
mod erased {
    use session_core::Value;
    use session_core::fuzzing::encode_reserved;

    pub trait Encode {
        fn positional(&self) -> Value;
        fn named(&self) -> Value;
    }

    impl<T: serde::Serialize> Encode for T {
        fn positional(&self) -> Value {
            encode_reserved(self).expect("encodes")
        }
        fn named(&self) -> Value {
            Value::encode(self).expect("encodes")
        }
    }
}

fn stored_data(entries: &[(StoredKey, StoredValue)]) -> Data {
    entries
        .iter()
        .map(|(k, v)| (stored_key(k), stored_value(v)))
        .collect()
}

/// `Reserved::read` against the keys decoded one by one; returns whether every reserved value
/// decodes (`__s.meta` and `__s.seen` are decoded when first needed, so a session whose only
/// corrupt value is one of them reads, and the error comes from the call that needs it).
fn decode(data: &Data) -> bool {
    let read = Reserved::read(data, BACKEND);
    // `Some(None)`: present, does not decode
    let user = data.get(USER).map(|v| v.decode::<String>().ok());
    let retired = data.get(RETIRED).map(|v| v.decode::<u64>().ok());
    let ttl = data.get(TTL).map(|v| v.decode::<u64>().ok());
    let failed = user == Some(None) || retired == Some(None) || ttl == Some(None);
    let max = check::ttl_millis(check::MAX_TTL).expect("the maximum is valid");
    let (user, retired) = (user.flatten(), retired.flatten());
    let ttl = ttl.flatten().filter(|&t| t > 0).map(|t| t.min(max));
    let meta = data.get(META).map(|v| v.decode::<StoredMeta>().ok());
    let seen = data.get(SEEN).map(|v| v.decode::<StoredSeen>().ok());
    let lazy_ok = !matches!(meta, Some(None)) && !matches!(seen, Some(None));
    match &read {
        Ok(r) => {
            assert!(
                !failed,
                "a reserved value that does not decode was accepted"
            );
            assert_eq!(r.user, user);
            assert_eq!(r.retired, retired);
            assert_eq!(r.ttl, ttl);
            assert_eq!(r.has_meta(), meta.is_some());
            let marks = data
                .keys()
                .any(|k| k.starts_with(FLASH) || k.starts_with(TEMP));
            assert_eq!(r.marks, marks);
            for _ in 0..2 {
                lazy(r.meta(), &meta, META);
                lazy(r.seen(), &seen, SEEN);
            }
            if lazy_ok {
                public_view(r);
            } else if meta.is_none() {
                // no metadata, no view: "last seen" is not looked at
                assert_eq!(r.public().expect("no metadata to decode"), None);
            } else {
                corrupt(r.public().map(drop), "__s.");
            }
        }
        Err(Error::Corrupt { backend, reason }) => {
            assert_eq!(*backend, BACKEND);
            assert!(failed, "read failed where every value decodes: {reason}");
            assert!(reason.contains("__s."), "{reason}");
        }
        Err(other) => panic!("not a Corrupt error: {other:?}"),
    }
    !failed && lazy_ok
}

/// A lazily decoded reserved value against its value decoded directly (`Some(None)`: present
/// but not decoding).
fn lazy<T: PartialEq + std::fmt::Debug>(
    got: session_core::Result<Option<&T>>,
    expect: &Option<Option<T>>,
    key: &str,
) {
    match expect {
        Some(None) => corrupt(got.map(drop), key),
        Some(Some(v)) => assert_eq!(got.expect("decodes"), Some(v)),
        None => assert_eq!(got.expect("absent"), None),
    }
}

fn corrupt(got: session_core::Result<()>, key: &str) {
    match got {
        Err(Error::Corrupt { backend, reason }) => {
            assert_eq!(backend, BACKEND);
            assert!(reason.contains(key), "{reason}");
        }
        other => panic!("{key} does not decode, yet {other:?}"),
    }
}

fn public_view(r: &Reserved) {
    let p = r.public().expect("every value decodes");
    let m = r.meta().expect("decodes");
    let Some(p) = p else {
        assert!(m.is_none());
        return;
    };
    let m = m.expect("a public view only with __s.meta");
    let seen = r.seen().expect("decodes");
    assert_eq!(p.created_at, check::from_unix_millis(m.created));
    assert_eq!(p.authenticated_at, m.auth.map(check::from_unix_millis));
    assert_eq!(p.id_issued_at, check::from_unix_millis(m.issued));
    assert_eq!(
        p.last_seen,
        check::from_unix_millis(seen.map_or(m.issued, |s| s.at))
    );
    assert_eq!(p.client, m.client);
    assert_eq!(p.user, r.user);
    assert_eq!(p.last_ip, seen.and_then(|s| s.ip).or(m.client.ip));
}

fn round_trip(parts: &Parts) {
    let encode = |v: &dyn erased::Encode| {
        if parts.named {
            v.named()
        } else {
            v.positional()
        }
    };
    let meta = parts.meta.as_ref().map(MetaParts::stored);
    let seen = parts.seen.as_ref().map(SeenParts::stored);
    let mut data = Data::new();
    if let Some(m) = &meta {
        data.insert(META.into(), encode(m));
    }
    if let Some(s) = &seen {
        data.insert(SEEN.into(), encode(s));
    }
    if let Some(u) = &parts.user {
        data.insert(USER.into(), encode(u));
    }
    if let Some(r) = &parts.retired {
        data.insert(RETIRED.into(), encode(r));
    }
    if let Some(t) = &parts.ttl {
        data.insert(TTL.into(), encode(t));
    }
    if !parts.named {
        // what the session layer writes is the compact form: a struct is an array
        if let Some(m) = &meta {
            assert_eq!(encode_reserved(m).expect("encodes").as_bytes()[0], 0x94);
        }
    }
    let read = Reserved::read(&data, BACKEND).expect("encoded reserved values read back");
    let max = check::ttl_millis(check::MAX_TTL).expect("the maximum is valid");
    assert_eq!(read.meta().expect("decodes"), meta.as_ref());
    assert_eq!(read.seen().expect("decodes"), seen.as_ref());
    assert_eq!(read.user, parts.user);
    assert_eq!(read.retired, parts.retired);
    assert_eq!(read.ttl, parts.ttl.filter(|&t| t > 0).map(|t| t.min(max)));
    assert!(!read.marks);
    public_view(&read);
}

/// Config variants: fingerprint checks, lifetimes, rotation on every load, no owner index.
/// Short TTLs: the store of each variant is shared by every run, and what a run leaves behind
/// expires within seconds.
fn config(choice: u8) -> Config {
    let on = |bit: u8| choice & (1 << bit) != 0;
    Config {
        idle_ttl: Duration::from_secs(3),
        regenerate_grace: Duration::from_secs(1),
        owner_index_ttl: Duration::from_secs(3),
        match_ip: on(0),
        match_user_agent: on(1),
        absolute_lifetime: on(2).then(|| Duration::from_secs(3600)),
        rotate_every: on(3).then(|| Duration::from_millis(1)),
        rotate_destroy_old: on(4),
        track_last_seen: !on(5),
        owner_index: !on(6),
        touch_threshold: if on(7) { 1.0 } else { 0.5 },
        ..Config::default()
    }
}

/// The manager of a config variant, on a memory store of its own, made once.
fn manager(choice: u8) -> Manager {
    type Managers = std::sync::Mutex<Vec<Option<Manager>>>;
    static MANAGERS: std::sync::OnceLock<Managers> = std::sync::OnceLock::new();
    let managers = MANAGERS.get_or_init(|| std::sync::Mutex::new(vec![None; 256]));
    let mut managers = managers.lock().expect("not poisoned");
    managers[usize::from(choice)]
        .get_or_insert_with(|| {
            let store: Arc<dyn Storage> = Arc::new(session_memory::MemoryStore::new());
            Manager::new(store, config(choice)).expect("a valid config")
        })
        .clone()
}

/// A user name of this run only (the stores are shared: another run's sessions must not show
/// in this one's owner index); an empty name stays empty (invalid).
fn user_of_run(run: u64, user: &str) -> String {
    if user.is_empty() {
        String::new()
    } else {
        format!("{run}.{user}")
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

/// Whether an error is one the input can cause. `Corrupt` only when a stored reserved value
/// does not decode.
fn allowed(e: &Error, corrupt_ok: bool) -> bool {
    match e {
        Error::Corrupt { .. } => corrupt_ok,
        Error::Decode(_) | Error::InvalidInput(_) => true,
        _ => false,
    }
}

fn lifecycle(input: &Input, stored: Data, reads: bool) {
    let stored_keys: Vec<String> = input
        .stored
        .iter()
        .map(|(k, _)| match k {
            StoredKey::Flash(k)
            | StoredKey::Temp(k)
            | StoredKey::Reserved(k)
            | StoredKey::Plain(k) => k.clone(),
            other => stored_key(other),
        })
        .collect();
    let key = |r: &KeyRef| -> String {
        match r {
            KeyRef::Stored(n) if !stored_keys.is_empty() => {
                stored_keys[usize::from(*n) % stored_keys.len()].clone()
            }
            KeyRef::Stored(_) => "k".into(),
            KeyRef::Fixed(n) => format!("k{}", n % 4),
            KeyRef::Any(s) => s.clone(),
        }
    };
    let stored: Data = stored
        .into_iter()
        .filter(|(k, _)| check::key(k).is_ok())
        .collect();
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let user = |u: &str| user_of_run(run, u);
    let client = ClientInfo::new(input.client.ip, input.client.user_agent.as_deref());
    runtime().block_on(async {
        let manager = manager(input.config);
        let store = manager.store().clone();
        let id = SessionId::generate().expect("os rng");
        store
            .set_map(&id, stored, Duration::from_secs(3))
            .await
            .expect("the memory store takes checked keys");
        let ok = |what: &str, r: session_core::Result<()>| {
            if let Err(e) = r {
                assert!(allowed(&e, !reads), "{what}: {e:?}");
            }
        };
        let mut session = manager.load_with(IncomingId::Valid(id.clone()), client.clone());
        for op in &input.ops {
            let s = &session;
            let r: session_core::Result<()> = match op {
                Op::Get(k) => s.get_value(&key(k)).await.map(drop),
                Op::GetString(k) => s.get::<String>(&key(k)).await.map(drop),
                Op::GetFlash(k) => s.get_flash::<String>(&key(k)).await.map(drop),
                Op::GetTemp(k) => s.get_temp::<u64>(&key(k)).await.map(drop),
                Op::Has(k) => s.has(&key(k)).await.map(drop),
                Op::Keys => s.keys().await.map(|keys| {
                    assert!(keys.iter().all(|k| !k.starts_with("__s.")), "{keys:?}");
                }),
                Op::All => s.all().await.map(drop),
                Op::AllFlash => s.all_flash().await.map(drop),
                Op::AllTemp => s.all_temp().await.map(drop),
                Op::Len => s.len().await.map(drop),
                Op::Meta => s.meta().await.map(drop),
                Op::User => s.user().await.map(drop),
                Op::IdleTtl => s.idle_ttl().await.map(drop),
                Op::ExpiresAt => s.expires_at().await.map(drop),
                Op::Exists => s.exists().await.map(drop),
                Op::Set(k, v) => s.set(&key(k), v).await,
                Op::SetFlash(k) => s.set_flash(&key(k), "flash").await,
                Op::SetTemp(k, ms) => {
                    let ttl = Duration::from_millis(u64::from(*ms) + 1);
                    s.set_temp(&key(k), &1u8, Some(ttl)).await
                }
                Op::Push(k, v) => s.push(&key(k), v).await.map(drop),
                Op::Remove(k) => s.remove(&key(k)).await,
                Op::Clear => s.clear().await,
                Op::KeepFlash(k) => s.keep_flash(&key(k)).await.map(drop),
                Op::MarkFlash(k) => s.mark_as_flash(&key(k)).await.map(drop),
                Op::MarkTemp(k, ms) => {
                    let ttl = ms.map(|ms| Duration::from_millis(u64::from(ms) + 1));
                    s.mark_as_temp(&key(k), ttl).await.map(drop)
                }
                Op::RemoveTemp(k) => s.remove_temp(&key(k)).await.map(drop),
                Op::SetIdleTtl(ms) => {
                    let ttl = ms.map(|ms| Duration::from_millis(u64::from(ms) + 1));
                    s.set_idle_ttl(ttl).await
                }
                Op::Regenerate(destroy) => s.regenerate(*destroy).await,
                Op::Login(u) => s.login(&user(u)).await,
                Op::Logout => s.logout().await,
                Op::Save => s.save().await.map(drop),
                Op::Destroy => s.destroy().await,
                Op::Reload => match s.save().await {
                    Ok(_) => {
                        let next = s.id().await.unwrap_or_else(|| id.clone());
                        session = manager.load_with(IncomingId::Valid(next), client.clone());
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Op::LoginSession(u) => manager.login_session(&id, &user(u)).await.map(drop),
                Op::LogoutSession => manager.logout_session(&id).await.map(drop),
                Op::SessionsOf(u) => manager.sessions_of(&user(u)).await.map(drop),
                Op::SetForUser(u, k) => manager
                    .set_for_user(&user(u), &key(k), &7u8)
                    .await
                    .map(drop),
                Op::DestroyUser(u) => manager.destroy_user(&user(u)).await.map(drop),
            };
            ok(&format!("{op:?}"), r);
        }
        ok("the last save", session.save().await.map(drop));
    });
}
