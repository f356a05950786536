//! Bringing a node up: measuring the host, registering it (as a container instance of a
//! cluster, or as a Fargate node), remembering its identity across restarts, and starting the
//! agent loop.

use crate::agent::{Agent, AgentConfig};
use crate::client::{ClientError, HttpClient};
use crate::runtime::Runtime;
use gantry_core::protocol::{FargateRegistration, fargate_node_name};
use gantry_core::{Clock, IdGen};
use gantry_model::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Opens the task metadata endpoint on an ephemeral port of every interface (containers reach
/// it through the engine's host gateway) and returns its base URL as containers see it.
/// The listener of the task metadata and credentials endpoint: on the port this data directory
/// had before when it is free, so that after a restart the tasks the agent adopts reach it where
/// their environment and their 169.254.170.2 routes say (the ECS agent's port is fixed, 51679;
/// several Gantry agents share a host, so each keeps its own).
async fn metadata_listener(data_dir: &Path) -> Result<(tokio::net::TcpListener, String), ClientError> {
    let file = data_dir.join("endpoint-port");
    let before = read_trimmed(&file).and_then(|p| p.parse::<u16>().ok()).filter(|p| *p != 0);
    let l = match before {
        Some(p) => match tokio::net::TcpListener::bind(("0.0.0.0", p)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(port = p, error = %e, "the endpoint's port of the last run is taken: tasks adopted from it lose their metadata and credentials endpoint");
                tokio::net::TcpListener::bind(("0.0.0.0", 0))
                    .await
                    .map_err(|e| ClientError::Transport(e.to_string()))?
            }
        },
        None => tokio::net::TcpListener::bind(("0.0.0.0", 0))
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?,
    };
    let port = l.local_addr().map_err(|e| ClientError::Transport(e.to_string()))?.port();
    if before != Some(port) {
        let _ = std::fs::write(&file, port.to_string());
    }
    Ok((l, format!("http://{}:{port}/v4", crate::spec::METADATA_HOST)))
}

fn serve_metadata<R: Runtime>(agent: &Arc<Agent<R, HttpClient>>, listener: tokio::net::TcpListener) {
    tokio::spawn(crate::metadata::serve(agent.clone(), listener));
}

/// CPU units (1024 per core) and memory (MiB) of this host.
pub fn host_resources() -> (i64, i64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<i64>().ok())
        })
        .unwrap_or(1024 * 1024);
    (cores * 1024, mem_kib / 1024)
}

/// The NVIDIA GPUs of a host whose filesystem is at `root` (`/` for this one): the `GPU UUID`
/// in each `proc/driver/nvidia/gpus/*/information`, sorted. None without the NVIDIA driver.
pub fn detect_gpus(root: &Path) -> Vec<String> {
    let Ok(dirs) = std::fs::read_dir(root.join("proc/driver/nvidia/gpus")) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = dirs
        .flatten()
        .filter_map(|d| std::fs::read_to_string(d.path().join("information")).ok())
        .filter_map(|info| {
            info.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                (key.trim() == "GPU UUID").then(|| value.trim().to_string()).filter(|v| !v.is_empty())
            })
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The attribute that task definitions asking for GPUs require (`ecs.capability.gpu`).
pub const GPU_CAPABILITY: &str = "ecs.capability.gpu";

/// ECS's `GPU` resource: the instance's GPU device IDs, as a string set.
pub fn gpu_resource(ids: &[String]) -> Resource {
    Resource {
        name: Some("GPU".into()),
        r#type: Some("STRINGSET".into()),
        string_set_value: Some(ids.to_vec()),
        ..Default::default()
    }
}

/// ECS's name for this machine's CPU architecture.
pub fn cpu_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x86_64",
    }
}

/// The capabilities every Gantry agent has, advertised as ECS agent attributes so that task
/// definitions' `requiresAttributes` can be met.
pub const CAPABILITIES: &[&str] = &[
    "com.amazonaws.ecs.capability.docker-remote-api.1.17",
    "com.amazonaws.ecs.capability.docker-remote-api.1.18",
    "com.amazonaws.ecs.capability.docker-remote-api.1.19",
    "com.amazonaws.ecs.capability.docker-remote-api.1.21",
    "com.amazonaws.ecs.capability.docker-remote-api.1.22",
    "com.amazonaws.ecs.capability.docker-remote-api.1.23",
    "com.amazonaws.ecs.capability.docker-remote-api.1.24",
    "com.amazonaws.ecs.capability.docker-remote-api.1.25",
    "com.amazonaws.ecs.capability.docker-remote-api.1.29",
    "com.amazonaws.ecs.capability.docker-remote-api.1.32",
    "com.amazonaws.ecs.capability.logging-driver.json-file",
    "com.amazonaws.ecs.capability.logging-driver.awslogs",
    "com.amazonaws.ecs.capability.logging-driver.none",
    "com.amazonaws.ecs.capability.task-iam-role",
    "com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager",
    "ecs.capability.container-health-check",
    "ecs.capability.container-ordering",
    "ecs.capability.execution-role-awslogs",
    "ecs.capability.secrets.asm.environment-variables",
    "ecs.capability.secrets.ssm.environment-variables",
    "ecs.capability.task-cpu-mem-limit",
    "ecs.capability.task-eni",
    "ecs.capability.pid-ipc-namespace-sharing",
];

/// How an instance registers.
#[derive(Debug, Clone)]
pub struct InstanceOptions {
    pub cluster: String,
    pub availability_zone: String,
    pub instance_type: String,
    /// Custom attributes, `name=value`.
    pub attributes: Vec<(String, String)>,
    /// Where the agent keeps its identity and the logs of finished tasks.
    pub data_dir: PathBuf,
    pub pull_always: bool,
    /// The GPU device IDs to offer; `None` offers the ones [`detect_gpus`] finds.
    pub gpus: Option<Vec<String>>,
    /// The CPU units and memory (MiB) to declare; `None` declares the host's (an Auto Scaling
    /// group's `gantry-local` instance declares its InstanceType's).
    pub resources: Option<(i64, i64)>,
}

/// An identity kept in a file: the stored one, or `make()`'s, stored for next time.
fn remembered(path: &Path, make: impl FnOnce() -> String) -> String {
    read_trimmed(path).unwrap_or_else(|| {
        let v = make();
        let _ = std::fs::write(path, &v);
        v
    })
}

/// Starts a node's agent with its task metadata endpoint, logs kept in `data_dir/logs`.
async fn start_agent<R: Runtime>(
    runtime: Arc<R>,
    client: Arc<HttpClient>,
    clock: Arc<dyn Clock>,
    node: String,
    pull_always: bool,
    data_dir: &Path,
) -> Result<Arc<Agent<R, HttpClient>>, ClientError> {
    let (listener, base) = metadata_listener(data_dir).await?;
    let port = listener.local_addr().map_err(|e| ClientError::Transport(e.to_string()))?.port();
    let redirect: Arc<dyn crate::credentials::Redirect> = Arc::new(crate::credentials::Iptables);
    tokio::spawn(sweep_redirects(runtime.clone(), redirect.clone()));
    let agent = Agent::new(
        runtime,
        client,
        clock,
        AgentConfig {
            node,
            pull_always,
            logs_dir: Some(data_dir.join("logs")),
            health_interval: Duration::from_secs(1),
            metadata_base: Some(base),
            credentials: Some(crate::agent::CredentialsConfig { port, redirect }),
        },
    );
    serve_metadata(&agent, listener);
    // Task role credentials are renewed at half their life.
    tokio::spawn(agent.clone().renew_credentials(Duration::from_secs(30)));
    // Container stats for CloudWatch's AWS/ECS metrics.
    tokio::spawn(crate::stats::run(agent.clone(), crate::stats::INTERVAL));
    Ok(agent)
}

/// Removes, once at start, the credentials redirects of containers that are gone: those of an
/// agent killed while its tasks' containers were removed, which nothing else would remove.
async fn sweep_redirects<R: Runtime>(runtime: Arc<R>, redirect: Arc<dyn crate::credentials::Redirect>) {
    let r = redirect.clone();
    let Ok(listed) = tokio::task::spawn_blocking(move || r.all()).await else { return };
    if listed.is_empty() {
        return;
    }
    // The containers are read after the redirects (see `credentials::stale`).
    let Ok(Some(live)) = runtime.chosen_macs().await else { return };
    let stale = crate::credentials::stale(listed, &live);
    if stale.is_empty() {
        return;
    }
    tracing::info!(count = stale.len(), "removing the credentials redirects of containers that are gone");
    let _ = tokio::task::spawn_blocking(move || {
        for r in &stale {
            redirect.remove_one(r);
        }
    })
    .await;
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Registers this host as a container instance (again, under the same ARN, after a restart) and
/// returns the agent to run.
pub async fn register_instance<R: Runtime>(
    runtime: Arc<R>,
    client: Arc<HttpClient>,
    clock: Arc<dyn Clock>,
    ids: &dyn IdGen,
    opts: &InstanceOptions,
) -> Result<Arc<Agent<R, HttpClient>>, ClientError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(|e| ClientError::Transport(e.to_string()))?;
    let arn_file = opts.data_dir.join("container-instance-arn");
    let id_file = opts.data_dir.join("ec2-instance-id");
    let ec2_id = remembered(&id_file, || format!("i-{}", &ids.hex_id()[..17]));
    let (cpu, memory) = opts.resources.unwrap_or_else(host_resources);
    let resource = |name: &str, v: i64| Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: v as i32,
        ..Default::default()
    };
    let ports = |name: &str, v: &[&str]| Resource {
        name: Some(name.into()),
        r#type: Some("STRINGSET".into()),
        string_set_value: Some(v.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let mut attributes: Vec<Attribute> = vec![
        ("ecs.os-type", "linux"),
        ("ecs.os-family", "LINUX"),
        ("ecs.cpu-architecture", cpu_architecture()),
        ("ecs.availability-zone", opts.availability_zone.as_str()),
        ("ecs.instance-type", opts.instance_type.as_str()),
    ]
    .into_iter()
    .map(|(n, v)| Attribute { name: n.into(), value: Some(v.into()), ..Default::default() })
    .collect();
    attributes.extend(CAPABILITIES.iter().map(|c| Attribute { name: c.to_string(), ..Default::default() }));
    attributes.extend(opts.attributes.iter().map(|(n, v)| Attribute {
        name: n.clone(),
        value: Some(v.clone()),
        ..Default::default()
    }));
    let gpus = opts.gpus.clone().unwrap_or_else(|| detect_gpus(Path::new("/")));
    let mut total_resources = vec![
        resource("CPU", cpu),
        resource("MEMORY", memory),
        ports("PORTS", &["22", "2375", "2376", "51678", "51679"]),
        ports("PORTS_UDP", &[]),
    ];
    if !gpus.is_empty() {
        total_resources.push(gpu_resource(&gpus));
        attributes.push(Attribute { name: GPU_CAPABILITY.into(), ..Default::default() });
    }
    let doc = serde_json::json!({
        "instanceId": ec2_id,
        "availabilityZone": opts.availability_zone,
        "instanceType": opts.instance_type,
        "architecture": cpu_architecture(),
    });
    // The agent's own binary: what UpdateContainerAgent compares with the server's.
    let agent_hash = match tokio::task::spawn_blocking(crate::update::own_sha256).await {
        Ok(Ok((sha256, _))) => Some(sha256),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the agent's own binary: its instance reports no agentHash");
            None
        }
        Err(_) => None,
    };
    let req = RegisterContainerInstanceRequest {
        cluster: Some(opts.cluster.clone()),
        instance_identity_document: Some(doc.to_string()),
        total_resources: Some(total_resources),
        version_info: Some(VersionInfo {
            agent_version: Some(env!("CARGO_PKG_VERSION").into()),
            agent_hash,
            docker_version: Some("DockerVersion: unknown".into()),
        }),
        container_instance_arn: read_trimmed(&arn_file),
        attributes: Some(attributes),
        ..Default::default()
    };
    let resp: RegisterContainerInstanceResponse = match client.ecs("RegisterContainerInstance", &req).await {
        Ok(r) => r,
        // A remembered instance the server no longer knows: register afresh.
        Err(ClientError::Api { .. }) if req.container_instance_arn.is_some() => {
            let mut fresh = req.clone();
            fresh.container_instance_arn = None;
            client.ecs("RegisterContainerInstance", &fresh).await?
        }
        Err(e) => return Err(e),
    };
    let arn = resp.container_instance.and_then(|c| c.container_instance_arn).unwrap_or_default();
    let _ = std::fs::write(&arn_file, &arn);
    tracing::info!(container_instance = %arn, cluster = %opts.cluster, gpus = gpus.len(), "registered");
    start_agent(runtime, client, clock, arn, opts.pull_always, &opts.data_dir).await
}

/// Registers this host as a Fargate node (with an identity kept in `data_dir`) and returns the
/// agent to run.
pub async fn register_fargate<R: Runtime>(
    runtime: Arc<R>,
    client: Arc<HttpClient>,
    clock: Arc<dyn Clock>,
    ids: &dyn IdGen,
    data_dir: &Path,
) -> Result<Arc<Agent<R, HttpClient>>, ClientError> {
    std::fs::create_dir_all(data_dir).map_err(|e| ClientError::Transport(e.to_string()))?;
    let id_file = data_dir.join("fargate-node-id");
    let id = remembered(&id_file, || ids.hex_id()[..16].to_string());
    let (cpu, memory) = host_resources();
    client
        .register_fargate(&FargateRegistration { node_id: id.clone(), cpu, memory, availability_zone: None })
        .await?;
    start_agent(runtime, client, clock, fargate_node_name(&id), false, data_dir).await
}

/// How many ready awsvpc namespace holders a Fargate node keeps by default (every task of a
/// Fargate node is awsvpc; see [`crate::holders`] and [`Agent::set_holder_pool`]).
pub const FARGATE_HOLDER_POOL: usize = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_endpoint_keeps_its_port_across_restarts_while_it_is_free() {
        let dir = std::env::temp_dir().join(format!("gantry-endpoint-port-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (first, base) = metadata_listener(&dir).await.unwrap();
        let port = first.local_addr().unwrap().port();
        assert!(base.ends_with(&format!(":{port}/v4")), "{base}");
        drop(first);
        let (again, _) = metadata_listener(&dir).await.unwrap();
        assert_eq!(again.local_addr().unwrap().port(), port, "the same port after a restart");
        // Taken (the old agent still holds it): another port, remembered from now on.
        let (other, _) = metadata_listener(&dir).await.unwrap();
        let moved = other.local_addr().unwrap().port();
        assert_ne!(moved, port);
        assert_eq!(std::fs::read_to_string(dir.join("endpoint-port")).unwrap(), moved.to_string());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn gpus_come_from_the_nvidia_driver_or_nowhere() {
        let root = std::env::temp_dir().join(format!("gantry-gpu-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        assert!(detect_gpus(&root).is_empty(), "no driver, no GPUs");
        let gpus = root.join("proc/driver/nvidia/gpus");
        for (bus, uuid) in [
            ("0000:00:1e.0", "GPU-b2c3d4e5-0000-1111-2222-333344445555"),
            ("0000:00:1d.0", "GPU-a1b2c3d4-0000-1111-2222-333344445555"),
        ] {
            std::fs::create_dir_all(gpus.join(bus)).unwrap();
            std::fs::write(
                gpus.join(bus).join("information"),
                format!(
                    "Model: \t\t Tesla T4\nIRQ:   \t\t 37\nGPU UUID: \t {uuid}\nVideo BIOS: \t 90.04.38.00.03\nBus Type: \t PCIe\n"
                ),
            )
            .unwrap();
        }
        // A directory without the information file is not a GPU.
        std::fs::create_dir_all(gpus.join("0000:00:1f.0")).unwrap();
        assert_eq!(
            detect_gpus(&root),
            vec![
                "GPU-a1b2c3d4-0000-1111-2222-333344445555".to_string(),
                "GPU-b2c3d4e5-0000-1111-2222-333344445555".to_string()
            ]
        );
        let r = gpu_resource(&detect_gpus(&root));
        assert_eq!((r.name.as_deref(), r.r#type.as_deref()), (Some("GPU"), Some("STRINGSET")));
        assert_eq!(r.string_set_value.unwrap().len(), 2);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
