//! A range aggregation's state over part of the data, mergeable with the
//! state over the rest: how a cluster answers a metric query with samples,
//! not lines, crossing the network (as Loki's sharding does). Each node
//! folds its partitions' entries into per-series, per-interval
//! accumulators ([`Acc`]); the asking node merges them and computes the
//! windows' values as if it had folded every entry itself.
//!
//! Arrival order (which sample is `first`/`last` when timestamps tie)
//! follows merge order: a part merged later counts as scanned later, so
//! parts merged in partition order give a single node's answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Acc, Buckets};
use crate::query::logql::error::EvalError;
use crate::query::logql::labels::Labels;

/// The state (see the module's documentation).
#[derive(Debug, Default)]
pub struct Partials {
    series: BTreeMap<Labels, BTreeMap<usize, Acc>>,
    /// Samples folded so far: the next arrival number.
    samples: u64,
}

impl Partials {
    pub(super) fn new(buckets: Buckets, samples: u64) -> Self {
        Partials {
            series: buckets
                .into_iter()
                .map(|(l, accs)| (l, accs.into_iter().collect()))
                .collect(),
            samples,
        }
    }

    pub(super) fn into_buckets(self) -> Buckets {
        self.series
            .into_iter()
            .map(|(l, accs)| (l, accs.into_iter().collect()))
            .collect()
    }

    /// Distinct series.
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// Adds `later`, the state over data scanned after this one's.
    ///
    /// # Errors
    /// [`EvalError::TooManySeries`] once the two hold more than
    /// `max_series` series together.
    pub fn merge(&mut self, later: Partials, max_series: usize) -> Result<(), EvalError> {
        let shift = self.samples;
        self.samples = self.samples.saturating_add(later.samples);
        for (labels, accs) in later.series {
            if !self.series.contains_key(&labels) && self.series.len() >= max_series {
                return Err(EvalError::TooManySeries { limit: max_series });
            }
            let mine = self.series.entry(labels).or_default();
            for (interval, mut acc) in accs {
                acc.first.1 = acc.first.1.saturating_add(shift);
                acc.last.1 = acc.last.1.saturating_add(shift);
                mine.entry(interval).or_insert_with(Acc::new).merge(&acc);
            }
        }
        Ok(())
    }

    /// The state as sent between nodes.
    pub fn to_wire(&self) -> PartialsWire {
        PartialsWire {
            series: self
                .series
                .iter()
                .map(|(l, accs)| {
                    (
                        l.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
                        accs.iter().map(|(k, a)| (*k, AccWire::from(a))).collect(),
                    )
                })
                .collect(),
            samples: self.samples,
        }
    }

    /// The state another node sent.
    pub fn from_wire(wire: PartialsWire) -> Self {
        Partials {
            series: wire
                .series
                .into_iter()
                .map(|(l, accs)| {
                    let labels: Labels = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    (labels, accs.into_iter().map(|(k, a)| (k, Acc::from(a))).collect())
                })
                .collect(),
            samples: wire.samples,
        }
    }
}

/// [`Partials`] on the wire: floats as their bits, since JSON has no
/// NaN or infinity (an empty accumulator's min is +inf).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartialsWire {
    /// Each series' labels and its non-empty intervals' accumulators.
    pub series: Vec<SeriesWire>,
    /// Samples folded into the state.
    pub samples: u64,
}

/// A series' labels and its `(interval, accumulator)` pairs.
pub type SeriesWire = (Vec<(String, String)>, Vec<(usize, AccWire)>);

/// One accumulator on the wire (see [`Acc`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccWire {
    c: u64,
    b: u64,
    s: u64,
    min: u64,
    max: u64,
    f: (i64, u64, u64),
    l: (i64, u64, u64),
    mean: u64,
    m2: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    v: Vec<u64>,
}

impl From<&Acc> for AccWire {
    fn from(a: &Acc) -> Self {
        AccWire {
            c: a.count,
            b: a.bytes,
            s: a.sum.to_bits(),
            min: a.min.to_bits(),
            max: a.max.to_bits(),
            f: (a.first.0, a.first.1, a.first.2.to_bits()),
            l: (a.last.0, a.last.1, a.last.2.to_bits()),
            mean: a.mean.to_bits(),
            m2: a.m2.to_bits(),
            v: a.values.iter().map(|x| x.to_bits()).collect(),
        }
    }
}

impl From<AccWire> for Acc {
    fn from(w: AccWire) -> Self {
        Acc {
            count: w.c,
            bytes: w.b,
            sum: f64::from_bits(w.s),
            min: f64::from_bits(w.min),
            max: f64::from_bits(w.max),
            first: (w.f.0, w.f.1, f64::from_bits(w.f.2)),
            last: (w.l.0, w.l.1, f64::from_bits(w.l.2)),
            mean: f64::from_bits(w.mean),
            m2: f64::from_bits(w.m2),
            values: w.v.into_iter().map(f64::from_bits).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(samples: &[(i64, f64)], seq0: u64) -> Acc {
        let mut a = Acc::new();
        for (i, &(ts, v)) in samples.iter().enumerate() {
            a.add(ts, seq0 + i as u64, v, 10, true);
        }
        a
    }

    fn labels(job: &str) -> Labels {
        [("job", job)].into_iter().collect()
    }

    #[test]
    fn merged_parts_equal_one_fold_over_everything_through_the_wire() {
        // One fold over all samples, in order.
        let all = [(1, 2.0), (2, f64::NAN), (3, 5.0), (3, -1.0), (4, 7.5)];
        let whole = Partials::new(vec![(labels("a"), vec![(0, acc(&all, 0))])], all.len() as u64);
        // The same split in two parts, each folded alone and sent.
        let first = Partials::new(vec![(labels("a"), vec![(0, acc(&all[..3], 0))])], 3);
        let second = Partials::new(
            vec![
                (labels("a"), vec![(0, acc(&all[3..], 0))]),
                (labels("b"), vec![(1, acc(&[(9, 1.0)], 2))]),
            ],
            3,
        );
        let mut merged = Partials::from_wire(first.to_wire());
        let wire = serde_json::to_string(&second.to_wire()).unwrap();
        merged
            .merge(Partials::from_wire(serde_json::from_str(&wire).unwrap()), 10)
            .unwrap();
        let (w, m) = (&whole.series[&labels("a")][&0], &merged.series[&labels("a")][&0]);
        assert_eq!((w.count, w.bytes), (m.count, m.bytes));
        assert!(w.min.is_nan() && m.min.is_nan() && w.max.is_nan() && m.max.is_nan());
        // The tie at ts 3: the later arrival (-1.0, from the second part) is last.
        assert_eq!(m.first, (1, 0, 2.0));
        assert_eq!(m.last.0, 4);
        assert_eq!(m.last.2.to_bits(), w.last.2.to_bits());
        assert_eq!(m.values.len(), 5);
        assert_eq!(merged.series(), 2);
        assert_eq!(merged.samples, 6);
    }

    #[test]
    fn a_tie_at_the_same_nanosecond_goes_to_the_part_merged_later() {
        let mut merged = Partials::new(vec![(labels("a"), vec![(0, acc(&[(5, 1.0)], 0))])], 1);
        merged
            .merge(
                Partials::new(vec![(labels("a"), vec![(0, acc(&[(5, 2.0)], 0))])], 1),
                10,
            )
            .unwrap();
        let a = &merged.series[&labels("a")][&0];
        assert_eq!((a.first.2, a.last.2), (1.0, 2.0));
    }

    #[test]
    fn merging_past_the_series_limit_fails_as_one_node_would() {
        let mut merged = Partials::new(vec![(labels("a"), vec![(0, acc(&[(1, 1.0)], 0))])], 1);
        let err = merged
            .merge(Partials::new(vec![(labels("b"), vec![(0, acc(&[(1, 1.0)], 0))])], 1), 1)
            .unwrap_err();
        assert!(matches!(err, EvalError::TooManySeries { limit: 1 }), "{err}");
    }
}
