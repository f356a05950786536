//! One module per ECS resource, each adding its operations to [`crate::ControlPlane`].

pub mod account_settings;
pub mod agent_channel;
pub mod attributes;
pub mod capacity_provider_record;
pub mod capacity_providers;
pub mod cluster_record;
pub mod clusters;
pub mod container_instances;
pub mod daemon_record;
pub mod daemon_task_definitions;
pub mod daemons;
pub mod exec;
pub mod express;
pub mod gateway_record;
pub mod gateways;
pub mod instance_record;
pub mod placement;
pub mod service_capacity;
pub mod service_deployments;
pub mod service_record;
pub mod services;
pub mod spot;
pub mod tags;
pub mod task_definitions;
pub mod task_protection;
pub mod task_record;
pub mod task_set_record;
pub mod task_sets;
pub mod taskdef_record;
pub mod tasks;

use gantry_core::{EcsError, Result};
use gantry_model::Failure;

/// The Describe-call failure for a reference that names nothing: its ARN (as given, or built from
/// the short name) with reason MISSING, which the AWS CLI waiters look for.
pub(crate) fn missing(reference: &str, arn_of: impl FnOnce(&str) -> String) -> Failure {
    let arn = if reference.starts_with("arn:") { reference.to_string() } else { arn_of(reference) };
    Failure { arn: Some(arn), reason: Some("MISSING".into()), detail: None }
}

/// Checks an `include`-style list against its allowed values, ECS's way.
pub(crate) fn check_include(field: &str, values: Option<&Vec<String>>, allowed: &[&str]) -> Result<()> {
    for v in values.into_iter().flatten() {
        if !allowed.contains(&v.as_str()) {
            return Err(EcsError::invalid(format!(
                "{field} should be one of [{}], but was '{v}'.",
                allowed.join(",")
            )));
        }
    }
    Ok(())
}

/// Checks that a field's value is one of `allowed`, with ECS's message.
pub(crate) fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(EcsError::invalid(format!("{field} should be one of [{}], but was '{value}'.", allowed.join(","))))
}

/// Whether `include` asks for `field`.
pub(crate) fn includes(values: Option<&Vec<String>>, field: &str) -> bool {
    values.is_some_and(|v| v.iter().any(|x| x == field))
}

/// Checks a batch size against ECS's limit: "`<field>` can have at most N items."
pub(crate) fn check_batch(field: &str, n: usize, max: usize) -> Result<()> {
    if n > max {
        return Err(EcsError::invalid(format!("{field} can have at most {max} items.")));
    }
    Ok(())
}
