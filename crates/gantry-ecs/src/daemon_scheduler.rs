//! The daemon scheduler's store side: one pass over a cluster's daemons carries out
//! `gantry_sched::daemon::plan` (one task per ACTIVE instance of the daemon's capacity
//! providers, rolling deployments, the circuit breaker and rollback) and records the
//! deployment's outcome. It runs inside cluster auto scaling's pass (`capacity.rs`), before the
//! tasks waiting for capacity are placed, so a new instance gets its daemon tasks before other
//! tasks.
//!
//! A daemon's tasks are in the task group `daemon:NAME`, started by the ID of the daemon revision
//! they run. A DELETE_IN_PROGRESS daemon's tasks are stopped and, once none is left, the daemon
//! is removed (its deployments and revisions stay).

use crate::ops::daemon_record::{DaemonDeploymentRecord, DaemonRevisionRecord, StoredRollback};
use crate::ops::daemons::{DaemonRecord, daemon_group};
use crate::ops::instance_record::InstanceRecord;
use crate::ops::tasks::{DaemonLaunch, TaskRecord};
use crate::records::{decode, encode, load, load_prefix};
use crate::table::{Before, TxnExt};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::{
    DaemonDeploymentStatus, DaemonMonitorStatus, HealthStatus, InstanceStatus, Result, TaskStatus, Timestamp,
};
use gantry_model::*;
use gantry_sched::daemon::{self as rules, Outcome, Phase};
use gantry_store::Txn;

/// What a pass observed besides the plan: the target revision's failed tasks, the revision a
/// rollback returns to, and the deployment's alarms in ALARM.
struct Seen<'a> {
    failures: u32,
    previous: Option<&'a str>,
    in_alarm: &'a [String],
}

/// Per instance ARN: when the target revision's last task there stopped, and whether it failed.
type LastStopped = std::collections::HashMap<String, (f64, bool)>;

/// Per instance ARN: the capacity provider (of the daemon's) it belongs to.
type ProviderOf = std::collections::HashMap<String, String>;

/// Stop codes of a task that failed on its own (what the circuit breaker counts).
const FAILED: &[&str] = &["EssentialContainerExited", "TaskFailedToStart"];

/// Why ECS drained a container instance: a task of critical daemon `daemon` failed there. The
/// instance, of `capacity_provider`'s group, is replaced once it runs only daemon tasks.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct DaemonRepair {
    pub daemon: String,
    pub capacity_provider: String,
    /// Why: the daemon's task failed (stopped on its own), or its health turned UNHEALTHY.
    #[serde(default)]
    pub cause: RepairCause,
}

/// What made a critical daemon drain its instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum RepairCause {
    /// The daemon's task stopped on its own (an essential container exited, or it failed to
    /// start).
    #[default]
    Failed,
    /// The daemon's task is RUNNING but its health is UNHEALTHY (an essential container's
    /// health check failed).
    Unhealthy,
}

impl RepairCause {
    fn says(self) -> &'static str {
        match self {
            RepairCause::Failed => "failed",
            RepairCause::Unhealthy => "became UNHEALTHY",
        }
    }
}

impl ControlPlane {
    /// Daemon auto repair: each container instance drained because a critical daemon's task
    /// failed or turned UNHEALTHY there is, once it runs nothing but daemon tasks, terminated by
    /// its capacity provider's Auto Scaling group, which launches another in its place
    /// (TerminateInstanceInAutoScalingGroup without decrementing the desired capacity). The new
    /// instance gets its daemon tasks first, as any new instance. An instance made ACTIVE
    /// again, or gone, is forgotten.
    pub(crate) async fn daemon_repairs_pass(&self, ctx: &Ctx, cluster: &str) -> Result<()> {
        let Some(ports) = self.capacity.get() else { return Ok(()) };
        let prefix = keys::daemon_repair_prefix(&ctx.scope, cluster);
        for kv in self.store.range(&prefix, None, usize::MAX) {
            let id = &kv.key[prefix.len()..];
            let forget = || async {
                let txn = Txn::new().when(kv.key.clone(), kv.mod_revision).delete(kv.key.clone());
                if let Err(e) = self.commit_at(txn).await {
                    tracing::warn!(cluster, instance = id, "cannot forget a daemon repair: {e}");
                }
            };
            let Ok(repair) = decode::<DaemonRepair>(&kv).map(|r| r.value) else {
                forget().await;
                continue;
            };
            let ci =
                load::<InstanceRecord>(&*self.store, &keys::container_instance(&ctx.scope, cluster, id))?;
            let Some(ci) = ci.map(|c| c.value) else {
                forget().await;
                continue;
            };
            match ci.status {
                InstanceStatus::Draining => {}
                // Still ACTIVE (the drain did not go through: the daemon pass drains again) or
                // made ACTIVE by its user, or deregistered: nothing to replace.
                _ => {
                    forget().await;
                    continue;
                }
            }
            if self.runs_other_than_daemons(ctx, cluster, id)? {
                continue;
            }
            let Some(group) = self.provider_group(ctx, &repair.capacity_provider)? else {
                forget().await;
                continue;
            };
            let ec2 = ci.ec2_instance_id.as_str();
            let cause = format!(
                "ECS daemon auto repair: a task of critical daemon {} on cluster {cluster} {} on container instance {id}",
                repair.daemon,
                repair.cause.says()
            );
            tracing::info!(cluster, instance = id, ec2, group = %group, "replacing an instance a critical daemon drained");
            match ports
                .groups
                .replace_instance(&ctx.scope.account, &ctx.scope.region, &group, ec2, &cause)
                .await
            {
                Ok(()) => forget().await,
                Err(e) => tracing::warn!(cluster, instance = id, "cannot replace an instance: {e}"),
            }
        }
        Ok(())
    }

    /// Whether a task that is not a daemon's still runs (or is about to) on the instance.
    pub(crate) fn runs_other_than_daemons(
        &self,
        ctx: &Ctx,
        cluster: &str,
        instance_id: &str,
    ) -> Result<bool> {
        for desired in ["RUNNING", "STOPPED"] {
            let prefix =
                keys::task_index_prefix(&ctx.scope, cluster, keys::TaskIndex::Instance(instance_id), desired);
            for kv in self.store.range(&prefix, None, usize::MAX) {
                let task_id = &kv.key[prefix.len()..];
                let Some(t) = load::<TaskRecord>(&*self.store, &keys::task(&ctx.scope, cluster, task_id))?
                else {
                    continue;
                };
                let t = t.value.task;
                if t.last_status == TaskStatus::Stopped {
                    continue;
                }
                if !t.group.starts_with("daemon:") {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// One pass over `cluster`'s daemons.
    pub(crate) async fn daemons_pass(&self, ctx: &Ctx, cluster: &str) -> Result<()> {
        let daemons = load_prefix::<DaemonRecord>(&*self.store, &keys::daemon_prefix(&ctx.scope, cluster))?;
        for d in daemons {
            if let Err(e) = self.daemon_pass(ctx, d.value).await {
                tracing::warn!(cluster, "daemon pass failed: {e}");
            }
        }
        Ok(())
    }

    /// The daemon's tasks that are not STOPPED, the target revision's failures, and for each
    /// instance whether the target revision's task that stopped last there failed (stopped on
    /// its own).
    fn daemon_tasks(&self, ctx: &Ctx, rec: &DaemonRecord) -> Result<(Vec<TaskRecord>, u32, LastStopped)> {
        let group = daemon_group(&rec.name);
        let mut live = Vec::new();
        let mut failures = 0;
        let mut last = LastStopped::new();
        for desired in ["RUNNING", "STOPPED"] {
            let prefix =
                keys::task_index_prefix(&ctx.scope, &rec.cluster, keys::TaskIndex::Group(&group), desired);
            for kv in self.store.range(&prefix, None, usize::MAX) {
                let id = &kv.key[prefix.len()..];
                let Some(t) = load::<TaskRecord>(&*self.store, &keys::task(&ctx.scope, &rec.cluster, id))?
                else {
                    continue;
                };
                let stopped = t.value.task.last_status == TaskStatus::Stopped;
                if !stopped {
                    live.push(t.value);
                    continue;
                }
                if t.value.task.started_by.as_deref() != Some(rec.revision_id()) {
                    continue;
                }
                let failed = t.value.task.stop_code.as_deref().is_some_and(|c| FAILED.contains(&c));
                if failed {
                    failures += 1;
                }
                if let Some(instance) = t.value.task.container_instance_arn.clone() {
                    let at = t.value.task.stopped_at.map_or(0.0, gantry_core::Timestamp::as_epoch_seconds);
                    let e = last.entry(instance).or_insert((at, failed));
                    if at >= e.0 {
                        *e = (at, failed);
                    }
                }
            }
        }
        Ok((live, failures, last))
    }

    /// Drains an instance whose critical daemon's task failed or turned UNHEALTHY: its other tasks are stopped and
    /// its service tasks replaced elsewhere, as for any DRAINING instance. The reason is
    /// recorded first ([`DaemonRepair`]): once only daemon tasks run there, the instance is
    /// replaced ([`Self::daemon_repairs_pass`]). An instance a user drains is not.
    async fn drain_for_daemon(
        &self,
        ctx: &Ctx,
        rec: &DaemonRecord,
        instance: &str,
        provider: &str,
        cause: RepairCause,
    ) {
        tracing::info!(cluster = %rec.cluster, daemon = %rec.name, instance, cause = cause.says(), "a critical daemon's task is impaired: draining its instance");
        let id = instance.rsplit('/').next().unwrap_or_default();
        let repair =
            DaemonRepair { daemon: rec.name.clone(), capacity_provider: provider.to_string(), cause };
        let key = keys::daemon_repair(&ctx.scope, &rec.cluster, id);
        if let Err(e) = self.commit_at(Txn::new().put(key, encode(&repair))).await {
            tracing::warn!(cluster = %rec.cluster, instance, "cannot record a daemon repair: {e}");
            return;
        }
        let req = UpdateContainerInstancesStateRequest {
            cluster: Some(rec.cluster.clone()),
            container_instances: vec![instance.to_string()],
            status: InstanceStatus::Draining.as_str().into(),
        };
        if let Err(e) = self.update_container_instances_state(ctx, req).await {
            tracing::warn!(cluster = %rec.cluster, instance, "cannot drain an instance: {e}");
        }
    }

    async fn stop_daemon_task(&self, ctx: &Ctx, cluster: &str, arn: &str, reason: &str) {
        let req = StopTaskRequest {
            cluster: Some(cluster.to_string()),
            task: arn.to_string(),
            reason: Some(reason.into()),
        };
        if let Err(e) = self.stop_task(ctx, req).await {
            tracing::warn!(cluster, task = arn, "cannot stop a daemon task: {e}");
        }
    }

    async fn daemon_pass(&self, ctx: &Ctx, rec: DaemonRecord) -> Result<()> {
        let (live, failures, last_stopped) = self.daemon_tasks(ctx, &rec)?;
        if !rec.is_active() {
            return self.retire_daemon(ctx, &rec, &live).await;
        }
        let (mut slots, provider_of) = self.daemon_slots(ctx, &rec, &live)?;

        let dep_id = rec.deployment_arn.rsplit('/').next().unwrap_or_default().to_string();
        let dep_key = keys::daemon_deployment(&ctx.scope, &rec.cluster, &rec.name, &dep_id);
        let dep = load::<DaemonDeploymentRecord>(&*self.store, &dep_key)?;
        let phase = match dep.as_ref().map(|d| d.value.status) {
            Some(DaemonDeploymentStatus::Pending) => Phase::Pending,
            Some(DaemonDeploymentStatus::InProgress) => Phase::InProgress,
            Some(DaemonDeploymentStatus::RollbackInProgress) => Phase::RollingBack,
            _ => Phase::Done,
        };
        let previous = dep
            .as_ref()
            .and_then(|d| d.value.source_daemon_revisions.first())
            .map(|r| r.arn.clone())
            .filter(|_| phase != Phase::RollingBack);
        let previous_id = previous.as_deref().map(|a| a.rsplit('/').next().unwrap_or_default().to_string());
        let bake_ms = i64::from(rec.deployment_configuration.bake_time_in_minutes.max(0)) * 60_000;
        let target = rec.revision_id().to_string();
        let in_alarm = self.daemon_alarms_in_alarm(ctx, &rec);
        let input = rules::Daemon {
            target: &target,
            previous: previous_id.as_deref(),
            phase,
            drain_percent: rec
                .deployment_configuration
                .drain_percent
                .unwrap_or(gantry_core::daemon::DEFAULT_DRAIN_PERCENT),
            failures,
            now_ms: self.clock.now().0,
            converged_since_ms: rec.converged_since_ms,
            bake_ms,
            in_alarm: &in_alarm,
        };
        // A critical daemon outside a deployment: impaired instances are drained instead of
        // getting another task. During a deployment failures go to the circuit breaker.
        if rec.critical && phase == Phase::Done {
            slots = self.drain_impaired(ctx, &rec, &live, &last_stopped, &provider_of, slots).await;
        }
        let plan = rules::plan(&input, &slots);

        for arn in &plan.stop {
            self.stop_daemon_task(ctx, &rec.cluster, arn, "Replaced by the daemon's deployment.").await;
        }
        if !plan.launch.is_empty() {
            self.launch_daemon_tasks(ctx, &rec, &plan.launch, &provider_of).await?;
        }
        let seen = Seen { failures, previous: previous.as_deref(), in_alarm: &in_alarm };
        self.record_daemon_plan(ctx, &rec, dep.map(|d| (dep_key, d)), &plan, &seen).await
    }

    /// A DELETE_IN_PROGRESS daemon: its tasks are stopped, then, once none is left, the daemon is
    /// removed.
    async fn retire_daemon(&self, ctx: &Ctx, rec: &DaemonRecord, live: &[TaskRecord]) -> Result<()> {
        for t in live {
            if t.task.desired_status != TaskStatus::Stopped {
                let arn = t.task.task_arn.clone();
                self.stop_daemon_task(ctx, &rec.cluster, &arn, "The daemon was deleted.").await;
            }
        }
        if !live.is_empty() {
            return Ok(());
        }
        let key = keys::daemon(&ctx.scope, &rec.cluster, &rec.name);
        self.retry(|| {
            let Some(cur) = load::<DaemonRecord>(&*self.store, &key)? else {
                return Ok((Txn::new(), ()));
            };
            if cur.value.is_active() {
                return Ok((Txn::new(), ()));
            }
            Ok((Txn::new().delete_record(&Before::of(&ctx.scope, &cur)), ()))
        })
        .await
    }

    /// The ACTIVE instances of the daemon's providers, each with the daemon's live tasks there,
    /// and each instance's provider (the first of the daemon's that lists it). Tasks on
    /// instances no longer among the providers' ACTIVE ones stay until the instance drains; they
    /// are not the daemon's concern.
    fn daemon_slots(
        &self,
        ctx: &Ctx,
        rec: &DaemonRecord,
        live: &[TaskRecord],
    ) -> Result<(Vec<rules::Slot>, ProviderOf)> {
        let mut slots = Vec::new();
        let mut provider_of = ProviderOf::new();
        for p in &rec.capacity_providers {
            for arn in self.capacity_provider_instances(ctx, &rec.cluster, p)? {
                if provider_of.contains_key(&arn) {
                    continue;
                }
                provider_of.insert(arn.clone(), p.clone());
                let id = arn.rsplit('/').next().unwrap_or_default();
                let Some(ci) = load::<InstanceRecord>(
                    &*self.store,
                    &keys::container_instance(&ctx.scope, &rec.cluster, id),
                )?
                else {
                    continue;
                };
                if ci.value.status != InstanceStatus::Active {
                    continue;
                }
                let tasks = live
                    .iter()
                    .filter(|t| t.task.container_instance_arn.as_deref() == Some(arn.as_str()))
                    .map(|t| rules::DaemonTask {
                        arn: t.task.task_arn.clone(),
                        revision: t.task.started_by.clone().unwrap_or_default(),
                        running: t.task.last_status == TaskStatus::Running,
                        stopping: t.task.desired_status == TaskStatus::Stopped,
                    })
                    .collect();
                slots.push(rules::Slot { instance: arn, tasks });
            }
        }
        Ok((slots, provider_of))
    }

    /// A critical daemon outside a deployment: an instance whose daemon task failed (and has no
    /// other), or whose daemon task's health is UNHEALTHY (an essential container's health check
    /// failed), is drained instead of getting another task; the unhealthy task stays until its
    /// instance is replaced. The slots left are returned.
    async fn drain_impaired(
        &self,
        ctx: &Ctx,
        rec: &DaemonRecord,
        live: &[TaskRecord],
        last_stopped: &LastStopped,
        provider_of: &ProviderOf,
        slots: Vec<rules::Slot>,
    ) -> Vec<rules::Slot> {
        let unhealthy: std::collections::HashSet<&str> = live
            .iter()
            .filter(|t| t.task.health_status == HealthStatus::Unhealthy && !t.task.stop_wanted())
            .filter_map(|t| t.task.container_instance_arn.as_deref())
            .collect();
        let mut kept = Vec::with_capacity(slots.len());
        for slot in slots {
            let failed =
                slot.tasks.is_empty() && last_stopped.get(&slot.instance).is_some_and(|(_, failed)| *failed);
            let sick = unhealthy.contains(slot.instance.as_str());
            if failed || sick {
                let provider = provider_of.get(&slot.instance).cloned().unwrap_or_default();
                let why = if sick { RepairCause::Unhealthy } else { RepairCause::Failed };
                self.drain_for_daemon(ctx, rec, &slot.instance, &provider, why).await;
            } else {
                kept.push(slot);
            }
        }
        kept
    }

    /// Starts the daemon's current revision on `instances`: one launch per provider, so that
    /// each task names its instance's.
    async fn launch_daemon_tasks(
        &self,
        ctx: &Ctx,
        rec: &DaemonRecord,
        instances: &[String],
        provider_of: &ProviderOf,
    ) -> Result<()> {
        let Some(td) = self
            .find_daemon_task_definition(ctx, &rec.task_definition_arn)?
            .map(|d| {
                gantry_core::daemon::as_task_definition(
                    &ctx.scope,
                    &d.value.definition.into_wire(),
                    &ctx.principal,
                )
            })
            .transpose()?
        else {
            return Ok(());
        };
        let mut by_provider: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for i in instances {
            let p = provider_of.get(i).map_or("", String::as_str);
            by_provider.entry(p).or_default().push(i.clone());
        }
        let tags =
            if rec.propagate_tags.as_deref() == Some("DAEMON") { rec.tags.clone() } else { Vec::new() };
        let managed_tags = if rec.enable_ecs_managed_tags {
            let tag = |k: &str, v: &str| Tag { key: Some(k.into()), value: Some(v.into()) };
            vec![tag("aws:ecs:clusterName", &rec.cluster), tag("aws:ecs:daemonName", &rec.name)]
        } else {
            Vec::new()
        };
        for (provider, instances) in by_provider {
            let launch = DaemonLaunch {
                definition: td.clone(),
                instances: &instances,
                capacity_provider: Some(provider.to_string()).filter(|p| !p.is_empty()),
                group: daemon_group(&rec.name),
                started_by: rec.revision_id().to_string(),
                exec: rec.enable_execute_command,
                tags: tags.clone(),
                managed_tags: managed_tags.clone(),
            };
            let (_, failed) = self.start_daemon_tasks(ctx, &rec.cluster, launch).await?;
            for f in failed {
                tracing::debug!(cluster = %rec.cluster, daemon = %rec.name, "daemon task not placed: {:?}", f.reason);
            }
        }
        Ok(())
    }

    /// The daemon's deployment alarms (enabled) in ALARM, read through CloudWatch's port.
    fn daemon_alarms_in_alarm(&self, ctx: &Ctx, rec: &DaemonRecord) -> Vec<String> {
        let Some(a) = rec.deployment_configuration.alarms.as_ref().filter(|a| a.enable) else {
            return Vec::new();
        };
        let names = a.alarm_names.clone().unwrap_or_default();
        let Some(port) = self.alarm_states.get() else { return Vec::new() };
        let states = port.states(&ctx.scope.account, &ctx.scope.region, &names);
        names
            .into_iter()
            .zip(states)
            .filter(|(_, s)| *s == Some(gantry_core::AlarmState::Alarm))
            .map(|(n, _)| n)
            .collect()
    }

    /// Writes the deployment's new state (and, on a rollback, the daemon's revision) under
    /// compare-and-swap of what the pass read; a lost race is decided again next pass.
    async fn record_daemon_plan(
        &self,
        ctx: &Ctx,
        rec: &DaemonRecord,
        dep: Option<(String, crate::Stored<DaemonDeploymentRecord>)>,
        plan: &rules::Plan,
        seen: &Seen<'_>,
    ) -> Result<()> {
        let key = keys::daemon(&ctx.scope, &rec.cluster, &rec.name);
        let now = self.clock.now();
        self.retry(|| {
            let Some(cur) = load::<DaemonRecord>(&*self.store, &key)? else { return Ok((Txn::new(), ())) };
            if cur.value.deployment_arn != rec.deployment_arn || cur.value.revision_arn != rec.revision_arn {
                return Ok((Txn::new(), ()));
            }
            let mut txn = Txn::new();
            let mut next = cur.value.clone();
            next.converged_since_ms = plan.converged_since_ms;
            if let Some((_, d)) = &dep {
                let mut d2 = d.value.clone();
                let t = &mut d2.target_daemon_revision;
                t.total_running_instance_count = plan.running as i32;
                t.total_without_daemon_instance_count = plan.without as i32;
                t.total_draining_instance_count = plan.draining as i32;
                d2.circuit_breaker.failure_count = seen.failures as i32;
                d2.circuit_breaker.threshold = plan.threshold as i32;
                if !self.apply_daemon_outcome(ctx, rec, &mut d2, &mut next, &plan.outcome, seen, now)? {
                    return Ok((Txn::new(), ()));
                }
                if d2 != d.value {
                    txn = txn.put_record(&ctx.scope, &Before::of(&ctx.scope, d), &d2);
                }
            }
            if next == cur.value {
                return Ok((txn, ()));
            }
            next.updated_at = cur.value.updated_at;
            Ok((txn.put_record(&ctx.scope, &Before::of(&ctx.scope, &cur), &next), ()))
        })
        .await
    }

    /// The plan's outcome on the deployment `d` (and, on a rollback, on the daemon `next`);
    /// false when a rollback has no revision to return to (nothing is written).
    #[allow(clippy::too_many_arguments)]
    fn apply_daemon_outcome(
        &self,
        ctx: &Ctx,
        rec: &DaemonRecord,
        d: &mut DaemonDeploymentRecord,
        next: &mut DaemonRecord,
        outcome: &Outcome,
        seen: &Seen<'_>,
        now: Timestamp,
    ) -> Result<bool> {
        // What tripped: the alarms, or else the circuit breaker.
        let set_monitors = |d: &mut DaemonDeploymentRecord, s: DaemonMonitorStatus| {
            if s == DaemonMonitorStatus::Triggered && !seen.in_alarm.is_empty() {
                d.alarms.status = s;
                d.alarms.triggered_alarm_names = Some(seen.in_alarm.to_vec());
            } else {
                d.circuit_breaker.status = s;
            }
        };
        match outcome {
            Outcome::Unchanged => {}
            Outcome::InProgress => {
                if d.status == DaemonDeploymentStatus::Pending {
                    d.status = DaemonDeploymentStatus::InProgress;
                    d.started_at = Some(now);
                }
            }
            Outcome::Successful => {
                d.status = DaemonDeploymentStatus::Successful;
                d.started_at.get_or_insert(now);
                d.finished_at = Some(now);
                set_monitors(d, DaemonMonitorStatus::MonitoringComplete);
            }
            Outcome::RollbackSuccessful => {
                d.status = DaemonDeploymentStatus::RollbackSuccessful;
                d.finished_at = Some(now);
            }
            Outcome::Stopped { reason } => {
                d.status = DaemonDeploymentStatus::Stopped;
                d.status_reason = Some(reason.clone());
                d.stopped_at = Some(now);
                set_monitors(d, DaemonMonitorStatus::Triggered);
            }
            Outcome::RollBack { reason } => {
                let Some(prev_arn) = seen.previous else { return Ok(false) };
                let Some((c, n, id)) =
                    gantry_core::daemon::parse_child_arn(&ctx.scope, prev_arn, "daemon-revision")
                else {
                    return Ok(false);
                };
                let Some(prev) = load::<DaemonRevisionRecord>(
                    &*self.store,
                    &keys::daemon_revision(&ctx.scope, &c, &n, &id),
                )?
                else {
                    return Ok(false);
                };
                d.status = DaemonDeploymentStatus::RollbackInProgress;
                d.status_reason = Some(reason.clone());
                d.rollback = Some(StoredRollback {
                    reason: reason.clone(),
                    started_at: now,
                    rollback_target_daemon_revision_arn: prev_arn.to_string(),
                    rollback_capacity_providers: rec
                        .capacity_providers
                        .iter()
                        .map(|p| ctx.scope.capacity_provider_arn(p))
                        .collect(),
                });
                set_monitors(d, DaemonMonitorStatus::Triggered);
                next.revision_arn = prev_arn.to_string();
                next.task_definition_arn = prev.value.daemon_task_definition_arn.clone();
                next.converged_since_ms = None;
            }
        }
        Ok(true)
    }
}
