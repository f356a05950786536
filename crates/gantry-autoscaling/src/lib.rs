//! EC2 Auto Scaling (the query protocol's `autoscaling`), for capacity: launch configurations,
//! Auto Scaling groups, their instances, scaling activities, lifecycle hooks and tags.
//!
//! An instance is a host running a Gantry agent, started and stopped by a launcher
//! (`gantry_ports::autoscaling::Launcher`, wired by the binary) chosen by the launch
//! configuration's ImageId; it joins the cluster its user data names (`ECS_CLUSTER=`). The
//! operations write the desired state; the group [`controller`] (leader-only, on the injected
//! clock) reconciles it: launches and terminates, with scaling activities and termination
//! lifecycle hooks. ECS's capacity providers reach groups through
//! `gantry_ports::autoscaling::CapacityGroups` ([`capacity`]).
//!
//! Operations take their input and return their output in the JSON form of the generated shapes
//! (`gantry_model::autoscaling`); the front door speaks the query protocol around them. This
//! crate knows no HTTP and no wire format, and depends on no other service's crate.

pub mod capacity;
pub mod controller;
pub mod keys;
mod ops;
pub mod records;

use gantry_core::{Clock, IdGen, Scope, ServiceError};
use gantry_ports::autoscaling::Launcher;
use gantry_runtime::records::{Stored, load};
use gantry_store::{Op, Store, Txn};
use records::{GroupRecord, unreadable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// How many times an operation reads and writes again after losing a compare-and-swap.
const ATTEMPTS: usize = 32;

/// The EC2 Auto Scaling service.
pub struct AutoScaling {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    launcher: Arc<dyn Launcher>,
}

impl std::fmt::Debug for AutoScaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoScaling").finish_non_exhaustive()
    }
}

impl AutoScaling {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        launcher: Arc<dyn Launcher>,
    ) -> Self {
        AutoScaling { store, clock, ids, launcher }
    }

    /// Runs one operation in `scope`: its input as JSON, its output as JSON.
    pub async fn call(&self, scope: &Scope, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        match op {
            "CreateLaunchConfiguration" => {
                render(self.create_launch_configuration(scope, parse(input)?).await?)
            }
            "DescribeLaunchConfigurations" => {
                render(self.describe_launch_configurations(scope, parse(input)?)?)
            }
            "DeleteLaunchConfiguration" => {
                render(self.delete_launch_configuration(scope, parse(input)?).await?)
            }
            "CreateAutoScalingGroup" => render(self.create_group(scope, parse(input)?).await?),
            "UpdateAutoScalingGroup" => render(self.update_group(scope, parse(input)?).await?),
            "DescribeAutoScalingGroups" => render(self.describe_groups(scope, parse(input)?)?),
            "DeleteAutoScalingGroup" => render(self.delete_group(scope, parse(input)?).await?),
            "SetDesiredCapacity" => render(self.set_desired_capacity(scope, parse(input)?).await?),
            "SetInstanceProtection" => render(self.set_instance_protection(scope, parse(input)?).await?),
            "TerminateInstanceInAutoScalingGroup" => {
                render(self.terminate_instance(scope, parse(input)?, ops::USER_REQUEST).await?)
            }
            "DescribeAutoScalingInstances" => render(self.describe_instances(scope, parse(input)?)?),
            "DescribeScalingActivities" => render(self.describe_activities(scope, parse(input)?)?),
            "PutLifecycleHook" => render(self.put_lifecycle_hook(scope, parse(input)?).await?),
            "DescribeLifecycleHooks" => render(self.describe_lifecycle_hooks(scope, parse(input)?)?),
            "DeleteLifecycleHook" => render(self.delete_lifecycle_hook(scope, parse(input)?).await?),
            "CompleteLifecycleAction" => render(self.complete_lifecycle_action(scope, parse(input)?).await?),
            "RecordLifecycleActionHeartbeat" => render(self.record_heartbeat(scope, parse(input)?).await?),
            "CreateOrUpdateTags" => render(self.create_or_update_tags(scope, parse(input)?).await?),
            "DeleteTags" => render(self.delete_tags(scope, parse(input)?).await?),
            "DescribeTags" => render(self.describe_tags(scope, parse(input)?)?),
            _ => Err(invalid_action(op)),
        }
    }

    /// The group controller on this service's store, clock, IDs and launcher.
    pub fn controller(&self) -> controller::GroupController {
        controller::GroupController::new(
            self.store.clone(),
            self.clock.clone(),
            self.ids.clone(),
            self.launcher.clone(),
        )
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().0
    }

    /// Commits a transaction, refusing keys outside Auto Scaling's prefixes; whether its
    /// compares held.
    async fn commit(&self, txn: Txn) -> Result<bool, ServiceError> {
        commit(self.store.as_ref(), txn).await
    }

    fn load_group(&self, scope: &Scope, name: &str) -> Result<Option<Stored<GroupRecord>>, ServiceError> {
        load(self.store.as_ref(), &keys::group(scope, name)).map_err(unreadable)
    }

    /// The group, or ValidationError as Auto Scaling names a missing one.
    fn group_or_missing(&self, scope: &Scope, name: &str) -> Result<Stored<GroupRecord>, ServiceError> {
        self.load_group(scope, keys::group_name(name))?.ok_or_else(|| group_not_found(name))
    }
}

/// Commits `txn` on `store` if every key is Auto Scaling's; whether its compares held.
pub(crate) async fn commit(store: &dyn Store, txn: Txn) -> Result<bool, ServiceError> {
    for op in &txn.ops {
        let (Op::Put(k, _) | Op::Delete(k) | Op::DeletePrefix(k) | Op::Add(k, _)) = op;
        if !keys::owns(k) {
            return Err(ServiceError::receiver(
                "InternalFailure",
                format!("Auto Scaling may not write {k}: it is not under its prefixes."),
            ));
        }
    }
    let r = store.txn(txn).await.map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))?;
    Ok(r.succeeded)
}

/// A request's JSON form as its generated input shape.
fn parse<T: DeserializeOwned>(input: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(input).map_err(|e| {
        let msg = e.to_string();
        match msg.split('`').nth(1).filter(|_| msg.starts_with("missing field")) {
            Some(field) => validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(field)
            )),
            None => validation(format!("The request is not valid: {msg}")),
        }
    })
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn render<T: Serialize>(v: T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(&v).map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))
}

/// The query protocol's answer to an action Gantry's Auto Scaling does not have.
pub fn invalid_action(op: &str) -> ServiceError {
    ServiceError::sender("InvalidAction", format!("Could not find operation {op} for version 2011-01-01"))
}

pub(crate) fn validation(message: impl Into<String>) -> ServiceError {
    ServiceError::sender("ValidationError", message)
}

pub(crate) fn group_not_found(name: &str) -> ServiceError {
    validation(format!("AutoScalingGroup name not found - AutoScalingGroup '{name}' not found"))
}

fn conflict() -> ServiceError {
    ServiceError::sender("ResourceContentionFault", "You already have a pending update to an Auto Scaling resource (for example, a group, instance, or load balancer).")
        .with_status(500)
}

#[cfg(test)]
mod tests;
