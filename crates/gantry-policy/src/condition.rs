//! The `Condition` element: one [`Condition`] per operator and key. Within a statement every
//! condition must hold (AND); a key's several policy values are alternatives (OR), or, for a
//! negated operator, must all differ (NOR). A key the request lacks makes a condition false,
//! except for negated operators (true), `...IfExists` (true) and `Null` (which tests exactly
//! that); `ForAllValues:` over a missing or empty key is true, `ForAnyValue:` false.

use crate::{Context, substitute, wildcard};
use std::net::IpAddr;

/// The comparison an operator makes, negations aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    NumericEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    ArnEquals,
    ArnLike,
    Null,
}

/// A multivalued key's qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    None,
    ForAnyValue,
    ForAllValues,
}

/// One operator applied to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub compare: Compare,
    pub negated: bool,
    pub if_exists: bool,
    pub set: SetOp,
    pub key: String,
    pub values: Vec<String>,
}

/// Parses an operator's name (`ForAnyValue:StringNotLikeIfExists`): `None` if IAM has no such
/// operator.
pub fn parse_operator(name: &str) -> Option<(Compare, bool, bool, SetOp)> {
    let (set, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
        (SetOp::ForAnyValue, r)
    } else if let Some(r) = name.strip_prefix("ForAllValues:") {
        (SetOp::ForAllValues, r)
    } else {
        (SetOp::None, name)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    use Compare::*;
    let (compare, negated) = match base {
        "StringEquals" => (StringEquals, false),
        "StringNotEquals" => (StringEquals, true),
        "StringEqualsIgnoreCase" => (StringEqualsIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (StringEqualsIgnoreCase, true),
        "StringLike" => (StringLike, false),
        "StringNotLike" => (StringLike, true),
        "NumericEquals" => (NumericEquals, false),
        "NumericNotEquals" => (NumericEquals, true),
        "NumericLessThan" => (NumericLessThan, false),
        "NumericLessThanEquals" => (NumericLessThanEquals, false),
        "NumericGreaterThan" => (NumericGreaterThan, false),
        "NumericGreaterThanEquals" => (NumericGreaterThanEquals, false),
        "DateEquals" => (DateEquals, false),
        "DateNotEquals" => (DateEquals, true),
        "DateLessThan" => (DateLessThan, false),
        "DateLessThanEquals" => (DateLessThanEquals, false),
        "DateGreaterThan" => (DateGreaterThan, false),
        "DateGreaterThanEquals" => (DateGreaterThanEquals, false),
        "Bool" => (Bool, false),
        "BinaryEquals" => (BinaryEquals, false),
        "IpAddress" => (IpAddress, false),
        "NotIpAddress" => (IpAddress, true),
        "ArnEquals" => (ArnEquals, false),
        "ArnNotEquals" => (ArnEquals, true),
        "ArnLike" => (ArnLike, false),
        "ArnNotLike" => (ArnLike, true),
        "Null" if !if_exists && set == SetOp::None => (Null, false),
        _ => return None,
    };
    Some((compare, negated, if_exists, set))
}

impl Condition {
    /// Whether the condition holds in `ctx`.
    pub fn holds(&self, ctx: &Context) -> bool {
        let got = ctx.get(&self.key);
        if self.compare == Compare::Null {
            // "true": the key must be absent; "false": present.
            let absent = got.is_none_or(|v| v.is_empty());
            return self.values.iter().any(|v| v.eq_ignore_ascii_case("true") == absent);
        }
        let Some(got) = got else {
            return match self.set {
                _ if self.if_exists => true,
                SetOp::ForAllValues => true,
                SetOp::ForAnyValue => false,
                SetOp::None => self.negated,
            };
        };
        // Does one request value equal (match) any of the policy's values?
        let hit = |v: &str| self.values.iter().any(|p| self.compare_one(p, v, ctx));
        match (self.set, self.negated) {
            (SetOp::ForAllValues, false) => got.iter().all(|v| hit(v)),
            (SetOp::ForAllValues, true) => got.iter().all(|v| !hit(v)),
            (SetOp::ForAnyValue, false) => got.iter().any(|v| hit(v)),
            (SetOp::ForAnyValue, true) => got.iter().any(|v| !hit(v)),
            (SetOp::None, false) => got.iter().any(|v| hit(v)),
            (SetOp::None, true) => !got.iter().any(|v| hit(v)),
        }
    }

    fn compare_one(&self, policy: &str, value: &str, ctx: &Context) -> bool {
        use Compare::*;
        match self.compare {
            StringEquals | StringEqualsIgnoreCase | StringLike | ArnEquals | ArnLike => {
                let Some(p) = substitute(policy, ctx) else { return false };
                match self.compare {
                    StringEquals => p == value,
                    StringEqualsIgnoreCase => p.to_lowercase() == value.to_lowercase(),
                    StringLike => wildcard::matches(&p, value),
                    // ArnEquals takes wildcards too, as IAM's does.
                    _ => arn_like(&p, value),
                }
            }
            NumericEquals
            | NumericLessThan
            | NumericLessThanEquals
            | NumericGreaterThan
            | NumericGreaterThanEquals => {
                let (Ok(p), Ok(v)) = (policy.trim().parse::<f64>(), value.trim().parse::<f64>()) else {
                    return false;
                };
                ordered(self.compare, v.partial_cmp(&p))
            }
            DateEquals | DateLessThan | DateLessThanEquals | DateGreaterThan | DateGreaterThanEquals => {
                let (Some(p), Some(v)) = (parse_date(policy), parse_date(value)) else { return false };
                ordered(self.compare, v.partial_cmp(&p))
            }
            Bool => policy.eq_ignore_ascii_case(value),
            BinaryEquals => policy == value,
            IpAddress => in_cidr(policy, value),
            Null => false,
        }
    }
}

/// Each of the six colon-separated parts matched on its own; a value that is not an ARN matches
/// nothing.
fn arn_like(pattern: &str, value: &str) -> bool {
    if value.splitn(6, ':').count() < 6 || !value.starts_with("arn:") {
        return false;
    }
    wildcard::matches_arn(pattern, value)
}

fn ordered(c: Compare, o: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::*;
    let Some(o) = o else { return false };
    match c {
        Compare::NumericEquals | Compare::DateEquals => o == Equal,
        Compare::NumericLessThan | Compare::DateLessThan => o == Less,
        Compare::NumericLessThanEquals | Compare::DateLessThanEquals => o != Greater,
        Compare::NumericGreaterThan | Compare::DateGreaterThan => o == Greater,
        Compare::NumericGreaterThanEquals | Compare::DateGreaterThanEquals => o != Less,
        _ => false,
    }
}

/// A date as IAM takes one: ISO 8601 (`2026-01-02`, `2026-01-02T03:04:05Z`, with fractions or an
/// offset) or epoch seconds. Returns epoch seconds.
pub fn parse_date(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return Some(n);
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) { t.parse().ok() } else { None }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || d < 1 || d > gantry_core::civil::days_in_month(y, mo as u32) as i64 {
        return None;
    }
    let days = gantry_core::civil::days_from_civil(y, mo as u32, d as u32);
    let mut secs = (days * 86400) as f64;
    if b.len() == 10 {
        return Some(secs);
    }
    if b[10] != b'T' || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    secs += (h * 3600 + mi * 60 + se) as f64;
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        secs += format!("0.{}", &frac[..n]).parse::<f64>().ok()?;
        rest = &frac[n..];
    }
    match rest {
        "Z" | "" => Some(secs),
        off if (off.starts_with('+') || off.starts_with('-')) && off.len() == 6 && &off[3..4] == ":" => {
            let oh: i64 = off[1..3].parse().ok()?;
            let om: i64 = off[4..6].parse().ok()?;
            let delta = (oh * 3600 + om * 60) as f64;
            Some(if off.starts_with('+') { secs - delta } else { secs + delta })
        }
        _ => None,
    }
}

/// Whether `ip` lies in `cidr` (`10.0.0.0/8`, `2001:db8::/32`, or one address).
pub fn in_cidr(cidr: &str, ip: &str) -> bool {
    let Ok(ip) = ip.trim().parse::<IpAddr>() else { return false };
    let (net, bits) = match cidr.trim().split_once('/') {
        Some((n, b)) => match b.parse::<u32>() {
            Ok(b) => (n, Some(b)),
            Err(_) => return false,
        },
        None => (cidr.trim(), None),
    };
    let Ok(net) = net.parse::<IpAddr>() else { return false };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            (u32::from(n) & mask) == (u32::from(a) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            (u128::from(n) & mask) == (u128::from(a) & mask)
        }
        _ => false,
    }
}
