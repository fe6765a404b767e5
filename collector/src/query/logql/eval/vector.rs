//! Vector aggregations (`sum`, `avg`, `count`, `min`, `max`, `stddev`,
//! `stdvar`, `topk`, `bottomk`, `sort`, `sort_desc`, with `by`/`without`)
//! and `label_replace`, applied step by step.
//!
//! Why a module of its own: these operators only regroup samples that
//! already exist; they never touch the source, and their Prometheus rules
//! (grouping keys, NaN handling, topk keeping full labels) live here.

use std::collections::{BTreeMap, HashMap};

use crate::query::logql::ast::{Grouping, LabelReplace, VectorAggregation, VectorOp};
use crate::query::logql::error::EvalError;
use crate::query::logql::eval::{Elem, LabelMemo, Stepped};
use crate::query::logql::labels::Labels;

/// The grouping key of a series: `by` keeps, `without` removes, no
/// grouping collapses everything into one group.
pub(crate) fn group_key(labels: &Labels, grouping: Option<&Grouping>) -> Labels {
    match grouping {
        None => Labels::new(),
        Some(g) if g.without => labels.without(&g.labels),
        Some(g) => labels.keep_only(&g.labels),
    }
}

fn steps_of(inner: Stepped) -> Vec<Vec<Elem>> {
    match inner {
        Stepped::Vector(v) => v,
        // The parser rejects scalars here; an empty result is the safe answer.
        Stepped::Scalar(s) => s.iter().map(|_| Vec::new()).collect(),
    }
}

/// Applies `agg` at every step.
pub(super) fn aggregate(agg: &VectorAggregation, inner: Stepped) -> Vec<Vec<Elem>> {
    let mut keys = LabelMemo::default();
    steps_of(inner)
        .into_iter()
        .map(|elems| aggregate_step(agg, elems, &mut keys))
        .collect()
}

/// Running state of one group.
struct Group {
    count: f64,
    sum: f64,
    min: f64,
    max: f64,
    mean: f64,
    m2: f64,
}

fn aggregate_step(agg: &VectorAggregation, mut elems: Vec<Elem>, keys: &mut LabelMemo) -> Vec<Elem> {
    let grouping = agg.grouping.as_ref();
    match agg.op {
        VectorOp::Sort => {
            elems.sort_by(|a, b| nan_last(a.value, b.value, false));
            elems
        }
        VectorOp::SortDesc => {
            elems.sort_by(|a, b| nan_last(a.value, b.value, true));
            elems
        }
        VectorOp::Topk | VectorOp::Bottomk => top_k(agg, elems, keys),
        _ => {
            let mut groups: BTreeMap<Labels, Group> = BTreeMap::new();
            for e in &elems {
                let v = e.value;
                let key = keys.get(&e.labels, |l| group_key(l, grouping));
                let g = groups.entry(key).or_insert(Group {
                    count: 0.0,
                    sum: 0.0,
                    min: v,
                    max: v,
                    mean: 0.0,
                    m2: 0.0,
                });
                g.count += 1.0;
                g.sum += v;
                // As in Prometheus, a NaN is replaced by any real value.
                if v < g.min || g.min.is_nan() {
                    g.min = v;
                }
                if v > g.max || g.max.is_nan() {
                    g.max = v;
                }
                let delta = v - g.mean;
                g.mean += delta / g.count;
                g.m2 += delta * (v - g.mean);
            }
            groups
                .into_iter()
                .map(|(labels, g)| Elem {
                    labels,
                    value: match agg.op {
                        VectorOp::Sum => g.sum,
                        VectorOp::Avg => g.mean,
                        VectorOp::Count => g.count,
                        VectorOp::Min => g.min,
                        VectorOp::Max => g.max,
                        VectorOp::Stdvar => g.m2 / g.count,
                        _ => (g.m2 / g.count).sqrt(),
                    },
                })
                .collect()
        }
    }
}

/// `topk`/`bottomk`: the `k` largest/smallest of each group, full labels
/// kept, groups in order of first appearance, NaN never preferred.
fn top_k(agg: &VectorAggregation, elems: Vec<Elem>, keys: &mut LabelMemo) -> Vec<Elem> {
    let grouping = agg.grouping.as_ref();
    let k = agg.param.unwrap_or(1.0).max(0.0) as usize;
    let desc = agg.op == VectorOp::Topk;
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<Elem>> = HashMap::new();
    for e in elems {
        let key = keys.get(&e.labels, |l| group_key(l, grouping));
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(e);
    }
    let mut out = Vec::new();
    for key in order {
        let Some(mut members) = groups.remove(&key) else {
            continue;
        };
        members.sort_by(|a, b| nan_last(a.value, b.value, desc).then_with(|| a.labels.cmp(&b.labels)));
        members.truncate(k);
        out.extend(members);
    }
    out
}

/// Orders values ascending (or descending), NaN always last.
fn nan_last(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if desc => b.total_cmp(&a),
        _ => a.total_cmp(&b),
    }
}

/// `label_replace` at every step.
///
/// # Errors
/// Two series end up with the same labels.
pub(super) fn label_replace(l: &LabelReplace, inner: Stepped) -> Result<Vec<Vec<Elem>>, EvalError> {
    let mut out = Vec::new();
    let mut replaced = LabelMemo::default();
    for elems in steps_of(inner) {
        let mut seen = std::collections::HashSet::new();
        let mut step = Vec::with_capacity(elems.len());
        for mut e in elems {
            e.labels = replaced.get(&e.labels, |labels| {
                let mut labels = labels.clone();
                let src = labels.get(&l.src).unwrap_or("").to_string();
                // An empty destination names no label: the series stays as it
                // is (Loki would set a label with an empty name, which
                // Prometheus' data model has no room for).
                if !l.dst.is_empty()
                    && let Some(caps) = l.regex.captures(&src)
                {
                    let mut value = String::new();
                    caps.expand(&l.replacement, &mut value);
                    if value.is_empty() {
                        labels.remove(&l.dst);
                    } else {
                        labels.insert(l.dst.as_str(), value);
                    }
                }
                labels
            });
            if !seen.insert(e.labels.clone()) {
                return Err(EvalError::Matching(format!(
                    "vector cannot contain metrics with the same labelset {}",
                    e.labels
                )));
            }
            step.push(e);
        }
        out.push(step);
    }
    Ok(out)
}
