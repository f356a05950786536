//! EC2 Auto Scaling's part of the key space, and its ARNs.
//!
//! Within `/ACCOUNT/REGION/autoscaling/`: `lc/NAME` (a launch configuration), `group/NAME` (an
//! Auto Scaling group with its instances, lifecycle hooks and tags: one record, so that the
//! controller's decisions and the API's changes meet under one compare-and-swap) and
//! `activity/GROUP/INVERTED-MILLIS-ID` (a scaling activity; newest first in key order). Outside
//! any scope, under `/_autoscaling/`: `group/ACCOUNT/REGION/NAME` (index row of every group,
//! rewritten with each change of its group: what the group controller watches).

use gantry_core::Scope;

/// The service's name in keys and ARNs (its SigV4 signing name).
pub const SERVICE: &str = "autoscaling";
/// The root of Auto Scaling's keys outside any scope.
pub const UNSCOPED: &str = "/_autoscaling/";

pub fn base(s: &Scope) -> String {
    format!("/{}/{}/{SERVICE}/", s.account, s.region)
}
pub fn lc_prefix(s: &Scope) -> String {
    format!("{}lc/", base(s))
}
pub fn lc(s: &Scope, name: &str) -> String {
    format!("{}{name}", lc_prefix(s))
}
pub fn group_prefix(s: &Scope) -> String {
    format!("{}group/", base(s))
}
pub fn group(s: &Scope, name: &str) -> String {
    format!("{}{name}", group_prefix(s))
}
pub fn activities_of(s: &Scope, group: &str) -> String {
    format!("{}activity/{group}/", base(s))
}
/// An activity's key: newest first.
pub fn activity(s: &Scope, group: &str, start_ms: i64, id: &str) -> String {
    format!("{}{:013}-{id}", activities_of(s, group), 9_999_999_999_999i64.saturating_sub(start_ms.max(0)))
}
pub fn group_index_prefix() -> String {
    format!("{UNSCOPED}group/")
}
pub fn group_index(s: &Scope, name: &str) -> String {
    format!("{}{}/{}/{name}", group_index_prefix(), s.account, s.region)
}
/// The scope and group name of a group index row.
pub fn parse_group_index(row: &str) -> Option<(Scope, String)> {
    let rest = row.strip_prefix(&group_index_prefix())?;
    let mut it = rest.splitn(3, '/');
    let (account, region, name) = (it.next()?, it.next()?, it.next()?);
    Some((Scope::new(account, region), name.to_string()))
}

/// Whether Auto Scaling may write `key`.
pub fn owns(key: &str) -> bool {
    if key.starts_with(UNSCOPED) {
        return true;
    }
    let mut it = key.splitn(5, '/');
    matches!((it.next(), it.next(), it.next(), it.next()), (Some(""), Some(_), Some(_), Some(SERVICE)))
}

pub fn group_arn(s: &Scope, uuid: &str, name: &str) -> String {
    format!(
        "arn:aws:autoscaling:{}:{}:autoScalingGroup:{uuid}:autoScalingGroupName/{name}",
        s.region, s.account
    )
}
pub fn lc_arn(s: &Scope, uuid: &str, name: &str) -> String {
    format!(
        "arn:aws:autoscaling:{}:{}:launchConfiguration:{uuid}:launchConfigurationName/{name}",
        s.region, s.account
    )
}
/// The group name in an ARN or a name.
pub fn group_name(reference: &str) -> &str {
    match reference.strip_prefix("arn:") {
        Some(_) => reference.rsplit_once(":autoScalingGroupName/").map_or(reference, |(_, n)| n),
        None => reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_arns() {
        let s = Scope::new("123456789012", "us-east-1");
        assert!(owns(&group(&s, "g")));
        assert!(owns(&group_index(&s, "g")));
        assert!(!owns("/123456789012/us-east-1/ecs/cluster/x"));
        assert_eq!(parse_group_index(&group_index(&s, "a/b")), Some((s.clone(), "a/b".into())));
        let arn = group_arn(&s, "u", "web");
        assert_eq!(group_name(&arn), "web");
        assert_eq!(group_name("web"), "web");
        assert!(activity(&s, "g", 2_000, "b") < activity(&s, "g", 1_000, "a"), "newest first");
    }
}
