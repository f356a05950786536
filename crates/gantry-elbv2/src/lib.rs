//! Elastic Load Balancing v2 (the query protocol's `elasticloadbalancing`): application and
//! network load balancers, their listeners and rules, target groups and their targets.
//!
//! Operations take their input and return their output in the JSON form of the generated shapes
//! (`gantry_model::elbv2`); the front door speaks the query protocol around them. Every write is
//! a compare-and-swap transaction through the shared record layer, under ELBv2's own prefixes
//! (`keys`). The desired configuration of the data plane is derived from the records
//! ([`config`]) and handed over as `gantry_ports::lb::LbConfig`; the health of targets comes back
//! through `gantry_ports::lb::TargetHealthSource`; certificates come from ACM through
//! `gantry_ports::lb::CertificateSource`. A load balancer is created `provisioning` and made
//! `active` by the [`activator`] controller; a deregistered target's draining is ended by the
//! [`drainer`] controller.
//!
//! This crate knows no HTTP and no wire format, and depends on no other service's crate.

pub mod activator;
pub mod config;
pub mod drainer;
mod ingress;
pub mod keys;
mod listeners;
mod load_balancers;
pub mod records;
mod tags;
mod target_groups;
pub mod validate;

use gantry_core::{Clock, IdGen, Scope, ServiceError};
use gantry_ports::lb::{
    CertificateSource, CertificateUse, ObservedHealth, PortFuture, RuleInfo, TargetGroupInfo,
    TargetHealthSource, TargetReason, TargetRef, TargetRegistry, TargetState, TargetType,
    WeightedTargetGroup,
};
use gantry_runtime::records::{Stored, load, load_prefix};
use gantry_store::{Op, Store, Txn};
use records::{LbRecord, TargetRecord, TgRecord, unreadable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use validate::validation;

/// How many times an operation reads and writes again after losing a compare-and-swap.
const ATTEMPTS: usize = 32;

/// The ELBv2 service.
pub struct Elbv2 {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    health: Arc<dyn TargetHealthSource>,
    certificates: Arc<dyn CertificateSource>,
}

impl std::fmt::Debug for Elbv2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elbv2").finish_non_exhaustive()
    }
}

impl Elbv2 {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        health: Arc<dyn TargetHealthSource>,
        certificates: Arc<dyn CertificateSource>,
    ) -> Self {
        Elbv2 { store, clock, ids, health, certificates }
    }

    /// Runs one operation in `scope`: its input as JSON, its output as JSON.
    pub async fn call(&self, scope: &Scope, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        match op {
            "CreateLoadBalancer" => render(self.create_load_balancer(scope, parse(input)?).await?),
            "DescribeLoadBalancers" => render(self.describe_load_balancers(scope, parse(input)?)?),
            "DeleteLoadBalancer" => render(self.delete_load_balancer(scope, parse(input)?).await?),
            "DescribeLoadBalancerAttributes" => {
                render(self.describe_load_balancer_attributes(scope, parse(input)?)?)
            }
            "ModifyLoadBalancerAttributes" => {
                render(self.modify_load_balancer_attributes(scope, parse(input)?).await?)
            }
            "SetSecurityGroups" => render(self.set_security_groups(scope, parse(input)?).await?),
            "SetSubnets" => render(self.set_subnets(scope, parse(input)?).await?),
            "DescribeCapacityReservation" => {
                render(self.describe_capacity_reservation(scope, parse(input)?)?)
            }
            "CreateListener" => render(self.create_listener(scope, parse(input)?).await?),
            "DescribeListeners" => render(self.describe_listeners(scope, parse(input)?)?),
            "ModifyListener" => render(self.modify_listener(scope, parse(input)?).await?),
            "DeleteListener" => render(self.delete_listener(scope, parse(input)?).await?),
            "DescribeListenerAttributes" => render(self.describe_listener_attributes(scope, parse(input)?)?),
            "ModifyListenerAttributes" => {
                render(self.modify_listener_attributes(scope, parse(input)?).await?)
            }
            "DescribeListenerCertificates" => {
                render(self.describe_listener_certificates(scope, parse(input)?)?)
            }
            "AddListenerCertificates" => render(self.add_listener_certificates(scope, parse(input)?).await?),
            "RemoveListenerCertificates" => {
                render(self.remove_listener_certificates(scope, parse(input)?).await?)
            }
            "CreateRule" => render(self.create_rule(scope, parse(input)?).await?),
            "DescribeRules" => render(self.describe_rules(scope, parse(input)?)?),
            "ModifyRule" => render(self.modify_rule(scope, parse(input)?).await?),
            "DeleteRule" => render(self.delete_rule(scope, parse(input)?).await?),
            "SetRulePriorities" => render(self.set_rule_priorities(scope, parse(input)?).await?),
            "CreateTargetGroup" => render(self.create_target_group(scope, parse(input)?).await?),
            "DescribeTargetGroups" => render(self.describe_target_groups(scope, parse(input)?)?),
            "ModifyTargetGroup" => render(self.modify_target_group(scope, parse(input)?).await?),
            "DeleteTargetGroup" => render(self.delete_target_group(scope, parse(input)?).await?),
            "DescribeTargetGroupAttributes" => {
                render(self.describe_target_group_attributes(scope, parse(input)?)?)
            }
            "ModifyTargetGroupAttributes" => {
                render(self.modify_target_group_attributes(scope, parse(input)?).await?)
            }
            "RegisterTargets" => render(self.register_targets(scope, parse(input)?).await?),
            "DeregisterTargets" => render(self.deregister_targets(scope, parse(input)?).await?),
            "DescribeTargetHealth" => render(self.describe_target_health(scope, parse(input)?)?),
            "AddTags" => render(self.add_tags(scope, parse(input)?).await?),
            "RemoveTags" => render(self.remove_tags(scope, parse(input)?).await?),
            "DescribeTags" => render(self.describe_tags(scope, parse(input)?)?),
            _ => Err(invalid_action(op)),
        }
    }

    /// The controller that ends draining, on this service's store, clock and health source.
    pub fn drainer(&self) -> drainer::Drainer {
        drainer::Drainer::new(self.store.clone(), self.clock.clone(), self.health.clone())
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().0
    }

    /// 16 lowercase hex digits, as ELB's resource IDs are.
    fn new_id(&self) -> String {
        let h = self.ids.hex_id();
        h[..16].to_string()
    }

    /// Commits a transaction, refusing keys outside ELBv2's prefixes; whether its compares held.
    async fn commit(&self, txn: Txn) -> Result<bool, ServiceError> {
        for op in &txn.ops {
            let (Op::Put(k, _) | Op::Delete(k) | Op::DeletePrefix(k) | Op::Add(k, _)) = op;
            if !keys::owns(k) {
                return Err(ServiceError::receiver(
                    "InternalFailure",
                    format!("ELBv2 may not write {k}: it is not under ELBv2's prefixes."),
                ));
            }
        }
        let r = self
            .store
            .txn(txn)
            .await
            .map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))?;
        Ok(r.succeeded)
    }

    fn load_lb(&self, scope: &Scope, name: &str) -> Result<Option<Stored<LbRecord>>, ServiceError> {
        load(self.store.as_ref(), &keys::lb(scope, name)).map_err(unreadable)
    }

    /// ECS names a Network Load Balancer's production and test "rules" by their listeners' ARNs
    /// (NLB listeners have no rules but their default one): a listener's ARN as its default
    /// rule's; any other ARN unchanged.
    fn default_rule_of(&self, scope: &Scope, arn: &str) -> String {
        if let Some(keys::ArnRef::Listener { lb_name, .. }) = keys::parse_arn(scope, arn)
            && let Ok(Some(lb)) = self.load_lb(scope, &lb_name)
            && let Some(l) = lb.value.listeners.iter().find(|l| l.arn() == arn)
        {
            return l.default_rule_arn();
        }
        arn.to_string()
    }

    fn load_lbs(&self, scope: &Scope) -> Result<Vec<Stored<LbRecord>>, ServiceError> {
        load_prefix(self.store.as_ref(), &keys::lb_prefix(scope)).map_err(unreadable)
    }

    fn load_tg(&self, scope: &Scope, name: &str) -> Result<Option<Stored<TgRecord>>, ServiceError> {
        load(self.store.as_ref(), &keys::tg(scope, name)).map_err(unreadable)
    }

    fn load_tgs(&self, scope: &Scope) -> Result<Vec<Stored<TgRecord>>, ServiceError> {
        load_prefix(self.store.as_ref(), &keys::tg_prefix(scope)).map_err(unreadable)
    }

    fn load_targets(&self, scope: &Scope, tg_name: &str) -> Result<Vec<Stored<TargetRecord>>, ServiceError> {
        load_prefix(self.store.as_ref(), &keys::targets_of(scope, tg_name)).map_err(unreadable)
    }

    /// The load balancer an ARN names, or `LoadBalancerNotFound`.
    fn lb_by_arn(&self, scope: &Scope, arn: &str) -> Result<Stored<LbRecord>, ServiceError> {
        let found = match keys::parse_arn(scope, arn) {
            Some(keys::ArnRef::LoadBalancer { name }) => {
                self.load_lb(scope, &name)?.filter(|r| r.value.arn() == arn)
            }
            _ => None,
        };
        found.ok_or_else(|| lb_not_found(&[arn.to_string()]))
    }

    /// The target group an ARN names, or `TargetGroupNotFound`.
    fn tg_by_arn(&self, scope: &Scope, arn: &str) -> Result<Stored<TgRecord>, ServiceError> {
        let found = match keys::parse_arn(scope, arn) {
            Some(keys::ArnRef::TargetGroup { name }) => {
                self.load_tg(scope, &name)?.filter(|r| r.value.arn() == arn)
            }
            _ => None,
        };
        found.ok_or_else(|| tg_not_found(&[arn.to_string()]))
    }
}

/// ECS's view of target groups (`loadBalancers` of a service).
impl TargetRegistry for Elbv2 {
    fn target_group(&self, scope: &Scope, arn: &str) -> Option<TargetGroupInfo> {
        let tg = self.tg_by_arn(scope, arn).ok()?;
        let described = self.describe_tg(scope, &tg.value).ok()?;
        Some(TargetGroupInfo {
            arn: arn.to_string(),
            target_type: match described.target_type.as_deref() {
                Some("ip") => TargetType::Ip,
                _ => TargetType::Instance,
            },
            load_balancer_arns: described.load_balancer_arns.unwrap_or_default(),
        })
    }

    fn register<'a>(
        &'a self,
        scope: &'a Scope,
        target_group_arn: &'a str,
        targets: &'a [TargetRef],
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let req = gantry_model::elbv2::RegisterTargetsInput {
                target_group_arn: target_group_arn.to_string(),
                targets: descriptions(targets),
            };
            self.register_targets(scope, req).await.map(|_| ()).map_err(|e| e.message)
        })
    }

    fn deregister<'a>(
        &'a self,
        scope: &'a Scope,
        target_group_arn: &'a str,
        targets: &'a [TargetRef],
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let req = gantry_model::elbv2::DeregisterTargetsInput {
                target_group_arn: target_group_arn.to_string(),
                targets: descriptions(targets),
            };
            self.deregister_targets(scope, req).await.map(|_| ()).map_err(|e| e.message)
        })
    }

    fn health(&self, scope: &Scope, target_group_arn: &str, target: &TargetRef) -> Option<ObservedHealth> {
        let req = gantry_model::elbv2::DescribeTargetHealthInput {
            target_group_arn: target_group_arn.to_string(),
            targets: Some(descriptions(std::slice::from_ref(target))),
            include: None,
        };
        let out = self.describe_target_health(scope, req).ok()?;
        let h = out.target_health_descriptions?.into_iter().next()?.target_health?;
        let reason = h.reason.as_deref().and_then(target_reason);
        if reason == Some(TargetReason::TargetNotRegistered) {
            return None;
        }
        let state = match h.state.as_deref()? {
            "initial" => TargetState::Initial,
            "healthy" => TargetState::Healthy,
            "unhealthy" => TargetState::Unhealthy,
            "unhealthy.draining" => TargetState::UnhealthyDraining,
            "unused" => TargetState::Unused,
            "draining" => TargetState::Draining,
            _ => TargetState::Unavailable,
        };
        Some(ObservedHealth { state, reason, description: h.description })
    }

    fn rule(&self, scope: &Scope, rule_arn: &str) -> Option<RuleInfo> {
        let (lb, li, rule) = self.rule_and_listener(scope, &self.default_rule_of(scope, rule_arn)).ok()?;
        let forward = rule
            .actions
            .iter()
            .flatten()
            .find(|a| a.r#type == "forward")
            .map(|a| match a.forward_config.as_ref().and_then(|f| f.target_groups.clone()) {
                Some(groups) => groups
                    .into_iter()
                    .filter_map(|g| {
                        Some(WeightedTargetGroup {
                            arn: g.target_group_arn?,
                            weight: g.weight.map_or(1, |w| w.max(0) as u32),
                        })
                    })
                    .collect(),
                None => a
                    .target_group_arn
                    .iter()
                    .map(|arn| WeightedTargetGroup { arn: arn.clone(), weight: 1 })
                    .collect(),
            })
            .unwrap_or_default();
        Some(RuleInfo {
            arn: rule_arn.to_string(),
            listener_arn: lb.value.listeners[li].arn().to_string(),
            load_balancer_arn: lb.value.arn().to_string(),
            forward,
        })
    }

    fn set_forward<'a>(
        &'a self,
        scope: &'a Scope,
        rule_arn: &'a str,
        weights: &'a [WeightedTargetGroup],
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let rule_arn = &self.default_rule_of(scope, rule_arn);
            let (_, _, rule) = self.rule_and_listener(scope, rule_arn).map_err(|e| e.message)?;
            // The rule's stickiness stays as it was.
            let stickiness = rule
                .actions
                .iter()
                .flatten()
                .find(|a| a.r#type == "forward")
                .and_then(|a| a.forward_config.as_ref())
                .and_then(|f| f.target_group_stickiness_config.clone());
            let action = gantry_model::elbv2::Action {
                r#type: "forward".into(),
                forward_config: Some(gantry_model::elbv2::ForwardActionConfig {
                    target_groups: Some(
                        weights
                            .iter()
                            .map(|w| gantry_model::elbv2::TargetGroupTuple {
                                target_group_arn: Some(w.arn.clone()),
                                weight: Some(w.weight as i32),
                            })
                            .collect(),
                    ),
                    target_group_stickiness_config: stickiness,
                }),
                ..Default::default()
            };
            let req = gantry_model::elbv2::ModifyRuleInput {
                rule_arn: rule_arn.to_string(),
                actions: Some(vec![action]),
                ..Default::default()
            };
            self.modify_rule(scope, req).await.map(|_| ()).map_err(|e| e.message)
        })
    }
}

/// ECS's targets as ELBv2's request shape.
fn descriptions(targets: &[TargetRef]) -> Vec<gantry_model::elbv2::TargetDescription> {
    targets
        .iter()
        .map(|t| gantry_model::elbv2::TargetDescription {
            id: t.id.clone(),
            port: Some(i32::from(t.port)),
            availability_zone: None,
            quic_server_id: None,
        })
        .collect()
}

/// A reason code as ELB spells it, back to its enum.
fn target_reason(code: &str) -> Option<TargetReason> {
    use TargetReason::*;
    [
        ElbRegistrationInProgress,
        ElbInitialHealthChecking,
        TargetResponseCodeMismatch,
        TargetTimeout,
        TargetFailedHealthChecks,
        TargetNotRegistered,
        TargetNotInUse,
        TargetDeregistrationInProgress,
        TargetInvalidState,
        TargetIpUnusable,
        TargetHealthCheckDisabled,
        ElbInternalError,
    ]
    .into_iter()
    .find(|r| r.as_str() == code)
}

/// ELBv2's side of ACM's `InUseBy`: the load balancers whose listeners use a certificate, read
/// from ELBv2's records (`gantry_ports::lb::CertificateUse`, wired into ACM by the binary).
pub struct CertificateUsers {
    store: Arc<dyn Store>,
}

impl CertificateUsers {
    pub fn new(store: Arc<dyn Store>) -> Self {
        CertificateUsers { store }
    }
}

impl std::fmt::Debug for CertificateUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateUsers").finish_non_exhaustive()
    }
}

impl CertificateUse for CertificateUsers {
    fn users(&self, certificate_arn: &str) -> Vec<String> {
        // arn:aws:acm:REGION:ACCOUNT:certificate/ID
        let mut it = certificate_arn.split(':');
        let (Some(region), Some(account)) = (it.nth(3), it.next()) else { return Vec::new() };
        let lbs: Vec<Stored<LbRecord>> =
            load_prefix(self.store.as_ref(), &keys::lb_prefix(&Scope::new(account, region)))
                .unwrap_or_default();
        lbs.into_iter()
            .filter(|lb| {
                lb.value.listeners.iter().any(|l| {
                    l.extra_certificates.iter().any(|c| c == certificate_arn)
                        || l.listener
                            .certificates
                            .iter()
                            .flatten()
                            .any(|c| c.certificate_arn.as_deref() == Some(certificate_arn))
                })
            })
            .map(|lb| lb.value.arn().to_string())
            .collect()
    }
}

/// A request's JSON form as its generated input shape.
fn parse<T: DeserializeOwned>(input: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(input).map_err(|e| {
        let msg = e.to_string();
        match msg.split('`').nth(1).filter(|_| msg.starts_with("missing field")) {
            Some(field) => validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(field)
            )),
            None => validation(format!("The request is not valid: {msg}")),
        }
    })
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn render<T: Serialize>(v: T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(&v).map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))
}

/// The query protocol's answer to an action ELBv2 does not have.
pub fn invalid_action(op: &str) -> ServiceError {
    ServiceError::sender("InvalidAction", format!("Could not find operation {op} for version 2015-12-01"))
}

pub(crate) fn conflict() -> ServiceError {
    ServiceError::receiver(
        "InternalFailure",
        "The request kept conflicting with concurrent changes; try again",
    )
    .with_status(503)
}

pub(crate) fn lb_not_found(refs: &[String]) -> ServiceError {
    ServiceError::sender("LoadBalancerNotFound", format!("Load balancers '[{}]' not found", refs.join(", ")))
}
pub(crate) fn tg_not_found(refs: &[String]) -> ServiceError {
    ServiceError::sender("TargetGroupNotFound", format!("Target groups '{}' not found", list(refs)))
}
pub(crate) fn listener_not_found(refs: &[String]) -> ServiceError {
    ServiceError::sender("ListenerNotFound", format!("Listeners '{}' not found", list(refs)))
}
pub(crate) fn rule_not_found(refs: &[String]) -> ServiceError {
    ServiceError::sender("RuleNotFound", format!("Rules '{}' not found", list(refs)))
}

fn list(refs: &[String]) -> String {
    if refs.len() == 1 { refs[0].clone() } else { format!("[{}]", refs.join(", ")) }
}

/// A page of `items` (sorted by `key`) after the marker, and the marker of the next.
fn page<T>(
    items: Vec<T>,
    marker: Option<&str>,
    page_size: Option<i32>,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), ServiceError> {
    let size = match page_size {
        None => 400,
        Some(n @ 1..=400) => n as usize,
        Some(n) => return Err(validation(format!("Page size '{n}' must be an integer from 1 to 400"))),
    };
    let after = match marker {
        None | Some("") => None,
        Some(m) => {
            Some(decode_marker(m).ok_or_else(|| validation(format!("The marker '{m}' is not valid")))?)
        }
    };
    let rest: Vec<T> =
        items.into_iter().filter(|i| after.as_deref().is_none_or(|a| key(i).as_str() > a)).collect();
    Ok(gantry_core::page::paginate(rest, size, key))
}

fn decode_marker(m: &str) -> Option<String> {
    let hex = m.strip_prefix("gt")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests;
