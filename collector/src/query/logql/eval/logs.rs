//! Log queries: the `limit` newest (backward) or oldest (forward) lines in
//! `[start, end)` that pass the pipeline, grouped into streams by their
//! final label set (Loki's `streams` result type).
//!
//! Why a module of its own: a source may return entries in any order, so
//! the only way to honour `limit` with bounded memory is a heap of at most
//! `limit` candidates. An entry that could not beat the worst candidate is
//! rejected before its pipeline runs, so a full heap also saves CPU. The
//! candidates' lines may hold at most `max_result_bytes` at any moment
//! (`limit` long lines would otherwise be held whatever their size).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::ControlFlow;

use crate::query::logql::ast::LogExpr;
use crate::query::logql::error::EvalError;
use crate::query::logql::eval::{Entry, EntrySource, EvalOptions, Scanned};
use crate::query::logql::labels::{EXTRACTED_SUFFIX, Labels};

/// Which end of the time range a log query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first (Loki's default).
    #[default]
    Backward,
}

/// One returned line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// The line after the pipeline (e.g. after `line_format`).
    pub line: Vec<u8>,
    /// Of the stream's final labels, those that came from the entry's
    /// structured metadata (`None`: none did).
    pub structured_metadata: Option<Labels>,
    /// Of the stream's final labels, those the pipeline added (parsers,
    /// `label_format`, `__error__`; `None`: none). The rest are the
    /// stream's own: Loki's categorized labels.
    pub parsed: Option<Labels>,
}

/// Lines sharing one final label set, in the query's direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Stream labels plus parsed labels (including `__error__` if any).
    pub labels: Labels,
    /// The lines, newest first for `Backward`, oldest first for `Forward`.
    pub entries: Vec<StreamEntry>,
}

/// A log query result, streams sorted by labels.
pub type Streams = Vec<Stream>;

/// Preference of an entry: larger is kept first. Ties on the timestamp go
/// to the entry the source delivered first, so results are deterministic.
fn rank(direction: Direction, ts: i64, seq: u64) -> (i128, u64) {
    let t = match direction {
        Direction::Backward => i128::from(ts),
        Direction::Forward => -i128::from(ts),
    };
    (t, u64::MAX - seq)
}

/// A kept candidate; ordered by rank only.
struct Candidate {
    rank: (i128, u64),
    timestamp_ns: i64,
    labels: Labels,
    line: Vec<u8>,
    /// The entry's stream labels and metadata, to tell where each of the
    /// final labels came from.
    stream: Labels,
    metadata: Option<Labels>,
}

/// `(structured metadata, parsed)` of a kept entry's final labels.
fn categorize(labels: &Labels, stream: &Labels, metadata: Option<&Labels>) -> (Option<Labels>, Option<Labels>) {
    if metadata.is_none() && labels.is_same_set(stream) {
        return (None, None);
    }
    let metadata_names: Vec<String> = metadata
        .into_iter()
        .flat_map(Labels::iter)
        .map(|(name, _)| {
            if stream.contains(name) {
                format!("{name}{EXTRACTED_SUFFIX}")
            } else {
                name.to_string()
            }
        })
        .collect();
    let is_metadata = |name: &str| metadata_names.iter().any(|m| m == name);
    let pick = |keep: &dyn Fn(&str) -> bool| -> Option<Labels> {
        let picked: Labels = labels.iter().filter(|(name, _)| keep(name)).collect();
        (!picked.is_empty()).then_some(picked)
    };
    (
        pick(&|name| is_metadata(name)),
        pick(&|name| !is_metadata(name) && !stream.contains(name)),
    )
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.rank == other.rank
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank.cmp(&other.rank)
    }
}

/// Runs a log query, returning at most `limit` entries, under the default
/// [`EvalOptions`].
///
/// # Errors
/// An empty or inverted time range, or a source error.
pub fn eval_logs(
    expr: &LogExpr,
    start_ns: i64,
    end_ns: i64,
    limit: usize,
    direction: Direction,
    src: &mut dyn EntrySource,
) -> Result<Streams, EvalError> {
    eval_logs_with(expr, start_ns, end_ns, limit, direction, src, &EvalOptions::default())
}

/// [`eval_logs`] with explicit limits.
///
/// # Errors
/// As [`eval_logs`]; [`EvalError::ResultTooLarge`] when the lines kept
/// pass `opts.max_result_bytes`.
pub fn eval_logs_with(
    expr: &LogExpr,
    start_ns: i64,
    end_ns: i64,
    limit: usize,
    direction: Direction,
    src: &mut dyn EntrySource,
    opts: &EvalOptions,
) -> Result<Streams, EvalError> {
    if end_ns < start_ns {
        return Err(EvalError::InvalidRange("end is before start".into()));
    }
    if limit == 0 {
        return Ok(Vec::new());
    }
    // A min-heap of the best `limit` candidates: its top is the worst kept.
    let mut heap: BinaryHeap<Reverse<Candidate>> = BinaryHeap::with_capacity(limit.min(4096));
    let mut seq: u64 = 0;
    // Bytes of the kept candidates' lines; past the budget, the query fails.
    let mut kept_bytes: usize = 0;
    let mut too_large = false;
    let max_bytes = opts.max_result_bytes;
    let mut consider = |heap: &mut BinaryHeap<Reverse<Candidate>>, seq: &mut u64, entry: Entry<'_>| {
        *seq += 1;
        let seq = *seq;
        let ts = entry.timestamp_ns;
        if ts < start_ns || ts >= end_ns || !expr.selector.matches(&entry.labels) {
            return ControlFlow::Continue(());
        }
        let rank = rank(direction, ts, seq);
        if heap.len() >= limit && heap.peek().is_some_and(|Reverse(worst)| rank <= worst.rank) {
            return ControlFlow::Continue(());
        }
        let stream = entry.labels.clone();
        let mut labels = entry.labels;
        if let Some(metadata) = &entry.metadata {
            labels.add_metadata(metadata);
        }
        let Some(line) = expr
            .pipeline
            .process_entry(entry.line, &mut labels, entry.leading_filters_passed)
        else {
            return ControlFlow::Continue(());
        };
        kept_bytes = kept_bytes.saturating_add(line.len());
        if kept_bytes > max_bytes && heap.len() + 1 > limit {
            // Full: the one about to go may make room.
            if let Some(Reverse(worst)) = heap.peek() {
                kept_bytes = kept_bytes.saturating_sub(worst.line.len());
                heap.pop();
            }
        }
        if kept_bytes > max_bytes {
            too_large = true;
            return ControlFlow::Break(());
        }
        let line = match line {
            std::borrow::Cow::Owned(v) => v,
            std::borrow::Cow::Borrowed(b) => b.to_vec(),
        };
        heap.push(Reverse(Candidate {
            rank,
            timestamp_ns: ts,
            labels,
            line,
            stream,
            metadata: entry.metadata,
        }));
        if heap.len() > limit
            && let Some(Reverse(worst)) = heap.pop()
        {
            kept_bytes = kept_bytes.saturating_sub(worst.line.len());
        }
        ControlFlow::Continue(())
    };
    match direction {
        Direction::Forward => src.scan(expr, start_ns, end_ns, &mut |entry| {
            consider(&mut heap, &mut seq, entry)
        })?,
        Direction::Backward => src.scan_newest_first(expr, start_ns, end_ns, &mut |scanned| match scanned {
            Scanned::Entry(entry) => consider(&mut heap, &mut seq, entry),
            // Full, and nothing to come is newer than the worst kept (a
            // tie loses to it too: later entries rank lower): done.
            Scanned::NoneNewerThan(ns) => {
                if heap.len() >= limit && heap.peek().is_some_and(|Reverse(worst)| worst.timestamp_ns >= ns) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
        })?,
    }
    if too_large {
        return Err(EvalError::ResultTooLarge { limit: max_bytes });
    }
    let mut kept: Vec<Candidate> = heap.into_iter().map(|Reverse(c)| c).collect();
    kept.sort_by_key(|c| Reverse(c.rank));
    let mut streams: BTreeMap<Labels, Vec<StreamEntry>> = BTreeMap::new();
    for c in kept {
        let (structured_metadata, parsed) = categorize(&c.labels, &c.stream, c.metadata.as_ref());
        streams.entry(c.labels).or_default().push(StreamEntry {
            timestamp_ns: c.timestamp_ns,
            line: c.line,
            structured_metadata,
            parsed,
        });
    }
    Ok(streams
        .into_iter()
        .map(|(labels, entries)| Stream { labels, entries })
        .collect())
}
