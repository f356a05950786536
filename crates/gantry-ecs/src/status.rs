//! Where the stored records' status strings (ECS's wire shapes keep strings) become
//! `gantry-core`'s enums and back: the one boundary. Reads go through the `*_status` functions
//! (a described service), writes through the `set_*_status` ones (attachments, managed
//! agents), so only the enums' values are ever written. A stored value Gantry did not write reads
//! as `None`. Every stored record is a domain type that holds the enums itself (tasks,
//! `ops::task_record::StoredTask`; clusters, `ClusterRecord`; container instances,
//! `InstanceRecord`; a service and its deployments, `ops/service_record.rs`; its task sets,
//! `ops/task_set_record.rs`; a service deployment; task definitions and daemon task definitions,
//! `ops/taskdef_record.rs`; capacity providers, `CapacityProviderRecord`; daemons and their
//! revisions and deployments, `ops/daemon_record.rs`; Express services; gateways,
//! `ops/gateway_record.rs`).

use gantry_core::ServiceStatus;
use gantry_model::Service;

/// A described service's status (the stored record holds [`ServiceStatus`] itself); `None` if
/// it has none, or one Gantry does not know.
pub(crate) fn service_status(s: &Service) -> Option<ServiceStatus> {
    s.status.as_deref().and_then(ServiceStatus::parse)
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
