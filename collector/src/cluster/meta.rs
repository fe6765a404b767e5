//! What the cluster keeps in etcd, and every node's copy of it.
//!
//! ```text
//! <prefix>/cluster_id                 the cluster's id, written once
//! <prefix>/nodes/<id>                 NodeInfo, under the node's lease
//! <prefix>/controller                 {"node_id"}, under the controller's lease
//! <prefix>/topics/<topic>             TopicRecord
//! <prefix>/partitions/<topic>/<p>     PartitionState: replicas, leader, epoch, ISR
//! ```
//!
//! Values are JSON. A partition's state changes only by compare-and-swap
//! on its key's revision, so two writers (the controller electing a
//! leader, the leader changing its ISR) never overwrite each other; every
//! change of leader bumps the leader epoch (Kafka's ZooKeeper layout, in
//! etcd).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::etcd::{Event, KeyValue};

/// A live node, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: i32,
    /// `host:port` of its HTTP listener.
    pub http: String,
    /// `"http"` or `"https"`.
    pub scheme: String,
    /// `host:port` its Kafka listener advertises, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<String>,
    /// When it registered (ms since the epoch).
    pub started_ms: i64,
}

impl NodeInfo {
    /// Its HTTP base URL.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.http)
    }
}

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub partitions: u32,
    pub replication_factor: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_age_ms: Option<u64>,
    pub created_ms: i64,
    /// Overrides `[cluster] unclean_leader_election` for this topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unclean_leader_election: Option<bool>,
}

/// No leader (all in-sync replicas are down).
pub const NO_LEADER: i32 = -1;

/// One partition's replicas, leader and in-sync replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Replica node ids; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// [`NO_LEADER`] when none.
    pub leader: i32,
    /// Bumped by every change of leader.
    pub leader_epoch: i32,
    /// In-sync replicas, the leader among them.
    pub isr: Vec<i32>,
}

/// The controller's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerRecord {
    pub node_id: i32,
}

/// The controller key as the view holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectedController {
    pub node_id: i32,
    /// The key's creation revision: the controller's term, which every
    /// controller write compares.
    pub term: i64,
    /// The lease the key lives under (its holder's session).
    pub lease: i64,
}

/// A value and the revision it was last written at (for compare-and-swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: i64,
}

/// The names of the keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (no trailing slash).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// Everything of this cluster, for the watch.
    pub fn all(&self) -> String {
        format!("{}/", self.prefix)
    }
    pub fn cluster_id(&self) -> String {
        format!("{}/cluster_id", self.prefix)
    }
    pub fn node(&self, id: i32) -> String {
        format!("{}/nodes/{id}", self.prefix)
    }
    pub fn controller(&self) -> String {
        format!("{}/controller", self.prefix)
    }
    pub fn topic(&self, name: &str) -> String {
        format!("{}/topics/{name}", self.prefix)
    }
    pub fn partition(&self, topic: &str, partition: u32) -> String {
        format!("{}/partitions/{topic}/{partition}", self.prefix)
    }
    /// Every partition key of `topic`.
    pub fn partitions_of(&self, topic: &str) -> String {
        format!("{}/partitions/{topic}/", self.prefix)
    }

    fn classify<'k>(&self, key: &'k str) -> Option<Key<'k>> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix('/')?;
        if rest == "cluster_id" {
            return Some(Key::ClusterId);
        }
        if rest == "controller" {
            return Some(Key::Controller);
        }
        if let Some(id) = rest.strip_prefix("nodes/") {
            return id.parse().ok().map(Key::Node);
        }
        if let Some(name) = rest.strip_prefix("topics/") {
            return Some(Key::Topic(name));
        }
        let (topic, p) = rest.strip_prefix("partitions/")?.rsplit_once('/')?;
        Some(Key::Partition(topic, p.parse().ok()?))
    }
}

enum Key<'k> {
    ClusterId,
    Controller,
    Node(i32),
    Topic(&'k str),
    Partition(&'k str, u32),
}

/// A node's copy of the cluster's state, as of `revision`.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub revision: i64,
    pub cluster_id: Option<String>,
    pub nodes: BTreeMap<i32, NodeInfo>,
    /// The controller, its term and lease.
    pub controller: Option<ElectedController>,
    pub topics: BTreeMap<String, Versioned<TopicRecord>>,
    pub partitions: BTreeMap<(String, u32), Versioned<PartitionState>>,
}

impl ClusterView {
    /// The view of everything read at once (`kvs` under `keys.all()`).
    pub fn from_pairs(keys: &Keys, kvs: Vec<KeyValue>, revision: i64) -> Self {
        let mut view = ClusterView {
            revision,
            ..ClusterView::default()
        };
        for kv in kvs {
            view.put(keys, &kv);
        }
        view
    }

    /// Applies watched events.
    pub fn apply(&mut self, keys: &Keys, events: &[Event], revision: i64) {
        for e in events {
            match e {
                Event::Put(kv) => self.put(keys, kv),
                Event::Delete { key, .. } => self.delete(keys, key),
            }
        }
        self.revision = self.revision.max(revision);
    }

    fn put(&mut self, keys: &Keys, kv: &KeyValue) {
        let Some(key) = keys.classify(&kv.key) else { return };
        // A value that does not parse is left out: a newer version's key
        // this one does not know, or damage; logged once per change.
        let bad = |what: &str| tracing::warn!(key = %kv.key, what, "ignoring an etcd value that does not parse");
        match key {
            Key::ClusterId => self.cluster_id = Some(String::from_utf8_lossy(&kv.value).into_owned()),
            Key::Controller => match serde_json::from_slice::<ControllerRecord>(&kv.value) {
                Ok(c) => {
                    self.controller = Some(ElectedController {
                        node_id: c.node_id,
                        term: kv.create_revision,
                        lease: kv.lease,
                    });
                }
                Err(_) => bad("controller"),
            },
            Key::Node(id) => match serde_json::from_slice::<NodeInfo>(&kv.value) {
                Ok(n) if n.id == id => {
                    self.nodes.insert(id, n);
                }
                _ => bad("node"),
            },
            Key::Topic(name) => match serde_json::from_slice(&kv.value) {
                Ok(t) => {
                    self.topics.insert(
                        name.to_owned(),
                        Versioned {
                            value: t,
                            mod_revision: kv.mod_revision,
                        },
                    );
                }
                Err(_) => bad("topic"),
            },
            Key::Partition(topic, p) => match serde_json::from_slice(&kv.value) {
                Ok(s) => {
                    self.partitions.insert(
                        (topic.to_owned(), p),
                        Versioned {
                            value: s,
                            mod_revision: kv.mod_revision,
                        },
                    );
                }
                Err(_) => bad("partition"),
            },
        }
    }

    fn delete(&mut self, keys: &Keys, key: &str) {
        match keys.classify(key) {
            Some(Key::ClusterId) => self.cluster_id = None,
            Some(Key::Controller) => self.controller = None,
            Some(Key::Node(id)) => {
                self.nodes.remove(&id);
            }
            Some(Key::Topic(name)) => {
                self.topics.remove(name);
            }
            Some(Key::Partition(topic, p)) => {
                self.partitions.remove(&(topic.to_owned(), p));
            }
            None => {}
        }
    }

    /// The state of one partition.
    pub fn partition(&self, topic: &str, partition: u32) -> Option<&Versioned<PartitionState>> {
        self.partitions.get(&(topic.to_owned(), partition))
    }

    /// Whether node `id` is alive (registered under a live lease).
    pub fn is_live(&self, id: i32) -> bool {
        self.nodes.contains_key(&id)
    }

    /// The controller's node id.
    pub fn controller_id(&self) -> Option<i32> {
        self.controller.map(|c| c.node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: value.as_bytes().to_vec(),
            create_revision: rev,
            mod_revision: rev,
            lease: 0,
        }
    }

    #[test]
    fn keys_round_trip_through_the_view() {
        let keys = Keys::new("/lp/");
        assert_eq!(keys.partition("app", 3), "/lp/partitions/app/3");
        let mut view = ClusterView::from_pairs(
            &keys,
            vec![
                kv("/lp/cluster_id", "c1", 1),
                kv(
                    &keys.node(2),
                    r#"{"id":2,"http":"h:1","scheme":"http","started_ms":5}"#,
                    2,
                ),
                kv(&keys.controller(), r#"{"node_id":2}"#, 3),
                kv(
                    &keys.topic("app"),
                    r#"{"partitions":2,"replication_factor":3,"created_ms":1}"#,
                    4,
                ),
                kv(
                    &keys.partition("app", 1),
                    r#"{"replicas":[2,3,1],"leader":2,"leader_epoch":0,"isr":[2,3,1]}"#,
                    5,
                ),
                kv(&keys.node(9), "not json", 6),
                kv("/other/nodes/1", "{}", 7),
            ],
            7,
        );
        assert_eq!(view.cluster_id.as_deref(), Some("c1"));
        assert_eq!(view.nodes.keys().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(view.nodes[&2].url(), "http://h:1");
        assert_eq!(view.controller_id(), Some(2));
        assert_eq!(view.partition("app", 1).unwrap().value.isr, vec![2, 3, 1]);
        assert_eq!(view.partition("app", 1).unwrap().mod_revision, 5);
        view.apply(
            &keys,
            &[
                Event::Delete {
                    key: keys.node(2),
                    mod_revision: 8,
                },
                Event::Delete {
                    key: keys.controller(),
                    mod_revision: 8,
                },
            ],
            8,
        );
        assert!(!view.is_live(2));
        assert_eq!(view.controller_id(), None);
        assert_eq!(view.revision, 8);
    }
}
