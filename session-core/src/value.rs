//! Stored values: MessagePack bytes that drivers keep opaque.

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// All values of one session, by key.
pub type Data = HashMap<String, Value>;

/// One stored value: the MessagePack encoding (via `rmp-serde`, struct fields by name) of a typed
/// value.
///
/// Drivers store and return the bytes untouched; only the session layer decodes them, and only
/// when the caller asks for a key, into the type the caller names. Cloning is cheap (the bytes are
/// reference counted), so a driver can hand out values without copying them.
///
/// ```
/// use session_core::Value;
///
/// let v = Value::encode(&vec!["admin", "editor"])?;
/// let roles: Vec<String> = v.decode()?;
/// assert_eq!(roles, ["admin", "editor"]);
/// assert!(v.decode::<u64>().is_err());
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Value(Bytes);

impl Value {
    /// Encodes `value` as MessagePack.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        rmp_serde::to_vec_named(value)
            .map(|v| Value(Bytes::from(v)))
            .map_err(Error::Encode)
    }

    /// Decodes the bytes into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        rmp_serde::from_slice(&self.0).map_err(Error::Decode)
    }

    /// Wraps bytes a driver read back from its backend.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        Value(bytes.into())
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The encoded bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Size of the encoding in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the encoding is empty (never true for a value made by [`Value::encode`]).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({} bytes)", self.0.len())
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value(b)
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value(Bytes::from(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Item {
        sku: String,
        qty: u32,
    }

    #[test]
    fn round_trips_structs_by_field_name() {
        let item = Item {
            sku: "A-1".into(),
            qty: 3,
        };
        let v = Value::encode(&item).expect("encode");
        assert_eq!(v.decode::<Item>().expect("decode"), item);
        assert!(matches!(v.decode::<Vec<u8>>(), Err(Error::Decode(_))));
    }

    #[test]
    fn foreign_bytes_are_a_decode_error() {
        let v = Value::from_bytes(vec![0xc1]);
        assert!(matches!(v.decode::<String>(), Err(Error::Decode(_))));
    }
}
