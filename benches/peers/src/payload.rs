//! The session every benchmark stores: five keys, about 1 KB in all. The values are those of
//! `session-benches/src/payload.rs` (copied: that crate is in the main workspace, this one is
//! not), so the peer and our session layer store the same data.

use serde::{Deserialize, Serialize};

/// One line of the `cart` key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CartItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Product title.
    pub title: String,
    /// Quantity.
    pub qty: u32,
    /// Unit price in cents.
    pub price_cents: u64,
}

/// The keys of a benchmark session, in order: `user_id` (u64), `name` (string), `roles` (three
/// strings), `cart` (ten [`CartItem`]s), `csrf` (32 characters).
pub const KEYS: [&str; 5] = ["user_id", "name", "roles", "cart", "csrf"];

/// The counter key the write phase increments.
pub const COUNTER: &str = "counter";

/// The typed values of session number `n` (deterministic, so runs are comparable).
pub fn values(n: u64) -> (u64, String, Vec<String>, Vec<CartItem>, String) {
    let name = format!("Bench User Number {n:08}");
    let roles = vec!["member".to_string(), "editor".into(), "billing".into()];
    let cart = (0..10u64)
        .map(|i| CartItem {
            sku: format!("SKU-{:06}-{i:02}", n % 1_000_000),
            title: format!("Product title number {i:02} in blue, size M"),
            qty: (i as u32 % 3) + 1,
            price_cents: 199 + i * 100,
        })
        .collect();
    let csrf = format!(
        "{:032x}",
        (n as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced)
    );
    (n, name, roles, cart, csrf)
}

/// The size `loadgen` prints as `payload_bytes`: each key plus its value MessagePack-encoded
/// (named fields), summed.
pub fn size(n: u64) -> Result<usize, rmp_serde::encode::Error> {
    let (user_id, name, roles, cart, csrf) = values(n);
    Ok(KEYS.iter().map(|k| k.len()).sum::<usize>()
        + rmp_serde::to_vec_named(&user_id)?.len()
        + rmp_serde::to_vec_named(&name)?.len()
        + rmp_serde::to_vec_named(&roles)?.len()
        + rmp_serde::to_vec_named(&cart)?.len()
        + rmp_serde::to_vec_named(&csrf)?.len())
}

/// The size of session `n` as tower-sessions' Redis and SQLite stores write it: its `Record`
/// (id, the five keys as `serde_json::Value`s, expiry) encoded with `rmp_serde::to_vec`.
pub fn record_size(n: u64) -> crate::Result<usize> {
    let (user_id, name, roles, cart, csrf) = values(n);
    let mut data = std::collections::HashMap::new();
    data.insert(KEYS[0].to_string(), serde_json::to_value(user_id)?);
    data.insert(KEYS[1].to_string(), serde_json::to_value(name)?);
    data.insert(KEYS[2].to_string(), serde_json::to_value(roles)?);
    data.insert(KEYS[3].to_string(), serde_json::to_value(cart)?);
    data.insert(KEYS[4].to_string(), serde_json::to_value(csrf)?);
    let record = tower_sessions::session::Record {
        id: tower_sessions::session::Id::default(),
        data,
        expiry_date: time::OffsetDateTime::now_utc(),
    };
    Ok(rmp_serde::to_vec(&record)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_one_kilobyte() {
        let size = size(42).expect("encode");
        assert!((800..=1300).contains(&size), "payload is {size} bytes");
    }
}
