//! The embedded metric format (EMF): log events that carry CloudWatch metrics.
//!
//! A log event whose message is a JSON object with an `_aws` member like
//!
//! ```json
//! {"_aws": {"Timestamp": 1574109732004,
//!           "CloudWatchMetrics": [{"Namespace": "lambda-function-metrics",
//!                                  "Dimensions": [["functionVersion"]],
//!                                  "Metrics": [{"Name": "time", "Unit": "Milliseconds"}]}]},
//!  "functionVersion": "$LATEST", "time": 100}
//! ```
//!
//! becomes, besides the log event, one metric datum per metric directive × dimension set ×
//! metric definition: the metric's value is the root member its `Name` references (a number, or
//! an array of at most 100 numbers, each a sample), its dimensions the root members the set names
//! (strings). This module is pure: [`extract`] turns a message into datums or says why it is not
//! valid EMF; the service sends the datums to CloudWatch through the `MetricSink` port. An
//! invalid document yields no metric at all and stays a plain log event, as in CloudWatch.

use gantry_core::Timestamp;
use gantry_ports::{ExtractedDatum, METRIC_UNITS};
use serde_json::{Map, Value};

/// At most this many metric definitions per directive, and samples per metric.
pub const MAX_METRICS: usize = 100;
pub const MAX_VALUES: usize = 100;
/// At most this many dimension keys per dimension set (CloudWatch's limit on a metric).
pub const MAX_DIMENSIONS: usize = 30;
/// Metrics with a timestamp further back than this, or further ahead than
/// [`MAX_FUTURE_MS`], are not extracted (CloudWatch's PutMetricData window).
pub const MAX_PAST_MS: i64 = 14 * 86_400_000;
pub const MAX_FUTURE_MS: i64 = 2 * 3_600_000;

/// Whether a message may be EMF at all: a JSON object mentioning `_aws`. A cheap test, so
/// ordinary log lines cost PutLogEvents nothing.
pub fn candidate(message: &str) -> bool {
    message.trim_start().starts_with('{') && message.contains("\"_aws\"")
}

/// The metrics an EMF message carries (`now` bounds its timestamp), or why it carries none.
/// `Ok(None)` for a message that is not an EMF document (no `_aws` object at the root).
pub fn extract(message: &str, now: i64) -> Result<Option<Vec<ExtractedDatum>>, String> {
    if !candidate(message) {
        return Ok(None);
    }
    let Ok(Value::Object(root)) = serde_json::from_str::<Value>(message) else {
        return Ok(None);
    };
    let Some(aws) = root.get("_aws") else { return Ok(None) };
    let aws = aws.as_object().ok_or("_aws must be an object")?;
    let ts = match aws.get("Timestamp") {
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i,
            (None, Some(f)) if f.is_finite() && f.fract() == 0.0 => f as i64,
            _ => return Err(format!("_aws.Timestamp {n} is not a whole number of milliseconds")),
        },
        Some(other) => return Err(format!("_aws.Timestamp must be a number, not {other}")),
        None => return Err("_aws.Timestamp is required".into()),
    };
    if ts < now - MAX_PAST_MS {
        return Err(format!("_aws.Timestamp {ts} is more than 14 days in the past"));
    }
    if ts > now + MAX_FUTURE_MS {
        return Err(format!("_aws.Timestamp {ts} is more than 2 hours in the future"));
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .ok_or("_aws.CloudWatchMetrics is required")?
        .as_array()
        .ok_or("_aws.CloudWatchMetrics must be an array")?;
    let mut out = Vec::new();
    for (i, d) in directives.iter().enumerate() {
        directive(&root, d, ts, &mut out).map_err(|e| format!("CloudWatchMetrics[{i}]: {e}"))?;
    }
    Ok(Some(out))
}

fn directive(
    root: &Map<String, Value>,
    d: &Value,
    ts: i64,
    out: &mut Vec<ExtractedDatum>,
) -> Result<(), String> {
    let d = d.as_object().ok_or("a metric directive must be an object")?;
    let namespace = match d.get("Namespace") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 && !s.starts_with(':') => s,
        Some(Value::String(s)) => return Err(format!("Namespace '{s}' is not 1 to 255 characters")),
        Some(_) => return Err("Namespace must be a string".into()),
        None => return Err("Namespace is required".into()),
    };
    if namespace.starts_with("AWS/") {
        return Err(format!("Namespace '{namespace}' is reserved for AWS"));
    }
    let sets = d
        .get("Dimensions")
        .ok_or("Dimensions is required")?
        .as_array()
        .ok_or("Dimensions must be an array")?;
    if sets.is_empty() {
        return Err("Dimensions must hold at least one dimension set".into());
    }
    let mut dimension_sets: Vec<Vec<(String, String)>> = Vec::with_capacity(sets.len());
    for set in sets {
        let keys = set.as_array().ok_or("a dimension set must be an array of strings")?;
        if keys.len() > MAX_DIMENSIONS {
            return Err(format!("a dimension set has {} keys; at most {MAX_DIMENSIONS}", keys.len()));
        }
        let mut dims: Vec<(String, String)> = Vec::with_capacity(keys.len());
        for k in keys {
            let k = k.as_str().ok_or("a dimension key must be a string")?;
            if k.is_empty() || k.len() > 255 {
                return Err(format!("dimension key '{k}' is not 1 to 255 characters"));
            }
            if dims.iter().any(|(n, _)| n == k) {
                return Err(format!("dimension key '{k}' appears twice in a set"));
            }
            let v = match root.get(k) {
                Some(Value::String(v)) if !v.is_empty() && v.len() <= 1024 => v,
                Some(Value::String(_)) => return Err(format!("dimension '{k}' is not 1 to 1024 characters")),
                Some(_) => return Err(format!("dimension '{k}' must be a string")),
                None => return Err(format!("dimension '{k}' is not a member of the root")),
            };
            dims.push((k.to_string(), v.clone()));
        }
        dimension_sets.push(dims);
    }
    let metrics =
        d.get("Metrics").ok_or("Metrics is required")?.as_array().ok_or("Metrics must be an array")?;
    if metrics.len() > MAX_METRICS {
        return Err(format!("{} metric definitions; at most {MAX_METRICS}", metrics.len()));
    }
    for m in metrics {
        let m = m.as_object().ok_or("a metric definition must be an object")?;
        let name = match m.get("Name") {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s,
            _ => return Err("a metric definition's Name must be a string of 1 to 255 characters".into()),
        };
        let unit = match m.get("Unit") {
            None | Some(Value::Null) => "None",
            Some(Value::String(u)) => METRIC_UNITS
                .iter()
                .find(|x| **x == u.as_str())
                .ok_or(format!("Unit '{u}' of {name} is not a CloudWatch unit"))?,
            Some(_) => return Err(format!("the Unit of {name} must be a string")),
        };
        let high_resolution = match m.get("StorageResolution") {
            None | Some(Value::Null) => false,
            Some(Value::Number(n)) if n.as_i64() == Some(60) => false,
            Some(Value::Number(n)) if n.as_i64() == Some(1) => true,
            Some(other) => {
                return Err(format!("the StorageResolution of {name} is {other}; it must be 1 or 60"));
            }
        };
        let values: Vec<f64> = match root.get(name.as_str()) {
            Some(Value::Number(n)) => vec![n.as_f64().ok_or(format!("metric {name}'s value"))?],
            Some(Value::Array(a)) => {
                if a.len() > MAX_VALUES {
                    return Err(format!("metric {name} has {} values; at most {MAX_VALUES}", a.len()));
                }
                a.iter()
                    .map(|v| v.as_f64().ok_or(format!("metric {name}'s values must be numbers")))
                    .collect::<Result<_, _>>()?
            }
            Some(_) => return Err(format!("metric {name} must be a number or an array of numbers")),
            None => return Err(format!("metric {name} is not a member of the root")),
        };
        if values.is_empty() {
            continue;
        }
        for dims in &dimension_sets {
            out.push(ExtractedDatum {
                namespace: namespace.clone(),
                metric_name: name.clone(),
                dimensions: dims.clone(),
                timestamp: Timestamp(ts),
                values: values.clone(),
                unit: unit.to_string(),
                high_resolution,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_574_109_732_004;

    fn ok(msg: &str) -> Vec<ExtractedDatum> {
        extract(msg, NOW).unwrap_or_else(|e| panic!("{e}: {msg}")).expect("an EMF document")
    }

    fn bad(msg: &str) -> String {
        extract(msg, NOW).expect_err(msg)
    }

    /// The specification's own example.
    #[test]
    fn the_specifications_example() {
        let d = ok(r#"{
          "_aws": {
            "Timestamp": 1574109732004,
            "CloudWatchMetrics": [
              {
                "Namespace": "lambda-function-metrics",
                "Dimensions": [["functionVersion"]],
                "Metrics": [{"Name": "time", "Unit": "Milliseconds"}]
              }
            ]
          },
          "functionVersion": "$LATEST",
          "time": 100,
          "requestId": "989ffbf8-9ace-4817-a57c-e4dd734019ee"
        }"#);
        assert_eq!(
            d,
            vec![ExtractedDatum {
                namespace: "lambda-function-metrics".into(),
                metric_name: "time".into(),
                dimensions: vec![("functionVersion".into(), "$LATEST".into())],
                timestamp: Timestamp(1_574_109_732_004),
                values: vec![100.0],
                unit: "Milliseconds".into(),
                high_resolution: false,
            }]
        );
    }

    /// Every dimension set makes a metric of its own; arrays are samples; no unit is `None`;
    /// StorageResolution 1 is high resolution; an empty dimension set is a metric without
    /// dimensions.
    #[test]
    fn dimension_sets_arrays_units_and_resolution() {
        let d = ok(r#"{"_aws": {"Timestamp": 1574109732004, "CloudWatchMetrics": [
            {"Namespace": "App", "Dimensions": [["Service"], ["Service", "Operation"], []],
             "Metrics": [{"Name": "Latency", "Unit": "Milliseconds", "StorageResolution": 1},
                         {"Name": "Hits"}]}]},
            "Service": "cart", "Operation": "add", "Latency": [1, 2.5, 3], "Hits": 4}"#);
        assert_eq!(d.len(), 6);
        let lat: Vec<_> = d.iter().filter(|x| x.metric_name == "Latency").collect();
        assert_eq!(lat.len(), 3);
        assert!(
            lat.iter().all(|x| x.values == [1.0, 2.5, 3.0] && x.high_resolution && x.unit == "Milliseconds")
        );
        assert_eq!(
            lat[1].dimensions,
            vec![("Service".into(), "cart".into()), ("Operation".into(), "add".into())]
        );
        assert!(lat[2].dimensions.is_empty());
        let hits = d.iter().find(|x| x.metric_name == "Hits").unwrap();
        assert_eq!(
            (hits.unit.as_str(), hits.high_resolution, hits.values.as_slice()),
            ("None", false, &[4.0][..])
        );
    }

    /// Container Insights' Task event, as AWS documents it, is valid EMF.
    #[test]
    fn container_insights_task_event() {
        let d = ok(r#"{"Version": "0", "Type": "Task", "TaskId": "7ac4dfba69214411b4783a3b8189c9ba",
            "TaskDefinitionFamily": "sleep360", "ClusterName": "MyCluster", "Timestamp": 1574109732004,
            "CpuUtilized": 0.0, "CpuReserved": 10.0, "MemoryUtilized": 0, "MemoryReserved": 10,
            "_aws": {"Timestamp": 1574109732004, "CloudWatchMetrics": [{"Namespace": "ECS/ContainerInsights",
              "Metrics": [{"Name": "CpuUtilized", "Unit": "None"}, {"Name": "MemoryReserved", "Unit": "Megabytes"}],
              "Dimensions": [["ClusterName"], ["ClusterName", "TaskDefinitionFamily"]]}]}}"#);
        assert_eq!(d.len(), 4);
        assert_eq!(d[3].metric_name, "MemoryReserved");
        assert_eq!(d[3].values, vec![10.0]);
        assert_eq!(d[3].dimensions[1], ("TaskDefinitionFamily".into(), "sleep360".into()));
    }

    /// Messages that are not EMF documents are not looked at further.
    #[test]
    fn plain_messages_are_not_emf() {
        for m in ["hello", "{\"a\": 1}", "[\"_aws\"]", "{\"_aws\" oops", "{\"x\": \"_aws\"}"] {
            assert_eq!(extract(m, NOW), Ok(None), "{m}");
        }
    }

    /// An invalid document yields no metric, and says why.
    #[test]
    fn invalid_documents() {
        let doc = |aws: &str, rest: &str| format!(r#"{{"_aws": {aws}{rest}}}"#);
        let good_dir = r#"{"Namespace": "N", "Dimensions": [["d"]], "Metrics": [{"Name": "m"}]}"#;
        let with = |dir: &str, rest: &str| {
            doc(&format!(r#"{{"Timestamp": {NOW}, "CloudWatchMetrics": [{dir}]}}"#), rest)
        };
        let cases: Vec<(String, &str)> = vec![
            (doc("1", ""), "_aws must be an object"),
            (doc(r#"{"CloudWatchMetrics": []}"#, ""), "Timestamp is required"),
            (doc(r#"{"Timestamp": "now", "CloudWatchMetrics": []}"#, ""), "must be a number"),
            (
                doc(&format!(r#"{{"Timestamp": {}, "CloudWatchMetrics": []}}"#, NOW - 15 * 86_400_000), ""),
                "14 days",
            ),
            (
                doc(&format!(r#"{{"Timestamp": {}, "CloudWatchMetrics": []}}"#, NOW + 3 * 3_600_000), ""),
                "2 hours",
            ),
            (doc(&format!(r#"{{"Timestamp": {NOW}}}"#), ""), "CloudWatchMetrics is required"),
            (with(r#"{"Dimensions": [["d"]], "Metrics": []}"#, r#", "d": "x""#), "Namespace is required"),
            (with(r#"{"Namespace": "AWS/ECS", "Dimensions": [[]], "Metrics": []}"#, ""), "reserved"),
            (with(r#"{"Namespace": "N", "Dimensions": [], "Metrics": []}"#, ""), "at least one"),
            (with(good_dir, r#", "m": 1"#), "dimension 'd' is not a member"),
            (with(good_dir, r#", "d": 5, "m": 1"#), "dimension 'd' must be a string"),
            (with(good_dir, r#", "d": "x""#), "metric m is not a member"),
            (with(good_dir, r#", "d": "x", "m": "1""#), "number or an array"),
            (with(good_dir, r#", "d": "x", "m": [1, "2"]"#), "must be numbers"),
            (
                with(
                    r#"{"Namespace": "N", "Dimensions": [["d"]], "Metrics": [{"Name": "m", "Unit": "Parsecs"}]}"#,
                    r#", "d": "x", "m": 1"#,
                ),
                "Unit 'Parsecs'",
            ),
            (
                with(
                    r#"{"Namespace": "N", "Dimensions": [["d"]], "Metrics": [{"Name": "m", "Unit": "milliseconds"}]}"#,
                    r#", "d": "x", "m": 1"#,
                ),
                "Unit 'milliseconds' of m is not a CloudWatch unit",
            ),
            (
                with(
                    r#"{"Namespace": "N", "Dimensions": [["d"]], "Metrics": [{"Name": "m", "StorageResolution": 5}]}"#,
                    r#", "d": "x", "m": 1"#,
                ),
                "must be 1 or 60",
            ),
            (
                with(r#"{"Namespace": "N", "Dimensions": [["d", "d"]], "Metrics": []}"#, r#", "d": "x""#),
                "twice",
            ),
        ];
        for (msg, why) in cases {
            let e = bad(&msg);
            assert!(e.contains(why), "{msg}: {e} (expected {why})");
        }
        // At most 100 values.
        let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let e = bad(&with(good_dir, &format!(r#", "d": "x", "m": [{}]"#, many.join(","))));
        assert!(e.contains("at most 100"), "{e}");
        // An empty array is no sample, not an error.
        assert_eq!(ok(&with(good_dir, r#", "d": "x", "m": []"#)), vec![]);
    }
}
