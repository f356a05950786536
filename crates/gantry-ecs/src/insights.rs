//! Container Insights: the performance log events of clusters whose `containerInsights` setting
//! is `enabled` or `enhanced`, in embedded metric format, as CloudWatch's
//! `/aws/ecs/containerinsights/CLUSTER/performance` log group holds them.
//!
//! Once a period the binary asks [`ControlPlane::container_insights`] for the events and delivers
//! them through the `LogSink` port (CloudWatch Logs), which extracts their `ECS/ContainerInsights`
//! metrics as it does for any EMF event: the metrics come from the events, as on AWS.
//!
//! - **Type Task**, one per running task with a fresh report from its agent, in the stream
//!   `AgentTelemetry-INSTANCE_ID` (EC2) or `FargateTelemetry-NODE_ID` (Fargate): CpuUtilized and
//!   CpuReserved (CPU units), MemoryUtilized and MemoryReserved (MiB), NetworkRx/TxBytes (bytes
//!   per second since the previous event of the task, 0 for its first), StorageRead/WriteBytes
//!   (cumulative, as AWS documents them), with the dimension sets `[ClusterName]`,
//!   `[ClusterName, TaskDefinitionFamily]` and, for a service's task, `[ClusterName,
//!   ServiceName]`. With `enhanced`, also TaskCpuUtilization and TaskMemoryUtilization
//!   (percent of the reservation) and the task-level sets `[ClusterName, TaskDefinitionFamily,
//!   TaskId]` and `[ClusterName, ServiceName, TaskId]`.
//! - **Type Container** (`enhanced` only), one per running container of such a task, in the
//!   task's stream: ContainerCpuUtilized/Reserved/Utilization, ContainerMemoryUtilized/
//!   Reserved/Utilization, ContainerNetworkRx/TxBytes, ContainerStorageRead/WriteBytes by
//!   `[ClusterName, ContainerName, TaskDefinitionFamily]`, the same with `TaskId`, and for a
//!   service's task `[ClusterName, ContainerName, ServiceName]` with and without `TaskId`.
//! - **Type Service**, one per ACTIVE service: DesiredTaskCount, RunningTaskCount,
//!   PendingTaskCount, DeploymentCount, TaskSetCount by `[ServiceName, ClusterName]`.
//! - **Type Cluster**: TaskCount (running), ContainerInstanceCount (registered),
//!   ServiceCount (active) by `[ClusterName]`.
//!
//! Service and Cluster events go to the stream `ClusterTelemetry` (AWS does not document theirs).
//! A cluster is looked at when one of its container instances or tasks reported in the last
//! [`STALE_MS`](crate::usage::STALE_MS).

use crate::ControlPlane;
use crate::keys;
use crate::ops::tasks::TaskRecord;
use crate::records::load;
use crate::{Ctx, status};
use gantry_core::protocol::{ContainerStats, TaskStats};
use gantry_core::{Arn, Scope, TaskStatus};
use gantry_model::{Cluster, DescribeClustersRequest, DescribeServicesRequest, ListServicesRequest, Service};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The log events of one stream of one cluster's performance log group.
#[derive(Debug, Clone, PartialEq)]
pub struct PerformanceEvents {
    pub account: String,
    pub region: String,
    /// `/aws/ecs/containerinsights/CLUSTER/performance`
    pub group: String,
    pub stream: String,
    /// (epoch milliseconds, the event's JSON)
    pub events: Vec<(i64, String)>,
}

/// (account, region, log group, log stream)
type StreamKey = (String, String, String, String);

/// The namespace of Container Insights' metrics.
pub const NAMESPACE: &str = "ECS/ContainerInsights";

/// The stream of Service and Cluster events.
pub const CLUSTER_STREAM: &str = "ClusterTelemetry";

/// A cluster's Container Insights level: `enabled`, `enhanced`, or off.
fn level(cluster: &Cluster) -> Option<&'static str> {
    let setting = cluster
        .settings
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|s| s.name.as_deref() == Some("containerInsights"))?;
    match setting.value.as_deref()? {
        "enabled" => Some("enabled"),
        "enhanced" => Some("enhanced"),
        _ => None,
    }
}

fn metrics(names: &[(&str, &str)]) -> Value {
    Value::Array(names.iter().map(|(n, u)| json!({"Name": n, "Unit": u})).collect())
}

fn directive(metric_names: &[(&str, &str)], dimensions: Vec<Vec<&str>>) -> Value {
    json!([{"Namespace": NAMESPACE, "Metrics": metrics(metric_names), "Dimensions": dimensions}])
}

/// A stored timestamp as epoch milliseconds.
fn ms(t: Option<gantry_core::Timestamp>) -> Option<i64> {
    t.map(|s| s.0)
}

/// What Task and Container events say of their task: its ARN's parts, its definition's family
/// and revision, its service.
struct TaskIdentity<'a> {
    arn: Arn,
    cluster: &'a str,
    task_id: &'a str,
    family: &'a str,
    revision: &'a str,
    service: Option<&'a str>,
}

impl<'a> TaskIdentity<'a> {
    fn of(rec: &'a TaskRecord) -> Option<Self> {
        let arn_text = rec.task.task_arn.as_str();
        let arn = Arn::parse(arn_text)?;
        // The cluster and ID as slices of the stored ARN (its last two path segments).
        let (cluster, task_id) = arn_text.rsplit_once(':')?.1.strip_prefix("task/")?.split_once('/')?;
        let (family, revision) =
            rec.task.task_definition_arn.rsplit('/').next().and_then(|fr| fr.rsplit_once(':'))?;
        let service = rec.task.service();
        Some(TaskIdentity { arn, cluster, task_id, family, revision, service })
    }
}

/// A Task event (see the module's documentation). `rates` are the network counters' bytes
/// per second.
pub(crate) fn task_event(
    rec: &TaskRecord,
    stats: &TaskStats,
    rates: (f64, f64),
    enhanced: bool,
    now: i64,
) -> Option<Value> {
    let id = TaskIdentity::of(rec)?;
    let (arn, cluster, task_id, family, revision, service) =
        (&id.arn, id.cluster, id.task_id, id.family, id.revision, id.service);
    let cpu_reserved = rec.reserved.cpu as f64;
    let mem_reserved = rec.reserved.memory as f64;
    let mem_used = stats.memory_bytes as f64 / (1024.0 * 1024.0);
    let mut e = Map::new();
    let mut put = |k: &str, v: Value| {
        e.insert(k.to_string(), v);
    };
    put("Version", json!("0"));
    put("Type", json!("Task"));
    put("TaskId", json!(task_id));
    put("TaskDefinitionFamily", json!(family));
    put("TaskDefinitionRevision", json!(revision));
    if let Some(ci) = rec.task.container_instance_arn.as_deref().and_then(|a| a.rsplit('/').next()) {
        put("ContainerInstanceId", json!(ci));
    }
    if let Some(s) = service {
        put("ServiceName", json!(s));
    }
    put("ClusterName", json!(cluster));
    put("AccountID", json!(arn.account));
    put("Region", json!(arn.region));
    if let Some(az) = &rec.task.availability_zone {
        put("AvailabilityZone", json!(az));
    }
    put("KnownStatus", json!(rec.task.last_status.as_str()));
    put("LaunchType", json!(rec.task.launch_type));
    for (k, v) in [
        ("PullStartedAt", ms(rec.task.pull_started_at)),
        ("PullStoppedAt", ms(rec.task.pull_stopped_at)),
        ("CreatedAt", ms(Some(rec.task.created_at))),
        ("StartedAt", ms(rec.task.started_at)),
    ] {
        if let Some(v) = v {
            put(k, json!(v));
        }
    }
    put("Timestamp", json!(now));
    put("CpuUtilized", json!(stats.cpu_units));
    put("CpuReserved", json!(cpu_reserved));
    put("MemoryUtilized", json!(mem_used));
    put("MemoryReserved", json!(mem_reserved));
    put("StorageReadBytes", json!(stats.storage_read_bytes));
    put("StorageWriteBytes", json!(stats.storage_write_bytes));
    put("NetworkRxBytes", json!(rates.0));
    put("NetworkTxBytes", json!(rates.1));
    let mut names = vec![
        ("CpuUtilized", "None"),
        ("CpuReserved", "None"),
        ("MemoryUtilized", "Megabytes"),
        ("MemoryReserved", "Megabytes"),
        ("StorageReadBytes", "Bytes"),
        ("StorageWriteBytes", "Bytes"),
        ("NetworkRxBytes", "Bytes/Second"),
        ("NetworkTxBytes", "Bytes/Second"),
    ];
    let mut dims = vec![vec!["ClusterName"], vec!["ClusterName", "TaskDefinitionFamily"]];
    if service.is_some() {
        dims.push(vec!["ClusterName", "ServiceName"]);
    }
    if enhanced {
        let pct = |used: f64, reserved: f64| if reserved > 0.0 { 100.0 * used / reserved } else { 0.0 };
        put("TaskCpuUtilization", json!(pct(stats.cpu_units, cpu_reserved)));
        put("TaskMemoryUtilization", json!(pct(mem_used, mem_reserved)));
        names.push(("TaskCpuUtilization", "Percent"));
        names.push(("TaskMemoryUtilization", "Percent"));
        dims.push(vec!["ClusterName", "TaskDefinitionFamily", "TaskId"]);
        if service.is_some() {
            dims.push(vec!["ClusterName", "ServiceName", "TaskId"]);
        }
    }
    put("CloudWatchMetrics", directive(&names, dims.clone()));
    e.insert("_aws".into(), json!({"Timestamp": now, "CloudWatchMetrics": directive(&names, dims)}));
    Some(Value::Object(e))
}

/// A Container event of an `enhanced` cluster: one container of a Task event's task, with the
/// container's own use against its own reservation (its definition's `cpu`, and `memory` or
/// else `memoryReservation`; the task's when the container has none), by container name.
pub(crate) fn container_event(
    rec: &TaskRecord,
    c: &ContainerStats,
    rates: (f64, f64),
    now: i64,
) -> Option<Value> {
    let id = TaskIdentity::of(rec)?;
    let (cluster, task_id, family, revision, service) =
        (id.cluster, id.task_id, id.family, id.revision, id.service);
    let def = rec.task.containers.iter().find(|x| x.name == c.name);
    let number = |v: Option<&String>| v.and_then(|v| v.parse::<f64>().ok()).filter(|v| *v > 0.0);
    let cpu_reserved = def.and_then(|d| number(Some(&d.cpu))).unwrap_or(rec.reserved.cpu as f64);
    let mem_reserved = def
        .and_then(|d| number(d.memory.as_ref()).or_else(|| number(d.memory_reservation.as_ref())))
        .unwrap_or(rec.reserved.memory as f64);
    let mem_used = c.memory_bytes as f64 / (1024.0 * 1024.0);
    let pct = |used: f64, reserved: f64| if reserved > 0.0 { 100.0 * used / reserved } else { 0.0 };
    let mut e = Map::new();
    let mut put = |k: &str, v: Value| {
        e.insert(k.to_string(), v);
    };
    put("Version", json!("0"));
    put("Type", json!("Container"));
    put("ContainerName", json!(c.name));
    put("TaskId", json!(task_id));
    put("TaskDefinitionFamily", json!(family));
    put("TaskDefinitionRevision", json!(revision));
    if let Some(ci) = rec.task.container_instance_arn.as_deref().and_then(|a| a.rsplit('/').next()) {
        put("ContainerInstanceId", json!(ci));
    }
    if let Some(s) = service {
        put("ServiceName", json!(s));
    }
    put("ClusterName", json!(cluster));
    put("Timestamp", json!(now));
    put("ContainerCpuUtilized", json!(c.cpu_units));
    put("ContainerCpuReserved", json!(cpu_reserved));
    put("ContainerCpuUtilization", json!(pct(c.cpu_units, cpu_reserved)));
    put("ContainerMemoryUtilized", json!(mem_used));
    put("ContainerMemoryReserved", json!(mem_reserved));
    put("ContainerMemoryUtilization", json!(pct(mem_used, mem_reserved)));
    put("ContainerNetworkRxBytes", json!(rates.0));
    put("ContainerNetworkTxBytes", json!(rates.1));
    put("ContainerStorageReadBytes", json!(c.storage_read_bytes));
    put("ContainerStorageWriteBytes", json!(c.storage_write_bytes));
    let names = [
        ("ContainerCpuUtilized", "None"),
        ("ContainerCpuReserved", "None"),
        ("ContainerCpuUtilization", "Percent"),
        ("ContainerMemoryUtilized", "Megabytes"),
        ("ContainerMemoryReserved", "Megabytes"),
        ("ContainerMemoryUtilization", "Percent"),
        ("ContainerNetworkRxBytes", "Bytes/Second"),
        ("ContainerNetworkTxBytes", "Bytes/Second"),
        ("ContainerStorageReadBytes", "Bytes"),
        ("ContainerStorageWriteBytes", "Bytes"),
    ];
    let mut dims = vec![
        vec!["ClusterName", "ContainerName", "TaskDefinitionFamily"],
        vec!["ClusterName", "ContainerName", "TaskDefinitionFamily", "TaskId"],
    ];
    if service.is_some() {
        dims.push(vec!["ClusterName", "ContainerName", "ServiceName"]);
        dims.push(vec!["ClusterName", "ContainerName", "ServiceName", "TaskId"]);
    }
    put("CloudWatchMetrics", directive(&names, dims.clone()));
    e.insert("_aws".into(), json!({"Timestamp": now, "CloudWatchMetrics": directive(&names, dims)}));
    Some(Value::Object(e))
}

/// A Service event.
pub(crate) fn service_event(cluster: &str, s: &Service, now: i64) -> Value {
    let names = [
        ("DesiredTaskCount", "Count"),
        ("RunningTaskCount", "Count"),
        ("PendingTaskCount", "Count"),
        ("DeploymentCount", "Count"),
        ("TaskSetCount", "Count"),
    ];
    let dims = vec![vec!["ServiceName", "ClusterName"]];
    json!({
        "Version": "0",
        "Type": "Service",
        "ServiceName": s.service_name.as_deref().unwrap_or_default(),
        "ClusterName": cluster,
        "Timestamp": now,
        "DesiredTaskCount": s.desired_count,
        "RunningTaskCount": s.running_count,
        "PendingTaskCount": s.pending_count,
        "DeploymentCount": s.deployments.as_ref().map_or(0, |d| d.len()),
        "TaskSetCount": s.task_sets.as_ref().map_or(0, |t| t.len()),
        "CloudWatchMetrics": directive(&names, dims.clone()),
        "_aws": {"Timestamp": now, "CloudWatchMetrics": directive(&names, dims)},
    })
}

/// A Cluster event.
pub(crate) fn cluster_event(c: &Cluster, now: i64) -> Value {
    let names = [("TaskCount", "Count"), ("ContainerInstanceCount", "Count"), ("ServiceCount", "Count")];
    let dims = vec![vec!["ClusterName"]];
    json!({
        "Version": "0",
        "Type": "Cluster",
        "ClusterName": c.cluster_name.as_deref().unwrap_or_default(),
        "Timestamp": now,
        "TaskCount": c.running_tasks_count,
        "ContainerInstanceCount": c.registered_container_instances_count,
        "ServiceCount": c.active_services_count,
        "CloudWatchMetrics": directive(&names, dims.clone()),
        "_aws": {"Timestamp": now, "CloudWatchMetrics": directive(&names, dims)},
    })
}

/// The performance log group of a cluster.
pub fn log_group(cluster: &str) -> String {
    format!("/aws/ecs/containerinsights/{cluster}/performance")
}

impl ControlPlane {
    /// The Container Insights performance events of this moment, per cluster and stream, for
    /// the clusters with Container Insights `enabled` or `enhanced` that have something to
    /// report: tasks or instances that reported recently, an ACTIVE service, or a container
    /// instance whose agent was heard (an idle cluster still gets its Service and Cluster
    /// events, as on AWS, where they come every minute).
    pub fn container_insights(&self) -> Vec<PerformanceEvents> {
        let now = self.clock.now().0;
        let (fresh, nodes) = self.usage.fresh(now);
        // (account, region, cluster) → its fresh task reports.
        let mut clusters: BTreeMap<(String, String, String), Vec<TaskStats>> = BTreeMap::new();
        // Clusters with ACTIVE services: `/_ecs/service/ACCOUNT/REGION/CLUSTER/NAME`.
        let services = keys::scheduled_services_prefix();
        self.store.visit(&services, &mut |kv| {
            let mut it = kv.key[services.len()..].splitn(4, '/');
            if let (Some(a), Some(r), Some(c), Some(_)) = (it.next(), it.next(), it.next(), it.next()) {
                clusters.entry((a.to_string(), r.to_string(), c.to_string())).or_default();
            }
        });
        // Clusters with instances whose agents were heard: `/_ecs/heartbeat/NODE`.
        let heard = keys::heartbeat_prefix();
        let mut heard_nodes = Vec::new();
        self.store.visit(&heard, &mut |kv| heard_nodes.push(kv.key[heard.len()..].to_string()));
        for node in heard_nodes.iter().chain(&nodes) {
            if let Some(a) = Arn::parse(node).filter(|a| a.resource_type == "container-instance")
                && let Some((cluster, _)) = a.resource.split_once('/')
            {
                clusters.entry((a.account.clone(), a.region.clone(), cluster.to_string())).or_default();
            }
        }
        for t in fresh {
            if let Some(a) = Arn::parse(&t.task_arn).filter(|a| a.resource_type == "task")
                && let Some((cluster, _)) = a.resource.split_once('/')
            {
                clusters
                    .entry((a.account.clone(), a.region.clone(), cluster.to_string()))
                    .or_default()
                    .push(t);
            }
        }
        let mut out: BTreeMap<StreamKey, Vec<(i64, String)>> = BTreeMap::new();
        let mut seen_tasks = Vec::new();
        for ((account, region, cluster), tasks) in clusters {
            let scope = Scope::new(account.clone(), region.clone());
            let ctx = Ctx::root(scope.clone());
            let described = self.describe_clusters(
                &ctx,
                DescribeClustersRequest {
                    clusters: Some(vec![cluster.clone()]),
                    include: Some(vec!["SETTINGS".into()]),
                },
            );
            let Some(c) = described.ok().and_then(|d| d.clusters).and_then(|c| c.into_iter().next()) else {
                continue;
            };
            if c.status.as_deref().and_then(gantry_core::ClusterStatus::parse)
                != Some(gantry_core::ClusterStatus::Active)
            {
                continue;
            }
            let Some(level) = level(&c) else { continue };
            let enhanced = level == "enhanced";
            let group = log_group(&cluster);
            let mut push = |stream: String, event: Value| {
                out.entry((account.clone(), region.clone(), group.clone(), stream))
                    .or_default()
                    .push((now, event.to_string()));
            };
            for t in &tasks {
                let Some(id) = t.task_arn.rsplit('/').next() else { continue };
                let Ok(Some(rec)) = load::<TaskRecord>(&*self.store, &keys::task(&scope, &cluster, id))
                else {
                    continue;
                };
                let rec = rec.value;
                if rec.task.last_status != TaskStatus::Running {
                    continue;
                }
                let rates = self.usage.network_rates(t, now);
                seen_tasks.push(t.task_arn.clone());
                let stream = match rec.node.strip_prefix("fargate:") {
                    Some(node) => format!("FargateTelemetry-{node}"),
                    None => format!("AgentTelemetry-{}", rec.node.rsplit('/').next().unwrap_or_default()),
                };
                if let Some(e) = task_event(&rec, t, rates, enhanced, now) {
                    push(stream.clone(), e);
                }
                if enhanced {
                    for c in &t.containers {
                        let rates = self.usage.container_network_rates(&t.task_arn, c, now);
                        if let Some(e) = container_event(&rec, c, rates, now) {
                            push(stream.clone(), e);
                        }
                    }
                }
            }
            for s in self.active_services(&ctx, &cluster) {
                push(CLUSTER_STREAM.to_string(), service_event(&cluster, &s, now));
            }
            push(CLUSTER_STREAM.to_string(), cluster_event(&c, now));
        }
        self.usage.forget_rates_except(&seen_tasks);
        out.into_iter()
            .map(|((account, region, group, stream), events)| PerformanceEvents {
                account,
                region,
                group,
                stream,
                events,
            })
            .collect()
    }

    /// Every ACTIVE service of a cluster, described.
    fn active_services(&self, ctx: &Ctx, cluster: &str) -> Vec<Service> {
        let mut arns = Vec::new();
        let mut token = None;
        loop {
            let req = ListServicesRequest {
                cluster: Some(cluster.to_string()),
                max_results: Some(100),
                next_token: token.take(),
                ..Default::default()
            };
            let Ok(page) = self.list_services(ctx, req) else { break };
            arns.extend(page.service_arns.unwrap_or_default());
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let mut out = Vec::new();
        for chunk in arns.chunks(10) {
            let req = DescribeServicesRequest {
                cluster: Some(cluster.to_string()),
                services: chunk.to_vec(),
                include: None,
            };
            if let Ok(d) = self.describe_services(ctx, req) {
                out.extend(
                    d.services
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|s| status::service_status(s) == Some(gantry_core::ServiceStatus::Active)),
                );
            }
        }
        out
    }
}
