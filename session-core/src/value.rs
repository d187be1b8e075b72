//! Stored values: MessagePack bytes that drivers keep opaque.

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The first capacity of an encoding buffer: most small session values (numbers, flags, short
/// strings, "last seen") fit, so encoding one allocates once instead of growing from 8 bytes;
/// a bigger value grows from here as before. Small enough that a store keeping values as they
/// come wastes little.
pub(crate) const ENCODE_CAPACITY: usize = 32;

/// An encoding buffer: starts at [`ENCODE_CAPACITY`], and like `rmp_serde::to_vec` turns a
/// failed allocation into an encoding error rather than an abort.
pub(crate) struct EncodeBuf(pub(crate) Vec<u8>);

impl EncodeBuf {
    pub(crate) fn new() -> Self {
        EncodeBuf(Vec::with_capacity(ENCODE_CAPACITY))
    }
}

impl std::io::Write for EncodeBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0
            .try_reserve(buf.len())
            .map_err(|_| std::io::ErrorKind::OutOfMemory)?;
        self.0.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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
        let mut buf = EncodeBuf::new();
        rmp_serde::encode::write_named(&mut buf, value).map_err(Error::Encode)?;
        Ok(Value(Bytes::from(buf.0)))
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
    fn the_encoding_is_rmp_serde_s() {
        let item = Item {
            sku: "A-1".repeat(100),
            qty: 3,
        };
        let v = Value::encode(&item).expect("encode");
        assert_eq!(
            v.as_bytes(),
            rmp_serde::to_vec_named(&item).expect("encode")
        );
        let n = Value::encode(&7u64).expect("encode");
        assert_eq!(
            n.as_bytes(),
            rmp_serde::to_vec_named(&7u64).expect("encode")
        );
    }

    #[test]
    fn foreign_bytes_are_a_decode_error() {
        let v = Value::from_bytes(vec![0xc1]);
        assert!(matches!(v.decode::<String>(), Err(Error::Decode(_))));
    }
}
