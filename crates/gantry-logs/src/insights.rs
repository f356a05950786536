//! CloudWatch Logs Insights queries, a useful subset: the parser and the evaluator.
//!
//! A query is commands joined by `|`: `fields`, `display`, `filter` (comparisons, `and`/`or`/
//! `not`, `like` with a substring or a `/regex/`, `=~`, `in [...]`), `parse` (a glob with `*`
//! and `as` names, or a regex with named groups), `sort` (`asc`/`desc`), `limit`, and `stats`
//! with `count()`/`count(*)`/`count(f)`, `count_distinct`, `sum`, `avg`, `min`, `max` and
//! `pct(f, p)`, `by` fields and `bin(5m)`. Fields are `@timestamp`, `@message`, `@logStream`,
//! `@log`, `@ingestionTime`, those a command made, and those discovered in JSON messages (dotted
//! paths, as Insights flattens them). A query that does not parse is refused with where it went
//! wrong ([`QueryError`]'s offsets become MalformedQueryException's `queryCompileError`).
//!
//! Evaluation is pure: [`Query::run`] takes the events and returns the rows; the service runs
//! it on a thread of its own and keeps the results (see `lib.rs`).

use crate::segments::Event;
use regex::Regex;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Why a query string was refused, with the character offsets of the offending part.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryError {
    pub message: String,
    pub start: usize,
    pub end: usize,
}

/// A value: Insights compares numbers as numbers and everything else as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Str(String),
    Num(f64),
    /// Milliseconds since the epoch, shown as `2026-12-04 10:00:00.000`.
    Time(i64),
}

impl Val {
    fn num(&self) -> Option<f64> {
        match self {
            Val::Num(n) => Some(*n),
            Val::Time(t) => Some(*t as f64),
            Val::Str(s) => s.trim().parse().ok(),
            Val::Null => None,
        }
    }

    fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Num(n) => *n != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::Time(_) => true,
        }
    }

    /// The text GetQueryResults shows.
    pub fn render(&self) -> Option<String> {
        match self {
            Val::Null => None,
            Val::Str(s) => Some(s.clone()),
            Val::Num(n) => Some(render_num(*n)),
            Val::Time(t) => Some(render_time(*t)),
        }
    }

    fn text(&self) -> String {
        self.render().unwrap_or_default()
    }
}

fn render_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

/// `2026-12-04 10:00:00.123`, the form Insights gives `@timestamp`.
pub fn render_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = gantry_core::civil::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms.rem_euclid(1000)
    )
}

fn compare(a: &Val, b: &Val) -> Option<Ordering> {
    if matches!(a, Val::Null) || matches!(b, Val::Null) {
        return None;
    }
    let numeric = matches!(a, Val::Num(_) | Val::Time(_)) || matches!(b, Val::Num(_) | Val::Time(_));
    if numeric && let (Some(x), Some(y)) = (a.num(), b.num()) {
        return x.partial_cmp(&y);
    }
    Some(a.text().cmp(&b.text()))
}

// ---- lexer ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    /// A duration such as `5m`, in milliseconds.
    Dur(i64),
    Regex(String),
    Op(&'static str),
}

#[derive(Debug, Clone)]
struct Spanned {
    tok: Tok,
    start: usize,
    end: usize,
}

const OPS: &[&str] = &[
    "=~", "!=", "<=", ">=", "==", "=", "<", ">", "+", "-", "*", "/", "%", "(", ")", ",", "|", "[", "]", "!",
];

fn unexpected(text: &str, start: usize, end: usize, what: &str) -> QueryError {
    let (line, col) = line_col(text, start);
    QueryError {
        message: format!("unexpected symbol found {what} at line {line} and position {col}"),
        start,
        end,
    }
}

fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn lex(text: &str) -> Result<Vec<Spanned>, QueryError> {
    let b = text.as_bytes();
    let mut out: Vec<Spanned> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = if c == b'"' || c == b'\'' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&d) = b.get(i) else {
                    return Err(unexpected(text, start, b.len(), "an unterminated string"));
                };
                if d == c {
                    i += 1;
                    break;
                }
                if d == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = text[i..].chars().next().unwrap_or(' ');
                s.push(ch);
                i += ch.len_utf8();
            }
            Tok::Str(s)
        } else if c == b'`' {
            let Some(len) = text[i + 1..].find('`') else {
                return Err(unexpected(text, start, b.len(), "an unterminated `name`"));
            };
            i += len + 2;
            Tok::Ident(text[start + 1..i - 1].to_string())
        } else if c == b'/' && regex_allowed(&out) {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'/' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            if j >= b.len() {
                return Err(unexpected(text, start, b.len(), "an unterminated /regex/"));
            }
            i = j + 1;
            Tok::Regex(text[start + 1..j].to_string())
        } else if c.is_ascii_digit() || c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let n: f64 = text[start..i].parse().map_err(|_| unexpected(text, start, i, &text[start..i]))?;
            let unit_end = i + b[i..].iter().take_while(|x| x.is_ascii_alphabetic()).count();
            if unit_end > i {
                let unit = &text[i..unit_end];
                let ms = match unit {
                    "ms" => 1.0,
                    "s" | "sec" | "second" | "seconds" => 1000.0,
                    "m" | "min" | "minute" | "minutes" => 60_000.0,
                    "h" | "hr" | "hour" | "hours" => 3_600_000.0,
                    "d" | "day" | "days" => 86_400_000.0,
                    "w" | "week" | "weeks" => 604_800_000.0,
                    _ => return Err(unexpected(text, start, unit_end, &text[start..unit_end])),
                };
                i = unit_end;
                Tok::Dur((n * ms) as i64)
            } else {
                Tok::Num(n)
            }
        } else if c.is_ascii_alphabetic() || c == b'@' || c == b'_' || c == b'$' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'@' | b'_' | b'.' | b'$')) {
                i += 1;
            }
            Tok::Ident(text[start..i].to_string())
        } else if let Some(op) = OPS.iter().find(|o| text[i..].starts_with(**o)) {
            i += op.len();
            Tok::Op(op)
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(unexpected(text, start, start + ch.len_utf8(), &ch.to_string()));
        };
        out.push(Spanned { tok, start, end: i });
    }
    Ok(out)
}

/// A `/` starts a regex after an operator, a keyword or the field of `parse`; else it divides.
fn regex_allowed(before: &[Spanned]) -> bool {
    match before.last().map(|s| &s.tok) {
        None => true,
        Some(Tok::Op(")")) | Some(Tok::Num(_)) | Some(Tok::Str(_)) | Some(Tok::Dur(_)) => false,
        Some(Tok::Ident(w)) => {
            let kw = matches!(w.to_ascii_lowercase().as_str(), "like" | "and" | "or" | "not" | "filter");
            let parse_field = before.len() >= 2
                && matches!(&before[before.len() - 2].tok, Tok::Ident(p) if p.eq_ignore_ascii_case("parse"));
            kw || parse_field
        }
        Some(_) => true,
    }
}

// ---- syntax ----

#[derive(Debug, Clone)]
pub enum Expr {
    Field(String),
    Lit(Val),
    Regex(Regex),
    Unary(&'static str, Box<Expr>),
    Binary(Box<Expr>, &'static str, Box<Expr>),
    Like(Box<Expr>, Box<Expr>, bool),
    In(Box<Expr>, Vec<Expr>, bool),
    Call(String, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggFn {
    Count,
    CountDistinct,
    Sum,
    Avg,
    Min,
    Max,
    Pct(f64),
}

#[derive(Debug, Clone)]
pub struct Agg {
    pub func: AggFn,
    /// None for `count()` and `count(*)`.
    pub arg: Option<Expr>,
    pub name: String,
}

#[derive(Debug, Clone)]
pub enum Stage {
    Fields(Vec<(Expr, String)>),
    Display(Vec<(Expr, String)>),
    Filter(Expr),
    Parse { field: Expr, re: Regex, names: Vec<String> },
    Sort(Vec<(Expr, bool)>),
    Limit(usize),
    Stats { aggs: Vec<Agg>, by: Vec<(Expr, String)> },
}

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    pub stages: Vec<Stage>,
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Spanned>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|s| &s.tok)
    }

    fn err_here(&self) -> QueryError {
        match self.toks.get(self.pos) {
            Some(s) => unexpected(self.text, s.start, s.end, &self.text[s.start..s.end]),
            None => unexpected(self.text, self.text.len(), self.text.len(), "<EOF>"),
        }
    }

    fn next(&mut self) -> Result<Tok, QueryError> {
        let t = self.peek().cloned().ok_or_else(|| self.err_here())?;
        self.pos += 1;
        Ok(t)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expect_op(&mut self, op: &str) -> Result<(), QueryError> {
        if self.eat_op(op) { Ok(()) } else { Err(self.err_here()) }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(x)) if x.eq_ignore_ascii_case(w)) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn at_stage_end(&self) -> bool {
        matches!(self.peek(), None | Some(Tok::Op("|")))
    }

    fn source(&self, from: usize) -> String {
        let start = self.toks[from].start;
        let end = self.toks[self.pos - 1].end;
        self.text[start..end].trim().to_string()
    }

    fn stage(&mut self) -> Result<Stage, QueryError> {
        let at = self.pos;
        let Tok::Ident(cmd) = self.next()? else {
            self.pos = at;
            return Err(self.err_here());
        };
        match cmd.to_ascii_lowercase().as_str() {
            "fields" => Ok(Stage::Fields(self.named_list()?)),
            "display" => Ok(Stage::Display(self.named_list()?)),
            "filter" => Ok(Stage::Filter(self.or()?)),
            "sort" => {
                let mut keys = Vec::new();
                loop {
                    let e = self.or()?;
                    let desc = if self.eat_word("desc") {
                        true
                    } else {
                        self.eat_word("asc");
                        false
                    };
                    keys.push((e, desc));
                    if !self.eat_op(",") {
                        break;
                    }
                }
                Ok(Stage::Sort(keys))
            }
            "limit" => match self.next()? {
                Tok::Num(n) if n >= 1.0 && n.fract() == 0.0 && n <= 10_000.0 => Ok(Stage::Limit(n as usize)),
                _ => {
                    self.pos -= 1;
                    Err(self.err_here())
                }
            },
            "parse" => self.parse_stage(),
            "stats" => self.stats(),
            _ => {
                self.pos = at;
                Err(self.err_here())
            }
        }
    }

    fn named_list(&mut self) -> Result<Vec<(Expr, String)>, QueryError> {
        let mut out = Vec::new();
        loop {
            let from = self.pos;
            let e = self.or()?;
            let mut name = self.source(from);
            if self.eat_word("as") {
                match self.next()? {
                    Tok::Ident(n) => name = n,
                    _ => {
                        self.pos -= 1;
                        return Err(self.err_here());
                    }
                }
            }
            out.push((e, name));
            if !self.eat_op(",") {
                return Ok(out);
            }
        }
    }

    fn parse_stage(&mut self) -> Result<Stage, QueryError> {
        let field = match self.peek() {
            Some(Tok::Str(_)) | Some(Tok::Regex(_)) => Expr::Field("@message".into()),
            _ => self.primary()?,
        };
        let at = self.pos;
        match self.next()? {
            Tok::Str(glob) => {
                let mut pattern = String::new();
                let mut stars = 0;
                for (i, part) in glob.split('*').enumerate() {
                    if i > 0 {
                        pattern.push_str("(.*?)");
                        stars += 1;
                    }
                    pattern.push_str(&regex::escape(part));
                }
                if glob.ends_with('*') {
                    // The last capture takes the rest of the value.
                    pattern.truncate(pattern.len() - "(.*?)".len());
                    pattern.push_str("(.*)");
                }
                let re = Regex::new(&pattern).map_err(|_| {
                    self.pos = at;
                    self.err_here()
                })?;
                if !self.eat_word("as") {
                    return Err(self.err_here());
                }
                let mut names = Vec::new();
                loop {
                    match self.next()? {
                        Tok::Ident(n) => names.push(n),
                        _ => {
                            self.pos -= 1;
                            return Err(self.err_here());
                        }
                    }
                    if !self.eat_op(",") {
                        break;
                    }
                }
                if names.len() != stars {
                    let s = &self.toks[at];
                    return Err(QueryError {
                        message: format!(
                            "the parse pattern has {stars} wildcards but {} names follow 'as'",
                            names.len()
                        ),
                        start: s.start,
                        end: self.toks[self.pos - 1].end,
                    });
                }
                Ok(Stage::Parse { field, re, names })
            }
            Tok::Regex(r) => {
                let re = Regex::new(&r).map_err(|e| {
                    let s = &self.toks[at];
                    QueryError { message: format!("invalid regex /{r}/: {e}"), start: s.start, end: s.end }
                })?;
                let names: Vec<String> = re.capture_names().flatten().map(str::to_string).collect();
                if names.is_empty() {
                    let s = &self.toks[at];
                    return Err(QueryError {
                        message: "a parse regex needs named groups such as (?<name>...)".into(),
                        start: s.start,
                        end: s.end,
                    });
                }
                Ok(Stage::Parse { field, re, names })
            }
            _ => {
                self.pos = at;
                Err(self.err_here())
            }
        }
    }

    fn stats(&mut self) -> Result<Stage, QueryError> {
        let mut aggs = Vec::new();
        loop {
            let from = self.pos;
            let Tok::Ident(f) = self.next()? else {
                self.pos = from;
                return Err(self.err_here());
            };
            let func = match f.to_ascii_lowercase().as_str() {
                "count" => AggFn::Count,
                "count_distinct" => AggFn::CountDistinct,
                "sum" => AggFn::Sum,
                "avg" => AggFn::Avg,
                "min" => AggFn::Min,
                "max" => AggFn::Max,
                "pct" | "percentile" => AggFn::Pct(0.0),
                _ => {
                    self.pos = from;
                    return Err(self.err_here());
                }
            };
            self.expect_op("(")?;
            let arg: Option<Expr> = if self.eat_op(")") {
                None
            } else if self.eat_op("*") {
                self.expect_op(")")?;
                None
            } else {
                let e = self.or()?;
                let func = if let AggFn::Pct(_) = func {
                    self.expect_op(",")?;
                    let p = match self.next()? {
                        Tok::Num(p) if (0.0..=100.0).contains(&p) => p,
                        _ => {
                            self.pos -= 1;
                            return Err(self.err_here());
                        }
                    };
                    AggFn::Pct(p)
                } else {
                    func
                };
                self.expect_op(")")?;
                let mut name = self.source(from);
                if self.eat_word("as") {
                    name = self.ident()?;
                }
                aggs.push(Agg { func, arg: Some(e), name });
                if self.eat_op(",") {
                    continue;
                }
                break;
            };
            if func != AggFn::Count || arg.is_some() {
                self.pos = from;
                return Err(self.err_here());
            }
            let mut name = self.source(from);
            if self.eat_word("as") {
                name = self.ident()?;
            }
            aggs.push(Agg { func, arg: None, name });
            if !self.eat_op(",") {
                break;
            }
        }
        let by = if self.eat_word("by") { self.named_list()? } else { Vec::new() };
        Ok(Stage::Stats { aggs, by })
    }

    fn ident(&mut self) -> Result<String, QueryError> {
        match self.next()? {
            Tok::Ident(n) => Ok(n),
            _ => {
                self.pos -= 1;
                Err(self.err_here())
            }
        }
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.and()?;
        while self.eat_word("or") {
            e = Expr::Binary(Box::new(e), "or", Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.not()?;
        while self.eat_word("and") {
            e = Expr::Binary(Box::new(e), "and", Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> Result<Expr, QueryError> {
        if self.eat_word("not") || self.eat_op("!") {
            return Ok(Expr::Unary("not", Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, QueryError> {
        let left = self.additive()?;
        let negated = self.eat_word("not");
        if self.eat_word("like") || !negated && self.eat_op("=~") {
            let right = match self.peek() {
                Some(Tok::Regex(_)) | Some(Tok::Str(_)) => self.primary()?,
                _ => return Err(self.err_here()),
            };
            return Ok(Expr::Like(Box::new(left), Box::new(right), negated));
        }
        if self.eat_word("in") {
            self.expect_op("[")?;
            let mut items = Vec::new();
            if !self.eat_op("]") {
                loop {
                    items.push(self.additive()?);
                    if self.eat_op("]") {
                        break;
                    }
                    self.expect_op(",")?;
                }
            }
            return Ok(Expr::In(Box::new(left), items, negated));
        }
        if negated {
            return Err(self.err_here());
        }
        for op in ["=", "==", "!=", "<", "<=", ">", ">="] {
            if self.eat_op(op) {
                let op = if op == "==" { "=" } else { op };
                let op: &'static str = OPS.iter().find(|o| **o == op).copied().unwrap_or("=");
                return Ok(Expr::Binary(Box::new(left), op, Box::new(self.additive()?)));
            }
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.term()?;
        loop {
            let op = if self.eat_op("+") {
                "+"
            } else if self.eat_op("-") {
                "-"
            } else {
                return Ok(e);
            };
            e = Expr::Binary(Box::new(e), op, Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> Result<Expr, QueryError> {
        let mut e = self.primary()?;
        loop {
            let op = if self.eat_op("*") {
                "*"
            } else if self.eat_op("/") {
                "/"
            } else if self.eat_op("%") {
                "%"
            } else {
                return Ok(e);
            };
            e = Expr::Binary(Box::new(e), op, Box::new(self.primary()?));
        }
    }

    fn primary(&mut self) -> Result<Expr, QueryError> {
        let at = self.pos;
        match self.next()? {
            Tok::Num(n) => Ok(Expr::Lit(Val::Num(n))),
            Tok::Dur(ms) => Ok(Expr::Lit(Val::Num(ms as f64))),
            Tok::Str(s) => Ok(Expr::Lit(Val::Str(s))),
            Tok::Regex(r) => Regex::new(&r).map(Expr::Regex).map_err(|e| {
                let s = &self.toks[at];
                QueryError { message: format!("invalid regex /{r}/: {e}"), start: s.start, end: s.end }
            }),
            Tok::Op("-") => Ok(Expr::Unary("-", Box::new(self.primary()?))),
            Tok::Op("(") => {
                let e = self.or()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Ident(name) if self.eat_op("(") => {
                let f = name.to_ascii_lowercase();
                let known = [
                    "bin",
                    "ispresent",
                    "isempty",
                    "isblank",
                    "strlen",
                    "tolower",
                    "toupper",
                    "abs",
                    "floor",
                    "ceil",
                    "concat",
                    "trim",
                    "strcontains",
                ];
                if !known.contains(&f.as_str()) {
                    self.pos = at;
                    return Err(self.err_here());
                }
                let mut args = Vec::new();
                if !self.eat_op(")") {
                    loop {
                        args.push(self.or()?);
                        if self.eat_op(")") {
                            break;
                        }
                        self.expect_op(",")?;
                    }
                }
                Ok(Expr::Call(f, args))
            }
            Tok::Ident(name) => Ok(Expr::Field(name)),
            _ => {
                self.pos = at;
                Err(self.err_here())
            }
        }
    }
}

impl Query {
    /// Parses a query string.
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        let toks = lex(text)?;
        let mut p = Parser { text, toks, pos: 0 };
        let mut stages = Vec::new();
        if p.toks.is_empty() {
            return Err(unexpected(text, 0, text.len(), "<EOF>"));
        }
        loop {
            stages.push(p.stage()?);
            if p.peek().is_none() {
                break;
            }
            if !p.at_stage_end() {
                return Err(p.err_here());
            }
            p.pos += 1;
        }
        Ok(Query { stages })
    }

    /// The `limit` the query sets, if any.
    pub fn limit(&self) -> Option<usize> {
        self.stages.iter().rev().find_map(|s| match s {
            Stage::Limit(n) => Some(*n),
            _ => None,
        })
    }
}

// ---- evaluation ----

/// Where an event came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// `ACCOUNT:GROUP`, Insights' `@log`.
    pub log: String,
    pub stream: String,
}

/// An event with its source (an index into the sources).
#[derive(Debug, Clone)]
pub struct Record {
    pub source: usize,
    pub event: Event,
}

struct Row {
    /// The event, for rows that are events (not `stats` results).
    ev: Option<usize>,
    json: Option<Option<serde_json::Value>>,
    extra: Vec<(String, Val)>,
}

struct Ctx<'a> {
    records: &'a [Record],
    sources: &'a [Source],
}

impl Row {
    fn set(&mut self, name: &str, v: Val) {
        match self.extra.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = v,
            None => self.extra.push((name.to_string(), v)),
        }
    }

    fn get(&mut self, name: &str, cx: &Ctx) -> Val {
        if let Some((_, v)) = self.extra.iter().find(|(n, _)| n == name) {
            return v.clone();
        }
        let Some(i) = self.ev else { return Val::Null };
        let r = &cx.records[i];
        match name {
            "@timestamp" => return Val::Time(r.event.timestamp),
            "@message" => return Val::Str(r.event.message.clone()),
            "@ingestionTime" => return Val::Time(r.event.ingestion_time),
            "@logStream" => return Val::Str(cx.sources[r.source].stream.clone()),
            "@log" => return Val::Str(cx.sources[r.source].log.clone()),
            _ => {}
        }
        let json = self.json.get_or_insert_with(|| {
            let m = r.event.message.trim_start();
            if m.starts_with('{') { serde_json::from_str(m).ok() } else { None }
        });
        let Some(mut cur) = json.as_ref() else { return Val::Null };
        for part in name.split('.') {
            match cur.get(part) {
                Some(v) => cur = v,
                None => return Val::Null,
            }
        }
        match cur {
            serde_json::Value::Null => Val::Null,
            serde_json::Value::Number(n) => n.as_f64().map_or(Val::Null, Val::Num),
            serde_json::Value::String(s) => Val::Str(s.clone()),
            other => Val::Str(other.to_string()),
        }
    }

    fn eval(&mut self, e: &Expr, cx: &Ctx) -> Val {
        let b = |x: bool| Val::Num(if x { 1.0 } else { 0.0 });
        match e {
            Expr::Field(f) => self.get(f, cx),
            Expr::Lit(v) => v.clone(),
            Expr::Regex(r) => Val::Str(r.as_str().to_string()),
            Expr::Unary("not", x) => b(!self.eval(x, cx).truthy()),
            Expr::Unary(_, x) => self.eval(x, cx).num().map_or(Val::Null, |n| Val::Num(-n)),
            Expr::Binary(l, "and", r) => b(self.eval(l, cx).truthy() && self.eval(r, cx).truthy()),
            Expr::Binary(l, "or", r) => b(self.eval(l, cx).truthy() || self.eval(r, cx).truthy()),
            Expr::Binary(l, op, r) => {
                let (x, y) = (self.eval(l, cx), self.eval(r, cx));
                match *op {
                    "=" => b(compare(&x, &y) == Some(Ordering::Equal)),
                    "!=" => b(compare(&x, &y).is_some_and(|o| o != Ordering::Equal)),
                    "<" => b(compare(&x, &y) == Some(Ordering::Less)),
                    "<=" => b(compare(&x, &y).is_some_and(|o| o != Ordering::Greater)),
                    ">" => b(compare(&x, &y) == Some(Ordering::Greater)),
                    ">=" => b(compare(&x, &y).is_some_and(|o| o != Ordering::Less)),
                    _ => match (x.num(), y.num()) {
                        (Some(x), Some(y)) => Val::Num(match *op {
                            "+" => x + y,
                            "-" => x - y,
                            "*" => x * y,
                            "/" if y != 0.0 => x / y,
                            "%" if y != 0.0 => x % y,
                            _ => return Val::Null,
                        }),
                        _ => Val::Null,
                    },
                }
            }
            Expr::Like(l, r, negated) => {
                let x = self.eval(l, cx);
                if matches!(x, Val::Null) {
                    return b(false);
                }
                let text = x.text();
                let hit = match &**r {
                    Expr::Regex(re) => re.is_match(&text),
                    other => text.contains(&self.eval(other, cx).text()),
                };
                b(hit != *negated)
            }
            Expr::In(l, items, negated) => {
                let x = self.eval(l, cx);
                let hit = items.iter().any(|i| {
                    let v = self.eval(i, cx);
                    compare(&x, &v) == Some(Ordering::Equal)
                });
                b(hit != *negated && !matches!(x, Val::Null))
            }
            Expr::Call(f, args) => {
                let mut vals: Vec<Val> = args.iter().map(|a| self.eval(a, cx)).collect();
                let first = vals.first().cloned().unwrap_or(Val::Null);
                match f.as_str() {
                    "bin" => {
                        let step = first.num().unwrap_or(0.0) as i64;
                        match self.get("@timestamp", cx) {
                            Val::Time(t) if step > 0 => Val::Time(t.div_euclid(step) * step),
                            _ => Val::Null,
                        }
                    }
                    "ispresent" => b(!matches!(first, Val::Null)),
                    "isempty" => b(matches!(&first, Val::Null) || first.text().is_empty()),
                    "isblank" => b(matches!(&first, Val::Null) || first.text().trim().is_empty()),
                    "strlen" => Val::Num(first.text().chars().count() as f64),
                    "tolower" => Val::Str(first.text().to_lowercase()),
                    "toupper" => Val::Str(first.text().to_uppercase()),
                    "trim" => Val::Str(first.text().trim().to_string()),
                    "abs" => first.num().map_or(Val::Null, |n| Val::Num(n.abs())),
                    "floor" => first.num().map_or(Val::Null, |n| Val::Num(n.floor())),
                    "ceil" => first.num().map_or(Val::Null, |n| Val::Num(n.ceil())),
                    "concat" => Val::Str(vals.drain(..).map(|v| v.text()).collect()),
                    "strcontains" => {
                        b(vals.get(1).is_some_and(|needle| first.text().contains(&needle.text())))
                    }
                    _ => Val::Null,
                }
            }
        }
    }
}

/// What a finished query found: rows of (field, value), and how many events matched.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub rows: Vec<Vec<(String, String)>>,
    pub matched: u64,
}

#[derive(Default)]
struct Acc {
    count: u64,
    numbers: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    values: Vec<f64>,
    distinct: std::collections::BTreeSet<String>,
}

impl Acc {
    /// Counts value `v` of aggregate `a`'s argument in the group.
    fn add(&mut self, a: &Agg, v: Val) {
        if matches!(v, Val::Null) {
            return;
        }
        self.count += 1;
        if a.func == AggFn::CountDistinct {
            self.distinct.insert(v.text());
        }
        if let Some(n) = v.num() {
            self.numbers += 1;
            self.sum += n;
            self.min = Some(self.min.map_or(n, |m| m.min(n)));
            self.max = Some(self.max.map_or(n, |m| m.max(n)));
            if let AggFn::Pct(_) = a.func {
                self.values.push(n);
            }
        }
    }

    /// The group's value of `func`.
    fn value(mut self, func: AggFn) -> Val {
        match func {
            AggFn::Count => Val::Num(self.count as f64),
            AggFn::CountDistinct => Val::Num(self.distinct.len() as f64),
            AggFn::Sum => self.min.map_or(Val::Null, |_| Val::Num(self.sum)),
            AggFn::Avg => self.min.map_or(Val::Null, |_| Val::Num(self.sum / self.numbers.max(1) as f64)),
            AggFn::Min => self.min.map_or(Val::Null, Val::Num),
            AggFn::Max => self.max.map_or(Val::Null, Val::Num),
            AggFn::Pct(p) => {
                self.values.sort_by(f64::total_cmp);
                if self.values.is_empty() {
                    Val::Null
                } else {
                    // Nearest rank.
                    let rank = ((p / 100.0) * self.values.len() as f64).ceil() as usize;
                    Val::Num(self.values[rank.clamp(1, self.values.len()) - 1])
                }
            }
        }
    }
}

impl Query {
    /// Runs the query over `records` (of any order), keeping at most `limit` rows.
    /// `cancelled` is polled between events.
    pub fn run(
        &self,
        records: &[Record],
        sources: &[Source],
        limit: usize,
        cancelled: &dyn Fn() -> bool,
    ) -> Option<Outcome> {
        let cx = Ctx { records, sources };
        // Without a sort, the newest events come first (and `limit` keeps the newest).
        let mut order_: Vec<usize> = (0..records.len()).collect();
        order_.sort_by_key(|&i| std::cmp::Reverse((records[i].event.timestamp, records[i].event.seq)));
        let mut rows: Vec<Row> =
            order_.into_iter().map(|i| Row { ev: Some(i), json: None, extra: Vec::new() }).collect();
        let mut shown: Option<Vec<String>> = None;
        let mut matched: Option<u64> = None;
        for stage in &self.stages {
            if cancelled() {
                return None;
            }
            match stage {
                Stage::Fields(list) | Stage::Display(list) => {
                    set_fields(&mut rows, list, &cx);
                    let names: Vec<String> = list.iter().map(|(_, n)| n.clone()).collect();
                    shown = Some(match (stage, shown.take()) {
                        (Stage::Fields(_), Some(mut s)) => {
                            for n in names {
                                if !s.contains(&n) {
                                    s.push(n);
                                }
                            }
                            s
                        }
                        _ => names,
                    });
                }
                Stage::Filter(e) => rows.retain_mut(|r| r.eval(e, &cx).truthy()),
                Stage::Parse { field, re, names } => parse_fields(&mut rows, field, re, names, &cx),
                Stage::Sort(keys) => rows = sorted(rows, keys, &cx),
                Stage::Limit(n) => {
                    matched.get_or_insert(rows.len() as u64);
                    rows.truncate(*n);
                }
                Stage::Stats { aggs, by } => {
                    matched.get_or_insert(rows.len() as u64);
                    rows = stats(rows, aggs, by, &cx);
                    shown = Some(
                        by.iter()
                            .map(|(_, n)| n.clone())
                            .chain(aggs.iter().map(|a| a.name.clone()))
                            .collect(),
                    );
                }
            }
        }
        let matched = matched.unwrap_or(rows.len() as u64);
        rows.truncate(limit);
        let shown = shown.unwrap_or_else(|| vec!["@timestamp".into(), "@message".into()]);
        Some(Outcome { rows: render_rows(rows, &shown, &cx), matched })
    }
}

/// `fields` and `display`: each row's computed fields (a field shown as itself is left as is).
fn set_fields(rows: &mut [Row], list: &[(Expr, String)], cx: &Ctx) {
    for r in rows.iter_mut() {
        for (e, name) in list {
            if !matches!(e, Expr::Field(f) if f == name) {
                let v = r.eval(e, cx);
                r.set(name, v);
            }
        }
    }
}

/// `parse`: the fields `re` captures from `field`, on the rows it matches.
fn parse_fields(rows: &mut [Row], field: &Expr, re: &Regex, names: &[String], cx: &Ctx) {
    for r in rows.iter_mut() {
        let text = r.eval(field, cx).text();
        if let Some(c) = re.captures(&text) {
            let got: Vec<(String, Val)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let m = c.name(n).or_else(|| c.get(i + 1));
                    (n.clone(), m.map_or(Val::Null, |m| Val::Str(m.as_str().to_string())))
                })
                .collect();
            for (n, v) in got {
                r.set(&n, v);
            }
        }
    }
}

/// `sort`: the rows by each key in turn, ascending or descending.
fn sorted(rows: Vec<Row>, keys: &[(Expr, bool)], cx: &Ctx) -> Vec<Row> {
    let mut keyed: Vec<(Vec<Val>, Row)> =
        rows.into_iter().map(|mut r| (keys.iter().map(|(e, _)| r.eval(e, cx)).collect(), r)).collect();
    keyed.sort_by(|a, b| {
        for (i, (_, desc)) in keys.iter().enumerate() {
            let o = order(&a.0[i], &b.0[i]);
            let o = if *desc { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// `stats`: one row per group of `by`'s values, with the group's keys and aggregates.
fn stats(rows: Vec<Row>, aggs: &[Agg], by: &[(Expr, String)], cx: &Ctx) -> Vec<Row> {
    let mut groups: BTreeMap<Vec<OrdVal>, (Vec<Val>, Vec<Acc>)> = BTreeMap::new();
    for mut r in rows {
        let keys: Vec<Val> = by.iter().map(|(e, _)| r.eval(e, cx)).collect();
        let slot = groups
            .entry(keys.iter().map(|k| OrdVal(k.clone())).collect())
            .or_insert_with(|| (keys.clone(), aggs.iter().map(|_| Acc::default()).collect()));
        for (a, acc) in aggs.iter().zip(slot.1.iter_mut()) {
            match &a.arg {
                None => acc.count += 1,
                Some(arg) => acc.add(a, r.eval(arg, cx)),
            }
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (_, (keys, accs)) in groups {
        let mut extra: Vec<(String, Val)> = by.iter().map(|(_, n)| n.clone()).zip(keys).collect();
        for (a, acc) in aggs.iter().zip(accs) {
            extra.push((a.name.clone(), acc.value(a.func)));
        }
        out.push(Row { ev: None, json: None, extra });
    }
    out
}

/// The rows as the shown fields with values, and each event's `@ptr`.
fn render_rows(rows: Vec<Row>, shown: &[String], cx: &Ctx) -> Vec<Vec<(String, String)>> {
    rows.into_iter()
        .map(|mut r| {
            let mut fields: Vec<(String, String)> =
                shown.iter().filter_map(|n| r.get(n, cx).render().map(|v| (n.clone(), v))).collect();
            if let Some(i) = r.ev {
                let e = &cx.records[i];
                fields.push(("@ptr".into(), ptr(&cx.sources[e.source], e.event.seq)));
            }
            fields
        })
        .collect()
}

/// `@ptr`: an opaque reference to the event (its group, stream and position).
fn ptr(s: &Source, seq: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.log.bytes().chain([0]).chain(s.stream.bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}{seq:016x}")
}

fn order(a: &Val, b: &Val) -> Ordering {
    match (a, b) {
        (Val::Null, Val::Null) => Ordering::Equal,
        (Val::Null, _) => Ordering::Less,
        (_, Val::Null) => Ordering::Greater,
        _ => compare(a, b).unwrap_or(Ordering::Equal),
    }
}

/// A value with a total order, to group by.
#[derive(Debug, Clone)]
struct OrdVal(Val);

impl PartialEq for OrdVal {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for OrdVal {}
impl PartialOrd for OrdVal {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrdVal {
    fn cmp(&self, o: &Self) -> Ordering {
        match (&self.0, &o.0) {
            (Val::Num(a), Val::Num(b)) => a.total_cmp(b),
            (Val::Time(a), Val::Time(b)) => a.cmp(b),
            (Val::Str(a), Val::Str(b)) => a.cmp(b),
            (a, b) => rank(a).cmp(&rank(b)),
        }
    }
}

fn rank(v: &Val) -> u8 {
    match v {
        Val::Null => 0,
        Val::Num(_) => 1,
        Val::Time(_) => 2,
        Val::Str(_) => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(messages: &[(i64, &str)]) -> (Vec<Record>, Vec<Source>) {
        let sources = vec![Source { log: "000000000000:/app".into(), stream: "s".into() }];
        let records = messages
            .iter()
            .enumerate()
            .map(|(i, (ts, m))| Record {
                source: 0,
                event: Event {
                    seq: i as u64,
                    timestamp: *ts,
                    ingestion_time: *ts + 5,
                    message: m.to_string(),
                },
            })
            .collect();
        (records, sources)
    }

    /// Runs `query` over the events; the rows without `@ptr`.
    fn check(query: &str, events: &[(i64, &str)]) -> Vec<Vec<(String, String)>> {
        let (r, s) = records(events);
        let q = Query::parse(query).unwrap_or_else(|e| panic!("{query}: {e:?}"));
        let out = q.run(&r, &s, q.limit().unwrap_or(10_000), &|| false).unwrap();
        out.rows.into_iter().map(|row| row.into_iter().filter(|(f, _)| f != "@ptr").collect()).collect()
    }

    fn col(rows: &[Vec<(String, String)>], field: &str) -> Vec<String> {
        rows.iter().filter_map(|r| r.iter().find(|(f, _)| f == field).map(|(_, v)| v.clone())).collect()
    }

    const JSON: &[(i64, &str)] = &[
        (1_000, r#"{"level":"info","ms":12,"path":"/a","user":{"id":"u1"}}"#),
        (2_000, r#"{"level":"error","ms":250,"path":"/b","user":{"id":"u2"}}"#),
        (61_000, r#"{"level":"error","ms":90,"path":"/a","user":{"id":"u1"}}"#),
        (62_000, "plain text line with ERROR inside"),
        (125_000, r#"{"level":"info","ms":30,"path":"/c"}"#),
    ];

    #[test]
    fn default_fields_newest_first_with_timestamps_as_insights_shows_them() {
        let rows = check("fields @timestamp, @message | limit 2", JSON);
        assert_eq!(col(&rows, "@timestamp"), ["1970-01-01 00:02:05.000", "1970-01-01 00:01:02.000"]);
        assert_eq!(rows[1][1], ("@message".into(), "plain text line with ERROR inside".into()));
        // Without fields, @timestamp and @message.
        let rows = check("limit 1", JSON);
        assert_eq!(rows[0].iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), ["@timestamp", "@message"]);
    }

    #[test]
    fn filters_compare_json_fields_like_and_regex() {
        let ms = |q: &str| col(&check(&format!("{q} | fields ms | sort ms asc"), JSON), "ms");
        assert_eq!(ms("filter level = 'error'"), ["90", "250"]);
        assert_eq!(ms("filter ms > 50 and ms <= 250"), ["90", "250"]);
        assert_eq!(ms("filter level != \"error\""), ["12", "30"]);
        assert_eq!(ms("filter path like /^\\/[ab]$/ and not (ms > 100)"), ["12", "90"]);
        assert_eq!(ms("filter path in ['/c', '/b']"), ["30", "250"]);
        assert_eq!(ms("filter user.id = 'u1'"), ["12", "90"]);
        let msgs = check("filter @message like 'ERROR' | fields @message", JSON);
        assert_eq!(col(&msgs, "@message"), ["plain text line with ERROR inside"]);
        let msgs = check("filter @message =~ /(?i-u)error/ | fields @message", JSON);
        assert_eq!(msgs.len(), 3);
        // Arithmetic and an alias.
        let rows = check("filter ispresent(ms) | fields ms * 2 as double | sort double desc | limit 1", JSON);
        assert_eq!(col(&rows, "double"), ["500"]);
    }

    #[test]
    fn parse_with_a_glob_or_named_groups() {
        let lines = [(1, "GET /a 200 12ms"), (2, "POST /b 500 340ms"), (3, "not a request")];
        let rows = check(
            "parse @message '* * * *ms' as method, path, status, took | filter status >= 500 | fields method, path, took",
            &lines,
        );
        assert_eq!(
            rows,
            vec![vec![
                ("method".to_string(), "POST".to_string()),
                ("path".to_string(), "/b".to_string()),
                ("took".to_string(), "340".to_string()),
            ]]
        );
        let rows = check(
            r"parse @message /(?<verb>[A-Z]+) (?<p>\S+)/ | filter ispresent(verb) | stats count() by verb | sort verb",
            &lines,
        );
        assert_eq!(col(&rows, "verb"), ["GET", "POST"]);
        assert_eq!(col(&rows, "count()"), ["1", "1"]);
    }

    #[test]
    fn stats_aggregate_by_fields_and_time_bins() {
        let rows = check("stats count(*), avg(ms), sum(ms), min(ms), max(ms), pct(ms, 50) as p50", JSON);
        assert_eq!(
            rows,
            vec![vec![
                ("count(*)".to_string(), "5".to_string()),
                ("avg(ms)".to_string(), "95.5".to_string()),
                ("sum(ms)".to_string(), "382".to_string()),
                ("min(ms)".to_string(), "12".to_string()),
                ("max(ms)".to_string(), "250".to_string()),
                ("p50".to_string(), "30".to_string()),
            ]]
        );
        let rows =
            check("filter ispresent(level) | stats count() as n, max(ms) by bin(1m) | sort n desc", JSON);
        assert_eq!(
            col(&rows, "bin(1m)"),
            ["1970-01-01 00:00:00.000", "1970-01-01 00:01:00.000", "1970-01-01 00:02:00.000"]
        );
        assert_eq!(col(&rows, "n"), ["2", "1", "1"]);
        let rows = check("filter ispresent(level) | stats count(level) by level | sort level", JSON);
        assert_eq!(col(&rows, "level"), ["error", "info"]);
        assert_eq!(col(&rows, "count(level)"), ["2", "2"]);
        let rows = check("stats pct(ms, 99) as p99, count_distinct(path) as paths", JSON);
        assert_eq!(
            (col(&rows, "p99"), col(&rows, "paths")),
            (vec!["250".to_string()], vec!["3".to_string()])
        );
    }

    #[test]
    fn sort_and_limit() {
        let rows = check("fields ms | filter ispresent(ms) | sort ms desc | limit 3", JSON);
        assert_eq!(col(&rows, "ms"), ["250", "90", "30"]);
        let rows = check("sort @timestamp asc | limit 2 | display @timestamp", JSON);
        assert_eq!(col(&rows, "@timestamp"), ["1970-01-01 00:00:01.000", "1970-01-01 00:00:02.000"]);
    }

    #[test]
    fn malformed_queries_say_where() {
        for (q, start, end) in [
            ("fields @message | bogus x", 18, 23),
            ("filter ms >", 11, 11),
            ("stats count() by", 16, 16),
            ("stats median(ms)", 6, 12),
            ("fields a |\n  limit 0", 19, 20),
            ("filter x = 'open", 11, 16),
            ("parse @message 'a * b *' as one", 15, 31),
            ("limit 5 extra", 8, 13),
            ("", 0, 0),
        ] {
            let e = Query::parse(q).expect_err(q);
            assert_eq!((e.start, e.end), (start, end), "{q}: {e:?}");
        }
        let e = Query::parse("fields a |\n  limit 0").unwrap_err();
        assert_eq!(e.message, "unexpected symbol found 0 at line 2 and position 9");
        assert!(Query::parse("filter @message like /(/").is_err());
    }
}
