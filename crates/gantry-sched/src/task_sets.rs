//! Services with the EXTERNAL deployment controller: an outside controller (a blue/green deploy
//! tool) shapes the service with task sets, and the scheduler keeps each task set at its
//! computed desired count (the service's desired count times the set's scale, rounded up). No
//! rolling bounds apply between sets; shifting traffic and scale between them is the
//! controller's job. A DRAINING set (DeleteTaskSet) goes to zero and then disappears.

use crate::{Notes, Phase, Stop, StopCause, TaskView, earliest, scale_in_order, throttle_delay};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetStatus {
    Primary,
    Active,
    Draining,
}

/// A task set as the scheduler tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSetState {
    pub id: String,
    pub status: SetStatus,
    /// computedDesiredCount.
    pub desired: u32,
    pub running: u32,
    pub pending: u32,
    /// STEADY_STATE (true) or STABILIZING.
    pub steady: bool,
}

/// ECS's computedDesiredCount: the service's desired count times the scale percent, rounded up.
pub fn computed_desired(service_desired: u32, scale_percent: f64) -> u32 {
    let v = f64::from(service_desired) * scale_percent.clamp(0.0, 100.0) / 100.0;
    v.ceil() as u32
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskSetPlan {
    /// (task set ID, how many tasks to launch for it).
    pub launch: Vec<(String, u32)>,
    pub stop: Vec<Stop>,
    pub forget: Vec<String>,
    /// The sets after this pass; DRAINING sets with no task left are gone.
    pub sets: Vec<TaskSetState>,
    pub running: u32,
    pub pending: u32,
    pub notes: Notes,
    pub events: Vec<String>,
    pub wake_at: Option<i64>,
}

/// One pass over an EXTERNAL service's task sets. `draining`: the service was deleted.
pub fn reconcile_task_sets(
    name: &str,
    sets: &[TaskSetState],
    tasks: &[TaskView],
    notes: &Notes,
    now: i64,
    draining: bool,
) -> TaskSetPlan {
    let mut notes = notes.clone();
    let mut events = Vec::new();
    let mut forget = Vec::new();
    let mut wake_at = None;
    for t in tasks.iter().filter(|t| t.phase == Phase::Stopped) {
        forget.push(t.id.clone());
        if t.cause == StopCause::Failed && !t.reached_running {
            notes.start_failures += 1;
            notes.last_start_failure = now;
            notes.launch_not_before = now + throttle_delay(notes.start_failures);
            if notes.start_failures == 3 {
                events.push(format!("(service {name}) is unable to consistently start tasks successfully."));
            }
        }
    }
    if notes.start_failures > 0
        && tasks
            .iter()
            .any(|t| t.phase == Phase::Running && t.started_at.is_some_and(|s| s >= notes.last_start_failure))
    {
        notes.start_failures = 0;
        notes.launch_not_before = 0;
    }
    let throttled = now < notes.launch_not_before;
    if throttled {
        wake_at = earliest(wake_at, notes.launch_not_before);
    }
    let active: Vec<&TaskView> =
        tasks.iter().filter(|t| t.phase != Phase::Stopped && !t.stop_requested).collect();
    let mut launch = Vec::new();
    let mut stopping: Vec<&TaskView> = Vec::new();
    // Tasks of no set (a set deleted outright) go.
    for t in &active {
        if !sets.iter().any(|s| s.id == t.deployment) {
            stopping.push(t);
        }
    }
    let mut out_sets = Vec::new();
    for s in sets {
        let desired = if draining || s.status == SetStatus::Draining { 0 } else { s.desired };
        let mine: Vec<&TaskView> = active.iter().copied().filter(|t| t.deployment == s.id).collect();
        let keep: Vec<&TaskView> = mine.iter().copied().filter(|t| !t.instance_draining).collect();
        let want = desired.saturating_sub(keep.len() as u32);
        if want > 0 && !throttled {
            launch.push((s.id.clone(), want));
        }
        // Tasks on draining instances go once their replacements run.
        let healthy_keep = keep.iter().filter(|t| t.healthy()).count() as u32;
        let draining_here: Vec<&TaskView> = mine.iter().copied().filter(|t| t.instance_draining).collect();
        let replaced = healthy_keep >= desired;
        for t in draining_here {
            if replaced || !t.healthy() {
                stopping.push(t);
            }
        }
        let excess = (keep.len() as u32).saturating_sub(desired);
        let mut taken = 0;
        for t in scale_in_order(&keep, &active) {
            if taken == excess {
                break;
            }
            if t.protected_until.is_some_and(|p| p > now) && !draining && s.status != SetStatus::Draining {
                wake_at = earliest(wake_at, t.protected_until.unwrap_or(now));
                continue;
            }
            stopping.push(t);
            taken += 1;
        }
        let live_mine = tasks.iter().filter(|t| t.phase != Phase::Stopped && t.deployment == s.id);
        let running = live_mine.clone().filter(|t| t.phase == Phase::Running).count() as u32;
        let pending = live_mine.clone().filter(|t| t.phase == Phase::Pending).count() as u32;
        let any_live = live_mine.count() > 0;
        if (draining || s.status == SetStatus::Draining) && !any_live {
            continue;
        }
        let steady =
            running == desired && pending == 0 && want == 0 && excess == 0 && mine.len() == keep.len();
        if steady && !s.steady && desired > 0 {
            events.push(format!("(service {name}, taskSet {}) has reached a steady state.", s.id));
        }
        out_sets.push(TaskSetState { id: s.id.clone(), status: s.status, desired, running, pending, steady });
    }
    let mut stop = Vec::new();
    if !stopping.is_empty() {
        let ids: Vec<String> = stopping.iter().map(|t| format!("(task {})", t.id)).collect();
        let reason = if draining { "Service was deleted" } else { "Scaling activity initiated by (service)" };
        for t in &stopping {
            stop.push(Stop { task: t.id.clone(), reason: reason.to_string() });
        }
        events.push(format!("(service {name}) has stopped {} running tasks: {}.", ids.len(), ids.join(" ")));
    }
    let live = tasks.iter().filter(|t| t.phase != Phase::Stopped);
    let running = live.clone().filter(|t| t.phase == Phase::Running).count() as u32;
    let pending = live.filter(|t| t.phase == Phase::Pending).count() as u32;
    TaskSetPlan { launch, stop, forget, sets: out_sets, running, pending, notes, events, wake_at }
}
