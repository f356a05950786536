//! Where the stored records' status strings (ECS's wire shapes keep strings) become
//! `gantry-core`'s enums and back: the one boundary. Reads go through the `*_status` functions
//! (clusters, capacity providers, task definitions, container instances; a described service),
//! writes through the `set_*_status` ones, so only the enums' values are ever written. A stored
//! value Gantry did not write reads as `None`. Records with types of their own (a service and
//! its deployments, `ops/service_record.rs`; a service deployment) hold the enums themselves.

use gantry_core::{
    CapacityProviderStatus, ClusterStatus, DaemonDeploymentStatus, DaemonStatus, DaemonTaskDefinitionStatus,
    InstanceStatus, ServiceStatus, TaskDefinitionStatus,
};
use gantry_model::{
    CapacityProvider, Cluster, ContainerInstance, DaemonDeployment, DaemonTaskDefinition, Service,
    TaskDefinition,
};

/// A cluster's status; `None` if it has none, or one Gantry does not know.
pub(crate) fn cluster_status(c: &Cluster) -> Option<ClusterStatus> {
    c.status.as_deref().and_then(ClusterStatus::parse)
}

/// Whether a cluster is ACTIVE (the only status in which it takes work or tags).
pub(crate) fn cluster_active(c: &Cluster) -> bool {
    cluster_status(c) == Some(ClusterStatus::Active)
}

pub(crate) fn set_cluster_status(c: &mut Cluster, status: ClusterStatus) {
    c.status = Some(status.as_str().into());
}

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

/// An instance's status (an instance stored without one is ACTIVE); `None` for a status Gantry
/// does not know.
pub(crate) fn instance_status(i: &ContainerInstance) -> Option<InstanceStatus> {
    i.status.as_deref().map_or(Some(InstanceStatus::Active), InstanceStatus::parse)
}

pub(crate) fn set_instance_status(i: &mut ContainerInstance, status: InstanceStatus) {
    i.status = Some(status.as_str().into());
}

/// A daemon task definition's status; `None` for one Gantry does not know.
pub(crate) fn daemon_taskdef_status(d: &DaemonTaskDefinition) -> Option<DaemonTaskDefinitionStatus> {
    d.status.as_deref().and_then(DaemonTaskDefinitionStatus::parse)
}

pub(crate) fn set_daemon_taskdef_status(d: &mut DaemonTaskDefinition, status: DaemonTaskDefinitionStatus) {
    d.status = Some(status.as_str().into());
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

pub(crate) fn set_gateway_status(g: &mut gantry_model::Gateway, status: gantry_core::GatewayStatus) {
    g.status = Some(status.as_str().into());
}

/// A gateway association's status (stored as a plain string).
pub(crate) fn association_status(s: &str) -> Option<gantry_core::GatewayAssociationStatus> {
    gantry_core::GatewayAssociationStatus::parse(s)
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

/// A task's `lastStatus`; `None` if it has none, or one Gantry does not know.
pub(crate) fn last_status(t: &gantry_model::Task) -> Option<gantry_core::TaskStatus> {
    t.last_status.as_deref().and_then(gantry_core::TaskStatus::parse)
}

/// A task's `desiredStatus`; `None` if it has none, or one Gantry does not know.
pub(crate) fn desired_status(t: &gantry_model::Task) -> Option<gantry_core::TaskStatus> {
    t.desired_status.as_deref().and_then(gantry_core::TaskStatus::parse)
}

/// Whether a task is STOPPED.
pub(crate) fn is_stopped(t: &gantry_model::Task) -> bool {
    last_status(t) == Some(gantry_core::TaskStatus::Stopped)
}

/// Whether a task was asked to stop (its `desiredStatus` is STOPPED).
pub(crate) fn stop_wanted(t: &gantry_model::Task) -> bool {
    desired_status(t) == Some(gantry_core::TaskStatus::Stopped)
}

pub(crate) fn set_last_status(t: &mut gantry_model::Task, status: gantry_core::TaskStatus) {
    t.last_status = Some(status.as_str().into());
}

pub(crate) fn set_desired_status(t: &mut gantry_model::Task, status: gantry_core::TaskStatus) {
    t.desired_status = Some(status.as_str().into());
}

/// A container's `lastStatus` (a task's lifecycle's names).
pub(crate) fn set_container_status(c: &mut gantry_model::Container, status: gantry_core::TaskStatus) {
    c.last_status = Some(status.as_str().into());
}

/// A container's `healthStatus`.
pub(crate) fn container_health(c: &gantry_model::Container) -> Option<gantry_core::HealthStatus> {
    c.health_status.as_deref().and_then(gantry_core::HealthStatus::parse)
}

/// A task's `healthStatus` (its essential containers' health, combined).
pub(crate) fn task_health(t: &gantry_model::Task) -> Option<gantry_core::HealthStatus> {
    t.health_status.as_deref().and_then(gantry_core::HealthStatus::parse)
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
    use crate::ops::container_instances::InstanceRecord;
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
        assert_eq!(InstanceRecord(&i).index_keys(&scope).len(), 1);
        i.status = Some("BOGUS".into());
        assert_eq!(instance_status(&i), None);
        assert!(InstanceRecord(&i).index_keys(&scope).is_empty());
        set_instance_status(&mut i, InstanceStatus::Draining);
        assert_eq!(i.status.as_deref(), Some("DRAINING"));

        let mut t = gantry_model::Task { last_status: Some("BOGUS".into()), ..Default::default() };
        assert_eq!((last_status(&t), desired_status(&t)), (None, None));
        assert!(!is_stopped(&t) && !stop_wanted(&t));
        set_last_status(&mut t, gantry_core::TaskStatus::Stopped);
        set_desired_status(&mut t, gantry_core::TaskStatus::Stopped);
        assert!(is_stopped(&t) && stop_wanted(&t));
        assert_eq!(
            (t.last_status.as_deref(), t.desired_status.as_deref()),
            (Some("STOPPED"), Some("STOPPED"))
        );

        let s = Service { status: Some("BOGUS".into()), ..Default::default() };
        assert_eq!(service_status(&s), None);
    }
}
