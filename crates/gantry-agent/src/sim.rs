//! A simulated fleet (like Kubernetes' kubemark hollow nodes): N container instances in one
//! process, each a real [`Agent`] over HTTP with a simulated runtime, so the server sees exactly
//! the registration, long polls and state reports of real agents, while tasks "run" at once and
//! cost nothing. For load tests, benchmarks and capacity planning (`gantry sim`).

use crate::agent::{Agent, AgentConfig};
use crate::client::{ClientError, HttpClient};
use crate::fake::FakeRuntime;
use gantry_core::Clock;
use gantry_model::*;
use std::sync::Arc;
use std::time::Duration;

/// Instance types the fleet draws from: name, vCPUs, memory (GiB).
pub const INSTANCE_TYPES: &[(&str, i64, i64)] = &[
    ("m5.large", 2, 8),
    ("m5.xlarge", 4, 16),
    ("m5.2xlarge", 8, 32),
    ("c5.xlarge", 4, 8),
    ("c5.2xlarge", 8, 16),
    ("r5.large", 2, 16),
    ("r5.xlarge", 4, 32),
];

/// What a simulated fleet looks like.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub cluster: String,
    pub instances: usize,
    pub zones: usize,
    pub seed: u64,
    /// The index of the fleet's first instance: a fleet split over several processes (one
    /// `gantry sim` per host) gives each its own slice, the instances one process would make.
    pub first: usize,
    /// Registrations in flight at once.
    pub concurrency: usize,
    /// GPUs on every instance (simulated device IDs).
    pub gpus: usize,
}

/// One simulated instance, derived from the seed and its index: zone, type and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimInstance {
    pub zone: String,
    pub instance_type: &'static str,
    pub cpu: i64,
    pub memory_mib: i64,
    pub attributes: Vec<(String, String)>,
    /// Its GPU device IDs.
    pub gpus: Vec<String>,
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `i`-th instance of a fleet: the same seed always gives the same fleet.
pub fn instance(opts: &FleetOptions, i: usize) -> SimInstance {
    let r = mix(opts.seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let zone = format!("zone-{}", (b'a' + (i % opts.zones.max(1)) as u8) as char);
    let (ty, vcpu, gib) = INSTANCE_TYPES[(r % INSTANCE_TYPES.len() as u64) as usize];
    let stack = ["prod", "staging", "dev"][((r >> 8) % 3) as usize];
    let team = ["payments", "search", "web", "data"][((r >> 16) % 4) as usize];
    SimInstance {
        zone,
        instance_type: ty,
        cpu: vcpu * 1024,
        // What the ECS agent reports: the machine's memory less what the OS keeps.
        memory_mib: gib * 1024 - 256,
        attributes: vec![("stack".into(), stack.into()), ("team".into(), team.into())],
        gpus: (0..opts.gpus).map(|g| format!("GPU-sim-{i:06}-{g:03}")).collect(),
    }
}

async fn register(client: &HttpClient, opts: &FleetOptions, i: usize) -> Result<String, ClientError> {
    let s = instance(opts, i);
    let id = format!("i-sim{:013x}", mix(opts.seed ^ i as u64) >> 12);
    register_as(client, &opts.cluster, &id, &s).await
}

/// Registers one simulated instance with its EC2 instance ID; its container instance's ARN.
pub async fn register_as(
    client: &HttpClient,
    cluster: &str,
    ec2_instance_id: &str,
    s: &SimInstance,
) -> Result<String, ClientError> {
    let int = |name: &str, v: i64| Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: v as i32,
        ..Default::default()
    };
    let mut attributes: Vec<Attribute> = [
        ("ecs.os-type", "linux"),
        ("ecs.cpu-architecture", "x86_64"),
        ("ecs.availability-zone", s.zone.as_str()),
        ("ecs.instance-type", s.instance_type),
        ("ecs.ami-id", "ami-gantrysim"),
    ]
    .iter()
    .map(|(n, v)| Attribute { name: n.to_string(), value: Some(v.to_string()), ..Default::default() })
    .collect();
    attributes.extend(
        crate::node::CAPABILITIES.iter().map(|c| Attribute { name: c.to_string(), ..Default::default() }),
    );
    attributes.extend(s.attributes.iter().map(|(n, v)| Attribute {
        name: n.clone(),
        value: Some(v.clone()),
        ..Default::default()
    }));
    let mut resources = vec![int("CPU", s.cpu), int("MEMORY", s.memory_mib)];
    if !s.gpus.is_empty() {
        resources.push(crate::node::gpu_resource(&s.gpus));
        attributes.push(Attribute { name: crate::node::GPU_CAPABILITY.into(), ..Default::default() });
    }
    let req = RegisterContainerInstanceRequest {
        cluster: Some(cluster.to_string()),
        instance_identity_document: Some(
            serde_json::json!({"instanceId": ec2_instance_id, "instanceType": s.instance_type, "availabilityZone": s.zone}).to_string(),
        ),
        total_resources: Some(resources),
        version_info: Some(VersionInfo {
            agent_version: Some(env!("CARGO_PKG_VERSION").into()),
            agent_hash: Some("gantry-sim".into()),
            docker_version: Some("DockerVersion: simulated".into()),
        }),
        attributes: Some(attributes),
        ..Default::default()
    };
    let resp: RegisterContainerInstanceResponse = client.ecs("RegisterContainerInstance", &req).await?;
    Ok(resp.container_instance.and_then(|c| c.container_instance_arn).unwrap_or_default())
}

/// Starts one simulated instance's agent (an Auto Scaling group's `gantry-sim` instance), already
/// registered as `arn`, on `client`; runs until aborted.
pub fn start(client: Arc<HttpClient>, clock: Arc<dyn Clock>, arn: String) -> tokio::task::JoinHandle<()> {
    let agent = Agent::new(
        Arc::new(FakeRuntime::simulated()),
        client,
        clock,
        AgentConfig {
            node: arn,
            pull_always: false,
            logs_dir: None,
            health_interval: Duration::from_secs(30),
            metadata_base: None,
            credentials: None,
        },
    );
    tokio::spawn(agent.run())
}

/// How many simulated agents share one local address (and one connection pool).
const AGENTS_PER_ADDRESS: usize = 64;

/// The local address the `n`-th group of agents connects from: when the server is on the IPv4
/// loopback, an address of its own in 127.1.0.0/16. Real agents each connect from their own
/// host; a fleet in one process connecting from one address has every connection to the server
/// share one range of ephemeral ports, and the kernel then searches that crowded range for a
/// free port at every connect (a third of the process's CPU, measured, when idle connections
/// were closed and opened again).
fn source_address(client: &HttpClient, n: usize) -> Option<std::net::IpAddr> {
    match client.server_ip() {
        Some(std::net::IpAddr::V4(ip)) if ip.is_loopback() => {
            let n = n % 65_534 + 1;
            Some(std::net::Ipv4Addr::new(127, 1, (n >> 8) as u8, n as u8).into())
        }
        _ => None,
    }
}

/// Registers the fleet and runs every instance's agent until the process ends. `on_ready` is
/// called once every instance is registered and polling.
pub async fn run(
    client: HttpClient,
    clock: Arc<dyn Clock>,
    opts: FleetOptions,
    on_ready: impl FnOnce(usize),
) -> Result<(), ClientError> {
    let client = Arc::new(client);
    let mut arns = Vec::with_capacity(opts.instances);
    let (mut next, last) = (opts.first, opts.first + opts.instances);
    while next < last {
        let end = (next + opts.concurrency.max(1)).min(last);
        let batch: Vec<_> = (next..end)
            .map(|i| {
                let (client, opts) = (client.clone(), opts.clone());
                tokio::spawn(async move { register(&client, &opts, i).await })
            })
            .collect();
        for b in batch {
            arns.push(b.await.map_err(|e| ClientError::Transport(e.to_string()))??);
        }
        next = end;
    }
    let mut agents = Vec::with_capacity(arns.len());
    let mut group = client.clone();
    for (i, arn) in arns.into_iter().enumerate() {
        if i % AGENTS_PER_ADDRESS == 0
            && let Some(local) = source_address(&client, i / AGENTS_PER_ADDRESS)
        {
            group = Arc::new(client.bound_to(local));
        }
        let agent = Agent::new(
            Arc::new(FakeRuntime::simulated()),
            group.clone(),
            clock.clone(),
            AgentConfig {
                node: arn,
                pull_always: false,
                logs_dir: None,
                health_interval: Duration::from_secs(30),
                metadata_base: None,
                credentials: None,
            },
        );
        agents.push(tokio::spawn(agent.run()));
    }
    on_ready(agents.len());
    for a in agents {
        let _ = a.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_on_loopback_connect_from_addresses_of_their_own() {
        let local = HttpClient::new("http://127.0.0.1:8080", "us-east-1");
        assert_eq!(local.server_ip(), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(source_address(&local, 0), Some("127.1.0.1".parse().unwrap()));
        assert_eq!(source_address(&local, 300), Some("127.1.1.45".parse().unwrap()));
        for remote in ["http://10.0.0.5:8080/", "http://gantry.internal:8080", "http://[::1]:8080"] {
            assert_eq!(source_address(&HttpClient::new(remote, "us-east-1"), 0), None, "{remote}");
        }
        assert_eq!(HttpClient::new("http://[::1]:8080/", "r").server_ip(), Some("::1".parse().unwrap()));
    }

    #[test]
    fn fleets_are_varied_and_replayable() {
        let opts = FleetOptions {
            cluster: "c".into(),
            instances: 300,
            zones: 3,
            seed: 7,
            first: 0,
            concurrency: 8,
            gpus: 0,
        };
        let fleet: Vec<_> = (0..300).map(|i| instance(&opts, i)).collect();
        assert_eq!(fleet, (0..300).map(|i| instance(&opts, i)).collect::<Vec<_>>());
        for z in ["zone-a", "zone-b", "zone-c"] {
            assert_eq!(fleet.iter().filter(|s| s.zone == z).count(), 100);
        }
        let types: std::collections::HashSet<_> = fleet.iter().map(|s| s.instance_type).collect();
        assert!(types.len() >= 5, "{types:?}");
        let other = FleetOptions { seed: 8, ..opts.clone() };
        assert_ne!(fleet, (0..300).map(|i| instance(&other, i)).collect::<Vec<_>>());
        assert!(fleet.iter().all(|s| s.gpus.is_empty()));
        let gpus = FleetOptions { gpus: 4, ..opts.clone() };
        let (a, b) = (instance(&gpus, 0).gpus, instance(&gpus, 1).gpus);
        assert_eq!(
            a,
            vec!["GPU-sim-000000-000", "GPU-sim-000000-001", "GPU-sim-000000-002", "GPU-sim-000000-003"]
        );
        assert!(a.iter().all(|g| !b.contains(g)), "IDs are unique in the fleet");
    }
}
