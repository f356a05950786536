//! The stored records of ECS Gateways (`gateways.rs`): a gateway, its associations with clusters
//! and the routes services' gateway connectors make. Each is a domain type: what Gantry always
//! writes is required, statuses are `gantry-core`'s enums and times [`Timestamp`]s. Their JSON
//! is the JSON Gantry wrote before they had these types (the same names: the records' own in
//! snake_case, ECS's shapes inside them in camelCase; statuses as ECS's strings, times as epoch
//! seconds), so records of earlier releases read as they are, and a status that is none of
//! ECS's fails the read, naming the key. What the user gave (the ALB configuration, tags, a
//! connector) keeps its wire shape: the user's documents, echoed back. The API answers through
//! each type's `to_wire`.

use crate::keys;
use crate::table::Record;
use gantry_core::time::epoch_seconds;
use gantry_core::{GatewayAssociationStatus, GatewayRouteStatus, GatewayStatus, Scope, Timestamp};
use gantry_model::*;
use serde::{Deserialize, Serialize};

/// A gateway as stored (`keys::gateway`): the gateway, the client token it was created with and
/// its listener's port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayRecord {
    pub gateway: StoredGateway,
    /// Written as `null` when the create gave none (as before).
    pub client_token: Option<String>,
    /// The port of its listener.
    pub port: u16,
}

/// A gateway: ECS's `Gateway` shape with what every gateway has as plain values (its JSON).
/// `statusReason` and `failures` are not stored: Gantry's gateway changes are made at once, and
/// never fail half-way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredGateway {
    pub gateway_arn: String,
    pub name: String,
    pub status: GatewayStatus,
    pub infrastructure_role_arn: String,
    pub deletion_protection: bool,
    /// The `hostSharedAlb` configuration asked for, with ECS's defaults filled in.
    pub configuration: DescribeGatewayConfiguration,
    /// PUBLIC (an internet-facing load balancer) or PRIVATE (internal).
    pub access_type: String,
    /// NONE or GATEWAY.
    pub propagate_tags: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(with = "epoch_seconds")]
    pub created_at: Timestamp,
    #[serde(with = "epoch_seconds")]
    pub updated_at: Timestamp,
}

impl StoredGateway {
    /// Whether its routes' target groups get its tags (`propagateTags` GATEWAY).
    pub fn propagates_tags(&self) -> bool {
        self.propagate_tags == "GATEWAY"
    }

    /// ECS's `Gateway`, as DescribeGateway returns it: the one place the record becomes the wire
    /// shape (`ControlPlane::gateway_view` sets the current load balancer count).
    pub fn to_wire(&self) -> Gateway {
        Gateway {
            gateway_arn: Some(self.gateway_arn.clone()),
            name: Some(self.name.clone()),
            status: Some(self.status.as_str().into()),
            status_reason: None,
            failures: None,
            infrastructure_role_arn: Some(self.infrastructure_role_arn.clone()),
            deletion_protection: Some(self.deletion_protection),
            configuration: Some(self.configuration.clone()),
            access_type: Some(self.access_type.clone()),
            propagate_tags: Some(self.propagate_tags.clone()),
            tags: Some(self.tags.clone()),
            created_at: Some(self.created_at.as_epoch_seconds()),
            updated_at: Some(self.updated_at.as_epoch_seconds()),
        }
    }

    /// ListGateways' entry.
    pub fn summary(&self) -> GatewaySummary {
        GatewaySummary {
            gateway_arn: Some(self.gateway_arn.clone()),
            name: Some(self.name.clone()),
            status: Some(self.status.as_str().into()),
            created_at: Some(self.created_at.as_epoch_seconds()),
        }
    }
}

impl Record for GatewayRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::gateway(scope, &self.gateway.name)
    }
}

/// A gateway's association with a cluster (`keys::gateway_assoc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssociationRecord {
    pub gateway: String,
    pub cluster: String,
    pub gateway_arn: String,
    pub cluster_arn: String,
    /// ACTIVE, or DISASSOCIATING while services of the cluster still have routes on the gateway.
    pub status: GatewayAssociationStatus,
}

impl AssociationRecord {
    /// Whether the cluster's services may make routes on the gateway.
    pub fn is_active(&self) -> bool {
        self.status == GatewayAssociationStatus::Active
    }

    /// ListGatewayClusterAssociations' entry.
    pub fn to_wire(&self) -> GatewayClusterAssociationSummary {
        GatewayClusterAssociationSummary {
            gateway_arn: Some(self.gateway_arn.clone()),
            cluster_arn: Some(self.cluster_arn.clone()),
            status: Some(self.status.as_str().into()),
        }
    }
}

impl Record for AssociationRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::gateway_assoc(scope, &self.gateway, &self.cluster)
    }
}

/// A gateway route as stored (`keys::gateway_route`): the route, the connector it was made
/// from, and the `loadBalancers` entry the service's tasks register through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub id: String,
    pub gateway: String,
    pub gateway_arn: String,
    pub cluster: String,
    pub cluster_arn: String,
    pub service: String,
    pub route: StoredRoute,
    pub connector: GatewayConnector,
    pub target_group_arn: String,
    pub container_name: String,
    pub container_port: i32,
}

/// A route: ECS's `GatewayRoute` shape with every part as a plain value (its JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRoute {
    pub gateway_route_arn: String,
    pub service_arn: String,
    pub service_container_port_name: String,
    /// Gantry's routes are made at once: ACTIVE.
    pub status: GatewayRouteStatus,
    pub service_url: String,
    pub resources: RouteResources,
}

/// What a route was made of (ECS's `GatewayRouteResources`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteResources {
    pub host_shared_alb: Vec<RouteAlb>,
}

/// A route's listener rule on the gateway's load balancer (ECS's `GatewayRouteAlbResources`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteAlb {
    pub load_balancer_arn: String,
    pub listener_arn: String,
    pub listener_rule_arn: String,
}

impl StoredRoute {
    /// ECS's `GatewayRoute`, as DescribeGatewayRoute returns it.
    pub fn to_wire(&self) -> GatewayRoute {
        GatewayRoute {
            gateway_route_arn: Some(self.gateway_route_arn.clone()),
            service_arn: Some(self.service_arn.clone()),
            service_container_port_name: Some(self.service_container_port_name.clone()),
            status: Some(self.status.as_str().into()),
            service_url: Some(self.service_url.clone()),
            resources: Some(GatewayRouteResources {
                host_shared_alb: Some(
                    self.resources
                        .host_shared_alb
                        .iter()
                        .map(|a| GatewayRouteAlbResources {
                            load_balancer_arn: Some(a.load_balancer_arn.clone()),
                            listener_arn: Some(a.listener_arn.clone()),
                            listener_rule_arn: Some(a.listener_rule_arn.clone()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
        }
    }
}

impl RouteRecord {
    /// The `loadBalancers` entry the service's tasks register through.
    pub fn load_balancer(&self) -> LoadBalancer {
        LoadBalancer {
            target_group_arn: Some(self.target_group_arn.clone()),
            container_name: Some(self.container_name.clone()),
            container_port: Some(self.container_port),
            ..Default::default()
        }
    }

    /// ListGatewayRoutes' entry.
    pub fn summary(&self) -> GatewayRouteSummary {
        GatewayRouteSummary {
            gateway_route_arn: Some(self.route.gateway_route_arn.clone()),
            gateway_arn: Some(self.gateway_arn.clone()),
            cluster_arn: Some(self.cluster_arn.clone()),
            service_arn: Some(self.route.service_arn.clone()),
            service_container_port_name: Some(self.connector.port_name.clone()),
            status: Some(self.route.status.as_str().into()),
        }
    }
}

impl Record for RouteRecord {
    fn key(&self, scope: &Scope) -> String {
        keys::gateway_route(scope, &self.gateway, &self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{encode, parse};
    use serde_json::Value;

    const ARN: &str = "arn:aws:ecs:us-east-1:000000000000";
    const ELB: &str = "arn:aws:elasticloadbalancing:us-east-1:000000000000";

    /// The records as the release before these types declared them: ECS's wire shapes and
    /// status strings.
    #[derive(Serialize)]
    struct OldGatewayRecord {
        gateway: Gateway,
        client_token: Option<String>,
        port: u16,
    }

    #[derive(Serialize)]
    struct OldAssociationRecord {
        gateway: String,
        cluster: String,
        gateway_arn: String,
        cluster_arn: String,
        status: String,
    }

    #[derive(Serialize)]
    struct OldRouteRecord {
        id: String,
        gateway: String,
        gateway_arn: String,
        cluster: String,
        cluster_arn: String,
        service: String,
        route: GatewayRoute,
        connector: GatewayConnector,
        target_group_arn: String,
        container_name: String,
        container_port: i32,
    }

    /// CreateGateway's record as main wrote it (UpdateGateway's with UPDATE_COMPLETE), every
    /// field Gantry sets filled.
    fn gateway_main_wrote(status: &str, client_token: Option<&str>) -> OldGatewayRecord {
        let at = |ms: i64| Some(Timestamp(ms).as_epoch_seconds());
        OldGatewayRecord {
            gateway: Gateway {
                gateway_arn: Some(format!("{ARN}:gateway/edge")),
                name: Some("edge".into()),
                status: Some(status.into()),
                infrastructure_role_arn: Some("arn:aws:iam::000000000000:role/ecsInfrastructureRole".into()),
                deletion_protection: Some(false),
                configuration: Some(DescribeGatewayConfiguration {
                    host_shared_alb: Some(DescribeGatewayAlbConfiguration {
                        network_configuration: Some(GatewayElbNetworkConfiguration {
                            subnets: Some(vec!["subnet-1".into(), "subnet-2".into()]),
                            inbound_security_group: Some("sg-1".into()),
                            ..Default::default()
                        }),
                        scheme: Some("internal".into()),
                        access_logs: None,
                        web_acl_arn: Some("arn:aws:wafv2:us-east-1:000000000000:regional/webacl/a/1".into()),
                        port: Some(8443),
                        protocol: Some("HTTP".into()),
                        max_alb_count: Some(10),
                        current_alb_count: Some(0),
                        http_desync: Some("defensive".into()),
                        test_traffic_rules: None,
                    }),
                }),
                access_type: Some("PRIVATE".into()),
                propagate_tags: Some("GATEWAY".into()),
                tags: Some(vec![Tag { key: Some("team".into()), value: Some("edge".into()) }]),
                created_at: at(1_796_334_293_524),
                updated_at: at(1_796_334_400_007),
                ..Default::default()
            },
            client_token: client_token.map(str::to_string),
            port: 8443,
        }
    }

    fn association_main_wrote(status: &str) -> OldAssociationRecord {
        OldAssociationRecord {
            gateway: "edge".into(),
            cluster: "prod".into(),
            gateway_arn: format!("{ARN}:gateway/edge"),
            cluster_arn: format!("{ARN}:cluster/prod"),
            status: status.into(),
        }
    }

    /// connect_gateways' route as main wrote it.
    fn route_main_wrote(status: &str) -> OldRouteRecord {
        let lb = format!("{ELB}:loadbalancer/app/ecs-gw-edge-0a1b2c3d/0123456789abcdef");
        let listener = format!("{ELB}:listener/app/ecs-gw-edge-0a1b2c3d/0123456789abcdef/fedcba9876543210");
        OldRouteRecord {
            id: "ab12cd34ef56".into(),
            gateway: "edge".into(),
            gateway_arn: format!("{ARN}:gateway/edge"),
            cluster: "prod".into(),
            cluster_arn: format!("{ARN}:cluster/prod"),
            service: "web".into(),
            route: GatewayRoute {
                gateway_route_arn: Some(format!("{ARN}:gateway-route/edge/ab12cd34ef56")),
                service_arn: Some(format!("{ARN}:service/prod/web")),
                service_container_port_name: Some("http".into()),
                status: Some(status.into()),
                service_url: Some("http://web-ab12cd34.gw.us-east-1.localhost:8443".into()),
                resources: Some(GatewayRouteResources {
                    host_shared_alb: Some(vec![GatewayRouteAlbResources {
                        load_balancer_arn: Some(lb),
                        listener_arn: Some(listener.clone()),
                        listener_rule_arn: Some(format!(
                            "{}/1",
                            listener.replace(":listener/", ":listener-rule/")
                        )),
                        ..Default::default()
                    }]),
                }),
            },
            connector: GatewayConnector {
                port_name: "http".into(),
                filters: Some(GatewayConnectorFilters { access_types: Some(vec!["PRIVATE".into()]) }),
                deregistration_delay: Some(GatewayConnectorDeregistrationDelay { timeout_seconds: Some(5) }),
                ..Default::default()
            },
            target_group_arn: format!("{ELB}:targetgroup/ecs-gw-ab12cd34ef56/00112233aabbccdd"),
            container_name: "app".into(),
            container_port: 8080,
        }
    }

    /// `old` as stored, read as `T`: written back, the same JSON.
    fn reads_and_writes_back<T: Serialize + serde::de::DeserializeOwned>(old: &impl Serialize) -> T {
        let stored = encode(old);
        let rec: T = parse(&stored).unwrap();
        let was: Value = parse(&stored).unwrap();
        let now: Value = parse(&encode(&rec)).unwrap();
        assert_eq!(now, was);
        rec
    }

    #[test]
    fn a_gateway_main_wrote_reads_and_writes_back_the_same_json() {
        let scope = Scope::new("000000000000", "us-east-1");
        for status in GatewayStatus::ALL {
            for token in [None, Some("tok-1")] {
                let old = gateway_main_wrote(status.as_str(), token);
                let rec: GatewayRecord = reads_and_writes_back(&old);
                let g = &rec.gateway;
                assert_eq!((g.status, g.name.as_str(), rec.port), (*status, "edge", 8443));
                assert_eq!(rec.client_token.as_deref(), token);
                assert_eq!(
                    (g.created_at, g.updated_at),
                    (Timestamp(1_796_334_293_524), Timestamp(1_796_334_400_007))
                );
                assert!(!g.deletion_protection && g.propagates_tags());
                assert_eq!(rec.key(&scope), keys::gateway(&scope, "edge"));
                // The wire shape is the one main stored and described.
                assert_eq!(g.to_wire(), old.gateway);
                let summary = g.summary();
                assert_eq!(
                    (summary.gateway_arn, summary.name, summary.status, summary.created_at),
                    (old.gateway.gateway_arn, old.gateway.name, old.gateway.status, old.gateway.created_at)
                );
            }
        }
    }

    #[test]
    fn an_association_main_wrote_reads_and_writes_back_the_same_json() {
        let scope = Scope::new("000000000000", "us-east-1");
        for status in GatewayAssociationStatus::ALL {
            let old = association_main_wrote(status.as_str());
            let rec: AssociationRecord = reads_and_writes_back(&old);
            assert_eq!(rec.status, *status);
            assert_eq!(rec.is_active(), *status == GatewayAssociationStatus::Active);
            assert_eq!(rec.key(&scope), keys::gateway_assoc(&scope, "edge", "prod"));
            assert_eq!(
                rec.to_wire(),
                GatewayClusterAssociationSummary {
                    gateway_arn: Some(old.gateway_arn.clone()),
                    cluster_arn: Some(old.cluster_arn.clone()),
                    status: Some(old.status.clone()),
                }
            );
        }
    }

    #[test]
    fn a_route_main_wrote_reads_and_writes_back_the_same_json() {
        let scope = Scope::new("000000000000", "us-east-1");
        for status in GatewayRouteStatus::ALL {
            let old = route_main_wrote(status.as_str());
            let rec: RouteRecord = reads_and_writes_back(&old);
            assert_eq!(rec.route.status, *status);
            assert_eq!(rec.route.resources.host_shared_alb.len(), 1);
            assert!(rec.route.resources.host_shared_alb[0].listener_rule_arn.ends_with("/1"));
            assert_eq!(rec.key(&scope), keys::gateway_route(&scope, "edge", "ab12cd34ef56"));
            assert_eq!(rec.route.to_wire(), old.route);
            assert_eq!(
                rec.summary(),
                GatewayRouteSummary {
                    gateway_route_arn: old.route.gateway_route_arn.clone(),
                    gateway_arn: Some(old.gateway_arn.clone()),
                    cluster_arn: Some(old.cluster_arn.clone()),
                    service_arn: old.route.service_arn.clone(),
                    service_container_port_name: Some("http".into()),
                    status: old.route.status.clone(),
                }
            );
        }
    }

    #[test]
    fn a_status_gantry_never_wrote_fails_the_read_naming_it() {
        let e = parse::<GatewayRecord>(&encode(&gateway_main_wrote("PAUSED", None))).unwrap_err();
        assert!(e.contains("PAUSED"), "{e}");
        let e = parse::<AssociationRecord>(&encode(&association_main_wrote("LINGERING"))).unwrap_err();
        assert!(e.contains("LINGERING"), "{e}");
        let e = parse::<RouteRecord>(&encode(&route_main_wrote("WOBBLY"))).unwrap_err();
        assert!(e.contains("WOBBLY"), "{e}");
    }

    #[test]
    fn a_record_without_what_gantry_always_wrote_does_not_read() {
        for field in ["gatewayArn", "name", "status", "createdAt", "deletionProtection"] {
            let mut v = serde_json::to_value(gateway_main_wrote("ACTIVE", None)).unwrap();
            v["gateway"].as_object_mut().unwrap().remove(field);
            assert!(parse::<GatewayRecord>(&encode(&v)).is_err(), "{field}");
        }
        for field in ["gatewayRouteArn", "status", "resources"] {
            let mut v = serde_json::to_value(route_main_wrote("ACTIVE")).unwrap();
            v["route"].as_object_mut().unwrap().remove(field);
            assert!(parse::<RouteRecord>(&encode(&v)).is_err(), "{field}");
        }
    }

    #[tokio::test]
    async fn loading_a_record_with_an_unknown_status_names_its_key() {
        use gantry_store::{SqliteStore, Store, Txn};
        let scope = Scope::new("000000000000", "us-east-1");
        let store = SqliteStore::in_memory().unwrap();
        let key = keys::gateway_assoc(&scope, "edge", "prod");
        store.txn(Txn::new().put(key.clone(), encode(&association_main_wrote("LINGERING")))).await.unwrap();
        let e = crate::records::load::<AssociationRecord>(&store, &key).unwrap_err();
        assert!(e.message.contains(&key) && e.message.contains("LINGERING"), "{}", e.message);
    }
}
