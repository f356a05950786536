//! Tasks: RunTask, StartTask, StopTask, DescribeTasks, ListTasks, and the agent-facing state
//! changes (SubmitTaskStateChange, SubmitContainerStateChange, SubmitAttachmentStateChanges).
//!
//! A task record holds the task ([`StoredTask`], which becomes ECS's `Task` only in its
//! `into_wire`) plus the node it was assigned to and the resources it
//! reserved there. Placement is first-fit over the cluster's container instances (or over the
//! Fargate nodes for FARGATE), and commits with a compare-and-swap on the chosen node's record,
//! so concurrent RunTask calls never overcommit a node; a conflict re-reads and tries again.

use super::check_batch;
use super::cluster_record::ClusterRecord;
use super::instance_record::InstanceRecord;
pub use super::task_record::{Connectivity, StoredContainer, StoredTask};
use crate::fleets::Primed;
use crate::records::{decode, encode, load};
use crate::reservation::{Plan, Reservation, apply, plan};
use crate::table::{Before, Record, Row, TxnExt};
use crate::{ControlPlane, Ctx, Stored, keys};
use gantry_core::arn::cluster_name;
use gantry_core::page::{PageRequest, paginate};
use gantry_core::protocol::fargate_node_name;
use gantry_core::taskdef;
use gantry_core::validate::validate_tags;
use gantry_core::{Arn, AttachmentStatus, EcsError, ErrorKind, Result, Scope, TaskStatus, Timestamp};
use gantry_model::*;
use gantry_store::Txn;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task: StoredTask,
    /// The node (agent) the task is assigned to: a container instance ARN or `fargate:ID`.
    pub node: String,
    pub reserved: Reservation,
    #[serde(default)]
    pub network_configuration: Option<NetworkConfiguration>,
    /// Scale-in protection (UpdateTaskProtection): the scheduler does not stop a protected task
    /// to scale in or to finish a deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protection: Option<Protection>,
    /// A service task behind load balancers: its target groups and its targets in them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<TaskTargets>,
    /// A Fargate Spot task interrupted (`SpotInterruption`): when its capacity is reclaimed
    /// (epoch milliseconds), the end of the two-minute warning. If its containers have not
    /// stopped by then, the cleanup stops the task (and its agent kills what is left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reclaim_at_ms: Option<i64>,
}

/// A service task's place in its target groups (the service's, or its task set's,
/// `loadBalancers` when it was launched: a later UpdateService changes its successors', not
/// its own). The scheduler moves it through ECS's states: the agent's RUNNING report makes the
/// task ACTIVATING; the targets are written here, then registered, then the task is RUNNING.
/// Asked to stop, the task is DEACTIVATING: its targets are deregistered, and once ELB has
/// forgotten them (draining over) the task is STOPPING and its agent stops it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskTargets {
    pub bindings: Vec<LoadBalancer>,
    /// The task's targets, once its address is known: one per binding.
    #[serde(default)]
    pub targets: Vec<BoundTarget>,
    /// Every target was registered (and the task went RUNNING).
    #[serde(default)]
    pub registered: bool,
    /// The targets were deregistered (they drain, then go).
    #[serde(default)]
    pub deregistered: bool,
}

/// One target of a task: the target group, and the ID and port registered there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundTarget {
    pub target_group_arn: String,
    pub id: String,
    pub port: u16,
}

impl TaskTargets {
    /// Whether the task's stop goes through DEACTIVATING: it has targets that may be
    /// registered and are not deregistered yet.
    pub(crate) fn must_deactivate(&self) -> bool {
        !self.targets.is_empty() && !self.deregistered
    }
}

/// A task's key; until it is STOPPED, its row in its node's index (`/_ecs/node/NODE/TASK-ID`,
/// valued with the task's key and group): what the node's agent polls; ListTasks' rows by
/// desired status, and by family, group and container instance ([`keys::task_index_prefix`]);
/// once STOPPED, its row in the retention's index of stopped tasks ([`keys::stopped_task`]).
/// It counts in its cluster's statistics by state and launch type, in its capacity provider's
/// tasks and in its container instance's running or pending tasks ([`TaskRecord::counters`]).
impl Record for TaskRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::task(scope, self.cluster(), self.id())
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        let (cluster, id) = (self.cluster(), self.id());
        let t = &self.task;
        let mut rows = Vec::with_capacity(5);
        if t.is_stopped() {
            let ms = t.stopped_at.map_or(0, |s| s.0);
            rows.push((keys::stopped_task(scope, ms, cluster, id), self.key(scope).into_bytes()));
        } else if self.node.is_empty() {
            // No node yet: waiting for capacity (cluster auto scaling places it).
            rows.push((keys::awaiting(scope, cluster, id), self.key(scope).into_bytes()));
        } else {
            rows.push((keys::node_task(&self.node, id), keys::node_task_value(&self.key(scope), &t.group)));
            if let Some(at) = self.reclaim_at_ms {
                rows.push((keys::spot_reclaim(scope, at, cluster, id), self.key(scope).into_bytes()));
            }
        }
        let desired = t.desired_status.as_str();
        let mut row = |by| {
            let mut k = keys::task_index_prefix(scope, cluster, by, desired);
            k.push_str(id);
            rows.push((k, Vec::new()));
        };
        row(keys::TaskIndex::Desired);
        if let Some(f) = t.family() {
            row(keys::TaskIndex::Family(f));
        }
        if let Some(g) = Some(t.group.as_str()).filter(|g| !g.is_empty()) {
            row(keys::TaskIndex::Group(g));
        }
        if let Some(i) = t.container_instance_arn.as_deref() {
            row(keys::TaskIndex::Instance(task_id_of(i)));
        }
        rows
    }
    fn counters(&self, scope: &Scope) -> Vec<String> {
        let t = &self.task;
        let status = t.last_status;
        if status == TaskStatus::Stopped {
            return Vec::new();
        }
        let cluster = self.cluster();
        let launch = match t.launch_type.as_str() {
            "FARGATE" => "Fargate",
            "EXTERNAL" => "External",
            _ => "EC2",
        };
        let state = match status {
            TaskStatus::Running => "running",
            s if s.is_stopping() => "stopping",
            _ => "pending",
        };
        let mut out = Vec::with_capacity(4);
        out.push(keys::cluster_count(
            scope,
            cluster,
            &match state {
                "stopping" => STOPPING_TASKS.to_string(),
                _ => format!("{state}{launch}TasksCount"),
            },
        ));
        if let Some(p) = &t.capacity_provider_name {
            out.push(keys::cluster_count(scope, cluster, &format!("{PROVIDER_TASKS}{p}")));
        }
        if let Some(i) = t.container_instance_arn.as_deref()
            && state != "stopping"
        {
            out.push(keys::instance_count(scope, cluster, task_id_of(i), state));
        }
        out
    }
}

/// The cluster counter of its tasks past RUNNING and not yet STOPPED (Gantry's own).
pub(crate) const STOPPING_TASKS: &str = "stoppingTasksCount";
/// The cluster counters of tasks not STOPPED by capacity provider: this and the provider's name.
pub(crate) const PROVIDER_TASKS: &str = "provider!";

impl TaskRecord {
    /// The name of the task's cluster (the last part of its `clusterArn`).
    pub(crate) fn cluster(&self) -> &str {
        let arn = self.task.cluster_arn.as_str();
        arn.rsplit('/').next().unwrap_or(arn)
    }
    /// The task's ID (the last part of its ARN).
    pub(crate) fn id(&self) -> &str {
        task_id_of(&self.task.task_arn)
    }
}

/// A task's scale-in protection: until when (epoch milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    pub expires_at_ms: i64,
}

/// Until when (epoch milliseconds) a task is protected from scale-in, if it ever was; the
/// caller compares with its clock (protection lapses by itself).
pub(crate) fn protected_until_ms(rec: &TaskRecord) -> Option<i64> {
    rec.protection.map(|p| p.expires_at_ms)
}

/// A Fargate node: capacity that `gantry up` provides to every account and region.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FargateNode {
    pub id: String,
    pub cpu: i64,
    pub memory: i64,
    pub remaining_cpu: i64,
    pub remaining_memory: i64,
    pub availability_zone: String,
}

/// A RunTask client token: the request it came with and the tasks it started, until it expires
/// ([`CLIENT_TOKEN_TTL_MS`] after the request, as ECS's).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    request: String,
    task_arns: Vec<String>,
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    token: String,
    /// When the token expires (epoch milliseconds); 0 in a record of a release without expiry.
    #[serde(default)]
    pub(crate) expires_ms: i64,
    /// Claimed by a request whose tasks are being started: the tasks are not recorded yet.
    #[serde(default)]
    pending: bool,
}

/// How long a claimed token waits for its request before another request with the token may
/// take it over (the claiming server died between the claim and the record of its tasks).
const CLIENT_TOKEN_CLAIM_MS: i64 = 60_000;

/// What a RunTask with a client token does: start the tasks under the claim it holds (the
/// claimed record and its revision), or answer with the tasks of the token's earlier request.
enum TokenClaim {
    Run(TokenRecord, i64),
    Replay(RunTaskResponse),
}

/// How long a RunTask client token is remembered: ECS's is 24 hours.
pub(crate) const CLIENT_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

/// A token's key, and its row in the expiry index the cleanup reads.
impl Record for TokenRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::client_token(scope, &self.cluster, &self.token)
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        let row = keys::token_expiry(scope, self.expires_ms, &self.cluster, &self.token);
        vec![(row, self.key(scope).into_bytes())]
    }
}

/// Checks that a task definition can run on a launch type.
pub(crate) fn check_compatible(td: &TaskDefinition, launch_type: &str) -> Result<()> {
    if !td.compatibilities.iter().flatten().any(|c| c == launch_type) {
        return Err(EcsError::client(format!("Task definition does not support launch_type {launch_type}.")));
    }
    Ok(())
}

/// Checks a network configuration against the task definition's network mode, ECS's way:
/// awsvpc needs one with subnets, every other mode takes none.
pub(crate) fn check_network(td: &TaskDefinition, network: Option<&NetworkConfiguration>) -> Result<()> {
    let awsvpc = td.network_mode.as_deref() == Some("awsvpc");
    match (network, awsvpc) {
        (None, true) => Err(EcsError::invalid(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        )),
        (Some(n), true) => {
            let subnets = n.awsvpc_configuration.as_ref().map(|a| a.subnets.len()).unwrap_or(0);
            if subnets == 0 {
                return Err(EcsError::invalid("subnets can not be empty."));
            }
            Ok(())
        }
        (Some(_), false) => Err(EcsError::invalid(
            "Network Configuration is not valid for the given networkMode of this task definition.",
        )),
        (None, false) => Ok(()),
    }
}

/// A request's launch type and capacity provider strategy, as far as they can be checked
/// without the cluster: a known launch type, and not both. ECS checks this before it looks the
/// cluster up.
pub(crate) fn check_launch_fields(
    launch_type: Option<&str>,
    strategy: Option<&Vec<CapacityProviderStrategyItem>>,
) -> Result<()> {
    if let Some(lt) = launch_type
        && !["EC2", "FARGATE", "EXTERNAL"].contains(&lt)
    {
        return Err(EcsError::invalid(format!(
            "launchType should be one of [EC2,FARGATE,EXTERNAL], but was '{lt}'."
        )));
    }
    if launch_type.is_some() && strategy.is_some_and(|s| !s.is_empty()) {
        return Err(EcsError::invalid(
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        ));
    }
    Ok(())
}

/// ECS's InvalidParameterException for a task definition reference whose revision is not a
/// number (`family:latest`), which it refuses before looking anything up.
pub(crate) fn check_task_definition_ref(reference: &str) -> Result<()> {
    match taskdef::invalid_revision(reference) {
        Some(message) => Err(EcsError::invalid(message)),
        None => Ok(()),
    }
}

/// The launch type a request resolves to, and the capacity provider that chose it.
pub(crate) fn launch(
    cluster: &ClusterRecord,
    launch_type: Option<&str>,
    strategy: Option<&Vec<CapacityProviderStrategyItem>>,
) -> Result<(String, Option<String>)> {
    check_launch_fields(launch_type, strategy)?;
    if let Some(lt) = launch_type {
        return Ok((lt.to_string(), None));
    }
    let strategy = match strategy.filter(|s| !s.is_empty()) {
        Some(s) => {
            for item in s {
                if !cluster.capacity_providers.contains(&item.capacity_provider) {
                    return Err(EcsError::invalid(
                        "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.",
                    ));
                }
            }
            s.clone()
        }
        None => cluster.default_capacity_provider_strategy.clone(),
    };
    // The provider with a base, else the heaviest weight, decides (placement generalizes this).
    let chosen = strategy.iter().find(|i| i.base > 0).or_else(|| strategy.iter().max_by_key(|i| i.weight));
    Ok(match chosen {
        Some(i) if i.capacity_provider.starts_with("FARGATE") => {
            ("FARGATE".into(), Some(i.capacity_provider.clone()))
        }
        Some(i) => ("EC2".into(), Some(i.capacity_provider.clone())),
        None => ("EC2".into(), None),
    })
}

/// What RunTask and StartTask can check of a request before the cluster is looked up (as ECS
/// does): tags, startedBy, the launch type, the placement constraints' and strategies' own
/// shape, and the task definition reference's revision.
fn check_run_fields(req: &RunLike<'_>) -> Result<()> {
    validate_tags(&req.tags)?;
    if let Some(s) = &req.started_by
        && s.len() > 36
    {
        return Err(EcsError::invalid("startedBy longer than 36."));
    }
    if req.only.is_none() {
        check_launch_fields(req.launch_type, req.strategy)?;
    }
    if let Some(c) = req.constraints {
        super::placement::constraints(c, &[])?;
    }
    if let Some(s) = req.strategies {
        super::placement::strategies(s)?;
    }
    check_task_definition_ref(req.task_definition)
}

fn task_id_of(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

impl ControlPlane {
    pub(crate) fn load_task(
        &self,
        ctx: &Ctx,
        cluster: &str,
        reference: &str,
    ) -> Result<Option<Stored<TaskRecord>>> {
        if reference.starts_with("arn:") {
            match Arn::parse(reference) {
                Some(a)
                    if a.resource_type == "task"
                        && a.region == ctx.scope.region
                        && a.account == ctx.scope.account =>
                {
                    // Long form is task/CLUSTER/ID.
                    if let Some((c, _)) = a.resource.split_once('/')
                        && c != cluster
                    {
                        return Ok(None);
                    }
                }
                _ => return Ok(None),
            }
        }
        load(&*self.store, &keys::task(&ctx.scope, cluster, task_id_of(reference)))
    }

    /// The ACTIVE task definition a reference names, or ECS's ClientException.
    pub(crate) fn active_task_definition(&self, ctx: &Ctx, reference: &str) -> Result<TaskDefinition> {
        check_task_definition_ref(reference)?;
        // A daemon task definition runs only as its daemon's tasks.
        if reference.trim().starts_with("arn:")
            && gantry_core::daemon::parse_ref(&ctx.scope, reference).is_some()
        {
            return Err(EcsError::client("TaskDefinition not found."));
        }
        let td = self
            .find_task_definition(ctx, reference)?
            .ok_or_else(|| EcsError::client("TaskDefinition not found."))?
            .value
            .definition;
        if !td.is_active() {
            return Err(EcsError::client(format!("TaskDefinition is inactive: {}", td.task_definition_arn)));
        }
        Ok(td.into_wire())
    }

    fn new_task(&self, l: &Launch<'_>) -> StoredTask {
        let Launch { ctx, cluster, plan: p, launch_type, cp, req, .. } = *l;
        let cname = cluster.cluster_name.clone();
        let id = self.ids.ordered_hex_id(self.clock.now());
        let task_arn = ctx.scope.arn(&format!("task/{cname}/{id}"));
        let family = p.def.family.clone().unwrap_or_default();
        let containers = p
            .def
            .container_definitions
            .iter()
            .flatten()
            .map(|c| StoredContainer {
                container_arn: ctx.scope.arn(&format!("container/{cname}/{id}/{}", self.ids.uuid())),
                task_arn: task_arn.clone(),
                name: c.name.clone().unwrap_or_default(),
                image: c.image.clone().unwrap_or_default(),
                image_digest: None,
                runtime_id: None,
                last_status: TaskStatus::Pending,
                exit_code: None,
                reason: None,
                network_bindings: None,
                network_interfaces: vec![],
                health_status: c.health_check.as_ref().map(|_| gantry_core::HealthStatus::Unknown),
                managed_agents: super::exec::initial_agents(req.exec),
                cpu: c.cpu.to_string(),
                memory: c.memory.map(|m| m.to_string()),
                memory_reservation: c.memory_reservation.map(|m| m.to_string()),
                gpu_ids: None,
                neuron_device_ids: None,
                gpu_sharing_strategy: None,
            })
            .collect();
        let fargate = launch_type == "FARGATE";
        let mut attachments = Vec::new();
        if p.def.network_mode.as_deref() == Some("awsvpc") {
            let subnet = req
                .network
                .as_ref()
                .and_then(|n| n.awsvpc_configuration.as_ref())
                .and_then(|a| a.subnets.first().cloned())
                .unwrap_or_default();
            let hex = self.ids.hex_id();
            let mac = (0..6).map(|i| hex[i * 2..i * 2 + 2].to_string()).collect::<Vec<_>>().join(":");
            let detail = |k: &str, v: String| KeyValuePair { name: Some(k.into()), value: Some(v) };
            attachments.push(Attachment {
                id: Some(self.ids.uuid()),
                r#type: Some("ElasticNetworkInterface".into()),
                status: Some(AttachmentStatus::Precreated.as_str().into()),
                details: Some(vec![
                    detail("subnetId", subnet),
                    detail("networkInterfaceId", format!("eni-{}", &hex[12..29])),
                    detail("macAddress", mac),
                    detail("privateDnsName", String::new()),
                    detail("privateIPv4Address", String::new()),
                ]),
            });
        }
        StoredTask {
            attachments,
            attributes: vec![Attribute {
                name: "ecs.cpu-architecture".into(),
                value: Some("x86_64".into()),
                ..Default::default()
            }],
            availability_zone: None,
            capacity_provider_name: cp.cloned(),
            cluster_arn: cluster.cluster_arn.clone(),
            connectivity: None,
            connectivity_at: None,
            container_instance_arn: None,
            containers,
            cpu: p.cpu.clone(),
            created_at: self.clock.now(),
            desired_status: TaskStatus::Running,
            enable_execute_command: req.exec,
            execution_stopped_at: None,
            group: req.group.clone().unwrap_or_else(|| format!("family:{family}")),
            health_status: gantry_core::HealthStatus::Unknown,
            inference_accelerators: None,
            last_status: TaskStatus::Provisioning,
            launch_type: launch_type.to_string(),
            memory: p.memory.clone(),
            overrides: p.overrides.clone(),
            platform_version: fargate.then(|| "1.4.0".into()),
            platform_family: fargate.then(|| "Linux".into()),
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            started_by: req.started_by.clone(),
            stop_code: None,
            stopped_at: None,
            stopped_reason: None,
            stopping_at: None,
            tags: req.tags.iter().chain(&req.managed_tags).cloned().collect(),
            task_arn,
            task_definition_arn: p.def.task_definition_arn.clone().unwrap_or_default(),
            version: 1,
            ephemeral_storage: fargate.then_some(EphemeralStorage { size_in_gi_b: 20 }),
            fargate_ephemeral_storage: fargate
                .then(|| TaskEphemeralStorage { size_in_gi_b: 20, ..Default::default() }),
            trusted_execution_summary: None,
        }
    }

    /// Places and stores one FARGATE task on a Fargate node; the failures when none has room.
    async fn place_fargate(&self, l: &Launch<'_>) -> Result<std::result::Result<TaskRecord, Vec<Failure>>> {
        let p = l.plan;
        self.retry(|| {
            let now = self.clock.now();
            let mut task = self.new_task(l);
            for kv in self.store.range(&keys::fargate_node_prefix(), None, usize::MAX) {
                let mut n = decode::<FargateNode>(&kv)?;
                let node = fargate_node_name(&n.value.id);
                if !self.agents.connected(&node, now)
                    || n.value.remaining_cpu < p.need.cpu
                    || n.value.remaining_memory < p.need.memory
                {
                    continue;
                }
                n.value.remaining_cpu -= p.need.cpu;
                n.value.remaining_memory -= p.need.memory;
                task.availability_zone = Some(n.value.availability_zone.clone());
                let guard = Txn::new().when(&n.key, n.mod_revision).put(&n.key, encode(&n.value));
                return Ok(self.assign(l, task, node, p.need.clone(), guard));
            }
            let failure = Failure {
                arn: None,
                reason: Some(
                    "Capacity is unavailable at this time. Please try again later or in a different availability zone"
                        .into(),
                ),
                detail: Some("No Fargate node of this Gantry installation is connected with room for the task.".into()),
            };
            Ok((Txn::new(), Err(vec![failure])))
        })
        .await
    }

    /// Places the request's tasks on the cluster's container instances with the placement
    /// engine, and stores them and the instances' reduced resources in one transaction.
    async fn place_ec2(
        &self,
        l: &Launch<'_>,
        only: Option<&[String]>,
        count: usize,
    ) -> Result<(Vec<TaskRecord>, Vec<Failure>)> {
        let Launch { ctx, cluster, plan: p, req, .. } = *l;
        use super::placement;
        use gantry_placement::engine;
        let cname = cluster.cluster_name.clone();
        let family = p.def.family.clone().unwrap_or_default();
        let group = req.group.clone().unwrap_or_else(|| format!("family:{family}"));
        let strategies = match (only, req.strategies) {
            // StartTask names its instances: there is nothing to rank.
            (Some(_), _) => vec![],
            (None, Some(s)) if !s.is_empty() => placement::strategies(s)?,
            // RunTask's default is random.
            (None, _) => vec![engine::Strategy::Random],
        };
        let constraints = placement::constraints(
            req.constraints.map(Vec::as_slice).unwrap_or_default(),
            p.def.placement_constraints.as_deref().unwrap_or_default(),
        )?;
        let mut request = engine::Request {
            need: crate::reservation::need(&p.need, &p.def),
            count,
            group: group.clone(),
            constraints,
            strategies,
            seed: 0,
        };
        let td_arn = p.def.task_definition_arn.clone().unwrap_or_default();
        let (placed, failures) = self
            .retry(|| {
                let cf = self.cluster_fleet(ctx, &cname)?;
                let cf = cf.read().unwrap_or_else(|e| e.into_inner());
                // StartTask's named instances form a fleet of their own.
                let named = only.map(|o| {
                    engine::Fleet::new(
                        o.iter()
                            .filter_map(|arn| cf.fleet.position(arn).map(|i| cf.fleet.instances()[i].clone()))
                            .collect(),
                    )
                });
                let fleet = named.as_ref().unwrap_or(&cf.fleet);
                if fleet.is_empty() && only.is_none() {
                    return Err(EcsError::invalid("No Container Instances were found in your cluster."));
                }
                let view = fleet.instances();
                // The tasks exist before they are placed: the seed comes from the first one.
                let mut tasks: Vec<StoredTask> = match l.adopt {
                    Some(waiting) => waiting.iter().map(|r| r.value.task.clone()).collect(),
                    None => (0..count).map(|_| self.new_task(l)).collect(),
                };
                let first = tasks.first().map(|t| t.task_arn.clone()).unwrap_or_default();
                request.seed = placement::seed(&[&cname, &td_arn, &group, &first], cf.revision);
                let now = self.clock.now();
                let plan = fleet.place(&request, &|i| self.agents.connected(&view[i].arn, now));
                let mut txn = Txn::new();
                let mut touched: std::collections::BTreeMap<usize, InstanceRecord> = Default::default();
                let mut placed = Vec::with_capacity(plan.chosen.len());
                for idx in &plan.chosen {
                    let ci = touched.entry(*idx).or_insert_with(|| cf.records[&view[*idx].arn].value.clone());
                    // GPU: this task's own device IDs, from what the instance has left (gpus.rs).
                    let need = crate::reservation::reserve_gpus(&ci.remaining_resources, &p.need, &p.def);
                    apply(&mut ci.remaining_resources, &need, -1);
                    let mut task = tasks.remove(0);
                    crate::gpus::hand_out(&mut task.containers, &need.gpus, &p.def);
                    task.group = group.clone();
                    task.container_instance_arn = Some(view[*idx].arn.clone());
                    task.availability_zone =
                        view[*idx].attributes.get("ecs.availability-zone").cloned().flatten();
                    let (t, rec) = self.assign(l, task, view[*idx].arn.clone(), need, txn);
                    txn = t;
                    if let Ok(rec) = rec {
                        placed.push(rec);
                    }
                }
                let mut written = Vec::with_capacity(touched.len());
                for (idx, ci) in touched {
                    let r = &cf.records[&view[idx].arn];
                    let value = encode(&ci);
                    txn = txn.when(&r.key, r.mod_revision).put(&r.key, value.clone());
                    written.push(Primed {
                        key: r.key.clone(),
                        base: r.mod_revision,
                        value,
                        remaining: ci.remaining_resources,
                    });
                }
                let failures = placement::failures(view, &plan.rejections);
                if !failures.is_empty() {
                    let why: Vec<String> = plan
                        .rejections
                        .iter()
                        .map(|(i, r)| format!("{}: {}", view[*i].id, r.explain()))
                        .collect();
                    tracing::info!(
                        cluster = %cname,
                        task_definition = %td_arn,
                        placed = plan.chosen.len(),
                        wanted = count,
                        "a task could not be placed: {}",
                        why.join("; ")
                    );
                }
                // Before the commit, whose events may be drained before this task runs again;
                // and with the fleet released (draining takes the fleets' lock, then a fleet's).
                drop(cf);
                self.prime_instances(written);
                Ok((txn, (placed, failures)))
            })
            .await?;
        Ok((placed, failures))
    }

    /// Places tasks that waited for capacity on what their cluster has now (in batches of one
    /// definition, overrides and group, binpacked on memory as managed scaling assumes);
    /// how many were placed. Those that still do not fit keep waiting.
    pub(crate) async fn place_waiting(
        &self,
        ctx: &Ctx,
        cluster: &str,
        waiting: Vec<Stored<TaskRecord>>,
    ) -> Result<usize> {
        let Ok(c) = self.active_cluster(ctx, Some(cluster)) else { return Ok(0) };
        let mut batches: std::collections::BTreeMap<(String, String, String), Vec<Stored<TaskRecord>>> =
            Default::default();
        for w in waiting {
            let t = &w.value.task;
            if t.stop_wanted() {
                continue;
            }
            let key = (
                t.task_definition_arn.clone(),
                serde_json::to_string(&t.overrides).unwrap_or_default(),
                t.group.clone(),
            );
            batches.entry(key).or_default().push(w);
        }
        let strategies =
            vec![PlacementStrategy { r#type: Some("binpack".into()), field: Some("memory".into()) }];
        let mut placed_total = 0;
        for ((td_arn, _, group), batch) in batches {
            let Some(td) = self.find_task_definition(ctx, &td_arn)? else { continue };
            let overrides = Some(batch[0].value.task.overrides.clone());
            let p = plan(&td.value.definition.into_wire(), overrides.as_ref(), false)?;
            for chunk in batch.chunks(500) {
                let req = RunLike {
                    cluster: Some(cluster),
                    task_definition: &td_arn,
                    count: chunk.len(),
                    launch_type: Some("EC2"),
                    strategy: None,
                    overrides: overrides.as_ref(),
                    group: Some(group.clone()),
                    started_by: None,
                    tags: Vec::new(),
                    network: chunk[0].value.network_configuration.clone(),
                    only: None,
                    constraints: None,
                    strategies: Some(&strategies),
                    service: None,
                    managed_tags: Vec::new(),
                    load_balancers: None,
                    exec: chunk[0].value.task.enable_execute_command,
                    definition: None,
                };
                let cp = chunk[0].value.task.capacity_provider_name.clone();
                let launch = Launch {
                    ctx,
                    cluster: &c.value,
                    plan: &p,
                    launch_type: "EC2",
                    cp: cp.as_ref(),
                    req: &req,
                    adopt: Some(chunk),
                };
                if let Ok((placed, _)) = self.place_ec2(&launch, None, chunk.len()).await {
                    let mut nodes: Vec<&String> = placed.iter().map(|r| &r.node).collect();
                    nodes.sort();
                    nodes.dedup();
                    for n in nodes {
                        self.agents.bump(n);
                    }
                    placed_total += placed.len();
                }
            }
        }
        Ok(placed_total)
    }

    /// Stores `count` tasks that wait for capacity: PROVISIONING, on no node, with the
    /// reservation they will take (cluster auto scaling places them).
    async fn park(&self, l: &Launch<'_>, count: usize) -> Result<Vec<TaskRecord>> {
        self.retry(|| {
            let mut txn = Txn::new();
            let mut out = Vec::with_capacity(count);
            for _ in 0..count {
                let mut task = self.new_task(l);
                task.group =
                    l.req.group.clone().unwrap_or_else(|| {
                        format!("family:{}", l.plan.def.family.clone().unwrap_or_default())
                    });
                let (t, rec) = self.assign(l, task, String::new(), l.plan.need.clone(), txn);
                txn = t;
                if let Ok(rec) = rec {
                    out.push(rec);
                }
            }
            Ok((txn, out))
        })
        .await
    }

    /// Adds a placed task, its reservation and its node index entry to `txn`.
    fn assign(
        &self,
        l: &Launch<'_>,
        task: StoredTask,
        node: String,
        reserved: Reservation,
        txn: Txn,
    ) -> (Txn, std::result::Result<TaskRecord, Vec<Failure>>) {
        let (ctx, req) = (l.ctx, l.req);
        let cluster = l.cluster.cluster_name.as_str();
        let arn = task.task_arn.clone();
        let id = task_id_of(&arn).to_string();
        // An adopted task replaces its waiting record, under that record's compare-and-swap.
        let waiting = l.adopt.into_iter().flatten().find(|r| r.value.task.task_arn == arn);
        let before = waiting.map_or_else(Before::absent, |w| Before::of(&ctx.scope, w));
        let rec = TaskRecord {
            task,
            node: node.clone(),
            reserved,
            network_configuration: req.network.clone(),
            protection: None,
            targets: req
                .load_balancers
                .filter(|l| !l.is_empty())
                .map(|l| TaskTargets { bindings: l.to_vec(), ..Default::default() }),
            reclaim_at_ms: None,
        };
        let rec = match waiting {
            Some(w) => TaskRecord {
                network_configuration: w.value.network_configuration.clone(),
                targets: w.value.targets.clone(),
                protection: w.value.protection,
                ..rec
            },
            None => rec,
        };
        let mut txn = txn.put_record(&ctx.scope, &before, &rec);
        if let Some(service) = req.service {
            txn = txn.put(keys::service_task(&ctx.scope, cluster, service, &id), vec![]);
        }
        (txn, Ok(rec))
    }

    async fn run_like(&self, ctx: &Ctx, req: RunLike<'_>) -> Result<(Vec<Task>, Vec<Failure>)> {
        check_run_fields(&req)?;
        let cluster = self.active_cluster(ctx, req.cluster)?;
        // A strategy of several providers: each provider's share, launched through it alone.
        if req.only.is_none() && req.launch_type.is_none() {
            let strategy = match req.strategy.filter(|s| !s.is_empty()) {
                Some(s) => s.clone(),
                None => cluster.value.default_capacity_provider_strategy.clone(),
            };
            if strategy.len() > 1 {
                // Checked as a whole first (every provider associated with the cluster).
                launch(&cluster.value, None, Some(&strategy))?;
                let items: Vec<(String, i64, i64)> = strategy
                    .iter()
                    .map(|i| (i.capacity_provider.clone(), i64::from(i.base), i64::from(i.weight)))
                    .collect();
                let mut tasks = Vec::new();
                let mut failures = Vec::new();
                for (provider, n) in crate::ops::capacity_providers::split(&items, req.count) {
                    let Some(item) = strategy.iter().find(|i| i.capacity_provider == provider) else {
                        continue;
                    };
                    let one = vec![item.clone()];
                    let part = RunLike {
                        strategy: Some(&one),
                        count: n,
                        group: req.group.clone(),
                        started_by: req.started_by.clone(),
                        tags: req.tags.clone(),
                        network: req.network.clone(),
                        managed_tags: req.managed_tags.clone(),
                        definition: req.definition.clone(),
                        ..req
                    };
                    let (t, f) = Box::pin(self.run_like(ctx, part)).await?;
                    tasks.extend(t);
                    failures.extend(f);
                }
                return Ok((tasks, failures));
            }
        }
        let td = match &req.definition {
            Some(d) => d.clone(),
            None => self.active_task_definition(ctx, req.task_definition)?,
        };
        let (launch_type, cp) = match req.only {
            // StartTask: EC2. A daemon's tasks name the Managed Instances provider of their
            // instances, and report ECS's launch type for it.
            Some(_) => match req.strategy.and_then(|s| s.first()) {
                Some(i) => (MANAGED_INSTANCES.to_string(), Some(i.capacity_provider.clone())),
                None => ("EC2".to_string(), None),
            },
            None => launch(&cluster.value, req.launch_type, req.strategy)?,
        };
        check_compatible(&td, if launch_type == MANAGED_INSTANCES { "EC2" } else { &launch_type })?;
        check_network(&td, req.network.as_ref())?;
        let p = plan(&td, req.overrides, launch_type == "FARGATE")?;
        let launch = Launch {
            ctx,
            cluster: &cluster.value,
            plan: &p,
            launch_type: &launch_type,
            cp: cp.as_ref(),
            req: &req,
            adopt: None,
        };
        let mut tasks = Vec::new();
        let mut failures: Vec<Failure> = Vec::new();
        if launch_type == "FARGATE" {
            for _ in 0..req.count {
                match self.place_fargate(&launch).await? {
                    Ok(rec) => {
                        self.agents.bump(&rec.node);
                        tasks.push(rec.task.into_wire());
                    }
                    Err(f) => {
                        failures.extend(f);
                        break;
                    }
                }
            }
        } else {
            // StartTask: one task on each named instance; RunTask: `count` wherever they fit.
            let rounds: Vec<(Option<Vec<String>>, usize)> = match req.only {
                Some(list) => list.iter().map(|a| (Some(vec![a.clone()]), 1)).collect(),
                None => vec![(None, req.count)],
            };
            let mut seen = std::collections::HashSet::new();
            // Through a capacity provider with managed scaling, what does not fit waits for
            // capacity in PROVISIONING, as on ECS, instead of failing.
            let waits = req.only.is_none() && cp.as_ref().is_some_and(|p| self.provider_scales(ctx, p));
            for (only, count) in rounds {
                let (placed, f) = match self.place_ec2(&launch, only.as_deref(), count).await {
                    Err(_) if waits => (Vec::new(), Vec::new()),
                    r => r?,
                };
                if waits && placed.len() < count {
                    let parked = self.park(&launch, count - placed.len()).await?;
                    tasks.extend(parked.into_iter().map(|r| r.task.into_wire()));
                    let mut nodes: Vec<&String> = placed.iter().map(|r| &r.node).collect();
                    nodes.dedup();
                    for n in nodes {
                        self.agents.bump(n);
                    }
                    tasks.extend(placed.into_iter().map(|r| r.task.into_wire()));
                    continue;
                }
                let mut nodes: Vec<&String> = placed.iter().map(|r| &r.node).collect();
                nodes.dedup();
                for n in nodes {
                    self.agents.bump(n);
                }
                tasks.extend(placed.into_iter().map(|r| r.task.into_wire()));
                // StartTask's rounds may name the same instance's failure twice; a full cluster
                // fails on every instance, so this stays linear.
                for x in f {
                    let id = (x.arn.clone(), x.reason.clone());
                    if seen.insert(id) {
                        failures.push(x);
                    }
                }
            }
        }
        self.metrics.placement.record(tasks.len(), failures.iter().filter_map(|f| f.reason.as_deref()));
        Ok((tasks, failures))
    }

    pub async fn run_task(&self, ctx: &Ctx, req: RunTaskRequest) -> Result<RunTaskResponse> {
        let count = req.count.unwrap_or(1);
        if !(1..=10).contains(&count) {
            return Err(EcsError::invalid(format!("count must be between 1 and 10, but was {count}.")));
        }
        if let Some(p) = &req.propagate_tags {
            super::one_of("propagateTags", p, &["TASK_DEFINITION", "SERVICE", "NONE"])?;
        }
        let cname = cluster_name(&ctx.scope, req.cluster.as_deref())?;
        let ecs_tags = self.standalone_task_tags(
            ctx,
            &cname,
            &req.task_definition,
            req.propagate_tags.as_deref(),
            req.enable_ecs_managed_tags,
            req.tags.as_deref().unwrap_or_default(),
        )?;
        // clientToken idempotency: the same token and request return the same tasks.
        let token = req.client_token.clone().filter(|t| !t.is_empty());
        // Only a request with a token is remembered, so only then is it fingerprinted.
        let fingerprint = match &token {
            Some(_) => {
                let mut r = req.clone();
                r.client_token = None;
                serde_json::to_string(&r).unwrap_or_default()
            }
            None => String::new(),
        };
        let claim = match &token {
            Some(t) => match self.claim_client_token(ctx, &cname, t, &fingerprint).await? {
                TokenClaim::Replay(response) => return Ok(response),
                TokenClaim::Run(rec, revision) => Some((rec, revision)),
            },
            None => None,
        };
        let ran = self
            .run_like(
                ctx,
                RunLike {
                    cluster: req.cluster.as_deref(),
                    task_definition: &req.task_definition,
                    count: count as usize,
                    launch_type: req.launch_type.as_deref(),
                    strategy: req.capacity_provider_strategy.as_ref(),
                    overrides: req.overrides.as_ref(),
                    group: req.group.clone(),
                    started_by: req.started_by.clone(),
                    tags: req.tags.clone().unwrap_or_default(),
                    network: req.network_configuration.clone(),
                    only: None,
                    constraints: req.placement_constraints.as_ref(),
                    strategies: req.placement_strategy.as_ref(),
                    service: None,
                    managed_tags: ecs_tags,
                    load_balancers: None,
                    exec: req.enable_execute_command,
                    definition: None,
                },
            )
            .await;
        if let Some((claimed, revision)) = claim {
            let before = Before::read(&ctx.scope, &claimed.key(&ctx.scope), revision, &claimed);
            let txn = match &ran {
                // Nothing started: the token is free again, as if the request had not come.
                Err(_) => Txn::new().delete_record(&before),
                Ok((tasks, _)) => Txn::new().put_record(
                    &ctx.scope,
                    &before,
                    &TokenRecord {
                        task_arns: tasks.iter().filter_map(|t| t.task_arn.clone()).collect(),
                        pending: false,
                        ..claimed.clone()
                    },
                ),
            };
            // A claim taken over meanwhile (this request outlived CLIENT_TOKEN_CLAIM_MS) is
            // the other request's now: nothing is written then.
            self.commit(txn).await?;
        }
        let (tasks, failures) = ran?;
        Ok(RunTaskResponse { tasks: Some(tasks), failures: Some(failures) })
    }

    /// Claims a RunTask client token for this request, atomically (a compare-and-swap on the
    /// token's record), before any task is started: of two requests with one token, only one
    /// starts tasks, even on two servers. The other waits for the claim's outcome and answers
    /// with the same tasks; a token used with other parameters is a ConflictException.
    async fn claim_client_token(
        &self,
        ctx: &Ctx,
        cluster: &str,
        token: &str,
        fingerprint: &str,
    ) -> Result<TokenClaim> {
        if token.len() > 64 {
            return Err(EcsError::invalid("clientToken can have at most 64 characters."));
        }
        let key = keys::client_token(&ctx.scope, cluster, token);
        loop {
            let now_ms = self.clock.now().0;
            let prev = load::<TokenRecord>(&*self.store, &key)?;
            let live = prev.as_ref().filter(|p| p.value.expires_ms > now_ms);
            if let Some(prev) = live {
                if prev.value.request != fingerprint {
                    let tasks = prev.value.task_arns.join(", ");
                    return Err(EcsError::new(
                        ErrorKind::ConflictException,
                        if tasks.is_empty() {
                            format!("The clientToken {token} was already used with different parameters.")
                        } else {
                            format!(
                                "The clientToken {token} was already used with different parameters for tasks {tasks}."
                            )
                        },
                    ));
                }
                let claimed_ms = prev.value.expires_ms - CLIENT_TOKEN_TTL_MS;
                if !prev.value.pending {
                    let mut tasks = Vec::new();
                    for arn in &prev.value.task_arns {
                        if let Some(rec) = self.load_task(ctx, cluster, arn)? {
                            tasks.push(rec.value.task.into_wire());
                        }
                    }
                    return Ok(TokenClaim::Replay(RunTaskResponse {
                        tasks: Some(tasks),
                        failures: Some(vec![]),
                    }));
                }
                if now_ms - claimed_ms < CLIENT_TOKEN_CLAIM_MS {
                    // The same request is starting its tasks: wait for its record to change.
                    self.wait_for_change(&key, prev.mod_revision).await;
                    continue;
                }
            }
            // Free, expired, or claimed by a request that did not finish: claim it.
            let rec = TokenRecord {
                request: fingerprint.to_string(),
                task_arns: Vec::new(),
                cluster: cluster.to_string(),
                token: token.to_string(),
                expires_ms: now_ms + CLIENT_TOKEN_TTL_MS,
                pending: true,
            };
            let before = match &prev {
                Some(old) => Before::of(&ctx.scope, old),
                None => Before::absent(),
            };
            if let Some(revision) = self.commit_at(Txn::new().put_record(&ctx.scope, &before, &rec)).await? {
                return Ok(TokenClaim::Run(rec, revision));
            }
        }
    }

    /// Returns once the record at `key` changes after `revision` (or after a bound of a few
    /// seconds, when the caller looks again).
    async fn wait_for_change(&self, key: &str, revision: i64) {
        let Ok(mut watch) = self.store.watch(key, revision + 1) else { return };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while let Ok(e) = watch.next().await {
                if e.kv.key == key {
                    return;
                }
            }
        })
        .await;
    }

    /// The tags ECS adds to a task that RunTask or StartTask launches, besides the caller's: the
    /// task definition's (propagateTags TASK_DEFINITION; a key the caller also gives keeps the
    /// caller's value), and `aws:ecs:clusterName` (enableECSManagedTags). A standalone task has
    /// no service to take tags from, so SERVICE is refused.
    fn standalone_task_tags(
        &self,
        ctx: &Ctx,
        cluster: &str,
        task_definition: &str,
        propagate: Option<&str>,
        managed: bool,
        given: &[Tag],
    ) -> Result<Vec<Tag>> {
        let mut out = Vec::new();
        match propagate {
            None | Some("NONE") => {}
            Some("TASK_DEFINITION") => {
                if let Some(td) = self.find_task_definition(ctx, task_definition)? {
                    let given = |k: &str| given.iter().any(|t| t.key.as_deref() == Some(k));
                    out.extend(
                        td.value.tags.into_iter().filter(|t| !given(t.key.as_deref().unwrap_or_default())),
                    );
                }
            }
            Some(_) => {
                return Err(EcsError::invalid(
                    "propagateTags SERVICE is only valid for a service's tasks: a task that is not part of \
                     a service can propagate tags only from its TASK_DEFINITION.",
                ));
            }
        }
        if managed {
            out.push(Tag { key: Some("aws:ecs:clusterName".into()), value: Some(cluster.into()) });
        }
        Ok(out)
    }

    /// A daemon's task on each of its instances (StartTask's path with the daemon's definition).
    pub(crate) async fn start_daemon_tasks(
        &self,
        ctx: &Ctx,
        cluster: &str,
        launch: DaemonLaunch<'_>,
    ) -> Result<(Vec<Task>, Vec<Failure>)> {
        let td_arn = launch.definition.task_definition_arn.clone().unwrap_or_default();
        let strategy = launch
            .capacity_provider
            .map(|p| vec![CapacityProviderStrategyItem { capacity_provider: p, weight: 1, base: 0 }]);
        self.run_like(
            ctx,
            RunLike {
                cluster: Some(cluster),
                task_definition: &td_arn,
                count: launch.instances.len(),
                launch_type: None,
                strategy: strategy.as_ref(),
                overrides: None,
                group: Some(launch.group),
                started_by: Some(launch.started_by),
                tags: launch.tags,
                network: None,
                only: Some(launch.instances),
                constraints: None,
                strategies: None,
                service: None,
                managed_tags: launch.managed_tags,
                load_balancers: None,
                exec: launch.exec,
                definition: Some(launch.definition),
            },
        )
        .await
    }

    pub async fn start_task(&self, ctx: &Ctx, req: StartTaskRequest) -> Result<StartTaskResponse> {
        if req.container_instances.is_empty() {
            return Err(EcsError::invalid("containerInstances can not be empty."));
        }
        check_batch("containerInstances", req.container_instances.len(), 10)?;
        if let Some(p) = &req.propagate_tags {
            super::one_of("propagateTags", p, &["TASK_DEFINITION", "SERVICE", "NONE"])?;
        }
        let cname = cluster_name(&ctx.scope, req.cluster.as_deref())?;
        let ecs_tags = self.standalone_task_tags(
            ctx,
            &cname,
            &req.task_definition,
            req.propagate_tags.as_deref(),
            req.enable_ecs_managed_tags,
            req.tags.as_deref().unwrap_or_default(),
        )?;
        let arns: Vec<String> =
            req.container_instances
                .iter()
                .map(|r| {
                    if r.starts_with("arn:") {
                        r.clone()
                    } else {
                        ctx.scope.container_instance_arn(&cname, r)
                    }
                })
                .collect();
        let (tasks, mut failures) = self
            .run_like(
                ctx,
                RunLike {
                    cluster: req.cluster.as_deref(),
                    task_definition: &req.task_definition,
                    count: arns.len(),
                    launch_type: None,
                    strategy: None,
                    overrides: req.overrides.as_ref(),
                    group: req.group.clone(),
                    started_by: req.started_by.clone(),
                    tags: req.tags.clone().unwrap_or_default(),
                    network: req.network_configuration.clone(),
                    only: Some(&arns),
                    constraints: None,
                    strategies: None,
                    service: None,
                    managed_tags: ecs_tags,
                    load_balancers: None,
                    exec: req.enable_execute_command,
                    definition: None,
                },
            )
            .await?;
        for a in &arns {
            let placed = tasks.iter().any(|t| t.container_instance_arn.as_ref() == Some(a));
            if !placed && !failures.iter().any(|f| f.arn.as_ref() == Some(a)) {
                failures.push(Failure { arn: Some(a.clone()), reason: Some("MISSING".into()), detail: None });
            }
        }
        Ok(StartTaskResponse { tasks: Some(tasks), failures: Some(failures) })
    }

    pub async fn stop_task(&self, ctx: &Ctx, req: StopTaskRequest) -> Result<StopTaskResponse> {
        if req.reason.as_ref().is_some_and(|r| r.len() > 255) {
            return Err(EcsError::invalid("reason can have at most 255 characters."));
        }
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name;
        let reason = req.reason.clone().unwrap_or_else(|| "Task stopped by user".into());
        let rec = self
            .request_stop(ctx, &cname, &req.task, "UserInitiated", &reason)
            .await?
            .ok_or_else(|| EcsError::invalid("The referenced task was not found."))?;
        Ok(StopTaskResponse { task: Some(rec.task.into_wire()) })
    }

    /// Sets a task's desired status to STOPPED (its agent stops it), with ECS's stop code and
    /// reason; `None` if there is no such task.
    pub(crate) async fn request_stop(
        &self,
        ctx: &Ctx,
        cluster: &str,
        task: &str,
        code: &str,
        reason: &str,
    ) -> Result<Option<TaskRecord>> {
        self.request_stop_by(ctx, cluster, task, code, reason, None).await
    }

    /// [`Self::request_stop`], and for a Fargate Spot interruption, when the task's capacity is
    /// reclaimed whether or not it has stopped (`reclaim_at_ms`).
    pub(crate) async fn request_stop_by(
        &self,
        ctx: &Ctx,
        cluster: &str,
        task: &str,
        code: &str,
        reason: &str,
        reclaim_at_ms: Option<i64>,
    ) -> Result<Option<TaskRecord>> {
        let now = self.clock.now();
        let now_s = now.as_epoch_seconds();
        let rec = self
            .retry(|| {
                let Some(mut rec) = self.load_task(ctx, cluster, task)? else {
                    return Ok((Txn::new(), None));
                };
                let before = Before::of(&ctx.scope, &rec);
                let t = &mut rec.value.task;
                if t.stop_wanted() {
                    return Ok((Txn::new(), Some((rec.value, false))));
                }
                t.desired_status = TaskStatus::Stopped;
                t.stopping_at = Some(now);
                t.stop_code = Some(code.into());
                t.stopped_reason = Some(reason.into());
                rec.value.reclaim_at_ms = reclaim_at_ms;
                let t = &mut rec.value.task;
                if rec.value.node.is_empty() {
                    // Still waiting for capacity: nothing runs, nothing is reserved.
                    t.last_status = TaskStatus::Stopped;
                    t.stopped_at = Some(now);
                    for c in &mut t.containers {
                        c.last_status = TaskStatus::Stopped;
                        super::exec::follow_container(&mut c.managed_agents, "STOPPED", now_s);
                        super::exec::follow_container(&mut c.managed_agents, "STOPPED", now_s);
                    }
                    t.version += 1;
                    return Ok((
                        Txn::new().put_record(&ctx.scope, &before, &rec.value),
                        Some((rec.value, false)),
                    ));
                }
                let status = Some(t.last_status);
                // Behind a load balancer, a task that may be registered is DEACTIVATING: the
                // scheduler deregisters it and, once it has drained, makes it STOPPING and
                // tells its agent. Until then the agent is not woken, and keeps it running.
                let deactivate = rec.value.targets.as_ref().is_some_and(TaskTargets::must_deactivate)
                    && matches!(status, Some(TaskStatus::Activating | TaskStatus::Running));
                let t = &mut rec.value.task;
                if deactivate {
                    t.last_status = TaskStatus::Deactivating;
                } else if status == Some(TaskStatus::Running) {
                    t.last_status = TaskStatus::Stopping;
                }
                t.version += 1;
                // The desired status moves the task's ListTasks rows; STOPPING moves its counts.
                let txn = Txn::new().put_record(&ctx.scope, &before, &rec.value);
                if deactivate {
                    return Ok((txn, Some((rec.value, false))));
                }
                Ok((self.reassign(txn, &rec.value.node, &rec.key), Some((rec.value, true))))
            })
            .await?;
        if let Some((r, true)) = &rec {
            self.agents.bump(&r.node);
        }
        Ok(rec.map(|(r, _)| r))
    }

    /// Marks a task STOPPED at once, for a task whose node is gone (its container instance was
    /// deregistered, or its agent lost): no agent will report it. What it reserved goes back to
    /// its instance, and its node index entry goes, so an agent that comes back is told to stop
    /// it.
    pub(crate) async fn mark_lost(
        &self,
        ctx: &Ctx,
        cluster: &str,
        task: &str,
        code: &str,
        reason: &str,
    ) -> Result<()> {
        let now = self.clock.now();
        self.retry(|| {
            let Some(mut rec) = self.load_task(ctx, cluster, task)? else {
                return Ok((Txn::new(), ()));
            };
            let before = Before::of(&ctx.scope, &rec);
            let t = &mut rec.value.task;
            if t.is_stopped() {
                return Ok((Txn::new(), ()));
            }
            t.last_status = TaskStatus::Stopped;
            t.desired_status = TaskStatus::Stopped;
            t.stop_code = Some(code.into());
            t.stopped_reason = Some(reason.into());
            t.stopping_at.get_or_insert(now);
            t.stopped_at = Some(now);
            t.connectivity = Some(Connectivity::Disconnected);
            for c in &mut t.containers {
                c.last_status = TaskStatus::Stopped;
                super::exec::follow_container(&mut c.managed_agents, "STOPPED", now.as_epoch_seconds());
            }
            t.version += 1;
            let txn = self.release(Txn::new(), &rec.value.node, &rec.value.reserved, ctx, cluster)?;
            Ok((txn.put_record(&ctx.scope, &before, &rec.value), ()))
        })
        .await
    }

    /// Launches `count` tasks for a service's deployment: `group` `service:NAME`, `startedBy`
    /// the deployment ID, the service's placement (its strategy, else ECS's service default:
    /// spread over Availability Zones, then binpack on memory), on `instance` if given (DAEMON),
    /// registering with `load_balancers` (the service's, or its task set's).
    pub(crate) async fn launch_service_tasks(
        &self,
        ctx: &Ctx,
        service: &super::service_record::StoredService,
        deployment: &super::service_record::StoredDeployment,
        (count, instance): (usize, Option<&str>),
        tags: Vec<Tag>,
        load_balancers: &[LoadBalancer],
    ) -> Result<(Vec<Task>, Vec<Failure>)> {
        let name = service.service_name.clone();
        let default_strategy = vec![
            PlacementStrategy {
                r#type: Some("spread".into()),
                field: Some("attribute:ecs.availability-zone".into()),
            },
            PlacementStrategy { r#type: Some("binpack".into()), field: Some("memory".into()) },
        ];
        let strategies = match &service.placement_strategy {
            Some(s) if !s.is_empty() => s.clone(),
            _ if service.is_daemon() => vec![],
            _ => default_strategy,
        };
        let only = instance.map(|i| vec![i.to_string()]);
        let cluster = service.cluster_arn.rsplit('/').next().unwrap_or_default();
        let tag = |k: &str, v: &str| Tag { key: Some(k.into()), value: Some(v.into()) };
        let managed_tags = if service.enable_ecs_managed_tags {
            vec![tag("aws:ecs:clusterName", cluster), tag("aws:ecs:serviceName", &name)]
        } else {
            vec![]
        };
        self.run_like(
            ctx,
            RunLike {
                cluster: Some(cluster),
                task_definition: deployment.task_definition.as_deref().unwrap_or_default(),
                count,
                launch_type: deployment.launch_type.as_deref(),
                strategy: deployment.capacity_provider_strategy.as_ref().filter(|s| !s.is_empty()),
                overrides: None,
                group: Some(format!("service:{name}")),
                started_by: Some(deployment.id.clone()),
                tags,
                network: deployment.network_configuration.clone(),
                only: only.as_deref(),
                constraints: service.placement_constraints.as_ref(),
                strategies: Some(&strategies),
                service: Some(&name),
                managed_tags,
                load_balancers: self.registers_targets().then_some(load_balancers),
                exec: service.enable_execute_command,
                definition: None,
            },
        )
        .await
    }

    pub fn describe_tasks(&self, ctx: &Ctx, req: DescribeTasksRequest) -> Result<DescribeTasksResponse> {
        super::check_include("include", req.include.as_ref(), &["TAGS"])?;
        if req.tasks.is_empty() {
            return Err(EcsError::invalid("Tasks cannot be empty."));
        }
        check_batch("taskIds", req.tasks.len(), 100)?;
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name;
        let mut tasks = Vec::new();
        let mut failures = Vec::new();
        for r in &req.tasks {
            match self.load_task(ctx, &cname, r)? {
                Some(rec) => {
                    let mut t = rec.value.task.into_wire();
                    if !super::includes(req.include.as_ref(), "TAGS") {
                        t.tags = None;
                    }
                    tasks.push(t);
                }
                None => failures.push(super::missing(r, |r| ctx.scope.arn(&format!("task/{cname}/{r}")))),
            }
        }
        Ok(DescribeTasksResponse { tasks: Some(tasks), failures: Some(failures) })
    }

    pub fn list_tasks(&self, ctx: &Ctx, req: ListTasksRequest) -> Result<ListTasksResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 100, 100)?;
        if let Some(f) = &req.family
            && !gantry_core::validate::is_valid_name(f)
        {
            return Err(EcsError::invalid("family must match ^[a-zA-Z0-9\\-_]+$"));
        }
        if req.started_by.as_ref().is_some_and(|s| s.len() > 36) {
            return Err(EcsError::invalid("startedBy longer than 36."));
        }
        let desired = req.desired_status.as_deref().unwrap_or("RUNNING");
        if !["RUNNING", "PENDING", "STOPPED"].contains(&desired) {
            return Err(EcsError::invalid(format!(
                "desiredStatus should be one of [RUNNING,PENDING,STOPPED], but was '{desired}'."
            )));
        }
        check_launch_fields(req.launch_type.as_deref(), None)?;
        // The request's own fields first, then the cluster, as ECS does.
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name;
        let instance = req.container_instance.as_ref().map(|r| {
            if r.starts_with("arn:") { r.clone() } else { ctx.scope.container_instance_arn(&cname, r) }
        });
        let service = req.service_name.as_ref().map(|s| s.rsplit('/').next().unwrap_or(s));
        let group = service.map(|s| format!("service:{s}"));
        // One index, the narrowest the request names, is read: its rows are the answer's
        // candidates, never every task stored. PENDING is among the tasks RUNNING is desired of.
        let by = match (&instance, &group, &req.family) {
            (Some(i), _, _) => keys::TaskIndex::Instance(task_id_of(i)),
            (None, Some(g), _) => keys::TaskIndex::Group(g),
            (None, None, Some(f)) => keys::TaskIndex::Family(f),
            (None, None, None) => keys::TaskIndex::Desired,
        };
        // An instance ARN of another cluster (or account) names no task of this one.
        if let Some(i) = &instance
            && *i != ctx.scope.container_instance_arn(&cname, task_id_of(i))
        {
            return Ok(ListTasksResponse { task_arns: Some(vec![]), next_token: None });
        }
        let indexed = if desired == "PENDING" { "RUNNING" } else { desired };
        let prefix = keys::task_index_prefix(&ctx.scope, &cname, by, indexed);
        // The rest of the request is checked on the task records the index names.
        let decode_needed = desired == "PENDING"
            || req.started_by.is_some()
            || req.launch_type.is_some()
            || (req.family.is_some() && !matches!(by, keys::TaskIndex::Family(_)))
            || (group.is_some() && !matches!(by, keys::TaskIndex::Group(_)));
        let task_prefix = keys::task_prefix(&ctx.scope, &cname);
        // The token is the last task's key; the index resumes after its ID.
        let mut after = page
            .after
            .as_deref()
            .and_then(|a| a.strip_prefix(&task_prefix))
            .map(|id| format!("{prefix}{id}"));
        let mut out: Vec<String> = Vec::new();
        'scan: loop {
            let chunk = self.store.range(&prefix, after.as_deref(), 256);
            let Some(last) = chunk.last() else { break };
            after = Some(last.key.clone());
            for kv in &chunk {
                let id = &kv.key[prefix.len()..];
                // A row of a group that holds `/` and only starts like this one.
                if id.contains('/') {
                    continue;
                }
                let key = keys::task(&ctx.scope, &cname, id);
                if decode_needed {
                    let Some(rec) = load::<TaskRecord>(&*self.store, &key)? else { continue };
                    let t = &rec.value.task;
                    let keep = (desired != "PENDING" || t.last_status != TaskStatus::Running)
                        && req.family.as_deref().is_none_or(|f| t.family() == Some(f))
                        && req.started_by.as_ref().is_none_or(|s| t.started_by.as_ref() == Some(s))
                        && req.launch_type.as_ref().is_none_or(|l| t.launch_type == *l)
                        && group.as_ref().is_none_or(|g| t.group == *g);
                    if !keep {
                        continue;
                    }
                }
                out.push(key);
                if out.len() > page.limit {
                    break 'scan;
                }
            }
        }
        let (items, next) = paginate(out, page.limit, |k| k.clone());
        let arns = items
            .iter()
            .map(|k| ctx.scope.arn(&format!("task/{cname}/{}", &k[task_prefix.len()..])))
            .collect();
        Ok(ListTasksResponse { task_arns: Some(arns), next_token: next })
    }

    /// Applies an agent's report of a task's (and its containers') state.
    pub async fn submit_task_state_change(
        &self,
        ctx: &Ctx,
        req: SubmitTaskStateChangeRequest,
    ) -> Result<SubmitTaskStateChangeResponse> {
        let cname = cluster_name(&ctx.scope, req.cluster.as_deref())?;
        let task_ref = req.task.clone().ok_or_else(|| EcsError::invalid("task can not be blank."))?;
        let status = req.status.clone();
        if let Some(s) = &status
            && TaskStatus::parse(s).is_none()
        {
            return Err(EcsError::invalid(format!("Invalid task status '{s}'.")));
        }
        let now = self.clock.now();
        self.retry(|| {
            let mut rec = self
                .load_task(ctx, &cname, &task_ref)?
                .ok_or_else(|| EcsError::invalid(format!("The referenced task was not found: {task_ref}")))?;
            if rec.value.task.is_stopped() {
                return Ok((Txn::new(), ()));
            }
            let before = Before::of(&ctx.scope, &rec);
            let t = &mut rec.value.task;
            for c in req.containers.iter().flatten() {
                update_container(t, c, now);
            }
            if let Some(at) = req.pull_started_at {
                t.pull_started_at = Some(Timestamp::from_epoch_seconds(at));
            }
            if let Some(at) = req.pull_stopped_at {
                t.pull_stopped_at = Some(Timestamp::from_epoch_seconds(at));
            }
            let mut txn = Txn::new();
            // A task only moves forward (a status stored unknown reads as PROVISIONING).
            let current = t.last_status;
            // Behind a load balancer, the containers running make the task ACTIVATING: the
            // scheduler registers its targets, then makes it RUNNING.
            let activating = rec.value.targets.as_ref().is_some_and(|x| !x.registered);
            let next_status = status.as_deref().and_then(TaskStatus::parse).map(|n| match n {
                TaskStatus::Running if activating => TaskStatus::Activating,
                n => n,
            });
            let t = &mut rec.value.task;
            if let Some(next) = next_status
                && next > current
            {
                t.last_status = next;
                if next == TaskStatus::Activating {
                    t.connectivity = Some(Connectivity::Connected);
                    t.connectivity_at = Some(now);
                }
                match next {
                    TaskStatus::Running => {
                        t.started_at = Some(now);
                        t.connectivity = Some(Connectivity::Connected);
                        t.connectivity_at = Some(now);
                    }
                    x if x.is_stopping() => {
                        t.stopping_at.get_or_insert(now);
                    }
                    TaskStatus::Stopped => {
                        let was_running = t.started_at.is_some();
                        t.execution_stopped_at =
                            Some(req.execution_stopped_at.map_or(now, Timestamp::from_epoch_seconds));
                        t.stopped_at = Some(now);
                        t.stopping_at.get_or_insert(now);
                        t.desired_status = TaskStatus::Stopped;
                        t.connectivity = Some(Connectivity::Disconnected);
                        if t.stop_code.is_none() {
                            t.stop_code = Some(
                                if was_running { "EssentialContainerExited" } else { "TaskFailedToStart" }
                                    .into(),
                            );
                        }
                        if t.stopped_reason.is_none() {
                            t.stopped_reason = Some(
                                req.reason
                                    .clone()
                                    .unwrap_or_else(|| "Essential container in task exited".into()),
                            );
                        }
                        attachments_deleted(t);
                        txn = self.release(txn, &rec.value.node, &rec.value.reserved, ctx, &cname)?;
                    }
                    _ => {}
                }
            }
            rec.value.task.version += 1;
            // STOPPED drops the task's node index row.
            Ok((txn.put_record(&ctx.scope, &before, &rec.value), ()))
        })
        .await?;
        // No wake-up for the node: its agent sent this report and knows the state. (STOPPED
        // drops the task from the node's index; the agent's next poll lists it as removed.)
        Ok(SubmitTaskStateChangeResponse { acknowledgment: Some("ACK".into()) })
    }

    /// Returns a stopped task's reservation to its node, within `txn`.
    pub(crate) fn release(
        &self,
        txn: Txn,
        node: &str,
        r: &Reservation,
        ctx: &Ctx,
        cluster: &str,
    ) -> Result<Txn> {
        if let Some(id) = node.strip_prefix("fargate:") {
            let key = keys::fargate_node(id);
            return Ok(match load::<FargateNode>(&*self.store, &key)? {
                Some(mut n) => {
                    n.value.remaining_cpu = (n.value.remaining_cpu + r.cpu).min(n.value.cpu);
                    n.value.remaining_memory = (n.value.remaining_memory + r.memory).min(n.value.memory);
                    txn.when(&key, n.mod_revision).put(&key, encode(&n.value))
                }
                None => txn,
            });
        }
        let id = node.rsplit('/').next().unwrap_or_default();
        let key = keys::container_instance(&ctx.scope, cluster, id);
        Ok(match load::<InstanceRecord>(&*self.store, &key)? {
            Some(mut ci) => {
                let r = &crate::reservation::registered_only(r, &ci.value.registered_resources);
                apply(&mut ci.value.remaining_resources, r, 1);
                txn.when(&key, ci.mod_revision).put(&key, encode(&ci.value))
            }
            None => txn,
        })
    }

    pub async fn submit_container_state_change(
        &self,
        ctx: &Ctx,
        req: SubmitContainerStateChangeRequest,
    ) -> Result<SubmitContainerStateChangeResponse> {
        let cname = cluster_name(&ctx.scope, req.cluster.as_deref())?;
        let task_ref = req.task.clone().ok_or_else(|| EcsError::invalid("task can not be blank."))?;
        let now = self.clock.now();
        self.retry(|| {
            let mut rec = self
                .load_task(ctx, &cname, &task_ref)?
                .ok_or_else(|| EcsError::invalid(format!("The referenced task was not found: {task_ref}")))?;
            let t = &mut rec.value.task;
            update_container(
                t,
                &ContainerStateChange {
                    container_name: req.container_name.clone(),
                    runtime_id: req.runtime_id.clone(),
                    status: req.status.clone(),
                    exit_code: req.exit_code,
                    reason: req.reason.clone(),
                    network_bindings: req.network_bindings.clone(),
                    ..Default::default()
                },
                now,
            );
            t.version += 1;
            Ok((Txn::new().when(&rec.key, rec.mod_revision).put(&rec.key, encode(&rec.value)), ()))
        })
        .await?;
        Ok(SubmitContainerStateChangeResponse { acknowledgment: Some("ACK".into()) })
    }

    pub async fn submit_attachment_state_changes(
        &self,
        ctx: &Ctx,
        req: SubmitAttachmentStateChangesRequest,
    ) -> Result<SubmitAttachmentStateChangesResponse> {
        let cname = cluster_name(&ctx.scope, req.cluster.as_deref())?;
        for change in &req.attachments {
            // Attachment ARNs are arn:...:attachment/CLUSTER/TASK-ID/ATTACHMENT-ID.
            let parts: Vec<&str> = change.attachment_arn.rsplit('/').collect();
            let (Some(att_id), Some(task_id)) = (parts.first(), parts.get(1)) else {
                return Err(EcsError::invalid(format!("Invalid attachment ARN: {}", change.attachment_arn)));
            };
            let status = AttachmentStatus::parse(&change.status).ok_or_else(|| {
                let all: Vec<&str> = AttachmentStatus::ALL.iter().map(|s| s.as_str()).collect();
                EcsError::invalid(format!(
                    "status should be one of [{}], but was '{}'.",
                    all.join(","),
                    change.status
                ))
            })?;
            self.retry(|| {
                let mut rec = self.load_task(ctx, &cname, task_id)?.ok_or_else(|| {
                    EcsError::invalid(format!("Attachment not found: {}", change.attachment_arn))
                })?;
                let mut found = false;
                for a in &mut rec.value.task.attachments {
                    if a.id.as_deref() == Some(*att_id) {
                        crate::status::set_attachment_status(a, status);
                        found = true;
                    }
                }
                if !found {
                    return Err(EcsError::invalid(format!(
                        "Attachment not found: {}",
                        change.attachment_arn
                    )));
                }
                Ok((Txn::new().when(&rec.key, rec.mod_revision).put(&rec.key, encode(&rec.value)), ()))
            })
            .await?;
        }
        Ok(SubmitAttachmentStateChangesResponse { acknowledgment: Some("ACK".into()) })
    }
}

/// Applies one container's reported state to the task.
fn update_container(t: &mut StoredTask, change: &ContainerStateChange, now: Timestamp) {
    let ContainerStateChange {
        container_name,
        runtime_id,
        status,
        exit_code,
        reason,
        network_bindings: bindings,
        ..
    } = change;
    let (name, runtime_id, status, reason, bindings) =
        (container_name.as_deref(), runtime_id.as_ref(), status.as_ref(), reason.as_ref(), bindings.as_ref());
    let exit_code = *exit_code;
    let Some(c) = name.and_then(|n| t.container_mut(n)) else {
        return;
    };
    if runtime_id.is_some() {
        c.runtime_id = runtime_id.cloned();
    }
    // A container goes PENDING, RUNNING, STOPPED, never back; a status that is no task status
    // is not recorded.
    if let Some(s) = status.and_then(|s| TaskStatus::parse(s)) {
        let rank = |s: TaskStatus| match s {
            TaskStatus::Running => 1,
            TaskStatus::Stopped => 2,
            _ => 0,
        };
        if rank(s) >= rank(c.last_status) {
            c.last_status = s;
            super::exec::follow_container(&mut c.managed_agents, s.as_str(), now.as_epoch_seconds());
        }
    }
    if exit_code.is_some() {
        c.exit_code = exit_code;
    }
    if reason.is_some() {
        c.reason = reason.cloned();
    }
    if let Some(b) = bindings {
        c.network_bindings = Some(b.clone());
    }
}

/// One placement's context: who asks, where, what runs, on which launch type.
#[derive(Clone, Copy)]
struct Launch<'a> {
    ctx: &'a Ctx,
    cluster: &'a ClusterRecord,
    plan: &'a Plan,
    launch_type: &'a str,
    cp: Option<&'a String>,
    req: &'a RunLike<'a>,
    /// Tasks that waited for capacity, placed now instead of new ones (cluster auto scaling).
    adopt: Option<&'a [Stored<TaskRecord>]>,
}

/// What RunTask and StartTask have in common.
struct RunLike<'a> {
    cluster: Option<&'a str>,
    task_definition: &'a str,
    count: usize,
    launch_type: Option<&'a str>,
    strategy: Option<&'a Vec<CapacityProviderStrategyItem>>,
    overrides: Option<&'a TaskOverride>,
    group: Option<String>,
    started_by: Option<String>,
    tags: Vec<Tag>,
    network: Option<NetworkConfiguration>,
    only: Option<&'a [String]>,
    constraints: Option<&'a Vec<PlacementConstraint>>,
    strategies: Option<&'a Vec<PlacementStrategy>>,
    /// The service whose scheduler launches these tasks (they join its task index).
    service: Option<&'a str>,
    /// ECS's own `aws:ecs:*` tags (enableECSManagedTags), added after the user's are validated.
    managed_tags: Vec<Tag>,
    /// A service's (or task set's) `loadBalancers`: the tasks register there.
    load_balancers: Option<&'a [LoadBalancer]>,
    /// enableExecuteCommand: the tasks' containers get ECS Exec's managed agent.
    exec: bool,
    /// The definition to run, when it is not a task definition's revision (a daemon's).
    definition: Option<TaskDefinition>,
}

/// What a daemon's launch is: its definition, the instances, group `daemon:NAME` and startedBy
/// the daemon revision's ID.
pub(crate) struct DaemonLaunch<'a> {
    pub definition: TaskDefinition,
    pub instances: &'a [String],
    pub group: String,
    pub started_by: String,
    pub exec: bool,
    /// The daemon's tags (propagateTags DAEMON), and ECS's managed tags
    /// (enableECSManagedTags).
    pub tags: Vec<Tag>,
    pub managed_tags: Vec<Tag>,
    /// The capacity provider the instances belong to (the tasks' `capacityProviderName`).
    pub capacity_provider: Option<String>,
}

/// The launch type ECS reports for tasks on ECS Managed Instances.
pub(crate) const MANAGED_INSTANCES: &str = "MANAGED_INSTANCES";

/// A stopped task's attachments (its network interface) are deleted.
pub(crate) fn attachments_deleted(t: &mut StoredTask) {
    for a in &mut t.attachments {
        crate::status::set_attachment_status(a, AttachmentStatus::Deleted);
    }
}
