//! Evaluation of parsed queries against any storage that implements
//! [`EntrySource`]: metric queries at one instant ([`eval_instant`]) or over
//! a range of steps ([`eval_range`]), and log queries ([`eval_logs`]).
//!
//! Why a module of its own: the evaluator must not care how entries are
//! stored, and must keep memory bounded by the *result*, not by how many
//! raw entries it reads. Range aggregations fold each entry into per-series
//! buckets as it streams past ([`range`]); every other node works on
//! per-step vectors ([`vector`], [`binop`]); log queries keep a bounded heap
//! ([`logs`]).
//!
//! Time semantics follow Loki/Prometheus: steps are `start, start+step, …
//! ≤ end`; a range aggregation at step `t` covers `(t - offset - range,
//! t - offset]`.

mod binop;
mod logs;
mod range;
mod vector;

use std::ops::ControlFlow;

pub use logs::{Direction, Stream, StreamEntry, Streams, eval_logs, eval_logs_with};
pub use range::{Partials, PartialsWire, partials as range_partials};

use crate::query::logql::ast::{LogExpr, MetricExpr, RangeAggregation};
use crate::query::logql::error::EvalError;
use crate::query::logql::labels::Labels;

/// One stored log entry as a source hands it to the engine. The line is
/// borrowed from the source's buffer: the engine copies only what it keeps.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The stream's labels.
    pub labels: Labels,
    /// The entry's structured metadata (Loki's per-entry labels), `None`
    /// when it has none. The selector never sees it; the pipeline does,
    /// merged into the labels as [`Labels::add_metadata`] says.
    pub metadata: Option<Labels>,
    /// The line as stored (any bytes).
    pub line: &'a [u8],
    /// Whether the source ran the pipeline's leading line filters on the
    /// line already (it passed them); the engine then runs the rest.
    pub leading_filters_passed: bool,
}

/// What the engine needs from storage.
pub trait EntrySource {
    /// Calls `f` for every stored entry whose stream labels match
    /// `log.selector` (the source may also pass non-matching ones; the
    /// engine re-checks) with timestamp in `[start_ns, end_ns)`, in any
    /// order. Stop early when `f` returns `ControlFlow::Break`.
    ///
    /// The source may skip entries that `log.pipeline` would drop for sure
    /// (lines lacking one of [`Pipeline::required_literals`](crate::query::logql::Pipeline::required_literals)),
    /// which lets it skip whole blocks without decoding their lines.
    ///
    /// # Errors
    /// Whatever the storage fails with, usually wrapped in [`EvalError::Source`].
    fn scan(
        &mut self,
        log: &LogExpr,
        start_ns: i64,
        end_ns: i64,
        f: &mut dyn FnMut(Entry<'_>) -> ControlFlow<()>,
    ) -> Result<(), EvalError>;

    /// As [`scan`](Self::scan), reading the newest data first where the
    /// source can, and saying how new what is still to come can be
    /// ([`Scanned::NoneNewerThan`]), so that a backward log query with a
    /// limit stops once nothing left can make its result. The default
    /// scans in any order and never says.
    ///
    /// # Errors
    /// As [`scan`](Self::scan).
    fn scan_newest_first(
        &mut self,
        log: &LogExpr,
        start_ns: i64,
        end_ns: i64,
        f: &mut dyn FnMut(Scanned<'_>) -> ControlFlow<()>,
    ) -> Result<(), EvalError> {
        self.scan(log, start_ns, end_ns, &mut |e| f(Scanned::Entry(e)))
    }

    /// `agg`'s state at `times` computed where the data is (a cluster's
    /// other nodes fold their partitions' entries and send the state, so
    /// samples cross the network, not lines); `None`, the default, has the
    /// engine fold the entries [`scan`](Self::scan) hands over.
    fn range_partials(
        &mut self,
        _agg: &RangeAggregation,
        _times: &[i64],
        _opts: &EvalOptions,
    ) -> Option<Result<Partials, EvalError>> {
        None
    }
}

/// What [`EntrySource::scan_newest_first`] hands over.
#[derive(Debug)]
pub enum Scanned<'a> {
    /// A stored entry, as [`EntrySource::scan`] passes them.
    Entry(Entry<'a>),
    /// No entry passed from now on has a timestamp (ns) above this.
    NoneNewerThan(i64),
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series labels.
    pub labels: Labels,
    /// Evaluation time in nanoseconds.
    pub timestamp_ns: i64,
    /// The value.
    pub value: f64,
}

/// One series of a range result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The series labels.
    pub labels: Labels,
    /// `(timestamp_ns, value)` in time order.
    pub points: Vec<(i64, f64)>,
}

/// A range query result: series sorted by labels.
pub type Matrix = Vec<Series>;

/// The result of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A plain number (`1 + 1`).
    Scalar(f64),
    /// Samples at the query time (sorted by labels unless the query sorts).
    Vector(Vec<Sample>),
    /// Never produced by [`eval_instant`] today (LogQL has no bare range
    /// vectors); present so callers can hold any result kind in one type.
    Matrix(Matrix),
}

/// Limits for one evaluation.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Most distinct series any one node may produce (Loki's
    /// `max_query_series`): each series costs memory for every step.
    pub max_series: usize,
    /// Most steps in a range query, Loki's 11,000-point limit, which bounds
    /// the per-series memory.
    pub max_steps: usize,
    /// Most points (series × steps) a range aggregation may produce: what
    /// a metric query's memory grows with.
    pub max_points: usize,
    /// Most bytes of lines a log query may keep for its answer.
    pub max_result_bytes: usize,
}

impl Default for EvalOptions {
    /// The collector's `[query]` defaults (Loki's for series and steps).
    fn default() -> Self {
        EvalOptions {
            max_series: 500,
            max_steps: 11_000,
            max_points: 1_000_000,
            max_result_bytes: 32 << 20,
        }
    }
}

/// Label sets derived from others (grouping keys, match signatures,
/// `label_replace` results), computed once per input set: a series present
/// at every step is one set shared by all its points, where deriving it
/// per step allocated a map per point (about 900 bytes a point).
#[derive(Default)]
pub(crate) struct LabelMemo {
    /// By the input set's identity; the input is kept so that its address
    /// cannot be reused by another set while the memo lives.
    derived: std::collections::HashMap<usize, (Labels, Labels)>,
}

impl LabelMemo {
    /// `derive(input)`, computed the first time `input` (this very set) is seen.
    pub(crate) fn get(&mut self, input: &Labels, derive: impl FnOnce(&Labels) -> Labels) -> Labels {
        match self.derived.entry(input.identity()) {
            std::collections::hash_map::Entry::Occupied(e) => e.get().1.clone(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let out = derive(input);
                v.insert((input.clone(), out.clone()));
                out
            }
        }
    }
}

/// A vector element without its timestamp (the step implies it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Elem {
    pub labels: Labels,
    pub value: f64,
}

/// A node's value at every step.
#[derive(Debug, Clone)]
pub(crate) enum Stepped {
    Scalar(Vec<f64>),
    Vector(Vec<Vec<Elem>>),
}

/// Evaluates a metric query over `start_ns, start_ns + step_ns, … ≤ end_ns`.
///
/// # Errors
/// A bad range or step, too many steps or series, a pipeline error left
/// unfiltered (Loki's rule), a vector matching conflict, or a source error.
pub fn eval_range(
    expr: &MetricExpr,
    start_ns: i64,
    end_ns: i64,
    step_ns: i64,
    src: &mut dyn EntrySource,
) -> Result<Matrix, EvalError> {
    eval_range_with(expr, start_ns, end_ns, step_ns, src, &EvalOptions::default())
}

/// [`eval_range`] with explicit limits.
///
/// # Errors
/// As [`eval_range`].
pub fn eval_range_with(
    expr: &MetricExpr,
    start_ns: i64,
    end_ns: i64,
    step_ns: i64,
    src: &mut dyn EntrySource,
    opts: &EvalOptions,
) -> Result<Matrix, EvalError> {
    if step_ns <= 0 {
        return Err(EvalError::InvalidRange("step must be positive".into()));
    }
    if end_ns < start_ns {
        return Err(EvalError::InvalidRange("end is before start".into()));
    }
    let steps = (i128::from(end_ns) - i128::from(start_ns)) / i128::from(step_ns) + 1;
    if steps > opts.max_steps as i128 {
        return Err(EvalError::InvalidRange(format!(
            "exceeded maximum resolution of {} points per timeseries; try a larger step",
            opts.max_steps
        )));
    }
    // Every step is ≤ end_ns, so it fits an i64; only the product needs i128.
    let times: Vec<i64> = (0..steps)
        .map(|i| (i128::from(start_ns) + i * i128::from(step_ns)) as i64)
        .collect();
    Ok(to_matrix(eval_node(expr, &times, src, opts)?, &times))
}

/// Evaluates a metric query at one instant.
///
/// # Errors
/// As [`eval_range`].
pub fn eval_instant(expr: &MetricExpr, time_ns: i64, src: &mut dyn EntrySource) -> Result<Value, EvalError> {
    eval_instant_with(expr, time_ns, src, &EvalOptions::default())
}

/// [`eval_instant`] with explicit limits.
///
/// # Errors
/// As [`eval_range`].
pub fn eval_instant_with(
    expr: &MetricExpr,
    time_ns: i64,
    src: &mut dyn EntrySource,
    opts: &EvalOptions,
) -> Result<Value, EvalError> {
    let times = [time_ns];
    Ok(match eval_node(expr, &times, src, opts)? {
        Stepped::Scalar(v) => Value::Scalar(v.first().copied().unwrap_or(f64::NAN)),
        Stepped::Vector(mut steps) => {
            let mut elems = steps.pop().unwrap_or_default();
            if !is_sorting(expr) {
                elems.sort_by(|a, b| a.labels.cmp(&b.labels));
            }
            Value::Vector(
                elems
                    .into_iter()
                    .map(|e| Sample {
                        labels: e.labels,
                        timestamp_ns: time_ns,
                        value: e.value,
                    })
                    .collect(),
            )
        }
    })
}

/// Whether the top of the query orders its result itself.
fn is_sorting(expr: &MetricExpr) -> bool {
    use crate::query::logql::ast::VectorOp;
    matches!(expr, MetricExpr::Vector(v) if matches!(v.op, VectorOp::Sort | VectorOp::SortDesc | VectorOp::Topk | VectorOp::Bottomk))
}

pub(crate) fn eval_node(
    expr: &MetricExpr,
    times: &[i64],
    src: &mut dyn EntrySource,
    opts: &EvalOptions,
) -> Result<Stepped, EvalError> {
    Ok(match expr {
        MetricExpr::Literal(v) => Stepped::Scalar(vec![*v; times.len()]),
        MetricExpr::VectorLiteral(v) => Stepped::Vector(
            times
                .iter()
                .map(|_| {
                    vec![Elem {
                        labels: Labels::new(),
                        value: *v,
                    }]
                })
                .collect(),
        ),
        MetricExpr::Range(agg) => Stepped::Vector(range::eval(agg, times, src, opts)?),
        MetricExpr::Vector(agg) => {
            let inner = eval_node(&agg.inner, times, src, opts)?;
            Stepped::Vector(vector::aggregate(agg, inner))
        }
        MetricExpr::Binary(b) => {
            let lhs = eval_node(&b.lhs, times, src, opts)?;
            let rhs = eval_node(&b.rhs, times, src, opts)?;
            binop::eval(b, lhs, rhs)?
        }
        MetricExpr::LabelReplace(l) => {
            let inner = eval_node(&l.inner, times, src, opts)?;
            Stepped::Vector(vector::label_replace(l, inner)?)
        }
    })
}

/// Collects per-step vectors into series sorted by labels.
fn to_matrix(stepped: Stepped, times: &[i64]) -> Matrix {
    match stepped {
        Stepped::Scalar(values) => vec![Series {
            labels: Labels::new(),
            points: times.iter().copied().zip(values).collect(),
        }],
        Stepped::Vector(steps) => {
            let mut series: std::collections::BTreeMap<Labels, Vec<(i64, f64)>> = std::collections::BTreeMap::new();
            for (t, elems) in times.iter().zip(steps) {
                for e in elems {
                    series.entry(e.labels).or_default().push((*t, e.value));
                }
            }
            series
                .into_iter()
                .map(|(labels, points)| Series { labels, points })
                .collect()
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
