//! A service behind a load balancer, on the real control plane with a fake clock and a fake
//! ELBv2 (`FakeElb`, the `TargetRegistry` port): tasks go ACTIVATING while their targets are
//! registered, then RUNNING; a deployment completes (and old tasks stop) only once the new
//! targets are healthy; a stopping task is DEACTIVATING (deregistered, its agent not told)
//! until its target has drained, then STOPPING; an unhealthy target gets its task replaced
//! with ECS's event and stoppedReason; a task whose containers exit is deregistered at once.

use crate::agents_sim;
use crate::common::{connected_instance, req, setup};
use gantry_core::{FixedClock, Scope};
use gantry_ecs::{ControlPlane, Ctx, keys};
use gantry_model::*;
use gantry_ports::lb::{
    ObservedHealth, PortFuture, RuleInfo, TargetGroupInfo, TargetReason, TargetRef, TargetRegistry,
    TargetState, TargetType, WeightedTargetGroup,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const CLUSTER: &str = "lb";
/// Addresses handed to awsvpc tasks, each once.
static NEXT_IP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/0123456789abcdef";
const TG2: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web2/fedcba9876543210";
const LB: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/web/0123456789abcdef";

/// ELBv2 as far as ECS sees it: one `ip` target group and its targets' states.
#[derive(Default)]
struct FakeElb {
    targets: Mutex<BTreeMap<(String, String, u16), TargetState>>,
    calls: Mutex<Vec<String>>,
    /// Listener rules: their forward actions' target groups and weights.
    rules: Mutex<BTreeMap<String, Vec<WeightedTargetGroup>>>,
}

impl FakeElb {
    fn set(&self, id: &str, state: TargetState) {
        let mut t = self.targets.lock().unwrap();
        for ((_, tid, _), s) in t.iter_mut() {
            if tid == id {
                *s = state;
            }
        }
    }
    fn states(&self) -> BTreeMap<String, TargetState> {
        self.targets.lock().unwrap().iter().map(|((_, id, _), s)| (id.clone(), *s)).collect()
    }
    /// The targets of one group and their states.
    fn group(&self, tg: &str) -> BTreeMap<String, TargetState> {
        let t = self.targets.lock().unwrap();
        t.iter().filter(|((g, _, _), _)| g == tg).map(|((_, id, _), s)| (id.clone(), *s)).collect()
    }
    /// Every target of a group turns healthy.
    fn all_healthy(&self, tg: &str) {
        for ((g, _, _), s) in self.targets.lock().unwrap().iter_mut() {
            if g == tg && *s == TargetState::Initial {
                *s = TargetState::Healthy;
            }
        }
    }
    /// The deregistration delay ends: draining targets go.
    fn finish_draining(&self) {
        self.targets.lock().unwrap().retain(|_, s| *s != TargetState::Draining);
    }
    /// A rule forwarding everything to `tg`.
    fn add_rule(&self, arn: &str, tg: &str) {
        self.rules
            .lock()
            .unwrap()
            .insert(arn.into(), vec![WeightedTargetGroup { arn: tg.into(), weight: 1 }]);
    }
    /// A rule's weights, by target group.
    fn weights(&self, arn: &str) -> BTreeMap<String, u32> {
        self.rules.lock().unwrap()[arn].iter().map(|w| (w.arn.clone(), w.weight)).collect()
    }
}

impl TargetRegistry for FakeElb {
    fn target_group(&self, _: &Scope, arn: &str) -> Option<TargetGroupInfo> {
        (arn == TG || arn == TG2).then(|| TargetGroupInfo {
            arn: arn.into(),
            target_type: TargetType::Ip,
            load_balancer_arns: vec![LB.into()],
        })
    }
    fn register<'a>(
        &'a self,
        _: &'a Scope,
        tg: &'a str,
        targets: &'a [TargetRef],
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut t = self.targets.lock().unwrap();
            for r in targets {
                self.calls.lock().unwrap().push(format!("register {}:{}", r.id, r.port));
                let s = t.entry((tg.to_string(), r.id.clone(), r.port)).or_insert(TargetState::Initial);
                if *s == TargetState::Draining {
                    *s = TargetState::Initial;
                }
            }
            Ok(())
        })
    }
    fn deregister<'a>(
        &'a self,
        _: &'a Scope,
        tg: &'a str,
        targets: &'a [TargetRef],
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut t = self.targets.lock().unwrap();
            for r in targets {
                self.calls.lock().unwrap().push(format!("deregister {}:{}", r.id, r.port));
                if let Some(s) = t.get_mut(&(tg.to_string(), r.id.clone(), r.port)) {
                    *s = TargetState::Draining;
                }
            }
            Ok(())
        })
    }
    fn rule(&self, _: &Scope, arn: &str) -> Option<RuleInfo> {
        Some(RuleInfo {
            arn: arn.into(),
            listener_arn: format!("{LB}/listener"),
            load_balancer_arn: LB.into(),
            forward: self.rules.lock().unwrap().get(arn)?.clone(),
        })
    }
    fn set_forward<'a>(
        &'a self,
        _: &'a Scope,
        arn: &'a str,
        weights: &'a [WeightedTargetGroup],
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut rules = self.rules.lock().unwrap();
            let r = rules.get_mut(arn).ok_or_else(|| format!("One or more rules not found: '{arn}'"))?;
            *r = weights.to_vec();
            Ok(())
        })
    }
    fn health(&self, _: &Scope, tg: &str, target: &TargetRef) -> Option<ObservedHealth> {
        let state = *self.targets.lock().unwrap().get(&(tg.to_string(), target.id.clone(), target.port))?;
        Some(ObservedHealth {
            state,
            reason: (state == TargetState::Unhealthy).then_some(TargetReason::TargetResponseCodeMismatch),
            description: (state == TargetState::Unhealthy)
                .then(|| "Health checks failed with these codes: [503]".to_string()),
        })
    }
}

struct World {
    cp: ControlPlane,
    ctx: Ctx,
    clock: Arc<FixedClock>,
    elb: Arc<FakeElb>,
    _guards: Vec<gantry_ecs::agents::PollGuard>,
}

fn id_of(t: &Task) -> String {
    t.task_arn.as_deref().unwrap().rsplit('/').next().unwrap().to_string()
}

fn ip_of(t: &Task) -> Option<String> {
    t.attachments
        .iter()
        .flatten()
        .flat_map(|a| a.details.iter().flatten())
        .find(|d| d.name.as_deref() == Some("privateIPv4Address"))
        .and_then(|d| d.value.clone())
        .filter(|v| !v.is_empty())
}

impl World {
    async fn new() -> World {
        let (cp, ctx, clock) = setup();
        let elb = Arc::new(FakeElb::default());
        cp.set_target_registry(elb.clone());
        cp.create_cluster(&ctx, req(json!({"clusterName": CLUSTER}))).await.unwrap();
        let mut guards = Vec::new();
        for zone in ["zone-a", "zone-b"] {
            let registration = req(json!({"cluster": CLUSTER, "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}],
                "attributes": [{"name": "ecs.availability-zone", "value": zone},
                    {"name": "ecs.capability.task-eni"},
                    {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"}]}));
            guards.push(connected_instance(&cp, &ctx, &clock, registration).await.1);
        }
        for image in ["good", "good-v2"] {
            cp.register_task_definition(
                &ctx,
                req(json!({"family": "web", "networkMode": "awsvpc", "containerDefinitions": [
                    {"name": "app", "image": image, "memory": 128, "cpu": 64,
                     "portMappings": [{"containerPort": 8080}]}]})),
            )
            .await
            .unwrap();
        }
        World { cp, ctx, clock, elb, _guards: guards }
    }

    async fn pass(&self) {
        self.pass_over("web").await;
    }

    async fn pass_over(&self, service: &str) {
        self.cp.reconcile_service(&keys::service(&self.ctx.scope, CLUSTER, service)).await.unwrap();
    }

    fn live(&self) -> Vec<Task> {
        agents_sim::live(&self.cp, &self.ctx, CLUSTER)
    }

    fn task(&self, id: &str) -> Task {
        agents_sim::tasks(&self.cp, &self.ctx, CLUSTER).into_iter().find(|t| id_of(t) == id).unwrap()
    }

    fn service(&self) -> Service {
        agents_sim::service(&self.cp, &self.ctx, CLUSTER, "web")
    }

    fn events(&self) -> Vec<String> {
        self.service().events.unwrap_or_default().into_iter().rev().filter_map(|e| e.message).collect()
    }

    /// What real agents do: an awsvpc task's address first, then RUNNING; a task whose desired
    /// status is STOPPED is stopped, unless it is DEACTIVATING (the agent keeps it running).
    async fn agents(&self) {
        for t in self.live() {
            let arn = t.task_arn.clone().unwrap();
            let status = match (t.desired_status.as_deref(), t.last_status.as_deref()) {
                (_, Some("DEACTIVATING")) => continue,
                (Some("STOPPED"), _) => "STOPPED",
                (_, Some("PROVISIONING" | "PENDING")) => {
                    if ip_of(&t).is_none() {
                        let n = NEXT_IP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let ip = format!("10.0.{}.{}", n / 200, n % 200 + 10);
                        let report = gantry_core::protocol::TaskHealthReport {
                            task_arn: arn.clone(),
                            private_ipv4_address: Some(ip),
                            ..Default::default()
                        };
                        self.cp.report_task_health(report).await.unwrap();
                    }
                    "RUNNING"
                }
                _ => continue,
            };
            self.cp
                .submit_task_state_change(
                    &self.ctx,
                    req(json!({"cluster": CLUSTER, "task": arn, "status": status})),
                )
                .await
                .unwrap();
        }
    }

    /// Scheduler passes and agent rounds, a second apart, until nothing more happens.
    async fn settle(&self) {
        for _ in 0..6 {
            self.pass().await;
            self.agents().await;
            self.clock.advance_ms(1_000);
        }
    }

    fn by_status(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for t in self.live() {
            *m.entry(t.last_status.unwrap_or_default()).or_default() += 1;
        }
        m
    }
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[tokio::test]
async fn a_service_behind_a_target_group_registers_deploys_on_health_drains_and_replaces() {
    let w = World::new().await;
    w.cp.create_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "web:1", "desiredCount": 2,
            "healthCheckGracePeriodSeconds": 10,
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
            "loadBalancers": [{"targetGroupArn": TG, "containerName": "app", "containerPort": 8080}]})),
    )
    .await
    .unwrap();

    // Launched; the agents report the address and RUNNING: the tasks are ACTIVATING.
    w.pass().await;
    w.agents().await;
    assert_eq!(w.by_status(), counts(&[("ACTIVATING", 2)]), "{:#?}", w.events());
    assert!(w.live().iter().all(|t| t.started_at.is_none()));
    // One pass works out the targets, the next registers them and makes the tasks RUNNING.
    w.pass().await;
    assert!(w.elb.states().is_empty());
    w.pass().await;
    assert_eq!(w.by_status(), counts(&[("RUNNING", 2)]));
    let first: Vec<Task> = w.live();
    let ips: Vec<String> = first.iter().map(|t| ip_of(t).unwrap()).collect();
    assert_eq!(w.elb.states().keys().cloned().collect::<Vec<_>>(), {
        let mut v = ips.clone();
        v.sort();
        v
    });
    assert!(w.elb.calls.lock().unwrap().iter().all(|c| c.ends_with(":8080")));
    assert!(w.events().contains(&format!("(service web) registered 2 targets in (target-group {TG})")));

    // RUNNING but `initial`: the deployment is not complete, however long it takes.
    w.settle().await;
    let d = &w.service().deployments.unwrap()[0];
    assert_eq!(d.rollout_state.as_deref(), Some("IN_PROGRESS"));
    assert_eq!(w.service().running_count, 2);
    for ip in &ips {
        w.elb.set(ip, TargetState::Healthy);
    }
    w.pass().await;
    let d = &w.service().deployments.unwrap()[0];
    assert_eq!(d.rollout_state.as_deref(), Some("COMPLETED"));
    assert!(w.events().last().unwrap().ends_with("has reached a steady state."));

    // A rolling deployment (min 100 %, max 200 %): two new tasks; the old ones stay until the
    // new targets are healthy.
    w.cp.update_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "service": "web", "taskDefinition": "web:2"})),
    )
    .await
    .unwrap();
    w.settle().await;
    assert_eq!(w.by_status(), counts(&[("RUNNING", 4)]));
    assert_eq!(w.service().deployments.unwrap().len(), 2);
    let new: Vec<Task> =
        w.live().into_iter().filter(|t| !first.iter().any(|f| id_of(f) == id_of(t))).collect();
    for t in &new {
        w.elb.set(&ip_of(t).unwrap(), TargetState::Healthy);
    }
    // The old tasks are DEACTIVATING: desired STOPPED, deregistered (draining), and still
    // running (their agent is not told) until the draining ends.
    w.settle().await;
    for f in &first {
        let t = w.task(&id_of(f));
        assert_eq!(t.desired_status.as_deref(), Some("STOPPED"));
        assert_eq!(t.last_status.as_deref(), Some("DEACTIVATING"), "{t:?}");
        assert_eq!(w.elb.states()[&ip_of(f).unwrap()], TargetState::Draining);
    }
    let ev = w.events();
    assert!(ev.contains(&"(service web) has begun draining connections on 2 tasks.".to_string()), "{ev:#?}");
    assert!(ev.contains(&format!("(service web) deregistered 2 targets in (target-group {TG})")));
    assert_eq!(w.service().deployments.unwrap().len(), 2, "the old deployment lasts while its tasks drain");
    // Draining over: STOPPING, then the agents stop them.
    w.elb.finish_draining();
    w.pass().await;
    assert_eq!(w.task(&id_of(&first[0])).last_status.as_deref(), Some("STOPPING"));
    w.settle().await;
    assert_eq!(w.by_status(), counts(&[("RUNNING", 2)]));
    let s = w.service();
    assert_eq!(s.deployments.as_ref().unwrap().len(), 1);
    assert_eq!(s.deployments.unwrap()[0].rollout_state.as_deref(), Some("COMPLETED"));

    // A target turns unhealthy: past the grace period its task is replaced, ECS's way.
    let victim = &new[0];
    let vip = ip_of(victim).unwrap();
    w.elb.set(&vip, TargetState::Unhealthy);
    w.pass().await;
    let t = w.task(&id_of(victim));
    assert_eq!(t.last_status.as_deref(), Some("DEACTIVATING"));
    assert_eq!(t.stopped_reason, Some(format!("Task failed ELB health checks in (target-group {TG})")));
    assert_eq!(t.stop_code.as_deref(), Some("ServiceSchedulerInitiated"));
    assert!(w.events().contains(&format!(
        "(service web) (task {}) (port 8080) is unhealthy in (target-group {TG}) due to (reason Health checks failed with these codes: [503]).",
        id_of(victim)
    )));
    w.settle().await;
    w.elb.finish_draining();
    w.settle().await;
    assert_eq!(w.task(&id_of(victim)).last_status.as_deref(), Some("STOPPED"));
    assert_eq!(w.by_status(), counts(&[("RUNNING", 2)]));
    assert!(!w.elb.states().contains_key(&vip));

    // A task whose containers exit leaves its target group at once.
    let other = w
        .live()
        .into_iter()
        .find(|t| ip_of(t).as_deref() != Some(&vip) && id_of(t) != id_of(victim))
        .unwrap();
    w.cp.submit_task_state_change(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "task": other.task_arn, "status": "STOPPED"})),
    )
    .await
    .unwrap();
    w.pass().await;
    assert_eq!(w.elb.states()[&ip_of(&other).unwrap()], TargetState::Draining);
}

#[tokio::test]
async fn scale_in_goes_through_deactivating_and_stop_task_too() {
    let w = World::new().await;
    w.cp.create_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "web:1", "desiredCount": 2,
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
            "loadBalancers": [{"targetGroupArn": TG, "containerName": "app", "containerPort": 8080}]})),
    )
    .await
    .unwrap();
    w.settle().await;
    for t in w.live() {
        w.elb.set(&ip_of(&t).unwrap(), TargetState::Healthy);
    }
    w.settle().await;
    w.cp.update_service(&w.ctx, req(json!({"cluster": CLUSTER, "service": "web", "desiredCount": 1})))
        .await
        .unwrap();
    w.settle().await;
    assert_eq!(w.by_status(), counts(&[("DEACTIVATING", 1), ("RUNNING", 1)]));
    w.elb.finish_draining();
    w.settle().await;
    assert_eq!(w.by_status(), counts(&[("RUNNING", 1)]));

    // StopTask on a registered task: DEACTIVATING, not STOPPING, until drained.
    let t = w.live().remove(0);
    let out =
        w.cp.stop_task(&w.ctx, req(json!({"cluster": CLUSTER, "task": t.task_arn})))
            .await
            .unwrap()
            .task
            .unwrap();
    assert_eq!(out.last_status.as_deref(), Some("DEACTIVATING"));
    assert_eq!(out.desired_status.as_deref(), Some("STOPPED"));
    w.pass().await;
    w.agents().await;
    assert_eq!(w.task(&id_of(&t)).last_status.as_deref(), Some("DEACTIVATING"));
    w.elb.finish_draining();
    w.settle().await;
    assert_eq!(w.task(&id_of(&t)).last_status.as_deref(), Some("STOPPED"));
}

#[tokio::test]
async fn changing_load_balancers_moves_new_tasks_to_the_new_group_and_old_ones_out_of_theirs() {
    let w = World::new().await;
    w.cp.create_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "web:1", "desiredCount": 2,
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
            "loadBalancers": [{"targetGroupArn": TG, "containerName": "app", "containerPort": 8080}]})),
    )
    .await
    .unwrap();
    w.settle().await;
    w.elb.all_healthy(TG);
    w.settle().await;
    assert_eq!(w.elb.group(TG).len(), 2);
    let d =
        w.cp.update_service(
            &w.ctx,
            req(json!({"cluster": CLUSTER, "service": "web",
                "loadBalancers": [{"targetGroupArn": TG2, "containerName": "app", "containerPort": 8080}]})),
        )
        .await
        .unwrap();
    assert_eq!(d.service.unwrap().deployments.unwrap().len(), 2, "a new deployment");
    w.settle().await;
    assert_eq!(w.elb.group(TG2).len(), 2, "the new tasks register in the new group");
    assert!(w.elb.group(TG).values().all(|s| *s == TargetState::Healthy), "the old ones stay meanwhile");
    w.elb.all_healthy(TG2);
    w.settle().await;
    assert!(w.elb.group(TG).values().all(|s| *s == TargetState::Draining), "{:?}", w.elb.group(TG));
    w.elb.finish_draining();
    w.settle().await;
    assert!(w.elb.group(TG).is_empty());
    assert_eq!(w.by_status(), counts(&[("RUNNING", 2)]));
    let s = w.service();
    assert_eq!(s.deployments.unwrap()[0].rollout_state.as_deref(), Some("COMPLETED"));
}

#[tokio::test]
async fn task_sets_register_with_their_own_target_groups() {
    let w = World::new().await;
    w.cp.create_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "serviceName": "bg", "desiredCount": 2,
            "deploymentController": {"type": "EXTERNAL"}})),
    )
    .await
    .unwrap();
    let set = |td: &str, tg: &str| {
        req::<CreateTaskSetRequest>(json!({"cluster": CLUSTER, "service": "bg", "taskDefinition": td,
            "launchType": "EC2",
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
            "loadBalancers": [{"targetGroupArn": tg, "containerName": "app", "containerPort": 8080}],
            "scale": {"value": 100, "unit": "PERCENT"}}))
    };
    let blue = w.cp.create_task_set(&w.ctx, set("web:1", TG)).await.unwrap().task_set.unwrap();
    let steps = || async {
        for _ in 0..6 {
            w.pass_over("bg").await;
            w.agents().await;
            w.clock.advance_ms(1_000);
        }
    };
    steps().await;
    assert_eq!(w.elb.group(TG).len(), 2, "blue's tasks in blue's group");
    w.cp.create_task_set(&w.ctx, set("web:2", TG2)).await.unwrap();
    steps().await;
    assert_eq!(w.elb.group(TG2).len(), 2, "green's tasks in green's group");
    assert_eq!(w.elb.group(TG).len(), 2);
    w.cp.delete_task_set(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "service": "bg", "taskSet": blue.id, "force": true})),
    )
    .await
    .unwrap();
    steps().await;
    assert!(w.elb.group(TG).values().all(|s| *s == TargetState::Draining), "{:?}", w.elb.group(TG));
    w.elb.finish_draining();
    steps().await;
    assert_eq!(w.by_status(), counts(&[("RUNNING", 2)]));
    assert_eq!(w.elb.group(TG2).len(), 2);
}

const PROD: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:listener-rule/app/web/0123456789abcdef/1111111111111111/aaaaaaaaaaaaaaaa";
const TEST: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000:listener-rule/app/web/0123456789abcdef/2222222222222222/bbbbbbbbbbbbbbbb";
const ROLE: &str = "arn:aws:iam::000000000000:role/ecsInfrastructureRole";

/// The service's load balancer with its blue/green settings.
fn blue_green_lb() -> serde_json::Value {
    json!([{"targetGroupArn": TG, "containerName": "app", "containerPort": 8080,
        "advancedConfiguration": {"alternateTargetGroupArn": TG2, "productionListenerRule": PROD,
            "testListenerRule": TEST, "roleArn": ROLE}}])
}

impl World {
    /// The service's current service deployment.
    fn current_sd(&self) -> ServiceDeployment {
        let arn = self.service().current_service_deployment.unwrap();
        let out = self
            .cp
            .describe_service_deployments(&self.ctx, req(json!({"serviceDeploymentArns": [arn]})))
            .unwrap();
        out.service_deployments.unwrap().remove(0)
    }
    fn stage(&self) -> String {
        self.current_sd().lifecycle_stage.unwrap_or_default()
    }
    /// The live tasks registered in `tg` (by their targets' addresses).
    fn in_group(&self, tg: &str) -> usize {
        let group = self.elb.group(tg);
        self.live().iter().filter(|t| ip_of(t).is_some_and(|ip| group.contains_key(&ip))).count()
    }
    fn weight(&self, rule: &str, tg: &str) -> u32 {
        self.elb.weights(rule).get(tg).copied().unwrap_or(0)
    }
}

/// Makes a world whose ELB has the production and test rules forwarding to `TG`.
async fn blue_green_world() -> World {
    let w = World::new().await;
    w.elb.add_rule(PROD, TG);
    w.elb.add_rule(TEST, TG);
    w
}

#[tokio::test]
async fn blue_green_validation_names_what_is_missing() {
    let w = blue_green_world().await;
    let create = |lbs: serde_json::Value, dc: serde_json::Value| {
        req::<CreateServiceRequest>(
            json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "web:1",
            "desiredCount": 1, "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
            "loadBalancers": lbs, "deploymentConfiguration": dc}),
        )
    };
    let plain = json!([{"targetGroupArn": TG, "containerName": "app", "containerPort": 8080}]);
    let cases: Vec<(serde_json::Value, serde_json::Value, &str)> = vec![
        (plain.clone(), json!({"strategy": "BLUE_GREEN"}), "advancedConfiguration is required"),
        (
            plain.clone(),
            json!({"strategy": "SIDEWAYS"}),
            "Invalid value for deploymentConfiguration.strategy: SIDEWAYS",
        ),
        (
            json!([{"targetGroupArn": TG, "containerName": "app", "containerPort": 8080,
            "advancedConfiguration": {"alternateTargetGroupArn": TG2, "roleArn": ROLE}}]),
            json!({"strategy": "BLUE_GREEN"}),
            "productionListenerRule is required",
        ),
        (
            json!([{"targetGroupArn": TG, "containerName": "app", "containerPort": 8080,
            "advancedConfiguration": {"alternateTargetGroupArn": TG2, "productionListenerRule": PROD}}]),
            json!({"strategy": "BLUE_GREEN"}),
            "roleArn is required",
        ),
        (
            json!([{"targetGroupArn": TG, "containerName": "app", "containerPort": 8080,
            "advancedConfiguration": {"alternateTargetGroupArn": TG2, "roleArn": ROLE,
                "productionListenerRule": format!("{PROD}0")}}]),
            json!({"strategy": "BLUE_GREEN"}),
            "does not exist",
        ),
        (
            blue_green_lb(),
            json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1441}),
            "bakeTimeInMinutes must be between 0 and 1440",
        ),
        (
            blue_green_lb(),
            json!({"strategy": "CANARY", "canaryConfiguration": {"canaryPercent": 0.05}}),
            "canaryPercent",
        ),
        (
            blue_green_lb(),
            json!({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 2.0}}),
            "stepPercent",
        ),
        (
            blue_green_lb(),
            json!({"strategy": "BLUE_GREEN", "lifecycleHooks": [{"targetType": "AWS_LAMBDA",
            "hookTargetArn": "arn:aws:lambda:us-east-1:000000000000:function:check", "roleArn": ROLE,
            "lifecycleStages": ["POST_SCALE_UP"]}]}),
            "Gantry has no AWS Lambda",
        ),
        (
            blue_green_lb(),
            json!({"strategy": "BLUE_GREEN", "lifecycleHooks": [{"targetType": "PAUSE",
            "lifecycleStages": ["BAKE_TIME"]}]}),
            "Invalid value for lifecycleHooks.lifecycleStages: BAKE_TIME",
        ),
        (
            blue_green_lb(),
            json!({"lifecycleHooks": [{"targetType": "PAUSE", "lifecycleStages": ["POST_SCALE_UP"]}]}),
            "only supported for the BLUE_GREEN, LINEAR and CANARY",
        ),
    ];
    for (lbs, dc, wanted) in cases {
        let e = w.cp.create_service(&w.ctx, create(lbs, dc.clone())).await.unwrap_err();
        assert_eq!(e.kind, gantry_core::ErrorKind::InvalidParameterException, "{dc}");
        assert!(e.message.contains(wanted), "{dc}: {}", e.message);
    }
    w.cp.create_service(&w.ctx, create(blue_green_lb(), json!({"strategy": "BLUE_GREEN"}))).await.unwrap();
}

#[tokio::test]
async fn blue_green_shifts_test_then_production_bakes_cleans_up_and_swaps_the_groups() {
    let w = blue_green_world().await;
    w.cp.set_deployment_minute(std::time::Duration::from_secs(60));
    w.cp.create_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "web:1", "desiredCount": 2,
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
            "deploymentConfiguration": {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 3},
            "loadBalancers": blue_green_lb()})),
    )
    .await
    .unwrap();
    // The first deployment's tasks go to the group production does not use (the alternate);
    // both rules now forward to both groups, everything still to the production one.
    w.settle().await;
    assert_eq!(w.by_status(), counts(&[("RUNNING", 2)]));
    assert_eq!((w.in_group(TG2), w.in_group(TG)), (2, 0));
    assert_eq!((w.weight(PROD, TG), w.weight(PROD, TG2)), (100, 0));
    assert_eq!(w.stage(), "SCALE_UP");
    // Healthy: test traffic, then production traffic, then the bake time.
    w.elb.all_healthy(TG2);
    w.pass().await;
    assert_eq!((w.weight(TEST, TG), w.weight(TEST, TG2)), (0, 100));
    assert_eq!((w.weight(PROD, TG), w.weight(PROD, TG2)), (0, 100));
    assert_eq!(w.stage(), "BAKE_TIME");
    assert_eq!(w.service().deployments.unwrap()[0].rollout_state.as_deref(), Some("IN_PROGRESS"));
    w.clock.advance_ms(3 * 60_000 - 1_000);
    w.pass().await;
    assert_eq!(w.stage(), "BAKE_TIME", "the bake time is not over");
    w.clock.advance_ms(1_000);
    w.pass().await;
    let sd = w.current_sd();
    assert_eq!(sd.lifecycle_stage.as_deref(), Some("CLEAN_UP"));
    assert_eq!(sd.status.as_deref(), Some("SUCCESSFUL"));
    let first: Vec<String> = w.live().iter().map(id_of).collect();

    // The next deployment: green is the other group now, blue keeps serving until the clean-up.
    w.cp.update_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "service": "web", "taskDefinition": "web:2"})),
    )
    .await
    .unwrap();
    w.settle().await;
    assert_eq!(w.by_status(), counts(&[("RUNNING", 4)]), "green at 100 % beside blue");
    assert_eq!((w.in_group(TG), w.in_group(TG2)), (2, 2));
    assert_eq!((w.weight(PROD, TG), w.weight(PROD, TG2)), (0, 100), "production stays on blue");
    assert_eq!(w.stage(), "SCALE_UP");
    w.elb.all_healthy(TG);
    w.pass().await;
    assert_eq!((w.weight(PROD, TG), w.weight(PROD, TG2)), (100, 0));
    assert_eq!((w.weight(TEST, TG), w.weight(TEST, TG2)), (100, 0));
    assert_eq!(w.stage(), "BAKE_TIME");
    // Blue is still there, registered, through the bake time.
    assert!(first.iter().all(|id| w.task(id).desired_status.as_deref() == Some("RUNNING")));
    w.clock.advance_ms(3 * 60_000);
    w.pass().await;
    assert_eq!(w.stage(), "CLEAN_UP");
    for id in &first {
        assert_eq!(w.task(id).last_status.as_deref(), Some("DEACTIVATING"));
    }
    w.settle().await;
    w.elb.finish_draining();
    w.settle().await;
    assert_eq!(w.by_status(), counts(&[("RUNNING", 2)]));
    let s = w.service();
    assert_eq!(s.deployments.as_ref().unwrap().len(), 1);
    assert_eq!(s.deployments.unwrap()[0].rollout_state.as_deref(), Some("COMPLETED"));
    assert_eq!(w.current_sd().status.as_deref(), Some("SUCCESSFUL"));
}

#[tokio::test]
async fn a_pause_hook_waits_for_continue_service_deployment_and_rollback_shifts_back() {
    let w = blue_green_world().await;
    w.cp.create_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "web:1", "desiredCount": 1,
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
            "deploymentConfiguration": {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0},
            "loadBalancers": blue_green_lb()})),
    )
    .await
    .unwrap();
    w.settle().await;
    w.elb.all_healthy(TG2);
    w.settle().await;
    assert_eq!(w.current_sd().status.as_deref(), Some("SUCCESSFUL"));
    let blue: Vec<String> = w.live().iter().map(id_of).collect();

    // A hook after the test traffic shift, 10 minutes, rolling back on timeout.
    let hooks = json!([{"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
        "timeoutConfiguration": {"timeoutInMinutes": 10, "action": "ROLLBACK"}}]);
    for (round, action) in ["CONTINUE", "ROLLBACK"].into_iter().enumerate() {
        let td = if round == 0 { "web:2" } else { "web:1" };
        w.cp.update_service(
            &w.ctx,
            req(json!({"cluster": CLUSTER, "service": "web", "taskDefinition": td,
                "deploymentConfiguration": {"strategy": "BLUE_GREEN", "lifecycleHooks": hooks}})),
        )
        .await
        .unwrap();
        w.settle().await;
        let green_tg = if round == 0 { TG } else { TG2 };
        let blue_tg = if round == 0 { TG2 } else { TG };
        w.elb.all_healthy(green_tg);
        w.settle().await;
        let sd = w.current_sd();
        assert_eq!(sd.lifecycle_stage.as_deref(), Some("POST_TEST_TRAFFIC_SHIFT"));
        let hook = &sd.lifecycle_hook_details.as_ref().unwrap()[0];
        assert_eq!(hook.status.as_deref(), Some("AWAITING_ACTION"));
        assert_eq!(hook.target_type.as_deref(), Some("PAUSE"));
        assert_eq!(hook.timeout_action.as_deref(), Some("ROLLBACK"));
        assert_eq!(w.weight(TEST, green_tg), 100, "test traffic went to green");
        assert_eq!(w.weight(PROD, blue_tg), 100, "production waits for the hook");
        let bad =
            w.cp.continue_service_deployment(
                &w.ctx,
                req(json!({"serviceDeploymentArn": sd.service_deployment_arn, "hookId": "ecs-pause-nope"})),
            )
            .await
            .unwrap_err();
        assert_eq!(bad.kind, gantry_core::ErrorKind::InvalidParameterException);
        w.cp.continue_service_deployment(
            &w.ctx,
            req(json!({"serviceDeploymentArn": sd.service_deployment_arn, "hookId": hook.hook_id,
                "action": action})),
        )
        .await
        .unwrap();
        w.pass().await;
        if action == "CONTINUE" {
            assert_eq!(w.weight(PROD, green_tg), 100);
            let sd = w.current_sd();
            assert_eq!(sd.lifecycle_hook_details.unwrap()[0].status.as_deref(), Some("SUCCEEDED"));
            w.elb.finish_draining();
            w.settle().await;
            w.elb.finish_draining();
            w.settle().await;
            assert_eq!(w.current_sd().status.as_deref(), Some("SUCCESSFUL"));
            assert!(blue.iter().all(|id| w.task(id).last_status.as_deref() == Some("STOPPED")));
        } else {
            // Rolled back: both rules back on blue, green goes, the deployment is rolled back.
            w.settle().await;
            assert_eq!(w.weight(PROD, blue_tg), 100);
            assert_eq!(w.weight(TEST, blue_tg), 100);
            let sd = w.current_sd();
            assert_eq!(sd.lifecycle_hook_details.as_ref().unwrap()[0].status.as_deref(), Some("FAILED"));
            w.elb.finish_draining();
            w.settle().await;
            assert_eq!(w.current_sd().status.as_deref(), Some("ROLLBACK_SUCCESSFUL"), "{:#?}", w.events());
            assert_eq!(w.in_group(green_tg), 0);
            assert_eq!(w.in_group(blue_tg), 1);
        }
    }
}

#[tokio::test]
async fn canary_shifts_its_percent_then_the_rest() {
    let w = blue_green_world().await;
    w.cp.create_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "web:1", "desiredCount": 1,
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
            "deploymentConfiguration": {"strategy": "CANARY", "bakeTimeInMinutes": 0,
                "canaryConfiguration": {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": 2}},
            "loadBalancers": blue_green_lb()})),
    )
    .await
    .unwrap();
    w.settle().await;
    w.elb.all_healthy(TG2);
    w.pass().await;
    assert_eq!((w.weight(PROD, TG), w.weight(PROD, TG2)), (90, 10));
    assert_eq!(w.stage(), "PRODUCTION_TRAFFIC_SHIFT");
    w.clock.advance_ms(2 * 60_000 - 1);
    w.pass().await;
    assert_eq!(w.weight(PROD, TG2), 10);
    w.clock.advance_ms(1);
    w.pass().await;
    assert_eq!((w.weight(PROD, TG), w.weight(PROD, TG2)), (0, 100));
    assert_eq!(w.current_sd().status.as_deref(), Some("SUCCESSFUL"));
}

#[tokio::test]
async fn stop_service_deployment_during_the_bake_time_shifts_production_back() {
    let w = blue_green_world().await;
    w.cp.create_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "web:1", "desiredCount": 1,
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
            "deploymentConfiguration": {"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 10},
            "loadBalancers": blue_green_lb()})),
    )
    .await
    .unwrap();
    w.settle().await;
    w.elb.all_healthy(TG2);
    w.pass().await;
    w.clock.advance_ms(10 * 60_000);
    w.settle().await;
    w.elb.finish_draining();
    w.settle().await;
    assert_eq!(w.current_sd().status.as_deref(), Some("SUCCESSFUL"));
    // The next deployment reaches its bake time: production on green (TG), blue (TG2) kept.
    w.cp.update_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "service": "web", "taskDefinition": "web:2"})),
    )
    .await
    .unwrap();
    w.settle().await;
    w.elb.all_healthy(TG);
    w.pass().await;
    assert_eq!(w.stage(), "BAKE_TIME");
    assert_eq!((w.weight(PROD, TG), w.weight(PROD, TG2)), (100, 0));
    let arn = w.current_sd().service_deployment_arn.unwrap();
    w.cp.stop_service_deployment(&w.ctx, req(json!({"serviceDeploymentArn": arn, "stopType": "ROLLBACK"})))
        .await
        .unwrap();
    w.pass().await;
    w.pass().await;
    assert_eq!((w.weight(PROD, TG), w.weight(PROD, TG2)), (0, 100), "production back on blue at once");
    assert_eq!((w.weight(TEST, TG), w.weight(TEST, TG2)), (0, 100));
    w.settle().await;
    w.elb.finish_draining();
    w.settle().await;
    assert_eq!(w.current_sd().status.as_deref(), Some("ROLLBACK_SUCCESSFUL"));
    assert_eq!((w.in_group(TG), w.in_group(TG2)), (0, 1));
    // The roles stay: the next deployment goes to TG again.
    w.cp.update_service(
        &w.ctx,
        req(json!({"cluster": CLUSTER, "service": "web", "taskDefinition": "web:2", "forceNewDeployment": true})),
    )
    .await
    .unwrap();
    w.settle().await;
    assert_eq!((w.in_group(TG), w.in_group(TG2)), (1, 1));
}
