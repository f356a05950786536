//! The `gantry` binary: the control plane (`gantry server`) and the all-in-one node
//! (`gantry up`). It parses the command line, opens the store, wires the control plane to the API
//! and serves; everything else lives in the library crates.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gantry_agent::client::{ClientCredentials, HttpClient};
use gantry_api::{ApiConfig, AuthMode, Authenticator, Limits, Services, app_with};
use gantry_core::{OsSecrets, SeededIds, SystemClock};
use gantry_ecs::ControlPlane;
use gantry_runtime::{AlwaysLeader, Metrics};
use gantry_store::SqliteStore;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The port Gantry listens on by default: clear of the usual web, database and emulator ports.
const DEFAULT_PORT: u16 = 7360;

#[derive(Parser)]
#[command(name = "gantry", version, about = "Amazon ECS that you run yourself")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: the ECS API and its store.
    Server {
        #[command(flatten)]
        common: Common,
        /// Allow `POST /_gantry/reset` to wipe all state (for integration tests).
        #[arg(long)]
        enable_reset: bool,
    },
    /// Run an all-in-one node: the control plane plus an in-process agent that provides Fargate
    /// capacity on this host. The reset endpoint is enabled.
    Up {
        #[command(flatten)]
        common: Common,
    },
    /// Show a task's container output: kept logs of a stopped task, or the live output of a
    /// running one (with --follow, until it stops).
    Logs {
        /// The task ARN or ID.
        task: String,
        /// Keep printing new output until the task's containers stop.
        #[arg(long, short)]
        follow: bool,
        /// Gantry's data directory on this host (where agents keep task logs).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Explain placement: for each container instance of a cluster, whether a task of the task
    /// definition would fit now, and if not, which check rejects it.
    Explain {
        /// The Gantry server, e.g. http://127.0.0.1:7360.
        #[arg(long, env = "GANTRY_SERVER", default_value = "http://127.0.0.1:7360")]
        server: String,
        #[arg(long, default_value = "default")]
        cluster: String,
        /// family, family:revision or ARN.
        #[arg(long)]
        task_definition: String,
        /// Extra placement constraints, as RunTask's JSON (e.g. '[{"type":"memberOf","expression":"..."}]').
        #[arg(long)]
        placement_constraints: Option<String>,
        #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
        region: String,
    },
    /// Run a simulated fleet: N container instances in this process, each a real agent over
    /// HTTP whose tasks "run" at once without Docker (for load tests and capacity planning).
    Sim {
        #[arg(long, env = "GANTRY_SERVER", default_value = "http://127.0.0.1:7360")]
        server: String,
        #[arg(long, default_value = "sim")]
        cluster: String,
        #[arg(long, default_value_t = 100)]
        instances: usize,
        /// Availability zones (zone-a, zone-b, ...).
        #[arg(long, default_value_t = 3)]
        zones: usize,
        /// Seeds the fleet's instance types and attributes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// GPUs on every simulated instance (the GPU resource, with simulated device IDs).
        #[arg(long, default_value_t = 0)]
        gpus: usize,
        #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
        region: String,
    },
    /// Register this host into a cluster as a container instance and run its tasks in Docker.
    Agent {
        /// The Gantry server, e.g. http://127.0.0.1:7360.
        #[arg(long, env = "GANTRY_SERVER")]
        server: String,
        /// The cluster to join.
        #[arg(long, default_value = "default")]
        cluster: String,
        /// A custom attribute, NAME=VALUE (repeatable).
        #[arg(long = "attribute", value_parser = parse_attribute)]
        attributes: Vec<(String, String)>,
        /// The ecs.availability-zone attribute.
        #[arg(long, default_value = "local-1a")]
        availability_zone: String,
        /// The ecs.instance-type attribute.
        #[arg(long, default_value = "gantry.host")]
        instance_type: String,
        /// The region of the cluster.
        #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
        region: String,
        /// Directory for the agent's identity and task logs (default: <data dir>/agent-CLUSTER).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Pull images even when present locally (ECS_IMAGE_PULL_BEHAVIOR=always).
        #[arg(long)]
        pull_always: bool,
        /// A GPU device ID to offer (repeatable; default: the NVIDIA GPUs the driver lists).
        #[arg(long = "gpu", value_name = "ID", conflicts_with = "no_gpus")]
        gpus: Vec<String>,
        /// Offer no GPUs, even if the host has some.
        #[arg(long)]
        no_gpus: bool,
    },
}

fn parse_attribute(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not NAME=VALUE")),
    }
}

#[derive(Args)]
struct Common {
    /// Address to listen on.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    listen: SocketAddr,
    /// Directory for Gantry's state (default: $XDG_DATA_HOME/gantry or ~/.local/share/gantry).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The AWS account ID in every ARN.
    #[arg(long, env = "GANTRY_ACCOUNT_ID", default_value = "000000000000")]
    account_id: String,
    /// How signatures are checked: `sigv4` accepts only known keys (the root key is written to
    /// DATA_DIR/root-credentials at first start), `open` any well-formed signature. Default:
    /// sigv4 for `gantry server`, open for `gantry up`.
    #[arg(long, env = "GANTRY_AUTH")]
    auth: Option<AuthMode>,
    /// Open connections at once; more are answered 503 and closed.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers (and that a kept-alive connection may
    /// stay silent) before the connection is closed.
    #[arg(long, default_value_t = Limits::default().header_read_timeout.as_secs())]
    header_timeout: u64,
    /// Seconds a client has to send a request's body once its headers are in.
    #[arg(long, default_value_t = Limits::default().body_read_timeout.as_secs())]
    body_timeout: u64,
    /// How long a STOPPED task stays visible to DescribeTasks and ListTasks before it is
    /// removed (ECS keeps it at least an hour): 90s, 10m, 1h, 1h30m.
    #[arg(long, default_value = "1h", value_parser = gantry_core::civil::parse_duration)]
    stopped_task_retention: std::time::Duration,
    /// The address load balancer listeners bind their ports on (0.0.0.0: every interface).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    lb_bind_address: IpAddr,
}

fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("gantry");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/gantry"),
        None => PathBuf::from(".gantry"),
    }
}

/// The file in a data directory that the process owning the directory holds locked.
const LOCK_FILE: &str = "gantry.lock";

/// Takes the data directory for this process: an exclusive advisory lock (`flock`) on
/// `DIR/gantry.lock`, held as long as the returned file is open, so for the process's life. The
/// kernel releases it when the process ends, however it ends (`kill -9` included), so a stale
/// lock never needs cleaning up. A directory another process holds is an error at once, naming
/// that process as it wrote itself into the file.
fn lock_data_dir(dir: &std::path::Path, command: &str) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the message a second process prints.
            file.set_len(0)?;
            file.seek(std::io::SeekFrom::Start(0))?;
            writeln!(file, "pid {}: {command}", std::process::id())?;
            file.flush()?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder =
                if holder.is_empty() { "another gantry process".to_string() } else { holder.to_string() };
            anyhow::bail!(
                "the data directory {} is in use by another gantry process ({holder}); stop it, or give this one another --data-dir",
                dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context(format!("cannot lock {}", path.display())))
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GANTRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let (common, enable_reset, mode) = match cli.command {
        Command::Server { common, enable_reset } => (common, enable_reset, "server"),
        Command::Up { common } => (common, true, "up"),
        Command::Logs { task, follow, data_dir } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            return rt.block_on(logs(task, follow, data_dir.unwrap_or_else(default_data_dir)));
        }
        Command::Sim { server, cluster, instances, zones, seed, gpus, region } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let opts =
                gantry_agent::sim::FleetOptions { cluster, instances, zones, seed, concurrency: 64, gpus };
            return rt.block_on(sim(server, region, opts));
        }
        Command::Explain { server, cluster, task_definition, placement_constraints, region } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            return rt.block_on(explain(server, region, cluster, task_definition, placement_constraints));
        }
        Command::Agent {
            server,
            cluster,
            attributes,
            availability_zone,
            instance_type,
            region,
            data_dir,
            pull_always,
            gpus,
            no_gpus,
        } => {
            let data_dir = data_dir.unwrap_or_else(|| default_data_dir().join(format!("agent-{cluster}")));
            // Two agents on one directory would be one container instance run twice.
            let _lock = lock_data_dir(&data_dir, "gantry agent")?;
            let opts = gantry_agent::node::InstanceOptions {
                cluster,
                availability_zone,
                instance_type,
                attributes,
                data_dir,
                pull_always,
                gpus: match (no_gpus, gpus.is_empty()) {
                    (true, _) => Some(vec![]),
                    (false, true) => None,
                    (false, false) => Some(gpus),
                },
            };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            return rt.block_on(run_agent(server, region, opts));
        }
    };
    if common.account_id.len() != 12 || !common.account_id.bytes().all(|b| b.is_ascii_digit()) {
        anyhow::bail!("--account-id must be 12 digits, got '{}'", common.account_id);
    }
    // One worker thread per core; TOKIO_WORKER_THREADS overrides.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(serve(common, enable_reset, mode))
}

/// Writes a line to stdout; a closed pipe (`gantry explain | head`) ends the program quietly.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// Like [`say!`] without the newline.
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write;
        if write!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// `gantry sim`: creates the cluster if needed and runs the simulated fleet until interrupted.
async fn sim(server: String, region: String, opts: gantry_agent::sim::FleetOptions) -> anyhow::Result<()> {
    let client = client_for(&server, &region);
    let cluster = opts.cluster.clone();
    let _: serde_json::Value = client
        .ecs("CreateCluster", &serde_json::json!({"clusterName": cluster}))
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {server}: {e}"))?;
    let started = std::time::Instant::now();
    let fleet = gantry_agent::sim::run(client, Arc::new(SystemClock), opts, |n| {
        println!(
            "Gantry sim: {n} simulated container instances in cluster {cluster} on {server}, registered in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    });
    tokio::select! {
        r = fleet => r.map_err(|e| anyhow::anyhow!("{e}")),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// `gantry explain`: the GantryExplainPlacement call, printed as a table.
async fn explain(
    server: String,
    region: String,
    cluster: String,
    task_definition: String,
    constraints: Option<String>,
) -> anyhow::Result<()> {
    let mut body = serde_json::json!({"cluster": cluster, "taskDefinition": task_definition});
    if let Some(c) = constraints {
        body["placementConstraints"] =
            serde_json::from_str(&c).context("--placement-constraints must be a JSON list")?;
    }
    let client = client_for(&server, &region);
    let out: serde_json::Value =
        client.ecs("GantryExplainPlacement", &body).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    say!("{}", out["taskDefinitionArn"].as_str().unwrap_or_default());
    let list = out["instances"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        say!("  no container instances in {}", out["clusterArn"].as_str().unwrap_or_default());
    }
    for v in list {
        let arn = v["containerInstanceArn"].as_str().unwrap_or_default();
        let id = arn.rsplit('/').next().unwrap_or(arn);
        if v["fits"].as_bool().unwrap_or(false) {
            say!("  {id}  fits");
        } else {
            say!(
                "  {id}  {}: {}",
                v["reason"].as_str().unwrap_or_default(),
                v["explanation"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// `gantry logs`: live output from Docker while the task's containers exist, else the logs the
/// agent kept when it removed them.
async fn logs(task: String, follow: bool, data_dir: PathBuf) -> anyhow::Result<()> {
    use gantry_agent::runtime::{Runtime, labels};
    let id = task.rsplit('/').next().unwrap_or(&task).to_string();
    if let Ok(docker) = gantry_agent::docker::DockerRuntime::connect().await {
        let containers: Vec<_> = docker
            .task_containers(&id)
            .await?
            .into_iter()
            .filter(|c| c.labels.get(labels::CONTAINER_NAME).is_some_and(|n| !n.starts_with('~')))
            .collect();
        if !containers.is_empty() {
            let many = containers.len() > 1;
            for c in &containers {
                let name = c.labels.get(labels::CONTAINER_NAME).cloned().unwrap_or_default();
                if many {
                    say!("==> {name} <==");
                }
                if follow && !many {
                    docker.follow_logs(&c.id, &mut std::io::stdout()).await?;
                } else {
                    use std::io::Write;
                    std::io::stdout().write_all(&docker.logs(&c.id).await?)?;
                }
            }
            return Ok(());
        }
    }
    // Kept logs: <data dir>/<agent dir>/logs/<task id>/<container>.log
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&data_dir).into_iter().flatten().flatten() {
        let dir = entry.path().join("logs").join(&id);
        for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            found.push(f.path());
        }
    }
    found.sort();
    if found.is_empty() {
        anyhow::bail!(
            "no containers or kept logs of task {id} on this host (data dir {})",
            data_dir.display()
        );
    }
    for path in &found {
        if found.len() > 1 {
            say!("==> {} <==", path.file_stem().unwrap_or_default().to_string_lossy());
        }
        say_raw!("{}", String::from_utf8_lossy(&std::fs::read(path)?));
    }
    Ok(())
}

/// Connects to Docker and runs this host's agent as a container instance of a cluster.
async fn run_agent(
    server: String,
    region: String,
    opts: gantry_agent::node::InstanceOptions,
) -> anyhow::Result<()> {
    let runtime = Arc::new(
        gantry_agent::docker::DockerRuntime::connect()
            .await
            .context("the agent runs tasks in Docker, which is unavailable")?,
    );
    let client = Arc::new(client_for(&server, &region));
    let ids = SeededIds::from_entropy();
    let agent = loop {
        match gantry_agent::node::register_instance(
            runtime.clone(),
            client.clone(),
            Arc::new(SystemClock),
            &ids,
            &opts,
        )
        .await
        {
            Ok(a) => break a,
            Err(e) => {
                tracing::warn!("registration failed, retrying: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
        }
    };
    println!("Gantry agent: cluster {} on {server}", opts.cluster);
    tokio::select! {
        _ = agent.run() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// A client of a Gantry server, signing with the key the AWS SDKs would find (environment,
/// then credentials file), or an anonymous one (enough for a server whose auth is open).
fn client_for(server: &str, region: &str) -> HttpClient {
    HttpClient::new(server, region)
        .with_credentials(ClientCredentials::from_environment().unwrap_or_else(ClientCredentials::anonymous))
}

/// The in-process agent of `gantry up`: Fargate capacity on this host.
async fn start_fargate(
    base: &str,
    dir: &std::path::Path,
    ids: &SeededIds,
    credentials: ClientCredentials,
) -> anyhow::Result<()> {
    let runtime = Arc::new(gantry_agent::docker::DockerRuntime::connect().await?);
    let client = Arc::new(HttpClient::new(base, "us-east-1").with_credentials(credentials));
    let mut tries = 0;
    let agent = loop {
        match gantry_agent::node::register_fargate(
            runtime.clone(),
            client.clone(),
            Arc::new(SystemClock),
            ids,
            dir,
        )
        .await
        {
            Ok(a) => break a,
            Err(e) if tries < 50 => {
                tries += 1;
                tracing::debug!("Fargate node registration: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    tracing::info!("Fargate capacity on this host is ready");
    agent.run().await;
    Ok(())
}

/// The AWS CLI profile `gantry up` writes.
const AWS_PROFILE: &str = "gantry";

/// The URL clients on this host reach a listener at: a wildcard address is reached on loopback.
fn client_endpoint(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Writes the AWS CLI profile `gantry` for this endpoint: the root key when signatures are
/// checked, else placeholder keys (any well-formed signature is accepted).
fn write_aws_profile(
    endpoint: &str,
    root: Option<(&str, &gantry_core::Secret)>,
) -> std::io::Result<gantry_agent::aws_profile::Written> {
    let placeholder = gantry_core::Secret::new("test");
    let (access_key_id, secret_access_key) = root.unwrap_or(("test", &placeholder));
    gantry_agent::aws_profile::write(&gantry_agent::aws_profile::Profile {
        name: AWS_PROFILE,
        endpoint_url: endpoint,
        region: "us-east-1",
        access_key_id,
        secret_access_key,
    })
}

/// How the printed commands run the AWS CLI, and whether it is there: `aws` when it is on PATH,
/// else the full path of the one `scripts/up.sh` installed (`GANTRY_AWS_CLI`), so that the
/// command works exactly as printed.
/// The master key that seals secret values at rest: `GANTRY_MASTER_KEY` (base64 of 32 bytes)
/// if set, else `DIR/master.key`, created (mode 0600, from the OS CSPRNG) at first start. It is
/// kept outside the store, so the store's files alone do not reveal a secret.
fn master_key(dir: &std::path::Path) -> anyhow::Result<gantry_core::Sealer> {
    use gantry_core::Sealer;
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let nonces: Arc<dyn gantry_core::SecretGen> = Arc::new(OsSecrets);
    if let Some(text) = std::env::var_os("GANTRY_MASTER_KEY") {
        let key = Sealer::parse_key(&text.to_string_lossy()).context("GANTRY_MASTER_KEY")?;
        return Ok(Sealer::new(&key, nonces));
    }
    let path = dir.join("master.key");
    if !path.exists() {
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        writeln!(f, "{}", Sealer::new_key_text(&OsSecrets))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        tracing::info!(path = %path.display(), "created the master key that seals secrets at rest");
    }
    let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the master key file is readable by others; chmod 600 it");
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let key =
        Sealer::parse_key(&text).with_context(|| format!("{} does not hold a master key", path.display()))?;
    Ok(Sealer::new(&key, nonces))
}

fn aws_command() -> (String, bool) {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join("aws"))));
    if on_path {
        return ("aws".to_string(), true);
    }
    match std::env::var_os("GANTRY_AWS_CLI").map(PathBuf::from) {
        Some(p) if executable(&p) => (p.display().to_string(), true),
        _ => ("aws".to_string(), false),
    }
}

async fn serve(common: Common, enable_reset: bool, mode: &str) -> anyhow::Result<()> {
    let data_dir = common.data_dir.unwrap_or_else(default_data_dir);
    // One process per data directory: a second server would write the same store, and a second
    // `gantry up` would run the same Fargate node twice.
    let _lock = lock_data_dir(&data_dir, &format!("gantry {mode}"))?;
    let auth = common.auth.unwrap_or(if mode == "up" { AuthMode::Open } else { AuthMode::SigV4 });
    let keys = Arc::new(gantry_sts::keys::KeyRing::new());
    let mut root = None;
    if auth == AuthMode::SigV4 {
        let (credential, path, created) =
            gantry_sts::keys::load_or_create_root(&data_dir, &common.account_id, &OsSecrets)
                .context("cannot set up the root access key")?;
        if created {
            tracing::info!(path = %path.display(), "created the root access key");
        }
        root = Some((credential.clone(), path));
        keys.insert(credential);
    }
    let sealer = master_key(&data_dir)?;
    let db = data_dir.join("gantry.db");
    // The one registry: every part records into it, `GET /metrics` renders it.
    let metrics = Arc::new(Metrics::new());
    let store = SqliteStore::open_with_metrics(&db, metrics.store.clone())
        .with_context(|| format!("cannot open the store at {}", db.display()))?;
    // A data directory of an earlier release is moved to the current key layout before serving.
    gantry_ecs::migrate(&store)
        .await
        .map_err(|e| anyhow::anyhow!("cannot migrate the store at {}: {}", db.display(), e.message))?;
    let control = ControlPlane::with_metrics(
        Arc::new(store),
        Arc::new(SystemClock),
        Arc::new(SeededIds::from_entropy()),
        metrics,
    );
    // The service scheduler runs behind the leadership gate: one server per store leads alone
    // for now (several servers sharing etcd will elect one).
    let (stop_controllers, controllers_stop) = gantry_runtime::shutdown();
    let leader: Arc<dyn gantry_runtime::Leadership> = Arc::new(AlwaysLeader::default());
    let scheduler = tokio::spawn({
        let (control, leader, stop) = (control.clone(), leader.clone(), controllers_stop.clone());
        async move { control.run_scheduler(leader, stop).await }
    });
    // Stopped tasks, expired client tokens and old history go, behind the same gate.
    let cleanup = tokio::spawn({
        let (control, retention) = (control.clone(), common.stopped_task_retention);
        let (leader, stop) = (leader.clone(), controllers_stop.clone());
        async move { control.run_cleanup(retention, leader, stop).await }
    });
    // The load balancers' data plane: listeners on --lb-bind-address, health checks that
    // DescribeTargetHealth reports and the drainer consults. Its metrics go nowhere until
    // CloudWatch exists.
    let data_plane = gantry_lb::LoadBalancer::new(
        gantry_lb::Options { bind_address: common.lb_bind_address, ..Default::default() },
        control.clock().clone(),
        control.ids().as_ref(),
        Arc::new(gantry_ports::NoMetrics),
    );
    let services = Services::new(&control, Arc::new(data_plane.clone()));
    // ECS checks services' target groups against ELBv2 through its port.
    control.set_target_registry(services.elbv2.clone());
    // ELBv2's records become the data plane's configuration, applied as each one is published.
    let (feed, configs) = gantry_elbv2::config::ConfigFeed::new(
        control.store().clone(),
        Arc::new(gantry_acm::AcmCertificates::new(control.store().clone())),
    );
    let feed = tokio::spawn(feed.run(controllers_stop.clone()));
    let applier = tokio::spawn(apply_configs(data_plane, configs, controllers_stop.clone()));
    // Load balancers go from provisioning to active through their controller.
    let activator = tokio::spawn({
        let (store, metrics) = (control.store().clone(), control.metrics().clone());
        let (leader, stop) = (leader.clone(), controllers_stop.clone());
        async move { gantry_elbv2::activator::Activator::new(store).run(metrics, leader, stop).await }
    });
    // A deregistered target's draining ends through its controller.
    let drainer = tokio::spawn({
        let (drainer, metrics) = (services.elbv2.drainer(), control.metrics().clone());
        let (leader, stop) = (leader.clone(), controllers_stop.clone());
        async move { drainer.run(metrics, leader, stop).await }
    });
    let limits = Limits {
        max_connections: common.max_connections,
        header_read_timeout: std::time::Duration::from_secs(common.header_timeout.max(1)),
        body_read_timeout: std::time::Duration::from_secs(common.body_timeout.max(1)),
    };
    let app = app_with(
        control,
        services,
        Authenticator::new(auth, keys, &common.account_id),
        ApiConfig {
            account_id: common.account_id.clone(),
            enable_reset,
            poll_timeout: std::time::Duration::from_secs(5),
            limits,
            sealer,
        },
    );
    let listener = tokio::net::TcpListener::bind(common.listen)
        .await
        .with_context(|| format!("cannot listen on {}", common.listen))?;
    let addr = listener.local_addr()?;
    let endpoint = client_endpoint(addr);
    println!("Gantry {} ({mode}): the AWS APIs are at {endpoint}", env!("CARGO_PKG_VERSION"));
    println!("  account {}, state in {}, auth {}", common.account_id, data_dir.display(), auth.name());
    let agent_credentials = match &root {
        Some((c, _)) => ClientCredentials {
            access_key_id: c.access_key_id.clone(),
            secret: c.secret.clone(),
            session_token: None,
        },
        None => ClientCredentials::anonymous(),
    };
    if mode == "up" {
        let base = endpoint.clone();
        let dir = data_dir.join("fargate");
        let ids = SeededIds::from_entropy();
        // The node comes up once the API below is serving.
        tokio::spawn(async move {
            match start_fargate(&base, &dir, &ids, agent_credentials).await {
                Ok(()) => {}
                Err(e) => tracing::warn!("no Fargate capacity on this host: {e:#}"),
            }
        });
    }
    // `gantry up` is for this machine's user: their AWS CLI gets a profile for it.
    let profile = (mode == "up").then(|| {
        write_aws_profile(&endpoint, root.as_ref().map(|(c, _)| (c.access_key_id.as_str(), &c.secret)))
    });
    let (aws, aws_found) = aws_command();
    match &profile {
        Some(Ok(w)) => println!(
            "  AWS CLI profile '{AWS_PROFILE}' written to {} and {}",
            w.config.display(),
            w.credentials.display()
        ),
        Some(Err(e)) => tracing::warn!("cannot write the AWS CLI profile '{AWS_PROFILE}': {e}"),
        None => {}
    }
    if let Some((_, path)) = &root {
        println!("  the root access key is in {}", path.display());
    }
    println!("Try it:");
    match (&profile, &root) {
        (Some(Ok(_)), _) => {
            println!("  {aws} --profile {AWS_PROFILE} ecs create-cluster --cluster-name demo")
        }
        (_, Some((_, path))) => println!(
            "  AWS_ENDPOINT_URL={endpoint} AWS_SHARED_CREDENTIALS_FILE={} AWS_DEFAULT_REGION=us-east-1 {aws} sts get-caller-identity",
            path.display()
        ),
        (_, None) => println!(
            "  AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 {aws} ecs create-cluster --cluster-name demo"
        ),
    }
    if !aws_found {
        println!(
            "  (the AWS CLI is not installed here: ./scripts/up.sh installs it, or run: pip install awscli)"
        );
    }
    tracing::info!(%addr, data_dir = %data_dir.display(), "listening");
    gantry_api::serve(listener, app, limits, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down");
    })
    .await?;
    // No new scheduler pass starts; the passes in flight finish.
    stop_controllers.trigger();
    let _ = scheduler.await;
    let _ = activator.await;
    let _ = drainer.await;
    let _ = cleanup.await;
    let _ = feed.await;
    let _ = applier.await;
    Ok(())
}

/// Applies each configuration the ELBv2 feed publishes to the data plane. A listener whose port
/// cannot be bound (or that is otherwise unservable) is left out, with an error naming it and
/// its address, and the rest is served; it is tried again with the next configuration.
async fn apply_configs(
    data_plane: gantry_lb::LoadBalancer,
    mut configs: tokio::sync::watch::Receiver<Arc<gantry_ports::lb::LbConfig>>,
    mut shutdown: gantry_runtime::Shutdown,
) {
    loop {
        let published = configs.borrow_and_update().clone();
        let mut config = gantry_lb::Config::from_ports(&published);
        // Every listener is served but the ones that fail, so one bad port blocks nothing else.
        while let Err(e) = data_plane.apply(&config) {
            tracing::error!(error = %e, "a load balancer listener is not served");
            let (listener, before) = (e.listener().to_string(), config.listeners.len());
            config.listeners.retain(|l| l.arn != listener);
            if config.listeners.len() == before {
                break;
            }
        }
        tracing::debug!(revision = published.revision, "load balancer configuration applied");
        tokio::select! {
            _ = shutdown.wait() => return,
            changed = configs.changed() => if changed.is_err() { return },
        }
    }
}
