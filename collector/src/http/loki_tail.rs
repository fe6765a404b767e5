//! `GET /loki/api/v1/tail` (WebSocket): matching entries as they arrive,
//! as Loki sends them: `{"streams":[{"stream":{..},"values":[["ns","line"]]}],
//! "dropped_entries":null}` per message.
//!
//! How: every partition of the selected topics is read from an offset
//! (found by time for `start`, default an hour ago) up to its high
//! watermark, then polled; each poll sends what arrived since, so an entry
//! is sent once per connection. A client that reconnects with `start` just
//! after the last timestamp it saw resumes without gaps or repeats, as
//! long as no two entries share that timestamp across the reconnect
//! (timestamps are milliseconds unless a Loki push gave nanoseconds).
//! The first message holds at most `limit` (default 100) of the newest
//! backlog entries, as in Loki.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
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
use crate::query::cursor::{PartitionCursor, RecordFilter, StoredRecord};
use crate::query::logql::{Expr, Labels, LogExpr};
use crate::query::source::{labels_of, topics_for};
use crate::store::Store;
use crate::store::read::offset_for_time;
use crate::store::summary::INTERNAL_HEADER_PREFIX;
use crate::store::topic::now_ms;

/// How often new data is looked for.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Most entries one poll gathers (one message); the rest comes next poll.
const MAX_ENTRIES_PER_POLL: usize = 1000;

/// `GET /loki/api/v1/tail`.
///
/// # Errors
/// 400 for a bad query or parameter, a metric query, an unknown topic.
pub async fn tail(
    State(app): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, LokiError> {
    let p = Params::parse(raw.as_deref());
    let Expr::Log(log) = parse_query(&app.store, p.query()?)? else {
        return Err(ApiError::bad_request("tail needs a log query, not a metric query").into());
    };
    let start_ns = p
        .time("start")?
        .unwrap_or_else(|| now_ms().saturating_sub(3_600_000).saturating_mul(1_000_000));
    let limit = p.limit(100)?;
    // The web page offers `logpost` beside its token (auth.rs): a browser
    // fails the connection unless one offered subprotocol is answered.
    Ok(ws
        .protocols(["logpost"])
        .on_upgrade(move |socket| run(app, Arc::new(log), start_ns, limit, socket)))
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

/// Reads what arrived past `positions` (new partitions start at
/// `start_ns`), up to `max` entries, advancing `positions`.
///
/// # Errors
/// A read error, as text.
pub fn poll(
    store: &Store,
    log: &LogExpr,
    positions: &mut Positions,
    start_ns: i64,
    max_uncompressed: usize,
    max: usize,
) -> Result<Vec<TailEntry>, String> {
    let mut out = Vec::new();
    let filter = Arc::new(All);
    for topic in topics_for(store, &log.selector) {
        for partition in &topic.partitions {
            let view = partition.view();
            let key = (topic.name.to_string(), partition.id);
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
                if out.len() >= max {
                    break ControlFlow::Break(());
                }
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
                    out.push(TailEntry {
                        labels,
                        timestamp_ns: ts,
                        line: String::from_utf8_lossy(&line).into_owned(),
                    });
                }
            };
            positions.insert(key, next);
            if flow.is_break() {
                return Ok(out);
            }
        }
    }
    Ok(out)
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

async fn run(app: Arc<AppState>, log: Arc<LogExpr>, start_ns: i64, limit: usize, mut socket: WebSocket) {
    let mut positions = Positions::new();
    let max_uncompressed = app.config.max_uncompressed_bytes;
    let mut first = true;
    loop {
        let (store, q) = (Arc::clone(&app.store), Arc::clone(&log));
        let mut pos = std::mem::take(&mut positions);
        let polled = tokio::task::spawn_blocking(move || {
            let r = poll(&store, &q, &mut pos, start_ns, max_uncompressed, MAX_ENTRIES_PER_POLL);
            (r, pos)
        })
        .await;
        let (result, pos) = match polled {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "tail poll failed");
                return;
            }
        };
        positions = pos;
        let mut entries = match result {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "tail read failed");
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
        };
        if first {
            entries.sort_by_key(|e| e.timestamp_ns);
            let drop = entries.len().saturating_sub(limit);
            entries.drain(..drop);
            first = false;
        }
        if !entries.is_empty() {
            let text = message(&entries).to_string();
            if socket.send(Message::Text(text.into())).await.is_err() {
                return; // the client went away
            }
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
