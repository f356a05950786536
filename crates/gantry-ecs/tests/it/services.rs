//! The service API through the control plane directly: validation with ECS's exact errors,
//! the deployments that CreateService and UpdateService write for the scheduler, DeleteService's
//! DRAINING, listings, Describe's MISSING failures, tags, and task scale-in protection. Nothing
//! here needs the scheduler: it asserts on what the API stores and returns.

use crate::common::{connected_instance, req, setup};
use gantry_core::ErrorKind;
use gantry_ecs::{ControlPlane, Ctx};
use gantry_model::*;
use serde_json::{Value, json};

const ARN: &str = "arn:aws:ecs:us-east-1:000000000000";

/// A cluster `c` and task definitions `web` (bridge, port 80, EC2) and `vpc` (awsvpc, FARGATE).
async fn fixture(cp: &ControlPlane, ctx: &Ctx) {
    cp.create_cluster(ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    cp.register_task_definition(
        ctx,
        req(json!({"family": "web", "containerDefinitions": [
            {"name": "web", "image": "img", "memory": 128, "portMappings": [{"containerPort": 80}]}]})),
    )
    .await
    .unwrap();
    cp.register_task_definition(
        ctx,
        req(json!({"family": "vpc", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "cpu": "256", "memory": "512",
            "containerDefinitions": [{"name": "app", "image": "img"}]})),
    )
    .await
    .unwrap();
}

async fn create(cp: &ControlPlane, ctx: &Ctx, body: Value) -> gantry_core::Result<Service> {
    Ok(cp.create_service(ctx, req(body)).await?.service.unwrap())
}

fn web(name: &str, count: i32) -> Value {
    json!({"cluster": "c", "serviceName": name, "taskDefinition": "web", "desiredCount": count})
}

#[tokio::test]
async fn create_service_writes_one_primary_deployment_and_ecs_defaults() {
    let (cp, ctx, _) = setup();
    fixture(&cp, &ctx).await;
    let s = create(&cp, &ctx, web("svc", 2)).await.unwrap();
    assert_eq!(s.service_arn.as_deref(), Some(format!("{ARN}:service/c/svc").as_str()));
    assert_eq!(s.cluster_arn.as_deref(), Some(format!("{ARN}:cluster/c").as_str()));
    assert_eq!(s.status.as_deref(), Some("ACTIVE"));
    assert_eq!((s.desired_count, s.running_count, s.pending_count), (2, 0, 0));
    assert_eq!(s.launch_type.as_deref(), Some("EC2"));
    assert_eq!(s.platform_version, None);
    assert_eq!(s.task_definition.as_deref(), Some(format!("{ARN}:task-definition/web:1").as_str()));
    assert_eq!(s.scheduling_strategy.as_deref(), Some("REPLICA"));
    assert_eq!(s.propagate_tags.as_deref(), Some("NONE"));
    assert_eq!(s.deployment_controller.as_ref().unwrap().r#type, "ECS");
    assert_eq!(s.created_by.as_deref(), Some(ctx.principal.as_str()));
    assert_eq!(s.events.as_deref(), Some(&[][..]));
    let dc = s.deployment_configuration.as_ref().unwrap();
    assert_eq!((dc.minimum_healthy_percent, dc.maximum_percent), (Some(100), Some(200)));
    let cb = dc.deployment_circuit_breaker.as_ref().unwrap();
    assert!(!cb.enable && !cb.rollback);
    let deps = s.deployments.as_ref().unwrap();
    assert_eq!(deps.len(), 1);
    let d = &deps[0];
    let id = d.id.as_deref().unwrap();
    assert!(id.starts_with("ecs-svc/") && id.len() == 8 + 19, "{id}");
    assert_eq!(d.status.as_deref(), Some("PRIMARY"));
    assert_eq!((d.desired_count, d.running_count, d.pending_count, d.failed_tasks), (2, 0, 0, 0));
    assert_eq!(d.rollout_state.as_deref(), Some("IN_PROGRESS"));
    assert_eq!(d.rollout_state_reason.as_deref(), Some(format!("ECS deployment {id} in progress.").as_str()));
    assert_eq!(d.task_definition, s.task_definition);
    assert_eq!(d.created_at, s.created_at);
    // The scheduler's index names the service's key.
    let idx = cp.store().get("/_ecs/service/000000000000/us-east-1/c/svc").unwrap();
    assert_eq!(&idx.value[..], b"/000000000000/us-east-1/ecs/service/c/svc");
}

#[tokio::test]
async fn fargate_services_default_to_latest_and_daemons_to_0_100() {
    let (cp, ctx, _) = setup();
    fixture(&cp, &ctx).await;
    let s = create(
        &cp,
        &ctx,
        json!({"cluster": "c", "serviceName": "f", "taskDefinition": "vpc", "desiredCount": 1,
            "launchType": "FARGATE",
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}}),
    )
    .await
    .unwrap();
    assert_eq!(s.platform_version.as_deref(), Some("LATEST"));
    assert_eq!(s.platform_family.as_deref(), Some("Linux"));
    let d = &s.deployments.as_ref().unwrap()[0];
    assert_eq!((d.launch_type.as_deref(), d.platform_version.as_deref()), (Some("FARGATE"), Some("LATEST")));
    assert!(d.network_configuration.is_some());
    let s = create(
        &cp,
        &ctx,
        json!({"cluster": "c", "serviceName": "d", "taskDefinition": "web", "schedulingStrategy": "DAEMON"}),
    )
    .await
    .unwrap();
    let dc = s.deployment_configuration.unwrap();
    assert_eq!((dc.minimum_healthy_percent, dc.maximum_percent), (Some(0), Some(100)));
    assert_eq!(s.desired_count, 0);
}

/// Each request must fail with exactly this error type and message.
#[tokio::test]
async fn create_service_validation() {
    let (cp, ctx, _) = setup();
    fixture(&cp, &ctx).await;
    use ErrorKind::*;
    let vpc = |extra: Value| {
        let mut v = json!({"cluster": "c", "serviceName": "s", "taskDefinition": "vpc", "desiredCount": 1,
            "launchType": "FARGATE"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let with = |extra: Value| {
        let mut v = web("s", 1);
        for (k, x) in extra.as_object().unwrap() {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(k);
            } else {
                v[k] = x.clone();
            }
        }
        v
    };
    let cases: Vec<(Value, ErrorKind, &str)> = vec![
        (
            with(json!({"serviceName": "bad name"})),
            InvalidParameterException,
            "Invalid service name: up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed.",
        ),
        (with(json!({"cluster": "nope"})), ClusterNotFoundException, "Cluster not found."),
        (with(json!({"taskDefinition": "missing"})), ClientException, "TaskDefinition not found."),
        (
            with(json!({"taskDefinition": null})),
            InvalidParameterException,
            "A task definition must be specified to create a service.",
        ),
        (
            with(json!({"desiredCount": null})),
            InvalidParameterException,
            "desiredCount is required for services using the REPLICA scheduling strategy.",
        ),
        (
            with(json!({"schedulingStrategy": "DAEMON"})),
            InvalidParameterException,
            "The daemon scheduling strategy does not support a desired count for services. Remove the desired count value and try again",
        ),
        (
            with(json!({"schedulingStrategy": "DAEMON", "desiredCount": null,
            "placementStrategy": [{"type": "random"}]})),
            InvalidParameterException,
            "The daemon scheduling strategy does not support placement strategies.",
        ),
        (
            with(json!({"schedulingStrategy": "ODD"})),
            InvalidParameterException,
            "schedulingStrategy should be one of [REPLICA,DAEMON], but was 'ODD'.",
        ),
        (
            with(json!({"launchType": "FARGATE"})),
            ClientException,
            "Task definition does not support launch_type FARGATE.",
        ),
        (
            with(json!({"platformVersion": "1.4.0"})),
            InvalidParameterException,
            "The platform version must be null when specifying an EC2 launch type.",
        ),
        (
            vpc(json!({})),
            InvalidParameterException,
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        ),
        (
            with(json!({"networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s"]}}})),
            InvalidParameterException,
            "Network Configuration is not valid for the given networkMode of this task definition.",
        ),
        (
            with(json!({"launchType": "EC2", "capacityProviderStrategy": [{"capacityProvider": "FARGATE"}]})),
            InvalidParameterException,
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        ),
        (
            with(json!({"placementConstraints": [{"type": "nope"}]})),
            InvalidParameterException,
            "placement constraint type should be one of [distinctInstance,memberOf], but was 'nope'.",
        ),
        (
            with(json!({"placementStrategy": vec![json!({"type": "random"}); 6]})),
            InvalidParameterException,
            "placementStrategy can have at most 5 items.",
        ),
        (
            with(
                json!({"loadBalancers": [{"targetGroupArn": "tg", "containerName": "nope", "containerPort": 80}]}),
            ),
            InvalidParameterException,
            "The container nope does not exist in the task definition.",
        ),
        (
            with(
                json!({"loadBalancers": [{"targetGroupArn": "tg", "containerName": "web", "containerPort": 81}]}),
            ),
            InvalidParameterException,
            "The container web did not have a container port 81 defined.",
        ),
        (
            with(json!({"loadBalancers": [{"containerName": "web", "containerPort": 80}]})),
            InvalidParameterException,
            "Either a targetGroupArn or a loadBalancerName must be specified for a load balancer.",
        ),
        (
            with(json!({"role": "ecsServiceRole"})),
            InvalidParameterException,
            "IAM roles are only valid for services configured to use load balancers.",
        ),
        (
            with(json!({"loadBalancers": [{
                "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/web/0123456789abcdef",
                "loadBalancerName": "web", "containerName": "web", "containerPort": 80}]})),
            InvalidParameterException,
            "loadBalancerName and targetGroupArn cannot both be specified. You must specify either a loadBalancerName or a targetGroupArn.",
        ),
        (
            with(json!({"propagateTags": "ALL"})),
            InvalidParameterException,
            "propagateTags should be one of [TASK_DEFINITION,SERVICE,NONE], but was 'ALL'.",
        ),
        (
            with(json!({"healthCheckGracePeriodSeconds": -1})),
            InvalidParameterException,
            "healthCheckGracePeriodSeconds must be between 0 and 2147483647, but was -1.",
        ),
        (
            with(json!({"deploymentController": {"type": "CODE_DEPLOY"}})),
            UnsupportedFeatureException,
            "The CODE_DEPLOY deployment controller is not supported by this version of Gantry.",
        ),
        (
            with(json!({"deploymentConfiguration": {"minimumHealthyPercent": 101}})),
            InvalidParameterException,
            "deploymentConfiguration.minimumHealthyPercent must be between 0 and 100, but was 101.",
        ),
        (
            with(json!({"deploymentConfiguration": {"maximumPercent": 50}})),
            InvalidParameterException,
            "deploymentConfiguration.maximumPercent must be between 100 and 2000, but was 50.",
        ),
        (
            with(json!({"tags": [{"key": "aws:x", "value": "v"}]})),
            InvalidParameterException,
            "Tag key 'aws:x' uses the reserved prefix 'aws:'.",
        ),
    ];
    for (body, kind, message) in cases {
        let e = create(&cp, &ctx, body.clone()).await.expect_err(&body.to_string());
        assert_eq!((e.kind, e.message.as_str()), (kind, message), "{body}");
    }
    let listed = cp.list_services(&ctx, req(json!({"cluster": "c"}))).unwrap();
    assert!(listed.service_arns.unwrap().is_empty(), "no failed request left a service behind");
}

#[tokio::test]
async fn create_is_idempotent_only_for_the_same_request_and_refuses_draining() {
    let (cp, ctx, _) = setup();
    fixture(&cp, &ctx).await;
    let mut body = web("svc", 0);
    body["clientToken"] = json!("tok");
    let a = create(&cp, &ctx, body.clone()).await.unwrap();
    let b = create(&cp, &ctx, body.clone()).await.unwrap();
    assert_eq!(a.deployments, b.deployments, "the same request returns the same service");
    let e = create(&cp, &ctx, web("svc", 3)).await.unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::InvalidParameterException, "Creation of service was not idempotent.")
    );
    cp.delete_service(&ctx, req(json!({"cluster": "c", "service": "svc"}))).await.unwrap();
    let e = create(&cp, &ctx, web("svc", 1)).await.unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::InvalidParameterException, "Unable to Start a service that is still Draining.")
    );
    // Once the scheduler has made it INACTIVE, the name can be used again.
    let key = "/000000000000/us-east-1/ecs/service/c/svc";
    let kv = cp.store().get(key).unwrap();
    let mut rec: serde_json::Value = serde_json::from_slice(&gantry_ecs::unpack(&kv.value).unwrap()).unwrap();
    rec["service"]["status"] = json!("INACTIVE");
    cp.store()
        .txn(gantry_store::Txn::new().put(key, gantry_ecs::pack(serde_json::to_vec(&rec).unwrap())))
        .await
        .unwrap();
    let c = create(&cp, &ctx, web("svc", 1)).await.unwrap();
    assert_eq!(c.status.as_deref(), Some("ACTIVE"));
    assert_ne!(c.deployments.unwrap()[0].id, a.deployments.unwrap()[0].id);
}

#[tokio::test]
async fn update_makes_a_deployment_only_when_what_runs_changes() {
    let (cp, ctx, clock) = setup();
    fixture(&cp, &ctx).await;
    let s = create(&cp, &ctx, web("svc", 1)).await.unwrap();
    let first = s.deployments.unwrap()[0].clone();
    clock.advance_ms(5_000);
    // desiredCount only: the primary follows, no new deployment.
    let u = cp
        .update_service(&ctx, req(json!({"cluster": "c", "service": "svc", "desiredCount": 4})))
        .await
        .unwrap();
    let u = u.service.unwrap();
    assert_eq!(u.desired_count, 4);
    let deps = u.deployments.unwrap();
    assert_eq!(deps.len(), 1);
    assert_eq!((deps[0].id.clone(), deps[0].desired_count), (first.id.clone(), 4));
    assert_eq!(deps[0].updated_at, Some(first.updated_at.unwrap() + 5.0));
    // A new task definition revision: a new PRIMARY in front, the old one ACTIVE.
    cp.register_task_definition(
        &ctx,
        req(json!({"family": "web", "containerDefinitions": [
            {"name": "web", "image": "img2", "memory": 128, "portMappings": [{"containerPort": 80}]}]})),
    )
    .await
    .unwrap();
    let u = cp
        .update_service(&ctx, req(json!({"cluster": "c", "service": "svc", "taskDefinition": "web"})))
        .await;
    let u = u.unwrap().service.unwrap();
    let deps = u.deployments.unwrap();
    assert_eq!(deps.len(), 2);
    assert_eq!(deps[0].status.as_deref(), Some("PRIMARY"));
    assert_eq!(deps[0].task_definition.as_deref(), Some(format!("{ARN}:task-definition/web:2").as_str()));
    assert_eq!(deps[0].desired_count, 4);
    assert_ne!(deps[0].id, first.id);
    assert_eq!((deps[1].id.clone(), deps[1].status.as_deref()), (first.id.clone(), Some("ACTIVE")));
    assert_eq!(deps[1].rollout_state.as_deref(), Some("IN_PROGRESS"), "left as the scheduler set it");
    assert_eq!(u.task_definition, deps[0].task_definition);
    // The same task definition again changes nothing; forceNewDeployment always deploys.
    let u =
        cp.update_service(&ctx, req(json!({"cluster": "c", "service": "svc", "taskDefinition": "web:2"})));
    assert_eq!(u.await.unwrap().service.unwrap().deployments.unwrap().len(), 2);
    let u =
        cp.update_service(&ctx, req(json!({"cluster": "c", "service": "svc", "forceNewDeployment": true})));
    let deps = u.await.unwrap().service.unwrap().deployments.unwrap();
    assert_eq!(deps.len(), 3);
    assert_eq!(deps.iter().filter(|d| d.status.as_deref() == Some("PRIMARY")).count(), 1);
    // Placement changes deploy too.
    let u = cp.update_service(
        &ctx,
        req(json!({"cluster": "c", "service": "svc", "placementStrategy": [{"type": "binpack", "field": "memory"}]})),
    );
    assert_eq!(u.await.unwrap().service.unwrap().deployments.unwrap().len(), 4);
}

#[tokio::test]
async fn update_errors() {
    let (cp, ctx, _) = setup();
    fixture(&cp, &ctx).await;
    create(&cp, &ctx, web("svc", 0)).await.unwrap();
    let cases: Vec<(Value, ErrorKind, &str)> = vec![
        (
            json!({"cluster": "c", "service": "nope"}),
            ErrorKind::ServiceNotFoundException,
            "Service not found.",
        ),
        (
            json!({"cluster": "x", "service": "svc"}),
            ErrorKind::ClusterNotFoundException,
            "Cluster not found.",
        ),
        (
            json!({"cluster": "c", "service": "svc", "taskDefinition": "vpc"}),
            ErrorKind::InvalidParameterException,
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        ),
        (
            json!({"cluster": "c", "service": "svc", "desiredCount": -1}),
            ErrorKind::InvalidParameterException,
            "desiredCount must be at least 0, but was -1.",
        ),
    ];
    for (body, kind, message) in cases {
        let e = cp.update_service(&ctx, req(body.clone())).await.expect_err(&body.to_string());
        assert_eq!((e.kind, e.message.as_str()), (kind, message), "{body}");
    }
    cp.delete_service(&ctx, req(json!({"cluster": "c", "service": "svc"}))).await.unwrap();
    let e = cp.update_service(&ctx, req(json!({"cluster": "c", "service": "svc", "desiredCount": 1})));
    let e = e.await.unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::ServiceNotActiveException, "Service was not ACTIVE.")
    );
}

#[tokio::test]
async fn delete_drains_and_needs_force_above_zero() {
    let (cp, ctx, _) = setup();
    fixture(&cp, &ctx).await;
    create(&cp, &ctx, web("svc", 2)).await.unwrap();
    let e = cp.delete_service(&ctx, req(json!({"cluster": "c", "service": "svc"}))).await.unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::InvalidParameterException, "The service cannot be stopped while it is scaled above 0.")
    );
    let arn = format!("{ARN}:service/c/svc");
    let d =
        cp.delete_service(&ctx, req(json!({"cluster": "c", "service": arn, "force": true}))).await.unwrap();
    let s = d.service.unwrap();
    assert_eq!((s.status.as_deref(), s.desired_count), (Some("DRAINING"), 0));
    assert_eq!(s.deployments.unwrap()[0].desired_count, 0);
    // Still listed and described while draining; a second delete returns it as it is.
    let l = cp.list_services(&ctx, req(json!({"cluster": "c"}))).unwrap();
    assert_eq!(l.service_arns.unwrap(), vec![arn.clone()]);
    let again = cp.delete_service(&ctx, req(json!({"cluster": "c", "service": "svc"}))).await.unwrap();
    assert_eq!(again.service.unwrap().status.as_deref(), Some("DRAINING"));
    let e = cp.delete_service(&ctx, req(json!({"cluster": "c", "service": "nope"}))).await.unwrap_err();
    assert_eq!((e.kind, e.message.as_str()), (ErrorKind::ServiceNotFoundException, "Service not found."));
    // The cluster cannot go while a service drains.
    let e = cp.delete_cluster(&ctx, req(json!({"cluster": "c"}))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClusterContainsServicesException);
}

#[tokio::test]
async fn describe_reports_missing_and_tags_on_request() {
    let (cp, ctx, _) = setup();
    fixture(&cp, &ctx).await;
    let mut body = web("svc", 0);
    body["tags"] = json!([{"key": "team", "value": "a"}]);
    create(&cp, &ctx, body).await.unwrap();
    let r = cp
        .describe_services(
            &ctx,
            req(json!({"cluster": "c", "services": ["svc", "ghost", format!("{ARN}:service/other/svc")]})),
        )
        .unwrap();
    let services = r.services.unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].tags, None);
    let failures = r.failures.unwrap();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].arn.as_deref(), Some(format!("{ARN}:service/c/ghost").as_str()));
    assert_eq!(failures[0].reason.as_deref(), Some("MISSING"));
    let r =
        cp.describe_services(&ctx, req(json!({"cluster": "c", "services": ["svc"], "include": ["TAGS"]})));
    let tags = r.unwrap().services.unwrap()[0].tags.clone().unwrap();
    assert_eq!(tags[0].key.as_deref(), Some("team"));
    let e = cp.describe_services(&ctx, req(json!({"cluster": "c", "services": vec!["a"; 11]}))).unwrap_err();
    assert_eq!(e.message, "services can have at most 10 items.");
    let e = cp.describe_services(&ctx, req(json!({"cluster": "c", "services": []}))).unwrap_err();
    assert_eq!(e.message, "Services cannot be empty.");
    // Tags through the tagging API, by the service ARN.
    let arn = format!("{ARN}:service/c/svc");
    cp.tag_resource(&ctx, req(json!({"resourceArn": arn, "tags": [{"key": "env", "value": "prod"}]})))
        .await
        .unwrap();
    cp.untag_resource(&ctx, req(json!({"resourceArn": arn, "tagKeys": ["team"]}))).await.unwrap();
    let t = cp.list_tags_for_resource(&ctx, req(json!({"resourceArn": arn}))).unwrap().tags.unwrap();
    assert_eq!(t, vec![Tag { key: Some("env".into()), value: Some("prod".into()) }]);
    let e = cp.list_tags_for_resource(&ctx, req(json!({"resourceArn": format!("{ARN}:service/c/nope")})));
    assert_eq!(e.unwrap_err().kind, ErrorKind::ResourceNotFoundException);
}

#[tokio::test]
async fn list_pages_and_filters() {
    let (cp, ctx, _) = setup();
    fixture(&cp, &ctx).await;
    for i in 0..12 {
        create(&cp, &ctx, web(&format!("s{i:02}"), 0)).await.unwrap();
    }
    create(
        &cp,
        &ctx,
        json!({"cluster": "c", "serviceName": "daemon", "taskDefinition": "web",
        "schedulingStrategy": "DAEMON"}),
    )
    .await
    .unwrap();
    create(
        &cp,
        &ctx,
        json!({"cluster": "c", "serviceName": "far", "taskDefinition": "vpc", "desiredCount": 0,
        "launchType": "FARGATE", "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s"]}}}),
    )
    .await
    .unwrap();
    let first = cp.list_services(&ctx, req(json!({"cluster": "c"}))).unwrap();
    assert_eq!(first.service_arns.as_ref().unwrap().len(), 10, "ECS's default page is 10");
    let rest = cp
        .list_services(
            &ctx,
            req(json!({"cluster": "c", "nextToken": first.next_token.unwrap(), "maxResults": 100})),
        )
        .unwrap();
    assert_eq!(rest.service_arns.unwrap().len(), 4);
    assert_eq!(rest.next_token, None);
    let arns = |v: Value| cp.list_services(&ctx, req(v)).unwrap().service_arns.unwrap();
    assert_eq!(arns(json!({"cluster": "c", "launchType": "FARGATE"})), vec![format!("{ARN}:service/c/far")]);
    assert_eq!(
        arns(json!({"cluster": "c", "schedulingStrategy": "DAEMON"})),
        vec![format!("{ARN}:service/c/daemon")]
    );
    let e = cp.list_services(&ctx, req(json!({"cluster": "c", "maxResults": 101}))).unwrap_err();
    assert_eq!(e.message, "maxResults must be between 1 and 100, but was 101.");
    let e = cp.list_services(&ctx, req(json!({"cluster": "nope"}))).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClusterNotFoundException);
}

#[tokio::test]
async fn list_by_namespace_across_clusters() {
    let (cp, ctx, _) = setup();
    fixture(&cp, &ctx).await;
    cp.create_cluster(
        &ctx,
        req(json!({"clusterName": "d", "serviceConnectDefaults": {"namespace": "empty-ns"}})),
    )
    .await
    .unwrap();
    let sc = json!({"enabled": true, "namespace": "shop"});
    for (cluster, name) in [("c", "a"), ("d", "b")] {
        let mut body = web(name, 0);
        body["cluster"] = json!(cluster);
        body["serviceConnectConfiguration"] = sc.clone();
        if cluster == "d" {
            cp.register_task_definition(
                &ctx,
                req(json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "i", "memory": 64}]})),
            )
            .await
            .unwrap();
        }
        create(&cp, &ctx, body).await.unwrap();
    }
    create(&cp, &ctx, web("plain", 0)).await.unwrap();
    let r = cp.list_services_by_namespace(&ctx, req(json!({"namespace": "shop"}))).unwrap();
    assert_eq!(r.service_arns.unwrap(), vec![format!("{ARN}:service/c/a"), format!("{ARN}:service/d/b")]);
    let r = cp.list_services_by_namespace(&ctx, req(json!({"namespace": "shop", "maxResults": 1}))).unwrap();
    assert_eq!(r.service_arns.unwrap().len(), 1);
    let r2 = cp
        .list_services_by_namespace(
            &ctx,
            req(json!({"namespace": "shop", "nextToken": r.next_token.unwrap()})),
        )
        .unwrap();
    assert_eq!(r2.service_arns.unwrap(), vec![format!("{ARN}:service/d/b")]);
    let r = cp.list_services_by_namespace(&ctx, req(json!({"namespace": "empty-ns"}))).unwrap();
    assert!(r.service_arns.unwrap().is_empty());
    let e = cp.list_services_by_namespace(&ctx, req(json!({"namespace": "nowhere"}))).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::NamespaceNotFoundException, "The specified namespace wasn't found.")
    );
}

#[tokio::test]
async fn task_protection_for_service_tasks_only() {
    let (cp, ctx, clock) = setup();
    fixture(&cp, &ctx).await;
    let registration = req(json!({"cluster": "c", "totalResources": [
        {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 2048}]}));
    let (_ci, _guard) = connected_instance(&cp, &ctx, &clock, registration).await;
    // A task of a service (the scheduler's group) and a standalone one.
    let run = |group: &str| {
        cp.run_task(&ctx, req(json!({"cluster": "c", "taskDefinition": "web", "group": group})))
    };
    let svc_task = run("service:svc").await.unwrap().tasks.unwrap()[0].task_arn.clone().unwrap();
    let lone = run("family:web").await.unwrap().tasks.unwrap()[0].task_arn.clone().unwrap();
    let now = 1_700_000_000.0;
    let r = cp
        .update_task_protection(
            &ctx,
            req(json!({"cluster": "c", "tasks": [svc_task, lone, "ghost"], "protectionEnabled": true})),
        )
        .await
        .unwrap();
    let p = r.protected_tasks.unwrap();
    assert_eq!(p.len(), 1);
    assert!(p[0].protection_enabled);
    assert_eq!(p[0].expiration_date, Some(now + 120.0 * 60.0), "two hours by default");
    let f = r.failures.unwrap();
    assert_eq!(f[0].arn.as_deref(), Some(lone.as_str()));
    assert_eq!(f[0].reason.as_deref(), Some("TASK_NOT_VALID"));
    assert_eq!(f[1].arn.as_deref(), Some(format!("{ARN}:task/c/ghost").as_str()));
    assert_eq!(f[1].reason.as_deref(), Some("MISSING"));
    // A custom period; it lapses by itself.
    cp.update_task_protection(
        &ctx,
        req(json!({"cluster": "c", "tasks": [svc_task], "protectionEnabled": true, "expiresInMinutes": 1})),
    )
    .await
    .unwrap();
    let get = || cp.get_task_protection(&ctx, req(json!({"cluster": "c", "tasks": [svc_task]}))).unwrap();
    assert_eq!(get().protected_tasks.unwrap()[0].expiration_date, Some(now + 60.0));
    clock.advance_ms(60_001);
    let p = get().protected_tasks.unwrap();
    assert!(!p[0].protection_enabled);
    assert_eq!(p[0].expiration_date, None);
    // Turning it off clears it.
    cp.update_task_protection(
        &ctx,
        req(json!({"cluster": "c", "tasks": [svc_task], "protectionEnabled": true})),
    )
    .await
    .unwrap();
    let off = cp
        .update_task_protection(
            &ctx,
            req(json!({"cluster": "c", "tasks": [svc_task], "protectionEnabled": false})),
        )
        .await
        .unwrap();
    assert!(!off.protected_tasks.unwrap()[0].protection_enabled);
    assert!(!get().protected_tasks.unwrap()[0].protection_enabled);
    // Validation.
    for (body, message) in [
        (
            json!({"cluster": "c", "tasks": [svc_task], "protectionEnabled": true, "expiresInMinutes": 2881}),
            "expiresInMinutes must be between 1 and 2880, but was 2881.",
        ),
        (
            json!({"cluster": "c", "tasks": [svc_task], "protectionEnabled": true, "expiresInMinutes": 0}),
            "expiresInMinutes must be between 1 and 2880, but was 0.",
        ),
        (
            json!({"cluster": "c", "tasks": vec!["t"; 11], "protectionEnabled": true}),
            "tasks can have at most 10 items.",
        ),
        (json!({"cluster": "c", "tasks": [], "protectionEnabled": true}), "Tasks cannot be empty."),
    ] {
        let e = cp.update_task_protection(&ctx, req(body.clone())).await.expect_err(&body.to_string());
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::InvalidParameterException, message), "{body}");
    }
    let e = cp
        .update_task_protection(&ctx, req(json!({"cluster": "x", "tasks": ["t"], "protectionEnabled": true})))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClusterNotFoundException);
}

#[tokio::test]
async fn task_sets_belong_to_external_services_and_are_validated() {
    let (cp, ctx, _) = setup();
    fixture(&cp, &ctx).await;
    create(&cp, &ctx, web("rolling", 1)).await.unwrap();
    create(
        &cp,
        &ctx,
        json!({"cluster": "c", "serviceName": "ext", "desiredCount": 3, "deploymentController": {"type": "EXTERNAL"}}),
    )
    .await
    .unwrap();
    let set = |service: &str, scale: Value| {
        req::<CreateTaskSetRequest>(
            json!({"cluster": "c", "service": service, "taskDefinition": "web", "scale": scale}),
        )
    };
    let pct = |v: f64| json!({"value": v, "unit": "PERCENT"});
    let err = cp.create_task_set(&ctx, set("rolling", pct(100.0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidParameterException);
    assert!(err.message.contains("external deployment controllers"), "{}", err.message);
    let err = cp.create_task_set(&ctx, set("nope", pct(100.0))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::ServiceNotFoundException);
    let err = cp.create_task_set(&ctx, set("ext", pct(150.0))).await.unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::InvalidParameterException, "scale.value must be between 0 and 100, but was 150.")
    );

    // computedDesiredCount rounds up: 3 x 50 % = 2.
    let t = cp.create_task_set(&ctx, set("ext", pct(50.0))).await.unwrap().task_set.unwrap();
    assert_eq!(t.computed_desired_count, 2);
    assert_eq!(t.status.as_deref(), Some("ACTIVE"));
    assert_eq!(t.stability_status.as_deref(), Some("STABILIZING"));
    let id = t.id.clone().unwrap();
    assert!(id.starts_with("ecs-svc/") && id.len() == 27, "{id}");
    assert_eq!(t.task_set_arn.as_deref(), Some(format!("{ARN}:task-set/c/ext/{id}").as_str()));
    let t = cp
        .update_task_set(
            &ctx,
            req(json!({"cluster": "c", "service": "ext", "taskSet": id, "scale": pct(100.0)})),
        )
        .await
        .unwrap()
        .task_set
        .unwrap();
    assert_eq!(t.computed_desired_count, 3);

    let d = cp
        .describe_task_sets(
            &ctx,
            req(json!({"cluster": "c", "service": "ext", "taskSets": [id, "ecs-svc/0"]})),
        )
        .unwrap();
    assert_eq!(d.task_sets.unwrap().len(), 1);
    assert_eq!(d.failures.unwrap()[0].reason.as_deref(), Some("MISSING"));
    let err = cp
        .update_service_primary_task_set(
            &ctx,
            req(json!({"cluster": "c", "service": "ext", "primaryTaskSet": "ecs-svc/0"})),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::TaskSetNotFoundException);
    let p = cp
        .update_service_primary_task_set(
            &ctx,
            req(json!({"cluster": "c", "service": "ext", "primaryTaskSet": id})),
        )
        .await
        .unwrap()
        .task_set
        .unwrap();
    assert_eq!(p.status.as_deref(), Some("PRIMARY"));
    // A scaled set is deleted only with force; then it is DRAINING.
    let del = |force: bool| {
        req::<DeleteTaskSetRequest>(json!({"cluster": "c", "service": "ext", "taskSet": id, "force": force}))
    };
    assert_eq!(
        cp.delete_task_set(&ctx, del(false)).await.unwrap_err().kind,
        ErrorKind::InvalidParameterException
    );
    let t = cp.delete_task_set(&ctx, del(true)).await.unwrap().task_set.unwrap();
    assert_eq!(t.status.as_deref(), Some("DRAINING"));
}
