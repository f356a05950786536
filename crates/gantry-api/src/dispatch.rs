//! Routing: one exhaustive `match` from operation name to control-plane call.

use crate::wire::{parse, render, unknown_operation};
use gantry_core::{EcsError, ErrorKind};
use gantry_ecs::{ControlPlane, Ctx};
use gantry_model::json::to_vec;

/// Runs one ECS operation and returns the rendered response body (written by the model's
/// `WriteJson`, serde_json's bytes without serde's call per member).
/// `host` is the `Host` the caller reached this server at (for DiscoverPollEndpoint).
pub async fn dispatch(
    cp: &ControlPlane,
    ctx: &Ctx,
    op: &str,
    body: &[u8],
    host: Option<&str>,
) -> Result<Vec<u8>, EcsError> {
    macro_rules! call {
        // Answers are ECS's shapes, written by their `WriteJson`; Gantry's own extensions answer
        // shapes of their own, rendered by serde (`call!(m, render)`).
        ($method:ident) => {
            call!($method, written)
        };
        ($method:ident, sync) => {
            call!($method, sync, written)
        };
        ($method:ident, sync, $render:ident) => {
            $render(&cp.$method(ctx, parse(op, body)?)?)
        };
        // Each asynchronous operation's future is boxed at its own size, so that this
        // function's future (moved into hyper's connection on every request) stays small
        // instead of as large as the largest operation's. The box is made in a statement of
        // its own: a temporary of the statement that awaits (the parsed input's `Result`)
        // would be kept in this future across the await, as large as the largest input.
        ($method:ident, $render:ident) => {{
            let running = Box::pin(cp.$method(ctx, parse(op, body)?));
            $render(&running.await?)
        }};
    }
    match op {
        // Clusters
        "CreateCluster" => call!(create_cluster),
        "DescribeClusters" => call!(describe_clusters, sync),
        "ListClusters" => call!(list_clusters, sync),
        "UpdateCluster" => call!(update_cluster),
        "UpdateClusterSettings" => call!(update_cluster_settings),
        "PutClusterCapacityProviders" => call!(put_cluster_capacity_providers),
        "DeleteCluster" => call!(delete_cluster),
        // Capacity providers
        "CreateCapacityProvider" => call!(create_capacity_provider),
        "DescribeCapacityProviders" => call!(describe_capacity_providers, sync),
        "UpdateCapacityProvider" => call!(update_capacity_provider),
        "DeleteCapacityProvider" => call!(delete_capacity_provider),
        // Task definitions
        "RegisterTaskDefinition" => call!(register_task_definition),
        "DescribeTaskDefinition" => call!(describe_task_definition, sync),
        "ListTaskDefinitions" => call!(list_task_definitions, sync),
        "ListTaskDefinitionFamilies" => call!(list_task_definition_families, sync),
        "DeregisterTaskDefinition" => call!(deregister_task_definition),
        "DeleteTaskDefinitions" => call!(delete_task_definitions),
        // ECS Managed Daemons
        "RegisterDaemonTaskDefinition" => call!(register_daemon_task_definition),
        "DescribeDaemonTaskDefinition" => call!(describe_daemon_task_definition, sync),
        "ListDaemonTaskDefinitions" => call!(list_daemon_task_definitions, sync),
        "DeleteDaemonTaskDefinition" => call!(delete_daemon_task_definition),
        "CreateDaemon" => call!(create_daemon),
        "UpdateDaemon" => call!(update_daemon),
        "DeleteDaemon" => call!(delete_daemon),
        "DescribeDaemon" => call!(describe_daemon, sync),
        "ListDaemons" => call!(list_daemons, sync),
        "ListDaemonDeployments" => call!(list_daemon_deployments, sync),
        "DescribeDaemonDeployments" => call!(describe_daemon_deployments, sync),
        "DescribeDaemonRevisions" => call!(describe_daemon_revisions, sync),
        // Container instances
        "RegisterContainerInstance" => call!(register_container_instance),
        "DescribeContainerInstances" => call!(describe_container_instances, sync),
        "ListContainerInstances" => call!(list_container_instances, sync),
        "DeregisterContainerInstance" => call!(deregister_container_instance),
        "UpdateContainerInstancesState" => call!(update_container_instances_state),
        "UpdateContainerAgent" => call!(update_container_agent),
        // Tasks
        "RunTask" => call!(run_task),
        "StartTask" => call!(start_task),
        "StopTask" => call!(stop_task),
        "DescribeTasks" => call!(describe_tasks, sync),
        "ListTasks" => call!(list_tasks, sync),
        "UpdateTaskProtection" => call!(update_task_protection),
        "GetTaskProtection" => call!(get_task_protection, sync),
        // Services
        "CreateService" => call!(create_service),
        "UpdateService" => call!(update_service),
        "DeleteService" => call!(delete_service),
        "DescribeServices" => call!(describe_services, sync),
        "ListServices" => call!(list_services, sync),
        "ListServicesByNamespace" => call!(list_services_by_namespace, sync),
        // Service deployment history
        "ListServiceDeployments" => call!(list_service_deployments, sync),
        "DescribeServiceDeployments" => call!(describe_service_deployments, sync),
        "DescribeServiceRevisions" => call!(describe_service_revisions, sync),
        "StopServiceDeployment" => call!(stop_service_deployment),
        "ContinueServiceDeployment" => call!(continue_service_deployment),
        // Task sets (the EXTERNAL deployment controller)
        "CreateTaskSet" => call!(create_task_set),
        "UpdateTaskSet" => call!(update_task_set),
        "DeleteTaskSet" => call!(delete_task_set),
        "DescribeTaskSets" => call!(describe_task_sets, sync),
        "UpdateServicePrimaryTaskSet" => call!(update_service_primary_task_set),
        // ECS Express Mode
        "CreateExpressGatewayService" => call!(create_express_gateway_service),
        "DescribeExpressGatewayService" => call!(describe_express_gateway_service, sync),
        "UpdateExpressGatewayService" => call!(update_express_gateway_service),
        "DeleteExpressGatewayService" => call!(delete_express_gateway_service),
        // ECS Gateways
        "CreateGateway" => call!(create_gateway),
        "DescribeGateway" => call!(describe_gateway, sync),
        "UpdateGateway" => call!(update_gateway),
        "DeleteGateway" => call!(delete_gateway),
        "ListGateways" => call!(list_gateways, sync),
        "AssociateGatewayWithCluster" => call!(associate_gateway_with_cluster),
        "DisassociateGatewayFromCluster" => call!(disassociate_gateway_from_cluster),
        "ListGatewayClusterAssociations" => call!(list_gateway_cluster_associations, sync),
        "ListGatewayRoutes" => call!(list_gateway_routes, sync),
        "DescribeGatewayRoute" => call!(describe_gateway_route, sync),
        "DescribeGatewayResources" => call!(describe_gateway_resources, sync),
        // Agent-facing
        "DiscoverPollEndpoint" => {
            let base_url = format!("http://{}", host.unwrap_or("127.0.0.1"));
            written(&cp.discover_poll_endpoint(ctx, parse(op, body)?, &base_url)?)
        }
        "SubmitTaskStateChange" => call!(submit_task_state_change),
        "SubmitContainerStateChange" => call!(submit_container_state_change),
        "SubmitAttachmentStateChanges" => call!(submit_attachment_state_changes),
        // Gantry's extension: why a task can or cannot be placed.
        "GantryExplainPlacement" => call!(explain_placement, sync, render),
        // Gantry's extension: reclaim FARGATE_SPOT capacity (`gantry spot interrupt`).
        "GantryInterruptSpot" => call!(interrupt_spot, render),
        // Tags
        "TagResource" => call!(tag_resource),
        "UntagResource" => call!(untag_resource),
        "ListTagsForResource" => call!(list_tags_for_resource, sync),
        // Attributes
        "PutAttributes" => call!(put_attributes),
        "DeleteAttributes" => call!(delete_attributes),
        "ListAttributes" => call!(list_attributes, sync),
        // Account settings
        "PutAccountSetting" => call!(put_account_setting),
        "PutAccountSettingDefault" => call!(put_account_setting_default),
        "DeleteAccountSetting" => call!(delete_account_setting),
        "ListAccountSettings" => call!(list_account_settings, sync),
        other if gantry_model::OPERATIONS.contains(&other) => Err(EcsError::new(
            ErrorKind::UnsupportedFeatureException,
            format!("The {other} operation is not supported by this version of Gantry."),
        )),
        other => Err(unknown_operation(&format!("{}{other}", crate::wire::TARGET_PREFIX))),
    }
}

/// An ECS answer as its model's `WriteJson` writes it (serde_json's bytes).
fn written<T: gantry_model::json::WriteJson>(value: &T) -> Result<Vec<u8>, EcsError> {
    Ok(to_vec(value))
}
