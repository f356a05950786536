//! IAM's policy language: policy documents parsed once into [`Policy`], and evaluated against a
//! request ([`Request`]: action, resource, principal, context keys) as IAM evaluates them.
//!
//! The rules ([`evaluate`]): an explicit `Deny` in any policy wins; otherwise the identity
//! policies must allow the request, and when the caller is a session with session policies,
//! those must allow it too; a resource policy (Secrets Manager's, a role's trust policy) that
//! allows the principal is enough on its own within the account. Actions match
//! case-insensitively, resources case-sensitively, both with `*` and `?`; conditions
//! ([`condition`]) cover the String, Numeric, Date, Bool, Binary, IpAddress, Arn and Null
//! operators with `...IfExists` and the `ForAnyValue:`/`ForAllValues:` qualifiers; `${...}`
//! policy variables are replaced from the request context.
//!
//! This crate is pure: no I/O, no clock (the caller puts `aws:CurrentTime` in the context), no
//! knowledge of where policies are stored or of any service.

pub mod condition;
mod parse;
pub mod wildcard;

pub use parse::{Kind, ParseError};

use std::collections::BTreeMap;

/// A statement's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// The outcome of an evaluation, with the three values IAM distinguishes (its error messages
/// differ between the two denials).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Nothing allowed the request.
    ImplicitDeny,
    /// A statement denied it.
    ExplicitDeny,
}

/// A list of patterns, or its negation (`NotAction`, `NotResource`, `NotPrincipal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns {
    pub not: bool,
    pub values: Vec<String>,
}

/// The `Principal` element: `"*"`, or patterns per kind (`AWS`, `Service`, `Federated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principals {
    pub not: bool,
    /// `None` for `"*"`.
    pub by_kind: Option<BTreeMap<String, Vec<String>>>,
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub principal: Option<Principals>,
    pub action: Patterns,
    /// `None` in a trust policy (which names no resource).
    pub resource: Option<Patterns>,
    pub conditions: Vec<condition::Condition>,
}

/// A parsed policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub version: String,
    pub statements: Vec<Statement>,
}

impl Policy {
    /// Parses a document as IAM validates one of `kind`; the error is IAM's
    /// `MalformedPolicyDocument` message.
    pub fn parse(doc: &str, kind: Kind) -> Result<Policy, ParseError> {
        parse::parse(doc, kind)
    }
}

/// Who makes a request, as resource and trust policies' `Principal` elements see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrincipalId {
    /// The account (`"123456789012"`), matched by `"AWS": "123456789012"` or its root ARN.
    pub account: String,
    /// ARNs it is known by: a user's ARN; for an assumed-role session the session ARN and the
    /// role's ARN.
    pub arns: Vec<String>,
    /// A service principal (`ecs-tasks.amazonaws.com`) when a service assumes a role.
    pub service: Option<String>,
}

/// The request context: condition keys and their values (a single-valued key has one).
/// Keys are matched case-insensitively, as IAM does; store them lowercased via [`Context::set`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    keys: BTreeMap<String, Vec<String>>,
}

impl Context {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a key (replacing its values).
    pub fn set(&mut self, key: &str, values: Vec<String>) {
        self.keys.insert(key.to_ascii_lowercase(), values);
    }

    /// Sets a single-valued key.
    pub fn set1(&mut self, key: &str, value: impl Into<String>) {
        self.set(key, vec![value.into()]);
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.set1(key, value);
        self
    }

    /// A key's values, if the request has it.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            self.keys.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
        } else {
            self.keys.get(key).map(Vec::as_slice)
        }
    }

    pub fn extend(&mut self, other: &Context) {
        for (k, v) in &other.keys {
            self.keys.insert(k.clone(), v.clone());
        }
    }
}

/// What is asked: may `principal` do `action` on `resource`, in `context`?
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `service:Operation`, e.g. `ecs:CreateCluster`.
    pub action: &'a str,
    /// The resource's ARN, or `*` for actions on no particular resource.
    pub resource: &'a str,
    pub principal: &'a PrincipalId,
    pub context: &'a Context,
}

/// What one policy says about a request: whether a statement denies it, and whether one allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    pub allowed: bool,
    pub denied: bool,
}

impl Policy {
    /// What this policy's statements say about `req`.
    pub fn verdict(&self, req: &Request<'_>) -> Verdict {
        let mut v = Verdict::default();
        for s in &self.statements {
            if (s.effect == Effect::Allow && v.allowed) || !s.matches(req) {
                continue;
            }
            match s.effect {
                Effect::Allow => v.allowed = true,
                Effect::Deny => {
                    v.denied = true;
                    return v;
                }
            }
        }
        v
    }
}

impl Statement {
    /// Whether the statement applies to `req` (its effect aside).
    pub fn matches(&self, req: &Request<'_>) -> bool {
        let action_hit = self.action.values.iter().any(|p| wildcard::matches_ignore_case(p, req.action));
        if action_hit == self.action.not {
            return false;
        }
        if let Some(r) = &self.resource {
            let hit = r.values.iter().any(|p| match substitute(p, req.context) {
                Some(p) => wildcard::matches_arn(&p, req.resource),
                None => false,
            });
            if hit == r.not {
                return false;
            }
        }
        if let Some(p) = &self.principal {
            let hit = principal_matches(p, req.principal);
            if hit == p.not {
                return false;
            }
        }
        self.conditions.iter().all(|c| c.holds(req.context))
    }
}

fn principal_matches(p: &Principals, who: &PrincipalId) -> bool {
    let Some(kinds) = &p.by_kind else { return true };
    kinds.iter().any(|(kind, values)| match kind.as_str() {
        "AWS" => values.iter().any(|v| {
            v == "*"
                || *v == who.account
                || *v == format!("arn:aws:iam::{}:root", who.account)
                || who.arns.iter().any(|a| wildcard::matches(v, a))
        }),
        "Service" => who.service.as_deref().is_some_and(|s| values.iter().any(|v| v == s)),
        _ => false,
    })
}

/// Replaces `${key}` policy variables from the context, and the escapes `${*}`, `${?}`, `${$}`.
/// A variable the context lacks (or holds several values for) makes the pattern match nothing:
/// `None`.
pub fn substitute(pattern: &str, ctx: &Context) -> Option<String> {
    if !pattern.contains("${") {
        return Some(pattern.to_string());
    }
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Some(out);
        };
        let name = &after[..end];
        // `${key, 'default'}`
        let (key, default) = match name.split_once(',') {
            Some((k, d)) => (k.trim(), Some(d.trim().trim_matches('\''))),
            None => (name.trim(), None),
        };
        match key {
            "*" => out.push('\u{1}'),
            "?" => out.push('\u{2}'),
            "$" => out.push('$'),
            _ => match (ctx.get(key), default) {
                (Some([one]), _) => out.push_str(one),
                (_, Some(d)) => out.push_str(d),
                _ => return None,
            },
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The policies that bear on one request, and IAM's decision.
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicySet<'a> {
    /// The principal's identity-based policies (inline and attached, its groups' too).
    pub identity: &'a [&'a Policy],
    /// A session's policies: when `Some`, they must allow the request too (an empty list allows
    /// nothing, as a session with no policy gets only what its role grants, so pass `None`).
    pub session: Option<&'a [&'a Policy]>,
    /// The resource's own policy (Secrets Manager's resource policy), if it has one.
    pub resource: Option<&'a Policy>,
}

/// IAM's decision for one request within one account: explicit Deny anywhere wins; else the
/// resource policy allowing it is enough; else the identity policies must allow it and, for a
/// session with session policies, those too.
pub fn evaluate(set: &PolicySet<'_>, req: &Request<'_>) -> Decision {
    let mut identity = Verdict::default();
    for p in set.identity {
        let v = p.verdict(req);
        if v.denied {
            return Decision::ExplicitDeny;
        }
        identity.allowed |= v.allowed;
    }
    let mut session_ok = true;
    if let Some(session) = set.session {
        session_ok = false;
        for p in session {
            let v = p.verdict(req);
            if v.denied {
                return Decision::ExplicitDeny;
            }
            session_ok |= v.allowed;
        }
    }
    let mut resource_ok = false;
    if let Some(r) = set.resource {
        let v = r.verdict(req);
        if v.denied {
            return Decision::ExplicitDeny;
        }
        resource_ok = v.allowed;
    }
    if resource_ok || (identity.allowed && session_ok) { Decision::Allow } else { Decision::ImplicitDeny }
}
