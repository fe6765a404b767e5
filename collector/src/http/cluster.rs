//! `GET /v1/cluster`: the cluster as this node sees it: nodes, the
//! controller, and every topic's partitions with their leader, leader
//! epoch, replicas and in-sync replicas. What `logpost cluster` and
//! `logpost topics describe` print, and what agents route by. 404 on a
//! single node.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use crate::cluster::meta::ClusterView;

/// One node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeJson {
    pub id: i32,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<String>,
}

/// One partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionJson {
    pub partition: u32,
    /// -1 when it has none.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// One topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicJson {
    pub name: String,
    pub replication_factor: u32,
    pub partitions: Vec<PartitionJson>,
}

/// The answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterJson {
    pub cluster_id: Option<String>,
    /// The node that answered.
    pub node_id: i32,
    pub controller: Option<i32>,
    pub nodes: Vec<NodeJson>,
    pub topics: Vec<TopicJson>,
    /// Partitions with fewer in-sync replicas than replicas, or no leader.
    pub under_replicated: Vec<String>,
}

/// Builds the answer from a view.
pub fn describe(view: &ClusterView, node_id: i32) -> ClusterJson {
    let nodes = view
        .nodes
        .values()
        .map(|n| NodeJson {
            id: n.id,
            url: n.url(),
            kafka: n.kafka.clone(),
        })
        .collect();
    let mut under_replicated = Vec::new();
    let topics = view
        .topics
        .iter()
        .map(|(name, t)| {
            let partitions = (0..t.value.partitions)
                .map(|p| {
                    let s = view.partition(name, p).map(|s| s.value.clone());
                    let s = s.unwrap_or(crate::cluster::meta::PartitionState {
                        replicas: Vec::new(),
                        leader: crate::cluster::meta::NO_LEADER,
                        leader_epoch: -1,
                        isr: Vec::new(),
                    });
                    if s.leader < 0 || s.isr.len() < s.replicas.len() {
                        under_replicated.push(format!("{name}/{p}"));
                    }
                    PartitionJson {
                        partition: p,
                        leader: s.leader,
                        leader_epoch: s.leader_epoch,
                        replicas: s.replicas,
                        isr: s.isr,
                    }
                })
                .collect();
            TopicJson {
                name: name.clone(),
                replication_factor: t.value.replication_factor,
                partitions,
            }
        })
        .collect();
    ClusterJson {
        cluster_id: view.cluster_id.clone(),
        node_id,
        controller: view.controller_id(),
        nodes,
        topics,
        under_replicated,
    }
}

/// `GET /v1/cluster`.
///
/// # Errors
/// 404 on a single node.
pub async fn status(State(app): State<Arc<AppState>>) -> Result<Json<ClusterJson>, ApiError> {
    let cluster = app.cluster.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "this collector is a single node: no [cluster] section in its config",
        )
    })?;
    Ok(Json(describe(&cluster.view(), cluster.me.id)))
}
