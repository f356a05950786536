//! RunTask through the control plane alone: tasks placed per second, with no HTTP and no agents
//! (their polls are held open, so every instance reads as connected).
//!
//! `cargo run --release -p gantry-ecs --example runtask_bench -- [INSTANCES] [SEED_TASKS] [SECONDS]`
//! (defaults 1000, 5000 and 5). Registers INSTANCES container instances over three zones on an
//! in-memory SQLite store, places SEED_TASKS tasks with binpack, then runs RunTask with count 10
//! for SECONDS per case: binpack(memory); spread(attribute:ecs.availability-zone) then
//! binpack(memory); memberOf(attribute:ecs.availability-zone == zone-b). Every placement reads
//! the cluster's fleet (kept from the store's watch), writes each chosen instance's record and
//! the tasks in one transaction. Last, a fresh control plane over the same store times its first
//! RunTask, which builds the fleet by decoding every instance record.

use gantry_core::{FixedClock, Scope, SeededIds, Timestamp};
use gantry_ecs::{ControlPlane, Ctx};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

fn req<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a valid request")
}

async fn run(cp: &ControlPlane, ctx: &Ctx, extra: &serde_json::Value) -> usize {
    let mut body = json!({"cluster": "bench", "taskDefinition": "bench", "count": 10});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    cp.run_task(ctx, req(body)).await.map(|r| r.tasks.unwrap_or_default().len()).unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let instances = args.first().copied().unwrap_or(1000);
    let seed = args.get(1).copied().unwrap_or(5000);
    let seconds = args.get(2).copied().unwrap_or(5) as f64;
    let store: Arc<dyn gantry_store::Store> =
        Arc::new(gantry_store::SqliteStore::in_memory().expect("an in-memory store"));
    let clock = Arc::new(FixedClock::new(Timestamp(1_700_000_000_000)));
    let cp = ControlPlane::new(store.clone(), clock.clone(), Arc::new(SeededIds::new(7)));
    let ctx = Ctx::root(Scope::new("000000000000", "us-east-1"));
    cp.create_cluster(&ctx, req(json!({"clusterName": "bench"}))).await.expect("the cluster");
    cp.register_task_definition(
        &ctx,
        req(json!({"family": "bench", "containerDefinitions": [
            {"name": "app", "image": "example/app:1", "memory": 128, "cpu": 64}]})),
    )
    .await
    .expect("the task definition");
    let started = Instant::now();
    let mut guards = Vec::with_capacity(instances);
    let mut arns = Vec::with_capacity(instances);
    for i in 0..instances {
        let zone = ["zone-a", "zone-b", "zone-c"][i % 3];
        let arn = cp
            .register_container_instance(
                &ctx,
                req(json!({"cluster": "bench", "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 16384}],
                    "attributes": [{"name": "ecs.availability-zone", "value": zone}]})),
            )
            .await
            .expect("an instance")
            .container_instance
            .and_then(|i| i.container_instance_arn)
            .expect("its ARN");
        guards.push(cp.agents().begin_poll(&arn, clock.clone()).0);
        arns.push(arn);
    }
    println!("registered {instances} instances in {:.2} s", started.elapsed().as_secs_f64());
    let binpack = json!({"placementStrategy": [{"type": "binpack", "field": "memory"}]});
    let started = Instant::now();
    let mut seeded = 0;
    while seeded < seed {
        match run(&cp, &ctx, &binpack).await {
            0 => break,
            n => seeded += n,
        }
    }
    let took = started.elapsed().as_secs_f64();
    println!("seeded {seeded} tasks in {took:.2} s ({:.0} tasks/s)", seeded as f64 / took);
    let cases = [
        ("binpack(memory)", binpack.clone()),
        (
            "spread(zone), binpack(memory)",
            json!({"placementStrategy": [
                {"type": "spread", "field": "attribute:ecs.availability-zone"},
                {"type": "binpack", "field": "memory"}]}),
        ),
        (
            "memberOf(zone-b)",
            json!({"placementConstraints": [
                {"type": "memberOf", "expression": "attribute:ecs.availability-zone == zone-b"}]}),
        ),
    ];
    for (name, extra) in &cases {
        let started = Instant::now();
        let mut placed = 0;
        while started.elapsed().as_secs_f64() < seconds {
            placed += run(&cp, &ctx, extra).await;
        }
        let took = started.elapsed().as_secs_f64();
        println!("{name}: {:.0} tasks/s ({placed} placed)", placed as f64 / took);
    }
    // A fresh control plane builds the fleet from the store on its first placement.
    let fresh = ControlPlane::new(store, clock.clone(), Arc::new(SeededIds::new(8)));
    let _fresh_guards: Vec<_> = arns.iter().map(|a| fresh.agents().begin_poll(a, clock.clone()).0).collect();
    let started = Instant::now();
    let placed = run(&fresh, &ctx, &binpack).await;
    println!(
        "first RunTask of a fresh control plane ({instances} instance records decoded): {:.1} ms ({placed} placed)",
        started.elapsed().as_secs_f64() * 1000.0
    );
}
