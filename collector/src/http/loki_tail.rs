//! `GET /loki/api/v1/tail` (WebSocket): matching entries as they arrive,
//! as Loki sends them: `{"streams":[{"stream":{..},"values":[["ns","line"]]}],
//! "dropped_entries":null}` per message.
//!
//! How: the first message holds the newest `limit` (default 100) entries
//! of the backlog, from `start` (default an hour ago) to each partition's
//! high watermark when the tail began, as in Loki; from there every
//! partition of the selected topics is polled, and each poll sends what
//! arrived since, so an entry is sent once per connection. A client that
//! reconnects with `start` just after the last timestamp it saw resumes
//! without gaps or repeats, as long as no two entries share that timestamp
//! across the reconnect (timestamps are milliseconds unless a Loki push
//! gave nanoseconds).
//!
//! In a cluster, a partition this node holds no in-sync copy of is read
//! from the node that does (its leader, else an in-sync replica), with the
//! query's selector and line-filter literals applied there
//! (`POST /v1/replica/scan`, from the tail's position in it); a node that
//! fails is replaced by the next in-sync replica from the same position,
//! so the tail goes on without losing or repeating an entry.
//!
//! Memory: a message holds at most [`MAX_MESSAGE_BYTES`] of lines (at
//! least one entry; the backlog's oldest entries give way first), and at
//! most `query.max_concurrent_tails` tails run at once (Loki's limit and
//! wording), so clients that never read hold a bounded amount each.
//! Queries are parsed off the runtime, within `[query]`'s budgets.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use logpost_shared::batch::RecordView;
use serde_json::{Value as Json_, json};

use super::AppState;
use super::error::ApiError;
use super::loki_params::Params;
use super::loki_read::{LokiError, parse_query};
use crate::cluster::node::Cluster;
use crate::cluster::reads::wire::ScanAsk;
use crate::cluster::reads::{candidates, scan_remote};
use crate::query::cursor::{PartitionCursor, RecordFilter, StoredRecord};
use crate::query::logql::{Expr, Labels, LogExpr};
use crate::query::source::{PartScan, labels_of, topics_for};
use crate::store::Store;
use crate::store::read::offset_for_time;
use crate::store::summary::INTERNAL_HEADER_PREFIX;
use crate::store::topic::now_ms;

/// How often new data is looked for.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Most entries one poll gathers (one message); the rest comes next poll.
const MAX_ENTRIES_PER_POLL: usize = 1000;
/// Most bytes of lines one message holds (it always holds one entry, so a
/// longer line goes alone): a client that never reads holds the collector
/// to about this much, plus the socket's buffers.
pub const MAX_MESSAGE_BYTES: usize = 256 << 10;

/// Tails running now, against `query.max_concurrent_tails`.
#[derive(Debug, Default)]
pub struct TailSlots {
    active: Arc<AtomicUsize>,
}

/// One running tail's slot, given back when dropped.
pub struct TailSlot {
    active: Arc<AtomicUsize>,
}

impl TailSlots {
    /// A slot, or Loki's refusal when `max` tails already run.
    ///
    /// # Errors
    /// 400 with Loki's "max concurrent tail requests limit exceeded".
    pub fn take(&self, max: usize) -> Result<TailSlot, ApiError> {
        let count = self.active.fetch_add(1, Ordering::AcqRel) + 1;
        if count > max {
            self.active.fetch_sub(1, Ordering::AcqRel);
            crate::metrics::rejected("tail_limit");
            return Err(ApiError::bad_request(format!(
                "max concurrent tail requests limit exceeded, count > limit ({count} > {max})"
            )));
        }
        crate::metrics::tails_active(count);
        Ok(TailSlot {
            active: Arc::clone(&self.active),
        })
    }
}

impl Drop for TailSlot {
    fn drop(&mut self) {
        let left = self.active.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        crate::metrics::tails_active(left);
    }
}

/// `GET /loki/api/v1/tail`.
///
/// # Errors
/// 400 for a bad query or parameter, a metric query, an unknown topic, or
/// when `query.max_concurrent_tails` tails already run.
pub async fn tail(
    State(app): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, LokiError> {
    let p = Params::parse(raw.as_deref());
    let q = p.query()?.to_owned();
    let q_text = q.clone();
    let start_ns = p
        .time("start")?
        .unwrap_or_else(|| now_ms().saturating_sub(3_600_000).saturating_mul(1_000_000));
    let limit = p.limit(100)?;
    let max_entries = app.config.query.max_entries;
    if limit > max_entries {
        return Err(ApiError::bad_request(format!(
            "max entries limit per query exceeded, limit > max_entries_limit ({limit} > {max_entries})"
        ))
        .into());
    }
    let slot = app.tails.take(app.config.query.max_concurrent_tails)?;
    let parsing = Arc::clone(&app);
    // Compiling a query (its regexes) is blocking work.
    let parsed = tokio::task::spawn_blocking(move || parse_query(&parsing.store, &q, &parsing.config.query))
        .await
        .map_err(|e| LokiError(ApiError::internal(&e)))??;
    let Expr::Log(log) = parsed else {
        return Err(ApiError::bad_request("tail needs a log query, not a metric query").into());
    };
    // The web page offers `logpost` beside its token (auth.rs): a browser
    // fails the connection unless one offered subprotocol is answered.
    Ok(ws
        .protocols(["logpost"])
        .on_upgrade(move |socket| run(app, Arc::new(log), q_text, start_ns, limit, socket, slot)))
}

/// `/loki/api/v2alpha/tail`: Grafana probes it and falls back to v1 on 404.
pub async fn v2alpha() -> Response {
    (StatusCode::NOT_FOUND, "logpost serves live tail at /loki/api/v1/tail\n").into_response()
}

/// Where each (topic, partition) is read up to.
pub type Positions = HashMap<(String, u32), i64>;

/// One tailed entry.
#[derive(Debug, Clone)]
pub struct TailEntry {
    pub labels: Labels,
    pub timestamp_ns: i64,
    pub line: String,
}

struct All;
impl RecordFilter for All {
    fn matches(&self, _: i64, _: &RecordView<'_>) -> bool {
        true
    }
}

/// Labels and ns timestamp of a copied-out record.
fn labels_and_ns(topic: &str, r: &StoredRecord) -> (Labels, i64) {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut ns = r.timestamp_ms.saturating_mul(1_000_000);
    for (k, v) in &r.headers {
        let raw = v.as_deref().unwrap_or_default();
        // From the raw bytes: `logpost.ns_be` is binary.
        if let Some(exact) = crate::ingest::loki::records::exact_ns(r.timestamp_ms, k.as_bytes(), raw) {
            ns = exact;
        }
        if k.starts_with(INTERNAL_HEADER_PREFIX) || pairs.iter().any(|(n, _)| n == k) {
            continue;
        }
        pairs.push((k.clone(), String::from_utf8_lossy(raw).into_owned()));
    }
    (labels_of(topic, &pairs), ns)
}

/// The other nodes of a cluster, read for the partitions this node holds
/// no in-sync copy of.
pub struct Remote {
    pub cluster: Arc<Cluster>,
    pub handle: tokio::runtime::Handle,
    /// The query as the user wrote it: what the other nodes are sent.
    pub query: String,
}

/// What a tail reads: its log query over this node's store and, in a
/// cluster, over the other nodes'.
pub struct TailQuery<'a> {
    pub store: &'a Store,
    pub log: &'a LogExpr,
    /// Entries before this are not shown.
    pub start_ns: i64,
    pub max_uncompressed: usize,
    pub remote: Option<&'a Remote>,
}

/// Reads what arrived past `positions` (new partitions start at
/// `start_ns`), up to each partition's high watermark, handing each entry
/// the pipeline passes to `keep` until it says stop; advances `positions`
/// past what was read. In a cluster (`remote`), a partition this node
/// holds no in-sync copy of is read from the node that does (`remote`).
///
/// # Errors
/// A read error, as text.
fn read_new(
    q: &TailQuery<'_>,
    positions: &mut Positions,
    mut keep: impl FnMut(TailEntry) -> ControlFlow<()>,
) -> Result<(), String> {
    let TailQuery {
        store,
        log,
        start_ns,
        max_uncompressed,
        remote,
    } = *q;
    let filter = Arc::new(All);
    let view = remote.map(|r| r.cluster.view());
    let mut elsewhere: Vec<((String, u32), Vec<i32>)> = Vec::new();
    for topic in topics_for(store, &log.selector) {
        for partition in &topic.partitions {
            let key = (topic.name.to_string(), partition.id);
            if let (Some(r), Some(view)) = (remote, view.as_deref()) {
                let readers = candidates(view, r.cluster.me.id, &topic.name, partition.id);
                if !readers.contains(&r.cluster.me.id) {
                    elsewhere.push((key, readers));
                    continue;
                }
            }
            let view = partition.view();
            let from = match positions.get(&key) {
                Some(&o) => o.max(view.log_start_offset),
                None => offset_for_time(&view, start_ns.div_euclid(1_000_000))
                    .map_err(|e| e.to_string())?
                    .unwrap_or(view.high_watermark),
            };
            let hwm = view.high_watermark;
            let mut cursor = PartitionCursor::new(partition.id, view, from, Arc::clone(&filter), max_uncompressed);
            let mut next = from;
            let flow = loop {
                let Some(r) = cursor.next_record().map_err(|e| e.to_string())? else {
                    next = hwm.max(next);
                    break ControlFlow::Continue(());
                };
                next = r.offset + 1;
                let (mut labels, ts) = labels_and_ns(&topic.name, &r);
                if ts < start_ns || !log.selector.matches(&labels) {
                    continue;
                }
                if let Some(metadata) = crate::query::source::stored_metadata(&r.headers) {
                    labels.add_metadata(&metadata);
                }
                let value = r.value.as_deref().unwrap_or_default();
                if let Some(line) = log.pipeline.process(value, &mut labels) {
                    let entry = TailEntry {
                        labels,
                        timestamp_ns: ts,
                        line: String::from_utf8_lossy(&line).into_owned(),
                    };
                    if keep(entry).is_break() {
                        break ControlFlow::Break(());
                    }
                }
            };
            positions.insert(key, next);
            if flow.is_break() {
                return Ok(());
            }
        }
    }
    if let Some(r) = remote
        && !elsewhere.is_empty()
    {
        read_elsewhere(r, log, positions, start_ns, elsewhere, &mut keep);
    }
    Ok(())
}

/// Reads `parts` from the nodes that hold them (each from its first
/// reader that answers), from their positions on, as [`read_new`] reads
/// local ones. A part no reader answered for keeps its position: the next
/// poll tries again, so the tail neither skips nor repeats an entry.
fn read_elsewhere(
    remote: &Remote,
    log: &LogExpr,
    positions: &mut Positions,
    start_ns: i64,
    parts: Vec<((String, u32), Vec<i32>)>,
    keep: &mut impl FnMut(TailEntry) -> ControlFlow<()>,
) {
    // Parts by the node to ask first, then the next reader of those that failed.
    let mut pending = parts;
    let mut failed: Vec<i32> = Vec::new();
    while let Some(node) = pending
        .iter()
        .find_map(|(_, readers)| readers.iter().copied().find(|n| !failed.contains(n)))
    {
        let (mine, rest): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(_, readers)| readers.iter().copied().find(|n| !failed.contains(n)) == Some(node));
        pending = rest;
        let ask = ScanAsk {
            query: remote.query.clone(),
            log_index: 0,
            start_ns,
            end_ns: i64::MAX,
            parts: mine
                .iter()
                .map(|((topic, partition), _)| PartScan {
                    topic: topic.clone(),
                    partition: *partition,
                    from_offset: positions.get(&(topic.clone(), *partition)).copied().unwrap_or(i64::MIN),
                })
                .collect(),
            want_ends: true,
        };
        let mut stats = crate::query::source::ScanStats::default();
        let mut stopped = false;
        let answer = scan_remote(
            &remote.cluster,
            &remote.handle,
            node,
            &ask,
            &mut stats,
            &mut |i, offset, e| {
                let Some((key, _)) = mine.get(i) else {
                    return ControlFlow::Continue(());
                };
                positions.insert(key.clone(), offset.saturating_add(1));
                let mut labels = e.labels.clone();
                if let Some(metadata) = &e.metadata {
                    labels.add_metadata(metadata);
                }
                let Some(line) = log.pipeline.process(e.line, &mut labels) else {
                    return ControlFlow::Continue(());
                };
                let entry = TailEntry {
                    labels,
                    timestamp_ns: e.timestamp_ns,
                    line: String::from_utf8_lossy(&line).into_owned(),
                };
                let flow = keep(entry);
                stopped = flow.is_break();
                flow
            },
        );
        match answer {
            Ok(done) => {
                if stopped {
                    return;
                }
                for (((topic, partition), _), end) in mine.iter().zip(done.ends.unwrap_or_default()) {
                    let at = positions.entry((topic.clone(), *partition)).or_insert(end);
                    *at = (*at).max(end);
                }
            }
            Err((e, _)) => {
                tracing::warn!(node, error = %e, "a node failed to answer its part of a live tail; asking another in-sync replica");
                failed.push(node);
                // Positions moved past every entry delivered: the next
                // reader resumes there.
                pending.extend(mine);
            }
        }
    }
    if !pending.is_empty() {
        let missing: Vec<String> = pending.iter().map(|((t, p), _)| format!("{t}/{p}")).collect();
        tracing::warn!(parts = %missing.join(", "), "no in-sync replica answered for these partitions of a live tail; trying again at the next poll");
    }
}

/// What arrived past `positions`: at most `max` entries and about
/// `max_bytes` of lines (always one entry if any arrived), advancing
/// `positions` past them only.
///
/// # Errors
/// A read error, as text.
pub fn poll(
    q: &TailQuery<'_>,
    positions: &mut Positions,
    max: usize,
    max_bytes: usize,
) -> Result<Vec<TailEntry>, String> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    read_new(q, positions, |e| {
        bytes = bytes.saturating_add(e.line.len());
        out.push(e);
        if out.len() >= max || bytes >= max_bytes {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(out)
}

/// The backlog's newest `limit` entries from `start_ns` on, oldest first,
/// within `max_bytes` of lines (the oldest give way; the newest entry is
/// always kept), reading every partition up to its high watermark and
/// leaving `positions` there.
///
/// # Errors
/// A read error, as text.
pub fn backlog(
    q: &TailQuery<'_>,
    positions: &mut Positions,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<TailEntry>, String> {
    // A min-heap by (time, arrival): its top is the oldest kept.
    let mut newest: BinaryHeap<Reverse<(i64, u64, Kept)>> = BinaryHeap::new();
    let (mut seq, mut bytes) = (0u64, 0usize);
    read_new(q, positions, |e| {
        seq += 1;
        if limit == 0 {
            return ControlFlow::Continue(());
        }
        bytes = bytes.saturating_add(e.line.len());
        newest.push(Reverse((e.timestamp_ns, seq, Kept(e))));
        while newest.len() > limit || (bytes > max_bytes && newest.len() > 1) {
            if let Some(Reverse((_, _, Kept(old)))) = newest.pop() {
                bytes = bytes.saturating_sub(old.line.len());
            }
        }
        ControlFlow::Continue(())
    })?;
    let mut out: Vec<(i64, u64, TailEntry)> = newest.into_iter().map(|Reverse((t, s, Kept(e)))| (t, s, e)).collect();
    out.sort_by_key(|(t, s, _)| (*t, *s));
    Ok(out.into_iter().map(|(_, _, e)| e).collect())
}

/// An entry in the backlog heap, ordered by its key alone.
struct Kept(TailEntry);

impl PartialEq for Kept {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Kept {}
impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Kept {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// Loki's tail message for `entries` (grouped by label set, in order).
pub fn message(entries: &[TailEntry]) -> Json_ {
    let mut groups: Vec<(&Labels, Vec<Json_>)> = Vec::new();
    for e in entries {
        let value = json!([e.timestamp_ns.to_string(), e.line]);
        match groups.iter_mut().find(|(l, _)| **l == e.labels) {
            Some((_, v)) => v.push(value),
            None => groups.push((&e.labels, vec![value])),
        }
    }
    let streams: Vec<Json_> = groups
        .into_iter()
        .map(|(l, values)| {
            let stream: serde_json::Map<String, Json_> = l
                .iter()
                .map(|(k, v)| (k.to_string(), Json_::String(v.to_string())))
                .collect();
            json!({ "stream": stream, "values": values })
        })
        .collect();
    json!({ "streams": streams, "dropped_entries": null })
}

async fn run(
    app: Arc<AppState>,
    log: Arc<LogExpr>,
    query: String,
    start_ns: i64,
    limit: usize,
    mut socket: WebSocket,
    _slot: TailSlot,
) {
    let mut positions = Positions::new();
    let max_uncompressed = app.config.max_uncompressed_bytes;
    let remote = app.cluster.as_ref().map(|c| {
        Arc::new(Remote {
            cluster: Arc::clone(c),
            handle: tokio::runtime::Handle::current(),
            query,
        })
    });
    let mut first = true;
    loop {
        let (store, q) = (Arc::clone(&app.store), Arc::clone(&log));
        let remote = remote.clone();
        let mut pos = std::mem::take(&mut positions);
        let backlog_now = first;
        // A poll reads and inflates batches: one of the query slots.
        let Ok(slot) = app.queries.acquire().await else {
            return; // shutting down
        };
        let polled = tokio::task::spawn_blocking(move || {
            let tq = TailQuery {
                store: &store,
                log: &q,
                start_ns,
                max_uncompressed,
                remote: remote.as_deref(),
            };
            let r = if backlog_now {
                backlog(&tq, &mut pos, limit, MAX_MESSAGE_BYTES)
            } else {
                poll(&tq, &mut pos, MAX_ENTRIES_PER_POLL, MAX_MESSAGE_BYTES)
            };
            (r, pos)
        })
        .await;
        // Not held while sending: a client that does not read would keep it.
        drop(slot);
        let (result, pos) = match polled {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "tail poll failed");
                return;
            }
        };
        positions = pos;
        first = false;
        let entries = match result {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "tail read failed");
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        };
        if !entries.is_empty() {
            let text = message(&entries).to_string();
            drop(entries);
            if socket.send(Message::Text(text.into())).await.is_err() {
                return; // the client went away
            }
            crate::metrics::tail_message();
        }
        // Wait for the next poll, or for the client to close.
        tokio::select! {
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::loki::records::{DECIMAL_SUB_MS_HEADER, SUB_MS_HEADER, sub_ms_bytes};

    fn record(headers: &[(&str, &[u8])]) -> StoredRecord {
        StoredRecord {
            partition: 0,
            offset: 7,
            producer_id: -1,
            timestamp_ms: 1_700_000_000_123,
            key: None,
            value: Some(b"line".to_vec()),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Some(v.to_vec())))
                .collect(),
        }
    }

    /// The binary sub-millisecond header is read from its bytes (a lossy
    /// UTF-8 copy of them would lose the time) and is not a label.
    #[test]
    fn a_loki_push_keeps_its_nanoseconds_in_the_tail() {
        let (labels, ns) = labels_and_ns("t", &record(&[("job", b"a"), (SUB_MS_HEADER, &sub_ms_bytes(456_789))]));
        assert_eq!(ns, 1_700_000_000_123_456_789);
        assert_eq!(labels.get("job"), Some("a"));
        assert_eq!(labels.get("topic"), Some("t"));
        assert_eq!(labels.len(), 2, "logpost's own headers are not labels");
        let (_, ns) = labels_and_ns("t", &record(&[(DECIMAL_SUB_MS_HEADER, b"7")]));
        assert_eq!(ns, 1_700_000_000_123_000_007);
        let (_, ns) = labels_and_ns("t", &record(&[("job", b"a")]));
        assert_eq!(ns, 1_700_000_000_123_000_000);
    }
}
