//! Which collector node leads each partition, when the collectors form a
//! cluster (docs/cluster.md): learnt from `GET /v1/cluster` on any of
//! `[collector] urls`, so that each stream's batches go straight to its
//! partition's leader, as Kafka clients do with Metadata.
//!
//! A single collector answers that request 404: the agent then sends to
//! its URLs in turn, as it always did. The map is asked for again when a
//! node answers 421 (it does not lead the partition), when a node cannot
//! be reached, and when a topic it does not list is written.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::client::{SharedUrls, current, error_chain};

/// A cluster map older than this is asked for again even if nothing went
/// wrong: leadership moves back to preferred replicas by itself.
const MAX_AGE: Duration = Duration::from_secs(30);
/// Least time between two askings: many requests failing at once (a dead
/// leader) ask once.
const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// How long one node may take to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /v1/cluster`, the parts routing needs.
#[derive(Debug, serde::Deserialize)]
struct ClusterJson {
    nodes: Vec<NodeJson>,
    topics: Vec<TopicJson>,
}

#[derive(Debug, serde::Deserialize)]
struct NodeJson {
    id: i32,
    url: String,
}

#[derive(Debug, serde::Deserialize)]
struct TopicJson {
    name: String,
    partitions: Vec<PartitionJson>,
}

#[derive(Debug, serde::Deserialize)]
struct PartitionJson {
    partition: u32,
    leader: i32,
}

/// Each topic's partitions' leaders, by URL (`None`: no live leader now).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMap {
    topics: HashMap<String, Vec<Option<String>>>,
}

impl ClusterMap {
    fn from_json(v: ClusterJson) -> Self {
        let urls: HashMap<i32, String> = v
            .nodes
            .into_iter()
            .map(|n| (n.id, n.url.trim_end_matches('/').to_owned()))
            .collect();
        let topics = v
            .topics
            .into_iter()
            .map(|t| {
                let count = t.partitions.iter().map(|p| p.partition + 1).max().unwrap_or(0);
                let mut leaders = vec![None; count as usize];
                for p in t.partitions {
                    if let Some(slot) = leaders.get_mut(p.partition as usize) {
                        *slot = urls.get(&p.leader).cloned();
                    }
                }
                (t.name, leaders)
            })
            .collect();
        Self { topics }
    }

    /// Leaders of `topic`'s partitions, in partition order.
    pub fn topic(&self, topic: &str) -> Option<&[Option<String>]> {
        self.topics.get(topic).map(Vec::as_slice)
    }

    /// The URL of the node leading `partition` of `topic`.
    pub fn leader(&self, topic: &str, partition: u32) -> Option<&str> {
        self.topic(topic)?.get(partition as usize)?.as_deref()
    }

    /// Every node leading some partition of `topic`, once each.
    pub fn leaders_of(&self, topic: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for url in self.topic(topic).unwrap_or_default().iter().flatten() {
            if !out.contains(url) {
                out.push(url.clone());
            }
        }
        out
    }
}

/// What the agent knows of the collectors.
#[derive(Debug, Clone, Default)]
enum Known {
    /// Not asked yet, or no node answered.
    #[default]
    Nothing,
    /// A single collector (404): no routing.
    Single,
    Cluster(ClusterMap),
}

#[derive(Debug, Default)]
struct State {
    known: Known,
    asked: Option<Instant>,
}

/// The agent's view of partition leaders, shared by the shipper and the
/// stream lookup.
#[derive(Debug)]
pub struct Leaders {
    http: reqwest::Client,
    urls: SharedUrls,
    state: RwLock<State>,
    /// Set by a 421 or an unreachable node: ask before the next request.
    stale: AtomicBool,
    /// One asking at a time.
    asking: tokio::sync::Mutex<()>,
}

impl Leaders {
    /// Leaders learnt from `urls` with `http` (the shipper's client).
    pub fn new(http: reqwest::Client, urls: SharedUrls) -> Self {
        Self {
            http,
            urls,
            state: RwLock::new(State::default()),
            stale: AtomicBool::new(true),
            asking: tokio::sync::Mutex::new(()),
        }
    }

    /// Marks the map out of date (a node said it does not lead, or is gone).
    pub fn invalidate(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// The cluster map to route `topic` by, asked for first if it is out
    /// of date or does not know `topic`; `None` on a single collector or
    /// when no node answers (the caller then sends to its URLs in turn).
    pub async fn map_for(&self, topic: &str) -> Option<ClusterMap> {
        if self.needs_asking(topic) {
            self.ask().await;
        }
        match &self.read().known {
            Known::Cluster(map) => Some(map.clone()),
            Known::Single | Known::Nothing => None,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn needs_asking(&self, topic: &str) -> bool {
        let state = self.read();
        let recent = state.asked.is_some_and(|t| t.elapsed() < MIN_INTERVAL);
        if recent {
            return false;
        }
        let old = state.asked.is_none_or(|t| t.elapsed() > MAX_AGE);
        match &state.known {
            Known::Nothing => true,
            // A single collector may be restarted as a cluster node.
            Known::Single => old,
            Known::Cluster(map) => {
                old || self.stale.load(Ordering::Relaxed)
                    || map
                        .topic(topic)
                        .is_none_or(|leaders| leaders.iter().any(Option::is_none))
            }
        }
    }

    /// Asks the configured URLs in turn for `GET /v1/cluster`.
    async fn ask(&self) {
        let _one = self.asking.lock().await;
        // Someone else asked while this one waited for the lock.
        if self.read().asked.is_some_and(|t| t.elapsed() < MIN_INTERVAL) {
            return;
        }
        self.stale.store(false, Ordering::Relaxed);
        let mut known = None;
        for base in current(&self.urls) {
            let base = base.trim_end_matches('/').to_owned();
            match self.ask_one(&base).await {
                Ok(k) => {
                    known = Some(k);
                    break;
                }
                Err(e) => tracing::debug!(url = %base, error = %e, "cannot learn the cluster's leaders here"),
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.asked = Some(Instant::now());
        match known {
            Some(k) => state.known = k,
            // Nobody answered: keep the old map (its nodes may be back
            // soon) but ask again at the next request.
            None => self.stale.store(true, Ordering::Relaxed),
        }
    }

    async fn ask_one(&self, base: &str) -> Result<Known, String> {
        let resp = self
            .http
            .get(format!("{base}/v1/cluster"))
            .timeout(ASK_TIMEOUT)
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::METHOD_NOT_ALLOWED {
            return Ok(Known::Single);
        }
        let text = resp.text().await.map_err(|e| error_chain(&e))?;
        if !status.is_success() {
            return Err(format!("{status}: {}", text.trim()));
        }
        let json: ClusterJson = serde_json::from_str(&text).map_err(|e| format!("unexpected cluster answer: {e}"))?;
        Ok(Known::Cluster(ClusterMap::from_json(json)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaders_by_url_from_the_cluster_view() {
        let json: ClusterJson = serde_json::from_str(
            r#"{"cluster_id":"c","node_id":1,"controller":1,
                "nodes":[{"id":1,"url":"http://a:1/"},{"id":2,"url":"http://b:2","kafka":"b:9092"}],
                "topics":[{"name":"t","replication_factor":2,"partitions":[
                    {"partition":1,"leader":2,"leader_epoch":3,"replicas":[2,1],"isr":[2,1]},
                    {"partition":0,"leader":1,"leader_epoch":1,"replicas":[1,2],"isr":[1]},
                    {"partition":2,"leader":-1,"leader_epoch":4,"replicas":[3,1],"isr":[3]}]}],
                "under_replicated":[]}"#,
        )
        .unwrap();
        let map = ClusterMap::from_json(json);
        assert_eq!(map.leader("t", 0), Some("http://a:1"));
        assert_eq!(map.leader("t", 1), Some("http://b:2"));
        assert_eq!(map.leader("t", 2), None);
        assert_eq!(map.leader("u", 0), None);
        assert_eq!(map.topic("t").map(<[_]>::len), Some(3));
        assert_eq!(
            map.leaders_of("t"),
            vec!["http://a:1".to_owned(), "http://b:2".to_owned()]
        );
    }
}
