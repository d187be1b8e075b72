//! The check of the `at_rest_value` fuzz target (and of its regression test): decoding a stored
//! value through [`EncryptionLayer`], the bytes a copy of the backend holds and anyone with
//! write access to it can change.
//!
//! The input (`arbitrary`) picks a plaintext, a session and key to seal it under, which key of a
//! pool of three sealed it (the layer reading holds two of them: one current, one old), and what
//! happens to the stored bytes before they are read back: raw bytes in their place, bits
//! flipped, a truncation, bytes appended, the value moved to another key or another session.
//! Checked, through `get`, `get_map`, `get_session` and `load`:
//!
//! * a value that reaches the reader unchanged, at the place it was sealed for, under a key the
//!   layer holds, reads back as the plaintext;
//! * anything else (changed bytes, another place, a key id the layer does not hold, raw bytes)
//!   is `Error::Corrupt` naming the store, never a panic and never data; whole-session reads
//!   fail the same way.

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use session_at_rest::{EncryptionLayer, ValueKey};
use session_core::{Error, SessionId, Storage, Value};
use session_memory::MemoryStore;

const TTL: Duration = Duration::from_secs(600);
const IDS: [&str; 2] = ["AAAAAAAAAAAAAAAAAAAAAAAA", "zzzzzzzzzzzzzzzzzzzzzzzz"];
const KEYS: [&str; 2] = ["name", "cart"];

#[derive(Debug, Arbitrary)]
enum Change {
    /// The stored value replaced by these bytes.
    Raw(Vec<u8>),
    /// Byte `at` (modulo the length) XORed with `mask`.
    Flip { at: u16, mask: u8 },
    /// The stored value cut to `len` bytes (modulo its length).
    Truncate(u16),
    /// Bytes added at the end.
    Append(Vec<u8>),
    /// The stored bytes moved to the other key of the same session.
    OtherKey,
    /// The stored bytes moved to the same key of the other session.
    OtherSession,
}

#[derive(Debug, Arbitrary)]
struct Input {
    plain: Vec<u8>,
    id: bool,
    key: bool,
    /// Which key of [`keys`] seals (0 and 1 are the reader's, 2 is not).
    sealer: u8,
    changes: Vec<Change>,
}

fn keys() -> &'static [ValueKey; 3] {
    static KEYS: OnceLock<[ValueKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [(1, 0x11), (2, 0x22), (3, 0x33)]
            .map(|(id, byte)| ValueKey::new(id, &[byte; 32]).expect("a 32-byte key is a valid key"))
    })
}

/// The reader: key 1 current, key 2 old (key 3 unknown to it).
fn reader() -> EncryptionLayer {
    let [one, two, _] = keys().clone();
    EncryptionLayer::new(one)
        .with_old_key(two)
        .expect("a second key id")
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    })
}

/// Runs the check on one input.
pub fn check(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    runtime().block_on(run(input));
}

async fn run(input: Input) {
    let memory = MemoryStore::new();
    let sealer_key = keys()[usize::from(input.sealer % 3)].clone();
    let sealer = memory.clone().layer(EncryptionLayer::new(sealer_key));
    let read = memory.clone().layer(reader());
    let ids = IDS.map(|t| SessionId::parse(t).expect("a valid id"));
    let (mut id, mut key) = (usize::from(input.id), usize::from(input.key));
    let plain = Value::from(input.plain.clone());
    sealer
        .set(&ids[id], KEYS[key], plain.clone(), TTL)
        .await
        .expect("a value seals and stores");
    let mut stored = memory
        .get(&ids[id], KEYS[key])
        .await
        .expect("the memory store reads")
        .expect("the sealed value is stored")
        .as_bytes()
        .to_vec();
    assert!(
        input.plain.len() < 8 || !stored.windows(input.plain.len()).any(|w| w == input.plain),
        "the plaintext is visible in the stored value"
    );
    let original = stored.clone();
    let (first_id, first_key) = (id, key);
    for change in input.changes {
        match change {
            Change::Raw(bytes) => stored = bytes,
            Change::Flip { at, mask } => {
                if !stored.is_empty() {
                    let at = usize::from(at) % stored.len();
                    stored[at] ^= mask;
                }
            }
            Change::Truncate(len) => {
                let len = usize::from(len) % (stored.len() + 1);
                stored.truncate(len);
            }
            Change::Append(bytes) => stored.extend_from_slice(&bytes),
            Change::OtherKey => key = 1 - key,
            Change::OtherSession => id = 1 - id,
        }
    }
    memory
        .remove_all(&ids[first_id])
        .await
        .expect("the memory store removes");
    memory
        .set(&ids[id], KEYS[key], Value::from(stored.clone()), TTL)
        .await
        .expect("the memory store stores");
    let readable = input.sealer % 3 != 2;
    let intact = stored == original && (id, key) == (first_id, first_key);
    let (id, key) = (&ids[id], KEYS[key]);
    let got = read.get(id, key).await;
    let map = read.get_map(id).await;
    let session = read.get_session(id, TTL, None).await;
    let loaded = read.load(id).await;
    if readable && intact {
        assert_eq!(got.expect("an intact value reads"), Some(plain.clone()));
        let map = map.expect("an intact session reads");
        assert_eq!(map.get(key), Some(&plain));
        let session = session.expect("an intact session reads");
        assert_eq!(
            session.and_then(|d| d.get(key).cloned()),
            Some(plain.clone())
        );
        let loaded = loaded
            .expect("an intact session loads")
            .expect("a live session");
        assert_eq!(loaded.data.get(key), Some(plain.clone()));
    } else {
        corrupt(&got);
        corrupt(&map);
        corrupt(&session);
        corrupt(&loaded);
    }
}

fn corrupt<T: std::fmt::Debug>(result: &session_core::Result<T>) {
    assert!(
        matches!(
            result,
            Err(Error::Corrupt {
                backend: "memory",
                ..
            })
        ),
        "a changed, misplaced or foreign value must be Error::Corrupt, got {result:?}"
    );
}
