//! The parsed, compiled form of a query: [`Expr`] and everything under it.
//!
//! Why a module of its own: this is the contract between the parser (which
//! builds and validates it) and the evaluator (which walks it). The tree is
//! already "compiled": regexes, templates and patterns inside it were built
//! at parse time, so evaluating never re-parses anything.
//!
//! Invariants established by the parser: range aggregations carry exactly
//! the parameter and unwrap their operation needs; `param` of `topk` and
//! `bottomk` is a positive integer; `bool` appears only on comparisons.

use regex::Regex;

use crate::query::logql::pipeline::{LabelFilter, Pipeline};
use crate::query::logql::selector::Selector;

/// A whole query.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A log query: returns lines.
    Log(LogExpr),
    /// A metric query: returns samples.
    Metric(MetricExpr),
}

/// A stream selector and the pipeline each selected line goes through.
#[derive(Debug, Clone)]
pub struct LogExpr {
    /// Which streams.
    pub selector: Selector,
    /// What happens to each of their lines.
    pub pipeline: Pipeline,
}

/// A query that produces numbers.
#[derive(Debug, Clone)]
pub enum MetricExpr {
    /// `count_over_time(...)`, `rate(...)`, ...
    Range(RangeAggregation),
    /// `sum by (x) (...)`, `topk(3, ...)`, ...
    Vector(VectorAggregation),
    /// `a + b`, `a > bool 3`, `a or b`, ...
    Binary(Box<BinaryExpr>),
    /// A number literal (a scalar).
    Literal(f64),
    /// `vector(1)`: a one-element vector with no labels.
    VectorLiteral(f64),
    /// `label_replace(expr, "dst", "replacement", "src", "regex")`.
    LabelReplace(Box<LabelReplace>),
}

impl MetricExpr {
    /// Whether the expression yields a scalar rather than a vector.
    pub fn is_scalar(&self) -> bool {
        match self {
            MetricExpr::Literal(_) => true,
            MetricExpr::Binary(b) => b.lhs.is_scalar() && b.rhs.is_scalar(),
            _ => false,
        }
    }
}

/// A log query over a time window: the argument of a range aggregation.
#[derive(Debug, Clone)]
pub struct LogRange {
    /// The log query.
    pub log: LogExpr,
    /// Window length (`[5m]`) in nanoseconds.
    pub range_ns: i64,
    /// `offset` in nanoseconds (0 when absent).
    pub offset_ns: i64,
    /// `| unwrap label`, when the sample value comes from a label.
    pub unwrap: Option<Unwrap>,
}

/// `| unwrap [conv(]label[)]` and the label filters written after it.
#[derive(Debug, Clone)]
pub struct Unwrap {
    /// The label whose value becomes the sample value.
    pub label: String,
    /// How the label text is turned into a number.
    pub conversion: Conversion,
    /// Label filters applied after the conversion (`| unwrap x | __error__=""`).
    pub post_filters: Vec<LabelFilter>,
}

/// Conversion of an unwrapped label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// A float (`unwrap latency`).
    Float,
    /// A Go duration in seconds (`unwrap duration(d)`, `duration_seconds(d)`).
    Duration,
    /// A humanized byte size (`unwrap bytes(size)`).
    Bytes,
}

/// Range aggregation functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    /// `count_over_time`
    Count,
    /// `rate`
    Rate,
    /// `bytes_over_time`
    Bytes,
    /// `bytes_rate`
    BytesRate,
    /// `sum_over_time`
    Sum,
    /// `avg_over_time`
    Avg,
    /// `min_over_time`
    Min,
    /// `max_over_time`
    Max,
    /// `stddev_over_time`
    Stddev,
    /// `stdvar_over_time`
    Stdvar,
    /// `quantile_over_time`
    Quantile,
    /// `first_over_time`
    First,
    /// `last_over_time`
    Last,
    /// `absent_over_time`
    Absent,
}

impl RangeOp {
    /// Looks up a function name (lowercase).
    pub fn from_name(name: &str) -> Option<RangeOp> {
        Some(match name {
            "count_over_time" => RangeOp::Count,
            "rate" => RangeOp::Rate,
            "bytes_over_time" => RangeOp::Bytes,
            "bytes_rate" => RangeOp::BytesRate,
            "sum_over_time" => RangeOp::Sum,
            "avg_over_time" => RangeOp::Avg,
            "min_over_time" => RangeOp::Min,
            "max_over_time" => RangeOp::Max,
            "stddev_over_time" => RangeOp::Stddev,
            "stdvar_over_time" => RangeOp::Stdvar,
            "quantile_over_time" => RangeOp::Quantile,
            "first_over_time" => RangeOp::First,
            "last_over_time" => RangeOp::Last,
            "absent_over_time" => RangeOp::Absent,
            _ => return None,
        })
    }
}

/// `op([param,] log_range) [by|without (...)]`.
#[derive(Debug, Clone)]
pub struct RangeAggregation {
    /// The function.
    pub op: RangeOp,
    /// The log query and window.
    pub range: LogRange,
    /// The φ of `quantile_over_time`.
    pub param: Option<f64>,
    /// Grouping (only for the unwrap-based functions Loki allows it on).
    pub grouping: Option<Grouping>,
}

/// Vector aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorOp {
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `count`
    Count,
    /// `min`
    Min,
    /// `max`
    Max,
    /// `stddev`
    Stddev,
    /// `stdvar`
    Stdvar,
    /// `topk`
    Topk,
    /// `bottomk`
    Bottomk,
    /// `sort`
    Sort,
    /// `sort_desc`
    SortDesc,
}

impl VectorOp {
    /// Looks up an operator name (lowercase).
    pub fn from_name(name: &str) -> Option<VectorOp> {
        Some(match name {
            "sum" => VectorOp::Sum,
            "avg" => VectorOp::Avg,
            "count" => VectorOp::Count,
            "min" => VectorOp::Min,
            "max" => VectorOp::Max,
            "stddev" => VectorOp::Stddev,
            "stdvar" => VectorOp::Stdvar,
            "topk" => VectorOp::Topk,
            "bottomk" => VectorOp::Bottomk,
            "sort" => VectorOp::Sort,
            "sort_desc" => VectorOp::SortDesc,
            _ => return None,
        })
    }
}

/// `op [by|without (...)] ([param,] expr)`.
#[derive(Debug, Clone)]
pub struct VectorAggregation {
    /// The operator.
    pub op: VectorOp,
    /// `k` of `topk`/`bottomk`.
    pub param: Option<f64>,
    /// `by (...)` / `without (...)`.
    pub grouping: Option<Grouping>,
    /// The aggregated expression.
    pub inner: Box<MetricExpr>,
}

/// `by (a, b)` or `without (a, b)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// `without` rather than `by`.
    pub without: bool,
    /// The label names.
    pub labels: Vec<String>,
}

/// Binary operators, from lowest to highest precedence group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `or`
    Or,
    /// `and`
    And,
    /// `unless`
    Unless,
    /// `==`
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
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `^`
    Pow,
}

impl BinaryOp {
    /// Binding strength (higher binds tighter), as in Loki's grammar.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And | BinaryOp::Unless => 2,
            BinaryOp::Eq | BinaryOp::Neq | BinaryOp::Gt | BinaryOp::Gte | BinaryOp::Lt | BinaryOp::Lte => 3,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 5,
            BinaryOp::Pow => 6,
        }
    }

    /// Whether the operator compares (and so filters unless `bool`).
    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    /// Whether the operator is a set operation (`and`, `or`, `unless`).
    pub fn is_set(self) -> bool {
        self.precedence() <= 2
    }

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Unless => "unless",
            BinaryOp::Eq => "==",
            BinaryOp::Neq => "!=",
            BinaryOp::Gt => ">",
            BinaryOp::Gte => ">=",
            BinaryOp::Lt => "<",
            BinaryOp::Lte => "<=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
            BinaryOp::Pow => "^",
        }
    }
}

/// Which side of a vector match may have many series per match group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cardinality {
    /// The default: one series on each side.
    #[default]
    OneToOne,
    /// `group_left`
    ManyToOne,
    /// `group_right`
    OneToMany,
}

/// `on (...)`/`ignoring (...)` and `group_left/right (...)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VectorMatching {
    /// `on` rather than `ignoring`.
    pub on: bool,
    /// The `on`/`ignoring` label list.
    pub labels: Vec<String>,
    /// Which side may be "many".
    pub card: Cardinality,
    /// Labels copied from the "one" side (`group_left(a, b)`).
    pub include: Vec<String>,
}

/// `lhs op [bool] [on|ignoring (...)] [group_left|group_right (...)] rhs`.
#[derive(Debug, Clone)]
pub struct BinaryExpr {
    /// The operator.
    pub op: BinaryOp,
    /// Left operand.
    pub lhs: MetricExpr,
    /// Right operand.
    pub rhs: MetricExpr,
    /// `bool`: comparisons return 0/1 instead of filtering.
    pub return_bool: bool,
    /// How series of the two sides are paired.
    pub matching: VectorMatching,
}

/// `label_replace(inner, "dst", "replacement", "src", "regex")`.
#[derive(Debug, Clone)]
pub struct LabelReplace {
    /// The expression whose series are relabelled.
    pub inner: MetricExpr,
    /// Destination label.
    pub dst: String,
    /// Replacement with `$1`/`${name}` references.
    pub replacement: String,
    /// Source label.
    pub src: String,
    /// The anchored regex matched against the source label.
    pub regex: Regex,
}
