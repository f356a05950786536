//! The placement pipeline: feasibility checks, then rankers, then select, for each task of a
//! request in turn, counting every placed task before placing the next.
//!
//! The engine never allocates per candidate: candidate order comes from a seeded hash of the
//! instance's position rather than a shuffled copy, state changed by earlier tasks of the same
//! request lives in a small overlay, and spread counts are computed once and updated as tasks are
//! placed.

use crate::snapshot::Instance;
use std::collections::HashMap;

/// A placement strategy (best effort, in the order given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Prefer the instance with the least of the resource left: `binpack(cpu|memory)`.
    Binpack(Resource),
    /// Spread tasks of the group evenly over the values of a field.
    Spread(SpreadField),
    /// Any feasible instance, chosen by the seed.
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadField {
    /// `instanceId` (or `host`): one value per instance.
    Instance,
    /// `attribute:NAME`.
    Attribute(String),
}

/// A placement constraint (binding).
pub enum Constraint {
    /// No two tasks of the group on one instance.
    DistinctInstance,
    /// Only instances for which the cluster query expression holds.
    MemberOf { expression: String, test: Box<dyn Fn(&Instance) -> bool + Send + Sync> },
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Constraint::DistinctInstance => f.write_str("distinctInstance"),
            Constraint::MemberOf { expression, .. } => write!(f, "memberOf({expression})"),
        }
    }
}

/// What one task needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Need {
    pub cpu: i64,
    pub memory: i64,
    pub gpus: i64,
    pub ports_tcp: Vec<u16>,
    pub ports_udp: Vec<u16>,
    /// Attributes the task definition requires (`requiresAttributes`): name, and value if any.
    pub attributes: Vec<(String, Option<String>)>,
}

/// A placement request: `count` identical tasks of one group.
#[derive(Debug)]
pub struct Request {
    pub need: Need,
    pub count: usize,
    /// The task group (`family:NAME`, `service:NAME`, or the caller's).
    pub group: String,
    pub constraints: Vec<Constraint>,
    pub strategies: Vec<Strategy>,
    /// Seeds candidate order and random choices: derived from the task and the store revision.
    pub seed: u64,
}

/// Why an instance cannot take a task: the first check it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    NotActive(String),
    Agent,
    Cpu,
    Memory,
    Gpu,
    Ports,
    Attribute(String),
    DistinctInstance,
    MemberOf,
}

impl Reject {
    /// The reason ECS puts in `failures[].reason`.
    pub fn ecs_reason(&self) -> &'static str {
        match self {
            Reject::NotActive(_) => "INACTIVE",
            Reject::Agent => "AGENT",
            Reject::Cpu => "RESOURCE:CPU",
            Reject::Memory => "RESOURCE:MEMORY",
            Reject::Gpu => "RESOURCE:GPU",
            Reject::Ports => "RESOURCE:PORTS",
            Reject::Attribute(_) => "ATTRIBUTE",
            Reject::DistinctInstance => "DistinctInstance",
            Reject::MemberOf => "MemberOf",
        }
    }

    /// A sentence for people (the explanation).
    pub fn explain(&self) -> String {
        match self {
            Reject::NotActive(s) => format!("the instance is {s}, not ACTIVE"),
            Reject::Agent => "its agent is not connected".into(),
            Reject::Cpu => "not enough CPU left".into(),
            Reject::Memory => "not enough memory left".into(),
            Reject::Gpu => "not enough GPUs left".into(),
            Reject::Ports => "a required host port is in use".into(),
            Reject::Attribute(a) => format!("it lacks the required attribute {a}"),
            Reject::DistinctInstance => "it already runs a task of the group (distinctInstance)".into(),
            Reject::MemberOf => "the memberOf expression is false for it".into(),
        }
    }
}

/// The outcome: an instance index per placed task (in order), and, if some could not be placed,
/// why each instance rejected the first of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    pub chosen: Vec<usize>,
    pub rejections: Vec<(usize, Reject)>,
}

/// What earlier tasks of this request changed on an instance.
#[derive(Debug, Clone, Default)]
struct Delta {
    cpu: i64,
    memory: i64,
    gpus: i64,
    group_tasks: i64,
    ports_tcp: Vec<u16>,
    ports_udp: Vec<u16>,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The first check `inst` fails for one more task, given what earlier tasks took.
fn check(inst: &Instance, d: Option<&Delta>, req: &Request) -> Option<Reject> {
    let n = &req.need;
    if inst.status != "ACTIVE" {
        return Some(Reject::NotActive(inst.status.clone()));
    }
    if !inst.agent_connected {
        return Some(Reject::Agent);
    }
    let (dc, dm, dg) = d.map_or((0, 0, 0), |d| (d.cpu, d.memory, d.gpus));
    if inst.cpu - dc < n.cpu {
        return Some(Reject::Cpu);
    }
    if inst.memory - dm < n.memory {
        return Some(Reject::Memory);
    }
    if n.gpus > 0 && inst.gpus - dg < n.gpus {
        return Some(Reject::Gpu);
    }
    let taken = |p: &u16, base: &[u16], extra: Option<&Vec<u16>>| {
        base.contains(p) || extra.is_some_and(|e| e.contains(p))
    };
    if n.ports_tcp.iter().any(|p| taken(p, &inst.ports_tcp, d.map(|d| &d.ports_tcp)))
        || n.ports_udp.iter().any(|p| taken(p, &inst.ports_udp, d.map(|d| &d.ports_udp)))
    {
        return Some(Reject::Ports);
    }
    for (name, value) in &n.attributes {
        let ok = match (inst.attributes.get(name), value) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(have), Some(want)) => have.as_deref() == Some(want.as_str()),
        };
        if !ok {
            return Some(Reject::Attribute(name.clone()));
        }
    }
    for c in &req.constraints {
        match c {
            Constraint::DistinctInstance => {
                let here =
                    inst.task_groups.get(&req.group).copied().unwrap_or(0) + d.map_or(0, |d| d.group_tasks);
                if here > 0 {
                    return Some(Reject::DistinctInstance);
                }
            }
            Constraint::MemberOf { test, .. } => {
                if !test(inst) {
                    return Some(Reject::MemberOf);
                }
            }
        }
    }
    None
}

/// The value of a spread field on an instance.
fn spread_value<'a>(inst: &'a Instance, field: &SpreadField) -> Option<&'a str> {
    match field {
        SpreadField::Instance => Some(inst.arn.as_str()),
        SpreadField::Attribute(name) => inst.attributes.get(name).map(|v| v.as_deref().unwrap_or("")),
    }
}

/// Places the request's tasks on `instances`.
pub fn place(instances: &[Instance], req: &Request) -> Placement {
    let mut deltas: HashMap<usize, Delta> = HashMap::new();
    // Tasks of the group per spread value, for every spread strategy (index-aligned); the values
    // are borrowed from the snapshot, so nothing is allocated per instance.
    let mut spread_counts: Vec<HashMap<&str, i64>> = req
        .strategies
        .iter()
        .map(|s| match s {
            Strategy::Spread(f @ SpreadField::Attribute(_)) => {
                let mut m: HashMap<&str, i64> = HashMap::new();
                for i in instances {
                    // Every value an eligible instance has counts, even at zero tasks.
                    if let Some(v) = spread_value(i, f) {
                        *m.entry(v).or_default() += i.task_groups.get(&req.group).copied().unwrap_or(0);
                    }
                }
                m
            }
            _ => HashMap::new(),
        })
        .collect();
    let mut out = Placement::default();
    for task in 0..req.count {
        let mut best: Option<(usize, Key, u64)> = None;
        for (idx, inst) in instances.iter().enumerate() {
            let d = deltas.get(&idx);
            if check(inst, d, req).is_some() {
                continue;
            }
            let key = rank_key(inst, d, req, &spread_counts);
            let tie =
                splitmix(req.seed ^ splitmix(idx as u64) ^ (task as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let better = match &best {
                None => true,
                Some((_, bk, bt)) => (&key, tie) < (bk, *bt),
            };
            if better {
                best = Some((idx, key, tie));
            }
        }
        let Some((idx, _, _)) = best else {
            out.rejections = explain_one(instances, &deltas, req);
            break;
        };
        let inst = &instances[idx];
        let d = deltas.entry(idx).or_default();
        d.cpu += req.need.cpu;
        d.memory += req.need.memory;
        d.gpus += req.need.gpus;
        d.group_tasks += 1;
        d.ports_tcp.extend(&req.need.ports_tcp);
        d.ports_udp.extend(&req.need.ports_udp);
        for (s, counts) in req.strategies.iter().zip(spread_counts.iter_mut()) {
            if let Strategy::Spread(f @ SpreadField::Attribute(_)) = s
                && let Some(v) = spread_value(inst, f)
            {
                *counts.entry(v).or_default() += 1;
            }
        }
        out.chosen.push(idx);
    }
    out
}

/// ECS takes at most five strategies.
pub const MAX_STRATEGIES: usize = 5;

/// A candidate's rank: lower is better, strategy by strategy.
type Key = [i64; MAX_STRATEGIES];

fn rank_key(inst: &Instance, d: Option<&Delta>, req: &Request, spread_counts: &[HashMap<&str, i64>]) -> Key {
    let mut key = [0; MAX_STRATEGIES];
    for ((s, counts), slot) in req.strategies.iter().zip(spread_counts).zip(key.iter_mut()) {
        *slot = match s {
            Strategy::Binpack(Resource::Cpu) => inst.cpu - d.map_or(0, |d| d.cpu) - req.need.cpu,
            Strategy::Binpack(Resource::Memory) => inst.memory - d.map_or(0, |d| d.memory) - req.need.memory,
            Strategy::Spread(SpreadField::Instance) => {
                inst.task_groups.get(&req.group).copied().unwrap_or(0) + d.map_or(0, |d| d.group_tasks)
            }
            Strategy::Spread(f) => {
                spread_value(inst, f).and_then(|v| counts.get(v)).copied().unwrap_or(i64::MAX)
            }
            Strategy::Random => 0,
        };
    }
    key
}

/// Why each instance rejects one more task (for failures and the explanation).
fn explain_one(
    instances: &[Instance],
    deltas: &HashMap<usize, Delta>,
    req: &Request,
) -> Vec<(usize, Reject)> {
    instances
        .iter()
        .enumerate()
        .filter_map(|(i, inst)| check(inst, deltas.get(&i), req).map(|r| (i, r)))
        .collect()
}

/// For every instance, whether it could take one task of the request now, and if not, why.
pub fn explain(instances: &[Instance], req: &Request) -> Vec<(usize, Option<Reject>)> {
    instances.iter().enumerate().map(|(i, inst)| (i, check(inst, None, req))).collect()
}
