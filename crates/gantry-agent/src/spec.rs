//! From an ECS container definition to a runtime [`ContainerSpec`]: the one place that decides
//! how each ECS field becomes an engine setting.

use crate::runtime::{
    ContainerSpec, HealthCheck, Mount, MountKind, Network, PortBinding, Protocol, Ulimit, labels,
};
use gantry_core::validate::{parse_task_cpu, parse_task_memory};
use gantry_model::{ContainerDefinition, Task, TaskDefinition};
use std::collections::BTreeMap;
use std::time::Duration;

/// The host name under which containers reach the agent's task metadata endpoint (mapped to
/// the engine's host gateway).
pub const METADATA_HOST: &str = "gantry-metadata";

/// Where a task's containers are networked, decided per task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskNetwork {
    /// bridge, host or none: each container on its own.
    Mode(Network),
    /// awsvpc: join this container's namespace.
    Shared(String),
}

/// The engine name of a task's container: unique per node, readable in `docker ps`.
pub fn engine_name(task_arn: &str, container: &str) -> String {
    let id = task_arn.rsplit('/').next().unwrap_or(task_arn);
    format!("ecs-{container}-{id}")
}

/// The GPU device IDs the control plane reserved for this container of the task (its `gpuIds`).
fn gpu_ids(task: &Task, def: &ContainerDefinition) -> Vec<String> {
    task.containers
        .iter()
        .flatten()
        .find(|c| c.name == def.name)
        .and_then(|c| c.gpu_ids.clone())
        .unwrap_or_default()
}

/// The environment variables ECS injects, then the definition's own, then the GPUs' (which the
/// definition cannot change: they must match the devices the container gets).
fn environment(task: &Task, def: &ContainerDefinition, metadata_uri: Option<&str>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(base) = metadata_uri {
        let uri = format!("{base}/{}", def.name.as_deref().unwrap_or_default());
        env.push(("ECS_CONTAINER_METADATA_URI_V4".to_string(), uri.clone()));
        env.push(("ECS_CONTAINER_METADATA_URI".to_string(), uri));
    }
    if let Some(region) = task.task_arn.as_deref().and_then(|a| a.split(':').nth(3)) {
        env.push(("AWS_REGION".to_string(), region.to_string()));
        env.push(("AWS_DEFAULT_REGION".to_string(), region.to_string()));
    }
    for kv in def.environment.iter().flatten() {
        if let (Some(n), Some(v)) = (&kv.name, &kv.value) {
            env.retain(|(k, _)| k != n);
            env.push((n.clone(), v.clone()));
        }
    }
    let gpus = gpu_ids(task, def);
    if !gpus.is_empty() {
        env.retain(|(k, _)| k != NVIDIA_VISIBLE_DEVICES);
        env.push((NVIDIA_VISIBLE_DEVICES.to_string(), gpus.join(",")));
    }
    env
}

/// What the NVIDIA container runtime reads to expose GPUs; the ECS agent sets it to the
/// container's GPU IDs.
pub const NVIDIA_VISIBLE_DEVICES: &str = "NVIDIA_VISIBLE_DEVICES";

/// Builds the spec of one container of a task.
pub fn container_spec(
    node: &str,
    task: &Task,
    td: &TaskDefinition,
    def: &ContainerDefinition,
    network: &TaskNetwork,
    metadata_uri: Option<&str>,
) -> ContainerSpec {
    let task_arn = task.task_arn.clone().unwrap_or_default();
    let name = def.name.clone().unwrap_or_default();
    let l = container_labels(node, task, td, def);
    let Limits { cpu_shares, nano_cpus, memory } = limits(td, def);
    let (net, ports) = network_and_ports(network, def);
    let volumes_from = def
        .volumes_from
        .iter()
        .flatten()
        .filter_map(|vf| {
            Some((engine_name(&task_arn, vf.source_container.as_deref()?), vf.read_only.unwrap_or(false)))
        })
        .collect();
    let lp = def.linux_parameters.as_ref();
    ContainerSpec {
        name: engine_name(&task_arn, &name),
        image: def.image.clone().unwrap_or_default(),
        labels: l,
        entrypoint: def.entry_point.clone(),
        command: def.command.clone(),
        env: environment(task, def, metadata_uri),
        working_dir: def.working_directory.clone(),
        user: def.user.clone(),
        hostname: def.hostname.clone(),
        cpu_shares,
        nano_cpus,
        memory_mib: memory,
        memory_reservation_mib: def.memory_reservation.map(|m| m as i64),
        ports,
        network: net,
        network_aliases: vec![],
        health_check: health_check(def),
        ulimits: def
            .ulimits
            .iter()
            .flatten()
            .map(|u| Ulimit { name: u.name.clone(), soft: u.soft_limit as i64, hard: u.hard_limit as i64 })
            .collect(),
        init: lp.and_then(|l| l.init_process_enabled).unwrap_or(false),
        cap_add: lp.and_then(|l| l.capabilities.as_ref()).and_then(|c| c.add.clone()).unwrap_or_default(),
        cap_drop: lp.and_then(|l| l.capabilities.as_ref()).and_then(|c| c.drop.clone()).unwrap_or_default(),
        read_only_rootfs: def.readonly_root_filesystem.unwrap_or(false),
        privileged: def.privileged.unwrap_or(false),
        extra_hosts: extra_hosts(def, network, metadata_uri),
        dns_servers: def.dns_servers.clone().unwrap_or_default(),
        dns_search: def.dns_search_domains.clone().unwrap_or_default(),
        mounts: mounts(&task_arn, td, def),
        volumes_from,
        stop_timeout: Some(Duration::from_secs(def.stop_timeout.unwrap_or(30).max(0) as u64)),
        gpus: gpu_ids(task, def),
        mac_address: None,
    }
}

/// A container's labels: its definition's, Gantry's (node, cluster, task, name) and ECS's.
fn container_labels(
    node: &str,
    task: &Task,
    td: &TaskDefinition,
    def: &ContainerDefinition,
) -> BTreeMap<String, String> {
    let task_arn = task.task_arn.clone().unwrap_or_default();
    let name = def.name.clone().unwrap_or_default();
    let mut l: BTreeMap<String, String> = def.docker_labels.clone().unwrap_or_default();
    l.insert(labels::NODE.into(), node.into());
    l.insert(labels::CLUSTER.into(), task.cluster_arn.clone().unwrap_or_default());
    l.insert(labels::TASK_ARN.into(), task_arn.clone());
    l.insert(labels::CONTAINER_NAME.into(), name.clone());
    l.insert("com.amazonaws.ecs.task-arn".into(), task_arn.clone());
    l.insert("com.amazonaws.ecs.container-name".into(), name.clone());
    l.insert("com.amazonaws.ecs.cluster".into(), task.cluster_arn.clone().unwrap_or_default());
    l.insert("com.amazonaws.ecs.task-definition-family".into(), td.family.clone().unwrap_or_default());
    l.insert("com.amazonaws.ecs.task-definition-version".into(), td.revision.to_string());
    l
}

/// A container's CPU and memory limits for the engine.
struct Limits {
    cpu_shares: Option<i64>,
    nano_cpus: Option<i64>,
    memory: Option<i64>,
}

/// A container's limits: its own, bounded by the task's (which the only container gets whole).
fn limits(td: &TaskDefinition, def: &ContainerDefinition) -> Limits {
    let single = td.container_definitions.as_ref().is_some_and(|c| c.len() == 1);
    let task_memory = td.memory.as_deref().and_then(parse_task_memory);
    let task_cpu = td.cpu.as_deref().and_then(parse_task_cpu);
    // Task-level limits bound every container (and exactly the only one).
    let memory = match (def.memory, task_memory) {
        (Some(m), Some(t)) => Some((m as i64).min(t)),
        (Some(m), None) => Some(m as i64),
        (None, Some(t)) => Some(t),
        (None, None) => None,
    };
    let nano_cpus = task_cpu.map(|c| c * 1_000_000_000 / 1024);
    let cpu_shares = if def.cpu > 0 {
        Some((def.cpu as i64).max(2))
    } else if single {
        task_cpu
    } else {
        None
    };
    Limits { cpu_shares, nano_cpus, memory }
}

/// A container's network, and its published ports (bridge mode only).
fn network_and_ports(network: &TaskNetwork, def: &ContainerDefinition) -> (Network, Vec<PortBinding>) {
    match network {
        TaskNetwork::Shared(id) => (Network::Container(id.clone()), Vec::new()),
        TaskNetwork::Mode(mode) => {
            let ports = if matches!(mode, Network::Bridge) {
                def.port_mappings
                    .iter()
                    .flatten()
                    .filter_map(|pm| {
                        Some(PortBinding {
                            container_port: u16::try_from(pm.container_port?).ok()?,
                            host_port: pm.host_port.filter(|p| *p > 0).and_then(|p| u16::try_from(p).ok()),
                            protocol: if pm.protocol.as_deref() == Some("udp") {
                                Protocol::Udp
                            } else {
                                Protocol::Tcp
                            },
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            (mode.clone(), ports)
        }
    }
}

/// A container's health check, with ECS's defaults.
fn health_check(def: &ContainerDefinition) -> Option<HealthCheck> {
    def.health_check.as_ref().map(|h| HealthCheck {
        test: h.command.clone(),
        interval_s: h.interval.unwrap_or(30).max(1) as u32,
        timeout_s: h.timeout.unwrap_or(5).max(1) as u32,
        retries: h.retries.unwrap_or(3).max(1) as u32,
        start_period_s: h.start_period.unwrap_or(0).max(0) as u32,
    })
}

/// A container's mount points: bind mounts of host paths, else docker volumes (per task
/// unless shared).
fn mounts(task_arn: &str, td: &TaskDefinition, def: &ContainerDefinition) -> Vec<Mount> {
    let volumes = td.volumes.as_deref().unwrap_or_default();
    let task_id = task_arn.rsplit('/').next().unwrap_or_default();
    def.mount_points
        .iter()
        .flatten()
        .filter_map(|mp| {
            let v = volumes.iter().find(|v| v.name == mp.source_volume)?;
            let target = mp.container_path.clone()?;
            let read_only = mp.read_only.unwrap_or(false);
            if let Some(path) = v.host.as_ref().and_then(|h| h.source_path.clone()) {
                return Some(Mount { kind: MountKind::Bind, source: path, target, read_only });
            }
            let name = v.name.clone().unwrap_or_default();
            // A docker volume with scope "shared" keeps its name; task-scoped ones are per task.
            let shared =
                v.docker_volume_configuration.as_ref().is_some_and(|d| d.scope.as_deref() == Some("shared"));
            let source = if shared { name } else { format!("ecs-{task_id}-{name}") };
            Some(Mount { kind: MountKind::Volume, source, target, read_only })
        })
        .collect()
}

/// A container's extra hosts entries, and the metadata endpoint's name when it is served.
fn extra_hosts(def: &ContainerDefinition, network: &TaskNetwork, metadata_uri: Option<&str>) -> Vec<String> {
    let mut hosts: Vec<String> =
        def.extra_hosts.iter().flatten().map(|h| format!("{}:{}", h.hostname, h.ip_address)).collect();
    // The metadata endpoint's name; containers in another's namespace share its hosts file.
    if metadata_uri.is_some() && !matches!(network, TaskNetwork::Shared(_)) {
        hosts.push(format!("{METADATA_HOST}:host-gateway"));
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_model::KeyValuePair;
    use serde_json::json;

    fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn maps_ecs_fields_to_engine_settings() {
        let task: Task = parse(
            json!({"taskArn": "arn:aws:ecs:eu-west-1:1:task/c/abc", "clusterArn": "arn:aws:ecs:eu-west-1:1:cluster/c"}),
        );
        let td: TaskDefinition = parse(json!({"family": "web", "revision": 3, "memory": "512",
            "volumes": [{"name": "data", "host": {"sourcePath": "/srv"}}, {"name": "scratch"}],
            "containerDefinitions": [{"name": "a"}, {"name": "b"}]}));
        let def: ContainerDefinition = parse(json!({
            "name": "a", "image": "img", "cpu": 256, "memory": 1024, "memoryReservation": 128,
            "command": ["sh", "-c", "x"], "entryPoint": ["/e"], "environment": [{"name": "AWS_REGION", "value": "mine"}, {"name": "K", "value": "V"}],
            "portMappings": [{"containerPort": 80}, {"containerPort": 53, "hostPort": 5353, "protocol": "udp"}],
            "healthCheck": {"command": ["CMD-SHELL", "true"], "interval": 5},
            "stopTimeout": 2, "dockerLabels": {"team": "web"},
            "mountPoints": [{"sourceVolume": "data", "containerPath": "/d", "readOnly": true}, {"sourceVolume": "scratch", "containerPath": "/s"}],
            "volumesFrom": [{"sourceContainer": "b"}],
            "linuxParameters": {"initProcessEnabled": true, "capabilities": {"add": ["NET_ADMIN"]}},
            "ulimits": [{"name": "nofile", "softLimit": 10, "hardLimit": 20}],
            "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.1"}]
        }));
        let s = container_spec(
            "node-1",
            &task,
            &td,
            &def,
            &TaskNetwork::Mode(Network::Bridge),
            Some("http://md/v4/x"),
        );
        assert_eq!(s.name, "ecs-a-abc");
        assert_eq!(s.labels["gantry.task-arn"], "arn:aws:ecs:eu-west-1:1:task/c/abc");
        assert_eq!(s.labels["gantry.node"], "node-1");
        assert_eq!(s.labels["team"], "web");
        // The container limit is bounded by the task's memory.
        assert_eq!((s.memory_mib, s.memory_reservation_mib, s.cpu_shares), (Some(512), Some(128), Some(256)));
        assert_eq!(s.ports[0], PortBinding { container_port: 80, host_port: None, protocol: Protocol::Tcp });
        assert_eq!(
            s.ports[1],
            PortBinding { container_port: 53, host_port: Some(5353), protocol: Protocol::Udp }
        );
        assert!(s.env.contains(&("AWS_REGION".into(), "mine".into())));
        assert!(s.env.contains(&("ECS_CONTAINER_METADATA_URI_V4".into(), "http://md/v4/x/a".into())));
        assert!(s.extra_hosts.contains(&"gantry-metadata:host-gateway".to_string()));
        assert_eq!(s.health_check.as_ref().unwrap().interval_s, 5);
        assert_eq!(s.stop_timeout, Some(Duration::from_secs(2)));
        assert_eq!(
            s.mounts[0],
            Mount { kind: MountKind::Bind, source: "/srv".into(), target: "/d".into(), read_only: true }
        );
        assert_eq!(s.mounts[1].source, "ecs-abc-scratch");
        assert_eq!(s.volumes_from, vec![("ecs-b-abc".to_string(), false)]);
        assert!(s.init);
        assert_eq!(s.cap_add, vec!["NET_ADMIN".to_string()]);
        assert_eq!(
            s.extra_hosts,
            vec!["db:10.0.0.1".to_string(), "gantry-metadata:host-gateway".to_string()]
        );
        // awsvpc containers share a namespace and publish nothing.
        let shared = container_spec("n", &task, &td, &def, &TaskNetwork::Shared("pause".into()), None);
        assert_eq!((shared.network, shared.ports.len()), (Network::Container("pause".into()), 0));
        // No GPUs were reserved for it: none asked of the engine.
        assert!(s.gpus.is_empty());
        assert!(!s.env.iter().any(|(k, _)| k == NVIDIA_VISIBLE_DEVICES));
    }

    #[test]
    fn reserved_gpus_become_the_containers_devices() {
        let task: Task = parse(json!({"taskArn": "arn:aws:ecs:eu-west-1:1:task/c/abc", "containers": [
            {"name": "train", "gpuIds": ["GPU-aaaa", "GPU-bbbb"]}, {"name": "log"}]}));
        let td: TaskDefinition = parse(json!({"family": "ml", "containerDefinitions": [
            {"name": "train", "resourceRequirements": [{"type": "GPU", "value": "2"}]}, {"name": "log"}]}));
        let defs = td.container_definitions.clone().unwrap();
        let mut train = defs[0].clone();
        // The definition cannot point the container at other devices.
        train.environment =
            Some(vec![KeyValuePair { name: Some(NVIDIA_VISIBLE_DEVICES.into()), value: Some("all".into()) }]);
        let net = TaskNetwork::Mode(Network::Bridge);
        let s = container_spec("n", &task, &td, &train, &net, None);
        assert_eq!(s.gpus, vec!["GPU-aaaa".to_string(), "GPU-bbbb".to_string()]);
        let visible: Vec<&String> =
            s.env.iter().filter(|(k, _)| k == NVIDIA_VISIBLE_DEVICES).map(|(_, v)| v).collect();
        assert_eq!(visible, vec!["GPU-aaaa,GPU-bbbb"]);
        let log = container_spec("n", &task, &td, &defs[1], &net, None);
        assert!(log.gpus.is_empty());
        assert!(!log.env.iter().any(|(k, _)| k == NVIDIA_VISIBLE_DEVICES));
    }
}
