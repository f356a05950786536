//! DescribeServices through the control plane alone: a cluster with one service carrying ECS's
//! full record (10 deployments, 100 events), described ITERATIONS times (10 services a call,
//! answers serialized to JSON as the API does) after a warm-up. Prints µs per call and calls/s.
//!
//! `cargo run --release -p gantry-ecs --example describe_services_bench -- [ITERATIONS]`

use gantry_core::{FixedClock, Scope, SeededIds, Timestamp};
use gantry_ecs::{ControlPlane, Ctx};
use gantry_model::DescribeServicesRequest;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

fn req<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let iterations: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let store = Arc::new(gantry_store::SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_700_000_000_000)));
    let cp = ControlPlane::new(store, clock.clone(), Arc::new(SeededIds::new(9)));
    let scope = Scope::new("000000000000", "us-east-1");
    let ctx = Ctx::root(scope.clone());
    cp.create_cluster(&ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    cp.register_task_definition(
        &ctx,
        req(json!({"family": "web", "containerDefinitions": [
            {"name": "web", "image": "img", "memory": 128, "portMappings": [{"containerPort": 80}]}]})),
    )
    .await
    .unwrap();
    let names: Vec<String> = (0..10).map(|i| format!("svc{i}")).collect();
    for name in &names {
        cp.create_service(
            &ctx,
            req(json!({"cluster": "c", "serviceName": name, "taskDefinition": "web", "desiredCount": 1,
                "tags": [{"key": "team", "value": "a"}]})),
        )
        .await
        .unwrap();
        for _ in 0..9 {
            clock.advance_ms(1_000);
            cp.update_service(
                &ctx,
                req(json!({"cluster": "c", "service": name, "forceNewDeployment": true})),
            )
            .await
            .unwrap();
        }
        for i in 0..100 {
            clock.advance_ms(7);
            let event = format!("(service {name}) has been scaled by a target tracking policy, event {i}.");
            cp.set_service_desired_count(&scope, "c", name, 1 + i % 3, &event).await.unwrap();
        }
    }
    let request = || DescribeServicesRequest {
        cluster: Some("c".into()),
        services: names.clone(),
        include: Some(vec!["TAGS".into()]),
    };
    let once = |bytes: &mut usize| {
        let out = cp.describe_services(&ctx, request()).unwrap();
        *bytes = serde_json::to_vec(&out).unwrap().len();
    };
    let mut bytes = 0;
    for _ in 0..iterations / 10 {
        once(&mut bytes);
    }
    let start = Instant::now();
    for _ in 0..iterations {
        once(&mut bytes);
    }
    let elapsed = start.elapsed();
    let per_call = elapsed.as_secs_f64() * 1e6 / iterations as f64;
    println!(
        "DescribeServices (10 services, 10 deployments and 100 events each, {bytes} bytes): \
         {iterations} calls in {:.3} s, {per_call:.1} µs/call, {:.0} calls/s",
        elapsed.as_secs_f64(),
        iterations as f64 / elapsed.as_secs_f64()
    );
}
