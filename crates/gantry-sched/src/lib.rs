//! The service scheduler's rules, as ECS applies them, with no I/O: [`reconcile`] takes what a
//! service wants ([`Service`]), what is observed ([`TaskView`]s, [`InstanceView`]s), the
//! scheduler's [`Notes`] from its last pass and the time, and returns a [`Plan`]: the tasks to
//! launch and to stop, the deployments' new states and counts, the service events to record, and
//! when to look again.
//!
//! The caller (the control plane's scheduler loop) reads the store, calls [`reconcile`], carries
//! the plan out through placement and StopTask's path, and writes the outcome back with
//! compare-and-swap. Because a plan depends only on its inputs, every decision can be replayed,
//! and tests drive the rules with a fake clock and no containers.
//!
//! The rules:
//! - **REPLICA** keeps `desiredCount` tasks of the PRIMARY deployment. During a deployment (and
//!   while replacing tasks on DRAINING instances) tasks that are not STOPPED never exceed
//!   `maximumPercent` of the desired count, and tasks are only stopped while the healthy ones
//!   stay at or above `minimumHealthyPercent`.
//! - **DAEMON** keeps exactly one task of the PRIMARY deployment on every eligible instance.
//! - Tasks that are RUNNING but UNHEALTHY after the grace period are stopped and replaced.
//! - Tasks that stop without reaching RUNNING throttle further launches (ECS's service throttle
//!   logic: increasing delays up to 27 minutes; a new deployment resets it).
//! - Deployment alarms (deploymentConfiguration.alarms) in ALARM fail an IN_PROGRESS
//!   deployment, and roll it back when asked, as the circuit breaker does.
//! - The deployment circuit breaker fails a deployment once its failed tasks reach the
//!   threshold, and may roll back to the last COMPLETED deployment.
//! - Scale-in and deployments stop tasks in ECS's order: not yet RUNNING first, then unhealthy,
//!   then from the Availability Zone, and within it the instance, with the most tasks of the
//!   service. Tasks with scale-in protection are left alone until it expires.

pub mod daemon;
mod order;
mod task_sets;
pub mod traffic;

pub use order::scale_in_order;
pub use task_sets::{SetStatus, TaskSetPlan, TaskSetState, computed_desired, reconcile_task_sets};

/// Epoch milliseconds.
pub type Millis = i64;

/// How far a task got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// PROVISIONING, PENDING or ACTIVATING.
    Pending,
    Running,
    /// DEACTIVATING, STOPPING or DEPROVISIONING: on its way out.
    Stopping,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Healthy,
    Unhealthy,
}

/// Why a task stopped (or is stopping), as far as the scheduler cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// The scheduler asked (scale-in, deployment, health, service deletion).
    Scheduler,
    /// Someone called StopTask: replaced, not held against the deployment.
    User,
    /// It failed: an essential container exited, or it never started.
    Failed,
}

/// A task of the service, as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// The task ID (the last part of its ARN).
    pub id: String,
    /// The deployment that started it (the task's `startedBy`).
    pub deployment: String,
    pub phase: Phase,
    /// desiredStatus is STOPPED.
    pub stop_requested: bool,
    /// Why it stopped or was asked to; meaningful once `stop_requested` or STOPPED.
    pub cause: StopCause,
    /// Whether it ever reached RUNNING.
    pub reached_running: bool,
    pub health: Health,
    /// Whether any of its containers has a health check (then only HEALTHY counts as healthy).
    pub health_checked: bool,
    pub started_at: Option<Millis>,
    pub instance: Option<String>,
    pub zone: Option<String>,
    /// Its container instance is DRAINING (or gone).
    pub instance_draining: bool,
    /// Scale-in protection, until then.
    pub protected_until: Option<Millis>,
    /// How its load balancer targets are doing (a service with `loadBalancers`).
    pub lb: LbHealth,
}

/// A task's targets in its service's target groups, as ELB's health checks see them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LbHealth {
    /// The service has no load balancer: only the task's own health counts.
    #[default]
    None,
    /// Registered, and not yet `healthy` in every target group (`initial`, `unused`, …): the
    /// task does not count as healthy yet, and is not replaced for it.
    Pending,
    /// `healthy` in every target group.
    Healthy,
    /// `unhealthy` in a target group: the task is replaced once past the grace period.
    Unhealthy {
        target_group: String,
        port: u16,
        /// ELB's description of why (`Health checks failed with these codes: [503]`).
        reason: String,
    },
}

impl TaskView {
    fn live(&self) -> bool {
        self.phase != Phase::Stopped
    }
    /// Still wanted: alive and not asked to stop.
    fn active(&self) -> bool {
        self.live() && !self.stop_requested
    }
    /// RUNNING, healthy by its containers' checks (if any) and, behind a load balancer,
    /// `healthy` in every target group: what counts towards minimumHealthyPercent and a
    /// deployment's completion.
    pub fn healthy(&self) -> bool {
        self.phase == Phase::Running
            && matches!(self.lb, LbHealth::None | LbHealth::Healthy)
            && match self.health {
                Health::Healthy => true,
                Health::Unknown => !self.health_checked,
                Health::Unhealthy => false,
            }
    }
    fn protected(&self, now: Millis) -> bool {
        self.protected_until.is_some_and(|t| t > now)
    }
}

/// A container instance, for DAEMON services.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceView {
    pub arn: String,
    pub zone: Option<String>,
    /// ACTIVE and satisfying the service's placement constraints.
    pub eligible: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    InProgress,
    Completed,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Primary,
    Active,
}

/// A deployment as the scheduler tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentState {
    pub id: String,
    pub status: Status,
    pub rollout: Rollout,
    pub rollout_reason: String,
    pub failed_tasks: u32,
    pub created_at: Millis,
    pub desired: u32,
    pub running: u32,
    pub pending: u32,
}

impl DeploymentState {
    /// Whether this is a rollback (its rollout reason names the deployment it returns to).
    pub fn is_rollback(&self) -> bool {
        self.rollout == Rollout::InProgress && self.rollout_reason.contains(ROLLING_BACK)
    }

    /// A new PRIMARY deployment, IN_PROGRESS.
    pub fn new(id: &str, created_at: Millis) -> Self {
        DeploymentState {
            id: id.to_string(),
            status: Status::Primary,
            rollout: Rollout::InProgress,
            rollout_reason: format!("ECS deployment {id} in progress."),
            failed_tasks: 0,
            created_at,
            desired: 0,
            running: 0,
            pending: 0,
        }
    }
}

/// What the rollout reason of every rollback deployment says (ECS's three reasons end so).
const ROLLING_BACK: &str = "rolling back to deploymentId";

/// The deployment circuit breaker, when enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub rollback: bool,
    /// Failed tasks that fail the deployment (see [`breaker_threshold`]).
    pub threshold: u32,
}

/// ECS's circuit-breaker threshold: `BOUNDED_PERCENT` (the default, 50) is that percent of the
/// desired count, rounded up, kept within 3..=200; `UNBOUNDED_PERCENT` is not bounded (but at
/// least 1); `COUNT` is the value itself.
pub fn breaker_threshold(kind: &str, value: u32, desired: u32) -> u32 {
    let pct = (u64::from(value) * u64::from(desired)).div_ceil(100) as u32;
    match kind {
        "COUNT" => value.max(1),
        "UNBOUNDED_PERCENT" => pct.max(1),
        _ => pct.clamp(3, 200),
    }
}

/// What the service wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub desired: u32,
    pub daemon: bool,
    pub min_healthy_percent: u32,
    pub max_percent: u32,
    pub breaker: Option<Breaker>,
    /// healthCheckGracePeriodSeconds, in milliseconds.
    pub grace_ms: Millis,
    /// The service was deleted: every task goes, then it is INACTIVE.
    pub draining: bool,
    /// PRIMARY first.
    pub deployments: Vec<DeploymentState>,
    /// StopServiceDeployment asked to roll the PRIMARY deployment back (while IN_PROGRESS): it
    /// fails and rolls back to the last COMPLETED deployment exactly as a circuit-breaker trip
    /// with rollback does, whether or not the breaker is enabled.
    pub rollback_requested: bool,
    /// deploymentConfiguration.alarms: the alarms in ALARM now (while the PRIMARY deployment is
    /// IN_PROGRESS, that fails it) and whether it then rolls back.
    pub alarms: Option<AlarmTrip>,
    /// A traffic-shifting deployment (BLUE_GREEN, LINEAR, CANARY) before its clean-up: tasks of
    /// older deployments stay (they serve production), and the new one starts at the full
    /// desired count beside them whatever maximumPercent says.
    pub keep_old: bool,
    /// The PRIMARY deployment may not complete yet (its traffic shift is not done).
    pub hold: bool,
}

/// The deployment alarms of a service that are in ALARM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmTrip {
    pub in_alarm: Vec<String>,
    pub rollback: bool,
}

/// What the scheduler remembers between passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// Tasks in a row that stopped without reaching RUNNING.
    pub start_failures: u32,
    /// When the last of those was seen.
    pub last_start_failure: Millis,
    /// No launch before this (throttled).
    pub launch_not_before: Millis,
    /// Whether the steady-state event was recorded for the current state.
    pub steady: bool,
    /// The last deployment that COMPLETED, for rollbacks.
    pub last_completed: Option<String>,
    /// Deployments whose tasks now count as another's (after a rollback adopted them).
    pub aliases: Vec<(String, String)>,
}

/// Launch `count` tasks of the PRIMARY deployment, on `instance` if given (DAEMON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub count: u32,
    pub instance: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub task: String,
    pub reason: String,
}

/// A circuit-breaker rollback: a new PRIMARY deployment `id` runs what deployment `to` ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    pub id: String,
    pub to: String,
    /// Why, as the rollback deployment's first rolloutStateReason says (it may complete, and
    /// change its reason, in the same pass).
    pub reason: String,
    /// The rolled-back deployment's failed tasks at that point.
    pub failed_tasks: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub launch: Vec<Launch>,
    pub stop: Vec<Stop>,
    /// STOPPED tasks now accounted for: the caller drops them from the service's index.
    pub forget: Vec<String>,
    /// The deployments after this pass, PRIMARY first; finished ones are gone.
    pub deployments: Vec<DeploymentState>,
    pub running: u32,
    pub pending: u32,
    /// The desired count the service reports (DAEMON: the eligible instances).
    pub desired: u32,
    pub notes: Notes,
    /// Service events, oldest first.
    pub events: Vec<String>,
    /// Look again at this time even if nothing changes.
    pub wake_at: Option<Millis>,
    pub rollback: Option<Rollback>,
    /// The deployment that just reached COMPLETED.
    pub completed: Option<String>,
    /// A deleted service whose tasks are all gone: it becomes INACTIVE.
    pub inactive: bool,
}

/// The longest throttle delay (ECS: 27 minutes).
pub const MAX_THROTTLE_MS: Millis = 27 * 60 * 1000;

/// The delay before the next launch after `failures` tasks in a row failed to start: none for
/// the first two, then 5 s doubling up to [`MAX_THROTTLE_MS`].
pub fn throttle_delay(failures: u32) -> Millis {
    if failures < 3 {
        return 0;
    }
    let shift = (failures - 3).min(20);
    (5_000i64 << shift).min(MAX_THROTTLE_MS)
}

pub(crate) fn earliest(a: Option<Millis>, b: Millis) -> Option<Millis> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn task_list(ids: &[&TaskView]) -> String {
    ids.iter().map(|t| format!("(task {})", t.id)).collect::<Vec<_>>().join(" ")
}

/// One pass of the scheduler over one service.
///
/// `fresh_id` is a new deployment ID, used only if the circuit breaker rolls back.
pub fn reconcile(
    svc: &Service,
    tasks: &[TaskView],
    instances: &[InstanceView],
    notes: &Notes,
    now: Millis,
    fresh_id: &str,
) -> Plan {
    let mut p = Pass {
        svc,
        now,
        notes: notes.clone(),
        events: Vec::new(),
        deps: svc.deployments.clone(),
        wake_at: None,
        forget: Vec::new(),
        rollback: None,
        stops: Vec::new(),
        stopped: Vec::new(),
    };

    // Tasks count for the deployment that adopted theirs.
    let own_deployments: Vec<String> =
        tasks.iter().filter(|t| t.live()).map(|t| t.deployment.clone()).collect();
    let mut tasks: Vec<TaskView> = tasks.to_vec();
    for t in &mut tasks {
        t.deployment = p.alias(&t.deployment);
    }

    p.account_stopped(&tasks);
    p.break_circuit(&mut tasks, fresh_id);

    let primary = p.deps.first().map(|d| (d.id.clone(), d.rollout));
    let desired = if svc.draining {
        0
    } else if svc.daemon {
        instances.iter().filter(|i| i.eligible).count() as u32
    } else {
        svc.desired
    };
    let by_scheduler = primary.as_ref().map_or_else(
        || "Scaling activity initiated by (service)".to_string(),
        |(id, _)| format!("Scaling activity initiated by (deployment {id})"),
    );

    p.replace_unhealthy(&tasks);

    let throttled = now < p.notes.launch_not_before;
    if throttled {
        p.wake_at = earliest(p.wake_at, p.notes.launch_not_before);
    }
    let b = Bounds {
        can_launch: primary.as_ref().is_some_and(|(_, r)| *r != Rollout::Failed) && !svc.draining,
        primary,
        desired,
        throttled,
    };
    let active: Vec<&TaskView> = tasks.iter().filter(|t| t.active() && !p.stopped.contains(&t.id)).collect();
    let min_healthy = (u64::from(desired) * u64::from(svc.min_healthy_percent)).div_ceil(100) as u32;
    let healthy_now = active.iter().filter(|t| t.healthy()).count() as u32;
    let mut budget = healthy_now.saturating_sub(min_healthy);

    let (launch, scheduled_stops) = if svc.daemon {
        p.schedule_daemon(&tasks, &active, instances, &b, &mut budget)
    } else {
        p.schedule_replica(&tasks, &active, &b, &mut budget)
    };
    p.stop_scheduled(&scheduled_stops, &by_scheduler);
    p.settle(&tasks, launch, &b, &own_deployments)
}

/// What one pass carries from step to step.
struct Pass<'a> {
    svc: &'a Service,
    now: Millis,
    notes: Notes,
    events: Vec<String>,
    deps: Vec<DeploymentState>,
    wake_at: Option<Millis>,
    forget: Vec<String>,
    rollback: Option<Rollback>,
    stops: Vec<Stop>,
    stopped: Vec<String>,
}

/// What the launch and stop steps know once the breaker and health checks have run.
struct Bounds {
    /// The PRIMARY deployment's ID and rollout state.
    primary: Option<(String, Rollout)>,
    desired: u32,
    can_launch: bool,
    throttled: bool,
}

impl Bounds {
    /// Whether a task belongs to the PRIMARY deployment.
    fn is_primary(&self, t: &TaskView) -> bool {
        self.primary.as_ref().is_some_and(|(id, _)| *id == t.deployment)
    }
}

impl Pass<'_> {
    /// The deployment a task counts for: the one that adopted `d`'s tasks, else `d`.
    fn alias(&self, d: &str) -> String {
        self.notes
            .aliases
            .iter()
            .find(|(from, _)| from == d)
            .map_or_else(|| d.to_string(), |(_, to)| to.clone())
    }

    /// Stops a task with `reason`.
    fn stop(&mut self, t: &TaskView, reason: &str) {
        self.stops.push(Stop { task: t.id.clone(), reason: reason.to_string() });
        self.stopped.push(t.id.clone());
    }

    /// Step 0: accounts for the tasks that stopped since the last pass (failures, the throttle).
    fn account_stopped(&mut self, tasks: &[TaskView]) {
        let (name, now) = (&self.svc.name, self.now);
        for t in tasks.iter().filter(|t| t.phase == Phase::Stopped) {
            self.forget.push(t.id.clone());
            if t.cause != StopCause::Failed {
                continue;
            }
            if let Some(d) = self.deps.iter_mut().find(|d| d.id == t.deployment)
                && d.rollout == Rollout::InProgress
            {
                d.failed_tasks += 1;
            }
            if !t.reached_running {
                self.notes.start_failures += 1;
                self.notes.last_start_failure = now;
                let delay = throttle_delay(self.notes.start_failures);
                self.notes.launch_not_before = now + delay;
                if self.notes.start_failures == 3 {
                    self.events.push(format!(
                        "(service {name}) is unable to consistently start tasks successfully."
                    ));
                }
            }
        }
        // A task that reached RUNNING since, or a new deployment, ends the throttle.
        let primary_created = self.deps.first().map(|d| d.created_at).unwrap_or(0);
        let ran_since = tasks.iter().any(|t| {
            t.live()
                && t.phase == Phase::Running
                && t.started_at.is_some_and(|s| s >= self.notes.last_start_failure)
        });
        if self.notes.start_failures > 0 && (ran_since || primary_created > self.notes.last_start_failure) {
            self.notes.start_failures = 0;
            self.notes.launch_not_before = 0;
        }
    }

    /// Step 1: the circuit breaker, or a rollback the user asked for (StopServiceDeployment).
    fn break_circuit(&mut self, tasks: &mut [TaskView], fresh_id: &str) {
        let (svc, now) = (self.svc, self.now);
        let name = &svc.name;
        let tripped = svc
            .breaker
            .zip(self.deps.first())
            .filter(|(b, p)| p.rollout == Rollout::InProgress && p.failed_tasks >= b.threshold);
        let requested =
            svc.rollback_requested && self.deps.first().is_some_and(|p| p.rollout == Rollout::InProgress);
        // A rollback is not failed by the alarms that caused it (they are still in ALARM), and
        // a rollback that fails otherwise is not rolled back again.
        let rolling_back = self.deps.first().is_some_and(DeploymentState::is_rollback);
        let alarmed = svc.alarms.as_ref().filter(|a| {
            !a.in_alarm.is_empty()
                && !rolling_back
                && self.deps.first().is_some_and(|p| p.rollout == Rollout::InProgress)
        });
        let failure = if requested {
            Some((
                "ECS deployment stopped: rollback requested.".to_string(),
                "deployment stopped: rollback requested.",
                "ECS deployment rollback requested: rolling back to deploymentId",
                true,
            ))
        } else if let Some(a) = alarmed {
            Some((
                format!("ECS deployment failed: alarm(s) detected: {}.", a.in_alarm.join(", ")),
                "deployment failed: alarm detected.",
                "ECS deployment detected triggered alarms: rolling back to deploymentId",
                a.rollback,
            ))
        } else {
            tripped.map(|(b, _)| {
                (
                    "ECS deployment circuit breaker: tasks failed to start.".to_string(),
                    "deployment failed: tasks failed to start.",
                    "ECS deployment circuit breaker: rolling back to deploymentId",
                    b.rollback,
                )
            })
        };
        let Some((reason, event, rollback_reason, may_roll_back)) = failure else { return };
        let Some(p) = self.deps.first_mut() else { return };
        p.rollout = Rollout::Failed;
        p.rollout_reason = reason;
        let failed = p.id.clone();
        let failed_tasks = p.failed_tasks;
        self.events.push(format!("(service {name}) (deployment {failed}) {event}"));
        let Some(to) =
            self.notes.last_completed.clone().filter(|to| may_roll_back && !rolling_back && *to != failed)
        else {
            return;
        };
        let mut d = DeploymentState::new(fresh_id, now);
        d.rollout_reason = format!("{rollback_reason} {to}.");
        let d_reason = d.rollout_reason.clone();
        for x in self.deps.iter_mut() {
            x.status = Status::Active;
        }
        // The tasks the target deployment still runs are the rollback's own.
        self.deps.retain(|x| x.id != to);
        self.notes.aliases.retain(|(_, t)| *t != to);
        for (_, t) in self.notes.aliases.iter_mut() {
            if *t == to {
                *t = fresh_id.to_string();
            }
        }
        self.notes.aliases.push((to.clone(), fresh_id.to_string()));
        for t in tasks.iter_mut() {
            if t.deployment == to {
                t.deployment = fresh_id.to_string();
            }
        }
        self.deps.insert(0, d);
        self.events.push(format!(
            "(service {name}) (deployment {fresh_id}) deployment started: rolling back to deployment {to}."
        ));
        self.notes.start_failures = 0;
        self.notes.launch_not_before = 0;
        self.rollback = Some(Rollback { id: fresh_id.to_string(), reason: d_reason, to, failed_tasks });
    }

    /// Step 2: unhealthy tasks past the grace period are replaced: those whose containers
    /// fail their health checks, and those a target group's health checks find unhealthy (the
    /// grace period is how long ECS ignores ELB's verdict after the task started).
    fn replace_unhealthy(&mut self, tasks: &[TaskView]) {
        let (name, now, grace_ms) = (&self.svc.name, self.now, self.svc.grace_ms);
        for t in tasks.iter().filter(|t| t.active() && t.phase == Phase::Running) {
            let LbHealth::Unhealthy { target_group, port, reason } = &t.lb else { continue };
            let since = t.started_at.unwrap_or(now);
            if now < since + grace_ms {
                self.wake_at = earliest(self.wake_at, since + grace_ms);
                continue;
            }
            self.stop(t, &format!("Task failed ELB health checks in (target-group {target_group})"));
            self.events.push(format!(
                "(service {name}) (task {}) (port {port}) is unhealthy in (target-group {target_group}) due to (reason {reason}).",
                t.id
            ));
            if let Some(d) = self.deps.iter_mut().find(|d| d.id == t.deployment)
                && d.rollout == Rollout::InProgress
            {
                d.failed_tasks += 1;
            }
        }
        let stopped_for_lb = self.stopped.clone();
        for t in tasks.iter().filter(|t| {
            t.active()
                && t.phase == Phase::Running
                && t.health == Health::Unhealthy
                && !stopped_for_lb.contains(&t.id)
        }) {
            let since = t.started_at.unwrap_or(now);
            if now < since + grace_ms {
                self.wake_at = earliest(self.wake_at, since + grace_ms);
                continue;
            }
            self.stop(t, "Task failed container health checks");
            self.events.push(format!("(service {name}) (task {}) failed container health checks.", t.id));
            if let Some(d) = self.deps.iter_mut().find(|d| d.id == t.deployment)
                && d.rollout == Rollout::InProgress
            {
                d.failed_tasks += 1;
            }
        }
    }

    /// Step 3d, DAEMON: one task per eligible instance. Returns the launches and the tasks to stop.
    fn schedule_daemon<'t>(
        &mut self,
        tasks: &'t [TaskView],
        active: &[&'t TaskView],
        instances: &[InstanceView],
        b: &Bounds,
        budget: &mut u32,
    ) -> (Vec<Launch>, Vec<&'t TaskView>) {
        let (svc, now) = (self.svc, self.now);
        let mut launch = Vec::new();
        let mut scheduled_stops: Vec<&TaskView> = Vec::new();
        let eligible: Vec<&InstanceView> = instances.iter().filter(|i| i.eligible).collect();
        let mut leaving: Vec<&TaskView> = Vec::new();
        for t in active {
            let on_eligible = t.instance.as_ref().is_some_and(|a| eligible.iter().any(|i| i.arn == *a))
                && !t.instance_draining;
            if !on_eligible || svc.draining {
                leaving.push(t);
            }
        }
        for i in &eligible {
            if svc.draining {
                break;
            }
            let here: Vec<&TaskView> =
                active.iter().copied().filter(|t| t.instance.as_deref() == Some(&i.arn)).collect();
            let mine: Vec<&TaskView> = here.iter().copied().filter(|t| b.is_primary(t)).collect();
            let old: Vec<&TaskView> = here.iter().copied().filter(|t| !b.is_primary(t)).collect();
            // Extra copies of the primary's task go first.
            for t in scale_in_order(&mine, active).into_iter().skip(1) {
                scheduled_stops.push(t);
            }
            leaving.extend(old.iter().copied());
            let any_live_here = tasks.iter().any(|t| {
                t.live() && t.instance.as_deref() == Some(&i.arn) && !mine.iter().any(|m| m.id == t.id)
            });
            if mine.is_empty() && !any_live_here && b.can_launch && !b.throttled {
                launch.push(Launch { count: 1, instance: Some(i.arn.clone()) });
            }
        }
        for t in scale_in_order(&leaving, active) {
            if t.protected(now) && !svc.draining {
                self.wake_at = earliest(self.wake_at, t.protected_until.unwrap_or(now));
                continue;
            }
            if t.healthy() && !svc.draining {
                if *budget == 0 {
                    continue;
                }
                *budget -= 1;
            }
            scheduled_stops.push(t);
        }
        (launch, scheduled_stops)
    }

    /// Step 3r, REPLICA: launch within maximumPercent, stop within minimumHealthyPercent.
    /// Returns the launches and the tasks to stop.
    fn schedule_replica<'t>(
        &mut self,
        tasks: &'t [TaskView],
        active: &[&'t TaskView],
        b: &Bounds,
        budget: &mut u32,
    ) -> (Vec<Launch>, Vec<&'t TaskView>) {
        let (svc, now, desired) = (self.svc, self.now, b.desired);
        let mut launch = Vec::new();
        let mut scheduled_stops: Vec<&TaskView> = Vec::new();
        let live_count = tasks.iter().filter(|t| t.live()).count() as u32;
        let keep: Vec<&TaskView> =
            active.iter().copied().filter(|t| b.is_primary(t) && !t.instance_draining).collect();
        let leaving: Vec<&TaskView> =
            active.iter().copied().filter(|t| !b.is_primary(t) || t.instance_draining).collect();
        let max_total = (u64::from(desired) * u64::from(svc.max_percent) / 100) as u32;
        let want = desired.saturating_sub(keep.len() as u32);
        let room = if svc.keep_old { want } else { max_total.saturating_sub(live_count) };
        let n = want.min(room);
        if n > 0 && b.can_launch && !b.throttled {
            launch.push(Launch { count: n, instance: None });
        }
        let budget_all = svc.draining;
        for t in scale_in_order(&leaving, active) {
            if svc.keep_old && !svc.draining {
                continue;
            }
            if t.protected(now) && !budget_all {
                self.wake_at = earliest(self.wake_at, t.protected_until.unwrap_or(now));
                continue;
            }
            if t.healthy() && !budget_all {
                if *budget == 0 {
                    continue;
                }
                *budget -= 1;
            }
            scheduled_stops.push(t);
        }
        // Scale-in: more primary tasks than desired.
        let excess = (keep.len() as u32).saturating_sub(desired);
        let mut taken = 0;
        for t in scale_in_order(&keep, active) {
            if taken == excess {
                break;
            }
            if t.protected(now) && !svc.draining {
                self.wake_at = earliest(self.wake_at, t.protected_until.unwrap_or(now));
                continue;
            }
            scheduled_stops.push(t);
            taken += 1;
        }
        (launch, scheduled_stops)
    }

    /// Stops the tasks steps 3d/3r chose, with one event that lists them.
    fn stop_scheduled(&mut self, scheduled_stops: &[&TaskView], by_scheduler: &str) {
        if scheduled_stops.is_empty() {
            return;
        }
        let name = &self.svc.name;
        let reason =
            if self.svc.draining { "Service was deleted".to_string() } else { by_scheduler.to_string() };
        for t in scheduled_stops {
            self.stop(t, &reason);
        }
        self.events.push(format!(
            "(service {name}) has stopped {} running tasks: {}.",
            scheduled_stops.len(),
            task_list(scheduled_stops)
        ));
    }

    /// Step 4: counts, finished deployments, completion and steady state; the pass's plan.
    fn settle(
        mut self,
        tasks: &[TaskView],
        launch: Vec<Launch>,
        b: &Bounds,
        own_deployments: &[String],
    ) -> Plan {
        let (svc, desired) = (self.svc, b.desired);
        let name = &svc.name;
        let stopped = &self.stopped;
        let remaining = |t: &&&TaskView| t.active() && !stopped.contains(&t.id);
        let live: Vec<&TaskView> = tasks.iter().filter(|t| t.live()).collect();
        for d in self.deps.iter_mut() {
            let mine = |t: &&&TaskView| t.deployment == d.id;
            d.running = live.iter().filter(mine).filter(|t| t.phase == Phase::Running).count() as u32;
            d.pending = live.iter().filter(mine).filter(|t| t.phase == Phase::Pending).count() as u32;
            d.desired = if d.status == Status::Primary {
                desired
            } else {
                live.iter().filter(mine).filter(remaining).count() as u32
            };
        }
        let first = self.deps.first().map(|d| d.id.clone());
        self.deps.retain(|d| Some(&d.id) == first.as_ref() || live.iter().any(|t| t.deployment == d.id));
        let running = live.iter().filter(|t| t.phase == Phase::Running).count() as u32;
        let pending = live.iter().filter(|t| t.phase == Phase::Pending).count() as u32;
        let settled = self.stops.is_empty()
            && launch.is_empty()
            && self.deps.len() == 1
            && live.len() as u32 == desired
            && live.iter().all(|t| t.active() && b.is_primary(t) && t.healthy() && !t.instance_draining);
        let mut completed = None;
        if let Some(p) = self.deps.first_mut()
            && settled
            && p.rollout == Rollout::InProgress
            && !svc.draining
            && !svc.hold
        {
            p.rollout = Rollout::Completed;
            p.rollout_reason = format!("ECS deployment {} completed.", p.id);
            self.events.push(format!("(service {name}) (deployment {}) deployment completed.", p.id));
            self.notes.last_completed = Some(p.id.clone());
            completed = Some(p.id.clone());
        }
        // Aliases only matter while tasks of the old deployment live.
        self.notes.aliases.retain(|(from, _)| own_deployments.contains(from));
        if settled && !svc.draining && !self.notes.steady {
            self.events.push(format!("(service {name}) has reached a steady state."));
        }
        self.notes.steady = settled && !svc.draining;
        let inactive = svc.draining && live.is_empty();
        Plan {
            launch,
            stop: self.stops,
            forget: self.forget,
            deployments: self.deps,
            running,
            pending,
            desired,
            notes: self.notes,
            events: self.events,
            wake_at: self.wake_at,
            rollback: self.rollback,
            completed,
            inactive,
        }
    }
}
