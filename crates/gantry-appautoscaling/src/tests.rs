use super::*;
use gantry_core::{FixedClock, SeededIds, Timestamp};
use gantry_ports::AlarmView;
use gantry_ports::lb::PortFuture;
use gantry_store::SqliteStore;
use serde_json::{Value as J, json};
use std::sync::Mutex;

const T0: i64 = 1_700_000_000_000;

/// ECS as the port sees it: desired counts by `cluster/service`, and the events written.
#[derive(Default)]
struct FakeEcs {
    desired: Mutex<BTreeMap<String, i32>>,
    events: Mutex<Vec<String>>,
}

impl ServiceCapacity for FakeEcs {
    fn desired_count(&self, _: &Scope, cluster: &str, service: &str) -> Result<i32, String> {
        self.desired
            .lock()
            .unwrap()
            .get(&format!("{cluster}/{service}"))
            .copied()
            .ok_or_else(|| "Service not found.".into())
    }
    fn set_desired_count<'a>(
        &'a self,
        _: &'a Scope,
        cluster: &'a str,
        service: &'a str,
        count: i32,
        event: &'a str,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.desired.lock().unwrap().insert(format!("{cluster}/{service}"), count);
            self.events.lock().unwrap().push(event.to_string());
            Ok(())
        })
    }
}

/// CloudWatch's alarms as the port sees them: what was put, and a state and datapoints a test
/// sets.
#[derive(Default)]
struct FakeAlarms {
    alarms: Mutex<BTreeMap<String, J>>,
    views: Mutex<BTreeMap<String, AlarmView>>,
}

impl MetricAlarms for FakeAlarms {
    fn put_metric_alarm(&self, _: &str, _: &str, input: &[u8]) -> Result<(), String> {
        let v: J = serde_json::from_slice(input).map_err(|e| e.to_string())?;
        let name = v["AlarmName"].as_str().unwrap().to_string();
        self.alarms.lock().unwrap().insert(name, v);
        Ok(())
    }
    fn delete_alarms(&self, _: &str, _: &str, names: &[String]) -> Result<(), String> {
        let mut a = self.alarms.lock().unwrap();
        for n in names {
            a.remove(n);
        }
        Ok(())
    }
    fn alarm(&self, _: &str, _: &str, name: &str) -> Option<AlarmView> {
        if let Some(v) = self.views.lock().unwrap().get(name) {
            return Some(v.clone());
        }
        let a = self.alarms.lock().unwrap().get(name).cloned()?;
        Some(AlarmView {
            state: gantry_core::AlarmState::InsufficientData,
            threshold: a["Threshold"].as_f64().unwrap_or(0.0),
            comparison_operator: a["ComparisonOperator"].as_str().unwrap_or_default().into(),
            recent_datapoints: vec![],
        })
    }
}

struct Fixture {
    aas: Arc<AppAutoScaling>,
    ecs: Arc<FakeEcs>,
    alarms: Arc<FakeAlarms>,
    clock: Arc<FixedClock>,
    scope: Scope,
}

fn fixture_with(settings: Settings) -> Fixture {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(T0)));
    let ecs = Arc::new(FakeEcs::default());
    ecs.desired.lock().unwrap().insert("default/web".into(), 1);
    let alarms = Arc::new(FakeAlarms::default());
    let aas = Arc::new(AppAutoScaling::new(
        store,
        clock.clone(),
        Arc::new(SeededIds::new(7)),
        ecs.clone(),
        alarms.clone(),
        settings,
    ));
    Fixture { aas, ecs, alarms, clock, scope: Scope::new("123456789012", "us-east-1") }
}

fn fixture() -> Fixture {
    fixture_with(Settings::default())
}

impl Fixture {
    async fn call(&self, op: &str, input: J) -> Result<J, ServiceError> {
        let out = self.aas.call(&self.scope, op, &serde_json::to_vec(&input).unwrap()).await?;
        Ok(serde_json::from_slice(&out).unwrap())
    }
    async fn ok(&self, op: &str, input: J) -> J {
        self.call(op, input).await.unwrap_or_else(|e| panic!("{op}: {} {}", e.code, e.message))
    }
    async fn err(&self, op: &str, input: J) -> ServiceError {
        self.call(op, input).await.expect_err(op)
    }
    fn desired(&self) -> i32 {
        self.ecs.desired.lock().unwrap()["default/web"]
    }
    fn set_desired(&self, n: i32) {
        self.ecs.desired.lock().unwrap().insert("default/web".into(), n);
    }
    async fn register(&self, min: i32, max: i32) -> J {
        self.ok(
            "RegisterScalableTarget",
            json!({"ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "MinCapacity": min, "MaxCapacity": max}),
        )
        .await
    }
    async fn fire(&self, alarm: &str, policy_arn: &str, datapoints: Vec<f64>, threshold: f64) {
        self.alarms.views.lock().unwrap().insert(
            alarm.to_string(),
            AlarmView {
                state: gantry_core::AlarmState::Alarm,
                threshold,
                comparison_operator: "GreaterThanThreshold".into(),
                recent_datapoints: datapoints,
            },
        );
        let inv = Invocation {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            alarm_name: alarm.into(),
            policy_arn: policy_arn.into(),
            state: gantry_core::AlarmState::Alarm,
        };
        self.aas.invoke(&inv).await.unwrap();
    }
    async fn activities(&self) -> Vec<J> {
        let r = self
            .ok(
                "DescribeScalingActivities",
                json!({"ServiceNamespace": "ecs", "ResourceId": "service/default/web"}),
            )
            .await;
        r["ScalingActivities"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn targets_register_describe_and_deregister_as_aws() {
    let f = fixture();
    let r = f.register(1, 4).await;
    let arn = r["ScalableTargetARN"].as_str().unwrap().to_string();
    assert!(
        arn.starts_with("arn:aws:application-autoscaling:us-east-1:123456789012:scalable-target/"),
        "{arn}"
    );
    let d = f.ok("DescribeScalableTargets", json!({"ServiceNamespace": "ecs"})).await;
    let t = &d["ScalableTargets"][0];
    assert_eq!(t["MinCapacity"], 1);
    assert_eq!(t["MaxCapacity"], 4);
    assert_eq!(t["ScalableDimension"], DIMENSION);
    assert_eq!(t["SuspendedState"]["DynamicScalingInSuspended"], false);
    assert!(t["RoleARN"].as_str().unwrap().ends_with("AWSServiceRoleForApplicationAutoScaling_ECSService"));
    // Updating only the maximum keeps the minimum.
    f.ok("RegisterScalableTarget", json!({"ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "MaxCapacity": 6})).await;
    let d = f
        .ok(
            "DescribeScalableTargets",
            json!({"ServiceNamespace": "ecs", "ResourceIds": ["service/default/web"]}),
        )
        .await;
    assert_eq!(
        (d["ScalableTargets"][0]["MinCapacity"].clone(), d["ScalableTargets"][0]["MaxCapacity"].clone()),
        (json!(1), json!(6))
    );
    // Tags on the target's ARN.
    f.ok("TagResource", json!({"ResourceARN": arn, "Tags": {"team": "web"}})).await;
    let tags = f.ok("ListTagsForResource", json!({"ResourceARN": arn})).await;
    assert_eq!(tags, json!({"Tags": {"team": "web"}}));
    f.ok("UntagResource", json!({"ResourceARN": arn, "TagKeys": ["team"]})).await;
    assert_eq!(f.ok("ListTagsForResource", json!({"ResourceARN": arn})).await, json!({"Tags": {}}));
    f.ok("DeregisterScalableTarget", json!({"ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION})).await;
    let d = f.ok("DescribeScalableTargets", json!({"ServiceNamespace": "ecs"})).await;
    assert_eq!(d["ScalableTargets"], json!([]));
    let e = f.err("DeregisterScalableTarget", json!({"ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION})).await;
    assert_eq!(e.code, "ObjectNotFoundException");
    assert_eq!(
        e.message,
        "No scalable target registered for service namespace: ecs, resource ID: service/default/web, scalable dimension: ecs:service:DesiredCount"
    );
    let e = f.err("ListTagsForResource", json!({"ResourceARN": arn})).await;
    assert_eq!(e.code, "ResourceNotFoundException");
}

#[tokio::test]
async fn bad_input_gets_aws_errors() {
    let f = fixture();
    let e = f.err("RegisterScalableTarget", json!({"ServiceNamespace": "dynamodb", "ResourceId": "table/t", "ScalableDimension": "dynamodb:table:ReadCapacityUnits", "MinCapacity": 1, "MaxCapacity": 2})).await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("ValidationException", "Unsupported service namespace, resource type or scalable dimension")
    );
    let e = f
        .err(
            "RegisterScalableTarget",
            json!({"ServiceNamespace": "nope", "ResourceId": "service/a/b", "ScalableDimension": DIMENSION}),
        )
        .await;
    assert_eq!(e.code, "ValidationException");
    assert!(e.message.contains("Value 'nope' at 'serviceNamespace'"), "{}", e.message);
    let e = f.err("RegisterScalableTarget", json!({"ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "MinCapacity": 5, "MaxCapacity": 2})).await;
    assert_eq!(e.message, "Minimum capacity cannot be greater than maximum capacity");
    let e = f.err("RegisterScalableTarget", json!({"ServiceNamespace": "ecs", "ResourceId": "service/default/nope", "ScalableDimension": DIMENSION, "MinCapacity": 1, "MaxCapacity": 2})).await;
    assert_eq!(e.code, "ValidationException");
    let e = f.err("PutScalingPolicy", json!({"PolicyName": "p", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {"AdjustmentType": "ChangeInCapacity", "StepAdjustments": [{"ScalingAdjustment": 1, "MetricIntervalLowerBound": 0}]}})).await;
    assert_eq!(e.code, "ObjectNotFoundException");
    f.register(1, 4).await;
    let e = f.err("PutScalingPolicy", json!({"PolicyName": "p", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {"AdjustmentType": "ChangeInCapacity", "StepAdjustments": [{"ScalingAdjustment": 1, "MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 10}, {"ScalingAdjustment": 2, "MetricIntervalLowerBound": 5}]}})).await;
    assert_eq!(e.message, "Step adjustments must not overlap");
    let e = f.err("PutScalingPolicy", json!({"PolicyName": "p", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50, "PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget"}}})).await;
    assert_eq!(e.message, "ResourceLabel is required for the ALBRequestCountPerTarget metric type");
    let e = f.err("DeleteScalingPolicy", json!({"PolicyName": "x", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION})).await;
    assert_eq!(
        e.message,
        "No scaling policy found for service namespace: ecs, resource ID: service/default/web, scalable dimension: ecs:service:DesiredCount, policy name: x"
    );
    let e = f.err("PutScheduledAction", json!({"ScheduledActionName": "s", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "Schedule": "sometimes"})).await;
    assert_eq!(e.message, "Schedule expression sometimes is invalid.");
    let e = f.err("DescribeScalableTargets", json!({"ServiceNamespace": "ecs", "MaxResults": 51})).await;
    assert_eq!(e.code, "ValidationException");
}

async fn step_policy(f: &Fixture, config: J) -> String {
    let r = f
        .ok("PutScalingPolicy", json!({"PolicyName": "step-out", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "PolicyType": "StepScaling", "StepScalingPolicyConfiguration": config}))
        .await;
    assert!(r.get("Alarms").is_none());
    r["PolicyARN"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_step_policy_scales_by_its_steps_within_bounds_and_cooldown() {
    let f = fixture();
    f.register(1, 5).await;
    let arn = step_policy(
        &f,
        json!({"AdjustmentType": "ChangeInCapacity", "Cooldown": 60, "MetricAggregationType": "Average", "StepAdjustments": [
            {"MetricIntervalLowerBound": 0, "MetricIntervalUpperBound": 20, "ScalingAdjustment": 1},
            {"MetricIntervalLowerBound": 20, "ScalingAdjustment": 3}]}),
    )
    .await;
    assert!(arn.starts_with("arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:"), "{arn}");
    assert!(arn.ends_with(":resource/ecs/service/default/web:policyName/step-out"), "{arn}");
    assert_eq!(
        parse_policy_arn(&arn),
        Some(("us-east-1", "123456789012", "service/default/web", "step-out"))
    );
    assert!(Inbox::handles(&arn));
    assert!(!Inbox::handles(
        "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:1a2b:autoScalingGroupName/asg:policyName/out"
    ));
    // The described configuration is as given: no invented bounds.
    let d = f.ok("DescribeScalingPolicies", json!({"ServiceNamespace": "ecs"})).await;
    assert_eq!(
        d["ScalingPolicies"][0]["StepScalingPolicyConfiguration"]["StepAdjustments"][1],
        json!({"MetricIntervalLowerBound": 20, "ScalingAdjustment": 3})
    );
    // 10 above the threshold: the first step, +1.
    f.fire("cpu-high", &arn, vec![60.0, 60.0], 50.0).await;
    assert_eq!(f.desired(), 2);
    let a = f.activities().await;
    assert_eq!(a[0]["Description"], "Setting desired count to 2.");
    assert_eq!(a[0]["Cause"], "monitor alarm cpu-high in state ALARM triggered policy step-out");
    assert_eq!(
        a[0]["StatusMessage"],
        "Successfully set desired count to 2. Change successfully fulfilled by ecs."
    );
    assert_eq!(a[0]["StatusCode"], "Successful");
    assert!(f.ecs.events.lock().unwrap()[0].contains("by Application Auto Scaling"));
    // Within the cooldown the task the first scale-out added counts: the same step does nothing,
    // a larger one adds what it adds beyond it (1 + 3 = 4, not 2 + 3).
    f.clock.advance_ms(30_000);
    f.fire("cpu-high", &arn, vec![60.0], 50.0).await;
    assert_eq!(f.desired(), 2);
    f.fire("cpu-high", &arn, vec![90.0], 50.0).await;
    assert_eq!(f.desired(), 4);
    // After the cooldown: +3 from 4, within MaxCapacity 5.
    f.clock.advance_ms(120_000);
    f.fire("cpu-high", &arn, vec![90.0], 50.0).await;
    assert_eq!(f.desired(), 5, "held at MaxCapacity");
    assert_eq!(f.activities().await.len(), 3);
    // SetAlarmState without datapoints: the breach is zero, the first step.
    f.set_desired(1);
    f.clock.advance_ms(60_000);
    f.fire("manual", &arn, vec![], 50.0).await;
    assert_eq!(f.desired(), 2);
}

#[tokio::test]
async fn exact_and_percent_adjustments_and_suspension() {
    let f = fixture();
    f.register(1, 10).await;
    let exact = step_policy(&f, json!({"AdjustmentType": "ExactCapacity", "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 7}]})).await;
    f.fire("a", &exact, vec![51.0], 50.0).await;
    assert_eq!(f.desired(), 7);
    let pct = f
        .ok("PutScalingPolicy", json!({"PolicyName": "pct-in", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "PolicyType": "StepScaling", "StepScalingPolicyConfiguration": {"AdjustmentType": "PercentChangeInCapacity", "MinAdjustmentMagnitude": 2, "Cooldown": 0, "StepAdjustments": [{"MetricIntervalUpperBound": 0, "ScalingAdjustment": -10}]}}))
        .await["PolicyARN"]
        .as_str()
        .unwrap()
        .to_string();
    // -10 % of 7 is -0.7: one task, raised to the minimum magnitude 2.
    f.fire("b", &pct, vec![10.0], 50.0).await;
    assert_eq!(f.desired(), 5);
    // Scale-in suspended: nothing happens.
    f.ok("RegisterScalableTarget", json!({"ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "SuspendedState": {"DynamicScalingInSuspended": true}})).await;
    f.fire("b", &pct, vec![10.0], 50.0).await;
    assert_eq!(f.desired(), 5);
}

#[tokio::test]
async fn target_tracking_makes_aws_alarms_and_deletes_them_with_the_policy() {
    let f = fixture();
    f.register(1, 4).await;
    let r = f
        .ok("PutScalingPolicy", json!({"PolicyName": "cpu50", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}, "ScaleOutCooldown": 60, "ScaleInCooldown": 120}}))
        .await;
    let alarms = r["Alarms"].as_array().unwrap();
    assert_eq!(alarms.len(), 2);
    let high = alarms[0]["AlarmName"].as_str().unwrap().to_string();
    let low = alarms[1]["AlarmName"].as_str().unwrap().to_string();
    assert!(high.starts_with("TargetTracking-service/default/web-AlarmHigh-"), "{high}");
    assert!(low.starts_with("TargetTracking-service/default/web-AlarmLow-"), "{low}");
    let put = f.alarms.alarms.lock().unwrap().clone();
    let h = &put[&high];
    assert_eq!(
        (h["Namespace"].clone(), h["MetricName"].clone(), h["Statistic"].clone()),
        (json!("AWS/ECS"), json!("CPUUtilization"), json!("Average"))
    );
    assert_eq!(
        (h["Period"].clone(), h["EvaluationPeriods"].clone(), h["DatapointsToAlarm"].clone()),
        (json!(60), json!(3), json!(3))
    );
    assert_eq!(
        (h["Threshold"].clone(), h["ComparisonOperator"].clone()),
        (json!(50.0), json!("GreaterThanThreshold"))
    );
    assert_eq!(
        h["Dimensions"],
        json!([{"Name": "ClusterName", "Value": "default"}, {"Name": "ServiceName", "Value": "web"}])
    );
    assert_eq!(h["AlarmActions"], json!([r["PolicyARN"]]));
    let l = &put[&low];
    assert_eq!(
        (l["EvaluationPeriods"].clone(), l["Threshold"].clone(), l["ComparisonOperator"].clone()),
        (json!(15), json!(45.0), json!("LessThanThreshold"))
    );
    // Updating keeps the alarms' names; DisableScaleIn drops AlarmLow.
    let r2 = f
        .ok("PutScalingPolicy", json!({"PolicyName": "cpu50", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 60.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}, "DisableScaleIn": true}}))
        .await;
    assert_eq!(r2["Alarms"].as_array().unwrap().len(), 1);
    assert_eq!(r2["Alarms"][0]["AlarmName"], json!(high));
    assert_eq!(r2["PolicyARN"], r["PolicyARN"]);
    assert!(!f.alarms.alarms.lock().unwrap().contains_key(&low));
    f.ok("DeleteScalingPolicy", json!({"PolicyName": "cpu50", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION})).await;
    assert!(f.alarms.alarms.lock().unwrap().is_empty());
}

#[tokio::test]
async fn alb_and_customized_metrics_and_high_resolution() {
    let f = fixture_with(Settings { high_resolution: true });
    f.register(1, 4).await;
    let r = f
        .ok("PutScalingPolicy", json!({"PolicyName": "alb", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 100.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget", "ResourceLabel": "app/web/50dc6c495c0c9188/targetgroup/web-tg/6d0ecf831eec9f09"}}}))
        .await;
    let name = r["Alarms"][0]["AlarmName"].as_str().unwrap().to_string();
    let a = f.alarms.alarms.lock().unwrap()[&name].clone();
    assert_eq!(a["MetricName"], "RequestCountPerTarget");
    assert_eq!(a["Statistic"], "Sum");
    assert_eq!(a["Period"], 10, "the high-resolution setting");
    assert_eq!(
        a["Dimensions"],
        json!([{"Name": "TargetGroup", "Value": "targetgroup/web-tg/6d0ecf831eec9f09"}, {"Name": "LoadBalancer", "Value": "app/web/50dc6c495c0c9188"}])
    );
    let r = f
        .ok("PutScalingPolicy", json!({"PolicyName": "math", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 10.0, "CustomizedMetricSpecification": {"Metrics": [
            {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "Backlog"}, "Stat": "Sum"}, "ReturnData": false},
            {"Id": "m2", "MetricStat": {"Metric": {"Namespace": "AWS/ECS", "MetricName": "RunningTaskCount"}, "Stat": "Average"}, "ReturnData": false},
            {"Id": "e1", "Expression": "m1 / m2", "Label": "per task", "ReturnData": true}]}}}))
        .await;
    let name = r["Alarms"][0]["AlarmName"].as_str().unwrap().to_string();
    let a = f.alarms.alarms.lock().unwrap()[&name].clone();
    assert_eq!(a["Metrics"][0]["MetricStat"]["Period"], 10);
    assert_eq!(a["Metrics"][2]["Expression"], "m1 / m2");
    assert!(a.get("MetricName").is_none());
    let e = f
        .err("PutScalingPolicy", json!({"PolicyName": "bad", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 10.0, "CustomizedMetricSpecification": {"Metrics": [{"Id": "a", "Expression": "1", "ReturnData": true}, {"Id": "b", "Expression": "2"}]}}}))
        .await;
    assert_eq!(e.message, "Exactly one metric data query must have ReturnData set to true");
}

/// A deterministic simulation on a fake clock: a service whose load needs 3.4 tasks' worth of
/// CPU at 50 %, evaluated minute by minute the way CloudWatch evaluates the policy's alarms (3
/// of 3 above the target, 15 of 15 below 90 % of it, re-invoking each minute in ALARM). The
/// policy must reach the capacity that holds the target and stay there: no oscillation.
#[tokio::test]
async fn target_tracking_converges_without_oscillating() {
    let f = fixture();
    f.register(1, 10).await;
    let r = f
        .ok("PutScalingPolicy", json!({"PolicyName": "cpu50", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}, "ScaleOutCooldown": 60, "ScaleInCooldown": 300}}))
        .await;
    let arn = r["PolicyARN"].as_str().unwrap().to_string();
    let (high, low) = (
        r["Alarms"][0]["AlarmName"].as_str().unwrap().to_string(),
        r["Alarms"][1]["AlarmName"].as_str().unwrap().to_string(),
    );
    // Load in "percent of one task": 170 % of one task's CPU, i.e. 3.4 tasks at 50 %.
    let load = |minute: i64| if minute < 60 { 170.0 } else { 30.0 };
    let mut history: Vec<f64> = vec![];
    let mut counts = vec![];
    for minute in 0..120 {
        f.clock.advance_ms(60_000);
        let n = f.desired();
        let cpu = if n == 0 { 100.0 } else { (load(minute) / n as f64).min(100.0) };
        history.insert(0, cpu);
        for (name, evals, threshold, above) in [(&high, 3, 50.0, true), (&low, 15, 45.0, false)] {
            let recent: Vec<f64> = history.iter().take(evals).copied().collect();
            let breach = recent.len() == evals
                && recent.iter().all(|v| if above { *v > threshold } else { *v < threshold });
            if breach {
                f.fire(name, &arn, recent, threshold).await;
            }
        }
        counts.push(f.desired());
    }
    // Under the high load: 4 tasks (42.5 % each), reached within a few minutes, then steady.
    let first4 = counts.iter().position(|&n| n == 4).expect("reaches 4");
    assert!(first4 <= 6, "{counts:?}");
    assert!(counts[first4..60].iter().all(|&n| n == 4), "oscillates under steady load: {counts:?}");
    // After the load drops to 30 %: one task (30 %) and no further changes.
    assert_eq!(*counts.last().unwrap(), 1, "{counts:?}");
    let changes = counts.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(changes <= 4, "too many changes: {counts:?}");
    // Never above the target's maximum, never below its minimum.
    assert!(counts.iter().all(|&n| (1..=10).contains(&n)));
}

#[tokio::test]
async fn scheduled_actions_fire_at_their_instant_in_their_time_zone() {
    let f = fixture();
    f.register(1, 4).await;
    // T0 is 2023-11-14T22:13:20Z; 17:20 at UTC-5 is 22:20 UTC, 400 s later.
    f.ok("PutScheduledAction", json!({"ScheduledActionName": "raise", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "Schedule": "at(2023-11-14T17:20:00)", "Timezone": "Etc/GMT+5", "ScalableTargetAction": {"MinCapacity": 3}})).await;
    let d = f.ok("DescribeScheduledActions", json!({"ServiceNamespace": "ecs"})).await;
    assert_eq!(d["ScheduledActions"][0]["ScalableTargetAction"], json!({"MinCapacity": 3}));
    assert_eq!(d["ScheduledActions"][0]["Timezone"], "Etc/GMT+5");
    assert!(d["ScheduledActions"][0]["ScheduledActionARN"].as_str().unwrap().contains(":scheduledAction:"));
    f.clock.advance_ms(399_000);
    let next = f.aas.fire_due(&f.scope, "service/default/web").await.unwrap();
    assert_eq!(next, Some(T0 + 400_000));
    assert_eq!(f.desired(), 1, "not yet");
    f.clock.advance_ms(1_000);
    let next = f.aas.fire_due(&f.scope, "service/default/web").await.unwrap();
    assert_eq!(next, None, "an at() action fires once");
    assert_eq!(f.desired(), 3, "desiredCount follows MinCapacity");
    let a = f.activities().await;
    assert_eq!(a[0]["Description"], "Setting desired count to 3.");
    assert_eq!(a[0]["Cause"], "scheduled action name raise was triggered");
    assert_eq!(a[1]["Description"], "Setting min capacity to 3");
    let t = f.ok("DescribeScalableTargets", json!({"ServiceNamespace": "ecs"})).await;
    assert_eq!(t["ScalableTargets"][0]["MinCapacity"], 3);
}

#[tokio::test]
async fn rate_actions_repeat_between_start_and_end_and_respect_suspension() {
    let f = fixture();
    f.register(1, 4).await;
    let start = (T0 + 60_000) as f64 / 1000.0;
    let end = (T0 + 200_000) as f64 / 1000.0;
    f.ok("PutScheduledAction", json!({"ScheduledActionName": "cap", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "Schedule": "rate(1 minute)", "StartTime": start, "EndTime": end, "ScalableTargetAction": {"MaxCapacity": 3}})).await;
    let mut fired_at = vec![];
    for s in 1..=300 {
        f.clock.advance_ms(1_000);
        let before = f.activities().await.len();
        f.aas.fire_due(&f.scope, "service/default/web").await.unwrap();
        if f.activities().await.len() > before {
            fired_at.push(s);
        }
    }
    assert_eq!(fired_at, vec![60, 120, 180]);
    f.ok("RegisterScalableTarget", json!({"ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "SuspendedState": {"ScheduledScalingSuspended": true}})).await;
    f.ok("PutScheduledAction", json!({"ScheduledActionName": "now", "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "Schedule": "rate(1 minute)", "ScalableTargetAction": {"MinCapacity": 2}})).await;
    f.clock.advance_ms(60_000);
    f.aas.fire_due(&f.scope, "service/default/web").await.unwrap();
    assert_eq!(f.desired(), 1, "scheduled scaling is suspended");
}

#[tokio::test]
async fn cron_actions_follow_their_time_zone_across_daylight_saving() {
    let f = fixture();
    f.register(1, 4).await;
    // 2024-03-09T00:00Z .. 2024-03-12T00:00Z: New York moves from EST (UTC-5) to EDT (UTC-4)
    // at 02:00 local on the 10th. T0 is 2023-11-14T22:13:20Z.
    let (start, end) = (1_709_942_400_000i64, 1_710_201_600_000i64);
    let put = |name: &str, schedule: &str, zone: &str| json!({"ScheduledActionName": name, "ServiceNamespace": "ecs", "ResourceId": "service/default/web", "ScalableDimension": DIMENSION, "Schedule": schedule, "Timezone": zone, "StartTime": start as f64 / 1000.0, "EndTime": end as f64 / 1000.0, "ScalableTargetAction": {"MinCapacity": 2}});
    let e = f.err("PutScheduledAction", put("x", "cron(0 9 * * ? *)", "Mars/Olympus")).await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("ValidationException", "Invalid timezone: Mars/Olympus")
    );
    let e = f.err("PutScheduledAction", put("x", "cron(0 9 * * *)", "UTC")).await;
    assert_eq!(e.message, "Schedule expression cron(0 9 * * *) is invalid.");
    f.ok("PutScheduledAction", put("morning", "cron(0 9 * * ? *)", "America/New_York")).await;
    let d = f.ok("DescribeScheduledActions", json!({"ServiceNamespace": "ecs"})).await;
    assert_eq!(d["ScheduledActions"][0]["Schedule"], "cron(0 9 * * ? *)");
    assert_eq!(d["ScheduledActions"][0]["Timezone"], "America/New_York");
    // Step the fake clock from firing to firing, as the controller's requeue does.
    let mut fired = vec![];
    let mut next = f.aas.fire_due(&f.scope, "service/default/web").await.unwrap();
    while let Some(at) = next {
        let now = f.clock.now().0;
        assert!(at > now, "the next firing is ahead of the clock");
        // A second early nothing fires.
        f.clock.advance_ms(at - now - 1_000);
        assert_eq!(f.aas.fire_due(&f.scope, "service/default/web").await.unwrap(), Some(at));
        f.clock.advance_ms(1_000);
        let before = f.activities().await.len();
        next = f.aas.fire_due(&f.scope, "service/default/web").await.unwrap();
        assert!(f.activities().await.len() > before, "fired at {at}");
        fired.push(at);
    }
    // 09:00 EST is 14:00 UTC; 09:00 EDT is 13:00 UTC; nothing after EndTime.
    let h = 3_600_000;
    assert_eq!(fired, vec![start + 14 * h, start + 24 * h + 13 * h, start + 48 * h + 13 * h]);
    assert_eq!(f.desired(), 2, "desiredCount follows MinCapacity");
}
