//! Account/region scope and ECS ARNs (the current long format only).

use crate::error::{EcsError, Result};

/// Where a request's resources live: ECS keeps resources per account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

impl Scope {
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Self {
        Scope { account: account.into(), region: region.into() }
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:RESOURCE`.
    pub fn arn(&self, resource: &str) -> String {
        format!("arn:aws:ecs:{}:{}:{}", self.region, self.account, resource)
    }

    pub fn cluster_arn(&self, name: &str) -> String {
        self.arn(&format!("cluster/{name}"))
    }

    pub fn task_definition_arn(&self, family: &str, revision: i32) -> String {
        self.arn(&format!("task-definition/{family}:{revision}"))
    }

    pub fn capacity_provider_arn(&self, name: &str) -> String {
        self.arn(&format!("capacity-provider/{name}"))
    }

    pub fn container_instance_arn(&self, cluster: &str, id: &str) -> String {
        self.arn(&format!("container-instance/{cluster}/{id}"))
    }

    /// The IAM principal of the account's root user, which is who calls until IAM arrives.
    pub fn root_principal(&self) -> String {
        // Every ECS request makes one: pieces pushed, not `format!`'s machinery.
        let mut arn = String::with_capacity("arn:aws:iam:::root".len() + self.account.len());
        for piece in ["arn:aws:iam::", &self.account, ":root"] {
            arn.push_str(piece);
        }
        arn
    }
}

/// A parsed ECS ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub partition: String,
    pub region: String,
    pub account: String,
    /// The resource type: `cluster`, `task-definition`, `capacity-provider`, ...
    pub resource_type: String,
    /// Everything after `TYPE/`.
    pub resource: String,
}

impl Arn {
    /// Parses `arn:PARTITION:ecs:REGION:ACCOUNT:TYPE/RESOURCE`.
    pub fn parse(s: &str) -> Option<Arn> {
        let mut parts = s.splitn(6, ':');
        let (arn, partition, service, region, account, rest) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if arn != "arn" || service != "ecs" || partition.is_empty() {
            return None;
        }
        let (resource_type, resource) = rest.split_once('/')?;
        if resource_type.is_empty() || resource.is_empty() {
            return None;
        }
        Some(Arn {
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            resource_type: resource_type.to_string(),
            resource: resource.to_string(),
        })
    }

    /// Parses an ARN that must belong to `scope` and be of `resource_type`, or fails with ECS's
    /// "invalid identifier" wording for the given field.
    pub fn parse_in(scope: &Scope, s: &str, resource_type: &str) -> Result<Arn> {
        match Arn::parse(s) {
            Some(a)
                if a.resource_type == resource_type
                    && a.region == scope.region
                    && a.account == scope.account =>
            {
                Ok(a)
            }
            _ => Err(EcsError::invalid(format!("Invalid identifier: {s}"))),
        }
    }
}

/// Resolves a cluster reference (short name or full ARN, empty meaning `default`) to its name.
/// Names are not validated here: an unknown name is simply not found.
pub fn cluster_name(scope: &Scope, reference: Option<&str>) -> Result<String> {
    let r = reference.unwrap_or("").trim();
    if r.is_empty() {
        return Ok("default".to_string());
    }
    if r.starts_with("arn:") {
        match Arn::parse(r) {
            Some(a) if a.resource_type == "cluster" && !a.resource.contains('/') => {
                if a.region != scope.region || a.account != scope.account {
                    return Err(EcsError::cluster_not_found());
                }
                Ok(a.resource)
            }
            _ => Err(EcsError::invalid(format!(
                "Invalid identifier: Unexpected number of separators in cluster ARN '{r}'."
            ))),
        }
    } else {
        Ok(r.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::new("000000000000", "us-east-1")
    }

    #[test]
    fn formats_long_arns() {
        let s = scope();
        assert_eq!(s.cluster_arn("web"), "arn:aws:ecs:us-east-1:000000000000:cluster/web");
        assert_eq!(
            s.task_definition_arn("api", 3),
            "arn:aws:ecs:us-east-1:000000000000:task-definition/api:3"
        );
        assert_eq!(
            s.container_instance_arn("web", "abc"),
            "arn:aws:ecs:us-east-1:000000000000:container-instance/web/abc"
        );
    }

    #[test]
    fn parses_arns_and_rejects_others() {
        let a = Arn::parse("arn:aws:ecs:eu-west-1:123456789012:task-definition/api:3").unwrap();
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(a.account, "123456789012");
        assert_eq!(a.resource_type, "task-definition");
        assert_eq!(a.resource, "api:3");
        for bad in [
            "",
            "arn:aws:s3:eu-west-1:1:bucket/x",
            "arn:aws:ecs:eu-west-1:1:cluster",
            "arn:aws:ecs:eu-west-1:1:cluster/",
            "nope",
        ] {
            assert!(Arn::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn cluster_references() {
        let s = scope();
        assert_eq!(cluster_name(&s, None).unwrap(), "default");
        assert_eq!(cluster_name(&s, Some("")).unwrap(), "default");
        assert_eq!(cluster_name(&s, Some("web")).unwrap(), "web");
        assert_eq!(cluster_name(&s, Some(&s.cluster_arn("web"))).unwrap(), "web");
        let other = Scope::new("000000000000", "eu-west-1").cluster_arn("web");
        assert_eq!(
            cluster_name(&s, Some(&other)).unwrap_err().kind,
            crate::ErrorKind::ClusterNotFoundException
        );
        assert_eq!(
            cluster_name(&s, Some("arn:aws:ecs:us-east-1:000000000000:cluster/a/b")).unwrap_err().kind,
            crate::ErrorKind::InvalidParameterException
        );
    }
}
