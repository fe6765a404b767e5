//! `POST /v1/streams`: where producers' streams have got. logpost's agent
//! asks this at start (and for each new file) and resumes each file after
//! what the collector already holds, so a crash between the collector's
//! acknowledgement and the agent's checkpoint causes no duplicate.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;

/// Most streams one lookup may ask about.
const MAX_LOOKUP: usize = 100_000;

/// One stream to look up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamKey {
    pub topic: String,
    pub producer_id: i64,
}

/// Body of `POST /v1/streams`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamLookup {
    pub streams: Vec<StreamKey>,
}

/// What the collector holds of one stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamState {
    pub topic: String,
    pub producer_id: i64,
    /// Whether any batch of the stream is known.
    pub found: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Logical sequence (`epoch << 31 | sequence`) the next record must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sequence: Option<i64>,
    /// The cursor sent with the stream's last stored batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Answer to `POST /v1/streams`, in request order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamStates {
    pub streams: Vec<StreamState>,
}

/// Looks streams up in every partition of their topics.
///
/// # Errors
/// 400 for a malformed body or too many streams.
pub async fn lookup(
    State(app): State<Arc<AppState>>,
    body: Result<Json<StreamLookup>, JsonRejection>,
) -> Result<Json<StreamStates>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(format!("invalid stream lookup: {}", e.body_text())))?;
    if req.streams.len() > MAX_LOOKUP {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_LOOKUP} streams per lookup"
        )));
    }
    let store = Arc::clone(&app.store);
    // Without deduplication the collector offers at-least-once delivery:
    // agents resume from their own checkpoints.
    let dedup = app.config.deduplicate;
    let states = tokio::task::spawn_blocking(move || {
        req.streams
            .into_iter()
            .map(|k| {
                let found = store.topic(&k.topic).filter(|_| dedup).and_then(|t| {
                    // A stream lives in one partition; look in each.
                    t.partitions
                        .iter()
                        .find_map(|p| p.producer(k.producer_id).map(|e| (p.id, e)))
                });
                match found {
                    Some((partition, e)) => StreamState {
                        topic: k.topic,
                        producer_id: k.producer_id,
                        found: true,
                        partition: Some(partition),
                        next_sequence: Some(e.logical_last_seq() + 1),
                        cursor: e.cursor,
                    },
                    None => StreamState {
                        topic: k.topic,
                        producer_id: k.producer_id,
                        found: false,
                        partition: None,
                        next_sequence: None,
                        cursor: None,
                    },
                }
            })
            .collect()
    })
    .await?;
    Ok(Json(StreamStates { streams: states }))
}
