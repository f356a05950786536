//! The engine's view of a cluster: what the feasibility checks, rankers and the query language
//! read. The control plane fills it from the store.

use std::collections::BTreeMap;

/// One container instance as placement sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Instance {
    /// The container instance ARN (what failures and results name).
    pub arn: String,
    /// The short ID (the last part of the ARN).
    pub id: String,
    /// ACTIVE, DRAINING, ...
    pub status: String,
    pub agent_connected: bool,
    pub ec2_instance_id: String,
    /// The agent's version (`versionInfo.agentVersion`), for `agentVersion` in queries.
    pub agent_version: Option<String>,
    /// Epoch milliseconds.
    pub registered_at_ms: i64,
    /// Attributes by name; `None` for an attribute without a value. Built-in ones included:
    /// ecs.instance-type, ecs.availability-zone, ecs.ami-id, ecs.os-type, ecs.cpu-architecture.
    pub attributes: BTreeMap<String, Option<String>>,
    /// Remaining CPU units, memory (MiB) and GPUs.
    pub cpu: i64,
    pub memory: i64,
    pub gpus: i64,
    /// Host ports in use (TCP and UDP).
    pub ports_tcp: Vec<u16>,
    pub ports_udp: Vec<u16>,
    /// Registered (total) CPU and memory, for binpack/spread tie-breaking.
    pub total_cpu: i64,
    pub total_memory: i64,
    /// Tasks on the instance that are not STOPPED: how many, and their groups and families.
    pub running_tasks: i64,
    /// Group name → how many of its tasks run here (`task:group` in the query language).
    pub task_groups: BTreeMap<String, i64>,
}

/// The part of an [`Instance`] that placing and stopping tasks changes: what it has left and
/// the tasks it runs. Everything else (status, attributes, identity) stays.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub cpu: i64,
    pub memory: i64,
    pub gpus: i64,
    pub ports_tcp: Vec<u16>,
    pub ports_udp: Vec<u16>,
    pub running_tasks: i64,
    pub task_groups: BTreeMap<String, i64>,
}

impl Instance {
    /// Takes `u` as what the instance has left and runs.
    pub fn set_usage(&mut self, u: Usage) {
        self.cpu = u.cpu;
        self.memory = u.memory;
        self.gpus = u.gpus;
        self.ports_tcp = u.ports_tcp;
        self.ports_udp = u.ports_udp;
        self.running_tasks = u.running_tasks;
        self.task_groups = u.task_groups;
    }
}
