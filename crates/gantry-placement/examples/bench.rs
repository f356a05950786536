//! The placement engine alone: placements per second over a simulated cluster.
//!
//! `cargo run --release -p gantry-placement --example bench -- [INSTANCES] [TASKS]`
//! (defaults 10000 and 100000). Builds a fleet across three availability zones and four
//! instance sizes with TASKS tasks already placed (their resources taken, their groups counted),
//! then times single-task placements for binpack(memory); spread(attribute:ecs.availability-zone)
//! then binpack(memory); and memberOf(attribute:ecs.availability-zone == zone-b) with binpack.

use gantry_placement::engine::{Constraint, Fleet, Need, Request, Resource, SpreadField, Strategy};
use gantry_placement::snapshot::Instance;
use std::collections::BTreeMap;
use std::time::Instant;

fn fleet(n: usize, tasks: usize) -> Vec<Instance> {
    let sizes = [
        (2048, 8192, "m5.large"),
        (4096, 16384, "m5.xlarge"),
        (8192, 32768, "m5.2xlarge"),
        (16384, 65536, "m5.4xlarge"),
    ];
    let mut out: Vec<Instance> = (0..n)
        .map(|i| {
            let (cpu, mem, ty) = sizes[i % 4];
            let zone = ["zone-a", "zone-b", "zone-c"][i % 3];
            Instance {
                arn: format!("arn:aws:ecs:us-east-1:000000000000:container-instance/sim/{i:032x}"),
                id: format!("{i:032x}"),
                status: "ACTIVE".into(),
                agent_connected: true,
                ec2_instance_id: format!("i-{i:017x}"),
                agent_version: Some("0.1.0".into()),
                registered_at_ms: 1_700_000_000_000 + i as i64,
                attributes: BTreeMap::from([
                    ("ecs.availability-zone".to_string(), Some(zone.to_string())),
                    ("ecs.instance-type".to_string(), Some(ty.to_string())),
                    ("ecs.os-type".to_string(), Some("linux".to_string())),
                    ("ecs.cpu-architecture".to_string(), Some("x86_64".to_string())),
                    ("stack".to_string(), Some(["prod", "staging"][i % 2].to_string())),
                ]),
                cpu,
                memory: mem,
                total_cpu: cpu,
                total_memory: mem,
                ..Default::default()
            }
        })
        .collect();
    // Existing tasks: 128 CPU units and 256 MiB each, in ten groups, round-robin.
    for t in 0..tasks {
        let i = &mut out[(t * 7919) % n];
        if i.memory >= 256 && i.cpu >= 128 {
            i.memory -= 256;
            i.cpu -= 128;
            i.running_tasks += 1;
            *i.task_groups.entry(format!("service:svc-{}", t % 10)).or_insert(0) += 1;
        }
    }
    out
}

/// Places `rounds` single tasks, applying each to the fleet (as the control plane does when the
/// placement commits) so that every placement sees the ones before it.
fn run(name: &str, fleet: &mut Fleet, make: impl Fn(u64) -> Request) {
    let rounds = 20_000;
    let start = Instant::now();
    let mut placed = 0;
    for r in 0..rounds {
        let req = make(r as u64);
        let p = fleet.place(&req, &|_| true);
        for idx in &p.chosen {
            let mut i = fleet.instances()[*idx].clone();
            i.cpu -= req.need.cpu;
            i.memory -= req.need.memory;
            i.running_tasks += 1;
            *i.task_groups.entry(req.group.clone()).or_insert(0) += 1;
            fleet.upsert(i);
        }
        placed += p.chosen.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{name:<58} {:>10.0} placements/s ({placed}/{rounds} placed)", rounds as f64 / secs);
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(10_000);
    let tasks = args.get(1).copied().unwrap_or(100_000);
    let base = fleet(n, tasks);
    let built = Instant::now();
    let instances = Fleet::new(base.clone());
    println!("# fleet built in {:.1} ms", built.elapsed().as_secs_f64() * 1000.0);
    println!("# placement engine, {n} instances, {tasks} tasks placed, single-task placements");
    let need = || Need { cpu: 256, memory: 512, ..Default::default() };
    let req = |strategies: Vec<Strategy>, constraints: Vec<Constraint>, seed: u64| Request {
        need: need(),
        count: 1,
        group: "service:web".into(),
        constraints,
        strategies,
        seed,
    };
    let mut instances = instances;
    run("binpack(memory)", &mut instances, |s| req(vec![Strategy::Binpack(Resource::Memory)], vec![], s));
    let mut instances = Fleet::new(base.clone());
    run("spread(attribute:ecs.availability-zone), binpack(memory)", &mut instances, |s| {
        req(
            vec![
                Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
                Strategy::Binpack(Resource::Memory),
            ],
            vec![],
            s,
        )
    });
    let mut instances = Fleet::new(base);
    run("memberOf(attribute:ecs.availability-zone == zone-b), binpack", &mut instances, |s| {
        let c = Constraint::member_of("attribute:ecs.availability-zone == zone-b").expect("valid");
        req(vec![Strategy::Binpack(Resource::Memory)], vec![c], s)
    });
}
