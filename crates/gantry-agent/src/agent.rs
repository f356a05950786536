//! The agent's loop: poll for assignments, reconcile them against the containers found by label,
//! and run each task through its lifecycle.
//!
//! [`decide`] is the pure part: given what the server wants, which tasks have a runner here, and
//! which containers carry this node's label, it says what to do. [`Agent`] carries it out: a
//! runner per task (pull, create, start in `dependsOn` order, report RUNNING, watch for exits and
//! health, stop, report STOPPED, keep the logs, remove the containers), and removal of containers
//! the server no longer wants.

use crate::awslogs;
use crate::client::ControlClient;
use crate::metadata::{self, ContainerMeta, TaskMeta, rfc3339};
use crate::pause::{PAUSE_IMAGE, PAUSE_NAME, pause_rootfs};
use crate::runtime::{ContainerState, ContainerStatus, Health, Network, Runtime, RuntimeError, labels};
use crate::spec::{TaskNetwork, container_spec};

/// The docker label that keeps `AWS_ENDPOINT_URL` out of a container (value `false`).
pub const ENDPOINT_URL_LABEL: &str = "gantry.endpoint-url";

/// The engine network awsvpc tasks get their addresses on.
pub const AWSVPC_NETWORK: &str = "gantry-tasks";
use gantry_core::Clock;
use gantry_core::protocol::{
    Assignment, Assignments, PollRequest, TaskCredentials, TaskCredentialsRequest, TaskHealthReport,
};
use gantry_model::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What to do about one task or stray container set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start a runner for the task; `adopt` lists the engine IDs of containers already there.
    Run { task_arn: String, adopt: Vec<String> },
    /// Tell the task's runner to stop it.
    Stop { task_arn: String },
    /// Re-send the final report of a task this agent already stopped.
    Resend { task_arn: String },
    /// Stop and remove containers of a task the server no longer assigns here.
    RemoveStray { task_arn: String, containers: Vec<String> },
}

/// Whether the server wants a task running: until its desired status is STOPPED, and while it
/// is DEACTIVATING (its load balancer targets drain; the server makes it STOPPING after).
pub fn wants_running(task: &gantry_model::Task) -> bool {
    task.desired_status.as_deref() != Some("STOPPED") || task.last_status.as_deref() == Some("DEACTIVATING")
}

/// The pure reconcile step.
pub fn decide(
    desired: &[(String, bool)],
    running: &HashSet<String>,
    finished: &HashSet<String>,
    found: &BTreeMap<String, Vec<String>>,
) -> Vec<Decision> {
    let mut out = Vec::new();
    for (arn, want_running) in desired {
        if finished.contains(arn) {
            out.push(Decision::Resend { task_arn: arn.clone() });
        } else if running.contains(arn) {
            if !want_running {
                out.push(Decision::Stop { task_arn: arn.clone() });
            }
        } else {
            // A task to start, to adopt, or (desired STOPPED) to wind down and report.
            out.push(Decision::Run {
                task_arn: arn.clone(),
                adopt: found.get(arn).cloned().unwrap_or_default(),
            });
        }
    }
    for (arn, ids) in found {
        if !desired.iter().any(|(a, _)| a == arn) && !running.contains(arn) {
            out.push(Decision::RemoveStray { task_arn: arn.clone(), containers: ids.clone() });
        }
    }
    out
}

/// Settings of an agent.
#[derive(Clone)]
pub struct AgentConfig {
    /// The node name: the container instance ARN, or `fargate:ID`.
    pub node: String,
    /// Pull an image only when it is missing (`prefer-cached`), or always.
    pub pull_always: bool,
    /// Where task logs are kept after their containers are removed.
    pub logs_dir: Option<PathBuf>,
    /// How often health is sampled.
    pub health_interval: Duration,
    /// The base of the task metadata endpoint, if the agent serves one.
    pub metadata_base: Option<String>,
    /// The task credentials endpoint, if the agent serves one (on the metadata endpoint's port).
    pub credentials: Option<CredentialsConfig>,
}

/// Where the agent serves task credentials.
#[derive(Clone)]
pub struct CredentialsConfig {
    /// The port of the endpoint's listener (every interface).
    pub port: u16,
    /// How 169.254.170.2:80 inside a task reaches that port.
    pub redirect: Arc<dyn crate::credentials::Redirect>,
}

/// ECS's ephemeral range for dynamic host ports in bridge mode.
pub const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 49153..=65535;

/// Hands out dynamic host ports from [`EPHEMERAL_PORTS`]: a port is free when this agent has
/// not handed it out and nothing on the host is bound to it. Ports go back when their task ends.
#[derive(Default)]
pub struct PortAllocator {
    used: Mutex<HashSet<(u16, bool)>>,
    next: Mutex<u16>,
}

impl PortAllocator {
    /// A free port for the protocol (`udp`: true).
    pub fn take(&self, udp: bool) -> Option<u16> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let span = (EPHEMERAL_PORTS.end() - EPHEMERAL_PORTS.start()) as u32 + 1;
        for _ in 0..span {
            if *next < *EPHEMERAL_PORTS.start() {
                *next = *EPHEMERAL_PORTS.start();
            }
            let p = *next;
            *next = if p == *EPHEMERAL_PORTS.end() { *EPHEMERAL_PORTS.start() } else { p + 1 };
            if used.contains(&(p, udp)) {
                continue;
            }
            let free = if udp {
                std::net::UdpSocket::bind(("0.0.0.0", p)).is_ok()
            } else {
                std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()
            };
            if free {
                used.insert((p, udp));
                return Some(p);
            }
        }
        None
    }

    pub fn give_back(&self, port: u16, udp: bool) {
        self.used.lock().unwrap_or_else(|e| e.into_inner()).remove(&(port, udp));
    }
}

struct RunnerHandle {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::AbortHandle>,
}

/// The agent.
pub struct Agent<R: Runtime, C: ControlClient> {
    runtime: Arc<R>,
    client: Arc<C>,
    clock: Arc<dyn Clock>,
    config: AgentConfig,
    runners: Mutex<HashMap<String, RunnerHandle>>,
    ports: PortAllocator,
    /// The node's assignments as the polls handed them out, by task ID: each poll's delta is
    /// merged in, and the revisions held go back in the next poll.
    assigned: Mutex<BTreeMap<String, Arc<Assignment>>>,
    /// Final reports of tasks this agent stopped, until the server stops assigning them.
    finished: Mutex<HashMap<String, Finished>>,
    /// When the engine was last asked for this node's containers. Listing is needed to adopt
    /// containers after a restart and to find strays; it is done on the first pass and then
    /// at most every [`LIST_INTERVAL`], not on every assignment change (it costs an inspect per
    /// container).
    last_list: Mutex<Option<tokio::time::Instant>>,
    /// What the metadata endpoint serves, per task ID.
    meta: Mutex<HashMap<String, TaskMeta>>,
    /// What the task credentials endpoint serves, per credentials ID.
    creds: crate::credentials::Store,
    /// How this agent updates itself (a `gantry agent` process); without one, an update
    /// announced to it FAILS.
    updater: std::sync::OnceLock<crate::update::Updater>,
    /// Whether an update is under way (a poll announces it until the agent reported STAGING).
    updating: std::sync::atomic::AtomicBool,
    /// Ready awsvpc namespace holders (none unless [`Agent::set_holder_pool`] asks for some).
    holders: crate::holders::HolderPool,
}

/// A task's final report, and whether the server acknowledged it (if not, every reconcile pass
/// sends it again).
struct Finished {
    report: SubmitTaskStateChangeRequest,
    acked: bool,
}

/// The ID (last part of the ARN) of an assignment's task.
fn task_id(a: &Assignment) -> String {
    a.task.task_arn.as_deref().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string()
}

/// How often a reconcile pass re-lists the node's containers to find strays.
pub const LIST_INTERVAL: Duration = Duration::from_secs(30);

fn now_s(clock: &dyn Clock) -> f64 {
    clock.now().as_epoch_seconds()
}

/// The metadata endpoint reads the agent's record of its tasks.
impl<R: Runtime, C: ControlClient> metadata::Source for Agent<R, C> {
    type Runtime = R;
    fn task_meta(&self, task_id: &str) -> Option<TaskMeta> {
        Agent::task_meta(self, task_id)
    }
    fn runtime(&self) -> &Arc<R> {
        &self.runtime
    }
    async fn task_credentials(&self, id: &str, peer: std::net::IpAddr) -> Option<TaskCredentials> {
        Agent::task_credentials(self, id, peer).await
    }
    async fn forward(&self, req: crate::client::Forwarded) -> Option<crate::client::Forwarded> {
        self.client
            .forward(req)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "a task's AWS request could not be passed on"))
            .ok()
    }
}

impl<R: Runtime, C: ControlClient> Agent<R, C> {
    pub fn new(runtime: Arc<R>, client: Arc<C>, clock: Arc<dyn Clock>, config: AgentConfig) -> Arc<Self> {
        Arc::new(Agent {
            runtime,
            client,
            clock,
            config,
            runners: Mutex::default(),
            ports: PortAllocator::default(),
            assigned: Mutex::default(),
            finished: Mutex::default(),
            last_list: Mutex::default(),
            meta: Mutex::default(),
            creds: crate::credentials::Store::default(),
            updater: std::sync::OnceLock::new(),
            updating: std::sync::atomic::AtomicBool::new(false),
            holders: crate::holders::HolderPool::default(),
        })
    }

    /// Keeps `n` awsvpc namespace holders ready (made by [`Agent::keep_holders`], which
    /// [`Agent::run`] runs), so that an awsvpc task need not make its own before it starts.
    pub fn set_holder_pool(&self, n: usize) {
        self.holders.set_size(n);
    }

    /// The engine IDs of the ready holders not given to a task.
    pub fn free_holders(&self) -> Vec<String> {
        self.holders.free()
    }

    /// Removes the ready holders not given to a task, and makes no more (the node goes away:
    /// `gantry up` shutting down). Tasks keep theirs.
    pub async fn release_holders(&self) {
        self.holders.release(&*self.runtime).await;
    }

    /// Takes back the ready holders an earlier agent on this node left (or removes them), then
    /// keeps the pool full until the process ends: a refill after each hand-over.
    pub async fn keep_holders(self: Arc<Self>) {
        self.restore_holders().await;
        loop {
            self.fill_holders().await;
            self.holders.wanted().await;
        }
    }

    /// Takes back (up to the pool's size) or removes the free holders found on the engine;
    /// holders already given to a task are the reconcile pass's.
    pub async fn restore_holders(&self) {
        match self.runtime.list(labels::HOLDER_POOL, &self.config.node).await {
            Ok(found) => self.holders.adopt(&*self.runtime, found).await,
            Err(e) => tracing::warn!(error = %e, "cannot list the ready namespace holders"),
        }
    }

    /// Makes ready holders until the pool is full.
    pub async fn fill_holders(&self) {
        if self.holders.size() == 0 || self.prepare_holders().await.is_err() {
            return;
        }
        let now = self.clock.now().0;
        let spec = |name: &str| {
            let mut l = BTreeMap::new();
            l.insert(labels::HOLDER_POOL.to_string(), self.config.node.clone());
            // Task credentials are routed by MAC address: unique per holder made, whatever
            // name it is later given.
            let mac = self
                .config
                .credentials
                .as_ref()
                .map(|_| crate::credentials::mac_address(&format!("{}@{now}", self.config.node), name));
            if let Some(m) = &mac {
                l.insert(labels::HOLDER_MAC.to_string(), m.clone());
            }
            self.holder_spec(name, l, mac)
        };
        self.holders.fill(&*self.runtime, &self.config.node, spec).await;
    }

    /// The task network and the holder's image, made when missing.
    async fn prepare_holders(&self) -> Result<(), String> {
        let rt = &self.runtime;
        let fail = |e: RuntimeError| format!("CannotCreateContainerError: task network: {e}");
        rt.ensure_network(AWSVPC_NETWORK).await.map_err(fail)?;
        if !rt.image_present(PAUSE_IMAGE).await.unwrap_or(false) {
            let rootfs = pause_rootfs().ok_or_else(|| {
                format!("CannotCreateContainerError: awsvpc is not supported on {}", std::env::consts::ARCH)
            })?;
            rt.import_image(PAUSE_IMAGE, rootfs).await.map_err(fail)?;
        }
        Ok(())
    }

    /// An awsvpc namespace holder named `name`, with the node's labels besides `l`.
    fn holder_spec(
        &self,
        name: &str,
        mut l: BTreeMap<String, String>,
        mac: Option<String>,
    ) -> crate::runtime::ContainerSpec {
        l.insert(labels::NODE.into(), self.config.node.clone());
        l.insert(labels::CONTAINER_NAME.into(), PAUSE_NAME.into());
        crate::runtime::ContainerSpec {
            name: name.to_string(),
            image: PAUSE_IMAGE.into(),
            labels: l,
            entrypoint: Some(vec!["/pause".into()]),
            network: Network::Named(AWSVPC_NETWORK.into()),
            extra_hosts: if self.config.metadata_base.is_some() {
                vec![format!("{}:host-gateway", crate::spec::METADATA_HOST)]
            } else {
                vec![]
            },
            stop_timeout: Some(Duration::ZERO),
            // The task's containers share the holder's namespace, so its interface is theirs.
            mac_address: mac,
            ..Default::default()
        }
    }

    /// Lets the agent update itself when UpdateContainerAgent asks. Set once.
    pub fn set_updater(&self, updater: crate::update::Updater) {
        let _ = self.updater.set(updater);
    }

    /// Polls and reconciles until the process ends. Transport errors back off and retry.
    pub async fn run(self: Arc<Self>) {
        tokio::spawn(self.clone().keep_holders());
        let mut version = 0;
        let mut backoff = Duration::from_millis(200);
        loop {
            let req = PollRequest { node: self.config.node.clone(), version, known: Some(self.known()) };
            match self.client.poll(&req).await {
                Ok(mut a) => {
                    backoff = Duration::from_millis(200);
                    version = a.version;
                    for req in std::mem::take(&mut a.exec) {
                        tokio::spawn(self.clone().exec(req));
                    }
                    if let Some(u) = a.update.take()
                        && !self.updating.swap(true, std::sync::atomic::Ordering::SeqCst)
                    {
                        tokio::spawn(self.clone().update(u));
                    }
                    if let Err(e) = self.apply(a).await {
                        tracing::warn!(error = %e, "reconcile failed; retrying on the next poll");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "poll failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    pub fn runtime(&self) -> &Arc<R> {
        &self.runtime
    }

    /// Takes an announced update up: reports STAGING, downloads the server's binary, checks it
    /// against the announced digest, reports STAGED and UPDATING and re-executes itself. When
    /// any step fails it reports FAILED (with why) and goes on running as it is.
    pub async fn update(self: Arc<Self>, update: gantry_core::protocol::AgentUpdate) {
        if let Err(why) = self.try_update(&update).await {
            tracing::warn!(reason = %why, "the agent update failed; running on as it is");
            let _ = self.report_update("FAILED", Some(why)).await;
        }
        self.updating.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    async fn report_update(&self, status: &str, reason: Option<String>) -> Result<(), String> {
        let req = gantry_core::protocol::AgentUpdateReport {
            node: self.config.node.clone(),
            status: status.to_string(),
            reason,
        };
        self.client.report_update(&req).await.map_err(|e| format!("cannot report {status}: {e}"))
    }

    async fn try_update(&self, update: &gantry_core::protocol::AgentUpdate) -> Result<(), String> {
        let Some(up) = self.updater.get().cloned() else {
            return Err("this agent cannot update itself (it is not a `gantry agent` process)".into());
        };
        self.report_update("STAGING", None).await?;
        tracing::info!(sha256 = %update.sha256, size = update.size, "downloading the agent update");
        let partial = up.partial();
        let sink = crate::update::Sink::create(&partial)
            .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
        let got = self.client.download_agent(sink).await.map_err(|e| format!("the download failed: {e}"));
        let (sha256, size) = got.inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })?;
        if sha256 != update.sha256 {
            let _ = std::fs::remove_file(&partial);
            return Err(format!(
                "the downloaded binary's SHA-256 is {sha256} ({size} bytes), not the announced {} ({} bytes)",
                update.sha256, update.size
            ));
        }
        let staged = up.staged();
        crate::update::install(&partial, &staged)
            .map_err(|e| format!("cannot install {}: {e}", staged.display()))?;
        self.report_update("STAGED", None).await?;
        self.report_update("UPDATING", None).await?;
        tracing::info!(binary = %staged.display(), "re-executing as the updated agent");
        let reexec = up.reexec.clone();
        let e = tokio::task::spawn_blocking(move || reexec.reexec(&staged))
            .await
            .map_err(|e| format!("cannot execute the updated agent: {e}"))?;
        Err(format!("cannot execute the updated agent: {e}"))
    }

    /// Joins an exec session the server opened on one of this node's tasks and runs it.
    pub async fn exec(self: Arc<Self>, req: gantry_core::protocol::ExecRequest) {
        match self.client.exec_stream(&req.session_id, &self.config.node, req.server_url.as_deref()).await {
            Ok(io) => crate::exec::serve(&*self.runtime, &req, io).await,
            Err(e) => tracing::warn!(session = %req.session_id, error = %e, "cannot join an exec session"),
        }
    }

    /// The metadata of every task this agent runs (what the stats sampler reads).
    pub fn tasks_meta(&self) -> Vec<TaskMeta> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    pub fn client(&self) -> &Arc<C> {
        &self.client
    }

    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// The credentials of `id` for a caller at `peer`: only one of the task's own addresses
    /// (looked up again when an address is not yet known: a container that asks right after
    /// it started), or anyone for a host-network task.
    pub async fn task_credentials(&self, id: &str, peer: std::net::IpAddr) -> Option<TaskCredentials> {
        let entry = self.creds.get(id)?;
        if crate::credentials::allowed(&entry, peer).is_none() {
            let mut found = Vec::new();
            for engine_id in &entry.engine_ids {
                if let Ok(Some(st)) = self.runtime.inspect(engine_id).await
                    && let Some(ip) = st.ip_address.and_then(|ip| ip.parse().ok())
                {
                    found.push(ip);
                }
            }
            if !found.contains(&peer) {
                tracing::info!(task = %entry.task_arn, %peer, "task credentials refused to another address");
                return None;
            }
            self.creds.update(id, |e| e.addresses = found);
        }
        entry.credentials
    }

    /// Renews the task credentials that are due (at half their life), until the process ends:
    /// it wakes when the soonest renewal is due, when credentials are added or renewed, and at
    /// least every `every` (to retry one that failed, no more often than once a second).
    pub async fn renew_credentials(self: Arc<Self>, every: Duration) {
        let floor = Duration::from_secs(1).min(every);
        loop {
            let now_ms = self.clock.now().0;
            let wait = self.creds.next_refresh().map_or(every, |at| {
                let ms = u64::try_from(at.saturating_mul(1000).saturating_sub(now_ms)).unwrap_or(0);
                Duration::from_millis(ms).min(every).max(floor)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.creds.changed() => continue,
            }
            let now = self.clock.now().0.div_euclid(1000);
            for (id, task_arn) in self.creds.due(now) {
                self.fetch_credentials(&id, &task_arn).await;
            }
        }
    }

    /// Asks the control plane for a task's role credentials and keeps them under `id`.
    async fn fetch_credentials(&self, id: &str, task_arn: &str) {
        let req = TaskCredentialsRequest { node: self.config.node.clone(), task_arn: task_arn.to_string() };
        match self.client.task_credentials(&req).await {
            Ok(c) => {
                let now = self.clock.now().0.div_euclid(1000);
                let at = crate::credentials::refresh_at(now, c.expiration);
                self.creds.set_credentials(id, c, at);
            }
            Err(e) => tracing::warn!(task = %task_arn, error = %e, "task role credentials not available"),
        }
    }

    /// The metadata of a task this agent runs, by task ID.
    pub fn task_meta(&self, task_id: &str) -> Option<TaskMeta> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner()).get(task_id).cloned()
    }

    /// Ends every runner without touching the containers, as the agent process dying would.
    pub fn abandon(&self) {
        for (_, h) in self.runners.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            if let Some(t) = h.task {
                t.abort();
            }
        }
    }

    /// Tasks with a live runner.
    pub fn running(&self) -> HashSet<String> {
        self.runners.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }

    /// The assignments this agent holds: task ID → revision (what its next poll says it has).
    pub fn known(&self) -> BTreeMap<String, i64> {
        let held = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
        held.iter().map(|(id, a)| (id.clone(), a.revision)).collect()
    }

    /// One reconcile pass over the node's whole assignment set, which replaces what the agent
    /// holds.
    pub async fn reconcile(self: &Arc<Self>, assignments: Vec<Assignment>) -> Result<(), RuntimeError> {
        self.apply(Assignments { tasks: assignments, ..Default::default() }).await
    }

    /// Merges a poll's answer into the assignments the agent holds, then reconciles. A whole set
    /// replaces them and every task is looked at; a delta adds or replaces the tasks it carries
    /// and drops the removed ones, and only the tasks it carries are looked at (with every task
    /// on the passes that list the node's containers, at most every [`LIST_INTERVAL`]).
    pub async fn apply(self: &Arc<Self>, answer: Assignments) -> Result<(), RuntimeError> {
        let changed: Vec<String> = {
            let mut held = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
            if !answer.delta {
                held.clear();
            }
            for id in &answer.removed {
                held.remove(id);
            }
            answer
                .tasks
                .into_iter()
                .map(|a| {
                    let id = task_id(&a);
                    held.insert(id.clone(), Arc::new(a));
                    id
                })
                .collect()
        };
        self.pass(&changed, !answer.delta).await
    }

    /// One reconcile pass over the tasks in `changed` (task IDs), or over every assigned task.
    async fn pass(self: &Arc<Self>, changed: &[String], all: bool) -> Result<(), RuntimeError> {
        self.kill_unassigned().await;
        let due = {
            let mut last = self.last_list.lock().unwrap_or_else(|e| e.into_inner());
            let now = tokio::time::Instant::now();
            let due = last.is_none_or(|t| now.duration_since(t) >= LIST_INTERVAL);
            if due {
                *last = Some(now);
            }
            due
        };
        let containers =
            if due { self.runtime.list(labels::NODE, &self.config.node).await? } else { Vec::new() };
        let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stray_holders = Vec::new();
        for c in &containers {
            if let Some(arn) = c.labels.get(labels::TASK_ARN) {
                found.entry(arn.clone()).or_default().push(c.id.clone());
            } else if c.labels.contains_key(labels::HOLDER_POOL)
                && let Some(task_id) = crate::holders::task_of_holder_name(&c.name)
            {
                // A ready holder given to a task: the task's, as if labelled so.
                let arn = self
                    .assigned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(task_id)
                    .and_then(|a| a.task.task_arn.clone());
                let runs = self
                    .runners
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .keys()
                    .any(|a| a.rsplit('/').next() == Some(task_id));
                match arn {
                    Some(arn) => found.entry(arn).or_default().push(c.id.clone()),
                    None if !runs => stray_holders.push(c.id.clone()),
                    None => {}
                }
            }
        }
        for id in stray_holders {
            tracing::info!(holder = %id, "removing the namespace holder of a task no longer assigned here");
            let _ = self.runtime.remove(&id).await;
        }
        // The tasks to look at, by ARN. Strays are containers of tasks not among them, so a
        // pass that found containers looks at every task.
        let (look, finished) = {
            let held = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
            let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
            // Forget final reports the server has taken (the task is no longer assigned).
            f.retain(|arn, _| held.contains_key(arn.rsplit('/').next().unwrap_or_default()));
            let mut look: BTreeMap<String, Arc<Assignment>> = BTreeMap::new();
            let ids: Box<dyn Iterator<Item = &String>> =
                if all || due { Box::new(held.keys()) } else { Box::new(changed.iter()) };
            // Final reports the server did not acknowledge go again.
            let unacked = f.iter().filter(|(_, x)| !x.acked).filter_map(|(arn, _)| arn.rsplit('/').next());
            for id in ids.map(String::as_str).chain(unacked) {
                if let Some(a) = held.get(id) {
                    look.insert(a.task.task_arn.clone().unwrap_or_default(), a.clone());
                }
            }
            (look, f.keys().cloned().collect::<HashSet<String>>())
        };
        let desired: Vec<(String, bool)> =
            look.iter().map(|(arn, a)| (arn.clone(), wants_running(&a.task))).collect();
        // What `decide` asks about: the tasks looked at and those with containers found.
        let running: HashSet<String> = {
            let runners = self.runners.lock().unwrap_or_else(|e| e.into_inner());
            look.keys().chain(found.keys()).filter(|arn| runners.contains_key(*arn)).cloned().collect()
        };
        for d in decide(&desired, &running, &finished, &found) {
            match d {
                Decision::Run { task_arn, adopt } => {
                    let Some(a) = look.get(&task_arn).cloned() else {
                        continue;
                    };
                    let adopted: Vec<ContainerState> =
                        containers.iter().filter(|c| adopt.contains(&c.id)).cloned().collect();
                    let (tx, rx) = watch::channel(!wants_running(&a.task));
                    let mut runners = self.runners.lock().unwrap_or_else(|e| e.into_inner());
                    let me = self.clone();
                    let arn = task_arn.clone();
                    let handle = tokio::spawn(async move {
                        let report = Runner::new(&me, &a, rx).run(adopted).await;
                        me.finish(&arn, report).await;
                    });
                    runners.insert(task_arn, RunnerHandle { stop: tx, task: Some(handle.abort_handle()) });
                }
                Decision::Stop { task_arn } => {
                    if let Some(h) = self.runners.lock().unwrap_or_else(|e| e.into_inner()).get(&task_arn) {
                        let _ = h.stop.send(true);
                    }
                }
                Decision::Resend { task_arn } => {
                    let report = self
                        .finished
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&task_arn)
                        .map(|f| f.report.clone());
                    if let Some(r) = report {
                        self.send_final(&task_arn, &r).await;
                    }
                }
                Decision::RemoveStray { task_arn, containers: ids } => {
                    tracing::info!(task = %task_arn, "removing containers of a task no longer assigned here");
                    for id in ids {
                        let _ = self.runtime.stop(&id, Duration::from_secs(10)).await;
                        self.keep_logs(&task_arn, &id).await;
                        let _ = self.runtime.remove(&id).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// A task whose runner still runs but that the server no longer assigns here (it stopped it
    /// itself: a Fargate Spot task's capacity reclaimed at the end of its warning, or its node
    /// lost): its containers are killed now, not after their stopTimeout, and the runner then
    /// finishes as for any exit (ports given back, containers removed, logs kept).
    async fn kill_unassigned(&self) {
        let orphans: Vec<String> = {
            let held: HashSet<String> =
                self.assigned.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
            let runners = self.runners.lock().unwrap_or_else(|e| e.into_inner());
            runners
                .keys()
                .filter(|arn| !held.contains(arn.rsplit('/').next().unwrap_or_default()))
                .cloned()
                .collect()
        };
        for arn in orphans {
            let Ok(containers) = self.runtime.list(labels::TASK_ARN, &arn).await else { continue };
            let running: Vec<_> =
                containers.iter().filter(|c| c.status == ContainerStatus::Running).collect();
            if !running.is_empty() {
                tracing::info!(task = %arn, "killing the containers of a task no longer assigned here");
            }
            for c in running {
                let _ = self.runtime.stop(&c.id, Duration::ZERO).await;
            }
        }
    }

    /// Sends a task's final report, and notes whether the server took it.
    async fn send_final(&self, task_arn: &str, report: &SubmitTaskStateChangeRequest) {
        match self.client.submit_task(report).await {
            Ok(()) => {
                if let Some(f) = self.finished.lock().unwrap_or_else(|e| e.into_inner()).get_mut(task_arn) {
                    f.acked = true;
                }
            }
            Err(e) => {
                tracing::warn!(task = %task_arn, error = %e, "could not report the stopped task; will resend")
            }
        }
    }

    async fn finish(&self, task_arn: &str, report: SubmitTaskStateChangeRequest) {
        let f = Finished { report: report.clone(), acked: false };
        self.finished.lock().unwrap_or_else(|e| e.into_inner()).insert(task_arn.to_string(), f);
        self.runners.lock().unwrap_or_else(|e| e.into_inner()).remove(task_arn);
        self.send_final(task_arn, &report).await;
    }

    async fn keep_logs(&self, task_arn: &str, container_id: &str) {
        let Some(dir) = &self.config.logs_dir else { return };
        let Ok(Some(state)) = self.runtime.inspect(container_id).await else { return };
        let name = state.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or(state.name.clone());
        let task_id = task_arn.rsplit('/').next().unwrap_or_default();
        if let Ok(bytes) = self.runtime.logs(container_id).await {
            let d = dir.join(task_id);
            if std::fs::create_dir_all(&d).is_ok() {
                let _ = std::fs::write(d.join(format!("{name}.log")), bytes);
            }
        }
    }
}

/// One task's lifecycle on this node.
struct Runner<'a, R: Runtime, C: ControlClient> {
    agent: &'a Agent<R, C>,
    a: &'a Arc<Assignment>,
    stop: watch::Receiver<bool>,
    /// Dynamic host ports this task holds.
    dynamic: Vec<(u16, bool)>,
    /// The awsvpc namespace holder, if the task has one.
    pause: Option<String>,
    /// The PENDING report, until a task (spawned) picks it up to send it.
    pending: Option<Arc<Mutex<Option<SubmitTaskStateChangeRequest>>>>,
    /// When the image step began and ended; every later report carries them.
    pull_started_at: Option<f64>,
    pull_stopped_at: Option<f64>,
    /// The task's resolved `secrets`, by container: environment variables set at create time,
    /// held in memory only.
    secret_env: BTreeMap<String, Vec<(String, gantry_core::Secret)>>,
    /// The private registry credentials of containers with `repositoryCredentials`, by
    /// container, held in memory only.
    registry_auth: BTreeMap<String, gantry_core::protocol::RegistryAuth>,
    /// The awslogs shippers of the task's containers.
    shippers: Vec<tokio::task::JoinHandle<()>>,
    /// The task's credentials ID, if it has a role and the agent serves credentials.
    creds_id: Option<String>,
}

/// A container of the task as the runner tracks it.
#[derive(Debug, Clone, Default)]
struct Tracked {
    id: Option<String>,
    started: bool,
    exit_code: Option<i64>,
    reason: Option<String>,
    health: Option<String>,
    bindings: Vec<NetworkBinding>,
}

impl<'a, R: Runtime, C: ControlClient> Runner<'a, R, C> {
    fn new(agent: &'a Agent<R, C>, a: &'a Arc<Assignment>, stop: watch::Receiver<bool>) -> Self {
        Runner {
            agent,
            a,
            stop,
            dynamic: Vec::new(),
            pause: None,
            pending: None,
            pull_started_at: None,
            pull_stopped_at: None,
            secret_env: BTreeMap::new(),
            registry_auth: BTreeMap::new(),
            shippers: Vec::new(),
            creds_id: None,
        }
    }

    /// The role the task runs as: its override, else its definition's.
    fn task_role(&self) -> Option<&str> {
        self.a
            .task
            .overrides
            .as_ref()
            .and_then(|o| o.task_role_arn.as_deref())
            .or(self.a.task_definition.task_role_arn.as_deref())
            .filter(|r| !r.is_empty())
    }

    /// Gives a task with a role its credentials ID and asks for its credentials. A role that
    /// cannot be assumed does not stop the task (as in ECS): the endpoint answers that it has no
    /// credentials, and renewal keeps asking.
    async fn begin_credentials(&mut self) {
        if self.agent.config.credentials.is_none() || self.task_role().is_none() {
            return;
        }
        let id = crate::credentials::new_id(&gantry_core::OsSecrets);
        let host = self.a.task_definition.network_mode.as_deref() == Some("host");
        self.agent.creds.insert(
            &id,
            crate::credentials::Entry {
                task_arn: self.task_arn(),
                engine_ids: Vec::new(),
                addresses: Vec::new(),
                host_network: host,
                credentials: None,
                refresh_at: 0,
            },
        );
        self.agent.fetch_credentials(&id, &self.task_arn()).await;
        self.creds_id = Some(id);
    }

    /// After a restart: serves the credentials of an adopted task again, at the path its
    /// containers were given (their label), to the containers found.
    async fn resume_credentials(&mut self, adopted: &[ContainerState]) {
        if self.agent.config.credentials.is_none() || self.task_role().is_none() {
            return;
        }
        let Some(id) =
            adopted.iter().find_map(|c| c.labels.get(crate::runtime::labels::CREDENTIALS_ID).cloned())
        else {
            return;
        };
        let host = self.a.task_definition.network_mode.as_deref() == Some("host");
        self.agent.creds.insert(
            &id,
            crate::credentials::Entry {
                task_arn: self.task_arn(),
                engine_ids: adopted.iter().map(|c| c.id.clone()).collect(),
                addresses: Vec::new(),
                host_network: host,
                credentials: None,
                refresh_at: 0,
            },
        );
        self.agent.fetch_credentials(&id, &self.task_arn()).await;
        self.creds_id = Some(id);
    }

    /// The environment that points a container's SDKs at the task's credentials.
    fn credentials_env(&self) -> Option<(String, String)> {
        let id = self.creds_id.as_ref()?;
        let port = self.agent.config.credentials.as_ref()?.port;
        let path = format!("{}{id}", crate::credentials::PATH_PREFIX);
        Some(if self.a.task_definition.network_mode.as_deref() == Some("host") {
            // A host-network container cannot have 169.254.170.2 to itself; SDKs accept a full
            // URI on the loopback address.
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI".into(), format!("http://127.0.0.1:{port}{path}"))
        } else {
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI".into(), path)
        })
    }

    /// `AWS_ENDPOINT_URL` for a container (a Gantry extension): the front door as the task
    /// reaches it, through the agent's endpoint (169.254.170.2, or the loopback port in host
    /// mode). Not when the definition sets its own, or opts out with the docker label
    /// `gantry.endpoint-url=false`.
    fn endpoint_url_env(&self, def: &ContainerDefinition) -> Option<(String, String)> {
        let port = self.agent.config.credentials.as_ref()?.port;
        let own = def.environment.iter().flatten().any(|kv| kv.name.as_deref() == Some("AWS_ENDPOINT_URL"));
        let opted_out = def
            .docker_labels
            .as_ref()
            .and_then(|l| l.get(ENDPOINT_URL_LABEL))
            .is_some_and(|v| v.eq_ignore_ascii_case("false"));
        if own || opted_out {
            return None;
        }
        let url = match self.a.task_definition.network_mode.as_deref() {
            Some("host") => format!("http://127.0.0.1:{port}"),
            Some("none") => return None,
            _ => format!("http://{}", crate::credentials::ENDPOINT_IP),
        };
        Some(("AWS_ENDPOINT_URL".into(), url))
    }

    /// The MAC address a container of the task (by name) gets on its bridge, when the agent
    /// routes 169.254.170.2 for the task (bridge and awsvpc).
    fn mac_for(&self, name: &str) -> Option<String> {
        self.agent.config.credentials.as_ref()?;
        matches!(self.a.task_definition.network_mode.as_deref(), None | Some("bridge" | "awsvpc"))
            .then(|| crate::credentials::mac_address(&self.task_arn(), name))
    }

    /// Routes 169.254.170.2:80 from one of the task's containers (created with the MAC address
    /// `mac`, not started yet) to the agent's endpoint, and lets that container's address read
    /// the task's credentials, if it has any.
    async fn route_credentials(&self, engine_id: &str, mac: Option<String>) {
        let (Some(cfg), Some(mac)) = (&self.agent.config.credentials, mac) else { return };
        if let Some(id) = &self.creds_id {
            self.agent.creds.update(id, |e| e.engine_ids.push(engine_id.to_string()));
        }
        let (redirect, port, tag) =
            (cfg.redirect.clone(), cfg.port, crate::credentials::tag(&self.task_arn()));
        let done = tokio::task::spawn_blocking(move || redirect.add(&mac, port, &tag)).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(task = %self.task_arn(), error = %e, "169.254.170.2 cannot be routed to the credentials endpoint");
        }
    }

    /// Withdraws the task's credentials and its routes.
    async fn end_credentials(&mut self) {
        if let Some(id) = self.creds_id.take() {
            self.agent.creds.remove(&id);
        }
        if let Some(cfg) = &self.agent.config.credentials {
            let (redirect, tag) = (cfg.redirect.clone(), crate::credentials::tag(&self.task_arn()));
            let _ = tokio::task::spawn_blocking(move || redirect.remove(&tag)).await;
        }
    }

    /// Fetches the task's secrets if its definition has any (`secrets`, a log configuration's
    /// `secretOptions`, `repositoryCredentials`). Returns ECS's stop reason when they cannot
    /// be had: the task then never starts.
    async fn fetch_secrets(&mut self) -> Option<String> {
        let wants = self.defs().iter().any(|d| {
            d.secrets.as_ref().is_some_and(|s| !s.is_empty())
                || d.log_configuration
                    .as_ref()
                    .and_then(|l| l.secret_options.as_ref())
                    .is_some_and(|s| !s.is_empty())
                || d.repository_credentials.is_some()
        });
        if !wants {
            return None;
        }
        const PREFIX: &str = "ResourceInitializationError: unable to pull secrets or registry auth";
        let req = gantry_core::protocol::SecretsRequest {
            node: self.agent.config.node.clone(),
            task_arn: self.task_arn(),
        };
        match self.agent.client.task_secrets(&req).await {
            Ok(r) => match r.error {
                Some(why) => Some(format!("{PREFIX}: {why}")),
                None => {
                    self.registry_auth = r.registry_auth;
                    self.secret_env = r
                        .environment
                        .into_iter()
                        .map(|(c, v)| (c, v.into_iter().map(|s| (s.name, s.value)).collect()))
                        .collect();
                    None
                }
            },
            Err(e) => Some(format!("{PREFIX}: execution resource retrieval failed: {e}")),
        }
    }

    fn task_arn(&self) -> String {
        self.a.task.task_arn.clone().unwrap_or_default()
    }

    /// The awslogs options of a container, if it logs through awslogs.
    fn awslogs(&self, name: &str, container_id: &str) -> Option<Result<awslogs::Options, String>> {
        let def = self.defs().iter().find(|d| d.name.as_deref() == Some(name))?;
        let lc = def.log_configuration.as_ref().filter(|l| l.log_driver == "awslogs")?;
        let task_id = self.task_arn().rsplit('/').next().unwrap_or_default().to_string();
        Some(awslogs::Options::parse(&lc.options.clone().unwrap_or_default(), name, &task_id, container_id))
    }

    /// The region a container's logs go to: `awslogs-region`, else the task's.
    fn log_region(&self, o: &awslogs::Options) -> String {
        o.region.clone().unwrap_or_else(|| self.task_arn().split(':').nth(3).unwrap_or_default().to_string())
    }

    /// Creates the log groups and streams of the task's awslogs containers (created, not yet
    /// started). Returns why the task cannot start, if it cannot.
    async fn prepare_logs(&mut self, tracked: &mut BTreeMap<String, Tracked>) -> Option<String> {
        let names: Vec<(String, String)> =
            tracked.iter().filter_map(|(n, t)| Some((n.clone(), t.id.clone()?))).collect();
        for (name, id) in names {
            // FireLens and Splunk are not served here: such a container fails to start the way
            // a Docker host without that logging driver fails it (EC2 instances never get
            // these tasks: they lack the drivers' capability attributes).
            let driver = self
                .defs()
                .iter()
                .find(|d| d.name.as_deref() == Some(name.as_str()))
                .and_then(|d| d.log_configuration.as_ref())
                .map(|l| l.log_driver.clone());
            if let Some(d @ ("splunk" | "awsfirelens")) = driver.as_deref() {
                let msg = awslogs::start_error(&format!("logging driver {d} is not supported by Gantry"));
                tracked.entry(name).or_default().reason = Some(msg.clone());
                return Some(msg);
            }
            let Some(opts) = self.awslogs(&name, &id) else { continue };
            let result = match opts {
                Err(e) => Err(awslogs::start_error(&e)),
                Ok(o) => awslogs::prepare(&*self.agent.client, &self.log_region(&o), &o).await,
            };
            if let Err(msg) = result {
                tracked.entry(name).or_default().reason = Some(msg.clone());
                return Some(msg);
            }
        }
        None
    }

    /// Starts shipping a started container's output, if it logs through awslogs.
    fn ship_logs(&mut self, name: &str, id: &str) {
        let Some(Ok(opts)) = self.awslogs(name, id) else { return };
        let region = self.log_region(&opts);
        let position = self.agent.config.logs_dir.as_ref().map(|d| awslogs::position_path(d, id));
        let (rt, client) = (self.agent.runtime.clone(), self.agent.client.clone());
        self.shippers.push(tokio::spawn(awslogs::ship(rt, client, id.to_string(), region, opts, position)));
    }

    fn defs(&self) -> &[ContainerDefinition] {
        self.a.task_definition.container_definitions.as_deref().unwrap_or_default()
    }

    fn essential(&self, name: &str) -> bool {
        self.defs()
            .iter()
            .find(|d| d.name.as_deref() == Some(name))
            .is_some_and(|d| d.essential.unwrap_or(true))
    }

    fn base_report(&self, status: &str) -> SubmitTaskStateChangeRequest {
        SubmitTaskStateChangeRequest {
            cluster: self.a.task.cluster_arn.clone(),
            task: self.a.task.task_arn.clone(),
            status: Some(status.to_string()),
            pull_started_at: self.pull_started_at,
            pull_stopped_at: self.pull_stopped_at,
            ..Default::default()
        }
    }

    fn container_changes(
        &self,
        tracked: &BTreeMap<String, Tracked>,
        status: &str,
    ) -> Vec<ContainerStateChange> {
        tracked
            .iter()
            .map(|(name, t)| ContainerStateChange {
                container_name: Some(name.clone()),
                runtime_id: t.id.clone(),
                status: Some(
                    if status == "STOPPED" || t.exit_code.is_some() { "STOPPED" } else { status }.to_string(),
                ),
                exit_code: t.exit_code.map(|c| c as i32),
                reason: t.reason.clone(),
                network_bindings: Some(t.bindings.clone()),
                ..Default::default()
            })
            .collect()
    }

    async fn send(&mut self, r: &SubmitTaskStateChangeRequest) {
        self.withdraw_pending();
        if let Err(e) = self.agent.client.submit_task(r).await {
            tracing::warn!(task = %self.task_arn(), error = %e, "state report failed");
        }
    }

    fn task_id(&self) -> String {
        self.task_arn().rsplit('/').next().unwrap_or_default().to_string()
    }

    /// Publishes the task's current state to the metadata endpoint (or withdraws it).
    async fn sync_meta(&self, tracked: &BTreeMap<String, Tracked>, known: Option<&str>) {
        // Without a metadata endpoint (a simulated fleet) there is no one to publish to.
        if self.agent.config.metadata_base.is_none() {
            return;
        }
        let id = self.task_id();
        let Some(known) = known else {
            self.agent.meta.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return;
        };
        let mut containers = BTreeMap::new();
        for (name, t) in tracked {
            let mut c = ContainerMeta {
                known_status: if t.exit_code.is_some() {
                    "STOPPED".into()
                } else if t.started {
                    "RUNNING".into()
                } else {
                    "PENDING".into()
                },
                exit_code: t.exit_code,
                health: t.health.clone(),
                ..Default::default()
            };
            if let Some(docker_id) = &t.id {
                c.docker_id = docker_id.clone();
                if let Ok(Some(st)) = self.agent.runtime.inspect(docker_id).await {
                    c.docker_name = st.name.trim_start_matches('/').to_string();
                    c.started_at = st.started_at_ms.map(|ms| rfc3339(ms as f64 / 1000.0));
                    c.finished_at = st.finished_at_ms.map(|ms| rfc3339(ms as f64 / 1000.0));
                }
            }
            containers.insert(name.clone(), c);
        }
        let ipv4 = match &self.pause {
            Some(p) => self.agent.runtime.inspect(p).await.ok().flatten().and_then(|s| s.ip_address),
            None => None,
        };
        let meta = TaskMeta {
            assignment: self.a.clone(),
            known_status: known.to_string(),
            containers,
            pull_started_at: self.pull_started_at.map(rfc3339),
            pull_stopped_at: self.pull_stopped_at.map(rfc3339),
            ipv4,
        };
        self.agent.meta.lock().unwrap_or_else(|e| e.into_inner()).insert(id, meta);
    }

    /// Sends the PENDING report without waiting for it, from a task of its own. Until that task
    /// picks it up, a later report withdraws it ([`Self::withdraw_pending`]): every later report
    /// carries what PENDING says (the pull timestamps), so a task that gets going before its
    /// PENDING report leaves (on a simulated node, always) costs the server one report less.
    fn post_pending(&mut self, r: SubmitTaskStateChangeRequest) {
        let slot = Arc::new(Mutex::new(Some(r)));
        self.pending = Some(slot.clone());
        let client = self.agent.client.clone();
        tokio::spawn(async move {
            let r = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(r) = r
                && let Err(e) = client.submit_task(&r).await
            {
                tracing::warn!(error = %e, "state report failed");
            }
        });
    }

    /// Drops the PENDING report if it has not left yet.
    fn withdraw_pending(&mut self) {
        if let Some(slot) = self.pending.take() {
            slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }

    /// Sends a report without waiting for it: the server orders a task's states itself (it never
    /// moves a task backwards), so a report that lands after a later one changes nothing.
    fn send_later(&mut self, r: SubmitTaskStateChangeRequest) {
        self.withdraw_pending();
        let client = self.agent.client.clone();
        tokio::spawn(async move {
            if let Err(e) = client.submit_task(&r).await {
                tracing::warn!(error = %e, "state report failed");
            }
        });
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Runs the task to its end and returns the final (STOPPED) report.
    async fn run(mut self, adopted: Vec<ContainerState>) -> SubmitTaskStateChangeRequest {
        tracing::info!(task = %self.task_arn(), adopt = !adopted.is_empty(), "task assigned");
        let mut tracked: BTreeMap<String, Tracked> =
            self.defs().iter().filter_map(|d| d.name.clone()).map(|n| (n, Tracked::default())).collect();
        let reason = if adopted.is_empty() {
            let reason = Box::pin(self.start(&mut tracked)).await;
            // The ready holders are made again once the task started (or failed to), not while
            // it starts: their engine work would slow its own.
            if self.a.task_definition.network_mode.as_deref() == Some("awsvpc") {
                self.agent.holders.refill();
            }
            reason
        } else {
            Box::pin(self.adopt(&mut tracked, adopted)).await
        };
        let reason = match reason {
            Some(r) => r,
            None => {
                tracing::info!(task = %self.task_arn(), "task running");
                Box::pin(self.watch(&mut tracked)).await
            }
        };
        tracing::info!(task = %self.task_arn(), %reason, "stopping task");
        if tracked.values().any(|t| t.started) {
            self.send_later(self.base_report("STOPPING"));
        }
        Box::pin(self.end(tracked, reason)).await
    }

    /// Stops and removes the containers (and the task's network) and returns the final report.
    async fn end(
        mut self,
        mut tracked: BTreeMap<String, Tracked>,
        reason: String,
    ) -> SubmitTaskStateChangeRequest {
        self.wind_down(&mut tracked).await;
        // The shippers end with their containers' output; their last lines go out before the
        // containers are removed.
        for h in self.shippers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        if let Some(dir) = &self.agent.config.logs_dir {
            for t in tracked.values() {
                if let Some(id) = &t.id {
                    let _ = std::fs::remove_file(awslogs::position_path(dir, id));
                }
            }
        }
        self.sync_meta(&tracked, None).await;
        self.end_credentials().await;
        self.withdraw_pending();
        let mut report = self.base_report("STOPPED");
        report.reason = Some(reason);
        report.containers = Some(self.container_changes(&tracked, "STOPPED"));
        report.execution_stopped_at = Some(now_s(&*self.agent.clock));
        for t in tracked.values() {
            if let Some(id) = &t.id {
                self.agent.keep_logs(&self.task_arn(), id).await;
                let _ = self.agent.runtime.remove(id).await;
            }
            // Adopted tasks hold the ports they were bound to.
            for b in &t.bindings {
                if let Some(p) = b.host_port.and_then(|p| u16::try_from(p).ok()) {
                    self.dynamic.push((p, b.protocol.as_deref() == Some("udp")));
                }
            }
        }
        for (p, udp) in self.dynamic.drain(..) {
            self.agent.ports.give_back(p, udp);
        }
        // awsvpc: the task's network goes last, as ECS deprovisions the ENI after the containers.
        if let Some(id) = self.pause.take() {
            let mut deprovisioning = self.base_report("DEPROVISIONING");
            deprovisioning.containers = report.containers.clone();
            deprovisioning.execution_stopped_at = report.execution_stopped_at;
            self.send(&deprovisioning).await;
            let _ = self.agent.runtime.remove(&id).await;
            let changes = attachment_changes(self.a, "DELETED");
            if !changes.is_empty() {
                let req = SubmitAttachmentStateChangesRequest {
                    cluster: self.a.task.cluster_arn.clone(),
                    attachments: changes,
                };
                if let Err(e) = self.agent.client.submit_attachments(&req).await {
                    tracing::warn!(error = %e, "attachment report failed");
                }
            }
        }
        report
    }

    /// Pulls, creates and starts the containers. Returns why the task ended early, if it did.
    async fn start(&mut self, tracked: &mut BTreeMap<String, Tracked>) -> Option<String> {
        if self.stopped() {
            return Some("Task stopped before it started".into());
        }
        if let Some(reason) = self.fetch_secrets().await {
            return Some(reason);
        }
        self.begin_credentials().await;
        self.pull_started_at = Some(now_s(&*self.agent.clock));
        self.post_pending(self.base_report("PENDING"));
        let rt = self.agent.runtime.clone();
        let mut images: Vec<String> = self.defs().iter().filter_map(|d| d.image.clone()).collect();
        images.dedup();
        for image in &images {
            let present = rt.image_present(image).await.unwrap_or(false);
            // The credentials of a container that runs this image, if one has them.
            let auth = self
                .defs()
                .iter()
                .filter(|d| d.image.as_deref() == Some(image.as_str()))
                .find_map(|d| self.registry_auth.get(d.name.as_deref().unwrap_or_default()))
                .cloned();
            if (!present || self.agent.config.pull_always)
                && let Err(e) = rt.pull(image, auth.as_ref()).await
            {
                let msg = format!("CannotPullContainerError: {e}");
                for (name, t) in tracked.iter_mut() {
                    if self
                        .defs()
                        .iter()
                        .any(|d| d.name.as_deref() == Some(name) && d.image.as_deref() == Some(image))
                    {
                        t.reason = Some(msg.clone());
                    }
                }
                return Some(msg);
            }
            if self.stopped() {
                return Some("Task stopped before it started".into());
            }
        }
        // Reported with RUNNING (or STOPPED), as the ECS agent does.
        self.pull_stopped_at = Some(now_s(&*self.agent.clock));

        let (network, holder) = match self.a.task_definition.network_mode.as_deref() {
            Some("host") => (TaskNetwork::Mode(Network::Host), None),
            Some("none") => (TaskNetwork::Mode(Network::None), None),
            Some("awsvpc") => match self.create_pause().await {
                Ok(id) => (TaskNetwork::Shared(id.clone()), Some(id)),
                Err(msg) => return Some(msg),
            },
            _ => (TaskNetwork::Mode(Network::Bridge), None),
        };
        let metadata = self
            .agent
            .config
            .metadata_base
            .as_ref()
            .map(|b| format!("{b}/{}", self.task_arn().rsplit('/').next().unwrap_or_default()));
        // The namespace holder starts while the task's containers are created: they only need it
        // running when they start.
        let created = match holder {
            Some(id) => {
                let (agent, a) = (self.agent, self.a);
                let (started, created) = tokio::join!(
                    start_holder(agent, a, &id),
                    self.create_containers(tracked, &network, metadata.as_deref())
                );
                if let Err(msg) = started {
                    return Some(msg);
                }
                created
            }
            None => self.create_containers(tracked, &network, metadata.as_deref()).await,
        };
        if created.is_some() {
            return created;
        }
        if let Some(msg) = self.prepare_logs(tracked).await {
            return Some(msg);
        }
        // Start in dependsOn order: each container waits for its dependencies' conditions.
        let mut remaining: Vec<ContainerDefinition> = self.defs().to_vec();
        while !remaining.is_empty() {
            if self.stopped() {
                return Some(
                    self.a.task.stopped_reason.clone().unwrap_or_else(|| "Task stopped by user".into()),
                );
            }
            let mut progressed = false;
            let mut still = Vec::new();
            for def in remaining {
                let name = def.name.clone().unwrap_or_default();
                match self.dependencies_met(&def, tracked).await {
                    Ok(true) => {
                        let id = tracked[&name].id.clone().unwrap_or_default();
                        if let Err(e) = rt.start(&id).await {
                            let msg = format!("CannotStartContainerError: {e}");
                            tracked.entry(name).or_default().reason = Some(msg.clone());
                            return Some(msg);
                        }
                        self.ship_logs(&name, &id);
                        let t = tracked.entry(name).or_default();
                        t.started = true;
                        if let Ok(Some(st)) = rt.inspect(&id).await {
                            t.bindings = bindings(&st);
                            if st.status == ContainerStatus::Exited {
                                t.exit_code = st.exit_code;
                            }
                        }
                        progressed = true;
                    }
                    Ok(false) => still.push(def),
                    Err(msg) => return Some(msg),
                }
            }
            remaining = still;
            if !progressed && !remaining.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = self.stop.changed() => {}
                }
            }
        }
        let mut running = self.base_report("RUNNING");
        running.containers = Some(self.container_changes(tracked, "RUNNING"));
        self.sync_meta(tracked, Some("RUNNING")).await;
        self.send(&running).await;
        None
    }

    /// Creates every container of the task (not started). Returns why it failed, if it did.
    async fn create_containers(
        &mut self,
        tracked: &mut BTreeMap<String, Tracked>,
        network: &TaskNetwork,
        metadata: Option<&str>,
    ) -> Option<String> {
        let rt = self.agent.runtime.clone();
        for def in self.defs().to_vec() {
            let name = def.name.clone().unwrap_or_default();
            let mut spec = container_spec(
                &self.agent.config.node,
                &self.a.task,
                &self.a.task_definition,
                &def,
                network,
                metadata,
            );
            if let Some((k, v)) = self.credentials_env() {
                spec.env.retain(|(n, _)| n != &k);
                spec.env.push((k, v));
            }
            if let Some(id) = &self.creds_id {
                spec.labels.insert(crate::runtime::labels::CREDENTIALS_ID.into(), id.clone());
            }
            if let Some(kv) = self.endpoint_url_env(&def) {
                spec.env.push(kv);
            }
            // Secrets last: a secret's name wins over an environment variable of the same name.
            for (k, v) in self.secret_env.get(&name).into_iter().flatten() {
                spec.env.retain(|(n, _)| n != k);
                spec.env.push((k.clone(), v.expose().to_string()));
            }
            for p in spec.ports.iter_mut().filter(|p| p.host_port.is_none()) {
                let udp = p.protocol == crate::runtime::Protocol::Udp;
                match self.agent.ports.take(udp) {
                    Some(port) => {
                        p.host_port = Some(port);
                        self.dynamic.push((port, udp));
                    }
                    None => {
                        return Some(
                            "CannotCreateContainerError: no free host port in the ephemeral range".into(),
                        );
                    }
                }
            }
            // Bridge mode: the container's own interface is routed before it starts.
            if !matches!(network, TaskNetwork::Shared(_)) {
                spec.mac_address = self.mac_for(&name);
            }
            match rt.create(&spec).await {
                Ok(id) => {
                    self.route_credentials(&id, spec.mac_address.clone()).await;
                    tracked.entry(name).or_default().id = Some(id)
                }
                Err(e) => {
                    let msg = format!("CannotCreateContainerError: {e}");
                    tracked.entry(name).or_default().reason = Some(msg.clone());
                    return Some(msg);
                }
            }
        }
        None
    }

    /// Creates the task's network namespace holder on the node's task network. Returns its
    /// engine ID.
    async fn create_pause(&mut self) -> Result<String, String> {
        let rt = self.agent.runtime.clone();
        let task_arn = self.task_arn();
        let name = crate::spec::engine_name(&task_arn, "internalecspause");
        // A ready holder, if the pool has one: renaming it to the task's holder name is what
        // gives it to the task (on the engine, so that a restarted agent knows).
        while let Some(h) = self.agent.holders.take() {
            match rt.rename(&h.id, &name).await {
                Ok(()) => {
                    self.route_credentials(&h.id, h.mac).await;
                    self.pause = Some(h.id.clone());
                    return Ok(h.id);
                }
                Err(e) => {
                    tracing::warn!(holder = %h.name, error = %e, "a ready namespace holder cannot be used");
                    let _ = rt.remove(&h.id).await;
                }
            }
        }
        self.agent.prepare_holders().await?;
        let fail = |e: RuntimeError| format!("CannotCreateContainerError: task network: {e}");
        let mut l: BTreeMap<String, String> = BTreeMap::new();
        for d in self.defs() {
            l.extend(d.docker_labels.clone().unwrap_or_default());
        }
        l.insert(labels::CLUSTER.into(), self.a.task.cluster_arn.clone().unwrap_or_default());
        l.insert(labels::TASK_ARN.into(), task_arn.clone());
        let spec = self.agent.holder_spec(&name, l, self.mac_for(PAUSE_NAME));
        let id = rt.create(&spec).await.map_err(fail)?;
        self.route_credentials(&id, spec.mac_address.clone()).await;
        self.pause = Some(id.clone());
        Ok(id)
    }

    /// Whether `def`'s dependencies allow it to start; an error when one never will.
    async fn dependencies_met(
        &self,
        def: &ContainerDefinition,
        tracked: &mut BTreeMap<String, Tracked>,
    ) -> Result<bool, String> {
        for dep in def.depends_on.iter().flatten() {
            let Some(t) = tracked.get(&dep.container_name) else { continue };
            if !t.started {
                return Ok(false);
            }
            let id = t.id.clone().unwrap_or_default();
            let st = self.agent.runtime.inspect(&id).await.ok().flatten();
            let exited = st.as_ref().map(|s| s.status == ContainerStatus::Exited).unwrap_or(true);
            let code = st.as_ref().and_then(|s| s.exit_code);
            match dep.condition.as_str() {
                "START" => {}
                "COMPLETE" if !exited => return Ok(false),
                "SUCCESS" if !exited => return Ok(false),
                "SUCCESS" if code != Some(0) => {
                    return Err(format!(
                        "dependency {} of container {} exited with {}, not 0",
                        dep.container_name,
                        def.name.as_deref().unwrap_or_default(),
                        code.unwrap_or(-1)
                    ));
                }
                "HEALTHY" => match st.and_then(|s| s.health) {
                    Some(Health::Healthy) => {}
                    Some(Health::Unhealthy) => {
                        return Err(format!(
                            "dependency {} of container {} is unhealthy",
                            dep.container_name,
                            def.name.as_deref().unwrap_or_default()
                        ));
                    }
                    _ if exited => {
                        return Err(format!(
                            "dependency {} exited before it was healthy",
                            dep.container_name
                        ));
                    }
                    _ => return Ok(false),
                },
                _ => {}
            }
            if exited && let Some(t) = tracked.get_mut(&dep.container_name) {
                t.exit_code = code;
            }
        }
        Ok(true)
    }

    /// Takes over containers found after a restart. Returns why the task ended, if it already has.
    async fn adopt(
        &mut self,
        tracked: &mut BTreeMap<String, Tracked>,
        adopted: Vec<ContainerState>,
    ) -> Option<String> {
        self.resume_credentials(&adopted).await;
        for c in adopted {
            let Some(name) = c.labels.get(labels::CONTAINER_NAME).cloned() else { continue };
            if name == PAUSE_NAME {
                self.pause = Some(c.id.clone());
                continue;
            }
            let t = tracked.entry(name).or_default();
            t.id = Some(c.id.clone());
            t.started = c.started_at_ms.is_some() || c.status != ContainerStatus::Created;
            t.bindings = bindings(&c);
            if c.status == ContainerStatus::Exited {
                t.exit_code = c.exit_code;
            }
        }
        // Shipping resumes from each container's saved position.
        let running: Vec<(String, String)> = tracked
            .iter()
            .filter(|(_, t)| t.started)
            .filter_map(|(n, t)| Some((n.clone(), t.id.clone()?)))
            .collect();
        for (name, id) in running {
            self.ship_logs(&name, &id);
        }
        if self.stopped() {
            return Some(self.a.task.stopped_reason.clone().unwrap_or_else(|| "Task stopped by user".into()));
        }
        let names: Vec<String> = tracked.keys().cloned().collect();
        for name in names {
            let t = &tracked[&name];
            if self.essential(&name) && (t.id.is_none() || t.exit_code.is_some()) {
                let why = if t.id.is_none() {
                    format!("Essential container {name} was lost while the agent was away")
                } else {
                    "Essential container in task exited".to_string()
                };
                return Some(why);
            }
        }
        let mut running = self.base_report("RUNNING");
        running.containers = Some(self.container_changes(tracked, "RUNNING"));
        self.sync_meta(tracked, Some("RUNNING")).await;
        self.send(&running).await;
        None
    }

    /// Watches the running task until an essential container exits or a stop is asked.
    async fn watch(&mut self, tracked: &mut BTreeMap<String, Tracked>) -> String {
        // An essential container may already have exited while the others were starting.
        if tracked.iter().any(|(name, t)| t.exit_code.is_some() && self.essential(name)) {
            return "Essential container in task exited".into();
        }
        let (tx, mut exits) = mpsc::unbounded_channel::<(String, Result<i64, RuntimeError>)>();
        for (name, t) in tracked.iter() {
            if let (Some(id), None) = (&t.id, t.exit_code) {
                let (rt, id, name, tx) = (self.agent.runtime.clone(), id.clone(), name.clone(), tx.clone());
                tokio::spawn(async move {
                    let r = rt.wait(&id).await;
                    let _ = tx.send((name, r));
                });
            }
        }
        drop(tx);
        let has_health = self.defs().iter().any(|d| d.health_check.is_some());
        let mut tick = tokio::time::interval(self.agent.config.health_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.stopped() {
                return self.a.task.stopped_reason.clone().unwrap_or_else(|| "Task stopped by user".into());
            }
            tokio::select! {
                _ = self.stop.changed() => {}
                Some((name, r)) = exits.recv() => {
                    let t = tracked.entry(name.clone()).or_default();
                    match r {
                        Ok(code) => t.exit_code = Some(code),
                        Err(e) => {
                            t.exit_code = None;
                            t.reason = Some(format!("container lost: {e}"));
                        }
                    }
                    if self.essential(&name) {
                        return "Essential container in task exited".into();
                    }
                    // A container's change goes in a task state change, as the ECS agent sends it.
                    let change = SubmitTaskStateChangeRequest {
                        cluster: self.a.task.cluster_arn.clone(),
                        task: self.a.task.task_arn.clone(),
                        containers: Some(vec![ContainerStateChange {
                            container_name: Some(name.clone()),
                            runtime_id: t.id.clone(),
                            status: Some("STOPPED".into()),
                            exit_code: t.exit_code.map(|c| c as i32),
                            reason: t.reason.clone(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    };
                    if let Err(e) = self.agent.client.submit_task(&change).await {
                        tracing::warn!(error = %e, "container state report failed");
                    }
                }
                _ = tick.tick(), if has_health => {
                    Box::pin(self.sample_health(tracked)).await;
                }
            }
        }
    }

    async fn sample_health(&self, tracked: &mut BTreeMap<String, Tracked>) {
        let mut changed = false;
        let mut report = TaskHealthReport { task_arn: self.task_arn(), ..Default::default() };
        for (name, t) in tracked.iter_mut() {
            let Some(id) = &t.id else { continue };
            let Ok(Some(st)) = self.agent.runtime.inspect(id).await else { continue };
            let h = match st.health {
                None => continue,
                Some(Health::Healthy) => "HEALTHY",
                Some(Health::Unhealthy) => "UNHEALTHY",
                Some(Health::Starting) => "UNKNOWN",
            };
            if t.health.as_deref() != Some(h) {
                t.health = Some(h.to_string());
                changed = true;
            }
            report.containers.push((name.clone(), h.to_string()));
        }
        if changed && let Err(e) = self.agent.client.report_health(&report).await {
            tracing::warn!(error = %e, "health report failed");
        }
    }

    /// Stops every container that still runs, each with its stopTimeout.
    async fn wind_down(&self, tracked: &mut BTreeMap<String, Tracked>) {
        let rt = &self.agent.runtime;
        for (name, t) in tracked.iter_mut() {
            let Some(id) = t.id.clone() else { continue };
            let timeout = self
                .defs()
                .iter()
                .find(|d| d.name.as_deref() == Some(name))
                .and_then(|d| d.stop_timeout)
                .unwrap_or(30)
                .max(0) as u64;
            if let Ok(Some(st)) = rt.inspect(&id).await {
                if st.status == ContainerStatus::Running {
                    let _ = rt.stop(&id, Duration::from_secs(timeout)).await;
                    if let Ok(Some(after)) = rt.inspect(&id).await {
                        t.exit_code = after.exit_code.or(t.exit_code);
                    }
                } else if t.exit_code.is_none() {
                    t.exit_code = st.exit_code.filter(|_| st.status == ContainerStatus::Exited);
                }
            }
        }
    }
}

/// Starts an awsvpc task's namespace holder, then tells the server the task's address and that
/// its network interface is attached.
async fn start_holder<R: Runtime, C: ControlClient>(
    agent: &Agent<R, C>,
    a: &Assignment,
    id: &str,
) -> Result<(), String> {
    let rt = &agent.runtime;
    // A ready holder from the pool runs already (started again if it was stopped meanwhile).
    let mut state = rt.inspect(id).await.ok().flatten();
    if state.as_ref().is_none_or(|s| s.status != ContainerStatus::Running) {
        rt.start(id).await.map_err(|e| format!("CannotStartContainerError: task network: {e}"))?;
        state = rt.inspect(id).await.ok().flatten();
    }
    let ip = state.and_then(|s| s.ip_address);
    let task_arn = a.task.task_arn.clone().unwrap_or_default();
    if let Some(ip) = ip {
        let report = TaskHealthReport {
            task_arn: task_arn.clone(),
            private_ipv4_address: Some(ip),
            ..Default::default()
        };
        if let Err(e) = agent.client.report_health(&report).await {
            tracing::warn!(error = %e, "address report failed");
        }
    }
    let changes = attachment_changes(a, "ATTACHED");
    if !changes.is_empty() {
        let req =
            SubmitAttachmentStateChangesRequest { cluster: a.task.cluster_arn.clone(), attachments: changes };
        if let Err(e) = agent.client.submit_attachments(&req).await {
            tracing::warn!(error = %e, "attachment report failed");
        }
    }
    Ok(())
}

/// The state change of every attachment of the task (its awsvpc ENI) to `status`.
fn attachment_changes(a: &Assignment, status: &str) -> Vec<AttachmentStateChange> {
    let task_arn = a.task.task_arn.clone().unwrap_or_default();
    a.task
        .attachments
        .iter()
        .flatten()
        .filter_map(|att| att.id.as_ref())
        .map(|id| AttachmentStateChange {
            attachment_arn: format!("{}/{id}", task_arn.replacen(":task/", ":attachment/", 1)),
            status: status.into(),
        })
        .collect()
}

fn bindings(st: &ContainerState) -> Vec<NetworkBinding> {
    st.ports
        .iter()
        .map(|p| NetworkBinding {
            bind_ip: Some(p.host_ip.clone()),
            container_port: Some(p.container_port as i32),
            host_port: Some(p.host_port as i32),
            protocol: Some(match p.protocol {
                crate::runtime::Protocol::Tcp => "tcp".into(),
                crate::runtime::Protocol::Udp => "udp".into(),
            }),
            ..Default::default()
        })
        .collect()
}
