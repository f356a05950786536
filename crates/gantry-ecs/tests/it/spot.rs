//! Fargate Spot interruptions on a fake clock: the warning, then the capacity reclaimed.

use crate::common::{req, setup};
use gantry_core::protocol::FargateRegistration;
use gantry_ecs::ops::spot::InterruptSpotRequest;
use gantry_ecs::{ControlPlane, Ctx};
use serde_json::json;

async fn fargate_cluster(cp: &ControlPlane, ctx: &Ctx) {
    cp.create_cluster(
        ctx,
        req(json!({"clusterName": "f", "capacityProviders": ["FARGATE", "FARGATE_SPOT"]})),
    )
    .await
    .unwrap();
    cp.register_task_definition(
        ctx,
        req(json!({"family": "fw", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512", "containerDefinitions": [{"name": "web", "image": "img"}]})),
    )
    .await
    .unwrap();
    cp.register_fargate_node(FargateRegistration {
        node_id: "n1".into(),
        cpu: 4096,
        memory: 4096,
        availability_zone: None,
    })
    .await
    .unwrap();
}

async fn run(cp: &ControlPlane, ctx: &Ctx, provider: &str) -> String {
    let t = cp
        .run_task(
            ctx,
            req(json!({"cluster": "f", "taskDefinition": "fw",
                "capacityProviderStrategy": [{"capacityProvider": provider, "weight": 1}],
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}})),
        )
        .await
        .unwrap()
        .tasks
        .unwrap()
        .remove(0);
    assert_eq!(t.capacity_provider_name.as_deref(), Some(provider));
    let arn = t.task_arn.unwrap();
    cp.submit_task_state_change(ctx, req(json!({"cluster": "f", "task": arn, "status": "RUNNING"})))
        .await
        .unwrap();
    arn
}

fn describe(cp: &ControlPlane, ctx: &Ctx, arn: &str) -> gantry_model::Task {
    cp.describe_tasks(ctx, req(json!({"cluster": "f", "tasks": [arn]}))).unwrap().tasks.unwrap().remove(0)
}

#[tokio::test]
async fn an_interrupted_spot_task_is_warned_then_its_capacity_reclaimed() {
    let (cp, ctx, clock) = setup();
    fargate_cluster(&cp, &ctx).await;
    let (_g, _) = cp.agents().begin_poll("fargate:n1", clock.clone());
    let spot = run(&cp, &ctx, "FARGATE_SPOT").await;
    let on_demand = run(&cp, &ctx, "FARGATE").await;
    let free = |cp: &ControlPlane| cp.fargate_nodes().unwrap()[0].remaining_memory;
    assert_eq!(free(&cp), 4096 - 1024);

    // Bad requests are refused with what was wrong.
    let bad = |v| serde_json::from_value::<InterruptSpotRequest>(v).unwrap();
    let e = cp.interrupt_spot(&ctx, bad(json!({"cluster": "f", "warningSeconds": 121}))).await.unwrap_err();
    assert_eq!(e.message, "warningSeconds must be between 1 and 120, but was 121.");
    let e = cp.interrupt_spot(&ctx, bad(json!({"cluster": "f", "count": 0}))).await.unwrap_err();
    assert_eq!(e.message, "count must be at least 1, but was 0.");
    // An on-demand task is not Spot capacity.
    let r = cp.interrupt_spot(&ctx, bad(json!({"cluster": "f", "tasks": [on_demand]}))).await.unwrap();
    assert!(r.tasks.is_empty());
    assert_eq!(r.failures[0].reason.as_deref(), Some("NOT_SPOT"));

    // The warning: the task is asked to stop (its agent sends SIGTERM), as ECS shows it.
    let r = cp
        .interrupt_spot(&ctx, bad(json!({"cluster": "f", "count": 5, "warningSeconds": 30})))
        .await
        .unwrap();
    assert_eq!(r.tasks.len(), 1, "only the Spot task");
    let t = describe(&cp, &ctx, &spot);
    assert_eq!(t.desired_status.as_deref(), Some("STOPPED"));
    assert_eq!(t.stop_code.as_deref(), Some("SpotInterruption"));
    assert_eq!(t.stopped_reason.as_deref(), Some("Your Spot Task was interrupted."));
    assert_ne!(t.last_status.as_deref(), Some("STOPPED"));
    assert!(cp.assignments("fargate:n1").unwrap().iter().any(|a| a.task.task_arn.as_deref() == Some(&*spot)));
    // Interrupting it again does nothing more.
    let again = cp.interrupt_spot(&ctx, bad(json!({"cluster": "f", "tasks": [spot]}))).await.unwrap();
    assert_eq!(again.failures[0].reason.as_deref(), Some("STOPPED"));

    // Within the warning nothing is reclaimed.
    clock.advance_ms(29_999);
    let s = cp.sweep_spot_reclaims().await.unwrap();
    assert_eq!(s.deleted, 0);
    assert_eq!(s.next_ms, Some(1_700_000_000_000 + 30_000));
    // The containers ignored SIGTERM: at the end of the warning the capacity is gone.
    clock.advance_ms(1);
    assert_eq!(cp.sweep_spot_reclaims().await.unwrap().deleted, 1);
    let t = describe(&cp, &ctx, &spot);
    assert_eq!(t.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(t.stop_code.as_deref(), Some("SpotInterruption"));
    assert_eq!(t.stopped_reason.as_deref(), Some("Your Spot Task was interrupted."));
    assert!(cp.assignments("fargate:n1").unwrap().iter().all(|a| a.task.task_arn.as_deref() != Some(&*spot)));
    assert_eq!(free(&cp), 4096 - 512, "its reservation is back on the node");
    assert_eq!(cp.sweep_spot_reclaims().await.unwrap(), Default::default(), "nothing left to reclaim");
    assert_eq!(describe(&cp, &ctx, &on_demand).last_status.as_deref(), Some("RUNNING"));
}

#[tokio::test]
async fn a_spot_task_that_stops_within_its_warning_keeps_its_own_report() {
    let (cp, ctx, clock) = setup();
    fargate_cluster(&cp, &ctx).await;
    let (_g, _) = cp.agents().begin_poll("fargate:n1", clock.clone());
    let spot = run(&cp, &ctx, "FARGATE_SPOT").await;
    let bad = |v| serde_json::from_value::<InterruptSpotRequest>(v).unwrap();
    cp.interrupt_spot(&ctx, bad(json!({"cluster": "f", "tasks": [spot]}))).await.unwrap();
    // SIGTERM was enough: the agent reports the task STOPPED with its containers' exit codes.
    clock.advance_ms(3_000);
    cp.submit_task_state_change(
        &ctx,
        req(json!({"cluster": "f", "task": spot, "status": "STOPPED",
            "containers": [{"containerName": "web", "status": "STOPPED", "exitCode": 143}]})),
    )
    .await
    .unwrap();
    clock.advance_ms(120_000);
    assert_eq!(cp.sweep_spot_reclaims().await.unwrap().deleted, 0);
    let t = describe(&cp, &ctx, &spot);
    assert_eq!(t.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(t.stop_code.as_deref(), Some("SpotInterruption"));
    assert_eq!(t.containers.unwrap()[0].exit_code, Some(143));
    assert_eq!(cp.fargate_nodes().unwrap()[0].remaining_memory, 4096);
}
