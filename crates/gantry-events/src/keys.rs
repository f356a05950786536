//! EventBridge's keys. Within `/ACCOUNT/REGION/events/`: `rule/BUS/NAME` (a rule with its
//! targets and tags). Within `/_events/`: `scheduled/ACCOUNT/REGION/BUS/NAME` (an index row while
//! a rule is enabled and has a schedule; value: the rule's key, expression and when it was set:
//! what the firing controller works through).

use gantry_core::Scope;

pub fn rules(scope: &Scope, bus: &str) -> String {
    format!("/{}/{}/{}/rule/{bus}/", scope.account, scope.region, crate::SERVICE)
}

pub fn rule(scope: &Scope, bus: &str, name: &str) -> String {
    format!("{}{name}", rules(scope, bus))
}

pub fn scheduled_prefix() -> String {
    "/_events/scheduled/".to_string()
}

pub fn scheduled(scope: &Scope, bus: &str, name: &str) -> String {
    format!("{}{}/{}/{bus}/{name}", scheduled_prefix(), scope.account, scope.region)
}

/// The scope of a rule key.
pub fn scope_of(rule_key: &str) -> Option<Scope> {
    let mut it = rule_key.strip_prefix('/')?.splitn(4, '/');
    let (account, region, service) = (it.next()?, it.next()?, it.next()?);
    (service == crate::SERVICE).then(|| Scope::new(account, region))
}

/// Whether `key` is EventBridge's to write.
pub fn owns(key: &str) -> bool {
    if key.starts_with("/_events/") {
        return true;
    }
    let mut it = key.strip_prefix('/').unwrap_or_default().splitn(4, '/');
    matches!(
        (it.next(), it.next(), it.next(), it.next()),
        (Some(account), Some(_), Some(crate::SERVICE), Some(_)) if !account.is_empty() && !account.starts_with('_')
    )
}
