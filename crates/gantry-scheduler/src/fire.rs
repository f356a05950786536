//! The firing controller: invokes enabled schedules' targets when they are due.
//!
//! A pass over a schedule settles its next nominal firing (the expression's next time in the
//! schedule's time zone, within StartDate and EndDate; a rate counts from StartDate, or from when
//! the schedule was created or updated) and when to invoke it: the nominal time, plus, with a
//! `FLEXIBLE` window, a delay below `MaximumWindowInMinutes` drawn from a hash of the schedule and
//! the firing (so it is the same on every pass and every server). A due pass calls RunTask
//! through `gantry_ports::TaskLauncher` with `startedBy` `chronos-schedule/NAME`, the target's
//! group, and a client token made of the schedule, the firing and the attempt's request, so a
//! pass that lost its write invokes again without starting the tasks twice. ECS's own errors
//! (server faults) are retried per the target's RetryPolicy (MaximumRetryAttempts,
//! MaximumEventAgeInSeconds) with a doubling delay from 1 s to at most 60 s; any other failure,
//! or one past the policy, is dropped. A one-time `at()` schedule is deleted after its firing when
//! its ActionAfterCompletion is DELETE. `AWS/Scheduler` metrics go through `MetricSink`:
//! InvocationAttemptCount, TargetErrorCount and InvocationDroppedCount.

use crate::{ScheduleRecord, commit, keys, zone};
use gantry_core::schedule::{Schedule, Zone};
use gantry_core::{Clock, Scope, ServiceError, Timestamp};
use gantry_model::scheduler::Target;
use gantry_ports::{MetricDatum, MetricScope, MetricSink, MetricValue, TaskLauncher};
use gantry_runtime::records::{Before, TxnExt, load};
use gantry_runtime::{Action, Controller, Leadership, Metrics, Reconciler, Shutdown};
use gantry_store::{EventKind, Store, Txn};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

pub struct Firing {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    launcher: Arc<dyn TaskLauncher>,
    sink: Arc<dyn MetricSink>,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Each invocation made: the tasks started, or the error.
    pub invocations: Vec<Result<Vec<String>, String>>,
    /// How long until the schedule is due again (none: nothing more to do).
    pub due_in: Option<i64>,
    /// Whether the schedule was deleted after its last firing.
    pub deleted: bool,
}

fn hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl Firing {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        launcher: Arc<dyn TaskLauncher>,
        sink: Arc<dyn MetricSink>,
    ) -> Self {
        Firing { store, clock, launcher, sink }
    }

    pub async fn run(self, metrics: Arc<Metrics>, leader: Arc<dyn Leadership>, shutdown: Shutdown) {
        let controller = Controller::<String>::new("scheduler-schedules", metrics)
            .resync(Duration::from_secs(60))
            .watches(self.store.clone(), keys::scheduled_prefix(), |e| match e.kind {
                EventKind::Put => vec![e.kv.key.clone()],
                EventKind::Delete => Vec::new(),
            });
        controller.run(self, leader, shutdown).await
    }

    /// The first nominal firing after `after`, within the schedule's dates.
    fn nominal_after(rec: &ScheduleRecord, schedule: &Schedule, zone: &dyn Zone, after: i64) -> Option<i64> {
        let s = &rec.schedule;
        let start = s.start_date.map(|d| Timestamp::from_epoch_seconds(d).0);
        let anchor = start.unwrap_or(rec.scheduled_at_ms);
        let after = match (start, schedule) {
            (Some(st), Schedule::Cron(_)) => after.max(st - 1),
            _ => after,
        };
        let next = schedule.next_after(after, anchor, zone)?;
        let end = s.end_date.map(|d| Timestamp::from_epoch_seconds(d).0);
        (end.is_none_or(|e| next < e)).then_some(next)
    }

    fn flex_delay(rec: &ScheduleRecord, nominal: i64) -> i64 {
        match rec.schedule.flexible_time_window.as_ref() {
            Some(f) if f.mode == "FLEXIBLE" => {
                let window = i64::from(f.maximum_window_in_minutes.unwrap_or(1).max(1)) * 60_000;
                let h = hash(&[rec.schedule.arn.as_deref().unwrap_or_default(), &nominal.to_string()]);
                (h % window as u64) as i64
            }
            _ => 0,
        }
    }

    /// One pass over a schedule's row.
    pub async fn pass(&self, row: &str) -> Result<Pass, ServiceError> {
        let mut out = Pass::default();
        for _ in 0..crate::ATTEMPTS {
            let Some(kv) = self.store.get(row) else { return Ok(out) };
            let value = String::from_utf8_lossy(&kv.value).into_owned();
            let key = value.lines().next().unwrap_or_default().to_string();
            let Some(scope) = keys::scope_of(&key) else { return Ok(out) };
            let Some(mut rec) = load::<ScheduleRecord>(self.store.as_ref(), &key).map_err(crate::internal)?
            else {
                return Ok(out);
            };
            if !rec.value.enabled() {
                return Ok(out);
            }
            let expr = rec.value.schedule.schedule_expression.clone().unwrap_or_default();
            let (Ok(schedule), Some(tz)) = (
                Schedule::parse(&expr, true),
                zone(rec.value.schedule.schedule_expression_timezone.as_deref()),
            ) else {
                tracing::warn!(key, expr, "the stored schedule or its time zone does not parse");
                return Ok(out);
            };
            let now = self.clock.now().0;
            let before = Before::of(&scope, &rec);
            let old = rec.value.clone();
            let mut delete = false;
            match (rec.value.next_fire_ms, rec.value.nominal_ms) {
                (Some(due), Some(_)) if due > now => {
                    out.due_in = Some(due - now);
                    return Ok(out);
                }
                (Some(_), Some(nominal)) => {
                    let attempt = rec.value.attempts;
                    let result = if out.invocations.is_empty() {
                        let r = self.invoke(&scope, &rec.value, nominal, attempt).await;
                        out.invocations.push(r.clone().map_err(|(m, _)| m));
                        r
                    } else {
                        out.invocations.last().cloned().unwrap_or(Ok(vec![])).map_err(|m| (m, false))
                    };
                    let policy = rec
                        .value
                        .schedule
                        .target
                        .as_ref()
                        .and_then(|t| t.retry_policy.clone())
                        .unwrap_or_default();
                    let max_attempts = policy.maximum_retry_attempts.unwrap_or(185).max(0) as u32;
                    let max_age = i64::from(policy.maximum_event_age_in_seconds.unwrap_or(86_400)) * 1000;
                    match result {
                        Err((_, true)) if attempt < max_attempts && now - nominal < max_age => {
                            let delay = (1000i64 << attempt.min(6)).min(60_000);
                            rec.value.attempts = attempt + 1;
                            rec.value.next_fire_ms = Some(now + delay);
                        }
                        other => {
                            if other.is_err() {
                                self.metric(&scope, "InvocationDroppedCount", nominal);
                            }
                            let next = Self::nominal_after(&rec.value, &schedule, &tz, now.max(nominal));
                            rec.value.attempts = 0;
                            rec.value.nominal_ms = next;
                            rec.value.next_fire_ms = next.map(|n| n + Self::flex_delay(&rec.value, n));
                            delete = next.is_none()
                                && rec.value.schedule.action_after_completion.as_deref() == Some("DELETE");
                        }
                    }
                }
                _ => {
                    let next = Self::nominal_after(&rec.value, &schedule, &tz, now);
                    rec.value.attempts = 0;
                    rec.value.nominal_ms = next;
                    rec.value.next_fire_ms = next.map(|n| n + Self::flex_delay(&rec.value, n));
                }
            }
            out.due_in = rec.value.next_fire_ms.map(|d| d - now);
            if rec.value == old && !delete {
                return Ok(out);
            }
            let txn = if delete {
                Txn::new().delete_record(&before)
            } else {
                Txn::new().put_record(&scope, &before, &rec.value)
            };
            if commit(self.store.as_ref(), txn).await? {
                out.deleted = delete;
                return Ok(out);
            }
        }
        Err(ServiceError::receiver("InternalServerException", format!("{row} kept conflicting")))
    }

    fn metric(&self, scope: &Scope, name: &'static str, at: i64) {
        let ms = MetricScope {
            account: scope.account.clone(),
            region: scope.region.clone(),
            high_resolution: false,
        };
        self.sink.put_in(
            &ms,
            vec![MetricDatum {
                namespace: "AWS/Scheduler",
                metric_name: name,
                dimensions: Vec::new(),
                timestamp: Timestamp(at),
                value: MetricValue::Value(1.0),
                unit: "Count",
            }],
        );
    }

    /// One attempt: the tasks started, or (the error, whether it may be retried).
    async fn invoke(
        &self,
        scope: &Scope,
        rec: &ScheduleRecord,
        nominal: i64,
        attempt: u32,
    ) -> Result<Vec<String>, (String, bool)> {
        self.metric(scope, "InvocationAttemptCount", nominal);
        let name = rec.schedule.name.clone().unwrap_or_default();
        let arn = rec.schedule.arn.clone().unwrap_or_default();
        let result =
            match rec.schedule.target.as_ref().and_then(|t| run_task_request(&name, &arn, t, nominal)) {
                None => Err(("the target has no EcsParameters".to_string(), false)),
                Some(req) => match self.launcher.run_task(scope, req.to_string().as_bytes()).await {
                    Ok(l) if l.failures.is_empty() && !l.task_arns.is_empty() => Ok(l.task_arns),
                    Ok(l) => Err((
                        l.failures.iter().map(|(a, r)| format!("{a}: {r}")).collect::<Vec<_>>().join("; "),
                        false,
                    )),
                    Err(e) => Err((format!("{}: {}", e.code, e.message), e.server_fault)),
                },
            };
        match &result {
            Ok(tasks) => tracing::info!(schedule = %arn, attempt, ?tasks, "schedule fired"),
            Err((e, _)) => {
                self.metric(scope, "TargetErrorCount", nominal);
                tracing::warn!(schedule = %arn, attempt, error = %e, "the schedule's target failed")
            }
        }
        result
    }
}

/// ECS's RunTask request for a schedule's ECS target.
pub fn run_task_request(name: &str, arn: &str, t: &Target, nominal: i64) -> Option<Value> {
    let p = t.ecs_parameters.as_ref()?;
    let mut r = Map::new();
    r.insert("cluster".into(), json!(t.arn));
    r.insert("taskDefinition".into(), json!(p.task_definition_arn));
    r.insert("count".into(), json!(p.task_count.unwrap_or(1).max(1)));
    // ECS takes 36 characters of startedBy.
    r.insert(
        "startedBy".into(),
        json!(format!("chronos-schedule/{name}").chars().take(36).collect::<String>()),
    );
    for (k, v) in [
        ("launchType", &p.launch_type),
        ("platformVersion", &p.platform_version),
        ("group", &p.group),
        ("propagateTags", &p.propagate_tags),
        ("referenceId", &p.reference_id),
    ] {
        if let Some(v) = v {
            r.insert(k.into(), json!(v));
        }
    }
    if p.enable_ecs_managed_tags == Some(true) {
        r.insert("enableECSManagedTags".into(), json!(true));
    }
    if p.enable_execute_command == Some(true) {
        r.insert("enableExecuteCommand".into(), json!(true));
    }
    if let Some(n) = p.network_configuration.as_ref().and_then(|n| n.awsvpc_configuration.as_ref()) {
        let mut a = Map::new();
        a.insert("subnets".into(), json!(n.subnets));
        if let Some(v) = &n.security_groups {
            a.insert("securityGroups".into(), json!(v));
        }
        if let Some(v) = &n.assign_public_ip {
            a.insert("assignPublicIp".into(), json!(v));
        }
        r.insert("networkConfiguration".into(), json!({ "awsvpcConfiguration": a }));
    }
    if let Some(v) = &p.capacity_provider_strategy {
        let items: Vec<Value> = v
            .iter()
            .map(|i| json!({"capacityProvider": i.capacity_provider, "weight": i.weight, "base": i.base}))
            .collect();
        r.insert("capacityProviderStrategy".into(), Value::Array(items));
    }
    if let Some(v) = &p.placement_constraints {
        let items: Vec<Value> = v
            .iter()
            .map(|c| json!({"type": c.r#type, "expression": c.expression}))
            .map(strip_nulls)
            .collect();
        r.insert("placementConstraints".into(), Value::Array(items));
    }
    if let Some(v) = &p.placement_strategy {
        let items: Vec<Value> =
            v.iter().map(|c| json!({"type": c.r#type, "field": c.field})).map(strip_nulls).collect();
        r.insert("placementStrategy".into(), Value::Array(items));
    }
    if let Some(tags) = &p.tags {
        let items: Vec<Value> =
            tags.iter().flat_map(|m| m.iter().map(|(k, v)| json!({"key": k, "value": v}))).collect();
        r.insert("tags".into(), Value::Array(items));
    }
    if let Some(Ok(Value::Object(o))) = t.input.as_deref().map(serde_json::from_str::<Value>) {
        r.insert("overrides".into(), Value::Object(o));
    }
    let h1 = hash(&[arn, &nominal.to_string(), &Value::Object(r.clone()).to_string()]);
    let h2 = hash(&[&h1.to_string(), arn]);
    r.insert("clientToken".into(), json!(format!("{h1:016x}{h2:016x}")));
    Some(Value::Object(r))
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        v => v,
    }
}

impl Reconciler<String> for Firing {
    type Error = ServiceError;

    async fn reconcile(&self, key: &String) -> Result<Action, Self::Error> {
        let p = self.pass(key).await?;
        Ok(match p.due_in {
            Some(ms) => Action::Requeue(Duration::from_millis(ms.max(0) as u64)),
            None => Action::AwaitChange,
        })
    }

    fn list(&self) -> Vec<String> {
        self.store.range(&keys::scheduled_prefix(), None, usize::MAX).into_iter().map(|kv| kv.key).collect()
    }
}
