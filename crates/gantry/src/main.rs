//! The `gantry` binary: the control plane (`gantry server`) and the all-in-one node
//! (`gantry up`). It parses the command line, opens the store, wires the control plane to the API
//! and serves; everything else lives in the library crates.

mod launchers;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gantry_agent::client::{ClientCredentials, HttpClient};
use gantry_api::{ApiConfig, AuthMode, Authenticator, Limits, Services, app_with};
use gantry_core::{OsSecrets, SeededIds, SystemClock};
use gantry_ecs::ControlPlane;
use gantry_runtime::{AlwaysLeader, ElectedLeadership, Metrics};
use gantry_store::{EtcdStore, EtcdTarget, SqliteStore, Store};
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
enum SpotAction {
    /// Interrupt FARGATE_SPOT tasks of a cluster: the named ones, else COUNT of them (the
    /// oldest first), else all. Prints each interrupted task's ARN.
    Interrupt {
        #[arg(long, env = "GANTRY_SERVER", default_value = "http://127.0.0.1:7360")]
        server: String,
        #[arg(long, default_value = "default")]
        cluster: String,
        /// A task ARN or ID (repeat for several).
        #[arg(long = "task", conflicts_with = "count")]
        tasks: Vec<String>,
        #[arg(long)]
        count: Option<i64>,
        /// Seconds between the warning and the capacity going: 1 to 120 (ECS's two minutes).
        #[arg(long, default_value_t = 120)]
        warning_seconds: i64,
        #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
        region: String,
    },
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
    /// Show the servers sharing this server's store, which one leads, the store and the
    /// agents: which are connected, and which server they poll.
    Status {
        /// A Gantry server (or several, comma-separated: the first that answers).
        #[arg(long, env = "GANTRY_SERVER", default_value = "http://127.0.0.1:7360")]
        server: String,
        #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
        region: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a container of a running task (ECS Exec), through its agent: opens the
    /// session with ExecuteCommand (signed with the AWS SDKs' credentials), then streams stdin,
    /// stdout and stderr; exits with the command's exit code.
    Exec {
        /// The Gantry endpoint.
        #[arg(
            long = "endpoint-url",
            alias = "server",
            env = "AWS_ENDPOINT_URL",
            default_value = "http://127.0.0.1:7360"
        )]
        endpoint_url: String,
        #[arg(long, default_value = "default")]
        cluster: String,
        /// The task ARN or ID.
        #[arg(long)]
        task: String,
        /// The container's name (needed when the task has more than one).
        #[arg(long)]
        container: Option<String>,
        /// A terminal for the command (raw mode on this one when stdin is a terminal).
        #[arg(long, short)]
        interactive: bool,
        #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
        region: String,
        /// The command and its arguments (after `--`).
        #[arg(required = true, last = true)]
        command: Vec<String>,
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
    /// Fargate Spot: reclaim FARGATE_SPOT capacity as AWS does. `gantry spot interrupt` gives
    /// the chosen tasks ECS's two-minute warning (stopCode SpotInterruption, SIGTERM to their
    /// containers), then stops whatever still runs when the warning is over.
    Spot {
        #[command(subcommand)]
        action: SpotAction,
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
        /// The index of the first instance: one fleet split over several `gantry sim`
        /// processes (one per host, same seed), each given its own slice.
        #[arg(long, default_value_t = 0)]
        first: usize,
        /// GPUs on every simulated instance (the GPU resource, with simulated device IDs).
        #[arg(long, default_value_t = 0)]
        gpus: usize,
        #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
        region: String,
    },
    /// Register this host into a cluster as a container instance and run its tasks in Docker.
    Agent {
        /// The Gantry server, e.g. http://127.0.0.1:7360, or several of one store separated by
        /// commas (the agent moves to the next when its server goes away).
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
        /// The CPU units to declare (default: 1,024 per core of this host).
        #[arg(long, requires = "memory")]
        cpu: Option<i64>,
        /// The memory to declare, in MiB (default: this host's).
        #[arg(long, requires = "cpu")]
        memory: Option<i64>,
        /// This host's awsvpc task subnet, e.g. 10.232.1.0/24, distinct on every host: reported
        /// on the container instance, and routed to by the other agents of the cluster through
        /// this host's address (default: the engine picks a subnet, reachable on this host only).
        #[arg(long, value_parser = parse_subnet)]
        task_subnet: Option<gantry_agent::routes::Subnet>,
        /// The address the other hosts route this host's task subnet through (default: the
        /// local address this host reaches the server from).
        #[arg(long, requires = "task_subnet")]
        host_address: Option<std::net::Ipv4Addr>,
    },
    /// Keep this host's routes to a cluster's awsvpc task subnets (those its agents reported
    /// with --task-subnet), without running tasks: for the server's host, whose load balancers
    /// reach awsvpc tasks, or any host that must reach them.
    Routes {
        #[arg(long, env = "GANTRY_SERVER", default_value = "http://127.0.0.1:7360")]
        server: String,
        #[arg(long, default_value = "default")]
        cluster: String,
        #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
        region: String,
    },
}

fn parse_subnet(s: &str) -> Result<gantry_agent::routes::Subnet, String> {
    s.parse()
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
    /// `gantry up`: how many awsvpc namespace holders the Fargate node keeps created and
    /// started ahead of its tasks (0: each task makes its own before it starts).
    #[arg(long, default_value_t = gantry_agent::node::FARGATE_HOLDER_POOL)]
    fargate_holder_pool: usize,
    /// How long a minute lasts in ECS deployments' bake times (bakeTimeInMinutes, linear and
    /// canary step bake times) and lifecycle hook timeouts: 60s as on AWS; shorter (1s, 100ms)
    /// to try blue/green, linear and canary deployments locally without waiting.
    #[arg(long, default_value = "60s", value_parser = gantry_core::civil::parse_duration)]
    deployment_minute: std::time::Duration,
    /// The address load balancer listeners bind their ports on (0.0.0.0: every interface).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    lb_bind_address: IpAddr,
    /// The port of the HTTP listener of the load balancer ECS shares between Express services
    /// (their endpoints are `http://NAME-ID.ecs.REGION.localhost[:PORT]`).
    #[arg(long, default_value_t = 80)]
    express_port: u16,
    /// Seconds between publications of the AWS/ECS metrics (ECS publishes every 60); a period
    /// under 60 stores them at high resolution (StorageResolution 1).
    #[arg(long, default_value_t = 60)]
    ecs_metrics_period: u64,
    /// Application Auto Scaling's target tracking alarms use 10-second periods instead of AWS's
    /// 60 (and ECS metrics are published every 10 s at most), so services scale in seconds
    /// locally. Off by default: target tracking behaves as on AWS.
    #[arg(long, env = "GANTRY_APPSCALING_HIGH_RESOLUTION")]
    appscaling_high_resolution: bool,
    /// Where the state lives: `sqlite` (DATA_DIR/gantry.db) or an etcd cluster,
    /// `etcd://HOST:PORT[,HOST:PORT...][/ROOT]` (keys under /ROOT/, default /gantry/).
    #[arg(long, env = "GANTRY_STORE", default_value = "sqlite", value_parser = parse_store)]
    store: StoreChoice,
    /// An Auto Scaling launcher, NAME=SCRIPT (repeatable): a launch configuration whose ImageId
    /// is `command:NAME` has its instances created and destroyed by SCRIPT.
    #[arg(long = "launcher", value_parser = parse_launcher)]
    launchers: Vec<(String, PathBuf)>,
    /// How long a capacity provider's CapacityProviderReservation must stay below its target
    /// before managed scaling scales its group in (ECS's target tracking alarm: 15 minutes).
    #[arg(long, default_value = "15m", value_parser = gantry_core::civil::parse_duration)]
    capacity_scale_in_delay: std::time::Duration,
    /// How long an instance's agent may go unheard before its service tasks are marked STOPPED
    /// and replaced elsewhere (its other tasks keep their state; when it comes back it stops the
    /// replaced ones).
    #[arg(long, default_value = "5m", value_parser = gantry_core::civil::parse_duration)]
    lost_instance_timeout: std::time::Duration,
    /// Tests of the linearizability check only (hidden): on etcd, skip the read index, so this
    /// server reads from its mirror however far behind the other servers' writes it is.
    #[arg(long, hide = true)]
    unsafe_stale_reads: bool,
    /// How long the credentials of a task's role last (an STS session of the role, at most its
    /// MaxSessionDuration); the agent renews them at half their life. Shorter (30s) to watch
    /// the renewal happen.
    #[arg(long, default_value = "6h", value_parser = parse_session_duration)]
    task_credentials_duration: std::time::Duration,
    /// The URL agents and clients reach this server at, recorded for the other servers of the
    /// store (DiscoverPollEndpoint, `gantry status`); default: the address it listens on.
    #[arg(long)]
    advertise_url: Option<String>,
}

/// A task credentials lifetime: a duration of at least 10 seconds (the agent renews at half
/// life, and a renewal needs a moment).
fn parse_session_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = gantry_core::civil::parse_duration(s)?;
    if d < std::time::Duration::from_secs(10) {
        return Err(format!("'{s}' is shorter than 10s"));
    }
    Ok(d)
}

fn parse_launcher(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), PathBuf::from(v))),
        _ => Err(format!("'{s}' is not NAME=SCRIPT")),
    }
}

/// The backend `--store` names.
#[derive(Clone, Debug)]
enum StoreChoice {
    Sqlite,
    Etcd(EtcdTarget),
}

fn parse_store(s: &str) -> Result<StoreChoice, String> {
    match s {
        "sqlite" => Ok(StoreChoice::Sqlite),
        _ if s.starts_with("etcd://") => EtcdTarget::parse(s).map(StoreChoice::Etcd),
        _ => Err(format!("'{s}' is neither sqlite nor etcd://HOST:PORT[,HOST:PORT...][/ROOT]")),
    }
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
        Command::Sim { server, cluster, instances, zones, seed, first, gpus, region } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let opts = gantry_agent::sim::FleetOptions {
                cluster,
                instances,
                zones,
                seed,
                first,
                concurrency: 64,
                gpus,
            };
            return rt.block_on(sim(server, region, opts));
        }
        Command::Status { server, region, json } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            return rt.block_on(status(server, region, json));
        }
        Command::Spot {
            action: SpotAction::Interrupt { server, cluster, tasks, count, warning_seconds, region },
        } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let mut body = serde_json::json!({"cluster": cluster, "warningSeconds": warning_seconds});
            if !tasks.is_empty() {
                body["tasks"] = serde_json::json!(tasks);
            }
            if let Some(n) = count {
                body["count"] = serde_json::json!(n);
            }
            return rt.block_on(spot_interrupt(server, region, body));
        }
        Command::Exec { endpoint_url, cluster, task, container, interactive, region, command } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let code =
                rt.block_on(exec(endpoint_url, region, cluster, task, container, interactive, command))?;
            // The blocking read of stdin may still be waiting: end the process here.
            std::process::exit(code);
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
            cpu,
            memory,
            task_subnet,
            host_address,
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
                resources: cpu.zip(memory),
            };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            return rt.block_on(run_agent(server, region, opts, task_subnet, host_address));
        }
        Command::Routes { server, cluster, region } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let client = Arc::new(client_for(&server, &region));
            let keeper = gantry_agent::routes::Keeper::new(
                None,
                None,
                vec![],
                Arc::new(gantry_agent::routes::run_command),
            );
            println!("Gantry routes: cluster {cluster} on {server}");
            rt.block_on(async {
                tokio::select! {
                    _ = gantry_agent::routes::run(client, cluster, keeper) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            });
            return Ok(());
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

/// `gantry status`: asks a server for what it knows of its store's servers and agents.
async fn status(server: String, region: String, json: bool) -> anyhow::Result<()> {
    let client = client_for(&server, &region);
    let v = client.status().await.map_err(|e| anyhow::anyhow!("cannot reach {server}: {e}"))?;
    if json {
        say!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let ago = |at: &serde_json::Value| {
        let now = gantry_core::Clock::now(&SystemClock).0;
        format!("{:.1}s ago", (now - at.as_i64().unwrap_or(now)).max(0) as f64 / 1000.0)
    };
    say!("store   {}", text(&v["store"]));
    say!("answered by {} ({})", text(&v["url"]), text(&v["server"]));
    let servers = v["servers"].as_array().cloned().unwrap_or_default();
    let leader = servers.iter().find(|s| s["leader"] == true).map(|s| text(&s["url"]));
    say!("leader  {}", leader.as_deref().unwrap_or("none"));
    say!("\nSERVERS ({})", servers.len());
    for s in &servers {
        say!(
            "  {:<32} {:<5} {:<7} seen {:<12} {}",
            text(&s["url"]),
            if s["up"] == true { "up" } else { "down" },
            if s["leader"] == true { "leader" } else { "" },
            ago(&s["lastSeenAt"]),
            text(&s["id"])
        );
    }
    let agents = v["agents"].as_array().cloned().unwrap_or_default();
    let connected = agents.iter().filter(|a| a["connected"] == true).count();
    say!("\nAGENTS ({} connected of {})", connected, agents.len());
    let url_of =
        |id: &str| servers.iter().find(|s| s["id"] == id).map_or(id.to_string(), |s| text(&s["url"]));
    for a in &agents {
        say!(
            "  {:<12} heard {:<12} via {:<32} {}",
            if a["connected"] == true { "connected" } else { "disconnected" },
            ago(&a["lastHeardAt"]),
            url_of(a["server"].as_str().unwrap_or_default()),
            text(&a["node"])
        );
    }
    Ok(())
}

/// `gantry exec`: ExecuteCommand, then the session's stream between this terminal and the
/// command. The exit code is the command's (255 for an API error, as the AWS CLI's).
async fn exec(
    endpoint: String,
    region: String,
    cluster: String,
    task: String,
    container: Option<String>,
    interactive: bool,
    command: Vec<String>,
) -> anyhow::Result<i32> {
    use std::io::IsTerminal;
    let client = client_for(&endpoint, &region);
    // ECS's sessions are interactive (the only mode it supports); --interactive asks for a TTY.
    let req = gantry_model::ExecuteCommandRequest {
        cluster: Some(cluster),
        container,
        command: gantry_core::exec::join_command(&command),
        interactive: true,
        task,
    };
    let resp: gantry_model::ExecuteCommandResponse = match client.ecs("ExecuteCommand", &req).await {
        Ok(r) => r,
        Err(gantry_agent::client::ClientError::Api { kind, message }) => {
            eprintln!("\nAn error occurred ({kind}) when calling the ExecuteCommand operation: {message}");
            return Ok(255);
        }
        Err(e) => anyhow::bail!("{e}"),
    };
    let session = resp.session.unwrap_or_default();
    let url = session.stream_url.unwrap_or_default();
    let token = session.token_value.unwrap_or_default();
    let headers = [
        ("x-gantry-exec-token", token),
        ("x-gantry-exec-tty", if interactive { "true" } else { "false" }.to_string()),
    ];
    let io = client.upgrade(&url, &headers).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let raw = (interactive && std::io::stdin().is_terminal()).then(RawMode::enter).flatten();
    let (resize_tx, resize_rx) = tokio::sync::mpsc::channel(4);
    if interactive && std::io::stdin().is_terminal() {
        if let Some(size) = terminal_size() {
            let _ = resize_tx.try_send(size);
        }
        if let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) {
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if let Some(size) = terminal_size() {
                        let _ = resize_tx.send(size).await;
                    }
                }
            });
        }
    }
    let ended = gantry_agent::exec::attach(
        io,
        Some(tokio::io::stdin()),
        &mut tokio::io::stdout(),
        &mut tokio::io::stderr(),
        resize_rx,
    )
    .await;
    drop(raw);
    Ok(match ended {
        gantry_agent::exec::Ended::Exit(code) => code.clamp(0, 255) as i32,
        gantry_agent::exec::Ended::Error(why) => {
            eprintln!("gantry exec: {why}");
            255
        }
    })
}

/// The local terminal in raw mode (through `stty`, on the terminal that is stdin) until dropped.
struct RawMode(String);

impl RawMode {
    fn enter() -> Option<RawMode> {
        let saved = stty(&["-g"])?;
        stty(&["raw", "-echo"])?;
        Some(RawMode(saved.trim().to_string()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = stty(&[self.0.as_str()]);
    }
}

fn stty(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("stty")
        .args(args)
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The local terminal's columns and rows.
fn terminal_size() -> Option<(u16, u16)> {
    let out = stty(&["size"])?;
    let mut it = out.split_whitespace().map(|n| n.parse::<u16>().ok());
    let (rows, cols) = (it.next()??, it.next()??);
    Some((cols, rows))
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

/// `gantry spot interrupt`: the GantryInterruptSpot call; the interrupted tasks' ARNs on stdout,
/// the tasks that could not be interrupted on stderr (and exit 1 if any).
async fn spot_interrupt(server: String, region: String, body: serde_json::Value) -> anyhow::Result<()> {
    let client = client_for(&server, &region);
    let out: serde_json::Value =
        client.ecs("GantryInterruptSpot", &body).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    for t in out["tasks"].as_array().into_iter().flatten() {
        say!("{}", t["taskArn"].as_str().unwrap_or_default());
    }
    let failures = out["failures"].as_array().cloned().unwrap_or_default();
    for f in &failures {
        eprintln!(
            "{}: {} ({})",
            f["arn"].as_str().unwrap_or_default(),
            f["reason"].as_str().unwrap_or_default(),
            f["detail"].as_str().unwrap_or_default()
        );
    }
    if !failures.is_empty() {
        anyhow::bail!("{} task(s) not interrupted", failures.len());
    }
    Ok(())
}

/// `gantry logs`: live output from Docker while the task's containers exist, else the logs the
/// agent kept when it removed them.
async fn logs(task: String, follow: bool, data_dir: PathBuf) -> anyhow::Result<()> {
    use gantry_agent::runtime::{Runtime, labels};
    let id = task.rsplit('/').next().unwrap_or(&task).to_string();
    // awslogs containers: what CloudWatch Logs holds, read from the server's own log store.
    if stored_logs(&id, follow, &data_dir).await? {
        return Ok(());
    }
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

/// `gantry logs` for a task whose containers log through awslogs: their streams in the log store
/// under `DATA_DIR/logs` (the same events `aws logs get-log-events` returns), one `==> STREAM <==`
/// section each when there are several. With `follow`, new events are printed as they are
/// stored until the task's containers have stopped. False when the store has no such stream.
async fn stored_logs(id: &str, follow: bool, data_dir: &std::path::Path) -> anyhow::Result<bool> {
    use std::io::Write;
    let root = data_dir.join("logs");
    let streams = gantry_logs::task_streams(&root, id)?;
    if streams.is_empty() {
        return Ok(false);
    }
    let many = streams.len() > 1;
    let mut printed: std::collections::BTreeMap<(String, String), u64> = Default::default();
    let mut out = std::io::stdout().lock();
    let mut print = |streams: Vec<gantry_logs::StoredStream>| -> std::io::Result<()> {
        for s in streams {
            let seen = printed.entry((s.group.clone(), s.stream.clone())).or_default();
            let fresh: Vec<_> = s.events.into_iter().filter(|e| e.seq >= *seen).collect();
            if fresh.is_empty() {
                continue;
            }
            if many {
                writeln!(out, "==> {} <==", s.stream)?;
            }
            for e in &fresh {
                writeln!(out, "{}", e.message)?;
            }
            *seen = fresh.last().map_or(*seen, |e| e.seq + 1);
        }
        out.flush()
    };
    print(streams)?;
    if !follow {
        return Ok(true);
    }
    let docker = gantry_agent::docker::DockerRuntime::connect().await.ok();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let running = match &docker {
            Some(d) => d
                .task_containers(id)
                .await
                .map(|cs| cs.iter().any(|c| c.status == gantry_agent::runtime::ContainerStatus::Running))
                .unwrap_or(false),
            None => false,
        };
        print(gantry_logs::task_streams(&root, id)?)?;
        if !running {
            // The shippers send a stopped container's last lines within a second.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            print(gantry_logs::task_streams(&root, id)?)?;
            return Ok(true);
        }
    }
}

/// Connects to Docker and runs this host's agent as a container instance of a cluster.
async fn run_agent(
    server: String,
    region: String,
    mut opts: gantry_agent::node::InstanceOptions,
    task_subnet: Option<gantry_agent::routes::Subnet>,
    host_address: Option<std::net::Ipv4Addr>,
) -> anyhow::Result<()> {
    let runtime = Arc::new(
        gantry_agent::docker::DockerRuntime::connect()
            .await
            .context("the agent runs tasks in Docker, which is unavailable")?
            .with_task_subnet(task_subnet.map(|s| s.to_string())),
    );
    let client = Arc::new(client_for(&server, &region));
    // awsvpc across hosts: report the subnet and the address peers route it through, and keep
    // the routes to theirs (see gantry_agent::routes).
    let servers = gantry_agent::routes::server_addresses(&server);
    let routed_host = host_address
        .or_else(|| servers.first().copied().and_then(gantry_agent::routes::local_address_towards));
    // Where the host's published ports are reached (ELBv2's instance targets): as peers reach
    // it, or on loopback beside a server reached there.
    let reachable_at = routed_host.or_else(|| servers.first().filter(|s| s.is_loopback()).copied());
    use gantry_agent::routes::HOST_ATTRIBUTE;
    opts.attributes.retain(|(n, _)| n != HOST_ATTRIBUTE);
    if let Some(host) = reachable_at {
        opts.attributes.push((HOST_ATTRIBUTE.into(), host.to_string()));
    }
    let keeper = match task_subnet {
        Some(subnet) => {
            let host = routed_host.context(
                "--task-subnet needs this host's address as the other hosts reach it: give --host-address \
                     (the server is reached on loopback or by name)",
            )?;
            use gantry_agent::routes::SUBNET_ATTRIBUTE;
            opts.attributes.retain(|(n, _)| n != SUBNET_ATTRIBUTE);
            opts.attributes.push((SUBNET_ATTRIBUTE.into(), subnet.to_string()));
            Some(gantry_agent::routes::Keeper::new(
                Some(subnet),
                Some(host),
                servers.clone(),
                Arc::new(gantry_agent::routes::run_command),
            ))
        }
        None => None,
    };
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
    agent.set_updater(gantry_agent::update::Updater::process(opts.data_dir.clone()));
    println!("Gantry agent: cluster {} on {server}", opts.cluster);
    if let Some(keeper) = keeper {
        tokio::spawn(gantry_agent::routes::run(client.clone(), opts.cluster.clone(), keeper));
    }
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

/// The Fargate node's agent of `gantry up`.
type FargateAgent = Arc<gantry_agent::agent::Agent<gantry_agent::docker::DockerRuntime, HttpClient>>;

/// The in-process agent of `gantry up`: Fargate capacity on this host.
async fn start_fargate(
    base: &str,
    dir: &std::path::Path,
    ids: &SeededIds,
    credentials: ClientCredentials,
    holder_pool: usize,
    node: Arc<std::sync::OnceLock<FargateAgent>>,
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
    agent.set_holder_pool(holder_pool);
    let _ = node.set(agent.clone());
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
    let data_dir = common.data_dir.clone().unwrap_or_else(default_data_dir);
    // One process per data directory: a second server would write the same store, and a second
    // `gantry up` would run the same Fargate node twice.
    let _lock = lock_data_dir(&data_dir, &format!("gantry {mode}"))?;
    let auth = common.auth.unwrap_or(if mode == "up" { AuthMode::Open } else { AuthMode::SigV4 });
    let (keys, root) = access_keys(&common, &data_dir, auth)?;
    let sealer = master_key(&data_dir)?;
    // The one registry: every part records into it, `GET /metrics` renders it.
    let metrics = Arc::new(Metrics::new());
    let (store, store_name, etcd) = open_store(&common, &data_dir, &metrics).await?;
    let control = ControlPlane::with_metrics(
        store,
        Arc::new(SystemClock),
        Arc::new(SeededIds::from_entropy()),
        metrics,
    );
    control.set_lost_instance_timeout(common.lost_instance_timeout);
    offer_own_binary(&control);
    // The controllers run behind the leadership gate: on SQLite this server leads alone; the
    // servers sharing an etcd root elect one, and fence its writes by its term.
    let (stop_controllers, controllers_stop) = gantry_runtime::shutdown();
    let (leader, campaign) = leadership(&control, etcd.as_deref(), common.listen);
    let mut controllers = Controllers { leader, stop: controllers_stop, tasks: Vec::new() };
    let c = control.clone();
    controllers.start(|leader, stop| async move { c.run_scheduler(leader, stop).await });
    // Stopped tasks, expired client tokens and old history go, behind the same gate.
    let (c, retention) = (control.clone(), common.stopped_task_retention);
    controllers.start(|leader, stop| async move { c.run_cleanup(retention, leader, stop).await });
    let (cloudwatch, appautoscaling) =
        start_cloudwatch_and_scaling(&mut controllers, &common, &data_dir, &control)?;
    // The load balancers' data plane: listeners on --lb-bind-address, health checks that
    // DescribeTargetHealth reports and the drainer consults; its metrics go to CloudWatch.
    let data_plane = gantry_lb::LoadBalancer::new(
        gantry_lb::Options { bind_address: common.lb_bind_address, ..Default::default() },
        control.clock().clone(),
        control.ids().as_ref(),
        cloudwatch.sink(),
    );
    // EC2 Auto Scaling's instances: agents started by the launchers, by ImageId.
    let launchers = Arc::new(launchers::Launchers::new(
        control.clone(),
        data_dir.clone(),
        common.launchers.iter().cloned().collect(),
    ));
    let mut services =
        Services::new(&control, Arc::new(data_plane.clone())).with_launcher(&control, launchers.clone());
    // Express services' scaling goes through Application Auto Scaling's port.
    control.set_service_scaling(appautoscaling.clone());
    services.appautoscaling = Some(appautoscaling);
    // Cluster auto scaling: capacity providers scale their groups, the metric goes to CloudWatch.
    control.set_capacity(services.autoscaling.clone(), cloudwatch.sink(), common.capacity_scale_in_delay);
    let (groups, metrics) = (services.autoscaling.controller(), control.metrics().clone());
    controllers.start(|leader, stop| async move { groups.run(metrics, leader, stop).await });
    let c = control.clone();
    controllers.start(|leader, stop| async move { c.run_capacity(leader, stop).await });
    // ECS checks services' target groups against ELBv2 through its port.
    control.set_target_registry(services.elbv2.clone());
    // Express services' (and Gateways') load balancers, listeners, rules and target groups.
    control.set_ingress(services.elbv2.clone(), common.express_port);
    control.set_deployment_minute(common.deployment_minute);
    start_elbv2_and_schedules(&mut controllers, &control, &services, data_plane, &cloudwatch);
    let limits = Limits {
        max_connections: common.max_connections,
        header_read_timeout: std::time::Duration::from_secs(common.header_timeout.max(1)),
        body_read_timeout: std::time::Duration::from_secs(common.body_timeout.max(1)),
    };
    let logs = open_logs(&data_dir, &cloudwatch)?;
    // ECS's events (the Spot warning) go on EventBridge's default bus: its rules' targets run.
    control.set_event_bus(Arc::new(gantry_events::bus::Delivery::new(
        control.store().clone(),
        control.clock().clone(),
        control.ids().clone(),
        Arc::new(control.clone()),
        logs.clone(),
        cloudwatch.sink(),
    )));
    // AWS/ECS metrics from the agents' container stats, once a period, and Container Insights'
    // performance events (whose ECS/ContainerInsights metrics CloudWatch Logs extracts); 10 s
    // at most when target tracking uses high-resolution alarms.
    let ecs_metrics_period = if common.appscaling_high_resolution {
        common.ecs_metrics_period.min(10)
    } else {
        common.ecs_metrics_period
    };
    tokio::spawn(publish_ecs_metrics(control.clone(), cloudwatch.sink(), logs.clone(), ecs_metrics_period));
    let agent_control = control.clone();
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
            logs,
            cloudwatch,
            task_session: common.task_credentials_duration,
        },
    );
    let listener = tokio::net::TcpListener::bind(common.listen)
        .await
        .with_context(|| format!("cannot listen on {}", common.listen))?;
    let addr = listener.local_addr()?;
    let endpoint = client_endpoint(addr);
    println!("Gantry {} ({mode}): the AWS APIs are at {endpoint}", env!("CARGO_PKG_VERSION"));
    println!("  account {}, state in {store_name}, auth {}", common.account_id, auth.name());
    // The agents this server starts sign with the root key (any key does under open auth).
    let agent_credentials =
        root.as_ref().map_or_else(ClientCredentials::anonymous, |(c, _)| ClientCredentials {
            access_key_id: c.access_key_id.clone(),
            secret: c.secret.clone(),
            session_token: None,
        });
    launchers
        .set_target(launchers::Target { endpoint: endpoint.clone(), credentials: agent_credentials.clone() });
    // Agents' heartbeats in the store, their polls woken by the store's watch, and this
    // server's record for the others (until the controllers stop, after the API drained).
    let identity = gantry_ecs::agents::Identity {
        url: common.advertise_url.clone().unwrap_or_else(|| endpoint.clone()),
        store: store_name.clone(),
        started: gantry_core::Clock::now(&SystemClock),
    };
    controllers.start(|_, stop| async move { agent_control.run_agent_channel(identity, stop).await });
    // `gantry up`'s Fargate node, once it runs (its ready holders go when the server stops).
    let fargate: Arc<std::sync::OnceLock<FargateAgent>> = Arc::default();
    if mode == "up" {
        spawn_fargate_node(&endpoint, &data_dir, agent_credentials, common.fargate_holder_pool, &fargate);
    }
    greet(mode, &endpoint, root.as_ref());
    tracing::info!(%addr, data_dir = %data_dir.display(), "listening");
    gantry_api::serve(listener, app, limits, terminated()).await?;
    // No new controller pass starts; the passes in flight finish.
    stop_controllers.trigger();
    wind_down(controllers, &launchers, &fargate).await;
    // Another server takes over at once, without waiting for the lease to expire.
    if let Some(campaign) = campaign {
        campaign.resign().await;
    }
    Ok(())
}

/// Starts `gantry up`'s Fargate node in the background: it comes up once the API is serving,
/// at `node`.
fn spawn_fargate_node(
    endpoint: &str,
    data_dir: &std::path::Path,
    credentials: ClientCredentials,
    holder_pool: usize,
    node: &Arc<std::sync::OnceLock<FargateAgent>>,
) {
    let (base, dir, node) = (endpoint.to_string(), data_dir.join("fargate"), node.clone());
    tokio::spawn(async move {
        let ids = SeededIds::from_entropy();
        if let Err(e) = start_fargate(&base, &dir, &ids, credentials, holder_pool, node).await {
            tracing::warn!("no Fargate capacity on this host: {e:#}");
        }
    });
}

/// After the API drained and the controllers were told to stop: their passes in flight finish,
/// the launched instances stop, the Fargate node's ready holders go.
async fn wind_down(
    controllers: Controllers,
    launchers: &launchers::Launchers,
    fargate: &std::sync::OnceLock<FargateAgent>,
) {
    for task in controllers.tasks {
        let _ = task.await;
    }
    launchers.shutdown().await;
    if let Some(agent) = fargate.get() {
        agent.release_holders().await;
    }
}

/// The controllers a server runs, each behind the leadership gate and until the shutdown, and
/// their tasks (awaited, in the order they started, once the API has drained).
struct Controllers {
    leader: Arc<dyn gantry_runtime::Leadership>,
    stop: gantry_runtime::Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Controllers {
    fn start<F>(
        &mut self,
        run: impl FnOnce(Arc<dyn gantry_runtime::Leadership>, gantry_runtime::Shutdown) -> F,
    ) where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(tokio::spawn(run(self.leader.clone(), self.stop.clone())));
    }
}

/// The root access key and the credentials file it is in.
type RootKey = (gantry_ports::Credential, PathBuf);

/// The access keys the front door accepts: under SigV4 the root key, created at first start in
/// DATA_DIR/root-credentials (its path is returned with it); open auth needs none.
fn access_keys(
    common: &Common,
    data_dir: &std::path::Path,
    auth: AuthMode,
) -> anyhow::Result<(Arc<gantry_sts::keys::KeyRing>, Option<RootKey>)> {
    let keys = Arc::new(gantry_sts::keys::KeyRing::new());
    if auth != AuthMode::SigV4 {
        return Ok((keys, None));
    }
    let (credential, path, created) =
        gantry_sts::keys::load_or_create_root(data_dir, &common.account_id, &OsSecrets)
            .context("cannot set up the root access key")?;
    if created {
        tracing::info!(path = %path.display(), "created the root access key");
    }
    keys.insert(credential.clone());
    Ok((keys, Some((credential, path))))
}

/// The store (SQLite in DATA_DIR/gantry.db, or an etcd cluster), moved to the current key
/// layout if an earlier release wrote it; its name for messages, and the etcd store for the
/// election.
async fn open_store(
    common: &Common,
    data_dir: &std::path::Path,
    metrics: &Metrics,
) -> anyhow::Result<(Arc<dyn Store>, String, Option<Arc<EtcdStore>>)> {
    let (store, name, etcd): (Arc<dyn Store>, String, Option<Arc<EtcdStore>>) = match &common.store {
        StoreChoice::Sqlite => {
            let db = data_dir.join("gantry.db");
            let store = SqliteStore::open_with_metrics(&db, metrics.store.clone())
                .with_context(|| format!("cannot open the store at {}", db.display()))?;
            (Arc::new(store), db.display().to_string(), None)
        }
        StoreChoice::Etcd(target) => {
            let store = EtcdStore::connect(target, metrics.store.clone())
                .await
                .with_context(|| format!("cannot open the store at {target}"))?;
            let store = Arc::new(if common.unsafe_stale_reads { store.with_stale_reads() } else { store });
            (store.clone(), target.to_string(), Some(store))
        }
    };
    gantry_ecs::migrate(store.as_ref())
        .await
        .map_err(|e| anyhow::anyhow!("cannot migrate the store at {name}: {}", e.message))?;
    Ok((store, name, etcd))
}

/// The binary agents update to (UpdateContainerAgent): this server's own, as it is now. Read
/// in the background: a debug build is large, and serving need not wait for it.
fn offer_own_binary(control: &ControlPlane) {
    let control = control.clone();
    tokio::task::spawn_blocking(move || {
        let path = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                return tracing::warn!(error = %e, "cannot find this server's binary: agents get no updates");
            }
        };
        match gantry_agent::update::file_sha256(&path) {
            Ok((sha256, size)) => control.set_agent_binary(gantry_ecs::AgentBinary { path, sha256, size }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read this server's binary: agents get no updates")
            }
        }
    });
}

/// Who leads: this server alone on SQLite; on etcd, whoever the election says (this server
/// campaigns under its address and process ID).
fn leadership(
    control: &ControlPlane,
    etcd: Option<&EtcdStore>,
    listen: SocketAddr,
) -> (Arc<dyn gantry_runtime::Leadership>, Option<gantry_store::election::Campaign>) {
    match etcd {
        Some(etcd) => {
            let campaign = etcd.campaign(&format!("{listen} pid {}", std::process::id()));
            let elected = ElectedLeadership::follow(
                campaign.elected(),
                control.metrics().leader.clone(),
                control.metrics().elections.clone(),
            );
            (elected, Some(campaign))
        }
        None => {
            control.metrics().leader.set(1);
            (Arc::new(AlwaysLeader::default()), None)
        }
    }
}

/// CloudWatch metrics and alarms (a time-series store of its own under DATA_DIR/metrics; ECS's
/// deployment alarms read its alarm states), and Application Auto Scaling (desired counts
/// through ECS, target tracking alarms in CloudWatch, whose actions naming scaling policies go
/// to its inbox and are carried out as they come; scheduled actions by a controller).
fn start_cloudwatch_and_scaling(
    controllers: &mut Controllers,
    common: &Common,
    data_dir: &std::path::Path,
    control: &ControlPlane,
) -> anyhow::Result<(Arc<gantry_cloudwatch::CloudWatch>, Arc<gantry_appautoscaling::AppAutoScaling>)> {
    let metrics_dir = data_dir.join("metrics");
    let (inbox, invocations) = gantry_appautoscaling::AppAutoScaling::inbox(control.store().clone());
    let cloudwatch = Arc::new(
        gantry_cloudwatch::CloudWatch::open(
            metrics_dir.clone(),
            control.clock().clone(),
            Arc::new(AlarmRouter { inbox, recorded: gantry_cloudwatch::RecordedActions::default() }),
            (common.account_id.clone(), DEFAULT_REGION.to_string()),
        )
        .with_context(|| format!("cannot open the metric store at {}", metrics_dir.display()))?,
    );
    tokio::spawn(run_cloudwatch(cloudwatch.clone()));
    control.set_alarm_states(cloudwatch.clone());
    let appautoscaling = Arc::new(gantry_appautoscaling::AppAutoScaling::new(
        control.store().clone(),
        control.clock().clone(),
        control.ids().clone(),
        Arc::new(control.clone()),
        cloudwatch.clone(),
        gantry_appautoscaling::Settings { high_resolution: common.appscaling_high_resolution },
    ));
    tokio::spawn(appautoscaling.clone().run_invocations(invocations));
    let (aas, metrics) = (appautoscaling.clone(), control.metrics().clone());
    controllers.start(|leader, stop| async move { aas.run_scheduler(metrics, leader, stop).await });
    Ok((cloudwatch, appautoscaling))
}

/// ELBv2's controllers and EventBridge's schedules: the data plane configured from ELBv2's
/// records as each one is published, load balancers activated, drained targets forgotten,
/// rules' and schedules' firings (RunTask on ECS, metrics to CloudWatch).
fn start_elbv2_and_schedules(
    controllers: &mut Controllers,
    control: &ControlPlane,
    services: &Services,
    data_plane: gantry_lb::LoadBalancer,
    cloudwatch: &Arc<gantry_cloudwatch::CloudWatch>,
) {
    let (feed, configs) = gantry_elbv2::config::ConfigFeed::new(
        control.store().clone(),
        Arc::new(gantry_acm::AcmCertificates::new(control.store().clone())),
        Arc::new(control.clone()),
    );
    controllers.start(|_, stop| feed.run(stop));
    controllers.start(|_, stop| apply_configs(data_plane, configs, stop));
    let (store, metrics) = (control.store().clone(), control.metrics().clone());
    controllers.start(|leader, stop| async move {
        gantry_elbv2::activator::Activator::new(store).run(metrics, leader, stop).await
    });
    let (drainer, metrics) = (services.elbv2.drainer(), control.metrics().clone());
    controllers.start(|leader, stop| drainer.run(metrics, leader, stop));
    let firing = gantry_events::fire::Firing::new(
        control.store().clone(),
        control.clock().clone(),
        Arc::new(control.clone()),
        cloudwatch.sink(),
    );
    let metrics = control.metrics().clone();
    controllers.start(|leader, stop| firing.run(metrics, leader, stop));
    let firing = gantry_scheduler::fire::Firing::new(
        control.store().clone(),
        control.clock().clone(),
        Arc::new(control.clone()),
        cloudwatch.sink(),
    );
    let metrics = control.metrics().clone();
    controllers.start(|leader, stop| firing.run(metrics, leader, stop));
}

/// CloudWatch Logs' store under DATA_DIR/logs (events in embedded metric format become
/// CloudWatch metrics), its retention enforced once a minute (it removes whole segments;
/// CloudWatch's own granularity and more).
fn open_logs(
    data_dir: &std::path::Path,
    cloudwatch: &Arc<gantry_cloudwatch::CloudWatch>,
) -> anyhow::Result<Arc<gantry_logs::Logs>> {
    let logs_dir = data_dir.join("logs");
    let logs = Arc::new(
        gantry_logs::Logs::open(logs_dir.clone(), Arc::new(SystemClock))
            .with_context(|| format!("cannot open the log store at {}", logs_dir.display()))?
            .with_metrics(cloudwatch.sink()),
    );
    let kept = logs.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            let logs = kept.clone();
            let _ = tokio::task::spawn_blocking(move || logs.enforce_retention()).await;
        }
    });
    Ok(logs)
}

/// What the user sees once the server listens: `gantry up` writes their AWS CLI a profile;
/// where the root key is; a first command to try.
fn greet(mode: &str, endpoint: &str, root: Option<&RootKey>) {
    let profile = (mode == "up")
        .then(|| write_aws_profile(endpoint, root.map(|(c, _)| (c.access_key_id.as_str(), &c.secret))));
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
    if let Some((_, path)) = root {
        println!("  the root access key is in {}", path.display());
    }
    println!("Try it:");
    match (&profile, root) {
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
}

/// Resolves on Ctrl-C or SIGTERM.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    tracing::info!("shutting down");
}

/// CloudWatch's alarm actions: scaling policies' to Application Auto Scaling, the rest recorded.
struct AlarmRouter {
    inbox: gantry_appautoscaling::Inbox,
    recorded: gantry_cloudwatch::RecordedActions,
}

impl gantry_cloudwatch::AlarmActions for AlarmRouter {
    fn invoke(&self, action: &gantry_cloudwatch::AlarmAction) -> Result<(), String> {
        if gantry_appautoscaling::Inbox::handles(&action.action) {
            self.inbox.invoke(gantry_appautoscaling::Invocation {
                account: action.account.clone(),
                region: action.region.clone(),
                alarm_name: action.alarm_name.clone(),
                policy_arn: action.action.clone(),
                state: action.state,
            })
        } else {
            self.recorded.invoke(action)
        }
    }
}

/// The region CloudWatch files datapoints under when a publisher names none (the load
/// balancer's).
const DEFAULT_REGION: &str = "us-east-1";

/// CloudWatch's own clockwork: alarms evaluated every 5 seconds (each when its period says),
/// retention and checkpoints once a minute; the store's work off the async workers.
async fn run_cloudwatch(cw: Arc<gantry_cloudwatch::CloudWatch>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    let mut ticks = 0u64;
    loop {
        every.tick().await;
        ticks += 1;
        let cw = cw.clone();
        let _ = tokio::task::spawn_blocking(move || {
            cw.evaluate_alarms();
            if ticks.is_multiple_of(12)
                && let Err(e) = cw.maintain()
            {
                tracing::error!(error = %e, "metric store maintenance failed");
            }
        })
        .await;
    }
}

/// Publishes the AWS/ECS metrics every `period` seconds (60, as ECS does; a shorter period stores
/// them at high resolution), and delivers Container Insights' performance events to CloudWatch
/// Logs for the clusters that have it on.
async fn publish_ecs_metrics(
    control: ControlPlane,
    sink: Arc<dyn gantry_ports::MetricSink>,
    logs: Arc<dyn gantry_ports::LogSink>,
    period: u64,
) {
    let period = period.max(1);
    let mut every = tokio::time::interval(std::time::Duration::from_secs(period));
    every.tick().await;
    loop {
        every.tick().await;
        let (control, sink, logs) = (control.clone(), sink.clone(), logs.clone());
        let _ = tokio::task::spawn_blocking(move || {
            for (scope, data) in control.ecs_metrics(period < 60) {
                sink.put_in(&scope, data);
            }
            for batch in control.container_insights() {
                if let Err(e) = logs.put_events(&batch.account, &batch.region, &batch.group, &batch.stream, batch.events)
                {
                    tracing::warn!(group = %batch.group, error = %e, "cannot deliver Container Insights events");
                }
            }
        })
        .await;
    }
}

/// Applies each configuration the ELBv2 feed publishes to the data plane. A listener whose port
/// cannot be bound (or that is otherwise unservable) is left out, with an error naming it and
/// its address, and the rest is served; the whole configuration is tried again with the next
/// one, or after [`LISTENER_RETRY_FIRST`] (doubling up to [`LISTENER_RETRY_MAX`]) if none comes,
/// so a port that frees up is served without anyone touching ELBv2.
async fn apply_configs(
    data_plane: gantry_lb::LoadBalancer,
    mut configs: tokio::sync::watch::Receiver<Arc<gantry_ports::lb::LbConfig>>,
    mut shutdown: gantry_runtime::Shutdown,
) {
    let mut retry_in = LISTENER_RETRY_FIRST;
    loop {
        let published = configs.borrow_and_update().clone();
        let mut config = gantry_lb::Config::from_ports(&published);
        let mut left_out = false;
        // Every listener is served but the ones that fail, so one bad port blocks nothing else.
        while let Err(e) = data_plane.apply(&config) {
            tracing::error!(error = %e, "a load balancer listener is not served");
            left_out = true;
            let (listener, before) = (e.listener().to_string(), config.listeners.len());
            config.listeners.retain(|l| l.arn != listener);
            if config.listeners.len() == before {
                break;
            }
        }
        tracing::debug!(revision = published.revision, "load balancer configuration applied");
        let retry = async {
            match left_out {
                true => tokio::time::sleep(retry_in).await,
                false => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait() => return,
            changed = configs.changed() => {
                if changed.is_err() { return }
                retry_in = LISTENER_RETRY_FIRST;
            }
            _ = retry => retry_in = (retry_in * 2).min(LISTENER_RETRY_MAX),
        }
    }
}

/// How soon a listener that could not be served is tried again, at first and at most.
const LISTENER_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
const LISTENER_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);
