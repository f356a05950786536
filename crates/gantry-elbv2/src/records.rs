//! ELBv2's stored records, declared to the shared record layer (`gantry_runtime::records`):
//! their keys and index rows. A resource is stored as ELBv2 describes it (the generated shape,
//! already normalized and defaulted by the operation that wrote it) plus what the shape has no
//! room for: attributes, tags, the listener's extra certificates and rules.

use crate::keys;
use gantry_core::{Scope, ServiceError};
use gantry_model::elbv2::{Listener, LoadBalancer, LoadBalancerState, Rule, Tag, TargetGroup};
use gantry_ports::lb::LbState;
use gantry_runtime::records::{Record, RecordError, Row};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A load balancer, its listeners and their rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LbRecord {
    pub lb: LoadBalancer,
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub listeners: Vec<ListenerRecord>,
}

/// A listener: its shape (default certificate and default actions included), the rest of its
/// certificates, its attributes, tags and rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenerRecord {
    pub listener: Listener,
    /// Certificate ARNs added with AddListenerCertificates (not the default one).
    #[serde(default)]
    pub extra_certificates: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The default rule's ID (its ARN is the listener's rule ARN with this ID) and tags.
    pub default_rule_id: String,
    #[serde(default)]
    pub default_rule_tags: Vec<Tag>,
    /// Every other rule, in no particular order.
    #[serde(default)]
    pub rules: Vec<RuleRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleRecord {
    pub rule: Rule,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// A target group and its attributes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TgRecord {
    /// As described, without `LoadBalancerArns` (derived from the rules when described).
    pub tg: TargetGroup,
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// A registered target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    pub tg_name: String,
    pub id: String,
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub registered_at_ms: i64,
    /// Set by DeregisterTargets while the target drains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining: Option<DrainingRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainingRecord {
    pub since_ms: i64,
    pub deadline_ms: i64,
}

impl LbRecord {
    pub fn name(&self) -> &str {
        self.lb.load_balancer_name.as_deref().unwrap_or_default()
    }
    pub fn arn(&self) -> &str {
        self.lb.load_balancer_arn.as_deref().unwrap_or_default()
    }
    pub fn lb_type(&self) -> &str {
        self.lb.r#type.as_deref().unwrap_or("application")
    }
    pub fn is_network(&self) -> bool {
        self.lb_type() == "network"
    }
    /// Its `State.Code` (`None`: a code ELBv2 does not have, which Gantry never writes).
    pub fn state(&self) -> Option<LbState> {
        self.lb.state.as_ref().and_then(|s| s.code.as_deref()).and_then(LbState::parse)
    }
    pub fn set_state(&mut self, state: LbState) {
        self.lb.state = Some(LoadBalancerState { code: Some(state.as_str().into()), reason: None });
    }
}

impl ListenerRecord {
    pub fn arn(&self) -> &str {
        self.listener.listener_arn.as_deref().unwrap_or_default()
    }
    pub fn default_rule_arn(&self) -> String {
        keys::rule_arn(self.arn(), &self.default_rule_id)
    }
}

impl RuleRecord {
    pub fn arn(&self) -> &str {
        self.rule.rule_arn.as_deref().unwrap_or_default()
    }
    pub fn priority(&self) -> u32 {
        self.rule.priority.as_deref().and_then(|p| p.parse().ok()).unwrap_or(u32::MAX)
    }
}

impl TgRecord {
    pub fn name(&self) -> &str {
        self.tg.target_group_name.as_deref().unwrap_or_default()
    }
    pub fn arn(&self) -> &str {
        self.tg.target_group_arn.as_deref().unwrap_or_default()
    }
}

impl Record for LbRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::lb(scope, self.name())
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        let key = keys::lb(scope, self.name()).into_bytes();
        let mut rows = vec![(keys::resource_index(scope, "lb", self.name()), key.clone())];
        if self.state() == Some(LbState::Provisioning) {
            rows.push((keys::provisioning(scope, self.name()), key));
        }
        rows
    }
}

impl Record for TgRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::tg(scope, self.name())
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        vec![(keys::resource_index(scope, "tg", self.name()), keys::tg(scope, self.name()).into_bytes())]
    }
}

impl Record for TargetRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::target(scope, &self.tg_name, &self.id, self.port)
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        match self.draining {
            Some(_) => vec![(
                keys::draining(scope, &self.tg_name, &self.id, self.port),
                self.key(scope).into_bytes(),
            )],
            None => Vec::new(),
        }
    }
}

/// A record that could not be read, as the service's own failure.
pub fn unreadable(e: RecordError) -> ServiceError {
    ServiceError::receiver("InternalFailure", e.to_string())
}
