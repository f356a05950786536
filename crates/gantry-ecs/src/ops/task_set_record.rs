//! The stored task set: a service of the EXTERNAL deployment controller keeps its task sets in
//! its record (`StoredService::task_sets`), written by the task set API (`task_sets.rs`), the tag
//! API and the scheduler (`gantry_sched::reconcile_task_sets`'s counts and stability).

use gantry_core::time::epoch_seconds;
use gantry_core::{StabilityStatus, TaskSetStatus, Timestamp};
use gantry_model::*;
use serde::{Deserialize, Serialize};

/// A task set as stored: what Gantry always sets is required, the statuses are enums and the
/// times [`Timestamp`]s. Its JSON is the JSON of ECS's `TaskSet` shape that Gantry wrote before it
/// had this type (same names, statuses as ECS's strings, times as epoch seconds), so records of
/// earlier releases read as they are. The configuration a user passes through (network, load
/// balancers, registries, tags, ...) keeps its wire shapes. DescribeTaskSets, DescribeServices and
/// the task set operations answer through [`Self::to_wire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredTaskSet {
    pub id: String,
    pub task_set_arn: String,
    pub service_arn: String,
    pub cluster_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub status: TaskSetStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    #[serde(default)]
    pub computed_desired_count: i32,
    #[serde(default)]
    pub pending_count: i32,
    #[serde(default)]
    pub running_count: i32,
    #[serde(with = "epoch_seconds")]
    pub created_at: Timestamp,
    #[serde(with = "epoch_seconds")]
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Vec<CapacityProviderStrategyItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancers: Option<Vec<LoadBalancer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_registries: Option<Vec<ServiceRegistry>>,
    pub scale: Scale,
    pub stability_status: StabilityStatus,
    #[serde(with = "epoch_seconds")]
    pub stability_status_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fargate_ephemeral_storage: Option<DeploymentEphemeralStorage>,
}

impl StoredTaskSet {
    /// Whether `reference` (an ID or ARN) names it.
    pub fn is_named(&self, reference: &str) -> bool {
        self.id == reference || self.task_set_arn == reference
    }

    /// Whether it is DRAINING (deleted, its tasks going).
    pub fn is_draining(&self) -> bool {
        self.status == TaskSetStatus::Draining
    }

    /// [`Self::into_wire`] of a copy.
    pub fn to_wire(&self) -> TaskSet {
        self.clone().into_wire()
    }

    /// ECS's `TaskSet`, with its tags: the one place the record becomes the wire shape.
    pub fn into_wire(self) -> TaskSet {
        TaskSet {
            id: Some(self.id),
            task_set_arn: Some(self.task_set_arn),
            service_arn: Some(self.service_arn),
            cluster_arn: Some(self.cluster_arn),
            started_by: self.started_by,
            external_id: self.external_id,
            status: Some(self.status.as_str().into()),
            task_definition: self.task_definition,
            computed_desired_count: self.computed_desired_count,
            pending_count: self.pending_count,
            running_count: self.running_count,
            created_at: Some(self.created_at.as_epoch_seconds()),
            updated_at: Some(self.updated_at.as_epoch_seconds()),
            launch_type: self.launch_type,
            capacity_provider_strategy: self.capacity_provider_strategy,
            platform_version: self.platform_version,
            platform_family: self.platform_family,
            network_configuration: self.network_configuration,
            load_balancers: self.load_balancers,
            service_registries: self.service_registries,
            scale: Some(self.scale),
            stability_status: Some(self.stability_status.as_str().into()),
            stability_status_at: Some(self.stability_status_at.as_epoch_seconds()),
            tags: self.tags,
            fargate_ephemeral_storage: self.fargate_ephemeral_storage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{encode, parse};
    use serde_json::Value;

    /// A task set as the release before [`StoredTaskSet`] wrote it (gantry-model's `TaskSet`,
    /// as CreateTaskSet, UpdateServicePrimaryTaskSet and the scheduler filled it in).
    fn written_by_main(status: TaskSetStatus, stability: StabilityStatus) -> TaskSet {
        let at = |ms: i64| Some(Timestamp(ms).as_epoch_seconds());
        TaskSet {
            id: Some("ecs-svc/1234567890123456789".into()),
            task_set_arn: Some(
                "arn:aws:ecs:us-east-1:000000000000:task-set/prod/web/ecs-svc/1234567890123456789".into(),
            ),
            service_arn: Some("arn:aws:ecs:us-east-1:000000000000:service/prod/web".into()),
            cluster_arn: Some("arn:aws:ecs:us-east-1:000000000000:cluster/prod".into()),
            started_by: None,
            external_id: Some("deploy-7".into()),
            status: Some(status.as_str().into()),
            task_definition: Some("arn:aws:ecs:us-east-1:000000000000:task-definition/web:2".into()),
            computed_desired_count: 2,
            pending_count: 1,
            running_count: 1,
            created_at: at(1_796_334_200_001),
            updated_at: at(1_796_334_293_524),
            launch_type: Some("FARGATE".into()),
            capacity_provider_strategy: None,
            platform_version: Some("LATEST".into()),
            platform_family: Some("Linux".into()),
            network_configuration: Some(NetworkConfiguration {
                awsvpc_configuration: Some(AwsVpcConfiguration {
                    subnets: vec!["subnet-1".into()],
                    ..Default::default()
                }),
            }),
            load_balancers: Some(vec![LoadBalancer {
                target_group_arn: Some(
                    "arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/blue/0123456789abcdef"
                        .into(),
                ),
                container_name: Some("web".into()),
                container_port: Some(80),
                ..Default::default()
            }]),
            service_registries: Some(vec![]),
            scale: Some(Scale { value: 50.0, unit: Some("PERCENT".into()) }),
            stability_status: Some(stability.as_str().into()),
            stability_status_at: at(1_796_334_293_001),
            tags: Some(vec![Tag { key: Some("team".into()), value: Some("web".into()) }]),
            fargate_ephemeral_storage: None,
        }
    }

    #[test]
    fn a_task_set_main_wrote_reads_and_writes_back_the_same_json() {
        for status in TaskSetStatus::ALL {
            for stability in StabilityStatus::ALL {
                let old = written_by_main(*status, *stability);
                let rec: StoredTaskSet = parse(&encode(&old)).unwrap();
                assert_eq!((rec.status, rec.stability_status), (*status, *stability));
                assert_eq!(rec.is_draining(), *status == TaskSetStatus::Draining);
                assert_eq!(rec.updated_at, Timestamp(1_796_334_293_524));
                assert_eq!(rec.stability_status_at, Timestamp(1_796_334_293_001));
                assert!(rec.is_named("ecs-svc/1234567890123456789") && rec.is_named(&rec.task_set_arn));
                assert!(!rec.is_named("ecs-svc/1"));
                assert_eq!(serde_json::to_value(&rec).unwrap(), serde_json::to_value(&old).unwrap());
                assert_eq!(rec.to_wire(), old);
            }
        }
        // Without what a task set may lack: no tags (DescribeTaskSets without TAGS drops them),
        // an EC2 one without platform or network.
        let mut old = written_by_main(TaskSetStatus::Active, StabilityStatus::Stabilizing);
        (old.tags, old.platform_version, old.platform_family, old.network_configuration) =
            (None, None, None, None);
        (old.external_id, old.load_balancers, old.service_registries) = (None, None, None);
        old.launch_type = Some("EC2".into());
        let rec: StoredTaskSet = parse(&encode(&old)).unwrap();
        assert_eq!(serde_json::to_value(&rec).unwrap(), serde_json::to_value(&old).unwrap());
        assert_eq!(rec.into_wire(), old);
    }

    #[test]
    fn an_unknown_status_fails_the_read_naming_it() {
        for (field, bad) in [("status", "RETIRED"), ("stabilityStatus", "WOBBLY")] {
            let mut old: Value =
                serde_json::to_value(written_by_main(TaskSetStatus::Primary, StabilityStatus::SteadyState))
                    .unwrap();
            old[field] = bad.into();
            let err = parse::<StoredTaskSet>(&encode(&old)).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        for field in ["id", "taskSetArn", "status", "createdAt", "scale", "stabilityStatus"] {
            let mut old: Value =
                serde_json::to_value(written_by_main(TaskSetStatus::Primary, StabilityStatus::SteadyState))
                    .unwrap();
            old.as_object_mut().unwrap().remove(field);
            assert!(parse::<StoredTaskSet>(&encode(&old)).is_err(), "{field}");
        }
    }
}
