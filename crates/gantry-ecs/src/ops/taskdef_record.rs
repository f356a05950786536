//! The stored task definition and daemon task definition, shared by their APIs
//! (`task_definitions.rs`, `daemon_task_definitions.rs`) and everything that runs one (RunTask,
//! services, daemons, the agent channel, placement): a module of its own so that none of them
//! depends on another's operations to read one.

use gantry_core::time::epoch_seconds;
use gantry_core::{DaemonTaskDefinitionStatus, TaskDefinitionStatus, Timestamp};
use gantry_model::*;
use serde::{Deserialize, Serialize};

fn active() -> TaskDefinitionStatus {
    TaskDefinitionStatus::Active
}

/// A required field of a definition Gantry built (`taskdef::build`, `daemon::build`): always
/// there, so its absence is a defect, reported by name.
fn required<T>(v: Option<T>, field: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("the definition has no {field}"))
}

/// A task definition revision as stored (`keys::task_definition`, in a `TaskDefRecord`): what
/// Gantry always knows is required, the status is an enum and the times [`Timestamp`]s. Its JSON
/// is the JSON of ECS's `TaskDefinition` shape that Gantry wrote before it had this type (same
/// names, the status as ECS's string, times as epoch seconds), so records of earlier releases
/// read as they are; a status that is none of ECS's fails the read (the load names the key). The
/// user's document (container definitions, volumes, constraints, proxy configuration, ...) keeps
/// its wire sub-shapes: it is echoed back as given. The API answers through [`Self::into_wire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTaskDefinition {
    pub task_definition_arn: String,
    #[serde(default)]
    pub container_definitions: Vec<ContainerDefinition>,
    pub family: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    pub revision: i32,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// A definition stored without a status is ACTIVE.
    #[serde(default = "active")]
    pub status: TaskDefinitionStatus,
    /// The attributes an instance needs to run it, worked out at registration.
    #[serde(default)]
    pub requires_attributes: Vec<Attribute>,
    #[serde(default)]
    pub placement_constraints: Vec<TaskDefinitionPlacementConstraint>,
    /// The launch types it can run on, worked out at registration.
    #[serde(default)]
    pub compatibilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_platform: Option<RuntimePlatform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_compatibilities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_accelerators: Option<Vec<InferenceAccelerator>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_configuration: Option<ProxyConfiguration>,
    #[serde(with = "epoch_seconds")]
    pub registered_at: Timestamp,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub deregistered_at: Option<Timestamp>,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub delete_requested_at: Option<Timestamp>,
    pub registered_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_fault_injection: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_execution_configuration: Option<TrustedExecutionConfiguration>,
}

impl StoredTaskDefinition {
    /// The record of a definition `taskdef::build` made (which fills every required field; a
    /// missing one is named). The status is `status` and the registration time `registered_at`,
    /// exactly (not read back from the wire's seconds).
    pub fn from_built(
        d: TaskDefinition,
        status: TaskDefinitionStatus,
        registered_at: Timestamp,
    ) -> Result<Self, String> {
        Ok(StoredTaskDefinition {
            task_definition_arn: required(d.task_definition_arn, "taskDefinitionArn")?,
            container_definitions: d.container_definitions.unwrap_or_default(),
            family: required(d.family, "family")?,
            task_role_arn: d.task_role_arn,
            execution_role_arn: d.execution_role_arn,
            network_mode: d.network_mode,
            revision: d.revision,
            volumes: d.volumes.unwrap_or_default(),
            status,
            requires_attributes: d.requires_attributes.unwrap_or_default(),
            placement_constraints: d.placement_constraints.unwrap_or_default(),
            compatibilities: d.compatibilities.unwrap_or_default(),
            runtime_platform: d.runtime_platform,
            requires_compatibilities: d.requires_compatibilities,
            cpu: d.cpu,
            memory: d.memory,
            inference_accelerators: d.inference_accelerators,
            pid_mode: d.pid_mode,
            ipc_mode: d.ipc_mode,
            proxy_configuration: d.proxy_configuration,
            registered_at,
            deregistered_at: d.deregistered_at.map(Timestamp::from_epoch_seconds),
            delete_requested_at: d.delete_requested_at.map(Timestamp::from_epoch_seconds),
            registered_by: required(d.registered_by, "registeredBy")?,
            ephemeral_storage: d.ephemeral_storage,
            enable_fault_injection: d.enable_fault_injection,
            trusted_execution_configuration: d.trusted_execution_configuration,
        })
    }

    /// Whether it is ACTIVE (the only status in which new tasks and services may use it).
    pub fn is_active(&self) -> bool {
        self.status == TaskDefinitionStatus::Active
    }

    /// ECS's `TaskDefinition`, as the API returns it and as placement and the agent read it: the
    /// one place the record becomes the wire shape (fields moved, not copied).
    pub fn into_wire(self) -> TaskDefinition {
        TaskDefinition {
            task_definition_arn: Some(self.task_definition_arn),
            container_definitions: Some(self.container_definitions),
            family: Some(self.family),
            task_role_arn: self.task_role_arn,
            execution_role_arn: self.execution_role_arn,
            network_mode: self.network_mode,
            revision: self.revision,
            volumes: Some(self.volumes),
            status: Some(self.status.as_str().into()),
            requires_attributes: Some(self.requires_attributes),
            placement_constraints: Some(self.placement_constraints),
            compatibilities: Some(self.compatibilities),
            runtime_platform: self.runtime_platform,
            requires_compatibilities: self.requires_compatibilities,
            cpu: self.cpu,
            memory: self.memory,
            inference_accelerators: self.inference_accelerators,
            pid_mode: self.pid_mode,
            ipc_mode: self.ipc_mode,
            proxy_configuration: self.proxy_configuration,
            registered_at: Some(self.registered_at.as_epoch_seconds()),
            deregistered_at: self.deregistered_at.map(Timestamp::as_epoch_seconds),
            delete_requested_at: self.delete_requested_at.map(Timestamp::as_epoch_seconds),
            registered_by: Some(self.registered_by),
            ephemeral_storage: self.ephemeral_storage,
            enable_fault_injection: self.enable_fault_injection,
            trusted_execution_configuration: self.trusted_execution_configuration,
        }
    }

    /// The same, from a borrowed record.
    pub fn to_wire(&self) -> TaskDefinition {
        self.clone().into_wire()
    }
}

/// A daemon task definition revision as stored (`keys::daemon_task_definition`, in a
/// `DaemonTaskDefRecord`), on the same terms as [`StoredTaskDefinition`]: its JSON is the JSON of
/// ECS's `DaemonTaskDefinition` shape Gantry wrote before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredDaemonTaskDefinition {
    pub daemon_task_definition_arn: String,
    pub family: String,
    pub revision: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default)]
    pub container_definitions: Vec<DaemonContainerDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<DaemonVolume>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    pub status: DaemonTaskDefinitionStatus,
    #[serde(with = "epoch_seconds")]
    pub registered_at: Timestamp,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub delete_requested_at: Option<Timestamp>,
    pub registered_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc_mode: Option<String>,
}

impl StoredDaemonTaskDefinition {
    /// The record of a definition `daemon::build` made (a missing required field is named):
    /// ACTIVE, registered at `registered_at`.
    pub fn from_built(d: DaemonTaskDefinition, registered_at: Timestamp) -> Result<Self, String> {
        Ok(StoredDaemonTaskDefinition {
            daemon_task_definition_arn: required(d.daemon_task_definition_arn, "daemonTaskDefinitionArn")?,
            family: required(d.family, "family")?,
            revision: d.revision,
            task_role_arn: d.task_role_arn,
            execution_role_arn: d.execution_role_arn,
            container_definitions: d.container_definitions.unwrap_or_default(),
            volumes: d.volumes,
            cpu: d.cpu,
            memory: d.memory,
            status: DaemonTaskDefinitionStatus::Active,
            registered_at,
            delete_requested_at: d.delete_requested_at.map(Timestamp::from_epoch_seconds),
            registered_by: required(d.registered_by, "registeredBy")?,
            pid_mode: d.pid_mode,
            ipc_mode: d.ipc_mode,
        })
    }

    /// Whether it is ACTIVE (the only status in which daemons may start using it).
    pub fn is_active(&self) -> bool {
        self.status == DaemonTaskDefinitionStatus::Active
    }

    /// ECS's `DaemonTaskDefinition`: the one place the record becomes the wire shape.
    pub fn into_wire(self) -> DaemonTaskDefinition {
        DaemonTaskDefinition {
            daemon_task_definition_arn: Some(self.daemon_task_definition_arn),
            family: Some(self.family),
            revision: self.revision,
            task_role_arn: self.task_role_arn,
            execution_role_arn: self.execution_role_arn,
            container_definitions: Some(self.container_definitions),
            volumes: self.volumes,
            cpu: self.cpu,
            memory: self.memory,
            status: Some(self.status.as_str().into()),
            registered_at: Some(self.registered_at.as_epoch_seconds()),
            delete_requested_at: self.delete_requested_at.map(Timestamp::as_epoch_seconds),
            registered_by: Some(self.registered_by),
            pid_mode: self.pid_mode,
            ipc_mode: self.ipc_mode,
        }
    }

    /// The same, from a borrowed record.
    pub fn to_wire(&self) -> DaemonTaskDefinition {
        self.clone().into_wire()
    }

    /// ListDaemonTaskDefinitions' summary of it.
    pub fn summary(&self) -> DaemonTaskDefinitionSummary {
        DaemonTaskDefinitionSummary {
            arn: Some(self.daemon_task_definition_arn.clone()),
            registered_at: Some(self.registered_at.as_epoch_seconds()),
            registered_by: Some(self.registered_by.clone()),
            delete_requested_at: self.delete_requested_at.map(Timestamp::as_epoch_seconds),
            status: Some(self.status.as_str().into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::daemon_task_definitions::DaemonTaskDefRecord;
    use crate::ops::task_definitions::TaskDefRecord;
    use crate::records::{decode, encode, parse};
    use gantry_store::KeyValue;
    use serde_json::{Value, json};

    const ARN: &str = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3";
    const DAEMON_ARN: &str = "arn:aws:ecs:us-east-1:000000000000:daemon-task-definition/agent:2";

    /// A definition as the release before this type stored it (gantry-model's `TaskDefinition`),
    /// with every field Gantry sets somewhere in a revision's life (times at the millisecond).
    fn old_definition(status: TaskDefinitionStatus) -> TaskDefinition {
        let container: ContainerDefinition = serde_json::from_value(json!({
            "name": "app", "image": "public.ecr.aws/docker/library/nginx:1.27", "cpu": 0,
            "memory": 128, "essential": true, "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}],
            "environment": [], "mountPoints": [], "volumesFrom": [], "systemControls": [],
            "healthCheck": {"command": ["CMD", "true"], "interval": 30, "timeout": 5, "retries": 3}
        }))
        .unwrap();
        TaskDefinition {
            task_definition_arn: Some(ARN.into()),
            container_definitions: Some(vec![container]),
            family: Some("web".into()),
            task_role_arn: Some("arn:aws:iam::000000000000:role/app".into()),
            execution_role_arn: Some("arn:aws:iam::000000000000:role/exec".into()),
            network_mode: Some("awsvpc".into()),
            revision: 3,
            volumes: Some(vec![Volume { name: Some("data".into()), ..Default::default() }]),
            status: Some(status.as_str().into()),
            requires_attributes: Some(vec![Attribute {
                name: "com.amazonaws.ecs.capability.task-iam-role".into(),
                ..Default::default()
            }]),
            placement_constraints: Some(vec![TaskDefinitionPlacementConstraint {
                r#type: Some("memberOf".into()),
                expression: Some("attribute:ecs.os-type == linux".into()),
            }]),
            compatibilities: Some(vec!["EC2".into(), "FARGATE".into()]),
            runtime_platform: Some(RuntimePlatform {
                cpu_architecture: Some("X86_64".into()),
                operating_system_family: Some("LINUX".into()),
            }),
            requires_compatibilities: Some(vec!["FARGATE".into()]),
            cpu: Some("256".into()),
            memory: Some("512".into()),
            inference_accelerators: Some(vec![]),
            pid_mode: Some("task".into()),
            ipc_mode: Some("none".into()),
            proxy_configuration: Some(ProxyConfiguration {
                r#type: Some("APPMESH".into()),
                container_name: "envoy".into(),
                properties: Some(vec![KeyValuePair {
                    name: Some("IgnoredUID".into()),
                    value: Some("1337".into()),
                }]),
            }),
            registered_at: Some(1796334293.583),
            deregistered_at: (status != TaskDefinitionStatus::Active).then_some(1796334393.601),
            delete_requested_at: (status == TaskDefinitionStatus::DeleteInProgress).then_some(1796334493.7),
            registered_by: Some("arn:aws:iam::000000000000:root".into()),
            ephemeral_storage: Some(EphemeralStorage { size_in_gi_b: 30 }),
            enable_fault_injection: Some(false),
            trusted_execution_configuration: Some(TrustedExecutionConfiguration {
                isolation_mode: "NONE".into(),
                attestation_policy: None,
            }),
        }
    }

    fn old_record(d: &TaskDefinition) -> Value {
        json!({"definition": d, "tags": [{"key": "team", "value": "web"}]})
    }

    fn kv(key: &str, json: &Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: encode(json).into(),
            create_revision: 1,
            mod_revision: 2,
            version: 1,
        }
    }

    #[test]
    fn a_task_definition_main_wrote_reads_and_writes_back_the_same_json() {
        for status in TaskDefinitionStatus::ALL.iter().copied() {
            let old = old_definition(status);
            let stored = old_record(&old);
            let rec: TaskDefRecord = parse(&encode(&stored)).unwrap();
            let d = &rec.definition;
            assert_eq!((d.status, d.is_active()), (status, status == TaskDefinitionStatus::Active));
            assert_eq!((d.family.as_str(), d.revision), ("web", 3));
            assert_eq!(d.registered_at, Timestamp(1_796_334_293_583));
            assert_eq!(d.deregistered_at.is_some(), status != TaskDefinitionStatus::Active);
            assert_eq!(rec.tags.len(), 1);
            // Written back: the JSON it was read from.
            assert_eq!(parse::<Value>(&encode(&rec)).unwrap(), stored);
            // The wire shape is the definition the old release answered with.
            assert_eq!(d.to_wire(), old);
            assert_eq!(rec.definition.clone().into_wire(), old);
        }
    }

    #[test]
    fn a_task_definition_gantry_builds_is_the_record_of_its_wire_shape() {
        let old = old_definition(TaskDefinitionStatus::Active);
        let at = Timestamp(1_796_334_293_583);
        let built = StoredTaskDefinition::from_built(old.clone(), TaskDefinitionStatus::Active, at).unwrap();
        assert_eq!(built.to_wire(), old);
        let missing = TaskDefinition { registered_by: None, ..old };
        let e = StoredTaskDefinition::from_built(missing, TaskDefinitionStatus::Active, at).unwrap_err();
        assert!(e.contains("registeredBy"), "{e}");
    }

    #[test]
    fn a_task_definition_without_a_status_is_active_and_an_unknown_status_fails_the_read() {
        let mut stored = old_record(&old_definition(TaskDefinitionStatus::Active));
        stored["definition"].as_object_mut().unwrap().remove("status");
        let rec: TaskDefRecord = parse(&encode(&stored)).unwrap();
        assert_eq!(rec.definition.status, TaskDefinitionStatus::Active);

        stored["definition"]["status"] = json!("RETIRED");
        let key = "/000000000000/us-east-1/task-definition/web!0000000003";
        let e = decode::<TaskDefRecord>(&kv(key, &stored)).unwrap_err();
        assert!(e.message.contains(key), "{e:?}");
        assert!(e.message.contains("RETIRED"), "{e:?}");

        for missing in ["taskDefinitionArn", "family", "registeredAt", "registeredBy"] {
            let mut v = old_record(&old_definition(TaskDefinitionStatus::Active));
            v["definition"].as_object_mut().unwrap().remove(missing);
            let e = parse::<TaskDefRecord>(&encode(&v)).unwrap_err();
            assert!(e.contains(missing), "{missing}: {e}");
        }
    }

    /// A daemon task definition as the release before this type stored it.
    fn old_daemon(status: DaemonTaskDefinitionStatus) -> DaemonTaskDefinition {
        let container: DaemonContainerDefinition = serde_json::from_value(json!({
            "name": "agent", "image": "public.ecr.aws/docker/library/busybox:1.36", "essential": true,
            "environment": [{"name": "MODE", "value": "node"}]
        }))
        .unwrap();
        DaemonTaskDefinition {
            daemon_task_definition_arn: Some(DAEMON_ARN.into()),
            family: Some("agent".into()),
            revision: 2,
            task_role_arn: Some("arn:aws:iam::000000000000:role/app".into()),
            execution_role_arn: Some("arn:aws:iam::000000000000:role/exec".into()),
            container_definitions: Some(vec![container]),
            volumes: Some(vec![DaemonVolume { name: Some("logs".into()), ..Default::default() }]),
            cpu: Some("128".into()),
            memory: Some("256".into()),
            status: Some(status.as_str().into()),
            registered_at: Some(1796334293.583),
            delete_requested_at: (status != DaemonTaskDefinitionStatus::Active).then_some(1796334393.7),
            registered_by: Some("arn:aws:iam::000000000000:root".into()),
            pid_mode: Some("host".into()),
            ipc_mode: Some("host".into()),
        }
    }

    #[test]
    fn a_daemon_task_definition_main_wrote_reads_and_writes_back_the_same_json() {
        for status in DaemonTaskDefinitionStatus::ALL.iter().copied() {
            let old = old_daemon(status);
            let stored = json!({"definition": old, "tags": [{"key": "team", "value": "ops"}]});
            let rec: DaemonTaskDefRecord = parse(&encode(&stored)).unwrap();
            let d = &rec.definition;
            assert_eq!((d.status, d.is_active()), (status, status == DaemonTaskDefinitionStatus::Active));
            assert_eq!(d.registered_at, Timestamp(1_796_334_293_583));
            assert_eq!(parse::<Value>(&encode(&rec)).unwrap(), stored);
            assert_eq!(d.to_wire(), old);
            // The listing's summary is the one main made of the same fields.
            let s = d.summary();
            assert_eq!(
                (s.arn, s.registered_at, s.registered_by, s.delete_requested_at, s.status),
                (
                    old.daemon_task_definition_arn,
                    old.registered_at,
                    old.registered_by,
                    old.delete_requested_at,
                    old.status
                )
            );
        }
        let fresh = old_daemon(DaemonTaskDefinitionStatus::Active);
        let built =
            StoredDaemonTaskDefinition::from_built(fresh.clone(), Timestamp(1_796_334_293_583)).unwrap();
        assert_eq!(built.to_wire(), fresh);
    }

    #[test]
    fn a_daemon_task_definition_with_an_unknown_status_fails_the_read_naming_the_key() {
        let mut stored = json!({"definition": old_daemon(DaemonTaskDefinitionStatus::Active), "tags": []});
        stored["definition"]["status"] = json!("GONE");
        let key = "/000000000000/us-east-1/daemon-task-definition/agent!0000000002";
        let e = decode::<DaemonTaskDefRecord>(&kv(key, &stored)).unwrap_err();
        assert!(e.message.contains(key), "{e:?}");
        assert!(e.message.contains("GONE"), "{e:?}");
        stored["definition"].as_object_mut().unwrap().remove("status");
        assert!(parse::<DaemonTaskDefRecord>(&encode(&stored)).unwrap_err().contains("status"));
    }
}
