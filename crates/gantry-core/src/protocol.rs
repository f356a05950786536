//! The agent channel's own messages (Gantry's, not AWS's): what a node's long poll returns, how
//! a Fargate node registers, and the health an agent observes. Task state itself travels in the
//! agent-facing ECS operations.

use gantry_model::{NetworkConfiguration, Task, TaskDefinition};
use serde::{Deserialize, Serialize};

/// A node's poll: who it is and the assignment version it already has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollRequest {
    pub node: String,
    #[serde(default)]
    pub version: u64,
}

/// One task assigned to a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub task: Task,
    pub task_definition: TaskDefinition,
    #[serde(default)]
    pub network_configuration: Option<NetworkConfiguration>,
}

/// What a node's poll returns: every task assigned to it that is not STOPPED yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignments {
    pub version: u64,
    pub tasks: Vec<Assignment>,
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
