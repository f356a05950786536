//! Auto Scaling's stored records, declared to the shared record layer: a launch configuration
//! as described, and a group with what its shape has no room for (each instance's launch time,
//! lifecycle action and activity; the group's lifecycle hooks; the cause of its last capacity
//! change).

use crate::keys;
use gantry_core::{Scope, ServiceError};
use gantry_model::autoscaling::{
    Activity, AutoScalingGroup, Instance, LaunchConfiguration, LaunchTemplateSpecification, LifecycleHook,
};
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

gantry_core::status_enum! {
    /// An instance's `LifecycleState`, the states Gantry's groups go through (Auto Scaling's
    /// names; a state Gantry does not use is a failed read naming it).
    LifecycleState {
        Pending => "Pending",
        PendingWait => "Pending:Wait",
        PendingProceed => "Pending:Proceed",
        InService => "InService",
        Terminating => "Terminating",
        TerminatingWait => "Terminating:Wait",
        TerminatingProceed => "Terminating:Proceed",
        Terminated => "Terminated",
    }
}

impl LifecycleState {
    /// DescribeAutoScalingInstances' spelling: `TERMINATING_WAIT`.
    pub fn upper(self) -> String {
        self.as_str().to_uppercase().replace(':', "_")
    }

    /// Terminating in any stage, or terminated: no longer part of the capacity.
    pub fn is_leaving(self) -> bool {
        matches!(
            self,
            LifecycleState::Terminating
                | LifecycleState::TerminatingWait
                | LifecycleState::TerminatingProceed
                | LifecycleState::Terminated
        )
    }
}

gantry_core::status_enum! {
    /// An instance's `HealthStatus`.
    InstanceHealth {
        Healthy => "Healthy",
        Unhealthy => "Unhealthy",
    }
}

/// An instance of a group as stored: Auto Scaling's `Instance` (the same JSON), with its
/// lifecycle state and health as enums. [`StoredInstance::to_wire`] is the described shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredInstance {
    #[serde(rename = "InstanceId")]
    pub instance_id: String,
    #[serde(rename = "InstanceType", default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(rename = "AvailabilityZone")]
    pub availability_zone: String,
    #[serde(rename = "LifecycleState")]
    pub lifecycle_state: LifecycleState,
    #[serde(rename = "HealthStatus")]
    pub health_status: InstanceHealth,
    #[serde(rename = "LaunchConfigurationName", default, skip_serializing_if = "Option::is_none")]
    pub launch_configuration_name: Option<String>,
    #[serde(rename = "LaunchTemplate", default, skip_serializing_if = "Option::is_none")]
    pub launch_template: Option<LaunchTemplateSpecification>,
    #[serde(rename = "ImageId", default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    #[serde(rename = "ProtectedFromScaleIn")]
    pub protected_from_scale_in: bool,
}

impl StoredInstance {
    /// Auto Scaling's `Instance`.
    pub fn to_wire(&self) -> Instance {
        Instance {
            instance_id: self.instance_id.clone(),
            instance_type: self.instance_type.clone(),
            availability_zone: self.availability_zone.clone(),
            availability_zone_id: None,
            lifecycle_state: self.lifecycle_state.as_str().into(),
            health_status: self.health_status.as_str().into(),
            launch_configuration_name: self.launch_configuration_name.clone(),
            launch_template: self.launch_template.clone(),
            image_id: self.image_id.clone(),
            protected_from_scale_in: self.protected_from_scale_in,
            weighted_capacity: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub instance: StoredInstance,
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
        self.instances.iter().filter(|i| !i.instance.lifecycle_state.is_leaving())
    }
    /// Copies the instances into the described shape.
    pub fn sync(&mut self) {
        self.group.instances = Some(self.instances.iter().map(|i| i.instance.to_wire()).collect());
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn old_instance(state: &str, health: &str) -> Value {
        serde_json::to_value(Instance {
            instance_id: "i-0123456789abcdef0".into(),
            instance_type: Some("m5.large".into()),
            availability_zone: "us-east-1a".into(),
            availability_zone_id: None,
            lifecycle_state: state.into(),
            health_status: health.into(),
            launch_configuration_name: Some("lc".into()),
            launch_template: None,
            image_id: Some("ami-1".into()),
            protected_from_scale_in: true,
            weighted_capacity: None,
        })
        .unwrap()
    }

    #[test]
    fn an_instance_as_the_previous_release_stored_it_reads_and_writes_back_the_same_json() {
        for state in ["Pending", "InService", "Terminating", "Terminating:Wait", "Terminating:Proceed"] {
            let old = json!({"instance": old_instance(state, "Healthy"), "launched_ms": 5, "started": true,
                "activity": "a"});
            let rec: InstanceRecord = serde_json::from_value(old.clone()).unwrap();
            assert_eq!(rec.instance.lifecycle_state.as_str(), state);
            assert_eq!(serde_json::to_value(&rec).unwrap(), old);
            assert_eq!(serde_json::to_value(rec.instance.to_wire()).unwrap(), old["instance"]);
        }
        assert_eq!(LifecycleState::TerminatingWait.upper(), "TERMINATING_WAIT");
        let live: Vec<bool> =
            [LifecycleState::Pending, LifecycleState::InService, LifecycleState::Terminating]
                .iter()
                .map(|s| !s.is_leaving())
                .collect();
        assert_eq!(live, [true, true, false]);
    }

    #[test]
    fn a_state_gantry_does_not_use_fails_the_read_naming_it() {
        for (state, health) in [("Warmed:Hibernated", "Healthy"), ("InService", "Sickly")] {
            let old = json!({"instance": old_instance(state, health), "launched_ms": 5});
            let e = serde_json::from_value::<InstanceRecord>(old).unwrap_err().to_string();
            assert!(e.contains(if health == "Sickly" { health } else { state }), "{e}");
        }
    }
}
