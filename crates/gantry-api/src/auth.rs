//! Authentication: who signed a request. The one place a signature is checked, so that IAM's
//! authorization can follow it without touching routing or dispatch.
//!
//! In [`AuthMode::SigV4`] (the default of `gantry server`) a request must carry a SigV4
//! signature (header or presigned query) by a key in the [`KeyStore`], for a date within 15
//! minutes of now, with the session token the key was issued with. In [`AuthMode::Open`] (the
//! default of `gantry up`, as local AWS emulators do) the signature must be well formed but any
//! key is accepted: a known key acts as its principal, any other as the account's root.

use gantry_ports::{KeyStore, Principal};
use gantry_sigv4::{Auth, Request, SigError, SigningKey};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How signatures are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Any well-formed signature is accepted.
    Open,
    /// Only signatures by known keys are accepted.
    SigV4,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(AuthMode::Open),
            "sigv4" => Ok(AuthMode::SigV4),
            _ => Err(format!("'{s}' is not an auth mode (open, sigv4)")),
        }
    }
}

/// Who signed a request, and the region they signed it for (the scope's service is the
/// endpoint's, checked by [`Authenticator::authenticate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Arc<Principal>,
    pub region: String,
}

/// Why a request was refused: the signature's error, or an expired session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Signature(SigError),
    /// Temporary credentials past their expiry.
    ExpiredToken,
}

impl From<SigError> for AuthError {
    fn from(e: SigError) -> Self {
        AuthError::Signature(e)
    }
}

/// The signing keys derived lately, by access key and scope: deriving one costs four HMACs,
/// checking a signature with one costs about two microseconds.
type KeyCache = HashMap<(String, String), SigningKey>;

const KEY_CACHE_ENTRIES: usize = 4096;

pub struct Authenticator {
    mode: AuthMode,
    keys: Arc<dyn KeyStore>,
    account: String,
    /// The account's root, who signs with keys open mode does not know.
    root: Arc<Principal>,
    cache: Mutex<KeyCache>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("mode", &self.mode).field("account", &self.account).finish()
    }
}

impl Authenticator {
    pub fn new(mode: AuthMode, keys: Arc<dyn KeyStore>, account: &str) -> Self {
        Authenticator {
            mode,
            keys,
            account: account.to_string(),
            root: Arc::new(Principal::root(account)),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The same authenticator, finding keys also in `more` (IAM users' keys, STS sessions).
    pub fn with_keys(mut self, more: Vec<Arc<dyn KeyStore>>) -> Self {
        let mut all = vec![self.keys.clone()];
        all.extend(more);
        self.keys = Arc::new(gantry_sts::keys::Chain(all));
        self
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Checks the request's signature, for `service` (its SigV4 name), at `now` (epoch seconds).
    pub fn authenticate(&self, req: &Request<'_>, service: &str, now: i64) -> Result<Caller, AuthError> {
        let auth = gantry_sigv4::parse(req)?;
        auth.check_service(service)?;
        let known = self.keys.lookup(&auth.access_key);
        if self.mode == AuthMode::Open {
            let principal = known.map_or_else(|| self.root.clone(), |c| c.principal.clone());
            return Ok(caller(auth, principal));
        }
        let Some(credential) = known else {
            return Err(SigError::UnknownAccessKey.into());
        };
        // A session token must be the key's own; a long-term key takes none.
        let token_ok = match (&credential.session_token, &auth.security_token) {
            (None, None) => true,
            (Some(want), Some(got)) => {
                gantry_sigv4::constant_time_eq(want.expose().as_bytes(), got.as_bytes())
            }
            _ => false,
        };
        if !token_ok {
            return Err(SigError::UnknownAccessKey.into());
        }
        let key = self.signing_key(&auth, credential.secret.expose());
        gantry_sigv4::verify_with_key(&auth, req, &key, now)?;
        if credential.expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::ExpiredToken);
        }
        Ok(caller(auth, credential.principal.clone()))
    }

    fn signing_key(&self, auth: &Auth<'_>, secret: &str) -> SigningKey {
        let id = (auth.access_key.to_string(), auth.scope());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = cache.get(&id) {
            return k.clone();
        }
        let key = SigningKey::derive(secret, &auth.date, &auth.region, &auth.service);
        if cache.len() >= KEY_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(id, key.clone());
        key
    }
}

fn caller(auth: Auth<'_>, principal: Arc<Principal>) -> Caller {
    Caller { principal, region: auth.region.into_owned() }
}

/// The service named by a request's credential scope (header or presigned query), without
/// checking anything else: the front door routes on it before reading the body.
pub fn scope_service<'a>(authorization: Option<&'a str>, query: &'a str) -> Option<&'a str> {
    let credential = match authorization {
        // Where every SDK puts it: right after the algorithm.
        Some(h) if h.starts_with("AWS4-HMAC-SHA256 Credential=") => {
            let rest = &h["AWS4-HMAC-SHA256 Credential=".len()..];
            &rest[..rest.bytes().position(|b| b == b',' || b == b' ').unwrap_or(rest.len())]
        }
        Some(h) => h.split("Credential=").nth(1)?.split([',', ' ']).next()?,
        None => query.split('&').find_map(|p| p.strip_prefix("X-Amz-Credential="))?,
    };
    // AKID/DATE/REGION/SERVICE/aws4_request, '/' possibly percent-encoded in a query string.
    let parts =
        gantry_sigv4::five_parts(credential, "/").or_else(|| gantry_sigv4::five_parts(credential, "%2F"))?;
    Some(parts[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::Secret;
    use gantry_ports::Credential;

    struct OneKey(Arc<Credential>);
    impl KeyStore for OneKey {
        fn lookup(&self, id: &str) -> Option<Arc<Credential>> {
            (id == self.0.access_key_id).then(|| self.0.clone())
        }
    }

    /// A session's credentials work until their expiry and not after; another token, or none,
    /// never works.
    #[test]
    fn sessions_expire_and_their_tokens_must_match() {
        let at = 1_767_225_600;
        let cred = Credential {
            access_key_id: "ASIAEXAMPLEEXAMPLE00".into(),
            secret: Secret::new("s3cr3t"),
            session_token: Some(Secret::new("token-1")),
            expires_at: Some(at + 900),
            principal: Arc::new(Principal::root("123456789012")),
        };
        let auth = Authenticator::new(AuthMode::SigV4, Arc::new(OneKey(Arc::new(cred))), "123456789012");
        let try_at = |now: i64, token: Option<&str>| {
            let headers: Vec<(&str, &[u8])> = vec![("host", b"localhost")];
            let req = Request { method: "POST", path: "/", query: "", headers: &headers, body: b"{}" };
            let creds = gantry_sigv4::Credentials {
                access_key: "ASIAEXAMPLEEXAMPLE00",
                secret: "s3cr3t",
                session_token: token,
            };
            let added = gantry_sigv4::sign(&req, &creds, "us-east-1", "ecs", now);
            let mut all: Vec<(&str, &[u8])> = headers.clone();
            all.extend(added.iter().map(|(n, v)| (*n, v.as_bytes())));
            let req = Request { headers: &all, ..req };
            auth.authenticate(&req, "ecs", now)
        };
        assert!(try_at(at + 899, Some("token-1")).is_ok());
        assert_eq!(try_at(at + 900, Some("token-1")).unwrap_err(), AuthError::ExpiredToken);
        assert_eq!(
            try_at(at, Some("token-2")).unwrap_err(),
            AuthError::Signature(SigError::UnknownAccessKey)
        );
        assert_eq!(try_at(at, None).unwrap_err(), AuthError::Signature(SigError::UnknownAccessKey));
    }

    #[test]
    fn the_scope_names_the_service() {
        let h = "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-1/sts/aws4_request, SignedHeaders=host, Signature=x";
        assert_eq!(scope_service(Some(h), ""), Some("sts"));
        let q = "Action=GetCallerIdentity&X-Amz-Credential=AKID%2F20240101%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date=x";
        assert_eq!(scope_service(None, q), Some("sts"));
        assert_eq!(scope_service(Some("Basic abc"), ""), None);
        assert_eq!(scope_service(None, "Action=X"), None);
        let five = |c: &str| {
            scope_service(Some(&format!("AWS4-HMAC-SHA256 Credential={c}, SignedHeaders=host")), "")
                .map(str::to_string)
        };
        assert_eq!(five("AKID/20240101/us-east-1/ecs/aws4_request/x"), None);
        assert_eq!(five("AKID/20240101/us-east-1/ecs"), None);
        assert_eq!(five("AKID/20240101/us-east-1//aws4_request").as_deref(), Some(""));
    }
}
