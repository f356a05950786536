//! Lost instances on the injected clock: an instance whose agent stops polling reads
//! `agentConnected: false` at once (after the poll grace), keeps its tasks' state, and once it
//! has been gone longer than the lost-instance timeout the scheduler marks its service tasks
//! STOPPED (giving back what they reserved) and replaces them on another instance, never above
//! maximumPercent. When the agent comes back its next poll says the replaced tasks are no longer
//! its own, so it stops them: no duplicates.

use crate::common::{connected_instance, req, setup};
use gantry_core::Scope;
use gantry_ecs::{ControlPlane, Ctx, keys};
use gantry_model::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const TIMEOUT_MS: i64 = 60_000;

fn tasks(cp: &ControlPlane, ctx: &Ctx) -> Vec<Task> {
    let arns = cp
        .list_tasks(ctx, req(json!({"cluster": "c", "desiredStatus": "RUNNING"})))
        .unwrap()
        .task_arns
        .unwrap_or_default();
    let stopped = cp
        .list_tasks(ctx, req(json!({"cluster": "c", "desiredStatus": "STOPPED"})))
        .unwrap()
        .task_arns
        .unwrap_or_default();
    let all: Vec<String> = arns.into_iter().chain(stopped).collect();
    if all.is_empty() {
        return vec![];
    }
    cp.describe_tasks(ctx, req(json!({"cluster": "c", "tasks": all}))).unwrap().tasks.unwrap()
}

fn instance(cp: &ControlPlane, ctx: &Ctx, arn: &str) -> ContainerInstance {
    cp.describe_container_instances(ctx, req(json!({"cluster": "c", "containerInstances": [arn]})))
        .unwrap()
        .container_instances
        .unwrap()
        .remove(0)
}

fn memory_left(i: &ContainerInstance) -> i32 {
    i.remaining_resources
        .iter()
        .flatten()
        .find(|r| r.name.as_deref() == Some("MEMORY"))
        .unwrap()
        .integer_value
}

#[tokio::test]
async fn a_lost_instances_service_tasks_are_replaced_and_not_duplicated_when_it_returns() {
    let (cp, ctx, clock) = setup();
    cp.set_lost_instance_timeout(Duration::from_millis(TIMEOUT_MS as u64));
    cp.create_cluster(&ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    cp.register_task_definition(
        &ctx,
        req(json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "img", "memory": 128}]})),
    )
    .await
    .unwrap();
    let registration = || {
        req(json!({"cluster": "c", "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}]}))
    };
    let (a, guard_a) = connected_instance(&cp, &ctx, &clock, registration()).await;
    let (b, guard_b) = connected_instance(&cp, &ctx, &clock, registration()).await;
    let mut guards = BTreeMap::from([(a.clone(), guard_a), (b.clone(), guard_b)]);
    // At most 100 %: the replacement may only start once the lost task counts as stopped.
    cp.create_service(
        &ctx,
        req(json!({"cluster": "c", "serviceName": "svc", "taskDefinition": "web", "desiredCount": 1,
            "deploymentConfiguration": {"maximumPercent": 100, "minimumHealthyPercent": 0}})),
    )
    .await
    .unwrap();
    let key = keys::service(&Scope::new("000000000000", "us-east-1"), "c", "svc");
    let pass = || async {
        cp.reconcile_service(&key).await.unwrap();
        let live = tasks(&cp, &ctx).iter().filter(|t| t.last_status.as_deref() != Some("STOPPED")).count();
        assert!(live <= 1, "never above maximumPercent: {live} tasks not stopped");
    };
    pass().await;
    let [first] = &tasks(&cp, &ctx)[..] else { panic!("one task") };
    let first_arn = first.task_arn.clone().unwrap();
    let lost = first.container_instance_arn.clone().unwrap();
    let other = if lost == a { b.clone() } else { a.clone() };
    cp.submit_task_state_change(&ctx, req(json!({"cluster": "c", "task": first_arn, "status": "RUNNING"})))
        .await
        .unwrap();
    let full = memory_left(&instance(&cp, &ctx, &other));
    assert_eq!(memory_left(&instance(&cp, &ctx, &lost)), full - 128);

    // Its agent goes: disconnected after the grace, but its task keeps its state.
    drop(guards.remove(&lost));
    clock.advance_ms(gantry_ecs::agents::GRACE_MS + 1);
    assert!(!instance(&cp, &ctx, &lost).agent_connected);
    assert!(instance(&cp, &ctx, &other).agent_connected);
    pass().await;
    let t = tasks(&cp, &ctx);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].last_status.as_deref(), Some("RUNNING"), "kept within the timeout");

    // Just within the timeout: still kept. Past it: stopped and replaced on the other instance.
    clock.advance_ms(TIMEOUT_MS - gantry_ecs::agents::GRACE_MS - 1);
    pass().await;
    assert_eq!(tasks(&cp, &ctx)[0].last_status.as_deref(), Some("RUNNING"));
    clock.advance_ms(1);
    pass().await;
    pass().await;
    let t = tasks(&cp, &ctx);
    let old = t.iter().find(|x| x.task_arn.as_deref() == Some(&first_arn)).unwrap();
    assert_eq!(old.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(old.desired_status.as_deref(), Some("STOPPED"));
    assert_eq!(old.stop_code.as_deref(), Some("ServiceSchedulerInitiated"));
    assert_eq!(
        old.stopped_reason.as_deref(),
        Some(
            "Task stopped because its container instance's agent has been disconnected for more than 60 seconds."
        )
    );
    let new: Vec<&Task> = t.iter().filter(|x| x.last_status.as_deref() != Some("STOPPED")).collect();
    assert_eq!(new.len(), 1, "replaced: {t:?}");
    assert_eq!(new[0].container_instance_arn.as_deref(), Some(other.as_str()), "not on the lost instance");
    assert_eq!(memory_left(&instance(&cp, &ctx, &lost)), full, "what it reserved went back");

    // The agent comes back holding the old task: its poll says it is no longer assigned.
    let id = first_arn.rsplit('/').next().unwrap().to_string();
    let known = BTreeMap::from([(id.clone(), 1)]);
    let (_back, _) = cp.agents().begin_poll(&lost, clock.clone());
    let (assigned, removed) = cp.assignment_delta(&lost, Some(&known)).unwrap();
    assert!(assigned.is_empty());
    assert_eq!(removed, vec![id]);
    assert!(instance(&cp, &ctx, &lost).agent_connected);
    // A late report of the old task does not bring it back.
    cp.submit_task_state_change(&ctx, req(json!({"cluster": "c", "task": first_arn, "status": "RUNNING"})))
        .await
        .unwrap();
    pass().await;
    let live = tasks(&cp, &ctx).into_iter().filter(|x| x.last_status.as_deref() != Some("STOPPED")).count();
    assert_eq!(live, 1);
    drop(guards);
}
