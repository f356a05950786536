//! Placement of EC2 and EXTERNAL tasks: turns the request's (and the task definition's)
//! constraints and strategies into the engine's, runs [`gantry_placement::engine::Fleet::place`]
//! on the cluster's fleet (kept current by [`crate::fleets`]), and commits the result in one
//! transaction that compare-and-swaps every instance it touches: if another placement got there
//! first, the whole plan is recomputed on the updated fleet (Nomad's optimistic plan apply).

use crate::reservation::{need, plan};
use crate::{ControlPlane, Ctx};
use gantry_core::{EcsError, Result};
use gantry_model::*;
use gantry_placement::engine::{self, Constraint, Reject, Request, Resource as Res, SpreadField, Strategy};
use gantry_placement::snapshot::Instance;

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
        let cname = cluster.value.cluster_name.clone();
        let td = self
            .find_task_definition(ctx, &req.task_definition)?
            .ok_or_else(|| EcsError::client("TaskDefinition not found."))?
            .value
            .definition
            .into_wire();
        let p = plan(&td, req.overrides.as_ref(), false)?;
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
            cluster_arn: cluster.value.cluster_arn,
            task_definition_arn: td.task_definition_arn.unwrap_or_default(),
            instances,
        })
    }
}
