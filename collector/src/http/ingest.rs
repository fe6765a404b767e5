//! `POST /v1/ingest/{topic}`: a body of RecordBatch v2 frames in, offsets out.
//!
//! The body is validated whole on the blocking pool (CRC, structure, and a
//! bounded decompression of every batch), routed batch by batch to
//! partitions, and handed to the writer threads; the response is sent only
//! once every batch is durable. A refused body changes nothing.
//!
//! Batches of producers with an id (every file an agent tails) are
//! deduplicated by the store: a retried batch is answered `"duplicate"`
//! and not stored again. A batch whose sequence leaves a gap, or whose
//! producer epoch is fenced, is refused: the response is then 409, lists
//! each batch's outcome, and the other batches are stored.
//!
//! `?pipelined=true` marks a request sent while the client's previous one
//! was unanswered (the agent's `batch.max_in_flight`): it may overtake its
//! predecessor on the way. Each producer's batch then waits (up to
//! `[ingest] predecessor_wait`) until it continues what is stored, and the store
//! refuses it if it still does not, rather than appending it first and
//! taking the predecessor for a duplicate.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::ingest::BATCH_CONTENT_TYPE;
use crate::ingest::validate::{CheckedBatch, split_and_check};
use crate::store::{AppendItem, BatchOutcome, Partition, StoreError};

/// Query parameters of an ingest request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestParams {
    /// Append every batch to this partition instead of routing by key.
    pub partition: Option<u32>,
    /// The client sent this request while its previous one was still
    /// unanswered (the agent's `max_in_flight`). Each producer's batch then
    /// waits briefly for its predecessor and is refused (409) if it would
    /// otherwise be stored out of order; the client sends it again.
    #[serde(default)]
    pub pipelined: bool,
}

/// What happened to one batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppendedBatch {
    pub partition: u32,
    /// `appended`, `trimmed` (its first records were stored already),
    /// `duplicate` (all were) or `refused`.
    pub outcome: String,
    /// Offsets of what was stored (absent for refused batches, and for
    /// duplicates that are not among the producer's recent batches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_offset: Option<i64>,
    /// Why a batch was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The acknowledgement: one entry per batch, in request order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestResponse {
    pub topic: String,
    pub batches: Vec<AppendedBatch>,
    /// Set when a batch was refused (status 409).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Handles an ingest request.
///
/// # Errors
/// 415 for a wrong content type, 413 for an oversized body or batch, 400 for
/// a bad body, topic name or partition, 404 if the topic may not be created,
/// 507 on a full disk, 503 for a poisoned partition or during shutdown. 409
/// (with the per-batch outcomes) when a batch's sequence was refused.
pub async fn ingest(
    State(app): State<Arc<AppState>>,
    Path(topic): Path<String>,
    Query(params): Query<IngestParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_content_type(&headers)?;
    let body = body.map_err(|r| ApiError::from_body(&r, app.config.max_body_bytes))?;
    let limit = app.config.max_uncompressed_bytes;
    let max_records = app.config.http.max_batch_records;
    let store = Arc::clone(&app.store);
    let topic_name = topic.clone();
    let permit = app.validations.acquire().await.map_err(|_| StoreError::ShuttingDown)?;
    // Validation decompresses and topic creation fsyncs: both off the runtime.
    let (topic, batches) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let batches = split_and_check(&body, limit)?;
        check_record_counts(&batches, max_records)?;
        let topic = store.topic_for_ingest(&topic_name)?;
        Ok((topic, batches))
    })
    .await??;
    drop(permit);

    let count = topic.meta.partitions;
    let mut per_partition: Vec<Vec<usize>> = vec![Vec::new(); count as usize];
    for (i, b) in batches.iter().enumerate() {
        let p = match params.partition {
            Some(p) if p < count => p,
            Some(p) => {
                return Err(StoreError::NoSuchPartition {
                    topic: topic.name.to_string(),
                    partition: p,
                    count,
                }
                .into());
            }
            None => app
                .router
                .partition(b.key.as_deref(), b.header.producer.producer_id, count),
        };
        if let Some(list) = per_partition.get_mut(p as usize) {
            list.push(i);
        }
    }

    if params.pipelined {
        let shares: Vec<(&Arc<Partition>, Vec<&CheckedBatch>)> = per_partition
            .iter()
            .enumerate()
            .filter_map(|(p, indexes)| {
                let partition = topic.partition(p as u32)?;
                Some((partition, indexes.iter().filter_map(|&i| batches.get(i)).collect()))
            })
            .collect();
        wait_for_predecessors(&shares, app.config.predecessor_wait).await;
    }

    // In a cluster, this node must lead every partition the body goes to
    // (with enough replicas in sync): checked before anything is stored.
    let mut epochs: Vec<Option<i32>> = vec![None; count as usize];
    if let Some(cluster) = &app.cluster {
        for (p, indexes) in per_partition.iter().enumerate() {
            if indexes.is_empty() {
                continue;
            }
            let Some(partition) = topic.partition(p as u32) else {
                continue;
            };
            let epoch = cluster.ticket(partition, true)?;
            if let Some(slot) = epochs.get_mut(p) {
                *slot = Some(epoch);
            }
        }
    }

    // Submit every partition's share before awaiting any, so that they are
    // written (and fsynced) concurrently.
    let mut pending = Vec::new();
    for (p, indexes) in per_partition.iter().enumerate() {
        if indexes.is_empty() {
            continue;
        }
        let Some(partition) = topic.partition(p as u32) else {
            continue;
        };
        let items = indexes
            .iter()
            .filter_map(|&i| batches.get(i))
            .map(|b| AppendItem {
                frame: b.frame.clone(),
                cursor: b.cursor.clone(),
                stats: Some(Arc::clone(&b.stats)),
                ahead: params.pipelined,
                replicated: false,
            })
            .collect();
        pending.push((p as u32, indexes, app.writer.submit(Arc::clone(partition), items).await));
    }
    let mut results: Vec<Option<AppendedBatch>> = vec![None; batches.len()];
    let mut refused = None;
    let (mut stored, mut records, mut bytes, mut duplicates) = (0u64, 0u64, 0u64, 0u64);
    for (p, indexes, receiver) in pending {
        let outcomes = match receiver {
            Ok(rx) => rx
                .await
                .map_err(|_| StoreError::ShuttingDown)?
                .map_err(|e| ApiError::from(&*e))?,
            Err(e) => return Err(ApiError::from(&*e)),
        };
        // acks=all: answered once every in-sync replica holds it (a
        // duplicate too: its first copy may not be replicated yet).
        if let (Some(cluster), Some(Some(epoch)), Some(partition)) =
            (&app.cluster, epochs.get(p as usize), topic.partition(p))
        {
            let target = BatchOutcome::ack_target(&outcomes, || partition.log_end_offset());
            cluster.acknowledge(partition, *epoch, target).await?;
        }
        for (&i, outcome) in indexes.iter().zip(outcomes) {
            match &outcome {
                BatchOutcome::Appended(_) | BatchOutcome::Trimmed { .. } => {
                    let b = batches.get(i);
                    stored += 1;
                    records += b.map_or(0, |b| u64::try_from(b.header.records_count).unwrap_or(0));
                    bytes += b.map_or(0, |b| b.frame.len() as u64);
                }
                BatchOutcome::Duplicate { .. } => duplicates += 1,
                BatchOutcome::Refused(_) => {}
            }
            let entry = describe(p, outcome);
            if entry.error.is_some() && refused.is_none() {
                refused = entry.error.clone();
            }
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(entry);
            }
        }
    }
    crate::metrics::ingested(&topic.name, stored, records, bytes, duplicates);
    let response = IngestResponse {
        topic: topic.name.to_string(),
        batches: results.into_iter().flatten().collect(),
        error: refused,
    };
    let status = if response.error.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok((status, Json(response)).into_response())
}

/// Waits, up to `wait` in all (`[ingest] predecessor_wait`; a predecessor
/// is normally milliseconds behind, on another connection), until each
/// producer's first batch in `shares` can be decided without a predecessor
/// still on its way. The store re-checks under its lock and refuses what
/// still cannot.
async fn wait_for_predecessors(shares: &[(&Arc<Partition>, Vec<&CheckedBatch>)], wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    for (partition, batches) in shares {
        let mut seen = HashSet::new();
        for b in batches {
            let p = b.header.producer;
            // A producer's later batches in this request follow its first.
            if p.producer_id < 0 || !seen.insert(p.producer_id) {
                continue;
            }
            // Subscribed before the check, so an append in between wakes us.
            let mut appended = partition.watch_log_end();
            if partition.decidable_ahead(&b.header) {
                continue;
            }
            let _waiting = Waiting::start();
            while !partition.decidable_ahead(&b.header) {
                if !matches!(tokio::time::timeout_at(deadline, appended.changed()).await, Ok(Ok(()))) {
                    return;
                }
            }
        }
    }
}

/// A batch counted as waiting for its predecessor until dropped (also
/// when the client goes away meanwhile).
struct Waiting;

impl Waiting {
    fn start() -> Self {
        crate::metrics::waiting_for_predecessor(true);
        Self
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        crate::metrics::waiting_for_predecessor(false);
    }
}

fn describe(partition: u32, outcome: BatchOutcome) -> AppendedBatch {
    let (outcome, offsets, error) = match outcome {
        BatchOutcome::Appended(s) => ("appended", Some((s.base_offset, s.last_offset)), None),
        BatchOutcome::Trimmed { summary: s, .. } => ("trimmed", Some((s.base_offset, s.last_offset)), None),
        BatchOutcome::Duplicate { offsets, .. } => ("duplicate", offsets, None),
        BatchOutcome::Refused(r) => ("refused", None, Some(format!("partition {partition}: {r}"))),
    };
    AppendedBatch {
        partition,
        outcome: outcome.to_owned(),
        base_offset: offsets.map(|o| o.0),
        last_offset: offsets.map(|o| o.1),
        error,
    }
}

/// Refuses a batch with more records than `http.max_batch_records`: each
/// record costs index and query work, whatever its size.
fn check_record_counts(batches: &[crate::ingest::validate::CheckedBatch], max: u32) -> Result<(), ApiError> {
    for (i, b) in batches.iter().enumerate() {
        let n = u32::try_from(b.header.records_count).unwrap_or(u32::MAX);
        if n > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("batch {i} holds {n} records; the limit is {max} (http.max_batch_records)"),
            ));
        }
    }
    Ok(())
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let got = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = got.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(BATCH_CONTENT_TYPE) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {:?} is not supported here; send RecordBatch v2 frames as {BATCH_CONTENT_TYPE}",
                if got.is_empty() { "(none)" } else { got }
            ),
        ))
    }
}
