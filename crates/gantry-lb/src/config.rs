//! What the data plane is told to serve: a plain tree of load balancers' listeners and the
//! target groups their actions forward to, replaced as a whole by `LoadBalancer::apply`.
//!
//! The ELBv2 API keeps its own records; the binary turns them into this. Values are already
//! validated by the API (priorities unique, weights 0..=999, ...); what the data plane cannot
//! act on (a certificate that does not parse, a port in use) is an `ApplyError`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Everything the data plane serves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub listeners: Vec<Listener>,
    pub target_groups: Vec<TargetGroup>,
}

/// `HTTP`/`HTTPS` listeners are an ALB's, `TCP`/`TLS` an NLB's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Http,
    Https,
    Tcp,
    Tls,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
        }
    }

    /// Whether the listener speaks HTTP (an ALB's).
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }

    /// Whether the listener terminates TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }
}

/// One listener: a port of a load balancer.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// The listener's ARN.
    pub arn: String,
    /// Its load balancer's ARN (`arn:aws:elasticloadbalancing:REGION:ACCOUNT:loadbalancer/app/NAME/ID`).
    pub load_balancer_arn: String,
    /// Where to bind; `None` is the data plane's default address (loopback unless configured).
    pub address: Option<IpAddr>,
    pub port: u16,
    pub protocol: Protocol,
    /// HTTPS and TLS: the certificates, the default one first; SNI picks among the others.
    pub certificates: Vec<Certificate>,
    /// Rules other than the default one, in any order (they are evaluated by priority).
    pub rules: Vec<Rule>,
    /// The default rule's actions.
    pub default_actions: Vec<Action>,
    /// The load balancer's `idle_timeout.timeout_seconds` (60 by default): how long a client
    /// connection may be idle, and how long a target may take to answer before a 504.
    pub idle_timeout: Duration,
    /// The load balancer's `routing.http2.enabled` (true by default): whether HTTPS offers `h2`.
    pub http2: bool,
    /// `routing.http.xff_header_processing.mode`.
    pub xff: XffMode,
}

pub use gantry_ports::lb::XffMode;

impl Listener {
    /// A listener with ALB's defaults and no rules.
    pub fn new(arn: &str, load_balancer_arn: &str, port: u16, protocol: Protocol) -> Self {
        Listener {
            arn: arn.to_string(),
            load_balancer_arn: load_balancer_arn.to_string(),
            address: None,
            port,
            protocol,
            certificates: Vec::new(),
            rules: Vec::new(),
            default_actions: Vec::new(),
            idle_timeout: Duration::from_secs(60),
            http2: true,
            xff: XffMode::Append,
        }
    }
}

/// A PEM certificate chain and its private key (what ACM's ImportCertificate takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub arn: String,
    pub chain_pem: String,
    pub private_key_pem: String,
}

/// A listener rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub arn: String,
    /// 1..=50000, lower first.
    pub priority: u32,
    /// All must match (each matches when any of its values does).
    pub conditions: Vec<Condition>,
    pub actions: Vec<Action>,
}

/// ELB's rule conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Case-sensitive patterns with `*` and `?`, on the path alone.
    PathPattern(Vec<String>),
    /// Case-insensitive patterns with `*` and `?`, on the host without its port.
    HostHeader(Vec<String>),
    /// A header (case-insensitive name) whose value matches a case-insensitive pattern.
    HttpHeader { name: String, values: Vec<String> },
    /// Exact, case-sensitive method names.
    HttpRequestMethod(Vec<String>),
    /// Key/value patterns (case-insensitive, `*` and `?`); a missing key matches any key.
    QueryString(Vec<(Option<String>, String)>),
    /// CIDR blocks the client's address must be in.
    SourceIp(Vec<Cidr>),
}

/// An IPv4 or IPv6 CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8` or `2001:db8::/32`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = s.split_once('/')?;
        let network: IpAddr = ip.parse().ok()?;
        let prefix: u8 = len.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.network, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A rule's action (the last one of a rule's list is the one that answers; authentication
/// actions are not supported).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Forward(Forward),
    Redirect(Redirect),
    FixedResponse(FixedResponse),
}

/// `forward`: one target group, or several weighted ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    /// `(target group ARN, weight 0..=999)`.
    pub target_groups: Vec<(String, u32)>,
    /// Target-group stickiness (`ForwardConfig.TargetGroupStickinessConfig`): how long a client
    /// stays with the group it was sent to (the `AWSALBTG` cookie).
    pub stickiness: Option<Duration>,
}

/// `redirect`: each part may hold `#{protocol}`, `#{host}`, `#{port}`, `#{path}`, `#{query}`.
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
    pub permanent: bool,
}

impl Default for Redirect {
    fn default() -> Self {
        Redirect {
            protocol: "#{protocol}".into(),
            host: "#{host}".into(),
            port: "#{port}".into(),
            path: "/#{path}".into(),
            query: "#{query}".into(),
            permanent: false,
        }
    }
}

/// `fixed-response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Option<String>,
}

/// A target group.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetGroup {
    pub arn: String,
    /// HTTP, HTTPS, TCP, TLS (how the data plane talks to the targets).
    pub protocol: Protocol,
    /// `HTTP1` or `HTTP2` (h2c to plaintext targets): what an ALB speaks to the targets.
    pub http2: bool,
    pub health_check: HealthCheck,
    pub targets: Vec<Target>,
    pub algorithm: Algorithm,
    /// `deregistration_delay.timeout_seconds` (300 by default).
    pub deregistration_delay: Duration,
    /// `slow_start.duration_seconds` (0: off).
    pub slow_start: Duration,
    pub stickiness: Option<Stickiness>,
}

impl TargetGroup {
    /// A group with ELB's defaults for the protocol and no targets.
    pub fn new(arn: &str, protocol: Protocol) -> Self {
        TargetGroup {
            arn: arn.to_string(),
            protocol,
            http2: false,
            health_check: HealthCheck::defaults(protocol),
            targets: Vec::new(),
            algorithm: Algorithm::RoundRobin,
            deregistration_delay: Duration::from_secs(300),
            slow_start: Duration::ZERO,
            stickiness: None,
        }
    }
}

/// A registered target: its ELB identity (an IP address or an instance ID, and the port) and
/// where the data plane reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub id: String,
    pub port: u16,
    pub address: SocketAddr,
    /// Deregistered by the API, which keeps it listed while it drains: no new requests, and
    /// it is drained when nothing is in flight or at this time (epoch ms), whichever is first.
    /// A target simply left out of the configuration drains for the group's delay.
    pub draining_until_ms: Option<i64>,
}

impl Target {
    /// An `ip` target: its ID is its address.
    pub fn ip(address: SocketAddr) -> Self {
        Target { id: address.ip().to_string(), port: address.port(), address, draining_until_ms: None }
    }

    /// The same target (ID, port, address), whatever its draining.
    pub fn same(&self, other: &Target) -> bool {
        self.id == other.id && self.port == other.port && self.address == other.address
    }
}

/// `load_balancing.algorithm.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastOutstandingRequests,
}

/// `stickiness.type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stickiness {
    /// `lb_cookie`: the `AWSALB` cookie, valid for the duration.
    LbCookie { duration: Duration },
    /// `app_cookie`: the target's own cookie; ALB adds `AWSALBAPP-0` beside it.
    AppCookie { cookie_name: String, duration: Duration },
    /// NLB's `source_ip`.
    SourceIp,
}

/// A target group's health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub enabled: bool,
    pub protocol: Protocol,
    /// `None`: the traffic port.
    pub port: Option<u16>,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// `Matcher.HttpCode`: `200`, `200,202`, `200-299`.
    pub matcher: String,
}

impl HealthCheck {
    /// ELB's defaults: HTTP every 30 s, 5 s timeout, 5 to be healthy, 2 to be unhealthy, `/`, 200
    /// (an NLB's TCP check: every 30 s, 10 s timeout, 5 and 2).
    pub fn defaults(protocol: Protocol) -> Self {
        let tcp = matches!(protocol, Protocol::Tcp | Protocol::Tls);
        HealthCheck {
            enabled: true,
            protocol: if tcp { Protocol::Tcp } else { protocol },
            port: None,
            path: "/".into(),
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(if tcp { 10 } else { 5 }),
            healthy_threshold: 5,
            unhealthy_threshold: 2,
            matcher: "200".into(),
        }
    }
}
