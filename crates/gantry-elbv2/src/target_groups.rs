//! Target groups and their targets: Create/Describe/Modify/DeleteTargetGroup, their
//! attributes, Register/DeregisterTargets and DescribeTargetHealth.
//!
//! A deregistered target drains: it stays, `draining`, until the group's deregistration delay
//! has passed (by the injected clock) or the data plane says it has nothing in flight
//! (`TargetHealthSource::drained`), then it is gone. A target of a group no load balancer
//! forwards to, or one deregistered with a delay of 0, goes at once. Records of targets whose
//! draining has ended are removed by the next write to their group's targets.

use crate::load_balancers::{VPC_ID, pairs};
use crate::records::{DrainingRecord, TargetRecord, TgRecord};
use crate::validate::{self, HealthCheckRequest, HealthCheckSettings, validation};
use crate::{ATTEMPTS, Elbv2, conflict, keys, page, tg_not_found};
use gantry_core::{Scope, ServiceError};
use gantry_model::elbv2::*;
use gantry_ports::lb::{ObservedHealth, TargetReason, TargetState};
use gantry_runtime::records::{Before, Stored, TxnExt};
use gantry_store::Txn;

fn settings_of(tg: &TargetGroup) -> HealthCheckSettings {
    HealthCheckSettings {
        enabled: tg.health_check_enabled.unwrap_or(true),
        protocol: tg.health_check_protocol.clone().unwrap_or_default(),
        port: tg.health_check_port.clone().unwrap_or_else(|| "traffic-port".into()),
        path: tg.health_check_path.clone(),
        interval: tg.health_check_interval_seconds.unwrap_or(30),
        timeout: tg.health_check_timeout_seconds.unwrap_or(5),
        healthy: tg.healthy_threshold_count.unwrap_or(5),
        unhealthy: tg.unhealthy_threshold_count.unwrap_or(2),
        matcher: tg.matcher.as_ref().and_then(|m| m.http_code.clone()),
    }
}

fn apply_settings(tg: &mut TargetGroup, hc: HealthCheckSettings) {
    tg.health_check_enabled = Some(hc.enabled);
    tg.health_check_protocol = Some(hc.protocol);
    tg.health_check_port = Some(hc.port);
    tg.health_check_path = hc.path;
    tg.health_check_interval_seconds = Some(hc.interval);
    tg.health_check_timeout_seconds = Some(hc.timeout);
    tg.healthy_threshold_count = Some(hc.healthy);
    tg.unhealthy_threshold_count = Some(hc.unhealthy);
    tg.matcher = hc.matcher.map(|m| Matcher { http_code: Some(m), grpc_code: None });
}

/// Whether a draining target is done draining at `now`.
pub(crate) fn drained(
    health: &dyn gantry_ports::lb::TargetHealthSource,
    tg_arn: &str,
    t: &TargetRecord,
    now: i64,
) -> bool {
    match t.draining {
        Some(d) => now >= d.deadline_ms || health.drained(tg_arn, &t.id, t.port as u16),
        None => false,
    }
}

fn matcher_code(m: &Option<Matcher>) -> Result<Option<String>, ServiceError> {
    match m {
        Some(Matcher { grpc_code: Some(_), .. }) => {
            Err(validation("gRPC matchers are not supported by Gantry"))
        }
        Some(Matcher { http_code, .. }) => Ok(http_code.clone()),
        None => Ok(None),
    }
}

impl Elbv2 {
    pub(crate) async fn create_target_group(
        &self,
        scope: &Scope,
        req: CreateTargetGroupInput,
    ) -> Result<CreateTargetGroupOutput, ServiceError> {
        validate::name("target group", &req.name)?;
        let target_type = req.target_type.clone().unwrap_or_else(|| "instance".into());
        match target_type.as_str() {
            "instance" | "ip" => {}
            "lambda" | "alb" => {
                return Err(validation(format!(
                    "Target type '{target_type}' is not supported by Gantry: target groups have 'instance' or 'ip' targets"
                )));
            }
            other => {
                return Err(validation(format!(
                    "Target type '{other}' is not valid: it must be one of 'instance', 'ip', 'lambda', 'alb'"
                )));
            }
        }
        let protocol = req.protocol.clone().ok_or_else(|| {
            validation(format!(
                "A protocol must be specified for target groups with the target type '{target_type}'"
            ))
        })?;
        match protocol.as_str() {
            "HTTP" | "HTTPS" | "TCP" | "TLS" => {}
            "UDP" | "TCP_UDP" | "GENEVE" => {
                return Err(ServiceError::sender(
                    "UnsupportedProtocol",
                    format!(
                        "Target group protocol '{protocol}' is not supported by Gantry: it carries HTTP, HTTPS, TCP and TLS"
                    ),
                ));
            }
            other => {
                return Err(validation(format!(
                    "Target group protocol '{other}' is not valid: it must be one of 'HTTP', 'HTTPS', 'TCP', 'TLS', 'UDP', 'TCP_UDP', 'GENEVE'"
                )));
            }
        }
        let port = req.port.ok_or_else(|| {
            validation(format!(
                "A port must be specified for target groups with the target type '{target_type}'"
            ))
        })?;
        if !(1..=65535).contains(&port) {
            return Err(validation(format!("Port '{port}' must be an integer from 1 to 65535")));
        }
        let protocol_version = if validate::http_family(&protocol) {
            let v = req.protocol_version.clone().unwrap_or_else(|| "HTTP1".into());
            if !matches!(v.as_str(), "HTTP1" | "HTTP2" | "GRPC") {
                return Err(validation(format!(
                    "Protocol version '{v}' is not valid: it must be 'HTTP1', 'HTTP2' or 'GRPC'"
                )));
            }
            if v == "GRPC" {
                return Err(validation("Protocol version 'GRPC' is not supported by Gantry"));
            }
            Some(v)
        } else {
            if req.protocol_version.is_some() {
                return Err(validation(format!(
                    "A protocol version cannot be specified for {protocol} target groups"
                )));
            }
            None
        };
        let ip_type = req.ip_address_type.clone().unwrap_or_else(|| "ipv4".into());
        if !matches!(ip_type.as_str(), "ipv4" | "ipv6") {
            return Err(validation(format!(
                "IP address type '{ip_type}' is not valid: it must be 'ipv4' or 'ipv6'"
            )));
        }
        let hc = validate::health_check(
            &protocol,
            protocol_version.as_deref(),
            None,
            &HealthCheckRequest {
                enabled: req.health_check_enabled,
                protocol: req.health_check_protocol.clone(),
                port: req.health_check_port.clone(),
                path: req.health_check_path.clone(),
                interval: req.health_check_interval_seconds,
                timeout: req.health_check_timeout_seconds,
                healthy: req.healthy_threshold_count,
                unhealthy: req.unhealthy_threshold_count,
                matcher: matcher_code(&req.matcher)?,
            },
        )?;
        let tags = req.tags.clone().unwrap_or_default();
        validate::tags(&tags)?;
        let mut shape = TargetGroup {
            target_group_name: Some(req.name.clone()),
            protocol: Some(protocol.clone()),
            port: Some(port),
            vpc_id: Some(req.vpc_id.clone().unwrap_or_else(|| VPC_ID.into())),
            target_type: Some(target_type.clone()),
            protocol_version,
            ip_address_type: Some(ip_type),
            ..Default::default()
        };
        apply_settings(&mut shape, hc);
        for _ in 0..ATTEMPTS {
            if let Some(existing) = self.load_tg(scope, &req.name)? {
                let mut same = existing.value.tg.clone();
                same.target_group_arn = None;
                if same == shape {
                    return Ok(CreateTargetGroupOutput {
                        target_groups: Some(vec![self.describe_tg(scope, &existing.value)?]),
                    });
                }
                return Err(ServiceError::sender(
                    "DuplicateTargetGroupName",
                    format!(
                        "A target group with the same name '{}' exists, but with different settings",
                        req.name
                    ),
                ));
            }
            let mut tg = shape.clone();
            tg.target_group_arn = Some(keys::tg_arn(scope, &req.name, &self.new_id()));
            let record = TgRecord {
                tg,
                attributes: validate::tg_attribute_defaults(&protocol, &target_type),
                tags: tags.clone(),
            };
            if self.commit(Txn::new().put_record(scope, &Before::absent(), &record)).await? {
                let mut out = record.tg;
                out.load_balancer_arns = Some(Vec::new());
                return Ok(CreateTargetGroupOutput { target_groups: Some(vec![out]) });
            }
        }
        Err(conflict())
    }

    /// A target group as described: with the load balancers that forward to it.
    pub(crate) fn describe_tg(&self, scope: &Scope, tg: &TgRecord) -> Result<TargetGroup, ServiceError> {
        let usage = self.usage(scope)?;
        let mut out = tg.tg.clone();
        out.load_balancer_arns =
            Some(usage.get(tg.arn()).map(|s| s.iter().cloned().collect()).unwrap_or_default());
        Ok(out)
    }

    pub(crate) fn describe_target_groups(
        &self,
        scope: &Scope,
        req: DescribeTargetGroupsInput,
    ) -> Result<DescribeTargetGroupsOutput, ServiceError> {
        let arns = req.target_group_arns.clone().unwrap_or_default();
        let names = req.names.clone().unwrap_or_default();
        let given = [req.load_balancer_arn.is_some(), !arns.is_empty(), !names.is_empty()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(validation(
                "Only one of a load balancer ARN, target group ARNs and target group names can be specified",
            ));
        }
        let usage = self.usage(scope)?;
        let all = self.load_tgs(scope)?;
        let chosen: Vec<&Stored<TgRecord>> = if let Some(lb_arn) = &req.load_balancer_arn {
            self.lb_by_arn(scope, lb_arn)?;
            all.iter().filter(|t| usage.get(t.value.arn()).is_some_and(|s| s.contains(lb_arn))).collect()
        } else if !arns.is_empty() {
            let missing: Vec<String> =
                arns.iter().filter(|a| !all.iter().any(|t| t.value.arn() == *a)).cloned().collect();
            if !missing.is_empty() {
                return Err(tg_not_found(&missing));
            }
            all.iter().filter(|t| arns.iter().any(|a| a == t.value.arn())).collect()
        } else if !names.is_empty() {
            let missing: Vec<String> =
                names.iter().filter(|n| !all.iter().any(|t| t.value.name() == *n)).cloned().collect();
            if !missing.is_empty() {
                return Err(tg_not_found(&missing));
            }
            all.iter().filter(|t| names.iter().any(|n| n == t.value.name())).collect()
        } else {
            all.iter().collect()
        };
        let (items, next) =
            page(chosen, req.marker.as_deref(), req.page_size, |t| t.value.name().to_string())?;
        let groups = items
            .into_iter()
            .map(|t| {
                let mut g = t.value.tg.clone();
                g.load_balancer_arns =
                    Some(usage.get(t.value.arn()).map(|s| s.iter().cloned().collect()).unwrap_or_default());
                g
            })
            .collect();
        Ok(DescribeTargetGroupsOutput { target_groups: Some(groups), next_marker: next })
    }

    pub(crate) async fn modify_target_group(
        &self,
        scope: &Scope,
        req: ModifyTargetGroupInput,
    ) -> Result<ModifyTargetGroupOutput, ServiceError> {
        let hc_req = HealthCheckRequest {
            enabled: req.health_check_enabled,
            protocol: req.health_check_protocol.clone(),
            port: req.health_check_port.clone(),
            path: req.health_check_path.clone(),
            interval: req.health_check_interval_seconds,
            timeout: req.health_check_timeout_seconds,
            healthy: req.healthy_threshold_count,
            unhealthy: req.unhealthy_threshold_count,
            matcher: matcher_code(&req.matcher)?,
        };
        for _ in 0..ATTEMPTS {
            let mut tg = self.tg_by_arn(scope, &req.target_group_arn)?;
            let before = Before::of(scope, &tg);
            let protocol = tg.value.tg.protocol.clone().unwrap_or_default();
            let current = settings_of(&tg.value.tg);
            let hc = validate::health_check(
                &protocol,
                tg.value.tg.protocol_version.as_deref(),
                Some(&current),
                &hc_req,
            )?;
            apply_settings(&mut tg.value.tg, hc);
            if self.commit(Txn::new().put_record(scope, &before, &tg.value)).await? {
                return Ok(ModifyTargetGroupOutput {
                    target_groups: Some(vec![self.describe_tg(scope, &tg.value)?]),
                });
            }
        }
        Err(conflict())
    }

    pub(crate) async fn delete_target_group(
        &self,
        scope: &Scope,
        req: DeleteTargetGroupInput,
    ) -> Result<DeleteTargetGroupOutput, ServiceError> {
        if !matches!(keys::parse_arn(scope, &req.target_group_arn), Some(keys::ArnRef::TargetGroup { .. })) {
            return Err(validation(format!("'{}' is not a valid target group ARN", req.target_group_arn)));
        }
        for _ in 0..ATTEMPTS {
            // Deleting a target group that does not exist succeeds.
            let Ok(tg) = self.tg_by_arn(scope, &req.target_group_arn) else {
                return Ok(DeleteTargetGroupOutput {});
            };
            let lbs = self.load_lbs(scope)?;
            if lbs
                .iter()
                .any(|lb| crate::load_balancers::forwarded_by(&lb.value).contains(&req.target_group_arn))
            {
                return Err(ServiceError::sender(
                    "ResourceInUse",
                    format!(
                        "Target group '{}' is currently in use by a listener or a rule",
                        req.target_group_arn
                    ),
                ));
            }
            let mut txn = Txn::new();
            for lb in &lbs {
                txn = txn.when(lb.key.clone(), lb.mod_revision);
            }
            let txn = txn
                .delete_record(&Before::of(scope, &tg))
                .delete_prefix(keys::targets_of(scope, tg.value.name()))
                .delete_prefix(keys::draining_of(scope, tg.value.name()));
            if self.commit(txn).await? {
                return Ok(DeleteTargetGroupOutput {});
            }
        }
        Err(conflict())
    }

    pub(crate) fn describe_target_group_attributes(
        &self,
        scope: &Scope,
        req: DescribeTargetGroupAttributesInput,
    ) -> Result<DescribeTargetGroupAttributesOutput, ServiceError> {
        let tg = self.tg_by_arn(scope, &req.target_group_arn)?;
        Ok(DescribeTargetGroupAttributesOutput { attributes: Some(tg_attributes(&tg.value)) })
    }

    pub(crate) async fn modify_target_group_attributes(
        &self,
        scope: &Scope,
        req: ModifyTargetGroupAttributesInput,
    ) -> Result<ModifyTargetGroupAttributesOutput, ServiceError> {
        let changes = pairs(req.attributes.iter().map(|a| (a.key.clone(), a.value.clone())))?;
        for _ in 0..ATTEMPTS {
            let mut tg = self.tg_by_arn(scope, &req.target_group_arn)?;
            let before = Before::of(scope, &tg);
            let protocol = tg.value.tg.protocol.clone().unwrap_or_default();
            validate::modify_tg_attributes(&protocol, &mut tg.value.attributes, &changes)?;
            if self.commit(Txn::new().put_record(scope, &before, &tg.value)).await? {
                return Ok(ModifyTargetGroupAttributesOutput { attributes: Some(tg_attributes(&tg.value)) });
            }
        }
        Err(conflict())
    }

    /// The targets of a request, with the group's port for those without one.
    fn requested_targets(
        tg: &TgRecord,
        targets: &[TargetDescription],
    ) -> Result<Vec<(String, i32, Option<String>)>, ServiceError> {
        let mut out = Vec::new();
        for t in targets {
            let port = t.port.or(tg.tg.port).unwrap_or_default();
            if !(1..=65535).contains(&port) {
                return Err(validation(format!(
                    "Port '{port}' of target '{}' must be an integer from 1 to 65535",
                    t.id
                )));
            }
            if t.id.is_empty() {
                return Err(validation("A target ID must be specified"));
            }
            if tg.tg.target_type.as_deref() == Some("ip") && t.id.parse::<std::net::IpAddr>().is_err() {
                return Err(ServiceError::sender(
                    "InvalidTarget",
                    format!("The IP address '{}' is not a valid IPv4 or IPv6 address", t.id),
                ));
            }
            out.push((t.id.clone(), port, t.availability_zone.clone()));
        }
        Ok(out)
    }

    pub(crate) async fn register_targets(
        &self,
        scope: &Scope,
        req: RegisterTargetsInput,
    ) -> Result<RegisterTargetsOutput, ServiceError> {
        if req.targets.is_empty() {
            return Err(validation("At least one target must be specified"));
        }
        for _ in 0..ATTEMPTS {
            let tg = self.tg_by_arn(scope, &req.target_group_arn)?;
            let wanted = Self::requested_targets(&tg.value, &req.targets)?;
            let existing = self.load_targets(scope, tg.value.name())?;
            let now = self.now_ms();
            let live = existing
                .iter()
                .filter(|t| !drained(self.health.as_ref(), tg.value.arn(), &t.value, now))
                .count();
            if live + wanted.len() > 1000 {
                return Err(ServiceError::sender(
                    "TooManyTargets",
                    format!("The target group '{}' cannot have more than 1000 targets", req.target_group_arn),
                ));
            }
            let keys_wanted: Vec<String> =
                wanted.iter().map(|(id, port, _)| keys::target(scope, tg.value.name(), id, *port)).collect();
            // Targets whose draining has ended go, except those registered again here.
            let ended: Vec<Stored<TargetRecord>> = existing
                .iter()
                .filter(|t| !keys_wanted.contains(&t.key))
                .filter(|t| drained(self.health.as_ref(), tg.value.arn(), &t.value, now))
                .cloned()
                .collect();
            let mut txn = self.sweep(Txn::new().when(tg.key.clone(), tg.mod_revision), scope, &ended);
            for ((id, port, az), key) in wanted.iter().zip(&keys_wanted) {
                let old = existing.iter().find(|e| e.key == *key);
                if txn.compare.iter().any(|gantry_store::Compare::ModRevision(k, _)| k == key) {
                    // Listed twice in the request.
                    continue;
                }
                // Registered and not draining: nothing to do. A draining target registered
                // again is registered anew.
                if old.is_some_and(|o| o.value.draining.is_none()) {
                    continue;
                }
                let record = TargetRecord {
                    tg_name: tg.value.name().to_string(),
                    id: id.clone(),
                    port: *port,
                    availability_zone: az.clone(),
                    registered_at_ms: now,
                    draining: None,
                };
                let before = match old {
                    Some(o) => Before::of(scope, o),
                    None => Before::absent(),
                };
                txn = txn.put_record(scope, &before, &record);
            }
            if self.commit(txn).await? {
                return Ok(RegisterTargetsOutput {});
            }
        }
        Err(conflict())
    }

    /// Removes targets (and their index rows) whose draining has ended.
    fn sweep(&self, mut txn: Txn, scope: &Scope, ended: &[Stored<TargetRecord>]) -> Txn {
        for t in ended {
            txn = txn.delete_record(&Before::of(scope, t));
        }
        txn
    }

    pub(crate) async fn deregister_targets(
        &self,
        scope: &Scope,
        req: DeregisterTargetsInput,
    ) -> Result<DeregisterTargetsOutput, ServiceError> {
        if req.targets.is_empty() {
            return Err(validation("At least one target must be specified"));
        }
        for _ in 0..ATTEMPTS {
            let tg = self.tg_by_arn(scope, &req.target_group_arn)?;
            let wanted = Self::requested_targets(&tg.value, &req.targets)?;
            let existing = self.load_targets(scope, tg.value.name())?;
            let now = self.now_ms();
            let in_use = self.usage(scope)?.contains_key(tg.value.arn());
            let delay_s: i64 = tg
                .value
                .attributes
                .get("deregistration_delay.timeout_seconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(300);
            let mut txn = Txn::new().when(tg.key.clone(), tg.mod_revision);
            for t in &existing {
                let asked = wanted.iter().any(|(id, port, _)| *id == t.value.id && *port == t.value.port);
                let done = drained(self.health.as_ref(), tg.value.arn(), &t.value, now);
                if done || (asked && (!in_use || delay_s == 0)) {
                    txn = txn.delete_record(&Before::of(scope, t));
                } else if asked && t.value.draining.is_none() {
                    let mut r = t.value.clone();
                    r.draining = Some(DrainingRecord { since_ms: now, deadline_ms: now + delay_s * 1000 });
                    txn = txn.put_record(scope, &Before::of(scope, t), &r);
                }
            }
            if self.commit(txn).await? {
                return Ok(DeregisterTargetsOutput {});
            }
        }
        Err(conflict())
    }

    pub(crate) fn describe_target_health(
        &self,
        scope: &Scope,
        req: DescribeTargetHealthInput,
    ) -> Result<DescribeTargetHealthOutput, ServiceError> {
        let tg = self.tg_by_arn(scope, &req.target_group_arn)?;
        for i in req.include.iter().flatten() {
            if !matches!(i.as_str(), "AnomalyDetection" | "All") {
                return Err(validation(format!(
                    "Include '{i}' is not valid: it must be 'AnomalyDetection' or 'All'"
                )));
            }
        }
        let anomaly = req.include.iter().flatten().next().is_some()
            && validate::http_family(tg.value.tg.protocol.as_deref().unwrap_or_default());
        let now = self.now_ms();
        let in_use = self.usage(scope)?.contains_key(tg.value.arn());
        let records: Vec<TargetRecord> = self
            .load_targets(scope, tg.value.name())?
            .into_iter()
            .map(|s| s.value)
            .filter(|t| !drained(self.health.as_ref(), tg.value.arn(), t, now))
            .collect();
        let hc_port = tg.value.tg.health_check_port.clone().unwrap_or_else(|| "traffic-port".into());
        let describe =
            |id: &str, port: i32, az: Option<String>, health: ObservedHealth| TargetHealthDescription {
                target: Some(TargetDescription {
                    id: id.to_string(),
                    port: Some(port),
                    availability_zone: az,
                    quic_server_id: None,
                }),
                health_check_port: Some(if hc_port == "traffic-port" {
                    port.to_string()
                } else {
                    hc_port.clone()
                }),
                target_health: Some(TargetHealth {
                    state: Some(health.state.as_str().to_string()),
                    reason: health.reason.map(|r| r.as_str().to_string()),
                    description: health.description,
                }),
                anomaly_detection: anomaly.then(|| AnomalyDetection {
                    result: Some("normal".into()),
                    mitigation_in_effect: Some("no".into()),
                }),
                administrative_override: Some(AdministrativeOverride {
                    state: Some("no_override".into()),
                    reason: Some("AdministrativeOverride.NoOverride".into()),
                    description: Some("No override is currently active on target".into()),
                }),
            };
        let health_of = |t: &TargetRecord| -> ObservedHealth {
            if t.draining.is_some() {
                return ObservedHealth {
                    state: TargetState::Draining,
                    reason: Some(TargetReason::TargetDeregistrationInProgress),
                    description: Some("Target deregistration is in progress".into()),
                };
            }
            if !in_use {
                return ObservedHealth {
                    state: TargetState::Unused,
                    reason: Some(TargetReason::TargetNotInUse),
                    description: Some(
                        "Target group is not configured to receive traffic from the load balancer".into(),
                    ),
                };
            }
            if tg.value.tg.health_check_enabled == Some(false) {
                return ObservedHealth {
                    state: TargetState::Unavailable,
                    reason: Some(TargetReason::TargetHealthCheckDisabled),
                    description: Some("Health checks are disabled".into()),
                };
            }
            self.health.health(tg.value.arn(), &t.id, t.port as u16).unwrap_or(ObservedHealth {
                state: TargetState::Initial,
                reason: Some(TargetReason::ElbRegistrationInProgress),
                description: Some("Target registration is in progress".into()),
            })
        };
        let out = match req.targets.as_ref().filter(|t| !t.is_empty()) {
            None => records
                .iter()
                .map(|t| describe(&t.id, t.port, t.availability_zone.clone(), health_of(t)))
                .collect(),
            Some(asked) => {
                let wanted = Self::requested_targets(&tg.value, asked)?;
                wanted
                    .into_iter()
                    .map(|(id, port, az)| match records.iter().find(|t| t.id == id && t.port == port) {
                        Some(t) => describe(&id, port, t.availability_zone.clone().or(az), health_of(t)),
                        None => describe(
                            &id,
                            port,
                            az,
                            ObservedHealth {
                                state: TargetState::Unused,
                                reason: Some(TargetReason::TargetNotRegistered),
                                description: Some("Target is not registered to the target group".into()),
                            },
                        ),
                    })
                    .collect()
            }
        };
        Ok(DescribeTargetHealthOutput { target_health_descriptions: Some(out) })
    }
}

fn tg_attributes(tg: &TgRecord) -> Vec<TargetGroupAttribute> {
    tg.attributes
        .iter()
        .map(|(k, v)| TargetGroupAttribute { key: Some(k.clone()), value: Some(v.clone()) })
        .collect()
}
