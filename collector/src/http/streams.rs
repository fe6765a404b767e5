//! `POST /v1/streams`: where producers' streams have got. logpost's agent
//! asks this at start (and for each new file) and resumes each file after
//! what the collector already holds, so a crash between the collector's
//! acknowledgement and the agent's checkpoint causes no duplicate.
//!
//! `POST /v1/streams/by-content`: which stream last sent a batch from a
//! content with a given head (the cursor's head). A file the agent is
//! about to read from its start as a new stream may hold content another
//! stream already sent (a copy, or a compressed copy, made while the agent
//! was down): it then goes on from that stream's cursor.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::store::producer_state::parse_cursor;

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

/// One content to look up: a topic and a content head `<length> <CRC>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentKey {
    pub topic: String,
    pub head: String,
}

/// Body of `POST /v1/streams/by-content`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentLookup {
    pub contents: Vec<ContentKey>,
}

/// Answer to `POST /v1/streams/by-content`, in request order: for each
/// content, the stream that got furthest in it, if any.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContentStates {
    pub contents: Vec<StreamState>,
}

/// Per (topic, head): the furthest stream found so far (its partition,
/// producer entry, position in the content, and that cursor).
type Best = (u32, crate::store::producer_state::ProducerEntry, u64, String);

/// Finds, per content head, the stream that got furthest in that content:
/// its last cursor, or the last cursor of a content it sent earlier (a
/// file copytruncated since). The answer's cursor is that one.
///
/// # Errors
/// 400 for a malformed body, a malformed head or too many contents.
pub async fn by_content(
    State(app): State<Arc<AppState>>,
    body: Result<Json<ContentLookup>, JsonRejection>,
) -> Result<Json<ContentStates>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(format!("invalid content lookup: {}", e.body_text())))?;
    if req.contents.len() > MAX_LOOKUP {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_LOOKUP} contents per lookup"
        )));
    }
    let mut keys = Vec::with_capacity(req.contents.len());
    for (i, c) in req.contents.iter().enumerate() {
        let mut it = c.head.split_ascii_whitespace();
        let head = it
            .next()
            .and_then(|l| l.parse::<u32>().ok())
            .zip(it.next().and_then(|c| c.parse::<u32>().ok()))
            .filter(|_| it.next().is_none())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "contents[{i}].head: expected \"<length> <crc>\", got {:?}",
                    c.head
                ))
            })?;
        keys.push((c.topic.clone(), head));
    }
    let store = Arc::clone(&app.store);
    let dedup = app.config.deduplicate;
    let states = tokio::task::spawn_blocking(move || {
        // One pass over each topic's producers for every head asked.
        let mut by_topic: std::collections::HashMap<String, std::collections::HashSet<(u32, u32)>> =
            std::collections::HashMap::new();
        for (topic, head) in &keys {
            by_topic.entry(topic.clone()).or_default().insert(*head);
        }
        let mut best: std::collections::HashMap<(String, (u32, u32)), Best> = std::collections::HashMap::new();
        for (topic, heads) in &by_topic {
            let Some(t) = store.topic(topic).filter(|_| dedup) else {
                continue;
            };
            for p in &t.partitions {
                for e in p.producers_with_head(heads) {
                    // The furthest cursor of each content this producer
                    // was in: its current one or an earlier content's end.
                    let found: Vec<((u32, u32), u64, String)> = e
                        .cursors()
                        .filter_map(|c| parse_cursor(c).map(|(pos, head)| (head, pos, c.to_owned())))
                        .filter(|(head, ..)| heads.contains(head))
                        .collect();
                    for (head, pos, cursor) in found {
                        match best.entry((topic.clone(), head)) {
                            std::collections::hash_map::Entry::Occupied(mut o) => {
                                if pos > o.get().2 {
                                    o.insert((p.id, e.clone(), pos, cursor));
                                }
                            }
                            std::collections::hash_map::Entry::Vacant(v) => {
                                v.insert((p.id, e.clone(), pos, cursor));
                            }
                        }
                    }
                }
            }
        }
        keys.into_iter()
            .map(|(topic, head)| match best.get(&(topic.clone(), head)) {
                Some((partition, e, _, cursor)) => StreamState {
                    topic,
                    producer_id: e.producer_id,
                    found: true,
                    partition: Some(*partition),
                    next_sequence: Some(e.logical_last_seq() + 1),
                    cursor: Some(cursor.clone()),
                },
                None => StreamState {
                    topic,
                    producer_id: -1,
                    found: false,
                    partition: None,
                    next_sequence: None,
                    cursor: None,
                },
            })
            .collect()
    })
    .await?;
    Ok(Json(ContentStates { contents: states }))
}
