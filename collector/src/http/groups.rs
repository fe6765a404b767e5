//! Consumer groups over HTTP, on the same coordinator as Kafka clients:
//!
//! | request | body | answer |
//! |---|---|---|
//! | `POST /v1/groups/{group}/join` | `{"topics": [...], "member_id"?, "session_timeout_ms"?}` | `{"member_id", "generation", "assignment": {topic: [partitions]}}` once the group has rebalanced |
//! | `POST /v1/groups/{group}/heartbeat` | `{"member_id", "generation"}` | `{}` |
//! | `POST /v1/groups/{group}/commit` | `{"member_id", "generation", "offsets": [{"topic", "partition", "offset"}]}` | `{}` once durable |
//! | `GET /v1/groups/{group}/offsets?topic=T` | | `{"offsets": [{"topic", "partition", "offset"}]}` (-1: none) |
//! | `POST /v1/groups/{group}/leave` | `{"member_id"}` | `{}` |
//! | `GET /v1/groups` | | `{"groups": [{"group", "state", "members", "lag", "partitions": [{"topic", "partition", "committed", "high_watermark", "lag"}]}]}` |
//!
//! The coordinator assigns partitions itself (range assignment over the
//! members' topics, Kafka's default), so an HTTP member needs no leader
//! logic. A 409 (rebalance in progress, stale generation, unknown member)
//! tells the member to commit what it has and join again; a member that
//! stops heartbeating for its session timeout is removed and its partitions
//! go to the others, who resume them from the committed offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::read::{TopicInfo, describe, readers_figures};
use crate::kafka::coordinator::assign::{decode_assignment, encode_subscription};
use crate::kafka::coordinator::{CommitRequest, JoinRequest, LOGPOST_PROTOCOL_TYPE, SyncRequest};
use crate::kafka::error::KafkaError;
use crate::store::StoreError;

/// Default session timeout of an HTTP member (Kafka's consumer default is 45 s;
/// shorter, since `logpost consume` heartbeats every second).
const DEFAULT_SESSION_MS: i32 = 10_000;

/// A join.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Empty or absent on the first join; the id given then on later ones.
    #[serde(default)]
    pub member_id: String,
    /// Milliseconds without a heartbeat after which the member is removed.
    pub session_timeout_ms: Option<i32>,
}

/// The answer to a join: the member's partitions in this generation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Joined {
    pub member_id: String,
    pub generation: i32,
    pub assignment: std::collections::BTreeMap<String, Vec<i32>>,
}

/// A heartbeat, or a leave (`generation` unused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    pub member_id: String,
    #[serde(default)]
    pub generation: i32,
}

/// A committed position: the next offset to consume.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A commit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    pub member_id: String,
    pub generation: i32,
    pub offsets: Vec<GroupOffset>,
}

/// `GET …/offsets` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsetsParams {
    pub topic: String,
}

/// The committed offsets of one topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offsets {
    pub offsets: Vec<GroupOffset>,
}

/// One partition a group has committed an offset on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The next offset the group will consume.
    pub committed: i64,
    /// The partition's end; absent once its topic is deleted.
    pub high_watermark: Option<i64>,
    /// Records not yet consumed: `high_watermark - committed`, at least 0.
    pub lag: Option<i64>,
}

/// A group with its committed offsets and lag.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupLag {
    pub group: String,
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`.
    pub state: String,
    pub members: usize,
    /// Total lag over its partitions.
    pub lag: i64,
    pub partitions: Vec<PartitionLag>,
}

/// `GET /v1/groups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupList {
    pub groups: Vec<GroupLag>,
}

/// `GET /v1/groups`: every group that has committed offsets, with each
/// partition's lag behind its high watermark (what `logpost topics` and
/// the web page's status view show; the `logpost_collector_consumer_lag`
/// metric has the same figures).
///
/// In a cluster, every node is asked for the groups it knows; each group
/// is shown as its coordinator has it, and lag is counted against each
/// partition's high watermark as the node that reads it has it.
pub async fn list(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<GroupList>, ApiError> {
    let mut groups = local_list(&app).await?;
    if let Some(cluster) = &app.cluster
        && !super::forward::is_forwarded(&headers)
    {
        let others: BTreeSet<i32> = cluster
            .view()
            .nodes
            .keys()
            .copied()
            .filter(|&n| n != cluster.me.id)
            .collect();
        let answers = super::forward::group_lists(cluster, others).await;
        let mut by_name: BTreeMap<String, GroupLag> = groups.groups.into_iter().map(|g| (g.group.clone(), g)).collect();
        for (node, list) in answers {
            for g in list.groups {
                let theirs = app.coordinator.locate(&g.group).and_then(Result::ok) == Some(node);
                if theirs || !by_name.contains_key(&g.group) {
                    by_name.insert(g.group.clone(), g);
                }
            }
        }
        // High watermarks as the partitions' readers have them.
        let mut topics: Vec<TopicInfo> = app
            .store
            .topics()
            .iter()
            .map(|t| describe(t, app.store.retention_for(t), Some(&cluster.view())))
            .collect();
        readers_figures(&app, &headers, &mut topics).await;
        for g in by_name.values_mut() {
            for p in &mut g.partitions {
                let hw = topics
                    .iter()
                    .find(|t| t.name == p.topic)
                    .and_then(|t| {
                        t.partitions
                            .iter()
                            .find(|x| i64::from(x.partition) == i64::from(p.partition))
                    })
                    .map(|x| x.high_watermark);
                p.high_watermark = hw;
                p.lag = hw.map(|hw| (hw - p.committed).max(0));
            }
            g.lag = g.partitions.iter().filter_map(|p| p.lag).sum();
        }
        groups.groups = by_name.into_values().collect();
    }
    Ok(Json(groups))
}

/// The groups this node knows, with its own copies' high watermarks.
async fn local_list(app: &Arc<AppState>) -> Result<GroupList, ApiError> {
    let store = Arc::clone(&app.store);
    let coordinator = Arc::clone(&app.coordinator);
    // Partition views take the writers' locks briefly: off the runtime.
    let groups = tokio::task::spawn_blocking(move || {
        let mut groups: Vec<GroupLag> = Vec::new();
        for (group, topic, partition, committed) in coordinator.all_committed() {
            let high_watermark = store.topic(&topic).and_then(|t| {
                let p = u32::try_from(partition).ok()?;
                t.partitions.iter().find(|x| x.id == p).map(|x| x.view().high_watermark)
            });
            let lag = high_watermark.map(|hw| (hw - committed).max(0));
            let entry = PartitionLag {
                topic,
                partition,
                committed,
                high_watermark,
                lag,
            };
            match groups.iter_mut().find(|g| g.group == group) {
                Some(g) => g.partitions.push(entry),
                None => {
                    let description = coordinator.describe(&group);
                    groups.push(GroupLag {
                        state: description
                            .as_ref()
                            .map_or("Empty".to_owned(), |d| format!("{:?}", d.state)),
                        members: description.map_or(0, |d| d.members.len()),
                        group,
                        lag: 0,
                        partitions: vec![entry],
                    });
                }
            }
        }
        for g in &mut groups {
            g.partitions
                .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            g.lag = g.partitions.iter().filter_map(|p| p.lag).sum();
        }
        groups.sort_by(|a, b| a.group.as_str().cmp(b.group.as_str()));
        groups
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    Ok(GroupList { groups })
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// The coordinator's refusal as an HTTP answer: 409 where the member must
/// join again, 400 otherwise.
fn refused(error: KafkaError, group: &str) -> ApiError {
    let rejoin = [
        KafkaError::REBALANCE_IN_PROGRESS,
        KafkaError::ILLEGAL_GENERATION,
        KafkaError::UNKNOWN_MEMBER_ID,
        KafkaError::FENCED_INSTANCE_ID,
    ];
    if rejoin.contains(&error) {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("group {group:?}: {} (join the group again)", error.name()),
        )
    } else if error == KafkaError::COORDINATOR_NOT_AVAILABLE {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("group {group:?}: {}", error.name()),
        )
    } else if error == KafkaError::NOT_COORDINATOR {
        // In a cluster the group lives on the leader of its partition of
        // __consumer_offsets (GET /v1/cluster lists the leaders).
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "group {group:?}: {}: another node of the cluster coordinates this group",
                error.name()
            ),
        )
    } else {
        ApiError::bad_request(format!("group {group:?}: {}", error.name()))
    }
}

/// `POST /v1/groups/{group}/join`: joins (or rejoins) and waits for the
/// rebalance to complete, then answers with this member's partitions.
///
/// # Errors
/// 400 bad body or session timeout; 404 unknown topic; 409 the group moved
/// on meanwhile (join again).
pub async fn join(
    State(app): State<Arc<AppState>>,
    Path(group): Path<String>,
    body: Bytes,
) -> Result<Json<Joined>, ApiError> {
    let body: JoinBody = parse(&body)?;
    if body.topics.is_empty() {
        return Err(ApiError::bad_request("\"topics\" is empty: name the topics to consume"));
    }
    for topic in &body.topics {
        app.store
            .topic(topic)
            .ok_or_else(|| StoreError::UnknownTopic(topic.clone()))?;
    }
    let session = body.session_timeout_ms.unwrap_or(DEFAULT_SESSION_MS);
    let joined = app
        .coordinator
        .join(JoinRequest {
            group_id: group.clone(),
            member_id: body.member_id,
            group_instance_id: None,
            client_id: "logpost".to_owned(),
            session_timeout_ms: session,
            rebalance_timeout_ms: session,
            protocol_type: LOGPOST_PROTOCOL_TYPE.to_owned(),
            protocols: vec![("range".to_owned(), encode_subscription(&body.topics))],
            require_known_member_id: false,
        })
        .await;
    if let Some(e) = joined.error {
        if e == KafkaError::INVALID_SESSION_TIMEOUT {
            return Err(ApiError::bad_request(format!(
                "session_timeout_ms {session} is outside the collector's limits (6000 to 1800000)"
            )));
        }
        if e == KafkaError::INCONSISTENT_GROUP_PROTOCOL {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("group {group:?} is in use by Kafka clients; HTTP consumers need a group of their own"),
            ));
        }
        return Err(refused(e, &group));
    }
    let synced = app
        .coordinator
        .sync(SyncRequest {
            group_id: group.clone(),
            generation_id: joined.generation_id,
            member_id: joined.member_id.clone(),
            group_instance_id: None,
            assignments: Vec::new(),
        })
        .await;
    if let Some(e) = synced.error {
        return Err(refused(e, &group));
    }
    let assignment = decode_assignment(&synced.assignment)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("bad assignment: {e:?}")))?;
    Ok(Json(Joined {
        member_id: joined.member_id,
        generation: joined.generation_id,
        assignment,
    }))
}

/// `POST /v1/groups/{group}/heartbeat`.
///
/// # Errors
/// 409 the member must join again.
pub async fn heartbeat(
    State(app): State<Arc<AppState>>,
    Path(group): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: MemberBody = parse(&body)?;
    app.coordinator
        .heartbeat(&group, body.generation, &body.member_id)
        .map_err(|e| refused(e, &group))?;
    Ok(Json(json!({})))
}

/// `POST /v1/groups/{group}/commit`: answers once the offsets are durable.
///
/// # Errors
/// 400 bad body; 409 the member must join again (its partitions may have
/// moved: nothing was committed).
pub async fn commit(
    State(app): State<Arc<AppState>>,
    Path(group): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: CommitBody = parse(&body)?;
    if let Some(bad) = body.offsets.iter().find(|o| o.offset < 0 || o.partition < 0) {
        return Err(ApiError::bad_request(format!(
            "offset {} of topic {:?} partition {}: offsets and partitions are not negative",
            bad.offset, bad.topic, bad.partition
        )));
    }
    let offsets = body
        .offsets
        .into_iter()
        .map(|o| (o.topic, o.partition, o.offset, -1, None))
        .collect();
    let results = app
        .coordinator
        .commit(CommitRequest {
            group_id: group.clone(),
            generation_id: body.generation,
            member_id: body.member_id,
            offsets,
        })
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        return Err(refused(e, &group));
    }
    Ok(Json(json!({})))
}

/// `GET /v1/groups/{group}/offsets?topic=T`: the committed offset of every
/// partition of the topic (-1 where the group never committed).
///
/// # Errors
/// 404 unknown topic.
pub async fn offsets(
    State(app): State<Arc<AppState>>,
    Path(group): Path<String>,
    Query(p): Query<OffsetsParams>,
) -> Result<Json<Offsets>, ApiError> {
    let topic = app
        .store
        .topic(&p.topic)
        .ok_or_else(|| StoreError::UnknownTopic(p.topic.clone()))?;
    let partitions: Vec<i32> = (0..topic.partitions.len())
        .filter_map(|p| i32::try_from(p).ok())
        .collect();
    let committed = app
        .coordinator
        .committed(&group, Some(&[(p.topic.clone(), partitions)]))
        .map_err(|e| refused(e, &group))?;
    let offsets = committed
        .into_iter()
        .flat_map(|(topic, parts)| {
            parts.into_iter().map(move |(partition, info)| GroupOffset {
                topic: topic.clone(),
                partition,
                offset: info.offset,
            })
        })
        .collect();
    Ok(Json(Offsets { offsets }))
}

/// `POST /v1/groups/{group}/leave`: the member's partitions go to the
/// others at once instead of after its session timeout.
///
/// # Errors
/// 409 unknown member.
pub async fn leave(
    State(app): State<Arc<AppState>>,
    Path(group): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: MemberBody = parse(&body)?;
    let results = app.coordinator.leave(&group, &[(body.member_id, None)]);
    if let Some(Err(e)) = results.into_iter().next() {
        return Err(refused(e, &group));
    }
    Ok(Json(json!({})))
}
