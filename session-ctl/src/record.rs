//! One stored session as sessionctl reads it: the values, decoded from MessagePack to JSON; the
//! session layer's reserved keys (`__s.*`), decoded into its metadata; the deadline.
//!
//! The reserved keys are session-core's (`reserved.rs`); their encodings are mirrored here, read
//! only, in either of the forms session-core reads (positional or by name). A reserved key that
//! does not decode is shown as undecodable, never a reason to fail the whole listing.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use session_core::{ClientInfo, Data, Loaded, SessionId, Value};

use crate::time;

/// Prefix of the session layer's own keys.
pub const RESERVED_PREFIX: &str = "__s.";
/// Creation metadata: created at, logged in at, id issued at, creating client.
pub const META: &str = "__s.meta";
/// Last seen time and IP.
pub const SEEN: &str = "__s.seen";
/// The owner after a login.
pub const USER: &str = "__s.user";
/// The session's own idle TTL in ms.
pub const TTL: &str = "__s.ttl";
/// On an old id after a regeneration: the end of its grace period (unix ms).
pub const RETIRED: &str = "__s.retired";
/// Flash marks: `__s.f.<key>`.
pub const FLASH: &str = "__s.f.";
/// Temp marks: `__s.t.<key>` holds the unix-ms deadline of temp value `<key>`.
pub const TEMP: &str = "__s.t.";

#[derive(Deserialize)]
struct StoredMeta {
    created: u64,
    auth: Option<u64>,
    issued: u64,
    client: ClientInfo,
}

#[derive(Deserialize)]
struct StoredSeen {
    at: u64,
    ip: Option<IpAddr>,
}

fn decode<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    rmp_decode(v.as_bytes())
}

fn rmp_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    rmp_serde::from_slice(bytes).ok()
}

/// A live session read with [`Storage::load`](session_core::Storage::load) (which never
/// changes its expiry).
#[derive(Clone, Debug)]
pub struct Record {
    /// The session id.
    pub id: SessionId,
    /// Every stored key, the reserved ones included.
    pub data: Arc<Data>,
    /// The deadline in unix milliseconds, when the driver reports it.
    pub deadline_ms: Option<u64>,
}

impl Record {
    /// The record of a loaded session.
    pub fn new(id: SessionId, loaded: Loaded) -> Self {
        Record {
            id,
            data: Arc::new(loaded.data.into_data()),
            deadline_ms: loaded.expires_at.map(time::unix_ms),
        }
    }

    /// The owner the session layer recorded at login (`__s.user`), if any.
    pub fn owner(&self) -> Option<String> {
        self.data.get(USER).and_then(decode::<String>)
    }

    fn meta(&self) -> Option<StoredMeta> {
        self.data.get(META).and_then(decode)
    }

    fn seen(&self) -> Option<StoredSeen> {
        self.data.get(SEEN).and_then(decode)
    }

    /// When the session was created (unix ms), if it has the session layer's metadata.
    pub fn created_ms(&self) -> Option<u64> {
        self.meta().map(|m| m.created)
    }

    /// When the session was last seen (unix ms): the last write or touch, else the id's issue.
    pub fn last_seen_ms(&self) -> Option<u64> {
        self.seen()
            .map(|s| s.at)
            .or_else(|| self.meta().map(|m| m.issued))
    }

    /// Approximate bytes the session takes: id, keys and values (not the backend's overhead).
    pub fn bytes(&self) -> usize {
        self.id.as_str().len()
            + self
                .data
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// Milliseconds left at `now_ms`, when the deadline is known.
    pub fn left_ms(&self, now_ms: u64) -> Option<u64> {
        self.deadline_ms.map(|d| d.saturating_sub(now_ms))
    }

    /// The session layer's metadata as JSON (`null` fields where absent).
    pub fn meta_json(&self) -> Json {
        let at = |ms: Option<u64>| ms.map_or(Json::Null, |ms| json!(time::rfc3339(ms)));
        let meta = self.meta();
        let seen = self.seen();
        let own_ttl: Option<u64> = self.data.get(TTL).and_then(decode);
        let retired: Option<u64> = self.data.get(RETIRED).and_then(decode);
        let mut temp = Map::new();
        let mut flash = Vec::new();
        for (k, v) in self.data.iter() {
            if let Some(key) = k.strip_prefix(FLASH) {
                flash.push(json!(key));
            } else if let Some(key) = k.strip_prefix(TEMP) {
                temp.insert(key.to_owned(), at(decode(v)));
            }
        }
        let undecodable: Vec<&String> = [META, SEEN, USER, TTL, RETIRED]
            .iter()
            .filter_map(|k| self.data.get_key_value(*k))
            .filter(|(k, v)| match k.as_str() {
                META => decode::<StoredMeta>(v).is_none(),
                SEEN => decode::<StoredSeen>(v).is_none(),
                USER => decode::<String>(v).is_none(),
                _ => decode::<u64>(v).is_none(),
            })
            .map(|(k, _)| k)
            .collect();
        let mut out = json!({
            "owner": self.owner(),
            "created": at(meta.as_ref().map(|m| m.created)),
            "logged_in": at(meta.as_ref().and_then(|m| m.auth)),
            "id_issued": at(meta.as_ref().map(|m| m.issued)),
            "last_seen": at(self.last_seen_ms()),
            "last_ip": seen.as_ref().and_then(|s| s.ip).or(meta.as_ref().and_then(|m| m.client.ip)),
            "client_ip": meta.as_ref().and_then(|m| m.client.ip),
            "user_agent": meta.as_ref().and_then(|m| m.client.user_agent.clone()),
            "own_idle_ttl_ms": own_ttl,
            "retired_until": at(retired),
            "flash": flash,
            "temp": temp,
        });
        if !undecodable.is_empty()
            && let Some(o) = out.as_object_mut()
        {
            o.insert("undecodable".into(), json!(undecodable));
        }
        out
    }

    /// The user's values (reserved keys left out), each decoded from MessagePack to JSON.
    pub fn values_json(&self) -> Map<String, Json> {
        self.data
            .iter()
            .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
            .map(|(k, v)| (k.clone(), msgpack_to_json(v.as_bytes())))
            .collect()
    }
}

/// A MessagePack value as JSON. What JSON lacks is tagged: bytes as `{"$bytes": BASE64}`, an
/// extension as `{"$ext": TYPE, "data": BASE64}`, a map key that is not a string by its JSON
/// text; bytes that are not one MessagePack value as `{"$undecodable": BASE64}`.
pub fn msgpack_to_json(bytes: &[u8]) -> Json {
    // rmpv reads the never-used marker 0xc1 as nil; as the whole value it is not MessagePack
    if bytes.first() == Some(&0xc1) {
        return json!({ "$undecodable": B64.encode(bytes) });
    }
    let mut rest = bytes;
    match rmpv::decode::read_value(&mut rest) {
        Ok(v) if rest.is_empty() => to_json(v),
        _ => json!({ "$undecodable": B64.encode(bytes) }),
    }
}

fn to_json(v: rmpv::Value) -> Json {
    use rmpv::Value as M;
    match v {
        M::Nil => Json::Null,
        M::Boolean(b) => json!(b),
        M::Integer(i) => i
            .as_u64()
            .map(Json::from)
            .or_else(|| i.as_i64().map(Json::from))
            .unwrap_or(Json::Null),
        M::F32(f) => float(f64::from(f)),
        M::F64(f) => float(f),
        M::String(s) => match s.into_str() {
            Some(s) => json!(s),
            None => json!({ "$invalid_utf8": true }),
        },
        M::Binary(b) => json!({ "$bytes": B64.encode(b) }),
        M::Array(a) => Json::Array(a.into_iter().map(to_json).collect()),
        M::Map(m) => Json::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        M::String(s) if s.is_str() => s.into_str().unwrap_or_default(),
                        other => to_json(other).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        M::Ext(t, data) => json!({ "$ext": t, "data": B64.encode(data) }),
    }
}

fn float(f: f64) -> Json {
    serde_json::Number::from_f64(f).map_or_else(|| json!(f.to_string()), Json::Number)
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Bytes as standard base64.
pub fn base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Standard base64 back to bytes.
pub fn from_base64(text: &str) -> Option<Vec<u8>> {
    B64.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn values_become_json() {
        let mut m = BTreeMap::new();
        m.insert("a", vec![1u8, 2]);
        let v = Value::encode(&(1u32, "two", -3i64, 1.5f64, m, None::<u8>)).expect("encode");
        assert_eq!(
            msgpack_to_json(v.as_bytes()),
            json!([1, "two", -3, 1.5, {"a": [1, 2]}, null])
        );
        let mut bin = Vec::new();
        rmpv::encode::write_value(&mut bin, &rmpv::Value::Binary(vec![0, 1])).expect("encode");
        assert_eq!(msgpack_to_json(&bin), json!({"$bytes": "AAE="}));
        assert_eq!(
            msgpack_to_json(&[0xc1]),
            json!({"$undecodable": "wQ=="}),
            "0xc1 is never used"
        );
        assert_eq!(
            msgpack_to_json(&[0x01, 0x02]),
            json!({"$undecodable": "AQI="}),
            "two values"
        );
    }

    #[test]
    fn reserved_keys_decode_in_both_forms() {
        #[derive(serde::Serialize)]
        struct Meta {
            created: u64,
            auth: Option<u64>,
            issued: u64,
            client: ClientInfo,
        }
        let meta = Meta {
            created: 1_000,
            auth: Some(2_000),
            issued: 2_000,
            client: ClientInfo::new("10.0.0.1".parse().ok(), Some("curl")),
        };
        for bytes in [
            rmp_serde::to_vec(&meta).expect("positional"),
            rmp_serde::to_vec_named(&meta).expect("named"),
        ] {
            let mut data = Data::new();
            data.insert(META.into(), Value::from_bytes(bytes));
            data.insert(USER.into(), Value::encode("ada").expect("encode"));
            data.insert("cart".into(), Value::encode(&["apple"]).expect("encode"));
            let r = Record {
                id: SessionId::generate().expect("id"),
                data: Arc::new(data),
                deadline_ms: Some(5_000),
            };
            assert_eq!(r.owner().as_deref(), Some("ada"));
            assert_eq!(r.created_ms(), Some(1_000));
            assert_eq!(r.last_seen_ms(), Some(2_000));
            let m = r.meta_json();
            assert_eq!(m["user_agent"], json!("curl"));
            assert_eq!(m["client_ip"], json!("10.0.0.1"));
            assert_eq!(m["logged_in"], json!("1970-01-01T00:00:02.000Z"));
            assert_eq!(r.values_json()["cart"], json!(["apple"]));
            assert!(!r.values_json().contains_key(USER));
        }
    }
}
