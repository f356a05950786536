//! The stored capacity provider record, shared by the capacity provider API
//! (`capacity_providers.rs`) and everything that reads one (cluster auto scaling in
//! `capacity.rs`, clusters' provider checks, daemons, tags): a module of its own so that none of
//! them depends on another's operations to read one.

use crate::keys;
use crate::table::Record;
use gantry_core::{CapacityProviderStatus, CapacityProviderUpdateStatus, Scope};
use gantry_model::*;
use serde::{Deserialize, Serialize};

/// A capacity provider as stored (`keys::capacity_provider`; FARGATE and FARGATE_SPOT are not
/// stored): what Gantry always knows is required and the statuses are enums. Its JSON is the
/// JSON of ECS's `CapacityProvider` shape that Gantry wrote before it had this type (same names,
/// statuses as ECS's strings), so records of earlier releases read as they are; a status that is
/// none of ECS's fails the read (the load names the key). The Auto Scaling group and managed
/// instances configurations keep their wire shapes. The API answers through [`Self::to_wire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProviderRecord {
    pub capacity_provider_arn: String,
    pub name: String,
    /// The cluster of an ECS Managed Instances provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub status: CapacityProviderStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling_group_provider: Option<AutoScalingGroupProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_instances_provider: Option<ManagedInstancesProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<CapacityProviderUpdateStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status_reason: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// EC2_AUTOSCALING or MANAGED_INSTANCES.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub provider_type: Option<String>,
}

impl CapacityProviderRecord {
    /// Whether it is ACTIVE (usable, updatable, deletable, taggable).
    pub fn is_active(&self) -> bool {
        self.status == CapacityProviderStatus::Active
    }

    /// Sets its update status, and the reason (none but for a failure).
    pub fn set_update(&mut self, status: CapacityProviderUpdateStatus, reason: Option<String>) {
        self.update_status = Some(status);
        self.update_status_reason = reason;
    }

    /// ECS's `CapacityProvider`, as the API returns it: the one place the record becomes the
    /// wire shape.
    pub fn to_wire(&self) -> CapacityProvider {
        CapacityProvider {
            capacity_provider_arn: Some(self.capacity_provider_arn.clone()),
            name: Some(self.name.clone()),
            cluster: self.cluster.clone(),
            status: Some(self.status.as_str().into()),
            auto_scaling_group_provider: self.auto_scaling_group_provider.clone(),
            managed_instances_provider: self.managed_instances_provider.clone(),
            update_status: self.update_status.map(|s| s.as_str().into()),
            update_status_reason: self.update_status_reason.clone(),
            tags: Some(self.tags.clone()),
            r#type: self.provider_type.clone(),
        }
    }
}

/// A provider's key (it has no index rows).
impl Record for CapacityProviderRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::capacity_provider(scope, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{decode, encode, parse};
    use gantry_store::KeyValue;
    use serde_json::{Value, json};

    /// Providers as the release before this type stored them (gantry-model's `CapacityProvider`):
    /// an Auto Scaling group provider whose deletion failed, and a deleted managed instances one.
    fn as_main_wrote_them() -> Vec<CapacityProvider> {
        let asg = AutoScalingGroupProvider {
            auto_scaling_group_arn:
                "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:x:autoScalingGroupName/asg"
                    .into(),
            managed_scaling: Some(ManagedScaling {
                status: Some("ENABLED".into()),
                target_capacity: Some(100),
                minimum_scaling_step_size: Some(1),
                maximum_scaling_step_size: Some(10000),
                instance_warmup_period: Some(300),
            }),
            managed_termination_protection: Some("DISABLED".into()),
            managed_draining: Some("ENABLED".into()),
        };
        let mi: ManagedInstancesProvider = serde_json::from_value(json!({
            "infrastructureRoleArn": "arn:aws:iam::000000000000:role/infra",
            "instanceLaunchTemplate": {
                "ec2InstanceProfileArn": "arn:aws:iam::000000000000:instance-profile/ecs",
                "networkConfiguration": {"subnets": ["subnet-1"]}
            },
            "propagateTags": "CAPACITY_PROVIDER"
        }))
        .unwrap();
        vec![
            CapacityProvider {
                capacity_provider_arn: Some(
                    "arn:aws:ecs:us-east-1:000000000000:capacity-provider/asg".into(),
                ),
                name: Some("asg".into()),
                status: Some(CapacityProviderStatus::Active.as_str().into()),
                auto_scaling_group_provider: Some(asg),
                update_status: Some(CapacityProviderUpdateStatus::DeleteFailed.as_str().into()),
                update_status_reason: Some("The capacity provider cannot be deleted because ...".into()),
                tags: Some(vec![Tag { key: Some("team".into()), value: Some("web".into()) }]),
                r#type: Some("EC2_AUTOSCALING".into()),
                ..Default::default()
            },
            CapacityProvider {
                capacity_provider_arn: Some("arn:aws:ecs:us-east-1:000000000000:capacity-provider/mi".into()),
                name: Some("mi".into()),
                cluster: Some("prod".into()),
                status: Some(CapacityProviderStatus::Inactive.as_str().into()),
                managed_instances_provider: Some(mi),
                update_status: Some(CapacityProviderUpdateStatus::DeleteComplete.as_str().into()),
                tags: Some(vec![]),
                r#type: Some("MANAGED_INSTANCES".into()),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn a_provider_main_wrote_reads_and_writes_back_the_same_json() {
        for old in as_main_wrote_them() {
            let rec: CapacityProviderRecord = parse(&encode(&old)).unwrap();
            assert_eq!(Some(rec.status.as_str()), old.status.as_deref());
            assert_eq!(rec.update_status.map(|s| s.as_str()), old.update_status.as_deref());
            assert_eq!(rec.is_active(), rec.name == "asg");
            assert_eq!(parse::<Value>(&encode(&rec)).unwrap(), serde_json::to_value(&old).unwrap());
            assert_eq!(rec.to_wire(), old);
        }
        // Fresh from CreateCapacityProvider: no update status yet.
        let fresh = CapacityProvider {
            update_status: None,
            update_status_reason: None,
            ..as_main_wrote_them()[0].clone()
        };
        let rec: CapacityProviderRecord = parse(&encode(&fresh)).unwrap();
        assert_eq!(rec.update_status, None);
        assert_eq!(rec.to_wire(), fresh);
    }

    #[test]
    fn a_provider_with_an_unknown_status_fails_the_read_naming_the_key() {
        let key = "/000000000000/us-east-1/capacity-provider/asg";
        for (field, bad) in [("status", "RETIRED"), ("updateStatus", "HALF_DONE")] {
            let mut v = serde_json::to_value(&as_main_wrote_them()[0]).unwrap();
            v[field] = json!(bad);
            let kv = KeyValue {
                key: key.into(),
                value: encode(&v).into(),
                create_revision: 1,
                mod_revision: 2,
                version: 1,
            };
            let e = decode::<CapacityProviderRecord>(&kv).unwrap_err();
            assert!(e.message.contains(key), "{e:?}");
            assert!(e.message.contains(bad), "{e:?}");
        }
        for missing in ["capacityProviderArn", "name", "status"] {
            let mut v = serde_json::to_value(&as_main_wrote_them()[0]).unwrap();
            v.as_object_mut().unwrap().remove(missing);
            let e = parse::<CapacityProviderRecord>(&encode(&v)).unwrap_err();
            assert!(e.contains(missing), "{missing}: {e}");
        }
    }
}
