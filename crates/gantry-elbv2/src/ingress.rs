//! `gantry_ports::ingress::Ingress`: the load balancer, listener, rules and target groups ECS
//! provisions for Express services and Gateways, made with this service's own operations (so
//! they are what `aws elbv2 describe-*` shows, and the data plane serves them like any other).

use crate::{Elbv2, lb_not_found};
use gantry_core::{Scope, ServiceError};
use gantry_model::elbv2::*;
use gantry_ports::ingress::{Ingress, Route, RouteSpec, SharedAlb};
use gantry_ports::lb::PortFuture;

fn tags(pairs: &[(String, String)]) -> Option<Vec<Tag>> {
    Some(pairs.iter().map(|(k, v)| Tag { key: k.clone(), value: Some(v.clone()) }).collect())
}

fn msg(e: ServiceError) -> String {
    e.message
}

/// The lowest rule priority not in `used`.
pub(crate) fn free_priority(used: &[u32]) -> i32 {
    (1..=50000u32).find(|p| !used.contains(p)).unwrap_or(50000) as i32
}

impl Elbv2 {
    async fn shared_alb_inner(
        &self,
        scope: &Scope,
        name: &str,
        port: u16,
    ) -> Result<SharedAlb, ServiceError> {
        let found = self
            .describe_load_balancers(
                scope,
                DescribeLoadBalancersInput { names: Some(vec![name.to_string()]), ..Default::default() },
            )
            .ok()
            .and_then(|o| o.load_balancers)
            .and_then(|v| v.into_iter().next());
        let lb = match found {
            Some(lb) => lb,
            None => {
                let made = self
                    .create_load_balancer(
                        scope,
                        CreateLoadBalancerInput {
                            name: name.to_string(),
                            subnets: Some(vec!["subnet-ecs-express-a".into(), "subnet-ecs-express-b".into()]),
                            scheme: Some("internet-facing".into()),
                            r#type: Some("application".into()),
                            tags: tags(&[("AmazonECSManaged".into(), "true".into())]),
                            ..Default::default()
                        },
                    )
                    .await;
                match made {
                    Ok(o) => o
                        .load_balancers
                        .and_then(|v| v.into_iter().next())
                        .ok_or_else(|| lb_not_found(&[name.into()]))?,
                    // Made meanwhile by a concurrent call: use it.
                    Err(e) if e.code == "DuplicateLoadBalancerName" => self
                        .describe_load_balancers(
                            scope,
                            DescribeLoadBalancersInput {
                                names: Some(vec![name.to_string()]),
                                ..Default::default()
                            },
                        )?
                        .load_balancers
                        .and_then(|v| v.into_iter().next())
                        .ok_or_else(|| lb_not_found(&[name.into()]))?,
                    Err(e) => return Err(e),
                }
            }
        };
        let lb_arn = lb.load_balancer_arn.clone().unwrap_or_default();
        let listeners = self
            .describe_listeners(
                scope,
                DescribeListenersInput { load_balancer_arn: Some(lb_arn.clone()), ..Default::default() },
            )?
            .listeners
            .unwrap_or_default();
        let listener_arn = match listeners.iter().find(|l| l.port == Some(port as i32)) {
            Some(l) => l.listener_arn.clone().unwrap_or_default(),
            None => self
                .create_listener(
                    scope,
                    CreateListenerInput {
                        load_balancer_arn: lb_arn.clone(),
                        protocol: Some("HTTP".into()),
                        port: Some(port as i32),
                        default_actions: vec![Action {
                            r#type: "fixed-response".into(),
                            fixed_response_config: Some(FixedResponseActionConfig {
                                status_code: "404".into(),
                                content_type: Some("text/plain".into()),
                                message_body: Some("Not Found".into()),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                )
                .await?
                .listeners
                .and_then(|v| v.into_iter().next())
                .and_then(|l| l.listener_arn)
                .unwrap_or_default(),
        };
        Ok(SharedAlb {
            load_balancer_arn: lb_arn,
            dns_name: lb.dns_name.unwrap_or_default(),
            listener_arn,
            port,
        })
    }

    async fn add_route_inner(
        &self,
        scope: &Scope,
        listener_arn: &str,
        spec: &RouteSpec,
    ) -> Result<Route, ServiceError> {
        let tg = self
            .create_target_group(
                scope,
                CreateTargetGroupInput {
                    name: spec.target_group_name.clone(),
                    protocol: Some("HTTP".into()),
                    port: Some(spec.port as i32),
                    vpc_id: Some("vpc-ecs-express".into()),
                    target_type: Some("ip".into()),
                    health_check_path: Some(spec.health_check_path.clone()),
                    health_check_interval_seconds: Some(5),
                    health_check_timeout_seconds: Some(2),
                    healthy_threshold_count: Some(2),
                    tags: tags(&spec.tags),
                    ..Default::default()
                },
            )
            .await?
            .target_groups
            .and_then(|v| v.into_iter().next())
            .and_then(|t| t.target_group_arn)
            .unwrap_or_default();
        if let Some(delay) = spec.deregistration_delay_seconds {
            let set = self
                .modify_target_group_attributes(
                    scope,
                    ModifyTargetGroupAttributesInput {
                        target_group_arn: tg.clone(),
                        attributes: vec![TargetGroupAttribute {
                            key: Some("deregistration_delay.timeout_seconds".into()),
                            value: Some(delay.to_string()),
                        }],
                    },
                )
                .await;
            if let Err(e) = set {
                let _ =
                    self.delete_target_group(scope, DeleteTargetGroupInput { target_group_arn: tg }).await;
                return Err(e);
            }
        }
        let mut last = None;
        // Another route may take the priority chosen; choose again.
        for _ in 0..8 {
            let used: Vec<u32> = self
                .describe_rules(
                    scope,
                    DescribeRulesInput { listener_arn: Some(listener_arn.to_string()), ..Default::default() },
                )?
                .rules
                .unwrap_or_default()
                .iter()
                .filter_map(|r| r.priority.as_deref()?.parse().ok())
                .collect();
            let made = self
                .create_rule(
                    scope,
                    CreateRuleInput {
                        listener_arn: listener_arn.to_string(),
                        priority: free_priority(&used),
                        conditions: vec![RuleCondition {
                            field: Some("host-header".into()),
                            host_header_config: Some(HostHeaderConditionConfig {
                                values: Some(vec![spec.host.clone()]),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }],
                        actions: vec![Action {
                            r#type: "forward".into(),
                            target_group_arn: Some(tg.clone()),
                            ..Default::default()
                        }],
                        tags: tags(&spec.tags),
                        ..Default::default()
                    },
                )
                .await;
            match made {
                Ok(o) => {
                    let rule_arn = o
                        .rules
                        .and_then(|v| v.into_iter().next())
                        .and_then(|r| r.rule_arn)
                        .unwrap_or_default();
                    return Ok(Route { target_group_arn: tg, rule_arn });
                }
                Err(e) if e.code == "PriorityInUse" => last = Some(e),
                Err(e) => {
                    let _ = self
                        .delete_target_group(scope, DeleteTargetGroupInput { target_group_arn: tg })
                        .await;
                    return Err(e);
                }
            }
        }
        let _ = self.delete_target_group(scope, DeleteTargetGroupInput { target_group_arn: tg }).await;
        Err(last.unwrap_or_else(crate::conflict))
    }

    async fn remove_route_inner(
        &self,
        scope: &Scope,
        lb_arn: &str,
        route: &Route,
    ) -> Result<(), ServiceError> {
        if !route.rule_arn.is_empty() {
            match self.delete_rule(scope, DeleteRuleInput { rule_arn: route.rule_arn.clone() }).await {
                Ok(_) => {}
                Err(e)
                    if e.code == "RuleNotFound"
                        || e.code == "ListenerNotFound"
                        || e.code == "LoadBalancerNotFound" => {}
                Err(e) => return Err(e),
            }
        }
        if !route.target_group_arn.is_empty() {
            match self
                .delete_target_group(
                    scope,
                    DeleteTargetGroupInput { target_group_arn: route.target_group_arn.clone() },
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == "TargetGroupNotFound" => {}
                Err(e) => return Err(e),
            }
        }
        let listeners = match self.describe_listeners(
            scope,
            DescribeListenersInput { load_balancer_arn: Some(lb_arn.to_string()), ..Default::default() },
        ) {
            Ok(o) => o.listeners.unwrap_or_default(),
            Err(e) if e.code == "LoadBalancerNotFound" => return Ok(()),
            Err(e) => return Err(e),
        };
        for l in &listeners {
            let rules = self
                .describe_rules(
                    scope,
                    DescribeRulesInput { listener_arn: l.listener_arn.clone(), ..Default::default() },
                )?
                .rules
                .unwrap_or_default();
            if rules.iter().any(|r| r.is_default != Some(true)) {
                return Ok(());
            }
        }
        match self
            .delete_load_balancer(scope, DeleteLoadBalancerInput { load_balancer_arn: lb_arn.to_string() })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code == "LoadBalancerNotFound" => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Ingress for Elbv2 {
    fn shared_alb<'a>(
        &'a self,
        scope: &'a Scope,
        name: &'a str,
        port: u16,
    ) -> PortFuture<'a, Result<SharedAlb, String>> {
        Box::pin(async move { self.shared_alb_inner(scope, name, port).await.map_err(msg) })
    }

    fn add_route<'a>(
        &'a self,
        scope: &'a Scope,
        listener_arn: &'a str,
        spec: &'a RouteSpec,
    ) -> PortFuture<'a, Result<Route, String>> {
        Box::pin(async move { self.add_route_inner(scope, listener_arn, spec).await.map_err(msg) })
    }

    fn set_health_check_path<'a>(
        &'a self,
        scope: &'a Scope,
        target_group_arn: &'a str,
        path: &'a str,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.modify_target_group(
                scope,
                ModifyTargetGroupInput {
                    target_group_arn: target_group_arn.to_string(),
                    health_check_path: Some(path.to_string()),
                    ..Default::default()
                },
            )
            .await
            .map(|_| ())
            .map_err(msg)
        })
    }

    fn remove_route<'a>(
        &'a self,
        scope: &'a Scope,
        load_balancer_arn: &'a str,
        route: &'a Route,
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move { self.remove_route_inner(scope, load_balancer_arn, route).await.map_err(msg) })
    }
}

#[cfg(test)]
mod tests {
    use super::free_priority;

    #[test]
    fn the_lowest_free_priority_is_chosen() {
        assert_eq!(free_priority(&[]), 1);
        assert_eq!(free_priority(&[1, 2, 4]), 3);
        assert_eq!(free_priority(&[2]), 1);
    }
}
