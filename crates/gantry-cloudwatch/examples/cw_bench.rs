//! The metric store's figures for BENCHMARKS.md (`bench/cloudwatch.py` runs it in release):
//! PutMetricData datapoints per second (requests of 1,000 datapoints through `CloudWatch::call`
//! on the JSON form, each fsynced before it returns), and GetMetricData over 24 hours of 1-minute
//! data for 100 series (one MetricStat per series and a SUM over them): the call with the answer
//! read back into a `serde_json::Value`, and the call alone.

use gantry_cloudwatch::{CloudWatch, RecordedActions};
use gantry_core::{FixedClock, Timestamp};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let dir = std::env::temp_dir().join(format!("gantry-cw-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let now_ms: i64 = 1_764_000_000_000;
    let clock = Arc::new(FixedClock::new(Timestamp(now_ms)));
    let cw = CloudWatch::open(
        dir.clone(),
        clock.clone(),
        Arc::new(RecordedActions::default()),
        ("123456789012".into(), "us-east-1".into()),
    )
    .expect("open");
    let call = |op: &str, v: serde_json::Value| {
        cw.call("123456789012", "us-east-1", op, &serde_json::to_vec(&v).unwrap())
            .unwrap_or_else(|e| panic!("{op}: {}", e.message))
    };
    // 24 hours of 1-minute data for 100 series: 144,000 datapoints, in requests of 1,000
    // (10 minutes of 100 series each).
    let start_s = now_ms / 1000 - 86_400;
    let start_s = start_s - start_s % 60;
    let t = Instant::now();
    let mut points = 0usize;
    for chunk in 0..144 {
        let mut data = Vec::with_capacity(1000);
        for m in 0..10 {
            let ts = start_s + (chunk * 10 + m) * 60;
            for s in 0..100 {
                data.push(json!({"MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": format!("svc-{s:03}")}],
                    "Timestamp": ts, "Value": ((ts / 60 + s) % 97) as f64, "Unit": "Milliseconds"}));
            }
        }
        points += data.len();
        call("PutMetricData", json!({"Namespace": "Bench", "MetricData": data}));
    }
    let put = t.elapsed();
    println!(
        "PutMetricData: {points} datapoints in {} requests of 1,000 in {:.2} s: {:.0} datapoints/s ({:.2} ms per fsynced request)",
        points / 1000,
        put.as_secs_f64(),
        points as f64 / put.as_secs_f64(),
        put.as_secs_f64() * 1000.0 / (points / 1000) as f64
    );
    let mut queries: Vec<serde_json::Value> = (0..100)
        .map(|s| json!({"Id": format!("m{s}"), "MetricStat": {"Metric": {"Namespace": "Bench", "MetricName": "Latency",
            "Dimensions": [{"Name": "Service", "Value": format!("svc-{s:03}")}]}, "Period": 60, "Stat": "Average"}}))
        .collect();
    let q = json!({"StartTime": start_s, "EndTime": start_s + 86_400, "MetricDataQueries": queries.clone()});
    queries.push(json!({"Id": "total", "Expression": "SUM(METRICS())"}));
    let q_math = json!({"StartTime": start_s, "EndTime": start_s + 86_400, "MetricDataQueries": queries});
    for (name, q) in [("100 MetricStats", q), ("100 MetricStats + SUM(METRICS())", q_math)] {
        // Each run is timed twice: the call alone (the request's JSON in, the answer's out), and
        // with the answer read back into a serde_json::Value, as a client would.
        let (mut times, mut served) = (Vec::new(), Vec::new());
        let mut n = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let body = call("GetMetricData", q.clone());
            served.push(t.elapsed().as_secs_f64() * 1000.0);
            let out: serde_json::Value = serde_json::from_slice(&body).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            n = out["MetricDataResults"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["Values"].as_array().unwrap().len())
                .sum();
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        served.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "GetMetricData over 24 h x 1-minute x 100 series ({name}): {n} values, median {:.1} ms, max {:.1} ms \
             (the call alone: median {:.1} ms, max {:.1} ms)",
            times[10], times[19], served[10], served[19]
        );
    }
    let t = Instant::now();
    cw.store().checkpoint().unwrap();
    println!("checkpoint of 100 series x 24 h: {:.0} ms", t.elapsed().as_secs_f64() * 1000.0);
    drop(cw);
    let t = Instant::now();
    let _cw = CloudWatch::open(
        dir.clone(),
        clock,
        Arc::new(RecordedActions::default()),
        ("123456789012".into(), "us-east-1".into()),
    )
    .unwrap();
    println!("reopen from the snapshot: {:.0} ms", t.elapsed().as_secs_f64() * 1000.0);
    let _ = std::fs::remove_dir_all(&dir);
}
