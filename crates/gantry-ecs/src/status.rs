//! Where the stored records' status strings (ECS's wire shapes keep strings) become
//! `gantry-core`'s enums and back: the one boundary. Reads go through the `*_status` functions
//! (a described service, daemons, task sets, gateways), writes through the `set_*_status` ones,
//! so only the enums' values are ever written. A stored value Gantry did not write reads as
//! `None`. Records that are domain types (tasks, `ops::task_record::StoredTask`; clusters,
//! `ClusterRecord`; container instances, `InstanceRecord`; a service and its deployments,
//! `ops/service_record.rs`; a service deployment; task definitions and daemon task definitions,
//! `ops/taskdef_record.rs`; capacity providers, `CapacityProviderRecord`) hold the enums
//! themselves.

use gantry_core::{DaemonDeploymentStatus, DaemonStatus, ServiceStatus};
use gantry_model::{DaemonDeployment, Service};

/// A described service's status (the stored record holds [`ServiceStatus`] itself); `None` if
/// it has none, or one Gantry does not know.
pub(crate) fn service_status(s: &Service) -> Option<ServiceStatus> {
    s.status.as_deref().and_then(ServiceStatus::parse)
}

/// A daemon's status as stored (its record keeps ECS's string).
pub(crate) fn daemon_status(s: Option<&str>) -> Option<DaemonStatus> {
    s.and_then(DaemonStatus::parse)
}

/// A daemon deployment's status; `None` for one Gantry does not know.
pub(crate) fn daemon_deployment_status(d: &DaemonDeployment) -> Option<DaemonDeploymentStatus> {
    d.status.as_deref().and_then(DaemonDeploymentStatus::parse)
}

pub(crate) fn set_daemon_deployment_status(d: &mut DaemonDeployment, status: DaemonDeploymentStatus) {
    d.status = Some(status.as_str().into());
}

/// A task set's status; `None` for one Gantry does not know.
pub(crate) fn task_set_status(t: &gantry_model::TaskSet) -> Option<gantry_core::TaskSetStatus> {
    t.status.as_deref().and_then(gantry_core::TaskSetStatus::parse)
}

pub(crate) fn set_task_set_status(t: &mut gantry_model::TaskSet, status: gantry_core::TaskSetStatus) {
    t.status = Some(status.as_str().into());
}

/// A task set's `stabilityStatus`.
pub(crate) fn stability_status(t: &gantry_model::TaskSet) -> Option<gantry_core::StabilityStatus> {
    t.stability_status.as_deref().and_then(gantry_core::StabilityStatus::parse)
}

pub(crate) fn set_stability_status(t: &mut gantry_model::TaskSet, status: gantry_core::StabilityStatus) {
    t.stability_status = Some(status.as_str().into());
}

pub(crate) fn set_attachment_status(a: &mut gantry_model::Attachment, status: gantry_core::AttachmentStatus) {
    a.status = Some(status.as_str().into());
}

/// A managed agent's `lastStatus`.
pub(crate) fn agent_status(a: &gantry_model::ManagedAgent) -> Option<gantry_core::ManagedAgentStatus> {
    a.last_status.as_deref().and_then(gantry_core::ManagedAgentStatus::parse)
}

pub(crate) fn set_agent_status(a: &mut gantry_model::ManagedAgent, status: gantry_core::ManagedAgentStatus) {
    a.last_status = Some(status.as_str().into());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_stored_statuses_read_as_none() {
        let s = Service { status: Some("BOGUS".into()), ..Default::default() };
        assert_eq!(service_status(&s), None);
    }
}
