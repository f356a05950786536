//! The Docker Engine runtime: [`DockerRuntime`] implements [`Runtime`] on bollard.
//!
//! This is the only module that knows the Docker Engine API. It translates a [`ContainerSpec`]
//! into one create request, and Docker's inspect document back into a [`ContainerState`]; both
//! translations are pure functions with their tests beside them. It must not retry, pick names or
//! decide what a failure means for a task: the agent's reconcile loop does that. It targets API
//! 1.41 (Docker 20.10) and newer, negotiating the version when it connects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, DeviceRequest, EndpointSettings,
    HealthConfig, HealthStatusEnum, HostConfig, Mount as DockerMount, MountType, NetworkCreateRequest,
    NetworkingConfig, PortBinding as DockerPortBinding, PortMap, ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListNetworksOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::Mutex;

use crate::runtime::{
    BoundPort, BoxFuture, ContainerSpec, ContainerState, ContainerStatus, Health, MountKind, Network,
    Protocol, Runtime, RuntimeError, RuntimeResult,
};

/// A pull that reports no progress for this long has stalled (e.g. a registry that accepts the
/// connection and never answers); it fails rather than hold the agent for Docker's own minutes.
const PULL_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How much longer than the stop timeout a stop request may take before it counts as the engine
/// failing (Docker answers a stop only once the container has exited).
const STOP_REQUEST_SLACK: Duration = Duration::from_secs(30);

/// The Docker Engine, reached over its API socket.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// Serializes this process's `ensure_network` calls (see there for other processes).
    network_lock: std::sync::Arc<Mutex<()>>,
    /// The subnet of the networks it creates (`--task-subnet`); none: the engine chooses.
    task_subnet: Option<String>,
}

impl DockerRuntime {
    /// Connects to the engine named by `DOCKER_HOST`, or to `unix:///var/run/docker.sock`.
    pub async fn connect() -> RuntimeResult<Self> {
        match std::env::var("DOCKER_HOST") {
            Ok(host) if !host.is_empty() => Self::connect_to(&host).await,
            _ => Self::connect_to("unix:///var/run/docker.sock").await,
        }
    }

    /// Connects to the engine at `host` (`unix:///path` or `tcp://host:port`) and negotiates the
    /// API version with it, so an unreachable engine is reported here, as `Unavailable`.
    pub async fn connect_to(host: &str) -> RuntimeResult<Self> {
        let docker = Docker::connect_with_host(host)
            .map_err(|e| RuntimeError::Unavailable(format!("connecting to {host}: {e}")))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| RuntimeError::Unavailable(format!("connecting to {host}: {e}")))?
            .with_request_modifier(container_mac_address);
        Ok(Self::with_client(docker))
    }

    /// Wraps an already connected (and version-negotiated) client.
    pub fn with_client(docker: Docker) -> Self {
        Self { docker, network_lock: Default::default(), task_subnet: None }
    }

    /// Creates its task network on `subnet` (e.g. `10.232.1.0/24`), and refuses one of that name
    /// that the engine already has on another subnet.
    pub fn with_task_subnet(mut self, subnet: Option<String>) -> Self {
        self.task_subnet = subnet;
        self
    }

    async fn image_present(&self, image: &str) -> RuntimeResult<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn pull(
        &self,
        image: &str,
        auth: Option<&gantry_core::protocol::RegistryAuth>,
    ) -> RuntimeResult<()> {
        let (repo, tag) = split_reference(image);
        let options = CreateImageOptions {
            from_image: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        // The engine signs in to the image's registry with these (its `X-Registry-Auth`).
        let credentials = auth.map(|a| bollard::auth::DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.expose().to_owned()),
            serveraddress: Some(registry_of(repo).to_owned()),
            ..Default::default()
        });
        let mut progress = self.docker.create_image(Some(options), None, credentials);
        loop {
            let item = tokio::time::timeout(PULL_STALL_TIMEOUT, progress.next()).await.map_err(|_| {
                RuntimeError::Pull(format!(
                    "pulling {image}: no progress for {}s",
                    PULL_STALL_TIMEOUT.as_secs()
                ))
            })?;
            match item {
                None => return Ok(()),
                // Progress, as `docker pull` shows it, once per layer state change.
                Some(Ok(info)) => {
                    let layer = info.id.unwrap_or_default();
                    let status = info.status.unwrap_or_default();
                    if !status.is_empty() && status != "Downloading" && status != "Extracting" {
                        tracing::info!(image, layer = %layer, "{status}");
                    }
                }
                Some(Err(DockerError::DockerStreamError { error })) => {
                    return Err(RuntimeError::Pull(error));
                }
                Some(Err(DockerError::DockerResponseServerError { message, .. })) => {
                    return Err(RuntimeError::Pull(message));
                }
                Some(Err(DockerError::RequestTimeoutError)) => {
                    return Err(RuntimeError::Pull(format!("pulling {image}: the engine did not answer")));
                }
                Some(Err(e)) => return Err(unavailable(e)),
            }
        }
    }

    /// Docker before API 1.44 happily creates two networks with one name, so the lock keeps this
    /// process from racing itself, and after creating, every creator keeps the oldest network of
    /// that name and removes the others: concurrent creators (other processes) converge on one.
    async fn ensure_network(&self, name: &str) -> RuntimeResult<()> {
        let _guard = self.network_lock.lock().await;
        let existing = self.networks_named(name).await?;
        if let Some((_, id)) = existing.iter().min() {
            return match &self.task_subnet {
                Some(wanted) => self.check_subnet(name, id, wanted).await,
                None => Ok(()),
            };
        }
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            ipam: self.task_subnet.as_ref().map(|subnet| bollard::models::Ipam {
                config: Some(vec![bollard::models::IpamConfig {
                    subnet: Some(subnet.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => {}
            // Newer engines refuse a duplicate name: someone else created it first.
            Err(e) if status(&e) == Some(409) => return Ok(()),
            Err(e) => {
                return Err(RuntimeError::Unavailable(format!(
                    "creating network {name}: {}",
                    server_message(&e)
                )));
            }
        }
        let mut found = self.networks_named(name).await?;
        found.sort();
        for (_, id) in found.iter().skip(1) {
            // Best effort: a concurrent creator removes the same duplicates.
            let _ = self.docker.remove_network(id).await;
        }
        Ok(())
    }

    /// An existing task network must be on the configured subnet: tasks elsewhere would be
    /// unreachable from the peers, which route only the reported subnet here.
    async fn check_subnet(&self, name: &str, id: &str, wanted: &str) -> RuntimeResult<()> {
        let network = self
            .docker
            .inspect_network(id, None::<bollard::query_parameters::InspectNetworkOptions>)
            .await
            .map_err(unavailable)?;
        let subnets: Vec<String> = network
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.subnet)
            .collect();
        if subnets.iter().any(|s| s == wanted) {
            return Ok(());
        }
        Err(RuntimeError::Create(format!(
            "network {name} is on {} rather than the task subnet {wanted}; remove it (docker network rm {name}) once no task uses it",
            if subnets.is_empty() { "no subnet".to_string() } else { subnets.join(", ") }
        )))
    }

    /// The networks called exactly `name`, as `(created ms, id)`.
    async fn networks_named(&self, name: &str) -> RuntimeResult<Vec<(i64, String)>> {
        let filters = HashMap::from([("name".to_owned(), vec![name.to_owned()])]);
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions { filters: Some(filters) }))
            .await
            .map_err(unavailable)?;
        Ok(networks
            .into_iter()
            // The engine's name filter matches substrings.
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| {
                let created = n.created.as_deref().and_then(parse_rfc3339_ms).unwrap_or(i64::MAX);
                Some((created, n.id?))
            })
            .collect())
    }

    async fn create(&self, spec: &ContainerSpec) -> RuntimeResult<String> {
        let body = container_body(spec)?;
        let name = (!spec.name.is_empty()).then(|| spec.name.clone());
        let options = CreateContainerOptions { name: name.clone(), ..Default::default() };
        match self.docker.create_container(Some(options), body).await {
            Ok(created) => Ok(created.id),
            Err(DockerError::DockerResponseServerError { message, .. }) => Err(RuntimeError::Create(message)),
            Err(e) => {
                // The request may have reached the engine before the connection failed: remove
                // whatever it created under our name (never on an engine answer such as a name
                // conflict, where the container is someone else's).
                if let Some(name) = &name {
                    let _ = self.remove(name).await;
                }
                Err(unavailable(e))
            }
        }
    }

    async fn start(&self, id: &str) -> RuntimeResult<()> {
        self.docker.start_container(id, None).await.map_err(|e| match e {
            DockerError::DockerResponseServerError { message, .. } => {
                if is_no_such_container(&message) {
                    RuntimeError::NotFound(id.to_owned())
                } else {
                    RuntimeError::Start(message)
                }
            }
            e => unavailable(e),
        })?;
        self.forget_stale_neighbor(id).await;
        Ok(())
    }

    /// A container whose MAC address Gantry chose (see [`MAC_LABEL`]) may get an address that
    /// an earlier container had with another MAC address; the host would go on sending that
    /// address's packets to the old MAC address (silently dropped) until its neighbor entry
    /// expires, up to a minute, while the bridge has other ports. Docker's own MAC addresses
    /// follow the IP address, so this never arose before. The host forgets the address's
    /// entry, and the next packet asks for the new one. Best effort: without root or
    /// iproute2 the entry expires on its own.
    async fn forget_stale_neighbor(&self, id: &str) {
        let Ok(Some(state)) = self.inspect(id).await else { return };
        let Some(ip) = state.ip_address.filter(|_| state.labels.contains_key(MAC_LABEL)) else { return };
        let done = tokio::task::spawn_blocking(move || {
            std::process::Command::new("ip")
                .args(["neigh", "flush", "to", &ip])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .output()
        })
        .await;
        match done {
            Ok(Ok(out)) if out.status.success() => {}
            Ok(Ok(out)) => {
                tracing::debug!(container = id, error = %String::from_utf8_lossy(&out.stderr).trim(),
                "ip neigh flush failed")
            }
            Ok(Err(e)) => tracing::debug!(container = id, error = %e, "ip neigh flush could not run"),
            Err(_) => {}
        }
    }

    async fn stop(&self, id: &str, timeout: Duration) -> RuntimeResult<()> {
        // Docker takes whole seconds; round up so a container is never killed early.
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let options =
            StopContainerOptions { t: Some(i32::try_from(secs).unwrap_or(i32::MAX)), ..Default::default() };
        // The client's default request timeout (2 minutes) may be shorter than the stop timeout.
        let client = self.docker.clone().with_timeout(Duration::from_secs(secs) + STOP_REQUEST_SLACK);
        // 304 (already stopped) counts as success in bollard.
        client.stop_container(id, Some(options)).await.map_err(|e| not_found_or_unavailable(e, id))
    }

    async fn remove(&self, id: &str) -> RuntimeResult<()> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            // "removal of container ... is already in progress": it is going away.
            Err(e) if status(&e) == Some(409) && server_message(&e).contains("already in progress") => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn inspect(&self, id: &str) -> RuntimeResult<Option<ContainerState>> {
        match self.docker.inspect_container(id, None).await {
            Ok(doc) => Ok(Some(container_state(doc))),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Uses Docker's `not-running` condition, which answers at once for a container that has
    /// already exited (or was never started: then with code 0).
    async fn wait(&self, id: &str) -> RuntimeResult<i64> {
        let options = WaitContainerOptions { condition: "not-running".to_owned() };
        let mut answers = self.docker.wait_container(id, Some(options));
        match answers.next().await {
            Some(Ok(answer)) => Ok(answer.status_code),
            // bollard turns a non-zero exit code into an error.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(not_found_or_unavailable(e, id)),
            None => Err(RuntimeError::Unavailable(format!(
                "waiting for container {id}: the engine closed the stream without an exit code"
            ))),
        }
    }

    async fn list(&self, label: &str, value: &str) -> RuntimeResult<Vec<ContainerState>> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{label}={value}")])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let summaries = self.docker.list_containers(Some(options)).await.map_err(unavailable)?;
        let mut states = Vec::with_capacity(summaries.len());
        for id in summaries.into_iter().filter_map(|s| s.id) {
            // The summary lacks exit codes and timestamps; a container removed meanwhile is skipped.
            if let Some(state) = self.inspect(&id).await? {
                states.push(state);
            }
        }
        states.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(states)
    }

    async fn chosen_macs(&self) -> RuntimeResult<Option<std::collections::HashSet<String>>> {
        let filters = HashMap::from([("label".to_owned(), vec![MAC_LABEL.to_owned()])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let summaries = self.docker.list_containers(Some(options)).await.map_err(unavailable)?;
        Ok(Some(
            summaries
                .into_iter()
                .filter_map(|s| s.labels?.get(MAC_LABEL).map(|m| m.to_ascii_lowercase()))
                .collect(),
        ))
    }

    /// The containers of a task (by the task-ARN label's suffix: the task ID), for `gantry logs`.
    pub async fn task_containers(&self, task_id: &str) -> RuntimeResult<Vec<ContainerState>> {
        let filters =
            HashMap::from([("label".to_owned(), vec![crate::runtime::labels::TASK_ARN.to_owned()])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let summaries = self.docker.list_containers(Some(options)).await.map_err(unavailable)?;
        let mut states = Vec::new();
        for s in summaries {
            let arn = s
                .labels
                .as_ref()
                .and_then(|l| l.get(crate::runtime::labels::TASK_ARN))
                .cloned()
                .unwrap_or_default();
            if arn.rsplit('/').next() == Some(task_id)
                && let Some(id) = s.id
                && let Some(state) = self.inspect(&id).await?
            {
                states.push(state);
            }
        }
        states.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(states)
    }

    /// Streams a container's output (stdout and stderr) to `out` until the container stops.
    pub async fn follow_logs(&self, id: &str, out: &mut (dyn std::io::Write + Send)) -> RuntimeResult<()> {
        let options = LogsOptions { stdout: true, stderr: true, follow: true, ..Default::default() };
        let mut chunks = self.docker.logs(id, Some(options));
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| not_found_or_unavailable(e, id))?;
            let _ = out.write_all(chunk.as_ref());
            let _ = out.flush();
        }
        Ok(())
    }

    async fn import_image(&self, reference: &str, rootfs: Vec<u8>) -> RuntimeResult<()> {
        let (repo, tag) = split_reference(reference);
        let options = CreateImageOptions {
            from_src: Some("-".to_owned()),
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        let body = bollard::body_full(bytes::Bytes::from(rootfs));
        let mut progress = self.docker.create_image(Some(options), Some(body), None);
        while let Some(item) = progress.next().await {
            match item {
                Ok(_) => {}
                Err(DockerError::DockerStreamError { error }) => return Err(RuntimeError::Create(error)),
                Err(DockerError::DockerResponseServerError { message, .. }) => {
                    return Err(RuntimeError::Create(message));
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }

    async fn stats(&self, id: &str) -> RuntimeResult<serde_json::Value> {
        let options = bollard::query_parameters::StatsOptions { stream: false, one_shot: false };
        let mut samples = self.docker.stats(id, Some(options));
        match samples.next().await {
            Some(Ok(sample)) => {
                serde_json::to_value(sample).map_err(|e| RuntimeError::Unavailable(e.to_string()))
            }
            Some(Err(e)) => Err(not_found_or_unavailable(e, id)),
            None => Err(RuntimeError::NotFound(id.to_string())),
        }
    }

    async fn logs(&self, id: &str) -> RuntimeResult<Vec<u8>> {
        let options = LogsOptions { stdout: true, stderr: true, ..Default::default() };
        let mut chunks = self.docker.logs(id, Some(options));
        let mut out = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| not_found_or_unavailable(e, id))?;
            out.extend_from_slice(chunk.as_ref());
        }
        Ok(out)
    }
}

impl Runtime for DockerRuntime {
    fn image_present<'a>(&'a self, image: &'a str) -> BoxFuture<'a, RuntimeResult<bool>> {
        Box::pin(self.image_present(image))
    }
    fn pull<'a>(
        &'a self,
        image: &'a str,
        auth: Option<&'a gantry_core::protocol::RegistryAuth>,
    ) -> BoxFuture<'a, RuntimeResult<()>> {
        Box::pin(self.pull(image, auth))
    }
    fn ensure_network<'a>(&'a self, name: &'a str) -> BoxFuture<'a, RuntimeResult<()>> {
        Box::pin(self.ensure_network(name))
    }
    fn import_image<'a>(&'a self, reference: &'a str, rootfs: Vec<u8>) -> BoxFuture<'a, RuntimeResult<()>> {
        Box::pin(self.import_image(reference, rootfs))
    }
    fn create<'a>(&'a self, spec: &'a ContainerSpec) -> BoxFuture<'a, RuntimeResult<String>> {
        Box::pin(self.create(spec))
    }
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<()>> {
        Box::pin(self.start(id))
    }
    fn stop<'a>(&'a self, id: &'a str, timeout: Duration) -> BoxFuture<'a, RuntimeResult<()>> {
        Box::pin(self.stop(id, timeout))
    }
    fn rename<'a>(&'a self, id: &'a str, name: &'a str) -> BoxFuture<'a, RuntimeResult<()>> {
        Box::pin(async move {
            let options = bollard::query_parameters::RenameContainerOptions { name: name.to_owned() };
            self.docker.rename_container(id, options).await.map_err(|e| match status(&e) {
                Some(404) => RuntimeError::NotFound(id.to_owned()),
                Some(409) => RuntimeError::Create(e.to_string()),
                _ => unavailable(e),
            })
        })
    }
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<()>> {
        Box::pin(self.remove(id))
    }
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<Option<ContainerState>>> {
        Box::pin(self.inspect(id))
    }
    fn wait<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<i64>> {
        Box::pin(self.wait(id))
    }
    fn list<'a>(
        &'a self,
        label: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, RuntimeResult<Vec<ContainerState>>> {
        Box::pin(self.list(label, value))
    }
    fn logs<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<Vec<u8>>> {
        Box::pin(self.logs(id))
    }
    fn log_lines<'a>(
        &'a self,
        id: &'a str,
        since_s: i64,
    ) -> futures_util::stream::BoxStream<'a, RuntimeResult<crate::runtime::LogLine>> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            follow: true,
            timestamps: true,
            since: since_s.clamp(0, i32::MAX as i64) as i32,
            ..Default::default()
        };
        let chunks = self.docker.logs(id, Some(options));
        let id = id.to_string();
        // Each chunk is one line (or a part of a long one) prefixed with its RFC 3339 time.
        Box::pin(chunks.flat_map(move |chunk| {
            let lines: Vec<RuntimeResult<crate::runtime::LogLine>> = match chunk {
                Err(e) => vec![Err(not_found_or_unavailable(e, &id))],
                Ok(c) => String::from_utf8_lossy(c.as_ref())
                    .split_terminator('\n')
                    .filter_map(|l| {
                        let (ts, text) = l.split_once(' ').unwrap_or((l, ""));
                        let time_ns = crate::awslogs::parse_engine_time(ts)?;
                        Some(Ok(crate::runtime::LogLine {
                            time_ns,
                            text: text.trim_end_matches('\r').to_string(),
                        }))
                    })
                    .collect(),
            };
            futures_util::stream::iter(lines)
        }))
    }
    fn stats<'a>(&'a self, id: &'a str) -> BoxFuture<'a, RuntimeResult<serde_json::Value>> {
        Box::pin(self.stats(id))
    }
    fn exec_start<'a>(
        &'a self,
        id: &'a str,
        spec: &'a crate::runtime::ExecSpec,
    ) -> BoxFuture<'a, RuntimeResult<crate::runtime::ExecProcess>> {
        use crate::runtime::{ExecOutput, ExecProcess};
        use bollard::exec::{StartExecOptions, StartExecResults};
        Box::pin(async move {
            let config = bollard::models::ExecConfig {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(spec.tty),
                cmd: Some(spec.command.clone()),
                ..Default::default()
            };
            let created =
                self.docker.create_exec(id, config).await.map_err(|e| not_found_or_unavailable(e, id))?;
            let options = StartExecOptions { detach: false, tty: spec.tty, output_capacity: None };
            match self.docker.start_exec(&created.id, Some(options)).await.map_err(unavailable)? {
                StartExecResults::Attached { output, input } => {
                    let output = output
                        .filter_map(|chunk| async move {
                            match chunk {
                                Ok(bollard::container::LogOutput::StdErr { message }) => {
                                    Some(Ok(ExecOutput::Stderr(message.to_vec())))
                                }
                                Ok(
                                    bollard::container::LogOutput::StdOut { message }
                                    | bollard::container::LogOutput::Console { message },
                                ) => Some(Ok(ExecOutput::Stdout(message.to_vec()))),
                                Ok(bollard::container::LogOutput::StdIn { .. }) => None,
                                Err(e) => Some(Err(unavailable(e))),
                            }
                        })
                        .boxed();
                    Ok(ExecProcess { id: created.id, input, output })
                }
                StartExecResults::Detached => {
                    Err(RuntimeError::Unavailable(format!("the exec in {id} started detached")))
                }
            }
        })
    }
    fn chosen_macs(&self) -> BoxFuture<'_, RuntimeResult<Option<std::collections::HashSet<String>>>> {
        Box::pin(self.chosen_macs())
    }
    fn exec_resize<'a>(&'a self, exec_id: &'a str, cols: u16, rows: u16) -> BoxFuture<'a, RuntimeResult<()>> {
        Box::pin(async move {
            let options =
                bollard::query_parameters::ResizeExecOptions { h: i32::from(rows), w: i32::from(cols) };
            self.docker.resize_exec(exec_id, options).await.map_err(unavailable)
        })
    }
    fn exec_exit_code<'a>(&'a self, exec_id: &'a str) -> BoxFuture<'a, RuntimeResult<Option<i64>>> {
        Box::pin(async move {
            let r =
                self.docker.inspect_exec(exec_id).await.map_err(|e| not_found_or_unavailable(e, exec_id))?;
            Ok(if r.running == Some(true) { None } else { r.exit_code })
        })
    }
}

// ---- errors ----

fn status(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Docker's own message when it answered with an error, or the transport failure.
fn server_message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        e => e.to_string(),
    }
}

fn unavailable(e: DockerError) -> RuntimeError {
    RuntimeError::Unavailable(e.to_string())
}

fn is_no_such_container(message: &str) -> bool {
    message.starts_with("No such container")
}

fn not_found_or_unavailable(e: DockerError, id: &str) -> RuntimeError {
    if status(&e) == Some(404) { RuntimeError::NotFound(id.to_owned()) } else { unavailable(e) }
}

// ---- spec -> Docker ----

/// Splits an image reference into repository and tag (or digest), defaulting the tag to `latest`:
/// the engine pulls *every* tag of a repository when asked for none.
fn split_reference(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    // A colon after the last slash separates the tag; one before it is a registry's port.
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// The registry an image repository lives in, as the engine decides it: the first path
/// component when it looks like a host (has a `.` or a `:`, or is `localhost`), else Docker Hub.
fn registry_of(repo: &str) -> &str {
    match repo.split_once('/') {
        Some((host, _)) if host.contains(['.', ':']) || host == "localhost" => host,
        _ => "https://index.docker.io/v1/",
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

fn mib(n: i64) -> i64 {
    n.saturating_mul(1024 * 1024)
}

fn seconds_as_ns(s: u32) -> i64 {
    i64::from(s) * 1_000_000_000
}

/// Exactly these NVIDIA GPUs (`docker run --gpus '"device=ID,ID"'`).
fn gpu_request(ids: &[String]) -> DeviceRequest {
    DeviceRequest {
        driver: Some("nvidia".into()),
        device_ids: Some(ids.to_vec()),
        capabilities: Some(vec![vec!["gpu".into()]]),
        ..Default::default()
    }
}

/// The label that carries a container's chosen MAC address into its create request (see
/// [`container_mac_address`]).
const MAC_LABEL: &str = "gantry.mac-address";

/// Engines before API 1.44 take a container's MAC address only from the create request's
/// container-level `MacAddress`, which bollard's request shape no longer has: this request
/// modifier copies the [`MAC_LABEL`] label of a `POST /containers/create` body into it.
fn container_mac_address(req: bollard::BollardRequest) -> bollard::BollardRequest {
    use futures_util::FutureExt;
    use http_body_util::BodyExt;
    if req.method() != "POST" || !req.uri().path().ends_with("/containers/create") {
        return req;
    }
    let (parts, body) = req.into_parts();
    let http_body_util::Either::Left(full) = body else {
        return bollard::BollardRequest::from_parts(parts, body);
    };
    // A full body is ready at once.
    let Some(Ok(bytes)) = full.collect().now_or_never().map(|r| r.map(|c| c.to_bytes())) else {
        return bollard::BollardRequest::from_parts(parts, bollard::body_full(bytes::Bytes::new()));
    };
    let mut doc: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(d) => d,
        Err(_) => return bollard::BollardRequest::from_parts(parts, bollard::body_full(bytes)),
    };
    let mac = doc.pointer(&format!("/Labels/{MAC_LABEL}")).and_then(|v| v.as_str()).map(str::to_string);
    let Some(mac) = mac else {
        return bollard::BollardRequest::from_parts(parts, bollard::body_full(bytes));
    };
    doc["MacAddress"] = serde_json::Value::String(mac);
    let mut parts = parts;
    let body = serde_json::to_vec(&doc).unwrap_or_else(|_| bytes.to_vec());
    // The length is the new body's (hyper sets it from the body when the header is absent).
    parts.headers.remove("content-length");
    bollard::BollardRequest::from_parts(parts, bollard::body_full(bytes::Bytes::from(body)))
}

/// The create request for a spec. Fails only for specs Docker could not express.
fn container_body(spec: &ContainerSpec) -> RuntimeResult<ContainerCreateBody> {
    let (network_mode, endpoints) = match &spec.network {
        Network::Bridge => ("bridge".to_owned(), None),
        Network::Host => ("host".to_owned(), None),
        Network::None => ("none".to_owned(), None),
        Network::Container(id) => (format!("container:{id}"), None),
        Network::Named(net) => {
            let endpoint = EndpointSettings {
                aliases: (!spec.network_aliases.is_empty()).then(|| spec.network_aliases.clone()),
                // Engines of API 1.44 and later take it here.
                mac_address: spec.mac_address.clone(),
                ..Default::default()
            };
            (net.clone(), Some(HashMap::from([(net.clone(), endpoint)])))
        }
    };
    if endpoints.is_none() && !spec.network_aliases.is_empty() {
        return Err(RuntimeError::Create(format!(
            "network aliases {:?} need a named network, not {:?}",
            spec.network_aliases, spec.network
        )));
    }

    let mut exposed = Vec::new();
    let mut bindings: PortMap = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, protocol_name(p.protocol));
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        // An empty host port asks the engine for a dynamic one.
        let binding = DockerPortBinding {
            host_ip: None,
            host_port: Some(p.host_port.map(|h| h.to_string()).unwrap_or_default()),
        };
        bindings.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_default().push(binding);
    }

    // Bind mounts go through `Binds`, which creates a missing host directory as ECS documents for
    // host volumes (the `Mounts` API refuses one); named volumes through `Mounts`, which creates a
    // missing volume and needs no parsing of names.
    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    for m in &spec.mounts {
        match m.kind {
            MountKind::Bind => {
                let mode = if m.read_only { ":ro" } else { "" };
                binds.push(format!("{}:{}{mode}", m.source, m.target));
            }
            MountKind::Volume => mounts.push(DockerMount {
                typ: Some(MountType::VOLUME),
                source: Some(m.source.clone()),
                target: Some(m.target.clone()),
                read_only: Some(m.read_only),
                ..Default::default()
            }),
        }
    }

    let healthcheck = spec.health_check.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(seconds_as_ns(h.interval_s)),
        timeout: Some(seconds_as_ns(h.timeout_s)),
        retries: Some(i64::from(h.retries)),
        start_period: Some(seconds_as_ns(h.start_period_s)),
        ..Default::default()
    });

    let some_vec = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let host_config = HostConfig {
        cpu_shares: spec.cpu_shares,
        nano_cpus: spec.nano_cpus,
        memory: spec.memory_mib.map(mib),
        memory_reservation: spec.memory_reservation_mib.map(mib),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        network_mode: Some(network_mode),
        ulimits: (!spec.ulimits.is_empty()).then(|| {
            spec.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        // Unset leaves the daemon's default (`--init` in daemon.json).
        init: spec.init.then_some(true),
        cap_add: some_vec(&spec.cap_add),
        cap_drop: some_vec(&spec.cap_drop),
        readonly_rootfs: Some(spec.read_only_rootfs),
        privileged: Some(spec.privileged),
        extra_hosts: some_vec(&spec.extra_hosts),
        dns: some_vec(&spec.dns_servers),
        dns_search: some_vec(&spec.dns_search),
        binds: (!binds.is_empty()).then_some(binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        volumes_from: (!spec.volumes_from.is_empty()).then(|| {
            spec.volumes_from
                .iter()
                .map(|(name, ro)| if *ro { format!("{name}:ro") } else { name.clone() })
                .collect()
        }),
        device_requests: (!spec.gpus.is_empty()).then(|| vec![gpu_request(&spec.gpus)]),
        ..Default::default()
    };

    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        labels: Some({
            let mut l: HashMap<String, String> =
                spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            if let Some(mac) = &spec.mac_address {
                l.insert(MAC_LABEL.to_string(), mac.clone());
            }
            l
        }),
        entrypoint: spec.entrypoint.clone(),
        // None keeps the image's CMD.
        cmd: spec.command.clone(),
        env: (!spec.env.is_empty()).then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        hostname: spec.hostname.clone(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        stop_timeout: spec.stop_timeout.map(|t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX)),
        host_config: Some(host_config),
        networking_config: endpoints.map(|e| NetworkingConfig { endpoints_config: Some(e) }),
        ..Default::default()
    })
}

// ---- Docker -> state ----

/// The state the agent sees, from Docker's inspect document.
fn container_state(doc: ContainerInspectResponse) -> ContainerState {
    let state = doc.state.unwrap_or_default();
    let config = doc.config.unwrap_or_default();
    let status = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerStatus::Created,
        Some(
            ContainerStateStatusEnum::RUNNING
            | ContainerStateStatusEnum::PAUSED
            | ContainerStateStatusEnum::RESTARTING
            | ContainerStateStatusEnum::STOPPING,
        ) => ContainerStatus::Running,
        Some(
            ContainerStateStatusEnum::EXITED
            | ContainerStateStatusEnum::DEAD
            | ContainerStateStatusEnum::REMOVING,
        ) => ContainerStatus::Exited,
        Some(ContainerStateStatusEnum::EMPTY) | None if state.running == Some(true) => {
            ContainerStatus::Running
        }
        Some(ContainerStateStatusEnum::EMPTY) | None => ContainerStatus::Created,
    };
    let oom_killed = state.oom_killed.unwrap_or(false);
    let error = match state.error.filter(|e| !e.is_empty()) {
        Some(e) => Some(e),
        None if oom_killed => Some("OOMKilled".to_owned()),
        None => None,
    };
    let health = state.health.and_then(|h| match h.status? {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
    });
    let network_mode = doc.host_config.and_then(|h| h.network_mode).unwrap_or_default();
    let settings = doc.network_settings.unwrap_or_default();
    ContainerState {
        id: doc.id.unwrap_or_default(),
        name: doc.name.unwrap_or_default().trim_start_matches('/').to_owned(),
        // The reference as created, not the image ID that the top-level `Image` holds.
        image: config.image.or(doc.image).unwrap_or_default(),
        labels: Arc::new(config.labels.unwrap_or_default().into_iter().collect()),
        status,
        exit_code: (status == ContainerStatus::Exited).then_some(state.exit_code).flatten(),
        error,
        oom_killed,
        started_at_ms: state.started_at.as_deref().and_then(parse_rfc3339_ms),
        finished_at_ms: state.finished_at.as_deref().and_then(parse_rfc3339_ms),
        health,
        ports: bound_ports(settings.ports.as_ref()),
        ip_address: ip_address(&network_mode, settings.networks.as_ref()),
    }
}

/// Published ports, one per binding; an IPv6 binding that duplicates an IPv4 one is dropped.
fn bound_ports(ports: Option<&PortMap>) -> Vec<BoundPort> {
    let mut out = Vec::new();
    for (key, bindings) in ports.into_iter().flatten() {
        let Some((port, protocol)) = key.split_once('/') else { continue };
        let (Ok(container_port), Some(protocol)) = (port.parse::<u16>(), parse_protocol(protocol)) else {
            continue;
        };
        // `None` is a port exposed but not published.
        let Some(bindings) = bindings else { continue };
        let is_v6 = |b: &&DockerPortBinding| b.host_ip.as_deref().unwrap_or("").contains(':');
        let v4: Vec<&DockerPortBinding> = bindings.iter().filter(|b| !is_v6(b)).collect();
        let chosen = if v4.is_empty() { bindings.iter().collect() } else { v4 };
        for b in chosen {
            let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse::<u16>().ok()) else {
                continue;
            };
            let host_ip = match b.host_ip.as_deref() {
                None | Some("") => "0.0.0.0".to_owned(),
                Some(ip) => ip.to_owned(),
            };
            out.push(BoundPort { container_port, host_port, protocol, host_ip });
        }
    }
    out.sort_by(|a, b| {
        (a.container_port, a.protocol, a.host_port, &a.host_ip).cmp(&(
            b.container_port,
            b.protocol,
            b.host_port,
            &b.host_ip,
        ))
    });
    out.dedup();
    out
}

fn parse_protocol(s: &str) -> Option<Protocol> {
    match s {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
    }
}

/// The IP on the container's own network, else on the first network (by name) that gave it one.
fn ip_address(network_mode: &str, networks: Option<&HashMap<String, EndpointSettings>>) -> Option<String> {
    let networks = networks?;
    let ip = |e: &EndpointSettings| e.ip_address.clone().filter(|ip| !ip.is_empty());
    let own = if network_mode == "default" { "bridge" } else { network_mode };
    networks.get(own).and_then(ip).or_else(|| {
        let mut names: Vec<&String> = networks.keys().collect();
        names.sort();
        names.into_iter().find_map(|n| ip(&networks[n]))
    })
}

/// Milliseconds since the epoch for an RFC 3339 timestamp as Docker writes them
/// (`2024-05-07T21:09:36.123456789Z`, or with a `+hh:mm` offset). Docker's zero time
/// (`0001-01-01T00:00:00Z`) means "never", and gives `None` like anything unparsable.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    fn digits(s: &str) -> Option<i64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(s.get(0..4)?)?, digits(s.get(5..7)?)?, digits(s.get(8..10)?)?);
    let (hour, minute, second) = (digits(s.get(11..13)?)?, digits(s.get(14..16)?)?, digits(s.get(17..19)?)?);
    if year <= 1
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let end = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
        if end == 0 {
            return None;
        }
        let first3 = format!("{:0<3}", &fraction[..end.min(3)]);
        millis = digits(&first3)?;
        rest = &fraction[end..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (digits(&rest[1..3])? * 3600 + digits(&rest[4..6])? * 60)
        }
    };
    let days = gantry_core::civil::days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Some(secs * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::runtime::{HealthCheck, Mount, PortBinding, Ulimit};

    #[test]
    fn rfc3339() {
        let check = |s: &str, want: Option<i64>| assert_eq!(parse_rfc3339_ms(s), want, "{s}");
        check("1970-01-01T00:00:00Z", Some(0));
        check("2024-05-07T21:09:36.123456789Z", Some(1_715_116_176_123));
        check("2024-05-07T21:09:36.1Z", Some(1_715_116_176_100));
        check("2024-05-07T23:09:36+02:00", Some(1_715_116_176_000));
        check("2024-02-29T00:00:00Z", Some(1_709_164_800_000));
        check("2000-03-01T00:00:00Z", Some(951_868_800_000));
        check("1969-12-31T23:59:59Z", Some(-1000));
        check("0001-01-01T00:00:00Z", None);
        check("", None);
        check("2024-05-07 21:09:36Z", None);
        check("2024-05-07T21:09:36", None);
        check("2024-05-07T21:09:36.Z", None);
        check("2024-13-07T21:09:36Z", None);
        check("2024-05-07T21:09:36+0200", None);
    }

    #[test]
    fn references() {
        let check =
            |image: &str, repo: &str, tag: &str| assert_eq!(split_reference(image), (repo, tag), "{image}");
        check("busybox", "busybox", "latest");
        check("busybox:1.36", "busybox", "1.36");
        check("localhost:5000/app", "localhost:5000/app", "latest");
        check("localhost:5000/team/app:v2", "localhost:5000/team/app", "v2");
        check("app@sha256:abcd", "app", "sha256:abcd");
    }

    #[test]
    fn registries() {
        let hub = "https://index.docker.io/v1/";
        assert_eq!(registry_of("busybox"), hub);
        assert_eq!(registry_of("library/busybox"), hub);
        assert_eq!(registry_of("team/app"), hub);
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("127.0.0.1:5000/team/app"), "127.0.0.1:5000");
        assert_eq!(
            registry_of("123456789012.dkr.ecr.us-east-1.amazonaws.com/app"),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
    }

    #[test]
    fn minimal_spec_keeps_image_defaults() {
        let spec = ContainerSpec { name: "c".into(), image: "img".into(), ..Default::default() };
        let body = container_body(&spec).unwrap();
        assert_eq!(body.image.as_deref(), Some("img"));
        assert_eq!(body.cmd, None);
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.env, None);
        assert_eq!(body.healthcheck, None);
        assert_eq!(body.exposed_ports, None);
        assert_eq!(body.networking_config, None);
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!(host.memory, None);
        assert_eq!(host.init, None);
        assert_eq!(host.port_bindings, None);
        assert_eq!(host.binds, None);
        assert_eq!(host.mounts, None);
        assert_eq!(host.device_requests, None);
    }

    #[test]
    fn full_spec_maps_every_field() {
        let spec = ContainerSpec {
            name: "web".into(),
            image: "img:1".into(),
            labels: BTreeMap::from([("k".into(), "v".into())]),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            command: Some(vec!["echo hi".into()]),
            env: vec![("A".into(), "1".into()), ("B".into(), "x=y".into())],
            working_dir: Some("/w".into()),
            user: Some("1000:1000".into()),
            hostname: Some("h".into()),
            cpu_shares: Some(256),
            nano_cpus: Some(500_000_000),
            memory_mib: Some(128),
            memory_reservation_mib: Some(64),
            ports: vec![
                PortBinding { container_port: 80, host_port: None, protocol: Protocol::Tcp },
                PortBinding { container_port: 80, host_port: Some(8080), protocol: Protocol::Tcp },
                PortBinding { container_port: 53, host_port: Some(5353), protocol: Protocol::Udp },
            ],
            network: Network::Named("tasks".into()),
            network_aliases: vec!["web".into()],
            health_check: Some(HealthCheck {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval_s: 5,
                timeout_s: 2,
                retries: 3,
                start_period_s: 10,
            }),
            ulimits: vec![Ulimit { name: "nofile".into(), soft: 1024, hard: 2048 }],
            init: true,
            cap_add: vec!["NET_ADMIN".into()],
            cap_drop: vec!["MKNOD".into()],
            read_only_rootfs: true,
            privileged: false,
            extra_hosts: vec!["db:10.0.0.2".into()],
            dns_servers: vec!["10.0.0.53".into()],
            dns_search: vec!["svc.local".into()],
            mounts: vec![
                Mount {
                    kind: MountKind::Bind,
                    source: "/srv/data".into(),
                    target: "/data".into(),
                    read_only: true,
                },
                Mount {
                    kind: MountKind::Volume,
                    source: "cache".into(),
                    target: "/cache".into(),
                    read_only: false,
                },
            ],
            volumes_from: vec![("a".into(), false), ("b".into(), true)],
            stop_timeout: Some(Duration::from_secs(45)),
            gpus: vec!["GPU-1".into(), "GPU-2".into()],
            mac_address: Some("0a:01:02:03:04:05".into()),
        };
        let body = container_body(&spec).unwrap();
        assert_eq!(
            body.labels,
            Some(HashMap::from([("k".into(), "v".into()), (MAC_LABEL.into(), "0a:01:02:03:04:05".into())]))
        );
        // The engine gets the MAC address as the container's own (engines before API 1.44).
        let mut req = bollard::BollardRequest::new(bollard::body_full(bytes::Bytes::from(
            serde_json::to_vec(&body).unwrap(),
        )));
        *req.method_mut() = "POST".parse().unwrap();
        *req.uri_mut() = "/v1.41/containers/create?name=x".parse().unwrap();
        let sent = container_mac_address(req);
        let bytes = futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(sent.into_body()))
            .unwrap()
            .unwrap()
            .to_bytes();
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["MacAddress"], "0a:01:02:03:04:05");
        assert_eq!(doc["Image"], body.image.clone().unwrap());
        assert_eq!(body.entrypoint, Some(vec!["/bin/sh".into(), "-c".into()]));
        assert_eq!(body.cmd, Some(vec!["echo hi".into()]));
        assert_eq!(body.env, Some(vec!["A=1".into(), "B=x=y".into()]));
        assert_eq!(body.working_dir.as_deref(), Some("/w"));
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(body.hostname.as_deref(), Some("h"));
        assert_eq!(body.stop_timeout, Some(45));
        assert_eq!(body.exposed_ports, Some(vec!["80/tcp".into(), "53/udp".into()]));
        let hc = body.healthcheck.unwrap();
        assert_eq!(hc.test, Some(vec!["CMD-SHELL".into(), "true".into()]));
        assert_eq!(
            (hc.interval, hc.timeout, hc.retries, hc.start_period),
            (Some(5_000_000_000), Some(2_000_000_000), Some(3), Some(10_000_000_000))
        );
        let endpoints = body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(endpoints["tasks"].aliases, Some(vec!["web".into()]));

        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("tasks"));
        assert_eq!((host.cpu_shares, host.nano_cpus), (Some(256), Some(500_000_000)));
        assert_eq!((host.memory, host.memory_reservation), (Some(128 << 20), Some(64 << 20)));
        let ports = host.port_bindings.unwrap();
        let hp = |key: &str| -> Vec<Option<String>> {
            ports[key].as_ref().unwrap().iter().map(|b| b.host_port.clone()).collect()
        };
        assert_eq!(hp("80/tcp"), vec![Some(String::new()), Some("8080".into())]);
        assert_eq!(hp("53/udp"), vec![Some("5353".into())]);
        let ulimits = host.ulimits.unwrap();
        assert_eq!(
            (ulimits[0].name.as_deref(), ulimits[0].soft, ulimits[0].hard),
            (Some("nofile"), Some(1024), Some(2048))
        );
        assert_eq!(host.init, Some(true));
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".into()]));
        assert_eq!(host.cap_drop, Some(vec!["MKNOD".into()]));
        assert_eq!((host.readonly_rootfs, host.privileged), (Some(true), Some(false)));
        assert_eq!(host.extra_hosts, Some(vec!["db:10.0.0.2".into()]));
        assert_eq!(host.dns, Some(vec!["10.0.0.53".into()]));
        assert_eq!(host.dns_search, Some(vec!["svc.local".into()]));
        assert_eq!(host.binds, Some(vec!["/srv/data:/data:ro".into()]));
        let mounts = host.mounts.unwrap();
        assert_eq!(
            (mounts[0].typ, mounts[0].source.as_deref(), mounts[0].target.as_deref(), mounts[0].read_only),
            (Some(MountType::VOLUME), Some("cache"), Some("/cache"), Some(false))
        );
        assert_eq!(host.volumes_from, Some(vec!["a".into(), "b:ro".into()]));
        let gpus = host.device_requests.unwrap();
        assert_eq!(gpus.len(), 1);
        assert_eq!(gpus[0].driver.as_deref(), Some("nvidia"));
        assert_eq!(gpus[0].device_ids, Some(vec!["GPU-1".into(), "GPU-2".into()]));
        assert_eq!(gpus[0].capabilities, Some(vec![vec!["gpu".into()]]));
        assert_eq!(gpus[0].count, None, "exactly the named devices, not a count");
    }

    #[test]
    fn network_modes() {
        let mode = |network: Network| {
            let spec = ContainerSpec { network, ..Default::default() };
            container_body(&spec).unwrap().host_config.unwrap().network_mode.unwrap()
        };
        assert_eq!(mode(Network::Bridge), "bridge");
        assert_eq!(mode(Network::Host), "host");
        assert_eq!(mode(Network::None), "none");
        assert_eq!(mode(Network::Container("abc".into())), "container:abc");
        assert_eq!(mode(Network::Named("n".into())), "n");

        let spec = ContainerSpec { network_aliases: vec!["x".into()], ..Default::default() };
        assert!(matches!(container_body(&spec), Err(RuntimeError::Create(m)) if m.contains("named network")));
    }

    /// Trimmed from a Docker 20.10 `GET /containers/{id}/json`.
    const INSPECT_RUNNING: &str = r#"{
        "Id": "abc123",
        "Name": "/web",
        "Image": "sha256:81ba5d9b3b4f",
        "State": {
            "Status": "running", "Running": true, "Paused": false, "Restarting": false,
            "OOMKilled": false, "Dead": false, "Pid": 42, "ExitCode": 0, "Error": "",
            "StartedAt": "2026-11-22T18:30:00.5Z", "FinishedAt": "0001-01-01T00:00:00Z",
            "Health": {"Status": "healthy", "FailingStreak": 0, "Log": []}
        },
        "HostConfig": {"NetworkMode": "default"},
        "Config": {"Image": "gantry-test/busybox:latest", "Labels": {"gantry.node": "n1"}},
        "NetworkSettings": {
            "Ports": {
                "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}, {"HostIp": "::", "HostPort": "49153"}],
                "53/udp": [{"HostIp": "::", "HostPort": "5353"}],
                "81/tcp": null,
                "132/sctp": [{"HostIp": "0.0.0.0", "HostPort": "132"}]
            },
            "Networks": {
                "bridge": {"IPAddress": "172.17.0.2"},
                "other": {"IPAddress": "10.0.0.2"}
            }
        }
    }"#;

    #[test]
    fn inspect_document_to_state() {
        let doc: ContainerInspectResponse = serde_json::from_str(INSPECT_RUNNING).unwrap();
        let state = container_state(doc);
        assert_eq!(state.id, "abc123");
        assert_eq!(state.name, "web");
        assert_eq!(state.image, "gantry-test/busybox:latest");
        assert_eq!(*state.labels, BTreeMap::from([("gantry.node".into(), "n1".into())]));
        assert_eq!(state.status, ContainerStatus::Running);
        assert_eq!(state.exit_code, None);
        assert_eq!((state.error, state.oom_killed), (None, false));
        assert_eq!(state.started_at_ms, parse_rfc3339_ms("2026-11-22T18:30:00.500Z"));
        assert_eq!(state.finished_at_ms, None);
        assert_eq!(state.health, Some(Health::Healthy));
        assert_eq!(
            state.ports,
            vec![
                BoundPort {
                    container_port: 53,
                    host_port: 5353,
                    protocol: Protocol::Udp,
                    host_ip: "::".into()
                },
                BoundPort {
                    container_port: 80,
                    host_port: 49153,
                    protocol: Protocol::Tcp,
                    host_ip: "0.0.0.0".into()
                },
            ]
        );
        assert_eq!(state.ip_address.as_deref(), Some("172.17.0.2"));
    }

    #[test]
    fn exited_states() {
        let check = |json: &str, status: ContainerStatus, exit: Option<i64>, error: Option<&str>| {
            let doc: ContainerInspectResponse = serde_json::from_str(json).unwrap();
            let state = container_state(doc);
            assert_eq!(
                (state.status, state.exit_code, state.error.as_deref()),
                (status, exit, error),
                "{json}"
            );
        };
        check(
            r#"{"State": {"Status": "exited", "ExitCode": 3, "Error": ""}}"#,
            ContainerStatus::Exited,
            Some(3),
            None,
        );
        check(
            r#"{"State": {"Status": "exited", "ExitCode": 137, "OOMKilled": true}}"#,
            ContainerStatus::Exited,
            Some(137),
            Some("OOMKilled"),
        );
        check(r#"{"State": {"Status": "dead", "ExitCode": 1}}"#, ContainerStatus::Exited, Some(1), None);
        check(r#"{"State": {"Status": "paused"}}"#, ContainerStatus::Running, None, None);
        check(r#"{"State": {"Status": "restarting"}}"#, ContainerStatus::Running, None, None);
        check(
            r#"{"State": {"Status": "created", "ExitCode": 128, "Error": "port is already allocated"}}"#,
            ContainerStatus::Created,
            None,
            Some("port is already allocated"),
        );
    }

    #[test]
    fn ip_on_own_network_else_first() {
        let nets = |pairs: &[(&str, &str)]| -> HashMap<String, EndpointSettings> {
            pairs
                .iter()
                .map(|(n, ip)| {
                    (
                        n.to_string(),
                        EndpointSettings { ip_address: Some(ip.to_string()), ..Default::default() },
                    )
                })
                .collect()
        };
        let n = nets(&[("a", "10.0.0.1"), ("tasks", "10.1.0.5")]);
        assert_eq!(ip_address("tasks", Some(&n)).as_deref(), Some("10.1.0.5"));
        assert_eq!(ip_address("container:x", Some(&n)).as_deref(), Some("10.0.0.1"));
        assert_eq!(ip_address("host", Some(&nets(&[("host", "")]))), None);
        assert_eq!(ip_address("bridge", None), None);
    }
}
