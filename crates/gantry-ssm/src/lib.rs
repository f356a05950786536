//! AWS Systems Manager Parameter Store (JSON 1.1): String, StringList and SecureString
//! parameters with versions, labels, tiers, allowed patterns and tags.
//!
//! A parameter is one record at `/ACCOUNT/REGION/ssm/parameter/NAME` holding its history; a
//! SecureString's values are sealed ([`gantry_core::Sealer`], the record's key and version as
//! associated data), so the store never holds them in plaintext; `KeyId` is recorded. Operations
//! take and return the JSON form of `gantry_model::ssm`'s shapes; this crate knows no HTTP and no
//! other service (ECS reaches it through [`gantry_ports::SecretResolver`]). Only Parameter
//! Store's operations are in the model: the rest of Systems Manager is not served.

mod describe;

use gantry_core::{Clock, Scope, Sealer, Secret, ServiceError};
use gantry_model::ssm as m;
use gantry_runtime::records;
use gantry_store::{Store, Txn};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Versions kept per parameter, as SSM keeps.
const MAX_VERSIONS: usize = 100;
const DEFAULT_KMS_KEY: &str = "alias/aws/ssm";

/// The stored parameter: its history, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ParamRecord {
    name: String,
    #[serde(default)]
    tags: Vec<m::Tag>,
    versions: Vec<Version>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Version {
    version: i64,
    #[serde(rename = "type")]
    kind: String,
    /// The value; a SecureString's is sealed.
    value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allowed_pattern: Option<String>,
    tier: String,
    data_type: String,
    modified: f64,
    user: String,
    #[serde(default)]
    labels: Vec<String>,
}

impl ParamRecord {
    fn latest(&self) -> &Version {
        // A record is written only with at least one version.
        &self.versions[self.versions.len() - 1]
    }
}

/// The Parameter Store service.
pub struct Ssm {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sealer: Sealer,
}

impl std::fmt::Debug for Ssm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ssm").finish_non_exhaustive()
    }
}

fn validation(msg: impl Into<String>) -> ServiceError {
    ServiceError::sender("ValidationException", msg)
}
fn not_found(name: &str) -> ServiceError {
    ServiceError::sender("ParameterNotFound", format!("Parameter {name} not found."))
}
fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::receiver("InternalServerError", e.to_string())
}

fn parse<'a, T: Deserialize<'a>>(input: &'a [u8]) -> Result<T, ServiceError> {
    let input = if input.is_empty() { b"{}".as_slice() } else { input };
    serde_json::from_slice(input).map_err(|e| ServiceError::sender("SerializationException", e.to_string()))
}

fn render<T: Serialize>(v: &T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(v).map_err(internal)
}

fn prefix(scope: &Scope) -> String {
    format!("/{}/{}/ssm/parameter/", scope.account, scope.region)
}

fn param_key(scope: &Scope, name: &str) -> String {
    format!("{}{name}", prefix(scope))
}

/// A parameter is stored under its name.
impl records::Record for ParamRecord {
    fn key(&self, scope: &Scope) -> String {
        param_key(scope, &self.name)
    }
}

/// `arn:aws:ssm:REGION:ACCOUNT:parameter/NAME` (a leading `/` of the name is not doubled).
pub fn parameter_arn(scope: &Scope, name: &str) -> String {
    format!("arn:aws:ssm:{}:{}:parameter/{}", scope.region, scope.account, name.trim_start_matches('/'))
}

/// A `PutParameter`'s own checks (name, type, value, tags with overwrite, tier, data type,
/// allowed pattern); its data type.
fn check_put(req: &m::PutParameterRequest) -> Result<String, ServiceError> {
    check_name(&req.name)?;
    if let Some(t) = &req.r#type
        && !["String", "StringList", "SecureString"].contains(&t.as_str())
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{t}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]"
        )));
    }
    if req.value.is_empty() {
        return Err(validation(
            "1 validation error detected: Value '' at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    if req.tags.is_some() && req.overwrite == Some(true) {
        return Err(validation(
            "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
        ));
    }
    if let Some(tier) = &req.tier
        && !["Standard", "Advanced", "Intelligent-Tiering"].contains(&tier.as_str())
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{tier}' at 'tier' failed to satisfy constraint: Member must satisfy enum value set: [Advanced, Intelligent-Tiering, Standard]"
        )));
    }
    let data_type = req.data_type.clone().unwrap_or_else(|| "text".into());
    if !["text", "aws:ec2:image", "aws:ssm:integration"].contains(&data_type.as_str()) {
        return Err(validation(format!(
            "The following data type is not supported: {data_type} (Data type names are all lowercase.)"
        )));
    }
    if let Some(p) = &req.allowed_pattern {
        let re = regex::Regex::new(&format!("^(?:{p})$")).map_err(|_| {
            validation(format!("Parameter allowedPattern, {p} is not a valid regular expression."))
        })?;
        if !re.is_match(&req.value) {
            return Err(ServiceError::sender(
                "ParameterPatternMismatchException",
                format!("Parameter value, cannot be validated against allowedPattern: {p}"),
            ));
        }
    }
    Ok(data_type)
}

/// The new version's tier: as asked, else (or with Intelligent-Tiering) Advanced when the value
/// or policies need it, else the prior version's; never down from Advanced; the value fits it.
fn put_tier(req: &m::PutParameterRequest, last: Option<&Version>) -> Result<String, ServiceError> {
    let prior_tier = last.map(|v| v.tier.as_str()).unwrap_or("Standard");
    let tier = match req.tier.as_deref() {
        Some("Intelligent-Tiering") | None => {
            if req.value.len() > 4096 || req.policies.is_some() {
                "Advanced".to_string()
            } else {
                prior_tier.to_string()
            }
        }
        Some(t) => t.to_string(),
    };
    if tier == "Standard" && prior_tier == "Advanced" {
        return Err(validation(
            "This parameter uses the advanced-parameter tier. You can't downgrade a parameter from the advanced-parameter tier to the standard-parameter tier. If necessary, you can delete the advanced parameter and recreate it as a standard parameter.",
        ));
    }
    let max = if tier == "Advanced" { 8192 } else { 4096 };
    if req.value.len() > max {
        return Err(validation(if tier == "Advanced" {
            "Advanced tier parameters support a maximum parameter value of 8192 characters.".to_string()
        } else {
            "Standard tier parameters support a maximum parameter value of 4096 characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier.".to_string()
        }));
    }
    Ok(tier)
}

/// Past `MAX_VERSIONS`, the oldest version goes, unless it has a label.
fn drop_oldest_version(rec: &mut ParamRecord, name: &str) -> Result<(), ServiceError> {
    if rec.versions.len() > MAX_VERSIONS {
        let oldest = &rec.versions[0];
        if !oldest.labels.is_empty() {
            return Err(ServiceError::sender(
                "ParameterMaxVersionLimitExceeded",
                format!(
                    "You attempted to create a new version of {} by calling the PutParameter API with the overwrite flag. Version {}, the oldest version, can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again.",
                    name, oldest.version
                ),
            ));
        }
        rec.versions.remove(0);
    }
    Ok(())
}

/// A name as SSM allows it: 1-2048 of letters, digits and `_.-/`; a `/`-path of at most 15
/// levels; not starting with `aws` or `ssm`.
fn check_name(name: &str) -> Result<(), ServiceError> {
    if name.is_empty() || name.len() > 2048 {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must have length between 1 and 2048"
        )));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b)) {
        return Err(validation(format!(
            "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). It must use only letters, numbers, or the following symbols: . (period), - (hyphen), _ (underscore). Special characters are not allowed. All sub-paths, if specified, must use the forward slash symbol \"/\". Valid example: /get/parameters2-/by1./path0_. (got {name})"
        )));
    }
    let bare = name.trim_start_matches('/').to_ascii_lowercase();
    if bare.starts_with("aws") || bare.starts_with("ssm") {
        return Err(validation(format!("No access to reserved parameter name: {name}.")));
    }
    if name.contains("//") || (name.contains('/') && !name.starts_with('/')) || name.ends_with('/') {
        return Err(validation(format!("Parameter name must be a fully qualified name: {name}")));
    }
    if name.matches('/').count() > 15 {
        return Err(ServiceError::sender(
            "HierarchyLevelLimitExceededException",
            format!("A hierarchy can have a maximum of 15 levels: {name}"),
        ));
    }
    Ok(())
}

/// A `name:version` or `name:label` selector.
fn split_selector(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once(':') {
        Some((n, sel)) if !n.starts_with("arn") || n.matches(':').count() >= 5 => (n, Some(sel)),
        _ => (name, None),
    }
}

/// A name, or a parameter's ARN, as the name.
fn name_of(id: &str) -> &str {
    match id.strip_prefix("arn:").and_then(|r| r.split_once(":parameter")) {
        // `parameter/a/b` is `/a/b`; `parameter/a` is `a`.
        Some((_, n)) if n.len() > 1 && n[1..].contains('/') => n,
        Some((_, n)) if n.len() > 1 => &n[1..],
        _ => id,
    }
}

fn check_label(l: &str) -> bool {
    let lower = l.to_ascii_lowercase();
    (1..=100).contains(&l.len())
        && !l.starts_with(|c: char| c.is_ascii_digit())
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl Ssm {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, sealer: Sealer) -> Self {
        Ssm { store, clock, sealer }
    }

    fn now(&self) -> f64 {
        self.clock.now().as_epoch_seconds()
    }

    /// Runs one operation: its input as JSON, its output as JSON. `user` is the caller's ARN
    /// (LastModifiedUser).
    pub async fn call(
        &self,
        scope: &Scope,
        user: &str,
        op: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        match op {
            "PutParameter" => render(&self.put_parameter(scope, user, parse(input)?).await?),
            "GetParameter" => render(&self.get_parameter(scope, parse(input)?)?),
            "GetParameters" => render(&self.get_parameters(scope, parse(input)?)?),
            "GetParametersByPath" => render(&self.get_parameters_by_path(scope, parse(input)?)?),
            "DescribeParameters" => render(&self.describe_parameters(scope, parse(input)?)?),
            "DeleteParameter" => render(&self.delete_parameter(scope, parse(input)?).await?),
            "DeleteParameters" => render(&self.delete_parameters(scope, parse(input)?).await?),
            "GetParameterHistory" => render(&self.get_parameter_history(scope, parse(input)?)?),
            "LabelParameterVersion" => render(&self.label_parameter_version(scope, parse(input)?).await?),
            "UnlabelParameterVersion" => render(&self.unlabel_parameter_version(scope, parse(input)?).await?),
            "AddTagsToResource" => render(&self.add_tags(scope, parse(input)?).await?),
            "RemoveTagsFromResource" => render(&self.remove_tags(scope, parse(input)?).await?),
            "ListTagsForResource" => render(&self.list_tags(scope, parse(input)?)?),
            _ => Err(ServiceError::sender(
                "InvalidAction",
                format!("{op} is not served: Gantry's Systems Manager is Parameter Store alone."),
            )),
        }
    }

    fn read(&self, scope: &Scope, name: &str) -> Result<Option<(String, i64, ParamRecord)>, ServiceError> {
        let key = param_key(scope, name);
        Ok(records::load::<ParamRecord>(&*self.store, &key)
            .map_err(internal)?
            .map(|r| (r.key, r.mod_revision, r.value)))
    }

    fn all(&self, scope: &Scope) -> Result<Vec<ParamRecord>, ServiceError> {
        let all = records::load_prefix::<ParamRecord>(&*self.store, &prefix(scope)).map_err(internal)?;
        Ok(all.into_iter().map(|r| r.value).collect())
    }

    async fn write(&self, key: &str, rev: i64, rec: Option<&ParamRecord>) -> Result<bool, ServiceError> {
        let txn = Txn::new().when(key, rev);
        let txn = match rec {
            Some(r) => txn.put(key, records::encode(r)),
            None => txn.delete(key),
        };
        Ok(self.store.txn(txn).await.map_err(internal)?.succeeded)
    }

    /// A version's value in the clear (a SecureString's opened).
    fn plain(&self, key: &str, v: &Version) -> Result<String, ServiceError> {
        if v.kind != "SecureString" {
            return Ok(v.value.clone());
        }
        let raw = self.sealer.open(&format!("{key}#{}", v.version), &v.value).map_err(internal)?;
        String::from_utf8(raw).map_err(internal)
    }

    /// A version's value as a response shows it: a SecureString's sealed form unless decrypted.
    fn shown(&self, key: &str, v: &Version, decrypt: bool) -> Result<String, ServiceError> {
        if v.kind == "SecureString" && !decrypt { Ok(v.value.clone()) } else { self.plain(key, v) }
    }

    pub async fn put_parameter(
        &self,
        scope: &Scope,
        user: &str,
        req: m::PutParameterRequest,
    ) -> Result<m::PutParameterResult, ServiceError> {
        let data_type = check_put(&req)?;
        loop {
            let (key, rev, mut rec) = self.put_target(scope, &req)?;
            let last = rec.versions.last().cloned();
            let kind =
                req.r#type.clone().or_else(|| last.as_ref().map(|v| v.kind.clone())).unwrap_or_default();
            if req.key_id.is_some() && kind != "SecureString" {
                return Err(validation("KeyId is required for SecureString type parameter only."));
            }
            let tier = put_tier(&req, last.as_ref())?;
            let version = last.as_ref().map_or(1, |v| v.version + 1);
            let value = if kind == "SecureString" {
                self.sealer.seal(&format!("{key}#{version}"), req.value.as_bytes())
            } else {
                req.value.clone()
            };
            let key_id = (kind == "SecureString").then(|| {
                req.key_id
                    .clone()
                    .or_else(|| last.as_ref().and_then(|v| v.key_id.clone()))
                    .unwrap_or_else(|| DEFAULT_KMS_KEY.into())
            });
            rec.versions.push(Version {
                version,
                kind,
                value,
                key_id,
                description: req
                    .description
                    .clone()
                    .or_else(|| last.as_ref().and_then(|v| v.description.clone())),
                allowed_pattern: req
                    .allowed_pattern
                    .clone()
                    .or_else(|| last.as_ref().and_then(|v| v.allowed_pattern.clone())),
                tier: tier.clone(),
                data_type: data_type.clone(),
                modified: self.now(),
                user: user.to_string(),
                labels: vec![],
            });
            drop_oldest_version(&mut rec, &req.name)?;
            if self.write(&key, rev, Some(&rec)).await? {
                return Ok(m::PutParameterResult { version, tier: Some(tier) });
            }
        }
    }

    /// The parameter a `PutParameter` writes: the existing one (with overwrite) or a new one
    /// (with a type), with its key and revision.
    fn put_target(
        &self,
        scope: &Scope,
        req: &m::PutParameterRequest,
    ) -> Result<(String, i64, ParamRecord), ServiceError> {
        match self.read(scope, &req.name)? {
            Some((key, rev, rec)) => {
                if req.overwrite != Some(true) {
                    return Err(ServiceError::sender(
                        "ParameterAlreadyExists",
                        "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
                    ));
                }
                Ok((key, rev, rec))
            }
            None => {
                if req.r#type.is_none() {
                    return Err(validation("A parameter type is required when you create a parameter."));
                }
                let key = param_key(scope, &req.name);
                let rec = ParamRecord {
                    name: req.name.clone(),
                    tags: req.tags.clone().unwrap_or_default(),
                    versions: vec![],
                };
                Ok((key, 0, rec))
            }
        }
    }

    /// The version a `name[:selector]` names, with its record's key.
    fn select(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<(String, ParamRecord, Version, Option<String>), ServiceError> {
        let (name, selector) = split_selector(id);
        let name = name_of(name);
        let (key, _, rec) = self.read(scope, name)?.ok_or_else(|| not_found(id))?;
        let v = match selector {
            None => rec.latest().clone(),
            Some(sel) if sel.bytes().all(|b| b.is_ascii_digit()) && !sel.is_empty() => {
                let n: i64 =
                    sel.parse().map_err(|_| validation(format!("Invalid version selector {sel}")))?;
                rec.versions.iter().find(|v| v.version == n).cloned().ok_or_else(|| {
                    ServiceError::sender(
                        "ParameterVersionNotFound",
                        format!("Systems Manager could not find version {n} of {name}. Verify the version and try again."),
                    )
                })?
            }
            Some(label) => rec
                .versions
                .iter()
                .find(|v| v.labels.iter().any(|l| l == label))
                .cloned()
                .ok_or_else(|| not_found(id))?,
        };
        Ok((key, rec, v, selector.map(|s| format!(":{s}"))))
    }

    fn parameter(
        &self,
        scope: &Scope,
        key: &str,
        rec: &ParamRecord,
        v: &Version,
        selector: Option<String>,
        decrypt: bool,
    ) -> Result<m::Parameter, ServiceError> {
        Ok(m::Parameter {
            name: Some(rec.name.clone()),
            r#type: Some(v.kind.clone()),
            value: Some(self.shown(key, v, decrypt)?),
            version: v.version,
            selector,
            last_modified_date: Some(v.modified),
            arn: Some(parameter_arn(scope, &rec.name)),
            data_type: Some(v.data_type.clone()),
            ..Default::default()
        })
    }

    pub fn get_parameter(
        &self,
        scope: &Scope,
        req: m::GetParameterRequest,
    ) -> Result<m::GetParameterResult, ServiceError> {
        let (key, rec, v, sel) = self.select(scope, &req.name)?;
        Ok(m::GetParameterResult {
            parameter: Some(self.parameter(scope, &key, &rec, &v, sel, req.with_decryption == Some(true))?),
        })
    }

    pub fn get_parameters(
        &self,
        scope: &Scope,
        req: m::GetParametersRequest,
    ) -> Result<m::GetParametersResult, ServiceError> {
        if req.names.is_empty() || req.names.len() > 10 {
            return Err(validation(format!(
                "1 validation error detected: Value '{:?}' at 'names' failed to satisfy constraint: Member must have length less than or equal to 10",
                req.names
            )));
        }
        let mut parameters = Vec::new();
        let mut invalid = Vec::new();
        for n in &req.names {
            match self.select(scope, n) {
                Ok((key, rec, v, sel)) => parameters.push(self.parameter(
                    scope,
                    &key,
                    &rec,
                    &v,
                    sel,
                    req.with_decryption == Some(true),
                )?),
                Err(e) if e.code == "ParameterNotFound" || e.code == "ParameterVersionNotFound" => {
                    invalid.push(n.clone())
                }
                Err(e) => return Err(e),
            }
        }
        Ok(m::GetParametersResult { parameters: Some(parameters), invalid_parameters: Some(invalid) })
    }

    pub fn get_parameters_by_path(
        &self,
        scope: &Scope,
        req: m::GetParametersByPathRequest,
    ) -> Result<m::GetParametersByPathResult, ServiceError> {
        if !req.path.starts_with('/') {
            return Err(validation(format!(
                "The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash \"/\". It can't be prefixed with \"aws\" or \"ssm\" (case-insensitive). It must use only letters, numbers, or the following symbols: . (period), - (hyphen), _ (underscore). Special characters are not allowed. All sub-paths, if specified, must use the forward slash symbol \"/\". Valid example: /get/parameters2-/by1./path0_. (got {})",
                req.path
            )));
        }
        let limit = describe::limit(req.max_results, 10)?;
        let after = describe::after(req.next_token.as_deref())?;
        let base = if req.path.ends_with('/') { req.path.clone() } else { format!("{}/", req.path) };
        let filters = req.parameter_filters.clone().unwrap_or_default();
        for f in &filters {
            if !["Type", "KeyId", "Label", "DataType", "Tier"].contains(&f.key.as_str())
                && !f.key.starts_with("tag:")
            {
                return Err(ServiceError::sender(
                    "InvalidFilterKey",
                    format!(
                        "The following filter key is not valid: {}. Valid filter keys include: [Type, KeyId, Label, DataType, Tier].",
                        f.key
                    ),
                ));
            }
        }
        let items: Vec<ParamRecord> = self
            .all(scope)?
            .into_iter()
            .filter(|r| {
                r.name.starts_with(&base)
                    && (req.recursive == Some(true) || !r.name[base.len()..].contains('/'))
            })
            .filter(|r| filters.iter().all(|f| describe::passes(scope, r, f)))
            .filter(|r| after.as_deref().is_none_or(|a| r.name.as_str() > a))
            .collect();
        let (page, next_token) = gantry_core::page::paginate(items, limit, |r| r.name.clone());
        let key_of = |r: &ParamRecord| param_key(scope, &r.name);
        let parameters = page
            .iter()
            .map(|r| {
                self.parameter(scope, &key_of(r), r, r.latest(), None, req.with_decryption == Some(true))
            })
            .collect::<Result<_, _>>()?;
        Ok(m::GetParametersByPathResult { parameters: Some(parameters), next_token })
    }

    pub fn describe_parameters(
        &self,
        scope: &Scope,
        req: m::DescribeParametersRequest,
    ) -> Result<m::DescribeParametersResult, ServiceError> {
        describe::describe(scope, self.all(scope)?, req)
    }

    pub async fn delete_parameter(
        &self,
        scope: &Scope,
        req: m::DeleteParameterRequest,
    ) -> Result<m::DeleteParameterResult, ServiceError> {
        let name = name_of(&req.name);
        loop {
            let (key, rev, _) = self.read(scope, name)?.ok_or_else(|| not_found(&req.name))?;
            if self.write(&key, rev, None).await? {
                return Ok(m::DeleteParameterResult {});
            }
        }
    }

    pub async fn delete_parameters(
        &self,
        scope: &Scope,
        req: m::DeleteParametersRequest,
    ) -> Result<m::DeleteParametersResult, ServiceError> {
        if req.names.is_empty() || req.names.len() > 10 {
            return Err(validation(
                "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length between 1 and 10",
            ));
        }
        let (mut deleted, mut invalid) = (Vec::new(), Vec::new());
        for n in &req.names {
            match self.delete_parameter(scope, m::DeleteParameterRequest { name: n.clone() }).await {
                Ok(_) => deleted.push(n.clone()),
                Err(e) if e.code == "ParameterNotFound" => invalid.push(n.clone()),
                Err(e) => return Err(e),
            }
        }
        Ok(m::DeleteParametersResult { deleted_parameters: Some(deleted), invalid_parameters: Some(invalid) })
    }

    pub fn get_parameter_history(
        &self,
        scope: &Scope,
        req: m::GetParameterHistoryRequest,
    ) -> Result<m::GetParameterHistoryResult, ServiceError> {
        let name = name_of(&req.name);
        let (key, _, rec) = self.read(scope, name)?.ok_or_else(|| not_found(&req.name))?;
        let limit = describe::limit(req.max_results, 50)?;
        let after: Option<i64> = describe::after(req.next_token.as_deref())?.and_then(|a| a.parse().ok());
        let items: Vec<&Version> =
            rec.versions.iter().filter(|v| after.is_none_or(|a| v.version > a)).collect();
        let (page, next_token) = gantry_core::page::paginate(items, limit, |v| v.version.to_string());
        let parameters = page
            .into_iter()
            .map(|v| {
                Ok(m::ParameterHistory {
                    name: Some(rec.name.clone()),
                    r#type: Some(v.kind.clone()),
                    key_id: v.key_id.clone(),
                    last_modified_date: Some(v.modified),
                    last_modified_user: Some(v.user.clone()),
                    description: v.description.clone(),
                    value: Some(self.shown(&key, v, req.with_decryption == Some(true))?),
                    allowed_pattern: v.allowed_pattern.clone(),
                    version: v.version,
                    labels: Some(v.labels.clone()),
                    tier: Some(v.tier.clone()),
                    policies: Some(vec![]),
                    data_type: Some(v.data_type.clone()),
                })
            })
            .collect::<Result<_, ServiceError>>()?;
        Ok(m::GetParameterHistoryResult { parameters: Some(parameters), next_token })
    }

    /// Reads, changes and writes back one parameter under compare-and-swap.
    async fn update<T>(
        &self,
        scope: &Scope,
        id: &str,
        mut change: impl FnMut(&mut ParamRecord) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let name = name_of(id);
        loop {
            let (key, rev, mut rec) = self.read(scope, name)?.ok_or_else(|| not_found(id))?;
            let out = change(&mut rec)?;
            if self.write(&key, rev, Some(&rec)).await? {
                return Ok(out);
            }
        }
    }

    pub async fn label_parameter_version(
        &self,
        scope: &Scope,
        req: m::LabelParameterVersionRequest,
    ) -> Result<m::LabelParameterVersionResult, ServiceError> {
        if req.labels.is_empty() || req.labels.len() > 10 {
            return Err(validation(
                "1 validation error detected: Value at 'labels' failed to satisfy constraint: Member must have length between 1 and 10",
            ));
        }
        self.update(scope, &req.name, |rec| {
            let target = req.parameter_version.unwrap_or(rec.latest().version);
            if !rec.versions.iter().any(|v| v.version == target) {
                return Err(ServiceError::sender(
                    "ParameterVersionNotFound",
                    format!("Systems Manager could not find version {target} of {}. Verify the version and try again.", rec.name),
                ));
            }
            let (valid, invalid): (Vec<&String>, Vec<&String>) = req.labels.iter().partition(|l| check_label(l));
            for l in &valid {
                for v in rec.versions.iter_mut() {
                    v.labels.retain(|x| x != *l);
                }
            }
            let v = rec.versions.iter_mut().find(|v| v.version == target).ok_or_else(|| internal("version vanished"))?;
            for l in &valid {
                v.labels.push((*l).clone());
            }
            if v.labels.len() > 10 {
                return Err(ServiceError::sender(
                    "ParameterVersionLabelLimitExceeded",
                    "A parameter version can have maximum 10 labels.Move one or more labels to another version and try again.",
                ));
            }
            Ok(m::LabelParameterVersionResult { invalid_labels: Some(invalid.into_iter().cloned().collect()), parameter_version: target })
        })
        .await
    }

    pub async fn unlabel_parameter_version(
        &self,
        scope: &Scope,
        req: m::UnlabelParameterVersionRequest,
    ) -> Result<m::UnlabelParameterVersionResult, ServiceError> {
        self.update(scope, &req.name, |rec| {
            let name = rec.name.clone();
            let v = rec.versions.iter_mut().find(|v| v.version == req.parameter_version).ok_or_else(|| {
                ServiceError::sender(
                    "ParameterVersionNotFound",
                    format!("Systems Manager could not find version {} of {name}. Verify the version and try again.", req.parameter_version),
                )
            })?;
            let (removed, invalid): (Vec<String>, Vec<String>) = req.labels.iter().cloned().partition(|l| v.labels.contains(l));
            v.labels.retain(|l| !removed.contains(l));
            Ok(m::UnlabelParameterVersionResult { removed_labels: Some(removed), invalid_labels: Some(invalid) })
        })
        .await
    }

    fn check_resource(resource_type: &str, id: &str) -> Result<(), ServiceError> {
        match resource_type {
            "Parameter" => Ok(()),
            "Document" | "ManagedInstance" | "MaintenanceWindow" | "PatchBaseline" | "OpsItem"
            | "OpsMetadata" | "Automation" | "Association" => Err(ServiceError::sender(
                "InvalidResourceId",
                format!("Gantry serves Parameter Store only: {resource_type} {id} does not exist."),
            )),
            other => Err(ServiceError::sender(
                "InvalidResourceType",
                format!("The resource type {other} is not valid."),
            )),
        }
    }

    pub async fn add_tags(
        &self,
        scope: &Scope,
        req: m::AddTagsToResourceRequest,
    ) -> Result<m::AddTagsToResourceResult, ServiceError> {
        Self::check_resource(&req.resource_type, &req.resource_id)?;
        for t in &req.tags {
            if t.key.is_empty()
                || t.key.len() > 128
                || t.value.len() > 256
                || t.key.to_ascii_lowercase().starts_with("aws:")
            {
                return Err(validation(format!(
                    "Invalid tag: key {:?} (1-128 characters, not aws:), value at most 256 characters.",
                    t.key
                )));
            }
        }
        let r = self
            .update(scope, &req.resource_id, |rec| {
                for t in &req.tags {
                    rec.tags.retain(|x| x.key != t.key);
                    rec.tags.push(t.clone());
                }
                if rec.tags.len() > 50 {
                    return Err(ServiceError::sender("TooManyTagsError", "The Targets parameter includes too many tags. Remove one or more tags and try the command again."));
                }
                Ok(())
            })
            .await;
        r.map_err(|e| if e.code == "ParameterNotFound" { invalid_resource(&req.resource_id) } else { e })?;
        Ok(m::AddTagsToResourceResult {})
    }

    pub async fn remove_tags(
        &self,
        scope: &Scope,
        req: m::RemoveTagsFromResourceRequest,
    ) -> Result<m::RemoveTagsFromResourceResult, ServiceError> {
        Self::check_resource(&req.resource_type, &req.resource_id)?;
        self.update(scope, &req.resource_id, |rec| {
            rec.tags.retain(|t| !req.tag_keys.contains(&t.key));
            Ok(())
        })
        .await
        .map_err(|e| if e.code == "ParameterNotFound" { invalid_resource(&req.resource_id) } else { e })?;
        Ok(m::RemoveTagsFromResourceResult {})
    }

    pub fn list_tags(
        &self,
        scope: &Scope,
        req: m::ListTagsForResourceRequest,
    ) -> Result<m::ListTagsForResourceResult, ServiceError> {
        Self::check_resource(&req.resource_type, &req.resource_id)?;
        let (_, _, rec) =
            self.read(scope, name_of(&req.resource_id))?.ok_or_else(|| invalid_resource(&req.resource_id))?;
        Ok(m::ListTagsForResourceResult { tag_list: Some(rec.tags) })
    }
}

fn invalid_resource(id: &str) -> ServiceError {
    ServiceError::sender(
        "InvalidResourceId",
        format!("The resource ID \"{id}\" is not valid. Verify the ID and try again."),
    )
}

/// [`gantry_ports::SecretResolver`] for SSM parameters: a name (in the task's Region) or an ARN.
#[derive(Debug, Clone)]
pub struct Resolver(pub Arc<Ssm>);

impl gantry_ports::SecretResolver for Resolver {
    fn resolve(&self, account: &str, region: &str, value_from: &str) -> Result<Secret, String> {
        let scope = match value_from.strip_prefix("arn:").map(|r| r.split(':').collect::<Vec<_>>()) {
            Some(p) if p.len() >= 5 && p[1] == "ssm" => Scope::new(p[3], p[2]),
            _ => Scope::new(account, region),
        };
        let fail = || {
            format!(
                "execution resource retrieval failed: unable to retrieve secrets from ssm: service call has been retried 1 time(s): invalid parameters: {value_from}"
            )
        };
        let (key, _, v, _) = self.0.select(&scope, value_from).map_err(|_| fail())?;
        self.0.plain(&key, &v).map(Secret::new).map_err(|e| format!("{}: {}", fail(), e.message))
    }
}

#[cfg(test)]
mod tests;
