//! The authorizer the front door asks ([`gantry_ports::Authorizer`]): a principal's identity
//! policies, compiled once and cached until IAM next changes, evaluated by `gantry-policy`
//! with the principal's own condition keys added to the request's.

use crate::{Iam, Kind};
use gantry_policy::{Context, Decision, Kind as DocKind, Policy, PolicySet, PrincipalId, Request};
use gantry_ports::{AuthContext, Authorizer, Principal, PrincipalKind};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What a principal brings to every decision: its policies and its own context keys.
#[derive(Debug)]
struct Compiled {
    generation: u64,
    policies: Vec<Policy>,
    /// `aws:PrincipalTag/*` from the user's or role's tags.
    tags: Vec<(String, String)>,
    /// The ARN `aws:PrincipalArn` holds (a session's role), and the principal's other names.
    principal_arn: String,
}

/// IAM as the front door's authorizer.
pub struct IamAuthorizer {
    iam: Arc<Iam>,
    cache: RwLock<HashMap<String, Arc<Compiled>>>,
}

impl std::fmt::Debug for IamAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamAuthorizer").finish_non_exhaustive()
    }
}

impl IamAuthorizer {
    pub fn new(iam: Arc<Iam>) -> Self {
        IamAuthorizer { iam, cache: RwLock::new(HashMap::new()) }
    }

    fn compiled(&self, p: &Principal) -> Arc<Compiled> {
        let generation = self.iam.generation();
        if let Some(c) = self.cache.read().unwrap_or_else(|e| e.into_inner()).get(&p.arn)
            && c.generation == generation
        {
            return c.clone();
        }
        let a = p.account.as_str();
        let (entity, principal_arn) = match &p.kind {
            PrincipalKind::User { name } => {
                (self.iam.entity(a, Kind::User, name).ok().flatten(), p.arn.clone())
            }
            PrincipalKind::AssumedRole { role_name, role_arn, .. } => {
                (self.iam.entity(a, Kind::Role, role_name).ok().flatten(), role_arn.clone())
            }
            PrincipalKind::Root => (None, p.arn.clone()),
        };
        let (policies, tags) = match entity {
            Some((e, _)) => {
                // Stored documents were validated when written.
                let policies = self
                    .iam
                    .documents(a, &e)
                    .iter()
                    .filter_map(|d| Policy::parse(d, DocKind::Identity).ok())
                    .collect();
                (policies, e.tags.clone())
            }
            None => (Vec::new(), Vec::new()),
        };
        let c = Arc::new(Compiled { generation, policies, tags, principal_arn });
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(p.arn.clone(), c.clone());
        c
    }
}

impl Authorizer for IamAuthorizer {
    fn authorize(
        &self,
        principal: &Principal,
        action: &str,
        resource: &str,
        context: &AuthContext,
        resource_policy: Option<&str>,
    ) -> Decision {
        if principal.is_root() {
            return Decision::Allow;
        }
        let c = self.compiled(principal);
        let mut ctx = Context::new();
        ctx.set1("aws:PrincipalArn", c.principal_arn.clone());
        ctx.set1("aws:PrincipalAccount", principal.account.clone());
        ctx.set1("aws:userid", principal.user_id.clone());
        match &principal.kind {
            PrincipalKind::User { name } => {
                ctx.set1("aws:username", name.clone());
                ctx.set1("aws:PrincipalType", "User");
            }
            PrincipalKind::AssumedRole { .. } => ctx.set1("aws:PrincipalType", "AssumedRole"),
            PrincipalKind::Root => ctx.set1("aws:PrincipalType", "Account"),
        }
        for (k, v) in c.tags.iter().chain(principal.session_tags.iter()) {
            ctx.set1(&format!("aws:PrincipalTag/{k}"), v.clone());
        }
        ctx.extend(context);
        let identity: Vec<&Policy> = c.policies.iter().collect();
        let session: Option<Vec<&Policy>> = principal.session_policies.as_ref().map(|s| s.iter().collect());
        let resource_policy = resource_policy.and_then(|d| Policy::parse(d, DocKind::Resource).ok());
        let mut arns = vec![principal.arn.clone()];
        if c.principal_arn != principal.arn {
            arns.push(c.principal_arn.clone());
        }
        // A resource policy naming the account (its root) delegates to the account's IAM
        // policies rather than granting every principal in it: only ARNs match here.
        let who = PrincipalId { account: String::new(), arns, service: None };
        gantry_policy::evaluate(
            &PolicySet {
                identity: &identity,
                session: session.as_deref(),
                resource: resource_policy.as_ref(),
            },
            &Request { action, resource, principal: &who, context: &ctx },
        )
    }
}
