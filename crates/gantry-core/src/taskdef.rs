//! RegisterTaskDefinition: ECS's validation rules and the fields ECS computes.
//!
//! [`build`] turns a request into the task definition ECS would store, or into the error ECS
//! would give, with ECS's own messages. It is pure: the ARN scope, revision, time and caller come
//! in as arguments.

use crate::arn::Scope;
use crate::error::{EcsError, Result};
use crate::time::Timestamp;
use crate::validate::{check_fargate_size, is_valid_name, parse_task_cpu, parse_task_memory, validate_tags};
use gantry_model::{
    Attribute, ContainerDefinition, PortMapping, RegisterTaskDefinitionRequest, TaskDefinition,
};
use std::collections::HashSet;

/// The most containers a task definition may have.
pub const MAX_CONTAINERS: usize = 10;

const NETWORK_MODES: &[&str] = &["bridge", "host", "awsvpc", "none"];
const COMPATIBILITIES: &[&str] = &["EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"];
const CONDITIONS: &[&str] = &["START", "COMPLETE", "SUCCESS", "HEALTHY"];

fn client(msg: impl Into<String>) -> EcsError {
    EcsError::client(msg)
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(EcsError::invalid(format!(
            "{field} should be one of [{}], but was '{value}'.",
            allowed.join(",")
        )))
    }
}

/// What the caller supplies besides the request.
pub struct Registration<'a> {
    pub scope: &'a Scope,
    pub revision: i32,
    pub now: Timestamp,
    pub registered_by: &'a str,
}

/// Validates `req` and builds the ACTIVE task definition ECS would store for it.
pub fn build(req: &RegisterTaskDefinitionRequest, reg: &Registration<'_>) -> Result<TaskDefinition> {
    let family = check_family(req)?;
    let fargate = check_modes(req)?;
    let (task_cpu, task_memory) = check_task_size(req, fargate)?;
    let volume_names = check_volumes(req, fargate)?;
    let names = check_container_names(&req.container_definitions)?;
    let mut containers = Vec::with_capacity(req.container_definitions.len());
    let (mut sum_cpu, mut any_essential) = (0i64, false);
    for c in &req.container_definitions {
        containers.push(check_container(c, req, &names, &volume_names, task_memory, fargate)?);
        sum_cpu += c.cpu.max(0) as i64;
        any_essential |= c.essential.unwrap_or(true);
    }
    if !any_essential {
        return Err(client("Task definition doesn't have any essential container."));
    }
    if let Some(cpu) = task_cpu
        && sum_cpu > cpu
    {
        return Err(client(
            "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.",
        ));
    }
    check_execution_role(req, &containers, fargate)?;
    let mut td = task_definition(req, reg, family, containers, task_cpu, task_memory);
    td.compatibilities = Some(compatibilities(&td));
    td.requires_attributes = Some(requires_attributes(&td));
    if fargate && !td.compatibilities.iter().flatten().any(|c| c == "FARGATE") {
        return Err(client(
            "Task definition is not compatible with FARGATE: it uses a container setting Fargate does not support.",
        ));
    }
    Ok(td)
}

/// The family, trimmed: not blank, a valid name; and the request's tags.
fn check_family(req: &RegisterTaskDefinitionRequest) -> Result<&str> {
    let family = req.family.trim();
    if family.is_empty() {
        return Err(client("Family can not be blank."));
    }
    if !is_valid_name(family) {
        return Err(client(if family.len() > 255 {
            "Family name must be 255 characters or less."
        } else {
            "Family contains invalid characters."
        }));
    }
    if let Some(tags) = &req.tags {
        validate_tags(tags)?;
    }
    Ok(family)
}

/// The compatibilities and the network, PID and IPC modes are among ECS's values; whether the
/// task definition requires Fargate.
fn check_modes(req: &RegisterTaskDefinitionRequest) -> Result<bool> {
    let requires = req.requires_compatibilities.as_deref().unwrap_or_default();
    for c in requires {
        one_of("requiresCompatibilities", c, COMPATIBILITIES)?;
    }
    if let Some(mode) = &req.network_mode {
        one_of("networkMode", mode, NETWORK_MODES)?;
    }
    if let Some(m) = &req.pid_mode {
        one_of("pidMode", m, &["host", "task"])?;
    }
    if let Some(m) = &req.ipc_mode {
        one_of("ipcMode", m, &["host", "task", "none"])?;
    }
    Ok(requires.iter().any(|c| c == "FARGATE"))
}

/// The task's CPU units and MiB, each if given; on Fargate, both given, a Fargate size, with
/// `awsvpc` and no host PID or IPC mode. The ephemeral storage's size.
fn check_task_size(req: &RegisterTaskDefinitionRequest, fargate: bool) -> Result<(Option<i64>, Option<i64>)> {
    let task_cpu = match &req.cpu {
        None => None,
        Some(s) => Some(parse_task_cpu(s).ok_or_else(|| client("Invalid 'cpu' setting for task."))?),
    };
    let task_memory = match &req.memory {
        None => None,
        Some(s) => Some(parse_task_memory(s).ok_or_else(|| client("Invalid 'memory' setting for task."))?),
    };
    if fargate {
        if req.network_mode.as_deref() != Some("awsvpc") {
            return Err(client("Fargate only supports network mode \u{2018}awsvpc\u{2019}."));
        }
        let cpu =
            task_cpu.ok_or_else(|| client("Fargate requires that 'cpu' be defined at the task level."))?;
        let memory = task_memory
            .ok_or_else(|| client("Fargate requires that 'memory' be defined at the task level."))?;
        check_fargate_size(cpu, memory).map_err(|_| {
            client(format!(
                "No Fargate configuration exists for given values: {} CPU, {} memory. See the Amazon ECS documentation for the valid values.",
                req.cpu.as_deref().unwrap_or_default(),
                req.memory.as_deref().unwrap_or_default()
            ))
        })?;
        if let Some(m) = req.pid_mode.as_deref().filter(|m| *m != "task") {
            return Err(client(format!(
                "Tasks using the Fargate launch type do not support pidMode '{m}'. The supported value for pidMode is 'task'."
            )));
        }
        if req.ipc_mode.is_some() {
            return Err(client("Fargate compatible task definitions do not support ipcMode."));
        }
    }
    if let Some(es) = &req.ephemeral_storage
        && !(21..=200).contains(&es.size_in_gi_b)
    {
        return Err(client(format!(
            "The ephemeral storage size must be between 21 and 200 GiB, but was {}.",
            es.size_in_gi_b
        )));
    }
    Ok((task_cpu, task_memory))
}

/// The volumes' names: each given, unique; no host source path on Fargate.
fn check_volumes(req: &RegisterTaskDefinitionRequest, fargate: bool) -> Result<HashSet<&str>> {
    let mut volume_names = HashSet::new();
    for v in req.volumes.iter().flatten() {
        let name = v.name.as_deref().unwrap_or("");
        if name.is_empty() {
            return Err(client("Volume.name should not be null or empty."));
        }
        if !volume_names.insert(name) {
            return Err(client(format!(
                "Volume names must be unique within a Task Definition: '{name}' is repeated."
            )));
        }
        if fargate && v.host.as_ref().and_then(|h| h.source_path.as_ref()).is_some() {
            return Err(client(format!(
                "Host volume '{name}' with a sourcePath is not supported on Fargate."
            )));
        }
    }
    Ok(volume_names)
}

/// The containers' names: 1 to `MAX_CONTAINERS` containers, each named validly and uniquely.
fn check_container_names(defs: &[ContainerDefinition]) -> Result<HashSet<&str>> {
    if defs.is_empty() {
        return Err(client("Container list cannot be empty."));
    }
    if defs.len() > MAX_CONTAINERS {
        return Err(client("Too many containers."));
    }
    let mut names = HashSet::new();
    for c in defs {
        let name = c.name.as_deref().unwrap_or("");
        if name.is_empty() {
            return Err(client("Container.name should not be null or empty."));
        }
        if !is_valid_name(name) {
            return Err(client("Container.name contains invalid characters."));
        }
        if !names.insert(name) {
            return Err(client("Container names must be unique within a Task Definition."));
        }
    }
    Ok(names)
}

/// Secrets, private registry credentials and (on Fargate) awslogs need an execution role.
fn check_execution_role(
    req: &RegisterTaskDefinitionRequest,
    containers: &[ContainerDefinition],
    fargate: bool,
) -> Result<()> {
    let needs_execution_role = containers.iter().any(|c| {
        c.secrets.as_ref().is_some_and(|s| !s.is_empty())
            || c.repository_credentials.is_some()
            || (fargate && c.log_configuration.as_ref().is_some_and(|l| l.log_driver == "awslogs"))
    });
    if needs_execution_role && req.execution_role_arn.is_none() {
        let awslogs = containers
            .iter()
            .any(|c| c.log_configuration.as_ref().is_some_and(|l| l.log_driver == "awslogs"));
        return Err(client(if fargate && awslogs {
            "Fargate requires task definition to have execution role ARN to support log driver awslogs."
        } else {
            "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'."
        }));
    }
    Ok(())
}

/// The ACTIVE task definition of a validated request (its compatibilities and required
/// attributes still to be derived).
fn task_definition(
    req: &RegisterTaskDefinitionRequest,
    reg: &Registration<'_>,
    family: &str,
    containers: Vec<ContainerDefinition>,
    task_cpu: Option<i64>,
    task_memory: Option<i64>,
) -> TaskDefinition {
    // An EFS volume without a root directory mounts the file system's root, and ECS says so.
    let mut volumes = req.volumes.clone().unwrap_or_default();
    for v in &mut volumes {
        if let Some(efs) = &mut v.efs_volume_configuration {
            efs.root_directory.get_or_insert_with(|| "/".to_string());
        }
    }
    TaskDefinition {
        task_definition_arn: Some(reg.scope.task_definition_arn(family, reg.revision)),
        container_definitions: Some(containers),
        family: Some(family.to_string()),
        task_role_arn: req.task_role_arn.clone(),
        execution_role_arn: req.execution_role_arn.clone(),
        network_mode: req.network_mode.clone(),
        revision: reg.revision,
        volumes: Some(volumes),
        status: Some(crate::TaskDefinitionStatus::Active.as_str().to_string()),
        requires_attributes: None,
        placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
        compatibilities: None,
        runtime_platform: req.runtime_platform.clone(),
        requires_compatibilities: req.requires_compatibilities.clone(),
        cpu: task_cpu.map(|c| c.to_string()),
        memory: task_memory.map(|m| m.to_string()),
        inference_accelerators: req.inference_accelerators.clone(),
        pid_mode: req.pid_mode.clone(),
        ipc_mode: req.ipc_mode.clone(),
        proxy_configuration: req.proxy_configuration.clone(),
        registered_at: Some(reg.now.as_epoch_seconds()),
        deregistered_at: None,
        delete_requested_at: None,
        registered_by: Some(reg.registered_by.to_string()),
        ephemeral_storage: req.ephemeral_storage.clone(),
        enable_fault_injection: req.enable_fault_injection,
        trusted_execution_configuration: req.trusted_execution_configuration.clone(),
    }
}

/// Validates one container and fills the defaults ECS reports.
fn check_container(
    c: &ContainerDefinition,
    req: &RegisterTaskDefinitionRequest,
    names: &HashSet<&str>,
    volumes: &HashSet<&str>,
    task_memory: Option<i64>,
    fargate: bool,
) -> Result<ContainerDefinition> {
    let name = c.name.as_deref().unwrap_or("");
    let image = check_image(c)?;
    if c.cpu < 0 {
        return Err(invalid(name, "cpu"));
    }
    check_container_memory(c, name, task_memory)?;
    check_container_network(c, req)?;
    let port_mappings = port_mappings(c, name, req)?;
    check_mounts(c, name, names, volumes)?;
    check_depends_on(c, name, req, names)?;
    check_health_check(c, name)?;
    check_logs_and_secrets(c, name, fargate)?;
    if let Some(t) = c.stop_timeout
        && t < 0
    {
        return Err(invalid(name, "stopTimeout"));
    }

    let mut out = c.clone();
    out.image = Some(image.to_string());
    out.port_mappings = Some(port_mappings);
    out.essential = Some(c.essential.unwrap_or(true));
    out.environment = Some(c.environment.clone().unwrap_or_default());
    out.mount_points = Some(c.mount_points.clone().unwrap_or_default());
    out.volumes_from = Some(c.volumes_from.clone().unwrap_or_default());
    out.system_controls = Some(c.system_controls.clone().unwrap_or_default());
    Ok(out)
}

/// ECS's error for container `name`'s invalid `setting`.
fn invalid(name: &str, setting: &str) -> EcsError {
    client(format!("Invalid '{setting}' setting for container '{name}'."))
}

/// The container's image, trimmed: given, at most 255 characters.
fn check_image(c: &ContainerDefinition) -> Result<&str> {
    let image = c.image.as_deref().unwrap_or("").trim();
    if image.is_empty() {
        return Err(client("Container.image should not be null or empty."));
    }
    if image.len() > 255 {
        return Err(client("Container.image should be 255 characters or less"));
    }
    Ok(image)
}

/// The container's memory and reservation: at least 6 MiB, the limit above the reservation,
/// one of them given unless the task's is, neither above the task's.
fn check_container_memory(c: &ContainerDefinition, name: &str, task_memory: Option<i64>) -> Result<()> {
    if let Some(m) = c.memory
        && m < 6
    {
        return Err(client(format!(
            "Invalid setting for container '{name}'. The minimum allowed value for 'memory' is 6 MiB."
        )));
    }
    if let Some(r) = c.memory_reservation
        && r < 6
    {
        return Err(client(format!(
            "Invalid setting for container '{name}'. The minimum allowed value for 'memoryReservation' is 6 MiB."
        )));
    }
    if let (Some(m), Some(r)) = (c.memory, c.memory_reservation)
        && m < r
    {
        return Err(client(format!(
            "Invalid setting for container '{name}'. 'memory' must be greater than or equal to 'memoryReservation'."
        )));
    }
    if task_memory.is_none() && c.memory.is_none() && c.memory_reservation.is_none() {
        return Err(client(format!(
            "Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."
        )));
    }
    if let (Some(tm), Some(m)) = (task_memory, c.memory.or(c.memory_reservation))
        && m as i64 > tm
    {
        return Err(client(format!(
            "The 'memory' setting for container '{name}' is greater than for the task."
        )));
    }
    Ok(())
}

/// No hostname with `awsvpc`, no links with `awsvpc`, `host` or `none`.
fn check_container_network(c: &ContainerDefinition, req: &RegisterTaskDefinitionRequest) -> Result<()> {
    let awsvpc = req.network_mode.as_deref() == Some("awsvpc");
    if awsvpc && c.hostname.is_some() {
        return Err(client("hostname is not supported on container when networkMode=awsvpc."));
    }
    if c.links.as_ref().is_some_and(|l| !l.is_empty())
        && matches!(req.network_mode.as_deref(), Some("awsvpc" | "host" | "none"))
    {
        return Err(client(format!(
            "Links are not supported when networkMode={}.",
            req.network_mode.as_deref().unwrap_or_default()
        )));
    }
    Ok(())
}

/// The port mappings, checked, with ECS's defaults: `tcp`, and with `awsvpc` or `host` the host
/// port that is the container port.
fn port_mappings(
    c: &ContainerDefinition,
    name: &str,
    req: &RegisterTaskDefinitionRequest,
) -> Result<Vec<PortMapping>> {
    let awsvpc = req.network_mode.as_deref() == Some("awsvpc");
    let host = req.network_mode.as_deref() == Some("host");
    let mut port_mappings = Vec::new();
    for pm in c.port_mappings.iter().flatten() {
        let mut pm: PortMapping = pm.clone();
        match pm.container_port {
            Some(p) if (1..=65535).contains(&p) => {}
            None if pm.container_port_range.is_some() => {}
            _ => return Err(invalid(name, "containerPort")),
        }
        if let Some(hp) = pm.host_port
            && !(0..=65535).contains(&hp)
        {
            return Err(invalid(name, "hostPort"));
        }
        if let Some(proto) = &pm.protocol {
            one_of("protocol", proto, &["tcp", "udp"])?;
        } else {
            pm.protocol = Some("tcp".to_string());
        }
        if let Some(ap) = &pm.app_protocol {
            one_of("appProtocol", ap, &["http", "http2", "grpc"])?;
        }
        if (awsvpc || host) && pm.container_port.is_some() {
            match pm.host_port {
                None | Some(0) => pm.host_port = pm.container_port,
                Some(hp) if Some(hp) != pm.container_port => {
                    return Err(client(if awsvpc {
                        "When networkMode=awsvpc, the host ports and container ports in port mappings must match."
                    } else {
                        "When networkMode=host, the host ports and container ports in port mappings must match."
                    }));
                }
                _ => {}
            }
        }
        port_mappings.push(pm);
    }
    Ok(port_mappings)
}

/// Mount points name declared volumes and a path; `volumesFrom` names another container.
fn check_mounts(
    c: &ContainerDefinition,
    name: &str,
    names: &HashSet<&str>,
    volumes: &HashSet<&str>,
) -> Result<()> {
    for mp in c.mount_points.iter().flatten() {
        let src = mp.source_volume.as_deref().unwrap_or("");
        if !volumes.contains(src) {
            return Err(client(format!(
                "Invalid 'mountPoints' setting for container '{name}': the source volume '{src}' is not declared in the task definition's volumes."
            )));
        }
        if mp.container_path.as_deref().unwrap_or("").is_empty() {
            return Err(client(format!(
                "Invalid 'mountPoints' setting for container '{name}': containerPath should not be null or empty."
            )));
        }
    }
    for vf in c.volumes_from.iter().flatten() {
        let src = vf.source_container.as_deref().unwrap_or("");
        if !names.contains(src) || src == name {
            return Err(client(format!(
                "Invalid 'volumesFrom' setting for container '{name}': the source container '{src}' is not another container of the task definition."
            )));
        }
    }
    Ok(())
}

/// `dependsOn` names another container, with a health check for `HEALTHY`.
fn check_depends_on(
    c: &ContainerDefinition,
    name: &str,
    req: &RegisterTaskDefinitionRequest,
    names: &HashSet<&str>,
) -> Result<()> {
    for d in c.depends_on.iter().flatten() {
        one_of("condition", &d.condition, CONDITIONS)?;
        if !names.contains(d.container_name.as_str()) || d.container_name == name {
            return Err(client(format!(
                "Invalid 'dependsOn' setting for container '{name}': the container '{}' is not another container of the task definition.",
                d.container_name
            )));
        }
        if d.condition == "HEALTHY" {
            let target = req
                .container_definitions
                .iter()
                .find(|o| o.name.as_deref() == Some(d.container_name.as_str()));
            if target.is_some_and(|t| t.health_check.is_none()) {
                return Err(client(format!(
                    "Invalid 'dependsOn' setting for container '{name}': the HEALTHY condition requires container '{}' to have a health check.",
                    d.container_name
                )));
            }
        }
    }
    Ok(())
}

/// The health check's command and its timings within ECS's bounds.
fn check_health_check(c: &ContainerDefinition, name: &str) -> Result<()> {
    if let Some(hc) = &c.health_check {
        let first = hc.command.first().map(String::as_str);
        if !matches!(first, Some("CMD" | "CMD-SHELL" | "NONE"))
            || (first != Some("NONE") && hc.command.len() < 2)
        {
            return Err(client(format!(
                "Invalid 'healthCheck' setting for container '{name}': the command must start with CMD or CMD-SHELL and be followed by the command to run."
            )));
        }
        let checks = [
            ("interval", hc.interval, 5, 300),
            ("timeout", hc.timeout, 2, 120),
            ("retries", hc.retries, 1, 10),
            ("startPeriod", hc.start_period, 0, 300),
        ];
        for (field, v, lo, hi) in checks {
            if let Some(v) = v
                && !(lo..=hi).contains(&v)
            {
                return Err(client(format!(
                    "Invalid 'healthCheck' setting for container '{name}': {field} must be between {lo} and {hi}, but was {v}."
                )));
            }
        }
    }
    Ok(())
}

/// The log driver is one of ECS's (on Fargate, one Fargate supports); secrets are named and
/// say where from.
fn check_logs_and_secrets(c: &ContainerDefinition, name: &str, fargate: bool) -> Result<()> {
    if let Some(lc) = &c.log_configuration {
        one_of(
            "logDriver",
            &lc.log_driver,
            &["json-file", "syslog", "journald", "gelf", "fluentd", "awslogs", "splunk", "awsfirelens"],
        )?;
        if fargate && !matches!(lc.log_driver.as_str(), "awslogs" | "splunk" | "awsfirelens") {
            return Err(client(format!(
                "Log driver {} is not supported on Fargate: use awslogs, splunk or awsfirelens.",
                lc.log_driver
            )));
        }
    }
    for s in c.secrets.iter().flatten() {
        if s.name.is_empty() || s.value_from.is_empty() {
            return Err(client(format!(
                "Invalid 'secrets' setting for container '{name}': name and valueFrom should not be empty."
            )));
        }
    }
    Ok(())
}

/// The launch types a task definition can run on, as ECS computes `compatibilities`.
pub fn compatibilities(td: &TaskDefinition) -> Vec<String> {
    let mut out = vec!["EC2".to_string()];
    let mode = td.network_mode.as_deref();
    if mode != Some("awsvpc") {
        out.insert(0, "EXTERNAL".to_string());
    }
    let containers = td.container_definitions.as_deref().unwrap_or_default();
    let fargate_ok = mode == Some("awsvpc")
        && td
            .cpu
            .as_deref()
            .and_then(parse_task_cpu)
            .zip(td.memory.as_deref().and_then(parse_task_memory))
            .is_some_and(|(c, m)| check_fargate_size(c, m).is_ok())
        && td.pid_mode.as_deref() != Some("host")
        && td.ipc_mode.is_none()
        && td.volumes.iter().flatten().all(|v| {
            v.host.as_ref().and_then(|h| h.source_path.as_ref()).is_none()
                && v.docker_volume_configuration.is_none()
        })
        && containers.iter().all(|c| {
            c.privileged != Some(true)
                && c.links.as_ref().is_none_or(|l| l.is_empty())
                && c.linux_parameters.as_ref().is_none_or(|lp| {
                    lp.devices.as_ref().is_none_or(|d| d.is_empty())
                        && lp.shared_memory_size.is_none()
                        && lp.tmpfs.as_ref().is_none_or(|t| t.is_empty())
                })
                && c.log_configuration
                    .as_ref()
                    .is_none_or(|l| matches!(l.log_driver.as_str(), "awslogs" | "splunk" | "awsfirelens"))
        });
    if fargate_ok {
        out.push("FARGATE".to_string());
    }
    out
}

/// The container-agent capabilities a task definition needs, as ECS computes
/// `requiresAttributes`.
pub fn requires_attributes(td: &TaskDefinition) -> Vec<Attribute> {
    let mut names: Vec<&'static str> = Vec::new();
    let mut add = |n: &'static str| {
        if !names.contains(&n) {
            names.push(n);
        }
    };
    let containers = td.container_definitions.as_deref().unwrap_or_default();
    for c in containers {
        if let Some(lc) = &c.log_configuration {
            add(match lc.log_driver.as_str() {
                "awslogs" => "com.amazonaws.ecs.capability.logging-driver.awslogs",
                "json-file" => "com.amazonaws.ecs.capability.logging-driver.json-file",
                "syslog" => "com.amazonaws.ecs.capability.logging-driver.syslog",
                "journald" => "com.amazonaws.ecs.capability.logging-driver.journald",
                "gelf" => "com.amazonaws.ecs.capability.logging-driver.gelf",
                "fluentd" => "com.amazonaws.ecs.capability.logging-driver.fluentd",
                "splunk" => "com.amazonaws.ecs.capability.logging-driver.splunk",
                _ => "ecs.capability.firelens.fluentbit",
            });
            if lc.log_driver == "awslogs" && td.execution_role_arn.is_some() {
                add("ecs.capability.execution-role-awslogs");
            }
            add("com.amazonaws.ecs.capability.docker-remote-api.1.19");
        }
        let image = c.image.as_deref().unwrap_or("");
        if image.contains(".dkr.ecr.") {
            add("com.amazonaws.ecs.capability.ecr-auth");
            if td.execution_role_arn.is_some() {
                add("ecs.capability.execution-role-ecr-pull");
            }
        }
        for s in c.secrets.iter().flatten() {
            if s.value_from.contains(":secretsmanager:") {
                add("ecs.capability.secrets.asm.environment-variables");
            } else {
                add("ecs.capability.secrets.ssm.environment-variables");
            }
        }
        if c.health_check.is_some() {
            add("ecs.capability.container-health-check");
        }
        if c.depends_on.as_ref().is_some_and(|d| !d.is_empty()) {
            add("ecs.capability.container-ordering");
        }
        if c.memory_reservation.is_some() {
            add("com.amazonaws.ecs.capability.docker-remote-api.1.21");
        }
        if c.stop_timeout.is_some() || c.start_timeout.is_some() {
            add("ecs.capability.container-ordering");
        }
        if c.repository_credentials.is_some() {
            add("com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager");
        }
        if c.environment_files.as_ref().is_some_and(|e| !e.is_empty()) {
            add("ecs.capability.env-files.s3");
        }
        if c.firelens_configuration.is_some() {
            add("ecs.capability.firelens.fluentbit");
        }
        if c.linux_parameters.as_ref().is_some_and(|l| l.init_process_enabled == Some(true)) {
            add("com.amazonaws.ecs.capability.docker-remote-api.1.25");
        }
        if c.resource_requirements.iter().flatten().any(|r| r.r#type == "GPU") {
            add("ecs.capability.gpu");
        }
    }
    if td.task_role_arn.is_some() {
        add("com.amazonaws.ecs.capability.task-iam-role");
    }
    if td.network_mode.as_deref() == Some("awsvpc") {
        add("ecs.capability.task-eni");
        add("com.amazonaws.ecs.capability.docker-remote-api.1.18");
    }
    if td.cpu.is_some() || td.memory.is_some() {
        add("ecs.capability.task-cpu-mem-limit");
    }
    if td.pid_mode.is_some() || td.ipc_mode.is_some() {
        add("ecs.capability.pid-ipc-namespace-sharing");
    }
    for v in td.volumes.iter().flatten() {
        if v.efs_volume_configuration.is_some() {
            add("ecs.capability.efsAuth");
        }
        if v.docker_volume_configuration.is_some() {
            add("ecs.capability.docker-plugin.local");
        }
    }
    names.into_iter().map(|n| Attribute { name: n.to_string(), ..Default::default() }).collect()
}

/// A task definition reference: `family`, `family:revision` or a full ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskDefRef {
    pub family: String,
    pub revision: Option<i32>,
}

/// Parses a task definition reference, returning `None` when it is not of a valid form.
/// The revision a task definition reference (`family:revision`, or an ARN ending so) names, as
/// written: `None` for a bare family. ECS reads it before anything else, so a revision that is
/// not a number gets "Invalid revision number. Number: REV" whatever the family.
pub fn revision_text(s: &str) -> Option<&str> {
    let s = s.trim();
    let body = match s.strip_prefix("arn:") {
        Some(_) => s.rsplit_once('/').map_or(s, |(_, b)| b),
        None => s,
    };
    body.split_once(':').map(|(_, r)| r)
}

/// ECS's message for a revision that is not a number, if `s` names one.
pub fn invalid_revision(s: &str) -> Option<String> {
    revision_text(s)
        .filter(|r| r.parse::<i32>().is_err())
        .map(|r| format!("Invalid revision number. Number: {r}"))
}

pub fn parse_ref(scope: &Scope, s: &str) -> Option<TaskDefRef> {
    parse_ref_of(scope, s, "task-definition")
}

/// [`parse_ref`] for a definition whose ARNs are of `resource_type` (daemon task definitions'
/// are `daemon-task-definition`).
pub fn parse_ref_of(scope: &Scope, s: &str, resource_type: &str) -> Option<TaskDefRef> {
    let s = s.trim();
    let body = if s.starts_with("arn:") {
        let a = crate::arn::Arn::parse(s)?;
        if a.resource_type != resource_type || a.region != scope.region || a.account != scope.account {
            return None;
        }
        a.resource
    } else {
        s.to_string()
    };
    let (family, revision) = match body.split_once(':') {
        Some((f, r)) => {
            let r: i32 = r.parse().ok().filter(|r| *r >= 1)?;
            (f.to_string(), Some(r))
        }
        None => (body, None),
    };
    is_valid_name(&family).then_some(TaskDefRef { family, revision })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope::new("000000000000", "us-east-1")
    }

    fn build_json(v: serde_json::Value) -> Result<TaskDefinition> {
        let req: RegisterTaskDefinitionRequest = serde_json::from_value(v).expect("request shape");
        let s = scope();
        build(
            &req,
            &Registration { scope: &s, revision: 3, now: Timestamp(1_700_000_000_500), registered_by: "me" },
        )
    }

    fn fargate(containers: serde_json::Value) -> serde_json::Value {
        json!({"family": "web", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
               "cpu": "256", "memory": "512", "containerDefinitions": containers})
    }

    /// A container named `app` (busybox, 128 MiB) with `extra` members.
    fn c(extra: serde_json::Value) -> serde_json::Value {
        let mut base = json!({"name": "app", "image": "busybox", "memory": 128});
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    }

    fn ec2(containers: serde_json::Value) -> serde_json::Value {
        json!({"family": "web", "containerDefinitions": containers})
    }

    /// Rows of a validation table: the request, and the message ECS answers with (or "" for
    /// success).
    fn check_table(cases: Vec<(&str, serde_json::Value, &str)>) {
        for (what, req, want) in cases {
            match (build_json(req), want) {
                (Ok(_), "") => {}
                (Ok(_), want) => panic!("{what}: accepted, wanted error containing {want:?}"),
                (Err(e), "") => panic!("{what}: rejected with {e}"),
                (Err(e), want) => assert!(e.message.contains(want), "{what}: got {e}, wanted {want:?}"),
            }
        }
    }

    /// The family, the modes and the tags.
    #[test]
    fn validation_table_family_modes_and_tags() {
        let long = "f".repeat(256);
        check_table(vec![
            (
                "blank family",
                json!({"family": " ", "containerDefinitions": [c(json!({}))]}),
                "Family can not be blank.",
            ),
            (
                "bad family",
                json!({"family": "a b", "containerDefinitions": [c(json!({}))]}),
                "Family contains invalid characters.",
            ),
            (
                "long family",
                json!({"family": long, "containerDefinitions": [c(json!({}))]}),
                "255 characters or less",
            ),
            (
                "bad network mode",
                json!({"family": "w", "networkMode": "nat", "containerDefinitions": [c(json!({}))]}),
                "networkMode should be one of",
            ),
            (
                "aws: tag",
                json!({"family": "w", "containerDefinitions": [c(json!({}))], "tags": [{"key": "aws:x", "value": "1"}]}),
                "reserved prefix",
            ),
            (
                "ec2 pidMode host",
                {
                    let mut r = ec2(json!([c(json!({}))]));
                    r["pidMode"] = json!("host");
                    r
                },
                "",
            ),
        ]);
    }

    /// The task size, and what Fargate requires.
    #[test]
    fn validation_table_task_size_and_fargate() {
        check_table(vec![
            (
                "bad task cpu",
                json!({"family": "w", "cpu": "lots", "containerDefinitions": [c(json!({}))]}),
                "Invalid 'cpu' setting for task.",
            ),
            (
                "bad task memory",
                json!({"family": "w", "memory": "1 TB", "containerDefinitions": [c(json!({}))]}),
                "Invalid 'memory' setting for task.",
            ),
            (
                "container over task memory",
                json!({"family": "w", "memory": "64", "containerDefinitions": [c(json!({}))]}),
                "The 'memory' setting for container 'app' is greater than for the task.",
            ),
            (
                "cpu sum over task",
                json!({"family": "w", "cpu": "256", "containerDefinitions": [c(json!({"cpu": 512}))]}),
                "sum of all container 'cpu' values",
            ),
            ("fargate ok", fargate(json!([{"name": "a", "image": "x"}])), ""),
            (
                "fargate vCPU strings",
                json!({"family": "w", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "1 vCPU", "memory": "2 GB", "containerDefinitions": [{"name": "a", "image": "x"}]}),
                "",
            ),
            (
                "fargate bridge",
                json!({"family": "w", "networkMode": "bridge", "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512", "containerDefinitions": [{"name": "a", "image": "x"}]}),
                "Fargate only supports network mode \u{2018}awsvpc\u{2019}.",
            ),
            (
                "fargate no cpu",
                json!({"family": "w", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "memory": "512", "containerDefinitions": [{"name": "a", "image": "x"}]}),
                "Fargate requires that 'cpu' be defined at the task level.",
            ),
            (
                "fargate no memory",
                json!({"family": "w", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256", "containerDefinitions": [{"name": "a", "image": "x"}]}),
                "Fargate requires that 'memory' be defined at the task level.",
            ),
            (
                "fargate bad size",
                json!({"family": "w", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "512", "memory": "512", "containerDefinitions": [{"name": "a", "image": "x"}]}),
                "No Fargate configuration exists for given values: 512 CPU, 512 memory.",
            ),
            (
                "fargate awslogs without role",
                fargate(json!([{"name": "a", "image": "x", "logConfiguration": {"logDriver": "awslogs"}}])),
                "execution role ARN to support log driver awslogs",
            ),
            (
                "fargate pidMode host",
                {
                    let mut r = fargate(json!([{"name": "a", "image": "x"}]));
                    r["pidMode"] = json!("host");
                    r
                },
                "Tasks using the Fargate launch type do not support pidMode 'host'. The supported value for pidMode is 'task'.",
            ),
            (
                "fargate pidMode task",
                {
                    let mut r = fargate(json!([{"name": "a", "image": "x"}]));
                    r["pidMode"] = json!("task");
                    r
                },
                "",
            ),
            (
                "fargate ipcMode",
                {
                    let mut r = fargate(json!([{"name": "a", "image": "x"}]));
                    r["ipcMode"] = json!("task");
                    r
                },
                "Fargate compatible task definitions do not support ipcMode.",
            ),
        ]);
    }

    /// The container list: names, images, memory, essential containers, secrets.
    #[test]
    fn validation_table_containers() {
        check_table(vec![
            ("minimal EC2", ec2(json!([c(json!({}))])), ""),
            ("no containers", ec2(json!([])), "Container list cannot be empty."),
            (
                "11 containers",
                ec2(json!((0..11).map(|i| c(json!({"name": format!("c{i}")}))).collect::<Vec<_>>())),
                "Too many containers.",
            ),
            (
                "no image",
                ec2(json!([{"name": "a", "memory": 128}])),
                "Container.image should not be null or empty.",
            ),
            (
                "no name",
                ec2(json!([{"image": "x", "memory": 128}])),
                "Container.name should not be null or empty.",
            ),
            (
                "bad name",
                ec2(json!([c(json!({"name": "a.b"}))])),
                "Container.name contains invalid characters.",
            ),
            (
                "duplicate names",
                ec2(json!([c(json!({})), c(json!({}))])),
                "Container names must be unique within a Task Definition.",
            ),
            (
                "no memory on EC2",
                ec2(json!([{"name": "a", "image": "x"}])),
                "At least one of 'memory' or 'memoryReservation' must be specified.",
            ),
            (
                "reservation above memory",
                ec2(json!([c(json!({"memoryReservation": 256}))])),
                "'memory' must be greater than or equal to 'memoryReservation'",
            ),
            (
                "tiny memory",
                ec2(json!([c(json!({"memory": 4}))])),
                "minimum allowed value for 'memory' is 6 MiB",
            ),
            (
                "no essential",
                ec2(json!([c(json!({"essential": false}))])),
                "doesn't have any essential container",
            ),
            (
                "secrets without role",
                ec2(json!([c(
                    json!({"secrets": [{"name": "S", "valueFrom": "arn:aws:ssm:us-east-1:1:parameter/x"}]})
                )])),
                "'executionRoleArn'",
            ),
        ]);
    }

    /// The containers' settings: ports, mounts, dependencies, health checks, hostnames.
    #[test]
    fn validation_table_container_settings() {
        check_table(vec![
            (
                "awsvpc port mismatch",
                json!({"family": "w", "networkMode": "awsvpc", "containerDefinitions": [c(json!({"portMappings": [{"containerPort": 80, "hostPort": 81}]}))]}),
                "host ports and container ports in port mappings must match",
            ),
            (
                "bad container port",
                ec2(json!([c(json!({"portMappings": [{"containerPort": 70000}]}))])),
                "Invalid 'containerPort' setting for container 'app'.",
            ),
            (
                "bad protocol",
                ec2(json!([c(json!({"portMappings": [{"containerPort": 80, "protocol": "sctp"}]}))])),
                "protocol should be one of [tcp,udp]",
            ),
            (
                "unknown mount volume",
                ec2(json!([c(json!({"mountPoints": [{"sourceVolume": "data", "containerPath": "/d"}]}))])),
                "source volume 'data'",
            ),
            (
                "depends on unknown",
                ec2(json!([c(json!({"dependsOn": [{"containerName": "db", "condition": "START"}]}))])),
                "the container 'db'",
            ),
            (
                "healthy needs health check",
                ec2(json!([
                    c(json!({"dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]})),
                    c(json!({"name": "db"}))
                ])),
                "requires container 'db' to have a health check",
            ),
            (
                "bad health check",
                ec2(json!([c(json!({"healthCheck": {"command": ["curl", "x"]}}))])),
                "must start with CMD or CMD-SHELL",
            ),
            (
                "health check interval",
                ec2(json!([c(json!({"healthCheck": {"command": ["CMD", "true"], "interval": 1}}))])),
                "interval must be between 5 and 300",
            ),
            (
                "hostname on awsvpc",
                json!({"family": "w", "networkMode": "awsvpc", "containerDefinitions": [c(json!({"hostname": "h"}))]}),
                "hostname is not supported on container when networkMode=awsvpc.",
            ),
        ]);
    }

    #[test]
    fn computed_fields_and_defaults() {
        let td = build_json(json!({
            "family": "web", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "cpu": "0.5 vCPU", "memory": "1GB", "executionRoleArn": "arn:aws:iam::1:role/exec",
            "taskRoleArn": "arn:aws:iam::1:role/task",
            "containerDefinitions": [{"name": "api", "image": " img ", "portMappings": [{"containerPort": 8080}],
                "secrets": [{"name": "A", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:a"}],
                "healthCheck": {"command": ["CMD-SHELL", "true"]},
                "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}}]
        }))
        .unwrap();
        assert_eq!(
            td.task_definition_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:000000000000:task-definition/web:3")
        );
        assert_eq!((td.cpu.as_deref(), td.memory.as_deref()), (Some("512"), Some("1024")));
        assert_eq!(td.compatibilities, Some(vec!["EC2".to_string(), "FARGATE".to_string()]));
        assert_eq!(td.registered_at, Some(1_700_000_000.5));
        assert_eq!(td.registered_by.as_deref(), Some("me"));
        assert_eq!(td.status.as_deref(), Some("ACTIVE"));
        let names: Vec<String> = td.requires_attributes.unwrap().into_iter().map(|a| a.name).collect();
        for want in [
            "ecs.capability.task-eni",
            "com.amazonaws.ecs.capability.task-iam-role",
            "ecs.capability.secrets.asm.environment-variables",
            "ecs.capability.container-health-check",
            "com.amazonaws.ecs.capability.logging-driver.awslogs",
            "ecs.capability.execution-role-awslogs",
        ] {
            assert!(names.iter().any(|n| n == want), "missing {want} in {names:?}");
        }
        let c = &td.container_definitions.unwrap()[0];
        assert_eq!(c.image.as_deref(), Some("img"));
        assert_eq!(c.essential, Some(true));
        let pm = &c.port_mappings.as_ref().unwrap()[0];
        assert_eq!((pm.host_port, pm.protocol.as_deref()), (Some(8080), Some("tcp")));
        assert_eq!(c.environment, Some(vec![]));
        assert_eq!(td.volumes, Some(vec![]));
    }

    #[test]
    fn bridge_definitions_are_external_and_ec2_but_not_fargate() {
        let td = build_json(
            json!({"family": "w", "containerDefinitions": [{"name": "a", "image": "x", "memory": 64}]}),
        )
        .unwrap();
        assert_eq!(td.compatibilities, Some(vec!["EXTERNAL".to_string(), "EC2".to_string()]));
    }

    #[test]
    fn references() {
        let s = scope();
        assert_eq!(parse_ref(&s, "web"), Some(TaskDefRef { family: "web".into(), revision: None }));
        assert_eq!(parse_ref(&s, "web:4"), Some(TaskDefRef { family: "web".into(), revision: Some(4) }));
        assert_eq!(
            parse_ref(&s, &s.task_definition_arn("web", 2)),
            Some(TaskDefRef { family: "web".into(), revision: Some(2) })
        );
        for bad in ["", "web:0", "web:x", "we b", "arn:aws:ecs:eu-west-1:000000000000:task-definition/web:1"]
        {
            assert_eq!(parse_ref(&s, bad), None, "{bad}");
        }
        // The revision as written, which ECS checks first.
        assert_eq!(revision_text("web"), None);
        assert_eq!(revision_text("web:foo"), Some("foo"));
        assert_eq!(revision_text(&s.task_definition_arn("web", 2)), Some("2"));
        assert_eq!(revision_text("arn:aws:ecs:us-east-1:000000000000:task-definition/web"), None);
        assert_eq!(invalid_revision("web:foo").as_deref(), Some("Invalid revision number. Number: foo"));
        assert_eq!(invalid_revision("web:").as_deref(), Some("Invalid revision number. Number: "));
        assert_eq!(invalid_revision("web:3"), None);
        assert_eq!(invalid_revision("web"), None);
    }

    #[test]
    fn efs_volumes_default_their_root_directory() {
        let mut req = fargate(json!([{"name": "a", "image": "x"}]));
        req["volumes"] = json!([
            {"name": "data", "efsVolumeConfiguration": {"fileSystemId": "fs-1234"}},
            {"name": "logs", "efsVolumeConfiguration": {"fileSystemId": "fs-1234", "rootDirectory": "/logs"}},
        ]);
        let td = build_json(req).expect("valid");
        let roots: Vec<_> = td
            .volumes
            .iter()
            .flatten()
            .map(|v| v.efs_volume_configuration.as_ref().and_then(|e| e.root_directory.clone()))
            .collect();
        assert_eq!(roots, vec![Some("/".to_string()), Some("/logs".to_string())]);
    }
}
