//! Parsing of metric expressions: range aggregations and their log-range
//! argument (`{...} | ... | unwrap x [5m] offset 1h`, in any of Loki's
//! orders), vector aggregations, `vector(n)` and `label_replace`, with the
//! checks Loki makes on them (which functions need `unwrap` or a parameter,
//! where `by`/`without` is allowed).

use super::{Node, Parser, is_kw, regex_error};
use crate::query::logql::ast::{
    Conversion, Grouping, LabelReplace, LogExpr, LogRange, MetricExpr, RangeAggregation, RangeOp, Unwrap,
    VectorAggregation, VectorOp,
};
use crate::query::logql::error::ParseError;
use crate::query::logql::labels::is_valid_label_name;
use crate::query::logql::lexer::{Tok, Token};
use crate::query::logql::pipeline::Pipeline;

/// A log range before we know whether its `[range]` has been seen.
struct PartialRange {
    log: LogExpr,
    range_ns: Option<i64>,
    offset_ns: i64,
    unwrap: Option<Unwrap>,
}

impl Parser<'_> {
    fn opt_number_param(&mut self) -> Result<Option<f64>, ParseError> {
        let (sign, at) = match self.peek()?.tok {
            Tok::Sub => (-1.0, 1),
            Tok::Add => (1.0, 1),
            _ => (1.0, 0),
        };
        let Tok::Number(n) = self.peek_nth(at)?.tok else {
            return Ok(None);
        };
        if self.peek_nth(at + 1)?.tok != Tok::Comma {
            return Ok(None);
        }
        for _ in 0..at + 2 {
            self.next()?;
        }
        Ok(Some(sign * n))
    }

    pub(super) fn label_list(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect(&Tok::LParen, "\"(\"")?;
        let mut out = Vec::new();
        if self.peek()?.tok == Tok::RParen {
            self.next()?;
            return Ok(out);
        }
        loop {
            out.push(self.expect_label_name("a label name")?.0);
            let t = self.next()?;
            match t.tok {
                Tok::Comma => {}
                Tok::RParen => return Ok(out),
                _ => return Err(self.unexpected(&t, "\",\" or \")\"")),
            }
        }
    }

    fn opt_grouping(&mut self) -> Result<Option<Grouping>, ParseError> {
        let t = self.peek()?;
        if !(is_kw(&t, "by") || is_kw(&t, "without")) || self.peek_nth(1)?.tok != Tok::LParen {
            return Ok(None);
        }
        self.next()?;
        Ok(Some(Grouping {
            without: is_kw(&t, "without"),
            labels: self.label_list()?,
        }))
    }

    pub(super) fn range_aggregation(&mut self, op: RangeOp) -> Result<MetricExpr, ParseError> {
        let (name, op_tok) = self.expect_ident("a function name")?;
        let name = name.to_ascii_lowercase();
        self.expect(&Tok::LParen, "\"(\"")?;
        let param = self.opt_number_param()?;
        let t = self.peek()?;
        if matches!(t.tok, Tok::Ident(_)) && self.peek_nth(1)?.tok == Tok::LParen {
            return Err(self.error(
                t.start,
                format!(
                    "{name} takes a log query and a range such as {{app=\"x\"}}[5m]: a metric expression there \
                     would make a subquery, which LogQL does not support"
                ),
            ));
        }
        let range = self.log_range()?;
        self.expect(&Tok::RParen, "\")\"")?;
        let grouping = self.opt_grouping()?;
        let at = op_tok.start;
        use RangeOp::*;
        match (op, param) {
            (Quantile, None) => {
                return Err(self.error(at, format!("parameter required for operation {name}")));
            }
            (Quantile, Some(_)) | (_, None) => {}
            (_, Some(p)) => {
                return Err(self.error(at, format!("parameter {p} not supported for operation {name}")));
            }
        }
        if grouping.is_some() && !matches!(op, Avg | Stddev | Stdvar | Quantile | Max | Min | First | Last) {
            return Err(self.error(at, format!("grouping not allowed for {name} aggregation")));
        }
        let unwrap_ok = match range.unwrap {
            Some(_) => !matches!(op, Count | Bytes | BytesRate),
            None => matches!(op, Count | Rate | Bytes | BytesRate | Absent),
        };
        if !unwrap_ok {
            let with = if range.unwrap.is_some() { "with" } else { "without" };
            return Err(self.error(at, format!("invalid aggregation {name} {with} unwrap")));
        }
        Ok(MetricExpr::Range(RangeAggregation {
            op,
            range,
            param,
            grouping,
        }))
    }

    fn metric_operand(&mut self, context: &str) -> Result<MetricExpr, ParseError> {
        let start = self.peek()?.start;
        match self.expr(0)? {
            Node::Metric(m) => Ok(m),
            Node::Log(_) => Err(self.error(
                start,
                format!("{context} expects a metric expression; wrap the log query in a range aggregation such as count_over_time({{...}}[5m])"),
            )),
        }
    }

    pub(super) fn vector_aggregation(&mut self, op: VectorOp) -> Result<MetricExpr, ParseError> {
        let (name, op_tok) = self.expect_ident("an aggregation")?;
        let name = name.to_ascii_lowercase();
        let mut grouping = self.opt_grouping()?;
        self.expect(&Tok::LParen, "\"(\"")?;
        let param = self.opt_number_param()?;
        let inner_start = self.peek()?.start;
        let inner = self.metric_operand(&name)?;
        if inner.is_scalar() {
            return Err(self.error(inner_start, format!("{name} expects a vector, got a scalar")));
        }
        self.expect(&Tok::RParen, "\")\"")?;
        if let Some(after) = self.opt_grouping()? {
            if grouping.is_some() {
                return Err(self.error(op_tok.start, "grouping given twice"));
            }
            grouping = Some(after);
        }
        let at = op_tok.start;
        match (op, param) {
            (VectorOp::Topk | VectorOp::Bottomk, Some(k)) => {
                if k.fract() != 0.0 || k < 1.0 {
                    return Err(self.error(
                        at,
                        format!("invalid parameter for {name}: must be a positive integer, got {k}"),
                    ));
                }
            }
            (VectorOp::Topk | VectorOp::Bottomk, None) => {
                return Err(self.error(at, format!("parameter required for operation {name}")));
            }
            (_, Some(p)) => {
                return Err(self.error(at, format!("parameter {p} not supported for operation {name}")));
            }
            (_, None) => {}
        }
        if matches!(op, VectorOp::Sort | VectorOp::SortDesc) && grouping.is_some() {
            return Err(self.error(at, format!("grouping not allowed for {name}")));
        }
        Ok(MetricExpr::Vector(VectorAggregation {
            op,
            param,
            grouping,
            inner: Box::new(inner),
        }))
    }

    pub(super) fn vector_literal(&mut self) -> Result<MetricExpr, ParseError> {
        self.next()?;
        self.expect(&Tok::LParen, "\"(\"")?;
        let value = match self.unary()? {
            Node::Metric(MetricExpr::Literal(v)) => v,
            _ => {
                let t = self.peek()?;
                return Err(self.unexpected(&t, "a number"));
            }
        };
        self.expect(&Tok::RParen, "\")\"")?;
        Ok(MetricExpr::VectorLiteral(value))
    }

    pub(super) fn label_replace(&mut self) -> Result<MetricExpr, ParseError> {
        self.next()?;
        self.expect(&Tok::LParen, "\"(\"")?;
        let inner = self.metric_operand("label_replace")?;
        let mut strings = Vec::with_capacity(4);
        for what in ["destination label", "replacement", "source label", "regex"] {
            self.expect(&Tok::Comma, "\",\"")?;
            strings.push(self.expect_str(&format!("a quoted {what}"))?);
        }
        self.expect(&Tok::RParen, "\")\"")?;
        let [(dst, dst_t), (replacement, _), (src, _), (re, re_t)]: [(String, Token); 4] = strings
            .try_into()
            .map_err(|_| self.error(0, "label_replace needs four strings"))?;
        // Loki accepts an empty destination (the series are left alone).
        if !dst.is_empty() && !is_valid_label_name(&dst) {
            return Err(self.error(dst_t.start, format!("invalid destination label name {dst:?}")));
        }
        let regex = crate::query::logql::limits::compile_regex(&format!("^(?:{re})$"))
            .map_err(|e| self.error(re_t.start, regex_error(&re, &e)))?;
        Ok(MetricExpr::LabelReplace(Box::new(LabelReplace {
            inner,
            dst,
            replacement,
            src,
            regex,
        })))
    }

    /// The argument of a range aggregation, in any of Loki's orders.
    pub(super) fn log_range(&mut self) -> Result<LogRange, ParseError> {
        let r = self.partial_range()?;
        let Some(range_ns) = r.range_ns else {
            let t = self.peek()?;
            return Err(self.unexpected(&t, "a range like [5m]"));
        };
        Ok(LogRange {
            log: r.log,
            range_ns,
            offset_ns: r.offset_ns,
            unwrap: r.unwrap,
        })
    }

    fn partial_range(&mut self) -> Result<PartialRange, ParseError> {
        let t = self.peek()?;
        self.enter(t.start)?;
        let mut r = if t.tok == Tok::LParen {
            self.next()?;
            let inner = self.partial_range()?;
            self.expect(&Tok::RParen, "\")\"")?;
            inner
        } else {
            let log = self.log_expr_body()?;
            let unwrap = self.opt_unwrap()?;
            PartialRange {
                log,
                range_ns: None,
                offset_ns: 0,
                unwrap,
            }
        };
        if r.range_ns.is_none()
            && let Tok::Range(ns) = self.peek()?.tok
        {
            self.next()?;
            r.range_ns = Some(ns);
            r.offset_ns = self.opt_offset()?;
            // `{app="x"}[5m] | json | unwrap n`: the pipeline may follow the range.
            if r.log.pipeline.is_empty() && r.unwrap.is_none() {
                r.log.pipeline = Pipeline::new(self.pipeline_stages()?);
                r.unwrap = self.opt_unwrap()?;
            }
        }
        self.leave();
        Ok(r)
    }

    fn opt_offset(&mut self) -> Result<i64, ParseError> {
        if !is_kw(&self.peek()?, "offset") {
            return Ok(0);
        }
        self.next()?;
        let negative = self.peek()?.tok == Tok::Sub;
        if negative {
            self.next()?;
        }
        let t = self.next()?;
        match t.tok {
            Tok::Duration(d) => Ok(if negative { d.saturating_neg() } else { d }),
            _ => Err(self.unexpected(&t, "a duration after offset")),
        }
    }

    fn opt_unwrap(&mut self) -> Result<Option<Unwrap>, ParseError> {
        if self.peek()?.tok != Tok::Pipe || !is_kw(&self.peek_nth(1)?, "unwrap") {
            return Ok(None);
        }
        self.next()?;
        self.next()?;
        let (name, _) = self.expect_ident("a label name after unwrap")?;
        let conv = match name.to_ascii_lowercase().as_str() {
            "bytes" => Some(Conversion::Bytes),
            "duration" | "duration_seconds" => Some(Conversion::Duration),
            _ => None,
        };
        let (label, conversion) = match conv {
            Some(c) if self.peek()?.tok == Tok::LParen => {
                self.next()?;
                let (label, _) = self.expect_label_name("a label name")?;
                self.expect(&Tok::RParen, "\")\"")?;
                (label, c)
            }
            _ => (name, Conversion::Float),
        };
        let mut post_filters = Vec::new();
        while self.peek()?.tok == Tok::Pipe && self.starts_label_filter(1, true)? {
            self.next()?;
            post_filters.push(self.stage_label_filter()?);
        }
        Ok(Some(Unwrap {
            label,
            conversion,
            post_filters,
        }))
    }
}
