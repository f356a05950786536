//! ECS's cluster query language: the expressions of `memberOf(...)` placement constraints and of
//! ListContainerInstances `filter`, parsed once and then evaluated against many [`Instance`]s.
//!
//! An expression is `subject operator [argument]`, combined with `and`/`&&`, `or`/`||`,
//! `not`/`!` and parentheses (`not` binds tighter than `and`, which binds tighter than `or`):
//!
//! ```text
//! attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d
//! not(task:group == database) or runningTasksCount < 2
//! ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']
//! ```
//!
//! Semantics, where the ECS developer guide leaves room:
//! - `==` is string equality, as ECS documents it; `>`, `>=`, `<`, `<=` compare numerically when
//!   both sides are decimal numbers, and lexicographically otherwise. `runningTasksCount` compares
//!   whole numbers, `registeredAt` dates, `agentVersion` dotted versions (`1.14.5`).
//! - Every negative operator (`!=`, `!exists`, `not_in`, `!~`) is exactly the negation of its
//!   positive one, so an instance without the attribute satisfies `attribute:x != v`.
//!   An attribute without a value exists, but equals nothing.
//! - `task:group` asks about the set of groups with tasks on the instance: `task:group == g`
//!   holds if one of them is `g`, `task:group =~ p` if one matches `p`.
//! - `=~` patterns are Java regular expressions in ECS, matched against the whole value. Gantry
//!   supports the part of that syntax a value needs: literals, `.`, classes (`[a-c]`, `[^0-9]`,
//!   `\d`, `\w`, `\s`), and the quantifiers `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}`. Groups and
//!   alternation are rejected (combine conditions with `or` instead). A leading `*`, an error in
//!   Java, is read as a glob and matches anything, so `*.large` works as people expect; any
//!   other `*` repeats what precedes it, as in ECS (`us-*-1a` is not a glob).
//! - `registeredAt` takes `2018-06-18T22:28:28+00:00`, `2018-06-18T22:28:28Z`,
//!   `2018-06-18T22:28:28` (UTC) or `2018-06-18`. A bare date compares by day:
//!   `registeredAt == 2018-06-18` holds all that day, `registeredAt > 2018-06-18` from the next.
//!
//! Parsing does all the work that can be done once (numbers, dates, versions and patterns are
//! parsed then), so [`Expr::eval`] never allocates: the engine runs it for every candidate of
//! every placement. This module does no I/O.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::snapshot::Instance;

/// ECS's limit on the length of a placement constraint expression, in characters.
pub const MAX_EXPRESSION_CHARS: usize = 2000;

/// How deeply parentheses and `not` may nest: deep enough for any real expression, shallow
/// enough that the recursive parser and evaluator can't exhaust a thread's stack.
const MAX_NESTING: usize = 64;

/// The most elements a pattern may have once its repetitions are expanded: its matcher keeps
/// one bit per element (plus one for "matched") in a `u128`, so matching never allocates.
const MAX_PATTERN_ATOMS: usize = 127;

/// A syntax error. Its message names the problem and the column, and is meant to be returned
/// as is as the message of ECS's `InvalidParameterException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid expression at column {column}: {problem}")]
pub struct QueryError {
    /// 1-based, in characters (not bytes) of the expression.
    pub column: usize,
    /// What was wrong, naming the offending text.
    pub problem: String,
}

impl QueryError {
    fn new(column: usize, problem: impl Into<String>) -> QueryError {
        QueryError { column, problem: problem.into() }
    }

    /// The 0-based character offset of the problem.
    pub fn offset(&self) -> usize {
        self.column - 1
    }
}

/// A parsed expression. Its `Display` prints a canonical form that [`parse`] reads back to an
/// equal `Expr`.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Condition(Condition),
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    AgentConnected,
    AgentVersion,
    /// `attribute:NAME`, built-in (`ecs.instance-type`, ...) or custom.
    Attribute(String),
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
}

/// A comparison operator, whichever of its spellings (`==` or `equals`, ...) was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Exists,
    NotExists,
    In,
    NotIn,
    Matches,
    NotMatches,
}

/// One `subject operator [argument]`, with its argument already parsed for its subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    subject: Subject,
    op: Operator,
    arg: Arg,
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    None,
    One(Value),
    List(Vec<Value>),
    Pattern { text: String, pattern: Pattern },
}

/// A literal as written (for display and string comparison) and as its subject reads it.
#[derive(Debug, Clone, PartialEq)]
struct Value {
    text: String,
    key: Key,
}

#[derive(Debug, Clone, PartialEq)]
enum Key {
    /// A string; `Some` if it is also a decimal number, for ordering comparisons.
    Text(Option<f64>),
    Int(i64),
    Date(Date),
    Version(Vec<u64>),
}

/// A `registeredAt` argument: seconds since the epoch, and whether only the day was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Date {
    seconds: i64,
    day_only: bool,
}

/// Parses an expression; the error's message is ECS's InvalidParameterException message.
pub fn parse(input: &str) -> Result<Expr, QueryError> {
    let chars = input.chars().count();
    if chars > MAX_EXPRESSION_CHARS {
        return Err(QueryError::new(
            MAX_EXPRESSION_CHARS + 1,
            format!("the expression is {chars} characters long; the limit is {MAX_EXPRESSION_CHARS}"),
        ));
    }
    let toks = lex(input)?;
    if toks.len() == 1 {
        return Err(QueryError::new(1, "the expression is empty"));
    }
    let mut p = Parser { toks, pos: 0, depth: 0 };
    let expr = p.parse_or()?;
    let t = p.peek();
    if t.tok != Tok::End {
        let problem = match &t.tok {
            Tok::RParen => "unexpected ')' with no '(' to close".to_string(),
            tok => format!(
                "unexpected {} after a complete condition; expected 'and', 'or' or the end of \
                 the expression{}",
                describe(tok),
                hint(tok)
            ),
        };
        return Err(QueryError::new(t.col, problem));
    }
    Ok(expr)
}

impl FromStr for Expr {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Expr, QueryError> {
        parse(s)
    }
}

impl Expr {
    /// Whether the instance satisfies the expression. Never allocates.
    pub fn eval(&self, i: &Instance) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(i) || b.eval(i),
            Expr::And(a, b) => a.eval(i) && b.eval(i),
            Expr::Not(e) => !e.eval(i),
            Expr::Condition(c) => c.eval(i),
        }
    }

    /// Whether the result can change as tasks are placed (it reads `task:group` or
    /// `runningTasksCount`). When it can't, the engine may evaluate it once per instance for a
    /// whole multi-task placement.
    pub fn depends_on_tasks(&self) -> bool {
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => a.depends_on_tasks() || b.depends_on_tasks(),
            Expr::Not(e) => e.depends_on_tasks(),
            Expr::Condition(c) => {
                matches!(c.subject, Subject::TaskGroup | Subject::RunningTasksCount)
            }
        }
    }
}

impl Condition {
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    pub fn operator(&self) -> Operator {
        self.op
    }

    fn eval(&self, i: &Instance) -> bool {
        self.holds(i) != self.op.is_negative()
    }

    /// The positive operator's answer; `eval` negates it for the negative operators.
    fn holds(&self, i: &Instance) -> bool {
        let op = self.op.positive();
        match &self.subject {
            Subject::Attribute(name) => match i.attributes.get(name.as_str()) {
                None => false,
                Some(value) => op == Operator::Exists || value.as_deref().is_some_and(|v| self.test_text(v)),
            },
            Subject::Ec2InstanceId => self.test_text(&i.ec2_instance_id),
            Subject::AgentConnected => self.test_text(if i.agent_connected { "true" } else { "false" }),
            Subject::TaskGroup => {
                let runs = |group: &str| i.task_groups.get(group).is_some_and(|n| *n > 0);
                match &self.arg {
                    Arg::One(v) if op == Operator::Eq => runs(&v.text),
                    Arg::List(vs) => vs.iter().any(|v| runs(&v.text)),
                    _ if op == Operator::Exists => i.task_groups.values().any(|n| *n > 0),
                    _ => i.task_groups.iter().any(|(g, n)| *n > 0 && self.test_text(g)),
                }
            }
            Subject::RunningTasksCount => match &self.arg {
                Arg::One(Value { key: Key::Int(n), .. }) => ordering_holds(op, i.running_tasks.cmp(n)),
                _ => false,
            },
            Subject::RegisteredAt => match &self.arg {
                Arg::One(Value { key: Key::Date(d), .. }) => {
                    let seconds = i.registered_at_ms.div_euclid(1000);
                    let ord = if d.day_only {
                        seconds.div_euclid(86_400).cmp(&d.seconds.div_euclid(86_400))
                    } else {
                        seconds.cmp(&d.seconds)
                    };
                    ordering_holds(op, ord)
                }
                _ => false,
            },
            Subject::AgentVersion => match (&self.arg, agent_version(i)) {
                (Arg::One(Value { key: Key::Version(want), .. }), Some(have)) => {
                    compare_versions(have, want).is_some_and(|ord| ordering_holds(op, ord))
                }
                _ => false,
            },
        }
    }

    /// The positive operator on a string-valued subject.
    fn test_text(&self, have: &str) -> bool {
        match (&self.arg, self.op.positive()) {
            (Arg::One(v), Operator::Eq) => have == v.text,
            (Arg::One(v), op) => {
                let ord = match (v.key_number(), parse_number(have)) {
                    (Some(want), Some(have)) => have.partial_cmp(&want),
                    _ => Some(have.cmp(v.text.as_str())),
                };
                ord.is_some_and(|ord| ordering_holds(op, ord))
            }
            (Arg::List(vs), _) => vs.iter().any(|v| have == v.text),
            (Arg::Pattern { pattern, .. }, _) => pattern.matches(have),
            (Arg::None, _) => true,
        }
    }
}

/// The instance's agent version (`versionInfo.agentVersion`), when it reported one.
fn agent_version(i: &Instance) -> Option<&str> {
    i.agent_version.as_deref()
}

impl Value {
    fn key_number(&self) -> Option<f64> {
        match self.key {
            Key::Text(n) => n,
            _ => None,
        }
    }
}

fn ordering_holds(op: Operator, ord: Ordering) -> bool {
    match op {
        Operator::Eq => ord == Ordering::Equal,
        Operator::Gt => ord == Ordering::Greater,
        Operator::Ge => ord != Ordering::Less,
        Operator::Lt => ord == Ordering::Less,
        Operator::Le => ord != Ordering::Greater,
        _ => false,
    }
}

impl Operator {
    const ALL: [Operator; 12] = [
        Operator::Eq,
        Operator::Ne,
        Operator::Gt,
        Operator::Ge,
        Operator::Lt,
        Operator::Le,
        Operator::Exists,
        Operator::NotExists,
        Operator::In,
        Operator::NotIn,
        Operator::Matches,
        Operator::NotMatches,
    ];

    /// The canonical spelling, as `Display` prints it.
    pub fn symbol(self) -> &'static str {
        match self {
            Operator::Eq => "==",
            Operator::Ne => "!=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Exists => "exists",
            Operator::NotExists => "!exists",
            Operator::In => "in",
            Operator::NotIn => "not_in",
            Operator::Matches => "=~",
            Operator::NotMatches => "!~",
        }
    }

    fn is_negative(self) -> bool {
        matches!(self, Operator::Ne | Operator::NotExists | Operator::NotIn | Operator::NotMatches)
    }

    fn positive(self) -> Operator {
        match self {
            Operator::Ne => Operator::Eq,
            Operator::NotExists => Operator::Exists,
            Operator::NotIn => Operator::In,
            Operator::NotMatches => Operator::Matches,
            op => op,
        }
    }

    fn from_word(word: &str) -> Option<Operator> {
        let op = match word.to_ascii_lowercase().as_str() {
            "equals" => Operator::Eq,
            "not_equals" => Operator::Ne,
            "greater_than" => Operator::Gt,
            "greater_than_equal" => Operator::Ge,
            "less_than" => Operator::Lt,
            "less_than_equal" => Operator::Le,
            "exists" => Operator::Exists,
            "not_exists" => Operator::NotExists,
            "in" => Operator::In,
            "not_in" => Operator::NotIn,
            "matches" => Operator::Matches,
            "not_matches" => Operator::NotMatches,
            _ => return None,
        };
        Some(op)
    }

    fn from_symbol(sym: &str) -> Option<Operator> {
        Operator::ALL
            .into_iter()
            .find(|op| op.symbol() == sym && !op.symbol().starts_with(char::is_alphabetic))
    }
}

impl Subject {
    /// The operators the ECS developer guide lists for the subject. It lists none for
    /// `task:group`: Gantry allows the ones that make sense for a set of names.
    fn allows(&self, op: Operator) -> bool {
        use Operator::*;
        match self {
            Subject::Attribute(_) => true,
            Subject::AgentConnected | Subject::Ec2InstanceId => {
                matches!(op, Eq | Ne | In | NotIn | Matches | NotMatches)
            }
            Subject::TaskGroup => !matches!(op, Gt | Ge | Lt | Le),
            Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => {
                matches!(op, Eq | Ne | Gt | Ge | Lt | Le)
            }
        }
    }

    fn from_word(word: &str) -> Option<Subject> {
        let subject = match word {
            "agentConnected" => Subject::AgentConnected,
            "agentVersion" => Subject::AgentVersion,
            "ec2InstanceId" => Subject::Ec2InstanceId,
            "registeredAt" => Subject::RegisteredAt,
            "runningTasksCount" => Subject::RunningTasksCount,
            "task:group" => Subject::TaskGroup,
            _ => Subject::Attribute(word.strip_prefix("attribute:")?.to_string()),
        };
        Some(subject)
    }
}

// ---------------------------------------------------------------------------------------------
// Display: a canonical form that parses back to an equal expression.

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::AgentConnected => f.write_str("agentConnected"),
            Subject::AgentVersion => f.write_str("agentVersion"),
            Subject::Attribute(name) => write!(f, "attribute:{name}"),
            Subject::Ec2InstanceId => f.write_str("ec2InstanceId"),
            Subject::RegisteredAt => f.write_str("registeredAt"),
            Subject::RunningTasksCount => f.write_str("runningTasksCount"),
            Subject::TaskGroup => f.write_str("task:group"),
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.symbol())
    }
}

/// Writes a value bare when the lexer would read it back as one word, quoted otherwise.
fn write_value(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    if !text.is_empty() && text.chars().all(is_bare) {
        return f.write_str(text);
    }
    f.write_str("'")?;
    for c in text.chars() {
        if c == '\'' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("'")
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.subject, self.op)?;
        match &self.arg {
            Arg::None => Ok(()),
            Arg::One(v) => {
                f.write_str(" ")?;
                write_value(f, &v.text)
            }
            Arg::Pattern { text, .. } => {
                f.write_str(" ")?;
                write_value(f, text)
            }
            Arg::List(vs) => {
                f.write_str(" [")?;
                for (n, v) in vs.iter().enumerate() {
                    if n > 0 {
                        f.write_str(", ")?;
                    }
                    write_value(f, &v.text)?;
                }
                f.write_str("]")
            }
        }
    }
}

impl Expr {
    /// `level`: 0 where an `or` may stand bare, 1 where an `and` may, 2 where only a
    /// condition or a `not(...)` may. The parser builds left-leaning trees, so a right operand
    /// of the same kind gets parentheses.
    fn write(&self, f: &mut fmt::Formatter<'_>, level: u8) -> fmt::Result {
        match self {
            Expr::Or(a, b) if level == 0 => {
                a.write(f, 0)?;
                f.write_str(" or ")?;
                b.write(f, 1)
            }
            Expr::And(a, b) if level <= 1 => {
                a.write(f, 1)?;
                f.write_str(" and ")?;
                b.write(f, 2)
            }
            Expr::Or(..) | Expr::And(..) => {
                f.write_str("(")?;
                self.write(f, 0)?;
                f.write_str(")")
            }
            Expr::Not(e) => {
                f.write_str("not(")?;
                e.write(f, 0)?;
                f.write_str(")")
            }
            Expr::Condition(c) => write!(f, "{c}"),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    /// `==`, `!=`, `>=`, `<=`, `>`, `<`, `=~`, `!~`, `&&`, `||`.
    Sym(&'static str),
    /// `!` alone: `not`, or the start of `!exists` and `!in`.
    Bang,
    /// A bare word: a subject, a keyword or an unquoted value.
    Word(String),
    Quoted(String),
    /// A character the language has no use for (kept so the parser can say where it is).
    Other(char),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based column of the token's first character.
    col: usize,
}

/// The characters of a bare word: subjects (`attribute:ecs.instance-type`), values
/// (`us-east-1a`, `service:production`, `2018-06-18T22:28:28+00:00`) and simple patterns
/// (`t2.*`).
fn is_bare(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/' | '*' | '+')
}

fn lex(input: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = input.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBracket, 1),
            (']', _) => (Tok::RBracket, 1),
            (',', _) => (Tok::Comma, 1),
            ('=', Some('=')) => (Tok::Sym("=="), 2),
            ('=', Some('~')) => (Tok::Sym("=~"), 2),
            ('!', Some('=')) => (Tok::Sym("!="), 2),
            ('!', Some('~')) => (Tok::Sym("!~"), 2),
            ('!', _) => (Tok::Bang, 1),
            ('>', Some('=')) => (Tok::Sym(">="), 2),
            ('>', _) => (Tok::Sym(">"), 1),
            ('<', Some('=')) => (Tok::Sym("<="), 2),
            ('<', _) => (Tok::Sym("<"), 1),
            ('&', Some('&')) => (Tok::Sym("&&"), 2),
            ('|', Some('|')) => (Tok::Sym("||"), 2),
            ('\'' | '"', _) => {
                let mut text = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(QueryError::new(
                                col,
                                format!("the quoted value opened by {c} is never closed"),
                            ));
                        }
                        Some(&q) if q == c => break,
                        // A backslash escapes the quote and itself; elsewhere it stays, so
                        // that patterns such as '\d+' read as written.
                        Some(&'\\') if chars.get(j + 1).is_some_and(|&n| n == c || n == '\\') => {
                            text.push(chars[j + 1]);
                            j += 2;
                        }
                        Some(&other) => {
                            text.push(other);
                            j += 1;
                        }
                    }
                }
                (Tok::Quoted(text), j + 1 - i)
            }
            (c, _) if is_bare(c) => {
                let len = chars[i..].iter().take_while(|&&c| is_bare(c)).count();
                (Tok::Word(chars[i..i + len].iter().collect()), len)
            }
            (c, _) => (Tok::Other(c), 1),
        };
        toks.push(Token { tok, col });
        i += len;
    }
    toks.push(Token { tok: Tok::End, col: chars.len() + 1 });
    Ok(toks)
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::Comma => "','".into(),
        Tok::Sym(s) => format!("'{s}'"),
        Tok::Bang => "'!'".into(),
        Tok::Word(w) => format!("'{w}'"),
        Tok::Quoted(q) => format!("the quoted value '{q}'"),
        Tok::Other(c) => format!("'{c}'"),
        Tok::End => "the end of the expression".into(),
    }
}

/// A suggestion for the likely typos.
fn hint(tok: &Tok) -> &'static str {
    match tok {
        Tok::Other('=') => " (did you mean '=='?)",
        Tok::Other('&') => " (did you mean '&&'?)",
        Tok::Other('|') => " (did you mean '||'?)",
        Tok::Other('~') => " (did you mean '=~'?)",
        _ => "",
    }
}

fn is_keyword(tok: &Tok, keyword: &str) -> bool {
    matches!(tok, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
}

// ---------------------------------------------------------------------------------------------
// Parser: or := and ('or' and)*; and := unary ('and' unary)*; unary := 'not' unary | primary;
// primary := '(' or ')' | subject operator [argument].

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.pos]
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        &self.toks[(self.pos + ahead).min(self.toks.len() - 1)].tok
    }

    fn advance(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if t.tok != Tok::End {
            self.pos += 1;
        }
        t
    }

    /// " after X" naming the token before the current one, for error messages.
    fn after(&self) -> String {
        match self.pos.checked_sub(1) {
            Some(prev) => format!(" after {}", describe(&self.toks[prev].tok)),
            None => String::new(),
        }
    }

    fn expected(&self, what: &str) -> QueryError {
        let t = self.peek();
        QueryError::new(
            t.col,
            format!("expected {what}{}, found {}{}", self.after(), describe(&t.tok), hint(&t.tok)),
        )
    }

    fn nest(&mut self, col: usize) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(QueryError::new(
                col,
                format!("parentheses and 'not' nest more than {MAX_NESTING} deep"),
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.parse_and()?;
        while is_keyword(&self.peek().tok, "or") || self.peek().tok == Tok::Sym("||") {
            self.advance();
            let right = self.parse_and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Expr, QueryError> {
        let mut left = self.parse_unary()?;
        while is_keyword(&self.peek().tok, "and") || self.peek().tok == Tok::Sym("&&") {
            self.advance();
            let right = self.parse_unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn parse_unary(&mut self) -> Result<Expr, QueryError> {
        let t = self.peek();
        if t.tok == Tok::Bang || is_keyword(&t.tok, "not") {
            let col = t.col;
            self.advance();
            self.nest(col)?;
            let e = self.parse_unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Expr, QueryError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::LParen => {
                self.advance();
                self.nest(t.col)?;
                let e = self.parse_or()?;
                if self.peek().tok != Tok::RParen {
                    return Err(self.expected(&format!("')' to close the '(' at column {}", t.col)));
                }
                self.advance();
                self.depth -= 1;
                Ok(e)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("and") || w.eq_ignore_ascii_case("or") => {
                Err(self.expected("a condition (subject operator argument)"))
            }
            Tok::Word(word) => {
                let Some(subject) = Subject::from_word(&word) else {
                    return Err(QueryError::new(
                        t.col,
                        format!(
                            "unknown subject '{word}'; expected agentConnected, agentVersion, \
                             attribute:NAME, ec2InstanceId, registeredAt, runningTasksCount or \
                             task:group"
                        ),
                    ));
                };
                if subject == Subject::Attribute(String::new()) {
                    return Err(QueryError::new(
                        t.col,
                        "'attribute:' needs a name, as in attribute:ecs.instance-type",
                    ));
                }
                self.advance();
                Ok(Expr::Condition(self.parse_condition(subject)?))
            }
            _ => Err(self.expected("a condition (subject operator argument)")),
        }
    }

    fn parse_operator(&mut self) -> Result<(Operator, String, usize), QueryError> {
        let t = self.peek().clone();
        let negated_word = |tok: &Tok| match tok {
            Tok::Word(w) if w.eq_ignore_ascii_case("in") => Some(Operator::NotIn),
            Tok::Word(w) if w.eq_ignore_ascii_case("exists") => Some(Operator::NotExists),
            _ => None,
        };
        let found = match &t.tok {
            Tok::Sym(s) => Operator::from_symbol(s).map(|op| (op, 1, s.to_string())),
            // `!exists`, `!in`, and the two-word `not exists`, `not in`.
            Tok::Bang => negated_word(self.peek_at(1)).map(|op| (op, 2, op.symbol().into())),
            Tok::Word(w) if w.eq_ignore_ascii_case("not") => {
                negated_word(self.peek_at(1)).map(|op| (op, 2, op.symbol().into()))
            }
            Tok::Word(w) => Operator::from_word(w).map(|op| (op, 1, w.clone())),
            _ => None,
        };
        let Some((op, len, spelled)) = found else {
            return Err(self.expected("an operator"));
        };
        for _ in 0..len {
            self.advance();
        }
        Ok((op, spelled, t.col))
    }

    fn parse_condition(&mut self, subject: Subject) -> Result<Condition, QueryError> {
        let (op, spelled, op_col) = self.parse_operator()?;
        if !subject.allows(op) {
            let valid: Vec<&str> =
                Operator::ALL.into_iter().filter(|&o| subject.allows(o)).map(Operator::symbol).collect();
            return Err(QueryError::new(
                op_col,
                format!(
                    "the operator '{spelled}' can't be used with {subject}; use one of {}",
                    valid.join(", ")
                ),
            ));
        }
        let arg = match op {
            Operator::Exists | Operator::NotExists => Arg::None,
            Operator::In | Operator::NotIn => {
                let open = self.peek().col;
                if self.peek().tok != Tok::LBracket {
                    return Err(self.expected("'[' to start a list"));
                }
                self.advance();
                let mut values = Vec::new();
                loop {
                    if self.peek().tok == Tok::RBracket && values.is_empty() {
                        return Err(QueryError::new(
                            self.peek().col,
                            format!("the list after '{spelled}' is empty"),
                        ));
                    }
                    values.push(self.parse_value(&subject)?);
                    match self.peek().tok {
                        Tok::Comma => {
                            self.advance();
                        }
                        Tok::RBracket => {
                            self.advance();
                            break;
                        }
                        _ => {
                            return Err(self
                                .expected(&format!("',' or ']' to close the list opened at column {open}")));
                        }
                    }
                }
                Arg::List(values)
            }
            Operator::Matches | Operator::NotMatches => {
                let (text, col) = self.parse_text()?;
                let pattern = Pattern::compile(&text).map_err(|problem| {
                    QueryError::new(col, format!("invalid pattern '{text}': {problem}"))
                })?;
                Arg::Pattern { text, pattern }
            }
            _ => Arg::One(self.parse_value(&subject)?),
        };
        Ok(Condition { subject, op, arg })
    }

    /// A bare or quoted value: its text and column.
    fn parse_text(&mut self) -> Result<(String, usize), QueryError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Word(text) | Tok::Quoted(text) => {
                self.advance();
                Ok((text, t.col))
            }
            _ => Err(self.expected("a value")),
        }
    }

    /// A value, read the way its subject compares it.
    fn parse_value(&mut self, subject: &Subject) -> Result<Value, QueryError> {
        let (text, col) = self.parse_text()?;
        let bad =
            |what: &str| QueryError::new(col, format!("{subject} compares with {what}, found '{text}'"));
        let (text, key) = match subject {
            Subject::Attribute(_) | Subject::Ec2InstanceId | Subject::TaskGroup => {
                let n = parse_number(&text);
                (text, Key::Text(n))
            }
            Subject::AgentConnected => match text.to_ascii_lowercase().as_str() {
                b @ ("true" | "false") => (b.to_string(), Key::Text(None)),
                _ => return Err(bad("true or false")),
            },
            Subject::RunningTasksCount => match text.parse::<i64>() {
                Ok(n) => (text, Key::Int(n)),
                Err(_) => return Err(bad("a whole number")),
            },
            Subject::RegisteredAt => match parse_date(&text) {
                Some(d) => (text, Key::Date(d)),
                None => {
                    return Err(bad("a date such as 2018-06-18, 2018-06-18T22:28:28Z or \
                         2018-06-18T22:28:28+00:00"));
                }
            },
            Subject::AgentVersion => match parse_version(&text) {
                Some(v) => (text, Key::Version(v)),
                None => return Err(bad("a version such as 1.14.5")),
            },
        };
        Ok(Value { text, key })
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers, dates and versions.

/// A decimal number (`-12`, `3.5`); not `1e3`, `inf` or `NaN`, which ECS users mean as text.
fn parse_number(s: &str) -> Option<f64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || !frac.is_none_or(all_digits) {
        return None;
    }
    s.parse().ok()
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The date formats the ECS developer guide lists for `registeredAt`.
fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if !at(4, b'-') || !at(7, b'-') || !(1..=12).contains(&month) {
        return None;
    }
    if !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return Some(Date { seconds: days * 86_400, day_only: true });
    }
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !at(10, b'T') || !at(13, b':') || !at(16, b':') {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let offset = match &b[19..] {
        b"" | b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(20, 2)?, num(23, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * 3600 + m * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };
    Some(Date { seconds: days * 86_400 + hour * 3600 + minute * 60 + second - offset, day_only: false })
}

/// A dotted version: `1.14.5`.
fn parse_version(s: &str) -> Option<Vec<u64>> {
    s.split('.')
        .map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        })
        .collect()
}

/// Compares an instance's version with a parsed one, part by part, missing parts counting as
/// 0 (`1.14` == `1.14.0`). `None` if the instance's version isn't a dotted version.
fn compare_versions(have: &str, want: &[u64]) -> Option<Ordering> {
    let mut have_parts = have.split('.');
    let mut want_parts = want.iter();
    loop {
        let h = match have_parts.next() {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u64>().ok()?),
            Some(_) => return None,
            None => None,
        };
        let w = want_parts.next().copied();
        if h.is_none() && w.is_none() {
            return Some(Ordering::Equal);
        }
        match h.unwrap_or(0).cmp(&w.unwrap_or(0)) {
            Ordering::Equal => {}
            ord => return Some(ord),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Patterns: the regular-expression subset a value needs, matched without allocating.

/// A compiled pattern: a sequence of atoms, each matching one character, once, optionally or
/// any number of times. Matching simulates the automaton with one bit per atom.
#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    atoms: Vec<Atom>,
    /// Bit i is set when atom i may match nothing (`*` or `?`).
    skippable: u128,
}

#[derive(Debug, Clone, PartialEq)]
struct Atom {
    class: Class,
    repeat: Repeat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Once,
    Optional,
    Any,
}

#[derive(Debug, Clone, PartialEq)]
enum Class {
    Char(char),
    AnyChar,
    Set { negated: bool, ranges: Vec<(char, char)> },
}

const DIGIT: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')];
const SPACE: &[(char, char)] = &[(' ', ' '), ('\t', '\r')];

impl Class {
    fn matches(&self, c: char) -> bool {
        match self {
            Class::Char(x) => *x == c,
            // Java's `.` doesn't match line terminators.
            Class::AnyChar => c != '\n' && c != '\r',
            Class::Set { negated, ranges } => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated,
        }
    }
}

impl Pattern {
    fn compile(text: &str) -> Result<Pattern, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut atoms: Vec<Atom> = Vec::new();
        let mut i = 0;
        // Java's `matches` compares the whole value, so anchors at the ends change nothing.
        let escaped_end = chars.len() > 1 && chars[chars.len() - 2] == '\\';
        let end = if chars.last() == Some(&'$') && !escaped_end { chars.len() - 1 } else { chars.len() };
        if chars.first() == Some(&'^') {
            i = 1;
        }
        // The start of the atoms the previous element produced, if it can take a quantifier.
        let mut last: Option<usize> = None;
        while i < end {
            let c = chars[i];
            i += 1;
            let class = match c {
                '*' | '+' | '?' | '{' => {
                    let Some(start) = last.take() else {
                        if c == '*' && atoms.is_empty() {
                            // A glob's leading `*`.
                            atoms.push(Atom { class: Class::AnyChar, repeat: Repeat::Any });
                            continue;
                        }
                        return Err(format!("'{c}' at position {i} has nothing to repeat"));
                    };
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        '?' => (0, Some(1)),
                        _ => {
                            let close = chars[i..end]
                                .iter()
                                .position(|&c| c == '}')
                                .ok_or_else(|| format!("'{{' at position {i} is never closed"))?;
                            let inside: String = chars[i..i + close].iter().collect();
                            i += close + 1;
                            parse_braces(&inside).ok_or_else(|| {
                                format!("'{{{inside}}}' isn't a repetition such as {{2}} or {{1,3}}")
                            })?
                        }
                    };
                    // A lazy `?` after a quantifier changes nothing for a whole-value match.
                    if chars.get(i) == Some(&'?') && i < end {
                        i += 1;
                    } else if chars.get(i) == Some(&'+') && i < end {
                        return Err("possessive quantifiers ('*+', '++', ...) aren't supported".into());
                    }
                    if start + max.unwrap_or(min + 1) > MAX_PATTERN_ATOMS {
                        return Err(format!(
                            "it is too long (more than {MAX_PATTERN_ATOMS} elements once \
                             repetitions are expanded)"
                        ));
                    }
                    let class = atoms[start].class.clone();
                    atoms.truncate(start);
                    for _ in 0..min {
                        atoms.push(Atom { class: class.clone(), repeat: Repeat::Once });
                    }
                    match max {
                        None => atoms.push(Atom { class, repeat: Repeat::Any }),
                        Some(max) => {
                            for _ in min..max {
                                atoms.push(Atom { class: class.clone(), repeat: Repeat::Optional });
                            }
                        }
                    }
                    continue;
                }
                '(' | ')' | '|' => {
                    return Err("groups and alternation ('(', ')', '|') aren't supported; \
                                combine conditions with 'or' instead"
                        .into());
                }
                '^' | '$' => {
                    return Err(format!("'{c}' is only supported at the ends of the pattern"));
                }
                '.' => Class::AnyChar,
                '\\' => {
                    let e = *chars.get(i).ok_or("it ends with a lone '\\'")?;
                    i += 1;
                    escape(e)?
                }
                '[' => {
                    let (class, next) = parse_set(&chars, i)?;
                    i = next;
                    class
                }
                c => Class::Char(c),
            };
            last = Some(atoms.len());
            atoms.push(Atom { class, repeat: Repeat::Once });
            if atoms.len() > MAX_PATTERN_ATOMS {
                return Err(format!("it is too long (more than {MAX_PATTERN_ATOMS} elements)"));
            }
        }
        let skippable = atoms
            .iter()
            .enumerate()
            .filter(|(_, a)| a.repeat != Repeat::Once)
            .fold(0u128, |bits, (n, _)| bits | (1 << n));
        Ok(Pattern { atoms, skippable })
    }

    /// Adds the states reachable by skipping optional atoms.
    fn closure(&self, mut states: u128) -> u128 {
        loop {
            let grown = states | ((states & self.skippable) << 1);
            if grown == states {
                return states;
            }
            states = grown;
        }
    }

    /// Whether the whole of `s` matches. Never allocates.
    fn matches(&self, s: &str) -> bool {
        let accept = 1u128 << self.atoms.len();
        let mut states = self.closure(1);
        for c in s.chars() {
            let mut live = states & !accept;
            if live == 0 {
                return false;
            }
            let mut next = 0u128;
            while live != 0 {
                let n = live.trailing_zeros() as usize;
                live &= live - 1;
                let atom = &self.atoms[n];
                if atom.class.matches(c) {
                    next |= match atom.repeat {
                        Repeat::Any => 1 << n,
                        _ => 1 << (n + 1),
                    };
                }
            }
            states = self.closure(next);
        }
        states & accept != 0
    }
}

/// `{n}`, `{n,}` or `{n,m}`, as (min, max).
fn parse_braces(inside: &str) -> Option<(usize, Option<usize>)> {
    let num = |s: &str| -> Option<usize> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match inside.split_once(',') {
        None => num(inside).map(|n| (n, Some(n))),
        Some((min, "")) => num(min).map(|n| (n, None)),
        Some((min, max)) => {
            let (min, max) = (num(min)?, num(max)?);
            (min <= max).then_some((min, Some(max)))
        }
    }
}

/// The class of `\c` outside brackets.
fn escape(c: char) -> Result<Class, String> {
    let set = |negated: bool, ranges: &[(char, char)]| Class::Set { negated, ranges: ranges.to_vec() };
    Ok(match c {
        'd' => set(false, DIGIT),
        'D' => set(true, DIGIT),
        'w' => set(false, WORD),
        'W' => set(true, WORD),
        's' => set(false, SPACE),
        'S' => set(true, SPACE),
        't' => Class::Char('\t'),
        'n' => Class::Char('\n'),
        'r' => Class::Char('\r'),
        'f' => Class::Char('\x0c'),
        c if !c.is_alphanumeric() => Class::Char(c),
        c => return Err(format!("the escape '\\{c}' isn't supported")),
    })
}

/// A bracket class starting after its `[`; returns the class and the index after its `]`.
fn parse_set(chars: &[char], mut i: usize) -> Result<(Class, usize), String> {
    let open = i;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(format!("the '[' at position {open} is never closed"));
        };
        i += 1;
        // As in Java, a ']' right after '[' or '[^' is an ordinary character.
        if c == ']' && !first {
            break;
        }
        first = false;
        let lo = match c {
            '\\' => {
                let e = *chars.get(i).ok_or("it ends with a lone '\\'")?;
                i += 1;
                match e {
                    'd' => {
                        ranges.extend_from_slice(DIGIT);
                        continue;
                    }
                    'w' => {
                        ranges.extend_from_slice(WORD);
                        continue;
                    }
                    's' => {
                        ranges.extend_from_slice(SPACE);
                        continue;
                    }
                    e => match escape(e)? {
                        Class::Char(c) => c,
                        _ => {
                            return Err(format!("'\\{e}' isn't supported inside [...]; list the characters"));
                        }
                    },
                }
            }
            '[' => return Err("nested classes inside [...] aren't supported".into()),
            '&' if chars.get(i) == Some(&'&') => {
                return Err("'&&' inside [...] isn't supported".into());
            }
            c => c,
        };
        let hi = if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
            let hi = match chars[i + 1] {
                '\\' => match escape(*chars.get(i + 2).ok_or("it ends with a lone '\\'")?)? {
                    Class::Char(c) => {
                        i += 1;
                        c
                    }
                    _ => return Err("a range can't end with a class such as \\d".into()),
                },
                c => c,
            };
            i += 2;
            if hi < lo {
                return Err(format!("the range '{lo}-{hi}' is backwards"));
            }
            hi
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
    Ok((Class::Set { negated, ranges }, i))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// 2026-01-15T10:30:00Z.
    const REGISTERED_MS: i64 = 1_768_473_000_000;

    fn fixture() -> Instance {
        let attributes = [
            ("ecs.instance-type", Some("t2.small")),
            ("ecs.availability-zone", Some("us-east-1b")),
            ("ecs.ami-id", Some("ami-0123456789abcdef0")),
            ("ecs.os-type", Some("linux")),
            ("ecs.cpu-architecture", Some("x86_64")),
            ("stack", Some("prod")),
            ("cores", Some("16")),
            ("weight", Some("2.5")),
            ("gpu", None),
            ("motto", Some("it's")),
        ];
        Instance {
            arn: "arn:aws:ecs:us-east-1:000000000000:container-instance/prod/abc".into(),
            id: "abc".into(),
            status: "ACTIVE".into(),
            agent_connected: true,
            ec2_instance_id: "i-0abc1234".into(),
            registered_at_ms: REGISTERED_MS,
            attributes: attributes.into_iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect(),
            running_tasks: 3,
            task_groups: BTreeMap::from([
                ("service:production".to_string(), 2),
                ("family:nginx".to_string(), 1),
                ("service:gone".to_string(), 0),
            ]),
            ..Instance::default()
        }
    }

    #[track_caller]
    fn check(expr: &str, instance: &Instance, want: bool) {
        let parsed = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(parsed.eval(instance), want, "{expr} (parsed as {parsed})");
        // The canonical form means the same thing.
        let again = parse(&parsed.to_string()).unwrap_or_else(|e| panic!("{parsed}: {e}"));
        assert_eq!(again, parsed, "{expr} printed as {parsed}");
    }

    #[test]
    fn operators_and_subjects() {
        let i = fixture();
        let cases: &[(&str, bool)] = &[
            // == and equals, != and not_equals, on built-in and custom attributes.
            ("attribute:ecs.instance-type == t2.small", true),
            ("attribute:ecs.instance-type == t2.micro", false),
            ("attribute:ecs.instance-type equals t2.small", true),
            ("attribute:ecs.availability-zone != us-east-1d", true),
            ("attribute:ecs.availability-zone != us-east-1b", false),
            ("attribute:ecs.availability-zone not_equals us-east-1b", false),
            ("attribute:ecs.ami-id == ami-0123456789abcdef0", true),
            ("attribute:ecs.os-type == linux", true),
            ("attribute:ecs.os-type == windows", false),
            ("attribute:ecs.cpu-architecture == x86_64", true),
            ("attribute:ecs.cpu-architecture == arm64", false),
            ("attribute:stack == prod", true),
            // A missing attribute equals nothing, and differs from everything.
            ("attribute:missing == prod", false),
            ("attribute:missing != prod", true),
            // A valueless attribute exists but equals nothing.
            ("attribute:gpu == ''", false),
            ("attribute:gpu != x", true),
            // exists, !exists, not_exists, not exists.
            ("attribute:gpu exists", true),
            ("attribute:stack exists", true),
            ("attribute:missing exists", false),
            ("attribute:missing !exists", true),
            ("attribute:gpu !exists", false),
            ("attribute:missing not_exists", true),
            ("attribute:stack not exists", false),
            // Ordering: numeric when both sides are numbers, lexicographic otherwise.
            ("attribute:cores > 9", true),
            ("attribute:cores > 16", false),
            ("attribute:cores greater_than 15.5", true),
            ("attribute:cores >= 16", true),
            ("attribute:cores >= 17", false),
            ("attribute:cores greater_than_equal 16.0", true),
            ("attribute:cores < 100", true),
            ("attribute:cores < 16", false),
            ("attribute:cores less_than 16.01", true),
            ("attribute:cores <= 16", true),
            ("attribute:cores <= -3", false),
            ("attribute:cores less_than_equal 16", true),
            ("attribute:weight > 2.25", true),
            ("attribute:weight < 10", true),
            ("attribute:cores == 16.0", false),
            ("attribute:stack > abc", true),
            ("attribute:stack > zeta", false),
            ("attribute:stack < 'prod2'", true),
            ("attribute:stack >= prod", true),
            ("attribute:cores > '9a'", false),
            ("attribute:missing < 100", false),
            ("attribute:missing >= 0", false),
            // in, not_in, !in, not in.
            ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", true),
            ("attribute:ecs.availability-zone in [us-east-1a, us-east-1c]", false),
            ("attribute:ecs.availability-zone in [us-east-1b]", true),
            ("attribute:ecs.availability-zone not_in [us-east-1a, us-east-1c]", true),
            ("attribute:ecs.availability-zone !in [us-east-1b]", false),
            ("attribute:ecs.availability-zone not in [us-east-1b, x]", false),
            ("attribute:missing in [a, b]", false),
            ("attribute:missing not_in [a, b]", true),
            // =~, matches, !~, not_matches.
            ("attribute:ecs.instance-type =~ t2.*", true),
            ("attribute:ecs.instance-type =~ g2.*", false),
            ("attribute:ecs.instance-type matches 't2\\.[a-z]+'", true),
            ("attribute:ecs.instance-type =~ t2", false),
            ("attribute:ecs.instance-type =~ *small", true),
            ("attribute:ecs.instance-type =~ *large", false),
            ("attribute:ecs.instance-type !~ g2.*", true),
            ("attribute:ecs.instance-type not_matches t2.*", false),
            ("attribute:missing =~ *", false),
            ("attribute:missing !~ *", true),
            ("attribute:ecs.availability-zone =~ 'us-east-1[ab]'", true),
            ("attribute:ecs.availability-zone =~ 'us-east-1[^ab]'", false),
            // ec2InstanceId.
            ("ec2InstanceId == i-0abc1234", true),
            ("ec2InstanceId != i-0abc1234", false),
            ("ec2InstanceId in ['i-abcd1234', 'i-0abc1234']", true),
            ("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", false),
            ("ec2InstanceId not_in ['i-abcd1234']", true),
            ("ec2InstanceId =~ 'i-0abc\\d+'", true),
            ("ec2InstanceId !~ i-*", true),
            // agentConnected.
            ("agentConnected == true", true),
            ("agentConnected == false", false),
            ("agentConnected == TRUE", true),
            ("agentConnected != true", false),
            ("agentConnected in [false]", false),
            ("agentConnected not_in [false]", true),
            ("agentConnected =~ t.*", true),
            ("agentConnected !~ t.*", false),
            // runningTasksCount.
            ("runningTasksCount == 3", true),
            ("runningTasksCount == 1", false),
            ("runningTasksCount != 3", false),
            ("runningTasksCount > 2", true),
            ("runningTasksCount > 3", false),
            ("runningTasksCount >= 3", true),
            ("runningTasksCount < 3", false),
            ("runningTasksCount <= 3", true),
            ("runningTasksCount less_than 10", true),
            // registeredAt: by day for a bare date, by second otherwise.
            ("registeredAt == 2026-01-15", true),
            ("registeredAt == 2026-01-16", false),
            ("registeredAt != 2026-01-15", false),
            ("registeredAt < 2026-01-16", true),
            ("registeredAt < 2026-01-15", false),
            ("registeredAt <= 2026-01-15", true),
            ("registeredAt > 2026-01-14", true),
            ("registeredAt > 2026-01-15", false),
            ("registeredAt >= 2026-01-15", true),
            ("registeredAt > 2018-02-13", true),
            ("registeredAt == 2026-01-15T10:30:00Z", true),
            ("registeredAt == 2026-01-15T10:30:00", true),
            ("registeredAt == 2026-01-15T10:30:00+00:00", true),
            ("registeredAt == 2026-01-15T12:30:00+02:00", true),
            ("registeredAt == 2026-01-15T05:30:00-05:00", true),
            ("registeredAt > 2026-01-15T10:29:59Z", true),
            ("registeredAt > 2026-01-15T10:30:00Z", false),
            ("registeredAt < 2026-01-15T10:30:01Z", true),
            ("registeredAt <= 2026-01-15T11:30:00+01:00", true),
            ("registeredAt >= 2026-01-15T10:30:01Z", false),
            // task:group: the groups with tasks on the instance.
            ("task:group == service:production", true),
            ("task:group == database", false),
            ("task:group == service:gone", false),
            ("task:group != database", true),
            ("task:group != family:nginx", false),
            ("not(task:group == database)", true),
            ("not(task:group == family:nginx)", false),
            ("task:group in [database, family:nginx]", true),
            ("task:group not_in [database, service:gone]", true),
            ("task:group =~ service:.*", true),
            ("task:group =~ 'service:g.*'", false),
            ("task:group !~ 'family:.*'", false),
            // Patterns are regular expressions: `family:*` is "family" then any number of ':'.
            ("task:group =~ family:*", false),
            ("task:group exists", true),
            ("task:group !exists", false),
            // agentVersion: the snapshot doesn't carry it yet, so only negations hold.
            ("agentVersion < 1.14.5", false),
            ("agentVersion != 1.14.5", true),
            // Quoted values, bare words that look like keywords, escapes.
            ("attribute:stack == \"prod\"", true),
            ("attribute:stack == 'prod'", true),
            ("attribute:stack == 'prod '", false),
            ("attribute:motto == 'it\\'s'", true),
            ("attribute:motto == \"it's\"", true),
            ("attribute:motto == 'it\\\\'", false),
            ("attribute:stack != and", true),
            // Spacing is free.
            ("attribute:stack==prod&&runningTasksCount<4", true),
            ("(attribute:stack==prod)", true),
        ];
        for &(expr, want) in cases {
            check(expr, &i, want);
        }
    }

    #[test]
    fn boolean_operators_and_precedence() {
        let i = fixture();
        let (t, f) = ("attribute:stack == prod", "attribute:stack == dev");
        let cases = [
            (format!("{t} and {t}"), true),
            (format!("{t} and {f}"), false),
            (format!("{t} && {f}"), false),
            (format!("{f} or {t}"), true),
            (format!("{f} || {f}"), false),
            (format!("{t} AND {t} Or {f}"), true),
            (format!("not {t}"), false),
            (format!("! {f}"), true),
            (format!("!({f})"), true),
            (format!("not not {t}"), true),
            // `and` binds tighter than `or`.
            (format!("{t} or {t} and {f}"), true),
            (format!("({t} or {t}) and {f}"), false),
            (format!("{f} and {t} or {t}"), true),
            (format!("{f} and ({t} or {t})"), false),
            // `not` binds tighter than `and` and `or`.
            (format!("not {f} and {t}"), true),
            (format!("not {t} or {t}"), true),
            (format!("not ({t} or {t})"), false),
            (format!("not {t} and {f} or {f}"), false),
            (format!("((({t})))"), true),
            (
                "attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != \
                 us-east-1d"
                    .into(),
                false,
            ),
            (format!("{f} or {f} or {f} or {t}"), true),
            (format!("{t} and {t} and {t} and {f}"), false),
        ];
        for (expr, want) in cases {
            check(&expr, &i, want);
        }
    }

    #[test]
    fn display_is_canonical() {
        let cases = [
            ("attribute:a equals b", "attribute:a == b"),
            ("attribute:a !in [x,'y z']", "attribute:a not_in [x, 'y z']"),
            (
                "attribute:a == b or attribute:c == d and not attribute:e exists",
                "attribute:a == b or attribute:c == d and not(attribute:e exists)",
            ),
            (
                "(attribute:a == b or attribute:c == d) and attribute:e == f",
                "(attribute:a == b or attribute:c == d) and attribute:e == f",
            ),
            (
                "attribute:a == b or (attribute:c == d or attribute:e == f)",
                "attribute:a == b or (attribute:c == d or attribute:e == f)",
            ),
            ("agentConnected == True", "agentConnected == true"),
            ("attribute:a =~ '\\d'", "attribute:a =~ '\\\\d'"),
            ("attribute:a == ''", "attribute:a == ''"),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).unwrap().to_string(), want, "{input}");
        }
    }

    #[test]
    fn syntax_errors_say_what_and_where() {
        let long = "attribute:a == b or ".repeat(100) + "attribute:a == b";
        let deep = "(".repeat(70) + "attribute:a == b" + &")".repeat(70);
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "the expression is empty"),
            ("   ", 1, "the expression is empty"),
            (
                "attribute:ecs.instance-type = t2.small",
                29,
                "expected an operator after 'attribute:ecs.instance-type', found '=' (did you \
                 mean '=='?)",
            ),
            (
                "attribute:ecs.instance-type t2.small",
                29,
                "expected an operator after 'attribute:ecs.instance-type', found 't2.small'",
            ),
            ("instanceType == t2.small", 1, "unknown subject 'instanceType'"),
            ("attribute: == x", 1, "'attribute:' needs a name"),
            ("attribute:a ==", 15, "expected a value after '==', found the end"),
            ("attribute:a == )", 16, "expected a value after '==', found ')'"),
            (
                "attribute:a == b and",
                21,
                "expected a condition (subject operator argument) after 'and', found the end of the expression",
            ),
            ("attribute:a == b or or", 21, "after 'or', found 'or'"),
            (
                "attribute:a == b attribute:c == d",
                18,
                "unexpected 'attribute:c' after a complete condition; expected 'and', 'or'",
            ),
            ("attribute:a == b & attribute:c == d", 18, "unexpected '&'"),
            ("attribute:a == b & attribute:c == d", 18, "did you mean '&&'?"),
            ("attribute:a == b)", 17, "unexpected ')' with no '(' to close"),
            ("(attribute:a == b", 18, "expected ')' to close the '(' at column 1"),
            ("not", 4, "expected a condition (subject operator argument) after 'not'"),
            ("()", 2, "expected a condition"),
            ("attribute:a == 'b", 16, "the quoted value opened by ' is never closed"),
            ("attribute:a in b", 16, "expected '[' to start a list after 'in', found 'b'"),
            ("attribute:a in [b, c", 21, "expected ',' or ']' to close the list opened at column 16"),
            ("attribute:a in [b c]", 19, "found 'c'"),
            ("attribute:a in []", 17, "the list after 'in' is empty"),
            ("attribute:a in [b,]", 19, "expected a value after ','"),
            ("attribute:a # b", 13, "found '#'"),
            (
                "agentConnected > true",
                16,
                "the operator '>' can't be used with agentConnected; use one of ==, !=, in, not_in, =~, !~",
            ),
            ("agentConnected == yes", 19, "agentConnected compares with true or false, found 'yes'"),
            ("ec2InstanceId exists", 15, "the operator 'exists' can't be used with ec2InstanceId"),
            ("runningTasksCount in [1, 2]", 19, "can't be used with runningTasksCount"),
            (
                "runningTasksCount greater_than many",
                32,
                "runningTasksCount compares with a whole number, found 'many'",
            ),
            ("runningTasksCount < 1.5", 21, "whole number"),
            ("registeredAt < 2018-13-01", 16, "registeredAt compares with a date such as 2018-06-18"),
            ("registeredAt < 2018-02-30", 16, "found '2018-02-30'"),
            ("registeredAt < 2018-02-03T25:00:00Z", 16, "a date"),
            ("registeredAt < yesterday", 16, "a date"),
            ("registeredAt =~ 2018.*", 14, "can't be used with registeredAt"),
            (
                "agentVersion < latest",
                16,
                "agentVersion compares with a version such as 1.14.5, found 'latest'",
            ),
            ("task:group > a", 12, "can't be used with task:group"),
            ("attribute:a =~ 'a(b|c)'", 16, "invalid pattern 'a(b|c)': groups and alternation"),
            ("attribute:a =~ 'a**'", 16, "invalid pattern 'a**'"),
            ("attribute:a =~ '+a'", 16, "nothing to repeat"),
            ("attribute:a =~ '[ab'", 16, "is never closed"),
            ("attribute:a =~ 'a{3,1}'", 16, "isn't a repetition"),
            ("attribute:a =~ '\\p{L}'", 16, "the escape '\\p' isn't supported"),
            ("attribute:a =~ 'a^b'", 16, "only supported at the ends"),
            ("attribute:a =~ 'a{200}'", 16, "too long"),
            ("attribute:a =~ 'a{99999999999999999999999}'", 16, "isn't a repetition"),
            ("attribute:a =~ ", 16, "expected a value after '=~'"),
            ("attribute:a ! b", 13, "expected an operator after 'attribute:a', found '!'"),
            ("== b", 1, "expected a condition (subject operator argument), found '=='"),
            (&long, 2001, "the expression is 2016 characters long; the limit is 2000"),
            (&deep, 65, "nest more than 64 deep"),
        ];
        for &(input, column, fragment) in cases {
            let err = parse(input).expect_err(input);
            let message = err.to_string();
            assert_eq!(err.column, column, "{input}: {message}");
            assert!(
                message.starts_with(&format!("Invalid expression at column {column}: ")),
                "{input}: {message}"
            );
            assert!(message.contains(fragment), "{input}: {message}");
        }
    }

    #[test]
    fn patterns() {
        let cases: &[(&str, &str, bool)] = &[
            ("t2.*", "t2.small", true),
            ("t2.*", "t2", true),
            ("t2.*", "t3.small", false),
            ("t2.*", "t2xlarge", true),
            ("t2\\..*", "t2xlarge", false),
            ("*", "", true),
            ("*", "anything", true),
            (".*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a+", "", false),
            ("a+", "aaa", true),
            ("ab?c", "ac", true),
            ("ab?c", "abc", true),
            ("ab?c", "abbc", false),
            ("a{2}", "aa", true),
            ("a{2}", "aaa", false),
            ("a{2,}", "aaaa", true),
            ("a{2,3}b", "aaab", true),
            ("a{2,3}b", "aaaab", false),
            ("^m5\\..*$", "m5.large", true),
            ("[a-c]+", "abcab", true),
            ("[a-c]+", "abd", false),
            ("[^0-9]*", "abc", true),
            ("[^0-9]*", "ab1", false),
            ("[]a]", "]", true),
            ("[\\d.]+", "1.14.5", true),
            ("\\d+\\.\\d+", "12.5", true),
            ("\\w+-\\w+", "us_east-1", true),
            ("\\s", " ", true),
            ("\\S+", "a b", false),
            ("a.c", "a\nc", false),
            (".*.*.*.*.*.*.*.*.*.*x", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("*.large", "m5.large", true),
            ("ä.ö", "äxö", true),
            ("a*?b", "aab", true),
        ];
        for &(pattern, value, want) in cases {
            let compiled = Pattern::compile(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(compiled.matches(value), want, "{pattern} =~ {value:?}");
        }
    }

    #[test]
    fn numbers_dates_and_versions() {
        assert_eq!(parse_number("16"), Some(16.0));
        assert_eq!(parse_number("-2.5"), Some(-2.5));
        for not_a_number in ["", "-", "1.", ".5", "1e3", "inf", "NaN", "1.2.3", "+1"] {
            assert_eq!(parse_number(not_a_number), None, "{not_a_number}");
        }
        let date = |s| parse_date(s).map(|d| (d.seconds, d.day_only));
        assert_eq!(date("2018-06-18T22:28:28Z"), Some((1_529_360_908, false)));
        assert_eq!(date("2018-06-18T22:28:28"), Some((1_529_360_908, false)));
        assert_eq!(date("2018-06-18T22:28:28+00:00"), Some((1_529_360_908, false)));
        assert_eq!(date("2018-06-18T22:28:28+02:00"), Some((1_529_353_708, false)));
        assert_eq!(date("2018-02-13"), Some((1_518_480_000, true)));
        assert_eq!(date("2000-02-29"), Some((951_782_400, true)));
        assert_eq!(date("1969-12-31T23:59:59Z"), Some((-1, false)));
        for bad in ["2018-6-18", "2018-06-18T", "2018-06-18 22:28:28", "2019-02-29", "2018-06-18Z"] {
            assert_eq!(date(bad), None, "{bad}");
        }
        let cmp = |have, want| compare_versions(have, &parse_version(want).unwrap());
        assert_eq!(cmp("1.14.5", "1.14.5"), Some(Ordering::Equal));
        assert_eq!(cmp("1.14", "1.14.0"), Some(Ordering::Equal));
        assert_eq!(cmp("1.9.0", "1.14.5"), Some(Ordering::Less));
        assert_eq!(cmp("1.100", "1.14.5"), Some(Ordering::Greater));
        assert_eq!(cmp("1.x", "1.14.5"), None);
        assert_eq!(parse_version("1..2"), None);
    }

    #[test]
    fn a_registration_before_the_epoch_compares_by_its_own_day() {
        let i = Instance { registered_at_ms: -1, ..fixture() };
        check("registeredAt == 1969-12-31", &i, true);
        check("registeredAt < 1970-01-01", &i, true);
        check("registeredAt == 1969-12-31T23:59:59Z", &i, true);
    }

    /// Counts the current thread's allocations, to hold `eval` to its promise.
    #[allow(unsafe_code)]
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
        }

        struct Counting;

        // SAFETY: defers to the system allocator; the counter is a const-initialised
        // thread-local without a destructor, so touching it never allocates.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
                // SAFETY: the caller's contract is System's.
                unsafe { System.alloc(layout) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: the caller's contract is System's.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;

        pub fn allocations() -> usize {
            ALLOCATIONS.with(Cell::get)
        }
    }

    #[test]
    fn eval_never_allocates() {
        let i = fixture();
        let at_start = counting::allocations();
        let exprs: Vec<Expr> = [
            "attribute:ecs.availability-zone in [us-east-1a, us-east-1b] and \
             attribute:ecs.instance-type =~ 't2\\.[a-z]+'",
            "not(task:group == database) or task:group =~ service:.* or task:group exists",
            "attribute:cores > 9.5 and attribute:stack < zeta and runningTasksCount <= 3",
            "registeredAt > 2018-06-18T22:28:28+00:00 and registeredAt == 2026-01-15",
            "ec2InstanceId != i-1 and agentConnected == true and agentVersion != 1.14",
            "attribute:missing !exists and attribute:gpu exists",
        ]
        .iter()
        .map(|e| parse(e).unwrap())
        .collect();
        let before = counting::allocations();
        assert!(before > at_start, "the counter counts (parsing allocates)");
        let mut held = 0;
        for e in &exprs {
            held += usize::from(e.eval(&i));
        }
        assert_eq!(counting::allocations(), before, "eval allocated");
        assert_eq!(held, exprs.len());
    }

    #[test]
    fn depends_on_tasks() {
        let yes = ["runningTasksCount < 2", "attribute:a == b or not(task:group == x)"];
        let no = ["attribute:a == b", "registeredAt < 2018-01-01 and agentConnected == true"];
        for e in yes {
            assert!(parse(e).unwrap().depends_on_tasks(), "{e}");
        }
        for e in no {
            assert!(!parse(e).unwrap().depends_on_tasks(), "{e}");
        }
    }

    // Property tests over random expressions and instances drawn from the same small pools of
    // names and values, so that conditions are true about as often as false.

    const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
    const GROUPS: [&str; 3] = ["service:web", "service:db", "family:batch"];

    fn instance() -> impl Strategy<Value = Instance> {
        (
            any::<bool>(),
            0..4usize,
            0..4i64,
            prop::option::of(prop::option::of(0..3usize)),
            prop::option::of(0..40i64),
            prop::collection::btree_map(0..3usize, 0..3i64, 0..3),
            0..3i64,
        )
            .prop_map(|(connected, ec2, days, zone, size, groups, running)| {
                let mut attributes = BTreeMap::new();
                if let Some(zone) = zone {
                    attributes
                        .insert("ecs.availability-zone".to_string(), zone.map(|z| ZONES[z].to_string()));
                }
                if let Some(size) = size {
                    attributes.insert("size".to_string(), Some(size.to_string()));
                }
                Instance {
                    agent_connected: connected,
                    ec2_instance_id: format!("i-{ec2}"),
                    registered_at_ms: (days_from_civil(2026, 1, 1) + days) * 86_400_000 + 3_600_000,
                    attributes,
                    running_tasks: running,
                    task_groups: groups.into_iter().map(|(g, n)| (GROUPS[g].to_string(), n)).collect(),
                    ..Instance::default()
                }
            })
    }

    fn condition() -> impl Strategy<Value = String> {
        let ops = prop::sample::select(vec!["==", "!=", ">", ">=", "<", "<=", "greater_than"]);
        let zone = prop::sample::select(ZONES.to_vec());
        let group = prop::sample::select(GROUPS.to_vec());
        prop_oneof![
            (prop::sample::select(vec!["==", "!=", "=~", "!~"]), zone.clone())
                .prop_map(|(op, z)| format!("attribute:ecs.availability-zone {op} {z}")),
            prop::sample::select(vec!["exists", "!exists", "not_exists"])
                .prop_map(|op| format!("attribute:ecs.availability-zone {op}")),
            (prop::sample::select(vec!["in", "not_in", "!in"]), zone.clone(), zone)
                .prop_map(|(op, a, b)| format!("attribute:ecs.availability-zone {op} [{a}, '{b}']")),
            (ops.clone(), 0..40i64).prop_map(|(op, n)| format!("attribute:size {op} {n}")),
            (ops.clone(), 0..3i64).prop_map(|(op, n)| format!("runningTasksCount {op} {n}")),
            (ops, 0..4u32).prop_map(|(op, d)| format!("registeredAt {op} 2026-01-0{}", d + 1)),
            (prop::sample::select(vec!["==", "!=", "=~"]), group)
                .prop_map(|(op, g)| format!("task:group {op} {g}")),
            any::<bool>().prop_map(|b| format!("agentConnected == {b}")),
            (0..4usize).prop_map(|n| format!("ec2InstanceId =~ 'i-[0-{n}]'")),
        ]
    }

    fn expression() -> impl Strategy<Value = String> {
        condition().prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} or {b}")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || {b}")),
                inner.clone().prop_map(|a| format!("not({a})")),
                inner.prop_map(|a| format!("!({a})")),
            ]
        })
    }

    proptest! {
        #[test]
        fn double_negation_changes_nothing(e in expression(), i in instance()) {
            let once = parse(&e).unwrap();
            let twice = parse(&format!("not(not({e}))")).unwrap();
            prop_assert_eq!(once.eval(&i), twice.eval(&i));
        }

        #[test]
        fn printing_then_parsing_gives_the_same_expression(e in expression(), i in instance()) {
            let parsed = parse(&e).unwrap();
            let printed = parsed.to_string();
            let again = parse(&printed).unwrap();
            prop_assert_eq!(&again, &parsed, "{} printed as {}", e, printed);
            prop_assert_eq!(again.eval(&i), parsed.eval(&i));
        }

        #[test]
        fn de_morgan_holds(a in expression(), b in expression(), i in instance()) {
            let lhs = parse(&format!("not(({a}) and ({b}))")).unwrap();
            let rhs = parse(&format!("not({a}) or not({b})")).unwrap();
            prop_assert_eq!(lhs.eval(&i), rhs.eval(&i));
        }

        #[test]
        fn negative_operators_negate_positive_ones(c in condition(), i in instance()) {
            // Every condition's operator swapped for its opposite gives the opposite answer.
            let swaps = [(" == ", " != "), (" =~ ", " !~ "), (" exists", " !exists"),
                         (" in ", " not_in ")];
            for (pos, neg) in swaps {
                if c.contains(pos) && !c.contains(neg) {
                    let positive = parse(&c).unwrap().eval(&i);
                    let negative = parse(&c.replace(pos, neg)).unwrap().eval(&i);
                    prop_assert_eq!(positive, !negative, "{}", c);
                }
            }
        }

        #[test]
        fn the_parser_never_panics(s in "[a-z:. =!<>~()\\[\\],'&|*0-9-]{0,60}") {
            let _ = parse(&s);
        }
    }
}
