//! CloudWatch Logs filter patterns (FilterLogEvents' `filterPattern`), for unstructured and JSON
//! log events.
//!
//! * Terms: `ERROR Exception` matches events containing every term (case-sensitive); a quoted
//!   `"phrase with spaces"` is one term. `?ERROR ?WARN` matches events containing any of the
//!   `?` terms; `-term` excludes events containing it (`ERROR -Retry`).
//! * JSON: `{ $.level = "error" && $.ms > 100 }`: selectors `$.a.b`, `$.list[0]`; `=` and `!=`
//!   against strings (quoted or bare, `*` a wildcard) or numbers; `<`, `<=`, `>`, `>=` against
//!   numbers; `IS TRUE`, `IS FALSE`, `IS NULL`, `NOT EXISTS`; `&&`, `||` and parentheses. An
//!   event that is not a JSON object never matches a JSON pattern.
//!
//! Space-delimited patterns (`[ip, user, ...]`) are refused as not supported yet.

use serde_json::Value;

/// A parsed filter pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Everything matches (the empty pattern).
    All,
    Terms {
        all: Vec<String>,
        any: Vec<String>,
        none: Vec<String>,
    },
    /// A JSON pattern, and literals every message it matches contains (see [`needles`]).
    Json(Expr, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp { path: Vec<Step>, op: Op, value: Operand },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    IsTrue,
    IsFalse,
    IsNull,
    NotExists,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    None,
    Number(f64),
    Str(String),
}

/// Why a pattern does not parse: the message InvalidParameterException carries.
pub fn invalid() -> String {
    "Invalid filter pattern".to_string()
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let t = text.trim();
        if t.is_empty() || t == "\"\"" {
            return Ok(Pattern::All);
        }
        if t.starts_with('{') {
            let inner = t.strip_prefix('{').and_then(|s| s.strip_suffix('}')).ok_or_else(invalid)?;
            let toks = lex(inner)?;
            let mut p = Parser { toks, at: 0 };
            let e = p.or()?;
            if p.at != p.toks.len() {
                return Err(invalid());
            }
            let mut n = Vec::new();
            needles(&e, &mut n);
            return Ok(Pattern::Json(e, n));
        }
        if t.starts_with('[') {
            return Err("Space-delimited filter patterns are not supported by Gantry yet".to_string());
        }
        let (mut all, mut any, mut none) = (Vec::new(), Vec::new(), Vec::new());
        let mut chars = t.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let Some(&c) = chars.peek() else { break };
            let bucket = match c {
                '?' => {
                    chars.next();
                    &mut any
                }
                '-' => {
                    chars.next();
                    &mut none
                }
                _ => &mut all,
            };
            let mut term = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => term.extend(chars.next()),
                        _ => term.push(c),
                    }
                }
                if !closed {
                    return Err(invalid());
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    term.push(c);
                    chars.next();
                }
            }
            if !term.is_empty() {
                bucket.push(term);
            }
        }
        Ok(Pattern::Terms { all, any, none })
    }

    pub fn matches(&self, message: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Terms { all, any, none } => {
                all.iter().all(|t| message.contains(t.as_str()))
                    && (any.is_empty() || any.iter().any(|t| message.contains(t.as_str())))
                    && !none.iter().any(|t| message.contains(t.as_str()))
            }
            // A message without escapes holds its string values as they are: one lacking a
            // literal the pattern needs cannot match, and is not parsed.
            Pattern::Json(_, needles)
                if !message.contains('\\') && needles.iter().any(|n| !message.contains(n.as_str())) =>
            {
                false
            }
            Pattern::Json(e, _) => match serde_json::from_str::<Value>(message.trim()) {
                Ok(v @ Value::Object(_)) => eval(e, &v),
                _ => false,
            },
        }
    }
}

/// Literals a message must contain for `e` to match it, when the message has no escapes: the
/// parts of the strings compared with `=` (around their `*`s) on every path through `&&`.
fn needles(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::And(a, b) => {
            needles(a, out);
            needles(b, out);
        }
        Expr::Cmp { op: Op::Eq, value: Operand::Str(s), .. } => {
            out.extend(s.split('*').filter(|p| !p.is_empty()).map(str::to_string));
        }
        _ => {}
    }
}

fn eval(e: &Expr, v: &Value) -> bool {
    match e {
        Expr::And(a, b) => eval(a, v) && eval(b, v),
        Expr::Or(a, b) => eval(a, v) || eval(b, v),
        Expr::Cmp { path, op, value } => {
            let mut cur = Some(v);
            for s in path {
                cur = match (s, cur) {
                    (Step::Key(k), Some(Value::Object(m))) => m.get(k),
                    (Step::Index(i), Some(Value::Array(a))) => a.get(*i),
                    _ => None,
                };
            }
            match op {
                Op::NotExists => cur.is_none(),
                Op::IsNull => cur == Some(&Value::Null),
                Op::IsTrue => cur == Some(&Value::Bool(true)),
                Op::IsFalse => cur == Some(&Value::Bool(false)),
                _ => {
                    let Some(cur) = cur else { return false };
                    compare(cur, *op, value)
                }
            }
        }
    }
}

fn compare(cur: &Value, op: Op, value: &Operand) -> bool {
    match value {
        Operand::Number(n) => {
            let Some(x) = cur.as_f64() else { return false };
            match op {
                Op::Eq => x == *n,
                Op::Ne => x != *n,
                Op::Lt => x < *n,
                Op::Le => x <= *n,
                Op::Gt => x > *n,
                Op::Ge => x >= *n,
                _ => false,
            }
        }
        Operand::Str(s) => {
            let text = match cur {
                Value::String(t) => t.clone(),
                Value::Bool(b) => b.to_string(),
                _ => return false,
            };
            let m = wildcard(s, &text);
            match op {
                Op::Eq => m,
                Op::Ne => !m,
                _ => false,
            }
        }
        Operand::None => false,
    }
}

/// `*` matches any run of characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.len() >= p.len() && rest.ends_with(p);
        } else {
            let Some(at) = rest.find(p) else { return false };
            rest = &rest[at + p.len()..];
        }
    }
    true
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Path(Vec<Step>),
    Op(Op),
    And,
    Or,
    Open,
    Close,
    Str(String),
    Word(String),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            '&' if b.get(i + 1) == Some(&'&') => {
                out.push(Tok::And);
                i += 2
            }
            '|' if b.get(i + 1) == Some(&'|') => {
                out.push(Tok::Or);
                i += 2
            }
            '=' => {
                out.push(Tok::Op(Op::Eq));
                i += 1
            }
            '!' if b.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op(Op::Ne));
                i += 2
            }
            '<' | '>' => {
                let eq = b.get(i + 1) == Some(&'=');
                out.push(Tok::Op(match (c, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                }));
                i += if eq { 2 } else { 1 };
            }
            '"' => {
                let mut t = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(invalid()),
                        Some('"') => break,
                        Some('\\') => {
                            t.extend(b.get(i + 1));
                            i += 2;
                            continue;
                        }
                        Some(&c) => t.push(c),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Tok::Str(t));
            }
            '$' => {
                let start = i;
                i += 1;
                while i < b.len() && !b[i].is_whitespace() && !"=!<>()&|".contains(b[i]) {
                    i += 1;
                }
                let text: String = b[start..i].iter().collect();
                out.push(Tok::Path(path(&text)?));
            }
            _ => {
                let start = i;
                while i < b.len() && !b[i].is_whitespace() && !"=!<>()&|\"".contains(b[i]) {
                    i += 1;
                }
                out.push(Tok::Word(b[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

fn path(text: &str) -> Result<Vec<Step>, String> {
    let rest = text.strip_prefix('$').ok_or_else(invalid)?;
    let mut steps = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut k = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' || c == '[' {
                        break;
                    }
                    k.push(c);
                    chars.next();
                }
                if k.is_empty() {
                    return Err(invalid());
                }
                steps.push(Step::Key(k));
            }
            '[' => {
                let mut n = String::new();
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    n.push(c);
                }
                steps.push(Step::Index(n.trim().parse().map_err(|_| invalid())?));
            }
            _ => return Err(invalid()),
        }
    }
    if steps.is_empty() {
        return Err(invalid());
    }
    Ok(steps)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut e = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.at += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut e = self.atom()?;
        while self.peek() == Some(&Tok::And) {
            self.at += 1;
            e = Expr::And(Box::new(e), Box::new(self.atom()?));
        }
        Ok(e)
    }
    fn atom(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Open) => {
                let e = self.or()?;
                if self.next() != Some(Tok::Close) {
                    return Err(invalid());
                }
                Ok(e)
            }
            Some(Tok::Path(path)) => match self.next() {
                Some(Tok::Op(op)) => {
                    let value = match self.next() {
                        Some(Tok::Str(s)) => Operand::Str(s),
                        Some(Tok::Word(w)) => match w.parse::<f64>() {
                            Ok(n) => Operand::Number(n),
                            Err(_) if matches!(op, Op::Eq | Op::Ne) => Operand::Str(w),
                            Err(_) => return Err(invalid()),
                        },
                        _ => return Err(invalid()),
                    };
                    if matches!(value, Operand::Str(_)) && !matches!(op, Op::Eq | Op::Ne) {
                        return Err(invalid());
                    }
                    Ok(Expr::Cmp { path, op, value })
                }
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("IS") => {
                    let op = match self.next() {
                        Some(Tok::Word(v)) if v.eq_ignore_ascii_case("TRUE") => Op::IsTrue,
                        Some(Tok::Word(v)) if v.eq_ignore_ascii_case("FALSE") => Op::IsFalse,
                        Some(Tok::Word(v)) if v.eq_ignore_ascii_case("NULL") => Op::IsNull,
                        _ => return Err(invalid()),
                    };
                    Ok(Expr::Cmp { path, op, value: Operand::None })
                }
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NOT") => match self.next() {
                    Some(Tok::Word(v)) if v.eq_ignore_ascii_case("EXISTS") => {
                        Ok(Expr::Cmp { path, op: Op::NotExists, value: Operand::None })
                    }
                    _ => Err(invalid()),
                },
                _ => Err(invalid()),
            },
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, cases: &[(&str, bool)]) {
        let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        for (msg, want) in cases {
            assert_eq!(p.matches(msg), *want, "pattern {pattern:?} on {msg:?}");
        }
    }

    #[test]
    fn terms_phrases_or_and_exclusion() {
        check("", &[("anything", true)]);
        check("ERROR", &[("[ERROR] disk", true), ("error", false)]);
        check("ERROR disk", &[("ERROR disk full", true), ("ERROR net", false)]);
        check("\"disk full\"", &[("ERROR disk full", true), ("disk is full", false)]);
        check("?ERROR ?WARN", &[("WARN x", true), ("ERROR y", true), ("INFO", false)]);
        check("ERROR -retry", &[("ERROR fatal", true), ("ERROR will retry", false)]);
    }

    #[test]
    fn json_patterns() {
        let p = r#"{ $.level = "error" && $.ms > 100 }"#;
        check(
            p,
            &[
                (r#"{"level":"error","ms":150}"#, true),
                (r#"{"level":"error","ms":50}"#, false),
                (r#"{"level":"info","ms":150}"#, false),
                ("level=error ms=150", false),
            ],
        );
        check(
            r#"{ ($.a = 1 || $.b != "x*") && $.c.d[1] >= 2.5 }"#,
            &[
                (r#"{"a":1,"b":"xy","c":{"d":[0,3]}}"#, true),
                (r#"{"a":2,"b":"xy","c":{"d":[0,3]}}"#, false),
                (r#"{"a":2,"b":"y","c":{"d":[0,3]}}"#, true),
                (r#"{"a":1,"c":{"d":[0,1]}}"#, false),
            ],
        );
        check(r#"{ $.ok IS TRUE }"#, &[(r#"{"ok":true}"#, true), (r#"{"ok":false}"#, false)]);
        check(r#"{ $.gone NOT EXISTS }"#, &[(r#"{"x":1}"#, true), (r#"{"gone":null}"#, false)]);
        check(r#"{ $.v IS NULL }"#, &[(r#"{"v":null}"#, true), (r#"{"v":1}"#, false)]);
        check(r#"{ $.user = bob }"#, &[(r#"{"user":"bob"}"#, true)]);
        // The literal shortcut never hides a match written with escapes.
        check(
            r#"{ $.level = "err*r" && $.n > 1 }"#,
            &[
                (r#"{"level":"error","n":2}"#, true),
                (r#"{"level":"\u0065rror","n":2}"#, true),
                (r#"{"level":"info","n":2}"#, false),
            ],
        );
        assert_eq!(
            Pattern::parse(r#"{ $.a = "x*yz" && ($.b = "q" || $.c = "r") }"#).unwrap(),
            Pattern::parse(r#"{ $.a = "x*yz" && ($.b = "q" || $.c = "r") }"#).unwrap()
        );
        let Pattern::Json(_, n) = Pattern::parse(r#"{ $.a = "x*yz" && ($.b = "q" || $.c = "r") }"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(n, ["x", "yz"]);
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in ["{ $.a = }", "{ $.a > \"x\" }", "\"open", "{ $.a = 1", "{ a = 1 }", "{ $.a = 1 && }"] {
            assert!(Pattern::parse(p).is_err(), "{p}");
        }
    }
}
