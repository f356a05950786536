//! ECS Managed Daemons, pure: RegisterDaemonTaskDefinition's validation, references to daemon
//! task definitions, the ARNs of daemons, their deployments and revisions, and the checks of
//! CreateDaemon's and UpdateDaemon's parameters.
//!
//! A daemon task definition's containers follow the task definition rules ([`taskdef::build`]):
//! the request is read as a MANAGED_INSTANCES task definition in `host` network mode (what a
//! daemon task runs as), so every container rule and message is ECS's one. Its own rules are the
//! daemon's `pidMode`/`ipcMode` (`none` or `shared`).

use crate::arn::{Arn, Scope};
use crate::error::{EcsError, Result};
use crate::taskdef::{self, Registration, TaskDefRef};
use crate::validate::is_valid_name;
use gantry_model::{
    DaemonDeploymentConfiguration, DaemonTaskDefinition, RegisterDaemonTaskDefinitionRequest,
    RegisterTaskDefinitionRequest, TaskDefinition,
};

/// The resource type of a daemon task definition's ARN.
pub const TASK_DEFINITION_RESOURCE: &str = "daemon-task-definition";

/// `arn:aws:ecs:REGION:ACCOUNT:daemon-task-definition/FAMILY:REVISION`.
pub fn task_definition_arn(scope: &Scope, family: &str, revision: i32) -> String {
    scope.arn(&format!("{TASK_DEFINITION_RESOURCE}/{family}:{revision}"))
}

/// `arn:aws:ecs:REGION:ACCOUNT:daemon/CLUSTER/NAME`.
pub fn daemon_arn(scope: &Scope, cluster: &str, name: &str) -> String {
    scope.arn(&format!("daemon/{cluster}/{name}"))
}

/// `arn:aws:ecs:REGION:ACCOUNT:daemon-deployment/CLUSTER/NAME/ID`.
pub fn deployment_arn(scope: &Scope, cluster: &str, name: &str, id: &str) -> String {
    scope.arn(&format!("daemon-deployment/{cluster}/{name}/{id}"))
}

/// `arn:aws:ecs:REGION:ACCOUNT:daemon-revision/CLUSTER/NAME/ID`.
pub fn revision_arn(scope: &Scope, cluster: &str, name: &str, id: &str) -> String {
    scope.arn(&format!("daemon-revision/{cluster}/{name}/{id}"))
}

/// A daemon's ARN read back: its cluster and name. `None` for anything else, another scope's
/// ARN included.
pub fn parse_daemon_arn(scope: &Scope, s: &str) -> Option<(String, String)> {
    let a = Arn::parse(s.trim())?;
    if a.resource_type != "daemon" || a.region != scope.region || a.account != scope.account {
        return None;
    }
    let (cluster, name) = a.resource.split_once('/')?;
    (is_valid_name(cluster) && is_valid_name(name)).then(|| (cluster.to_string(), name.to_string()))
}

/// A daemon deployment's or revision's ARN read back (`kind` is `daemon-deployment` or
/// `daemon-revision`): cluster, daemon name and ID.
pub fn parse_child_arn(scope: &Scope, s: &str, kind: &str) -> Option<(String, String, String)> {
    let a = Arn::parse(s.trim())?;
    if a.resource_type != kind || a.region != scope.region || a.account != scope.account {
        return None;
    }
    let mut it = a.resource.splitn(3, '/');
    let (cluster, name, id) = (it.next()?, it.next()?, it.next()?);
    let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (is_valid_name(cluster) && is_valid_name(name) && id_ok).then(|| (cluster.into(), name.into(), id.into()))
}

/// A reference to a daemon task definition: `FAMILY`, `FAMILY:REVISION` or its ARN. `None` when
/// it is not of a valid form.
pub fn parse_ref(scope: &Scope, s: &str) -> Option<TaskDefRef> {
    taskdef::parse_ref_of(scope, s, TASK_DEFINITION_RESOURCE)
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(EcsError::invalid(format!("{field} should be one of [{}], but was '{value}'.", allowed.join(","))))
}

/// The task definition a daemon task runs as: MANAGED_INSTANCES, `host` network mode, the
/// daemon's containers, volumes, roles and size. ECS's task definition rules apply to it.
fn as_request(req: &RegisterDaemonTaskDefinitionRequest) -> Result<RegisterTaskDefinitionRequest> {
    let mut v = serde_json::to_value(req).map_err(|e| EcsError::server(e.to_string()))?;
    if let Some(o) = v.as_object_mut() {
        // The daemon's own namespace modes are not a task's (`none`/`shared`, checked apart).
        o.remove("pidMode");
        o.remove("ipcMode");
        o.insert("requiresCompatibilities".into(), serde_json::json!(["MANAGED_INSTANCES"]));
        o.insert("networkMode".into(), serde_json::json!("host"));
    }
    serde_json::from_value(v).map_err(|e| EcsError::server(e.to_string()))
}

/// Validates `req` and builds the ACTIVE daemon task definition ECS would store for it.
pub fn build(
    req: &RegisterDaemonTaskDefinitionRequest,
    reg: &Registration<'_>,
) -> Result<DaemonTaskDefinition> {
    if req.container_definitions.is_empty() {
        return Err(EcsError::client("Daemon task definition must have at least one container definition."));
    }
    if let Some(m) = &req.pid_mode {
        one_of("pidMode", m, &["none", "shared"])?;
    }
    if let Some(m) = &req.ipc_mode {
        one_of("ipcMode", m, &["none", "shared"])?;
    }
    taskdef::build(&as_request(req)?, reg)?;
    let family = req.family.trim().to_string();
    Ok(DaemonTaskDefinition {
        daemon_task_definition_arn: Some(task_definition_arn(reg.scope, &family, reg.revision)),
        family: Some(family),
        revision: reg.revision,
        task_role_arn: req.task_role_arn.clone(),
        execution_role_arn: req.execution_role_arn.clone(),
        container_definitions: Some(req.container_definitions.clone()),
        volumes: req.volumes.clone(),
        cpu: req.cpu.clone(),
        memory: req.memory.clone(),
        status: Some(crate::DaemonTaskDefinitionStatus::Active.as_str().into()),
        registered_at: Some(reg.now.as_epoch_seconds()),
        delete_requested_at: None,
        registered_by: Some(reg.registered_by.to_string()),
        pid_mode: req.pid_mode.clone(),
        ipc_mode: req.ipc_mode.clone(),
    })
}

/// The task definition a daemon task of `d` runs: what the agent is given, as for any task.
pub fn as_task_definition(
    scope: &Scope,
    d: &DaemonTaskDefinition,
    registered_by: &str,
) -> Result<TaskDefinition> {
    let req = RegisterDaemonTaskDefinitionRequest {
        family: d.family.clone().unwrap_or_default(),
        task_role_arn: d.task_role_arn.clone(),
        execution_role_arn: d.execution_role_arn.clone(),
        container_definitions: d.container_definitions.clone().unwrap_or_default(),
        cpu: d.cpu.clone(),
        memory: d.memory.clone(),
        volumes: d.volumes.clone(),
        tags: None,
        pid_mode: None,
        ipc_mode: None,
    };
    let reg = Registration {
        scope,
        revision: d.revision,
        now: crate::time::Timestamp((d.registered_at.unwrap_or_default() * 1000.0) as i64),
        registered_by,
    };
    let mut td = taskdef::build(&as_request(&req)?, &reg)?;
    td.task_definition_arn = d.daemon_task_definition_arn.clone();
    Ok(td)
}

/// CreateDaemon's and UpdateDaemon's `deploymentConfiguration`, checked as ECS does, with the
/// defaults filled in (drain 25 %, no bake time).
pub fn deployment_configuration(
    c: Option<&DaemonDeploymentConfiguration>,
) -> Result<DaemonDeploymentConfiguration> {
    let mut c = c.cloned().unwrap_or_default();
    let drain = c.drain_percent.unwrap_or(DEFAULT_DRAIN_PERCENT);
    if !(0.0..=100.0).contains(&drain) || drain.is_nan() {
        return Err(EcsError::invalid(format!(
            "deploymentConfiguration.drainPercent must be between 0.0 and 100.0, but was {drain}."
        )));
    }
    c.drain_percent = Some(drain);
    if c.bake_time_in_minutes < 0 {
        return Err(EcsError::invalid(format!(
            "deploymentConfiguration.bakeTimeInMinutes must be 0 or more, but was {}.",
            c.bake_time_in_minutes
        )));
    }
    if let Some(a) = &c.alarms
        && a.enable
        && a.alarm_names.as_ref().is_none_or(|n| n.is_empty())
    {
        return Err(EcsError::invalid(
            "deploymentConfiguration.alarms.alarmNames must name at least one alarm when alarms are enabled.",
        ));
    }
    Ok(c)
}

/// The share of instances a daemon deployment drains at once when none is given.
pub const DEFAULT_DRAIN_PERCENT: f64 = 25.0;

/// `propagateTags`: `DAEMON` or `NONE`.
pub fn check_propagate_tags(v: Option<&str>) -> Result<()> {
    match v {
        None => Ok(()),
        Some(v) => one_of("propagateTags", v, &["DAEMON", "NONE"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use serde_json::json;

    fn scope() -> Scope {
        Scope::new("000000000000", "us-east-1")
    }

    fn build_json(v: serde_json::Value) -> Result<DaemonTaskDefinition> {
        let req: RegisterDaemonTaskDefinitionRequest = serde_json::from_value(v).expect("request shape");
        let s = scope();
        build(
            &req,
            &Registration { scope: &s, revision: 2, now: Timestamp(1_700_000_000_000), registered_by: "me" },
        )
    }

    #[test]
    fn builds_an_active_revision_with_its_arn() {
        let d = build_json(json!({"family": "agent", "containerDefinitions": [
            {"name": "a", "image": "busybox", "memory": 64}]}))
        .unwrap();
        assert_eq!(
            d.daemon_task_definition_arn.as_deref(),
            Some("arn:aws:ecs:us-east-1:000000000000:daemon-task-definition/agent:2")
        );
        assert_eq!(d.status.as_deref(), Some("ACTIVE"));
        assert_eq!(d.registered_at, Some(1_700_000_000.0));
        let td = as_task_definition(&scope(), &d, "me").unwrap();
        assert_eq!(td.network_mode.as_deref(), Some("host"));
        assert_eq!(td.container_definitions.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn refuses_what_ecs_refuses() {
        let c = json!([{"name": "a", "image": "busybox", "memory": 64}]);
        let cases = [
            (json!({"family": "bad name", "containerDefinitions": c}), "Family contains invalid characters."),
            (json!({"family": "f", "containerDefinitions": []}), "at least one container"),
            (
                json!({"family": "f", "containerDefinitions": c, "pidMode": "host"}),
                "pidMode should be one of [none,shared]",
            ),
            (
                json!({"family": "f", "containerDefinitions": c, "ipcMode": "task"}),
                "ipcMode should be one of [none,shared]",
            ),
            (json!({"family": "f", "containerDefinitions": c, "cpu": "lots"}), "Invalid 'cpu' setting"),
        ];
        for (req, want) in cases {
            let err = build_json(req.clone()).expect_err(&req.to_string());
            assert!(err.message.contains(want), "{req}: {}", err.message);
        }
    }

    #[test]
    fn arns_read_back() {
        let s = scope();
        let a = daemon_arn(&s, "c", "d");
        assert_eq!(parse_daemon_arn(&s, &a), Some(("c".into(), "d".into())));
        assert_eq!(parse_daemon_arn(&Scope::new("1", "us-east-1"), &a), None);
        let dep = deployment_arn(&s, "c", "d", "abc");
        assert_eq!(
            parse_child_arn(&s, &dep, "daemon-deployment"),
            Some(("c".into(), "d".into(), "abc".into()))
        );
        assert_eq!(parse_child_arn(&s, &dep, "daemon-revision"), None);
        let r = parse_ref(&s, &task_definition_arn(&s, "fam", 3)).unwrap();
        assert_eq!((r.family.as_str(), r.revision), ("fam", Some(3)));
        assert!(
            parse_ref(&s, &s.task_definition_arn("fam", 3)).is_none(),
            "a task definition is not a daemon's"
        );
    }

    #[test]
    fn deployment_configuration_defaults_and_bounds() {
        let c = deployment_configuration(None).unwrap();
        assert_eq!(c.drain_percent, Some(DEFAULT_DRAIN_PERCENT));
        let bad = DaemonDeploymentConfiguration { drain_percent: Some(150.0), ..Default::default() };
        assert!(deployment_configuration(Some(&bad)).unwrap_err().message.contains("150"));
    }
}
