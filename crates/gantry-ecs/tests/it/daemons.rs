//! ECS Managed Daemons through the control plane: daemon task definitions' revisions, listing
//! and deletion, daemons with their deployments and revisions, ECS's errors, and the daemon
//! scheduler's verdict on a deployment with no instance to wait for.

use gantry_core::{ErrorKind, FixedClock, Scope, SeededIds, Timestamp};
use gantry_ecs::{ControlPlane, Ctx};
use gantry_model::*;
use gantry_store::SqliteStore;
use serde_json::json;
use std::sync::Arc;

fn setup() -> (ControlPlane, Ctx, Arc<FixedClock>) {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_700_000_000_000)));
    let cp = ControlPlane::new(store, clock.clone(), Arc::new(SeededIds::new(7)));
    (cp, Ctx::root(Scope::new("000000000000", "us-east-1")), clock)
}

fn req<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

async fn register(cp: &ControlPlane, ctx: &Ctx, family: &str, image: &str) -> String {
    cp.register_daemon_task_definition(
        ctx,
        req(json!({"family": family, "containerDefinitions": [{"name": "a", "image": image, "memory": 64}]})),
    )
    .await
    .unwrap()
    .daemon_task_definition_arn
    .unwrap()
}

async fn managed_cluster(cp: &ControlPlane, ctx: &Ctx) {
    cp.create_cluster(ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    cp.create_capacity_provider(
        ctx,
        req(json!({"name": "mi", "cluster": "c", "managedInstancesProvider": {
            "infrastructureRoleArn": "arn:aws:iam::000000000000:role/infra",
            "instanceLaunchTemplate": {
                "ec2InstanceProfileArn": "arn:aws:iam::000000000000:instance-profile/i",
                "networkConfiguration": {"subnets": ["subnet-a"]}}}})),
    )
    .await
    .unwrap();
}

/// A Managed Instances cluster `c` (provider `mi`) whose Auto Scaling group holds the instances
/// i-1 ... i-`n` (none registered yet).
async fn managed(cp: &ControlPlane, ctx: &Ctx, n: usize) -> Arc<Groups> {
    let groups = Arc::new(Groups::of((1..=n).map(|i| format!("i-{i}")).collect()));
    cp.set_capacity(groups.clone(), Arc::new(gantry_ports::NoMetrics), std::time::Duration::from_secs(600));
    managed_cluster(cp, ctx).await;
    groups
}

/// Registers the group's instances i-1 ... i-`n` in `c` (2 vCPU, 4 GiB, us-east-1a), their
/// agents connected while the guards live.
async fn connect(
    cp: &ControlPlane,
    ctx: &Ctx,
    clock: &Arc<FixedClock>,
    n: usize,
) -> Vec<gantry_ecs::agents::PollGuard> {
    let mut guards = Vec::new();
    for i in 1..=n {
        let doc = json!({"instanceId": format!("i-{i}"), "availabilityZone": "us-east-1a"}).to_string();
        let (_, g) = crate::common::connected_instance(
            cp,
            ctx,
            clock,
            req(json!({"cluster": "c", "instanceIdentityDocument": doc, "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}]})),
        )
        .await;
        guards.push(g);
    }
    guards
}

fn statuses(cp: &ControlPlane, ctx: &Ctx, status: &str) -> Vec<(String, String)> {
    cp.list_daemon_task_definitions(ctx, req(json!({"status": status})))
        .unwrap()
        .daemon_task_definitions
        .unwrap()
        .into_iter()
        .map(|s| (s.arn.unwrap(), s.status.unwrap()))
        .collect()
}

#[tokio::test]
async fn daemon_task_definition_revisions_listing_and_deletion() {
    let (cp, ctx, clock) = setup();
    let a1 = register(&cp, &ctx, "agent", "busybox").await;
    clock.advance_ms(1_000);
    let a2 = register(&cp, &ctx, "agent", "busybox:2").await;
    let b1 = register(&cp, &ctx, "beta", "busybox").await;
    assert_eq!(a1, "arn:aws:ecs:us-east-1:000000000000:daemon-task-definition/agent:1");
    assert!(a2.ends_with("agent:2"));

    // A bare family is its latest ACTIVE revision.
    let d = cp.describe_daemon_task_definition(&ctx, req(json!({"daemonTaskDefinition": "agent"}))).unwrap();
    let d = d.daemon_task_definition.unwrap();
    assert_eq!((d.revision, d.registered_at), (2, Some(1_700_000_001.0)));

    let page = cp.list_daemon_task_definitions(&ctx, req(json!({"maxResults": 2}))).unwrap();
    let first: Vec<String> =
        page.daemon_task_definitions.unwrap().into_iter().map(|s| s.arn.unwrap()).collect();
    assert_eq!(first, vec![a1.clone(), a2.clone()]);
    let rest = cp
        .list_daemon_task_definitions(
            &ctx,
            req(json!({"maxResults": 2, "nextToken": page.next_token.unwrap()})),
        )
        .unwrap();
    assert_eq!(rest.daemon_task_definitions.unwrap()[0].arn.as_deref(), Some(b1.as_str()));
    assert!(rest.next_token.is_none());

    cp.delete_daemon_task_definition(&ctx, req(json!({"daemonTaskDefinition": "agent:2"}))).await.unwrap();
    assert_eq!(statuses(&cp, &ctx, "ACTIVE").len(), 2);
    assert!(statuses(&cp, &ctx, "ALL").contains(&(a2.clone(), "DELETED".into())));
    // The family's latest ACTIVE revision is 1 again.
    let d = cp.describe_daemon_task_definition(&ctx, req(json!({"daemonTaskDefinition": "agent"}))).unwrap();
    assert_eq!(d.daemon_task_definition.unwrap().revision, 1);

    for (reference, kind, words) in [
        ("agent:2", ErrorKind::ClientException, "not in ACTIVE status"),
        ("agent", ErrorKind::ClientException, "Revision is missing"),
        ("agent:9", ErrorKind::ClientException, "Unable to describe"),
    ] {
        let e = cp
            .delete_daemon_task_definition(&ctx, req(json!({"daemonTaskDefinition": reference})))
            .await
            .unwrap_err();
        assert_eq!(e.kind, kind, "{reference}: {e}");
        assert!(e.message.contains(words), "{reference}: {e}");
    }
    let e = cp.list_daemon_task_definitions(&ctx, req(json!({"sort": "UP"}))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidParameterException);
}

#[tokio::test]
async fn daemons_deployments_and_revisions() {
    let (cp, ctx, clock) = setup();
    managed_cluster(&cp, &ctx).await;
    let td1 = register(&cp, &ctx, "agent", "busybox").await;
    let td2 = register(&cp, &ctx, "agent", "busybox:2").await;
    let create = |td: &str| -> CreateDaemonRequest {
        req(json!({"daemonName": "mon", "clusterArn": "c", "daemonTaskDefinitionArn": td,
                   "capacityProviderArns": ["mi"], "clientToken": "tok"}))
    };
    let c = cp.create_daemon(&ctx, create(&td1)).await.unwrap();
    let daemon = c.daemon_arn.unwrap();
    assert_eq!(daemon, "arn:aws:ecs:us-east-1:000000000000:daemon/c/mon");
    // The same client token: the same daemon; another request for the name: refused.
    let again = cp.create_daemon(&ctx, create(&td1)).await.unwrap();
    assert_eq!(again.deployment_arn, c.deployment_arn);
    let mut other = create(&td1);
    other.client_token = None;
    assert_eq!(cp.create_daemon(&ctx, other).await.unwrap_err().kind, ErrorKind::InvalidParameterException);

    let e = cp
        .create_daemon(
            &ctx,
            req(json!({"daemonName": "x", "clusterArn": "c", "daemonTaskDefinitionArn": td1,
                       "capacityProviderArns": ["mi"], "deploymentConfiguration": {"drainPercent": 101.0}})),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("drainPercent"), "{e}");

    // In use: deleting the definition leaves it DELETE_IN_PROGRESS until the daemon moves on.
    cp.delete_daemon_task_definition(&ctx, req(json!({"daemonTaskDefinition": td1}))).await.unwrap();
    assert!(statuses(&cp, &ctx, "DELETE_IN_PROGRESS").contains(&(td1.clone(), "DELETE_IN_PROGRESS".into())));
    clock.advance_ms(5_000);
    let u = cp
        .update_daemon(
            &ctx,
            req(json!({"daemonArn": daemon, "daemonTaskDefinitionArn": td2, "capacityProviderArns": ["mi"]})),
        )
        .await
        .unwrap();
    assert!(statuses(&cp, &ctx, "ALL").contains(&(td1.clone(), "DELETED".into())));

    let first = c.deployment_arn.unwrap();
    let second = u.deployment_arn.unwrap();
    let deps = cp
        .describe_daemon_deployments(&ctx, req(json!({"daemonDeploymentArns": [first, second]})))
        .unwrap()
        .daemon_deployments
        .unwrap();
    assert_eq!(deps[0].status.as_deref(), Some("STOPPED"), "superseded");
    assert_eq!(deps[1].status.as_deref(), Some("PENDING"));
    let listed = cp.list_daemon_deployments(&ctx, req(json!({"daemonArn": daemon}))).unwrap();
    let order: Vec<String> =
        listed.daemon_deployments.unwrap().into_iter().map(|d| d.daemon_deployment_arn.unwrap()).collect();
    assert_eq!(order, vec![second.clone(), first.clone()], "newest first");

    let rev = deps[1].target_daemon_revision.as_ref().unwrap().arn.clone().unwrap();
    let revs = cp.describe_daemon_revisions(&ctx, req(json!({"daemonRevisionArns": [rev, "arn:aws:ecs:us-east-1:000000000000:daemon-revision/c/mon/nope"]}))).unwrap();
    assert_eq!(revs.daemon_revisions.unwrap()[0].daemon_task_definition_arn.as_deref(), Some(td2.as_str()));
    assert_eq!(revs.failures.unwrap()[0].reason.as_deref(), Some("MISSING"));

    // The scheduler's pass: no instance to wait for, so the deployment succeeds.
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    let d = cp.describe_daemon_deployments(&ctx, req(json!({"daemonDeploymentArns": [second]}))).unwrap();
    let d = &d.daemon_deployments.unwrap()[0];
    assert_eq!(d.status.as_deref(), Some("SUCCESSFUL"));
    assert_eq!(d.finished_at, Some(1_700_000_005.0));

    // Deleted: DELETE_IN_PROGRESS, then gone once it has no task.
    let del = cp.delete_daemon(&ctx, req(json!({"daemonArn": daemon}))).await.unwrap();
    assert_eq!(del.status.as_deref(), Some("DELETE_IN_PROGRESS"));
    let e = cp
        .update_daemon(
            &ctx,
            req(json!({"daemonArn": daemon, "daemonTaskDefinitionArn": td2, "capacityProviderArns": ["mi"]})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::DaemonNotActiveException);
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    let e = cp.describe_daemon(&ctx, req(json!({"daemonArn": daemon}))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DaemonNotFoundException);
}

/// Auto Scaling as ECS sees it: one group (any name) holding the given instances; the
/// instances ECS asked it to replace (group, instance ID, cause).
struct Groups(Vec<String>, std::sync::Mutex<Vec<(String, String, String)>>);

impl Groups {
    fn of(ids: Vec<String>) -> Groups {
        Groups(ids, Default::default())
    }
}

impl gantry_ports::autoscaling::CapacityGroups for Groups {
    fn scopes(&self) -> Vec<(String, String)> {
        vec![("000000000000".into(), "us-east-1".into())]
    }
    fn group(&self, _: &str, _: &str, name: &str) -> Option<gantry_ports::autoscaling::GroupView> {
        Some(gantry_ports::autoscaling::GroupView {
            name: name.to_string(),
            arn: name.to_string(),
            min_size: 0,
            max_size: 10,
            desired_capacity: self.0.len() as i32,
            instance_type: "m5.large".into(),
            termination_hooks: Vec::new(),
            instances: self
                .0
                .iter()
                .map(|id| gantry_ports::autoscaling::GroupInstance {
                    instance_id: id.clone(),
                    lifecycle_state: "InService".into(),
                    protected_from_scale_in: true,
                    instance_type: "m5.large".into(),
                    launched_at_ms: 0,
                })
                .collect(),
        })
    }
    fn set_desired<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: i32,
        _: &'a str,
    ) -> gantry_ports::autoscaling::PortFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn protect<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a [String],
        _: bool,
    ) -> gantry_ports::autoscaling::PortFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn put_termination_hook<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> gantry_ports::autoscaling::PortFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn complete<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> gantry_ports::autoscaling::PortFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn replace_instance<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        group: &'a str,
        instance_id: &'a str,
        cause: &'a str,
    ) -> gantry_ports::autoscaling::PortFuture<'a, Result<(), String>> {
        self.1.lock().unwrap().push((group.into(), instance_id.into(), cause.into()));
        Box::pin(async { Ok(()) })
    }
}

/// The daemon's tasks: (ARN, instance, task definition, last status, desired status).
async fn daemon_tasks(cp: &ControlPlane, ctx: &Ctx) -> Vec<(String, String, String, String, String)> {
    let mut arns = cp.list_tasks(ctx, req(json!({"cluster": "c"}))).unwrap().task_arns.unwrap();
    arns.extend(
        cp.list_tasks(ctx, req(json!({"cluster": "c", "desiredStatus": "STOPPED"})))
            .unwrap()
            .task_arns
            .unwrap(),
    );
    if arns.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<_> = cp
        .describe_tasks(ctx, req(json!({"cluster": "c", "tasks": arns})))
        .unwrap()
        .tasks
        .unwrap()
        .into_iter()
        .filter(|t| t.group.as_deref() == Some("daemon:mon"))
        .map(|t| {
            (
                t.task_arn.unwrap(),
                t.container_instance_arn.unwrap(),
                t.task_definition_arn.unwrap(),
                t.last_status.unwrap(),
                t.desired_status.unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

async fn report(cp: &ControlPlane, ctx: &Ctx, arn: &str, status: &str) {
    cp.submit_task_state_change(ctx, req(json!({"cluster": "c", "task": arn, "status": status})))
        .await
        .unwrap();
}

async fn deployment_status(cp: &ControlPlane, ctx: &Ctx, arn: &str) -> String {
    let d = cp.describe_daemon_deployments(ctx, req(json!({"daemonDeploymentArns": [arn]}))).unwrap();
    d.daemon_deployments.unwrap()[0].status.clone().unwrap()
}

#[tokio::test]
async fn the_scheduler_places_replaces_and_rolls_out_instance_by_instance() {
    let (cp, ctx, clock) = setup();
    managed(&cp, &ctx, 4).await;
    let guards = connect(&cp, &ctx, &clock, 4).await;
    let td1 = register(&cp, &ctx, "agent", "busybox").await;
    let td2 = register(&cp, &ctx, "agent", "busybox:2").await;
    let c = cp
        .create_daemon(
            &ctx,
            req(json!({"daemonName": "mon", "clusterArn": "c", "daemonTaskDefinitionArn": td1, "critical": false,
                       "capacityProviderArns": ["mi"], "deploymentConfiguration": {"drainPercent": 50.0}})),
        )
        .await
        .unwrap();
    let first = c.deployment_arn.unwrap();

    // One task on each of the four instances at once.
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    let tasks = daemon_tasks(&cp, &ctx).await;
    assert_eq!(tasks.len(), 4);
    assert!(tasks.iter().all(|t| t.2 == td1), "{tasks:?}");
    assert_eq!(tasks.iter().map(|t| t.1.clone()).collect::<std::collections::HashSet<_>>().len(), 4);
    assert_eq!(deployment_status(&cp, &ctx, &first).await, "IN_PROGRESS");
    for t in &tasks {
        report(&cp, &ctx, &t.0, "RUNNING").await;
    }
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    assert_eq!(deployment_status(&cp, &ctx, &first).await, "SUCCESSFUL");
    let d = cp.describe_daemon(&ctx, req(json!({"daemonArn": c.daemon_arn.clone().unwrap()}))).unwrap();
    assert_eq!(d.daemon.unwrap().current_revisions.unwrap()[0].total_running_count, 4);

    // A non-critical daemon's task that stops (its container exited) is replaced on its
    // instance.
    let (gone, on, ..) = tasks[0].clone();
    cp.submit_task_state_change(
        &ctx,
        req(json!({"cluster": "c", "task": gone, "status": "STOPPED", "reason": "Essential container in task exited"})),
    )
    .await
    .unwrap();
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    let now = daemon_tasks(&cp, &ctx).await;
    let replaced: Vec<_> = now.iter().filter(|t| t.1 == on && t.3 != "STOPPED").collect();
    assert_eq!(replaced.len(), 1, "{now:?}");
    assert_ne!(replaced[0].0, gone);
    report(&cp, &ctx, &replaced[0].0.clone(), "RUNNING").await;

    // A new revision: half the instances (two) at a time.
    let u = cp
        .update_daemon(
            &ctx,
            req(json!({"daemonArn": c.daemon_arn.clone().unwrap(), "daemonTaskDefinitionArn": td2,
                       "capacityProviderArns": ["mi"], "deploymentConfiguration": {"drainPercent": 50.0}})),
        )
        .await
        .unwrap();
    let second = u.deployment_arn.unwrap();
    let mut rounds = 0;
    loop {
        cp.capacity_pass(&ctx.scope, "c").await.unwrap();
        let tasks = daemon_tasks(&cp, &ctx).await;
        // Never more than two instances (50 %) without a serving daemon task.
        let serving: std::collections::HashSet<&String> =
            tasks.iter().filter(|t| t.3 == "RUNNING" && t.4 == "RUNNING").map(|t| &t.1).collect();
        assert!(serving.len() >= 2, "round {rounds}: {tasks:?}");
        // The agent: old tasks asked to stop stop, new ones run.
        for t in &tasks {
            if t.2 == td1 && t.3 != "STOPPED" && t.4 == "STOPPED" {
                report(&cp, &ctx, &t.0, "STOPPED").await;
            } else if t.2 == td2 && t.3 != "RUNNING" && t.3 != "STOPPED" {
                report(&cp, &ctx, &t.0, "RUNNING").await;
            }
        }
        rounds += 1;
        if deployment_status(&cp, &ctx, &second).await == "SUCCESSFUL" || rounds > 10 {
            break;
        }
    }
    assert_eq!(deployment_status(&cp, &ctx, &second).await, "SUCCESSFUL");
    assert!(rounds >= 3, "two instances at a time take several passes, took {rounds}");
    let tasks = daemon_tasks(&cp, &ctx).await;
    let live: Vec<_> = tasks.iter().filter(|t| t.3 != "STOPPED").collect();
    assert_eq!(live.len(), 4);
    assert!(live.iter().all(|t| t.2 == td2 && t.3 == "RUNNING"), "{live:?}");
    drop(guards);
}

#[tokio::test]
async fn failing_tasks_trip_the_circuit_breaker_and_roll_back_after_the_bake_time() {
    let (cp, ctx, clock) = setup();
    managed(&cp, &ctx, 2).await;
    let guards = connect(&cp, &ctx, &clock, 2).await;
    let good = register(&cp, &ctx, "agent", "busybox").await;
    let bad = register(&cp, &ctx, "agent", "busybox:broken").await;
    let c = cp
        .create_daemon(
            &ctx,
            req(json!({"daemonName": "mon", "clusterArn": "c", "daemonTaskDefinitionArn": good,
                       "capacityProviderArns": ["mi"], "deploymentConfiguration": {"drainPercent": 100.0, "bakeTimeInMinutes": 1}})),
        )
        .await
        .unwrap();
    let daemon = c.daemon_arn.unwrap();
    let first = c.deployment_arn.unwrap();
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    for t in daemon_tasks(&cp, &ctx).await {
        report(&cp, &ctx, &t.0, "RUNNING").await;
    }
    // Converged, but the bake time has not passed.
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    assert_eq!(deployment_status(&cp, &ctx, &first).await, "IN_PROGRESS");
    clock.advance_ms(60_000);
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    assert_eq!(deployment_status(&cp, &ctx, &first).await, "SUCCESSFUL");

    let u = cp
        .update_daemon(
            &ctx,
            req(json!({"daemonArn": daemon, "daemonTaskDefinitionArn": bad, "capacityProviderArns": ["mi"],
                       "deploymentConfiguration": {"drainPercent": 100.0}})),
        )
        .await
        .unwrap();
    let second = u.deployment_arn.unwrap();
    // The broken revision's tasks exit as soon as they start; the third failure trips it.
    for _ in 0..6 {
        cp.capacity_pass(&ctx.scope, "c").await.unwrap();
        if deployment_status(&cp, &ctx, &second).await != "IN_PROGRESS" {
            break;
        }
        for t in daemon_tasks(&cp, &ctx).await {
            if t.3 == "STOPPED" {
                continue;
            }
            if t.4 == "STOPPED" {
                report(&cp, &ctx, &t.0, "STOPPED").await;
            } else if t.2 == bad {
                cp.submit_task_state_change(
                    &ctx,
                    req(json!({"cluster": "c", "task": t.0, "status": "STOPPED",
                               "reason": "Essential container in task exited"})),
                )
                .await
                .unwrap();
            }
        }
    }
    let d = cp.describe_daemon_deployments(&ctx, req(json!({"daemonDeploymentArns": [second]}))).unwrap();
    let d = d.daemon_deployments.unwrap().remove(0);
    assert_eq!(d.status.as_deref(), Some("ROLLBACK_IN_PROGRESS"), "{d:?}");
    let cb = d.circuit_breaker.unwrap();
    assert_eq!((cb.status.as_deref(), cb.threshold), (Some("TRIGGERED"), 3));
    assert!(cb.failure_count >= 3);
    let back_to = d.rollback.unwrap().rollback_target_daemon_revision_arn.unwrap();

    // The earlier revision comes back on every instance, and the rollback succeeds.
    for _ in 0..6 {
        cp.capacity_pass(&ctx.scope, "c").await.unwrap();
        for t in daemon_tasks(&cp, &ctx).await {
            if t.3 != "STOPPED" && t.4 == "STOPPED" {
                report(&cp, &ctx, &t.0, "STOPPED").await;
            } else if t.3 != "STOPPED" && t.3 != "RUNNING" {
                report(&cp, &ctx, &t.0, "RUNNING").await;
            }
        }
        clock.advance_ms(30_000);
    }
    assert_eq!(deployment_status(&cp, &ctx, &second).await, "ROLLBACK_SUCCESSFUL");
    let live: Vec<_> = daemon_tasks(&cp, &ctx).await.into_iter().filter(|t| t.3 == "RUNNING").collect();
    assert_eq!(live.len(), 2);
    assert!(live.iter().all(|t| t.2 == good), "{live:?}");
    let now = cp.describe_daemon(&ctx, req(json!({"daemonArn": daemon}))).unwrap().daemon.unwrap();
    assert_eq!(now.current_revisions.unwrap()[0].arn.as_deref(), Some(back_to.as_str()));
    drop(guards);
}

#[tokio::test]
async fn a_critical_daemons_failed_task_drains_its_instance_instead_of_restarting() {
    let (cp, ctx, clock) = setup();
    let groups = managed(&cp, &ctx, 2).await;
    let guards = connect(&cp, &ctx, &clock, 2).await;
    let td = register(&cp, &ctx, "agent", "busybox").await;
    // critical is true unless said otherwise.
    let c = cp
        .create_daemon(
            &ctx,
            req(json!({"daemonName": "mon", "clusterArn": "c", "daemonTaskDefinitionArn": td,
                       "capacityProviderArns": ["mi"]})),
        )
        .await
        .unwrap();
    let first = c.deployment_arn.unwrap();
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    let tasks = daemon_tasks(&cp, &ctx).await;
    assert_eq!(tasks.len(), 2);
    for t in &tasks {
        report(&cp, &ctx, &t.0, "RUNNING").await;
    }
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    assert_eq!(deployment_status(&cp, &ctx, &first).await, "SUCCESSFUL");

    let instance_status = |arn: &str| {
        let d = cp
            .describe_container_instances(&ctx, req(json!({"cluster": "c", "containerInstances": [arn]})))
            .unwrap();
        d.container_instances.unwrap().remove(0).status.unwrap()
    };
    // A task stopped by its user is restarted: only a failure drains.
    let (stopped, on_stopped, ..) = tasks[1].clone();
    cp.stop_task(&ctx, req(json!({"cluster": "c", "task": stopped.clone()}))).await.unwrap();
    report(&cp, &ctx, &stopped, "STOPPED").await;
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    assert_eq!(instance_status(&on_stopped), "ACTIVE");
    let again: Vec<_> =
        daemon_tasks(&cp, &ctx).await.into_iter().filter(|t| t.1 == on_stopped && t.3 != "STOPPED").collect();
    assert_eq!(again.len(), 1, "restarted: {again:?}");

    let (gone, on, ..) = tasks[0].clone();
    cp.submit_task_state_change(
        &ctx,
        req(json!({"cluster": "c", "task": gone, "status": "STOPPED", "reason": "Essential container in task exited"})),
    )
    .await
    .unwrap();
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    assert_eq!(instance_status(&on), "DRAINING");
    let now = daemon_tasks(&cp, &ctx).await;
    assert!(
        now.iter().filter(|t| t.1 == on).all(|t| t.3 == "STOPPED"),
        "no daemon task again on the drained instance: {now:?}"
    );
    // The other instance keeps its daemon task.
    assert_eq!(instance_status(&on_stopped), "ACTIVE");
    // Nothing but daemon tasks ran there: its group replaces it, saying why.
    let ec2_of = |arn: &str| {
        let d = cp
            .describe_container_instances(&ctx, req(json!({"cluster": "c", "containerInstances": [arn]})))
            .unwrap();
        d.container_instances.unwrap().remove(0).ec2_instance_id.unwrap()
    };
    let replaced = groups.1.lock().unwrap().clone();
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    let (group, id, cause) = &replaced[0];
    assert_eq!((group.as_str(), id.clone()), ("ecs-managed-instances-mi", ec2_of(&on)));
    assert!(
        cause.contains("critical daemon mon") && cause.contains(on.rsplit('/').next().unwrap()),
        "{cause}"
    );
    // Asked once: the instance is forgotten once its group took it.
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    assert_eq!(groups.1.lock().unwrap().len(), 1);

    // An instance its user drains is not replaced.
    cp.update_container_instances_state(
        &ctx,
        req(json!({"cluster": "c", "containerInstances": [on_stopped.clone()], "status": "DRAINING"})),
    )
    .await
    .unwrap();
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    assert_eq!(instance_status(&on_stopped), "DRAINING");
    assert_eq!(groups.1.lock().unwrap().len(), 1, "not replaced");
    drop(guards);
}

#[tokio::test]
async fn daemon_tasks_carry_the_daemons_tags_and_ecs_managed_tags_when_asked() {
    let (cp, ctx, clock) = setup();
    managed(&cp, &ctx, 1).await;
    let _guards = connect(&cp, &ctx, &clock, 1).await;
    let td = register(&cp, &ctx, "agent", "busybox").await;
    let tags_of = |cp: &ControlPlane| {
        let arns = cp.list_tasks(&ctx, req(json!({"cluster": "c"}))).unwrap().task_arns.unwrap();
        let d = cp
            .describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": arns, "include": ["TAGS"]})))
            .unwrap();
        d.tasks
            .unwrap()
            .into_iter()
            .map(|t| {
                let mut tags: Vec<(String, String)> = t
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
                    .collect();
                tags.sort();
                tags
            })
            .collect::<Vec<_>>()
    };
    cp.create_daemon(
        &ctx,
        req(json!({"daemonName": "mon", "clusterArn": "c", "daemonTaskDefinitionArn": td,
                   "capacityProviderArns": ["mi"], "tags": [{"key": "team", "value": "ops"}],
                   "propagateTags": "DAEMON", "enableECSManagedTags": true})),
    )
    .await
    .unwrap();
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        tags_of(&cp),
        vec![vec![pair("aws:ecs:clusterName", "c"), pair("aws:ecs:daemonName", "mon"), pair("team", "ops")]]
    );
}

#[tokio::test]
async fn daemon_tasks_carry_no_tags_unless_asked() {
    let (cp, ctx, clock) = setup();
    managed(&cp, &ctx, 1).await;
    let _guards = connect(&cp, &ctx, &clock, 1).await;
    let td = register(&cp, &ctx, "agent", "busybox").await;
    cp.create_daemon(
        &ctx,
        req(json!({"daemonName": "mon", "clusterArn": "c", "daemonTaskDefinitionArn": td,
                   "capacityProviderArns": ["mi"], "tags": [{"key": "team", "value": "ops"}]})),
    )
    .await
    .unwrap();
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    let arns = cp.list_tasks(&ctx, req(json!({"cluster": "c"}))).unwrap().task_arns.unwrap();
    assert_eq!(arns.len(), 1);
    let d =
        cp.describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": arns, "include": ["TAGS"]}))).unwrap();
    let t = d.tasks.unwrap().remove(0);
    assert_eq!(t.tags.clone().unwrap_or_default(), vec![]);
    // A daemon task reports its instance's Managed Instances provider and ECS's launch type
    // for it.
    assert_eq!(t.launch_type.as_deref(), Some("MANAGED_INSTANCES"));
    assert_eq!(t.capacity_provider_name.as_deref(), Some("mi"));
}

#[tokio::test]
async fn daemons_are_tagged_with_tag_resource_and_their_new_tasks_carry_the_tags() {
    let (cp, ctx, clock) = setup();
    managed(&cp, &ctx, 1).await;
    let td = register(&cp, &ctx, "agent", "busybox").await;
    let c = cp
        .create_daemon(
            &ctx,
            req(json!({"daemonName": "mon", "clusterArn": "c", "daemonTaskDefinitionArn": td,
                       "capacityProviderArns": ["mi"], "propagateTags": "DAEMON"})),
        )
        .await
        .unwrap();
    let daemon = c.daemon_arn.unwrap();
    cp.tag_resource(&ctx, req(json!({"resourceArn": daemon, "tags": [{"key": "team", "value": "ops"}, {"key": "x", "value": "1"}]})))
        .await
        .unwrap();
    cp.untag_resource(&ctx, req(json!({"resourceArn": daemon, "tagKeys": ["x"]}))).await.unwrap();
    let tags = cp.list_tags_for_resource(&ctx, req(json!({"resourceArn": daemon}))).unwrap().tags.unwrap();
    assert_eq!(tags, vec![Tag { key: Some("team".into()), value: Some("ops".into()) }]);
    let missing = daemon.replace("/mon", "/nothing");
    let e = cp.list_tags_for_resource(&ctx, req(json!({"resourceArn": missing}))).unwrap_err();
    assert_eq!(e.kind, gantry_core::ErrorKind::ResourceNotFoundException);
    let e = cp
        .tag_resource(&ctx, req(json!({"resourceArn": missing, "tags": [{"key": "a", "value": "b"}]})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, gantry_core::ErrorKind::ResourceNotFoundException);

    // An instance that comes now gets a task with the daemon's tags as they are.
    let doc = json!({"instanceId": "i-1"}).to_string();
    let (_, _guard) = crate::common::connected_instance(
        &cp,
        &ctx,
        &clock,
        req(json!({"cluster": "c", "instanceIdentityDocument": doc, "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}]})),
    )
    .await;
    cp.capacity_pass(&ctx.scope, "c").await.unwrap();
    let arns = cp.list_tasks(&ctx, req(json!({"cluster": "c"}))).unwrap().task_arns.unwrap();
    let d =
        cp.describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": arns, "include": ["TAGS"]}))).unwrap();
    assert_eq!(d.tasks.unwrap()[0].tags.clone().unwrap(), tags);
}
