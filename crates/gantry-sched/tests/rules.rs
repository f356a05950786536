//! The scheduler's rules, driven with a fake clock and simulated tasks: table tests for the
//! scale-in order, throttle delays and circuit-breaker thresholds; scenario tests; and property
//! tests for maximumPercent, minimumHealthyPercent, convergence and DAEMON placement.

use gantry_sched::*;
use proptest::prelude::*;

fn task(id: &str, dep: &str, phase: Phase) -> TaskView {
    TaskView {
        id: id.into(),
        deployment: dep.into(),
        phase,
        stop_requested: false,
        cause: StopCause::Failed,
        reached_running: phase == Phase::Running,
        health: Health::Unknown,
        health_checked: false,
        started_at: (phase == Phase::Running).then_some(0),
        instance: Some("i-1".into()),
        zone: Some("a".into()),
        instance_draining: false,
        protected_until: None,
        lb: LbHealth::None,
    }
}

fn service(desired: u32, deployments: &[&str]) -> Service {
    Service {
        name: "web".into(),
        desired,
        daemon: false,
        min_healthy_percent: 100,
        max_percent: 200,
        breaker: None,
        grace_ms: 0,
        draining: false,
        rollback_requested: false,
        alarms: None,
        keep_old: false,
        hold: false,
        deployments: deployments
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let mut d = DeploymentState::new(id, 1000 - i as i64);
                if i > 0 {
                    d.status = Status::Active;
                    d.rollout = Rollout::Completed;
                }
                d
            })
            .collect(),
    }
}

/// A simulated cluster: applies plans the way the control plane and agents would.
struct World {
    svc: Service,
    tasks: Vec<TaskView>,
    instances: Vec<InstanceView>,
    notes: Notes,
    now: Millis,
    next: u32,
    events: Vec<String>,
}

impl World {
    fn new(svc: Service) -> Self {
        World {
            svc,
            tasks: vec![],
            instances: vec![],
            notes: Notes::default(),
            now: 0,
            next: 0,
            events: vec![],
        }
    }

    fn zones(&self) -> Vec<(String, String)> {
        if self.instances.is_empty() {
            (0..3).map(|i| (format!("i-{i}"), format!("zone-{i}"))).collect()
        } else {
            self.instances.iter().map(|i| (i.arn.clone(), i.zone.clone().unwrap_or_default())).collect()
        }
    }

    /// One scheduler pass, applied: launches become PENDING tasks, stops are requested.
    fn pass(&mut self) -> Plan {
        let fresh = format!("ecs-svc/{:019}", 9_000 + self.next);
        let plan = reconcile(&self.svc, &self.tasks, &self.instances, &self.notes, self.now, &fresh);
        let zones = self.zones();
        self.tasks.retain(|t| !plan.forget.contains(&t.id));
        for s in &plan.stop {
            let t = self.tasks.iter_mut().find(|t| t.id == s.task).expect("stop of a known task");
            t.stop_requested = true;
            t.cause = StopCause::Scheduler;
        }
        let primary = plan.deployments[0].id.clone();
        for l in &plan.launch {
            for _ in 0..l.count {
                self.next += 1;
                let (inst, zone) = match &l.instance {
                    Some(a) => {
                        (a.clone(), zones.iter().find(|z| z.0 == *a).map(|z| z.1.clone()).unwrap_or_default())
                    }
                    None => zones[self.next as usize % zones.len()].clone(),
                };
                let mut t = task(&format!("t{:04}", self.next), &primary, Phase::Pending);
                t.instance = Some(inst);
                t.zone = Some(zone);
                self.tasks.push(t);
            }
        }
        self.svc.deployments = plan.deployments.clone();
        self.notes = plan.notes.clone();
        self.events.extend(plan.events.clone());
        plan
    }

    /// The agents: stop what was asked, start what is pending (or fail it).
    fn agents(&mut self, fail: impl Fn(&TaskView) -> bool) {
        self.agents_starting(fail, true)
    }

    fn agents_starting(&mut self, fail: impl Fn(&TaskView) -> bool, start: bool) {
        let now = self.now;
        for t in &mut self.tasks {
            if t.phase == Phase::Stopped {
                continue;
            }
            if t.stop_requested {
                t.phase = Phase::Stopped;
            } else if t.phase == Phase::Pending && start {
                if fail(t) {
                    t.phase = Phase::Stopped;
                    t.cause = StopCause::Failed;
                } else {
                    t.phase = Phase::Running;
                    t.reached_running = true;
                    t.started_at = Some(now);
                }
            }
        }
    }

    fn live(&self) -> usize {
        self.tasks.iter().filter(|t| t.phase != Phase::Stopped).count()
    }
    fn healthy(&self) -> usize {
        self.tasks.iter().filter(|t| !t.stop_requested && t.healthy()).count()
    }
}

#[test]
fn creates_tasks_then_completes_and_reports_steady_state() {
    let mut w = World::new(service(3, &["ecs-svc/1"]));
    let p = w.pass();
    assert_eq!(p.launch, vec![Launch { count: 3, instance: None }]);
    assert_eq!(p.deployments[0].rollout, Rollout::InProgress);
    w.agents(|_| false);
    let p = w.pass();
    assert!(p.launch.is_empty() && p.stop.is_empty());
    assert_eq!((p.running, p.pending, p.desired), (3, 0, 3));
    assert_eq!(p.deployments[0].rollout, Rollout::Completed);
    assert_eq!(p.completed.as_deref(), Some("ecs-svc/1"));
    assert_eq!(
        p.events,
        vec![
            "(service web) (deployment ecs-svc/1) deployment completed.".to_string(),
            "(service web) has reached a steady state.".to_string()
        ]
    );
    // Steady state is reported once, not on every pass.
    assert!(w.pass().events.is_empty());
}

#[test]
fn a_stopped_task_is_replaced() {
    let mut w = World::new(service(2, &["ecs-svc/1"]));
    w.pass();
    w.agents(|_| false);
    w.pass();
    w.tasks[0].phase = Phase::Stopped; // docker kill: an essential container exited
    w.tasks[0].cause = StopCause::Failed;
    let p = w.pass();
    assert_eq!(p.forget, vec!["t0001".to_string()]);
    assert_eq!(p.launch, vec![Launch { count: 1, instance: None }]);
    assert_eq!(p.running, 1);
}

#[test]
fn rolling_update_respects_both_bounds() {
    // 4 old tasks; min 50 % (2 healthy), max 100 % (4 tasks): stop 2, start 2, and so on.
    let mut svc = service(4, &["new", "old"]);
    svc.min_healthy_percent = 50;
    svc.max_percent = 100;
    let mut w = World::new(svc);
    w.tasks = (0..4).map(|i| task(&format!("o{i}"), "old", Phase::Running)).collect();
    let p = w.pass();
    assert!(p.launch.is_empty(), "at maximumPercent nothing starts before something stops");
    assert_eq!(p.stop.len(), 2);
    assert_eq!(p.stop[0].reason, "Scaling activity initiated by (deployment new)");
    w.agents(|_| false);
    let p = w.pass();
    assert_eq!(p.launch, vec![Launch { count: 2, instance: None }]);
    for _ in 0..6 {
        w.agents(|_| false);
        w.pass();
    }
    assert_eq!(w.svc.deployments.len(), 1);
    assert_eq!(w.svc.deployments[0].rollout, Rollout::Completed);
    assert!(w.tasks.iter().all(|t| t.deployment == "new" && t.phase == Phase::Running));
}

#[test]
fn failing_tasks_are_throttled_with_growing_delays() {
    let mut w = World::new(service(1, &["ecs-svc/1"]));
    let mut launches_at = vec![];
    for _ in 0..200 {
        let p = w.pass();
        if !p.launch.is_empty() {
            launches_at.push(w.now);
        }
        w.agents(|_| true);
        w.now += 1_000;
    }
    let gaps: Vec<i64> = launches_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 5, "{launches_at:?}");
    assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "delays never shrink: {gaps:?}");
    assert!(*gaps.last().unwrap() >= 40_000, "{gaps:?}");
    let msg = "(service web) is unable to consistently start tasks successfully.";
    assert_eq!(w.events.iter().filter(|e| *e == msg).count(), 1);
}

#[test]
fn throttle_delays_and_breaker_thresholds() {
    let delays: Vec<i64> = (0..8).map(throttle_delay).collect();
    assert_eq!(delays, vec![0, 0, 0, 5_000, 10_000, 20_000, 40_000, 80_000]);
    assert_eq!(throttle_delay(40), MAX_THROTTLE_MS);
    for (kind, value, desired, want) in [
        ("BOUNDED_PERCENT", 50, 1, 3),
        ("BOUNDED_PERCENT", 50, 10, 5),
        ("BOUNDED_PERCENT", 50, 11, 6),
        ("BOUNDED_PERCENT", 50, 1000, 200),
        ("UNBOUNDED_PERCENT", 50, 1000, 500),
        ("UNBOUNDED_PERCENT", 50, 1, 1),
        ("COUNT", 7, 100, 7),
    ] {
        assert_eq!(breaker_threshold(kind, value, desired), want, "{kind} {value} {desired}");
    }
}

#[test]
fn circuit_breaker_fails_and_rolls_back_to_the_last_completed_deployment() {
    let mut svc = service(2, &["ecs-svc/1"]);
    svc.breaker = Some(Breaker { rollback: true, threshold: 3 });
    let mut w = World::new(svc);
    w.pass();
    w.agents(|_| false);
    w.pass();
    assert_eq!(w.notes.last_completed.as_deref(), Some("ecs-svc/1"));
    // A bad revision: every new task exits.
    w.svc.deployments[0].status = Status::Active;
    w.svc.deployments.insert(0, DeploymentState::new("ecs-svc/2", 5_000));
    let mut rolled = None;
    for _ in 0..20 {
        let p = w.pass();
        if let Some(r) = p.rollback.clone() {
            rolled = Some(r);
        }
        w.agents(|t| t.deployment == "ecs-svc/2");
    }
    let r = rolled.expect("rolled back");
    assert_eq!(r.to, "ecs-svc/1");
    assert!(w.events.contains(
        &"(service web) (deployment ecs-svc/2) deployment failed: tasks failed to start.".to_string()
    ));
    // The rollback deployment kept the old tasks, and the failed one is gone.
    assert_eq!(w.svc.deployments.len(), 1, "{:?}", w.svc.deployments);
    assert_eq!(w.svc.deployments[0].id, r.id);
    assert_eq!(w.svc.deployments[0].rollout, Rollout::Completed);
    assert_eq!(w.live(), 2);
}

#[test]
fn a_deployment_alarm_in_alarm_fails_the_deployment_and_rolls_back_when_asked() {
    for rollback in [true, false] {
        let mut w = World::new(service(2, &["ecs-svc/1"]));
        w.pass();
        w.agents(|_| false);
        w.pass();
        w.svc.deployments[0].status = Status::Active;
        w.svc.deployments.insert(0, DeploymentState::new("ecs-svc/2", 5_000));
        w.pass();
        w.agents_starting(|_| false, false);
        // Alarms that are not in ALARM change nothing.
        w.svc.alarms = Some(AlarmTrip { in_alarm: vec![], rollback });
        let p = w.pass();
        assert!(p.rollback.is_none() && p.deployments[0].rollout == Rollout::InProgress);
        w.svc.alarms = Some(AlarmTrip { in_alarm: vec!["errors".into(), "latency".into()], rollback });
        let p = w.pass();
        let failed = p.deployments.iter().find(|d| d.id == "ecs-svc/2").expect("the failed deployment");
        assert_eq!(failed.rollout, Rollout::Failed);
        assert_eq!(failed.rollout_reason, "ECS deployment failed: alarm(s) detected: errors, latency.");
        assert!(w.events.contains(
            &"(service web) (deployment ecs-svc/2) deployment failed: alarm detected.".to_string()
        ));
        match (rollback, p.rollback.clone()) {
            (true, Some(r)) => {
                assert_eq!(r.to, "ecs-svc/1");
                assert_eq!(
                    p.deployments[0].rollout_reason,
                    "ECS deployment detected triggered alarms: rolling back to deploymentId ecs-svc/1."
                );
            }
            (false, None) => assert_eq!(p.deployments[0].id, "ecs-svc/2"),
            other => panic!("rollback {rollback}: {other:?}"),
        }
        if !rollback {
            continue;
        }
        // The alarms stay in ALARM: the rollback goes on, and is not failed and rolled back
        // again on every pass.
        let rollback_id = p.deployments[0].id.clone();
        let before = w.events.len();
        for _ in 0..3 {
            let p = w.pass();
            assert!(p.rollback.is_none(), "rolled back again: {:?}", p.rollback);
            assert_eq!(p.deployments[0].id, rollback_id);
            assert_eq!(p.deployments[0].rollout, Rollout::InProgress);
        }
        assert!(
            !w.events[before..].iter().any(|e| e.contains("deployment failed")),
            "{:?}",
            &w.events[before..]
        );
    }
}

#[test]
fn a_requested_rollback_returns_to_the_last_completed_deployment_without_a_breaker() {
    let mut w = World::new(service(2, &["ecs-svc/1"]));
    w.pass();
    w.agents(|_| false);
    w.pass();
    assert_eq!(w.notes.last_completed.as_deref(), Some("ecs-svc/1"));
    // A new deployment whose tasks never start (no breaker configured).
    w.svc.deployments[0].status = Status::Active;
    w.svc.deployments.insert(0, DeploymentState::new("ecs-svc/2", 5_000));
    w.pass();
    w.agents_starting(|_| false, false);
    assert_eq!(w.svc.deployments[0].rollout, Rollout::InProgress);
    // StopServiceDeployment: the control plane passes the request for one pass.
    w.svc.rollback_requested = true;
    let p = w.pass();
    w.svc.rollback_requested = false;
    let r = p.rollback.clone().expect("rolled back");
    assert_eq!(r.to, "ecs-svc/1");
    assert_eq!(p.deployments[0].id, r.id);
    assert_eq!(
        p.deployments[0].rollout_reason,
        format!("ECS deployment rollback requested: rolling back to deploymentId ecs-svc/1.")
    );
    let failed =
        p.deployments.iter().find(|d| d.id == "ecs-svc/2").expect("failed one kept while its tasks live");
    assert_eq!((failed.rollout, failed.status), (Rollout::Failed, Status::Active));
    assert_eq!(failed.rollout_reason, "ECS deployment stopped: rollback requested.");
    assert!(w.events.contains(
        &"(service web) (deployment ecs-svc/2) deployment stopped: rollback requested.".to_string()
    ));
    for _ in 0..10 {
        w.agents(|_| false);
        w.pass();
    }
    assert_eq!(w.svc.deployments.len(), 1, "{:?}", w.svc.deployments);
    assert_eq!(
        (w.svc.deployments[0].id.as_str(), w.svc.deployments[0].rollout),
        (r.id.as_str(), Rollout::Completed)
    );
    assert_eq!(w.live(), 2);
    // A request for a deployment that is not IN_PROGRESS changes nothing.
    w.svc.rollback_requested = true;
    let p = w.pass();
    assert!(p.rollback.is_none() && p.deployments[0].rollout == Rollout::Completed);
}

#[test]
fn unhealthy_tasks_are_replaced_after_the_grace_period() {
    let mut svc = service(1, &["ecs-svc/1"]);
    svc.grace_ms = 10_000;
    let mut w = World::new(svc);
    w.pass();
    w.agents(|_| false);
    w.tasks[0].health = Health::Unhealthy;
    w.tasks[0].health_checked = true;
    let p = w.pass();
    assert!(p.stop.is_empty());
    assert_eq!(p.wake_at, Some(10_000));
    w.now = 10_000;
    let p = w.pass();
    assert_eq!(p.stop[0].reason, "Task failed container health checks");
    assert!(p.events.contains(&"(service web) (task t0001) failed container health checks.".to_string()));
}

const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/0123456789abcdef";

#[test]
fn behind_a_load_balancer_a_rolling_update_waits_for_healthy_targets() {
    // 2 old tasks, healthy in the target group; min 100 %, max 200 %.
    let mut w = World::new(service(2, &["new", "old"]));
    w.tasks = (0..2).map(|i| task(&format!("o{i}"), "old", Phase::Running)).collect();
    for t in &mut w.tasks {
        t.lb = LbHealth::Healthy;
    }
    let p = w.pass();
    assert_eq!(p.launch, vec![Launch { count: 2, instance: None }]);
    assert!(p.stop.is_empty());
    // The new tasks run, but their targets are still `initial`: nothing old stops, nothing
    // completes, however long it takes.
    w.agents(|_| false);
    for t in w.tasks.iter_mut().filter(|t| t.deployment == "new") {
        t.lb = LbHealth::Pending;
    }
    for _ in 0..3 {
        w.now += 60_000;
        let p = w.pass();
        assert!(p.stop.is_empty() && p.launch.is_empty(), "{p:?}");
        assert_eq!(p.deployments[0].rollout, Rollout::InProgress);
        assert_eq!(p.deployments.len(), 2);
    }
    // One target turns healthy: one old task may go.
    w.tasks[2].lb = LbHealth::Healthy;
    let p = w.pass();
    assert_eq!(p.stop.len(), 1);
    assert!(p.stop[0].task.starts_with('o'));
    w.agents(|_| false);
    w.tasks[3].lb = LbHealth::Healthy;
    for _ in 0..3 {
        w.agents(|_| false);
        w.pass();
    }
    assert_eq!(w.svc.deployments.len(), 1);
    assert_eq!(w.svc.deployments[0].rollout, Rollout::Completed);
    assert!(w.tasks.iter().all(|t| t.deployment == "new"));
}

#[test]
fn a_task_whose_target_turns_unhealthy_is_replaced_after_the_grace_period() {
    let mut svc = service(1, &["ecs-svc/1"]);
    svc.grace_ms = 30_000;
    let mut w = World::new(svc);
    w.now = 1_000;
    w.pass();
    w.agents(|_| false);
    let unhealthy = LbHealth::Unhealthy {
        target_group: TG.into(),
        port: 8080,
        reason: "Health checks failed with these codes: [503]".into(),
    };
    w.tasks[0].lb = unhealthy.clone();
    w.now = 5_000;
    let p = w.pass();
    assert!(p.stop.is_empty(), "ignored within the grace period");
    assert_eq!(p.wake_at, Some(31_000));
    // A target still `initial` past the grace period is not replaced for it.
    w.tasks[0].lb = LbHealth::Pending;
    w.now = 40_000;
    assert!(w.pass().stop.is_empty());
    w.tasks[0].lb = unhealthy;
    let p = w.pass();
    assert_eq!(p.stop.len(), 1);
    assert_eq!(p.stop[0].reason, format!("Task failed ELB health checks in (target-group {TG})"));
    assert_eq!(
        p.events,
        vec![format!(
            "(service web) (task t0001) (port 8080) is unhealthy in (target-group {TG}) due to (reason Health checks failed with these codes: [503])."
        )]
    );
    // Its replacement starts in the same pass (minimumHealthyPercent has nothing to keep).
    assert_eq!(p.launch, vec![Launch { count: 1, instance: None }]);
}

#[test]
fn draining_instances_are_replaced_before_their_tasks_stop() {
    let mut w = World::new(service(2, &["ecs-svc/1"]));
    w.pass();
    w.agents(|_| false);
    w.pass();
    w.tasks[0].instance_draining = true;
    let p = w.pass();
    assert_eq!(p.launch, vec![Launch { count: 1, instance: None }]);
    assert!(p.stop.is_empty(), "minimumHealthyPercent 100: the replacement comes first");
    w.agents(|_| false);
    let p = w.pass();
    assert_eq!(p.stop.len(), 1);
    assert_eq!(p.stop[0].task, "t0001");
}

#[test]
fn protected_tasks_survive_scale_in_until_protection_expires() {
    let mut w = World::new(service(3, &["ecs-svc/1"]));
    w.pass();
    w.agents(|_| false);
    w.pass();
    for t in &mut w.tasks {
        t.protected_until = Some(60_000);
    }
    w.tasks[2].protected_until = None;
    w.svc.desired = 1;
    let p = w.pass();
    assert_eq!(p.stop.iter().map(|s| s.task.as_str()).collect::<Vec<_>>(), vec!["t0003"]);
    assert_eq!(p.wake_at, Some(60_000));
    w.agents(|_| false);
    w.now = 60_000;
    let p = w.pass();
    assert_eq!(p.stop.len(), 1);
}

#[test]
fn scale_in_order_follows_ecs() {
    // Zone a: i-1 has 2 tasks, i-2 has 1; zone b: i-3 has 1.
    let mk = |id: &str, inst: &str, zone: &str, phase: Phase, health: Health| {
        let mut t = task(id, "d", phase);
        t.instance = Some(inst.into());
        t.zone = Some(zone.into());
        t.health = health;
        t
    };
    let all = [
        mk("t1", "i-1", "a", Phase::Running, Health::Unknown),
        mk("t2", "i-1", "a", Phase::Running, Health::Unknown),
        mk("t3", "i-2", "a", Phase::Running, Health::Unknown),
        mk("t4", "i-3", "b", Phase::Running, Health::Unknown),
        mk("t5", "i-3", "b", Phase::Pending, Health::Unknown),
        mk("t6", "i-2", "a", Phase::Running, Health::Unhealthy),
    ];
    let refs: Vec<&TaskView> = all.iter().collect();
    let order: Vec<&str> = scale_in_order(&refs, &refs).iter().map(|t| t.id.as_str()).collect();
    // Pending first, then unhealthy, then zone a (most tasks), on i-1 (most), and so on.
    assert_eq!(order, vec!["t5", "t6", "t1", "t2", "t3", "t4"]);
}

#[test]
fn daemon_runs_one_task_per_eligible_instance_and_follows_them() {
    let mut svc = service(0, &["ecs-svc/1"]);
    svc.daemon = true;
    svc.min_healthy_percent = 0;
    svc.max_percent = 100;
    let mut w = World::new(svc);
    w.instances = (0..3)
        .map(|i| InstanceView { arn: format!("i-{i}"), zone: Some("a".into()), eligible: i != 1 })
        .collect();
    let p = w.pass();
    assert_eq!(p.desired, 2);
    let on: Vec<_> = p.launch.iter().map(|l| l.instance.clone().unwrap()).collect();
    assert_eq!(on, vec!["i-0".to_string(), "i-2".to_string()]);
    w.agents(|_| false);
    // i-2 drains (no longer eligible), i-1 becomes eligible.
    w.instances[2].eligible = false;
    w.instances[1].eligible = true;
    let p = w.pass();
    assert_eq!(p.launch, vec![Launch { count: 1, instance: Some("i-1".into()) }]);
    assert_eq!(p.stop.len(), 1);
}

#[test]
fn deleting_the_service_stops_everything_then_it_is_inactive() {
    let mut w = World::new(service(2, &["ecs-svc/1"]));
    w.pass();
    w.agents(|_| false);
    w.svc.draining = true;
    let p = w.pass();
    assert_eq!(p.stop.len(), 2);
    assert!(!p.inactive);
    w.agents(|_| false);
    assert!(w.pass().inactive);
}

fn config() -> impl Strategy<Value = (u32, u32, u32)> {
    (0u32..12, prop::sample::select(vec![0u32, 50, 100]), prop::sample::select(vec![100u32, 150, 200]))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A deployment from any starting mix of old and new tasks: launches never take the service
    /// past maximumPercent, stops never take healthy tasks below minimumHealthyPercent, and the
    /// service converges to desiredCount tasks of the new deployment.
    #[test]
    fn deployments_stay_within_bounds_and_converge(
        (desired, min, max) in config(),
        old in 0usize..14,
        new in 0usize..6,
        pending_mask in any::<u32>(),
        slow_mask in any::<u64>(),
    ) {
        let mut svc = service(desired, &["new", "old"]);
        svc.min_healthy_percent = min;
        svc.max_percent = max;
        let mut w = World::new(svc);
        for i in 0..old + new {
            let dep = if i < old { "old" } else { "new" };
            let phase = if pending_mask >> (i % 32) & 1 == 1 { Phase::Pending } else { Phase::Running };
            let mut t = task(&format!("s{i:03}"), dep, phase);
            t.instance = Some(format!("i-{}", i % 3));
            t.zone = Some(format!("zone-{}", i % 3));
            w.tasks.push(t);
        }
        let max_total = (desired * max / 100) as usize;
        let min_healthy = (desired * min).div_ceil(100) as usize;
        for step in 0..60 {
            let live_before = w.live();
            let healthy_before = w.healthy();
            let plan = w.pass();
            if !plan.launch.is_empty() {
                prop_assert!(w.live() <= max_total, "step {step}: {} live > {max_total}", w.live());
            }
            prop_assert!(w.live() <= live_before.max(max_total));
            prop_assert!(
                w.healthy() >= min_healthy.min(healthy_before),
                "step {step}: healthy {} < min {min_healthy} (was {healthy_before})", w.healthy()
            );
            // Agents are sometimes slow: pending tasks may take another pass to start.
            let slow = slow_mask >> (step % 64) & 1 == 1 && step < 40;
            w.agents_starting(|_| false, !slow);
        }
        let progress_possible = max_total > desired as usize || min_healthy < desired as usize;
        if progress_possible {
            prop_assert_eq!(w.svc.deployments.len(), 1, "{:?}", w.svc.deployments);
            prop_assert_eq!(w.live(), desired as usize);
            prop_assert!(w.tasks.iter().all(|t| t.deployment == "new" && t.phase == Phase::Running));
            prop_assert_eq!(w.svc.deployments[0].rollout, Rollout::Completed);
        }
    }

    /// DAEMON: from any starting state, exactly one task of the PRIMARY deployment on each
    /// eligible instance and none elsewhere.
    #[test]
    fn daemon_converges_to_one_task_per_eligible_instance(
        eligible in prop::collection::vec(any::<bool>(), 1..8),
        existing in prop::collection::vec((0usize..8, any::<bool>()), 0..12),
    ) {
        let mut svc = service(0, &["new", "old"]);
        svc.daemon = true;
        svc.min_healthy_percent = 0;
        svc.max_percent = 100;
        let mut w = World::new(svc);
        w.instances = eligible.iter().enumerate()
            .map(|(i, e)| InstanceView { arn: format!("i-{i}"), zone: Some(format!("z{}", i % 2)), eligible: *e })
            .collect();
        for (n, (i, is_new)) in existing.iter().enumerate() {
            let mut t = task(&format!("s{n:03}"), if *is_new { "new" } else { "old" }, Phase::Running);
            t.instance = Some(format!("i-{}", i % eligible.len()));
            w.tasks.push(t);
        }
        for _ in 0..20 {
            w.pass();
            w.agents(|_| false);
        }
        w.pass();
        for (i, e) in eligible.iter().enumerate() {
            let here = w.tasks.iter()
                .filter(|t| t.phase != Phase::Stopped && t.instance.as_deref() == Some(&format!("i-{i}")))
                .collect::<Vec<_>>();
            let want = usize::from(*e);
            prop_assert_eq!(here.len(), want, "instance i-{}: {:?}", i, here);
            prop_assert!(here.iter().all(|t| t.deployment == "new"));
        }
    }

    /// The same inputs always give the same plan.
    #[test]
    fn plans_replay(desired in 0u32..10, old in 0usize..10) {
        let svc = service(desired, &["new", "old"]);
        let tasks: Vec<TaskView> = (0..old).map(|i| task(&format!("o{i}"), "old", Phase::Running)).collect();
        let a = reconcile(&svc, &tasks, &[], &Notes::default(), 5, "x");
        let b = reconcile(&svc, &tasks, &[], &Notes::default(), 5, "x");
        prop_assert_eq!(a, b);
    }
}

fn set(id: &str, status: SetStatus, desired: u32) -> TaskSetState {
    TaskSetState { id: id.into(), status, desired, running: 0, pending: 0, steady: false }
}

/// Applies a task-set plan the way the control plane and agents would.
fn apply_sets(tasks: &mut Vec<TaskView>, plan: &TaskSetPlan, next: &mut u32) {
    tasks.retain(|t| !plan.forget.contains(&t.id));
    for s in &plan.stop {
        let t = tasks.iter_mut().find(|t| t.id == s.task).unwrap();
        t.stop_requested = true;
        t.cause = StopCause::Scheduler;
    }
    for (set, n) in &plan.launch {
        for _ in 0..*n {
            *next += 1;
            tasks.push(task(&format!("t{next:03}"), set, Phase::Pending));
        }
    }
    for t in tasks.iter_mut() {
        if t.stop_requested {
            t.phase = Phase::Stopped;
        } else if t.phase == Phase::Pending {
            t.phase = Phase::Running;
            t.reached_running = true;
            t.started_at = Some(0);
        }
    }
}

#[test]
fn computed_desired_count_rounds_up() {
    for (desired, scale, want) in [(4, 50.0, 2), (3, 50.0, 2), (10, 100.0, 10), (10, 0.0, 0), (1, 0.1, 1)] {
        assert_eq!(computed_desired(desired, scale), want, "{desired} x {scale}%");
    }
}

#[test]
fn blue_green_switch_with_task_sets() {
    let (mut tasks, mut next) = (Vec::new(), 0);
    // Blue at 100 %.
    let mut sets = vec![set("blue", SetStatus::Primary, 4)];
    for _ in 0..2 {
        let p = reconcile_task_sets("web", &sets, &tasks, &Notes::default(), 0, false);
        apply_sets(&mut tasks, &p, &mut next);
        sets = p.sets;
    }
    assert!(sets[0].steady && sets[0].running == 4);
    // Green comes up beside it at 100 %, becomes primary, blue is deleted (DRAINING).
    sets.push(set("green", SetStatus::Active, 4));
    let p = reconcile_task_sets("web", &sets, &tasks, &Notes::default(), 0, false);
    assert_eq!(p.launch, vec![("green".to_string(), 4)]);
    assert!(p.stop.is_empty(), "blue keeps running while green starts");
    apply_sets(&mut tasks, &p, &mut next);
    sets = p.sets;
    sets[0].status = SetStatus::Draining;
    sets[1].status = SetStatus::Primary;
    for _ in 0..3 {
        let p = reconcile_task_sets("web", &sets, &tasks, &Notes::default(), 0, false);
        apply_sets(&mut tasks, &p, &mut next);
        sets = p.sets;
    }
    assert_eq!(sets.len(), 1, "the drained set is gone: {sets:?}");
    assert_eq!(sets[0].id, "green");
    let live: Vec<_> = tasks.iter().filter(|t| t.phase != Phase::Stopped).collect();
    assert_eq!(live.len(), 4);
    assert!(live.iter().all(|t| t.deployment == "green"));
}
