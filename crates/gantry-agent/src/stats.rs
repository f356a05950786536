//! Container stats for CloudWatch's AWS/ECS metrics: every interval the agent samples the
//! engine's stats of each running task's containers and reports each task's CPU (in CPU units,
//! averaged over the interval), memory in use, and network and storage counters to the control
//! plane, as the ECS agent's metrics channel does.
//!
//! CPU is Docker's own formula, `Δ container CPU time / Δ host CPU time × online CPUs`, over the
//! interval between two samples of a container (over the engine's one-second pre-sample for the
//! first), so a task burning one core reports 1,024 units whatever its reservation. Memory is
//! usage less the page cache (`inactive_file` on cgroup v2, `cache` on v1), as `docker stats`
//! and the ECS agent count it.

use crate::agent::Agent;
use crate::client::ControlClient;
use crate::runtime::Runtime;
use gantry_core::protocol::{ContainerStats, TaskStats, TaskStatsReport};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often the agent samples and reports (the ECS agent publishes every 20 seconds; the server
/// aggregates to its publishing period).
pub const INTERVAL: Duration = Duration::from_secs(5);

/// A container's cumulative CPU counters: its own CPU time and the host's, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuCounters {
    pub container: f64,
    pub system: f64,
}

/// What one stats sample says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pub cpu_units: f64,
    pub memory_bytes: u64,
    pub rx: u64,
    pub tx: u64,
    pub read: u64,
    pub write: u64,
    pub counters: Option<CpuCounters>,
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut at = v;
    for p in path {
        at = at.get(p)?;
    }
    at.as_f64()
}

fn counters(v: &Value, which: &str) -> Option<CpuCounters> {
    Some(CpuCounters {
        container: num(v, &[which, "cpu_usage", "total_usage"])?,
        system: num(v, &[which, "system_cpu_usage"])?,
    })
}

/// Reads a Docker stats document; `prev` is this container's counters at the last sample.
pub fn parse(v: &Value, prev: Option<CpuCounters>) -> Sample {
    let now = counters(v, "cpu_stats");
    let cpus = num(v, &["cpu_stats", "online_cpus"])
        .or_else(|| {
            v.pointer("/cpu_stats/cpu_usage/percpu_usage").and_then(Value::as_array).map(|a| a.len() as f64)
        })
        .unwrap_or(1.0)
        .max(1.0);
    let before = prev.or_else(|| counters(v, "precpu_stats"));
    let cores = match (now, before) {
        (Some(n), Some(b)) if n.system > b.system && n.container >= b.container => {
            (n.container - b.container) / (n.system - b.system) * cpus
        }
        _ => 0.0,
    };
    let usage = num(v, &["memory_stats", "usage"]).unwrap_or(0.0);
    let cache = num(v, &["memory_stats", "stats", "inactive_file"])
        .or_else(|| num(v, &["memory_stats", "stats", "cache"]))
        .unwrap_or(0.0);
    let (mut rx, mut tx) = (0u64, 0u64);
    if let Some(nets) = v.get("networks").and_then(Value::as_object) {
        for n in nets.values() {
            rx += n.get("rx_bytes").and_then(Value::as_u64).unwrap_or(0);
            tx += n.get("tx_bytes").and_then(Value::as_u64).unwrap_or(0);
        }
    }
    let (mut read, mut write) = (0u64, 0u64);
    if let Some(ios) = v.pointer("/blkio_stats/io_service_bytes_recursive").and_then(Value::as_array) {
        for io in ios {
            let n = io.get("value").and_then(Value::as_u64).unwrap_or(0);
            match io.get("op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
                Some("read") => read += n,
                Some("write") => write += n,
                _ => {}
            }
        }
    }
    Sample {
        cpu_units: cores * 1024.0,
        memory_bytes: (usage - cache).max(0.0) as u64,
        rx,
        tx,
        read,
        write,
        counters: now,
    }
}

/// Samples the agent's running tasks every `interval` and reports them, until the process ends.
pub async fn run<R: Runtime, C: ControlClient>(agent: Arc<Agent<R, C>>, interval: Duration) {
    let mut prev: HashMap<String, CpuCounters> = HashMap::new();
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // Sent even when empty: the server learns the node's cluster has an agent (reservation
        // metrics).
        let report = sample(&agent, &mut prev).await;
        if let Err(e) = agent.client().report_stats(&report).await {
            tracing::debug!(error = %e, "reporting container stats failed");
        }
    }
}

/// One round: every RUNNING task's containers sampled at once.
pub async fn sample<R: Runtime, C: ControlClient>(
    agent: &Agent<R, C>,
    prev: &mut HashMap<String, CpuCounters>,
) -> TaskStatsReport {
    let runtime = agent.runtime().clone();
    let tasks: Vec<_> = agent.tasks_meta().into_iter().filter(|t| t.known_status == "RUNNING").collect();
    let mut calls = Vec::new();
    for t in &tasks {
        let arn = t.assignment.task.task_arn.clone().unwrap_or_default();
        for (name, c) in t.containers.iter().filter(|(_, c)| c.known_status == "RUNNING") {
            let (runtime, id, arn, name) = (runtime.clone(), c.docker_id.clone(), arn.clone(), name.clone());
            calls.push(async move { (arn, name, id.clone(), runtime.stats(&id).await) });
        }
    }
    let results = futures_util::future::join_all(calls).await;
    let mut by_task: std::collections::BTreeMap<String, TaskStats> = std::collections::BTreeMap::new();
    let mut seen = HashMap::new();
    for (arn, name, id, r) in results {
        let Ok(doc) = r else { continue };
        let s = parse(&doc, prev.get(&id).copied());
        if let Some(c) = s.counters {
            seen.insert(id, c);
        }
        let t =
            by_task.entry(arn.clone()).or_insert_with(|| TaskStats { task_arn: arn, ..Default::default() });
        t.cpu_units += s.cpu_units;
        t.memory_bytes += s.memory_bytes;
        t.network_rx_bytes += s.rx;
        t.network_tx_bytes += s.tx;
        t.storage_read_bytes += s.read;
        t.storage_write_bytes += s.write;
        t.containers.push(ContainerStats {
            name,
            cpu_units: s.cpu_units,
            memory_bytes: s.memory_bytes,
            network_rx_bytes: s.rx,
            network_tx_bytes: s.tx,
            storage_read_bytes: s.read,
            storage_write_bytes: s.write,
        });
    }
    *prev = seen;
    TaskStatsReport { node: agent.node().to_string(), tasks: by_task.into_values().collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_busy_core_is_1024_units_and_cache_is_not_memory() {
        let doc = json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000_000u64}, "system_cpu_usage": 20_000_000_000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 2_000_000_000u64}, "system_cpu_usage": 18_000_000_000u64},
            "memory_stats": {"usage": 50_000_000u64, "stats": {"inactive_file": 10_000_000u64}},
            "networks": {"eth0": {"rx_bytes": 100, "tx_bytes": 50}, "eth1": {"rx_bytes": 1, "tx_bytes": 2}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "read", "value": 7}, {"op": "Write", "value": 9}]},
        });
        let s = parse(&doc, None);
        assert_eq!(s.cpu_units, 1024.0);
        assert_eq!((s.memory_bytes, s.rx, s.tx, s.read, s.write), (40_000_000, 101, 52, 7, 9));
        // Against an earlier sample of its own: half a core over that interval.
        let earlier = CpuCounters { container: 1_000_000_000.0, system: 12_000_000_000.0 };
        assert_eq!(parse(&doc, Some(earlier)).cpu_units, 512.0);
        assert_eq!(parse(&json!({}), None), Sample::default());
    }
}
