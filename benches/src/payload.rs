//! The session every benchmark stores: five keys, about 1 KB in all.

use serde::{Deserialize, Serialize};
use session_core::{Data, Value};

use crate::Result;

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

/// The five keys of session `n`, MessagePack-encoded as the session layer stores them.
pub fn encoded(n: u64) -> Result<Vec<(&'static str, Value)>> {
    let (user_id, name, roles, cart, csrf) = values(n);
    Ok(vec![
        (KEYS[0], Value::encode(&user_id)?),
        (KEYS[1], Value::encode(&name)?),
        (KEYS[2], Value::encode(&roles)?),
        (KEYS[3], Value::encode(&cart)?),
        (KEYS[4], Value::encode(&csrf)?),
    ])
}

/// Session `n` as driver [`Data`].
pub fn data(n: u64) -> Result<Data> {
    Ok(encoded(n)?
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect())
}

/// Total encoded size of the five values of session `n`, in bytes.
pub fn size(n: u64) -> Result<usize> {
    Ok(encoded(n)?.iter().map(|(k, v)| k.len() + v.len()).sum())
}

/// Session `n` as the raw baselines keep it: key to MessagePack bytes.
pub fn raw_data(n: u64) -> Result<crate::raw::RawData> {
    Ok(encoded(n)?
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_bytes()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_one_kilobyte_and_decodable() {
        let size = size(42).expect("encode");
        assert!((800..=1300).contains(&size), "payload is {size} bytes");
        let d = data(42).expect("encode");
        assert_eq!(d.len(), 5);
        let cart: Vec<CartItem> = d["cart"].decode().expect("cart");
        assert_eq!(cart.len(), 10);
        let csrf: String = d["csrf"].decode().expect("csrf");
        assert_eq!(csrf.len(), 32);
        assert_eq!(d["user_id"].decode::<u64>().expect("id"), 42);
    }
}
