//! The LogQL parser: a recursive-descent parser over the on-demand lexer,
//! producing the compiled [`Expr`] tree.
//!
//! Why a module of its own: it owns the grammar (Loki's `syntax.y`,
//! re-expressed with precedence climbing for binary operators) and the
//! checks Loki makes while parsing. This file holds the token plumbing and
//! binary expressions; `metric.rs` aggregations and log ranges, `log.rs`
//! selectors and pipeline stages, `label_filter.rs` label filters.
//!
//! Invariants: every error carries the byte position of the offending
//! token; recursion depth and the number of operator nodes are bounded
//! ([`MAX_DEPTH`], [`MAX_NODES`]) so hostile input cannot overflow the stack
//! here or in the evaluator, which walks the same tree recursively.

mod label_filter;
mod log;
mod metric;
mod suggest;

use std::collections::VecDeque;

use crate::query::logql::ast::{
    BinaryExpr, BinaryOp, Cardinality, Expr, LogExpr, MetricExpr, RangeOp, VectorMatching, VectorOp,
};
use crate::query::logql::error::ParseError;
use crate::query::logql::labels::is_valid_label_name;
use crate::query::logql::lexer::{Lexer, Tok, Token, topic_end};
use crate::query::logql::limits::Limits;

/// Deepest nesting (parentheses, aggregations, label-filter groups)
/// accepted. Real queries nest a handful of levels; the bound keeps the
/// recursive parser and evaluator far from the 2 MiB stack of a worker thread.
pub const MAX_DEPTH: usize = 32;
/// Most binary operators (arithmetic, set, label-filter `and`/`or`) in one
/// query. Chains like `a + a + ...` are built without recursion but walked
/// recursively afterwards, so their length is bounded too.
pub const MAX_NODES: usize = 500;

/// Parses and compiles a LogQL query under the default [`Limits`].
///
/// # Errors
/// A [`ParseError`] with the position and a description of the first
/// problem: a syntax error, a bad regex, template or pattern, or a query
/// Loki would refuse (e.g. a selector that matches every stream).
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    parse_with(input, &Limits::default())
}

/// Parses and compiles a LogQL query: its regexes within `limits`' size
/// and count, its templates bounded by its line budget.
///
/// # Errors
/// As [`parse`]; also a regex past `limits`.
pub fn parse_with(input: &str, limits: &Limits) -> Result<Expr, ParseError> {
    let _scope = crate::query::logql::limits::Scope::enter(*limits);
    let mut p = Parser::new(input);
    let node = p.expr(0)?;
    let t = p.peek()?;
    match t.tok {
        Tok::Eof => {}
        Tok::Range(_) => {
            return Err(p.error(
                t.start,
                "unexpected range: a range like [5m] is only valid inside a range aggregation such as count_over_time(...)",
            ));
        }
        _ => return Err(p.unexpected(&t, "end of query")),
    }
    Ok(match node {
        Node::Log(l) => Expr::Log(l),
        Node::Metric(m) => Expr::Metric(m),
    })
}

/// A regex compile error as a one-line message naming the regex.
pub(crate) fn regex_error(source: &str, e: &regex::Error) -> String {
    let detail = match e {
        regex::Error::Syntax(s) => s
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(s)
            .to_string(),
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled regex exceeds the size limit of {limit} bytes (query.max_regex_bytes)")
        }
        other => other.to_string(),
    };
    format!("invalid regex {source:?}: {detail}")
}

/// Why a function name followed by `(` cannot be used: recognised but not
/// supported, or unknown (with the nearest known name).
fn unknown_function(name: &str) -> String {
    match name {
        "approx_topk" => "approx_topk is not supported: Loki runs it only with sharded aggregations \
                          enabled (-limits.shard_aggregations), which logpost does not have; topk gives the exact answer"
            .to_string(),
        "rate_counter" => "rate_counter is not supported; rate(...) counts lines, sum_over_time(... | unwrap x [5m]) adds values"
            .to_string(),
        _ => format!("unknown function {name:?}{}", suggest::did_you_mean(name, suggest::FUNCTIONS)),
    }
}

/// What a sub-expression turned out to be.
enum Node {
    Log(LogExpr),
    Metric(MetricExpr),
}

pub(crate) struct Parser<'a> {
    src: &'a str,
    lexer: Lexer<'a>,
    ahead: VecDeque<Token>,
    depth: usize,
    nodes: usize,
}

fn is_kw(t: &Token, kw: &str) -> bool {
    matches!(&t.tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
}

fn is_comparison(tok: &Tok) -> bool {
    matches!(
        tok,
        Tok::Eq | Tok::EqEq | Tok::Neq | Tok::Re | Tok::Nre | Tok::Gt | Tok::Gte | Tok::Lt | Tok::Lte
    )
}

fn binary_op(t: &Token) -> Option<BinaryOp> {
    Some(match &t.tok {
        Tok::Ident(s) if s.eq_ignore_ascii_case("or") => BinaryOp::Or,
        Tok::Ident(s) if s.eq_ignore_ascii_case("and") => BinaryOp::And,
        Tok::Ident(s) if s.eq_ignore_ascii_case("unless") => BinaryOp::Unless,
        Tok::Add => BinaryOp::Add,
        Tok::Sub => BinaryOp::Sub,
        Tok::Mul => BinaryOp::Mul,
        Tok::Div => BinaryOp::Div,
        Tok::Mod => BinaryOp::Mod,
        Tok::Pow => BinaryOp::Pow,
        Tok::EqEq => BinaryOp::Eq,
        Tok::Neq => BinaryOp::Neq,
        Tok::Gt => BinaryOp::Gt,
        Tok::Gte => BinaryOp::Gte,
        Tok::Lt => BinaryOp::Lt,
        Tok::Lte => BinaryOp::Lte,
        _ => return None,
    })
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Parser {
            src,
            lexer: Lexer::new(src),
            ahead: VecDeque::new(),
            depth: 0,
            nodes: 0,
        }
    }

    // ----- token plumbing -------------------------------------------------

    fn peek_nth(&mut self, n: usize) -> Result<Token, ParseError> {
        while self.ahead.len() <= n {
            let t = self.lexer.next_token()?;
            self.ahead.push_back(t);
        }
        Ok(self.ahead.get(n).cloned().unwrap_or(Token {
            tok: Tok::Eof,
            start: self.src.len(),
            end: self.src.len(),
        }))
    }

    fn peek(&mut self) -> Result<Token, ParseError> {
        self.peek_nth(0)
    }

    fn next(&mut self) -> Result<Token, ParseError> {
        let t = self.peek()?;
        self.ahead.pop_front();
        Ok(t)
    }

    fn error(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError::at(self.src, pos, msg)
    }

    fn describe(&self, t: &Token) -> String {
        let text = self.src.get(t.start..t.end).unwrap_or("");
        match t.tok {
            Tok::Eof => "end of input".to_string(),
            Tok::Str(_) => format!("string {text}"),
            _ => format!("\"{text}\""),
        }
    }

    /// Loki reads number literals as Go floats, which refuse `0x10`.
    fn hex_error(&self, t: &Token, text: &str) -> ParseError {
        self.error(
            t.start,
            format!("unable to parse literal {text:?} as a float: hexadecimal numbers are not supported"),
        )
    }

    fn unexpected(&self, t: &Token, expected: &str) -> ParseError {
        self.error(t.start, format!("unexpected {}, expected {expected}", self.describe(t)))
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<Token, ParseError> {
        let t = self.next()?;
        if std::mem::discriminant(&t.tok) == std::mem::discriminant(want) {
            Ok(t)
        } else {
            Err(self.unexpected(&t, what))
        }
    }

    fn expect_ident(&mut self, what: &str) -> Result<(String, Token), ParseError> {
        let t = self.next()?;
        match &t.tok {
            Tok::Ident(s) => Ok((s.clone(), t)),
            _ => Err(self.unexpected(&t, what)),
        }
    }

    fn expect_label_name(&mut self, what: &str) -> Result<(String, Token), ParseError> {
        let (name, t) = self.expect_ident(what)?;
        if !is_valid_label_name(&name) {
            return Err(self.error(t.start, format!("invalid label name {name:?}")));
        }
        Ok((name, t))
    }

    fn expect_str(&mut self, what: &str) -> Result<(String, Token), ParseError> {
        let t = self.next()?;
        match &t.tok {
            Tok::Str(s) => Ok((s.clone(), t)),
            _ => Err(self.unexpected(&t, what)),
        }
    }

    fn enter(&mut self, pos: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(pos, format!("query nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn spend(&mut self, pos: usize) -> Result<(), ParseError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.error(pos, format!("query has more than {MAX_NODES} operators")));
        }
        Ok(())
    }

    // ----- expressions ----------------------------------------------------

    /// Precedence climbing over binary operators.
    fn expr(&mut self, min_prec: u8) -> Result<Node, ParseError> {
        let start = self.peek()?.start;
        self.enter(start)?;
        let mut lhs = self.unary()?;
        loop {
            let t = self.peek()?;
            let Some(op) = binary_op(&t) else { break };
            if op.precedence() < min_prec {
                break;
            }
            self.next()?;
            self.spend(t.start)?;
            let (return_bool, matching) = self.binop_modifiers(op)?;
            // `^` is right-associative, everything else left-associative.
            let next_min = op.precedence() + u8::from(op != BinaryOp::Pow);
            let rhs = self.expr(next_min)?;
            lhs = self.combine(lhs, op, rhs, return_bool, matching, &t)?;
        }
        self.leave();
        Ok(lhs)
    }

    fn binop_modifiers(&mut self, op: BinaryOp) -> Result<(bool, VectorMatching), ParseError> {
        let mut return_bool = false;
        let t = self.peek()?;
        if is_kw(&t, "bool") {
            if !op.is_comparison() {
                return Err(self.error(t.start, "bool modifier can only be used on comparison operators"));
            }
            self.next()?;
            return_bool = true;
        }
        let mut m = VectorMatching::default();
        let t = self.peek()?;
        if is_kw(&t, "on") || is_kw(&t, "ignoring") {
            self.next()?;
            m.on = is_kw(&t, "on");
            m.labels = self.label_list()?;
            let g = self.peek()?;
            if is_kw(&g, "group_left") || is_kw(&g, "group_right") {
                if op.is_set() {
                    return Err(self.error(g.start, format!("no grouping allowed for {:?} operation", op.as_str())));
                }
                self.next()?;
                m.card = if is_kw(&g, "group_left") {
                    Cardinality::ManyToOne
                } else {
                    Cardinality::OneToMany
                };
                if self.peek()?.tok == Tok::LParen {
                    m.include = self.label_list()?;
                }
            }
        }
        Ok((return_bool, m))
    }

    fn combine(
        &mut self,
        lhs: Node,
        op: BinaryOp,
        rhs: Node,
        return_bool: bool,
        matching: VectorMatching,
        t: &Token,
    ) -> Result<Node, ParseError> {
        let (Node::Metric(lhs), Node::Metric(rhs)) = (lhs, rhs) else {
            return Err(self.error(
                t.start,
                format!(
                    "binary operator {:?} cannot be applied to a log query; wrap it in a range aggregation such as count_over_time({{...}}[5m])",
                    op.as_str()
                ),
            ));
        };
        let scalar_sides = (lhs.is_scalar(), rhs.is_scalar());
        if op.is_set() && (scalar_sides.0 || scalar_sides.1) {
            return Err(self.error(
                t.start,
                format!("set operator {:?} not allowed in binary scalar expression", op.as_str()),
            ));
        }
        Ok(Node::Metric(MetricExpr::Binary(Box::new(BinaryExpr {
            op,
            lhs,
            rhs,
            return_bool,
            matching,
        }))))
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        let t = self.peek()?;
        if matches!(t.tok, Tok::Sub | Tok::Add) {
            let number = self.peek_nth(1)?;
            match &number.tok {
                Tok::Number(n) => {
                    let v = if t.tok == Tok::Sub { -n } else { *n };
                    self.next()?;
                    self.next()?;
                    return Ok(Node::Metric(MetricExpr::Literal(v)));
                }
                Tok::Hex(text) => return Err(self.hex_error(&number, text)),
                _ => {}
            }
            return Err(self.unexpected(&t, "an expression"));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        let t = self.peek()?;
        match &t.tok {
            Tok::LParen => {
                self.next()?;
                let inner = self.expr(0)?;
                self.expect(&Tok::RParen, "\")\"")?;
                Ok(inner)
            }
            Tok::LBrace => Ok(Node::Log(self.log_expr()?)),
            Tok::Number(_) | Tok::Duration(_) | Tok::Bytes(_) | Tok::Hex(_) if self.is_digit_topic(&t) => {
                Ok(Node::Log(self.log_expr()?))
            }
            Tok::Hex(text) => Err(self.hex_error(&t, text)),
            Tok::Number(n) => {
                self.next()?;
                Ok(Node::Metric(MetricExpr::Literal(*n)))
            }
            Tok::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                let next = self.peek_nth(1)?;
                if next.tok == Tok::LParen {
                    if let Some(op) = RangeOp::from_name(&lower) {
                        return self.range_aggregation(op).map(Node::Metric);
                    }
                    match lower.as_str() {
                        "vector" => return self.vector_literal().map(Node::Metric),
                        "label_replace" => return self.label_replace().map(Node::Metric),
                        _ => {}
                    }
                }
                let grouped = (is_kw(&next, "by") || is_kw(&next, "without")) && self.peek_nth(2)?.tok == Tok::LParen;
                if let Some(op) = VectorOp::from_name(&lower)
                    && (next.tok == Tok::LParen || grouped)
                {
                    return self.vector_aggregation(op).map(Node::Metric);
                }
                if next.tok == Tok::LParen || grouped {
                    return Err(self.error(t.start, unknown_function(&lower)));
                }
                Ok(Node::Log(self.log_expr()?))
            }
            _ => Err(self.unexpected(&t, "an expression")),
        }
    }

    /// Whether a token that starts with a digit actually starts a bare topic
    /// name such as `2024-logs` (the run contains a letter or `_`).
    fn is_digit_topic(&self, t: &Token) -> bool {
        let end = topic_end(self.src, t.start);
        let run = self.src.get(t.start..end).unwrap_or("");
        end > t.end
            && run.starts_with(|c: char| c.is_ascii_alphanumeric())
            && run.contains(|c: char| c.is_ascii_alphabetic() || c == '_')
    }

    /// A log query at top level, where `| unwrap` cannot appear.
    fn log_expr(&mut self) -> Result<LogExpr, ParseError> {
        let expr = self.log_expr_body()?;
        let t = self.peek()?;
        if t.tok == Tok::Pipe && is_kw(&self.peek_nth(1)?, "unwrap") {
            return Err(self.error(
                t.start,
                "unwrap is only allowed inside a range aggregation such as sum_over_time(...)",
            ));
        }
        Ok(expr)
    }
}

#[cfg(test)]
mod tests;
