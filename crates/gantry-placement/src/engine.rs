//! The placement pipeline: feasibility checks, then rankers, then select, for each task of a
//! request in turn, counting every placed task before placing the next.
//!
//! The engine works on a [`Fleet`]: the instances plus column arrays of what every placement
//! reads (state, remaining CPU, memory and GPUs, a per-instance salt), an index of task groups,
//! and caches of spread-attribute columns and memberOf results. A fleet is built once and kept
//! current with [`Fleet::upsert`] and [`Fleet::remove`], so a placement walks a few flat arrays:
//!
//! * Candidate order is a seeded hash of each instance's salt (derived from its ARN), not a
//!   shuffled copy, so the result depends on the fleet's contents and the seed, never on the
//!   order instances were added in.
//! * The hot loop checks only the column checks (state, CPU, memory, GPUs, cached memberOf) and
//!   computes the rank key; the remaining checks (agent connected, ports, requiresAttributes,
//!   distinctInstance, memberOf over tasks) run only for a candidate that would become the best so
//!   far. The winner has passed every check; the failure reasons, when nothing fits, come from
//!   running every check in ECS's order on every instance.
//! * State changed by earlier tasks of the same request lives in a small overlay, marked in a
//!   bitmap, and spread counts are computed once per request from the group index and updated as
//!   tasks are placed.

use crate::query::{Expr, QueryError};
use crate::snapshot::{Instance, Usage};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

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
    /// Only instances for which the cluster query expression holds. When `cacheable` (the
    /// expression reads nothing that placing tasks changes), a fleet evaluates it once per
    /// instance and remembers the result by `expression` until the instance changes.
    MemberOf { expression: String, cacheable: bool, test: Box<dyn Fn(&Instance) -> bool + Send + Sync> },
}

impl Constraint {
    /// `memberOf(expression)`, parsed.
    pub fn member_of(expression: &str) -> Result<Constraint, QueryError> {
        let expr: Expr = crate::query::parse(expression)?;
        Ok(Constraint::MemberOf {
            expression: expression.to_string(),
            cacheable: !expr.depends_on_tasks(),
            test: Box::new(move |i| expr.eval(i)),
        })
    }
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

/// An instance's salt: a hash of its ARN, so candidate order does not depend on positions.
fn salt(arn: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in arn.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    splitmix(h)
}

/// No value: the instance lacks the attribute.
const ABSENT: u32 = u32::MAX;

/// One attribute's values over a fleet, interned: the value's number per instance.
#[derive(Debug, Clone, Default)]
struct AttrColumn {
    ids: Vec<u32>,
    /// The instances with each value.
    members: Vec<Vec<u32>>,
    lookup: HashMap<String, u32>,
}

impl AttrColumn {
    fn build(instances: &[Instance], name: &str) -> AttrColumn {
        let mut col = AttrColumn { ids: Vec::with_capacity(instances.len()), ..Default::default() };
        for (idx, i) in instances.iter().enumerate() {
            let id = col.intern(i, name);
            col.ids.push(ABSENT);
            col.set(idx, id);
        }
        col
    }

    /// Gives instance `idx` value `id`.
    fn set(&mut self, idx: usize, id: u32) {
        let old = self.ids[idx];
        if old == id {
            return;
        }
        if old != ABSENT {
            self.members[old as usize].retain(|i| *i as usize != idx);
        }
        if id != ABSENT {
            self.members[id as usize].push(idx as u32);
        }
        self.ids[idx] = id;
    }

    /// Removes instance `idx`; the last instance takes its place.
    fn swap_remove(&mut self, idx: usize) {
        self.set(idx, ABSENT);
        let last = self.ids.len() - 1;
        if idx != last {
            let id = self.ids[last];
            self.set(last, ABSENT);
            self.ids.swap_remove(idx);
            self.set(idx, id);
        } else {
            self.ids.pop();
        }
    }

    fn intern(&mut self, inst: &Instance, name: &str) -> u32 {
        let Some(v) = spread_value(inst, &SpreadField::Attribute(name.to_string())) else {
            return ABSENT;
        };
        if let Some(id) = self.lookup.get(v) {
            return *id;
        }
        let id = self.members.len() as u32;
        self.members.push(Vec::new());
        self.lookup.insert(v.to_string(), id);
        id
    }
}

/// A cluster's instances as placement reads them, kept current across placements.
#[derive(Debug, Default)]
pub struct Fleet {
    instances: Vec<Instance>,
    by_arn: HashMap<String, usize>,
    /// Columns, index-aligned with `instances`.
    active: Vec<bool>,
    cpu: Vec<i64>,
    memory: Vec<i64>,
    gpus: Vec<i64>,
    salt: Vec<u64>,
    /// (remaining, salt, index), sorted: what binpack walks.
    by_cpu: BTreeSet<(i64, u64, u32)>,
    by_memory: BTreeSet<(i64, u64, u32)>,
    /// (salt, index), sorted: a canonical order for random probes.
    by_salt: Vec<(u64, u32)>,
    /// Task group → instance index → tasks of the group there.
    groups: HashMap<String, HashMap<u32, i64>>,
    /// Spread attribute columns, built on first use.
    spread: Mutex<HashMap<String, Arc<AttrColumn>>>,
    /// Cached memberOf results by expression, for expressions that read no tasks.
    member: Mutex<HashMap<String, Arc<Vec<bool>>>>,
}

/// How many memberOf expressions a fleet remembers before it starts over.
const MEMBER_CACHE: usize = 256;

impl Fleet {
    pub fn new(instances: Vec<Instance>) -> Fleet {
        let mut f = Fleet::default();
        for i in instances {
            f.upsert(i);
        }
        f
    }

    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The index of the instance with this ARN.
    pub fn position(&self, arn: &str) -> Option<usize> {
        self.by_arn.get(arn).copied()
    }

    fn index_groups(&mut self, idx: usize, sign: i64) {
        for (g, n) in &self.instances[idx].task_groups {
            if !self.groups.contains_key(g) {
                self.groups.insert(g.clone(), HashMap::new());
            }
            let Some(m) = self.groups.get_mut(g) else { continue };
            let c = m.entry(idx as u32).or_default();
            *c += sign * n;
            if *c == 0 {
                m.remove(&(idx as u32));
                if m.is_empty() {
                    self.groups.remove(g);
                }
            }
        }
    }

    fn unindex_columns(&mut self, idx: usize) {
        let (i, salt) = (idx as u32, self.salt[idx]);
        self.by_cpu.remove(&(self.cpu[idx], salt, i));
        self.by_memory.remove(&(self.memory[idx], salt, i));
    }

    fn set_columns(&mut self, idx: usize) {
        let i = &self.instances[idx];
        let salt = salt(&i.arn);
        self.by_cpu.insert((i.cpu, salt, idx as u32));
        self.by_memory.insert((i.memory, salt, idx as u32));
        self.active[idx] = i.status == "ACTIVE";
        self.cpu[idx] = i.cpu;
        self.memory[idx] = i.memory;
        self.gpus[idx] = i.gpus;
        self.salt[idx] = salt;
    }

    /// Adds an instance, or replaces the one with the same ARN; returns its index.
    pub fn upsert(&mut self, inst: Instance) -> usize {
        let idx = match self.by_arn.get(&inst.arn) {
            Some(&idx) => {
                self.index_groups(idx, -1);
                self.unindex_columns(idx);
                let old = std::mem::replace(&mut self.instances[idx], inst);
                let new = &self.instances[idx];
                // What a cacheable memberOf expression can read.
                if old.attributes != new.attributes
                    || old.ec2_instance_id != new.ec2_instance_id
                    || old.registered_at_ms != new.registered_at_ms
                    || old.agent_version != new.agent_version
                    || old.id != new.id
                {
                    self.member.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
                }
                idx
            }
            None => {
                let idx = self.instances.len();
                self.by_arn.insert(inst.arn.clone(), idx);
                self.instances.push(inst);
                self.active.push(false);
                self.cpu.push(0);
                self.memory.push(0);
                self.gpus.push(0);
                self.salt.push(0);
                self.member.get_mut().unwrap_or_else(|e| e.into_inner()).clear();
                for col in self.spread.get_mut().unwrap_or_else(|e| e.into_inner()).values_mut() {
                    Arc::make_mut(col).ids.push(ABSENT);
                }
                idx
            }
        };
        self.set_columns(idx);
        if let Err(at) = self.by_salt.binary_search(&(self.salt[idx], idx as u32)) {
            self.by_salt.insert(at, (self.salt[idx], idx as u32));
        }
        self.index_groups(idx, 1);
        let inst = &self.instances[idx];
        for (name, col) in self.spread.get_mut().unwrap_or_else(|e| e.into_inner()).iter_mut() {
            let col = Arc::make_mut(col);
            let id = col.intern(inst, name);
            col.set(idx, id);
        }
        idx
    }

    /// Replaces only the usage of the instance with this ARN (what it has left, its tasks),
    /// which is all a placement or a stopped task changes: no attribute is compared or
    /// indexed again. Returns its index, or `None` if the fleet has no such instance.
    pub fn update_usage(&mut self, arn: &str, usage: Usage) -> Option<usize> {
        let idx = *self.by_arn.get(arn)?;
        self.index_groups(idx, -1);
        self.unindex_columns(idx);
        self.instances[idx].set_usage(usage);
        let (i, salt) = (&self.instances[idx], self.salt[idx]);
        self.by_cpu.insert((i.cpu, salt, idx as u32));
        self.by_memory.insert((i.memory, salt, idx as u32));
        self.cpu[idx] = i.cpu;
        self.memory[idx] = i.memory;
        self.gpus[idx] = i.gpus;
        self.index_groups(idx, 1);
        Some(idx)
    }

    /// Removes the instance with this ARN. The last instance takes its index.
    pub fn remove(&mut self, arn: &str) -> Option<Instance> {
        let idx = self.by_arn.remove(arn)?;
        let last = self.instances.len() - 1;
        for i in [idx, last] {
            if let Ok(at) = self.by_salt.binary_search(&(self.salt[i], i as u32)) {
                self.by_salt.remove(at);
            }
        }
        self.index_groups(idx, -1);
        self.unindex_columns(idx);
        if idx != last {
            self.index_groups(last, -1);
            self.unindex_columns(last);
        }
        let gone = self.instances.swap_remove(idx);
        self.active.swap_remove(idx);
        self.cpu.swap_remove(idx);
        self.memory.swap_remove(idx);
        self.gpus.swap_remove(idx);
        self.salt.swap_remove(idx);
        for col in self.spread.get_mut().unwrap_or_else(|e| e.into_inner()).values_mut() {
            Arc::make_mut(col).swap_remove(idx);
        }
        for set in self.member.get_mut().unwrap_or_else(|e| e.into_inner()).values_mut() {
            Arc::make_mut(set).swap_remove(idx);
        }
        if idx != last {
            self.by_arn.insert(self.instances[idx].arn.clone(), idx);
            self.index_groups(idx, 1);
            self.set_columns(idx);
            if let Err(at) = self.by_salt.binary_search(&(self.salt[idx], idx as u32)) {
                self.by_salt.insert(at, (self.salt[idx], idx as u32));
            }
        }
        Some(gone)
    }

    fn spread_column(&self, name: &str) -> Arc<AttrColumn> {
        let mut cache = self.spread.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(AttrColumn::build(&self.instances, name)))
            .clone()
    }

    fn member_set(
        &self,
        expression: &str,
        test: &(dyn Fn(&Instance) -> bool + Send + Sync),
    ) -> Arc<Vec<bool>> {
        if let Some(hit) = self.member.lock().unwrap_or_else(|e| e.into_inner()).get(expression) {
            return hit.clone();
        }
        let set = Arc::new(self.instances.iter().map(test).collect::<Vec<bool>>());
        let mut cache = self.member.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MEMBER_CACHE {
            cache.clear();
        }
        cache.insert(expression.to_string(), set.clone());
        set
    }

    fn group_tasks(&self, group: &str, idx: usize) -> i64 {
        self.groups.get(group).and_then(|m| m.get(&(idx as u32))).copied().unwrap_or(0)
    }

    /// The first check instance `idx` fails for one more task, in ECS's order.
    fn check(
        &self,
        idx: usize,
        d: Option<&Delta>,
        req: &Request,
        live: &dyn Fn(usize) -> bool,
    ) -> Option<Reject> {
        let inst = &self.instances[idx];
        let n = &req.need;
        if inst.status != "ACTIVE" {
            return Some(Reject::NotActive(inst.status.clone()));
        }
        if !live(idx) {
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
        self.late_checks(idx, d, req, false)
    }

    /// The checks after resources: ports, requiresAttributes and the constraints (cached
    /// memberOf results are skipped when `skip_cached`, because the hot loop checked them).
    fn late_checks(&self, idx: usize, d: Option<&Delta>, req: &Request, skip_cached: bool) -> Option<Reject> {
        let inst = &self.instances[idx];
        let n = &req.need;
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
                    if self.group_tasks(&req.group, idx) + d.map_or(0, |d| d.group_tasks) > 0 {
                        return Some(Reject::DistinctInstance);
                    }
                }
                Constraint::MemberOf { cacheable: true, .. } if skip_cached => {}
                Constraint::MemberOf { test, .. } => {
                    if !test(inst) {
                        return Some(Reject::MemberOf);
                    }
                }
            }
        }
        None
    }

    /// Places the request's tasks. `live(index)` says whether an instance's agent is connected;
    /// it is asked only about instances that would otherwise win, and about all of them when
    /// something cannot be placed.
    ///
    /// Every path below picks the same instance: the feasible one with the lowest rank key, and
    /// among equal keys the one whose salt comes first at or after a point drawn from the seed
    /// (wrapping around). They differ only in which instances they look at:
    /// * binpack first: the resource's sorted index, from the need upwards, stopping past the
    ///   best value;
    /// * spread over an attribute first: the instances of the least-loaded values first;
    /// * random (or nothing): seeded probes of random instances, which picks uniformly among the
    ///   feasible ones;
    /// * anything else: every instance.
    pub fn place(&self, req: &Request, live: &dyn Fn(usize) -> bool) -> Placement {
        self.place_by(req, live, false)
    }

    /// [`Fleet::place`] looking at every instance for every task, whatever the strategies: the
    /// reference the indexed paths are tested against. Random placements differ (probing picks
    /// uniformly), everything else must be identical.
    pub fn place_exhaustively(&self, req: &Request, live: &dyn Fn(usize) -> bool) -> Placement {
        self.place_by(req, live, true)
    }

    fn place_by(&self, req: &Request, live: &dyn Fn(usize) -> bool, exhaustive: bool) -> Placement {
        let mut pass = Pass::new(self, req, live);
        let mut out = Placement::default();
        for task in 0..req.count {
            pass.point = splitmix(req.seed ^ (task as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
            pass.best = None;
            match req.strategies.first() {
                _ if self.instances.is_empty() => {}
                _ if exhaustive => pass.scan(0..self.instances.len()),
                None | Some(Strategy::Random) if req.strategies.len() <= 1 => pass.probe(task as u64),
                Some(Strategy::Binpack(r)) => pass.binpack_walk(*r, 0, &|_| true),
                Some(Strategy::Spread(SpreadField::Attribute(_))) => pass.spread_walk(),
                _ => pass.scan(0..self.instances.len()),
            }
            let Some((idx, _, _)) = pass.best else {
                out.rejections = (0..self.instances.len())
                    .filter_map(|i| self.check(i, pass.delta(i), req, live).map(|r| (i, r)))
                    .collect();
                break;
            };
            pass.take(idx);
            out.chosen.push(idx);
        }
        out
    }

    /// For every instance, whether it could take one task of the request now, and if not, why.
    pub fn explain(&self, req: &Request, live: &dyn Fn(usize) -> bool) -> Vec<(usize, Option<Reject>)> {
        (0..self.instances.len()).map(|i| (i, self.check(i, None, req, live))).collect()
    }
}

/// A strategy, prepared for one request.
enum Rank {
    Binpack(Resource),
    /// Tasks of the group per instance.
    SpreadInstance(Vec<i64>),
    /// The attribute's column, and tasks of the group per value.
    SpreadAttribute(Arc<AttrColumn>, Vec<i64>),
    Random,
}

/// One placement request's working state over a fleet.
struct Pass<'a> {
    fleet: &'a Fleet,
    req: &'a Request,
    live: &'a dyn Fn(usize) -> bool,
    /// Cached memberOf results, one per cacheable memberOf constraint.
    members: Vec<Arc<Vec<bool>>>,
    ranks: Vec<Rank>,
    /// What earlier tasks of the request took, for the instances marked in `marked`.
    deltas: Vec<Delta>,
    slot: HashMap<usize, usize>,
    marked: Vec<u64>,
    /// The salt the current task's tie-break starts from.
    point: u64,
    best: Option<(usize, Key, u64)>,
}

impl<'a> Pass<'a> {
    fn new(fleet: &'a Fleet, req: &'a Request, live: &'a dyn Fn(usize) -> bool) -> Pass<'a> {
        let n = fleet.instances.len();
        let members = req
            .constraints
            .iter()
            .filter_map(|c| match c {
                Constraint::MemberOf { expression, cacheable: true, test } => {
                    Some(fleet.member_set(expression, test.as_ref()))
                }
                _ => None,
            })
            .collect();
        let empty = HashMap::new();
        let group = fleet.groups.get(&req.group).unwrap_or(&empty);
        let ranks = req
            .strategies
            .iter()
            .map(|s| match s {
                Strategy::Binpack(r) => Rank::Binpack(*r),
                Strategy::Random => Rank::Random,
                Strategy::Spread(SpreadField::Instance) => {
                    let mut dense = vec![0; n];
                    for (i, c) in group {
                        dense[*i as usize] += c;
                    }
                    Rank::SpreadInstance(dense)
                }
                Strategy::Spread(SpreadField::Attribute(name)) => {
                    let col = fleet.spread_column(name);
                    // Every value an instance has counts, even at zero tasks.
                    let mut counts = vec![0; col.members.len()];
                    for (i, c) in group {
                        let v = col.ids[*i as usize];
                        if v != ABSENT {
                            counts[v as usize] += c;
                        }
                    }
                    Rank::SpreadAttribute(col, counts)
                }
            })
            .collect();
        Pass {
            fleet,
            req,
            live,
            members,
            ranks,
            deltas: Vec::new(),
            slot: HashMap::new(),
            marked: vec![0; n.div_ceil(64)],
            point: 0,
            best: None,
        }
    }

    fn is_marked(&self, idx: usize) -> bool {
        self.marked[idx / 64] & (1 << (idx % 64)) != 0
    }

    fn delta(&self, idx: usize) -> Option<&Delta> {
        if self.is_marked(idx) { Some(&self.deltas[self.slot[&idx]]) } else { None }
    }

    /// Considers one instance: if it passes every check and beats the best so far, it becomes
    /// the best, and the answer is true. (A loser is not checked further: with no best yet,
    /// false means infeasible.)
    fn consider(&mut self, idx: usize) -> bool {
        let f = self.fleet;
        let need = &self.req.need;
        // Deltas only take away, so what fails without them fails with them: one cheap,
        // predictable test rejects most instances.
        if !f.active[idx] | (f.cpu[idx] < need.cpu) | (f.memory[idx] < need.memory) {
            return false;
        }
        let d = self.delta(idx);
        let (dc, dm, dg) = d.map_or((0, 0, 0), |d| (d.cpu, d.memory, d.gpus));
        if d.is_some() && (f.cpu[idx] - dc < need.cpu || f.memory[idx] - dm < need.memory) {
            return false;
        }
        if need.gpus > 0 && f.gpus[idx] - dg < need.gpus {
            return false;
        }
        if self.members.iter().any(|m| !m[idx]) {
            return false;
        }
        // The rank key, strategy by strategy, giving up as soon as it is worse than the best.
        let mut key = [0; MAX_STRATEGIES];
        let mut ord = if self.best.is_some() { std::cmp::Ordering::Equal } else { std::cmp::Ordering::Less };
        let mut worse = false;
        for (j, rank) in self.ranks.iter().enumerate() {
            let v = match rank {
                Rank::Binpack(Resource::Cpu) => f.cpu[idx] - dc - need.cpu,
                Rank::Binpack(Resource::Memory) => f.memory[idx] - dm - need.memory,
                Rank::SpreadInstance(dense) => dense[idx],
                Rank::SpreadAttribute(col, counts) => match col.ids[idx] {
                    ABSENT => i64::MAX,
                    v => counts[v as usize],
                },
                Rank::Random => 0,
            };
            key[j] = v;
            if ord.is_eq()
                && let Some((_, bk, _)) = &self.best
            {
                ord = v.cmp(&bk[j]);
                if ord.is_gt() {
                    worse = true;
                    break;
                }
            }
        }
        if worse {
            return false;
        }
        let tie = f.salt[idx].wrapping_sub(self.point);
        if ord.is_eq()
            && let Some((_, _, bt)) = &self.best
            && tie >= *bt
        {
            return false;
        }
        if !(self.live)(idx) || f.late_checks(idx, d, self.req, true).is_some() {
            return false;
        }
        self.best = Some((idx, key, tie));
        true
    }

    fn scan(&mut self, range: impl Iterator<Item = usize>) {
        for idx in range {
            self.consider(idx);
        }
    }

    /// Random (or no strategy): probe instances drawn from the seed; a probe that passes every
    /// check wins, which picks uniformly among the feasible instances. After enough misses,
    /// every instance is looked at (with the same tie-break as the other paths).
    fn probe(&mut self, task: u64) {
        let n = self.fleet.instances.len() as u64;
        let mut state = self.req.seed ^ task.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for _ in 0..64 {
            state = splitmix(state);
            let at = ((state as u128 * n as u128) >> 64) as usize;
            if self.consider(self.fleet.by_salt[at].1 as usize) {
                // Only this instance was considered, so it is the best.
                return;
            }
        }
        self.scan(0..self.fleet.instances.len());
    }

    /// Binpack as strategy `j` (every earlier one ranks all `allow`ed instances equal): walk the
    /// resource's sorted index upwards from the need, looking only at allowed instances.
    fn binpack_walk(&mut self, r: Resource, j: usize, allow: &dyn Fn(usize) -> bool) {
        let f = self.fleet;
        let need = match r {
            Resource::Cpu => self.req.need.cpu,
            Resource::Memory => self.req.need.memory,
        };
        let index = match r {
            Resource::Cpu => &f.by_cpu,
            Resource::Memory => &f.by_memory,
        };
        let alone = self.ranks.len() == j + 1;
        // Instances this request already took from sit lower than their index entry says.
        let marked: Vec<usize> = self.slot.keys().copied().filter(|i| allow(*i)).collect();
        let mut first: Option<i64> = None;
        for &(v, _, idx) in index.range((need, 0, 0)..) {
            if let Some((_, bk, _)) = &self.best
                && v - need > bk[j]
            {
                break;
            }
            let idx = idx as usize;
            if self.is_marked(idx) || !allow(idx) {
                continue;
            }
            if alone {
                // Only the tie-break is left once a feasible value is found: jump to the seed's
                // point within that value.
                if self.consider(idx) {
                    first = Some(v);
                    break;
                }
            } else {
                self.consider(idx);
            }
        }
        if let Some(v) = first {
            self.best = None;
            let point = self.point;
            let mut found = false;
            for &(_, _, idx) in index.range((v, point, 0)..=(v, u64::MAX, u32::MAX)) {
                if !self.is_marked(idx as usize) && allow(idx as usize) && self.consider(idx as usize) {
                    found = true;
                    break;
                }
            }
            if !found {
                for &(_, _, idx) in index.range((v, 0, 0)..(v, point, 0)) {
                    if !self.is_marked(idx as usize) && allow(idx as usize) && self.consider(idx as usize) {
                        break;
                    }
                }
            }
        }
        for idx in marked {
            self.consider(idx);
        }
    }

    /// Spread over an attribute first: the values in order of tasks of the group, least first;
    /// once a value level yields a feasible instance, no later level can beat it.
    fn spread_walk(&mut self) {
        let Some(Rank::SpreadAttribute(col, counts)) = self.ranks.first() else { return };
        let (col, counts) = (col.clone(), counts.clone());
        let mut order: Vec<u32> = (0..counts.len() as u32).collect();
        order.sort_by_key(|v| (counts[*v as usize], *v));
        let then_binpack = match self.ranks.get(1) {
            Some(Rank::Binpack(r)) => Some(*r),
            _ => None,
        };
        let mut i = 0;
        while i < order.len() {
            let level = counts[order[i] as usize];
            if let Some(r) = then_binpack {
                // Spread then binpack: binpack over the values at this level.
                let (ids, counts) = (&col.ids, &counts);
                self.binpack_walk(r, 1, &|idx| ids[idx] != ABSENT && counts[ids[idx] as usize] == level);
                while i < order.len() && counts[order[i] as usize] == level {
                    i += 1;
                }
                if self.best.is_some() {
                    return;
                }
                continue;
            }
            while i < order.len() && counts[order[i] as usize] == level {
                for &idx in &col.members[order[i] as usize] {
                    self.consider(idx as usize);
                }
                i += 1;
            }
            if self.best.is_some() {
                return;
            }
        }
        // Instances without the attribute rank last.
        for idx in 0..self.fleet.instances.len() {
            if col.ids[idx] == ABSENT {
                self.consider(idx);
            }
        }
    }

    /// Counts a task placed on `idx`.
    fn take(&mut self, idx: usize) {
        let need = &self.req.need;
        let s = *self.slot.entry(idx).or_insert_with(|| {
            self.deltas.push(Delta::default());
            self.deltas.len() - 1
        });
        self.marked[idx / 64] |= 1 << (idx % 64);
        let d = &mut self.deltas[s];
        d.cpu += need.cpu;
        d.memory += need.memory;
        d.gpus += need.gpus;
        d.group_tasks += 1;
        d.ports_tcp.extend(&need.ports_tcp);
        d.ports_udp.extend(&need.ports_udp);
        for rank in self.ranks.iter_mut() {
            match rank {
                Rank::SpreadInstance(dense) => dense[idx] += 1,
                Rank::SpreadAttribute(col, counts) if col.ids[idx] != ABSENT => {
                    counts[col.ids[idx] as usize] += 1;
                }
                _ => {}
            }
        }
    }
}

/// The value of a spread field on an instance.
fn spread_value<'a>(inst: &'a Instance, field: &SpreadField) -> Option<&'a str> {
    match field {
        SpreadField::Instance => Some(inst.arn.as_str()),
        SpreadField::Attribute(name) => inst.attributes.get(name).map(|v| v.as_deref().unwrap_or("")),
    }
}

/// ECS takes at most five strategies.
pub const MAX_STRATEGIES: usize = 5;

/// A candidate's rank: lower is better, strategy by strategy.
type Key = [i64; MAX_STRATEGIES];

/// Places the request's tasks on `instances` (agents connected as `agent_connected` says). For
/// one-off use; a long-lived caller keeps a [`Fleet`].
pub fn place(instances: &[Instance], req: &Request) -> Placement {
    let fleet = Fleet::new(instances.to_vec());
    fleet.place(req, &|i| fleet.instances[i].agent_connected)
}

/// For every instance, whether it could take one task of the request now, and if not, why.
pub fn explain(instances: &[Instance], req: &Request) -> Vec<(usize, Option<Reject>)> {
    let fleet = Fleet::new(instances.to_vec());
    fleet.explain(req, &|i| fleet.instances[i].agent_connected)
}
