//! The two error types of the crate: [`ParseError`] for a query that cannot
//! be parsed or compiled, and [`EvalError`] for a query that fails while it
//! runs against an [`EntrySource`](crate::query::logql::EntrySource).
//!
//! Why a module of its own: both the parser and every compile step (regexes,
//! templates, patterns) report through `ParseError`, and the position
//! arithmetic (byte offset to 1-based line and column) must be done one way.

use std::error::Error as StdError;

/// A query that could not be parsed or compiled.
///
/// The place comes first: `pos` is the byte offset into the query, `line`
/// and `col` are 1-based (columns count characters, not bytes, as editors do).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse error at line {line}, col {col}: {message}")]
pub struct ParseError {
    /// Byte offset into the query where the problem starts.
    pub pos: usize,
    /// 1-based line of `pos`.
    pub line: usize,
    /// 1-based column (in characters) of `pos`.
    pub col: usize,
    /// What is wrong, lowercase, without the position.
    pub message: String,
}

impl ParseError {
    /// Builds an error at byte `pos` of `input`, computing line and column.
    ///
    /// A `pos` past the end or inside a multi-byte character is clamped to
    /// the nearest earlier character boundary, so this never panics.
    pub fn at(input: &str, pos: usize, message: impl Into<String>) -> Self {
        let mut pos = pos.min(input.len());
        while pos > 0 && !input.is_char_boundary(pos) {
            pos -= 1;
        }
        let before = input.get(..pos).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before.get(line_start..).unwrap_or("").chars().count() + 1;
        ParseError {
            pos,
            line,
            col,
            message: message.into(),
        }
    }
}

/// A metric or log query that failed while being evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A series still carried `__error__` after the whole pipeline. Loki
    /// refuses such metric queries instead of silently counting bad lines;
    /// the message is Loki's, word for word, because clients match on it.
    #[error(
        "pipeline error: '{error_type}' for series: '{series}'.\n\
         Use a label filter to intentionally skip this error. (e.g | __error__!=\"{error_type}\").\n\
         To skip all potential errors you can match empty errors.(e.g __error__=\"\")\n\
         The label filter can also be specified after unwrap. (e.g | unwrap latency | __error__=\"\" )\n"
    )]
    Pipeline {
        /// The value of `__error__`, e.g. `JSONParserErr`.
        error_type: String,
        /// The offending series, rendered `{a="b", c="d"}`.
        series: String,
    },
    /// More distinct series than [`EvalOptions::max_series`](crate::query::logql::EvalOptions::max_series).
    #[error("maximum of series ({limit}) reached for a single query")]
    TooManySeries {
        /// The limit that was hit.
        limit: usize,
    },
    /// More points (series × steps) than [`EvalOptions::max_points`](crate::query::logql::EvalOptions::max_points)
    /// in some part of a metric query.
    #[error(
        "maximum of points ({limit}) reached for a single query: use a larger step, a shorter range or fewer series (query.max_points)"
    )]
    TooManyPoints {
        /// The limit that was hit.
        limit: usize,
    },
    /// A log query's lines would pass [`EvalOptions::max_result_bytes`](crate::query::logql::EvalOptions::max_result_bytes).
    #[error(
        "the result would hold more than {limit} bytes of lines (query.max_result_bytes): lower the limit or narrow the query"
    )]
    ResultTooLarge {
        /// The limit that was hit.
        limit: usize,
    },
    /// The time range, step or resolution of the request is unusable.
    #[error("invalid query range: {0}")]
    InvalidRange(String),
    /// Vector matching found duplicates or conflicting series.
    #[error("{0}")]
    Matching(String),
    /// The entry source failed; its error is kept as the cause.
    #[error("entry source failed")]
    Source(#[source] Box<dyn StdError + Send + Sync>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_col_are_one_based_and_count_chars() {
        let e = ParseError::at("ab\ncé}", 6, "unexpected \"}\"");
        assert_eq!((e.line, e.col, e.pos), (2, 3, 6));
        assert_eq!(e.to_string(), "parse error at line 2, col 3: unexpected \"}\"");
    }

    #[test]
    fn position_is_clamped_never_panics() {
        let e = ParseError::at("é", 1, "x");
        assert_eq!((e.pos, e.col), (0, 1));
        let e = ParseError::at("abc", 99, "x");
        assert_eq!((e.pos, e.col), (3, 4));
    }

    #[test]
    fn pipeline_error_matches_loki_text() {
        let e = EvalError::Pipeline {
            error_type: "JSONParserErr".into(),
            series: "{__error__=\"JSONParserErr\"}".into(),
        };
        let s = e.to_string();
        assert!(s.starts_with("pipeline error: 'JSONParserErr' for series: '{__error__=\"JSONParserErr\"}'.\n"));
        assert!(s.contains("(e.g | __error__!=\"JSONParserErr\")"));
    }
}
