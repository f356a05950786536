//! Tasks through the control plane directly: placement, failures, idempotency, the lifecycle
//! that agents report, and concurrent RunTask calls that must never overcommit an instance.

use crate::common::{connected_instance, req, setup};
use gantry_core::protocol::FargateRegistration;
use gantry_core::{ErrorKind, FixedClock};
use gantry_ecs::{ControlPlane, Ctx, keys};
use gantry_model::*;
use serde_json::json;
use std::sync::Arc;

/// A cluster with one instance of `memory` MiB whose agent is connected (the guard keeps it so).
async fn cluster_with_instance(
    cp: &ControlPlane,
    ctx: &Ctx,
    clock: &Arc<FixedClock>,
    memory: i32,
) -> (String, gantry_ecs::agents::PollGuard) {
    cp.create_cluster(ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    let registration = req(json!({"cluster": "c", "totalResources": [
        {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": memory}]}));
    connected_instance(cp, ctx, clock, registration).await
}

async fn taskdef(cp: &ControlPlane, ctx: &Ctx, memory: i32, host_port: Option<i32>) {
    let mut pm = json!({"containerPort": 80});
    if let Some(p) = host_port {
        pm["hostPort"] = json!(p);
    }
    cp.register_task_definition(
        ctx,
        req(json!({"family": "web", "containerDefinitions": [
            {"name": "web", "image": "img", "memory": memory, "cpu": 128, "portMappings": [pm]}]})),
    )
    .await
    .unwrap();
}

fn remaining(ci: &ContainerInstance, name: &str) -> i32 {
    ci.remaining_resources
        .as_ref()
        .unwrap()
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .unwrap()
        .integer_value
}

#[tokio::test]
async fn run_task_places_reserves_and_releases() {
    let (cp, ctx, clock) = setup();
    let (ci, _guard) = cluster_with_instance(&cp, &ctx, &clock, 1024).await;
    taskdef(&cp, &ctx, 256, Some(8080)).await;
    let r = cp
        .run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web", "count": 3, "startedBy": "me"})))
        .await
        .unwrap();
    let tasks = r.tasks.unwrap();
    assert_eq!(tasks.len(), 1, "the static host port fits once");
    assert_eq!(r.failures.unwrap()[0].reason.as_deref(), Some("RESOURCE:PORTS"));
    let t = &tasks[0];
    assert_eq!(t.container_instance_arn.as_deref(), Some(ci.as_str()));
    assert_eq!(
        (t.last_status.as_deref(), t.desired_status.as_deref()),
        (Some("PROVISIONING"), Some("RUNNING"))
    );
    assert_eq!(t.group.as_deref(), Some("family:web"));
    assert_eq!(t.launch_type.as_deref(), Some("EC2"));
    assert!(t.task_arn.as_deref().unwrap().starts_with("arn:aws:ecs:us-east-1:000000000000:task/c/"));
    let inst = cp
        .describe_container_instances(&ctx, req(json!({"cluster": "c", "containerInstances": [ci]})))
        .unwrap();
    let inst = &inst.container_instances.unwrap()[0];
    assert_eq!(remaining(inst, "MEMORY"), 1024 - 256);
    assert_eq!(remaining(inst, "CPU"), 2048 - 128);
    assert!(inst.agent_connected);
    assert_eq!(inst.pending_tasks_count, 1);

    // The agent reports it running, then stopped; the reservation comes back.
    let arn = t.task_arn.clone().unwrap();
    cp.submit_task_state_change(&ctx, req(json!({"cluster": "c", "task": arn, "status": "RUNNING",
        "containers": [{"containerName": "web", "runtimeId": "abc", "status": "RUNNING",
            "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 8080, "protocol": "tcp"}]}]})))
        .await
        .unwrap();
    let d = cp
        .describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": [arn]})))
        .unwrap()
        .tasks
        .unwrap()
        .remove(0);
    assert_eq!(d.last_status.as_deref(), Some("RUNNING"));
    assert_eq!(d.connectivity.as_deref(), Some("CONNECTED"));
    assert!(d.started_at.is_some());
    assert_eq!(d.containers.as_ref().unwrap()[0].runtime_id.as_deref(), Some("abc"));
    cp.submit_task_state_change(
        &ctx,
        req(json!({"cluster": "c", "task": arn, "status": "STOPPED",
        "reason": "Essential container in task exited",
        "containers": [{"containerName": "web", "status": "STOPPED", "exitCode": 3}]})),
    )
    .await
    .unwrap();
    let d = cp
        .describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": [arn]})))
        .unwrap()
        .tasks
        .unwrap()
        .remove(0);
    assert_eq!(d.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(d.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(d.containers.unwrap()[0].exit_code, Some(3));
    let inst = cp
        .describe_container_instances(&ctx, req(json!({"cluster": "c", "containerInstances": [ci]})))
        .unwrap();
    assert_eq!(remaining(&inst.container_instances.unwrap()[0], "MEMORY"), 1024);
    // STOPPED is final: a late RUNNING report changes nothing.
    cp.submit_task_state_change(&ctx, req(json!({"cluster": "c", "task": arn, "status": "RUNNING"})))
        .await
        .unwrap();
    let d = cp
        .describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": [arn]})))
        .unwrap()
        .tasks
        .unwrap()
        .remove(0);
    assert_eq!(d.last_status.as_deref(), Some("STOPPED"));
    // Listing follows desired status.
    let stopped = cp
        .list_tasks(&ctx, req(json!({"cluster": "c", "desiredStatus": "STOPPED", "startedBy": "me"})))
        .unwrap();
    assert_eq!(stopped.task_arns.unwrap(), vec![arn.clone()]);
    assert!(cp.list_tasks(&ctx, req(json!({"cluster": "c"}))).unwrap().task_arns.unwrap().is_empty());
}

#[tokio::test]
async fn failures_name_the_resource_and_disconnected_agents() {
    let (cp, ctx, clock) = setup();
    let (ci, guard) = cluster_with_instance(&cp, &ctx, &clock, 512).await;
    taskdef(&cp, &ctx, 1024, None).await;
    let r = cp.run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web"}))).await.unwrap();
    assert!(r.tasks.unwrap().is_empty());
    let f = &r.failures.unwrap()[0];
    assert_eq!((f.arn.as_deref(), f.reason.as_deref()), (Some(ci.as_str()), Some("RESOURCE:MEMORY")));
    drop(guard);
    clock.advance_ms(gantry_ecs::agents::GRACE_MS + 1);
    let r = cp.run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web"}))).await.unwrap();
    assert_eq!(r.failures.unwrap()[0].reason.as_deref(), Some("AGENT"));
    let inst = cp
        .describe_container_instances(&ctx, req(json!({"cluster": "c", "containerInstances": [ci]})))
        .unwrap();
    assert!(!inst.container_instances.unwrap()[0].agent_connected);
}

#[tokio::test]
async fn run_task_validation() {
    let (cp, ctx, clock) = setup();
    let (_ci, _g) = cluster_with_instance(&cp, &ctx, &clock, 4096).await;
    taskdef(&cp, &ctx, 64, None).await;
    let bad = |v: serde_json::Value| async { cp.run_task(&ctx, req(v)).await.unwrap_err() };
    let e = bad(json!({"cluster": "nope", "taskDefinition": "web"})).await;
    assert_eq!(e.kind, ErrorKind::ClusterNotFoundException);
    let e = bad(json!({"cluster": "c", "taskDefinition": "ghost"})).await;
    assert_eq!(e.message, "TaskDefinition not found.");
    let e = bad(json!({"cluster": "c", "taskDefinition": "web", "count": 11})).await;
    assert_eq!(e.kind, ErrorKind::InvalidParameterException);
    let e = bad(json!({"cluster": "c", "taskDefinition": "web", "launchType": "FARGATE"})).await;
    assert_eq!(e.message, "Task definition does not support launch_type FARGATE.");
    let e = bad(json!({"cluster": "c", "taskDefinition": "web", "launchType": "EC2",
        "capacityProviderStrategy": [{"capacityProvider": "FARGATE"}]}))
    .await;
    assert!(e.message.starts_with("Specifying both a launch type and capacity provider strategy"));
    let e = bad(json!({"cluster": "c", "taskDefinition": "web", "overrides": {"containerOverrides": [{"name": "nope"}]}})).await;
    assert!(e.message.contains("nope"));
    let e = bad(json!({"cluster": "c", "taskDefinition": "web",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s"]}}}))
    .await;
    assert_eq!(e.kind, ErrorKind::InvalidParameterException);
    cp.create_cluster(&ctx, req(json!({"clusterName": "empty"}))).await.unwrap();
    let e = bad(json!({"cluster": "empty", "taskDefinition": "web"})).await;
    assert_eq!(e.message, "No Container Instances were found in your cluster.");
}

#[tokio::test]
async fn overrides_change_what_is_reserved_and_reported() {
    let (cp, ctx, clock) = setup();
    let (_ci, _g) = cluster_with_instance(&cp, &ctx, &clock, 4096).await;
    taskdef(&cp, &ctx, 64, None).await;
    let r = cp
        .run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web", "overrides": {"containerOverrides": [
            {"name": "web", "command": ["echo", "hi"], "memory": 300, "environment": [{"name": "A", "value": "1"}]}]}})))
        .await
        .unwrap();
    let t = &r.tasks.unwrap()[0];
    assert_eq!(t.memory.as_deref(), Some("300"));
    let o = &t.overrides.as_ref().unwrap().container_overrides.as_ref().unwrap()[0];
    assert_eq!(o.command, Some(vec!["echo".to_string(), "hi".to_string()]));
    let a = cp.assignments(t.container_instance_arn.as_ref().unwrap()).unwrap();
    let def = &a[0].task_definition.container_definitions.as_ref().unwrap()[0];
    assert_eq!(
        def.command,
        Some(vec!["echo".to_string(), "hi".to_string()]),
        "the agent gets the overridden definition"
    );
    assert_eq!(def.memory, Some(300));
}

#[tokio::test]
async fn client_token_makes_run_task_idempotent() {
    let (cp, ctx, clock) = setup();
    let (_ci, _g) = cluster_with_instance(&cp, &ctx, &clock, 4096).await;
    taskdef(&cp, &ctx, 64, None).await;
    let run = |count: i32| {
        cp.run_task(
            &ctx,
            req(json!({"cluster": "c", "taskDefinition": "web", "count": count, "clientToken": "tok-1"})),
        )
    };
    let a = run(2).await.unwrap().tasks.unwrap();
    let b = run(2).await.unwrap().tasks.unwrap();
    assert_eq!(
        a.iter().map(|t| t.task_arn.clone()).collect::<Vec<_>>(),
        b.iter().map(|t| t.task_arn.clone()).collect::<Vec<_>>()
    );
    assert_eq!(cp.list_tasks(&ctx, req(json!({"cluster": "c"}))).unwrap().task_arns.unwrap().len(), 2);
    let e = run(3).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConflictException);
}

#[tokio::test]
async fn two_concurrent_run_tasks_with_one_client_token_start_one_set_of_tasks() {
    let (cp, ctx, clock) = setup();
    let (_ci, _g) = cluster_with_instance(&cp, &ctx, &clock, 4096).await;
    taskdef(&cp, &ctx, 64, None).await;
    let run = || {
        cp.run_task(
            &ctx,
            req(json!({"cluster": "c", "taskDefinition": "web", "count": 2, "clientToken": "tok-2"})),
        )
    };
    let (a, b) = tokio::join!(run(), run());
    let arns =
        |r: RunTaskResponse| r.tasks.unwrap().into_iter().map(|t| t.task_arn.unwrap()).collect::<Vec<_>>();
    let (a, b) = (arns(a.unwrap()), arns(b.unwrap()));
    assert_eq!(a.len(), 2);
    assert_eq!(a, b, "the second request answers with the first one's tasks");
    assert_eq!(cp.list_tasks(&ctx, req(json!({"cluster": "c"}))).unwrap().task_arns.unwrap().len(), 2);
}

#[tokio::test]
async fn a_run_task_that_fails_leaves_its_client_token_free() {
    let (cp, ctx, clock) = setup();
    taskdef(&cp, &ctx, 64, None).await;
    cp.create_cluster(&ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    let body = json!({"cluster": "c", "taskDefinition": "web", "clientToken": "tok-3"});
    let e = cp.run_task(&ctx, req(body.clone())).await.unwrap_err();
    assert!(e.message.contains("No Container Instances"), "{e:?}");
    assert!(cp.store().get(&keys::client_token(&ctx.scope, "c", "tok-3")).is_none());
    let (_ci, _g) = cluster_with_instance(&cp, &ctx, &clock, 4096).await;
    let t = cp.run_task(&ctx, req(body)).await.unwrap().tasks.unwrap();
    assert_eq!(t.len(), 1, "the retry runs the task");
}

#[tokio::test]
async fn stop_task_is_user_initiated_and_reaches_the_agent() {
    let (cp, ctx, clock) = setup();
    let (ci, _g) = cluster_with_instance(&cp, &ctx, &clock, 4096).await;
    taskdef(&cp, &ctx, 64, None).await;
    let t = cp
        .run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web"})))
        .await
        .unwrap()
        .tasks
        .unwrap()
        .remove(0);
    let arn = t.task_arn.unwrap();
    let s = cp.stop_task(&ctx, req(json!({"cluster": "c", "task": arn}))).await.unwrap().task.unwrap();
    assert_eq!(
        (s.desired_status.as_deref(), s.stop_code.as_deref()),
        (Some("STOPPED"), Some("UserInitiated"))
    );
    assert_eq!(s.stopped_reason.as_deref(), Some("Task stopped by user"));
    let a = cp.assignments(&ci).unwrap();
    assert_eq!(a[0].task.desired_status.as_deref(), Some("STOPPED"));
    cp.submit_task_state_change(&ctx, req(json!({"cluster": "c", "task": arn, "status": "STOPPED"})))
        .await
        .unwrap();
    assert!(cp.assignments(&ci).unwrap().is_empty(), "a stopped task is no longer assigned");
    let d = cp.describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": [arn, "missing"]}))).unwrap();
    assert_eq!(d.tasks.unwrap()[0].stop_code.as_deref(), Some("UserInitiated"));
    assert_eq!(d.failures.unwrap()[0].reason.as_deref(), Some("MISSING"));
}

/// RunTask's propagateTags TASK_DEFINITION copies the definition's tags (the caller's value wins
/// for a key given twice), enableECSManagedTags adds `aws:ecs:clusterName`, SERVICE is refused.
#[tokio::test]
async fn run_task_propagates_task_definition_tags_and_adds_managed_ones() {
    let (cp, ctx, clock) = setup();
    let (_ci, _g) = cluster_with_instance(&cp, &ctx, &clock, 4096).await;
    cp.register_task_definition(
        &ctx,
        req(json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "img", "memory": 64}],
            "tags": [{"key": "team", "value": "a"}, {"key": "env", "value": "prod"}]})),
    )
    .await
    .unwrap();
    let tags_of = |t: &Task| {
        let mut v: Vec<(String, String)> = t
            .tags
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
            .collect();
        v.sort();
        v
    };
    let run = |extra: serde_json::Value| {
        let mut r = json!({"cluster": "c", "taskDefinition": "web"});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        cp.run_task(&ctx, req(r))
    };
    let t = run(json!({"propagateTags": "TASK_DEFINITION", "enableECSManagedTags": true,
        "tags": [{"key": "env", "value": "dev"}]}))
    .await
    .unwrap()
    .tasks
    .unwrap()
    .remove(0);
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(tags_of(&t), [pair("aws:ecs:clusterName", "c"), pair("env", "dev"), pair("team", "a")]);
    let t = run(json!({"tags": [{"key": "x", "value": "1"}]})).await.unwrap().tasks.unwrap().remove(0);
    assert_eq!(tags_of(&t), [pair("x", "1")], "without propagateTags only the caller's tags");
    let d = cp
        .describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": [t.task_arn], "include": ["TAGS"]})))
        .unwrap();
    assert_eq!(tags_of(&d.tasks.unwrap()[0]), [pair("x", "1")]);
    let e = run(json!({"propagateTags": "SERVICE"})).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameterException);
    assert!(e.message.contains("propagateTags SERVICE"), "{}", e.message);
}

/// Without `force`, an instance with tasks (pending or running) stays registered; once they have
/// stopped it deregisters. With `force` it deregisters anyway.
#[tokio::test]
async fn deregistering_an_instance_with_tasks_needs_force() {
    let (cp, ctx, clock) = setup();
    let (ci, _g) = cluster_with_instance(&cp, &ctx, &clock, 4096).await;
    taskdef(&cp, &ctx, 64, None).await;
    let run = || cp.run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web"})));
    let arn = run().await.unwrap().tasks.unwrap().remove(0).task_arn.unwrap();
    let deregister = |force: bool| {
        cp.deregister_container_instance(
            &ctx,
            req(json!({"cluster": "c", "containerInstance": ci, "force": force})),
        )
    };
    let e = deregister(false).await.unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::InvalidParameterException, "Found running tasks on the instance.")
    );
    cp.submit_task_state_change(&ctx, req(json!({"cluster": "c", "task": arn, "status": "RUNNING"})))
        .await
        .unwrap();
    assert_eq!(deregister(false).await.unwrap_err().kind, ErrorKind::InvalidParameterException);
    cp.submit_task_state_change(&ctx, req(json!({"cluster": "c", "task": arn, "status": "STOPPED"})))
        .await
        .unwrap();
    let i = deregister(false).await.unwrap().container_instance.unwrap();
    assert_eq!(i.status.as_deref(), Some("INACTIVE"));

    // force: deregistered with a task still running on it.
    let (ci2, _g2) = crate::common::connected_instance(
        &cp,
        &ctx,
        &clock,
        req(json!({"cluster": "c", "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}]})),
    )
    .await;
    run().await.unwrap();
    let forced = cp
        .deregister_container_instance(
            &ctx,
            req(json!({"cluster": "c", "containerInstance": ci2, "force": true})),
        )
        .await
        .unwrap();
    assert_eq!(forced.container_instance.unwrap().status.as_deref(), Some("INACTIVE"));
}

#[tokio::test]
async fn a_poll_that_says_what_it_holds_gets_only_changes_and_removals() {
    let (cp, ctx, clock) = setup();
    let (ci, _g) = cluster_with_instance(&cp, &ctx, &clock, 4096).await;
    taskdef(&cp, &ctx, 64, None).await;
    let run = || async {
        let r = cp.run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web", "count": 3}))).await;
        r.unwrap().tasks.unwrap().into_iter().map(|t| t.task_arn.unwrap()).collect::<Vec<_>>()
    };
    let id = |arn: &str| arn.rsplit('/').next().unwrap().to_string();
    let arns = run().await;
    let (all, removed) = cp.assignment_delta(&ci, Some(&Default::default())).unwrap();
    assert_eq!((all.len(), removed.len()), (3, 0), "nothing known: everything");
    let known: std::collections::BTreeMap<String, i64> =
        all.iter().map(|a| (id(a.task.task_arn.as_deref().unwrap()), a.revision)).collect();
    assert!(all.iter().all(|a| a.revision > 0));
    assert_eq!(cp.assignment_delta(&ci, Some(&known)).unwrap(), (vec![], vec![]), "nothing changed");

    // The agent's own reports change the tasks but not what it must do: still nothing.
    for arn in &arns {
        cp.submit_task_state_change(&ctx, req(json!({"cluster": "c", "task": arn, "status": "RUNNING"})))
            .await
            .unwrap();
    }
    assert_eq!(cp.assignment_delta(&ci, Some(&known)).unwrap(), (vec![], vec![]));

    // A new task, a stop asked for, and a task the agent stopped.
    let new = run().await;
    cp.stop_task(&ctx, req(json!({"cluster": "c", "task": arns[0]}))).await.unwrap();
    cp.submit_task_state_change(&ctx, req(json!({"cluster": "c", "task": arns[1], "status": "STOPPED"})))
        .await
        .unwrap();
    let (changed, removed) = cp.assignment_delta(&ci, Some(&known)).unwrap();
    let mut got: Vec<String> = changed.iter().map(|a| a.task.task_arn.clone().unwrap()).collect();
    got.sort();
    let mut want = vec![arns[0].clone()];
    want.extend(new.iter().cloned());
    want.sort();
    assert_eq!(got, want, "the new tasks and the one to stop");
    let stop = changed.iter().find(|a| a.task.task_arn.as_ref() == Some(&arns[0])).unwrap();
    assert_eq!(stop.task.desired_status.as_deref(), Some("STOPPED"));
    assert!(stop.revision > known[&id(&arns[0])]);
    assert_eq!(removed, vec![id(&arns[1])]);
    // Without `known`, the whole set, as before.
    assert_eq!(cp.assignments(&ci).unwrap().len(), 5);
}

#[tokio::test]
async fn only_changes_the_agent_must_act_on_wake_its_poll() {
    let (cp, ctx, clock) = setup();
    let (ci, _g) = cluster_with_instance(&cp, &ctx, &clock, 4096).await;
    taskdef(&cp, &ctx, 64, None).await;
    let (_poll, mut rx) = cp.agents().begin_poll(&ci, clock.clone());
    rx.borrow_and_update();
    let r = cp.run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web"}))).await.unwrap();
    let arn = r.tasks.unwrap().remove(0).task_arn.unwrap();
    assert!(rx.has_changed().unwrap(), "a new assignment wakes the poll");
    rx.borrow_and_update();
    for status in ["PENDING", "RUNNING"] {
        cp.submit_task_state_change(&ctx, req(json!({"cluster": "c", "task": arn, "status": status})))
            .await
            .unwrap();
    }
    cp.submit_container_state_change(
        &ctx,
        req(json!({"cluster": "c", "task": arn, "containerName": "web", "status": "RUNNING"})),
    )
    .await
    .unwrap();
    assert!(!rx.has_changed().unwrap(), "the agent's own reports do not");
    cp.stop_task(&ctx, req(json!({"cluster": "c", "task": arn}))).await.unwrap();
    assert!(rx.has_changed().unwrap(), "a stop does");
}

/// On several threads, so placements also contend for the fleet's locks for real.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_run_tasks_never_overcommit() {
    let (cp, ctx, clock) = setup();
    let (ci, _g) = cluster_with_instance(&cp, &ctx, &clock, 1000).await;
    taskdef(&cp, &ctx, 100, None).await;
    let mut handles = Vec::new();
    for _ in 0..30 {
        let (cp, ctx) = (cp.clone(), ctx.clone());
        handles.push(tokio::spawn(async move {
            cp.run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web"})))
                .await
                .unwrap()
                .tasks
                .unwrap()
                .len()
        }));
    }
    let mut placed = 0;
    for h in handles {
        placed += h.await.unwrap();
    }
    assert_eq!(placed, 10, "exactly as many as fit");
    let inst = cp
        .describe_container_instances(&ctx, req(json!({"cluster": "c", "containerInstances": [ci]})))
        .unwrap();
    assert_eq!(remaining(&inst.container_instances.unwrap()[0], "MEMORY"), 0);
}

#[tokio::test]
async fn fargate_tasks_go_to_fargate_nodes_with_an_eni() {
    let (cp, ctx, clock) = setup();
    cp.create_cluster(&ctx, req(json!({"clusterName": "f"}))).await.unwrap();
    cp.register_task_definition(
        &ctx,
        req(json!({"family": "fw", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512", "containerDefinitions": [{"name": "web", "image": "img"}]})),
    )
    .await
    .unwrap();
    let run = json!({"cluster": "f", "taskDefinition": "fw", "launchType": "FARGATE",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}});
    let r = cp.run_task(&ctx, req(run.clone())).await.unwrap();
    assert!(r.failures.unwrap()[0].reason.as_deref().unwrap().starts_with("Capacity is unavailable"));
    cp.register_fargate_node(FargateRegistration {
        node_id: "n1".into(),
        cpu: 1024,
        memory: 1024,
        availability_zone: None,
    })
    .await
    .unwrap();
    let (_g, _) = cp.agents().begin_poll("fargate:n1", clock.clone());
    let e = cp
        .run_task(&ctx, req(json!({"cluster": "f", "taskDefinition": "fw", "launchType": "FARGATE"})))
        .await
        .unwrap_err();
    assert!(e.message.starts_with("Network Configuration must be provided"));
    let t = cp.run_task(&ctx, req(run.clone())).await.unwrap().tasks.unwrap().remove(0);
    assert_eq!(t.container_instance_arn, None);
    assert_eq!(t.platform_version.as_deref(), Some("1.4.0"));
    let att = &t.attachments.as_ref().unwrap()[0];
    assert_eq!(att.r#type.as_deref(), Some("ElasticNetworkInterface"));
    assert_eq!(cp.assignments("fargate:n1").unwrap().len(), 1);
    // Two fit in 512 MiB x 2; the third does not.
    cp.run_task(&ctx, req(run.clone())).await.unwrap().tasks.unwrap().remove(0);
    assert!(cp.run_task(&ctx, req(run)).await.unwrap().tasks.unwrap().is_empty());
    // Health and address reports land on the task.
    cp.report_task_health(gantry_core::protocol::TaskHealthReport {
        task_arn: t.task_arn.clone().unwrap(),
        containers: vec![],
        private_ipv4_address: Some("172.29.0.9".into()),
    })
    .await
    .unwrap();
    let d = cp
        .describe_tasks(&ctx, req(json!({"cluster": "f", "tasks": [t.task_arn]})))
        .unwrap()
        .tasks
        .unwrap()
        .remove(0);
    let ip = d.attachments.unwrap()[0]
        .details
        .as_ref()
        .unwrap()
        .iter()
        .find(|d| d.name.as_deref() == Some("privateIPv4Address"))
        .unwrap()
        .value
        .clone();
    assert_eq!(ip.as_deref(), Some("172.29.0.9"));
}

/// Three zones with two instances each, all connected; the guards keep them so.
async fn zoned_fleet(
    cp: &ControlPlane,
    ctx: &Ctx,
    clock: &Arc<FixedClock>,
) -> (Vec<String>, Vec<gantry_ecs::agents::PollGuard>) {
    cp.create_cluster(ctx, req(json!({"clusterName": "z"}))).await.unwrap();
    let mut arns = Vec::new();
    let mut guards = Vec::new();
    for i in 0..6 {
        let zone = ["zone-a", "zone-b", "zone-c"][i % 3];
        let registration = req(json!({"cluster": "z", "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}],
            "attributes": [{"name": "ecs.availability-zone", "value": zone}]}));
        let (arn, guard) = connected_instance(cp, ctx, clock, registration).await;
        guards.push(guard);
        arns.push(arn);
    }
    (arns, guards)
}

#[tokio::test]
async fn member_of_puts_every_task_in_the_zone_and_an_impossible_one_fails() {
    let (cp, ctx, clock) = setup();
    let (_arns, _g) = zoned_fleet(&cp, &ctx, &clock).await;
    taskdef(&cp, &ctx, 64, None).await;
    let r = cp
        .run_task(&ctx, req(json!({"cluster": "z", "taskDefinition": "web", "count": 10,
            "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.availability-zone == zone-b"}]})))
        .await
        .unwrap();
    let tasks = r.tasks.unwrap();
    assert_eq!(tasks.len(), 10);
    assert!(tasks.iter().all(|t| t.availability_zone.as_deref() == Some("zone-b")));
    let r = cp
        .run_task(&ctx, req(json!({"cluster": "z", "taskDefinition": "web",
            "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.availability-zone == zone-x"}]})))
        .await
        .unwrap();
    assert!(r.tasks.unwrap().is_empty());
    let f = r.failures.unwrap();
    assert_eq!(f.len(), 6);
    assert!(f.iter().all(|f| f.reason.as_deref() == Some("MemberOf")));
    let e = cp
        .run_task(&ctx, req(json!({"cluster": "z", "taskDefinition": "web",
            "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.availability-zone =="}]})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameterException);
}

#[tokio::test]
async fn spread_over_zones_and_distinct_instance() {
    let (cp, ctx, clock) = setup();
    let (_arns, _g) = zoned_fleet(&cp, &ctx, &clock).await;
    taskdef(&cp, &ctx, 64, None).await;
    let r = cp
        .run_task(&ctx, req(json!({"cluster": "z", "taskDefinition": "web", "count": 6,
            "placementStrategy": [{"type": "spread", "field": "attribute:ecs.availability-zone"}, {"type": "binpack", "field": "memory"}]})))
        .await
        .unwrap();
    let mut per_zone = std::collections::HashMap::new();
    for t in r.tasks.unwrap() {
        *per_zone.entry(t.availability_zone.unwrap()).or_insert(0) += 1;
    }
    assert!(per_zone.len() == 3 && per_zone.values().all(|n| *n == 2), "{per_zone:?}");
    let r = cp
        .run_task(
            &ctx,
            req(json!({"cluster": "z", "taskDefinition": "web", "count": 8, "group": "one-each",
            "placementConstraints": [{"type": "distinctInstance"}]})),
        )
        .await
        .unwrap();
    let tasks = r.tasks.unwrap();
    assert_eq!(tasks.len(), 6, "one per instance");
    let mut hosts: Vec<_> = tasks.iter().map(|t| t.container_instance_arn.clone()).collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 6);
    assert!(r.failures.unwrap().iter().all(|f| f.reason.as_deref() == Some("DistinctInstance")));
    for bad in [
        json!({"placementStrategy": [{"type": "binpack", "field": "disk"}]}),
        json!({"placementStrategy": [{"type": "spread", "field": "nowhere"}]}),
        json!({"placementStrategy": [{"type": "wild"}]}),
        json!({"placementConstraints": [{"type": "memberOf"}]}),
        json!({"placementConstraints": [{"type": "distinctInstance", "expression": "x"}]}),
    ] {
        let mut body = json!({"cluster": "z", "taskDefinition": "web"});
        for (k, v) in bad.as_object().unwrap() {
            body[k] = v.clone();
        }
        let e = cp.run_task(&ctx, req(body.clone())).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidParameterException, "{body}");
    }
}

#[tokio::test]
async fn explain_says_why_each_instance_rejects() {
    let (cp, ctx, clock) = setup();
    let (arns, _g) = zoned_fleet(&cp, &ctx, &clock).await;
    taskdef(&cp, &ctx, 5000, None).await;
    let x = cp.explain_placement(&ctx, req(json!({"cluster": "z", "taskDefinition": "web"}))).unwrap();
    assert_eq!(x.instances.len(), 6);
    assert!(x.instances.iter().all(|v| !v.fits && v.reason.as_deref() == Some("RESOURCE:MEMORY")));
    taskdef(&cp, &ctx, 64, None).await;
    let x = cp
        .explain_placement(&ctx, req(json!({"cluster": "z", "taskDefinition": "web",
            "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.availability-zone == zone-a"}]})))
        .unwrap();
    let mut fits: Vec<_> =
        x.instances.iter().filter(|v| v.fits).map(|v| v.container_instance_arn.clone()).collect();
    fits.sort();
    let mut want = vec![arns[0].clone(), arns[3].clone()];
    want.sort();
    assert_eq!(fits, want);
}

/// Placement keeps each cluster's fleet between calls: attribute changes, deregistration and
/// stopped tasks done through other operations must all be seen by the next placement.
#[tokio::test]
async fn placement_sees_changes_made_between_placements() {
    let (cp, ctx, clock) = setup();
    let (arns, _g) = zoned_fleet(&cp, &ctx, &clock).await;
    taskdef(&cp, &ctx, 64, None).await;
    let blue = json!({"cluster": "z", "taskDefinition": "web",
        "placementConstraints": [{"type": "memberOf", "expression": "attribute:color == blue"}]});
    let r = cp.run_task(&ctx, req(blue.clone())).await.unwrap();
    assert_eq!(r.failures.unwrap().len(), 6, "no instance is blue yet");
    cp.put_attributes(
        &ctx,
        req(json!({"cluster": "z", "attributes": [{"name": "color", "value": "blue", "targetId": arns[4]}]})),
    )
    .await
    .unwrap();
    let r = cp.run_task(&ctx, req(blue.clone())).await.unwrap();
    let tasks = r.tasks.unwrap();
    assert_eq!(tasks[0].container_instance_arn.as_deref(), Some(arns[4].as_str()));

    // distinctInstance counts the task just placed, then forgets it once it stops.
    let distinct = json!({"cluster": "z", "taskDefinition": "web", "group": "g", "count": 6,
        "placementConstraints": [{"type": "distinctInstance"}]});
    let r = cp.run_task(&ctx, req(distinct.clone())).await.unwrap();
    let placed = r.tasks.unwrap();
    assert_eq!(placed.len(), 6);
    let r = cp
        .run_task(
            &ctx,
            req(json!({"cluster": "z", "taskDefinition": "web", "group": "g",
        "placementConstraints": [{"type": "distinctInstance"}]})),
        )
        .await
        .unwrap();
    assert!(r.tasks.unwrap().is_empty());
    let stopped = &placed[0];
    cp.submit_task_state_change(
        &ctx,
        req(json!({"cluster": "z", "task": stopped.task_arn, "status": "STOPPED", "reason": "done"})),
    )
    .await
    .unwrap();
    let r = cp
        .run_task(
            &ctx,
            req(json!({"cluster": "z", "taskDefinition": "web", "group": "g",
        "placementConstraints": [{"type": "distinctInstance"}]})),
        )
        .await
        .unwrap();
    assert_eq!(r.tasks.unwrap()[0].container_instance_arn, stopped.container_instance_arn);

    // A deregistered instance is gone from the fleet.
    cp.deregister_container_instance(
        &ctx,
        req(json!({"cluster": "z", "containerInstance": arns[4], "force": true})),
    )
    .await
    .unwrap();
    let r = cp.run_task(&ctx, req(blue)).await.unwrap();
    let f = r.failures.unwrap();
    assert_eq!(f.len(), 5);
    assert!(f.iter().all(|f| f.arn.as_deref() != Some(arns[4].as_str())));
}
