//! ExecuteCommand: which container of which running task a command may run in, decided with
//! ECS's rules and errors. The session itself (its token, the stream between the caller and the
//! task's agent, its record) is the front door's: this module knows no sockets. With several
//! servers on one store, the session waits for its node's agent in the store
//! (`/_ecs/exec/NODE/SESSION`, [`ControlPlane::queue_exec`]): the agent's poll on any server
//! takes it ([`ControlPlane::take_execs`]) and the agent connects to the server holding the
//! session; its server removes it when the session ends, any server once it expired.

use crate::status::{agent_status, set_agent_status};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::protocol::ExecRequest;
use gantry_core::{EcsError, ErrorKind, ManagedAgentStatus, Result, TaskStatus};
use gantry_model::{ExecuteCommandRequest, ManagedAgent};
use gantry_store::Txn;
use serde::{Deserialize, Serialize};

/// The name ECS gives the managed agent that runs ECS Exec sessions, in `managedAgents`.
pub const EXEC_AGENT: &str = "ExecuteCommandAgent";

/// ECS's answer when the task was not run with exec enabled, or its exec agent is not running.
pub const NOT_ENABLED: &str = "The execute command failed because execute command was not enabled when the task was run or the execute command agent isn’t running. Wait and try again or run a new task with execute command enabled and try again.";

/// Where an ExecuteCommand's session runs: what the response names, and the node whose agent
/// runs the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecTarget {
    pub cluster_arn: String,
    pub cluster_name: String,
    pub task_arn: String,
    pub container_arn: String,
    pub container_name: String,
    /// The node (agent) running the task.
    pub node: String,
    /// ExecuteCommand's command split into words as the ECS exec agent splits it.
    pub command: Vec<String>,
}

/// The `managedAgents` entry of an exec-enabled task's container, following the container:
/// PENDING until it runs, RUNNING (with when it started) while it does, STOPPED after.
pub(crate) fn follow_container(agents: &mut Option<Vec<ManagedAgent>>, container_status: &str, now: f64) {
    for a in agents.iter_mut().flatten().filter(|a| a.name.as_deref() == Some(EXEC_AGENT)) {
        match container_status {
            "RUNNING" if agent_status(a) != Some(ManagedAgentStatus::Running) => {
                set_agent_status(a, ManagedAgentStatus::Running);
                a.last_started_at = Some(now);
            }
            "STOPPED" => set_agent_status(a, ManagedAgentStatus::Stopped),
            _ => {}
        }
    }
}

/// The `managedAgents` a container of a task starts with.
pub(crate) fn initial_agents(enabled: bool) -> Option<Vec<ManagedAgent>> {
    enabled.then(|| {
        vec![ManagedAgent {
            name: Some(EXEC_AGENT.into()),
            last_status: Some(ManagedAgentStatus::Pending.as_str().into()),
            ..Default::default()
        }]
    })
}

impl ControlPlane {
    /// Checks an ExecuteCommand request as ECS does and names the container and node it runs on.
    /// The request's own fields are checked before the cluster is looked up.
    pub fn execute_command(&self, ctx: &Ctx, req: &ExecuteCommandRequest) -> Result<ExecTarget> {
        if !req.interactive {
            return Err(EcsError::invalid("Interactive is the only mode supported currently."));
        }
        if req.command.trim().is_empty() {
            return Err(EcsError::invalid("Command cannot be empty."));
        }
        if req.task.is_empty() {
            return Err(EcsError::invalid("Task cannot be empty."));
        }
        let command = gantry_core::exec::split_command(&req.command).ok_or_else(|| {
            EcsError::invalid(format!("The command {} has an unterminated quote.", req.command))
        })?;
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name.clone();
        let rec = self
            .load_task(ctx, &cname, &req.task)?
            .ok_or_else(|| EcsError::invalid(format!("The specified task {} was not found.", req.task)))?;
        let task = &rec.value.task;
        let containers = task.containers.as_slice();
        let container = match req.container.as_deref() {
            Some(name) => containers.iter().find(|c| c.name == name).ok_or_else(|| {
                EcsError::invalid(format!("The container {name} does not exist in the task {}.", req.task))
            })?,
            None => match containers {
                [only] => only,
                _ => {
                    return Err(EcsError::invalid(
                        "The task has more than one container. You must specify a container name.",
                    ));
                }
            },
        };
        let agent_running = container.managed_agents.iter().flatten().any(|a| {
            a.name.as_deref() == Some(EXEC_AGENT) && agent_status(a) == Some(ManagedAgentStatus::Running)
        });
        let running = task.last_status == TaskStatus::Running && task.desired_status == TaskStatus::Running;
        if !task.enable_execute_command || !agent_running || !running {
            return Err(EcsError::invalid(NOT_ENABLED));
        }
        if rec.value.node.is_empty() || !self.agents.connected(&rec.value.node, self.clock.now()) {
            return Err(EcsError::new(
                ErrorKind::TargetNotConnectedException,
                "The execute command failed due to an internal error. Try again later.",
            ));
        }
        Ok(ExecTarget {
            cluster_arn: cluster.value.cluster_arn.clone(),
            cluster_name: cname,
            task_arn: task.task_arn.clone(),
            container_arn: container.container_arn.clone(),
            container_name: container.name.clone(),
            node: rec.value.node.clone(),
            command,
        })
    }
}

/// An exec session waiting in the store for its node's agent (servers sharing a store): the
/// request the agent's poll carries, naming the server that holds the session, and when it
/// stops waiting (epoch milliseconds, by the control plane's clock).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Waiting {
    request: ExecRequest,
    expires_at: i64,
}

/// How many expired sessions one sweep removes at most (two operations each).
pub const SWEEP_AT_ONCE: usize = 50;

impl ControlPlane {
    /// Records that the session `req` waits for `node`'s agent, which connects to `server_url`
    /// (the server holding the session) whichever server it polls, until `within_ms` from now.
    /// The node's poll wakes on every server from the store's watch.
    pub async fn queue_exec(
        &self,
        node: &str,
        mut req: ExecRequest,
        server_url: &str,
        within_ms: i64,
    ) -> Result<()> {
        req.server_url = Some(server_url.to_string());
        let key = keys::exec_request(node, &req.session_id);
        let waiting = Waiting { request: req, expires_at: self.clock.now().0.saturating_add(within_ms) };
        self.commit(Txn::new().put(key, crate::records::encode(&waiting))).await.map(|_| ())
    }

    /// The sessions waiting for `node`'s agent, taken out of the store: each is handed to one
    /// poll only (a compare on its revision), and only to its own node's (the records are
    /// under the node). Expired ones are removed and not handed out.
    pub async fn take_execs(&self, node: &str) -> Vec<ExecRequest> {
        let now = self.clock.now().0;
        let mut taken = Vec::new();
        let prefix = keys::exec_prefix(node);
        for kv in self.store.range(&prefix, None, usize::MAX) {
            // A session's ID holds no `/`: a longer node name sharing this prefix is not ours.
            if kv.key.get(prefix.len()..).is_none_or(|session| session.contains('/')) {
                continue;
            }
            let waiting = crate::records::parse::<Waiting>(&kv.value).ok();
            let txn = Txn::new().when(&kv.key, kv.mod_revision).delete(&kv.key);
            match self.commit(txn).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(key = %kv.key, error = %e.message, "cannot take an exec session");
                    continue;
                }
            }
            if let Some(w) = waiting.filter(|w| w.expires_at >= now) {
                taken.push(w.request);
            }
        }
        taken
    }

    /// Removes the session's record if no poll took it (the session ended, or timed out).
    pub async fn forget_exec(&self, node: &str, session: &str) -> Result<()> {
        let key = keys::exec_request(node, session);
        if self.store.get(&key).is_none() {
            return Ok(());
        }
        self.commit(Txn::new().delete(key)).await.map(|_| ())
    }

    /// Removes every waiting session past its time (its server died before removing it):
    /// how many.
    pub async fn sweep_execs(&self) -> Result<usize> {
        let now = self.clock.now().0;
        let mut txn = Txn::new();
        let mut n = 0;
        for kv in self.store.range(&keys::exec_root(), None, usize::MAX) {
            let expired = crate::records::parse::<Waiting>(&kv.value).map_or(true, |w| w.expires_at < now);
            if expired {
                txn = txn.when(&kv.key, kv.mod_revision).delete(&kv.key);
                n += 1;
            }
            // etcd takes at most 128 operations per transaction: the rest go at the next sweep.
            if n == SWEEP_AT_ONCE {
                break;
            }
        }
        if n == 0 {
            return Ok(0);
        }
        // A compare that failed (a poll took one meanwhile) is retried at the next sweep.
        Ok(if self.commit(txn).await? { n } else { 0 })
    }

    /// The sessions waiting for nodes' agents in the store, with their nodes.
    pub fn waiting_execs(&self) -> Vec<(String, ExecRequest)> {
        self.store
            .range(&keys::exec_root(), None, usize::MAX)
            .iter()
            .filter_map(|kv| {
                let node = kv.key.strip_prefix(&keys::exec_root())?.rsplit_once('/')?.0.to_string();
                Some((node, crate::records::parse::<Waiting>(&kv.value).ok()?.request))
            })
            .collect()
    }
}
