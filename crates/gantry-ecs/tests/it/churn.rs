//! Counts and retention under churn: DescribeClusters' and DescribeContainerInstances' counts
//! are counters kept with the tasks' and services' states (never a scan), they always equal a
//! full recount, and stopped tasks, expired client tokens and old history go away on the
//! injected clock.

use crate::common::{connected_instance, req, setup};
use gantry_core::FixedClock;
use gantry_core::protocol::FargateRegistration;
use gantry_ecs::cleanup::HISTORY_RETENTION_MS;
use gantry_ecs::{ControlPlane, Ctx, keys, migrate};
use gantry_model::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const RETENTION: Duration = Duration::from_secs(3600);

/// A cluster `c` with one EC2 instance and a Fargate node, both connected, and the two task
/// definitions `web` (EC2) and `fw` (Fargate).
async fn fleet(
    cp: &ControlPlane,
    ctx: &Ctx,
    clock: &Arc<FixedClock>,
) -> (String, Vec<gantry_ecs::agents::PollGuard>) {
    cp.create_cluster(ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    let registration = req(json!({"cluster": "c", "totalResources": [
        {"name": "CPU", "type": "INTEGER", "integerValue": 65536},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 65536}]}));
    let (instance, g1) = connected_instance(cp, ctx, clock, registration).await;
    cp.register_fargate_node(FargateRegistration {
        node_id: "n1".into(),
        cpu: 65536,
        memory: 65536,
        availability_zone: None,
    })
    .await
    .unwrap();
    let (g2, _) = cp.agents().begin_poll("fargate:n1", clock.clone());
    cp.register_task_definition(
        ctx,
        req(json!({"family": "web", "containerDefinitions": [
            {"name": "web", "image": "img", "memory": 64, "cpu": 16}]})),
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
    (instance, vec![g1, g2])
}

async fn run(cp: &ControlPlane, ctx: &Ctx, fargate: bool, count: i32) -> Vec<String> {
    let body = if fargate {
        json!({"cluster": "c", "taskDefinition": "fw", "launchType": "FARGATE", "count": count,
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}})
    } else {
        json!({"cluster": "c", "taskDefinition": "web", "count": count})
    };
    let r = cp.run_task(ctx, req(body)).await.unwrap();
    assert_eq!(r.failures.unwrap(), vec![]);
    r.tasks.unwrap().into_iter().map(|t| t.task_arn.unwrap()).collect()
}

async fn report(cp: &ControlPlane, ctx: &Ctx, arn: &str, status: &str) {
    cp.submit_task_state_change(ctx, req(json!({"cluster": "c", "task": arn, "status": status})))
        .await
        .unwrap();
}

/// DescribeClusters' counts: (running, pending, active services) and the statistics by name.
fn counts(cp: &ControlPlane, ctx: &Ctx) -> (i32, i32, i32, Vec<(String, String)>) {
    let r = cp.describe_clusters(ctx, req(json!({"clusters": ["c"], "include": ["STATISTICS"]}))).unwrap();
    let c = r.clusters.unwrap().remove(0);
    let stats = c
        .statistics
        .unwrap()
        .into_iter()
        .filter(|kv| kv.value.as_deref() != Some("0"))
        .map(|kv| (kv.name.unwrap(), kv.value.unwrap()))
        .collect();
    (c.running_tasks_count, c.pending_tasks_count, c.active_services_count, stats)
}

fn stat(name: &str, n: i32) -> (String, String) {
    (name.to_string(), n.to_string())
}

/// The instance's (running, pending) counts.
fn instance_counts(cp: &ControlPlane, ctx: &Ctx, arn: &str) -> (i32, i32) {
    let r = cp
        .describe_container_instances(ctx, req(json!({"cluster": "c", "containerInstances": [arn]})))
        .unwrap();
    let i = r.container_instances.unwrap().remove(0);
    (i.running_tasks_count, i.pending_tasks_count)
}

fn list(cp: &ControlPlane, ctx: &Ctx, extra: serde_json::Value) -> Vec<String> {
    let mut body = json!({"cluster": "c"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let mut out = Vec::new();
    loop {
        let r = cp.list_tasks(ctx, req(body.clone())).unwrap();
        out.extend(r.task_arns.unwrap());
        match r.next_token {
            Some(t) => body["nextToken"] = json!(t),
            None => return out,
        }
    }
}

/// The counters the store holds equal a recount of every record.
fn assert_recount(cp: &ControlPlane) {
    let derived = migrate::derive(&**cp.store()).unwrap();
    assert_eq!(migrate::counters(&**cp.store()), derived.counters, "the counters equal a full recount");
}

#[tokio::test]
async fn counts_follow_tasks_through_pending_running_and_stopped_on_both_launch_types() {
    let (cp, ctx, clock) = setup();
    let (instance, _guards) = fleet(&cp, &ctx, &clock).await;
    let ec2 = run(&cp, &ctx, false, 5).await;
    let fargate = run(&cp, &ctx, true, 3).await;
    // PROVISIONING counts as pending, as ECS's PENDING does.
    assert_eq!(
        counts(&cp, &ctx),
        (0, 8, 0, vec![stat("pendingEC2TasksCount", 5), stat("pendingFargateTasksCount", 3)])
    );
    assert_eq!(instance_counts(&cp, &ctx, &instance), (0, 5));
    for arn in &ec2[..4] {
        report(&cp, &ctx, arn, "PENDING").await;
        report(&cp, &ctx, arn, "RUNNING").await;
    }
    report(&cp, &ctx, &fargate[0], "RUNNING").await;
    // The bug this replaces: every task read as pending, none as running.
    assert_eq!(
        counts(&cp, &ctx),
        (
            5,
            3,
            0,
            vec![
                stat("pendingEC2TasksCount", 1),
                stat("pendingFargateTasksCount", 2),
                stat("runningEC2TasksCount", 4),
                stat("runningFargateTasksCount", 1),
            ]
        )
    );
    assert_eq!(instance_counts(&cp, &ctx, &instance), (4, 1));
    // StopTask: a RUNNING task is STOPPING (counted in neither) until its agent reports STOPPED.
    cp.stop_task(&ctx, req(json!({"cluster": "c", "task": ec2[0]}))).await.unwrap();
    assert_eq!(counts(&cp, &ctx).0, 4);
    assert_eq!(instance_counts(&cp, &ctx, &instance), (3, 1));
    for arn in [&ec2[0], &ec2[1], &ec2[4], &fargate[0], &fargate[1]] {
        report(&cp, &ctx, arn, "STOPPED").await;
    }
    assert_eq!(
        counts(&cp, &ctx),
        (2, 1, 0, vec![stat("pendingFargateTasksCount", 1), stat("runningEC2TasksCount", 2)])
    );
    assert_eq!(instance_counts(&cp, &ctx, &instance), (2, 0));
    assert_recount(&cp);
    // A late report never moves a STOPPED task back, nor its counts.
    report(&cp, &ctx, &ec2[0], "RUNNING").await;
    assert_eq!(counts(&cp, &ctx).0, 2);

    // ListTasks reads the desired-status index: RUNNING lists the 3 not stopped, STOPPED the 5.
    assert_eq!(list(&cp, &ctx, json!({})).len(), 3);
    assert_eq!(list(&cp, &ctx, json!({"desiredStatus": "STOPPED"})).len(), 5);
    assert_eq!(list(&cp, &ctx, json!({"desiredStatus": "PENDING"})), vec![fargate[2].clone()]);
    assert_eq!(list(&cp, &ctx, json!({"family": "fw"})), vec![fargate[2].clone()]);
    assert_eq!(list(&cp, &ctx, json!({"containerInstance": instance})).len(), 2);
    assert_eq!(list(&cp, &ctx, json!({"containerInstance": instance, "desiredStatus": "STOPPED"})).len(), 3);
    assert_eq!(list(&cp, &ctx, json!({"launchType": "FARGATE", "desiredStatus": "STOPPED"})).len(), 2);
    assert_eq!(list(&cp, &ctx, json!({"maxResults": 1})).len(), 3, "pages add up");

    // After the retention the stopped tasks are gone, with their rows and counts.
    clock.advance_ms(RETENTION.as_millis() as i64);
    let swept = cp.sweep_stopped_tasks(RETENTION).await.unwrap();
    assert_eq!(swept.deleted, 5);
    assert_eq!(swept.next_ms, None);
    assert!(list(&cp, &ctx, json!({"desiredStatus": "STOPPED"})).is_empty());
    assert_eq!(counts(&cp, &ctx).0, 2);
    assert_recount(&cp);
    let gone = cp.describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": [ec2[0], fargate[0]]}))).unwrap();
    assert_eq!(gone.tasks.unwrap().len(), 0);
    assert_eq!(gone.failures.unwrap().iter().filter(|f| f.reason.as_deref() == Some("MISSING")).count(), 2);
    for arn in [&ec2[0], &ec2[1], &ec2[4], &fargate[0], &fargate[1]] {
        let id = arn.rsplit('/').next().unwrap();
        let mut left = Vec::new();
        cp.store().visit("", &mut |kv| {
            if kv.key.contains(id) {
                left.push(kv.key.clone());
            }
        });
        assert!(left.is_empty(), "{id} left {left:?}");
    }

    // The rest stop; once they are swept too, the cluster holds no task and no counter.
    for arn in [&ec2[2], &ec2[3], &fargate[2]] {
        report(&cp, &ctx, arn, "STOPPED").await;
    }
    assert_eq!(counts(&cp, &ctx), (0, 0, 0, vec![]));
    clock.advance_ms(RETENTION.as_millis() as i64);
    assert_eq!(cp.sweep_stopped_tasks(RETENTION).await.unwrap().deleted, 3);
    assert_eq!(cp.store().count(&keys::task_prefix(&ctx.scope, "c")), 0);
    // Of the cluster's counters, only its registered instance's is left.
    let prefix = keys::cluster_counts_prefix(&ctx.scope, "c");
    let left: Vec<(String, i64)> = cp
        .store()
        .range(&prefix, None, 100)
        .into_iter()
        .map(|kv| (kv.key[prefix.len()..].to_string(), gantry_store::counter(&kv.value)))
        .collect();
    assert_eq!(left, vec![("registeredContainerInstancesCount".to_string(), 1)]);
    assert_eq!(cp.store().count(&keys::stopped_tasks_prefix()), 0);
    assert_eq!(instance_counts(&cp, &ctx, &instance), (0, 0));
}

#[tokio::test]
async fn a_cluster_with_tasks_not_stopped_cannot_be_deleted_and_the_counters_say_so() {
    let (cp, ctx, clock) = setup();
    let (instance, _guards) = fleet(&cp, &ctx, &clock).await;
    cp.deregister_container_instance(&ctx, req(json!({"cluster": "c", "containerInstance": instance})))
        .await
        .unwrap();
    let arn = run(&cp, &ctx, true, 1).await.remove(0);
    for status in ["RUNNING", "STOPPING"] {
        report(&cp, &ctx, &arn, status).await;
        let e = cp.delete_cluster(&ctx, req(json!({"cluster": "c"}))).await.unwrap_err();
        assert_eq!(e.message, "The Cluster cannot be deleted while Tasks are active.", "{status}");
    }
    report(&cp, &ctx, &arn, "STOPPED").await;
    cp.delete_cluster(&ctx, req(json!({"cluster": "c"}))).await.unwrap();
}

#[tokio::test]
async fn a_stopped_task_stays_for_the_retention_and_not_a_millisecond_longer() {
    let (cp, ctx, clock) = setup();
    let (_instance, _guards) = fleet(&cp, &ctx, &clock).await;
    let first = run(&cp, &ctx, false, 1).await.remove(0);
    report(&cp, &ctx, &first, "STOPPED").await;
    clock.advance_ms(1000);
    let second = run(&cp, &ctx, true, 1).await.remove(0);
    report(&cp, &ctx, &second, "STOPPED").await;
    let stopped_at = clock_ms(&clock) - 1000;
    clock.advance_ms(RETENTION.as_millis() as i64 - 1001);
    let swept = cp.sweep_stopped_tasks(RETENTION).await.unwrap();
    assert_eq!(swept.deleted, 0);
    assert_eq!(swept.next_ms, Some(stopped_at + RETENTION.as_millis() as i64), "when the first expires");
    assert_eq!(list(&cp, &ctx, json!({"desiredStatus": "STOPPED"})).len(), 2);
    clock.advance_ms(1);
    let swept = cp.sweep_stopped_tasks(RETENTION).await.unwrap();
    assert_eq!(swept.deleted, 1);
    assert_eq!(swept.next_ms, Some(stopped_at + 1000 + RETENTION.as_millis() as i64));
    assert_eq!(list(&cp, &ctx, json!({"desiredStatus": "STOPPED"})), vec![second.clone()]);
    let d = cp.describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": [first, second]}))).unwrap();
    assert_eq!(d.tasks.unwrap().len(), 1);
}

fn clock_ms(clock: &FixedClock) -> i64 {
    use gantry_core::Clock;
    clock.now().0
}

#[tokio::test]
async fn client_tokens_expire_after_a_day() {
    let (cp, ctx, clock) = setup();
    let (_instance, _guards) = fleet(&cp, &ctx, &clock).await;
    let body = json!({"cluster": "c", "taskDefinition": "web", "clientToken": "tok"});
    let first = cp.run_task(&ctx, req(body.clone())).await.unwrap().tasks.unwrap()[0].task_arn.clone();
    let again = cp.run_task(&ctx, req(body.clone())).await.unwrap().tasks.unwrap()[0].task_arn.clone();
    assert_eq!(first, again, "idempotent within the day");
    clock.advance_ms(24 * 3600 * 1000 - 1);
    assert_eq!(cp.sweep_client_tokens().await.unwrap().deleted, 0);
    clock.advance_ms(1);
    assert_eq!(cp.sweep_client_tokens().await.unwrap().deleted, 1);
    assert!(cp.store().get(&keys::client_token(&ctx.scope, "c", "tok")).is_none());
    assert_eq!(cp.store().count(&keys::token_expiries_prefix()), 0);
    let new = cp.run_task(&ctx, req(body)).await.unwrap().tasks.unwrap()[0].task_arn.clone();
    assert_ne!(first, new, "an expired token starts new tasks");
}

#[tokio::test]
async fn an_inactive_services_history_goes_after_ninety_days() {
    let (cp, ctx, clock) = setup();
    let (_instance, _guards) = fleet(&cp, &ctx, &clock).await;
    cp.create_service(
        &ctx,
        req(json!({"cluster": "c", "serviceName": "svc", "taskDefinition": "web",
        "desiredCount": 0})),
    )
    .await
    .unwrap();
    assert_eq!(counts(&cp, &ctx).2, 1);
    assert_eq!(counts(&cp, &ctx).3, vec![stat("activeEC2ServiceCount", 1)]);
    cp.delete_service(&ctx, req(json!({"cluster": "c", "service": "svc"}))).await.unwrap();
    assert_eq!(counts(&cp, &ctx).3, vec![stat("drainingEC2ServiceCount", 1)]);
    let key = keys::service(&ctx.scope, "c", "svc");
    cp.reconcile_service(&key).await.unwrap();
    let describe = |cp: &ControlPlane| {
        cp.describe_services(&ctx, req(json!({"cluster": "c", "services": ["svc"]}))).unwrap()
    };
    assert_eq!(describe(&cp).services.unwrap()[0].status.as_deref(), Some("INACTIVE"));
    assert_eq!(counts(&cp, &ctx), (0, 0, 0, vec![]));
    assert_recount(&cp);
    let history = keys::service_deployments_prefix(&ctx.scope, "c", "svc");
    assert_eq!(cp.store().count(&history), 1);
    clock.advance_ms(HISTORY_RETENTION_MS - 60_000);
    let swept = cp.sweep_inactive_services().await.unwrap();
    assert_eq!(swept.deleted, 0);
    assert!(swept.next_ms.is_some());
    clock.advance_ms(60_000);
    let swept = cp.sweep_inactive_services().await.unwrap();
    assert_eq!(swept.deleted, 2, "the service deployment and the service");
    assert_eq!(cp.store().count(&history), 0);
    let d = describe(&cp);
    assert_eq!(d.services.unwrap().len(), 0);
    assert_eq!(d.failures.unwrap()[0].reason.as_deref(), Some("MISSING"));
    let mut left = Vec::new();
    cp.store().visit("", &mut |kv| {
        if kv.key.contains("/svc") {
            left.push(kv.key.clone());
        }
    });
    assert!(left.is_empty(), "{left:?}");
    // The name can be used again.
    cp.create_service(
        &ctx,
        req(json!({"cluster": "c", "serviceName": "svc", "taskDefinition": "web",
        "desiredCount": 0})),
    )
    .await
    .unwrap();
    assert_recount(&cp);
}

/// A small deterministic generator (the steps must be replayable from the seed).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[tokio::test]
async fn after_random_transitions_the_counters_equal_a_full_recount() {
    for seed in 1..=4u64 {
        let (cp, ctx, clock) = setup();
        let (instance, _guards) = fleet(&cp, &ctx, &clock).await;
        let mut rng = Lcg(seed);
        let mut tasks: Vec<String> = Vec::new();
        let mut services = 0;
        for step in 0..120 {
            match rng.below(9) {
                0 | 1 => tasks.extend(run(&cp, &ctx, rng.below(2) == 0, 1 + rng.below(3) as i32).await),
                2..=4 if !tasks.is_empty() => {
                    let arn = tasks[rng.below(tasks.len())].clone();
                    let status = ["PENDING", "RUNNING", "DEACTIVATING", "STOPPING", "STOPPED"][rng.below(5)];
                    let body = json!({"cluster": "c", "task": arn, "status": status});
                    // (It may have been swept already.)
                    let _ = cp.submit_task_state_change(&ctx, req(body)).await;
                }
                5 if !tasks.is_empty() => {
                    let arn = tasks[rng.below(tasks.len())].clone();
                    // (It may have been swept already.)
                    let _ = cp.stop_task(&ctx, req(json!({"cluster": "c", "task": arn}))).await;
                }
                6 => {
                    clock.advance_ms(rng.below(3) as i64 * 1_800_000);
                    cp.sweep_stopped_tasks(RETENTION).await.unwrap();
                }
                7 => {
                    services += 1;
                    let lt = if rng.below(2) == 0 { "EC2" } else { "FARGATE" };
                    let mut body = json!({"cluster": "c", "serviceName": format!("s{services}"),
                        "taskDefinition": if lt == "EC2" { "web" } else { "fw" }, "desiredCount": 0,
                        "launchType": lt});
                    if lt == "FARGATE" {
                        body["networkConfiguration"] =
                            json!({"awsvpcConfiguration": {"subnets": ["subnet-1"]}});
                    }
                    cp.create_service(&ctx, req(body)).await.unwrap();
                }
                8 if services > 0 => {
                    let name = format!("s{}", 1 + rng.below(services));
                    let _ = cp.delete_service(&ctx, req(json!({"cluster": "c", "service": name}))).await;
                    cp.reconcile_service(&keys::service(&ctx.scope, "c", &name)).await.unwrap();
                }
                _ => {}
            }
            let derived = migrate::derive(&**cp.store()).unwrap();
            assert_eq!(
                migrate::counters(&**cp.store()),
                derived.counters,
                "seed {seed}, step {step}: the counters equal a full recount"
            );
        }
        // And DescribeClusters says what the tasks say.
        let all: Vec<Task> = tasks
            .chunks(100)
            .flat_map(|c| {
                cp.describe_tasks(&ctx, req(json!({"cluster": "c", "tasks": c}))).unwrap().tasks.unwrap()
            })
            .collect();
        let running = all.iter().filter(|t| t.last_status.as_deref() == Some("RUNNING")).count() as i32;
        let pending = all
            .iter()
            .filter(|t| matches!(t.last_status.as_deref(), Some("PROVISIONING" | "PENDING" | "ACTIVATING")))
            .count() as i32;
        let (r, p, _, _) = counts(&cp, &ctx);
        assert_eq!((r, p), (running, pending), "seed {seed}");
        let on_instance = |s: &str| {
            all.iter()
                .filter(|t| t.container_instance_arn.as_deref() == Some(&instance))
                .filter(|t| match s {
                    "running" => t.last_status.as_deref() == Some("RUNNING"),
                    _ => matches!(t.last_status.as_deref(), Some("PROVISIONING" | "PENDING" | "ACTIVATING")),
                })
                .count() as i32
        };
        assert_eq!(instance_counts(&cp, &ctx, &instance), (on_instance("running"), on_instance("pending")));
    }
}

#[tokio::test]
async fn the_cleanup_controller_removes_a_stopped_task_once_its_retention_is_over() {
    let (cp, ctx, clock) = setup();
    let (_instance, _guards) = fleet(&cp, &ctx, &clock).await;
    let (stop, stopped) = gantry_runtime::shutdown();
    let leader: Arc<dyn gantry_runtime::Leadership> = Arc::new(gantry_runtime::AlwaysLeader::default());
    let controller = tokio::spawn({
        let cp = cp.clone();
        async move { cp.run_cleanup(Duration::ZERO, leader, stopped).await }
    });
    let arn = run(&cp, &ctx, false, 1).await.remove(0);
    let key = keys::task(&ctx.scope, "c", arn.rsplit('/').next().unwrap());
    let mut watch = cp.store().watch(&key, cp.store().revision() + 1).unwrap();
    report(&cp, &ctx, &arn, "STOPPED").await;
    // The STOPPED report puts the task's retention row; the controller's watch sees it, and with
    // no retention the pass deletes the task.
    let deleted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = watch.next().await.unwrap();
            if e.kind == gantry_store::EventKind::Delete {
                return e.kv.key;
            }
        }
    })
    .await
    .expect("the controller deleted the task");
    assert_eq!(deleted, key);
    assert!(list(&cp, &ctx, json!({"desiredStatus": "STOPPED"})).is_empty());
    stop.trigger();
    controller.await.unwrap();
}
