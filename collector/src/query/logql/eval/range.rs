//! Range aggregations (`count_over_time`, `rate`, `bytes_over_time`,
//! `sum_over_time | unwrap`, ...): from streamed entries to one vector per
//! step, without keeping entries.
//!
//! Why a module of its own: this is where memory is won or lost. The step
//! windows `(t - range, t]` are cut at every window start and end into at
//! most `2 × steps` elementary intervals; each entry is folded into the
//! accumulator ([`Acc`]) of its series and interval as it streams past, and
//! each window is then the merge of its intervals. Memory is therefore
//! bounded by `series × intervals`, whatever the number of entries; only
//! `quantile_over_time` must keep every value (a quantile cannot be merged).
//! Entries in no window (gaps when the step exceeds the range) are skipped
//! before the pipeline runs.

mod partials;

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

pub use partials::{Partials, PartialsWire};

use crate::query::logql::ast::{Conversion, Grouping, RangeAggregation, RangeOp, Unwrap};
use crate::query::logql::error::EvalError;
use crate::query::logql::eval::{Elem, EntrySource, EvalOptions};
use crate::query::logql::labels::{ERROR_DETAILS_LABEL, ERROR_LABEL, Labels};
use crate::query::logql::pipeline::{convert_bytes, convert_duration_secs, convert_float};
use crate::query::logql::selector::MatchOp;
use crate::query::logql::units::ns_to_secs;

/// The error Loki records when `unwrap` cannot convert a label.
const SAMPLE_EXTRACTION_ERR: &str = "SampleExtractionErr";

/// Everything any range function needs from a set of samples; mergeable.
#[derive(Debug, Clone)]
struct Acc {
    count: u64,
    bytes: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// `(timestamp, arrival order, value)` of the earliest and latest sample.
    first: (i64, u64, f64),
    last: (i64, u64, f64),
    /// Welford mean and sum of squared deviations, for stddev/stdvar.
    mean: f64,
    m2: f64,
    /// Every value; only filled for `quantile_over_time`.
    values: Vec<f64>,
}

impl Acc {
    fn new() -> Self {
        Acc {
            count: 0,
            bytes: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            first: (i64::MAX, u64::MAX, f64::NAN),
            last: (i64::MIN, 0, f64::NAN),
            mean: 0.0,
            m2: 0.0,
            values: Vec::new(),
        }
    }

    fn add(&mut self, ts: i64, seq: u64, v: f64, bytes: u64, keep_values: bool) {
        self.merge(&Acc {
            count: 1,
            bytes,
            sum: v,
            min: v,
            max: v,
            first: (ts, seq, v),
            last: (ts, seq, v),
            mean: v,
            m2: 0.0,
            values: Vec::new(),
        });
        if keep_values {
            self.values.push(v);
        }
    }

    /// Chan et al.'s parallel merge for mean/m2; plain folds for the rest.
    fn merge(&mut self, o: &Acc) {
        if o.count == 0 {
            return;
        }
        let n = (self.count + o.count) as f64;
        let delta = o.mean - self.mean;
        self.mean += delta * o.count as f64 / n;
        self.m2 += o.m2 + delta * delta * self.count as f64 * o.count as f64 / n;
        self.count += o.count;
        self.bytes = self.bytes.saturating_add(o.bytes);
        self.sum += o.sum;
        // NaN samples must propagate to min/max as in Prometheus.
        if o.min < self.min || o.min.is_nan() {
            self.min = o.min;
        }
        if o.max > self.max || o.max.is_nan() {
            self.max = o.max;
        }
        if (o.first.0, o.first.1) < (self.first.0, self.first.1) {
            self.first = o.first;
        }
        if (o.last.0, o.last.1) > (self.last.0, self.last.1) {
            self.last = o.last;
        }
        self.values.extend_from_slice(&o.values);
    }

    fn value(&self, op: RangeOp, unwrapped: bool, range_secs: f64, param: f64) -> f64 {
        let n = self.count as f64;
        match op {
            RangeOp::Count | RangeOp::Absent => n,
            RangeOp::Rate if unwrapped => self.sum / range_secs,
            RangeOp::Rate => n / range_secs,
            RangeOp::Bytes => self.bytes as f64,
            RangeOp::BytesRate => self.bytes as f64 / range_secs,
            RangeOp::Sum => self.sum,
            RangeOp::Avg => self.sum / n,
            RangeOp::Min => self.min,
            RangeOp::Max => self.max,
            RangeOp::Stdvar => self.m2 / n,
            RangeOp::Stddev => (self.m2 / n).sqrt(),
            RangeOp::Quantile => quantile(param, &self.values),
            RangeOp::First => self.first.2,
            RangeOp::Last => self.last.2,
        }
    }
}

/// Prometheus' quantile: linear interpolation between closest ranks.
pub(crate) fn quantile(q: f64, values: &[f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = q * (sorted.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = (lower + 1).min(sorted.len() - 1);
    let weight = rank - rank.floor();
    let at = |i: usize| sorted.get(i).copied().unwrap_or(f64::NAN);
    at(lower) * (1.0 - weight) + at(upper) * weight
}

/// The elementary intervals of a set of step windows.
struct Intervals {
    /// Sorted distinct window boundaries; interval `k` is `(bounds[k], bounds[k+1]]`.
    bounds: Vec<i64>,
    /// Per window, the interval indices `lo..hi` it covers.
    spans: Vec<(usize, usize)>,
    /// Whether some window covers interval `k`.
    covered: Vec<bool>,
}

impl Intervals {
    fn new(times: &[i64], range_ns: i64, offset_ns: i64) -> Self {
        let windows: Vec<(i64, i64)> = times
            .iter()
            .map(|t| {
                let end = t.saturating_sub(offset_ns);
                (end.saturating_sub(range_ns), end)
            })
            .collect();
        let mut bounds: Vec<i64> = windows.iter().flat_map(|&(s, e)| [s, e]).collect();
        bounds.sort_unstable();
        bounds.dedup();
        let pos = |b: i64| bounds.partition_point(|&x| x < b);
        let spans: Vec<(usize, usize)> = windows.iter().map(|&(s, e)| (pos(s), pos(e))).collect();
        // Difference array: O(steps + intervals) even when windows overlap a lot.
        let mut diff = vec![0i64; bounds.len() + 1];
        for &(lo, hi) in &spans {
            if let Some(d) = diff.get_mut(lo) {
                *d += 1;
            }
            if let Some(d) = diff.get_mut(hi) {
                *d -= 1;
            }
        }
        let mut running = 0;
        let covered = (0..bounds.len().saturating_sub(1))
            .map(|k| {
                running += diff.get(k).copied().unwrap_or(0);
                running > 0
            })
            .collect();
        Intervals { bounds, spans, covered }
    }

    /// The interval containing `ts`, if some window covers it.
    fn locate(&self, ts: i64) -> Option<usize> {
        let k = self.bounds.partition_point(|&b| b < ts).checked_sub(1)?;
        self.covered.get(k).copied().unwrap_or(false).then_some(k)
    }

    /// `[start, end)` of the scan that reaches every window.
    fn scan_range(&self) -> Option<(i64, i64)> {
        let first = *self.bounds.first()?;
        let last = *self.bounds.last()?;
        Some((first.saturating_add(1), last.saturating_add(1)))
    }
}

/// Each series' non-empty intervals, series sorted by labels and
/// intervals by index.
type Buckets = Vec<(Labels, Vec<(usize, Acc)>)>;

/// Evaluates a range aggregation at each of `times`.
pub(super) fn eval(
    agg: &RangeAggregation,
    times: &[i64],
    src: &mut dyn EntrySource,
    opts: &EvalOptions,
) -> Result<Vec<Vec<Elem>>, EvalError> {
    let iv = Intervals::new(times, agg.range.range_ns, agg.range.offset_ns);
    // A source that computes the state where the data is (a cluster's
    // other nodes) hands it over; otherwise the entries are folded here.
    let buckets = match src.range_partials(agg, times, opts) {
        Some(partials) => partials?.into_buckets(),
        None => collect(agg, &iv, src, opts)?.0,
    };
    Ok(if agg.op == RangeOp::Absent {
        absent(agg, &iv, &buckets)
    } else {
        emit(agg, &iv, &buckets, opts.max_points)?
    })
}

/// A range aggregation's state over `src` alone (see [`Partials`]).
///
/// # Errors
/// As the evaluation would fail over this data.
pub fn partials(
    agg: &RangeAggregation,
    times: &[i64],
    src: &mut dyn EntrySource,
    opts: &EvalOptions,
) -> Result<Partials, EvalError> {
    let iv = Intervals::new(times, agg.range.range_ns, agg.range.offset_ns);
    let (buckets, samples) = collect(agg, &iv, src, opts)?;
    Ok(Partials::new(buckets, samples))
}

/// The scan: runs the pipeline on every entry that falls in some window
/// and folds it into its series' interval accumulator. Also returns how
/// many samples were folded (their arrival order runs up to it).
fn collect(
    agg: &RangeAggregation,
    iv: &Intervals,
    src: &mut dyn EntrySource,
    opts: &EvalOptions,
) -> Result<(Buckets, u64), EvalError> {
    let Some((scan_start, scan_end)) = iv.scan_range() else {
        return Ok((Vec::new(), 0));
    };
    let log = &agg.range.log;
    let unwrap = agg.range.unwrap.as_ref();
    let keep_values = agg.op == RangeOp::Quantile;
    // Each series' index in `accumulators`, which holds its intervals.
    let mut series: HashMap<Labels, usize> = HashMap::new();
    let mut accumulators: Vec<(Labels, BTreeMap<usize, Acc>)> = Vec::new();
    let mut last_series: Option<(Labels, usize)> = None;
    let mut failure: Option<EvalError> = None;
    let mut seq: u64 = 0;
    let mut last_selected: Option<(Labels, bool)> = None;
    src.scan(log, scan_start, scan_end, &mut |entry| {
        let ts = entry.timestamp_ns;
        let Some(interval) = iv.locate(ts) else {
            return ControlFlow::Continue(());
        };
        // Sources hand out one label set per stream: match it once.
        let selected = match &last_selected {
            Some((labels, selected)) if labels.is_same_set(&entry.labels) => *selected,
            _ => {
                let selected = log.selector.matches(&entry.labels);
                last_selected = Some((entry.labels.clone(), selected));
                selected
            }
        };
        if !selected {
            return ControlFlow::Continue(());
        }
        let mut labels = entry.labels;
        if let Some(metadata) = &entry.metadata {
            labels.add_metadata(metadata);
        }
        let Some(line) = log
            .pipeline
            .process_entry(entry.line, &mut labels, entry.leading_filters_passed)
        else {
            return ControlFlow::Continue(());
        };
        let bytes = line.len() as u64;
        let value = match unwrap {
            None => 1.0,
            Some(u) => match unwrap_value(u, &mut labels) {
                Some(v) => v,
                None => return ControlFlow::Continue(()),
            },
        };
        // Lines of one stream whose labels no stage changed share a series:
        // it is looked up once per stream, not hashed per line.
        let index = match &last_series {
            Some((from, index)) if from.is_same_set(&labels) => *index,
            _ => {
                let from = labels.clone();
                let key = series_labels(labels, agg.grouping.as_ref(), unwrap.map(|u| u.label.as_str()));
                if let Some(kind) = key.get(ERROR_LABEL) {
                    failure = Some(EvalError::Pipeline {
                        error_type: kind.to_string(),
                        series: key.to_string(),
                    });
                    return ControlFlow::Break(());
                }
                let index = match series.get(&key) {
                    Some(&index) => index,
                    None if series.len() >= opts.max_series => {
                        failure = Some(EvalError::TooManySeries { limit: opts.max_series });
                        return ControlFlow::Break(());
                    }
                    None => {
                        accumulators.push((key.clone(), BTreeMap::new()));
                        series.insert(key, accumulators.len() - 1);
                        accumulators.len() - 1
                    }
                };
                last_series = Some((from, index));
                index
            }
        };
        if let Some((_, intervals)) = accumulators.get_mut(index) {
            intervals
                .entry(interval)
                .or_insert_with(Acc::new)
                .add(ts, seq, value, bytes, keep_values);
        }
        seq += 1;
        ControlFlow::Continue(())
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let mut sorted: Buckets = accumulators
        .into_iter()
        .map(|(l, m)| (l, m.into_iter().collect()))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((sorted, seq))
}

/// The per-step vectors: each window's value for every series with samples
/// in it; at most `max_points` of them in all (each costs memory here and
/// in every node above).
///
/// # Errors
/// [`EvalError::TooManyPoints`], found before the points past it are made.
fn emit(
    agg: &RangeAggregation,
    iv: &Intervals,
    buckets: &Buckets,
    max_points: usize,
) -> Result<Vec<Vec<Elem>>, EvalError> {
    let mut points: usize = 0;
    let range_secs = ns_to_secs(agg.range.range_ns);
    let param = agg.param.unwrap_or(0.0);
    let unwrapped = agg.range.unwrap.is_some();
    // Counting functions use prefix sums, so a long range over a small step
    // costs one subtraction per step instead of a merge per interval.
    let counting = matches!(agg.op, RangeOp::Count | RangeOp::Bytes | RangeOp::BytesRate)
        || (agg.op == RangeOp::Rate && !unwrapped);
    let mut out: Vec<Vec<Elem>> = vec![Vec::new(); iv.spans.len()];
    for (labels, accs) in buckets {
        let prefix: Vec<(u64, u64)> = if counting {
            std::iter::once((0, 0))
                .chain(accs.iter().scan((0u64, 0u64), |run, (_, a)| {
                    *run = (run.0 + a.count, run.1.saturating_add(a.bytes));
                    Some(*run)
                }))
                .collect()
        } else {
            Vec::new()
        };
        for (step, &(lo, hi)) in iv.spans.iter().enumerate() {
            let a = accs.partition_point(|(k, _)| *k < lo);
            let b = accs.partition_point(|(k, _)| *k < hi);
            if a >= b {
                continue;
            }
            let value = if counting {
                let (c0, b0) = prefix.get(a).copied().unwrap_or_default();
                let (c1, b1) = prefix.get(b).copied().unwrap_or_default();
                let count = c1.saturating_sub(c0) as f64;
                let bytes = b1.saturating_sub(b0) as f64;
                match agg.op {
                    RangeOp::Count => count,
                    RangeOp::Rate => count / range_secs,
                    RangeOp::Bytes => bytes,
                    _ => bytes / range_secs,
                }
            } else {
                let Some(acc) = window(accs, lo, hi) else {
                    continue;
                };
                acc.value(agg.op, unwrapped, range_secs, param)
            };
            points += 1;
            if points > max_points {
                return Err(EvalError::TooManyPoints { limit: max_points });
            }
            if let Some(v) = out.get_mut(step) {
                v.push(Elem {
                    labels: labels.clone(),
                    value,
                });
            }
        }
    }
    Ok(out)
}

/// The merged accumulator of intervals `lo..hi`, if any holds samples.
fn window(accs: &[(usize, Acc)], lo: usize, hi: usize) -> Option<Acc> {
    let a = accs.partition_point(|(k, _)| *k < lo);
    let b = accs.partition_point(|(k, _)| *k < hi);
    let slice = accs.get(a..b).filter(|s| !s.is_empty())?;
    let mut acc = Acc::new();
    for (_, x) in slice {
        acc.merge(x);
    }
    Some(acc)
}

/// `absent_over_time`: 1 at each step where no series has a sample, with
/// the labels of the selector's equality matchers (as Prometheus' `absent`).
fn absent(agg: &RangeAggregation, iv: &Intervals, series: &Buckets) -> Vec<Vec<Elem>> {
    let matchers = &agg.range.log.selector.matchers;
    let labels: Labels = matchers
        .iter()
        .filter(|m| m.op == MatchOp::Eq)
        .filter(|m| matchers.iter().filter(|o| o.name == m.name).count() == 1)
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    iv.spans
        .iter()
        .map(|&(lo, hi)| {
            let present = series.iter().any(|(_, accs)| window(accs, lo, hi).is_some());
            if present {
                Vec::new()
            } else {
                vec![Elem {
                    labels: labels.clone(),
                    value: 1.0,
                }]
            }
        })
        .collect()
}

/// The sample value from the unwrapped label, following Loki: an empty or
/// missing label skips the entry; a bad one marks `__error__`; the post
/// filters then decide.
fn unwrap_value(u: &Unwrap, labels: &mut Labels) -> Option<f64> {
    let text = labels.get(&u.label).unwrap_or("");
    if text.is_empty() {
        return None;
    }
    let converted = match u.conversion {
        Conversion::Float => convert_float(text),
        Conversion::Duration => convert_duration_secs(text),
        Conversion::Bytes => convert_bytes(text),
    };
    let value = match converted {
        Some(v) => v,
        None => {
            let kind = match u.conversion {
                Conversion::Float => "a number",
                Conversion::Duration => "a duration",
                Conversion::Bytes => "a byte size",
            };
            let details = format!("cannot convert {text:?} to {kind}");
            labels.set_error(SAMPLE_EXTRACTION_ERR, &details);
            0.0
        }
    };
    u.post_filters.iter().all(|f| f.process(labels)).then_some(value)
}

/// The labels of the output series. A series marked with an error keeps all
/// its labels, so the error message shows where it came from.
fn series_labels(labels: Labels, grouping: Option<&Grouping>, unwrapped: Option<&str>) -> Labels {
    if labels.contains(ERROR_LABEL) {
        return labels;
    }
    let mut drop: Vec<String> = unwrapped.map(str::to_string).into_iter().collect();
    drop.push(ERROR_DETAILS_LABEL.to_string());
    match grouping {
        Some(g) if !g.without => labels.keep_only(&g.labels),
        Some(g) => {
            drop.extend(g.labels.iter().cloned());
            labels.without(&drop)
        }
        None => labels.without(&drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_cut_windows() {
        // steps 10, 20, 30 with range 15: windows (-5,10], (5,20], (15,30]
        let iv = Intervals::new(&[10, 20, 30], 15, 0);
        assert_eq!(iv.bounds, vec![-5, 5, 10, 15, 20, 30]);
        assert_eq!(iv.spans, vec![(0, 2), (1, 4), (3, 5)]);
        assert_eq!(iv.locate(10), Some(1));
        assert_eq!(iv.locate(11), Some(2));
        assert_eq!(iv.locate(-5), None);
        assert_eq!(iv.locate(31), None);
        assert_eq!(iv.scan_range(), Some((-4, 31)));
    }

    #[test]
    fn gaps_between_windows_are_not_covered() {
        // step 100, range 10: windows (0,10], (100,110]
        let iv = Intervals::new(&[10, 110], 10, 0);
        assert_eq!(iv.locate(5), Some(0));
        assert_eq!(iv.locate(50), None);
        assert!(iv.locate(105).is_some());
    }

    #[test]
    fn offset_shifts_windows() {
        let iv = Intervals::new(&[100], 10, 50);
        assert_eq!(iv.bounds, vec![40, 50]);
    }

    #[test]
    fn acc_merge_matches_direct() {
        let vals = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0];
        let mut whole = Acc::new();
        let (mut a, mut b) = (Acc::new(), Acc::new());
        for (i, v) in vals.iter().enumerate() {
            whole.add(i as i64, i as u64, *v, 1, false);
            if i < 3 {
                a.add(i as i64, i as u64, *v, 1, false)
            } else {
                b.add(i as i64, i as u64, *v, 1, false)
            }
        }
        b.merge(&a);
        assert_eq!(whole.count, b.count);
        assert!((whole.m2 - b.m2).abs() < 1e-9);
        assert_eq!((b.min, b.max, b.sum), (1.0, 9.0, 25.0));
        assert_eq!((b.first.2, b.last.2), (3.0, 2.0));
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(0.5, &[1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(quantile(0.0, &[5.0, 1.0]), 1.0);
        assert_eq!(quantile(1.0, &[5.0, 1.0]), 5.0);
        assert_eq!(quantile(0.99, &[7.0]), 7.0);
        assert!(quantile(0.5, &[]).is_nan());
        assert_eq!(quantile(-1.0, &[1.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(2.0, &[1.0]), f64::INFINITY);
    }
}
