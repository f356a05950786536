//! AWS Identity and Access Management (query protocol, a global service): users, groups, access
//! keys, roles, managed policies with versions, inline policies, instance profiles, tags and
//! SimulatePrincipalPolicy; and, through the ports, the keys the front door verifies
//! ([`gantry_ports::KeyStore`]), the decisions it enforces ([`gantry_ports::Authorizer`]) and the
//! roles STS makes sessions of ([`gantry_ports::Roles`]).
//!
//! Records live under `/ACCOUNT/global/iam/KIND/NAME` (IAM names are unique without regard to
//! case, so `NAME` is lowercased) and access keys under `/_iam/access-key/ID`, their secret
//! sealed ([`gantry_core::Sealer`]) with the key's ID as associated data: the secret is in
//! CreateAccessKey's answer and nowhere else in plaintext. AWS-managed policies are built in
//! ([`managed`]). Policies are parsed and evaluated by `gantry-policy`; this crate knows no HTTP
//! and no other service.

mod authz;
pub mod managed;
mod ops;
#[cfg(test)]
mod tests;

pub use authz::IamAuthorizer;

use gantry_core::{Clock, IdGen, Sealer, Secret, SecretGen, ServiceError};
use gantry_ports::{Credential, KeyStore, Principal, PrincipalKind, RoleInfo, Roles};
use gantry_runtime::records;
use gantry_store::{Store, Txn};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The region in IAM's keys: IAM is global.
pub const GLOBAL: &str = "global";

/// A user, group, role or instance profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Entity {
    pub name: String,
    pub path: String,
    pub id: String,
    pub arn: String,
    pub created: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// Inline policies by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inline: BTreeMap<String, String>,
    /// Attached managed policies' ARNs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached: Vec<String>,
    /// A user's groups (their names as stored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// A user's access key IDs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_keys: Vec<String>,
    /// A role's trust policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session: Option<i64>,
    /// An instance profile's roles (names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// A customer-managed policy and its versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ManagedPolicy {
    pub name: String,
    pub path: String,
    pub id: String,
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created: f64,
    pub updated: f64,
    pub default_version: String,
    pub next_version: u32,
    /// Version ID (`v1`) → (document, created).
    pub versions: BTreeMap<String, (String, f64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
}

/// An access key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AccessKeyRecord {
    pub account: String,
    pub user: String,
    /// The secret, sealed with the key's ID as associated data.
    pub sealed: String,
    pub status: String,
    pub created: f64,
}

/// The kinds of entity, as keys and messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    User,
    Group,
    Role,
    InstanceProfile,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Role => "role",
            Kind::InstanceProfile => "instance-profile",
        }
    }
    /// The noun in IAM's messages.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
            Kind::Role => "role",
            Kind::InstanceProfile => "Instance Profile",
        }
    }
    /// Unique-ID prefixes (AIDA for users, AGPA groups, AROA roles, AIPA instance profiles).
    fn id_prefix(self) -> &'static str {
        match self {
            Kind::User => "AIDA",
            Kind::Group => "AGPA",
            Kind::Role => "AROA",
            Kind::InstanceProfile => "AIPA",
        }
    }
}

pub(crate) fn entity_key(account: &str, kind: Kind, name: &str) -> String {
    format!("/{account}/{GLOBAL}/iam/{}/{}", kind.dir(), name.to_ascii_lowercase())
}
pub(crate) fn entity_prefix(account: &str, kind: Kind) -> String {
    format!("/{account}/{GLOBAL}/iam/{}/", kind.dir())
}
pub(crate) fn policy_key(account: &str, name: &str) -> String {
    format!("/{account}/{GLOBAL}/iam/policy/{}", name.to_ascii_lowercase())
}
pub(crate) fn policy_prefix(account: &str) -> String {
    format!("/{account}/{GLOBAL}/iam/policy/")
}
pub(crate) fn access_key_key(id: &str) -> String {
    format!("/_iam/access-key/{id}")
}

/// An opened access key (or its absence) and the generation it was read at.
type CachedKey = (u64, Option<Arc<Credential>>);

/// The IAM service.
pub struct Iam {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdGen>,
    pub(crate) secrets: Arc<dyn SecretGen>,
    pub(crate) sealer: Sealer,
    /// Bumped after every IAM write this process commits: the authorizer's and the key
    /// cache's entries of an older generation are stale. (One server per store, so every
    /// write of IAM's records goes through here.)
    pub(crate) generation: AtomicU64,
    /// Access keys opened lately: ID → (generation, credential or none).
    keys: RwLock<HashMap<String, CachedKey>>,
}

impl std::fmt::Debug for Iam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iam").finish_non_exhaustive()
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::receiver("ServiceFailure", e.to_string()).with_status(500)
}

impl Iam {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        secrets: Arc<dyn SecretGen>,
        sealer: Sealer,
    ) -> Self {
        Iam {
            store,
            clock,
            ids,
            secrets,
            sealer,
            generation: AtomicU64::new(1),
            keys: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn now(&self) -> f64 {
        self.clock.now().as_epoch_seconds()
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Commits `txn`; on success the caches' entries go stale.
    pub(crate) async fn commit(&self, txn: Txn) -> Result<bool, ServiceError> {
        let r = self.store.txn(txn).await.map_err(internal)?;
        if r.succeeded {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(r.succeeded)
    }

    /// A unique ID: `prefix` and 17 characters of IAM's alphabet.
    pub(crate) fn unique_id(&self, prefix: &str) -> String {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let bits = self.ids.next_u128();
        let mut s = String::from(prefix);
        s.extend((0..17).map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char));
        s
    }

    pub(crate) fn read<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
    ) -> Result<Option<(T, i64)>, ServiceError> {
        let found = records::load::<T>(&*self.store, key).map_err(internal)?;
        Ok(found.map(|r| (r.value, r.mod_revision)))
    }

    pub(crate) fn entity(
        &self,
        account: &str,
        kind: Kind,
        name: &str,
    ) -> Result<Option<(Entity, i64)>, ServiceError> {
        self.read(&entity_key(account, kind, name))
    }

    /// Every entity of a kind in the account; a record that cannot be read is an error naming it.
    pub(crate) fn entities(&self, account: &str, kind: Kind) -> Result<Vec<Entity>, ServiceError> {
        let all =
            records::load_prefix::<Entity>(&*self.store, &entity_prefix(account, kind)).map_err(internal)?;
        Ok(all.into_iter().map(|r| r.value).collect())
    }

    /// Every customer-managed policy of the account.
    pub(crate) fn policies(&self, account: &str) -> Result<Vec<ManagedPolicy>, ServiceError> {
        let all =
            records::load_prefix::<ManagedPolicy>(&*self.store, &policy_prefix(account)).map_err(internal)?;
        Ok(all.into_iter().map(|r| r.value).collect())
    }

    /// The document of the managed policy `arn` (its default version), AWS's or the account's.
    pub(crate) fn managed_document(&self, account: &str, arn: &str) -> Option<String> {
        if let Some((_, _, _, doc)) = managed::find(arn) {
            return Some(doc.to_string());
        }
        let name = arn.strip_prefix(&format!("arn:aws:iam::{account}:policy"))?.rsplit('/').next()?;
        let (p, _) = self.read::<ManagedPolicy>(&policy_key(account, name)).ok()??;
        (p.arn == arn).then(|| p.versions.get(&p.default_version).map(|v| v.0.clone()))?
    }
}

impl KeyStore for Iam {
    /// An IAM user's access key, if active. Opened keys are cached until IAM next changes.
    fn lookup(&self, access_key_id: &str) -> Option<Arc<Credential>> {
        let generation = self.generation();
        if let Some((g, c)) = self.keys.read().unwrap_or_else(|e| e.into_inner()).get(access_key_id)
            && *g == generation
        {
            return c.clone();
        }
        let found = self.open_key(access_key_id);
        let mut cache = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(access_key_id.to_string(), (generation, found.clone()));
        found
    }
}

impl Iam {
    fn open_key(&self, id: &str) -> Option<Arc<Credential>> {
        if !id.starts_with("AKIA") {
            return None;
        }
        let (rec, _) = self.read::<AccessKeyRecord>(&access_key_key(id)).ok()??;
        if rec.status != "Active" {
            return None;
        }
        let (user, _) = self.entity(&rec.account, Kind::User, &rec.user).ok()??;
        let secret = self.sealer.open(&access_key_key(id), &rec.sealed).ok()?;
        let secret = String::from_utf8(secret).ok()?;
        Some(Arc::new(Credential {
            access_key_id: id.to_string(),
            secret: Secret::new(secret),
            session_token: None,
            expires_at: None,
            principal: Arc::new(Principal {
                kind: PrincipalKind::User { name: user.name.clone() },
                session_policies: None,
                session_tags: Vec::new(),
                account: rec.account.clone(),
                arn: user.arn.clone(),
                user_id: user.id.clone(),
            }),
        }))
    }

    /// The account and user an access key belongs to (STS's GetAccessKeyInfo asks only the
    /// account).
    pub fn key_owner(&self, id: &str) -> Option<(String, String)> {
        let (rec, _) = self.read::<AccessKeyRecord>(&access_key_key(id)).ok()??;
        Some((rec.account, rec.user))
    }
}

impl Roles for Iam {
    fn role(&self, account: &str, arn: &str) -> Option<RoleInfo> {
        let name = arn.strip_prefix(&format!("arn:aws:iam::{account}:role/"))?.rsplit('/').next()?;
        let (e, _) = self.entity(account, Kind::Role, name).ok()??;
        (e.arn == arn).then(|| RoleInfo {
            name: e.name.clone(),
            arn: e.arn.clone(),
            role_id: e.id.clone(),
            trust_policy: e.trust.clone().unwrap_or_default(),
            max_session_duration: e.max_session.unwrap_or(3600),
            tags: e.tags.clone(),
        })
    }

    fn managed_policy(&self, account: &str, arn: &str) -> Option<String> {
        self.managed_document(account, arn)
    }

    fn key_account(&self, access_key_id: &str) -> Option<String> {
        self.key_owner(access_key_id).map(|(account, _)| account)
    }
}
