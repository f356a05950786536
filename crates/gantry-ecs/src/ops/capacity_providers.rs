//! Capacity providers: CreateCapacityProvider, DescribeCapacityProviders,
//! UpdateCapacityProvider, DeleteCapacityProvider. FARGATE and FARGATE_SPOT exist in every
//! account and region without being stored.

use super::check_include;
use crate::records::{decode, encode, load, load_prefix};
use crate::{ControlPlane, Ctx, keys, status};
use gantry_core::page::{PageRequest, encode_token};
use gantry_core::validate::{is_valid_name, validate_tags};
use gantry_core::{Arn, CapacityProviderStatus, EcsError, Result, Scope};
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

impl ControlPlane {
    pub(crate) fn provider_exists(&self, ctx: &Ctx, name: &str) -> Result<bool> {
        if BUILT_IN.contains(&name) {
            return Ok(true);
        }
        Ok(load::<CapacityProvider>(&*self.store, &keys::capacity_provider(&ctx.scope, name))?
            .is_some_and(|p| status::provider_status(&p.value) == Some(CapacityProviderStatus::Active)))
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
            (None, Some(_)) => {
                return Err(EcsError::new(
                    gantry_core::ErrorKind::UnsupportedFeatureException,
                    "Managed instances capacity providers are not supported by Gantry; use an Auto Scaling group provider.",
                ));
            }
            _ => {
                return Err(EcsError::client(
                    "Exactly one of autoScalingGroupProvider or managedInstancesProvider must be specified.",
                ));
            }
        };
        let provider = CapacityProvider {
            capacity_provider_arn: Some(ctx.scope.capacity_provider_arn(&name)),
            name: Some(name.clone()),
            status: Some(CapacityProviderStatus::Active.as_str().into()),
            auto_scaling_group_provider: Some(asg.clone()),
            update_status: None,
            tags: Some(tags),
            r#type: Some("EC2_AUTOSCALING".into()),
            ..Default::default()
        };
        let key = keys::capacity_provider(&ctx.scope, &name);
        let created = self
            .retry(|| {
                let existing = load::<CapacityProvider>(&*self.store, &key)?;
                if existing.as_ref().is_some_and(|p| status::provider_status(&p.value) != Some(CapacityProviderStatus::Inactive)) {
                    return Err(EcsError::client(
                        "The specified capacity provider already exists. To change the configuration of an existing capacity provider, update the capacity provider.",
                    ));
                }
                let all = load_prefix::<CapacityProvider>(&*self.store, &keys::capacity_provider_prefix(&ctx.scope))?;
                if all.iter().any(|p| {
                    status::provider_status(&p.value) == Some(CapacityProviderStatus::Active)
                        && p.value.auto_scaling_group_provider.as_ref().map(|a| &a.auto_scaling_group_arn)
                            == Some(&asg.auto_scaling_group_arn)
                }) {
                    return Err(EcsError::client(
                        "The specified Auto Scaling group ARN is already being used by another capacity provider. Specify a unique Auto Scaling group ARN and try again.",
                    ));
                }
                let rev = existing.map_or(0, |p| p.mod_revision);
                Ok((Txn::new().when(&key, rev).put(&key, encode(&provider)), provider.clone()))
            })
            .await?;
        Ok(CreateCapacityProviderResponse { capacity_provider: Some(created) })
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
                    match load::<CapacityProvider>(&*self.store, &keys::capacity_provider(&ctx.scope, &name))?
                    {
                        Some(p) => out.push(render(p.value)),
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
                    let p = decode::<CapacityProvider>(&kv)?;
                    all.push((format!("1{}", p.value.name.clone().unwrap_or_default()), p.value));
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
        let update = req.auto_scaling_group_provider.clone().unwrap_or_default();
        if let Some(ms) = &update.managed_scaling {
            check_managed_scaling(ms)?;
        }
        check_enabled("managedTerminationProtection", update.managed_termination_protection.as_ref())?;
        check_enabled("managedDraining", update.managed_draining.as_ref())?;
        let key = keys::capacity_provider(&ctx.scope, &name);
        let updated = self
            .retry(|| {
                let mut p = match load::<CapacityProvider>(&*self.store, &key)? {
                    Some(p) if status::provider_status(&p.value) == Some(CapacityProviderStatus::Active) => p,
                    _ => return Err(not_found()),
                };
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
                p.value.update_status = Some("UPDATE_COMPLETE".into());
                p.value.update_status_reason = None;
                Ok((Txn::new().when(&key, p.mod_revision).put(&key, encode(&p.value)), p.value))
            })
            .await?;
        Ok(UpdateCapacityProviderResponse { capacity_provider: Some(updated) })
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
                let mut p = match load::<CapacityProvider>(&*self.store, &key)? {
                    Some(p) if status::provider_status(&p.value) == Some(CapacityProviderStatus::Active) => p,
                    _ => return Err(not_found()),
                };
                let clusters = load_prefix::<Cluster>(&*self.store, &keys::cluster_prefix(&ctx.scope))?;
                let user = clusters.iter().find(|c| {
                    status::cluster_active(&c.value)
                        && c.value.capacity_providers.iter().flatten().any(|n| *n == name)
                });
                if let Some(c) = user {
                    // ECS answers this with success and a failed update status, not an error.
                    p.value.update_status = Some("DELETE_FAILED".into());
                    p.value.update_status_reason = Some(format!(
                        "The capacity provider cannot be deleted because it is associated with cluster: {}. Remove the capacity provider from the cluster and try again.",
                        c.value.cluster_name.as_deref().unwrap_or_default()
                    ));
                } else {
                    status::set_provider_status(&mut p.value, CapacityProviderStatus::Inactive);
                    p.value.update_status = Some("DELETE_COMPLETE".into());
                    p.value.update_status_reason = None;
                }
                Ok((Txn::new().when(&key, p.mod_revision).put(&key, encode(&p.value)), p.value))
            })
            .await?;
        Ok(DeleteCapacityProviderResponse { capacity_provider: Some(out) })
    }
}
