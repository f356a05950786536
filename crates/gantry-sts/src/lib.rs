//! AWS Security Token Service (query protocol): caller identity, temporary credentials
//! (AssumeRole with trust policies, session policies and tags; GetSessionToken), and
//! GetAccessKeyInfo; and the key ring that signatures are verified against.
//!
//! Operations take their input and return their output in the JSON form of the generated shapes
//! (`gantry_model::sts`); the front door speaks the query protocol around them. This crate knows
//! no HTTP and no wire format, and depends on no other service: it reads IAM's roles through
//! [`gantry_ports::Roles`], asks [`gantry_ports::Authorizer`] whether a caller's own policies
//! allow `sts:AssumeRole`, and the front door finds sessions through [`gantry_ports::KeyStore`].

pub mod keys;
mod sessions;
#[cfg(test)]
mod tests;

use base64::Engine;
use gantry_core::{Clock, Sealer, SecretGen, ServiceError};
use gantry_model::sts::GetCallerIdentityResponse;
use gantry_policy::{Context, Decision, Kind, Policy, PolicySet, PrincipalId, Request};
use gantry_ports::{AuthContext, Authorizer, Credential, KeyStore, Principal, PrincipalKind, Roles};
use gantry_runtime::records;
use gantry_store::{Store, Txn};
use serde_json::{Value, json};
use sessions::{PREFIX, SessionRecord};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What STS needs besides its store: the other services, through their ports.
pub struct StsDeps {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub secrets: Arc<dyn SecretGen>,
    pub sealer: Sealer,
    pub roles: Arc<dyn Roles>,
    pub authorizer: Arc<dyn Authorizer>,
}

/// A role session made for a service ([`Sts::assume_role_for_service`]).
#[derive(Debug, Clone)]
pub struct ServiceSession {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: gantry_core::Secret,
    pub session_token: gantry_core::Secret,
    /// Epoch seconds.
    pub expiration: i64,
}

/// The STS service.
pub struct Sts {
    deps: Option<StsDeps>,
    /// Sessions opened lately (they never change; expiry is checked on use).
    cache: RwLock<HashMap<String, Option<Arc<Credential>>>>,
}

impl std::fmt::Debug for Sts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sts").finish_non_exhaustive()
    }
}

impl Default for Sts {
    fn default() -> Self {
        Self::new()
    }
}

fn access_denied(m: impl Into<String>) -> ServiceError {
    ServiceError::sender("AccessDenied", m).with_status(403)
}
fn validation(m: impl Into<String>) -> ServiceError {
    ServiceError::sender("ValidationError", m)
}

impl Sts {
    /// STS without sessions: GetCallerIdentity only (tests of other parts).
    pub fn new() -> Self {
        Sts { deps: None, cache: RwLock::new(HashMap::new()) }
    }

    pub fn with(deps: StsDeps) -> Self {
        Sts { deps: Some(deps), cache: RwLock::new(HashMap::new()) }
    }

    /// Runs one operation: its input as JSON, its output as JSON.
    pub async fn call(&self, caller: &Principal, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let input: Value = if input.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(input).map_err(|e| validation(e.to_string()))?
        };
        match (op, &self.deps) {
            ("GetCallerIdentity", _) => render(&self.get_caller_identity(caller)),
            ("AssumeRole", Some(d)) => render(&self.assume_role(d, caller, &input).await?),
            ("GetSessionToken", Some(d)) => render(&self.get_session_token(d, caller, &input).await?),
            ("GetAccessKeyInfo", Some(d)) => {
                let id = input["AccessKeyId"].as_str().unwrap_or_default();
                if id.len() < 16 || !(id.starts_with("AKIA") || id.starts_with("ASIA")) {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{id}' at 'accessKeyId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w]*"
                    )));
                }
                let account = self
                    .lookup_session(d, id)
                    .map(|c| c.principal.account.clone())
                    .or_else(|| d.roles.key_account(id))
                    .unwrap_or_else(|| caller.account.clone());
                render(&json!({"Account": account}))
            }
            _ if gantry_model::sts::OPERATIONS.contains(&op) => Err(ServiceError::sender(
                "InvalidAction",
                format!("The action {op} is not implemented by Gantry's STS (no identity federation)."),
            )),
            _ => Err(invalid_action(op)),
        }
    }

    /// Who signed the request. No permission is needed, as in AWS.
    pub fn get_caller_identity(&self, caller: &Principal) -> GetCallerIdentityResponse {
        GetCallerIdentityResponse {
            user_id: Some(caller.user_id.clone()),
            account: Some(caller.account.clone()),
            arn: Some(caller.arn.clone()),
        }
    }

    async fn assume_role(
        &self,
        d: &StsDeps,
        caller: &Principal,
        input: &Value,
    ) -> Result<Value, ServiceError> {
        let role_arn = input["RoleArn"].as_str().unwrap_or_default();
        let session = input["RoleSessionName"].as_str().unwrap_or_default();
        if !(2..=64).contains(&session.len())
            || !session.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
        {
            return Err(validation(format!(
                "1 validation error detected: Value '{session}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
            )));
        }
        if caller.is_root() {
            return Err(access_denied("Roles may not be assumed by root accounts."));
        }
        let denied = || {
            access_denied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.arn
            ))
        };
        let role = d.roles.role(&caller.account, role_arn).ok_or_else(denied)?;
        let chained = matches!(caller.kind, PrincipalKind::AssumedRole { .. });
        let duration = input["DurationSeconds"].as_i64().unwrap_or(3600);
        let max = if chained { 3600 } else { role.max_session_duration };
        if duration < 900 {
            return Err(validation(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
            )));
        }
        if duration > max {
            return Err(validation(format!(
                "The requested DurationSeconds exceeds the {} set for this role.",
                if chained {
                    "1 hour session limit for roles assumed by role chaining"
                } else {
                    "MaxSessionDuration"
                }
            )));
        }
        // Session tags.
        let mut tags: Vec<(String, String)> = Vec::new();
        for t in input["Tags"].as_array().into_iter().flatten() {
            let (Some(k), Some(v)) = (t["Key"].as_str(), t["Value"].as_str()) else { continue };
            if k.is_empty() || k.len() > 128 || v.len() > 256 {
                return Err(validation(format!("Invalid session tag {k:?}.")));
            }
            tags.push((k.to_string(), v.to_string()));
        }
        if tags.len() > 50 {
            return Err(validation("The number of session tags exceeds 50."));
        }
        // The trust policy: a statement naming the caller itself allows on its own; one naming
        // only the account needs the caller's own policies to allow sts:AssumeRole too.
        let trust = Policy::parse(&role.trust_policy, Kind::Trust).map_err(|_| denied())?;
        let mut ctx = Context::new();
        if let Some(x) = input["ExternalId"].as_str() {
            ctx.set1("sts:ExternalId", x);
        }
        ctx.set1("sts:RoleSessionName", session);
        ctx.set1("aws:PrincipalArn", principal_arn(caller));
        ctx.set1("aws:PrincipalAccount", caller.account.clone());
        for (k, v) in &tags {
            ctx.set1(&format!("aws:RequestTag/{k}"), v.clone());
        }
        if !tags.is_empty() {
            ctx.set("aws:TagKeys", tags.iter().map(|t| t.0.clone()).collect());
        }
        let mut arns = vec![caller.arn.clone()];
        if let PrincipalKind::AssumedRole { role_arn, .. } = &caller.kind {
            arns.push(role_arn.clone());
        }
        let action = if tags.is_empty() { "sts:AssumeRole" } else { "sts:TagSession" };
        let ask = |who: &PrincipalId, action: &str| {
            gantry_policy::evaluate(
                &PolicySet { identity: &[], session: None, resource: Some(&trust) },
                &Request { action, resource: role_arn, principal: who, context: &ctx },
            )
        };
        for action in ["sts:AssumeRole", action] {
            let direct = PrincipalId { account: String::new(), arns: arns.clone(), service: None };
            match ask(&direct, action) {
                Decision::Allow => continue,
                Decision::ExplicitDeny => return Err(denied()),
                Decision::ImplicitDeny => {}
            }
            let via_account =
                PrincipalId { account: caller.account.clone(), arns: arns.clone(), service: None };
            if ask(&via_account, action) != Decision::Allow {
                return Err(denied());
            }
            let mut actx = AuthContext::new();
            actx.extend(&ctx);
            if d.authorizer.authorize(caller, action, role_arn, &actx, None) != Decision::Allow {
                return Err(denied());
            }
        }
        // Session policies.
        let mut docs = Vec::new();
        if let Some(p) = input["Policy"].as_str() {
            Policy::parse(p, Kind::Identity)
                .map_err(|e| ServiceError::sender("MalformedPolicyDocument", e.0))?;
            docs.push(p.to_string());
        }
        for p in input["PolicyArns"].as_array().into_iter().flatten() {
            let arn = p["arn"].as_str().unwrap_or_default();
            let doc = d.roles.managed_policy(&caller.account, arn).ok_or_else(|| {
                ServiceError::sender("InvalidParameterValue", format!("The policy {arn} does not exist."))
            })?;
            docs.push(doc);
        }
        if docs.len() > 11 {
            return Err(validation("At most 10 managed policy ARNs may be passed as session policies."));
        }
        let arn = format!("arn:aws:sts::{}:assumed-role/{}/{session}", caller.account, role.name);
        let user_id = format!("{}:{session}", role.role_id);
        let rec = |secret: String, token: String, expires: i64| SessionRecord {
            account: caller.account.clone(),
            arn: arn.clone(),
            user_id: user_id.clone(),
            kind: "role".into(),
            user_name: String::new(),
            role_name: role.name.clone(),
            role_arn: role.arn.clone(),
            session_name: session.to_string(),
            sealed_secret: secret,
            sealed_token: token,
            expires,
            session_policies: (!docs.is_empty()).then(|| docs.clone()),
            tags: tags.clone(),
        };
        let creds = self.issue(d, duration, rec).await?;
        Ok(json!({"Credentials": creds, "AssumedRoleUser": {"AssumedRoleId": user_id, "Arn": arn},
            "PackedPolicySize": if docs.is_empty() && tags.is_empty() { 0 } else { 6 }}))
    }

    /// The role `role_arn` of `account` if its trust policy allows the service principal
    /// `service` (`ecs-tasks.amazonaws.com`) `sts:AssumeRole`; else AccessDenied.
    pub fn service_may_assume(
        &self,
        account: &str,
        role_arn: &str,
        service: &str,
    ) -> Result<gantry_ports::RoleInfo, ServiceError> {
        let d = self.deps.as_ref().ok_or_else(|| {
            ServiceError::receiver("InternalFailure", "STS has no sessions in this configuration")
        })?;
        let denied = || {
            access_denied(format!(
                "{service} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
            ))
        };
        let role = d.roles.role(account, role_arn).ok_or_else(denied)?;
        let trust = Policy::parse(&role.trust_policy, Kind::Trust).map_err(|_| denied())?;
        let ctx = Context::new();
        let who =
            PrincipalId { account: String::new(), arns: Vec::new(), service: Some(service.to_string()) };
        let allowed = gantry_policy::evaluate(
            &PolicySet { identity: &[], session: None, resource: Some(&trust) },
            &Request { action: "sts:AssumeRole", resource: role_arn, principal: &who, context: &ctx },
        );
        if allowed != Decision::Allow {
            return Err(denied());
        }
        Ok(role)
    }

    /// A session of `role_arn` for a service principal (`ecs-tasks.amazonaws.com`), as ECS
    /// gets a task's role credentials: the role's trust policy must allow the service
    /// `sts:AssumeRole`; the session is named `session_name` (the task ID) and lasts `duration`
    /// seconds, at most the role's MaxSessionDuration (and no less than the 900 seconds an API
    /// caller may ask for only if the operator configured a shorter life: the duration is
    /// Gantry's setting, never a request's). The answer is in STS's `Credentials`
    /// shape (`Expiration` in epoch seconds) beside the role's ARN.
    pub async fn assume_role_for_service(
        &self,
        account: &str,
        role_arn: &str,
        service: &str,
        session_name: &str,
        duration: i64,
    ) -> Result<ServiceSession, ServiceError> {
        let d = self.deps.as_ref().ok_or_else(|| {
            ServiceError::receiver("InternalFailure", "STS has no sessions in this configuration")
        })?;
        let role = self.service_may_assume(account, role_arn, service)?;
        let duration = duration.clamp(1, role.max_session_duration.max(900));
        let arn = format!("arn:aws:sts::{account}:assumed-role/{}/{session_name}", role.name);
        let user_id = format!("{}:{session_name}", role.role_id);
        let rec = |secret: String, token: String, expires: i64| SessionRecord {
            account: account.to_string(),
            arn: arn.clone(),
            user_id: user_id.clone(),
            kind: "role".into(),
            user_name: String::new(),
            role_name: role.name.clone(),
            role_arn: role.arn.clone(),
            session_name: session_name.to_string(),
            sealed_secret: secret,
            sealed_token: token,
            expires,
            session_policies: None,
            tags: Vec::new(),
        };
        let creds = self.issue(d, duration, rec).await?;
        let text = |k: &str| creds[k].as_str().unwrap_or_default().to_string();
        Ok(ServiceSession {
            role_arn: role.arn.clone(),
            access_key_id: text("AccessKeyId"),
            secret_access_key: gantry_core::Secret::new(text("SecretAccessKey")),
            session_token: gantry_core::Secret::new(text("SessionToken")),
            expiration: creds["Expiration"].as_f64().unwrap_or_default() as i64,
        })
    }

    async fn get_session_token(
        &self,
        d: &StsDeps,
        caller: &Principal,
        input: &Value,
    ) -> Result<Value, ServiceError> {
        let (kind, user_name) = match &caller.kind {
            PrincipalKind::User { name } if caller.session_policies.is_none() => ("user", name.clone()),
            PrincipalKind::Root => ("root", String::new()),
            _ => return Err(access_denied("Cannot call GetSessionToken with session credentials")),
        };
        let max = if kind == "root" { 3600 } else { 129_600 };
        let duration =
            input["DurationSeconds"].as_i64().unwrap_or(if kind == "root" { 3600 } else { 43_200 });
        if !(900..=max).contains(&duration) {
            return Err(validation(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and {max}"
            )));
        }
        let rec = |secret: String, token: String, expires: i64| SessionRecord {
            account: caller.account.clone(),
            arn: caller.arn.clone(),
            user_id: caller.user_id.clone(),
            kind: kind.into(),
            user_name: user_name.clone(),
            role_name: String::new(),
            role_arn: String::new(),
            session_name: String::new(),
            sealed_secret: secret,
            sealed_token: token,
            expires,
            session_policies: None,
            tags: Vec::new(),
        };
        Ok(json!({"Credentials": self.issue(d, duration, rec).await?}))
    }

    /// Makes and stores a session of `duration` seconds; its credentials in STS's shape.
    async fn issue(
        &self,
        d: &StsDeps,
        duration: i64,
        rec: impl Fn(String, String, i64) -> SessionRecord,
    ) -> Result<Value, ServiceError> {
        let now = d.clock.now().0.div_euclid(1000);
        let expires = now + duration;
        let id = d.secrets.access_key_id("ASIA");
        let secret = d.secrets.secret_access_key();
        let mut raw = [0u8; 96];
        d.secrets.fill(&mut raw);
        let token = base64::engine::general_purpose::STANDARD.encode(raw);
        let key = format!("{PREFIX}{id}");
        let r = rec(
            d.sealer.seal(&key, secret.expose().as_bytes()),
            d.sealer.seal(&key, token.as_bytes()),
            expires,
        );
        let mut txn = Txn::new().when(&key, 0).put(&key, records::encode(&r));
        // Up to 16 expired sessions go with each new one.
        let mut expired = Vec::new();
        d.store.visit(PREFIX, &mut |kv| {
            if expired.len() < 16
                && let Ok(s) = records::parse::<SessionRecord>(&kv.value)
                && s.expires + 300 < now
            {
                expired.push((kv.key.clone(), kv.mod_revision));
            }
        });
        for (k, rev) in expired {
            txn = txn.when(&k, rev).delete(&k);
        }
        let ok =
            d.store.txn(txn).await.map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))?;
        if !ok.succeeded {
            // Only a concurrent sweep can conflict: store the session alone.
            d.store
                .txn(Txn::new().when(&key, 0).put(&key, records::encode(&r)))
                .await
                .map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))?;
        }
        Ok(json!({"AccessKeyId": id, "SecretAccessKey": secret.expose(), "SessionToken": token,
            "Expiration": expires as f64}))
    }

    fn lookup_session(&self, d: &StsDeps, id: &str) -> Option<Arc<Credential>> {
        if let Some(c) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(id) {
            return c.clone();
        }
        let found = records::load::<SessionRecord>(&*d.store, &format!("{PREFIX}{id}"))
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "an STS session could not be read");
                None
            })
            .and_then(|r| r.value.credential(id, &d.sealer).ok())
            .map(Arc::new);
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        // An unknown ID is not remembered: a session made by another request may appear.
        if found.is_some() {
            cache.insert(id.to_string(), found.clone());
        }
        found
    }
}

/// The ARN `aws:PrincipalArn` holds: a session's role, else the principal's own.
fn principal_arn(p: &Principal) -> String {
    match &p.kind {
        PrincipalKind::AssumedRole { role_arn, .. } => role_arn.clone(),
        _ => p.arn.clone(),
    }
}

impl KeyStore for Sts {
    fn lookup(&self, access_key_id: &str) -> Option<Arc<Credential>> {
        if !access_key_id.starts_with("ASIA") {
            return None;
        }
        self.lookup_session(self.deps.as_ref()?, access_key_id)
    }
}

/// The query protocol's answer to an action the service does not have.
pub fn invalid_action(op: &str) -> ServiceError {
    ServiceError::sender("InvalidAction", format!("Could not find operation {op} for version 2011-06-15"))
}

fn render<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(v).map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))
}
