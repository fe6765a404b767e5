//! `[query]`: the budgets every query is held to, raw and validated.
//!
//! Why a section of its own: a query is text from anyone with the read
//! scope, and a short one can ask for a lot (a line doubled by each of 30
//! `line_format` stages, a point per series and step over a month, a
//! regex that compiles to megabytes). Each budget bounds one way a query
//! can grow; together they keep a query's memory to a few of them,
//! whatever the query. The defaults sit well above what Grafana and the
//! `logpost` command ask for (Grafana's line limit is 1000, its panels a
//! few thousand points per series); where Loki has the same limit, the
//! default and the error text are Loki's.

use logpost_shared::config::{ByteSize, Problems};
use serde::Deserialize;
use toml::Spanned;

/// `[query]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryToml {
    /// Most lines a log query may return (Loki's
    /// `max_entries_limit_per_query`): a larger `limit` gets 400. Default
    /// 5000.
    #[serde(default = "default_max_entries")]
    pub max_entries: Spanned<u32>,
    /// Most records `/v1/query` backward (the newest first: `logpost query`
    /// on a terminal, the web page) may hold before it answers; a larger
    /// `limit` gets 400. `max_result_bytes` bounds their bytes too.
    /// Default 100000.
    #[serde(default = "default_max_backward_records")]
    pub max_backward_records: Spanned<u32>,
    /// Most bytes of lines a log query's answer may hold (Loki's
    /// `query_range`, `/v1/query` backward, a tail's first message);
    /// a larger answer gets 400 naming this key. Default 32MiB.
    #[serde(default = "default_max_result_bytes")]
    pub max_result_bytes: Spanned<ByteSize>,
    /// Largest line (or set of labels) a `line_format` or `label_format`
    /// stage may make; a bigger one is not made: the line stays as it was,
    /// marked `__error__="TemplateFormatErr"`, as Loki marks a template
    /// that fails. Default 8MiB.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: Spanned<ByteSize>,
    /// Most series any step of a metric query may hold (Loki's
    /// `max_query_series`). Default 500.
    #[serde(default = "default_max_series")]
    pub max_series: Spanned<u32>,
    /// Most points (series × steps) any part of a metric query may hold.
    /// Default 1000000 (about 40 bytes each).
    #[serde(default = "default_max_points")]
    pub max_points: Spanned<u32>,
    /// Largest compiled program of one regex in a query (line filters,
    /// `regexp`, matchers, `label_replace`). Default 1MiB.
    #[serde(default = "default_max_regex_bytes")]
    pub max_regex_bytes: Spanned<ByteSize>,
    /// Most regexes in one query. Default 32.
    #[serde(default = "default_max_regexes")]
    pub max_regexes: Spanned<u32>,
    /// Live tails served at once (Loki's `max_concurrent_tail_requests`);
    /// more get 400. Default 64.
    #[serde(default = "default_max_concurrent_tails")]
    pub max_concurrent_tails: Spanned<u32>,
    /// Queries evaluated at once (Loki's API, and each poll of a live
    /// tail); more wait their turn, so the memory of queries in progress
    /// is this many times one query's. Default 0: two per CPU.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: Spanned<u32>,
}

impl Default for QueryToml {
    fn default() -> Self {
        Self {
            max_entries: default_max_entries(),
            max_backward_records: default_max_backward_records(),
            max_result_bytes: default_max_result_bytes(),
            max_line_bytes: default_max_line_bytes(),
            max_series: default_max_series(),
            max_points: default_max_points(),
            max_regex_bytes: default_max_regex_bytes(),
            max_regexes: default_max_regexes(),
            max_concurrent_tails: default_max_concurrent_tails(),
            max_concurrent: default_max_concurrent(),
        }
    }
}

fn default_max_entries() -> Spanned<u32> {
    Spanned::new(0..0, 5000)
}
fn default_max_backward_records() -> Spanned<u32> {
    Spanned::new(0..0, 100_000)
}
fn default_max_result_bytes() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(32 << 20))
}
fn default_max_line_bytes() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(8 << 20))
}
fn default_max_series() -> Spanned<u32> {
    Spanned::new(0..0, 500)
}
fn default_max_points() -> Spanned<u32> {
    Spanned::new(0..0, 1_000_000)
}
fn default_max_regex_bytes() -> Spanned<ByteSize> {
    Spanned::new(0..0, ByteSize(1 << 20))
}
fn default_max_regexes() -> Spanned<u32> {
    Spanned::new(0..0, 32)
}
fn default_max_concurrent() -> Spanned<u32> {
    Spanned::new(0..0, 0)
}
fn default_max_concurrent_tails() -> Spanned<u32> {
    Spanned::new(0..0, 64)
}

/// `[query]` after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySettings {
    pub max_entries: usize,
    pub max_backward_records: usize,
    pub max_result_bytes: usize,
    pub max_line_bytes: usize,
    pub max_series: usize,
    pub max_points: usize,
    pub max_regex_bytes: usize,
    pub max_regexes: usize,
    pub max_concurrent_tails: usize,
    /// `max_concurrent` resolved: at least 1.
    pub max_concurrent: usize,
}

impl QuerySettings {
    /// The budgets a query is compiled under.
    pub fn limits(&self) -> crate::query::logql::Limits {
        crate::query::logql::Limits {
            max_regex_bytes: self.max_regex_bytes,
            max_regexes: self.max_regexes,
            max_line_bytes: self.max_line_bytes,
        }
    }

    /// The budgets a query is evaluated under.
    pub fn eval_options(&self) -> crate::query::logql::EvalOptions {
        crate::query::logql::EvalOptions {
            max_series: self.max_series,
            max_points: self.max_points,
            max_result_bytes: self.max_result_bytes,
            ..crate::query::logql::EvalOptions::default()
        }
    }
}

impl Default for QuerySettings {
    /// The defaults of `[query]` (tests and embedders that load no file).
    fn default() -> Self {
        let source = logpost_shared::config::SourceText {
            path: "defaults".into(),
            text: String::new(),
        };
        let mut problems = Problems::new(&source);
        validate_query(&QueryToml::default(), &mut problems)
    }
}

/// Smallest line budget: below it, ordinary JSON lines could not be
/// reformatted.
const MIN_LINE_BYTES: u64 = 64 << 10;
/// Smallest regex budget: the regex crate needs about this much for an
/// ordinary case-insensitive word.
const MIN_REGEX_BYTES: u64 = 16 << 10;

/// Validates `[query]`.
pub fn validate_query(raw: &QueryToml, problems: &mut Problems<'_>) -> QuerySettings {
    for (key, v) in [
        ("query.max_entries", &raw.max_entries),
        ("query.max_backward_records", &raw.max_backward_records),
        ("query.max_series", &raw.max_series),
        ("query.max_points", &raw.max_points),
        ("query.max_regexes", &raw.max_regexes),
        ("query.max_concurrent_tails", &raw.max_concurrent_tails),
    ] {
        if *v.get_ref() == 0 {
            problems.at(v.span(), key, "must be at least 1");
        }
    }
    let line = raw.max_line_bytes.get_ref().bytes();
    if line < MIN_LINE_BYTES {
        problems.at(
            raw.max_line_bytes.span(),
            "query.max_line_bytes",
            format!("{} is below the minimum of 64KiB", raw.max_line_bytes.get_ref()),
        );
    }
    let result = raw.max_result_bytes.get_ref().bytes();
    if result < line {
        problems.at(
            raw.max_result_bytes.span(),
            "query.max_result_bytes",
            format!(
                "{} is below query.max_line_bytes ({}): an answer must be able to hold one line",
                raw.max_result_bytes.get_ref(),
                raw.max_line_bytes.get_ref()
            ),
        );
    }
    if raw.max_regex_bytes.get_ref().bytes() < MIN_REGEX_BYTES {
        problems.at(
            raw.max_regex_bytes.span(),
            "query.max_regex_bytes",
            format!("{} is below the minimum of 16KiB", raw.max_regex_bytes.get_ref()),
        );
    }
    let size = |b: u64| usize::try_from(b).unwrap_or(usize::MAX);
    let count = |v: &Spanned<u32>| usize::try_from(*v.get_ref()).unwrap_or(usize::MAX).max(1);
    QuerySettings {
        max_entries: count(&raw.max_entries),
        max_backward_records: count(&raw.max_backward_records),
        max_result_bytes: size(result.max(line)),
        max_line_bytes: size(line.max(MIN_LINE_BYTES)),
        max_series: count(&raw.max_series),
        max_points: count(&raw.max_points),
        max_regex_bytes: size(raw.max_regex_bytes.get_ref().bytes().max(MIN_REGEX_BYTES)),
        max_regexes: count(&raw.max_regexes),
        max_concurrent_tails: count(&raw.max_concurrent_tails),
        max_concurrent: match *raw.max_concurrent.get_ref() {
            0 => std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get) * 2,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        },
    }
}
