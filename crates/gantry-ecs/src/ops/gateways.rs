//! ECS Gateways: CreateGateway, DescribeGateway, UpdateGateway, DeleteGateway, ListGateways,
//! AssociateGatewayWithCluster, DisassociateGatewayFromCluster, ListGatewayClusterAssociations,
//! ListGatewayRoutes, DescribeGatewayRoute, DescribeGatewayResources, and services'
//! `gatewayConnectors`.
//!
//! A gateway (`gateway/NAME`) is a `hostSharedAlb` gateway: one ALB of its own, made through the
//! `gantry_ports::ingress::Ingress` port when the first route needs it (and deleted with its
//! last route). Its listener is HTTP on `hostSharedAlb.port` (AWS's gateways serve HTTPS on
//! 443 only; Gantry has no certificate to give them, so it serves HTTP, on 443 unless told).
//! Associations (`gateway-assoc/GATEWAY/CLUSTER`, at most 5 gateways per cluster) let the
//! services of a cluster use the gateway. A service's gateway connector (a container port name)
//! makes a gateway route (`gateway-route/GATEWAY/ID`) on every associated gateway whose access
//! type its filters allow: a target group and a host-header rule for
//! `SERVICE-ID.gw.REGION.localhost`, the service's URL. The route's target group is added to
//! the service's `loadBalancers`, so its tasks register there as for any target group.

use super::gateway_record::{
    AssociationRecord, GatewayRecord, RouteAlb, RouteRecord, RouteResources, StoredGateway, StoredRoute,
};
use crate::records::{load, load_prefix};
use crate::table::{Before, TxnExt};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::arn::cluster_name;
use gantry_core::page::{PageRequest, paginate};
use gantry_core::{
    EcsError, ErrorKind, GatewayAssociationStatus, GatewayRouteStatus, GatewayStatus, Result, Scope,
};
use gantry_model::*;
use gantry_ports::ingress::{HealthCheckSpec, Ingress, Route, RouteSpec};
use gantry_store::Txn;

/// How many gateways one cluster may be associated with.
pub const MAX_GATEWAYS_PER_CLUSTER: usize = 5;

fn gateway_not_found(name: &str) -> EcsError {
    EcsError::new(ErrorKind::GatewayNotFoundException, format!("The gateway '{name}' was not found."))
}

/// A gateway's name from its name or ARN (`arn:aws:ecs:REGION:ACCOUNT:gateway/NAME`).
pub fn gateway_name(reference: &str) -> String {
    match reference.split_once(":gateway/") {
        Some((_, name)) if reference.starts_with("arn:") => name.to_string(),
        _ => reference.to_string(),
    }
}

/// The load balancer's name for a gateway (ELB: at most 32 characters, letters, digits and
/// hyphens), unique per gateway name.
pub fn alb_name(gateway: &str) -> String {
    let mut h: u32 = 0x811c9dc5;
    for b in gateway.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x01000193);
    }
    let stem: String = gateway
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(14)
        .collect();
    format!("ecs-gw-{}-{h:08x}", stem.trim_matches('-'))
}

/// The access types a connector's filters allow (both when none are given).
pub fn connector_allows(c: &GatewayConnector, access_type: &str) -> bool {
    match c.filters.as_ref().and_then(|f| f.access_types.as_ref()) {
        Some(types) if !types.is_empty() => types.iter().any(|t| t == access_type),
        _ => true,
    }
}

fn check_connectors(connectors: &[GatewayConnector]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for c in connectors {
        if c.port_name.trim().is_empty() {
            return Err(EcsError::invalid("gatewayConnectors.portName must not be empty."));
        }
        if !seen.insert(c.port_name.clone()) {
            return Err(EcsError::invalid(format!(
                "gatewayConnectors: the port name '{}' is given more than once.",
                c.port_name
            )));
        }
        if let Some(t) = c.deregistration_delay.as_ref().and_then(|d| d.timeout_seconds)
            && !(0..=3600).contains(&t)
        {
            return Err(EcsError::invalid(format!(
                "gatewayConnectors.deregistrationDelay.timeoutSeconds {t} must be from 0 to 3600."
            )));
        }
        for t in c.filters.iter().flat_map(|f| f.access_types.iter().flatten()) {
            if !matches!(t.as_str(), "PUBLIC" | "PRIVATE") {
                return Err(EcsError::invalid(format!(
                    "gatewayConnectors.filters.accessTypes '{t}' is not valid: it must be PUBLIC or PRIVATE."
                )));
            }
        }
    }
    Ok(())
}

/// What a service asks one route for: its connector, and the container and port the connector's
/// port name names in its task definition.
struct RouteAsk<'a> {
    cluster: &'a str,
    service: &'a str,
    connector: &'a GatewayConnector,
    container: &'a str,
    port: i32,
}

/// The container and container port of the port mapping a connector names.
fn connector_port(td: &TaskDefinition, c: &GatewayConnector, task_definition: &str) -> Result<(String, i32)> {
    td.container_definitions
        .iter()
        .flatten()
        .find_map(|d| {
            let pm = d.port_mappings.iter().flatten().find(|p| p.name.as_deref() == Some(c.port_name.as_str()))?;
            Some((d.name.clone().unwrap_or_default(), pm.container_port.unwrap_or_default()))
        })
        .ok_or_else(|| {
            EcsError::invalid(format!(
                "gatewayConnectors: the port name '{}' is not a port mapping of the task definition '{task_definition}'.",
                c.port_name
            ))
        })
}

/// A route's host: `SERVICE-ID.gw.REGION.localhost` (the service's name as a DNS label, the
/// route ID's first 8 digits).
fn route_host(service: &str, id: &str, region: &str) -> String {
    let label: String = service
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!("{label}-{}.gw.{region}.localhost", &id[..8])
}

/// The target group and rule a route asks the load balancer for: the connector's health check
/// and deregistration delay, and the gateway's tags if it propagates them.
fn route_spec(id: &str, host: &str, g: &StoredGateway, ask: &RouteAsk<'_>) -> RouteSpec {
    let c = ask.connector;
    let hc = c.health_check.clone().unwrap_or_default();
    RouteSpec {
        target_group_name: format!("ecs-gw-{id}"),
        port: ask.port as u16,
        health_check_path: hc.health_check_path.clone().unwrap_or_else(|| "/".into()),
        host: host.to_string(),
        tags: if g.propagates_tags() {
            g.tags
                .iter()
                .map(|t| (t.key.clone().unwrap_or_default(), t.value.clone().unwrap_or_default()))
                .collect()
        } else {
            Vec::new()
        },
        health_check: HealthCheckSpec {
            protocol: hc.health_check_protocol.clone(),
            port: hc.health_check_port,
            interval_seconds: hc.health_check_interval_seconds,
            timeout_seconds: hc.health_check_timeout_seconds,
            healthy_threshold: hc.healthy_threshold_count,
            unhealthy_threshold: hc.unhealthy_threshold_count,
            http_code: hc.matcher.as_ref().and_then(|m| m.http_code.clone()),
        },
        deregistration_delay_seconds: c.deregistration_delay.as_ref().and_then(|d| d.timeout_seconds),
    }
}

impl ControlPlane {
    fn gateway_arn(&self, scope: &Scope, name: &str) -> String {
        scope.arn(&format!("gateway/{name}"))
    }

    fn load_gateway(&self, ctx: &Ctx, reference: &str) -> Result<crate::Stored<GatewayRecord>> {
        let name = gateway_name(reference);
        load::<GatewayRecord>(&*self.store, &keys::gateway(&ctx.scope, &name))?
            .ok_or_else(|| gateway_not_found(reference))
    }

    fn associations(&self, ctx: &Ctx) -> Result<Vec<AssociationRecord>> {
        Ok(load_prefix::<AssociationRecord>(&*self.store, &keys::gateway_assocs_prefix(&ctx.scope))?
            .into_iter()
            .map(|r| r.value)
            .collect())
    }

    fn routes(&self, ctx: &Ctx) -> Result<Vec<RouteRecord>> {
        Ok(load_prefix::<RouteRecord>(&*self.store, &keys::gateway_routes_prefix(&ctx.scope))?
            .into_iter()
            .map(|r| r.value)
            .collect())
    }

    pub async fn create_gateway(
        &self,
        ctx: &Ctx,
        req: CreateGatewayRequest,
    ) -> Result<CreateGatewayResponse> {
        if !gantry_core::validate::is_valid_name(&req.name) {
            return Err(EcsError::invalid(format!(
                "Invalid gateway name '{}': up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed.",
                req.name
            )));
        }
        if req.infrastructure_role_arn.trim().is_empty() {
            return Err(EcsError::invalid("infrastructureRoleArn must be specified."));
        }
        let Some(alb) = req.configuration.host_shared_alb.clone() else {
            return Err(EcsError::invalid(
                "configuration: exactly one configuration variant (hostSharedAlb) must be set.",
            ));
        };
        let tags = req.tags.clone().unwrap_or_default();
        gantry_core::validate::validate_tags(&tags)?;
        let scheme = alb.scheme.clone().unwrap_or_else(|| "internet-facing".into());
        let access_type = match scheme.as_str() {
            "internet-facing" => "PUBLIC",
            "internal" => "PRIVATE",
            other => {
                return Err(EcsError::invalid(format!(
                    "hostSharedAlb.scheme '{other}' is not valid: it must be internet-facing or internal."
                )));
            }
        };
        let protocol = alb.protocol.clone().unwrap_or_else(|| "HTTP".into());
        if protocol != "HTTP" {
            return Err(EcsError::new(
                ErrorKind::UnsupportedFeatureException,
                format!(
                    "hostSharedAlb.protocol '{protocol}': Gantry's gateways serve HTTP only (it has no certificate to give them)."
                ),
            ));
        }
        let port = alb.port.unwrap_or(443);
        if !(1..=65535).contains(&port) {
            return Err(EcsError::invalid(format!("hostSharedAlb.port {port} must be from 1 to 65535.")));
        }
        let max_alb = alb.max_alb_count.unwrap_or(10);
        if !(1..=100).contains(&max_alb) {
            return Err(EcsError::invalid(format!(
                "hostSharedAlb.maxAlbCount {max_alb} must be from 1 to 100."
            )));
        }
        let propagate = req.propagate_tags.clone().unwrap_or_else(|| "GATEWAY".into());
        if !matches!(propagate.as_str(), "NONE" | "GATEWAY") {
            return Err(EcsError::invalid(format!(
                "propagateTags '{propagate}' is not valid: it must be NONE or GATEWAY."
            )));
        }
        let now = self.clock.now();
        let rec = GatewayRecord {
            gateway: StoredGateway {
                gateway_arn: self.gateway_arn(&ctx.scope, &req.name),
                name: req.name.clone(),
                status: GatewayStatus::Active,
                infrastructure_role_arn: req.infrastructure_role_arn.clone(),
                deletion_protection: req.deletion_protection.unwrap_or(true),
                configuration: DescribeGatewayConfiguration {
                    host_shared_alb: Some(DescribeGatewayAlbConfiguration {
                        network_configuration: alb.network_configuration.clone(),
                        scheme: Some(scheme),
                        access_logs: alb.access_logs.clone(),
                        web_acl_arn: alb.web_acl_arn.clone(),
                        port: Some(port),
                        protocol: Some(protocol),
                        max_alb_count: Some(max_alb),
                        current_alb_count: Some(0),
                        http_desync: Some(alb.http_desync.clone().unwrap_or_else(|| "defensive".into())),
                        test_traffic_rules: alb.test_traffic_rules.clone(),
                    }),
                },
                access_type: access_type.into(),
                propagate_tags: propagate,
                tags,
                created_at: now,
                updated_at: now,
            },
            client_token: req.client_token.clone(),
            port: port as u16,
        };
        let key = keys::gateway(&ctx.scope, &req.name);
        let out = self
            .retry(|| match load::<GatewayRecord>(&*self.store, &key)? {
                Some(cur) if req.client_token.is_some() && cur.value.client_token == req.client_token => {
                    Ok((Txn::new(), cur.value))
                }
                Some(_) => Err(EcsError::invalid(format!("A gateway named '{}' already exists.", req.name))),
                None => Ok((Txn::new().put_record(&ctx.scope, &Before::absent(), &rec), rec.clone())),
            })
            .await?;
        Ok(CreateGatewayResponse {
            gateway_arn: Some(out.gateway.gateway_arn),
            name: Some(out.gateway.name),
            status: Some(out.gateway.status.as_str().into()),
        })
    }

    /// A gateway as DescribeGateway shows it, with its current load balancer count.
    fn gateway_view(&self, ctx: &Ctx, rec: &GatewayRecord) -> Result<Gateway> {
        let mut g = rec.gateway.to_wire();
        let has_alb = self.routes(ctx)?.iter().any(|r| r.gateway == rec.gateway.name);
        if let Some(a) = g.configuration.as_mut().and_then(|c| c.host_shared_alb.as_mut()) {
            a.current_alb_count = Some(i32::from(has_alb));
        }
        Ok(g)
    }

    pub fn describe_gateway(
        &self,
        ctx: &Ctx,
        req: DescribeGatewayRequest,
    ) -> Result<DescribeGatewayResponse> {
        let rec = self.load_gateway(ctx, &req.gateway)?;
        Ok(DescribeGatewayResponse { gateway: Some(self.gateway_view(ctx, &rec.value)?) })
    }

    pub async fn update_gateway(
        &self,
        ctx: &Ctx,
        req: UpdateGatewayRequest,
    ) -> Result<UpdateGatewayResponse> {
        let name = gateway_name(&req.gateway);
        if let Some(c) = req.configuration.as_ref().and_then(|c| c.host_shared_alb.as_ref())
            && let Some(n) = c.max_alb_count
            && !(1..=100).contains(&n)
        {
            return Err(EcsError::invalid(format!("hostSharedAlb.maxAlbCount {n} must be from 1 to 100.")));
        }
        if let Some(p) = &req.propagate_tags
            && !matches!(p.as_str(), "NONE" | "GATEWAY")
        {
            return Err(EcsError::invalid(format!(
                "propagateTags '{p}' is not valid: it must be NONE or GATEWAY."
            )));
        }
        let now = self.clock.now();
        let out = self
            .retry(|| {
                let cur = self.load_gateway(ctx, &req.gateway)?;
                let mut rec = cur.value.clone();
                let g = &mut rec.gateway;
                if let Some(r) = &req.infrastructure_role_arn {
                    g.infrastructure_role_arn = r.clone();
                }
                if let Some(d) = req.deletion_protection {
                    g.deletion_protection = d;
                }
                if let Some(p) = &req.propagate_tags {
                    g.propagate_tags = p.clone();
                }
                if let Some(u) = req.configuration.as_ref().and_then(|c| c.host_shared_alb.as_ref())
                    && let Some(a) = g.configuration.host_shared_alb.as_mut()
                {
                    if let Some(n) = u.max_alb_count {
                        a.max_alb_count = Some(n);
                    }
                    if let Some(w) = &u.web_acl_arn {
                        a.web_acl_arn = Some(w.clone());
                    }
                    if let Some(l) = &u.access_logs {
                        a.access_logs = Some(l.clone());
                    }
                    if let Some(h) = &u.http_desync {
                        a.http_desync = Some(h.clone());
                    }
                    if let Some(t) = &u.test_traffic_rules {
                        a.test_traffic_rules = Some(t.clone());
                    }
                    if let Some(sg) =
                        u.network_configuration.as_ref().and_then(|n| n.inbound_security_group.clone())
                    {
                        a.network_configuration.get_or_insert_with(Default::default).inbound_security_group =
                            Some(sg);
                    }
                }
                // Applied at once: the update is complete by the time anyone looks.
                g.status = GatewayStatus::UpdateComplete;
                g.updated_at = now;
                Ok((Txn::new().put_record(&ctx.scope, &Before::of(&ctx.scope, &cur), &rec), rec))
            })
            .await?;
        Ok(UpdateGatewayResponse {
            gateway_arn: Some(out.gateway.gateway_arn),
            name: Some(name),
            status: Some(GatewayStatus::UpdateInProgress.as_str().into()),
        })
    }

    pub async fn delete_gateway(
        &self,
        ctx: &Ctx,
        req: DeleteGatewayRequest,
    ) -> Result<DeleteGatewayResponse> {
        let out = self
            .retry(|| {
                let cur = self.load_gateway(ctx, &req.gateway)?;
                let name = cur.value.gateway.name.clone();
                if cur.value.gateway.deletion_protection {
                    return Err(EcsError::invalid(format!(
                        "The gateway '{name}' has deletion protection enabled: disable it with UpdateGateway first."
                    )));
                }
                if self
                    .associations(ctx)?
                    .iter()
                    .any(|a| a.gateway == name && a.status != GatewayAssociationStatus::Inactive)
                {
                    return Err(EcsError::new(
                        ErrorKind::ClientException,
                        format!("The gateway '{name}' is associated with clusters: disassociate them first."),
                    ));
                }
                Ok((Txn::new().delete_record(&Before::of(&ctx.scope, &cur)), cur.value.gateway.clone()))
            })
            .await?;
        Ok(DeleteGatewayResponse {
            gateway_arn: Some(out.gateway_arn),
            name: Some(out.name),
            status: Some(GatewayStatus::Deleted.as_str().into()),
        })
    }

    pub fn list_gateways(&self, ctx: &Ctx, req: ListGatewaysRequest) -> Result<ListGatewaysResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 100, 100)?;
        if req.names.as_ref().is_some_and(|n| n.len() > 10) {
            return Err(EcsError::invalid("names can hold at most 10 gateway names."));
        }
        let rows: Vec<(String, GatewaySummary)> =
            load_prefix::<GatewayRecord>(&*self.store, &keys::gateways_prefix(&ctx.scope))?
                .into_iter()
                .map(|r| r.value.gateway)
                .filter(|g| req.names.as_ref().is_none_or(|n| n.contains(&g.name)))
                .filter(|g| req.status.as_ref().is_none_or(|s| s.iter().any(|x| x == g.status.as_str())))
                .map(|g| (g.name.clone(), g.summary()))
                .filter(|(k, _)| page.after.as_ref().is_none_or(|a| k > a))
                .collect();
        let (items, next_token) = paginate(rows, page.limit, |(k, _)| k.clone());
        Ok(ListGatewaysResponse { gateways: Some(items.into_iter().map(|(_, g)| g).collect()), next_token })
    }

    pub async fn associate_gateway_with_cluster(
        &self,
        ctx: &Ctx,
        req: AssociateGatewayWithClusterRequest,
    ) -> Result<AssociateGatewayWithClusterResponse> {
        let g = self.load_gateway(ctx, &req.gateway)?.value.gateway;
        let gname = g.name;
        let cluster = cluster_name(&ctx.scope, Some(&req.cluster))?;
        self.active_cluster(ctx, Some(&cluster))?;
        let rec = AssociationRecord {
            gateway: gname.clone(),
            cluster: cluster.clone(),
            gateway_arn: g.gateway_arn,
            cluster_arn: ctx.scope.cluster_arn(&cluster),
            status: GatewayAssociationStatus::Active,
        };
        let key = keys::gateway_assoc(&ctx.scope, &gname, &cluster);
        let out = self
            .retry(|| {
                let cur = load::<AssociationRecord>(&*self.store, &key)?;
                if let Some(c) = &cur
                    && c.value.is_active()
                {
                    return Ok((Txn::new(), c.value.clone()));
                }
                let others = self
                    .associations(ctx)?
                    .into_iter()
                    .filter(|a| {
                        a.cluster == cluster
                            && a.gateway != gname
                            && a.status != GatewayAssociationStatus::Inactive
                    })
                    .count();
                if others >= MAX_GATEWAYS_PER_CLUSTER {
                    return Err(EcsError::invalid(format!(
                        "The cluster '{cluster}' is already associated with {MAX_GATEWAYS_PER_CLUSTER} gateways, the most a cluster can be."
                    )));
                }
                let before = cur.as_ref().map(|c| Before::of(&ctx.scope, c)).unwrap_or_else(Before::absent);
                Ok((Txn::new().put_record(&ctx.scope, &before, &rec), rec.clone()))
            })
            .await?;
        let out = out.to_wire();
        Ok(AssociateGatewayWithClusterResponse {
            gateway_arn: out.gateway_arn,
            cluster_arn: out.cluster_arn,
            status: out.status,
        })
    }

    pub async fn disassociate_gateway_from_cluster(
        &self,
        ctx: &Ctx,
        req: DisassociateGatewayFromClusterRequest,
    ) -> Result<DisassociateGatewayFromClusterResponse> {
        let gname = self.load_gateway(ctx, &req.gateway)?.value.gateway.name;
        let cluster = cluster_name(&ctx.scope, Some(&req.cluster))?;
        let key = keys::gateway_assoc(&ctx.scope, &gname, &cluster);
        let out = self
            .retry(|| {
                let Some(cur) = load::<AssociationRecord>(&*self.store, &key)? else {
                    return Err(EcsError::new(
                        ErrorKind::ResourceNotFoundException,
                        format!("The gateway '{gname}' is not associated with the cluster '{cluster}'."),
                    ));
                };
                let routes =
                    self.routes(ctx)?.into_iter().any(|r| r.gateway == gname && r.cluster == cluster);
                let before = Before::of(&ctx.scope, &cur);
                if routes {
                    // Until the services' routes are removed (by updating the services).
                    let mut rec = cur.value.clone();
                    rec.status = GatewayAssociationStatus::Disassociating;
                    Ok((Txn::new().put_record(&ctx.scope, &before, &rec), rec))
                } else {
                    let mut rec = cur.value.clone();
                    rec.status = GatewayAssociationStatus::Disassociating;
                    Ok((Txn::new().delete_record(&before), rec))
                }
            })
            .await?;
        let out = out.to_wire();
        Ok(DisassociateGatewayFromClusterResponse {
            gateway_arn: out.gateway_arn,
            cluster_arn: out.cluster_arn,
            status: out.status,
        })
    }

    pub fn list_gateway_cluster_associations(
        &self,
        ctx: &Ctx,
        req: ListGatewayClusterAssociationsRequest,
    ) -> Result<ListGatewayClusterAssociationsResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 100, 100)?;
        let gateway = req.gateway.as_deref().map(gateway_name);
        let cluster = match &req.cluster {
            Some(c) => Some(cluster_name(&ctx.scope, Some(c))?),
            None => None,
        };
        let rows: Vec<(String, GatewayClusterAssociationSummary)> = self
            .associations(ctx)?
            .into_iter()
            .filter(|a| gateway.as_ref().is_none_or(|g| &a.gateway == g))
            .filter(|a| cluster.as_ref().is_none_or(|c| &a.cluster == c))
            .filter(|a| req.status.as_ref().is_none_or(|s| s.iter().any(|x| x == a.status.as_str())))
            .map(|a| (format!("{}/{}", a.gateway, a.cluster), a.to_wire()))
            .filter(|(k, _)| page.after.as_ref().is_none_or(|a| k > a))
            .collect();
        let (items, next_token) = paginate(rows, page.limit, |(k, _)| k.clone());
        Ok(ListGatewayClusterAssociationsResponse {
            gateway_cluster_associations: Some(items.into_iter().map(|(_, a)| a).collect()),
            next_token,
        })
    }

    pub fn list_gateway_routes(
        &self,
        ctx: &Ctx,
        req: ListGatewayRoutesRequest,
    ) -> Result<ListGatewayRoutesResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 100, 100)?;
        let gateway = match &req.gateway {
            Some(g) => Some(self.load_gateway(ctx, g)?.value.gateway.name),
            None => None,
        };
        let cluster = match &req.cluster {
            Some(c) => Some(cluster_name(&ctx.scope, Some(c))?),
            None => None,
        };
        let service = req.service.as_deref().map(|s| s.rsplit('/').next().unwrap_or(s).to_string());
        let rows: Vec<(String, GatewayRouteSummary)> = self
            .routes(ctx)?
            .into_iter()
            .filter(|r| gateway.as_ref().is_none_or(|g| &r.gateway == g))
            .filter(|r| cluster.as_ref().is_none_or(|c| &r.cluster == c))
            .filter(|r| service.as_ref().is_none_or(|s| &r.service == s))
            .filter(|r| req.service_container_port_name.as_ref().is_none_or(|p| &r.connector.port_name == p))
            .filter(|r| req.status.as_ref().is_none_or(|s| s.iter().any(|x| x == r.route.status.as_str())))
            .map(|r| (format!("{}/{}", r.gateway, r.id), r.summary()))
            .filter(|(k, _)| page.after.as_ref().is_none_or(|a| k > a))
            .collect();
        let (items, next_token) = paginate(rows, page.limit, |(k, _)| k.clone());
        Ok(ListGatewayRoutesResponse {
            gateway_routes: Some(items.into_iter().map(|(_, r)| r).collect()),
            next_token,
        })
    }

    pub fn describe_gateway_route(
        &self,
        ctx: &Ctx,
        req: DescribeGatewayRouteRequest,
    ) -> Result<DescribeGatewayRouteResponse> {
        let found =
            self.routes(ctx)?.into_iter().find(|r| r.route.gateway_route_arn == req.gateway_route_arn);
        match found {
            Some(r) => Ok(DescribeGatewayRouteResponse { gateway_route: Some(r.route.to_wire()) }),
            None => Err(EcsError::new(
                ErrorKind::ResourceNotFoundException,
                format!("The gateway route '{}' was not found.", req.gateway_route_arn),
            )),
        }
    }

    pub fn describe_gateway_resources(
        &self,
        ctx: &Ctx,
        req: DescribeGatewayResourcesRequest,
    ) -> Result<DescribeGatewayResourcesResponse> {
        let page = PageRequest::new(req.max_results, req.next_token.as_deref(), 10, 20)?;
        let g = self.load_gateway(ctx, &req.gateway)?.value.gateway;
        let routes: Vec<RouteRecord> =
            self.routes(ctx)?.into_iter().filter(|r| r.gateway == g.name).collect();
        let mut by_lb: std::collections::BTreeMap<String, ElbGatewayResources> = Default::default();
        for r in &routes {
            for res in &r.route.resources.host_shared_alb {
                let lb = res.load_balancer_arn.clone();
                let e = by_lb.entry(lb.clone()).or_insert_with(|| ElbGatewayResources {
                    load_balancer_arn: Some(lb),
                    listener_arn: Some(res.listener_arn.clone()),
                    security_group: None,
                    gateway_route_arns: Some(Vec::new()),
                });
                e.gateway_route_arns.get_or_insert_with(Vec::new).push(r.route.gateway_route_arn.clone());
            }
        }
        let rows: Vec<(String, ElbGatewayResources)> =
            by_lb.into_iter().filter(|(k, _)| page.after.as_ref().is_none_or(|a| k > a)).collect();
        let (items, next_token) = paginate(rows, page.limit, |(k, _)| k.clone());
        Ok(DescribeGatewayResourcesResponse {
            gateway_resources: Some(GatewayResources {
                gateway_arn: Some(g.gateway_arn),
                resources: Some(GatewayInfrastructureResources {
                    host_shared_alb: Some(items.into_iter().map(|(_, e)| e).collect()),
                }),
            }),
            next_token,
        })
    }

    /// The gateway connectors a service's routes were made from (ServiceRevision's).
    pub(crate) fn service_gateway_connectors(
        &self,
        ctx: &Ctx,
        cluster: &str,
        service: &str,
    ) -> Option<Vec<GatewayConnector>> {
        let mut out: Vec<GatewayConnector> = Vec::new();
        for r in self.routes(ctx).ok()? {
            if r.cluster == cluster && r.service == service && !out.contains(&r.connector) {
                out.push(r.connector);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// Makes the routes a service's gateway connectors ask for, on every gateway associated
    /// (ACTIVE) with its cluster whose access type the connector allows; returns the
    /// `loadBalancers` entries its tasks register through.
    pub(crate) async fn connect_gateways(
        &self,
        ctx: &Ctx,
        cluster: &str,
        service: &str,
        task_definition: &str,
        connectors: &[GatewayConnector],
    ) -> Result<Vec<LoadBalancer>> {
        check_connectors(connectors)?;
        let ingress = self.ingress.get().map(|(i, _)| i.clone()).ok_or_else(|| {
            EcsError::new(
                ErrorKind::UnsupportedFeatureException,
                "Gateways need the load balancer service, which this server does not run.",
            )
        })?;
        let td = self
            .describe_task_definition(
                ctx,
                DescribeTaskDefinitionRequest {
                    task_definition: task_definition.to_string(),
                    ..Default::default()
                },
            )?
            .task_definition
            .unwrap_or_default();
        let gateways = self.associated_gateways(ctx, cluster)?;
        let existing = self.routes(ctx)?;
        let mut out = Vec::new();
        for connector in connectors {
            let (container, port) = connector_port(&td, connector, task_definition)?;
            let ask = RouteAsk { cluster, service, connector, container: &container, port };
            for a in &gateways {
                let g = self.load_gateway(ctx, &a.gateway)?.value;
                if !connector_allows(connector, &g.gateway.access_type) {
                    continue;
                }
                let made = existing.iter().find(|r| {
                    r.gateway == a.gateway
                        && r.cluster == cluster
                        && r.service == service
                        && r.connector.port_name == connector.port_name
                });
                out.push(match made {
                    Some(r) => r.load_balancer(),
                    None => self.make_gateway_route(ctx, &*ingress, a, &g, &ask).await?,
                });
            }
        }
        Ok(out)
    }

    /// The gateways associated (ACTIVE) with a cluster: at least one, or the error that says so.
    fn associated_gateways(&self, ctx: &Ctx, cluster: &str) -> Result<Vec<AssociationRecord>> {
        let gateways: Vec<AssociationRecord> =
            self.associations(ctx)?.into_iter().filter(|a| a.cluster == cluster && a.is_active()).collect();
        if gateways.is_empty() {
            return Err(EcsError::invalid(format!(
                "gatewayConnectors: the cluster '{cluster}' is not associated with any gateway."
            )));
        }
        Ok(gateways)
    }

    /// Makes one route on gateway `g` (associated with the cluster through `a`): the gateway's
    /// load balancer if it has none yet, a target group and a host-header rule, and the route's
    /// record. Returns the `loadBalancers` entry it adds to the service.
    async fn make_gateway_route(
        &self,
        ctx: &Ctx,
        ingress: &dyn Ingress,
        a: &AssociationRecord,
        g: &GatewayRecord,
        ask: &RouteAsk<'_>,
    ) -> Result<LoadBalancer> {
        let alb = ingress.shared_alb(&ctx.scope, &alb_name(&a.gateway), g.port).await.map_err(|e| {
            EcsError::server(format!("The gateway's load balancer could not be provisioned: {e}"))
        })?;
        let id = self.ids.hex_id()[..12].to_string();
        let host = route_host(ask.service, &id, &ctx.scope.region);
        let spec = route_spec(&id, &host, &g.gateway, ask);
        let route = ingress
            .add_route(&ctx.scope, &alb.listener_arn, &spec)
            .await
            .map_err(|e| EcsError::server(format!("The gateway route could not be provisioned: {e}")))?;
        let service_url =
            if alb.port == 80 { format!("http://{host}") } else { format!("http://{host}:{}", alb.port) };
        let (cluster, service) = (ask.cluster, ask.service);
        let rec = RouteRecord {
            id: id.clone(),
            gateway: a.gateway.clone(),
            gateway_arn: a.gateway_arn.clone(),
            cluster: cluster.to_string(),
            cluster_arn: a.cluster_arn.clone(),
            service: service.to_string(),
            route: StoredRoute {
                gateway_route_arn: ctx.scope.arn(&format!("gateway-route/{}/{id}", a.gateway)),
                service_arn: ctx.scope.arn(&format!("service/{cluster}/{service}")),
                service_container_port_name: ask.connector.port_name.clone(),
                status: GatewayRouteStatus::Active,
                service_url,
                resources: RouteResources {
                    host_shared_alb: vec![RouteAlb {
                        load_balancer_arn: alb.load_balancer_arn,
                        listener_arn: alb.listener_arn,
                        listener_rule_arn: route.rule_arn,
                    }],
                },
            },
            connector: ask.connector.clone(),
            target_group_arn: route.target_group_arn,
            container_name: ask.container.to_string(),
            container_port: ask.port,
        };
        self.commit(Txn::new().put_record(&ctx.scope, &Before::absent(), &rec)).await?;
        Ok(rec.load_balancer())
    }

    /// Removes a service's routes, all of them or those whose connector is not in `keep`;
    /// completes the disassociations that waited for them. Returns the target groups removed.
    pub(crate) async fn disconnect_gateways(
        &self,
        ctx: &Ctx,
        cluster: &str,
        service: &str,
        keep: &[GatewayConnector],
    ) -> Result<Vec<String>> {
        let gone: Vec<crate::Stored<RouteRecord>> =
            load_prefix::<RouteRecord>(&*self.store, &keys::gateway_routes_prefix(&ctx.scope))?
                .into_iter()
                .filter(|r| r.value.cluster == cluster && r.value.service == service)
                .filter(|r| !keep.iter().any(|k| k.port_name == r.value.connector.port_name))
                .collect();
        let mut removed = Vec::new();
        for r in gone {
            if let Some((ingress, _)) = self.ingress.get() {
                for a in &r.value.route.resources.host_shared_alb {
                    let route = Route {
                        target_group_arn: r.value.target_group_arn.clone(),
                        rule_arn: a.listener_rule_arn.clone(),
                    };
                    ingress.remove_route(&ctx.scope, &a.load_balancer_arn, &route).await.map_err(|e| {
                        EcsError::server(format!("The gateway route could not be removed: {e}"))
                    })?;
                }
            }
            self.commit(Txn::new().delete_record(&Before::of(&ctx.scope, &r))).await?;
            removed.push(r.value.target_group_arn.clone());
            // A disassociation that waited for this cluster's last route of the gateway ends.
            let left = self.routes(ctx)?.iter().any(|x| x.gateway == r.value.gateway && x.cluster == cluster);
            if !left
                && let Some(a) = load::<AssociationRecord>(
                    &*self.store,
                    &keys::gateway_assoc(&ctx.scope, &r.value.gateway, cluster),
                )?
                && a.value.status == GatewayAssociationStatus::Disassociating
            {
                self.commit(Txn::new().delete_record(&Before::of(&ctx.scope, &a))).await?;
            }
        }
        Ok(removed)
    }
}

impl ControlPlane {
    /// CreateService with `gatewayConnectors`: the routes are made first and their target groups
    /// added to `loadBalancers`; a create that fails removes the routes it made.
    pub(crate) async fn create_service_with_gateways(
        &self,
        ctx: &Ctx,
        mut req: CreateServiceRequest,
    ) -> Result<CreateServiceResponse> {
        let connectors = req.gateway_connectors.take().unwrap_or_default();
        check_connectors(&connectors)?;
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?.value.cluster_name;
        let name = req.service_name.clone();
        let Some(td) = req.task_definition.clone() else {
            return Err(EcsError::invalid("gatewayConnectors need a taskDefinition."));
        };
        let existed = self
            .load_service(ctx, &cluster, &name)?
            .is_some_and(|r| r.value.service.status != gantry_core::ServiceStatus::Inactive);
        let lbs = match self.connect_gateways(ctx, &cluster, &name, &td, &connectors).await {
            Ok(l) => l,
            Err(e) => {
                if !existed {
                    let _ = self.disconnect_gateways(ctx, &cluster, &name, &[]).await;
                }
                return Err(e);
            }
        };
        let mine = req.load_balancers.get_or_insert_with(Vec::new);
        for lb in lbs {
            if !mine.contains(&lb) {
                mine.push(lb);
            }
        }
        match self.create_service(ctx, req).await {
            Ok(o) => Ok(o),
            Err(e) => {
                if !existed {
                    let _ = self.disconnect_gateways(ctx, &cluster, &name, &[]).await;
                }
                Err(e)
            }
        }
    }

    /// UpdateService with `gatewayConnectors`: routes of connectors no longer given go (with
    /// their target groups from `loadBalancers`), new ones are made.
    pub(crate) async fn update_service_with_gateways(
        &self,
        ctx: &Ctx,
        mut req: UpdateServiceRequest,
    ) -> Result<UpdateServiceResponse> {
        let connectors = req.gateway_connectors.take().unwrap_or_default();
        check_connectors(&connectors)?;
        let cluster = self.active_cluster(ctx, req.cluster.as_deref())?.value.cluster_name;
        let rec = self
            .load_service(ctx, &cluster, &req.service)?
            .ok_or_else(super::service_record::service_not_found)?;
        let svc = rec.value.service;
        if svc.status != gantry_core::ServiceStatus::Active {
            return Err(EcsError::new(ErrorKind::ServiceNotActiveException, "Service was not ACTIVE."));
        }
        let name = svc.service_name.clone();
        let td = req.task_definition.clone().or(svc.task_definition.clone()).unwrap_or_default();
        let gateway_groups: Vec<String> = self
            .routes(ctx)?
            .into_iter()
            .filter(|r| r.cluster == cluster && r.service == name)
            .map(|r| r.target_group_arn)
            .collect();
        let added = if connectors.is_empty() {
            Vec::new()
        } else {
            self.connect_gateways(ctx, &cluster, &name, &td, &connectors).await?
        };
        let mut lbs: Vec<LoadBalancer> = req
            .load_balancers
            .clone()
            .or(svc.load_balancers.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|l| !l.target_group_arn.as_ref().is_some_and(|t| gateway_groups.contains(t)))
            .collect();
        for lb in added {
            if !lbs.contains(&lb) {
                lbs.push(lb);
            }
        }
        req.load_balancers = Some(lbs);
        let out = self.update_service(ctx, req).await?;
        // The routes dropped go once the service no longer registers tasks in them.
        self.disconnect_gateways(ctx, &cluster, &name, &connectors).await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_references_are_names_or_arns() {
        assert_eq!(gateway_name("edge"), "edge");
        assert_eq!(gateway_name("arn:aws:ecs:us-east-1:000000000000:gateway/edge"), "edge");
    }

    #[test]
    fn load_balancer_names_fit_elb_and_differ_per_gateway() {
        let a = alb_name("a-very-long-gateway-name-that-goes-on-and-on");
        assert!(a.len() <= 32, "{a}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_ne!(alb_name("edge-1"), alb_name("edge-2"));
    }

    #[test]
    fn filters_choose_gateways_by_access_type() {
        let all = GatewayConnector { port_name: "web".into(), ..Default::default() };
        assert!(connector_allows(&all, "PUBLIC") && connector_allows(&all, "PRIVATE"));
        let private = GatewayConnector {
            filters: Some(GatewayConnectorFilters { access_types: Some(vec!["PRIVATE".into()]) }),
            ..all
        };
        assert!(!connector_allows(&private, "PUBLIC") && connector_allows(&private, "PRIVATE"));
    }

    #[test]
    fn connectors_are_checked() {
        let c = |name: &str| GatewayConnector { port_name: name.into(), ..Default::default() };
        assert!(check_connectors(&[c("web"), c("web")]).unwrap_err().message.contains("'web'"));
        assert!(check_connectors(&[c("")]).is_err());
        let slow = GatewayConnector {
            deregistration_delay: Some(GatewayConnectorDeregistrationDelay { timeout_seconds: Some(4000) }),
            ..c("web")
        };
        assert!(check_connectors(&[slow]).unwrap_err().message.contains("4000"));
        assert!(check_connectors(&[c("web"), c("admin")]).is_ok());
    }

    #[test]
    fn a_connector_names_a_port_mapping_of_the_task_definition() {
        let td = TaskDefinition {
            container_definitions: Some(vec![ContainerDefinition {
                name: Some("app".into()),
                port_mappings: Some(vec![PortMapping {
                    name: Some("http".into()),
                    container_port: Some(8080),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let c = |name: &str| GatewayConnector { port_name: name.into(), ..Default::default() };
        assert_eq!(connector_port(&td, &c("http"), "web:1").unwrap(), ("app".to_string(), 8080));
        let e = connector_port(&td, &c("admin"), "web:1").unwrap_err().message;
        assert!(e.contains("'admin'") && e.contains("'web:1'"), "{e}");
    }

    #[test]
    fn a_route_asks_for_the_connectors_health_check_and_the_gateways_tags_if_it_propagates_them() {
        assert_eq!(
            route_host("My_Web", "ab12cd34ef56", "eu-west-1"),
            "my-web-ab12cd34.gw.eu-west-1.localhost"
        );
        let connector = GatewayConnector {
            port_name: "http".into(),
            health_check: Some(GatewayConnectorHealthCheck {
                health_check_path: Some("/ping".into()),
                healthy_threshold_count: Some(3),
                ..Default::default()
            }),
            deregistration_delay: Some(GatewayConnectorDeregistrationDelay { timeout_seconds: Some(5) }),
            ..Default::default()
        };
        let ask =
            RouteAsk { cluster: "prod", service: "web", connector: &connector, container: "app", port: 8080 };
        let mut g = StoredGateway {
            gateway_arn: "arn:aws:ecs:us-east-1:000000000000:gateway/edge".into(),
            name: "edge".into(),
            status: GatewayStatus::Active,
            infrastructure_role_arn: "arn:aws:iam::000000000000:role/r".into(),
            deletion_protection: true,
            configuration: DescribeGatewayConfiguration::default(),
            access_type: "PUBLIC".into(),
            propagate_tags: "GATEWAY".into(),
            tags: vec![Tag { key: Some("team".into()), value: Some("edge".into()) }],
            created_at: gantry_core::Timestamp(0),
            updated_at: gantry_core::Timestamp(0),
        };
        let spec = route_spec("ab12cd34ef56", "h.localhost", &g, &ask);
        assert_eq!((spec.target_group_name.as_str(), spec.port), ("ecs-gw-ab12cd34ef56", 8080));
        assert_eq!(
            (spec.health_check_path.as_str(), spec.health_check.healthy_threshold),
            ("/ping", Some(3))
        );
        assert_eq!(spec.deregistration_delay_seconds, Some(5));
        assert_eq!(spec.tags, [("team".to_string(), "edge".to_string())]);
        g.propagate_tags = "NONE".into();
        assert!(route_spec("ab12cd34ef56", "h.localhost", &g, &ask).tags.is_empty());
    }
}
