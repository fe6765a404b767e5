//! Read endpoints: the topic list and the streaming record query.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::cluster::reads::candidates;
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
    /// In a cluster: why the figures above are this node's copy's, not
    /// those of a node that reads the partition (none answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
                error: None,
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

/// Lists topics with their partitions, offsets and sizes (in a cluster,
/// each partition's figures as the node that reads it has them).
pub async fn list_topics(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Json<TopicList> {
    let view = app.cluster.as_ref().map(|c| c.view());
    let mut topics: Vec<TopicInfo> = app
        .store
        .topics()
        .iter()
        .map(|t| describe(t, app.store.retention_for(t), view.as_deref()))
        .collect();
    readers_figures(&app, &headers, &mut topics).await;
    Json(TopicList { topics })
}

/// Describes one topic.
///
/// # Errors
/// 404 for an unknown topic.
pub async fn get_topic(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<TopicInfo>, ApiError> {
    let topic = app.store.topic(&name).ok_or(StoreError::UnknownTopic(name))?;
    let view = app.cluster.as_ref().map(|c| c.view());
    let mut topics = [describe(&topic, app.store.retention_for(&topic), view.as_deref())];
    readers_figures(&app, &headers, &mut topics).await;
    let [info] = topics;
    Ok(Json(info))
}

/// In a cluster, replaces the figures (offsets, records, sizes, segments)
/// of every partition this node does not read itself with those of the
/// node that does (its live leader, else a live in-sync replica): every
/// node keeps a copy of every topic, empty where it holds no replica, so
/// its own figures would show nothing. A partition no reader answered for
/// keeps this node's figures and says why in `error`.
pub(super) async fn readers_figures(app: &AppState, headers: &HeaderMap, topics: &mut [TopicInfo]) {
    let Some(cluster) = &app.cluster else { return };
    if super::forward::is_forwarded(headers) {
        return;
    }
    let view = cluster.view();
    let me = cluster.me.id;
    let mut wanted: Vec<(usize, usize, Vec<i32>)> = Vec::new();
    for (t, topic) in topics.iter().enumerate() {
        for (i, p) in topic.partitions.iter().enumerate() {
            let readers = candidates(&view, me, &topic.name, p.partition);
            if readers.first() != Some(&me) {
                wanted.push((t, i, readers));
            }
        }
    }
    if wanted.is_empty() {
        return;
    }
    let asked: BTreeSet<i32> = wanted
        .iter()
        .flat_map(|(_, _, r)| r.iter().copied())
        .filter(|&n| n != me)
        .collect();
    let answers = super::forward::topic_lists(cluster, asked).await;
    for (t, i, readers) in wanted {
        let Some(topic) = topics.get_mut(t) else { continue };
        let name = topic.name.clone();
        let Some(mine) = topic.partitions.get_mut(i) else {
            continue;
        };
        let found = readers.iter().find_map(|node| {
            if *node == me {
                return Some(None);
            }
            let list = answers.get(node)?.as_ref().ok()?;
            let theirs = list.topics.iter().find(|x| x.name == name)?;
            theirs
                .partitions
                .iter()
                .find(|x| x.partition == mine.partition)
                .map(Some)
        });
        match found {
            Some(Some(theirs)) => {
                mine.log_start_offset = theirs.log_start_offset;
                mine.high_watermark = theirs.high_watermark;
                mine.records = theirs.records;
                mine.size_bytes = theirs.size_bytes;
                mine.segments = theirs.segments;
            }
            Some(None) => {}
            None => {
                let tried: Vec<String> = readers
                    .iter()
                    .map(|n| match answers.get(n) {
                        Some(Err(e)) => format!("node {n}: {e}"),
                        _ => format!("node {n}: no copy"),
                    })
                    .collect();
                mine.error = Some(if tried.is_empty() {
                    "no in-sync replica is alive: these are this node's figures".to_owned()
                } else {
                    format!(
                        "no in-sync replica answered ({}): these are this node's figures",
                        tried.join("; ")
                    )
                });
            }
        }
    }
    for topic in topics.iter_mut() {
        topic.records = topic.partitions.iter().map(|p| p.records).sum();
        topic.size_bytes = topic.partitions.iter().map(|p| p.size_bytes).sum();
    }
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
