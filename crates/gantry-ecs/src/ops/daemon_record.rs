//! The stored records of ECS Managed Daemons, shared by the daemon API (`daemons.rs`) and the
//! daemon scheduler (`daemon_scheduler.rs`): the daemon ([`DaemonRecord`]), each of its
//! immutable revisions ([`DaemonRevisionRecord`]) and each deployment that rolls one out
//! ([`DaemonDeploymentRecord`]). Statuses are `gantry-core` enums and times [`Timestamp`]s; the
//! JSON of each is the JSON Gantry wrote before it had these types (the daemon's snake_case
//! fields, the revision's and deployment's as ECS's `DaemonRevision` and `DaemonDeployment`
//! shapes), so records of earlier releases read as they are. A status Gantry never wrote is a
//! failed read naming the key.

use crate::keys;
use crate::table::{Record, Row};
use gantry_core::time::epoch_seconds;
use gantry_core::{DaemonDeploymentStatus, DaemonMonitorStatus, DaemonStatus, Scope, Timestamp};
use gantry_model::*;
use serde::{Deserialize, Serialize};

/// A daemon as stored (`keys::daemon`): DescribeDaemon's fields and the settings of its current
/// revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonRecord {
    pub name: String,
    pub cluster: String,
    pub arn: String,
    pub status: DaemonStatus,
    #[serde(with = "epoch_seconds")]
    pub created_at: Timestamp,
    #[serde(with = "epoch_seconds")]
    pub updated_at: Timestamp,
    /// The capacity providers' names.
    pub capacity_providers: Vec<String>,
    pub task_definition_arn: String,
    /// The current (target) revision and the most recent deployment.
    pub revision_arn: String,
    pub deployment_arn: String,
    pub deployment_configuration: DaemonDeploymentConfiguration,
    #[serde(default)]
    pub propagate_tags: Option<String>,
    #[serde(default)]
    pub enable_ecs_managed_tags: bool,
    #[serde(default)]
    pub enable_execute_command: bool,
    #[serde(default = "yes")]
    pub critical: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub client_token: Option<String>,
    /// When the daemon scheduler first found every instance running the current revision (the
    /// bake time counts from there); reset by each deployment.
    #[serde(default)]
    pub converged_since_ms: Option<i64>,
}

fn yes() -> bool {
    true
}

impl DaemonRecord {
    /// A new ACTIVE daemon made at `at`, before its first revision and deployment.
    pub fn new(scope: &Scope, cluster: &str, name: &str, at: Timestamp) -> Self {
        DaemonRecord {
            name: name.to_string(),
            cluster: cluster.to_string(),
            arn: gantry_core::daemon::daemon_arn(scope, cluster, name),
            status: DaemonStatus::Active,
            created_at: at,
            updated_at: at,
            capacity_providers: Vec::new(),
            task_definition_arn: String::new(),
            revision_arn: String::new(),
            deployment_arn: String::new(),
            deployment_configuration: DaemonDeploymentConfiguration::default(),
            propagate_tags: None,
            enable_ecs_managed_tags: false,
            enable_execute_command: false,
            critical: true,
            tags: Vec::new(),
            client_token: None,
            converged_since_ms: None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == DaemonStatus::Active
    }

    /// The current revision's ID (the last part of its ARN): the `startedBy` of its tasks.
    pub fn revision_id(&self) -> &str {
        self.revision_arn.rsplit('/').next().unwrap_or_default()
    }

    /// ECS's `DaemonSummary`, as ListDaemons shows it.
    pub fn to_summary(&self) -> DaemonSummary {
        DaemonSummary {
            daemon_arn: Some(self.arn.clone()),
            status: Some(self.status.as_str().into()),
            created_at: Some(self.created_at.as_epoch_seconds()),
            updated_at: Some(self.updated_at.as_epoch_seconds()),
        }
    }
}

/// A daemon's key, and its row in `/_ecs/daemon/` (what the daemon scheduler visits).
impl Record for DaemonRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::daemon(scope, &self.cluster, &self.name)
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        vec![(keys::daemon_index(scope, &self.cluster, &self.name), Vec::new())]
    }
}

/// Cluster, daemon name and ID of a daemon revision's or deployment's ARN
/// (`...:KIND/CLUSTER/NAME/ID`).
fn child_parts<'a>(arn: &'a str, kind: &str) -> (&'a str, &'a str, &'a str) {
    let resource = arn.split_once(&format!(":{kind}/")).map(|(_, r)| r).unwrap_or_default();
    let mut it = resource.splitn(3, '/');
    (it.next().unwrap_or_default(), it.next().unwrap_or_default(), it.next().unwrap_or_default())
}

/// A daemon revision as stored (`keys::daemon_revision`), immutable: ECS's `DaemonRevision`, every
/// field of which Gantry sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonRevisionRecord {
    pub daemon_revision_arn: String,
    pub cluster_arn: String,
    pub daemon_arn: String,
    pub daemon_task_definition_arn: String,
    #[serde(with = "epoch_seconds")]
    pub created_at: Timestamp,
    #[serde(default)]
    pub container_images: Vec<DaemonContainerImage>,
    pub propagate_tags: String,
    #[serde(rename = "enableECSManagedTags")]
    pub enable_ecs_managed_tags: bool,
    pub enable_execute_command: bool,
    pub critical: bool,
}

impl DaemonRevisionRecord {
    /// ECS's `DaemonRevision`, as DescribeDaemonRevisions returns it.
    pub fn to_wire(&self) -> DaemonRevision {
        DaemonRevision {
            daemon_revision_arn: Some(self.daemon_revision_arn.clone()),
            cluster_arn: Some(self.cluster_arn.clone()),
            daemon_arn: Some(self.daemon_arn.clone()),
            daemon_task_definition_arn: Some(self.daemon_task_definition_arn.clone()),
            created_at: Some(self.created_at.as_epoch_seconds()),
            container_images: Some(self.container_images.clone()),
            propagate_tags: Some(self.propagate_tags.clone()),
            enable_ecs_managed_tags: Some(self.enable_ecs_managed_tags),
            enable_execute_command: Some(self.enable_execute_command),
            critical: Some(self.critical),
        }
    }
}

impl Record for DaemonRevisionRecord {
    fn key(&self, scope: &Scope) -> String {
        let (cluster, name, id) = child_parts(&self.daemon_revision_arn, "daemon-revision");
        keys::daemon_revision(scope, cluster, name, id)
    }
}

/// A daemon deployment as stored (`keys::daemon_deployment`): ECS's `DaemonDeployment`, its
/// status and its monitors' statuses enums, its times [`Timestamp`]s. The deployment
/// configuration is the daemon's (the user's document, echoed back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonDeploymentRecord {
    pub daemon_deployment_arn: String,
    pub cluster_arn: String,
    pub status: DaemonDeploymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub target_daemon_revision: StoredRevisionDetail,
    #[serde(default)]
    pub source_daemon_revisions: Vec<StoredRevisionDetail>,
    pub circuit_breaker: StoredCircuitBreaker,
    pub alarms: StoredDeploymentAlarms,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<StoredRollback>,
    pub deployment_configuration: DaemonDeploymentConfiguration,
    #[serde(with = "epoch_seconds")]
    pub created_at: Timestamp,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
    #[serde(default, with = "epoch_seconds::option", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
}

/// A revision a deployment rolls out or replaces, with its instance counts (ECS's
/// `DaemonDeploymentRevisionDetail`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRevisionDetail {
    pub arn: String,
    #[serde(default)]
    pub capacity_providers: Vec<StoredProviderCounts>,
    #[serde(default)]
    pub total_running_instance_count: i32,
    #[serde(default)]
    pub total_without_daemon_instance_count: i32,
    #[serde(default)]
    pub total_draining_instance_count: i32,
}

/// One capacity provider's instance counts (ECS's `DaemonDeploymentCapacityProvider`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredProviderCounts {
    pub arn: String,
    #[serde(default)]
    pub running_instance_count: i32,
    #[serde(default)]
    pub without_daemon_instance_count: i32,
    #[serde(default)]
    pub draining_instance_count: i32,
}

/// A deployment's circuit breaker (ECS's `DaemonCircuitBreaker`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredCircuitBreaker {
    #[serde(default)]
    pub failure_count: i32,
    pub status: DaemonMonitorStatus,
    #[serde(default)]
    pub threshold: i32,
}

/// A deployment's alarms (ECS's `DaemonDeploymentAlarms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredDeploymentAlarms {
    pub status: DaemonMonitorStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_alarm_names: Option<Vec<String>>,
}

/// A deployment's rollback (ECS's `DaemonRollback`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRollback {
    pub reason: String,
    #[serde(with = "epoch_seconds")]
    pub started_at: Timestamp,
    pub rollback_target_daemon_revision_arn: String,
    #[serde(default)]
    pub rollback_capacity_providers: Vec<String>,
}

impl StoredRevisionDetail {
    /// Revision `arn` on `providers` (their ARNs), no instance counted yet.
    pub fn new(arn: &str, providers: impl IntoIterator<Item = String>) -> Self {
        StoredRevisionDetail {
            arn: arn.to_string(),
            capacity_providers: providers
                .into_iter()
                .map(|arn| StoredProviderCounts {
                    arn,
                    running_instance_count: 0,
                    without_daemon_instance_count: 0,
                    draining_instance_count: 0,
                })
                .collect(),
            total_running_instance_count: 0,
            total_without_daemon_instance_count: 0,
            total_draining_instance_count: 0,
        }
    }

    fn to_wire(&self) -> DaemonDeploymentRevisionDetail {
        DaemonDeploymentRevisionDetail {
            arn: Some(self.arn.clone()),
            capacity_providers: Some(
                self.capacity_providers
                    .iter()
                    .map(|p| DaemonDeploymentCapacityProvider {
                        arn: Some(p.arn.clone()),
                        running_instance_count: Some(p.running_instance_count),
                        without_daemon_instance_count: Some(p.without_daemon_instance_count),
                        draining_instance_count: Some(p.draining_instance_count),
                    })
                    .collect(),
            ),
            total_running_instance_count: Some(self.total_running_instance_count),
            total_without_daemon_instance_count: Some(self.total_without_daemon_instance_count),
            total_draining_instance_count: Some(self.total_draining_instance_count),
        }
    }
}

impl DaemonDeploymentRecord {
    /// Whether it has not finished (PENDING or IN_PROGRESS).
    pub fn is_unfinished(&self) -> bool {
        matches!(self.status, DaemonDeploymentStatus::Pending | DaemonDeploymentStatus::InProgress)
    }

    /// ECS's `DaemonDeployment`, as DescribeDaemonDeployments returns it.
    pub fn to_wire(&self) -> DaemonDeployment {
        DaemonDeployment {
            daemon_deployment_arn: Some(self.daemon_deployment_arn.clone()),
            cluster_arn: Some(self.cluster_arn.clone()),
            status: Some(self.status.as_str().into()),
            status_reason: self.status_reason.clone(),
            target_daemon_revision: Some(self.target_daemon_revision.to_wire()),
            source_daemon_revisions: Some(
                self.source_daemon_revisions.iter().map(StoredRevisionDetail::to_wire).collect(),
            ),
            circuit_breaker: Some(DaemonCircuitBreaker {
                failure_count: self.circuit_breaker.failure_count,
                status: Some(self.circuit_breaker.status.as_str().into()),
                threshold: self.circuit_breaker.threshold,
            }),
            alarms: Some(DaemonDeploymentAlarms {
                status: Some(self.alarms.status.as_str().into()),
                alarm_names: self.alarms.alarm_names.clone(),
                triggered_alarm_names: self.alarms.triggered_alarm_names.clone(),
            }),
            rollback: self.rollback.as_ref().map(|r| DaemonRollback {
                reason: Some(r.reason.clone()),
                started_at: Some(r.started_at.as_epoch_seconds()),
                rollback_target_daemon_revision_arn: Some(r.rollback_target_daemon_revision_arn.clone()),
                rollback_capacity_providers: Some(r.rollback_capacity_providers.clone()),
            }),
            deployment_configuration: Some(self.deployment_configuration.clone()),
            created_at: Some(self.created_at.as_epoch_seconds()),
            started_at: self.started_at.map(Timestamp::as_epoch_seconds),
            stopped_at: self.stopped_at.map(Timestamp::as_epoch_seconds),
            finished_at: self.finished_at.map(Timestamp::as_epoch_seconds),
        }
    }

    /// ECS's `DaemonDeploymentSummary` of it, for daemon `daemon_arn`.
    pub fn to_summary(&self, daemon_arn: &str) -> DaemonDeploymentSummary {
        DaemonDeploymentSummary {
            daemon_deployment_arn: Some(self.daemon_deployment_arn.clone()),
            daemon_arn: Some(daemon_arn.to_string()),
            cluster_arn: Some(self.cluster_arn.clone()),
            status: Some(self.status.as_str().into()),
            status_reason: self.status_reason.clone(),
            target_daemon_revision_arn: Some(self.target_daemon_revision.arn.clone()),
            created_at: Some(self.created_at.as_epoch_seconds()),
            started_at: self.started_at.map(Timestamp::as_epoch_seconds),
            stopped_at: self.stopped_at.map(Timestamp::as_epoch_seconds),
            finished_at: self.finished_at.map(Timestamp::as_epoch_seconds),
        }
    }
}

impl Record for DaemonDeploymentRecord {
    fn key(&self, scope: &Scope) -> String {
        let (cluster, name, id) = child_parts(&self.daemon_deployment_arn, "daemon-deployment");
        keys::daemon_deployment(scope, cluster, name, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{encode, parse};
    use serde_json::{Value, json};

    const CLUSTER: &str = "arn:aws:ecs:us-east-1:000000000000:cluster/prod";
    const DAEMON: &str = "arn:aws:ecs:us-east-1:000000000000:daemon/prod/logs";
    const REVISION: &str = "arn:aws:ecs:us-east-1:000000000000:daemon-revision/prod/logs/aa11";
    const OLD_REVISION: &str = "arn:aws:ecs:us-east-1:000000000000:daemon-revision/prod/logs/bb22";
    const DEPLOYMENT: &str = "arn:aws:ecs:us-east-1:000000000000:daemon-deployment/prod/logs/cc33";
    const PROVIDER: &str = "arn:aws:ecs:us-east-1:000000000000:capacity-provider/mi";

    fn secs(ms: i64) -> f64 {
        Timestamp(ms).as_epoch_seconds()
    }

    fn scope() -> Scope {
        Scope { account: "000000000000".into(), region: "us-east-1".into() }
    }

    /// A daemon as the release before [`DaemonRecord`]'s enums wrote it (status a string, times
    /// f64 seconds), every field set.
    fn daemon_main_wrote(status: &str) -> Value {
        json!({
            "name": "logs", "cluster": "prod", "arn": DAEMON, "status": status,
            "created_at": secs(1_796_334_200_001), "updated_at": secs(1_796_334_293_524),
            "capacity_providers": ["mi"],
            "task_definition_arn": "arn:aws:ecs:us-east-1:000000000000:daemon-task-definition/logs:3",
            "revision_arn": REVISION, "deployment_arn": DEPLOYMENT,
            "deployment_configuration": {"drainPercent": 25.0, "bakeTimeInMinutes": 2},
            "propagate_tags": "DAEMON", "enable_ecs_managed_tags": true,
            "enable_execute_command": true, "critical": false,
            "tags": [{"key": "team", "value": "obs"}],
            "client_token": "tok-1", "converged_since_ms": 1_796_334_293_600i64,
        })
    }

    #[test]
    fn a_daemon_main_wrote_reads_and_writes_back_the_same_json() {
        for (status, want) in
            [("ACTIVE", DaemonStatus::Active), ("DELETE_IN_PROGRESS", DaemonStatus::DeleteInProgress)]
        {
            let old = daemon_main_wrote(status);
            let rec: DaemonRecord = parse(&encode(&old)).unwrap();
            assert_eq!(rec.status, want);
            assert_eq!(rec.is_active(), want == DaemonStatus::Active);
            assert_eq!(
                (rec.created_at, rec.updated_at),
                (Timestamp(1_796_334_200_001), Timestamp(1_796_334_293_524))
            );
            assert_eq!(rec.revision_id(), "aa11");
            assert_eq!(rec.deployment_configuration.bake_time_in_minutes, 2);
            assert_eq!(serde_json::to_value(&rec).unwrap(), old);
            let summary = rec.to_summary();
            assert_eq!(summary.status.as_deref(), Some(status));
            assert_eq!(summary.created_at, Some(secs(1_796_334_200_001)));
            assert_eq!(rec.key(&scope()), keys::daemon(&scope(), "prod", "logs"));
        }
        // What releases before `critical` and the client token did not write reads as defaults.
        let mut old = daemon_main_wrote("ACTIVE");
        for k in ["critical", "client_token", "tags", "converged_since_ms", "propagate_tags"] {
            old.as_object_mut().unwrap().remove(k);
        }
        let rec: DaemonRecord = serde_json::from_value(old).unwrap();
        assert!(rec.critical && rec.client_token.is_none() && rec.tags.is_empty());
    }

    /// A revision as the release before [`DaemonRevisionRecord`] wrote it (gantry-model's shape).
    fn revision_main_wrote() -> DaemonRevision {
        DaemonRevision {
            daemon_revision_arn: Some(REVISION.into()),
            cluster_arn: Some(CLUSTER.into()),
            daemon_arn: Some(DAEMON.into()),
            daemon_task_definition_arn: Some(
                "arn:aws:ecs:us-east-1:000000000000:daemon-task-definition/logs:3".into(),
            ),
            created_at: Some(secs(1_796_334_293_524)),
            container_images: Some(vec![DaemonContainerImage {
                container_name: Some("agent".into()),
                image_digest: None,
                image: Some("fluent/fluent-bit:3".into()),
            }]),
            propagate_tags: Some("NONE".into()),
            enable_ecs_managed_tags: Some(true),
            enable_execute_command: Some(false),
            critical: Some(true),
        }
    }

    #[test]
    fn a_revision_main_wrote_reads_and_writes_back_the_same_json() {
        let old = revision_main_wrote();
        let rec: DaemonRevisionRecord = parse(&encode(&old)).unwrap();
        assert_eq!(rec.created_at, Timestamp(1_796_334_293_524));
        assert!(rec.enable_ecs_managed_tags && rec.critical && !rec.enable_execute_command);
        assert_eq!(serde_json::to_value(&rec).unwrap(), serde_json::to_value(&old).unwrap());
        assert_eq!(rec.to_wire(), old);
        assert_eq!(rec.key(&scope()), keys::daemon_revision(&scope(), "prod", "logs", "aa11"));
    }

    /// A deployment as the release before [`DaemonDeploymentRecord`] wrote it, rolled back: every
    /// field the daemon API and the daemon scheduler set.
    fn deployment_main_wrote(status: &str) -> DaemonDeployment {
        let detail = |arn: &str, running: i32| DaemonDeploymentRevisionDetail {
            arn: Some(arn.into()),
            capacity_providers: Some(vec![DaemonDeploymentCapacityProvider {
                arn: Some(PROVIDER.into()),
                running_instance_count: Some(0),
                without_daemon_instance_count: Some(0),
                draining_instance_count: Some(0),
            }]),
            total_running_instance_count: Some(running),
            total_without_daemon_instance_count: Some(1),
            total_draining_instance_count: Some(2),
        };
        DaemonDeployment {
            daemon_deployment_arn: Some(DEPLOYMENT.into()),
            cluster_arn: Some(CLUSTER.into()),
            status: Some(status.into()),
            status_reason: Some("The circuit breaker tripped.".into()),
            target_daemon_revision: Some(detail(REVISION, 3)),
            source_daemon_revisions: Some(vec![detail(OLD_REVISION, 0)]),
            circuit_breaker: Some(DaemonCircuitBreaker {
                failure_count: 4,
                status: Some("TRIGGERED".into()),
                threshold: 3,
            }),
            alarms: Some(DaemonDeploymentAlarms {
                status: Some("MONITORING".into()),
                alarm_names: Some(vec!["cpu".into()]),
                triggered_alarm_names: Some(vec![]),
            }),
            rollback: Some(DaemonRollback {
                reason: Some("The circuit breaker tripped.".into()),
                started_at: Some(secs(1_796_334_300_000)),
                rollback_target_daemon_revision_arn: Some(OLD_REVISION.into()),
                rollback_capacity_providers: Some(vec![PROVIDER.into()]),
            }),
            deployment_configuration: Some(DaemonDeploymentConfiguration {
                drain_percent: Some(25.0),
                bake_time_in_minutes: 2,
                ..Default::default()
            }),
            created_at: Some(secs(1_796_334_293_524)),
            started_at: Some(secs(1_796_334_294_001)),
            stopped_at: Some(secs(1_796_334_299_999)),
            finished_at: Some(secs(1_796_334_301_000)),
        }
    }

    #[test]
    fn a_deployment_main_wrote_reads_and_writes_back_the_same_json() {
        for status in DaemonDeploymentStatus::ALL {
            let old = deployment_main_wrote(status.as_str());
            let rec: DaemonDeploymentRecord = parse(&encode(&old)).unwrap();
            assert_eq!(rec.status, *status);
            assert_eq!(rec.circuit_breaker.status, DaemonMonitorStatus::Triggered);
            assert_eq!(rec.alarms.status, DaemonMonitorStatus::Monitoring);
            assert_eq!(rec.target_daemon_revision.total_running_instance_count, 3);
            assert_eq!(rec.source_daemon_revisions[0].arn, OLD_REVISION);
            assert_eq!(rec.stopped_at, Some(Timestamp(1_796_334_299_999)));
            assert_eq!(serde_json::to_value(&rec).unwrap(), serde_json::to_value(&old).unwrap());
            assert_eq!(rec.to_wire(), old);
            let summary = rec.to_summary(DAEMON);
            assert_eq!(summary.target_daemon_revision_arn.as_deref(), Some(REVISION));
            assert_eq!((summary.status, summary.finished_at), (old.status.clone(), old.finished_at));
        }
        // A new deployment: no reason, rollback, alarm names or times but its creation.
        let mut old = deployment_main_wrote("PENDING");
        (old.status_reason, old.rollback, old.source_daemon_revisions) = (None, None, Some(vec![]));
        (old.started_at, old.stopped_at, old.finished_at) = (None, None, None);
        old.alarms = Some(DaemonDeploymentAlarms { status: Some("DISABLED".into()), ..Default::default() });
        let rec: DaemonDeploymentRecord = parse(&encode(&old)).unwrap();
        assert!(rec.is_unfinished());
        assert_eq!(serde_json::to_value(&rec).unwrap(), serde_json::to_value(&old).unwrap());
        assert_eq!(rec.to_wire(), old);
        assert_eq!(rec.key(&scope()), keys::daemon_deployment(&scope(), "prod", "logs", "cc33"));
    }

    /// Reading `json` stored at `key`: the error message, if it fails.
    fn read_error<T: serde::de::DeserializeOwned>(key: &str, json: &Value) -> String {
        let kv = gantry_store::KeyValue {
            key: key.into(),
            value: encode(json).into(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        };
        crate::records::decode::<T>(&kv).err().map(|e| e.message).unwrap_or_default()
    }

    #[test]
    fn an_unknown_status_fails_the_read_naming_the_key_and_the_value() {
        let mut daemon = daemon_main_wrote("ACTIVE");
        daemon["status"] = "PAUSED".into();
        let err = read_error::<DaemonRecord>("daemon/prod/logs", &daemon);
        assert!(err.contains("daemon/prod/logs") && err.contains("PAUSED"), "{err}");

        let mut dep = serde_json::to_value(deployment_main_wrote("PENDING")).unwrap();
        dep["status"] = "HALTED".into();
        let err = read_error::<DaemonDeploymentRecord>("daemon-deployment/prod/logs/cc33", &dep);
        assert!(err.contains("daemon-deployment/prod/logs/cc33") && err.contains("HALTED"), "{err}");
        let mut dep = serde_json::to_value(deployment_main_wrote("PENDING")).unwrap();
        dep["circuitBreaker"]["status"] = "TRIPPED".into();
        let err = read_error::<DaemonDeploymentRecord>("daemon-deployment/prod/logs/cc33", &dep);
        assert!(err.contains("TRIPPED"), "{err}");
    }
}
