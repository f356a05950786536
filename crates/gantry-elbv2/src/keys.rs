//! ELBv2's part of the key space, and its ARNs.
//!
//! Within `/ACCOUNT/REGION/elasticloadbalancing/`: `lb/NAME` (a load balancer with its
//! listeners and their rules: one record, so that a port or a priority is taken under one
//! compare-and-swap), `tg/NAME` (a target group with its attributes) and
//! `target/TG-NAME/ID!PORT` (a registered or draining target). Outside any scope, under
//! `/_elasticloadbalancing/`: `resource/ACCOUNT/REGION/lb/NAME` and `.../tg/NAME` (index rows:
//! where the data plane's configuration finds every scope that has anything) and
//! `provisioning/ACCOUNT/REGION/NAME` (index row: a load balancer still provisioning, for the
//! activator) and `draining/ACCOUNT/REGION/TG-NAME/ID!PORT` (index row: a draining target, for
//! the drainer). Names are unique per account and region, so they key the records; an ARN names
//! its record by its name, and its ID must match the record's.

use gantry_core::Scope;

/// The service's name in keys and ARNs (its SigV4 signing name).
pub const SERVICE: &str = "elasticloadbalancing";
/// The root of ELBv2's keys outside any scope.
pub const UNSCOPED: &str = "/_elasticloadbalancing/";

pub fn base(s: &Scope) -> String {
    format!("/{}/{}/{SERVICE}/", s.account, s.region)
}

pub fn lb_prefix(s: &Scope) -> String {
    format!("{}lb/", base(s))
}
pub fn lb(s: &Scope, name: &str) -> String {
    format!("{}{name}", lb_prefix(s))
}
pub fn tg_prefix(s: &Scope) -> String {
    format!("{}tg/", base(s))
}
pub fn tg(s: &Scope, name: &str) -> String {
    format!("{}{name}", tg_prefix(s))
}
pub fn targets_of(s: &Scope, tg_name: &str) -> String {
    format!("{}target/{tg_name}/", base(s))
}
pub fn target(s: &Scope, tg_name: &str, id: &str, port: i32) -> String {
    format!("{}{id}!{port:05}", targets_of(s, tg_name))
}
pub fn resource_index(s: &Scope, kind: &str, name: &str) -> String {
    format!("{UNSCOPED}resource/{}/{}/{kind}/{name}", s.account, s.region)
}
pub fn draining_prefix() -> String {
    format!("{UNSCOPED}draining/")
}
pub fn draining_of(s: &Scope, tg_name: &str) -> String {
    format!("{}{}/{}/{tg_name}/", draining_prefix(), s.account, s.region)
}
pub fn draining(s: &Scope, tg_name: &str, id: &str, port: i32) -> String {
    format!("{}{id}!{port:05}", draining_of(s, tg_name))
}
pub fn provisioning_prefix() -> String {
    format!("{UNSCOPED}provisioning/")
}
pub fn provisioning(s: &Scope, name: &str) -> String {
    format!("{}{}/{}/{name}", provisioning_prefix(), s.account, s.region)
}

/// Whether `key` is ELBv2's: `/_elasticloadbalancing/...` or `/ACCOUNT/REGION/elasticloadbalancing/...`.
pub fn owns(key: &str) -> bool {
    if key.starts_with(UNSCOPED) {
        return true;
    }
    let mut it = key.strip_prefix('/').unwrap_or_default().splitn(4, '/');
    matches!(
        (it.next(), it.next(), it.next(), it.next()),
        (Some(account), Some(_), Some(SERVICE), Some(_)) if !account.is_empty() && !account.starts_with('_')
    )
}

/// The scope of a scoped ELBv2 key.
pub fn scope_of(key: &str) -> Option<Scope> {
    let mut it = key.strip_prefix('/')?.splitn(4, '/');
    let (account, region, service) = (it.next()?, it.next()?, it.next()?);
    (service == SERVICE && !account.starts_with('_')).then(|| Scope::new(account, region))
}

/// `app` or `net`, as load balancer ARNs spell the type.
pub fn type_segment(lb_type: &str) -> &'static str {
    if lb_type == "network" { "net" } else { "app" }
}

pub fn lb_arn(s: &Scope, lb_type: &str, name: &str, id: &str) -> String {
    format!("arn:aws:{SERVICE}:{}:{}:loadbalancer/{}/{name}/{id}", s.region, s.account, type_segment(lb_type))
}
pub fn listener_arn(lb_arn: &str, listener_id: &str) -> String {
    format!("{}/{listener_id}", lb_arn.replacen(":loadbalancer/", ":listener/", 1))
}
pub fn rule_arn(listener_arn: &str, rule_id: &str) -> String {
    format!("{}/{rule_id}", listener_arn.replacen(":listener/", ":listener-rule/", 1))
}
pub fn tg_arn(s: &Scope, name: &str, id: &str) -> String {
    format!("arn:aws:{SERVICE}:{}:{}:targetgroup/{name}/{id}", s.region, s.account)
}

/// What an ELBv2 ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArnRef {
    LoadBalancer { name: String },
    Listener { lb_name: String, listener_id: String },
    Rule { lb_name: String, listener_id: String, rule_id: String },
    TargetGroup { name: String },
}

/// Parses an ELBv2 ARN of this scope. `None` for anything else (another account or region, a
/// malformed ARN, another service).
pub fn parse_arn(s: &Scope, arn: &str) -> Option<ArnRef> {
    let rest = arn.strip_prefix("arn:aws:")?;
    let mut it = rest.splitn(4, ':');
    let (service, region, account, resource) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if service != SERVICE || region != s.region || account != s.account {
        return None;
    }
    let parts: Vec<&str> = resource.split('/').collect();
    let typed = |t: &str| t == "app" || t == "net";
    match parts.as_slice() {
        ["loadbalancer", t, name, _id] if typed(t) => Some(ArnRef::LoadBalancer { name: name.to_string() }),
        ["listener", t, name, _lb, l] if typed(t) => {
            Some(ArnRef::Listener { lb_name: name.to_string(), listener_id: l.to_string() })
        }
        ["listener-rule", t, name, _lb, l, r] if typed(t) => Some(ArnRef::Rule {
            lb_name: name.to_string(),
            listener_id: l.to_string(),
            rule_id: r.to_string(),
        }),
        ["targetgroup", name, _id] => Some(ArnRef::TargetGroup { name: name.to_string() }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_round_trip_and_keys_name_the_service() {
        let s = Scope::new("123456789012", "us-east-1");
        let lb = lb_arn(&s, "application", "web", "50dc6c495c0c9188");
        assert_eq!(
            lb,
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/50dc6c495c0c9188"
        );
        let l = listener_arn(&lb, "f2f7dc8efc522ab2");
        assert_eq!(
            l,
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2"
        );
        let r = rule_arn(&l, "9683b2d02a6cabee");
        assert!(r.contains(":listener-rule/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee"));
        assert_eq!(parse_arn(&s, &lb), Some(ArnRef::LoadBalancer { name: "web".into() }));
        assert_eq!(
            parse_arn(&s, &r),
            Some(ArnRef::Rule {
                lb_name: "web".into(),
                listener_id: "f2f7dc8efc522ab2".into(),
                rule_id: "9683b2d02a6cabee".into()
            })
        );
        let tg = tg_arn(&s, "blue", "73e2d6bc24d8a067");
        assert_eq!(parse_arn(&s, &tg), Some(ArnRef::TargetGroup { name: "blue".into() }));
        assert_eq!(parse_arn(&Scope::new("123456789012", "eu-west-1"), &tg), None);
        assert_eq!(parse_arn(&s, "arn:aws:ecs:us-east-1:123456789012:cluster/x"), None);
        assert_eq!(parse_arn(&s, "nonsense"), None);
        assert!(owns(&lb_prefix(&s)) && owns(&provisioning(&s, "web")));
        assert!(!owns("/123456789012/us-east-1/ecs/cluster/x") && !owns("/_ecs/node/x"));
        assert_eq!(scope_of(&target(&s, "blue", "10.0.0.1", 80)), Some(s.clone()));
        assert!(target(&s, "blue", "10.0.0.1", 80).ends_with("target/blue/10.0.0.1!00080"));
    }
}
