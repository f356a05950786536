//! Services: the service API (CreateService, UpdateService, DeleteService, DescribeServices,
//! ListServices, ListServicesByNamespace), over the stored record (`service_record.rs`) it
//! shares with the deployment history and the scheduler.
//!
//! A service record is the service as a domain type ([`StoredService`], which becomes ECS's
//! `Service` shape, as DescribeServices returns it, through `to_wire`: its `deployments`, newest
//! PRIMARY first, and its `events`, newest first, at most 100) plus what the scheduler keeps
//! between passes ([`SchedNotes`]). The API owns the service's
//! configuration and creates deployments (CreateService, and every UpdateService that changes
//! what runs); the scheduler (`crate::scheduler`) owns their progress: counts, rollout state,
//! events, and the tasks themselves.

use super::cluster_record::ClusterRecord;
use super::service_record::service_not_found;
pub use super::service_record::{
    HistoryLink, SchedNotes, ServiceRecord, StoredDeployment, StoredEvent, StoredService, new_deployment_id,
};
use super::tasks::{check_compatible, check_launch_fields, check_network, check_task_definition_ref, launch};
use super::{check_batch, check_include, includes, one_of};
use crate::records::{decode, encode, load};
use crate::table::{Before, Record, TxnExt};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::page::{PageRequest, paginate};
use gantry_core::validate::{is_valid_name, validate_tags};
use gantry_core::{DeploymentStatus, EcsError, ErrorKind, Result, Scope, ServiceStatus, Timestamp};
use gantry_model::*;
use gantry_store::Txn;

// ---- the service API: CreateService, UpdateService, DeleteService, DescribeServices,
// ListServices, ListServicesByNamespace -------------------------------------------------------

/// A service's ARN: `arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME`.
pub fn service_arn(scope: &Scope, cluster: &str, name: &str) -> String {
    scope.arn(&format!("service/{cluster}/{name}"))
}

/// Is this the REPLICA (or unset) scheduling strategy?
fn is_daemon(s: &StoredService) -> bool {
    s.is_daemon()
}

/// Validates a deployment configuration and fills ECS's defaults for the scheduling strategy.
fn deployment_configuration(
    given: Option<&DeploymentConfiguration>,
    current: Option<&DeploymentConfiguration>,
    daemon: bool,
) -> Result<DeploymentConfiguration> {
    let mut dc = current.cloned().unwrap_or_default();
    if let Some(g) = given {
        if g.maximum_percent.is_some() {
            dc.maximum_percent = g.maximum_percent;
        }
        if g.minimum_healthy_percent.is_some() {
            dc.minimum_healthy_percent = g.minimum_healthy_percent;
        }
        if g.deployment_circuit_breaker.is_some() {
            dc.deployment_circuit_breaker = g.deployment_circuit_breaker.clone();
        }
        if g.alarms.is_some() {
            dc.alarms = g.alarms.clone();
        }
        if g.strategy.is_some() {
            dc.strategy = g.strategy.clone();
        }
        if g.bake_time_in_minutes.is_some() {
            dc.bake_time_in_minutes = g.bake_time_in_minutes;
        }
        if g.linear_configuration.is_some() {
            dc.linear_configuration = g.linear_configuration.clone();
        }
        if g.canary_configuration.is_some() {
            dc.canary_configuration = g.canary_configuration.clone();
        }
        if g.lifecycle_hooks.is_some() {
            dc.lifecycle_hooks = g.lifecycle_hooks.clone();
        }
    }
    let (min_default, max_default) = if daemon { (0, 100) } else { (100, 200) };
    let min = *dc.minimum_healthy_percent.get_or_insert(min_default);
    let max = *dc.maximum_percent.get_or_insert(max_default);
    if !(0..=100).contains(&min) {
        return Err(EcsError::invalid(format!(
            "deploymentConfiguration.minimumHealthyPercent must be between 0 and 100, but was {min}."
        )));
    }
    if daemon && max != 100 {
        return Err(EcsError::invalid(
            "The daemon scheduling strategy does not support a maximumPercent other than 100.",
        ));
    }
    if !(100..=2000).contains(&max) && !daemon {
        return Err(EcsError::invalid(format!(
            "deploymentConfiguration.maximumPercent must be between 100 and 2000, but was {max}."
        )));
    }
    crate::traffic::check_strategy(&dc, daemon)?;
    let cb = dc.deployment_circuit_breaker.get_or_insert_with(DeploymentCircuitBreaker::default);
    if let Some(t) = &cb.threshold_configuration {
        one_of("deploymentCircuitBreaker.thresholdConfiguration.type", &t.r#type, &["COUNT", "PERCENTAGE"])?;
        let ok = match t.r#type.as_str() {
            "PERCENTAGE" => (1..=100).contains(&t.value),
            _ => t.value >= 1,
        };
        if !ok {
            return Err(EcsError::invalid(format!(
                "deploymentCircuitBreaker.thresholdConfiguration.value {} is out of range for type {}.",
                t.value, t.r#type
            )));
        }
    }
    if let Some(a) = &dc.alarms
        && a.enable
        && a.alarm_names.is_empty()
    {
        return Err(EcsError::invalid("deploymentConfiguration.alarms.alarmNames can not be empty."));
    }
    Ok(dc)
}

/// Checks load balancers against the task definition: each names a target group or a classic
/// load balancer, and a container and port the task definition has.
fn check_load_balancers(lbs: &[LoadBalancer], td: Option<&TaskDefinition>) -> Result<()> {
    if lbs.len() > 5 {
        return Err(EcsError::invalid("loadBalancers can have at most 5 items."));
    }
    for lb in lbs {
        if lb.target_group_arn.is_none() && lb.load_balancer_name.is_none() {
            return Err(EcsError::invalid(
                "Either a targetGroupArn or a loadBalancerName must be specified for a load balancer.",
            ));
        }
        if lb.target_group_arn.is_some() && lb.load_balancer_name.is_some() {
            return Err(EcsError::invalid(
                "loadBalancerName and targetGroupArn cannot both be specified. You must specify either a loadBalancerName or a targetGroupArn.",
            ));
        }
        let name = lb
            .container_name
            .as_deref()
            .ok_or_else(|| EcsError::invalid("containerName can not be blank for a load balancer."))?;
        let port = lb
            .container_port
            .ok_or_else(|| EcsError::invalid("containerPort can not be blank for a load balancer."))?;
        let Some(td) = td else { continue };
        let Some(c) = td.container_definitions.iter().flatten().find(|c| c.name.as_deref() == Some(name))
        else {
            return Err(EcsError::invalid(format!(
                "The container {name} does not exist in the task definition."
            )));
        };
        if !c.port_mappings.iter().flatten().any(|pm| pm.container_port == Some(port)) {
            return Err(EcsError::invalid(format!(
                "The container {name} did not have a container port {port} defined."
            )));
        }
    }
    Ok(())
}

/// Checks each target group of `lbs` against ELBv2, as ECS does: it exists, a load balancer
/// forwards to it, and its target type suits the task definition's network mode (`ip` needs
/// awsvpc, awsvpc needs `ip`).
fn check_target_groups(
    registry: &dyn gantry_ports::lb::TargetRegistry,
    scope: &gantry_core::Scope,
    lbs: &[LoadBalancer],
    td: Option<&TaskDefinition>,
) -> Result<()> {
    use gantry_ports::lb::TargetType;
    for arn in lbs.iter().filter_map(|lb| lb.target_group_arn.as_deref()) {
        let Some(tg) = registry.target_group(scope, arn) else {
            return Err(EcsError::invalid(format!(
                "The target group with targetGroupArn {arn} does not exist."
            )));
        };
        if tg.load_balancer_arns.is_empty() {
            return Err(EcsError::invalid(format!(
                "The target group with targetGroupArn {arn} does not have an associated load balancer."
            )));
        }
        let Some(td) = td else { continue };
        let mode = td.network_mode.as_deref().unwrap_or("bridge");
        let incompatible = match tg.target_type {
            TargetType::Ip => mode != "awsvpc",
            TargetType::Instance => mode == "awsvpc",
        };
        if incompatible {
            let kind = match tg.target_type {
                TargetType::Ip => "ip",
                TargetType::Instance => "instance",
            };
            return Err(EcsError::invalid(format!(
                "The provided target group {arn} has target type {kind}, which is incompatible with the {mode} network mode specified in the task definition."
            )));
        }
    }
    Ok(())
}

fn check_registries(regs: &[ServiceRegistry]) -> Result<()> {
    if regs.len() > 1 {
        return Err(EcsError::invalid("serviceRegistries can have at most 1 item."));
    }
    for r in regs {
        if r.registry_arn.as_deref().is_none_or(str::is_empty) {
            return Err(EcsError::invalid("registryArn can not be blank for a service registry."));
        }
    }
    Ok(())
}

fn check_controller(c: Option<&DeploymentController>) -> Result<String> {
    let t = c.map(|c| c.r#type.clone()).unwrap_or_else(|| "ECS".into());
    one_of("deploymentController.type", &t, &["ECS", "CODE_DEPLOY", "EXTERNAL"])?;
    if t == "CODE_DEPLOY" {
        return Err(EcsError::new(
            ErrorKind::UnsupportedFeatureException,
            "The CODE_DEPLOY deployment controller is not supported by this version of Gantry.",
        ));
    }
    Ok(t)
}

fn check_placement(
    constraints: Option<&Vec<PlacementConstraint>>,
    strategies: Option<&Vec<PlacementStrategy>>,
    td: Option<&TaskDefinition>,
) -> Result<()> {
    let td_constraints = td.and_then(|t| t.placement_constraints.as_deref()).unwrap_or_default();
    super::placement::constraints(constraints.map(Vec::as_slice).unwrap_or_default(), td_constraints)?;
    super::placement::strategies(strategies.map(Vec::as_slice).unwrap_or_default())?;
    Ok(())
}

/// A new service's launch settings: its launch type or capacity provider strategy as given
/// (or the cluster's default), whether it resolves to FARGATE, and its platform version.
struct CreateLaunch {
    launch_type: Option<String>,
    strategy: Option<Vec<CapacityProviderStrategyItem>>,
    fargate: bool,
    platform_version: Option<String>,
}

/// What CreateService validated and resolved, from which the `Service` is made.
struct NewService {
    name: String,
    desired: i32,
    launch: CreateLaunch,
    td_arn: Option<String>,
    dc: DeploymentConfiguration,
    load_balancers: Vec<LoadBalancer>,
    registries: Vec<ServiceRegistry>,
    strategy_name: String,
    controller: String,
    tags: Vec<Tag>,
    daemon: bool,
}

/// CreateService's desiredCount: required for REPLICA, refused for DAEMON (which counts 0).
fn create_desired_count(given: Option<i32>, daemon: bool) -> Result<i32> {
    match (given, daemon) {
        (Some(_), true) => Err(EcsError::invalid(
            "The daemon scheduling strategy does not support a desired count for services. Remove the desired count value and try again",
        )),
        (None, true) => Ok(0),
        (Some(n), false) if n < 0 => {
            Err(EcsError::invalid(format!("desiredCount must be at least 0, but was {n}.")))
        }
        (Some(n), false) => Ok(n),
        (None, false) => Err(EcsError::invalid(
            "desiredCount is required for services using the REPLICA scheduling strategy.",
        )),
    }
}

/// CreateService's launch type or capacity provider strategy, as RunTask resolves them, checked
/// against the task definition, the network configuration and the DAEMON strategy.
fn create_launch(
    cluster: &ClusterRecord,
    req: &CreateServiceRequest,
    td: Option<&TaskDefinition>,
    daemon: bool,
) -> Result<CreateLaunch> {
    let (resolved, _) = launch(cluster, req.launch_type.as_deref(), req.capacity_provider_strategy.as_ref())?;
    let (launch_type, strategy) = match (&req.launch_type, &req.capacity_provider_strategy) {
        (Some(lt), _) => (Some(lt.clone()), None),
        (None, Some(s)) if !s.is_empty() => (None, Some(s.clone())),
        (None, _) => match Some(cluster.default_capacity_provider_strategy.clone()).filter(|s| !s.is_empty())
        {
            Some(s) => (None, Some(s)),
            None => (Some("EC2".to_string()), None),
        },
    };
    let fargate = resolved == "FARGATE";
    if let Some(td) = td {
        check_compatible(td, &resolved)?;
        check_network(td, req.network_configuration.as_ref())?;
    } else if req.network_configuration.is_some() {
        check_network(
            &TaskDefinition { network_mode: Some("awsvpc".into()), ..Default::default() },
            req.network_configuration.as_ref(),
        )?;
    }
    if daemon {
        if fargate {
            return Err(EcsError::invalid(
                "The daemon scheduling strategy is not supported with the FARGATE launch type.",
            ));
        }
        if req.placement_strategy.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(EcsError::invalid(
                "The daemon scheduling strategy does not support placement strategies.",
            ));
        }
    }
    let platform_version = match (&req.platform_version, fargate) {
        (Some(_), false) => {
            return Err(EcsError::invalid(
                "The platform version must be null when specifying an EC2 launch type.",
            ));
        }
        (Some(v), true) => Some(v.clone()),
        (None, true) => Some("LATEST".to_string()),
        (None, false) => None,
    };
    Ok(CreateLaunch { launch_type, strategy, fargate, platform_version })
}

/// CreateService's other settings: placement, load balancers (and the role they need),
/// service registries, the grace period, propagateTags and availabilityZoneRebalancing.
fn check_create_extras(
    req: &CreateServiceRequest,
    td: Option<&TaskDefinition>,
) -> Result<(Vec<LoadBalancer>, Vec<ServiceRegistry>)> {
    check_placement(req.placement_constraints.as_ref(), req.placement_strategy.as_ref(), td)?;
    let lbs = req.load_balancers.clone().unwrap_or_default();
    check_load_balancers(&lbs, td)?;
    if req.role.is_some() && lbs.is_empty() {
        return Err(EcsError::invalid(
            "IAM roles are only valid for services configured to use load balancers.",
        ));
    }
    let registries = req.service_registries.clone().unwrap_or_default();
    check_registries(&registries)?;
    if let Some(g) = req.health_check_grace_period_seconds
        && g < 0
    {
        return Err(EcsError::invalid(format!(
            "healthCheckGracePeriodSeconds must be between 0 and 2147483647, but was {g}."
        )));
    }
    if let Some(p) = &req.propagate_tags {
        one_of("propagateTags", p, &["TASK_DEFINITION", "SERVICE", "NONE"])?;
    }
    if let Some(z) = &req.availability_zone_rebalancing {
        one_of("availabilityZoneRebalancing", z, &["ENABLED", "DISABLED"])?;
    }
    Ok((lbs, registries))
}

/// UpdateService's checks that need no service: propagateTags, availabilityZoneRebalancing,
/// the grace period, service registries; and the deployment controller it asks for, if any.
fn check_update_request(req: &UpdateServiceRequest) -> Result<Option<String>> {
    if let Some(p) = &req.propagate_tags {
        one_of("propagateTags", p, &["TASK_DEFINITION", "SERVICE", "NONE"])?;
    }
    if let Some(z) = &req.availability_zone_rebalancing {
        one_of("availabilityZoneRebalancing", z, &["ENABLED", "DISABLED"])?;
    }
    if let Some(g) = req.health_check_grace_period_seconds
        && g < 0
    {
        return Err(EcsError::invalid(format!(
            "healthCheckGracePeriodSeconds must be between 0 and 2147483647, but was {g}."
        )));
    }
    if let Some(r) = &req.service_registries {
        check_registries(r)?;
    }
    if let Some(n) = req.desired_count
        && n < 0
    {
        return Err(EcsError::invalid(format!("desiredCount must be at least 0, but was {n}.")));
    }
    if let Some(r) = &req.task_definition {
        check_task_definition_ref(r)?;
    }
    if let Some(c) = &req.placement_constraints {
        super::placement::constraints(c, &[])?;
    }
    if let Some(p) = &req.placement_strategy {
        super::placement::strategies(p)?;
    }
    if let Some(lbs) = &req.load_balancers {
        check_load_balancers(lbs, None)?;
    }
    match &req.deployment_controller {
        Some(c) => Ok(Some(check_controller(Some(c))?)),
        None => Ok(None),
    }
}

/// One UpdateService request applied to a service: the request, the task definition it names
/// (if any), the one the service will run, and whether the service is DAEMON.
struct Update<'a> {
    req: &'a UpdateServiceRequest,
    td: Option<&'a TaskDefinition>,
    current_td: Option<&'a TaskDefinition>,
    daemon: bool,
}

impl Update<'_> {
    /// The task definition, launch type or capacity provider strategy, network configuration
    /// and platform version, checked; true if what runs changed.
    fn apply_launch(&self, s: &mut StoredService, cluster: &ClusterRecord) -> Result<bool> {
        let (req, td, daemon) = (self.req, self.td, self.daemon);
        let mut redeploy = false;
        if let Some(t) = td
            && t.task_definition_arn != s.task_definition
        {
            s.task_definition = t.task_definition_arn.clone();
            redeploy = true;
        }
        if let Some(strategy) = &req.capacity_provider_strategy {
            let (launch_type, strategy) = if strategy.is_empty() {
                match Some(cluster.default_capacity_provider_strategy.clone()).filter(|s| !s.is_empty()) {
                    Some(d) => (None, Some(d)),
                    None => (Some("EC2".to_string()), None),
                }
            } else {
                launch(cluster, None, Some(strategy))?;
                (None, Some(strategy.clone()))
            };
            if launch_type != s.launch_type || strategy != s.capacity_provider_strategy {
                s.launch_type = launch_type;
                s.capacity_provider_strategy = strategy;
                redeploy = true;
            }
        }
        let (resolved, _) = launch(cluster, s.launch_type.as_deref(), s.capacity_provider_strategy.as_ref())?;
        let fargate = resolved == "FARGATE";
        if daemon && fargate {
            return Err(EcsError::invalid(
                "The daemon scheduling strategy is not supported with the FARGATE launch type.",
            ));
        }
        if let Some(t) = td {
            check_compatible(t, &resolved)?;
        }
        if let Some(n) = &req.network_configuration
            && s.network_configuration.as_ref() != Some(n)
        {
            s.network_configuration = Some(n.clone());
            redeploy = true;
        }
        if let Some(t) = self.current_td
            && (td.is_some() || req.network_configuration.is_some())
        {
            check_network(t, s.network_configuration.as_ref())?;
        }
        if let Some(v) = &req.platform_version {
            if !fargate {
                return Err(EcsError::invalid(
                    "The platform version must be null when specifying an EC2 launch type.",
                ));
            }
            if s.platform_version.as_ref() != Some(v) {
                s.platform_version = Some(v.clone());
                redeploy = true;
            }
        }
        if fargate {
            s.platform_version.get_or_insert_with(|| "LATEST".into());
            s.platform_family = Some("Linux".into());
        } else {
            s.platform_version = None;
            s.platform_family = None;
        }
        Ok(redeploy)
    }

    /// Placement constraints and strategy, load balancers and service registries, checked;
    /// true if what runs changed.
    fn apply_placement(&self, s: &mut StoredService) -> Result<bool> {
        let (req, current_td) = (self.req, self.current_td);
        let mut redeploy = false;
        if self.daemon && req.placement_strategy.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(EcsError::invalid(
                "The daemon scheduling strategy does not support placement strategies.",
            ));
        }
        if let Some(c) = &req.placement_constraints
            && s.placement_constraints.as_ref() != Some(c)
        {
            s.placement_constraints = Some(c.clone());
            redeploy = true;
        }
        if let Some(p) = &req.placement_strategy
            && s.placement_strategy.as_ref() != Some(p)
        {
            s.placement_strategy = Some(p.clone());
            redeploy = true;
        }
        check_placement(s.placement_constraints.as_ref(), s.placement_strategy.as_ref(), current_td)?;
        if let Some(lbs) = &req.load_balancers {
            check_load_balancers(lbs, current_td)?;
            if s.load_balancers.as_ref() != Some(lbs) {
                s.load_balancers = Some(lbs.clone());
                redeploy = true;
            }
        } else if self.td.is_some() {
            check_load_balancers(s.load_balancers.as_deref().unwrap_or_default(), current_td)?;
        }
        if let Some(r) = &req.service_registries
            && s.service_registries.as_ref() != Some(r)
        {
            s.service_registries = Some(r.clone());
            redeploy = true;
        }
        Ok(redeploy)
    }

    /// The Service Connect and volume configurations the next deployment runs (the request's,
    /// else the current deployment's); true if they changed.
    fn deployment_settings(
        &self,
        s: &StoredService,
    ) -> (Option<ServiceConnectConfiguration>, Option<Vec<ServiceVolumeConfiguration>>, bool) {
        let req = self.req;
        let mut redeploy = false;
        let mut service_connect = s.deployments.first().and_then(|d| d.service_connect_configuration.clone());
        if let Some(sc) = &req.service_connect_configuration
            && service_connect.as_ref() != Some(sc)
        {
            service_connect = Some(sc.clone());
            redeploy = true;
        }
        let mut volumes = s.deployments.first().and_then(|d| d.volume_configurations.clone());
        if let Some(v) = &req.volume_configurations
            && volumes.as_ref() != Some(v)
        {
            volumes = Some(v.clone());
            redeploy = true;
        }
        (service_connect, volumes, redeploy)
    }

    /// The settings that do not change what runs: desired count, deployment configuration,
    /// grace period, execute command, managed tags, propagateTags, AZ rebalancing, controller.
    fn apply_settings(&self, s: &mut StoredService, controller: Option<&str>) -> Result<()> {
        let req = self.req;
        if let Some(n) = req.desired_count {
            if self.daemon {
                return Err(EcsError::invalid(
                    "The daemon scheduling strategy does not support a desired count for services. Remove the desired count value and try again",
                ));
            }
            if n < 0 {
                return Err(EcsError::invalid(format!("desiredCount must be at least 0, but was {n}.")));
            }
            s.desired_count = n;
        }
        s.deployment_configuration = deployment_configuration(
            req.deployment_configuration.as_ref(),
            Some(&s.deployment_configuration),
            self.daemon,
        )?;
        if let Some(g) = req.health_check_grace_period_seconds {
            s.health_check_grace_period_seconds = Some(g);
        }
        if let Some(e) = req.enable_execute_command {
            s.enable_execute_command = e;
        }
        if let Some(e) = req.enable_ecs_managed_tags {
            s.enable_ecs_managed_tags = e;
        }
        if let Some(p) = &req.propagate_tags {
            s.propagate_tags = Some(p.clone());
        }
        if let Some(z) = &req.availability_zone_rebalancing {
            s.availability_zone_rebalancing = Some(z.clone());
        }
        if let Some(c) = controller {
            s.deployment_controller = DeploymentController { r#type: c.to_string() };
        }
        Ok(())
    }
}

/// Brings the PRIMARY deployment's desired count in line with the service's (a change of
/// desiredCount alone makes no new deployment).
pub(crate) fn sync_primary_count(s: &mut StoredService, now: Timestamp) {
    let n = s.desired_count;
    if let Some(primary) = s.deployments.iter_mut().find(|d| d.is_primary())
        && primary.desired_count != n
    {
        primary.desired_count = n;
        primary.updated_at = now;
    }
}

/// What a deployment runs: the settings that, when they change, make a new deployment.
struct Launchable<'a> {
    task_definition: Option<&'a str>,
    desired_count: i32,
    launch_type: Option<&'a str>,
    strategy: Option<&'a Vec<CapacityProviderStrategyItem>>,
    platform_version: Option<&'a str>,
    network: Option<&'a NetworkConfiguration>,
    service_connect: Option<&'a ServiceConnectConfiguration>,
    volumes: Option<&'a Vec<ServiceVolumeConfiguration>>,
}

impl ControlPlane {
    fn new_deployment(&self, l: &Launchable<'_>) -> StoredDeployment {
        let id = new_deployment_id(&*self.ids);
        let fargate = l.launch_type == Some("FARGATE")
            || l.strategy.is_some_and(|s| s.iter().any(|i| i.capacity_provider.starts_with("FARGATE")));
        StoredDeployment {
            rollout_state_reason: Some(format!("ECS deployment {id} in progress.")),
            task_definition: l.task_definition.map(str::to_string),
            desired_count: l.desired_count,
            capacity_provider_strategy: l.strategy.cloned(),
            launch_type: l.launch_type.map(str::to_string),
            platform_version: if fargate { l.platform_version.map(str::to_string) } else { None },
            platform_family: fargate.then(|| "Linux".into()),
            network_configuration: l.network.cloned(),
            service_connect_configuration: l.service_connect.cloned(),
            volume_configurations: l.volumes.cloned(),
            ..StoredDeployment::new(id, self.clock.now())
        }
    }

    pub async fn create_service(
        &self,
        ctx: &Ctx,
        req: CreateServiceRequest,
    ) -> Result<CreateServiceResponse> {
        // Gateway connectors become routes and target groups first (`ops/gateways.rs`).
        if req.gateway_connectors.as_ref().is_some_and(|c| !c.is_empty()) {
            return Box::pin(self.create_service_with_gateways(ctx, req)).await;
        }
        let name = req.service_name.clone();
        if !is_valid_name(&name) {
            return Err(EcsError::invalid(
                "Invalid service name: up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed.",
            ));
        }
        if req.client_token.as_ref().is_some_and(|t| t.len() > 36) {
            return Err(EcsError::invalid("clientToken can have at most 36 characters."));
        }
        // The request's own fields are checked before the cluster is looked up, as ECS does.
        let tags = req.tags.clone().unwrap_or_default();
        validate_tags(&tags)?;
        let strategy_name = req.scheduling_strategy.clone().unwrap_or_else(|| "REPLICA".into());
        one_of("schedulingStrategy", &strategy_name, &["REPLICA", "DAEMON"])?;
        let daemon = strategy_name == "DAEMON";
        let controller = check_controller(req.deployment_controller.as_ref())?;
        let external = controller == "EXTERNAL";
        match (&req.task_definition, external) {
            (Some(r), _) => check_task_definition_ref(r)?,
            (None, true) => {}
            (None, false) => {
                return Err(EcsError::invalid("A task definition must be specified to create a service."));
            }
        }
        check_launch_fields(req.launch_type.as_deref(), req.capacity_provider_strategy.as_ref())?;
        let desired = create_desired_count(req.desired_count, daemon)?;
        check_create_extras(&req, None)?;
        deployment_configuration(req.deployment_configuration.as_ref(), None, daemon)?;
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name.clone();
        // The task definition (optional only for the EXTERNAL controller).
        let td = match &req.task_definition {
            Some(r) => Some(self.active_task_definition(ctx, r)?),
            None => None,
        };
        let launch = create_launch(&cluster.value, &req, td.as_ref(), daemon)?;
        let (load_balancers, registries) = check_create_extras(&req, td.as_ref())?;
        if let Some(registry) = self.target_groups.get() {
            check_target_groups(registry.as_ref(), &ctx.scope, &load_balancers, td.as_ref())?;
        }
        let dc = deployment_configuration(req.deployment_configuration.as_ref(), None, daemon)?;
        crate::traffic::check_load_balancers(
            self.target_groups.get().map(|r| r.as_ref()),
            &ctx.scope,
            crate::traffic::strategy_of(Some(&dc)),
            &load_balancers,
        )?;
        let service = self.new_service(
            ctx,
            &req,
            &cluster.value,
            NewService {
                name: name.clone(),
                desired,
                launch,
                td_arn: td.as_ref().and_then(|t| t.task_definition_arn.clone()),
                dc,
                load_balancers,
                registries,
                strategy_name,
                controller,
                tags,
                daemon,
            },
        );
        let fingerprint = serde_json::to_string(&req).unwrap_or_default();
        let out = self.store_new_service(ctx, &cname, &name, service, fingerprint).await?;
        Ok(CreateServiceResponse { service: Some(out) })
    }

    /// The new service's `Service` shape, with its first deployment (none for EXTERNAL).
    fn new_service(
        &self,
        ctx: &Ctx,
        req: &CreateServiceRequest,
        cluster: &ClusterRecord,
        n: NewService,
    ) -> StoredService {
        let NewService {
            name,
            desired,
            launch: CreateLaunch { launch_type, strategy, fargate, platform_version },
            td_arn,
            dc,
            load_balancers,
            registries,
            strategy_name,
            controller,
            tags,
            daemon,
        } = n;
        let cname = cluster.cluster_name.clone();
        let role_arn = req.role.as_ref().map(|r| {
            if r.starts_with("arn:") {
                r.clone()
            } else {
                format!("arn:aws:iam::{}:role/{r}", ctx.scope.account)
            }
        });
        let now = self.clock.now();
        let deployments = if controller == "EXTERNAL" {
            vec![]
        } else {
            vec![self.new_deployment(&Launchable {
                task_definition: td_arn.as_deref(),
                desired_count: desired,
                launch_type: launch_type.as_deref(),
                strategy: strategy.as_ref(),
                platform_version: platform_version.as_deref(),
                network: req.network_configuration.as_ref(),
                service_connect: req.service_connect_configuration.as_ref(),
                volumes: req.volume_configurations.as_ref(),
            })]
        };
        StoredService {
            service_arn: service_arn(&ctx.scope, &cname, &name),
            service_name: name.clone(),
            cluster_arn: cluster.cluster_arn.clone(),
            load_balancers: Some(load_balancers),
            service_registries: Some(registries),
            status: ServiceStatus::Active,
            desired_count: desired,
            running_count: 0,
            pending_count: 0,
            launch_type,
            capacity_provider_strategy: strategy,
            platform_version,
            platform_family: fargate.then(|| "Linux".into()),
            task_definition: td_arn,
            deployment_configuration: dc,
            task_sets: None,
            deployments,
            role_arn,
            events: vec![],
            created_at: now,
            current_service_deployment: None,
            current_service_revisions: None,
            placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
            placement_strategy: Some(req.placement_strategy.clone().unwrap_or_default()),
            network_configuration: req.network_configuration.clone(),
            health_check_grace_period_seconds: req.health_check_grace_period_seconds.or(Some(0)),
            scheduling_strategy: strategy_name,
            deployment_controller: DeploymentController { r#type: controller },
            tags: Some(tags),
            created_by: Some(ctx.principal.clone()),
            enable_ecs_managed_tags: req.enable_ecs_managed_tags,
            propagate_tags: Some(req.propagate_tags.clone().unwrap_or_else(|| "NONE".into())),
            enable_execute_command: req.enable_execute_command,
            availability_zone_rebalancing: Some(
                req.availability_zone_rebalancing
                    .clone()
                    .unwrap_or_else(|| if daemon { "DISABLED" } else { "ENABLED" }.into()),
            ),
            resource_management_type: None,
        }
    }

    /// Stores a new service (its record, history, request and scheduler entry) while its
    /// cluster is ACTIVE; the same request again answers with the service it made, a
    /// different one for an ACTIVE service is refused.
    async fn store_new_service(
        &self,
        ctx: &Ctx,
        cname: &str,
        name: &str,
        service: StoredService,
        fingerprint: String,
    ) -> Result<Service> {
        let key = keys::service(&ctx.scope, cname, name);
        let request_key = keys::service_request(&ctx.scope, cname, name);
        self.retry(|| {
            // The cluster must still be ACTIVE when the service lands.
            let cluster = self.active_cluster(ctx, Some(cname))?;
            let existing = load::<ServiceRecord>(&*self.store, &key)?;
            let before = match &existing {
                Some(s) => match s.value.service.status {
                    ServiceStatus::Active => {
                        let same = load::<String>(&*self.store, &request_key)?
                            .is_some_and(|r| r.value == fingerprint);
                        if same {
                            return Ok((Txn::new(), s.value.service.to_wire()));
                        }
                        return Err(EcsError::invalid("Creation of service was not idempotent."));
                    }
                    ServiceStatus::Draining => {
                        return Err(EcsError::invalid("Unable to Start a service that is still Draining."));
                    }
                    ServiceStatus::Inactive => Before::of(&ctx.scope, s),
                },
                None => Before::absent(),
            };
            let mut rec = ServiceRecord {
                service: service.clone(),
                sched: SchedNotes::default(),
                history: Vec::new(),
                traffic: Default::default(),
            };
            debug_assert_eq!(rec.key(&ctx.scope), key);
            let txn = self.sync_history(&ctx.scope, cname, &mut rec, None, Txn::new())?;
            let txn = txn
                .when(&cluster.key, cluster.mod_revision)
                .put_record(&ctx.scope, &before, &rec)
                .put(&request_key, encode(&fingerprint));
            let mut shown = rec.service.to_wire();
            shown.tags = service.tags.clone();
            Ok((txn, shown))
        })
        .await
    }

    pub async fn update_service(
        &self,
        ctx: &Ctx,
        req: UpdateServiceRequest,
    ) -> Result<UpdateServiceResponse> {
        if req.gateway_connectors.is_some() {
            return Box::pin(self.update_service_with_gateways(ctx, req)).await;
        }
        // The request's own fields first, then the cluster, as ECS does.
        let controller = check_update_request(&req)?;
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name.clone();
        let td = match &req.task_definition {
            Some(r) => Some(self.active_task_definition(ctx, r)?),
            None => None,
        };
        let out = self
            .retry(|| {
                let mut rec = self.load_service(ctx, &cname, &req.service)?.ok_or_else(service_not_found)?;
                let before = Before::of(&ctx.scope, &rec);
                let s = &mut rec.value.service;
                if s.status != ServiceStatus::Active {
                    return Err(EcsError::new(
                        ErrorKind::ServiceNotActiveException,
                        "Service was not ACTIVE.",
                    ));
                }
                let daemon = is_daemon(s);
                let mut redeploy = req.force_new_deployment;
                // What the tasks run and where.
                let current_td = match (&td, &s.task_definition) {
                    (Some(t), _) => Some(t.clone()),
                    (None, Some(arn)) => {
                        self.find_task_definition(ctx, arn)?.map(|r| r.value.definition.into_wire())
                    }
                    (None, None) => None,
                };
                let u = Update { req: &req, td: td.as_ref(), current_td: current_td.as_ref(), daemon };
                redeploy |= u.apply_launch(s, &cluster.value)?;
                redeploy |= u.apply_placement(s)?;
                if let Some(registry) = self.target_groups.get()
                    && (req.load_balancers.is_some() || td.is_some())
                {
                    let lbs = s.load_balancers.as_deref().unwrap_or_default();
                    check_target_groups(registry.as_ref(), &ctx.scope, lbs, current_td.as_ref())?;
                }
                let (service_connect, volumes, changed) = u.deployment_settings(s);
                redeploy |= changed;
                // Settings that do not change what runs.
                u.apply_settings(s, controller.as_deref())?;
                if req.load_balancers.is_some() || req.deployment_configuration.is_some() {
                    crate::traffic::check_load_balancers(
                        self.target_groups.get().map(|r| r.as_ref()),
                        &ctx.scope,
                        crate::traffic::strategy_of(Some(&s.deployment_configuration)),
                        s.load_balancers.as_deref().unwrap_or_default(),
                    )?;
                }
                self.roll_deployments(s, redeploy, service_connect.as_ref(), volumes.as_ref());
                let txn = self.sync_history(&ctx.scope, &cname, &mut rec.value, None, Txn::new())?;
                let mut shown = rec.value.service.to_wire();
                shown.tags = None;
                Ok((txn.put_record(&ctx.scope, &before, &rec.value), shown))
            })
            .await?;
        Ok(UpdateServiceResponse { service: Some(out) })
    }

    /// UpdateService's deployments: a new PRIMARY one when what runs changed (not for the
    /// EXTERNAL controller), else the PRIMARY's desired count brought in line.
    fn roll_deployments(
        &self,
        s: &mut StoredService,
        redeploy: bool,
        service_connect: Option<&ServiceConnectConfiguration>,
        volumes: Option<&Vec<ServiceVolumeConfiguration>>,
    ) {
        let external = s.is_external();
        let now = self.clock.now();
        let deployments = &mut s.deployments;
        if redeploy && !external {
            for d in deployments.iter_mut() {
                d.status = DeploymentStatus::Active;
                d.updated_at = now;
            }
            let d = self.new_deployment(&Launchable {
                task_definition: s.task_definition.as_deref(),
                desired_count: s.desired_count,
                launch_type: s.launch_type.as_deref(),
                strategy: s.capacity_provider_strategy.as_ref(),
                platform_version: s.platform_version.as_deref(),
                network: s.network_configuration.as_ref(),
                service_connect,
                volumes,
            });
            deployments.insert(0, d);
        } else {
            sync_primary_count(s, now);
        }
    }

    pub async fn delete_service(
        &self,
        ctx: &Ctx,
        req: DeleteServiceRequest,
    ) -> Result<DeleteServiceResponse> {
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name.clone();
        let force = req.force.unwrap_or(false);
        let out = self
            .retry(|| {
                let mut rec = match self.load_service(ctx, &cname, &req.service)? {
                    Some(r) if r.value.service.status != ServiceStatus::Inactive => r,
                    _ => return Err(service_not_found()),
                };
                let before = Before::of(&ctx.scope, &rec);
                let s = &mut rec.value.service;
                if s.status == ServiceStatus::Draining {
                    let mut shown = s.to_wire();
                    shown.tags = None;
                    return Ok((Txn::new(), shown));
                }
                if !force && !is_daemon(s) && s.desired_count > 0 {
                    return Err(EcsError::invalid(
                        "The service cannot be stopped while it is scaled above 0.",
                    ));
                }
                let now = self.clock.now();
                s.status = ServiceStatus::Draining;
                s.desired_count = 0;
                if let Some(primary) = s.deployments.iter_mut().find(|d| d.is_primary()) {
                    primary.desired_count = 0;
                    primary.updated_at = now;
                }
                let txn = self.sync_history(&ctx.scope, &cname, &mut rec.value, None, Txn::new())?;
                let mut shown = rec.value.service.to_wire();
                shown.tags = None;
                Ok((txn.put_record(&ctx.scope, &before, &rec.value), shown))
            })
            .await?;
        // Its gateway routes go with it (`ops/gateways.rs`).
        let sname = out.service_name.clone().unwrap_or_default();
        self.disconnect_gateways(ctx, &cname, &sname, &[]).await?;
        Ok(DeleteServiceResponse { service: Some(out) })
    }

    pub fn describe_services(
        &self,
        ctx: &Ctx,
        req: DescribeServicesRequest,
    ) -> Result<DescribeServicesResponse> {
        check_include("include", req.include.as_ref(), &["TAGS"])?;
        if req.services.is_empty() {
            return Err(EcsError::invalid("Services cannot be empty."));
        }
        check_batch("services", req.services.len(), 10)?;
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name;
        let mut services = Vec::new();
        let mut failures = Vec::new();
        for r in &req.services {
            match self.load_service(ctx, &cname, r)? {
                Some(rec) => {
                    let mut s = rec.value.service.into_wire();
                    if !includes(req.include.as_ref(), "TAGS") {
                        s.tags = None;
                    }
                    services.push(s);
                }
                None => failures.push(super::missing(r, |r| service_arn(&ctx.scope, &cname, r))),
            }
        }
        Ok(DescribeServicesResponse { services: Some(services), failures: Some(failures) })
    }

    pub fn list_services(&self, ctx: &Ctx, req: ListServicesRequest) -> Result<ListServicesResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 10, 100)?;
        if let Some(l) = &req.launch_type {
            one_of("launchType", l, &["EC2", "FARGATE", "EXTERNAL"])?;
        }
        if let Some(s) = &req.scheduling_strategy {
            one_of("schedulingStrategy", s, &["REPLICA", "DAEMON"])?;
        }
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?;
        let cname = cluster.value.cluster_name;
        // The scheduler's index holds exactly the services not INACTIVE, in name order: the
        // INACTIVE ones the cleanup keeps for a while are never read.
        let prefix = keys::service_prefix(&ctx.scope, &cname);
        let index = keys::scheduled_service(&ctx.scope, &cname, "");
        let after =
            page.after.as_deref().and_then(|a| a.strip_prefix(&prefix)).map(|n| format!("{index}{n}"));
        let mut out = Vec::new();
        for row in self.store.range(&index, after.as_deref(), usize::MAX) {
            let Some(rec) = load::<ServiceRecord>(&*self.store, &String::from_utf8_lossy(&row.value))? else {
                continue;
            };
            let s = &rec.value.service;
            let listed = matches!(s.status, ServiceStatus::Active | ServiceStatus::Draining)
                && req.launch_type.as_ref().is_none_or(|l| s.launch_type.as_ref() == Some(l))
                && req.scheduling_strategy.as_ref().is_none_or(|x| &s.scheduling_strategy == x);
            if listed {
                out.push(rec);
                if out.len() > page.limit {
                    break;
                }
            }
        }
        let (items, next) = paginate(out, page.limit, |r| r.key.clone());
        Ok(ListServicesResponse {
            service_arns: Some(items.into_iter().map(|r| r.value.service.service_arn).collect()),
            next_token: next,
        })
    }

    pub fn list_services_by_namespace(
        &self,
        ctx: &Ctx,
        req: ListServicesByNamespaceRequest,
    ) -> Result<ListServicesByNamespaceResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 10, 100)?;
        let ns = req.namespace.trim();
        if ns.is_empty() {
            return Err(EcsError::invalid("namespace can not be blank."));
        }
        // A namespace is named by its name or its Cloud Map ARN; either form matches either.
        let short = |x: &str| x.rsplit('/').next().unwrap_or(x).to_string();
        let matches = |x: Option<&str>| x.is_some_and(|x| x == ns || short(x) == short(ns));
        let mut known = false;
        for c in
            crate::records::load_prefix::<ClusterRecord>(&*self.store, &keys::cluster_prefix(&ctx.scope))?
        {
            if c.value.is_active()
                && matches(c.value.service_connect_defaults.as_ref().and_then(|d| d.namespace.as_deref()))
            {
                known = true;
            }
        }
        let mut out = Vec::new();
        for kv in self.store.range(&keys::services_prefix(&ctx.scope), None, usize::MAX) {
            let rec = decode::<ServiceRecord>(&kv)?;
            let s = &rec.value.service;
            let ns_of = s
                .deployments
                .iter()
                .find(|d| d.is_primary())
                .and_then(|d| d.service_connect_configuration.as_ref())
                .filter(|sc| sc.enabled)
                .and_then(|sc| sc.namespace.as_deref());
            if !matches(ns_of) {
                continue;
            }
            known = true;
            let after = page.after.as_deref().is_none_or(|a| rec.key.as_str() > a);
            if after
                && matches!(s.status, ServiceStatus::Active | ServiceStatus::Draining)
                && out.len() <= page.limit
            {
                out.push(rec);
            }
        }
        if !known {
            return Err(EcsError::new(
                ErrorKind::NamespaceNotFoundException,
                "The specified namespace wasn't found.",
            ));
        }
        let (items, next) = paginate(out, page.limit, |r| r.key.clone());
        Ok(ListServicesByNamespaceResponse {
            service_arns: Some(items.into_iter().map(|r| r.value.service.service_arn).collect()),
            next_token: next,
        })
    }
}
