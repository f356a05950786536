//! ECS's traffic-shifting deployments (`deploymentConfiguration.strategy` BLUE_GREEN, LINEAR,
//! CANARY) on the control plane: their validation (CreateService, UpdateService), and the
//! scheduler's side of `gantry_sched::traffic`'s state machine.
//!
//! Each deployment of such a service runs on one side: its tasks register in the
//! `targetGroupArn`s of the service's `loadBalancers`, or in their
//! `advancedConfiguration.alternateTargetGroupArn`s. A new deployment takes the side production
//! does not use (`TrafficNotes::production_alternate`); its traffic moves through ELBv2's
//! listener rules (the `TargetRegistry` port's `set_forward`, ModifyRule as ECS calls it on
//! AWS): the test rule first, then the production rule's weights in the strategy's steps; once
//! the deployment completes, its side is production's, so the roles of the two target groups
//! swap for the next one. A rollback deployment runs on the side of the revision it returns to
//! and shifts both rules back to it at once.
//!
//! The progress is stored in the service record (`TrafficNotes::progress`), written in the
//! scheduler's compare-and-swap; a rule change that fails leaves the progress where it was, so
//! the next pass makes it again (ModifyRule to the same weights changes nothing).

use crate::ops::service_record::{ServiceRecord, StoredHook, StoredProgress, StoredService, TrafficNotes};
use crate::{ControlPlane, Ctx};
use gantry_core::{
    DeploymentLifecycleHookStage as HookStage, DeploymentLifecycleHookStatus as HookState, DeploymentStage,
};
use gantry_core::{EcsError, ErrorKind, Result, Scope};
use gantry_model::{DeploymentConfiguration, LoadBalancer};
use gantry_ports::lb::{TargetRegistry, WeightedTargetGroup};
use gantry_sched as sched;
use gantry_sched::traffic::{self as tr, HookStatus, Stage};

/// ECS's limits: bake times in minutes, hook timeouts in minutes.
const MAX_BAKE_MINUTES: i32 = 1440;
const MAX_HOOK_MINUTES: i32 = 20160;
/// A hook's timeout when none is given (24 hours), and its action (ROLLBACK).
const DEFAULT_HOOK_MINUTES: i32 = 1440;

/// The delay ECS adds to the test and production traffic shift stages with a Network Load
/// Balancer (minutes).
const NLB_SHIFT_MINUTES: i64 = 10;

/// The strategy of a deployment configuration (ROLLING when unset).
pub(crate) fn strategy_of(dc: Option<&DeploymentConfiguration>) -> &str {
    dc.and_then(|d| d.strategy.as_deref()).unwrap_or("ROLLING")
}

/// Whether the service deploys by shifting traffic.
pub(crate) fn shifts_traffic(s: &StoredService) -> bool {
    strategy_of(Some(&s.deployment_configuration)) != "ROLLING"
}

fn invalid(m: impl Into<String>) -> EcsError {
    EcsError::invalid(m)
}

/// A percent ECS accepts: a multiple of 0.1 within `lo..=hi`.
fn tenth_in(v: f64, lo: f64, hi: f64) -> bool {
    v.is_finite() && v >= lo - 1e-9 && v <= hi + 1e-9 && ((v * 10.0).round() - v * 10.0).abs() < 1e-6
}

/// A bake time ECS accepts: 0 to a day, in minutes.
fn check_bake(field: &str, minutes: i32) -> Result<(), EcsError> {
    if (0..=MAX_BAKE_MINUTES).contains(&minutes) {
        return Ok(());
    }
    Err(invalid(format!("{field} must be between 0 and {MAX_BAKE_MINUTES}, but was {minutes}.")))
}

/// Checks a deployment configuration's strategy, bake times, linear and canary settings and
/// lifecycle hooks, as ECS does; `daemon` services only deploy ROLLING.
pub(crate) fn check_strategy(dc: &DeploymentConfiguration, daemon: bool) -> Result<()> {
    let strategy = strategy_of(Some(dc));
    if !["ROLLING", "BLUE_GREEN", "LINEAR", "CANARY"].contains(&strategy) {
        return Err(invalid(format!(
            "Invalid value for deploymentConfiguration.strategy: {strategy}. Valid values are ROLLING, BLUE_GREEN, LINEAR, CANARY."
        )));
    }
    if daemon && strategy != "ROLLING" {
        return Err(invalid(format!(
            "The {strategy} deployment strategy is not supported for services using the DAEMON scheduling strategy."
        )));
    }
    if let Some(b) = dc.bake_time_in_minutes {
        check_bake("deploymentConfiguration.bakeTimeInMinutes", b)?;
    }
    // Absent percents and bake times take ECS's defaults (see `strategy`).
    if let Some(l) = &dc.linear_configuration {
        if let Some(p) = l.step_percent.filter(|&p| !tenth_in(p, 3.0, 100.0)) {
            return Err(invalid(format!(
                "linearConfiguration.stepPercent must be a multiple of 0.1 between 3.0 and 100.0, but was {p}."
            )));
        }
        if let Some(b) = l.step_bake_time_in_minutes {
            check_bake("linearConfiguration.stepBakeTimeInMinutes", b)?;
        }
    }
    if let Some(c) = &dc.canary_configuration {
        if let Some(p) = c.canary_percent.filter(|&p| !tenth_in(p, 0.1, 100.0)) {
            return Err(invalid(format!(
                "canaryConfiguration.canaryPercent must be a multiple of 0.1 between 0.1 and 100.0, but was {p}."
            )));
        }
        if let Some(b) = c.canary_bake_time_in_minutes {
            check_bake("canaryConfiguration.canaryBakeTimeInMinutes", b)?;
        }
    }
    // A linear or canary configuration kept from an earlier strategy is unused, not an error.
    let hooks = dc.lifecycle_hooks.as_deref().unwrap_or_default();
    if !hooks.is_empty() && strategy == "ROLLING" {
        return Err(invalid(
            "Deployment lifecycle hooks are only supported for the BLUE_GREEN, LINEAR and CANARY deployment strategies.",
        ));
    }
    for h in hooks {
        match h.target_type.as_deref() {
            Some("PAUSE") => {}
            Some("AWS_LAMBDA") => {
                return Err(invalid(
                    "Lifecycle hooks with targetType AWS_LAMBDA are not supported: Gantry has no AWS Lambda. Use targetType PAUSE and answer with ContinueServiceDeployment.",
                ));
            }
            Some(other) => {
                return Err(invalid(format!(
                    "Invalid value for lifecycleHooks.targetType: {other}. Valid values are AWS_LAMBDA, PAUSE."
                )));
            }
            None => return Err(invalid("lifecycleHooks.targetType is required.")),
        }
        let stages = h.lifecycle_stages.as_deref().unwrap_or_default();
        if stages.is_empty() {
            return Err(invalid("lifecycleHooks.lifecycleStages can not be empty."));
        }
        for st in stages {
            if !Stage::parse(st).is_some_and(Stage::hookable) {
                return Err(invalid(format!(
                    "Invalid value for lifecycleHooks.lifecycleStages: {st}. Valid values are RECONCILE_SERVICE, PRE_SCALE_UP, POST_SCALE_UP, TEST_TRAFFIC_SHIFT, POST_TEST_TRAFFIC_SHIFT, PRE_PRODUCTION_TRAFFIC_SHIFT, PRODUCTION_TRAFFIC_SHIFT, POST_PRODUCTION_TRAFFIC_SHIFT."
                )));
            }
        }
        if let Some(t) = &h.timeout_configuration {
            if let Some(m) = t.timeout_in_minutes
                && !(1..=MAX_HOOK_MINUTES).contains(&m)
            {
                return Err(invalid(format!(
                    "lifecycleHooks.timeoutConfiguration.timeoutInMinutes must be between 1 and {MAX_HOOK_MINUTES}, but was {m}."
                )));
            }
            if let Some(a) = &t.action
                && a != "CONTINUE"
                && a != "ROLLBACK"
            {
                return Err(invalid(format!(
                    "Invalid value for lifecycleHooks.timeoutConfiguration.action: {a}. Valid values are ROLLBACK, CONTINUE."
                )));
            }
        }
    }
    Ok(())
}

/// Checks a traffic-shifting service's load balancers: each target group needs its
/// `advancedConfiguration` (an alternate target group, a production listener rule and a role),
/// and, when ELBv2 is wired, the alternate group and the rules must exist, and the rules
/// forward to the service's target groups.
pub(crate) fn check_load_balancers(
    registry: Option<&dyn TargetRegistry>,
    scope: &Scope,
    strategy: &str,
    lbs: &[LoadBalancer],
) -> Result<()> {
    for lb in lbs {
        let Some(tg) = lb.target_group_arn.as_deref() else { continue };
        let Some(a) = &lb.advanced_configuration else {
            if strategy == "ROLLING" {
                continue;
            }
            return Err(invalid(format!(
                "advancedConfiguration is required for the load balancer with targetGroupArn {tg} when the deployment strategy is {strategy}."
            )));
        };
        if strategy == "ROLLING" {
            return Err(invalid(
                "advancedConfiguration can only be specified when the deployment strategy is BLUE_GREEN, LINEAR or CANARY.",
            ));
        }
        let alternate = a
            .alternate_target_group_arn
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("advancedConfiguration.alternateTargetGroupArn is required."))?;
        let production = a
            .production_listener_rule
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("advancedConfiguration.productionListenerRule is required."))?;
        if a.role_arn.as_deref().is_none_or(str::is_empty) {
            return Err(invalid("advancedConfiguration.roleArn is required."));
        }
        if alternate == tg {
            return Err(invalid(format!(
                "advancedConfiguration.alternateTargetGroupArn {alternate} must be different from the targetGroupArn."
            )));
        }
        let Some(registry) = registry else { continue };
        match registry.target_group(scope, alternate) {
            None => {
                return Err(invalid(format!(
                    "The target group with targetGroupArn {alternate} does not exist."
                )));
            }
            Some(info) if info.load_balancer_arns.is_empty() => {
                return Err(invalid(format!(
                    "The target group with targetGroupArn {alternate} does not have an associated load balancer."
                )));
            }
            Some(_) => {}
        }
        let mut rules = vec![("productionListenerRule", production)];
        if let Some(t) = a.test_listener_rule.as_deref().filter(|s| !s.is_empty()) {
            rules.push(("testListenerRule", t));
        }
        for (what, arn) in rules {
            let Some(rule) = registry.rule(scope, arn) else {
                return Err(invalid(format!("The {what} {arn} does not exist.")));
            };
            if !rule.forward.iter().any(|w| w.arn == tg || w.arn == alternate) {
                return Err(invalid(format!(
                    "The {what} {arn} must forward to the target group {tg} or {alternate}."
                )));
            }
        }
    }
    Ok(())
}

/// The service's load balancers as a deployment on `alternate` side registers with them.
pub(crate) fn on_side(lbs: &[LoadBalancer], alternate: bool) -> Vec<LoadBalancer> {
    lbs.iter()
        .map(|lb| {
            let mut lb = lb.clone();
            if alternate
                && let Some(alt) =
                    lb.advanced_configuration.as_ref().and_then(|a| a.alternate_target_group_arn.clone())
            {
                lb.target_group_arn = Some(alt);
            }
            lb
        })
        .collect()
}

/// The weights of a rule sending `percent` to `to` and the rest to `from` (ALB weights are
/// 0..=999: whole percents out of 100, tenths out of 1000).
fn weights(to: &str, from: &str, percent: f64) -> Vec<WeightedTargetGroup> {
    let tenths = (percent * 10.0).round().clamp(0.0, 1000.0) as u32;
    let (w, total) = if tenths.is_multiple_of(10) { (tenths / 10, 100) } else { (tenths, 1000) };
    vec![
        WeightedTargetGroup { arn: from.to_string(), weight: total - w },
        WeightedTargetGroup { arn: to.to_string(), weight: w },
    ]
}

/// The strategy's settings for the pure machine; a minute lasts `minute_ms`.
fn strategy(s: &StoredService, minute_ms: i64) -> tr::Strategy {
    let dc = &s.deployment_configuration;
    let min = |m: Option<i32>, default: i32| i64::from(m.unwrap_or(default).max(0)) * minute_ms;
    let shift = match strategy_of(Some(dc)) {
        // ECS's defaults: steps of 10 % baking 6 minutes; a canary of 5 % baking 10.
        "LINEAR" => {
            let l = dc.linear_configuration.clone().unwrap_or_default();
            tr::Shift::Linear {
                step: l.step_percent.unwrap_or(10.0),
                bake_ms: min(l.step_bake_time_in_minutes, 6),
            }
        }
        "CANARY" => {
            let c = dc.canary_configuration.clone().unwrap_or_default();
            tr::Shift::Canary {
                percent: c.canary_percent.unwrap_or(5.0),
                bake_ms: min(c.canary_bake_time_in_minutes, 10),
            }
        }
        _ => tr::Shift::AllAtOnce,
    };
    let hooks = dc
        .lifecycle_hooks
        .iter()
        .flatten()
        .filter(|h| h.target_type.as_deref() == Some("PAUSE"))
        .map(|h| {
            let t = h.timeout_configuration.clone().unwrap_or_default();
            tr::Hook {
                stages: h.lifecycle_stages.iter().flatten().filter_map(|s| Stage::parse(s)).collect(),
                timeout_ms: min(t.timeout_in_minutes, DEFAULT_HOOK_MINUTES),
                timeout_rollback: t.action.as_deref() != Some("CONTINUE"),
            }
        })
        .collect();
    let test_rule = s.load_balancers.iter().flatten().any(|lb| {
        lb.advanced_configuration
            .as_ref()
            .and_then(|a| a.test_listener_rule.as_deref())
            .is_some_and(|r| !r.is_empty())
    });
    // A Network Load Balancer's production "rule" is its listener (`listener/net/...`): ECS adds
    // 10 minutes to each traffic shift stage, as its data plane follows new weights late.
    let nlb = s.load_balancers.iter().flatten().any(|lb| {
        lb.advanced_configuration
            .as_ref()
            .and_then(|a| a.production_listener_rule.as_deref())
            .is_some_and(|r| r.contains(":listener/net/"))
    });
    let settle_ms = if nlb { NLB_SHIFT_MINUTES * minute_ms } else { 0 };
    tr::Strategy { shift, bake_ms: min(dc.bake_time_in_minutes, 0), hooks, test_rule, settle_ms }
}

/// A stage as stored.
fn stage_of(s: Stage) -> DeploymentStage {
    match s {
        Stage::ReconcileService => DeploymentStage::ReconcileService,
        Stage::PreScaleUp => DeploymentStage::PreScaleUp,
        Stage::ScaleUp => DeploymentStage::ScaleUp,
        Stage::PostScaleUp => DeploymentStage::PostScaleUp,
        Stage::TestTrafficShift => DeploymentStage::TestTrafficShift,
        Stage::PostTestTrafficShift => DeploymentStage::PostTestTrafficShift,
        Stage::PreProductionTrafficShift => DeploymentStage::PreProductionTrafficShift,
        Stage::ProductionTrafficShift => DeploymentStage::ProductionTrafficShift,
        Stage::PostProductionTrafficShift => DeploymentStage::PostProductionTrafficShift,
        Stage::BakeTime => DeploymentStage::BakeTime,
        Stage::CleanUp => DeploymentStage::CleanUp,
    }
}

fn sched_stage(s: DeploymentStage) -> Stage {
    match s {
        DeploymentStage::ReconcileService => Stage::ReconcileService,
        DeploymentStage::PreScaleUp => Stage::PreScaleUp,
        DeploymentStage::ScaleUp => Stage::ScaleUp,
        DeploymentStage::PostScaleUp => Stage::PostScaleUp,
        DeploymentStage::TestTrafficShift => Stage::TestTrafficShift,
        DeploymentStage::PostTestTrafficShift => Stage::PostTestTrafficShift,
        DeploymentStage::PreProductionTrafficShift => Stage::PreProductionTrafficShift,
        DeploymentStage::ProductionTrafficShift => Stage::ProductionTrafficShift,
        DeploymentStage::PostProductionTrafficShift => Stage::PostProductionTrafficShift,
        DeploymentStage::BakeTime => Stage::BakeTime,
        DeploymentStage::CleanUp => Stage::CleanUp,
    }
}

/// A hook run's stage as stored. A hook never runs at SCALE_UP, BAKE_TIME or CLEAN_UP
/// ([`Stage::hookable`]); were one to, it would be stored as the hookable stage after it.
fn hook_stage(s: Stage) -> HookStage {
    match stage_of(s) {
        DeploymentStage::ReconcileService => HookStage::ReconcileService,
        DeploymentStage::PreScaleUp => HookStage::PreScaleUp,
        DeploymentStage::ScaleUp | DeploymentStage::PostScaleUp => HookStage::PostScaleUp,
        DeploymentStage::TestTrafficShift => HookStage::TestTrafficShift,
        DeploymentStage::PostTestTrafficShift => HookStage::PostTestTrafficShift,
        DeploymentStage::PreProductionTrafficShift => HookStage::PreProductionTrafficShift,
        DeploymentStage::ProductionTrafficShift => HookStage::ProductionTrafficShift,
        DeploymentStage::PostProductionTrafficShift
        | DeploymentStage::BakeTime
        | DeploymentStage::CleanUp => HookStage::PostProductionTrafficShift,
    }
}

fn hook_status(s: HookStatus) -> HookState {
    match s {
        HookStatus::AwaitingAction => HookState::AwaitingAction,
        HookStatus::Succeeded => HookState::Succeeded,
        HookStatus::Failed => HookState::Failed,
        HookStatus::TimedOut => HookState::TimedOut,
    }
}

/// IN_PROGRESS (an AWS Lambda hook's, which Gantry does not run) waits as AWAITING_ACTION does.
fn sched_hook_status(s: HookState) -> HookStatus {
    match s {
        HookState::AwaitingAction | HookState::InProgress => HookStatus::AwaitingAction,
        HookState::Succeeded => HookStatus::Succeeded,
        HookState::Failed => HookStatus::Failed,
        HookState::TimedOut => HookStatus::TimedOut,
    }
}

fn to_progress(p: &StoredProgress) -> tr::Progress {
    tr::Progress {
        stage: sched_stage(p.stage),
        since: p.since_ms,
        percent: p.percent,
        shifted: p.shifted,
        hooks_passed: p.hooks_passed,
        rollback: p.rollback,
        hooks: p
            .hooks
            .iter()
            .map(|h| tr::HookRun {
                id: h.id.clone(),
                hook: h.hook,
                stage: sched_stage(DeploymentStage::from(h.stage)),
                status: sched_hook_status(h.status),
                expires_at: h.expires_at_ms,
                timeout_rollback: h.timeout_rollback,
                decision: h.decision,
            })
            .collect(),
    }
}

fn stored(deployment: &str, p: &tr::Progress) -> StoredProgress {
    StoredProgress {
        deployment: deployment.to_string(),
        stage: stage_of(p.stage),
        since_ms: p.since,
        percent: p.percent,
        shifted: p.shifted,
        hooks_passed: p.hooks_passed,
        rollback: p.rollback,
        hooks: p
            .hooks
            .iter()
            .map(|h| StoredHook {
                id: h.id.clone(),
                hook: h.hook,
                stage: hook_stage(h.stage),
                status: hook_status(h.status),
                expires_at_ms: h.expires_at,
                timeout_rollback: h.timeout_rollback,
                decision: h.decision,
            })
            .collect(),
    }
}

/// What a pass of a traffic-shifting service decided before the scheduler's plan.
pub(crate) struct Step {
    /// The notes to write (the PRIMARY's side and progress).
    pub notes: TrafficNotes,
    pub keep_old: bool,
    pub hold: bool,
    /// A hook asked for a rollback (or timed out with ROLLBACK).
    pub rollback: bool,
    pub wake_at: Option<i64>,
    pub events: Vec<String>,
}

/// A hook run's ID as ECS forms them: `ecs-pause-` and 43 URL-safe base64 characters.
fn hook_id(ids: &dyn gantry_core::IdGen) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let (a, b) = (ids.next_u128(), ids.next_u128());
    let mut out = String::from("ecs-pause-");
    for i in 0..43u32 {
        let bits = if i < 21 { (a >> (i * 6)) as usize } else { (b >> ((i - 21) * 6)) as usize };
        out.push(ALPHABET[bits & 63] as char);
    }
    out
}

impl ControlPlane {
    /// One step of the PRIMARY deployment of a traffic-shifting service: its side and progress
    /// (a new deployment starts on the side production does not use, with both rules sending
    /// everything to production's), the state machine, and the listener rules it asks for,
    /// set through ELBv2. `None` for a ROLLING service or one with no deployment in progress.
    pub(crate) async fn traffic_step(
        &self,
        ctx: &Ctx,
        rec: &ServiceRecord,
        views: &[sched::TaskView],
        now: i64,
    ) -> Result<Option<Step>> {
        let s = &rec.service;
        if !shifts_traffic(s) {
            return Ok(None);
        }
        let Some(primary) = s.deployments.first() else { return Ok(None) };
        let pid = primary.id.clone();
        let mut notes = rec.traffic.clone();
        let fresh = notes.progress.as_ref().is_none_or(|p| p.deployment != pid);
        if primary.rollout_state != gantry_core::RolloutState::InProgress {
            return Ok(None);
        }
        let mut events = Vec::new();
        let mut progress = match &notes.progress {
            Some(p) if !fresh => to_progress(p),
            _ => {
                let side = !notes.production_alternate;
                notes.sides.retain(|(d, _)| *d != pid);
                notes.sides.push((pid.clone(), side));
                // Both rules forward to both target groups, everything to production: the new
                // side's group is in use (health-checked) before its tasks register.
                if let Err(e) = self.shift_rules(ctx, s, side, Some(0.0), Some(0.0)).await {
                    events.push(e);
                    return Ok(Some(Step {
                        notes: rec.traffic.clone(),
                        keep_old: true,
                        hold: true,
                        rollback: false,
                        wake_at: Some(now + crate::targets::LB_POLL_MS),
                        events,
                    }));
                }
                tr::Progress::new(now)
            }
        };
        let side = notes.alternate(&pid);
        // The new revision is ready once its healthy tasks reach the desired count.
        let aliases = &rec.sched.aliases;
        let deployment_of = |d: &str| {
            aliases.iter().find(|(from, _)| from == d).map_or_else(|| d.to_string(), |(_, to)| to.clone())
        };
        let healthy = views
            .iter()
            .filter(|t| deployment_of(&t.deployment) == pid && !t.stop_requested && t.healthy())
            .count() as i32;
        let ready = healthy >= s.desired_count;
        let minute = self.deployment_minute_ms.load(std::sync::atomic::Ordering::Relaxed);
        let plan = tr::advance(&strategy(s, minute), &progress, ready, now, &hook_id(&*self.ids));
        if plan.test_percent.is_some() || plan.production_percent.is_some() {
            if let Err(e) = self.shift_rules(ctx, s, side, plan.test_percent, plan.production_percent).await {
                // Try again next pass from where it was.
                events.push(e);
                notes.progress = Some(stored(&pid, &progress));
                return Ok(Some(Step {
                    notes,
                    keep_old: true,
                    hold: true,
                    rollback: false,
                    wake_at: Some(now + crate::targets::LB_POLL_MS),
                    events,
                }));
            }
            let name = s.service_name.as_str();
            if let Some(p) = plan.production_percent {
                events.push(format!(
                    "(service {name}) (deployment {pid}) shifted {p}% of production traffic to its target groups."
                ));
            }
            if plan.test_percent.is_some() && plan.production_percent.is_none() {
                events.push(format!(
                    "(service {name}) (deployment {pid}) shifted test traffic to its target groups."
                ));
            }
        }
        let name = s.service_name.as_str();
        events.extend(plan.events.iter().map(|e| format!("(service {name}) (deployment {pid}) {e}")));
        progress = plan.progress;
        notes.progress = Some(stored(&pid, &progress));
        Ok(Some(Step {
            notes,
            keep_old: plan.keep_old,
            hold: plan.hold,
            rollback: plan.rollback.is_some(),
            wake_at: plan.wake_at,
            events,
        }))
    }

    /// Sets the test and production listener rules of every load balancer with an
    /// `advancedConfiguration`: `percent` to the target groups of side `alternate`, the rest to
    /// the other side's. The error is an event for the service.
    async fn shift_rules(
        &self,
        ctx: &Ctx,
        s: &StoredService,
        alternate: bool,
        test: Option<f64>,
        production: Option<f64>,
    ) -> std::result::Result<(), String> {
        let Some(registry) = self.target_groups.get().cloned() else { return Ok(()) };
        let name = s.service_name.as_str();
        for lb in s.load_balancers.iter().flatten() {
            let (Some(tg), Some(a)) = (lb.target_group_arn.as_deref(), lb.advanced_configuration.as_ref())
            else {
                continue;
            };
            let Some(alt) = a.alternate_target_group_arn.as_deref() else { continue };
            let (to, from) = if alternate { (alt, tg) } else { (tg, alt) };
            let rules = [
                (a.test_listener_rule.as_deref(), test),
                (a.production_listener_rule.as_deref(), production),
            ];
            for (rule, percent) in rules {
                let (Some(rule), Some(p)) = (rule.filter(|r| !r.is_empty()), percent) else { continue };
                registry.set_forward(&ctx.scope, rule, &weights(to, from, p)).await.map_err(|e| {
                    format!("(service {name}) was unable to modify the listener rule {rule}: {e}")
                })?;
            }
        }
        Ok(())
    }
}

/// After the scheduler's plan: a rollback it started runs on the side of the revision it
/// returns to, from its own progress; a completed deployment's side becomes production's; sides
/// of deployments gone are forgotten.
pub(crate) fn after_plan(
    rec: &mut ServiceRecord,
    rollback: Option<&sched::Rollback>,
    completed: Option<&str>,
    now: i64,
) {
    if !shifts_traffic(&rec.service) && rec.traffic.progress.is_none() {
        return;
    }
    let t = &mut rec.traffic;
    if let Some(r) = rollback {
        let side = t.alternate(&r.to);
        t.sides.retain(|(d, _)| *d != r.id);
        t.sides.push((r.id.clone(), side));
        // The service deployment rolled back keeps showing its hooks' runs.
        let hooks = t.progress.take().map(|p| p.hooks).unwrap_or_default();
        let mut p = stored(&r.id, &tr::Progress::rollback(now));
        p.hooks = hooks;
        t.progress = Some(p);
    }
    if let Some(done) = completed {
        t.production_alternate = t.alternate(done);
    }
    let keep: Vec<String> = rec
        .service
        .deployments
        .iter()
        .map(|d| d.id.clone())
        .chain(rec.sched.last_completed.as_ref().map(|d| d.id.clone()))
        .collect();
    t.sides.retain(|(d, _)| keep.contains(d));
}

/// ContinueServiceDeployment's change: the awaiting hook `hook_id` of the service's current
/// progress gets its answer. Errors name the hook.
pub(crate) fn answer_hook(rec: &mut ServiceRecord, hook_id: &str, rollback: bool) -> Result<()> {
    let not_found = || {
        EcsError::new(
            ErrorKind::InvalidParameterException,
            format!("The lifecycle hook {hook_id} was not found in the service deployment."),
        )
    };
    let p = rec.traffic.progress.as_mut().ok_or_else(not_found)?;
    let h = p.hooks.iter_mut().find(|h| h.id == hook_id).ok_or_else(not_found)?;
    if h.status != HookState::AwaitingAction {
        return Err(EcsError::new(
            ErrorKind::InvalidParameterException,
            format!("The lifecycle hook {hook_id} is {} and not awaiting action.", h.status),
        ));
    }
    h.decision = Some(rollback);
    Ok(())
}

/// The lifecycle stage and hook details a service deployment shows, from the progress of
/// deployment `deployment` (if the record holds it).
pub(crate) fn lifecycle_of(
    notes: &TrafficNotes,
    deployment: &str,
) -> Option<(DeploymentStage, Vec<gantry_model::DeploymentLifecycleHookDetail>)> {
    let p = notes.progress.as_ref().filter(|p| p.deployment == deployment)?;
    let details = p
        .hooks
        .iter()
        .map(|h| gantry_model::DeploymentLifecycleHookDetail {
            hook_id: Some(h.id.clone()),
            target_type: Some("PAUSE".into()),
            status: Some(h.status.as_str().into()),
            expires_at: Some(h.expires_at_ms as f64 / 1000.0),
            timeout_action: Some(if h.timeout_rollback { "ROLLBACK" } else { "CONTINUE" }.into()),
            target_arn: None,
        })
        .collect();
    let stage = match p.stage {
        // Not a lifecycle stage of its own: the deployment shows the one it belongs to.
        DeploymentStage::PreProductionTrafficShift => DeploymentStage::PostTestTrafficShift,
        s => s,
    };
    Some((stage, details))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_stages_and_statuses_are_stored_as_ecs_names_them() {
        for st in DeploymentStage::ALL {
            assert_eq!(sched_stage(*st).as_str(), st.as_str());
            assert_eq!(stage_of(sched_stage(*st)), *st);
        }
        for st in HookStage::ALL {
            let stage = sched_stage(DeploymentStage::from(*st));
            assert!(stage.hookable(), "{st}");
            assert_eq!(stage.as_str(), st.as_str());
            assert_eq!(hook_stage(stage), *st);
        }
        for st in
            [HookStatus::AwaitingAction, HookStatus::Succeeded, HookStatus::Failed, HookStatus::TimedOut]
        {
            assert_eq!(hook_status(st).as_str(), st.as_str());
            assert_eq!(sched_hook_status(hook_status(st)), st);
        }
        assert_eq!(sched_hook_status(HookState::InProgress), HookStatus::AwaitingAction);
    }

    #[test]
    fn weights_are_whole_percents_or_tenths() {
        let w = weights("green", "blue", 10.0);
        assert_eq!((w[0].weight, w[1].weight), (90, 10));
        let w = weights("green", "blue", 2.5);
        assert_eq!((w[0].weight, w[1].weight), (975, 25));
        let w = weights("green", "blue", 100.0);
        assert_eq!(
            (w[0].arn.as_str(), w[0].weight, w[1].arn.as_str(), w[1].weight),
            ("blue", 0, "green", 100)
        );
    }

    #[test]
    fn hook_ids_look_like_ecs_ones() {
        let ids = gantry_core::SeededIds::new(3);
        let id = hook_id(&ids);
        assert!(id.starts_with("ecs-pause-"));
        assert_eq!(id.len(), "ecs-pause-".len() + 43);
        assert_ne!(id, hook_id(&ids));
    }

    #[test]
    fn absent_percents_and_bake_times_take_ecs_defaults() {
        let service = |dc: serde_json::Value| -> StoredService {
            serde_json::from_value(serde_json::json!({
                "serviceArn": "arn:aws:ecs:us-east-1:000000000000:service/c/s",
                "serviceName": "s",
                "clusterArn": "arn:aws:ecs:us-east-1:000000000000:cluster/c",
                "status": "ACTIVE",
                "createdAt": 0.0,
                "schedulingStrategy": "REPLICA",
                "deploymentController": {"type": "ECS"},
                "deploymentConfiguration": dc,
            }))
            .unwrap()
        };
        // Given without its bake time, as the CLI's shorthand and CloudFormation often send it.
        let s = service(
            serde_json::json!({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 20.0}}),
        );
        assert_eq!(strategy(&s, 1000).shift, tr::Shift::Canary { percent: 20.0, bake_ms: 10_000 });
        let s = service(
            serde_json::json!({"strategy": "LINEAR", "linearConfiguration": {"stepBakeTimeInMinutes": 0}}),
        );
        assert_eq!(strategy(&s, 1000).shift, tr::Shift::Linear { step: 10.0, bake_ms: 0 });
        let s = service(serde_json::json!({"strategy": "LINEAR", "linearConfiguration": {}}));
        assert_eq!(strategy(&s, 1000).shift, tr::Shift::Linear { step: 10.0, bake_ms: 6_000 });
        // An explicit 0 is a value to check, not "absent".
        let dc: DeploymentConfiguration = serde_json::from_value(
            serde_json::json!({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 0.0}}),
        )
        .unwrap();
        assert!(check_strategy(&dc, false).is_err());
    }

    #[test]
    fn percents_are_tenths_in_range() {
        assert!(tenth_in(10.0, 3.0, 100.0));
        assert!(tenth_in(3.3, 3.0, 100.0));
        assert!(!tenth_in(3.33, 3.0, 100.0));
        assert!(!tenth_in(2.9, 3.0, 100.0));
        assert!(!tenth_in(f64::NAN, 0.1, 100.0));
    }
}
