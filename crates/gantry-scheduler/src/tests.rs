//! Scheduler's operations and its firing controller against a real in-memory store, on a fixed
//! clock, with a recording stand-in for ECS's RunTask and CloudWatch.

use super::*;
use crate::fire::Firing;
use gantry_core::civil::days_from_civil;
use gantry_core::{FixedClock, Timestamp};
use gantry_ports::lb::PortFuture;
use gantry_ports::{LaunchError, Launched, MetricDatum, MetricScope, MetricSink, TaskLauncher};
use gantry_runtime::Reconciler;
use gantry_store::SqliteStore;
use serde_json::{Value, json};
use std::sync::Mutex;

const ACCOUNT: &str = "123456789012";
const CLUSTER: &str = "arn:aws:ecs:us-west-2:123456789012:cluster/batch";

/// ECS: records requests; `missing` does not exist (a client error); `flaky` fails with a
/// server fault as many times as `flaky_failures` says.
#[derive(Default)]
struct FakeEcs {
    requests: Mutex<Vec<Value>>,
    flaky_failures: Mutex<u32>,
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
            if r["taskDefinition"] == "flaky" {
                let mut n = self.flaky_failures.lock().unwrap();
                if *n > 0 {
                    *n -= 1;
                    return Err(LaunchError {
                        code: "ServerException".into(),
                        message: "try again".into(),
                        server_fault: true,
                    });
                }
            }
            let mut reqs = self.requests.lock().unwrap();
            reqs.push(r);
            Ok(Launched {
                task_arns: vec![format!("arn:aws:ecs:us-west-2:{ACCOUNT}:task/batch/{}", reqs.len())],
                failures: vec![],
            })
        })
    }
}

#[derive(Default)]
struct Sink(Mutex<Vec<MetricDatum>>);

impl MetricSink for Sink {
    fn put(&self, _: Vec<MetricDatum>) {}
    fn put_in(&self, _: &MetricScope, data: Vec<MetricDatum>) {
        self.0.lock().unwrap().extend(data);
    }
}

impl Sink {
    fn count(&self, name: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|d| d.metric_name == name).count()
    }
}

struct Fixture {
    scheduler: Scheduler,
    firing: Firing,
    clock: Arc<FixedClock>,
    ecs: Arc<FakeEcs>,
    sink: Arc<Sink>,
    scope: Scope,
}

fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
    days_from_civil(y, mo, d) * 86_400_000 + (h * 60 + mi) * 60_000
}

fn fixture(now: i64) -> Fixture {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(now)));
    let ecs = Arc::new(FakeEcs::default());
    let sink = Arc::new(Sink::default());
    Fixture {
        scheduler: Scheduler::new(store.clone(), clock.clone()),
        firing: Firing::new(store, clock.clone(), ecs.clone(), sink.clone()),
        clock,
        ecs,
        sink,
        scope: Scope::new(ACCOUNT, "us-west-2"),
    }
}

fn target(td: &str) -> Value {
    json!({"Arn": CLUSTER, "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
           "EcsParameters": {"TaskDefinitionArn": td, "LaunchType": "EC2", "Group": "nightly"}})
}

impl Fixture {
    async fn call(&self, op: &str, input: Value) -> Result<Value, ServiceError> {
        let out = self.scheduler.call(&self.scope, op, &serde_json::to_vec(&input).unwrap()).await?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    async fn create(&self, name: &str, extra: Value) {
        let mut v = json!({"Name": name, "Target": target("job"), "FlexibleTimeWindow": {"Mode": "OFF"}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        self.call("CreateSchedule", v).await.unwrap();
    }

    /// Moves the clock to `t` and runs every schedule's pass: the tasks started.
    async fn tick_to(&self, t: i64) -> usize {
        let now = self.clock.now().0;
        self.clock.advance_ms(t - now);
        let mut n = 0;
        for row in self.firing.list() {
            n += self.firing.pass(&row).await.unwrap().invocations.iter().filter(|i| i.is_ok()).count();
        }
        n
    }

    fn fired_at(&self) -> usize {
        self.ecs.requests.lock().unwrap().len()
    }
}

const T0: i64 = 1_772_445_600_000; // 2026-03-02T10:00:00Z

#[tokio::test]
async fn schedules_and_groups_are_created_read_listed_and_deleted() {
    let f = fixture(T0);
    f.create("every-5", json!({"ScheduleExpression": "rate(5 minutes)"})).await;
    let s = f.call("GetSchedule", json!({"Name": "every-5"})).await.unwrap();
    assert_eq!(s["Arn"], format!("arn:aws:scheduler:us-west-2:{ACCOUNT}:schedule/default/every-5"));
    assert_eq!((s["State"].as_str(), s["GroupName"].as_str()), (Some("ENABLED"), Some("default")));
    assert_eq!(s["ScheduleExpressionTimezone"], "UTC");
    assert_eq!(
        s["Target"]["RetryPolicy"],
        json!({"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185})
    );
    let e = f.call("CreateSchedule", json!({"Name": "every-5", "ScheduleExpression": "rate(5 minutes)", "Target": target("job"), "FlexibleTimeWindow": {"Mode": "OFF"}})).await.unwrap_err();
    assert_eq!(e.code, "ConflictException");
    let e = f.call("CreateSchedule", json!({"Name": "x", "ScheduleExpression": "rate(5 minute)", "Target": target("job"), "FlexibleTimeWindow": {"Mode": "OFF"}})).await.unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("ValidationException", "Invalid Schedule Expression rate(5 minute).")
    );
    let e = f.call("CreateSchedule", json!({"Name": "x", "ScheduleExpression": "rate(5 minutes)", "ScheduleExpressionTimezone": "Mars/Olympus", "Target": target("job"), "FlexibleTimeWindow": {"Mode": "OFF"}})).await.unwrap_err();
    assert_eq!(e.code, "ValidationException");
    let e = f.call("CreateSchedule", json!({"Name": "x", "ScheduleExpression": "rate(5 minutes)", "Target": target("job"), "FlexibleTimeWindow": {"Mode": "FLEXIBLE"}})).await.unwrap_err();
    assert_eq!(e.code, "ValidationException");
    let e = f.call("CreateSchedule", json!({"Name": "x", "GroupName": "nope", "ScheduleExpression": "rate(5 minutes)", "Target": target("job"), "FlexibleTimeWindow": {"Mode": "OFF"}})).await.unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("ResourceNotFoundException", "Schedule group nope does not exist.")
    );

    let g = f
        .call("CreateScheduleGroup", json!({"Name": "batch", "Tags": [{"Key": "team", "Value": "a"}]}))
        .await
        .unwrap();
    let garn = g["ScheduleGroupArn"].as_str().unwrap().to_string();
    f.create("in-batch", json!({"GroupName": "batch", "ScheduleExpression": "cron(0 3 * * ? *)"})).await;
    let l = f.call("ListSchedules", json!({"GroupName": "batch"})).await.unwrap();
    assert_eq!(l["Schedules"][0]["Name"], "in-batch");
    assert_eq!(l["Schedules"][0]["Target"]["Arn"], CLUSTER);
    let l = f.call("ListSchedules", json!({"MaxResults": 1})).await.unwrap();
    let l2 = f.call("ListSchedules", json!({"MaxResults": 1, "NextToken": l["NextToken"]})).await.unwrap();
    assert_ne!(l["Schedules"][0]["Name"], l2["Schedules"][0]["Name"]);
    let groups = f.call("ListScheduleGroups", json!({})).await.unwrap();
    let names: Vec<&str> =
        groups["ScheduleGroups"].as_array().unwrap().iter().map(|g| g["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["batch", "default"]);
    f.call("TagResource", json!({"ResourceArn": garn, "Tags": [{"Key": "env", "Value": "prod"}]}))
        .await
        .unwrap();
    f.call("UntagResource", json!({"ResourceArn": garn, "TagKeys": ["team"]})).await.unwrap();
    assert_eq!(
        f.call("ListTagsForResource", json!({"ResourceArn": garn})).await.unwrap()["Tags"],
        json!([{"Key": "env", "Value": "prod"}])
    );
    // Deleting a group deletes its schedules.
    f.call("DeleteScheduleGroup", json!({"Name": "batch"})).await.unwrap();
    let e = f.call("GetSchedule", json!({"Name": "in-batch", "GroupName": "batch"})).await.unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("ResourceNotFoundException", "Schedule in-batch does not exist.")
    );
    f.call("DeleteSchedule", json!({"Name": "every-5"})).await.unwrap();
    assert!(f.call("DeleteSchedule", json!({"Name": "every-5"})).await.is_err());
    assert!(f.firing.list().is_empty());
}

#[tokio::test]
async fn a_rate_schedule_runs_its_task_with_chronos_started_by() {
    let f = fixture(T0);
    f.create("tick", json!({"ScheduleExpression": "rate(1 minute)"})).await;
    assert_eq!(f.tick_to(T0).await, 0);
    assert_eq!(f.tick_to(T0 + 59_999).await, 0);
    assert_eq!(f.tick_to(T0 + 60_000).await, 1);
    assert_eq!(f.tick_to(T0 + 120_000).await, 1);
    let r = f.ecs.requests.lock().unwrap()[0].clone();
    assert_eq!(r["startedBy"], "chronos-schedule/tick");
    assert_eq!(r["group"], "nightly");
    assert_eq!(r["count"], 1);
    assert_eq!(f.sink.count("InvocationAttemptCount"), 2);
    // Disabled, it does not fire.
    let mut s = f.call("GetSchedule", json!({"Name": "tick"})).await.unwrap();
    s["State"] = json!("DISABLED");
    for k in ["Arn", "CreationDate", "LastModificationDate"] {
        s.as_object_mut().unwrap().remove(k);
    }
    f.call("UpdateSchedule", s).await.unwrap();
    assert_eq!(f.tick_to(T0 + 600_000).await, 0);
}

#[tokio::test]
async fn a_cron_schedule_keeps_to_its_time_zone_across_daylight_saving() {
    // Europe/Berlin from the system's zone files: 09:00 local is 08:00 UTC in winter, 07:00 in
    // summer (the clocks went forward on 2026-03-29).
    let f = fixture(at(2026, 3, 27, 12, 0));
    f.create(
        "morning",
        json!({"ScheduleExpression": "cron(0 9 * * ? *)", "ScheduleExpressionTimezone": "Europe/Berlin"}),
    )
    .await;
    f.tick_to(at(2026, 3, 27, 12, 0)).await;
    assert_eq!(f.tick_to(at(2026, 3, 28, 7, 59)).await, 0);
    assert_eq!(f.tick_to(at(2026, 3, 28, 8, 0)).await, 1);
    assert_eq!(f.tick_to(at(2026, 3, 29, 6, 59)).await, 0);
    assert_eq!(f.tick_to(at(2026, 3, 29, 7, 0)).await, 1);
    // A time the change skips (02:30 on the 29th) fires when the gap ends.
    let g = fixture(at(2026, 3, 28, 12, 0));
    g.create(
        "gap",
        json!({"ScheduleExpression": "cron(30 2 * * ? *)", "ScheduleExpressionTimezone": "Europe/Berlin"}),
    )
    .await;
    g.tick_to(at(2026, 3, 28, 12, 0)).await;
    assert_eq!(g.tick_to(at(2026, 3, 29, 0, 59)).await, 0);
    assert_eq!(g.tick_to(at(2026, 3, 29, 1, 0)).await, 1);
}

#[tokio::test]
async fn an_at_schedule_runs_once_and_deletes_itself_when_asked() {
    let f = fixture(T0);
    f.create("once", json!({"ScheduleExpression": "at(2026-03-02T11:00:00)", "ScheduleExpressionTimezone": "Europe/Berlin", "ActionAfterCompletion": "DELETE"})).await;
    f.create("kept", json!({"ScheduleExpression": "at(2026-03-02T10:30:00)"})).await;
    f.tick_to(T0).await;
    // 11:00 in Berlin (UTC+1) is 10:00 UTC: not strictly after now, so it never fires.
    assert_eq!(f.tick_to(T0 + 1_800_000).await, 1);
    assert_eq!(f.tick_to(T0 + 7_200_000).await, 0);
    assert!(f.call("GetSchedule", json!({"Name": "kept"})).await.is_ok());
    let g = fixture(T0);
    g.create("once", json!({"ScheduleExpression": "at(2026-03-02T12:00:00)", "ScheduleExpressionTimezone": "Europe/Berlin", "ActionAfterCompletion": "DELETE"})).await;
    g.tick_to(T0).await;
    assert_eq!(g.tick_to(T0 + 3_600_000).await, 1);
    assert!(g.call("GetSchedule", json!({"Name": "once"})).await.is_err());
    assert_eq!(g.fired_at(), 1);
}

#[tokio::test]
async fn a_flexible_window_delays_each_firing_within_it_the_same_way_every_time() {
    let f = fixture(T0);
    f.create("flex", json!({"ScheduleExpression": "rate(1 hour)", "FlexibleTimeWindow": {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15}})).await;
    let row = f.firing.list().pop().unwrap();
    let due = f.firing.pass(&row).await.unwrap().due_in.unwrap();
    assert!((3_600_000..3_600_000 + 15 * 60_000).contains(&due), "{due}");
    // The same firing's delay on every pass (and every server).
    assert_eq!(f.firing.pass(&row).await.unwrap().due_in, Some(due));
    assert_eq!(f.tick_to(T0 + due - 1).await, 0);
    assert_eq!(f.tick_to(T0 + due).await, 1);
}

#[tokio::test]
async fn server_faults_are_retried_per_the_retry_policy_and_client_errors_dropped() {
    let f = fixture(T0);
    *f.ecs.flaky_failures.lock().unwrap() = 2;
    let mut t = target("flaky");
    t["RetryPolicy"] = json!({"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600});
    f.call("CreateSchedule", json!({"Name": "flaky", "ScheduleExpression": "rate(1 hour)", "Target": t, "FlexibleTimeWindow": {"Mode": "OFF"}})).await.unwrap();
    f.tick_to(T0).await;
    assert_eq!(f.tick_to(T0 + 3_600_000).await, 0);
    assert_eq!(f.tick_to(T0 + 3_601_000).await, 0);
    assert_eq!(f.tick_to(T0 + 3_603_000).await, 1);
    assert_eq!(f.sink.count("TargetErrorCount"), 2);
    assert_eq!(f.sink.count("InvocationAttemptCount"), 3);
    let g = fixture(T0);
    g.call("CreateSchedule", json!({"Name": "broken", "ScheduleExpression": "rate(1 minute)", "Target": target("missing"), "FlexibleTimeWindow": {"Mode": "OFF"}})).await.unwrap();
    g.tick_to(T0).await;
    assert_eq!(g.tick_to(T0 + 60_000).await, 0);
    assert_eq!(g.sink.count("TargetErrorCount"), 1);
    assert_eq!(g.sink.count("InvocationDroppedCount"), 1);
    // The next firing is the next minute's, not a retry.
    let row = g.firing.list().pop().unwrap();
    assert_eq!(g.firing.pass(&row).await.unwrap().due_in, Some(60_000));
}
