//! Where the stored records' status strings (ECS's wire shapes keep strings) become
//! `gantry-core`'s enums and back: the one boundary. Reads go through the `*_status` functions
//! (capacity providers, task definitions; a described service), writes through the
//! `set_*_status` ones, so only the enums' values are ever written. A stored value Gantry did not
//! write reads as `None`. Records that are domain types (tasks, `ops::task_record::StoredTask`;
//! clusters, `ClusterRecord`; container instances, `InstanceRecord`; a service and its
//! deployments, `ops/service_record.rs`; its task sets, `ops/task_set_record.rs`; a service
//! deployment; daemons and their revisions and deployments, `ops/daemon_record.rs`) hold the
//! enums themselves.

use gantry_core::{CapacityProviderStatus, DaemonTaskDefinitionStatus, ServiceStatus, TaskDefinitionStatus};
use gantry_model::{CapacityProvider, DaemonTaskDefinition, Service, TaskDefinition};

/// A capacity provider's status; `None` if it has none, or one Gantry does not know.
pub(crate) fn provider_status(p: &CapacityProvider) -> Option<CapacityProviderStatus> {
    p.status.as_deref().and_then(CapacityProviderStatus::parse)
}

pub(crate) fn set_provider_status(p: &mut CapacityProvider, status: CapacityProviderStatus) {
    p.status = Some(status.as_str().into());
}

/// A task definition's status (one stored without a status is ACTIVE); `None` for a status
/// Gantry does not know.
pub(crate) fn taskdef_status(d: &TaskDefinition) -> Option<TaskDefinitionStatus> {
    d.status.as_deref().map_or(Some(TaskDefinitionStatus::Active), TaskDefinitionStatus::parse)
}

pub(crate) fn set_taskdef_status(d: &mut TaskDefinition, status: TaskDefinitionStatus) {
    d.status = Some(status.as_str().into());
}

/// A described service's status (the stored record holds [`ServiceStatus`] itself); `None` if
/// it has none, or one Gantry does not know.
pub(crate) fn service_status(s: &Service) -> Option<ServiceStatus> {
    s.status.as_deref().and_then(ServiceStatus::parse)
}

/// A daemon task definition's status; `None` for one Gantry does not know.
pub(crate) fn daemon_taskdef_status(d: &DaemonTaskDefinition) -> Option<DaemonTaskDefinitionStatus> {
    d.status.as_deref().and_then(DaemonTaskDefinitionStatus::parse)
}

pub(crate) fn set_daemon_taskdef_status(d: &mut DaemonTaskDefinition, status: DaemonTaskDefinitionStatus) {
    d.status = Some(status.as_str().into());
}

pub(crate) fn set_gateway_status(g: &mut gantry_model::Gateway, status: gantry_core::GatewayStatus) {
    g.status = Some(status.as_str().into());
}

/// A gateway association's status (stored as a plain string).
pub(crate) fn association_status(s: &str) -> Option<gantry_core::GatewayAssociationStatus> {
    gantry_core::GatewayAssociationStatus::parse(s)
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
