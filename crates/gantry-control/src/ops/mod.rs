//! One module per ECS resource, each adding its operations to [`crate::ControlPlane`].

pub mod account_settings;
pub mod agent_channel;
pub mod attributes;
pub mod capacity_providers;
pub mod clusters;
pub mod container_instances;
pub mod placement;
pub mod tags;
pub mod task_definitions;
pub mod tasks;

use gantry_core::{EcsError, Result};

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
