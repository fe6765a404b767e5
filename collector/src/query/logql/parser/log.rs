//! Parsing of the log half of LogQL: stream selectors (including logpost's
//! bare topic names and the empty-compatible check) and pipeline stages
//! (line filters, parsers, formats, `drop`/`keep`); label filters live in
//! `label_filter.rs`, log ranges in `metric.rs`.
//!
//! Every regex, pattern, template and JSON path is compiled here, so a bad
//! one is a parse error pointing at its string.

use super::suggest::{STAGES, did_you_mean};
use super::{Parser, is_comparison, is_kw, regex_error};
use crate::query::logql::ast::LogExpr;
use crate::query::logql::error::ParseError;
use crate::query::logql::lexer::{Tok, Token, topic_end};
use crate::query::logql::pipeline::{
    Decolorize, DropLabels, FilterArg, JsonParser, JsonPath, KeepLabels, LabelFormat, LabelFormatKind, LineFilter,
    LineFilterOp, LineFormat, LogfmtParser, NamedMatcher, PatternParser, Pipeline, RegexpParser, Stage, Template,
    UnpackParser,
};
use crate::query::logql::selector::{MatchOp, Matcher, Selector, TOPIC_LABEL};

/// Loki's message for a selector that would match every stream.
const EMPTY_COMPATIBLE: &str = "queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will";

impl Parser<'_> {
    /// Selector and pipeline, stopping before a `| unwrap`.
    pub(super) fn log_expr_body(&mut self) -> Result<LogExpr, ParseError> {
        let selector = self.selector()?;
        let stages = self.pipeline_stages()?;
        Ok(LogExpr {
            selector,
            pipeline: Pipeline::new(stages),
        })
    }

    fn selector(&mut self) -> Result<Selector, ParseError> {
        let t = self.peek()?;
        let selector = match &t.tok {
            Tok::LBrace => self.brace_selector()?,
            Tok::Ident(_) | Tok::Number(_) | Tok::Duration(_) | Tok::Bytes(_) | Tok::Hex(_) => {
                self.topic_selector(&t)?
            }
            _ => {
                return Err(self.unexpected(&t, "a stream selector like {app=\"x\"} or a topic name"));
            }
        };
        if !selector.is_acceptable() {
            return Err(self.error(t.start, EMPTY_COMPATIBLE));
        }
        Ok(selector)
    }

    /// A bare topic name, re-read from the raw text: `web.access-log` lexes
    /// as several tokens but names one topic.
    fn topic_selector(&mut self, t: &Token) -> Result<Selector, ParseError> {
        let end = topic_end(self.src, t.start);
        let name = self.src.get(t.start..end).unwrap_or("");
        if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            return Err(self.unexpected(t, "a stream selector like {app=\"x\"} or a topic name"));
        }
        let matcher =
            Matcher::new(TOPIC_LABEL, MatchOp::Eq, name).map_err(|e| self.error(t.start, regex_error(name, &e)))?;
        self.ahead.clear();
        self.lexer.reset(end);
        Ok(Selector {
            matchers: vec![matcher],
        })
    }

    fn brace_selector(&mut self) -> Result<Selector, ParseError> {
        self.next()?;
        let mut matchers = Vec::new();
        if self.peek()?.tok == Tok::RBrace {
            self.next()?;
            return Ok(Selector { matchers });
        }
        loop {
            matchers.push(self.matcher()?);
            let t = self.next()?;
            match t.tok {
                Tok::Comma => {}
                Tok::RBrace => return Ok(Selector { matchers }),
                _ => return Err(self.unexpected(&t, "\",\" or \"}\"")),
            }
        }
    }

    pub(super) fn match_op(tok: &Tok) -> Option<MatchOp> {
        Some(match tok {
            Tok::Eq => MatchOp::Eq,
            Tok::Neq => MatchOp::Neq,
            Tok::Re => MatchOp::Re,
            Tok::Nre => MatchOp::Nre,
            _ => return None,
        })
    }

    fn matcher(&mut self) -> Result<Matcher, ParseError> {
        let (name, _) = self.expect_label_name("a label name")?;
        let op_t = self.next()?;
        let op = Self::match_op(&op_t.tok).ok_or_else(|| self.unexpected(&op_t, "one of =, !=, =~, !~"))?;
        let (value, vt) = self.expect_str("a quoted string")?;
        Matcher::new(name, op, value.as_str()).map_err(|e| self.error(vt.start, regex_error(&value, &e)))
    }

    pub(super) fn pipeline_stages(&mut self) -> Result<Vec<Stage>, ParseError> {
        let mut stages = Vec::new();
        loop {
            let t = self.peek()?;
            let filter = match t.tok {
                Tok::PipeExact => Some(LineFilterOp::Contains),
                Tok::PipeMatch => Some(LineFilterOp::Regex),
                Tok::PipePattern => Some(LineFilterOp::Pattern),
                Tok::NotPattern => Some(LineFilterOp::NotPattern),
                // `!=`/`!~` are also comparison operators; before a string
                // or `ip(` they can only be line filters.
                Tok::Neq if self.starts_filter_arg(1)? => Some(LineFilterOp::NotContains),
                Tok::Nre if self.starts_filter_arg(1)? => Some(LineFilterOp::NotRegex),
                _ => None,
            };
            if let Some(op) = filter {
                stages.push(self.line_filter(op)?);
            } else if t.tok == Tok::Pipe && !is_kw(&self.peek_nth(1)?, "unwrap") {
                self.next()?;
                stages.push(self.stage()?);
            } else {
                return Ok(stages);
            }
        }
    }

    /// Whether the token at `n` starts a line filter's argument: a string
    /// or `ip(`.
    fn starts_filter_arg(&mut self, n: usize) -> Result<bool, ParseError> {
        let t = self.peek_nth(n)?;
        Ok(matches!(t.tok, Tok::Str(_)) || (is_kw(&t, "ip") && self.peek_nth(n + 1)?.tok == Tok::LParen))
    }

    /// `"text"` or `ip("pattern")`, and where it starts.
    fn filter_arg(&mut self) -> Result<(FilterArg, usize), ParseError> {
        if self.starts_filter_arg(0)? && is_kw(&self.peek()?, "ip") {
            let ip = self.next()?;
            self.next()?;
            let (pattern, _) = self.expect_str("a quoted address, CIDR prefix or range")?;
            self.expect(&Tok::RParen, "\")\"")?;
            return Ok((FilterArg::Ip(pattern), ip.start));
        }
        let (text, t) = self.expect_str("a quoted string or ip(\"...\")")?;
        Ok((FilterArg::Text(text), t.start))
    }

    fn line_filter(&mut self, op: LineFilterOp) -> Result<Stage, ParseError> {
        self.next()?;
        let (first, at) = self.filter_arg()?;
        let mut args = vec![first];
        let mut positions = vec![at];
        while is_kw(&self.peek()?, "or") && self.starts_filter_arg(1)? {
            self.next()?;
            let (arg, at) = self.filter_arg()?;
            args.push(arg);
            positions.push(at);
        }
        LineFilter::with_args(op, &args)
            .map(Stage::LineFilter)
            .map_err(|(i, msg)| self.error(positions.get(i).copied().unwrap_or(at), msg))
    }

    fn stage(&mut self) -> Result<Stage, ParseError> {
        let t = self.peek()?;
        let name = match &t.tok {
            Tok::Ident(name) => name.to_ascii_lowercase(),
            Tok::LParen => return Ok(Stage::LabelFilter(self.stage_label_filter()?)),
            _ => {
                return Err(self.unexpected(&t, "a pipeline stage (a parser, label filter, line_format, ...)"));
            }
        };
        // `| json = "x"` filters on a label that happens to be called json.
        if is_comparison(&self.peek_nth(1)?.tok) {
            return Ok(Stage::LabelFilter(self.stage_label_filter()?));
        }
        let stage = match name.as_str() {
            "json" => {
                self.next()?;
                self.json_stage()?
            }
            "logfmt" => {
                self.next()?;
                self.logfmt_stage()?
            }
            "regexp" => {
                self.next()?;
                let (re, rt) = self.expect_str("a quoted regex")?;
                Stage::Regexp(RegexpParser::new(&re).map_err(|e| self.error(rt.start, e))?)
            }
            "pattern" => {
                self.next()?;
                let (p, pt) = self.expect_str("a quoted pattern")?;
                let parser =
                    PatternParser::new(&p).map_err(|e| self.error(pt.start, format!("invalid pattern {p:?}: {e}")))?;
                Stage::Pattern(parser)
            }
            "unpack" => {
                self.next()?;
                Stage::Unpack(UnpackParser)
            }
            "line_format" => {
                self.next()?;
                let (s, st) = self.expect_str("a quoted template")?;
                let template =
                    Template::parse(&s).map_err(|e| self.error(st.start, format!("invalid line template: {e}")))?;
                Stage::LineFormat(LineFormat::new(template))
            }
            "label_format" => {
                self.next()?;
                Stage::LabelFormat(self.label_format()?)
            }
            "drop" => {
                self.next()?;
                Stage::Drop(DropLabels::new(self.named_matchers()?))
            }
            "keep" => {
                self.next()?;
                Stage::Keep(KeepLabels::new(self.named_matchers()?))
            }
            "decolorize" => {
                self.next()?;
                Stage::Decolorize(Decolorize::new().map_err(|e| self.error(t.start, e.to_string()))?)
            }
            "ip" => {
                return Err(self.error(
                    t.start,
                    "ip() is not a stage: it filters lines (|= ip(\"10.0.0.0/8\")) or labels (| addr = ip(\"10.0.0.0/8\"))",
                ));
            }
            _ => {
                let hint = did_you_mean(&name, STAGES);
                return Err(self.error(
                    t.start,
                    format!(
                        "unknown pipeline stage {name:?}{hint}; a stage is a parser (json, logfmt, regexp, pattern, unpack), \
                         a label filter (level=\"error\", status >= 500), line_format, label_format, drop, keep or decolorize"
                    ),
                ));
            }
        };
        Ok(stage)
    }

    /// After `json`: plain flattening, or `label="path", ...` extraction.
    fn json_stage(&mut self) -> Result<Stage, ParseError> {
        if !matches!(self.peek()?.tok, Tok::Ident(_)) {
            return Ok(Stage::Json(JsonParser::flatten()));
        }
        let mut fields = Vec::new();
        for (label, expr, et) in self.extractions()? {
            let path = JsonPath::parse(&expr).map_err(|e| self.error(et.start, e))?;
            fields.push((label, path));
        }
        Ok(Stage::Json(JsonParser::extract(fields)))
    }

    /// After `logfmt`: flags, then optionally `label="key", ...`.
    fn logfmt_stage(&mut self) -> Result<Stage, ParseError> {
        let (mut strict, mut keep_empty) = (false, false);
        while let Tok::Flag(f) = self.peek()?.tok {
            self.next()?;
            strict |= f == "--strict";
            keep_empty |= f == "--keep-empty";
        }
        let fields = if matches!(self.peek()?.tok, Tok::Ident(_)) {
            let list = self.extractions()?;
            Some(list.into_iter().map(|(l, e, _)| (l, e)).collect())
        } else {
            None
        };
        Ok(Stage::Logfmt(LogfmtParser::new(strict, keep_empty, fields)))
    }

    /// `a, b="expr"` after `json`/`logfmt`: `(label, expression, its token)`.
    fn extractions(&mut self) -> Result<Vec<(String, String, Token)>, ParseError> {
        let mut out = Vec::new();
        loop {
            let (label, lt) = self.expect_label_name("a label name")?;
            if self.peek()?.tok == Tok::Eq {
                self.next()?;
                let (expr, et) = self.expect_str("a quoted expression")?;
                out.push((label, expr, et));
            } else {
                out.push((label.clone(), label, lt));
            }
            if self.peek()?.tok == Tok::Comma && matches!(self.peek_nth(1)?.tok, Tok::Ident(_)) {
                self.next()?;
            } else {
                return Ok(out);
            }
        }
    }

    fn label_format(&mut self) -> Result<LabelFormat, ParseError> {
        let mut assignments: Vec<(String, LabelFormatKind)> = Vec::new();
        loop {
            let (dst, dt) = self.expect_label_name("a label name")?;
            self.expect(&Tok::Eq, "\"=\"")?;
            let v = self.next()?;
            let kind = match &v.tok {
                Tok::Ident(src) => LabelFormatKind::Rename(src.clone()),
                Tok::Str(s) => LabelFormatKind::Template(
                    Template::parse(s).map_err(|e| self.error(v.start, format!("invalid label template: {e}")))?,
                ),
                _ => return Err(self.unexpected(&v, "a label name or a quoted template")),
            };
            if dst == crate::query::logql::labels::ERROR_LABEL {
                return Err(self.error(dt.start, format!("{dst} cannot be formatted")));
            }
            if assignments.iter().any(|(d, _)| *d == dst) {
                return Err(self.error(
                    dt.start,
                    format!("multiple label name '{dst}' not allowed in a single format operation"),
                ));
            }
            assignments.push((dst, kind));
            if self.peek()?.tok == Tok::Comma {
                self.next()?;
            } else {
                return Ok(LabelFormat::new(assignments));
            }
        }
    }

    fn named_matchers(&mut self) -> Result<Vec<NamedMatcher>, ParseError> {
        let mut out = Vec::new();
        loop {
            let (name, _) = self.expect_label_name("a label name")?;
            if let Some(op) = Self::match_op(&self.peek()?.tok) {
                self.next()?;
                let (value, vt) = self.expect_str("a quoted string")?;
                let m = Matcher::new(name, op, value.as_str())
                    .map_err(|e| self.error(vt.start, regex_error(&value, &e)))?;
                out.push(NamedMatcher::Matcher(m));
            } else {
                out.push(NamedMatcher::Name(name));
            }
            if self.peek()?.tok == Tok::Comma && matches!(self.peek_nth(1)?.tok, Tok::Ident(_)) {
                self.next()?;
            } else {
                return Ok(out);
            }
        }
    }
}
