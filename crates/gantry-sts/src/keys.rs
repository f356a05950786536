//! The key ring: every access key the front door accepts signatures from.
//!
//! The ring holds the account's root key, created at first start from the OS's
//! CSPRNG and kept in `DATA_DIR/root-credentials`: an AWS-CLI-style credentials file with a
//! `[default]` profile, mode 0600, which is both how the operator gets the key and where the
//! server finds it again. IAM users' keys and STS sessions are found through their own stores,
//! asked in turn with the ring ([`Chain`]).

use gantry_core::{Secret, SecretGen};
use gantry_ports::{Credential, KeyStore, Principal};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Several key stores asked in turn: the root key, IAM users' keys, STS sessions.
pub struct Chain(pub Vec<Arc<dyn KeyStore>>);

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("stores", &self.0.len()).finish()
    }
}

impl KeyStore for Chain {
    fn lookup(&self, access_key_id: &str) -> Option<Arc<Credential>> {
        self.0.iter().find_map(|k| k.lookup(access_key_id))
    }
}

/// The name of the root credentials file in the data directory.
pub const ROOT_CREDENTIALS: &str = "root-credentials";

/// Access keys by ID.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: RwLock<HashMap<String, Arc<Credential>>>,
}

impl KeyRing {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&self, credential: Credential) {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.insert(credential.access_key_id.clone(), Arc::new(credential));
    }
}

impl KeyStore for KeyRing {
    fn lookup(&self, access_key_id: &str) -> Option<Arc<Credential>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).get(access_key_id).cloned()
    }
}

/// The root key of `account`: read from `dir/root-credentials`, or created there (with a key
/// from `secrets`) when the file does not exist. Returns the credential and the file's path.
pub fn load_or_create_root(
    dir: &Path,
    account: &str,
    secrets: &dyn SecretGen,
) -> std::io::Result<(Credential, PathBuf, bool)> {
    let path = dir.join(ROOT_CREDENTIALS);
    let created = match std::fs::read_to_string(&path) {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = secrets.access_key_id("AKIA");
            let secret = secrets.secret_access_key();
            write_file(&path, &id, &secret, account)?;
            true
        }
        Err(e) => return Err(e),
    };
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the root credentials file is readable by others; chmod 600 it");
    }
    let text = std::fs::read_to_string(&path)?;
    let (id, secret) = parse_file(&text).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} has no [default] profile with aws_access_key_id and aws_secret_access_key",
                path.display()
            ),
        )
    })?;
    let credential = Credential {
        access_key_id: id,
        secret,
        session_token: None,
        expires_at: None,
        principal: Arc::new(Principal::root(account)),
    };
    Ok((credential, path, created))
}

/// Writes the file whole or not at all: a temporary file (mode 0600 from its creation), synced,
/// then renamed over the final name, and the directory synced.
fn write_file(path: &Path, id: &str, secret: &Secret, account: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    write!(
        f,
        "# Gantry's root access key for account {account}: it may do anything. Keep it secret.\n\
         # Use it with: AWS_SHARED_CREDENTIALS_FILE={} aws ...\n\
         [default]\n\
         aws_access_key_id = {id}\n\
         aws_secret_access_key = {}\n",
        path.display(),
        secret.expose()
    )?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// The `[default]` profile's key pair.
fn parse_file(text: &str) -> Option<(String, Secret)> {
    let mut in_default = false;
    let (mut id, mut secret) = (None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_default = section.trim() == "default";
            continue;
        }
        if !in_default {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "aws_access_key_id" => id = Some(v.trim().to_string()),
                "aws_secret_access_key" => secret = Some(Secret::new(v.trim())),
                _ => {}
            }
        }
    }
    Some((id.filter(|s| !s.is_empty())?, secret.filter(|s| !s.expose().is_empty())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::OsSecrets;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gantry-sts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_root_key_is_created_once_private_and_found_again() {
        let dir = tmpdir("root");
        let (a, path, created) = load_or_create_root(&dir, "123456789012", &OsSecrets).unwrap();
        assert!(created);
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(a.access_key_id.starts_with("AKIA"));
        assert_eq!(*a.principal, Principal::root("123456789012"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[default]"));
        assert!(text.contains(&format!("aws_access_key_id = {}", a.access_key_id)));
        let (b, _, created) = load_or_create_root(&dir, "123456789012", &OsSecrets).unwrap();
        assert!(!created);
        assert_eq!(a.access_key_id, b.access_key_id);
        assert_eq!(a.secret, b.secret);
        let ring = KeyRing::new();
        ring.insert(b);
        assert_eq!(ring.lookup(&a.access_key_id).unwrap().secret, a.secret);
        assert!(ring.lookup("AKIAUNKNOWN").is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_without_a_default_profile_is_an_error_naming_it() {
        let dir = tmpdir("bad");
        std::fs::write(dir.join(ROOT_CREDENTIALS), "[other]\naws_access_key_id = A\n").unwrap();
        let e = load_or_create_root(&dir, "123456789012", &OsSecrets).unwrap_err();
        assert!(e.to_string().contains("[default]"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
