//! Policy documents into [`Policy`], validated as IAM validates them, with IAM's
//! `MalformedPolicyDocument` messages.

use crate::condition::{Condition, parse_operator};
use crate::{Effect, Patterns, Policy, Principals, Statement};
use serde_json::Value;
use std::collections::BTreeMap;

/// Which kind of policy a document is: each has its own required and forbidden elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Attached to a user, group or role, or passed as a session policy: no `Principal`,
    /// `Resource` required.
    Identity,
    /// A role's trust policy: `Principal` required, no `Resource`.
    Trust,
    /// A resource's own policy (Secrets Manager): `Principal` and `Resource`.
    Resource,
}

/// Why a document is not a valid policy: IAM's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(m: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(m.into()))
}

pub(crate) fn parse(doc: &str, kind: Kind) -> Result<Policy, ParseError> {
    let Ok(v) = serde_json::from_str::<Value>(doc) else { return err("Syntax errors in policy.") };
    let Value::Object(top) = v else { return err("Syntax errors in policy.") };
    let mut version = "2008-10-17".to_string();
    let mut statements = None;
    for (k, v) in &top {
        match k.as_str() {
            "Version" => match v.as_str() {
                Some(s @ ("2012-10-17" | "2008-10-17")) => version = s.to_string(),
                _ => return err(format!("The policy failed legacy parsing: unknown Version {v}.")),
            },
            "Statement" => statements = Some(v),
            "Id" => {}
            other => return err(format!("Policy has an unknown field {other}.")),
        }
    }
    let Some(statements) = statements else { return err("Missing required field Statement") };
    let list: Vec<&Value> = match statements {
        Value::Array(a) => a.iter().collect(),
        o @ Value::Object(_) => vec![o],
        _ => return err("Syntax errors in policy."),
    };
    if list.is_empty() {
        return err("Missing required field Statement");
    }
    let statements = list.into_iter().map(|s| statement(s, kind)).collect::<Result<Vec<_>, _>>()?;
    Ok(Policy { version, statements })
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, ParseError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Bool(b) => Ok(b.to_string()),
                Value::Number(n) => Ok(n.to_string()),
                _ => err(format!("Syntax errors in policy: {what} must be a string or a list of strings.")),
            })
            .collect(),
        Value::Bool(b) => Ok(vec![b.to_string()]),
        Value::Number(n) => Ok(vec![n.to_string()]),
        _ => err(format!("Syntax errors in policy: {what} must be a string or a list of strings.")),
    }
}

fn statement(v: &Value, kind: Kind) -> Result<Statement, ParseError> {
    let Value::Object(o) = v else { return err("Syntax errors in policy.") };
    let mut sid = None;
    let mut effect = None;
    let (mut action, mut resource, mut principal) = (None, None, None);
    let mut conditions = Vec::new();
    for (k, v) in o {
        match k.as_str() {
            "Sid" => sid = v.as_str().map(str::to_string),
            "Effect" => {
                effect = Some(match v.as_str() {
                    Some("Allow") => Effect::Allow,
                    Some("Deny") => Effect::Deny,
                    _ => return err(format!("Invalid effect: {}", v.as_str().unwrap_or(&v.to_string()))),
                })
            }
            "Action" | "NotAction" => {
                if action.is_some() {
                    return err("Statement cannot contain both Action and NotAction.");
                }
                let values = strings(v, k)?;
                for a in &values {
                    if a != "*" && !a.contains(':') {
                        return err(
                            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
                        );
                    }
                }
                action = Some(Patterns { not: k == "NotAction", values });
            }
            "Resource" | "NotResource" => {
                if resource.is_some() {
                    return err("Statement cannot contain both Resource and NotResource.");
                }
                if kind == Kind::Trust {
                    return err("Has prohibited field Resource");
                }
                let values = strings(v, k)?;
                for r in &values {
                    if r != "*" && !r.starts_with("arn:") {
                        return err(format!("Resource {r} must be in ARN format or \"*\"."));
                    }
                }
                resource = Some(Patterns { not: k == "NotResource", values });
            }
            "Principal" | "NotPrincipal" => {
                if kind == Kind::Identity {
                    return err("Policy document should not specify a principal.");
                }
                principal = Some(principals(v, k == "NotPrincipal")?);
            }
            "Condition" => conditions = condition_block(v)?,
            other => return err(format!("Statement has an unknown field {other}.")),
        }
    }
    let Some(effect) = effect else { return err("Missing required field Effect") };
    let Some(action) = action else { return err("Policy statement must contain actions.") };
    if resource.is_none() && kind != Kind::Trust {
        return err("Policy statement must contain resources.");
    }
    if principal.is_none() && kind == Kind::Trust {
        return err("Missing required field Principal");
    }
    Ok(Statement { sid, effect, principal, action, resource, conditions })
}

fn principals(v: &Value, not: bool) -> Result<Principals, ParseError> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals { not, by_kind: None }),
        Value::Object(o) => {
            let mut by_kind = BTreeMap::new();
            for (k, v) in o {
                if !matches!(k.as_str(), "AWS" | "Service" | "Federated" | "CanonicalUser") {
                    return err(format!("Invalid principal in policy: \"{k}\""));
                }
                by_kind.insert(k.clone(), strings(v, "Principal")?);
            }
            Ok(Principals { not, by_kind: Some(by_kind) })
        }
        _ => err("Invalid principal in policy: Principal must be \"*\" or an object"),
    }
}

fn condition_block(v: &Value) -> Result<Vec<Condition>, ParseError> {
    let Value::Object(ops) = v else { return err("Syntax errors in policy: Condition must be an object.") };
    let mut out = Vec::new();
    for (op, keys) in ops {
        let Some((compare, negated, if_exists, set)) = parse_operator(op) else {
            return err(format!("Invalid Condition type : {op}."));
        };
        let Value::Object(keys) = keys else {
            return err(format!("Syntax errors in policy: Condition {op} must be an object."));
        };
        for (key, values) in keys {
            if !key.contains(':') {
                return err("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.");
            }
            out.push(Condition {
                compare,
                negated,
                if_exists,
                set,
                key: key.clone(),
                values: strings(values, key)?,
            });
        }
    }
    Ok(out)
}
