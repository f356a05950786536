//! Temporary credentials: AssumeRole's and GetSessionToken's sessions.
//!
//! A session is one record at `/_sts/session/ASIA...`: its principal, expiry, session policies
//! and tags, and its secret key and session token sealed ([`gantry_core::Sealer`]) with the
//! key's ID as associated data. The front door finds it through [`gantry_ports::KeyStore`];
//! a token must match the stored one exactly (constant-time) and expires when the session does.
//! Expired sessions are refused with `ExpiredToken` and removed by the next session made after
//! them (a bounded sweep), so the store does not grow with them.

use gantry_core::{Secret, ServiceError};
use gantry_ports::{Credential, Principal, PrincipalKind};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub(crate) const PREFIX: &str = "/_sts/session/";

/// A stored session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub account: String,
    pub arn: String,
    pub user_id: String,
    /// `user` (GetSessionToken of a user), `root`, or `role` (AssumeRole).
    pub kind: String,
    #[serde(default)]
    pub user_name: String,
    #[serde(default)]
    pub role_name: String,
    #[serde(default)]
    pub role_arn: String,
    #[serde(default)]
    pub session_name: String,
    pub sealed_secret: String,
    pub sealed_token: String,
    /// Epoch seconds.
    pub expires: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_policies: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
}

impl SessionRecord {
    pub(crate) fn principal(&self) -> Principal {
        let kind = match self.kind.as_str() {
            "role" => PrincipalKind::AssumedRole {
                role_name: self.role_name.clone(),
                role_arn: self.role_arn.clone(),
                session_name: self.session_name.clone(),
            },
            "user" => PrincipalKind::User { name: self.user_name.clone() },
            _ => PrincipalKind::Root,
        };
        let session_policies = self.session_policies.as_ref().map(|docs| {
            Arc::new(
                docs.iter()
                    .filter_map(|d| gantry_policy::Policy::parse(d, gantry_policy::Kind::Identity).ok())
                    .collect(),
            )
        });
        Principal {
            kind,
            session_policies,
            session_tags: self.tags.clone(),
            account: self.account.clone(),
            arn: self.arn.clone(),
            user_id: self.user_id.clone(),
        }
    }

    pub(crate) fn credential(
        &self,
        id: &str,
        sealer: &gantry_core::Sealer,
    ) -> Result<Credential, ServiceError> {
        let open = |s: &str| -> Result<Secret, ServiceError> {
            let raw = sealer.open(&format!("{PREFIX}{id}"), s).map_err(|e| {
                ServiceError::receiver("InternalFailure", format!("a session cannot be opened: {e}"))
            })?;
            String::from_utf8(raw)
                .map(Secret::new)
                .map_err(|_| ServiceError::receiver("InternalFailure", "a session's secret is not UTF-8"))
        };
        Ok(Credential {
            access_key_id: id.to_string(),
            secret: open(&self.sealed_secret)?,
            session_token: Some(open(&self.sealed_token)?),
            expires_at: Some(self.expires),
            principal: Arc::new(self.principal()),
        })
    }
}
