//! Authorization: after [`crate::auth`] has said who signed a request, may they do it? Every
//! operation of every service is asked of the [`gantry_ports::Authorizer`] (IAM) as
//! `service:Operation` on the resources the service names for it, with the request's condition
//! keys, when the front door runs with `--auth sigv4`. The root key, and every caller under
//! `--auth open`, is allowed everything. A denial is the service's own `AccessDeniedException`
//! (JSON) or `AccessDenied` (query), with IAM's message naming the principal, the action and
//! the resource.

use crate::AppState;
use crate::auth::{AuthMode, Caller};
use gantry_core::ServiceError;
use gantry_ports::{AuthContext, Decision};

/// The request's global condition keys.
pub(crate) fn global_context(
    s: &AppState,
    caller: &Caller,
    source_ip: Option<std::net::IpAddr>,
) -> AuthContext {
    let mut ctx = AuthContext::new();
    let now = s.control.clock().now();
    ctx.set1("aws:CurrentTime", iso8601(now.0.div_euclid(1000)));
    ctx.set1("aws:EpochTime", now.0.div_euclid(1000).to_string());
    ctx.set1("aws:RequestedRegion", caller.region.clone());
    // The front door speaks plain HTTP (TLS, when wanted, is terminated in front of it).
    ctx.set1("aws:SecureTransport", "false");
    if let Some(ip) = source_ip {
        ctx.set1("aws:SourceIp", ip.to_string());
    }
    ctx
}

fn iso8601(secs: i64) -> String {
    gantry_core::civil::rfc3339(secs, 0, 0)
}

/// Whether requests of `caller` are authorized at all (not under `--auth open`, not the root).
pub(crate) fn enforced(s: &AppState, caller: &Caller) -> bool {
    s.auth.mode() == AuthMode::SigV4 && !caller.principal.is_root()
}

/// Asks IAM about `action` on each resource; the first one not allowed is the denial.
pub(crate) fn check(
    s: &AppState,
    caller: &Caller,
    json: bool,
    action: &str,
    resources: &[(String, AuthContext)],
    resource_policy: Option<&str>,
) -> Result<(), ServiceError> {
    for (resource, ctx) in resources {
        match s.authorizer.authorize(&caller.principal, action, resource, ctx, resource_policy) {
            Decision::Allow => {}
            d => {
                return Err(denied(
                    &caller.principal.arn,
                    action,
                    resource,
                    d == Decision::ExplicitDeny,
                    json,
                ));
            }
        }
    }
    Ok(())
}

/// IAM's denial, in the protocol family's error code.
pub(crate) fn denied(who: &str, action: &str, resource: &str, explicit: bool, json: bool) -> ServiceError {
    let why = if explicit {
        "with an explicit deny in an identity-based policy".to_string()
    } else {
        format!("because no identity-based policy allows the {action} action")
    };
    let msg = format!("User: {who} is not authorized to perform: {action} on resource: {resource} {why}");
    if json {
        ServiceError::sender("AccessDeniedException", msg).with_status(400)
    } else {
        ServiceError::sender("AccessDenied", msg).with_status(403)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_iso8601() {
        assert_eq!(super::iso8601(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(super::iso8601(1_767_225_600 + 3661), "2026-01-01T01:01:01Z");
    }
}
