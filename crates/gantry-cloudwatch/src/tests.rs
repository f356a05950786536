use super::*;
use gantry_core::{FixedClock, Timestamp};
use serde_json::{Value, json};

const T0: i64 = 1_764_000_000_000; // 2025-11-24T16:00:00Z, a whole hour.

struct Env {
    cw: CloudWatch,
    clock: Arc<FixedClock>,
    actions: Arc<RecordedActions>,
    dir: PathBuf,
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gantry-cw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn env(name: &str) -> Env {
    let dir = temp_dir(name);
    let clock = Arc::new(FixedClock::new(Timestamp(T0)));
    let actions = Arc::new(RecordedActions::default());
    let cw = CloudWatch::open(
        dir.clone(),
        clock.clone(),
        actions.clone(),
        ("123456789012".into(), "us-east-1".into()),
    )
    .unwrap();
    Env { cw, clock, actions, dir }
}

impl Env {
    fn call(&self, op: &str, input: Value) -> Result<Value, ServiceError> {
        let out = self.cw.call("123456789012", "us-east-1", op, &serde_json::to_vec(&input).unwrap())?;
        Ok(serde_json::from_slice(&out).unwrap())
    }
    fn ok(&self, op: &str, input: Value) -> Value {
        self.call(op, input).unwrap_or_else(|e| panic!("{op}: {} {}", e.code, e.message))
    }
    fn err(&self, op: &str, input: Value) -> (String, String) {
        let e = self.call(op, input).unwrap_err();
        (e.code, e.message)
    }
    fn now_s(&self) -> f64 {
        self.clock.now().0 as f64 / 1000.0
    }
    fn reopen(self) -> Env {
        let Env { cw, clock, actions, dir } = self;
        drop(cw);
        let cw = CloudWatch::open(
            dir.clone(),
            clock.clone(),
            actions.clone(),
            ("123456789012".into(), "us-east-1".into()),
        )
        .unwrap();
        Env { cw, clock, actions, dir }
    }
}

fn put(e: &Env, name: &str, ts: f64, value: f64) {
    e.ok(
        "PutMetricData",
        json!({"Namespace": "App", "MetricData": [{"MetricName": name, "Timestamp": ts, "Value": value,
            "Dimensions": [{"Name": "Service", "Value": "web"}], "Unit": "Percent"}]}),
    );
}

fn stats(e: &Env, name: &str, start: f64, end: f64, period: i64, extra: Value) -> Vec<Value> {
    let mut input = json!({"Namespace": "App", "MetricName": name, "StartTime": start, "EndTime": end, "Period": period,
        "Dimensions": [{"Name": "Service", "Value": "web"}], "Statistics": ["Average", "Sum", "SampleCount", "Minimum", "Maximum"]});
    if let (Value::Object(i), Value::Object(x)) = (&mut input, extra) {
        i.extend(x);
    }
    let out = e.ok("GetMetricStatistics", input);
    out["Datapoints"].as_array().unwrap().clone()
}

#[test]
fn put_and_get_statistics_with_values_counts_sets_and_percentiles() {
    let e = env("stats");
    let t = e.now_s() - 600.0;
    e.ok(
        "PutMetricData",
        json!({"Namespace": "App", "MetricData": [
            {"MetricName": "Latency", "Timestamp": t, "Values": [10.0, 20.0, 30.0], "Counts": [1.0, 2.0, 97.0],
             "Dimensions": [{"Name": "Service", "Value": "web"}], "Unit": "Milliseconds"},
            {"MetricName": "Latency", "Timestamp": t + 1.0, "StatisticValues": {"SampleCount": 10.0, "Sum": 100.0, "Minimum": 1.0, "Maximum": 40.0},
             "Dimensions": [{"Name": "Service", "Value": "web"}], "Unit": "Milliseconds"}]}),
    );
    let dps = stats(&e, "Latency", t - 60.0, t + 60.0, 60, json!({}));
    assert_eq!(dps.len(), 1);
    let d = &dps[0];
    assert_eq!(d["SampleCount"], json!(110.0));
    assert_eq!(d["Sum"], json!(10.0 + 40.0 + 2910.0 + 100.0));
    assert_eq!(d["Minimum"], json!(1.0));
    assert_eq!(d["Maximum"], json!(40.0));
    assert_eq!(d["Unit"], json!("Milliseconds"));
    // The statistic set has no distribution: no percentile for that minute, one for a minute
    // with only values.
    let t2 = t + 120.0;
    for i in 1..=100 {
        e.ok("PutMetricData", json!({"Namespace": "App", "MetricData": [{"MetricName": "Latency", "Timestamp": t2, "Value": i as f64, "Dimensions": [{"Name": "Service", "Value": "web"}], "Unit": "Milliseconds"}]}));
    }
    let out = e.ok(
        "GetMetricStatistics",
        json!({"Namespace": "App", "MetricName": "Latency", "StartTime": t - 60.0, "EndTime": t2 + 60.0, "Period": 60,
               "Dimensions": [{"Name": "Service", "Value": "web"}], "ExtendedStatistics": ["p99", "p50"]}),
    );
    let dps = out["Datapoints"].as_array().unwrap();
    assert_eq!(dps.len(), 2);
    assert_eq!(dps[0]["ExtendedStatistics"], json!({}));
    let p99 = dps[1]["ExtendedStatistics"]["p99"].as_f64().unwrap();
    assert!((p99 - 99.0).abs() <= 99.0 * sketch::ALPHA, "{p99}");
    // Another dimension set is another metric.
    let none = e.ok("GetMetricStatistics", json!({"Namespace": "App", "MetricName": "Latency", "StartTime": t - 60.0, "EndTime": t2 + 60.0, "Period": 60, "Statistics": ["Sum"]}));
    assert_eq!(none["Datapoints"], json!([]));
}

#[test]
fn put_metric_data_errors_name_the_bad_value() {
    let e = env("errors");
    let m = |d: Value| json!({"Namespace": "App", "MetricData": [d]});
    let cases = [
        (
            json!({"Namespace": "AWS/ECS", "MetricData": [{"MetricName": "x", "Value": 1.0}]}),
            "InvalidParameterValue",
            "The value AWS/ for parameter Namespace is invalid.",
        ),
        (
            m(
                json!({"MetricName": "x", "Value": 1.0, "StatisticValues": {"SampleCount": 1.0, "Sum": 1.0, "Minimum": 1.0, "Maximum": 1.0}}),
            ),
            "InvalidParameterCombination",
            "The parameters MetricData.member.1.Value and MetricData.member.1.StatisticValues are mutually exclusive and you have specified both.",
        ),
        (
            m(json!({"MetricName": "x", "Values": [1.0, 2.0], "Counts": [1.0]})),
            "InvalidParameterCombination",
            "The parameters MetricData.member.1.Values and MetricData.member.1.Counts must be of the same size.",
        ),
        (
            m(json!({"MetricName": "x", "Value": 1.0, "StorageResolution": 5})),
            "InvalidParameterValue",
            "The value 5 for parameter MetricData.member.1.StorageResolution is invalid.",
        ),
        (
            m(json!({"MetricName": "x", "Value": 1.0, "Unit": "Furlongs"})),
            "InvalidParameterValue",
            "The value Furlongs for parameter MetricData.member.1.Unit is invalid.",
        ),
        (
            m(json!({"MetricName": "x", "Value": 1.0, "Timestamp": (T0 / 1000 - 15 * 86400) as f64})),
            "InvalidParameterValue",
            "The parameter MetricData.member.1.Timestamp must specify a time no more than two weeks in the past.",
        ),
        (
            m(json!({"MetricName": "x", "Value": 1.0, "Timestamp": (T0 / 1000 + 3 * 3600) as f64})),
            "InvalidParameterValue",
            "The parameter MetricData.member.1.Timestamp must specify a time no more than two hours in the future.",
        ),
        (
            m(json!({"MetricName": "x"})),
            "InvalidParameterCombination",
            "At least one of the parameters MetricData.member.1.Value, MetricData.member.1.StatisticValues and MetricData.member.1.Values must be specified.",
        ),
        (json!({"Namespace": "App"}), "MissingParameter", "The parameter MetricData is required."),
        (
            m(
                json!({"MetricName": "x", "Value": 1.0, "Dimensions": [{"Name": "a", "Value": "1"}, {"Name": "a", "Value": "2"}]}),
            ),
            "InvalidParameterValue",
            "No metric may have duplicate dimension names: a appears twice in MetricData.member.1.Dimensions.",
        ),
    ];
    for (input, code, message) in cases {
        assert_eq!(e.err("PutMetricData", input.clone()), (code.to_string(), message.to_string()), "{input}");
    }
    let too_many: Vec<Value> = (0..1001).map(|_| json!({"MetricName": "x", "Value": 1.0})).collect();
    assert_eq!(
        e.err("PutMetricData", json!({"Namespace": "App", "MetricData": too_many})).0,
        "InvalidParameterValue"
    );
    let (code, msg) = e.err("GetMetricStatistics", json!({"Namespace": "App", "MetricName": "x", "StartTime": 0.0, "EndTime": 86400.0 * 2.0, "Period": 60, "Statistics": ["Sum"]}));
    assert_eq!(code, "InvalidParameterCombination");
    assert!(msg.starts_with("You have requested up to 2,880 datapoints"), "{msg}");
    assert_eq!(
        e.err(
            "GetMetricStatistics",
            json!({"Namespace": "App", "MetricName": "x", "StartTime": 0.0, "EndTime": 60.0, "Period": 60})
        ),
        (
            "InvalidParameterCombination".into(),
            "At least one of the parameters Statistics and ExtendedStatistics must be specified.".into()
        )
    );
}

#[test]
fn roll_ups_answer_by_age_and_retention_drops_tiers() {
    let e = env("rollup");
    let start = e.now_s() - 120.0;
    // Two minutes of high-resolution data: one datapoint a second, value = second within the minute.
    for s in 0..120 {
        e.ok("PutMetricData", json!({"Namespace": "App", "MetricData": [{"MetricName": "Hr", "Timestamp": start + s as f64, "Value": (s % 60) as f64,
            "StorageResolution": 1, "Dimensions": [{"Name": "Service", "Value": "web"}]}]}));
    }
    let one_s = stats(&e, "Hr", start, start + 120.0, 1, json!({}));
    assert_eq!(one_s.len(), 120);
    let ten_s = stats(&e, "Hr", start, start + 120.0, 10, json!({}));
    assert_eq!(ten_s.len(), 12);
    assert_eq!(ten_s[1]["Sum"], json!((10..20).sum::<i32>() as f64));
    let minute = stats(&e, "Hr", start, start + 120.0, 60, json!({}));
    assert_eq!(minute.len(), 2);
    assert_eq!(minute[0]["Average"], json!(29.5));
    assert_eq!(minute[0]["SampleCount"], json!(60.0));
    // After 3 hours the 1-second tier is gone; minutes remain, and so does the 5-minute roll-up.
    e.clock.advance_ms(4 * 3_600_000);
    e.cw.maintain().unwrap();
    let later = stats(&e, "Hr", start, start + 120.0, 1, json!({}));
    assert_eq!(later.len(), 2, "answered from the 1-minute tier");
    let five = stats(&e, "Hr", start, start + 300.0, 300, json!({}));
    assert_eq!(five.len(), 1);
    assert_eq!(five[0]["SampleCount"], json!(120.0));
    // After 15 days, only 5-minute buckets; after 63 days, only hours; after 455, nothing.
    e.clock.advance_ms(15 * 86_400_000);
    e.cw.maintain().unwrap();
    let d = stats(&e, "Hr", start, start + 3600.0, 60, json!({}));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["SampleCount"], json!(120.0));
    e.clock.advance_ms(50 * 86_400_000);
    e.cw.maintain().unwrap();
    let h = stats(&e, "Hr", start - 3600.0, start + 3600.0, 3600, json!({}));
    assert_eq!(h.len(), 1);
    e.clock.advance_ms(400 * 86_400_000);
    e.cw.maintain().unwrap();
    assert_eq!(crate::store::series_count(&e.cw.store().read()), 0);
}

#[test]
fn acknowledged_datapoints_survive_a_reopen_and_a_torn_log_tail() {
    let e = env("durable");
    let t = e.now_s() - 60.0;
    put(&e, "Cpu", t, 5.0);
    put(&e, "Cpu", t, 7.0);
    let e = e.reopen();
    assert_eq!(stats(&e, "Cpu", t - 60.0, t + 60.0, 60, json!({}))[0]["Sum"], json!(12.0));
    // A checkpoint, more data, and half a record at the end of the log (a crash mid-write).
    e.cw.store().checkpoint().unwrap();
    put(&e, "Cpu", t, 1.0);
    let wal = e.dir.join("wal.log");
    let mut f = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
    std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let e = e.reopen();
    let d = stats(&e, "Cpu", t - 60.0, t + 60.0, 60, json!({}));
    assert_eq!(d[0]["Sum"], json!(13.0));
    assert_eq!(d[0]["SampleCount"], json!(3.0));
    put(&e, "Cpu", t, 1.0);
    let e = e.reopen();
    assert_eq!(stats(&e, "Cpu", t - 60.0, t + 60.0, 60, json!({}))[0]["Sum"], json!(14.0));
}

#[test]
fn get_metric_data_math_scan_by_and_pagination() {
    let e = env("gmd");
    let base = e.now_s() - e.now_s() % 60.0 - 600.0;
    for k in 0..5 {
        put(&e, "A", base + 60.0 * k as f64, k as f64);
        if k % 2 == 0 {
            put(&e, "B", base + 60.0 * k as f64, 10.0);
        }
    }
    let stat = |id: &str, name: &str| json!({"Id": id, "MetricStat": {"Metric": {"Namespace": "App", "MetricName": name, "Dimensions": [{"Name": "Service", "Value": "web"}]}, "Period": 60, "Stat": "Sum"}, "ReturnData": false});
    let q = json!({"StartTime": base, "EndTime": base + 300.0, "ScanBy": "TimestampAscending", "MetricDataQueries": [
        stat("a", "A"), stat("b", "B"),
        {"Id": "total", "Expression": "a + b", "Label": "A plus B"},
        {"Id": "filled", "Expression": "FILL(b, 0) * 2"},
        {"Id": "both", "Expression": "SUM(METRICS())"},
        {"Id": "high", "Expression": "IF(a >= 2, a, 0)"},
        {"Id": "rate", "Expression": "RATE(a)"},
    ]});
    let out = e.ok("GetMetricData", q.clone());
    let r = out["MetricDataResults"].as_array().unwrap();
    let by = |id: &str| r.iter().find(|x| x["Id"] == json!(id)).unwrap().clone();
    assert_eq!(r.len(), 5, "ReturnData false hides a and b");
    assert_eq!(by("total")["Values"], json!([10.0, 12.0, 14.0]));
    assert_eq!(by("total")["Label"], json!("A plus B"));
    assert_eq!(by("filled")["Values"], json!([20.0, 0.0, 20.0, 0.0, 20.0]));
    assert_eq!(by("both")["Values"], json!([10.0, 1.0, 12.0, 3.0, 14.0]));
    assert_eq!(by("high")["Values"], json!([0.0, 0.0, 2.0, 3.0, 4.0]));
    assert_eq!(by("rate")["Values"], json!([1.0 / 60.0, 1.0 / 60.0, 1.0 / 60.0, 1.0 / 60.0]));
    assert_eq!(by("total")["Timestamps"], json!([base, base + 120.0, base + 240.0]));
    assert_eq!(by("total")["StatusCode"], json!("Complete"));
    // Newest first by default; pages of MaxDatapoints with a NextToken.
    let mut q2 = q.clone();
    q2.as_object_mut().unwrap().remove("ScanBy");
    q2["MaxDatapoints"] = json!(4);
    let p1 = e.ok("GetMetricData", q2.clone());
    assert_eq!(p1["MetricDataResults"][0]["Values"], json!([14.0, 12.0, 10.0]));
    assert_eq!(p1["MetricDataResults"][1]["Values"], json!([20.0]));
    assert_eq!(p1["MetricDataResults"][1]["StatusCode"], json!("PartialData"));
    let mut all = Vec::new();
    let mut token = p1["NextToken"].clone();
    all.extend(p1["MetricDataResults"][1]["Values"].as_array().unwrap().clone());
    while let Some(t) = token.as_str() {
        let mut q3 = q2.clone();
        q3["NextToken"] = json!(t);
        let p = e.ok("GetMetricData", q3);
        all.extend(p["MetricDataResults"][1]["Values"].as_array().unwrap().clone());
        token = p["NextToken"].clone();
    }
    assert_eq!(all, vec![json!(20.0), json!(0.0), json!(20.0), json!(0.0), json!(20.0)]);
    let (code, msg) = e.err("GetMetricData", json!({"StartTime": base, "EndTime": base + 60.0, "MetricDataQueries": [{"Id": "e1", "Expression": "m9 * 2"}]}));
    assert_eq!(
        (code.as_str(), msg.as_str()),
        ("InvalidParameterValue", "Error in expression 'e1': Unrecognized query ID 'm9'")
    );
    assert_eq!(e.err("GetMetricData", json!({"StartTime": base, "EndTime": base + 60.0, "MetricDataQueries": [{"Id": "E1", "Expression": "1"}]})).0, "InvalidParameterValue");
}

#[test]
fn list_metrics_filters_and_recently_active() {
    let e = env("list");
    put(&e, "Old", e.now_s(), 1.0);
    e.clock.advance_ms(4 * 3_600_000);
    put(&e, "New", e.now_s(), 1.0);
    e.ok("PutMetricData", json!({"Namespace": "Other", "MetricData": [{"MetricName": "New", "Value": 1.0}]}));
    let names = |v: Value| -> Vec<String> {
        v["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("{}/{}", m["Namespace"].as_str().unwrap(), m["MetricName"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(names(e.ok("ListMetrics", json!({}))), ["App/New", "App/Old", "Other/New"]);
    assert_eq!(names(e.ok("ListMetrics", json!({"RecentlyActive": "PT3H"}))), ["App/New", "Other/New"]);
    assert_eq!(
        names(e.ok("ListMetrics", json!({"Dimensions": [{"Name": "Service"}]}))),
        ["App/New", "App/Old"]
    );
    assert_eq!(names(e.ok("ListMetrics", json!({"Namespace": "Other"}))), ["Other/New"]);
    assert_eq!(
        names(e.ok("ListMetrics", json!({"Dimensions": [{"Name": "Service", "Value": "api"}]}))),
        Vec::<String>::new()
    );
}

fn alarm(e: &Env, extra: Value) {
    let mut input = json!({"AlarmName": "cpu-high", "Namespace": "App", "MetricName": "Cpu", "Statistic": "Average",
        "Dimensions": [{"Name": "Service", "Value": "web"}], "Period": 60, "EvaluationPeriods": 3, "DatapointsToAlarm": 2,
        "Threshold": 150.0, "ComparisonOperator": "GreaterThanThreshold",
        "AlarmActions": ["arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:abc:resource/ecs/service/c/web:policyName/up"]});
    if let (Value::Object(i), Value::Object(x)) = (&mut input, extra) {
        i.extend(x);
    }
    e.ok("PutMetricAlarm", input);
}

fn describe(e: &Env) -> Value {
    e.ok("DescribeAlarms", json!({"AlarmNames": ["cpu-high"]}))["MetricAlarms"][0].clone()
}

#[test]
fn alarms_evaluate_on_the_clock_with_cloudwatchs_reasons() {
    let e = env("alarm");
    alarm(&e, json!({}));
    let a = describe(&e);
    assert_eq!(a["StateValue"], json!("INSUFFICIENT_DATA"));
    assert_eq!(a["StateReason"], json!("Unchecked: Initial alarm creation"));
    e.cw.evaluate_alarms();
    let a = describe(&e);
    assert_eq!(a["StateReason"], json!("Insufficient Data: 3 datapoints were unknown."));
    // Two of the last three minutes breach: ALARM.
    let m0 = e.now_s();
    put(&e, "Cpu", m0, 200.0);
    put(&e, "Cpu", m0 + 60.0, 100.0);
    put(&e, "Cpu", m0 + 120.0, 250.0);
    e.clock.advance_ms(180_000);
    e.cw.evaluate_alarms();
    let a = describe(&e);
    assert_eq!(a["StateValue"], json!("ALARM"), "{a}");
    assert_eq!(
        a["StateReason"],
        json!(
            "Threshold Crossed: 2 out of the last 3 datapoints [250.0 (24/11/25 16:02:00), 200.0 (24/11/25 16:00:00)] were greater than the threshold (150.0) (minimum 2 datapoints for INSUFFICIENT_DATA -> ALARM transition)."
        )
    );
    let data: Value = serde_json::from_str(a["StateReasonData"].as_str().unwrap()).unwrap();
    assert_eq!(data["recentDatapoints"], json!([250.0, 100.0, 200.0]));
    assert_eq!(data["statistic"], json!("Average"));
    assert_eq!(
        data["evaluatedDatapoints"][0],
        json!({"timestamp": "2025-11-24T16:02:00.000+0000", "sampleCount": 1.0, "value": 250.0})
    );
    assert_eq!(e.actions.actions.lock().unwrap().len(), 1, "the autoscaling action is recorded");
    // Not due again before the next minute.
    e.clock.advance_ms(10_000);
    e.cw.evaluate_alarms();
    // Load stops: the next two minutes are calm, so only one of the last three breaches.
    put(&e, "Cpu", m0 + 180.0, 10.0);
    put(&e, "Cpu", m0 + 240.0, 20.0);
    e.clock.advance_ms(120_000);
    e.cw.evaluate_alarms();
    let a = describe(&e);
    assert_eq!(a["StateValue"], json!("OK"), "{a}");
    assert_eq!(
        a["StateReason"],
        json!(
            "Threshold Crossed: 2 datapoints [20.0 (24/11/25 16:04:00), 10.0 (24/11/25 16:03:00)] were not greater than the threshold (150.0)."
        )
    );
    let hist =
        e.ok("DescribeAlarmHistory", json!({"AlarmName": "cpu-high", "HistoryItemType": "StateUpdate"}));
    let summaries: Vec<&str> = hist["AlarmHistoryItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["HistorySummary"].as_str().unwrap())
        .collect();
    assert_eq!(
        summaries,
        ["Alarm updated from ALARM to OK", "Alarm updated from INSUFFICIENT_DATA to ALARM"]
    );
    let actions = e.ok("DescribeAlarmHistory", json!({"AlarmName": "cpu-high", "HistoryItemType": "Action"}));
    assert!(
        actions["AlarmHistoryItems"][0]["HistorySummary"]
            .as_str()
            .unwrap()
            .starts_with("Successfully executed action arn:aws:autoscaling:")
    );
    // State survives a restart.
    let e = e.reopen();
    assert_eq!(describe(&e)["StateValue"], json!("OK"));
}

#[test]
fn treat_missing_data_and_datapoints_to_alarm() {
    let check = |treat: &str, points: &[Option<f64>], current: &str| {
        let rule = alarms::Rule {
            evaluation_periods: 3,
            datapoints_to_alarm: 2,
            threshold: 1.0,
            operator: "GreaterThanOrEqualToThreshold",
            treat_missing: treat,
            period: 60,
            statistic: Some("Sum"),
            current: gantry_core::AlarmState::parse(current).unwrap(),
        };
        let pts: Vec<alarms::PeriodValue> =
            points.iter().enumerate().map(|(i, v)| (i as i64 * 60, v.map(|v| (v, None)))).collect();
        alarms::decide(&rule, &pts, 180_000).state.map(gantry_core::AlarmState::as_str)
    };
    let (x, o, m) = (Some(5.0), Some(0.0), None);
    assert_eq!(check("missing", &[m, m, m], "OK"), Some("INSUFFICIENT_DATA"));
    assert_eq!(check("ignore", &[m, m, m], "OK"), None);
    assert_eq!(check("breaching", &[m, m, m], "OK"), Some("ALARM"));
    assert_eq!(check("notBreaching", &[m, m, m], "ALARM"), Some("OK"));
    assert_eq!(check("missing", &[x, m, x], "OK"), Some("ALARM"));
    assert_eq!(check("missing", &[o, m, x], "ALARM"), Some("OK"));
    assert_eq!(check("ignore", &[m, m, x], "OK"), None, "one missing could still breach");
    assert_eq!(check("ignore", &[o, o, x], "ALARM"), Some("OK"));
    assert_eq!(check("breaching", &[m, o, x], "OK"), Some("ALARM"));
    assert_eq!(check("notBreaching", &[m, o, x], "ALARM"), Some("OK"));
}

#[test]
fn alarm_operations_errors_tags_and_metric_math_alarms() {
    let e = env("alarmops");
    assert_eq!(
        e.err("PutMetricAlarm", json!({"AlarmName": "a", "Namespace": "App", "MetricName": "Cpu", "Statistic": "Avg", "Period": 60, "EvaluationPeriods": 1, "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold"})),
        ("InvalidParameterValue".into(), "The value Avg for parameter Statistic is invalid.".into())
    );
    assert_eq!(e.err("PutMetricAlarm", json!({"AlarmName": "a", "Namespace": "App", "MetricName": "Cpu", "Statistic": "Sum", "Period": 45, "EvaluationPeriods": 1, "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold"})).0, "InvalidParameterValue");
    assert_eq!(
        e.err("SetAlarmState", json!({"AlarmName": "nope", "StateValue": "ALARM", "StateReason": "x"})).0,
        "ResourceNotFound"
    );
    // An alarm on metric math: the sum of two metrics.
    e.ok("PutMetricAlarm", json!({"AlarmName": "sum", "EvaluationPeriods": 1, "Threshold": 10.0, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "Metrics": [
            {"Id": "a", "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "A"}, "Period": 60, "Stat": "Sum"}, "ReturnData": false},
            {"Id": "b", "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "B"}, "Period": 60, "Stat": "Sum"}, "ReturnData": false},
            {"Id": "e", "Expression": "a + b", "Label": "total"}],
        "Tags": [{"Key": "team", "Value": "web"}]}));
    e.ok("PutMetricData", json!({"Namespace": "App", "MetricData": [{"MetricName": "A", "Value": 4.0}, {"MetricName": "B", "Value": 6.0}]}));
    e.clock.advance_ms(60_000);
    e.cw.evaluate_alarms();
    let a = e.ok("DescribeAlarms", json!({"AlarmNamePrefix": "su", "StateValue": "ALARM"}));
    assert_eq!(a["MetricAlarms"].as_array().unwrap().len(), 1, "{a}");
    let arn = a["MetricAlarms"][0]["AlarmArn"].as_str().unwrap().to_string();
    assert_eq!(arn, "arn:aws:cloudwatch:us-east-1:123456789012:alarm:sum");
    assert_eq!(
        e.ok("ListTagsForResource", json!({"ResourceARN": arn}))["Tags"],
        json!([{"Key": "team", "Value": "web"}])
    );
    e.ok("UntagResource", json!({"ResourceARN": arn, "TagKeys": ["team"]}));
    assert_eq!(e.ok("ListTagsForResource", json!({"ResourceARN": arn}))["Tags"], json!([]));
    // SetAlarmState, with actions disabled: no action runs.
    e.ok("DisableAlarmActions", json!({"AlarmNames": ["sum"]}));
    e.ok("SetAlarmState", json!({"AlarmName": "sum", "StateValue": "OK", "StateReason": "testing"}));
    let a = e.ok("DescribeAlarms", json!({"AlarmNames": ["sum"]}));
    assert_eq!(a["MetricAlarms"][0]["StateValue"], json!("OK"));
    assert_eq!(a["MetricAlarms"][0]["ActionsEnabled"], json!(false));
    assert_eq!(
        e.cw.alarm_states("123456789012", "us-east-1", &["sum".into(), "none".into()]),
        vec![Some(gantry_core::AlarmState::Ok), None]
    );
    alarm(&e, json!({}));
    let for_metric = e.ok("DescribeAlarmsForMetric", json!({"Namespace": "App", "MetricName": "Cpu"}));
    assert_eq!(for_metric["MetricAlarms"].as_array().unwrap().len(), 1);
    e.ok("DeleteAlarms", json!({"AlarmNames": ["sum", "cpu-high", "never-existed"]}));
    assert_eq!(e.ok("DescribeAlarms", json!({}))["MetricAlarms"], json!([]));
}

/// A deterministic stream of numbers for the tests below (no randomness without a seed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What GetMetricData read before `store::period_values`: every bucket copied into a map of
/// periods and merged there, then the statistic, periods before `start`'s left out.
fn reference_values(
    series: &[(&str, &store::Series)],
    (start, end, period): (i64, i64, i64),
    now_s: i64,
    stat: &sketch::Stat,
) -> Vec<(i64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for (_, s) in series {
        store::aggregate(s, start, end, period, now_s, &mut out);
    }
    out.iter()
        .filter(|(t, _)| **t >= start - start.rem_euclid(period))
        .filter_map(|(t, b)| b.stat(stat).map(|v| (*t, v.to_bits())))
        .collect()
}

#[test]
fn period_values_agree_with_merged_buckets_for_every_statistic_and_alignment() {
    let e = env("periods");
    let now = e.now_s() as i64;
    let mut rng = Lcg(16);
    let dims = json!([{"Name": "Service", "Value": "web"}]);
    // Sparse standard-resolution data over two days (values, value/count arrays, statistic sets,
    // negative values and zeros; some minutes several times, most minutes empty), a second unit
    // of the same metric, and an hour of sparse high-resolution data.
    let mut batch = Vec::new();
    for _ in 0..1500 {
        let ts = now - 2 * 86_400 + rng.below(2 * 86_400) as i64;
        let v = rng.below(2000) as f64 / 8.0 - 50.0;
        let datum = match rng.below(6) {
            0 => {
                json!({"MetricName": "Lo", "Timestamp": ts, "Values": [v, 0.0, v * 3.0], "Counts": [1.0, 2.0, 3.0]})
            }
            1 => {
                json!({"MetricName": "Lo", "Timestamp": ts, "StatisticValues": {"SampleCount": 4.0, "Sum": v * 4.0, "Minimum": v - 1.0, "Maximum": v + 1.0}})
            }
            _ => json!({"MetricName": "Lo", "Timestamp": ts, "Value": v}),
        };
        batch.push(datum);
        if rng.below(10) == 0 {
            batch.push(json!({"MetricName": "Lo", "Timestamp": ts, "Value": v, "Unit": "Count"}));
        }
        let hi = now - 3600 + rng.below(3600) as i64;
        batch.push(json!({"MetricName": "Hi", "Timestamp": hi, "Value": v, "StorageResolution": 1}));
    }
    for chunk in batch.chunks(1000) {
        let chunk: Vec<Value> = chunk
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d["Dimensions"] = dims.clone();
                d
            })
            .collect();
        e.ok("PutMetricData", json!({"Namespace": "App", "MetricData": chunk}));
    }
    let stats: Vec<sketch::Stat> =
        ["Sum", "Average", "Minimum", "Maximum", "SampleCount", "p0", "p50", "p99.9", "p100"]
            .iter()
            .map(|s| sketch::Stat::parse(s).unwrap())
            .collect();
    let key = |name: &str| {
        ("123456789012".to_string(), "us-east-1".to_string(), "App".to_string(), name.to_string())
    };
    let web = vec![("Service".to_string(), "web".to_string())];
    let mut compared = 0;
    let mut merged_periods = 0;
    let mut check = |e: &Env, now_s: i64, windows: &[(&str, Option<&str>, i64, i64, i64)]| {
        let data = e.cw.store().read();
        for &(name, unit, start, end, period) in windows {
            let found = store::by_dims(&data.metrics[&key(name)], &web, unit);
            for stat in &stats {
                let want = reference_values(&found, (start, end, period), now_s, stat);
                let got = query::metric_values(
                    &data,
                    ("123456789012", "us-east-1"),
                    ("App", name),
                    (&web, unit),
                    (start, end, period),
                    now_s,
                    stat,
                );
                let got: Vec<(i64, u64)> = got.iter().map(|&(t, v)| (t, v.to_bits())).collect();
                assert_eq!(got, want, "{name} {unit:?} {stat:?} [{start}, {end}) / {period}");
                if found.len() == 1 {
                    let mut direct = Vec::new();
                    store::period_values(found[0].1, (start, end, period), now_s, stat, &mut direct);
                    let direct: Vec<(i64, u64)> = direct.iter().map(|&(t, v)| (t, v.to_bits())).collect();
                    assert_eq!(direct, want, "{name} {stat:?} [{start}, {end}) / {period}");
                }
                compared += want.len();
                let tier = store::tier_for(found[0].1, start, period, now_s);
                if period > store::TIERS[tier].resolution {
                    merged_periods += want.len();
                }
            }
        }
    };
    let day = now - 86_400;
    let aligned = day - day.rem_euclid(3600);
    check(
        &e,
        now,
        &[
            // Periods equal to the stored resolution, coarser than it, aligned and not, with
            // partial periods at both ends; both units, and each alone.
            ("Lo", None, aligned, aligned + 86_400, 60),
            ("Lo", Some("None"), aligned + 17, aligned + 86_400 - 23, 60),
            ("Lo", Some("Count"), aligned, now, 60),
            ("Lo", Some("None"), aligned + 17, aligned + 40_000 + 31, 120),
            ("Lo", Some("None"), aligned - 86_400 + 7, now, 300),
            ("Lo", None, aligned - 86_400 + 7, now, 3600),
            ("Lo", Some("None"), aligned + 90, aligned + 150, 60),
            ("Hi", None, now - 3600, now, 1),
            ("Hi", None, now - 3600 + 3, now - 5, 5),
            ("Hi", None, now - 3599, now, 10),
            ("Hi", None, now - 3600 + 11, now, 60),
            ("Hi", None, now - 3600, now, 30),
        ],
    );
    // Sixteen days on, the data is only in the 5-minute and hour tiers: buckets coarser than a
    // 60-second period, one starting before the query's start.
    e.clock.advance_ms(16 * 86_400_000);
    let later = now + 16 * 86_400;
    check(
        &e,
        later,
        &[
            ("Lo", Some("None"), aligned + 17, aligned + 86_400, 60),
            ("Lo", None, aligned + 150, aligned + 3000, 300),
            ("Lo", Some("None"), aligned - 86_400, aligned + 86_400, 600),
        ],
    );
    assert!(compared > 20_000, "the windows hold data: {compared} values compared");
    assert!(merged_periods > 5_000, "periods of several buckets were compared: {merged_periods}");
}

/// GetMetricData's JSON, written by `query::encode_metric_data`, is byte for byte what
/// serde_json writes for the same answer.
#[test]
fn encoded_metric_data_is_what_serde_json_writes() {
    let mut rng = Lcg(7);
    let mut values = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        -2.25,
        1e15 - 1.0,
        1e15,
        -1e15 + 1.0,
        1e16,
        9_007_199_254_740_992.0,
        1e300,
        1e-300,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1_764_000_000.0,
        1_764_000_000.5,
    ];
    for digits in 1..=17 {
        let top = 10f64.powi(digits);
        values.extend([top - 1.0, top, top + 1.0, -(top - 1.0)]);
    }
    for _ in 0..20_000 {
        let v = match rng.below(4) {
            0 => (rng.next() << 20 | rng.next()) as f64,
            1 => rng.next() as f64 / 1000.0,
            2 => -((rng.next() % 1_000_000) as f64),
            _ => f64::from_bits(rng.next() << 32 | rng.next()),
        };
        values.push(v);
    }
    let result = |id: &str, vs: &[f64]| m::MetricDataResult {
        id: Some(id.into()),
        label: Some("Latency \"p99\"\n\u{1}é".into()),
        timestamps: Some(vs.iter().enumerate().map(|(i, _)| 1_764_000_000.0 - 60.0 * i as f64).collect()),
        values: Some(vs.to_vec()),
        status_code: Some("Complete".into()),
        messages: Some(vec![]),
    };
    let outputs = vec![
        m::GetMetricDataOutput::default(),
        m::GetMetricDataOutput {
            metric_data_results: Some(vec![]),
            next_token: None,
            messages: Some(vec![]),
        },
        m::GetMetricDataOutput {
            metric_data_results: Some(vec![
                result("m1", &values),
                result("m2", &[]),
                m::MetricDataResult::default(),
                m::MetricDataResult {
                    id: Some("e1".into()),
                    label: None,
                    timestamps: None,
                    values: Some(vec![3.0]),
                    status_code: Some("InternalError".into()),
                    messages: Some(vec![m::MessageData {
                        code: Some("InternalError".into()),
                        value: Some("Error in expression 'e1': x".into()),
                    }]),
                },
            ]),
            next_token: Some("gmd-100".into()),
            messages: Some(vec![m::MessageData { code: None, value: Some("v".into()) }]),
        },
    ];
    for out in &outputs {
        let fast = query::encode_metric_data(out).unwrap();
        let want = serde_json::to_vec(out).unwrap();
        if fast != want {
            let at = fast.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(fast.len().min(want.len()));
            panic!(
                "differs at byte {at}: {:?} vs {:?}",
                String::from_utf8_lossy(&fast[at.saturating_sub(40)..(at + 40).min(fast.len())]),
                String::from_utf8_lossy(&want[at.saturating_sub(40)..(at + 40).min(want.len())])
            );
        }
    }
}

#[test]
fn a_sub_minute_period_over_a_standard_resolution_series_reads_its_minutes() {
    // CloudWatch keeps a standard-resolution metric at one minute: a 30-second period shows
    // each minute's datapoint at the start of its minute, instead of nothing.
    let e = env("sub-minute");
    let base = e.now_s() - e.now_s() % 60.0 - 600.0;
    for k in 0..4 {
        put(&e, "A", base + 60.0 * k as f64 + 7.0, 1.0 + k as f64);
    }
    let q = json!({"StartTime": base, "EndTime": base + 240.0, "ScanBy": "TimestampAscending", "MetricDataQueries": [
        {"Id": "a", "MetricStat": {"Metric": {"Namespace": "App", "MetricName": "A", "Dimensions": [{"Name": "Service", "Value": "web"}]}, "Period": 30, "Stat": "Sum"}}]});
    let out = e.ok("GetMetricData", q);
    let r = &out["MetricDataResults"][0];
    assert_eq!(r["Values"], json!([1.0, 2.0, 3.0, 4.0]));
    assert_eq!(r["Timestamps"], json!([base, base + 60.0, base + 120.0, base + 180.0]));
}
