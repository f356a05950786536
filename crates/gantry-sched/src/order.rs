//! The order in which the scheduler stops tasks (scale-in, deployments, drains), as ECS documents
//! it: tasks that are not RUNNING yet go first, then unhealthy ones; then, to keep the service
//! balanced, a task from the Availability Zone with the most of the service's tasks, and within
//! it from the container instance with the most. Remaining ties go by task ID, so the order is
//! deterministic.

use crate::{Health, Phase, TaskView};
use std::collections::HashMap;

/// `candidates` in the order they should be stopped. `all` is every task of the service still
/// wanted (candidates included): the counts per zone and instance come from it, and fall as
/// candidates are taken.
pub fn scale_in_order<'a>(candidates: &[&'a TaskView], all: &[&TaskView]) -> Vec<&'a TaskView> {
    let mut zones: HashMap<&str, usize> = HashMap::new();
    let mut hosts: HashMap<&str, usize> = HashMap::new();
    for t in all {
        *zones.entry(t.zone.as_deref().unwrap_or_default()).or_default() += 1;
        *hosts.entry(t.instance.as_deref().unwrap_or_default()).or_default() += 1;
    }
    let mut left: Vec<&'a TaskView> = candidates.to_vec();
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let rank = |t: &TaskView| {
            let zone = zones.get(t.zone.as_deref().unwrap_or_default()).copied().unwrap_or(0);
            let host = hosts.get(t.instance.as_deref().unwrap_or_default()).copied().unwrap_or(0);
            (
                t.phase == Phase::Running,
                t.health != Health::Unhealthy,
                std::cmp::Reverse(zone),
                std::cmp::Reverse(host),
            )
        };
        let best = (0..left.len())
            .min_by(|&a, &b| rank(left[a]).cmp(&rank(left[b])).then_with(|| left[a].id.cmp(&left[b].id)))
            .unwrap_or(0);
        let t = left.swap_remove(best);
        if let Some(z) = zones.get_mut(t.zone.as_deref().unwrap_or_default()) {
            *z = z.saturating_sub(1);
        }
        if let Some(h) = hosts.get_mut(t.instance.as_deref().unwrap_or_default()) {
            *h = h.saturating_sub(1);
        }
        out.push(t);
    }
    out
}
