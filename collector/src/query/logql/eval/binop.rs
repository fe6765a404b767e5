//! Binary operators between scalars and vectors: arithmetic, comparisons
//! (filtering, or 0/1 with `bool`) and the set operators `and`, `or`,
//! `unless`, with Prometheus' vector matching (`on`, `ignoring`,
//! `group_left`, `group_right`).
//!
//! Why a module of its own: vector matching has many small rules (which
//! labels the result keeps, which value a comparison keeps, when duplicates
//! are an error), all from Prometheus' engine, which Loki reuses.

use std::collections::{HashMap, HashSet};

use crate::query::logql::ast::{BinaryExpr, BinaryOp, Cardinality, VectorMatching};
use crate::query::logql::error::EvalError;
use crate::query::logql::eval::{Elem, LabelMemo, Stepped};
use crate::query::logql::labels::Labels;

/// `(value, keep)`: for comparisons the value is the left operand and
/// `keep` the outcome; arithmetic always keeps.
fn apply(op: BinaryOp, a: f64, b: f64) -> (f64, bool) {
    match op {
        BinaryOp::Add => (a + b, true),
        BinaryOp::Sub => (a - b, true),
        BinaryOp::Mul => (a * b, true),
        BinaryOp::Div => (a / b, true),
        // Rust's `%` on floats is C's fmod, like Go's math.Mod.
        BinaryOp::Mod => (a % b, true),
        BinaryOp::Pow => (a.powf(b), true),
        BinaryOp::Eq => (a, a == b),
        BinaryOp::Neq => (a, a != b),
        BinaryOp::Gt => (a, a > b),
        BinaryOp::Gte => (a, a >= b),
        BinaryOp::Lt => (a, a < b),
        BinaryOp::Lte => (a, a <= b),
        // Set operators never reach here: they are handled on whole vectors.
        BinaryOp::Or | BinaryOp::And | BinaryOp::Unless => (f64::NAN, false),
    }
}

/// The value to emit, if any, after `apply`.
fn outcome(b: &BinaryExpr, value: f64, keep: bool, vector_value: f64) -> Option<f64> {
    if !b.op.is_comparison() {
        return Some(value);
    }
    if b.return_bool {
        return Some(if keep { 1.0 } else { 0.0 });
    }
    // A filtering comparison keeps the vector's own sample value.
    keep.then_some(vector_value)
}

pub(super) fn eval(b: &BinaryExpr, lhs: Stepped, rhs: Stepped) -> Result<Stepped, EvalError> {
    Ok(match (lhs, rhs) {
        // Between scalars a comparison is 1 or 0, `bool` or not: Loki folds
        // `1 > 1` to the literal 0 where Prometheus refuses it.
        (Stepped::Scalar(l), Stepped::Scalar(r)) => Stepped::Scalar(
            l.into_iter()
                .zip(r)
                .map(|(x, y)| match apply(b.op, x, y) {
                    (_, keep) if b.op.is_comparison() => f64::from(u8::from(keep)),
                    (v, _) => v,
                })
                .collect(),
        ),
        (Stepped::Vector(l), Stepped::Scalar(r)) => Stepped::Vector(
            l.into_iter()
                .zip(r)
                .map(|(elems, s)| with_scalar(b, elems, s, false))
                .collect(),
        ),
        (Stepped::Scalar(l), Stepped::Vector(r)) => Stepped::Vector(
            r.into_iter()
                .zip(l)
                .map(|(elems, s)| with_scalar(b, elems, s, true))
                .collect(),
        ),
        (Stepped::Vector(l), Stepped::Vector(r)) => {
            let mut signatures = LabelMemo::default();
            Stepped::Vector(
                l.into_iter()
                    .zip(r)
                    .map(|(le, re)| vector_vector(b, le, re, &mut signatures))
                    .collect::<Result<_, _>>()?,
            )
        }
    })
}

fn with_scalar(b: &BinaryExpr, elems: Vec<Elem>, s: f64, scalar_left: bool) -> Vec<Elem> {
    elems
        .into_iter()
        .filter_map(|e| {
            let (x, y) = if scalar_left { (s, e.value) } else { (e.value, s) };
            let (v, keep) = apply(b.op, x, y);
            outcome(b, v, keep, e.value).map(|value| Elem {
                labels: e.labels,
                value,
            })
        })
        .collect()
}

/// The labels two series are matched on, derived once per series (`memo`).
fn signature(labels: &Labels, m: &VectorMatching, memo: &mut LabelMemo) -> Labels {
    memo.get(labels, |labels| {
        if m.on {
            labels.keep_only(&m.labels)
        } else {
            labels.without(&m.labels)
        }
    })
}

fn vector_vector(b: &BinaryExpr, lhs: Vec<Elem>, rhs: Vec<Elem>, memo: &mut LabelMemo) -> Result<Vec<Elem>, EvalError> {
    let m = &b.matching;
    match b.op {
        BinaryOp::And | BinaryOp::Unless => {
            let right: HashSet<Labels> = rhs.iter().map(|e| signature(&e.labels, m, memo)).collect();
            let want = b.op == BinaryOp::And;
            Ok(lhs
                .into_iter()
                .filter(|e| right.contains(&signature(&e.labels, m, memo)) == want)
                .collect())
        }
        BinaryOp::Or => {
            let left: HashSet<Labels> = lhs.iter().map(|e| signature(&e.labels, m, memo)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|e| !left.contains(&signature(&e.labels, m, memo))),
            );
            Ok(out)
        }
        _ => match m.card {
            Cardinality::OneToOne => one_to_one(b, lhs, rhs, memo),
            Cardinality::ManyToOne => many_to_one(b, lhs, rhs, false, memo),
            Cardinality::OneToMany => many_to_one(b, rhs, lhs, true, memo),
        },
    }
}

/// Indexes the "one" side by signature; a duplicate is an error.
fn index_one_side<'e>(
    elems: &'e [Elem],
    m: &VectorMatching,
    side: &str,
    memo: &mut LabelMemo,
) -> Result<HashMap<Labels, &'e Elem>, EvalError> {
    let mut index: HashMap<Labels, &Elem> = HashMap::new();
    for e in elems {
        let sig = signature(&e.labels, m, memo);
        if let Some(prev) = index.insert(sig.clone(), e) {
            return Err(EvalError::Matching(format!(
                "found duplicate series for the match group {sig} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                prev.labels, e.labels
            )));
        }
    }
    Ok(index)
}

fn one_to_one(b: &BinaryExpr, lhs: Vec<Elem>, rhs: Vec<Elem>, memo: &mut LabelMemo) -> Result<Vec<Elem>, EvalError> {
    let m = &b.matching;
    let right = index_one_side(&rhs, m, "right", memo)?;
    let mut matched: HashSet<Labels> = HashSet::new();
    let mut out = Vec::new();
    for e in lhs {
        let sig = signature(&e.labels, m, memo);
        let Some(r) = right.get(&sig) else { continue };
        if !matched.insert(sig.clone()) {
            return Err(EvalError::Matching(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
            ));
        }
        let (v, keep) = apply(b.op, e.value, r.value);
        if let Some(value) = outcome(b, v, keep, e.value) {
            out.push(Elem { labels: sig, value });
        }
    }
    Ok(out)
}

/// `group_left` (`swapped` false: `many` is the left side) or
/// `group_right` (`swapped` true: `many` is the right side). The result
/// keeps the "many" side's labels plus the `include` labels of the "one" side.
fn many_to_one(
    b: &BinaryExpr,
    many: Vec<Elem>,
    one: Vec<Elem>,
    swapped: bool,
    memo: &mut LabelMemo,
) -> Result<Vec<Elem>, EvalError> {
    let m = &b.matching;
    let one_side = if swapped { "left" } else { "right" };
    let index = index_one_side(&one, m, one_side, memo)?;
    let mut seen: HashSet<Labels> = HashSet::new();
    let mut out = Vec::new();
    for e in many {
        let Some(o) = index.get(&signature(&e.labels, m, memo)) else {
            continue;
        };
        let (x, y) = if swapped {
            (o.value, e.value)
        } else {
            (e.value, o.value)
        };
        let (v, keep) = apply(b.op, x, y);
        let Some(value) = outcome(b, v, keep, x) else {
            continue;
        };
        let mut labels = e.labels;
        for name in &m.include {
            match o.labels.get(name) {
                Some(val) => labels.insert(name.as_str(), val),
                None => {
                    labels.remove(name);
                }
            }
        }
        if !seen.insert(labels.clone()) {
            return Err(EvalError::Matching(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Elem { labels, value });
    }
    Ok(out)
}
