//! A scan of chosen partitions only, each from an offset: what a cluster
//! node reads for a query when other nodes answer for the rest of the
//! topic (`cluster::reads`), and what it answers another node asking for
//! its part (`http::replica_scan`).
//!
//! Why apart from [`StoreSource`](super::StoreSource): that one reads
//! whole topics; this one is told which partitions, in which order, and
//! where to resume each (a retry on another replica starts after the last
//! offset already delivered). Order is the same as a whole-topic scan's:
//! partitions in the order given, each in offset order, so a query merged
//! from parts sees entries in the order one node holding everything would.

use std::ops::ControlFlow;

use super::{Helpers, Hit, ScanRequest, ScanState, ScanStats, SourceError};
use crate::query::logql::{Entry, EntrySource, EvalError, LogExpr};
use crate::query::prefilter::Prefilter;
use crate::store::Store;

/// One partition to scan, from `from_offset` on (records below it are
/// skipped: they were delivered already).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartScan {
    pub topic: String,
    pub partition: u32,
    pub from_offset: i64,
}

/// Calls `f` for every record of `parts` (in their order, each in offset
/// order) that matches `log`'s selector and leading filters' literals in
/// `[start_ns, end_ns)`; as [`StoreSource`](super::StoreSource)'s scan. A
/// part naming a topic or partition this store lacks is skipped: the
/// caller planned from the cluster's view, which holds every topic.
///
/// # Errors
/// A read error or a corrupt batch.
#[allow(clippy::too_many_arguments)]
pub fn scan_partitions(
    store: &Store,
    log: &LogExpr,
    (start_ns, end_ns): (i64, i64),
    parts: &[PartScan],
    max_uncompressed: usize,
    threads: usize,
    stats: &mut ScanStats,
    f: &mut dyn FnMut(Hit<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, SourceError> {
    let scan = ScanRequest {
        selector: &log.selector,
        prefilter: Prefilter::new(&log.pipeline),
        start_ns,
        end_ns,
        max_uncompressed,
        helpers: Helpers::new(threads),
    };
    let mut state = ScanState::default();
    let mut state_topic: Option<&str> = None;
    for part in parts {
        let Some(topic) = store.topic(&part.topic) else {
            continue;
        };
        let Some(partition) = topic.partitions.iter().find(|p| p.id == part.partition) else {
            continue;
        };
        if state_topic != Some(part.topic.as_str()) {
            // Cached labels carry the topic.
            state = ScanState::default();
            state_topic = Some(part.topic.as_str());
        }
        let from = part.from_offset;
        let flow = scan.partition(&topic, partition, &mut state, stats, &mut |h: Hit<'_>| {
            if h.offset < from {
                ControlFlow::Continue(())
            } else {
                f(h)
            }
        })?;
        if flow.is_break() {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}

/// Chosen partitions of this store as an [`EntrySource`]: what a cluster
/// node folds a range aggregation over for its share of a metric query.
pub struct PartsSource<'a> {
    pub store: &'a Store,
    pub parts: &'a [PartScan],
    pub max_uncompressed: usize,
    pub threads: usize,
    /// What the scans read.
    pub stats: ScanStats,
}

impl EntrySource for PartsSource<'_> {
    fn scan(
        &mut self,
        log: &LogExpr,
        start_ns: i64,
        end_ns: i64,
        f: &mut dyn FnMut(Entry<'_>) -> ControlFlow<()>,
    ) -> Result<(), EvalError> {
        scan_partitions(
            self.store,
            log,
            (start_ns, end_ns),
            self.parts,
            self.max_uncompressed,
            self.threads,
            &mut self.stats,
            &mut |h| {
                f(Entry {
                    timestamp_ns: h.timestamp_ns,
                    labels: h.labels.clone(),
                    metadata: h.metadata,
                    line: h.record.value.unwrap_or_default(),
                    leading_filters_passed: true,
                })
            },
        )
        .map(|_| ())
        .map_err(|e| EvalError::Source(Box::new(e)))
    }
}
