//! Service deployment history, driven like `services_sim.rs`: the real control plane on an
//! in-memory store, a fake clock, seeded IDs and simulated agents (a task starts on the next
//! step, crashes if its image is `crash`, and stays PENDING forever if its image is `stuck`).
//! One run goes through create → update → complete → a failing deployment that the circuit
//! breaker rolls back → a deployment replaced while in progress → StopServiceDeployment, and
//! checks statuses, ARNs, counts, MISSING failures and errors on the way.

use crate::agents_sim;
use crate::common::{connected_instance, req, setup};
use gantry_core::{ErrorKind, FixedClock};
use gantry_ecs::{ControlPlane, Ctx, keys};
use gantry_model::*;
use serde_json::{Value, json};
use std::sync::Arc;

const CLUSTER: &str = "hist";
const ARN: &str = "arn:aws:ecs:us-east-1:000000000000";

struct Sim {
    cp: ControlPlane,
    ctx: Ctx,
    clock: Arc<FixedClock>,
    _guards: Vec<gantry_ecs::agents::PollGuard>,
}

impl Sim {
    fn service(&self) -> Service {
        agents_sim::service(&self.cp, &self.ctx, CLUSTER, "web")
    }

    /// Tasks not STOPPED (whatever their desired status).
    fn live(&self) -> Vec<Task> {
        agents_sim::live(&self.cp, &self.ctx, CLUSTER)
    }

    async fn agents(&self) {
        agents_sim::agents(&self.cp, &self.ctx, CLUSTER).await
    }

    async fn steps(&self, n: usize) {
        let key = keys::service(&self.ctx.scope, CLUSTER, "web");
        for _ in 0..n {
            self.cp.reconcile_service(&key).await.unwrap();
            self.agents().await;
            self.clock.advance_ms(1_000);
        }
    }

    async fn update(&self, body: Value) {
        let mut body = body;
        body["cluster"] = json!(CLUSTER);
        body["service"] = json!("web");
        self.cp.update_service(&self.ctx, req(body)).await.unwrap();
    }

    fn list(&self, body: Value) -> gantry_core::Result<ListServiceDeploymentsResponse> {
        let mut body = body;
        body["cluster"] = json!(CLUSTER);
        if body.get("service").is_none() {
            body["service"] = json!("web");
        }
        self.cp.list_service_deployments(&self.ctx, req(body))
    }

    /// Every service deployment, newest first.
    fn briefs(&self) -> Vec<ServiceDeploymentBrief> {
        self.list(json!({})).unwrap().service_deployments.unwrap()
    }

    fn describe(&self, arn: &str) -> ServiceDeployment {
        let out = self
            .cp
            .describe_service_deployments(&self.ctx, req(json!({"serviceDeploymentArns": [arn]})))
            .unwrap();
        assert_eq!(out.failures.as_deref(), Some(&[][..]));
        out.service_deployments.unwrap().remove(0)
    }

    fn revision(&self, arn: &str) -> ServiceRevision {
        let out = self
            .cp
            .describe_service_revisions(&self.ctx, req(json!({"serviceRevisionArns": [arn]})))
            .unwrap();
        out.service_revisions.unwrap().remove(0)
    }

    async fn stop(
        &self,
        arn: &str,
        stop_type: Option<&str>,
    ) -> gantry_core::Result<StopServiceDeploymentResponse> {
        let mut body = json!({"serviceDeploymentArn": arn});
        if let Some(t) = stop_type {
            body["stopType"] = json!(t);
        }
        self.cp.stop_service_deployment(&self.ctx, req(body)).await
    }
}

async fn sim() -> Sim {
    let (cp, ctx, clock) = setup();
    cp.create_cluster(&ctx, req(json!({"clusterName": CLUSTER}))).await.unwrap();
    let mut guards = Vec::new();
    for _ in 0..3 {
        let registration = req(json!({"cluster": CLUSTER, "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}]}));
        let (_, guard) = connected_instance(&cp, &ctx, &clock, registration).await;
        guards.push(guard);
    }
    for image in ["good", "good-v2", "crash", "stuck"] {
        cp.register_task_definition(
            &ctx,
            req(json!({"family": "web", "containerDefinitions": [
                {"name": "app", "image": image, "memory": 128, "cpu": 64}]})),
        )
        .await
        .unwrap();
    }
    Sim { cp, ctx, clock, _guards: guards }
}

fn kind<T: std::fmt::Debug>(r: gantry_core::Result<T>) -> ErrorKind {
    r.unwrap_err().kind
}

fn rev_arn_of(sd: &ServiceDeployment) -> String {
    sd.target_service_revision.as_ref().and_then(|t| t.arn.clone()).unwrap()
}

#[tokio::test]
async fn deployment_history_through_create_update_rollback_and_stop() {
    let s = sim().await;
    let created =
        s.cp.create_service(
            &s.ctx,
            req(
                json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "web:1", "desiredCount": 2,
                "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": true}}}),
            ),
        )
        .await
        .unwrap()
        .service
        .unwrap();

    // CreateService: one service deployment IN_PROGRESS, named after the deployment's ID.
    let d1 = created.deployments.as_ref().unwrap()[0].id.clone().unwrap();
    let digits1 = d1.strip_prefix("ecs-svc/").unwrap();
    let sd1_arn = format!("{ARN}:service-deployment/{CLUSTER}/web/{digits1}");
    let rev1_arn = format!("{ARN}:service-revision/{CLUSTER}/web/{digits1}");
    assert_eq!(created.current_service_deployment.as_deref(), Some(sd1_arn.as_str()));
    let briefs = s.briefs();
    assert_eq!(briefs.len(), 1);
    assert_eq!(briefs[0].service_deployment_arn.as_deref(), Some(sd1_arn.as_str()));
    assert_eq!(briefs[0].status.as_deref(), Some("IN_PROGRESS"));
    assert_eq!(briefs[0].target_service_revision_arn.as_deref(), Some(rev1_arn.as_str()));
    assert_eq!(briefs[0].service_arn.as_deref(), Some(format!("{ARN}:service/{CLUSTER}/web").as_str()));
    assert_eq!(briefs[0].cluster_arn.as_deref(), Some(format!("{ARN}:cluster/{CLUSTER}").as_str()));

    // It completes: SUCCESSFUL, with the target's counts.
    s.steps(4).await;
    let sd1 = s.describe(&sd1_arn);
    assert_eq!(sd1.status.as_deref(), Some("SUCCESSFUL"));
    assert!(sd1.finished_at.is_some() && sd1.started_at == sd1.created_at);
    let t = sd1.target_service_revision.as_ref().unwrap();
    assert_eq!((t.requested_task_count, t.running_task_count, t.pending_task_count), (2, 2, 0));
    assert_eq!(sd1.source_service_revisions.as_deref(), Some(&[][..]));
    let cb = sd1.deployment_circuit_breaker.as_ref().unwrap();
    assert_eq!((cb.status.as_deref(), cb.failure_count, cb.threshold), (Some("MONITORING_COMPLETE"), 0, 3));
    assert!(
        sd1.deployment_configuration.as_ref().unwrap().deployment_circuit_breaker.as_ref().unwrap().rollback
    );
    let rev1 = s.revision(&rev1_arn);
    assert_eq!(rev1.task_definition.as_deref(), Some(format!("{ARN}:task-definition/web:1").as_str()));
    assert_eq!(rev1.launch_type.as_deref(), Some("EC2"));
    let images = rev1.container_images.unwrap();
    assert_eq!(
        (images[0].container_name.as_deref(), images[0].image.as_deref()),
        (Some("app"), Some("good"))
    );
    let svc = s.service();
    let cur = svc.current_service_revisions.unwrap();
    assert_eq!(cur.len(), 1);
    assert_eq!((cur[0].arn.as_deref(), cur[0].running_task_count), (Some(rev1_arn.as_str()), 2));

    // An update: a second service deployment from revision 1 to revision 2, newest first.
    s.update(json!({"taskDefinition": "web:2"})).await;
    let briefs = s.briefs();
    assert_eq!(briefs.len(), 2);
    let sd2_arn = briefs[0].service_deployment_arn.clone().unwrap();
    assert_ne!(sd2_arn, sd1_arn);
    assert_eq!(briefs[1].service_deployment_arn.as_deref(), Some(sd1_arn.as_str()));
    let sd2 = s.describe(&sd2_arn);
    assert_eq!(sd2.status.as_deref(), Some("IN_PROGRESS"));
    let src = &sd2.source_service_revisions.as_ref().unwrap()[0];
    assert_eq!((src.arn.as_deref(), src.running_task_count), (Some(rev1_arn.as_str()), 2));
    assert_eq!(s.service().current_service_deployment.as_deref(), Some(sd2_arn.as_str()));
    assert_eq!(s.service().current_service_revisions.unwrap().len(), 2);
    s.steps(8).await;
    let sd2 = s.describe(&sd2_arn);
    assert_eq!(sd2.status.as_deref(), Some("SUCCESSFUL"));
    let rev2_arn = rev_arn_of(&sd2);
    assert_eq!(s.revision(&rev2_arn).container_images.unwrap()[0].image.as_deref(), Some("good-v2"));
    // The source's final counts: revision 1 was scaled in.
    let src = &sd2.source_service_revisions.as_ref().unwrap()[0];
    assert_eq!((src.requested_task_count, src.running_task_count), (0, 0));

    // A failing deployment: the circuit breaker rolls back to revision 2. The rollback has no
    // service deployment of its own.
    s.update(json!({"taskDefinition": "web:3"})).await;
    let sd3_arn = s.briefs()[0].service_deployment_arn.clone().unwrap();
    let mut seen = vec![];
    for _ in 0..20 {
        s.steps(1).await;
        let st = s.describe(&sd3_arn).status.unwrap();
        if seen.last() != Some(&st) {
            seen.push(st);
        }
    }
    // The tasks of revision 2 still ran and the crashed ones were gone, so the rollback
    // completed in the pass that started it.
    assert_eq!(seen, vec!["IN_PROGRESS", "ROLLBACK_SUCCESSFUL"], "{seen:?}");
    let sd3 = s.describe(&sd3_arn);
    let rb = sd3.rollback.as_ref().unwrap();
    assert!(
        rb.reason
            .as_deref()
            .unwrap()
            .starts_with("ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/"),
        "{rb:?}"
    );
    assert_eq!(rb.service_revision_arn.as_deref(), Some(rev2_arn.as_str()));
    assert!(rb.started_at.is_some() && sd3.finished_at.is_some());
    let cb = sd3.deployment_circuit_breaker.as_ref().unwrap();
    assert_eq!(cb.status.as_deref(), Some("TRIGGERED"));
    assert!(cb.failure_count >= 3, "{cb:?}");
    assert_eq!(s.briefs().len(), 3);
    let svc = s.service();
    assert_eq!(svc.current_service_deployment.as_deref(), Some(sd3_arn.as_str()));
    let cur = svc.current_service_revisions.unwrap();
    assert_eq!(cur.len(), 1);
    assert_eq!((cur[0].arn.as_deref(), cur[0].running_task_count), (Some(rev2_arn.as_str()), 2));

    // A deployment replaced while in progress is STOPPED.
    s.update(json!({"taskDefinition": "web:4"})).await;
    let sd4_arn = s.briefs()[0].service_deployment_arn.clone().unwrap();
    s.steps(2).await;
    assert_eq!(s.describe(&sd4_arn).status.as_deref(), Some("IN_PROGRESS"));
    s.update(json!({"forceNewDeployment": true})).await;
    let sd5_arn = s.briefs()[0].service_deployment_arn.clone().unwrap();
    let sd4 = s.describe(&sd4_arn);
    assert_eq!(sd4.status.as_deref(), Some("STOPPED"));
    assert!(sd4.stopped_at.is_some());
    assert_eq!(
        sd4.status_reason,
        Some(format!("Service deployment stopped: service deployment {sd5_arn} started."))
    );
    s.steps(3).await;
    assert_eq!(s.describe(&sd5_arn).status.as_deref(), Some("IN_PROGRESS"));

    // StopServiceDeployment's errors.
    assert_eq!(kind(s.stop(&sd5_arn, Some("ABORT")).await), ErrorKind::UnsupportedFeatureException);
    assert_eq!(kind(s.stop(&sd5_arn, Some("LATER")).await), ErrorKind::InvalidParameterException);
    assert_eq!(kind(s.stop("not-an-arn", None).await), ErrorKind::InvalidParameterException);
    assert_eq!(kind(s.stop(&sd1_arn, None).await), ErrorKind::ConflictException);
    assert_eq!(kind(s.stop(&sd4_arn, None).await), ErrorKind::ConflictException);
    let unknown = format!("{ARN}:service-deployment/{CLUSTER}/web/1234");
    assert_eq!(kind(s.stop(&unknown, None).await), ErrorKind::ServiceDeploymentNotFoundException);

    // StopServiceDeployment (ROLLBACK, the default): ROLLBACK_REQUESTED at once, then the
    // scheduler rolls back to the last completed deployment (which runs revision 2).
    let out = s.stop(&sd5_arn, None).await.unwrap();
    assert_eq!(out.service_deployment_arn.as_deref(), Some(sd5_arn.as_str()));
    assert_eq!(s.describe(&sd5_arn).status.as_deref(), Some("ROLLBACK_REQUESTED"));
    s.stop(&sd5_arn, Some("ROLLBACK")).await.unwrap(); // asking again continues
    s.steps(1).await;
    let sd5 = s.describe(&sd5_arn);
    assert_eq!(sd5.status.as_deref(), Some("ROLLBACK_IN_PROGRESS"));
    let rb = sd5.rollback.as_ref().unwrap();
    assert!(
        rb.reason
            .as_deref()
            .unwrap()
            .starts_with("ECS deployment rollback requested: rolling back to deploymentId ecs-svc/")
    );
    assert_eq!(rb.service_revision_arn.as_deref(), Some(rev2_arn.as_str()));
    assert!(s.service().events.unwrap().iter().any(|e| {
        e.message.as_deref().is_some_and(|m| m.ends_with("deployment stopped: rollback requested."))
    }));
    s.steps(8).await;
    let sd5 = s.describe(&sd5_arn);
    assert_eq!(sd5.status.as_deref(), Some("ROLLBACK_SUCCESSFUL"));
    assert!(s.live().iter().all(|t| t.task_definition_arn.as_deref().is_some_and(|a| a.ends_with("web:2"))));
    assert_eq!(s.live().len(), 2);
    assert_eq!(kind(s.stop(&sd5_arn, None).await), ErrorKind::ConflictException);
    // A pass that changes nothing writes nothing, history included.
    let rev = s.cp.store().revision();
    s.cp.reconcile_service(&keys::service(&s.ctx.scope, CLUSTER, "web")).await.unwrap();
    assert_eq!(s.cp.store().revision(), rev);

    // Listing: filters and pages.
    assert_eq!(s.briefs().len(), 5);
    let ok = s.list(json!({"status": ["SUCCESSFUL"]})).unwrap().service_deployments.unwrap();
    assert_eq!(ok.len(), 2);
    let stopped = s.list(json!({"status": ["STOPPED", "ROLLBACK_SUCCESSFUL"]})).unwrap();
    assert_eq!(stopped.service_deployments.unwrap().len(), 3);
    let after = s.describe(&sd3_arn).created_at.unwrap();
    let newer = s.list(json!({"createdAt": {"after": after}})).unwrap().service_deployments.unwrap();
    assert_eq!(newer.len(), 2);
    let older = s.list(json!({"createdAt": {"before": after}})).unwrap().service_deployments.unwrap();
    assert_eq!(older.len(), 2);
    let mut pages = vec![];
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"maxResults": 2});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let page = s.list(body).unwrap();
        pages.extend(page.service_deployments.unwrap());
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(
        pages.iter().map(|b| b.service_deployment_arn.clone()).collect::<Vec<_>>(),
        s.briefs().iter().map(|b| b.service_deployment_arn.clone()).collect::<Vec<_>>()
    );
    assert_eq!(kind(s.list(json!({"maxResults": 101}))), ErrorKind::InvalidParameterException);
    assert_eq!(kind(s.list(json!({"status": ["DONE"]}))), ErrorKind::InvalidParameterException);
    assert_eq!(kind(s.list(json!({"nextToken": "bogus"}))), ErrorKind::InvalidParameterException);
    assert_eq!(kind(s.list(json!({"service": "nope"}))), ErrorKind::ServiceNotFoundException);
    let r = s.cp.list_service_deployments(&s.ctx, req(json!({"cluster": "nope", "service": "web"})));
    assert_eq!(kind(r), ErrorKind::ClusterNotFoundException);

    // Describe: unknown ARNs are MISSING failures; bad ARNs and too many are invalid.
    let unknown_rev = format!("{ARN}:service-revision/{CLUSTER}/web/1234");
    let out =
        s.cp.describe_service_deployments(&s.ctx, req(json!({"serviceDeploymentArns": [sd1_arn, unknown]})))
            .unwrap();
    assert_eq!(out.service_deployments.unwrap().len(), 1);
    let f = &out.failures.unwrap()[0];
    assert_eq!((f.arn.as_deref(), f.reason.as_deref()), (Some(unknown.as_str()), Some("MISSING")));
    let out =
        s.cp.describe_service_revisions(&s.ctx, req(json!({"serviceRevisionArns": [rev1_arn, unknown_rev]})))
            .unwrap();
    assert_eq!(out.service_revisions.unwrap().len(), 1);
    assert_eq!(out.failures.unwrap()[0].reason.as_deref(), Some("MISSING"));
    let r = s.cp.describe_service_revisions(&s.ctx, req(json!({"serviceRevisionArns": [sd1_arn]})));
    assert_eq!(kind(r), ErrorKind::InvalidParameterException);
    let many: Vec<String> = (0..21).map(|i| format!("{ARN}:service-deployment/{CLUSTER}/web/{i}")).collect();
    let r = s.cp.describe_service_deployments(&s.ctx, req(json!({"serviceDeploymentArns": many})));
    assert_eq!(kind(r), ErrorKind::InvalidParameterException);
    let r = s.cp.describe_service_deployments(&s.ctx, req(json!({"serviceDeploymentArns": []})));
    assert_eq!(kind(r), ErrorKind::InvalidParameterException);

    // Deleting the service stops an unfinished deployment.
    s.update(json!({"taskDefinition": "web:4"})).await;
    let sd6_arn = s.briefs()[0].service_deployment_arn.clone().unwrap();
    s.cp.delete_service(&s.ctx, req(json!({"cluster": CLUSTER, "service": "web", "force": true})))
        .await
        .unwrap();
    let sd6 = s.describe(&sd6_arn);
    assert_eq!(sd6.status.as_deref(), Some("STOPPED"));
    assert_eq!(sd6.status_reason.as_deref(), Some("Service deployment stopped: the service was deleted."));
    s.steps(5).await;
    assert_eq!(s.service().status.as_deref(), Some("INACTIVE"));
    assert_eq!(s.briefs().len(), 6, "the history outlives the service");
}
