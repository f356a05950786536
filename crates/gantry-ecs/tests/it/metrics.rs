//! What the control plane records into its metrics: placements, agent connections, and the
//! service scheduler's passes when it runs as a controller.

use crate::common::{connected_instance, req, setup};
use gantry_runtime::{AlwaysLeader, shutdown};
use serde_json::json;
use std::sync::Arc;

fn line(text: &str, prefix: &str) -> Option<String> {
    text.lines().find(|l| l.starts_with(prefix)).map(str::to_string)
}

fn value(text: &str, prefix: &str) -> f64 {
    line(text, prefix).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0.0)
}

async fn cluster_with_an_instance(
    cp: &gantry_ecs::ControlPlane,
    ctx: &gantry_ecs::Ctx,
    clock: &Arc<gantry_core::FixedClock>,
) -> gantry_ecs::agents::PollGuard {
    cp.create_cluster(ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    let (_, guard) = connected_instance(
        cp,
        ctx,
        clock,
        req(json!({"cluster": "c", "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 512}]})),
    )
    .await;
    cp.register_task_definition(
        ctx,
        req(json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "img", "memory": 128}]})),
    )
    .await
    .unwrap();
    guard
}

#[tokio::test]
async fn running_tasks_counts_placements_and_failures_by_reason() {
    let (cp, ctx, clock) = setup();
    let _agent = cluster_with_an_instance(&cp, &ctx, &clock).await;
    assert_eq!(value(&cp.metrics().render(), "gantry_agents_connected "), 1.0);
    let out =
        cp.run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web", "count": 3}))).await.unwrap();
    assert_eq!(out.tasks.unwrap().len(), 3);
    // 384 of 512 MiB taken: 2 more do not fit.
    let out =
        cp.run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web", "count": 2}))).await.unwrap();
    assert_eq!(out.tasks.unwrap().len(), 1);
    assert_eq!(out.failures.unwrap()[0].reason.as_deref(), Some("RESOURCE:MEMORY"));
    let text = cp.metrics().render();
    assert_eq!(value(&text, "gantry_placement_tasks_placed_total "), 4.0, "{text}");
    assert_eq!(value(&text, r#"gantry_placement_failures_total{reason="RESOURCE:MEMORY"}"#), 1.0, "{text}");
}

#[tokio::test(start_paused = true)]
async fn the_scheduler_runs_as_a_controller_and_records_its_passes() {
    let (cp, ctx, clock) = setup();
    let _agent = cluster_with_an_instance(&cp, &ctx, &clock).await;
    cp.create_service(
        &ctx,
        req(json!({"cluster": "c", "serviceName": "web", "taskDefinition": "web", "desiredCount": 2})),
    )
    .await
    .unwrap();
    let (stop, signal) = shutdown();
    let scheduler = tokio::spawn({
        let cp = cp.clone();
        async move { cp.run_scheduler(Arc::new(AlwaysLeader::default()), signal).await }
    });
    // Paused: each sleep lets every pass the clock allows run first.
    let mut running = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let s = cp.describe_services(&ctx, req(json!({"cluster": "c", "services": ["web"]}))).unwrap();
        running = s.services.unwrap()[0].pending_count;
        if running == 2 {
            break;
        }
    }
    assert_eq!(running, 2, "the scheduler launched the service's tasks");
    stop.trigger();
    scheduler.await.unwrap();
    let text = cp.metrics().render();
    let passes =
        value(&text, r#"gantry_controller_reconcile_duration_seconds_count{controller="scheduler"}"#);
    assert!(passes >= 1.0, "{text}");
    assert!(
        value(&text, r#"gantry_controller_reconciles_total{controller="scheduler",outcome="ok"}"#) >= 1.0
    );
    assert_eq!(value(&text, "gantry_placement_tasks_placed_total "), 2.0);
    assert!(line(&text, r#"gantry_controller_queue_depth{controller="scheduler"}"#).is_some());
}
