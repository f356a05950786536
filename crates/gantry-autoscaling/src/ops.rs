//! The operations: each validates as Auto Scaling does, reads, and writes back under
//! compare-and-swap. Capacity changes only write the desired state and the cause; the group
//! controller launches and terminates.

use crate::records::{GroupRecord, LcRecord, LifecycleState, Wait, unreadable};
use crate::{ATTEMPTS, AutoScaling, conflict, keys, validation};
use gantry_core::page::{decode as decode_token, paginate};
use gantry_core::{Scope, ServiceError};
use gantry_model::autoscaling::*;
use gantry_runtime::records::{Before, Stored, TxnExt, load, load_prefix};
use gantry_store::Txn;

const LAUNCHING: &str = "autoscaling:EC2_INSTANCE_LAUNCHING";
const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

/// `2026-12-04T14:30:05Z`, as activity causes spell times.
pub(crate) fn iso(ms: i64) -> String {
    gantry_core::civil::rfc3339(ms.div_euclid(1000), 0, 0)
}

fn check_name(field: &str, name: &str) -> Result<(), ServiceError> {
    if name.is_empty() || name.chars().count() > 255 || name.contains(':') {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\r\\n\\t]*"
        )));
    }
    Ok(())
}

/// One page of a Describe call: `MaxRecords` checked against the call's bounds, `NextToken`
/// decoded to the key the page resumes after.
struct Page {
    limit: usize,
    after: Option<String>,
}

impl Page {
    fn new(
        max_records: Option<i32>,
        token: Option<&str>,
        default: usize,
        max: i32,
    ) -> Result<Page, ServiceError> {
        let limit = match max_records {
            None => default,
            Some(n) if (1..=max).contains(&n) => n as usize,
            Some(n) => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{n}' at 'maxRecords' failed to satisfy constraint: Member must have value less than or equal to {max}"
                )));
            }
        };
        let after = match token {
            None | Some("") => None,
            Some(t) => Some(
                decode_token(t)
                    .ok_or_else(|| ServiceError::sender("InvalidNextToken", "The token is not valid."))?,
            ),
        };
        Ok(Page { limit, after })
    }

    /// Whether the item of `key` comes after the token.
    fn after(&self, key: &str) -> bool {
        self.after.as_deref().is_none_or(|a| key > a)
    }

    /// The page of `items` (in key order) after the token, and the token of the next page.
    fn take<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
        let items: Vec<T> = items.into_iter().filter(|i| self.after(&key(i))).collect();
        paginate(items, self.limit, key)
    }
}

fn check_sizes(min: i32, max: i32, desired: Option<i32>) -> Result<(), ServiceError> {
    if min < 0 || max < 0 {
        return Err(validation("Min size and max size must be non-negative"));
    }
    if max < min {
        return Err(validation(format!(
            "Max bound, {max}, must be greater than or equal to min bound, {min}"
        )));
    }
    if let Some(d) = desired
        && !(min..=max).contains(&d)
    {
        return Err(validation(format!(
            "Desired capacity:{d} must be between the specified min size:{min} and max size:{max}"
        )));
    }
    Ok(())
}

fn hook_of(group: &str, spec: &LifecycleHookSpecification) -> Result<LifecycleHook, ServiceError> {
    check_transition(&spec.lifecycle_transition)?;
    hook(
        group,
        &spec.lifecycle_hook_name,
        &spec.lifecycle_transition,
        spec.heartbeat_timeout,
        spec.default_result.as_deref(),
        spec.notification_metadata.clone(),
    )
}

fn check_transition(t: &str) -> Result<(), ServiceError> {
    if t == LAUNCHING || t == TERMINATING {
        Ok(())
    } else {
        Err(validation(format!(
            "Invalid Lifecycle Transition: {t}. Valid values are {LAUNCHING} and {TERMINATING}"
        )))
    }
}

fn hook(
    group: &str,
    name: &str,
    transition: &str,
    heartbeat: Option<i32>,
    default_result: Option<&str>,
    metadata: Option<String>,
) -> Result<LifecycleHook, ServiceError> {
    check_name("lifecycleHookName", name)?;
    let heartbeat = heartbeat.unwrap_or(3600);
    if !(30..=7200).contains(&heartbeat) {
        return Err(validation(format!("Heartbeat timeout {heartbeat} must be between 30 and 7200 seconds")));
    }
    let result = default_result.unwrap_or("ABANDON");
    if result != "CONTINUE" && result != "ABANDON" {
        return Err(validation(format!(
            "Invalid default result: {result}. Valid values are CONTINUE and ABANDON"
        )));
    }
    Ok(LifecycleHook {
        lifecycle_hook_name: Some(name.to_string()),
        auto_scaling_group_name: Some(group.to_string()),
        lifecycle_transition: Some(transition.to_string()),
        notification_target_arn: None,
        role_arn: None,
        notification_metadata: metadata,
        heartbeat_timeout: Some(heartbeat),
        global_timeout: Some((heartbeat * 100).min(172_800)),
        default_result: Some(result.to_string()),
    })
}

fn tag_description(group: &str, t: &Tag) -> TagDescription {
    TagDescription {
        resource_id: Some(group.to_string()),
        resource_type: Some("auto-scaling-group".into()),
        key: Some(t.key.clone()),
        value: Some(t.value.clone().unwrap_or_default()),
        propagate_at_launch: Some(t.propagate_at_launch.unwrap_or(false)),
    }
}

fn check_tag(t: &Tag) -> Result<(), ServiceError> {
    if t.key.is_empty() || t.key.chars().count() > 128 {
        return Err(validation(format!(
            "1 validation error detected: Value '{}' at 'tags.member.key' failed to satisfy constraint: Member must have length between 1 and 128",
            t.key
        )));
    }
    if t.key.starts_with("aws:") {
        return Err(validation("Tag keys starting with 'aws:' are reserved for internal use"));
    }
    if t.value.as_deref().is_some_and(|v| v.chars().count() > 256) {
        return Err(validation("Tag value exceeds the maximum length of 256 characters"));
    }
    if let Some(rt) = &t.resource_type
        && rt != "auto-scaling-group"
    {
        return Err(validation(format!("Invalid resource type: {rt}")));
    }
    Ok(())
}

/// A filter's values match `v`.
fn filter_matches(f: &Filter, v: &str) -> bool {
    f.values.iter().flatten().any(|x| x == v)
}

impl AutoScaling {
    // ---------------------------------------------------------------- launch configurations

    pub(crate) async fn create_launch_configuration(
        &self,
        scope: &Scope,
        req: CreateLaunchConfigurationType,
    ) -> Result<serde_json::Value, ServiceError> {
        let name = req.launch_configuration_name.clone();
        check_name("launchConfigurationName", &name)?;
        let image_id = req.image_id.clone().ok_or_else(|| {
            validation("Valid requests must contain either the InstanceID parameter or both the ImageId and InstanceType parameters.")
        })?;
        let instance_type = req.instance_type.clone().ok_or_else(|| {
            validation("Valid requests must contain either the InstanceID parameter or both the ImageId and InstanceType parameters.")
        })?;
        if let Some(u) = &req.user_data
            && u.len() > 21_847
        {
            return Err(validation("User data is limited to 16384 bytes"));
        }
        let lc = LaunchConfiguration {
            launch_configuration_name: name.clone(),
            launch_configuration_arn: Some(keys::lc_arn(scope, &self.ids.uuid(), &name)),
            image_id,
            key_name: req.key_name.clone(),
            security_groups: Some(req.security_groups.clone().unwrap_or_default()),
            classic_link_vpc_id: None,
            classic_link_vpc_security_groups: Some(vec![]),
            user_data: Some(req.user_data.clone().unwrap_or_default()),
            instance_type,
            kernel_id: Some(req.kernel_id.clone().unwrap_or_default()),
            ramdisk_id: Some(req.ramdisk_id.clone().unwrap_or_default()),
            block_device_mappings: Some(req.block_device_mappings.clone().unwrap_or_default()),
            instance_monitoring: Some(
                req.instance_monitoring.clone().unwrap_or(InstanceMonitoring { enabled: Some(true) }),
            ),
            spot_price: req.spot_price.clone(),
            iam_instance_profile: req.iam_instance_profile.clone(),
            created_time: self.now_ms() as f64 / 1000.0,
            ebs_optimized: Some(req.ebs_optimized.unwrap_or(false)),
            associate_public_ip_address: req.associate_public_ip_address,
            placement_tenancy: req.placement_tenancy.clone(),
            metadata_options: req.metadata_options.clone(),
        };
        let rec = LcRecord { lc };
        let key = keys::lc(scope, &name);
        for _ in 0..ATTEMPTS {
            if load::<LcRecord>(self.store.as_ref(), &key).map_err(unreadable)?.is_some() {
                return Err(ServiceError::sender(
                    "AlreadyExistsFault",
                    format!(
                        "Launch Configuration by this name already exists - A launch configuration already exists with the name {name}"
                    ),
                ));
            }
            if self.commit(Txn::new().put_record(scope, &Before::absent(), &rec)).await? {
                return Ok(serde_json::json!({}));
            }
        }
        Err(conflict())
    }

    pub(crate) fn describe_launch_configurations(
        &self,
        scope: &Scope,
        req: LaunchConfigurationNamesType,
    ) -> Result<LaunchConfigurationsType, ServiceError> {
        let page = Page::new(req.max_records, req.next_token.as_deref(), 50, 100)?;
        let all: Vec<Stored<LcRecord>> =
            load_prefix(self.store.as_ref(), &keys::lc_prefix(scope)).map_err(unreadable)?;
        let names = req.launch_configuration_names.filter(|n| !n.is_empty());
        let items: Vec<LaunchConfiguration> = all
            .into_iter()
            .map(|r| r.value.lc)
            .filter(|lc| names.as_ref().is_none_or(|n| n.contains(&lc.launch_configuration_name)))
            .collect();
        let (items, next) = page.take(items, |lc| lc.launch_configuration_name.clone());
        Ok(LaunchConfigurationsType { launch_configurations: items, next_token: next })
    }

    pub(crate) async fn delete_launch_configuration(
        &self,
        scope: &Scope,
        req: LaunchConfigurationNameType,
    ) -> Result<serde_json::Value, ServiceError> {
        let name = req.launch_configuration_name;
        for _ in 0..ATTEMPTS {
            let Some(lc) =
                load::<LcRecord>(self.store.as_ref(), &keys::lc(scope, &name)).map_err(unreadable)?
            else {
                return Err(validation(format!(
                    "Launch configuration name not found - Launch configuration {name} not found"
                )));
            };
            let groups: Vec<Stored<GroupRecord>> =
                load_prefix(self.store.as_ref(), &keys::group_prefix(scope)).map_err(unreadable)?;
            let mut txn = Txn::new();
            if let Some(g) = groups.iter().find(|g| {
                g.value.group.launch_configuration_name.as_deref() == Some(name.as_str())
                    || g.value
                        .instances
                        .iter()
                        .any(|i| i.instance.launch_configuration_name.as_deref() == Some(name.as_str()))
            }) {
                return Err(ServiceError::sender(
                    "ResourceInUseFault",
                    format!(
                        "Cannot delete launch configuration {name} because it is attached to AutoScalingGroup {}",
                        g.value.name()
                    ),
                ));
            }
            // Held still while deleting: no group may start using it in between.
            for g in &groups {
                txn = txn.when(&g.key, g.mod_revision);
            }
            if self.commit(txn.delete_record(&Before::of(scope, &lc))).await? {
                return Ok(serde_json::json!({}));
            }
        }
        Err(conflict())
    }

    // ---------------------------------------------------------------- groups

    pub(crate) async fn create_group(
        &self,
        scope: &Scope,
        req: CreateAutoScalingGroupType,
    ) -> Result<serde_json::Value, ServiceError> {
        let name = req.auto_scaling_group_name.clone();
        check_name("autoScalingGroupName", &name)?;
        let lc_name = match (
            &req.launch_configuration_name,
            &req.launch_template,
            &req.mixed_instances_policy,
            &req.instance_id,
        ) {
            (Some(lc), None, None, None) => lc.clone(),
            (None, None, None, None) => {
                return Err(validation(
                    "Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.",
                ));
            }
            (None, _, _, _) => {
                return Err(validation(
                    "Gantry's Auto Scaling groups launch from a launch configuration: LaunchTemplate, MixedInstancesPolicy and InstanceId are not supported.",
                ));
            }
            _ => {
                return Err(validation(
                    "Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.",
                ));
            }
        };
        check_sizes(req.min_size, req.max_size, req.desired_capacity)?;
        let zones = match (&req.availability_zones, &req.vpc_zone_identifier) {
            (Some(z), _) if !z.is_empty() => z.clone(),
            (_, Some(v)) if !v.trim().is_empty() => {
                // Subnets without EC2: one zone per subnet, in the group's region.
                let n = v.split(',').filter(|s| !s.trim().is_empty()).count().max(1);
                (0..n.min(6)).map(|i| format!("{}{}", scope.region, (b'a' + i as u8) as char)).collect()
            }
            _ => return Err(validation("At least one Availability Zone or VPC Subnet is required.")),
        };
        let mut hooks = Vec::new();
        for spec in req.lifecycle_hook_specification_list.iter().flatten() {
            hooks.push(hook_of(&name, spec)?);
        }
        let tags = req.tags.clone().unwrap_or_default();
        for t in &tags {
            check_tag(t)?;
        }
        if let Some(h) = &req.health_check_type
            && !["EC2", "ELB", "VPC_LATTICE", "EBS"].contains(&h.as_str())
        {
            return Err(validation(format!("Invalid health check type: {h}")));
        }
        let now = self.now_ms();
        let desired = req.desired_capacity.unwrap_or(req.min_size);
        let group = AutoScalingGroup {
            auto_scaling_group_name: name.clone(),
            auto_scaling_group_arn: Some(keys::group_arn(scope, &self.ids.uuid(), &name)),
            launch_configuration_name: Some(lc_name.clone()),
            min_size: req.min_size,
            max_size: req.max_size,
            desired_capacity: desired,
            default_cooldown: req.default_cooldown.unwrap_or(300),
            availability_zones: zones,
            load_balancer_names: Some(vec![]),
            target_group_ar_ns: Some(req.target_group_ar_ns.clone().unwrap_or_default()),
            health_check_type: req.health_check_type.clone().unwrap_or_else(|| "EC2".into()),
            health_check_grace_period: Some(req.health_check_grace_period.unwrap_or(0)),
            instances: Some(vec![]),
            created_time: now as f64 / 1000.0,
            suspended_processes: Some(vec![]),
            vpc_zone_identifier: req.vpc_zone_identifier.clone(),
            enabled_metrics: Some(vec![]),
            tags: Some(tags.iter().map(|t| tag_description(&name, t)).collect()),
            termination_policies: Some(
                req.termination_policies.clone().unwrap_or_else(|| vec!["Default".into()]),
            ),
            new_instances_protected_from_scale_in: Some(
                req.new_instances_protected_from_scale_in.unwrap_or(false),
            ),
            service_linked_role_arn: Some(format!(
                "arn:aws:iam::{}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
                scope.account
            )),
            max_instance_lifetime: req.max_instance_lifetime,
            capacity_rebalance: Some(req.capacity_rebalance.unwrap_or(false)),
            default_instance_warmup: req.default_instance_warmup,
            traffic_sources: Some(vec![]),
            ..Default::default()
        };
        let mut rec = GroupRecord {
            group,
            hooks,
            instances: Vec::new(),
            cause: format!(
                "At {} a user request created an AutoScalingGroup changing the desired capacity from 0 to {desired}.",
                iso(now)
            ),
            version: 0,
            retry_after_ms: 0,
            next_types: Vec::new(),
            new_activities: Vec::new(),
        };
        rec.sync();
        let key = keys::group(scope, &name);
        for _ in 0..ATTEMPTS {
            let Some(lc) =
                load::<LcRecord>(self.store.as_ref(), &keys::lc(scope, &lc_name)).map_err(unreadable)?
            else {
                return Err(validation(format!(
                    "Launch configuration name not found - Launch configuration {lc_name} not found"
                )));
            };
            if self.load_group(scope, &name)?.is_some() {
                return Err(ServiceError::sender(
                    "AlreadyExistsFault",
                    format!(
                        "AutoScalingGroup by this name already exists - A group with the name {name} already exists"
                    ),
                ));
            }
            let txn = Txn::new().when(&lc.key, lc.mod_revision).put_record(scope, &Before::absent(), &rec);
            debug_assert_eq!(key, keys::group(scope, rec.name()));
            if self.commit(txn).await? {
                return Ok(serde_json::json!({}));
            }
        }
        Err(conflict())
    }

    /// Reads a group, changes it with `f` (which may refuse), and writes it back.
    pub(crate) async fn change_group<T>(
        &self,
        scope: &Scope,
        name: &str,
        mut f: impl FnMut(&mut GroupRecord, i64) -> Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        for _ in 0..ATTEMPTS {
            let mut g = self.group_or_missing(scope, name)?;
            let before = Before::of(scope, &g);
            let out = f(&mut g.value, self.now_ms())?;
            g.value.sync();
            let mut txn = Txn::new().put_record(scope, &before, &g.value);
            for (key, a) in std::mem::take(&mut g.value.new_activities) {
                txn = txn.put(key, gantry_runtime::records::encode(&a));
            }
            if self.commit(txn).await? {
                return Ok(out);
            }
        }
        Err(conflict())
    }

    pub(crate) async fn update_group(
        &self,
        scope: &Scope,
        req: UpdateAutoScalingGroupType,
    ) -> Result<serde_json::Value, ServiceError> {
        if req.launch_template.is_some() || req.mixed_instances_policy.is_some() {
            return Err(validation(
                "Gantry's Auto Scaling groups launch from a launch configuration: LaunchTemplate and MixedInstancesPolicy are not supported.",
            ));
        }
        if let Some(lc) = &req.launch_configuration_name
            && load::<LcRecord>(self.store.as_ref(), &keys::lc(scope, lc)).map_err(unreadable)?.is_none()
        {
            return Err(validation(format!(
                "Launch configuration name not found - Launch configuration {lc} not found"
            )));
        }
        let name = req.auto_scaling_group_name.clone();
        self.change_group(scope, &name, |g, now| {
            if g.deleting() {
                return Err(ServiceError::sender(
                    "ScalingActivityInProgressFault",
                    "An update cannot be performed because the Auto Scaling group is being deleted.",
                ));
            }
            let grp = &mut g.group;
            let min = req.min_size.unwrap_or(grp.min_size);
            let max = req.max_size.unwrap_or(grp.max_size);
            check_sizes(min, max, req.desired_capacity)?;
            let old = grp.desired_capacity;
            // A new minimum or maximum pulls the desired capacity inside it, as AWS does.
            let desired = req.desired_capacity.unwrap_or(old).clamp(min, max);
            grp.min_size = min;
            grp.max_size = max;
            if desired != old {
                g.cause = format!(
                    "At {} a user request update of AutoScalingGroup constraints to min: {min}, max: {max}, desired: {desired} changing the desired capacity from {old} to {desired}.",
                    iso(now)
                );
            }
            let grp = &mut g.group;
            grp.desired_capacity = desired;
            if let Some(lc) = &req.launch_configuration_name {
                grp.launch_configuration_name = Some(lc.clone());
            }
            if let Some(v) = req.default_cooldown {
                grp.default_cooldown = v;
            }
            if let Some(v) = &req.availability_zones
                && !v.is_empty()
            {
                grp.availability_zones = v.clone();
            }
            if let Some(v) = &req.health_check_type {
                grp.health_check_type = v.clone();
            }
            if req.health_check_grace_period.is_some() {
                grp.health_check_grace_period = req.health_check_grace_period;
            }
            if req.vpc_zone_identifier.is_some() {
                grp.vpc_zone_identifier = req.vpc_zone_identifier.clone();
            }
            if req.termination_policies.is_some() {
                grp.termination_policies = req.termination_policies.clone();
            }
            if req.new_instances_protected_from_scale_in.is_some() {
                grp.new_instances_protected_from_scale_in = req.new_instances_protected_from_scale_in;
            }
            if req.max_instance_lifetime.is_some() {
                grp.max_instance_lifetime = req.max_instance_lifetime;
            }
            if req.capacity_rebalance.is_some() {
                grp.capacity_rebalance = req.capacity_rebalance;
            }
            if req.default_instance_warmup.is_some() {
                grp.default_instance_warmup = req.default_instance_warmup;
            }
            Ok(())
        })
        .await?;
        Ok(serde_json::json!({}))
    }

    pub(crate) fn describe_groups(
        &self,
        scope: &Scope,
        req: AutoScalingGroupNamesType,
    ) -> Result<AutoScalingGroupsType, ServiceError> {
        let page = Page::new(req.max_records, req.next_token.as_deref(), 50, 100)?;
        let all: Vec<Stored<GroupRecord>> =
            load_prefix(self.store.as_ref(), &keys::group_prefix(scope)).map_err(unreadable)?;
        let names = req.auto_scaling_group_names.filter(|n| !n.is_empty());
        let filters = req.filters.unwrap_or_default();
        let with_instances = req.include_instances.unwrap_or(true);
        let items: Vec<AutoScalingGroup> = all
            .into_iter()
            .map(|r| r.value.group)
            .filter(|g| names.as_ref().is_none_or(|n| n.contains(&g.auto_scaling_group_name)))
            .filter(|g| {
                filters.iter().all(|f| {
                    let tags = g.tags.iter().flatten();
                    match f.name.as_deref() {
                        Some("tag-key") => {
                            tags.clone().any(|t| filter_matches(f, t.key.as_deref().unwrap_or_default()))
                        }
                        Some("tag-value") => {
                            tags.clone().any(|t| filter_matches(f, t.value.as_deref().unwrap_or_default()))
                        }
                        Some(n) if n.starts_with("tag:") => tags.clone().any(|t| {
                            t.key.as_deref() == Some(&n[4..])
                                && filter_matches(f, t.value.as_deref().unwrap_or_default())
                        }),
                        _ => true,
                    }
                })
            })
            .filter(|g| page.after(&g.auto_scaling_group_name))
            .map(|mut g| {
                if !with_instances {
                    g.instances = None;
                }
                g
            })
            .collect();
        let (items, next) = page.take(items, |g| g.auto_scaling_group_name.clone());
        Ok(AutoScalingGroupsType { auto_scaling_groups: items, next_token: next })
    }

    pub(crate) async fn delete_group(
        &self,
        scope: &Scope,
        req: DeleteAutoScalingGroupType,
    ) -> Result<serde_json::Value, ServiceError> {
        let name = req.auto_scaling_group_name.clone();
        let force = req.force_delete.unwrap_or(false);
        for _ in 0..ATTEMPTS {
            let mut g = self.group_or_missing(scope, &name)?;
            let before = Before::of(scope, &g);
            if g.value.deleting() {
                return Ok(serde_json::json!({}));
            }
            if g.value.instances.is_empty() {
                let txn = Txn::new().delete_record(&before).delete_prefix(keys::activities_of(scope, &name));
                if self.commit(txn).await? {
                    return Ok(serde_json::json!({}));
                }
                continue;
            }
            if !force {
                if g.value.instances.iter().any(|i| i.instance.lifecycle_state != LifecycleState::InService) {
                    return Err(ServiceError::sender(
                        "ScalingActivityInProgressFault",
                        "You cannot delete an AutoScalingGroup while there are scaling activities in progress for that group.",
                    ));
                }
                return Err(ServiceError::sender(
                    "ResourceInUseFault",
                    "You cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) still in the group.",
                ));
            }
            // ForceDelete: the controller terminates every instance, then removes the group.
            let now = self.now_ms();
            let grp = &mut g.value.group;
            g.value.cause = format!(
                "At {} a user request delete of AutoScalingGroup changing the desired capacity from {} to 0.",
                iso(now),
                grp.desired_capacity
            );
            grp.status = Some("Delete in progress".into());
            grp.min_size = 0;
            grp.max_size = 0;
            grp.desired_capacity = 0;
            for i in &mut g.value.instances {
                i.instance.protected_from_scale_in = false;
            }
            g.value.sync();
            if self.commit(Txn::new().put_record(scope, &before, &g.value)).await? {
                return Ok(serde_json::json!({}));
            }
        }
        Err(conflict())
    }

    pub(crate) async fn set_desired_capacity(
        &self,
        scope: &Scope,
        req: SetDesiredCapacityType,
    ) -> Result<serde_json::Value, ServiceError> {
        self.set_desired(scope, &req.auto_scaling_group_name, req.desired_capacity, None).await?;
        Ok(serde_json::json!({}))
    }

    /// SetDesiredCapacity, with a cause other than a user's request when given.
    pub(crate) async fn set_desired(
        &self,
        scope: &Scope,
        name: &str,
        desired: i32,
        cause: Option<&str>,
    ) -> Result<(), ServiceError> {
        self.set_desired_launching(scope, name, desired, cause, &[]).await
    }

    /// SetDesiredCapacity, naming the instance types of the instances the raise launches (an
    /// empty list: the launch configuration's). A desired capacity that launches nothing
    /// forgets any types still queued.
    pub(crate) async fn set_desired_launching(
        &self,
        scope: &Scope,
        name: &str,
        desired: i32,
        cause: Option<&str>,
        types: &[String],
    ) -> Result<(), ServiceError> {
        self.change_group(scope, name, |g, now| {
            if g.deleting() {
                return Err(ServiceError::sender(
                    "ScalingActivityInProgressFault",
                    "An update cannot be performed because the Auto Scaling group is being deleted.",
                ));
            }
            let grp = &mut g.group;
            if desired > grp.max_size {
                return Err(validation(format!(
                    "New SetDesiredCapacity value {desired} is above max value {} for the AutoScalingGroup.",
                    grp.max_size
                )));
            }
            if desired < grp.min_size {
                return Err(validation(format!(
                    "New SetDesiredCapacity value {desired} is below min value {} for the AutoScalingGroup.",
                    grp.min_size
                )));
            }
            if desired != grp.desired_capacity {
                g.cause = match cause {
                    Some(c) => format!("At {} {c} changing the desired capacity from {} to {desired}.", iso(now), grp.desired_capacity),
                    None => format!(
                        "At {} a user request explicitly set group desired capacity changing the desired capacity from {} to {desired}.",
                        iso(now),
                        grp.desired_capacity
                    ),
                };
                let raise = desired - grp.desired_capacity;
                g.group.desired_capacity = desired;
                g.next_types = types.iter().take(raise.max(0) as usize).cloned().collect();
            }
            Ok(())
        })
        .await
    }

    pub(crate) async fn set_instance_protection(
        &self,
        scope: &Scope,
        req: SetInstanceProtectionQuery,
    ) -> Result<serde_json::Value, ServiceError> {
        if req.instance_ids.len() > 50 {
            return Err(validation("The number of instance IDs must not exceed 50."));
        }
        let name = req.auto_scaling_group_name.clone();
        self.change_group(scope, &name, |g, _| {
            for id in &req.instance_ids {
                let Some(i) = g.instances.iter_mut().find(|i| &i.instance.instance_id == id) else {
                    return Err(validation(format!(
                        "The instance {id} is not part of Auto Scaling group {name}."
                    )));
                };
                i.instance.protected_from_scale_in = req.protected_from_scale_in;
            }
            Ok(())
        })
        .await?;
        Ok(serde_json::json!({}))
    }

    /// TerminateInstanceInAutoScalingGroup; `by` names who asked, in the activity's Cause
    /// ("... in response to BY"): [`USER_REQUEST`] for the API.
    pub(crate) async fn terminate_instance(
        &self,
        scope: &Scope,
        req: TerminateInstanceInAutoScalingGroupType,
        by: &str,
    ) -> Result<ActivityType, ServiceError> {
        let Some(id) = req.instance_id.clone() else {
            return Err(validation(
                "1 validation error detected: Value null at 'instanceId' failed to satisfy constraint: Member must not be null",
            ));
        };
        let all: Vec<Stored<GroupRecord>> =
            load_prefix(self.store.as_ref(), &keys::group_prefix(scope)).map_err(unreadable)?;
        let Some(g) = all.iter().find(|g| g.value.instances.iter().any(|i| i.instance.instance_id == id))
        else {
            return Err(validation(format!(
                "Instance Id not found - No managed instance found for instance ID: {id}"
            )));
        };
        let name = g.value.name().to_string();
        let decrement = req.should_decrement_desired_capacity;
        let activity = self
            .change_group(scope, &name, |g, now| {
                let hooks: Vec<LifecycleHook> = g
                    .hooks
                    .iter()
                    .filter(|h| h.lifecycle_transition.as_deref() == Some(TERMINATING))
                    .cloned()
                    .collect();
                let min = g.group.min_size;
                let desired = g.group.desired_capacity;
                let Some(pos) = g.instances.iter().position(|i| i.instance.instance_id == id) else {
                    return Err(validation(format!("Instance Id not found - No managed instance found for instance ID: {id}")));
                };
                if g.instances[pos].instance.lifecycle_state.is_leaving() {
                    return Err(ServiceError::sender(
                        "ScalingActivityInProgressFault",
                        format!("Instance {id} is already terminating."),
                    ));
                }
                if decrement && desired - 1 < min {
                    return Err(validation(format!(
                        "Currently, desiredSize equals minSize ({min}). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size."
                    )));
                }
                let cause = if decrement {
                    g.group.desired_capacity -= 1;
                    format!(
                        "At {} instance {id} was taken out of service in response to {by}, shrinking the capacity from {desired} to {}.",
                        iso(now),
                        desired - 1
                    )
                } else {
                    format!("At {} instance {id} was taken out of service in response to {by}.", iso(now))
                };
                let act = begin_termination(self.ids.as_ref(), scope, g, pos, &hooks, now, &cause);
                Ok(act)
            })
            .await?;
        Ok(ActivityType { activity: Some(activity), activities: None })
    }
}

/// Who asks for TerminateInstanceInAutoScalingGroup through the API, in the activity's Cause.
pub(crate) const USER_REQUEST: &str = "a user request";

/// Marks an instance terminating (waiting on the first termination hook, if any) and returns
/// its activity, which the group's next write stores.
pub(crate) fn begin_termination(
    ids: &dyn gantry_core::IdGen,
    scope: &Scope,
    g: &mut GroupRecord,
    pos: usize,
    hooks: &[LifecycleHook],
    now: i64,
    cause: &str,
) -> Activity {
    let name = g.name().to_string();
    let arn = g.group.auto_scaling_group_arn.clone();
    let inst = &mut g.instances[pos];
    let id = inst.instance.instance_id.clone();
    let activity_id = ids.uuid();
    let (state, status) = match hooks.first() {
        Some(h) => {
            inst.wait = Some(Wait {
                hook: h.lifecycle_hook_name.clone().unwrap_or_default(),
                token: ids.uuid(),
                deadline_ms: now + i64::from(h.heartbeat_timeout.unwrap_or(3600)) * 1000,
                result: None,
            });
            (LifecycleState::TerminatingWait, "MidTerminatingLifecycleAction")
        }
        None => (LifecycleState::Terminating, "InProgress"),
    };
    inst.instance.lifecycle_state = state;
    inst.activity = keys::activity(scope, &name, now, &activity_id);
    let zone = inst.instance.availability_zone.clone();
    let key = inst.activity.clone();
    let activity = Activity {
        activity_id,
        auto_scaling_group_name: name,
        description: Some(format!("Terminating EC2 instance: {id}")),
        cause: cause.to_string(),
        start_time: now as f64 / 1000.0,
        end_time: None,
        status_code: status.into(),
        status_message: None,
        progress: Some(0),
        details: Some(serde_json::json!({"Availability Zone": zone}).to_string()),
        auto_scaling_group_state: None,
        auto_scaling_group_arn: arn,
    };
    g.new_activities.push((key, activity.clone()));
    activity
}

impl AutoScaling {
    pub(crate) fn describe_instances(
        &self,
        scope: &Scope,
        req: DescribeAutoScalingInstancesType,
    ) -> Result<AutoScalingInstancesType, ServiceError> {
        let page = Page::new(req.max_records, req.next_token.as_deref(), 50, 50)?;
        let ids = req.instance_ids.filter(|i| !i.is_empty());
        let all: Vec<Stored<GroupRecord>> =
            load_prefix(self.store.as_ref(), &keys::group_prefix(scope)).map_err(unreadable)?;
        let mut items: Vec<AutoScalingInstanceDetails> = all
            .iter()
            .flat_map(|g| {
                g.value.instances.iter().map(|i| AutoScalingInstanceDetails {
                    instance_id: i.instance.instance_id.clone(),
                    instance_type: i.instance.instance_type.clone(),
                    auto_scaling_group_name: g.value.name().to_string(),
                    availability_zone: i.instance.availability_zone.clone(),
                    availability_zone_id: None,
                    lifecycle_state: i.instance.lifecycle_state.upper(),
                    health_status: i.instance.health_status.as_str().to_uppercase(),
                    launch_configuration_name: i.instance.launch_configuration_name.clone(),
                    launch_template: None,
                    image_id: i.instance.image_id.clone(),
                    protected_from_scale_in: i.instance.protected_from_scale_in,
                    weighted_capacity: None,
                })
            })
            .filter(|d| ids.as_ref().is_none_or(|ids| ids.contains(&d.instance_id)))
            .collect();
        items.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        let (items, next) = page.take(items, |d| d.instance_id.clone());
        Ok(AutoScalingInstancesType { auto_scaling_instances: Some(items), next_token: next })
    }

    pub(crate) fn describe_activities(
        &self,
        scope: &Scope,
        req: DescribeScalingActivitiesType,
    ) -> Result<ActivitiesType, ServiceError> {
        let page = Page::new(req.max_records, req.next_token.as_deref(), 100, 100)?;
        let prefix = match &req.auto_scaling_group_name {
            Some(g) => keys::activities_of(scope, keys::group_name(g)),
            None => format!("{}activity/", keys::base(scope)),
        };
        let ids = req.activity_ids.filter(|i| !i.is_empty());
        // Newest first across groups too: an activity's page key is its key within its group
        // (the inverted start time, then its id), then the group.
        let mut items: Vec<(String, Activity)> = Vec::new();
        for kv in self.store.range(&prefix, None, usize::MAX) {
            let rest = &kv.key[prefix.len()..];
            let page_key = match req.auto_scaling_group_name {
                Some(_) => rest.to_string(),
                None => match rest.split_once('/') {
                    Some((group, tail)) => format!("{tail}/{group}"),
                    None => continue,
                },
            };
            if !page.after(&page_key) {
                continue;
            }
            let a: Activity = gantry_runtime::records::parse(&kv.value)
                .map_err(|e| ServiceError::receiver("InternalFailure", e))?;
            if ids.as_ref().is_none_or(|ids| ids.contains(&a.activity_id)) {
                items.push((page_key, a));
            }
        }
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let (items, next) = page.take(items, |(k, _)| k.clone());
        Ok(ActivitiesType { activities: items.into_iter().map(|(_, a)| a).collect(), next_token: next })
    }

    // ---------------------------------------------------------------- lifecycle hooks

    pub(crate) async fn put_lifecycle_hook(
        &self,
        scope: &Scope,
        req: PutLifecycleHookType,
    ) -> Result<serde_json::Value, ServiceError> {
        let group = req.auto_scaling_group_name.clone();
        self.change_group(scope, &group, |g, _| {
            let existing = g
                .hooks
                .iter()
                .position(|h| h.lifecycle_hook_name.as_deref() == Some(&req.lifecycle_hook_name));
            let transition = match (&req.lifecycle_transition, existing) {
                (Some(t), _) => {
                    check_transition(t)?;
                    t.clone()
                }
                (None, Some(i)) => g.hooks[i].lifecycle_transition.clone().unwrap_or_default(),
                (None, None) => {
                    return Err(validation(
                        "A lifecycle transition must be specified when creating a lifecycle hook.",
                    ));
                }
            };
            let h = hook(
                &group,
                &req.lifecycle_hook_name,
                &transition,
                req.heartbeat_timeout,
                req.default_result.as_deref(),
                req.notification_metadata.clone(),
            )?;
            match existing {
                Some(i) => g.hooks[i] = h,
                None => {
                    if g.hooks.len() >= 50 {
                        return Err(ServiceError::sender(
                            "LimitExceededFault",
                            format!("Lifecycle Hooks limit of 50 reached for group {group}."),
                        ));
                    }
                    g.hooks.push(h)
                }
            }
            Ok(())
        })
        .await?;
        Ok(serde_json::json!({}))
    }

    pub(crate) fn describe_lifecycle_hooks(
        &self,
        scope: &Scope,
        req: DescribeLifecycleHooksType,
    ) -> Result<DescribeLifecycleHooksAnswer, ServiceError> {
        let g = self.group_or_missing(scope, &req.auto_scaling_group_name)?;
        let names = req.lifecycle_hook_names.filter(|n| !n.is_empty());
        let hooks = g
            .value
            .hooks
            .into_iter()
            .filter(|h| {
                names.as_ref().is_none_or(|n| h.lifecycle_hook_name.as_ref().is_some_and(|x| n.contains(x)))
            })
            .collect();
        Ok(DescribeLifecycleHooksAnswer { lifecycle_hooks: Some(hooks) })
    }

    pub(crate) async fn delete_lifecycle_hook(
        &self,
        scope: &Scope,
        req: DeleteLifecycleHookType,
    ) -> Result<serde_json::Value, ServiceError> {
        let group = req.auto_scaling_group_name.clone();
        self.change_group(scope, &group, |g, _| {
            let before = g.hooks.len();
            g.hooks.retain(|h| h.lifecycle_hook_name.as_deref() != Some(&req.lifecycle_hook_name));
            if g.hooks.len() == before {
                return Err(validation(format!(
                    "No Lifecycle Hook found with name {} for group {group}",
                    req.lifecycle_hook_name
                )));
            }
            Ok(())
        })
        .await?;
        Ok(serde_json::json!({}))
    }

    pub(crate) async fn complete_lifecycle_action(
        &self,
        scope: &Scope,
        req: CompleteLifecycleActionType,
    ) -> Result<serde_json::Value, ServiceError> {
        let result = req.lifecycle_action_result.clone();
        if result != "CONTINUE" && result != "ABANDON" {
            return Err(validation(format!(
                "Invalid lifecycle action result: {result}. Valid values are CONTINUE and ABANDON"
            )));
        }
        let group = req.auto_scaling_group_name.clone();
        self.change_group(scope, &group, |g, _| {
            let waiting = g.instances.iter_mut().find(|i| {
                i.wait.as_ref().is_some_and(|w| {
                    w.result.is_none()
                        && w.hook == req.lifecycle_hook_name
                        && (req.instance_id.as_deref() == Some(i.instance.instance_id.as_str())
                            || req.lifecycle_action_token.as_deref() == Some(w.token.as_str()))
                })
            });
            let Some(i) = waiting else {
                return Err(validation(format!(
                    "No active Lifecycle Action found with {}",
                    match (&req.instance_id, &req.lifecycle_action_token) {
                        (Some(id), _) => format!("instance ID {id}"),
                        (None, Some(t)) => format!("token {t}"),
                        (None, None) => "neither an instance ID nor a token".into(),
                    }
                )));
            };
            if let Some(w) = &mut i.wait {
                w.result = Some(result.clone());
            }
            i.instance.lifecycle_state = LifecycleState::TerminatingProceed;
            Ok(())
        })
        .await?;
        Ok(serde_json::json!({}))
    }

    pub(crate) async fn record_heartbeat(
        &self,
        scope: &Scope,
        req: RecordLifecycleActionHeartbeatType,
    ) -> Result<serde_json::Value, ServiceError> {
        let group = req.auto_scaling_group_name.clone();
        self.change_group(scope, &group, |g, now| {
            let timeout = g
                .hooks
                .iter()
                .find(|h| h.lifecycle_hook_name.as_deref() == Some(&req.lifecycle_hook_name))
                .and_then(|h| h.heartbeat_timeout)
                .unwrap_or(3600);
            let Some(w) = g.instances.iter_mut().find_map(|i| {
                let matches = req.instance_id.as_deref() == Some(i.instance.instance_id.as_str());
                i.wait.as_mut().filter(|w| {
                    w.result.is_none()
                        && w.hook == req.lifecycle_hook_name
                        && (matches || req.lifecycle_action_token.as_deref() == Some(w.token.as_str()))
                })
            }) else {
                return Err(validation("No active Lifecycle Action found"));
            };
            w.deadline_ms = now + i64::from(timeout) * 1000;
            Ok(())
        })
        .await?;
        Ok(serde_json::json!({}))
    }

    // ---------------------------------------------------------------- tags

    pub(crate) async fn create_or_update_tags(
        &self,
        scope: &Scope,
        req: CreateOrUpdateTagsType,
    ) -> Result<serde_json::Value, ServiceError> {
        for t in &req.tags {
            check_tag(t)?;
        }
        let by_group = tags_by_group(req.tags)?;
        for (group, tags) in by_group {
            self.change_group(scope, &group, |g, _| {
                let list = g.group.tags.get_or_insert_with(Vec::new);
                for t in &tags {
                    let d = tag_description(&group, t);
                    match list.iter_mut().find(|x| x.key == d.key) {
                        Some(x) => *x = d,
                        None => list.push(d),
                    }
                }
                if list.len() > 50 {
                    return Err(ServiceError::sender(
                        "LimitExceededFault",
                        format!("The number of tags for auto-scaling-group {group} exceeds the limit of 50."),
                    ));
                }
                list.sort_by(|a, b| a.key.cmp(&b.key));
                Ok(())
            })
            .await?;
        }
        Ok(serde_json::json!({}))
    }

    pub(crate) async fn delete_tags(
        &self,
        scope: &Scope,
        req: DeleteTagsType,
    ) -> Result<serde_json::Value, ServiceError> {
        let by_group = tags_by_group(req.tags)?;
        for (group, tags) in by_group {
            self.change_group(scope, &group, |g, _| {
                let list = g.group.tags.get_or_insert_with(Vec::new);
                // A value given must match; without one the key goes whatever its value.
                list.retain(|x| {
                    !tags.iter().any(|t| {
                        Some(&t.key) == x.key.as_ref()
                            && t.value.as_ref().is_none_or(|v| Some(v) == x.value.as_ref())
                    })
                });
                Ok(())
            })
            .await?;
        }
        Ok(serde_json::json!({}))
    }

    pub(crate) fn describe_tags(
        &self,
        scope: &Scope,
        req: DescribeTagsType,
    ) -> Result<TagsType, ServiceError> {
        let page = Page::new(req.max_records, req.next_token.as_deref(), 50, 100)?;
        let filters = req.filters.unwrap_or_default();
        let all: Vec<Stored<GroupRecord>> =
            load_prefix(self.store.as_ref(), &keys::group_prefix(scope)).map_err(unreadable)?;
        let items: Vec<(String, TagDescription)> = all
            .into_iter()
            .flat_map(|g| g.value.group.tags.unwrap_or_default())
            .filter(|t| {
                filters.iter().all(|f| match f.name.as_deref() {
                    Some("auto-scaling-group") => {
                        filter_matches(f, t.resource_id.as_deref().unwrap_or_default())
                    }
                    Some("key") => filter_matches(f, t.key.as_deref().unwrap_or_default()),
                    Some("value") => filter_matches(f, t.value.as_deref().unwrap_or_default()),
                    Some("propagate-at-launch") => {
                        filter_matches(f, if t.propagate_at_launch == Some(true) { "true" } else { "false" })
                    }
                    _ => true,
                })
            })
            .map(|t| {
                (
                    format!(
                        "{}\u{0}{}",
                        t.resource_id.as_deref().unwrap_or_default(),
                        t.key.as_deref().unwrap_or_default()
                    ),
                    t,
                )
            })
            .collect();
        let (items, next) = page.take(items, |(k, _)| k.clone());
        Ok(TagsType { tags: Some(items.into_iter().map(|(_, t)| t).collect()), next_token: next })
    }
}

/// CreateOrUpdateTags' and DeleteTags' tags, by the group each names (`ResourceId`).
fn tags_by_group(tags: Vec<Tag>) -> Result<std::collections::BTreeMap<String, Vec<Tag>>, ServiceError> {
    let mut by_group: std::collections::BTreeMap<String, Vec<Tag>> = Default::default();
    for t in tags {
        let Some(g) = t.resource_id.clone() else {
            return Err(validation("ResourceId is required"));
        };
        by_group.entry(g).or_default().push(t);
    }
    Ok(by_group)
}
