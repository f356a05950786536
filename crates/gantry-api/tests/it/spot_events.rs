//! The Fargate Spot interruption warning as an EventBridge event, on a fake clock: ECS puts
//! "ECS Task State Change" (stopCode SpotInterruption, the task still RUNNING) on the default
//! bus at the warning, a rule with ECS's documented pattern delivers it to its CloudWatch Logs
//! target, and the task stops only when the warning is over.

use crate::support::req;
use gantry_core::protocol::FargateRegistration;
use gantry_core::{FixedClock, Scope, SeededIds, Timestamp};
use gantry_ecs::ops::spot::InterruptSpotRequest;
use gantry_ecs::{ControlPlane, Ctx};
use gantry_ports::{LogSink, MetricDatum, MetricSink};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Logged(Mutex<Vec<(String, String, i64, String)>>);

impl LogSink for Logged {
    fn put_events(
        &self,
        _account: &str,
        _region: &str,
        group: &str,
        stream: &str,
        events: Vec<(i64, String)>,
    ) -> Result<(), String> {
        let mut l = self.0.lock().unwrap();
        for (t, m) in events {
            l.push((group.to_string(), stream.to_string(), t, m));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Recorded(Mutex<Vec<MetricDatum>>);

impl MetricSink for Recorded {
    fn put(&self, data: Vec<MetricDatum>) {
        self.0.lock().unwrap().extend(data);
    }
}

/// RunTask is not expected: the rule's only target is a log group.
struct NoLaunch;

impl gantry_ports::TaskLauncher for NoLaunch {
    fn run_task<'a>(
        &'a self,
        _scope: &'a Scope,
        _request: &'a [u8],
    ) -> gantry_ports::lb::PortFuture<'a, Result<gantry_ports::Launched, gantry_ports::LaunchError>> {
        Box::pin(async { panic!("no ECS target") })
    }
}

#[tokio::test]
async fn the_spot_warning_reaches_a_rule_before_the_task_stops() {
    let store: Arc<dyn gantry_store::Store> = Arc::new(gantry_store::SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_800_000_000_000)));
    let cp = ControlPlane::new(store.clone(), clock.clone(), Arc::new(SeededIds::new(3)));
    let logs = Arc::new(Logged::default());
    let metrics = Arc::new(Recorded::default());
    let delivery = gantry_events::bus::Delivery::new(
        store.clone(),
        clock.clone(),
        Arc::new(SeededIds::new(5)),
        Arc::new(NoLaunch),
        logs.clone(),
        metrics.clone(),
    );
    cp.set_event_bus(Arc::new(delivery));
    let scope = Scope::new("000000000000", "us-east-1");
    let ctx = Ctx::root(scope.clone());
    let events = gantry_events::Events::new(store.clone(), clock.clone());
    let call = |op: &'static str, v: Value| {
        let (events, scope) = (&events, scope.clone());
        async move { events.call(&scope, op, &serde_json::to_vec(&v).unwrap()).await.unwrap() }
    };
    let pattern = json!({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"],
        "detail": {"stopCode": ["SpotInterruption"]}});
    call("PutRule", json!({"Name": "spot-warning", "EventPattern": pattern.to_string()})).await;
    call(
        "PutTargets",
        json!({"Rule": "spot-warning", "Targets": [{"Id": "log",
        "Arn": "arn:aws:logs:us-east-1:000000000000:log-group:/aws/events/spot"}]}),
    )
    .await;
    // A rule for something else sees nothing.
    call(
        "PutRule",
        json!({"Name": "other", "EventPattern":
        json!({"source": ["aws.ecs"], "detail": {"stopCode": ["UserInitiated"]}}).to_string()}),
    )
    .await;
    call(
        "PutTargets",
        json!({"Rule": "other", "Targets": [{"Id": "log",
        "Arn": "arn:aws:logs:us-east-1:000000000000:log-group:/aws/events/other"}]}),
    )
    .await;

    cp.create_cluster(
        &ctx,
        req(json!({"clusterName": "f", "capacityProviders": ["FARGATE", "FARGATE_SPOT"]})),
    )
    .await
    .unwrap();
    cp.register_task_definition(
        &ctx,
        req(json!({"family": "fw", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
        "cpu": "256", "memory": "512", "containerDefinitions": [{"name": "web", "image": "img"}]})),
    )
    .await
    .unwrap();
    cp.register_fargate_node(FargateRegistration {
        node_id: "n1".into(),
        cpu: 4096,
        memory: 4096,
        availability_zone: None,
    })
    .await
    .unwrap();
    let (_poll, _) = cp.agents().begin_poll("fargate:n1", clock.clone());
    let t = cp
        .run_task(
            &ctx,
            req(json!({"cluster": "f", "taskDefinition": "fw",
                "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}})),
        )
        .await
        .unwrap()
        .tasks
        .unwrap()
        .remove(0);
    let arn = t.task_arn.unwrap();
    cp.submit_task_state_change(&ctx, req(json!({"cluster": "f", "task": arn, "status": "RUNNING"})))
        .await
        .unwrap();
    assert!(logs.0.lock().unwrap().is_empty(), "nothing interrupted yet");

    cp.interrupt_spot(
        &ctx,
        InterruptSpotRequest {
            cluster: Some("f".into()),
            tasks: Some(vec![arn.clone()]),
            warning_seconds: Some(120),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // The warning was delivered while the task still runs.
    let delivered = logs.0.lock().unwrap().clone();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    let (group, stream, time, message) = &delivered[0];
    assert_eq!(group, "/aws/events/spot");
    assert_eq!(*time, 1_800_000_000_000);
    let e: Value = serde_json::from_str(message).unwrap();
    assert_eq!(stream, e["id"].as_str().unwrap());
    assert_eq!(
        (e["source"].as_str(), e["detail-type"].as_str()),
        (Some("aws.ecs"), Some("ECS Task State Change"))
    );
    assert_eq!((e["account"].as_str(), e["region"].as_str()), (Some("000000000000"), Some("us-east-1")));
    assert_eq!(e["time"], "2027-01-15T08:00:00Z");
    assert_eq!(e["resources"], json!([arn]));
    let d = &e["detail"];
    assert_eq!(d["taskArn"].as_str(), Some(arn.as_str()));
    assert_eq!(d["stopCode"], "SpotInterruption");
    assert_eq!(d["stoppedReason"], "Your Spot Task was interrupted.");
    assert_eq!((d["desiredStatus"].as_str(), d["lastStatus"].as_str()), (Some("STOPPED"), Some("RUNNING")));
    assert_eq!(d["capacityProviderName"], "FARGATE_SPOT");
    let describe = || {
        cp.describe_tasks(&ctx, req(json!({"cluster": "f", "tasks": [arn]})))
            .unwrap()
            .tasks
            .unwrap()
            .remove(0)
    };
    assert_ne!(describe().last_status.as_deref(), Some("STOPPED"), "warned, not stopped");
    // EventBridge's metrics for the rule that matched.
    let m = metrics.0.lock().unwrap().clone();
    assert!(m.iter().any(|d| d.metric_name == "MatchedEvents"
        && d.dimensions == vec![("RuleName", "spot-warning".to_string())]));
    assert!(!m.iter().any(|d| d.dimensions == vec![("RuleName", "other".to_string())]));

    // The warning over, the capacity goes: the task stops.
    clock.advance_ms(120_000);
    cp.sweep_spot_reclaims().await.unwrap();
    assert_eq!(describe().last_status.as_deref(), Some("STOPPED"));
}
