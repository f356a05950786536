//! Services: the stored record shared by the service API and the scheduler.
//!
//! A service record is ECS's `Service` shape exactly as DescribeServices returns it (its
//! `deployments`, newest PRIMARY first, and its `events`, newest first, at most 100) plus what
//! the scheduler keeps between passes ([`SchedNotes`]). The API owns the service's
//! configuration and creates deployments (CreateService, and every UpdateService that changes
//! what runs); the scheduler (`crate::scheduler`) owns their progress: counts, rollout state,
//! events, and the tasks themselves.

use gantry_core::IdGen;
use gantry_model::{Deployment, Service};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub service: Service,
    #[serde(default)]
    pub sched: SchedNotes,
}

/// The scheduler's memory of a service, beyond what ECS's shape shows (`gantry_sched::Notes`,
/// with the last completed deployment kept whole for rollbacks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedNotes {
    /// Tasks in a row that stopped without reaching RUNNING (ECS's service throttle logic).
    #[serde(default)]
    pub start_failures: u32,
    #[serde(default)]
    pub last_start_failure_ms: i64,
    /// While throttled, no task is launched before this (epoch milliseconds).
    #[serde(default)]
    pub launch_not_before_ms: i64,
    /// The last deployment that reached COMPLETED: what a circuit-breaker rollback returns to.
    #[serde(default)]
    pub last_completed: Option<Deployment>,
    /// Whether the "has reached a steady state" event was recorded for the current state.
    #[serde(default)]
    pub steady: bool,
    /// Deployments whose tasks count as another's (a rollback adopts its target's tasks).
    #[serde(default)]
    pub aliases: Vec<(String, String)>,
}

/// A new deployment ID as ECS forms them: `ecs-svc/` and 19 digits.
pub fn new_deployment_id(ids: &dyn IdGen) -> String {
    let n = (ids.next_u128() as u64) % 10_000_000_000_000_000_000;
    format!("ecs-svc/{n:019}")
}
