//! ECS Express services and Gateways through the control plane, with in-memory ingress and
//! scaling ports that record what ECS asked of ELBv2 and Application Auto Scaling.

use gantry_core::{ErrorKind, FixedClock, Scope, SeededIds, Timestamp};
use gantry_ecs::{ControlPlane, Ctx};
use gantry_model::*;
use gantry_ports::ingress::{
    Ingress, Route, RouteSpec, ScalingRefs, ServiceScaling, SharedAlb, TargetTracking,
};
use gantry_ports::lb::PortFuture;
use gantry_store::SqliteStore;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// ALBs by name (with their listener's port) and routes by target group ARN.
#[derive(Default)]
struct FakeIngress {
    albs: Mutex<BTreeMap<String, u16>>,
    routes: Mutex<BTreeMap<String, RouteSpec>>,
}

impl Ingress for FakeIngress {
    fn shared_alb<'a>(
        &'a self,
        _: &'a Scope,
        name: &'a str,
        port: u16,
    ) -> PortFuture<'a, Result<SharedAlb, String>> {
        Box::pin(async move {
            self.albs.lock().unwrap().insert(name.to_string(), port);
            Ok(SharedAlb {
                load_balancer_arn: format!(
                    "arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/{name}/1"
                ),
                dns_name: format!("{name}-1.us-east-1.elb.localhost"),
                listener_arn: format!(
                    "arn:aws:elasticloadbalancing:us-east-1:000000000000:listener/app/{name}/1/1"
                ),
                port,
            })
        })
    }
    fn add_route<'a>(
        &'a self,
        _: &'a Scope,
        listener: &'a str,
        spec: &'a RouteSpec,
    ) -> PortFuture<'a, Result<Route, String>> {
        Box::pin(async move {
            let tg = format!(
                "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/{}/1",
                spec.target_group_name
            );
            self.routes.lock().unwrap().insert(tg.clone(), spec.clone());
            Ok(Route {
                target_group_arn: tg,
                rule_arn: format!("{listener}/rule/{}", spec.target_group_name),
            })
        })
    }
    fn set_health_check_path<'a>(
        &'a self,
        _: &'a Scope,
        tg: &'a str,
        path: &'a str,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match self.routes.lock().unwrap().get_mut(tg) {
                Some(r) => {
                    r.health_check_path = path.to_string();
                    Ok(())
                }
                None => Err(format!("Target groups '{tg}' not found")),
            }
        })
    }
    fn remove_route<'a>(
        &'a self,
        _: &'a Scope,
        lb: &'a str,
        route: &'a Route,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut routes = self.routes.lock().unwrap();
            routes.remove(&route.target_group_arn);
            let name = lb.split('/').nth(2).unwrap_or_default().to_string();
            if routes.is_empty() {
                self.albs.lock().unwrap().remove(&name);
            }
            Ok(())
        })
    }
}

#[derive(Default)]
struct FakeScaling(Mutex<BTreeMap<String, TargetTracking>>);

impl ServiceScaling for FakeScaling {
    fn put_target_tracking<'a>(
        &'a self,
        _: &'a Scope,
        cluster: &'a str,
        service: &'a str,
        spec: &'a TargetTracking,
    ) -> PortFuture<'a, Result<ScalingRefs, String>> {
        Box::pin(async move {
            self.0.lock().unwrap().insert(format!("service/{cluster}/{service}"), spec.clone());
            Ok(ScalingRefs { scalable_target_arn: "st".into(), policy_arn: "p".into() })
        })
    }
    fn remove<'a>(
        &'a self,
        _: &'a Scope,
        cluster: &'a str,
        service: &'a str,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0.lock().unwrap().remove(&format!("service/{cluster}/{service}"));
            Ok(())
        })
    }
}

fn setup() -> (ControlPlane, Ctx, Arc<FakeIngress>, Arc<FakeScaling>) {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_700_000_000_000)));
    let cp = ControlPlane::new(store, clock, Arc::new(SeededIds::new(7)));
    let (ingress, scaling) = (Arc::new(FakeIngress::default()), Arc::new(FakeScaling::default()));
    cp.set_ingress(ingress.clone(), 8088);
    cp.set_service_scaling(scaling.clone());
    (cp, Ctx::root(Scope::new("000000000000", "us-east-1")), ingress, scaling)
}

fn req<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

const ROLE: &str = "arn:aws:iam::000000000000:role/infra";

#[tokio::test]
async fn an_express_service_provisions_its_route_and_scaling_and_removes_them() {
    let (cp, ctx, ingress, scaling) = setup();
    let out = cp
        .create_express_gateway_service(
            &ctx,
            req(json!({"infrastructureRoleArn": ROLE, "serviceName": "web",
                       "primaryContainer": {"image": "nginx"},
                       "scalingTarget": {"minTaskCount": 2, "maxTaskCount": 4,
                                         "autoScalingMetric": "AVERAGE_MEMORY"}})),
        )
        .await
        .unwrap()
        .service
        .unwrap();
    let arn = out.service_arn.clone().unwrap();
    let endpoint = out.active_configurations.unwrap()[0].ingress_paths.clone().unwrap()[0].endpoint.clone();
    assert!(
        endpoint.starts_with("http://web-") && endpoint.ends_with(".ecs.us-east-1.localhost:8088"),
        "{endpoint}"
    );
    assert_eq!(ingress.albs.lock().unwrap().get("ecs-express-gateway-alb"), Some(&8088));
    let route = ingress.routes.lock().unwrap().values().next().cloned().unwrap();
    assert_eq!((route.port, route.health_check_path.as_str()), (80, "/ping"));
    assert_eq!(endpoint, format!("http://{}:8088", route.host));
    let tracking = scaling.0.lock().unwrap().get("service/default/web").cloned().unwrap();
    assert_eq!((tracking.min_capacity, tracking.max_capacity), (2, 4));
    assert_eq!(tracking.predefined_metric, "ECSServiceAverageMemoryUtilization");
    // The default cluster was made; the service runs the minimum.
    let svc = cp.describe_services(&ctx, req(json!({"services": ["web"]}))).unwrap().services.unwrap();
    assert_eq!(svc[0].desired_count, 2);
    assert_eq!(svc[0].launch_type.as_deref(), Some("FARGATE"));

    // A second one with the same name is refused.
    let err = cp
        .create_express_gateway_service(
            &ctx,
            req(json!({"infrastructureRoleArn": ROLE, "serviceName": "web", "primaryContainer": {"image": "x"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidParameterException);

    // An update changes the health check through the port and keeps the rest.
    let up = cp
        .update_express_gateway_service(&ctx, req(json!({"serviceArn": arn, "healthCheckPath": "/health"})))
        .await
        .unwrap()
        .service
        .unwrap();
    let target = up.target_configuration.unwrap();
    assert_eq!(target.health_check_path.as_deref(), Some("/health"));
    assert_eq!(target.scaling_target.unwrap().max_task_count, Some(4));
    assert_eq!(ingress.routes.lock().unwrap().values().next().unwrap().health_check_path, "/health");

    let gone = cp.delete_express_gateway_service(&ctx, req(json!({"serviceArn": arn}))).await.unwrap();
    assert_eq!(gone.service.unwrap().status.unwrap().status_code.as_deref(), Some("DRAINING"));
    assert!(ingress.routes.lock().unwrap().is_empty());
    assert!(scaling.0.lock().unwrap().is_empty());
    let again = cp.delete_express_gateway_service(&ctx, req(json!({"serviceArn": arn}))).await.unwrap_err();
    assert_eq!(again.kind, ErrorKind::ServiceNotActiveException);
}

async fn gateway(cp: &ControlPlane, ctx: &Ctx, name: &str, port: u16) {
    cp.create_gateway(
        ctx,
        req(json!({"name": name, "infrastructureRoleArn": ROLE,
                   "configuration": {"hostSharedAlb": {"port": port}}})),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn gateways_associations_routes_and_their_errors() {
    let (cp, ctx, ingress, _) = setup();
    cp.create_cluster(&ctx, req(json!({"clusterName": "c"}))).await.unwrap();
    for i in 0..6 {
        gateway(&cp, &ctx, &format!("g{i}"), 9000 + i).await;
    }
    let err = cp.describe_gateway(&ctx, req(json!({"gateway": "nope"}))).unwrap_err();
    assert_eq!(err.kind, ErrorKind::GatewayNotFoundException);
    assert!(err.message.contains("'nope'"));
    let https = cp
        .create_gateway(
            &ctx,
            req(json!({"name": "tls", "infrastructureRoleArn": ROLE,
                       "configuration": {"hostSharedAlb": {"protocol": "HTTPS"}}})),
        )
        .await
        .unwrap_err();
    assert_eq!(https.kind, ErrorKind::UnsupportedFeatureException);

    // Pages of two, resumed by their tokens, list every gateway once.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = cp.list_gateways(&ctx, req(json!({"maxResults": 2, "nextToken": token}))).unwrap();
        names.extend(page.gateways.unwrap().into_iter().map(|g| g.name.unwrap()));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, ["g0", "g1", "g2", "g3", "g4", "g5"]);

    for i in 0..5 {
        cp.associate_gateway_with_cluster(&ctx, req(json!({"gateway": format!("g{i}"), "cluster": "c"})))
            .await
            .unwrap();
    }
    let sixth = cp
        .associate_gateway_with_cluster(&ctx, req(json!({"gateway": "g5", "cluster": "c"})))
        .await
        .unwrap_err();
    assert_eq!(sixth.kind, ErrorKind::InvalidParameterException);
    for i in 1..5 {
        cp.disassociate_gateway_from_cluster(&ctx, req(json!({"gateway": format!("g{i}"), "cluster": "c"})))
            .await
            .unwrap();
    }

    cp.register_task_definition(
        &ctx,
        req(json!({"family": "api", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
                   "cpu": "256", "memory": "512",
                   "containerDefinitions": [{"name": "app", "image": "x",
                       "portMappings": [{"containerPort": 8080, "name": "web"}]}]})),
    )
    .await
    .unwrap();
    let create = |ports: serde_json::Value| {
        req::<CreateServiceRequest>(json!({"cluster": "c", "serviceName": "api", "taskDefinition": "api",
            "desiredCount": 1, "launchType": "FARGATE",
            "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s"]}},
            "gatewayConnectors": ports}))
    };
    let bad = cp.create_service(&ctx, create(json!([{"portName": "nope"}]))).await.unwrap_err();
    assert!(bad.message.contains("'nope'"), "{}", bad.message);
    assert!(ingress.routes.lock().unwrap().is_empty());
    let svc = cp.create_service(&ctx, create(json!([{"portName": "web"}]))).await.unwrap().service.unwrap();
    let lbs = svc.load_balancers.unwrap();
    assert_eq!(lbs.len(), 1);
    assert_eq!((lbs[0].container_name.as_deref(), lbs[0].container_port), (Some("app"), Some(8080)));
    let routes = cp.list_gateway_routes(&ctx, req(json!({"gateway": "g0"}))).unwrap().gateway_routes.unwrap();
    assert_eq!(routes.len(), 1);
    let route = cp
        .describe_gateway_route(&ctx, req(json!({"gatewayRouteArn": routes[0].gateway_route_arn})))
        .unwrap()
        .gateway_route
        .unwrap();
    assert!(route.service_url.unwrap().ends_with(".gw.us-east-1.localhost:9000"));
    assert_eq!(ingress.albs.lock().unwrap().values().copied().collect::<Vec<_>>(), [9000]);

    // Disassociating waits for the route; deletion waits for protection and the association.
    let d = cp
        .disassociate_gateway_from_cluster(&ctx, req(json!({"gateway": "g0", "cluster": "c"})))
        .await
        .unwrap();
    assert_eq!(d.status.as_deref(), Some("DISASSOCIATING"));
    let protected = cp.delete_gateway(&ctx, req(json!({"gateway": "g0"}))).await.unwrap_err();
    assert!(protected.message.contains("deletion protection"));
    cp.update_gateway(&ctx, req(json!({"gateway": "g0", "deletionProtection": false}))).await.unwrap();
    let busy = cp.delete_gateway(&ctx, req(json!({"gateway": "g0"}))).await.unwrap_err();
    assert_eq!(busy.kind, ErrorKind::ClientException);
    cp.update_service(&ctx, req(json!({"cluster": "c", "service": "api", "gatewayConnectors": []})))
        .await
        .unwrap();
    assert!(ingress.routes.lock().unwrap().is_empty());
    let left = cp
        .list_gateway_cluster_associations(&ctx, req(json!({"gateway": "g0"})))
        .unwrap()
        .gateway_cluster_associations
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    let deleted = cp
        .delete_gateway(&ctx, req(json!({"gateway": "arn:aws:ecs:us-east-1:000000000000:gateway/g0"})))
        .await
        .unwrap();
    assert_eq!(deleted.status.as_deref(), Some("DELETED"));
}
