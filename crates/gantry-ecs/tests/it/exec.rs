//! ECS Exec through the control plane: enableExecuteCommand on tasks and services, the managed
//! agent it gives their containers, and ExecuteCommand's checks with ECS's errors.

use crate::common::{connected_instance, req, setup};
use gantry_core::ErrorKind;
use gantry_ecs::ops::exec::NOT_ENABLED;
use gantry_ecs::{ControlPlane, Ctx};
use gantry_model::*;
use serde_json::json;

async fn cluster(
    cp: &ControlPlane,
    ctx: &Ctx,
    clock: &std::sync::Arc<gantry_core::FixedClock>,
) -> gantry_ecs::agents::PollGuard {
    cp.create_cluster(ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    let registration = req(json!({"cluster": "c", "totalResources": [
        {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048}]}));
    connected_instance(cp, ctx, clock, registration).await.1
    // The instance's agent stays connected while the guard lives.
}

async fn run(cp: &ControlPlane, ctx: &Ctx, exec: bool) -> Task {
    let r = cp
        .run_task(ctx, req(json!({"cluster": "c", "taskDefinition": "two", "enableExecuteCommand": exec})))
        .await
        .unwrap();
    r.tasks.unwrap().remove(0)
}

async fn report(cp: &ControlPlane, ctx: &Ctx, arn: &str, status: &str) {
    cp.submit_task_state_change(
        ctx,
        req(json!({"cluster": "c", "task": arn, "status": status, "containers": [
            {"containerName": "app", "status": status}, {"containerName": "side", "status": status}]})),
    )
    .await
    .unwrap();
}

fn exec_req(task: &str, container: Option<&str>, interactive: bool) -> ExecuteCommandRequest {
    ExecuteCommandRequest {
        cluster: Some("c".into()),
        container: container.map(Into::into),
        command: "sh -c 'echo hi'".into(),
        interactive,
        task: task.into(),
    }
}

fn agents(t: &Task) -> Vec<(Option<String>, Option<String>, bool)> {
    t.containers
        .iter()
        .flatten()
        .flat_map(|c| c.managed_agents.iter().flatten())
        .map(|a| (a.name.clone(), a.last_status.clone(), a.last_started_at.is_some()))
        .collect()
}

#[tokio::test]
async fn execute_command_runs_only_where_ecs_would() {
    let (cp, ctx, clock) = setup();
    let _guard = cluster(&cp, &ctx, &clock).await;
    cp.register_task_definition(
        &ctx,
        req(json!({"family": "two", "containerDefinitions": [
            {"name": "app", "image": "img", "memory": 64}, {"name": "side", "image": "img", "memory": 64}]})),
    )
    .await
    .unwrap();

    // A task run with exec enabled says so, and its containers carry ECS's managed agent.
    let t = run(&cp, &ctx, true).await;
    assert!(t.enable_execute_command);
    let pending = (Some("ExecuteCommandAgent".to_string()), Some("PENDING".to_string()), false);
    assert_eq!(agents(&t), vec![pending.clone(), pending]);
    let arn = t.task_arn.clone().unwrap();

    // Not yet running: ECS's "not enabled or agent not running".
    let e = cp.execute_command(&ctx, &exec_req(&arn, Some("app"), true)).unwrap_err();
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::InvalidParameterException, NOT_ENABLED));

    report(&cp, &ctx, &arn, "RUNNING").await;
    let d = cp
        .describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": [arn]})))
        .unwrap()
        .tasks
        .unwrap()
        .remove(0);
    let running = (Some("ExecuteCommandAgent".to_string()), Some("RUNNING".to_string()), true);
    assert_eq!(agents(&d), vec![running.clone(), running]);

    let target = cp.execute_command(&ctx, &exec_req(&arn, Some("side"), true)).unwrap();
    assert_eq!(target.container_name, "side");
    assert_eq!(target.command, vec!["sh", "-c", "echo hi"]);
    assert_eq!(target.task_arn, arn);
    assert_eq!(target.cluster_arn, "arn:aws:ecs:us-east-1:000000000000:cluster/c");
    let side = d.containers.as_ref().unwrap().iter().find(|c| c.name.as_deref() == Some("side")).unwrap();
    assert_eq!(Some(target.container_arn.as_str()), side.container_arn.as_deref());
    // By the task's ID too.
    let id = arn.rsplit('/').next().unwrap();
    assert_eq!(cp.execute_command(&ctx, &exec_req(id, Some("app"), true)).unwrap().task_arn, arn);

    let check = |r: ExecuteCommandRequest, kind: ErrorKind, msg: &str| {
        let e = cp.execute_command(&ctx, &r).unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (kind, msg), "{r:?}");
    };
    check(
        exec_req(&arn, Some("app"), false),
        ErrorKind::InvalidParameterException,
        "Interactive is the only mode supported currently.",
    );
    check(
        exec_req(&arn, None, true),
        ErrorKind::InvalidParameterException,
        "The task has more than one container. You must specify a container name.",
    );
    check(
        exec_req(&arn, Some("nope"), true),
        ErrorKind::InvalidParameterException,
        &format!("The container nope does not exist in the task {arn}."),
    );
    check(
        ExecuteCommandRequest { cluster: Some("nope".into()), ..exec_req(&arn, Some("app"), true) },
        ErrorKind::ClusterNotFoundException,
        "Cluster not found.",
    );
    check(
        exec_req("0123456789abcdef0123456789abcdef", Some("app"), true),
        ErrorKind::InvalidParameterException,
        "The specified task 0123456789abcdef0123456789abcdef was not found.",
    );
    check(
        ExecuteCommandRequest { command: "echo 'open".into(), ..exec_req(&arn, Some("app"), true) },
        ErrorKind::InvalidParameterException,
        "The command echo 'open has an unterminated quote.",
    );

    // A task run without exec enabled has no managed agent and cannot be exec'd into.
    let plain = run(&cp, &ctx, false).await;
    assert!(!plain.enable_execute_command);
    assert!(agents(&plain).is_empty());
    let plain_arn = plain.task_arn.unwrap();
    report(&cp, &ctx, &plain_arn, "RUNNING").await;
    check(exec_req(&plain_arn, Some("app"), true), ErrorKind::InvalidParameterException, NOT_ENABLED);

    // Once stopped, the agent is STOPPED and exec is refused.
    report(&cp, &ctx, &arn, "STOPPED").await;
    let d = cp
        .describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": [arn]})))
        .unwrap()
        .tasks
        .unwrap()
        .remove(0);
    assert!(agents(&d).iter().all(|a| a.1.as_deref() == Some("STOPPED")));
    check(exec_req(&arn, Some("app"), true), ErrorKind::InvalidParameterException, NOT_ENABLED);
}

#[tokio::test]
async fn a_disconnected_agent_is_target_not_connected() {
    let (cp, ctx, clock) = setup();
    let guard = cluster(&cp, &ctx, &clock).await;
    cp.register_task_definition(
        &ctx,
        req(
            json!({"family": "two", "containerDefinitions": [{"name": "app", "image": "img", "memory": 64}]}),
        ),
    )
    .await
    .unwrap();
    let arn = run(&cp, &ctx, true).await.task_arn.unwrap();
    cp.submit_task_state_change(
        &ctx,
        req(json!({"cluster": "c", "task": arn, "status": "RUNNING",
            "containers": [{"containerName": "app", "status": "RUNNING"}]})),
    )
    .await
    .unwrap();
    // One container: no name needed.
    let mut r = exec_req(&arn, None, true);
    assert_eq!(cp.execute_command(&ctx, &r).unwrap().container_name, "app");
    drop(guard);
    clock.advance_ms(60_000);
    r.container = Some("app".into());
    let e = cp.execute_command(&ctx, &r).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TargetNotConnectedException);
}

#[tokio::test]
async fn services_launch_tasks_with_exec_as_configured() {
    let (cp, ctx, clock) = setup();
    let _guard = cluster(&cp, &ctx, &clock).await;
    cp.register_task_definition(
        &ctx,
        req(
            json!({"family": "two", "containerDefinitions": [{"name": "app", "image": "img", "memory": 64}]}),
        ),
    )
    .await
    .unwrap();
    let s = cp
        .create_service(
            &ctx,
            req(json!({"cluster": "c", "serviceName": "s", "taskDefinition": "two", "desiredCount": 0,
                "enableExecuteCommand": true})),
        )
        .await
        .unwrap()
        .service
        .unwrap();
    assert!(s.enable_execute_command);
    let s = cp
        .update_service(&ctx, req(json!({"cluster": "c", "service": "s", "enableExecuteCommand": false})))
        .await
        .unwrap()
        .service
        .unwrap();
    assert!(!s.enable_execute_command);
    let d = cp.describe_services(&ctx, req(json!({"cluster": "c", "services": ["s"]}))).unwrap();
    assert!(!d.services.unwrap()[0].enable_execute_command);
}

const SERVER_HASH: &str = "5e1f0000000000000000000000000000000000000000000000000000000000aa";
const OLD_HASH: &str = "0d1d0000000000000000000000000000000000000000000000000000000000bb";

fn registration(hash: Option<&str>) -> RegisterContainerInstanceRequest {
    let mut r = json!({"cluster": "c", "totalResources": [
        {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}]});
    if let Some(h) = hash {
        r["versionInfo"] = json!({"agentVersion": "1.0.0", "agentHash": h});
    }
    req(r)
}

fn with_server_binary(cp: &ControlPlane) {
    cp.set_agent_binary(gantry_ecs::AgentBinary {
        path: "/usr/local/bin/gantry".into(),
        sha256: SERVER_HASH.into(),
        size: 1234,
    });
}

async fn update_error(cp: &ControlPlane, ctx: &Ctx, arn: &str) -> (ErrorKind, String) {
    let e = cp
        .update_container_agent(ctx, req(json!({"cluster": "c", "containerInstance": arn})))
        .await
        .unwrap_err();
    (e.kind, e.message)
}

fn update_status(cp: &ControlPlane, ctx: &Ctx, arn: &str) -> Option<String> {
    let d = cp
        .describe_container_instances(ctx, req(json!({"cluster": "c", "containerInstances": [arn]})))
        .unwrap();
    d.container_instances.unwrap().remove(0).agent_update_status
}

async fn agent_reports(cp: &ControlPlane, arn: &str, status: &str) -> gantry_core::Result<()> {
    let report = gantry_core::protocol::AgentUpdateReport {
        node: arn.to_string(),
        status: status.to_string(),
        reason: (status == "FAILED").then(|| "digest mismatch".to_string()),
    };
    cp.report_agent_update(report).await
}

#[tokio::test]
async fn update_container_agent_says_when_there_is_no_update() {
    let (cp, ctx, clock) = setup();
    with_server_binary(&cp);
    cp.create_cluster(&ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    let (current, _g1) = connected_instance(&cp, &ctx, &clock, registration(Some(SERVER_HASH))).await;
    assert_eq!(
        update_error(&cp, &ctx, &current).await,
        (
            ErrorKind::NoUpdateAvailableException,
            format!(
                "There is no update available for the agent of container instance {current}: it runs the server's agent ({SERVER_HASH})."
            )
        )
    );
    let (none, _g2) = connected_instance(&cp, &ctx, &clock, registration(None)).await;
    assert_eq!(
        update_error(&cp, &ctx, &none).await,
        (
            ErrorKind::MissingVersionException,
            format!(
                "The container instance {none} does not report its agent's version (versionInfo.agentHash)."
            )
        )
    );
    let e = cp
        .update_container_agent(&ctx, req(json!({"cluster": "nope", "containerInstance": current})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClusterNotFoundException);
    assert_eq!(update_error(&cp, &ctx, "0123").await.0, ErrorKind::InvalidParameterException);
}

#[tokio::test]
async fn a_server_that_knows_no_binary_of_its_own_has_no_update() {
    let (cp, ctx, clock) = setup();
    cp.create_cluster(&ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    let (old, _g) = connected_instance(&cp, &ctx, &clock, registration(Some(OLD_HASH))).await;
    assert_eq!(update_error(&cp, &ctx, &old).await.0, ErrorKind::NoUpdateAvailableException);
    assert_eq!(cp.agent_update_for(&old), None);
}

#[tokio::test]
async fn an_older_agent_moves_through_the_update_statuses_to_updated() {
    let (cp, ctx, clock) = setup();
    with_server_binary(&cp);
    cp.create_cluster(&ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    let (old, _g) = connected_instance(&cp, &ctx, &clock, registration(Some(OLD_HASH))).await;
    assert_eq!(cp.agent_update_for(&old), None, "nothing announced before UpdateContainerAgent");
    // A report without an update under way is refused.
    let e = agent_reports(&cp, &old, "STAGING").await.unwrap_err();
    assert_eq!(e.message, format!("Container instance '{old}' has no agent update in progress."));

    let r = cp
        .update_container_agent(&ctx, req(json!({"cluster": "c", "containerInstance": old})))
        .await
        .unwrap();
    let ci = r.container_instance.unwrap();
    assert_eq!(ci.agent_update_status.as_deref(), Some("PENDING"));
    assert!(ci.agent_connected);
    // The agent's poll carries the server's binary until the agent takes it up.
    let announced = gantry_core::protocol::AgentUpdate { sha256: SERVER_HASH.into(), size: 1234 };
    assert_eq!(cp.agent_update_for(&old), Some(announced));
    assert_eq!(
        update_error(&cp, &ctx, &old).await,
        (ErrorKind::UpdateInProgressException, "There is already a current agent update in progress.".into())
    );
    let e = agent_reports(&cp, &old, "UPDATED").await.unwrap_err();
    assert_eq!(
        e.message,
        "Invalid agentUpdateStatus 'UPDATED': an agent reports STAGING, STAGED, UPDATING or FAILED."
    );
    for status in ["STAGING", "STAGED", "UPDATING"] {
        agent_reports(&cp, &old, status).await.unwrap();
        assert_eq!(update_status(&cp, &ctx, &old).as_deref(), Some(status));
        assert_eq!(cp.agent_update_for(&old), None, "taken up at {status}");
        assert_eq!(update_error(&cp, &ctx, &old).await.0, ErrorKind::UpdateInProgressException);
    }
    // The re-executed agent registers again as the same instance, with the server's hash.
    let mut again = registration(Some(SERVER_HASH));
    again.container_instance_arn = Some(old.clone());
    let ci = cp.register_container_instance(&ctx, again).await.unwrap().container_instance.unwrap();
    assert_eq!(ci.container_instance_arn.as_deref(), Some(old.as_str()));
    assert_eq!(ci.agent_update_status.as_deref(), Some("UPDATED"));
    assert_eq!(ci.version_info.unwrap().agent_hash.as_deref(), Some(SERVER_HASH));
    assert_eq!(update_error(&cp, &ctx, &old).await.0, ErrorKind::NoUpdateAvailableException);
}

#[tokio::test]
async fn a_failed_update_leaves_the_agent_as_it_was_and_may_be_asked_again() {
    let (cp, ctx, clock) = setup();
    with_server_binary(&cp);
    cp.create_cluster(&ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    let (old, _g) = connected_instance(&cp, &ctx, &clock, registration(Some(OLD_HASH))).await;
    let ask =
        || cp.update_container_agent(&ctx, req(json!({"cluster": "c", "containerInstance": old.clone()})));
    ask().await.unwrap();
    agent_reports(&cp, &old, "STAGING").await.unwrap();
    agent_reports(&cp, &old, "FAILED").await.unwrap();
    assert_eq!(update_status(&cp, &ctx, &old).as_deref(), Some("FAILED"));
    // FAILED ends the update: another may be asked for.
    let ci = ask().await.unwrap().container_instance.unwrap();
    assert_eq!(ci.agent_update_status.as_deref(), Some("PENDING"));
    // An agent that comes back still running its old binary after taking the update up
    // (it crashed while updating) failed to update.
    agent_reports(&cp, &old, "UPDATING").await.unwrap();
    let mut again = registration(Some(OLD_HASH));
    again.container_instance_arn = Some(old.clone());
    let ci = cp.register_container_instance(&ctx, again).await.unwrap().container_instance.unwrap();
    assert_eq!(ci.agent_update_status.as_deref(), Some("FAILED"));
    // Deregistering withdraws an announcement the agent never took up.
    ask().await.unwrap();
    assert!(cp.agent_update_for(&old).is_some());
    cp.deregister_container_instance(
        &ctx,
        req(json!({"cluster": "c", "containerInstance": old, "force": true})),
    )
    .await
    .unwrap();
    assert_eq!(cp.agent_update_for(&old), None);
}

/// Two servers on one store, the agent polling B: UpdateContainerAgent asked through A wakes
/// the agent's poll on B at once (B's watch on `/_ecs/agent-update/`), not at the poll's
/// timeout, and B's answer carries the update.
#[tokio::test]
async fn an_agent_update_asked_through_one_server_wakes_the_poll_on_another() {
    use std::time::Duration;
    let (a, ctx, clock) = setup();
    with_server_binary(&a);
    let b = ControlPlane::new(
        a.store().clone(),
        clock.clone(),
        std::sync::Arc::new(gantry_core::SeededIds::new(10)),
    );
    with_server_binary(&b);
    a.create_cluster(&ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    // A hears the agent too, so that A counts it connected (as B's heartbeat would say).
    let (old, _on_a) = connected_instance(&a, &ctx, &clock, registration(Some(OLD_HASH))).await;
    let (_on_b, mut rx) = b.agents().begin_poll(&old, clock.clone());
    let (stop, shutdown) = gantry_runtime::shutdown();
    let waker = tokio::spawn({
        let b = b.clone();
        async move { b.wake_polls_from_watch(shutdown).await }
    });
    // The watches start in their own time (together): wait until an exec session queued
    // through A for another node wakes that node's poll on B.
    let (_warm, mut warm_rx) = b.agents().begin_poll("warm-up", clock.clone());
    let mut n = 0;
    loop {
        let s = gantry_core::protocol::ExecRequest {
            session_id: format!("s{n}"),
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/c/t1".into(),
            container_name: "app".into(),
            command: vec!["true".into()],
            tty: false,
            server_url: None,
        };
        a.queue_exec("warm-up", s, "http://a", 60_000).await.unwrap();
        n += 1;
        if tokio::time::timeout(Duration::from_millis(200), warm_rx.changed()).await.is_ok() {
            break;
        }
        assert!(n < 50, "the watch never woke the poll");
    }
    assert!(!rx.has_changed().unwrap(), "another node's session leaves this poll asleep");
    let r =
        a.update_container_agent(&ctx, req(json!({"cluster": "c", "containerInstance": old}))).await.unwrap();
    assert_eq!(r.container_instance.unwrap().agent_update_status.as_deref(), Some("PENDING"));
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("the poll on B was not woken by the update asked through A")
        .unwrap();
    let announced = gantry_core::protocol::AgentUpdate { sha256: SERVER_HASH.into(), size: 1234 };
    assert_eq!(b.agent_update_for(&old), Some(announced), "B's answer carries the update");
    // The agent takes it up through B: the announcement's deletion wakes nothing.
    rx.borrow_and_update();
    agent_reports(&b, &old, "STAGING").await.unwrap();
    assert_eq!(b.agent_update_for(&old), None);
    stop.trigger();
    waker.await.unwrap();
    assert!(!rx.has_changed().unwrap(), "a withdrawn announcement wakes nothing");
}
