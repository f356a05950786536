//! Load balancers: CreateLoadBalancer, DescribeLoadBalancers, DeleteLoadBalancer, their
//! attributes, SetSecurityGroups, SetSubnets and DescribeCapacityReservation.

use crate::records::LbRecord;
use crate::validate::{self, validation};
use crate::{ATTEMPTS, Elbv2, conflict, keys, lb_not_found, page};
use gantry_core::{Scope, ServiceError};
use gantry_model::elbv2::*;
use gantry_ports::lb::LbState;
use gantry_runtime::records::{Before, Stored, TxnExt};
use gantry_store::Txn;

/// The VPC every Gantry load balancer and target group is in (Gantry has no VPCs; ELB's shapes
/// name one).
pub const VPC_ID: &str = "vpc-00000000000000000";

/// The hosted zone Gantry's load balancer DNS names are in (`elb.localhost`).
pub const HOSTED_ZONE_ID: &str = "Z00GANTRYELBLOCAL";

fn zones(scope: &Scope, subnets: &[String]) -> Vec<AvailabilityZone> {
    subnets
        .iter()
        .enumerate()
        .map(|(i, s)| AvailabilityZone {
            zone_name: Some(format!("{}{}", scope.region, (b'a' + (i % 26) as u8) as char)),
            subnet_id: Some(s.clone()),
            outpost_id: None,
            load_balancer_addresses: Some(Vec::new()),
            ..Default::default()
        })
        .collect()
}

fn subnets_of(
    subnets: &Option<Vec<String>>,
    mappings: &Option<Vec<SubnetMapping>>,
) -> Result<Vec<String>, ServiceError> {
    match (subnets, mappings) {
        (Some(s), Some(m)) if !s.is_empty() && !m.is_empty() => {
            Err(validation("You can specify subnets or subnet mappings, not both"))
        }
        (Some(s), _) if !s.is_empty() => Ok(s.clone()),
        (_, Some(m)) => Ok(m.iter().filter_map(|m| m.subnet_id.clone()).collect()),
        _ => Ok(Vec::new()),
    }
}

impl Elbv2 {
    pub(crate) async fn create_load_balancer(
        &self,
        scope: &Scope,
        req: CreateLoadBalancerInput,
    ) -> Result<CreateLoadBalancerOutput, ServiceError> {
        validate::name("load balancer", &req.name)?;
        let lb_type = req.r#type.clone().unwrap_or_else(|| "application".into());
        match lb_type.as_str() {
            "application" | "network" => {}
            "gateway" => {
                return Err(validation(
                    "Load balancer type 'gateway' is not supported by Gantry: it serves 'application' and 'network'",
                ));
            }
            other => {
                return Err(validation(format!(
                    "Load balancer type '{other}' is not valid: it must be 'application', 'network' or 'gateway'"
                )));
            }
        }
        let scheme = req.scheme.clone().unwrap_or_else(|| "internet-facing".into());
        if !matches!(scheme.as_str(), "internet-facing" | "internal") {
            return Err(validation(format!(
                "Scheme '{scheme}' is not valid: it must be 'internet-facing' or 'internal'"
            )));
        }
        let ip_type = req.ip_address_type.clone().unwrap_or_else(|| "ipv4".into());
        if !matches!(ip_type.as_str(), "ipv4" | "dualstack" | "dualstack-without-public-ipv4") {
            return Err(validation(format!(
                "IP address type '{ip_type}' is not valid: it must be 'ipv4', 'dualstack' or 'dualstack-without-public-ipv4'"
            )));
        }
        let subnets = subnets_of(&req.subnets, &req.subnet_mappings)?;
        let tags = req.tags.clone().unwrap_or_default();
        validate::tags(&tags)?;
        if tags.len() > 50 {
            return Err(ServiceError::sender("TooManyTags", "A load balancer cannot have more than 50 tags"));
        }
        let security_groups = req.security_groups.clone().filter(|g| !g.is_empty());
        for _ in 0..ATTEMPTS {
            if let Some(existing) = self.load_lb(scope, &req.name)? {
                let lb = &existing.value.lb;
                let same = lb.r#type.as_deref() == Some(&lb_type)
                    && lb.scheme.as_deref() == Some(&scheme)
                    && lb.ip_address_type.as_deref() == Some(&ip_type)
                    && lb.security_groups == security_groups
                    && lb
                        .availability_zones
                        .as_ref()
                        .map(|z| z.iter().filter_map(|z| z.subnet_id.clone()).collect::<Vec<_>>())
                        == Some(subnets.clone());
                if same {
                    return Ok(CreateLoadBalancerOutput {
                        load_balancers: Some(vec![existing.value.lb.clone()]),
                    });
                }
                return Err(ServiceError::sender(
                    "DuplicateLoadBalancerName",
                    format!(
                        "A load balancer with the same name '{}' exists, but with different settings",
                        req.name
                    ),
                ));
            }
            let id = self.new_id();
            let arn = keys::lb_arn(scope, &lb_type, &req.name, &id);
            let prefix = if scheme == "internal" { "internal-" } else { "" };
            let lb = LoadBalancer {
                load_balancer_arn: Some(arn),
                dns_name: Some(format!("{prefix}{}-{id}.{}.elb.localhost", req.name, scope.region)),
                canonical_hosted_zone_id: Some(HOSTED_ZONE_ID.into()),
                created_time: Some(self.now_ms() as f64 / 1000.0),
                load_balancer_name: Some(req.name.clone()),
                scheme: Some(scheme.clone()),
                vpc_id: Some(VPC_ID.into()),
                state: Some(LoadBalancerState {
                    code: Some(LbState::Provisioning.as_str().into()),
                    reason: None,
                }),
                r#type: Some(lb_type.clone()),
                availability_zones: Some(zones(scope, &subnets)),
                security_groups: security_groups.clone(),
                ip_address_type: Some(ip_type.clone()),
                ..Default::default()
            };
            let record = LbRecord {
                lb,
                attributes: validate::lb_attribute_defaults(&lb_type),
                tags: tags.clone(),
                listeners: Vec::new(),
            };
            if self.commit(Txn::new().put_record(scope, &Before::absent(), &record)).await? {
                return Ok(CreateLoadBalancerOutput { load_balancers: Some(vec![record.lb]) });
            }
        }
        Err(conflict())
    }

    pub(crate) fn describe_load_balancers(
        &self,
        scope: &Scope,
        req: DescribeLoadBalancersInput,
    ) -> Result<DescribeLoadBalancersOutput, ServiceError> {
        let arns = req.load_balancer_arns.clone().unwrap_or_default();
        let names = req.names.clone().unwrap_or_default();
        if !arns.is_empty() && !names.is_empty() {
            return Err(validation(
                "Load balancer names and load balancer ARNs cannot be specified at the same time",
            ));
        }
        if arns.len() > 20 || names.len() > 20 {
            return Err(validation("You can specify at most 20 load balancers"));
        }
        let all = self.load_lbs(scope)?;
        let chosen: Vec<&Stored<LbRecord>> = if !names.is_empty() {
            let missing: Vec<String> =
                names.iter().filter(|n| !all.iter().any(|r| r.value.name() == *n)).cloned().collect();
            if !missing.is_empty() {
                return Err(lb_not_found(&missing));
            }
            all.iter().filter(|r| names.iter().any(|n| n == r.value.name())).collect()
        } else if !arns.is_empty() {
            let missing: Vec<String> =
                arns.iter().filter(|a| !all.iter().any(|r| r.value.arn() == *a)).cloned().collect();
            if !missing.is_empty() {
                return Err(lb_not_found(&missing));
            }
            all.iter().filter(|r| arns.iter().any(|a| a == r.value.arn())).collect()
        } else {
            all.iter().collect()
        };
        let (items, next) =
            page(chosen, req.marker.as_deref(), req.page_size, |r| r.value.name().to_string())?;
        Ok(DescribeLoadBalancersOutput {
            load_balancers: Some(items.into_iter().map(|r| r.value.lb.clone()).collect()),
            next_marker: next,
        })
    }

    pub(crate) async fn delete_load_balancer(
        &self,
        scope: &Scope,
        req: DeleteLoadBalancerInput,
    ) -> Result<DeleteLoadBalancerOutput, ServiceError> {
        if keys::parse_arn(scope, &req.load_balancer_arn).is_none() {
            return Err(validation(format!("'{}' is not a valid load balancer ARN", req.load_balancer_arn)));
        }
        for _ in 0..ATTEMPTS {
            // Deleting a load balancer that does not exist succeeds, as in ELB.
            let Ok(lb) = self.lb_by_arn(scope, &req.load_balancer_arn) else {
                return Ok(DeleteLoadBalancerOutput {});
            };
            if lb.value.attributes.get("deletion_protection.enabled").map(String::as_str) == Some("true") {
                return Err(ServiceError::sender(
                    "OperationNotPermitted",
                    format!(
                        "Load balancer '{}' cannot be deleted because deletion protection is enabled",
                        req.load_balancer_arn
                    ),
                ));
            }
            if self.commit(Txn::new().delete_record(&Before::of(scope, &lb))).await? {
                return Ok(DeleteLoadBalancerOutput {});
            }
        }
        Err(conflict())
    }

    pub(crate) fn describe_load_balancer_attributes(
        &self,
        scope: &Scope,
        req: DescribeLoadBalancerAttributesInput,
    ) -> Result<DescribeLoadBalancerAttributesOutput, ServiceError> {
        let lb = self.lb_by_arn(scope, &req.load_balancer_arn)?;
        Ok(DescribeLoadBalancerAttributesOutput { attributes: Some(lb_attributes(&lb.value)) })
    }

    pub(crate) async fn modify_load_balancer_attributes(
        &self,
        scope: &Scope,
        req: ModifyLoadBalancerAttributesInput,
    ) -> Result<ModifyLoadBalancerAttributesOutput, ServiceError> {
        let changes = pairs(req.attributes.iter().map(|a| (a.key.clone(), a.value.clone())))?;
        for _ in 0..ATTEMPTS {
            let mut lb = self.lb_by_arn(scope, &req.load_balancer_arn)?;
            let before = Before::of(scope, &lb);
            let lb_type = lb.value.lb_type().to_string();
            validate::modify_lb_attributes(&lb_type, &mut lb.value.attributes, &changes)?;
            if self.commit(Txn::new().put_record(scope, &before, &lb.value)).await? {
                return Ok(ModifyLoadBalancerAttributesOutput { attributes: Some(lb_attributes(&lb.value)) });
            }
        }
        Err(conflict())
    }

    pub(crate) async fn set_security_groups(
        &self,
        scope: &Scope,
        req: SetSecurityGroupsInput,
    ) -> Result<SetSecurityGroupsOutput, ServiceError> {
        for g in &req.security_groups {
            if !g.starts_with("sg-") {
                return Err(ServiceError::sender(
                    "InvalidSecurityGroup",
                    format!("Security group '{g}' is not valid"),
                ));
            }
        }
        for _ in 0..ATTEMPTS {
            let mut lb = self.lb_by_arn(scope, &req.load_balancer_arn)?;
            let before = Before::of(scope, &lb);
            if lb.value.is_network() && lb.value.lb.security_groups.as_ref().is_none_or(Vec::is_empty) {
                return Err(validation(
                    "You cannot set security groups on a Network Load Balancer which was created without any security groups",
                ));
            }
            lb.value.lb.security_groups = Some(req.security_groups.clone());
            if self.commit(Txn::new().put_record(scope, &before, &lb.value)).await? {
                return Ok(SetSecurityGroupsOutput {
                    security_group_ids: Some(req.security_groups.clone()),
                    enforce_security_group_inbound_rules_on_private_link_traffic: None,
                });
            }
        }
        Err(conflict())
    }

    pub(crate) async fn set_subnets(
        &self,
        scope: &Scope,
        req: SetSubnetsInput,
    ) -> Result<SetSubnetsOutput, ServiceError> {
        let subnets = subnets_of(&req.subnets, &req.subnet_mappings)?;
        for _ in 0..ATTEMPTS {
            let mut lb = self.lb_by_arn(scope, &req.load_balancer_arn)?;
            let before = Before::of(scope, &lb);
            if let Some(t) = &req.ip_address_type {
                if !matches!(t.as_str(), "ipv4" | "dualstack" | "dualstack-without-public-ipv4") {
                    return Err(validation(format!("IP address type '{t}' is not valid")));
                }
                lb.value.lb.ip_address_type = Some(t.clone());
            }
            lb.value.lb.availability_zones = Some(zones(scope, &subnets));
            if self.commit(Txn::new().put_record(scope, &before, &lb.value)).await? {
                return Ok(SetSubnetsOutput {
                    availability_zones: lb.value.lb.availability_zones.clone(),
                    ip_address_type: lb.value.lb.ip_address_type.clone(),
                    ..Default::default()
                });
            }
        }
        Err(conflict())
    }

    /// No capacity is reserved on a Gantry load balancer: the answer for one without a
    /// reservation.
    pub(crate) fn describe_capacity_reservation(
        &self,
        scope: &Scope,
        req: DescribeCapacityReservationInput,
    ) -> Result<DescribeCapacityReservationOutput, ServiceError> {
        self.lb_by_arn(scope, &req.load_balancer_arn)?;
        Ok(DescribeCapacityReservationOutput {
            last_modified_time: None,
            decrease_requests_remaining: None,
            minimum_load_balancer_capacity: None,
            capacity_reservation_state: Some(Vec::new()),
        })
    }

    /// The target groups of a scope, by ARN, with the load balancers whose rules forward to them.
    pub(crate) fn usage(
        &self,
        scope: &Scope,
    ) -> Result<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>, ServiceError> {
        let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            Default::default();
        for lb in self.load_lbs(scope)? {
            for tg in forwarded_by(&lb.value) {
                out.entry(tg).or_default().insert(lb.value.arn().to_string());
            }
        }
        Ok(out)
    }
}

/// Every target group a load balancer's listeners and rules forward to.
pub(crate) fn forwarded_by(lb: &LbRecord) -> Vec<String> {
    let mut out = Vec::new();
    for l in &lb.listeners {
        out.extend(validate::forwarded(l.listener.default_actions.as_deref().unwrap_or_default()));
        for r in &l.rules {
            out.extend(validate::forwarded(r.rule.actions.as_deref().unwrap_or_default()));
        }
    }
    out.sort();
    out.dedup();
    out
}

fn lb_attributes(lb: &LbRecord) -> Vec<LoadBalancerAttribute> {
    lb.attributes
        .iter()
        .map(|(k, v)| LoadBalancerAttribute { key: Some(k.clone()), value: Some(v.clone()) })
        .collect()
}

/// Attribute changes as key/value pairs; a key without a value is refused.
pub(crate) fn pairs(
    attrs: impl Iterator<Item = (Option<String>, Option<String>)>,
) -> Result<Vec<(String, String)>, ServiceError> {
    attrs
        .map(|(k, v)| match (k, v) {
            (Some(k), Some(v)) => Ok((k, v)),
            (Some(k), None) => Err(validation(format!("A value must be specified for attribute key '{k}'"))),
            (None, _) => Err(validation("An attribute key must be specified")),
        })
        .collect()
}
