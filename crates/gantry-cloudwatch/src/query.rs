//! Reading metrics: GetMetricStatistics, GetMetricData (MetricStat queries and metric math) and
//! ListMetrics, over the store's roll-up tiers.

use crate::math::{self, Env, Val};
use crate::sketch::{Stat, Stats};
use crate::store::{self, Data};
use crate::{CloudWatch, check_name, check_unit, combination, dimensions, invalid};
use gantry_core::ServiceError;
use gantry_model::cloudwatch as m;
use std::collections::BTreeMap;

/// GetMetricStatistics answers at most this many datapoints.
pub const MAX_STATISTICS_DATAPOINTS: i64 = 1440;
/// GetMetricData's default MaxDatapoints.
pub const DEFAULT_MAX_DATAPOINTS: usize = 100_800;
/// ListMetrics' page.
pub const LIST_PAGE: usize = 500;

/// Checks a period: 1, 5, 10, 30 or a multiple of 60 seconds.
pub fn check_period(p: i64, param: &str) -> Result<(), ServiceError> {
    if p <= 0 || !(matches!(p, 1 | 5 | 10 | 30) || p % 60 == 0) {
        return Err(invalid(format!(
            "The parameter {param} must be 1, 5, 10, 30 or a multiple of 60, not {p}."
        )));
    }
    Ok(())
}

/// One metric's statistics per period over `[start, end)` (seconds), every unit merged unless
/// `unit` picks one. Also returns the unit the datapoints are in.
pub fn metric_stats(
    data: &Data,
    scope: (&str, &str),
    metric: (&str, &str),
    dims: &[(String, String)],
    unit: Option<&str>,
    (start, end, period): (i64, i64, i64),
    now_s: i64,
) -> (BTreeMap<i64, Stats>, Option<String>) {
    let key = (scope.0.to_string(), scope.1.to_string(), metric.0.to_string(), metric.1.to_string());
    let mut out = BTreeMap::new();
    let mut unit_seen: Option<String> = None;
    if let Some(series) = data.metrics.get(&key) {
        for (u, s) in store::by_dims(series, dims, unit) {
            store::aggregate(s, start, end, period, now_s, &mut out);
            unit_seen = Some(match unit_seen {
                None => u.to_string(),
                Some(prev) if prev == u => prev,
                Some(_) => "None".to_string(),
            });
        }
    }
    (out, unit_seen)
}

/// One statistic of a metric per period over `[start, end)`, in time order, periods before
/// `start`'s left out: what GetMetricData's MetricStat answers. A metric with one unit (or the
/// unit asked for) is read straight from its series ([`store::period_values`]); several units
/// are merged through [`metric_stats`].
pub fn metric_values(
    data: &Data,
    scope: (&str, &str),
    metric: (&str, &str),
    (dims, unit): (&[(String, String)], Option<&str>),
    (start, end, period): (i64, i64, i64),
    now_s: i64,
    stat: &Stat,
) -> math::Series {
    let key = (scope.0.to_string(), scope.1.to_string(), metric.0.to_string(), metric.1.to_string());
    let Some(series) = data.metrics.get(&key) else { return Vec::new() };
    let found = store::by_dims(series, dims, unit);
    if let [(_, one)] = found.as_slice() {
        let mut out = Vec::new();
        store::period_values(one, (start, end, period), now_s, stat, &mut out);
        return out;
    }
    let (buckets, _) = metric_stats(data, scope, metric, dims, unit, (start, end, period), now_s);
    buckets
        .iter()
        .filter(|(t, _)| **t >= start - start.rem_euclid(period))
        .filter_map(|(t, b)| b.stat(stat).map(|v| (*t, v)))
        .collect()
}

fn secs(t: f64) -> i64 {
    t.floor() as i64
}

pub fn get_metric_statistics(
    cw: &CloudWatch,
    scope: (&str, &str),
    input: m::GetMetricStatisticsInput,
) -> Result<m::GetMetricStatisticsOutput, ServiceError> {
    check_name(&input.namespace, "Namespace", 255)?;
    check_name(&input.metric_name, "MetricName", 255)?;
    let dims = dimensions(&input.dimensions, "Dimensions")?;
    let period = input.period as i64;
    check_period(period, "Period")?;
    let (start, end) = (secs(input.start_time), secs(input.end_time));
    if start >= end {
        return Err(invalid("The parameter StartTime must be less than the parameter EndTime."));
    }
    let unit = match &input.unit {
        Some(_) => Some(check_unit(&input.unit, "Unit")?),
        None => None,
    };
    let mut stats = Vec::new();
    for (i, s) in input.statistics.iter().flatten().enumerate() {
        match Stat::parse(s) {
            Some(st @ (Stat::Average | Stat::Sum | Stat::Minimum | Stat::Maximum | Stat::SampleCount)) => {
                stats.push((s.clone(), st))
            }
            _ => {
                return Err(invalid(format!(
                    "The value {s} for parameter Statistics.member.{} is invalid.",
                    i + 1
                )));
            }
        }
    }
    let mut extended = Vec::new();
    for (i, s) in input.extended_statistics.iter().flatten().enumerate() {
        match Stat::parse(s) {
            Some(st @ Stat::Percentile(_)) => extended.push((s.clone(), st)),
            _ => {
                return Err(invalid(format!(
                    "The value {s} for parameter ExtendedStatistics.member.{} is invalid.",
                    i + 1
                )));
            }
        }
    }
    if stats.is_empty() && extended.is_empty() {
        return Err(combination(
            "At least one of the parameters Statistics and ExtendedStatistics must be specified.",
        ));
    }
    if stats.len() + extended.len() > 10 {
        return Err(invalid(
            "The collection Statistics and ExtendedStatistics must not have more than 10 members.",
        ));
    }
    let first = start - start.rem_euclid(period);
    let requested = (end - first + period - 1) / period;
    if requested > MAX_STATISTICS_DATAPOINTS {
        return Err(combination(format!(
            "You have requested up to {} datapoints, which exceeds the limit of 1,440. You may reduce the datapoints requested by increasing Period, or decreasing the time range.",
            group_thousands(requested)
        )));
    }
    let now_s = cw.clock.now().0.div_euclid(1000);
    let data = cw.store.read();
    let (buckets, unit_seen) = metric_stats(
        &data,
        scope,
        (&input.namespace, &input.metric_name),
        &dims,
        unit.as_deref(),
        (start, end, period),
        now_s,
    );
    drop(data);
    let datapoints = buckets
        .into_iter()
        .map(|(t, b)| {
            let mut d =
                m::Datapoint { timestamp: Some(t as f64), unit: unit_seen.clone(), ..Default::default() };
            for (name, st) in &stats {
                let v = b.stat(st);
                match name.as_str() {
                    "Average" => d.average = v,
                    "Sum" => d.sum = v,
                    "Minimum" => d.minimum = v,
                    "Maximum" => d.maximum = v,
                    _ => d.sample_count = v,
                }
            }
            if !extended.is_empty() {
                let map: BTreeMap<String, f64> =
                    extended.iter().filter_map(|(n, st)| b.stat(st).map(|v| (n.clone(), v))).collect();
                d.extended_statistics = Some(map);
            }
            d
        })
        .collect();
    Ok(m::GetMetricStatisticsOutput { label: Some(input.metric_name), datapoints: Some(datapoints) })
}

fn group_thousands(n: i64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Checks a query ID: starts with a lowercase letter, then letters, digits and underscores.
pub fn check_id(id: &str, param: &str) -> Result<(), ServiceError> {
    let mut chars = id.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && id.len() <= 255;
    if !ok {
        return Err(invalid(format!(
            "The value {id} for parameter {param} is invalid. It must start with a lowercase letter and contain only letters, numbers and underscores."
        )));
    }
    Ok(())
}

/// A query list checked and put in evaluation order.
pub struct Plan {
    pub queries: Vec<m::MetricDataQuery>,
    /// Indexes into `queries`, dependencies first.
    pub order: Vec<usize>,
    pub exprs: BTreeMap<usize, math::Expr>,
}

/// Validates MetricDataQueries (GetMetricData's and an alarm's `Metrics`).
pub fn plan(queries: Vec<m::MetricDataQuery>, param: &str) -> Result<Plan, ServiceError> {
    if queries.is_empty() || queries.len() > 500 {
        return Err(invalid(format!("The collection {param} must have between 1 and 500 members.")));
    }
    let mut exprs = BTreeMap::new();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for (i, q) in queries.iter().enumerate() {
        let at = format!("{param}.member.{}", i + 1);
        check_id(&q.id, &format!("{at}.Id"))?;
        if ids.insert(q.id.clone(), i).is_some() {
            return Err(invalid(format!("The value {} for parameter {at}.Id is not unique.", q.id)));
        }
        match (&q.metric_stat, &q.expression) {
            (Some(_), Some(_)) => {
                return Err(combination(format!(
                    "The parameters {at}.MetricStat and {at}.Expression are mutually exclusive and you have specified both."
                )));
            }
            (None, None) => {
                return Err(combination(format!(
                    "Exactly one of the parameters {at}.MetricStat and {at}.Expression must be specified."
                )));
            }
            (Some(ms), None) => {
                check_name(
                    ms.metric.namespace.as_deref().unwrap_or(""),
                    &format!("{at}.MetricStat.Metric.Namespace"),
                    255,
                )?;
                check_name(
                    ms.metric.metric_name.as_deref().unwrap_or(""),
                    &format!("{at}.MetricStat.Metric.MetricName"),
                    255,
                )?;
                dimensions(&ms.metric.dimensions, &format!("{at}.MetricStat.Metric.Dimensions"))?;
                check_period(ms.period as i64, &format!("{at}.MetricStat.Period"))?;
                if Stat::parse(&ms.stat).is_none() {
                    return Err(invalid(format!(
                        "The value {} for parameter {at}.MetricStat.Stat is invalid.",
                        ms.stat
                    )));
                }
                if ms.unit.is_some() {
                    check_unit(&ms.unit, &format!("{at}.MetricStat.Unit"))?;
                }
            }
            (None, Some(e)) => {
                let expr = math::parse(e)
                    .map_err(|msg| invalid(format!("Error in expression '{}': {msg}", q.id)))?;
                if let Some(p) = q.period {
                    check_period(p as i64, &format!("{at}.Period"))?;
                }
                exprs.insert(i, expr);
            }
        }
    }
    // Expressions after what they read; a cycle or an unknown ID is an error.
    let mut order = Vec::new();
    let mut state = vec![0u8; queries.len()];
    fn visit(
        i: usize,
        queries: &[m::MetricDataQuery],
        exprs: &BTreeMap<usize, math::Expr>,
        ids: &BTreeMap<String, usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
    ) -> Result<(), ServiceError> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                return Err(invalid(format!("Error in expression '{}': circular dependency", queries[i].id)));
            }
            _ => {}
        }
        state[i] = 1;
        if let Some(e) = exprs.get(&i) {
            let mut deps = Vec::new();
            math::ids(e, &mut deps);
            for d in deps {
                let Some(&j) = ids.get(&d) else {
                    return Err(invalid(format!(
                        "Error in expression '{}': Unrecognized query ID '{d}'",
                        queries[i].id
                    )));
                };
                visit(j, queries, exprs, ids, state, order)?;
            }
        }
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    // MetricStat queries first, so METRICS() sees them all.
    for i in (0..queries.len()).filter(|i| !exprs.contains_key(i)) {
        visit(i, &queries, &exprs, &ids, &mut state, &mut order)?;
    }
    for i in 0..queries.len() {
        visit(i, &queries, &exprs, &ids, &mut state, &mut order)?;
    }
    Ok(Plan { queries, order, exprs })
}

/// One query's result: its series (an expression over an array gives several), with labels.
pub struct Evaluated {
    pub id: String,
    pub series: Vec<(math::Series, String)>,
    pub error: Option<String>,
}

/// Evaluates a plan over `[start, end)`. Returns every query's result, in request order.
pub fn evaluate(
    data: &Data,
    scope: (&str, &str),
    plan: &Plan,
    start: i64,
    end: i64,
    now_s: i64,
) -> Vec<Evaluated> {
    let mut values: BTreeMap<String, Val> = BTreeMap::new();
    let mut results: BTreeMap<usize, Evaluated> = BTreeMap::new();
    let metric_queries: Vec<(String, String)> = plan
        .queries
        .iter()
        .filter(|q| q.metric_stat.is_some())
        .map(|q| (q.id.clone(), label_of(q)))
        .collect();
    let smallest_period = plan
        .queries
        .iter()
        .filter_map(|q| q.metric_stat.as_ref().map(|s| s.period as i64))
        .min()
        .unwrap_or(60)
        .max(1);
    for &i in &plan.order {
        let q = &plan.queries[i];
        let label = label_of(q);
        if let Some(ms) = &q.metric_stat {
            let period = ms.period as i64;
            let dims = dimensions(&ms.metric.dimensions, "").unwrap_or_default();
            let stat = Stat::parse(&ms.stat).unwrap_or(Stat::Average);
            let series = metric_values(
                data,
                scope,
                (
                    ms.metric.namespace.as_deref().unwrap_or(""),
                    ms.metric.metric_name.as_deref().unwrap_or(""),
                ),
                (&dims, ms.unit.as_deref()),
                (start, end, period),
                now_s,
                &stat,
            );
            // Only expressions read the values: without any, the series is not copied.
            if !plan.exprs.is_empty() {
                values.insert(q.id.clone(), Val::Series(series.clone(), label.clone()));
            }
            results.insert(i, Evaluated { id: q.id.clone(), series: vec![(series, label)], error: None });
        } else if let Some(e) = plan.exprs.get(&i) {
            let period = q.period.map(|p| p as i64).unwrap_or(smallest_period);
            let first = start - start.rem_euclid(period);
            let grid: Vec<i64> = (0..).map(|k| first + k * period).take_while(|t| *t < end).collect();
            let env = Env { values: &values, metric_queries: &metric_queries, grid: &grid, period };
            match math::eval(e, &env) {
                Ok(v) => {
                    let series = match &v {
                        Val::Scalar(x) => {
                            if x.is_finite() {
                                vec![(grid.iter().map(|&t| (t, *x)).collect(), label.clone())]
                            } else {
                                vec![(vec![], label.clone())]
                            }
                        }
                        Val::Series(s, _) => vec![(s.clone(), label.clone())],
                        Val::Array(xs) => xs
                            .iter()
                            .map(|(s, l)| {
                                (
                                    s.clone(),
                                    if q.label.is_some() { format!("{label} {l}") } else { l.clone() },
                                )
                            })
                            .collect(),
                    };
                    let stored = match v {
                        Val::Series(s, _) => Val::Series(s, label.clone()),
                        other => other,
                    };
                    values.insert(q.id.clone(), stored);
                    results.insert(i, Evaluated { id: q.id.clone(), series, error: None });
                }
                Err(msg) => {
                    values.insert(q.id.clone(), Val::Series(vec![], label.clone()));
                    results.insert(
                        i,
                        Evaluated {
                            id: q.id.clone(),
                            series: vec![(vec![], label)],
                            error: Some(format!("Error in expression '{}': {msg}", q.id)),
                        },
                    );
                }
            }
        }
    }
    results.into_values().collect()
}

/// A query's label: its `Label`, else the metric's name (MetricStat) or the ID (expression).
pub fn label_of(q: &m::MetricDataQuery) -> String {
    if let Some(l) = &q.label {
        return l.clone();
    }
    match &q.metric_stat {
        Some(ms) => ms.metric.metric_name.clone().unwrap_or_default(),
        None => q.id.clone(),
    }
}

pub fn get_metric_data(
    cw: &CloudWatch,
    scope: (&str, &str),
    input: m::GetMetricDataInput,
) -> Result<m::GetMetricDataOutput, ServiceError> {
    let (start, end) = (secs(input.start_time), secs(input.end_time));
    if start >= end {
        return Err(invalid("The parameter StartTime must be less than the parameter EndTime."));
    }
    let descending = match input.scan_by.as_deref() {
        None | Some("TimestampDescending") => true,
        Some("TimestampAscending") => false,
        Some(other) => return Err(invalid(format!("The value {other} for parameter ScanBy is invalid."))),
    };
    let max = match input.max_datapoints {
        None => DEFAULT_MAX_DATAPOINTS,
        Some(n) if n > 0 => n as usize,
        Some(n) => return Err(invalid(format!("The value {n} for parameter MaxDatapoints is invalid."))),
    };
    let skip = match &input.next_token {
        None => 0usize,
        Some(t) => t.strip_prefix("gmd-").and_then(|n| n.parse().ok()).ok_or_else(|| {
            ServiceError::sender(
                "InvalidNextToken",
                format!("The value {t} for parameter NextToken is invalid."),
            )
        })?,
    };
    let plan = plan(input.metric_data_queries, "MetricDataQueries")?;
    let now_s = cw.clock.now().0.div_euclid(1000);
    let evaluated = {
        let data = cw.store.read();
        evaluate(&data, scope, &plan, start, end, now_s)
    };
    let returned: BTreeMap<&str, bool> =
        plan.queries.iter().map(|q| (q.id.as_str(), q.return_data.unwrap_or(true))).collect();
    let mut results = Vec::new();
    let mut seen = 0usize;
    let mut budget = max;
    let mut next_token = None;
    for ev in evaluated.into_iter().filter(|e| returned.get(e.id.as_str()).copied().unwrap_or(true)) {
        for (mut series, label) in ev.series {
            if descending {
                series.reverse();
            }
            let n = series.len();
            let from = skip.saturating_sub(seen).min(n);
            let take = (n - from).min(budget);
            let page = &series[from..from + take];
            budget -= take;
            seen += n;
            let partial = from + take < n;
            if partial && next_token.is_none() {
                next_token = Some(format!("gmd-{}", skip + (max - budget)));
            }
            let messages = ev
                .error
                .as_ref()
                .map(|e| vec![m::MessageData { code: Some("InternalError".into()), value: Some(e.clone()) }]);
            results.push(m::MetricDataResult {
                id: Some(ev.id.clone()),
                label: Some(label),
                timestamps: Some(page.iter().map(|&(t, _)| t as f64).collect()),
                values: Some(page.iter().map(|&(_, v)| v).collect()),
                status_code: Some(
                    if ev.error.is_some() {
                        "InternalError"
                    } else if partial {
                        "PartialData"
                    } else {
                        "Complete"
                    }
                    .to_string(),
                ),
                messages: Some(messages.unwrap_or_default()),
            });
        }
    }
    Ok(m::GetMetricDataOutput { metric_data_results: Some(results), next_token, messages: Some(vec![]) })
}

/// Integral numbers below this magnitude are written as digits and `.0`, which is how
/// serde_json writes them (a test holds the two to the same bytes); others go through serde_json.
const PLAIN_INTEGER_BELOW: f64 = 1e15;

/// Appends `v` as serde_json writes an `f64`, integral values (timestamps, counts) without its
/// general float formatting.
fn push_f64(buf: &mut Vec<u8>, v: f64) {
    /// "00", "01", ... "99": two digits per division.
    const PAIRS: [u8; 200] = {
        let mut t = [0u8; 200];
        let mut i = 0;
        while i < 100 {
            t[2 * i] = b'0' + (i / 10) as u8;
            t[2 * i + 1] = b'0' + (i % 10) as u8;
            i += 1;
        }
        t
    };
    // Below 1e15 every integer is exact, so the round trip through u64 tells an integral value
    // (without `fract`, a call into libm here).
    let magnitude = v.abs();
    if magnitude < PLAIN_INTEGER_BELOW
        && (magnitude as u64) as f64 == magnitude
        && !(v == 0.0 && v.is_sign_negative())
    {
        // Room for a sign, 15 digits and ".0".
        let mut text = [0u8; 20];
        let mut at = text.len() - 2;
        text[at..].copy_from_slice(b".0");
        let mut n = magnitude as u64;
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            at -= 2;
            text[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
        if n >= 10 {
            at -= 2;
            text[at..at + 2].copy_from_slice(&PAIRS[n as usize * 2..n as usize * 2 + 2]);
        } else {
            at -= 1;
            text[at] = b'0' + n as u8;
        }
        if v < 0.0 {
            at -= 1;
            text[at] = b'-';
        }
        buf.extend_from_slice(&text[at..]);
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, &v);
    }
}

fn push_f64s(buf: &mut Vec<u8>, vs: &[f64]) {
    buf.push(b'[');
    for (i, &v) in vs.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        push_f64(buf, v);
    }
    buf.push(b']');
}

fn push_json<T: serde::Serialize + ?Sized>(buf: &mut Vec<u8>, v: &T) -> Result<(), ServiceError> {
    serde_json::to_writer(&mut *buf, v).map_err(crate::internal)
}

/// GetMetricData's answer in its JSON form: the bytes `serde_json::to_vec` gives for it, with
/// the timestamps and values (100,800 of each at most per page) written by [`push_f64`].
pub fn encode_metric_data(out: &m::GetMetricDataOutput) -> Result<Vec<u8>, ServiceError> {
    let points: usize = out
        .metric_data_results
        .iter()
        .flatten()
        .map(|r| r.timestamps.as_ref().map_or(0, Vec::len) + r.values.as_ref().map_or(0, Vec::len))
        .sum();
    let mut buf = Vec::with_capacity(256 + points * 14);
    let mut sep = b'{';
    let mut field = |buf: &mut Vec<u8>, name: &str| {
        buf.push(sep);
        sep = b',';
        buf.push(b'"');
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b"\":");
    };
    if let Some(results) = &out.metric_data_results {
        field(&mut buf, "MetricDataResults");
        buf.push(b'[');
        for (i, r) in results.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            let mut sep = b'{';
            let mut field = |buf: &mut Vec<u8>, name: &str| {
                buf.push(sep);
                sep = b',';
                buf.push(b'"');
                buf.extend_from_slice(name.as_bytes());
                buf.extend_from_slice(b"\":");
            };
            if let Some(id) = &r.id {
                field(&mut buf, "Id");
                push_json(&mut buf, id)?;
            }
            if let Some(label) = &r.label {
                field(&mut buf, "Label");
                push_json(&mut buf, label)?;
            }
            if let Some(ts) = &r.timestamps {
                field(&mut buf, "Timestamps");
                push_f64s(&mut buf, ts);
            }
            if let Some(vs) = &r.values {
                field(&mut buf, "Values");
                push_f64s(&mut buf, vs);
            }
            if let Some(code) = &r.status_code {
                field(&mut buf, "StatusCode");
                push_json(&mut buf, code)?;
            }
            if let Some(messages) = &r.messages {
                field(&mut buf, "Messages");
                push_json(&mut buf, messages)?;
            }
            if sep == b'{' {
                buf.push(b'{');
            }
            buf.push(b'}');
        }
        buf.push(b']');
    }
    if let Some(token) = &out.next_token {
        field(&mut buf, "NextToken");
        push_json(&mut buf, token)?;
    }
    if let Some(messages) = &out.messages {
        field(&mut buf, "Messages");
        push_json(&mut buf, messages)?;
    }
    if sep == b'{' {
        buf.push(b'{');
    }
    buf.push(b'}');
    Ok(buf)
}

pub fn list_metrics(
    cw: &CloudWatch,
    (account, region): (&str, &str),
    input: m::ListMetricsInput,
) -> Result<m::ListMetricsOutput, ServiceError> {
    let now = cw.clock.now().0;
    let since = match input.recently_active.as_deref() {
        None => now - crate::MAX_PAST_MS,
        Some("PT3H") => now - 3 * 3_600_000,
        Some(other) => {
            return Err(invalid(format!("The value {other} for parameter RecentlyActive is invalid.")));
        }
    };
    let filters = input.dimensions.clone().unwrap_or_default();
    if filters.len() > 10 {
        return Err(invalid("The collection Dimensions must not have a size greater than 10."));
    }
    let start = match &input.next_token {
        None => 0,
        Some(t) => t.strip_prefix("lm-").and_then(|n| n.parse().ok()).ok_or_else(|| {
            ServiceError::sender(
                "InvalidNextToken",
                format!("The value {t} for parameter NextToken is invalid."),
            )
        })?,
    };
    let data = cw.store.read();
    let mut out: Vec<m::Metric> = Vec::new();
    for ((a, r, ns, name), series) in
        data.metrics.range((account.to_string(), region.to_string(), String::new(), String::new())..)
    {
        if a != account || r != region {
            break;
        }
        if input.namespace.as_deref().is_some_and(|n| n != ns)
            || input.metric_name.as_deref().is_some_and(|n| n != name)
        {
            continue;
        }
        let mut last_dims: Option<&Vec<(String, String)>> = None;
        for ((dims, _), s) in series {
            if s.last_put_ms < since || last_dims == Some(dims) {
                continue;
            }
            let matches = filters
                .iter()
                .all(|f| dims.iter().any(|(k, v)| *k == f.name && f.value.as_deref().is_none_or(|w| w == v)));
            if !matches {
                continue;
            }
            last_dims = Some(dims);
            out.push(m::Metric {
                namespace: Some(ns.clone()),
                metric_name: Some(name.clone()),
                dimensions: Some(
                    dims.iter().map(|(k, v)| m::Dimension { name: k.clone(), value: v.clone() }).collect(),
                ),
            });
        }
    }
    let total = out.len();
    let page: Vec<m::Metric> = out.into_iter().skip(start).take(LIST_PAGE).collect();
    let next = (start + page.len() < total).then(|| format!("lm-{}", start + page.len()));
    Ok(m::ListMetricsOutput { metrics: Some(page), next_token: next, owning_accounts: None })
}
