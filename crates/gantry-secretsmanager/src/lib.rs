//! AWS Secrets Manager (JSON 1.1): secrets, their versions and staging labels, tags, resource
//! policies and random passwords.
//!
//! A secret is one record at `/ACCOUNT/REGION/secretsmanager/secret/NAME` holding its metadata
//! and every version; each version's value is sealed ([`gantry_core::Sealer`]) with the record's
//! key and the version ID as associated data, so the store never holds a value in plaintext.
//! Operations take and return the JSON form of `gantry_model::secretsmanager`'s shapes; this
//! crate knows no HTTP and no other service (ECS reaches it through
//! [`gantry_ports::SecretResolver`]). Rotation needs Lambda, which Gantry does not have: its
//! operations answer with a clear error.

mod password;
mod resolve;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gantry_core::{Clock, IdGen, Scope, Sealer, SecretGen, ServiceError};
use gantry_model::secretsmanager as m;
use gantry_runtime::records::{self, Stored};
use gantry_store::{Store, Txn};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const CURRENT: &str = "AWSCURRENT";
pub const PREVIOUS: &str = "AWSPREVIOUS";
pub const PENDING: &str = "AWSPENDING";

/// Versions without a label that are kept; older ones are dropped (AWS keeps about 100).
const MAX_DEPRECATED: usize = 100;

/// The stored secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SecretRecord {
    arn: String,
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
    #[serde(default)]
    tags: Vec<m::Tag>,
    created: f64,
    last_changed: f64,
    /// When DeleteSecret was called, and when the secret is gone for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deleted: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deletion_date: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    versions: BTreeMap<String, VersionRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct VersionRecord {
    stages: Vec<String>,
    created: f64,
    /// The sealed value; `binary` says whether it was SecretBinary.
    sealed: String,
    #[serde(default)]
    binary: bool,
}

/// A version's value, opened.
enum Value {
    String(String),
    Binary(Vec<u8>),
}

/// The Secrets Manager service.
pub struct SecretsManager {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    secrets: Arc<dyn SecretGen>,
    sealer: Sealer,
}

impl std::fmt::Debug for SecretsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManager").finish_non_exhaustive()
    }
}

fn not_found() -> ServiceError {
    ServiceError::sender("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
}
fn invalid_request(msg: impl Into<String>) -> ServiceError {
    ServiceError::sender("InvalidRequestException", msg)
}
fn invalid_parameter(msg: impl Into<String>) -> ServiceError {
    ServiceError::sender("InvalidParameterException", msg)
}
fn marked_for_deletion() -> ServiceError {
    invalid_request("You can't perform this operation on the secret because it was marked for deletion.")
}

fn parse<'a, T: Deserialize<'a>>(input: &'a [u8]) -> Result<T, ServiceError> {
    let input = if input.is_empty() { b"{}".as_slice() } else { input };
    serde_json::from_slice(input).map_err(|e| ServiceError::sender("SerializationException", e.to_string()))
}

fn render<T: Serialize>(v: &T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(v).map_err(|e| ServiceError::receiver("InternalServiceError", e.to_string()))
}

fn prefix(scope: &Scope) -> String {
    format!("/{}/{}/secretsmanager/secret/", scope.account, scope.region)
}

fn secret_key(scope: &Scope, name: &str) -> String {
    format!("{}{name}", prefix(scope))
}

/// A secret is stored under its name.
impl records::Record for SecretRecord {
    fn key(&self, scope: &Scope) -> String {
        secret_key(scope, &self.name)
    }
}

fn unreadable(e: records::RecordError) -> ServiceError {
    ServiceError::receiver("InternalServiceError", e.to_string())
}

/// A secret's name: 1-512 of ASCII letters, digits and `/_+=.@-`.
fn check_name(name: &str) -> Result<(), ServiceError> {
    let ok = (1..=512).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid_parameter(format!(
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@! (got {name:?})"
        )))
    }
}

/// A ClientRequestToken: 32-64 characters.
fn check_token(t: &str) -> Result<(), ServiceError> {
    if (32..=64).contains(&t.len()) {
        Ok(())
    } else {
        Err(invalid_parameter(format!(
            "ClientRequestToken must be between 32 and 64 characters long, but was {} ({t:?}).",
            t.len()
        )))
    }
}

/// The given value: exactly one of SecretString and SecretBinary (base64 on the wire).
fn value_of(string: Option<String>, binary: Option<String>) -> Result<Option<Value>, ServiceError> {
    match (string, binary) {
        (Some(_), Some(_)) => Err(invalid_parameter(
            "You can't specify both a binary secret value and a string secret value in the same secret.",
        )),
        (Some(s), None) => {
            if s.len() > 65536 {
                return Err(invalid_parameter("SecretString must be at most 65536 bytes."));
            }
            Ok(Some(Value::String(s)))
        }
        (None, Some(b)) => {
            let raw = STANDARD
                .decode(b.as_bytes())
                .map_err(|_| invalid_parameter("SecretBinary is not valid base64."))?;
            if raw.len() > 65536 {
                return Err(invalid_parameter("SecretBinary must be at most 65536 bytes."));
            }
            Ok(Some(Value::Binary(raw)))
        }
        (None, None) => Ok(None),
    }
}

impl SecretRecord {
    fn deleted(&self) -> bool {
        self.deleted.is_some()
    }

    fn holder(&self, stage: &str) -> Option<&str> {
        self.versions.iter().find(|(_, v)| v.stages.iter().any(|s| s == stage)).map(|(id, _)| id.as_str())
    }

    fn versions_to_stages(&self) -> BTreeMap<String, Vec<String>> {
        self.versions
            .iter()
            .filter(|(_, v)| !v.stages.is_empty())
            .map(|(k, v)| (k.clone(), v.stages.clone()))
            .collect()
    }

    /// Moves `stage` to `to` (from whichever version holds it). Moving AWSCURRENT labels the
    /// version that held it AWSPREVIOUS.
    fn move_stage(&mut self, stage: &str, to: &str) {
        let from = self.holder(stage).map(str::to_string);
        if from.as_deref() == Some(to) {
            return;
        }
        for v in self.versions.values_mut() {
            v.stages.retain(|s| s != stage);
        }
        if let Some(v) = self.versions.get_mut(to) {
            v.stages.push(stage.to_string());
        }
        if stage == CURRENT
            && let Some(old) = from
        {
            for v in self.versions.values_mut() {
                v.stages.retain(|s| s != PREVIOUS);
            }
            if let Some(v) = self.versions.get_mut(&old) {
                v.stages.push(PREVIOUS.to_string());
            }
        }
    }

    /// Drops the oldest versions without a label beyond what AWS keeps.
    fn prune(&mut self) {
        let mut deprecated: Vec<(f64, String)> = self
            .versions
            .iter()
            .filter(|(_, v)| v.stages.is_empty())
            .map(|(k, v)| (v.created, k.clone()))
            .collect();
        if deprecated.len() > MAX_DEPRECATED {
            deprecated.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (_, id) in &deprecated[..deprecated.len() - MAX_DEPRECATED] {
                self.versions.remove(id);
            }
        }
    }
}

impl SecretsManager {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        secrets: Arc<dyn SecretGen>,
        sealer: Sealer,
    ) -> Self {
        SecretsManager { store, clock, ids, secrets, sealer }
    }

    fn now(&self) -> f64 {
        self.clock.now().as_epoch_seconds()
    }

    /// Runs one operation: its input as JSON, its output as JSON.
    pub async fn call(&self, scope: &Scope, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        match op {
            "CreateSecret" => render(&self.create_secret(scope, parse(input)?).await?),
            "DescribeSecret" => render(&self.describe_secret(scope, parse(input)?)?),
            "UpdateSecret" => render(&self.update_secret(scope, parse(input)?).await?),
            "DeleteSecret" => render(&self.delete_secret(scope, parse(input)?).await?),
            "RestoreSecret" => render(&self.restore_secret(scope, parse(input)?).await?),
            "GetSecretValue" => render(&self.get_secret_value(scope, parse(input)?)?),
            "PutSecretValue" => render(&self.put_secret_value(scope, parse(input)?).await?),
            "BatchGetSecretValue" => render(&self.batch_get_secret_value(scope, parse(input)?)?),
            "UpdateSecretVersionStage" => {
                render(&self.update_secret_version_stage(scope, parse(input)?).await?)
            }
            "ListSecrets" => render(&self.list_secrets(scope, parse(input)?)?),
            "ListSecretVersionIds" => render(&self.list_secret_version_ids(scope, parse(input)?)?),
            "TagResource" => render(&self.tag_resource(scope, parse(input)?).await?),
            "UntagResource" => render(&self.untag_resource(scope, parse(input)?).await?),
            "GetResourcePolicy" => render(&self.get_resource_policy(scope, parse(input)?)?),
            "PutResourcePolicy" => render(&self.put_resource_policy(scope, parse(input)?).await?),
            "DeleteResourcePolicy" => render(&self.delete_resource_policy(scope, parse(input)?).await?),
            "ValidateResourcePolicy" => render(&validate_resource_policy(parse(input)?)),
            "GetRandomPassword" => {
                let raw: serde_json::Value = parse(input)?;
                let require_each =
                    raw.get("RequireEachIncludedType").and_then(|v| v.as_bool()).unwrap_or(true);
                render(&password::generate(&*self.secrets, parse(input)?, require_each)?)
            }
            "RotateSecret" | "CancelRotateSecret" => Err(invalid_request(format!(
                "{op} is not supported: rotation runs a Lambda function, and Gantry has no Lambda. \
                 Store a new value with PutSecretValue instead."
            ))),
            _ if m::OPERATIONS.contains(&op) => Err(invalid_request(format!(
                "{op} is not supported by Gantry's Secrets Manager (no replication across Regions or accounts)."
            ))),
            _ => Err(ServiceError::sender("UnknownOperationException", format!("Unknown operation {op}"))),
        }
    }

    /// The ARN and resource policy of the secret `id` names, for IAM's authorization (`None`
    /// when there is no such secret: the operation then answers with its own error).
    pub fn authz_target(&self, scope: &Scope, id: &str) -> Option<(String, Option<String>)> {
        let (_, _, rec) = self.find_any(scope, id).ok()??;
        Some((rec.arn, rec.policy))
    }

    /// Finds a secret by name, full ARN or partial ARN (without the 6-character suffix).
    /// Secrets past their deletion date are gone.
    fn find(&self, scope: &Scope, id: &str) -> Result<(String, i64, SecretRecord), ServiceError> {
        self.find_any(scope, id)?.ok_or_else(not_found)
    }

    fn find_any(&self, scope: &Scope, id: &str) -> Result<Option<(String, i64, SecretRecord)>, ServiceError> {
        let lookup = |name: &str| -> Result<Option<(String, i64, SecretRecord)>, ServiceError> {
            if name.is_empty() {
                return Ok(None);
            }
            let Some(found) = self.load(&secret_key(scope, name))? else { return Ok(None) };
            if found.value.deletion_date.is_some_and(|d| d <= self.now()) {
                return Ok(None);
            }
            Ok(Some((found.key, found.mod_revision, found.value)))
        };
        if let Some(rest) = id.strip_prefix("arn:") {
            let parts: Vec<&str> = rest.splitn(6, ':').collect();
            let [_, "secretsmanager", region, account, "secret", name] = parts[..] else { return Ok(None) };
            if region != scope.region || account != scope.account {
                return Ok(None);
            }
            // A full ARN names the secret with its suffix; the record's ARN must match exactly.
            if let Some((base, suffix)) = name.rsplit_once('-')
                && suffix.len() == 6
                && let Some(found) = lookup(base)?
                && found.2.arn == id
            {
                return Ok(Some(found));
            }
            return lookup(name);
        }
        lookup(id)
    }

    /// The secret record at `key`; one that cannot be read is an error naming the key.
    fn load(&self, key: &str) -> Result<Option<Stored<SecretRecord>>, ServiceError> {
        records::load(&*self.store, key).map_err(unreadable)
    }

    async fn write(&self, key: &str, rev: i64, rec: &SecretRecord) -> Result<bool, ServiceError> {
        let r = self
            .store
            .txn(Txn::new().when(key, rev).put(key, records::encode(rec)))
            .await
            .map_err(|e| ServiceError::receiver("InternalServiceError", e.to_string()))?;
        Ok(r.succeeded)
    }

    /// Reads, changes and writes back one secret under compare-and-swap, retrying on conflict.
    async fn update<T>(
        &self,
        scope: &Scope,
        id: &str,
        mut change: impl FnMut(&mut SecretRecord) -> Result<T, ServiceError>,
    ) -> Result<(SecretRecord, T), ServiceError> {
        loop {
            let (key, rev, mut rec) = self.find(scope, id)?;
            let out = change(&mut rec)?;
            if self.write(&key, rev, &rec).await? {
                return Ok((rec, out));
            }
        }
    }

    fn seal(&self, key: &str, version: &str, value: &Value) -> VersionRecord {
        let ctx = format!("{key}#{version}");
        let (sealed, binary) = match value {
            Value::String(s) => (self.sealer.seal(&ctx, s.as_bytes()), false),
            Value::Binary(b) => (self.sealer.seal(&ctx, b), true),
        };
        VersionRecord { stages: Vec::new(), created: self.now(), sealed, binary }
    }

    fn open(&self, key: &str, version: &str, v: &VersionRecord) -> Result<Value, ServiceError> {
        let raw = self.sealer.open(&format!("{key}#{version}"), &v.sealed).map_err(|e| {
            ServiceError::receiver(
                "InternalServiceError",
                format!("the value of version {version} cannot be opened: {e}"),
            )
        })?;
        if v.binary {
            Ok(Value::Binary(raw))
        } else {
            String::from_utf8(raw).map(Value::String).map_err(|_| {
                ServiceError::receiver("InternalServiceError", "a stored secret string is not UTF-8")
            })
        }
    }

    fn new_arn(&self, scope: &Scope, name: &str) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let bits = self.ids.next_u128();
        let suffix: String =
            (0..6).map(|i| ALPHABET[((bits >> (i * 8)) % ALPHABET.len() as u128) as usize] as char).collect();
        format!("arn:aws:secretsmanager:{}:{}:secret:{name}-{suffix}", scope.region, scope.account)
    }

    pub async fn create_secret(
        &self,
        scope: &Scope,
        req: m::CreateSecretRequest,
    ) -> Result<m::CreateSecretResponse, ServiceError> {
        check_name(&req.name)?;
        if let Some(t) = &req.client_request_token {
            check_token(t)?;
        }
        check_tags(req.tags.as_deref().unwrap_or_default())?;
        let value = value_of(req.secret_string.clone(), req.secret_binary.clone())?;
        let key = secret_key(scope, &req.name);
        loop {
            let existing = self.load(&key)?;
            let mut rev = 0;
            if let Some(Stored { value: rec, mod_revision, .. }) = &existing {
                if rec.deletion_date.is_some_and(|d| d <= self.now()) {
                    rev = *mod_revision;
                } else if rec.deleted() {
                    return Err(invalid_request(
                        "You can't create this secret because a secret with this name is already scheduled for deletion.",
                    ));
                } else {
                    return Err(ServiceError::sender(
                        "ResourceExistsException",
                        format!("The operation failed because the secret {} already exists.", req.name),
                    ));
                }
            }
            let now = self.now();
            let mut rec = SecretRecord {
                arn: self.new_arn(scope, &req.name),
                name: req.name.clone(),
                description: req.description.clone(),
                kms_key_id: req.kms_key_id.clone(),
                tags: req.tags.clone().unwrap_or_default(),
                created: now,
                last_changed: now,
                deleted: None,
                deletion_date: None,
                policy: None,
                versions: BTreeMap::new(),
            };
            let mut version_id = None;
            if let Some(v) = &value {
                let id = req.client_request_token.clone().unwrap_or_else(|| self.ids.uuid());
                let mut ver = self.seal(&key, &id, v);
                ver.stages.push(CURRENT.into());
                rec.versions.insert(id.clone(), ver);
                version_id = Some(id);
            }
            if self.write(&key, rev, &rec).await? {
                return Ok(m::CreateSecretResponse {
                    arn: Some(rec.arn),
                    name: Some(rec.name),
                    version_id,
                    ..Default::default()
                });
            }
        }
    }

    pub fn describe_secret(
        &self,
        scope: &Scope,
        req: m::DescribeSecretRequest,
    ) -> Result<m::DescribeSecretResponse, ServiceError> {
        let (_, _, rec) = self.find(scope, &req.secret_id)?;
        Ok(m::DescribeSecretResponse {
            arn: Some(rec.arn.clone()),
            name: Some(rec.name.clone()),
            description: rec.description.clone(),
            kms_key_id: rec.kms_key_id.clone(),
            last_changed_date: Some(rec.last_changed),
            deleted_date: rec.deleted,
            tags: (!rec.tags.is_empty()).then(|| rec.tags.clone()),
            version_ids_to_stages: Some(rec.versions_to_stages()),
            created_date: Some(rec.created),
            ..Default::default()
        })
    }

    pub async fn update_secret(
        &self,
        scope: &Scope,
        req: m::UpdateSecretRequest,
    ) -> Result<m::UpdateSecretResponse, ServiceError> {
        if let Some(t) = &req.client_request_token {
            check_token(t)?;
        }
        let value = value_of(req.secret_string.clone(), req.secret_binary.clone())?;
        let now = self.now();
        let (rec, version_id) = self
            .update(scope, &req.secret_id, |rec| {
                if rec.deleted() {
                    return Err(marked_for_deletion());
                }
                if let Some(d) = &req.description {
                    rec.description = Some(d.clone());
                }
                if let Some(k) = &req.kms_key_id {
                    rec.kms_key_id = Some(k.clone());
                }
                rec.last_changed = now;
                match &value {
                    Some(v) => self
                        .add_version(scope, rec, req.client_request_token.clone(), v, &[CURRENT.to_string()])
                        .map(Some),
                    None => Ok(None),
                }
            })
            .await?;
        Ok(m::UpdateSecretResponse { arn: Some(rec.arn), name: Some(rec.name), version_id })
    }

    /// Adds a version with `stages` (or, with the same token and value, finds the one that
    /// exists: ClientRequestToken makes the call idempotent).
    fn add_version(
        &self,
        scope: &Scope,
        rec: &mut SecretRecord,
        token: Option<String>,
        value: &Value,
        stages: &[String],
    ) -> Result<String, ServiceError> {
        let key = secret_key(scope, &rec.name);
        let id = token.unwrap_or_else(|| self.ids.uuid());
        if let Some(existing) = rec.versions.get(&id) {
            let same = match (self.open(&key, &id, existing)?, value) {
                (Value::String(a), Value::String(b)) => a == *b,
                (Value::Binary(a), Value::Binary(b)) => a == *b,
                _ => false,
            };
            if same {
                return Ok(id);
            }
            return Err(ServiceError::sender(
                "ResourceExistsException",
                "You can't modify an existing version, you can only create a new version.",
            ));
        }
        rec.versions.insert(id.clone(), self.seal(&key, &id, value));
        for s in stages {
            rec.move_stage(s, &id);
        }
        rec.prune();
        Ok(id)
    }

    pub async fn delete_secret(
        &self,
        scope: &Scope,
        req: m::DeleteSecretRequest,
    ) -> Result<m::DeleteSecretResponse, ServiceError> {
        let window = req.recovery_window_in_days.unwrap_or(0);
        let force = req.force_delete_without_recovery.unwrap_or(false);
        if force && window != 0 {
            return Err(invalid_parameter(
                "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
            ));
        }
        if window != 0 && !(7..=30).contains(&window) {
            return Err(invalid_parameter(format!(
                "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive), but was {window}."
            )));
        }
        let now = self.now();
        if force {
            loop {
                let (key, rev, rec) = self.find(scope, &req.secret_id)?;
                let r = self
                    .store
                    .txn(Txn::new().when(&key, rev).delete(&key))
                    .await
                    .map_err(|e| ServiceError::receiver("InternalServiceError", e.to_string()))?;
                if r.succeeded {
                    return Ok(m::DeleteSecretResponse {
                        arn: Some(rec.arn),
                        name: Some(rec.name),
                        deletion_date: Some(now),
                    });
                }
            }
        }
        let days = if window == 0 { 30 } else { window };
        let (rec, _) = self
            .update(scope, &req.secret_id, |rec| {
                if rec.deleted() {
                    return Err(marked_for_deletion());
                }
                rec.deleted = Some(now);
                rec.deletion_date = Some(now + (days * 86400) as f64);
                Ok(())
            })
            .await?;
        Ok(m::DeleteSecretResponse {
            arn: Some(rec.arn),
            name: Some(rec.name),
            deletion_date: rec.deletion_date,
        })
    }

    pub async fn restore_secret(
        &self,
        scope: &Scope,
        req: m::RestoreSecretRequest,
    ) -> Result<m::RestoreSecretResponse, ServiceError> {
        let (rec, _) = self
            .update(scope, &req.secret_id, |rec| {
                rec.deleted = None;
                rec.deletion_date = None;
                Ok(())
            })
            .await?;
        Ok(m::RestoreSecretResponse { arn: Some(rec.arn), name: Some(rec.name) })
    }

    /// The version a request names: by ID and/or stage (AWSCURRENT when neither is given).
    fn pick<'r>(
        rec: &'r SecretRecord,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<(&'r str, &'r VersionRecord), ServiceError> {
        let missing = || match (version_id, stage) {
            (Some(v), _) => ServiceError::sender(
                "ResourceNotFoundException",
                format!("Secrets Manager can't find the specified secret value for VersionId: {v}"),
            ),
            (None, s) => ServiceError::sender(
                "ResourceNotFoundException",
                format!(
                    "Secrets Manager can't find the specified secret value for staging label: {}",
                    s.unwrap_or(CURRENT)
                ),
            ),
        };
        let (id, v) = match version_id {
            Some(id) => rec.versions.get_key_value(id).ok_or_else(missing)?,
            None => {
                let s = stage.unwrap_or(CURRENT);
                rec.versions.iter().find(|(_, v)| v.stages.iter().any(|x| x == s)).ok_or_else(missing)?
            }
        };
        if let (Some(_), Some(s)) = (version_id, stage)
            && !v.stages.iter().any(|x| x == s)
        {
            return Err(invalid_request(format!(
                "You provided a VersionStage that is not associated to the provided VersionId ({s})."
            )));
        }
        Ok((id.as_str(), v))
    }

    fn value_entry(
        &self,
        scope: &Scope,
        rec: &SecretRecord,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<m::GetSecretValueResponse, ServiceError> {
        if rec.deleted() {
            return Err(marked_for_deletion());
        }
        let (id, v) = Self::pick(rec, version_id, stage)?;
        let key = secret_key(scope, &rec.name);
        let (secret_string, secret_binary) = match self.open(&key, id, v)? {
            Value::String(s) => (Some(s), None),
            Value::Binary(b) => (None, Some(STANDARD.encode(b))),
        };
        Ok(m::GetSecretValueResponse {
            arn: Some(rec.arn.clone()),
            name: Some(rec.name.clone()),
            version_id: Some(id.to_string()),
            secret_string,
            secret_binary,
            version_stages: Some(v.stages.clone()),
            created_date: Some(v.created),
        })
    }

    pub fn get_secret_value(
        &self,
        scope: &Scope,
        req: m::GetSecretValueRequest,
    ) -> Result<m::GetSecretValueResponse, ServiceError> {
        let (_, _, rec) = self.find(scope, &req.secret_id)?;
        self.value_entry(scope, &rec, req.version_id.as_deref(), req.version_stage.as_deref())
    }

    pub async fn put_secret_value(
        &self,
        scope: &Scope,
        req: m::PutSecretValueRequest,
    ) -> Result<m::PutSecretValueResponse, ServiceError> {
        if let Some(t) = &req.client_request_token {
            check_token(t)?;
        }
        if req.rotation_token.is_some() {
            return Err(invalid_request(
                "RotationToken is not supported: Gantry has no Lambda to rotate secrets.",
            ));
        }
        let value = value_of(req.secret_string.clone(), req.secret_binary.clone())?
            .ok_or_else(|| invalid_request("You must provide either SecretString or SecretBinary."))?;
        let stages = req.version_stages.clone().unwrap_or_else(|| vec![CURRENT.to_string()]);
        if stages.is_empty() || stages.len() > 20 {
            return Err(invalid_parameter("VersionStages must list between 1 and 20 staging labels."));
        }
        let now = self.now();
        let (rec, id) = self
            .update(scope, &req.secret_id, |rec| {
                if rec.deleted() {
                    return Err(marked_for_deletion());
                }
                rec.last_changed = now;
                self.add_version(scope, rec, req.client_request_token.clone(), &value, &stages)
            })
            .await?;
        let version_stages = rec.versions.get(&id).map(|v| v.stages.clone());
        Ok(m::PutSecretValueResponse {
            arn: Some(rec.arn),
            name: Some(rec.name),
            version_id: Some(id),
            version_stages,
        })
    }

    pub async fn update_secret_version_stage(
        &self,
        scope: &Scope,
        req: m::UpdateSecretVersionStageRequest,
    ) -> Result<m::UpdateSecretVersionStageResponse, ServiceError> {
        let stage = req.version_stage.clone();
        let (rec, _) = self
            .update(scope, &req.secret_id, |rec| {
                if rec.deleted() {
                    return Err(marked_for_deletion());
                }
                let holder = rec.holder(&stage).map(str::to_string);
                for id in [&req.remove_from_version_id, &req.move_to_version_id].into_iter().flatten() {
                    if !rec.versions.contains_key(id) {
                        return Err(ServiceError::sender(
                            "ResourceNotFoundException",
                            format!("Secrets Manager can't find the specified secret value for VersionId: {id}"),
                        ));
                    }
                }
                if let Some(from) = &req.remove_from_version_id
                    && holder.as_deref() != Some(from.as_str())
                {
                    return Err(invalid_parameter(format!(
                        "The staging label {stage} is not attached to version {from}, so it can't be removed from it."
                    )));
                }
                match &req.move_to_version_id {
                    Some(to) => {
                        if let Some(h) = &holder
                            && h != to
                            && req.remove_from_version_id.as_deref() != Some(h.as_str())
                        {
                            return Err(invalid_parameter(format!(
                                "The parameter RemoveFromVersionId can't be empty. Staging label {stage} is currently attached to version {h}, so you must explicitly reference that version in RemoveFromVersionId."
                            )));
                        }
                        rec.move_stage(&stage, to);
                    }
                    None => {
                        if stage == CURRENT {
                            return Err(invalid_parameter(
                                "You can only move staging label AWSCURRENT to a different secret version. It can't be completely removed.",
                            ));
                        }
                        for v in rec.versions.values_mut() {
                            v.stages.retain(|s| *s != stage);
                        }
                    }
                }
                rec.prune();
                Ok(())
            })
            .await?;
        Ok(m::UpdateSecretVersionStageResponse { arn: Some(rec.arn), name: Some(rec.name) })
    }

    fn all(&self, scope: &Scope) -> Result<Vec<SecretRecord>, ServiceError> {
        let now = self.now();
        let all = records::load_prefix::<SecretRecord>(&*self.store, &prefix(scope)).map_err(unreadable)?;
        Ok(all.into_iter().map(|r| r.value).filter(|r| r.deletion_date.is_none_or(|d| d > now)).collect())
    }

    pub fn batch_get_secret_value(
        &self,
        scope: &Scope,
        req: m::BatchGetSecretValueRequest,
    ) -> Result<m::BatchGetSecretValueResponse, ServiceError> {
        let mut values = Vec::new();
        let mut errors = Vec::new();
        let entry = |v: m::GetSecretValueResponse| m::SecretValueEntry {
            arn: v.arn,
            name: v.name,
            version_id: v.version_id,
            secret_binary: v.secret_binary,
            secret_string: v.secret_string,
            version_stages: v.version_stages,
            created_date: v.created_date,
        };
        match (&req.secret_id_list, &req.filters) {
            (Some(_), Some(_)) => {
                Err(invalid_parameter("Either 'SecretIdList' or 'Filters' must be provided, but not both."))
            }
            (None, None) => Err(invalid_parameter("Either 'SecretIdList' or 'Filters' must be provided.")),
            (Some(ids), None) => {
                if req.max_results.is_some() {
                    return Err(invalid_parameter(
                        "'Filters' not specified. 'Filters' must also be specified when 'MaxResults' is provided in BatchGetSecretValue.",
                    ));
                }
                if ids.is_empty() || ids.len() > 20 {
                    return Err(invalid_parameter("SecretIdList must list between 1 and 20 secrets."));
                }
                for id in ids {
                    let r = self
                        .find(scope, id)
                        .and_then(|(_, _, rec)| self.value_entry(scope, &rec, None, None));
                    match r {
                        Ok(v) => values.push(entry(v)),
                        Err(e) => errors.push(m::APIErrorType {
                            secret_id: Some(id.clone()),
                            error_code: Some(e.code.to_string()),
                            message: Some(e.message.to_string()),
                        }),
                    }
                }
                Ok(m::BatchGetSecretValueResponse {
                    secret_values: Some(values),
                    next_token: None,
                    errors: Some(errors),
                })
            }
            (None, Some(filters)) => {
                let (page, token) =
                    self.list_page(scope, filters, req.max_results, req.next_token.as_deref(), false)?;
                for rec in page {
                    match self.value_entry(scope, &rec, None, None) {
                        Ok(v) => values.push(entry(v)),
                        Err(e) => errors.push(m::APIErrorType {
                            secret_id: Some(rec.arn.clone()),
                            error_code: Some(e.code.to_string()),
                            message: Some(e.message.to_string()),
                        }),
                    }
                }
                Ok(m::BatchGetSecretValueResponse {
                    secret_values: Some(values),
                    next_token: token,
                    errors: Some(errors),
                })
            }
        }
    }

    /// One page of the secrets that pass `filters`, in name order.
    fn list_page(
        &self,
        scope: &Scope,
        filters: &[m::Filter],
        max_results: Option<i32>,
        next_token: Option<&str>,
        include_deleted: bool,
    ) -> Result<(Vec<SecretRecord>, Option<String>), ServiceError> {
        let limit = match max_results {
            None => 100,
            Some(n) if (1..=100).contains(&n) => n as usize,
            Some(n) => {
                return Err(invalid_parameter(format!("MaxResults must be between 1 and 100, but was {n}.")));
            }
        };
        for f in filters {
            let k = f.key.as_deref().unwrap_or_default();
            if !["description", "name", "tag-key", "tag-value", "primary-region", "owning-service", "all"]
                .contains(&k)
            {
                return Err(invalid_parameter(format!(
                    "Invalid filter key {k:?}: the keys are description, name, tag-key, tag-value, primary-region, owning-service and all."
                )));
            }
        }
        let after = match next_token {
            None | Some("") => None,
            Some(t) => Some(gantry_core::page::decode(t).ok_or_else(|| {
                ServiceError::sender(
                    "InvalidNextTokenException",
                    format!("The NextToken value is invalid: {t}"),
                )
            })?),
        };
        let items: Vec<SecretRecord> = self
            .all(scope)?
            .into_iter()
            .filter(|r| include_deleted || !r.deleted())
            .filter(|r| filters.iter().all(|f| matches(r, f, &scope.region)))
            .filter(|r| after.as_deref().is_none_or(|a| r.name.as_str() > a))
            .collect();
        Ok(gantry_core::page::paginate(items, limit, |r| r.name.clone()))
    }

    pub fn list_secrets(
        &self,
        scope: &Scope,
        req: m::ListSecretsRequest,
    ) -> Result<m::ListSecretsResponse, ServiceError> {
        let max = req.max_results.filter(|&n| n != 0);
        let filters = req.filters.clone().unwrap_or_default();
        let (mut page, next_token) = self.list_page(
            scope,
            &filters,
            max,
            req.next_token.as_deref(),
            req.include_planned_deletion.unwrap_or(false),
        )?;
        let by = req.sort_by.as_deref().unwrap_or("created-date");
        match by {
            "name" => page.sort_by(|a, b| a.name.cmp(&b.name)),
            "created-date" => page.sort_by(|a, b| a.created.total_cmp(&b.created)),
            "last-changed-date" => page.sort_by(|a, b| a.last_changed.total_cmp(&b.last_changed)),
            "last-accessed-date" => {}
            other => return Err(invalid_parameter(format!("Invalid SortBy value {other:?}."))),
        }
        match req.sort_order.as_deref() {
            None | Some("desc") => page.reverse(),
            Some("asc") => {}
            Some(o) => {
                return Err(invalid_parameter(format!(
                    "Invalid SortOrder value {o:?}: must be asc or desc."
                )));
            }
        }
        let list = page
            .into_iter()
            .map(|rec| m::SecretListEntry {
                arn: Some(rec.arn.clone()),
                name: Some(rec.name.clone()),
                description: rec.description.clone(),
                kms_key_id: rec.kms_key_id.clone(),
                last_changed_date: Some(rec.last_changed),
                deleted_date: rec.deleted,
                tags: (!rec.tags.is_empty()).then(|| rec.tags.clone()),
                secret_versions_to_stages: Some(rec.versions_to_stages()),
                created_date: Some(rec.created),
                ..Default::default()
            })
            .collect();
        Ok(m::ListSecretsResponse { secret_list: Some(list), next_token })
    }

    pub fn list_secret_version_ids(
        &self,
        scope: &Scope,
        req: m::ListSecretVersionIdsRequest,
    ) -> Result<m::ListSecretVersionIdsResponse, ServiceError> {
        let (_, _, rec) = self.find(scope, &req.secret_id)?;
        let limit = match req.max_results.unwrap_or(0) {
            0 => 100,
            n if (1..=100).contains(&n) => n as usize,
            n => {
                return Err(invalid_parameter(format!("MaxResults must be between 1 and 100, but was {n}.")));
            }
        };
        let after = match req.next_token.as_deref() {
            None | Some("") => None,
            Some(t) => Some(gantry_core::page::decode(t).ok_or_else(|| {
                ServiceError::sender(
                    "InvalidNextTokenException",
                    format!("The NextToken value is invalid: {t}"),
                )
            })?),
        };
        let versions: Vec<m::SecretVersionsListEntry> = rec
            .versions
            .iter()
            .filter(|(_, v)| req.include_deprecated == Some(true) || !v.stages.is_empty())
            .filter(|(id, _)| after.as_deref().is_none_or(|a| id.as_str() > a))
            .map(|(id, v)| m::SecretVersionsListEntry {
                version_id: Some(id.clone()),
                version_stages: Some(v.stages.clone()),
                created_date: Some(v.created),
                ..Default::default()
            })
            .collect();
        let (versions, next_token) =
            gantry_core::page::paginate(versions, limit, |v| v.version_id.clone().unwrap_or_default());
        Ok(m::ListSecretVersionIdsResponse {
            versions: Some(versions),
            next_token,
            arn: Some(rec.arn),
            name: Some(rec.name),
        })
    }

    pub async fn tag_resource(&self, scope: &Scope, req: m::TagResourceRequest) -> Result<(), ServiceError> {
        check_tags(&req.tags)?;
        self.update(scope, &req.secret_id, |rec| {
            for t in &req.tags {
                rec.tags.retain(|x| x.key != t.key);
                rec.tags.push(t.clone());
            }
            if rec.tags.len() > 50 {
                return Err(invalid_parameter("A secret can have at most 50 tags."));
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    pub async fn untag_resource(
        &self,
        scope: &Scope,
        req: m::UntagResourceRequest,
    ) -> Result<(), ServiceError> {
        self.update(scope, &req.secret_id, |rec| {
            rec.tags.retain(|t| !req.tag_keys.iter().any(|k| Some(k) == t.key.as_ref()));
            Ok(())
        })
        .await?;
        Ok(())
    }

    pub fn get_resource_policy(
        &self,
        scope: &Scope,
        req: m::GetResourcePolicyRequest,
    ) -> Result<m::GetResourcePolicyResponse, ServiceError> {
        let (_, _, rec) = self.find(scope, &req.secret_id)?;
        Ok(m::GetResourcePolicyResponse {
            arn: Some(rec.arn),
            name: Some(rec.name),
            resource_policy: rec.policy,
            ..Default::default()
        })
    }

    pub async fn put_resource_policy(
        &self,
        scope: &Scope,
        req: m::PutResourcePolicyRequest,
    ) -> Result<m::PutResourcePolicyResponse, ServiceError> {
        if let Err(why) = check_policy(&req.resource_policy) {
            return Err(ServiceError::sender("MalformedPolicyDocumentException", why));
        }
        let (rec, _) = self
            .update(scope, &req.secret_id, |rec| {
                rec.policy = Some(req.resource_policy.clone());
                Ok(())
            })
            .await?;
        Ok(m::PutResourcePolicyResponse { arn: Some(rec.arn), name: Some(rec.name), ..Default::default() })
    }

    pub async fn delete_resource_policy(
        &self,
        scope: &Scope,
        req: m::DeleteResourcePolicyRequest,
    ) -> Result<m::DeleteResourcePolicyResponse, ServiceError> {
        let (rec, _) = self
            .update(scope, &req.secret_id, |rec| {
                rec.policy = None;
                Ok(())
            })
            .await?;
        Ok(m::DeleteResourcePolicyResponse { arn: Some(rec.arn), name: Some(rec.name), ..Default::default() })
    }
}

/// Tag keys: 1-128 characters, not starting with `aws:`; values at most 256.
fn check_tags(tags: &[m::Tag]) -> Result<(), ServiceError> {
    for t in tags {
        let k = t.key.as_deref().unwrap_or_default();
        if k.is_empty() || k.len() > 128 {
            return Err(invalid_parameter(format!("Invalid tag key {k:?}: a key has 1 to 128 characters.")));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid_parameter(format!(
                "Invalid tag key {k:?}: the aws: prefix is reserved for AWS use."
            )));
        }
        if t.value.as_deref().unwrap_or_default().len() > 256 {
            return Err(invalid_parameter(format!(
                "Invalid value for tag {k:?}: a value has at most 256 characters."
            )));
        }
    }
    Ok(())
}

/// Whether a ListSecrets filter passes a secret: each value is a prefix (`!` negates it), and
/// any value may match.
fn matches(rec: &SecretRecord, f: &m::Filter, region: &str) -> bool {
    let values = f.values.as_deref().unwrap_or_default();
    let fields: Vec<&str> = match f.key.as_deref().unwrap_or_default() {
        "name" => vec![&rec.name],
        "description" => rec.description.as_deref().into_iter().collect(),
        "tag-key" => rec.tags.iter().filter_map(|t| t.key.as_deref()).collect(),
        "tag-value" => rec.tags.iter().filter_map(|t| t.value.as_deref()).collect(),
        "primary-region" => vec![region],
        "owning-service" => vec![],
        _ => {
            let mut all: Vec<&str> = vec![&rec.name];
            all.extend(rec.description.as_deref());
            all.extend(rec.tags.iter().filter_map(|t| t.key.as_deref()));
            all.extend(rec.tags.iter().filter_map(|t| t.value.as_deref()));
            all
        }
    };
    let (negated, positive): (Vec<&String>, Vec<&String>) = values.iter().partition(|v| v.starts_with('!'));
    let hit = |p: &str| fields.iter().any(|x| x.starts_with(p));
    negated.iter().all(|v| !hit(&v[1..])) && (positive.is_empty() || positive.iter().any(|v| hit(v)))
}

/// A resource policy must be a JSON object with a Statement of objects, each with an Effect of
/// Allow or Deny.
fn check_policy(text: &str) -> Result<(), String> {
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("This resource policy is not valid JSON: {e}"))?;
    let obj = doc.as_object().ok_or("This resource policy must be a JSON object.")?;
    let statements = match obj.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(s @ serde_json::Value::Object(_)) => vec![s.clone()],
        _ => return Err("This resource policy has no Statement.".into()),
    };
    for s in &statements {
        match s.get("Effect").and_then(|e| e.as_str()) {
            Some("Allow" | "Deny") => {}
            other => return Err(format!("A statement's Effect must be Allow or Deny, not {other:?}.")),
        }
        if s.get("Action").is_none() && s.get("NotAction").is_none() {
            return Err("A statement has neither Action nor NotAction.".into());
        }
    }
    Ok(())
}

fn validate_resource_policy(req: m::ValidateResourcePolicyRequest) -> m::ValidateResourcePolicyResponse {
    match check_policy(&req.resource_policy) {
        Ok(()) => m::ValidateResourcePolicyResponse {
            policy_validation_passed: true,
            validation_errors: Some(vec![]),
        },
        Err(why) => m::ValidateResourcePolicyResponse {
            policy_validation_passed: false,
            validation_errors: Some(vec![m::ValidationErrorsEntry {
                check_name: Some("Syntax".into()),
                error_message: Some(why),
            }]),
        },
    }
}

pub use resolve::Resolver;

#[cfg(test)]
mod tests;
