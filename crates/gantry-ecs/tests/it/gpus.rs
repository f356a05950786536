//! GPUs as ECS has them: an instance registers its device IDs as the `GPU` string set, tasks ask
//! for a number of GPUs per container, and placement reserves concrete IDs (a container's
//! `gpuIds`) from the instance's remaining set and gives them back when the task stops.

use crate::common::{connected_instance, req, setup};
use gantry_core::FixedClock;
use gantry_ecs::reservation::Reservation;
use gantry_ecs::{ControlPlane, Ctx};
use gantry_model::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

const IDS: [&str; 4] = [
    "GPU-3d0f1a52-0000-0000-0000-000000000003",
    "GPU-1b9e4c7d-0000-0000-0000-000000000001",
    "GPU-4a77e0c1-0000-0000-0000-000000000004",
    "GPU-2c5d9b0e-0000-0000-0000-000000000002",
];

fn registration(arn: Option<&str>) -> RegisterContainerInstanceRequest {
    let mut r = json!({"cluster": "c",
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 8192},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 16384},
            {"name": "GPU", "type": "STRINGSET", "stringSetValue": IDS}],
        "attributes": [{"name": "ecs.capability.gpu"}]});
    if let Some(a) = arn {
        r["containerInstanceArn"] = json!(a);
    }
    req(r)
}

/// A cluster with one connected instance that has the four GPUs of `IDS`.
async fn gpu_instance(
    cp: &ControlPlane,
    ctx: &Ctx,
    clock: &Arc<FixedClock>,
) -> (String, gantry_ecs::agents::PollGuard) {
    cp.create_cluster(ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    connected_instance(cp, ctx, clock, registration(None)).await
}

async fn gpu_taskdef(cp: &ControlPlane, ctx: &Ctx, family: &str, containers: serde_json::Value) {
    cp.register_task_definition(ctx, req(json!({"family": family, "containerDefinitions": containers})))
        .await
        .unwrap();
}

fn two_gpus() -> serde_json::Value {
    json!([{"name": "train", "image": "img", "memory": 256,
        "resourceRequirements": [{"type": "GPU", "value": "2"}]}])
}

fn free_gpus(cp: &ControlPlane, ctx: &Ctx, ci: &str) -> BTreeSet<String> {
    let d = cp
        .describe_container_instances(ctx, req(json!({"cluster": "c", "containerInstances": [ci]})))
        .unwrap()
        .container_instances
        .unwrap()
        .remove(0);
    let gpu = |rs: &Option<Vec<Resource>>| {
        rs.as_ref()
            .unwrap()
            .iter()
            .find(|r| r.name.as_deref() == Some("GPU"))
            .and_then(|r| r.string_set_value.clone())
            .unwrap()
    };
    // The registered set never changes.
    assert_eq!(gpu(&d.registered_resources).into_iter().collect::<BTreeSet<_>>(), all());
    gpu(&d.remaining_resources).into_iter().collect()
}

fn all() -> BTreeSet<String> {
    IDS.iter().map(|s| s.to_string()).collect()
}

fn gpu_ids(t: &Task) -> Vec<Vec<String>> {
    t.containers.iter().flatten().map(|c| c.gpu_ids.clone().unwrap_or_default()).collect()
}

async fn run(cp: &ControlPlane, ctx: &Ctx, family: &str) -> RunTaskResponse {
    cp.run_task(ctx, req(json!({"cluster": "c", "taskDefinition": family}))).await.unwrap()
}

fn describe(cp: &ControlPlane, ctx: &Ctx, arn: &str) -> Task {
    cp.describe_tasks(ctx, req(json!({"cluster": "c", "tasks": [arn]}))).unwrap().tasks.unwrap().remove(0)
}

async fn stop(cp: &ControlPlane, ctx: &Ctx, arn: &str) {
    cp.submit_task_state_change(
        ctx,
        req(json!({"cluster": "c", "task": arn, "status": "STOPPED",
        "containers": [{"containerName": "train", "status": "STOPPED", "exitCode": 0}]})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn tasks_reserve_distinct_gpu_ids_and_give_them_back() {
    let (cp, ctx, clock) = setup();
    let (ci, _guard) = gpu_instance(&cp, &ctx, &clock).await;
    assert_eq!(free_gpus(&cp, &ctx, &ci), all(), "registration keeps the GPU string set");
    gpu_taskdef(&cp, &ctx, "train", two_gpus()).await;

    let first = run(&cp, &ctx, "train").await.tasks.unwrap().remove(0);
    let ids1 = gpu_ids(&first).remove(0);
    let set1: BTreeSet<String> = ids1.iter().cloned().collect();
    assert_eq!(set1.len(), 2, "two distinct IDs: {ids1:?}");
    assert!(set1.is_subset(&all()));
    // The lowest-sorted free IDs.
    assert_eq!(ids1, vec![IDS[1].to_string(), IDS[3].to_string()]);
    assert_eq!(free_gpus(&cp, &ctx, &ci), &all() - &set1);
    let arn1 = first.task_arn.clone().unwrap();
    assert_eq!(gpu_ids(&describe(&cp, &ctx, &arn1)), vec![ids1.clone()], "DescribeTasks shows gpuIds");

    let second = run(&cp, &ctx, "train").await.tasks.unwrap().remove(0);
    let set2: BTreeSet<String> = gpu_ids(&second).remove(0).into_iter().collect();
    assert_eq!(set2, &all() - &set1, "the second task gets the other two");
    assert!(free_gpus(&cp, &ctx, &ci).is_empty());

    let third = run(&cp, &ctx, "train").await;
    assert!(third.tasks.unwrap().is_empty());
    let f = &third.failures.unwrap()[0];
    assert_eq!((f.arn.as_deref(), f.reason.as_deref()), (Some(ci.as_str()), Some("RESOURCE:GPU")));

    // The agent is told which devices each container gets.
    let assigned = cp.assignments(&ci).unwrap();
    let mut told: Vec<Vec<Vec<String>>> = assigned.iter().map(|a| gpu_ids(&a.task)).collect();
    told.sort();
    let mut expected = vec![vec![ids1.clone()], vec![set2.iter().cloned().collect::<Vec<_>>()]];
    expected.sort();
    assert_eq!(told, expected);

    // Stopping the first gives its IDs back, and the next task gets exactly them.
    stop(&cp, &ctx, &arn1).await;
    assert_eq!(free_gpus(&cp, &ctx, &ci), set1);
    let again = run(&cp, &ctx, "train").await.tasks.unwrap().remove(0);
    assert_eq!(gpu_ids(&again), vec![ids1]);
    assert!(free_gpus(&cp, &ctx, &ci).is_empty());
    // A second STOPPED report gives nothing back twice.
    stop(&cp, &ctx, &arn1).await;
    assert!(free_gpus(&cp, &ctx, &ci).is_empty());
}

#[tokio::test]
async fn tasks_placed_together_get_disjoint_ids() {
    let (cp, ctx, clock) = setup();
    let (ci, _guard) = gpu_instance(&cp, &ctx, &clock).await;
    gpu_taskdef(&cp, &ctx, "train", two_gpus()).await;
    let r =
        cp.run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "train", "count": 3}))).await.unwrap();
    let tasks = r.tasks.unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(r.failures.unwrap()[0].reason.as_deref(), Some("RESOURCE:GPU"));
    let got: BTreeSet<String> = tasks.iter().flat_map(|t| gpu_ids(t).remove(0)).collect();
    assert_eq!(got, all(), "four distinct IDs over the two tasks");
    assert!(free_gpus(&cp, &ctx, &ci).is_empty());
}

#[tokio::test]
async fn each_container_gets_its_share_in_definition_order() {
    let (cp, ctx, clock) = setup();
    let (ci, _guard) = gpu_instance(&cp, &ctx, &clock).await;
    gpu_taskdef(
        &cp,
        &ctx,
        "multi",
        json!([
            {"name": "a", "image": "img", "memory": 64, "resourceRequirements": [{"type": "GPU", "value": "1"}]},
            {"name": "log", "image": "img", "memory": 64},
            {"name": "b", "image": "img", "memory": 64, "resourceRequirements": [{"type": "GPU", "value": "2"}]}
        ]),
    )
    .await;
    let t = run(&cp, &ctx, "multi").await.tasks.unwrap().remove(0);
    let by_name: Vec<(String, Option<Vec<String>>)> =
        t.containers.unwrap().into_iter().map(|c| (c.name.unwrap(), c.gpu_ids)).collect();
    assert_eq!(
        by_name,
        vec![
            ("a".into(), Some(vec![IDS[1].into()])),
            ("log".into(), None),
            ("b".into(), Some(vec![IDS[3].into(), IDS[0].into()])),
        ]
    );
    assert_eq!(free_gpus(&cp, &ctx, &ci), BTreeSet::from([IDS[2].to_string()]));
    // A container override asks for another number of GPUs.
    let r = cp
        .run_task(
            &ctx,
            req(json!({"cluster": "c", "taskDefinition": "multi", "overrides": {"containerOverrides": [
                {"name": "b", "resourceRequirements": [{"type": "GPU", "value": "0"}]}]}})),
        )
        .await
        .unwrap();
    let t = r.tasks.unwrap().remove(0);
    assert_eq!(gpu_ids(&t), vec![vec![IDS[2].to_string()], vec![], vec![]]);
}

#[tokio::test]
async fn registering_again_keeps_what_running_tasks_hold() {
    let (cp, ctx, clock) = setup();
    let (ci, _guard) = gpu_instance(&cp, &ctx, &clock).await;
    gpu_taskdef(&cp, &ctx, "train", two_gpus()).await;
    let t = run(&cp, &ctx, "train").await.tasks.unwrap().remove(0);
    let held: BTreeSet<String> = gpu_ids(&t).remove(0).into_iter().collect();
    // The agent restarts and registers under the same ARN.
    cp.register_container_instance(&ctx, registration(Some(&ci))).await.unwrap();
    assert_eq!(free_gpus(&cp, &ctx, &ci), &all() - &held);
    let d = cp
        .describe_container_instances(&ctx, req(json!({"cluster": "c", "containerInstances": [ci]})))
        .unwrap()
        .container_instances
        .unwrap()
        .remove(0);
    let mem =
        d.remaining_resources.unwrap().into_iter().find(|r| r.name.as_deref() == Some("MEMORY")).unwrap();
    assert_eq!(mem.integer_value, 16384 - 256);
    let other: BTreeSet<String> =
        gpu_ids(&run(&cp, &ctx, "train").await.tasks.unwrap().remove(0)).remove(0).into_iter().collect();
    assert!(other.is_disjoint(&held));
}

#[test]
fn reservations_stored_before_gpus_still_decode() {
    let old: Reservation = serde_json::from_str(r#"{"cpu":128,"memory":256,"ports_tcp":[8080]}"#).unwrap();
    assert_eq!(old.gpus, Vec::<String>::new());
    assert_eq!(old.ports_tcp, vec![8080]);
}
