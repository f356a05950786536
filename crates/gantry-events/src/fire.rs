//! The firing controller: runs the targets of enabled rules whose schedule is due.
//!
//! It works through the `/_events/scheduled/` rows (one per enabled rule with a schedule). A
//! pass over a rule settles its next firing (`RuleRecord::next_fire_ms`: a rate counts from when
//! the schedule was set or the rule enabled, a cron is the next matching UTC minute) and asks to
//! be run again then; a pass at or after that time invokes every target and then records the
//! following firing (firings missed while no server led are not made up: the next is the first
//! after now). Each target's RunTask carries a `clientToken` made of the rule, the target, the
//! firing and the request, so a pass that invoked and then lost its write (a crash, another
//! writer) invokes again with the same token and ECS answers with the tasks it already started:
//! a firing runs its tasks once. Time is the injected clock; the controller's own delays only
//! decide when a pass runs.
//!
//! What happened is visible as on AWS: CloudWatch's `AWS/Events` `TriggeredRules`,
//! `Invocations` and `FailedInvocations` per `RuleName` (through `gantry_ports::MetricSink`), and
//! a warning in the log naming the rule, the target and ECS's error. A failed RunTask is not
//! retried (ECS's client errors are final, as EventBridge treats them).

use crate::{RuleRecord, commit, keys};
use gantry_core::schedule::{Schedule, Utc};
use gantry_core::{Clock, Scope, ServiceError, Timestamp};
use gantry_model::events::Target;
use gantry_ports::{MetricDatum, MetricScope, MetricSink, MetricValue, TaskLauncher};
use gantry_runtime::records::{Before, TxnExt, load};
use gantry_runtime::{Action, Controller, Leadership, Metrics, Reconciler, Shutdown};
use gantry_store::{EventKind, Store, Txn};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The reconciler: one pass per scheduled rule.
pub struct Firing {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    launcher: Arc<dyn TaskLauncher>,
    sink: Arc<dyn MetricSink>,
}

/// What one target's invocation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub target_id: String,
    /// The tasks started, or ECS's error (code: message) or placement failures.
    pub outcome: Result<Vec<String>, String>,
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

    /// Runs the controller until `shutdown`, while `leader` says this process leads.
    pub async fn run(self, metrics: Arc<Metrics>, leader: Arc<dyn Leadership>, shutdown: Shutdown) {
        let controller = Controller::<String>::new("events-rules", metrics)
            .resync(Duration::from_secs(60))
            .watches(self.store.clone(), keys::scheduled_prefix(), |e| match e.kind {
                EventKind::Put => vec![e.kv.key.clone()],
                EventKind::Delete => Vec::new(),
            });
        controller.run(self, leader, shutdown).await
    }

    /// One pass over a scheduled row: fires the rule if it is due. Returns the invocations made
    /// and how long until the rule is due (none: it is not scheduled).
    pub async fn pass(&self, row: &str) -> Result<(Vec<Invocation>, Option<i64>), ServiceError> {
        let mut invoked = Vec::new();
        for _ in 0..crate::ATTEMPTS {
            let Some(kv) = self.store.get(row) else { return Ok((invoked, None)) };
            let value = String::from_utf8_lossy(&kv.value).into_owned();
            let rule_key = value.lines().next().unwrap_or_default().to_string();
            let Some(scope) = keys::scope_of(&rule_key) else { return Ok((invoked, None)) };
            let Some(mut rule) =
                load::<RuleRecord>(self.store.as_ref(), &rule_key).map_err(crate::internal)?
            else {
                return Ok((invoked, None));
            };
            if !rule.value.scheduled() {
                return Ok((invoked, None));
            }
            let expr = rule.value.schedule_expression.clone().unwrap_or_default();
            let Ok(schedule) = Schedule::parse(&expr, false) else {
                tracing::warn!(rule = %rule.value.arn, expr, "the stored schedule does not parse");
                return Ok((invoked, None));
            };
            let now = self.clock.now().0;
            let anchor = rule.value.scheduled_at_ms;
            let (next, due) = match rule.value.next_fire_ms {
                Some(due) if due > now => return Ok((invoked, Some(due - now))),
                Some(due) => (schedule.next_after(now.max(due), anchor, &Utc), Some(due)),
                None => (schedule.next_after(now, anchor, &Utc), None),
            };
            let before = Before::of(&scope, &rule);
            rule.value.next_fire_ms = next;
            // The firing is claimed by moving the rule's next firing first: of two passes over
            // the same firing, only the one whose write lands invokes the targets.
            if commit(self.store.as_ref(), Txn::new().put_record(&scope, &before, &rule.value)).await? {
                if let Some(due) = due {
                    invoked = self.invoke(&scope, &rule.value, due).await;
                }
                return Ok((invoked, next.map(|n| n - now)));
            }
        }
        Err(ServiceError::receiver("InternalException", format!("{row} kept conflicting")))
    }

    /// Invokes every target of `rule` for its firing at `due`, and publishes the metrics.
    async fn invoke(&self, scope: &Scope, rule: &RuleRecord, due: i64) -> Vec<Invocation> {
        let mut out = Vec::new();
        for t in &rule.targets {
            let outcome = match run_task_request(rule, t, due) {
                Some(req) => match self.launcher.run_task(scope, req.to_string().as_bytes()).await {
                    Ok(l) if l.failures.is_empty() && !l.task_arns.is_empty() => Ok(l.task_arns),
                    Ok(l) => Err(l
                        .failures
                        .iter()
                        .map(|(a, r)| format!("{a}: {r}"))
                        .collect::<Vec<_>>()
                        .join("; ")),
                    Err(e) => Err(format!("{}: {}", e.code, e.message)),
                },
                None => Err("the target has no EcsParameters".to_string()),
            };
            match &outcome {
                Ok(tasks) => tracing::info!(rule = %rule.arn, target = %t.id, ?tasks, "rule fired"),
                Err(e) => {
                    tracing::warn!(rule = %rule.arn, target = %t.id, error = %e, "the rule's target failed")
                }
            }
            out.push(Invocation { target_id: t.id.clone(), outcome });
        }
        let failed = out.iter().filter(|i| i.outcome.is_err()).count();
        let datum = |name: &'static str, v: usize| MetricDatum {
            namespace: "AWS/Events",
            metric_name: name,
            dimensions: vec![("RuleName", rule.name.clone())],
            timestamp: Timestamp(due),
            value: MetricValue::Value(v as f64),
            unit: "Count",
        };
        let mut data = vec![datum("TriggeredRules", 1), datum("Invocations", out.len())];
        if failed > 0 {
            data.push(datum("FailedInvocations", failed));
        }
        let ms = MetricScope {
            account: scope.account.clone(),
            region: scope.region.clone(),
            high_resolution: false,
        };
        self.sink.put_in(&ms, data);
        out
    }
}

/// ECS's RunTask request for an ECS target, as EventBridge makes it: the target's
/// `EcsParameters`, its `Input` as the task's overrides, `startedBy` `events-rule/RULE-NAME` (cut to ECS's 36 characters),
/// and a client token unique to the firing.
pub fn run_task_request(rule: &RuleRecord, t: &Target, due: i64) -> Option<Value> {
    let p = t.ecs_parameters.as_ref()?;
    let mut r = Map::new();
    r.insert("cluster".into(), json!(t.arn));
    r.insert("taskDefinition".into(), json!(p.task_definition_arn));
    r.insert("count".into(), json!(p.task_count.max(1)));
    r.insert("startedBy".into(), json!(started_by("events-rule/", &rule.name)));
    if let Some(v) = &p.launch_type {
        r.insert("launchType".into(), json!(v));
    }
    if let Some(v) = &p.platform_version {
        r.insert("platformVersion".into(), json!(v));
    }
    if let Some(v) = &p.group {
        r.insert("group".into(), json!(v));
    }
    if let Some(v) = &p.propagate_tags {
        r.insert("propagateTags".into(), json!(v));
    }
    if let Some(v) = &p.reference_id {
        r.insert("referenceId".into(), json!(v));
    }
    if p.enable_ecs_managed_tags {
        r.insert("enableECSManagedTags".into(), json!(true));
    }
    if p.enable_execute_command {
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
            .map(|c| {
                let mut m = Map::new();
                if let Some(t) = &c.r#type {
                    m.insert("type".into(), json!(t));
                }
                if let Some(e) = &c.expression {
                    m.insert("expression".into(), json!(e));
                }
                Value::Object(m)
            })
            .collect();
        r.insert("placementConstraints".into(), Value::Array(items));
    }
    if let Some(v) = &p.placement_strategy {
        let items: Vec<Value> = v
            .iter()
            .map(|c| {
                let mut m = Map::new();
                if let Some(t) = &c.r#type {
                    m.insert("type".into(), json!(t));
                }
                if let Some(f) = &c.field {
                    m.insert("field".into(), json!(f));
                }
                Value::Object(m)
            })
            .collect();
        r.insert("placementStrategy".into(), Value::Array(items));
    }
    if let Some(tags) = &p.tags {
        let items: Vec<Value> = tags.iter().map(|t| json!({"key": t.key, "value": t.value})).collect();
        r.insert("tags".into(), Value::Array(items));
    }
    if let Some(Ok(Value::Object(o))) = t.input.as_deref().map(serde_json::from_str::<Value>) {
        r.insert("overrides".into(), Value::Object(o));
    }
    let fingerprint = Value::Object(r.clone()).to_string();
    let token = client_token(&[&rule.arn, &t.id, &due.to_string(), &fingerprint]);
    r.insert("clientToken".into(), json!(token));
    Some(Value::Object(r))
}

/// `startedBy` as EventBridge sets it: the prefix and the name, cut to the 36 characters ECS
/// allows.
pub fn started_by(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}").chars().take(36).collect()
}

/// 32 hex digits (two FNV-1a hashes) of the parts: the same firing of the same request gives the
/// same token.
pub fn client_token(parts: &[&str]) -> String {
    let fnv = |seed: u64| {
        let mut h = seed;
        for p in parts {
            for b in p.bytes().chain([0u8]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    };
    format!("{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142))
}

impl Reconciler<String> for Firing {
    type Error = ServiceError;

    async fn reconcile(&self, key: &String) -> Result<Action, Self::Error> {
        let (_, due_in) = self.pass(key).await?;
        Ok(match due_in {
            // The runtime's delays are tokio's; the firing itself is decided on the injected
            // clock, so a pass that wakes early just asks again.
            Some(ms) => Action::Requeue(Duration::from_millis(ms.max(0) as u64)),
            None => Action::AwaitChange,
        })
    }

    fn list(&self) -> Vec<String> {
        self.store.range(&keys::scheduled_prefix(), None, usize::MAX).into_iter().map(|kv| kv.key).collect()
    }
}
