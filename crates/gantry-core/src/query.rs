//! A first form of ECS's cluster query language, for ListContainerInstances `filter`:
//! conjunctions (`and`) of `attribute:NAME == VALUE`, `attribute:NAME != VALUE`,
//! `attribute:NAME exists` and `attribute:NAME !exists`. The placement engine brings the full
//! language (comparisons, `in`, patterns, `or`, `not`, parentheses, built-in fields).

use crate::error::{EcsError, Result};

/// One condition on an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// A parsed filter: every condition must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter(pub Vec<Condition>);

fn err(expr: &str, what: &str) -> EcsError {
    EcsError::invalid(format!("Invalid filter expression '{expr}': {what}"))
}

impl Filter {
    pub fn parse(expr: &str) -> Result<Filter> {
        let mut out = Vec::new();
        for clause in split_and(expr) {
            let c = clause.trim();
            let Some(rest) = c.strip_prefix("attribute:") else {
                return Err(err(
                    expr,
                    &format!(
                        "'{c}' must start with attribute:NAME (only attribute conditions are supported here)"
                    ),
                ));
            };
            let tokens: Vec<&str> = rest.split_whitespace().collect();
            let cond = match tokens.as_slice() {
                [name, "exists"] => Condition::Exists(name.to_string()),
                [name, "!exists"] => Condition::NotExists(name.to_string()),
                [name, "==", value] => Condition::Equals(name.to_string(), value.to_string()),
                [name, "!=", value] => Condition::NotEquals(name.to_string(), value.to_string()),
                _ => {
                    return Err(err(
                        expr,
                        &format!(
                            "cannot read '{c}'; expected attribute:NAME == VALUE, != VALUE, exists or !exists"
                        ),
                    ));
                }
            };
            out.push(cond);
        }
        if out.is_empty() {
            return Err(err(expr, "it is empty"));
        }
        Ok(Filter(out))
    }

    /// Whether attributes (name, optional value) satisfy the filter.
    pub fn matches<'a>(&self, attrs: impl Fn(&str) -> Option<Option<&'a str>>) -> bool {
        self.0.iter().all(|c| match c {
            Condition::Equals(n, v) => attrs(n).flatten() == Some(v.as_str()),
            Condition::NotEquals(n, v) => attrs(n).flatten() != Some(v.as_str()),
            Condition::Exists(n) => attrs(n).is_some(),
            Condition::NotExists(n) => attrs(n).is_none(),
        })
    }
}

fn split_and(expr: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find(" and ") {
        parts.push(&rest[..i]);
        rest = &rest[i + 5..];
    }
    parts.push(rest);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs<'a>(list: &'a [(&'a str, Option<&'a str>)]) -> impl Fn(&str) -> Option<Option<&'a str>> + 'a {
        move |n| list.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
    }

    #[test]
    fn table() {
        let a = [("ecs.availability-zone", Some("zone-b")), ("stack", Some("prod")), ("gpu", None)];
        let cases = [
            ("attribute:ecs.availability-zone == zone-b", true),
            ("attribute:ecs.availability-zone == zone-a", false),
            ("attribute:stack != dev", true),
            ("attribute:stack != prod", false),
            ("attribute:gpu exists", true),
            ("attribute:nope exists", false),
            ("attribute:nope !exists", true),
            ("attribute:stack == prod and attribute:gpu exists", true),
            ("attribute:stack == prod and attribute:nope exists", false),
        ];
        for (expr, want) in cases {
            assert_eq!(Filter::parse(expr).unwrap().matches(attrs(&a)), want, "{expr}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        for bad in ["", "stack == prod", "attribute:stack =~ p.*", "attribute:stack =="] {
            let e = Filter::parse(bad).unwrap_err();
            assert!(e.message.contains("Invalid filter expression"), "{bad}: {e}");
        }
    }
}
