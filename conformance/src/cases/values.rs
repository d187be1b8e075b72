//! Keys and values: size, count, unicode, invalid keys, hostile ids.

use session_core::check::MAX_KEY_LEN;

use super::*;

/// 1 MiB of bytes covering every byte value (so not UTF-8, with NULs), deterministic.
fn mebibyte() -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..1024 * 1024)
        .map(|i| {
            if i % 4096 < 256 {
                (i % 256) as u8
            } else {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            }
        })
        .collect()
}

/// A 1 MiB value of arbitrary bytes (not UTF-8, with NULs) round-trips byte for byte through
/// `set`/`get`, `set_map`/`get_map`, `get_session` and `load`.
pub async fn large_value_round_trips(store: Store) {
    let name = store.name();
    let bytes = mebibyte();
    let value = Value::from_bytes(bytes.clone());
    let id = new_id();
    ok(store.set(&id, "big", value.clone(), LONG).await, "set");
    let got = ok(store.get(&id, "big").await, "get").map(Value::into_bytes);
    assert!(
        got.as_deref() == Some(bytes.as_slice()),
        "[{name}] get of a 1 MiB value returned {} bytes that differ from what set stored",
        got.map_or(0, |b| b.len())
    );
    let id2 = new_id();
    let expected: Data = [
        ("big".to_string(), value.clone()),
        ("small".to_string(), val("s")),
    ]
    .into_iter()
    .collect();
    ok(store.set_map(&id2, expected.clone(), LONG).await, "set_map");
    assert_data(&store, &id2, &expected, "a 1 MiB value next to a small one").await;
    let loaded = ok(store.load(&id2).await, "load").map(|l| l.data.into_data());
    assert!(
        loaded.as_ref() == Some(&expected),
        "[{name}] load of a session with a 1 MiB value returned {:?}",
        loaded.as_ref().map(keys)
    );
}

/// One session with 1,000 keys: `get_size` is 1,000 and `get_map` returns every key with its value.
pub async fn thousand_keys_in_one_session(store: Store) {
    let name = store.name();
    let id = new_id();
    let expected: Data = (0..1000)
        .map(|i| (format!("k{i}"), val(&format!("value {i}"))))
        .collect();
    ok(store.set_map(&id, expected.clone(), LONG).await, "set_map");
    let size = ok(store.get_size(&id).await, "get_size");
    assert_eq!(size, 1000, "[{name}] get_size of a session with 1,000 keys");
    let map = ok(store.get_map(&id).await, "get_map");
    assert!(
        map == expected,
        "[{name}] get_map of 1,000 keys returned {} keys, or wrong values",
        map.len()
    );
    for i in [0, 1, 10, 100, 999] {
        let key = format!("k{i}");
        let got = ok(store.get(&id, &key).await, "get");
        assert!(
            got.as_ref() == expected.get(&key),
            "[{name}] get({key:?}) among 1,000 keys returned {got:?}"
        );
    }
    ok(store.remove(&id, "k500").await, "remove");
    ok(store.set(&id, "k1000", val("x"), LONG).await, "set");
    let size = ok(store.get_size(&id).await, "get_size");
    assert_eq!(
        size, 1000,
        "[{name}] get_size after removing one key and adding another"
    );
}

/// Unicode keys, the empty key, and keys that look like paths, SQL or format strings are ordinary
/// keys: they round-trip and stay distinct.
pub async fn unicode_and_empty_keys_round_trip(store: Store) {
    let long_unicode = "é".repeat(MAX_KEY_LEN / 2); // exactly MAX_KEY_LEN bytes
    let key_list: Vec<String> = [
        "",
        " ",
        "ключ🔑",
        "日本語のキー",
        "emoji 👩‍👩‍👧 family",
        "zero\u{200B}width",
        "tab\tnew\nline",
        "../../etc/passwd",
        "a/b\\c",
        "a:b",
        "{hash}tag",
        "'; DROP TABLE sessions; --",
        "%s%n%x",
        "*",
        "K",
        "k",
    ]
    .iter()
    .map(|k| k.to_string())
    .chain([long_unicode])
    .collect();
    let id = new_id();
    let mut expected = Data::new();
    for (i, key) in key_list.iter().enumerate() {
        expected.insert(key.clone(), val(&format!("v{i}")));
    }
    // Half with set, half with set_map, so both paths see these keys.
    let (by_set, by_map): (Vec<_>, Vec<_>) =
        expected.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, (k, v)) in by_set {
        ok(
            store.set(&id, k, v.clone(), LONG).await,
            &format!("set({k:?})"),
        );
    }
    let map: Data = by_map
        .into_iter()
        .map(|(_, (k, v))| (k.clone(), v.clone()))
        .collect();
    ok(store.set_map(&id, map, LONG).await, "set_map");
    assert_data(&store, &id, &expected, "unicode, empty and odd keys").await;
    ok(store.remove(&id, "").await, "remove of the empty key");
    expected.remove("");
    assert_data(&store, &id, &expected, "after remove(\"\")").await;
}

/// Checks that every method given `bad` as a key is `InvalidInput` and that nothing is written.
async fn bad_key_writes_nothing(store: &Store, bad: &str, what: &str) {
    let fresh = new_id();
    let live = new_id();
    let kept = data(&[("a", "1"), ("b", "2")]);
    ok(store.set_map(&live, kept.clone(), LONG).await, "set_map");
    let mixed: Data = [
        ("a".to_string(), val("changed")),
        ("c".to_string(), val("3")),
        (bad.to_string(), val("bad")),
    ]
    .into_iter()
    .collect();
    for id in [&fresh, &live] {
        invalid_input(
            store.set(id, bad, val("bad"), LONG).await,
            &format!("set with {what}"),
        );
        invalid_input(
            store.set_map(id, mixed.clone(), LONG).await,
            &format!("set_map with valid keys and {what}"),
        );
        invalid_input(
            store.set_session(id, mixed.clone(), LONG).await,
            &format!("set_session with valid keys and {what}"),
        );
        invalid_input(store.get(id, bad).await, &format!("get with {what}"));
        invalid_input(store.remove(id, bad).await, &format!("remove with {what}"));
    }
    assert_missing(
        store,
        &fresh,
        &format!("after writes with {what} on a new id (nothing may be written)"),
    )
    .await;
    assert_data(
        store,
        &live,
        &kept,
        &format!("after writes with {what} on a live session (nothing may change, not even the valid keys)"),
    )
    .await;
}

/// A key with a NUL character is `Error::InvalidInput` for `set`, `set_map`, `set_session`, `get`
/// and `remove`, and nothing is written (not even the valid keys next to it).
pub async fn nul_key_is_invalid_input(store: Store) {
    bad_key_writes_nothing(&store, "bad\0key", "a key containing NUL").await;
}

/// A key over 1 KiB (`check::MAX_KEY_LEN` bytes) is `Error::InvalidInput` and nothing is
/// written; a key of exactly 1 KiB works.
pub async fn oversized_key_is_invalid_input(store: Store) {
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    bad_key_writes_nothing(&store, &too_long, "a key of 1025 bytes").await;
    let id = new_id();
    let longest = "k".repeat(MAX_KEY_LEN);
    ok(
        store.set(&id, &longest, val("v"), LONG).await,
        "set with a key of exactly 1024 bytes",
    );
    let got = ok(store.get(&id, &longest).await, "get");
    assert!(
        got == Some(val("v")),
        "[{}] get of a 1024-byte key returned {got:?}",
        store.name()
    );
}

/// Hostile id text (path traversal, NUL, spaces, too short, too long, non-ASCII, separators used
/// by backends) is rejected by `SessionId::parse`, so it can never reach the store, and the store
/// is still empty afterwards.
pub async fn hostile_ids_never_reach_the_store(store: Store) {
    let name = store.name();
    let hostile = [
        String::new(),
        "short".to_string(),
        "a".repeat(SessionId::MIN_LEN - 1),
        "a".repeat(SessionId::MAX_LEN + 1),
        "../../../../etc/passwd".to_string(),
        "..%2F..%2F..%2Fetc%2Fpasswd".to_string(),
        "aaaaaaaaaaaaaaaa/../../x".to_string(),
        "..\\..\\windows\\system32".to_string(),
        "aaaaaaaaaaaaaaaa\0".to_string(),
        "aaaaaaaa\0aaaaaaaa".to_string(),
        "aaaaaaaa aaaaaaaa".to_string(),
        "aaaaaaaaaaaaaaaa\n".to_string(),
        "aaaaaaaaaaaaaaaa\r\nSet-Cookie: x".to_string(),
        "ääääääääääääääää".to_string(),
        "ａａａａａａａａａａａａａａａａ".to_string(),
        "\u{202E}aaaaaaaaaaaaaaaa".to_string(),
        "aaaaaaaaaaaaaaa.".to_string(),
        "aaaaaaaaaaaaaaaa*".to_string(),
        "aaaaaaaa:aaaaaaaa".to_string(),
        "{hash}aaaaaaaaaaaa".to_string(),
        "aaaa'; DROP TABLE sessions; --".to_string(),
        "aaaaaaaaaaaaaaa%".to_string(),
        "aaaaaaaaaaaaaaaa=".to_string(),
        "aaaaaaaaaaaaaaaa+".to_string(),
    ];
    for text in &hostile {
        match SessionId::parse(text) {
            Err(Error::InvalidId(_)) => {}
            Err(e) => {
                panic!("SessionId::parse({text:?}) returned `{e}`, expected Error::InvalidId")
            }
            Ok(_) => panic!("SessionId::parse accepted the hostile id {text:?}"),
        }
    }
    // Nothing reached the store: a neighbouring valid id is empty, and a scan finds nothing.
    assert_missing(
        &store,
        &fixed_id("aaaaaaaaaaaaaaaa"),
        "a valid id next to hostile ones",
    )
    .await;
    if store.capabilities().scan {
        let found = scan_all(&store, 100, 10_000).await;
        assert!(
            found.is_empty(),
            "[{name}] a fresh store on which only hostile ids were tried scans {} sessions",
            found.len()
        );
    } else {
        unsupported(store.scan(None, 10).await, "scan");
    }
}
