//! The stored cluster record, shared by the cluster API (`clusters.rs`) and everything that
//! reads a cluster (RunTask, services, capacity providers, tags, cluster auto scaling): a module
//! of its own so that none of them depends on another's operations to read one.

use super::includes;
use gantry_core::ClusterStatus;
use gantry_model::*;
use serde::{Deserialize, Serialize};

/// A cluster as stored (`keys::cluster`): what Gantry always knows is required and the status
/// is an enum. Its JSON is the JSON of ECS's `Cluster` shape that Gantry wrote before it had
/// this type (same names, the status as ECS's string), so records of earlier releases read as
/// they are. The counts and statistics DescribeClusters shows are not stored: they are the
/// cluster's counters and its instances' status index, read when it renders. The API answers
/// through [`Self::to_wire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRecord {
    pub cluster_arn: String,
    pub cluster_name: String,
    pub status: ClusterStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ClusterConfiguration>,
    #[serde(default)]
    pub settings: Vec<ClusterSetting>,
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect_defaults: Option<ClusterServiceConnectDefaults>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments_status: Option<String>,
}

impl ClusterRecord {
    /// Whether it is ACTIVE (the only status in which it takes work or tags).
    pub fn is_active(&self) -> bool {
        self.status == ClusterStatus::Active
    }

    /// The value of one of its settings (`containerInsights`).
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.iter().find(|s| s.name.as_deref() == Some(name)).and_then(|s| s.value.as_deref())
    }

    /// ECS's `Cluster`, as the API returns it with the optional parts `include` asks for (TAGS,
    /// SETTINGS, CONFIGURATIONS, ATTACHMENTS): the one place the record becomes the wire shape.
    /// The counts and statistics read zero and none (`ControlPlane::render_cluster` fills them).
    pub fn to_wire(&self, include: Option<&Vec<String>>) -> Cluster {
        let attachments = includes(include, "ATTACHMENTS");
        Cluster {
            cluster_arn: Some(self.cluster_arn.clone()),
            cluster_name: Some(self.cluster_name.clone()),
            configuration: self.configuration.clone().filter(|_| includes(include, "CONFIGURATIONS")),
            status: Some(self.status.as_str().into()),
            registered_container_instances_count: 0,
            running_tasks_count: 0,
            pending_tasks_count: 0,
            active_services_count: 0,
            statistics: Some(vec![]),
            tags: Some(if includes(include, "TAGS") { self.tags.clone() } else { vec![] }),
            settings: includes(include, "SETTINGS").then(|| self.settings.clone()),
            capacity_providers: Some(self.capacity_providers.clone()),
            default_capacity_provider_strategy: Some(self.default_capacity_provider_strategy.clone()),
            attachments: attachments.then(|| self.attachments.clone()),
            attachments_status: self.attachments_status.clone().filter(|_| attachments),
            service_connect_defaults: self.service_connect_defaults.clone(),
        }
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use crate::ops::clusters::INCLUDE;
    use crate::records::encode;
    use crate::records::parse;
    use serde_json::Value;

    /// A cluster as the release before this type (gantry-model's `Cluster`) stored it:
    /// CreateCluster's record, with a configuration, providers and tags.
    fn as_main_wrote_it(status: ClusterStatus) -> Cluster {
        Cluster {
            cluster_arn: Some("arn:aws:ecs:us-east-1:000000000000:cluster/prod".into()),
            cluster_name: Some("prod".into()),
            configuration: Some(ClusterConfiguration {
                execute_command_configuration: Some(ExecuteCommandConfiguration {
                    logging: Some("DEFAULT".into()),
                    ..Default::default()
                }),
                managed_storage_configuration: None,
            }),
            status: Some(status.as_str().into()),
            statistics: Some(vec![]),
            tags: Some(vec![Tag { key: Some("team".into()), value: Some("web".into()) }]),
            settings: Some(vec![ClusterSetting {
                name: Some("containerInsights".into()),
                value: Some("enhanced".into()),
            }]),
            capacity_providers: Some(vec!["FARGATE".into(), "FARGATE_SPOT".into()]),
            default_capacity_provider_strategy: Some(vec![CapacityProviderStrategyItem {
                capacity_provider: "FARGATE".into(),
                weight: 1,
                base: 2,
            }]),
            service_connect_defaults: Some(ClusterServiceConnectDefaults { namespace: Some("local".into()) }),
            ..Default::default()
        }
    }

    /// What the record does not store: computed when the API renders it.
    const COMPUTED: [&str; 5] = [
        "registeredContainerInstancesCount",
        "runningTasksCount",
        "pendingTasksCount",
        "activeServicesCount",
        "statistics",
    ];

    #[test]
    fn a_cluster_main_wrote_reads_and_writes_back_the_same_json() {
        for status in [ClusterStatus::Active, ClusterStatus::Inactive] {
            let old = as_main_wrote_it(status);
            let rec: ClusterRecord = parse(&encode(&old)).unwrap();
            assert_eq!(rec.status, status);
            assert_eq!(rec.is_active(), status == ClusterStatus::Active);
            assert_eq!(
                (rec.cluster_name.as_str(), rec.setting("containerInsights")),
                ("prod", Some("enhanced"))
            );
            assert_eq!(rec.capacity_providers, ["FARGATE", "FARGATE_SPOT"]);

            let written = encode(&rec);
            let new: Value = parse(&written).unwrap();
            let mut was: Value = serde_json::to_value(&old).unwrap();
            for k in COMPUTED {
                assert!(new.get(k).is_none(), "{k} is not stored");
                was.as_object_mut().unwrap().remove(k);
            }
            assert_eq!(new, was);
            let back: Cluster = parse(&written).unwrap();
            assert_eq!(back, Cluster { statistics: None, ..old.clone() });

            // The wire shape is what main's render made of its record, before the counts: every
            // part asked for, ...
            let all: Vec<String> = INCLUDE.iter().map(|s| s.to_string()).collect();
            assert_eq!(rec.to_wire(Some(&all)), Cluster { attachments: Some(vec![]), ..old.clone() });
            // ... and without: no settings, configuration or attachments, and an empty tag list.
            let bare = rec.to_wire(None);
            assert_eq!(
                bare,
                Cluster { tags: Some(vec![]), settings: None, configuration: None, ..old.clone() }
            );
        }
    }
}
