//! The stored service record, shared by the service API (`services.rs`), its deployment
//! history (`service_deployments.rs`) and the scheduler: the service as a domain type
//! ([`StoredService`], whose JSON is ECS's `Service` shape exactly as DescribeServices returns
//! it: its `deployments`, newest PRIMARY first, and its `events`, newest first, at most 100), plus what the scheduler keeps between passes ([`SchedNotes`]) and each
//! deployment's place in the history ([`HistoryLink`]); and how a service is looked up.
//!
//! It uses neither of the modules that share it, so the service API can write the history
//! (`ControlPlane::sync_history`) while the history reads the record.

use super::task_set_record::StoredTaskSet;
use crate::records::load;
use crate::table::{Record, Row};
use crate::{ControlPlane, Ctx, Stored, keys};
use gantry_core::IdGen;
use gantry_core::time::epoch_seconds;
use gantry_core::validate::is_valid_name;
use gantry_core::{
    Arn, DeploymentLifecycleHookStage, DeploymentLifecycleHookStatus, DeploymentStage, DeploymentStatus,
    EcsError, ErrorKind, Result, RolloutState, Scope, ServiceStatus, Timestamp,
};
use gantry_model::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub service: StoredService,
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

/// A service as stored: what ECS's `Service` shape shows, with the fields every service Gantry
/// created has as plain values (not `Option`s), its status as [`ServiceStatus`] and its times
/// as [`Timestamp`]s. Its JSON is the JSON the wire shape wrote (the same camelCase names,
/// statuses as ECS's strings, times as epoch seconds), so records of earlier releases read as
/// they are; DescribeServices, CreateService, UpdateService and DeleteService answer through
/// [`Self::to_wire`]. The configuration a user passes through unchanged (load balancers,
/// placement, network, registries, tags, ...) keeps its wire shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredService {
    pub service_arn: String,
    pub service_name: String,
    pub cluster_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancers: Option<Vec<LoadBalancer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_registries: Option<Vec<ServiceRegistry>>,
    pub status: ServiceStatus,
    #[serde(default)]
    pub desired_count: i32,
    #[serde(default)]
    pub running_count: i32,
    #[serde(default)]
    pub pending_count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    /// None only for a service of the EXTERNAL controller created without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    pub deployment_configuration: DeploymentConfiguration,
    /// The EXTERNAL controller's task sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_sets: Option<Vec<StoredTaskSet>>,
    /// Newest (the PRIMARY) first; none for the EXTERNAL controller.
    #[serde(default)]
    pub deployments: Vec<StoredDeployment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Newest first, at most 100.
    #[serde(default)]
    pub events: Vec<StoredEvent>,
    #[serde(with = "epoch_seconds")]
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_service_deployment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_service_revisions: Option<Vec<ServiceCurrentRevisionSummary>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_constraints: Option<Vec<PlacementConstraint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_strategy: Option<Vec<PlacementStrategy>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<i32>,
    /// REPLICA or DAEMON.
    pub scheduling_strategy: String,
    pub deployment_controller: DeploymentController,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(rename = "enableECSManagedTags", default)]
    pub enable_ecs_managed_tags: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_tags: Option<String>,
    #[serde(default)]
    pub enable_execute_command: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone_rebalancing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_management_type: Option<String>,
}

/// One of a service's deployments, as stored (ECS's `Deployment`, the same JSON): its ID, status
/// and rollout state are always there; what it runs stays in the wire sub-shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredDeployment {
    pub id: String,
    pub status: DeploymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    #[serde(default)]
    pub desired_count: i32,
    #[serde(default)]
    pub pending_count: i32,
    #[serde(default)]
    pub running_count: i32,
    #[serde(default)]
    pub failed_tasks: i32,
    #[serde(with = "epoch_seconds")]
    pub created_at: Timestamp,
    #[serde(with = "epoch_seconds")]
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    pub rollout_state: RolloutState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_state_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect_configuration: Option<ServiceConnectConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect_resources: Option<Vec<ServiceConnectServiceResource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_configurations: Option<Vec<ServiceVolumeConfiguration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fargate_ephemeral_storage: Option<DeploymentEphemeralStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_lattice_configurations: Option<Vec<VpcLatticeConfiguration>>,
}

impl StoredDeployment {
    /// A deployment `id` made at `at`, PRIMARY and IN_PROGRESS, that runs nothing yet.
    pub fn new(id: String, at: Timestamp) -> Self {
        StoredDeployment {
            id,
            status: DeploymentStatus::Primary,
            task_definition: None,
            desired_count: 0,
            pending_count: 0,
            running_count: 0,
            failed_tasks: 0,
            created_at: at,
            updated_at: at,
            capacity_provider_strategy: None,
            launch_type: None,
            platform_version: None,
            platform_family: None,
            network_configuration: None,
            rollout_state: RolloutState::InProgress,
            rollout_state_reason: None,
            service_connect_configuration: None,
            service_connect_resources: None,
            volume_configurations: None,
            fargate_ephemeral_storage: None,
            vpc_lattice_configurations: None,
        }
    }

    /// Whether it is its service's PRIMARY deployment.
    pub fn is_primary(&self) -> bool {
        self.status == DeploymentStatus::Primary
    }

    /// ECS's `Deployment`, as DescribeServices shows it.
    pub fn into_wire(self) -> Deployment {
        Deployment {
            id: Some(self.id),
            status: Some(self.status.as_str().into()),
            task_definition: self.task_definition,
            desired_count: self.desired_count,
            pending_count: self.pending_count,
            running_count: self.running_count,
            failed_tasks: self.failed_tasks,
            created_at: Some(self.created_at.as_epoch_seconds()),
            updated_at: Some(self.updated_at.as_epoch_seconds()),
            capacity_provider_strategy: self.capacity_provider_strategy,
            launch_type: self.launch_type,
            platform_version: self.platform_version,
            platform_family: self.platform_family,
            network_configuration: self.network_configuration,
            rollout_state: Some(self.rollout_state.as_str().into()),
            rollout_state_reason: self.rollout_state_reason,
            service_connect_configuration: self.service_connect_configuration,
            service_connect_resources: self.service_connect_resources,
            volume_configurations: self.volume_configurations,
            fargate_ephemeral_storage: self.fargate_ephemeral_storage,
            vpc_lattice_configurations: self.vpc_lattice_configurations,
        }
    }
}

/// One of a service's events, as stored (ECS's `ServiceEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    pub id: String,
    #[serde(with = "epoch_seconds")]
    pub created_at: Timestamp,
    pub message: String,
}

impl StoredEvent {
    pub fn into_wire(self) -> ServiceEvent {
        ServiceEvent {
            id: Some(self.id),
            created_at: Some(self.created_at.as_epoch_seconds()),
            message: Some(self.message),
        }
    }
}

impl StoredService {
    /// [`Self::into_wire`] of a copy.
    pub fn to_wire(&self) -> Service {
        self.clone().into_wire()
    }

    /// ECS's `Service`, as DescribeServices returns it (with its tags): the one place the record
    /// becomes the wire shape (its fields moved, not copied).
    pub fn into_wire(self) -> Service {
        Service {
            service_arn: Some(self.service_arn),
            service_name: Some(self.service_name),
            cluster_arn: Some(self.cluster_arn),
            load_balancers: self.load_balancers,
            service_registries: self.service_registries,
            status: Some(self.status.as_str().into()),
            desired_count: self.desired_count,
            running_count: self.running_count,
            pending_count: self.pending_count,
            launch_type: self.launch_type,
            capacity_provider_strategy: self.capacity_provider_strategy,
            platform_version: self.platform_version,
            platform_family: self.platform_family,
            task_definition: self.task_definition,
            deployment_configuration: Some(self.deployment_configuration),
            task_sets: self.task_sets.map(|v| v.into_iter().map(StoredTaskSet::into_wire).collect()),
            deployments: Some(self.deployments.into_iter().map(StoredDeployment::into_wire).collect()),
            role_arn: self.role_arn,
            events: Some(self.events.into_iter().map(StoredEvent::into_wire).collect()),
            created_at: Some(self.created_at.as_epoch_seconds()),
            current_service_deployment: self.current_service_deployment,
            current_service_revisions: self.current_service_revisions,
            placement_constraints: self.placement_constraints,
            placement_strategy: self.placement_strategy,
            network_configuration: self.network_configuration,
            health_check_grace_period_seconds: self.health_check_grace_period_seconds,
            scheduling_strategy: Some(self.scheduling_strategy),
            deployment_controller: Some(self.deployment_controller),
            tags: self.tags,
            created_by: self.created_by,
            enable_ecs_managed_tags: self.enable_ecs_managed_tags,
            propagate_tags: self.propagate_tags,
            enable_execute_command: self.enable_execute_command,
            availability_zone_rebalancing: self.availability_zone_rebalancing,
            resource_management_type: self.resource_management_type,
        }
    }

    /// Whether it runs on the DAEMON scheduling strategy.
    pub fn is_daemon(&self) -> bool {
        self.scheduling_strategy == "DAEMON"
    }

    /// Whether its deployments are the EXTERNAL controller's (task sets).
    pub fn is_external(&self) -> bool {
        self.deployment_controller.r#type == "EXTERNAL"
    }
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredProgress {
    pub deployment: String,
    pub stage: DeploymentStage,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredHook {
    pub id: String,
    pub hook: usize,
    pub stage: DeploymentLifecycleHookStage,
    pub status: DeploymentLifecycleHookStatus,
    pub expires_at_ms: i64,
    pub timeout_rollback: bool,
    /// ContinueServiceDeployment's answer not yet acted on (true: ROLLBACK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<bool>,
}

impl ServiceRecord {
    /// The name of the service's cluster (the last part of its `clusterArn`).
    pub fn cluster_name(&self) -> &str {
        let arn = self.service.cluster_arn.as_str();
        arn.rsplit_once("cluster/").map_or(arn, |(_, name)| name)
    }
}

/// A service's key is its cluster's and its name; while it is not INACTIVE, the scheduler looks
/// after it: `/_ecs/service/ACCOUNT/REGION/CLUSTER/NAME`, whose value is the service's key; once
/// INACTIVE, the cleanup does: `/_ecs/inactive-service/ACCOUNT/REGION/CLUSTER/NAME`.
impl Record for ServiceRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::service(scope, self.cluster_name(), &self.service.service_name)
    }

    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        let name = self.service.service_name.as_str();
        let cluster = self.cluster_name();
        if self.service.status == ServiceStatus::Inactive {
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
        let state = match self.service.status {
            ServiceStatus::Active => "active",
            ServiceStatus::Draining => "draining",
            ServiceStatus::Inactive => return Vec::new(),
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
    pub last_completed: Option<StoredDeployment>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A service as the release before [`StoredService`] wrote it: ECS's `Service` shape, built
    /// the way its CreateService, scheduler and UpdateService filled it in.
    fn written_by_main() -> Service {
        let at = |ms: i64| Some(Timestamp(ms).as_epoch_seconds());
        let deployment = |id: &str, status: &str, rollout: &str, ms: i64| Deployment {
            id: Some(id.into()),
            status: Some(status.into()),
            task_definition: Some("arn:aws:ecs:us-east-1:000000000000:task-definition/web:2".into()),
            desired_count: 2,
            pending_count: 1,
            running_count: 1,
            failed_tasks: 0,
            created_at: at(ms),
            updated_at: at(ms + 1_234),
            launch_type: Some("FARGATE".into()),
            platform_version: Some("LATEST".into()),
            platform_family: Some("Linux".into()),
            rollout_state: Some(rollout.into()),
            rollout_state_reason: Some(format!("ECS deployment {id} in progress.")),
            ..Default::default()
        };
        Service {
            service_arn: Some("arn:aws:ecs:us-east-1:000000000000:service/prod/web".into()),
            service_name: Some("web".into()),
            cluster_arn: Some("arn:aws:ecs:us-east-1:000000000000:cluster/prod".into()),
            load_balancers: Some(vec![]),
            service_registries: Some(vec![]),
            status: Some("ACTIVE".into()),
            desired_count: 2,
            running_count: 1,
            pending_count: 1,
            launch_type: Some("FARGATE".into()),
            capacity_provider_strategy: None,
            platform_version: Some("LATEST".into()),
            platform_family: Some("Linux".into()),
            task_definition: Some("arn:aws:ecs:us-east-1:000000000000:task-definition/web:2".into()),
            deployment_configuration: Some(DeploymentConfiguration {
                maximum_percent: Some(200),
                minimum_healthy_percent: Some(100),
                deployment_circuit_breaker: Some(DeploymentCircuitBreaker::default()),
                ..Default::default()
            }),
            task_sets: None,
            deployments: Some(vec![
                deployment("ecs-svc/0000000000000000002", "PRIMARY", "IN_PROGRESS", 1_796_334_293_524),
                deployment("ecs-svc/0000000000000000001", "ACTIVE", "COMPLETED", 1_796_334_200_001),
            ]),
            role_arn: None,
            events: Some(vec![ServiceEvent {
                id: Some("9f2c1a4e-0000-4000-8000-000000000001".into()),
                created_at: at(1_796_334_295_007),
                message: Some("(service web) has started 1 tasks: (task abc).".into()),
            }]),
            created_at: at(1_796_334_200_001),
            current_service_deployment: Some(
                "arn:aws:ecs:us-east-1:000000000000:service-deployment/prod/web/1234567890123456789".into(),
            ),
            current_service_revisions: Some(vec![]),
            placement_constraints: Some(vec![]),
            placement_strategy: Some(vec![]),
            network_configuration: Some(NetworkConfiguration {
                awsvpc_configuration: Some(AwsVpcConfiguration {
                    subnets: vec!["subnet-1".into()],
                    ..Default::default()
                }),
            }),
            health_check_grace_period_seconds: Some(0),
            scheduling_strategy: Some("REPLICA".into()),
            deployment_controller: Some(DeploymentController { r#type: "ECS".into() }),
            tags: Some(vec![Tag { key: Some("team".into()), value: Some("a".into()) }]),
            created_by: Some("arn:aws:iam::000000000000:root".into()),
            enable_ecs_managed_tags: true,
            propagate_tags: Some("NONE".into()),
            enable_execute_command: false,
            availability_zone_rebalancing: Some("ENABLED".into()),
            resource_management_type: None,
        }
    }

    /// The whole record as the earlier release stored it: `{"service": Service, ...}`.
    fn record_json(service: &Service) -> Value {
        json!({
            "service": service,
            "sched": {"start_failures": 1, "last_start_failure_ms": 5, "launch_not_before_ms": 0,
                      "last_completed": null, "steady": false, "aliases": []},
            "history": [],
        })
    }

    #[test]
    fn a_record_written_by_the_earlier_release_reads_and_writes_back_the_same_json() {
        let old = written_by_main();
        let stored = record_json(&old);
        let rec: ServiceRecord = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(rec.service.status, ServiceStatus::Active);
        assert_eq!(rec.service.created_at, Timestamp(1_796_334_200_001));
        assert_eq!(rec.service.events[0].created_at, Timestamp(1_796_334_295_007));
        assert_eq!(rec.service.deployments.len(), 2);
        let primary = &rec.service.deployments[0];
        assert!(primary.is_primary() && !rec.service.deployments[1].is_primary());
        assert_eq!(primary.rollout_state, RolloutState::InProgress);
        assert_eq!(rec.service.deployments[1].status, DeploymentStatus::Active);
        assert_eq!(primary.updated_at, Timestamp(1_796_334_294_758));
        assert_eq!(rec.sched.start_failures, 1);
        // Written back, it is the JSON it was read from, and the wire shape is the old one.
        assert_eq!(serde_json::to_value(&rec).unwrap(), stored);
        assert_eq!(rec.service.to_wire(), old);
        assert_eq!(serde_json::to_value(rec.service.to_wire()).unwrap(), serde_json::to_value(&old).unwrap());
    }

    #[test]
    fn an_external_service_without_its_optional_parts_reads_back_too() {
        let mut old = written_by_main();
        old.deployments = Some(vec![]);
        old.events = Some(vec![]);
        old.task_definition = None;
        old.task_sets = Some(vec![]);
        old.deployment_controller = Some(DeploymentController { r#type: "EXTERNAL".into() });
        (old.network_configuration, old.current_service_deployment, old.current_service_revisions) =
            (None, None, None);
        (old.launch_type, old.platform_version, old.platform_family) = (None, None, None);
        old.status = Some("DRAINING".into());
        let stored = record_json(&old);
        let rec: ServiceRecord = serde_json::from_value(stored.clone()).unwrap();
        assert!(rec.service.is_external());
        assert_eq!(rec.service.status, ServiceStatus::Draining);
        assert_eq!(serde_json::to_value(&rec).unwrap(), stored);
        assert_eq!(rec.service.to_wire(), old);
    }

    #[test]
    fn a_hook_run_main_wrote_reads_and_writes_back_the_same_json() {
        // As the release before the enums wrote a paused BLUE_GREEN deployment's progress.
        let mut stored = record_json(&written_by_main());
        stored["traffic"] = json!({
            "sides": [["ecs-svc/0000000000000000002", true]],
            "production_alternate": false,
            "progress": {
                "deployment": "ecs-svc/0000000000000000002", "stage": "POST_TEST_TRAFFIC_SHIFT",
                "since_ms": 5, "percent": 0.0, "shifted": false, "hooks_passed": 1, "rollback": false,
                "hooks": [
                    {"id": "h-1", "hook": 0, "stage": "POST_SCALE_UP", "status": "SUCCEEDED",
                     "expires_at_ms": 9, "timeout_rollback": true},
                    {"id": "h-2", "hook": 1, "stage": "PRE_PRODUCTION_TRAFFIC_SHIFT",
                     "status": "AWAITING_ACTION", "expires_at_ms": 10, "timeout_rollback": false,
                     "decision": true},
                ],
            },
        });
        let rec: ServiceRecord = serde_json::from_value(stored.clone()).unwrap();
        let hooks = &rec.traffic.progress.as_ref().unwrap().hooks;
        assert_eq!(
            (hooks[0].stage, hooks[0].status),
            (DeploymentLifecycleHookStage::PostScaleUp, DeploymentLifecycleHookStatus::Succeeded)
        );
        assert_eq!(hooks[1].stage, DeploymentLifecycleHookStage::PreProductionTrafficShift);
        assert_eq!(hooks[1].status, DeploymentLifecycleHookStatus::AwaitingAction);
        assert_eq!(rec.traffic.progress.as_ref().unwrap().stage, DeploymentStage::PostTestTrafficShift);
        assert_eq!(serde_json::to_value(&rec).unwrap(), stored);
        let mut bent = stored.clone();
        bent["traffic"]["progress"]["stage"] = "WARP_DRIVE".into();
        let err = serde_json::from_value::<ServiceRecord>(bent).unwrap_err().to_string();
        assert!(err.contains("WARP_DRIVE"), "{err}");
        for (field, bad) in [("stage", "SCALE_SIDEWAYS"), ("status", "SNOOZED")] {
            let mut bent = stored.clone();
            bent["traffic"]["progress"]["hooks"][1][field] = bad.into();
            let err = serde_json::from_value::<ServiceRecord>(bent).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn a_record_without_what_every_service_has_does_not_read() {
        for field in ["serviceArn", "serviceName", "clusterArn", "status", "createdAt"] {
            let mut stored = record_json(&written_by_main());
            stored["service"].as_object_mut().unwrap().remove(field);
            assert!(serde_json::from_value::<ServiceRecord>(stored).is_err(), "{field}");
        }
        for field in ["id", "status", "createdAt", "updatedAt", "rolloutState"] {
            let mut stored = record_json(&written_by_main());
            stored["service"]["deployments"][1].as_object_mut().unwrap().remove(field);
            assert!(serde_json::from_value::<ServiceRecord>(stored).is_err(), "deployments[].{field}");
        }
        let mut stored = record_json(&written_by_main());
        stored["service"]["status"] = "BOGUS".into();
        assert!(serde_json::from_value::<ServiceRecord>(stored).is_err());
        let mut stored = record_json(&written_by_main());
        stored["service"]["deployments"][0]["rolloutState"] = "BOGUS".into();
        assert!(serde_json::from_value::<ServiceRecord>(stored).is_err());
    }
}
