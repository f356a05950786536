//! The agent channel's own messages (Gantry's, not AWS's): what a node's long poll returns, how
//! a Fargate node registers, and the health an agent observes. Task state itself travels in the
//! agent-facing ECS operations.

use gantry_model::{NetworkConfiguration, Task, TaskDefinition};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::Arc;

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

/// An [`Assignment`] as the server renders it: the task, the definition and the network
/// configuration are JSON already (the task as stored, the definition from a cache shared by
/// every task of it), so a poll neither parses nor re-renders them. Same JSON as [`Assignment`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RawAssignment {
    pub task: Box<RawValue>,
    pub task_definition: SharedJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Box<RawValue>>,
    pub revision: i64,
}

impl RawAssignment {
    /// The typed assignment (for tests and tools; the agent reads the same JSON).
    pub fn parse(&self) -> serde_json::Result<Assignment> {
        Ok(Assignment {
            task: serde_json::from_str(self.task.get())?,
            task_definition: serde_json::from_str(self.task_definition.0.get())?,
            network_configuration: match &self.network_configuration {
                Some(n) => serde_json::from_str(n.get())?,
                None => None,
            },
            revision: self.revision,
        })
    }
}

/// A JSON value rendered once and shared.
#[derive(Debug, Clone)]
pub struct SharedJson(pub Arc<RawValue>);

impl Serialize for SharedJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// [`Assignments`] as the server renders it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RawAssignments {
    pub version: u64,
    pub tasks: Vec<RawAssignment>,
    pub delta: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<ExecRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<AgentUpdate>,
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
    /// Exec sessions opened on this node's tasks since the last poll: the agent connects each
    /// to the server (`/_gantry/agent/v1/exec/SESSION`) and runs its command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<ExecRequest>,
    /// An agent update UpdateContainerAgent asked for (agentUpdateStatus PENDING): the agent
    /// downloads the server's binary (`GET /_gantry/agent/v1/binary`), checks it against this
    /// digest and re-executes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<AgentUpdate>,
}

/// The agent binary a container instance's agent is to update to: the server's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentUpdate {
    /// The hex SHA-256 of the binary (what the updated agent reports as `agentHash`).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// An agent's progress through an update (`POST /_gantry/agent/v1/update`): the
/// `agentUpdateStatus` it reached (STAGING, STAGED, UPDATING or FAILED) and, on FAILED, why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentUpdateReport {
    pub node: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An exec session for an agent to run: ExecuteCommand's command in one container of a task the
/// node runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecRequest {
    pub session_id: String,
    pub task_arn: String,
    pub container_name: String,
    /// The program and its arguments (ExecuteCommand's command split into words).
    pub command: Vec<String>,
    /// Interactive sessions get a TTY.
    pub tty: bool,
    /// The server that holds the session (the caller's end), where the agent connects its own
    /// end: set when servers share a store (the agent may poll another); without it, the server
    /// the agent polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
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

/// What an agent measured of its running tasks (Gantry's stand-in for the ECS agent's metrics
/// channel): each task's resource use over the last sampling interval. CloudWatch's AWS/ECS
/// metrics are computed from these against the tasks' reservations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatsReport {
    pub node: String,
    #[serde(default)]
    pub tasks: Vec<TaskStats>,
}

/// One task's resource use, summed over its containers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStats {
    pub task_arn: String,
    /// CPU used, in CPU units (1,024 per core), averaged over the interval.
    pub cpu_units: f64,
    /// Memory in use (the engine's usage less the page cache), in bytes.
    pub memory_bytes: u64,
    /// Cumulative counters since the containers started.
    #[serde(default)]
    pub network_rx_bytes: u64,
    #[serde(default)]
    pub network_tx_bytes: u64,
    #[serde(default)]
    pub storage_read_bytes: u64,
    #[serde(default)]
    pub storage_write_bytes: u64,
    /// The same, container by container (Container Insights' enhanced observability).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerStats>,
}

/// One container's resource use, as [`TaskStats`] sums it for its task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// The container's name in its task definition.
    pub name: String,
    pub cpu_units: f64,
    pub memory_bytes: u64,
    #[serde(default)]
    pub network_rx_bytes: u64,
    #[serde(default)]
    pub network_tx_bytes: u64,
    #[serde(default)]
    pub storage_read_bytes: u64,
    #[serde(default)]
    pub storage_write_bytes: u64,
}

/// The node name of a Fargate node.
pub fn fargate_node_name(id: &str) -> String {
    format!("fargate:{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the server renders from stored JSON is what the agent reads as [`Assignments`].
    #[test]
    fn raw_assignments_read_as_assignments() {
        let task = Task {
            task_arn: Some("arn:aws:ecs:us-east-1:000000000000:task/c/abc".into()),
            last_status: Some("PENDING".into()),
            ..Default::default()
        };
        let def = TaskDefinition { family: Some("web".into()), revision: 3, ..Default::default() };
        let net: NetworkConfiguration =
            serde_json::from_value(serde_json::json!({"awsvpcConfiguration": {"subnets": ["subnet-1"]}}))
                .unwrap();
        fn raw<T: Serialize>(v: &T) -> Box<RawValue> {
            serde_json::value::to_raw_value(v).unwrap()
        }
        let exec = ExecRequest {
            session_id: "ecs-execute-command-0123456789abcdef0".into(),
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/c/1".into(),
            container_name: "app".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            tty: true,
            server_url: None,
        };
        let rendered = RawAssignments {
            version: 7,
            tasks: vec![
                RawAssignment {
                    task: raw(&task),
                    task_definition: SharedJson(Arc::from(raw(&def))),
                    network_configuration: Some(raw(&net)),
                    revision: 11,
                },
                RawAssignment {
                    task: raw(&task),
                    task_definition: SharedJson(Arc::from(raw(&def))),
                    network_configuration: None,
                    revision: 12,
                },
            ],
            delta: true,
            removed: vec!["gone".into()],
            exec: vec![exec.clone()],
            update: Some(AgentUpdate { sha256: "ab".repeat(32), size: 7 }),
        };
        let read: Assignments = serde_json::from_slice(&serde_json::to_vec(&rendered).unwrap()).unwrap();
        let want = |revision, network_configuration| Assignment {
            task: task.clone(),
            task_definition: def.clone(),
            network_configuration,
            revision,
        };
        assert_eq!(
            read,
            Assignments {
                version: 7,
                tasks: vec![want(11, Some(net.clone())), want(12, None)],
                delta: true,
                removed: vec!["gone".into()],
                exec: vec![exec],
                update: Some(AgentUpdate { sha256: "ab".repeat(32), size: 7 }),
            }
        );
        assert_eq!(rendered.tasks[0].parse().unwrap(), want(11, Some(net)));
    }
}

/// The agent asks for the secrets of a task assigned to its node right before it starts the
/// task (`POST /_gantry/agent/v1/secrets`), as the ECS agent fetches them with the execution
/// role. The server reads the references from the task's definition, never from the request,
/// and only for a task assigned to that node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretsRequest {
    pub node: String,
    pub task_arn: String,
}

/// One resolved secret: the environment variable (or log option) and its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedSecret {
    pub name: String,
    pub value: crate::Secret,
}

/// A private registry's credentials, read from the Secrets Manager secret a container's
/// `repositoryCredentials` names (a JSON object with `username` and `password`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryAuth {
    pub username: String,
    pub password: crate::Secret,
}

/// The task's secrets by container name (its `secrets`, its log configuration's
/// `secretOptions` and its `repositoryCredentials`), or why they cannot be had (ECS's words
/// after "unable to pull secrets or registry auth: "). Values travel only over the agent's
/// authenticated channel and are kept nowhere else.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretsResponse {
    #[serde(default)]
    pub environment: BTreeMap<String, Vec<ResolvedSecret>>,
    #[serde(default)]
    pub log_options: BTreeMap<String, Vec<ResolvedSecret>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub registry_auth: BTreeMap<String, RegistryAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The agent asks for the credentials of a task's role (`POST /_gantry/agent/v1/credentials`)
/// when the task starts and again before they expire, as the ECS agent receives them from ACS.
/// The server reads the role from the task (its override, else its definition's
/// `taskRoleArn`), never from the request, and only for a task assigned to that node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCredentialsRequest {
    pub node: String,
    pub task_arn: String,
}

/// A task role's session credentials: STS session credentials, named after the task. Travels
/// only over the agent's authenticated channel; the agent keeps it in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCredentials {
    pub role_arn: String,
    pub access_key_id: String,
    pub secret_access_key: crate::Secret,
    pub session_token: crate::Secret,
    /// Epoch seconds.
    pub expiration: i64,
}
