//! ECS's traffic-shifting deployments (`deploymentConfiguration.strategy` BLUE_GREEN, LINEAR and
//! CANARY), as a pure state machine: [`advance`] takes the PRIMARY deployment's [`Progress`],
//! what the strategy and hooks say, what is observed (whether the new revision's tasks are all
//! healthy) and the time, and returns the new progress with what the caller must do through
//! ELBv2 (the test and production listener rules' weights), whether older revisions' tasks must
//! be kept, whether the deployment may complete, and when to look again.
//!
//! The lifecycle stages, in ECS's order (`lifecycleStage` of the service deployment):
//! PRE_SCALE_UP → SCALE_UP (the new revision, green, starts at 100 % of the desired count beside
//! the old one, blue, and registers in the target groups production does not use) →
//! POST_SCALE_UP → TEST_TRAFFIC_SHIFT (the test listener rule to green) → POST_TEST_TRAFFIC_SHIFT
//! → PRODUCTION_TRAFFIC_SHIFT (the production rule's weights: at once for BLUE_GREEN,
//! `canaryPercent` then the rest after `canaryBakeTimeInMinutes` for CANARY, `stepPercent` more
//! every `stepBakeTimeInMinutes` for LINEAR) → POST_PRODUCTION_TRAFFIC_SHIFT → BAKE_TIME
//! (`bakeTimeInMinutes`, both revisions running) → CLEAN_UP (blue scaled to zero; the deployment
//! completes once blue is gone).
//!
//! PAUSE lifecycle hooks stop the machine at their stages (ECS's hook stages: the lifecycle
//! stages above less SCALE_UP, BAKE_TIME and CLEAN_UP, plus PRE_PRODUCTION_TRAFFIC_SHIFT; a
//! PRODUCTION_TRAFFIC_SHIFT hook runs after every shift step) until ContinueServiceDeployment
//! says CONTINUE or ROLLBACK, or their timeout takes its action.
//!
//! A rollback deployment (its [`Progress::rollback`] set) shifts both rules back to its own
//! revision's target groups at once, then cleans up.

use crate::Millis;

/// A lifecycle stage (`ServiceDeploymentLifecycleStage`), or a hook stage that is not one
/// (`PRE_PRODUCTION_TRAFFIC_SHIFT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    ReconcileService,
    PreScaleUp,
    ScaleUp,
    PostScaleUp,
    TestTrafficShift,
    PostTestTrafficShift,
    PreProductionTrafficShift,
    ProductionTrafficShift,
    PostProductionTrafficShift,
    BakeTime,
    CleanUp,
}

const STAGES: &[(Stage, &str)] = &[
    (Stage::ReconcileService, "RECONCILE_SERVICE"),
    (Stage::PreScaleUp, "PRE_SCALE_UP"),
    (Stage::ScaleUp, "SCALE_UP"),
    (Stage::PostScaleUp, "POST_SCALE_UP"),
    (Stage::TestTrafficShift, "TEST_TRAFFIC_SHIFT"),
    (Stage::PostTestTrafficShift, "POST_TEST_TRAFFIC_SHIFT"),
    (Stage::PreProductionTrafficShift, "PRE_PRODUCTION_TRAFFIC_SHIFT"),
    (Stage::ProductionTrafficShift, "PRODUCTION_TRAFFIC_SHIFT"),
    (Stage::PostProductionTrafficShift, "POST_PRODUCTION_TRAFFIC_SHIFT"),
    (Stage::BakeTime, "BAKE_TIME"),
    (Stage::CleanUp, "CLEAN_UP"),
];

impl Stage {
    pub fn as_str(self) -> &'static str {
        STAGES.iter().find(|(s, _)| *s == self).map_or("", |(_, n)| n)
    }
    pub fn parse(s: &str) -> Option<Stage> {
        STAGES.iter().find(|(_, n)| *n == s).map(|(st, _)| *st)
    }
    /// Whether a lifecycle hook may name it (`DeploymentLifecycleHookStage`).
    pub fn hookable(self) -> bool {
        !matches!(self, Stage::ScaleUp | Stage::BakeTime | Stage::CleanUp)
    }
}

/// How production traffic moves to the new revision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shift {
    /// BLUE_GREEN: all at once.
    AllAtOnce,
    /// CANARY: `percent`, then the rest after `bake_ms`.
    Canary { percent: f64, bake_ms: Millis },
    /// LINEAR: `step` percent more every `bake_ms`.
    Linear { step: f64, bake_ms: Millis },
}

/// A PAUSE hook: the stages it stops at, and what its timeout does.
#[derive(Debug, Clone, PartialEq)]
pub struct Hook {
    pub stages: Vec<Stage>,
    pub timeout_ms: Millis,
    /// The timeout rolls back (ECS's default) rather than continues.
    pub timeout_rollback: bool,
}

/// The strategy's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    pub shift: Shift,
    /// bakeTimeInMinutes, in milliseconds.
    pub bake_ms: Millis,
    pub hooks: Vec<Hook>,
    /// Whether a test listener rule is configured.
    pub test_rule: bool,
    /// How long a traffic shift (the test shift, and each production step) settles before the
    /// deployment goes on: ECS adds 10 minutes with a Network Load Balancer, whose data plane
    /// follows new weights late; 0 with an Application Load Balancer.
    pub settle_ms: Millis,
}

/// A hook's state (`DeploymentLifecycleHookStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookStatus {
    AwaitingAction,
    Succeeded,
    Failed,
    TimedOut,
}

impl HookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HookStatus::AwaitingAction => "AWAITING_ACTION",
            HookStatus::Succeeded => "SUCCEEDED",
            HookStatus::Failed => "FAILED",
            HookStatus::TimedOut => "TIMED_OUT",
        }
    }
    pub fn parse(s: &str) -> Option<HookStatus> {
        [HookStatus::AwaitingAction, HookStatus::Succeeded, HookStatus::Failed, HookStatus::TimedOut]
            .into_iter()
            .find(|h| h.as_str() == s)
    }
}

/// One time a hook stopped the deployment (`lifecycleHookDetails`).
#[derive(Debug, Clone, PartialEq)]
pub struct HookRun {
    pub id: String,
    /// Which of the strategy's hooks.
    pub hook: usize,
    pub stage: Stage,
    pub status: HookStatus,
    pub expires_at: Millis,
    pub timeout_rollback: bool,
    /// What ContinueServiceDeployment said (true: ROLLBACK), not yet acted on.
    pub decision: Option<bool>,
}

/// Where the PRIMARY deployment is.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub stage: Stage,
    /// When the current stage (or production shift step) began.
    pub since: Millis,
    /// Production traffic on the new revision, in percent.
    pub percent: f64,
    /// The current production step's shift is done (its hooks and bake may be pending).
    pub shifted: bool,
    /// Hooks passed at the current stage (or step): the next one to run is the one after.
    pub hooks_passed: usize,
    pub hooks: Vec<HookRun>,
    /// A rollback deployment: traffic goes back at once.
    pub rollback: bool,
}

impl Progress {
    pub fn new(now: Millis) -> Progress {
        Progress {
            stage: Stage::PreScaleUp,
            since: now,
            percent: 0.0,
            shifted: false,
            hooks_passed: 0,
            hooks: Vec::new(),
            rollback: false,
        }
    }

    /// A rollback deployment's progress: its tasks are the old revision's, still registered.
    pub fn rollback(now: Millis) -> Progress {
        Progress { stage: Stage::ScaleUp, rollback: true, ..Progress::new(now) }
    }

    fn enter(&mut self, stage: Stage, now: Millis) {
        self.stage = stage;
        self.since = now;
        self.hooks_passed = 0;
        self.shifted = false;
    }
}

/// What one call decided.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficPlan {
    pub progress: Progress,
    /// Set the test listener rule: this percent to the new revision.
    pub test_percent: Option<f64>,
    /// Set the production listener rule: this percent to the new revision.
    pub production_percent: Option<f64>,
    /// Tasks of older revisions stay (until CLEAN_UP).
    pub keep_old: bool,
    /// The deployment may not complete yet.
    pub hold: bool,
    /// Roll the deployment back, for this reason.
    pub rollback: Option<String>,
    pub wake_at: Option<Millis>,
    /// Service events.
    pub events: Vec<String>,
}

/// The production weights after the current ones, for the strategy.
fn next_percent(shift: Shift, current: f64) -> f64 {
    match shift {
        Shift::AllAtOnce => 100.0,
        Shift::Canary { percent, .. } => {
            if current < percent {
                percent
            } else {
                100.0
            }
        }
        Shift::Linear { step, .. } => (current + step).min(100.0),
    }
}

/// How long to wait after a production step short of 100 %.
fn step_bake(shift: Shift) -> Millis {
    match shift {
        Shift::AllAtOnce => 0,
        Shift::Canary { bake_ms, .. } | Shift::Linear { bake_ms, .. } => bake_ms,
    }
}

/// One step of the machine. `green_ready`: the new revision's tasks are all running and
/// healthy at the desired count. `fresh_hook_id` names a hook run if one starts now.
pub fn advance(
    strategy: &Strategy,
    progress: &Progress,
    green_ready: bool,
    now: Millis,
    fresh_hook_id: &str,
) -> TrafficPlan {
    let mut m = Machine {
        s: strategy,
        p: progress.clone(),
        now,
        fresh: fresh_hook_id,
        out_test: None,
        out_prod: None,
        rollback: None,
        wake_at: None,
        events: Vec::new(),
    };
    if m.p.rollback {
        // Back at once: both rules to this (the old) revision, then clean up.
        if m.p.stage < Stage::CleanUp {
            m.out_prod = Some(100.0);
            if strategy.test_rule {
                m.out_test = Some(100.0);
            }
            m.p.percent = 100.0;
            m.p.enter(Stage::CleanUp, now);
        }
    } else {
        m.run(green_ready);
    }
    let keep_old = m.p.stage < Stage::CleanUp;
    TrafficPlan {
        hold: keep_old,
        keep_old,
        test_percent: m.out_test,
        production_percent: m.out_prod,
        rollback: m.rollback,
        wake_at: m.wake_at,
        events: m.events,
        progress: m.p,
    }
}

struct Machine<'a> {
    s: &'a Strategy,
    p: Progress,
    now: Millis,
    fresh: &'a str,
    out_test: Option<f64>,
    out_prod: Option<f64>,
    rollback: Option<String>,
    wake_at: Option<Millis>,
    events: Vec<String>,
}

/// What a stage's hooks say.
enum Gate {
    Open,
    Wait,
    Rollback,
}

impl Machine<'_> {
    fn wake(&mut self, at: Millis) {
        self.wake_at = crate::earliest(self.wake_at, at);
    }

    /// Whether the current shift (made at `since`) has settled; if not, wakes when it will be.
    fn settled(&mut self) -> bool {
        let until = self.p.since + self.s.settle_ms;
        if self.now < until {
            self.wake(until);
            return false;
        }
        true
    }

    fn run(&mut self, green_ready: bool) {
        // Bounded: every arm either waits (returns) or moves to a later stage or step.
        for _ in 0..64 {
            let now = self.now;
            let next = match self.p.stage {
                Stage::ReconcileService | Stage::PreScaleUp => {
                    let stage = self.p.stage;
                    match self.gate(stage) {
                        Gate::Open => {}
                        _ => return,
                    }
                    if stage == Stage::ReconcileService { Stage::PreScaleUp } else { Stage::ScaleUp }
                }
                Stage::ScaleUp => {
                    if !green_ready {
                        return;
                    }
                    Stage::PostScaleUp
                }
                Stage::PostScaleUp => match self.gate(Stage::PostScaleUp) {
                    Gate::Open => Stage::TestTrafficShift,
                    _ => return,
                },
                Stage::TestTrafficShift => {
                    if !self.p.shifted {
                        if self.s.test_rule {
                            self.out_test = Some(100.0);
                        }
                        self.p.shifted = true;
                    }
                    if !self.settled() {
                        return;
                    }
                    match self.gate(Stage::TestTrafficShift) {
                        Gate::Open => Stage::PostTestTrafficShift,
                        _ => return,
                    }
                }
                Stage::PostTestTrafficShift => match self.gate(Stage::PostTestTrafficShift) {
                    Gate::Open => Stage::PreProductionTrafficShift,
                    _ => return,
                },
                Stage::PreProductionTrafficShift => match self.gate(Stage::PreProductionTrafficShift) {
                    Gate::Open => Stage::ProductionTrafficShift,
                    _ => return,
                },
                Stage::ProductionTrafficShift => {
                    if !self.p.shifted {
                        let to = next_percent(self.s.shift, self.p.percent);
                        self.out_prod = Some(to);
                        self.p.percent = to;
                        self.p.shifted = true;
                        self.p.since = now;
                        self.p.hooks_passed = 0;
                    }
                    if !self.settled() {
                        return;
                    }
                    match self.gate(Stage::ProductionTrafficShift) {
                        Gate::Open => {}
                        _ => return,
                    }
                    if self.p.percent >= 100.0 {
                        Stage::PostProductionTrafficShift
                    } else {
                        let until = self.p.since + self.s.settle_ms + step_bake(self.s.shift);
                        if now < until {
                            self.wake(until);
                            return;
                        }
                        // The next step.
                        self.p.shifted = false;
                        continue;
                    }
                }
                Stage::PostProductionTrafficShift => match self.gate(Stage::PostProductionTrafficShift) {
                    Gate::Open => Stage::BakeTime,
                    _ => return,
                },
                Stage::BakeTime => {
                    let until = self.p.since + self.s.bake_ms;
                    if now < until {
                        self.wake(until);
                        return;
                    }
                    Stage::CleanUp
                }
                Stage::CleanUp => return,
            };
            self.p.enter(next, now);
        }
    }

    /// Runs the stage's hooks, one after another: each stops the deployment until it is
    /// answered or times out.
    fn gate(&mut self, stage: Stage) -> Gate {
        let now = self.now;
        loop {
            let Some(idx) = self
                .s
                .hooks
                .iter()
                .enumerate()
                .filter(|(_, h)| h.stages.contains(&stage))
                .map(|(i, _)| i)
                .nth(self.p.hooks_passed)
            else {
                return Gate::Open;
            };
            // The run of this hook at this stage (or step), if it started.
            let run = self
                .p
                .hooks
                .iter_mut()
                .rev()
                .find(|r| r.hook == idx && r.stage == stage && r.status == HookStatus::AwaitingAction);
            let Some(run) = run else {
                let h = &self.s.hooks[idx];
                let id = self.fresh.to_string();
                self.p.hooks.push(HookRun {
                    id: id.clone(),
                    hook: idx,
                    stage,
                    status: HookStatus::AwaitingAction,
                    expires_at: now + h.timeout_ms,
                    timeout_rollback: h.timeout_rollback,
                    decision: None,
                });
                self.events.push(format!("lifecycle hook {id} is awaiting action at {}.", stage.as_str()));
                self.wake(now + h.timeout_ms);
                return Gate::Wait;
            };
            let rollback = match run.decision {
                Some(rb) => {
                    run.status = if rb { HookStatus::Failed } else { HookStatus::Succeeded };
                    rb
                }
                None if now >= run.expires_at => {
                    run.status = HookStatus::TimedOut;
                    run.timeout_rollback
                }
                None => {
                    let at = run.expires_at;
                    self.wake(at);
                    return Gate::Wait;
                }
            };
            run.decision = None;
            if rollback {
                let reason = match run.status {
                    HookStatus::TimedOut => {
                        format!("lifecycle hook {} timed out at {}.", run.id, stage.as_str())
                    }
                    _ => format!("lifecycle hook {} asked for a rollback at {}.", run.id, stage.as_str()),
                };
                self.rollback = Some(reason);
                return Gate::Rollback;
            }
            self.p.hooks_passed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    fn strategy(shift: Shift, bake_min: i64, hooks: Vec<Hook>) -> Strategy {
        Strategy { shift, bake_ms: bake_min * MIN, hooks, test_rule: true, settle_ms: 0 }
    }

    /// Runs the machine from `p` at `now` and returns the plan.
    fn step(s: &Strategy, p: &Progress, ready: bool, now: Millis) -> TrafficPlan {
        advance(s, p, ready, now, "ecs-pause-x")
    }

    #[test]
    fn blue_green_waits_for_green_then_shifts_test_then_production_then_bakes_then_cleans_up() {
        let s = strategy(Shift::AllAtOnce, 5, vec![]);
        let p = Progress::new(0);
        let a = step(&s, &p, false, 1_000);
        assert_eq!(a.progress.stage, Stage::ScaleUp);
        assert!(a.keep_old && a.hold);
        assert_eq!((a.test_percent, a.production_percent), (None, None));

        let b = step(&s, &a.progress, true, 2_000);
        assert_eq!(b.progress.stage, Stage::BakeTime);
        assert_eq!((b.test_percent, b.production_percent), (Some(100.0), Some(100.0)));
        assert_eq!(b.wake_at, Some(2_000 + 5 * MIN));
        assert!(b.keep_old, "blue stays through the bake time");

        let c = step(&s, &b.progress, true, 2_000 + 5 * MIN - 1);
        assert_eq!(c.progress.stage, Stage::BakeTime);
        assert_eq!((c.test_percent, c.production_percent), (None, None), "nothing set twice");

        let d = step(&s, &c.progress, true, 2_000 + 5 * MIN);
        assert_eq!(d.progress.stage, Stage::CleanUp);
        assert!(!d.keep_old && !d.hold);
    }

    #[test]
    fn behind_a_network_load_balancer_each_shift_settles_ten_minutes_first() {
        let mut s = strategy(Shift::Canary { percent: 10.0, bake_ms: 2 * MIN }, 0, vec![]);
        s.settle_ms = 10 * MIN;
        let a = step(&s, &Progress::new(0), true, 0);
        assert_eq!(
            (a.progress.stage, a.test_percent, a.production_percent),
            (Stage::TestTrafficShift, Some(100.0), None)
        );
        assert_eq!(a.wake_at, Some(10 * MIN));
        let b = step(&s, &a.progress, true, 10 * MIN - 1);
        assert_eq!((b.progress.stage, b.production_percent), (Stage::TestTrafficShift, None));
        // Settled: production's canary step, which settles too, then bakes its 2 minutes.
        let c = step(&s, &b.progress, true, 10 * MIN);
        assert_eq!((c.progress.stage, c.production_percent), (Stage::ProductionTrafficShift, Some(10.0)));
        assert_eq!(c.wake_at, Some(20 * MIN));
        let d = step(&s, &c.progress, true, 20 * MIN);
        assert_eq!((d.production_percent, d.wake_at), (None, Some(22 * MIN)));
        let e = step(&s, &d.progress, true, 22 * MIN);
        assert_eq!((e.progress.stage, e.production_percent), (Stage::ProductionTrafficShift, Some(100.0)));
        let f = step(&s, &e.progress, true, 32 * MIN);
        assert_eq!(f.progress.stage, Stage::CleanUp);
    }

    #[test]
    fn canary_shifts_its_percent_then_the_rest_after_its_bake_time() {
        let s = strategy(Shift::Canary { percent: 10.0, bake_ms: 2 * MIN }, 0, vec![]);
        let a = step(&s, &Progress::new(0), true, 0);
        assert_eq!(a.production_percent, Some(10.0));
        assert_eq!(a.progress.stage, Stage::ProductionTrafficShift);
        assert_eq!(a.wake_at, Some(2 * MIN));
        let b = step(&s, &a.progress, true, 2 * MIN - 1);
        assert_eq!(b.production_percent, None);
        let c = step(&s, &b.progress, true, 2 * MIN);
        assert_eq!(c.production_percent, Some(100.0));
        assert_eq!(c.progress.stage, Stage::CleanUp, "no bake time: straight to clean-up");
    }

    #[test]
    fn linear_shifts_in_steps() {
        let s = strategy(Shift::Linear { step: 30.0, bake_ms: MIN }, 0, vec![]);
        let mut p = Progress::new(0);
        let mut seen = Vec::new();
        let mut now = 0;
        for _ in 0..10 {
            let plan = step(&s, &p, true, now);
            if let Some(x) = plan.production_percent {
                seen.push(x);
            }
            p = plan.progress;
            now += MIN;
        }
        assert_eq!(seen, vec![30.0, 60.0, 90.0, 100.0]);
        assert_eq!(p.stage, Stage::CleanUp);
    }

    #[test]
    fn a_pause_hook_waits_for_continue_and_a_rollback_answer_or_timeout_rolls_back() {
        let hook =
            Hook { stages: vec![Stage::PostTestTrafficShift], timeout_ms: 10 * MIN, timeout_rollback: true };
        let s = strategy(Shift::AllAtOnce, 0, vec![hook]);
        let a = step(&s, &Progress::new(0), true, 0);
        assert_eq!(a.progress.stage, Stage::PostTestTrafficShift);
        assert_eq!(a.test_percent, Some(100.0));
        assert_eq!(a.production_percent, None, "production waits for the hook");
        assert_eq!(a.progress.hooks.len(), 1);
        assert_eq!(a.progress.hooks[0].status, HookStatus::AwaitingAction);
        assert_eq!(a.wake_at, Some(10 * MIN));
        // Still waiting.
        let b = step(&s, &a.progress, true, MIN);
        assert_eq!(b.progress.stage, Stage::PostTestTrafficShift);
        assert_eq!(b.progress.hooks.len(), 1, "one run, not a new one each pass");

        // CONTINUE.
        let mut p = b.progress.clone();
        p.hooks[0].decision = Some(false);
        let c = step(&s, &p, true, 2 * MIN);
        assert_eq!(c.progress.hooks[0].status, HookStatus::Succeeded);
        assert_eq!(c.production_percent, Some(100.0));
        assert_eq!(c.progress.stage, Stage::CleanUp);

        // ROLLBACK.
        let mut p = b.progress.clone();
        p.hooks[0].decision = Some(true);
        let d = step(&s, &p, true, 2 * MIN);
        assert_eq!(d.progress.hooks[0].status, HookStatus::Failed);
        assert!(d.rollback.is_some());
        assert_eq!(d.production_percent, None);

        // The timeout's action.
        let e = step(&s, &b.progress, true, 10 * MIN);
        assert_eq!(e.progress.hooks[0].status, HookStatus::TimedOut);
        assert!(e.rollback.is_some());
        let s2 = strategy(
            Shift::AllAtOnce,
            0,
            vec![Hook {
                stages: vec![Stage::PostTestTrafficShift],
                timeout_ms: 10 * MIN,
                timeout_rollback: false,
            }],
        );
        let waiting = step(&s2, &Progress::new(0), true, 0).progress;
        let f = step(&s2, &waiting, true, 10 * MIN);
        assert_eq!(f.progress.hooks[0].status, HookStatus::TimedOut);
        assert!(f.rollback.is_none());
        assert_eq!(f.progress.stage, Stage::CleanUp);
    }

    #[test]
    fn a_production_shift_hook_runs_at_every_step() {
        let hook =
            Hook { stages: vec![Stage::ProductionTrafficShift], timeout_ms: MIN, timeout_rollback: false };
        let s = strategy(Shift::Linear { step: 50.0, bake_ms: 0 }, 0, vec![hook]);
        let mut p = Progress::new(0);
        let mut now = 0;
        for _ in 0..6 {
            p = step(&s, &p, true, now).progress;
            now += MIN;
        }
        assert_eq!(p.stage, Stage::CleanUp);
        assert_eq!(p.hooks.len(), 2, "{:?}", p.hooks);
        assert!(p.hooks.iter().all(|h| h.status == HookStatus::TimedOut));
    }

    #[test]
    fn a_rollback_deployment_shifts_both_rules_back_at_once() {
        let s = strategy(Shift::Canary { percent: 10.0, bake_ms: MIN }, 5, vec![]);
        let a = step(&s, &Progress::rollback(0), false, 0);
        assert_eq!((a.test_percent, a.production_percent), (Some(100.0), Some(100.0)));
        assert_eq!(a.progress.stage, Stage::CleanUp);
        assert!(!a.keep_old);
    }

    #[test]
    fn stages_spell_as_ecs_does() {
        for (s, n) in STAGES {
            assert_eq!(Stage::parse(n), Some(*s));
            assert_eq!(s.as_str(), *n);
        }
        assert!(!Stage::BakeTime.hookable() && Stage::PreProductionTrafficShift.hookable());
    }
}
