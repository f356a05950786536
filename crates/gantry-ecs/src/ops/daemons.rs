//! ECS Managed Daemons: CreateDaemon, UpdateDaemon, DeleteDaemon, DescribeDaemon, ListDaemons,
//! and their history: ListDaemonDeployments, DescribeDaemonDeployments, DescribeDaemonRevisions.
//!
//! A daemon is one record (`daemon/CLUSTER/NAME`: what DescribeDaemon shows plus the settings
//! its revisions are made of). Every CreateDaemon and UpdateDaemon writes, in the same
//! compare-and-swap transaction, a daemon revision (`daemon-revision/CLUSTER/NAME/ID`: ECS's
//! immutable `DaemonRevision`) and a daemon deployment (`daemon-deployment/CLUSTER/NAME/ID`, ECS's
//! `DaemonDeployment`, PENDING) that rolls it out; the deployment it replaces, if unfinished, is
//! STOPPED in the same write. A daemon task definition left DELETE_IN_PROGRESS goes DELETED in the
//! write that makes the last daemon let go of it.

use super::capacity_provider_record::CapacityProviderRecord;
pub use super::daemon_record::DaemonRecord;
use super::daemon_record::{
    DaemonDeploymentRecord, DaemonRevisionRecord, StoredCircuitBreaker, StoredDeploymentAlarms,
    StoredRevisionDetail,
};
use super::daemon_task_definitions::DaemonTaskDefRecord;
use crate::records::{load, load_prefix};
use crate::table::{Before, TxnExt};
use crate::{ControlPlane, Ctx, Stored, keys};
use gantry_core::arn::cluster_name;
use gantry_core::daemon;
use gantry_core::page::{PageRequest, paginate};
use gantry_core::validate::{is_valid_name, validate_tags};
use gantry_core::{
    DaemonDeploymentStatus, DaemonMonitorStatus, DaemonStatus, DaemonTaskDefinitionStatus, EcsError,
    ErrorKind, Result,
};
use gantry_model::*;
use gantry_store::Txn;

fn not_found() -> EcsError {
    EcsError::new(ErrorKind::DaemonNotFoundException, "Daemon not found.")
}

fn not_active(arn: &str) -> EcsError {
    EcsError::new(ErrorKind::DaemonNotActiveException, format!("Daemon {arn} is not ACTIVE."))
}

/// What CreateDaemon and UpdateDaemon share: the parts of a new revision and deployment.
struct Change<'a> {
    task_definition: &'a str,
    capacity_providers: &'a [String],
    deployment_configuration: Option<&'a DaemonDeploymentConfiguration>,
    propagate_tags: Option<&'a str>,
    enable_ecs_managed_tags: bool,
    enable_execute_command: bool,
    critical: Option<bool>,
}

impl ControlPlane {
    /// A daemon by ARN, as stored.
    pub(crate) fn load_daemon(&self, ctx: &Ctx, arn: &str) -> Result<Option<Stored<DaemonRecord>>> {
        let Some((cluster, name)) = daemon::parse_daemon_arn(&ctx.scope, arn) else {
            return Ok(None);
        };
        load(&*self.store, &keys::daemon(&ctx.scope, &cluster, &name))
    }

    /// The capacity providers a daemon may run on, by name: each ACTIVE, an ECS Managed Instances
    /// provider, of the daemon's cluster.
    fn daemon_providers(&self, ctx: &Ctx, cluster: &str, refs: &[String]) -> Result<Vec<String>> {
        if refs.is_empty() {
            return Err(EcsError::invalid(
                "capacityProviderArns must contain at least one capacity provider.",
            ));
        }
        let mut out = Vec::new();
        for r in refs {
            let name = super::capacity_providers::provider_name(&ctx.scope, r);
            let only_managed = || {
                EcsError::new(
                    ErrorKind::UnsupportedFeatureException,
                    format!(
                        "ECS Managed Daemons is only supported for Amazon ECS Managed Instances Capacity Providers. ('{r}')"
                    ),
                )
            };
            if super::capacity_providers::BUILT_IN.contains(&name.as_str()) {
                return Err(only_managed());
            }
            let p = load::<CapacityProviderRecord>(&*self.store, &keys::capacity_provider(&ctx.scope, &name))?
                .filter(|p| p.value.is_active())
                .ok_or_else(|| {
                    EcsError::invalid(format!(
                        "The specified capacity provider was not found. Specify a valid capacity provider and try again. ('{r}')"
                    ))
                })?;
            if p.value.managed_instances_provider.is_none() {
                return Err(only_managed());
            }
            if p.value.cluster.as_deref() != Some(cluster) {
                return Err(EcsError::invalid(format!(
                    "The capacity provider '{name}' is not associated with the cluster '{cluster}'."
                )));
            }
            if out.contains(&name) {
                return Err(EcsError::invalid(format!(
                    "The capacity provider '{name}' is listed more than once."
                )));
            }
            out.push(name);
        }
        Ok(out)
    }

    /// Whether an ACTIVE daemon of the scope runs `arn` (its current revision's definition).
    pub(crate) fn daemons_using(&self, ctx: &Ctx, arn: &str) -> Result<bool> {
        let daemons = load_prefix::<DaemonRecord>(&*self.store, &keys::daemons_prefix(&ctx.scope))?;
        Ok(daemons.iter().any(|d| d.value.is_active() && d.value.task_definition_arn == arn))
    }

    /// The ACTIVE daemon task definition a daemon is asked to run, with its ARN.
    fn daemon_task_definition_for(&self, ctx: &Ctx, reference: &str) -> Result<Stored<DaemonTaskDefRecord>> {
        let found = self.find_daemon_task_definition(ctx, reference)?.ok_or_else(|| {
            EcsError::client(format!("The daemon task definition '{reference}' was not found."))
        })?;
        if !found.value.definition.is_active() {
            return Err(EcsError::client(format!("The daemon task definition '{reference}' is not ACTIVE.")));
        }
        Ok(found)
    }

    /// A new revision and its deployment for `rec` (whose settings `change` has replaced), and
    /// the transaction's ops for them; the deployment it replaces is STOPPED if unfinished.
    fn new_daemon_deployment(
        &self,
        ctx: &Ctx,
        rec: &mut DaemonRecord,
        td: &DaemonTaskDefRecord,
        previous: Option<&DaemonRecord>,
        mut txn: Txn,
    ) -> Result<Txn> {
        let scope = &ctx.scope;
        let now = self.clock.now();
        let rev_id = self.ids.hex_id();
        let dep_id = self.ids.hex_id();
        let revision_arn = daemon::revision_arn(scope, &rec.cluster, &rec.name, &rev_id);
        let deployment_arn = daemon::deployment_arn(scope, &rec.cluster, &rec.name, &dep_id);
        let images = td
            .definition
            .container_definitions
            .iter()
            .map(|c| DaemonContainerImage {
                container_name: c.name.clone(),
                image_digest: None,
                image: Some(c.image.clone()),
            })
            .collect();
        let revision = DaemonRevisionRecord {
            daemon_revision_arn: revision_arn.clone(),
            cluster_arn: scope.cluster_arn(&rec.cluster),
            daemon_arn: rec.arn.clone(),
            daemon_task_definition_arn: rec.task_definition_arn.clone(),
            created_at: now,
            container_images: images,
            propagate_tags: rec.propagate_tags.clone().unwrap_or_else(|| "NONE".into()),
            enable_ecs_managed_tags: rec.enable_ecs_managed_tags,
            enable_execute_command: rec.enable_execute_command,
            critical: rec.critical,
        };
        let revision_detail = |arn: &str| {
            StoredRevisionDetail::new(
                arn,
                rec.capacity_providers.iter().map(|p| scope.capacity_provider_arn(p)),
            )
        };
        let alarms = rec.deployment_configuration.alarms.as_ref().filter(|a| a.enable);
        let deployment = DaemonDeploymentRecord {
            daemon_deployment_arn: deployment_arn.clone(),
            cluster_arn: scope.cluster_arn(&rec.cluster),
            status: DaemonDeploymentStatus::Pending,
            status_reason: None,
            target_daemon_revision: revision_detail(&revision_arn),
            source_daemon_revisions: previous
                .map(|p| vec![revision_detail(&p.revision_arn)])
                .unwrap_or_default(),
            circuit_breaker: StoredCircuitBreaker {
                failure_count: 0,
                status: DaemonMonitorStatus::Monitoring,
                threshold: gantry_sched::daemon::threshold(0) as i32,
            },
            alarms: StoredDeploymentAlarms {
                status: if alarms.is_some() {
                    DaemonMonitorStatus::Monitoring
                } else {
                    DaemonMonitorStatus::Disabled
                },
                alarm_names: alarms.and_then(|a| a.alarm_names.clone()),
                triggered_alarm_names: None,
            },
            rollback: None,
            deployment_configuration: rec.deployment_configuration.clone(),
            created_at: now,
            started_at: None,
            stopped_at: None,
            finished_at: None,
        };
        if let Some(p) = previous {
            txn = self.stop_unfinished_daemon_deployment(ctx, p, "Superseded by a newer deployment.", txn)?;
        }
        rec.revision_arn = revision_arn;
        rec.deployment_arn = deployment_arn;
        rec.converged_since_ms = None;
        rec.updated_at = now;
        Ok(txn.put_record(scope, &Before::absent(), &revision).put_record(
            scope,
            &Before::absent(),
            &deployment,
        ))
    }

    /// Stops `d`'s latest deployment if it has not finished, in `txn`.
    fn stop_unfinished_daemon_deployment(
        &self,
        ctx: &Ctx,
        d: &DaemonRecord,
        reason: &str,
        txn: Txn,
    ) -> Result<Txn> {
        let Some(id) = d.deployment_arn.rsplit('/').next() else { return Ok(txn) };
        let key = keys::daemon_deployment(&ctx.scope, &d.cluster, &d.name, id);
        let Some(mut dep) = load::<DaemonDeploymentRecord>(&*self.store, &key)? else { return Ok(txn) };
        if !dep.value.is_unfinished() {
            return Ok(txn);
        }
        let before = Before::of(&ctx.scope, &dep);
        dep.value.status = DaemonDeploymentStatus::Stopped;
        dep.value.status_reason = Some(reason.to_string());
        dep.value.stopped_at = Some(self.clock.now());
        Ok(txn.put_record(&ctx.scope, &before, &dep.value))
    }

    /// In `txn`: a DELETE_IN_PROGRESS daemon task definition that no ACTIVE daemon but
    /// `leaving` uses any more becomes DELETED.
    fn release_daemon_task_definition(
        &self,
        ctx: &Ctx,
        arn: &str,
        leaving: &DaemonRecord,
        txn: Txn,
    ) -> Result<Txn> {
        let Some(mut td) = self.find_daemon_task_definition(ctx, arn)? else { return Ok(txn) };
        if td.value.definition.status != DaemonTaskDefinitionStatus::DeleteInProgress {
            return Ok(txn);
        }
        let others = load_prefix::<DaemonRecord>(&*self.store, &keys::daemons_prefix(&ctx.scope))?;
        if others
            .iter()
            .any(|d| d.value.arn != leaving.arn && d.value.is_active() && d.value.task_definition_arn == arn)
        {
            return Ok(txn);
        }
        let before = Before::of(&ctx.scope, &td);
        td.value.definition.status = DaemonTaskDefinitionStatus::Deleted;
        Ok(txn.put_record(&ctx.scope, &before, &td.value))
    }

    fn apply_daemon_change(
        &self,
        ctx: &Ctx,
        rec: &mut DaemonRecord,
        c: &Change<'_>,
    ) -> Result<Stored<DaemonTaskDefRecord>> {
        daemon::check_propagate_tags(c.propagate_tags)?;
        let td = self.daemon_task_definition_for(ctx, c.task_definition)?;
        rec.capacity_providers = self.daemon_providers(ctx, &rec.cluster, c.capacity_providers)?;
        rec.task_definition_arn = td.value.definition.daemon_task_definition_arn.clone();
        rec.deployment_configuration = daemon::deployment_configuration(c.deployment_configuration)?;
        rec.propagate_tags = c.propagate_tags.map(str::to_string);
        rec.enable_ecs_managed_tags = c.enable_ecs_managed_tags;
        rec.enable_execute_command = c.enable_execute_command;
        rec.critical = c.critical.unwrap_or(true);
        Ok(td)
    }

    pub async fn create_daemon(&self, ctx: &Ctx, req: CreateDaemonRequest) -> Result<CreateDaemonResponse> {
        let name = req.daemon_name.trim().to_string();
        if !is_valid_name(&name) {
            return Err(EcsError::invalid(format!(
                "daemonName '{}' is invalid: up to 255 letters, numbers, underscores and hyphens are allowed.",
                req.daemon_name
            )));
        }
        if let Some(tags) = &req.tags {
            validate_tags(tags)?;
        }
        if let Some(t) = &req.client_token
            && (t.is_empty() || t.len() > 36 || !t.bytes().all(|b| (33..=126).contains(&b)))
        {
            return Err(EcsError::invalid(
                "clientToken must be 1 to 36 ASCII characters in the range 33-126.",
            ));
        }
        let cluster = cluster_name(&ctx.scope, req.cluster_arn.as_deref())?;
        let key = keys::daemon(&ctx.scope, &cluster, &name);
        let rec = self
            .retry_locked(&key, || {
                self.active_cluster(ctx, Some(&cluster))?;
                let existing = load::<DaemonRecord>(&*self.store, &key)?;
                if let Some(e) = &existing {
                    if req.client_token.is_some() && e.value.client_token == req.client_token {
                        return Ok((Txn::new(), e.value.clone()));
                    }
                    return Err(EcsError::invalid(format!(
                        "A daemon named '{name}' already exists in the cluster '{cluster}'."
                    )));
                }
                let mut rec = DaemonRecord {
                    tags: req.tags.clone().unwrap_or_default(),
                    client_token: req.client_token.clone(),
                    ..DaemonRecord::new(&ctx.scope, &cluster, &name, self.clock.now())
                };
                let td = self.apply_daemon_change(
                    ctx,
                    &mut rec,
                    &Change {
                        task_definition: &req.daemon_task_definition_arn,
                        capacity_providers: &req.capacity_provider_arns,
                        deployment_configuration: req.deployment_configuration.as_ref(),
                        propagate_tags: req.propagate_tags.as_deref(),
                        enable_ecs_managed_tags: req.enable_ecs_managed_tags,
                        enable_execute_command: req.enable_execute_command,
                        critical: req.critical,
                    },
                )?;
                let txn = self.new_daemon_deployment(ctx, &mut rec, &td.value, None, Txn::new())?;
                // The definition must still be ACTIVE when the daemon takes it.
                let txn = txn.when(keys_of(ctx, &td.value), td.mod_revision);
                Ok((txn.put_record(&ctx.scope, &Before::absent(), &rec), rec))
            })
            .await?;
        Ok(CreateDaemonResponse {
            daemon_arn: Some(rec.arn),
            status: Some(rec.status.as_str().into()),
            created_at: Some(rec.created_at.as_epoch_seconds()),
            deployment_arn: Some(rec.deployment_arn),
        })
    }

    pub async fn update_daemon(&self, ctx: &Ctx, req: UpdateDaemonRequest) -> Result<UpdateDaemonResponse> {
        let rec = self
            .retry(|| {
                let cur = self.load_daemon(ctx, &req.daemon_arn)?.ok_or_else(not_found)?;
                if !cur.value.is_active() {
                    return Err(not_active(&cur.value.arn));
                }
                self.active_cluster(ctx, Some(&cur.value.cluster))?;
                let mut rec = cur.value.clone();
                let td = self.apply_daemon_change(
                    ctx,
                    &mut rec,
                    &Change {
                        task_definition: &req.daemon_task_definition_arn,
                        capacity_providers: &req.capacity_provider_arns,
                        deployment_configuration: req.deployment_configuration.as_ref(),
                        propagate_tags: req.propagate_tags.as_deref(),
                        enable_ecs_managed_tags: req.enable_ecs_managed_tags,
                        enable_execute_command: req.enable_execute_command,
                        critical: req.critical,
                    },
                )?;
                let mut txn =
                    self.new_daemon_deployment(ctx, &mut rec, &td.value, Some(&cur.value), Txn::new())?;
                txn = txn.when(keys_of(ctx, &td.value), td.mod_revision);
                if cur.value.task_definition_arn != rec.task_definition_arn {
                    txn = self.release_daemon_task_definition(
                        ctx,
                        &cur.value.task_definition_arn,
                        &cur.value,
                        txn,
                    )?;
                }
                Ok((txn.put_record(&ctx.scope, &Before::of(&ctx.scope, &cur), &rec), rec))
            })
            .await?;
        Ok(UpdateDaemonResponse {
            daemon_arn: Some(rec.arn),
            status: Some(rec.status.as_str().into()),
            created_at: Some(rec.created_at.as_epoch_seconds()),
            updated_at: Some(rec.updated_at.as_epoch_seconds()),
            deployment_arn: Some(rec.deployment_arn),
        })
    }

    pub async fn delete_daemon(&self, ctx: &Ctx, req: DeleteDaemonRequest) -> Result<DeleteDaemonResponse> {
        let rec = self
            .retry(|| {
                let cur = self.load_daemon(ctx, &req.daemon_arn)?.ok_or_else(not_found)?;
                if !cur.value.is_active() {
                    return Err(not_active(&cur.value.arn));
                }
                let mut rec = cur.value.clone();
                rec.status = DaemonStatus::DeleteInProgress;
                rec.updated_at = self.clock.now();
                let mut txn = self.stop_unfinished_daemon_deployment(
                    ctx,
                    &cur.value,
                    "The daemon was deleted.",
                    Txn::new(),
                )?;
                txn = self.release_daemon_task_definition(
                    ctx,
                    &cur.value.task_definition_arn,
                    &cur.value,
                    txn,
                )?;
                Ok((txn.put_record(&ctx.scope, &Before::of(&ctx.scope, &cur), &rec), rec))
            })
            .await?;
        Ok(DeleteDaemonResponse {
            daemon_arn: Some(rec.arn),
            status: Some(rec.status.as_str().into()),
            created_at: Some(rec.created_at.as_epoch_seconds()),
            updated_at: Some(rec.updated_at.as_epoch_seconds()),
            deployment_arn: Some(rec.deployment_arn),
        })
    }

    pub fn describe_daemon(&self, ctx: &Ctx, req: DescribeDaemonRequest) -> Result<DescribeDaemonResponse> {
        let rec = self.load_daemon(ctx, &req.daemon_arn)?.ok_or_else(not_found)?.value;
        let counts = self.daemon_counts(ctx, &rec)?;
        let total_running = counts.iter().map(|c| c.running_count).sum();
        let total_without = counts.iter().map(|c| c.without_daemon_count).sum();
        Ok(DescribeDaemonResponse {
            daemon: Some(DaemonDetail {
                daemon_arn: Some(rec.arn.clone()),
                cluster_arn: Some(ctx.scope.cluster_arn(&rec.cluster)),
                status: Some(rec.status.as_str().into()),
                current_revisions: Some(vec![DaemonRevisionDetail {
                    arn: Some(rec.revision_arn.clone()),
                    capacity_providers: Some(counts),
                    total_running_count: total_running,
                    total_without_daemon_count: total_without,
                }]),
                deployment_arn: Some(rec.deployment_arn.clone()),
                created_at: Some(rec.created_at.as_epoch_seconds()),
                updated_at: Some(rec.updated_at.as_epoch_seconds()),
            }),
        })
    }

    /// Per capacity provider: the daemon's running tasks of its current revision, and the
    /// provider's instances of the cluster without one.
    pub(crate) fn daemon_counts(&self, ctx: &Ctx, rec: &DaemonRecord) -> Result<Vec<DaemonCapacityProvider>> {
        let running = self.daemon_tasks_by_instance(ctx, rec)?;
        let mut out = Vec::new();
        for p in &rec.capacity_providers {
            let instances = self.capacity_provider_instances(ctx, &rec.cluster, p)?;
            let with = instances.iter().filter(|i| running.contains(i.as_str())).count() as i32;
            out.push(DaemonCapacityProvider {
                arn: Some(ctx.scope.capacity_provider_arn(p)),
                running_count: with,
                without_daemon_count: instances.len() as i32 - with,
            });
        }
        Ok(out)
    }

    /// The container instances (ARNs) running a task of the daemon's current revision.
    pub(crate) fn daemon_tasks_by_instance(
        &self,
        ctx: &Ctx,
        rec: &DaemonRecord,
    ) -> Result<std::collections::HashSet<String>> {
        let group = daemon_group(&rec.name);
        let prefix =
            keys::task_index_prefix(&ctx.scope, &rec.cluster, keys::TaskIndex::Group(&group), "RUNNING");
        let mut tasks = Vec::new();
        for kv in self.store.range(&prefix, None, usize::MAX) {
            let id = &kv.key[prefix.len()..];
            if let Some(t) =
                load::<super::tasks::TaskRecord>(&*self.store, &keys::task(&ctx.scope, &rec.cluster, id))?
            {
                tasks.push(t.value.task);
            }
        }
        Ok(tasks
            .into_iter()
            .filter(|t| t.started_by.as_deref() == Some(rec.revision_id()))
            .filter(|t| t.last_status == gantry_core::TaskStatus::Running)
            .filter_map(|t| t.container_instance_arn)
            .collect())
    }

    pub fn list_daemons(&self, ctx: &Ctx, req: ListDaemonsRequest) -> Result<ListDaemonsResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 100, 100)?;
        let cluster = cluster_name(&ctx.scope, req.cluster_arn.as_deref())?;
        self.active_cluster(ctx, Some(&cluster))?;
        let providers: Vec<String> = req
            .capacity_provider_arns
            .iter()
            .flatten()
            .map(|r| super::capacity_providers::provider_name(&ctx.scope, r))
            .collect();
        let daemons = load_prefix::<DaemonRecord>(&*self.store, &keys::daemon_prefix(&ctx.scope, &cluster))?;
        let rows: Vec<(String, DaemonSummary)> = daemons
            .into_iter()
            .map(|d| d.value)
            .filter(|d| providers.is_empty() || d.capacity_providers.iter().any(|p| providers.contains(p)))
            .map(|d| (d.name.clone(), d.to_summary()))
            .collect();
        let rows = rows.into_iter().filter(|(k, _)| page.after.as_ref().is_none_or(|a| k > a)).collect();
        let (items, next_token) = paginate(rows, page.limit, |(k, _)| k.clone());
        Ok(ListDaemonsResponse {
            daemon_summaries_list: Some(items.into_iter().map(|(_, s)| s).collect()),
            next_token,
        })
    }

    pub fn list_daemon_deployments(
        &self,
        ctx: &Ctx,
        req: ListDaemonDeploymentsRequest,
    ) -> Result<ListDaemonDeploymentsResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 20, 100)?;
        let mut wanted = Vec::new();
        for s in req.status.iter().flatten() {
            wanted.push(DaemonDeploymentStatus::parse(s).ok_or_else(|| {
                let all: Vec<&str> = DaemonDeploymentStatus::ALL.iter().map(|s| s.as_str()).collect();
                EcsError::invalid(format!("status should be one of [{}], but was '{s}'.", all.join(",")))
            })?);
        }
        let rec = self.load_daemon(ctx, &req.daemon_arn)?.ok_or_else(not_found)?.value;
        let mut deps: Vec<DaemonDeploymentRecord> = load_prefix::<DaemonDeploymentRecord>(
            &*self.store,
            &keys::daemon_deployments_prefix(&ctx.scope, &rec.cluster, &rec.name),
        )?
        .into_iter()
        .map(|d| d.value)
        .filter(|d| wanted.is_empty() || wanted.contains(&d.status))
        .filter(|d| {
            let at = d.created_at.as_epoch_seconds();
            req.created_at
                .as_ref()
                .is_none_or(|c| c.before.is_none_or(|b| at < b) && c.after.is_none_or(|a| at > a))
        })
        .collect();
        // Newest first; the ARN breaks ties so that pages are stable.
        deps.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.daemon_deployment_arn.cmp(&a.daemon_deployment_arn))
        });
        let rows: Vec<(String, DaemonDeploymentSummary)> = deps
            .into_iter()
            .map(|d| {
                // Key order is the listing's: newest first (inverted milliseconds), then the ARN.
                let ms = d.created_at.0;
                let key = format!(
                    "{:015}!{}",
                    999_999_999_999_999 - ms.clamp(0, 999_999_999_999_999),
                    d.daemon_deployment_arn
                );
                (key, d.to_summary(&rec.arn))
            })
            .collect();
        let rows = rows.into_iter().filter(|(k, _)| page.after.as_ref().is_none_or(|a| k > a)).collect();
        let (items, next_token) = paginate(rows, page.limit, |(k, _)| k.clone());
        Ok(ListDaemonDeploymentsResponse {
            daemon_deployments: Some(items.into_iter().map(|(_, s)| s).collect()),
            next_token,
        })
    }

    pub fn describe_daemon_deployments(
        &self,
        ctx: &Ctx,
        req: DescribeDaemonDeploymentsRequest,
    ) -> Result<DescribeDaemonDeploymentsResponse> {
        super::check_batch("daemonDeploymentArns", req.daemon_deployment_arns.len(), 20)?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for arn in &req.daemon_deployment_arns {
            let rec = daemon::parse_child_arn(&ctx.scope, arn, "daemon-deployment")
                .map(|(c, n, id)| {
                    load::<DaemonDeploymentRecord>(
                        &*self.store,
                        &keys::daemon_deployment(&ctx.scope, &c, &n, &id),
                    )
                })
                .transpose()?
                .flatten();
            match rec {
                Some(d) => found.push(d.value.to_wire()),
                None => failures.push(super::missing(arn, |a| a.to_string())),
            }
        }
        Ok(DescribeDaemonDeploymentsResponse { failures: Some(failures), daemon_deployments: Some(found) })
    }

    pub fn describe_daemon_revisions(
        &self,
        ctx: &Ctx,
        req: DescribeDaemonRevisionsRequest,
    ) -> Result<DescribeDaemonRevisionsResponse> {
        super::check_batch("daemonRevisionArns", req.daemon_revision_arns.len(), 20)?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for arn in &req.daemon_revision_arns {
            let rec = daemon::parse_child_arn(&ctx.scope, arn, "daemon-revision")
                .map(|(c, n, id)| {
                    load::<DaemonRevisionRecord>(
                        &*self.store,
                        &keys::daemon_revision(&ctx.scope, &c, &n, &id),
                    )
                })
                .transpose()?
                .flatten();
            match rec {
                Some(d) => found.push(d.value.to_wire()),
                None => failures.push(super::missing(arn, |a| a.to_string())),
            }
        }
        Ok(DescribeDaemonRevisionsResponse { daemon_revisions: Some(found), failures: Some(failures) })
    }
}

/// The key of a daemon task definition's record.
fn keys_of(ctx: &Ctx, td: &DaemonTaskDefRecord) -> String {
    crate::table::Record::key(td, &ctx.scope)
}

/// The task group of a daemon's tasks.
pub fn daemon_group(name: &str) -> String {
    format!("daemon:{name}")
}
