//! The placement pipeline: a table per strategy and constraint, and properties over random
//! fleets and requests.

use gantry_placement::engine::{
    Constraint, Fleet, Need, Reject, Request, Resource, SpreadField, Strategy as S, explain, place,
};
use gantry_placement::snapshot::{Instance, Usage};
use proptest::prelude::*;
use proptest::strategy::Strategy as Gen;
use std::collections::{BTreeMap, HashMap};

fn inst(i: usize, zone: &str, cpu: i64, memory: i64) -> Instance {
    Instance {
        arn: format!("arn:aws:ecs:us-east-1:0:container-instance/c/i{i}"),
        id: format!("i{i}"),
        status: "ACTIVE".into(),
        agent_connected: true,
        attributes: BTreeMap::from([("ecs.availability-zone".to_string(), Some(zone.to_string()))]),
        cpu,
        memory,
        total_cpu: cpu,
        total_memory: memory,
        ..Default::default()
    }
}

fn request(count: usize, memory: i64, strategies: Vec<S>, constraints: Vec<Constraint>) -> Request {
    Request {
        need: Need { cpu: 0, memory, ..Default::default() },
        count,
        group: "family:web".into(),
        constraints,
        strategies,
        seed: 42,
    }
}

fn member_of_zone(zone: &'static str) -> Constraint {
    Constraint::MemberOf {
        expression: format!("attribute:ecs.availability-zone == {zone}"),
        cacheable: true,
        test: Box::new(move |i: &Instance| {
            i.attributes.get("ecs.availability-zone") == Some(&Some(zone.to_string()))
        }),
    }
}

#[test]
fn binpack_memory_fills_the_fullest_instance_first() {
    let fleet = vec![inst(0, "a", 1024, 1000), inst(1, "a", 1024, 300), inst(2, "a", 1024, 600)];
    let p = place(&fleet, &request(3, 100, vec![S::Binpack(Resource::Memory)], vec![]));
    assert_eq!(p.chosen, vec![1, 1, 1]);
}

#[test]
fn binpack_cpu_uses_cpu() {
    let fleet = vec![inst(0, "a", 4096, 1000), inst(1, "a", 512, 1000)];
    let mut r = request(1, 10, vec![S::Binpack(Resource::Cpu)], vec![]);
    r.need.cpu = 256;
    assert_eq!(place(&fleet, &r).chosen, vec![1]);
}

#[test]
fn spread_over_zones_then_binpack() {
    let fleet = vec![
        inst(0, "a", 1024, 1000),
        inst(1, "a", 1024, 500),
        inst(2, "b", 1024, 1000),
        inst(3, "c", 1024, 800),
    ];
    let p = place(
        &fleet,
        &request(
            6,
            100,
            vec![
                S::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
                S::Binpack(Resource::Memory),
            ],
            vec![],
        ),
    );
    let zones: Vec<&str> =
        p.chosen.iter().map(|i| fleet[*i].attributes["ecs.availability-zone"].as_deref().unwrap()).collect();
    for z in ["a", "b", "c"] {
        assert_eq!(zones.iter().filter(|x| **x == z).count(), 2, "{zones:?}");
    }
    // Within zone a, binpack picks the fuller instance.
    assert!(p.chosen.iter().all(|i| *i != 0), "{:?}", p.chosen);
}

#[test]
fn spread_over_instances_counts_existing_group_tasks() {
    let mut fleet = vec![inst(0, "a", 1024, 1000), inst(1, "a", 1024, 1000)];
    fleet[0].task_groups.insert("family:web".into(), 2);
    let p = place(&fleet, &request(2, 10, vec![S::Spread(SpreadField::Instance)], vec![]));
    assert_eq!(p.chosen, vec![1, 1]);
}

#[test]
fn random_depends_only_on_the_seed() {
    let fleet: Vec<Instance> = (0..50).map(|i| inst(i, "a", 1024, 1000)).collect();
    let mut r = request(5, 10, vec![S::Random], vec![]);
    let a = place(&fleet, &r).chosen;
    assert_eq!(a, place(&fleet, &r).chosen);
    r.seed = 43;
    assert_ne!(a, place(&fleet, &r).chosen);
}

#[test]
fn constraints_and_checks_reject_with_ecs_reasons() {
    let mut fleet = vec![
        inst(0, "a", 1024, 1000),
        inst(1, "b", 1024, 50),
        inst(2, "b", 100, 1000),
        inst(3, "b", 1024, 1000),
    ];
    fleet[3].agent_connected = false;
    let mut drained = inst(4, "b", 1024, 1000);
    drained.status = "DRAINING".into();
    fleet.push(drained);
    let mut r = request(1, 100, vec![], vec![member_of_zone("b")]);
    r.need.cpu = 200;
    let p = place(&fleet, &r);
    assert!(p.chosen.is_empty());
    let reasons: HashMap<usize, &str> = p.rejections.iter().map(|(i, r)| (*i, r.ecs_reason())).collect();
    assert_eq!(reasons[&0], "MemberOf");
    assert_eq!(reasons[&1], "RESOURCE:MEMORY");
    assert_eq!(reasons[&2], "RESOURCE:CPU");
    assert_eq!(reasons[&3], "AGENT");
    assert_eq!(reasons[&4], "INACTIVE");
}

#[test]
fn distinct_instance_ports_gpus_and_attributes() {
    let fleet = vec![inst(0, "a", 1024, 1000), inst(1, "a", 1024, 1000)];
    let p = place(&fleet, &request(3, 10, vec![], vec![Constraint::DistinctInstance]));
    assert_eq!(p.chosen.len(), 2);
    assert_ne!(p.chosen[0], p.chosen[1]);
    assert!(p.rejections.iter().all(|(_, r)| *r == Reject::DistinctInstance));

    let mut r = request(3, 10, vec![], vec![]);
    r.need.ports_tcp = vec![8080];
    let p = place(&fleet, &r);
    assert_eq!(p.chosen.len(), 2, "a static port fits once per instance");
    assert!(p.rejections.iter().all(|(_, r)| *r == Reject::Ports));

    let mut gpu = fleet.clone();
    gpu[1].gpus = 2;
    let mut r = request(3, 10, vec![], vec![]);
    r.need.gpus = 1;
    let p = place(&gpu, &r);
    assert_eq!(p.chosen, vec![1, 1]);
    assert!(p.rejections.iter().any(|(i, r)| *i == 0 && *r == Reject::Gpu));

    let mut attr = fleet.clone();
    attr[0].attributes.insert("ecs.capability.task-eni".into(), None);
    let mut r = request(1, 10, vec![], vec![]);
    r.need.attributes = vec![("ecs.capability.task-eni".into(), None)];
    assert_eq!(place(&attr, &r).chosen, vec![0]);
}

#[test]
fn explain_names_every_instance() {
    let fleet = vec![inst(0, "a", 1024, 10), inst(1, "a", 1024, 1000)];
    let e = explain(&fleet, &request(1, 100, vec![], vec![]));
    assert_eq!(e[0].1, Some(Reject::Memory));
    assert_eq!(e[1].1, None);
    assert_eq!(Reject::Memory.explain(), "not enough memory left");
}

fn fleet_strategy() -> impl Gen<Value = Vec<Instance>> {
    prop::collection::vec((0usize..3, 0i64..2048, 0i64..4096, any::<bool>()), 1..30).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (z, cpu, mem, up))| {
                let mut x = inst(i, ["a", "b", "c"][z], cpu, mem);
                x.agent_connected = up || i % 3 != 0;
                x
            })
            .collect()
    })
}

fn strategies_strategy() -> impl Gen<Value = Vec<S>> {
    prop::collection::vec(
        prop_oneof![
            Just(S::Binpack(Resource::Memory)),
            Just(S::Binpack(Resource::Cpu)),
            Just(S::Spread(SpreadField::Attribute("ecs.availability-zone".into()))),
            Just(S::Spread(SpreadField::Instance)),
            Just(S::Random),
        ],
        0..3,
    )
}

proptest! {
    #[test]
    fn never_overcommits_and_constraints_hold(
        fleet in fleet_strategy(),
        strategies in strategies_strategy(),
        count in 1usize..20,
        cpu in 0i64..600,
        memory in 1i64..900,
        zone_b in any::<bool>(),
        distinct in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut constraints = vec![];
        if zone_b { constraints.push(member_of_zone("b")); }
        if distinct { constraints.push(Constraint::DistinctInstance); }
        let mut r = request(count, memory, strategies, constraints);
        r.need.cpu = cpu;
        r.seed = seed;
        let p = place(&fleet, &r);
        let mut used: HashMap<usize, (i64, i64, usize)> = HashMap::new();
        for i in &p.chosen {
            let u = used.entry(*i).or_default();
            u.0 += cpu; u.1 += memory; u.2 += 1;
        }
        for (i, (c, m, n)) in &used {
            let x = &fleet[*i];
            prop_assert!(*c <= x.cpu && *m <= x.memory, "overcommitted {i}");
            prop_assert!(x.agent_connected && x.status == "ACTIVE");
            if zone_b { prop_assert_eq!(x.attributes["ecs.availability-zone"].as_deref(), Some("b")); }
            if distinct { prop_assert_eq!(*n, 1); }
        }
        // Same seed and snapshot, same placement.
        prop_assert_eq!(&p, &place(&fleet, &r));
        // Fewer than asked only when something rejects every instance.
        if p.chosen.len() < count { prop_assert_eq!(p.rejections.len(), fleet.len()); }
    }

    #[test]
    fn binpack_never_opens_a_new_instance_while_a_used_one_fits(
        fleet in fleet_strategy(), count in 1usize..20, memory in 1i64..900, seed in any::<u64>(),
    ) {
        let mut r = request(count, memory, vec![S::Binpack(Resource::Memory)], vec![]);
        r.seed = seed;
        let p = place(&fleet, &r);
        let mut left: HashMap<usize, i64> = HashMap::new();
        let mut opened: Vec<usize> = vec![];
        for i in &p.chosen {
            if !opened.contains(i) {
                // Opening a new instance: no used one may still fit the task.
                for u in &opened {
                    prop_assert!(left[u] < memory, "opened {i} while {u} had {} left", left[u]);
                }
                opened.push(*i);
                left.insert(*i, fleet[*i].memory);
            }
            *left.get_mut(i).unwrap() -= memory;
        }
    }

    #[test]
    fn spread_keeps_zones_within_one_when_capacity_allows(count in 1usize..40, per_zone in 1usize..4, seed in any::<u64>()) {
        // Ample capacity everywhere.
        let fleet: Vec<Instance> = (0..per_zone * 3).map(|i| inst(i, ["a", "b", "c"][i % 3], 100_000, 100_000)).collect();
        let mut r = request(count, 10, vec![S::Spread(SpreadField::Attribute("ecs.availability-zone".into()))], vec![]);
        r.seed = seed;
        let p = place(&fleet, &r);
        prop_assert_eq!(p.chosen.len(), count);
        let mut per: HashMap<&str, i64> = HashMap::from([("a", 0), ("b", 0), ("c", 0)]);
        for i in &p.chosen { *per.get_mut(fleet[*i].attributes["ecs.availability-zone"].as_deref().unwrap()).unwrap() += 1; }
        let (lo, hi) = (per.values().min().unwrap(), per.values().max().unwrap());
        prop_assert!(hi - lo <= 1, "{per:?}");
    }
}

fn arns(fleet: &Fleet, p: &gantry_placement::engine::Placement) -> Vec<String> {
    p.chosen.iter().map(|i| fleet.instances()[*i].arn.clone()).collect()
}

proptest! {
    /// The indexed paths (binpack's sorted index, spread's value levels) choose exactly what
    /// looking at every instance chooses; random probing chooses a feasible instance.
    #[test]
    fn indexed_paths_match_the_exhaustive_scan(
        fleet in fleet_strategy(),
        strategies in strategies_strategy(),
        count in 1usize..12,
        cpu in 0i64..600,
        memory in 1i64..900,
        zone_b in any::<bool>(),
        distinct in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut constraints = vec![];
        if zone_b { constraints.push(member_of_zone("b")); }
        if distinct { constraints.push(Constraint::DistinctInstance); }
        let mut r = request(count, memory, strategies, constraints);
        r.need.cpu = cpu;
        r.seed = seed;
        let f = Fleet::new(fleet.clone());
        let live = |i: usize| f.instances()[i].agent_connected;
        let fast = f.place(&r, &live);
        let slow = f.place_exhaustively(&r, &live);
        let random = r.strategies.len() <= 1 && matches!(r.strategies.first(), None | Some(S::Random));
        if random {
            prop_assert_eq!(fast.chosen.len(), slow.chosen.len());
        } else {
            prop_assert_eq!(&fast, &slow);
        }
    }

    /// A fleet kept current with upserts, usage updates and removes places exactly like one
    /// built afresh from the same instances in another order.
    #[test]
    fn an_updated_fleet_places_like_a_fresh_one(
        fleet in fleet_strategy(),
        changes in prop::collection::vec((0usize..40, 0i64..4096, 0usize..3, 0u8..3, 0i64..3), 0..30),
        strategies in strategies_strategy(),
        count in 1usize..8,
        seed in any::<u64>(),
    ) {
        let mut f = Fleet::new(fleet.clone());
        let mut current: BTreeMap<String, Instance> = fleet.iter().map(|i| (i.arn.clone(), i.clone())).collect();
        for (i, mem, zone, kind, group_tasks) in changes {
            let arn = format!("arn:aws:ecs:us-east-1:0:container-instance/c/i{i}");
            if kind == 0 {
                f.remove(&arn);
                current.remove(&arn);
            } else if kind == 1 {
                // Only what a placement changes: memory left and the group's tasks.
                let mut usage = Usage { memory: mem, cpu: 1024, ..Default::default() };
                if group_tasks > 0 { usage.task_groups.insert("family:web".into(), group_tasks); }
                let known = current.get_mut(&arn);
                prop_assert_eq!(f.update_usage(&arn, usage.clone()).is_some(), known.is_some());
                if let Some(x) = known { x.set_usage(usage); }
            } else {
                let mut x = inst(i, ["a", "b", "c"][zone], 1024, mem);
                if group_tasks > 0 { x.task_groups.insert("family:web".into(), group_tasks); }
                f.upsert(x.clone());
                current.insert(arn, x);
            }
        }
        let fresh = Fleet::new(current.into_values().rev().collect());
        let mut r = request(count, 100, strategies, vec![member_of_zone("b")]);
        r.seed = seed;
        let live = |_: usize| true;
        // Spread and memberOf read the caches built before the changes: exercise them too.
        let a = f.place(&r, &live);
        let b = fresh.place(&r, &live);
        prop_assert_eq!(arns(&f, &a), arns(&fresh, &b));
        prop_assert_eq!(a.rejections.len(), b.rejections.len());
    }
}

#[test]
fn caches_follow_updates() {
    let mut f = Fleet::new(vec![inst(0, "a", 1024, 1000), inst(1, "b", 1024, 1000)]);
    let spread =
        request(1, 10, vec![S::Spread(SpreadField::Attribute("ecs.availability-zone".into()))], vec![]);
    let zone_b = request(1, 10, vec![], vec![member_of_zone("b")]);
    let live = |_: usize| true;
    // Fill the caches, then move instance 1 to zone a: memberOf(zone b) now fits nowhere.
    assert_eq!(arns(&f, &f.place(&zone_b, &live)), vec![inst(1, "b", 0, 0).arn]);
    f.place(&spread, &live);
    f.upsert(inst(1, "a", 1024, 1000));
    assert!(f.place(&zone_b, &live).chosen.is_empty());
    // Two tasks of the group in zone a (on instance 0) and a new instance in zone c: spread
    // goes to zone c.
    let mut busy = inst(0, "a", 1024, 1000);
    busy.task_groups.insert("family:web".into(), 2);
    f.upsert(busy);
    f.upsert(inst(2, "c", 1024, 1000));
    assert_eq!(arns(&f, &f.place(&spread, &live)), vec![inst(2, "c", 0, 0).arn]);
    // Removing an instance renumbers the last one; placement still names the right ARN.
    f.remove(&inst(1, "a", 0, 0).arn);
    assert_eq!(arns(&f, &f.place(&spread, &live)), vec![inst(2, "c", 0, 0).arn]);
}

/// A usage update moves the instance in binpack's order and in the group counts spread reads,
/// as an upsert of the whole instance would.
#[test]
fn usage_updates_reorder_binpack_and_spread() {
    let mut f = Fleet::new(vec![inst(0, "a", 1024, 1000), inst(1, "b", 1024, 300), inst(2, "c", 1024, 600)]);
    let live = |_: usize| true;
    let binpack = request(1, 100, vec![S::Binpack(Resource::Memory)], vec![]);
    assert_eq!(arns(&f, &f.place(&binpack, &live)), vec![inst(1, "b", 0, 0).arn]);
    // Instance 1 fills up (90 MiB left): binpack moves to instance 2.
    assert!(
        f.update_usage(&inst(1, "b", 0, 0).arn, Usage { cpu: 1024, memory: 90, ..Default::default() })
            .is_some()
    );
    assert_eq!(arns(&f, &f.place(&binpack, &live)), vec![inst(2, "c", 0, 0).arn]);
    // Instance 0 goes down to 150 MiB left: now the fullest that fits.
    f.update_usage(&inst(0, "a", 0, 0).arn, Usage { cpu: 1024, memory: 150, ..Default::default() });
    assert_eq!(arns(&f, &f.place(&binpack, &live)), vec![inst(0, "a", 0, 0).arn]);
    // Spread over instances counts the group's tasks a usage update reports.
    let spread = request(1, 10, vec![S::Spread(SpreadField::Instance)], vec![]);
    let groups = |n| Usage {
        cpu: 1024,
        memory: 1000,
        running_tasks: n,
        task_groups: BTreeMap::from([("family:web".to_string(), n)]),
        ..Default::default()
    };
    f.update_usage(&inst(0, "a", 0, 0).arn, groups(0));
    f.update_usage(&inst(1, "b", 0, 0).arn, groups(2));
    f.update_usage(&inst(2, "c", 0, 0).arn, groups(1));
    assert_eq!(arns(&f, &f.place(&spread, &live)), vec![inst(0, "a", 0, 0).arn]);
    f.update_usage(&inst(0, "a", 0, 0).arn, groups(3));
    assert_eq!(arns(&f, &f.place(&spread, &live)), vec![inst(2, "c", 0, 0).arn]);
    assert!(f.update_usage("arn:unknown", groups(0)).is_none());
}
