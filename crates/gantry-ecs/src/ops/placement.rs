//! Placement of EC2 and EXTERNAL tasks: turns the request's (and the task definition's)
//! constraints and strategies into the engine's, runs [`gantry_placement::engine::Fleet::place`]
//! on the cluster's fleet (kept current by [`crate::fleets`]), and commits the result in one
//! transaction that compare-and-swaps every instance it touches: if another placement got there
//! first, the whole plan is recomputed on the updated fleet (Nomad's optimistic plan apply).

use super::tasks::Reservation;
use crate::records::decode;
use crate::{ControlPlane, Ctx, Stored, keys};
use gantry_core::{EcsError, Result};
use gantry_model::*;
use gantry_placement::engine::{
    self, Constraint, Need, Reject, Request, Resource as Res, SpreadField, Strategy,
};
use gantry_placement::snapshot::{Instance, Usage};
use std::collections::BTreeMap;

/// ECS's limits on a request's placement settings.
const MAX_CONSTRAINTS: usize = 10;

/// Parses placement constraints (RunTask's, CreateService's, or a task definition's, which may
/// only use memberOf).
pub(crate) fn constraints(
    request: &[PlacementConstraint],
    task_definition: &[TaskDefinitionPlacementConstraint],
) -> Result<Vec<Constraint>> {
    if request.len() + task_definition.len() > MAX_CONSTRAINTS {
        return Err(EcsError::invalid(format!(
            "placementConstraints can have at most {MAX_CONSTRAINTS} items, counting the task definition's."
        )));
    }
    let mut out = Vec::new();
    let pairs = request
        .iter()
        .map(|c| (c.r#type.as_deref(), c.expression.as_deref()))
        .chain(task_definition.iter().map(|c| (c.r#type.as_deref(), c.expression.as_deref())));
    for (kind, expression) in pairs {
        match (kind, expression) {
            (Some("distinctInstance"), None | Some("")) => out.push(Constraint::DistinctInstance),
            (Some("distinctInstance"), Some(_)) => {
                return Err(EcsError::invalid("distinctInstance does not take an expression."));
            }
            (Some("memberOf"), Some(e)) if !e.trim().is_empty() => {
                out.push(Constraint::member_of(e).map_err(|err| EcsError::invalid(err.to_string()))?);
            }
            (Some("memberOf"), _) => {
                return Err(EcsError::invalid("memberOf requires an expression."));
            }
            (other, _) => {
                return Err(EcsError::invalid(format!(
                    "placement constraint type should be one of [distinctInstance,memberOf], but was '{}'.",
                    other.unwrap_or_default()
                )));
            }
        }
    }
    Ok(out)
}

/// Parses placement strategies.
pub(crate) fn strategies(list: &[PlacementStrategy]) -> Result<Vec<Strategy>> {
    if list.len() > engine::MAX_STRATEGIES {
        return Err(EcsError::invalid(format!(
            "placementStrategy can have at most {} items.",
            engine::MAX_STRATEGIES
        )));
    }
    list.iter()
        .map(|s| {
            let field = s.field.as_deref().unwrap_or("");
            Ok(match s.r#type.as_deref() {
                Some("random") => Strategy::Random,
                Some("binpack") => match field.to_ascii_lowercase().as_str() {
                    "cpu" => Strategy::Binpack(Res::Cpu),
                    "memory" => Strategy::Binpack(Res::Memory),
                    _ => {
                        return Err(EcsError::invalid(format!(
                            "binpack placement strategy field should be cpu or memory, but was '{field}'."
                        )));
                    }
                },
                Some("spread") => match field {
                    "instanceId" | "host" => Strategy::Spread(SpreadField::Instance),
                    f if f.starts_with("attribute:") && f.len() > "attribute:".len() => {
                        Strategy::Spread(SpreadField::Attribute(f["attribute:".len()..].to_string()))
                    }
                    _ => {
                        return Err(EcsError::invalid(format!(
                            "spread placement strategy field should be instanceId, host or attribute:NAME, but was '{field}'."
                        )));
                    }
                },
                other => {
                    return Err(EcsError::invalid(format!(
                        "placement strategy type should be one of [random,spread,binpack], but was '{}'.",
                        other.unwrap_or_default()
                    )));
                }
            })
        })
        .collect()
}

fn resource_int(resources: &[Resource], name: &str) -> i64 {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .map(|r| r.integer_value as i64 + r.long_value)
        .unwrap_or(0)
}

fn resource_ports(resources: &[Resource], name: &str) -> Vec<u16> {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .and_then(|r| r.string_set_value.as_ref())
        .map(|v| v.iter().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// GPUs: an integer resource, or a string set of device IDs.
fn resource_gpus(resources: &[Resource]) -> i64 {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some("GPU"))
        .map(|r| match &r.string_set_value {
            Some(ids) => ids.len() as i64,
            None => r.integer_value as i64 + r.long_value,
        })
        .unwrap_or(0)
}

/// A container instance record and the engine's view of it (its tasks' groups counted from the
/// node index, so no task record is read). `agent_connected` is left false: placement asks the
/// agent registry when it matters.
pub(crate) fn engine_instance(
    store: &dyn gantry_store::Store,
    kv: &gantry_store::KeyValue,
) -> Result<(Stored<ContainerInstance>, Instance)> {
    let ci = decode::<ContainerInstance>(kv)?;
    let c = &ci.value;
    let arn = c.container_instance_arn.clone().unwrap_or_default();
    let registered = c.registered_resources.as_deref().unwrap_or_default();
    let mut inst = Instance {
        id: arn.rsplit('/').next().unwrap_or_default().to_string(),
        status: c.status.clone().unwrap_or_default(),
        agent_connected: false,
        ec2_instance_id: c.ec2_instance_id.clone().unwrap_or_default(),
        agent_version: c.version_info.as_ref().and_then(|v| v.agent_version.clone()),
        registered_at_ms: c.registered_at.map(|s| (s * 1000.0) as i64).unwrap_or(0),
        attributes: c.attributes.iter().flatten().map(|a| (a.name.clone(), a.value.clone())).collect(),
        cpu: 0,
        memory: 0,
        gpus: 0,
        ports_tcp: Vec::new(),
        ports_udp: Vec::new(),
        total_cpu: resource_int(registered, "CPU"),
        total_memory: resource_int(registered, "MEMORY"),
        running_tasks: 0,
        task_groups: BTreeMap::new(),
        arn,
    };
    inst.set_usage(usage_of(store, &inst.arn, c.remaining_resources.as_deref().unwrap_or_default()));
    Ok((ci, inst))
}

/// What the instance `arn` has left (its record's `remaining`) and the tasks it runs (counted,
/// with their groups, from the node index).
pub(crate) fn usage_of(store: &dyn gantry_store::Store, arn: &str, remaining: &[Resource]) -> Usage {
    let mut u = Usage {
        cpu: resource_int(remaining, "CPU"),
        memory: resource_int(remaining, "MEMORY"),
        gpus: resource_gpus(remaining),
        ports_tcp: resource_ports(remaining, "PORTS"),
        ports_udp: resource_ports(remaining, "PORTS_UDP"),
        ..Usage::default()
    };
    let (running, groups) = (&mut u.running_tasks, &mut u.task_groups);
    store.visit(&keys::node_tasks_prefix(arn), &mut |kv| {
        let (_, group) = keys::node_task_value_parts(&kv.value);
        *running += 1;
        if !group.is_empty() {
            match groups.get_mut(group) {
                Some(n) => *n += 1,
                None => {
                    groups.insert(group.to_string(), 1);
                }
            }
        }
    });
    u
}

/// What a request needs from one instance.
pub(crate) fn need(r: &Reservation, td: &TaskDefinition) -> Need {
    let gpus = td
        .container_definitions
        .iter()
        .flatten()
        .flat_map(|c| c.resource_requirements.iter().flatten())
        .filter(|r| r.r#type == "GPU")
        .filter_map(|r| r.value.as_deref().and_then(|v| v.parse::<i64>().ok()))
        .sum();
    Need {
        cpu: r.cpu,
        memory: r.memory,
        gpus,
        ports_tcp: r.ports_tcp.clone(),
        ports_udp: r.ports_udp.clone(),
        attributes: td
            .requires_attributes
            .iter()
            .flatten()
            .map(|a| (a.name.clone(), a.value.clone()))
            .collect(),
    }
}

/// ECS's `failures[]` for what the engine rejected, one per instance.
pub(crate) fn failures(view: &[Instance], rejections: &[(usize, Reject)]) -> Vec<Failure> {
    rejections
        .iter()
        .map(|(i, r)| Failure {
            arn: Some(view[*i].arn.clone()),
            reason: Some(r.ecs_reason().to_string()),
            // ECS gives no detail here; the explanation is in the log and GantryExplainPlacement.
            detail: None,
        })
        .collect()
}

/// A seed from the request and the store revision: the same request on the same state always
/// places the same way.
pub(crate) fn seed(parts: &[&str], revision: i64) -> u64 {
    // FNV-1a, then the revision.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    h ^ (revision as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// One instance's verdict in a placement explanation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub container_instance_arn: String,
    /// Whether one more task of the request fits there now.
    pub fits: bool,
    /// ECS's failure reason when it does not fit (RESOURCE:MEMORY, MemberOf, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

/// Gantry's answer to "why can't this task be placed?".
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub cluster_arn: String,
    pub task_definition_arn: String,
    pub instances: Vec<Verdict>,
}

impl ControlPlane {
    /// For a RunTask request, says for each instance of the cluster whether a task would fit and,
    /// if not, which check rejects it. Nothing is placed.
    pub fn explain_placement(&self, ctx: &Ctx, req: RunTaskRequest) -> Result<Explanation> {
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name.clone().unwrap_or_default();
        let td = self
            .find_task_definition(ctx, &req.task_definition)?
            .ok_or_else(|| EcsError::client("TaskDefinition not found."))?
            .value
            .definition;
        let p = super::tasks::plan(&td, req.overrides.as_ref(), false)?;
        let family = p.def.family.clone().unwrap_or_default();
        let request = Request {
            need: need(&p.need, &p.def),
            count: 1,
            group: req.group.clone().unwrap_or_else(|| format!("family:{family}")),
            constraints: constraints(
                req.placement_constraints.as_deref().unwrap_or_default(),
                p.def.placement_constraints.as_deref().unwrap_or_default(),
            )?,
            strategies: vec![],
            seed: 0,
        };
        let cf = self.cluster_fleet(ctx, &cname)?;
        let cf = cf.read().unwrap_or_else(|e| e.into_inner());
        let view = cf.fleet.instances();
        let now = self.clock.now();
        let instances = cf
            .fleet
            .explain(&request, &|i| self.agents.connected(&view[i].arn, now))
            .into_iter()
            .map(|(i, r)| Verdict {
                container_instance_arn: view[i].arn.clone(),
                fits: r.is_none(),
                reason: r.as_ref().map(|r| r.ecs_reason().to_string()),
                explanation: r.as_ref().map(Reject::explain),
            })
            .collect();
        Ok(Explanation {
            cluster_arn: cluster.value.cluster_arn.unwrap_or_default(),
            task_definition_arn: td.task_definition_arn.unwrap_or_default(),
            instances,
        })
    }
}
