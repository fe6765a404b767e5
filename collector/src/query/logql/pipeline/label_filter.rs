//! Label filters: `| status >= 500`, `| level =~ "err.*"`,
//! `| duration > 1.5s`, `| size < 20KiB`, combined with `and`, `or`, `,`
//! and parentheses; plus the label conversions `unwrap` shares with them.
//!
//! Why a module of its own: it owns Loki's error rules, which are easy to
//! get subtly wrong. A numeric, duration or bytes filter
//! - passes any line that already carries `__error__` (only string matchers
//!   can filter errors out);
//! - drops a line that lacks the label;
//! - marks a line whose label cannot be converted with
//!   `__error__="LabelFilterErr"` and lets it through.

use crate::query::logql::labels::Labels;
use crate::query::logql::pipeline::ip::IpPattern;
use crate::query::logql::selector::Matcher;
use crate::query::logql::units;

/// The error Loki records when a filter cannot convert a label.
const LABEL_FILTER_ERR: &str = "LabelFilterErr";

/// A numeric comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=` or `==`
    Eq,
    /// `!=`
    Neq,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
}

impl CmpOp {
    fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Neq => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Gte => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Lte => a <= b,
        }
    }
}

/// A label filter expression.
#[derive(Debug, Clone)]
pub enum LabelFilter {
    /// Both must pass.
    And(Box<LabelFilter>, Box<LabelFilter>),
    /// Either must pass.
    Or(Box<LabelFilter>, Box<LabelFilter>),
    /// `name op "value"` with `=`, `!=`, `=~`, `!~` (a missing label is `""`).
    Matcher(Matcher),
    /// `name op number`: the label parsed as a float.
    Number {
        /// Label name.
        name: String,
        /// Comparison.
        op: CmpOp,
        /// Right-hand side.
        value: f64,
    },
    /// `name op 1.5s`: the label parsed as a Go duration.
    Duration {
        /// Label name.
        name: String,
        /// Comparison.
        op: CmpOp,
        /// Right-hand side in nanoseconds.
        value_ns: i64,
    },
    /// `name op 20KB`: the label parsed as a humanized byte size.
    Bytes {
        /// Label name.
        name: String,
        /// Comparison.
        op: CmpOp,
        /// Right-hand side in bytes.
        value: u64,
    },
    /// `name = ip("...")` / `name != ip("...")`: an address in the label
    /// value matches (as in a line). Like the typed filters, it passes a
    /// line that carries `__error__` and drops one that lacks the label.
    Ip {
        /// Label name.
        name: String,
        /// `!=`: passes when no address matches.
        negated: bool,
        /// The pattern as written.
        pattern: String,
        /// `None` for an invalid pattern inside `and`/`or`, which Loki
        /// accepts and which then passes nothing (on its own it is a parse
        /// error, as Loki refuses to run it).
        compiled: Option<IpPattern>,
    },
}

impl LabelFilter {
    /// Whether the line with `labels` passes; may add `__error__`.
    pub fn process(&self, labels: &mut Labels) -> bool {
        match self {
            LabelFilter::And(a, b) => a.process(labels) && b.process(labels),
            LabelFilter::Or(a, b) => a.process(labels) || b.process(labels),
            LabelFilter::Matcher(m) => m.matches(labels.get(&m.name)),
            LabelFilter::Number { name, op, value } => {
                typed(labels, name, "float", convert_float, |v| op.holds(v, *value))
            }
            LabelFilter::Duration { name, op, value_ns } => {
                typed(labels, name, "duration", units::parse_go_duration, |v| {
                    op.holds(v, *value_ns)
                })
            }
            LabelFilter::Bytes { name, op, value } => {
                typed(labels, name, "bytes", units::parse_bytes, |v| op.holds(v, *value))
            }
            LabelFilter::Ip {
                name,
                negated,
                compiled,
                ..
            } => {
                if labels.has_error() {
                    return true;
                }
                match (labels.get(name), compiled) {
                    (Some(value), Some(p)) => p.found_in(value.as_bytes()) != *negated,
                    _ => false,
                }
            }
        }
    }
}

/// The shared rules of the typed filters (see the module doc).
fn typed<T>(
    labels: &mut Labels,
    name: &str,
    kind: &str,
    convert: impl Fn(&str) -> Option<T>,
    test: impl Fn(T) -> bool,
) -> bool {
    if labels.has_error() {
        return true;
    }
    let Some(text) = labels.get(name) else {
        return false;
    };
    match convert(text) {
        Some(v) => test(v),
        None => {
            let details = format!("cannot parse {text:?} as {kind}");
            labels.set_error(LABEL_FILTER_ERR, &details);
            true
        }
    }
}

/// A label value as a float, accepting what Go's `strconv.ParseFloat` does
/// in practice (`1e3`, `-2.5`, `+Inf`, `NaN`).
pub(crate) fn convert_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

/// A label value as a Go duration, in seconds (`unwrap duration(x)`).
pub(crate) fn convert_duration_secs(s: &str) -> Option<f64> {
    units::parse_go_duration(s).map(units::ns_to_secs)
}

/// A label value as a humanized byte size (`unwrap bytes(x)`).
pub(crate) fn convert_bytes(s: &str) -> Option<f64> {
    units::parse_bytes(s).map(|b| b as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::logql::selector::MatchOp;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().copied().collect()
    }

    fn num(name: &str, op: CmpOp, value: f64) -> LabelFilter {
        LabelFilter::Number {
            name: name.into(),
            op,
            value,
        }
    }

    #[test]
    fn numeric_comparisons() {
        let mut l = labels(&[("status", "503")]);
        assert!(num("status", CmpOp::Gte, 500.0).process(&mut l));
        assert!(!num("status", CmpOp::Lt, 500.0).process(&mut l));
        assert!(num("status", CmpOp::Eq, 503.0).process(&mut l));
        assert!(num("status", CmpOp::Neq, 200.0).process(&mut l));
        assert!(!l.has_error());
    }

    #[test]
    fn missing_label_drops_bad_value_marks() {
        let mut l = labels(&[]);
        assert!(!num("status", CmpOp::Gt, 1.0).process(&mut l));
        let mut l = labels(&[("status", "abc")]);
        assert!(num("status", CmpOp::Gt, 1.0).process(&mut l));
        assert_eq!(l.get("__error__"), Some("LabelFilterErr"));
        // Once marked, typed filters let the line through.
        assert!(num("status", CmpOp::Lt, 0.0).process(&mut l));
    }

    #[test]
    fn durations_and_bytes() {
        let mut l = labels(&[("took", "1.5s"), ("size", "20 KiB")]);
        let d = LabelFilter::Duration {
            name: "took".into(),
            op: CmpOp::Gt,
            value_ns: 1_000_000_000,
        };
        assert!(d.process(&mut l));
        let b = LabelFilter::Bytes {
            name: "size".into(),
            op: CmpOp::Gte,
            value: 20_000,
        };
        assert!(b.process(&mut l));
        let mut l = labels(&[("took", "soon")]);
        assert!(d.process(&mut l));
        assert_eq!(l.get("__error__"), Some("LabelFilterErr"));
    }

    #[test]
    fn and_or() {
        let m = |n: &str, v: &str| LabelFilter::Matcher(Matcher::new(n, MatchOp::Eq, v).unwrap());
        let f = LabelFilter::Or(
            Box::new(LabelFilter::And(Box::new(m("a", "1")), Box::new(m("b", "2")))),
            Box::new(m("c", "3")),
        );
        assert!(f.process(&mut labels(&[("a", "1"), ("b", "2")])));
        assert!(!f.process(&mut labels(&[("a", "1")])));
        assert!(f.process(&mut labels(&[("c", "3")])));
    }

    #[test]
    fn string_matcher_filters_errors() {
        let f = LabelFilter::Matcher(Matcher::new("__error__", MatchOp::Eq, "").unwrap());
        assert!(f.process(&mut labels(&[])));
        assert!(!f.process(&mut labels(&[("__error__", "JSONParserErr")])));
    }

    #[test]
    fn ip_filters_follow_loki() {
        let ip = |negated, pattern: &str| LabelFilter::Ip {
            name: "addr".into(),
            negated,
            pattern: pattern.into(),
            compiled: IpPattern::new(pattern).ok(),
        };
        let mut l = labels(&[("addr", "10.1.2.3")]);
        assert!(ip(false, "10.0.0.0/8").process(&mut l));
        assert!(!ip(true, "10.0.0.0/8").process(&mut l));
        assert!(ip(true, "192.168.0.0/16").process(&mut l));
        // Missing label or invalid pattern: dropped, whatever the operator.
        assert!(!ip(true, "10.0.0.0/8").process(&mut labels(&[])));
        assert!(!ip(false, "").process(&mut l));
        assert!(!ip(true, "").process(&mut l));
        // A line already in error passes.
        let mut l = labels(&[("__error__", "JSONParserErr")]);
        assert!(ip(false, "10.0.0.0/8").process(&mut l));
    }

    #[test]
    fn conversions() {
        assert_eq!(convert_float("1e3"), Some(1000.0));
        assert_eq!(convert_duration_secs("250ms"), Some(0.25));
        assert_eq!(convert_bytes("1KiB"), Some(1024.0));
        assert_eq!(convert_float("x"), None);
    }
}
