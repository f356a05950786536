//! ECS Express Mode: CreateExpressGatewayService, DescribeExpressGatewayService,
//! UpdateExpressGatewayService, DeleteExpressGatewayService.
//!
//! One call gives a running web service with a URL. An Express service is an ordinary ECS
//! service (FARGATE, awsvpc, one container named `Main`) plus what ECS provisions for it on the
//! caller's behalf, through the `gantry_ports::ingress` ports (ECS never depends on ELBv2 or
//! Application Auto Scaling): a shared internet-facing ALB per account and region
//! (`ecs-express-gateway-alb`, its HTTP listener on the server's `--express-port`), a
//! host-header rule and an `ip` target group per service, and a scalable target with a target
//! tracking policy. The record `express/CLUSTER/NAME` keeps the configurations (one per create
//! or update) and the managed resources' ARNs.
//!
//! Where AWS gives the endpoint `https://NAME-ID.ecs.REGION.on.aws`, Gantry gives
//! `http://NAME-ID.ecs.REGION.localhost[:PORT]`: `*.localhost` resolves to the loopback address
//! (RFC 6761; curl and browsers do it themselves), and the ALB routes it by its `Host`.

use crate::records::load;
use crate::table::{Before, Record, TxnExt};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::arn::{Arn, cluster_name};
use gantry_core::time::epoch_seconds;
use gantry_core::{EcsError, ErrorKind, ExpressServiceStatus, Result, Scope, ServiceStatus, Timestamp};
use gantry_model::*;
use gantry_ports::ingress::{Route, RouteSpec, ScalingRefs, TargetTracking};
use gantry_store::Txn;
use serde::{Deserialize, Serialize};

/// The shared load balancer's name.
pub const SHARED_ALB: &str = "ecs-express-gateway-alb";
/// ECS's defaults for an Express service (the API reference's).
pub const DEFAULT_CPU: &str = "256";
pub const DEFAULT_MEMORY: &str = "512";
pub const DEFAULT_HEALTH_CHECK_PATH: &str = "/ping";
pub const DEFAULT_CONTAINER_PORT: i32 = 80;
pub const DEFAULT_MIN_TASKS: i32 = 1;
pub const DEFAULT_MAX_TASKS: i32 = 20;
pub const DEFAULT_METRIC: &str = "AVERAGE_CPU";
pub const DEFAULT_TARGET_VALUE: i32 = 60;
/// The container an Express task definition must have.
pub const MAIN: &str = "Main";

/// An Express service as stored (`keys::express`): its status an [`ExpressServiceStatus`] and
/// its times [`Timestamp`]s. Its JSON is the JSON Gantry wrote before it had these types (the
/// same snake_case names, the status as ECS's string, times as epoch seconds), so records of
/// earlier releases read as they are; a status that is none of ECS's fails the read, naming the
/// key. The configurations are the user's documents (with ECS's defaults filled in) and keep
/// their wire shape. DescribeExpressGatewayService answers through [`Self::to_wire`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpressRecord {
    pub cluster: String,
    pub name: String,
    pub service_arn: String,
    pub infrastructure_role_arn: String,
    #[serde(with = "epoch_seconds")]
    pub created_at: Timestamp,
    #[serde(with = "epoch_seconds")]
    pub updated_at: Timestamp,
    /// ACTIVE, or DRAINING once deleted (what the API shows follows the ECS service:
    /// [`express_status`]).
    pub status: ExpressServiceStatus,
    /// Every configuration, oldest first; the last is the active one.
    pub configurations: Vec<ExpressGatewayServiceConfiguration>,
    pub host: String,
    pub endpoint: String,
    pub load_balancer_arn: String,
    pub listener_arn: String,
    pub target_group_arn: String,
    pub rule_arn: String,
    /// Empty when the server runs no Application Auto Scaling.
    pub scalable_target_arn: String,
    pub policy_arn: String,
    /// When the managed resources were provisioned (or removed).
    #[serde(with = "epoch_seconds")]
    pub resources_at: Timestamp,
}

impl ExpressRecord {
    /// ECS's `ECSExpressGatewayService` for the record, shown with `status` (the one the ECS
    /// service gives it, [`express_status`]): the one place the record becomes the wire shape.
    /// An INACTIVE service has no active configuration. The current deployment and the tags are
    /// not the record's: they read as none (`ControlPlane::express_view` fills them).
    pub fn to_wire(&self, scope: &Scope, status: ExpressServiceStatus) -> ECSExpressGatewayService {
        ECSExpressGatewayService {
            cluster: Some(scope.cluster_arn(&self.cluster)),
            service_name: Some(self.name.clone()),
            service_arn: Some(self.service_arn.clone()),
            infrastructure_role_arn: Some(self.infrastructure_role_arn.clone()),
            status: Some(ExpressGatewayServiceStatus {
                status_code: Some(status.as_str().into()),
                status_reason: None,
            }),
            current_deployment: None,
            active_configurations: Some(if status == ExpressServiceStatus::Inactive {
                Vec::new()
            } else {
                self.configurations.last().cloned().into_iter().collect()
            }),
            tags: None,
            created_at: Some(self.created_at.as_epoch_seconds()),
            updated_at: Some(self.updated_at.as_epoch_seconds()),
        }
    }
}

impl Record for ExpressRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::express(scope, &self.cluster, &self.name)
    }
}

/// The configuration a create or update asks for, with ECS's defaults filled in.
pub fn resolve(
    base: Option<&ExpressGatewayServiceConfiguration>,
    c: &ExpressGatewayServiceConfiguration,
) -> ExpressGatewayServiceConfiguration {
    let pick = |new: &Option<String>, old: Option<&Option<String>>, default: Option<&str>| {
        new.clone().or_else(|| old.cloned().flatten()).or_else(|| default.map(str::to_string))
    };
    let mut scaling =
        c.scaling_target.clone().or_else(|| base.and_then(|b| b.scaling_target.clone())).unwrap_or_default();
    scaling.min_task_count.get_or_insert(DEFAULT_MIN_TASKS);
    scaling.max_task_count.get_or_insert(DEFAULT_MAX_TASKS);
    scaling.auto_scaling_metric.get_or_insert_with(|| DEFAULT_METRIC.into());
    scaling.auto_scaling_target_value.get_or_insert(DEFAULT_TARGET_VALUE);
    let mut primary = c.primary_container.clone().or_else(|| base.and_then(|b| b.primary_container.clone()));
    // A new container without a port keeps the port the load balancer already sends to.
    let base_port = base.and_then(|b| b.primary_container.as_ref()).and_then(|p| p.container_port);
    if let Some(p) = primary.as_mut() {
        p.container_port.get_or_insert(base_port.unwrap_or(DEFAULT_CONTAINER_PORT));
    }
    ExpressGatewayServiceConfiguration {
        service_revision_arn: None,
        execution_role_arn: pick(&c.execution_role_arn, base.map(|b| &b.execution_role_arn), None),
        task_role_arn: pick(&c.task_role_arn, base.map(|b| &b.task_role_arn), None),
        task_definition_arn: c.task_definition_arn.clone(),
        cpu: pick(&c.cpu, base.map(|b| &b.cpu), Some(DEFAULT_CPU)),
        memory: pick(&c.memory, base.map(|b| &b.memory), Some(DEFAULT_MEMORY)),
        cpu_architecture: pick(&c.cpu_architecture, base.map(|b| &b.cpu_architecture), Some("X86_64")),
        network_configuration: c
            .network_configuration
            .clone()
            .or_else(|| base.and_then(|b| b.network_configuration.clone())),
        health_check_path: pick(
            &c.health_check_path,
            base.map(|b| &b.health_check_path),
            Some(DEFAULT_HEALTH_CHECK_PATH),
        ),
        primary_container: primary,
        scaling_target: Some(scaling),
        ingress_paths: None,
        created_at: None,
    }
}

/// Checks a resolved configuration as ECS does, naming the bad value.
pub fn check(c: &ExpressGatewayServiceConfiguration) -> Result<()> {
    let s = c.scaling_target.clone().unwrap_or_default();
    let (min, max) =
        (s.min_task_count.unwrap_or(DEFAULT_MIN_TASKS), s.max_task_count.unwrap_or(DEFAULT_MAX_TASKS));
    if min < 1 || max < min {
        return Err(EcsError::invalid(format!(
            "scalingTarget: minTaskCount ({min}) must be at least 1 and at most maxTaskCount ({max})."
        )));
    }
    let metric = s.auto_scaling_metric.as_deref().unwrap_or(DEFAULT_METRIC);
    if predefined_metric(metric).is_none() {
        return Err(EcsError::invalid(format!(
            "scalingTarget.autoScalingMetric '{metric}' is not valid: it must be AVERAGE_CPU, AVERAGE_MEMORY or REQUEST_COUNT_PER_TARGET."
        )));
    }
    if s.auto_scaling_target_value.is_some_and(|v| v <= 0) {
        return Err(EcsError::invalid("scalingTarget.autoScalingTargetValue must be greater than 0."));
    }
    if let Some(p) = &c.health_check_path
        && !p.starts_with('/')
    {
        return Err(EcsError::invalid(format!("healthCheckPath '{p}' must start with a forward slash.")));
    }
    if let Some(a) = &c.cpu_architecture
        && !matches!(a.as_str(), "X86_64" | "ARM64")
    {
        return Err(EcsError::invalid(format!(
            "cpuArchitecture '{a}' is not valid: it must be X86_64 or ARM64."
        )));
    }
    if let Some(p) = &c.primary_container {
        if p.image.trim().is_empty() {
            return Err(EcsError::invalid("primaryContainer.image must not be empty."));
        }
        if let Some(port) = p.container_port
            && !(1..=65535).contains(&port)
        {
            return Err(EcsError::invalid(format!(
                "primaryContainer.containerPort {port} must be from 1 to 65535."
            )));
        }
    }
    Ok(())
}

/// Application Auto Scaling's predefined metric for an Express scaling metric.
pub fn predefined_metric(metric: &str) -> Option<&'static str> {
    match metric {
        "AVERAGE_CPU" => Some("ECSServiceAverageCPUUtilization"),
        "AVERAGE_MEMORY" => Some("ECSServiceAverageMemoryUtilization"),
        "REQUEST_COUNT_PER_TARGET" => Some("ALBRequestCountPerTarget"),
        _ => None,
    }
}

/// `app/NAME/ID/targetgroup/NAME/ID`, ALBRequestCountPerTarget's resource label.
pub fn resource_label(lb_arn: &str, tg_arn: &str) -> Option<String> {
    let lb = lb_arn.split_once(":loadbalancer/")?.1;
    let tg = tg_arn.rsplit_once(':')?.1;
    Some(format!("{lb}/{tg}"))
}

/// The endpoint's host for a service (`NAME-ID.ecs.REGION.localhost`, lowercase: a DNS name).
pub fn host(name: &str, id: &str, region: &str) -> String {
    let label: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!("{label}-{id}.ecs.{region}.localhost")
}

/// `http://HOST` with the port when it is not 80.
pub fn endpoint(host: &str, port: u16) -> String {
    if port == 80 { format!("http://{host}") } else { format!("http://{host}:{port}") }
}

/// An Express service's status: its ECS service's, DRAINING once deleted.
pub fn express_status(service: Option<ServiceStatus>, stored: ExpressServiceStatus) -> ExpressServiceStatus {
    match service {
        Some(ServiceStatus::Inactive) | None => ExpressServiceStatus::Inactive,
        Some(ServiceStatus::Draining) => ExpressServiceStatus::Draining,
        _ if stored == ExpressServiceStatus::Draining => ExpressServiceStatus::Draining,
        _ => ExpressServiceStatus::Active,
    }
}

fn not_express(arn: &str) -> EcsError {
    EcsError::new(ErrorKind::ServiceNotFoundException, format!("The Express service '{arn}' was not found."))
}

fn port_error(what: &str, e: String) -> EcsError {
    EcsError::server(format!("{what}: {e}"))
}

/// The task definition an Express configuration registers.
fn task_definition(family: &str, c: &ExpressGatewayServiceConfiguration) -> RegisterTaskDefinitionRequest {
    let p = c.primary_container.clone().unwrap_or_default();
    let port = p.container_port.unwrap_or(DEFAULT_CONTAINER_PORT);
    let log_configuration = p.aws_logs_configuration.as_ref().map(|l| LogConfiguration {
        log_driver: "awslogs".into(),
        options: Some(
            [
                ("awslogs-group".to_string(), l.log_group.clone()),
                ("awslogs-stream-prefix".to_string(), l.log_stream_prefix.clone()),
                ("awslogs-create-group".to_string(), "true".to_string()),
            ]
            .into_iter()
            .collect(),
        ),
        ..Default::default()
    });
    RegisterTaskDefinitionRequest {
        family: family.to_string(),
        network_mode: Some("awsvpc".into()),
        requires_compatibilities: Some(vec!["FARGATE".into()]),
        cpu: c.cpu.clone(),
        memory: c.memory.clone(),
        execution_role_arn: c.execution_role_arn.clone(),
        task_role_arn: c.task_role_arn.clone(),
        runtime_platform: Some(RuntimePlatform {
            cpu_architecture: c.cpu_architecture.clone(),
            operating_system_family: Some("LINUX".into()),
        }),
        container_definitions: vec![ContainerDefinition {
            name: Some(MAIN.into()),
            image: Some(p.image.clone()),
            essential: Some(true),
            port_mappings: Some(vec![PortMapping {
                container_port: Some(port),
                protocol: Some("tcp".into()),
                name: Some(format!("{}-{port}-tcp", MAIN.to_ascii_lowercase())),
                ..Default::default()
            }]),
            command: p.command.clone(),
            environment: p.environment.clone(),
            secrets: p.secrets.clone(),
            repository_credentials: p
                .repository_credentials
                .as_ref()
                .and_then(|r| r.credentials_parameter.clone())
                .map(|credentials_parameter| RepositoryCredentials { credentials_parameter }),
            log_configuration,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn network(c: &ExpressGatewayServiceConfiguration) -> NetworkConfiguration {
    let n = c.network_configuration.clone().unwrap_or_default();
    let subnets =
        n.subnets.filter(|s| !s.is_empty()).unwrap_or_else(|| vec!["subnet-ecs-express-default".into()]);
    NetworkConfiguration {
        awsvpc_configuration: Some(AwsVpcConfiguration {
            subnets,
            security_groups: n.security_groups,
            assign_public_ip: Some("DISABLED".into()),
        }),
    }
}

/// The configuration a Create or UpdateExpressGatewayService request asks for (the two request
/// shapes share these members' names and types).
macro_rules! asked_configuration {
    ($req:expr) => {
        ExpressGatewayServiceConfiguration {
            execution_role_arn: $req.execution_role_arn.clone(),
            task_role_arn: $req.task_role_arn.clone(),
            task_definition_arn: $req.task_definition_arn.clone(),
            cpu: $req.cpu.clone(),
            memory: $req.memory.clone(),
            cpu_architecture: $req.cpu_architecture.clone(),
            network_configuration: $req.network_configuration.clone(),
            health_check_path: $req.health_check_path.clone(),
            primary_container: $req.primary_container.clone(),
            scaling_target: $req.scaling_target.clone(),
            ..Default::default()
        }
    };
}

impl ControlPlane {
    fn ingress(&self) -> Result<(std::sync::Arc<dyn gantry_ports::ingress::Ingress>, u16)> {
        match self.ingress.get() {
            Some((i, port)) => Ok((i.clone(), *port)),
            None => Err(EcsError::new(
                ErrorKind::UnsupportedFeatureException,
                "Express services need the load balancer service, which this server does not run.",
            )),
        }
    }

    fn load_express(&self, ctx: &Ctx, arn: &str) -> Result<crate::Stored<ExpressRecord>> {
        let a = Arn::parse_in(&ctx.scope, arn, "service")?;
        let (cluster, name) = a.resource.split_once('/').ok_or_else(|| not_express(arn))?;
        load::<ExpressRecord>(&*self.store, &keys::express(&ctx.scope, cluster, name))?
            .ok_or_else(|| not_express(arn))
    }

    /// The task definition ARN a configuration runs: its own, or one registered for it.
    async fn express_task_definition(
        &self,
        ctx: &Ctx,
        family: &str,
        c: &ExpressGatewayServiceConfiguration,
    ) -> Result<(String, i32)> {
        if let Some(arn) = &c.task_definition_arn {
            let td = self
                .describe_task_definition(
                    ctx,
                    DescribeTaskDefinitionRequest { task_definition: arn.clone(), ..Default::default() },
                )?
                .task_definition
                .unwrap_or_default();
            let main = td.container_definitions.iter().flatten().find(|d| d.name.as_deref() == Some(MAIN));
            let port = main
                .and_then(|m| m.port_mappings.as_ref())
                .and_then(|p| p.first())
                .and_then(|p| p.container_port)
                .ok_or_else(|| {
                    EcsError::invalid(format!(
                        "The task definition '{arn}' must have a container named {MAIN} with a TCP port mapping."
                    ))
                })?;
            if !td.requires_compatibilities.iter().flatten().any(|x| x == "FARGATE") {
                return Err(EcsError::new(
                    ErrorKind::ClientException,
                    format!("The task definition '{arn}' must have FARGATE compatibility."),
                ));
            }
            return Ok((td.task_definition_arn.unwrap_or_else(|| arn.clone()), port));
        }
        let td = self
            .register_task_definition(ctx, task_definition(family, c))
            .await?
            .task_definition
            .unwrap_or_default();
        let port =
            c.primary_container.as_ref().and_then(|p| p.container_port).unwrap_or(DEFAULT_CONTAINER_PORT);
        Ok((td.task_definition_arn.unwrap_or_default(), port))
    }

    fn latest_revision(&self, ctx: &Ctx, cluster: &str, name: &str) -> (Option<String>, Option<String>) {
        let out = self.list_service_deployments(
            ctx,
            ListServiceDeploymentsRequest {
                service: name.to_string(),
                cluster: Some(cluster.to_string()),
                ..Default::default()
            },
        );
        let first = out.ok().and_then(|o| o.service_deployments).and_then(|v| v.into_iter().next());
        match first {
            Some(d) => (d.service_deployment_arn, d.target_service_revision_arn),
            None => (None, None),
        }
    }

    async fn put_scaling(
        &self,
        ctx: &Ctx,
        rec: &ExpressRecord,
        c: &ExpressGatewayServiceConfiguration,
    ) -> Result<ScalingRefs> {
        let Some(scaling) = self.service_scaling.get() else {
            return Ok(ScalingRefs::default());
        };
        let s = c.scaling_target.clone().unwrap_or_default();
        let metric = s.auto_scaling_metric.as_deref().unwrap_or(DEFAULT_METRIC);
        let spec = TargetTracking {
            min_capacity: s.min_task_count.unwrap_or(DEFAULT_MIN_TASKS),
            max_capacity: s.max_task_count.unwrap_or(DEFAULT_MAX_TASKS),
            policy_name: format!("{}-express-target-tracking", rec.name),
            predefined_metric: predefined_metric(metric).unwrap_or("ECSServiceAverageCPUUtilization").into(),
            resource_label: (metric == "REQUEST_COUNT_PER_TARGET")
                .then(|| resource_label(&rec.load_balancer_arn, &rec.target_group_arn))
                .flatten(),
            target_value: s.auto_scaling_target_value.unwrap_or(DEFAULT_TARGET_VALUE) as f64,
        };
        scaling
            .put_target_tracking(&ctx.scope, &rec.cluster, &rec.name, &spec)
            .await
            .map_err(|e| port_error("The service's auto scaling could not be set up", e))
    }

    pub async fn create_express_gateway_service(
        &self,
        ctx: &Ctx,
        req: CreateExpressGatewayServiceRequest,
    ) -> Result<CreateExpressGatewayServiceResponse> {
        if req.infrastructure_role_arn.trim().is_empty() {
            return Err(EcsError::invalid("infrastructureRoleArn must be specified."));
        }
        match (&req.primary_container, &req.task_definition_arn) {
            (Some(_), Some(_)) => {
                return Err(EcsError::invalid(
                    "You cannot specify both primaryContainer and taskDefinitionArn.",
                ));
            }
            (None, None) => {
                return Err(EcsError::invalid(
                    "Either primaryContainer or taskDefinitionArn must be specified.",
                ));
            }
            (None, Some(_)) if req.cpu_architecture.is_some() => {
                return Err(EcsError::invalid(
                    "You cannot specify cpuArchitecture together with taskDefinitionArn.",
                ));
            }
            _ => {}
        }
        let (ingress, port) = self.ingress()?;
        let asked = asked_configuration!(req);
        let mut config = resolve(None, &asked);
        check(&config)?;
        let id = &self.ids.hex_id()[..8];
        let name = req.service_name.clone().unwrap_or_else(|| format!("express-{id}"));
        if !gantry_core::validate::is_valid_name(&name) {
            return Err(EcsError::invalid(
                "Invalid service name: up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed.",
            ));
        }
        // The default cluster is made when it is needed, as ECS does for Express services.
        let cluster = cluster_name(&ctx.scope, req.cluster.as_deref())?;
        if req.cluster.as_deref().unwrap_or("").trim().is_empty()
            && self.active_cluster(ctx, Some(&cluster)).is_err()
        {
            self.create_cluster(
                ctx,
                CreateClusterRequest { cluster_name: Some(cluster.clone()), ..Default::default() },
            )
            .await?;
        }
        self.active_cluster(ctx, Some(&cluster))?;
        if load::<ExpressRecord>(&*self.store, &keys::express(&ctx.scope, &cluster, &name))?
            .is_some_and(|r| r.value.status != ExpressServiceStatus::Inactive)
            || self
                .load_service(ctx, &cluster, &name)?
                .is_some_and(|r| r.value.service.status != ServiceStatus::Inactive)
        {
            return Err(EcsError::invalid(format!(
                "A service named '{name}' already exists in the cluster '{cluster}'."
            )));
        }
        let (td_arn, container_port) = self.express_task_definition(ctx, &name, &config).await?;
        config.task_definition_arn = Some(td_arn.clone());
        let alb = ingress
            .shared_alb(&ctx.scope, SHARED_ALB, port)
            .await
            .map_err(|e| port_error("The load balancer could not be provisioned", e))?;
        let host = host(&name, id, &ctx.scope.region);
        let spec = RouteSpec {
            target_group_name: format!("ecs-express-{id}"),
            port: container_port as u16,
            health_check_path: config
                .health_check_path
                .clone()
                .unwrap_or_else(|| DEFAULT_HEALTH_CHECK_PATH.into()),
            host: host.clone(),
            tags: vec![("AmazonECSManaged".into(), "true".into()), ("ecs:service".into(), name.clone())],
            ..Default::default()
        };
        let route = ingress
            .add_route(&ctx.scope, &alb.listener_arn, &spec)
            .await
            .map_err(|e| port_error("The target group and listener rule could not be provisioned", e))?;
        let min = config.scaling_target.as_ref().and_then(|s| s.min_task_count).unwrap_or(DEFAULT_MIN_TASKS);
        let created = self
            .create_service(
                ctx,
                CreateServiceRequest {
                    service_name: name.clone(),
                    cluster: Some(cluster.clone()),
                    task_definition: Some(td_arn.clone()),
                    desired_count: Some(min),
                    launch_type: Some("FARGATE".into()),
                    network_configuration: Some(network(&config)),
                    load_balancers: Some(vec![LoadBalancer {
                        target_group_arn: Some(route.target_group_arn.clone()),
                        container_name: Some(MAIN.into()),
                        container_port: Some(container_port),
                        ..Default::default()
                    }]),
                    health_check_grace_period_seconds: Some(30),
                    tags: req.tags.clone(),
                    ..Default::default()
                },
            )
            .await;
        let service = match created {
            Ok(o) => o.service.unwrap_or_default(),
            Err(e) => {
                let _ = ingress.remove_route(&ctx.scope, &alb.load_balancer_arn, &route).await;
                return Err(e);
            }
        };
        let now = self.clock.now();
        let endpoint = endpoint(&host, alb.port);
        let (_, revision) = self.latest_revision(ctx, &cluster, &name);
        config.service_revision_arn = revision;
        config.created_at = Some(now.as_epoch_seconds());
        config.ingress_paths =
            Some(vec![IngressPathSummary { access_type: "PUBLIC".into(), endpoint: endpoint.clone() }]);
        let mut rec = ExpressRecord {
            cluster: cluster.clone(),
            name: name.clone(),
            service_arn: service.service_arn.clone().unwrap_or_default(),
            infrastructure_role_arn: req.infrastructure_role_arn.clone(),
            created_at: now,
            updated_at: now,
            status: ExpressServiceStatus::Active,
            configurations: vec![config.clone()],
            host,
            endpoint,
            load_balancer_arn: alb.load_balancer_arn,
            listener_arn: alb.listener_arn,
            target_group_arn: route.target_group_arn,
            rule_arn: route.rule_arn,
            scalable_target_arn: String::new(),
            policy_arn: String::new(),
            resources_at: now,
        };
        let refs = self.put_scaling(ctx, &rec, &config).await?;
        rec.scalable_target_arn = refs.scalable_target_arn;
        rec.policy_arn = refs.policy_arn;
        self.commit(Txn::new().put_record(&ctx.scope, &Before::absent(), &rec)).await?;
        Ok(CreateExpressGatewayServiceResponse { service: Some(self.express_view(ctx, &rec, false)) })
    }

    fn express_status_of(&self, ctx: &Ctx, rec: &ExpressRecord) -> ExpressServiceStatus {
        let svc = self.load_service(ctx, &rec.cluster, &rec.name).ok().flatten();
        express_status(svc.as_ref().map(|r| r.value.service.status), rec.status)
    }

    /// What ECS manages for an Express service, as its service revisions report it
    /// (`ecsManagedResources`): ACTIVE while the service is, DELETED once it was deleted.
    pub(crate) fn express_managed_resources(
        &self,
        ctx: &Ctx,
        cluster: &str,
        name: &str,
    ) -> Option<ECSManagedResources> {
        let rec = load::<ExpressRecord>(&*self.store, &keys::express(&ctx.scope, cluster, name)).ok()??.value;
        let status = if rec.status == ExpressServiceStatus::Active { "ACTIVE" } else { "DELETED" };
        let at = rec.resources_at.as_epoch_seconds();
        let config = rec.configurations.last().cloned().unwrap_or_default();
        let port = config
            .primary_container
            .as_ref()
            .and_then(|p| p.container_port)
            .unwrap_or(DEFAULT_CONTAINER_PORT);
        let scaling = config.scaling_target.clone().unwrap_or_default();
        Some(ECSManagedResources {
            ingress_paths: Some(vec![ManagedIngressPath {
                access_type: "PUBLIC".into(),
                endpoint: rec.endpoint.clone(),
                load_balancer: Some(ManagedLoadBalancer {
                    arn: Some(rec.load_balancer_arn.clone()),
                    status: status.into(),
                    updated_at: at,
                    scheme: "internet-facing".into(),
                    ..Default::default()
                }),
                listener: Some(ManagedListener {
                    arn: Some(rec.listener_arn.clone()),
                    status: status.into(),
                    updated_at: at,
                    ..Default::default()
                }),
                rule: Some(ManagedListenerRule {
                    arn: Some(rec.rule_arn.clone()),
                    status: status.into(),
                    updated_at: at,
                    ..Default::default()
                }),
                target_groups: Some(vec![ManagedTargetGroup {
                    arn: Some(rec.target_group_arn.clone()),
                    status: status.into(),
                    updated_at: at,
                    health_check_path: config
                        .health_check_path
                        .clone()
                        .unwrap_or_else(|| DEFAULT_HEALTH_CHECK_PATH.into()),
                    health_check_port: port,
                    port,
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            auto_scaling: (!rec.scalable_target_arn.is_empty()).then(|| ManagedAutoScaling {
                scalable_target: Some(ManagedScalableTarget {
                    arn: Some(rec.scalable_target_arn.clone()),
                    status: status.into(),
                    updated_at: at,
                    min_capacity: scaling.min_task_count.unwrap_or(DEFAULT_MIN_TASKS),
                    max_capacity: scaling.max_task_count.unwrap_or(DEFAULT_MAX_TASKS),
                    ..Default::default()
                }),
                application_auto_scaling_policies: Some(vec![ManagedApplicationAutoScalingPolicy {
                    arn: Some(rec.policy_arn.clone()),
                    status: status.into(),
                    updated_at: at,
                    policy_type: "TargetTrackingScaling".into(),
                    target_value: scaling.auto_scaling_target_value.unwrap_or(DEFAULT_TARGET_VALUE) as f64,
                    metric: scaling.auto_scaling_metric.clone().unwrap_or_else(|| DEFAULT_METRIC.into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        })
    }

    /// DescribeExpressGatewayService's view of a record, its status from the ECS service's.
    fn express_view(&self, ctx: &Ctx, rec: &ExpressRecord, with_tags: bool) -> ECSExpressGatewayService {
        let svc = self.load_service(ctx, &rec.cluster, &rec.name).ok().flatten();
        let status = express_status(svc.map(|r| r.value.service.status), rec.status);
        let (deployment, _) = self.latest_revision(ctx, &rec.cluster, &rec.name);
        let tags = with_tags.then(|| {
            self.list_tags_for_resource(
                ctx,
                ListTagsForResourceRequest { resource_arn: rec.service_arn.clone() },
            )
            .ok()
            .and_then(|o| o.tags)
            .unwrap_or_default()
        });
        ECSExpressGatewayService { current_deployment: deployment, tags, ..rec.to_wire(&ctx.scope, status) }
    }

    pub fn describe_express_gateway_service(
        &self,
        ctx: &Ctx,
        req: DescribeExpressGatewayServiceRequest,
    ) -> Result<DescribeExpressGatewayServiceResponse> {
        for i in req.include.iter().flatten() {
            if i != "TAGS" {
                return Err(EcsError::invalid(format!("include '{i}' is not valid: it must be TAGS.")));
            }
        }
        let with_tags = req.include.iter().flatten().any(|i| i == "TAGS");
        let rec = self.load_express(ctx, &req.service_arn).map_err(|e| match e.kind {
            ErrorKind::ServiceNotFoundException => {
                EcsError::new(ErrorKind::ResourceNotFoundException, e.message)
            }
            _ => e,
        })?;
        Ok(DescribeExpressGatewayServiceResponse {
            service: Some(self.express_view(ctx, &rec.value, with_tags)),
        })
    }

    pub async fn update_express_gateway_service(
        &self,
        ctx: &Ctx,
        req: UpdateExpressGatewayServiceRequest,
    ) -> Result<UpdateExpressGatewayServiceResponse> {
        let stored = self.load_express(ctx, &req.service_arn)?;
        let mut rec = stored.value.clone();
        if self.express_status_of(ctx, &rec) != ExpressServiceStatus::Active {
            return Err(EcsError::new(ErrorKind::ServiceNotActiveException, "Service was not ACTIVE."));
        }
        if req.primary_container.is_some() && req.task_definition_arn.is_some() {
            return Err(EcsError::invalid("You cannot specify both primaryContainer and taskDefinitionArn."));
        }
        let base = rec.configurations.last().cloned().unwrap_or_default();
        let asked = asked_configuration!(req);
        let mut config = resolve(Some(&base), &asked);
        check(&config)?;
        let (td_arn, _) = self.express_task_definition(ctx, &rec.name, &config).await?;
        config.task_definition_arn = Some(td_arn.clone());
        if config.health_check_path != base.health_check_path
            && let Some(path) = &config.health_check_path
        {
            let (ingress, _) = self.ingress()?;
            ingress
                .set_health_check_path(&ctx.scope, &rec.target_group_arn, path)
                .await
                .map_err(|e| port_error("The target group's health check could not be changed", e))?;
        }
        self.update_service(
            ctx,
            UpdateServiceRequest {
                cluster: Some(rec.cluster.clone()),
                service: rec.name.clone(),
                task_definition: Some(td_arn),
                network_configuration: Some(network(&config)),
                ..Default::default()
            },
        )
        .await?;
        if config.scaling_target != base.scaling_target {
            let refs = self.put_scaling(ctx, &rec, &config).await?;
            rec.scalable_target_arn = refs.scalable_target_arn;
            rec.policy_arn = refs.policy_arn;
        }
        let now = self.clock.now();
        let (_, revision) = self.latest_revision(ctx, &rec.cluster, &rec.name);
        config.service_revision_arn = revision;
        config.created_at = Some(now.as_epoch_seconds());
        config.ingress_paths = base.ingress_paths.clone();
        rec.configurations.push(config.clone());
        rec.updated_at = now;
        let before = Before::of(&ctx.scope, &stored);
        if !self.commit(Txn::new().put_record(&ctx.scope, &before, &rec)).await? {
            return Err(EcsError::client(
                "The Express service was changed by another request. Retry the request.",
            ));
        }
        let view = self.express_view(ctx, &rec, false);
        Ok(UpdateExpressGatewayServiceResponse {
            service: Some(UpdatedExpressGatewayService {
                service_arn: Some(rec.service_arn.clone()),
                cluster: view.cluster,
                service_name: Some(rec.name.clone()),
                status: view.status,
                target_configuration: Some(config),
                created_at: view.created_at,
                updated_at: view.updated_at,
            }),
        })
    }

    pub async fn delete_express_gateway_service(
        &self,
        ctx: &Ctx,
        req: DeleteExpressGatewayServiceRequest,
    ) -> Result<DeleteExpressGatewayServiceResponse> {
        let stored = self.load_express(ctx, &req.service_arn)?;
        let mut rec = stored.value.clone();
        if self.express_status_of(ctx, &rec) != ExpressServiceStatus::Active {
            return Err(EcsError::new(ErrorKind::ServiceNotActiveException, "Service was not ACTIVE."));
        }
        // Scaling first, so that nothing raises the count again while the service drains.
        if let Some(scaling) = self.service_scaling.get() {
            scaling
                .remove(&ctx.scope, &rec.cluster, &rec.name)
                .await
                .map_err(|e| port_error("The service's auto scaling could not be removed", e))?;
        }
        self.delete_service(
            ctx,
            DeleteServiceRequest {
                cluster: Some(rec.cluster.clone()),
                service: rec.name.clone(),
                force: Some(true),
            },
        )
        .await?;
        // The rule and target group go now (the tasks' deregistration finds the group gone and
        // has nothing to drain); the shared load balancer with its last route.
        let (ingress, _) = self.ingress()?;
        let route = Route { target_group_arn: rec.target_group_arn.clone(), rule_arn: rec.rule_arn.clone() };
        ingress
            .remove_route(&ctx.scope, &rec.load_balancer_arn, &route)
            .await
            .map_err(|e| port_error("The load balancer resources could not be removed", e))?;
        let now = self.clock.now();
        rec.status = ExpressServiceStatus::Draining;
        rec.updated_at = now;
        rec.resources_at = now;
        let before = Before::of(&ctx.scope, &stored);
        self.commit(Txn::new().put_record(&ctx.scope, &before, &rec)).await?;
        Ok(DeleteExpressGatewayServiceResponse { service: Some(self.express_view(ctx, &rec, false)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(image: &str) -> ExpressGatewayContainer {
        ExpressGatewayContainer { image: image.into(), ..Default::default() }
    }

    #[test]
    fn a_create_gets_ecs_defaults() {
        let c = resolve(
            None,
            &ExpressGatewayServiceConfiguration {
                primary_container: Some(container("nginx")),
                ..Default::default()
            },
        );
        assert_eq!(c.cpu.as_deref(), Some("256"));
        assert_eq!(c.memory.as_deref(), Some("512"));
        assert_eq!(c.health_check_path.as_deref(), Some("/ping"));
        assert_eq!(c.primary_container.unwrap().container_port, Some(80));
        let s = c.scaling_target.unwrap();
        assert_eq!((s.min_task_count, s.max_task_count), (Some(1), Some(20)));
        assert_eq!(s.auto_scaling_metric.as_deref(), Some("AVERAGE_CPU"));
        assert_eq!(s.auto_scaling_target_value, Some(60));
    }

    #[test]
    fn an_update_keeps_what_it_does_not_name() {
        let first = resolve(
            None,
            &ExpressGatewayServiceConfiguration {
                primary_container: Some(ExpressGatewayContainer {
                    container_port: Some(8080),
                    ..container("a")
                }),
                cpu: Some("1024".into()),
                health_check_path: Some("/health".into()),
                ..Default::default()
            },
        );
        let next = resolve(
            Some(&first),
            &ExpressGatewayServiceConfiguration { memory: Some("2048".into()), ..Default::default() },
        );
        assert_eq!(next.cpu.as_deref(), Some("1024"));
        assert_eq!(next.memory.as_deref(), Some("2048"));
        assert_eq!(next.health_check_path.as_deref(), Some("/health"));
        assert_eq!(next.primary_container.unwrap().container_port, Some(8080));
        let image = resolve(
            Some(&first),
            &ExpressGatewayServiceConfiguration {
                primary_container: Some(container("b")),
                ..Default::default()
            },
        );
        let p = image.primary_container.unwrap();
        assert_eq!((p.image.as_str(), p.container_port), ("b", Some(8080)));
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = resolve(
            None,
            &ExpressGatewayServiceConfiguration {
                primary_container: Some(container("a")),
                health_check_path: Some("health".into()),
                ..Default::default()
            },
        );
        assert!(check(&c).unwrap_err().message.contains("'health'"));
        c.health_check_path = Some("/".into());
        c.scaling_target.as_mut().unwrap().auto_scaling_metric = Some("LOUDNESS".into());
        assert!(check(&c).unwrap_err().message.contains("'LOUDNESS'"));
        c.scaling_target.as_mut().unwrap().auto_scaling_metric = None;
        c.scaling_target.as_mut().unwrap().min_task_count = Some(5);
        c.scaling_target.as_mut().unwrap().max_task_count = Some(2);
        assert!(check(&c).unwrap_err().message.contains("minTaskCount (5)"));
    }

    #[test]
    fn the_status_follows_the_service() {
        use ExpressServiceStatus as E;
        assert_eq!(express_status(Some(ServiceStatus::Active), E::Active), E::Active);
        assert_eq!(express_status(Some(ServiceStatus::Active), E::Draining), E::Draining);
        assert_eq!(express_status(Some(ServiceStatus::Draining), E::Draining), E::Draining);
        assert_eq!(express_status(Some(ServiceStatus::Draining), E::Active), E::Draining);
        assert_eq!(express_status(Some(ServiceStatus::Inactive), E::Draining), E::Inactive);
        assert_eq!(express_status(None, E::Active), E::Inactive);
    }

    #[test]
    fn endpoints_are_local_hostnames() {
        assert_eq!(host("My_Web", "ab12cd34", "us-east-1"), "my-web-ab12cd34.ecs.us-east-1.localhost");
        assert_eq!(endpoint("h.localhost", 80), "http://h.localhost");
        assert_eq!(endpoint("h.localhost", 8081), "http://h.localhost:8081");
        assert_eq!(
            resource_label(
                "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/lb/abc",
                "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/tg/def"
            )
            .as_deref(),
            Some("app/lb/abc/targetgroup/tg/def")
        );
    }

    /// The record as the release before [`ExpressRecord`] had its types declared it: the status a
    /// string, the times epoch seconds.
    #[derive(Serialize)]
    struct WrittenByMain {
        cluster: String,
        name: String,
        service_arn: String,
        infrastructure_role_arn: String,
        created_at: f64,
        updated_at: f64,
        status: String,
        configurations: Vec<ExpressGatewayServiceConfiguration>,
        host: String,
        endpoint: String,
        load_balancer_arn: String,
        listener_arn: String,
        target_group_arn: String,
        rule_arn: String,
        scalable_target_arn: String,
        policy_arn: String,
        resources_at: f64,
    }

    /// What main's CreateExpressGatewayService, an UpdateExpressGatewayService and (with
    /// DRAINING) its DeleteExpressGatewayService stored, every field Gantry sets filled; the
    /// times as main's clock made them (milliseconds in epoch seconds).
    fn written_by_main(status: &str) -> WrittenByMain {
        let s = |ms: i64| Timestamp(ms).as_epoch_seconds();
        let first = ExpressGatewayServiceConfiguration {
            service_revision_arn: Some(
                "arn:aws:ecs:us-east-1:000000000000:service-revision/default/web/1234567890123456789".into(),
            ),
            task_definition_arn: Some("arn:aws:ecs:us-east-1:000000000000:task-definition/web:1".into()),
            created_at: Some(s(1_796_334_293_524)),
            ingress_paths: Some(vec![IngressPathSummary {
                access_type: "PUBLIC".into(),
                endpoint: "http://web-ab12cd34.ecs.us-east-1.localhost:8081".into(),
            }]),
            ..resolve(
                None,
                &ExpressGatewayServiceConfiguration {
                    primary_container: Some(container("nginx")),
                    ..Default::default()
                },
            )
        };
        let second = ExpressGatewayServiceConfiguration {
            cpu: Some("1024".into()),
            created_at: Some(s(1_796_334_400_007)),
            ..first.clone()
        };
        let elb = "arn:aws:elasticloadbalancing:us-east-1:000000000000";
        WrittenByMain {
            cluster: "default".into(),
            name: "web".into(),
            service_arn: "arn:aws:ecs:us-east-1:000000000000:service/default/web".into(),
            infrastructure_role_arn: "arn:aws:iam::000000000000:role/ecsInfrastructureRole".into(),
            created_at: s(1_796_334_293_524),
            updated_at: s(1_796_334_400_007),
            status: status.into(),
            configurations: vec![first, second],
            host: "web-ab12cd34.ecs.us-east-1.localhost".into(),
            endpoint: "http://web-ab12cd34.ecs.us-east-1.localhost:8081".into(),
            load_balancer_arn: format!("{elb}:loadbalancer/app/ecs-express-gateway-alb/0123456789abcdef"),
            listener_arn: format!("{elb}:listener/app/ecs-express-gateway-alb/0123456789abcdef/fedcba9876543210"),
            target_group_arn: format!("{elb}:targetgroup/ecs-express-ab12cd34/00112233aabbccdd"),
            rule_arn: format!("{elb}:listener-rule/app/ecs-express-gateway-alb/0123456789abcdef/fedcba9876543210/1"),
            scalable_target_arn: "arn:aws:application-autoscaling:us-east-1:000000000000:scalable-target/0ec5abc".into(),
            policy_arn: "arn:aws:autoscaling:us-east-1:000000000000:scalingPolicy:1:resource/ecs/service/default/web:policyName/web-express-target-tracking".into(),
            resources_at: s(1_796_334_293_999),
        }
    }

    #[test]
    fn a_record_main_wrote_reads_and_writes_back_the_same_json() {
        use crate::records::{encode, parse};
        use serde_json::Value;
        let scope = Scope::new("000000000000", "us-east-1");
        for status in ExpressServiceStatus::ALL.iter().copied() {
            let old = written_by_main(status.as_str());
            let stored = encode(&old);
            let rec: ExpressRecord = parse(&stored).unwrap();
            assert_eq!(rec.status, status);
            assert_eq!(
                (rec.created_at, rec.updated_at, rec.resources_at),
                (Timestamp(1_796_334_293_524), Timestamp(1_796_334_400_007), Timestamp(1_796_334_293_999))
            );
            assert_eq!(rec.configurations.len(), 2);
            let was: Value = parse(&stored).unwrap();
            let now: Value = parse(&encode(&rec)).unwrap();
            assert_eq!(now, was);

            // The wire shape is what main's view made of its record (before the deployment and
            // tags, which are not the record's).
            let wire = rec.to_wire(&scope, express_status(Some(ServiceStatus::Active), rec.status));
            let shown = if status == ExpressServiceStatus::Draining { "DRAINING" } else { "ACTIVE" };
            assert_eq!(
                wire,
                ECSExpressGatewayService {
                    cluster: Some("arn:aws:ecs:us-east-1:000000000000:cluster/default".into()),
                    service_name: Some(old.name.clone()),
                    service_arn: Some(old.service_arn.clone()),
                    infrastructure_role_arn: Some(old.infrastructure_role_arn.clone()),
                    status: Some(ExpressGatewayServiceStatus {
                        status_code: Some(shown.into()),
                        status_reason: None,
                    }),
                    current_deployment: None,
                    active_configurations: Some(vec![old.configurations[1].clone()]),
                    tags: None,
                    created_at: Some(old.created_at),
                    updated_at: Some(old.updated_at),
                }
            );
            let gone = rec.to_wire(&scope, ExpressServiceStatus::Inactive);
            assert_eq!(gone.active_configurations, Some(vec![]));
            assert_eq!(gone.status.and_then(|s| s.status_code).as_deref(), Some("INACTIVE"));
        }
    }

    #[test]
    fn a_status_gantry_never_wrote_fails_the_read_naming_it() {
        let err = crate::records::parse::<ExpressRecord>(&crate::records::encode(&written_by_main("PAUSED")))
            .unwrap_err();
        assert!(err.contains("PAUSED"), "{err}");
        let mut old = serde_json::to_value(written_by_main("ACTIVE")).unwrap();
        old.as_object_mut().unwrap().remove("created_at");
        assert!(crate::records::parse::<ExpressRecord>(&crate::records::encode(&old)).is_err());
    }
}
