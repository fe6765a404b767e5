//! The store as a LogQL [`EntrySource`]: which topics, segments and blocks
//! a query reads, and the scan of what is left.
//!
//! Pruning, cheapest first:
//! 1. topics: `topic="x"` (or a bare name) names them, others are not opened;
//! 2. segments whose time-index maximum is before the range;
//! 3. summary blocks whose exact time bounds miss the range, or whose
//!    streams (label sets) all fail the selector;
//! 4. batches whose header maximum is before the range, or whose
//!    decompressed records lack a literal the pipeline requires;
//! 5. lines lacking such a literal, before their labels are built.
//!
//! Bytes a summary does not describe (an invalid summary being rebuilt, or
//! the tail appended since) are scanned whole, so pruning never hides data.
//!
//! Labels: a record's headers minus logpost's own (`logpost.*`), plus
//! `topic`. Structured metadata (a Loki push's, `logpost.sm.<name>`) is the
//! entry's own, handed over beside the stream's labels. Timestamps: the
//! record's milliseconds, or the exact nanoseconds of a Loki push
//! (`logpost.ns_be`; `logpost.ns` or `logpost.ts_ns` in older records).

use std::ops::ControlFlow;
use std::sync::Arc;

use logpost_shared::batch::RecordView;

use super::logql::{
    Entry, EntrySource, EvalError, Expr, Labels, LogExpr, MetricExpr, RangeAggregation, Scanned, Selector, TOPIC_LABEL,
};
use super::prefilter::Prefilter;
use crate::ingest::loki::records::exact_ns;
use crate::store::scan::ScanError;
use crate::store::summary::{LabelBytes, is_internal};
use crate::store::{Store, Topic};

pub(crate) mod ahead;
mod batches;
mod metadata;
mod newest;
mod partitions;
mod plan;

pub use metadata::{metadata_of, stored_metadata};
pub use partitions::{PartScan, PartsSource, scan_partitions};

use newest::Part;
use plan::plan_segment;

const NS_PER_MS: i64 = 1_000_000;
/// Segment ranges shorter than this are inflated on the scan's own thread:
/// starting helpers costs more than a few batches take (narrow time ranges
/// read one summary block).
const MIN_PARALLEL_BYTES: u64 = 4 << 20;
/// Stored bytes a newest-first scan reads on its own thread before it
/// takes helpers.
const NEWEST_ON_ONE_THREAD: u64 = 8 << 20;

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{topic}/{partition}: segment {base_offset}: {source}")]
    Scan {
        topic: String,
        partition: u32,
        base_offset: i64,
        #[source]
        source: ScanError,
    },
    #[error("{topic}/{partition}: segment {base_offset}: corrupt batch at byte {pos}: {source}")]
    Batch {
        topic: String,
        partition: u32,
        base_offset: i64,
        pos: u64,
        #[source]
        source: logpost_shared::batch::BatchError,
    },
    #[error(
        "the result would hold more than {limit} bytes of records (query.max_result_bytes): lower the limit or narrow the query"
    )]
    ResultTooLarge { limit: usize },
}

/// Which partitions a scan reads, by topic and number (a cluster node
/// reads those it was asked for).
pub type PartitionFilter<'a> = &'a dyn Fn(&str, u32) -> bool;

/// What a scan read and skipped, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanStats {
    pub segments_skipped: u64,
    pub blocks_skipped: u64,
    pub batches_read: u64,
    pub batches_prefiltered: u64,
    /// Bytes of segment files read.
    pub stored_bytes_read: u64,
    /// Bytes of decompressed records sections looked at.
    pub raw_bytes_scanned: u64,
    pub records_matched_selector: u64,
}

/// The topics a selector can match, in name order.
pub fn topics_for(store: &Store, selector: &Selector) -> Vec<Arc<Topic>> {
    let mut topics = match selector.topics() {
        Some(names) => names.iter().filter_map(|n| store.topic(n)).collect(),
        None => store.user_topics(),
    };
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    topics
}

/// Every log query inside `expr` (one for a log query, one per range
/// aggregation for a metric query).
pub fn log_exprs(expr: &Expr) -> Vec<&LogExpr> {
    fn walk<'e>(m: &'e MetricExpr, out: &mut Vec<&'e LogExpr>) {
        match m {
            MetricExpr::Range(r) => out.push(&r.range.log),
            MetricExpr::Vector(v) => walk(&v.inner, out),
            MetricExpr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            MetricExpr::LabelReplace(l) => walk(&l.inner, out),
            MetricExpr::Literal(_) | MetricExpr::VectorLiteral(_) => {}
        }
    }
    let mut out = Vec::new();
    match expr {
        Expr::Log(l) => out.push(l),
        Expr::Metric(m) => walk(m, &mut out),
    }
    out
}

/// The range aggregations of `expr`, in the order of [`log_exprs`]: the
/// `k`-th one's log query is `log_exprs(expr)[k]`.
pub fn range_aggregations(expr: &Expr) -> Vec<&RangeAggregation> {
    fn walk<'e>(m: &'e MetricExpr, out: &mut Vec<&'e RangeAggregation>) {
        match m {
            MetricExpr::Range(r) => out.push(r),
            MetricExpr::Vector(v) => walk(&v.inner, out),
            MetricExpr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            MetricExpr::LabelReplace(l) => walk(&l.inner, out),
            MetricExpr::Literal(_) | MetricExpr::VectorLiteral(_) => {}
        }
    }
    let mut out = Vec::new();
    if let Expr::Metric(m) = expr {
        walk(m, &mut out);
    }
    out
}

/// A topic named by a selector of `expr` none of whose named topics
/// exists (`{topic="nope"}`, `nope |= "x"`): almost surely a typo, which
/// an empty result would hide.
pub fn unknown_topic(store: &Store, expr: &Expr) -> Option<String> {
    log_exprs(expr).into_iter().find_map(|l| {
        let names = l.selector.topics()?;
        if names.iter().any(|n| store.topic(n).is_some()) {
            return None;
        }
        names.into_iter().next()
    })
}

/// Labels of a stream of `topic`, as the engine sees them.
pub fn labels_of(topic: &str, stream: &[(String, String)]) -> Labels {
    stream
        .iter()
        .filter(|(k, _)| k != TOPIC_LABEL)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(std::iter::once((TOPIC_LABEL, topic)))
        .collect()
}

/// A record a scan found, having passed the pipeline's leading line
/// filters and no other stage: where it is stored, its time and its
/// labels (`topic` included).
pub struct Hit<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: i64,
    /// The batch's producer id: the stream (tailed file); -1 if none.
    pub producer_id: i64,
    pub timestamp_ms: i64,
    pub timestamp_ns: i64,
    pub labels: &'a Labels,
    /// The entry's structured metadata, `None` when it has none.
    pub metadata: Option<Labels>,
    pub record: &'a RecordView<'a>,
}

/// What a newest-first scan hands over.
pub enum Found<'a> {
    Hit(Hit<'a>),
    /// No hit passed from now on has a timestamp (ns) above this.
    NoneNewerThan(i64),
}

/// Reads entries out of a [`Store`].
pub struct StoreSource<'a> {
    store: &'a Store,
    max_uncompressed: usize,
    helpers: Helpers,
    /// What the scans so far read and skipped.
    pub stats: ScanStats,
}

impl<'a> StoreSource<'a> {
    /// A source over `store`; batches inflating past `max_uncompressed`
    /// bytes are errors.
    pub fn new(store: &'a Store, max_uncompressed: usize) -> Self {
        StoreSource {
            store,
            max_uncompressed,
            helpers: Helpers::new(1),
            stats: ScanStats::default(),
        }
    }

    /// Scans with `threads` helpers inflating batches ahead (the
    /// collector's `[http] query_threads`); 0 or 1: none, everything on
    /// the calling thread.
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.helpers = Helpers::new(threads);
        self
    }

    /// Helpers on ranges of any size (tests, whose stores are small).
    #[cfg(test)]
    fn with_helpers_always(mut self) -> Self {
        self.helpers.min_range_bytes = 0;
        self.helpers.newest_alone_bytes = 0;
        self
    }

    /// A newest-first scan takes helpers after `bytes` (tests).
    #[cfg(test)]
    fn with_newest_alone_bytes(mut self, bytes: u64) -> Self {
        self.helpers.newest_alone_bytes = bytes;
        self
    }
}

impl EntrySource for StoreSource<'_> {
    fn scan(
        &mut self,
        log: &LogExpr,
        start_ns: i64,
        end_ns: i64,
        f: &mut dyn FnMut(Entry<'_>) -> ControlFlow<()>,
    ) -> Result<(), EvalError> {
        let scan = ScanRequest {
            selector: &log.selector,
            prefilter: Prefilter::new(&log.pipeline),
            start_ns,
            end_ns,
            max_uncompressed: self.max_uncompressed,
            helpers: self.helpers,
        };
        let mut hit = |h: Hit<'_>| {
            f(Entry {
                timestamp_ns: h.timestamp_ns,
                labels: h.labels.clone(),
                metadata: h.metadata,
                line: h.record.value.unwrap_or_default(),
                leading_filters_passed: true,
            })
        };
        for topic in topics_for(self.store, &log.selector) {
            if scan
                .topic(&topic, &mut self.stats, &mut hit)
                .map_err(|e| EvalError::Source(Box::new(e)))?
                .is_break()
            {
                break;
            }
        }
        Ok(())
    }

    /// Summary blocks of every segment, partition and topic in descending
    /// order of their newest time (unknown first), each announced by it.
    fn scan_newest_first(
        &mut self,
        log: &LogExpr,
        start_ns: i64,
        end_ns: i64,
        f: &mut dyn FnMut(Scanned<'_>) -> ControlFlow<()>,
    ) -> Result<(), EvalError> {
        let scan = ScanRequest {
            selector: &log.selector,
            prefilter: Prefilter::new(&log.pipeline),
            start_ns,
            end_ns,
            max_uncompressed: self.max_uncompressed,
            helpers: self.helpers,
        };
        let topics = topics_for(self.store, &log.selector);
        scan.newest_first(&topics, None, &mut self.stats, &mut |found| match found {
            Found::Hit(h) => f(Scanned::Entry(Entry {
                timestamp_ns: h.timestamp_ns,
                labels: h.labels.clone(),
                metadata: h.metadata,
                line: h.record.value.unwrap_or_default(),
                leading_filters_passed: true,
            })),
            Found::NoneNewerThan(ns) => f(Scanned::NoneNewerThan(ns)),
        })
        .map_err(|e| EvalError::Source(Box::new(e)))
    }
}

/// The newest `limit` records of `log` in `[start_ns, end_ns)` that `keep`
/// turns into an item and its size in bytes (`None`: not wanted), newest
/// first, as `(timestamp ns, item)`: the records of
/// `/v1/query?direction=backward`. Reads summary blocks newest first and
/// stops once older ones cannot hold one of them. The items kept may hold
/// `max_bytes` at most. `threads`: helpers inflating ahead, as
/// [`StoreSource::with_threads`]. `wanted`: the partitions read (all
/// when `None`; a cluster node reads those it was asked for).
///
/// # Errors
/// A read error, a corrupt batch, or items past `max_bytes`.
#[allow(clippy::too_many_arguments)]
pub fn newest_records<T>(
    store: &Store,
    log: &LogExpr,
    wanted: Option<PartitionFilter<'_>>,
    (start_ns, end_ns): (i64, i64),
    limit: usize,
    max_bytes: usize,
    max_uncompressed: usize,
    threads: usize,
    mut keep: impl FnMut(&Hit<'_>) -> Option<(T, usize)>,
) -> Result<Vec<(i64, T)>, SourceError> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    /// Ordered by its key only: (ns, topic, partition, offset); with its size.
    struct Kept<T>((i64, usize, u32, i64), T, usize);
    impl<T> PartialEq for Kept<T> {
        fn eq(&self, o: &Self) -> bool {
            self.0 == o.0
        }
    }
    impl<T> Eq for Kept<T> {}
    impl<T> PartialOrd for Kept<T> {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl<T> Ord for Kept<T> {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            self.0.cmp(&o.0)
        }
    }
    if limit == 0 {
        return Ok(Vec::new());
    }
    let scan = ScanRequest {
        selector: &log.selector,
        prefilter: Prefilter::new(&log.pipeline),
        start_ns,
        end_ns,
        max_uncompressed,
        helpers: Helpers::new(threads),
    };
    let topics = topics_for(store, &log.selector);
    let mut stats = ScanStats::default();
    // A min-heap of the best `limit`: its top is the worst kept.
    let mut heap: BinaryHeap<Reverse<Kept<T>>> = BinaryHeap::with_capacity(limit.min(4096));
    let (mut kept_bytes, mut too_large) = (0usize, false);
    scan.newest_first(&topics, wanted, &mut stats, &mut |found| match found {
        Found::NoneNewerThan(ns) => {
            if heap.len() >= limit && heap.peek().is_some_and(|Reverse(w)| w.0.0 >= ns) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        }
        Found::Hit(h) => {
            let t = topics.iter().position(|t| &*t.name == h.topic).unwrap_or(0);
            let key = (h.timestamp_ns, t, h.partition, h.offset);
            if heap.len() >= limit && heap.peek().is_some_and(|Reverse(w)| key <= w.0) {
                return ControlFlow::Continue(());
            }
            if let Some((item, size)) = keep(&h) {
                kept_bytes = kept_bytes.saturating_add(size);
                heap.push(Reverse(Kept(key, item, size)));
                if heap.len() > limit
                    && let Some(Reverse(worst)) = heap.pop()
                {
                    kept_bytes = kept_bytes.saturating_sub(worst.2);
                }
                if kept_bytes > max_bytes {
                    too_large = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        }
    })?;
    if too_large {
        return Err(SourceError::ResultTooLarge { limit: max_bytes });
    }
    let mut kept: Vec<Kept<T>> = heap.into_iter().map(|Reverse(k)| k).collect();
    kept.sort_by_key(|k| std::cmp::Reverse(k.0));
    Ok(kept.into_iter().map(|k| (k.0.0, k.1)).collect())
}

/// One scan's fixed inputs.
struct ScanRequest<'q> {
    selector: &'q Selector,
    prefilter: Prefilter,
    start_ns: i64,
    end_ns: i64,
    max_uncompressed: usize,
    helpers: Helpers,
}

/// When a scan takes helper threads to inflate batches ahead of it.
#[derive(Debug, Clone, Copy)]
struct Helpers {
    /// 0: none, everything on the scan's own thread.
    threads: usize,
    /// Ranges shorter than this get no helpers.
    min_range_bytes: u64,
    /// Stored bytes a newest-first scan reads before it takes helpers.
    newest_alone_bytes: u64,
}

impl Helpers {
    /// `threads` helpers (0 or 1: none) with the default thresholds.
    fn new(threads: usize) -> Self {
        Helpers {
            threads: if threads > 1 { threads } else { 0 },
            min_range_bytes: MIN_PARALLEL_BYTES,
            newest_alone_bytes: NEWEST_ON_ONE_THREAD,
        }
    }
}

/// The labels of the previous record, reused while its headers repeat (a
/// batch is usually one stream).
#[derive(Default)]
struct LabelCache {
    last: LabelBytes,
    labels: Labels,
    selected: bool,
    /// How many of the record's headers are labels (not logpost's own).
    label_headers: usize,
}

impl LabelCache {
    /// Labels of `record` of `topic`, whether `selector` accepts them, and
    /// how many of its headers are labels (see [`metadata_of`]).
    fn get(&mut self, topic: &str, record: &RecordView<'_>, selector: &Selector) -> (&Labels, bool, usize) {
        if !self.last.same(record) {
            self.last.keep(record);
            let stream = crate::store::summary::stream_labels(record);
            self.labels = labels_of(topic, &stream);
            self.selected = selector.matches(&self.labels);
            self.label_headers = record.headers.iter().filter(|h| !is_internal(h.key)).count();
        }
        (&self.labels, self.selected, self.label_headers)
    }
}

/// What one topic's scan reuses from segment to segment.
#[derive(Default)]
struct ScanState {
    scratch: Vec<u8>,
    cache: LabelCache,
}

impl ScanRequest<'_> {
    fn bounds_ms(&self) -> (i64, i64) {
        (
            self.start_ns.div_euclid(NS_PER_MS),
            self.end_ns.saturating_sub(1).div_euclid(NS_PER_MS),
        )
    }

    /// Every segment of every partition of `topic`, in offset order.
    fn topic(
        &self,
        topic: &Topic,
        stats: &mut ScanStats,
        f: &mut dyn FnMut(Hit<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, SourceError> {
        let mut state = ScanState::default();
        for partition in &topic.partitions {
            if self.partition(topic, partition, &mut state, stats, f)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Every segment of one partition of `topic`, in offset order.
    fn partition(
        &self,
        topic: &Topic,
        partition: &crate::store::Partition,
        state: &mut ScanState,
        stats: &mut ScanStats,
        f: &mut dyn FnMut(Hit<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, SourceError> {
        let view = partition.view();
        for seg in &view.segments {
            if seg.max_timestamp >= 0 && seg.max_timestamp < self.bounds_ms().0 {
                stats.segments_skipped += 1;
                continue;
            }
            for range in plan_segment(seg, &topic.name, self.selector, self.bounds_ms(), true, stats) {
                if self.range(topic, partition.id, seg, range, state, stats, f)?.is_break() {
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Summary blocks of every segment of `topics` in descending order of
    /// their newest time (unknown first), each announced by it.
    fn newest_first(
        &self,
        topics: &[Arc<Topic>],
        wanted: Option<PartitionFilter<'_>>,
        stats: &mut ScanStats,
        f: &mut dyn FnMut(Found<'_>) -> ControlFlow<()>,
    ) -> Result<(), SourceError> {
        let mut parts = Vec::new();
        for (t, topic) in topics.iter().enumerate() {
            for partition in &topic.partitions {
                if wanted.is_some_and(|w| !w(&topic.name, partition.id)) {
                    continue;
                }
                let view = partition.view();
                for (i, seg) in view.segments.iter().enumerate() {
                    if seg.max_timestamp >= 0 && seg.max_timestamp < self.bounds_ms().0 {
                        stats.segments_skipped += 1;
                        continue;
                    }
                    for range in plan_segment(seg, &topic.name, self.selector, self.bounds_ms(), false, stats) {
                        let newest_ns = if range.newest_ms == i64::MAX {
                            i64::MAX
                        } else {
                            range.newest_ms.saturating_mul(NS_PER_MS).saturating_add(NS_PER_MS - 1)
                        };
                        parts.push(Part {
                            newest_ns,
                            topic: t,
                            partition: partition.id,
                            view: Arc::clone(&view),
                            segment: i,
                            range,
                        });
                    }
                }
            }
        }
        parts.sort_by_key(|p| std::cmp::Reverse(p.newest_ns));
        let mut state = ScanState::default();
        let mut state_topic = usize::MAX;
        // The newest blocks are read here: most such scans (Grafana's
        // newest 100 lines) stop within them, before helpers would pay.
        let mut read = 0u64;
        for (k, part) in parts.iter().enumerate() {
            if self.helpers.threads > 0
                && read >= self.helpers.newest_alone_bytes
                && let Some(done) = self.newest_first_ahead(topics, parts.get(k..).unwrap_or_default(), stats, f)
            {
                return done;
            }
            read += part.range.end.saturating_sub(part.range.pos);
            if f(Found::NoneNewerThan(part.newest_ns)).is_break() {
                break;
            }
            let (Some(topic), Some(seg)) = (topics.get(part.topic), part.view.segments.get(part.segment)) else {
                continue;
            };
            if state_topic != part.topic {
                // Cached labels carry the topic.
                state.cache = LabelCache::default();
                state_topic = part.topic;
            }
            if self
                .range(topic, part.partition, seg, part.range, &mut state, stats, &mut |h| {
                    f(Found::Hit(h))
                })?
                .is_break()
            {
                break;
            }
        }
        Ok(())
    }
}

/// A record's time in nanoseconds: Loki's exact value when it was kept.
pub fn record_ns(record: &RecordView<'_>, ts_ms: i64) -> i64 {
    // A Loki push writes it as the last header: looked at first.
    let last = record.headers.last().filter(|h| is_internal(h.key));
    if let Some(ns) = last.and_then(|h| exact_ns(ts_ms, h.key, h.value.unwrap_or_default())) {
        return ns;
    }
    record
        .headers
        .iter()
        .filter(|h| is_internal(h.key))
        .find_map(|h| exact_ns(ts_ms, h.key, h.value.unwrap_or_default()))
        .unwrap_or_else(|| ts_ms.saturating_mul(NS_PER_MS))
}

#[cfg(test)]
mod tests;
