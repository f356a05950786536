//! The data plane's configuration (`gantry_ports::lb::LbConfig`), derived from ELBv2's records.
//!
//! [`build`] reads every scope that has a load balancer or a target group (found through the
//! `/_elasticloadbalancing/resource/` index rows) and turns the records into the port's plain
//! types, ELB's defaults already applied. [`ConfigFeed`] keeps one current: it follows the
//! store's watch, rebuilds after every batch of ELBv2 changes, and publishes each new
//! configuration (stamped with the store revision it was built at) on a `tokio::sync::watch`
//! channel that the data plane reads.

use crate::keys;
use crate::listeners::rules_of;
use crate::load_balancers::forwarded_by;
use crate::records::{LbRecord, ListenerRecord, TargetRecord, TgRecord};
use gantry_core::Scope;
use gantry_model::elbv2::{Action as WireAction, RuleCondition};
use gantry_ports::lb::*;
use gantry_runtime::records::{RecordError, load_prefix};
use gantry_runtime::{Change, WatchCursor};
use gantry_store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::watch;

/// Every scope with an ELBv2 resource.
fn scopes(store: &dyn Store) -> Vec<Scope> {
    let prefix = format!("{}resource/", keys::UNSCOPED);
    let mut out: BTreeSet<(String, String)> = BTreeSet::new();
    store.visit(&prefix, &mut |kv| {
        let mut it = kv.key[prefix.len()..].splitn(3, '/');
        if let (Some(a), Some(r)) = (it.next(), it.next()) {
            out.insert((a.to_string(), r.to_string()));
        }
    });
    out.into_iter().map(|(a, r)| Scope::new(a, r)).collect()
}

/// The configuration the records say, at the store's current revision.
pub fn build(
    store: &dyn Store,
    certificates: &dyn CertificateSource,
    instances: &dyn InstanceAddresses,
) -> Result<LbConfig, RecordError> {
    let revision = store.revision();
    let mut config = LbConfig { revision, ..Default::default() };
    for scope in scopes(store) {
        let lbs: Vec<LbRecord> =
            load_prefix(store, &keys::lb_prefix(&scope))?.into_iter().map(|s| s.value).collect();
        let tgs: Vec<TgRecord> =
            load_prefix(store, &keys::tg_prefix(&scope))?.into_iter().map(|s| s.value).collect();
        let mut usage: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for lb in &lbs {
            for tg in forwarded_by(lb) {
                usage.entry(tg).or_default().push(lb.arn().to_string());
            }
            config.load_balancers.push(load_balancer(lb, certificates));
        }
        // Instance targets connect to their container instance's host address (read once per
        // scope, and only when a group has instance targets).
        let mut addresses = None;
        for tg in &tgs {
            let targets: Vec<TargetRecord> = load_prefix(store, &keys::targets_of(&scope, tg.name()))?
                .into_iter()
                .map(|s| s.value)
                .collect();
            let ip = tg.tg.target_type.as_deref() == Some("ip");
            let addresses = match ip || targets.is_empty() {
                true => None,
                false => Some(&*addresses.get_or_insert_with(|| instances.addresses(&scope))),
            };
            config.target_groups.push(target_group(
                tg,
                usage.remove(tg.arn()).unwrap_or_default(),
                &targets,
                addresses,
            ));
        }
    }
    config.load_balancers.sort_by(|a, b| a.arn.cmp(&b.arn));
    config.target_groups.sort_by(|a, b| a.arn.cmp(&b.arn));
    Ok(config)
}

fn flag(m: &BTreeMap<String, String>, k: &str) -> bool {
    m.get(k).map(String::as_str) == Some("true")
}

fn number(m: &BTreeMap<String, String>, k: &str, default: u32) -> u32 {
    m.get(k).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn load_balancer(lb: &LbRecord, certificates: &dyn CertificateSource) -> LoadBalancer {
    let a = &lb.attributes;
    let state = lb.state().unwrap_or(LbState::Provisioning);
    let mut listeners: Vec<Listener> = lb.listeners.iter().map(|l| listener(l, certificates)).collect();
    listeners.sort_by_key(|l| l.port);
    LoadBalancer {
        arn: lb.arn().to_string(),
        name: lb.name().to_string(),
        lb_type: if lb.is_network() { LbType::Network } else { LbType::Application },
        dns_name: lb.lb.dns_name.clone().unwrap_or_default(),
        internet_facing: lb.lb.scheme.as_deref() != Some("internal"),
        state,
        attributes: LbAttributes {
            idle_timeout_seconds: number(a, "idle_timeout.timeout_seconds", 60),
            client_keep_alive_seconds: number(a, "client_keep_alive.seconds", 3600),
            http2_enabled: a.get("routing.http2.enabled").map(String::as_str) != Some("false"),
            drop_invalid_header_fields: flag(a, "routing.http.drop_invalid_header_fields.enabled"),
            xff_header_processing: match a.get("routing.http.xff_header_processing.mode").map(String::as_str)
            {
                Some("preserve") => XffMode::Preserve,
                Some("remove") => XffMode::Remove,
                _ => XffMode::Append,
            },
            xff_client_port: flag(a, "routing.http.xff_client_port.enabled"),
            preserve_host_header: flag(a, "routing.http.preserve_host_header.enabled"),
            tls_version_and_cipher_headers: flag(
                a,
                "routing.http.x_amzn_tls_version_and_cipher_suite.enabled",
            ),
            cross_zone: !lb.is_network() || flag(a, "load_balancing.cross_zone.enabled"),
            deletion_protection: flag(a, "deletion_protection.enabled"),
        },
        listeners,
    }
}

fn listener(l: &ListenerRecord, certificates: &dyn CertificateSource) -> Listener {
    let protocol = match l.listener.protocol.as_deref() {
        Some("HTTPS") => ListenerProtocol::Https,
        Some("TCP") => ListenerProtocol::Tcp,
        Some("TLS") => ListenerProtocol::Tls,
        _ => ListenerProtocol::Http,
    };
    let arns = l
        .listener
        .certificates
        .iter()
        .flatten()
        .filter_map(|c| c.certificate_arn.clone())
        .chain(l.extra_certificates.iter().cloned());
    Listener {
        arn: l.arn().to_string(),
        port: l.listener.port.unwrap_or_default() as u16,
        protocol,
        // A certificate deleted from ACM meanwhile is left out (ACM refuses to delete one in use).
        certificates: arns.filter_map(|a| certificates.certificate(&a)).collect(),
        ssl_policy: l.listener.ssl_policy.clone(),
        alpn_policy: l.listener.alpn_policy.as_ref().and_then(|a| a.first().cloned()),
        rules: rules_of(l)
            .into_iter()
            .map(|r| Rule {
                arn: r.rule_arn.clone().unwrap_or_default(),
                priority: r.priority.as_deref().and_then(|p| p.parse().ok()),
                conditions: r.conditions.iter().flatten().filter_map(condition).collect(),
                action: action(r.actions.as_deref().unwrap_or_default()),
            })
            .collect(),
        attributes: ListenerAttributes {
            tcp_idle_timeout_seconds: number(&l.attributes, "tcp.idle_timeout.seconds", 350),
        },
    }
}

fn condition(c: &RuleCondition) -> Option<Condition> {
    let values = |v: Option<&Vec<String>>| v.cloned().unwrap_or_default();
    Some(match c.field.as_deref()? {
        "path-pattern" => Condition::PathPattern(values(
            c.path_pattern_config.as_ref().and_then(|p| p.values.as_ref()).or(c.values.as_ref()),
        )),
        "host-header" => Condition::HostHeader(values(
            c.host_header_config.as_ref().and_then(|p| p.values.as_ref()).or(c.values.as_ref()),
        )),
        "http-header" => {
            let h = c.http_header_config.as_ref()?;
            Condition::HttpHeader { name: h.http_header_name.clone()?, values: values(h.values.as_ref()) }
        }
        "http-request-method" => {
            Condition::HttpRequestMethod(values(c.http_request_method_config.as_ref()?.values.as_ref()))
        }
        "query-string" => Condition::QueryString(
            c.query_string_config
                .as_ref()?
                .values
                .iter()
                .flatten()
                .map(|p| QueryPair { key: p.key.clone(), value: p.value.clone().unwrap_or_default() })
                .collect(),
        ),
        "source-ip" => Condition::SourceIp(
            c.source_ip_config
                .as_ref()?
                .values
                .iter()
                .flatten()
                .filter_map(|v| crate::validate::parse_cidr(v))
                .map(|(addr, prefix_len)| Cidr { addr, prefix_len })
                .collect(),
        ),
        _ => return None,
    })
}

fn action(actions: &[WireAction]) -> Action {
    let Some(a) = actions.first() else {
        return Action::FixedResponse(FixedResponse {
            status_code: 503,
            content_type: None,
            message_body: None,
        });
    };
    if let Some(r) = &a.redirect_config {
        return Action::Redirect(Redirect {
            protocol: r.protocol.clone().unwrap_or_else(|| "#{protocol}".into()),
            host: r.host.clone().unwrap_or_else(|| "#{host}".into()),
            port: r.port.clone().unwrap_or_else(|| "#{port}".into()),
            path: r.path.clone().unwrap_or_else(|| "/#{path}".into()),
            query: r.query.clone().unwrap_or_else(|| "#{query}".into()),
            status_code: if r.status_code == "HTTP_301" { 301 } else { 302 },
        });
    }
    if let Some(f) = &a.fixed_response_config {
        return Action::FixedResponse(FixedResponse {
            status_code: f.status_code.parse().unwrap_or(503),
            content_type: f.content_type.clone(),
            message_body: f.message_body.clone(),
        });
    }
    let fc = a.forward_config.as_ref();
    let groups = fc.and_then(|f| f.target_groups.clone()).unwrap_or_default();
    let stickiness = fc
        .and_then(|f| f.target_group_stickiness_config.as_ref())
        .filter(|s| s.enabled == Some(true))
        .and_then(|s| s.duration_seconds)
        .map(|d| d as u32);
    Action::Forward(Forward {
        target_groups: groups
            .into_iter()
            .map(|g| WeightedTargetGroup {
                arn: g.target_group_arn.unwrap_or_default(),
                weight: g.weight.unwrap_or(1).max(0) as u32,
            })
            .collect(),
        stickiness_seconds: stickiness,
    })
}

fn target_protocol(p: &str) -> TargetProtocol {
    match p {
        "HTTPS" => TargetProtocol::Https,
        "TCP" => TargetProtocol::Tcp,
        "TLS" => TargetProtocol::Tls,
        "UDP" => TargetProtocol::Udp,
        "TCP_UDP" => TargetProtocol::TcpUdp,
        _ => TargetProtocol::Http,
    }
}

/// A target group for the data plane; `addresses` (instance groups) by EC2 instance ID.
fn target_group(
    tg: &TgRecord,
    load_balancer_arns: Vec<String>,
    targets: &[TargetRecord],
    addresses: Option<&std::collections::HashMap<String, std::net::IpAddr>>,
) -> TargetGroup {
    let t = &tg.tg;
    let a = &tg.attributes;
    let ip = t.target_type.as_deref() == Some("ip");
    let stickiness =
        flag(a, "stickiness.enabled").then(|| match a.get("stickiness.type").map(String::as_str) {
            Some("app_cookie") => Stickiness::AppCookie {
                cookie_name: a.get("stickiness.app_cookie.cookie_name").cloned().unwrap_or_default(),
                duration_seconds: number(a, "stickiness.app_cookie.duration_seconds", 86400),
            },
            Some("source_ip") => Stickiness::SourceIp,
            _ => Stickiness::LbCookie {
                duration_seconds: number(a, "stickiness.lb_cookie.duration_seconds", 86400),
            },
        });
    TargetGroup {
        arn: tg.arn().to_string(),
        name: tg.name().to_string(),
        protocol: target_protocol(t.protocol.as_deref().unwrap_or_default()),
        protocol_version: t.protocol_version.clone(),
        port: t.port.unwrap_or_default() as u16,
        target_type: if ip { TargetType::Ip } else { TargetType::Instance },
        health_check: HealthCheck {
            enabled: t.health_check_enabled != Some(false),
            protocol: target_protocol(t.health_check_protocol.as_deref().unwrap_or_default()),
            port: t.health_check_port.as_deref().and_then(|p| p.parse().ok()),
            path: t.health_check_path.clone(),
            interval_seconds: t.health_check_interval_seconds.unwrap_or(30) as u32,
            timeout_seconds: t.health_check_timeout_seconds.unwrap_or(5) as u32,
            healthy_threshold: t.healthy_threshold_count.unwrap_or(5) as u32,
            unhealthy_threshold: t.unhealthy_threshold_count.unwrap_or(2) as u32,
            matcher_http_code: t.matcher.as_ref().and_then(|m| m.http_code.clone()),
        },
        attributes: TargetGroupAttributes {
            deregistration_delay_seconds: number(a, "deregistration_delay.timeout_seconds", 300),
            slow_start_seconds: number(a, "slow_start.duration_seconds", 0),
            stickiness,
            algorithm: match a.get("load_balancing.algorithm.type").map(String::as_str) {
                Some("least_outstanding_requests") => Algorithm::LeastOutstandingRequests,
                _ => Algorithm::RoundRobin,
            },
            connection_termination: flag(a, "deregistration_delay.connection_termination.enabled"),
        },
        load_balancer_arns,
        targets: targets
            .iter()
            .map(|r| Target {
                id: r.id.clone(),
                port: r.port as u16,
                address: if ip { r.id.parse().ok() } else { addresses.and_then(|a| a.get(&r.id).copied()) },
                availability_zone: r.availability_zone.clone(),
                registered_at_ms: r.registered_at_ms,
                draining: r.draining.map(|d| Draining { since_ms: d.since_ms, deadline_ms: d.deadline_ms }),
            })
            .collect(),
    }
}

/// Keeps the data plane's configuration current with the store.
pub struct ConfigFeed {
    store: Arc<dyn Store>,
    certificates: Arc<dyn CertificateSource>,
    instances: Arc<dyn InstanceAddresses>,
    tx: watch::Sender<Arc<LbConfig>>,
}

impl ConfigFeed {
    /// A feed and the receiver the data plane reads (it holds the empty configuration until
    /// [`ConfigFeed::run`] has built the first).
    pub fn new(
        store: Arc<dyn Store>,
        certificates: Arc<dyn CertificateSource>,
        instances: Arc<dyn InstanceAddresses>,
    ) -> (Self, watch::Receiver<Arc<LbConfig>>) {
        let (tx, rx) = watch::channel(Arc::new(LbConfig::default()));
        (ConfigFeed { store, certificates, instances, tx }, rx)
    }

    /// Builds the configuration now and publishes it if it differs from the last or is of a
    /// later revision. (A configuration is stamped with the revision read before its records,
    /// so it may already hold later writes; the rebuild those writes trigger then finds the
    /// same content, and must still publish its revision, or a receiver waiting for that
    /// revision would wait forever.)
    pub fn refresh(&self) {
        match build(self.store.as_ref(), self.certificates.as_ref(), self.instances.as_ref()) {
            Ok(c) => {
                self.tx.send_if_modified(|cur| {
                    let changed = cur.load_balancers != c.load_balancers
                        || cur.target_groups != c.target_groups
                        || c.revision > cur.revision;
                    if changed {
                        *cur = Arc::new(c);
                    }
                    changed
                });
            }
            Err(e) => tracing::error!(error = %e, "the load balancer configuration could not be built"),
        }
    }

    /// Whether a change to `key` may change the configuration: ELBv2's keys, and the container
    /// instances that instance targets are reached through.
    fn concerns(&self, key: &str) -> bool {
        keys::owns(key) || self.instances.affects(key)
    }

    /// Follows the store until the receivers are gone or `shutdown` fires: after every batch of
    /// changes to ELBv2's keys (and after the watch restarts), the configuration is rebuilt.
    pub async fn run(self, mut shutdown: gantry_runtime::Shutdown) {
        let mut cursor = WatchCursor::new(self.store.clone(), "/", None);
        loop {
            let change = tokio::select! {
                _ = shutdown.wait() => return,
                _ = self.tx.closed() => return,
                c = cursor.next() => c,
            };
            let mut dirty = match change {
                Ok(Change::Relist) => true,
                Ok(Change::Event(e)) => self.concerns(&e.kv.key),
                Err(e) => {
                    tracing::warn!(error = %e, "the load balancer configuration's watch failed; it restarts");
                    true
                }
            };
            // Everything already committed goes into the same rebuild.
            while let Some(c) = cursor.try_next() {
                dirty |= match c {
                    Ok(Change::Relist) | Err(_) => true,
                    Ok(Change::Event(e)) => self.concerns(&e.kv.key),
                };
            }
            if dirty {
                self.refresh();
            }
        }
    }
}
