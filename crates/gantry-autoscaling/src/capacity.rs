//! Auto Scaling's side of ECS's capacity providers (`gantry_ports::autoscaling::CapacityGroups`):
//! what a provider reads of its group and the calls it makes, with the same rules and
//! activities as the API's SetDesiredCapacity, SetInstanceProtection, PutLifecycleHook and
//! CompleteLifecycleAction.

use crate::records::{GroupRecord, LcRecord, unreadable};
use crate::{AutoScaling, keys};
use gantry_core::Scope;
use gantry_model::autoscaling::{
    CompleteLifecycleActionType, PutLifecycleHookType, SetInstanceProtectionQuery,
    TerminateInstanceInAutoScalingGroupType,
};
use gantry_ports::autoscaling::{CapacityGroups, GroupInstance, GroupView, OwnedGroup, PortFuture};
use gantry_runtime::records::{Stored, load};

impl CapacityGroups for AutoScaling {
    fn scopes(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .store
            .range(&keys::group_index_prefix(), None, usize::MAX)
            .into_iter()
            .filter_map(|kv| keys::parse_group_index(&kv.key).map(|(s, _)| (s.account, s.region)))
            .collect();
        out.dedup();
        out
    }

    fn group(&self, account: &str, region: &str, arn_or_name: &str) -> Option<GroupView> {
        let scope = Scope::new(account, region);
        let g: Stored<GroupRecord> = self.load_group(&scope, keys::group_name(arn_or_name)).ok()??;
        let g = g.value;
        if arn_or_name.starts_with("arn:") && g.group.auto_scaling_group_arn.as_deref() != Some(arn_or_name) {
            return None;
        }
        let lc_name = g.group.launch_configuration_name.clone().unwrap_or_default();
        let lc: Option<Stored<LcRecord>> =
            load(self.store.as_ref(), &keys::lc(&scope, &lc_name)).map_err(unreadable).ok()?;
        Some(GroupView {
            name: g.name().to_string(),
            arn: g.group.auto_scaling_group_arn.clone().unwrap_or_default(),
            min_size: g.group.min_size,
            max_size: g.group.max_size,
            desired_capacity: g.group.desired_capacity,
            instance_type: lc.map(|l| l.value.lc.instance_type).unwrap_or_default(),
            instances: g
                .instances
                .iter()
                .map(|i| GroupInstance {
                    instance_id: i.instance.instance_id.clone(),
                    lifecycle_state: i.instance.lifecycle_state.as_str().into(),
                    protected_from_scale_in: i.instance.protected_from_scale_in,
                    instance_type: i.instance.instance_type.clone().unwrap_or_default(),
                    launched_at_ms: i.launched_ms,
                })
                .collect(),
            termination_hooks: g
                .hooks
                .iter()
                .filter(|h| h.lifecycle_transition.as_deref() == Some("autoscaling:EC2_INSTANCE_TERMINATING"))
                .filter_map(|h| h.lifecycle_hook_name.clone())
                .collect(),
        })
    }

    fn set_desired<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        desired: i32,
        cause: &'a str,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let scope = Scope::new(account, region);
            self.set_desired(&scope, keys::group_name(group), desired, Some(cause))
                .await
                .map_err(|e| e.message)
        })
    }

    fn set_desired_types<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        desired: i32,
        cause: &'a str,
        types: &'a [String],
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let scope = Scope::new(account, region);
            self.set_desired_launching(&scope, keys::group_name(group), desired, Some(cause), types)
                .await
                .map_err(|e| e.message)
        })
    }

    fn protect<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        instance_ids: &'a [String],
        protected: bool,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let scope = Scope::new(account, region);
            for chunk in instance_ids.chunks(50) {
                let req = SetInstanceProtectionQuery {
                    instance_ids: chunk.to_vec(),
                    auto_scaling_group_name: keys::group_name(group).to_string(),
                    protected_from_scale_in: protected,
                };
                self.set_instance_protection(&scope, req).await.map_err(|e| e.message)?;
            }
            Ok(())
        })
    }

    fn put_termination_hook<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        hook: &'a str,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let scope = Scope::new(account, region);
            let name = keys::group_name(group);
            let present = self.load_group(&scope, name).map_err(|e| e.message)?.is_some_and(|g| {
                g.value.hooks.iter().any(|h| h.lifecycle_hook_name.as_deref() == Some(hook))
            });
            if present {
                return Ok(());
            }
            let req = PutLifecycleHookType {
                lifecycle_hook_name: hook.to_string(),
                auto_scaling_group_name: name.to_string(),
                lifecycle_transition: Some("autoscaling:EC2_INSTANCE_TERMINATING".into()),
                heartbeat_timeout: Some(3600),
                default_result: Some("CONTINUE".into()),
                ..Default::default()
            };
            self.put_lifecycle_hook(&scope, req).await.map(|_| ()).map_err(|e| e.message)
        })
    }

    fn complete<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        hook: &'a str,
        instance_id: &'a str,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let scope = Scope::new(account, region);
            let req = CompleteLifecycleActionType {
                lifecycle_hook_name: hook.to_string(),
                auto_scaling_group_name: keys::group_name(group).to_string(),
                lifecycle_action_token: None,
                lifecycle_action_result: "CONTINUE".into(),
                instance_id: Some(instance_id.to_string()),
            };
            self.complete_lifecycle_action(&scope, req).await.map(|_| ()).map_err(|e| e.message)
        })
    }
    fn replace_instance<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
        instance_id: &'a str,
        cause: &'a str,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let scope = Scope::new(account, region);
            let in_group = self
                .load_group(&scope, keys::group_name(group))
                .map_err(|e| e.message)?
                .is_some_and(|g| g.value.instances.iter().any(|i| i.instance.instance_id == instance_id));
            if !in_group {
                // Gone already (terminated, or its group deleted).
                return Ok(());
            }
            let req = TerminateInstanceInAutoScalingGroupType {
                instance_id: Some(instance_id.to_string()),
                auto_scaling_group_name: Some(keys::group_name(group).to_string()),
                should_decrement_desired_capacity: false,
                ..Default::default()
            };
            match self.terminate_instance(&scope, req, cause).await {
                Ok(_) => Ok(()),
                // Already terminating: what was asked is under way.
                Err(e) if e.code == "ScalingActivityInProgressFault" => Ok(()),
                Err(e) => Err(e.message),
            }
        })
    }

    fn ensure_owned<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a OwnedGroup,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            use base64::Engine;
            let scope = Scope::new(account, region);
            if self.load_group(&scope, &group.name).map_err(|e| e.message)?.is_some() {
                return Ok(());
            }
            let user_data =
                format!("#!/bin/bash\necho ECS_CLUSTER={} >> /etc/ecs/ecs.config\n", group.cluster);
            let lc = serde_json::json!({
                "LaunchConfigurationName": group.name,
                "ImageId": group.image_id,
                "InstanceType": group.instance_type,
                "UserData": base64::engine::general_purpose::STANDARD.encode(user_data),
            });
            // Already there from an earlier attempt: fine.
            match self.call(&scope, "CreateLaunchConfiguration", lc.to_string().as_bytes()).await {
                Ok(_) => {}
                Err(e) if e.code == "AlreadyExistsFault" => {}
                Err(e) => return Err(e.message),
            }
            let tags: Vec<serde_json::Value> = group
                .tags
                .iter()
                .map(|(k, v)| {
                    serde_json::json!({"Key": k, "Value": v, "PropagateAtLaunch": true,
                        "ResourceId": group.name, "ResourceType": "auto-scaling-group"})
                })
                .collect();
            let asg = serde_json::json!({
                "AutoScalingGroupName": group.name,
                "LaunchConfigurationName": group.name,
                "MinSize": 0,
                "MaxSize": group.max_size,
                "DesiredCapacity": 0,
                "NewInstancesProtectedFromScaleIn": false,
                "Tags": tags,
            });
            let mut asg = asg;
            if group.subnets.is_empty() {
                asg["AvailabilityZones"] = serde_json::json!([format!("{region}a")]);
            } else {
                asg["VPCZoneIdentifier"] = serde_json::json!(group.subnets.join(","));
            }
            match self.call(&scope, "CreateAutoScalingGroup", asg.to_string().as_bytes()).await {
                Ok(_) => Ok(()),
                Err(e) if e.code == "AlreadyExistsFault" => Ok(()),
                Err(e) => Err(e.message),
            }
        })
    }

    fn delete_owned<'a>(
        &'a self,
        account: &'a str,
        region: &'a str,
        group: &'a str,
    ) -> PortFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let scope = Scope::new(account, region);
            if let Some(g) = self.load_group(&scope, group).map_err(|e| e.message)? {
                if !g.value.deleting() {
                    let req = serde_json::json!({"AutoScalingGroupName": group, "ForceDelete": true});
                    self.call(&scope, "DeleteAutoScalingGroup", req.to_string().as_bytes())
                        .await
                        .map_err(|e| e.message)?;
                }
                // The controller terminates the instances, then removes the group.
                return Ok(false);
            }
            let lc: Option<Stored<LcRecord>> =
                load(self.store.as_ref(), &keys::lc(&scope, group)).map_err(|e| unreadable(e).message)?;
            if lc.is_some() {
                let req = serde_json::json!({"LaunchConfigurationName": group});
                match self.call(&scope, "DeleteLaunchConfiguration", req.to_string().as_bytes()).await {
                    Ok(_) => {}
                    Err(e) if e.code == "ResourceInUseFault" => return Ok(false),
                    Err(e) => return Err(e.message),
                }
            }
            Ok(true)
        })
    }
}
