//! The narrow interface between the agent and a container engine.
//!
//! The agent never talks to Docker directly: it asks a [`Runtime`] to pull, create, start, stop,
//! inspect, wait for and remove containers, and to list the containers carrying a label. The
//! Docker Engine implementation is [`crate::docker::DockerRuntime`]; [`crate::fake::FakeRuntime`]
//! stands beside it for tests and simulated fleets. Implementations must be safe to call
//! concurrently and must not retry on their own: the agent's reconcile loop is the retry.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Labels Gantry puts on every container it creates; adoption after a restart relies on them.
pub mod labels {
    /// Marks a container as Gantry's; its value is the node (agent) that owns it.
    pub const NODE: &str = "gantry.node";
    pub const CLUSTER: &str = "gantry.cluster";
    pub const TASK_ARN: &str = "gantry.task-arn";
    pub const CONTAINER_NAME: &str = "gantry.container-name";
    /// The task's credentials ID (the path its containers' SDKs ask), so that an agent that
    /// restarts serves the credentials of the tasks it adopts at the same path. The ID is in
    /// the container's environment as well; neither holds a credential.
    pub const CREDENTIALS_ID: &str = "gantry.credentials-id";
    /// Marks a ready awsvpc namespace holder of the node's pool (its value is the node); see
    /// [`crate::holders`]. Such a holder belongs to a task once renamed to the task's holder name.
    pub const HOLDER_POOL: &str = "gantry.holder-pool";
    /// The MAC address a pool holder was created with (task credentials are routed by it).
    pub const HOLDER_MAC: &str = "gantry.holder-mac";
    /// Set on every container that a test harness starts, so it can clean up by label.
    pub const TEST_RUN: &str = "gantry.test-run";
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The image does not exist locally and could not be pulled.
    #[error("{0}")]
    Pull(String),
    /// The engine refused the container's configuration (bad option, port taken, ...).
    #[error("{0}")]
    Create(String),
    /// The engine could not start the container.
    #[error("{0}")]
    Start(String),
    #[error("no such container: {0}")]
    NotFound(String),
    /// The engine is unreachable or failed.
    #[error("container runtime unavailable: {0}")]
    Unavailable(String),
}

pub type RuntimeResult<T> = Result<T, RuntimeError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A port to publish. `host_port: None` asks the engine for a dynamic port from the host's
/// ephemeral range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    pub container_port: u16,
    pub host_port: Option<u16>,
    pub protocol: Protocol,
}

/// How a container is networked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Network {
    /// The engine's default bridge.
    #[default]
    Bridge,
    Host,
    None,
    /// A named (user-defined) network, e.g. the node's task network for awsvpc.
    Named(String),
    /// Share another container's network namespace (awsvpc: every container of a task joins
    /// the task's namespace holder).
    Container(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A host path bind mount.
    Bind,
    /// A named engine volume (created if missing).
    Volume,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    /// Host path or volume name.
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// The engine's health check, in whole seconds as ECS specifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// ECS's form: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval_s: u32,
    pub timeout_s: u32,
    pub retries: u32,
    pub start_period_s: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The engine-level container name (unique on the node).
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// Relative CPU weight (ECS `cpu` units map 1:1 to Docker CPU shares; 0 means the default).
    pub cpu_shares: Option<i64>,
    /// A hard CPU limit in nano-CPUs (task-level `cpu` on Fargate: units × 10^9 / 1024).
    pub nano_cpus: Option<i64>,
    /// Hard memory limit in MiB.
    pub memory_mib: Option<i64>,
    /// Soft memory limit in MiB.
    pub memory_reservation_mib: Option<i64>,
    pub ports: Vec<PortBinding>,
    pub network: Network,
    /// Network aliases on a named network.
    pub network_aliases: Vec<String>,
    pub health_check: Option<HealthCheck>,
    pub ulimits: Vec<Ulimit>,
    /// Run an init process as PID 1 (`linuxParameters.initProcessEnabled`).
    pub init: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only_rootfs: bool,
    pub privileged: bool,
    /// `host:ip` entries for /etc/hosts.
    pub extra_hosts: Vec<String>,
    pub dns_servers: Vec<String>,
    pub dns_search: Vec<String>,
    pub mounts: Vec<Mount>,
    /// Engine container names or IDs whose volumes to mount (`volumesFrom`), with read-only flag.
    pub volumes_from: Vec<(String, bool)>,
    pub stop_timeout: Option<Duration>,
    /// GPU device IDs (NVIDIA UUIDs) the container gets, and no others.
    pub gpus: Vec<String>,
    /// The MAC address of its interface on a bridge network, chosen before it starts so the
    /// host can route its packets (the task credentials endpoint) before it has an address.
    pub mac_address: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    Created,
    Running,
    /// Exited (or dead), with its exit code when the engine knows it.
    Exited,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// A published port as the engine bound it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPort {
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: Protocol,
    pub host_ip: String,
}

/// A container as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    pub image: String,
    /// Shared: listing a node's containers copies every state.
    pub labels: Arc<BTreeMap<String, String>>,
    pub status: ContainerStatus,
    pub exit_code: Option<i64>,
    /// Why the engine stopped it, when it says (e.g. "OOMKilled").
    pub error: Option<String>,
    pub oom_killed: bool,
    /// Milliseconds since the epoch.
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// `None` when the container has no health check.
    pub health: Option<Health>,
    pub ports: Vec<BoundPort>,
    /// The container's IP on its network, if it has one.
    pub ip_address: Option<String>,
}

/// The container engine, as the agent sees it.
pub trait Runtime: Send + Sync + 'static {
    /// Whether the image is present locally.
    fn image_present<'a>(&'a self, image: &'a str) -> BoxFuture<'a, RuntimeResult<bool>>;
    /// Pulls the image, signing in to its registry with `auth` when given (a container's
    /// `repositoryCredentials`); fails with [`RuntimeError::Pull`] (quickly, not after minutes of
    /// retries) when it does not exist, the registry refuses the credentials or is unreachable.
    fn pull<'a>(
        &'a self,
        image: &'a str,
        auth: Option<&'a gantry_core::protocol::RegistryAuth>,
    ) -> BoxFuture<'a, RuntimeResult<()>>;
    /// Imports a root filesystem (a tar archive) as the image `reference` (`repo:tag`).
    fn import_image<'a>(&'a self, reference: &'a str, rootfs: Vec<u8>) -> BoxFuture<'a, RuntimeResult<()>>;
    /// Creates a named network if it does not exist (for awsvpc task networks).
    fn ensure_network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, RuntimeResult<()>>;
    /// Creates a container and returns its engine ID. Nothing is left behind on failure.
    fn create<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, RuntimeResult<String>>;
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<()>>;
    /// Renames a container (running or not). Runtimes that cannot say so.
    fn rename<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, RuntimeResult<()>> {
        let _ = name;
        Box::pin(async move { Err(RuntimeError::Unavailable(format!("this runtime cannot rename {id}"))) })
    }
    /// Sends SIGTERM, then SIGKILL after `timeout`. Stopping a stopped container is not an error.
    fn stop<'a>(&'a self, id: &'a str, timeout: Duration) -> BoxFuture<'a, RuntimeResult<()>>;
    /// Removes a container (and its anonymous volumes). Removing a missing one is not an error.
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<()>>;
    /// The container's state, or `None` if it does not exist.
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<Option<ContainerState>>>;
    /// Waits until the container is not running and returns its exit code.
    fn wait<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<i64>>;
    /// Every container (running or not) that carries `label=value`.
    fn list<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, RuntimeResult<Vec<ContainerState>>>;
    /// One sample of the container's resource usage, in the Docker stats JSON shape (which the
    /// ECS task metadata endpoint serves as it is).
    fn stats<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<serde_json::Value>>;
    /// The container's stdout and stderr so far, interleaved as the engine stored them.
    fn logs<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<Vec<u8>>>;
    /// The container's output line by line with the engine's timestamps, from the second
    /// `since_s` (Unix seconds; the engine's granularity) on, following it until the container
    /// stops. Runtimes without logs (the fake) end at once.
    fn log_lines<'a>(
        &'a self,
        id: &'a str,
        since_s: i64,
    ) -> futures_util::stream::BoxStream<'a, RuntimeResult<LogLine>> {
        let _ = (id, since_s);
        Box::pin(futures_util::stream::empty())
    }
    /// Starts `spec` in the running container `id`, attached to its stdin and output. Runtimes
    /// that cannot (none today) say so.
    fn exec_start<'a>(
        &'a self,
        id: &'a str,
        spec: &'a ExecSpec,
    ) -> BoxFuture<'a, RuntimeResult<ExecProcess>> {
        let _ = spec;
        Box::pin(async move { Err(RuntimeError::Unavailable(format!("this runtime cannot exec in {id}"))) })
    }
    /// Sets the terminal size of an exec'd command that has a TTY.
    fn exec_resize<'a>(&'a self, exec_id: &'a str, cols: u16, rows: u16) -> BoxFuture<'a, RuntimeResult<()>> {
        let _ = (exec_id, cols, rows);
        Box::pin(async { Ok(()) })
    }
    /// The exit code of an exec'd command, `None` while it still runs.
    fn exec_exit_code<'a>(&'a self, exec_id: &'a str) -> BoxFuture<'a, RuntimeResult<Option<i64>>> {
        Box::pin(async move { Err(RuntimeError::NotFound(exec_id.to_string())) })
    }
    /// The MAC addresses chosen for the engine's containers (any agent's, running or not), in
    /// lower case; `None` when the engine cannot tell (then nothing is swept on their account).
    fn chosen_macs(&self) -> BoxFuture<'_, RuntimeResult<Option<std::collections::HashSet<String>>>> {
        Box::pin(async { Ok(None) })
    }
}

/// A command to run in a running container (`docker exec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Whether it gets a pseudo-terminal (its stdout and stderr are then one stream).
    pub tty: bool,
}

/// What an exec'd command wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutput {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// A command started in a container: its stdin (shut down to close it), its output until it
/// ends, and the engine's ID for it (to resize its terminal and read its exit code).
pub struct ExecProcess {
    pub id: String,
    pub input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    pub output: futures_util::stream::BoxStream<'static, RuntimeResult<ExecOutput>>,
}

impl std::fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProcess").field("id", &self.id).finish_non_exhaustive()
    }
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the engine received it, in Unix nanoseconds.
    pub time_ns: i128,
    /// The line without its newline.
    pub text: String,
}
