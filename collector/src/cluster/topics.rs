//! Topics in a cluster: created and deleted in etcd (every node then makes
//! or removes its own copy, `reconcile.rs`), placed over the live nodes
//! (`assign.rs`); and a single node's topics adopted when its data joins
//! a cluster for the first time.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::assign::{adopt, place};
use super::etcd::{Compare, Op};
use super::meta::{PartitionState, TopicRecord};
use super::node::{Cluster, StartError};
use crate::store::{StoreError, Topic, TopicAuthority, TopicSpec};

/// etcd refuses transactions of more than 128 operations by default: a
/// topic's partitions are written in chunks of this many.
const OPS_PER_TXN: usize = 100;
/// How long a creation waits for the local copy to appear.
const LOCAL_COPY_WAIT: Duration = Duration::from_secs(10);

/// Creates `name` in etcd with `states` as its partitions, unless it
/// exists; true if this call created it.
async fn create_in_etcd(
    cluster: &Cluster,
    name: &str,
    record: &TopicRecord,
    states: &[PartitionState],
) -> Result<bool, super::etcd::EtcdError> {
    let topic_key = cluster.keys.topic(name);
    let mut chunks = states.chunks(OPS_PER_TXN).enumerate();
    let Some((_, first)) = chunks.next() else {
        return Ok(false);
    };
    let mut ops = vec![Op::Put {
        key: topic_key.clone(),
        value: serde_json::to_vec(record).unwrap_or_default(),
        lease: 0,
    }];
    ops.extend(
        first
            .iter()
            .enumerate()
            .map(|(p, s)| partition_put(cluster, name, p, s)),
    );
    let (created, _) = cluster.etcd.txn(&[Compare::CreateRevision(topic_key, 0)], &ops).await?;
    if !created {
        return Ok(false);
    }
    // The rest: readers take a partition without a state for one without
    // a leader yet, until its chunk lands.
    for (i, chunk) in chunks {
        let ops: Vec<Op> = chunk
            .iter()
            .enumerate()
            .map(|(j, s)| partition_put(cluster, name, i * OPS_PER_TXN + j, s))
            .collect();
        cluster.etcd.txn(&[], &ops).await?;
    }
    Ok(true)
}

fn partition_put(cluster: &Cluster, topic: &str, p: usize, s: &PartitionState) -> Op {
    Op::Put {
        key: cluster.keys.partition(topic, u32::try_from(p).unwrap_or(u32::MAX)),
        value: serde_json::to_vec(s).unwrap_or_default(),
        lease: 0,
    }
}

/// A data directory joining a cluster for the first time: its topics
/// the cluster does not know become cluster topics led by this node
/// (their other replicas copy them); a topic the cluster knows too must be
/// empty here.
///
/// Returns how many topics were adopted.
///
/// # Errors
/// A topic with data both here and in the cluster.
pub async fn adopt_local_topics(cluster: &Arc<Cluster>) -> Result<usize, StartError> {
    let view = cluster.view();
    let live: Vec<i32> = view.nodes.keys().copied().collect();
    let mut adopted = 0;
    for topic in cluster.store.topics() {
        if let Some(known) = view.topics.get(&*topic.name) {
            // Adopted by an earlier start that died before writing the
            // data directory's marker: the same topic, not a conflict.
            let ours =
                known.value.created_ms == topic.meta.created_ms && known.value.partitions == topic.meta.partitions;
            let empty = topic.partitions.iter().all(|p| p.log_end_offset() == 0);
            if !ours && !empty {
                return Err(StartError::Conflict(topic.name.to_string()));
            }
            continue;
        }
        let rf = cluster.settings.replication_factor;
        let record = TopicRecord {
            partitions: topic.meta.partitions,
            replication_factor: rf,
            retention_bytes: topic.meta.retention_bytes,
            retention_age_ms: topic.meta.retention_age_ms,
            created_ms: topic.meta.created_ms,
            unclean_leader_election: None,
        };
        let states = adopt(&topic.name, topic.meta.partitions, rf, cluster.me.id, &live);
        let created = super::node::retry(&cluster.cancel, "adopt a topic", || {
            create_in_etcd(cluster, &topic.name, &record, &states)
        })
        .await?;
        if created {
            adopted += 1;
            tracing::info!(topic = %topic.name, partitions = topic.meta.partitions,
                "adopted this node's topic into the cluster: this node leads it, the other replicas copy it");
        }
    }
    Ok(adopted)
}

/// The store's way to create and delete topics in a cluster.
#[derive(Debug)]
pub struct Authority {
    cluster: Weak<Cluster>,
    runtime: tokio::runtime::Handle,
}

impl Authority {
    /// An authority for `cluster`, running etcd calls on `runtime`.
    pub fn new(cluster: &Arc<Cluster>, runtime: tokio::runtime::Handle) -> Self {
        Self {
            cluster: Arc::downgrade(cluster),
            runtime,
        }
    }

    fn cluster(&self) -> Result<Arc<Cluster>, StoreError> {
        self.cluster.upgrade().ok_or(StoreError::ShuttingDown)
    }
}

impl TopicAuthority for Authority {
    fn create_topic(&self, name: &str, spec: TopicSpec) -> Result<Arc<Topic>, StoreError> {
        let cluster = self.cluster()?;
        let partitions = spec.partitions.unwrap_or(cluster.store.config().default_partitions);
        let rf = spec.replication_factor.unwrap_or(cluster.settings.replication_factor);
        if rf == 0 || rf > crate::config::cluster::MAX_REPLICATION_FACTOR {
            return Err(StoreError::Unavailable(format!(
                "topic {name:?}: replication factor {rf} is out of range (1 to {})",
                crate::config::cluster::MAX_REPLICATION_FACTOR
            )));
        }
        let view = cluster.view();
        if view.topics.contains_key(name) {
            return Err(StoreError::TopicExists(name.to_owned()));
        }
        let live: Vec<i32> = view.nodes.keys().copied().collect();
        let states = place(name, partitions, rf, &live)
            .map_err(|e| StoreError::Unavailable(format!("topic {name:?} not created: {e}")))?;
        let record = TopicRecord {
            partitions,
            replication_factor: rf,
            retention_bytes: spec.retention_bytes,
            retention_age_ms: spec
                .retention_age
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            created_ms: crate::store::topic::now_ms(),
            unclean_leader_election: None,
        };
        let created = self
            .runtime
            .block_on(create_in_etcd(&cluster, name, &record, &states))
            .map_err(|e| {
                StoreError::Unavailable(format!("topic {name:?} not created: {}", crate::http::error::chain(&e)))
            })?;
        if !created {
            return Err(StoreError::TopicExists(name.to_owned()));
        }
        tracing::info!(
            topic = name,
            partitions,
            replication_factor = rf,
            "created topic in the cluster"
        );
        wait_for_local(&cluster, name)
    }

    fn delete_topic(&self, name: &str) -> Result<(), StoreError> {
        let cluster = self.cluster()?;
        if !cluster.view().topics.contains_key(name) {
            return Err(StoreError::UnknownTopic(name.to_owned()));
        }
        let key = cluster.keys.topic(name);
        self.runtime
            .block_on(cluster.etcd.txn(
                &[],
                &[
                    Op::Delete { key },
                    Op::DeletePrefix {
                        prefix: cluster.keys.partitions_of(name),
                    },
                ],
            ))
            .map_err(|e| {
                StoreError::Unavailable(format!("topic {name:?} not deleted: {}", crate::http::error::chain(&e)))
            })?;
        tracing::info!(topic = name, "deleted topic in the cluster");
        Ok(())
    }
}

/// Waits (blocking) until the reconciler has made the local copy of `name`.
fn wait_for_local(cluster: &Cluster, name: &str) -> Result<Arc<Topic>, StoreError> {
    let deadline = Instant::now() + LOCAL_COPY_WAIT;
    loop {
        if let Some(t) = cluster.store.topic(name) {
            return Ok(t);
        }
        if Instant::now() > deadline {
            return Err(StoreError::Unavailable(format!(
                "topic {name:?} was created in the cluster, but its local copy did not appear within {LOCAL_COPY_WAIT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
