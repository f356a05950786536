//! The ELBv2 API's side: its configuration (`gantry_ports::lb::LbConfig`) turned into the data
//! plane's, and the data plane's health checks answered through `TargetHealthSource`.

use crate::LoadBalancer;
use crate::config::{
    self, Action, Certificate, Cidr, Condition, Config, HealthCheck, Listener, Protocol, Rule,
};
use crate::health::{Health, Reason, State};
use gantry_ports::lb as port;
use std::net::SocketAddr;
use std::time::Duration;

impl Config {
    /// The data plane's configuration for what the API says. Load balancers that are not
    /// `active` yet serve nothing; `instance` targets without an address yet are left out;
    /// UDP target groups (and their listeners' rules) are not served.
    pub fn from_ports(lb: &port::LbConfig) -> Config {
        let mut out = Config::default();
        for b in &lb.load_balancers {
            if matches!(b.state, port::LbState::Provisioning | port::LbState::Failed) {
                continue;
            }
            for l in &b.listeners {
                out.listeners.push(listener(b, l));
            }
        }
        out.target_groups = lb.target_groups.iter().filter_map(target_group).collect();
        out
    }
}

fn listener(b: &port::LoadBalancer, l: &port::Listener) -> Listener {
    let protocol = match l.protocol {
        port::ListenerProtocol::Http => Protocol::Http,
        port::ListenerProtocol::Https => Protocol::Https,
        port::ListenerProtocol::Tcp => Protocol::Tcp,
        port::ListenerProtocol::Tls => Protocol::Tls,
    };
    let mut out = Listener::new(&l.arn, &b.arn, l.port, protocol);
    out.idle_timeout = Duration::from_secs(u64::from(b.attributes.idle_timeout_seconds));
    out.http2 = b.attributes.http2_enabled;
    out.xff = b.attributes.xff_header_processing;
    out.certificates = l
        .certificates
        .iter()
        .map(|c| Certificate {
            arn: c.arn.clone(),
            chain_pem: c.chain_pem.clone(),
            private_key_pem: c.private_key_pem.expose().to_string(),
        })
        .collect();
    for r in &l.rules {
        let actions = vec![action(&r.action)];
        match r.priority {
            None => out.default_actions = actions,
            Some(priority) => out.rules.push(Rule {
                arn: r.arn.clone(),
                priority,
                conditions: r.conditions.iter().map(condition).collect(),
                actions,
            }),
        }
    }
    out
}

fn condition(c: &port::Condition) -> Condition {
    match c {
        port::Condition::PathPattern(v) => Condition::PathPattern(v.clone()),
        port::Condition::HostHeader(v) => Condition::HostHeader(v.clone()),
        port::Condition::HttpHeader { name, values } => {
            Condition::HttpHeader { name: name.clone(), values: values.clone() }
        }
        port::Condition::HttpRequestMethod(v) => Condition::HttpRequestMethod(v.clone()),
        port::Condition::QueryString(pairs) => {
            Condition::QueryString(pairs.iter().map(|p| (p.key.clone(), p.value.clone())).collect())
        }
        port::Condition::SourceIp(cidrs) => Condition::SourceIp(
            cidrs.iter().map(|c| Cidr { network: c.addr, prefix: c.prefix_len }).collect(),
        ),
    }
}

fn action(a: &port::Action) -> Action {
    match a {
        port::Action::Forward(f) => Action::Forward(config::Forward {
            target_groups: f.target_groups.iter().map(|w| (w.arn.clone(), w.weight)).collect(),
            stickiness: f.stickiness_seconds.map(|s| Duration::from_secs(u64::from(s))),
        }),
        port::Action::Redirect(r) => Action::Redirect(config::Redirect {
            protocol: r.protocol.clone(),
            host: r.host.clone(),
            port: r.port.clone(),
            path: r.path.clone(),
            query: r.query.clone(),
            permanent: r.status_code == 301,
        }),
        port::Action::FixedResponse(f) => Action::FixedResponse(config::FixedResponse {
            status: f.status_code,
            content_type: f.content_type.clone(),
            body: f.message_body.clone(),
        }),
    }
}

fn protocol(p: port::TargetProtocol) -> Option<Protocol> {
    match p {
        port::TargetProtocol::Http => Some(Protocol::Http),
        port::TargetProtocol::Https => Some(Protocol::Https),
        port::TargetProtocol::Tcp => Some(Protocol::Tcp),
        port::TargetProtocol::Tls => Some(Protocol::Tls),
        port::TargetProtocol::Udp | port::TargetProtocol::TcpUdp => None,
    }
}

fn target_group(tg: &port::TargetGroup) -> Option<config::TargetGroup> {
    let proto = protocol(tg.protocol)?;
    let hc = &tg.health_check;
    let mut out = config::TargetGroup::new(&tg.arn, proto);
    out.http2 = tg.protocol_version.as_deref().is_some_and(|v| v == "HTTP2" || v == "GRPC");
    out.health_check = HealthCheck {
        enabled: hc.enabled,
        protocol: protocol(hc.protocol).unwrap_or(Protocol::Tcp),
        port: hc.port,
        path: hc.path.clone().unwrap_or_else(|| "/".into()),
        interval: Duration::from_secs(u64::from(hc.interval_seconds)),
        timeout: Duration::from_secs(u64::from(hc.timeout_seconds)),
        healthy_threshold: hc.healthy_threshold,
        unhealthy_threshold: hc.unhealthy_threshold,
        matcher: hc.matcher_http_code.clone().unwrap_or_else(|| "200".into()),
    };
    let a = &tg.attributes;
    out.deregistration_delay = Duration::from_secs(u64::from(a.deregistration_delay_seconds));
    out.slow_start = Duration::from_secs(u64::from(a.slow_start_seconds));
    out.algorithm = match a.algorithm {
        port::Algorithm::RoundRobin => config::Algorithm::RoundRobin,
        port::Algorithm::LeastOutstandingRequests => config::Algorithm::LeastOutstandingRequests,
    };
    out.stickiness = a.stickiness.as_ref().map(|s| match s {
        port::Stickiness::LbCookie { duration_seconds } => {
            config::Stickiness::LbCookie { duration: Duration::from_secs(u64::from(*duration_seconds)) }
        }
        port::Stickiness::AppCookie { cookie_name, duration_seconds } => config::Stickiness::AppCookie {
            cookie_name: cookie_name.clone(),
            duration: Duration::from_secs(u64::from(*duration_seconds)),
        },
        port::Stickiness::SourceIp => config::Stickiness::SourceIp,
    });
    out.targets = tg
        .targets
        .iter()
        .filter_map(|t| {
            Some(config::Target {
                id: t.id.clone(),
                port: t.port,
                address: SocketAddr::new(t.address?, t.port),
                draining_until_ms: t.draining.map(|d| d.deadline_ms),
            })
        })
        .collect();
    Some(out)
}

fn state(s: State) -> port::TargetState {
    match s {
        State::Initial => port::TargetState::Initial,
        State::Healthy => port::TargetState::Healthy,
        State::Unhealthy => port::TargetState::Unhealthy,
        State::Unused => port::TargetState::Unused,
        State::Draining => port::TargetState::Draining,
        State::Unavailable => port::TargetState::Unavailable,
    }
}

fn reason(r: Reason) -> port::TargetReason {
    match r {
        Reason::RegistrationInProgress => port::TargetReason::ElbRegistrationInProgress,
        Reason::InitialHealthChecking => port::TargetReason::ElbInitialHealthChecking,
        Reason::ResponseCodeMismatch => port::TargetReason::TargetResponseCodeMismatch,
        Reason::Timeout => port::TargetReason::TargetTimeout,
        Reason::FailedHealthChecks => port::TargetReason::TargetFailedHealthChecks,
        Reason::NotRegistered => port::TargetReason::TargetNotRegistered,
        Reason::NotInUse => port::TargetReason::TargetNotInUse,
        Reason::DeregistrationInProgress => port::TargetReason::TargetDeregistrationInProgress,
        Reason::HealthCheckDisabled => port::TargetReason::TargetHealthCheckDisabled,
    }
}

fn observed(h: Health) -> port::ObservedHealth {
    port::ObservedHealth { state: state(h.state), reason: h.reason.map(reason), description: h.description }
}

impl port::TargetHealthSource for LoadBalancer {
    fn health(&self, target_group_arn: &str, id: &str, port: u16) -> Option<port::ObservedHealth> {
        self.group(target_group_arn)?.health_of(id, port).map(observed)
    }

    fn drained(&self, target_group_arn: &str, id: &str, port: u16) -> bool {
        self.group(target_group_arn).is_none_or(|g| g.drained(id, port))
    }
}
