//! Read endpoints: the topic list and the streaming record query.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::query::logql::Direction;
use crate::store::{RetentionPolicy, StoreError, Topic};
use logpost_shared::config::HumanDuration;

/// One partition in a topic listing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub partition: u32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub records: i64,
    pub size_bytes: u64,
    pub segments: usize,
    /// In a cluster: the leader's node id (-1: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_epoch: Option<i32>,
    /// In a cluster: the replicas' node ids, the preferred leader first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Vec<i32>>,
    /// In a cluster: the in-sync replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isr: Option<Vec<i32>>,
}

/// One topic in a listing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub records: i64,
    pub size_bytes: u64,
    pub created_ms: i64,
    /// Bytes kept per partition; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<u64>,
    /// Age after which segments are deleted (e.g. "7d"); absent means forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_age: Option<String>,
    pub partitions: Vec<PartitionInfo>,
}

/// `GET /v1/topics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicList {
    pub topics: Vec<TopicInfo>,
}

/// Describes a topic as the API shows it (with each partition's leader,
/// replicas and in-sync replicas from `cluster`, in a cluster).
pub fn describe(
    topic: &Topic,
    retention: RetentionPolicy,
    cluster: Option<&crate::cluster::meta::ClusterView>,
) -> TopicInfo {
    let partitions: Vec<PartitionInfo> = topic
        .partitions
        .iter()
        .map(|p| {
            let v = p.view();
            let state = cluster.and_then(|c| c.partition(&topic.name, p.id)).map(|s| &s.value);
            PartitionInfo {
                partition: p.id,
                log_start_offset: v.log_start_offset,
                high_watermark: v.high_watermark,
                records: v.high_watermark - v.log_start_offset,
                size_bytes: v.size_bytes(),
                segments: v.segments.len(),
                leader: state.map(|s| s.leader),
                leader_epoch: state.map(|s| s.leader_epoch),
                replicas: state.map(|s| s.replicas.clone()),
                isr: state.map(|s| s.isr.clone()),
            }
        })
        .collect();
    TopicInfo {
        name: topic.name.to_string(),
        records: partitions.iter().map(|p| p.records).sum(),
        size_bytes: partitions.iter().map(|p| p.size_bytes).sum(),
        created_ms: topic.meta.created_ms,
        retention_bytes: retention.bytes,
        retention_age: retention.age.map(|d| HumanDuration(d).to_string()),
        partitions,
    }
}

/// Lists topics with their partitions, offsets and sizes.
pub async fn list_topics(State(app): State<Arc<AppState>>) -> Json<TopicList> {
    let view = app.cluster.as_ref().map(|c| c.view());
    Json(TopicList {
        topics: app
            .store
            .topics()
            .iter()
            .map(|t| describe(t, app.store.retention_for(t), view.as_deref()))
            .collect(),
    })
}

/// Describes one topic.
///
/// # Errors
/// 404 for an unknown topic.
pub async fn get_topic(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<TopicInfo>, ApiError> {
    let topic = app.store.topic(&name).ok_or(StoreError::UnknownTopic(name))?;
    let view = app.cluster.as_ref().map(|c| c.view());
    Ok(Json(describe(&topic, app.store.retention_for(&topic), view.as_deref())))
}

/// Query parameters of `GET /v1/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    /// Topic to read.
    pub topic: Option<String>,
    /// Regular expression lines must match (searched, not anchored).
    pub grep: Option<String>,
    /// Most records to return. Default 1000; 0 means no limit.
    pub limit: Option<usize>,
    /// A LogQL log query (a bare topic name is `{topic="name"}`); replaces `topic`.
    pub query: Option<String>,
    /// With `query`: earliest record time (ns, float seconds or RFC 3339).
    pub start: Option<String>,
    /// With `query`: latest record time, inclusive.
    pub end: Option<String>,
    /// With `query`: `forward` (default: the oldest `limit`, oldest first)
    /// or `backward` (the newest `limit`, newest first).
    pub direction: Option<String>,
    /// Only these partitions, of this node alone: `topic:0,2;other:1`
    /// (what a cluster node asks of another for its part of a query).
    pub partitions: Option<String>,
}

/// Default number of records a query returns.
const DEFAULT_LIMIT: usize = 1000;

/// Streams matching records of a topic as NDJSON, oldest first.
///
/// # Errors
/// 400 for a missing topic or a bad regex, 404 for an unknown topic. An
/// error after the first line is reported as a final `{"error": ...}` line.
pub async fn query(State(app): State<Arc<AppState>>, Query(params): Query<QueryParams>) -> Result<Response, ApiError> {
    // `topic=T` is the LogQL query `{topic="T"}`: one streaming path.
    let query = match (params.query, params.topic) {
        (Some(query), _) => query,
        (None, Some(topic)) => format!("{{topic=\"{}\"}}", topic.replace('\\', "\\\\").replace('"', "\\\"")),
        (None, None) => return Err(ApiError::bad_request("missing query parameter `query` (or `topic`)")),
    };
    let only = params.partitions.as_deref().map(parse_partitions).transpose()?;
    let q = super::query_stream::StreamQuery {
        query,
        grep: params.grep,
        start: params.start,
        end: params.end,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT),
        direction: match params.direction.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("forward") => Direction::Forward,
            Some("backward") => Direction::Backward,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid parameter \"direction\": {other:?} (use forward or backward)"
                )));
            }
        },
        only,
    };
    super::query_stream::stream(app, q).await
}

/// `topic:0,2;other:1` as `(topic, partition)` pairs.
fn parse_partitions(s: &str) -> Result<Vec<(String, u32)>, ApiError> {
    let mut out = Vec::new();
    for group in s.split(';').filter(|g| !g.is_empty()) {
        let bad = || {
            ApiError::bad_request(format!(
                "invalid parameter \"partitions\": {group:?} (use topic:0,2;other:1)"
            ))
        };
        let (topic, list) = group.rsplit_once(':').ok_or_else(bad)?;
        for p in list.split(',') {
            out.push((topic.to_owned(), p.trim().parse::<u32>().map_err(|_| bad())?));
        }
    }
    Ok(out)
}
