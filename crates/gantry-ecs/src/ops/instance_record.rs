//! The stored container instance record, shared by the instance API (`container_instances.rs`),
//! placement and the fleets, the agent channel, daemons, capacity and usage: a module of its own
//! so that none of them depends on another's operations to read one.

use crate::Stored;
use crate::keys;
use crate::table::{Before, Record, Row};
use gantry_core::time::epoch_seconds;
use gantry_core::{AgentUpdateStatus, InstanceStatus, Scope, Timestamp};
use gantry_model::*;
use serde::{Deserialize, Serialize};

/// An instance's cluster and ID, from its ARN (`...:container-instance/CLUSTER/ID`).
fn cluster_and_id(arn: &str) -> (&str, &str) {
    let resource = arn.split_once(":container-instance/").map(|(_, r)| r).unwrap_or_default();
    resource.split_once('/').unwrap_or(("", resource))
}

fn active() -> InstanceStatus {
    InstanceStatus::Active
}

/// A container instance as stored (`keys::container_instance`): what Gantry always knows is
/// required, the statuses are enums and `registeredAt` a [`Timestamp`]. Its JSON is the JSON of
/// ECS's `ContainerInstance` shape that Gantry wrote before it had this type (same names,
/// statuses as ECS's strings, times as epoch seconds), so records of earlier releases read as
/// they are. What DescribeContainerInstances computes is not stored: whether the agent is
/// connected (liveness) and the task counts (the instance's counters). The API answers through
/// [`Self::to_wire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    pub container_instance_arn: String,
    pub ec2_instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    /// Moves with every change of the instance ECS reports (`version`).
    #[serde(default)]
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<VersionInfo>,
    #[serde(default)]
    pub remaining_resources: Vec<Resource>,
    #[serde(default)]
    pub registered_resources: Vec<Resource>,
    /// An instance stored without a status is ACTIVE.
    #[serde(default = "active")]
    pub status: InstanceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_update_status: Option<AgentUpdateStatus>,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    #[serde(with = "epoch_seconds")]
    pub registered_at: Timestamp,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<ContainerInstanceHealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_devices: Option<Vec<GpuDevice>>,
}

impl InstanceRecord {
    /// The instance as read, before an operation changes it.
    pub(crate) fn before(scope: &Scope, stored: &Stored<InstanceRecord>) -> Before {
        Before::of(scope, stored)
    }

    /// Its cluster and ID, from its ARN.
    pub fn cluster_and_id(&self) -> (&str, &str) {
        cluster_and_id(&self.container_instance_arn)
    }

    /// Its ID (the ARN's last part).
    pub fn id(&self) -> &str {
        self.cluster_and_id().1
    }

    /// Whether it is registered or draining (anything but INACTIVE).
    pub fn is_live(&self) -> bool {
        self.status != InstanceStatus::Inactive
    }

    /// An attribute's value (`None` when the attribute is absent or has no value).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|a| a.name == name).and_then(|a| a.value.as_deref())
    }

    /// ECS's `ContainerInstance`, as the API returns it: the one place the record becomes the
    /// wire shape. What is not stored reads as not connected and no tasks
    /// (`ControlPlane::render_instance` fills them).
    pub fn to_wire(&self) -> ContainerInstance {
        ContainerInstance {
            container_instance_arn: Some(self.container_instance_arn.clone()),
            ec2_instance_id: Some(self.ec2_instance_id.clone()),
            capacity_provider_name: self.capacity_provider_name.clone(),
            version: self.version,
            version_info: self.version_info.clone(),
            remaining_resources: Some(self.remaining_resources.clone()),
            registered_resources: Some(self.registered_resources.clone()),
            status: Some(self.status.as_str().into()),
            status_reason: self.status_reason.clone(),
            agent_connected: false,
            running_tasks_count: 0,
            pending_tasks_count: 0,
            agent_update_status: self.agent_update_status.map(|s| s.as_str().into()),
            attributes: Some(self.attributes.clone()),
            registered_at: Some(self.registered_at.as_epoch_seconds()),
            attachments: Some(self.attachments.clone()),
            tags: Some(self.tags.clone()),
            health_status: self.health_status.clone(),
            gpu_devices: self.gpu_devices.clone(),
        }
    }
}

/// The cluster counter of its registered (ACTIVE or DRAINING) container instances (Gantry's
/// own name: DescribeClusters' `registeredContainerInstancesCount`).
pub(crate) const REGISTERED_INSTANCES: &str = "registeredContainerInstancesCount";

/// An instance's key, its row in the status index (`ci-status/CLUSTER/STATUS/ID`, empty), which
/// ListContainerInstances' status filter reads, and, while it is registered, one in its
/// cluster's [`REGISTERED_INSTANCES`] counter.
impl Record for InstanceRecord {
    fn key(&self, scope: &Scope) -> String {
        let (cluster, id) = self.cluster_and_id();
        keys::container_instance(scope, cluster, id)
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        let (cluster, id) = self.cluster_and_id();
        vec![(keys::ci_status(scope, cluster, self.status.as_str(), id), Vec::new())]
    }
    fn counters(&self, scope: &Scope) -> Vec<String> {
        if !InstanceStatus::REGISTERED.contains(&self.status) {
            return Vec::new();
        }
        vec![keys::cluster_count(scope, self.cluster_and_id().0, REGISTERED_INSTANCES)]
    }
}
