//! What a task reserves on its node, and the arithmetic of reserving: the effective definition
//! and size of a task after its overrides (`plan`), the CPU, memory, ports and GPU IDs it holds
//! ([`Reservation`]), taking them from and giving them back to an instance's remaining resources
//! (`apply`), and what placement reads of those resources (`usage`, `need`).
//!
//! Pure: no store, no async. RunTask (`ops/tasks.rs`), placement (`ops/placement.rs`), the
//! fleets (`fleets.rs`) and container instances all use it; it uses none of them.

use crate::gpus;
use gantry_core::validate::{parse_task_cpu, parse_task_memory};
use gantry_core::{EcsError, Result};
use gantry_model::*;
use gantry_placement::engine::Need;
use gantry_placement::snapshot::Usage;
use serde::{Deserialize, Serialize};

/// What a task holds on its node while it is not STOPPED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub cpu: i64,
    pub memory: i64,
    #[serde(default)]
    pub ports_tcp: Vec<u16>,
    #[serde(default)]
    pub ports_udp: Vec<u16>,
    /// The GPU device IDs reserved on the node (from its `GPU` string set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
}

/// Adds (`sign` 1) or subtracts (`sign` -1) a reservation from an instance's remaining resources.
pub(crate) fn apply(resources: &mut [Resource], r: &Reservation, sign: i64) {
    for res in resources.iter_mut() {
        match res.name.as_deref() {
            Some("CPU") => res.integer_value += (sign * r.cpu) as i32,
            Some("MEMORY") => res.integer_value += (sign * r.memory) as i32,
            Some(n @ ("PORTS" | "PORTS_UDP")) => {
                let ports = if n == "PORTS" { &r.ports_tcp } else { &r.ports_udp };
                let set = res.string_set_value.get_or_insert_with(Vec::new);
                for p in ports {
                    let p = p.to_string();
                    if sign < 0 {
                        if !set.contains(&p) {
                            set.push(p);
                        }
                    } else {
                        set.retain(|x| *x != p);
                    }
                }
            }
            Some(gpus::GPU) => {
                if let Some(free) = res.string_set_value.as_mut() {
                    gpus::apply(free, &r.gpus, sign);
                }
            }
            _ => {}
        }
    }
}

/// `need` with concrete GPU IDs for one task: the lowest-sorted IDs still free on the instance
/// (`remaining` is its remaining resources), as many as the task's containers ask for together.
/// Placement has checked that there are enough; if there are not, the task gets what is left.
pub(crate) fn reserve_gpus(remaining: &[Resource], need: &Reservation, def: &TaskDefinition) -> Reservation {
    let wanted: usize = gpus::per_container(def).iter().map(|(_, n)| n).sum();
    let mut r = need.clone();
    r.gpus = gpus::free(remaining).into_iter().take(wanted).collect();
    r
}

/// `r` without the GPU IDs that the instance no longer registers (it may have re-registered
/// with fewer devices while the task ran): those must not come back as free.
pub(crate) fn registered_only(r: &Reservation, registered: &[Resource]) -> Reservation {
    let known = gpus::free(registered);
    let mut r = r.clone();
    r.gpus.retain(|id| known.contains(id));
    r
}

/// The effective container definitions and task size after overrides.
pub(crate) struct Plan {
    pub(crate) def: TaskDefinition,
    pub(crate) overrides: TaskOverride,
    pub(crate) need: Reservation,
    pub(crate) cpu: String,
    pub(crate) memory: String,
}

/// Applies a task's overrides to its definition and works out what it reserves on its node.
pub(crate) fn plan(def: &TaskDefinition, overrides: Option<&TaskOverride>, fargate: bool) -> Result<Plan> {
    let mut def = def.clone();
    let mut ov = overrides.cloned().unwrap_or_default();
    let containers = def.container_definitions.get_or_insert_with(Vec::new);
    for co in ov.container_overrides.iter().flatten() {
        let name = co.name.as_deref().unwrap_or_default();
        let Some(c) = containers.iter_mut().find(|c| c.name.as_deref() == Some(name)) else {
            return Err(EcsError::invalid(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        };
        if let Some(cmd) = &co.command {
            c.command = Some(cmd.clone());
        }
        if let Some(env) = &co.environment {
            let e = c.environment.get_or_insert_with(Vec::new);
            for kv in env {
                e.retain(|x| x.name != kv.name);
                e.push(kv.clone());
            }
        }
        if let Some(cpu) = co.cpu {
            c.cpu = cpu;
        }
        if co.memory.is_some() {
            c.memory = co.memory;
        }
        if co.memory_reservation.is_some() {
            c.memory_reservation = co.memory_reservation;
        }
        // Replaces the definition's requirement of the same type (GPU).
        for rr in co.resource_requirements.iter().flatten() {
            let list = c.resource_requirements.get_or_insert_with(Vec::new);
            list.retain(|x| x.r#type != rr.r#type);
            list.push(rr.clone());
        }
    }
    if let Some(cpu) = &ov.cpu {
        def.cpu = Some(
            parse_task_cpu(cpu)
                .ok_or_else(|| EcsError::invalid(format!("Invalid 'cpu' override: {cpu}")))?
                .to_string(),
        );
    }
    if let Some(m) = &ov.memory {
        def.memory = Some(
            parse_task_memory(m)
                .ok_or_else(|| EcsError::invalid(format!("Invalid 'memory' override: {m}")))?
                .to_string(),
        );
    }
    if ov.task_role_arn.is_some() {
        def.task_role_arn = ov.task_role_arn.clone();
    }
    let containers = def.container_definitions.as_deref().unwrap_or_default();
    let cpu = def
        .cpu
        .as_deref()
        .and_then(parse_task_cpu)
        .unwrap_or_else(|| containers.iter().map(|c| c.cpu.max(0) as i64).sum());
    let memory = def.memory.as_deref().and_then(parse_task_memory).unwrap_or_else(|| {
        containers.iter().map(|c| c.memory.or(c.memory_reservation).unwrap_or(0) as i64).sum()
    });
    let mut need = Reservation { cpu, memory, ..Default::default() };
    let mode = def.network_mode.as_deref().unwrap_or("bridge");
    if !fargate && mode != "awsvpc" && mode != "none" {
        for pm in containers.iter().flat_map(|c| c.port_mappings.iter().flatten()) {
            let host = if mode == "host" { pm.container_port } else { pm.host_port.filter(|p| *p > 0) };
            if let Some(p) = host {
                let list = if pm.protocol.as_deref() == Some("udp") {
                    &mut need.ports_udp
                } else {
                    &mut need.ports_tcp
                };
                list.push(p as u16);
            }
        }
    }
    // ECS lists every container in the overrides it reports.
    let names: Vec<String> = containers.iter().filter_map(|c| c.name.clone()).collect();
    let list = ov.container_overrides.get_or_insert_with(Vec::new);
    for n in names {
        if !list.iter().any(|o| o.name.as_deref() == Some(n.as_str())) {
            list.push(ContainerOverride { name: Some(n), ..Default::default() });
        }
    }
    ov.inference_accelerator_overrides.get_or_insert_with(Vec::new);
    Ok(Plan { def, overrides: ov, need, cpu: cpu.to_string(), memory: memory.to_string() })
}

/// An integer resource (CPU, MEMORY) of an instance's list: its integer and long values summed.
pub(crate) fn resource_int(resources: &[Resource], name: &str) -> i64 {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .map(|r| r.integer_value as i64 + r.long_value)
        .unwrap_or(0)
}

/// A ports resource (PORTS, PORTS_UDP) of an instance's list, parsed.
pub(crate) fn resource_ports(resources: &[Resource], name: &str) -> Vec<u16> {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .and_then(|r| r.string_set_value.as_ref())
        .map(|v| v.iter().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// GPUs: an integer resource, or a string set of device IDs.
pub(crate) fn resource_gpus(resources: &[Resource]) -> i64 {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some("GPU"))
        .map(|r| match &r.string_set_value {
            Some(ids) => ids.len() as i64,
            None => r.integer_value as i64 + r.long_value,
        })
        .unwrap_or(0)
}

/// What an instance's remaining resources leave for placement (its tasks are counted by the
/// caller, from the node index).
pub(crate) fn usage(remaining: &[Resource]) -> Usage {
    Usage {
        cpu: resource_int(remaining, "CPU"),
        memory: resource_int(remaining, "MEMORY"),
        gpus: resource_gpus(remaining),
        ports_tcp: resource_ports(remaining, "PORTS"),
        ports_udp: resource_ports(remaining, "PORTS_UDP"),
        ..Usage::default()
    }
}

/// What a request needs from one instance.
pub(crate) fn need(r: &Reservation, td: &TaskDefinition) -> Need {
    let gpus = td
        .container_definitions
        .iter()
        .flatten()
        .flat_map(|c| c.resource_requirements.iter().flatten())
        .filter(|r| r.r#type == "GPU")
        .filter_map(|r| r.value.as_deref().and_then(|v| v.parse::<i64>().ok()))
        .sum();
    Need {
        cpu: r.cpu,
        memory: r.memory,
        gpus,
        ports_tcp: r.ports_tcp.clone(),
        ports_udp: r.ports_udp.clone(),
        attributes: td
            .requires_attributes
            .iter()
            .flatten()
            .map(|a| (a.name.clone(), a.value.clone()))
            .collect(),
    }
}
