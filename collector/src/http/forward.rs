//! Requests a cluster node passes on to the node that can answer them, so
//! that a consumer, a group member or `logpost` pointed at any node (or at
//! a load balancer in front of all of them) works as if that node held
//! everything:
//!
//! - `GET /v1/fetch/{topic}/{partition}` goes to the partition's live
//!   leader, else to a live in-sync replica (this node first). The leader
//!   comes first because a follower's high watermark trails the leader's:
//!   a consumer whose fetches alternate between nodes would otherwise be
//!   told that an offset the leader just gave it is out of range.
//! - `/v1/groups/{group}/…` goes to the group's coordinator (the leader of
//!   its partition of `__consumer_offsets`, as Kafka's FindCoordinator
//!   finds it); when the coordinator dies, the next request goes to its
//!   successor, which makes the member join again and resumes from the
//!   committed offsets.
//!
//! The request goes out with the node-to-node token (scope `cluster`) after
//! this node checked the client's own token, and carries
//! [`FORWARDED_BY`]: the node receiving it answers from its own state and
//! never passes it on, so two nodes whose views of the cluster differ for
//! a moment cannot bounce a request between them. The answer (status,
//! content type, body) is returned to the client as it came.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, chain};
use super::groups::GroupList;
use super::read::TopicList;
use crate::cluster::node::Cluster;
use crate::cluster::reads::candidates;

/// Marks a request one node passed on to another; its value is the
/// forwarding node's id.
pub const FORWARDED_BY: &str = "x-logpost-forwarded-by";
/// Names the node that answered a forwarded request, for operators.
pub const SERVED_BY: &str = "x-logpost-served-by";

/// Largest body passed on (group requests are small JSON documents).
const MAX_FORWARDED_BODY: usize = 1 << 20;
/// Longest a forwarded request may take beyond the wait it asks for.
const FORWARD_MARGIN: Duration = Duration::from_secs(30);

/// Whether another node passed this request on.
pub fn is_forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_BY)
}

/// Passes `GET /v1/fetch/{topic}/{partition}` on to the node that reads the
/// partition, or lets this node answer when it leads it (or is the first
/// live in-sync replica, or the topic is not a cluster topic).
pub async fn to_partition_reader(
    State(app): State<Arc<AppState>>,
    Path((topic, partition)): Path<(String, u32)>,
    req: Request,
    next: Next,
) -> Response {
    let Some(cluster) = app.cluster.clone() else {
        return next.run(req).await;
    };
    let me = cluster.me.id;
    let nodes = candidates(&cluster.view(), me, &topic, partition);
    if is_forwarded(req.headers()) {
        if nodes.contains(&me) {
            return next.run(req).await;
        }
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("node {me} holds no in-sync copy of {topic}/{partition}"),
        )
        .into_response();
    }
    if nodes.first() == Some(&me) {
        return next.run(req).await;
    }
    // A long poll is answered by the other node after its wait.
    let wait_ms = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("wait_ms=")))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let timeout = Duration::from_millis(wait_ms).min(super::fetch::MAX_WAIT) + FORWARD_MARGIN;
    let head = Head::of(&req);
    let mut failed = Vec::new();
    for node in nodes {
        if node == me {
            return next.run(req).await;
        }
        match send(&cluster, node, &head, Bytes::new(), timeout).await {
            Ok(resp) => return resp,
            Err(e) => {
                tracing::warn!(node, topic = %topic, partition, error = %e, "a node failed to answer a forwarded fetch; trying the next in-sync replica");
                failed.push(format!("node {node}: {e}"));
            }
        }
    }
    let tried = if failed.is_empty() {
        "no replica is alive and in sync".to_owned()
    } else {
        failed.join("; ")
    };
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("cannot read {topic}/{partition}: no in-sync replica of it answered ({tried})"),
    )
    .into_response()
}

/// Passes `/v1/groups/{group}/…` on to the group's coordinator, or lets
/// this node answer when it coordinates the group (always, outside a
/// cluster).
pub async fn to_group_coordinator(
    State(app): State<Arc<AppState>>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(cluster) = app.cluster.clone() else {
        return next.run(req).await;
    };
    if is_forwarded(req.headers()) {
        return next.run(req).await;
    }
    let Some(group) = params.into_iter().find(|(k, _)| k == "group").map(|(_, v)| v) else {
        return next.run(req).await;
    };
    let node = match app.coordinator.locate(&group) {
        None => return next.run(req).await,
        Some(Ok(node)) if node == cluster.me.id => return next.run(req).await,
        Some(Ok(node)) => node,
        Some(Err(e)) => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "group {group:?}: {}: no node can coordinate it now (its partition of __consumer_offsets has no leader); retry shortly",
                    e.name()
                ),
            )
            .into_response();
        }
    };
    let head = Head::of(&req);
    let body = match axum::body::to_bytes(req.into_body(), MAX_FORWARDED_BODY).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(format!("cannot read the request body: {e}")).into_response(),
    };
    // A join waits for the rebalance, up to the members' session timeout.
    match send(&cluster, node, &head, body, FORWARD_MARGIN * 2).await {
        Ok(resp) => resp,
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("group {group:?}: its coordinator, node {node}, did not answer ({e}); retry shortly"),
        )
        .into_response(),
    }
}

/// What is passed on of a request besides its body.
struct Head {
    method: Method,
    path_and_query: String,
    content_type: Option<HeaderValue>,
}

impl Head {
    fn of(req: &Request) -> Head {
        Head {
            method: req.method().clone(),
            path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            content_type: req.headers().get(header::CONTENT_TYPE).cloned(),
        }
    }
}

/// Sends the request (`head` and `body`) to `node` and returns the node's
/// answer as this node's.
async fn send(cluster: &Cluster, node: i32, head: &Head, body: Bytes, timeout: Duration) -> Result<Response, String> {
    let url = cluster
        .node_url(node)
        .ok_or_else(|| format!("node {node} is not alive"))?;
    let mut out = cluster
        .reads
        .request(head.method.clone(), format!("{url}{}", head.path_and_query))
        .header(FORWARDED_BY, cluster.me.id.to_string())
        .timeout(timeout);
    if let Some(ct) = &head.content_type {
        out = out.header(header::CONTENT_TYPE, ct.clone());
    }
    if !body.is_empty() {
        out = out.body(body);
    }
    let answer = out.send().await.map_err(|e| format!("{url}: {}", chain(&e)))?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| format!("{url}: the answer was cut short: {}", chain(&e)))?;
    let mut resp = (status, bytes).into_response();
    if let Some(ct) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    if let Ok(v) = HeaderValue::from_str(&node.to_string()) {
        resp.headers_mut().insert(SERVED_BY, v);
    }
    Ok(resp)
}

/// Every node in `nodes`' own `GET /v1/groups` (the groups it knows),
/// asked at once; nodes that fail are left out.
pub async fn group_lists(cluster: &Cluster, nodes: BTreeSet<i32>) -> Vec<(i32, GroupList)> {
    let mut asks = tokio::task::JoinSet::new();
    for node in nodes {
        let Some(url) = cluster.node_url(node) else { continue };
        let request = cluster
            .reads
            .get(format!("{url}/v1/groups"))
            .header(FORWARDED_BY, cluster.me.id.to_string())
            .timeout(LIST_TIMEOUT);
        asks.spawn(async move {
            let resp = request.send().await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            Some((node, resp.json::<GroupList>().await.ok()?))
        });
    }
    let mut out = Vec::new();
    while let Some(done) = asks.join_next().await {
        if let Ok(Some(answer)) = done {
            out.push(answer);
        }
    }
    out.sort_by_key(|(node, _)| *node);
    out
}

/// Longest a node may take to list its topics for another.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// Every node in `nodes`' own `GET /v1/topics` (its copies' figures),
/// asked at once; a failure is kept as its message.
pub async fn topic_lists(cluster: &Cluster, nodes: BTreeSet<i32>) -> BTreeMap<i32, Result<TopicList, String>> {
    let mut asks = tokio::task::JoinSet::new();
    for node in nodes {
        let url = cluster.node_url(node);
        let request = url.as_ref().map(|u| {
            cluster
                .reads
                .get(format!("{u}/v1/topics"))
                .header(FORWARDED_BY, cluster.me.id.to_string())
                .timeout(LIST_TIMEOUT)
        });
        asks.spawn(async move {
            let (Some(url), Some(request)) = (url, request) else {
                return (node, Err("not alive".to_owned()));
            };
            let answer = async {
                let resp = request.send().await.map_err(|e| format!("{url}: {}", chain(&e)))?;
                if !resp.status().is_success() {
                    return Err(format!("{url}: {}", resp.status()));
                }
                resp.json::<TopicList>()
                    .await
                    .map_err(|e| format!("{url}: bad answer: {}", chain(&e)))
            };
            (node, answer.await)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(done) = asks.join_next().await {
        if let Ok((node, answer)) = done {
            out.insert(node, answer);
        }
    }
    out
}
