//! Auto Scaling's stored records, declared to the shared record layer: a launch configuration
//! as described, and a group with what its shape has no room for (each instance's launch time,
//! lifecycle action and activity; the group's lifecycle hooks; the cause of its last capacity
//! change).

use crate::keys;
use gantry_core::{Scope, ServiceError};
use gantry_model::autoscaling::{Activity, AutoScalingGroup, Instance, LaunchConfiguration, LifecycleHook};
use gantry_runtime::records::{Record, RecordError, Row};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LcRecord {
    pub lc: LaunchConfiguration,
}

/// A group as DescribeAutoScalingGroups shows it (`Instances` and `Tags` inside), plus its
/// hooks and the instances' bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupRecord {
    pub group: AutoScalingGroup,
    #[serde(default)]
    pub hooks: Vec<LifecycleHook>,
    #[serde(default)]
    pub instances: Vec<InstanceRecord>,
    /// What last changed the desired capacity, for the next activity's Cause.
    #[serde(default)]
    pub cause: String,
    /// Bumped by every write, so that the group's index row changes with it (the controller
    /// watches the rows).
    #[serde(default)]
    pub version: u64,
    /// No launch before this time (milliseconds): set by a failed launch.
    #[serde(default)]
    pub retry_after_ms: i64,
    /// The instance types of the next instances launched, in order (set by ECS for the groups
    /// of its Managed Instances providers; the launch configuration's type when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_types: Vec<String>,
    /// Activities a change started, written with it (never stored in the record).
    #[serde(skip)]
    pub new_activities: Vec<(String, Activity)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub instance: Instance,
    pub launched_ms: i64,
    /// Whether the launcher has started it.
    #[serde(default)]
    pub started: bool,
    /// The key of the activity that launches or terminates it.
    #[serde(default)]
    pub activity: String,
    /// A termination lifecycle action it waits on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Wait>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wait {
    pub hook: String,
    pub token: String,
    pub deadline_ms: i64,
    /// `CONTINUE` or `ABANDON` (CompleteLifecycleAction's, or the hook's DefaultResult at the
    /// deadline); both let a terminating instance go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

impl GroupRecord {
    pub fn name(&self) -> &str {
        &self.group.auto_scaling_group_name
    }
    /// Instances that count toward the capacity (neither terminating nor gone).
    pub fn live(&self) -> impl Iterator<Item = &InstanceRecord> {
        self.instances.iter().filter(|i| !i.instance.lifecycle_state.starts_with("Terminat"))
    }
    /// Copies the instances into the described shape.
    pub fn sync(&mut self) {
        self.group.instances = Some(self.instances.iter().map(|i| i.instance.clone()).collect());
        self.version += 1;
    }
    pub fn deleting(&self) -> bool {
        self.group.status.as_deref() == Some("Delete in progress")
    }
}

impl Record for LcRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::lc(scope, &self.lc.launch_configuration_name)
    }
}

impl Record for GroupRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::group(scope, self.name())
    }
    fn index_keys(&self, scope: &Scope) -> Vec<Row> {
        let value = format!("{}\n{}", keys::group(scope, self.name()), self.version);
        vec![(keys::group_index(scope, self.name()), value.into_bytes())]
    }
}

/// A record that could not be read, as the service's own failure.
pub fn unreadable(e: RecordError) -> ServiceError {
    ServiceError::receiver("InternalFailure", e.to_string())
}
