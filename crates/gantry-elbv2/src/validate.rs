//! ELBv2's rules for what a request may say, pure: names, tags, attributes with their defaults,
//! health-check defaults per protocol, rule conditions and actions. Each function returns the
//! normalized value ELBv2 stores and describes, or ELB's error naming the bad value.

use gantry_core::ServiceError;
use gantry_model::elbv2::{
    Action, FixedResponseActionConfig, ForwardActionConfig, HostHeaderConditionConfig,
    HttpHeaderConditionConfig, HttpRequestMethodConditionConfig, PathPatternConditionConfig,
    QueryStringConditionConfig, RedirectActionConfig, RuleCondition, SourceIpConditionConfig, Tag,
    TargetGroupStickinessConfig, TargetGroupTuple,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub fn validation(msg: impl Into<String>) -> ServiceError {
    ServiceError::sender("ValidationError", msg)
}

/// Load balancer and target group names: 1-32 alphanumerics and hyphens, no hyphen at either
/// end; a load balancer's may not start with `internal-`.
pub fn name(kind: &str, name: &str) -> Result<(), ServiceError> {
    if name.is_empty() {
        return Err(validation(format!("The {kind} name cannot be empty")));
    }
    if name.len() > 32 {
        return Err(validation(format!("The {kind} name '{name}' cannot be longer than '32' characters")));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(validation(format!(
            "The {kind} name '{name}' can only contain characters that are alphanumeric characters and hyphens(-)"
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(validation(format!("The {kind} name '{name}' cannot begin or end with a hyphen")));
    }
    if kind == "load balancer" && name.starts_with("internal-") {
        return Err(validation(format!("The load balancer name '{name}' cannot begin with 'internal-'")));
    }
    Ok(())
}

/// Tags of a request: keys 1-128 characters, not `aws:`, values up to 256, no key twice.
pub fn tags(tags: &[Tag]) -> Result<(), ServiceError> {
    let mut seen = std::collections::BTreeSet::new();
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(validation(format!("Tag key '{}' must be between 1 and 128 characters long", t.key)));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(validation(format!(
                "Tag key '{}' cannot start with the reserved prefix 'aws:'",
                t.key
            )));
        }
        if t.value.as_deref().unwrap_or_default().chars().count() > 256 {
            return Err(validation(format!(
                "The value of tag '{}' cannot be longer than 256 characters",
                t.key
            )));
        }
        if !seen.insert(t.key.as_str()) {
            return Err(ServiceError::sender(
                "DuplicateTagKeys",
                format!("Tag key '{}' is duplicated", t.key),
            ));
        }
    }
    Ok(())
}

/// Merges `add` into `existing` (a key given again takes the new value), within 50 tags.
pub fn merge_tags(existing: &mut Vec<Tag>, add: &[Tag], arn: &str) -> Result<(), ServiceError> {
    for t in add {
        match existing.iter_mut().find(|e| e.key == t.key) {
            Some(e) => e.value = t.value.clone(),
            None => existing.push(t.clone()),
        }
    }
    if existing.len() > 50 {
        return Err(ServiceError::sender(
            "TooManyTags",
            format!("The resource '{arn}' cannot have more than 50 tags"),
        ));
    }
    Ok(())
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ServiceError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(attr_value(key, v)),
    }
}

fn parse_range(key: &str, v: &str, lo: i64, hi: i64) -> Result<i64, ServiceError> {
    match v.parse::<i64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(validation(format!(
            "'{v}' is not a valid value for '{key}': it must be an integer from {lo} to {hi}"
        ))),
    }
}

fn attr_value(key: &str, v: &str) -> ServiceError {
    validation(format!("Attribute value '{v}' is not valid for attribute key '{key}'"))
}

fn one_of(key: &str, v: &str, allowed: &[&str]) -> Result<(), ServiceError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(validation(format!(
            "'{v}' is not a valid value for '{key}': it must be one of {}",
            allowed.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ")
        )))
    }
}

fn free_text(_key: &str, _v: &str) -> Result<(), ServiceError> {
    Ok(())
}

type Check = fn(&str, &str) -> Result<(), ServiceError>;

fn check_bool(k: &str, v: &str) -> Result<(), ServiceError> {
    parse_bool(k, v).map(|_| ())
}

/// A load balancer's attributes as ELB describes a new one of its type.
pub fn lb_attribute_defaults(lb_type: &str) -> BTreeMap<String, String> {
    lb_attribute_table(lb_type).iter().map(|(k, v, _)| (k.to_string(), v.to_string())).collect()
}

fn lb_attribute_table(lb_type: &str) -> &'static [(&'static str, &'static str, Check)] {
    const APPLICATION: &[(&str, &str, Check)] = &[
        ("access_logs.s3.enabled", "false", check_bool),
        ("access_logs.s3.bucket", "", free_text),
        ("access_logs.s3.prefix", "", free_text),
        ("client_keep_alive.seconds", "3600", |k, v| parse_range(k, v, 60, 604800).map(|_| ())),
        ("connection_logs.s3.enabled", "false", check_bool),
        ("connection_logs.s3.bucket", "", free_text),
        ("connection_logs.s3.prefix", "", free_text),
        ("deletion_protection.enabled", "false", check_bool),
        ("health_check_logs.s3.enabled", "false", check_bool),
        ("health_check_logs.s3.bucket", "", free_text),
        ("health_check_logs.s3.prefix", "", free_text),
        ("idle_timeout.timeout_seconds", "60", |k, v| parse_range(k, v, 1, 4000).map(|_| ())),
        ("load_balancing.cross_zone.enabled", "true", check_bool),
        ("routing.http.desync_mitigation_mode", "defensive", |k, v| {
            one_of(k, v, &["monitor", "defensive", "strictest"])
        }),
        ("routing.http.drop_invalid_header_fields.enabled", "false", check_bool),
        ("routing.http.preserve_host_header.enabled", "false", check_bool),
        ("routing.http.x_amzn_tls_version_and_cipher_suite.enabled", "false", check_bool),
        ("routing.http.xff_client_port.enabled", "false", check_bool),
        ("routing.http.xff_header_processing.mode", "append", |k, v| {
            one_of(k, v, &["append", "preserve", "remove"])
        }),
        ("routing.http2.enabled", "true", check_bool),
        ("waf.fail_open.enabled", "false", check_bool),
        ("zonal_shift.config.enabled", "false", check_bool),
    ];
    const NETWORK: &[(&str, &str, Check)] = &[
        ("access_logs.s3.enabled", "false", check_bool),
        ("access_logs.s3.bucket", "", free_text),
        ("access_logs.s3.prefix", "", free_text),
        ("deletion_protection.enabled", "false", check_bool),
        ("dns_record.client_routing_policy", "any_availability_zone", |k, v| {
            one_of(
                k,
                v,
                &[
                    "availability_zone_affinity",
                    "partial_availability_zone_affinity",
                    "any_availability_zone",
                ],
            )
        }),
        ("load_balancing.cross_zone.enabled", "false", check_bool),
        ("zonal_shift.config.enabled", "false", check_bool),
    ];
    if lb_type == "network" { NETWORK } else { APPLICATION }
}

/// Applies ModifyLoadBalancerAttributes' changes to `current`.
pub fn modify_attributes(
    what: &str,
    table: &[(&str, &str, Check)],
    current: &mut BTreeMap<String, String>,
    changes: &[(String, String)],
) -> Result<(), ServiceError> {
    if changes.is_empty() {
        return Err(validation("At least one attribute must be specified"));
    }
    for (k, v) in changes {
        let Some((_, _, check)) = table.iter().find(|(name, _, _)| name == k) else {
            return Err(validation(format!("{what} attribute key '{k}' is not recognized")));
        };
        check(k, v)?;
        current.insert(k.clone(), v.clone());
    }
    Ok(())
}

pub fn modify_lb_attributes(
    lb_type: &str,
    current: &mut BTreeMap<String, String>,
    changes: &[(String, String)],
) -> Result<(), ServiceError> {
    modify_attributes("Load balancer", lb_attribute_table(lb_type), current, changes)
}

/// A listener's attributes as ELB describes a new one of its protocol.
pub fn listener_attribute_defaults(protocol: &str) -> BTreeMap<String, String> {
    listener_attribute_table(protocol).iter().map(|(k, v, _)| (k.to_string(), v.to_string())).collect()
}

fn listener_attribute_table(protocol: &str) -> &'static [(&'static str, &'static str, Check)] {
    const HTTP: &[(&str, &str, Check)] = &[
        ("routing.http.response.server.enabled", "true", check_bool),
        ("routing.http.response.strict_transport_security.header_value", "", free_text),
        ("routing.http.response.access_control_allow_origin.header_value", "", free_text),
        ("routing.http.response.access_control_allow_methods.header_value", "", free_text),
        ("routing.http.response.access_control_allow_headers.header_value", "", free_text),
        ("routing.http.response.access_control_allow_credentials.header_value", "", free_text),
        ("routing.http.response.access_control_expose_headers.header_value", "", free_text),
        ("routing.http.response.access_control_max_age.header_value", "", free_text),
        ("routing.http.response.content_security_policy.header_value", "", free_text),
        ("routing.http.response.x_content_type_options.header_value", "", free_text),
        ("routing.http.response.x_frame_options.header_value", "", free_text),
    ];
    const HTTPS: &[(&str, &str, Check)] = &[
        (
            "routing.http.request.x_amzn_mtls_clientcert_serial_number.header_name",
            "X-Amzn-Mtls-Clientcert-Serial-Number",
            free_text,
        ),
        (
            "routing.http.request.x_amzn_mtls_clientcert_issuer.header_name",
            "X-Amzn-Mtls-Clientcert-Issuer",
            free_text,
        ),
        (
            "routing.http.request.x_amzn_mtls_clientcert_subject.header_name",
            "X-Amzn-Mtls-Clientcert-Subject",
            free_text,
        ),
        (
            "routing.http.request.x_amzn_mtls_clientcert_validity.header_name",
            "X-Amzn-Mtls-Clientcert-Validity",
            free_text,
        ),
        (
            "routing.http.request.x_amzn_mtls_clientcert_leaf.header_name",
            "X-Amzn-Mtls-Clientcert-Leaf",
            free_text,
        ),
        ("routing.http.request.x_amzn_mtls_clientcert.header_name", "X-Amzn-Mtls-Clientcert", free_text),
        ("routing.http.request.x_amzn_tls_version.header_name", "X-Amzn-Tls-Version", free_text),
        ("routing.http.request.x_amzn_tls_cipher_suite.header_name", "X-Amzn-Tls-Cipher-Suite", free_text),
        ("routing.http.response.server.enabled", "true", check_bool),
        ("routing.http.response.strict_transport_security.header_value", "", free_text),
        ("routing.http.response.access_control_allow_origin.header_value", "", free_text),
        ("routing.http.response.access_control_allow_methods.header_value", "", free_text),
        ("routing.http.response.access_control_allow_headers.header_value", "", free_text),
        ("routing.http.response.access_control_allow_credentials.header_value", "", free_text),
        ("routing.http.response.access_control_expose_headers.header_value", "", free_text),
        ("routing.http.response.access_control_max_age.header_value", "", free_text),
        ("routing.http.response.content_security_policy.header_value", "", free_text),
        ("routing.http.response.x_content_type_options.header_value", "", free_text),
        ("routing.http.response.x_frame_options.header_value", "", free_text),
    ];
    const TCP: &[(&str, &str, Check)] =
        &[("tcp.idle_timeout.seconds", "350", |k, v| parse_range(k, v, 60, 6000).map(|_| ()))];
    match protocol {
        "HTTP" => HTTP,
        "HTTPS" => HTTPS,
        _ => TCP,
    }
}

pub fn modify_listener_attributes(
    protocol: &str,
    current: &mut BTreeMap<String, String>,
    changes: &[(String, String)],
) -> Result<(), ServiceError> {
    modify_attributes("Listener", listener_attribute_table(protocol), current, changes)
}

/// A target group's attributes as ELB describes a new one of its protocol and target type.
pub fn tg_attribute_defaults(protocol: &str, target_type: &str) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> =
        tg_attribute_table(protocol).iter().map(|(k, v, _)| (k.to_string(), v.to_string())).collect();
    if !http_family(protocol) {
        // Client IP preservation is on for instance targets, off for ip targets of TCP and TLS.
        let on = target_type == "instance" || matches!(protocol, "UDP" | "TCP_UDP");
        m.insert("preserve_client_ip.enabled".into(), on.to_string());
    }
    m
}

fn tg_attribute_table(protocol: &str) -> &'static [(&'static str, &'static str, Check)] {
    const HTTP: &[(&str, &str, Check)] = &[
        ("deregistration_delay.timeout_seconds", "300", |k, v| parse_range(k, v, 0, 3600).map(|_| ())),
        ("load_balancing.algorithm.anomaly_mitigation", "off", |k, v| one_of(k, v, &["on", "off"])),
        ("load_balancing.algorithm.type", "round_robin", |k, v| {
            one_of(k, v, &["round_robin", "least_outstanding_requests", "weighted_random"])
        }),
        ("load_balancing.cross_zone.enabled", "use_load_balancer_configuration", |k, v| {
            one_of(k, v, &["true", "false", "use_load_balancer_configuration"])
        }),
        ("slow_start.duration_seconds", "0", |k, v| {
            let n = parse_range(k, v, 0, 900)?;
            if n != 0 && n < 30 {
                return Err(validation(format!(
                    "'{v}' is not a valid value for '{k}': it must be 0 (off) or from 30 to 900"
                )));
            }
            Ok(())
        }),
        ("stickiness.app_cookie.cookie_name", "", |k, v| {
            if ["AWSALB", "AWSALBAPP", "AWSALBTG"].iter().any(|p| v.starts_with(p)) {
                return Err(validation(format!(
                    "'{v}' is not a valid value for '{k}': the prefixes AWSALB, AWSALBAPP and AWSALBTG are reserved"
                )));
            }
            Ok(())
        }),
        ("stickiness.app_cookie.duration_seconds", "86400", |k, v| parse_range(k, v, 1, 604800).map(|_| ())),
        ("stickiness.enabled", "false", check_bool),
        ("stickiness.lb_cookie.duration_seconds", "86400", |k, v| parse_range(k, v, 1, 604800).map(|_| ())),
        ("stickiness.type", "lb_cookie", |k, v| one_of(k, v, &["lb_cookie", "app_cookie"])),
        ("target_group_health.dns_failover.minimum_healthy_targets.count", "1", free_text),
        ("target_group_health.dns_failover.minimum_healthy_targets.percentage", "off", free_text),
        ("target_group_health.unhealthy_state_routing.minimum_healthy_targets.count", "1", free_text),
        ("target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage", "off", free_text),
    ];
    const TCP: &[(&str, &str, Check)] = &[
        ("deregistration_delay.connection_termination.enabled", "false", check_bool),
        ("deregistration_delay.timeout_seconds", "300", |k, v| parse_range(k, v, 0, 3600).map(|_| ())),
        ("load_balancing.cross_zone.enabled", "use_load_balancer_configuration", |k, v| {
            one_of(k, v, &["true", "false", "use_load_balancer_configuration"])
        }),
        ("preserve_client_ip.enabled", "false", check_bool),
        ("proxy_protocol_v2.enabled", "false", check_bool),
        ("stickiness.enabled", "false", check_bool),
        ("stickiness.type", "source_ip", |k, v| one_of(k, v, &["source_ip"])),
        ("target_group_health.dns_failover.minimum_healthy_targets.count", "1", free_text),
        ("target_group_health.dns_failover.minimum_healthy_targets.percentage", "off", free_text),
        ("target_group_health.unhealthy_state_routing.minimum_healthy_targets.count", "1", free_text),
        ("target_group_health.unhealthy_state_routing.minimum_healthy_targets.percentage", "off", free_text),
        ("target_health_state.unhealthy.connection_termination.enabled", "true", check_bool),
        ("target_health_state.unhealthy.draining_interval_seconds", "0", |k, v| {
            parse_range(k, v, 0, 360000).map(|_| ())
        }),
    ];
    if http_family(protocol) { HTTP } else { TCP }
}

pub fn modify_tg_attributes(
    protocol: &str,
    current: &mut BTreeMap<String, String>,
    changes: &[(String, String)],
) -> Result<(), ServiceError> {
    modify_attributes("Target group", tg_attribute_table(protocol), current, changes)?;
    let get = |k: &str| current.get(k).map(String::as_str).unwrap_or_default();
    if get("slow_start.duration_seconds") != "0"
        && get("load_balancing.algorithm.type") == "least_outstanding_requests"
    {
        return Err(validation(
            "Slow start mode cannot be enabled together with the least outstanding requests algorithm",
        ));
    }
    if get("stickiness.enabled") == "true"
        && get("stickiness.type") == "app_cookie"
        && get("stickiness.app_cookie.cookie_name").is_empty()
    {
        return Err(validation(
            "'stickiness.app_cookie.cookie_name' must be specified when the stickiness type is 'app_cookie'",
        ));
    }
    Ok(())
}

pub fn http_family(protocol: &str) -> bool {
    matches!(protocol, "HTTP" | "HTTPS")
}

/// A target group's health check, as ELB fills it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSettings {
    pub enabled: bool,
    pub protocol: String,
    pub port: String,
    pub path: Option<String>,
    pub interval: i32,
    pub timeout: i32,
    pub healthy: i32,
    pub unhealthy: i32,
    pub matcher: Option<String>,
}

/// What a request says of a health check (CreateTargetGroup's or ModifyTargetGroup's members).
#[derive(Debug, Clone, Default)]
pub struct HealthCheckRequest {
    pub enabled: Option<bool>,
    pub protocol: Option<String>,
    pub port: Option<String>,
    pub path: Option<String>,
    pub interval: Option<i32>,
    pub timeout: Option<i32>,
    pub healthy: Option<i32>,
    pub unhealthy: Option<i32>,
    pub matcher: Option<String>,
}

/// Fills in and checks a health check. `current` is the target group's present one (for
/// ModifyTargetGroup); `None` when creating, where ELB's defaults for `protocol` apply.
pub fn health_check(
    tg_protocol: &str,
    protocol_version: Option<&str>,
    current: Option<&HealthCheckSettings>,
    req: &HealthCheckRequest,
) -> Result<HealthCheckSettings, ServiceError> {
    let hc_protocol = match (&req.protocol, current) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => c.protocol.clone(),
        (None, None) if http_family(tg_protocol) => tg_protocol.to_string(),
        (None, None) => "TCP".to_string(),
    };
    one_of("HealthCheckProtocol", &hc_protocol, &["HTTP", "HTTPS", "TCP"])?;
    if http_family(tg_protocol) && hc_protocol == "TCP" {
        return Err(validation(format!(
            "Health check protocol 'TCP' is not supported for target groups with the protocol '{tg_protocol}'"
        )));
    }
    let http_check = http_family(&hc_protocol);
    let grpc = protocol_version == Some("GRPC");
    let port =
        req.port.clone().or_else(|| current.map(|c| c.port.clone())).unwrap_or_else(|| "traffic-port".into());
    if port != "traffic-port" && !matches!(port.parse::<u32>(), Ok(1..=65535)) {
        return Err(validation(format!(
            "Health check port '{port}' must be 'traffic-port' or an integer from 1 to 65535"
        )));
    }
    let protocol_changed = current.is_some_and(|c| http_family(&c.protocol) != http_check);
    let keep =
        |f: fn(&HealthCheckSettings) -> Option<String>| current.filter(|_| !protocol_changed).and_then(f);
    let path = if http_check {
        let p = req
            .path
            .clone()
            .or_else(|| keep(|c| c.path.clone()))
            .unwrap_or_else(|| if grpc { "/AWS.ALB/healthcheck".into() } else { "/".into() });
        if p.is_empty() || p.len() > 1024 || !p.starts_with('/') {
            return Err(validation(format!(
                "Health check path '{p}' must start with '/' and be at most 1024 characters"
            )));
        }
        Some(p)
    } else {
        if req.path.is_some() {
            return Err(validation(
                "Health check path can only be specified for HTTP and HTTPS health checks",
            ));
        }
        None
    };
    let matcher = if http_check {
        let m = req.matcher.clone().or_else(|| keep(|c| c.matcher.clone())).unwrap_or_else(|| {
            if grpc {
                "12".into()
            } else if http_family(tg_protocol) {
                "200".into()
            } else {
                "200-399".into()
            }
        });
        http_codes(&m, grpc)?;
        Some(m)
    } else {
        if req.matcher.is_some() {
            return Err(validation("A matcher can only be specified for HTTP and HTTPS health checks"));
        }
        None
    };
    let default_timeout = if http_family(tg_protocol) { 5 } else { 10 };
    let pick = |r: Option<i32>, c: Option<i32>, d: i32| r.or(c).unwrap_or(d);
    let interval = pick(req.interval, current.map(|c| c.interval), 30);
    let timeout = pick(req.timeout, current.map(|c| c.timeout), default_timeout);
    let healthy = pick(req.healthy, current.map(|c| c.healthy), 5);
    let unhealthy = pick(req.unhealthy, current.map(|c| c.unhealthy), 2);
    for (name, v, lo, hi) in [
        ("HealthCheckIntervalSeconds", interval, 5, 300),
        ("HealthCheckTimeoutSeconds", timeout, 2, 120),
        ("HealthyThresholdCount", healthy, 2, 10),
        ("UnhealthyThresholdCount", unhealthy, 2, 10),
    ] {
        if !(lo..=hi).contains(&v) {
            return Err(validation(format!("{name} '{v}' must be an integer from {lo} to {hi}")));
        }
    }
    if timeout >= interval {
        return Err(validation(format!(
            "Health check timeout '{timeout}' must be smaller than the interval '{interval}'"
        )));
    }
    let enabled = req.enabled.or(current.map(|c| c.enabled)).unwrap_or(true);
    Ok(HealthCheckSettings {
        enabled,
        protocol: hc_protocol,
        port,
        path,
        interval,
        timeout,
        healthy,
        unhealthy,
        matcher,
    })
}

/// A matcher's HTTP codes: `200`, `200,202`, `200-299` (200-499; gRPC: 0-99).
pub fn http_codes(m: &str, grpc: bool) -> Result<Vec<(u16, u16)>, ServiceError> {
    let (lo, hi) = if grpc { (0, 99) } else { (200, 499) };
    let bad = || {
        validation(format!(
            "The matcher '{m}' is not valid: use codes from {lo} to {hi}, as '200', '200,202' or '200-299'"
        ))
    };
    let mut out = Vec::new();
    for part in m.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part.trim(), part.trim()),
        };
        let (a, b) = (a.parse::<u16>().map_err(|_| bad())?, b.parse::<u16>().map_err(|_| bad())?);
        if a < lo || b > hi || a > b {
            return Err(bad());
        }
        out.push((a, b));
    }
    Ok(out)
}

/// What a rule condition may say. Returns the condition as ELB describes it: both `Values`
/// and the field's config for `host-header` and `path-pattern`, the config alone otherwise.
pub fn condition(c: &RuleCondition) -> Result<(RuleCondition, usize), ServiceError> {
    let field = c.field.as_deref().unwrap_or_default();
    let legacy = c.values.clone().filter(|v| !v.is_empty());
    let pick = |config: Option<Vec<String>>| -> Result<Vec<String>, ServiceError> {
        match (legacy.clone(), config) {
            (Some(_), Some(_)) => Err(validation(format!(
                "You cannot specify both 'Values' and a condition config for the field '{field}'"
            ))),
            (Some(v), None) | (None, Some(v)) if !v.is_empty() => Ok(v),
            _ => Err(validation(format!("A condition of the field '{field}' must have at least one value"))),
        }
    };
    let check_chars =
        |v: &str, max: usize, ok: &dyn Fn(char) -> bool, what: &str| -> Result<(), ServiceError> {
            if v.is_empty() || v.chars().count() > max || !v.chars().all(ok) {
                return Err(validation(format!(
                    "The {what} '{v}' is not valid: it must be 1 to {max} allowed characters"
                )));
            }
            Ok(())
        };
    let mut out = RuleCondition { field: Some(field.to_string()), ..Default::default() };
    let count;
    match field {
        "path-pattern" => {
            let v = pick(c.path_pattern_config.as_ref().and_then(|p| p.values.clone()))?;
            for p in &v {
                check_chars(
                    p,
                    128,
                    &|ch| ch.is_ascii_alphanumeric() || "_-.$/~\"'@:+&*?=%;,!()[]{}|".contains(ch),
                    "path pattern",
                )?;
            }
            count = v.len();
            out.values = Some(v.clone());
            out.path_pattern_config =
                Some(PathPatternConditionConfig { values: Some(v), regex_values: None });
        }
        "host-header" => {
            let v = pick(c.host_header_config.as_ref().and_then(|p| p.values.clone()))?;
            for h in &v {
                check_chars(h, 128, &|ch| ch.is_ascii_alphanumeric() || "-.*?".contains(ch), "host header")?;
            }
            count = v.len();
            out.values = Some(v.clone());
            out.host_header_config = Some(HostHeaderConditionConfig { values: Some(v), regex_values: None });
        }
        "http-header" => {
            if legacy.is_some() {
                return Err(validation("The field 'http-header' needs an HttpHeaderConfig, not 'Values'"));
            }
            let cfg = c
                .http_header_config
                .as_ref()
                .ok_or_else(|| validation("The field 'http-header' needs an HttpHeaderConfig"))?;
            let name = cfg.http_header_name.clone().unwrap_or_default();
            check_chars(
                &name,
                40,
                &|ch| ch.is_ascii_alphanumeric() || "-_".contains(ch),
                "HTTP header name",
            )?;
            let v = cfg.values.clone().unwrap_or_default();
            if v.is_empty() {
                return Err(validation(format!(
                    "The HTTP header condition on '{name}' must have at least one value"
                )));
            }
            for h in &v {
                check_chars(h, 128, &|ch| !ch.is_control(), "HTTP header value")?;
            }
            count = v.len();
            out.http_header_config = Some(HttpHeaderConditionConfig {
                http_header_name: Some(name),
                values: Some(v),
                regex_values: None,
            });
        }
        "http-request-method" => {
            if legacy.is_some() {
                return Err(validation(
                    "The field 'http-request-method' needs an HttpRequestMethodConfig, not 'Values'",
                ));
            }
            let v = c.http_request_method_config.as_ref().and_then(|m| m.values.clone()).unwrap_or_default();
            if v.is_empty() {
                return Err(validation("The HTTP request method condition must have at least one value"));
            }
            for m in &v {
                check_chars(
                    m,
                    40,
                    &|ch| ch.is_ascii_uppercase() || "_-".contains(ch),
                    "HTTP request method",
                )?;
            }
            count = v.len();
            out.http_request_method_config = Some(HttpRequestMethodConditionConfig { values: Some(v) });
        }
        "query-string" => {
            if legacy.is_some() {
                return Err(validation("The field 'query-string' needs a QueryStringConfig, not 'Values'"));
            }
            let v = c.query_string_config.as_ref().and_then(|q| q.values.clone()).unwrap_or_default();
            if v.is_empty() {
                return Err(validation("The query string condition must have at least one key/value pair"));
            }
            for p in &v {
                if let Some(k) = &p.key {
                    check_chars(k, 128, &|ch| !ch.is_control(), "query string key")?;
                }
                check_chars(
                    p.value.as_deref().unwrap_or_default(),
                    128,
                    &|ch| !ch.is_control(),
                    "query string value",
                )?;
            }
            count = v.len();
            out.query_string_config = Some(QueryStringConditionConfig { values: Some(v) });
        }
        "source-ip" => {
            if legacy.is_some() {
                return Err(validation("The field 'source-ip' needs a SourceIpConfig, not 'Values'"));
            }
            let v = c.source_ip_config.as_ref().and_then(|s| s.values.clone()).unwrap_or_default();
            if v.is_empty() {
                return Err(validation("The source IP condition must have at least one CIDR block"));
            }
            for cidr in &v {
                parse_cidr(cidr)
                    .ok_or_else(|| validation(format!("The source IP '{cidr}' is not a valid CIDR block")))?;
            }
            count = v.len();
            out.source_ip_config = Some(SourceIpConditionConfig { values: Some(v), ip_address_type: None });
        }
        other => {
            return Err(validation(format!(
                "Condition field '{other}' is not valid: it must be one of 'path-pattern', 'host-header', 'http-header', 'http-request-method', 'query-string', 'source-ip'"
            )));
        }
    }
    if c.regex_values.is_some() {
        return Err(validation("Regular-expression conditions (RegexValues) are not supported by Gantry"));
    }
    Ok((out, count))
}

/// A rule's conditions: each of host-header, http-request-method, path-pattern and source-ip
/// at most once, at most 5 values in all.
pub fn conditions(cs: &[RuleCondition]) -> Result<Vec<RuleCondition>, ServiceError> {
    if cs.is_empty() {
        return Err(validation("A rule must have at least one condition"));
    }
    let mut out = Vec::new();
    let mut total = 0;
    for c in cs {
        let (n, count) = condition(c)?;
        let f = n.field.clone().unwrap_or_default();
        if matches!(f.as_str(), "host-header" | "http-request-method" | "path-pattern" | "source-ip")
            && out.iter().any(|o: &RuleCondition| o.field.as_deref() == Some(&f))
        {
            return Err(validation(format!("A rule can only have one '{f}' condition")));
        }
        total += count;
        out.push(n);
    }
    if total > 5 {
        return Err(ServiceError::sender(
            "TooManyConditionValues",
            format!("A rule can only have '5' condition values, but it has '{total}'"),
        ));
    }
    Ok(out)
}

pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, l) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let len: u8 = l.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// What a forward action's target group is, as far as actions need to know.
#[derive(Debug, Clone)]
pub struct TgInfo {
    pub arn: String,
    pub protocol: String,
}

/// A rule's or listener's actions: exactly one of forward, redirect and fixed-response (Gantry
/// has no authenticate actions), normalized as ELB describes it. `tg` looks a target group up
/// by ARN; `network` says whether the listener is a network load balancer's.
pub fn actions(
    acts: &[Action],
    network: bool,
    listener_protocol: &str,
    tg: &dyn Fn(&str) -> Result<TgInfo, ServiceError>,
) -> Result<Vec<Action>, ServiceError> {
    if acts.is_empty() {
        return Err(validation("At least one action must be specified"));
    }
    if acts.len() > 1 {
        if let Some(a) = acts.iter().find(|a| a.r#type.starts_with("authenticate")) {
            return Err(unsupported_action(&a.r#type));
        }
        return Err(ServiceError::sender(
            "TooManyActions",
            "Only one of the action types 'forward', 'redirect' and 'fixed-response' may be specified",
        ));
    }
    let a = &acts[0];
    if let Some(o) = a.order
        && !(1..=50000).contains(&o)
    {
        return Err(validation(format!("Action order '{o}' must be an integer from 1 to 50000")));
    }
    let mut out = Action { r#type: a.r#type.clone(), order: a.order, ..Default::default() };
    match a.r#type.as_str() {
        "forward" => {
            // Network load balancers forward to several weighted target groups too (since
            // ELB's weighted target groups for NLB), as ECS's blue/green deployments need.
            let (tuples, stickiness) = forward_targets(a)?;
            for t in &tuples {
                let arn = t.target_group_arn.as_deref().unwrap_or_default();
                let info = tg(arn)?;
                compatible(network, listener_protocol, &info)?;
            }
            if network && stickiness.as_ref().is_some_and(|s| s.enabled == Some(true)) {
                return Err(validation(
                    "Target group stickiness is not supported on network load balancer listeners",
                ));
            }
            if tuples.len() == 1 {
                out.target_group_arn = tuples[0].target_group_arn.clone();
            }
            out.forward_config =
                Some(ForwardActionConfig {
                    target_groups: Some(tuples),
                    target_group_stickiness_config: Some(stickiness.unwrap_or(TargetGroupStickinessConfig {
                        enabled: Some(false),
                        duration_seconds: None,
                    })),
                });
        }
        "redirect" => {
            if network {
                return Err(validation("Network load balancer listeners only support 'forward' actions"));
            }
            let r = a
                .redirect_config
                .as_ref()
                .ok_or_else(|| validation("A redirect action needs a RedirectConfig"))?;
            out.redirect_config = Some(redirect(r)?);
        }
        "fixed-response" => {
            if network {
                return Err(validation("Network load balancer listeners only support 'forward' actions"));
            }
            let f = a
                .fixed_response_config
                .as_ref()
                .ok_or_else(|| validation("A fixed-response action needs a FixedResponseConfig"))?;
            out.fixed_response_config = Some(fixed_response(f)?);
        }
        other if other.starts_with("authenticate") || other == "jwt-validation" => {
            return Err(unsupported_action(other));
        }
        other => {
            return Err(validation(format!(
                "Action type '{other}' is not valid: it must be one of 'forward', 'redirect', 'fixed-response'"
            )));
        }
    }
    Ok(vec![out])
}

fn unsupported_action(t: &str) -> ServiceError {
    ServiceError::sender(
        "UnsupportedProtocol",
        format!(
            "Action type '{t}' is not supported by Gantry: it has no identity provider to authenticate against"
        ),
    )
}

fn forward_targets(
    a: &Action,
) -> Result<(Vec<TargetGroupTuple>, Option<TargetGroupStickinessConfig>), ServiceError> {
    let cfg_groups =
        a.forward_config.as_ref().and_then(|f| f.target_groups.clone()).filter(|g| !g.is_empty());
    let stickiness = a.forward_config.as_ref().and_then(|f| f.target_group_stickiness_config.clone());
    let tuples = match (&a.target_group_arn, cfg_groups) {
        (Some(arn), None) => vec![TargetGroupTuple { target_group_arn: Some(arn.clone()), weight: Some(1) }],
        (Some(arn), Some(g)) => {
            if g.len() != 1 || g[0].target_group_arn.as_deref() != Some(arn) {
                return Err(validation(
                    "You cannot specify both a target group ARN and a forward config with other target groups",
                ));
            }
            vec![TargetGroupTuple {
                target_group_arn: Some(arn.clone()),
                weight: Some(g[0].weight.unwrap_or(1)),
            }]
        }
        (None, Some(g)) => {
            g.into_iter().map(|t| TargetGroupTuple { weight: Some(t.weight.unwrap_or(1)), ..t }).collect()
        }
        (None, None) => {
            return Err(validation("A forward action needs a target group ARN or a forward config"));
        }
    };
    if tuples.len() > 5 {
        return Err(ServiceError::sender(
            "TooManyTargetGroups",
            format!("A forward action can have at most 5 target groups, not {}", tuples.len()),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for t in &tuples {
        let arn = t.target_group_arn.clone().unwrap_or_default();
        if arn.is_empty() {
            return Err(validation("Each target group of a forward config needs a target group ARN"));
        }
        if !seen.insert(arn.clone()) {
            return Err(validation(format!(
                "Target group '{arn}' is listed more than once in the forward config"
            )));
        }
        let w = t.weight.unwrap_or(1);
        if !(0..=999).contains(&w) {
            return Err(validation(format!("Target group weight '{w}' must be an integer from 0 to 999")));
        }
    }
    if let Some(s) = &stickiness
        && s.enabled == Some(true)
    {
        match s.duration_seconds {
            Some(d) if (1..=604800).contains(&d) => {}
            Some(d) => {
                return Err(validation(format!(
                    "Target group stickiness duration '{d}' must be an integer from 1 to 604800"
                )));
            }
            None => {
                return Err(validation(
                    "A duration must be specified when target group stickiness is enabled",
                ));
            }
        }
    }
    Ok((tuples, stickiness))
}

fn compatible(network: bool, listener_protocol: &str, tg: &TgInfo) -> Result<(), ServiceError> {
    let ok = if network {
        match listener_protocol {
            "TCP" => tg.protocol == "TCP" || tg.protocol == "TCP_UDP",
            "TLS" => tg.protocol == "TCP" || tg.protocol == "TLS",
            "UDP" => tg.protocol == "UDP" || tg.protocol == "TCP_UDP",
            _ => false,
        }
    } else {
        http_family(&tg.protocol)
    };
    if ok {
        Ok(())
    } else {
        Err(ServiceError::sender(
            "IncompatibleProtocols",
            format!(
                "The target group '{}' has the protocol '{}', which is incompatible with the listener protocol '{listener_protocol}'",
                tg.arn, tg.protocol
            ),
        ))
    }
}

fn redirect(r: &RedirectActionConfig) -> Result<RedirectActionConfig, ServiceError> {
    one_of("StatusCode", &r.status_code, &["HTTP_301", "HTTP_302"])?;
    let protocol = r.protocol.clone().unwrap_or_else(|| "#{protocol}".into());
    one_of("Protocol", &protocol, &["HTTP", "HTTPS", "#{protocol}"])?;
    let port = r.port.clone().unwrap_or_else(|| "#{port}".into());
    if port != "#{port}" && !matches!(port.parse::<u32>(), Ok(1..=65535)) {
        return Err(validation(format!(
            "Redirect port '{port}' must be '#{{port}}' or an integer from 1 to 65535"
        )));
    }
    let host = r.host.clone().unwrap_or_else(|| "#{host}".into());
    if host.is_empty() || host.len() > 128 {
        return Err(validation(format!("Redirect host '{host}' must be 1 to 128 characters")));
    }
    let path = r.path.clone().unwrap_or_else(|| "/#{path}".into());
    if !path.starts_with('/') || path.len() > 128 {
        return Err(validation(format!(
            "Redirect path '{path}' must start with '/' and be at most 128 characters"
        )));
    }
    let query = r.query.clone().unwrap_or_else(|| "#{query}".into());
    if query.starts_with('?') || query.len() > 128 {
        return Err(validation(format!(
            "Redirect query '{query}' must not start with '?' and be at most 128 characters"
        )));
    }
    if protocol == "#{protocol}"
        && port == "#{port}"
        && host == "#{host}"
        && path == "/#{path}"
        && query == "#{query}"
    {
        return Err(validation(
            "The redirect configuration is not valid: it would redirect to the same location (a loop)",
        ));
    }
    Ok(RedirectActionConfig {
        protocol: Some(protocol),
        port: Some(port),
        host: Some(host),
        path: Some(path),
        query: Some(query),
        status_code: r.status_code.clone(),
    })
}

fn fixed_response(f: &FixedResponseActionConfig) -> Result<FixedResponseActionConfig, ServiceError> {
    let code = &f.status_code;
    let valid = code.len() == 3
        && code.chars().all(|c| c.is_ascii_digit())
        && matches!(code.as_bytes()[0], b'2' | b'4' | b'5');
    if !valid {
        return Err(validation(format!(
            "Fixed response status code '{code}' must be a 2XX, 4XX or 5XX code"
        )));
    }
    if let Some(ct) = &f.content_type {
        one_of(
            "ContentType",
            ct,
            &["text/plain", "text/css", "text/html", "application/javascript", "application/json"],
        )?;
    }
    if let Some(body) = &f.message_body
        && body.len() > 1024
    {
        return Err(validation(format!(
            "A fixed response message body can be at most 1024 characters, not {}",
            body.len()
        )));
    }
    Ok(f.clone())
}

/// The target groups an action forwards to.
pub fn forwarded(actions: &[Action]) -> Vec<String> {
    let mut out = Vec::new();
    for a in actions {
        if let Some(groups) = a.forward_config.as_ref().and_then(|f| f.target_groups.as_ref()) {
            out.extend(groups.iter().filter_map(|g| g.target_group_arn.clone()));
        } else if let Some(arn) = &a.target_group_arn {
            out.push(arn.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_model::elbv2::QueryStringKeyValuePair;

    fn tg(arn: &str) -> Result<TgInfo, ServiceError> {
        match arn {
            "http" | "http2" => Ok(TgInfo { arn: arn.into(), protocol: "HTTP".into() }),
            "tcp" | "tcp2" => Ok(TgInfo { arn: arn.into(), protocol: "TCP".into() }),
            _ => Err(ServiceError::sender("TargetGroupNotFound", format!("Target groups '{arn}' not found"))),
        }
    }

    fn code(r: Result<impl std::fmt::Debug, ServiceError>) -> String {
        r.unwrap_err().code
    }

    #[test]
    fn names_follow_elbs_rules() {
        assert!(name("load balancer", "web-1").is_ok());
        for bad in ["", "-web", "web-", "we_b", &"a".repeat(33), "internal-web"] {
            let e = name("load balancer", bad).unwrap_err();
            assert_eq!(e.code, "ValidationError");
            assert!(e.message.contains(bad), "{}", e.message);
        }
        assert!(name("target group", "internal-x").is_ok());
    }

    #[test]
    fn health_checks_get_elbs_defaults_per_protocol() {
        let http = health_check("HTTP", None, None, &HealthCheckRequest::default()).unwrap();
        assert_eq!(
            http,
            HealthCheckSettings {
                enabled: true,
                protocol: "HTTP".into(),
                port: "traffic-port".into(),
                path: Some("/".into()),
                interval: 30,
                timeout: 5,
                healthy: 5,
                unhealthy: 2,
                matcher: Some("200".into()),
            }
        );
        let tcp = health_check("TCP", None, None, &HealthCheckRequest::default()).unwrap();
        assert_eq!((tcp.protocol.as_str(), tcp.timeout, tcp.path, tcp.matcher), ("TCP", 10, None, None));
        let tcp_http = health_check(
            "TCP",
            None,
            None,
            &HealthCheckRequest { protocol: Some("HTTP".into()), ..Default::default() },
        )
        .unwrap();
        assert_eq!(tcp_http.matcher.as_deref(), Some("200-399"));
        let grpc = health_check("HTTP", Some("GRPC"), None, &HealthCheckRequest::default()).unwrap();
        assert_eq!(
            (grpc.path.as_deref(), grpc.matcher.as_deref()),
            (Some("/AWS.ALB/healthcheck"), Some("12"))
        );
        // Modify keeps what the request leaves out.
        let m = health_check(
            "HTTP",
            None,
            Some(&http),
            &HealthCheckRequest { interval: Some(10), ..Default::default() },
        )
        .unwrap();
        assert_eq!((m.interval, m.timeout, m.path.as_deref()), (10, 5, Some("/")));
        let e =
            health_check("HTTP", None, None, &HealthCheckRequest { timeout: Some(30), ..Default::default() })
                .unwrap_err();
        assert!(e.message.contains("'30'") && e.message.contains("interval"), "{}", e.message);
        let e = health_check(
            "HTTP",
            None,
            None,
            &HealthCheckRequest { interval: Some(301), ..Default::default() },
        )
        .unwrap_err();
        assert!(e.message.contains("301"), "{}", e.message);
        let e = health_check(
            "TCP",
            None,
            None,
            &HealthCheckRequest { path: Some("/x".into()), ..Default::default() },
        );
        assert_eq!(code(e), "ValidationError");
        let e = health_check(
            "HTTP",
            None,
            None,
            &HealthCheckRequest { matcher: Some("600".into()), ..Default::default() },
        )
        .unwrap_err();
        assert!(e.message.contains("600"), "{}", e.message);
        assert_eq!(http_codes("200,202-204", false).unwrap(), [(200, 200), (202, 204)]);
    }

    #[test]
    fn attributes_have_defaults_and_refuse_unknown_keys_and_bad_values() {
        let mut a = tg_attribute_defaults("HTTP", "ip");
        assert_eq!(a["deregistration_delay.timeout_seconds"], "300");
        assert_eq!(a["stickiness.type"], "lb_cookie");
        assert_eq!(a["load_balancing.algorithm.type"], "round_robin");
        let set = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        modify_tg_attributes("HTTP", &mut a, &set("deregistration_delay.timeout_seconds", "5")).unwrap();
        assert_eq!(a["deregistration_delay.timeout_seconds"], "5");
        let e = modify_tg_attributes("HTTP", &mut a, &set("deregistration_delay.timeout_seconds", "3601"))
            .unwrap_err();
        assert!(e.message.contains("3601"), "{}", e.message);
        let e = modify_tg_attributes("HTTP", &mut a, &set("frobnicate", "1")).unwrap_err();
        assert!(e.message.contains("'frobnicate' is not recognized"), "{}", e.message);
        assert!(modify_tg_attributes("HTTP", &mut a, &set("slow_start.duration_seconds", "10")).is_err());
        modify_tg_attributes("HTTP", &mut a, &set("slow_start.duration_seconds", "30")).unwrap();
        let e = modify_tg_attributes(
            "HTTP",
            &mut a,
            &set("load_balancing.algorithm.type", "least_outstanding_requests"),
        )
        .unwrap_err();
        assert!(e.message.contains("least outstanding"), "{}", e.message);
        let tcp = tg_attribute_defaults("TCP", "ip");
        assert_eq!(
            (tcp["stickiness.type"].as_str(), tcp["preserve_client_ip.enabled"].as_str()),
            ("source_ip", "false")
        );
        assert_eq!(tg_attribute_defaults("TCP", "instance")["preserve_client_ip.enabled"], "true");
        let mut lb = lb_attribute_defaults("application");
        assert_eq!(lb["idle_timeout.timeout_seconds"], "60");
        assert!(
            modify_lb_attributes("application", &mut lb, &set("idle_timeout.timeout_seconds", "0")).is_err()
        );
        assert!(modify_lb_attributes("network", &mut lb, &set("idle_timeout.timeout_seconds", "5")).is_err());
        assert_eq!(listener_attribute_defaults("TCP")["tcp.idle_timeout.seconds"], "350");
    }

    fn cond(field: &str, values: &[&str]) -> RuleCondition {
        RuleCondition {
            field: Some(field.into()),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn conditions_are_normalized_and_limited() {
        let out = conditions(&[cond("path-pattern", &["/api/*"])]).unwrap();
        assert_eq!(out[0].values.as_deref(), Some(&["/api/*".to_string()][..]));
        assert_eq!(
            out[0].path_pattern_config.as_ref().and_then(|p| p.values.clone()),
            Some(vec!["/api/*".to_string()])
        );
        let q = RuleCondition {
            field: Some("query-string".into()),
            query_string_config: Some(QueryStringConditionConfig {
                values: Some(vec![QueryStringKeyValuePair {
                    key: Some("v".into()),
                    value: Some("2".into()),
                }]),
            }),
            ..Default::default()
        };
        assert!(conditions(&[q]).is_ok());
        let e =
            conditions(&[cond("path-pattern", &["/a", "/b", "/c"]), cond("host-header", &["a", "b", "c"])]);
        assert_eq!(code(e), "TooManyConditionValues");
        assert_eq!(
            code(conditions(&[cond("path-pattern", &["/a"]), cond("path-pattern", &["/b"])])),
            "ValidationError"
        );
        let e = conditions(&[cond("cookie", &["x"])]).unwrap_err();
        assert!(e.message.contains("'cookie'"), "{}", e.message);
        assert_eq!(code(conditions(&[cond("host-header", &["bad host"])])), "ValidationError");
        let ip = RuleCondition {
            field: Some("source-ip".into()),
            source_ip_config: Some(SourceIpConditionConfig {
                values: Some(vec!["10.0.0.0/33".into()]),
                ip_address_type: None,
            }),
            ..Default::default()
        };
        assert!(conditions(&[ip]).unwrap_err().message.contains("10.0.0.0/33"));
        assert_eq!(code(conditions(&[])), "ValidationError");
    }

    fn forward(arn: &str) -> Action {
        Action { r#type: "forward".into(), target_group_arn: Some(arn.into()), ..Default::default() }
    }

    #[test]
    fn actions_are_normalized_and_checked() {
        let out = actions(&[forward("http")], false, "HTTP", &tg).unwrap();
        let fc = out[0].forward_config.clone().unwrap();
        assert_eq!(out[0].target_group_arn.as_deref(), Some("http"));
        assert_eq!(fc.target_groups.unwrap()[0].weight, Some(1));
        assert_eq!(fc.target_group_stickiness_config.unwrap().enabled, Some(false));
        let weighted = Action {
            r#type: "forward".into(),
            forward_config: Some(ForwardActionConfig {
                target_groups: Some(vec![
                    TargetGroupTuple { target_group_arn: Some("http".into()), weight: Some(0) },
                    TargetGroupTuple { target_group_arn: Some("http2".into()), weight: Some(100) },
                ]),
                target_group_stickiness_config: Some(TargetGroupStickinessConfig {
                    enabled: Some(true),
                    duration_seconds: Some(60),
                }),
            }),
            ..Default::default()
        };
        let out = actions(std::slice::from_ref(&weighted), false, "HTTP", &tg).unwrap();
        assert_eq!(out[0].target_group_arn, None);
        let weights: Vec<_> = out[0]
            .forward_config
            .as_ref()
            .unwrap()
            .target_groups
            .as_ref()
            .unwrap()
            .iter()
            .map(|t| t.weight)
            .collect();
        assert_eq!(weights, [Some(0), Some(100)]);
        assert_eq!(code(actions(&[weighted], true, "TCP", &tg)), "IncompatibleProtocols");
        // A network load balancer's listener forwards to weighted TCP groups too (without
        // stickiness).
        let nlb = |stick: bool| Action {
            r#type: "forward".into(),
            forward_config: Some(ForwardActionConfig {
                target_groups: Some(vec![
                    TargetGroupTuple { target_group_arn: Some("tcp".into()), weight: Some(100) },
                    TargetGroupTuple { target_group_arn: Some("tcp2".into()), weight: Some(0) },
                ]),
                target_group_stickiness_config: Some(TargetGroupStickinessConfig {
                    enabled: Some(stick),
                    duration_seconds: None,
                }),
            }),
            ..Default::default()
        };
        let out = actions(&[nlb(false)], true, "TCP", &tg).unwrap();
        assert_eq!(out[0].forward_config.as_ref().unwrap().target_groups.as_ref().unwrap().len(), 2);
        assert_eq!(code(actions(&[nlb(true)], true, "TCP", &tg)), "ValidationError");
        assert_eq!(code(actions(&[forward("tcp")], false, "HTTP", &tg)), "IncompatibleProtocols");
        assert_eq!(code(actions(&[forward("http")], true, "TCP", &tg)), "IncompatibleProtocols");
        assert_eq!(code(actions(&[forward("nope")], false, "HTTP", &tg)), "TargetGroupNotFound");
        let redirect = Action {
            r#type: "redirect".into(),
            redirect_config: Some(RedirectActionConfig {
                protocol: Some("HTTPS".into()),
                port: Some("443".into()),
                status_code: "HTTP_301".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let out = actions(&[redirect], false, "HTTP", &tg).unwrap();
        let r = out[0].redirect_config.clone().unwrap();
        assert_eq!(
            (r.host.as_deref(), r.path.as_deref(), r.query.as_deref()),
            (Some("#{host}"), Some("/#{path}"), Some("#{query}"))
        );
        let looping = Action {
            r#type: "redirect".into(),
            redirect_config: Some(RedirectActionConfig {
                status_code: "HTTP_302".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(actions(&[looping], false, "HTTP", &tg).unwrap_err().message.contains("loop"));
        let fixed = |code: &str| Action {
            r#type: "fixed-response".into(),
            fixed_response_config: Some(FixedResponseActionConfig {
                status_code: code.into(),
                content_type: Some("text/plain".into()),
                message_body: Some("hi".into()),
            }),
            ..Default::default()
        };
        assert!(actions(&[fixed("404")], false, "HTTP", &tg).is_ok());
        assert!(actions(&[fixed("302")], false, "HTTP", &tg).unwrap_err().message.contains("302"));
        assert_eq!(code(actions(&[fixed("200")], true, "TCP", &tg)), "ValidationError");
        let auth = Action { r#type: "authenticate-oidc".into(), ..Default::default() };
        assert_eq!(code(actions(&[auth], false, "HTTPS", &tg)), "UnsupportedProtocol");
    }
}
