//! A LogQL engine for logpost: parses Grafana Loki's query language,
//! compiles the per-line pipeline once, and evaluates log and metric queries
//! against any storage that implements [`EntrySource`].
//!
//! Why a module of its own (with no dependency on the store or on tokio):
//! the language is the contract with users and with Grafana, so it is pure,
//! synchronous code over bytes and labels, tested on its own; the rest of
//! `query/` adapts the store to [`EntrySource`] and prunes with the helpers
//! below. It was written as a separate crate and moved here whole; its lints
//! are stricter than the workspace's (no `expect`, no unchecked indexing, no
//! `panic!` outside tests) because every input is a user's query.
//!
//! ```
//! use logpost_collector::query::logql::{parse, Expr, Labels};
//!
//! let Expr::Log(q) = parse(r#"{app="api"} |= "error" | json | status >= 500"#).unwrap() else {
//!     unreachable!()
//! };
//! let mut labels: Labels = [("app", "api")].into_iter().collect();
//! let out = q.pipeline.process(br#"{"status": 503, "msg": "error"}"#, &mut labels);
//! assert!(out.is_some());
//! assert_eq!(labels.get("status"), Some("503"));
//! assert_eq!(q.pipeline.required_literals(), vec![b"error".to_vec()]);
//! ```
//!
//! # How the pieces fit
//!
//! [`parse`] turns text into an [`Expr`]: either a [`LogExpr`] (a
//! [`Selector`] plus a [`Pipeline`]) or a [`MetricExpr`]. Everything that
//! can be compiled (regexes, templates, patterns, JSON paths) is compiled
//! then, so [`Pipeline::process`] does no parsing per line. A storage layer
//! prunes with [`Selector::topics`], [`Selector::required_equalities`] and
//! [`Pipeline::required_literals`], then feeds entries to the evaluator
//! through [`EntrySource::scan`]: [`eval_logs`] for log queries,
//! [`eval_instant`] and [`eval_range`] for metric queries.
//!
//! # Layout
//!
//! - `lexer`: text → tokens; durations, byte sizes, ranges, flags.
//! - `parser/`: tokens → [`Expr`]. `mod.rs` token plumbing and binary
//!   expressions, `metric.rs` aggregations and log ranges (`unwrap`,
//!   `offset`), `log.rs` selectors and pipeline stages, `label_filter.rs`.
//! - `ast`: the compiled query tree.
//! - `selector`: [`Matcher`], [`Selector`] and the pruning helpers.
//! - `labels`: [`Labels`], a copy-on-write ordered map.
//! - `pipeline/`: [`Pipeline`] and one file per stage kind: `filter`
//!   (line filters), `json` + `json_scan`, `logfmt`, `regexp`, `pattern`,
//!   `label_filter`, `template` (Go-template subset), `format`
//!   (`line_format`, `label_format`, `drop`, `keep`, `decolorize`).
//! - `eval/`: `mod.rs` public types and dispatch, `range` (range
//!   aggregations, bucketed), `vector` (vector aggregations,
//!   `label_replace`), `binop` (binary operators, vector matching), `logs`
//!   (log queries with a bounded heap).
//! - `limits`: the compile-time budgets of a query ([`Limits`]): regex
//!   program size and count, the line budget of templates.
//! - `units`: Prometheus/Go durations and humanized byte sizes.
//! - `error`: [`ParseError`] and [`EvalError`].
//!
//! # Semantics kept from Loki
//!
//! - Steps are `start, start+step, … ≤ end`; a range aggregation at `t`
//!   covers `(t - offset - range, t - offset]`; log queries cover
//!   `[start, end)`.
//! - `rate` is count ÷ range seconds (sum ÷ seconds with `unwrap`);
//!   `bytes_over_time`/`bytes_rate` count the line *after* the pipeline
//!   (Loki's `BytesExtractor` sees the processed line).
//! - Parsers never drop lines: failures set `__error__` (`JSONParserErr`,
//!   `LogfmtParserErr`, `LabelFilterErr`, `TemplateFormatErr`,
//!   `SampleExtractionErr`) and `__error_details__`. Log queries return
//!   such lines with those labels; a metric query whose series still
//!   carries `__error__` fails with Loki's "pipeline error" message
//!   ([`EvalError::Pipeline`]) unless a filter such as `| __error__=""`
//!   removes them.
//! - Extracted label names are sanitized (`[^a-zA-Z0-9_]` → `_`, a leading
//!   digit gets `_`); a name that is already a stream label gets the
//!   suffix `_extracted`.
//! - Structured metadata is the entry's own ([`Entry::metadata`]): the
//!   selector never sees it; it joins the labels before the pipeline, a
//!   name the stream already has going to `<name>_extracted`; parsers that
//!   extract a stream or metadata name write `<name>_extracted` (Loki:
//!   stream > metadata > parsed for the name, the reverse for the slot).
//! - `ip("...")` filters (lines: `|=`/`!=`; labels: `=`/`!=`) find IPv4
//!   and IPv6 addresses anywhere in the text, as Loki's `ip.go` does.
//! - Comparisons between scalars are 1 or 0 with or without `bool` (Loki
//!   folds `1 > 1` to `0`); pattern filters (`|>`, `!>`) follow Loki's
//!   `Matcher.Test` (see `pipeline::pattern`).
//! - Label filter predicates combine strictly left to right: `a or b and c`
//!   is `(a or b) and c`, as Loki documents; `,`, juxtaposition and a
//!   further `| pred` all mean "and".
//! - `| unwrap`: an empty or missing label skips the line; the unwrapped
//!   label is removed from the series labels; grouping on range
//!   aggregations is allowed only where Loki allows it.
//!
//! # Where this differs from Loki
//!
//! - **Bare topics** (logpost): `corpus |= "x"` means `{topic="corpus"}`;
//!   a topic name is `[A-Za-z0-9_][A-Za-z0-9_.-]*`. A name that starts with
//!   a digit is only read as a topic when it also contains a letter or `_`
//!   (`2024-logs`), so `5 - 3` stays arithmetic.
//! - **Selectors** (logpost): matchers that all accept the empty string are
//!   refused as in Loki, *except* when one of them is on `topic`.
//! - **Label filters** also accept `==` before a string (`level == "x"`);
//!   Loki accepts only `=` there.
//! - **Templates** (`line_format`, `label_format`) are a subset of Go
//!   templates: fields, string/number literals, pipes, `__line__` and the
//!   functions listed in the `template` module; `if`/`range`/variables,
//!   parentheses and `__timestamp__` are parse errors. Missing labels
//!   render as `""` (Loki's `missingkey=zero`).
//! - **Strings** use Go escapes, but `\x`/octal escapes above 0x7f are
//!   refused (they would not be valid UTF-8).
//! - **Error details**: `__error_details__` texts are this crate's own, not
//!   Go's error strings; `__error__` values match Loki's.
//! - **Refused at parse time** what Loki parses but refuses to run: `ip()`
//!   after `|~`, `!~`, `|>`, `!>`, an invalid `ip()` pattern in a stage of
//!   its own, `approx_topk` (Loki needs sharded aggregations for it).
//! - **`label_replace`** to an empty label name leaves series unchanged
//!   (Loki would set a label with an empty name).
//! - **Not supported** (parse errors naming them): `rate_counter`,
//!   `approx_topk`, subqueries (`[10m:1m]`, none in Loki either).
//! - **Limits**: nesting deeper than [`MAX_DEPTH`] or more than
//!   [`MAX_NODES`] operators is a parse error, and a range of `[0s]` is
//!   refused; JSON nested deeper than 128 levels is a `JSONParserErr`.
//!   [`Limits`] bound each regex's program, the regexes of a query, and
//!   the line or labels a template may make (past it: `TemplateFormatErr`,
//!   line unchanged). [`EvalOptions`] bounds series, steps, points and the
//!   bytes of a log query's result.
//! - **Memory**: range aggregations keep one accumulator per series and
//!   elementary interval (at most `2 × steps` of them), never the entries;
//!   the exception is `quantile_over_time`, which keeps every sample value
//!   inside the queried windows, since quantiles cannot be merged.
//! - **Instant vectors** are sorted by labels unless the query itself
//!   orders them (`sort`, `sort_desc`, `topk`, `bottomk`).
//! - **Log queries** with `limit = 0` return nothing (memory stays bounded).

#![deny(clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
#![warn(missing_docs)]

mod ast;
mod error;
mod eval;
mod labels;
mod lexer;
mod limits;
mod parser;
mod pipeline;
mod selector;
mod units;

pub use ast::{
    BinaryExpr, BinaryOp, Cardinality, Conversion, Expr, Grouping, LabelReplace, LogExpr, LogRange, MetricExpr,
    RangeAggregation, RangeOp, Unwrap, VectorAggregation, VectorMatching, VectorOp,
};
pub use error::{EvalError, ParseError};
pub use eval::{
    Direction, Entry, EntrySource, EvalOptions, Matrix, Partials, PartialsWire, Sample, Scanned, Series, Stream,
    StreamEntry, Streams, Value, eval_instant, eval_instant_with, eval_logs, eval_logs_with, eval_range,
    eval_range_with, range_partials,
};
pub use labels::{ERROR_DETAILS_LABEL, ERROR_LABEL, Labels};
pub use lexer::token_spans;
pub use limits::Limits;
pub use parser::{MAX_DEPTH, MAX_NODES, parse, parse_with};
pub use pipeline::{
    CmpOp, Decolorize, DropLabels, IpPattern, JsonParser, KeepLabels, LabelFilter, LabelFormat, LabelFormatKind,
    LineFilter, LineFilterOp, LineFormat, LogfmtParser, MIN_SECTION_LITERAL, PatternParser, Pipeline, RegexpParser,
    Stage, Template, UnpackParser, found,
};
pub use selector::{MatchOp, Matcher, Selector, TOPIC_LABEL};
pub use units::{parse_bytes, parse_go_duration, parse_prometheus_duration};

#[cfg(test)]
mod proptests;
