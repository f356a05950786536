//! The agent side of the control plane: DiscoverPollEndpoint, UpdateContainerInstancesState,
//! Fargate node registration, assignments for a node's long poll, and health reports.

use super::instance_record::InstanceRecord;
use super::tasks::{FargateNode, StoredContainer, TaskRecord};
use crate::records::{decode, encode, load};
use crate::table::TxnExt;
use crate::{ControlPlane, Ctx, keys};
use gantry_core::arn::cluster_name;
use gantry_core::protocol::{
    Assignment, FargateRegistration, RawAssignment, SharedJson, TaskHealthReport, fargate_node_name,
};
use gantry_core::{Arn, EcsError, HealthStatus, InstanceStatus, Result, Scope};
use gantry_model::*;
use gantry_store::Txn;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// What a poll reads of a task record: the task as JSON, and its network configuration.
#[derive(serde::Deserialize)]
struct RawTaskRecord {
    task: Box<RawValue>,
    network_configuration: Option<Box<RawValue>>,
}

/// What a poll reads of the task itself.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskHead {
    task_arn: Option<String>,
    task_definition_arn: Option<String>,
    last_status: Option<String>,
    launch_type: Option<String>,
    overrides: Option<TaskOverride>,
}

fn ctx_from_task_arn(arn: &str) -> Result<(Ctx, String, String)> {
    let a = Arn::parse(arn)
        .filter(|a| a.resource_type == "task")
        .ok_or_else(|| EcsError::invalid(format!("Invalid task ARN: {arn}")))?;
    let (cluster, id) =
        a.resource.split_once('/').ok_or_else(|| EcsError::invalid(format!("Invalid task ARN: {arn}")))?;
    Ok((Ctx::root(Scope::new(a.account.clone(), a.region.clone())), cluster.to_string(), id.to_string()))
}

impl ControlPlane {
    pub fn discover_poll_endpoint(
        &self,
        ctx: &Ctx,
        req: DiscoverPollEndpointRequest,
        base_url: &str,
    ) -> Result<DiscoverPollEndpointResponse> {
        if req.cluster.is_some() {
            self.active_cluster(ctx, req.cluster.as_deref())?;
        }
        // With several servers on one store, one of those up, the same for one instance.
        let base = self.poll_server_for(req.container_instance.as_deref(), base_url);
        let endpoint = format!("{}/_gantry/agent/v1/", base.trim_end_matches('/'));
        Ok(DiscoverPollEndpointResponse {
            endpoint: Some(endpoint.clone()),
            telemetry_endpoint: Some(endpoint.clone()),
            service_connect_endpoint: Some(endpoint),
        })
    }

    pub async fn update_container_instances_state(
        &self,
        ctx: &Ctx,
        req: UpdateContainerInstancesStateRequest,
    ) -> Result<UpdateContainerInstancesStateResponse> {
        let status = match InstanceStatus::parse(&req.status) {
            Some(s) if InstanceStatus::REGISTERED.contains(&s) => s,
            _ => {
                return Err(EcsError::invalid(format!(
                    "Container instances status can only be ACTIVE or DRAINING, but was '{}'.",
                    req.status
                )));
            }
        };
        if req.container_instances.is_empty() {
            return Err(EcsError::invalid("Container Instances cannot be empty."));
        }
        super::check_batch("containerInstances", req.container_instances.len(), 10)?;
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name;
        let mut out = Vec::new();
        let mut failures = Vec::new();
        for r in &req.container_instances {
            let updated = self
                .retry(|| {
                    let Some(mut i) = self.load_instance(ctx, &cname, r)? else {
                        return Ok((Txn::new(), None));
                    };
                    if !i.value.is_live() {
                        return Ok((Txn::new(), None));
                    }
                    let before = InstanceRecord::before(&ctx.scope, &i);
                    i.value.status = status;
                    i.value.version += 1;
                    let txn = Txn::new().put_record(&ctx.scope, &before, &i.value);
                    Ok((txn, Some(i.value)))
                })
                .await?;
            match updated {
                Some(i) => out.push(self.render_instance(&i)),
                None => failures.push(super::missing(r, |r| ctx.scope.container_instance_arn(&cname, r))),
            }
        }
        Ok(UpdateContainerInstancesStateResponse { container_instances: Some(out), failures: Some(failures) })
    }

    /// Fills what a container instance record does not store: whether its agent is connected
    /// and its task counts.
    pub(crate) fn render_instance(&self, r: &InstanceRecord) -> ContainerInstance {
        let mut i = r.to_wire();
        let arn = r.container_instance_arn.as_str();
        i.agent_connected = r.is_live() && self.agents.connected(arn, self.clock.now());
        // The instance's counters, kept with its tasks' states (`TaskRecord::counters`).
        let (scope, cluster, id) = match Arn::parse(arn) {
            Some(a) => {
                let (c, id) = a.resource.split_once('/').unwrap_or(("", &a.resource));
                (
                    Scope { account: a.account.clone(), region: a.region.clone() },
                    c.to_string(),
                    id.to_string(),
                )
            }
            None => return i,
        };
        let count = |what: &str| {
            let kv = self.store.get(&keys::instance_count(&scope, &cluster, &id, what));
            kv.map_or(0, |kv| gantry_store::counter(&kv.value).clamp(0, i32::MAX as i64) as i32)
        };
        i.running_tasks_count = count("running");
        i.pending_tasks_count = count("pending");
        i
    }

    /// Registers (or re-registers) a Fargate node. Its remaining capacity is recomputed from the
    /// tasks it holds, so a restart never leaks or double-counts capacity.
    pub async fn register_fargate_node(&self, reg: FargateRegistration) -> Result<FargateNode> {
        if reg.node_id.is_empty() || !reg.node_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(EcsError::invalid(format!("Invalid Fargate node id '{}'.", reg.node_id)));
        }
        let key = keys::fargate_node(&reg.node_id);
        let node = fargate_node_name(&reg.node_id);
        self.retry(|| {
            let existing = load::<FargateNode>(&*self.store, &key)?;
            let (mut cpu, mut memory) = (reg.cpu, reg.memory);
            for kv in self.store.range(&keys::node_tasks_prefix(&node), None, usize::MAX) {
                let (tkey, _) = keys::node_task_value_parts(&kv.value);
                if let Some(t) = load::<TaskRecord>(&*self.store, tkey)? {
                    cpu -= t.value.reserved.cpu;
                    memory -= t.value.reserved.memory;
                }
            }
            let n = FargateNode {
                id: reg.node_id.clone(),
                cpu: reg.cpu,
                memory: reg.memory,
                remaining_cpu: cpu,
                remaining_memory: memory,
                availability_zone: reg.availability_zone.clone().unwrap_or_else(|| "local-1a".into()),
            };
            let rev = existing.map_or(0, |e| e.mod_revision);
            Ok((Txn::new().when(&key, rev).put(&key, encode(&n)), n))
        })
        .await
    }

    /// Everything assigned to a node that is not STOPPED yet, with the task definitions.
    pub fn assignments(&self, node: &str) -> Result<Vec<Assignment>> {
        Ok(self.assignment_delta(node, None)?.0)
    }

    /// [`Self::assignment_delta_json`], typed.
    pub fn assignment_delta(
        &self,
        node: &str,
        known: Option<&BTreeMap<String, i64>>,
    ) -> Result<(Vec<Assignment>, Vec<String>)> {
        let (raw, removed) = self.assignment_delta_json(node, known)?;
        let typed = raw
            .iter()
            .map(|a| a.parse().map_err(|e| EcsError::server(format!("An assignment could not be read: {e}"))))
            .collect::<Result<_>>()?;
        Ok((typed, removed))
    }

    /// What a node's poll answers: the tasks assigned to it that the agent does not hold at their
    /// current revision (all of them when `known` is `None`), and the IDs of known tasks that
    /// are no longer assigned.
    ///
    /// A task's revision is the modification revision of its `/_node/NODE/TASK` index entry,
    /// which placement creates and [`Self::reassign`] rewrites for every change the agent must
    /// act on; the agent's own state reports leave it alone. A poll therefore reads only index
    /// entries (from the mirror) plus the tasks that changed, not every task on the node.
    ///
    /// The answer is JSON already: each task as its record stores it, and its definition as the
    /// agent runs it, rendered once per revision and shared.
    pub fn assignment_delta_json(
        &self,
        node: &str,
        known: Option<&BTreeMap<String, i64>>,
    ) -> Result<(Vec<RawAssignment>, Vec<String>)> {
        let mut out = Vec::new();
        // Known tasks still assigned at the revision the agent has (borrowed from `known`), and
        // the index entries to read: (task ID, task key, revision).
        let mut current: HashSet<&str> = HashSet::new();
        let mut changed: Vec<(String, String, i64)> = Vec::new();
        self.store.visit(&keys::node_tasks_prefix(node), &mut |kv| {
            let id = kv.key.rsplit('/').next().unwrap_or_default();
            match known.and_then(|k| k.get_key_value(id)) {
                Some((id, rev)) if *rev == kv.mod_revision => {
                    current.insert(id.as_str());
                }
                _ => {
                    let (key, _) = keys::node_task_value_parts(&kv.value);
                    changed.push((id.to_string(), key.to_string(), kv.mod_revision));
                }
            }
        });
        let mut still: HashSet<String> = HashSet::new();
        for (id, key, revision) in changed {
            let Some(rec) = load::<RawTaskRecord>(&*self.store, &key)? else { continue };
            let rec = rec.value;
            let t: TaskHead = serde_json::from_str(rec.task.get())
                .map_err(|e| EcsError::server(format!("The stored record {key} could not be read: {e}")))?;
            if t.last_status.as_deref().and_then(gantry_core::TaskStatus::parse)
                == Some(gantry_core::TaskStatus::Stopped)
            {
                continue;
            }
            still.insert(id);
            let arn = t.task_arn.clone().unwrap_or_default();
            let (ctx, _, _) = ctx_from_task_arn(&arn)?;
            let td_arn = t.task_definition_arn.clone().unwrap_or_default();
            // The agent runs the definition as the task's overrides changed it. A revision never
            // changes, so without overrides the result is the same for every task of it: it is
            // worked out and rendered once (polls repeat it for every task on the node).
            let fargate = t.launch_type.as_deref() == Some("FARGATE");
            let plain = t.overrides.as_ref().is_none_or(|o| *o == TaskOverride::default());
            let cached = if plain { self.planned_definition(&td_arn, fargate) } else { None };
            let definition = match cached {
                Some(d) => d,
                None => {
                    let Some(td) = self.find_task_definition(&ctx, &td_arn)? else { continue };
                    let def = crate::reservation::plan(
                        &td.value.definition.into_wire(),
                        t.overrides.as_ref(),
                        fargate,
                    )?
                    .def;
                    let json = serde_json::value::to_raw_value(&def).map_err(|e| {
                        EcsError::server(format!("The task definition could not be rendered: {e}"))
                    })?;
                    let json = SharedJson(Arc::from(json));
                    if plain {
                        self.remember_planned_definition(&td_arn, fargate, &json);
                    }
                    json
                }
            };
            out.push(RawAssignment {
                task: rec.task,
                task_definition: definition,
                network_configuration: rec.network_configuration,
                revision,
            });
        }
        let removed = known
            .map(|k| {
                k.keys()
                    .filter(|id| !current.contains(id.as_str()) && !still.contains(id.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Ok((out, removed))
    }

    /// Adds to `txn` a rewrite of the task's node index entry (guarded by its revision), so the
    /// node's agent is handed the task again at its next poll. Every change an agent must act on
    /// (today: the desired status) goes with one; bump the node after the commit to wake it.
    pub(crate) fn reassign(&self, txn: Txn, node: &str, task_key: &str) -> Txn {
        let index = keys::node_task(node, task_key.rsplit('/').next().unwrap_or_default());
        match self.store.get(&index) {
            Some(kv) => txn.when(&index, kv.mod_revision).put(&index, kv.value.to_vec()),
            None => txn,
        }
    }

    fn planned_definition(&self, td_arn: &str, fargate: bool) -> Option<SharedJson> {
        let cache = self.planned.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(&(td_arn.to_string(), fargate)).cloned()
    }

    fn remember_planned_definition(&self, td_arn: &str, fargate: bool, def: &SharedJson) {
        let mut cache = self.planned.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a full cache starts over.
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert((td_arn.to_string(), fargate), def.clone());
    }

    /// Applies a health report: container health, the task's health (UNHEALTHY if an essential
    /// container is, HEALTHY when every essential container with a check is), and the task IP.
    pub async fn report_task_health(&self, report: TaskHealthReport) -> Result<()> {
        let (ctx, cluster, id) = ctx_from_task_arn(&report.task_arn)?;
        let key = keys::task(&ctx.scope, &cluster, &id);
        self.retry(|| {
            let Some(mut rec) = load::<TaskRecord>(&*self.store, &key)? else {
                return Ok((Txn::new(), ()));
            };
            let td = self
                .find_task_definition(&ctx, &rec.value.task.task_definition_arn)?
                .map(|t| t.value.definition.into_wire());
            let t = &mut rec.value.task;
            let before = serde_json::to_vec(t).unwrap_or_default();
            for (name, status) in &report.containers {
                // A health status that is none of ECS's is not recorded.
                if let Some(c) = t.container_mut(name)
                    && let Some(status) = HealthStatus::parse(status)
                {
                    c.health_status = Some(status);
                }
            }
            let essential_checked: Vec<&StoredContainer> = t
                .containers
                .iter()
                .filter(|c| {
                    td.as_ref()
                        .and_then(|d| d.container_definitions.as_ref())
                        .and_then(|defs| defs.iter().find(|d| d.name.as_deref() == Some(c.name.as_str())))
                        .is_some_and(|d| d.essential.unwrap_or(true) && d.health_check.is_some())
                })
                .collect();
            let health = |c: &&StoredContainer| c.health_status;
            let health = if essential_checked.iter().any(|c| health(c) == Some(HealthStatus::Unhealthy)) {
                HealthStatus::Unhealthy
            } else if !essential_checked.is_empty()
                && essential_checked.iter().all(|c| health(c) == Some(HealthStatus::Healthy))
            {
                HealthStatus::Healthy
            } else {
                HealthStatus::Unknown
            };
            t.health_status = health;
            if let Some(ip) = &report.private_ipv4_address {
                for c in &mut t.containers {
                    c.network_interfaces = vec![NetworkInterface {
                        attachment_id: t.attachments.first().and_then(|a| a.id.clone()),
                        private_ipv4_address: Some(ip.clone()),
                        ipv6_address: None,
                    }];
                }
                for a in &mut t.attachments {
                    for d in a.details.iter_mut().flatten() {
                        if d.name.as_deref() == Some("privateIPv4Address") {
                            d.value = Some(ip.clone());
                        }
                    }
                }
            }
            if serde_json::to_vec(t).unwrap_or_default() == before {
                return Ok((Txn::new(), ()));
            }
            t.version += 1;
            Ok((Txn::new().when(&rec.key, rec.mod_revision).put(&rec.key, encode(&rec.value)), ()))
        })
        .await
    }

    /// The cluster name of a reference, for agent calls that name a cluster.
    pub fn cluster_name_of(&self, ctx: &Ctx, reference: Option<&str>) -> Result<String> {
        cluster_name(&ctx.scope, reference)
    }

    #[doc(hidden)]
    pub fn fargate_nodes(&self) -> Result<Vec<FargateNode>> {
        self.store
            .range(&keys::fargate_node_prefix(), None, usize::MAX)
            .iter()
            .map(|kv| decode(kv).map(|s| s.value))
            .collect()
    }
}
