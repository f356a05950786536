//! Service events on the default bus: what AWS's services put on EventBridge (`aws.ecs`'s "ECS
//! Task State Change", ...), matched against the enabled rules' event patterns and delivered to
//! their targets. Services reach it through `gantry_ports::EventBus`, implemented by
//! [`Delivery`]; the pattern language is [`matches`].
//!
//! Delivery happens as the event is put, once per matching rule and target: an ECS cluster
//! target runs its task (RunTask through `gantry_ports::TaskLauncher`, the client token the
//! event's ID, so a repeated delivery starts nothing twice), a CloudWatch Logs log group target
//! gets the event as one log event (through `gantry_ports::LogSink`, in a stream named by the
//! event's ID). What happened is counted as on AWS: `AWS/Events` `MatchedEvents`,
//! `TriggeredRules`, `Invocations` and `FailedInvocations` per `RuleName`.

use crate::{DEFAULT_BUS, RuleRecord, keys};
use gantry_core::{Clock, IdGen, Scope, Timestamp};
use gantry_model::events::Target;
use gantry_ports::lb::PortFuture;
use gantry_ports::{
    BusEvent, EventBus, LogSink, MetricDatum, MetricScope, MetricSink, MetricValue, TaskLauncher,
};
use gantry_runtime::records::load_prefix;
use gantry_store::Store;
use serde_json::{Value, json};
use std::sync::Arc;

/// Whether `event` (the whole event, as a rule sees it) matches `pattern` (EventBridge's event
/// pattern: every field it names must match; an array lists the values accepted, exact
/// scalars or the filters `prefix`, `suffix`, `exists`, `anything-but`, `equals-ignore-case`; an
/// object matches the event's object field by field; an event field that is an array matches
/// when one of its values does).
pub fn matches(pattern: &Value, event: &Value) -> bool {
    let Value::Object(p) = pattern else { return false };
    p.iter().all(|(k, want)| {
        let got = event.get(k);
        match want {
            Value::Object(_) => got.is_some_and(|g| g.is_object() && matches(want, g)),
            Value::Array(accepted) => field_matches(accepted, got),
            _ => false,
        }
    })
}

fn field_matches(accepted: &[Value], got: Option<&Value>) -> bool {
    let values: Vec<&Value> = match got {
        None => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v) => vec![v],
    };
    accepted.iter().any(|a| match a {
        Value::Object(f) => filter_matches(f, got.is_some(), &values),
        scalar => values.contains(&scalar),
    })
}

fn filter_matches(f: &serde_json::Map<String, Value>, present: bool, values: &[&Value]) -> bool {
    let Some((name, arg)) = f.iter().next() else { return false };
    let strs = || values.iter().filter_map(|v| v.as_str());
    match (name.as_str(), arg) {
        ("exists", Value::Bool(b)) => present == *b,
        ("prefix", Value::String(p)) => strs().any(|s| s.starts_with(p.as_str())),
        ("suffix", Value::String(p)) => strs().any(|s| s.ends_with(p.as_str())),
        ("equals-ignore-case", Value::String(p)) => strs().any(|s| s.eq_ignore_ascii_case(p)),
        ("anything-but", Value::Array(no)) => present && values.iter().any(|v| !no.contains(v)),
        ("anything-but", Value::Object(inner)) => match inner.get("prefix") {
            Some(Value::String(p)) => strs().any(|s| !s.starts_with(p.as_str())),
            _ => false,
        },
        ("anything-but", scalar) => present && values.iter().any(|v| *v != scalar),
        _ => false,
    }
}

/// The event as EventBridge delivers it (its envelope around the service's detail).
pub fn envelope(id: &str, account: &str, region: &str, e: &BusEvent) -> Value {
    let detail: Value = serde_json::from_str(&e.detail).unwrap_or_else(|_| json!({}));
    json!({
        "version": "0",
        "id": id,
        "detail-type": e.detail_type,
        "source": e.source,
        "account": account,
        "time": gantry_core::civil::rfc3339(e.time_ms.div_euclid(1000), 0, 0),
        "region": region,
        "resources": e.resources,
        "detail": detail,
    })
}

/// The log group a CloudWatch Logs target's ARN names in `scope`.
pub(crate) fn log_group(scope: &Scope, arn: &str) -> Option<String> {
    let rest = arn.strip_prefix(&format!("arn:aws:logs:{}:{}:log-group:", scope.region, scope.account))?;
    let name = rest.strip_suffix(":*").unwrap_or(rest);
    (!name.is_empty()).then(|| name.to_string())
}

/// `gantry_ports::EventBus`: matches each event against the enabled rules of the default bus and
/// delivers it to their targets.
pub struct Delivery {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    launcher: Arc<dyn TaskLauncher>,
    logs: Arc<dyn LogSink>,
    sink: Arc<dyn MetricSink>,
}

/// What one delivery to one target came to: the rule, the target, and the outcome.
pub type Delivered = (String, String, Result<(), String>);

impl Delivery {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        launcher: Arc<dyn TaskLauncher>,
        logs: Arc<dyn LogSink>,
        sink: Arc<dyn MetricSink>,
    ) -> Self {
        Delivery { store, clock, ids, launcher, logs, sink }
    }

    /// Puts one event: every enabled rule whose pattern it matches gets it delivered to each of
    /// its targets. Returns each delivery.
    pub async fn put(&self, scope: &Scope, e: &BusEvent) -> Result<Vec<Delivered>, String> {
        let id = self.ids.uuid();
        let event = envelope(&id, &scope.account, &scope.region, e);
        let rules: Vec<RuleRecord> =
            load_prefix::<RuleRecord>(self.store.as_ref(), &keys::rules(scope, DEFAULT_BUS))
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|r| r.value)
                .collect();
        let mut out = Vec::new();
        for rule in rules.iter().filter(|r| r.state.is_enabled()) {
            let Some(pattern) = rule.event_pattern.as_deref() else { continue };
            let Ok(pattern) = serde_json::from_str::<Value>(pattern) else { continue };
            if !matches(&pattern, &event) {
                continue;
            }
            let mut failed = 0;
            for t in &rule.targets {
                let outcome = self.deliver(scope, rule, t, &id, &event, e.time_ms).await;
                match &outcome {
                    Ok(()) => {
                        tracing::info!(rule = %rule.arn, target = %t.id, event = %id, "event delivered")
                    }
                    Err(err) => {
                        failed += 1;
                        tracing::warn!(rule = %rule.arn, target = %t.id, error = %err, "the rule's target failed")
                    }
                }
                out.push((rule.name.clone(), t.id.clone(), outcome));
            }
            let now = self.clock.now().0;
            let datum = |name: &'static str, v: usize| MetricDatum {
                namespace: "AWS/Events",
                metric_name: name,
                dimensions: vec![("RuleName", rule.name.clone())],
                timestamp: Timestamp(now),
                value: MetricValue::Value(v as f64),
                unit: "Count",
            };
            let mut data = vec![
                datum("MatchedEvents", 1),
                datum("TriggeredRules", 1),
                datum("Invocations", rule.targets.len()),
            ];
            if failed > 0 {
                data.push(datum("FailedInvocations", failed));
            }
            let ms = MetricScope {
                account: scope.account.clone(),
                region: scope.region.clone(),
                high_resolution: false,
            };
            self.sink.put_in(&ms, data);
        }
        Ok(out)
    }

    async fn deliver(
        &self,
        scope: &Scope,
        rule: &RuleRecord,
        t: &Target,
        id: &str,
        event: &Value,
        time_ms: i64,
    ) -> Result<(), String> {
        if let Some(group) = log_group(scope, &t.arn) {
            // Logs writes (and fsyncs) before it answers: off the async workers.
            let (logs, scope, id, message) =
                (self.logs.clone(), scope.clone(), id.to_string(), event.to_string());
            return tokio::task::spawn_blocking(move || {
                logs.put_events(&scope.account, &scope.region, &group, &id, vec![(time_ms, message)])
            })
            .await
            .unwrap_or_else(|e| Err(format!("the delivery failed: {e}")));
        }
        let Some(mut req) = crate::fire::run_task_request(rule, t, time_ms) else {
            return Err("the target has no EcsParameters".to_string());
        };
        req["clientToken"] = json!(id);
        match self.launcher.run_task(scope, req.to_string().as_bytes()).await {
            Ok(l) if l.failures.is_empty() && !l.task_arns.is_empty() => Ok(()),
            Ok(l) => Err(l.failures.iter().map(|(a, r)| format!("{a}: {r}")).collect::<Vec<_>>().join("; ")),
            Err(e) => Err(format!("{}: {}", e.code, e.message)),
        }
    }
}

impl EventBus for Delivery {
    fn put_event<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        event: BusEvent,
    ) -> PortFuture<'a, Result<usize, String>> {
        Box::pin(async move {
            let scope = Scope::new(account, region);
            Ok(self.put(&scope, &event).await?.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_eventbridge_documents() {
        let e = json!({"source": "aws.ecs", "detail-type": "ECS Task State Change",
            "resources": ["arn:aws:ecs:us-east-1:1:task/c/abc"],
            "detail": {"stopCode": "SpotInterruption", "lastStatus": "RUNNING", "group": "service:web"}});
        let m = |p: Value| matches(&p, &e);
        assert!(m(json!({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"],
            "detail": {"stopCode": ["SpotInterruption"]}})));
        assert!(!m(json!({"source": ["aws.ecs"], "detail": {"stopCode": ["UserInitiated"]}})));
        assert!(m(json!({"source": ["aws.ec2", "aws.ecs"]})), "any of the values");
        assert!(!m(json!({"detail": {"missing": ["x"]}})), "a field the event lacks");
        assert!(m(json!({"resources": ["arn:aws:ecs:us-east-1:1:task/c/abc"]})), "an array field: one value");
        assert!(m(json!({"detail": {"group": [{"prefix": "service:"}]}})));
        assert!(!m(json!({"detail": {"group": [{"prefix": "family:"}]}})));
        assert!(m(json!({"detail": {"stopCode": [{"exists": true}], "taskArn": [{"exists": false}]}})));
        assert!(m(json!({"detail": {"lastStatus": [{"anything-but": ["STOPPED"]}]}})));
        assert!(!m(json!({"detail": {"lastStatus": [{"anything-but": "RUNNING"}]}})));
        assert!(m(json!({"detail": {"stopCode": [{"equals-ignore-case": "spotinterruption"}]}})));
        assert!(!m(json!({"detail": ["x"]})), "an object is not a value");
    }

    #[test]
    fn log_group_targets_in_scope_only() {
        let s = Scope::new("1", "us-east-1");
        assert_eq!(
            log_group(&s, "arn:aws:logs:us-east-1:1:log-group:/aws/events/x").as_deref(),
            Some("/aws/events/x")
        );
        assert_eq!(log_group(&s, "arn:aws:logs:us-east-1:1:log-group:g:*").as_deref(), Some("g"));
        assert_eq!(log_group(&s, "arn:aws:logs:eu-west-1:1:log-group:g"), None);
    }
}
