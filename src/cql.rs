//! The cluster query language: parse an expression once, evaluate it against container instances.
//!
//! Pure: no I/O, no clock. Used by `ListContainerInstances.filter` and by `memberOf` placement
//! constraints (RunTask, StartTask, services and task definitions). Grammar (precedence not > and > or; keywords case-insensitive):
//!
//! ```text
//! expr    := and ( ("or" | "||") and )*
//! and     := not ( ("and" | "&&") not )*
//! not     := ("not" | "!") not | "(" expr ")" | simple
//! simple  := subject ("exists" | "!exists" | "not_exists")
//!          | subject binop value
//!          | subject ("in" | "!in" | "not_in") "[" value ("," value)* "]"
//! subject := agentConnected | agentVersion | ec2InstanceId | registeredAt | runningTasksCount
//!          | task:group | attribute:NAME
//! ```
//!
//! `=~` / `matches` uses Rust regex syntax with whole-string matching (Java `matches()`
//! semantics; no backreferences or lookaround). A missing attribute satisfies only `!exists`.

use regex::{Regex, RegexBuilder};

use crate::model::Attribute;

/// The longest expression, in characters (ECS's bound for a `memberOf` expression; the same
/// for a `filter`).
pub const MAX_LENGTH: usize = 2000;
/// The deepest nesting of parentheses and `not`s. Parsing and evaluation recurse once per level,
/// so this bounds their stack.
pub const MAX_DEPTH: usize = 32;
/// The most memory one `matches` pattern may compile to.
const MAX_PATTERN_BYTES: usize = 256 * 1024;

/// What an expression is evaluated against.
pub struct InstanceFacts<'a> {
    pub agent_connected: bool,
    pub agent_version: Option<&'a str>,
    pub ec2_instance_id: &'a str,
    pub registered_at_ms: u64,
    pub running_tasks: u64,
    /// Groups of the instance's tasks that are not STOPPED, with their task counts.
    pub task_groups: &'a std::collections::BTreeMap<String, u64>,
    pub attributes: &'a [Attribute],
}

/// A parse error, with the character offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct CqlError {
    pub position: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    AgentConnected,
    AgentVersion,
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
    Attribute(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
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

#[derive(Debug, Clone)]
enum Arg {
    None,
    One(String),
    List(Vec<String>),
    Pattern(Regex),
    Time(u64),
}

/// A parsed expression.
#[derive(Debug, Clone)]
pub struct Expr(Node);

#[derive(Debug, Clone)]
enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Test { subject: Subject, op: Op, arg: Arg },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    OpenList,
    CloseList,
    Comma,
    Word(String),
    Quoted(String),
}

fn err(position: usize, message: impl Into<String>) -> CqlError {
    CqlError {
        position,
        message: message.into(),
    }
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, CqlError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' | '[' | ']' | ',' => {
                out.push((
                    pos,
                    match c {
                        '(' => Tok::Open,
                        ')' => Tok::Close,
                        '[' => Tok::OpenList,
                        ']' => Tok::CloseList,
                        _ => Tok::Comma,
                    },
                ));
                i += 1;
            }
            '\'' | '"' => {
                let quote = c;
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && chars[j].1 != quote {
                    j += 1;
                }
                if j == chars.len() {
                    return Err(err(pos, "unterminated quoted value"));
                }
                out.push((pos, Tok::Quoted(chars[start..j].iter().map(|(_, c)| c).collect())));
                i = j + 1;
            }
            _ => {
                // Operators end a word, so `a==b` reads as `a == b`; `!exists` stays a word.
                let is_op = |k: usize| {
                    let ch = chars[k].1;
                    "=<>~".contains(ch) || (ch == '!' && chars.get(k + 1).is_some_and(|n| "=~".contains(n.1)))
                };
                let start = i;
                if is_op(i) {
                    while i < chars.len() && "=!<>~".contains(chars[i].1) {
                        i += 1;
                    }
                } else {
                    while i < chars.len()
                        && !chars[i].1.is_whitespace()
                        && !"()[],'\"".contains(chars[i].1)
                        && !is_op(i)
                    {
                        i += 1;
                    }
                }
                out.push((pos, Tok::Word(chars[start..i].iter().map(|(_, c)| c).collect())));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    at: usize,
    end: usize,
    /// Parentheses and `not`s open around the current position.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(_, t)| t)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.at).map_or(self.end, |(p, _)| *p)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).map(|(_, t)| t.clone());
        self.at += 1;
        t
    }

    fn keyword(&self, words: &[&str]) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if words.iter().any(|k| w.eq_ignore_ascii_case(k)))
    }

    fn expr(&mut self) -> Result<Node, CqlError> {
        let mut left = self.and()?;
        while self.keyword(&["or", "||"]) {
            self.at += 1;
            left = Node::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, CqlError> {
        let mut left = self.not()?;
        while self.keyword(&["and", "&&"]) {
            self.at += 1;
            left = Node::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    /// Enters one more level of nesting, refused beyond [`MAX_DEPTH`].
    fn descend(&mut self) -> Result<(), CqlError> {
        if self.depth >= MAX_DEPTH {
            return Err(err(self.pos(), format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        Ok(())
    }

    fn not(&mut self) -> Result<Node, CqlError> {
        if self.keyword(&["not", "!"]) {
            self.descend()?;
            self.at += 1;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.descend()?;
            self.at += 1;
            let inner = self.expr()?;
            self.depth -= 1;
            if self.next() != Some(Tok::Close) {
                return Err(err(
                    self.toks.get(self.at - 1).map_or(self.end, |(p, _)| *p),
                    "expected )",
                ));
            }
            return Ok(inner);
        }
        self.simple()
    }

    fn value(&mut self) -> Result<String, CqlError> {
        let pos = self.pos();
        match self.next() {
            Some(Tok::Word(w)) | Some(Tok::Quoted(w)) => Ok(w),
            _ => Err(err(pos, "expected a value")),
        }
    }

    fn simple(&mut self) -> Result<Node, CqlError> {
        let pos = self.pos();
        let subject = match self.next() {
            Some(Tok::Word(w)) => parse_subject(&w).ok_or_else(|| err(pos, format!("unknown subject {w}")))?,
            _ => return Err(err(pos, "expected a subject such as attribute:NAME")),
        };
        let op_pos = self.pos();
        let op = match self.next() {
            Some(Tok::Word(w)) => parse_op(&w).ok_or_else(|| err(op_pos, format!("unknown operator {w}")))?,
            _ => return Err(err(op_pos, "expected an operator")),
        };
        check_op(&subject, op).map_err(|m| err(op_pos, m))?;
        let arg = match op {
            Op::Exists | Op::NotExists => Arg::None,
            Op::In | Op::NotIn => {
                if self.next() != Some(Tok::OpenList) {
                    return Err(err(self.pos(), "expected [ to start a list"));
                }
                let mut values = vec![self.value()?];
                loop {
                    let p = self.pos();
                    match self.next() {
                        Some(Tok::Comma) => values.push(self.value()?),
                        Some(Tok::CloseList) => break,
                        _ => return Err(err(p, "expected , or ]")),
                    }
                }
                Arg::List(values)
            }
            Op::Matches | Op::NotMatches => {
                let p = self.pos();
                let pattern = self.value()?;
                let regex = RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .size_limit(MAX_PATTERN_BYTES)
                    .nest_limit(MAX_DEPTH as u32)
                    .build()
                    .map_err(|e| err(p, format!("invalid pattern {pattern}: {e}")))?;
                Arg::Pattern(regex)
            }
            _ => {
                let p = self.pos();
                let value = self.value()?;
                match subject {
                    Subject::RegisteredAt => {
                        Arg::Time(parse_time(&value).ok_or_else(|| err(p, format!("invalid date {value}")))?)
                    }
                    Subject::RunningTasksCount if value.parse::<u64>().is_err() => {
                        return Err(err(p, format!("runningTasksCount needs a number, got {value}")))
                    }
                    _ => Arg::One(value),
                }
            }
        };
        Ok(Node::Test { subject, op, arg })
    }
}

fn parse_subject(word: &str) -> Option<Subject> {
    if let Some(name) = word.strip_prefix("attribute:") {
        let ok =
            (1..=128).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        return ok.then(|| Subject::Attribute(name.to_string()));
    }
    Some(match word {
        "agentConnected" => Subject::AgentConnected,
        "agentVersion" => Subject::AgentVersion,
        "ec2InstanceId" => Subject::Ec2InstanceId,
        "registeredAt" => Subject::RegisteredAt,
        "runningTasksCount" => Subject::RunningTasksCount,
        "task:group" => Subject::TaskGroup,
        _ => return None,
    })
}

fn parse_op(word: &str) -> Option<Op> {
    Some(match word.to_ascii_lowercase().as_str() {
        "==" | "equals" => Op::Eq,
        "!=" | "not_equals" => Op::Ne,
        ">" | "greater_than" => Op::Gt,
        ">=" | "greater_than_equal" => Op::Ge,
        "<" | "less_than" => Op::Lt,
        "<=" | "less_than_equal" => Op::Le,
        "exists" => Op::Exists,
        "!exists" | "not_exists" => Op::NotExists,
        "in" => Op::In,
        "!in" | "not_in" => Op::NotIn,
        "=~" | "matches" => Op::Matches,
        "!~" | "not_matches" => Op::NotMatches,
        _ => return None,
    })
}

fn check_op(subject: &Subject, op: Op) -> Result<(), String> {
    use Op::*;
    let ok = match subject {
        Subject::AgentConnected | Subject::Ec2InstanceId => matches!(op, Eq | Ne | In | NotIn | Matches | NotMatches),
        Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => {
            matches!(op, Eq | Ne | Gt | Ge | Lt | Le)
        }
        Subject::TaskGroup => matches!(op, Eq | Ne | In | NotIn | Exists | NotExists | Matches | NotMatches),
        Subject::Attribute(_) => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("operator {op:?} cannot be used with {subject:?}"))
    }
}

/// Epoch milliseconds of `2018-06-18T22:28:28+00:00`, `…Z`, `2018-06-18T22:28:28` or `2018-06-18`.
fn parse_time(text: &str) -> Option<u64> {
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i64 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    if let Some(time) = time {
        let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
            (c, 0)
        } else if let Some(i) = time.rfind(['+', '-']) {
            let sign = if time.as_bytes()[i] == b'-' { -1 } else { 1 };
            let (h, m) = time[i + 1..].split_once(':')?;
            (
                &time[..i],
                sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60),
            )
        } else {
            (time, 0)
        };
        let hms: Vec<i64> = clock.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        if hms.len() != 3 || hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
            return None;
        }
        seconds += hms[0] * 3600 + hms[1] * 60 + hms[2] - offset;
    }
    u64::try_from(seconds).ok().map(|s| s * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an expression.
/// Parses `text`: at most [`MAX_LENGTH`] characters, nested at most [`MAX_DEPTH`] deep.
pub fn parse(text: &str) -> Result<Expr, CqlError> {
    if let Some((position, _)) = text.char_indices().nth(MAX_LENGTH) {
        return Err(err(position, format!("longer than {MAX_LENGTH} characters")));
    }
    let toks = lex(text)?;
    if toks.is_empty() {
        return Err(err(0, "empty expression"));
    }
    let mut parser = Parser {
        toks,
        at: 0,
        end: text.len(),
        depth: 0,
    };
    let expr = parser.expr()?;
    if parser.at < parser.toks.len() {
        return Err(err(parser.pos(), "unexpected text after the expression"));
    }
    Ok(Expr(expr))
}

fn compare_text(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

fn ordered(op: Op, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => ord == Equal,
        Op::Ne => ord != Equal,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        _ => false,
    }
}

fn test_one(value: &str, op: Op, arg: &Arg) -> bool {
    match (op, arg) {
        (Op::In, Arg::List(l)) => l.iter().any(|v| v == value),
        (Op::NotIn, Arg::List(l)) => !l.iter().any(|v| v == value),
        (Op::Matches, Arg::Pattern(r)) => r.is_match(value),
        (Op::NotMatches, Arg::Pattern(r)) => !r.is_match(value),
        (op, Arg::One(v)) => ordered(op, compare_text(value, v)),
        _ => false,
    }
}

/// Evaluates `expr` for one instance.
pub fn eval(expr: &Expr, facts: &InstanceFacts<'_>) -> bool {
    eval_node(&expr.0, facts)
}

fn eval_node(node: &Node, facts: &InstanceFacts<'_>) -> bool {
    match node {
        Node::And(a, b) => eval_node(a, facts) && eval_node(b, facts),
        Node::Or(a, b) => eval_node(a, facts) || eval_node(b, facts),
        Node::Not(e) => !eval_node(e, facts),
        Node::Test { subject, op, arg } => match subject {
            Subject::Attribute(name) => match facts.attributes.iter().find(|a| &a.name == name) {
                None => *op == Op::NotExists,
                Some(_) if *op == Op::Exists => true,
                Some(_) if *op == Op::NotExists => false,
                Some(Attribute { value: None, .. }) => false,
                Some(Attribute { value: Some(v), .. }) => test_one(v, *op, arg),
            },
            Subject::AgentConnected => test_one(if facts.agent_connected { "true" } else { "false" }, *op, arg),
            Subject::Ec2InstanceId => test_one(facts.ec2_instance_id, *op, arg),
            Subject::AgentVersion => match (facts.agent_version, arg) {
                (Some(have), Arg::One(want)) => {
                    let less = crate::model::version_less;
                    let ord = if less(have, want) {
                        std::cmp::Ordering::Less
                    } else if less(want, have) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Equal
                    };
                    ordered(*op, ord)
                }
                _ => false,
            },
            Subject::RegisteredAt => match arg {
                Arg::Time(t) => ordered(*op, facts.registered_at_ms.cmp(t)),
                _ => false,
            },
            Subject::RunningTasksCount => match arg {
                Arg::One(n) => n
                    .parse::<u64>()
                    .is_ok_and(|n| ordered(*op, facts.running_tasks.cmp(&n))),
                _ => false,
            },
            Subject::TaskGroup => {
                let groups = facts.task_groups;
                match (op, arg) {
                    (Op::Exists, _) => !groups.is_empty(),
                    (Op::NotExists, _) => groups.is_empty(),
                    (Op::Eq, Arg::One(g)) => groups.contains_key(g),
                    (Op::Ne, Arg::One(g)) => !groups.contains_key(g),
                    (Op::In, Arg::List(l)) => groups.keys().any(|g| l.contains(g)),
                    (Op::NotIn, Arg::List(l)) => !groups.keys().any(|g| l.contains(g)),
                    (Op::Matches, Arg::Pattern(r)) => groups.keys().any(|g| r.is_match(g)),
                    (Op::NotMatches, Arg::Pattern(r)) => !groups.keys().any(|g| r.is_match(g)),
                    _ => false,
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(name: &str, value: Option<&str>) -> Attribute {
        Attribute {
            name: name.into(),
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn operators_need_no_spaces() {
        check("attribute:ecs.availability-zone==us-east-1a", true);
        check("attribute:ecs.instance-type=~t2.*", true);
        check("attribute:stack!=prod", false);
        check("attribute:cores>=8 and attribute:cores<9", true);
        check("attribute:stack !exists", false);
    }

    fn check(expr: &str, expected: bool) {
        let attributes = vec![
            attr("ecs.instance-type", Some("t2.small")),
            attr("ecs.availability-zone", Some("us-east-1a")),
            attr("stack", Some("prod")),
            attr("cores", Some("8")),
            attr("com.amazonaws.ecs.capability.privileged-container", None),
        ];
        let groups = std::collections::BTreeMap::from([("service:web".to_string(), 1)]);
        let facts = InstanceFacts {
            agent_connected: true,
            agent_version: Some("1.24.0"),
            ec2_instance_id: "i-1",
            registered_at_ms: parse_time("2018-06-18T22:28:28Z").unwrap(),
            running_tasks: 3,
            task_groups: &groups,
            attributes: &attributes,
        };
        let parsed = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        assert_eq!(eval(&parsed, &facts), expected, "{expr}");
    }

    #[test]
    fn documented_examples_evaluate() {
        check("attribute:ecs.instance-type == t2.small", true);
        check("attribute:ecs.instance-type =~ t2.*", true);
        check("attribute:ecs.instance-type =~ g2.*", false);
        check(
            "attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone != us-east-1d",
            true,
        );
        check("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", true);
        check("attribute:ecs.availability-zone not_in ['us-east-1a']", false);
        check("not(task:group == database)", true);
        check("task:group == service:web", true);
        check("ec2InstanceId in ['i-1', 'i-2']", true);
        check("registeredAt < 2018-06-19", true);
        check("registeredAt >= 2018-06-18T22:28:28+00:00", true);
        check("agentVersion < 1.14.5", false);
        check("agentVersion >= 1.24", true);
        check("runningTasksCount > 2", true);
        check("agentConnected == true", true);
        check("attribute:cores > 10", false);
        check("attribute:cores >= 8 && attribute:stack equals prod", true);
        check(
            "(attribute:stack == dev or attribute:stack == prod) and not attribute:missing exists",
            true,
        );
        check(
            "attribute:com.amazonaws.ecs.capability.privileged-container exists",
            true,
        );
        check(
            "attribute:com.amazonaws.ecs.capability.privileged-container == x",
            false,
        );
    }

    #[test]
    fn a_missing_attribute_satisfies_only_not_exists() {
        check("attribute:gpu !exists", true);
        check("attribute:gpu exists", false);
        check("attribute:gpu != x", false);
        check("attribute:gpu not_in [x]", false);
        check("attribute:gpu !~ x", false);
        check("not(attribute:gpu == x)", true);
    }

    #[test]
    fn errors_say_what_and_where() {
        let cases = [
            ("", "empty expression"),
            ("attribute:x ==", "expected a value"),
            ("color == red", "unknown subject color"),
            ("attribute:x is y", "unknown operator is"),
            ("agentVersion =~ 1.*", "cannot be used"),
            ("attribute:x in [a, b", "expected , or ]"),
            ("attribute:x in a", "expected ["),
            ("(attribute:x exists", "expected )"),
            ("attribute:x exists y", "unexpected text"),
            ("registeredAt > yesterday", "invalid date"),
            ("attribute:x =~ '('", "invalid pattern"),
            ("attribute:x == 'open", "unterminated"),
        ];
        for (text, needle) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        assert_eq!(parse("color == red").unwrap_err().position, 0);
        assert_eq!(parse("attribute:x is y").unwrap_err().position, 12);
    }

    #[test]
    fn dates_parse_in_every_documented_form() {
        let at = parse_time("2018-06-18T22:28:28Z").unwrap();
        assert_eq!(at, 1_529_360_908_000);
        assert_eq!(parse_time("2018-06-18T22:28:28+00:00"), Some(at));
        assert_eq!(parse_time("2018-06-18T22:28:28"), Some(at));
        assert_eq!(parse_time("2018-06-18T23:28:28+01:00"), Some(at));
        assert_eq!(parse_time("2018-06-18"), Some(1_529_280_000_000));
        assert_eq!(parse_time("2018-13-01"), None);
    }

    #[test]
    fn length_and_nesting_are_bounded_without_exhausting_the_stack() {
        let nested = |depth: usize| format!("{}agentConnected == true{}", "(".repeat(depth), ")".repeat(depth));
        assert!(parse(&nested(MAX_DEPTH)).is_ok());
        let e = parse(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(
            (e.position, e.message.as_str()),
            (MAX_DEPTH, "nested deeper than 32 levels")
        );
        let nots = format!("{}agentConnected == true", "not ".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(&nots).unwrap_err().message, "nested deeper than 32 levels");
        assert!(parse(&format!("{}agentConnected == true", "! ".repeat(MAX_DEPTH))).is_ok());
        // Beyond the length bound, nothing is lexed: 100,000 `(` is refused at once.
        let e = parse(&"(".repeat(100_000)).unwrap_err();
        assert_eq!(
            (e.position, e.message.as_str()),
            (MAX_LENGTH, "longer than 2000 characters")
        );
        // Exactly the bound in characters (not bytes) is read.
        let value = "é".repeat(MAX_LENGTH - "attribute:a == ".len());
        assert!(parse(&format!("attribute:a == {value}")).is_ok());
        // A pattern that would compile to too much is an error, not a stall.
        let e = parse("attribute:a =~ '((a{100}){100}){100}'").map(|_| ()).unwrap_err();
        assert!(e.message.contains("invalid pattern"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,60}") {
            let _ = parse(&text);
        }

        #[test]
        fn parsing_token_soup_never_panics(words in proptest::collection::vec(
            proptest::sample::select(vec!["attribute:a", "==", "in", "[", "]", ",", "(", ")", "not", "and", "or",
                "exists", "!exists", "=~", "x", "'y'", "registeredAt", ">", "2018-01-01", "task:group", "!"]), 0..12)) {
            let _ = parse(&words.join(" "));
        }
    }
}
