//! ECS's references to secrets: `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX`
//! followed by the optional `:json-key:version-stage:version-id`, resolved as the ECS agent
//! does, with its words for each failure.

use crate::SecretsManager;
use gantry_core::{Scope, Secret};
use gantry_model::secretsmanager::GetSecretValueRequest;
use std::sync::Arc;

/// [`gantry_ports::SecretResolver`] for Secrets Manager ARNs.
#[derive(Debug, Clone)]
pub struct Resolver(pub Arc<SecretsManager>);

/// A reference split into the secret's ARN and ECS's three optional suffixes.
#[derive(Debug, PartialEq, Eq)]
pub struct Reference<'a> {
    pub secret: &'a str,
    pub json_key: Option<&'a str>,
    pub version_stage: Option<&'a str>,
    pub version_id: Option<&'a str>,
}

/// Splits `value_from`; `None` when it is not a Secrets Manager secret's ARN.
pub fn parse_reference(value_from: &str) -> Option<Reference<'_>> {
    // arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME then up to three suffixes.
    let mut ends = value_from.match_indices(':').map(|(i, _)| i);
    let name_start = ends.nth(5)? + 1;
    let head = &value_from[..name_start];
    let parts: Vec<&str> = head.split(':').collect();
    if parts.len() < 7 || parts[2] != "secretsmanager" || parts[5] != "secret" {
        return None;
    }
    let rest = &value_from[name_start..];
    let mut it = rest.split(':');
    let name = it.next().filter(|n| !n.is_empty())?;
    let secret = &value_from[..name_start + name.len()];
    fn nonempty_of(s: Option<&str>) -> Option<&str> {
        s.filter(|s| !s.is_empty())
    }
    Some(Reference {
        secret,
        json_key: nonempty_of(it.next()),
        version_stage: nonempty_of(it.next()),
        version_id: nonempty_of(it.next()),
    })
}

impl gantry_ports::SecretResolver for Resolver {
    fn resource_policy(&self, account: &str, region: &str, value_from: &str) -> Option<String> {
        let r = parse_reference(value_from)?;
        let arn_region = r.secret.split(':').nth(3).unwrap_or(region);
        let arn_account = r.secret.split(':').nth(4).unwrap_or(account);
        self.0.authz_target(&Scope::new(arn_account, arn_region), r.secret)?.1
    }

    fn resolve(&self, account: &str, region: &str, value_from: &str) -> Result<Secret, String> {
        let prefix = "execution resource retrieval failed: unable to retrieve secret from asm: service call has been retried 1 time(s)";
        let r = parse_reference(value_from)
            .ok_or_else(|| format!("{prefix}: invalid secret ARN {value_from}"))?;
        let arn_region = r.secret.split(':').nth(3).unwrap_or(region);
        let arn_account = r.secret.split(':').nth(4).unwrap_or(account);
        let scope = Scope::new(arn_account, arn_region);
        let req = GetSecretValueRequest {
            secret_id: r.secret.to_string(),
            version_id: r.version_id.map(str::to_string),
            version_stage: r.version_stage.map(str::to_string),
        };
        let v = self.0.get_secret_value(&scope, req).map_err(|e| {
            format!(
                "{prefix}: failed to fetch secret {} from secrets manager: {}: {}",
                r.secret, e.code, e.message
            )
        })?;
        let text = match (v.secret_string, v.secret_binary) {
            (Some(s), _) => s,
            (None, Some(b)) => b,
            (None, None) => String::new(),
        };
        match r.json_key {
            None => Ok(Secret::new(text)),
            Some(key) => {
                let doc: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
                    format!(
                        "{prefix}: secret {} is not a JSON object, so key {key} cannot be read from it",
                        r.secret
                    )
                })?;
                match doc.get(key) {
                    Some(serde_json::Value::String(s)) => Ok(Secret::new(s.clone())),
                    Some(serde_json::Value::Null) | None => Err(format!(
                        "{prefix}: retrieved secret from Secrets Manager did not contain json key {key}"
                    )),
                    Some(other) => Ok(Secret::new(other.to_string())),
                }
            }
        }
    }
}
