//! The time from sustained load to the first target tracking scale-out, for BENCHMARKS.md: AWS's
//! defaults (AWS/ECS published every 60 s, alarms of 60-second periods) against Gantry's
//! high-resolution setting (every 10 s, 10-second periods), on the same wiring as `gantry
//! server`: the real CloudWatch (its store, alarms and evaluation every 5 s) invoking the real
//! Application Auto Scaling through its inbox, ECS's desired count behind a stand-in port. Time
//! is a fake clock moved one second at a time, so the figures are exact and repeatable; the load
//! starts at a random offset within the publishing period (seeded), and each figure is over 50
//! runs. `cargo run --release -p gantry --example scale_out_latency`.

use gantry_appautoscaling::{AppAutoScaling, Inbox, Invocation, Settings};
use gantry_cloudwatch::{AlarmAction, AlarmActions, CloudWatch, RecordedActions};
use gantry_core::{FixedClock, Scope, SeededIds, Timestamp};
use gantry_ports::lb::PortFuture;
use gantry_ports::{MetricDatum, MetricScope, MetricValue, ServiceCapacity};
use gantry_store::SqliteStore;
use serde_json::json;
use std::sync::{Arc, Mutex};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

struct Ecs(Mutex<i32>);

impl ServiceCapacity for Ecs {
    fn desired_count(&self, _: &Scope, _: &str, _: &str) -> Result<i32, String> {
        Ok(*self.0.lock().unwrap())
    }
    fn set_desired_count<'a>(
        &'a self,
        _: &'a Scope,
        _: &'a str,
        _: &'a str,
        n: i32,
        _: &'a str,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            *self.0.lock().unwrap() = n;
            Ok(())
        })
    }
}

struct Router(Inbox, RecordedActions);

impl AlarmActions for Router {
    fn invoke(&self, a: &AlarmAction) -> Result<(), String> {
        if Inbox::handles(&a.action) {
            self.0.invoke(Invocation {
                account: a.account.clone(),
                region: a.region.clone(),
                alarm_name: a.alarm_name.clone(),
                policy_arn: a.action.clone(),
                state: a.state,
            })
        } else {
            self.1.invoke(a)
        }
    }
}

/// Seconds from the start of a sustained 80 % load (target 50 %) to the first scale-out.
async fn one_run(high_resolution: bool, offset_s: i64, run: usize) -> i64 {
    let dir = std::env::temp_dir()
        .join(format!("gantry-scale-bench-{}-{run}-{high_resolution}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t0: i64 = 1_764_000_000_000;
    let clock = Arc::new(FixedClock::new(Timestamp(t0)));
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let (inbox, mut rx) = AppAutoScaling::inbox(store.clone());
    let cw = Arc::new(
        CloudWatch::open(
            dir.clone(),
            clock.clone(),
            Arc::new(Router(inbox, RecordedActions::default())),
            (ACCOUNT.into(), REGION.into()),
        )
        .expect("cloudwatch"),
    );
    let ecs = Arc::new(Ecs(Mutex::new(1)));
    let aas = AppAutoScaling::new(
        store,
        clock.clone(),
        Arc::new(SeededIds::new(1)),
        ecs.clone(),
        cw.clone(),
        Settings { high_resolution },
    );
    let scope = Scope::new(ACCOUNT, REGION);
    let call = |op: &'static str, v: serde_json::Value| {
        let aas = &aas;
        let scope = &scope;
        async move {
            aas.call(scope, op, &serde_json::to_vec(&v).unwrap())
                .await
                .unwrap_or_else(|e| panic!("{op}: {}", e.message))
        }
    };
    let dim = "ecs:service:DesiredCount";
    call("RegisterScalableTarget", json!({"ServiceNamespace": "ecs", "ResourceId": "service/c/s", "ScalableDimension": dim, "MinCapacity": 1, "MaxCapacity": 10})).await;
    call("PutScalingPolicy", json!({"PolicyName": "cpu50", "ServiceNamespace": "ecs", "ResourceId": "service/c/s", "ScalableDimension": dim, "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 50.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}}})).await;
    let period = if high_resolution { 10 } else { 60 };
    let sink = cw.sink();
    let metric_scope = MetricScope { account: ACCOUNT.into(), region: REGION.into(), high_resolution };
    // Idle at 20 % for 10 minutes, then the load; the publisher and the evaluator tick on their
    // own schedules, as in the server (the publisher's phase is the offset).
    let mut load_started = None;
    for s in 1..=3600i64 {
        clock.advance_ms(1000);
        let loaded = s > 600 + offset_s;
        if loaded && load_started.is_none() {
            load_started = Some(s);
        }
        if s % period == 0 {
            let cpu = if loaded { 80.0 } else { 20.0 };
            sink.put_in(
                &metric_scope,
                vec![MetricDatum {
                    namespace: "AWS/ECS",
                    metric_name: "CPUUtilization",
                    dimensions: vec![("ClusterName", "c".into()), ("ServiceName", "s".into())],
                    timestamp: Timestamp(t0 + s * 1000),
                    value: MetricValue::Statistics {
                        sample_count: 1.0,
                        sum: cpu,
                        minimum: cpu,
                        maximum: cpu,
                    },
                    unit: "Percent",
                }],
            );
        }
        if s % 5 == 0 {
            cw.evaluate_alarms();
            while let Ok(inv) = rx.try_recv() {
                aas.invoke(&inv).await.expect("invoke");
            }
            if *ecs.0.lock().unwrap() > 1 {
                let _ = std::fs::remove_dir_all(&dir);
                return s - load_started.unwrap_or(s);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    panic!("no scale-out within an hour");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut offsets = Vec::new();
    for _ in 0..50 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        offsets.push((seed % 60) as i64);
    }
    println!("time from sustained load (80 % against a 50 % target) to the first scale-out, 50 runs each:");
    for (label, hr) in [
        ("AWS defaults (60 s metrics, 60 s alarm periods)", false),
        ("--appscaling-high-resolution (10 s)", true),
    ] {
        let mut secs = Vec::new();
        for (i, off) in offsets.iter().enumerate() {
            secs.push(one_run(hr, *off, i).await);
        }
        secs.sort();
        let mean = secs.iter().sum::<i64>() as f64 / secs.len() as f64;
        println!(
            "  {label:<50} min {:>4} s  median {:>4} s  mean {mean:>6.1} s  max {:>4} s",
            secs[0],
            secs[secs.len() / 2],
            secs[secs.len() - 1]
        );
    }
}
