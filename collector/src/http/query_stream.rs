//! `GET /v1/query?query=<LogQL>`: logpost's own streaming answer to a log
//! query, for results of any size: NDJSON records (the `query::output`
//! shape) oldest first, per topic, partitions merged by time.
//!
//! - First lines at once: a chunk goes out when 64 KiB are ready or 100 ms
//!   after its first line, whichever comes first.
//! - Memory does not grow with the result: one decoded batch per partition
//!   and a bounded queue of chunks (`CHUNKS_IN_FLIGHT`) to the socket.
//! - Cancelled when the client goes away: the send fails or the queue is
//!   seen closed, and the scan stops (skipping batches unread from then on).
//!
//! The line sent is the line after the pipeline (`line_format` rewrites
//! it); labels the pipeline extracts are sent as `labels`. Pruning: each
//! partition is read from the first offset the time index gives for
//! `start`, batches by their time bounds, and within a batch only the
//! records the prefilter's search touches are decoded; the selector is
//! checked per record. `direction=backward` reads segments newest first
//! and stops where older ones cannot hold one of the newest `limit`.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use logpost_shared::batch::RecordView;
use regex::bytes::Regex;
use serde_json::Value;

use super::AppState;
use super::error::{ApiError, chain};
use super::loki_params::parse_time;
use crate::query::cursor::{RecordFilter, StoredRecord};
use crate::query::exec::scan_topic;
use crate::query::logql::{Direction, Expr, Labels, LogExpr, Pipeline, found, parse_with};
use crate::query::output::RecordJson;
use crate::query::prefilter::Prefilter;
use crate::query::source::newest_records;
use crate::query::source::{labels_of, topics_for, unknown_topic};
use crate::store::StoreError;
use crate::store::summary::{INTERNAL_HEADER_PREFIX, LabelBytes};

/// Bytes of NDJSON gathered before a chunk is sent.
const CHUNK_BYTES: usize = 64 << 10;
/// Longest a started chunk waits for more lines: keeps a selective query's
/// first lines from waiting for 64 KiB of them.
const CHUNK_AGE: Duration = Duration::from_millis(100);
/// Chunks in flight between the scan and the socket: the memory bound for
/// a client that reads slowly.
const CHUNKS_IN_FLIGHT: usize = 4;

/// What a LogQL stream query needs.
#[derive(Debug)]
pub struct StreamQuery {
    pub query: String,
    pub grep: Option<String>,
    /// Inclusive bounds, ns; `None` = unbounded.
    pub start: Option<String>,
    pub end: Option<String>,
    /// 0 = no limit (forward only).
    pub limit: usize,
    /// Forward: the oldest `limit` records, oldest first, streamed as
    /// found. Backward: the newest `limit`, newest first, sent once found:
    /// segments are read newest first and only as far back as they can
    /// still hold one of them (memory: `limit` records).
    pub direction: Direction,
    /// Only these partitions of this node (a cluster node's part of a
    /// query asked elsewhere); `None`: every partition, in a cluster
    /// across the nodes (`query_fanout`).
    pub only: Option<Vec<(String, u32)>>,
}

struct LogqlFilter {
    log: Arc<LogExpr>,
    prefilter: Prefilter,
    grep: Option<Regex>,
    start_ms: i64,
    end_ms: i64,
    /// Set when the client is gone: every later batch is skipped unread.
    cancelled: Arc<AtomicBool>,
    /// The queue to the socket, to notice a client gone while nothing matches.
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    /// Labels of the last record checked, and the answer.
    last: Mutex<(LabelBytes, bool)>,
    /// The partitions read; `None`: all.
    only: Option<Vec<(String, u32)>>,
}

impl RecordFilter for LogqlFilter {
    fn may_match_batch(&self, _base_timestamp: i64, max_timestamp: i64) -> bool {
        if self.tx.is_closed() {
            self.cancelled.store(true, Ordering::Relaxed);
        }
        !self.cancelled.load(Ordering::Relaxed) && max_timestamp >= self.start_ms
    }

    fn prefilter(&self) -> Option<&Prefilter> {
        Some(&self.prefilter)
    }

    fn wants_partition(&self, topic: &str, partition: u32) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|(t, p)| t == topic && *p == partition))
    }

    fn matches(&self, timestamp_ms: i64, record: &RecordView<'_>) -> bool {
        if timestamp_ms < self.start_ms || timestamp_ms > self.end_ms {
            return false;
        }
        let line = record.value.unwrap_or_default();
        if !self.prefilter.may_match(line) || self.grep.as_ref().is_some_and(|g| !found(g, line)) {
            return false;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if !last.0.same(record) {
            last.0.keep(record);
            // Topic is checked by the scan's choice of topics.
            let labels: Labels = crate::store::summary::stream_labels(record)
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let ok = self
                .log
                .selector
                .matchers
                .iter()
                .filter(|m| m.name != crate::query::logql::TOPIC_LABEL)
                .all(|m| m.matches(labels.get(&m.name)));
            last.1 = ok;
        }
        last.1
    }
}

/// Labels (with `topic`) of a copied-out record.
fn record_labels(topic: &str, r: &StoredRecord) -> Labels {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in &r.headers {
        if k.starts_with(INTERNAL_HEADER_PREFIX) || pairs.iter().any(|(n, _)| n == k) {
            continue;
        }
        pairs.push((
            k.clone(),
            String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned(),
        ));
    }
    labels_of(topic, &pairs)
}

/// A record as sent: the line after the pipeline, and its labels if the
/// pipeline changed them; `None` if the pipeline drops it.
fn render(topic: &str, pipeline: &Pipeline, record: &StoredRecord) -> Option<RecordJson> {
    let mut labels = record_labels(topic, record);
    if let Some(metadata) = crate::query::source::stored_metadata(&record.headers) {
        labels.add_metadata(&metadata);
    }
    let value = record.value.as_deref().unwrap_or_default();
    let line = pipeline.process(value, &mut labels)?;
    let mut json = RecordJson::new(topic, record);
    if line.as_ref() != value {
        let stored = StoredRecord {
            value: Some(line.into_owned()),
            ..record.clone()
        };
        let rewritten = RecordJson::new(topic, &stored);
        json.line = rewritten.line;
        json.line_base64 = rewritten.line_base64;
    }
    let stream = record_labels(topic, record);
    if labels != stream {
        json.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
                .collect(),
        );
    }
    Some(json)
}

/// The query and `grep` compiled within `[query]`'s budgets (regexes take
/// time and memory to compile: called on the blocking pool).
fn compile(app: &AppState, query: &str, grep: Option<&str>) -> Result<(LogExpr, Option<Regex>), ApiError> {
    let budgets = &app.config.query;
    let expr = parse_with(query, &budgets.limits()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if let Some(topic) = unknown_topic(&app.store, &expr) {
        return Err(StoreError::UnknownTopic(topic).into());
    }
    let Expr::Log(log) = expr else {
        return Err(ApiError::bad_request(
            "a metric query has no records to stream: use /loki/api/v1/query_range",
        ));
    };
    let grep = match grep {
        None | Some("") => None,
        Some(p) => Some(
            regex::bytes::RegexBuilder::new(p)
                .size_limit(budgets.max_regex_bytes)
                .dfa_size_limit(budgets.max_regex_bytes)
                .build()
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "invalid grep regex {p:?}: {e} (a program may take query.max_regex_bytes)"
                    ))
                })?,
        ),
    };
    Ok((log, grep))
}

/// Streams the result of a LogQL log query.
///
/// # Errors
/// 400 for a bad query, regex or time, a metric query, or a backward query
/// past `query.max_backward_records`; 404 for a topic the query names that does not
/// exist.
pub async fn stream(app: Arc<AppState>, q: StreamQuery) -> Result<Response, ApiError> {
    let backward = q.direction == Direction::Backward;
    let max_records = app.config.query.max_backward_records;
    if backward && q.limit > max_records {
        return Err(ApiError::bad_request(format!(
            "limit {} is past the {max_records} records a backward query may hold (query.max_backward_records); page with end= or read forward",
            q.limit
        )));
    }
    let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| {
                parse_time(s).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid parameter \"{name}\": cannot parse {s:?} as a timestamp"
                    ))
                })
            })
            .transpose()
    };
    let start_ns = time("start", &q.start)?.unwrap_or(i64::MIN);
    let end_ns = time("end", &q.end)?.unwrap_or(i64::MAX);
    if end_ns < start_ns {
        return Err(ApiError::bad_request(format!(
            "invalid time range: end ({end_ns}) is before start ({start_ns})"
        )));
    }
    if backward && q.limit == 0 {
        return Err(ApiError::bad_request(
            "direction=backward needs a limit (it returns the newest `limit` records); use direction=forward for all of them",
        ));
    }
    if q.only.is_none()
        && let Some(cluster) = &app.cluster
        && let Some(plan) = super::query_fanout::plan(&app.store, cluster, &q.query, &app.config.query).await?
    {
        return super::query_fanout::fan_out(Arc::clone(cluster), q, plan).await;
    }
    let limit = if q.limit == 0 { usize::MAX } else { q.limit };
    let compiling = Arc::clone(&app);
    let (query, grep) = (q.query, q.grep);
    let (log, grep) = tokio::task::spawn_blocking(move || compile(&compiling, &query, grep.as_deref())).await??;
    let log = Arc::new(log);
    let cancelled = Arc::new(AtomicBool::new(false));
    let max_uncompressed = app.config.max_uncompressed_bytes;
    let query_threads = app.config.http.query_threads;
    let max_result_bytes = app.config.query.max_result_bytes;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(CHUNKS_IN_FLIGHT);
    let filter = Arc::new(LogqlFilter {
        prefilter: Prefilter::new(&log.pipeline),
        log: Arc::clone(&log),
        grep,
        start_ms: start_ns.div_euclid(1_000_000),
        end_ms: end_ns.div_euclid(1_000_000),
        cancelled: Arc::clone(&cancelled),
        last: Mutex::new((LabelBytes::default(), false)),
        tx: tx.clone(),
        only: q.only,
    });
    let from_ms = (start_ns != i64::MIN).then(|| start_ns.div_euclid(1_000_000));
    let scan = tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(CHUNK_BYTES);
        let mut chunk_started = Instant::now();
        let mut left = limit;
        // Backward: the newest `limit` records (of every topic so far).
        let mut kept: Vec<(i64, RecordJson)> = Vec::new();
        for topic in topics_for(&app.store, &log.selector) {
            if left == 0 || cancelled.load(Ordering::Relaxed) {
                break;
            }
            let result = if backward {
                // Every topic at once: `newest_records` merges them.
                let range = (start_ns, end_ns.saturating_add(1));
                let wanted = |t: &str, p: u32| filter.wants_partition(t, p);
                let newest = newest_records(
                    &app.store,
                    &log,
                    Some(&wanted),
                    range,
                    limit,
                    max_result_bytes,
                    max_uncompressed,
                    query_threads,
                    |hit| {
                        let line = hit.record.value.unwrap_or_default();
                        if filter.grep.as_ref().is_some_and(|g| !found(g, line)) {
                            return None;
                        }
                        // Whether the pipeline keeps it; rendering waits until
                        // the newest `limit` are known.
                        // (The scan ran the leading line filters.)
                        log.pipeline
                            .process_after_leading_filters(line, &mut hit.labels.clone())?;
                        let record = StoredRecord::from_view(
                            hit.partition,
                            hit.offset,
                            hit.producer_id,
                            hit.timestamp_ms,
                            hit.record,
                        );
                        // What a kept record holds: its line, key and headers.
                        let size = line.len()
                            + record.key.as_ref().map_or(0, Vec::len)
                            + record
                                .headers
                                .iter()
                                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                                .sum::<usize>();
                        Some(((hit.topic.to_owned(), record), size))
                    },
                );
                left = 0;
                newest
                    .map(|newest| {
                        kept = newest
                            .into_iter()
                            .filter_map(|(ts, (topic, record))| Some((ts, render(&topic, &log.pipeline, &record)?)))
                            .collect();
                    })
                    .map_err(|e| chain(&e))
            } else {
                scan_topic(
                    &topic,
                    Arc::clone(&filter),
                    from_ms,
                    usize::MAX,
                    max_uncompressed,
                    query_threads,
                    |record| {
                        let Some(json) = render(&topic.name, &log.pipeline, &record) else {
                            return ControlFlow::Continue(());
                        };
                        if chunk.is_empty() {
                            chunk_started = Instant::now();
                        }
                        if serde_json::to_writer(&mut chunk, &json).is_err() {
                            return ControlFlow::Break(());
                        }
                        chunk.push(b'\n');
                        left -= 1;
                        if chunk.len() >= CHUNK_BYTES || chunk_started.elapsed() >= CHUNK_AGE {
                            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES));
                            // A send error means the client went away: stop scanning.
                            if tx.blocking_send(Ok(full)).is_err() {
                                cancelled.store(true, Ordering::Relaxed);
                                return ControlFlow::Break(());
                            }
                        }
                        if tx.is_closed() {
                            cancelled.store(true, Ordering::Relaxed);
                        }
                        if left == 0 {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    },
                )
                .map(|_| ())
                .map_err(|e| chain(&e))
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "query failed while streaming");
                let line = serde_json::json!({ "error": e }).to_string();
                chunk.extend_from_slice(line.as_bytes());
                chunk.push(b'\n');
                break;
            }
        }
        for (_, json) in &kept {
            if serde_json::to_writer(&mut chunk, json).is_err() {
                break;
            }
            chunk.push(b'\n');
            if chunk.len() >= CHUNK_BYTES {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES));
                if tx.blocking_send(Ok(full)).is_err() {
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Ok(chunk));
        }
    });
    // The scan ends by itself when done or when the client leaves; this
    // only makes a panic in it visible.
    tokio::spawn(async move {
        if let Err(e) = scan.await {
            tracing::error!(error = %e, "query task failed");
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}
