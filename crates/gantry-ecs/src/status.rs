//! Where the stored records' status strings (ECS's wire shapes keep strings) become
//! `gantry-core`'s enums and back: the one boundary. Reads go through [`service_status`] and
//! [`instance_status`], writes through [`set_service_status`] and [`set_instance_status`], so only
//! the enums' values are ever written. A stored value Gantry did not write reads as `None`.

use gantry_core::{InstanceStatus, ServiceStatus};
use gantry_model::{ContainerInstance, Service};

/// A service's status; `None` if it has none, or one Gantry does not know.
pub(crate) fn service_status(s: &Service) -> Option<ServiceStatus> {
    s.status.as_deref().and_then(ServiceStatus::parse)
}

pub(crate) fn set_service_status(s: &mut Service, status: ServiceStatus) {
    s.status = Some(status.as_str().into());
}

/// An instance's status (an instance stored without one is ACTIVE); `None` for a status Gantry
/// does not know.
pub(crate) fn instance_status(i: &ContainerInstance) -> Option<InstanceStatus> {
    i.status.as_deref().map_or(Some(InstanceStatus::Active), InstanceStatus::parse)
}

pub(crate) fn set_instance_status(i: &mut ContainerInstance, status: InstanceStatus) {
    i.status = Some(status.as_str().into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Record;
    use gantry_core::Scope;

    #[test]
    fn unknown_stored_statuses_read_as_none_and_are_not_indexed() {
        let scope = Scope::new("000000000000", "us-east-1");
        let mut i = ContainerInstance {
            container_instance_arn: Some("arn:aws:ecs:us-east-1:000000000000:container-instance/c/1".into()),
            ..Default::default()
        };
        assert_eq!(instance_status(&i), Some(InstanceStatus::Active), "no status: ACTIVE");
        assert_eq!(i.index_keys(&scope).len(), 1);
        i.status = Some("BOGUS".into());
        assert_eq!(instance_status(&i), None);
        assert!(i.index_keys(&scope).is_empty());
        set_instance_status(&mut i, InstanceStatus::Draining);
        assert_eq!(i.status.as_deref(), Some("DRAINING"));

        let mut s = Service { status: Some("BOGUS".into()), ..Default::default() };
        assert_eq!(service_status(&s), None);
        set_service_status(&mut s, ServiceStatus::Inactive);
        assert_eq!(s.status.as_deref(), Some("INACTIVE"));
    }
}
