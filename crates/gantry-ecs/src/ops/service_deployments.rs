//! Service deployment history: ECS's `ServiceDeployment` and `ServiceRevision` records, and the
//! API over them (ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions,
//! StopServiceDeployment).
//!
//! The history is derived from the service record and written only with it: every write of a
//! service record (CreateService, UpdateService, DeleteService, the scheduler's pass,
//! StopServiceDeployment) calls [`ControlPlane::sync_history`] and puts what it returns into the
//! same transaction, guarded by the compare-and-swap on the service record. So the history never
//! runs ahead of or behind the service.
//!
//! How deployments map to history:
//! - Each deployment that the API creates gets a service revision (a snapshot of what it runs)
//!   and a service deployment (from the other deployments' revisions to its own), both with the
//!   19 digits of the deployment's ID as their ID.
//! - A rollback deployment (circuit breaker, or StopServiceDeployment) gets neither, as in ECS:
//!   the service deployment it rolls back becomes ROLLBACK_IN_PROGRESS, with `rollback` naming
//!   the revision it returns to, then ROLLBACK_SUCCESSFUL when the rollback deployment completes
//!   (ROLLBACK_FAILED if it fails with nothing further to roll back to).
//! - COMPLETED → SUCCESSFUL; a deployment replaced while unfinished → STOPPED; FAILED without a
//!   rollback → STOPPED (ECS: a deployment "stops" when the failure detection has no rollback
//!   option); a deleted service's unfinished deployment → STOPPED.

use super::service_record::{HistoryLink, ServiceRecord, StoredDeployment, StoredService, service_not_found};
use crate::records::{decode, encode, load};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::page::{PageRequest, encode_token};
use gantry_core::time::epoch_seconds;
use gantry_core::{
    Arn, EcsError, ErrorKind, MonitorStatus, Result, RolloutState, Scope, ServiceDeploymentStatus, Timestamp,
};
use gantry_model::*;
use gantry_store::Txn;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A service deployment as stored (`keys::service_deployment`): what Gantry always knows is
/// required, statuses are enums and times are [`Timestamp`]s. Its JSON is the JSON of ECS's
/// `ServiceDeployment` shape that Gantry wrote before it had this type (same names, statuses as
/// ECS's strings, times as epoch seconds), so records of earlier releases read as they are;
/// DescribeServiceDeployments and ListServiceDeployments answer through [`Self::to_wire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeploymentRecord {
    pub service_deployment_arn: String,
    pub service_arn: String,
    pub cluster_arn: String,
    #[serde(with = "epoch_seconds")]
    pub created_at: Timestamp,
    #[serde(with = "epoch_seconds")]
    pub started_at: Timestamp,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
    #[serde(with = "epoch_seconds")]
    pub updated_at: Timestamp,
    /// The revisions it starts from, with the counts of the tasks running them.
    #[serde(default)]
    pub source_service_revisions: Vec<ServiceRevisionSummary>,
    pub target_service_revision: ServiceRevisionSummary,
    pub status: ServiceDeploymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// A traffic-shifting deployment's stage (`crate::traffic`); one that is not ECS's is a
    /// failed read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_stage: Option<gantry_core::DeploymentStage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_hook_details: Option<Vec<DeploymentLifecycleHookDetail>>,
    pub deployment_configuration: DeploymentConfiguration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackNote>,
    pub deployment_circuit_breaker: BreakerNote,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<AlarmsNote>,
}

/// A service deployment's rollback: why, since when, and to which revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackNote {
    pub reason: String,
    #[serde(with = "epoch_seconds")]
    pub started_at: Timestamp,
    pub service_revision_arn: String,
}

/// A service deployment's circuit breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerNote {
    pub status: MonitorStatus,
    pub failure_count: i32,
    pub threshold: i32,
}

/// A service deployment's CloudWatch alarms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmsNote {
    pub status: MonitorStatus,
    #[serde(default)]
    pub alarm_names: Vec<String>,
    #[serde(default)]
    pub triggered_alarm_names: Vec<String>,
}

impl ServiceDeploymentRecord {
    /// ECS's `ServiceDeployment`, as DescribeServiceDeployments returns it: the one place the
    /// record becomes the wire shape.
    pub fn to_wire(&self) -> ServiceDeployment {
        let s = |t: Timestamp| Some(t.as_epoch_seconds());
        ServiceDeployment {
            service_deployment_arn: Some(self.service_deployment_arn.clone()),
            service_arn: Some(self.service_arn.clone()),
            cluster_arn: Some(self.cluster_arn.clone()),
            created_at: s(self.created_at),
            started_at: s(self.started_at),
            finished_at: self.finished_at.and_then(s),
            stopped_at: self.stopped_at.and_then(s),
            updated_at: s(self.updated_at),
            source_service_revisions: Some(self.source_service_revisions.clone()),
            target_service_revision: Some(self.target_service_revision.clone()),
            status: Some(self.status.as_str().into()),
            status_reason: self.status_reason.clone(),
            lifecycle_stage: self.lifecycle_stage.map(|s| s.as_str().into()),
            lifecycle_hook_details: self.lifecycle_hook_details.clone(),
            deployment_configuration: Some(self.deployment_configuration.clone()),
            rollback: self.rollback.as_ref().map(|r| Rollback {
                reason: Some(r.reason.clone()),
                started_at: s(r.started_at),
                service_revision_arn: Some(r.service_revision_arn.clone()),
            }),
            deployment_circuit_breaker: Some(ServiceDeploymentCircuitBreaker {
                status: Some(self.deployment_circuit_breaker.status.as_str().into()),
                failure_count: self.deployment_circuit_breaker.failure_count,
                threshold: self.deployment_circuit_breaker.threshold,
            }),
            alarms: self.alarms.as_ref().map(|a| ServiceDeploymentAlarms {
                status: Some(a.status.as_str().into()),
                alarm_names: Some(a.alarm_names.clone()),
                triggered_alarm_names: Some(a.triggered_alarm_names.clone()),
            }),
        }
    }

    /// ListServiceDeployments' summary of it.
    pub fn to_brief(&self) -> ServiceDeploymentBrief {
        ServiceDeploymentBrief {
            service_deployment_arn: Some(self.service_deployment_arn.clone()),
            service_arn: Some(self.service_arn.clone()),
            cluster_arn: Some(self.cluster_arn.clone()),
            started_at: Some(self.started_at.as_epoch_seconds()),
            created_at: Some(self.created_at.as_epoch_seconds()),
            finished_at: self.finished_at.map(Timestamp::as_epoch_seconds),
            target_service_revision_arn: self.target_service_revision.arn.clone(),
            status: Some(self.status.as_str().into()),
            status_reason: self.status_reason.clone(),
        }
    }

    /// Its last change.
    pub fn changed_at(&self) -> Timestamp {
        [
            Some(self.updated_at),
            self.finished_at,
            self.stopped_at,
            Some(self.started_at),
            Some(self.created_at),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or_default()
    }
}

fn monitor(enabled: bool) -> MonitorStatus {
    if enabled { MonitorStatus::Monitoring } else { MonitorStatus::Disabled }
}

/// The history ID of a deployment: the digits of `ecs-svc/NNNN…`.
fn history_id(deployment: &str) -> String {
    deployment.strip_prefix("ecs-svc/").unwrap_or(deployment).replace('/', "-")
}

/// `arn:aws:ecs:REGION:ACCOUNT:service-deployment/CLUSTER/SERVICE/ID`.
pub fn service_deployment_arn(scope: &Scope, cluster: &str, service: &str, id: &str) -> String {
    scope.arn(&format!("service-deployment/{cluster}/{service}/{id}"))
}

/// `arn:aws:ecs:REGION:ACCOUNT:service-revision/CLUSTER/SERVICE/ID`.
pub fn service_revision_arn(scope: &Scope, cluster: &str, service: &str, id: &str) -> String {
    scope.arn(&format!("service-revision/{cluster}/{service}/{id}"))
}

/// A history ARN's parts, if it is well formed and of `kind`: its scope, cluster, service and ID.
fn parse_history_arn(arn: &str, kind: &str) -> Result<(Scope, String, String, String)> {
    let invalid = || EcsError::invalid(format!("Invalid identifier: {arn}"));
    let a = Arn::parse(arn).filter(|a| a.resource_type == kind).ok_or_else(invalid)?;
    let mut parts = a.resource.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(c), Some(s), Some(id), None) if !c.is_empty() && !s.is_empty() && !id.is_empty() => {
            Ok((Scope { account: a.account, region: a.region }, c.into(), s.into(), id.into()))
        }
        _ => Err(invalid()),
    }
}

/// The counts of the deployments that run `revision`.
fn revision_counts(
    deployments: &[StoredDeployment],
    links: &[HistoryLink],
    revision: &str,
) -> (i32, i32, i32) {
    let mut out = (0, 0, 0);
    for d in deployments {
        let runs = links.iter().any(|l| l.deployment == d.id && l.revision == revision);
        if runs {
            out.0 += d.desired_count;
            out.1 += d.running_count;
            out.2 += d.pending_count;
        }
    }
    out
}

/// Puts the counts of the deployments running a summary's revision into it.
fn refresh(summary: &mut ServiceRevisionSummary, deployments: &[StoredDeployment], links: &[HistoryLink]) {
    let id = summary.arn.as_deref().and_then(|a| a.rsplit('/').next()).unwrap_or_default().to_string();
    let (requested, running, pending) = revision_counts(deployments, links, &id);
    summary.requested_task_count = requested;
    summary.running_task_count = running;
    summary.pending_task_count = pending;
}

/// Where a service's history lives: its scope, cluster and name.
struct HistoryAt<'a> {
    scope: &'a Scope,
    cluster: &'a str,
    name: String,
}

impl HistoryAt<'_> {
    /// The key of one of the service's service deployments.
    fn sd_key(&self, id: &str) -> String {
        keys::service_deployment(self.scope, self.cluster, &self.name, id)
    }

    /// The ARN of one of the service's revisions.
    fn rev_arn(&self, id: &str) -> String {
        service_revision_arn(self.scope, self.cluster, &self.name, id)
    }
}

/// One sync of a service's history: what it read and what it will write.
struct Sync<'a> {
    at: HistoryAt<'a>,
    now: Timestamp,
    ctx: Ctx,
    loaded: Loaded,
    /// New service revisions, by ID.
    revisions: Vec<(String, ServiceRevision)>,
}

impl Sync<'_> {
    /// Step 4: puts the new revisions and the service deployments that changed into `txn`.
    fn write(self, mut txn: Txn) -> Txn {
        let at = &self.at;
        for (id, r) in self.revisions {
            txn = txn.put(keys::service_revision(at.scope, at.cluster, &at.name, &id), encode(&r));
        }
        for (key, (before, mut after)) in self.loaded.records {
            if before.as_ref() == Some(&after) {
                continue;
            }
            if before.is_some() {
                after.updated_at = self.now;
            }
            txn = txn.put(key, encode(&after));
        }
        txn
    }
}

/// The ID of the service's current service deployment (the last part of its ARN), if any.
fn current_service_deployment(rec: &ServiceRecord) -> Option<String> {
    rec.service.current_service_deployment.as_deref().and_then(|a| a.rsplit('/').next()).map(str::to_string)
}

/// The revisions a new service deployment (of deployment `did`) starts from: those the
/// service's other deployments run, each once.
fn source_revisions(
    at: &HistoryAt<'_>,
    rec: &ServiceRecord,
    deployments: &[StoredDeployment],
    did: &str,
) -> Vec<ServiceRevisionSummary> {
    let mut sources: Vec<ServiceRevisionSummary> = Vec::new();
    for o in deployments.iter().filter(|o| o.id != did) {
        let Some(l) = rec.history.iter().find(|l| l.deployment == o.id) else {
            continue;
        };
        let arn = at.rev_arn(&l.revision);
        if !sources.iter().any(|s| s.arn.as_deref() == Some(arn.as_str())) {
            sources.push(ServiceRevisionSummary { arn: Some(arn), ..Default::default() });
        }
    }
    sources
}

/// A new IN_PROGRESS service deployment `arn` for deployment `d`, from `sources` to `target`,
/// with the service's deployment configuration, circuit breaker and alarms.
fn new_service_deployment(
    rec: &ServiceRecord,
    d: &StoredDeployment,
    arn: &str,
    sources: Vec<ServiceRevisionSummary>,
    target: String,
    now: Timestamp,
) -> ServiceDeploymentRecord {
    let dc = rec.service.deployment_configuration.clone();
    let cb = dc.deployment_circuit_breaker.clone().unwrap_or_default();
    let (kind, value) = cb
        .threshold_configuration
        .as_ref()
        .map(|t| (t.r#type.clone(), t.value.max(0) as u32))
        .unwrap_or_else(|| ("BOUNDED_PERCENT".to_string(), 50));
    let threshold = gantry_sched::breaker_threshold(&kind, value, d.desired_count.max(0) as u32);
    let alarms = dc.alarms.as_ref().map(|a| AlarmsNote {
        status: monitor(a.enable),
        alarm_names: a.alarm_names.clone(),
        triggered_alarm_names: vec![],
    });
    let created = d.created_at;
    ServiceDeploymentRecord {
        service_deployment_arn: arn.to_string(),
        service_arn: rec.service.service_arn.clone(),
        cluster_arn: rec.service.cluster_arn.clone(),
        created_at: created,
        started_at: created,
        finished_at: None,
        stopped_at: None,
        updated_at: now,
        source_service_revisions: sources,
        target_service_revision: ServiceRevisionSummary { arn: Some(target), ..Default::default() },
        status: ServiceDeploymentStatus::InProgress,
        status_reason: None,
        lifecycle_stage: None,
        lifecycle_hook_details: None,
        deployment_configuration: dc.clone(),
        rollback: None,
        deployment_circuit_breaker: BreakerNote {
            status: monitor(cb.enable),
            failure_count: 0,
            threshold: threshold as i32,
        },
        alarms,
    }
}

/// Step 3: the service's view of its history (`currentServiceRevisions`), and the history
/// links it still needs.
fn current_revisions(at: &HistoryAt<'_>, rec: &mut ServiceRecord, deployments: &[StoredDeployment]) {
    let mut current: Vec<ServiceCurrentRevisionSummary> = Vec::new();
    for d in deployments {
        let Some(l) = rec.history.iter().find(|l| l.deployment == d.id) else {
            continue;
        };
        let arn = at.rev_arn(&l.revision);
        if current.iter().any(|c| c.arn.as_deref() == Some(arn.as_str())) {
            continue;
        }
        let (requested, running, pending) = revision_counts(deployments, &rec.history, &l.revision);
        current.push(ServiceCurrentRevisionSummary {
            arn: Some(arn),
            requested_task_count: requested,
            running_task_count: running,
            pending_task_count: pending,
        });
    }
    if !deployments.is_empty() || rec.service.current_service_revisions.is_some() {
        rec.service.current_service_revisions = Some(current);
    }
    // Links matter while their deployment is in the record, or may be rolled back to.
    let keep: Vec<String> = deployments
        .iter()
        .map(|d| d.id.clone())
        .chain(rec.sched.last_completed.as_ref().map(|d| d.id.clone()))
        .collect();
    rec.history.retain(|l| keep.contains(&l.deployment));
}

/// The history records read (and perhaps changed) by one sync, by key.
struct Loaded {
    records: BTreeMap<String, (Option<ServiceDeploymentRecord>, ServiceDeploymentRecord)>,
}

impl Loaded {
    fn get(&mut self, cp: &ControlPlane, key: &str) -> Result<Option<&mut ServiceDeploymentRecord>> {
        if !self.records.contains_key(key) {
            match load::<ServiceDeploymentRecord>(&*cp.store, key)? {
                Some(r) => {
                    self.records.insert(key.to_string(), (Some(r.value.clone()), r.value));
                }
                None => return Ok(None),
            }
        }
        Ok(self.records.get_mut(key).map(|(_, v)| v))
    }
}

impl ControlPlane {
    /// Brings the history of the service in `rec` in step with it, and fills the service's
    /// `currentServiceDeployment` and `currentServiceRevisions`. Returns `txn` with the history
    /// records that changed; the caller commits it with the service record. Calling it again on
    /// its own result changes nothing.
    pub(crate) fn sync_history(
        &self,
        scope: &Scope,
        cluster: &str,
        rec: &mut ServiceRecord,
        rollback: Option<&gantry_sched::Rollback>,
        txn: Txn,
    ) -> Result<Txn> {
        let mut s = Sync {
            at: HistoryAt { scope, cluster, name: rec.service.service_name.clone() },
            now: self.clock.now(),
            ctx: Ctx::root(scope.clone()),
            loaded: Loaded { records: BTreeMap::new() },
            revisions: Vec::new(),
        };
        let deployments = rec.service.deployments.clone();

        // 1. Deployments without a place in the history yet, oldest first.
        for d in deployments.iter().rev() {
            let did = d.id.clone();
            if rec.history.iter().any(|l| l.deployment == did) {
                continue;
            }
            if let Some(r) = rollback.filter(|r| r.id == did)
                && self.join_rolled_back(&mut s, rec, d, &did, r)?
            {
                continue;
            }
            self.start_service_deployment(&mut s, rec, &deployments, d, did)?;
        }
        // 2. Progress of the deployments the record still holds.
        self.advance_service_deployments(&mut s, rec, &deployments)?;
        // 3. The service's view of its history.
        current_revisions(&s.at, rec, &deployments);
        // 4. What changed.
        Ok(s.write(txn))
    }

    /// Step 1, a rollback deployment: it joins the service deployment it rolls back (the
    /// current one), which becomes ROLLBACK_IN_PROGRESS. False if there is none to join.
    fn join_rolled_back(
        &self,
        s: &mut Sync<'_>,
        rec: &mut ServiceRecord,
        d: &StoredDeployment,
        did: &str,
        r: &gantry_sched::Rollback,
    ) -> Result<bool> {
        let digits = history_id(did);
        let Some(cur) = current_service_deployment(rec) else { return Ok(false) };
        let Some(sd) = s.loaded.get(self, &s.at.sd_key(&cur))? else { return Ok(false) };
        let (to, reason) = (&r.to, r.reason.clone());
        // A rollback: part of the service deployment it rolls back.
        let revision = match rec.history.iter().find(|l| l.deployment == *to) {
            Some(l) => l.revision.clone(),
            None => {
                s.revisions.push((
                    digits.clone(),
                    self.revision_of(&s.ctx, &rec.service, d, &s.at.rev_arn(&digits)),
                ));
                digits.clone()
            }
        };
        if !sd.status.is_finished() {
            sd.status = ServiceDeploymentStatus::RollbackInProgress;
            sd.status_reason = Some(reason.clone());
            if sd.rollback.is_none() {
                sd.rollback = Some(RollbackNote {
                    reason: reason.clone(),
                    started_at: s.now,
                    service_revision_arn: s.at.rev_arn(&revision),
                });
            }
            let cb = &mut sd.deployment_circuit_breaker;
            cb.failure_count = r.failed_tasks as i32;
            if reason.starts_with("ECS deployment circuit breaker") {
                cb.status = MonitorStatus::Triggered;
            }
        }
        rec.history.push(HistoryLink {
            deployment: did.to_string(),
            service_deployment: cur,
            revision,
            rollback: true,
        });
        Ok(true)
    }

    /// Step 1, any other new deployment: a new service deployment and revision; the service
    /// deployment it replaces stops if unfinished.
    fn start_service_deployment(
        &self,
        s: &mut Sync<'_>,
        rec: &mut ServiceRecord,
        deployments: &[StoredDeployment],
        d: &StoredDeployment,
        did: String,
    ) -> Result<()> {
        let digits = history_id(&did);
        let current = current_service_deployment(rec);
        let arn = service_deployment_arn(s.at.scope, s.at.cluster, &s.at.name, &digits);
        if let Some(cur) = &current
            && let Some(sd) = s.loaded.get(self, &s.at.sd_key(cur))?
            && !sd.status.is_finished()
        {
            sd.status = ServiceDeploymentStatus::Stopped;
            sd.status_reason = Some(format!("Service deployment stopped: service deployment {arn} started."));
            sd.stopped_at = Some(s.now);
        }
        s.revisions.push((digits.clone(), self.revision_of(&s.ctx, &rec.service, d, &s.at.rev_arn(&digits))));
        rec.history.push(HistoryLink {
            deployment: did.clone(),
            service_deployment: digits.clone(),
            revision: digits.clone(),
            rollback: false,
        });
        let sources = source_revisions(&s.at, rec, deployments, &did);
        let sd = new_service_deployment(rec, d, &arn, sources, s.at.rev_arn(&digits), s.now);
        s.loaded.records.insert(s.at.sd_key(&digits), (None, sd));
        rec.service.current_service_deployment = Some(arn);
        Ok(())
    }

    /// Step 2: the progress of the deployments the record still holds, into their unfinished
    /// service deployments (counts, circuit breaker, SUCCESSFUL/STOPPED/ROLLBACK_*).
    fn advance_service_deployments(
        &self,
        s: &mut Sync<'_>,
        rec: &ServiceRecord,
        deployments: &[StoredDeployment],
    ) -> Result<()> {
        let now = s.now;
        let deleted = matches!(
            rec.service.status,
            gantry_core::ServiceStatus::Draining | gantry_core::ServiceStatus::Inactive
        );
        for (i, d) in deployments.iter().enumerate() {
            let Some(l) = rec.history.iter().find(|l| l.deployment == d.id).cloned() else {
                continue;
            };
            let links = rec.history.clone();
            let Some(sd) = s.loaded.get(self, &s.at.sd_key(&l.service_deployment))? else { continue };
            let status = sd.status;
            if status.is_finished() {
                continue;
            }
            refresh(&mut sd.target_service_revision, deployments, &links);
            for source in sd.source_service_revisions.iter_mut() {
                refresh(source, deployments, &links);
            }
            if let Some((stage, hooks)) = crate::traffic::lifecycle_of(&rec.traffic, d.id.as_str()) {
                sd.lifecycle_stage = Some(stage);
                sd.lifecycle_hook_details = (!hooks.is_empty()).then_some(hooks);
            }
            let rollout = Some(d.rollout_state);
            if l.rollback {
                if rollout == Some(RolloutState::Completed) {
                    sd.status = ServiceDeploymentStatus::RollbackSuccessful;
                    sd.finished_at = Some(now);
                } else if rollout == Some(RolloutState::Failed) && i == 0 {
                    sd.status = ServiceDeploymentStatus::RollbackFailed;
                    sd.status_reason = d.rollout_state_reason.clone();
                    sd.finished_at = Some(now);
                }
                continue;
            }
            sd.deployment_circuit_breaker.failure_count = d.failed_tasks;
            if status.is_rolling_back() {
                continue;
            }
            match rollout {
                Some(RolloutState::Completed) => {
                    sd.status = ServiceDeploymentStatus::Successful;
                    sd.finished_at = Some(now);
                    let cb = &mut sd.deployment_circuit_breaker;
                    if cb.status == MonitorStatus::Monitoring {
                        cb.status = MonitorStatus::MonitoringComplete;
                    }
                }
                Some(RolloutState::Failed) => {
                    sd.status = ServiceDeploymentStatus::Stopped;
                    sd.status_reason = d.rollout_state_reason.clone();
                    sd.stopped_at = Some(now);
                    let cb = &mut sd.deployment_circuit_breaker;
                    if cb.status == MonitorStatus::Monitoring {
                        cb.status = MonitorStatus::Triggered;
                    }
                }
                _ if deleted => {
                    sd.status = ServiceDeploymentStatus::Stopped;
                    sd.status_reason = Some("Service deployment stopped: the service was deleted.".into());
                    sd.stopped_at = Some(now);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The service revision a new deployment `d` of service `s` runs.
    fn revision_of(&self, ctx: &Ctx, s: &StoredService, d: &StoredDeployment, arn: &str) -> ServiceRevision {
        let images = d
            .task_definition
            .as_deref()
            .and_then(|td| self.find_task_definition(ctx, td).ok().flatten())
            .map(|r| {
                r.value
                    .definition
                    .container_definitions
                    .iter()
                    .map(|c| ContainerImage {
                        container_name: c.name.clone(),
                        image: c.image.clone(),
                        image_digest: None,
                    })
                    .collect()
            });
        ServiceRevision {
            service_revision_arn: Some(arn.to_string()),
            service_arn: Some(s.service_arn.clone()),
            cluster_arn: Some(s.cluster_arn.clone()),
            task_definition: d.task_definition.clone(),
            capacity_provider_strategy: d.capacity_provider_strategy.clone(),
            launch_type: d.launch_type.clone(),
            platform_version: d.platform_version.clone(),
            platform_family: d.platform_family.clone(),
            load_balancers: s.load_balancers.clone(),
            service_registries: s.service_registries.clone(),
            network_configuration: d.network_configuration.clone(),
            container_images: images,
            service_connect_configuration: d.service_connect_configuration.clone(),
            volume_configurations: d.volume_configurations.clone(),
            created_at: Some(d.created_at.as_epoch_seconds()),
            gateway_connectors: self.service_gateway_connectors(
                ctx,
                s.cluster_arn.rsplit('/').next().unwrap_or_default(),
                s.service_name.as_str(),
            ),
            ..Default::default()
        }
    }

    pub fn list_service_deployments(
        &self,
        ctx: &Ctx,
        req: ListServiceDeploymentsRequest,
    ) -> Result<ListServiceDeploymentsResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 20, 100)?;
        for s in req.status.iter().flatten() {
            if ServiceDeploymentStatus::parse(s).is_none() {
                let all: Vec<&str> = ServiceDeploymentStatus::ALL.iter().map(|s| s.as_str()).collect();
                super::one_of("status", s, &all)?;
            }
        }
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name;
        let rec = self.load_service(ctx, &cname, &req.service)?.ok_or_else(service_not_found)?;
        let name = rec.value.service.service_name.clone();
        let prefix = keys::service_deployments_prefix(&ctx.scope, &cname, &name);
        let mut all = Vec::new();
        for kv in self.store.range(&prefix, None, usize::MAX) {
            let r = decode::<ServiceDeploymentRecord>(&kv)?;
            let sd = &r.value;
            let created = sd.created_at.as_epoch_seconds();
            let wanted =
                req.status.as_ref().is_none_or(|l| l.is_empty() || l.iter().any(|s| sd.status.as_str() == s))
                    && req.created_at.as_ref().is_none_or(|c| {
                        c.before.is_none_or(|b| created < b) && c.after.is_none_or(|a| created > a)
                    });
            if wanted {
                all.push(r);
            }
        }
        // Newest first.
        all.sort_by(|a, b| b.value.created_at.cmp(&a.value.created_at).then_with(|| b.key.cmp(&a.key)));
        let start = match &page.after {
            None => 0,
            Some(after) => match all.iter().position(|r| &r.key == after) {
                Some(i) => i + 1,
                None => return Err(EcsError::invalid("Invalid nextToken.")),
            },
        };
        let rest = &all[start.min(all.len())..];
        let items: Vec<_> = rest.iter().take(page.limit).collect();
        let next = (rest.len() > page.limit).then(|| items.last().map(|r| encode_token(&r.key))).flatten();
        Ok(ListServiceDeploymentsResponse {
            service_deployments: Some(items.into_iter().map(|r| r.value.to_brief()).collect()),
            next_token: next,
        })
    }

    pub fn describe_service_deployments(
        &self,
        ctx: &Ctx,
        req: DescribeServiceDeploymentsRequest,
    ) -> Result<DescribeServiceDeploymentsResponse> {
        if req.service_deployment_arns.is_empty() {
            return Err(EcsError::invalid("serviceDeploymentArns cannot be empty."));
        }
        super::check_batch("serviceDeploymentArns", req.service_deployment_arns.len(), 20)?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for arn in &req.service_deployment_arns {
            let (scope, cluster, service, id) = parse_history_arn(arn, "service-deployment")?;
            let rec = (scope == ctx.scope)
                .then(|| {
                    load::<ServiceDeploymentRecord>(
                        &*self.store,
                        &keys::service_deployment(&scope, &cluster, &service, &id),
                    )
                })
                .transpose()?
                .flatten();
            match rec {
                Some(r) => found.push(r.value.to_wire()),
                None => failures.push(super::missing(arn, str::to_string)),
            }
        }
        Ok(DescribeServiceDeploymentsResponse { service_deployments: Some(found), failures: Some(failures) })
    }

    pub fn describe_service_revisions(
        &self,
        ctx: &Ctx,
        req: DescribeServiceRevisionsRequest,
    ) -> Result<DescribeServiceRevisionsResponse> {
        if req.service_revision_arns.is_empty() {
            return Err(EcsError::invalid("serviceRevisionArns cannot be empty."));
        }
        super::check_batch("serviceRevisionArns", req.service_revision_arns.len(), 20)?;
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for arn in &req.service_revision_arns {
            let (scope, cluster, service, id) = parse_history_arn(arn, "service-revision")?;
            let rec = (scope == ctx.scope)
                .then(|| {
                    load::<ServiceRevision>(
                        &*self.store,
                        &keys::service_revision(&scope, &cluster, &service, &id),
                    )
                })
                .transpose()?
                .flatten();
            match rec {
                Some(mut r) => {
                    // An Express service's revisions report what ECS manages for it.
                    if r.value.ecs_managed_resources.is_none() {
                        r.value.ecs_managed_resources =
                            self.express_managed_resources(ctx, &cluster, &service);
                    }
                    found.push(r.value)
                }
                None => failures.push(super::missing(arn, str::to_string)),
            }
        }
        Ok(DescribeServiceRevisionsResponse { service_revisions: Some(found), failures: Some(failures) })
    }

    /// StopServiceDeployment: ROLLBACK asks the scheduler to roll the deployment back to the last
    /// completed one (recorded at once as ROLLBACK_REQUESTED; a traffic-shifting deployment's
    /// rules go back to the old revision). ABORT is in the model's enum but, as ECS documents, ROLLBACK
    /// is the only valid stop type: ABORT is refused as unsupported.
    pub async fn stop_service_deployment(
        &self,
        ctx: &Ctx,
        req: StopServiceDeploymentRequest,
    ) -> Result<StopServiceDeploymentResponse> {
        let arn = req.service_deployment_arn.clone();
        let (scope, cluster, service, id) = parse_history_arn(&arn, "service-deployment")?;
        let stop_type = req.stop_type.clone().unwrap_or_else(|| "ROLLBACK".into());
        super::one_of("stopType", &stop_type, &["ABORT", "ROLLBACK"])?;
        if stop_type == "ABORT" {
            return Err(EcsError::new(
                ErrorKind::UnsupportedFeatureException,
                "The stop type ABORT is not supported. The valid values are ROLLBACK.",
            ));
        }
        let not_found = || {
            EcsError::new(
                ErrorKind::ServiceDeploymentNotFoundException,
                "The service deployment was not found.",
            )
        };
        if scope != ctx.scope {
            return Err(not_found());
        }
        let sd_key = keys::service_deployment(&scope, &cluster, &service, &id);
        let svc_key = keys::service(&scope, &cluster, &service);
        self.retry(|| {
            let mut sd = load::<ServiceDeploymentRecord>(&*self.store, &sd_key)?.ok_or_else(not_found)?;
            let mut rec = load::<ServiceRecord>(&*self.store, &svc_key)?.ok_or_else(not_found)?;
            match sd.value.status {
                ServiceDeploymentStatus::StopRequested
                | ServiceDeploymentStatus::RollbackRequested
                | ServiceDeploymentStatus::RollbackInProgress => {
                    return Ok((Txn::new(), ()));
                }
                ServiceDeploymentStatus::Pending | ServiceDeploymentStatus::InProgress => {}
                other => {
                    return Err(EcsError::new(
                        ErrorKind::ConflictException,
                        format!("The service deployment {arn} is {other} and can not be stopped."),
                    ));
                }
            }
            let primary = rec.value.service.deployments.first().map(|d| d.id.clone());
            let mine = rec
                .value
                .history
                .iter()
                .find(|l| {
                    !l.rollback && l.service_deployment == id && Some(&l.deployment) == primary.as_ref()
                })
                .map(|l| l.deployment.clone());
            let Some(deployment) = mine else {
                return Err(EcsError::new(
                    ErrorKind::ConflictException,
                    format!("The service deployment {arn} is not the service's current deployment."),
                ));
            };
            let target = rec.value.sched.last_completed.as_ref().map(|d| d.id.clone());
            if target.is_none_or(|t| t == deployment) {
                return Err(EcsError::new(
                    ErrorKind::ConflictException,
                    "The service has no previous successful service revision to roll back to.",
                ));
            }
            rec.value.sched.rollback_requested = Some(deployment);
            sd.value.status = ServiceDeploymentStatus::RollbackRequested;
            sd.value.status_reason =
                Some("Service deployment rollback requested by StopServiceDeployment.".into());
            sd.value.updated_at = self.clock.now();
            let txn = Txn::new()
                .when(&rec.key, rec.mod_revision)
                .put(&rec.key, encode(&rec.value))
                .put(&sd_key, encode(&sd.value));
            Ok((txn, ()))
        })
        .await?;
        Ok(StopServiceDeploymentResponse { service_deployment_arn: Some(arn) })
    }
}

impl ControlPlane {
    /// ContinueServiceDeployment: the answer (CONTINUE, the default, or ROLLBACK) to a PAUSE
    /// hook awaiting action in a service deployment IN_PROGRESS; the scheduler's next pass acts
    /// on it.
    pub async fn continue_service_deployment(
        &self,
        ctx: &Ctx,
        req: ContinueServiceDeploymentRequest,
    ) -> Result<ContinueServiceDeploymentResponse> {
        let arn = req.service_deployment_arn.clone();
        let action = req.action.clone().unwrap_or_else(|| "CONTINUE".into());
        super::one_of("action", &action, &["ROLLBACK", "CONTINUE"])?;
        if req.hook_id.is_empty() {
            return Err(EcsError::invalid("hookId can not be blank."));
        }
        let (scope, cluster, service, id) = parse_history_arn(&arn, "service-deployment")?;
        let not_found = || {
            EcsError::new(
                ErrorKind::ServiceDeploymentNotFoundException,
                "The service deployment was not found.",
            )
        };
        if scope != ctx.scope {
            return Err(not_found());
        }
        let sd_key = keys::service_deployment(&scope, &cluster, &service, &id);
        let svc_key = keys::service(&scope, &cluster, &service);
        self.retry(|| {
            let sd = load::<ServiceDeploymentRecord>(&*self.store, &sd_key)?.ok_or_else(not_found)?;
            let mut rec = load::<ServiceRecord>(&*self.store, &svc_key)?.ok_or_else(not_found)?;
            if sd.value.status != ServiceDeploymentStatus::InProgress {
                let status = sd.value.status;
                return Err(EcsError::new(
                    ErrorKind::ConflictException,
                    format!("The service deployment {arn} is {status} and can not be continued."),
                ));
            }
            let current =
                rec.value.traffic.progress.as_ref().map(|p| p.deployment.clone()).unwrap_or_default();
            let mine =
                rec.value.history.iter().any(|l| l.service_deployment == id && l.deployment == current);
            if !mine {
                return Err(EcsError::invalid(format!(
                    "The lifecycle hook {} was not found in the service deployment.",
                    req.hook_id
                )));
            }
            crate::traffic::answer_hook(&mut rec.value, &req.hook_id, action == "ROLLBACK")?;
            let txn = Txn::new().when(&rec.key, rec.mod_revision).put(&rec.key, encode(&rec.value));
            Ok((txn, ()))
        })
        .await?;
        Ok(ContinueServiceDeploymentResponse { service_deployment_arn: Some(arn) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_arns_parse_and_bad_ones_are_invalid() {
        let (scope, c, s, id) = parse_history_arn(
            "arn:aws:ecs:us-east-1:000000000000:service-deployment/c/web/123",
            "service-deployment",
        )
        .unwrap();
        assert_eq!(
            (scope.region.as_str(), c.as_str(), s.as_str(), id.as_str()),
            ("us-east-1", "c", "web", "123")
        );
        for bad in [
            "nope",
            "arn:aws:ecs:us-east-1:000000000000:service-revision/c/web/123",
            "arn:aws:ecs:us-east-1:000000000000:service-deployment/c/web",
            "arn:aws:ecs:us-east-1:000000000000:service-deployment/c/web/1/2",
            "arn:aws:ecs:us-east-1:000000000000:service-deployment//web/1",
        ] {
            let e = parse_history_arn(bad, "service-deployment").unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameterException, "{bad}");
        }
        assert_eq!(history_id("ecs-svc/0123"), "0123");
    }

    /// The stored JSON is ECS's shape (what Gantry stored before the record had a type of its
    /// own), whatever the record holds: a record written now reads in an earlier release too.
    #[test]
    fn a_record_stores_the_json_of_its_wire_shape() {
        let revision = |n: i32| ServiceRevisionSummary {
            arn: Some(format!("arn:aws:ecs:us-east-1:000000000000:service-revision/c/s/{n}")),
            requested_task_count: n,
            ..Default::default()
        };
        let mut r = ServiceDeploymentRecord {
            service_deployment_arn: "arn:aws:ecs:us-east-1:000000000000:service-deployment/c/s/2".into(),
            service_arn: "arn:aws:ecs:us-east-1:000000000000:service/c/s".into(),
            cluster_arn: "arn:aws:ecs:us-east-1:000000000000:cluster/c".into(),
            created_at: Timestamp(1_796_334_293_524),
            started_at: Timestamp(1_796_334_293_524),
            finished_at: None,
            stopped_at: Some(Timestamp(1_796_334_299_001)),
            updated_at: Timestamp(1_796_334_299_001),
            source_service_revisions: vec![revision(1)],
            target_service_revision: revision(2),
            status: ServiceDeploymentStatus::Stopped,
            status_reason: Some("stopped".into()),
            lifecycle_stage: Some(gantry_core::DeploymentStage::PostTestTrafficShift),
            lifecycle_hook_details: None,
            deployment_configuration: DeploymentConfiguration::default(),
            rollback: Some(RollbackNote {
                reason: "why".into(),
                started_at: Timestamp(1_796_334_298_000),
                service_revision_arn: "arn:aws:ecs:us-east-1:000000000000:service-revision/c/s/1".into(),
            }),
            deployment_circuit_breaker: BreakerNote {
                status: MonitorStatus::Triggered,
                failure_count: 3,
                threshold: 3,
            },
            alarms: Some(AlarmsNote {
                status: MonitorStatus::Disabled,
                alarm_names: vec!["a".into()],
                triggered_alarm_names: vec![],
            }),
        };
        for _ in 0..2 {
            let stored = serde_json::to_value(&r).unwrap();
            assert_eq!(stored, serde_json::to_value(r.to_wire()).unwrap());
            let back: ServiceDeploymentRecord = serde_json::from_value(stored).unwrap();
            assert_eq!(back, r);
            let wire: ServiceDeployment = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
            assert_eq!(wire, r.to_wire());
            assert_eq!(r.to_wire().lifecycle_stage.as_deref(), Some("POST_TEST_TRAFFIC_SHIFT"));
            // Without its optional parts.
            (r.rollback, r.alarms, r.stopped_at, r.status_reason) = (None, None, None, None);
        }
        let brief = serde_json::to_value(r.to_brief()).unwrap();
        assert_eq!(brief["status"], "STOPPED");
        assert_eq!(brief["createdAt"], 1_796_334_293.524);
        // A status Gantry never writes does not read.
        for field in ["status", "lifecycleStage"] {
            let mut bad = serde_json::to_value(&r).unwrap();
            bad[field] = "BOGUS".into();
            let e = serde_json::from_value::<ServiceDeploymentRecord>(bad).unwrap_err().to_string();
            assert!(e.contains("BOGUS"), "{field}: {e}");
        }
    }
}
