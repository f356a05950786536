//! Metric alarms: their configuration, state, history, tags and actions, and their evaluation.
//!
//! An alarm is evaluated (by [`evaluate_due`], which the binary calls every few seconds on the
//! injected clock) once per period, or once a minute for periods of a minute or more, as
//! CloudWatch does. An evaluation reads the last `EvaluationPeriods` complete periods (the
//! period in progress is never judged half-filled) and decides with [`decide`]: `ALARM` when at
//! least `DatapointsToAlarm` of them breach; otherwise `OK` when the datapoints that do not breach
//! make `ALARM` impossible; missing datapoints per `TreatMissingData` (`missing`, the default:
//! all missing is `INSUFFICIENT_DATA`, some missing keeps what the present ones decide, else the
//! state; `ignore`: the state is kept; `breaching`/`notBreaching`: counted as such). Reasons and
//! their JSON data are written in CloudWatch's words. A state change is recorded in the history
//! (kept 30 days) and runs the actions of the new state through [`AlarmActions`] when actions are
//! enabled.
//!
//! Alarms are configuration, a few per service: they are kept in `alarms.json` beside the metric
//! store, rewritten atomically (written, fsynced, renamed) on every change before it is
//! acknowledged.

use crate::query::{self, Plan};
use crate::sketch::Stat;
use crate::store::write_atomic;
use crate::{CloudWatch, check_name, check_unit, combination, dimensions, internal, invalid, lock, missing};
use gantry_core::{AlarmState, ServiceError};
use gantry_model::cloudwatch as m;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// History is kept this long (30 days).
pub const HISTORY_MS: i64 = 30 * 86_400_000;

/// What an alarm action asks of the service its ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmAction {
    pub account: String,
    pub region: String,
    pub alarm_name: String,
    pub alarm_arn: String,
    /// The action's ARN: an Application Auto Scaling policy, an SNS topic, ...
    pub action: String,
    /// The state the alarm went to.
    pub state: AlarmState,
}

/// Where alarm actions go. Application Auto Scaling plugs in here when it exists; until then
/// [`RecordedActions`] keeps them.
pub trait AlarmActions: Send + Sync {
    /// Carries out an action; the error is CloudWatch's history text after "Received error: ".
    fn invoke(&self, action: &AlarmAction) -> Result<(), String>;
}

/// Keeps every action it is given (the last 1,000), for a service that does not exist yet; the
/// history says the action was recorded.
#[derive(Debug, Default)]
pub struct RecordedActions {
    pub actions: Mutex<Vec<AlarmAction>>,
}

impl AlarmActions for RecordedActions {
    fn invoke(&self, action: &AlarmAction) -> Result<(), String> {
        let mut all = lock(&self.actions);
        if all.len() >= 1000 {
            all.remove(0);
        }
        all.push(action.clone());
        Ok(())
    }
}

/// One stored alarm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alarm {
    pub account: String,
    pub region: String,
    /// The configuration as PutMetricAlarm gave it (tags excepted).
    pub config: m::PutMetricAlarmInput,
    pub state_value: AlarmState,
    pub state_reason: String,
    #[serde(default)]
    pub state_reason_data: Option<String>,
    pub state_updated_ms: i64,
    pub state_transitioned_ms: i64,
    pub config_updated_ms: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// When it is next evaluated (epoch seconds).
    #[serde(default)]
    pub next_eval_s: i64,
    /// The datapoints of the last evaluation, newest first (in memory only): what a scaling
    /// policy invoked by the alarm reads.
    #[serde(default, skip_serializing)]
    pub last_datapoints: Vec<f64>,
}

impl Alarm {
    pub fn arn(&self) -> String {
        arn(&self.account, &self.region, &self.config.alarm_name)
    }

    fn render(&self) -> m::MetricAlarm {
        let c = &self.config;
        m::MetricAlarm {
            alarm_name: Some(c.alarm_name.clone()),
            alarm_arn: Some(self.arn()),
            alarm_description: c.alarm_description.clone(),
            alarm_configuration_updated_timestamp: Some(self.config_updated_ms as f64 / 1000.0),
            actions_enabled: Some(c.actions_enabled.unwrap_or(true)),
            ok_actions: Some(c.ok_actions.clone().unwrap_or_default()),
            alarm_actions: Some(c.alarm_actions.clone().unwrap_or_default()),
            insufficient_data_actions: Some(c.insufficient_data_actions.clone().unwrap_or_default()),
            state_value: Some(self.state_value.as_str().into()),
            state_reason: Some(self.state_reason.clone()),
            state_reason_data: self.state_reason_data.clone(),
            state_updated_timestamp: Some(self.state_updated_ms as f64 / 1000.0),
            metric_name: c.metric_name.clone(),
            namespace: c.namespace.clone(),
            statistic: c.statistic.clone(),
            extended_statistic: c.extended_statistic.clone(),
            dimensions: c.metric_name.as_ref().map(|_| c.dimensions.clone().unwrap_or_default()),
            period: c.period,
            unit: c.unit.clone(),
            evaluation_periods: c.evaluation_periods,
            datapoints_to_alarm: c.datapoints_to_alarm,
            threshold: c.threshold,
            comparison_operator: c.comparison_operator.clone(),
            treat_missing_data: c.treat_missing_data.clone(),
            evaluate_low_sample_count_percentile: c.evaluate_low_sample_count_percentile.clone(),
            metrics: c.metrics.clone(),
            threshold_metric_id: c.threshold_metric_id.clone(),
            state_transitioned_timestamp: Some(self.state_transitioned_ms as f64 / 1000.0),
            ..Default::default()
        }
    }
}

pub fn arn(account: &str, region: &str, name: &str) -> String {
    format!("arn:aws:cloudwatch:{region}:{account}:alarm:{name}")
}

/// One history item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    pub account: String,
    pub region: String,
    pub alarm_name: String,
    pub ts_ms: i64,
    pub kind: String,
    pub summary: String,
    pub data: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    alarms: Vec<Alarm>,
    history: Vec<History>,
}

/// Every alarm and its history.
#[derive(Debug, Default)]
pub struct Alarms {
    path: PathBuf,
    alarms: BTreeMap<(String, String, String), Alarm>,
    history: Vec<History>,
}

impl Alarms {
    pub fn load(dir: &Path) -> std::io::Result<Alarms> {
        let path = dir.join("alarms.json");
        let mut out = Alarms { path: path.clone(), ..Default::default() };
        if path.exists() {
            let f: File = serde_json::from_slice(&std::fs::read(&path)?)
                .map_err(|e| std::io::Error::other(format!("{} is unreadable: {e}", path.display())))?;
            for a in f.alarms {
                out.alarms.insert((a.account.clone(), a.region.clone(), a.config.alarm_name.clone()), a);
            }
            out.history = f.history;
        }
        Ok(out)
    }

    fn save(&self) -> Result<(), ServiceError> {
        let f = File { alarms: self.alarms.values().cloned().collect(), history: self.history.clone() };
        let bytes = serde_json::to_vec(&f).map_err(internal)?;
        write_atomic(&self.path, &bytes).map_err(internal)
    }

    pub fn reset(&mut self) -> Result<(), ServiceError> {
        self.alarms.clear();
        self.history.clear();
        self.save()
    }

    pub fn get(&self, account: &str, region: &str, name: &str) -> Option<&Alarm> {
        self.alarms.get(&(account.to_string(), region.to_string(), name.to_string()))
    }

    fn scope(&self, account: &str, region: &str) -> impl Iterator<Item = &Alarm> {
        let (a, r) = (account.to_string(), region.to_string());
        self.alarms
            .range((a.clone(), r.clone(), String::new())..)
            .take_while(move |((x, y, _), _)| *x == a && *y == r)
            .map(|(_, v)| v)
    }

    pub fn prune_history(&mut self, now_ms: i64) {
        let before = self.history.len();
        self.history.retain(|h| h.ts_ms >= now_ms - HISTORY_MS);
        if self.history.len() != before {
            let _ = self.save();
        }
    }

    fn record(&mut self, a: &Alarm, ts_ms: i64, kind: &str, summary: String, data: String) {
        self.history.push(History {
            account: a.account.clone(),
            region: a.region.clone(),
            alarm_name: a.config.alarm_name.clone(),
            ts_ms,
            kind: kind.to_string(),
            summary,
            data,
        });
    }
}

/// `2026-12-04T12:06:12.345+0000`, CloudWatch's time in reason data.
pub fn iso(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = gantry_core::civil::civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}+0000")
}

/// `04/12/26 12:00:00` (dd/MM/yy), how a reason shows a datapoint's time.
fn short_date(s: i64) -> String {
    let (y, mo, d) = gantry_core::civil::civil_from_days(s.div_euclid(86_400));
    let rem = s.rem_euclid(86_400);
    format!("{d:02}/{mo:02}/{:02} {:02}:{:02}:{:02}", y % 100, rem / 3600, rem / 60 % 60, rem % 60)
}

/// A number as CloudWatch (Java) prints it: `250.0`, `0.5`.
fn num(v: f64) -> String {
    format!("{v:?}")
}

const OPERATORS: [(&str, &str); 4] = [
    ("GreaterThanOrEqualToThreshold", "greater than or equal to"),
    ("GreaterThanThreshold", "greater than"),
    ("LessThanThreshold", "less than"),
    ("LessThanOrEqualToThreshold", "less than or equal to"),
];

fn breaches(op: &str, v: f64, threshold: f64) -> bool {
    match op {
        "GreaterThanOrEqualToThreshold" => v >= threshold,
        "GreaterThanThreshold" => v > threshold,
        "LessThanThreshold" => v < threshold,
        _ => v <= threshold,
    }
}

/// What one evaluation decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// `None`: keep the current state.
    pub state: Option<AlarmState>,
    pub reason: String,
    pub reason_data: serde_json::Value,
}

/// What [`decide`] needs of an alarm.
#[derive(Debug, Clone)]
pub struct Rule<'a> {
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub threshold: f64,
    pub operator: &'a str,
    pub treat_missing: &'a str,
    pub period: i64,
    pub statistic: Option<&'a str>,
    pub current: AlarmState,
}

/// A period's start (epoch seconds) and its value with its sample count, or `None` when missing.
pub type PeriodValue = (i64, Option<(f64, Option<f64>)>);

/// Decides an alarm's state from its last `evaluation_periods` periods, oldest first: each the
/// period's start (epoch seconds) and its value (and sample count) or `None` when missing.
pub fn decide(rule: &Rule<'_>, points: &[PeriodValue], now_ms: i64) -> Decision {
    let phrase = OPERATORS.iter().find(|(o, _)| *o == rule.operator).map_or("greater than", |(_, p)| *p);
    let n = rule.evaluation_periods;
    let m = rule.datapoints_to_alarm.clamp(1, n.max(1));
    let present: Vec<(i64, f64)> = points.iter().filter_map(|&(t, v)| v.map(|(v, _)| (t, v))).collect();
    let missing = points.len() - present.len();
    let breaching_present =
        present.iter().filter(|(_, v)| breaches(rule.operator, *v, rule.threshold)).count();
    let (breaching, not_breaching) = match rule.treat_missing {
        "breaching" => (breaching_present + missing, present.len() - breaching_present),
        "notBreaching" => (breaching_present, present.len() - breaching_present + missing),
        _ => (breaching_present, present.len() - breaching_present),
    };
    let start_s = points.first().map(|p| p.0).unwrap_or(now_ms / 1000);
    let mut data = json!({
        "version": "1.0",
        "queryDate": iso(now_ms),
        "startDate": iso(start_s * 1000),
        "period": rule.period,
        "recentDatapoints": present.iter().rev().map(|(_, v)| *v).collect::<Vec<_>>(),
        "threshold": rule.threshold,
        "evaluatedDatapoints": points.iter().rev().map(|&(t, v)| match v {
            Some((v, Some(c))) => json!({"timestamp": iso(t * 1000), "sampleCount": c, "value": v}),
            Some((v, None)) => json!({"timestamp": iso(t * 1000), "value": v}),
            None => json!({"timestamp": iso(t * 1000)}),
        }).collect::<Vec<_>>(),
    });
    if let Some(s) = rule.statistic {
        data["statistic"] = json!(s);
    }
    let listed = |pts: &[(i64, f64)]| {
        pts.iter()
            .rev()
            .map(|(t, v)| format!("{} ({})", num(*v), short_date(*t)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let thr = num(rule.threshold);
    let plural = |k: usize| if k == 1 { "datapoint" } else { "datapoints" };
    if present.is_empty() && matches!(rule.treat_missing, "breaching" | "notBreaching") {
        let (state, as_what) = if rule.treat_missing == "breaching" && breaching >= m {
            (AlarmState::Alarm, "Breaching")
        } else {
            (AlarmState::Ok, "NonBreaching")
        };
        let state = if state == AlarmState::Alarm || not_breaching > n - m { state } else { rule.current };
        return Decision {
            state: Some(state),
            reason: format!(
                "Threshold Crossed: no datapoints were received for {n} period{} and {missing} missing {} were treated as [{as_what}].",
                if n == 1 { "" } else { "s" },
                plural(missing)
            ),
            reason_data: data,
        };
    }
    if breaching >= m {
        let crossing: Vec<(i64, f64)> =
            present.iter().copied().filter(|(_, v)| breaches(rule.operator, *v, rule.threshold)).collect();
        let from = rule.current;
        return Decision {
            state: Some(AlarmState::Alarm),
            reason: format!(
                "Threshold Crossed: {breaching} out of the last {n} {} [{}] {} {phrase} the threshold ({thr}) (minimum {m} {} for {from} -> ALARM transition).",
                plural(n),
                listed(&crossing),
                if breaching == 1 { "was" } else { "were" },
                plural(m)
            ),
            reason_data: data,
        };
    }
    if present.is_empty() {
        // Every datapoint missing: `missing` knows nothing, `ignore` keeps the state.
        let state = if rule.treat_missing == "ignore" { None } else { Some(AlarmState::InsufficientData) };
        return Decision {
            state,
            reason: format!(
                "Insufficient Data: {n} {} {} unknown.",
                plural(n),
                if n == 1 { "was" } else { "were" }
            ),
            reason_data: data,
        };
    }
    // ALARM is out of reach once more than N - M datapoints do not breach; with `ignore`, a
    // missing datapoint might still have breached.
    let decided = not_breaching > n - m || rule.treat_missing == "missing";
    if !decided {
        return Decision { state: None, reason: String::new(), reason_data: data };
    }
    let calm: Vec<(i64, f64)> =
        present.iter().copied().filter(|(_, v)| !breaches(rule.operator, *v, rule.threshold)).collect();
    Decision {
        state: Some(AlarmState::Ok),
        reason: format!(
            "Threshold Crossed: {} {} [{}] {} not {phrase} the threshold ({thr}).",
            calm.len(),
            plural(calm.len()),
            listed(&calm),
            if calm.len() == 1 { "was" } else { "were" }
        ),
        reason_data: data,
    }
}

fn check_actions(list: &Option<Vec<String>>, param: &str) -> Result<(), ServiceError> {
    let list = list.as_deref().unwrap_or_default();
    if list.len() > 5 {
        return Err(invalid(format!("The collection {param} must not have a size greater than 5.")));
    }
    for (i, a) in list.iter().enumerate() {
        let parts: Vec<&str> = a.splitn(6, ':').collect();
        if parts.len() < 6 || parts[0] != "arn" || parts[2].is_empty() || a.len() > 1024 {
            return Err(invalid(format!("Invalid arn syntax: {a} in {param}.member.{}", i + 1)));
        }
    }
    Ok(())
}

/// The evaluation plan of an alarm: one query (`m1` for a metric) whose values are judged.
fn alarm_plan(c: &m::PutMetricAlarmInput) -> Result<Plan, ServiceError> {
    let queries = match &c.metrics {
        Some(ms) => ms.clone(),
        None => vec![m::MetricDataQuery {
            id: "m1".into(),
            metric_stat: Some(m::MetricStat {
                metric: m::Metric {
                    namespace: c.namespace.clone(),
                    metric_name: c.metric_name.clone(),
                    dimensions: c.dimensions.clone(),
                },
                period: c.period.unwrap_or(60),
                stat: c
                    .statistic
                    .clone()
                    .or_else(|| c.extended_statistic.clone())
                    .unwrap_or_else(|| "Average".into()),
                unit: c.unit.clone(),
            }),
            return_data: Some(true),
            ..Default::default()
        }],
    };
    query::plan(queries, "Metrics")
}

fn check_period(p: i32, param: &str) -> Result<(), ServiceError> {
    if !(p == 10 || p == 30 || (p >= 60 && p % 60 == 0)) {
        return Err(invalid(format!("The parameter {param} must be 10, 30 or a multiple of 60, not {p}.")));
    }
    Ok(())
}

fn validate(c: &m::PutMetricAlarmInput) -> Result<i64, ServiceError> {
    check_name(&c.alarm_name, "AlarmName", 255)?;
    if c.alarm_description.as_deref().is_some_and(|d| d.len() > 1024) {
        return Err(invalid("The parameter AlarmDescription must be no longer than 1024 characters."));
    }
    check_actions(&c.ok_actions, "OKActions")?;
    check_actions(&c.alarm_actions, "AlarmActions")?;
    check_actions(&c.insufficient_data_actions, "InsufficientDataActions")?;
    let evaluation_periods = c.evaluation_periods.ok_or_else(|| missing("EvaluationPeriods"))?;
    if evaluation_periods < 1 {
        return Err(invalid(format!(
            "The value {evaluation_periods} for parameter EvaluationPeriods is invalid."
        )));
    }
    if let Some(d) = c.datapoints_to_alarm
        && (d < 1 || d > evaluation_periods)
    {
        return Err(invalid(format!(
            "DatapointsToAlarm ({d}) must be between 1 and EvaluationPeriods ({evaluation_periods})."
        )));
    }
    let op = c.comparison_operator.as_deref().ok_or_else(|| missing("ComparisonOperator"))?;
    if !OPERATORS.iter().any(|(o, _)| *o == op) {
        return Err(invalid(format!(
            "The value {op} for parameter ComparisonOperator is invalid (anomaly detection bands are not served)."
        )));
    }
    if c.threshold_metric_id.is_some() {
        return Err(invalid("ThresholdMetricId is only valid with anomaly detection, which is not served."));
    }
    if c.threshold.is_none() {
        return Err(missing("Threshold"));
    }
    if let Some(t) = c.treat_missing_data.as_deref()
        && !["breaching", "notBreaching", "ignore", "missing"].contains(&t)
    {
        return Err(invalid(format!("The value {t} for parameter TreatMissingData is invalid.")));
    }
    if let Some(e) = c.evaluate_low_sample_count_percentile.as_deref()
        && !["evaluate", "ignore"].contains(&e)
    {
        return Err(invalid(format!(
            "The value {e} for parameter EvaluateLowSampleCountPercentile is invalid."
        )));
    }
    let period = match &c.metrics {
        Some(ms) => {
            if c.metric_name.is_some()
                || c.namespace.is_some()
                || c.statistic.is_some()
                || c.extended_statistic.is_some()
                || c.dimensions.is_some()
                || c.period.is_some()
                || c.unit.is_some()
            {
                return Err(combination(
                    "The parameters MetricName, Namespace, Statistic, ExtendedStatistic, Dimensions, Period and Unit may not be given with Metrics.",
                ));
            }
            let returning: Vec<&m::MetricDataQuery> =
                ms.iter().filter(|q| q.return_data.unwrap_or(true)).collect();
            if returning.len() != 1 {
                return Err(invalid("Exactly one element of the metrics list should return data."));
            }
            for (i, q) in ms.iter().enumerate() {
                if let Some(s) = &q.metric_stat {
                    check_period(s.period, &format!("Metrics.member.{}.MetricStat.Period", i + 1))?;
                }
            }
            let q = returning[0];
            let p = q
                .metric_stat
                .as_ref()
                .map(|s| s.period)
                .or(q.period)
                .or_else(|| ms.iter().find_map(|q| q.metric_stat.as_ref().map(|s| s.period)))
                .unwrap_or(60);
            p as i64
        }
        None => {
            let name = c.metric_name.as_deref().ok_or_else(|| missing("MetricName"))?;
            check_name(name, "MetricName", 255)?;
            check_name(c.namespace.as_deref().ok_or_else(|| missing("Namespace"))?, "Namespace", 255)?;
            dimensions(&c.dimensions, "Dimensions")?;
            match (&c.statistic, &c.extended_statistic) {
                (Some(_), Some(_)) => {
                    return Err(combination(
                        "The parameters Statistic and ExtendedStatistic are mutually exclusive and you have specified both.",
                    ));
                }
                (None, None) => {
                    return Err(combination(
                        "Exactly one of the parameters Statistic and ExtendedStatistic must be specified.",
                    ));
                }
                (Some(s), None) => {
                    if !["SampleCount", "Average", "Sum", "Minimum", "Maximum"].contains(&s.as_str()) {
                        return Err(invalid(format!("The value {s} for parameter Statistic is invalid.")));
                    }
                }
                (None, Some(e)) => {
                    if !matches!(Stat::parse(e), Some(Stat::Percentile(_))) {
                        return Err(invalid(format!(
                            "The value {e} for parameter ExtendedStatistic is invalid."
                        )));
                    }
                }
            }
            if c.unit.is_some() {
                check_unit(&c.unit, "Unit")?;
            }
            let p = c.period.ok_or_else(|| missing("Period"))?;
            check_period(p, "Period")?;
            p as i64
        }
    };
    if period * evaluation_periods as i64 > 86_400 * 7 {
        return Err(invalid(
            "The evaluation period (Period * EvaluationPeriods) must be no more than 7 days (604,800 seconds).",
        ));
    }
    alarm_plan(c)?;
    Ok(period)
}

fn tags_of(tags: &Option<Vec<m::Tag>>) -> Result<BTreeMap<String, String>, ServiceError> {
    let tags = tags.as_deref().unwrap_or_default();
    if tags.len() > 50 {
        return Err(invalid("The collection Tags must not have a size greater than 50."));
    }
    let mut out = BTreeMap::new();
    for t in tags {
        if t.key.is_empty() || t.key.len() > 128 || t.value.len() > 256 {
            return Err(invalid(format!("The tag {}={} is invalid.", t.key, t.value)));
        }
        out.insert(t.key.clone(), t.value.clone());
    }
    Ok(out)
}

pub fn put_metric_alarm(
    cw: &CloudWatch,
    (account, region): (&str, &str),
    mut input: m::PutMetricAlarmInput,
) -> Result<(), ServiceError> {
    validate(&input)?;
    let tags = tags_of(&input.tags)?;
    input.tags = None;
    let now = cw.clock.now().0;
    let mut alarms = lock(&cw.alarms);
    let key = (account.to_string(), region.to_string(), input.alarm_name.clone());
    let (alarm, created) = match alarms.alarms.get(&key) {
        Some(old) => {
            let mut a = old.clone();
            a.config = input;
            a.config_updated_ms = now;
            a.tags.extend(tags);
            a.next_eval_s = 0;
            (a, false)
        }
        None => {
            if alarms.scope(account, region).count() >= 10_000 {
                return Err(ServiceError::sender(
                    "LimitExceeded",
                    "The maximum number of alarms (10,000) has been reached.",
                ));
            }
            (
                Alarm {
                    account: account.to_string(),
                    region: region.to_string(),
                    config: input,
                    state_value: AlarmState::InsufficientData,
                    state_reason: "Unchecked: Initial alarm creation".into(),
                    state_reason_data: None,
                    state_updated_ms: now,
                    state_transitioned_ms: now,
                    config_updated_ms: now,
                    tags,
                    next_eval_s: 0,
                    last_datapoints: Vec::new(),
                },
                true,
            )
        }
    };
    let name = alarm.config.alarm_name.clone();
    let rendered = serde_json::to_value(alarm.render()).unwrap_or_default();
    let (summary, data) = if created {
        (
            format!("Alarm \"{name}\" created"),
            json!({"version": "1.0", "type": "Create", "createdAlarm": rendered}),
        )
    } else {
        (
            format!("Alarm \"{name}\" updated"),
            json!({"version": "1.0", "type": "Update", "updatedAlarm": rendered}),
        )
    };
    alarms.record(&alarm, now, "ConfigurationUpdate", summary, data.to_string());
    alarms.alarms.insert(key, alarm);
    alarms.save()
}

fn page_token(token: &Option<String>, prefix: &str) -> Result<usize, ServiceError> {
    match token {
        None => Ok(0),
        Some(t) => t.strip_prefix(prefix).and_then(|n| n.parse().ok()).ok_or_else(|| {
            ServiceError::sender(
                "InvalidNextToken",
                format!("The value {t} for parameter NextToken is invalid."),
            )
        }),
    }
}

fn check_state(s: &str, param: &str) -> Result<AlarmState, ServiceError> {
    AlarmState::parse(s).ok_or_else(|| invalid(format!("The value {s} for parameter {param} is invalid.")))
}

pub fn describe_alarms(
    cw: &CloudWatch,
    (account, region): (&str, &str),
    input: m::DescribeAlarmsInput,
) -> Result<m::DescribeAlarmsOutput, ServiceError> {
    if input.alarm_names.is_some() && input.alarm_name_prefix.is_some() {
        return Err(combination(
            "The parameters AlarmNames and AlarmNamePrefix are mutually exclusive and you have specified both.",
        ));
    }
    let wanted = input.state_value.as_deref().map(|s| check_state(s, "StateValue")).transpose()?;
    let max = input.max_records.unwrap_or(50);
    if !(1..=100).contains(&max) {
        return Err(invalid(format!("The value {max} for parameter MaxRecords is invalid.")));
    }
    let start = page_token(&input.next_token, "da-")?;
    let types = input.alarm_types.clone().unwrap_or_else(|| vec!["MetricAlarm".into()]);
    for t in &types {
        if !["MetricAlarm", "CompositeAlarm"].contains(&t.as_str()) {
            return Err(invalid(format!("The value {t} for parameter AlarmTypes is invalid.")));
        }
    }
    let alarms = lock(&cw.alarms);
    let all: Vec<m::MetricAlarm> = if !types.iter().any(|t| t == "MetricAlarm")
        || input.children_of_alarm_name.is_some()
        || input.parents_of_alarm_name.is_some()
    {
        vec![]
    } else {
        alarms
            .scope(account, region)
            .filter(|a| input.alarm_names.as_ref().is_none_or(|n| n.contains(&a.config.alarm_name)))
            .filter(|a| {
                input.alarm_name_prefix.as_ref().is_none_or(|p| a.config.alarm_name.starts_with(p.as_str()))
            })
            .filter(|a| wanted.is_none_or(|s| s == a.state_value))
            .filter(|a| {
                input.action_prefix.as_ref().is_none_or(|p| {
                    let c = &a.config;
                    [&c.ok_actions, &c.alarm_actions, &c.insufficient_data_actions]
                        .iter()
                        .any(|l| l.iter().flatten().any(|x| x.starts_with(p.as_str())))
                })
            })
            .map(Alarm::render)
            .collect()
    };
    let total = all.len();
    let page: Vec<m::MetricAlarm> = all.into_iter().skip(start).take(max as usize).collect();
    let next = (start + page.len() < total).then(|| format!("da-{}", start + page.len()));
    Ok(m::DescribeAlarmsOutput {
        composite_alarms: Some(vec![]),
        metric_alarms: Some(page),
        log_alarms: None,
        next_token: next,
    })
}

pub fn describe_alarms_for_metric(
    cw: &CloudWatch,
    (account, region): (&str, &str),
    input: m::DescribeAlarmsForMetricInput,
) -> Result<m::DescribeAlarmsForMetricOutput, ServiceError> {
    let dims = match &input.dimensions {
        Some(_) => Some(dimensions(&input.dimensions, "Dimensions")?),
        None => None,
    };
    let alarms = lock(&cw.alarms);
    let found = alarms
        .scope(account, region)
        .filter(|a| {
            let c = &a.config;
            c.metric_name.as_deref() == Some(input.metric_name.as_str())
                && c.namespace.as_deref() == Some(input.namespace.as_str())
                && dims.as_ref().is_none_or(|d| dimensions(&c.dimensions, "").is_ok_and(|x| x == *d))
                && input.statistic.as_ref().is_none_or(|s| c.statistic.as_ref() == Some(s))
                && input.extended_statistic.as_ref().is_none_or(|s| c.extended_statistic.as_ref() == Some(s))
                && input.period.is_none_or(|p| c.period == Some(p))
                && input.unit.as_ref().is_none_or(|u| c.unit.as_ref() == Some(u))
        })
        .map(Alarm::render)
        .collect();
    Ok(m::DescribeAlarmsForMetricOutput { metric_alarms: Some(found) })
}

pub fn delete_alarms(
    cw: &CloudWatch,
    (account, region): (&str, &str),
    input: m::DeleteAlarmsInput,
) -> Result<(), ServiceError> {
    if input.alarm_names.len() > 100 {
        return Err(invalid("The collection AlarmNames must not have a size greater than 100."));
    }
    let mut alarms = lock(&cw.alarms);
    let mut changed = false;
    for n in &input.alarm_names {
        changed |= alarms.alarms.remove(&(account.to_string(), region.to_string(), n.clone())).is_some();
    }
    if changed {
        alarms.history.retain(|h| {
            !(h.account == account && h.region == region && input.alarm_names.contains(&h.alarm_name))
        });
        alarms.save()?;
    }
    Ok(())
}

/// Moves an alarm to `state` with a reason: history, then actions.
fn transition(
    cw: &CloudWatch,
    alarms: &mut Alarms,
    key: &(String, String, String),
    state: AlarmState,
    reason: String,
    data: Option<String>,
    now: i64,
) {
    let Some(a) = alarms.alarms.get_mut(key) else { return };
    let old = (a.state_value, a.state_reason.clone());
    a.state_value = state;
    a.state_reason = reason;
    a.state_reason_data = data;
    a.state_updated_ms = now;
    if old.0 == state {
        return;
    }
    a.state_transitioned_ms = now;
    let a = a.clone();
    let name = &a.config.alarm_name;
    let data = json!({
        "version": "1.0",
        "oldState": {"stateValue": old.0.as_str(), "stateReason": old.1},
        "newState": {"stateValue": state.as_str(), "stateReason": a.state_reason, "stateReasonData": a.state_reason_data.as_deref().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())},
    });
    alarms.record(
        &a,
        now,
        "StateUpdate",
        format!("Alarm updated from {} to {state}", old.0),
        data.to_string(),
    );
    if !a.config.actions_enabled.unwrap_or(true) {
        return;
    }
    let list = match state {
        AlarmState::Ok => &a.config.ok_actions,
        AlarmState::Alarm => &a.config.alarm_actions,
        AlarmState::InsufficientData => &a.config.insufficient_data_actions,
    };
    for action in list.iter().flatten() {
        let call = AlarmAction {
            account: a.account.clone(),
            region: a.region.clone(),
            alarm_name: name.clone(),
            alarm_arn: a.arn(),
            action: action.clone(),
            state,
        };
        let (summary, ok) = match cw.actions.invoke(&call) {
            Ok(()) => (format!("Successfully executed action {action}"), true),
            Err(e) => (format!("Failed to execute action {action}. Received error: \"{e}\""), false),
        };
        let data = json!({"actionState": if ok { "Succeeded" } else { "Failed" }, "stateUpdateTimestamp": now, "notificationResource": action});
        alarms.record(&a, now, "Action", summary, data.to_string());
    }
}

/// An alarm that stays in ALARM invokes its scaling policies again at each evaluation (once a
/// minute, or once a period for shorter periods), as CloudWatch does for Auto Scaling actions;
/// other actions run only on a state change. No history item is written for a repeat.
fn reinvoke_scaling(cw: &CloudWatch, a: &Alarm) {
    if !a.config.actions_enabled.unwrap_or(true) {
        return;
    }
    for action in a.config.alarm_actions.iter().flatten().filter(|x| x.starts_with("arn:aws:autoscaling:")) {
        let call = AlarmAction {
            account: a.account.clone(),
            region: a.region.clone(),
            alarm_name: a.config.alarm_name.clone(),
            alarm_arn: a.arn(),
            action: action.clone(),
            state: AlarmState::Alarm,
        };
        if let Err(e) = cw.actions.invoke(&call) {
            tracing::debug!(alarm = %a.config.alarm_name, error = %e, "scaling action not taken");
        }
    }
}

pub fn set_alarm_state(
    cw: &CloudWatch,
    (account, region): (&str, &str),
    input: m::SetAlarmStateInput,
) -> Result<(), ServiceError> {
    let state = check_state(&input.state_value, "StateValue")?;
    if input.state_reason.len() > 1023 {
        return Err(invalid("The parameter StateReason must be no longer than 1023 characters."));
    }
    if let Some(d) = &input.state_reason_data
        && serde_json::from_str::<serde_json::Value>(d).is_err()
    {
        return Err(ServiceError::sender(
            "InvalidFormat",
            format!("The StateReasonData {d} is not valid JSON."),
        ));
    }
    let now = cw.clock.now().0;
    let mut alarms = lock(&cw.alarms);
    let key = (account.to_string(), region.to_string(), input.alarm_name.clone());
    if !alarms.alarms.contains_key(&key) {
        return Err(ServiceError::sender(
            "ResourceNotFound",
            format!("Alarm {} does not exist", input.alarm_name),
        )
        .with_status(404));
    }
    // A policy the new state invokes reads the datapoints this call gives (usually none), not
    // those of the last evaluation.
    if let Some(a) = alarms.alarms.get_mut(&key) {
        a.last_datapoints.clear();
    }
    transition(cw, &mut alarms, &key, state, input.state_reason, input.state_reason_data, now);
    alarms.save()
}

pub fn describe_alarm_history(
    cw: &CloudWatch,
    (account, region): (&str, &str),
    input: m::DescribeAlarmHistoryInput,
) -> Result<m::DescribeAlarmHistoryOutput, ServiceError> {
    if let Some(t) = &input.history_item_type
        && ![
            "ConfigurationUpdate",
            "StateUpdate",
            "Action",
            "AlarmContributorStateUpdate",
            "AlarmContributorAction",
        ]
        .contains(&t.as_str())
    {
        return Err(invalid(format!("The value {t} for parameter HistoryItemType is invalid.")));
    }
    let max = input.max_records.unwrap_or(100);
    if !(1..=100).contains(&max) {
        return Err(invalid(format!("The value {max} for parameter MaxRecords is invalid.")));
    }
    let ascending = match input.scan_by.as_deref() {
        None | Some("TimestampDescending") => false,
        Some("TimestampAscending") => true,
        Some(o) => return Err(invalid(format!("The value {o} for parameter ScanBy is invalid."))),
    };
    let start = page_token(&input.next_token, "dah-")?;
    let from = input.start_date.map(|t| (t * 1000.0) as i64);
    let to = input.end_date.map(|t| (t * 1000.0) as i64);
    let alarms = lock(&cw.alarms);
    let mut items: Vec<&History> = alarms
        .history
        .iter()
        .filter(|h| h.account == account && h.region == region)
        .filter(|h| input.alarm_name.as_ref().is_none_or(|n| *n == h.alarm_name))
        .filter(|h| input.history_item_type.as_ref().is_none_or(|t| *t == h.kind))
        .filter(|h| from.is_none_or(|f| h.ts_ms >= f) && to.is_none_or(|t| h.ts_ms <= t))
        .collect();
    if !ascending {
        items.reverse();
    }
    let total = items.len();
    let page: Vec<m::AlarmHistoryItem> = items
        .into_iter()
        .skip(start)
        .take(max as usize)
        .map(|h| m::AlarmHistoryItem {
            alarm_name: Some(h.alarm_name.clone()),
            alarm_type: Some("MetricAlarm".into()),
            timestamp: Some(h.ts_ms as f64 / 1000.0),
            history_item_type: Some(h.kind.clone()),
            history_summary: Some(h.summary.clone()),
            history_data: Some(h.data.clone()),
            ..Default::default()
        })
        .collect();
    let next = (start + page.len() < total).then(|| format!("dah-{}", start + page.len()));
    Ok(m::DescribeAlarmHistoryOutput { alarm_history_items: Some(page), next_token: next })
}

pub fn set_actions_enabled(
    cw: &CloudWatch,
    (account, region): (&str, &str),
    names: &[String],
    enabled: bool,
) -> Result<(), ServiceError> {
    if names.len() > 100 {
        return Err(invalid("The collection AlarmNames must not have a size greater than 100."));
    }
    let mut alarms = lock(&cw.alarms);
    for n in names {
        if let Some(a) = alarms.alarms.get_mut(&(account.to_string(), region.to_string(), n.clone())) {
            a.config.actions_enabled = Some(enabled);
        }
    }
    alarms.save()
}

fn by_arn<'a>(
    alarms: &'a mut Alarms,
    account: &str,
    region: &str,
    resource: &str,
) -> Result<&'a mut Alarm, ServiceError> {
    let not_found = || {
        let mut e =
            ServiceError::sender("ResourceNotFoundException", format!("Resource {resource} not found"))
                .with_status(404);
        e.fields.insert("ResourceType".into(), json!("Alarm"));
        e.fields.insert("ResourceId".into(), json!(resource));
        e
    };
    let prefix = format!("arn:aws:cloudwatch:{region}:{account}:alarm:");
    let Some(name) = resource.strip_prefix(&prefix) else {
        if resource.starts_with("arn:aws:cloudwatch:") {
            return Err(not_found());
        }
        return Err(invalid(format!("The value {resource} for parameter ResourceARN is invalid.")));
    };
    alarms.alarms.get_mut(&(account.to_string(), region.to_string(), name.to_string())).ok_or_else(not_found)
}

pub fn tag_resource(
    cw: &CloudWatch,
    (account, region): (&str, &str),
    input: m::TagResourceInput,
) -> Result<(), ServiceError> {
    let tags = tags_of(&Some(input.tags))?;
    let mut alarms = lock(&cw.alarms);
    let a = by_arn(&mut alarms, account, region, &input.resource_arn)?;
    a.tags.extend(tags);
    if a.tags.len() > 50 {
        return Err(invalid("A resource may have at most 50 tags."));
    }
    alarms.save()
}

pub fn untag_resource(
    cw: &CloudWatch,
    (account, region): (&str, &str),
    input: m::UntagResourceInput,
) -> Result<(), ServiceError> {
    let mut alarms = lock(&cw.alarms);
    let a = by_arn(&mut alarms, account, region, &input.resource_arn)?;
    for k in &input.tag_keys {
        a.tags.remove(k);
    }
    alarms.save()
}

pub fn list_tags(
    cw: &CloudWatch,
    (account, region): (&str, &str),
    input: m::ListTagsForResourceInput,
) -> Result<m::ListTagsForResourceOutput, ServiceError> {
    let mut alarms = lock(&cw.alarms);
    let a = by_arn(&mut alarms, account, region, &input.resource_arn)?;
    Ok(m::ListTagsForResourceOutput {
        tags: Some(a.tags.iter().map(|(k, v)| m::Tag { key: k.clone(), value: v.clone() }).collect()),
    })
}

/// Evaluates every alarm whose time has come.
pub fn evaluate_due(cw: &CloudWatch) {
    let now = cw.clock.now().0;
    let now_s = now.div_euclid(1000);
    let due: Vec<(String, String, String)> = {
        let alarms = lock(&cw.alarms);
        alarms.alarms.iter().filter(|(_, a)| a.next_eval_s <= now_s).map(|(k, _)| k.clone()).collect()
    };
    if due.is_empty() {
        return;
    }
    let mut decisions = Vec::new();
    {
        let alarms = lock(&cw.alarms);
        let data = cw.store().read();
        for key in &due {
            let Some(a) = alarms.alarms.get(key) else { continue };
            let Ok(plan) = alarm_plan(&a.config) else { continue };
            let c = &a.config;
            let period = c.period.map(|p| p as i64).unwrap_or_else(|| {
                let ret = plan.queries.iter().find(|q| q.return_data.unwrap_or(true));
                ret.and_then(|q| {
                    q.metric_stat.as_ref().map(|s| s.period as i64).or(q.period.map(|p| p as i64))
                })
                .or_else(|| plan.queries.iter().find_map(|q| q.metric_stat.as_ref().map(|s| s.period as i64)))
                .unwrap_or(60)
            });
            let n = c.evaluation_periods.unwrap_or(1).max(1) as i64;
            let end = now_s - now_s.rem_euclid(period);
            let start = end - n * period;
            let results = query::evaluate(&data, (&a.account, &a.region), &plan, start, end, now_s);
            let ret_id = plan.queries.iter().find(|q| q.return_data.unwrap_or(true)).map(|q| q.id.clone());
            let series: Vec<(i64, f64)> = results
                .into_iter()
                .find(|r| Some(&r.id) == ret_id.as_ref())
                .and_then(|r| r.series.into_iter().next())
                .map(|(s, _)| s)
                .unwrap_or_default();
            // Sample counts, for the reason data of a single-metric alarm.
            let counts: BTreeMap<i64, f64> = match (&c.metric_name, &c.namespace) {
                (Some(name), Some(ns)) => {
                    let dims = dimensions(&c.dimensions, "").unwrap_or_default();
                    let (b, _) = query::metric_stats(
                        &data,
                        (&a.account, &a.region),
                        (ns, name),
                        &dims,
                        c.unit.as_deref(),
                        (start, end, period),
                        now_s,
                    );
                    b.into_iter().map(|(t, s)| (t, s.count)).collect()
                }
                _ => BTreeMap::new(),
            };
            let points: Vec<PeriodValue> = (0..n)
                .map(|k| {
                    let t = start + k * period;
                    let v = series.iter().find(|(x, _)| *x == t).map(|(_, v)| (*v, counts.get(&t).copied()));
                    (t, v)
                })
                .collect();
            let rule = Rule {
                evaluation_periods: n as usize,
                datapoints_to_alarm: c.datapoints_to_alarm.unwrap_or(n as i32).max(1) as usize,
                threshold: c.threshold.unwrap_or(0.0),
                operator: c.comparison_operator.as_deref().unwrap_or("GreaterThanThreshold"),
                treat_missing: c.treat_missing_data.as_deref().unwrap_or("missing"),
                period,
                statistic: c.statistic.as_deref().or(c.extended_statistic.as_deref()),
                current: a.state_value,
            };
            let d = decide(&rule, &points, now);
            let next = now_s - now_s.rem_euclid(period.min(60)) + period.min(60);
            decisions.push((key.clone(), d, next));
        }
    }
    let mut alarms = lock(&cw.alarms);
    let mut changed = false;
    for (key, d, next) in decisions {
        let Some(a) = alarms.alarms.get_mut(&key) else { continue };
        a.next_eval_s = next;
        a.last_datapoints = d.reason_data["recentDatapoints"]
            .as_array()
            .map(|v| v.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default();
        if let Some(state) = d.state
            && (state != a.state_value || a.state_reason.starts_with("Unchecked"))
        {
            transition(cw, &mut alarms, &key, state, d.reason, Some(d.reason_data.to_string()), now);
            changed = true;
        } else if a.state_value == AlarmState::Alarm {
            reinvoke_scaling(cw, a);
        }
    }
    if changed && let Err(e) = alarms.save() {
        tracing::error!(error = %e.message, "cannot save the alarms");
    }
}
