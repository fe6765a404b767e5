//! `GET /v1/fetch/{topic}/{partition}?offset=N&max_bytes=B&wait_ms=W`:
//! a consumer's read, as Kafka's Fetch: records from `offset` (whole
//! batches up to about `max_bytes`, at least one), the offset to ask for
//! next and the partition's high watermark. At the end of the log the
//! request waits up to `wait_ms` (at most [`MAX_WAIT`]) for an append
//! (the partition's high-watermark watch wakes it), then answers, maybe
//! with no records.
//!
//! An offset before the log start or past the high watermark is a 416
//! naming the valid range, not an empty success.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use logpost_shared::batch::{RecordIter, check, frame_len, records_section};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::query::cursor::StoredRecord;
use crate::query::output::RecordJson;
use crate::store::StoreError;
use crate::store::read::{ReadError, read_from};

/// Longest a fetch waits for data: under common proxy idle timeouts.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Default and largest `max_bytes` (bytes of stored batches per answer).
const DEFAULT_MAX_BYTES: usize = 1 << 20;
const MAX_MAX_BYTES: usize = 64 << 20;

/// Query parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchParams {
    /// First offset wanted.
    pub offset: i64,
    /// About how many bytes of stored batches to read (default 1 MiB).
    pub max_bytes: Option<usize>,
    /// Milliseconds to wait at the end of the log (default 0).
    pub wait_ms: Option<u64>,
}

/// The answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchResponse {
    pub topic: String,
    pub partition: u32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    /// Where the next fetch starts.
    pub next_offset: i64,
    pub records: Vec<RecordJson>,
}

/// Handles a fetch.
///
/// # Errors
/// 404 unknown topic or partition; 416 offset out of range; 400 bad parameters.
pub async fn fetch(
    State(app): State<Arc<AppState>>,
    Path((topic_name, partition_id)): Path<(String, u32)>,
    Query(p): Query<FetchParams>,
) -> Result<Json<FetchResponse>, ApiError> {
    let topic = app
        .store
        .topic(&topic_name)
        .ok_or_else(|| StoreError::UnknownTopic(topic_name.clone()))?;
    let partition = Arc::clone(topic.partition(partition_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "topic {topic_name:?} has no partition {partition_id} (it has {})",
                topic.partitions.len()
            ),
        )
    })?);
    let max_bytes = p.max_bytes.unwrap_or(DEFAULT_MAX_BYTES).clamp(1, MAX_MAX_BYTES);
    let wait = Duration::from_millis(p.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let mut watch = partition.watch_high_watermark();
    // Long-poll: wait while the offset is at the end. `changed` is
    // cancel-safe, and the timeout only ends the wait.
    if partition.view().high_watermark == p.offset && !wait.is_zero() {
        let _ = tokio::time::timeout(wait, async {
            while *watch.borrow_and_update() <= p.offset {
                if watch.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
    let max_uncompressed = app.config.max_uncompressed_bytes;
    let offset = p.offset;
    let name = topic_name.clone();
    tokio::task::spawn_blocking(move || {
        let view = partition.view();
        let read = read_from(&view, offset, max_bytes).map_err(|e| match e {
            ReadError::OutOfRange { .. } => {
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, format!("{name}/{partition_id}: {e}"))
            }
            other => ApiError::internal(&other),
        })?;
        let mut records = Vec::new();
        let mut scratch = Vec::new();
        let mut rest = read.frames.as_slice();
        while !rest.is_empty() {
            let bad = |e: logpost_shared::batch::BatchError| ApiError::internal(&e);
            // `read_from` returns whole frames only; a short or bad one is corruption.
            let len = frame_len(rest, usize::MAX)
                .map_err(bad)?
                .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "stored batch cut short"))?;
            let (frame, tail) = rest.split_at_checked(len).unwrap_or((rest, &[]));
            rest = tail;
            let header = check(frame).map_err(bad)?;
            let section = records_section(frame, &header, max_uncompressed, &mut scratch).map_err(bad)?;
            for r in RecordIter::new(section, header.records_count) {
                let r = r.map_err(bad)?;
                let record_offset = header.base_offset + i64::from(r.offset_delta);
                if record_offset < offset {
                    continue; // the first batch may start before the offset asked for
                }
                let stored = StoredRecord {
                    partition: partition_id,
                    offset: record_offset,
                    producer_id: header.producer.producer_id,
                    timestamp_ms: header.base_timestamp.wrapping_add(r.timestamp_delta),
                    key: r.key.map(<[u8]>::to_vec),
                    value: r.value.map(<[u8]>::to_vec),
                    headers: r
                        .headers
                        .iter()
                        .map(|h| (String::from_utf8_lossy(h.key).into_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect(),
                };
                records.push(RecordJson::new(&name, &stored));
            }
        }
        Ok(Json(FetchResponse {
            topic: name.clone(),
            partition: partition_id,
            log_start_offset: read.log_start_offset,
            high_watermark: read.high_watermark,
            next_offset: read.next_offset,
            records,
        }))
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
}
