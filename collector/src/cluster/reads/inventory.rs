//! Loki's label and series endpoints across the cluster: each partition's
//! inventory (`query::inventory`, from the summaries) is taken by the node
//! that reads it (as for queries: this node when it leads it, else the
//! leader, else an in-sync replica), remote ones through
//! `POST /v1/replica/inventory` (scope `cluster`), and merged. A node that
//! fails is left out and its partitions asked of the next in-sync replica;
//! when none answers, [`ReadError::Unavailable`] names them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ReadError, candidates};
use crate::cluster::node::Cluster;
use crate::query::inventory::{Inventory, inventory};
use crate::query::logql::{Labels, Selector};
use crate::query::source::topics_for;
use crate::store::Store;

/// Longest a node may take to answer for its partitions' summaries (read
/// from memory: a slow answer is a sick node).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The body of `POST /v1/replica/inventory`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryAsk {
    /// A log query whose selector picks the streams; `None`: all.
    pub query: Option<String>,
    pub start_ns: i64,
    /// Inclusive.
    pub end_ns: i64,
    /// `(topic, partition)`s to take the inventory of.
    pub parts: Vec<(String, u32)>,
}

/// An inventory on the wire.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InventoryWire {
    pub streams: Vec<Vec<(String, String)>>,
    pub blocks: u64,
    pub records: u64,
    pub bytes: u64,
}

impl From<&Inventory> for InventoryWire {
    fn from(inv: &Inventory) -> Self {
        InventoryWire {
            streams: inv.streams.iter().map(super::wire::pairs).collect(),
            blocks: inv.blocks,
            records: inv.records,
            bytes: inv.bytes,
        }
    }
}

impl From<InventoryWire> for Inventory {
    fn from(w: InventoryWire) -> Self {
        Inventory {
            streams: w
                .streams
                .iter()
                .map(|s| s.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Labels>())
                .collect(),
            blocks: w.blocks,
            records: w.records,
            bytes: w.bytes,
        }
    }
}

/// The inventory of the whole cluster for `selector` (parsed from
/// `query`; all streams when `None`).
///
/// # Errors
/// Some partitions have no replica that answered.
pub async fn gather(
    cluster: &Arc<Cluster>,
    store: &Arc<Store>,
    query: Option<&str>,
    selector: Option<Arc<Selector>>,
    (start_ns, end_ns): (i64, i64),
) -> Result<Inventory, ReadError> {
    let view = cluster.view();
    let me = cluster.me.id;
    let topics = match selector.as_deref() {
        Some(s) => topics_for(store, s),
        None => store.topics(),
    };
    let mut parts: Vec<((String, u32), Vec<i32>)> = Vec::new();
    for t in &topics {
        for p in &t.partitions {
            parts.push(((t.name.to_string(), p.id), candidates(&view, me, &t.name, p.id)));
        }
    }
    let mut total = Inventory::default();
    let mut failed: Vec<(i32, String)> = Vec::new();
    while !parts.is_empty() {
        let pick = |c: &[i32], failed: &[(i32, String)]| c.iter().copied().find(|n| failed.iter().all(|(f, _)| f != n));
        let mut by_node: BTreeMap<i32, Vec<(String, u32)>> = BTreeMap::new();
        let mut missing = BTreeSet::new();
        for ((t, p), c) in &parts {
            match pick(c, &failed) {
                Some(n) => by_node.entry(n).or_default().push((t.clone(), *p)),
                None => {
                    missing.insert(format!("{t}/{p}"));
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
            return Err(ReadError::Unavailable {
                parts: missing.into_iter().collect::<Vec<_>>().join(", "),
                tried,
            });
        }
        let mut retry = Vec::new();
        for (node, list) in by_node {
            let got = if node == me {
                let (store, sel, set) = (Arc::clone(store), selector.clone(), list.clone());
                tokio::task::spawn_blocking(move || {
                    let wanted = |t: &str, p: u32| set.iter().any(|(st, sp)| st == t && *sp == p);
                    inventory(&store, sel.as_deref(), start_ns, end_ns, Some(&wanted))
                })
                .await
                .map_err(|e| e.to_string())
            } else {
                ask(cluster, node, query, (start_ns, end_ns), &list).await
            };
            match got {
                Ok(inv) => total.merge(inv),
                Err(e) => {
                    tracing::warn!(node, error = %e, "a node failed to list its partitions' streams; asking another in-sync replica");
                    failed.push((node, e));
                    retry.extend(list);
                }
            }
        }
        parts.retain(|(tp, _)| retry.contains(tp));
    }
    Ok(total)
}

/// Asks `node` for the inventory of `parts`.
async fn ask(
    cluster: &Cluster,
    node: i32,
    query: Option<&str>,
    (start_ns, end_ns): (i64, i64),
    parts: &[(String, u32)],
) -> Result<Inventory, String> {
    let url = cluster.node_url(node).ok_or("not alive")?;
    let body = InventoryAsk {
        query: query.map(str::to_owned),
        start_ns,
        end_ns,
        parts: parts.to_vec(),
    };
    let call = async {
        let resp = cluster
            .reads
            .post(format!("{url}/v1/replica/inventory"))
            .json(&body)
            .send()
            .await
            .map_err(|e| crate::http::error::chain(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| crate::http::error::chain(&e))?;
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes).trim()));
        }
        serde_json::from_slice::<InventoryWire>(&bytes)
            .map(Inventory::from)
            .map_err(|e| format!("bad answer: {e}"))
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, call).await {
        Ok(r) => r.map_err(|e| format!("{url}: {e}")),
        Err(_) => Err(format!("{url}: no answer in {ANSWER_TIMEOUT:?}")),
    }
}
