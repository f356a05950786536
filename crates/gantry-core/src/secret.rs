//! Secrets: access key IDs, secret access keys and session tokens. They come from the operating
//! system's CSPRNG through [`SecretGen`], never from the seeded [`crate::IdGen`], whose output is
//! predictable by design. A [`Secret`] never prints its value.

use std::fmt;

/// A source of unpredictable bytes.
pub trait SecretGen: Send + Sync {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);

    /// An AWS-style access key ID: `prefix` (`AKIA` for long-term keys, `ASIA` for sessions)
    /// followed by 16 characters of the RFC 4648 base32 alphabet, as IAM's are.
    fn access_key_id(&self, prefix: &str) -> String {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut raw = [0u8; 16];
        self.fill(&mut raw);
        let mut id = String::with_capacity(prefix.len() + 16);
        id.push_str(prefix);
        id.extend(raw.iter().map(|b| ALPHABET[(b & 31) as usize] as char));
        id
    }

    /// A secret access key: 40 characters of the base64 alphabet (240 bits), as IAM's are.
    fn secret_access_key(&self) -> Secret {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut raw = [0u8; 40];
        self.fill(&mut raw);
        Secret(raw.iter().map(|b| ALPHABET[(b & 63) as usize] as char).collect())
    }
}

/// The operating system's CSPRNG (getrandom(2) on Linux).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsSecrets;

impl SecretGen for OsSecrets {
    fn fill(&self, buf: &mut [u8]) {
        // getrandom(2) does not fail once the kernel's pool is initialized; if it ever does,
        // carrying on with a predictable secret would be worse than stopping.
        if let Err(e) = getrandom::fill(buf) {
            panic!("the operating system's random number generator failed: {e}");
        }
    }
}

/// A secret value. `Debug` and `Display` show `***`, so it cannot reach a log by accident;
/// [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A secret crosses the agent channel as a plain JSON string; only `Debug`/`Display` hide it.
impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_look_like_iam_keys_and_differ() {
        let a = OsSecrets.access_key_id("AKIA");
        let b = OsSecrets.access_key_id("AKIA");
        assert_eq!(a.len(), 20);
        assert!(a.starts_with("AKIA"));
        assert!(a[4..].bytes().all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)), "{a}");
        assert_ne!(a, b);
        let s = OsSecrets.secret_access_key();
        assert_eq!(s.expose().len(), 40);
        assert_ne!(s, OsSecrets.secret_access_key());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }
}
