//! Metric math: GetMetricData's and alarms' `Expression`s, parsed and evaluated over the series
//! of the other queries.
//!
//! Supported: numbers, query IDs, `+ - * / ^`, comparisons (`> < >= <= == !=`, giving 1 or 0),
//! `AND`/`&&`, `OR`/`||`, `NOT`, parentheses, arrays `[a, b]`, `METRICS()` (every MetricStat
//! query, or those whose ID or label contains a string argument), and the functions `SUM`, `AVG`,
//! `MIN`, `MAX` (over an array: a series, point by point; over one series: a scalar), `FILL`
//! (a value, `REPEAT` or `LINEAR`, over the query's timestamps), `IF(condition, a[, b])`,
//! `RATE`, `DIFF`, `ABS`, `CEIL`, `FLOOR`, `PERIOD`. A series meets another on the timestamps
//! both have; a scalar meets every point. Errors are CloudWatch's "Error in expression" messages.

use std::collections::BTreeMap;

/// A time series: (epoch seconds, value), ascending.
pub type Series = Vec<(i64, f64)>;

/// What an expression evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Scalar(f64),
    /// A series and its label.
    Series(Series, String),
    Array(Vec<(Series, String)>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Str(String),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("number {n}"),
        Tok::Ident(i) => format!("'{i}'"),
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::Op(o) => format!("'{o}'"),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::Comma => "','".into(),
    }
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '[' => {
                out.push(Tok::LBracket);
                i += 1
            }
            ']' => {
                out.push(Tok::RBracket);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '"' | '\'' => {
                let end =
                    s[i + 1..].find(c).ok_or_else(|| format!("Unterminated string at position {}", i + 1))?;
                out.push(Tok::Str(s[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            '0'..='9' | '.' => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_digit()
                        || b[i] == b'.'
                        || b[i] == b'e'
                        || b[i] == b'E'
                        || ((b[i] == b'-' || b[i] == b'+')
                            && i > start
                            && (b[i - 1] == b'e' || b[i - 1] == b'E')))
                {
                    i += 1;
                }
                let n: f64 = s[start..i].parse().map_err(|_| format!("Invalid number '{}'", &s[start..i]))?;
                out.push(Tok::Num(n));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Tok::Ident(s[start..i].to_string()));
            }
            _ => {
                let two = s.get(i..i + 2).unwrap_or("");
                let op = match two {
                    ">=" => Some(">="),
                    "<=" => Some("<="),
                    "==" => Some("=="),
                    "!=" => Some("!="),
                    "&&" => Some("AND"),
                    "||" => Some("OR"),
                    _ => None,
                };
                if let Some(op) = op {
                    out.push(Tok::Op(op));
                    i += 2;
                    continue;
                }
                let op = match c {
                    '+' => "+",
                    '-' => "-",
                    '*' => "*",
                    '/' => "/",
                    '^' => "^",
                    '>' => ">",
                    '<' => "<",
                    _ => return Err(format!("Unrecognized character '{c}' at position {}", i + 1)),
                };
                out.push(Tok::Op(op));
                i += 1;
            }
        }
    }
    Ok(out)
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Id(String),
    Str(String),
    Keyword(String),
    Array(Vec<Expr>),
    Unary(&'static str, Box<Expr>),
    Binary(&'static str, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

const FUNCTIONS: &[&str] =
    &["SUM", "AVG", "MIN", "MAX", "FILL", "IF", "RATE", "DIFF", "ABS", "CEIL", "FLOOR", "PERIOD", "METRICS"];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            _ => Err(format!("Expected {what}")),
        }
    }
    fn op_is(&self, ops: &[&str]) -> Option<&'static str> {
        match self.peek() {
            Some(Tok::Op(o)) if ops.contains(o) => Some(o),
            Some(Tok::Ident(w)) if ops.contains(&w.to_ascii_uppercase().as_str()) => {
                ["AND", "OR"].into_iter().find(|k| w.eq_ignore_ascii_case(k))
            }
            _ => None,
        }
    }
    fn binary(&mut self, level: usize) -> Result<Expr, String> {
        const LEVELS: [&[&str]; 5] =
            [&["OR"], &["AND"], &[">", "<", ">=", "<=", "==", "!="], &["+", "-"], &["*", "/"]];
        if level == LEVELS.len() {
            return self.power();
        }
        let mut left = self.binary(level + 1)?;
        while let Some(op) = self.op_is(LEVELS[level]) {
            self.at += 1;
            let right = self.binary(level + 1)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn power(&mut self) -> Result<Expr, String> {
        let base = self.unary()?;
        if self.op_is(&["^"]).is_some() {
            self.at += 1;
            let exp = self.power()?;
            return Ok(Expr::Binary("^", Box::new(base), Box::new(exp)));
        }
        Ok(base)
    }
    fn unary(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(Tok::Op("-")) => {
                self.at += 1;
                Ok(Expr::Unary("-", Box::new(self.unary()?)))
            }
            Some(Tok::Op("+")) => {
                self.at += 1;
                self.unary()
            }
            Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("NOT") => {
                self.at += 1;
                Ok(Expr::Unary("NOT", Box::new(self.unary()?)))
            }
            _ => self.primary(),
        }
    }
    fn list(&mut self, close: Tok) -> Result<Vec<Expr>, String> {
        let mut items = Vec::new();
        if self.peek() == Some(&close) {
            self.at += 1;
            return Ok(items);
        }
        loop {
            items.push(self.binary(0)?);
            match self.next() {
                Some(Tok::Comma) => continue,
                Some(t) if t == close => return Ok(items),
                _ => return Err("Expected ',' or a closing bracket".into()),
            }
        }
    }
    fn primary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Num(n)) => Ok(Expr::Num(n)),
            Some(Tok::Str(s)) => Ok(Expr::Str(s)),
            Some(Tok::LParen) => {
                let e = self.binary(0)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(e)
            }
            Some(Tok::LBracket) => Ok(Expr::Array(self.list(Tok::RBracket)?)),
            Some(Tok::Ident(name)) => {
                if self.peek() == Some(&Tok::LParen) {
                    let upper = name.to_ascii_uppercase();
                    if !FUNCTIONS.contains(&upper.as_str()) {
                        return Err(format!("Unknown function {name}"));
                    }
                    self.at += 1;
                    let args = self.list(Tok::RParen)?;
                    return Ok(Expr::Call(upper, args));
                }
                if ["REPEAT", "LINEAR"].iter().any(|k| name.eq_ignore_ascii_case(k)) {
                    return Ok(Expr::Keyword(name.to_ascii_uppercase()));
                }
                Ok(Expr::Id(name))
            }
            Some(t) => Err(format!("Unexpected {}", show(&t))),
            None => Err("Unexpected end of expression".into()),
        }
    }
}

/// Parses an expression.
pub fn parse(s: &str) -> Result<Expr, String> {
    let mut p = Parser { toks: lex(s)?, at: 0 };
    let e = p.binary(0)?;
    if p.at < p.toks.len() {
        return Err(format!("Unexpected {}", show(&p.toks[p.at])));
    }
    Ok(e)
}

/// The query IDs an expression reads.
pub fn ids(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Id(i) => out.push(i.clone()),
        Expr::Array(xs) | Expr::Call(_, xs) => xs.iter().for_each(|x| ids(x, out)),
        Expr::Unary(_, x) => ids(x, out),
        Expr::Binary(_, a, b) => {
            ids(a, out);
            ids(b, out);
        }
        _ => {}
    }
}

/// What evaluation reads: the other queries' values, the MetricStat queries (for `METRICS()`),
/// the timestamps the query's range and period make (for `FILL`), and the period.
pub struct Env<'a> {
    pub values: &'a BTreeMap<String, Val>,
    /// (id, label) of each MetricStat query, in request order.
    pub metric_queries: &'a [(String, String)],
    pub grid: &'a [i64],
    pub period: i64,
}

fn pointwise(a: &Series, b: &Series, f: impl Fn(f64, f64) -> Option<f64>) -> Series {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                if let Some(v) = f(a[i].1, b[j].1) {
                    out.push((a[i].0, v));
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn apply_op(op: &str, x: f64, y: f64) -> Option<f64> {
    let b = |c: bool| if c { 1.0 } else { 0.0 };
    finite(match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" => x / y,
        "^" => x.powf(y),
        ">" => b(x > y),
        "<" => b(x < y),
        ">=" => b(x >= y),
        "<=" => b(x <= y),
        "==" => b(x == y),
        "!=" => b(x != y),
        "AND" => b(x != 0.0 && y != 0.0),
        "OR" => b(x != 0.0 || y != 0.0),
        _ => return None,
    })
}

fn map_series(v: Val, f: &dyn Fn(&Series) -> Series) -> Val {
    match v {
        Val::Series(s, l) => Val::Series(f(&s), l),
        Val::Array(xs) => Val::Array(xs.into_iter().map(|(s, l)| (f(&s), l)).collect()),
        other => other,
    }
}

fn binary(op: &'static str, a: Val, b: Val) -> Result<Val, String> {
    Ok(match (a, b) {
        (Val::Scalar(x), Val::Scalar(y)) => Val::Scalar(apply_op(op, x, y).unwrap_or(f64::NAN)),
        (Val::Scalar(x), other) => map_series(other, &|s| {
            s.iter().filter_map(|&(t, v)| apply_op(op, x, v).map(|r| (t, r))).collect()
        }),
        (other, Val::Scalar(y)) => map_series(other, &|s| {
            s.iter().filter_map(|&(t, v)| apply_op(op, v, y).map(|r| (t, r))).collect()
        }),
        (Val::Series(a, l), Val::Series(b, _)) => {
            Val::Series(pointwise(&a, &b, |x, y| apply_op(op, x, y)), l)
        }
        (Val::Array(xs), Val::Series(b, _)) => Val::Array(
            xs.into_iter().map(|(a, l)| (pointwise(&a, &b, |x, y| apply_op(op, x, y)), l)).collect(),
        ),
        (Val::Series(a, _), Val::Array(ys)) => Val::Array(
            ys.into_iter().map(|(b, l)| (pointwise(&a, &b, |x, y| apply_op(op, x, y)), l)).collect(),
        ),
        (Val::Array(_), Val::Array(_)) => {
            return Err(format!("The operator {op} cannot be applied to two arrays of time series"));
        }
    })
}

fn reduce(name: &str, vals: &[f64]) -> Option<f64> {
    if vals.is_empty() {
        return None;
    }
    Some(match name {
        "SUM" => vals.iter().sum(),
        "AVG" => vals.iter().sum::<f64>() / vals.len() as f64,
        "MIN" => vals.iter().copied().fold(f64::INFINITY, f64::min),
        _ => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// `reduce` of the series' values at each of their timestamps, in time order. Series in time
/// order (what queries give) are reduced in one pass each over the union of their timestamps,
/// each timestamp's values taken in array order as `reduce` takes them, so the results are the
/// same to the bit; anything else goes through a map of timestamps.
pub fn reduce_across(name: &str, xs: &[(Series, String)]) -> Series {
    let ordered = |s: &Series| s.windows(2).all(|w| w[0].0 < w[1].0);
    if !xs.iter().all(|(s, _)| ordered(s)) {
        let mut at: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for (s, _) in xs {
            for &(t, v) in s {
                at.entry(t).or_default().push(v);
            }
        }
        return at.into_iter().filter_map(|(t, vs)| reduce(name, &vs).map(|r| (t, r))).collect();
    }
    let mut times: Vec<i64> = Vec::new();
    for (s, _) in xs {
        if s.len() == times.len() && s.iter().zip(&times).all(|(p, t)| p.0 == *t) {
            continue;
        }
        let mut union = Vec::with_capacity(times.len().max(s.len()));
        let (mut i, mut j) = (0, 0);
        while i < times.len() || j < s.len() {
            let next = match (times.get(i), s.get(j)) {
                (Some(&a), Some(&(b, _))) if a == b => {
                    i += 1;
                    j += 1;
                    a
                }
                (Some(&a), Some(&(b, _))) if a < b => {
                    i += 1;
                    a
                }
                (Some(&a), None) => {
                    i += 1;
                    a
                }
                (_, Some(&(b, _))) => {
                    j += 1;
                    b
                }
                (None, None) => break,
            };
            union.push(next);
        }
        times = union;
    }
    // Each timestamp's running reduction and how many values it took, folded as `reduce` folds.
    let start = match name {
        "SUM" | "AVG" => std::iter::empty::<f64>().sum(),
        "MIN" => f64::INFINITY,
        _ => f64::NEG_INFINITY,
    };
    let mut acc = vec![(start, 0usize); times.len()];
    for (s, _) in xs {
        let mut slot = 0;
        for &(t, v) in s {
            while times[slot] < t {
                slot += 1;
            }
            let (a, n) = &mut acc[slot];
            *a = match name {
                "SUM" | "AVG" => *a + v,
                "MIN" => a.min(v),
                _ => a.max(v),
            };
            *n += 1;
        }
    }
    times
        .into_iter()
        .zip(acc)
        .filter(|(_, (_, n))| *n > 0)
        .map(|(t, (a, n))| (t, if name == "AVG" { a / n as f64 } else { a }))
        .collect()
}

fn series_of(v: Val, what: &str) -> Result<Vec<(Series, String)>, String> {
    match v {
        Val::Series(s, l) => Ok(vec![(s, l)]),
        Val::Array(xs) => Ok(xs),
        Val::Scalar(_) => Err(format!("{what} expects a time series, not a scalar")),
    }
}

/// Evaluates an expression.
pub fn eval(e: &Expr, env: &Env<'_>) -> Result<Val, String> {
    match e {
        Expr::Num(n) => Ok(Val::Scalar(*n)),
        Expr::Id(id) => env.values.get(id).cloned().ok_or_else(|| format!("Unrecognized query ID '{id}'")),
        Expr::Str(s) => Err(format!("Unexpected string \"{s}\"")),
        Expr::Keyword(k) => Err(format!("{k} may only be FILL's second argument")),
        Expr::Array(items) => {
            let mut out = Vec::new();
            for x in items {
                out.extend(series_of(eval(x, env)?, "An array")?);
            }
            Ok(Val::Array(out))
        }
        Expr::Unary(op, x) => {
            let v = eval(x, env)?;
            Ok(match *op {
                "-" => binary("-", Val::Scalar(0.0), v)?,
                _ => binary("==", v, Val::Scalar(0.0))?,
            })
        }
        Expr::Binary(op, a, b) => binary(op, eval(a, env)?, eval(b, env)?),
        Expr::Call(name, args) => call(name, args, env),
    }
}

fn arity(name: &str, args: &[Expr], min: usize, max: usize) -> Result<(), String> {
    if args.len() < min || args.len() > max {
        return Err(format!(
            "{name} takes {} argument(s), {} given",
            if min == max { min.to_string() } else { format!("{min} to {max}") },
            args.len()
        ));
    }
    Ok(())
}

fn call(name: &str, args: &[Expr], env: &Env<'_>) -> Result<Val, String> {
    match name {
        "METRICS" => {
            arity(name, args, 0, 1)?;
            let filter = match args.first() {
                Some(Expr::Str(s)) => Some(s.as_str()),
                None => None,
                _ => return Err("METRICS takes a string filter".into()),
            };
            let mut out = Vec::new();
            for (id, label) in env.metric_queries {
                if filter.is_none_or(|f| id.contains(f) || label.contains(f))
                    && let Some(Val::Series(s, l)) = env.values.get(id)
                {
                    out.push((s.clone(), l.clone()));
                }
            }
            Ok(Val::Array(out))
        }
        "SUM" | "AVG" | "MIN" | "MAX" => {
            arity(name, args, 1, 1)?;
            match eval(&args[0], env)? {
                Val::Scalar(x) => Ok(Val::Scalar(x)),
                Val::Series(s, _) => {
                    let vals: Vec<f64> = s.iter().map(|&(_, v)| v).collect();
                    Ok(Val::Scalar(reduce(name, &vals).unwrap_or(f64::NAN)))
                }
                Val::Array(xs) => Ok(Val::Series(reduce_across(name, &xs), String::new())),
            }
        }
        "FILL" => {
            arity(name, args, 2, 2)?;
            let v = eval(&args[0], env)?;
            let how = match &args[1] {
                Expr::Keyword(k) => k.clone(),
                other => match eval(other, env)? {
                    Val::Scalar(x) => format!("={x}"),
                    _ => return Err("FILL's second argument must be a number, REPEAT or LINEAR".into()),
                },
            };
            let grid = env.grid;
            Ok(map_series(v, &|s| fill(s, grid, &how)))
        }
        "IF" => {
            arity(name, args, 2, 3)?;
            let cond = eval(&args[0], env)?;
            let a = eval(&args[1], env)?;
            let b = match args.get(2) {
                Some(x) => Some(eval(x, env)?),
                None => None,
            };
            let cond_series = series_of(cond, "IF")?;
            let pick = |cond: &Series, label: String| -> (Series, String) {
                let value_at = |v: &Option<Val>, t: i64| -> Option<f64> {
                    match v {
                        Some(Val::Scalar(x)) => Some(*x),
                        Some(Val::Series(s, _)) => {
                            s.binary_search_by_key(&t, |&(k, _)| k).ok().map(|i| s[i].1)
                        }
                        _ => None,
                    }
                };
                let a = Some(a.clone());
                let s = cond
                    .iter()
                    .filter_map(|&(t, c)| {
                        if c != 0.0 { value_at(&a, t) } else { value_at(&b, t) }.map(|v| (t, v))
                    })
                    .collect();
                (s, label)
            };
            if cond_series.len() == 1 {
                let (s, l) = cond_series.into_iter().next().unwrap_or_default();
                let (s, l) = pick(&s, l);
                return Ok(Val::Series(s, l));
            }
            Ok(Val::Array(cond_series.into_iter().map(|(s, l)| pick(&s, l)).collect()))
        }
        "RATE" | "DIFF" => {
            arity(name, args, 1, 1)?;
            let v = eval(&args[0], env)?;
            series_of(v.clone(), name)?;
            let rate = name == "RATE";
            Ok(map_series(v, &|s| {
                s.windows(2)
                    .filter_map(|w| {
                        let d = w[1].1 - w[0].1;
                        let r = if rate { d / (w[1].0 - w[0].0) as f64 } else { d };
                        finite(r).map(|r| (w[1].0, r))
                    })
                    .collect()
            }))
        }
        "ABS" | "CEIL" | "FLOOR" => {
            arity(name, args, 1, 1)?;
            let f = match name {
                "ABS" => f64::abs,
                "CEIL" => f64::ceil,
                _ => f64::floor,
            };
            Ok(match eval(&args[0], env)? {
                Val::Scalar(x) => Val::Scalar(f(x)),
                v => map_series(v, &|s| s.iter().map(|&(t, v)| (t, f(v))).collect()),
            })
        }
        "PERIOD" => {
            arity(name, args, 1, 1)?;
            eval(&args[0], env)?;
            Ok(Val::Scalar(env.period as f64))
        }
        _ => Err(format!("Unknown function {name}")),
    }
}

fn fill(s: &Series, grid: &[i64], how: &str) -> Series {
    let mut out = Vec::with_capacity(grid.len());
    let mut j = 0;
    for &t in grid {
        while j < s.len() && s[j].0 < t {
            j += 1;
        }
        if j < s.len() && s[j].0 == t {
            out.push((t, s[j].1));
            continue;
        }
        let before = (j > 0).then(|| s[j - 1]);
        let after = s.get(j).copied();
        let v = match how {
            "REPEAT" => before.or(after).map(|p| p.1),
            "LINEAR" => match (before, after) {
                (Some(a), Some(b)) => Some(a.1 + (b.1 - a.1) * (t - a.0) as f64 / (b.0 - a.0) as f64),
                (Some(a), None) => Some(a.1),
                (None, Some(b)) => Some(b.1),
                _ => None,
            },
            constant => constant.strip_prefix('=').and_then(|x| x.parse().ok()),
        };
        if let Some(v) = v {
            out.push((t, v));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_eval(expr: &str, values: &BTreeMap<String, Val>, grid: &[i64]) -> Result<Val, String> {
        let mq: Vec<(String, String)> = values.keys().map(|k| (k.clone(), format!("L{k}"))).collect();
        let env = Env { values, metric_queries: &mq, grid, period: 60 };
        eval(&parse(expr)?, &env)
    }

    fn s(points: &[(i64, f64)]) -> Val {
        Val::Series(points.to_vec(), String::new())
    }

    #[test]
    fn arithmetic_functions_and_fill() {
        let mut v = BTreeMap::new();
        v.insert("m1".to_string(), s(&[(0, 1.0), (60, 2.0), (120, 4.0)]));
        v.insert("m2".to_string(), s(&[(0, 10.0), (120, 20.0)]));
        let grid = [0, 60, 120, 180];
        assert_eq!(env_eval("m1 + m2 * 2", &v, &grid).unwrap(), s(&[(0, 21.0), (120, 44.0)]));
        assert_eq!(env_eval("(m1 + 1) ^ 2 / 2", &v, &grid).unwrap(), s(&[(0, 2.0), (60, 4.5), (120, 12.5)]));
        assert_eq!(env_eval("SUM([m1, m2])", &v, &grid).unwrap(), s(&[(0, 11.0), (60, 2.0), (120, 24.0)]));
        assert_eq!(env_eval("AVG(m1)", &v, &grid).unwrap(), Val::Scalar(7.0 / 3.0));
        assert_eq!(env_eval("MAX(METRICS())", &v, &grid).unwrap(), s(&[(0, 10.0), (60, 2.0), (120, 20.0)]));
        assert_eq!(
            env_eval("FILL(m2, 0)", &v, &grid).unwrap(),
            s(&[(0, 10.0), (60, 0.0), (120, 20.0), (180, 0.0)])
        );
        assert_eq!(
            env_eval("FILL(m2, REPEAT)", &v, &grid).unwrap(),
            s(&[(0, 10.0), (60, 10.0), (120, 20.0), (180, 20.0)])
        );
        assert_eq!(
            env_eval("FILL(m2, LINEAR)", &v, &grid).unwrap(),
            s(&[(0, 10.0), (60, 15.0), (120, 20.0), (180, 20.0)])
        );
        assert_eq!(env_eval("IF(m1 > 1, m1, 0)", &v, &grid).unwrap(), s(&[(0, 0.0), (60, 2.0), (120, 4.0)]));
        assert_eq!(env_eval("IF(m1 >= 2 AND m1 < 4, 1)", &v, &grid).unwrap(), s(&[(60, 1.0)]));
        assert_eq!(env_eval("RATE(m1)", &v, &grid).unwrap(), s(&[(60, 1.0 / 60.0), (120, 2.0 / 60.0)]));
        assert_eq!(env_eval("DIFF(m1)", &v, &grid).unwrap(), s(&[(60, 1.0), (120, 2.0)]));
        assert_eq!(
            env_eval("-m1 + PERIOD(m1)", &v, &grid).unwrap(),
            s(&[(0, 59.0), (60, 58.0), (120, 56.0)])
        );
        match env_eval("METRICS() * 2", &v, &grid).unwrap() {
            Val::Array(xs) => assert_eq!(xs.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(env_eval("m1 / 0", &v, &grid).unwrap(), s(&[]));
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let v = BTreeMap::new();
        assert_eq!(env_eval("m9 + 1", &v, &[]).unwrap_err(), "Unrecognized query ID 'm9'");
        assert_eq!(parse("SUM([m1,)").unwrap_err(), "Unexpected ')'");
        assert_eq!(parse("m1 $ 2").unwrap_err(), "Unrecognized character '$' at position 4");
        assert_eq!(parse("FOO(m1)").unwrap_err(), "Unknown function FOO");
        assert!(parse("(m1").is_err());
    }

    /// The reduction across an array, computed per timestamp from a map (what `SUM(METRICS())`
    /// did before `reduce_across`).
    fn reduce_by_map(name: &str, xs: &[(Series, String)]) -> Vec<(i64, u64)> {
        let mut at: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for (s, _) in xs {
            for &(t, v) in s {
                at.entry(t).or_default().push(v);
            }
        }
        at.into_iter().filter_map(|(t, vs)| reduce(name, &vs).map(|r| (t, r.to_bits()))).collect()
    }

    #[test]
    fn reductions_across_series_agree_with_reducing_each_timestamp() {
        let mut seed = 42u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let values = [0.0, -0.0, 1.5, -2.0, 1e300, 1e-300, 7.25, f64::INFINITY];
        // Series sharing one grid, sparse series on their own timestamps, empty ones; and one
        // out of time order (taken through the map).
        let mut arrays: Vec<Vec<(Series, String)>> = Vec::new();
        for case in 0..40 {
            let mut xs = Vec::new();
            for k in 0..(1 + next(12)) {
                let mut s: Series = Vec::new();
                for t in 0..200i64 {
                    if case % 4 == 0 || next(3) == 0 {
                        s.push((
                            t * 60,
                            values[next(values.len() as u64) as usize] + next(1000) as f64 / 7.0,
                        ));
                    }
                }
                if case % 10 == 9 && k == 0 {
                    s.reverse();
                }
                xs.push((s, format!("s{k}")));
            }
            arrays.push(xs);
        }
        arrays.push(vec![]);
        arrays.push(vec![(vec![], "e".into()), (vec![(60, -0.0)], "z".into())]);
        let mut points = 0;
        for xs in &arrays {
            for name in ["SUM", "AVG", "MIN", "MAX"] {
                let want = reduce_by_map(name, xs);
                let got: Vec<(i64, u64)> =
                    reduce_across(name, xs).iter().map(|&(t, v)| (t, v.to_bits())).collect();
                assert_eq!(got, want, "{name} over {} series", xs.len());
                points += want.len();
            }
        }
        assert!(points > 10_000, "{points}");
        // A value that exists only in one sparse series still counts, alone, at its timestamp.
        let sparse =
            vec![(vec![(0, 1.0), (120, 2.0)], "a".into()), (vec![(60, 5.0), (120, 3.0)], "b".into())];
        assert_eq!(reduce_across("SUM", &sparse), vec![(0, 1.0), (60, 5.0), (120, 5.0)]);
        assert_eq!(reduce_across("AVG", &sparse), vec![(0, 1.0), (60, 5.0), (120, 2.5)]);
    }
}
