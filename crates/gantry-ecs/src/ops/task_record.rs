//! A task as its record stores it ([`super::tasks::TaskRecord`]'s `task`): a domain type, not
//! ECS's wire shape. What Gantry always knows of a task it created (its ARNs, statuses, creation
//! time, launch type, CPU and memory, group, containers) is required; statuses are
//! [`TaskStatus`] and [`HealthStatus`], times are [`Timestamp`]s.
//!
//! Its JSON is the JSON of ECS's `Task` shape that Gantry wrote before it had this type (the same
//! camelCase names, statuses as ECS's strings, times as epoch seconds): records of earlier
//! releases read as they are, and the agent channel hands the stored JSON to agents unchanged
//! (`agent_channel::RawTaskRecord`), which parse it as ECS's `Task`. A status absent from the
//! JSON reads as the lifecycle's start (`lastStatus` PROVISIONING, `desiredStatus` RUNNING, a
//! container's PENDING, health UNKNOWN); one that is not ECS's is a failed read naming it, as in
//! every stored record. The one place it becomes the wire shape is [`StoredTask::to_wire`].
//!
//! User-supplied pass-through data (overrides, tags, attachments and their details, managed
//! agents, network bindings) keeps its wire sub-shapes.

use gantry_core::time::epoch_seconds;
use gantry_core::{HealthStatus, TaskStatus, Timestamp};
use gantry_model::{
    Attachment, Attribute, Container, EphemeralStorage, InferenceAccelerator, ManagedAgent, NetworkBinding,
    NetworkInterface, SharingStrategy, Tag, Task, TaskEphemeralStorage, TaskOverride,
    TrustedExecutionSummary,
};
use serde::{Deserialize, Serialize};

/// A task's `connectivity`: whether its agent reaches the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Connectivity {
    Connected,
    Disconnected,
}

impl Connectivity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Connectivity::Connected => "CONNECTED",
            Connectivity::Disconnected => "DISCONNECTED",
        }
    }
}

/// A task as stored. Field order and names follow ECS's `Task`. A status absent from the JSON
/// takes its first value (PROVISIONING, desired RUNNING, health UNKNOWN); a status that is not
/// one of ECS's names is a failed read, which the record layer reports with the key, as for
/// every stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTask {
    /// Its elastic network interface (awsvpc); user-visible details as ECS's shape.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    pub cluster_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity: Option<Connectivity>,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub connectivity_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
    #[serde(default)]
    pub containers: Vec<StoredContainer>,
    pub cpu: String,
    #[serde(with = "epoch_seconds")]
    pub created_at: Timestamp,
    #[serde(default = "running")]
    pub desired_status: TaskStatus,
    #[serde(default)]
    pub enable_execute_command: bool,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<Timestamp>,
    /// `service:NAME`, `family:FAMILY`, `daemon:NAME` or the caller's.
    #[serde(default)]
    pub group: String,
    #[serde(default = "unknown")]
    pub health_status: HealthStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_accelerators: Option<Vec<InferenceAccelerator>>,
    #[serde(default = "provisioning")]
    pub last_status: TaskStatus,
    pub launch_type: String,
    pub memory: String,
    #[serde(default)]
    pub overrides: TaskOverride,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<Timestamp>,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<Timestamp>,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<Timestamp>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub task_arn: String,
    pub task_definition_arn: String,
    #[serde(default)]
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fargate_ephemeral_storage: Option<TaskEphemeralStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_execution_summary: Option<TrustedExecutionSummary>,
}

/// One of a task's containers as stored. Its `lastStatus` takes a task's lifecycle names
/// (PENDING, RUNNING, STOPPED).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredContainer {
    pub container_arn: String,
    pub task_arn: String,
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    #[serde(default = "pending")]
    pub last_status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_bindings: Option<Vec<NetworkBinding>>,
    #[serde(default)]
    pub network_interfaces: Vec<NetworkInterface>,
    /// Only a container with a health check has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_agents: Option<Vec<ManagedAgent>>,
    #[serde(default)]
    pub cpu: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neuron_device_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_sharing_strategy: Option<SharingStrategy>,
}

impl StoredTask {
    /// ECS's `Task`, as DescribeTasks, RunTask, StartTask and StopTask answer: the one place the
    /// record becomes the wire shape ([`Self::to_wire`] for a borrowed one).
    pub fn into_wire(self) -> Task {
        let s = |t: Option<Timestamp>| t.map(Timestamp::as_epoch_seconds);
        Task {
            attachments: Some(self.attachments),
            attributes: Some(self.attributes),
            availability_zone: self.availability_zone,
            capacity_provider_name: self.capacity_provider_name,
            cluster_arn: Some(self.cluster_arn),
            connectivity: self.connectivity.map(|c| c.as_str().into()),
            connectivity_at: s(self.connectivity_at),
            container_instance_arn: self.container_instance_arn,
            containers: Some(self.containers.into_iter().map(StoredContainer::into_wire).collect()),
            cpu: Some(self.cpu),
            created_at: Some(self.created_at.as_epoch_seconds()),
            desired_status: Some(self.desired_status.as_str().into()),
            enable_execute_command: self.enable_execute_command,
            execution_stopped_at: s(self.execution_stopped_at),
            group: Some(self.group),
            health_status: Some(self.health_status.as_str().into()),
            inference_accelerators: self.inference_accelerators,
            last_status: Some(self.last_status.as_str().into()),
            launch_type: Some(self.launch_type),
            memory: Some(self.memory),
            overrides: Some(self.overrides),
            platform_version: self.platform_version,
            platform_family: self.platform_family,
            pull_started_at: s(self.pull_started_at),
            pull_stopped_at: s(self.pull_stopped_at),
            started_at: s(self.started_at),
            started_by: self.started_by,
            stop_code: self.stop_code,
            stopped_at: s(self.stopped_at),
            stopped_reason: self.stopped_reason,
            stopping_at: s(self.stopping_at),
            tags: Some(self.tags),
            task_arn: Some(self.task_arn),
            task_definition_arn: Some(self.task_definition_arn),
            version: self.version,
            ephemeral_storage: self.ephemeral_storage,
            fargate_ephemeral_storage: self.fargate_ephemeral_storage,
            trusted_execution_summary: self.trusted_execution_summary,
        }
    }

    /// [`Self::into_wire`] of a copy.
    pub fn to_wire(&self) -> Task {
        self.clone().into_wire()
    }

    /// Whether the task is STOPPED.
    pub fn is_stopped(&self) -> bool {
        self.last_status == TaskStatus::Stopped
    }

    /// Whether the task was asked to stop (its desired status is STOPPED).
    pub fn stop_wanted(&self) -> bool {
        self.desired_status == TaskStatus::Stopped
    }

    /// The family of its definition (`...:task-definition/FAMILY:REVISION`).
    pub fn family(&self) -> Option<&str> {
        self.task_definition_arn.rsplit('/').next().and_then(|x| x.split(':').next())
    }

    /// The service it belongs to, by its group `service:NAME`.
    pub fn service(&self) -> Option<&str> {
        self.group.strip_prefix("service:")
    }

    /// The container of that name.
    pub fn container_mut(&mut self, name: &str) -> Option<&mut StoredContainer> {
        self.containers.iter_mut().find(|c| c.name == name)
    }
}

impl StoredContainer {
    /// ECS's `Container`.
    pub fn into_wire(self) -> Container {
        Container {
            container_arn: Some(self.container_arn),
            task_arn: Some(self.task_arn),
            name: Some(self.name),
            image: Some(self.image),
            image_digest: self.image_digest,
            runtime_id: self.runtime_id,
            last_status: Some(self.last_status.as_str().into()),
            exit_code: self.exit_code,
            reason: self.reason,
            network_bindings: self.network_bindings,
            network_interfaces: Some(self.network_interfaces),
            health_status: self.health_status.map(|h| h.as_str().into()),
            managed_agents: self.managed_agents,
            cpu: Some(self.cpu),
            memory: self.memory,
            memory_reservation: self.memory_reservation,
            gpu_ids: self.gpu_ids,
            neuron_device_ids: self.neuron_device_ids,
            gpu_sharing_strategy: self.gpu_sharing_strategy,
        }
    }
}

fn running() -> TaskStatus {
    TaskStatus::Running
}
fn provisioning() -> TaskStatus {
    TaskStatus::Provisioning
}
fn pending() -> TaskStatus {
    TaskStatus::Pending
}
fn unknown() -> HealthStatus {
    HealthStatus::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::tasks::TaskRecord;
    use gantry_model::{KeyValuePair, NetworkConfiguration};
    use serde_json::{Value, json};

    /// A task as the release before this type wrote it: ECS's `Task` shape, with every field
    /// Gantry sets somewhere in a task's life (times at the millisecond, as Gantry's clock).
    fn old_task() -> Task {
        let arn = "arn:aws:ecs:us-east-1:000000000000:task/prod/01a23dde124f9bb133a0df542984c6f1";
        let container = |name: &str, status: &str| Container {
            container_arn: Some(format!("arn:aws:ecs:us-east-1:000000000000:container/prod/x/{name}")),
            task_arn: Some(arn.into()),
            name: Some(name.into()),
            image: Some("public.ecr.aws/docker/library/busybox:1.36".into()),
            runtime_id: Some(format!("docker-{name}")),
            last_status: Some(status.into()),
            exit_code: Some(137),
            reason: Some("killed".into()),
            network_bindings: Some(vec![NetworkBinding {
                bind_ip: Some("0.0.0.0".into()),
                container_port: Some(80),
                host_port: Some(32768),
                protocol: Some("tcp".into()),
                ..Default::default()
            }]),
            network_interfaces: Some(vec![NetworkInterface {
                attachment_id: Some("att-1".into()),
                private_ipv4_address: Some("10.0.0.7".into()),
                ipv6_address: None,
            }]),
            health_status: Some("HEALTHY".into()),
            managed_agents: Some(vec![ManagedAgent {
                name: Some("ExecuteCommandAgent".into()),
                last_status: Some("RUNNING".into()),
                last_started_at: Some(1796334293.601),
                ..Default::default()
            }]),
            cpu: Some("128".into()),
            memory: Some("256".into()),
            memory_reservation: Some("64".into()),
            gpu_ids: Some(vec!["GPU-a".into()]),
            ..Default::default()
        };
        Task {
            attachments: Some(vec![Attachment {
                id: Some("att-1".into()),
                r#type: Some("ElasticNetworkInterface".into()),
                status: Some("DELETED".into()),
                details: Some(vec![KeyValuePair {
                    name: Some("privateIPv4Address".into()),
                    value: Some("10.0.0.7".into()),
                }]),
            }]),
            attributes: Some(vec![Attribute {
                name: "ecs.cpu-architecture".into(),
                value: Some("x86_64".into()),
                ..Default::default()
            }]),
            availability_zone: Some("us-east-1a".into()),
            capacity_provider_name: Some("FARGATE_SPOT".into()),
            cluster_arn: Some("arn:aws:ecs:us-east-1:000000000000:cluster/prod".into()),
            connectivity: Some("DISCONNECTED".into()),
            connectivity_at: Some(1796334293.565),
            container_instance_arn: Some(
                "arn:aws:ecs:us-east-1:000000000000:container-instance/prod/ci".into(),
            ),
            containers: Some(vec![container("app", "STOPPED"), container("side", "RUNNING")]),
            cpu: Some("256".into()),
            created_at: Some(1796334293.583),
            desired_status: Some("STOPPED".into()),
            enable_execute_command: true,
            execution_stopped_at: Some(1796334293.7),
            group: Some("service:web".into()),
            health_status: Some("UNHEALTHY".into()),
            last_status: Some("STOPPED".into()),
            launch_type: Some("FARGATE".into()),
            memory: Some("512".into()),
            overrides: Some(
                serde_json::from_value(json!({"containerOverrides": [{"name": "app"}]})).unwrap(),
            ),
            platform_version: Some("1.4.0".into()),
            platform_family: Some("Linux".into()),
            pull_started_at: Some(1796334293.59),
            pull_stopped_at: Some(1796334293.6),
            started_at: Some(1796334293.61),
            started_by: Some("ecs-svc/5528817163459607562".into()),
            stop_code: Some("SpotInterruption".into()),
            stopped_at: Some(1796334293.701),
            stopped_reason: Some("Your Spot Task was interrupted.".into()),
            stopping_at: Some(1796334293.65),
            tags: Some(vec![Tag { key: Some("tier".into()), value: Some("front".into()) }]),
            task_arn: Some(arn.into()),
            task_definition_arn: Some("arn:aws:ecs:us-east-1:000000000000:task-definition/fg:1".into()),
            version: 7,
            ephemeral_storage: Some(EphemeralStorage { size_in_gi_b: 20 }),
            fargate_ephemeral_storage: Some(TaskEphemeralStorage { size_in_gi_b: 20, ..Default::default() }),
            ..Default::default()
        }
    }

    /// A whole task record as the previous release wrote it, around `task`.
    fn old_record(task: &Task) -> Value {
        json!({
            "task": task,
            "node": "fargate:n1",
            "reserved": {"cpu": 256, "memory": 512, "ports_tcp": [], "ports_udp": []},
            "network_configuration": serde_json::to_value(NetworkConfiguration::default()).unwrap(),
            "reclaim_at_ms": 1796334413583i64,
        })
    }

    /// Compares two JSON objects key by key (naming the first field that differs).
    fn same_fields(got: &Value, want: &Value, at: &str) {
        let (Value::Object(g), Value::Object(w)) = (got, want) else {
            assert_eq!(got, want, "{at}");
            return;
        };
        let keys: std::collections::BTreeSet<&String> = g.keys().chain(w.keys()).collect();
        for k in keys {
            let here = format!("{at}.{k}");
            match (g.get(k), w.get(k)) {
                (Some(Value::Array(a)), Some(Value::Array(b))) if a.len() == b.len() => {
                    for (i, (x, y)) in a.iter().zip(b).enumerate() {
                        same_fields(x, y, &format!("{here}[{i}]"));
                    }
                }
                (Some(x @ Value::Object(_)), Some(y)) => same_fields(x, y, &here),
                (x, y) => assert_eq!(x, y, "{here}"),
            }
        }
    }

    #[test]
    fn a_record_of_the_previous_release_reads_and_writes_back_the_same_json() {
        let old = old_task();
        let stored = old_record(&old);
        let rec: TaskRecord = serde_json::from_value(stored.clone()).unwrap();
        let t = &rec.task;
        assert_eq!((t.last_status, t.desired_status), (TaskStatus::Stopped, TaskStatus::Stopped));
        assert_eq!(t.health_status, HealthStatus::Unhealthy);
        assert_eq!(t.connectivity, Some(Connectivity::Disconnected));
        assert_eq!(t.created_at, Timestamp(1_796_334_293_583));
        assert_eq!(t.stopped_at, Some(Timestamp(1_796_334_293_701)));
        assert_eq!(t.containers[0].last_status, TaskStatus::Stopped);
        assert_eq!(t.containers[1].last_status, TaskStatus::Running);
        assert_eq!(t.containers[0].health_status, Some(HealthStatus::Healthy));
        assert_eq!((t.family(), t.service()), (Some("fg"), Some("web")));
        // Written back, field by field the JSON it was read from.
        same_fields(&serde_json::to_value(&rec).unwrap(), &stored, "record");
        // The wire shape is the task the old release answered with.
        assert_eq!(t.to_wire(), old);
        // What the agent channel hands the agent (the stored `task` as it is) parses as ECS's
        // `Task`, the shape the agent reads, to the same task.
        let json = serde_json::to_string(&rec.task).unwrap();
        assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), old);
    }

    #[test]
    fn a_release_0_1_0_record_reads_and_writes_back_the_same_json() {
        // As in tests/fixtures/release-0.1.0 (a Fargate task, PROVISIONING).
        let stored = json!({"task":{"attachments":[{"id":"61732035-7afc-4866-be31-698aba05465e","type":"ElasticNetworkInterface","status":"PRECREATED","details":[{"name":"subnetId","value":"subnet-fixture"},{"name":"networkInterfaceId","value":"eni-58ce29d2b351a1f4f"},{"name":"macAddress","value":"44:04:11:a2:ad:83"},{"name":"privateDnsName","value":""},{"name":"privateIPv4Address","value":""}]}],"attributes":[{"name":"ecs.cpu-architecture","value":"x86_64"}],"availabilityZone":"us-east-1a","clusterArn":"arn:aws:ecs:us-east-1:000000000000:cluster/prod","containers":[{"containerArn":"arn:aws:ecs:us-east-1:000000000000:container/prod/01a23dde124f9bb133a0df542984c6f1/6d7647fa-7946-4a1c-af74-d83681b144a4","taskArn":"arn:aws:ecs:us-east-1:000000000000:task/prod/01a23dde124f9bb133a0df542984c6f1","name":"app","image":"public.ecr.aws/docker/library/busybox:1.36","lastStatus":"PENDING","networkInterfaces":[],"cpu":"0","memory":"128"}],"cpu":"256","createdAt":1796334293.583,"desiredStatus":"RUNNING","enableExecuteCommand":false,"group":"family:fg","healthStatus":"UNKNOWN","lastStatus":"PROVISIONING","launchType":"FARGATE","memory":"512","overrides":{"containerOverrides":[{"name":"app"}],"inferenceAcceleratorOverrides":[]},"platformVersion":"1.4.0","platformFamily":"Linux","tags":[],"taskArn":"arn:aws:ecs:us-east-1:000000000000:task/prod/01a23dde124f9bb133a0df542984c6f1","taskDefinitionArn":"arn:aws:ecs:us-east-1:000000000000:task-definition/fg:1","version":1,"ephemeralStorage":{"sizeInGiB":20},"fargateEphemeralStorage":{"sizeInGiB":20}},"node":"fargate:fixture-node","reserved":{"cpu":256,"memory":512,"ports_tcp":[],"ports_udp":[]},"network_configuration":{"awsvpcConfiguration":{"subnets":["subnet-fixture"]}}});
        let rec: TaskRecord = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(rec.task.last_status, TaskStatus::Provisioning);
        assert_eq!(rec.task.containers[0].health_status, None);
        same_fields(&serde_json::to_value(&rec).unwrap(), &stored, "record");
        let wire: Task = serde_json::from_value(stored["task"].clone()).unwrap();
        assert_eq!(rec.task.to_wire(), wire);
    }

    #[test]
    fn absent_statuses_default_unknown_ones_fail_and_required_fields_are_required() {
        let mut old = old_task();
        old.desired_status = None;
        old.last_status = None;
        old.health_status = None;
        old.connectivity = None;
        if let Some(c) = old.containers.as_mut().and_then(|c| c.first_mut()) {
            c.last_status = None;
            c.health_status = None;
        }
        let rec: TaskRecord = serde_json::from_value(old_record(&old)).unwrap();
        let t = &rec.task;
        assert_eq!((t.last_status, t.desired_status), (TaskStatus::Provisioning, TaskStatus::Running));
        assert_eq!((t.health_status, t.connectivity), (HealthStatus::Unknown, None));
        assert_eq!((t.containers[0].last_status, t.containers[0].health_status), (TaskStatus::Pending, None));
        assert!(!t.is_stopped() && !t.stop_wanted());

        for (field, value) in [
            ("/task/lastStatus", "BOGUS"),
            ("/task/desiredStatus", "running"),
            ("/task/healthStatus", "SICK"),
            ("/task/connectivity", "MAYBE"),
            ("/task/containers/0/lastStatus", "WEIRD"),
            ("/task/containers/0/healthStatus", "SICK"),
        ] {
            let mut v = old_record(&old_task());
            *v.pointer_mut(field).unwrap_or_else(|| panic!("{field}")) = json!(value);
            let e = serde_json::from_value::<TaskRecord>(v).unwrap_err().to_string();
            assert!(e.contains(value), "{field}: {e}");
        }

        for missing in
            ["taskArn", "clusterArn", "taskDefinitionArn", "createdAt", "launchType", "cpu", "memory"]
        {
            let mut v = old_record(&old_task());
            v["task"].as_object_mut().unwrap().remove(missing);
            let e = serde_json::from_value::<TaskRecord>(v).unwrap_err().to_string();
            assert!(e.contains(missing), "{missing}: {e}");
        }
    }
}
