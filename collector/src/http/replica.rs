//! Node-to-node endpoints of a cluster (scope `cluster`):
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /v1/replica/fetch/{topic}/{partition}?replica=&epoch=&offset=&hw=&wait_ms=&max_bytes=` | the leader's batches from `offset`, as stored; the leader's high watermark in `x-logpost-high-watermark`, the stats it remembers of those batches in `x-logpost-batch-stats` (`cluster::fetch_stats`); 409 not leading at `epoch`; 416 `{log_start_offset, log_end_offset}` |
//! | `GET /v1/replica/epoch/{topic}/{partition}?epoch=&leader_epoch=` | `{"epoch", "end_offset"}`: where `epoch` ends in the leader's log (KIP-101's OffsetsForLeaderEpoch); `epoch` -1 when the leader knows none that old |
//!
//! A follower's fetch is also how the leader learns what it holds: the
//! offset it asks for is its log end, all of it fsynced.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::cluster::HIGH_WATERMARK_HEADER;
use crate::cluster::fetch_stats::{self, BATCH_STATS_HEADER};
use crate::cluster::replica::{FetchRefusal, Replica};
use crate::store::read::read_from;

/// Longest a follower's fetch waits at the log end.
const MAX_WAIT: Duration = Duration::from_secs(5);
/// Largest `max_bytes` a follower may ask for.
const MAX_BYTES: usize = 64 << 20;

/// Parameters of a follower's fetch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchParams {
    /// The follower's node id.
    pub replica: i32,
    /// The leader epoch the follower follows.
    pub epoch: i32,
    /// Its log end: where to read from.
    pub offset: i64,
    /// The leader's high watermark as the follower knows it: a wait ends
    /// when it moves past this too.
    #[serde(default)]
    pub hw: i64,
    #[serde(default)]
    pub wait_ms: u64,
    pub max_bytes: Option<usize>,
}

fn replica_of(app: &AppState, topic: &str, partition: u32) -> Result<Arc<Replica>, ApiError> {
    let cluster = app
        .cluster
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "this collector is not a cluster node"))?;
    cluster.replica(topic, partition).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{topic}/{partition}: no replica of it on this node"),
        )
    })
}

/// Serves a follower's fetch.
///
/// # Errors
/// 404 no such replica here, 409 not leading at the epoch, 403 not a
/// replica, 416 offset outside the log.
pub async fn fetch(
    State(app): State<Arc<AppState>>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(p): Query<FetchParams>,
) -> Result<Response, ApiError> {
    let replica = replica_of(&app, &topic, partition)?;
    let Some(cluster) = app.cluster.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this collector is not a cluster node",
        ));
    };
    match replica.on_fetch(p.replica, p.epoch, p.offset) {
        Ok(Some(change)) => {
            let (c, r) = (Arc::clone(cluster), Arc::clone(&replica));
            tokio::spawn(async move { c.alter_isr(&r, change).await });
        }
        Ok(None) => {}
        Err(FetchRefusal::Fenced { leader_epoch }) => {
            return Ok((
                StatusCode::CONFLICT,
                Json(json!({
                    "error": format!("{topic}/{partition}: this node does not lead at epoch {} (its epoch: {leader_epoch})", p.epoch),
                    "leader_epoch": leader_epoch,
                })),
            )
                .into_response());
        }
        Err(FetchRefusal::NotAReplica) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("{topic}/{partition}: node {} is not one of its replicas", p.replica),
            ));
        }
        Err(FetchRefusal::OutOfRange {
            log_start_offset,
            log_end_offset,
        }) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                Json(json!({
                    "error": format!("{topic}/{partition}: offset {} is outside the leader's log ({log_start_offset} to {log_end_offset})", p.offset),
                    "log_start_offset": log_start_offset,
                    "log_end_offset": log_end_offset,
                })),
            )
                .into_response());
        }
    }
    replica.recompute_hw();
    let log = Arc::clone(&replica.log);
    let wait = Duration::from_millis(p.wait_ms).min(MAX_WAIT);
    if !wait.is_zero() && log.log_end_offset() <= p.offset && log.high_watermark() <= p.hw {
        let mut end = log.watch_log_end();
        let mut hw = log.watch_high_watermark();
        let _ = tokio::time::timeout(wait, async {
            loop {
                if *end.borrow_and_update() > p.offset || *hw.borrow_and_update() > p.hw {
                    break;
                }
                tokio::select! {
                    r = end.changed() => if r.is_err() { break },
                    r = hw.changed() => if r.is_err() { break },
                }
            }
        })
        .await;
    }
    let max_bytes = p.max_bytes.unwrap_or(1 << 20).clamp(1, MAX_BYTES);
    let offset = p.offset;
    let (read, hw, stats) = tokio::task::spawn_blocking(move || {
        let hw = log.high_watermark();
        let read = read_from(&log.end_view(), offset, max_bytes)?;
        let stats = fetch_stats::for_frames(&log, &read.frames);
        Ok::<_, crate::store::read::ReadError>((read, hw, stats))
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(|e| ApiError::internal(&e))?;
    let mut answer = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, crate::ingest::BATCH_CONTENT_TYPE)
        .header(HIGH_WATERMARK_HEADER, hw.to_string());
    if let Some(stats) = stats {
        answer = answer.header(BATCH_STATS_HEADER, stats);
    }
    answer.body(Body::from(read.frames)).map_err(|e| ApiError::internal(&e))
}

/// Parameters of an epoch-end question.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochParams {
    /// The follower's newest epoch.
    pub epoch: i32,
    /// The epoch the follower believes this node leads at.
    pub leader_epoch: i32,
    /// The asking node (for logs).
    #[serde(default)]
    pub replica: i32,
}

/// Where an epoch ends in the leader's log.
///
/// # Errors
/// 404 no such replica here, 409 not leading at `leader_epoch`.
pub async fn epoch_end(
    State(app): State<Arc<AppState>>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(p): Query<EpochParams>,
) -> Result<Response, ApiError> {
    let replica = replica_of(&app, &topic, partition)?;
    let me = app.cluster.as_ref().map_or(-1, |c| c.me.id);
    match replica.current() {
        Some((leader, epoch)) if leader == me && epoch == p.leader_epoch => {}
        other => {
            return Ok((
                StatusCode::CONFLICT,
                Json(json!({
                    "error": format!("{topic}/{partition}: this node does not lead at epoch {}", p.leader_epoch),
                    "leader_epoch": other.map_or(-1, |(_, e)| e),
                })),
            )
                .into_response());
        }
    }
    let (epoch, end_offset) = replica.epoch_end(p.epoch).unwrap_or((-1, -1));
    tracing::debug!(
        topic,
        partition,
        replica = p.replica,
        asked = p.epoch,
        epoch,
        end_offset,
        "epoch end asked"
    );
    Ok(Json(json!({"epoch": epoch, "end_offset": end_offset})).into_response())
}
