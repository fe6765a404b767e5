//! Cluster-wide reads: a query asked of any node sees every partition.
//!
//! The node asked plans, for every partition a query's selector can
//! touch, which node reads it: itself when it leads it, else the live
//! leader, else a live in-sync replica (itself first). Each node reads its
//! copy up to its high watermark. Remote parts are asked for with the
//! query itself (`POST /v1/replica/scan`, scope `cluster`), so the remote
//! scan prunes with the same selector, time range and line-filter
//! literals; the entries that pass come back and the pipeline, the limit,
//! the direction and any aggregation run here, on exactly the entries one
//! node holding everything would see, in the same order (partitions in
//! topic and partition order, each in offset order).
//!
//! Metric queries go further: each range aggregation's state (per-series,
//! per-interval accumulators) is computed on the node holding the data
//! (`POST /v1/replica/range`) and merged here in partition order, so
//! samples cross the network, not lines ([`ClusterSource::range_partials`]).
//!
//! A node that fails, before or during its answer, is left out and its
//! remaining partitions are asked of the next in-sync replica, from the
//! offset after the last entry already delivered: nothing is lost or
//! repeated. When no replica of some partition answers, the query fails
//! with [`ReadError::Unavailable`] naming them: never a silently partial
//! answer.
//!
//! Without a cluster, or when this node holds every partition needed,
//! [`ClusterSource`] is the local [`StoreSource`] and nothing changes.

pub mod inventory;
pub mod wire;

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use super::meta::ClusterView;
use super::node::Cluster;
use crate::query::logql::{
    Entry, EntrySource, EvalError, EvalOptions, Expr, Labels, LogExpr, Partials, RangeAggregation, Scanned,
    range_partials,
};
use crate::query::source::{
    PartScan, PartsSource, ScanStats, SourceError, StoreSource, log_exprs, scan_partitions, topics_for,
};
use crate::store::Store;
use wire::{EvalFailure, RangeAnswer, RangeAsk, ScanAsk, ScanLine};

/// Longest a remote scan may stay silent (no bytes at all) before the
/// node is taken for failed. Generous: a scan through a large, selective
/// range sends nothing while it reads.
const REMOTE_SILENCE: Duration = Duration::from_secs(60);
/// Longest a node may take to fold its part of a metric query (it answers
/// once, at the end of its scan).
const REMOTE_STATE_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a failed remote part resumes: the index of its first incomplete
/// partition and the offset to restart that one at (`None`: its start).
pub type Resume = (usize, Option<i64>);

/// Why a cluster-wide read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "cannot read {parts}: no in-sync replica of them answered ({tried}); the result would be partial, so none is given"
    )]
    Unavailable { parts: String, tried: String },
    #[error(transparent)]
    Local(#[from] SourceError),
}

/// Who reads a partition: candidates in order of preference.
pub(crate) fn candidates(view: &ClusterView, me: i32, topic: &str, partition: u32) -> Vec<i32> {
    let Some(state) = view.partition(topic, partition) else {
        // Not a cluster topic (yet): only the local copy exists.
        return vec![me];
    };
    let s = &state.value;
    let mut out = Vec::new();
    if s.leader >= 0 && (s.leader == me || view.is_live(s.leader)) {
        out.push(s.leader);
    }
    if s.isr.contains(&me) && !out.contains(&me) {
        out.push(me);
    }
    for &r in &s.isr {
        if !out.contains(&r) && view.is_live(r) {
            out.push(r);
        }
    }
    out
}

/// The store (and, in a cluster, the other nodes) as one LogQL entry source.
pub struct ClusterSource<'a> {
    local: StoreSource<'a>,
    store: &'a Store,
    remote: Option<(Arc<Cluster>, tokio::runtime::Handle)>,
    /// The query being run and its text: what remote nodes are sent.
    query: Option<(&'a Expr, &'a str)>,
    max_uncompressed: usize,
    threads: usize,
    /// What the scans on this node and the others read.
    pub stats: ScanStats,
    /// Bytes of remote answers received.
    pub remote_bytes: u64,
}

impl<'a> ClusterSource<'a> {
    /// A source over `store`, and over the other nodes when `cluster` is
    /// set. Must be made on the runtime's blocking pool (it keeps the
    /// runtime's handle for the remote calls).
    pub fn new(store: &'a Store, max_uncompressed: usize, threads: usize, cluster: Option<Arc<Cluster>>) -> Self {
        let remote = cluster.and_then(|c| Some((c, tokio::runtime::Handle::try_current().ok()?)));
        ClusterSource {
            local: StoreSource::new(store, max_uncompressed).with_threads(threads),
            store,
            remote,
            query: None,
            max_uncompressed,
            threads,
            stats: ScanStats::default(),
            remote_bytes: 0,
        }
    }

    /// Reads across the cluster for `expr`, parsed from `text`; without
    /// it every read is local.
    #[must_use]
    pub fn for_query(mut self, expr: &'a Expr, text: &'a str) -> Self {
        self.query = Some((expr, text));
        self
    }

    /// The query's text and which of its log queries `log` is.
    fn locate(&self, log: &LogExpr) -> Option<(&'a str, usize)> {
        let (expr, text) = self.query?;
        let logs = log_exprs(expr);
        let i = logs.iter().position(|l| std::ptr::eq(*l, log)).or_else(|| {
            // The engine hands over the tree's own nodes; a copy is found
            // by its content.
            let want = format!("{log:?}");
            logs.iter().position(|l| format!("{l:?}") == want)
        })?;
        Some((text, i))
    }

    /// Every figure so far, local whole-topic scans included.
    pub fn total_stats(&self) -> ScanStats {
        let (a, b) = (self.local.stats, self.stats);
        ScanStats {
            segments_skipped: a.segments_skipped + b.segments_skipped,
            blocks_skipped: a.blocks_skipped + b.blocks_skipped,
            batches_read: a.batches_read + b.batches_read,
            batches_prefiltered: a.batches_prefiltered + b.batches_prefiltered,
            stored_bytes_read: a.stored_bytes_read + b.stored_bytes_read,
            raw_bytes_scanned: a.raw_bytes_scanned + b.raw_bytes_scanned,
            records_matched_selector: a.records_matched_selector + b.records_matched_selector,
        }
    }

    /// The partitions `log` can touch, in scan order, each with its
    /// candidates; `None` when this node reads them all (or no cluster).
    fn plan(&self, log: &LogExpr) -> Option<Vec<(PartScan, Vec<i32>)>> {
        let (cluster, _) = self.remote.as_ref()?;
        self.locate(log)?;
        let view = cluster.view();
        let me = cluster.me.id;
        let mut parts = Vec::new();
        for topic in topics_for(self.store, &log.selector) {
            for p in &topic.partitions {
                let part = PartScan {
                    topic: topic.name.to_string(),
                    partition: p.id,
                    from_offset: i64::MIN,
                };
                parts.push((part, candidates(&view, me, &topic.name, p.id)));
            }
        }
        if parts.iter().all(|(_, c)| c.first() == Some(&me)) {
            return None;
        }
        Some(parts)
    }

    /// Reads `parts` (in order), each from its first candidate not in
    /// `failed`, handing entries to `f`.
    fn read_parts(
        &mut self,
        log: &LogExpr,
        query: (&str, usize),
        range: (i64, i64),
        mut parts: Vec<(PartScan, Vec<i32>)>,
        f: &mut dyn FnMut(Entry<'_>) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        let mut failed: Vec<(i32, String)> = Vec::new();
        let me = self.remote.as_ref().map_or(-1, |(c, _)| c.me.id);
        while !parts.is_empty() {
            let pick =
                |c: &[i32], failed: &[(i32, String)]| c.iter().copied().find(|n| failed.iter().all(|(f, _)| f != n));
            let Some(node) = pick(&parts[0].1, &failed) else {
                return Err(unavailable_parts(&parts, &failed, pick));
            };
            // The run of parts this node reads next, in order.
            let run = parts.iter().take_while(|(_, c)| pick(c, &failed) == Some(node)).count();
            let rest = parts.split_off(run);
            let run_parts: Vec<PartScan> = parts.iter().map(|(p, _)| p.clone()).collect();
            if node == me {
                let flow = scan_local(
                    self.store,
                    log,
                    range,
                    &run_parts,
                    self.max_uncompressed,
                    self.threads,
                    &mut self.stats,
                    f,
                )?;
                if flow.is_break() {
                    return Ok(());
                }
                parts = rest;
                continue;
            }
            match self.scan_remote(node, query, range, &run_parts, f) {
                Ok(ControlFlow::Break(())) => return Ok(()),
                Ok(ControlFlow::Continue(())) => parts = rest,
                Err((e, resume)) => {
                    tracing::warn!(node, error = %e, "a node failed to answer its part of a query; asking another in-sync replica");
                    failed.push((node, e));
                    // Parts before `resume.0` are complete; it resumes after
                    // the last offset delivered.
                    let mut left: Vec<(PartScan, Vec<i32>)> = parts.split_off(resume.0.min(parts.len()));
                    if let (Some(first), Some(from)) = (left.first_mut(), resume.1) {
                        first.0.from_offset = from;
                    }
                    left.extend(rest);
                    parts = left;
                }
            }
        }
        Ok(())
    }

    /// Asks `node` for `parts`. On failure: why, and where to resume (the
    /// index of the first incomplete part and the offset to restart it at).
    fn scan_remote(
        &mut self,
        node: i32,
        (query, log_index): (&str, usize),
        (start_ns, end_ns): (i64, i64),
        parts: &[PartScan],
        f: &mut dyn FnMut(Entry<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, (String, Resume)> {
        let Some((cluster, handle)) = self.remote.clone() else {
            return Err(("no cluster".into(), (0, None)));
        };
        let ask = ScanAsk {
            query: query.to_owned(),
            log_index,
            start_ns,
            end_ns,
            parts: parts.to_vec(),
            want_ends: false,
        };
        let answer = scan_remote(&cluster, &handle, node, &ask, &mut self.stats, &mut |_, _, e| f(e));
        let received = match &answer {
            Ok(a) => a.received,
            Err(_) => 0,
        };
        self.remote_bytes += received;
        crate::metrics::cluster_read_bytes("lines", received);
        let answer = answer?;
        Ok(answer.flow)
    }
}

/// How a remote scan ended.
pub struct RemoteScan {
    pub flow: ControlFlow<()>,
    /// Where each part was read up to, when the ask wanted it.
    pub ends: Option<Vec<i64>>,
    /// Bytes of answer received.
    pub received: u64,
}

/// Asks `node` for `ask`'s parts (`POST /v1/replica/scan`), handing each
/// entry to `f` with its part's index and offset, and adding the node's
/// scan figures to `stats`. Blocks on `handle`: call it off the runtime.
/// On failure: why, and where to resume (the index of the first
/// incomplete part and the offset to restart it at).
pub fn scan_remote(
    cluster: &Cluster,
    handle: &tokio::runtime::Handle,
    node: i32,
    ask: &ScanAsk,
    stats: &mut ScanStats,
    f: &mut dyn FnMut(usize, i64, Entry<'_>) -> ControlFlow<()>,
) -> Result<RemoteScan, (String, Resume)> {
    let Some(url) = cluster.node_url(node) else {
        return Err(("not alive".into(), (0, None)));
    };
    let mut at: Resume = (0, None);
    let mut received = 0u64;
    let mut ends = None;
    let fail = |e: String, at: Resume| Err((format!("{url}: {e}"), at));
    let sent = handle.block_on(async {
        tokio::time::timeout(
            REMOTE_SILENCE,
            cluster.reads.post(format!("{url}/v1/replica/scan")).json(ask).send(),
        )
        .await
    });
    let mut resp = match sent {
        Err(_) => return fail("no answer in time".into(), at),
        Ok(Err(e)) => return fail(crate::http::error::chain(&e), at),
        Ok(Ok(r)) => r,
    };
    if !resp.status().is_success() {
        let status = resp.status();
        let body = handle.block_on(async { tokio::time::timeout(REMOTE_SILENCE, resp.text()).await });
        let text = body.ok().and_then(Result::ok).unwrap_or_default();
        return fail(format!("{status}: {}", text.trim()), at);
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut labels = Labels::new();
    loop {
        let chunk = handle.block_on(async { tokio::time::timeout(REMOTE_SILENCE, resp.chunk()).await });
        let bytes = match chunk {
            Err(_) => return fail(format!("silent for {REMOTE_SILENCE:?}"), at),
            Ok(Err(e)) => return fail(crate::http::error::chain(&e), at),
            Ok(Ok(None)) => return fail("the answer was cut short".into(), at),
            Ok(Ok(Some(b))) => b,
        };
        received += bytes.len() as u64;
        buf.extend_from_slice(&bytes);
        let mut consumed = 0;
        while let Some(nl) = buf.get(consumed..).and_then(|b| memchr::memchr(b'\n', b)) {
            let line = buf.get(consumed..consumed + nl).unwrap_or_default();
            consumed += nl + 1;
            let parsed: ScanLine = match serde_json::from_slice(line) {
                Ok(l) => l,
                Err(e) => return fail(format!("bad answer line: {e}"), at),
            };
            match parsed {
                ScanLine::Done(done) => {
                    add(stats, &done);
                    return Ok(RemoteScan {
                        flow: ControlFlow::Continue(()),
                        ends,
                        received,
                    });
                }
                ScanLine::Ends(e) => ends = Some(e),
                ScanLine::Error(e) => return fail(e, at),
                ScanLine::E(e) => {
                    if let Some(l) = &e.l {
                        labels = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    }
                    let line = match e.line() {
                        Ok(l) => l,
                        Err(msg) => return fail(msg, at),
                    };
                    let metadata: Option<Labels> =
                        e.m.as_ref()
                            .map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect());
                    at = (e.p, Some(e.o.saturating_add(1)));
                    let flow = f(
                        e.p,
                        e.o,
                        Entry {
                            timestamp_ns: e.t,
                            labels: labels.clone(),
                            metadata,
                            line: &line,
                            leading_filters_passed: true,
                        },
                    );
                    if flow.is_break() {
                        return Ok(RemoteScan {
                            flow: ControlFlow::Break(()),
                            ends: None,
                            received,
                        });
                    }
                }
            }
        }
        buf.drain(..consumed);
    }
}

/// Adds `b`'s figures to `a`.
fn add(a: &mut ScanStats, b: &ScanStats) {
    a.segments_skipped += b.segments_skipped;
    a.blocks_skipped += b.blocks_skipped;
    a.batches_read += b.batches_read;
    a.batches_prefiltered += b.batches_prefiltered;
    a.stored_bytes_read += b.stored_bytes_read;
    a.raw_bytes_scanned += b.raw_bytes_scanned;
    a.records_matched_selector += b.records_matched_selector;
}

/// Local parts, entries handed over as a whole-topic scan would.
#[allow(clippy::too_many_arguments)]
fn scan_local(
    store: &Store,
    log: &LogExpr,
    range: (i64, i64),
    parts: &[PartScan],
    max_uncompressed: usize,
    threads: usize,
    stats: &mut ScanStats,
    f: &mut dyn FnMut(Entry<'_>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, SourceError> {
    scan_partitions(store, log, range, parts, max_uncompressed, threads, stats, &mut |h| {
        f(Entry {
            timestamp_ns: h.timestamp_ns,
            labels: h.labels.clone(),
            metadata: h.metadata,
            line: h.record.value.unwrap_or_default(),
            leading_filters_passed: true,
        })
    })
}

impl ClusterSource<'_> {
    /// `agg`'s state at `times` over `parts` (in order), each run of parts
    /// folded on the node that reads it: here for this node's own, by
    /// `POST /v1/replica/range` for the others'. A node that cannot answer
    /// has its run asked of the next in-sync replica (the state is all or
    /// nothing, so nothing is counted twice).
    fn partials_across(
        &mut self,
        agg: &RangeAggregation,
        (query, log_index): (&str, usize),
        times: &[i64],
        opts: &EvalOptions,
        mut parts: Vec<(PartScan, Vec<i32>)>,
    ) -> Result<Partials, EvalError> {
        let mut failed: Vec<(i32, String)> = Vec::new();
        let me = self.remote.as_ref().map_or(-1, |(c, _)| c.me.id);
        let mut total = Partials::default();
        while !parts.is_empty() {
            let pick =
                |c: &[i32], failed: &[(i32, String)]| c.iter().copied().find(|n| failed.iter().all(|(f, _)| f != n));
            let Some(node) = pick(&parts[0].1, &failed) else {
                return Err(EvalError::Source(Box::new(unavailable_parts(&parts, &failed, pick))));
            };
            let run = parts.iter().take_while(|(_, c)| pick(c, &failed) == Some(node)).count();
            let rest = parts.split_off(run);
            let run_parts: Vec<PartScan> = parts.iter().map(|(p, _)| p.clone()).collect();
            let state = if node == me {
                let mut local = PartsSource {
                    store: self.store,
                    parts: &run_parts,
                    max_uncompressed: self.max_uncompressed,
                    threads: self.threads,
                    stats: ScanStats::default(),
                };
                let state = range_partials(agg, times, &mut local, opts);
                add(&mut self.stats, &local.stats);
                state?
            } else {
                let ask = RangeAsk {
                    query: query.to_owned(),
                    log_index,
                    times: times.to_vec(),
                    parts: run_parts,
                };
                match self.range_remote(node, &ask) {
                    Ok(RangeAnswer::State { state, stats }) => {
                        add(&mut self.stats, &stats);
                        Partials::from_wire(state)
                    }
                    Ok(RangeAnswer::Failed(EvalFailure::Pipeline { error_type, series })) => {
                        return Err(EvalError::Pipeline { error_type, series });
                    }
                    Ok(RangeAnswer::Failed(EvalFailure::TooManySeries { limit })) => {
                        return Err(EvalError::TooManySeries { limit });
                    }
                    Ok(RangeAnswer::Failed(EvalFailure::Other(e))) | Err(e) => {
                        tracing::warn!(node, error = %e, "a node failed to answer its part of a metric query; asking another in-sync replica");
                        failed.push((node, e));
                        parts.extend(rest);
                        continue;
                    }
                }
            };
            total.merge(state, opts.max_series)?;
            parts = rest;
        }
        Ok(total)
    }

    /// Asks `node` for a range aggregation's state.
    fn range_remote(&mut self, node: i32, ask: &RangeAsk) -> Result<RangeAnswer, String> {
        let Some((cluster, handle)) = self.remote.clone() else {
            return Err("no cluster".into());
        };
        let url = cluster.node_url(node).ok_or_else(|| "not alive".to_owned())?;
        let answer = handle.block_on(async {
            let resp = cluster
                .reads
                .post(format!("{url}/v1/replica/range"))
                .json(ask)
                .timeout(REMOTE_STATE_TIMEOUT)
                .send()
                .await
                .map_err(|e| crate::http::error::chain(&e))?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(|e| crate::http::error::chain(&e))?;
            if !status.is_success() {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body).trim()));
            }
            self.remote_bytes += body.len() as u64;
            crate::metrics::cluster_read_bytes("state", body.len() as u64);
            serde_json::from_slice::<RangeAnswer>(&body).map_err(|e| format!("bad answer: {e}"))
        });
        answer.map_err(|e| format!("{url}: {e}"))
    }
}

/// The error of a read some of whose `parts` no replica could answer.
fn unavailable_parts(
    parts: &[(PartScan, Vec<i32>)],
    failed: &[(i32, String)],
    pick: impl Fn(&[i32], &[(i32, String)]) -> Option<i32>,
) -> ReadError {
    let missing: BTreeSet<String> = parts
        .iter()
        .filter(|(_, c)| pick(c, failed).is_none())
        .map(|(p, _)| format!("{}/{}", p.topic, p.partition))
        .collect();
    let tried = if failed.is_empty() {
        "no replica is alive and in sync".to_owned()
    } else {
        failed
            .iter()
            .map(|(n, e)| format!("node {n}: {e}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    ReadError::Unavailable {
        parts: missing.into_iter().collect::<Vec<_>>().join(", "),
        tried,
    }
}

impl EntrySource for ClusterSource<'_> {
    fn range_partials(
        &mut self,
        agg: &RangeAggregation,
        times: &[i64],
        opts: &EvalOptions,
    ) -> Option<Result<Partials, EvalError>> {
        let parts = self.plan(&agg.range.log)?;
        let query = self.locate(&agg.range.log)?;
        Some(self.partials_across(agg, query, times, opts, parts))
    }

    fn scan(
        &mut self,
        log: &LogExpr,
        start_ns: i64,
        end_ns: i64,
        f: &mut dyn FnMut(Entry<'_>) -> ControlFlow<()>,
    ) -> Result<(), EvalError> {
        let (Some(parts), Some(query)) = (self.plan(log), self.locate(log)) else {
            return self.local.scan(log, start_ns, end_ns, f);
        };
        self.read_parts(log, query, (start_ns, end_ns), parts, f)
            .map_err(|e| EvalError::Source(Box::new(e)))
    }

    fn scan_newest_first(
        &mut self,
        log: &LogExpr,
        start_ns: i64,
        end_ns: i64,
        f: &mut dyn FnMut(Scanned<'_>) -> ControlFlow<()>,
    ) -> Result<(), EvalError> {
        if self.plan(log).is_none() {
            return self.local.scan_newest_first(log, start_ns, end_ns, f);
        }
        // Across nodes: everything in scan order (the engine keeps the
        // newest `limit`); newest-first pruning is per node's summaries
        // and is not done across the network yet.
        self.scan(log, start_ns, end_ns, &mut |e| f(Scanned::Entry(e)))
    }
}

/// The message of a failed cluster-wide read, if `e` is one: a 503 (the
/// data exists, its nodes are down), not a 500.
pub fn unavailable(e: &EvalError) -> Option<String> {
    let EvalError::Source(inner) = e else { return None };
    match inner.downcast_ref::<ReadError>() {
        Some(r @ ReadError::Unavailable { .. }) => Some(r.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::meta::{NodeInfo, PartitionState, Versioned};

    fn view(live: &[i32], leader: i32, isr: &[i32]) -> ClusterView {
        let mut v = ClusterView::default();
        for &id in live {
            v.nodes.insert(
                id,
                NodeInfo {
                    id,
                    http: format!("127.0.0.1:{}", 7000 + id),
                    scheme: "http".into(),
                    kafka: None,
                    started_ms: 0,
                },
            );
        }
        v.partitions.insert(
            ("web".into(), 0),
            Versioned {
                value: PartitionState {
                    replicas: vec![1, 2, 3],
                    leader,
                    leader_epoch: 4,
                    isr: isr.to_vec(),
                },
                mod_revision: 1,
            },
        );
        v
    }

    #[test]
    fn the_leader_reads_first_then_in_sync_replicas_this_node_first() {
        // Node 2 asks; node 1 leads: the leader, then itself, then node 3.
        assert_eq!(candidates(&view(&[1, 2, 3], 1, &[1, 3, 2]), 2, "web", 0), vec![1, 2, 3]);
        // Node 1 leads and asks: itself.
        assert_eq!(candidates(&view(&[1, 2, 3], 1, &[1, 2]), 1, "web", 0)[0], 1);
    }

    #[test]
    fn dead_or_out_of_sync_nodes_are_never_asked() {
        // Leader 1 is dead, node 3 is out of sync: only node 2.
        assert_eq!(candidates(&view(&[2, 3], 1, &[1, 2]), 3, "web", 0), vec![2]);
        // No leader and the only in-sync replica dead: nobody, so the
        // query fails naming the partition rather than read a stale copy.
        assert!(candidates(&view(&[2, 3], -1, &[1]), 3, "web", 0).is_empty());
    }

    #[test]
    fn a_partition_the_cluster_does_not_know_is_read_here() {
        assert_eq!(candidates(&ClusterView::default(), 5, "local", 0), vec![5]);
    }

    #[test]
    fn unavailable_reads_are_told_from_other_failures() {
        let e = EvalError::Source(Box::new(ReadError::Unavailable {
            parts: "web/1".into(),
            tried: "node 2: refused".into(),
        }));
        let msg = unavailable(&e).unwrap();
        assert!(
            msg.contains("cannot read web/1") && msg.contains("node 2: refused"),
            "{msg}"
        );
        assert!(unavailable(&EvalError::InvalidRange("x".into())).is_none());
    }
}
