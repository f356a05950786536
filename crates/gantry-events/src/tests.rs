//! EventBridge's operations and the firing controller against a real in-memory store, on a fixed
//! clock, with a recording stand-in for ECS's RunTask and CloudWatch.

use super::*;
use crate::fire::Firing;
use gantry_core::{FixedClock, Timestamp};
use gantry_ports::lb::PortFuture;
use gantry_ports::{LaunchError, Launched, MetricDatum, MetricScope, MetricSink, TaskLauncher};
use gantry_runtime::Reconciler;
use gantry_store::SqliteStore;
use serde_json::{Value, json};
use std::sync::Mutex;

const ACCOUNT: &str = "123456789012";
const CLUSTER: &str = "arn:aws:ecs:us-west-2:123456789012:cluster/batch";

/// ECS as the controller sees it: records each RunTask request; a task definition named
/// `missing` does not exist; a client token seen before returns the same tasks.
#[derive(Default)]
struct FakeEcs {
    requests: Mutex<Vec<Value>>,
    tokens: Mutex<Vec<String>>,
}

impl TaskLauncher for FakeEcs {
    fn run_task<'a>(
        &'a self,
        _: &'a Scope,
        request: &'a [u8],
    ) -> PortFuture<'a, Result<Launched, LaunchError>> {
        Box::pin(async move {
            let r: Value = serde_json::from_slice(request).unwrap();
            if r["taskDefinition"] == "missing" {
                return Err(LaunchError {
                    code: "ClientException".into(),
                    message: "Unable to describe task definition.".into(),
                    server_fault: false,
                });
            }
            let token = r["clientToken"].as_str().unwrap().to_string();
            let mut tokens = self.tokens.lock().unwrap();
            let n = match tokens.iter().position(|t| *t == token) {
                Some(i) => i,
                None => {
                    tokens.push(token);
                    self.requests.lock().unwrap().push(r.clone());
                    tokens.len() - 1
                }
            };
            Ok(Launched {
                task_arns: vec![format!("arn:aws:ecs:us-west-2:{ACCOUNT}:task/batch/{n}")],
                failures: vec![],
            })
        })
    }
}

#[derive(Default)]
struct Sink(Mutex<Vec<(String, MetricDatum)>>);

impl MetricSink for Sink {
    fn put(&self, _: Vec<MetricDatum>) {}
    fn put_in(&self, scope: &MetricScope, data: Vec<MetricDatum>) {
        self.0.lock().unwrap().extend(data.into_iter().map(|d| (scope.account.clone(), d)));
    }
}

impl Sink {
    fn sum(&self, name: &str, rule: &str) -> f64 {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, d)| d.metric_name == name && d.dimensions == vec![("RuleName", rule.to_string())])
            .map(|(_, d)| match d.value {
                gantry_ports::MetricValue::Value(v) => v,
                _ => 0.0,
            })
            .sum()
    }
}

struct Fixture {
    events: Events,
    firing: Firing,
    clock: Arc<FixedClock>,
    ecs: Arc<FakeEcs>,
    sink: Arc<Sink>,
    scope: Scope,
}

/// 2026-03-02T10:00:00Z, a Monday.
const T0: i64 = 1_772_445_600_000;

fn fixture() -> Fixture {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(T0)));
    let ecs = Arc::new(FakeEcs::default());
    let sink = Arc::new(Sink::default());
    Fixture {
        events: Events::new(store.clone(), clock.clone()),
        firing: Firing::new(store, clock.clone(), ecs.clone(), sink.clone()),
        clock,
        ecs,
        sink,
        scope: Scope::new(ACCOUNT, "us-west-2"),
    }
}

impl Fixture {
    async fn call(&self, op: &str, input: Value) -> Result<Value, ServiceError> {
        let out = self.events.call(&self.scope, op, &serde_json::to_vec(&input).unwrap()).await?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    /// Moves the clock to `at` and runs a pass over every scheduled rule; the tasks started.
    async fn tick_to(&self, at: i64) -> usize {
        let now = self.clock.now().0;
        self.clock.advance_ms(at - now);
        let mut started = 0;
        for row in self.firing.list() {
            let (inv, _) = self.firing.pass(&row).await.unwrap();
            started += inv.iter().filter(|i| i.outcome.is_ok()).count();
        }
        started
    }

    async fn scheduled(&self, name: &str, expr: &str, td: &str) {
        self.call("PutRule", json!({"Name": name, "ScheduleExpression": expr})).await.unwrap();
        let out = self
            .call(
                "PutTargets",
                json!({"Rule": name, "Targets": [{"Id": "t1", "Arn": CLUSTER,
                    "RoleArn": format!("arn:aws:iam::{ACCOUNT}:role/ecsEventsRole"),
                    "EcsParameters": {"TaskDefinitionArn": td, "TaskCount": 2, "LaunchType": "FARGATE",
                        "Group": "nightly",
                        "NetworkConfiguration": {"awsvpcConfiguration": {"Subnets": ["subnet-1"], "AssignPublicIp": "ENABLED"}}},
                    "Input": "{\"containerOverrides\":[{\"name\":\"app\",\"command\":[\"echo\",\"hi\"]}]}"}]}),
            )
            .await
            .unwrap();
        assert_eq!(out["FailedEntryCount"], 0);
    }
}

#[tokio::test]
async fn rules_are_put_described_listed_and_deleted_as_eventbridge_does() {
    let f = fixture();
    let out =
        f.call("PutRule", json!({"Name": "every-5", "ScheduleExpression": "rate(5 minutes)"})).await.unwrap();
    assert_eq!(out["RuleArn"], format!("arn:aws:events:us-west-2:{ACCOUNT}:rule/every-5"));
    let d = f.call("DescribeRule", json!({"Name": "every-5"})).await.unwrap();
    assert_eq!(d["State"], "ENABLED");
    assert_eq!(d["EventBusName"], "default");
    assert_eq!(d["CreatedBy"], ACCOUNT);
    assert_eq!(d["ScheduleExpression"], "rate(5 minutes)");
    for name in ["a-1", "a-2", "b-1"] {
        f.call("PutRule", json!({"Name": name, "EventPattern": "{\"source\":[\"aws.ecs\"]}"})).await.unwrap();
    }
    let l = f.call("ListRules", json!({"NamePrefix": "a-", "Limit": 1})).await.unwrap();
    assert_eq!(l["Rules"][0]["Name"], "a-1");
    let tok = l["NextToken"].as_str().unwrap().to_string();
    let l = f.call("ListRules", json!({"NamePrefix": "a-", "Limit": 1, "NextToken": tok})).await.unwrap();
    assert_eq!(l["Rules"][0]["Name"], "a-2");
    assert!(l.get("NextToken").is_none());
    assert_eq!(f.call("ListRules", json!({})).await.unwrap()["Rules"].as_array().unwrap().len(), 4);

    // Errors as EventBridge words them.
    let e = f.call("DescribeRule", json!({"Name": "nope"})).await.unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("ResourceNotFoundException", "Rule nope does not exist on EventBus default.")
    );
    let e = f.call("PutRule", json!({"Name": "x"})).await.unwrap_err();
    assert_eq!(e.message, "Parameter(s) EventPattern or ScheduleExpression must be specified.");
    let e =
        f.call("PutRule", json!({"Name": "x", "ScheduleExpression": "rate(1 minutes)"})).await.unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("ValidationException", "Parameter ScheduleExpression is not valid.")
    );
    let e =
        f.call("PutRule", json!({"Name": "x", "ScheduleExpression": "cron(0 10 * * *)"})).await.unwrap_err();
    assert_eq!(e.code, "ValidationException");
    let e = f
        .call("PutRule", json!({"Name": "x", "EventPattern": "{\"source\":\"aws.ecs\"}"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "InvalidEventPatternException");
    let e = f
        .call("PutRule", json!({"Name": "bad name", "ScheduleExpression": "rate(1 day)"}))
        .await
        .unwrap_err();
    assert!(e.message.contains("'bad name'"), "{}", e.message);
    let e = f
        .call("PutRule", json!({"Name": "x", "ScheduleExpression": "rate(1 day)", "EventBusName": "other"}))
        .await
        .unwrap_err();
    assert_eq!(e.message, "Event bus other does not exist.");

    // A rule with targets is not deleted; without, it is (and deleting it again is no error).
    f.scheduled("every-5", "rate(5 minutes)", "web:1").await;
    let e = f.call("DeleteRule", json!({"Name": "every-5"})).await.unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("ValidationException", "Rule can't be deleted since it has targets.")
    );
    let t = f.call("ListTargetsByRule", json!({"Rule": "every-5"})).await.unwrap();
    assert_eq!(t["Targets"][0]["EcsParameters"]["TaskCount"], 2);
    let n = f.call("ListRuleNamesByTarget", json!({"TargetArn": CLUSTER})).await.unwrap();
    assert_eq!(n["RuleNames"], json!(["every-5"]));
    f.call("RemoveTargets", json!({"Rule": "every-5", "Ids": ["t1"]})).await.unwrap();
    f.call("DeleteRule", json!({"Name": "every-5"})).await.unwrap();
    f.call("DeleteRule", json!({"Name": "every-5"})).await.unwrap();
    assert!(f.call("DescribeRule", json!({"Name": "every-5"})).await.is_err());
}

#[tokio::test]
async fn put_targets_reports_the_targets_it_cannot_take_in_failed_entries() {
    let f = fixture();
    f.call("PutRule", json!({"Name": "r", "ScheduleExpression": "rate(1 hour)"})).await.unwrap();
    let out = f
        .call(
            "PutTargets",
            json!({"Rule": "r", "Targets": [
                {"Id": "ok", "Arn": CLUSTER, "EcsParameters": {"TaskDefinitionArn": "web"}},
                {"Id": "lambda", "Arn": "arn:aws:lambda:us-west-2:123456789012:function:f"},
                {"Id": "noparams", "Arn": CLUSTER}]}),
        )
        .await
        .unwrap();
    assert_eq!(out["FailedEntryCount"], 2);
    let ids: Vec<&str> =
        out["FailedEntries"].as_array().unwrap().iter().map(|e| e["TargetId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["lambda", "noparams"]);
    let t = f.call("ListTargetsByRule", json!({"Rule": "r"})).await.unwrap();
    assert_eq!(t["Targets"].as_array().unwrap().len(), 1);
    // TaskCount defaults to 1, as EventBridge shows it.
    assert_eq!(t["Targets"][0]["EcsParameters"]["TaskCount"], 1);
    // Six targets are one too many.
    let many: Vec<Value> = (0..6)
        .map(
            |i| json!({"Id": format!("t{i}"), "Arn": CLUSTER, "EcsParameters": {"TaskDefinitionArn": "web"}}),
        )
        .collect();
    let e = f.call("PutTargets", json!({"Rule": "r", "Targets": many})).await.unwrap_err();
    assert_eq!(e.code, "LimitExceededException");
    let e = f.call("PutTargets", json!({"Rule": "nope", "Targets": [{"Id": "a", "Arn": CLUSTER, "EcsParameters": {"TaskDefinitionArn": "web"}}]})).await.unwrap_err();
    assert_eq!(e.code, "ResourceNotFoundException");
}

#[tokio::test]
async fn tags_on_rules() {
    let f = fixture();
    let arn = f
        .call("PutRule", json!({"Name": "r", "ScheduleExpression": "rate(1 hour)", "Tags": [{"Key": "team", "Value": "a"}]}))
        .await
        .unwrap()["RuleArn"]
        .as_str()
        .unwrap()
        .to_string();
    f.call(
        "TagResource",
        json!({"ResourceARN": arn, "Tags": [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "b"}]}),
    )
    .await
    .unwrap();
    f.call("UntagResource", json!({"ResourceARN": arn, "TagKeys": ["env"]})).await.unwrap();
    let t = f.call("ListTagsForResource", json!({"ResourceARN": arn})).await.unwrap();
    assert_eq!(t["Tags"], json!([{"Key": "team", "Value": "b"}]));
    let e = f
        .call(
            "ListTagsForResource",
            json!({"ResourceARN": format!("arn:aws:events:us-west-2:{ACCOUNT}:rule/gone")}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, "ResourceNotFoundException");
}

#[tokio::test]
async fn a_rate_rule_runs_its_task_every_period_from_its_creation() {
    let f = fixture();
    f.scheduled("every-minute", "rate(1 minute)", "arn:aws:ecs:us-west-2:123456789012:task-definition/job:3")
        .await;
    // The first pass settles the first firing one period after the rule was made.
    assert_eq!(f.tick_to(T0).await, 0);
    assert_eq!(f.tick_to(T0 + 59_999).await, 0);
    assert_eq!(f.tick_to(T0 + 60_000).await, 1);
    assert_eq!(f.tick_to(T0 + 90_000).await, 0);
    assert_eq!(f.tick_to(T0 + 120_500).await, 1);
    let reqs = f.ecs.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    let r = &reqs[0];
    assert_eq!(r["cluster"], CLUSTER);
    assert_eq!(r["taskDefinition"], "arn:aws:ecs:us-west-2:123456789012:task-definition/job:3");
    assert_eq!(r["count"], 2);
    assert_eq!(r["startedBy"], "events-rule/every-minute");
    assert_eq!(r["group"], "nightly");
    assert_eq!(r["launchType"], "FARGATE");
    assert_eq!(
        r["networkConfiguration"]["awsvpcConfiguration"],
        json!({"subnets": ["subnet-1"], "assignPublicIp": "ENABLED"})
    );
    assert_eq!(r["overrides"]["containerOverrides"][0]["command"], json!(["echo", "hi"]));
    assert_ne!(reqs[0]["clientToken"], reqs[1]["clientToken"]);
    // Missed firings are not made up: ten minutes without a pass fire once.
    assert_eq!(f.tick_to(T0 + 720_000).await, 1);
    assert_eq!(f.tick_to(T0 + 720_000).await, 0);
    assert_eq!(f.sink.sum("TriggeredRules", "every-minute"), 3.0);
    assert_eq!(f.sink.sum("Invocations", "every-minute"), 3.0);
    assert_eq!(f.sink.sum("FailedInvocations", "every-minute"), 0.0);
}

#[tokio::test]
async fn a_firing_whose_write_is_lost_runs_its_tasks_once() {
    let f = fixture();
    f.scheduled("r", "rate(1 minute)", "job").await;
    f.tick_to(T0).await;
    let key = keys::rule(&f.scope, DEFAULT_BUS, "r");
    let before = f.firing_store().get(&key).unwrap();
    assert_eq!(f.tick_to(T0 + 60_000).await, 1);
    // Put the record back as it was before the firing's write (as if that write never happened):
    // the next pass fires again with the same client token, and ECS starts nothing new.
    f.firing_store().txn(Txn::new().put(key, before.value.to_vec())).await.unwrap();
    assert_eq!(f.tick_to(T0 + 60_001).await, 1);
    assert_eq!(f.ecs.requests.lock().unwrap().len(), 1);
}

impl Fixture {
    fn firing_store(&self) -> Arc<dyn Store> {
        self.events.store.clone()
    }
}

#[tokio::test]
async fn a_cron_rule_fires_at_its_utc_minutes() {
    let f = fixture();
    // Weekdays at 10:15 UTC; T0 is Monday 10:00.
    f.scheduled("weekday", "cron(15 10 ? * MON-FRI *)", "job").await;
    assert_eq!(f.tick_to(T0).await, 0);
    assert_eq!(f.tick_to(T0 + 15 * 60_000).await, 1);
    // Friday 10:15, then not before Monday.
    let day = 86_400_000;
    assert_eq!(f.tick_to(T0 + 4 * day + 15 * 60_000).await, 1);
    assert_eq!(f.tick_to(T0 + 6 * day + 15 * 60_000).await, 0);
    assert_eq!(f.tick_to(T0 + 7 * day + 15 * 60_000).await, 1);
}

#[tokio::test]
async fn a_disabled_rule_does_not_fire_and_an_enabled_one_counts_again() {
    let f = fixture();
    f.scheduled("r", "rate(5 minutes)", "job").await;
    f.tick_to(T0).await;
    f.call("DisableRule", json!({"Name": "r"})).await.unwrap();
    assert!(f.firing.list().is_empty());
    assert_eq!(f.tick_to(T0 + 600_000).await, 0);
    assert_eq!(f.call("DescribeRule", json!({"Name": "r"})).await.unwrap()["State"], "DISABLED");
    f.call("EnableRule", json!({"Name": "r"})).await.unwrap();
    assert_eq!(f.tick_to(T0 + 600_000).await, 0);
    assert_eq!(f.tick_to(T0 + 899_999).await, 0);
    assert_eq!(f.tick_to(T0 + 900_000).await, 1);
    // A new schedule starts over from when it was set.
    f.call("PutRule", json!({"Name": "r", "ScheduleExpression": "rate(1 hour)"})).await.unwrap();
    assert_eq!(f.tick_to(T0 + 1_200_000).await, 0);
    assert_eq!(f.tick_to(T0 + 900_000 + 3_599_999).await, 0);
    assert_eq!(f.tick_to(T0 + 900_000 + 3_600_000).await, 1);
}

#[tokio::test]
async fn a_failing_target_is_counted_in_failed_invocations() {
    let f = fixture();
    f.scheduled("broken", "rate(1 minute)", "missing").await;
    f.tick_to(T0).await;
    let row = f.firing.list().pop().unwrap();
    f.clock.advance_ms(60_000);
    let (inv, due_in) = f.firing.pass(&row).await.unwrap();
    assert_eq!(inv[0].outcome, Err("ClientException: Unable to describe task definition.".to_string()));
    assert_eq!(due_in, Some(60_000));
    assert_eq!(f.sink.sum("Invocations", "broken"), 1.0);
    assert_eq!(f.sink.sum("FailedInvocations", "broken"), 1.0);
}

#[test]
fn started_by_keeps_the_36_characters_ecs_allows() {
    assert_eq!(fire::started_by("events-rule/", "nightly"), "events-rule/nightly");
    let long = "a-rule-name-that-is-longer-than-ecs-allows";
    assert_eq!(fire::started_by("events-rule/", long), "events-rule/a-rule-name-that-is-long");
}

/// Records what Logs would get.
#[derive(Default)]
struct Logged(Mutex<Vec<(String, String, String)>>);

impl gantry_ports::LogSink for Logged {
    fn put_events(
        &self,
        _account: &str,
        _region: &str,
        group: &str,
        stream: &str,
        events: Vec<(i64, String)>,
    ) -> Result<(), String> {
        let mut l = self.0.lock().unwrap();
        l.extend(events.into_iter().map(|(_, m)| (group.to_string(), stream.to_string(), m)));
        Ok(())
    }
}

#[tokio::test]
async fn an_event_matching_a_rule_runs_its_ecs_target_once_per_event() {
    let f = fixture();
    let logs = Arc::new(Logged::default());
    let store = f.events.store.clone();
    let bus = crate::bus::Delivery::new(
        store,
        f.clock.clone(),
        Arc::new(gantry_core::SeededIds::new(1)),
        f.ecs.clone(),
        logs.clone(),
        f.sink.clone(),
    );
    let pattern = json!({"source": ["aws.ecs"], "detail": {"stopCode": ["SpotInterruption"]}});
    f.call("PutRule", json!({"Name": "on-spot", "EventPattern": pattern.to_string()})).await.unwrap();
    f.call(
        "PutTargets",
        json!({"Rule": "on-spot", "Targets": [{"Id": "t", "Arn": CLUSTER,
            "EcsParameters": {"TaskDefinitionArn": "cleanup", "LaunchType": "FARGATE"}}]}),
    )
    .await
    .unwrap();
    let event = |code: &str| gantry_ports::BusEvent {
        source: "aws.ecs".into(),
        detail_type: "ECS Task State Change".into(),
        resources: vec![],
        detail: json!({"stopCode": code}).to_string(),
        time_ms: T0,
    };
    let out = bus.put(&f.scope, &event("SpotInterruption")).await.unwrap();
    assert_eq!(out, vec![("on-spot".to_string(), "t".to_string(), Ok(()))]);
    let reqs = f.ecs.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0]["taskDefinition"].as_str(), reqs[0]["startedBy"].as_str()),
        (Some("cleanup"), Some("events-rule/on-spot"))
    );
    assert!(logs.0.lock().unwrap().is_empty(), "no log group target");
    assert_eq!(f.sink.sum("MatchedEvents", "on-spot"), 1.0);
    assert_eq!(f.sink.sum("Invocations", "on-spot"), 1.0);
    // An event the pattern does not match runs nothing; another matching one runs again (its
    // own client token).
    assert!(bus.put(&f.scope, &event("UserInitiated")).await.unwrap().is_empty());
    bus.put(&f.scope, &event("SpotInterruption")).await.unwrap();
    assert_eq!(f.ecs.requests.lock().unwrap().len(), 2);
    // A disabled rule gets nothing.
    f.call("DisableRule", json!({"Name": "on-spot"})).await.unwrap();
    assert!(bus.put(&f.scope, &event("SpotInterruption")).await.unwrap().is_empty());
    assert_eq!(f.ecs.requests.lock().unwrap().len(), 2);
}

#[test]
fn a_rule_state_is_stored_as_eventbridge_names_it_and_an_unknown_one_fails_the_read() {
    for &state in RuleState::ALL {
        let rec = RuleRecord { name: "r".into(), state, ..Default::default() };
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["state"], state.as_str());
        assert_eq!(serde_json::from_value::<RuleRecord>(v).unwrap(), rec);
    }
    let mut v = serde_json::to_value(RuleRecord::default()).unwrap();
    v["state"] = json!("SOMETIMES");
    let e = serde_json::from_value::<RuleRecord>(v).unwrap_err().to_string();
    assert!(e.contains("SOMETIMES"), "{e}");
}
