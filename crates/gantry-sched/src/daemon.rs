//! ECS Managed Daemons' rules, pure: one daemon task on every ACTIVE container instance of the
//! daemon's capacity providers, a new revision rolled out a few instances at a time, and the
//! deployment's outcome.
//!
//! [`plan`] takes the daemon's target revision and deployment settings, every instance with the
//! daemon's tasks on it ([`Slot`]), and the failures of the target revision so far, and returns
//! what to launch and stop and the deployment's new state:
//! - an instance without a task of the daemon gets one of the target revision at once (a new
//!   instance, or one whose daemon task stopped: it is replaced);
//! - an instance running an older revision is replaced (its old task stopped, the new one
//!   started once it is gone) at most `ceil(drainPercent% of the instances)` (at least one) at a
//!   time, counting instances already being replaced or getting their task;
//! - extra tasks of the daemon on one instance are stopped;
//! - the circuit breaker trips once the target revision's failed tasks reach its threshold
//!   (half the instances, between 3 and 200), and so does any of the deployment's alarms in
//!   ALARM; a deployment that replaced an earlier revision
//!   then rolls back to it, a first deployment is STOPPED;
//! - the deployment succeeds (or its rollback does) once every instance runs exactly one
//!   RUNNING task of the target revision and nothing older, and the bake time has passed since.

/// A daemon task on an instance, as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonTask {
    pub arn: String,
    /// The daemon revision (ID) it was started for.
    pub revision: String,
    /// RUNNING (not merely placed or pending).
    pub running: bool,
    /// Asked to stop already (its desired status is STOPPED).
    pub stopping: bool,
}

/// An ACTIVE container instance of the daemon's capacity providers and the daemon's tasks on it
/// that are not STOPPED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub instance: String,
    pub tasks: Vec<DaemonTask>,
}

/// Where the deployment stands before the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    InProgress,
    RollingBack,
    /// Finished (successful, stopped, rolled back): only the one-task-per-instance rule runs.
    Done,
}

/// What the pass knows of the daemon.
#[derive(Debug, Clone)]
pub struct Daemon<'a> {
    /// The revision every instance should run.
    pub target: &'a str,
    /// The revision a failed deployment returns to, if it replaced one.
    pub previous: Option<&'a str>,
    pub phase: Phase,
    pub drain_percent: f64,
    /// The target revision's tasks that failed (stopped on their own) so far.
    pub failures: u32,
    /// Milliseconds: now, and when the deployment first found every instance converged.
    pub now_ms: i64,
    pub converged_since_ms: Option<i64>,
    pub bake_ms: i64,
    /// The deployment's alarms (deploymentConfiguration.alarms, enabled) now in ALARM.
    pub in_alarm: &'a [String],
}

/// What the deployment becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Unchanged, or (from PENDING) IN_PROGRESS.
    InProgress,
    Successful,
    /// The circuit breaker tripped on a first deployment: nothing to return to.
    Stopped {
        reason: String,
    },
    /// The circuit breaker tripped: return to `previous`.
    RollBack {
        reason: String,
    },
    RollbackSuccessful,
    /// Nothing to decide (the deployment had finished).
    Unchanged,
}

/// The pass's decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Instances to start a target-revision task on.
    pub launch: Vec<String>,
    /// Tasks to stop (ARNs).
    pub stop: Vec<String>,
    pub outcome: Outcome,
    /// When every instance converged (kept for the bake time), if it has.
    pub converged_since_ms: Option<i64>,
    pub threshold: u32,
    /// Instances running the target revision, without any task of the daemon, and being
    /// replaced (DescribeDaemonDeployments' counts).
    pub running: usize,
    pub without: usize,
    pub draining: usize,
}

/// The circuit breaker's threshold over `instances` instances: half of them, between 3 and 200.
pub fn threshold(instances: usize) -> u32 {
    (instances.div_ceil(2) as u32).clamp(3, 200)
}

/// How many instances may be replaced at once.
pub fn batch(instances: usize, drain_percent: f64) -> usize {
    let n = (instances as f64 * drain_percent.clamp(0.0, 100.0) / 100.0).ceil() as usize;
    n.max(1)
}

/// One pass's decisions (see the module's documentation).
pub fn plan(d: &Daemon<'_>, slots: &[Slot]) -> Plan {
    let threshold = threshold(slots.len());
    let mut launch = Vec::new();
    let mut stop = Vec::new();
    let (mut running, mut without, mut draining) = (0, 0, 0);
    let mut converged = true;
    // Instances whose old task is being replaced: those counted against the batch.
    let mut replacing = 0;
    let mut candidates = Vec::new();
    for s in slots {
        let live: Vec<&DaemonTask> = s.tasks.iter().filter(|t| !t.stopping).collect();
        let current: Vec<&DaemonTask> = live.iter().copied().filter(|t| t.revision == d.target).collect();
        let old: Vec<&DaemonTask> = live.iter().copied().filter(|t| t.revision != d.target).collect();
        let old_stopping = s.tasks.iter().any(|t| t.stopping && t.revision != d.target);
        if let Some((keep, extra)) = current.split_first() {
            stop.extend(extra.iter().map(|t| t.arn.clone()));
            // The new task is there: what is older goes.
            stop.extend(old.iter().map(|t| t.arn.clone()));
            if keep.running && old.is_empty() && !old_stopping {
                running += 1;
            } else {
                converged = false;
                replacing += 1;
                draining += 1;
            }
        } else if old.is_empty() {
            converged = false;
            if old_stopping {
                // Its old task is on its way out: the new one starts once it is gone.
                replacing += 1;
                draining += 1;
            } else {
                without += 1;
                launch.push(s.instance.clone());
            }
        } else {
            converged = false;
            candidates.push(old);
        }
    }
    // An instance getting its first task of the target revision counts too.
    let room = batch(slots.len(), d.drain_percent).saturating_sub(replacing + launch.len());
    for old in candidates.iter().take(room) {
        draining += 1;
        stop.extend(old.iter().map(|t| t.arn.clone()));
    }
    let converged_since_ms = converged.then(|| d.converged_since_ms.unwrap_or(d.now_ms));
    let baked = converged_since_ms.is_some_and(|t| d.now_ms - t >= d.bake_ms);
    let outcome = match d.phase {
        Phase::Done => Outcome::Unchanged,
        Phase::Pending | Phase::InProgress if d.failures >= threshold || !d.in_alarm.is_empty() => {
            let reason = if d.in_alarm.is_empty() {
                format!(
                    "The deployment's circuit breaker tripped: {} daemon tasks failed (threshold {threshold}).",
                    d.failures
                )
            } else {
                format!("The deployment's alarms went into ALARM: {}.", d.in_alarm.join(", "))
            };
            match d.previous {
                Some(_) => Outcome::RollBack { reason },
                None => Outcome::Stopped { reason },
            }
        }
        Phase::Pending | Phase::InProgress if baked => Outcome::Successful,
        Phase::RollingBack if baked => Outcome::RollbackSuccessful,
        _ => Outcome::InProgress,
    };
    Plan { launch, stop, outcome, converged_since_ms, threshold, running, without, draining }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(arn: &str, rev: &str, running: bool) -> DaemonTask {
        DaemonTask { arn: arn.into(), revision: rev.into(), running, stopping: false }
    }

    fn slot(i: &str, tasks: Vec<DaemonTask>) -> Slot {
        Slot { instance: i.into(), tasks }
    }

    fn daemon(phase: Phase) -> Daemon<'static> {
        Daemon {
            target: "r2",
            previous: Some("r1"),
            phase,
            drain_percent: 25.0,
            failures: 0,
            now_ms: 1_000,
            converged_since_ms: None,
            bake_ms: 0,
            in_alarm: &[],
        }
    }

    #[test]
    fn every_instance_without_a_task_gets_one_at_once() {
        let slots = vec![slot("a", vec![]), slot("b", vec![]), slot("c", vec![task("t", "r2", true)])];
        let p = plan(&daemon(Phase::Pending), &slots);
        assert_eq!(p.launch, vec!["a", "b"]);
        assert!(p.stop.is_empty());
        assert_eq!((p.running, p.without), (1, 2));
        assert_eq!(p.outcome, Outcome::InProgress);
    }

    #[test]
    fn old_revisions_are_replaced_a_batch_at_a_time() {
        // Eight instances at 25 %: two at a time.
        let slots: Vec<Slot> =
            (0..8).map(|i| slot(&format!("i{i}"), vec![task(&format!("old{i}"), "r1", true)])).collect();
        let p = plan(&daemon(Phase::InProgress), &slots);
        assert_eq!(p.stop, vec!["old0", "old1"]);
        assert!(p.launch.is_empty(), "the new task starts once the old one is gone");

        // One being replaced (old task stopping), one with its new task pending: no room left.
        let mut slots = slots;
        slots[0].tasks[0].stopping = true;
        slots[1].tasks = vec![task("new1", "r2", false)];
        let p = plan(&daemon(Phase::InProgress), &slots);
        assert!(p.stop.is_empty(), "{:?}", p.stop);
        assert_eq!(p.draining, 2);

        // The old task gone: the instance gets the new revision, and one more old one goes.
        slots[0].tasks.clear();
        slots[1].tasks[0].running = true;
        let p = plan(&daemon(Phase::InProgress), &slots);
        assert_eq!(p.launch, vec!["i0"]);
        assert_eq!(p.stop, vec!["old2"]);
    }

    #[test]
    fn succeeds_when_every_instance_runs_the_target_after_the_bake_time() {
        let slots = vec![slot("a", vec![task("t1", "r2", true)]), slot("b", vec![task("t2", "r2", true)])];
        let mut d = daemon(Phase::InProgress);
        d.bake_ms = 60_000;
        let p = plan(&d, &slots);
        assert_eq!((p.outcome.clone(), p.converged_since_ms), (Outcome::InProgress, Some(1_000)));
        d.converged_since_ms = p.converged_since_ms;
        d.now_ms = 61_000;
        assert_eq!(plan(&d, &slots).outcome, Outcome::Successful);
        // No instances at all: nothing to wait for.
        assert_eq!(plan(&daemon(Phase::Pending), &[]).outcome, Outcome::Successful);
    }

    #[test]
    fn extra_and_older_tasks_beside_the_new_one_are_stopped() {
        let slots =
            vec![slot("a", vec![task("n1", "r2", true), task("n2", "r2", true), task("o", "r1", true)])];
        let p = plan(&daemon(Phase::InProgress), &slots);
        assert_eq!(p.stop, vec!["n2", "o"]);
        assert_eq!(p.outcome, Outcome::InProgress);
    }

    #[test]
    fn the_circuit_breaker_rolls_back_or_stops() {
        let slots = vec![slot("a", vec![])];
        let mut d = daemon(Phase::InProgress);
        d.failures = 2;
        assert_eq!(plan(&d, &slots).outcome, Outcome::InProgress, "below the threshold of 3");
        d.failures = 3;
        assert!(matches!(plan(&d, &slots).outcome, Outcome::RollBack { .. }));
        d.previous = None;
        assert!(matches!(plan(&d, &slots).outcome, Outcome::Stopped { .. }));
        assert_eq!(threshold(100), 50);
        assert_eq!(threshold(1000), 200);
    }

    #[test]
    fn an_alarm_in_alarm_fails_the_deployment_like_the_circuit_breaker() {
        let slots = vec![slot("a", vec![task("t", "r2", true)])];
        let alarms = vec!["cpu-high".to_string()];
        let mut d = daemon(Phase::InProgress);
        d.in_alarm = &alarms;
        match plan(&d, &slots).outcome {
            Outcome::RollBack { reason } => assert!(reason.contains("cpu-high"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // A finished deployment is not failed afterwards.
        d.phase = Phase::Done;
        assert_eq!(plan(&d, &slots).outcome, Outcome::Unchanged);
    }

    #[test]
    fn a_rollback_succeeds_once_converged() {
        let slots = vec![slot("a", vec![task("t", "r2", true)])];
        assert_eq!(plan(&daemon(Phase::RollingBack), &slots).outcome, Outcome::RollbackSuccessful);
        assert_eq!(plan(&daemon(Phase::Done), &slots).outcome, Outcome::Unchanged);
    }

    #[test]
    fn batches_are_at_least_one_instance() {
        assert_eq!(batch(10, 0.0), 1);
        assert_eq!(batch(10, 25.0), 3);
        assert_eq!(batch(3, 100.0), 3);
    }
}
