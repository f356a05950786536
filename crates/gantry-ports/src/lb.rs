//! The load balancer's desired configuration, as the ELBv2 API (`gantry-elbv2`) hands it to the
//! data plane (`gantry-lb`), and the health the data plane reports back.
//!
//! [`LbConfig`] is plain data: every load balancer with its listeners (certificates included)
//! and their rules in evaluation order, and every target group with its health-check settings,
//! attributes and registered targets (draining ones included). The API produces a new one
//! whenever its records change (each stamped with the store revision it was built from); the
//! data plane swaps it in whole. Values are already validated and defaulted as ELB does, so the
//! data plane never second-guesses them: a number here is the one ELB would use.
//!
//! The other direction is [`TargetHealthSource`]: what the data plane's health checks found,
//! which DescribeTargetHealth reports. Until a data plane is wired, nothing has probed anything,
//! and the API reports what ELB reports for a target nobody has checked yet.

use gantry_core::{Scope, Secret};
use std::net::IpAddr;

/// Everything the data plane should serve, at one store revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LbConfig {
    /// The store revision this configuration was built from (0: built from nothing). Later
    /// configurations have higher revisions.
    pub revision: i64,
    /// Every load balancer of every account and region, in ARN order.
    pub load_balancers: Vec<LoadBalancer>,
    /// Every target group of every account and region, in ARN order.
    pub target_groups: Vec<TargetGroup>,
}

/// `application` or `network` (`gateway` load balancers are not served).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LbType {
    Application,
    Network,
}

/// A load balancer's `State.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LbState {
    Provisioning,
    Active,
    ActiveImpaired,
    Failed,
}

impl LbState {
    pub const ALL: [LbState; 4] =
        [LbState::Provisioning, LbState::Active, LbState::ActiveImpaired, LbState::Failed];

    /// ELBv2's `State.Code`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LbState::Provisioning => "provisioning",
            LbState::Active => "active",
            LbState::ActiveImpaired => "active_impaired",
            LbState::Failed => "failed",
        }
    }

    /// The state ELBv2 names `s`, if any.
    pub fn parse(s: &str) -> Option<LbState> {
        LbState::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A load balancer and its listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadBalancer {
    pub arn: String,
    pub name: String,
    pub lb_type: LbType,
    /// `NAME-ID.REGION.elb.localhost`.
    pub dns_name: String,
    /// `internet-facing` (true) or `internal`. The bind address is the data plane's own setting.
    pub internet_facing: bool,
    pub state: LbState,
    pub attributes: LbAttributes,
    /// In port order.
    pub listeners: Vec<Listener>,
}

/// The load balancer attributes the data plane acts on, with ELB's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbAttributes {
    /// `idle_timeout.timeout_seconds` (ALB; default 60, 1-4000).
    pub idle_timeout_seconds: u32,
    /// `client_keep_alive.seconds` (ALB; default 3600, 60-604800).
    pub client_keep_alive_seconds: u32,
    /// `routing.http2.enabled` (ALB; default true).
    pub http2_enabled: bool,
    /// `routing.http.drop_invalid_header_fields.enabled` (ALB; default false).
    pub drop_invalid_header_fields: bool,
    /// `routing.http.xff_header_processing.mode`: `append` (default), `preserve` or `remove`.
    pub xff_header_processing: XffMode,
    /// `routing.http.xff_client_port.enabled` (ALB; default false).
    pub xff_client_port: bool,
    /// `routing.http.preserve_host_header.enabled` (ALB; default false).
    pub preserve_host_header: bool,
    /// `routing.http.x_amzn_tls_version_and_cipher_suite.enabled` (ALB; default false).
    pub tls_version_and_cipher_headers: bool,
    /// `load_balancing.cross_zone.enabled` (NLB default false, ALB always true).
    pub cross_zone: bool,
    /// `deletion_protection.enabled`, for completeness (the data plane ignores it).
    pub deletion_protection: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XffMode {
    Append,
    Preserve,
    Remove,
}

/// A listener's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerProtocol {
    Http,
    Https,
    Tcp,
    Tls,
}

/// A listener: a port, its protocol, its certificates and its rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub arn: String,
    pub port: u16,
    pub protocol: ListenerProtocol,
    /// HTTPS and TLS: the default certificate first, then the listener's extra certificates
    /// (chosen by SNI). Empty for HTTP and TCP.
    pub certificates: Vec<Certificate>,
    /// HTTPS and TLS: the security policy's name (`ELBSecurityPolicy-TLS13-1-2-2021-06` by
    /// default).
    pub ssl_policy: Option<String>,
    /// TLS listeners: `HTTP1Only`, `HTTP2Only`, `HTTP2Optional`, `HTTP2Preferred` or `None`.
    pub alpn_policy: Option<String>,
    /// In evaluation order: by priority, lowest first; the default rule last. A network load
    /// balancer's listener has only its default rule, whose action is a forward.
    pub rules: Vec<Rule>,
    pub attributes: ListenerAttributes,
}

/// The listener attributes the data plane acts on, with ELB's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerAttributes {
    /// NLB TCP listeners: `tcp.idle_timeout.seconds` (default 350, 60-6000).
    pub tcp_idle_timeout_seconds: u32,
}

/// A certificate a listener presents, as imported into ACM.
#[derive(Clone, PartialEq)]
pub struct Certificate {
    pub arn: String,
    /// The certificate and its chain, PEM, leaf first.
    pub chain_pem: String,
    /// The private key, PEM.
    pub private_key_pem: Secret,
    /// The names it covers (subject CN and subject alternative DNS names), for SNI.
    pub domain_names: Vec<String>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("arn", &self.arn)
            .field("domain_names", &self.domain_names)
            .finish()
    }
}

/// A rule: all its conditions must match (each condition matches when any of its values does),
/// then its action runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub arn: String,
    /// `None` for the listener's default rule (evaluated last, no conditions).
    pub priority: Option<u32>,
    pub conditions: Vec<Condition>,
    pub action: Action,
}

/// A rule condition. Patterns use ELB's wildcards: `*` (any run of characters) and `?` (one
/// character); host and method comparisons are case-insensitive, paths and query strings
/// case-sensitive, header names case-insensitive and header values case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The request path (without the query string) matches one of the patterns.
    PathPattern(Vec<String>),
    /// The Host header (without port) matches one of the patterns.
    HostHeader(Vec<String>),
    /// A header named `name` has a value matching one of the patterns.
    HttpHeader { name: String, values: Vec<String> },
    /// The method is one of these (upper case; exact).
    HttpRequestMethod(Vec<String>),
    /// One of the pairs matches a query parameter: with a key, the parameter of that key has a
    /// matching value; without, any parameter's value matches. Keys and values are
    /// URL-decoded before matching.
    QueryString(Vec<QueryPair>),
    /// The client's address is in one of the CIDR blocks (the connection's source address,
    /// not X-Forwarded-For).
    SourceIp(Vec<Cidr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPair {
    pub key: Option<String>,
    pub value: String,
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// What a rule does with a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Forward(Forward),
    Redirect(Redirect),
    FixedResponse(FixedResponse),
}

/// Forward to one or more target groups, split by weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Weights are 0-999; a group of weight 0 gets nothing. A single group without a weight in
    /// the request has weight 1 here.
    pub target_groups: Vec<WeightedTargetGroup>,
    /// Target-group stickiness: a client keeps to the group it was sent to for this many
    /// seconds (1-604800; ELB's `AWSALBTG` cookie). `None`: off.
    pub stickiness_seconds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedTargetGroup {
    pub arn: String,
    pub weight: u32,
}

/// An HTTP redirect. Each part may use ELB's placeholders `#{protocol}`, `#{host}`, `#{port}`,
/// `#{path}` and `#{query}`, already defaulted to them where the request left the part out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `HTTP`, `HTTPS` or `#{protocol}`.
    pub protocol: String,
    pub host: String,
    pub port: String,
    /// Starts with `/`.
    pub path: String,
    /// Without the leading `?`.
    pub query: String,
    /// 301 or 302.
    pub status_code: u16,
}

/// A fixed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedResponse {
    /// 2XX, 4XX or 5XX.
    pub status_code: u16,
    /// `text/plain`, `text/css`, `text/html`, `application/javascript` or `application/json`.
    pub content_type: Option<String>,
    /// At most 1024 bytes.
    pub message_body: Option<String>,
}

/// A target group's protocol (also a health check's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetProtocol {
    Http,
    Https,
    Tcp,
    Tls,
    Udp,
    TcpUdp,
}

/// `ip` (targets are addresses) or `instance` (targets are container instances).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetType {
    Ip,
    Instance,
}

/// A target group: where its traffic goes and how its targets are checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub protocol: TargetProtocol,
    /// HTTP/HTTPS groups: `HTTP1` (default), `HTTP2` or `GRPC`.
    pub protocol_version: Option<String>,
    /// The group's port, used for targets registered without one.
    pub port: u16,
    pub target_type: TargetType,
    pub health_check: HealthCheck,
    pub attributes: TargetGroupAttributes,
    /// The load balancers whose rules forward to this group.
    pub load_balancer_arns: Vec<String>,
    /// Registered and draining targets, by ID then port.
    pub targets: Vec<Target>,
}

/// A target group's health check, every setting filled in with ELB's default for its protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub enabled: bool,
    pub protocol: TargetProtocol,
    /// `None`: the port each target receives traffic on (`traffic-port`).
    pub port: Option<u16>,
    /// HTTP/HTTPS checks: the path (default `/`).
    pub path: Option<String>,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// HTTP/HTTPS checks: the success codes, as ELB writes them (`200`, `200,202`, `200-299`).
    pub matcher_http_code: Option<String>,
}

/// The target group attributes the data plane acts on, with ELB's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupAttributes {
    /// `deregistration_delay.timeout_seconds` (default 300, 0-3600).
    pub deregistration_delay_seconds: u32,
    /// `slow_start.duration_seconds` (default 0 = off, else 30-900).
    pub slow_start_seconds: u32,
    /// `stickiness.enabled` and its type; `None` when off.
    pub stickiness: Option<Stickiness>,
    pub algorithm: Algorithm,
    /// `deregistration_delay.connection_termination.enabled` (NLB; default false).
    pub connection_termination: bool,
}

/// Target stickiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stickiness {
    /// `lb_cookie`: ELB's `AWSALB` cookie, for `stickiness.lb_cookie.duration_seconds`
    /// (default 86400).
    LbCookie { duration_seconds: u32 },
    /// `app_cookie`: follows the application's cookie `cookie_name`, for
    /// `stickiness.app_cookie.duration_seconds` (default 86400).
    AppCookie { cookie_name: String, duration_seconds: u32 },
    /// `source_ip` (NLB): by client address.
    SourceIp,
}

/// `load_balancing.algorithm.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RoundRobin,
    LeastOutstandingRequests,
}

/// A registered target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The ID as registered: an IP address (`ip` groups) or a container instance ID.
    pub id: String,
    /// The port traffic goes to (the group's port when registered without one).
    pub port: u16,
    /// Where to connect: the ID itself for `ip` targets; for `instance` targets the
    /// instance's address once something resolves it (`None`: not reachable yet).
    pub address: Option<IpAddr>,
    /// `all` or an Availability Zone, as registered.
    pub availability_zone: Option<String>,
    /// When it was registered (epoch milliseconds).
    pub registered_at_ms: i64,
    /// Set once the target is deregistered: it gets no new requests or connections, and its
    /// in-flight ones may finish until the deadline.
    pub draining: Option<Draining>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draining {
    /// When DeregisterTargets took it out (epoch milliseconds).
    pub since_ms: i64,
    /// When draining ends whatever is in flight: `since_ms` plus the deregistration delay.
    pub deadline_ms: i64,
}

/// A target's `TargetHealth.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetState {
    Initial,
    Healthy,
    Unhealthy,
    UnhealthyDraining,
    Unused,
    Draining,
    Unavailable,
}

impl TargetState {
    /// ELB's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Initial => "initial",
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
            TargetState::UnhealthyDraining => "unhealthy.draining",
            TargetState::Unused => "unused",
            TargetState::Draining => "draining",
            TargetState::Unavailable => "unavailable",
        }
    }
}

/// A target's `TargetHealth.Reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetReason {
    ElbRegistrationInProgress,
    ElbInitialHealthChecking,
    TargetResponseCodeMismatch,
    TargetTimeout,
    TargetFailedHealthChecks,
    TargetNotRegistered,
    TargetNotInUse,
    TargetDeregistrationInProgress,
    TargetInvalidState,
    TargetIpUnusable,
    TargetHealthCheckDisabled,
    ElbInternalError,
}

impl TargetReason {
    /// ELB's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetReason::ElbRegistrationInProgress => "Elb.RegistrationInProgress",
            TargetReason::ElbInitialHealthChecking => "Elb.InitialHealthChecking",
            TargetReason::TargetResponseCodeMismatch => "Target.ResponseCodeMismatch",
            TargetReason::TargetTimeout => "Target.Timeout",
            TargetReason::TargetFailedHealthChecks => "Target.FailedHealthChecks",
            TargetReason::TargetNotRegistered => "Target.NotRegistered",
            TargetReason::TargetNotInUse => "Target.NotInUse",
            TargetReason::TargetDeregistrationInProgress => "Target.DeregistrationInProgress",
            TargetReason::TargetInvalidState => "Target.InvalidState",
            TargetReason::TargetIpUnusable => "Target.IpUnusable",
            TargetReason::TargetHealthCheckDisabled => "Target.HealthCheckDisabled",
            TargetReason::ElbInternalError => "Elb.InternalError",
        }
    }
}

/// What the data plane's health checks found for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedHealth {
    pub state: TargetState,
    pub reason: Option<TargetReason>,
    /// ELB's description, e.g. `Health checks failed with these codes: [502]`.
    pub description: Option<String>,
}

/// The data plane's side of DescribeTargetHealth. Implemented by the data plane, wired by the
/// binary; the API asks it on every DescribeTargetHealth, so it answers from memory.
pub trait TargetHealthSource: Send + Sync {
    /// What the health checks of `target_group_arn` found for target `id` on `port` (for a
    /// registered, not draining target). `None`: not checked yet (the API then reports
    /// `initial`, `Elb.RegistrationInProgress` when the group is in use, as ELB does).
    fn health(&self, target_group_arn: &str, id: &str, port: u16) -> Option<ObservedHealth>;

    /// Whether a draining target has nothing in flight any more, so that its draining ends
    /// before the deregistration delay runs out. Default: no such knowledge.
    fn drained(&self, _target_group_arn: &str, _id: &str, _port: u16) -> bool {
        false
    }
}

/// The health source before a data plane is wired: nothing has been probed.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHealthChecks;

impl TargetHealthSource for NoHealthChecks {
    fn health(&self, _: &str, _: &str, _: u16) -> Option<ObservedHealth> {
        None
    }
}

/// ACM's side of a listener's certificates: ELBv2 checks a listener's certificate ARNs and
/// hands their PEM to the data plane through this. Implemented by `gantry-acm`.
pub trait CertificateSource: Send + Sync {
    /// The certificate with this ARN, if ACM has it (in any state a listener may use).
    fn certificate(&self, arn: &str) -> Option<Certificate>;
}

/// ECS's side of `instance` targets: where the data plane reaches a container instance, by the
/// EC2 instance ID a target names (its host's address, as its agent reports it). Implemented by
/// `gantry-ecs`, wired by the binary.
pub trait InstanceAddresses: Send + Sync {
    /// The addresses of the container instances of `scope` that have one, by EC2 instance ID.
    fn addresses(&self, scope: &Scope) -> std::collections::HashMap<String, IpAddr>;
    /// Whether a change to this store key may change [`InstanceAddresses::addresses`] (the
    /// configuration is then rebuilt).
    fn affects(&self, key: &str) -> bool;
}

/// Before ECS is wired: no instance has an address (instance targets are not served).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoInstances;

impl InstanceAddresses for NoInstances {
    fn addresses(&self, _scope: &Scope) -> std::collections::HashMap<String, IpAddr> {
        std::collections::HashMap::new()
    }
    fn affects(&self, _key: &str) -> bool {
        false
    }
}

/// ELBv2's side of ACM's `InUseBy`: which resources use a certificate. ACM refuses to delete a
/// certificate in use. Implemented by `gantry-elbv2`.
pub trait CertificateUse: Send + Sync {
    /// The ARNs of the load balancers whose listeners use the certificate.
    fn users(&self, certificate_arn: &str) -> Vec<String>;
}

/// Before ACM is wired: no certificates.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCertificates;

impl CertificateSource for NoCertificates {
    fn certificate(&self, _: &str) -> Option<Certificate> {
        None
    }
}

impl CertificateUse for NoCertificates {
    fn users(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
}

/// A target group as ECS sees it when a service names it in `loadBalancers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroupInfo {
    pub arn: String,
    pub target_type: TargetType,
    /// The load balancers whose rules forward to it (ECS refuses a group without one).
    pub load_balancer_arns: Vec<String>,
}

/// A target ECS registers for a task: an IP address (`ip` groups) or a container instance's
/// EC2 instance ID (`instance` groups), and the port traffic goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetRef {
    pub id: String,
    pub port: u16,
}

/// The future a port's asynchronous call returns (ports stay object-safe).
pub type PortFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// ELBv2's side of ECS's load balancing: what ECS needs to know of target groups, and the
/// calls it makes on them for a service's tasks, with the semantics of ELBv2's RegisterTargets,
/// DeregisterTargets and DescribeTargetHealth. Implemented by `gantry-elbv2`, wired by the
/// binary (ECS must not depend on ELBv2).
pub trait TargetRegistry: Send + Sync {
    /// The target group with this ARN in `scope`, if it exists.
    fn target_group(&self, scope: &Scope, arn: &str) -> Option<TargetGroupInfo>;

    /// Registers targets in a target group (RegisterTargets: registering a target already
    /// registered changes nothing). The error is ELB's message.
    fn register<'a>(
        &'a self,
        scope: &'a Scope,
        target_group_arn: &'a str,
        targets: &'a [TargetRef],
    ) -> PortFuture<'a, Result<(), String>>;

    /// Deregisters targets (DeregisterTargets: they drain for the group's deregistration delay;
    /// a target not registered is no error).
    fn deregister<'a>(
        &'a self,
        scope: &'a Scope,
        target_group_arn: &'a str,
        targets: &'a [TargetRef],
    ) -> PortFuture<'a, Result<(), String>>;

    /// A target's health as DescribeTargetHealth reports it; `None` once it is not registered
    /// (never registered, or its draining has ended), or when the group is gone.
    fn health(&self, scope: &Scope, target_group_arn: &str, target: &TargetRef) -> Option<ObservedHealth>;

    /// A listener rule (or a listener's default rule) as DescribeRules shows it, for ECS's
    /// blue/green, linear and canary deployments; `None` when no such rule exists. Default: no
    /// rules known.
    fn rule(&self, _scope: &Scope, _rule_arn: &str) -> Option<RuleInfo> {
        None
    }

    /// Makes a rule forward to these target groups with these weights (ModifyRule with one
    /// `forward` action, its stickiness kept; a default rule's through the same call, as ELB
    /// allows). The error is ELB's message. Default: no rules known.
    fn set_forward<'a>(
        &'a self,
        _scope: &'a Scope,
        rule_arn: &'a str,
        _weights: &'a [WeightedTargetGroup],
    ) -> PortFuture<'a, Result<(), String>> {
        Box::pin(async move { Err(format!("One or more rules not found: '{rule_arn}'")) })
    }
}

/// A listener rule as ECS's traffic shifting sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub arn: String,
    /// The listener it belongs to.
    pub listener_arn: String,
    /// The load balancer of that listener.
    pub load_balancer_arn: String,
    /// The target groups its `forward` action sends to, with their weights (empty when its
    /// action is not a forward).
    pub forward: Vec<WeightedTargetGroup>,
}
