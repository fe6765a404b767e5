//! `GET /v1/query` on a cluster node: the whole cluster's records, merged
//! as one node holding every partition would stream them.
//!
//! Each partition the query can touch is read by one node (as for Loki's
//! API, `cluster::reads`: this node when it leads it, else the leader,
//! else an in-sync replica). Every node taking part, this one included,
//! is asked the same `/v1/query` for its partitions only
//! (`partitions=topic:0,2;...`), and the answers are merged line by line
//! by the order the single-node scan uses: forward, topics in name order,
//! then time (ms), partition, offset; backward, the newest `limit` by
//! (time in ns, topic, partition, offset), newest first.
//!
//! A node that cannot be reached, or refuses, before its answer starts is
//! left out and its partitions asked of the next in-sync replica; when
//! none is left the request fails with a 503 naming them. A node that
//! fails once lines have gone out cannot be replaced without repeating or
//! reordering them: the stream ends with a final `{"error": ...}` line
//! naming the partitions it could not finish, never silently short.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::error::ApiError;
use super::query_stream::StreamQuery;
use crate::cluster::node::Cluster;
use crate::cluster::reads::candidates;
use crate::config::query::QuerySettings;
use crate::query::logql::{Direction, Expr, parse_with};
use crate::query::source::topics_for;
use crate::store::Store;

/// Longest a node's answer may stay silent. Generous: a selective query
/// over a large range sends nothing while it reads.
const SILENCE: Duration = Duration::from_secs(60);
/// Bytes of NDJSON gathered before a chunk is sent.
const CHUNK_BYTES: usize = 64 << 10;
/// Longest a started chunk waits for more lines.
const CHUNK_AGE: Duration = Duration::from_millis(100);
/// Chunks in flight to the socket: the memory bound for a slow client.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Which partitions a query reads, each with its candidate nodes, and the
/// topics in scan order.
pub struct Plan {
    parts: Vec<((String, u32), Vec<i32>)>,
    topics: Vec<String>,
}

/// The plan of `query` on this cluster; `None` when this node reads every
/// partition itself (the single-node path then answers).
///
/// # Errors
/// 400 for a query that does not parse (the local path would say the same).
pub async fn plan(
    store: &Arc<Store>,
    cluster: &Arc<Cluster>,
    query: &str,
    budgets: &QuerySettings,
) -> Result<Option<Plan>, ApiError> {
    let (store, cluster, query, limits) = (
        Arc::clone(store),
        Arc::clone(cluster),
        query.to_owned(),
        budgets.limits(),
    );
    tokio::task::spawn_blocking(move || {
        let Expr::Log(log) = parse_with(&query, &limits).map_err(|e| ApiError::bad_request(e.to_string()))? else {
            // The local path refuses metric queries with its own message.
            return Ok(None);
        };
        let view = cluster.view();
        let me = cluster.me.id;
        let mut parts = Vec::new();
        let mut topics = Vec::new();
        for t in topics_for(&store, &log.selector) {
            topics.push(t.name.to_string());
            for p in &t.partitions {
                parts.push(((t.name.to_string(), p.id), candidates(&view, me, &t.name, p.id)));
            }
        }
        if parts.iter().all(|(_, c)| c.first() == Some(&me)) {
            return Ok(None);
        }
        Ok(Some(Plan { parts, topics }))
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
}

/// `topic:0,2;other:1`.
fn partitions_param(parts: &[(String, u32)]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (t, p) in parts {
        by_topic.entry(t).or_default().push(p.to_string());
    }
    by_topic
        .iter()
        .map(|(t, ps)| format!("{t}:{}", ps.join(",")))
        .collect::<Vec<_>>()
        .join(";")
}

/// One node's answer being read.
struct Part {
    node: i32,
    parts: Vec<(String, u32)>,
    resp: reqwest::Response,
    buf: Vec<u8>,
    done: bool,
}

impl Part {
    /// The next NDJSON line, `None` at the end.
    async fn next_line(&mut self) -> Result<Option<Vec<u8>>, String> {
        loop {
            if let Some(nl) = memchr::memchr(b'\n', &self.buf) {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                return Ok(Some(line));
            }
            if self.done {
                return Ok(None);
            }
            match tokio::time::timeout(SILENCE, self.resp.chunk()).await {
                Err(_) => return Err(format!("silent for {SILENCE:?}")),
                Ok(Err(e)) => return Err(crate::http::error::chain(&e)),
                Ok(Ok(None)) => {
                    self.done = true;
                    if !self.buf.is_empty() {
                        // An unterminated last line: a cut answer.
                        return Err("the answer was cut short".into());
                    }
                }
                Ok(Ok(Some(b))) => self.buf.extend_from_slice(&b),
            }
        }
    }
}

/// Opens every node's part, moving a refused or unreachable node's
/// partitions to their next candidate.
async fn open_parts(cluster: &Cluster, q: &StreamQuery, plan: &Plan) -> Result<Vec<Part>, ApiError> {
    let mut failed: Vec<(i32, String)> = Vec::new();
    let mut todo: Vec<((String, u32), Vec<i32>)> = plan.parts.clone();
    let mut open = Vec::new();
    while !todo.is_empty() {
        let pick = |c: &[i32], failed: &[(i32, String)]| c.iter().copied().find(|n| failed.iter().all(|(f, _)| f != n));
        let mut by_node: BTreeMap<i32, Vec<(String, u32)>> = BTreeMap::new();
        let mut missing = BTreeSet::new();
        for (tp, c) in &todo {
            match pick(c, &failed) {
                Some(n) => by_node.entry(n).or_default().push(tp.clone()),
                None => {
                    missing.insert(format!("{}/{}", tp.0, tp.1));
                }
            }
        }
        if !missing.is_empty() {
            let tried = if failed.is_empty() {
                "no replica is alive and in sync".to_owned()
            } else {
                failed
                    .iter()
                    .map(|(n, e)| format!("node {n}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let parts = missing.into_iter().collect::<Vec<_>>().join(", ");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "cannot read {parts}: no in-sync replica of them answered ({tried}); the result would be partial, so none is given"
                ),
            ));
        }
        let mut retry = Vec::new();
        for (node, parts) in by_node {
            match ask(cluster, node, q, &parts).await {
                Ok(resp) => open.push(Part {
                    node,
                    parts,
                    resp,
                    buf: Vec::new(),
                    done: false,
                }),
                Err(e) => {
                    tracing::warn!(node, error = %e, "a node cannot answer its part of a query; asking another in-sync replica");
                    failed.push((node, e));
                    retry.extend(parts);
                }
            }
        }
        todo.retain(|(tp, _)| retry.contains(tp));
    }
    Ok(open)
}

/// Sends `q` for `parts` to `node`: its answer, once it started.
async fn ask(
    cluster: &Cluster,
    node: i32,
    q: &StreamQuery,
    parts: &[(String, u32)],
) -> Result<reqwest::Response, String> {
    let url = if node == cluster.me.id {
        cluster.me.url()
    } else {
        cluster.node_url(node).ok_or("not alive")?
    };
    let mut params: Vec<(&str, String)> = vec![
        ("query", q.query.clone()),
        ("limit", q.limit.to_string()),
        (
            "direction",
            if q.direction == Direction::Backward {
                "backward"
            } else {
                "forward"
            }
            .to_owned(),
        ),
        ("partitions", partitions_param(parts)),
    ];
    for (k, v) in [("grep", &q.grep), ("start", &q.start), ("end", &q.end)] {
        if let Some(v) = v {
            params.push((k, v.clone()));
        }
    }
    let target =
        reqwest::Url::parse_with_params(&format!("{url}/v1/query"), &params).map_err(|e| format!("{url}: {e}"))?;
    let call = cluster.reads.get(target).send();
    let resp = match tokio::time::timeout(SILENCE, call).await {
        Err(_) => return Err(format!("{url}: no answer in {SILENCE:?}")),
        Ok(Err(e)) => return Err(format!("{url}: {}", crate::http::error::chain(&e))),
        Ok(Ok(r)) => r,
    };
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(format!("{url}: {status}: {}", text.trim()));
    }
    Ok(resp)
}

/// The merge order of a record line: forward ascending, backward
/// descending. `None` for a line that is not a record (an error).
fn key(line: &[u8], topics: &[String], direction: Direction) -> Option<Key> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let topic = topics.iter().position(|t| v["topic"] == t.as_str())?;
    let partition = u32::try_from(v["partition"].as_u64()?).ok()?;
    let offset = v["offset"].as_i64()?;
    let ms = v["timestamp_ms"].as_i64()?;
    Some(match direction {
        // Topics one after the other, then the partitions merged by time.
        Direction::Forward => (topic as i64, 0, ms, partition, offset),
        Direction::Backward => {
            let ns = v["timestamp_ns"]
                .as_i64()
                .unwrap_or_else(|| ms.saturating_mul(1_000_000));
            (ns, topic, 0, partition, offset)
        }
    })
}

/// Streams the merged answers of the nodes `plan` names.
///
/// # Errors
/// 503 naming the partitions no replica would answer for.
pub async fn fan_out(cluster: Arc<Cluster>, q: StreamQuery, plan: Plan) -> Result<Response, ApiError> {
    let parts = open_parts(&cluster, &q, &plan).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(CHUNKS_IN_FLIGHT);
    let limit = if q.limit == 0 { usize::MAX } else { q.limit };
    let direction = q.direction;
    let task = tokio::spawn(merge(parts, plan.topics, direction, limit, tx));
    // The merge ends by itself when done or when the client leaves; this
    // only makes a panic in it visible.
    tokio::spawn(async move {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "query merge task failed");
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}

type Key = (i64, usize, i64, u32, i64);

/// Why a part's answer ends the whole answer early.
fn cut(part: &Part, e: &str) -> String {
    let names: Vec<String> = part.parts.iter().map(|(t, p)| format!("{t}/{p}")).collect();
    format!(
        "cannot finish reading {}: node {} failed while answering ({e}); the lines above are incomplete",
        names.join(", "),
        part.node
    )
}

/// A part's next record and its merge key; `Err` ends the whole answer.
async fn advance(part: &mut Part, topics: &[String], direction: Direction) -> Result<Option<(Key, Vec<u8>)>, String> {
    let line = match part.next_line().await {
        Ok(Some(line)) => line,
        Ok(None) => return Ok(None),
        Err(e) => return Err(cut(part, &e)),
    };
    if let Some(k) = key(&line, topics, direction) {
        return Ok(Some((k, line)));
    }
    let v: Value = serde_json::from_slice(&line).unwrap_or(Value::Null);
    let msg = v["error"]
        .as_str()
        .map_or_else(|| String::from_utf8_lossy(&line).into_owned(), str::to_owned);
    Err(cut(part, &msg))
}

/// Merges the parts' lines into `tx`, at most `limit` records.
async fn merge(
    mut parts: Vec<Part>,
    topics: Vec<String>,
    direction: Direction,
    limit: usize,
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
) {
    let mut heads: Vec<Option<(Key, Vec<u8>)>> = Vec::with_capacity(parts.len());
    let mut chunk = Vec::with_capacity(CHUNK_BYTES);
    let mut chunk_started = Instant::now();
    let mut sent = 0usize;
    let mut failure: Option<String> = None;
    for part in &mut parts {
        match advance(part, &topics, direction).await {
            Ok(h) => heads.push(h),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    while failure.is_none() && sent < limit {
        let best = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|(k, _)| (i, *k)))
            .reduce(|a, b| match direction {
                Direction::Forward => {
                    if b.1 < a.1 {
                        b
                    } else {
                        a
                    }
                }
                Direction::Backward => {
                    if b.1 > a.1 {
                        b
                    } else {
                        a
                    }
                }
            });
        let Some((i, _)) = best else { break };
        let (Some(slot), Some(part)) = (heads.get_mut(i), parts.get_mut(i)) else {
            break;
        };
        let Some((_, line)) = slot.take() else { break };
        if chunk.is_empty() {
            chunk_started = Instant::now();
        }
        chunk.extend_from_slice(&line);
        sent += 1;
        if chunk.len() >= CHUNK_BYTES || chunk_started.elapsed() >= CHUNK_AGE {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES));
            if tx.send(Ok(full)).await.is_err() {
                return; // the client went away
            }
        }
        match advance(part, &topics, direction).await {
            Ok(h) => *slot = h,
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        tracing::warn!(error = %e, "a query across the cluster ended early");
        let line = serde_json::json!({ "error": e }).to_string();
        chunk.extend_from_slice(line.as_bytes());
        chunk.push(b'\n');
    }
    if !chunk.is_empty() {
        let _ = tx.send(Ok(chunk)).await;
    }
}
