//! ECS's managed ingress: what an Express service (and a Gateway) provisions in ELBv2 and
//! Application Auto Scaling on the caller's behalf, as ECS does through AWS's. ECS calls these
//! ports; `gantry-elbv2` and `gantry-appautoscaling` implement them with their own operations'
//! semantics (the resources are visible through their APIs), and the binary wires them.

use crate::lb::PortFuture;
use gantry_core::Scope;

/// A shared Application Load Balancer with its one HTTP listener.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SharedAlb {
    pub load_balancer_arn: String,
    /// `NAME-ID.REGION.elb.localhost`.
    pub dns_name: String,
    pub listener_arn: String,
    pub port: u16,
}

/// What one route needs: an `ip` target group and a host-header rule forwarding to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteSpec {
    /// The target group's name (ELB's rules: at most 32 characters).
    pub target_group_name: String,
    /// The port traffic goes to on each target (the container port).
    pub port: u16,
    /// The health check's path.
    pub health_check_path: String,
    /// The `Host` the rule matches.
    pub host: String,
    /// Tags put on the target group and the rule.
    pub tags: Vec<(String, String)>,
    /// Health check settings beyond the path (ELB's defaults, or Express's, when absent).
    pub health_check: HealthCheckSpec,
    /// The target group's `deregistration_delay.timeout_seconds` (ELB's 300 when absent).
    pub deregistration_delay_seconds: Option<i32>,
}

/// A target group's health check settings as a gateway connector gives them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthCheckSpec {
    pub protocol: Option<String>,
    pub port: Option<i32>,
    pub interval_seconds: Option<i32>,
    pub timeout_seconds: Option<i32>,
    pub healthy_threshold: Option<i32>,
    pub unhealthy_threshold: Option<i32>,
    /// ELB's `HttpCode` matcher (`200`, `200-299`, ...).
    pub http_code: Option<String>,
}

/// A route as provisioned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    pub target_group_arn: String,
    pub rule_arn: String,
}

/// ELBv2's side of ECS's managed ingress (implemented by `gantry-elbv2`).
pub trait Ingress: Send + Sync {
    /// The internet-facing ALB named `name`, with an HTTP listener on `port` whose default action
    /// answers 404: created if absent (CreateLoadBalancer, CreateListener), else found by name.
    fn shared_alb<'a>(
        &'a self,
        scope: &'a Scope,
        name: &'a str,
        port: u16,
    ) -> PortFuture<'a, Result<SharedAlb, String>>;

    /// Creates the route's target group and a rule on `listener_arn` forwarding `Host: host` to
    /// it, at the lowest free priority. The error is ELB's message.
    fn add_route<'a>(
        &'a self,
        scope: &'a Scope,
        listener_arn: &'a str,
        spec: &'a RouteSpec,
    ) -> PortFuture<'a, Result<Route, String>>;

    /// Sets a target group's health check path (ModifyTargetGroup).
    fn set_health_check_path<'a>(
        &'a self,
        scope: &'a Scope,
        target_group_arn: &'a str,
        path: &'a str,
    ) -> PortFuture<'a, Result<(), String>>;

    /// Deletes a route's rule and target group (either already gone is no error), then the load
    /// balancer when its listener has no rule left. The error is ELB's message.
    fn remove_route<'a>(
        &'a self,
        scope: &'a Scope,
        load_balancer_arn: &'a str,
        route: &'a Route,
    ) -> PortFuture<'a, Result<(), String>>;
}

/// A service's scaling as an Express service manages it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TargetTracking {
    pub min_capacity: i32,
    pub max_capacity: i32,
    pub policy_name: String,
    /// `ECSServiceAverageCPUUtilization`, `ECSServiceAverageMemoryUtilization` or
    /// `ALBRequestCountPerTarget`.
    pub predefined_metric: String,
    /// For `ALBRequestCountPerTarget`: `app/LB/ID/targetgroup/TG/ID`.
    pub resource_label: Option<String>,
    pub target_value: f64,
}

/// What was registered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScalingRefs {
    pub scalable_target_arn: String,
    pub policy_arn: String,
}

/// Application Auto Scaling's side (implemented by `gantry-appautoscaling`).
pub trait ServiceScaling: Send + Sync {
    /// Registers (or updates) the scalable target `service/CLUSTER/SERVICE` and puts the target
    /// tracking policy (RegisterScalableTarget, PutScalingPolicy). The error is its message.
    fn put_target_tracking<'a>(
        &'a self,
        scope: &'a Scope,
        cluster: &'a str,
        service: &'a str,
        spec: &'a TargetTracking,
    ) -> PortFuture<'a, Result<ScalingRefs, String>>;

    /// Deregisters the service's scalable target with its policies (absent is no error).
    fn remove<'a>(
        &'a self,
        scope: &'a Scope,
        cluster: &'a str,
        service: &'a str,
    ) -> PortFuture<'a, Result<(), String>>;
}
