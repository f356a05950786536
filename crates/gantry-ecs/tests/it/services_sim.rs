//! A deterministic simulation of the service scheduler: the real control plane on an in-memory
//! store, a fake clock, seeded IDs, and simulated agents that report what real ones would (a
//! task starts on the next step, or fails if its image is `crash`; a stop request is carried out
//! on the next step). One run goes through every scenario in turn and checks ECS's bounds on
//! every step: scale-out and scale-in, instance loss, instance drain, a rolling deployment, and a
//! failing deployment that trips the circuit breaker and rolls back, deletion, and a blue/green
//! switch with task sets.

use crate::agents_sim;
use crate::common::{connected_instance, req, setup};
use gantry_core::FixedClock;
use gantry_ecs::{ControlPlane, Ctx, keys};
use gantry_model::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

const CLUSTER: &str = "sim";

struct Sim {
    cp: ControlPlane,
    ctx: Ctx,
    clock: Arc<FixedClock>,
    instances: Vec<String>,
    guards: Vec<gantry_ecs::agents::PollGuard>,
}

impl Sim {
    fn service_key(&self) -> String {
        keys::service(&self.ctx.scope, CLUSTER, "web")
    }

    fn service(&self) -> Service {
        self.service_named("web")
    }

    fn service_named(&self, name: &str) -> Service {
        agents_sim::service(&self.cp, &self.ctx, CLUSTER, name)
    }

    fn tasks(&self) -> Vec<Task> {
        agents_sim::tasks(&self.cp, &self.ctx, CLUSTER)
    }

    /// Tasks not STOPPED.
    fn live(&self) -> Vec<Task> {
        agents_sim::live(&self.cp, &self.ctx, CLUSTER)
    }

    fn healthy(&self) -> usize {
        self.live()
            .iter()
            .filter(|t| {
                t.last_status.as_deref() == Some("RUNNING") && t.desired_status.as_deref() == Some("RUNNING")
            })
            .count()
    }

    /// The simulated agents: carry out stop requests, start (or crash) what is pending.
    async fn agents(&self) {
        agents_sim::agents(&self.cp, &self.ctx, CLUSTER).await
    }

    /// One step: a scheduler pass, then the agents, then a second of fake time. Checks that a
    /// pass never takes the service past maximumPercent nor below minimumHealthyPercent.
    async fn step(&self, max_total: usize, min_healthy: usize) {
        let healthy_before = self.healthy();
        self.cp.reconcile_service(&self.service_key()).await.unwrap();
        let live = self.live().len();
        assert!(live <= max_total, "{live} tasks live, at most {max_total}");
        assert!(
            self.healthy() >= min_healthy.min(healthy_before),
            "healthy fell to {} (minimum {min_healthy}, was {healthy_before})",
            self.healthy()
        );
        self.agents().await;
        self.clock.advance_ms(1_000);
    }

    /// `n` scheduler passes over the service at `key`, each followed by the agents.
    async fn passes(&self, key: &str, n: usize) {
        for _ in 0..n {
            self.cp.reconcile_service(key).await.unwrap();
            self.agents().await;
            self.clock.advance_ms(1_000);
        }
    }

    /// Steps until the service is stable the way `aws ecs wait services-stable` sees it.
    async fn settle(&self, max_total: usize, min_healthy: usize) -> usize {
        for n in 0..60 {
            let s = self.service();
            let deployments = s.deployments.as_ref().map_or(0, |d| d.len());
            if n > 0 && deployments == 1 && s.running_count == s.desired_count && s.pending_count == 0 {
                // Nothing left to do: a pass changes nothing.
                return n;
            }
            self.step(max_total, min_healthy).await;
        }
        panic!("the service did not settle: {:?}", self.service());
    }

    fn zones(&self) -> BTreeMap<String, usize> {
        let mut z = BTreeMap::new();
        for t in self.live() {
            *z.entry(t.availability_zone.unwrap_or_default()).or_default() += 1;
        }
        z
    }

    fn events(&self) -> Vec<String> {
        self.service().events.unwrap_or_default().into_iter().filter_map(|e| e.message).collect()
    }
}

async fn sim() -> Sim {
    let (cp, ctx, clock) = setup();
    cp.create_cluster(&ctx, req(json!({"clusterName": CLUSTER}))).await.unwrap();
    let mut instances = Vec::new();
    let mut guards = Vec::new();
    for i in 0..6 {
        let zone = ["zone-a", "zone-b", "zone-c"][i % 3];
        let registration = req(json!({"cluster": CLUSTER, "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}],
            "attributes": [{"name": "ecs.availability-zone", "value": zone}]}));
        let (arn, guard) = connected_instance(&cp, &ctx, &clock, registration).await;
        instances.push(arn);
        guards.push(guard);
    }
    for (family, image) in [("web", "good"), ("web", "good-v2"), ("web", "crash")] {
        cp.register_task_definition(
            &ctx,
            req(json!({"family": family, "containerDefinitions": [
                {"name": "app", "image": image, "memory": 256, "cpu": 128}]})),
        )
        .await
        .unwrap();
    }
    Sim { cp, ctx, clock, instances, guards }
}

#[tokio::test]
async fn the_scheduler_through_every_scenario() {
    let s = sim().await;
    let _ = &s.guards;
    let web = |rev: u32| format!("web:{rev}");
    s.cp.create_service(
        &s.ctx,
        req(json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": web(1), "desiredCount": 3,
            "enableECSManagedTags": true, "propagateTags": "SERVICE", "tags": [{"key": "team", "value": "a"}],
            "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 200,
                "deploymentCircuitBreaker": {"enable": true, "rollback": true}}})),
    )
    .await
    .unwrap();

    // Creation: three tasks, one per zone (the default spreads over zones), then steady.
    s.settle(6, 3).await;
    let svc = s.service();
    assert_eq!((svc.running_count, svc.desired_count), (3, 3));
    assert_eq!(svc.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("COMPLETED"));
    assert_eq!(s.zones().values().copied().collect::<Vec<_>>(), vec![1, 1, 1]);
    let events = s.events();
    assert_eq!(events[0], "(service web) has reached a steady state.");
    assert!(events.iter().any(|e| e.starts_with("(service web) has started 3 tasks: (task ")));
    let arn = s.live()[0].task_arn.clone().unwrap();
    let tagged =
        s.cp.describe_tasks(&s.ctx, req(json!({"cluster": CLUSTER, "tasks": [arn], "include": ["TAGS"]})))
            .unwrap()
            .tasks
            .unwrap();
    let mut tags: Vec<(String, String)> =
        tagged[0].tags.iter().flatten().map(|t| (t.key.clone().unwrap(), t.value.clone().unwrap())).collect();
    tags.sort();
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(
        tags,
        vec![pair("aws:ecs:clusterName", CLUSTER), pair("aws:ecs:serviceName", "web"), pair("team", "a")]
    );
    for t in s.live() {
        assert_eq!(t.group.as_deref(), Some("service:web"));
        assert_eq!(t.started_by, svc.deployments.as_ref().unwrap()[0].id);
    }

    // Scale-out to 6, then scale-in to 4: the zones stay balanced.
    s.cp.update_service(&s.ctx, req(json!({"cluster": CLUSTER, "service": "web", "desiredCount": 6})))
        .await
        .unwrap();
    s.settle(12, 3).await;
    assert_eq!(s.live().len(), 6);
    assert_eq!(s.zones().values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    // Five of the six are protected from scale-in: only the sixth goes until protection ends.
    let six: Vec<String> = s.live().into_iter().filter_map(|t| t.task_arn).collect();
    let protect = |tasks: &[String], on: bool| {
        req::<UpdateTaskProtectionRequest>(json!({"cluster": CLUSTER, "tasks": tasks,
            "protectionEnabled": on, "expiresInMinutes": 60}))
    };
    s.cp.update_task_protection(&s.ctx, protect(&six[..5], true)).await.unwrap();
    s.cp.update_service(&s.ctx, req(json!({"cluster": CLUSTER, "service": "web", "desiredCount": 4})))
        .await
        .unwrap();
    for _ in 0..3 {
        s.step(8, 0).await;
    }
    let left: Vec<String> = s.live().into_iter().filter_map(|t| t.task_arn).collect();
    assert_eq!(left, six[..5].to_vec(), "protected tasks are kept");
    s.cp.update_task_protection(&s.ctx, protect(&six[..5], false)).await.unwrap();
    s.settle(8, 0).await;
    assert_eq!(s.live().len(), 4);
    let spread: Vec<usize> = s.zones().values().copied().collect();
    assert!(spread.iter().max().unwrap() - spread.iter().min().unwrap() <= 1, "{spread:?}");
    assert!(s.events().iter().any(|e| e.starts_with("(service web) has stopped 1 running tasks: (task ")));

    // Instance loss: an instance holding a task is deregistered; its task is replaced.
    let victim = s.live()[0].clone();
    let host = victim.container_instance_arn.clone().unwrap();
    s.cp.deregister_container_instance(
        &s.ctx,
        req(json!({"cluster": CLUSTER, "containerInstance": host, "force": true})),
    )
    .await
    .unwrap();
    s.settle(8, 0).await;
    let lost = s.tasks().into_iter().find(|t| t.task_arn == victim.task_arn).unwrap();
    assert_eq!(lost.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(s.live().len(), 4);
    assert!(s.live().iter().all(|t| t.container_instance_arn.as_deref() != Some(host.as_str())));

    // Instance drain: replacements start elsewhere first (minimumHealthyPercent 100).
    let drained = s.live()[0].container_instance_arn.clone().unwrap();
    s.cp.update_container_instances_state(
        &s.ctx,
        req(json!({"cluster": CLUSTER, "containerInstances": [drained], "status": "DRAINING"})),
    )
    .await
    .unwrap();
    s.settle(8, 4).await;
    assert_eq!(s.live().len(), 4);
    assert!(s.live().iter().all(|t| t.container_instance_arn.as_deref() != Some(drained.as_str())));

    // A rolling deployment to revision 2.
    s.cp.update_service(&s.ctx, req(json!({"cluster": CLUSTER, "service": "web", "taskDefinition": web(2)})))
        .await
        .unwrap();
    s.settle(8, 4).await;
    let svc = s.service();
    let d = &svc.deployments.as_ref().unwrap()[0];
    assert_eq!(d.task_definition.as_deref().map(|a| a.ends_with("web:2")), Some(true));
    assert_eq!(d.rollout_state.as_deref(), Some("COMPLETED"));
    assert!(s.live().iter().all(|t| t.task_definition_arn.as_deref().is_some_and(|a| a.ends_with("web:2"))));
    let completed = d.id.clone().unwrap();

    // A failing deployment: every task of revision 3 crashes. The circuit breaker (threshold 3
    // at desired 4) fails it and rolls back to revision 2.
    s.cp.update_service(&s.ctx, req(json!({"cluster": CLUSTER, "service": "web", "taskDefinition": web(3)})))
        .await
        .unwrap();
    s.settle(8, 4).await;
    let svc = s.service();
    assert!(
        svc.task_definition.as_deref().is_some_and(|a| a.ends_with("web:2")),
        "{:?}",
        svc.task_definition
    );
    let d = &svc.deployments.as_ref().unwrap()[0];
    assert_eq!(d.rollout_state.as_deref(), Some("COMPLETED"));
    assert_eq!(
        d.rollout_state_reason.as_deref(),
        Some(format!("ECS deployment {} completed.", d.id.as_deref().unwrap()).as_str())
    );
    let events = s.events();
    assert!(events.iter().any(|e| e.contains("deployment failed: tasks failed to start.")), "{events:#?}");
    assert!(events.iter().any(|e| e.contains(&format!("rolling back to deployment {completed}"))));
    assert_eq!(s.live().len(), 4);
    assert!(s.live().iter().all(|t| t.task_definition_arn.as_deref().is_some_and(|a| a.ends_with("web:2"))));

    // Deleting the service (force) stops everything, then it is INACTIVE; the scheduler's entry
    // for it (the service record's index row) stays until then, and goes with that write.
    let entry = keys::scheduled_service(&s.ctx.scope, CLUSTER, "web");
    let service_key = keys::service(&s.ctx.scope, CLUSTER, "web");
    s.cp.delete_service(&s.ctx, req(json!({"cluster": CLUSTER, "service": "web", "force": true})))
        .await
        .unwrap();
    assert_eq!(s.cp.store().get(&entry).map(|kv| kv.value.to_vec()), Some(service_key.into_bytes()));
    for _ in 0..5 {
        s.step(8, 0).await;
    }
    assert!(s.live().is_empty());
    assert_eq!(s.service().status.as_deref(), Some("INACTIVE"));
    assert!(s.cp.store().get(&entry).is_none());

    // Blue/green with task sets (the EXTERNAL deployment controller).
    s.cp.create_service(
        &s.ctx,
        req(json!({"cluster": CLUSTER, "serviceName": "bg", "desiredCount": 4,
            "deploymentController": {"type": "EXTERNAL"}})),
    )
    .await
    .unwrap();
    let set = |td: String| {
        req::<CreateTaskSetRequest>(json!({"cluster": CLUSTER, "service": "bg", "taskDefinition": td,
            "scale": {"value": 100, "unit": "PERCENT"}}))
    };
    let blue = s.cp.create_task_set(&s.ctx, set(web(1))).await.unwrap().task_set.unwrap();
    let bg = keys::service(&s.ctx.scope, CLUSTER, "bg");
    let sets = |s: &Sim| {
        s.cp.describe_task_sets(&s.ctx, req(json!({"cluster": CLUSTER, "service": "bg"})))
            .unwrap()
            .task_sets
            .unwrap()
    };
    s.passes(&bg, 6).await;
    let now = sets(&s);
    assert_eq!((now[0].running_count, now[0].computed_desired_count), (4, 4));
    assert_eq!(now[0].stability_status.as_deref(), Some("STEADY_STATE"));
    // Green beside blue, then the switch: green becomes primary and blue is deleted.
    let green = s.cp.create_task_set(&s.ctx, set(web(2))).await.unwrap().task_set.unwrap();
    s.passes(&bg, 6).await;
    assert_eq!(s.live().len(), 8, "both colours run at full scale");
    s.cp.update_service_primary_task_set(
        &s.ctx,
        req(json!({"cluster": CLUSTER, "service": "bg", "primaryTaskSet": green.task_set_arn})),
    )
    .await
    .unwrap();
    s.cp.delete_task_set(
        &s.ctx,
        req(json!({"cluster": CLUSTER, "service": "bg", "taskSet": blue.id, "force": true})),
    )
    .await
    .unwrap();
    s.passes(&bg, 6).await;
    let now = sets(&s);
    assert_eq!(now.len(), 1, "the drained set is gone");
    assert_eq!(now[0].status.as_deref(), Some("PRIMARY"));
    assert_eq!(now[0].id, green.id);
    let live = s.live();
    assert_eq!(live.len(), 4);
    assert!(live.iter().all(|t| t.started_by == green.id && t.group.as_deref() == Some("service:bg")));
    assert!(s.service_named("bg").task_definition.as_deref().is_some_and(|a| a.ends_with("web:2")));
    let _ = &s.instances;
}

/// DAEMON: one task on every ACTIVE instance that satisfies the constraints, following
/// instances as they join, drain and leave.
#[tokio::test]
async fn daemon_services_follow_instances() {
    let s = sim().await;
    s.cp.create_service(
        &s.ctx,
        req(json!({"cluster": CLUSTER, "serviceName": "agent", "taskDefinition": "web:1",
            "schedulingStrategy": "DAEMON",
            "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.availability-zone != zone-c"}]})),
    )
    .await
    .unwrap();
    let key = keys::service(&s.ctx.scope, CLUSTER, "agent");
    let hosts = |s: &Sim| {
        let mut h: Vec<String> = s.live().into_iter().filter_map(|t| t.container_instance_arn).collect();
        h.sort();
        h
    };
    let eligible = |arns: &[String]| {
        let mut e: Vec<String> =
            arns.iter().enumerate().filter(|(i, _)| i % 3 != 2).map(|(_, a)| a.clone()).collect();
        e.sort();
        e
    };
    s.passes(&key, 3).await;
    // Six instances, two in zone-c: four tasks, one on each of the others.
    assert_eq!(hosts(&s), eligible(&s.instances));
    let svc = s.service_named("agent");
    assert_eq!((svc.desired_count, svc.running_count), (4, 4));
    assert_eq!(svc.deployments.as_ref().unwrap()[0].rollout_state.as_deref(), Some("COMPLETED"));

    // A new instance in zone-a joins: it gets one.
    let registration = req(json!({"cluster": CLUSTER, "totalResources": [
        {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}],
        "attributes": [{"name": "ecs.availability-zone", "value": "zone-a"}]}));
    let (joined, _guard) = connected_instance(&s.cp, &s.ctx, &s.clock, registration).await;
    s.passes(&key, 3).await;
    assert!(hosts(&s).contains(&joined));
    assert_eq!(s.service_named("agent").desired_count, 5);

    // One drains and one leaves: their tasks go, nothing replaces them elsewhere.
    let drained = s.instances[0].clone();
    s.cp.update_container_instances_state(
        &s.ctx,
        req(json!({"cluster": CLUSTER, "containerInstances": [drained], "status": "DRAINING"})),
    )
    .await
    .unwrap();
    s.cp.deregister_container_instance(
        &s.ctx,
        req(json!({"cluster": CLUSTER, "containerInstance": s.instances[1], "force": true})),
    )
    .await
    .unwrap();
    s.passes(&key, 3).await;
    let mut want = vec![s.instances[3].clone(), s.instances[4].clone(), joined.clone()];
    want.sort();
    assert_eq!(hosts(&s), want);
    let svc = s.service_named("agent");
    assert_eq!((svc.desired_count, svc.running_count), (3, 3));
}
