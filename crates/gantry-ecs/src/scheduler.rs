//! The service scheduler: the loop that carries out `gantry_sched`'s plans.
//!
//! [`ControlPlane::reconcile_service`] is one pass over one service: read the service, its tasks
//! (the `service-task/` index) and the cluster's instances, ask [`gantry_sched::reconcile`] for a
//! plan, stop and launch tasks through the same paths as StopTask and RunTask, and write the
//! service back (counts, deployments, events) with compare-and-swap. A pass that changes nothing
//! writes nothing, so a pass triggered by its own write ends there.
//!
//! [`ControlPlane::run_scheduler`] runs passes as a `gantry_runtime` controller: level-triggered
//! (a key is queued, not an event; a service is never reconciled twice at once, and a change
//! during a pass queues it again), fed by the store's watch (the service, its tasks, its
//! cluster's instances), by the time a plan asks to be woken, and by a periodic resync of every
//! service as a safety net; only while this process leads, until shutdown.

use crate::ops::services::{SchedNotes, ServiceRecord, StoredDeployment, StoredEvent, StoredService};
use crate::ops::tasks::TaskRecord;
use crate::records::{encode, load};
use crate::table::{Before, Record, TxnExt};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::{
    DeploymentStatus, InstanceStatus, Result, RolloutState, Scope, ServiceStatus, StabilityStatus,
    TaskSetStatus, TaskStatus, Timestamp,
};
use gantry_model::Tag;
use gantry_placement::engine::Constraint;
use gantry_runtime::{Action, Backoff, Controller, Leadership, Reconciler, Shutdown};
use gantry_sched as sched;
use gantry_store::Txn;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// ECS keeps the latest 100 events of a service.
const MAX_EVENTS: usize = 100;
/// How often every service is looked at even without a change.
const RESYNC: Duration = Duration::from_secs(10);
/// After a placement failure, the next attempt (unless something changes first).
const PLACEMENT_RETRY_MS: i64 = 5_000;
/// Passes run at once (over different services).
const WORKERS: usize = 4;

/// `/ACCOUNT/REGION/ecs/service/CLUSTER/NAME` → its parts.
fn parse_service_key(key: &str) -> Option<(Scope, String, String)> {
    let (scope, kind, tail) = keys::parse_scoped(key)?;
    let (cluster, name) = tail.split_once('/')?;
    (kind == "service").then(|| (scope, cluster.to_string(), name.to_string()))
}

/// The scheduler's phase of a task's `lastStatus` (unknown or missing: pending).
fn phase(status: Option<&str>) -> sched::Phase {
    match status.and_then(TaskStatus::parse) {
        Some(TaskStatus::Running) => sched::Phase::Running,
        Some(s) if s.is_stopping() => sched::Phase::Stopping,
        Some(TaskStatus::Stopped) => sched::Phase::Stopped,
        _ => sched::Phase::Pending,
    }
}

fn to_sched_deployment(d: &StoredDeployment) -> sched::DeploymentState {
    sched::DeploymentState {
        id: d.id.clone(),
        status: if d.is_primary() { sched::Status::Primary } else { sched::Status::Active },
        rollout: match d.rollout_state {
            RolloutState::Completed => sched::Rollout::Completed,
            RolloutState::Failed => sched::Rollout::Failed,
            RolloutState::InProgress => sched::Rollout::InProgress,
        },
        rollout_reason: d.rollout_state_reason.clone().unwrap_or_default(),
        failed_tasks: d.failed_tasks.max(0) as u32,
        created_at: d.created_at.0,
        desired: d.desired_count.max(0) as u32,
        running: d.running_count.max(0) as u32,
        pending: d.pending_count.max(0) as u32,
    }
}

fn to_notes(n: &SchedNotes) -> sched::Notes {
    sched::Notes {
        start_failures: n.start_failures,
        last_start_failure: n.last_start_failure_ms,
        launch_not_before: n.launch_not_before_ms,
        steady: n.steady,
        last_completed: n.last_completed.as_ref().map(|d| d.id.clone()),
        aliases: n.aliases.clone(),
    }
}

/// The service as the rules see it.
fn to_sched_service(s: &StoredService) -> sched::Service {
    let daemon = s.is_daemon();
    let dc = &s.deployment_configuration;
    let desired = s.desired_count.max(0) as u32;
    let breaker = dc.deployment_circuit_breaker.as_ref().filter(|b| b.enable).map(|b| {
        let (kind, value) = b
            .threshold_configuration
            .as_ref()
            .map(|t| (t.r#type.clone(), t.value.max(0) as u32))
            .unwrap_or_else(|| ("BOUNDED_PERCENT".to_string(), 50));
        sched::Breaker { rollback: b.rollback, threshold: sched::breaker_threshold(&kind, value, desired) }
    });
    sched::Service {
        name: s.service_name.clone(),
        desired,
        daemon,
        min_healthy_percent: dc.minimum_healthy_percent.unwrap_or(if daemon { 0 } else { 100 }).max(0) as u32,
        max_percent: dc.maximum_percent.unwrap_or(if daemon { 100 } else { 200 }).max(0) as u32,
        breaker,
        grace_ms: i64::from(s.health_check_grace_period_seconds.unwrap_or(0).max(0)) * 1000,
        draining: s.status == ServiceStatus::Draining,
        rollback_requested: false,
        alarms: None,
        keep_old: false,
        hold: false,
        deployments: s.deployments.iter().map(to_sched_deployment).collect(),
    }
}

/// ECS's wording for why the closest instance could not take a task.
fn closest_reason(reason: &str) -> &'static str {
    match reason {
        "RESOURCE:MEMORY" => "has insufficient memory available",
        "RESOURCE:CPU" => "has insufficient CPU units available",
        "RESOURCE:PORTS" | "RESOURCE:PORTS_UDP" => "is already using a port required by your task",
        "RESOURCE:GPU" => "has insufficient GPU units available",
        "AGENT" => "is missing an attribute required by your task",
        _ => "encountered error \"MemberOf placement constraint unsatisfied.\"",
    }
}

/// Adjusts the running and pending counts of the service and of the deployment or task set `id`.
fn count_change(s: &mut StoredService, id: &str, running: i32, pending: i32) {
    s.running_count = (s.running_count + running).max(0);
    s.pending_count = (s.pending_count + pending).max(0);
    for d in s.deployments.iter_mut().filter(|d| d.id == id) {
        d.running_count = (d.running_count + running).max(0);
        d.pending_count = (d.pending_count + pending).max(0);
    }
    for t in s.task_sets.iter_mut().flatten().filter(|t| t.id == id) {
        t.running_count = (t.running_count + running).max(0);
        t.pending_count = (t.pending_count + pending).max(0);
    }
}

/// The status of each instance the service's tasks are on, by ARN (`None`: one Gantry does not
/// know).
type StatusOf = BTreeMap<String, Option<InstanceStatus>>;

/// What one pass decided, in the control plane's terms.
struct Outcome {
    next: ServiceRecord,
    stops: Vec<sched::Stop>,
    /// What to launch (a deployment, or a task set as one), how many, where, and the task set
    /// it is for (events name it).
    launches: Vec<(StoredDeployment, u32, Option<String>, Option<String>)>,
    forget: Vec<String>,
    events: Vec<String>,
    wake_at: Option<i64>,
    /// A rollback this pass started (the history records it with the deployment it rolls back).
    rollback: Option<sched::Rollback>,
}

/// The ECS deployment controller (rolling updates; REPLICA or DAEMON).
fn plan_ecs(
    rec: &ServiceRecord,
    views: &[sched::TaskView],
    instances: &[sched::InstanceView],
    now: i64,
    fresh: &str,
    alarms: Option<sched::AlarmTrip>,
    traffic: Option<crate::traffic::Step>,
) -> Outcome {
    let notes = &rec.sched;
    let mut svc = to_sched_service(&rec.service);
    svc.alarms = alarms;
    let primary_id = rec.service.deployments.first().map(|d| d.id.as_str());
    svc.rollback_requested =
        notes.rollback_requested.is_some() && notes.rollback_requested.as_deref() == primary_id;
    if let Some(t) = &traffic {
        svc.keep_old = t.keep_old;
        svc.hold = t.hold;
        svc.rollback_requested |= t.rollback;
    }
    let plan = sched::reconcile(&svc, views, instances, &to_notes(notes), now, fresh);

    // The new record, before launches (a rollback changes what they launch).
    let mut next = rec.clone();
    let s = &mut next.service;
    let old_deployments: Vec<StoredDeployment> = s.deployments.clone();
    let mut deployments = Vec::new();
    for d in &plan.deployments {
        let mut out = match old_deployments.iter().find(|o| o.id == d.id) {
            Some(o) => o.clone(),
            None => {
                // A rollback: what the last completed deployment ran, under a new ID.
                let mut base = notes
                    .last_completed
                    .clone()
                    .unwrap_or_else(|| StoredDeployment::new(d.id.clone(), Timestamp(now)));
                base.id = d.id.clone();
                base.created_at = Timestamp(now);
                base.updated_at = base.created_at;
                base.failed_tasks = 0;
                s.task_definition = base.task_definition.clone();
                s.network_configuration = base.network_configuration.clone();
                s.launch_type = base.launch_type.clone();
                s.capacity_provider_strategy = base.capacity_provider_strategy.clone();
                s.platform_version = base.platform_version.clone();
                base
            }
        };
        let before = out.clone();
        let primary = d.status == sched::Status::Primary;
        out.status = if primary { DeploymentStatus::Primary } else { DeploymentStatus::Active };
        out.rollout_state = match d.rollout {
            sched::Rollout::InProgress => RolloutState::InProgress,
            sched::Rollout::Completed => RolloutState::Completed,
            sched::Rollout::Failed => RolloutState::Failed,
        };
        out.rollout_state_reason = Some(d.rollout_reason.clone());
        out.failed_tasks = d.failed_tasks as i32;
        out.desired_count = d.desired as i32;
        out.running_count = d.running as i32;
        out.pending_count = d.pending as i32;
        if out != before {
            out.updated_at = Timestamp(now);
        }
        deployments.push(out);
    }
    s.deployments = deployments;
    s.running_count = plan.running as i32;
    s.pending_count = plan.pending as i32;
    if s.is_daemon() && s.status == ServiceStatus::Active {
        s.desired_count = plan.desired as i32;
    }
    if plan.inactive {
        s.status = ServiceStatus::Inactive;
    }
    let mut sn = SchedNotes {
        start_failures: plan.notes.start_failures,
        last_start_failure_ms: plan.notes.last_start_failure,
        launch_not_before_ms: plan.notes.launch_not_before,
        last_completed: notes.last_completed.clone(),
        steady: plan.notes.steady,
        aliases: plan.notes.aliases.clone(),
        // A requested rollback is carried out by this pass (or no longer applies).
        rollback_requested: None,
    };
    if let Some(done) = &plan.completed {
        sn.last_completed = s.deployments.iter().find(|d| &d.id == done).cloned();
    }
    next.sched = sn;
    let (mut events, mut wake_at) = (plan.events, plan.wake_at);
    if let Some(t) = traffic {
        next.traffic = t.notes;
        events.splice(0..0, t.events);
        if let Some(w) = t.wake_at {
            wake_at = Some(wake_at.map_or(w, |x| x.min(w)));
        }
    }
    crate::traffic::after_plan(&mut next, plan.rollback.as_ref(), plan.completed.as_deref(), now);

    let primary = next.service.deployments.first().cloned();
    let launches = match primary {
        Some(p) => plan.launch.iter().map(|l| (p.clone(), l.count, l.instance.clone(), None)).collect(),
        None => vec![],
    };
    Outcome {
        next,
        stops: plan.stop,
        launches,
        forget: plan.forget,
        events,
        wake_at,
        rollback: plan.rollback,
    }
}

/// The EXTERNAL deployment controller: task sets.
fn plan_external(rec: &ServiceRecord, views: &[sched::TaskView], now: i64) -> Outcome {
    let s = &rec.service;
    let desired = s.desired_count.max(0) as u32;
    let sets: Vec<sched::TaskSetState> = s
        .task_sets
        .iter()
        .flatten()
        .map(|t| sched::TaskSetState {
            id: t.id.clone(),
            status: match t.status {
                TaskSetStatus::Primary => sched::SetStatus::Primary,
                TaskSetStatus::Draining => sched::SetStatus::Draining,
                TaskSetStatus::Active => sched::SetStatus::Active,
            },
            desired: sched::computed_desired(desired, t.scale.value),
            running: t.running_count.max(0) as u32,
            pending: t.pending_count.max(0) as u32,
            steady: t.stability_status == StabilityStatus::SteadyState,
        })
        .collect();
    let draining = s.status == ServiceStatus::Draining;
    let name = s.service_name.clone();
    let plan = sched::reconcile_task_sets(&name, &sets, views, &to_notes(&rec.sched), now, draining);
    let mut next = rec.clone();
    let at = Timestamp(now);
    let old = s.task_sets.clone().unwrap_or_default();
    let mut out_sets = Vec::new();
    for st in &plan.sets {
        let Some(mut t) = old.iter().find(|o| o.id == st.id).cloned() else { continue };
        let before = t.clone();
        t.computed_desired_count = st.desired as i32;
        t.running_count = st.running as i32;
        t.pending_count = st.pending as i32;
        let stability = if st.steady { StabilityStatus::SteadyState } else { StabilityStatus::Stabilizing };
        if t.stability_status != stability {
            t.stability_status = stability;
            t.stability_status_at = at;
        }
        if t != before {
            t.updated_at = at;
        }
        out_sets.push(t);
    }
    next.service.task_sets = Some(out_sets);
    next.service.running_count = plan.running as i32;
    next.service.pending_count = plan.pending as i32;
    let inactive = draining
        && plan.running + plan.pending == 0
        && views.iter().all(|v| v.phase == sched::Phase::Stopped);
    if inactive {
        next.service.status = ServiceStatus::Inactive;
    }
    next.sched.start_failures = plan.notes.start_failures;
    next.sched.last_start_failure_ms = plan.notes.last_start_failure;
    next.sched.launch_not_before_ms = plan.notes.launch_not_before;
    let launches = plan
        .launch
        .iter()
        .filter_map(|(id, n)| {
            let t = old.iter().find(|o| o.id == *id)?;
            let spec = StoredDeployment {
                task_definition: t.task_definition.clone(),
                launch_type: t.launch_type.clone(),
                capacity_provider_strategy: t.capacity_provider_strategy.clone(),
                network_configuration: t.network_configuration.clone(),
                platform_version: t.platform_version.clone(),
                ..StoredDeployment::new(id.clone(), Timestamp(now))
            };
            Some((spec, *n, None, Some(id.clone())))
        })
        .collect();
    Outcome {
        next,
        stops: plan.stop,
        launches,
        forget: plan.forget,
        events: plan.events,
        wake_at: plan.wake_at,
        rollback: None,
    }
}

/// The scheduler's view of a service's tasks.
struct Seen {
    views: Vec<sched::TaskView>,
    /// Tasks whose instance is gone: they will never be reported again.
    lost: Vec<String>,
    /// IDs in the service's index without a task record.
    missing: Vec<String>,
}

/// The scheduler's view of each task record; a task whose instance is gone counts as STOPPED
/// (by the user), and is lost.
fn task_views(
    records: &[(String, Option<TaskRecord>)],
    status_of: &StatusOf,
    lb: &BTreeMap<String, sched::LbHealth>,
) -> Seen {
    let mut lost = Vec::new();
    let mut views = Vec::new();
    let mut missing = Vec::new();
    for (id, rec) in records {
        let Some(r) = rec else {
            missing.push(id.clone());
            continue;
        };
        let t = &r.task;
        let mut p = phase(Some(t.last_status.as_str()));
        let instance = t.container_instance_arn.clone();
        let gone = instance.as_ref().is_some_and(|a| !status_of.contains_key(a));
        if gone && p != sched::Phase::Stopped {
            lost.push(id.clone());
            p = sched::Phase::Stopped;
        }
        let cause = match t.stop_code.as_deref() {
            _ if gone => sched::StopCause::User,
            Some("ServiceSchedulerInitiated") => sched::StopCause::Scheduler,
            Some("UserInitiated") | Some("TerminationNotice") | Some("SpotInterruption") => {
                sched::StopCause::User
            }
            _ => sched::StopCause::Failed,
        };
        views.push(sched::TaskView {
            id: id.clone(),
            deployment: t.started_by.clone().unwrap_or_default(),
            phase: p,
            stop_requested: t.stop_wanted(),
            cause,
            reached_running: t.started_at.is_some(),
            health: match t.health_status {
                gantry_core::HealthStatus::Healthy => sched::Health::Healthy,
                gantry_core::HealthStatus::Unhealthy => sched::Health::Unhealthy,
                gantry_core::HealthStatus::Unknown => sched::Health::Unknown,
            },
            health_checked: t.containers.iter().any(|c| c.health_status.is_some()),
            started_at: t.started_at.map(|s| s.0),
            instance_draining: instance
                .as_ref()
                .is_some_and(|a| status_of.get(a).is_none_or(|s| *s != Some(InstanceStatus::Active))),
            instance,
            zone: t.availability_zone.clone(),
            protected_until: crate::ops::tasks::protected_until_ms(r),
            lb: lb.get(id).cloned().unwrap_or_default(),
        });
    }
    Seen { views, lost, missing }
}

impl ControlPlane {
    /// One scheduler pass over the service stored at `key`. Returns when to look again even if
    /// nothing changes (epoch milliseconds), if the plan asks.
    pub async fn reconcile_service(&self, key: &str) -> Result<Option<i64>> {
        let Some((scope, cluster, name)) = parse_service_key(key) else { return Ok(None) };
        let Some(rec) = load::<ServiceRecord>(&*self.store, key)? else { return Ok(None) };
        let ctx = Ctx::root(scope.clone());
        let svc = &rec.value.service;
        if svc.status == ServiceStatus::Inactive {
            // Its scheduler entry went with the write that made it INACTIVE.
            return Ok(None);
        }
        let now = self.clock.now().0;

        // What runs: the service's task index, and the cluster's instances.
        let records = self.service_task_records(&scope, &cluster, &name)?;
        let (instances, mut status_of) = self.instance_views(&ctx, &cluster, svc, &records)?;
        // An instance whose agent has been gone longer than the lost-instance timeout counts
        // as gone: its tasks are marked STOPPED and replaced elsewhere (when it comes back, its
        // agent finds them unassigned and stops them).
        let lost_agents: Vec<String> =
            status_of.keys().filter(|a| self.agent_lost(a, gantry_core::Timestamp(now))).cloned().collect();
        for a in &lost_agents {
            status_of.remove(a);
        }
        // Tasks behind load balancers: one step each through ACTIVATING or DEACTIVATING, and
        // their targets' health.
        let moved = self.move_targets(&ctx, &cluster, &name, &records).await?;
        let lb: BTreeMap<String, sched::LbHealth> = records
            .iter()
            .filter_map(|(id, r)| {
                let r = r.as_ref()?;
                r.targets.as_ref()?;
                Some((id.clone(), self.lb_health(&ctx, r)))
            })
            .collect();
        let Seen { views, lost, missing } = task_views(&records, &status_of, &lb);
        for id in &lost {
            let on_lost_agent = records.iter().any(|(i, r)| {
                i == id
                    && r.as_ref()
                        .and_then(|r| r.task.container_instance_arn.as_ref())
                        .is_some_and(|a| lost_agents.contains(a))
            });
            if on_lost_agent {
                let reason = format!(
                    "Task stopped because its container instance's agent has been disconnected for more than {} seconds.",
                    self.agents.lost_timeout_ms() / 1000
                );
                self.mark_lost(&ctx, &cluster, id, "ServiceSchedulerInitiated", &reason).await?;
            } else {
                let reason = "Task stopped because its container instance was deregistered.";
                self.mark_lost(&ctx, &cluster, id, "TerminationNotice", reason).await?;
            }
        }

        let external = svc.is_external();
        let outcome = if external {
            plan_external(&rec.value, &views, now)
        } else {
            let fresh = crate::ops::services::new_deployment_id(&*self.ids);
            let alarms = self.deployment_alarms(&scope, svc);
            let traffic = self.traffic_step(&ctx, &rec.value, &views, now).await?;
            plan_ecs(&rec.value, &views, &instances, now, &fresh, alarms, traffic)
        };
        let Outcome { mut next, stops, launches, forget, mut events, mut wake_at, rollback } = outcome;
        events.splice(0..0, moved.events);
        let lb_wake = if moved.changed {
            Some(0)
        } else if views.iter().any(|v| v.phase != sched::Phase::Stopped && v.lb == sched::LbHealth::Pending) {
            Some(crate::targets::LB_POLL_MS)
        } else if views.iter().any(|v| v.phase != sched::Phase::Stopped && v.lb != sched::LbHealth::None) {
            Some(crate::targets::LB_WATCH_MS)
        } else {
            None
        };
        for w in [moved.wake_in, lb_wake].into_iter().flatten() {
            wake_at = Some(wake_at.map_or(now + w, |x| x.min(now + w)));
        }
        // Stops first: they make room. The counts written follow what this pass did: a RUNNING
        // task asked to stop is STOPPING, a launched one is PENDING.
        self.stop_planned(&ctx, &cluster, &stops, &views, &mut next.service).await?;
        let sides = next.traffic.clone();
        if self.launch_planned(&ctx, &name, &launches, &mut next.service, &sides, &mut events).await {
            wake_at = Some(wake_at.map_or(now + PLACEMENT_RETRY_MS, |w| w.min(now + PLACEMENT_RETRY_MS)));
        }
        self.record_events(&mut next.service, events, now);

        // The history moves with the record, in the same transaction.
        let mut txn = self.sync_history(&scope, &cluster, &mut next, rollback.as_ref(), Txn::new())?;
        let history = !txn.ops.is_empty();
        for id in forget.iter().chain(&missing) {
            txn = txn.delete(keys::service_task(&scope, &cluster, &name, id));
        }
        // The record layer keeps its scheduler entry (`/_ecs/service/`): a service made INACTIVE
        // here leaves it in this transaction.
        if history || encode(&next) != encode(&rec.value) {
            debug_assert_eq!(next.key(&scope), key);
            txn = txn.put_record(&scope, &Before::of(&scope, &rec), &next);
        }
        if !txn.ops.is_empty() && !self.commit(txn).await? {
            // The service changed during the pass: look again at once.
            return Ok(Some(now));
        }
        Ok(wake_at)
    }

    /// The service's tasks, from its `service-task/` index: each ID with its record, if any.
    fn service_task_records(
        &self,
        scope: &Scope,
        cluster: &str,
        name: &str,
    ) -> Result<Vec<(String, Option<TaskRecord>)>> {
        let mut records: Vec<(String, Option<TaskRecord>)> = Vec::new();
        for kv in self.store.range(&keys::service_tasks_prefix(scope, cluster, name), None, usize::MAX) {
            let id = kv.key.rsplit('/').next().unwrap_or_default().to_string();
            let task = load::<TaskRecord>(&*self.store, &keys::task(scope, cluster, &id))?.map(|r| r.value);
            records.push((id, task));
        }
        Ok(records)
    }

    /// The cluster's instances as a DAEMON service sees them (none for REPLICA), and the status
    /// of the instances the service's tasks run on, by ARN.
    fn instance_views(
        &self,
        ctx: &Ctx,
        cluster: &str,
        svc: &StoredService,
        records: &[(String, Option<TaskRecord>)],
    ) -> Result<(Vec<sched::InstanceView>, StatusOf)> {
        let fleet = self.cluster_fleet(ctx, cluster)?;
        // DAEMON services place by instance; every service needs the status of its tasks'
        // instances only (not a copy of the whole fleet on every pass).
        let daemon = svc.is_daemon();
        let cf = fleet.read().unwrap_or_else(|e| e.into_inner());
        let instances: Vec<sched::InstanceView> = if daemon {
            let constraints = crate::ops::placement::constraints(
                svc.placement_constraints.as_deref().unwrap_or_default(),
                &[],
            )
            .unwrap_or_default();
            cf.fleet
                .instances()
                .iter()
                .map(|i| sched::InstanceView {
                    arn: i.arn.clone(),
                    zone: i.attributes.get("ecs.availability-zone").cloned().flatten(),
                    eligible: i.status == InstanceStatus::Active.as_str()
                        && constraints.iter().all(|c| match c {
                            Constraint::MemberOf { test, .. } => test(i),
                            Constraint::DistinctInstance => true,
                        }),
                })
                .collect()
        } else {
            Vec::new()
        };
        let status_of: StatusOf = records
            .iter()
            .filter_map(|(_, r)| r.as_ref()?.task.container_instance_arn.clone())
            .filter_map(|a| {
                let i = cf.fleet.position(&a)?;
                Some((a, InstanceStatus::parse(&cf.fleet.instances()[i].status)))
            })
            .collect();
        Ok((instances, status_of))
    }

    /// Asks the plan's tasks to stop, counting a RUNNING one as STOPPING.
    async fn stop_planned(
        &self,
        ctx: &Ctx,
        cluster: &str,
        stops: &[sched::Stop],
        views: &[sched::TaskView],
        service: &mut StoredService,
    ) -> Result<()> {
        for s in stops {
            self.request_stop(ctx, cluster, &s.task, "ServiceSchedulerInitiated", &s.reason).await?;
            if let Some(v) = views.iter().find(|v| v.id == s.task && v.phase == sched::Phase::Running) {
                count_change(service, &v.deployment, -1, 0);
            }
        }
        Ok(())
    }

    /// Launches the plan's tasks, counting them PENDING and adding ECS's events for what was
    /// started and what could not be placed. True if something could not be placed (the pass
    /// should look again after [`PLACEMENT_RETRY_MS`]).
    async fn launch_planned(
        &self,
        ctx: &Ctx,
        name: &str,
        launches: &[(StoredDeployment, u32, Option<String>, Option<String>)],
        service: &mut StoredService,
        traffic: &crate::ops::service_record::TrafficNotes,
        events: &mut Vec<String>,
    ) -> bool {
        let mut retry = false;
        let tags = if launches.is_empty() { Vec::new() } else { self.service_task_tags(ctx, service) };
        for (spec, count, instance, task_set) in launches {
            let who = match task_set {
                Some(id) => format!("(service {name}, taskSet {id})"),
                None => format!("(service {name})"),
            };
            // The tasks register with the target groups of their task set, else the service's.
            let lbs = match task_set {
                Some(id) => service
                    .task_sets
                    .iter()
                    .flatten()
                    .find(|t| t.id == *id)
                    .and_then(|t| t.load_balancers.clone()),
                // A traffic-shifting deployment's tasks register on its side.
                None => service
                    .load_balancers
                    .as_deref()
                    .map(|lbs| crate::traffic::on_side(lbs, traffic.alternate(spec.id.as_str()))),
            }
            .unwrap_or_default();
            let launched = self
                .launch_service_tasks(
                    ctx,
                    service,
                    spec,
                    (*count as usize, instance.as_deref()),
                    tags.clone(),
                    &lbs,
                )
                .await;
            match launched {
                Ok((tasks, failures)) => {
                    if !tasks.is_empty() {
                        let ids: Vec<String> = tasks
                            .iter()
                            .filter_map(|t| t.task_arn.as_deref())
                            .map(|a| format!("(task {})", a.rsplit('/').next().unwrap_or(a)))
                            .collect();
                        events.push(format!("{who} has started {} tasks: {}.", ids.len(), ids.join(" ")));
                        let id = spec.id.clone();
                        count_change(service, &id, 0, tasks.len() as i32);
                    }
                    if let Some(f) = failures.first() {
                        let closest = f.arn.as_deref().map(|a| a.rsplit('/').next().unwrap_or(a));
                        events.push(match closest {
                            Some(id) => format!(
                                "(service {name}) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance {id}) {}. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
                                closest_reason(f.reason.as_deref().unwrap_or_default())
                            ),
                            None => format!(
                                "(service {name}) was unable to place a task. Reason: {}. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
                                f.reason.as_deref().unwrap_or("Capacity is unavailable at this time")
                            ),
                        });
                        retry = true;
                    }
                }
                Err(e) => {
                    events.push(format!(
                        "(service {name}) was unable to place a task because no container instance met all of its requirements. Reason: {} For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.",
                        e.message
                    ));
                    retry = true;
                }
            }
        }
        retry
    }

    /// Adds the pass's events to the service's, newest first; a repeat of the newest is not
    /// recorded again.
    fn record_events(&self, service: &mut StoredService, events: Vec<String>, now: i64) {
        let list = &mut service.events;
        for message in events {
            if list.first().is_some_and(|e| e.message == message) {
                continue;
            }
            list.insert(0, StoredEvent { id: self.ids.uuid(), created_at: Timestamp(now), message });
        }
        list.truncate(MAX_EVENTS);
    }

    /// The tags a service's tasks get: the service's or the task definition's (propagateTags).
    fn service_task_tags(&self, ctx: &Ctx, s: &StoredService) -> Vec<Tag> {
        match s.propagate_tags.as_deref() {
            Some("SERVICE") => s.tags.clone().unwrap_or_default(),
            Some("TASK_DEFINITION") => s
                .task_definition
                .as_deref()
                .and_then(|td| self.find_task_definition(ctx, td).ok().flatten())
                .map(|r| r.value.tags.clone())
                .unwrap_or_default(),
            _ => vec![],
        }
    }

    /// Every service the scheduler looks after.
    fn scheduled_services(&self) -> Vec<String> {
        self.store
            .range(&keys::scheduled_services_prefix(), None, usize::MAX)
            .into_iter()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
            .collect()
    }

    /// The services a store change concerns.
    fn services_touched(&self, key: &str, value: &[u8]) -> Vec<String> {
        let Some((scope, kind, tail)) = keys::parse_scoped(key) else { return vec![] };
        let cluster = tail.split('/').next().unwrap_or_default();
        match kind {
            "service" => vec![key.to_string()],
            "service-task" => {
                let mut p = tail.splitn(3, '/');
                match (p.next(), p.next()) {
                    (Some(c), Some(s)) => vec![keys::service(&scope, c, s)],
                    _ => vec![],
                }
            }
            "task" => {
                if value.is_empty() || self.store.count(&keys::service_prefix(&scope, cluster)) == 0 {
                    return vec![];
                }
                #[derive(serde::Deserialize)]
                struct Group {
                    task: Inner,
                }
                #[derive(serde::Deserialize)]
                struct Inner {
                    group: Option<String>,
                }
                match crate::records::parse::<Group>(value) {
                    Ok(Group { task: Inner { group: Some(g) } }) => match g.strip_prefix("service:") {
                        Some(s) => vec![keys::service(&scope, cluster, s)],
                        None => vec![],
                    },
                    _ => vec![],
                }
            }
            "container-instance" => self
                .store
                .range(&keys::service_prefix(&scope, cluster), None, usize::MAX)
                .into_iter()
                .map(|kv| kv.key)
                .collect(),
            _ => vec![],
        }
    }

    /// Runs the service scheduler until `shutdown`, while `leader` says this process leads:
    /// passes over a keyed work queue (the runtime's [`Controller`]) fed by the store's watch,
    /// by the times plans ask to be woken, and by a periodic resync. Returns once the passes in
    /// flight at shutdown have finished.
    pub async fn run_scheduler(&self, leader: Arc<dyn Leadership>, shutdown: Shutdown) {
        let cp = self.clone();
        Controller::new("scheduler", self.metrics.clone())
            .workers(WORKERS)
            .resync(RESYNC)
            .backoff(Backoff { base: Duration::from_secs(1), max: Duration::from_secs(30) })
            .watches(self.store.clone(), "/", move |e| cp.services_touched(&e.kv.key, &e.kv.value))
            .run(ServiceScheduler(self.clone()), leader, shutdown)
            .await
    }
}

/// The service scheduler as the runtime sees it: one pass is [`ControlPlane::reconcile_service`].
struct ServiceScheduler(ControlPlane);

impl Reconciler<String> for ServiceScheduler {
    type Error = String;

    async fn reconcile(&self, key: &String) -> std::result::Result<Action, String> {
        let cp = &self.0;
        match cp.reconcile_service(key).await {
            // The plan's wake-up is in the control plane's clock; the queue waits on tokio's.
            Ok(Some(at)) => Ok(Action::Requeue(Duration::from_millis((at - cp.clock.now().0).max(0) as u64))),
            Ok(None) => Ok(Action::AwaitChange),
            Err(e) => Err(e.message),
        }
    }

    fn list(&self) -> Vec<String> {
        self.0.scheduled_services()
    }
}

impl ControlPlane {
    /// The service's deployment alarms in ALARM (deploymentConfiguration.alarms, enabled), read
    /// through CloudWatch's port; `None` when it has none or no CloudWatch is wired.
    fn deployment_alarms(&self, scope: &Scope, svc: &StoredService) -> Option<sched::AlarmTrip> {
        let a =
            svc.deployment_configuration.alarms.as_ref().filter(|a| a.enable && !a.alarm_names.is_empty())?;
        let states = self.alarm_states.get()?.states(&scope.account, &scope.region, &a.alarm_names);
        let in_alarm = a
            .alarm_names
            .iter()
            .zip(states)
            .filter(|(_, s)| *s == Some(gantry_core::AlarmState::Alarm))
            .map(|(n, _)| n.clone())
            .collect();
        Some(sched::AlarmTrip { in_alarm, rollback: a.rollback })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_keys_parse() {
        let (scope, c, n) = parse_service_key("/000000000000/us-east-1/ecs/service/default/web").unwrap();
        assert_eq!((scope.account.as_str(), c.as_str(), n.as_str()), ("000000000000", "default", "web"));
        assert!(parse_service_key("/000000000000/us-east-1/ecs/task/default/abc").is_none());
    }

    #[tokio::test]
    async fn a_change_to_a_service_task_wakes_that_service() {
        use gantry_core::{FixedClock, SeededIds, Timestamp};
        let store = Arc::new(gantry_store::SqliteStore::in_memory().unwrap());
        let scope = Scope { account: "000000000000".into(), region: "us-east-1".into() };
        let service = keys::service(&scope, "default", "web");
        gantry_store::Store::txn(&*store, gantry_store::Txn::new().put(&service, b"{}".to_vec()))
            .await
            .unwrap();
        let cp = ControlPlane::new(
            store,
            Arc::new(FixedClock::new(Timestamp(1_700_000_000_000))),
            Arc::new(SeededIds::new(1)),
        );
        // As stored: a task record is long enough to be compressed.
        let record = crate::records::encode(&serde_json::json!({
            "task": {"group": "service:web", "taskArn": "x".repeat(300)}}));
        assert_ne!(record.first(), Some(&b'{'), "the record is stored compressed");
        let task = keys::task(&scope, "default", "0123");
        assert_eq!(cp.services_touched(&task, &record), vec![service]);
        let other = crate::records::encode(&serde_json::json!({
            "task": {"group": "family:web", "taskArn": "x".repeat(300)}}));
        assert!(cp.services_touched(&task, &other).is_empty());
    }
}
