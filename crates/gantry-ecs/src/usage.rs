//! What the agents measured of their tasks, and the AWS/ECS CloudWatch metrics made of it.
//!
//! Agents report each running task's CPU (in CPU units) and memory every few seconds; the latest
//! report of each task is kept in memory (per server process, like agent connections). Once a
//! period the binary asks [`ControlPlane::ecs_metrics`] for the datapoints, computed as AWS
//! defines them:
//!
//! - **by ClusterName and ServiceName**: `CPUUtilization` = 100 × CPU units used by the service's
//!   tasks / CPU units they reserve (so a task burning a whole core with `cpu: 512` is at 200 %),
//!   `MemoryUtilization` likewise with MiB; as a statistic set whose sample count is the number
//!   of tasks, minimum and maximum the tasks' own utilizations and average the ratio of sums;
//! - **by ClusterName**: the same over every reporting task of the cluster, against the CPU and
//!   memory registered by the cluster's ACTIVE container instances (plus the reservations of its
//!   Fargate tasks, which run on no registered instance); and `CPUReservation` /
//!   `MemoryReservation` = 100 × what tasks reserve on the cluster's ACTIVE instances / what the
//!   instances registered, for clusters with instances.
//!
//! A report older than [`STALE_MS`] no longer counts (its agent went away, or the task stopped).

use crate::ControlPlane;
use crate::keys;
use crate::ops::instance_record::InstanceRecord;
use crate::ops::tasks::TaskRecord;
use crate::records::{load, load_prefix};
use crate::reservation::resource_int;
use gantry_core::protocol::{ContainerStats, TaskStats, TaskStatsReport};
use gantry_core::{Arn, Scope, TaskStatus, Timestamp};
use gantry_ports::{MetricDatum, MetricScope, MetricValue};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// A report counts for this long after it arrived (two minutes).
pub const STALE_MS: i64 = 120_000;

/// The latest stats of each task, and when each node last reported.
#[derive(Debug, Default)]
pub struct Usage {
    tasks: Mutex<HashMap<String, (TaskStats, i64)>>,
    nodes: Mutex<HashMap<String, i64>>,
    /// Each task's network counters at its last Container Insights event, and when.
    network: Mutex<HashMap<String, (u64, u64, i64)>>,
}

impl Usage {
    /// The reports and the nodes that reported within [`STALE_MS`] of `now`.
    pub(crate) fn fresh(&self, now: i64) -> (Vec<TaskStats>, Vec<String>) {
        let tasks = lock(&self.tasks)
            .values()
            .filter(|(_, at)| now - *at < STALE_MS)
            .map(|(t, _)| t.clone())
            .collect();
        let nodes = lock(&self.nodes)
            .iter()
            .filter(|(_, at)| now - **at < STALE_MS)
            .map(|(n, _)| n.clone())
            .collect();
        (tasks, nodes)
    }

    /// A task's network receive and transmit rates (bytes per second) since the last time they
    /// were asked for, and remembers its counters; 0 the first time (or after a counter reset).
    pub(crate) fn network_rates(&self, t: &TaskStats, now: i64) -> (f64, f64) {
        self.rates(t.task_arn.clone(), t.network_rx_bytes, t.network_tx_bytes, now)
    }

    /// The same for one container of a task (kept under `TASK-ARN#NAME`).
    pub(crate) fn container_network_rates(&self, task_arn: &str, c: &ContainerStats, now: i64) -> (f64, f64) {
        self.rates(format!("{task_arn}#{}", c.name), c.network_rx_bytes, c.network_tx_bytes, now)
    }

    fn rates(&self, key: String, rx_now: u64, tx_now: u64, now: i64) -> (f64, f64) {
        let mut network = lock(&self.network);
        let prev = network.insert(key, (rx_now, tx_now, now));
        match prev {
            Some((rx, tx, at)) if now > at && rx_now >= rx && tx_now >= tx => {
                let secs = (now - at) as f64 / 1000.0;
                ((rx_now - rx) as f64 / secs, (tx_now - tx) as f64 / secs)
            }
            _ => (0.0, 0.0),
        }
    }

    /// Forgets the network counters of tasks (and their containers) other than `keep`
    /// (stopped, or no longer reported).
    pub(crate) fn forget_rates_except(&self, keep: &[String]) {
        let keep: std::collections::HashSet<&str> = keep.iter().map(String::as_str).collect();
        lock(&self.network).retain(|k, _| keep.contains(k.split_once('#').map_or(k.as_str(), |(t, _)| t)));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sums for one utilization metric: used and reserved, and each task's own ratio.
#[derive(Debug, Default)]
struct Sums {
    used: f64,
    reserved: f64,
    ratios: Vec<f64>,
}

impl Sums {
    fn add(&mut self, used: f64, reserved: f64) {
        if reserved > 0.0 {
            self.used += used;
            self.reserved += reserved;
            self.ratios.push(100.0 * used / reserved);
        }
    }

    /// A statistic set: as many samples as tasks, averaging to the ratio of the sums (against
    /// `denominator` when given: the cluster's registered capacity).
    fn datum(&self, denominator: Option<f64>) -> Option<MetricValue> {
        let d = denominator.unwrap_or(self.reserved);
        if self.ratios.is_empty() || d <= 0.0 {
            return None;
        }
        let n = self.ratios.len() as f64;
        let avg = 100.0 * self.used / d;
        let min = self.ratios.iter().copied().fold(f64::INFINITY, f64::min).min(avg);
        let max = self.ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max).max(avg);
        Some(MetricValue::Statistics { sample_count: n, sum: avg * n, minimum: min, maximum: max })
    }
}

#[derive(Debug, Default)]
struct ClusterSums {
    cpu: Sums,
    memory: Sums,
    fargate_cpu: f64,
    fargate_memory: f64,
    services: BTreeMap<String, (Sums, Sums)>,
}

impl ControlPlane {
    /// Keeps an agent's report.
    pub fn record_task_stats(&self, report: TaskStatsReport) {
        let now = self.clock.now().0;
        lock(&self.usage.nodes).insert(report.node.clone(), now);
        let mut tasks = lock(&self.usage.tasks);
        tasks.retain(|_, (_, at)| now - *at < STALE_MS);
        for t in report.tasks {
            tasks.insert(t.task_arn.clone(), (t, now));
        }
    }

    /// The AWS/ECS datapoints of this moment, per account and region. `high_resolution` marks
    /// them StorageResolution 1 (a publisher more frequent than once a minute).
    pub fn ecs_metrics(&self, high_resolution: bool) -> Vec<(MetricScope, Vec<MetricDatum>)> {
        let now = self.clock.now().0;
        let (fresh, nodes) = self.usage.fresh(now);
        // (account, region, cluster) → sums.
        let mut clusters: BTreeMap<(String, String, String), ClusterSums> = BTreeMap::new();
        for node in &nodes {
            if let Some(a) = Arn::parse(node).filter(|a| a.resource_type == "container-instance")
                && let Some((cluster, _)) = a.resource.split_once('/')
            {
                clusters.entry((a.account.clone(), a.region.clone(), cluster.to_string())).or_default();
            }
        }
        for t in &fresh {
            let Some(a) = Arn::parse(&t.task_arn).filter(|a| a.resource_type == "task") else { continue };
            let Some((cluster, id)) = a.resource.split_once('/') else { continue };
            let scope = Scope::new(a.account.clone(), a.region.clone());
            let Ok(Some(rec)) = load::<TaskRecord>(&*self.store, &keys::task(&scope, cluster, id)) else {
                continue;
            };
            let rec = rec.value;
            if rec.task.last_status != TaskStatus::Running {
                continue;
            }
            let (cpu_reserved, mem_reserved) = (rec.reserved.cpu as f64, rec.reserved.memory as f64);
            let mem_used = t.memory_bytes as f64 / (1024.0 * 1024.0);
            let c = clusters.entry((a.account.clone(), a.region.clone(), cluster.to_string())).or_default();
            c.cpu.add(t.cpu_units, cpu_reserved);
            c.memory.add(mem_used, mem_reserved);
            if rec.node.starts_with("fargate:") {
                c.fargate_cpu += cpu_reserved;
                c.fargate_memory += mem_reserved;
            }
            if let Some(service) = rec.task.service() {
                let s = c.services.entry(service.to_string()).or_default();
                s.0.add(t.cpu_units, cpu_reserved);
                s.1.add(mem_used, mem_reserved);
            }
        }
        let ts = Timestamp(now);
        let mut out: BTreeMap<(String, String), Vec<MetricDatum>> = BTreeMap::new();
        for ((account, region, cluster), c) in clusters {
            let scope = Scope::new(account.clone(), region.clone());
            // What the cluster's ACTIVE instances registered, and what tasks hold of it.
            let instances: Vec<InstanceRecord> = load_prefix::<InstanceRecord>(
                &*self.store,
                &keys::container_instance_prefix(&scope, &cluster),
            )
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.value)
            .filter(|i| i.status == gantry_core::InstanceStatus::Active)
            .collect();
            let (mut reg_cpu, mut reg_mem, mut rem_cpu, mut rem_mem) = (0.0, 0.0, 0.0, 0.0);
            for i in &instances {
                let (reg, rem) = (&i.registered_resources, &i.remaining_resources);
                reg_cpu += resource_int(reg, "CPU") as f64;
                reg_mem += resource_int(reg, "MEMORY") as f64;
                rem_cpu += resource_int(rem, "CPU") as f64;
                rem_mem += resource_int(rem, "MEMORY") as f64;
            }
            let data = out.entry((account, region)).or_default();
            let datum =
                |name: &'static str, dims: Vec<(&'static str, String)>, value: MetricValue| MetricDatum {
                    namespace: "AWS/ECS",
                    metric_name: name,
                    dimensions: dims,
                    timestamp: ts,
                    value,
                    unit: "Percent",
                };
            for (service, (cpu, mem)) in &c.services {
                let dims = vec![("ClusterName", cluster.clone()), ("ServiceName", service.clone())];
                if let Some(v) = cpu.datum(None) {
                    data.push(datum("CPUUtilization", dims.clone(), v));
                }
                if let Some(v) = mem.datum(None) {
                    data.push(datum("MemoryUtilization", dims, v));
                }
            }
            let dims = vec![("ClusterName", cluster.clone())];
            let (cpu_capacity, mem_capacity) = if reg_cpu > 0.0 || reg_mem > 0.0 {
                (Some(reg_cpu + c.fargate_cpu), Some(reg_mem + c.fargate_memory))
            } else {
                (None, None)
            };
            if let Some(v) = c.cpu.datum(cpu_capacity) {
                data.push(datum("CPUUtilization", dims.clone(), v));
            }
            if let Some(v) = c.memory.datum(mem_capacity) {
                data.push(datum("MemoryUtilization", dims.clone(), v));
            }
            if reg_cpu > 0.0 {
                data.push(datum(
                    "CPUReservation",
                    dims.clone(),
                    MetricValue::Value(100.0 * (reg_cpu - rem_cpu) / reg_cpu),
                ));
            }
            if reg_mem > 0.0 {
                data.push(datum(
                    "MemoryReservation",
                    dims,
                    MetricValue::Value(100.0 * (reg_mem - rem_mem) / reg_mem),
                ));
            }
        }
        out.into_iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|((account, region), d)| (MetricScope { account, region, high_resolution }, d))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_is_against_the_reservation() {
        let mut s = Sums::default();
        s.add(1024.0, 512.0);
        s.add(256.0, 512.0);
        match s.datum(None) {
            Some(MetricValue::Statistics { sample_count, sum, minimum, maximum }) => {
                assert_eq!((sample_count, sum / sample_count, minimum, maximum), (2.0, 125.0, 50.0, 200.0));
            }
            other => panic!("{other:?}"),
        }
        // Against a cluster's registered capacity instead.
        match s.datum(Some(2048.0)) {
            Some(MetricValue::Statistics { sum, sample_count, .. }) => assert_eq!(sum / sample_count, 62.5),
            other => panic!("{other:?}"),
        }
        assert_eq!(Sums::default().datum(None), None);
    }
}
