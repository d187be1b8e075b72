//! [`Key`]: the secret that signs or encrypts the session id on its way to the client.

use session_core::{Error, Result};

/// A 512-bit key for the session cookie (or header): 256 bits for HMAC-SHA256 signing and 256
/// bits for AES-256-GCM encryption (the halves of the `cookie` crate's
/// [`Key`](cookie::Key), which this wraps).
///
/// Make one with [`Key::try_from_secret`] from a secret of at least
/// [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN) random bytes (the usual way: the secret lives in
/// your secret store or environment), with [`Key::try_from`] from 64 bytes of raw key
/// material, or with [`Key::generate`] (cookies then die with the process). None of them
/// panics on input:
///
/// ```
/// use session_http::Key;
///
/// let key = Key::try_from_secret(b"a secret of at least thirty-two bytes!!")?;
/// let err = Key::try_from_secret(b"too short").unwrap_err();
/// assert!(err.to_string().contains("at least 32 bytes"), "{err}");
/// let raw = Key::try_from(&[7u8; 64][..])?;
/// assert!(Key::try_from(&[7u8; 63][..]).is_err());
/// # let _ = (key, raw);
/// # Ok::<(), session_core::Error>(())
/// ```
///
/// `Debug` never shows the key material.
#[derive(Clone)]
pub struct Key(cookie::Key);

impl Key {
    /// The shortest secret [`try_from_secret`](Self::try_from_secret) accepts: 32 bytes (256
    /// bits). It should be random (`openssl rand -base64 48`), not a pass phrase.
    pub const MIN_SECRET_LEN: usize = 32;

    /// The length of raw key material for [`Key::try_from`]: 64 bytes.
    pub const KEY_LEN: usize = 64;

    /// Derives a key from `secret` (HKDF-SHA256, as the `cookie` crate's
    /// [`Key::derive_from`](cookie::Key::derive_from)): the same secret gives the same key on
    /// every server and after every restart.
    ///
    /// [`Error::InvalidInput`] when the secret is shorter than
    /// [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN) (32) bytes.
    pub fn try_from_secret(secret: &[u8]) -> Result<Key> {
        if secret.len() < Self::MIN_SECRET_LEN {
            return Err(Error::InvalidInput(format!(
                "a session key secret needs at least {} bytes (256 bits) of random data, got {} \
                 bytes",
                Self::MIN_SECRET_LEN,
                secret.len()
            )));
        }
        Ok(Key(cookie::Key::derive_from(secret)))
    }

    /// Derives a key from `secret`, like [`try_from_secret`](Self::try_from_secret).
    ///
    /// # Panics
    ///
    /// When `secret` is shorter than 32 bytes (the `cookie` crate's behaviour, kept for
    /// compatibility); use [`try_from_secret`](Self::try_from_secret), which returns an error.
    #[deprecated(note = "panics on a secret shorter than 32 bytes: use Key::try_from_secret")]
    pub fn derive_from(secret: &[u8]) -> Key {
        Key(cookie::Key::derive_from(secret))
    }

    /// A fresh random key from the OS generator. Cookies made with it are readable only by this
    /// process: share a secret ([`try_from_secret`](Self::try_from_secret)) between servers and
    /// across restarts instead.
    ///
    /// [`Error::Backend`] (backend `"os-random"`) when the OS generator fails.
    pub fn generate() -> Result<Key> {
        cookie::Key::try_generate()
            .map(Key)
            .ok_or_else(|| Error::backend("os-random", "could not generate a random key"))
    }

    /// The 64 bytes of key material ([`Key::try_from`] takes them back). Keep them secret.
    pub fn master(&self) -> &[u8] {
        self.0.master()
    }

    /// The `cookie` crate's key, for the signed and private jars.
    pub(crate) fn cookie_key(&self) -> &cookie::Key {
        &self.0
    }
}

impl TryFrom<&[u8]> for Key {
    type Error = Error;

    /// The key made of the first 64 bytes of `material` (raw key material, such as
    /// [`Key::master`] gave); [`Error::InvalidInput`] when there are fewer than 64.
    fn try_from(material: &[u8]) -> Result<Key> {
        cookie::Key::try_from(material).map(Key).map_err(|_| {
            Error::InvalidInput(format!(
                "raw session key material must be at least {} bytes, got {} bytes",
                Self::KEY_LEN,
                material.len()
            ))
        })
    }
}

impl From<cookie::Key> for Key {
    fn from(key: cookie::Key) -> Self {
        Key(key)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_an_error_not_a_panic() {
        for len in [0, 1, 16, 31] {
            match Key::try_from_secret(&vec![9u8; len]) {
                Err(Error::InvalidInput(msg)) => {
                    assert!(msg.contains("at least 32 bytes"), "{msg}");
                    assert!(msg.contains(&format!("got {len} bytes")), "{msg}");
                }
                other => panic!("{len} bytes: {other:?}"),
            }
        }
        for len in [0, 32, 63] {
            match Key::try_from(&vec![9u8; len][..]) {
                Err(Error::InvalidInput(msg)) => assert!(msg.contains("64 bytes"), "{msg}"),
                other => panic!("{len} bytes: {other:?}"),
            }
        }
    }

    #[test]
    fn a_secret_derives_the_same_key_every_time() {
        let a = Key::try_from_secret(&[1u8; 32]).expect("32 bytes");
        let b = Key::try_from_secret(&[1u8; 32]).expect("32 bytes");
        let c = Key::try_from_secret(&[2u8; 40]).expect("40 bytes");
        assert_eq!(a.master(), b.master());
        assert_ne!(a.master(), c.master());
        let back = Key::try_from(a.master()).expect("64 bytes");
        assert_eq!(back.master(), a.master());
        let g = Key::generate().expect("os rng");
        assert_ne!(g.master(), Key::generate().expect("os rng").master());
        assert_eq!(format!("{g:?}"), "Key(..)", "no key material in Debug");
    }
}
