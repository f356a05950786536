//! The hosts of EC2 Auto Scaling groups: the `Launcher` port, by the launch configuration's
//! ImageId.
//!
//! - `gantry-sim`: a simulated agent in this process (the `gantry sim` agent, its tasks "run" at
//!   once without Docker), declaring its InstanceType's CPU and memory. Gone with the process.
//! - `gantry-local`: a real agent on this host (`gantry agent`, a child process running its
//!   tasks in Docker), its own data directory under `DATA_DIR/asg/INSTANCE-ID`, declaring its
//!   InstanceType's CPU and memory.
//! - `command:NAME`: the operator's script (`gantry server --launcher NAME=SCRIPT`), called as
//!   `SCRIPT create INSTANCE-ID` and `SCRIPT destroy INSTANCE-ID` with the host's details in
//!   the environment (`GANTRY_SERVER`, `GANTRY_INSTANCE_ID`, `ECS_CLUSTER`, `GANTRY_INSTANCE_TYPE`,
//!   `GANTRY_AVAILABILITY_ZONE`, `GANTRY_CPU`, `GANTRY_MEMORY`, `GANTRY_USER_DATA`, and the
//!   agent's credentials as `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`); exit status 0 is
//!   success, anything else a failed launch with the script's last line of stderr. Its host
//!   runs `gantry agent --ec2-instance-id`-less: the script writes `GANTRY_INSTANCE_ID` into the
//!   agent's data directory as `ec2-instance-id` (see the README).
//!
//! Terminating a host stops it and deregisters its container instance (as ECS does when an EC2
//! instance terminates).

use gantry_agent::client::{ClientCredentials, HttpClient};
use gantry_core::{Clock, Scope};
use gantry_ecs::{ControlPlane, Ctx};
use gantry_ports::autoscaling::{HostSpec, Launcher, PortFuture};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// Where hosts' agents find the server, known once the listener is bound.
#[derive(Clone)]
pub struct Target {
    pub endpoint: String,
    pub credentials: ClientCredentials,
}

enum Host {
    Sim { task: tokio::task::JoinHandle<()> },
    Local { child: tokio::process::Child },
    Command,
}

/// Every launcher, chosen per host by its ImageId.
pub struct Launchers {
    target: OnceLock<Target>,
    control: ControlPlane,
    clock: Arc<dyn Clock>,
    data_dir: PathBuf,
    commands: BTreeMap<String, PathBuf>,
    hosts: Mutex<HashMap<String, Host>>,
    /// One client per region for the simulated agents.
    clients: Mutex<HashMap<String, Arc<HttpClient>>>,
}

impl Launchers {
    pub fn new(control: ControlPlane, data_dir: PathBuf, commands: BTreeMap<String, PathBuf>) -> Self {
        let clock = control.clock().clone();
        Launchers {
            target: OnceLock::new(),
            control,
            clock,
            data_dir,
            commands,
            hosts: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Tells the launchers where the server listens.
    pub fn set_target(&self, target: Target) {
        let _ = self.target.set(target);
    }

    fn target(&self) -> Result<&Target, String> {
        self.target.get().ok_or_else(|| "The server is not listening yet.".to_string())
    }

    fn client(&self, region: &str) -> Result<Arc<HttpClient>, String> {
        let t = self.target()?;
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        Ok(clients
            .entry(region.to_string())
            .or_insert_with(|| {
                Arc::new(HttpClient::new(&t.endpoint, region).with_credentials(t.credentials.clone()))
            })
            .clone())
    }

    fn resources(spec: &HostSpec) -> Result<(i64, i64), String> {
        gantry_core::ec2::resources(&spec.instance_type).ok_or_else(|| {
            format!(
                "Gantry does not know the instance type '{}'. Known types: {}.",
                spec.instance_type,
                gantry_core::ec2::TYPES.iter().map(|t| t.0).collect::<Vec<_>>().join(", ")
            )
        })
    }

    async fn launch_sim(&self, spec: &HostSpec) -> Result<(), String> {
        let (cpu, memory_mib) = Self::resources(spec)?;
        let instance_type = gantry_core::ec2::known(&spec.instance_type).unwrap_or("unknown");
        let client = self.client(&spec.region)?;
        let s = gantry_agent::sim::SimInstance {
            zone: spec.availability_zone.clone(),
            instance_type,
            cpu,
            memory_mib,
            attributes: Vec::new(),
            gpus: Vec::new(),
        };
        let arn = gantry_agent::sim::register_as(&client, &spec.cluster, &spec.instance_id, &s)
            .await
            .map_err(|e| format!("The instance could not join cluster {}: {e}", spec.cluster))?;
        let task = gantry_agent::sim::start(client, self.clock.clone(), arn);
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.instance_id.clone(), Host::Sim { task });
        Ok(())
    }

    fn host_dir(&self, spec: &HostSpec) -> PathBuf {
        self.data_dir.join("asg").join(&spec.instance_id)
    }

    async fn launch_local(&self, spec: &HostSpec) -> Result<(), String> {
        let (cpu, memory) = Self::resources(spec)?;
        let t = self.target()?;
        let dir = self.host_dir(spec);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // The agent keeps this identity: the container instance's ec2InstanceId is the group's.
        std::fs::write(dir.join("ec2-instance-id"), &spec.instance_id)
            .map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("agent.log")).map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("agent")
            .args(["--server", &t.endpoint, "--cluster", &spec.cluster, "--region", &spec.region])
            .args(["--instance-type", &spec.instance_type, "--availability-zone", &spec.availability_zone])
            .args(["--cpu", &cpu.to_string(), "--memory", &memory.to_string(), "--no-gpus"])
            .arg("--data-dir")
            .arg(&dir)
            .env("AWS_ACCESS_KEY_ID", &t.credentials.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", t.credentials.secret.expose())
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| format!("cannot start the agent: {e}"))?;
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.instance_id.clone(), Host::Local { child });
        Ok(())
    }

    async fn run_command(&self, name: &str, verb: &str, spec: &HostSpec) -> Result<(), String> {
        let Some(script) = self.commands.get(name) else {
            return Err(format!(
                "No launcher is registered as '{name}' (gantry server --launcher {name}=SCRIPT)."
            ));
        };
        let t = self.target()?;
        let (cpu, memory) = Self::resources(spec).unwrap_or((0, 0));
        let out = tokio::process::Command::new(script)
            .args([verb, &spec.instance_id])
            .env("GANTRY_SERVER", &t.endpoint)
            .env("GANTRY_INSTANCE_ID", &spec.instance_id)
            .env("ECS_CLUSTER", &spec.cluster)
            .env("AWS_DEFAULT_REGION", &spec.region)
            .env("GANTRY_INSTANCE_TYPE", &spec.instance_type)
            .env("GANTRY_AVAILABILITY_ZONE", &spec.availability_zone)
            .env("GANTRY_CPU", cpu.to_string())
            .env("GANTRY_MEMORY", memory.to_string())
            .env("GANTRY_USER_DATA", &spec.user_data)
            .env("AWS_ACCESS_KEY_ID", &t.credentials.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", t.credentials.secret.expose())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        Err(format!("{} {verb} exited with {}: {last}", script.display(), out.status))
    }

    /// Stops the hosts this process runs (`gantry-local` agents are its children, `gantry-sim`
    /// agents its tasks), at shutdown: they would not outlive it in a useful way.
    pub async fn shutdown(&self) {
        let hosts: Vec<Host> =
            self.hosts.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, h)| h).collect();
        for h in hosts {
            match h {
                Host::Sim { task } => task.abort(),
                Host::Local { mut child } => {
                    let _ = child.kill().await;
                }
                Host::Command => {}
            }
        }
    }

    /// Deregisters the container instance whose ec2InstanceId is the host's, if any.
    async fn deregister(&self, spec: &HostSpec) {
        let ctx = Ctx::root(Scope::new(spec.account.clone(), spec.region.clone()));
        let Some(arn) = self.control.container_instance_by_ec2_id(&ctx, &spec.cluster, &spec.instance_id)
        else {
            return;
        };
        let req = gantry_model::DeregisterContainerInstanceRequest {
            cluster: Some(spec.cluster.clone()),
            container_instance: arn.clone(),
            force: Some(true),
        };
        if let Err(e) = self.control.deregister_container_instance(&ctx, req).await {
            tracing::warn!(container_instance = %arn, "deregistering a terminated instance failed: {e}");
        }
    }
}

impl Launcher for Launchers {
    fn launch<'a>(&'a self, spec: &'a HostSpec) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if self.hosts.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&spec.instance_id) {
                return Ok(());
            }
            match spec.image_id.as_str() {
                "gantry-sim" => self.launch_sim(spec).await,
                "gantry-local" => self.launch_local(spec).await,
                other => match other.strip_prefix("command:") {
                    Some(name) => {
                        self.run_command(name, "create", spec).await?;
                        self.hosts
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(spec.instance_id.clone(), Host::Command);
                        Ok(())
                    }
                    None => Err(format!(
                        "The image id '{other}' names no Gantry launcher: use gantry-sim, gantry-local or command:NAME."
                    )),
                },
            }
        })
    }

    fn terminate<'a>(&'a self, spec: &'a HostSpec) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let host = self.hosts.lock().unwrap_or_else(|e| e.into_inner()).remove(&spec.instance_id);
            match host {
                Some(Host::Sim { task }) => task.abort(),
                Some(Host::Local { mut child }) => {
                    let _ = child.kill().await;
                }
                Some(Host::Command) | None => {
                    if let Some(name) = spec.image_id.strip_prefix("command:") {
                        self.run_command(name, "destroy", spec).await?;
                    }
                }
            }
            self.deregister(spec).await;
            Ok(())
        })
    }
}
