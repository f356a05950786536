//! Amazon CloudWatch metrics and alarms (`monitoring`; JSON 1.0, awsQuery and RPC v2 CBOR, all
//! through gantry-protocol's JSON form of `gantry_model::cloudwatch`).
//!
//! Datapoints live in a time-series store of their own ([`store`]: per-bucket statistics in
//! CloudWatch's four roll-up tiers, a write-ahead log fsynced before PutMetricData is
//! acknowledged), never in the key-value store. Percentiles come from a per-bucket sketch
//! ([`sketch`], 1 % relative error). GetMetricData's expressions are [`math`]. Alarms
//! ([`alarms`]) are evaluated by [`CloudWatch::evaluate_alarms`] on the injected clock, which the
//! binary calls every few seconds; their actions go to an [`AlarmActions`] port. Other services
//! publish through the [`gantry_ports::MetricSink`] this crate implements. It knows no HTTP and
//! depends on no other service.

pub mod alarms;
pub mod math;
pub mod query;
pub mod sketch;
pub mod store;

use gantry_core::{AlarmState, Clock, ServiceError};
use gantry_model::cloudwatch as m;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use store::{Point, PointValue, Store};

pub use alarms::{AlarmAction, AlarmActions, RecordedActions};

/// CloudWatch's units.
pub const UNITS: &[&str] = gantry_ports::METRIC_UNITS;

/// How far back and ahead a datapoint's timestamp may be (two weeks, two hours).
pub const MAX_PAST_MS: i64 = 14 * 86_400_000;
pub const MAX_FUTURE_MS: i64 = 2 * 3_600_000;
/// PutMetricData's limits.
pub const MAX_METRIC_DATA: usize = 1000;
pub const MAX_DIMENSIONS: usize = 30;
pub const MAX_VALUES: usize = 150;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::sender("InvalidParameterValue", msg)
}

pub(crate) fn combination(msg: impl Into<String>) -> ServiceError {
    ServiceError::sender("InvalidParameterCombination", msg)
}

pub(crate) fn missing(param: &str) -> ServiceError {
    ServiceError::sender("MissingParameter", format!("The parameter {param} is required."))
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::receiver("InternalServiceError", format!("The metric store failed: {e}")).with_status(500)
}

fn parse<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(input).map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix("missing field `").and_then(|r| r.split_once('`')) {
            Some((field, _)) => missing(field),
            None => invalid(format!("The request is not valid: {text}")),
        }
    })
}

fn render<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(v).map_err(internal)
}

/// Validates dimensions (at most 30, names 1-255 and values 1-1024 characters, no name twice)
/// and returns them sorted by name, as the store keys series.
pub(crate) fn dimensions(
    dims: &Option<Vec<m::Dimension>>,
    at: &str,
) -> Result<Vec<(String, String)>, ServiceError> {
    let dims = dims.as_deref().unwrap_or_default();
    if dims.len() > MAX_DIMENSIONS {
        return Err(invalid(format!(
            "The collection {at} must not have a size greater than {MAX_DIMENSIONS}."
        )));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(dims.len());
    for (i, d) in dims.iter().enumerate() {
        if d.name.is_empty() || d.name.len() > 255 {
            return Err(invalid(format!(
                "The value {} for parameter {at}.member.{}.Name is invalid.",
                d.name,
                i + 1
            )));
        }
        if d.value.is_empty() || d.value.len() > 1024 {
            return Err(invalid(format!(
                "The value {} for parameter {at}.member.{}.Value is invalid.",
                d.value,
                i + 1
            )));
        }
        if out.iter().any(|(n, _)| *n == d.name) {
            return Err(invalid(format!(
                "No metric may have duplicate dimension names: {} appears twice in {at}.",
                d.name
            )));
        }
        out.push((d.name.clone(), d.value.clone()));
    }
    out.sort();
    Ok(out)
}

pub(crate) fn check_unit(unit: &Option<String>, at: &str) -> Result<String, ServiceError> {
    match unit.as_deref() {
        None => Ok("None".to_string()),
        Some(u) if UNITS.contains(&u) => Ok(u.to_string()),
        Some(u) => Err(invalid(format!("The value {u} for parameter {at} is invalid."))),
    }
}

pub(crate) fn check_name(v: &str, param: &str, max: usize) -> Result<(), ServiceError> {
    if v.is_empty() || v.len() > max {
        return Err(invalid(format!("The value {v} for parameter {param} is invalid.")));
    }
    Ok(())
}

/// One of PutMetricData's values must be a number CloudWatch takes: finite, magnitude between
/// 2^-260 and 2^360, or zero.
fn check_value(v: f64, param: &str) -> Result<(), ServiceError> {
    let ok = v.is_finite() && (v == 0.0 || (v.abs() <= 2f64.powi(360) && v.abs() >= 2f64.powi(-260)));
    if !ok {
        return Err(invalid(format!("The value {v} for parameter {param} is invalid.")));
    }
    Ok(())
}

/// The CloudWatch service.
pub struct CloudWatch {
    store: Store,
    clock: Arc<dyn Clock>,
    alarms: Mutex<alarms::Alarms>,
    actions: Arc<dyn AlarmActions>,
    dir: PathBuf,
    /// The account and region that `MetricSink::put` (no scope) writes to.
    default_scope: (String, String),
    last_checkpoint: Mutex<i64>,
}

impl std::fmt::Debug for CloudWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatch").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl CloudWatch {
    /// Opens the metric store and the alarms under `dir` (`DATA_DIR/metrics`). Datapoints that
    /// services publish without naming an account go to `default_scope`.
    pub fn open(
        dir: PathBuf,
        clock: Arc<dyn Clock>,
        actions: Arc<dyn AlarmActions>,
        default_scope: (String, String),
    ) -> std::io::Result<CloudWatch> {
        let now = clock.now().0;
        let store = Store::open(dir.clone(), now)?;
        let alarms = alarms::Alarms::load(&dir)?;
        Ok(CloudWatch {
            store,
            clock,
            alarms: Mutex::new(alarms),
            actions,
            dir,
            default_scope,
            last_checkpoint: Mutex::new(now),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Runs one operation on its JSON-form input.
    pub fn call(&self, account: &str, region: &str, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        let scope = (account, region);
        match op {
            "PutMetricData" => {
                self.put_metric_data(scope, parse(input)?)?;
                Ok(b"{}".to_vec())
            }
            "GetMetricStatistics" => render(&query::get_metric_statistics(self, scope, parse(input)?)?),
            "GetMetricData" => {
                query::encode_metric_data(&query::get_metric_data(self, scope, parse(input)?)?)
            }
            "ListMetrics" => render(&query::list_metrics(self, scope, parse(input)?)?),
            "PutMetricAlarm" => {
                alarms::put_metric_alarm(self, scope, parse(input)?)?;
                Ok(b"{}".to_vec())
            }
            "DescribeAlarms" => render(&alarms::describe_alarms(self, scope, parse(input)?)?),
            "DescribeAlarmsForMetric" => {
                render(&alarms::describe_alarms_for_metric(self, scope, parse(input)?)?)
            }
            "DeleteAlarms" => {
                alarms::delete_alarms(self, scope, parse(input)?)?;
                Ok(b"{}".to_vec())
            }
            "SetAlarmState" => {
                alarms::set_alarm_state(self, scope, parse(input)?)?;
                Ok(b"{}".to_vec())
            }
            "DescribeAlarmHistory" => render(&alarms::describe_alarm_history(self, scope, parse(input)?)?),
            "EnableAlarmActions" | "DisableAlarmActions" => {
                let names: m::EnableAlarmActionsInput = parse(input)?;
                alarms::set_actions_enabled(self, scope, &names.alarm_names, op == "EnableAlarmActions")?;
                Ok(b"{}".to_vec())
            }
            "TagResource" => {
                alarms::tag_resource(self, scope, parse(input)?)?;
                Ok(b"{}".to_vec())
            }
            "UntagResource" => {
                alarms::untag_resource(self, scope, parse(input)?)?;
                Ok(b"{}".to_vec())
            }
            "ListTagsForResource" => render(&alarms::list_tags(self, scope, parse(input)?)?),
            _ => Err(ServiceError::sender("InvalidAction", format!("Unknown operation {op}"))),
        }
    }

    fn put_metric_data(
        &self,
        (account, region): (&str, &str),
        input: m::PutMetricDataInput,
    ) -> Result<(), ServiceError> {
        let ns = &input.namespace;
        if ns.is_empty() || ns.len() > 255 || ns.starts_with(':') {
            return Err(invalid(format!("The value {ns} for parameter Namespace is invalid.")));
        }
        if ns.starts_with("AWS/") {
            return Err(invalid("The value AWS/ for parameter Namespace is invalid."));
        }
        let data = match (&input.metric_data, &input.entity_metric_data) {
            (Some(d), _) => d.clone(),
            (None, Some(e)) => e.iter().flat_map(|e| e.metric_data.clone().unwrap_or_default()).collect(),
            (None, None) => return Err(missing("MetricData")),
        };
        let now = self.clock.now().0;
        let points = validate_data(account, region, ns, &data, now)?;
        self.write(&points, now)
    }

    fn write(&self, points: &[Point], now: i64) -> Result<(), ServiceError> {
        let wants_checkpoint = self.store.put(points, now).map_err(internal)?;
        if wants_checkpoint {
            self.store.checkpoint().map_err(internal)?;
            *lock(&self.last_checkpoint) = now;
        }
        Ok(())
    }

    /// Forgets every datapoint and alarm (the test-isolation reset).
    pub fn reset(&self) -> std::io::Result<()> {
        self.store.reset()?;
        lock(&self.alarms).reset().map_err(|e| std::io::Error::other(e.message))
    }

    /// What the binary runs once a minute: retention, and a checkpoint every 10 minutes.
    pub fn maintain(&self) -> std::io::Result<()> {
        let now = self.clock.now().0;
        self.store.sweep(now);
        let due = {
            let mut last = lock(&self.last_checkpoint);
            let due = now - *last >= 600_000;
            if due {
                *last = now;
            }
            due
        };
        if due {
            self.store.checkpoint()?;
        }
        lock(&self.alarms).prune_history(now);
        Ok(())
    }

    /// Evaluates every alarm that is due at the clock's time (see [`alarms`]).
    pub fn evaluate_alarms(&self) {
        alarms::evaluate_due(self);
    }

    /// The states of the named alarms in an account and region (`None` for one that does not
    /// exist): what ECS deployment alarms read.
    pub fn alarm_states(&self, account: &str, region: &str, names: &[String]) -> Vec<Option<AlarmState>> {
        let alarms = lock(&self.alarms);
        names.iter().map(|n| alarms.get(account, region, n).map(|a| a.state_value)).collect()
    }

    /// A sink that publishes into one account and region.
    pub fn sink(self: &Arc<Self>) -> Arc<dyn gantry_ports::MetricSink> {
        Arc::new(Sink(self.clone()))
    }

    fn publish(&self, account: &str, region: &str, high_res: bool, data: Vec<gantry_ports::MetricDatum>) {
        let now = self.clock.now().0;
        let points: Vec<Point> = data
            .into_iter()
            .map(|d| {
                let mut dims: Vec<(String, String)> =
                    d.dimensions.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                dims.sort();
                Point {
                    metric: (
                        account.to_string(),
                        region.to_string(),
                        d.namespace.to_string(),
                        d.metric_name.to_string(),
                    ),
                    dims,
                    unit: d.unit.to_string(),
                    ts_ms: d.timestamp.0,
                    high_res,
                    value: match d.value {
                        gantry_ports::MetricValue::Value(v) => PointValue::Values(vec![(v, 1.0)]),
                        gantry_ports::MetricValue::Statistics { sample_count, sum, minimum, maximum } => {
                            PointValue::Set { count: sample_count, sum, min: minimum, max: maximum }
                        }
                    },
                }
            })
            .collect();
        if let Err(e) = self.write(&points, now) {
            tracing::error!(error = %e.message, "cannot store published metrics");
        }
    }
}

impl CloudWatch {
    /// Stores the metrics CloudWatch Logs extracted from events in embedded metric format (each
    /// sample a value, as PutMetricData's `Values`), logged and fsynced like PutMetricData.
    pub fn put_extracted(&self, account: &str, region: &str, data: Vec<gantry_ports::ExtractedDatum>) {
        let now = self.clock.now().0;
        let points: Vec<Point> = data
            .into_iter()
            .map(|d| {
                let mut dims = d.dimensions;
                dims.sort();
                Point {
                    metric: (account.to_string(), region.to_string(), d.namespace, d.metric_name),
                    dims,
                    unit: d.unit,
                    ts_ms: d.timestamp.0,
                    high_res: d.high_resolution,
                    value: PointValue::Values(d.values.into_iter().map(|v| (v, 1.0)).collect()),
                }
            })
            .collect();
        if let Err(e) = self.write(&points, now) {
            tracing::error!(error = %e.message, "cannot store metrics extracted from log events");
        }
    }
}

impl gantry_ports::AlarmStates for CloudWatch {
    fn states(&self, account: &str, region: &str, names: &[String]) -> Vec<Option<AlarmState>> {
        self.alarm_states(account, region, names)
    }
}

/// Application Auto Scaling's target tracking alarms: PutMetricAlarm, DeleteAlarms and what a
/// policy reads of the alarm that invoked it.
impl gantry_ports::MetricAlarms for CloudWatch {
    fn put_metric_alarm(&self, account: &str, region: &str, input: &[u8]) -> Result<(), String> {
        let input: m::PutMetricAlarmInput = serde_json::from_slice(input).map_err(|e| e.to_string())?;
        alarms::put_metric_alarm(self, (account, region), input).map_err(|e| e.message)
    }

    fn delete_alarms(&self, account: &str, region: &str, names: &[String]) -> Result<(), String> {
        let input = m::DeleteAlarmsInput { alarm_names: names.to_vec() };
        alarms::delete_alarms(self, (account, region), input).map_err(|e| e.message)
    }

    fn alarm(&self, account: &str, region: &str, name: &str) -> Option<gantry_ports::AlarmView> {
        let alarms = lock(&self.alarms);
        let a = alarms.get(account, region, name)?;
        // The last evaluation's datapoints; after a restart, those of the last state change.
        let recent = if a.last_datapoints.is_empty() {
            let data: Option<Value> =
                a.state_reason_data.as_deref().and_then(|d| serde_json::from_str(d).ok());
            data.as_ref()
                .and_then(|d| d.get("recentDatapoints"))
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default()
        } else {
            a.last_datapoints.clone()
        };
        Some(gantry_ports::AlarmView {
            state: a.state_value,
            threshold: a.config.threshold.unwrap_or(0.0),
            comparison_operator: a.config.comparison_operator.clone().unwrap_or_default(),
            recent_datapoints: recent,
        })
    }
}

struct Sink(Arc<CloudWatch>);

impl gantry_ports::MetricSink for Sink {
    fn put(&self, data: Vec<gantry_ports::MetricDatum>) {
        let (a, r) = &self.0.default_scope;
        self.0.publish(a, r, false, data);
    }

    fn put_in(&self, scope: &gantry_ports::MetricScope, data: Vec<gantry_ports::MetricDatum>) {
        self.0.publish(&scope.account, &scope.region, scope.high_resolution, data);
    }

    fn put_extracted(&self, account: &str, region: &str, data: Vec<gantry_ports::ExtractedDatum>) {
        self.0.put_extracted(account, region, data);
    }
}

/// Checks PutMetricData's datums as CloudWatch does and turns them into stored points.
fn validate_data(
    account: &str,
    region: &str,
    ns: &str,
    data: &[m::MetricDatum],
    now: i64,
) -> Result<Vec<Point>, ServiceError> {
    if data.is_empty() {
        return Err(missing("MetricData"));
    }
    if data.len() > MAX_METRIC_DATA {
        return Err(invalid(format!(
            "The collection MetricData must not have a size greater than {MAX_METRIC_DATA}."
        )));
    }
    let mut points = Vec::with_capacity(data.len());
    for (i, d) in data.iter().enumerate() {
        let at = format!("MetricData.member.{}", i + 1);
        check_name(&d.metric_name, &format!("{at}.MetricName"), 255)?;
        let dims = dimensions(&d.dimensions, &format!("{at}.Dimensions"))?;
        let unit = check_unit(&d.unit, &format!("{at}.Unit"))?;
        let high_res = match d.storage_resolution {
            None | Some(60) => false,
            Some(1) => true,
            Some(r) => {
                return Err(invalid(format!(
                    "The value {r} for parameter {at}.StorageResolution is invalid."
                )));
            }
        };
        let ts_ms = match d.timestamp {
            Some(t) => {
                let ms = (t * 1000.0).round() as i64;
                if ms < now - MAX_PAST_MS {
                    return Err(invalid(format!(
                        "The parameter {at}.Timestamp must specify a time no more than two weeks in the past."
                    )));
                }
                if ms > now + MAX_FUTURE_MS {
                    return Err(invalid(format!(
                        "The parameter {at}.Timestamp must specify a time no more than two hours in the future."
                    )));
                }
                ms
            }
            None => now,
        };
        let given: Vec<&str> = [
            d.value.map(|_| "Value"),
            d.statistic_values.as_ref().map(|_| "StatisticValues"),
            d.values.as_ref().map(|_| "Values"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.len() > 1 {
            return Err(combination(format!(
                "The parameters {at}.{} and {at}.{} are mutually exclusive and you have specified both.",
                given[0], given[1]
            )));
        }
        if d.counts.is_some() && d.values.is_none() {
            return Err(combination(format!(
                "The parameter {at}.Counts may only be given with {at}.Values."
            )));
        }
        let value = if let Some(v) = d.value {
            check_value(v, &format!("{at}.Value"))?;
            PointValue::Values(vec![(v, 1.0)])
        } else if let Some(s) = &d.statistic_values {
            for (v, name) in [
                (s.sample_count, "SampleCount"),
                (s.sum, "Sum"),
                (s.minimum, "Minimum"),
                (s.maximum, "Maximum"),
            ] {
                check_value(v, &format!("{at}.StatisticValues.{name}"))?;
            }
            if s.sample_count <= 0.0 {
                return Err(invalid(format!(
                    "The value {} for parameter {at}.StatisticValues.SampleCount is invalid.",
                    s.sample_count
                )));
            }
            if s.minimum > s.maximum {
                return Err(combination(format!(
                    "The parameter {at}.StatisticValues.Maximum must be greater than {at}.StatisticValues.Minimum."
                )));
            }
            PointValue::Set { count: s.sample_count, sum: s.sum, min: s.minimum, max: s.maximum }
        } else if let Some(vs) = &d.values {
            if vs.len() > MAX_VALUES {
                return Err(invalid(format!(
                    "The collection {at}.Values must not have a size greater than {MAX_VALUES}."
                )));
            }
            if vs.is_empty() {
                return Err(missing(&format!("{at}.Values")));
            }
            let counts = d.counts.clone().unwrap_or_else(|| vec![1.0; vs.len()]);
            if counts.len() != vs.len() {
                return Err(combination(format!(
                    "The parameters {at}.Values and {at}.Counts must be of the same size."
                )));
            }
            let mut pairs = Vec::with_capacity(vs.len());
            for (j, (&v, &c)) in vs.iter().zip(&counts).enumerate() {
                check_value(v, &format!("{at}.Values.member.{}", j + 1))?;
                if !c.is_finite() || c < 0.0 {
                    return Err(invalid(format!(
                        "The value {c} for parameter {at}.Counts.member.{} is invalid.",
                        j + 1
                    )));
                }
                if c > 0.0 {
                    pairs.push((v, c));
                }
            }
            PointValue::Values(pairs)
        } else {
            return Err(combination(format!(
                "At least one of the parameters {at}.Value, {at}.StatisticValues and {at}.Values must be specified."
            )));
        };
        points.push(Point {
            metric: (account.to_string(), region.to_string(), ns.to_string(), d.metric_name.clone()),
            dims,
            unit,
            ts_ms,
            high_res,
            value,
        });
    }
    Ok(points)
}

/// An empty object, what several operations answer.
pub fn empty() -> Value {
    Value::Object(Default::default())
}

#[cfg(test)]
mod tests;
