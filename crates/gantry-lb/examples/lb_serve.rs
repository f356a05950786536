//! Serves one static ALB configuration, for the benchmark (`bench/lb.py`): an HTTP listener
//! forwarding round robin to the given targets, health-checked on `/` every 5 s.
//!
//! `lb_serve --port 8080 --target 127.0.0.1:9001 --target 127.0.0.1:9002 [--threads 1]`
//! (`--threads 1`, the default, runs on one thread: the benchmark pins each proxy to one core).

use gantry_core::{SeededIds, SystemClock};
use gantry_lb::config::{Action, Config, Forward, Listener, Protocol, Target, TargetGroup};
use gantry_lb::{LoadBalancer, Options};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The gantry binary's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LB: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/bench/0000000000000001";
const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/bench/0000000000000001";

fn main() -> Result<(), String> {
    let mut port = 8080u16;
    let mut threads = 1usize;
    let mut targets: Vec<SocketAddr> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--threads" => threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--target" => targets.push(value()?.parse().map_err(|e| format!("--target: {e}"))?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let lb = LoadBalancer::new(
            Options::default(),
            Arc::new(SystemClock),
            &SeededIds::from_entropy(),
            Arc::new(gantry_ports::NoMetrics),
        );
        let mut tg = TargetGroup::new(TG, Protocol::Http);
        tg.health_check.interval = Duration::from_secs(5);
        tg.health_check.healthy_threshold = 2;
        tg.targets = targets.into_iter().map(Target::ip).collect();
        let mut l = Listener::new(&format!("{LB}/listener"), LB, port, Protocol::Http);
        l.default_actions =
            vec![Action::Forward(Forward { target_groups: vec![(TG.to_string(), 1)], stickiness: None })];
        lb.apply(&Config { listeners: vec![l], target_groups: vec![tg] }).map_err(|e| e.to_string())?;
        eprintln!("lb_serve: listening on 127.0.0.1:{port}");
        std::future::pending::<()>().await;
        Ok::<(), String>(())
    })
}
