//! Capacity providers: CreateCapacityProvider, DescribeCapacityProviders,
//! UpdateCapacityProvider, DeleteCapacityProvider. FARGATE and FARGATE_SPOT exist in every
//! account and region without being stored.

use super::capacity_provider_record::CapacityProviderRecord;
use super::check_include;
use super::cluster_record::ClusterRecord;
use crate::records::{decode, encode, load, load_prefix};
use crate::table::{Before, TxnExt};
use crate::{ControlPlane, Ctx, Stored, keys};
use gantry_core::page::{PageRequest, encode_token};
use gantry_core::validate::{is_valid_name, validate_tags};
use gantry_core::{Arn, CapacityProviderStatus, CapacityProviderUpdateStatus, EcsError, Result, Scope};
use gantry_model::*;
use gantry_store::Txn;

/// The providers every account has.
pub const BUILT_IN: &[&str] = &["FARGATE", "FARGATE_SPOT"];

/// The name in a capacity provider reference (short name or ARN).
pub fn provider_name(scope: &Scope, reference: &str) -> String {
    match Arn::parse(reference) {
        Some(a)
            if a.resource_type == "capacity-provider"
                && a.region == scope.region
                && a.account == scope.account =>
        {
            a.resource
        }
        _ => reference.to_string(),
    }
}

fn built_in(scope: &Scope, name: &str) -> CapacityProvider {
    CapacityProvider {
        capacity_provider_arn: Some(scope.capacity_provider_arn(name)),
        name: Some(name.to_string()),
        status: Some(CapacityProviderStatus::Active.as_str().into()),
        tags: Some(vec![]),
        r#type: Some(name.to_string()),
        ..Default::default()
    }
}

fn not_found() -> EcsError {
    EcsError::client(
        "The specified capacity provider does not exist. Specify a valid name or ARN and try again.",
    )
}

fn invalid_name() -> EcsError {
    EcsError::client(
        "The specified capacity provider name is invalid. Up to 255 characters are allowed, including letters (upper and lowercase), numbers, underscores, and hyphens. The name cannot be prefixed with \"aws\", \"ecs\", or \"fargate\". Specify a valid name and try again.",
    )
}

fn check_managed_scaling(ms: &ManagedScaling) -> Result<()> {
    if let Some(s) = &ms.status
        && s != "ENABLED"
        && s != "DISABLED"
    {
        return Err(EcsError::invalid(format!(
            "managedScaling.status should be one of [ENABLED,DISABLED], but was '{s}'."
        )));
    }
    let bounded = [
        ("targetCapacity", ms.target_capacity, 1, 100),
        ("minimumScalingStepSize", ms.minimum_scaling_step_size, 1, 10000),
        ("maximumScalingStepSize", ms.maximum_scaling_step_size, 1, 10000),
        ("instanceWarmupPeriod", ms.instance_warmup_period, 0, 10000),
    ];
    for (field, v, lo, hi) in bounded {
        if let Some(v) = v
            && !(lo..=hi).contains(&v)
        {
            return Err(EcsError::invalid(format!(
                "managedScaling.{field} must be between {lo} and {hi}, but was {v}."
            )));
        }
    }
    if let (Some(min), Some(max)) = (ms.minimum_scaling_step_size, ms.maximum_scaling_step_size)
        && min > max
    {
        return Err(EcsError::invalid(
            "managedScaling.minimumScalingStepSize cannot be greater than maximumScalingStepSize.",
        ));
    }
    Ok(())
}

fn check_enabled(field: &str, v: Option<&String>) -> Result<()> {
    match v.map(String::as_str) {
        None | Some("ENABLED" | "DISABLED") => Ok(()),
        Some(other) => {
            Err(EcsError::invalid(format!("{field} should be one of [ENABLED,DISABLED], but was '{other}'.")))
        }
    }
}

/// ECS's defaults for an Auto Scaling group provider's managed scaling.
fn with_defaults(mut p: AutoScalingGroupProvider) -> AutoScalingGroupProvider {
    let ms = p.managed_scaling.get_or_insert_with(Default::default);
    ms.status.get_or_insert_with(|| "ENABLED".into());
    ms.target_capacity.get_or_insert(100);
    ms.minimum_scaling_step_size.get_or_insert(1);
    ms.maximum_scaling_step_size.get_or_insert(10000);
    ms.instance_warmup_period.get_or_insert(300);
    p.managed_termination_protection.get_or_insert_with(|| "DISABLED".into());
    p.managed_draining.get_or_insert_with(|| "ENABLED".into());
    p
}

/// The tag on an ECS Managed Instances capacity provider that names the launcher its instances
/// come from (Gantry's convention: the launch template has no image to name it).
pub const LAUNCHER_TAG: &str = "gantry:launcher";
/// The launcher of a managed instances provider without [`LAUNCHER_TAG`].
pub const DEFAULT_LAUNCHER: &str = "gantry-local";
/// The instance type of a managed instances provider without `instanceRequirements`.
pub const DEFAULT_INSTANCE_TYPE: &str = "t3.medium";

/// The Auto Scaling group Gantry keeps for an ECS Managed Instances capacity provider.
pub fn managed_group_name(provider: &str) -> String {
    format!("ecs-managed-instances-{provider}")
}

/// The smallest instance type of Gantry's table (fewest vCPUs, then least memory, then name)
/// within `instanceRequirements`' vCPU and memory ranges, as EC2's attribute-based selection
/// would offer it; `None` when no type fits.
pub fn instance_type_for(req: Option<&InstanceRequirementsRequest>) -> Option<&'static str> {
    instance_type_fitting(req, (0, 0))
}

/// The smallest instance type of Gantry's table within `instanceRequirements` whose resources
/// (as its container instance registers them, [`gantry_core::ec2::resources`]) fit a task's
/// `need` (CPU units, MiB): what ECS Managed Instances launches for that task. Without
/// requirements, the default type if it fits, else the smallest type of the table that does.
/// `None` when no type satisfies both.
pub fn instance_type_fitting(
    req: Option<&InstanceRequirementsRequest>,
    need: (i64, i64),
) -> Option<&'static str> {
    let fits_need = |name: &str| {
        gantry_core::ec2::resources(name).is_some_and(|(cpu, mem)| cpu >= need.0 && mem >= need.1)
    };
    let Some(r) = req else {
        if fits_need(DEFAULT_INSTANCE_TYPE) {
            return Some(DEFAULT_INSTANCE_TYPE);
        }
        let mut all: Vec<(i64, i64, &'static str)> = gantry_core::ec2::TYPES
            .iter()
            .filter(|(name, _, _)| fits_need(name))
            .map(|(name, vcpu, gib)| (*vcpu, *gib, *name))
            .collect();
        all.sort();
        return all.first().map(|f| f.2);
    };
    let excluded = r.excluded_instance_types.clone().unwrap_or_default();
    let mut fits: Vec<(i64, i64, &'static str)> = gantry_core::ec2::TYPES
        .iter()
        .filter(|(name, vcpu, gib)| {
            let mib = if *gib == 0 { 512 } else { gib * 1024 };
            let cpu_ok = *vcpu >= i64::from(r.v_cpu_count.min)
                && r.v_cpu_count.max.is_none_or(|m| *vcpu <= i64::from(m));
            let mem_ok =
                mib >= i64::from(r.memory_mi_b.min) && r.memory_mi_b.max.is_none_or(|m| mib <= i64::from(m));
            // Patterns such as "m5.*" or "t3.nano".
            let allowed = !excluded.iter().any(|x| match x.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => x == name,
            });
            cpu_ok && mem_ok && allowed && fits_need(name)
        })
        .map(|(name, vcpu, gib)| (*vcpu, *gib, *name))
        .collect();
    fits.sort();
    fits.first().map(|f| f.2)
}

/// Checks a managed instances provider's configuration as ECS does, and returns it as
/// DescribeCapacityProviders shows it.
fn managed_instances(c: &CreateManagedInstancesProviderConfiguration) -> Result<ManagedInstancesProvider> {
    if c.infrastructure_role_arn.is_empty() {
        return Err(EcsError::invalid("infrastructureRoleArn should not be null or empty."));
    }
    match c.propagate_tags.as_deref() {
        None | Some("CAPACITY_PROVIDER" | "NONE") => {}
        Some(other) => {
            return Err(EcsError::invalid(format!(
                "propagateTags should be one of [CAPACITY_PROVIDER,NONE], but was '{other}'."
            )));
        }
    }
    let t = &c.instance_launch_template;
    if t.ec2_instance_profile_arn.is_empty() {
        return Err(EcsError::invalid("ec2InstanceProfileArn should not be null or empty."));
    }
    if let Some(r) = &t.instance_requirements {
        if r.v_cpu_count.min < 0 || r.v_cpu_count.max.is_some_and(|m| m < r.v_cpu_count.min) {
            return Err(EcsError::invalid("instanceRequirements.vCpuCount is not a valid range."));
        }
        if r.memory_mi_b.min < 0 || r.memory_mi_b.max.is_some_and(|m| m < r.memory_mi_b.min) {
            return Err(EcsError::invalid("instanceRequirements.memoryMiB is not a valid range."));
        }
        if instance_type_for(Some(r)).is_none() {
            return Err(EcsError::invalid("No instance type satisfies the specified instanceRequirements."));
        }
    }
    Ok(ManagedInstancesProvider {
        infrastructure_role_arn: Some(c.infrastructure_role_arn.clone()),
        instance_launch_template: Some(t.clone()),
        propagate_tags: Some(c.propagate_tags.clone().unwrap_or_else(|| "NONE".into())),
        infrastructure_optimization: c.infrastructure_optimization.clone(),
        auto_repair_configuration: c.auto_repair_configuration.clone(),
    })
}

impl ControlPlane {
    pub(crate) fn provider_exists(&self, ctx: &Ctx, name: &str) -> Result<bool> {
        if BUILT_IN.contains(&name) {
            return Ok(true);
        }
        Ok(load::<CapacityProviderRecord>(&*self.store, &keys::capacity_provider(&ctx.scope, name))?
            .is_some_and(|p| p.value.is_active()))
    }

    /// Whether a provider is an Auto Scaling group provider with managed scaling on: its tasks
    /// wait for capacity instead of failing.
    pub(crate) fn provider_scales(&self, ctx: &Ctx, name: &str) -> bool {
        if BUILT_IN.contains(&name) {
            return false;
        }
        load::<CapacityProviderRecord>(&*self.store, &keys::capacity_provider(&ctx.scope, name))
            .ok()
            .flatten()
            .filter(|p| p.value.is_active())
            .is_some_and(|p| {
                // ECS Managed Instances always scale: Gantry launches their instances.
                p.value.managed_instances_provider.is_some()
                    || p.value
                        .auto_scaling_group_provider
                        .and_then(|a| a.managed_scaling)
                        .is_some_and(|m| matches!(m.status.as_deref(), Some("ENABLED")))
            })
    }

    pub async fn create_capacity_provider(
        &self,
        ctx: &Ctx,
        req: CreateCapacityProviderRequest,
    ) -> Result<CreateCapacityProviderResponse> {
        let name = req.name.clone();
        let lower = name.to_ascii_lowercase();
        if !is_valid_name(&name) || ["aws", "ecs", "fargate"].iter().any(|p| lower.starts_with(p)) {
            return Err(invalid_name());
        }
        let tags = req.tags.clone().unwrap_or_default();
        validate_tags(&tags)?;
        if let Some(mi) = &req.managed_instances_provider
            && req.auto_scaling_group_provider.is_none()
        {
            return self.create_managed_instances_provider(ctx, &req, mi, tags).await;
        }
        let asg = match (&req.auto_scaling_group_provider, &req.managed_instances_provider) {
            (Some(asg), None) => {
                if asg.auto_scaling_group_arn.is_empty() {
                    return Err(EcsError::client("autoScalingGroupArn should not be null or empty."));
                }
                if let Some(ms) = &asg.managed_scaling {
                    check_managed_scaling(ms)?;
                }
                check_enabled("managedTerminationProtection", asg.managed_termination_protection.as_ref())?;
                check_enabled("managedDraining", asg.managed_draining.as_ref())?;
                with_defaults(asg.clone())
            }
            _ => {
                return Err(EcsError::client(
                    "Exactly one of autoScalingGroupProvider or managedInstancesProvider must be specified.",
                ));
            }
        };
        let provider = CapacityProviderRecord {
            capacity_provider_arn: ctx.scope.capacity_provider_arn(&name),
            name: name.clone(),
            cluster: None,
            status: CapacityProviderStatus::Active,
            auto_scaling_group_provider: Some(asg.clone()),
            managed_instances_provider: None,
            update_status: None,
            update_status_reason: None,
            tags,
            provider_type: Some("EC2_AUTOSCALING".into()),
        };
        let key = keys::capacity_provider(&ctx.scope, &name);
        let created = self
            .retry(|| {
                let existing = load::<CapacityProviderRecord>(&*self.store, &key)?;
                if existing.as_ref().is_some_and(|p| p.value.status != CapacityProviderStatus::Inactive) {
                    return Err(EcsError::client(
                        "The specified capacity provider already exists. To change the configuration of an existing capacity provider, update the capacity provider.",
                    ));
                }
                let all = load_prefix::<CapacityProviderRecord>(&*self.store, &keys::capacity_provider_prefix(&ctx.scope))?;
                if all.iter().any(|p| {
                    p.value.is_active()
                        && p.value.auto_scaling_group_provider.as_ref().map(|a| &a.auto_scaling_group_arn)
                            == Some(&asg.auto_scaling_group_arn)
                }) {
                    return Err(EcsError::client(
                        "The specified Auto Scaling group ARN is already being used by another capacity provider. Specify a unique Auto Scaling group ARN and try again.",
                    ));
                }
                let before = existing.map_or_else(Before::absent, |p| Before::of(&ctx.scope, &p));
                Ok((Txn::new().put_record(&ctx.scope, &before, &provider), provider.clone()))
            })
            .await?;
        Ok(CreateCapacityProviderResponse { capacity_provider: Some(created.to_wire()) })
    }

    /// CreateCapacityProvider with `managedInstancesProvider` (ECS Managed Instances): a provider
    /// of `cluster`, associated with it at once; Gantry launches and retires its instances
    /// through an Auto Scaling group of its own (`capacity.rs`).
    async fn create_managed_instances_provider(
        &self,
        ctx: &Ctx,
        req: &CreateCapacityProviderRequest,
        mi: &CreateManagedInstancesProviderConfiguration,
        tags: Vec<Tag>,
    ) -> Result<CreateCapacityProviderResponse> {
        let name = req.name.clone();
        let cluster_ref = req.cluster.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| {
            EcsError::invalid(
                "cluster must be specified when creating a capacity provider with managedInstancesProvider.",
            )
        })?;
        let config = managed_instances(mi)?;
        for t in &tags {
            if t.key.as_deref() == Some(LAUNCHER_TAG) && t.value.as_deref().is_none_or(str::is_empty) {
                return Err(EcsError::invalid(format!("The {LAUNCHER_TAG} tag must name a launcher.")));
            }
        }
        let key = keys::capacity_provider(&ctx.scope, &name);
        let created = self
            .retry(|| {
                let cluster = self.active_cluster(ctx, Some(cluster_ref))?;
                let cname = cluster.value.cluster_name.clone();
                let existing = load::<CapacityProviderRecord>(&*self.store, &key)?;
                if existing.as_ref().is_some_and(|p| p.value.status != CapacityProviderStatus::Inactive) {
                    return Err(EcsError::client(
                        "The specified capacity provider already exists. To change the configuration of an existing capacity provider, update the capacity provider.",
                    ));
                }
                let provider = CapacityProviderRecord {
                    capacity_provider_arn: ctx.scope.capacity_provider_arn(&name),
                    name: name.clone(),
                    cluster: Some(cname.clone()),
                    status: CapacityProviderStatus::Active,
                    auto_scaling_group_provider: None,
                    managed_instances_provider: Some(config.clone()),
                    update_status: None,
                    update_status_reason: None,
                    tags: tags.clone(),
                    provider_type: Some("MANAGED_INSTANCES".into()),
                };
                // The cluster lists it among its providers, in the same write.
                let mut c = cluster.value.clone();
                if !c.capacity_providers.contains(&name) {
                    c.capacity_providers.push(name.clone());
                }
                let ckey = keys::cluster(&ctx.scope, &cname);
                let before = existing.map_or_else(Before::absent, |p| Before::of(&ctx.scope, &p));
                Ok((
                    Txn::new()
                        .put_record(&ctx.scope, &before, &provider)
                        .when(&ckey, cluster.mod_revision)
                        .put(&ckey, encode(&c)),
                    provider,
                ))
            })
            .await?;
        Ok(CreateCapacityProviderResponse { capacity_provider: Some(created.to_wire()) })
    }

    /// DeleteCapacityProvider of a managed instances provider: refused (DELETE_FAILED, as ECS
    /// answers) while its cluster's tasks or services use it; else INACTIVE and gone from its
    /// cluster's providers in one write. Its instances are retired by cluster auto scaling.
    fn delete_managed_instances_provider(
        &self,
        ctx: &Ctx,
        mut p: Stored<CapacityProviderRecord>,
    ) -> Result<(Txn, CapacityProviderRecord)> {
        let before = Before::of(&ctx.scope, &p);
        let name = p.value.name.clone();
        let cname = p.value.cluster.clone().unwrap_or_default();
        let ckey = keys::cluster(&ctx.scope, &cname);
        let cluster = load::<ClusterRecord>(&*self.store, &ckey)?.filter(|c| c.value.is_active());
        let mut txn = Txn::new();
        if let Some(c) = &cluster {
            if self.provider_in_use(ctx, &cname, &name)? {
                p.value.set_update(CapacityProviderUpdateStatus::DeleteFailed, Some(format!(
                    "The capacity provider cannot be deleted because it is in use by tasks or services of cluster: {cname}. Stop them or move them to another capacity provider and try again."
                )));
                return Ok((Txn::new().put_record(&ctx.scope, &before, &p.value), p.value));
            }
            let mut cv = c.value.clone();
            cv.capacity_providers.retain(|n| *n != name);
            cv.default_capacity_provider_strategy.retain(|i| i.capacity_provider != name);
            txn = txn.when(&ckey, c.mod_revision).put(&ckey, encode(&cv));
        }
        p.value.status = CapacityProviderStatus::Inactive;
        p.value.set_update(CapacityProviderUpdateStatus::DeleteComplete, None);
        Ok((txn.put_record(&ctx.scope, &before, &p.value), p.value))
    }

    pub fn describe_capacity_providers(
        &self,
        ctx: &Ctx,
        req: DescribeCapacityProvidersRequest,
    ) -> Result<DescribeCapacityProvidersResponse> {
        check_include("include", req.include.as_ref(), &["TAGS"])?;
        let with_tags = super::includes(req.include.as_ref(), "TAGS");
        let render = |mut p: CapacityProvider| {
            if !with_tags {
                p.tags = None;
            }
            p
        };
        match &req.capacity_providers {
            Some(refs) if !refs.is_empty() => {
                super::check_batch("capacityProviders", refs.len(), 100)?;
                let mut out = Vec::new();
                let mut failures = Vec::new();
                for r in refs {
                    let name = provider_name(&ctx.scope, r);
                    if BUILT_IN.contains(&name.as_str()) {
                        out.push(render(built_in(&ctx.scope, &name)));
                        continue;
                    }
                    match load::<CapacityProviderRecord>(
                        &*self.store,
                        &keys::capacity_provider(&ctx.scope, &name),
                    )? {
                        Some(p) => out.push(render(p.value.to_wire())),
                        None => failures.push(super::missing(r, |r| ctx.scope.capacity_provider_arn(r))),
                    }
                }
                Ok(DescribeCapacityProvidersResponse {
                    capacity_providers: Some(out),
                    failures: Some(failures),
                    next_token: None,
                })
            }
            _ => {
                // Everything: the built-in providers first, then the stored ones by name.
                let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 10, 10)?;
                let mut all: Vec<(String, CapacityProvider)> =
                    BUILT_IN.iter().map(|n| (format!("0{n}"), built_in(&ctx.scope, n))).collect();
                for kv in self.store.range(&keys::capacity_provider_prefix(&ctx.scope), None, usize::MAX) {
                    let p = decode::<CapacityProviderRecord>(&kv)?.value;
                    all.push((format!("1{}", p.name), p.to_wire()));
                }
                let rest: Vec<_> =
                    all.into_iter().filter(|(k, _)| page.after.as_ref().is_none_or(|a| k > a)).collect();
                let next = (rest.len() > page.limit).then(|| encode_token(&rest[page.limit - 1].0));
                Ok(DescribeCapacityProvidersResponse {
                    capacity_providers: Some(
                        rest.into_iter().take(page.limit).map(|(_, p)| render(p)).collect(),
                    ),
                    failures: Some(vec![]),
                    next_token: next,
                })
            }
        }
    }

    pub async fn update_capacity_provider(
        &self,
        ctx: &Ctx,
        req: UpdateCapacityProviderRequest,
    ) -> Result<UpdateCapacityProviderResponse> {
        let name = provider_name(&ctx.scope, &req.name);
        if BUILT_IN.contains(&name.as_str()) {
            return Err(EcsError::client(format!(
                "The capacity provider {name} is managed by AWS and cannot be updated."
            )));
        }
        if let Some(mi) = &req.managed_instances_provider {
            return self.update_managed_instances_provider(ctx, &name, mi).await;
        }
        let update = req.auto_scaling_group_provider.clone().unwrap_or_default();
        if let Some(ms) = &update.managed_scaling {
            check_managed_scaling(ms)?;
        }
        check_enabled("managedTerminationProtection", update.managed_termination_protection.as_ref())?;
        check_enabled("managedDraining", update.managed_draining.as_ref())?;
        let key = keys::capacity_provider(&ctx.scope, &name);
        let updated = self
            .retry(|| {
                let mut p = match load::<CapacityProviderRecord>(&*self.store, &key)? {
                    Some(p) if p.value.is_active() => p,
                    _ => return Err(not_found()),
                };
                let before = Before::of(&ctx.scope, &p);
                let asg = p.value.auto_scaling_group_provider.get_or_insert_with(Default::default);
                if let Some(ms) = &update.managed_scaling {
                    let cur = asg.managed_scaling.get_or_insert_with(Default::default);
                    macro_rules! set {
                        ($f:ident) => {
                            if ms.$f.is_some() {
                                cur.$f = ms.$f.clone();
                            }
                        };
                    }
                    set!(status);
                    set!(target_capacity);
                    set!(minimum_scaling_step_size);
                    set!(maximum_scaling_step_size);
                    set!(instance_warmup_period);
                }
                if update.managed_termination_protection.is_some() {
                    asg.managed_termination_protection = update.managed_termination_protection.clone();
                }
                if update.managed_draining.is_some() {
                    asg.managed_draining = update.managed_draining.clone();
                }
                p.value.set_update(CapacityProviderUpdateStatus::UpdateComplete, None);
                Ok((Txn::new().put_record(&ctx.scope, &before, &p.value), p.value))
            })
            .await?;
        Ok(UpdateCapacityProviderResponse { capacity_provider: Some(updated.to_wire()) })
    }

    /// UpdateCapacityProvider with `managedInstancesProvider`: the role, tag propagation and the
    /// launch template's members given replace the stored ones. New instances follow it (the
    /// running ones are not replaced).
    async fn update_managed_instances_provider(
        &self,
        ctx: &Ctx,
        name: &str,
        u: &UpdateManagedInstancesProviderConfiguration,
    ) -> Result<UpdateCapacityProviderResponse> {
        let key = keys::capacity_provider(&ctx.scope, name);
        let updated = self
            .retry(|| {
                let mut p = match load::<CapacityProviderRecord>(&*self.store, &key)? {
                    Some(p) if p.value.is_active() => p,
                    _ => return Err(not_found()),
                };
                let before = Before::of(&ctx.scope, &p);
                let Some(cur) = p.value.managed_instances_provider.clone() else {
                    return Err(EcsError::invalid(format!(
                        "The capacity provider {name} is not a managed instances capacity provider."
                    )));
                };
                let mut t = cur.instance_launch_template.clone().unwrap_or_default();
                let l = &u.instance_launch_template;
                if let Some(v) = &l.ec2_instance_profile_arn {
                    t.ec2_instance_profile_arn = v.clone();
                }
                if let Some(v) = &l.network_configuration {
                    t.network_configuration = v.clone();
                }
                if l.storage_configuration.is_some() {
                    t.storage_configuration = l.storage_configuration.clone();
                }
                if l.instance_metadata_tags_propagation.is_some() {
                    t.instance_metadata_tags_propagation = l.instance_metadata_tags_propagation;
                }
                if l.local_storage_configuration.is_some() {
                    t.local_storage_configuration = l.local_storage_configuration.clone();
                }
                if l.monitoring.is_some() {
                    t.monitoring = l.monitoring.clone();
                }
                if l.instance_requirements.is_some() {
                    t.instance_requirements = l.instance_requirements.clone();
                }
                if l.capacity_reservations.is_some() {
                    t.capacity_reservations = l.capacity_reservations.clone();
                }
                let config = managed_instances(&CreateManagedInstancesProviderConfiguration {
                    infrastructure_role_arn: u.infrastructure_role_arn.clone(),
                    instance_launch_template: t,
                    propagate_tags: u.propagate_tags.clone().or(cur.propagate_tags.clone()),
                    infrastructure_optimization: u
                        .infrastructure_optimization
                        .clone()
                        .or(cur.infrastructure_optimization.clone()),
                    auto_repair_configuration: u
                        .auto_repair_configuration
                        .clone()
                        .or(cur.auto_repair_configuration.clone()),
                })?;
                p.value.managed_instances_provider = Some(config);
                p.value.set_update(CapacityProviderUpdateStatus::UpdateComplete, None);
                Ok((Txn::new().put_record(&ctx.scope, &before, &p.value), p.value))
            })
            .await?;
        Ok(UpdateCapacityProviderResponse { capacity_provider: Some(updated.to_wire()) })
    }

    pub async fn delete_capacity_provider(
        &self,
        ctx: &Ctx,
        req: DeleteCapacityProviderRequest,
    ) -> Result<DeleteCapacityProviderResponse> {
        let name = provider_name(&ctx.scope, &req.capacity_provider);
        if BUILT_IN.contains(&name.as_str()) {
            return Err(EcsError::client(format!(
                "The capacity provider {name} is managed by AWS and cannot be deleted."
            )));
        }
        let key = keys::capacity_provider(&ctx.scope, &name);
        let out = self
            .retry(|| {
                let mut p = match load::<CapacityProviderRecord>(&*self.store, &key)? {
                    Some(p) if p.value.is_active() => p,
                    _ => return Err(not_found()),
                };
                let before = Before::of(&ctx.scope, &p);
                if p.value.managed_instances_provider.is_some() {
                    return self.delete_managed_instances_provider(ctx, p);
                }
                let clusters = load_prefix::<ClusterRecord>(&*self.store, &keys::cluster_prefix(&ctx.scope))?;
                let user = clusters.iter().find(|c| c.value.is_active() && c.value.capacity_providers.contains(&name));
                if let Some(c) = user {
                    // ECS answers this with success and a failed update status, not an error.
                    p.value.set_update(CapacityProviderUpdateStatus::DeleteFailed, Some(format!(
                        "The capacity provider cannot be deleted because it is associated with cluster: {}. Remove the capacity provider from the cluster and try again.",
                        c.value.cluster_name
                    )));
                } else {
                    p.value.status = CapacityProviderStatus::Inactive;
                    p.value.set_update(CapacityProviderUpdateStatus::DeleteComplete, None);
                }
                Ok((Txn::new().put_record(&ctx.scope, &before, &p.value), p.value))
            })
            .await?;
        Ok(DeleteCapacityProviderResponse { capacity_provider: Some(out.to_wire()) })
    }
}

/// How a launch of `count` tasks is spread over a capacity provider strategy, as ECS does: each
/// provider's `base` first (in the strategy's order), then the rest in proportion to the
/// weights (largest remainders first, ties to the earlier provider); providers with weight 0
/// get only their base. Providers that get nothing are left out.
pub fn split(strategy: &[(String, i64, i64)], count: usize) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = strategy.iter().map(|(p, _, _)| (p.clone(), 0)).collect();
    let mut left = count;
    for (i, (_, base, _)) in strategy.iter().enumerate() {
        let b = (*base).max(0) as usize;
        let take = b.min(left);
        out[i].1 += take;
        left -= take;
    }
    let total: i64 = strategy.iter().map(|(_, _, w)| (*w).max(0)).sum();
    if left > 0 && total > 0 {
        let mut given = 0;
        let mut rems: Vec<(i64, usize)> = Vec::new();
        for (i, (_, _, w)) in strategy.iter().enumerate() {
            let share = left as i64 * (*w).max(0);
            out[i].1 += (share / total) as usize;
            given += (share / total) as usize;
            rems.push((share % total, i));
        }
        rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, i) in rems.into_iter().take(left - given) {
            out[i].1 += 1;
        }
    } else if left > 0
        && let Some(first) = out.first_mut()
    {
        first.1 += left;
    }
    out.into_iter().filter(|(_, n)| *n > 0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(v: serde_json::Value) -> InstanceRequirementsRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_smallest_type_within_the_requirements_that_fits_the_task() {
        let r = reqs(serde_json::json!({"vCpuCount": {"min": 2}, "memoryMiB": {"min": 4096}}));
        // Small tasks: the smallest type the requirements allow.
        assert_eq!(instance_type_fitting(Some(&r), (256, 512)), instance_type_for(Some(&r)));
        let res = |t: Option<&str>| gantry_core::ec2::resources(t.unwrap()).unwrap();
        assert_eq!(res(instance_type_fitting(Some(&r), (256, 512))), (2048, 3840), "2 vCPUs, 4 GiB");
        // A task of 6 GiB does not fit 4 GiB's 3,840 MiB: the next size up.
        assert_eq!(res(instance_type_fitting(Some(&r), (1024, 6144))), (2048, 7936), "2 vCPUs, 8 GiB");
        // Four vCPUs' worth of CPU units.
        let four = instance_type_fitting(Some(&r), (4096, 1024)).unwrap();
        assert_eq!(gantry_core::ec2::resources(four).unwrap().0, 4096, "{four}");
        // Within the maximum, nothing fits a task larger than every allowed type.
        let capped = reqs(serde_json::json!({"vCpuCount": {"min": 2, "max": 2}, "memoryMiB": {"min": 0}}));
        assert_eq!(instance_type_fitting(Some(&capped), (4096, 512)), None);
        // Excluded types are skipped.
        let no_t3 = reqs(serde_json::json!({"vCpuCount": {"min": 2}, "memoryMiB": {"min": 0},
            "excludedInstanceTypes": ["t3.*"]}));
        let t = instance_type_fitting(Some(&no_t3), (256, 512)).unwrap();
        assert!(!t.starts_with("t3."), "{t}");
        // No requirements: the default type while the task fits it.
        assert_eq!(instance_type_fitting(None, (256, 512)), Some(DEFAULT_INSTANCE_TYPE));
        let big = instance_type_fitting(None, (256, 7000)).unwrap();
        assert!(gantry_core::ec2::resources(big).unwrap().1 >= 7000, "{big}");
    }
}
