//! The agent channel's own messages (Gantry's, not AWS's): what a node's long poll returns, how
//! a Fargate node registers, and the health an agent observes. Task state itself travels in the
//! agent-facing ECS operations.

use gantry_model::{NetworkConfiguration, Task, TaskDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A node's poll: who it is, the node version it already has, and the assignments it holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollRequest {
    pub node: String,
    #[serde(default)]
    pub version: u64,
    /// The tasks the agent holds, by task ID, each with the [`Assignment::revision`] it has.
    /// When present (even empty) the answer is a delta against it; when absent, the whole set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known: Option<BTreeMap<String, i64>>,
}

/// One task assigned to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub task: Task,
    pub task_definition: TaskDefinition,
    #[serde(default)]
    pub network_configuration: Option<NetworkConfiguration>,
    /// Changes whenever the assignment changes in a way the agent must act on (it is assigned,
    /// its desired status changes), and not when the agent's own reports change the task.
    #[serde(default)]
    pub revision: i64,
}

/// What a node's poll returns. Without `delta`: every task assigned to the node that is not
/// STOPPED yet. With `delta` (the request said what it knows): only the tasks the agent does
/// not hold at their current revision, and in `removed` the IDs of known tasks that are no
/// longer assigned (they were STOPPED).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignments {
    pub version: u64,
    pub tasks: Vec<Assignment>,
    #[serde(default)]
    pub delta: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// A Fargate node announcing itself and its capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FargateRegistration {
    pub node_id: String,
    pub cpu: i64,
    pub memory: i64,
    #[serde(default)]
    pub availability_zone: Option<String>,
}

/// Health and addressing an agent observed for a task (the counterpart of the ECS agent's
/// telemetry channel; ECS's state-change operations have no field for them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskHealthReport {
    pub task_arn: String,
    /// Container name and HEALTHY, UNHEALTHY or UNKNOWN.
    #[serde(default)]
    pub containers: Vec<(String, String)>,
    /// The task's IP on its own network (awsvpc).
    #[serde(default)]
    pub private_ipv4_address: Option<String>,
}

/// The node name of a Fargate node.
pub fn fargate_node_name(id: &str) -> String {
    format!("fargate:{id}")
}
