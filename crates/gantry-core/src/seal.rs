//! Encryption at rest: secret values (Secrets Manager's, SSM's SecureString parameters) are
//! sealed with XChaCha20-Poly1305 under a master key kept outside the store, so the store's files
//! hold no plaintext. The associated data binds a sealed value to the record it belongs to (its
//! key in the store), so a sealed value copied into another record does not open.
//!
//! This module only computes: the key comes from the binary (a 0600 file in the data directory,
//! or `GANTRY_MASTER_KEY`), and each nonce from a [`SecretGen`] (the OS CSPRNG in production).

use crate::SecretGen;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fmt;
use std::sync::Arc;

/// The length of a master key in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// Sealed values start with this version tag, so a later format can be told apart.
const TAG: &str = "v1:";

/// The master key and the source of nonces. `Debug` never shows the key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    nonces: Arc<dyn SecretGen>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(***)")
    }
}

/// Why a value did not open: the wrong key, a tampered value, or a value sealed for another
/// record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a sealed value could not be opened (wrong master key, or the value was altered)")]
pub struct OpenError;

/// Why a master key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the master key is not base64")]
    NotBase64,
    #[error("the master key must be {KEY_LEN} bytes, not {0}")]
    Length(usize),
}

impl Sealer {
    pub fn new(key: &[u8; KEY_LEN], nonces: Arc<dyn SecretGen>) -> Self {
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        Sealer { cipher, nonces }
    }

    /// A key from its base64 form (what `GANTRY_MASTER_KEY` and the key file hold).
    pub fn parse_key(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
        let raw = STANDARD.decode(text.trim()).map_err(|_| KeyError::NotBase64)?;
        <[u8; KEY_LEN]>::try_from(raw.as_slice()).map_err(|_| KeyError::Length(raw.len()))
    }

    /// A new key's base64 form, from `secrets`.
    pub fn new_key_text(secrets: &dyn SecretGen) -> String {
        let mut key = [0u8; KEY_LEN];
        secrets.fill(&mut key);
        STANDARD.encode(key)
    }

    /// Seals `plain` for the record `context`: `v1:` and the base64 of nonce and ciphertext.
    pub fn seal(&self, context: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.nonces.fill(&mut nonce);
        let nonce = XNonce::from(nonce);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad: context.as_bytes() })
            .unwrap_or_else(|e| panic!("XChaCha20-Poly1305 refused to seal: {e}"));
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{TAG}{}", STANDARD.encode(out))
    }

    /// Opens what [`Self::seal`] sealed for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let raw = sealed.strip_prefix(TAG).ok_or(OpenError)?;
        let raw = STANDARD.decode(raw).map_err(|_| OpenError)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError)?;
        self.cipher.decrypt(&nonce, Payload { msg: body, aad: context.as_bytes() }).map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OsSecrets;

    fn sealer(k: u8) -> Sealer {
        Sealer::new(&[k; KEY_LEN], Arc::new(OsSecrets))
    }

    #[test]
    fn round_trips_and_hides_the_value() {
        let s = sealer(1);
        let sealed = s.seal("/a/b", b"hunter2-password");
        assert!(!sealed.contains("hunter2"), "{sealed}");
        assert_eq!(s.open("/a/b", &sealed).unwrap(), b"hunter2-password");
        // A fresh nonce each time.
        assert_ne!(sealed, s.seal("/a/b", b"hunter2-password"));
    }

    #[test]
    fn refuses_another_key_another_record_and_tampering() {
        let sealed = sealer(1).seal("/a/b", b"v");
        assert_eq!(sealer(2).open("/a/b", &sealed), Err(OpenError));
        assert_eq!(sealer(1).open("/a/c", &sealed), Err(OpenError));
        let mut bad = sealed.clone().into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(sealer(1).open("/a/b", std::str::from_utf8(&bad).unwrap()), Err(OpenError));
        assert_eq!(sealer(1).open("/a/b", "plain"), Err(OpenError));
    }

    #[test]
    fn keys_parse_from_base64_of_32_bytes() {
        let text = Sealer::new_key_text(&OsSecrets);
        assert!(Sealer::parse_key(&text).is_ok());
        assert_eq!(Sealer::parse_key("!!"), Err(KeyError::NotBase64));
        assert_eq!(Sealer::parse_key("AAAA"), Err(KeyError::Length(3)));
    }
}
