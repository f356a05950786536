//! Task sets, for services with the EXTERNAL deployment controller (blue/green by an outside
//! tool): CreateTaskSet, UpdateTaskSet, DeleteTaskSet, DescribeTaskSets and
//! UpdateServicePrimaryTaskSet.
//!
//! Task sets live in the service record (`Service.taskSets`, as DescribeServices shows them);
//! the scheduler keeps each at its computed desired count (`gantry_sched::reconcile_task_sets`)
//! and maintains the counts and stability status. A deleted task set is DRAINING until its
//! tasks are gone, then it disappears.

use super::services::{ServiceRecord, new_deployment_id};
use super::task_set_record::StoredTaskSet;
use super::tasks::{check_compatible, check_launch_fields, check_network, check_task_definition_ref, launch};
use crate::records::encode;
use crate::{ControlPlane, Ctx, Stored};
use gantry_core::validate::validate_tags;
use gantry_core::{EcsError, ErrorKind, Result, StabilityStatus, TaskSetStatus};
use gantry_model::*;
use gantry_store::Txn;

fn task_set_not_found() -> EcsError {
    EcsError::new(ErrorKind::TaskSetNotFoundException, "The specified task set does not exist.")
}

fn check_scale(scale: Option<&Scale>) -> Result<Scale> {
    let s = scale.cloned().unwrap_or(Scale { value: 100.0, unit: Some("PERCENT".into()) });
    if s.unit.as_deref().is_some_and(|u| u != "PERCENT") {
        return Err(EcsError::invalid(format!(
            "scale.unit should be one of [PERCENT], but was '{}'.",
            s.unit.as_deref().unwrap_or_default()
        )));
    }
    if !(0.0..=100.0).contains(&s.value) || s.value.is_nan() {
        return Err(EcsError::invalid(format!(
            "scale.value must be between 0 and 100, but was {}.",
            s.value
        )));
    }
    Ok(Scale { value: s.value, unit: Some("PERCENT".into()) })
}

impl ControlPlane {
    /// An ACTIVE service with the EXTERNAL deployment controller.
    fn external_service(
        &self,
        ctx: &Ctx,
        cluster: Option<&str>,
        service: &str,
    ) -> Result<(String, Stored<ServiceRecord>)> {
        let c = self.active_cluster(ctx, cluster)?;
        let cname = c.value.cluster_name;
        let rec = self
            .load_service(ctx, &cname, service)?
            .ok_or_else(|| EcsError::new(ErrorKind::ServiceNotFoundException, "Service not found."))?;
        if rec.value.service.status != gantry_core::ServiceStatus::Active {
            return Err(EcsError::new(ErrorKind::ServiceNotActiveException, "Service was not ACTIVE."));
        }
        let external = rec.value.service.is_external();
        if !external {
            return Err(EcsError::invalid(
                "Amazon ECS only supports task set management on services configured to use external deployment controllers.",
            ));
        }
        Ok((cname, rec))
    }

    pub async fn create_task_set(
        &self,
        ctx: &Ctx,
        req: CreateTaskSetRequest,
    ) -> Result<CreateTaskSetResponse> {
        let scale = check_scale(req.scale.as_ref())?;
        let tags = req.tags.clone().unwrap_or_default();
        validate_tags(&tags)?;
        check_launch_fields(req.launch_type.as_deref(), req.capacity_provider_strategy.as_ref())?;
        check_task_definition_ref(&req.task_definition)?;
        let td = self.active_task_definition(ctx, &req.task_definition)?;
        let c = self.active_cluster(ctx, Some(&req.cluster))?;
        let (launch_type, _) =
            launch(&c.value, req.launch_type.as_deref(), req.capacity_provider_strategy.as_ref())?;
        check_compatible(&td, &launch_type)?;
        check_network(&td, req.network_configuration.as_ref())?;
        let now = self.clock.now();
        let set = self
            .retry(|| {
                let (cname, mut rec) = self.external_service(ctx, Some(&req.cluster), &req.service)?;
                let svc_name = rec.value.service.service_name.clone();
                let id = new_deployment_id(&*self.ids);
                let fargate = launch_type == "FARGATE";
                let desired = rec.value.service.desired_count.max(0) as u32;
                let set = StoredTaskSet {
                    task_set_arn: ctx.scope.arn(&format!("task-set/{cname}/{svc_name}/{id}")),
                    id,
                    service_arn: rec.value.service.service_arn.clone(),
                    cluster_arn: rec.value.service.cluster_arn.clone(),
                    started_by: None,
                    external_id: req.external_id.clone(),
                    status: TaskSetStatus::Active,
                    task_definition: td.task_definition_arn.clone(),
                    computed_desired_count: gantry_sched::computed_desired(desired, scale.value) as i32,
                    pending_count: 0,
                    running_count: 0,
                    created_at: now,
                    updated_at: now,
                    launch_type: req.capacity_provider_strategy.is_none().then(|| launch_type.clone()),
                    capacity_provider_strategy: req.capacity_provider_strategy.clone(),
                    platform_version: fargate
                        .then(|| req.platform_version.clone().unwrap_or_else(|| "LATEST".into())),
                    platform_family: fargate.then(|| "Linux".into()),
                    network_configuration: req.network_configuration.clone(),
                    load_balancers: req.load_balancers.clone(),
                    service_registries: req.service_registries.clone(),
                    scale: scale.clone(),
                    stability_status: StabilityStatus::Stabilizing,
                    stability_status_at: now,
                    tags: Some(tags.clone()),
                    fargate_ephemeral_storage: None,
                };
                let sets = rec.value.service.task_sets.get_or_insert_with(Vec::new);
                sets.push(set.clone());
                Ok((Txn::new().when(&rec.key, rec.mod_revision).put(&rec.key, encode(&rec.value)), set))
            })
            .await?;
        Ok(CreateTaskSetResponse { task_set: Some(set.into_wire()) })
    }

    pub async fn update_task_set(
        &self,
        ctx: &Ctx,
        req: UpdateTaskSetRequest,
    ) -> Result<UpdateTaskSetResponse> {
        let scale = check_scale(Some(&req.scale))?;
        let now = self.clock.now();
        let set = self
            .retry(|| {
                let (_, mut rec) = self.external_service(ctx, Some(&req.cluster), &req.service)?;
                let desired = rec.value.service.desired_count.max(0) as u32;
                let sets = rec.value.service.task_sets.get_or_insert_with(Vec::new);
                let t = sets
                    .iter_mut()
                    .find(|t| t.is_named(&req.task_set) && !t.is_draining())
                    .ok_or_else(task_set_not_found)?;
                t.scale = scale.clone();
                t.computed_desired_count = gantry_sched::computed_desired(desired, scale.value) as i32;
                t.updated_at = now;
                let out = t.clone();
                Ok((Txn::new().when(&rec.key, rec.mod_revision).put(&rec.key, encode(&rec.value)), out))
            })
            .await?;
        Ok(UpdateTaskSetResponse { task_set: Some(set.into_wire()) })
    }

    pub async fn delete_task_set(
        &self,
        ctx: &Ctx,
        req: DeleteTaskSetRequest,
    ) -> Result<DeleteTaskSetResponse> {
        let now = self.clock.now();
        let force = req.force.unwrap_or(false);
        let set = self
            .retry(|| {
                let (_, mut rec) = self.external_service(ctx, Some(&req.cluster), &req.service)?;
                let sets = rec.value.service.task_sets.get_or_insert_with(Vec::new);
                let t = sets.iter_mut().find(|t| t.is_named(&req.task_set)).ok_or_else(task_set_not_found)?;
                if t.is_draining() {
                    return Ok((Txn::new(), t.clone()));
                }
                let scaled = t.scale.value > 0.0 || t.running_count + t.pending_count > 0;
                if scaled && !force {
                    return Err(EcsError::invalid(
                        "The task set cannot be deleted while it is scaled above 0. Scale it to 0 first, or set force to delete it.",
                    ));
                }
                t.status = TaskSetStatus::Draining;
                t.computed_desired_count = 0;
                t.updated_at = now;
                let out = t.clone();
                Ok((Txn::new().when(&rec.key, rec.mod_revision).put(&rec.key, encode(&rec.value)), out))
            })
            .await?;
        Ok(DeleteTaskSetResponse { task_set: Some(set.into_wire()) })
    }

    pub fn describe_task_sets(
        &self,
        ctx: &Ctx,
        req: DescribeTaskSetsRequest,
    ) -> Result<DescribeTaskSetsResponse> {
        super::check_include("include", req.include.as_ref(), &["TAGS"])?;
        let (_, rec) = self.external_service(ctx, Some(&req.cluster), &req.service)?;
        let all = rec.value.service.task_sets.unwrap_or_default();
        let mut sets = Vec::new();
        let mut failures = Vec::new();
        match &req.task_sets {
            Some(wanted) => {
                for r in wanted {
                    match all.iter().find(|t| t.is_named(r)) {
                        Some(t) => sets.push(t.to_wire()),
                        None => failures.push(Failure {
                            arn: Some(r.clone()),
                            reason: Some("MISSING".into()),
                            detail: None,
                        }),
                    }
                }
            }
            None => sets = all.into_iter().map(StoredTaskSet::into_wire).collect(),
        }
        if !super::includes(req.include.as_ref(), "TAGS") {
            for t in &mut sets {
                t.tags = None;
            }
        }
        Ok(DescribeTaskSetsResponse { task_sets: Some(sets), failures: Some(failures) })
    }

    pub async fn update_service_primary_task_set(
        &self,
        ctx: &Ctx,
        req: UpdateServicePrimaryTaskSetRequest,
    ) -> Result<UpdateServicePrimaryTaskSetResponse> {
        let now = self.clock.now();
        let set = self
            .retry(|| {
                let (_, mut rec) = self.external_service(ctx, Some(&req.cluster), &req.service)?;
                let s = &mut rec.value.service;
                let sets = s.task_sets.get_or_insert_with(Vec::new);
                let i = sets
                    .iter()
                    .position(|t| t.is_named(&req.primary_task_set) && !t.is_draining())
                    .ok_or_else(task_set_not_found)?;
                for (j, t) in sets.iter_mut().enumerate() {
                    let status = if j == i {
                        TaskSetStatus::Primary
                    } else if t.is_draining() {
                        TaskSetStatus::Draining
                    } else {
                        TaskSetStatus::Active
                    };
                    if t.status != status {
                        t.status = status;
                        t.updated_at = now;
                    }
                }
                let primary = sets[i].clone();
                // The service runs what its primary task set runs.
                s.task_definition = primary.task_definition.clone();
                s.launch_type = primary.launch_type.clone();
                s.capacity_provider_strategy = primary.capacity_provider_strategy.clone();
                s.network_configuration = primary.network_configuration.clone();
                s.platform_version = primary.platform_version.clone();
                Ok((Txn::new().when(&rec.key, rec.mod_revision).put(&rec.key, encode(&rec.value)), primary))
            })
            .await?;
        Ok(UpdateServicePrimaryTaskSetResponse { task_set: Some(set.into_wire()) })
    }
}
