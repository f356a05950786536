//! Daemon auto repair, deterministically: ECS's control plane and EC2 Auto Scaling on one
//! in-memory store and a fixed clock, an ECS Managed Instances provider whose instances are
//! "launched" by registering container instances (deregistered when terminated), and an agent
//! played by the test (it reports placed tasks RUNNING and stopping ones STOPPED).
//!
//! A critical daemon's task that fails drains its instance (the service's task there moves),
//! and the instance, once it runs nothing but daemon tasks, is terminated by its group, which
//! launches another in its place (its desired capacity kept), with a scaling activity saying
//! why; the new instance runs the daemon's task before anything else. A non-critical daemon's
//! failure restarts its task, and an instance its user drains is not replaced.

use crate::support::{RegisteringLauncher, req};
use gantry_autoscaling::AutoScaling;
use gantry_core::{FixedClock, Scope, SeededIds, Timestamp};
use gantry_ecs::{ControlPlane, Ctx};
use gantry_ports::autoscaling::{CapacityGroups, GroupView};
use serde_json::json;
use std::sync::Arc;

const ACCOUNT: &str = "123456789012";
const CLUSTER: &str = "dr";
const GROUP: &str = "ecs-managed-instances-mi-cp";

/// The daemon's container, with a health check when `checked`.
fn daemon_container(checked: bool) -> serde_json::Value {
    let mut c = json!({"name": "a", "image": "busybox", "memory": 64});
    if checked {
        c["healthCheck"] =
            json!({"command": ["CMD-SHELL", "true"], "interval": 10, "timeout": 2, "retries": 1});
    }
    c
}

struct World {
    control: ControlPlane,
    asg: Arc<AutoScaling>,
    clock: Arc<FixedClock>,
    scope: Scope,
    ctx: Ctx,
}

/// A task as the test looks at it.
#[derive(Debug, Clone)]
struct Seen {
    arn: String,
    group: String,
    instance: Option<String>,
    last: String,
    desired: String,
}

impl World {
    /// A cluster with an ECS Managed Instances provider (m5.large instances of the sim
    /// launcher), a daemon `mon` (critical or not) on it, and a service `web` of two tasks of
    /// 4 GiB (one fits an instance beside the daemon's task).
    async fn new(critical: bool) -> World {
        World::with(critical, false).await
    }

    /// As [`World::new`], the daemon's container with a health check when `checked`.
    async fn with(critical: bool, checked: bool) -> World {
        let store: Arc<dyn gantry_store::Store> = Arc::new(gantry_store::SqliteStore::in_memory().unwrap());
        let clock = Arc::new(FixedClock::new(Timestamp(1_800_000_000_000)));
        let control = ControlPlane::new(store.clone(), clock.clone(), Arc::new(SeededIds::new(3)));
        let launcher = RegisteringLauncher::new(&control, clock.clone());
        let asg = Arc::new(AutoScaling::new(store, clock.clone(), Arc::new(SeededIds::new(4)), launcher));
        control.set_capacity(
            asg.clone(),
            Arc::new(gantry_ports::NoMetrics),
            std::time::Duration::from_secs(3600),
        );
        let scope = Scope::new(ACCOUNT, "us-east-1");
        let ctx = Ctx::root(scope.clone());
        control.create_cluster(&ctx, req(json!({"clusterName": CLUSTER}))).await.unwrap();
        control
            .create_capacity_provider(
                &ctx,
                req(json!({"name": "mi-cp", "cluster": CLUSTER, "managedInstancesProvider": {
                    "infrastructureRoleArn": "arn:aws:iam::123456789012:role/ecsInfrastructureRole",
                    "instanceLaunchTemplate": {
                        "ec2InstanceProfileArn": "arn:aws:iam::123456789012:instance-profile/ecsInstance",
                        "networkConfiguration": {"subnets": ["subnet-1"]},
                        "instanceRequirements": {"vCpuCount": {"min": 2}, "memoryMiB": {"min": 8192}}}},
                    "tags": [{"key": "gantry:launcher", "value": "gantry-sim"}]})),
            )
            .await
            .unwrap();
        let td = control
            .register_daemon_task_definition(
                &ctx,
                req(json!({"family": "agent", "containerDefinitions": [daemon_container(checked)]})),
            )
            .await
            .unwrap()
            .daemon_task_definition_arn
            .unwrap();
        control
            .create_daemon(
                &ctx,
                req(json!({"daemonName": "mon", "clusterArn": CLUSTER, "daemonTaskDefinitionArn": td,
                           "capacityProviderArns": ["mi-cp"], "critical": critical})),
            )
            .await
            .unwrap();
        control
            .register_task_definition(
                &ctx,
                req(json!({"family": "web", "containerDefinitions": [
                    {"name": "w", "image": "busybox", "cpu": 256, "memory": 4096}]})),
            )
            .await
            .unwrap();
        control
            .create_service(
                &ctx,
                req(json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "web", "desiredCount": 2,
                           "capacityProviderStrategy": [{"capacityProvider": "mi-cp", "weight": 1}]})),
            )
            .await
            .unwrap();
        World { control, asg, clock, scope, ctx }
    }

    fn group(&self) -> Option<GroupView> {
        CapacityGroups::group(self.asg.as_ref(), ACCOUNT, "us-east-1", GROUP)
    }

    fn tasks(&self) -> Vec<Seen> {
        let mut arns = Vec::new();
        for desired in ["RUNNING", "STOPPED"] {
            let out = self
                .control
                .list_tasks(&self.ctx, req(json!({"cluster": CLUSTER, "desiredStatus": desired})))
                .unwrap();
            arns.extend(out.task_arns.unwrap_or_default());
        }
        if arns.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for chunk in arns.chunks(100) {
            let d = self
                .control
                .describe_tasks(&self.ctx, req(json!({"cluster": CLUSTER, "tasks": chunk})))
                .unwrap();
            out.extend(d.tasks.unwrap().into_iter().map(|t| Seen {
                arn: t.task_arn.unwrap(),
                group: t.group.unwrap_or_default(),
                instance: t.container_instance_arn,
                last: t.last_status.unwrap_or_default(),
                desired: t.desired_status.unwrap_or_default(),
            }));
        }
        out
    }

    fn instance_status(&self, arn: &str) -> Option<String> {
        let d = self
            .control
            .describe_container_instances(
                &self.ctx,
                req(json!({"cluster": CLUSTER, "containerInstances": [arn]})),
            )
            .unwrap();
        d.container_instances.unwrap_or_default().into_iter().next().and_then(|c| c.status)
    }

    fn ec2_of(&self, arn: &str) -> String {
        let d = self
            .control
            .describe_container_instances(
                &self.ctx,
                req(json!({"cluster": CLUSTER, "containerInstances": [arn]})),
            )
            .unwrap();
        d.container_instances.unwrap()[0].ec2_instance_id.clone().unwrap()
    }

    /// The agent: placed tasks start, stopping ones stop.
    async fn agent(&self) {
        for t in self.tasks() {
            let to = if t.desired == "STOPPED" && t.last != "STOPPED" {
                "STOPPED"
            } else if t.desired == "RUNNING"
                && t.last != "RUNNING"
                && t.last != "STOPPED"
                && t.instance.is_some()
            {
                "RUNNING"
            } else {
                continue;
            };
            self.control
                .submit_task_state_change(
                    &self.ctx,
                    req(json!({"cluster": CLUSTER, "task": t.arn, "status": to})),
                )
                .await
                .unwrap();
        }
    }

    /// One round of everything that runs: the service scheduler, cluster auto scaling (with the
    /// daemon scheduler), Auto Scaling's controller, the agent; then ten seconds pass.
    async fn round(&self) {
        self.control
            .reconcile_service(&gantry_ecs::keys::service(&self.scope, CLUSTER, "web"))
            .await
            .unwrap();
        self.control.capacity_pass(&self.scope, CLUSTER).await.unwrap();
        if self.group().is_some() {
            self.asg.controller().pass(&self.scope, GROUP).await.unwrap();
        }
        self.agent().await;
        self.clock.advance_ms(10_000);
    }

    /// Rounds until `done` holds (at most `max`); whether it did.
    async fn until(&self, max: usize, done: impl Fn(&World) -> bool) -> bool {
        for _ in 0..max {
            if done(self) {
                return true;
            }
            self.round().await;
        }
        done(self)
    }

    /// Two instances, each with the daemon's task and one of the service's, all RUNNING.
    async fn settled(&self) {
        let ok = self
            .until(20, |w| {
                let t = w.tasks();
                let running = |g: &str| t.iter().filter(|t| t.group == g && t.last == "RUNNING").count();
                running("daemon:mon") == 2 && running("service:web") == 2
            })
            .await;
        assert!(ok, "settled: {:?}", self.tasks());
        assert_eq!(self.group().unwrap().instances.len(), 2);
    }

    async fn activities(&self) -> Vec<serde_json::Value> {
        let body = serde_json::to_vec(&json!({"AutoScalingGroupName": GROUP})).unwrap();
        let out = self.asg.call(&self.scope, "DescribeScalingActivities", &body).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        v["Activities"].as_array().cloned().unwrap_or_default()
    }

    /// Reports what a task's container health check says (as its agent does).
    async fn health(&self, task: &str, status: &str) {
        self.control
            .report_task_health(gantry_core::protocol::TaskHealthReport {
                task_arn: task.to_string(),
                containers: vec![("a".to_string(), status.to_string())],
                private_ipv4_address: None,
            })
            .await
            .unwrap();
    }

    fn task(&self, arn: &str) -> gantry_model::Task {
        let d =
            self.control.describe_tasks(&self.ctx, req(json!({"cluster": CLUSTER, "tasks": [arn]}))).unwrap();
        d.tasks.unwrap().remove(0)
    }

    /// Reports a daemon task's essential container exited.
    async fn fail(&self, task: &str) {
        self.control
            .submit_task_state_change(
                &self.ctx,
                req(json!({"cluster": CLUSTER, "task": task, "status": "STOPPED",
                           "reason": "Essential container in task exited"})),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_daemons_failed_task_drains_and_replaces_its_instance() {
    let w = World::new(true).await;
    w.settled().await;
    let before = w.group().unwrap();
    let tasks = w.tasks();
    let daemon = tasks.iter().find(|t| t.group == "daemon:mon").unwrap().clone();
    let on = daemon.instance.clone().unwrap();
    let ec2 = w.ec2_of(&on);
    let service_task_there = tasks
        .iter()
        .find(|t| t.group == "service:web" && t.instance.as_deref() == Some(&on))
        .unwrap()
        .clone();

    w.fail(&daemon.arn).await;
    w.control.capacity_pass(&w.scope, CLUSTER).await.unwrap();
    assert_eq!(w.instance_status(&on).as_deref(), Some("DRAINING"));
    // Not replaced while the service's task runs there.
    w.control.capacity_pass(&w.scope, CLUSTER).await.unwrap();
    let g = w.group().unwrap();
    let i = g.instances.iter().find(|i| i.instance_id == ec2).unwrap();
    assert_eq!(i.lifecycle_state, "InService", "kept while a service task runs on it");
    assert!(
        w.activities()
            .await
            .iter()
            .all(|a| !a["Cause"].as_str().unwrap_or("").contains("daemon auto repair"))
    );

    // The service's task moves; the instance goes, and another takes its place, whose first
    // task is the daemon's.
    let daemon_last = std::cell::RefCell::new(Vec::new());
    let replaced = w
        .until(30, |w| {
            let g = w.group().unwrap();
            let t = w.tasks();
            for i in g
                .instances
                .iter()
                .filter(|i| !before.instances.iter().any(|b| b.instance_id == i.instance_id))
            {
                let Some(arn) = w.control.container_instance_by_ec2_id(&w.ctx, CLUSTER, &i.instance_id)
                else {
                    continue;
                };
                let there: Vec<_> =
                    t.iter().filter(|t| t.instance.as_deref() == Some(arn.as_str())).collect();
                if there.iter().any(|t| t.group != "daemon:mon")
                    && !there.iter().any(|t| t.group == "daemon:mon")
                {
                    daemon_last.borrow_mut().push(there.iter().map(|t| (*t).clone()).collect::<Vec<_>>());
                }
            }
            let running = |g: &str| t.iter().filter(|t| t.group == g && t.last == "RUNNING").count();
            !g.instances.iter().any(|i| i.instance_id == ec2)
                && running("daemon:mon") == g.instances.len()
                && running("service:web") == 2
        })
        .await;
    assert!(replaced, "group: {:?}, tasks: {:?}", w.group(), w.tasks());
    let tasks = w.tasks();
    let moved = tasks.iter().find(|t| t.arn == service_task_there.arn).unwrap();
    assert_eq!(moved.last, "STOPPED");
    assert!(
        tasks
            .iter()
            .filter(|t| t.group == "service:web" && t.last == "RUNNING")
            .all(|t| t.instance.as_deref() != Some(&on)),
        "the service's tasks run elsewhere: {tasks:?}"
    );
    // The container instance went with its host.
    assert_ne!(w.instance_status(&on).as_deref(), Some("ACTIVE"));

    // The scaling activity says why, and the replacement kept the desired capacity.
    let acts = w.activities().await;
    let repair = acts
        .iter()
        .find(|a| a["Cause"].as_str().unwrap_or("").contains("daemon auto repair"))
        .unwrap_or_else(|| panic!("no repair activity: {acts:#?}"));
    let cause = repair["Cause"].as_str().unwrap();
    assert!(
        cause.contains(&format!(
            "instance {ec2} was taken out of service in response to ECS daemon auto repair"
        )),
        "{cause}"
    );
    assert!(cause.contains("critical daemon mon"), "{cause}");
    assert!(!cause.contains("shrinking the capacity"), "{cause}");
    assert_eq!(repair["StatusCode"], "Successful");
    let after = w.group().unwrap();
    assert!(
        after.desired_capacity >= before.desired_capacity,
        "{} -> {}",
        before.desired_capacity,
        after.desired_capacity
    );
    let new: Vec<_> = after
        .instances
        .iter()
        .filter(|i| !before.instances.iter().any(|b| b.instance_id == i.instance_id))
        .collect();
    assert!(!new.is_empty(), "a new instance: {after:?}");

    // Each new instance is ACTIVE with the daemon's task, which it got before anything else.
    for i in new {
        let arn = w.control.container_instance_by_ec2_id(&w.ctx, CLUSTER, &i.instance_id).unwrap();
        assert_eq!(w.instance_status(&arn).as_deref(), Some("ACTIVE"));
        let there: Vec<_> = tasks.iter().filter(|t| t.instance.as_deref() == Some(arn.as_str())).collect();
        assert!(
            there.iter().any(|t| t.group == "daemon:mon" && t.last == "RUNNING"),
            "its daemon task: {there:?}"
        );
    }
    assert!(daemon_last.borrow().is_empty(), "tasks before the daemon's: {:?}", daemon_last.borrow());
    // An instance left running only the daemon's task is idle: after the scale-in delay the
    // fleet is back to what the service needs (one 4 GiB task per m5.large).
    w.clock.advance_ms(3_600_000);
    let shrunk = w
        .until(30, |w| {
            let g = w.group().unwrap();
            let t = w.tasks();
            g.desired_capacity == 2
                && g.instances.len() == 2
                && t.iter().filter(|t| t.group == "service:web" && t.last == "RUNNING").count() == 2
        })
        .await;
    assert!(shrunk, "group: {:?}", w.group());
    // Nothing else was drained or replaced.
    let acts = w.activities().await;
    let repairs =
        acts.iter().filter(|a| a["Cause"].as_str().unwrap_or("").contains("daemon auto repair")).count();
    assert_eq!(repairs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_critical_daemons_failure_restarts_its_task_and_a_users_drain_is_not_replaced() {
    let w = World::new(false).await;
    w.settled().await;
    let before = w.group().unwrap();
    let tasks = w.tasks();
    let daemons: Vec<_> = tasks.iter().filter(|t| t.group == "daemon:mon").cloned().collect();
    let on = daemons[0].instance.clone().unwrap();
    w.fail(&daemons[0].arn).await;
    let restarted = w
        .until(5, |w| {
            w.tasks().iter().any(|t| {
                t.group == "daemon:mon"
                    && t.instance.as_deref() == Some(&on)
                    && t.last == "RUNNING"
                    && t.arn != daemons[0].arn
            })
        })
        .await;
    assert!(restarted, "{:?}", w.tasks());
    assert_eq!(w.instance_status(&on).as_deref(), Some("ACTIVE"));

    // The user drains the other instance: its service task moves, the instance stays.
    let other = daemons[1].instance.clone().unwrap();
    w.control
        .update_container_instances_state(
            &w.ctx,
            req(json!({"cluster": CLUSTER, "containerInstances": [other], "status": "DRAINING"})),
        )
        .await
        .unwrap();
    let moved = w
        .until(20, |w| {
            let t = w.tasks();
            t.iter().filter(|t| t.group == "service:web" && t.last == "RUNNING").count() == 2
                && t.iter().all(|t| {
                    t.group != "service:web" || t.last == "STOPPED" || t.instance.as_deref() != Some(&other)
                })
        })
        .await;
    assert!(moved, "{:?}", w.tasks());
    for _ in 0..5 {
        w.round().await;
    }
    let ec2 = w.ec2_of(&other);
    assert_eq!(w.instance_status(&other).as_deref(), Some("DRAINING"));
    let g = w.group().unwrap();
    let i = g.instances.iter().find(|i| i.instance_id == ec2).expect("still in its group");
    assert_eq!(i.lifecycle_state, "InService");
    assert!(before.instances.iter().all(|b| g.instances.iter().any(|i| i.instance_id == b.instance_id)));
    assert!(
        w.activities()
            .await
            .iter()
            .all(|a| !a["Cause"].as_str().unwrap_or("").contains("daemon auto repair"))
    );
}

/// ECS: "if the daemon task stops or becomes unhealthy, Amazon ECS considers the instance
/// impaired and automatically drains and replaces it". A critical daemon's task whose essential
/// container's health check fails (the task's healthStatus UNHEALTHY) drains its instance while
/// it still runs, and the instance is replaced as for a task that stopped; a HEALTHY report does
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_daemons_unhealthy_task_drains_and_replaces_its_instance() {
    let w = World::with(true, true).await;
    w.settled().await;
    let before = w.group().unwrap();
    let tasks = w.tasks();
    let daemons: Vec<_> = tasks.iter().filter(|t| t.group == "daemon:mon").cloned().collect();
    let (sick, well) = (&daemons[0], &daemons[1]);
    let on = sick.instance.clone().unwrap();
    let ec2 = w.ec2_of(&on);

    w.health(&well.arn, "HEALTHY").await;
    w.health(&sick.arn, "HEALTHY").await;
    w.control.capacity_pass(&w.scope, CLUSTER).await.unwrap();
    assert_eq!(w.instance_status(&on).as_deref(), Some("ACTIVE"), "healthy: nothing to repair");

    w.health(&sick.arn, "UNHEALTHY").await;
    let t = w.task(&sick.arn);
    assert_eq!((t.health_status.as_deref(), t.last_status.as_deref()), (Some("UNHEALTHY"), Some("RUNNING")));
    w.control.capacity_pass(&w.scope, CLUSTER).await.unwrap();
    assert_eq!(w.instance_status(&on).as_deref(), Some("DRAINING"), "an UNHEALTHY critical daemon drains");
    assert_eq!(w.instance_status(well.instance.as_deref().unwrap()).as_deref(), Some("ACTIVE"));
    assert_eq!(w.task(&sick.arn).desired_status.as_deref(), Some("RUNNING"), "kept until its instance goes");

    // Replaced: the group's instances each run the daemon's task, the service's two tasks run.
    let replaced = w
        .until(30, |w| {
            let g = w.group().unwrap();
            let t = w.tasks();
            let live: Vec<String> = g
                .instances
                .iter()
                .filter_map(|i| w.control.container_instance_by_ec2_id(&w.ctx, CLUSTER, &i.instance_id))
                .collect();
            let daemons_live = t
                .iter()
                .filter(|t| t.group == "daemon:mon" && t.last == "RUNNING")
                .filter(|t| t.instance.as_ref().is_some_and(|i| live.contains(i)))
                .count();
            !g.instances.iter().any(|i| i.instance_id == ec2)
                && daemons_live == g.instances.len()
                && t.iter().filter(|t| t.group == "service:web" && t.last == "RUNNING").count() == 2
        })
        .await;
    assert!(replaced, "group: {:?}, tasks: {:?}", w.group(), w.tasks());
    assert_ne!(w.instance_status(&on).as_deref(), Some("ACTIVE"));
    assert!(w.group().unwrap().desired_capacity >= before.desired_capacity);
    let acts = w.activities().await;
    let repairs: Vec<_> = acts
        .iter()
        .filter_map(|a| a["Cause"].as_str())
        .filter(|c| c.contains("daemon auto repair"))
        .collect();
    assert_eq!(repairs.len(), 1, "{acts:#?}");
    assert!(repairs[0].contains(&ec2), "{}", repairs[0]);
    assert!(
        repairs[0].contains("critical daemon mon") && repairs[0].contains("became UNHEALTHY"),
        "{}",
        repairs[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_critical_daemons_unhealthy_task_leaves_its_instance_active() {
    let w = World::with(false, true).await;
    w.settled().await;
    let daemon = w.tasks().into_iter().find(|t| t.group == "daemon:mon").unwrap();
    let on = daemon.instance.clone().unwrap();
    w.health(&daemon.arn, "UNHEALTHY").await;
    for _ in 0..5 {
        w.round().await;
    }
    assert_eq!(w.instance_status(&on).as_deref(), Some("ACTIVE"));
    assert!(
        w.activities()
            .await
            .iter()
            .all(|a| !a["Cause"].as_str().unwrap_or("").contains("daemon auto repair"))
    );
}
