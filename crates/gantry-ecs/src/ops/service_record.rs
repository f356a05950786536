//! The stored service record, shared by the service API (`services.rs`), its deployment
//! history (`service_deployments.rs`) and the scheduler: ECS's `Service` shape exactly as
//! DescribeServices returns it (its `deployments`, newest PRIMARY first, and its `events`, newest
//! first, at most 100), plus what the scheduler keeps between passes ([`SchedNotes`]) and each
//! deployment's place in the history ([`HistoryLink`]); and how a service is looked up.
//!
//! It uses neither of the modules that share it, so the service API can write the history
//! (`ControlPlane::sync_history`) while the history reads the record.

use crate::records::load;
use crate::status::service_status;
use crate::table::{Record, Row};
use crate::{ControlPlane, Ctx, Stored, keys};
use gantry_core::IdGen;
use gantry_core::validate::is_valid_name;
use gantry_core::{Arn, EcsError, ErrorKind, Result, Scope, ServiceStatus};
use gantry_model::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub service: Service,
    #[serde(default)]
    pub sched: SchedNotes,
    /// Which service deployment and service revision each deployment belongs to
    /// (`crate::ops::service_deployments`).
    #[serde(default)]
    pub history: Vec<HistoryLink>,
    /// Traffic-shifting deployments (BLUE_GREEN, LINEAR, CANARY): which target groups each
    /// deployment's tasks use and where the PRIMARY one is (`crate::traffic`).
    #[serde(default, skip_serializing_if = "TrafficNotes::is_empty")]
    pub traffic: TrafficNotes,
}

/// What the traffic-shifting deployments keep between passes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficNotes {
    /// Deployments, and whether their tasks register in the alternate target groups
    /// (`advancedConfiguration.alternateTargetGroupArn`) rather than the `targetGroupArn`s.
    #[serde(default)]
    pub sides: Vec<(String, bool)>,
    /// Whether production traffic goes to the alternate target groups (the roles of the two
    /// swap with every completed deployment).
    #[serde(default)]
    pub production_alternate: bool,
    /// The PRIMARY deployment's progress through ECS's lifecycle stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<StoredProgress>,
}

impl TrafficNotes {
    fn is_empty(&self) -> bool {
        *self == TrafficNotes::default()
    }

    /// Whether deployment `id`'s tasks use the alternate target groups.
    pub fn alternate(&self, id: &str) -> bool {
        self.sides.iter().find(|(d, _)| d == id).is_some_and(|(_, a)| *a)
    }
}

/// `gantry_sched::traffic::Progress` as stored, for deployment `deployment`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredProgress {
    pub deployment: String,
    pub stage: String,
    pub since_ms: i64,
    pub percent: f64,
    #[serde(default)]
    pub shifted: bool,
    #[serde(default)]
    pub hooks_passed: usize,
    #[serde(default)]
    pub hooks: Vec<StoredHook>,
    #[serde(default)]
    pub rollback: bool,
}

/// One run of a PAUSE hook.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredHook {
    pub id: String,
    pub hook: usize,
    pub stage: String,
    pub status: String,
    pub expires_at_ms: i64,
    pub timeout_rollback: bool,
    /// ContinueServiceDeployment's answer not yet acted on (true: ROLLBACK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<bool>,
}

impl ServiceRecord {
    /// The name of the service's cluster (the last part of its `clusterArn`).
    pub fn cluster_name(&self) -> &str {
        let arn = self.service.cluster_arn.as_deref().unwrap_or_default();
        arn.rsplit_once("cluster/").map_or(arn, |(_, name)| name)
    }
}

/// A service's key is its cluster's and its name; while it is not INACTIVE, the scheduler looks
/// after it: `/_ecs/service/ACCOUNT/REGION/CLUSTER/NAME`, whose value is the service's key; once
/// INACTIVE, the cleanup does: `/_ecs/inactive-service/ACCOUNT/REGION/CLUSTER/NAME`.
impl Record for ServiceRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::service(scope, self.cluster_name(), self.service.service_name.as_deref().unwrap_or_default())
    }

    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        let name = self.service.service_name.as_deref().unwrap_or_default();
        let cluster = self.cluster_name();
        if service_status(&self.service) == Some(ServiceStatus::Inactive) {
            // What the cleanup prunes the history of, and in time forgets.
            return vec![(
                keys::inactive_service(scope, cluster, name),
                keys::service(scope, cluster, name).into_bytes(),
            )];
        }
        vec![(
            keys::scheduled_service(scope, cluster, name),
            keys::service(scope, cluster, name).into_bytes(),
        )]
    }

    /// An ACTIVE or DRAINING service counts in its cluster's statistics by launch type
    /// (`activeEC2ServiceCount`, ...; a capacity provider strategy of Fargate's counts as Fargate).
    fn counters(&self, scope: &Scope) -> Vec<String> {
        let state = match service_status(&self.service) {
            Some(ServiceStatus::Active) => "active",
            Some(ServiceStatus::Draining) => "draining",
            _ => return Vec::new(),
        };
        let s = &self.service;
        let fargate_strategy =
            s.capacity_provider_strategy.iter().flatten().any(|i| i.capacity_provider.starts_with("FARGATE"));
        let launch = match s.launch_type.as_deref() {
            Some("FARGATE") => "Fargate",
            Some("EXTERNAL") => "External",
            None if fargate_strategy => "Fargate",
            _ => "EC2",
        };
        vec![keys::cluster_count(scope, self.cluster_name(), &format!("{state}{launch}ServiceCount"))]
    }
}

/// A deployment's place in the service's history: its service deployment's and its service
/// revision's IDs. A rollback deployment has no service deployment of its own: it belongs to the
/// one it rolls back, and runs the revision it returns to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryLink {
    pub deployment: String,
    pub service_deployment: String,
    pub revision: String,
    #[serde(default)]
    pub rollback: bool,
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
    /// StopServiceDeployment (ROLLBACK) asked to roll this deployment back; the next pass does it
    /// (if it is still the PRIMARY and IN_PROGRESS) and clears the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_requested: Option<String>,
}

/// A new deployment ID as ECS forms them: `ecs-svc/` and 19 digits.
pub fn new_deployment_id(ids: &dyn IdGen) -> String {
    let n = (ids.next_u128() as u64) % 10_000_000_000_000_000_000;
    format!("ecs-svc/{n:019}")
}

pub(crate) fn service_not_found() -> EcsError {
    EcsError::new(ErrorKind::ServiceNotFoundException, "Service not found.")
}

/// The service name a reference (a name, or a long or short service ARN) names in `cluster`;
/// `None` when it names a service elsewhere.
fn service_name_in(scope: &Scope, cluster: &str, reference: &str) -> Option<String> {
    if !reference.starts_with("arn:") {
        return Some(reference.to_string());
    }
    let a = Arn::parse(reference)?;
    if a.resource_type != "service" || a.region != scope.region || a.account != scope.account {
        return None;
    }
    match a.resource.split_once('/') {
        Some((c, n)) if c == cluster && !n.contains('/') => Some(n.to_string()),
        Some(_) => None,
        None => Some(a.resource),
    }
}

impl ControlPlane {
    /// Loads a service of a cluster by name or ARN.
    pub(crate) fn load_service(
        &self,
        ctx: &Ctx,
        cluster: &str,
        reference: &str,
    ) -> Result<Option<Stored<ServiceRecord>>> {
        match service_name_in(&ctx.scope, cluster, reference) {
            Some(name) if is_valid_name(&name) => {
                load(&*self.store, &keys::service(&ctx.scope, cluster, &name))
            }
            _ => Ok(None),
        }
    }
}
