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
use super::daemon_task_definitions::DaemonTaskDefRecord;
use crate::records::{encode, load, load_prefix};
use crate::table::{Before, Record, Row, TxnExt};
use crate::{ControlPlane, Ctx, Stored, keys, status};
use gantry_core::arn::cluster_name;
use gantry_core::daemon;
use gantry_core::page::{PageRequest, paginate};
use gantry_core::validate::{is_valid_name, validate_tags};
use gantry_core::{
    DaemonDeploymentStatus, DaemonMonitorStatus, DaemonStatus, DaemonTaskDefinitionStatus, EcsError,
    ErrorKind, Result, Scope,
};
use gantry_model::*;
use gantry_store::Txn;
use serde::{Deserialize, Serialize};

/// A daemon as stored: DescribeDaemon's fields and the settings of its current revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonRecord {
    pub name: String,
    pub cluster: String,
    pub arn: String,
    pub status: String,
    pub created_at: f64,
    pub updated_at: f64,
    /// The capacity providers' names.
    pub capacity_providers: Vec<String>,
    pub task_definition_arn: String,
    /// The current (target) revision and the most recent deployment.
    pub revision_arn: String,
    pub deployment_arn: String,
    pub deployment_configuration: DaemonDeploymentConfiguration,
    #[serde(default)]
    pub propagate_tags: Option<String>,
    #[serde(default)]
    pub enable_ecs_managed_tags: bool,
    #[serde(default)]
    pub enable_execute_command: bool,
    #[serde(default = "yes")]
    pub critical: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub client_token: Option<String>,
    /// When the daemon scheduler first found every instance running the current revision (the
    /// bake time counts from there); reset by each deployment.
    #[serde(default)]
    pub converged_since_ms: Option<i64>,
}

fn yes() -> bool {
    true
}

/// A daemon's key, and its row in `/_ecs/daemon/` (what the daemon scheduler visits).
impl Record for DaemonRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::daemon(scope, &self.cluster, &self.name)
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        vec![(keys::daemon_index(scope, &self.cluster, &self.name), Vec::new())]
    }
}

impl DaemonRecord {
    pub fn is_active(&self) -> bool {
        status::daemon_status(Some(&self.status)) == Some(DaemonStatus::Active)
    }
}

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
        let now = self.clock.now().as_epoch_seconds();
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
        let revision = DaemonRevision {
            daemon_revision_arn: Some(revision_arn.clone()),
            cluster_arn: Some(scope.cluster_arn(&rec.cluster)),
            daemon_arn: Some(rec.arn.clone()),
            daemon_task_definition_arn: Some(rec.task_definition_arn.clone()),
            created_at: Some(now),
            container_images: Some(images),
            propagate_tags: Some(rec.propagate_tags.clone().unwrap_or_else(|| "NONE".into())),
            enable_ecs_managed_tags: Some(rec.enable_ecs_managed_tags),
            enable_execute_command: Some(rec.enable_execute_command),
            critical: Some(rec.critical),
        };
        let revision_detail = |arn: &str| DaemonDeploymentRevisionDetail {
            arn: Some(arn.to_string()),
            capacity_providers: Some(
                rec.capacity_providers
                    .iter()
                    .map(|p| DaemonDeploymentCapacityProvider {
                        arn: Some(scope.capacity_provider_arn(p)),
                        running_instance_count: Some(0),
                        without_daemon_instance_count: Some(0),
                        draining_instance_count: Some(0),
                    })
                    .collect(),
            ),
            total_running_instance_count: Some(0),
            total_without_daemon_instance_count: Some(0),
            total_draining_instance_count: Some(0),
        };
        let alarms = rec.deployment_configuration.alarms.as_ref().filter(|a| a.enable);
        let deployment = DaemonDeployment {
            daemon_deployment_arn: Some(deployment_arn.clone()),
            cluster_arn: Some(scope.cluster_arn(&rec.cluster)),
            status: Some(DaemonDeploymentStatus::Pending.as_str().into()),
            status_reason: None,
            target_daemon_revision: Some(revision_detail(&revision_arn)),
            source_daemon_revisions: Some(
                previous.map(|p| vec![revision_detail(&p.revision_arn)]).unwrap_or_default(),
            ),
            circuit_breaker: Some(DaemonCircuitBreaker {
                failure_count: 0,
                status: Some(DaemonMonitorStatus::Monitoring.as_str().into()),
                threshold: gantry_sched::daemon::threshold(0) as i32,
            }),
            alarms: Some(DaemonDeploymentAlarms {
                status: Some(
                    if alarms.is_some() {
                        DaemonMonitorStatus::Monitoring
                    } else {
                        DaemonMonitorStatus::Disabled
                    }
                    .as_str()
                    .into(),
                ),
                alarm_names: alarms.and_then(|a| a.alarm_names.clone()),
                triggered_alarm_names: None,
            }),
            rollback: None,
            deployment_configuration: Some(rec.deployment_configuration.clone()),
            created_at: Some(now),
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
        let revision_key = keys::daemon_revision(scope, &rec.cluster, &rec.name, &rev_id);
        let deployment_key = keys::daemon_deployment(scope, &rec.cluster, &rec.name, &dep_id);
        Ok(txn
            .when(revision_key.clone(), 0)
            .put(revision_key, encode(&revision))
            .when(deployment_key.clone(), 0)
            .put(deployment_key, encode(&deployment)))
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
        let Some(mut dep) = load::<DaemonDeployment>(&*self.store, &key)? else { return Ok(txn) };
        if !matches!(
            status::daemon_deployment_status(&dep.value),
            Some(DaemonDeploymentStatus::Pending | DaemonDeploymentStatus::InProgress)
        ) {
            return Ok(txn);
        }
        let now = self.clock.now().as_epoch_seconds();
        status::set_daemon_deployment_status(&mut dep.value, DaemonDeploymentStatus::Stopped);
        dep.value.status_reason = Some(reason.to_string());
        dep.value.stopped_at = Some(now);
        Ok(txn.when(&key, dep.mod_revision).put(&key, encode(&dep.value)))
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
                let now = self.clock.now().as_epoch_seconds();
                let mut rec = DaemonRecord {
                    arn: daemon::daemon_arn(&ctx.scope, &cluster, &name),
                    name: name.clone(),
                    cluster: cluster.clone(),
                    status: DaemonStatus::Active.as_str().into(),
                    created_at: now,
                    updated_at: now,
                    tags: req.tags.clone().unwrap_or_default(),
                    client_token: req.client_token.clone(),
                    ..Default::default()
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
            status: Some(rec.status),
            created_at: Some(rec.created_at),
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
            status: Some(rec.status),
            created_at: Some(rec.created_at),
            updated_at: Some(rec.updated_at),
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
                rec.status = DaemonStatus::DeleteInProgress.as_str().into();
                rec.updated_at = self.clock.now().as_epoch_seconds();
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
            status: Some(rec.status),
            created_at: Some(rec.created_at),
            updated_at: Some(rec.updated_at),
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
                status: Some(rec.status.clone()),
                current_revisions: Some(vec![DaemonRevisionDetail {
                    arn: Some(rec.revision_arn.clone()),
                    capacity_providers: Some(counts),
                    total_running_count: total_running,
                    total_without_daemon_count: total_without,
                }]),
                deployment_arn: Some(rec.deployment_arn.clone()),
                created_at: Some(rec.created_at),
                updated_at: Some(rec.updated_at),
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
            .map(|d| {
                (
                    d.name.clone(),
                    DaemonSummary {
                        daemon_arn: Some(d.arn),
                        status: Some(d.status),
                        created_at: Some(d.created_at),
                        updated_at: Some(d.updated_at),
                    },
                )
            })
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
        let mut deps: Vec<DaemonDeployment> = load_prefix::<DaemonDeployment>(
            &*self.store,
            &keys::daemon_deployments_prefix(&ctx.scope, &rec.cluster, &rec.name),
        )?
        .into_iter()
        .map(|d| d.value)
        .filter(|d| {
            wanted.is_empty() || status::daemon_deployment_status(d).is_some_and(|s| wanted.contains(&s))
        })
        .filter(|d| {
            let at = d.created_at.unwrap_or_default();
            req.created_at
                .as_ref()
                .is_none_or(|c| c.before.is_none_or(|b| at < b) && c.after.is_none_or(|a| at > a))
        })
        .collect();
        // Newest first; the ARN breaks ties so that pages are stable.
        deps.sort_by(|a, b| {
            b.created_at
                .unwrap_or_default()
                .total_cmp(&a.created_at.unwrap_or_default())
                .then_with(|| b.daemon_deployment_arn.cmp(&a.daemon_deployment_arn))
        });
        let rows: Vec<(String, DaemonDeploymentSummary)> = deps
            .into_iter()
            .map(|d| {
                // Key order is the listing's: newest first (inverted milliseconds), then the ARN.
                let ms = (d.created_at.unwrap_or_default() * 1000.0) as i64;
                let key = format!(
                    "{:015}!{}",
                    999_999_999_999_999 - ms.clamp(0, 999_999_999_999_999),
                    d.daemon_deployment_arn.clone().unwrap_or_default()
                );
                (
                    key,
                    DaemonDeploymentSummary {
                        daemon_deployment_arn: d.daemon_deployment_arn,
                        daemon_arn: Some(rec.arn.clone()),
                        cluster_arn: d.cluster_arn,
                        status: d.status,
                        status_reason: d.status_reason,
                        target_daemon_revision_arn: d.target_daemon_revision.and_then(|t| t.arn),
                        created_at: d.created_at,
                        started_at: d.started_at,
                        stopped_at: d.stopped_at,
                        finished_at: d.finished_at,
                    },
                )
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
                    load::<DaemonDeployment>(&*self.store, &keys::daemon_deployment(&ctx.scope, &c, &n, &id))
                })
                .transpose()?
                .flatten();
            match rec {
                Some(d) => found.push(d.value),
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
                    load::<DaemonRevision>(&*self.store, &keys::daemon_revision(&ctx.scope, &c, &n, &id))
                })
                .transpose()?
                .flatten();
            match rec {
                Some(d) => found.push(d.value),
                None => failures.push(super::missing(arn, |a| a.to_string())),
            }
        }
        Ok(DescribeDaemonRevisionsResponse { daemon_revisions: Some(found), failures: Some(failures) })
    }
}

impl DaemonRecord {
    /// The current revision's ID (the last part of its ARN): the `startedBy` of its tasks.
    pub fn revision_id(&self) -> &str {
        self.revision_arn.rsplit('/').next().unwrap_or_default()
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
